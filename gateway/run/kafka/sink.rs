//! The producing side: what a consumed record becomes, and what happens to it once it
//! is handed to librdkafka.
//!
//! [`Records`] runs the enforcement step ([`crate::run::enforce`]) over one
//! consumed record and lists the records to produce: one per output, to its purpose's
//! topic, keyed by the output's `subject_id` as output, with the `accord-*` headers and
//! none of the input's; or one quarantine note for a malformed event, which names the
//! source topic, partition, offset and reason and never holds the payload.
//!
//! [`SinkContext`] receives librdkafka's delivery reports. At-least-once: the loop
//! serves them on its own thread ([`Shared::serve`]), where librdkafka allocated the
//! records it now frees; an acknowledgement moves the partition's watermark
//! ([`super::offsets`]) and gives the output's ticket back ([`Tickets`]); a failure
//! keeps the watermark where it is and queues the record for a retry with backoff.
//! Exactly-once: reports arrive on the producer's own thread and only count what is in
//! flight; a failure makes the transaction abort.

use std::collections::VecDeque;
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseProducer, ProducerContext, ThreadedProducer};

use super::offsets::{Ack, Tp, Watermarks};
use super::produce::{opaque, split, Headers, Route, Sender, Spares};
use super::stats::ProducerStats;
use super::client::Throttle;
use super::OnBatch;
use crate::config::Delivery;
use crate::engine::DropReason;
use crate::event::Format;
use crate::run::enforce::{Batch, Encoding, Enforcer, Outcome};
use super::stall::Persisting;
use crate::report::admin::{Health, Stuck};
use crate::report::tally::Totals;
use crate::run::reload::Engines;

/// Exactly-once's producer: delivery reports are served on its own thread.
pub type Producer = ThreadedProducer<SinkContext>;

/// At-least-once's producer: its delivery reports are served by the consumer loop
/// ([`Shared::serve`]), on the thread that produced the records. librdkafka allocates
/// each record (and its headers) on the producing thread and frees it once its report
/// is served: on one thread, the allocator's locks are not contended, and the report's
/// work on the watermarks needs no other thread's wake-up.
pub type LoopProducer = BaseProducer<SinkContext>;

/// Serves the delivery reports that are ready, waiting at most the given time for the
/// first; set by a loop that polls its producer itself.
pub type Server = Box<dyn Fn(Duration) + Send + Sync>;

/// Which record an output belongs to, carried through librdkafka to its report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket {
    pub tp: Tp,
    pub epoch: u32,
    pub offset: i64,
    /// Deliveries tried and failed so far.
    pub attempt: u16,
}

/// The tickets of the outputs registered and not yet acknowledged, each under a
/// number: what librdkafka carries as an output's delivery opaque is that number (a
/// pointer-sized integer), so producing an output allocates nothing for its ticket.
/// A number is taken when its record is registered (under the lock the loop takes for
/// that anyway) and given back when its output is acknowledged, or dropped with its
/// revoked partition; a failed output keeps it through its retries. Freed numbers are
/// reused, so the table stays as large as the most outputs ever in flight.
///
/// A ticket whose delivery keeps failing for longer than `stuck_after` (counted from
/// its first failure, looked at on each of its failures) is stuck until its number is
/// given back: [`Tickets::stuck`] counts those.
#[derive(Debug)]
pub struct Tickets {
    slots: Vec<Ticket>,
    /// Per number: since when its delivery fails, and whether it is stuck.
    failing: Vec<Persisting>,
    free: Vec<usize>,
    stuck: usize,
    stuck_after: Duration,
    /// Whether some ticket was stuck when [`Tickets::stuck_changed`] last looked.
    told: bool,
}

impl Default for Tickets {
    fn default() -> Tickets {
        Tickets::new(Duration::MAX)
    }
}

impl Tickets {
    /// Tickets that are stuck once their delivery has kept failing for `stuck_after`.
    pub fn new(stuck_after: Duration) -> Tickets {
        Tickets { slots: Vec::new(), failing: Vec::new(), free: Vec::new(), stuck: 0, stuck_after, told: false }
    }

    pub fn set_stuck_after(&mut self, after: Duration) {
        self.stuck_after = after;
    }

    /// Takes a number for `t`.
    pub fn insert(&mut self, t: Ticket) -> usize {
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = t;
                i
            }
            None => {
                self.slots.push(t);
                self.failing.push(Persisting::default());
                self.slots.len() - 1
            }
        }
    }

    pub fn get(&self, i: usize) -> Ticket {
        self.slots[i]
    }

    /// Counts one more failed delivery of ticket `i`; returns the attempts so far.
    pub fn failed(&mut self, i: usize) -> u16 {
        let t = &mut self.slots[i];
        t.attempt = t.attempt.saturating_add(1);
        if self.failing[i].failed(Instant::now(), self.stuck_after) {
            self.stuck += 1;
        }
        t.attempt
    }

    /// Gives number `i` back.
    pub fn remove(&mut self, i: usize) -> Ticket {
        debug_assert!(!self.free.contains(&i), "ticket {i} given back twice");
        if self.failing[i].succeeded() {
            self.stuck -= 1;
        }
        self.free.push(i);
        self.slots[i]
    }

    /// Tickets taken whose delivery has kept failing for longer than `stuck_after`.
    pub fn stuck(&self) -> usize {
        self.stuck
    }

    /// Whether some ticket is stuck, if that changed since the last look.
    fn stuck_changed(&mut self) -> Option<bool> {
        let now = self.stuck > 0;
        (now != std::mem::replace(&mut self.told, now)).then_some(now)
    }

    /// Tickets taken and not given back.
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A record to produce that librdkafka does not hold: its queue was full, or its
/// delivery failed and waits for a retry.
pub struct Owned {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Option<Headers>,
    /// The number of the route its headers are of (0: none to keep).
    pub route: u32,
    /// Its number in [`State::tickets`].
    pub ticket: usize,
    /// Not before (retries back off).
    pub due: Instant,
}

