//! Exactly-once delivery, the option: outputs and the consumed offsets go to Kafka in
//! one transaction, so a `read_committed` reader of the output topics sees each output
//! once, across crashes and rebalances.
//!
//! A transaction opens with the first record after the last commit and is committed
//! every `limits.commit_interval`, or sooner when `limits.max_in_flight` outputs are with
//! the producer (committing flushes them: that is the backpressure), on revoke and on
//! shutdown. The offsets sent with it are one past the last record handled in each
//! partition, checked against the group's generation (KIP-447), so a gateway that lost
//! its partitions cannot commit for them. An abortable error aborts the transaction and
//! rewinds the consumer to the first record of it in each partition: those records are
//! enforced again, and their earlier outputs are never visible. A fatal error of the
//! producer is cured by a new one ([`renew`]), unless it was fenced by a newer instance
//! with the same `transactional.id`: that stops the gateway with an error.
//!
//! With `limits.threads` above one, the loop polls a batch of what is already fetched
//! (up to [`BATCH`] records), the lanes enforce it ([`Records::enforce_batch`]), and the
//! loop produces each record's outputs and adds its offset to the open transaction, in
//! consumption order, before it polls again. A revoke (which commits, or aborts and
//! rewinds) served while a batch is polled lets go of the records in hand of the
//! partitions it revoked or rewound ([`fill`]): they are in no transaction, and are
//! consumed again.
//!
//! `transactional.id` must be unique per replica and stable across its restarts: the
//! restarted gateway then aborts what its predecessor left open at once.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer as _;
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::Producer as _;
use rdkafka::Offset;

use super::client::{describe, producer_config, subscribe, Throttle};
use super::sink::{queue_full, send, Producer, Records, Report, Shared, SinkContext};
use super::produce::{Sender, Spares};
use super::source::{reuse, reuse_messages, Source, SourceContext, BATCH};
use super::stall::Polled;
use super::txn::{renewable, Outcome, Transactions};
use super::{Error, Pipeline, Shutdown, Summary};
use crate::config::{Delivery, Kafka};

