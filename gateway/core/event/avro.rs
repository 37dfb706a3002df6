//! Avro events (`schemas/accord/v1/sensor_event.avsc` and `enforced_event.avsc`), mapped
//! to and from their JSON form so that one engine path serves every format, as for
//! protobuf ([`super::proto`]).
//!
//! The shapes are event.proto's as Avro records: `occurred_at` a `long` with the
//! `timestamp-micros` logical type (UTC), `attributes` an optional map of
//! `accord.v1.Value`, a record whose one field `value` is a union of null, boolean, long,
//! double, string, a list of `Value` and a map of `Value` (google.protobuf.Value's
//! shape: Avro can only recurse through a named type). A datum is decoded with Accord's
//! own schema as both writer and reader: the input's format is configured, never
//! guessed, and a datum written with another schema fails to decode (malformed) or
//! decodes to what Accord's schema reads.

use std::sync::OnceLock;

use apache_avro::types::Value as Avro;
use apache_avro::Schema;
use serde_json::{Map, Number, Value};

use super::Malformed;

/// The SensorEvent schema, as registered for framed inputs.
pub const SENSOR_EVENT: &str = include_str!("../../../schemas/accord/v1/sensor_event.avsc");
/// The EnforcedEvent schema, as registered for framed outputs.
pub const ENFORCED_EVENT: &str = include_str!("../../../schemas/accord/v1/enforced_event.avsc");

fn sensor_schema() -> &'static Schema {
    static S: OnceLock<Schema> = OnceLock::new();
    S.get_or_init(|| Schema::parse_str(SENSOR_EVENT).expect("schemas/accord/v1/sensor_event.avsc is a valid Avro schema"))
}

fn enforced_schema() -> &'static Schema {
    static S: OnceLock<Schema> = OnceLock::new();
    S.get_or_init(|| Schema::parse_str(ENFORCED_EVENT).expect("schemas/accord/v1/enforced_event.avsc is a valid Avro schema"))
}

/// Decodes a `SensorEvent` datum and writes its JSON form into `json` (cleared).
pub fn to_json(bytes: &[u8], json: &mut Vec<u8>) -> Result<(), Malformed> {
    let mut reader = bytes;
    let datum = apache_avro::from_avro_datum(sensor_schema(), &mut reader, None).map_err(|_| Malformed::NotAvro)?;
    if !reader.is_empty() {
        return Err(Malformed::NotAvro);
    }
    let Avro::Record(fields) = datum else { return Err(Malformed::NotAvro) };
    let mut obj = Map::new();
    for (name, v) in fields {
        match (name.as_str(), v) {
            ("occurred_at", Avro::TimestampMicros(us) | Avro::Long(us)) => {
                obj.insert(name, Value::String(micros_text(us).ok_or(Malformed::BadTime)?));
            }
            ("attributes", v) => match unwrap_union(v) {
                Avro::Null => {}
                Avro::Map(m) => {
                    obj.insert(name, Value::Object(m.into_iter().map(|(k, v)| Ok((k, value_to_json(v)?))).collect::<Result<_, Malformed>>()?));
                }
                _ => return Err(Malformed::WrongType("attributes")),
            },
            (_, v) => match unwrap_union(v) {
                Avro::Null => {}
                Avro::String(s) => {
                    obj.insert(name, Value::String(s));
                }
                _ => return Err(Malformed::NotAvro),
            },
        }
    }
    for field in ["event_id", "source", "subject_id", "category"] {
        if obj.get(field).and_then(Value::as_str).is_none_or(str::is_empty) {
            return Err(Malformed::Missing(field));
        }
    }
    json.clear();
    serde_json::to_writer(json, &Value::Object(obj)).map_err(|_| Malformed::NotAvro)
}

