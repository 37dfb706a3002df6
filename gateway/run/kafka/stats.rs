//! librdkafka's own figures as Prometheus metrics: consumer lag per input partition,
//! the producer's queue, failed deliveries.
//!
//! librdkafka emits a JSON document every `statistics.interval.ms` (the gateway sets
//! 1000, so the lag gauge is never more than a second old; a `consumer:` or
//! `producer:` property overrides it, `0` turns it off). The
//! consumer's arrives inside `poll`, on the loop's thread; the producer's where its
//! reports are served (at-least-once the loop's thread too, exactly-once the producer's
//! own). Either way the work here is small and bounded: one parse of the
//! few fields used (everything else is skipped), then a few gauge stores. Handles are
//! registered once: the producer's when its context is made, a lag gauge the first
//! time its partition is seen (labels from the configured input topics and partition
//! numbers only, so a bounded set), then cached.
//!
//! - `accord_kafka_consumer_lag{topic,partition}`: records in an assigned input
//!   partition that are not yet done. At-least-once: the partition's end (its last
//!   stable offset, since the input is read `read_committed`, as of the last fetch)
//!   less the gateway's own done watermark at that moment (every record before it has
//!   all its outputs acknowledged: what the next commit will carry), so the gauge
//!   does not wait for a commit to be made and reported (issue 13: librdkafka's
//!   `consumer_lag` counts from the committed offset, seconds behind); without a
//!   watermark yet, librdkafka's `consumer_lag`; until the group has committed one,
//!   the end less the position. Exactly-once: the end less the position,
//!   because offsets are committed by the producer's transactions, which the
//!   consumer's statistics never see (they would show the offset committed before the
//!   assignment, growing for ever). A partition no longer assigned is set to 0.
//! - `accord_kafka_producer_queue_messages` and `_bytes`: records (and their bytes)
//!   waiting in librdkafka's producer queues (`msg_cnt`, `msg_size`).
//! - `accord_kafka_delivery_errors_total`: delivery reports that came back failed
//!   (counted by the sink's delivery callback, not from the statistics).
//!
//! The consumer's document also says where its group handler is ([`Group`]): the
//! source's context makes `/healthz` fail when it has not been a steady member for
//! `limits.stuck_after` (a client that never finds its coordinator again after a
//! broker restart, seen in CI, consumes nothing and reports nothing else).

use std::collections::HashMap;
use std::sync::Mutex;

use metrics::{counter, gauge, Counter, Gauge};
use serde::Deserialize;

/// How often librdkafka reports, unless the configuration says otherwise.
pub const DEFAULT_INTERVAL_MS: &str = "1000";

/// The consumer's half: a lag gauge per assigned input partition.
pub struct ConsumerStats {
    /// The configured input topics: the only `topic` label values.
    topics: Vec<String>,
    /// Exactly-once: lag from the position, not from the committed offset.
    by_position: bool,
    /// Per (input topic index, partition): the gauge, registered on first sight.
    lag: Mutex<HashMap<(usize, i32), Gauge>>,
}

impl ConsumerStats {
    pub fn new(topics: Vec<String>, by_position: bool) -> ConsumerStats {
        ConsumerStats { topics, by_position, lag: Mutex::new(HashMap::new()) }
    }

    /// One statistics document from the consumer; `done` gives a partition's done
    /// watermark (input topic index, partition), where the gateway has one. Returns
    /// where the group handler is, when the document says.
    pub fn record(&self, json: &[u8], done: impl Fn(usize, i32) -> Option<i64>) -> Option<Group> {
        let Ok(stats) = serde_json::from_slice::<ConsumerJson>(json) else { return None };
        let mut lag = self.lag.lock().unwrap_or_else(|e| e.into_inner());
        let mut assigned: Vec<(usize, i32)> = Vec::new();
        for (name, topic) in &stats.topics {
            // Only the configured inputs: a label value never comes from elsewhere.
            let Some(t) = self.topics.iter().position(|c| c == name) else { continue };
            for p in topic.partitions.values() {
                let done = if self.by_position { None } else { done(t, p.partition) };
                let Some(n) = p.lag(self.by_position, done) else { continue };
                let gauge = lag.entry((t, p.partition)).or_insert_with(|| {
                    gauge!("accord_kafka_consumer_lag", "topic" => self.topics[t].clone(), "partition" => p.partition.to_string())
                });
                gauge.set(n as f64);
                assigned.push((t, p.partition));
            }
        }
        for (key, gauge) in lag.iter() {
            if !assigned.contains(key) {
                gauge.set(0.0);
            }
        }
        stats.cgrp
    }
}

