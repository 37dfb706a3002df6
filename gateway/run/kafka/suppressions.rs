//! The suppressions topic (SPEC 2.7, Kafka mode): a compacted topic whose record key is
//! `subject "/" reason`; the latest record per key is in force and a tombstone lifts it.
//!
//! Every replica reads it on its own, with a consumer outside any group (it assigns
//! every partition from the beginning and commits nothing): [`Follower::start`] reads
//! the topic to its end before it returns, so no input record is taken before the
//! suppressions are known, then a thread follows it and swaps a new immutable set into
//! the [`Live`] cell after each burst of changes. The enforcement step reads that cell
//! once per record, so an entry is honoured from the first record processed after the
//! swap. Fetches wait at most 50 ms, so the swap follows the broker's acknowledgement
//! by well under a second.
//!
//! An invalid record is refused with a sentence in the log (never its content) and the
//! entry before it under that key stays in force: a malformed record must not lift a
//! worker's objection. [`write`] is what `accord suppress` uses.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::Kafka;
use crate::engine::suppress::{Entry, Suppressions};
use crate::run::suppressions::{self, Live};

/// Why the topic cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create the Kafka client for the suppressions topic `{topic}`")]
    Client { topic: String, source: KafkaError },
    #[error("the suppressions topic `{topic}` cannot be read; it must exist (compacted) before the gateway starts")]
    Metadata { topic: String, source: KafkaError },
    #[error("the suppressions topic `{0}` does not exist; create it (cleanup.policy=compact) before the gateway starts")]
    Missing(String),
    #[error("the suppressions topic `{topic}` could not be read to its end within {timeout:?}; no input is taken without the suppressions in force")]
    CatchUp { topic: String, timeout: Duration },
    #[error("the suppression could not be written to the topic `{topic}`")]
    Write { topic: String, source: KafkaError },
}

/// The consumer's properties: the user's (security), then what following needs.
fn consumer_config(k: &Kafka) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("client.id", "accord-suppressions");
    for (name, value) in &k.consumer {
        c.set(name, value.expose());
    }
    // No group: nothing is committed, every replica reads everything.
    c.set("bootstrap.servers", &k.brokers)
        .set("group.id", "accord-suppressions-unused")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "50")
        .set("isolation.level", "read_committed");
    c
}

/// The entries in force, by record key.
#[derive(Default)]
struct Entries {
    by_key: BTreeMap<Vec<u8>, Entry>,
    refused: u64,
}

impl Entries {
    /// Applies one record; true if what is in force changed.
    fn apply(&mut self, key: Option<&[u8]>, value: Option<&[u8]>, key_id: &str) -> bool {
        let Some(key) = key else {
            self.refuse("a record without a key");
            return false;
        };
        let Some(value) = value else {
            return self.by_key.remove(key).is_some();
        };
        let entry = match Entry::parse(value).and_then(|e| Suppressions::refuse_other_key(&e, key_id).map(|()| e)) {
            Ok(e) => e,
            Err(why) => {
                self.refuse(&why);
                return false;
            }
        };
        if entry.key().as_bytes() != key {
            self.refuse("its key is not `subject/reason` of its value");
            return false;
        }
        self.by_key.insert(key.to_vec(), entry);
        true
    }

    fn refuse(&mut self, why: &str) {
        self.refused += 1;
        tracing::warn!("suppressions topic: a record is refused ({why}); the entry before it under its key stays in force");
    }

    fn set(&self, key_id: &str) -> Suppressions {
        Suppressions::new(key_id, self.by_key.values().cloned())
    }
}

/// Follows the topic until dropped.
pub struct Follower {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Follower {
    /// Reads `topic` to its end into `live` (within `timeout`), then follows it.
    pub fn start(k: &Kafka, topic: &str, key_id: &str, live: Live, timeout: Duration) -> Result<Follower, Error> {
        let consumer: BaseConsumer = consumer_config(k).create().map_err(|source| Error::Client { topic: topic.into(), source })?;
        let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).map_err(|source| Error::Metadata { topic: topic.into(), source })?;
        let partitions: Vec<i32> = md.topics().iter().filter(|t| t.name() == topic && t.error().is_none()).flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
        if partitions.is_empty() {
            return Err(Error::Missing(topic.into()));
        }
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            tpl.add_partition_offset(topic, *p, Offset::Beginning).expect("a valid partition");
        }
        consumer.assign(&tpl).map_err(|source| Error::Metadata { topic: topic.into(), source })?;
        // Catch up: every partition read to the end it had when we started.
        let mut entries = Entries::default();
        let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
        for p in &partitions {
            let (_, high) = consumer.fetch_watermarks(topic, *p, Duration::from_secs(10)).map_err(|source| Error::Metadata { topic: topic.into(), source })?;
            ends.insert(*p, high);
        }
        let started = Instant::now();
        let mut at: BTreeMap<i32, i64> = partitions.iter().map(|p| (*p, 0)).collect();
        while ends.iter().any(|(p, end)| at[p] < *end) {
            if started.elapsed() > timeout {
                return Err(Error::CatchUp { topic: topic.into(), timeout });
            }
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    entries.apply(m.key(), m.payload(), key_id);
                    at.insert(m.partition(), m.offset() + 1);
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    // Compaction may leave the last offsets empty: the end is reached.
                    if let Some(end) = ends.get(&p) {
                        at.insert(p, *end);
                    }
                }
                Some(Err(e)) => tracing::warn!("suppressions topic: {e}"),
                None => {}
            }
        }
        suppressions::swap(&live, entries.set(key_id));
        tracing::info!(in_force = entries.by_key.len(), refused = entries.refused, "suppressions read from the topic `{topic}`");
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, key_id, topic) = (stop.clone(), key_id.to_string(), topic.to_string());
        let thread = std::thread::Builder::new()
            .name("accord-suppressions".into())
            .spawn(move || follow(consumer, entries, &key_id, &topic, live, &flag))
            .expect("a thread");
        Ok(Follower { stop, thread: Some(thread) })
    }
}

