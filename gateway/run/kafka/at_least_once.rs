//! At-least-once delivery, the default: an input offset is committed only once every
//! output of it and of every earlier record of its partition is acknowledged.
//!
//! The loop consumes records, registers each with the watermarks (with the number of
//! outputs it made), and hands its outputs to the producer, in consumption order.
//! With one thread (`limits.threads: 1`) it enforces one record at a time on its own
//! thread. With more it works in batches, two at a time:
//! - it polls a batch (up to [`BATCH`] records, as many as are already fetched);
//! - the enforcement step runs over it on that many threads
//!   ([`Records::enforce_batch_while`]: the threads claim chunks of consecutive records
//!   until none is left);
//! - meanwhile the loop's thread registers and produces each record of the batch
//!   before, in the order it was consumed, as for one record, and then joins the
//!   threads as one of them.
//!
//! So the enforcing threads need not wait while the loop produces, and the loop need
//! not wait while they enforce. A batch waits to be produced only until the next is
//! polled: a poll that finds nothing more produces it at once. The watermarks, the
//! producer and the consumer are only ever touched by the loop's thread, and the
//! outputs of each partition are produced in its order. A revoke (it runs inside the
//! loop's polls) lets go of the revoked partitions' records in hand, of the batch being
//! polled and of the one waiting, before they are registered ([`super::source`]).
//! The loop also serves the producer's
//! delivery reports (every [`SERVE_EVERY`] records, and whenever it is paused or idle;
//! a revoke serves them while it drains): librdkafka frees each record on the thread
//! that allocated it, and no other thread takes the watermarks' lock. The reports move
//! the watermarks; the loop stores the watermarks that
//! moved (`enable.auto.offset.store=false`), and librdkafka commits stored offsets
//! every `limits.commit_interval`, on revoke and on close. A failed delivery comes back
//! as a retry with backoff and holds its partition's watermark until it succeeds.
//!
//! Backpressure: with `limits.max_in_flight` outputs unacknowledged, or a record held
//! because librdkafka's queue is full, the assigned partitions are paused; the loop keeps
//! polling (rebalances, group membership) and resumes below three quarters of the limit.
//! Shutdown: pause, drain (at most `limits.drain_timeout`), store, close (which commits),
//! flush the producer, and only then drop it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::Producer as _;
use rdkafka::{Offset, TopicPartitionList};

use super::client::{producer_config, subscribe, Throttle};
use super::offsets::Tp;
use super::sink::{backoff, queue_full, send, send_owned, Held, LoopProducer, Made, Owned, Records, Report, Shared, SinkContext, Ticket};
use super::produce::{Sender, Spares};
pub use super::source::BATCH;
use super::source::{reuse, reuse_messages, Source, SourceContext};
use super::stall::Polled;
use super::{Error, Pipeline, Summary};
use crate::config::{Delivery, Kafka};

