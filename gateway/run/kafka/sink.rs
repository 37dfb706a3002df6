//! The producing side: what a consumed record becomes, and what happens to it once it
//! is handed to librdkafka.
//!
//! [`Records`] runs the enforcement step ([`crate::run::enforce`]) over one
//! consumed record and lists the records to produce: one per output, to its purpose's
//! topic, keyed by the output's `subject_id` as output, with the `accord-*` headers and
//! none of the input's; or one quarantine note for a malformed event, which names the
//! source topic, partition, offset and reason and never holds the payload.
//!
//! [`SinkContext`] receives librdkafka's delivery reports on the producer's polling
//! thread. At-least-once: an acknowledgement moves the partition's watermark
//! ([`super::offsets`]); a failure keeps it where it is and queues the record for a
//! retry with backoff. Exactly-once: reports only count what is in flight; a failure
//! makes the transaction abort.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, ProducerContext, ThreadedProducer};

use super::offsets::{Ack, Tp, Watermarks};
use super::stats::ProducerStats;
use super::client::Throttle;
use super::OnBatch;
use crate::config::Delivery;
use crate::engine::DropReason;
use crate::event::Format;
use crate::run::enforce::{Batch, Encoding, Enforcer, Outcome};
use crate::report::tally::Totals;
use crate::run::reload::Engines;

/// The producer every mode uses: delivery reports are served on its own thread.
pub type Producer = ThreadedProducer<SinkContext>;

/// Which record an output belongs to, carried through librdkafka to its report.
#[derive(Clone, Copy, Debug)]
pub struct Ticket {
    pub tp: Tp,
    pub epoch: u32,
    pub offset: i64,
    /// Deliveries tried and failed so far.
    pub attempt: u16,
}

/// A record to produce that librdkafka does not hold: its queue was full, or its
/// delivery failed and waits for a retry.
pub struct Owned {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Option<OwnedHeaders>,
    pub ticket: Box<Ticket>,
    /// Not before (retries back off).
    pub due: Instant,
}

impl Owned {
    pub fn of(out: &Out<'_>, ticket: Box<Ticket>) -> Owned {
        Owned {
            topic: out.topic.to_string(),
            key: out.key.map(<[u8]>::to_vec),
            payload: out.payload.to_vec(),
            headers: out.headers.cloned(),
            ticket,
            due: Instant::now(),
        }
    }
}

/// State shared by the consumer loop, the rebalance callbacks and the delivery
/// callback.
pub struct Shared {
    pub delivery: Delivery,
    pub state: Mutex<State>,
    /// Signalled on a delivery report while someone waits for a drain.
    pub drained: Condvar,
    /// Outputs not yet acknowledged (a mirror of the watermarks' count, readable
    /// without the lock; exactly-once: outputs with the producer).
    pub outstanding: AtomicUsize,
    /// Exactly-once: a delivery failed in the current transaction.
    pub txn_failed: AtomicBool,
    throttle: Throttle,
}

pub struct State {
    pub marks: Watermarks,
    /// Failed deliveries waiting for their retry (at-least-once).
    pub retries: Vec<Owned>,
    /// Someone waits on [`Shared::drained`].
    pub draining: bool,
}

impl Shared {
    pub fn new(delivery: Delivery) -> Shared {
        Shared {
            delivery,
            state: Mutex::new(State { marks: Watermarks::new(), retries: Vec::new(), draining: false }),
            drained: Condvar::new(),
            outstanding: AtomicUsize::new(0),
            txn_failed: AtomicBool::new(false),
            throttle: Throttle::default(),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not wedge delivery: the data is counters.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    pub fn sync_outstanding(&self, state: &State) {
        self.outstanding.store(state.marks.outstanding(), Ordering::Relaxed);
    }
}

/// Backoff before retry `attempt` (1, 2, ...): 100 ms doubling up to 5 s.
pub fn backoff(attempt: u16) -> Duration {
    Duration::from_millis(100u64 << attempt.min(6)).min(Duration::from_secs(5))
}

/// The producer's context: delivery reports, librdkafka's own errors and statistics.
pub struct SinkContext {
    pub shared: Arc<Shared>,
    pub stats: ProducerStats,
}

impl SinkContext {
    pub fn new(shared: Arc<Shared>) -> SinkContext {
        SinkContext { shared, stats: ProducerStats::new() }
    }
}

impl ClientContext for SinkContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        super::client::log_librdkafka(&self.shared.throttle, "producer", level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        super::client::error_librdkafka(&self.shared.throttle, "producer", &error, reason);
    }

    fn stats_raw(&self, json: &[u8]) {
        self.stats.record(json);
    }
}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = Box<Ticket>;

