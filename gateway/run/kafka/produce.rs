//! Handing one record to librdkafka, through either kind of producer.
//!
//! At-least-once produces through a [`LoopProducer`] (its loop serves the delivery
//! reports), exactly-once through a [`Producer`] (its own thread serves them). A
//! [`Sender`] hands a record to either the same way: the payload and key copied, the
//! partition librdkafka's partitioner's, the headers a copy that librdkafka owns once
//! it has taken the record, and the ticket's number as the delivery opaque, which comes
//! back to [`super::sink::SinkContext::delivery`].
//!
//! Producing by librdkafka topic handle instead of by name (`rd_kafka_produceva`) was
//! tried: it saves a C string and a look-up by name per record, but measured within
//! the noise, and it needed unsafe code tied to rdkafka's internals. rdkafka's own
//! `send` is kept.

use std::sync::Arc;

use rdkafka::error::KafkaError;
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::BaseRecord;

use super::sink::{LoopProducer, Producer};

/// The producer records are handed to.
pub enum Sender {
    Threaded(Arc<Producer>),
    Loop(Arc<LoopProducer>),
}

impl From<Arc<Producer>> for Sender {
    fn from(p: Arc<Producer>) -> Sender {
        Sender::Threaded(p)
    }
}

impl From<Arc<LoopProducer>> for Sender {
    fn from(p: Arc<LoopProducer>) -> Sender {
        Sender::Loop(p)
    }
}

impl Sender {
    /// Sends through `producer` (either kind).
    pub fn new(producer: impl Into<Sender>) -> Sender {
        producer.into()
    }

    /// Hands one record to librdkafka, with `opaque` for its delivery report; on
    /// failure librdkafka keeps nothing of it (a full queue is
    /// [`rdkafka::types::RDKafkaErrorCode::QueueFull`]).
    pub fn send(&mut self, topic: &str, key: Option<&[u8]>, payload: &[u8], headers: Option<&OwnedHeaders>, opaque: usize) -> Result<(), KafkaError> {
        let mut record: BaseRecord<'_, [u8], [u8], usize> = BaseRecord::with_opaque_to(topic, opaque).payload(payload);
        if let Some(key) = key {
            record = record.key(key);
        }
        // Each record needs its own headers: librdkafka frees them with the record.
        if let Some(h) = headers {
            record = record.headers(h.clone());
        }
        match self {
            Sender::Threaded(p) => p.send(record),
            Sender::Loop(p) => p.send(record),
        }
        .map_err(|(e, _)| e)
    }
}