pub(super) fn run(p: Pipeline<'_>) -> Result<Summary, Error> {
    let k = p.kafka;
    let limits = k.limits;
    let shared = Arc::new(Shared::new(Delivery::ExactlyOnce));
    let producer = start_producer(k, &shared, &p.shutdown)?;
    let txns = Arc::new(Transactions::new(producer.clone(), shared.clone(), limits.drain_timeout, p.shutdown.clone(), limits.stuck_after, p.health.clone()));
    let consumer: Source = subscribe(k, SourceContext::for_pipeline(shared.clone(), k, Some(txns.clone()), p.health.clone()))?;
    let mut records = Records::for_pipeline(k, p.engines, p.suppressions, k.limits.threads);
    match records.lanes() {
        1 => tracing::info!("enforcing on the consumer loop's thread (limits.threads: 1)"),
        n => tracing::info!("enforcing on {n} threads, in batches of up to {BATCH} records"),
    }
    let mut out = Out { sender: Sender::new(producer), shared: &shared, txns: &txns, drain_timeout: limits.drain_timeout, throttle: Throttle::default(), spares: Spares::default() };
    let mut report = Report::new(p.on_batch);
    let mut count = 0u64;
    let mut last_report = Instant::now();
    let mut messages: Vec<BorrowedMessage<'_>> = Vec::new();
    let mut seen_revokes = 0;
    let mut payloads: Vec<&[u8]> = Vec::new();
    while !p.shutdown.requested() {
        if let Some(e) = txns.take_fatal() {
            renew(k, &shared, &txns, &consumer, &mut out.sender, &p.shutdown, e)?;
            continue;
        }
        if txns.due(limits.commit_interval) || shared.outstanding() >= limits.max_in_flight {
            if let Err(e) = txns.commit(&consumer, None) {
                renew(k, &shared, &txns, &consumer, &mut out.sender, &p.shutdown, e)?;
                continue;
            }
            report.hand_over(&mut records);
            last_report = Instant::now();
        } else if last_report.elapsed() >= super::REPORT_EVERY {
            // A long commit interval must not hold the counters back (issue 13): what
            // was enforced is counted, as after an aborted transaction it always was.
            report.hand_over(&mut records);
            last_report = Instant::now();
        }
        let m = match super::stall::poll(&consumer, Duration::from_millis(50), &out.throttle) {
            Polled::Record(m) => m,
            Polled::Fatal(e) => return Err(fatal(e)),
            Polled::Nothing => {
                consumer.context().stalls.probe(&consumer, &k.topics);
                continue;
            }
        };
        if records.lanes() == 1 {
            // No record is in hand between two polls: a revoke lets go of none.
            consumer.context().revoked_since(&mut seen_revokes);
            count += 1;
            let (offset, payload) = (m.offset(), m.payload().unwrap_or_default());
            let n = records.process(m.topic(), m.partition(), offset, payload);
            if records.reloaded() {
                // Before the new version's first output (its transaction's counts are
                // reported before the commit: a reload is rare, the gauge must not lag).
                report.hand_over(&mut records);
            }
            if let Err(e) = txns.begin() {
                renew(k, &shared, &txns, &consumer, &mut out.sender, &p.shutdown, e)?;
                continue;
            }
            if out.spares.is_empty() {
                out.refill(records.route_floor());
            }
            for i in 0..n {
                out.send(&records.get(i));
            }
            txns.done(m.topic(), m.partition(), offset, offset);
            continue;
        }
        // A batch: what is already fetched, enforced over the threads, then produced
        // record by record in consumption order into the open transaction.
        let mut batch = reuse_messages(std::mem::take(&mut messages));
        batch.push(m);
        if let Some(e) = fill(&consumer, &mut seen_revokes, &mut batch, &out.throttle) {
            return Err(fatal(e));
        }
        count += batch.len() as u64;
        let mut bytes = reuse(std::mem::take(&mut payloads));
        bytes.extend(batch.iter().map(|m| m.payload().unwrap_or_default()));
        if records.enforce_batch(&bytes) {
            report.hand_over(&mut records);
        }
        if !batch.is_empty() {
            if let Err(e) = txns.begin() {
                // The batch is let go of: renewing rewinds its partitions.
                renew(k, &shared, &txns, &consumer, &mut out.sender, &p.shutdown, e)?;
                continue;
            }
        }
        let made = records.last();
        out.refill(made.route_floor());
        // librdkafka hands out runs of one partition: each run is added to the
        // transaction at once, after its last record's outputs.
        let mut run = 0;
        for (j, m) in batch.iter().enumerate() {
            for i in 0..made.staged(j, m.topic(), m.partition(), m.offset()) {
                out.send(&made.get(i));
            }
            if batch.get(j + 1).is_none_or(|n| n.partition() != m.partition() || n.topic() != m.topic()) {
                txns.done(m.topic(), m.partition(), batch[run].offset(), m.offset());
                run = j + 1;
            }
        }
        bytes.clear();
        payloads = reuse(bytes);
        messages = reuse_messages(batch);
    }
    tracing::info!("stopping: committing the open transaction");
    let outcome = txns.commit(&consumer, None).map_err(Error::Transaction)?;
    report.hand_over(&mut records);
    consumer.context().closing.store(true, Ordering::Relaxed);
    let producer = txns.producer();
    drop(messages);
    drop(consumer);
    let reused = out.spares.reused();
    drop(out);
    drop(txns);
    if let Err(e) = producer.flush(Duration::from_secs(1)) {
        tracing::warn!("the producer could not flush before closing ({e})");
    }
    let (batches, spread) = records.spread();
    tracing::info!(
        "stopped after {count} record(s) (last transaction: {outcome:?}); {batches} batch(es), {spread} of them spread over {} threads; {} output(s) went out with the headers of an earlier one",
        records.lanes(),
        reused
    );
    let unacknowledged = if outcome == Outcome::GaveUp { shared.outstanding() } else { 0 };
    Ok(Summary { records: count, totals: report.total, unacknowledged })
}

