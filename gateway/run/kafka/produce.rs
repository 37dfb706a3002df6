//! Handing one record to librdkafka, through either kind of producer, and the headers
//! that go with it.
//!
//! At-least-once produces through a [`LoopProducer`] (its loop serves the delivery
//! reports), exactly-once through a [`Producer`] (its own thread serves them). A
//! [`Sender`] hands a record to either the same way: the payload and key copied, the
//! partition librdkafka's partitioner's, the headers a list that librdkafka owns once
//! it has taken the record, and the ticket's number (with its route's number, see
//! [`opaque`]) as the delivery opaque, which comes back to
//! [`super::sink::SinkContext::delivery`].
//!
//! **Why not rdkafka's `send`.** SPEC section 4 gives every output three headers.
//! librdkafka keeps a record's headers as a list of its own, freed with the record:
//! a copy of a route's headers for each output is five small allocations on the loop's
//! thread, and five frees when its report is served. Measured by leaving them off, that
//! was about a quarter of the loop's CPU (docs/performance.md). So a delivered record's
//! headers are taken back from it in its report ([`Headers::detach`]) and go out again
//! with a later output of the same route ([`Spares`]), instead of a new copy each
//! time. rdkafka's `send` takes its headers as an `OwnedHeaders`, which cannot be made
//! from a list taken back this way, and it makes a C string of the topic's name for
//! every record, which librdkafka then looks up under its client-wide lock;
//! [`Sender::send`] calls librdkafka's `rd_kafka_producev` as rdkafka's `send` does,
//! but with librdkafka's handle of the route's topic, made at its first record.

use std::ffi::{c_void, CStr, CString, NulError};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use rdkafka::bindings as rdsys;
use rdkafka::bindings::rd_kafka_vtype_t::*;
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::Producer as _;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::util::IntoOpaque;

use super::sink::{LoopProducer, Producer};

/// The producer records are handed to.
enum Client {
    Threaded(Arc<Producer>),
    Loop(Arc<LoopProducer>),
}

/// Hands records to a producer of either kind, by librdkafka's handle of each route's
/// topic (made at the route's first record), or by the topic's name.
pub struct Sender {
    client: Client,
    /// Per route number, librdkafka's handle of its topic. Producing by handle skips
    /// librdkafka's look-up of the topic by name under its client-wide lock.
    topics: Vec<(u32, Topic)>,
}

/// librdkafka's handle of a topic, given back when dropped.
struct Topic(NonNull<rdsys::rd_kafka_topic_t>);

// SAFETY: librdkafka's topic handles may be used from any thread.
unsafe impl Send for Topic {}

impl Drop for Topic {
    fn drop(&mut self) {
        // SAFETY: the handle is ours, and its client outlives it (see `Sender`'s drop).
        unsafe { rdsys::rd_kafka_topic_destroy(self.0.as_ptr()) }
    }
}

impl From<Arc<Producer>> for Sender {
    fn from(p: Arc<Producer>) -> Sender {
        Sender { client: Client::Threaded(p), topics: Vec::new() }
    }
}

impl From<Arc<LoopProducer>> for Sender {
    fn from(p: Arc<LoopProducer>) -> Sender {
        Sender { client: Client::Loop(p), topics: Vec::new() }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        // The handles go before the client they belong to (dropped with the fields).
        self.topics.clear();
    }
}

/// Topic handles a sender keeps at most; past that (routes of many agreements in
/// turn) it lets go of them all and makes them again as records need them.
const TOPICS: usize = 64;

impl Sender {
    /// Sends through `producer` (either kind).
    pub fn new(producer: impl Into<Sender>) -> Sender {
        producer.into()
    }

    fn rk(&self) -> *mut rdsys::rd_kafka_t {
        match &self.client {
            Client::Threaded(p) => p.client().native_ptr(),
            Client::Loop(p) => p.client().native_ptr(),
        }
    }