impl Owned {
    pub fn of(out: &Out<'_>, ticket: usize) -> Owned {
        Owned {
            topic: out.route.topic.clone(),
            key: out.key.map(<[u8]>::to_vec),
            payload: out.payload.to_vec(),
            headers: Some(out.route.headers.copy()),
            route: out.route.id(),
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
    /// At-least-once: delivery reports handled so far.
    reports: AtomicU64,
    /// Serves delivery reports on the calling thread, when the loop polls its producer
    /// (at-least-once); otherwise they arrive on the producer's own thread.
    server: OnceLock<Server>,
    /// At-least-once: told while some output's delivery is stuck ([`Tickets::stuck`]),
    /// so that `/healthz` fails and the gateway is restarted.
    health: OnceLock<Arc<Health>>,
    throttle: Throttle,
}

pub struct State {
    pub marks: Watermarks,
    /// At-least-once: the tickets of the outputs not yet acknowledged.
    pub tickets: Tickets,
    /// Failed deliveries waiting for their retry (at-least-once).
    pub retries: Vec<Owned>,
    /// Someone waits on [`Shared::drained`].
    pub draining: bool,
    /// The headers of acknowledged outputs, taken back from their reports for the
    /// loop to send again ([`Spares`]).
    pub spares: Spares,
}

impl Shared {
    pub fn new(delivery: Delivery) -> Shared {
        Shared {
            delivery,
            state: Mutex::new(State { marks: Watermarks::new(), tickets: Tickets::default(), retries: Vec::new(), draining: false, spares: Spares::default() }),
            drained: Condvar::new(),
            outstanding: AtomicUsize::new(0),
            txn_failed: AtomicBool::new(false),
            reports: AtomicU64::new(0),
            server: OnceLock::new(),
            health: OnceLock::new(),
            throttle: Throttle::default(),
        }
    }

    /// At-least-once: an output whose delivery keeps failing for `after` is stuck, and
    /// while one is, `health` says the gateway is not live.
    pub fn watch_stuck(&self, after: Duration, health: Option<Arc<Health>>) {
        self.lock().tickets.set_stuck_after(after);
        if let Some(health) = health {
            let _ = self.health.set(health);
        }
    }

    /// After a failure counted on a ticket (of input partition `partition`, to `topic`):
    /// says so once if a delivery is now stuck.
    pub fn note_stuck(&self, state: &mut State, topic: &str, partition: i32, e: &KafkaError) {
        if state.tickets.stuck_changed() == Some(true) {
            let after = state.tickets.stuck_after;
            tracing::error!(
                "the delivery of an output to {topic} has kept failing for longer than limits.stuck_after ({after:?}; the last error: {e}), and offsets of input partition {partition} wait for it: /healthz fails until it lands, so that the gateway is restarted"
            );
            if let Some(h) = self.health.get() {
                h.set_stuck(Stuck::Delivery, true);
            }
        }
    }

    /// After a ticket was given back: says so once if no delivery is stuck any more.
    fn unstuck(&self, state: &mut State) {
        if state.tickets.stuck_changed() == Some(false) {
            tracing::info!("no delivery is stuck any more: /healthz no longer fails for it");
            if let Some(h) = self.health.get() {
                h.set_stuck(Stuck::Delivery, false);
            }
        }
    }

    /// The loop polls the producer itself: `server` serves its delivery reports.
    pub fn set_server(&self, server: Server) {
        if self.server.set(server).is_err() {
            unreachable!("one producer per pipeline");
        }
    }

    /// Whether the loop serves the delivery reports ([`Shared::serve`]); otherwise they
    /// arrive on the producer's own thread and signal [`Shared::drained`].
    pub fn serves(&self) -> bool {
        self.server.get().is_some()
    }

    /// Serves the delivery reports that are ready (waiting at most `wait` for the
    /// first), when the loop polls the producer; false when it does not. Call it
    /// without the state's lock: the reports take it.
    pub fn serve(&self, wait: Duration) -> bool {
        let Some(server) = self.server.get() else { return false };
        let mut handled = self.reports.load(Ordering::Relaxed);
        server(wait);
        // One event holds the reports of many records; serve until none is left.
        loop {
            let now = self.reports.load(Ordering::Relaxed);
            if now == handled {
                return true;
            }
            handled = now;
            server(Duration::ZERO);
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
    /// The number of the route the output's headers are of and (at-least-once) the
    /// output's number in [`State::tickets`] ([`opaque`]).
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        let shared = &*self.shared;
        if result.is_err() {
            self.stats.delivery_failed();
        }
        let (ticket, route) = split(opaque);
        if shared.delivery == Delivery::ExactlyOnce {
            shared.outstanding.fetch_sub(1, Ordering::Relaxed);
            if let Ok(m) = result {
                // Its headers go out again with a later output of its route.
                let mut state = shared.lock();
                if state.spares.wants(route) {
                    if let Some(h) = Headers::detach(m) {
                        state.spares.give(route, h);
                    }
                }
            }
            if let Err((e, m)) = result {
                shared.txn_failed.store(true, Ordering::Relaxed);
                if shared.throttle.allow("delivery") {
                    tracing::warn!("delivery to {} failed ({e}); the transaction will be aborted and its records consumed again", m.topic());
                }
            }
            return;
        }
        match result {
            Ok(m) => shared.acked(ticket, route, || Headers::detach(m)),
            Err((e, m)) => shared.failed(ticket, e, m.topic(), |ticket, due| Owned {
                topic: m.topic().to_string(),
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().unwrap_or_default().to_vec(),
                headers: Headers::detach(m),
                route,
                ticket,
                due,
            }),
        }
    }
}

impl Shared {
    /// At-least-once: the output under `ticket` was acknowledged; its number is given
    /// back and its partition's watermark may move. Its headers (a copy of route
    /// `route`'s, taken back by `headers`) are kept to go out again, if wanted.
    pub fn acked(&self, ticket: usize, route: u32, headers: impl FnOnce() -> Option<Headers>) {
        self.reports.fetch_add(1, Ordering::Relaxed);
        let mut state = self.lock();
        if state.spares.wants(route) {
            if let Some(h) = headers() {
                state.spares.give(route, h);
            }
        }
        let t = state.tickets.remove(ticket);
        state.marks.acked(t.tp, t.epoch, t.offset);
        self.unstuck(&mut state);
        self.reported(&state);
    }

    /// At-least-once: the delivery of the output under `ticket` (to `topic`) failed.
    /// Its partition's watermark waits, and `record` (given the ticket and when the
    /// retry is due) is queued for a retry; an output of a revoked partition is let go.
    pub fn failed(&self, ticket: usize, e: &KafkaError, topic: &str, record: impl FnOnce(usize, Instant) -> Owned) {
        self.reports.fetch_add(1, Ordering::Relaxed);
        let mut state = self.lock();
        let t = state.tickets.get(ticket);
        if state.marks.failed(t.tp, t.epoch) == Ack::Counted {
            let attempt = state.tickets.failed(ticket);
            let due = Instant::now() + backoff(attempt);
            if self.throttle.allow("delivery") {
                tracing::warn!(
                    "delivery to {topic} failed ({e}); retrying (attempt {}), and offsets of input partition {} wait for it",
                    attempt + 1,
                    t.tp.partition
                );
            }
            self.note_stuck(&mut state, topic, t.tp.partition, e);
            let o = record(ticket, due);
            state.retries.push(o);
        } else {
            state.tickets.remove(ticket);
            self.unstuck(&mut state);
        }
        self.reported(&state);
    }

    fn reported(&self, state: &State) {
        self.sync_outstanding(state);
        if state.draining {
            self.drained.notify_all();
        }
    }
}

/// Hands one record to librdkafka, with a copy of its route's headers from `spares`;
/// on failure gives the ticket back (and the copy to `spares`).
pub fn send(sender: &mut Sender, out: &Out<'_>, ticket: usize, spares: &mut Spares) -> Result<(), (KafkaError, usize)> {
    let route = out.route;
    let topic = route.topic_c().map_err(|e| (e, ticket))?;
    let headers = spares.take(route);
    sender.send(route.id(), topic, out.key, out.payload, Some(headers), opaque(ticket, route.id())).map_err(|(e, h)| {
        if let Some(h) = h {
            spares.give(route.id(), h);
        }
        (e, ticket)
    })
}

/// Hands a held record to librdkafka again; on failure gives it back (boxed: the
/// error path is the rare one).
pub fn send_owned(sender: &mut Sender, mut o: Owned) -> Result<(), Box<(KafkaError, Owned)>> {
    let topic = match CString::new(o.topic.as_str()) {
        Ok(topic) => topic,
        Err(e) => return Err(Box::new((KafkaError::Nul(e), o))),
    };
    match sender.send(0, &topic, o.key.as_deref(), &o.payload, o.headers.take(), opaque(o.ticket, o.route)) {
        Ok(()) => Ok(()),
        Err((e, h)) => {
            o.headers = h;
            Err(Box::new((e, o)))
        }
    }
}

pub fn queue_full(e: &KafkaError) -> bool {
    matches!(e, KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull))
}

/// Records held back while librdkafka's queue is full, in order.
pub type Held = VecDeque<Owned>;

// ------------------------------------------------------------ the records --

/// One record to produce, borrowed from [`Records`]: where it goes (its topic and
/// headers), its key and its payload.
pub struct Out<'a> {
    pub route: &'a Route,
    pub key: Option<&'a [u8]>,
    pub payload: &'a [u8],
}

/// Turns consumed records into records to produce: the enforcement step, then the
/// topics, keys and headers Kafka needs.
///
/// One record at a time ([`Records::process`], then [`Records::get`]), or a batch at a
/// time over several threads ([`Records::enforce_batch`], then [`Made::staged`] and
/// [`Made::get`] on [`Records::last`] for each record in consumption order). A batch is cut into chunks
/// of [`CHUNK`] consecutive records that the lanes (each an [`Enforcer`] with its own
/// buffers and pseudonym cache) claim one after another, the consumer loop's thread
/// being one of them: a lane that gets less of the CPU (a core shared with the broker
/// or another process) claims fewer chunks instead of holding the batch up. A batch
/// too small to split, or one lane, makes no thread hop. Every lane decides a batch
/// with the same agreement version: lane 0 takes a reloaded agreement between two
/// batches and the others follow it.
///
/// What a batch made ([`Made`]) is kept until the next batch after it is enforced, so
/// the loop can produce one batch while the lanes enforce the next
/// ([`Records::enforce_batch_while`]); it carries the topics and headers of the
/// agreement version that made it.
///
/// Lanes 1 and up run on a pool of threads started with the [`Records`] and kept for
/// its life (named `accord-lane-N`). A thread started per batch would pay for its
/// start at every batch, and would begin each one with the engine's per-thread
/// caches of member names empty.
pub struct Records {
    /// At least one; lane 0 also serves the one-record-at-a-time path.
    lanes: Vec<Lane>,
    /// The threads of lanes 1 and up (none with one lane).
    pool: Option<rayon::ThreadPool>,
    /// What the last batch made, and (while the next one is enforced) the one before.
    made: Made,
    before: Made,
    /// The topics and headers of the agreement in force.
    routes: Arc<Routes>,
    /// The one-record-at-a-time path: the outcome of the record last processed.
    outcome: Outcome,
    /// Batches enforced so far, and those of them spread over more than one thread.
    batches: u64,
    spread: u64,
    note: Vec<u8>,
}

/// Records in a chunk: what a lane claims at a time.
pub const CHUNK: usize = 32;

/// Chunks a batch needs per lane it is spread over. A small batch means the loop keeps
/// up with what is fetched: it stays on the loop's thread, where it costs no thread's
/// start; a batch gets large when the loop falls behind, and then it is spread.
pub const CHUNKS_PER_LANE: usize = 4;

/// Where the outputs of one agreement version go: each purpose's topic and headers,
/// and the quarantine's.
struct Routes {
    agreement: Arc<crate::agreement::Agreement>,
    /// Per purpose, in the agreement's order.
    purposes: Vec<Route>,
    quarantine: Route,
}

impl Routes {
    fn new(agreement: &Arc<crate::agreement::Agreement>, quarantine_topic: &str) -> Routes {
        let version = agreement.version.to_string();
        let (id, version) = (("accord-agreement", agreement.id.as_bytes()), ("accord-version", version.as_bytes()));
        Routes {
            agreement: agreement.clone(),
            purposes: agreement.purposes.iter().map(|p| Route::new(&p.topic, Headers::new(&[id, version, ("accord-purpose", p.name.as_bytes())]))).collect(),
            // Made last: every route of this agreement is numbered from the first purpose's.
            quarantine: Route::new(quarantine_topic, Headers::new(&[id, version])),
        }
    }

