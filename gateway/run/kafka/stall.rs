//! No silent stalls (SPEC 4): what stops consumption is named, counted and makes the
//! gateway not ready until it consumes again.
//!
//! Every error the consumer reports is classified ([`classify`]):
//! - a cause that stops consumption ([`Kind`]): counted in
//!   `accord_kafka_consume_errors_total{kind}` every time librdkafka reports it; logged
//!   once when it starts and once when it clears, naming the cause; `/readyz` answers
//!   503 while any is active;
//! - fatal (librdkafka says the client cannot go on): the loop stops and the process
//!   exits 1, so that Kubernetes restarts it;
//! - anything else passes (a broker that reconnects, a timed-out request): logged,
//!   throttled, as before.
//!
//! A cause clears once librdkafka has not reported it for [`QUIET`] and either a record
//! is consumed or the input topics' metadata is clean (every topic known, with
//! partitions, no topic error). An unknown topic, which librdkafka reports once and not
//! again, clears when the metadata is clean, and only then. So a cause on one partition
//! while others flow does not flap between stopped and resumed: it stays until it has
//! been quiet that long. The metadata is probed every [`PROBE_EVERY`], and only while a
//! cause is active: the hot path reads one atomic per record.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metrics::{counter, Counter};
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode as C;

use crate::report::admin::{Health, Stuck};

/// How long a cause must stay unreported before a clean metadata probe clears it.
pub const QUIET: Duration = Duration::from_secs(20);
/// How often the metadata is probed while a cause is active.
pub const PROBE_EVERY: Duration = Duration::from_secs(5);

/// A cause that stops consumption: the `kind` label of
/// `accord_kafka_consume_errors_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A record batch the client cannot decompress or read (a codec it lacks, corrupt data).
    Codec,
    /// The broker refuses the topic, the group or the cluster to this client's principal.
    Authorization,
    /// SASL or TLS authentication fails.
    Authentication,
    /// An input topic does not exist.
    UnknownTopic,
    /// No broker answers.
    BrokersDown,
}

impl Kind {
    pub const ALL: [Kind; 5] = [Kind::Codec, Kind::Authorization, Kind::Authentication, Kind::UnknownTopic, Kind::BrokersDown];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Codec => "codec",
            Kind::Authorization => "authorization",
            Kind::Authentication => "authentication",
            Kind::UnknownTopic => "unknown_topic",
            Kind::BrokersDown => "brokers_down",
        }
    }

    /// What `/readyz` and the log say.
    pub fn cause(self) -> &'static str {
        match self {
            Kind::Codec => "a record batch of an input topic cannot be decompressed or read",
            Kind::Authorization => "the broker refuses this client access to an input topic or the consumer group",
            Kind::Authentication => "authentication with the broker fails",
            Kind::UnknownTopic => "an input topic does not exist",
            Kind::BrokersDown => "no broker answers",
        }
    }
}

/// What an error means for consumption.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Stops(Kind),
    Fatal,
    Passing,
}

/// Classifies an error reported by the consumer.
pub fn classify(e: &KafkaError) -> Class {
    if matches!(e, KafkaError::MessageConsumptionFatal(_)) {
        return Class::Fatal;
    }
    let Some(code) = e.rdkafka_error_code() else { return Class::Passing };
    match code {
        C::Fatal => Class::Fatal,
        C::NotImplemented | C::BadCompression | C::UnsupportedCompressionType | C::BadMessage | C::InvalidRecord | C::InvalidMessage => {
            Class::Stops(Kind::Codec)
        }
        C::TopicAuthorizationFailed | C::GroupAuthorizationFailed | C::ClusterAuthorizationFailed => Class::Stops(Kind::Authorization),
        C::Authentication | C::SaslAuthenticationFailed | C::SSL | C::UnsupportedSASLMechanism | C::IllegalSASLState => {
            Class::Stops(Kind::Authentication)
        }
        C::UnknownTopicOrPartition | C::UnknownTopic | C::UnknownPartition => Class::Stops(Kind::UnknownTopic),
        C::AllBrokersDown => Class::Stops(Kind::BrokersDown),
        _ => Class::Passing,
    }
}

#[derive(Clone, Copy)]
struct Active {
    since: Instant,
    last: Instant,
}

