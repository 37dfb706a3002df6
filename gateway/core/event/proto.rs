//! Protobuf events (`schemas/accord/v1/event.proto`), mapped to and from their proto3
//! JSON form so that one engine path serves both formats.
//!
//! Protobuf input is decoded with prost, checked for its required fields, and written
//! as the JSON event it maps to; an output is encoded from the JSON the engine wrote.
//! This costs a conversion per event; JSON is the fast path.

use prost::Message;
use prost_types::value::Kind;
use serde_json::{Map, Value};

use super::Malformed;

/// The messages generated from `schemas/` at build time.
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/accord.v1.rs"));
}

pub use pb::{AccordStamp, EnforcedEvent, SensorEvent};

/// Decodes a `SensorEvent` and writes its proto3 JSON mapping into `json` (cleared),
/// straight from the decoded message: no JSON tree between the two.
pub fn to_json(bytes: &[u8], json: &mut Vec<u8>) -> Result<(), Malformed> {
    let ev = SensorEvent::decode(bytes).map_err(|_| Malformed::NotProtobuf)?;
    for (value, name) in [(&ev.event_id, "event_id"), (&ev.source, "source"), (&ev.subject_id, "subject_id"), (&ev.category, "category")] {
        if value.is_empty() {
            return Err(Malformed::Missing(name));
        }
    }
    let at = ev.occurred_at.ok_or(Malformed::Missing("occurred_at"))?;
    let occurred_at = timestamp_text(&at).ok_or(Malformed::BadTime)?;
    json.clear();
    // The members in the order a JSON object of them is written (by name).
    json.push(b'{');
    if let Some(attrs) = &ev.attributes {
        json.extend_from_slice(b"\"attributes\":");
        write_struct(json, attrs);
        json.push(b',');
    }
    json.extend_from_slice(b"\"category\":");
    write_text(json, &ev.category);
    if let Some(d) = &ev.device_id {
        json.extend_from_slice(b",\"device_id\":");
        write_text(json, d);
    }
    for (name, value) in [("event_id", &ev.event_id), ("occurred_at", &occurred_at), ("source", &ev.source), ("subject_id", &ev.subject_id)] {
        json.extend_from_slice(b",\"");
        json.extend_from_slice(name.as_bytes());
        json.extend_from_slice(b"\":");
        write_text(json, value);
    }
    json.push(b'}');
    Ok(())
}

/// A JSON string, escaped as serde_json escapes it.
fn write_text(json: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(json, s).expect("writing to a Vec cannot fail");
}

/// A `google.protobuf.Struct` as its JSON object (members by name, as prost keeps them).
fn write_struct(json: &mut Vec<u8>, s: &prost_types::Struct) {
    json.push(b'{');
    for (i, (k, v)) in s.fields.iter().enumerate() {
        if i > 0 {
            json.push(b',');
        }
        write_text(json, k);
        json.push(b':');
        write_value(json, v);
    }
    json.push(b'}');
}

fn write_value(json: &mut Vec<u8>, v: &prost_types::Value) {
    match &v.kind {
        None | Some(Kind::NullValue(_)) => json.extend_from_slice(b"null"),
        Some(Kind::NumberValue(n)) => {
            // proto3 JSON writes integral numbers without a fraction; what JSON
            // cannot hold (NaN, infinities) is null.
            if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 {
                json.extend_from_slice(itoa::Buffer::new().format(*n as i64).as_bytes());
            } else if n.is_finite() {
                serde_json::to_writer(&mut *json, n).expect("writing to a Vec cannot fail");
            } else {
                json.extend_from_slice(b"null");
            }
        }
        Some(Kind::StringValue(s)) => write_text(json, s),
        Some(Kind::BoolValue(b)) => json.extend_from_slice(if *b { b"true" } else { b"false" }),
        Some(Kind::StructValue(s)) => write_struct(json, s),
        Some(Kind::ListValue(l)) => {
            json.push(b'[');
            for (i, v) in l.values.iter().enumerate() {
                if i > 0 {
                    json.push(b',');
                }
                write_value(json, v);
            }
            json.push(b']');
        }
    }
}