pub(super) fn run(p: Pipeline<'_>) -> Result<Summary, Error> {
    let k = p.kafka;
    let shared = Arc::new(Shared::new(Delivery::AtLeastOnce));
    shared.watch_stuck(k.limits.stuck_after, p.health.clone());
    let producer: Arc<LoopProducer> =
        Arc::new(producer_config(k).create_with_context(SinkContext::new(shared.clone())).map_err(|source| Error::Client { what: "producer", source })?);
    // Delivery reports are served on this thread, by the loop and by the revoke
    // callback (which runs inside the loop's polls).
    let polled = Arc::downgrade(&producer);
    shared.set_server(Box::new(move |wait| {
        if let Some(p) = polled.upgrade() {
            p.poll(wait);
        }
    }));
    let sender = Sender::new(producer.clone());
    let consumer: Source = subscribe(k, SourceContext::for_pipeline(shared.clone(), k, None, p.health.clone()))?;
    let records = Records::for_pipeline(k, p.engines, p.suppressions, k.limits.threads);
    match records.lanes() {
        1 => tracing::info!("enforcing on the consumer loop's thread (limits.threads: 1)"),
        n => tracing::info!("enforcing on {n} threads, in batches of up to {BATCH} records"),
    }
    let mut work = Work {
        k,
        out: Outbox { sender, held: Held::new(), throttle: Throttle::default(), tickets: Vec::new(), epochs: Vec::new(), spares: Spares::default() },
        shared,
        records,
        pending: Vec::new(),
        seen_revokes: 0,
        paused: false,
        advanced: Vec::new(),
        last_store: Instant::now(),
        last_batch: Instant::now(),
        report: Report::new(p.on_batch),
        count: 0,
        ticks: 0,
        fatal: None,
        messages: Vec::new(),
        payloads: Vec::new(),
        unserved: 0,
    };
    work.consume(&consumer, &p.shutdown);
    if let Some(e) = work.fatal.take() {
        tracing::error!("the consumer failed fatally ({e}); exiting so that the gateway is restarted");
        return Err(Error::Fatal(e));
    }
    work.produce_pending(consumer.context());
    let started = Instant::now();
    let unacknowledged = work.drain(&consumer);
    work.batch();
    // Close: the revoke callback stores the final watermarks, librdkafka commits them.
    drop(consumer);
    let left = k.limits.drain_timeout.saturating_sub(started.elapsed()).max(Duration::from_secs(1));
    // Flushing serves the last reports.
    if let Err(e) = producer.flush(left) {
        tracing::warn!("the producer could not flush before closing ({e})");
    }
    let (batches, spread) = work.records.spread();
    tracing::info!(
        "stopped after {} record(s); {batches} batch(es), {spread} of them spread over {} threads; {} output(s) went out with the headers of an earlier one",
        work.count,
        work.records.lanes(),
        work.out.spares.reused()
    );
    Ok(Summary { records: work.count, totals: work.report.total, unacknowledged })
}

struct Work<'a> {
    k: &'a Kafka,
    out: Outbox,
    shared: Arc<Shared>,
    records: Records,
    /// The last batch polled, enforced and not yet produced: per record, its partition
    /// (none once let go: a revoke took it, or it is not an input topic's) and its
    /// offset. It is produced while the lanes enforce the next batch, or as soon as a
    /// poll finds nothing more.
    pending: Vec<(Option<Tp>, i64)>,
    /// The consumer's revokes seen so far ([`SourceContext::revoked_since`]).
    seen_revokes: u64,
    paused: bool,
    advanced: Vec<(Tp, i64)>,
    last_store: Instant,
    last_batch: Instant,
    report: Report,
    count: u64,
    ticks: u32,
    /// A fatal consumer error: the loop stops and the run fails.
    fatal: Option<rdkafka::error::KafkaError>,
    /// A batch's records and their payloads: buffers reused from batch to batch (empty
    /// between two).
    messages: Vec<BorrowedMessage<'static>>,
    payloads: Vec<&'static [u8]>,
    /// Records handled since the delivery reports were last served.
    unserved: u32,
}

/// Delivery reports are served at least every this many records (and whenever the
/// loop is paused or idle): often enough that acknowledgements move the watermarks
/// and free the in-flight budget promptly, seldom enough that an empty poll costs
/// nothing per record.
const SERVE_EVERY: u32 = 32;

/// How often moved watermarks are stored (librdkafka commits them on its own interval).
const STORE_EVERY: Duration = Duration::from_millis(50);

