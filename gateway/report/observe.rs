//! Where each batch's tally goes: the metrics exporter at once, and the audit trail
//! as a `counters` record every interval. Shared by file mode and Kafka mode.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::report::admin::Metrics;
use crate::agreement::Agreement;
use crate::report::audit::{self, AuditError, AuditTrail, Kind};
use crate::report::tally::Tally;

/// Receives batches for one agreement.
pub struct Observer {
    agreement: Arc<Agreement>,
    metrics: Option<Metrics>,
    audit: Option<Arc<AuditTrail>>,
    interval: Duration,
    pending: Tally,
    since: DateTime<Utc>,
    last: Instant,
}

impl Observer {
    pub fn new(agreement: Arc<Agreement>, metrics: Option<Metrics>, audit: Option<Arc<AuditTrail>>, interval: Duration) -> Observer {
        let pending = Tally::new(&agreement);
        Observer { agreement, metrics, audit, interval, pending, since: Utc::now(), last: Instant::now() }
    }

    /// One batch: counted in the metrics now, in the trail at the next interval.
    pub fn batch(&mut self, t: &Tally, elapsed: Duration) -> Result<(), AuditError> {
        if let Some(m) = &self.metrics {
            m.record(t, elapsed);
        }
        if self.audit.is_some() {
            self.pending.merge(t);
            if self.last.elapsed() >= self.interval {
                self.flush()?;
            }
        }
        Ok(())
    }

    pub fn agreement(&self) -> &Arc<Agreement> {
        &self.agreement
    }

    /// The agreement is no longer in force: its last counters are written and its
    /// `accord_agreement_info` drops to 0.
    pub fn retire(mut self) -> Result<(), AuditError> {
        if let Some(m) = &self.metrics {
            m.set_in_force(false);
        }
        self.flush()
    }

    /// Writes the counters since the last record, if anything happened.
    pub fn flush(&mut self) -> Result<(), AuditError> {
        let now = Utc::now();
        if let Some(trail) = &self.audit {
            if self.pending.received > 0 {
                trail.append_at(Kind::Counters, audit::counters(&self.agreement, &self.pending, self.since, now), now)?;
            }
        }
        self.pending.reset();
        self.since = now;
        self.last = Instant::now();
        Ok(())
    }
}