/// Encodes an output the engine wrote as JSON into an `EnforcedEvent` (appended to
/// `out`, length-delimited when `delimited`).
pub fn from_output_json(json: &[u8], delimited: bool, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    let v: Value = serde_json::from_slice(json)?;
    let text = |key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
    let stamp = v.get("accord").map(|a| AccordStamp {
        agreement: a["agreement"].as_str().unwrap_or_default().to_owned(),
        version: a["version"].as_u64().unwrap_or_default() as u32,
        rule: a["rule"].as_str().unwrap_or_default().to_owned(),
        purpose: a["purpose"].as_str().unwrap_or_default().to_owned(),
        key_id: a["key_id"].as_str().unwrap_or_default().to_owned(),
    });
    let occurred_at = text("occurred_at").and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok()).map(|t| prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    });
    let attributes = match v.get("attributes") {
        Some(Value::Object(m)) => Some(json_to_struct(m)),
        _ => None,
    };
    let msg = EnforcedEvent {
        event_id: text("event_id").unwrap_or_default(),
        source: text("source").unwrap_or_default(),
        device_id: text("device_id"),
        subject_id: text("subject_id"),
        category: text("category").unwrap_or_default(),
        occurred_at,
        attributes,
        accord: stamp,
    };
    if delimited {
        msg.encode_length_delimited(out).expect("a Vec grows as needed");
    } else {
        msg.encode(out).expect("a Vec grows as needed");
    }
    Ok(())
}

