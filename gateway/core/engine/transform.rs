//! Steps 7 and 8: one output event per purpose, written straight into the caller's
//! buffer.
//!
//! Only what the rule lists leaves: `event_id`, `source`, `category` and `occurred_at`
//! always; `subject_id` and `device_id` if kept or pseudonymised; of `attributes` the
//! listed paths. Attributes stay raw JSON and are walked member by member; a kept
//! object or array is copied with every member the taxonomy forbids for this purpose
//! removed, at any depth. Every field left out, pseudonymised or generalised is
//! counted, and, for `accord explain`, noted with its path.
//!
//! An event that goes to several purposes is walked once. The writer notes where
//! each pseudonym's digits are in the first purpose's output and whether any member
//! reached some of the event's purposes but not others. If none did, every later
//! purpose's output is the first one's text with its pseudonyms computed again for
//! that purpose (the same digits when the agreement's pseudonym domain is shared).
//! Only the pseudonym domain and the taxonomy's exceptions depend on the purpose.


use chrono::{DateTime, Utc};

use super::generalise;
use super::names;
use super::{Decision, Engine, FieldCounts, Output, Outputs};
use crate::agreement::taxonomy::Class;
use crate::agreement::{Domain, FieldOp, PurposeId, PurposeSet, Rule, Selector};
use crate::event::tape::{unquote, Tape, Value};
use crate::event::{Event, Malformed};
use crate::pseudonym;

/// What happened to one field of one output (for `accord explain`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldNote {
    pub purpose: PurposeId,
    pub path: String,
    pub treatment: Treatment,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Treatment {
    Kept,
    Pseudonymised,
    Generalised,
    /// Left out, and why.
    Removed(&'static str),
}

impl Engine {
    /// Steps 7 and 8 for a decided event: appends one output per purpose to `out`.
    /// `trace`, when given, receives a note for every field.
    pub fn write_outputs(&self, event: &Event<'_>, decision: Decision, out: &mut Outputs, trace: Option<&mut Vec<FieldNote>>) -> Result<(), Malformed> {
        self.read_tape(event, out)?;
        self.write_read(event, decision, out, trace)
    }

    /// Reads the event's attributes onto `out`'s tape, checking their member names.
    pub(super) fn read_tape(&self, event: &Event<'_>, out: &mut Outputs) -> Result<(), Malformed> {
        match event.attributes {
            Some(attrs) => self.read_attributes(attrs, &mut out.tape),
            None => Ok(()),
        }
    }

    /// Reads `attributes` onto `tape`, with SPEC 2.5's rules on their member names.
    pub(super) fn read_attributes(&self, attributes: &str, tape: &mut Tape) -> Result<(), Malformed> {
        let a = &*self.agreement;
        names::begin(a);
        tape.read(attributes, |name| names::member_hash(a, name))
    }

    /// Step 1: decodes a JSON event and reads its attributes onto `tape` in one pass,
    /// with SPEC 2.5's rules on member names at every depth.
    pub(super) fn decode_onto<'a>(&self, input: &'a [u8], tape: &mut Tape) -> Result<Event<'a>, Malformed> {
        let a = &*self.agreement;
        names::begin(a);
        crate::event::json::decode_onto(input, tape, |name| names::member_hash(a, name))
    }

    /// [`Engine::write_outputs`], the attributes being on `out`'s tape already.
    pub(super) fn write_read(&self, event: &Event<'_>, decision: Decision, out: &mut Outputs, mut trace: Option<&mut Vec<FieldNote>>) -> Result<(), Malformed> {
        let rule = &self.agreement.rules[decision.rule];
        let at = event.occurred_at.with_timezone(&Utc);
        names::begin(&self.agreement);
        let decided = rule.purpose_set() & decision.purposes;
        // Explaining notes every field of every purpose: each is walked.
        let reuse = decided.count_ones() > 1 && trace.is_none();
        let mut first: Option<First> = None;
        for &purpose in &rule.purposes {
            if decided & (1 << purpose) == 0 {
                continue;
            }
            if let Some(first) = &first {
                self.write_like(first, purpose, decision.rule, at, out);
                continue;
            }
            let Outputs { items, buf, keys, msg, cache, tape, digits, .. } = out;
            digits.clear();
            let start = buf.len();
            let mut w = Writer {
                engine: self,
                purpose,
                decided,
                mixed: false,
                digits: reuse.then_some(digits),
                key_text: None,
                at,
                counts: FieldCounts::default(),
                msg,
                prefix: 0,
                cache,
                trace: trace.as_deref_mut(),
            };
            let key = w.write_event(event, tape, rule, buf, keys)?;
            let end = buf.len();
            let stamp = &self.stamps[decision.rule * self.agreement.purposes.len() + purpose as usize];
            buf.extend_from_slice(stamp);
            items.push(Output { purpose, rule: decision.rule, payload: start..buf.len(), key: key.clone(), fields: w.counts });
            if reuse && !w.mixed {
                first = Some(First { text: start..end, key, key_text: w.key_text, counts: w.counts });
            }
        }
        Ok(())
    }

    /// Another purpose's output from the first one's text (see the module's note): its
    /// pseudonyms' digits computed again for `purpose`, its record key taken from its
    /// own text, and its purpose's stamp.
    fn write_like(&self, first: &First, purpose: PurposeId, rule: usize, at: DateTime<Utc>, out: &mut Outputs) {
        let Outputs { items, buf, keys, msg, cache, digits, .. } = out;
        let start = buf.len();
        buf.extend_from_within(first.text.clone());
        // A place in the first output, in this one.
        let moved = |place: usize| start + place - first.text.start;
        let a = &*self.agreement;
        if a.domain == Domain::PerPurpose && !digits.at.is_empty() {
            pseudonym::message(a, &a.purposes[purpose as usize].name, Some(at), b"", msg);
            let prefix = msg.len();
            for (place, value) in &digits.at {
                msg.truncate(prefix);
                msg.extend_from_slice(&digits.values[value.clone()]);
                let hex = self.pseudonymiser.hex(msg, cache);
                let place = moved(*place);
                buf[place..place + hex.len()].copy_from_slice(&hex);
            }
        }
        let key = match (&first.key_text, &first.key) {
            (Some(text), _) => {
                let from = keys.len();
                keys.extend_from_slice(&buf[moved(text.start)..moved(text.end)]);
                Some(from..keys.len())
            }
            // The subject in the clear, as the event has it: the same for every purpose.
            (None, Some(key)) => {
                let from = keys.len();
                keys.extend_from_within(key.clone());
                Some(from..keys.len())
            }
            (None, None) => None,
        };
        buf.extend_from_slice(&self.stamps[rule * a.purposes.len() + purpose as usize]);
        items.push(Output { purpose, rule, payload: start..buf.len(), key, fields: first.counts });
    }
}

