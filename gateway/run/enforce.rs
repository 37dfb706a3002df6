//! The one enforcement step, shared by file mode and Kafka mode.
//!
//! An [`Enforcer`] takes one consumed record (bytes in the input format) and says what
//! to ship: each output encoded in the output format, or a quarantine note for an event
//! that could not be decoded (or whose output cannot be encoded), or nothing for an event
//! the agreement drops. It counts every verdict in a [`Tally`] and the time spent
//! enforcing (never the time spent waiting for input), and it takes a new engine from
//! [`Engines`] between two records when the agreement is reloaded, so every record is
//! decided by exactly one version. Where the records come from and where they go is
//! the shells' business ([`super::filemode`], [`super::kafka`]); what happens to a
//! record is decided here only.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::agreement::PurposeId;
use crate::engine::{DropReason, Dropped, Engine, Outputs, Verdict};
use crate::event::{avro, proto, wire, Format, Malformed};
use crate::report::tally::Tally;
use crate::run::reload::Engines;

/// What the shell does with the record last enforced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Ship [`Enforcer::output`] `0..n` (n may be 0 for no purpose left).
    Forward(usize),
    /// Malformed: ship a note that names where the record was and why, never its bytes.
    Quarantine(Malformed),
    /// Dropped by the agreement: counted, nothing to ship.
    Drop,
}

/// How outputs are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Encoding {
    pub format: Format,
    /// Protobuf only: each message preceded by its varint length (files), or bare (one
    /// message per Kafka record).
    pub length_delimited: bool,
}

/// One output, ready to ship.
#[derive(Clone, Copy, Debug)]
pub struct Shipment<'a> {
    pub purpose: PurposeId,
    /// The output's `subject_id` as output (SPEC 4's record key), if any.
    pub key: Option<&'a [u8]>,
    pub payload: &'a [u8],
}

/// What one engine decided over a stretch of records.
pub struct Batch {
    pub engine: Arc<Engine>,
    pub tally: Tally,
    /// Time spent enforcing, excluding any wait for input.
    pub busy: Duration,
}

/// The enforcement step, with the buffers and the pseudonym cache it reuses.
pub struct Enforcer {
    engines: Arc<dyn Engines + Send + Sync>,
    engine: Arc<Engine>,
    generation: u64,
    input: Format,
    output: Encoding,
    outputs: Outputs,
    /// Encoded outputs (protobuf), each a range.
    encoded: Vec<u8>,
    ranges: Vec<Range<usize>>,
    tally: Tally,
    /// Work time of the batch so far.
    busy: WorkClock,
    /// Batches ended by a reload, not yet handed over.
    finished: Vec<Batch>,
    /// The suppressions in force (SPEC 2.7), read once per record: a pointer
    /// comparison while the set is unchanged.
    suppressions: arc_swap::Cache<crate::run::suppressions::Live, Arc<crate::engine::suppress::Suppressions>>,
    /// Inputs in the Confluent wire format: the header is checked and skipped.
    input_framed: bool,
    /// Outputs in the Confluent wire format, with this schema id.
    output_schema_id: Option<u32>,
}

/// EnforcedEvent's place in schemas/accord/v1/event.proto (the third message): its
/// message-index list in the Confluent wire format.
const ENFORCED_EVENT_INDEX: [i64; 1] = [2];

impl Enforcer {
    pub fn new(engines: Arc<dyn Engines + Send + Sync>, input: Format, output: Encoding) -> Enforcer {
        let engine = engines.current();
        Enforcer {
            generation: engines.generation(),
            tally: Tally::new(engine.agreement()),
            engines,
            engine,
            input,
            output,
            outputs: Outputs::default(),
            encoded: Vec::new(),
            ranges: Vec::new(),
            busy: WorkClock::new(),
            finished: Vec::new(),
            suppressions: arc_swap::Cache::new(crate::run::suppressions::none()),
            input_framed: false,
            output_schema_id: None,
        }
    }

    /// Enforces under the suppressions this cell holds from now on.
    pub fn set_suppressions(&mut self, live: crate::run::suppressions::Live) {
        self.suppressions = arc_swap::Cache::new(live);
    }

    /// Framing (SPEC 4): inputs in the Confluent Schema Registry wire format (a record
    /// without its header is malformed), and outputs in it carrying `output_schema_id`.
    pub fn set_framing(&mut self, input: wire::Framing, output_schema_id: Option<u32>) {
        self.input_framed = input == wire::Framing::Confluent;
        self.output_schema_id = output_schema_id;
    }

    /// The engine that decided the record last enforced (or that decides the next).
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Takes the engine in force now, if it changed: the batch so far is finished.
    /// Called before each record; returns whether a new agreement came into force.
    pub fn refresh(&mut self) -> bool {
        let generation = self.engines.generation();
        if generation == self.generation {
            return false;
        }
        self.generation = generation;
        let next = self.engines.current();
        self.switch(next);
        true
    }

