//! The flags that let file mode report to operators and auditors: `--admin` (metrics
//! and health over HTTP) and `--audit` (the hash-chained trail).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use accord::admin::{self, Health, Metrics};
use accord::agreement::Agreement;
use accord::audit::{self, AuditTrail, Kind};
use accord::observe::Observer;

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
    pub observer: Observer,
    pub trail: Option<Arc<AuditTrail>>,
}

impl ObserveArgs {
    /// Starts the admin server and opens the trail (writing `gateway_started` and
    /// `agreement_loaded`), as asked.
    pub fn start(&self, agreement: &Arc<Agreement>, mode: &str, input: &str) -> Result<Observing, Failure> {
        let metrics = (self.admin.is_some() || self.audit.is_some()).then(|| Metrics::new(agreement, input));
        if let Some(m) = &metrics {
            m.set_in_force(true);
            admin::count_reload(true);
        }
        if let Some(addr) = self.admin {
            let health = Health::new(false);
            health.set_agreement(true);
            let bound = admin::spawn(addr, health).map_err(|e| Failure::Input(anyhow::anyhow!("cannot serve the admin address {addr}: {e}")))?;
            eprintln!("accord: serving /metrics, /healthz and /readyz on http://{bound}");
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
        let observer = Observer::new(agreement.clone(), metrics, trail.clone(), Duration::from_secs(self.audit_interval));
        Ok(Observing { observer, trail })
    }
}

impl Observing {
    /// The last counters and `gateway_stopped`.
    pub fn finish(mut self, totals: &accord::tally::Tally) -> Result<(), Failure> {
        self.observer.flush()?;
        if let Some(trail) = &self.trail {
            trail.append(Kind::GatewayStopped, serde_json::json!({"reason": "input ended", "received": totals.received, "forwarded_events": totals.forwarded_events, "dropped": totals.dropped_total()}))?;
        }
        Ok(())
    }
}