/// The first purpose's output of an event, when the others may be written from it.
struct First {
    /// Its text without the stamp, in the outputs' buffer.
    text: std::ops::Range<usize>,
    /// Its record key in the keys' buffer, and where that key is in its text, if the
    /// key was taken from there.
    key: Option<std::ops::Range<usize>>,
    key_text: Option<std::ops::Range<usize>>,
    counts: FieldCounts,
}

/// Where the first output's pseudonyms are: the place of each one's hex digits in the
/// outputs' buffer, and the value it was computed from (in `values`).
#[derive(Debug, Default)]
pub struct Digits {
    at: Vec<(usize, std::ops::Range<usize>)>,
    values: Vec<u8>,
}

impl Digits {
    fn clear(&mut self) {
        self.at.clear();
        self.values.clear();
    }
}

struct Writer<'a> {
    engine: &'a Engine,
    purpose: PurposeId,
    /// Every purpose this event goes to.
    decided: PurposeSet,
    /// A member reached some of `decided` but not all: each purpose is walked.
    mixed: bool,
    /// Where the pseudonyms go, when later purposes may be written from this output.
    digits: Option<&'a mut Digits>,
    /// The record key's place in the output, when the key is taken from there.
    key_text: Option<std::ops::Range<usize>>,
    at: DateTime<Utc>,
    counts: FieldCounts,
    msg: &'a mut Vec<u8>,
    /// The length of `DOMAIN[@PERIOD] 0x00` at the start of `msg`, once built (0: not
    /// yet): the same for every field of one output, so built once per output.
    prefix: usize,
    cache: &'a mut pseudonym::Cache,
    trace: Option<&'a mut Vec<FieldNote>>,
}

