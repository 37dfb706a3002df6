//! Handing one record to librdkafka, by topic handle.
//!
//! rdkafka's `BaseProducer::send` names the topic per record: it copies the name into
//! a new C string, and librdkafka looks the topic up by name under its client-wide
//! write lock (`rd_kafka_topic_new0`), which the client's own threads take for reading
//! all the time. A [`Sender`] keeps a librdkafka handle per output topic instead (made
//! the first time a topic is produced to, kept until the sender is dropped) and hands
//! each record over with `rd_kafka_produceva` and that handle: no allocation, lock or
//! look-up by name per record. Everything else is what `send` does: the payload and
//! key are copied (`RD_KAFKA_MSG_F_COPY`), the partition is librdkafka's partitioner's,
//! the timestamp the current time, the headers a copy that librdkafka owns (and frees)
//! once it has taken the record, and the delivery opaque comes back to
//! [`super::sink::SinkContext::delivery`].

use std::any::Any;
use std::ffi::{c_void, CString};
use std::ptr::{self, NonNull};
use std::sync::Arc;

use rdkafka::bindings as rd;
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::Producer;
use rdkafka::types::RDKafkaErrorCode;

use super::sink::SinkContext;

/// A librdkafka topic handle (`rd_kafka_topic_t`), destroyed with its [`Sender`].
struct Handle(NonNull<rd::rd_kafka_topic_t>);

// librdkafka's topic handles are reference-counted and thread-safe.
unsafe impl Send for Handle {}
unsafe impl Sync for Handle {}

/// A producer's client, and a handle per topic produced to so far. The handles are
/// destroyed before the client can be: the sender holds a reference to its producer.
pub struct Sender {
    rk: NonNull<rd::rd_kafka_t>,
    _producer: Arc<dyn Any + Send + Sync>,
    topics: Vec<(Box<str>, Handle)>,
}

impl Sender {
    /// Sends through `producer` (either kind: [`super::sink::Producer`] or
    /// [`super::sink::LoopProducer`]).
    pub fn new<P: Producer<SinkContext> + Send + Sync + 'static>(producer: Arc<P>) -> Sender {
        let rk = NonNull::new(producer.client().native_ptr()).expect("a live client");
        Sender { rk, _producer: producer, topics: Vec::new() }
    }

    /// The handle of `topic`, made the first time it is asked for.
    fn handle(&mut self, topic: &str) -> Result<*mut rd::rd_kafka_topic_t, KafkaError> {
        if let Some((_, h)) = self.topics.iter().find(|(t, _)| &**t == topic) {
            return Ok(h.0.as_ptr());
        }
        let name = CString::new(topic)?;
        // SAFETY: the client lives as long as `self` holds its producer; a null configuration
        // takes the producer's topic defaults, as producing by name does.
        let rkt = unsafe { rd::rd_kafka_topic_new(self.rk.as_ptr(), name.as_ptr(), ptr::null_mut()) };
        let Some(rkt) = NonNull::new(rkt) else {
            // SAFETY: reads the calling thread's last librdkafka error.
            let code = unsafe { rd::rd_kafka_last_error() };
            return Err(KafkaError::MessageProduction(code.into()));
        };
        self.topics.push((topic.into(), Handle(rkt)));
        Ok(rkt.as_ptr())
    }

    /// Hands one record to librdkafka, with `opaque` for its delivery report; on
    /// failure librdkafka keeps nothing of it (a full queue is
    /// [`RDKafkaErrorCode::QueueFull`]).
    pub fn send(&mut self, topic: &str, key: Option<&[u8]>, payload: &[u8], headers: Option<&OwnedHeaders>, opaque: usize) -> Result<(), KafkaError> {
        let rkt = self.handle(topic)?;
        // Each record needs its own headers: librdkafka frees them with the record.
        let headers = headers.cloned();
        let mem = |b: &[u8]| rd::rd_kafka_vu_s__bindgen_ty_1 { mem: rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 { ptr: b.as_ptr() as *mut c_void, size: b.len() } };
        let vu = |vtype, u| rd::rd_kafka_vu_t { vtype, u };
        let mut vus = [
            vu(rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_RKT, rd::rd_kafka_vu_s__bindgen_ty_1 { rkt }),
            vu(rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_MSGFLAGS, rd::rd_kafka_vu_s__bindgen_ty_1 { i: rd::RD_KAFKA_MSG_F_COPY }),
            vu(rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_VALUE, mem(payload)),
            vu(rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_OPAQUE, rd::rd_kafka_vu_s__bindgen_ty_1 { ptr: opaque as *mut c_void }),
            // Placeholders for the key and the headers, when there are.
            vu(rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_END, rd::rd_kafka_vu_s__bindgen_ty_1 { i: 0 }),
            vu(rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_END, rd::rd_kafka_vu_s__bindgen_ty_1 { i: 0 }),
        ];
        let mut n = 4;
        if let Some(key) = key {
            vus[n] = vu(rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_KEY, mem(key));
            n += 1;
        }
        if let Some(h) = &headers {
            // An `&BorrowedHeaders` is rdkafka's view of the `rd_kafka_headers_t` itself.
            let ptr = h.as_borrowed() as *const _ as *mut rd::rd_kafka_headers_t;
            vus[n] = vu(rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_HEADERS, rd::rd_kafka_vu_s__bindgen_ty_1 { headers: ptr });
            n += 1;
        }
        // SAFETY: every pointer in `vus` outlives the call (librdkafka copies the key
        // and payload, and takes the headers only on success); `rkt` is a live handle
        // of this producer's client.
        let error = unsafe { rd::rd_kafka_produceva(self.rk.as_ptr(), vus.as_ptr(), n) };
        if error.is_null() {
            // librdkafka owns the headers now.
            std::mem::forget(headers);
            return Ok(());
        }
        // SAFETY: a non-null error is ours to read and destroy, once.
        let code: RDKafkaErrorCode = unsafe {
            let code = rd::rd_kafka_error_code(error);
            rd::rd_kafka_error_destroy(error);
            code.into()
        };
        Err(KafkaError::MessageProduction(code))
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        for (_, h) in self.topics.drain(..) {
            // SAFETY: each handle was made by `rd_kafka_topic_new` and is destroyed once,
            // while the producer (held by `self`) is alive.
            unsafe { rd::rd_kafka_topic_destroy(h.0.as_ptr()) };
        }
    }
}