/// The causes active now, shared by the consumer loop and `/readyz`.
pub struct Stalls {
    /// True while any cause is active: the only thing the hot path reads.
    stalled: AtomicBool,
    active: Mutex<[Option<Active>; Kind::ALL.len()]>,
    counters: [Counter; Kind::ALL.len()],
    health: Option<Arc<Health>>,
    last_probe: Mutex<Option<Instant>>,
}

impl Stalls {
    pub fn new(health: Option<Arc<Health>>) -> Stalls {
        Stalls {
            stalled: AtomicBool::new(false),
            active: Mutex::new([None; Kind::ALL.len()]),
            counters: Kind::ALL.map(|k| counter!("accord_kafka_consume_errors_total", "kind" => k.as_str())),
            health,
            last_probe: Mutex::new(None),
        }
    }

    /// An error from the consumer: counted, and logged when its cause starts. Returns
    /// how it was classified.
    pub fn error(&self, e: &KafkaError) -> Class {
        let class = classify(e);
        if let Class::Stops(kind) = class {
            self.counters[kind as usize].increment(1);
            let now = Instant::now();
            let mut active = self.lock();
            match &mut active[kind as usize] {
                Some(a) => a.last = now,
                slot @ None => {
                    *slot = Some(Active { since: now, last: now });
                    tracing::error!(kind = kind.as_str(), "consumption stopped: {} ({e})", kind.cause());
                    self.stalled.store(true, Ordering::Relaxed);
                    self.tell_health(&active);
                }
            }
        }
        class
    }

    /// A record was consumed: every cause quiet for [`QUIET`] clears, except an
    /// unknown topic (records of the other topics say nothing about it).
    #[inline]
    pub fn consumed(&self) {
        if self.stalled.load(Ordering::Relaxed) {
            self.clear(|kind, a| kind != Kind::UnknownTopic && a.last.elapsed() >= QUIET, "records are consumed again");
        }
    }

    pub fn stalled(&self) -> bool {
        self.stalled.load(Ordering::Relaxed)
    }

    /// Whether a cause active now keeps the consumer out of its group, where a restart
    /// would not cure it: an input topic that does not exist (librdkafka does not join
    /// without a topic to consume), or authorization or authentication refused. The
    /// group is then not stuck: `/readyz` names the cause, and `/healthz` stays ok.
    pub fn keep_out_of_the_group(&self) -> bool {
        if !self.stalled() {
            return false;
        }
        let active = self.lock();
        [Kind::UnknownTopic, Kind::Authorization, Kind::Authentication].iter().any(|k| active[*k as usize].is_some())
    }

