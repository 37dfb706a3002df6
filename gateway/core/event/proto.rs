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

/// Decodes a `SensorEvent` and writes its proto3 JSON mapping into `json` (cleared).
pub fn to_json(bytes: &[u8], json: &mut Vec<u8>) -> Result<(), Malformed> {
    let ev = SensorEvent::decode(bytes).map_err(|_| Malformed::NotProtobuf)?;
    for (value, name) in [(&ev.event_id, "event_id"), (&ev.source, "source"), (&ev.subject_id, "subject_id"), (&ev.category, "category")] {
        if value.is_empty() {
            return Err(Malformed::Missing(name));
        }
    }
    let at = ev.occurred_at.ok_or(Malformed::Missing("occurred_at"))?;
    let occurred_at = timestamp_text(&at).ok_or(Malformed::BadTime)?;
    let mut obj = Map::new();
    obj.insert("event_id".into(), ev.event_id.into());
    obj.insert("source".into(), ev.source.into());
    if let Some(d) = ev.device_id {
        obj.insert("device_id".into(), d.into());
    }
    obj.insert("subject_id".into(), ev.subject_id.into());
    obj.insert("category".into(), ev.category.into());
    obj.insert("occurred_at".into(), occurred_at.into());
    if let Some(attrs) = ev.attributes {
        obj.insert("attributes".into(), struct_to_json(attrs));
    }
    json.clear();
    serde_json::to_writer(json, &Value::Object(obj)).map_err(|_| Malformed::NotProtobuf)
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
    use super::*;

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
