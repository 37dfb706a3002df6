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
//! enforced again, and their earlier outputs are never visible. A fatal error (the
//! producer was fenced by a newer instance with the same `transactional.id`) stops the
//! gateway with an error, to be restarted.
//!
//! `transactional.id` must be unique per replica and stable across its restarts: the
//! restarted gateway then aborts what its predecessor left open at once.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::Producer as _;
use rdkafka::{Offset, TopicPartitionList};

use super::offsets::Tp;
use super::sink::{queue_full, send, Producer, Records, Shared, SinkContext, Ticket};
use super::source::{Source, SourceContext};
use super::{consumer_config, describe, producer_config, Error, Pipeline, Shutdown, Summary, Throttle};
use crate::config::Delivery;

/// The open transaction, shared by the loop and the revoke callback.
pub struct Transactions {
    producer: Arc<Producer>,
    shared: Arc<Shared>,
    txn: Mutex<Txn>,
    timeout: Duration,
    stop: Shutdown,
    /// A fatal error met in a callback, for the loop to return.
    fatal: Mutex<Option<KafkaError>>,
    throttle: Throttle,
}

#[derive(Default)]
struct Txn {
    open: bool,
    since: Option<Instant>,
    /// Per input partition: the first offset in this transaction (to rewind to on
    /// abort) and one past the last (to commit).
    first: HashMap<(String, i32), i64>,
    next: HashMap<(String, i32), i64>,
    /// An output could not be handed to the producer: the transaction must abort.
    poisoned: bool,
}

impl Txn {
    fn reset(&mut self) {
        self.open = false;
        self.since = None;
        self.first.clear();
        self.next.clear();
        self.poisoned = false;
    }
}

/// How a commit ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Nothing,
    Committed,
    /// Aborted; the records were rewound to be enforced again.
    Aborted,
    /// Shutting down and the broker does not answer: left open, for the broker's
    /// transaction timeout or the next instance to abort.
    GaveUp,
}

impl Transactions {
    fn lock(&self) -> MutexGuard<'_, Txn> {
        self.txn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn begin(&self) -> Result<(), KafkaError> {
        let mut txn = self.lock();
        if !txn.open {
            self.producer.begin_transaction()?;
            txn.open = true;
            txn.since = Some(Instant::now());
        }
        Ok(())
    }

    fn done(&self, topic: &str, partition: i32, offset: i64) {
        let mut txn = self.lock();
        let key = (topic.to_string(), partition);
        txn.first.entry(key.clone()).or_insert(offset);
        txn.next.insert(key, offset + 1);
    }

    fn poison(&self) {
        self.lock().poisoned = true;
    }

    fn due(&self, interval: Duration) -> bool {
        self.lock().since.is_some_and(|s| s.elapsed() >= interval)
    }

