//! The flags that let file mode report to operators and auditors: `--admin` (metrics
//! and health over HTTP) and `--audit` (the hash-chained trail). In Kafka mode the
//! gateway configuration's `admin:` and `audit:` give them (a flag wins), and the
//! trail can be copied to an audit topic.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use accord::report::admin::{self, Health};
use accord::agreement::Agreement;
use accord::report::audit::checkpoint::Checkpoints;
use accord::report::audit::{self, AuditError, AuditTrail, Kind};
use accord::dpo::signing::PartyKey;
use accord::config::Config;
use accord::run::kafka::audit_topic::AuditTopic;
use accord::engine::Engine;
use accord::report::tally::Totals;
use accord::report::observe::Observers;
use accord::report::tally::Tally;

use super::Failure;

#[derive(clap::Args, Clone, Default)]
pub struct ObserveArgs {
    /// Serve /metrics, /healthz and /readyz on this address (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<SocketAddr>,
    /// Append what was enforced to this hash-chained audit trail (JSON Lines).
    #[arg(long, value_name = "FILE")]
    pub audit: Option<PathBuf>,
    /// The audit key (`accord keygen --audit`): signs the trail's checkpoints, at least
    /// every minute and at the stop. Without it the trail has none and never
    /// verifies as closed.
    #[arg(long, value_name = "FILE", requires = "audit")]
    pub audit_key: Option<PathBuf>,
    /// Seconds between the trail's counters records (and checkpoints, at most 60)
    /// [default: 60].
    #[arg(long, value_name = "SECS")]
    pub audit_interval: Option<u64>,
    /// Kafka mode's audit topic, which receives a copy of every line of the trail.
    #[arg(skip)]
    pub audit_topic: Option<Arc<AuditTopic>>,
    /// SHA-256 of the gateway configuration file, for `gateway_started` (Kafka mode).
    #[arg(skip)]
    pub config_sha256: Option<String>,
}

/// A running observation: the observer for batches, and the trail for the records
/// around them.
pub struct Observing {
    observers: Observers,
    pub trail: Option<Arc<AuditTrail>>,
    /// What `/readyz` answers.
    pub health: Arc<Health>,
    /// Appends the periodic checkpoints while the gateway runs.
    checkpoints: Option<Checkpoints>,
}

impl ObserveArgs {
    /// Kafka mode: the configuration's `audit:` where no flag says otherwise, and its
    /// topic opened as the trail's mirror (returned, to be flushed at the end).
    pub fn with_config(self, config: &Config, agreement: &Agreement) -> Result<(ObserveArgs, Option<Arc<AuditTopic>>), Failure> {
        let audit = self.audit.or_else(|| config.audit.file.clone());
        let audit_key = self.audit_key.or_else(|| config.audit.key.clone());
        let audit_interval = self.audit_interval.or(config.audit.interval.map(|d| d.as_secs()));
        let topic = match (&config.audit.topic, &audit) {
            (Some(topic), Some(file)) => {
                if let Some(p) = agreement.purposes.iter().find(|p| &p.topic == topic) {
                    return Err(Failure::Input(anyhow::anyhow!("the audit topic `{topic}` is also the topic of purpose `{}`; give the trail a topic of its own", p.name)));
                }
                Some(Arc::new(AuditTopic::open(&config.kafka, topic, file)?))
            }
            _ => None,
        };
        Ok((ObserveArgs { audit, audit_key, audit_interval, audit_topic: topic.clone(), ..self }, topic))
    }

    /// Starts the admin server and opens the trail (writing `gateway_started` and
    /// `agreement_loaded`), as asked.
    pub fn start(&self, agreement: &Arc<Agreement>, mode: &str, input: &str) -> Result<Observing, Failure> {
        self.start_with(agreement, mode, input, false)
    }

    /// As [`ObserveArgs::start`]; with `needs_kafka`, `/readyz` also waits for an
    /// assignment (the returned [`Observing::health`] is told).
    pub fn start_with(&self, agreement: &Arc<Agreement>, mode: &str, input: &str, needs_kafka: bool) -> Result<Observing, Failure> {
        let metrics = self.admin.is_some() || self.audit.is_some();
        if metrics {
            admin::count_reload(true);
        }
        let health = Health::new(needs_kafka);
        health.set_agreement(true);
        if let Some(addr) = self.admin {
            let bound = admin::spawn(addr, health.clone()).map_err(|e| Failure::Input(anyhow::anyhow!("cannot serve the admin address {addr}: {e}")))?;
            tracing::info!("serving /metrics, /healthz and /readyz on http://{bound}");
        }
        let interval = Duration::from_secs(self.audit_interval.unwrap_or(60));
        let trail = match &self.audit {
            Some(path) => {
                let mut trail = AuditTrail::open(path)?;
                if let Some(topic) = &self.audit_topic {
                    trail = trail.with_mirror(topic.mirror());
                }
                match &self.audit_key {
                    Some(key) => trail = trail.with_key(PartyKey::audit_from_file(key)?),
                    None => tracing::warn!(
                        "no audit key is configured: the audit trail gets no signed checkpoints, so it will never verify as closed (create one with `accord keygen --audit`)"
                    ),
                }
                let trail = Arc::new(trail);
                trail.append(Kind::GatewayStarted, serde_json::json!({"version": env!("CARGO_PKG_VERSION"), "mode": mode, "config_sha256": self.config_sha256}))?;
                trail.append(Kind::AgreementLoaded, audit::agreement_loaded(agreement))?;
                Some(trail)
            }
            None => None,
        };
        let checkpoints = match &trail {
            Some(t) if t.signs() => {
                t.checkpoint()?;
                Some(Checkpoints::spawn(t.clone(), interval).map_err(|e| Failure::Input(anyhow::anyhow!("cannot start the audit checkpoints: {e}")))?)
            }
            _ => None,
        };
        let observers = Observers::new(agreement.clone(), metrics.then_some(input), trail.clone(), interval);
        Ok(Observing { observers, trail, health, checkpoints })
    }
}

impl Observing {
    /// One batch, decided by `engine` (see [`Observers::batch`]).
    pub fn batch(&mut self, engine: &Engine, t: &Tally, elapsed: Duration) -> Result<(), AuditError> {
        self.observers.batch(engine, t, elapsed)
    }

    /// The last counters, `gateway_stopped` and the last checkpoint.
    pub fn finish(mut self, totals: &Totals) -> Result<(), Failure> {
        drop(self.checkpoints.take());
        self.observers.flush()?;
        if let Some(trail) = &self.trail {
            trail.append(Kind::GatewayStopped, serde_json::json!({"reason": "input ended", "received": totals.received(), "forwarded_events": totals.forwarded_events(), "dropped": totals.dropped_total()}))?;
            if trail.checkpoint()?.is_some() {
                if let Some(head) = trail.head() {
                    tracing::info!("audit trail {} closed by a signed checkpoint; its head is {head}", trail.path().display());
                }
            }
        }
        Ok(())
    }
}