/// Where the consumer's group handler is, in librdkafka's words
/// (`rd_kafka_cgrp_state_names`, `rd_kafka_cgrp_join_state_names`).
#[derive(Deserialize, Debug, Default, PartialEq)]
#[serde(default)]
pub struct Group {
    /// `up` once it has its coordinator; before: `init`, `query-coord`,
    /// `wait-coord`, `wait-broker`, `wait-broker-transport`.
    state: String,
    /// `steady` once it has joined and its assignment is applied; between:
    /// `wait-join`, `wait-sync`, `wait-assign-call` and others.
    join_state: String,
}

impl Group {
    /// A member with its coordinator and its assignment (an empty assignment is
    /// steady too: replicas may outnumber partitions).
    pub fn steady(&self) -> bool {
        self.state == "up" && self.join_state == "steady"
    }
}

impl std::fmt::Display for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "librdkafka's group handler is `{}`, its join `{}`", self.state, self.join_state)
    }
}

/// The producer's half: its queue, and failed deliveries.
pub struct ProducerStats {
    messages: Gauge,
    bytes: Gauge,
    delivery_errors: Counter,
}

impl ProducerStats {
    /// Registers the handles (no-ops when no metrics recorder is installed).
    pub fn new() -> ProducerStats {
        ProducerStats {
            messages: gauge!("accord_kafka_producer_queue_messages"),
            bytes: gauge!("accord_kafka_producer_queue_bytes"),
            delivery_errors: counter!("accord_kafka_delivery_errors_total"),
        }
    }

    /// One statistics document from the producer.
    pub fn record(&self, json: &[u8]) {
        let Ok(stats) = serde_json::from_slice::<ProducerJson>(json) else { return };
        self.messages.set(stats.msg_cnt as f64);
        self.bytes.set(stats.msg_size as f64);
    }

    /// A delivery report came back failed.
    pub fn delivery_failed(&self) {
        self.delivery_errors.increment(1);
    }
}

impl Default for ProducerStats {
    fn default() -> ProducerStats {
        ProducerStats::new()
    }
}

// ---------------------------------------------- the fields librdkafka sends --
// (https://github.com/confluentinc/librdkafka/blob/master/STATISTICS.md); anything
// else in the document is skipped unparsed.