    /// The number of this agreement's first route: the routes of earlier agreements
    /// have smaller ones.
    fn first_id(&self) -> u32 {
        self.purposes.first().unwrap_or(&self.quarantine).id()
    }

    /// How many records to produce for `outcome`; writes a quarantine note into `note`.
    fn count(&self, outcome: Outcome, note: &mut Vec<u8>, topic: &str, partition: i32, offset: i64) -> usize {
        match outcome {
            Outcome::Forward(n) => n,
            Outcome::Quarantine(why) => {
                note.clear();
                let a = &self.agreement;
                let json = serde_json::json!({
                    "topic": topic,
                    "partition": partition,
                    "offset": offset,
                    "reason": DropReason::Malformed.as_str(),
                    "detail": why.to_string(),
                    "agreement": a.id,
                    "version": a.version,
                });
                serde_json::to_writer(&mut *note, &json).expect("a JSON value serialises");
                1
            }
            Outcome::Drop => 0,
        }
    }

    fn quarantine<'a>(&'a self, note: &'a [u8]) -> Out<'a> {
        Out { route: &self.quarantine, key: None, payload: note }
    }
}

/// What the lanes made of one batch: every record's outcome and outputs, readable in
/// consumption order ([`Made::staged`], then [`Made::get`]).
pub struct Made {
    /// Per lane, what it made of the chunks it claimed.
    parts: Vec<Part>,
    /// Per chunk: the lane that enforced it, and where its first record is in that
    /// lane's part.
    chunks: Vec<(usize, usize)>,
    routes: Arc<Routes>,
    /// The record made current by [`Made::staged`]: its outcome, its lane and where its
    /// outputs start in that lane's part; its quarantine note.
    outcome: Outcome,
    at: (usize, usize),
    note: Vec<u8>,
}

/// What one lane made of the chunks it claimed in a batch.
#[derive(Default)]
struct Part {
    /// Per record it enforced, in the order it did: its outcome and the end of its
    /// outputs in `outs`.
    made: Vec<(Outcome, usize)>,
    /// The chunks it claimed: their number and where their first record is in `made`.
    claimed: Vec<(usize, usize)>,
    outs: Vec<Staged>,
    /// The staged outputs' keys and payloads.
    bytes: Vec<u8>,
}

/// One output of a staged record: its purpose, and its key and payload in the lane's
/// bytes.
struct Staged {
    purpose: crate::agreement::PurposeId,
    key: Option<(usize, usize)>,
    payload: (usize, usize),
}

/// One enforcing thread's enforcer.
struct Lane {
    enforcer: Enforcer,
}

impl Lane {
    /// Claims chunks of the batch (through `next`, shared by the lanes) until none is
    /// left, and enforces each, keeping every record's outputs in `part`.
    fn enforce_claimed(&mut self, part: &mut Part, batch: &[&[u8]], next: &AtomicUsize) {
        part.made.clear();
        part.claimed.clear();
        part.outs.clear();
        part.bytes.clear();
        loop {
            let chunk = next.fetch_add(1, Ordering::Relaxed);
            let Some(records) = batch.chunks(CHUNK).nth(chunk) else { return };
            part.claimed.push((chunk, part.made.len()));
            for payload in records {
                let outcome = self.enforcer.enforce(payload);
                if let Outcome::Forward(n) = outcome {
                    for i in 0..n {
                        let o = self.enforcer.output(i);
                        let key = o.key.map(|k| stage(&mut part.bytes, k));
                        let payload = stage(&mut part.bytes, o.payload);
                        part.outs.push(Staged { purpose: o.purpose, key, payload });
                    }
                }
                part.made.push((outcome, part.outs.len()));
            }
        }
    }
}

fn stage(bytes: &mut Vec<u8>, b: &[u8]) -> (usize, usize) {
    let start = bytes.len();
    bytes.extend_from_slice(b);
    (start, bytes.len())
}

impl Made {
    fn new(lanes: usize, routes: Arc<Routes>) -> Made {
        Made { parts: (0..lanes).map(|_| Part::default()).collect(), chunks: Vec::new(), routes, outcome: Outcome::Drop, at: (0, 0), note: Vec::new() }
    }