/// RFC 3339 in UTC, `Z`, with as many fractional digits as needed.
fn timestamp_text(t: &prost_types::Timestamp) -> Option<String> {
    // google.protobuf.Timestamp: nanos in [0, 1e9), seconds within the years 0001 to
    // 9999; SPEC 2.5 allows the year 0000 too, and nothing outside it.
    let nanos = u32::try_from(t.nanos).ok().filter(|n| *n < 1_000_000_000)?;
    if !crate::engine::generalise::utc_fits(t.seconds) {
        return None;
    }
    let at = chrono::DateTime::from_timestamp(t.seconds, nanos)?;
    Some(at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

fn json_to_struct(m: &Map<String, Value>) -> prost_types::Struct {
    prost_types::Struct { fields: m.iter().map(|(k, v)| (k.clone(), json_to_value(v))).collect() }
}

fn json_to_value(v: &Value) -> prost_types::Value {
    let kind = match v {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(a) => Kind::ListValue(prost_types::ListValue { values: a.iter().map(json_to_value).collect() }),
        Value::Object(m) => Kind::StructValue(json_to_struct(m)),
    };
    prost_types::Value { kind: Some(kind) }
}

/// Encodes a `SensorEvent` from its JSON form (for tests, examples and benchmarks).
pub fn sensor_event_from_json(json: &Value) -> Option<SensorEvent> {
    let text = |key: &str| json.get(key).and_then(Value::as_str).map(str::to_owned);
    let at = chrono::DateTime::parse_from_rfc3339(&text("occurred_at")?).ok()?;
    Some(SensorEvent {
        event_id: text("event_id")?,
        source: text("source")?,
        device_id: text("device_id"),
        subject_id: text("subject_id")?,
        category: text("category")?,
        occurred_at: Some(prost_types::Timestamp { seconds: at.timestamp(), nanos: at.timestamp_subsec_nanos() as i32 }),
        attributes: match json.get("attributes") {
            Some(Value::Object(m)) => Some(json_to_struct(m)),
            _ => None,
        },
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The mapping as it was first written, through a JSON tree: the reference the
    /// direct writer is held to, byte for byte.
    fn through_a_tree(ev: SensorEvent) -> Vec<u8> {
        let mut obj = Map::new();
        obj.insert("event_id".into(), ev.event_id.into());
        obj.insert("source".into(), ev.source.into());
        if let Some(d) = ev.device_id {
            obj.insert("device_id".into(), d.into());
        }
        obj.insert("subject_id".into(), ev.subject_id.into());
        obj.insert("category".into(), ev.category.into());
        obj.insert("occurred_at".into(), timestamp_text(&ev.occurred_at.unwrap()).unwrap().into());
        if let Some(attrs) = ev.attributes {
            obj.insert("attributes".into(), struct_to_json(attrs));
        }
        serde_json::to_vec(&Value::Object(obj)).unwrap()
    }

fn struct_to_json(s: prost_types::Struct) -> Value {
        Value::Object(s.fields.into_iter().map(|(k, v)| (k, value_to_json(v))).collect())
    }
    
    fn value_to_json(v: prost_types::Value) -> Value {
        match v.kind {
            None | Some(Kind::NullValue(_)) => Value::Null,
            Some(Kind::NumberValue(n)) => {
                // proto3 JSON writes integral numbers without a fraction.
                if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 {
                    Value::from(n as i64)
                } else {
                    serde_json::Number::from_f64(n).map(Value::Number).unwrap_or(Value::Null)
                }
            }
            Some(Kind::StringValue(s)) => Value::String(s),
            Some(Kind::BoolValue(b)) => Value::Bool(b),
            Some(Kind::StructValue(s)) => struct_to_json(s),
            Some(Kind::ListValue(l)) => Value::Array(l.values.into_iter().map(value_to_json).collect()),
        }
    }

    fn value() -> impl Strategy<Value = prost_types::Value> {
        let leaf = prop_oneof![
            Just(Kind::NullValue(0)),
            any::<bool>().prop_map(Kind::BoolValue),
            prop_oneof![any::<f64>(), (-1e17f64..1e17).prop_map(f64::trunc), Just(9.007_199_254_740_992e15), Just(-0.0), Just(f64::NAN), Just(f64::INFINITY)].prop_map(Kind::NumberValue),
            "[a-zé\"\\\\\u{0}-\u{1f}\u{2028}😀]{0,8}".prop_map(Kind::StringValue),
        ]
        .prop_map(|k| prost_types::Value { kind: Some(k) });
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(|values| Kind::ListValue(prost_types::ListValue { values })),
                prop::collection::btree_map("[a-zA-Z_é\"]{0,6}", inner, 0..5).prop_map(|fields| Kind::StructValue(prost_types::Struct { fields })),
            ]
            .prop_map(|k| prost_types::Value { kind: Some(k) })
        })
    }

    proptest! {
        /// The direct writer writes what the tree did, for any attributes: nested
        /// structs and lists, every kind of number (integral, fractional, the largest
        /// exact integer, -0, NaN, infinities), and strings that need escaping.
        #[test]
        fn protobuf_becomes_the_same_json_as_through_a_tree(
            attributes in prop::option::of(prop::collection::btree_map("[a-z_é]{0,6}", value(), 0..6)),
            device in prop::option::of("[a-z0-9\"-]{0,6}"),
            nanos in 0i32..1_000_000_000,
        ) {
            let ev = SensorEvent {
                event_id: "e\"1".into(),
                source: "tracker".into(),
                device_id: device,
                subject_id: "emp-1".into(),
                category: "location".into(),
                occurred_at: Some(prost_types::Timestamp { seconds: 1_772_446_051, nanos }),
                attributes: attributes.map(|fields| prost_types::Struct { fields }),
            };
            let mut direct = Vec::new();
            to_json(&ev.encode_to_vec(), &mut direct).unwrap();
            prop_assert_eq!(String::from_utf8(direct).unwrap(), String::from_utf8(through_a_tree(ev)).unwrap());
        }
    }

    #[test]
    fn protobuf_maps_to_the_json_event() {
        let json: Value = serde_json::from_str(r#"{"event_id":"e1","source":"tracker","subject_id":"emp-1","category":"location","occurred_at":"2026-03-02T09:00:00Z","attributes":{"zone":"dock","lat":52.1,"n":3,"tags":["a"]}}"#).unwrap();
        let bytes = sensor_event_from_json(&json).unwrap().encode_to_vec();
        let mut out = Vec::new();
        to_json(&bytes, &mut out).unwrap();
        let back: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, json);
    }

    #[test]
    fn missing_required_fields_and_garbage_are_malformed() {
        let mut out = Vec::new();
        assert_eq!(to_json(&[0xff, 0xff, 0xff], &mut out), Err(Malformed::NotProtobuf));
        let ev = SensorEvent { event_id: "e".into(), source: "s".into(), subject_id: "x".into(), category: "c".into(), ..Default::default() };
        assert_eq!(to_json(&ev.encode_to_vec(), &mut out), Err(Malformed::Missing("occurred_at")));
    }

    /// Timestamps out of range are malformed (issue 10).
    #[test]
    fn issue_10_timestamps_are_range_checked() {
        let mut out = Vec::new();
        let at = |seconds, nanos| SensorEvent {
            event_id: "e".into(),
            source: "s".into(),
            subject_id: "x".into(),
            category: "c".into(),
            occurred_at: Some(prost_types::Timestamp { seconds, nanos }),
            ..Default::default()
        };
        for (seconds, nanos) in [(0, 1_000_000_000), (0, 1_999_999_999), (0, -1), (253_402_300_800, 0), (-62_167_219_201, 0), (i64::MAX, 0)] {
            assert_eq!(to_json(&at(seconds, nanos).encode_to_vec(), &mut out), Err(Malformed::BadTime), "{seconds} {nanos}");
        }
        assert!(to_json(&at(1_772_446_051, 999_999_999).encode_to_vec(), &mut out).is_ok());
    }
}
