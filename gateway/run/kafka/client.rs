//! librdkafka plumbing shared by every Kafka client of the gateway: properties in
//! three layers (the gateway's defaults, then the user's, then what the client
//! requires), subscribing, polling with throttled warnings, and librdkafka's own logs.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{Consumer, ConsumerContext, BaseConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;

use super::{stats, Error};
use crate::config::{Delivery, Kafka, Secret};

/// A client's properties: `defaults` (the gateway's choice, each overridable), then
/// the user's `user` properties, then `required` (what the client cannot work without;
/// these win), and always the configured brokers.
pub fn layered(defaults: &[(&str, &str)], user: &[(String, Secret)], brokers: &str, required: &[(&str, &str)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    for (name, value) in defaults {
        c.set(*name, *value);
    }
    for (name, value) in user {
        c.set(name, value.expose());
    }
    c.set("bootstrap.servers", brokers);
    for (name, value) in required {
        c.set(*name, *value);
    }
    // rdkafka sets librdkafka's log level once the client is made, from the `log`
    // crate's (which the gateway does not use, so: errors only). Its warnings are
    // wanted (throttled, [`log_librdkafka`]), and every line that the user's `debug`
    // property asks for.
    let debug = user.iter().any(|(name, value)| name == "debug" && !value.expose().is_empty());
    c.set_log_level(if debug { RDKafkaLogLevel::Debug } else { RDKafkaLogLevel::Warning });
    c
}

/// Creates the consumer and subscribes it to the input topics.
pub fn subscribe<C: ConsumerContext + 'static>(k: &Kafka, context: C) -> Result<BaseConsumer<C>, Error> {
    let consumer: BaseConsumer<C> = consumer_config(k).create_with_context(context).map_err(|source| Error::Client { what: "consumer", source })?;
    let topics: Vec<&str> = k.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).map_err(Error::Subscribe)?;
    tracing::info!("consuming {} as group `{}`, delivery {}", topics.join(", "), k.group, k.delivery.as_str());
    Ok(consumer)
}

/// One record, or none within `wait`; a consumer error is logged (throttled) and
/// taken as none.
pub fn poll<'c, C: ConsumerContext>(consumer: &'c BaseConsumer<C>, wait: Duration, throttle: &Throttle) -> Option<BorrowedMessage<'c>> {
    match consumer.poll(wait)? {
        Ok(m) => Some(m),
        Err(e) => {
            if throttle.allow(&e.to_string()) {
                tracing::warn!("consumer: {e}");
            }
            None
        }
    }
}

/// The consumer's properties: the gateway's defaults, then the user's, then what the
/// delivery mode requires.
pub fn consumer_config(k: &Kafka) -> ClientConfig {
    let defaults = [
        ("client.id", "accord"),
        // Without a committed offset, start from the oldest retained record: a new
        // gateway enforces what is there rather than skipping it.
        ("auto.offset.reset", "earliest"),
        // Incremental rebalances: a replica joining or leaving moves only the
        // partitions that change hands; the others keep flowing.
        ("partition.assignment.strategy", "cooperative-sticky"),
        ("enable.partition.eof", "false"),
        // The prefetch queue is what keeps the loop fed while the broker answers
        // fetches; librdkafka's 64 MB (its default, written out here) measured
        // 1.6x the throughput of 16 MB, with a bounded memory cost.
        ("queued.max.messages.kbytes", "65536"),
        // Answer a fetch within 100 ms even when little has arrived (default 500).
        ("fetch.wait.max.ms", "100"),
        // Lag per partition for `/metrics` ([`stats`]).
        ("statistics.interval.ms", stats::DEFAULT_INTERVAL_MS),
        // Partitions added to an input topic are assigned and consumed within
        // seconds (librdkafka's default refresh is every 5 min); one small metadata
        // request for the input topics each time.
        ("topic.metadata.refresh.interval.ms", "10000"),
    ];
    let commit_interval = k.limits.commit_interval.as_millis().to_string();
    let mut required = vec![("group.id", k.group.as_str()), ("enable.auto.offset.store", "false")];
    match k.delivery {
        // librdkafka commits the offsets we store (only done ones), on this interval
        // and when partitions are revoked or the consumer closes.
        Delivery::AtLeastOnce => required.extend([("enable.auto.commit", "true"), ("auto.commit.interval.ms", commit_interval.as_str())]),
        Delivery::ExactlyOnce => required.extend([("enable.auto.commit", "false"), ("isolation.level", "read_committed")]),
    }
    layered(&defaults, &k.consumer, &k.brokers, &required)
}

/// The producer's properties, likewise.
pub fn producer_config(k: &Kafka) -> ClientConfig {
    let defaults = [
        ("client.id", "accord"),
        // Batching for throughput: wait up to 20 ms to fill batches of up to 1 MB;
        // lz4 is cheap on CPU and shrinks JSON several times on the wire and disk.
        ("linger.ms", "20"),
        ("batch.size", "1000000"),
        ("compression.type", "lz4"),
        // Bound the send queue (librdkafka's default is 1 GB): the gateway's own
        // limit (`limits.max_in_flight`, 100 000 outputs) pauses the input first.
        ("queue.buffering.max.kbytes", "131072"),
        ("queue.buffering.max.messages", "200000"),
        // Queue depth for `/metrics` ([`stats`]).
        ("statistics.interval.ms", stats::DEFAULT_INTERVAL_MS),
    ];
    // Idempotence: acks=all, retries without duplicates or reordering.
    let mut required = vec![("enable.idempotence", "true")];
    let id = k.transactional_id.clone().unwrap_or_else(|| crate::config::Config::default_transactional_id(&k.group));
    if k.delivery == Delivery::ExactlyOnce {
        required.push(("transactional.id", id.as_str()));
    }
    layered(&defaults, &k.producer, &k.brokers, &required)
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

pub fn log_librdkafka(throttle: &Throttle, client: &str, level: RDKafkaLogLevel, fac: &str, message: &str) {
    if (level as i32) <= (RDKafkaLogLevel::Warning as i32) {
        if throttle.allow(fac) {
            tracing::warn!("{client}: librdkafka {fac}: {message}");
        }
    } else {
        // Only what the `debug` property asked for gets this far: all of it.
        tracing::info!("{client}: librdkafka {fac}: {message}");
    }
}

pub fn error_librdkafka(throttle: &Throttle, client: &str, error: &KafkaError, reason: &str) {
    if throttle.allow(&format!("error {error}")) {
        tracing::warn!("{client}: {error}: {reason}");
    }
}

/// `topic[0,1,2] other[4]`, for logs.
pub fn describe(tpl: &rdkafka::TopicPartitionList) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn librdkafka_logs_its_warnings_and_all_that_debug_asks_for() {
        let level = |user: &[(&str, &str)]| {
            let user: Vec<(String, Secret)> = user.iter().map(|(n, v)| (n.to_string(), Secret::new(*v))).collect();
            layered(&[("linger.ms", "20")], &user, "127.0.0.1:9092", &[("enable.idempotence", "true")]).log_level as i32
        };
        assert_eq!(level(&[]), RDKafkaLogLevel::Warning as i32, "warnings, not rdkafka's errors only");
        assert_eq!(level(&[("debug", "cgrp,protocol")]), RDKafkaLogLevel::Debug as i32);
        assert_eq!(level(&[("debug", "")]), RDKafkaLogLevel::Warning as i32, "an empty debug asks for nothing");
    }
}
