//! The audit trail's copy on a Kafka topic (`audit.topic`), and its verification.
//!
//! The trail's file is the source of truth; [`AuditTopic`] is the mirror that
//! [`crate::report::audit::AuditTrail::with_mirror`] hands every appended line to, in the
//! file's order. A small producer of its own (idempotent, `acks=all`, no delivery
//! timeout) sends each line as one record to partition 0, so the topic's order is the
//! file's; a line that cannot be sent is logged and stays in the file. It is flushed
//! when the gateway stops.
//!
//! The topic must exist with exactly one partition (the gateway checks at start, and
//! never creates it): one partition gives the records a total order. Several gateways
//! (replicas) may share it: each record's key names its trail (`HOST:FILE`), and
//! [`verify`] checks each trail's chain on its own, with the very same checks as for
//! a file ([`crate::report::audit::Chain`]): links, checkpoint signatures, open or closed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{Offset, TopicPartitionList};

use super::client::Throttle;
use crate::report::audit::{Chain, Expect, Mirror, Verified};
use crate::config::Kafka;

/// How long metadata and watermark requests may take.
const ASK: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum AuditTopicError {
    #[error("cannot create the Kafka {what} for the audit topic")]
    Client {
        what: &'static str,
        #[source]
        source: KafkaError,
    },
    #[error("the audit topic `{topic}` does not exist; create it with one partition (kafka-topics.sh --create --topic {topic} --partitions 1 --config retention.ms=-1)")]
    Missing { topic: String },
    #[error("the audit topic `{topic}` has {partitions} partitions; it must have exactly one, so that its records keep one order (a trail is a chain, read in order)")]
    Partitions { topic: String, partitions: usize },
    #[error("cannot read the audit topic `{topic}`")]
    Read {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("the audit topic `{topic}` could not be read to its end within {timeout:?} (at offset {at} of {end})")]
    Timeout { topic: String, timeout: Duration, at: i64, end: i64 },
}

/// The copy of one gateway's trail on the audit topic.
pub struct AuditTopic {
    producer: ThreadedProducer<CopyContext>,
    topic: String,
    /// The record key: which trail the records belong to.
    key: String,
}

impl AuditTopic {
    /// Makes the producer and checks the topic: it must exist with one partition. When
    /// the brokers cannot be asked now, the check is skipped with a warning (records
    /// wait in the producer until they answer).
    pub fn open(k: &Kafka, topic: &str, file: &Path) -> Result<AuditTopic, AuditTopicError> {
        let c = super::client::layered(
            &[("client.id", "accord-audit"), ("linger.ms", "5")],
            &k.producer,
            &k.brokers,
            &[
                // In order, once each, acknowledged by every in-sync replica.
                ("enable.idempotence", "true"),
                ("acks", "all"),
                // Never given up: a record waits for the brokers as long as the gateway runs.
                ("message.timeout.ms", "0"),
                // The topic is made deliberately, with one partition; never by a send.
                ("allow.auto.create.topics", "false"),
                ("statistics.interval.ms", "0"),
            ],
        );
        let context = CopyContext { topic: topic.to_string(), throttle: Throttle::default() };
        let producer: ThreadedProducer<CopyContext> = c.create_with_context(context).map_err(|source| AuditTopicError::Client { what: "producer", source })?;
        match partitions(producer.client(), topic) {
            Ok(1) => {}
            Ok(partitions) => return Err(AuditTopicError::Partitions { topic: topic.to_string(), partitions }),
            Err(AuditTopicError::Read { source, .. }) => {
                tracing::warn!("cannot check the audit topic `{topic}` now ({source}); its records wait in the producer until the brokers answer")
            }
            Err(e) => return Err(e),
        }
        let key = format!("{}:{}", hostname(), std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf()).display());
        tracing::info!("copying the audit trail to topic `{topic}` (key `{key}`)");
        Ok(AuditTopic { producer, topic: topic.to_string(), key })
    }

    /// The trail's mirror: hands each line to the producer (never waits for it).
    pub fn mirror(self: &Arc<AuditTopic>) -> Mirror {
        let me = self.clone();
        Box::new(move |line: &[u8]| me.send(line))
    }

    fn send(&self, line: &[u8]) {
        let record = BaseRecord::to(&self.topic).partition(0).key(self.key.as_bytes()).payload(line);
        if let Err((e, _)) = self.producer.send(record) {
            if self.producer.context().throttle.allow("send") {
                tracing::warn!("could not copy an audit record to topic `{}` ({e}); the trail's file keeps it", self.topic);
            }
        }
    }

    /// Waits (at most `timeout`) until every record is acknowledged.
    pub fn flush(&self, timeout: Duration) {
        if self.producer.in_flight_count() == 0 {
            return;
        }
        if let Err(e) = self.producer.flush(timeout) {
            tracing::warn!(
                "{} audit record(s) not copied to topic `{}` within {timeout:?} ({e}); the trail's file keeps them, and `accord audit verify --topic` will find them missing",
                self.producer.in_flight_count(),
                self.topic
            );
        }
    }
}

impl Drop for AuditTopic {
    fn drop(&mut self) {
        // rust-rdkafka purges what is queued when the producer is dropped.
        self.flush(Duration::from_secs(10));
    }
}

/// The copy's producer context: failed deliveries and librdkafka's warnings, logged.
struct CopyContext {
    topic: String,
    throttle: Throttle,
}