/// Encodes an output the engine wrote as JSON into an `EnforcedEvent` datum, appended
/// to `out` (length-delimited when `delimited`, as in files).
pub fn from_output_json(json: &[u8], delimited: bool, out: &mut Vec<u8>) -> Result<(), Malformed> {
    let v: Value = serde_json::from_slice(json).map_err(|_| Malformed::NotAvro)?;
    let text = |key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
    let optional = |key: &str| match text(key) {
        Some(s) => Avro::Union(1, Box::new(Avro::String(s))),
        None => Avro::Union(0, Box::new(Avro::Null)),
    };
    let at = text("occurred_at").and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok()).ok_or(Malformed::BadTime)?;
    let attributes = match v.get("attributes") {
        Some(Value::Object(m)) => Avro::Union(1, Box::new(Avro::Map(m.iter().map(|(k, v)| (k.clone(), json_to_value(v))).collect()))),
        _ => Avro::Union(0, Box::new(Avro::Null)),
    };
    let a = v.get("accord").ok_or(Malformed::Missing("accord"))?;
    let s = |key: &str| Avro::String(a.get(key).and_then(Value::as_str).unwrap_or_default().to_owned());
    let stamp = Avro::Record(vec![
        ("agreement".into(), s("agreement")),
        ("version".into(), Avro::Long(a.get("version").and_then(Value::as_i64).unwrap_or_default())),
        ("rule".into(), s("rule")),
        ("purpose".into(), s("purpose")),
        ("key_id".into(), s("key_id")),
    ]);
    let record = Avro::Record(vec![
        ("event_id".into(), Avro::String(text("event_id").unwrap_or_default())),
        ("source".into(), Avro::String(text("source").unwrap_or_default())),
        ("device_id".into(), optional("device_id")),
        ("subject_id".into(), optional("subject_id")),
        ("category".into(), Avro::String(text("category").unwrap_or_default())),
        ("occurred_at".into(), Avro::TimestampMicros(at.timestamp_micros())),
        ("attributes".into(), attributes),
        ("accord".into(), stamp),
    ]);
    let datum = apache_avro::to_avro_datum(enforced_schema(), record).map_err(|_| Malformed::NotAvro)?;
    if delimited {
        let mut n = datum.len() as u64;
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }
    out.extend_from_slice(&datum);
    Ok(())
}

/// Encodes a `SensorEvent` datum from its JSON form (for tests, examples, benchmarks).
pub fn sensor_event_from_json(json: &Value) -> Option<Vec<u8>> {
    let text = |key: &str| json.get(key).and_then(Value::as_str).map(str::to_owned);
    let at = chrono::DateTime::parse_from_rfc3339(&text("occurred_at")?).ok()?;
    let attributes = match json.get("attributes") {
        Some(Value::Object(m)) => Avro::Union(1, Box::new(Avro::Map(m.iter().map(|(k, v)| (k.clone(), json_to_value(v))).collect()))),
        _ => Avro::Union(0, Box::new(Avro::Null)),
    };
    let record = Avro::Record(vec![
        ("event_id".into(), Avro::String(text("event_id")?)),
        ("source".into(), Avro::String(text("source")?)),
        ("device_id".into(), text("device_id").map_or(Avro::Union(0, Box::new(Avro::Null)), |d| Avro::Union(1, Box::new(Avro::String(d))))),
        ("subject_id".into(), Avro::String(text("subject_id")?)),
        ("category".into(), Avro::String(text("category")?)),
        ("occurred_at".into(), Avro::TimestampMicros(at.timestamp_micros())),
        ("attributes".into(), attributes),
    ]);
    apache_avro::to_avro_datum(sensor_schema(), record).ok()
}

/// Decodes an `EnforcedEvent` datum to its JSON form (for tests and readers).
pub fn enforced_event_to_json(bytes: &[u8]) -> Option<Value> {
    let mut reader = bytes;
    let Avro::Record(fields) = apache_avro::from_avro_datum(enforced_schema(), &mut reader, None).ok()? else { return None };
    let mut obj = Map::new();
    for (name, v) in fields {
        let v = match (name.as_str(), unwrap_union(v)) {
            (_, Avro::Null) => continue,
            ("occurred_at", Avro::TimestampMicros(us)) => Value::String(micros_text(us)?),
            ("attributes", Avro::Map(m)) => Value::Object(m.into_iter().map(|(k, v)| Some((k, value_to_json(v).ok()?))).collect::<Option<_>>()?),
            ("accord", Avro::Record(f)) => Value::Object(
                f.into_iter()
                    .map(|(k, v)| match v {
                        Avro::String(s) => (k, Value::String(s)),
                        Avro::Long(n) => (k, Value::from(n)),
                        _ => (k, Value::Null),
                    })
                    .collect(),
            ),
            (_, Avro::String(s)) => Value::String(s),
            _ => return None,
        };
        obj.insert(name, v);
    }
    Some(Value::Object(obj))
}

fn unwrap_union(v: Avro) -> Avro {
    match v {
        Avro::Union(_, inner) => *inner,
        v => v,
    }
}

