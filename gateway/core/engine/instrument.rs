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
use serde_json::value::RawValue;

use super::transform::{for_each_element, for_each_member, write_str};
use super::{Decision, DropReason, Engine};
use crate::agreement::instruments::{Bound, MAX_BOUNDS};
use crate::agreement::Selector;
use crate::event::{Event, Malformed};

impl Engine {
    /// Steps 4a and 4b: the index of the instrument that admits the event (`None` when
    /// the agreement lists no instruments), or why it is dropped and the instrument
    /// that matched, if one did.
    pub(super) fn admit(&self, event: &Event<'_>) -> Result<Option<u16>, (DropReason, Option<u16>)> {
        let Some(list) = &self.agreement.instruments else { return Ok(None) };
        let device = event.device_id.as_deref();
        let found = super::names::with_normal_pair(&event.source, &event.category, |source, _| list.iter().position(|ins| ins.admits(source, device)));
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
        let mut flags = [false; MAX_BOUNDS];
        let found = &mut flags[..ins.quality.len()];
        let mut ok = raw.get().starts_with('{');
        let walked = for_each_member(raw, |name, v| {
            let name = normal(name);
            for (b, f) in ins.quality.iter().zip(found.iter_mut()) {
                if ok && b.segments[0] == name {
                    ok = meets(v, &b.segments[1..], b, f)?;
                }
            }
            Ok(())
        });
        if walked.is_err() || !ok || found.contains(&false) {
            return Err((DropReason::BelowQuality, index));
        }
        Ok(index)
    }

    /// The event with only the attributes its instrument's `fields` let through,
    /// written into `buf` (cleared first). Unchanged when there is no limit.
    pub fn restrict<'a>(&self, event: Event<'a>, decision: &Decision, buf: &'a mut Vec<u8>) -> Result<Event<'a>, Malformed> {
        let Some(i) = decision.instrument else { return Ok(event) };
        let Some(ins) = self.agreement.instruments.as_ref().map(|l| &l[i as usize]) else { return Ok(event) };
        // Nothing to do when the rule treats only what the instrument may send.
        let Some(fields) = ins.fields.as_ref().filter(|_| !ins.rule_within_fields[decision.rule]) else { return Ok(event) };
        let Some(raw) = event.attributes else { return Ok(event) };
        buf.clear();
        let wrote = filter(raw, fields, buf)?;
        let buf: &'a Vec<u8> = buf;
        let attributes = if wrote { Some(serde_json::from_slice::<&RawValue>(buf).map_err(|_| Malformed::NotJson)?) } else { None };
        Ok(Event { attributes, ..event })
    }
}

/// Does every value the path names meet the bound? `found` is set when one is named.
/// Through arrays, every element is looked into; a path ending on a non-number fails.
fn meets(raw: &RawValue, path: &[String], bound: &Bound, found: &mut bool) -> Result<bool, Malformed> {
    let text = raw.get();
    let Some((head, rest)) = path.split_first() else {
        *found = true;
        return Ok(number(text).is_some_and(|x| bound.holds(x)));
    };
    let mut ok = true;
    match text.as_bytes().first() {
        Some(b'{') => for_each_member(raw, |name, v| {
            if ok && normal(name) == *head {
                ok = meets(v, rest, bound, found)?;
            }
            Ok(())
        })?,
        Some(b'[') => for_each_element(raw, |v| {
            if ok {
                ok = meets(v, path, bound, found)?;
            }
            Ok(())
        })?,
        _ => {}
    }
    Ok(ok)
}

/// A member name in the normal form of SPEC 2.5 (bounds are compiled in that form).
fn normal(name: &str) -> std::borrow::Cow<'_, str> {
    let mut out = String::new();
    if crate::agreement::names::ascii_normal_into(name, &mut out) && out == name {
        return std::borrow::Cow::Borrowed(name);
    }
    std::borrow::Cow::Owned(crate::agreement::names::normalise(name))
}

fn number(text: &str) -> Option<f64> {
    let first = *text.as_bytes().first()?;
    if first == b'-' || first.is_ascii_digit() {
        text.parse().ok().filter(|x: &f64| x.is_finite())
    } else {
        None
    }
}

/// Writes the part of a raw value that the `fields` tree names; false, having written
/// nothing, if nothing is named. A field names the whole value below it; through arrays
/// each element is filtered and the elements in which nothing is named are left out.
fn filter(raw: &RawValue, sel: &Selector, buf: &mut Vec<u8>) -> Result<bool, Malformed> {
    let start = buf.len();
    let mut any = false;
    match raw.get().as_bytes().first() {
        Some(b'{') => {
            buf.push(b'{');
            for_each_member(raw, |name, v| {
                let Some(child) = sel.child(name) else { return Ok(()) };
                let mark = buf.len();
                if any {
                    buf.push(b',');
                }
                write_str(buf, name);
                buf.push(b':');
                let wrote = if child.op.is_some() {
                    buf.extend_from_slice(v.get().as_bytes());
                    true
                } else {
                    filter(v, child, buf)?
                };
                if wrote {
                    any = true;
                } else {
                    buf.truncate(mark);
                }
                Ok(())
            })?;
            buf.push(b'}');
        }
        Some(b'[') => {
            buf.push(b'[');
            for_each_element(raw, |v| {
                let mark = buf.len();
                if any {
                    buf.push(b',');
                }
                if filter(v, sel, buf)? {
                    any = true;
                } else {
                    buf.truncate(mark);
                }
                Ok(())
            })?;
            buf.push(b']');
        }
        _ => {}
    }
    if !any {
        buf.truncate(start);
    }
    Ok(any)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agreement::FieldOp;

    fn raw(s: &str) -> &RawValue {
        serde_json::from_str(s).unwrap()
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
        filter(raw(json), &fields(paths), &mut buf).unwrap();
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
        let b = Bound { path: "pos.acc".into(), segments: vec!["pos".into(), "acc".into()], min: Some(0.0), max: Some(5.0) };
        let check = |json: &str| {
            let mut found = false;
            meets(raw(json), &b.segments, &b, &mut found).unwrap() && found
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
