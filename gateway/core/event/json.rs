//! JSON events: one object per Kafka record or per line.
//!
//! A hand-written serde visitor reads the top-level members into an [`Event`] that
//! borrows its strings from the input and keeps `attributes` as raw JSON. It records
//! exactly which field was wrong, so the reason quarantined names the field and never
//! quotes the value (serde's own messages would).

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::agreement::names;

use super::tape::{skip_space, skip_value, string_at, unquote, Tape};
use super::{nesting_exceeds, parse_time, Event, Malformed, MAX_DEPTH, MAX_EVENT_BYTES};

/// Decodes one JSON event.
pub fn decode(bytes: &[u8]) -> Result<Event<'_>, Malformed> {
    if bytes.len() > MAX_EVENT_BYTES {
        return Err(Malformed::TooLarge);
    }
    // Invalid UTF-8 anywhere, in fields that would be removed too (SPEC 2.5): every
    // value is read as a string or as raw JSON text, and serde_json checks both.
    let why = Cell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let fields = match de.deserialize_map(TopLevel { why: &why }).and_then(|f| de.end().map(|_| f)) {
        Ok(fields) => fields,
        Err(e) => {
            if let Some(why) = why.get() {
                return Err(why);
            }
            // Only on failure: was it the encoding?
            if std::str::from_utf8(bytes).is_err() {
                return Err(Malformed::NotUtf8);
            }
            return Err(match e.classify() {
                serde_json::error::Category::Data => Malformed::NotAnObject,
                _ => Malformed::NotJson,
            });
        }
    };
    let occurred_at_text = required(fields.occurred_at, "occurred_at")?;
    let occurred_at = parse_time(&occurred_at_text)?;
    if let Some(attrs) = fields.attributes {
        if nesting_exceeds(attrs.as_bytes(), MAX_DEPTH) {
            return Err(Malformed::TooDeep);
        }
    }
    Ok(Event {
        event_id: required(fields.event_id, "event_id")?,
        source: required(fields.source, "source")?,
        device_id: fields.device_id,
        subject_id: required(fields.subject_id, "subject_id")?,
        category: required(fields.category, "category")?,
        occurred_at_text,
        occurred_at,
        attributes: fields.attributes,
        extra_fields: fields.extra,
    })
}

/// Decodes one JSON event and reads its attributes onto `tape` in the same pass, with
/// `hash` as [`Tape::read`] takes it: the answer of [`decode`] and then [`Tape::read`]
/// over the attributes, from one pass over the text for events as sensors send them.
/// Anything else (an error of any kind, a top-level name with escapes, more than
/// [`QUICK_EXTRAS`] members outside the format) is left to those two, which say
/// exactly what is wrong.
pub fn decode_onto<'a>(bytes: &'a [u8], tape: &mut Tape, mut hash: impl FnMut(&str) -> Result<u64, Malformed>) -> Result<Event<'a>, Malformed> {
    if let Some(event) = quick(bytes, tape, &mut hash) {
        return Ok(event);
    }
    let event = decode(bytes)?;
    if let Some(attributes) = event.attributes {
        tape.read(attributes, hash)?;
    }
    Ok(event)
}

/// Whether `key` is `name`, compared as arrays of a size known here.
#[inline(always)]
fn is<const N: usize>(key: &[u8], name: &[u8; N]) -> bool {
    <&[u8; N]>::try_from(key).is_ok_and(|k| k == name)
}

/// The most members outside the event format [`decode_onto`] reads in its one pass.
pub const QUICK_EXTRAS: usize = 16;

