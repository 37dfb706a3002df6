//! Where each batch's tally goes: the metrics exporter at once, and the audit trail
//! as a `counters` record every interval. Shared by file mode and Kafka mode.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::report::admin::Metrics;
use crate::agreement::Agreement;
use crate::report::audit::{self, AuditError, AuditTrail, Kind};
use crate::report::tally::Tally;

/// Receives batches from whichever agreement is in force: a new agreement gets its own
/// metric handles and counters records, and the one it replaces is retired (its last
/// counters written, its `accord_agreement_info` set to 0). The reload itself is
/// recorded by [`crate::run::reload`].
pub struct Observers {
    observer: Observer,
    trail: Option<Arc<AuditTrail>>,
    /// The `input` label of the metrics, when metrics are kept.
    metrics: Option<String>,
    interval: Duration,
}

impl Observers {
    /// Starts with the agreement in force; `metrics` is the input label, when metrics are kept.
    pub fn new(agreement: Arc<Agreement>, metrics: Option<&str>, trail: Option<Arc<AuditTrail>>, interval: Duration) -> Observers {
        let handles = metrics.map(|input| Observers::handles(&agreement, input));
        Observers { observer: Observer::new(agreement, handles, trail.clone(), interval), trail, metrics: metrics.map(str::to_string), interval }
    }

    fn handles(agreement: &Agreement, input: &str) -> Metrics {
        let m = Metrics::new(agreement, input);
        m.set_in_force(true);
        m
    }

    /// One batch, decided by `engine`'s agreement.
    pub fn batch(&mut self, engine: &crate::engine::Engine, t: &Tally, elapsed: Duration) -> Result<(), AuditError> {
        if !Arc::ptr_eq(self.observer.agreement(), engine.agreement()) {
            let metrics = self.metrics.as_deref().map(|input| Observers::handles(engine.agreement(), input));
            let next = Observer::new(engine.agreement().clone(), metrics, self.trail.clone(), self.interval);
            std::mem::replace(&mut self.observer, next).retire()?;
        }
        self.observer.batch(t, elapsed)
    }

    /// Writes the counters since the last record.
    pub fn flush(&mut self) -> Result<(), AuditError> {
        self.observer.flush()
    }
}

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
