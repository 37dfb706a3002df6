//! The producing side: what a consumed record becomes, and what happens to it once it
//! is handed to librdkafka.
//!
//! [`Records`] runs the stage (the engine, or the bench's bare pass-through) over one
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
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, ProducerContext, ThreadedProducer};

use super::offsets::{Ack, Tp, Watermarks};
use super::stats::ProducerStats;
use super::{Stage, Throttle};
use crate::config::Delivery;
use crate::engine::{DropReason, Dropped, Engine, Outputs, Verdict};
use crate::reload::Engines;
use crate::event::{proto, Format, Malformed};
use crate::tally::Tally;

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
        super::log_librdkafka(&self.shared.throttle, "producer", level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        super::error_librdkafka(&self.shared.throttle, "producer", &error, reason);
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

enum Made {
    /// Outputs, each a range of `encoded` (protobuf) or of the engine's buffer (JSON).
    Outputs,
    Quarantine,
    PassThrough,
    Nothing,
}

/// Turns consumed records into records to produce, reusing its buffers.
pub struct Records {
    stage: Stage,
    /// The engine deciding the current batch, and the generation it came with.
    engine: Option<Arc<Engine>>,
    generation: u64,
    input: Format,
    output: Format,
    outputs: Outputs,
    encoded: Vec<u8>,
    ranges: Vec<Range<usize>>,
    /// Per purpose: its topic and its headers.
    topics: Vec<String>,
    headers: Vec<OwnedHeaders>,
    quarantine_topic: String,
    quarantine_headers: OwnedHeaders,
    note: Vec<u8>,
    made: Made,
    /// This batch's counts and the time spent enforcing it (see [`Records::take_batches`]).
    tally: Option<Tally>,
    busy: Duration,
    /// Batches ended by a reload, not yet handed over.
    finished: Vec<Batch>,
}

/// What one engine decided over a stretch of records.
pub struct Batch {
    pub engine: Arc<Engine>,
    pub tally: Tally,
    pub busy: Duration,
}

impl Records {
    pub fn new(stage: Stage, input: Format, output: Format, quarantine_topic: &str) -> Records {
        let (engine, generation) = match &stage {
            Stage::Enforce(engines) => (Some(engines.current()), engines.generation()),
            Stage::PassThrough { .. } => (None, 0),
        };
        let mut records = Records {
            stage,
            engine: None,
            generation,
            input,
            output,
            outputs: Outputs::default(),
            encoded: Vec::new(),
            ranges: Vec::new(),
            topics: Vec::new(),
            headers: Vec::new(),
            quarantine_topic: quarantine_topic.to_string(),
            quarantine_headers: OwnedHeaders::new(),
            note: Vec::new(),
            made: Made::Nothing,
            tally: None,
            busy: Duration::ZERO,
            finished: Vec::new(),
        };
        if let Some(engine) = engine {
            records.use_engine(engine);
        }
        records
    }

    /// Topics, headers and a fresh tally for `engine`'s agreement.
    fn use_engine(&mut self, engine: Arc<Engine>) {
        let a = engine.agreement();
        let version = a.version.to_string();
        let base = || {
            OwnedHeaders::new_with_capacity(3)
                .insert(Header { key: "accord-agreement", value: Some(a.id.as_bytes()) })
                .insert(Header { key: "accord-version", value: Some(version.as_bytes()) })
        };
        self.headers = a.purposes.iter().map(|p| base().insert(Header { key: "accord-purpose", value: Some(p.name.as_bytes()) })).collect();
        self.topics = a.purposes.iter().map(|p| p.topic.clone()).collect();
        self.quarantine_headers = base();
        self.tally = Some(Tally::new(a));
        self.engine = Some(engine);
    }

    /// A new agreement is in force: the batch so far is finished, the next is its.
    fn reloaded(&mut self, engines: Arc<dyn Engines + Send + Sync>) {
        self.generation = engines.generation();
        let next = engines.current();
        if let (Some(engine), Some(tally)) = (self.engine.take(), self.tally.take()) {
            self.finished.push(Batch { engine, tally, busy: std::mem::take(&mut self.busy) });
        }
        self.use_engine(next);
    }

    /// Runs the stage over one consumed record; returns how many records to produce.
    pub fn process(&mut self, topic: &str, partition: i32, offset: i64, payload: &[u8]) -> usize {
        let engines = match &self.stage {
            Stage::Enforce(engines) => engines,
            Stage::PassThrough { .. } => {
                self.made = Made::PassThrough;
                return 1;
            }
        };
        if engines.generation() != self.generation {
            let engines = engines.clone();
            self.reloaded(engines);
        }
        let engine = self.engine.clone().expect("an engine while enforcing");
        let started = Instant::now();
        let mut verdict = engine.process(payload, self.input, &mut self.outputs);
        if let Verdict::Forwarded(_) = verdict {
            if self.output == Format::Proto {
                self.encoded.clear();
                self.ranges.clear();
                let mut failed = false;
                for (_, json) in self.outputs.iter() {
                    let start = self.encoded.len();
                    if proto::from_output_json(json, false, &mut self.encoded).is_err() {
                        failed = true;
                        break;
                    }
                    self.ranges.push(start..self.encoded.len());
                }
                if failed {
                    // Fail closed: what cannot be encoded does not leave.
                    self.outputs.clear();
                    verdict = Verdict::Dropped(Dropped { reason: DropReason::Malformed, category: None, malformed: Some(Malformed::NotProtobuf) });
                }
            }
        }
        if let Some(t) = &mut self.tally {
            t.add(&verdict, &self.outputs);
        }
        self.busy += started.elapsed();
        match verdict {
            Verdict::Forwarded(_) => {
                self.made = Made::Outputs;
                self.outputs.items.len()
            }
            Verdict::Dropped(Dropped { malformed: Some(why), .. }) => {
                self.made = Made::Quarantine;
                self.note.clear();
                let a = engine.agreement();
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
            Verdict::Dropped(_) => {
                self.made = Made::Nothing;
                0
            }
        }
    }

    /// The `i`th record to produce for the record last processed (`key` and `payload`
    /// are that record's, for the pass-through).
    pub fn get<'a>(&'a self, i: usize, key: Option<&'a [u8]>, payload: &'a [u8]) -> Out<'a> {
        match self.made {
            Made::Outputs => {
                let o = &self.outputs.items[i];
                let payload = match self.output {
                    Format::Json => self.outputs.payload(o),
                    Format::Proto => &self.encoded[self.ranges[i].clone()],
                };
                Out {
                    topic: &self.topics[o.purpose as usize],
                    key: self.outputs.key(o),
                    payload,
                    headers: Some(&self.headers[o.purpose as usize]),
                }
            }
            Made::Quarantine => Out { topic: &self.quarantine_topic, key: None, payload: &self.note, headers: Some(&self.quarantine_headers) },
            Made::PassThrough => {
                let Stage::PassThrough { topic } = &self.stage else { unreachable!() };
                Out { topic, key, payload, headers: None }
            }
            Made::Nothing => unreachable!("no record to produce"),
        }
    }

    /// Hands over the batches so far (one per agreement in force since the last
    /// call; none for the pass-through), and starts a new batch.
    pub fn take_batches(&mut self) -> Vec<Batch> {
        let mut out = std::mem::take(&mut self.finished);
        if let (Some(engine), Some(t)) = (&self.engine, &mut self.tally) {
            let fresh = Tally::new(engine.agreement());
            out.push(Batch { engine: engine.clone(), tally: std::mem::replace(t, fresh), busy: std::mem::take(&mut self.busy) });
        }
        out
    }
}
