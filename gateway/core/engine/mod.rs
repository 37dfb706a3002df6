//! The engine: SPEC 2.1 applied to one event at a time. Pure: no I/O, no Kafka, no
//! global state; it takes a compiled agreement and an event and returns outputs or a
//! drop reason.
//!
//! [`Engine::decide`] runs steps 2 to 6 (in force? prohibited? special? approved
//! instrument of the agreed quality? which rule? in schedule?), [`Engine::suppress`]
//! step 6a against a read-only suppression set the caller hands in (`suppress.rs`),
//! and [`Engine::process`] adds decoding (step 1) and writes one output per purpose
//! into an [`Outputs`] the caller owns and reuses (steps 7 and 8, in `transform.rs`). A shell feeds it bytes and ships the ranges it returns.

pub mod generalise;
mod index;
mod instrument;
pub mod names;
pub mod suppress;
mod transform;

use std::ops::Range;
use std::sync::Arc;

use chrono::{Datelike, Timelike, Utc};

use crate::agreement::taxonomy::{CategoryId, Class};
use crate::agreement::{Agreement, PurposeId, PurposeSet, Schedule};
use crate::event::{proto, Event, Format, Malformed};
use crate::pseudonym::Pseudonymiser;

pub use suppress::Suppressions;
pub use transform::{FieldNote, Treatment};

/// Why an event was dropped: SPEC 2.1's reasons, the only label values of
/// `accord_events_dropped_total{reason}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    Malformed,
    AgreementNotInForce,
    ProhibitedCategory,
    SpecialCategory,
    UnapprovedInstrument,
    BelowQuality,
    NoMatchingRule,
    OutsideSchedule,
    Suppressed,
}

impl DropReason {
    pub const ALL: [DropReason; 9] = [
        DropReason::Malformed,
        DropReason::AgreementNotInForce,
        DropReason::ProhibitedCategory,
        DropReason::SpecialCategory,
        DropReason::UnapprovedInstrument,
        DropReason::BelowQuality,
        DropReason::NoMatchingRule,
        DropReason::OutsideSchedule,
        DropReason::Suppressed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::AgreementNotInForce => "agreement_not_in_force",
            DropReason::ProhibitedCategory => "prohibited_category",
            DropReason::SpecialCategory => "special_category",
            DropReason::UnapprovedInstrument => "unapproved_instrument",
            DropReason::BelowQuality => "below_quality",
            DropReason::NoMatchingRule => "no_matching_rule",
            DropReason::OutsideSchedule => "outside_schedule",
            DropReason::Suppressed => "suppressed",
        }
    }
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A dropped event: the reason, the event's category if the taxonomy or the agreement
/// names it (else `other`), and for `malformed` what was wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dropped {
    pub reason: DropReason,
    pub category: Option<CategoryId>,
    pub malformed: Option<Malformed>,
}

/// What steps 2 to 6 decided for an event that is not dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Index into the agreement's rules.
    pub rule: usize,
    /// The rule's purposes, narrowed by a special-category exception (and, after
    /// step 6a, by suppressions).
    pub purposes: PurposeSet,
    /// The approved instrument that admitted the event (index into
    /// `Agreement::instruments`), if the agreement lists instruments.
    pub instrument: Option<u16>,
}

/// What steps 2 to 6 found for one event, step by step, as far as it got.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Trace {
    /// Step 2: whether `occurred_at` falls within the agreement's period.
    pub in_force: Option<bool>,
    /// Steps 3 and 4: the category's class, when the taxonomy or agreement names it.
    pub class: Option<(CategoryId, Class)>,
    /// Step 4: the purposes a special-category exception allows.
    pub allowed: Option<PurposeSet>,
    /// Step 5: the deciding rule; every earlier rule did not match.
    pub rule: Option<usize>,
    /// Step 6: the rule's schedule, and whether `occurred_at` is within it.
    pub schedule: Option<(usize, bool)>,
    /// Steps 4a and 4b, when the agreement lists instruments: the first instrument for
    /// the event's source and device, if any, and why the event dropped there, if it did.
    pub instrument: Option<(Option<u16>, Option<DropReason>)>,
}

/// The result of one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Forwarded(Decision),
    Dropped(Dropped),
}

/// Per-output field counts, for `accord_fields_*_total`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FieldCounts {
    pub removed: u32,
    pub pseudonymised: u32,
    pub generalised: u32,
}

/// One output event, as ranges into [`Outputs`]'s buffers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    pub purpose: PurposeId,
    pub rule: usize,
    /// The JSON output event in [`Outputs::payload`].
    pub payload: Range<usize>,
    /// The record key (the `subject_id` as output) in [`Outputs::key`], if any.
    pub key: Option<Range<usize>>,
    pub fields: FieldCounts,
}