    /// While a cause is active, every [`PROBE_EVERY`]: checks the input topics'
    /// metadata and clears what it disproves.
    pub fn probe<C: rdkafka::consumer::ConsumerContext>(&self, consumer: &rdkafka::consumer::BaseConsumer<C>, topics: &[String]) {
        if !self.stalled() {
            return;
        }
        {
            let mut last = self.last_probe.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| t.elapsed() < PROBE_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        let clean = topics.iter().all(|t| match consumer.fetch_metadata(Some(t), Duration::from_secs(2)) {
            Ok(md) => md.topics().iter().all(|mt| mt.error().is_none() && !mt.partitions().is_empty()),
            Err(_) => false,
        });
        if clean {
            self.clear(|kind, a| kind == Kind::UnknownTopic || a.last.elapsed() >= QUIET, "the input topics' metadata is clean again");
        }
    }

    #[cfg(test)]
    fn age(&self, by: Duration) {
        for a in self.lock().iter_mut().flatten() {
            a.last -= by;
        }
    }

    fn clear(&self, which: impl Fn(Kind, &Active) -> bool, how: &str) {
        let mut active = self.lock();
        for kind in Kind::ALL {
            let slot = &mut active[kind as usize];
            if let Some(a) = slot {
                if which(kind, a) {
                    tracing::info!(kind = kind.as_str(), "consumption resumed after {:.1?} ({how}): {} no longer", a.since.elapsed(), kind.as_str());
                    *slot = None;
                }
            }
        }
        let any = active.iter().any(Option::is_some);
        self.stalled.store(any, Ordering::Relaxed);
        self.tell_health(&active);
    }

    fn tell_health(&self, active: &[Option<Active>; Kind::ALL.len()]) {
        if let Some(h) = &self.health {
            let first = Kind::ALL.into_iter().find(|k| active[*k as usize].is_some());
            h.set_stalled(first.map(Kind::cause));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, [Option<Active>; Kind::ALL.len()]> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Something that keeps failing: stuck once it fails again `after` its first failure
/// in a row, until it succeeds. Per output in [`super::sink::Tickets`]; for commits in
/// a [`Liveness`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Persisting {
    since: Option<Instant>,
    stuck: bool,
}

impl Persisting {
    /// A failure at `now`; true when it makes it stuck.
    pub fn failed(&mut self, now: Instant, after: Duration) -> bool {
        match self.since {
            None => self.since = Some(now),
            Some(since) if !self.stuck && now.saturating_duration_since(since) >= after => {
                self.stuck = true;
                return true;
            }
            Some(_) => {}
        }
        false
    }

    /// A success; true when it was stuck.
    pub fn succeeded(&mut self) -> bool {
        self.since = None;
        std::mem::take(&mut self.stuck)
    }
}

/// One liveness cause that keeps failing until it succeeds (the commits, the group
/// membership): stuck after failing for `limits.stuck_after`, which is logged once and
/// makes `/healthz` fail, until it succeeds, which is logged once too.
pub struct Liveness {
    what: Stuck,
    after: Duration,
    run: Mutex<Persisting>,
    health: Option<Arc<Health>>,
}

impl Liveness {
    pub fn new(what: Stuck, after: Duration, health: Option<Arc<Health>>) -> Liveness {
        Liveness { what, after, run: Mutex::new(Persisting::default()), health }
    }

    /// It failed (`e`) and is retried.
    pub fn failed(&self, e: &dyn std::fmt::Display) {
        if self.lock().failed(Instant::now(), self.after) {
            tracing::error!("{} ({:?}; the last error: {e}): /healthz fails until it succeeds, so that the gateway is restarted", self.what.cause(), self.after);
            self.tell(true);
        }
    }

    pub fn succeeded(&self) {
        if self.lock().succeeded() {
            tracing::info!("{} works again: /healthz no longer fails for it", self.what.name());
            self.tell(false);
        }
    }

    fn tell(&self, stuck: bool) {
        if let Some(h) = &self.health {
            h.set_stuck(self.what, stuck);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Persisting> {
        self.run.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What one poll of the consumer gave.
pub enum Polled<'c> {
    Record(rdkafka::message::BorrowedMessage<'c>),
    /// Nothing within the wait, or an error that is counted and logged here.
    Nothing,
    /// A fatal error: the loop stops and the process exits 1.
    Fatal(KafkaError),
}

/// One record, or none within `wait`, with every consumer error classified: a cause
/// that stops consumption counted (and logged when it starts), a passing error logged
/// (throttled), a fatal one returned. A record clears every cause.
pub fn poll<'c>(consumer: &'c super::source::Source, wait: Duration, throttle: &super::client::Throttle) -> Polled<'c> {
    let stalls = &consumer.context().stalls;
    match consumer.poll(wait) {
        Some(Ok(m)) => {
            stalls.consumed();
            Polled::Record(m)
        }
        Some(Err(e)) => match stalls.error(&e) {
            Class::Fatal => Polled::Fatal(e),
            Class::Stops(_) => Polled::Nothing,
            Class::Passing => {
                if throttle.allow(&e.to_string()) {
                    tracing::warn!("consumer: {e}");
                }
                Polled::Nothing
            }
        },
        None => Polled::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_by_their_code() {
        use KafkaError::MessageConsumption as M;
        assert_eq!(classify(&M(C::NotImplemented)), Class::Stops(Kind::Codec), "librdkafka lacks the codec");
        assert_eq!(classify(&M(C::TopicAuthorizationFailed)), Class::Stops(Kind::Authorization));
        assert_eq!(classify(&M(C::GroupAuthorizationFailed)), Class::Stops(Kind::Authorization));
        assert_eq!(classify(&M(C::SaslAuthenticationFailed)), Class::Stops(Kind::Authentication));
        assert_eq!(classify(&M(C::UnknownTopicOrPartition)), Class::Stops(Kind::UnknownTopic));
        assert_eq!(classify(&M(C::AllBrokersDown)), Class::Stops(Kind::BrokersDown));
        assert_eq!(classify(&KafkaError::MessageConsumptionFatal(C::OutOfOrderSequenceNumber)), Class::Fatal);
        assert_eq!(classify(&M(C::Fatal)), Class::Fatal);
        assert_eq!(classify(&M(C::BrokerTransportFailure)), Class::Passing, "one broker reconnecting does not stop consumption");
        assert_eq!(classify(&KafkaError::NoMessageReceived), Class::Passing);
    }

    #[test]
    fn a_cause_makes_the_gateway_not_ready_until_it_is_quiet_and_records_flow() {
        let health = Health::new(true);
        health.set_agreement(true);
        health.set_kafka(true);
        let stalls = Stalls::new(Some(health.clone()));
        assert!(health.ready().is_ok());
        stalls.error(&KafkaError::MessageConsumption(C::BrokerTransportFailure));
        assert!(health.ready().is_ok() && !stalls.stalled(), "a passing error stops nothing");
        stalls.error(&KafkaError::MessageConsumption(C::NotImplemented));
        stalls.error(&KafkaError::MessageConsumption(C::TopicAuthorizationFailed));
        let why = health.ready().unwrap_err();
        assert!(why.contains("decompressed"), "{why}");
        stalls.consumed();
        assert!(stalls.stalled(), "a cause reported just now stays: another partition's record says nothing about it");
        stalls.age(QUIET);
        stalls.consumed();
        assert!(health.ready().is_ok() && !stalls.stalled(), "quiet for QUIET, then a consumed record: every cause clears");
        stalls.error(&KafkaError::MessageConsumption(C::UnknownTopicOrPartition));
        stalls.age(QUIET);
        stalls.consumed();
        assert!(stalls.stalled() && health.ready().is_err(), "an unknown topic clears only by its metadata");
    }

    #[test]
    fn only_what_a_restart_would_not_cure_explains_a_consumer_out_of_its_group() {
        for (code, explains) in [
            (C::UnknownTopicOrPartition, true),
            (C::TopicAuthorizationFailed, true),
            (C::GroupAuthorizationFailed, true),
            (C::SaslAuthenticationFailed, true),
            (C::AllBrokersDown, false),
            (C::NotImplemented, false),
            (C::BrokerTransportFailure, false),
        ] {
            let stalls = Stalls::new(None);
            assert!(!stalls.keep_out_of_the_group());
            stalls.error(&KafkaError::MessageConsumption(code));
            assert_eq!(stalls.keep_out_of_the_group(), explains, "{code:?}");
        }
    }

    proptest::proptest! {
        /// Over any run of failures and successes (times in whole seconds, rising):
        /// `failed` says true exactly once per run of failures, at the first failure
        /// at least `after` past the run's first, and `succeeded` says whether it did.
        #[test]
        fn stuck_once_per_run_of_failures_past_the_limit(events in proptest::collection::vec((0u64..4, proptest::bool::weighted(0.8)), 0..80), after in 0u64..6) {
            let t0 = Instant::now();
            let (mut p, mut now, mut first, mut stuck) = (Persisting::default(), 0, None::<u64>, false);
            for (step, fails) in events {
                now += step;
                if fails {
                    let again = first.is_some();
                    let start = *first.get_or_insert(now);
                    let said = p.failed(t0 + Duration::from_secs(now), Duration::from_secs(after));
                    proptest::prop_assert_eq!(said, again && !stuck && now - start >= after);
                    stuck |= said;
                } else {
                    proptest::prop_assert_eq!(p.succeeded(), stuck);
                    first = None;
                    stuck = false;
                }
            }
        }
    }

    /// Stuck from the first failure `after` the first of a run, once, until a success;
    /// a success starts the count again.
    #[test]
    fn what_keeps_failing_is_stuck_after_the_limit_until_it_succeeds() {
        let t0 = Instant::now();
        let s = |secs| t0 + Duration::from_secs(secs);
        let after = Duration::from_secs(10);
        let mut commits = Persisting::default();
        assert!(!commits.failed(s(0), after));
        assert!(!commits.failed(s(9), after));
        assert!(commits.failed(s(10), after), "stuck at the limit");
        assert!(!commits.failed(s(20), after), "said once");
        assert!(commits.succeeded(), "it was stuck");
        assert!(!commits.succeeded());
        assert!(!commits.failed(s(30), after));
        assert!(!commits.failed(s(39), after), "the run starts again after a success");
        assert!(commits.failed(s(40), after));
    }
}