    fn delivery(&self, result: &DeliveryResult<'_>, mut ticket: Box<Ticket>) {
        let shared = &*self.shared;
        if result.is_err() {
            self.stats.delivery_failed();
        }
        if shared.delivery == Delivery::ExactlyOnce {
            shared.outstanding.fetch_sub(1, Ordering::Relaxed);
            if let Err((e, m)) = result {
                shared.txn_failed.store(true, Ordering::Relaxed);
                if shared.throttle.allow("delivery") {
                    tracing::warn!("delivery to {} failed ({e}); the transaction will be aborted and its records consumed again", m.topic());
                }
            }
            return;
        }
        let mut state = shared.lock();
        match result {
            Ok(_) => {
                state.marks.acked(ticket.tp, ticket.epoch, ticket.offset);
            }
            Err((e, m)) => {
                if state.marks.failed(ticket.tp, ticket.epoch) == Ack::Counted {
                    ticket.attempt = ticket.attempt.saturating_add(1);
                    let due = Instant::now() + backoff(ticket.attempt);
                    if shared.throttle.allow("delivery") {
                        tracing::warn!(
                            "delivery to {} failed ({e}); retrying (attempt {}), and offsets of input partition {} wait for it",
                            m.topic(),
                            ticket.attempt + 1,
                            ticket.tp.partition
                        );
                    }
                    state.retries.push(Owned {
                        topic: m.topic().to_string(),
                        key: m.key().map(<[u8]>::to_vec),
                        payload: m.payload().unwrap_or_default().to_vec(),
                        headers: m.headers().map(|h| h.detach()),
                        ticket,
                        due,
                    });
                }
            }
        }
        shared.sync_outstanding(&state);
        if state.draining {
            shared.drained.notify_all();
        }
    }
}

/// Hands one record to librdkafka; on failure gives the ticket back.
pub fn send(producer: &Producer, out: &Out<'_>, ticket: Box<Ticket>) -> Result<(), (KafkaError, Box<Ticket>)> {
    let mut record: BaseRecord<'_, [u8], [u8], Box<Ticket>> = BaseRecord::with_opaque_to(out.topic, ticket).payload(out.payload);
    if let Some(key) = out.key {
        record = record.key(key);
    }
    if let Some(h) = out.headers {
        record = record.headers(h.clone());
    }
    producer.send(record).map_err(|(e, r)| (e, r.delivery_opaque))
}

/// Hands a held record to librdkafka again; on failure gives it back (boxed: the
/// error path is the rare one).
pub fn send_owned(producer: &Producer, o: Owned) -> Result<(), Box<(KafkaError, Owned)>> {
    let mut record: BaseRecord<'_, [u8], [u8], Box<Ticket>> = BaseRecord::with_opaque_to(&o.topic, o.ticket).payload(&o.payload[..]);
    if let Some(key) = &o.key {
        record = record.key(&key[..]);
    }
    if let Some(h) = &o.headers {
        record = record.headers(h.clone());
    }
    match producer.send(record) {
        Ok(()) => Ok(()),
        Err((e, r)) => {
            let ticket = r.delivery_opaque;
            Err(Box::new((e, Owned { ticket, ..o })))
        }
    }
}

pub fn queue_full(e: &KafkaError) -> bool {
    matches!(e, KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull))
}

/// Records held back while librdkafka's queue is full, in order.
pub type Held = VecDeque<Owned>;

// ------------------------------------------------------------ the records --

/// One record to produce, borrowed from [`Records`] or from the consumed record.
pub struct Out<'a> {
    pub topic: &'a str,
    pub key: Option<&'a [u8]>,
    pub payload: &'a [u8],
    pub headers: Option<&'a OwnedHeaders>,
}

/// Turns consumed records into records to produce: the enforcement step, then the
/// topics, keys and headers Kafka needs.
pub struct Records {
    enforcer: Enforcer,
    /// The outcome of the record last processed.
    outcome: Outcome,
    /// Per purpose of the agreement in force: its topic and its headers.
    topics: Vec<String>,
    headers: Vec<OwnedHeaders>,
    quarantine_topic: String,
    quarantine_headers: OwnedHeaders,
    note: Vec<u8>,
}

