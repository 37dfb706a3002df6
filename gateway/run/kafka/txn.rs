//! The open Kafka transaction of exactly-once delivery: begun at the first record after
//! a commit, committed with the consumed offsets on the commit interval, at a revoke
//! and at shutdown, aborted when a delivery failed. Shared by the loop
//! ([`super::exactly_once`]) and the consumer's revoke callback ([`super::source`]),
//! which both import it; it imports neither.
//!
//! A revoke tells the consumer's context which partitions its abort rewound
//! ([`Transactions::on_revoke`]), and commits that keep failing for longer than
//! `limits.stuck_after` tell `/healthz`.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer as _;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::client::{describe, Throttle};
use super::sink::{Producer, Shared};
use super::stall::Liveness;
use super::Shutdown;
use crate::report::admin::{Health, Stuck};

/// The open transaction, shared by the loop and the revoke callback.
pub struct Transactions {
    /// Replaced when it fails fatally without being fenced ([`Transactions::replace`]).
    producer: Mutex<Arc<Producer>>,
    shared: Arc<Shared>,
    txn: Mutex<Txn>,
    timeout: Duration,
    stop: Shutdown,
    /// A fatal error met in a callback, for the loop to return.
    fatal: Mutex<Option<KafkaError>>,
    /// Commits and aborts, stuck once they have kept failing for `limits.stuck_after`
    /// (`/healthz` then fails).
    commits: Liveness,
    throttle: Throttle,
}

#[derive(Default)]
struct Txn {
    open: bool,
    since: Option<Instant>,
    /// The input partitions with records in this transaction (a few: looked up by
    /// scanning, which allocates nothing).
    progress: Vec<Progress>,
    /// An output could not be handed to the producer: the transaction must abort.
    poisoned: bool,
}

/// One input partition's records in the open transaction.
struct Progress {
    topic: String,
    partition: i32,
    /// The first offset in this transaction (to rewind to on abort).
    first: i64,
    /// One past the last (to commit).
    next: i64,
}

