//! The flags that let file mode report to operators and auditors: `--admin` (metrics
//! and health over HTTP) and `--audit` (the hash-chained trail).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use accord::admin::{self, Health, Metrics};
use accord::agreement::Agreement;
use accord::audit::{self, AuditError, AuditTrail, Kind};
use accord::engine::Engine;
use accord::filemode::Totals;
use accord::observe::Observer;
use accord::tally::Tally;

use super::Failure;

#[derive(clap::Args, Clone, Default)]
pub struct ObserveArgs {
    /// Serve /metrics, /healthz and /readyz on this address (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<SocketAddr>,
    /// Append what was enforced to this hash-chained audit trail (JSON Lines).
    #[arg(long, value_name = "FILE")]
    pub audit: Option<PathBuf>,
    /// Seconds between the trail's counters records.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub audit_interval: u64,
}

/// A running observation: the observer for batches, and the trail for the records
/// around them.
pub struct Observing {
    observer: Option<Observer>,
    pub trail: Option<Arc<AuditTrail>>,
    input: String,
    metrics: bool,
    interval: Duration,
    /// What `/readyz` answers.
    pub health: Arc<Health>,
}

impl ObserveArgs {
    /// Starts the admin server and opens the trail (writing `gateway_started` and
    /// `agreement_loaded`), as asked.
    pub fn start(&self, agreement: &Arc<Agreement>, mode: &str, input: &str) -> Result<Observing, Failure> {
        self.start_with(agreement, mode, input, false)
    }

    /// As [`ObserveArgs::start`]; with `needs_kafka`, `/readyz` also waits for an
    /// assignment (the returned [`Observing::health`] is told).
    pub fn start_with(&self, agreement: &Arc<Agreement>, mode: &str, input: &str, needs_kafka: bool) -> Result<Observing, Failure> {
        let metrics = (self.admin.is_some() || self.audit.is_some()).then(|| Metrics::new(agreement, input));
        if let Some(m) = &metrics {
            m.set_in_force(true);
            admin::count_reload(true);
        }
        let health = Health::new(needs_kafka);
        health.set_agreement(true);
        if let Some(addr) = self.admin {
            let bound = admin::spawn(addr, health.clone()).map_err(|e| Failure::Input(anyhow::anyhow!("cannot serve the admin address {addr}: {e}")))?;
            tracing::info!("serving /metrics, /healthz and /readyz on http://{bound}");
        }
        let trail = match &self.audit {
            Some(path) => {
                let trail = Arc::new(AuditTrail::open(path)?);
                trail.append(Kind::GatewayStarted, serde_json::json!({"version": env!("CARGO_PKG_VERSION"), "mode": mode}))?;
                trail.append(Kind::AgreementLoaded, audit::agreement_loaded(agreement))?;
                Some(trail)
            }
            None => None,
        };
        let interval = Duration::from_secs(self.audit_interval);
        let observer = Observer::new(agreement.clone(), metrics, trail.clone(), interval);
        Ok(Observing { observer: Some(observer), trail, input: input.to_string(), metrics: self.admin.is_some() || self.audit.is_some(), interval, health })
    }
}

impl Observing {
    /// One batch, decided by `engine`: a new agreement gets its own metric handles
    /// and counters records (the reload itself is recorded by `accord::reload`).
    pub fn batch(&mut self, engine: &Engine, t: &Tally, elapsed: Duration) -> Result<(), AuditError> {
        let current = self.observer.as_ref().map(|o| o.agreement().clone());
        if current.is_some_and(|a| !Arc::ptr_eq(&a, engine.agreement())) {
            if let Some(old) = self.observer.take() {
                old.retire()?;
            }
            let metrics = self.metrics.then(|| {
                let m = Metrics::new(engine.agreement(), &self.input);
                m.set_in_force(true);
                m
            });
            self.observer = Some(Observer::new(engine.agreement().clone(), metrics, self.trail.clone(), self.interval));
        }
        match &mut self.observer {
            Some(o) => o.batch(t, elapsed),
            None => Ok(()),
        }
    }

    /// The last counters and `gateway_stopped`.
    pub fn finish(mut self, totals: &Totals) -> Result<(), Failure> {
        if let Some(o) = &mut self.observer {
            o.flush()?;
        }
        if let Some(trail) = &self.trail {
            trail.append(Kind::GatewayStopped, serde_json::json!({"reason": "input ended", "received": totals.received(), "forwarded_events": totals.forwarded_events(), "dropped": totals.dropped_total()}))?;
        }
        Ok(())
    }
}
