//! Steps 4a and 4b of SPEC 2.1, and the `fields` restriction of SPEC 2.6.
//!
//! When the agreement lists instruments, the first entry whose `source` matches the
//! event's and whose device globs match its raw `device_id` admits it, unless its
//! validation has expired at `occurred_at` (`unapproved_instrument`); every quality
//! bound must then hold on the attributes its `fields` let through (`below_quality`).
//! [`Engine::restrict`] writes those attributes into a buffer the caller owns, so the
//! rules (steps 5 to 8) see nothing else. The raw attributes are walked without
//! building a tree, only when an instrument has bounds or fields.

use chrono::Utc;

use super::{Decision, DropReason, Engine};
use crate::agreement::instruments::{Bound, MAX_BOUNDS};
use crate::agreement::Selector;
use crate::event::tape::{Pick, Tape, Value};
use crate::event::{Event, Malformed};

impl Engine {
    /// Step 4a's look-up: the first instrument for this source (in normal form) and
    /// device, if any.
    pub(super) fn instrument_for(&self, source: &str, device: Option<&str>) -> Option<usize> {
        self.instruments.first(self.agreement.instruments.as_ref()?, source, device)
    }

    /// Steps 4a and 4b: the index of the instrument that admits the event (`None` when
    /// the agreement lists no instruments), or why it is dropped and the instrument
    /// that matched, if one did. `found` is [`Engine::instrument_for`]'s answer; `tape`
    /// holds the event's attributes, read (without one they are read here).
    pub(super) fn admit(&self, event: &Event<'_>, found: Option<usize>, tape: Option<&Tape>) -> Result<Option<u16>, (DropReason, Option<u16>)> {
        let Some(list) = &self.agreement.instruments else { return Ok(None) };
        let Some(i) = found else {
            return Err((DropReason::UnapprovedInstrument, None));
        };
        let (ins, index) = (&list[i], Some(i as u16));
        if event.occurred_at.with_timezone(&Utc) >= ins.valid_until {
            return Err((DropReason::UnapprovedInstrument, index));
        }
        if ins.quality.is_empty() {
            return Ok(index);
        }
        // Fail closed: no attributes, a value that cannot be read, or a bound with no
        // value found. One walk of the top level serves every bound.
        let Some(raw) = event.attributes else { return Err((DropReason::BelowQuality, index)) };
        let read;
        let tape = match tape {
            Some(t) => t,
            None => match self.read(raw) {
                Some(t) => {
                    read = t;
                    &read
                }
                None => return Err((DropReason::BelowQuality, index)),
            },
        };
        let root = tape.root(raw);
        let mut flags = [false; MAX_BOUNDS];
        let found = &mut flags[..ins.quality.len()];
        let mut ok = root.first() == b'{';
        for v in root.children() {
            for (b, f) in ins.quality.iter().zip(found.iter_mut()) {
                if ok && named(v, b, 0) {
                    ok = meets(v, 1, b, f);
                }
            }
        }
        if !ok || found.contains(&false) {
            return Err((DropReason::BelowQuality, index));
        }
        Ok(index)
    }

    /// Attributes read onto a tape of their own (for callers that hold none), or `None`
    /// if their member names are refused.
    fn read(&self, raw: &str) -> Option<Tape> {
        let mut tape = Tape::default();
        self.read_attributes(raw, &mut tape).ok()?;
        Some(tape)
    }

    /// The event with only the attributes its instrument's `fields` let through,
    /// written into `buf` (cleared first). Unchanged when there is no limit.
    pub fn restrict<'a>(&self, event: Event<'a>, decision: &Decision, buf: &'a mut Vec<u8>) -> Result<Event<'a>, Malformed> {
        self.restrict_onto(event, decision, None, buf, None).map(|(e, _)| e)
    }

    /// [`Engine::restrict`], `tape` holding the event's attributes, read (else they are
    /// read here), reading what it lets through onto `onto` if given; true beside the
    /// event when it did.
    pub(super) fn restrict_onto<'a>(&self, event: Event<'a>, decision: &Decision, tape: Option<&Tape>, buf: &'a mut Vec<u8>, onto: Option<&mut Tape>) -> Result<(Event<'a>, bool), Malformed> {
        let Some(i) = decision.instrument else { return Ok((event, false)) };
        let Some(ins) = self.agreement.instruments.as_ref().map(|l| &l[i as usize]) else { return Ok((event, false)) };
        // Nothing to do when the rule treats only what the instrument may send.
        let Some(fields) = ins.fields.as_ref().filter(|_| !ins.rule_within_fields[decision.rule]) else { return Ok((event, false)) };
        let Some(raw) = event.attributes else { return Ok((event, false)) };
        let read;
        let tape = match tape {
            Some(t) => t,
            None => {
                read = self.read(raw).ok_or(Malformed::DuplicateName)?;
                &read
            }
        };
        let read_onto = onto.is_some();
        let wrote = match onto {
            Some(onto) => onto.filter_from(tape.root(raw), fields, &pick, buf),
            None => Tape::default().filter_from(tape.root(raw), fields, &pick, buf),
        };
        let buf: &'a Vec<u8> = buf;
        // Pieces of valid text: this cannot fail.
        let attributes = if wrote { Some(simdutf8::basic::from_utf8(buf).map_err(|_| Malformed::NotJson)?) } else { None };
        Ok((Event { attributes, ..event }, read_onto))
    }
}

