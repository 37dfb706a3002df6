//! The consuming side's context: what happens when the group takes partitions away
//! or hands new ones over, and where librdkafka's own messages go.
//!
//! Rebalance callbacks run inside `poll`, on the consumer loop's thread, between two
//! records, so nothing is half-processed when they run. On revoke:
//! - at-least-once: wait (at most `limits.drain_timeout`) until the revoked
//!   partitions' outputs still with the producer are reported, store their watermarks,
//!   and forget them. librdkafka commits stored offsets as it unassigns, without
//!   blocking the callback. The callback serves the producer's delivery reports
//!   itself while it waits (the loop's thread, which it runs on, is where they are
//!   served), so the wait cannot deadlock; an output that failed and waits for a retry
//!   is not waited for: the partition's next owner consumes its record again.
//! - exactly-once: commit the open transaction (outputs and offsets together) while the
//!   group generation is still ours; if that fails, abort it.
//!
//! A lost assignment (the group moved on without us) is forgotten without committing.
//!
//! At-least-once polls records in batches: a revoke may then run while the loop holds
//! records it has not registered yet. The revoked partitions are noted
//! ([`SourceContext::revoked`]) and the loop lets go of their records unregistered, so
//! the watermarks stored on revoke stay true and the next owner consumes them again.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::client::{describe, Throttle};
use super::offsets::Tp;
use super::sink::Shared;
use super::stats::ConsumerStats;
use super::txn::Transactions;
use crate::report::admin::Stuck;

/// The consumer every mode uses.
pub type Source = BaseConsumer<SourceContext>;

/// The most records polled into one batch when several threads enforce. Large enough
/// that the threads' start (some tens of microseconds) is a small part of a batch's
/// work; batches are smaller whenever fewer records are already fetched.
pub const BATCH: usize = 1024;

/// An empty vector's allocation, reused for items of another lifetime.
pub fn reuse<'b, T: ?Sized>(mut v: Vec<&'_ T>) -> Vec<&'b T> {
    v.clear();
    v.into_iter().map(|_| unreachable!("empty")).collect()
}

/// An empty vector of messages' allocation, reused for the next batch's.
pub fn reuse_messages<'b>(mut v: Vec<BorrowedMessage<'_>>) -> Vec<BorrowedMessage<'b>> {
    v.clear();
    v.into_iter().map(|_| unreachable!("empty")).collect()
}

pub struct SourceContext {
    pub shared: Arc<Shared>,
    /// The input topics; a [`Tp`] names one by its index here.
    pub topics: Vec<String>,
    pub drain_timeout: Duration,
    /// Exactly-once: the transaction to commit on revoke.
    pub txns: Option<Arc<Transactions>>,
    /// Set after every rebalance, so the loop re-applies a pause to new partitions.
    pub assignment_changed: AtomicBool,
    /// The loop already drained for shutdown: a revoke during close only stores.
    pub closing: AtomicBool,
    /// Bumped by every revoke, whose partitions go to `revoked` (exactly-once: with
    /// those its abort rewound), so that a loop holding records it has polled but not
    /// yet registered or put in a transaction can let go of theirs: they are consumed
    /// again, by their next owner or from where the abort rewound them
    /// ([`SourceContext::revoked_since`]).
    revokes: AtomicU64,
    revoked: Mutex<Vec<Tp>>,
    /// Told after each rebalance whether any partition is assigned (`/readyz`).
    pub health: Option<Arc<crate::report::admin::Health>>,
    /// Causes that stop consumption (SPEC 4); the loop replaces it with one that
    /// tells `/readyz`.
    pub stalls: super::stall::Stalls,
    /// At-least-once: the commits of stored offsets, stuck once they have kept
    /// failing for `limits.stuck_after` (`/healthz` then fails).
    commits: super::stall::Liveness,
    /// The consumer's membership of its group, stuck once it has not been steady
    /// (librdkafka's statistics) for `limits.stuck_after`.
    group: super::stall::Liveness,
    throttle: Throttle,
    /// Consumer lag per assigned input partition, from librdkafka's statistics and the
    /// done watermarks.
    stats: ConsumerStats,
}

impl SourceContext {
    pub fn new(shared: Arc<Shared>, topics: Vec<String>, drain_timeout: Duration, txns: Option<Arc<Transactions>>) -> SourceContext {
        let stats = ConsumerStats::new(topics.clone(), shared.delivery == crate::config::Delivery::ExactlyOnce);
        SourceContext {
            shared,
            topics,
            drain_timeout,
            txns,
            assignment_changed: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            revokes: AtomicU64::new(0),
            revoked: Mutex::new(Vec::new()),
            health: None,
            stalls: super::stall::Stalls::new(None),
            commits: super::stall::Liveness::new(Stuck::Commit, Duration::MAX, None),
            group: super::stall::Liveness::new(Stuck::Group, Duration::MAX, None),
            throttle: Throttle::default(),
            stats,
        }
    }

    /// The context of a pipeline's consumer: its input topics, its drain timeout, the
    /// open transaction (exactly-once) and `/readyz`, which assignments and stalls move.
    pub fn for_pipeline(shared: Arc<Shared>, k: &crate::config::Kafka, txns: Option<Arc<Transactions>>, health: Option<Arc<crate::report::admin::Health>>) -> SourceContext {
        let mut context = SourceContext::new(shared, k.topics.clone(), k.limits.drain_timeout, txns);
        context.stalls = super::stall::Stalls::new(health.clone());
        context.commits = super::stall::Liveness::new(Stuck::Commit, k.limits.stuck_after, health.clone());
        context.group = super::stall::Liveness::new(Stuck::Group, k.limits.stuck_after, health.clone());
        context.health = health;
        context
    }