impl Txn {
    fn reset(&mut self) {
        self.open = false;
        self.since = None;
        self.progress.clear();
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
    /// `timeout`: how long one commit or abort may take; `stuck_after`: how long they
    /// may keep failing before `health` says the gateway is not live.
    pub fn new(producer: Arc<Producer>, shared: Arc<Shared>, timeout: Duration, stop: Shutdown, stuck_after: Duration, health: Option<Arc<Health>>) -> Transactions {
        Transactions {
            producer: Mutex::new(producer),
            shared,
            txn: Mutex::new(Txn::default()),
            timeout,
            stop,
            fatal: Mutex::new(None),
            commits: Liveness::new(Stuck::Commit, stuck_after, health),
            throttle: Throttle::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Txn> {
        self.txn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The transactional producer in use.
    pub fn producer(&self) -> Arc<Producer> {
        self.producer.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Puts `new` (its transactions initialised, which fenced the one in use and
    /// aborted what it left open) in place of the producer in use, and forgets the open
    /// transaction; returns the old producer.
    pub fn replace(&self, new: Arc<Producer>) -> Arc<Producer> {
        self.lock().reset();
        std::mem::replace(&mut *self.producer.lock().unwrap_or_else(|e| e.into_inner()), new)
    }

    pub fn begin(&self) -> Result<(), KafkaError> {
        let mut txn = self.lock();
        if !txn.open {
            self.producer().begin_transaction()?;
            txn.open = true;
            txn.since = Some(Instant::now());
        }
        Ok(())
    }

    /// The records of one input partition from offset `first` to `last` are in the
    /// transaction (their outputs are with the producer).
    pub fn done(&self, topic: &str, partition: i32, first: i64, last: i64) {
        let mut txn = self.lock();
        match txn.progress.iter_mut().find(|p| p.partition == partition && p.topic == topic) {
            Some(p) => p.next = last + 1,
            None => txn.progress.push(Progress { topic: topic.to_string(), partition, first, next: last + 1 }),
        }
    }

    pub fn poison(&self) {
        self.lock().poisoned = true;
    }

    pub fn due(&self, interval: Duration) -> bool {
        self.lock().since.is_some_and(|s| s.elapsed() >= interval)
    }

    /// Commits the open transaction with its offsets; on an abortable error aborts it
    /// and rewinds (except the partitions in `revoked`). Retries while the broker is
    /// away; gives up only when shutting down. Err is fatal.
    pub fn commit<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>, revoked: Option<&TopicPartitionList>) -> Result<Outcome, KafkaError> {
        let mut txn = self.lock();
        if !txn.open {
            return Ok(Outcome::Nothing);
        }
        if txn.poisoned || self.shared.txn_failed.swap(false, Ordering::Relaxed) {
            return self.abort(&mut txn, consumer, revoked);
        }
        let mut offsets = TopicPartitionList::with_capacity(txn.progress.len());
        for p in &txn.progress {
            offsets.add_partition_offset(&p.topic, p.partition, Offset::Offset(p.next))?;
        }
        let started = Instant::now();
        let producer = self.producer();
        // A call that timed out is resumed by calling it again, and only it: once the
        // offsets are in, a retry calls commit_transaction alone (librdkafka refuses
        // send_offsets_to_transaction while a commit is in progress, as a conflict).
        let mut offsets_sent = false;
        loop {
            let Some(group) = consumer.group_metadata() else {
                return Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::State));
            };
            let sent = if offsets_sent { Ok(()) } else { producer.send_offsets_to_transaction(&offsets, &group, self.timeout) };
            offsets_sent = sent.is_ok();
            let result = sent.and_then(|()| producer.commit_transaction(self.timeout));
            let retry = match result {
                Ok(()) => {
                    txn.reset();
                    self.commits.succeeded();
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
            self.commits.failed(&retry);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn abort<C: ConsumerContext>(&self, txn: &mut Txn, consumer: &BaseConsumer<C>, revoked: Option<&TopicPartitionList>) -> Result<Outcome, KafkaError> {
        let started = Instant::now();
        let producer = self.producer();
        loop {
            match producer.abort_transaction(self.timeout) {
                Ok(()) => {
                    self.commits.succeeded();
                    break;
                }
                Err(KafkaError::Transaction(e)) if e.is_retriable() && !e.is_fatal() => {
                    if self.stop.requested() && started.elapsed() >= self.timeout {
                        return Ok(Outcome::GaveUp);
                    }
                    self.commits.failed(&e);
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(e),
            }
        }
        self.shared.txn_failed.store(false, Ordering::Relaxed);
        for Progress { topic, partition, first, .. } in &txn.progress {
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

    /// Revoke: commit what is done while the generation is still ours. Returns the
    /// partitions that an abort rewound (the kept ones with records in the aborted
    /// transaction): the loop lets go of their records in hand, as of the revoked ones'.
    pub fn on_revoke<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>, tpl: &TopicPartitionList, lost: bool) -> Vec<(String, i32)> {
        let kept: Vec<(String, i32)> =
            self.lock().progress.iter().filter(|p| tpl.find_partition(&p.topic, p.partition).is_none()).map(|p| (p.topic.clone(), p.partition)).collect();
        let outcome = if lost {
            let mut txn = self.lock();
            let outcome = if txn.open { self.abort(&mut txn, consumer, Some(tpl)).ok() } else { None };
            tracing::warn!("lost {} (the group moved on); the open transaction was aborted", describe(tpl));
            outcome
        } else {
            match self.commit(consumer, Some(tpl)) {
                Ok(outcome) => {
                    tracing::info!("revoked {} (transaction {:?})", describe(tpl), outcome);
                    Some(outcome)
                }
                Err(e) => {
                    tracing::error!("revoked {}; the transactional producer failed ({e})", describe(tpl));
                    *self.fatal.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                    None
                }
            }
        };
        if outcome == Some(Outcome::Aborted) {
            kept
        } else {
            Vec::new()
        }
    }

    pub fn take_fatal(&self) -> Option<KafkaError> {
        self.fatal.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Whether a new producer cures a fatal error `e` of this one (`cause`: the fatal error
/// the client reports, which a later call's `_FATAL` hides): not when another producer
/// with the same `transactional.id` took over (this one is a zombie and must stop), nor
/// when the producer may not use transactions at all.
pub fn renewable(e: &KafkaError, cause: Option<RDKafkaErrorCode>) -> bool {
    use RDKafkaErrorCode as C;
    let code = match e {
        KafkaError::Transaction(e) => Some(e.code()),
        e => e.rdkafka_error_code(),
    };
    ![code, cause].into_iter().flatten().any(|c| {
        matches!(c, C::Fenced | C::ProducerFenced | C::InvalidProducerEpoch | C::TransactionalIdAuthorizationFailed | C::ClusterAuthorizationFailed)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::types::RDKafkaErrorCode as C;

    #[test]
    fn a_new_producer_cures_every_fatal_error_but_a_fence_or_a_refusal() {
        let e = |code| KafkaError::MessageProduction(code);
        for code in [C::InvalidTransactionalState, C::UnknownProducerId, C::OutOfOrderSequenceNumber, C::Fatal] {
            assert!(renewable(&e(code), None), "{code:?}");
            assert!(renewable(&e(C::Fatal), Some(code)), "{code:?} behind _FATAL");
        }
        for code in [C::Fenced, C::ProducerFenced, C::InvalidProducerEpoch, C::TransactionalIdAuthorizationFailed, C::ClusterAuthorizationFailed] {
            assert!(!renewable(&e(code), None), "{code:?}: another instance took over, or transactions are refused");
            assert!(!renewable(&e(C::Fatal), Some(code)), "{code:?} behind _FATAL");
        }
    }
}