/// The caller's reusable buffers: one event's outputs, scratch space, and the
/// pseudonyms computed so far. One per thread; it outlives events and engines (the
/// cache tells one key's entries from another's).
#[derive(Debug, Default)]
pub struct Outputs {
    pub items: Vec<Output>,
    buf: Vec<u8>,
    keys: Vec<u8>,
    msg: Vec<u8>,
    proto_json: Vec<u8>,
    /// The attributes an instrument's `fields` let through.
    fields: Vec<u8>,
    /// The attributes of the event at hand, read once.
    tape: crate::event::tape::Tape,
    /// The attributes an instrument's `fields` let through, read as they are written.
    restricted: crate::event::tape::Tape,
    /// Pseudonyms already computed: see [`crate::pseudonym::Cache`].
    pub cache: crate::pseudonym::Cache,
    /// Where the first purpose's pseudonyms are, for the other purposes' outputs.
    digits: transform::Digits,
}

impl Outputs {
    pub fn clear(&mut self) {
        self.items.clear();
        self.buf.clear();
        self.keys.clear();
    }

    pub fn payload(&self, o: &Output) -> &[u8] {
        &self.buf[o.payload.clone()]
    }

    pub fn key(&self, o: &Output) -> Option<&[u8]> {
        o.key.clone().map(|r| &self.keys[r])
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Output, &[u8])> {
        self.items.iter().map(|o| (o, self.payload(o)))
    }
}

/// An agreement and a key, ready to enforce.
#[derive(Debug)]
pub struct Engine {
    agreement: Arc<Agreement>,
    pseudonymiser: Arc<Pseudonymiser>,
    /// `,"accord":{...}}` for each (rule, purpose), written once here, copied per output.
    stamps: Vec<Box<[u8]>>,
    /// Step 5's look-up: each rule's `match` lists (sources, categories) in normal
    /// form (SPEC 2.5).
    rules: index::Rules,
    /// Step 4a's look-up, when the agreement lists instruments.
    instruments: index::Instruments,
}

impl Engine {
    pub fn new(agreement: Arc<Agreement>, pseudonymiser: Arc<Pseudonymiser>) -> Engine {
        let n = agreement.purposes.len();
        let mut stamps = Vec::with_capacity(agreement.rules.len() * n);
        for rule in &agreement.rules {
            for purpose in &agreement.purposes {
                // In SPEC order: agreement, version, rule, purpose, key_id.
                let mut bytes = b",\"accord\":{\"agreement\":".to_vec();
                let text = |b: &mut Vec<u8>, s: &str| serde_json::to_writer(b, s).expect("a string serialises");
                text(&mut bytes, &agreement.id);
                bytes.extend_from_slice(format!(",\"version\":{},\"rule\":", agreement.version).as_bytes());
                text(&mut bytes, &rule.name);
                bytes.extend_from_slice(b",\"purpose\":");
                text(&mut bytes, &purpose.name);
                bytes.extend_from_slice(b",\"key_id\":");
                text(&mut bytes, pseudonymiser.key_id());
                bytes.extend_from_slice(b"}}");
                stamps.push(bytes.into_boxed_slice());
            }
        }
        let rules = index::Rules::new(agreement.rules.iter().map(|r| (&r.sources, &r.categories)));
        let instruments = index::Instruments::new(agreement.instruments.as_deref().unwrap_or_default());
        Engine { agreement, pseudonymiser, stamps, rules, instruments }
    }

    pub fn agreement(&self) -> &Arc<Agreement> {
        &self.agreement
    }

    pub fn pseudonymiser(&self) -> &Arc<Pseudonymiser> {
        &self.pseudonymiser
    }

    /// Steps 1 to 8 for one encoded event, without suppressions: `out` is cleared and
    /// holds the outputs.
    pub fn process(&self, input: &[u8], format: Format, out: &mut Outputs) -> Verdict {
        self.process_with(input, format, &suppress::NONE, out)
    }

    /// Steps 1 to 8 for one encoded event, with the suppressions in force.
    pub fn process_with(&self, input: &[u8], format: Format, suppressions: &Suppressions, out: &mut Outputs) -> Verdict {
        out.clear();
        match format {
            Format::Json => self.process_json(input, suppressions, out),
            Format::Proto | Format::Avro => {
                let mut json = std::mem::take(&mut out.proto_json);
                let decoded = if format == Format::Proto { proto::to_json(input, &mut json) } else { crate::event::avro::to_json(input, &mut json) };
                let verdict = match decoded {
                    Ok(()) => self.process_json(&json, suppressions, out),
                    Err(m) => Verdict::Dropped(malformed(m)),
                };
                out.proto_json = json;
                verdict
            }
        }
    }

    fn process_json(&self, input: &[u8], suppressions: &Suppressions, out: &mut Outputs) -> Verdict {
        let event = match self.decode_onto(input, &mut out.tape) {
            Ok(e) => e,
            Err(m) => return Verdict::Dropped(malformed(m)),
        };
        let decision = match self.decide_on(&event, Some(&out.tape), None).and_then(|d| self.suppress(&event, d, suppressions, out)) {
            Ok(d) => d,
            Err(d) => return Verdict::Dropped(d),
        };
        let mut fields = std::mem::take(&mut out.fields);
        let written = self.restrict_onto(event, &decision, Some(&out.tape), &mut fields, Some(&mut out.restricted)).and_then(|(event, read)| {
            // Restricted to an instrument's fields: other text, read as it was written.
            if read {
                std::mem::swap(&mut out.tape, &mut out.restricted);
            }
            self.write_read(&event, decision, out, None)
        });
        out.fields = fields;
        match written {
            Ok(()) => Verdict::Forwarded(decision),
            Err(m) => {
                out.clear();
                Verdict::Dropped(malformed(m))
            }
        }
    }

