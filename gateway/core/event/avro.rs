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
//!
//! Datums are read and written directly, through a [`flat`] list of nodes, as
//! apache-avro reads and writes them (its values and a JSON tree per event cost twelve
//! to twenty-four times the enforcement); apache-avro parses the schemas, and reads
//! outputs back for tests and readers.

use std::sync::OnceLock;

use apache_avro::types::Value as Avro;
use apache_avro::Schema;
use serde_json::{Map, Number, Value};

use super::flat::{self, Flat, Node};
use super::{wire, Malformed};

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

/// Decodes a `SensorEvent` datum and writes its JSON form into `json` (cleared): the
/// members by name, a map's entries by key (a repeated key: its last value), as a
/// `serde_json::Value` of the decoded datum would be written. Read in one pass into a
/// [`flat`] list, with no tree; nesting deeper than [`MAX_NESTING`] is refused before it
/// can exhaust the stack.
pub fn to_json(bytes: &[u8], json: &mut Vec<u8>) -> Result<(), Malformed> {
    flat::with(|doc| {
        let mut r = Reader { bytes, at: 0 };
        // The fields in the schema's order.
        let event_id = r.string()?;
        let source = r.string()?;
        let device_id = match r.branch()? {
            0 => None,
            1 => Some(r.string()?),
            _ => return Err(Malformed::NotAvro),
        };
        let subject_id = r.string()?;
        let category = r.string()?;
        let micros = r.long()?;
        let attributes = match r.branch()? {
            0 => None,
            1 => Some(r.map(doc, 0)?),
            _ => return Err(Malformed::NotAvro),
        };
        if r.at != bytes.len() {
            return Err(Malformed::NotAvro);
        }
        let occurred_at = micros_text(micros).ok_or(Malformed::BadTime)?;
        json.clear();
        // The members in the order a JSON object of them is written (by name).
        json.push(b'{');
        if let Some(map) = attributes {
            json.extend_from_slice(b"\"attributes\":");
            // JSON has no NaN or infinity: such a reading (one a later value of its key
            // does not replace) is malformed.
            doc.write_json(bytes, map, json).map_err(|flat::NotFinite| Malformed::WrongType("attributes"))?;
            json.push(b',');
        }
        for ((_, len), field) in [(event_id, "event_id"), (source, "source"), (subject_id, "subject_id"), (category, "category")] {
            if len == 0 {
                return Err(Malformed::Missing(field));
            }
        }
        let text = |(at, len): (usize, usize)| &bytes[at..at + len];
        flat::write_event_fields(json, text(category), device_id.map(text), text(event_id), occurred_at.as_bytes(), text(source), text(subject_id));
        Ok(())
    })
}

/// How deeply `accord.v1.Value`s may nest in a datum read: deeper than any event the
/// engine takes ([`super::MAX_DEPTH`]), shallow enough for the stack.
pub const MAX_NESTING: usize = 2 * super::MAX_DEPTH;

/// Why a varint could not be read.
enum Ended {
    Early,
    TooLong,
}