/// [`decode_onto`]'s one pass; `None` for anything it leaves to [`decode`].
fn quick<'a>(bytes: &'a [u8], tape: &mut Tape, hash: &mut impl FnMut(&str) -> Result<u64, Malformed>) -> Option<Event<'a>> {
    if bytes.len() > MAX_EVENT_BYTES {
        return None;
    }
    let text = simdutf8::basic::from_utf8(bytes).ok()?;
    let b = bytes;
    let space = |at: usize| skip_space(b, at);
    // A string value, unescaped strictly (as serde_json reads a `str`). Inlined: its
    // answer, passed back through memory, stalled the load that stored it.
    #[inline(always)]
    fn string(text: &str, at: usize) -> Option<(Cow<'_, str>, usize)> {
        let b = text.as_bytes();
        if b.get(at) != Some(&b'"') {
            return None;
        }
        let (end, escaped) = string_at(b, at)?;
        let value = if escaped { unquote(&text[at..end])? } else { Cow::Borrowed(&text[at + 1..end - 1]) };
        Some((value, end))
    }
    let mut fields = Fields::default();
    let mut extras = [0u64; QUICK_EXTRAS];
    let mut at = space(0);
    if b.get(at) != Some(&b'{') {
        return None;
    }
    at = space(at + 1);
    if b.get(at) == Some(&b'}') {
        at += 1;
    } else {
        loop {
            if b.get(at) != Some(&b'"') {
                return None;
            }
            let (end, escaped) = string_at(b, at)?;
            if escaped {
                return None;
            }
            let key = &text[at + 1..end - 1];
            at = space(end);
            if b.get(at) != Some(&b':') {
                return None;
            }
            at = space(at + 1);
            // A string field: where it goes, and whether null counts as absent. The
            // names are compared as fixed-size arrays: a few loads, not a memcmp call.
            let k = key.as_bytes();
            let string_field = match k.len() {
                8 if is(k, b"event_id") => Some((&mut fields.event_id, false)),
                6 if is(k, b"source") => Some((&mut fields.source, false)),
                10 if is(k, b"subject_id") => Some((&mut fields.subject_id, false)),
                8 if is(k, b"category") => Some((&mut fields.category, false)),
                11 if is(k, b"occurred_at") => Some((&mut fields.occurred_at, false)),
                9 if is(k, b"device_id") => Some((&mut fields.device_id, true)),
                10 if is(k, b"attributes") => {
                    if fields.attributes.is_some() {
                        return None;
                    }
                    match b.get(at) {
                        Some(b'{') => {
                            let end = tape.read_at(text, at, hash).ok()?;
                            fields.attributes = Some(&text[at..end]);
                            at = end;
                        }
                        Some(b'n') if b[at..].starts_with(b"null") => at += 4,
                        _ => return None,
                    }
                    None
                }
                _ => {
                    let n = fields.extra as usize;
                    if n == QUICK_EXTRAS || names::is_refused_name(key) {
                        return None;
                    }
                    let normal = names::normal_hash(key);
                    if extras[..n].contains(&normal) {
                        return None;
                    }
                    extras[n] = normal;
                    fields.extra += 1;
                    at = skip_value(text, at, MAX_DEPTH).ok()?;
                    None
                }
            };
            if let Some((slot, nullable)) = string_field {
                if slot.is_some() {
                    return None; // A field twice.
                }
                if nullable && b[at..].starts_with(b"null") {
                    at += 4;
                } else {
                    let (value, end) = string(text, at)?;
                    *slot = Some(value);
                    at = end;
                }
            }
            at = space(at);
            match b.get(at) {
                Some(b',') => at = space(at + 1),
                Some(b'}') => {
                    at += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    if space(at) != b.len() {
        return None;
    }
    if fields.collides(&extras[..fields.extra as usize]) {
        return None;
    }
    let occurred_at_text = fields.occurred_at?;
    let occurred_at = parse_time(&occurred_at_text).ok()?;
    Some(Event {
        event_id: fields.event_id?,
        source: fields.source?,
        device_id: fields.device_id,
        subject_id: fields.subject_id?,
        category: fields.category?,
        occurred_at_text,
        occurred_at,
        attributes: fields.attributes,
        extra_fields: fields.extra,
    })
}


#[derive(Default)]
struct Fields<'a> {
    event_id: Option<Cow<'a, str>>,
    source: Option<Cow<'a, str>>,
    device_id: Option<Cow<'a, str>>,
    subject_id: Option<Cow<'a, str>>,
    category: Option<Cow<'a, str>>,
    occurred_at: Option<Cow<'a, str>>,
    attributes: Option<&'a str>,
    extra: u32,
}

impl Fields<'_> {
    /// Whether a member outside the format (by the normal-form hashes in `extras`)
    /// has the name of a format member that is present, once normalised (SPEC 2.5).
    fn collides(&self, extras: &[u64]) -> bool {
        if extras.is_empty() {
            return false;
        }
        static KNOWN: std::sync::OnceLock<[u64; 7]> = std::sync::OnceLock::new();
        let known = KNOWN.get_or_init(|| ["event_id", "source", "subject_id", "category", "occurred_at", "device_id", "attributes"].map(names::normal_hash));
        let present = [&self.event_id, &self.source, &self.subject_id, &self.category, &self.occurred_at, &self.device_id].map(Option::is_some);
        present.into_iter().chain([self.attributes.is_some()]).zip(known).any(|(there, hash)| there && extras.contains(hash))
    }
}

struct TopLevel<'w> {
    why: &'w Cell<Option<Malformed>>,
}