/// RFC 3339 in UTC, `Z`, with as many fractional digits as needed.
fn micros_text(us: i64) -> Option<String> {
    let at = chrono::DateTime::from_timestamp_micros(us)?;
    Some(at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

/// An `accord.v1.Value` record to JSON.
fn value_to_json(v: Avro) -> Result<Value, Malformed> {
    let Avro::Record(mut fields) = v else { return Err(Malformed::WrongType("attributes")) };
    let Some((_, inner)) = fields.pop() else { return Err(Malformed::WrongType("attributes")) };
    Ok(match unwrap_union(inner) {
        Avro::Null => Value::Null,
        Avro::Boolean(b) => Value::Bool(b),
        Avro::Long(n) => Value::from(n),
        Avro::Int(n) => Value::from(n),
        // JSON has no NaN or infinity: such a reading is malformed.
        Avro::Double(x) => Value::Number(Number::from_f64(x).ok_or(Malformed::WrongType("attributes"))?),
        Avro::String(s) => Value::String(s),
        Avro::Array(items) => Value::Array(items.into_iter().map(value_to_json).collect::<Result<_, _>>()?),
        Avro::Map(m) => Value::Object(m.into_iter().map(|(k, v)| Ok((k, value_to_json(v)?))).collect::<Result<_, Malformed>>()?),
        _ => return Err(Malformed::WrongType("attributes")),
    })
}

/// JSON to an `accord.v1.Value` record.
fn json_to_value(v: &Value) -> Avro {
    let inner = match v {
        Value::Null => Avro::Union(0, Box::new(Avro::Null)),
        Value::Bool(b) => Avro::Union(1, Box::new(Avro::Boolean(*b))),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Avro::Union(2, Box::new(Avro::Long(i))),
            None => Avro::Union(3, Box::new(Avro::Double(n.as_f64().unwrap_or_default()))),
        },
        Value::String(s) => Avro::Union(4, Box::new(Avro::String(s.clone()))),
        Value::Array(a) => Avro::Union(5, Box::new(Avro::Array(a.iter().map(json_to_value).collect()))),
        Value::Object(m) => Avro::Union(6, Box::new(Avro::Map(m.iter().map(|(k, v)| (k.clone(), json_to_value(v))).collect()))),
    };
    Avro::Record(vec![("value".into(), inner)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            (-1e12f64..1e12).prop_filter("has a fraction", |x| x.fract() != 0.0).prop_map(Value::from),
            "[a-z ]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-z]{1,6}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Any event survives JSON -> SensorEvent datum -> JSON unchanged.
        #[test]
        fn sensor_events_round_trip(attrs in prop::collection::btree_map("[a-z]{1,6}", json_value(), 0..5), device in proptest::option::of("[a-z0-9-]{1,8}"), secs in 0i64..253_402_300_799, micros in 0u32..1_000_000) {
            let at = chrono::DateTime::from_timestamp(secs, micros * 1000).unwrap().to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
            let mut ev = serde_json::json!({"event_id": "e1", "source": "tracker", "subject_id": "w1", "category": "location", "occurred_at": at,
                "attributes": Value::Object(attrs.into_iter().collect())});
            if let Some(d) = device { ev["device_id"] = Value::String(d); }
            let datum = sensor_event_from_json(&ev).expect("encodes");
            let mut json = Vec::new();
            to_json(&datum, &mut json).expect("decodes");
            // As text: both sides print the same f64s the same way.
            prop_assert_eq!(String::from_utf8(json).unwrap(), serde_json::to_string(&ev).unwrap());
        }

        /// Arbitrary bytes never panic: they decode or are malformed.
        #[test]
        fn arbitrary_bytes_are_decoded_or_malformed(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let mut json = Vec::new();
            if to_json(&bytes, &mut json).is_ok() {
                let v: Value = serde_json::from_slice(&json).unwrap();
                prop_assert!(v.get("event_id").is_some());
            }
        }
    }

    #[test]
    fn an_output_encodes_to_an_enforced_event_and_back() {
        let out = br#"{"event_id":"e1","source":"tracker","subject_id":"k1:00ff","category":"location","occurred_at":"2026-03-02T10:05:00Z","attributes":{"zone":"dock","n":[1,2.5,null]},"accord":{"agreement":"a","version":4,"rule":"r","purpose":"safety","key_id":"k1"}}"#;
        let mut bytes = Vec::new();
        from_output_json(out, false, &mut bytes).unwrap();
        let back = enforced_event_to_json(&bytes).unwrap();
        assert_eq!(back, serde_json::from_slice::<Value>(out).unwrap());
        let mut delimited = Vec::new();
        from_output_json(out, true, &mut delimited).unwrap();
        assert_eq!(delimited[0] as usize, bytes.len(), "one varint byte of length, then the datum");
    }

    #[test]
    fn missing_required_fields_are_malformed() {
        let ev = serde_json::json!({"event_id": "", "source": "tracker", "subject_id": "w1", "category": "location", "occurred_at": "2026-03-02T10:00:00Z"});
        let datum = sensor_event_from_json(&ev).unwrap();
        assert_eq!(to_json(&datum, &mut Vec::new()), Err(Malformed::Missing("event_id")));
        let mut trailing = sensor_event_from_json(&serde_json::json!({"event_id": "e", "source": "s", "subject_id": "w", "category": "c", "occurred_at": "2026-03-02T10:00:00Z"})).unwrap();
        trailing.push(0);
        assert_eq!(to_json(&trailing, &mut Vec::new()), Err(Malformed::NotAvro), "bytes after the datum");
    }
}