/// Reads a datum's binary encoding, as apache-avro decodes it with the schema as both
/// writer's and reader's.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    /// A `long`: a zigzag varint of at most ten bytes.
    fn long(&mut self) -> Result<i64, Malformed> {
        self.varint().map_err(|_| Malformed::NotAvro)
    }

    /// A field's union branch. Input that ends within it reads as the first branch,
    /// null, as apache-avro reads it: a datum may leave out its last field when that is
    /// null.
    fn branch(&mut self) -> Result<i64, Malformed> {
        match self.varint() {
            Ok(n) => Ok(n),
            Err(Ended::Early) => Ok(0),
            Err(Ended::TooLong) => Err(Malformed::NotAvro),
        }
    }

    /// A zigzag varint: at most ten bytes, the bits beyond 64 dropped, as apache-avro
    /// reads it.
    fn varint(&mut self) -> Result<i64, Ended> {
        let mut n: u64 = 0;
        for shift in (0..64).step_by(7) {
            let &b = self.bytes.get(self.at).ok_or(Ended::Early)?;
            self.at += 1;
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok((n >> 1) as i64 ^ -((n & 1) as i64));
            }
        }
        Err(Ended::TooLong)
    }

    /// A `string`: its length, then that many bytes of UTF-8. Gives where they are.
    fn string(&mut self) -> Result<(usize, usize), Malformed> {
        let len = usize::try_from(self.long()?).map_err(|_| Malformed::NotAvro)?;
        let at = self.at;
        let text = self.bytes.get(at..at.checked_add(len).ok_or(Malformed::NotAvro)?).ok_or(Malformed::NotAvro)?;
        simdutf8::basic::from_utf8(text).map_err(|_| Malformed::NotAvro)?;
        self.at += len;
        Ok((at, len))
    }

    /// The number of items in the next block of an array or a map (0: the end). A
    /// negative count is followed by the block's size in bytes, which is not needed.
    fn block(&mut self) -> Result<u64, Malformed> {
        let count = self.long()?;
        if count < 0 {
            self.long()?;
        }
        count.checked_neg().map(|_| count.unsigned_abs()).ok_or(Malformed::NotAvro)
    }

    /// The blocks of an array or a map: `item` once for each of their items.
    fn blocks(&mut self, mut item: impl FnMut(&mut Self) -> Result<(), Malformed>) -> Result<(), Malformed> {
        loop {
            let count = self.block()?;
            if count == 0 {
                return Ok(());
            }
            for _ in 0..count {
                item(self)?;
            }
        }
    }

    /// A map of `accord.v1.Value`s, as an object node: its index.
    fn map(&mut self, doc: &mut Flat, depth: usize) -> Result<usize, Malformed> {
        let object = doc.open(true);
        self.blocks(|r| {
            let (at, len) = r.string()?;
            doc.push_str(at, len);
            r.value(doc, depth)
        })?;
        doc.close(object);
        Ok(object)
    }

    /// An `accord.v1.Value`: the record's one field, a union.
    fn value(&mut self, doc: &mut Flat, depth: usize) -> Result<(), Malformed> {
        // Within a datum, input that ends in a value's branch is refused at once
        // (apache-avro read a null there, as many times as a block said, and then
        // failed on the block's end).
        let node = match self.long()? {
            0 => Node::Null,
            1 => match self.bytes.get(self.at) {
                Some(&b @ (0 | 1)) => {
                    self.at += 1;
                    Node::Bool(b == 1)
                }
                _ => return Err(Malformed::NotAvro),
            },
            2 => Node::I64(self.long()?),
            3 => {
                let raw = self.bytes.get(self.at..self.at + 8).ok_or(Malformed::NotAvro)?;
                self.at += 8;
                Node::F64(f64::from_le_bytes(raw.try_into().expect("eight bytes")))
            }
            4 => {
                let (at, len) = self.string()?;
                doc.push_str(at, len);
                return Ok(());
            }
            5 | 6 if depth >= MAX_NESTING => return Err(Malformed::TooDeep),
            5 => {
                let array = doc.open(false);
                self.blocks(|r| r.value(doc, depth + 1))?;
                doc.close(array);
                return Ok(());
            }
            6 => {
                self.map(doc, depth + 1)?;
                return Ok(());
            }
            _ => return Err(Malformed::NotAvro),
        };
        doc.nodes.push(node);
        Ok(())
    }
}