    pub fn tp(&self, topic: &str, partition: i32) -> Option<Tp> {
        self.topics.iter().position(|t| t == topic).map(|i| Tp { topic: i as u16, partition })
    }

    /// A revoke (or an abort) let go of the partitions `tps`.
    fn let_go(&self, tps: &[Tp]) {
        self.revoked.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(tps);
        self.revokes.fetch_add(1, Ordering::Relaxed);
    }

    /// The partitions let go of since the revokes counted in `seen`, if there was a
    /// revoke since; counts them in. Revokes run only inside the loop's polls, so
    /// nothing comes between a poll and this look.
    pub fn revoked_since(&self, seen: &mut u64) -> Option<Vec<Tp>> {
        let revokes = self.revokes.load(Ordering::Relaxed);
        if revokes == *seen {
            return None;
        }
        *seen = revokes;
        Some(std::mem::take(&mut *self.revoked.lock().unwrap_or_else(|e| e.into_inner())))
    }

    /// Lets go of the records in `messages` of the partitions `gone`, saying how many
    /// and what they were about to be (`before`).
    pub fn let_go_in_hand(&self, messages: &mut Vec<BorrowedMessage<'_>>, gone: &[Tp], before: &str) {
        let had = messages.len();
        messages.retain(|m| !self.tp(m.topic(), m.partition()).is_some_and(|tp| gone.contains(&tp)));
        if messages.len() < had {
            tracing::info!("let go of {} record(s) of partitions a revoke took or rewound, before {before}", had - messages.len());
        }
    }

    /// At-least-once: drain the revoked partitions, store what is done, forget them.
    fn revoke_at_least_once(&self, consumer: &BaseConsumer<SourceContext>, tpl: &TopicPartitionList, lost: bool) {
        let tps: Vec<Tp> = tpl.elements().iter().filter_map(|e| self.tp(e.topic(), e.partition())).collect();
        self.let_go(&tps);
        let shared = &*self.shared;
        let mut state = shared.lock();
        let mut waited = Duration::ZERO;
        if !lost && !self.closing.load(Ordering::Relaxed) {
            let start = Instant::now();
            let deadline = start + self.drain_timeout;
            state.draining = true;
            while state.marks.in_flight(&tps) > 0 {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                // The loop's thread is in here: it serves the reports itself, or they
                // come on the producer's thread and signal.
                if shared.serves() {
                    drop(state);
                    shared.serve((deadline - now).min(Duration::from_millis(10)));
                    state = shared.lock();
                } else {
                    state = shared.drained.wait_timeout(state, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
                }
            }
            state.draining = false;
            waited = start.elapsed();
        }
        let left = state.marks.in_flight(&tps);
        let mut done = TopicPartitionList::with_capacity(tps.len());
        for tp in &tps {
            if let Some(w) = state.marks.remove(*tp) {
                if w >= 0 {
                    let _ = done.add_partition_offset(&self.topics[tp.topic as usize], tp.partition, Offset::Offset(w));
                }
            }
        }
        shared.sync_outstanding(&state);
        drop(state);
        if lost {
            tracing::warn!("lost {} (the group moved on); their records will be consumed again by their new owner", describe(tpl));
            return;
        }
        if done.count() > 0 {
            if let Err(e) = consumer.store_offsets(&done) {
                tracing::warn!("could not store the offsets of the revoked partitions ({e}); their records will be consumed again");
            }
        }
        if left > 0 {
            tracing::warn!("revoked {} after waiting {waited:.1?}; {left} output(s) were not acknowledged and their records will be consumed again", describe(tpl));
        } else {
            tracing::info!("revoked {} (drained in {waited:.1?}, done offsets stored for commit)", describe(tpl));
        }
    }
}

impl ClientContext for SourceContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        super::client::log_librdkafka(&self.throttle, "consumer", level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        super::client::error_librdkafka(&self.throttle, "consumer", &error, reason);
    }

    fn stats_raw(&self, json: &[u8]) {
        // Called inside `poll`, on the loop's thread, which never holds the lock then.
        let group = self.stats.record(json, |topic, partition| self.shared.lock().marks.watermark(Tp { topic: topic as u16, partition }));
        match group {
            Some(g) if g.steady() || self.stalls.keep_out_of_the_group() => self.group.succeeded(),
            Some(g) => self.group.failed(&g),
            None => {}
        }
    }
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let lost = consumer.assignment_lost();
                match &self.txns {
                    Some(txns) => {
                        let rewound = txns.on_revoke(consumer, tpl, lost);
                        let revoked = tpl.elements().into_iter().map(|e| (e.topic().to_string(), e.partition()));
                        let tps: Vec<Tp> = revoked.chain(rewound).filter_map(|(t, p)| self.tp(&t, p)).collect();
                        self.let_go(&tps);
                    }
                    None => self.revoke_at_least_once(consumer, tpl, lost),
                }
            }
            Rebalance::Assign(tpl) => tracing::info!("assigned {}", describe(tpl)),
            Rebalance::Error(e) => tracing::warn!("rebalance failed: {e}"),
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, _rebalance: &Rebalance<'_>) {
        self.assignment_changed.store(true, Ordering::Relaxed);
        if let Some(health) = &self.health {
            health.set_kafka(consumer.assignment().is_ok_and(|a| a.count() > 0));
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        match result {
            Ok(()) => self.commits.succeeded(),
            // Nothing was stored to commit.
            Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => {
                // Nothing stored is lost: the next commit carries it.
                if self.throttle.allow("commit") {
                    tracing::warn!("committing offsets failed ({e}); retrying with the next commit");
                }
                self.commits.failed(&e);
            }
        }
    }
}
