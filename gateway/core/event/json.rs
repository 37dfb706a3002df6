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
        if nesting_exceeds(attrs.get().as_bytes(), MAX_DEPTH) {
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

#[derive(Default)]
struct Fields<'a> {
    event_id: Option<Cow<'a, str>>,
    source: Option<Cow<'a, str>>,
    device_id: Option<Cow<'a, str>>,
    subject_id: Option<Cow<'a, str>>,
    category: Option<Cow<'a, str>>,
    occurred_at: Option<Cow<'a, str>>,
    attributes: Option<&'a RawValue>,
    extra: u32,
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
                        Some(b'{') => fields.attributes = Some(raw),
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
        if !extras.is_empty() {
            let present = [
                ("event_id", fields.event_id.is_some()),
                ("source", fields.source.is_some()),
                ("subject_id", fields.subject_id.is_some()),
                ("category", fields.category.is_some()),
                ("occurred_at", fields.occurred_at.is_some()),
                ("device_id", fields.device_id.is_some()),
                ("attributes", fields.attributes.is_some()),
            ];
            static KNOWN: std::sync::OnceLock<[u64; 7]> = std::sync::OnceLock::new();
            let known = KNOWN.get_or_init(|| ["event_id", "source", "subject_id", "category", "occurred_at", "device_id", "attributes"].map(names::normal_hash));
            if present.iter().zip(known).any(|((_, there), hash)| *there && extras.contains(hash)) {
                return Err(fail(Malformed::DuplicateName));
            }
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
        assert_eq!(ev.attributes.unwrap().get(), r#"{"zone":"dock"}"#);
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
}