    /// Where record `j` is: its lane and its place in that lane's part.
    fn place(&self, j: usize) -> (usize, usize) {
        let (lane, start) = self.chunks[j / CHUNK];
        (lane, start + j % CHUNK)
    }

    /// Makes record `j` of the batch (its place in the payloads enforced) the current
    /// one; returns how many records to produce for it, each then taken with
    /// [`Made::get`]. The rest name where it was consumed, for a quarantine note.
    pub fn staged(&mut self, j: usize, topic: &str, partition: i32, offset: i64) -> usize {
        let (lane, k) = self.place(j);
        let made = &self.parts[lane].made;
        let start = if k == 0 { 0 } else { made[k - 1].1 };
        self.outcome = made[k].0;
        self.at = (lane, start);
        self.routes.count(self.outcome, &mut self.note, topic, partition, offset)
    }

    /// How many records to produce for record `j` (without making it the current one).
    pub fn staged_count(&self, j: usize) -> usize {
        let (lane, k) = self.place(j);
        let made = &self.parts[lane].made;
        match made[k].0 {
            Outcome::Forward(_) => made[k].1 - if k == 0 { 0 } else { made[k - 1].1 },
            Outcome::Quarantine(_) => 1,
            Outcome::Drop => 0,
        }
    }

    /// The number below which no route of the agreement that made this batch is
    /// numbered ([`Spares::raise_floor`]).
    pub fn route_floor(&self) -> u32 {
        self.routes.first_id()
    }

    /// The `i`th record to produce for the current record.
    pub fn get(&self, i: usize) -> Out<'_> {
        match self.outcome {
            Outcome::Forward(_) => {
                let (lane, start) = self.at;
                let part = &self.parts[lane];
                let o = &part.outs[start + i];
                let p = o.purpose as usize;
                let slice = |(s, e): (usize, usize)| &part.bytes[s..e];
                Out { route: &self.routes.purposes[p], key: o.key.map(slice), payload: slice(o.payload) }
            }
            Outcome::Quarantine(_) => self.routes.quarantine(&self.note),
            Outcome::Drop => unreachable!("no record to produce"),
        }
    }
}

impl Records {
    /// The records a pipeline makes: its agreement, formats, framing and suppressions
    /// (SPEC 2.7), enforced by `lanes` lanes (at least one).
    pub fn for_pipeline(k: &crate::config::Kafka, engines: Arc<dyn Engines + Send + Sync>, suppressions: Option<crate::run::suppressions::Live>, lanes: usize) -> Records {
        let mut records = Records::with_lanes(engines, k.input_format, k.output_format, &k.quarantine_topic, lanes);
        records.set_framing(k.input_framing, k.output_schema_id);
        if let Some(live) = suppressions {
            records.set_suppressions(live);
        }
        records
    }

