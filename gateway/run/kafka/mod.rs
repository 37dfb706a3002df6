//! Kafka mode: the thin shell that consumes raw sensor topics, runs the engine on
//! each record and produces what it returns to each purpose's topic (SPEC 4).
//!
//! - [`offsets`]: per-partition watermarks: the offset that may be committed, given
//!   which outputs are acknowledged. Pure.
//! - [`sink`]: a consumed record becomes records to produce (outputs or a quarantine
//!   note); delivery reports come back and move the watermarks.
//! - [`produce`]: a record handed to librdkafka, through either kind of producer.
//! - [`source`]: the consumer's context: rebalances (drain and commit what is done for
//!   revoked partitions) and librdkafka's logs.
//! - [`stats`]: librdkafka's statistics as metrics (consumer lag, producer queue,
//!   failed deliveries).
//! - [`audit_topic`]: the audit trail's copy on a topic, and its verification.
//! - [`client`]: librdkafka plumbing: properties in layers, subscribing, polling, logs.
//! - [`txn`]: the open transaction of exactly-once delivery.
//! - [`suppressions`]: the workers' suppressions topic, read by every replica.
//! - [`at_least_once`] and [`exactly_once`]: the two loops, one per delivery mode.
//!
//! One thread, the loop, consumes and produces (and, at-least-once, serves the
//! producer's delivery reports); librdkafka's own threads fetch and send. The
//! enforcement step ([`crate::run::enforce`]) runs on the loop's thread too, or, with
//! `limits.threads` above one, over that many threads a batch at a time
//! ([`sink::Records::enforce_batch`]), in both delivery modes; the loop alone
//! registers (or adds to the transaction) and produces each record, in consumption
//! order, so the watermarks, the transactions and per-partition order do not depend
//! on the threads.
//! Work in flight is bounded by `limits.max_in_flight` outputs (above it the
//! assigned partitions are paused, and still polled so the group membership lives) and
//! by librdkafka's queues, so memory stays flat while the broker is slow or away.
//! librdkafka is tuned for throughput ([`client::consumer_config`], [`client::producer_config`]);
//! every property can be overridden from the configuration.
//!
//! What the pipeline does is logged through `tracing` (assignments, revokes, retries,
//! librdkafka's warnings), never what it carries: no event, key or property value.

pub mod at_least_once;
pub mod audit_topic;
pub mod client;
pub mod exactly_once;
pub mod offsets;
pub mod produce;
pub mod sink;
pub mod source;
pub mod stall;
pub mod stats;
pub mod txn;
pub mod suppressions;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::KafkaError;

use crate::agreement::Agreement;
use crate::config::{Delivery, Kafka};
use crate::engine::Engine;
use crate::report::tally::{Tally, Totals};
use crate::run::reload::Engines;

/// Counts are handed to the metrics (and the audit trail's tally) at least this
/// often, so no counter is more than a second behind what was enforced (issue 13),
/// in both delivery modes, whatever `limits.commit_interval` is.
pub(crate) const REPORT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// A request to stop: set by a signal handler, read by the loop between records.
#[derive(Clone, Debug, Default)]
pub struct Shutdown(Arc<AtomicBool>);

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    pub fn request(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn requested(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Why the pipeline could not run or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create the Kafka {what}")]
    Client {
        what: &'static str,
        #[source]
        source: KafkaError,
    },
    #[error("cannot subscribe to the input topics")]
    Subscribe(#[source] KafkaError),
    #[error("the topic `{topic}` is both an input topic and {what}; the gateway would read its own output")]
    Loop { topic: String, what: String },
    #[error("the quarantine topic `{0}` is also a purpose's topic; malformed-event notes must not reach a purpose")]
    QuarantineIsPurpose(String),
    #[error("the transactional producer failed and cannot go on (the process should be restarted)")]
    Transaction(#[source] KafkaError),
    #[error("the Kafka consumer failed fatally and cannot go on (the process should be restarted)")]
    Fatal(#[source] KafkaError),
}

/// What a run did, when it stopped.
#[derive(Debug, Default)]
pub struct Summary {
    /// Records consumed and handled.
    pub records: u64,
    /// What was enforced, per agreement in force.
    pub totals: Totals,
    /// Outputs not acknowledged when the drain timed out; their records are consumed
    /// again after the restart (at-least-once).
    pub unacknowledged: usize,
}

/// Receives each batch's engine, tally and enforcement time.
pub type OnBatch = Box<dyn FnMut(&Engine, &Tally, Duration) + Send>;

/// One run of the gateway in Kafka mode.
pub struct Pipeline<'a> {
    pub kafka: &'a Kafka,
    /// The agreement in force: outputs to each purpose's topic, malformed events to
    /// quarantine. A reloaded agreement comes into force between two records.
    pub engines: Arc<dyn Engines + Send + Sync>,
    pub shutdown: Shutdown,
    /// Called with each batch's counts and the time spent enforcing it, about every
    /// `limits.commit_interval` (metrics, audit trail).
    pub on_batch: Option<OnBatch>,
    /// Told whether partitions are assigned (`/readyz`).
    pub health: Option<Arc<crate::report::admin::Health>>,
    /// The suppressions in force (SPEC 2.7), kept current by a [`suppressions::Follower`].
    pub suppressions: Option<crate::run::suppressions::Live>,
}

impl Pipeline<'_> {
    /// Runs until shutdown is requested, then drains, commits and returns.
    pub fn run(self) -> Result<Summary, Error> {
        check_agreement(self.kafka, self.engines.current().agreement())?;
        match self.kafka.delivery {
            Delivery::AtLeastOnce => at_least_once::run(self),
            Delivery::ExactlyOnce => exactly_once::run(self),
        }
    }
}

/// Refuses an agreement whose topics would loop: a purpose's topic that is an input
/// topic, or the quarantine topic. Checked at start and for every reloaded agreement.
pub fn check_agreement(k: &Kafka, a: &Agreement) -> Result<(), Error> {
    for p in &a.purposes {
        if k.topics.contains(&p.topic) {
            return Err(Error::Loop { topic: p.topic.clone(), what: format!("the topic of purpose `{}`", p.name) });
        }
        if p.topic == k.quarantine_topic {
            return Err(Error::QuarantineIsPurpose(k.quarantine_topic.clone()));
        }
    }
    if k.topics.contains(&k.quarantine_topic) {
        return Err(Error::Loop { topic: k.quarantine_topic.clone(), what: "the quarantine topic".into() });
    }
    Ok(())
}