impl Writer<'_> {
    fn write_event(&mut self, ev: &Event<'_>, tape: &Tape, rule: &Rule, buf: &mut Vec<u8>, keys: &mut Vec<u8>) -> Result<Option<std::ops::Range<usize>>, Malformed> {
        buf.extend_from_slice(b"{\"event_id\":");
        write_str(buf, &ev.event_id);
        buf.extend_from_slice(b",\"source\":");
        write_str(buf, &ev.source);
        buf.extend_from_slice(b",\"category\":");
        write_str(buf, &ev.category);
        buf.extend_from_slice(b",\"occurred_at\":");
        match rule.occurred_at {
            Some(step) => {
                let secs = generalise::truncate(self.at.timestamp(), step);
                // Outside the years 0000 to 9999 the time cannot be written: malformed.
                if !generalise::utc_fits(secs) {
                    return Err(Malformed::BadTime);
                }
                generalise::write_utc(secs, buf);
                self.note("", "occurred_at", Treatment::Generalised);
            }
            None => write_str(buf, &ev.occurred_at_text),
        }

        let mut key = None;
        let key_start = keys.len();
        match rule.subject_id {
            Some(op) => {
                buf.extend_from_slice(b",\"subject_id\":");
                let value_start = buf.len();
                self.identifier(op, &ev.subject_id, buf, "subject_id");
                // The record key is the subject as output, without its JSON quotes.
                let value = &buf[value_start..];
                if op == FieldOp::Pseudonymise || !value.contains(&b'\\') {
                    keys.extend_from_slice(&value[1..value.len() - 1]);
                    self.key_text = Some(value_start + 1..buf.len() - 1);
                } else {
                    keys.extend_from_slice(ev.subject_id.as_bytes());
                }
                key = Some(key_start..keys.len());
            }
            None => self.note("", "subject_id", Treatment::Removed("not listed")),
        }
        if let Some(device) = &ev.device_id {
            match rule.device_id {
                Some(op) => {
                    buf.extend_from_slice(b",\"device_id\":");
                    self.identifier(op, device, buf, "device_id");
                }
                None => self.note("", "device_id", Treatment::Removed("not listed")),
            }
        }
        if let Some(attrs) = ev.attributes {
            if rule.attributes.is_empty() {
                self.note("", "attributes", Treatment::Removed("not listed"));
            } else {
                let mark = buf.len();
                buf.extend_from_slice(b",\"attributes\":");
                if !self.object(tape.root(attrs), &rule.attributes, false, "attributes", buf)? {
                    buf.truncate(mark);
                }
            }
        }
        for _ in 0..ev.extra_fields {
            self.note("", "(a field outside the event format)", Treatment::Removed("not part of the event format"));
        }
        Ok(key)
    }

    /// `subject_id` or `device_id`, kept (compile checks who may see it) or pseudonymised.
    fn identifier(&mut self, op: FieldOp, value: &str, buf: &mut Vec<u8>, name: &str) {
        if op == FieldOp::Pseudonymise {
            self.pseudonym(value.as_bytes(), buf);
            self.note("", name, Treatment::Pseudonymised);
        } else {
            write_str(buf, value);
            self.note("", name, Treatment::Kept);
        }
    }

    fn pseudonym(&mut self, value: &[u8], buf: &mut Vec<u8>) {
        if self.prefix == 0 {
            let a = &*self.engine.agreement;
            pseudonym::message(a, &a.purposes[self.purpose as usize].name, Some(self.at), b"", self.msg);
            self.prefix = self.msg.len();
        }
        self.msg.truncate(self.prefix);
        self.msg.extend_from_slice(value);
        buf.push(b'"');
        self.engine.pseudonymiser.write(self.msg, self.cache, buf);
        if let Some(digits) = self.digits.as_deref_mut() {
            let from = digits.values.len();
            digits.values.extend_from_slice(value);
            digits.at.push((buf.len() - pseudonym::HEX_DIGITS, from..digits.values.len()));
        }
        buf.push(b'"');
    }

    /// Why a member of this name may not reach this purpose (SPEC 2.1 step 7), for
    /// `explain`; the hot path only counts.
    fn why_not_allowed(&self, name: &str) -> &'static str {
        if self.trace.is_none() {
            return "";
        }
        let t = &self.engine.agreement.taxonomy;
        match t.field(name).map(|c| t.class(c)) {
            Some(Class::Prohibited) => "prohibited category",
            _ => "special category without an exception for this purpose",
        }
    }

    /// Writes the members of a raw object that `sel` lists (all, if `keep_rest`).
    /// Returns false, having written nothing, if no member was output.
    fn object(&mut self, raw: Value<'_>, sel: &Selector, keep_rest: bool, path: &str, buf: &mut Vec<u8>) -> Result<bool, Malformed> {
        let start = buf.len();
        buf.push(b'{');
        let mut any = false;
        let engine = self.engine;
        let agreement = &*engine.agreement;
        for value in raw.children() {
            let name = value.name();
            // Names compare normalised; the taxonomy classifies by words (SPEC 2.5).
            let Some((allowed, child)) = names::member(agreement, name, value.name_hash(), sel, keep_rest) else {
                self.note(path, name, Treatment::Removed("not listed"));
                continue;
            };
            let op = child.and_then(|c| c.op).or(if keep_rest { Some(FieldOp::Keep) } else { None });
            let reach = allowed & self.decided;
            if reach != 0 && reach != self.decided {
                self.mixed = true;
            }
            if allowed & (1 << self.purpose) == 0 {
                let why = self.why_not_allowed(name);
                self.note(path, name, Treatment::Removed(why));
                continue;
            }
            let mark = buf.len();
            if any {
                buf.push(b',');
            }
            match value.name_as_written() {
                Some(plain) => {
                    buf.push(b'"');
                    buf.extend_from_slice(plain.as_bytes());
                    buf.extend_from_slice(b"\":");
                }
                None => {
                    write_str(buf, name);
                    buf.push(b':');
                }
            }
            let sub = self.sub_path(path, name);
            if self.value(value, child, op, path, name, &sub, buf)? {
                any = true;
            } else {
                buf.truncate(mark);
            }
        }
        if !any {
            buf.truncate(start);
            return Ok(false);
        }
        buf.push(b'}');
        Ok(true)
    }

    /// One member's value under its selector (`child`) and operation; false, having
    /// written nothing, if it is left out.
    #[allow(clippy::too_many_arguments)]
    fn value(&mut self, value: Value<'_>, child: Option<&Selector>, op: Option<FieldOp>, path: &str, name: &str, sub: &str, buf: &mut Vec<u8>) -> Result<bool, Malformed> {
        let first = Some(value.first());
        let container = matches!(first, Some(b'{' | b'['));
        // A kept value whose descendants the rule lists: they apply inside it.
        let inner = child.filter(|c| !c.children.is_empty());
        Ok(match (op, inner) {
            (Some(FieldOp::Keep), Some(c)) if first == Some(b'{') => self.object(value, c, true, sub, buf)?,
            (Some(FieldOp::Keep), Some(c)) if first == Some(b'[') => self.array(value, c, true, sub, buf)?,
            (Some(FieldOp::Keep), _) => {
                self.copy(value, sub, buf)?;
                if child.is_some() {
                    self.note(path, name, Treatment::Kept);
                }
                true
            }
            // A path that ends on an object or array names the value itself: no
            // pseudonym or generalisation takes it (SPEC 2.5).
            (Some(_), _) if container => {
                self.note(path, name, Treatment::Removed("an object or array cannot be pseudonymised or generalised"));
                false
            }
            (Some(op), _) => {
                let ok = self.apply(op, value, buf);
                let treatment = match (ok, op) {
                    (false, _) => Treatment::Removed("its value has a type the operation does not take"),
                    (true, FieldOp::Pseudonymise) => Treatment::Pseudonymised,
                    (true, _) => Treatment::Generalised,
                };
                self.note(path, name, treatment);
                ok
            }
            (None, Some(c)) if first == Some(b'{') => self.object(value, c, false, sub, buf)?,
            (None, Some(c)) if first == Some(b'[') => self.array(value, c, false, sub, buf)?,
            (None, _) => {
                self.note(path, name, Treatment::Removed("not an object or array, so the listed paths inside it are absent"));
                false
            }
        })
    }

    /// An array whose objects `sel`'s children name members of (arrays within arrays
    /// too). Kept (`keep`): every element, with the listed operations applied inside.
    /// Otherwise only elements in which something is named; false if none is.
    fn array(&mut self, raw: Value<'_>, sel: &Selector, keep: bool, path: &str, buf: &mut Vec<u8>) -> Result<bool, Malformed> {
        let start = buf.len();
        buf.push(b'[');
        let mut n = 0usize;
        for item in raw.children() {
            let mark = buf.len();
            if n > 0 {
                buf.push(b',');
            }
            let wrote = match item.first() {
                b'{' => self.object(item, sel, keep, path, buf)?,
                b'[' => self.array(item, sel, keep, path, buf)?,
                _ if keep => {
                    buf.extend_from_slice(item.raw().as_bytes());
                    true
                }
                _ => {
                    self.note(path, "[]", Treatment::Removed("an element in which no listed path is named"));
                    false
                }
            };
            if wrote {
                n += 1;
            } else {
                buf.truncate(mark);
            }
        }
        if n == 0 && !keep {
            buf.truncate(start);
            return Ok(false);
        }
        buf.push(b']');
        Ok(true)
    }

    /// A kept value: scalars as written; objects and arrays streamed member by member
    /// without the members the taxonomy forbids for this purpose. Recursion is bounded:
    /// decoding refused anything nested deeper than `MAX_DEPTH`.
    fn copy(&mut self, raw: Value<'_>, path: &str, buf: &mut Vec<u8>) -> Result<(), Malformed> {
        match raw.first() {
            b'{' => {
                if !self.object(raw, &EVERYTHING, true, path, buf)? {
                    buf.extend_from_slice(b"{}");
                }
            }
            b'[' => {
                buf.push(b'[');
                for (i, item) in raw.children().enumerate() {
                    if i > 0 {
                        buf.push(b',');
                    }
                    self.copy(item, path, buf)?;
                }
                buf.push(b']');
            }
            _ => buf.extend_from_slice(raw.raw().as_bytes()),
        }
        Ok(())
    }

    /// Pseudonymises or generalises a raw value; false if its type does not fit.
    fn apply(&mut self, op: FieldOp, raw: Value<'_>, buf: &mut Vec<u8>) -> bool {
        let text = raw.raw();
        let is_integer = is_integer(text);
        match op {
            FieldOp::Pseudonymise => {
                if is_integer {
                    self.pseudonym(text.as_bytes(), buf);
                } else if text.starts_with('"') {
                    let Some(s) = unquote(text) else { return false };
                    self.pseudonym(s.as_bytes(), buf);
                } else {
                    return false;
                }
            }
            FieldOp::Round(_) if is_integer => buf.extend_from_slice(text.as_bytes()),
            // On the decimal value as written (SPEC 2.4); a number too long to hold
            // exactly is removed, never rounded through a binary float.
            FieldOp::Round(decimals) => {
                if !text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
                    return false;
                }
                if !generalise::round_any(text, decimals, buf) {
                    return false;
                }
            }
            FieldOp::Bucket(width) => {
                if !generalise::bucket_text(text, width, buf) {
                    return false;
                }
            }
            FieldOp::Truncate(step) => {
                let Some(s) = unquote(text) else { return false };
                let Ok(at) = crate::event::parse_time(&s) else { return false };
                let secs = generalise::truncate(at.timestamp(), step);
                // Written with a four-digit year only (SPEC 2.4); else removed.
                if !generalise::utc_fits(secs) {
                    return false;
                }
                generalise::write_utc(secs, buf);
            }
            FieldOp::Keep => unreachable!("kept values are copied"),
        }
        true
    }

    /// Counts a field's treatment, and notes it when explaining.
    #[inline]
    fn note(&mut self, path: &str, name: &str, treatment: Treatment) {
        match treatment {
            Treatment::Kept => {}
            Treatment::Pseudonymised => self.counts.pseudonymised += 1,
            Treatment::Generalised => self.counts.generalised += 1,
            Treatment::Removed(_) => self.counts.removed += 1,
        }
        if self.trace.is_some() {
            self.explain(path, name, treatment);
        }
    }

    #[cold]
    fn explain(&mut self, path: &str, name: &str, treatment: Treatment) {
        if let Some(trace) = self.trace.as_deref_mut() {
            let path = if path.is_empty() { name.to_string() } else { format!("{path}.{name}") };
            trace.push(FieldNote { purpose: self.purpose, path, treatment });
        }
    }

    /// The dotted path of a member, built only when explaining.
    fn sub_path(&self, path: &str, name: &str) -> String {
        if self.trace.is_some() {
            format!("{path}.{name}")
        } else {
            String::new()
        }
    }
}

fn is_integer(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}


pub(super) fn write_str(buf: &mut Vec<u8>, s: &str) {
    // Fast path: nothing to escape.
    if crate::event::tape::is_plain(s.as_bytes()) {
        buf.push(b'"');
        buf.extend_from_slice(s.as_bytes());
        buf.push(b'"');
    } else {
        serde_json::to_writer(&mut *buf, s).expect("writing to a Vec cannot fail");
    }
}

/// The selector of a kept value: no paths of its own, everything kept.
static EVERYTHING: Selector = Selector { op: None, children: Vec::new(), hashes: Vec::new(), written: String::new(), allowed: None };