    /// librdkafka's handle of route `route`'s topic `name`, made at its first record
    /// (none for route 0, or when librdkafka refuses the name: then by name).
    fn topic(&mut self, route: u32, name: &CStr) -> Option<*mut rdsys::rd_kafka_topic_t> {
        if route == 0 {
            return None;
        }
        if let Some((_, t)) = self.topics.iter().find(|(id, _)| *id == route) {
            return Some(t.0.as_ptr());
        }
        if self.topics.len() >= TOPICS {
            self.topics.clear();
        }
        // SAFETY: the client is live; librdkafka copies the name.
        let t = NonNull::new(unsafe { rdsys::rd_kafka_topic_new(self.rk(), name.as_ptr(), ptr::null_mut()) })?;
        self.topics.push((route, Topic(t)));
        Some(t.as_ptr())
    }

    /// Hands one record for `topic` (route `route`'s, 0 for none) to librdkafka, with
    /// `headers` (which librdkafka then owns) and `opaque` for its delivery report. On
    /// failure librdkafka keeps nothing of it, and the headers come back (a full queue
    /// is [`rdkafka::types::RDKafkaErrorCode::QueueFull`]).
    pub fn send(&mut self, route: u32, topic: &CStr, key: Option<&[u8]>, payload: &[u8], headers: Option<Headers>, opaque: usize) -> Result<(), (KafkaError, Option<Headers>)> {
        let (to, to_ptr) = match self.topic(route, topic) {
            Some(handle) => (RD_KAFKA_VTYPE_RKT, handle.cast::<c_void>()),
            None => (RD_KAFKA_VTYPE_TOPIC, topic.as_ptr() as *mut c_void),
        };
        let rk = self.rk();
        let (key_ptr, key_len) = key.map_or((ptr::null_mut(), 0), |k| (k.as_ptr() as *mut c_void, k.len()));
        let hdrs = headers.map_or(ptr::null_mut(), Headers::into_raw);
        // SAFETY: the arguments are those of rdkafka's `BaseProducer::send`, in its order
        // and types, but for the topic, given by librdkafka's handle where there is one:
        // `rk` is a live producer (`self` holds it); the topic handle is live (`self`
        // holds it) or the name a C string; payload and key are copied
        // (`RD_KAFKA_MSG_F_COPY`) before the call returns; the opaque is an integer;
        // `hdrs` is a list we own (or null), which librdkafka takes only when it returns
        // no error.
        let err = unsafe {
            rdsys::rd_kafka_producev(
                rk,
                to,
                to_ptr,
                RD_KAFKA_VTYPE_PARTITION,
                -1i32,
                RD_KAFKA_VTYPE_MSGFLAGS,
                rdsys::RD_KAFKA_MSG_F_COPY,
                RD_KAFKA_VTYPE_VALUE,
                payload.as_ptr() as *mut c_void,
                payload.len(),
                RD_KAFKA_VTYPE_KEY,
                key_ptr,
                key_len,
                RD_KAFKA_VTYPE_OPAQUE,
                opaque.into_ptr(),
                RD_KAFKA_VTYPE_TIMESTAMP,
                0i64,
                RD_KAFKA_VTYPE_HEADERS,
                hdrs,
                RD_KAFKA_VTYPE_END,
            )
        };
        if err == RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Ok(());
        }
        let code: RDKafkaErrorCode = err.into();
        Err((KafkaError::MessageProduction(code), NonNull::new(hdrs).map(Headers)))
    }
}

/// The delivery opaque of an output: its ticket's number, and the number of the route
/// its headers are of (0: not to be kept), so that its report can give its headers
/// back to [`Spares`] without looking anything up.
pub fn opaque(ticket: usize, route: u32) -> usize {
    debug_assert!(ticket <= u32::MAX as usize, "ticket numbers stay below the outputs in flight (at most 10 000 000)");
    (ticket & u32::MAX as usize) | (route as usize) << 32
}