/// Encodes an output the engine wrote as JSON into an `EnforcedEvent` datum, appended
/// to `out` (length-delimited when `delimited`, as in files). Written straight from the
/// JSON read once ([`flat`]): a map's entries in the order the output has them.
pub fn from_output_json(json: &[u8], delimited: bool, out: &mut Vec<u8>) -> Result<(), Malformed> {
    flat::with(|doc| {
        doc.read_json(json).map_err(|_| Malformed::NotAvro)?;
        let [event_id, source, device_id, subject_id, category, occurred_at, attributes, stamp] =
            doc.members(json, 0, ["event_id", "source", "device_id", "subject_id", "category", "occurred_at", "attributes", "accord"]);
        let at = doc.string(json, occurred_at).and_then(|t| chrono::DateTime::parse_from_rfc3339(std::str::from_utf8(t).ok()?).ok()).ok_or(Malformed::BadTime)?;
        let stamp = stamp.ok_or(Malformed::Missing("accord"))?;
        let whole = delimited.then(|| wire::open_len(out));
        for (value, optional) in [(event_id, false), (source, false), (device_id, true), (subject_id, true), (category, false)] {
            match (doc.string(json, value), optional) {
                (Some(t), true) => {
                    out.push(2);
                    write_string(out, t);
                }
                (None, true) => out.push(0),
                (t, false) => write_string(out, t.unwrap_or_default()),
            }
        }
        wire::write_zigzag(at.timestamp_micros(), out);
        match attributes {
            Some(map) if matches!(doc.nodes[map], Node::Object { .. }) => {
                out.push(2);
                write_blocks(doc, json, map, out);
            }
            _ => out.push(0),
        }
        // The stamp: what is not a string is empty, a version that is not an integer 0.
        let [agreement, version, rule, purpose, key_id] = doc.members(json, stamp, ["agreement", "version", "rule", "purpose", "key_id"]);
        write_string(out, doc.string(json, agreement).unwrap_or_default());
        let version = match version.map(|i| doc.nodes[i]) {
            Some(Node::U64(n)) => i64::try_from(n).unwrap_or_default(),
            Some(Node::I64(n)) => n,
            _ => 0,
        };
        wire::write_zigzag(version, out);
        for value in [rule, purpose, key_id] {
            write_string(out, doc.string(json, value).unwrap_or_default());
        }
        if let Some(at) = whole {
            wire::close_len(out, at);
        }
        Ok(())
    })
}

fn write_string(out: &mut Vec<u8>, text: &[u8]) {
    wire::write_zigzag(text.len() as i64, out);
    out.extend_from_slice(text);
}

/// The items of an array or a map of `accord.v1.Value`s (a map's: each name, then its
/// value): one block of all of them (none when there are none), then the empty block.
fn write_blocks(doc: &Flat, json: &[u8], container: usize, out: &mut Vec<u8>) {
    let count = doc.items(container).count();
    if count > 0 {
        wire::write_zigzag(count as i64, out);
        let map = matches!(doc.nodes[container], Node::Object { .. });
        for item in doc.items(container) {
            if map {
                write_string(out, doc.text(json, item));
                write_value(doc, json, item + 1, out);
            } else {
                write_value(doc, json, item, out);
            }
        }
    }
    out.push(0);
}