    /// Steps 2 to 6: the rule and purposes that decide this event, or why it drops.
    pub fn decide(&self, event: &Event<'_>) -> Result<Decision, Dropped> {
        self.decide_traced(event, None)
    }

    /// [`Engine::decide`], noting in `trace` what each step found (for `accord
    /// explain`: the engine's own reasoning, never worked out again elsewhere).
    pub fn decide_traced(&self, event: &Event<'_>, trace: Option<&mut Trace>) -> Result<Decision, Dropped> {
        self.decide_on(event, None, trace)
    }

    /// [`Engine::decide_traced`], `tape` holding the event's attributes, read (else
    /// step 4b reads them when it needs them).
    fn decide_on(&self, event: &Event<'_>, tape: Option<&crate::event::tape::Tape>, mut trace: Option<&mut Trace>) -> Result<Decision, Dropped> {
        let a = &*self.agreement;
        names::begin(a);
        // Classified through the taxonomy's terms too: `Mood` is emotion (SPEC 2.1).
        let verdict = names::category(a, &event.category);
        let category = verdict.label;
        let drop = |reason| Dropped { reason, category, malformed: None };
        let mut note = |f: &dyn Fn(&mut Trace)| {
            if let Some(t) = trace.as_deref_mut() {
                f(t);
            }
        };

        // 2. In force?
        let at = event.occurred_at;
        let in_force = !(a.valid_from.is_some_and(|from| at < from) || a.valid_until.is_some_and(|until| at >= until));
        note(&|t| t.in_force = Some(in_force));
        if !in_force {
            return Err(drop(DropReason::AgreementNotInForce));
        }
        // 3 and 4. Prohibited, or special without an exception?
        let mut allowed = PurposeSet::MAX;
        if let Some(c) = category {
            note(&|t| t.class = Some((c, verdict.class)));
        }
        match verdict.class {
            Class::Prohibited => return Err(drop(DropReason::ProhibitedCategory)),
            Class::Special => {
                allowed = verdict.allowed;
                note(&|t| t.allowed = Some(allowed));
                if allowed == 0 {
                    return Err(drop(DropReason::SpecialCategory));
                }
            }
            Class::Ordinary => {}
        }
        // The source and category in normal form, looked up once for steps 4a and 5.
        let device = event.device_id.as_deref();
        let (found, rule) = names::with_normal_pair(&event.source, &event.category, |source, category| (self.instrument_for(source, device), self.rules.first(source, category)));
        // 4a and 4b. An approved instrument, of the agreed quality?
        let instrument = match self.admit(event, found, tape) {
            Ok(i) => {
                if a.instruments.is_some() {
                    note(&|t| t.instrument = Some((i, None)));
                }
                i
            }
            Err((reason, i)) => {
                note(&|t| t.instrument = Some((i, Some(reason))));
                return Err(drop(reason));
            }
        };
        // 5. The first rule that lists the source and the category (compared normalised).
        let Some(rule) = rule else {
            return Err(drop(DropReason::NoMatchingRule));
        };
        note(&|t| t.rule = Some(rule));
        // 4, continued: an exception limits the event to the purposes it names.
        let purposes = a.rules[rule].purpose_set() & allowed;
        if purposes == 0 {
            return Err(drop(DropReason::SpecialCategory));
        }
        // 6. Within the rule's schedule?
        if let Some(s) = a.rules[rule].during {
            let inside = in_schedule(&a.schedules[s], at.with_timezone(&Utc));
            note(&|t| t.schedule = Some((s, inside)));
            if !inside {
                return Err(drop(DropReason::OutsideSchedule));
            }
        }
        Ok(Decision { rule, purposes, instrument })
    }

    /// Decodes one JSON event (step 1), for callers that want the event itself, with
    /// SPEC 2.5's rules on member names: none may hold a control or invisible
    /// character, and no two members of one object may be equal once normalised, at
    /// any depth of `attributes`.
    pub fn decode<'a>(&self, input: &'a [u8]) -> Result<Event<'a>, Dropped> {
        self.decode_onto(input, &mut crate::event::tape::Tape::default()).map_err(malformed)
    }
}

fn malformed(m: Malformed) -> Dropped {
    Dropped { reason: DropReason::Malformed, category: None, malformed: Some(m) }
}

/// Is `at` inside the schedule's window, in the schedule's timezone?
pub fn in_schedule(s: &Schedule, at: chrono::DateTime<Utc>) -> bool {
    let local = at.with_timezone(&s.timezone);
    let day = local.weekday().num_days_from_monday() as usize;
    let secs = local.num_seconds_from_midnight();
    s.days[day] && s.from <= secs && secs < s.until
}