    /// Takes the engine `leader` decides with, if it differs from this one's: the batch
    /// so far is finished. Enforcers that share a batch of records follow one that
    /// [`refresh`](Enforcer::refresh)ed, so the whole batch is decided by one version.
    pub fn follow(&mut self, leader: &Enforcer) -> bool {
        self.generation = leader.generation;
        if Arc::ptr_eq(&self.engine, &leader.engine) {
            return false;
        }
        self.switch(leader.engine.clone());
        true
    }

    fn switch(&mut self, next: Arc<Engine>) {
        let tally = std::mem::replace(&mut self.tally, Tally::new(next.agreement()));
        let engine = std::mem::replace(&mut self.engine, next);
        self.finished.push(Batch { engine, tally, busy: self.busy.take() });
    }

    /// Enforces one record (after [`Enforcer::refresh`]).
    pub fn enforce(&mut self, record: &[u8]) -> Outcome {
        let started = self.busy.start();
        let record = if self.input_framed {
            match wire::unframe(record, self.input) {
                Ok((_, message)) => message,
                Err(why) => {
                    self.busy.stop(started);
                    return self.malformed(why);
                }
            }
        } else {
            record
        };
        let suppressions = self.suppressions.load();
        let mut verdict = self.engine.process_with(record, self.input, suppressions, &mut self.outputs);
        if let Verdict::Forwarded(_) = verdict {
            if let Err(why) = self.encode() {
                // Fail closed: what cannot be encoded does not leave.
                self.outputs.clear();
                verdict = Verdict::Dropped(Dropped { reason: DropReason::Malformed, category: None, malformed: Some(why) });
            }
        }
        self.tally.add(&verdict, &self.outputs);
        self.busy.stop(started);
        match verdict {
            Verdict::Forwarded(_) => Outcome::Forward(self.outputs.items.len()),
            Verdict::Dropped(Dropped { malformed: Some(why), .. }) => Outcome::Quarantine(why),
            Verdict::Dropped(_) => Outcome::Drop,
        }
    }

    /// Counts a record the shell could not even read whole (too large): malformed.
    pub fn malformed(&mut self, why: Malformed) -> Outcome {
        self.outputs.clear();
        let verdict = Verdict::Dropped(Dropped { reason: DropReason::Malformed, category: None, malformed: Some(why) });
        self.tally.add(&verdict, &self.outputs);
        Outcome::Quarantine(why)
    }

    fn encode(&mut self) -> Result<(), Malformed> {
        if self.output.format == Format::Json && self.output_schema_id.is_none() {
            return Ok(());
        }
        self.encoded.clear();
        self.ranges.clear();
        for (_, json) in self.outputs.iter() {
            let start = self.encoded.len();
            if let Some(id) = self.output_schema_id {
                wire::write_header(id, self.output.format, &ENFORCED_EVENT_INDEX, &mut self.encoded);
            }
            match self.output.format {
                Format::Json => self.encoded.extend_from_slice(json),
                Format::Proto => proto::from_output_json(json, self.output.length_delimited, &mut self.encoded).map_err(|_| Malformed::NotProtobuf)?,
                Format::Avro => avro::from_output_json(json, self.output.length_delimited, &mut self.encoded)?,
            }
            self.ranges.push(start..self.encoded.len());
        }
        Ok(())
    }

    /// The `i`th output of the record last enforced.
    pub fn output(&self, i: usize) -> Shipment<'_> {
        let o = &self.outputs.items[i];
        let payload = match (self.output.format, self.output_schema_id) {
            (Format::Json, None) => self.outputs.payload(o),
            _ => &self.encoded[self.ranges[i].clone()],
        };
        Shipment { purpose: o.purpose, key: self.outputs.key(o), payload }
    }

    /// Whether a reload has finished a batch that waits to be handed over.
    pub fn has_finished(&self) -> bool {
        !self.finished.is_empty()
    }

    /// Records counted since the last [`Enforcer::take_batches`].
    pub fn pending(&self) -> u64 {
        self.tally.received + self.finished.iter().map(|b| b.tally.received).sum::<u64>()
    }

    /// Hands over the batches so far (one per agreement in force since the last call)
    /// and starts a new one.
    pub fn take_batches(&mut self) -> Vec<Batch> {
        let mut out = std::mem::take(&mut self.finished);
        let fresh = Tally::new(self.engine.agreement());
        out.push(Batch { engine: self.engine.clone(), tally: std::mem::replace(&mut self.tally, fresh), busy: self.busy.take() });
        out
    }

    /// The pseudonym cache's record so far (for benchmarks and tuning).
    pub fn cache_stats(&self) -> crate::pseudonym::CacheStats {
        self.outputs.cache.stats
    }
}

/// The work time of a batch, read twice per record: from the CPU's time-stamp counter
/// on x86-64 (a few nanoseconds a read, where the clock costs twenty), converted to
/// time when the batch is handed over, at the rate the counter ran against the
/// monotonic clock over the batch. Elsewhere, the monotonic clock itself.
struct WorkClock {
    /// When the batch began: the clock, and the counter.
    began: (Instant, u64),
    /// Counter ticks spent working in this batch.
    ticks: u64,
}

impl WorkClock {
    fn new() -> WorkClock {
        WorkClock { began: (Instant::now(), Self::counter()), ticks: 0 }
    }