/// An `accord.v1.Value`: the union's branch, then its value. An integer that fits no
/// `long` is a `double`, as JSON's numbers were mapped before.
fn write_value(doc: &Flat, json: &[u8], i: usize, out: &mut Vec<u8>) {
    let double = |out: &mut Vec<u8>, x: f64| {
        out.push(6);
        out.extend_from_slice(&x.to_le_bytes());
    };
    match doc.nodes[i] {
        Node::Null => out.push(0),
        Node::Bool(b) => out.extend_from_slice(&[2, u8::from(b)]),
        Node::U64(n) => match i64::try_from(n) {
            Ok(n) => {
                out.push(4);
                wire::write_zigzag(n, out);
            }
            Err(_) => double(out, n as f64),
        },
        Node::I64(n) => {
            out.push(4);
            wire::write_zigzag(n, out);
        }
        Node::F64(x) => double(out, x),
        Node::Str { .. } => {
            out.push(8);
            write_string(out, doc.text(json, i));
        }
        Node::Array { .. } => {
            out.push(10);
            write_blocks(doc, json, i, out);
        }
        Node::Object { .. } => {
            out.push(12);
            write_blocks(doc, json, i, out);
        }
    }
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

    /// Decoding as it was first written, through apache-avro's value and a JSON tree:
    /// the reference the direct decoder is held to, byte for byte.
    fn through_a_tree(bytes: &[u8], json: &mut Vec<u8>) -> Result<(), Malformed> {
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

    /// Encoding as it was first written, through a JSON tree and apache-avro's value.
    fn through_a_record(json: &[u8], delimited: bool, out: &mut Vec<u8>) -> Result<(), Malformed> {
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

    /// An `accord.v1.Value` to write by hand: what apache-avro cannot be asked to write
    /// (maps with a key twice, doubles JSON cannot hold, blocks of every shape).
    #[derive(Clone, Debug)]
    enum V {
        Null,
        Bool(bool),
        Long(i64),
        Double(f64),
        Text(String),
        List(Vec<V>),
        Map(Vec<(String, V)>),
    }

    fn v() -> impl Strategy<Value = V> {
        let leaf = prop_oneof![
            Just(V::Null),
            any::<bool>().prop_map(V::Bool),
            any::<i64>().prop_map(V::Long),
            prop_oneof![any::<f64>(), Just(-0.0), Just(1.0), Just(f64::NAN), Just(f64::INFINITY)].prop_map(V::Double),
            "[a-zé\"\\\\\u{0}-\u{1f}😀]{0,6}".prop_map(V::Text),
        ];
        leaf.prop_recursive(4, 32, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(V::List),
                prop::collection::vec(("[ab\"é]{0,2}", inner), 0..5).prop_map(V::Map),
            ]
        })
    }

    /// Writes `items` as blocks: one block (`blocks` 0), a block per item (1), or a
    /// block per item with a negative count and its size (2).
    fn blocks<T>(out: &mut Vec<u8>, items: &[T], blocks: u8, mut item: impl FnMut(&mut Vec<u8>, &T)) {
        match blocks {
            0 if !items.is_empty() => {
                wire::write_zigzag(items.len() as i64, out);
                items.iter().for_each(|i| item(out, i));
            }
            0 => {}
            _ => {
                for i in items {
                    let mut one = Vec::new();
                    item(&mut one, i);
                    wire::write_zigzag(if blocks == 1 { 1 } else { -1 }, out);
                    if blocks == 2 {
                        wire::write_zigzag(one.len() as i64, out);
                    }
                    out.extend_from_slice(&one);
                }
            }
        }
        out.push(0);
    }

    fn write_v(out: &mut Vec<u8>, v: &V, b: u8) {
        match v {
            V::Null => out.push(0),
            V::Bool(x) => out.extend_from_slice(&[2, u8::from(*x)]),
            V::Long(n) => {
                out.push(4);
                wire::write_zigzag(*n, out);
            }
            V::Double(x) => {
                out.push(6);
                out.extend_from_slice(&x.to_le_bytes());
            }
            V::Text(t) => {
                out.push(8);
                write_string(out, t.as_bytes());
            }
            V::List(items) => {
                out.push(10);
                blocks(out, items, b, |out, v| write_v(out, v, b));
            }
            V::Map(entries) => {
                out.push(12);
                write_entries(out, entries, b);
            }
        }
    }

    fn write_entries(out: &mut Vec<u8>, entries: &[(String, V)], b: u8) {
        blocks(out, entries, b, |out, (k, v)| {
            write_string(out, k.as_bytes());
            write_v(out, v, b);
        });
    }

    /// A `SensorEvent` datum with these fields.
    fn datum(ids: [&str; 4], device: Option<&str>, micros: i64, attributes: Option<&[(String, V)]>, b: u8) -> Vec<u8> {
        let mut out = Vec::new();
        let [event_id, source, subject_id, category] = ids;
        write_string(&mut out, event_id.as_bytes());
        write_string(&mut out, source.as_bytes());
        match device {
            Some(d) => {
                out.push(2);
                write_string(&mut out, d.as_bytes());
            }
            None => out.push(0),
        }
        write_string(&mut out, subject_id.as_bytes());
        write_string(&mut out, category.as_bytes());
        wire::write_zigzag(micros, &mut out);
        match attributes {
            Some(entries) => {
                out.push(2);
                write_entries(&mut out, entries, b);
            }
            None => out.push(0),
        }
        out
    }

    /// Bounds what apache-avro allocates for one block's count (its default, 512 MiB
    /// per block, let a changed count fill the memory with nulls). Every test here that
    /// decodes with apache-avro calls it first, so it is in force whichever runs first.
    fn bounded() {
        assert_eq!(apache_avro::max_allocation_bytes(1 << 20), 1 << 20);
    }

    fn same_as_through_a_tree(bytes: &[u8]) -> Result<(), TestCaseError> {
        bounded();
        flat::gen::decodes_alike(bytes, to_json, through_a_tree)
    }

    proptest! {
        /// The direct decoder writes the JSON the tree did, or refuses with its reason,
        /// for any datum: repeated keys, NaN and infinities, blocks of every shape,
        /// empty required fields, times out of range.
        #[test]
        fn datums_decode_as_through_a_tree(
            ids in prop::array::uniform4(prop_oneof![Just(String::new()), "[a-z\"é-]{1,6}"]),
            device in prop::option::of("[a-z0-9\"-]{0,6}"),
            micros in prop_oneof![0i64..4_102_444_800_000_000, Just(i64::MIN), Just(i64::MAX), Just(-62_135_596_800_000_001)],
            attributes in prop::option::of(prop::collection::vec(("[ab\"é]{0,2}", v()), 0..6)),
            b in 0u8..3,
        ) {
            let ids = [ids[0].as_str(), ids[1].as_str(), ids[2].as_str(), ids[3].as_str()];
            same_as_through_a_tree(&datum(ids, device.as_deref(), micros, attributes.as_deref(), b))?;
        }

        /// A datum changed anywhere (bytes replaced, cut short or added) decodes as the
        /// tree decoded it, or is refused for the same reason.
        #[test]
        fn changed_datums_decode_as_through_a_tree(
            attributes in prop::collection::vec(("[ab]{0,2}", v()), 0..4),
            b in 0u8..3,
            changes in flat::gen::changes(),
        ) {
            let mut bytes = datum(["e", "s", "w", "c"], Some("d"), 1_772_446_051_000_000, Some(&attributes), b);
            changes.apply(&mut bytes);
            same_as_through_a_tree(&bytes)?;
        }

        /// The direct encoder writes a datum apache-avro reads as the one the tree
        /// made, for any output text (and fails where that failed, for the same
        /// reason), bare and length-delimited.
        #[test]
        fn outputs_encode_as_through_a_record(text in flat::gen::output_text(), delimited in any::<bool>()) {
            let (mut direct, mut reference) = (vec![7], vec![7]);
            let a = from_output_json(text.as_bytes(), delimited, &mut direct);
            let b = through_a_record(text.as_bytes(), delimited, &mut reference);
            bounded();
            prop_assert_eq!(a, b, "{}", text);
            if a.is_ok() {
                let read = |bytes: &[u8]| {
                    let mut r = &bytes[1..];
                    if delimited {
                        let mut len = 0usize;
                        let mut shift = 0;
                        loop {
                            let (&b, rest) = r.split_first().unwrap();
                            r = rest;
                            len |= usize::from(b & 0x7f) << shift;
                            shift += 7;
                            if b & 0x80 == 0 { break; }
                        }
                        assert_eq!(len, r.len(), "the length in front is the datum's");
                    }
                    let v = apache_avro::from_avro_datum(enforced_schema(), &mut r, None).unwrap();
                    assert!(r.is_empty());
                    v
                };
                prop_assert_eq!(read(&direct), read(&reference), "{}", text);
            }
        }
    }

    /// Nesting far beyond what the engine takes is refused, not followed down until the
    /// stack runs out (which aborted the gateway when apache-avro decoded it).
    #[test]
    fn a_datum_nested_beyond_the_stack_is_malformed() {
        let mut d = datum(["e", "s", "w", "c"], None, 0, Some(&[]), 0);
        d.truncate(d.len() - 1);
        d.extend_from_slice(&[2, 2, b'k']);
        for _ in 0..200_000 {
            d.extend_from_slice(&[10, 2]);
        }
        d.extend_from_slice(&[0; 200_001]);
        assert_eq!(to_json(&d, &mut Vec::new()), Err(Malformed::TooDeep));
        // Just deep enough to be read whole, and then refused by the engine's limit.
        let mut list = V::Null;
        for _ in 0..MAX_NESTING {
            list = V::List(vec![list]);
        }
        let ok = datum(["e", "s", "w", "c"], None, 0, Some(&[("k".into(), list)]), 0);
        let mut json = Vec::new();
        assert_eq!(to_json(&ok, &mut json), Ok(()));
        assert!(crate::event::nesting_exceeds(&json, crate::event::MAX_DEPTH));
    }

    #[test]
    fn an_output_encodes_to_an_enforced_event_and_back() {
        let out = br#"{"event_id":"e1","source":"tracker","subject_id":"k1:00ff","category":"location","occurred_at":"2026-03-02T10:05:00Z","attributes":{"zone":"dock","n":[1,2.5,null]},"accord":{"agreement":"a","version":4,"rule":"r","purpose":"safety","key_id":"k1"}}"#;
        let mut bytes = Vec::new();
        from_output_json(out, false, &mut bytes).unwrap();
        bounded();
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