impl Records {
    /// Enforces under the suppressions this cell holds (SPEC 2.7).
    /// The records a pipeline makes: its agreement, formats, framing and suppressions.
    pub fn for_pipeline(k: &crate::config::Kafka, engines: Arc<dyn Engines + Send + Sync>, suppressions: Option<crate::run::suppressions::Live>) -> Records {
        let mut records = Records::new(engines, k.input_format, k.output_format, &k.quarantine_topic);
        records.set_framing(k.input_framing, k.output_schema_id);
        if let Some(live) = suppressions {
            records.set_suppressions(live);
        }
        records
    }

    pub fn set_suppressions(&mut self, live: crate::run::suppressions::Live) {
        self.enforcer.set_suppressions(live);
    }

    pub fn new(engines: Arc<dyn Engines + Send + Sync>, input: Format, output: Format, quarantine_topic: &str) -> Records {
        let enforcer = Enforcer::new(engines, input, Encoding { format: output, length_delimited: false });
        let mut records = Records {
            enforcer,
            outcome: Outcome::Drop,
            topics: Vec::new(),
            headers: Vec::new(),
            quarantine_topic: quarantine_topic.to_string(),
            quarantine_headers: OwnedHeaders::new(),
            note: Vec::new(),
        };
        records.use_agreement();
        records
    }

    /// The Confluent wire format on the input and the output (SPEC 4).
    pub fn set_framing(&mut self, input: crate::event::wire::Framing, output_schema_id: Option<u32>) {
        self.enforcer.set_framing(input, output_schema_id);
    }

    /// Topics and headers for the agreement in force.
    fn use_agreement(&mut self) {
        let a = self.enforcer.engine().agreement();
        let version = a.version.to_string();
        let base = || {
            OwnedHeaders::new_with_capacity(3)
                .insert(Header { key: "accord-agreement", value: Some(a.id.as_bytes()) })
                .insert(Header { key: "accord-version", value: Some(version.as_bytes()) })
        };
        self.headers = a.purposes.iter().map(|p| base().insert(Header { key: "accord-purpose", value: Some(p.name.as_bytes()) })).collect();
        self.topics = a.purposes.iter().map(|p| p.topic.clone()).collect();
        self.quarantine_headers = base();
    }

    /// Runs the enforcement step over one consumed record; returns how many records
    /// to produce.
    pub fn process(&mut self, topic: &str, partition: i32, offset: i64, payload: &[u8]) -> usize {
        if self.enforcer.refresh() {
            self.use_agreement();
        }
        self.outcome = self.enforcer.enforce(payload);
        match self.outcome {
            Outcome::Forward(n) => n,
            Outcome::Quarantine(why) => {
                self.note.clear();
                let a = self.enforcer.engine().agreement();
                let note = serde_json::json!({
                    "topic": topic,
                    "partition": partition,
                    "offset": offset,
                    "reason": DropReason::Malformed.as_str(),
                    "detail": why.to_string(),
                    "agreement": a.id,
                    "version": a.version,
                });
                serde_json::to_writer(&mut self.note, &note).expect("a JSON value serialises");
                1
            }
            Outcome::Drop => 0,
        }
    }

    /// The `i`th record to produce for the record last processed.
    pub fn get(&self, i: usize) -> Out<'_> {
        match self.outcome {
            Outcome::Forward(_) => {
                let o = self.enforcer.output(i);
                Out { topic: &self.topics[o.purpose as usize], key: o.key, payload: o.payload, headers: Some(&self.headers[o.purpose as usize]) }
            }
            Outcome::Quarantine(_) => Out { topic: &self.quarantine_topic, key: None, payload: &self.note, headers: Some(&self.quarantine_headers) },
            Outcome::Drop => unreachable!("no record to produce"),
        }
    }

    /// A new agreement came into force with the record last processed: hand the
    /// batches over before its outputs are produced, so `accord_agreement_info`
    /// switches with the first output of the new version.
    pub fn reloaded(&self) -> bool {
        self.enforcer.has_finished()
    }

    /// Hands over the batches so far (one per agreement in force since the last
    /// call), and starts a new batch.
    pub fn take_batches(&mut self) -> Vec<Batch> {
        self.enforcer.take_batches()
    }
}

/// Where batches go: the run's total, and whoever reports them (metrics, audit).
pub struct Report {
    pub total: Totals,
    on_batch: Option<OnBatch>,
}

impl Report {
    pub fn new(on_batch: Option<OnBatch>) -> Report {
        Report { total: Totals::default(), on_batch }
    }

    /// Hands over every batch the records have finished, and starts a new one.
    pub fn hand_over(&mut self, records: &mut Records) {
        for b in records.take_batches() {
            if let Some(f) = &mut self.on_batch {
                f(&b.engine, &b.tally, b.busy);
            }
            self.total.add(b.engine.agreement(), &b.tally);
        }
    }
}
