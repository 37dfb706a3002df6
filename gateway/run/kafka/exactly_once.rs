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

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer as _;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::Producer as _;

use super::client::{producer_config, subscribe, Throttle};
use super::sink::{queue_full, send, Producer, Records, Report, Shared, SinkContext};
use super::produce::Sender;
use super::source::{Source, SourceContext};
use super::txn::{Outcome, Transactions};
use super::{Error, Pipeline, Summary};
use crate::config::Delivery;

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
    let txns = Arc::new(Transactions::new(producer.clone(), shared.clone(), limits.drain_timeout, p.shutdown.clone()));
    let consumer: Source = subscribe(k, SourceContext::for_pipeline(shared.clone(), k, Some(txns.clone()), p.health.clone()))?;
    let mut records = Records::for_pipeline(k, p.engines, p.suppressions, 1);
    let mut sender = Sender::new(producer.clone());
    if k.limits.threads > 1 {
        tracing::info!("exactly-once enforces on the consumer loop's thread; limits.threads ({}) applies to at-least-once only", k.limits.threads);
    }
    let mut report = Report::new(p.on_batch);
    let throttle = Throttle::default();
    let mut count = 0u64;
    let mut last_report = Instant::now();
    while !p.shutdown.requested() {
        if let Some(e) = txns.take_fatal() {
            return Err(Error::Transaction(e));
        }
        if txns.due(limits.commit_interval) || shared.outstanding() >= limits.max_in_flight {
            txns.commit(&consumer, None).map_err(Error::Transaction)?;
            report.hand_over(&mut records);
            last_report = Instant::now();
        } else if last_report.elapsed() >= super::REPORT_EVERY {
            // A long commit interval must not hold the counters back (issue 13): what
            // was enforced is counted, as after an aborted transaction it always was.
            report.hand_over(&mut records);
            last_report = Instant::now();
        }
        let m = match super::stall::poll(&consumer, Duration::from_millis(50), &throttle) {
            super::stall::Polled::Record(m) => m,
            super::stall::Polled::Fatal(e) => {
                tracing::error!("the consumer failed fatally ({e}); exiting so that the gateway is restarted");
                return Err(Error::Fatal(e));
            }
            super::stall::Polled::Nothing => {
                consumer.context().stalls.probe(&consumer, &k.topics);
                continue;
            }
        };
        count += 1;
        txns.begin().map_err(Error::Transaction)?;
        let (offset, payload) = (m.offset(), m.payload().unwrap_or_default());
        let n = records.process(m.topic(), m.partition(), offset, payload);
        if records.reloaded() {
            // Before the new version's first output (its transaction's counts are
            // reported before the commit: a reload is rare, the gauge must not lag).
            report.hand_over(&mut records);
        }
        for i in 0..n {
            let out = records.get(i);
            // Reports only count what is in flight: no ticket.
            shared.outstanding.fetch_add(1, Ordering::Relaxed);
            let waiting = Instant::now();
            loop {
                match send(&mut sender, &out, 0) {
                    Ok(()) => break,
                    Err((e, _)) if queue_full(&e) && waiting.elapsed() < limits.drain_timeout => {
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
    report.hand_over(&mut records);
    consumer.context().closing.store(true, Ordering::Relaxed);
    drop(consumer);
    drop(txns);
    if let Err(e) = producer.flush(Duration::from_secs(1)) {
        tracing::warn!("the producer could not flush before closing ({e})");
    }
    tracing::info!("stopped after {count} record(s) (last transaction: {outcome:?})");
    let unacknowledged = if outcome == Outcome::GaveUp { shared.outstanding() } else { 0 };
    Ok(Summary { records: count, totals: report.total, unacknowledged })
}