/// A transactional producer with its transactions initialised, which fences any earlier
/// producer with the same `transactional.id` and aborts what it left open; retried
/// while the broker is away.
fn start_producer(k: &Kafka, shared: &Arc<Shared>, shutdown: &Shutdown) -> Result<Arc<Producer>, Error> {
    let producer: Arc<Producer> =
        Arc::new(producer_config(k).create_with_context(SinkContext::new(shared.clone())).map_err(|source| Error::Client { what: "producer", source })?);
    loop {
        match producer.init_transactions(k.limits.drain_timeout) {
            Ok(()) => return Ok(producer),
            Err(KafkaError::Transaction(e)) if e.is_retriable() && !shutdown.requested() => {
                tracing::warn!("cannot start transactions yet ({e}); retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(Error::Transaction(e)),
        }
    }
}

/// The transactional producer failed fatally (`e`): librdkafka takes no more calls of
/// it. Unless it was fenced, or the gateway is stopping, a new producer takes its place,
/// as a restart would do, without one: its start fences the old one and aborts the
/// open transaction, and every assigned partition is consumed again from its committed
/// offset, so that what the aborted transaction held is enforced again (the records in
/// hand are let go of). Seen after a broker restart: `INVALID_TXN_STATE` in answer to
/// the abort of a transaction whose deliveries had timed out.
fn renew(k: &Kafka, shared: &Arc<Shared>, txns: &Transactions, consumer: &Source, sender: &mut Sender, shutdown: &Shutdown, e: KafkaError) -> Result<(), Error> {
    let cause = txns.producer().client().fatal_error().map(|(code, _)| code);
    if !renewable(&e, cause) {
        tracing::error!("the transactional producer cannot go on ({e}): another gateway with the same transactional.id fenced it, or transactions are refused; each replica needs its own `kafka.transactional_id` (by default accord-<group>-<hostname>)");
        return Err(Error::Transaction(e));
    }
    if shutdown.requested() {
        return Err(Error::Transaction(e));
    }
    tracing::error!("the transactional producer failed ({e}); replacing it: its open transaction is aborted, and the assigned partitions are consumed again from their committed offsets");
    let new = start_producer(k, shared, shutdown)?;
    *sender = Sender::new(new.clone());
    // The old producer's queue is purged as it is dropped; the reports of what it held
    // concern the transaction given up.
    drop(txns.replace(new));
    shared.outstanding.store(0, Ordering::Relaxed);
    shared.txn_failed.store(false, Ordering::Relaxed);
    let throttle = Throttle::default();
    loop {
        let assigned = consumer.assignment().map_err(Error::Fatal)?;
        match consumer.committed_offsets(assigned, k.limits.drain_timeout) {
            Ok(committed) => {
                for p in committed.elements() {
                    // Nothing committed yet: nothing of the partition was ever visible.
                    let from = match p.offset() {
                        Offset::Offset(o) => Offset::Offset(o),
                        _ => Offset::Beginning,
                    };
                    if let Err(e) = consumer.seek(p.topic(), p.partition(), from, k.limits.drain_timeout) {
                        tracing::warn!("could not rewind {}[{}] to its committed offset ({e})", p.topic(), p.partition());
                    }
                }
                tracing::info!("a new transactional producer is in place; consuming again from the committed offsets of {}", describe(&committed));
                return Ok(());
            }
            Err(e) if !shutdown.requested() => {
                if throttle.allow("committed") {
                    tracing::warn!("cannot read the committed offsets yet ({e}); retrying");
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(_) => return Ok(()),
        }
    }
}

fn fatal(e: KafkaError) -> Error {
    tracing::error!("the consumer failed fatally ({e}); exiting so that the gateway is restarted");
    Error::Fatal(e)
}

/// Polls, without waiting, what is already fetched, up to [`BATCH`] records. A revoke
/// served meanwhile lets go of the records in hand of the partitions it revoked, or
/// its abort rewound ([`Transactions::on_revoke`]): they are in no transaction, and are
/// consumed again (by their next owner, or from where the abort rewound them). Returns
/// a fatal consumer error.
fn fill<'c>(consumer: &'c Source, seen_revokes: &mut u64, batch: &mut Vec<BorrowedMessage<'c>>, throttle: &Throttle) -> Option<KafkaError> {
    let context = consumer.context();
    // What was revoked before this batch concerns none of its records.
    context.revoked_since(seen_revokes);
    while batch.len() < BATCH {
        let polled = super::stall::poll(consumer, Duration::ZERO, throttle);
        if let Some(gone) = context.revoked_since(seen_revokes) {
            context.let_go_in_hand(batch, &gone, "enforcing them");
        }
        match polled {
            Polled::Record(m) => batch.push(m),
            Polled::Fatal(e) => return Some(e),
            Polled::Nothing => break,
        }
    }
    None
}

/// Hands outputs to the producer within the open transaction.
struct Out<'a> {
    sender: Sender,
    shared: &'a Shared,
    txns: &'a Transactions,
    drain_timeout: Duration,
    throttle: Throttle,
    /// Copies of the routes' headers to send again, taken from [`super::sink::State::spares`]
    /// (where the producer's thread leaves those of delivered records) once per batch.
    spares: Spares,
}

impl Out<'_> {
    /// Takes the copies of headers the delivery reports gave back since the last time,
    /// letting go of those of routes numbered below `floor` (an earlier agreement's).
    fn refill(&mut self, floor: u32) {
        let mut state = self.shared.lock();
        self.spares.raise_floor(floor);
        self.spares.take_all(&mut state.spares);
    }

    /// Produces one output; while librdkafka's queue is full it waits (the commit
    /// flushes it), at most the drain timeout. An output it cannot take poisons the
    /// transaction, which is then aborted and its records enforced again.
    fn send(&mut self, out: &super::sink::Out<'_>) {
        // Reports only count what is in flight: no ticket.
        self.shared.outstanding.fetch_add(1, Ordering::Relaxed);
        let waiting = Instant::now();
        loop {
            match send(&mut self.sender, out, 0, &mut self.spares) {
                Ok(()) => return,
                Err((e, _)) if queue_full(&e) && waiting.elapsed() < self.drain_timeout => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => {
                    self.shared.outstanding.fetch_sub(1, Ordering::Relaxed);
                    if self.throttle.allow("produce") {
                        tracing::warn!("could not produce to {} ({e}); the transaction will be aborted and retried", out.route.topic);
                    }
                    self.txns.poison();
                    return;
                }
            }
        }
    }
}