impl<'de> Visitor<'de> for TopLevel<'_> {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
        let mut fields = Fields::default();
        // Normal forms of the members outside the event format (SPEC 2.5: two names
        // equal once normalised make the event malformed).
        let mut extras: Vec<u64> = Vec::new();
        let why = self.why;
        let fail = |reason| {
            why.set(Some(reason));
            de::Error::custom("malformed")
        };
        while let Some(key) = map.next_key::<Str<'de>>()? {
            let (slot, name) = match &*key.0 {
                "event_id" => (&mut fields.event_id, "event_id"),
                "source" => (&mut fields.source, "source"),
                "subject_id" => (&mut fields.subject_id, "subject_id"),
                "category" => (&mut fields.category, "category"),
                "occurred_at" => (&mut fields.occurred_at, "occurred_at"),
                "device_id" => {
                    if fields.device_id.is_some() {
                        return Err(fail(Malformed::Duplicate("device_id")));
                    }
                    // Optional: null counts as absent.
                    let value = map.next_value_seed(TypedStr { field: "device_id", why, nullable: true })?;
                    fields.device_id = value;
                    continue;
                }
                "attributes" => {
                    if fields.attributes.is_some() {
                        return Err(fail(Malformed::Duplicate("attributes")));
                    }
                    let raw: &'de RawValue = map.next_value()?;
                    match raw.get().as_bytes().first() {
                        Some(b'{') => fields.attributes = Some(raw.get()),
                        Some(b'n') => {}
                        _ => return Err(fail(Malformed::WrongType("attributes"))),
                    }
                    continue;
                }
                other => {
                    if names::is_refused_name(other) {
                        return Err(fail(Malformed::BadName));
                    }
                    let normal = names::normal_hash(other);
                    if extras.contains(&normal) {
                        return Err(fail(Malformed::DuplicateName));
                    }
                    extras.push(normal);
                    // Raw text, not skipped: serde_json checks its UTF-8.
                    map.next_value::<&'de RawValue>()?;
                    fields.extra += 1;
                    continue;
                }
            };
            if slot.is_some() {
                return Err(fail(Malformed::Duplicate(name)));
            }
            *slot = map.next_value_seed(TypedStr { field: name, why, nullable: false })?;
        }
        if fields.collides(&extras) {
            return Err(fail(Malformed::DuplicateName));
        }
        Ok(fields)
    }
}

fn required<'a>(value: Option<Cow<'a, str>>, name: &'static str) -> Result<Cow<'a, str>, Malformed> {
    value.ok_or(Malformed::Missing(name))
}

/// A key or string value, borrowed when it has no escapes.
pub struct Str<'de>(pub Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor).map(Str)
    }
}