    /// Enforces under the suppressions this cell holds (SPEC 2.7).
    pub fn set_suppressions(&mut self, live: crate::run::suppressions::Live) {
        for lane in &mut self.lanes {
            lane.enforcer.set_suppressions(live.clone());
        }
    }

    pub fn new(engines: Arc<dyn Engines + Send + Sync>, input: Format, output: Format, quarantine_topic: &str) -> Records {
        Records::with_lanes(engines, input, output, quarantine_topic, 1)
    }

    pub fn with_lanes(engines: Arc<dyn Engines + Send + Sync>, input: Format, output: Format, quarantine_topic: &str, lanes: usize) -> Records {
        let encoding = Encoding { format: output, length_delimited: false };
        let mut lanes: Vec<Lane> = (0..lanes.max(1)).map(|_| Lane { enforcer: Enforcer::new(engines.clone(), input, encoding) }).collect();
        let pool = if lanes.len() > 1 {
            let built = rayon::ThreadPoolBuilder::new().num_threads(lanes.len() - 1).thread_name(|i| format!("accord-lane-{}", i + 1)).build();
            match built {
                Ok(pool) => Some(pool),
                Err(e) => {
                    tracing::warn!("could not start {} enforcing thread(s) ({e}); enforcing on the consumer loop's thread alone", lanes.len() - 1);
                    lanes.truncate(1);
                    None
                }
            }
        } else {
            None
        };
        // Lanes built one after another may have met a reload in between.
        let (first, rest) = lanes.split_first_mut().expect("at least one lane");
        for lane in rest {
            lane.enforcer.follow(&first.enforcer);
        }
        let routes = Arc::new(Routes::new(first.enforcer.engine().agreement(), quarantine_topic));
        Records {
            made: Made::new(lanes.len(), routes.clone()),
            before: Made::new(lanes.len(), routes.clone()),
            lanes,
            pool,
            routes,
            outcome: Outcome::Drop,
            batches: 0,
            spread: 0,
            note: Vec::new(),
        }
    }

    /// How many lanes enforce a batch.
    pub fn lanes(&self) -> usize {
        self.lanes.len()
    }

    /// How many batches were enforced so far, and how many of them on more than one
    /// thread.
    pub fn spread(&self) -> (u64, u64) {
        (self.batches, self.spread)
    }

    /// The Confluent wire format on the input and the output (SPEC 4).
    pub fn set_framing(&mut self, input: crate::event::wire::Framing, output_schema_id: Option<u32>) {
        for lane in &mut self.lanes {
            lane.enforcer.set_framing(input, output_schema_id);
        }
    }

    /// Takes up the agreement lane 0 has in force, if it changed; returns whether it did.
    fn refresh(&mut self) -> bool {
        if !self.lanes[0].enforcer.refresh() {
            return false;
        }
        let quarantine_topic = self.routes.quarantine.topic.clone();
        self.routes = Arc::new(Routes::new(self.lanes[0].enforcer.engine().agreement(), &quarantine_topic));
        true
    }

    /// Runs the enforcement step over one consumed record; returns how many records
    /// to produce.
    pub fn process(&mut self, topic: &str, partition: i32, offset: i64, payload: &[u8]) -> usize {
        self.refresh();
        self.outcome = self.lanes[0].enforcer.enforce(payload);
        self.routes.count(self.outcome, &mut self.note, topic, partition, offset)
    }

    /// Enforces a batch of consumed records (their payloads, in consumption order),
    /// spread over the lanes; returns whether a new agreement came into force with it
    /// (then hand the batches over before producing its first output). The outputs stay
    /// here until the next batch: take them record by record from [`Records::last`].
    pub fn enforce_batch(&mut self, payloads: &[&[u8]]) -> bool {
        self.enforce_batch_while(payloads, |_| {})
    }

    /// As [`Records::enforce_batch`], while `meanwhile` runs on the calling thread with
    /// what the batch before made: the other lanes start on this batch at once, and
    /// the calling thread joins them once `meanwhile` returns.
    pub fn enforce_batch_while(&mut self, payloads: &[&[u8]], meanwhile: impl FnOnce(&mut Made)) -> bool {
        let reloaded = self.refresh();
        let (first, rest) = self.lanes.split_first_mut().expect("at least one lane");
        for lane in rest.iter_mut() {
            lane.enforcer.follow(&first.enforcer);
        }
        std::mem::swap(&mut self.made, &mut self.before);
        self.made.routes = self.routes.clone();
        let chunks = payloads.len().div_ceil(CHUNK);
        let lanes = (chunks / CHUNKS_PER_LANE).clamp(1, self.lanes.len());
        self.batches += 1;
        let next = AtomicUsize::new(0);
        let (first, rest) = self.lanes[..lanes].split_first_mut().expect("at least one lane");
        let (first_part, rest_parts) = self.made.parts[..lanes].split_first_mut().expect("a part per lane");
        let before = &mut self.before;
        if lanes == 1 {
            meanwhile(before);
            first.enforce_claimed(first_part, payloads, &next);
        } else {
            self.spread += 1;
            // The loop's thread does `meanwhile`, then works as lane 0 and waits for
            // the others; a panic in any lane comes back here.
            let pool = self.pool.as_ref().expect("a pool for the lanes beyond the first");
            pool.in_place_scope(|s| {
                for (lane, part) in rest.iter_mut().zip(rest_parts.iter_mut()) {
                    let next = &next;
                    s.spawn(move |_| lane.enforce_claimed(part, payloads, next));
                }
                meanwhile(before);
                first.enforce_claimed(first_part, payloads, &next);
            });
        }
        let made = &mut self.made;
        made.chunks.clear();
        made.chunks.resize(chunks, (0, 0));
        for (i, part) in made.parts[..lanes].iter().enumerate() {
            for &(chunk, start) in &part.claimed {
                made.chunks[chunk] = (i, start);
            }
        }
        reloaded
    }

    /// What the last batch made.
    pub fn last(&mut self) -> &mut Made {
        &mut self.made
    }

    /// The number below which no route of the agreement in force is numbered
    /// ([`Spares::raise_floor`]).
    pub fn route_floor(&self) -> u32 {
        self.routes.first_id()
    }

