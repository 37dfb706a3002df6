//! Kafka mode: the thin shell that consumes raw sensor topics, runs the engine on
//! each record and produces what it returns to each purpose's topic (SPEC 4).
//!
//! - [`offsets`]: per-partition watermarks: the offset that may be committed, given
//!   which outputs are acknowledged. Pure.
//! - [`sink`]: a consumed record becomes records to produce (outputs or a quarantine
//!   note); delivery reports come back and move the watermarks.
//! - [`source`]: the consumer's context: rebalances (drain and commit what is done for
//!   revoked partitions) and librdkafka's logs.
//! - [`stats`]: librdkafka's statistics as metrics (consumer lag, producer queue,
//!   failed deliveries).
//! - [`audit_topic`]: the audit trail's copy on a topic, and its verification.
//! - [`at_least_once`] and [`exactly_once`]: the two loops, one per delivery mode.
//!
//! One thread consumes, runs the enforcement step ([`crate::run::enforce`]) and produces; librdkafka's own threads fetch, send
//! and report. Work in flight is bounded by `limits.max_in_flight` outputs (above it the
//! assigned partitions are paused, and still polled so the group membership lives) and
//! by librdkafka's queues, so memory stays flat while the broker is slow or away.
//! librdkafka is tuned for throughput here ([`consumer_config`], [`producer_config`]);
//! every property can be overridden from the configuration.
//!
//! What the pipeline does is logged through `tracing` (assignments, revokes, retries,
//! librdkafka's warnings), never what it carries: no event, key or property value.

pub mod at_least_once;
pub mod audit_topic;
pub mod exactly_once;
pub mod offsets;
pub mod sink;
pub mod source;
pub mod stall;
pub mod stats;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::KafkaError;

use crate::config::{Delivery, Kafka};
use crate::agreement::Agreement;
use crate::engine::Engine;
use crate::report::tally::Totals;
use crate::run::reload::Engines;
use crate::report::tally::Tally;

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

/// The consumer's properties: the gateway's defaults, then the user's, then what the
/// delivery mode requires.
pub fn consumer_config(k: &Kafka) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("client.id", "accord")
        // Without a committed offset, start from the oldest retained record: a new
        // gateway enforces what is there rather than skipping it.
        .set("auto.offset.reset", "earliest")
        // Incremental rebalances: a replica joining or leaving moves only the
        // partitions that change hands; the others keep flowing.
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("enable.partition.eof", "false")
        // The prefetch queue is what keeps the loop fed while the broker answers
        // fetches; librdkafka's 64 MB (its default, written out here) measured
        // 1.6x the throughput of 16 MB, with a bounded memory cost.
        .set("queued.max.messages.kbytes", "65536")
        // Answer a fetch within 100 ms even when little has arrived (default 500).
        .set("fetch.wait.max.ms", "100")
        // Lag per partition for `/metrics` ([`stats`]).
        .set("statistics.interval.ms", stats::DEFAULT_INTERVAL_MS);
    for (name, value) in &k.consumer {
        c.set(name, value.expose());
    }
    c.set("bootstrap.servers", &k.brokers).set("group.id", &k.group).set("enable.auto.offset.store", "false");
    match k.delivery {
        Delivery::AtLeastOnce => {
            // librdkafka commits the offsets we store (only done ones), on this
            // interval and when partitions are revoked or the consumer closes.
            c.set("enable.auto.commit", "true").set("auto.commit.interval.ms", k.limits.commit_interval.as_millis().to_string());
        }
        Delivery::ExactlyOnce => {
            c.set("enable.auto.commit", "false").set("isolation.level", "read_committed");
        }
    }
    c
}

/// The producer's properties, likewise.
pub fn producer_config(k: &Kafka) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("client.id", "accord")
        // Batching for throughput: wait up to 20 ms to fill batches of up to 1 MB;
        // lz4 is cheap on CPU and shrinks JSON several times on the wire and disk.
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("compression.type", "lz4")
        // Bound the send queue (librdkafka's default is 1 GB): the gateway's own
        // limit (`limits.max_in_flight`, 100 000 outputs) pauses the input first.
        .set("queue.buffering.max.kbytes", "131072")
        .set("queue.buffering.max.messages", "200000")
        // Queue depth for `/metrics` ([`stats`]).
        .set("statistics.interval.ms", stats::DEFAULT_INTERVAL_MS);
    for (name, value) in &k.producer {
        c.set(name, value.expose());
    }
    // Idempotence: acks=all, retries without duplicates or reordering.
    c.set("bootstrap.servers", &k.brokers).set("enable.idempotence", "true");
    if k.delivery == Delivery::ExactlyOnce {
        let id = k.transactional_id.clone().unwrap_or_else(|| crate::config::Config::default_transactional_id(&k.group));
        c.set("transactional.id", id);
    }
    c
}

/// Lets a repeated message through at most once every ten seconds.
#[derive(Default)]
pub struct Throttle(Mutex<HashMap<String, Instant>>);

impl Throttle {
    pub fn allow(&self, key: &str) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match seen.get(key) {
            Some(t) if now.duration_since(*t) < Duration::from_secs(10) => false,
            _ => {
                seen.insert(key.to_string(), now);
                true
            }
        }
    }
}

fn log_librdkafka(throttle: &Throttle, client: &str, level: RDKafkaLogLevel, fac: &str, message: &str) {
    if (level as i32) <= (RDKafkaLogLevel::Warning as i32) && throttle.allow(fac) {
        tracing::warn!("{client}: librdkafka {fac}: {message}");
    }
}

fn error_librdkafka(throttle: &Throttle, client: &str, error: &KafkaError, reason: &str) {
    if throttle.allow(&format!("error {error}")) {
        tracing::warn!("{client}: {error}: {reason}");
    }
}

/// `topic[0,1,2] other[4]`, for logs.
fn describe(tpl: &rdkafka::TopicPartitionList) -> String {
    let mut by_topic: Vec<(String, Vec<i32>)> = Vec::new();
    for e in tpl.elements() {
        match by_topic.iter_mut().find(|(t, _)| t == e.topic()) {
            Some((_, ps)) => ps.push(e.partition()),
            None => by_topic.push((e.topic().to_string(), vec![e.partition()])),
        }
    }
    let parts: Vec<String> = by_topic
        .into_iter()
        .map(|(t, mut ps)| {
            ps.sort_unstable();
            let ps: Vec<String> = ps.iter().map(i32::to_string).collect();
            format!("{t}[{}]", ps.join(","))
        })
        .collect();
    parts.join(" ")
}