impl Work<'_> {
    fn consume(&mut self, consumer: &Source, shutdown: &super::Shutdown) {
        let max = self.k.limits.max_in_flight;
        while !shutdown.requested() {
            if self.unserved >= SERVE_EVERY || self.paused {
                self.shared.serve(Duration::ZERO);
                self.unserved = 0;
            }
            self.take_retries(false);
            self.send_held();
            let outstanding = self.shared.outstanding();
            let busy = !self.out.held.is_empty() || outstanding >= max;
            // Pause at the limit, resume below three quarters of it. After a rebalance
            // the whole assignment is set again: librdkafka keeps a partition's pause
            // across a lost and regained assignment, and new partitions come unpaused.
            let want = busy || (self.paused && outstanding > max / 4 * 3);
            let changed = consumer.context().assignment_changed.swap(false, Ordering::Relaxed);
            if want != self.paused || changed {
                self.pause(consumer, want);
            }
            if changed {
                // A revoke lets go of the pending batch's records of its partitions.
                self.let_go(consumer.context());
            }
            // While outputs are in flight, come back soon to serve their reports; with
            // a batch waiting to be produced, do not wait at all.
            let wait = match (self.pending.is_empty(), self.paused || outstanding > 0) {
                (false, _) => Duration::ZERO,
                (true, true) => Duration::from_millis(10),
                (true, false) => Duration::from_millis(100),
            };
            let records = match super::stall::poll(consumer, wait, &self.out.throttle) {
                Polled::Record(m) if self.records.lanes() == 1 => {
                    self.handle(consumer.context(), &m);
                    1
                }
                Polled::Record(m) => self.handle_batch(consumer, m),
                Polled::Fatal(e) => {
                    self.fatal = Some(e);
                    return;
                }
                Polled::Nothing => {
                    // Caught up: produce what waits.
                    self.produce_pending(consumer.context());
                    self.ticks |= 63; // Idle: look at the clock now.
                    self.unserved = SERVE_EVERY; // and serve the reports.
                    1
                }
            };
            if self.fatal.is_some() {
                return;
            }
            self.unserved = self.unserved.saturating_add(records);
            self.tick(consumer, records);
        }
    }

    /// A batch, starting with `first`: poll what is already fetched, then enforce it
    /// over the threads while this thread produces the batch before it (registering
    /// and producing each of its records in consumption order). The batch is produced
    /// with the next, or as soon as a poll finds nothing more. Returns how many records
    /// were polled.
    fn handle_batch<'c>(&mut self, consumer: &'c Source, first: BorrowedMessage<'c>) -> u32 {
        let context = consumer.context();
        let mut messages = reuse_messages(std::mem::take(&mut self.messages));
        messages.push(first);
        self.fill(consumer, &mut messages);
        let polled = messages.len() as u32;
        let mut payloads = reuse(std::mem::take(&mut self.payloads));
        payloads.extend(messages.iter().map(|m| m.payload().unwrap_or_default()));
        let mut pending = std::mem::take(&mut self.pending);
        let reloaded = if pending.is_empty() {
            self.records.enforce_batch(&payloads)
        } else {
            let (out, shared, topics) = (&mut self.out, &*self.shared, &self.k.topics);
            self.records.enforce_batch_while(&payloads, |made| out.produce(shared, made, &pending, topics))
        };
        if reloaded {
            // Before the first output of the new version is produced.
            self.batch();
            self.last_batch = Instant::now();
        }
        self.count += messages.len() as u64;
        pending.clear();
        pending.extend(messages.iter().map(|m| (context.tp(m.topic(), m.partition()), m.offset())));
        self.pending = pending;
        payloads.clear();
        self.payloads = reuse(payloads);
        self.messages = reuse_messages(messages);
        polled
    }

    /// Produces the batch waiting to be, if any (what the records made last).
    fn produce_pending(&mut self, context: &SourceContext) {
        if self.pending.is_empty() {
            return;
        }
        self.let_go(context);
        self.out.produce(&self.shared, self.records.last(), &self.pending, &self.k.topics);
        self.pending.clear();
    }

    /// Lets go of the pending batch's records of the partitions revoked since the last
    /// look; returns those partitions (for a batch being polled), if there was a revoke.
    fn let_go(&mut self, context: &SourceContext) -> Option<Vec<Tp>> {
        let revoked = context.revoked_since(&mut self.seen_revokes)?;
        let gone = let_go_of(&mut self.pending, &revoked);
        if gone > 0 {
            tracing::info!("let go of {gone} record(s) of revoked partitions before producing them");
        }
        Some(revoked)
    }

    /// Polls, without waiting, what is already fetched, up to [`BATCH`] records. A
    /// revoke served meanwhile lets go of the revoked partitions' records in hand (of
    /// this batch and of the pending one): they are not registered, and their next
    /// owner consumes them again from the offsets the revoke stored.
    fn fill<'c>(&mut self, consumer: &'c Source, messages: &mut Vec<BorrowedMessage<'c>>) {
        let context = consumer.context();
        // Revokes before this batch concern none of its records, only the pending one's.
        self.let_go(context);
        while messages.len() < BATCH {
            let polled = super::stall::poll(consumer, Duration::ZERO, &self.out.throttle);
            if let Some(revoked) = self.let_go(context) {
                context.let_go_in_hand(messages, &revoked, "enforcing them");
            }
            match polled {
                Polled::Record(m) => messages.push(m),
                Polled::Fatal(e) => {
                    self.fatal = Some(e);
                    break;
                }
                Polled::Nothing => break,
            }
        }
    }

    /// One consumed record: enforce, register, produce.
    fn handle(&mut self, context: &SourceContext, m: &BorrowedMessage<'_>) {
        self.count += 1;
        let Some(tp) = context.tp(m.topic(), m.partition()) else { return };
        let (offset, payload) = (m.offset(), m.payload().unwrap_or_default());
        let n = self.records.process(m.topic(), m.partition(), offset, payload);
        if self.records.reloaded() {
            self.batch();
            self.last_batch = Instant::now();
        }
        self.out.tickets.clear();
        {
            let mut state = self.shared.lock();
            self.out.spares.raise_floor(self.records.route_floor());
            self.out.spares.take_all(&mut state.spares);
            let epoch = state.marks.register(tp, offset, n as u32);
            for _ in 0..n {
                self.out.tickets.push(state.tickets.insert(Ticket { tp, epoch, offset, attempt: 0 }));
            }
            self.shared.sync_outstanding(&state);
        }
        for i in 0..n {
            let out = self.records.get(i);
            let ticket = self.out.tickets[i];
            if let Err((e, ticket)) = send(&mut self.out.sender, &out, ticket, &mut self.out.spares) {
                not_sent(&self.shared, &mut self.out.held, &self.out.throttle, Owned::of(&out, ticket), e, false);
            }
        }
    }

    /// Hands held records to librdkafka again, in order, until its queue is full.
    fn send_held(&mut self) {
        while let Some(o) = self.out.held.pop_front() {
            {
                let mut state = self.shared.lock();
                let t = state.tickets.get(o.ticket);
                if !state.marks.resent(t.tp, t.epoch) {
                    // Its partition was revoked: its next owner produces it again.
                    state.tickets.remove(o.ticket);
                    continue;
                }
            }
            if let Err(failed) = send_owned(&mut self.out.sender, o) {
                let (e, o) = *failed;
                let full = queue_full(&e);
                not_sent(&self.shared, &mut self.out.held, &self.out.throttle, o, e, true);
                if full {
                    break;
                }
            }
        }
    }

    /// Moves retries that are due (or all of them) to the back of the held queue.
    fn take_retries(&mut self, all: bool) {
        let mut state = self.shared.lock();
        if state.retries.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut i = 0;
        while i < state.retries.len() {
            if all || state.retries[i].due <= now {
                self.out.held.push_back(state.retries.swap_remove(i));
            } else {
                i += 1;
            }
        }
    }

    fn pause(&mut self, consumer: &Source, pause: bool) {
        self.paused = pause;
        let Ok(assignment) = consumer.assignment() else { return };
        if assignment.count() == 0 {
            return;
        }
        let result = if pause { consumer.pause(&assignment) } else { consumer.resume(&assignment) };
        if let Err(e) = result {
            tracing::warn!("could not {} the input partitions ({e})", if pause { "pause" } else { "resume" });
        }
    }

    /// After `records` records (or an idle poll, counted as one).
    fn tick(&mut self, consumer: &Source, records: u32) {
        // The clock is read once every 64 records while they stream in.
        let before = self.ticks;
        self.ticks = self.ticks.wrapping_add(records);
        if before / 64 == self.ticks / 64 && !self.paused {
            return;
        }
        consumer.context().stalls.probe(consumer, &self.k.topics);
        let now = Instant::now();
        if now.duration_since(self.last_store) >= STORE_EVERY {
            self.store(consumer);
            self.last_store = now;
        }
        if now.duration_since(self.last_batch) >= self.k.limits.commit_interval.min(super::REPORT_EVERY) {
            self.batch();
            self.last_batch = now;
        }
    }

    /// Stores the watermarks that moved; librdkafka commits them.
    fn store(&mut self, consumer: &Source) {
        self.advanced.clear();
        self.shared.lock().marks.advanced(&mut self.advanced);
        if self.advanced.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::with_capacity(self.advanced.len());
        for (tp, offset) in &self.advanced {
            let _ = tpl.add_partition_offset(&self.k.topics[tp.topic as usize], tp.partition, Offset::Offset(*offset));
        }
        if let Err(e) = consumer.store_offsets(&tpl) {
            if self.out.throttle.allow("store") {
                tracing::warn!("could not store offsets ({e})");
            }
        }
    }

    /// Hands this batch's counts to the total (and to whoever reports them).
    fn batch(&mut self) {
        self.report.hand_over(&mut self.records);
    }

    /// Stops taking records and waits for what is in flight, at most the drain
    /// timeout; stores what is done. Returns the outputs left unacknowledged.
    fn drain(&mut self, consumer: &Source) -> usize {
        self.pause(consumer, true);
        let started = Instant::now();
        tracing::info!("stopping: draining {} output(s) in flight", self.shared.outstanding() + self.out.held.len());
        loop {
            self.take_retries(false);
            self.send_held();
            self.shared.serve(Duration::from_millis(10));
            // Serves rebalances; a record fetched before the pause is left unconsumed
            // (it is not registered, so its offset is never committed).
            let _ = consumer.poll(Duration::from_millis(10));
            self.store(consumer);
            if self.shared.outstanding() == 0 && self.out.held.is_empty() {
                break;
            }
            if started.elapsed() >= self.k.limits.drain_timeout {
                break;
            }
        }
        self.store(consumer);
        consumer.context().closing.store(true, Ordering::Relaxed);
        let left = self.shared.outstanding();
        if left > 0 {
            tracing::warn!("{left} output(s) were not acknowledged within {:?}; their records will be consumed again", self.k.limits.drain_timeout);
        }
        // Commit now; closing commits again on unassign and waits for both.
        if let Err(e) = consumer.commit_consumer_state(CommitMode::Async) {
            if !matches!(e, rdkafka::error::KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) {
                tracing::warn!("could not commit offsets before closing ({e})");
            }
        }
        left
    }
}