struct StrVisitor;

impl<'de> Visitor<'de> for StrVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

/// A string field; any other type records `WrongType(field)`.
struct TypedStr<'w> {
    field: &'static str,
    why: &'w Cell<Option<Malformed>>,
    nullable: bool,
}

impl<'de> DeserializeSeed<'de> for TypedStr<'_> {
    type Value = Option<Cow<'de, str>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TypedStr<'_> {
    type Value = Option<Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_owned())))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        if self.nullable {
            Ok(None)
        } else {
            Err(self.wrong())
        }
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Err(self.wrong())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Err(self.wrong())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Err(self.wrong())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Err(self.wrong())
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(self.wrong())
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(self.wrong())
    }
}

impl TypedStr<'_> {
    fn wrong<E: de::Error>(&self) -> E {
        self.why.set(Some(Malformed::WrongType(self.field)));
        E::custom("malformed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"event_id":"e1","source":"tracker","device_id":"trk-1","subject_id":"emp-1","category":"location","occurred_at":"2026-03-02T10:00:00+01:00","attributes":{"zone":"dock"},"firmware":"1.2"}"#;

    #[test]
    fn decodes_and_borrows() {
        let ev = decode(GOOD.as_bytes()).unwrap();
        assert!(matches!(ev.event_id, Cow::Borrowed("e1")));
        assert_eq!(ev.device_id.as_deref(), Some("trk-1"));
        assert_eq!(ev.attributes.unwrap(), r#"{"zone":"dock"}"#);
        assert_eq!(ev.extra_fields, 1);
    }

    #[test]
    fn escaped_strings_are_unescaped() {
        let input = GOOD.replace("\"emp-1\"", r#""emp\u002d1""#);
        let ev = decode(input.as_bytes()).unwrap();
        assert_eq!(ev.subject_id, "emp-1");
    }

    #[test]
    fn each_kind_of_bad_input_has_its_reason() {
        let cases: &[(&[u8], Malformed)] = &[
            (b"not json", Malformed::NotJson),
            (b"[1,2]", Malformed::NotAnObject),
            (b"{}", Malformed::Missing("occurred_at")),
            (b"{\"event_id\":\"e\"", Malformed::NotJson),
            (b"\xff\xfe", Malformed::NotUtf8),
        ];
        for (input, reason) in cases {
            assert_eq!(decode(input).unwrap_err(), *reason, "{}", String::from_utf8_lossy(input));
        }
        let wrong = GOOD.replace("\"emp-1\"", "{\"id\":1}");
        assert_eq!(decode(wrong.as_bytes()).unwrap_err(), Malformed::WrongType("subject_id"));
        let missing = GOOD.replace("\"event_id\":\"e1\",", "");
        assert_eq!(decode(missing.as_bytes()).unwrap_err(), Malformed::Missing("event_id"));
        let no_offset = GOOD.replace("+01:00", "");
        assert_eq!(decode(no_offset.as_bytes()).unwrap_err(), Malformed::BadTime);
        let dup = GOOD.replace("{\"event_id\":\"e1\",", "{\"event_id\":\"e1\",\"event_id\":\"e2\",");
        assert_eq!(decode(dup.as_bytes()).unwrap_err(), Malformed::Duplicate("event_id"));
        let twice = GOOD.replace("\"firmware\"", "\"Subject_ID\"");
        assert_eq!(decode(twice.as_bytes()).unwrap_err(), Malformed::DuplicateName);
        let invisible = GOOD.replace("\"firmware\"", "\"firm\u{ad}ware\"");
        assert_eq!(decode(invisible.as_bytes()).unwrap_err(), Malformed::BadName);
        let mut bad_utf8 = GOOD.replace("\"1.2\"", "\"1.2 \"").into_bytes();
        let at = bad_utf8.len() - 3;
        bad_utf8[at] = 0xff;
        assert_eq!(decode(&bad_utf8).unwrap_err(), Malformed::NotUtf8);
        let attrs = GOOD.replace("{\"zone\":\"dock\"}", "[1]");
        assert_eq!(decode(attrs.as_bytes()).unwrap_err(), Malformed::WrongType("attributes"));
    }

    #[test]
    fn deep_nesting_is_refused_without_recursion() {
        let deep = format!("{}{}", "{\"a\":".repeat(20_000), "1".to_string() + &"}".repeat(20_000));
        let ev = GOOD.replace("{\"zone\":\"dock\"}", &deep);
        assert_eq!(decode(ev.as_bytes()).unwrap_err(), Malformed::TooDeep);
        let top = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
        assert!(decode(top.as_bytes()).is_err());
    }

    /// A name the engine would refuse (control or invisible characters) is refused
    /// here too; the rest hash by normal form.
    fn engine_hash(name: &str) -> Result<u64, Malformed> {
        if names::is_refused_name(name) {
            return Err(Malformed::BadName);
        }
        Ok(names::normal_hash(name))
    }

    /// Every value on a tape, depth first, as (name, raw text).
    fn flatten(v: super::super::tape::Value<'_>, out: &mut Vec<(String, String)>) {
        out.push((v.name().to_string(), v.raw().to_string()));
        for c in v.children() {
            flatten(c, out);
        }
    }

    /// The slow path's answer: serde_json's decode, then the tape over the attributes.
    fn slow(bytes: &[u8]) -> Result<(String, Vec<(String, String)>), Malformed> {
        let event = decode(bytes)?;
        let mut tape = Tape::default();
        let mut nodes = Vec::new();
        if let Some(a) = event.attributes {
            tape.read(a, engine_hash)?;
            flatten(tape.root(a), &mut nodes);
        }
        Ok((format!("{event:?}"), nodes))
    }

    fn fast(bytes: &[u8]) -> Option<(String, Vec<(String, String)>)> {
        let mut tape = Tape::default();
        let event = quick(bytes, &mut tape, &mut engine_hash)?;
        let mut nodes = Vec::new();
        if let Some(a) = event.attributes {
            flatten(tape.root(a), &mut nodes);
        }
        Some((format!("{event:?}"), nodes))
    }

    /// JSON as sensors write it, and as they should not: escapes, look-alike and
    /// invisible letters, numbers of every shape, nesting.
    fn arb_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|i| serde_json::json!(i)),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| serde_json::json!(f)),
            "[a-zA-Z0-9 \"\\\\/\u{e9}\u{1F600}\u{1}\n\u{200b}]{0,10}".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(5, 40, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::Array),
                proptest::collection::vec((prop_oneof![9 => "[a-zA-Z_\u{e9}\u{301}]{1,6}", 1 => "[a-z\u{1}\u{200b}]{1,3}"], inner), 0..5).prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// An event's text: the format's members (each present, absent, null or of the wrong
    /// type), members outside it, in any order, with any spacing.
    fn arb_event() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let field = |name: &'static str, value: BoxedStrategy<String>| {
            prop_oneof![40 => value.prop_map(move |v| Some(format!("\"{name}\":{v}"))), 1 => Just(None), 1 => Just(Some(format!("\"{name}\":null"))), 1 => Just(Some(format!("\"{name}\":7")))]
        };
        let text = || "[a-z0-9\\-\u{e9}]{1,8}".prop_map(|s| serde_json::to_string(&s).unwrap()).boxed();
        let time = prop_oneof![4 => Just("\"2026-03-02T10:00:00+01:00\""), 4 => Just("\"2026-03-02T10:00:00Z\""), 1 => Just("\"2016-12-31T23:59:60Z\""), 1 => Just("\"yesterday\"")].prop_map(String::from).boxed();
        let attributes = prop_oneof![10 => arb_value().prop_map(|v| serde_json::json!({ "a": v, "b": {"c": [1, "x"]} }).to_string()), 1 => arb_value().prop_map(|v| v.to_string())].boxed();
        let extra = (prop_oneof![9 => "[a-zA-Z_\u{e9}]{1,8}", 1 => "[a-z\u{1}]{1,3}"], arb_value()).prop_map(|(k, v)| Some(format!("{}:{}", serde_json::to_string(&k).unwrap(), v)));
        (
            [field("event_id", text()), field("source", text()), field("subject_id", text()), field("category", text()), field("occurred_at", time), field("device_id", text()), field("attributes", attributes)],
            proptest::collection::vec(extra, 0..4),
            any::<u64>(),
            prop_oneof![Just(""), Just(" "), Just("\n\t ")],
        )
            .prop_map(|(known, extras, order, gap)| {
                let mut members: Vec<String> = known.into_iter().chain(extras).flatten().collect();
                let n = members.len().max(1);
                members.rotate_left(order as usize % n);
                if order & 1 << 40 != 0 {
                    members.reverse();
                }
                format!("{gap}{{{gap}{}{gap}}}{gap}", members.join(&format!("{gap},{gap}")))
            })
    }

    /// Bytes that break JSON in interesting places.
    const BREAKERS: &[u8] = b"\"\\{}[],: n0-.eEu\x01\xff\xc3\x80t";

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// The one pass accepts only what serde_json and the tape accept, with the same
        /// fields and the same tape; and it takes every well-formed event itself.
        #[test]
        fn the_one_pass_agrees_with_serde_json(event in arb_event()) {
            let want = slow(event.as_bytes());
            match fast(event.as_bytes()) {
                Some(got) => proptest::prop_assert_eq!(Ok(got), want),
                None => proptest::prop_assert!(want.is_err(), "a well-formed event left to the slow path: {}", event),
            }
        }

        /// The same, once the text is broken somewhere: a byte replaced, inserted or
        /// removed.
        #[test]
        fn broken_events_are_never_accepted_by_the_one_pass_alone(event in arb_event(), at in proptest::prelude::any::<proptest::sample::Index>(), byte in proptest::sample::select(BREAKERS), how in 0..3u8) {
            let mut bytes = event.into_bytes();
            let i = at.index(bytes.len() + 1);
            match how {
                0 if i < bytes.len() => bytes[i] = byte,
                1 if i < bytes.len() => { bytes.remove(i); }
                _ => bytes.insert(i, byte),
            }
            if let Some(got) = fast(&bytes) {
                proptest::prop_assert_eq!(Ok(got), slow(&bytes), "{}", String::from_utf8_lossy(&bytes));
            }
        }
    }

    #[test]
    fn decode_onto_gives_the_exact_reason_for_what_the_one_pass_refuses() {
        let mut tape = Tape::default();
        let mut go = |s: &str| decode_onto(s.as_bytes(), &mut tape, engine_hash).map(|_| ());
        assert_eq!(go(&GOOD.replace("\"emp-1\"", "5")), Err(Malformed::WrongType("subject_id")));
        assert_eq!(go(&GOOD.replace("{\"zone\":\"dock\"}", "{\"a\":1,\"A\":2}")), Err(Malformed::DuplicateName));
        assert_eq!(go(&GOOD.replace("{\"zone\":\"dock\"}", "{\"a\":01}")), Err(Malformed::NotJson));
        assert_eq!(go(&GOOD.replace("{\"zone\":\"dock\"}", &format!("{}1{}", "[".repeat(70), "]".repeat(70)))), Err(Malformed::WrongType("attributes")));
        assert_eq!(go(&GOOD.replace("{\"zone\":\"dock\"}", &format!("{{\"a\":{}1{}}}", "[".repeat(70), "]".repeat(70)))), Err(Malformed::TooDeep));
        // Unusual but well formed: left to the slow path, which takes it.
        assert_eq!(go(&GOOD.replace("\"firmware\"", "\"firm\\u0077are\"")), Ok(()));
    }
}