/// The ticket's number and the route's number in a delivery opaque.
pub fn split(opaque: usize) -> (usize, u32) {
    (opaque & u32::MAX as usize, (opaque >> 32) as u32)
}

// The opaque carries two 32-bit numbers.
const _: () = assert!(usize::BITS == 64, "Accord runs on 64-bit targets");

/// A record's headers as librdkafka keeps them (an `rd_kafka_headers_t`), owned here
/// until librdkafka takes them with a record.
pub struct Headers(NonNull<rdsys::rd_kafka_headers_t>);

// SAFETY: a header list has no tie to a thread; once built it is only read (copied,
// looked up) or handed over whole.
unsafe impl Send for Headers {}
unsafe impl Sync for Headers {}

impl Headers {
    /// A list of the given headers, in order.
    pub fn new(pairs: &[(&str, &[u8])]) -> Headers {
        // SAFETY: librdkafka allocates the list (it aborts rather than return null).
        let list = Headers(NonNull::new(unsafe { rdsys::rd_kafka_headers_new(pairs.len()) }).expect("librdkafka makes a header list"));
        for (name, value) in pairs {
            // SAFETY: name and value are copied into the list before the call returns.
            let err = unsafe { rdsys::rd_kafka_header_add(list.0.as_ptr(), name.as_ptr().cast(), name.len() as isize, value.as_ptr().cast(), value.len() as isize) };
            assert_eq!(err, RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR, "a new header list is writable");
        }
        list
    }

    /// A copy of the list, for librdkafka to take with one record.
    pub fn copy(&self) -> Headers {
        // SAFETY: the list is live; librdkafka allocates the copy.
        Headers(NonNull::new(unsafe { rdsys::rd_kafka_headers_copy(self.0.as_ptr()) }).expect("librdkafka copies a header list"))
    }

    /// The value of the last header named `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        let name = CString::new(name).ok()?;
        let (mut value, mut size) = (ptr::null(), 0usize);
        // SAFETY: the list is live; the value stays valid as long as the list, which
        // `&self` borrows.
        let err = unsafe { rdsys::rd_kafka_header_get_last(self.0.as_ptr(), name.as_ptr(), &mut value, &mut size) };
        if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
            return None;
        }
        Some(if value.is_null() { &[] } else { unsafe { std::slice::from_raw_parts(value.cast::<u8>(), size) } })
    }

    /// Takes the headers of a produced record, in its delivery report, away from it:
    /// librdkafka then frees the record without them.
    pub fn detach(m: &BorrowedMessage<'_>) -> Option<Headers> {
        let mut list = ptr::null_mut();
        // SAFETY: a delivery report's message is librdkafka's `rd_kafka_message_t`, live
        // for the report; detaching only moves its header list to us.
        let err = unsafe { rdsys::rd_kafka_message_detach_headers(m.ptr(), &mut list) };
        if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
            return None;
        }
        NonNull::new(list).map(Headers)
    }

    fn into_raw(self) -> *mut rdsys::rd_kafka_headers_t {
        let list = self.0.as_ptr();
        std::mem::forget(self);
        list
    }
}

impl Drop for Headers {
    fn drop(&mut self) {
        // SAFETY: the list is ours (librdkafka has not taken it).
        unsafe { rdsys::rd_kafka_headers_destroy(self.0.as_ptr()) }
    }
}

impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Headers")
    }
}

/// Where an output goes: a topic, and the headers SPEC section 4 gives its records,
/// under a number no other route of this process has.
#[derive(Debug)]
pub struct Route {
    pub topic: String,
    topic_c: Result<CString, NulError>,
    pub headers: Headers,
    id: u32,
}

/// The last route number given (0 is never one: it means "not kept").
static ROUTES: AtomicU32 = AtomicU32::new(0);