impl ClientContext for CopyContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        super::client::log_librdkafka(&self.throttle, "audit producer", level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        super::client::error_librdkafka(&self.throttle, "audit producer", &error, reason);
    }

    fn stats_raw(&self, _: &[u8]) {}
}

impl ProducerContext for CopyContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            if self.throttle.allow("delivery") {
                tracing::warn!("an audit record could not be copied to topic `{}` ({e}); the trail's file keeps it", self.topic);
            }
        }
    }
}

/// The number of partitions of `topic`; `Missing` if it does not exist.
fn partitions<C: ClientContext>(client: &rdkafka::client::Client<C>, topic: &str) -> Result<usize, AuditTopicError> {
    let read = |source| AuditTopicError::Read { topic: topic.to_string(), source };
    let md = client.fetch_metadata(Some(topic), ASK).map_err(read)?;
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else { return Err(AuditTopicError::Missing { topic: topic.to_string() }) };
    match t.error() {
        None if !t.partitions().is_empty() => Ok(t.partitions().len()),
        None | Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) => Err(AuditTopicError::Missing { topic: topic.to_string() }),
        Some(e) => Err(read(KafkaError::MetadataFetch(RDKafkaErrorCode::from(e)))),
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_string()))
        .unwrap_or_else(|| "accord".to_string())
}

// ------------------------------------------------------------- verification --

/// One trail found on the topic.
#[derive(Debug)]
pub struct TrailCopy {
    /// The records' key (`HOST:FILE`), empty when they have none.
    pub key: String,
    /// The offset of its first record.
    pub first_offset: i64,
    /// What its chain check found; `Broken::line` is an offset in the topic.
    pub verified: Verified,
}

/// What [`verify`] found on the topic.
#[derive(Debug)]
pub struct TopicVerified {
    /// The first offset still in the topic (above 0: earlier records were deleted).
    pub start: i64,
    /// One past the last offset read.
    pub end: i64,
    /// Each trail, in the order its first record appears.
    pub trails: Vec<TrailCopy>,
}

impl TopicVerified {
    pub fn records(&self) -> u64 {
        self.trails.iter().map(|t| t.verified.records).sum()
    }

    pub fn broken(&self) -> impl Iterator<Item = &TrailCopy> {
        self.trails.iter().filter(|t| t.verified.broken.is_some())
    }
}

/// Reads the audit topic from its start to its end (as it is when the reading
/// starts; no consumer group, nothing committed) and checks every trail on it as a
/// file is checked (links, checkpoint signatures by `expect`'s key, its earlier head).
/// Refuses a topic with more than one partition.
pub fn verify(k: &Kafka, topic: &str, expect: &Expect, timeout: Duration) -> Result<TopicVerified, AuditTopicError> {
    let read = |source| AuditTopicError::Read { topic: topic.to_string(), source };
    // librdkafka needs a group for `assign`; it is never joined (no subscription)
    // and nothing is committed.
    let c = super::client::layered(
        &[("client.id", "accord-audit-verify")],
        &k.consumer,
        &k.brokers,
        &[
            ("group.id", "accord-audit-verify"),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("enable.partition.eof", "true"),
            ("auto.offset.reset", "earliest"),
            ("statistics.interval.ms", "0"),
        ],
    );
    let consumer: BaseConsumer<QuietContext> =
        c.create_with_context(QuietContext(Throttle::default())).map_err(|source| AuditTopicError::Client { what: "consumer", source })?;
    match partitions(consumer.client(), topic)? {
        1 => {}
        partitions => return Err(AuditTopicError::Partitions { topic: topic.to_string(), partitions }),
    }
    let (start, end) = consumer.fetch_watermarks(topic, 0, ASK).map_err(read)?;
    let mut found = TopicVerified { start, end, trails: Vec::new() };
    if end <= start {
        return Ok(found);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(start)).map_err(read)?;
    consumer.assign(&tpl).map_err(read)?;
    let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut chains: Vec<Chain> = Vec::new();
    let (mut at, mut last_progress) = (start, Instant::now());
    while at < end {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                at = m.offset() + 1;
                last_progress = Instant::now();
                if m.offset() >= end {
                    break;
                }
                let key = m.key().unwrap_or_default();
                let i = *index.entry(key.to_vec()).or_insert_with(|| {
                    chains.push(Chain::new(expect.clone()));
                    found.trails.push(TrailCopy { key: String::from_utf8_lossy(key).into_owned(), first_offset: m.offset(), verified: Chain::new(expect.clone()).verified() });
                    chains.len() - 1
                });
                // The same lines as a file's: a record is a line (a newline inside
                // one makes it two, as in a file).
                for line in m.payload().unwrap_or_default().split(|b| *b == b'\n') {
                    chains[i].push(line, m.offset() as usize);
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) => return Err(read(e)),
            None if last_progress.elapsed() > timeout => return Err(AuditTopicError::Timeout { topic: topic.to_string(), timeout, at, end }),
            None => {}
        }
    }
    for (t, chain) in found.trails.iter_mut().zip(&chains) {
        t.verified = chain.verified();
    }
    found.end = at.max(found.start);
    Ok(found)
}

/// The verifying consumer's context: librdkafka's warnings logged, nothing else.
struct QuietContext(Throttle);

impl ClientContext for QuietContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        super::client::log_librdkafka(&self.0, "audit reader", level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        super::client::error_librdkafka(&self.0, "audit reader", &error, reason);
    }

    fn stats_raw(&self, _: &[u8]) {}
}

impl ConsumerContext for QuietContext {}