#[derive(Deserialize, Default)]
#[serde(default)]
struct ProducerJson {
    msg_cnt: u64,
    msg_size: u64,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ConsumerJson {
    topics: HashMap<String, TopicJson>,
    cgrp: Option<Group>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TopicJson {
    partitions: HashMap<String, PartitionJson>,
}

/// Offsets are -1 or -1001 when unknown.
#[derive(Deserialize)]
#[serde(default)]
struct PartitionJson {
    /// -1 is librdkafka's internal "unassigned" partition.
    partition: i32,
    /// In the application's assignment.
    desired: bool,
    consumer_lag: i64,
    lo_offset: i64,
    hi_offset: i64,
    ls_offset: i64,
    app_offset: i64,
    committed_offset: i64,
}

impl Default for PartitionJson {
    fn default() -> PartitionJson {
        PartitionJson {
            partition: -1,
            desired: false,
            consumer_lag: -1,
            lo_offset: -1,
            hi_offset: -1,
            ls_offset: -1,
            app_offset: -1,
            committed_offset: -1,
        }
    }
}

impl PartitionJson {
    /// The lag of an assigned partition, when its offsets are known; `done`: the
    /// gateway's done watermark (at-least-once).
    fn lag(&self, by_position: bool, done: Option<i64>) -> Option<i64> {
        if self.partition < 0 || !self.desired {
            return None;
        }
        let end = if self.ls_offset >= 0 { self.ls_offset } else { self.hi_offset };
        if let (false, Some(done), true) = (by_position, done, end >= 0) {
            return Some((end - done.max(self.committed_offset)).max(0));
        }
        if !by_position && self.consumer_lag >= 0 {
            return Some(self.consumer_lag);
        }
        // The next record to read: after the last one handed to the gateway, else
        // where reading starts (the committed offset, else the oldest retained).
        let from = [self.app_offset, self.committed_offset, self.lo_offset].into_iter().find(|o| *o >= 0)?;
        (end >= 0).then(|| (end - from).max(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A consumer's document as librdkafka 2.12 writes it (trimmed).
    const CONSUMER: &str = r#"{"name":"accord#consumer-1","type":"consumer","msg_cnt":0,"msg_size":0,
      "brokers":{"127.0.0.1:9092/1":{"name":"127.0.0.1:9092/1","rtt":{"min":1,"max":9,"avg":3}}},
      "topics":{
        "sensors.raw":{"topic":"sensors.raw","partitions":{
          "0":{"partition":0,"desired":true,"fetch_state":"active","consumer_lag":12,"lo_offset":0,"hi_offset":112,"ls_offset":112,"app_offset":110,"committed_offset":100},
          "1":{"partition":1,"desired":true,"fetch_state":"active","consumer_lag":-1,"lo_offset":5,"hi_offset":40,"ls_offset":40,"app_offset":-1001,"committed_offset":-1001},
          "2":{"partition":2,"desired":false,"fetch_state":"none","consumer_lag":-1,"lo_offset":-1001,"hi_offset":-1001,"ls_offset":-1001,"app_offset":-1001,"committed_offset":-1001},
          "-1":{"partition":-1,"desired":false,"fetch_state":"none","consumer_lag":-1}}},
        "elsewhere":{"topic":"elsewhere","partitions":{"0":{"partition":0,"desired":true,"consumer_lag":7}}}},
      "cgrp":{"state":"up","stateage":20011,"join_state":"steady","rebalance_age":19040,"rebalance_cnt":1,"rebalance_reason":"","assignment_size":2}}"#;

    fn partition(p: &str) -> PartitionJson {
        let stats: ConsumerJson = serde_json::from_str(CONSUMER).unwrap();
        let mut t = stats.topics.into_iter().find(|(n, _)| n == "sensors.raw").unwrap().1;
        t.partitions.remove(p).unwrap()
    }

    #[test]
    fn lag_is_counted_only_for_assigned_partitions() {
        assert_eq!(partition("0").lag(false, None), Some(12), "librdkafka's lag from the committed offset");
        assert_eq!(partition("0").lag(false, Some(112)), Some(0), "issue 13: everything done is no lag, committed or not yet");
        assert_eq!(partition("0").lag(false, Some(105)), Some(7), "from the done watermark");
        assert_eq!(partition("0").lag(true, Some(112)), Some(2), "exactly-once: from the position");
        assert_eq!(partition("1").lag(false, None), Some(35), "nothing committed or read yet: from the oldest retained");
        assert_eq!(partition("2").lag(false, Some(3)), None, "not assigned");
        assert_eq!(partition("-1").lag(false, None), None, "librdkafka's internal partition");
    }

    #[test]
    fn a_document_sets_the_gauges_and_anything_unreadable_is_ignored() {
        // Without a recorder the handles are no-ops: this checks the walk, not the values.
        let c = ConsumerStats::new(vec!["sensors.raw".into()], false);
        c.record(CONSUMER.as_bytes(), |_, _| None);
        let seen: Vec<(usize, i32)> = {
            let mut v: Vec<_> = c.lag.lock().unwrap().keys().copied().collect();
            v.sort();
            v
        };
        assert_eq!(seen, [(0, 0), (0, 1)], "only the configured input's assigned partitions get a gauge");
        assert_eq!(c.record(b"not json", |_, _| Some(0)), None);
    }

    #[test]
    fn the_group_is_steady_only_up_with_its_assignment_applied() {
        let c = ConsumerStats::new(vec!["sensors.raw".into()], false);
        let group = c.record(CONSUMER.as_bytes(), |_, _| None).expect("the document has a cgrp");
        assert!(group.steady(), "{group}");
        let state = |s: &str, j: &str| Group { state: s.into(), join_state: j.into() };
        for s in ["init", "term", "query-coord", "wait-coord", "wait-broker", "wait-broker-transport"] {
            assert!(!state(s, "steady").steady(), "{s}: no coordinator");
        }
        for j in ["init", "wait-join", "wait-metadata", "wait-sync", "wait-assign-call", "wait-unassign-call", "wait-unassign-to-complete", "wait-incr-unassign-to-complete"] {
            assert!(!state("up", j).steady(), "{j}: between a leave and a join");
        }
        let away = CONSUMER.replace(r#""state":"up""#, r#""state":"wait-coord""#).replace(r#""join_state":"steady""#, r#""join_state":"init""#);
        let group = c.record(away.as_bytes(), |_, _| None).unwrap();
        assert_eq!(group.to_string(), "librdkafka's group handler is `wait-coord`, its join `init`");
        let no_group = CONSUMER[..CONSUMER.find(r#""cgrp""#).unwrap()].trim_end().trim_end_matches(',').to_string() + "}";
        assert_eq!(c.record(no_group.as_bytes(), |_, _| None), None, "no group, nothing said");
    }

    #[test]
    fn producer_statistics_set_the_queue_gauges_and_failures_count() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let p = ProducerStats::new();
            p.record(br#"{"type":"producer","msg_cnt":3,"msg_size":300,"topics":{}}"#);
            p.record(b"{"); // unreadable: the gauges keep their values
            p.delivery_failed();
            p.delivery_failed();
        });
        let text = handle.render();
        let value = |name: &str| text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok());
        assert_eq!(value("accord_kafka_producer_queue_messages"), Some(3.0), "{text}");
        assert_eq!(value("accord_kafka_producer_queue_bytes"), Some(300.0), "{text}");
        assert_eq!(value("accord_kafka_delivery_errors_total"), Some(2.0), "{text}");
    }
}