impl Route {
    pub fn new(topic: &str, headers: Headers) -> Route {
        // Past 4 billion routes (an agreement reloaded that many times) the numbers
        // stop, and headers are no longer kept: a number is never reused.
        let id = ROUTES.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_add(1)).map_or(0, |n| n + 1);
        Route { topic: topic.to_string(), topic_c: CString::new(topic), headers, id }
    }

    /// The topic as librdkafka takes it (a name with a NUL byte is refused per record).
    pub fn topic_c(&self) -> Result<&CStr, KafkaError> {
        self.topic_c.as_deref().map_err(|e| KafkaError::Nul(e.clone()))
    }

    /// Its number: every route made later has a larger one.
    pub fn id(&self) -> u32 {
        self.id
    }
}

/// Copies of routes' headers given back by their records' delivery reports, to go out
/// with later records of the same route instead of a new copy each.
///
/// A copy is only ever handed out for the route it was made for: each is kept under its
/// route's number, which no other route shares. Routes of an agreement no longer in
/// force are let go of: every route made after a given one has a larger number, so the
/// loop raises the floor ([`Spares::raise_floor`]) to the first number of the routes in
/// force, and copies below it are freed. At most [`Spares::MAX`] copies are kept; past
/// that, librdkafka frees them with their records as it otherwise would.
#[derive(Debug, Default)]
pub struct Spares {
    kept: Vec<(u32, Vec<Headers>)>,
    count: usize,
    floor: u32,
    /// Copies handed out again so far.
    reused: u64,
}

impl Spares {
    /// About the outputs in flight at a time at full speed (lingering, then
    /// acknowledged), a few megabytes of header lists.
    pub const MAX: usize = 32_768;

    /// A list of `route`'s headers: a kept copy, or a new one.
    pub fn take(&mut self, route: &Route) -> Headers {
        if let Some((_, kept)) = self.kept.iter_mut().find(|(id, _)| *id == route.id) {
            if let Some(h) = kept.pop() {
                self.count -= 1;
                self.reused += 1;
                return h;
            }
        }
        route.headers.copy()
    }

    /// Whether a copy of route `id`'s headers would be kept.
    pub fn wants(&self, id: u32) -> bool {
        id != 0 && id >= self.floor && self.count < Spares::MAX
    }

    /// Keeps `h`, a copy of route `id`'s headers (or frees it, when not wanted).
    pub fn give(&mut self, id: u32, h: Headers) {
        if !self.wants(id) {
            return;
        }
        self.count += 1;
        match self.kept.iter_mut().find(|(kept, _)| *kept == id) {
            Some((_, kept)) => kept.push(h),
            None => self.kept.push((id, vec![h])),
        }
    }

    /// Lets go of the copies of routes numbered below `floor`, and keeps none of them
    /// from now on.
    pub fn raise_floor(&mut self, floor: u32) {
        if floor <= self.floor {
            return;
        }
        self.floor = floor;
        self.kept.retain(|(id, _)| *id >= floor);
        self.count = self.kept.iter().map(|(_, k)| k.len()).sum();
    }

    /// The floor below which nothing is kept.
    pub fn floor(&self) -> u32 {
        self.floor
    }

    /// Moves every copy `other` keeps here (as far as this one wants them), on top of
    /// those kept here and in their order: [`Spares::take`] hands out the copy given
    /// back last, the likeliest to be still in the CPU's caches.
    pub fn take_all(&mut self, other: &mut Spares) {
        self.raise_floor(other.floor);
        other.count = 0;
        for (id, mut kept) in other.kept.drain(..) {
            if id < self.floor {
                continue;
            }
            // Past the limit, the oldest go (freed here).
            let over = kept.len().saturating_sub(Spares::MAX - self.count);
            kept.drain(..over);
            self.count += kept.len();
            match self.kept.iter_mut().find(|(mine, _)| *mine == id) {
                Some((_, mine)) => mine.append(&mut kept),
                None => self.kept.push((id, kept)),
            }
        }
    }