/// Lets go of the records of `batch` (each one's partition and offset) whose
/// partition is in `revoked`: their partition becomes none, so they are neither
/// registered nor produced. Returns how many.
fn let_go_of(batch: &mut [(Option<Tp>, i64)], revoked: &[Tp]) -> usize {
    let mut gone = 0;
    for (tp, _) in batch {
        if tp.is_some_and(|tp| revoked.contains(&tp)) {
            *tp = None;
            gone += 1;
        }
    }
    gone
}

/// What hands records to librdkafka, and what it could not take yet.
struct Outbox {
    sender: Sender,
    /// Records librdkafka's queue refused, in order.
    held: Held,
    throttle: Throttle,
    /// The tickets of the outputs about to be produced, in order, and each record's
    /// partition epoch: buffers reused from batch to batch.
    tickets: Vec<usize>,
    epochs: Vec<u32>,
    /// Copies of the routes' headers to send again: taken from [`State::spares`]
    /// (where the delivery reports leave them) under the lock the loop takes for each
    /// batch anyway.
    spares: Spares,
}

impl Outbox {
    /// Registers every record of a batch (`batch`: each one's partition, none to let
    /// it go, and offset; `made`: what the lanes made of it) and takes its outputs'
    /// tickets, under one lock; then produces them, in consumption order.
    fn produce(&mut self, shared: &Shared, made: &mut Made, batch: &[(Option<Tp>, i64)], topics: &[String]) {
        self.epochs.clear();
        self.tickets.clear();
        {
            let mut state = shared.lock();
            self.spares.raise_floor(made.route_floor());
            self.spares.take_all(&mut state.spares);
            for (j, &(tp, offset)) in batch.iter().enumerate() {
                let epoch = match tp {
                    Some(tp) => {
                        let n = made.staged_count(j);
                        let epoch = state.marks.register(tp, offset, n as u32);
                        for _ in 0..n {
                            self.tickets.push(state.tickets.insert(Ticket { tp, epoch, offset, attempt: 0 }));
                        }
                        epoch
                    }
                    None => 0,
                };
                self.epochs.push(epoch);
            }
            shared.sync_outstanding(&state);
        }
        let mut next = 0;
        for (j, &(tp, offset)) in batch.iter().enumerate() {
            let Some(tp) = tp else { continue };
            let n = made.staged(j, &topics[tp.topic as usize], tp.partition, offset);
            for i in 0..n {
                let out = made.get(i);
                let ticket = self.tickets[next];
                next += 1;
                if !self.held.is_empty() {
                    // Behind what librdkafka's queue refused, in order.
                    shared.lock().marks.unsent(tp, self.epochs[j]);
                    self.held.push_back(Owned::of(&out, ticket));
                    continue;
                }
                if let Err((e, ticket)) = send(&mut self.sender, &out, ticket, &mut self.spares) {
                    not_sent(shared, &mut self.held, &self.throttle, Owned::of(&out, ticket), e, false);
                }
            }
        }
    }
}