fn follow(consumer: BaseConsumer, mut entries: Entries, key_id: &str, topic: &str, live: Live, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let mut changed = false;
        let mut wait = Duration::from_millis(100);
        // A burst of records becomes one new set.
        while let Some(r) = consumer.poll(wait) {
            wait = Duration::ZERO;
            match r {
                Ok(m) => changed |= entries.apply(m.key(), m.payload(), key_id),
                Err(KafkaError::PartitionEOF(_)) => break,
                Err(e) => tracing::warn!("suppressions topic `{topic}`: {e}"),
            }
        }
        if changed {
            suppressions::swap(&live, entries.set(key_id));
            tracing::info!(in_force = entries.by_key.len(), "suppressions changed");
        }
    }
}

/// Writes one entry (or, with `lift`, its tombstone) and waits for the broker's
/// acknowledgement. Returns the partition and offset it was written at.
pub fn write(k: &Kafka, topic: &str, entry: &Entry, lift: bool) -> Result<(i32, i64), Error> {
    let mut c = ClientConfig::new();
    c.set("client.id", "accord-suppress");
    for (name, value) in &k.producer {
        c.set(name, value.expose());
    }
    c.set("bootstrap.servers", &k.brokers).set("enable.idempotence", "true").set("acks", "all");
    let (tx, rx) = std::sync::mpsc::channel();
    let producer: ThreadedProducer<Ack> = c.create_with_context(Ack(std::sync::Mutex::new(tx))).map_err(|source| Error::Client { topic: topic.into(), source })?;
    let key = entry.key();
    let value = entry.to_json();
    let record = BaseRecord::<str, str>::to(topic).key(&key);
    let record = if lift { record } else { record.payload(&value) };
    producer.send(record).map_err(|(source, _)| Error::Write { topic: topic.into(), source })?;
    let _ = producer.flush(Duration::from_secs(30));
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok(at)) => Ok(at),
        Ok(Err(source)) => Err(Error::Write { topic: topic.into(), source }),
        Err(_) => Err(Error::Write { topic: topic.into(), source: KafkaError::Canceled }),
    }
}

struct Ack(std::sync::Mutex<std::sync::mpsc::Sender<Result<(i32, i64), KafkaError>>>);

impl rdkafka::ClientContext for Ack {}

impl rdkafka::producer::ProducerContext for Ack {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        let r = match result {
            Ok(m) => Ok((m.partition(), m.offset())),
            Err((e, _)) => Err(e.clone()),
        };
        let _ = self.0.lock().unwrap_or_else(|e| e.into_inner()).send(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &str = "k1:0123456789abcdef0123456789abcdef";

    #[test]
    fn the_latest_per_key_is_in_force_a_tombstone_lifts_and_garbage_lifts_nothing() {
        let mut e = Entries::default();
        let key = format!("{S}/objection");
        let v = format!(r#"{{"subject":"{S}","reason":"objection"}}"#);
        assert!(e.apply(Some(key.as_bytes()), Some(v.as_bytes()), "k1"));
        assert_eq!(e.set("k1").len(), 1);
        // Invalid, or under the wrong key: refused, the entry stays.
        assert!(!e.apply(Some(key.as_bytes()), Some(b"{\"subject\":1}"), "k1"));
        assert!(!e.apply(Some(format!("{S}/restriction").as_bytes()), Some(v.as_bytes()), "k1"));
        assert!(!e.apply(None, Some(v.as_bytes()), "k1"));
        assert_eq!((e.set("k1").len(), e.refused), (1, 3));
        let narrower = format!(r#"{{"subject":"{S}","reason":"objection","purposes":["planning"]}}"#);
        assert!(e.apply(Some(key.as_bytes()), Some(narrower.as_bytes()), "k1"));
        assert_eq!(e.by_key[key.as_bytes()].purposes.as_deref(), Some(&["planning".to_string()][..]));
        assert!(e.apply(Some(key.as_bytes()), None, "k1"));
        assert!(e.set("k1").is_empty());
        assert!(!e.apply(Some(key.as_bytes()), None, "k1"));
    }
}