    /// Commits the open transaction with its offsets; on an abortable error aborts it
    /// and rewinds (except the partitions in `revoked`). Retries while the broker is
    /// away; gives up only when shutting down. Err is fatal.
    pub fn commit(&self, consumer: &Source, revoked: Option<&TopicPartitionList>) -> Result<Outcome, KafkaError> {
        let mut txn = self.lock();
        if !txn.open {
            return Ok(Outcome::Nothing);
        }
        if txn.poisoned || self.shared.txn_failed.swap(false, Ordering::Relaxed) {
            return self.abort(&mut txn, consumer, revoked);
        }
        let mut offsets = TopicPartitionList::with_capacity(txn.next.len());
        for ((topic, partition), next) in &txn.next {
            offsets.add_partition_offset(topic, *partition, Offset::Offset(*next))?;
        }
        let started = Instant::now();
        loop {
            let Some(group) = consumer.group_metadata() else {
                return Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::State));
            };
            let result = self
                .producer
                .send_offsets_to_transaction(&offsets, &group, self.timeout)
                .and_then(|()| self.producer.commit_transaction(self.timeout));
            let retry = match result {
                Ok(()) => {
                    txn.reset();
                    return Ok(Outcome::Committed);
                }
                Err(KafkaError::Transaction(e)) if e.txn_requires_abort() => {
                    tracing::warn!("the transaction must be aborted ({e}); its records will be enforced again");
                    return self.abort(&mut txn, consumer, revoked);
                }
                Err(KafkaError::Transaction(e)) if e.is_retriable() && !e.is_fatal() => e.to_string(),
                // The flush inside commit timed out: the broker is slow or away.
                Err(KafkaError::Flush(e)) => e.to_string(),
                Err(e) => return Err(e),
            };
            if self.stop.requested() && started.elapsed() >= self.timeout {
                tracing::warn!("shutting down without committing the open transaction ({retry}); it will be aborted");
                return Ok(Outcome::GaveUp);
            }
            if self.throttle.allow("commit") {
                tracing::warn!("committing the transaction failed ({retry}); retrying");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn abort(&self, txn: &mut Txn, consumer: &Source, revoked: Option<&TopicPartitionList>) -> Result<Outcome, KafkaError> {
        let started = Instant::now();
        loop {
            match self.producer.abort_transaction(self.timeout) {
                Ok(()) => break,
                Err(KafkaError::Transaction(e)) if e.is_retriable() && !e.is_fatal() => {
                    if self.stop.requested() && started.elapsed() >= self.timeout {
                        return Ok(Outcome::GaveUp);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(e),
            }
        }
        self.shared.txn_failed.store(false, Ordering::Relaxed);
        for ((topic, partition), first) in &txn.first {
            let gone = revoked.is_some_and(|r| r.find_partition(topic, *partition).is_some());
            if !gone {
                if let Err(e) = consumer.seek(topic, *partition, Offset::Offset(*first), self.timeout) {
                    tracing::warn!("could not rewind {topic}[{partition}] to the aborted transaction's start ({e})");
                }
            }
        }
        txn.reset();
        Ok(Outcome::Aborted)
    }

    /// Revoke: commit what is done while the generation is still ours.
    pub fn on_revoke(&self, consumer: &Source, tpl: &TopicPartitionList, lost: bool) {
        if lost {
            let mut txn = self.lock();
            if txn.open {
                let _ = self.abort(&mut txn, consumer, Some(tpl));
            }
            tracing::warn!("lost {} (the group moved on); the open transaction was aborted", describe(tpl));
            return;
        }
        match self.commit(consumer, Some(tpl)) {
            Ok(outcome) => tracing::info!("revoked {} (transaction {:?})", describe(tpl), outcome),
            Err(e) => {
                tracing::error!("revoked {}; the transactional producer failed ({e})", describe(tpl));
                *self.fatal.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
            }
        }
    }

    fn take_fatal(&self) -> Option<KafkaError> {
        self.fatal.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

pub(super) fn run(p: Pipeline<'_>) -> Result<Summary, Error> {
    let k = p.kafka;
    let limits = k.limits;
    let shared = Arc::new(Shared::new(Delivery::ExactlyOnce));
    let producer: Arc<Producer> = Arc::new(
        producer_config(k).create_with_context(SinkContext::new(shared.clone())).map_err(|source| Error::Client { what: "producer", source })?,
    );
    // Fences any earlier producer with the same transactional.id and aborts what it left open.
    loop {
        match producer.init_transactions(limits.drain_timeout) {
            Ok(()) => break,
            Err(KafkaError::Transaction(e)) if e.is_retriable() && !p.shutdown.requested() => {
                tracing::warn!("cannot start transactions yet ({e}); retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(Error::Transaction(e)),
        }
    }
    let txns = Arc::new(Transactions {
        producer: producer.clone(),
        shared: shared.clone(),
        txn: Mutex::new(Txn::default()),
        timeout: limits.drain_timeout,
        stop: p.shutdown.clone(),
        fatal: Mutex::new(None),
        throttle: Throttle::default(),
    });
    let mut context = SourceContext::new(shared.clone(), k.topics.clone(), limits.drain_timeout, Some(txns.clone()));
    context.health = p.health.clone();
    context.stalls = super::stall::Stalls::new(p.health.clone());
    let consumer: Source = consumer_config(k).create_with_context(context).map_err(|source| Error::Client { what: "consumer", source })?;
    let topics: Vec<&str> = k.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).map_err(Error::Subscribe)?;
    tracing::info!("consuming {} as group `{}`, delivery exactly_once", topics.join(", "), k.group);

    let mut records = Records::new(p.engines, k.input_format, k.output_format, &k.quarantine_topic);
    records.set_framing(k.input_framing, k.output_schema_id);
    let mut total = crate::report::tally::Totals::default();
    let mut on_batch = p.on_batch;
    let mut batch = |records: &mut Records| {
        for b in records.take_batches() {
            if let Some(f) = &mut on_batch {
                f(&b.engine, &b.tally, b.busy);
            }
            total.add(b.engine.agreement(), &b.tally);
        }
    };
    let throttle = Throttle::default();
    let mut count = 0u64;
    while !p.shutdown.requested() {
        if let Some(e) = txns.take_fatal() {
            return Err(Error::Transaction(e));
        }
        if txns.due(limits.commit_interval) || shared.outstanding() >= limits.max_in_flight {
            txns.commit(&consumer, None).map_err(Error::Transaction)?;
            batch(&mut records);
        }
        let stalls = &consumer.context().stalls;
        let m = match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                match stalls.error(&e) {
                    super::stall::Class::Fatal => {
                        tracing::error!("the consumer failed fatally ({e}); exiting so that the gateway is restarted");
                        return Err(Error::Fatal(e));
                    }
                    super::stall::Class::Stops(_) => stalls.probe(&consumer, &k.topics),
                    super::stall::Class::Passing => {
                        if throttle.allow(&e.to_string()) {
                            tracing::warn!("consumer: {e}");
                        }
                    }
                }
                continue;
            }
            None => {
                stalls.probe(&consumer, &k.topics);
                continue;
            }
        };
        stalls.consumed();
        count += 1;
        txns.begin().map_err(Error::Transaction)?;
        let (offset, payload) = (m.offset(), m.payload().unwrap_or_default());
        let n = records.process(m.topic(), m.partition(), offset, payload);
        for i in 0..n {
            let out = records.get(i);
            let mut ticket = Box::new(Ticket { tp: Tp { topic: 0, partition: m.partition() }, epoch: 0, offset, attempt: 0 });
            shared.outstanding.fetch_add(1, Ordering::Relaxed);
            let waiting = Instant::now();
            loop {
                match send(&producer, &out, ticket) {
                    Ok(()) => break,
                    Err((e, t)) if queue_full(&e) && waiting.elapsed() < limits.drain_timeout => {
                        ticket = t;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err((e, _)) => {
                        shared.outstanding.fetch_sub(1, Ordering::Relaxed);
                        if throttle.allow("produce") {
                            tracing::warn!("could not produce to {} ({e}); the transaction will be aborted and retried", out.topic);
                        }
                        txns.poison();
                        break;
                    }
                }
            }
        }
        txns.done(m.topic(), m.partition(), offset);
    }
    tracing::info!("stopping: committing the open transaction");
    let outcome = txns.commit(&consumer, None).map_err(Error::Transaction)?;
    batch(&mut records);
    consumer.context().closing.store(true, Ordering::Relaxed);
    drop(consumer);
    drop(txns);
    if let Err(e) = producer.flush(Duration::from_secs(1)) {
        tracing::warn!("the producer could not flush before closing ({e})");
    }
    tracing::info!("stopped after {count} record(s) (last transaction: {outcome:?})");
    let unacknowledged = if outcome == Outcome::GaveUp { shared.outstanding() } else { 0 };
    Ok(Summary { records: count, totals: total, unacknowledged })
}