    /// Copies handed out again so far (by [`Spares::take`]).
    pub fn reused(&self) -> u64 {
        self.reused
    }

    /// Copies kept.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn route(topic: &str, purpose: &str) -> Route {
        Route::new(topic, Headers::new(&[("accord-agreement", b"a"), ("accord-version", b"3"), ("accord-purpose", purpose.as_bytes())]))
    }

    #[test]
    fn a_copy_holds_the_routes_headers_and_the_opaque_carries_both_numbers() {
        let r = route("t", "safety");
        let h = r.headers.copy();
        assert_eq!(h.get("accord-purpose"), Some(&b"safety"[..]));
        assert_eq!(h.get("accord-version"), Some(&b"3"[..]));
        assert_eq!(h.get("accord-other"), None);
        assert_eq!(split(opaque(12_345, r.id())), (12_345, r.id()));
        assert_eq!(split(opaque(u32::MAX as usize, u32::MAX)), (u32::MAX as usize, u32::MAX));
        assert!(route("t", "x").id() > r.id(), "later routes have larger numbers");
    }

    #[test]
    fn at_most_max_copies_are_kept_when_moved_together() {
        let r = route("t", "safety");
        let (mut mine, mut theirs) = (Spares::default(), Spares::default());
        for _ in 0..10 {
            mine.give(r.id(), r.headers.copy());
        }
        for _ in 0..Spares::MAX {
            theirs.give(r.id(), r.headers.copy());
        }
        assert_eq!(theirs.len(), Spares::MAX);
        assert!(!theirs.wants(r.id()), "full");
        mine.take_all(&mut theirs);
        assert_eq!((mine.len(), theirs.len()), (Spares::MAX, 0));
        assert_eq!(mine.kept.iter().map(|(_, k)| k.len()).sum::<usize>(), Spares::MAX);
    }

    proptest! {
        /// Whatever is given and taken, a route only ever gets copies of its own
        /// headers; nothing below the floor is handed out; at most MAX are kept.
        #[test]
        fn a_route_only_gets_its_own_headers_back(ops in proptest::collection::vec((0u8..4, 0usize..4), 0..300)) {
            let routes: Vec<Route> = (0..4).map(|i| route(&format!("t{i}"), &format!("purpose-{i}"))).collect();
            let mut spares = Spares::default();
            let mut out: Vec<(usize, Headers)> = Vec::new();
            for (op, r) in ops {
                match op {
                    0 | 1 => {
                        let h = spares.take(&routes[r]);
                        let want = format!("purpose-{r}");
                        prop_assert_eq!(h.get("accord-purpose"), Some(want.as_bytes()));
                        out.push((r, h));
                    }
                    2 => {
                        if let Some((r, h)) = out.pop() {
                            spares.give(routes[r].id(), h);
                        }
                    }
                    _ => {
                        // A reload: the routes from `r` on are the ones in force.
                        spares.raise_floor(routes[r].id());
                    }
                }
                prop_assert!(spares.kept.iter().all(|(id, _)| *id >= spares.floor()));
                prop_assert_eq!(spares.len(), spares.kept.iter().map(|(_, k)| k.len()).sum::<usize>());
                prop_assert!(spares.len() <= Spares::MAX);
            }
            let (mut moved, before) = (Spares::default(), spares.len());
            moved.take_all(&mut spares);
            prop_assert!(spares.is_empty());
            prop_assert_eq!(moved.len(), before);
            prop_assert_eq!(moved.len(), moved.kept.iter().map(|(_, k)| k.len()).sum::<usize>());
            for (id, kept) in &moved.kept {
                let r = routes.iter().position(|r| r.id() == *id).unwrap();
                for h in kept {
                    let want = format!("purpose-{r}");
                        prop_assert_eq!(h.get("accord-purpose"), Some(want.as_bytes()));
                }
            }
        }
    }
}