    /// The `i`th record to produce for the record last processed.
    pub fn get(&self, i: usize) -> Out<'_> {
        match self.outcome {
            Outcome::Forward(_) => {
                let o = self.lanes[0].enforcer.output(i);
                let p = o.purpose as usize;
                Out { route: &self.routes.purposes[p], key: o.key, payload: o.payload }
            }
            Outcome::Quarantine(_) => self.routes.quarantine(&self.note),
            Outcome::Drop => unreachable!("no record to produce"),
        }
    }

    /// A new agreement came into force with the record last processed: hand the
    /// batches over before its outputs are produced, so `accord_agreement_info`
    /// switches with the first output of the new version.
    pub fn reloaded(&self) -> bool {
        self.lanes.iter().any(|l| l.enforcer.has_finished())
    }

    /// Hands over the batches so far (one per agreement in force since the last
    /// call), and starts a new batch: every lane's counts, added up per agreement.
    pub fn take_batches(&mut self) -> Vec<Batch> {
        let (first, rest) = self.lanes.split_first_mut().expect("at least one lane");
        let mut batches = first.enforcer.take_batches();
        for lane in rest {
            for b in lane.enforcer.take_batches() {
                match batches.iter_mut().find(|m| Arc::ptr_eq(&m.engine, &b.engine)) {
                    Some(m) => {
                        m.tally.merge(&b.tally);
                        m.busy += b.busy;
                    }
                    None => batches.push(b),
                }
            }
        }
        batches
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;


    use super::*;
    use crate::agreement::Agreement;
    use crate::engine::Engine;
    use crate::pseudonym::{Key, Pseudonymiser};

    fn engine(version: u32) -> Arc<Engine> {
        let text = format!(
            r#"
agreement: {{ id: t, version: {version}, parties: [a, b] }}
purposes:
  safety: {{ description: d, topic: out.safety }}
  planning: {{ description: d, topic: out.planning }}
rules:
  - name: r
    match: {{ source: [tracker] }}
    purposes: [safety, planning]
    pseudonymise: [subject_id]
    keep: [attributes.zone]
"#
        );
        let a = Agreement::parse(text.as_bytes()).unwrap().agreement;
        Arc::new(Engine::new(Arc::new(a), Arc::new(Pseudonymiser::new(Key::new(&[3; 32], "k").unwrap()))))
    }

    /// A stand-in for the hot-reloaded agreement: swapped by the test.
    struct Swapped {
        generation: AtomicU64,
        engine: Mutex<Arc<Engine>>,
    }

    impl Engines for Swapped {
        fn generation(&self) -> u64 {
            self.generation.load(Ordering::Acquire)
        }

        fn current(&self) -> Arc<Engine> {
            self.engine.lock().unwrap().clone()
        }
    }

    /// Forwarded (two outputs), dropped, and malformed records, each worker its own.
    fn payloads(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| match i % 7 {
                3 => b"{not json".to_vec(),
                5 => format!(r#"{{"event_id":"e{i}","source":"camera","subject_id":"w{i}","category":"location","occurred_at":"2026-03-02T10:00:00Z"}}"#).into_bytes(),
                _ => format!(r#"{{"event_id":"e{i}","source":"tracker","subject_id":"w{}","category":"location","occurred_at":"2026-03-02T10:00:00Z","attributes":{{"zone":"Z{i}"}}}}"#, i % 13)
                    .into_bytes(),
            })
            .collect()
    }

    /// An output as the tests compare it: topic, key, payload and `accord-version`.
    type Output = (String, Option<Vec<u8>>, Vec<u8>, String);
    type Written = Vec<Output>;

    fn output(o: Out<'_>) -> Output {
        let version = o.route.headers.get("accord-version").unwrap_or_default();
        (o.route.topic.clone(), o.key.map(<[u8]>::to_vec), o.payload.to_vec(), String::from_utf8_lossy(version).into_owned())
    }

    fn made(records: &Records, n: usize) -> Written {
        (0..n).map(|i| output(records.get(i))).collect()
    }

    /// The outputs of the batch's current record.
    fn staged(m: &Made, n: usize) -> Written {
        (0..n).map(|i| output(m.get(i))).collect()
    }

    const TP: Tp = Tp { topic: 0, partition: 1 };

    /// Registers a record with one output and takes its ticket, as the loop does.
    fn registered(shared: &Shared, offset: i64) -> usize {
        let mut s = shared.lock();
        let epoch = s.marks.register(TP, offset, 1);
        let ticket = s.tickets.insert(Ticket { tp: TP, epoch, offset, attempt: 0 });
        shared.sync_outstanding(&s);
        ticket
    }

    fn retry(ticket: usize, due: Instant) -> Owned {
        Owned { topic: "out".into(), key: None, payload: b"p".to_vec(), headers: None, route: 0, ticket, due }
    }

    /// Takes the due retry off and hands it to the producer again, as the loop does.
    fn resend(shared: &Shared) -> usize {
        let mut s = shared.lock();
        let o = s.retries.pop().expect("a retry");
        let t = s.tickets.get(o.ticket);
        assert!(s.marks.resent(t.tp, t.epoch));
        o.ticket
    }

    /// The loop serves the reports itself: one serve takes every report that is ready,
    /// however many events they come in.
    #[test]
    fn serving_takes_every_report_that_is_ready() {
        let shared = Arc::new(Shared::new(Delivery::AtLeastOnce));
        assert!(!shared.serves() && !shared.serve(Duration::ZERO), "no server: reports come on the producer's thread");
        let ready: Vec<usize> = (0..5).map(|i| registered(&shared, i)).collect();
        let events = Arc::new(Mutex::new(ready.chunks(2).map(<[usize]>::to_vec).collect::<VecDeque<_>>()));
        let (s, e) = (Arc::downgrade(&shared), events.clone());
        // Each poll serves one event: here two reports, the last one.
        shared.set_server(Box::new(move |_| {
            if let (Some(shared), Some(event)) = (s.upgrade(), e.lock().unwrap().pop_front()) {
                for t in event {
                    shared.acked(t, 0, || None);
                }
            }
        }));
        assert!(shared.serves());
        assert!(shared.serve(Duration::ZERO));
        assert!(events.lock().unwrap().is_empty(), "three events in one serve");
        assert_eq!(shared.outstanding(), 0);
        assert_eq!(shared.lock().marks.watermark(TP), Some(5));
        assert!(shared.lock().tickets.is_empty());
    }

    #[test]
    fn ticket_numbers_are_given_back_and_reused() {
        let mut tickets = Tickets::default();
        let t = |offset| Ticket { tp: TP, epoch: 1, offset, attempt: 0 };
        let (a, b) = (tickets.insert(t(1)), tickets.insert(t(2)));
        assert_ne!(a, b);
        assert_eq!(tickets.remove(a), t(1));
        assert_eq!(tickets.len(), 1);
        assert_eq!(tickets.insert(t(3)), a, "a freed number is taken again");
        assert_eq!(tickets.get(a), t(3));
        assert_eq!(tickets.get(b), t(2));
        assert_eq!(tickets.failed(b), 1);
        assert_eq!(tickets.failed(b), 2);
        assert_eq!(tickets.get(b).attempt, 2);
    }

    /// A ticket is stuck once its delivery has failed again `stuck_after` after its
    /// first failure, and stays so until its number is given back; the count is of the
    /// tickets stuck now, whatever order the failures and the numbers come in.
    #[test]
    fn a_ticket_is_stuck_from_its_failure_after_the_limit_until_given_back() {
        let t = |offset| Ticket { tp: TP, epoch: 1, offset, attempt: 0 };
        let mut tickets = Tickets::new(Duration::ZERO);
        let (a, b) = (tickets.insert(t(1)), tickets.insert(t(2)));
        tickets.failed(a);
        assert_eq!(tickets.stuck(), 0, "one failure is no time");
        tickets.failed(a);
        tickets.failed(a);
        assert_eq!(tickets.stuck(), 1, "counted once");
        tickets.failed(b);
        tickets.failed(b);
        assert_eq!(tickets.stuck(), 2);
        tickets.remove(a);
        assert_eq!(tickets.stuck(), 1);
        let c = tickets.insert(t(3));
        assert_eq!(c, a, "the number is reused");
        tickets.failed(c);
        assert_eq!(tickets.stuck(), 1, "a reused number starts afresh");
        tickets.remove(b);
        tickets.remove(c);
        assert_eq!(tickets.stuck(), 0);
        let mut patient = Tickets::new(Duration::from_secs(3600));
        let d = patient.insert(t(4));
        for _ in 0..10 {
            patient.failed(d);
        }
        assert_eq!(patient.stuck(), 0, "not before the limit");
    }

    proptest::proptest! {
        /// The rule, over any order of takes, failures and give-backs (with a limit of
        /// zero, a ticket is stuck from its second failure): the count is of the
        /// tickets taken now that failed at least twice since they were taken, and
        /// `/healthz` is told exactly when that count leaves or reaches zero.
        #[test]
        fn stuck_counts_the_taken_tickets_that_failed_again(ops in proptest::collection::vec((0u8..3, 0usize..8), 0..120)) {
            let mut tickets = Tickets::new(Duration::ZERO);
            let mut failures: std::collections::BTreeMap<usize, u32> = Default::default();
            let mut told = false;
            for (op, pick) in ops {
                let taken: Vec<usize> = failures.keys().copied().collect();
                match op {
                    0 => {
                        let i = tickets.insert(Ticket { tp: TP, epoch: 1, offset: 0, attempt: 0 });
                        proptest::prop_assert!(failures.insert(i, 0).is_none(), "a number taken twice");
                    }
                    1 if !taken.is_empty() => {
                        let i = taken[pick % taken.len()];
                        tickets.failed(i);
                        *failures.get_mut(&i).unwrap() += 1;
                    }
                    2 if !taken.is_empty() => {
                        let i = taken[pick % taken.len()];
                        tickets.remove(i);
                        failures.remove(&i);
                    }
                    _ => {}
                }
                let stuck = failures.values().filter(|&&f| f >= 2).count();
                proptest::prop_assert_eq!(tickets.stuck(), stuck);
                let changed = tickets.stuck_changed();
                proptest::prop_assert_eq!(changed, ((stuck > 0) != told).then_some(stuck > 0));
                told = stuck > 0;
            }
        }
    }

    /// Shared tells `/healthz` while a delivery is stuck, and again when none is.
    #[test]
    fn a_stuck_delivery_makes_healthz_fail_until_it_lands() {
        let shared = Shared::new(Delivery::AtLeastOnce);
        let health = Health::new(true);
        shared.watch_stuck(Duration::ZERO, Some(health.clone()));
        let (a, b) = (registered(&shared, 7), registered(&shared, 8));
        let refused = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        shared.failed(a, &refused, "out", retry);
        assert!(health.live().is_ok());
        assert_eq!(resend(&shared), a);
        shared.failed(a, &refused, "out", retry);
        assert!(health.live().is_err(), "stuck at its failure after the limit");
        shared.acked(b, 0, || None);
        assert!(health.live().is_err(), "another output landing frees nothing");
        assert_eq!(resend(&shared), a);
        shared.acked(a, 0, || None);
        assert!(health.live().is_ok());
    }

    /// At-least-once with tickets as numbers: a failed delivery keeps its number and
    /// its partition's watermark until a retry is acknowledged, backing off further
    /// each time.
    #[test]
    fn a_failed_delivery_is_retried_and_holds_the_watermark_until_acknowledged() {
        let shared = Shared::new(Delivery::AtLeastOnce);
        let (a, b) = (registered(&shared, 7), registered(&shared, 8));
        let refused = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        let before = Instant::now();
        shared.failed(a, &refused, "out", retry);
        shared.acked(b, 0, || None);
        {
            let s = shared.lock();
            assert_eq!(s.marks.watermark(TP), Some(7), "the failed output holds its partition");
            assert_eq!(s.retries.len(), 1);
            assert_eq!(s.retries[0].ticket, a);
            assert!(s.retries[0].due >= before + backoff(1));
            assert_eq!(s.tickets.get(a), Ticket { tp: TP, epoch: s.tickets.get(a).epoch, offset: 7, attempt: 1 });
            assert_eq!(s.tickets.len(), 1, "the acknowledged output's number is given back");
        }
        assert_eq!(shared.outstanding(), 1);
        assert_eq!(resend(&shared), a);
        shared.failed(a, &refused, "out", retry);
        assert_eq!(shared.lock().tickets.get(a).attempt, 2);
        assert!(shared.lock().retries[0].due >= before + backoff(2));
        assert_eq!(shared.lock().marks.watermark(TP), Some(7));
        assert_eq!(resend(&shared), a);
        shared.acked(a, 0, || None);
        let s = shared.lock();
        assert_eq!(s.marks.watermark(TP), Some(9), "the retry landed: the watermark passes both records");
        assert!(s.tickets.is_empty() && s.retries.is_empty());
        assert_eq!(shared.outstanding(), 0);
    }

    /// Reports of a revoked partition's outputs give their numbers back and retry
    /// nothing: the partition's next owner produces them again.
    #[test]
    fn reports_of_a_revoked_partition_give_their_tickets_back() {
        let shared = Shared::new(Delivery::AtLeastOnce);
        let (a, b) = (registered(&shared, 1), registered(&shared, 2));
        shared.lock().marks.remove(TP);
        shared.failed(a, &KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut), "out", retry);
        shared.acked(b, 0, || None);
        let s = shared.lock();
        assert!(s.retries.is_empty());
        assert!(s.tickets.is_empty());
        assert_eq!(s.marks.watermark(TP), None);
    }

    #[test]
    fn a_batch_over_three_lanes_makes_what_one_record_at_a_time_makes() {
        let engines: Arc<dyn Engines + Send + Sync> = Arc::new(engine(1));
        let mut one = Records::new(engines.clone(), Format::Json, Format::Json, "q");
        let mut three = Records::with_lanes(engines, Format::Json, Format::Json, "q", 3);
        let inputs = payloads(500);
        let slices: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
        assert!(!three.enforce_batch(&slices));
        assert_eq!(three.spread(), (1, 1), "500 records are worth three threads");
        let mut outputs = 0;
        for (j, p) in slices.iter().enumerate() {
            let n = one.process("in", 2, j as i64, p);
            let expected = made(&one, n);
            assert_eq!(three.last().staged_count(j), n, "record {j}");
            assert_eq!(three.last().staged(j, "in", 2, j as i64), n, "record {j}");
            assert_eq!(staged(three.last(), n), expected, "record {j}");
            outputs += n;
        }
        assert!(outputs > 500, "most records made two outputs, malformed ones a note");
        let (a, b) = (one.take_batches(), three.take_batches());
        assert_eq!((a.len(), b.len()), (1, 1));
        assert_eq!(a[0].tally, b[0].tally, "the lanes' counts add up to one lane's");
        assert_eq!(b[0].tally.received, 500);

        // A small batch stays on the calling thread.
        let small = CHUNK * (2 * CHUNKS_PER_LANE - 1);
        assert!(!three.enforce_batch(&slices[..small]));
        assert_eq!(three.spread(), (2, 1));
        let mut again = Records::new(Arc::new(three.lanes[0].enforcer.engine().clone()), Format::Json, Format::Json, "q");
        for (j, p) in slices[..small].iter().enumerate() {
            let n = again.process("in", 2, j as i64, p);
            assert_eq!(three.last().staged(j, "in", 2, j as i64), n);
            assert_eq!(staged(three.last(), n), made(&again, n));
        }
    }

    /// What `m` holds for records `from..from + n` of the batch, record by record.
    fn made_of(m: &mut Made, from: usize, n: usize) -> Vec<Written> {
        (0..n)
            .map(|j| {
                let k = m.staged(j, "in", 2, (from + j) as i64);
                staged(m, k)
            })
            .collect()
    }

    #[test]
    fn the_batch_before_is_read_whole_while_the_next_is_enforced() {
        let swapped = Arc::new(Swapped { generation: AtomicU64::new(0), engine: Mutex::new(engine(1)) });
        let engines: Arc<dyn Engines + Send + Sync> = swapped.clone();
        let mut one = Records::new(engines.clone(), Format::Json, Format::Json, "q");
        let mut three = Records::with_lanes(engines, Format::Json, Format::Json, "q", 3);
        let inputs = payloads(2000);
        let slices: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
        // Batches of every size class: spread, on the calling thread, a single record.
        let sizes = [700, 1, 100, 500, 33, 666];
        let mut expected: Vec<Written> = Vec::new();
        let mut from = 0;
        let mut seen: Vec<Written> = Vec::new();
        let mut before: Option<(usize, usize)> = None;
        for (b, &size) in sizes.iter().enumerate() {
            if b == 3 {
                // A reload between two batches: the batch before keeps its version.
                *swapped.engine.lock().unwrap() = engine(2);
                swapped.generation.store(1, Ordering::Release);
            }
            for (j, p) in slices[from..from + size].iter().enumerate() {
                let n = one.process("in", 2, (from + j) as i64, p);
                expected.push(made(&one, n));
            }
            let batch = &slices[from..from + size];
            let mut read = None;
            let reloaded = three.enforce_batch_while(batch, |m| read = before.map(|(f, n)| made_of(m, f, n)));
            assert_eq!(reloaded, b == 3, "batch {b}");
            seen.extend(read.unwrap_or_default());
            before = Some((from, size));
            from += size;
        }
        let (f, n) = before.unwrap();
        seen.extend(made_of(three.last(), f, n));
        assert_eq!(seen.len(), expected.len());
        for (j, (s, e)) in seen.iter().zip(&expected).enumerate() {
            assert_eq!(s, e, "record {j}");
        }
        let versions: Vec<&str> = seen.iter().flatten().map(|o| o.3.as_str()).collect();
        assert!(versions.contains(&"1") && versions.contains(&"2"));
    }

    #[test]
    fn every_lane_takes_a_reloaded_agreement_between_two_batches() {
        let swapped = Arc::new(Swapped { generation: AtomicU64::new(0), engine: Mutex::new(engine(1)) });
        let mut records = Records::with_lanes(swapped.clone(), Format::Json, Format::Json, "q", 4);
        let inputs = payloads(300);
        let slices: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
        assert!(!records.enforce_batch(&slices));
        *swapped.engine.lock().unwrap() = engine(2);
        swapped.generation.store(1, Ordering::Release);
        assert!(records.enforce_batch(&slices), "the batch after the swap is the new version's");
        assert!(records.reloaded());
        for j in 0..slices.len() {
            let n = records.last().staged(j, "in", 0, j as i64);
            for (topic, _, _, version) in staged(records.last(), n) {
                assert_eq!(version, "2", "record {j} to {topic}");
            }
        }
        let batches = records.take_batches();
        let versions: Vec<(u32, u64)> = batches.iter().map(|b| (b.engine.agreement().version, b.tally.received)).collect();
        assert_eq!(versions, [(1, 300), (2, 300)], "one batch per version, every lane's counts in it");
        assert!(!records.reloaded());
        // The next hand-over is the new version's alone, from every lane.
        assert!(!records.enforce_batch(&slices[..100]));
        let versions: Vec<(u32, u64)> = records.take_batches().iter().map(|b| (b.engine.agreement().version, b.tally.received)).collect();
        assert_eq!(versions, [(2, 100)]);
    }
}