/// What `fields` keep of a member: the value whole when it names the member itself,
/// else what it names inside.
fn pick<'s>(sel: &'s Selector, member: Value<'_>) -> Pick<'s, Selector> {
    sel.child(member.name()).map(|c| (c, c.op.is_some()))
}

/// Does every value the path names meet the bound? `found` is set when one is named.
/// Through arrays, every element is looked into; a path ending on a non-number fails.
/// `v` is where the bound's path reached after `depth` of its segments.
fn meets(v: Value<'_>, depth: usize, bound: &Bound, found: &mut bool) -> bool {
    if depth == bound.segments.len() {
        *found = true;
        return number(v.raw()).is_some_and(|x| bound.holds(x));
    }
    match v.first() {
        b'{' => v.children().filter(|m| named(*m, bound, depth)).all(|m| meets(m, depth + 1, bound, found)),
        b'[' => v.children().all(|e| meets(e, depth, bound, found)),
        _ => true,
    }
}

/// Is the member named as the bound's segment `depth`, compared normalised? The
/// hashes the tape holds settle most members without normalising.
fn named(member: Value<'_>, bound: &Bound, depth: usize) -> bool {
    // A name written in normal form is its own normal form (normalising is idempotent).
    member.name_hash() == bound.hashes[depth] && (member.name() == bound.segments[depth] || crate::agreement::names::normalise(member.name()) == bound.segments[depth])
}

fn number(text: &str) -> Option<f64> {
    let first = *text.as_bytes().first()?;
    if first == b'-' || first.is_ascii_digit() {
        text.parse().ok().filter(|x: &f64| x.is_finite())
    } else {
        None
    }
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::agreement::FieldOp;

    fn tape(s: &str) -> Tape {
        let mut t = Tape::default();
        t.read(s, |n| Ok(crate::agreement::names::normal_hash(n))).unwrap();
        t
    }

    fn fields(paths: &[&str]) -> Selector {
        let mut s = Selector::default();
        for p in paths {
            s.insert(&p.split('.').collect::<Vec<_>>(), FieldOp::Keep);
        }
        s
    }

    fn filtered(json: &str, paths: &[&str]) -> String {
        let mut buf = Vec::new();
        Tape::default().filter_from(tape(json).root(json), &fields(paths), &pick, &mut buf);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn fields_let_through_only_what_they_name() {
        assert_eq!(filtered(r#"{"zone":"A","pos":{"lat":1,"lon":2},"x":3}"#, &["zone", "pos.lat"]), r#"{"zone":"A","pos":{"lat":1}}"#);
        assert_eq!(filtered(r#"{"pos":{"lat":1,"lon":2}}"#, &["pos"]), r#"{"pos":{"lat":1,"lon":2}}"#);
        assert_eq!(filtered(r#"{"x":1}"#, &["zone"]), "");
        assert_eq!(filtered(r#"{"pos":5}"#, &["pos.lat"]), "");
    }

    #[test]
    fn fields_go_through_arrays() {
        assert_eq!(filtered(r#"{"hits":[{"a":1,"b":2},{"b":3},[{"a":4}],7]}"#, &["hits.a"]), r#"{"hits":[{"a":1},[{"a":4}]]}"#);
    }

    #[test]
    fn bounds_need_every_named_value_numeric_and_inside() {
        let b = Bound::new("pos.acc".into(), vec!["pos".into(), "acc".into()], Some(0.0), Some(5.0));
        let check = |json: &str| {
            let mut found = false;
            meets(tape(json).root(json), 0, &b, &mut found) && found
        };
        assert!(check(r#"{"pos":{"acc":5}}"#));
        assert!(check(r#"{"pos":{"acc":0.0}}"#));
        assert!(!check(r#"{"pos":{"acc":5.01}}"#));
        assert!(!check(r#"{"pos":{"acc":"3"}}"#));
        assert!(!check(r#"{"pos":{}}"#));
        assert!(!check(r#"{"pos":{"acc":null}}"#));
        assert!(check(r#"{"pos":[{"acc":1},{"acc":2}]}"#));
        assert!(!check(r#"{"pos":[{"acc":1},{"acc":9}]}"#));
        assert!(!check(r#"{"pos":{"acc":[1]}}"#));
    }
}