/// A record librdkafka did not take: held while its queue is full (at the front when it
/// was already first in line), otherwise retried later.
fn not_sent(shared: &Shared, held: &mut Held, throttle: &Throttle, mut o: Owned, e: rdkafka::error::KafkaError, front: bool) {
    let mut state = shared.lock();
    let t = state.tickets.get(o.ticket);
    state.marks.unsent(t.tp, t.epoch);
    if queue_full(&e) {
        if front {
            held.push_front(o);
        } else {
            held.push_back(o);
        }
        return;
    }
    o.due = Instant::now() + backoff(state.tickets.failed(o.ticket));
    if throttle.allow("produce") {
        tracing::warn!("could not produce to {} ({e}); retrying, and offsets of input partition {} wait for it", o.topic, t.tp.partition);
    }
    shared.note_stuck(&mut state, &o.topic, t.tp.partition, &e);
    state.retries.push(o);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Exactly the records of the revoked partitions are let go; the rest keep
        /// their partition and offset, in order.
        #[test]
        fn a_revoke_lets_go_of_its_partitions_records_and_no_other(
            batch in prop::collection::vec((prop::option::weighted(0.9, (0u16..3, 0i32..6)), 0i64..1000), 0..200),
            revoked in prop::collection::vec((0u16..3, 0i32..6), 0..6),
        ) {
            let tp = |(topic, partition): (u16, i32)| Tp { topic, partition };
            let mut after: Vec<(Option<Tp>, i64)> = batch.iter().map(|&(t, o)| (t.map(tp), o)).collect();
            let revoked: Vec<Tp> = revoked.into_iter().map(tp).collect();
            let gone = let_go_of(&mut after, &revoked);
            let mut counted = 0;
            for (&(t, offset), &(now, offset_now)) in batch.iter().zip(&after) {
                prop_assert_eq!(offset, offset_now);
                match t.map(tp) {
                    Some(t) if revoked.contains(&t) => {
                        prop_assert_eq!(now, None);
                        counted += 1;
                    }
                    t => prop_assert_eq!(now, t),
                }
            }
            prop_assert_eq!(gone, counted);
        }
    }
}