    #[inline]
    fn counter() -> u64 {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: RDTSC exists on every x86-64 CPU and reads a counter, nothing more.
            unsafe { std::arch::x86_64::_rdtsc() }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
            ORIGIN.get_or_init(Instant::now).elapsed().as_nanos() as u64
        }
    }

    #[inline]
    fn start(&self) -> u64 {
        Self::counter()
    }

    #[inline]
    fn stop(&mut self, started: u64) {
        self.ticks += Self::counter().saturating_sub(started);
    }

    /// The batch's work time, and a new batch.
    fn take(&mut self) -> Duration {
        let (now, counter) = (Instant::now(), Self::counter());
        let wall = now.duration_since(self.began.0);
        let elapsed = counter.saturating_sub(self.began.1);
        // Never more than the batch lasted, whatever the counter did.
        let busy = if elapsed == 0 { Duration::ZERO } else { wall.mul_f64((self.ticks as f64 / elapsed as f64).min(1.0)) };
        *self = WorkClock { began: (now, counter), ticks: 0 };
        busy
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agreement::Agreement;
    use crate::pseudonym::{Key, Pseudonymiser};

    /// The work clock counts the time between `start` and `stop`, not the time between
    /// records, and never more than the batch lasted.
    #[test]
    fn the_work_clock_counts_work_only() {
        let mut clock = WorkClock::new();
        let began = Instant::now();
        let started = clock.start();
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(20) {
            std::hint::spin_loop();
        }
        clock.stop(started);
        let worked = spin.elapsed();
        std::thread::sleep(Duration::from_millis(40));
        let busy = clock.take();
        let wall = began.elapsed();
        assert!(busy <= wall, "{busy:?} of {wall:?}");
        assert!(busy >= worked / 2 && busy <= worked * 3 / 2 + Duration::from_millis(5), "{busy:?} for {worked:?} of work");
        // A new batch starts empty.
        assert!(clock.take() < Duration::from_millis(5));
    }

    const AGREEMENT: &str = r#"
agreement: { id: t, version: 1, parties: [a, b] }
purposes:
  safety: { description: d, topic: out.safety }
rules:
  - name: r
    match: { source: [tracker] }
    purposes: [safety]
    pseudonymise: [subject_id]
    keep: [attributes.zone]
"#;

    fn enforcer(output: Format) -> Enforcer {
        let a = Agreement::parse(AGREEMENT.as_bytes()).unwrap().agreement;
        let engine = Arc::new(Engine::new(Arc::new(a), Arc::new(Pseudonymiser::new(Key::new(&[3; 32], "k").unwrap()))));
        Enforcer::new(Arc::new(engine), Format::Json, Encoding { format: output, length_delimited: false })
    }

    const EVENT: &[u8] = br#"{"event_id":"e","source":"tracker","subject_id":"w","category":"location","occurred_at":"2026-03-02T10:00:00Z","attributes":{"zone":"A"}}"#;

    #[test]
    fn every_verdict_is_counted_once_and_each_outcome_says_what_to_ship() {
        let mut e = enforcer(Format::Json);
        assert_eq!(e.enforce(EVENT), Outcome::Forward(1));
        let out = e.output(0);
        assert!(std::str::from_utf8(out.payload).unwrap().contains("\"zone\":\"A\""));
        assert!(out.key.is_some_and(|k| k.starts_with(b"k:")));
        assert!(matches!(e.enforce(b"{not json"), Outcome::Quarantine(_)));
        assert_eq!(e.enforce(&EVENT.replace_str("tracker", "camera")), Outcome::Drop);
        assert!(matches!(e.malformed(Malformed::TooLarge), Outcome::Quarantine(Malformed::TooLarge)));
        let batches = e.take_batches();
        assert_eq!(batches.len(), 1);
        let t = &batches[0].tally;
        assert_eq!((t.received, t.forwarded_events), (4, 1));
        assert_eq!(t.dropped_for(DropReason::Malformed), 2);
        assert_eq!(t.dropped_for(DropReason::NoMatchingRule), 1);
        assert_eq!(e.pending(), 0);
    }

    #[test]
    fn protobuf_outputs_are_encoded_and_match_the_json_ones() {
        let mut json = enforcer(Format::Json);
        let mut pb = enforcer(Format::Proto);
        assert_eq!(json.enforce(EVENT), Outcome::Forward(1));
        assert_eq!(pb.enforce(EVENT), Outcome::Forward(1));
        let mut again = Vec::new();
        proto::from_output_json(json.output(0).payload, false, &mut again).unwrap();
        assert_eq!(pb.output(0).payload, &again[..]);
        assert_eq!(pb.output(0).key, json.output(0).key);
    }

    trait ReplaceStr {
        fn replace_str(&self, from: &str, to: &str) -> Vec<u8>;
    }

    impl ReplaceStr for [u8] {
        fn replace_str(&self, from: &str, to: &str) -> Vec<u8> {
            std::str::from_utf8(self).unwrap().replace(from, to).into_bytes()
        }
    }
}
