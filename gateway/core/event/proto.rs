//! Protobuf events (`schemas/accord/v1/event.proto`), mapped to and from their proto3
//! JSON form so that one engine path serves both formats.
//!
//! Protobuf input is read from the wire as prost reads it, checked for its required
//! fields, and written as the JSON event it maps to; an output is encoded from the JSON
//! the engine wrote. Both go through a [`flat`] list of nodes, with no message and no
//! tree: a conversion per event that costs about as much as the enforcement itself.
//! prost's generated messages ([`pb`]) remain for tests, examples and readers.

use prost_types::value::Kind;
use serde_json::{Map, Value};

use super::flat::{self, Flat, Node};
use super::{wire, Malformed};

/// The messages generated from `schemas/` at build time.
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/accord.v1.rs"));
}

pub use pb::{AccordStamp, EnforcedEvent, SensorEvent};

/// Decodes a `SensorEvent` and writes its proto3 JSON mapping into `json` (cleared),
/// read from the wire in one pass into a [`flat`] list: no message and no tree between
/// the two. What prost accepts is accepted, and read as prost reads it (a field given
/// twice: its last value, or for a message both merged; a struct's key given twice: its
/// last value; fields it does not know skipped, groups too; nesting up to prost's limit
/// of 100 messages); what prost refuses is refused.
pub fn to_json(bytes: &[u8], json: &mut Vec<u8>) -> Result<(), Malformed> {
    flat::with(|doc| {
        let ev = Wire { bytes, at: 0 }.sensor_event(doc).map_err(|NotAMessage| Malformed::NotProtobuf)?;
        let text = |(at, len): (usize, usize)| &bytes[at..at + len];
        for (value, name) in [(ev.event_id, "event_id"), (ev.source, "source"), (ev.subject_id, "subject_id"), (ev.category, "category")] {
            if value.1 == 0 {
                return Err(Malformed::Missing(name));
            }
        }
        let (seconds, nanos) = ev.occurred_at.ok_or(Malformed::Missing("occurred_at"))?;
        let occurred_at = timestamp_text(&prost_types::Timestamp { seconds, nanos }).ok_or(Malformed::BadTime)?;
        json.clear();
        // The members in the order a JSON object of them is written (by name).
        json.push(b'{');
        if !doc.nodes.is_empty() {
            json.extend_from_slice(b"\"attributes\":");
            doc.write_json(bytes, 0, json).map_err(|flat::NotFinite| Malformed::NotProtobuf)?;
            json.push(b',');
        }
        flat::write_event_fields(json, text(ev.category), ev.device_id.map(text), text(ev.event_id), occurred_at.as_bytes(), text(ev.source), text(ev.subject_id));
        Ok(())
    })
}

/// A `SensorEvent`'s fields as read: each string as where it lies in the input. Its
/// attributes are the flat list's first node, when given.
#[derive(Default)]
struct Sensor {
    event_id: (usize, usize),
    source: (usize, usize),
    device_id: Option<(usize, usize)>,
    subject_id: (usize, usize),
    category: (usize, usize),
    occurred_at: Option<(i64, i32)>,
}

/// Input prost would refuse.
struct NotAMessage;

/// How deeply messages may nest below the outermost: prost's limit.
const RECURSION_LIMIT: u32 = 100;

/// The protobuf wire format, read as prost reads it. Each read stays within `end`, the
/// end of the message being read: a field that would cross it is refused, as prost
/// refuses it. `depth` is how many more messages may nest (prost's recursion count:
/// [`RECURSION_LIMIT`] in the event, one less in each message within).
struct Wire<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Wire<'_> {
    fn sensor_event(mut self, doc: &mut Flat) -> Result<Sensor, NotAMessage> {
        let (end, depth) = (self.bytes.len(), RECURSION_LIMIT);
        let mut ev = Sensor::default();
        while self.at < end {
            let (field, wire) = self.key(end)?;
            match field {
                1 => ev.event_id = self.string(wire, end)?,
                2 => ev.source = self.string(wire, end)?,
                3 => ev.device_id = Some(self.string(wire, end)?),
                4 => ev.subject_id = self.string(wire, end)?,
                5 => ev.category = self.string(wire, end)?,
                6 => {
                    let inner = self.message(wire, end, depth)?;
                    let at = ev.occurred_at.get_or_insert((0, 0));
                    while self.at < inner {
                        match self.key(inner)? {
                            (1, VARINT) => at.0 = self.varint(inner)? as i64,
                            (2, VARINT) => at.1 = self.varint(inner)? as i32,
                            (1 | 2, _) => return Err(NotAMessage),
                            (field, wire) => self.skip(field, wire, inner, depth - 1)?,
                        }
                    }
                }
                7 => {
                    let inner = self.message(wire, end, depth)?;
                    // Given again, a struct is merged into the one before.
                    if doc.nodes.is_empty() {
                        doc.open(true);
                    }
                    self.struct_fields(doc, inner, depth - 1)?;
                    doc.close(0);
                }
                _ => self.skip(field, wire, end, depth)?,
            }
        }
        Ok(ev)
    }

    /// A `google.protobuf.Struct`'s fields, as the members of the object being read.
    fn struct_fields(&mut self, doc: &mut Flat, end: usize, depth: u32) -> Result<(), NotAMessage> {
        while self.at < end {
            match self.key(end)? {
                // A map entry, a message of its own.
                (1, wire) => {
                    let inner = self.message(wire, end, depth)?;
                    self.entry(doc, inner, depth - 1)?;
                }
                (field, wire) => self.skip(field, wire, end, depth)?,
            }
        }
        Ok(())
    }

    /// A map entry: its key (empty if not given), then its value (null if not given).
    fn entry(&mut self, doc: &mut Flat, end: usize, depth: u32) -> Result<(), NotAMessage> {
        let key = doc.nodes.len();
        doc.push_str(0, 0);
        while self.at < end {
            match self.key(end)? {
                (1, wire) => {
                    let (at, len) = self.string(wire, end)?;
                    doc.nodes[key] = Node::Str { at, len, copied: false };
                }
                (2, wire) => {
                    let inner = self.message(wire, end, depth)?;
                    self.value_fields(doc, inner, depth - 1, key + 1)?;
                }
                (field, wire) => self.skip(field, wire, end, depth)?,
            }
        }
        if doc.nodes.len() == key + 1 {
            doc.nodes.push(Node::Null);
        }
        Ok(())
    }

    /// A `google.protobuf.Value`'s fields, into the value at `start` (the last node or
    /// nodes: given again, a value is merged into the one before). Of its oneof, the
    /// last field given counts; a struct or a list given after one of its kind is
    /// merged into it.
    fn value_fields(&mut self, doc: &mut Flat, end: usize, depth: u32, start: usize) -> Result<(), NotAMessage> {
        while self.at < end {
            let (field, wire) = self.key(end)?;
            let node = match (field, wire) {
                (1, VARINT) => {
                    self.varint(end)?;
                    Node::Null
                }
                (2, FIXED64) => {
                    let raw = self.bytes.get(self.at..self.at + 8).filter(|_| self.at + 8 <= end).ok_or(NotAMessage)?;
                    self.at += 8;
                    number(f64::from_le_bytes(raw.try_into().expect("eight bytes")))
                }
                (3, wire) => {
                    let (at, len) = self.string(wire, end)?;
                    Node::Str { at, len, copied: false }
                }
                (4, VARINT) => Node::Bool(self.varint(end)? != 0),
                (5 | 6, wire) => {
                    let inner = self.message(wire, end, depth)?;
                    let object = field == 5;
                    let same = matches!((doc.nodes.get(start), object), (Some(Node::Object { .. }), true) | (Some(Node::Array { .. }), false));
                    if !same {
                        doc.nodes.truncate(start);
                        doc.open(object);
                    }
                    if object {
                        self.struct_fields(doc, inner, depth - 1)?;
                    } else {
                        self.list_values(doc, inner, depth - 1)?;
                    }
                    doc.close(start);
                    continue;
                }
                (1..=4, _) => return Err(NotAMessage),
                (field, wire) => {
                    self.skip(field, wire, end, depth)?;
                    continue;
                }
            };
            doc.nodes.truncate(start);
            doc.nodes.push(node);
        }
        Ok(())
    }

    /// A `google.protobuf.ListValue`'s values, as the items of the array being read.
    fn list_values(&mut self, doc: &mut Flat, end: usize, depth: u32) -> Result<(), NotAMessage> {
        while self.at < end {
            match self.key(end)? {
                (1, wire) => {
                    let inner = self.message(wire, end, depth)?;
                    let start = doc.nodes.len();
                    self.value_fields(doc, inner, depth - 1, start)?;
                    if doc.nodes.len() == start {
                        doc.nodes.push(Node::Null);
                    }
                }
                (field, wire) => self.skip(field, wire, end, depth)?,
            }
        }
        Ok(())
    }

    /// A varint: at most ten bytes, the tenth 0 or 1.
    fn varint(&mut self, end: usize) -> Result<u64, NotAMessage> {
        let mut n = 0u64;
        for i in 0..10 {
            let &b = self.bytes[..end].get(self.at).ok_or(NotAMessage)?;
            self.at += 1;
            if i == 9 && b >= 2 {
                return Err(NotAMessage);
            }
            n |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(n);
            }
        }
        Err(NotAMessage)
    }

    /// A field's key: its number (from 1) and wire type (0 to 5).
    fn key(&mut self, end: usize) -> Result<(u32, u8), NotAMessage> {
        let key = u32::try_from(self.varint(end)?).map_err(|_| NotAMessage)?;
        let (field, wire) = (key >> 3, (key & 7) as u8);
        if field == 0 || wire > 5 {
            return Err(NotAMessage);
        }
        Ok((field, wire))
    }

    /// A length-delimited run: its end.
    fn delimited(&mut self, end: usize) -> Result<usize, NotAMessage> {
        let len = self.varint(end)?;
        let inner = usize::try_from(len).ok().and_then(|len| self.at.checked_add(len)).filter(|&e| e <= end).ok_or(NotAMessage)?;
        Ok(inner)
    }

    /// A nested message's run: its end. Refused past prost's nesting limit.
    fn message(&mut self, wire: u8, end: usize, depth: u32) -> Result<usize, NotAMessage> {
        if wire != LEN || depth == 0 {
            return Err(NotAMessage);
        }
        self.delimited(end)
    }

    /// A string: where its UTF-8 bytes lie.
    fn string(&mut self, wire: u8, end: usize) -> Result<(usize, usize), NotAMessage> {
        if wire != LEN {
            return Err(NotAMessage);
        }
        let inner = self.delimited(end)?;
        let at = self.at;
        simdutf8::basic::from_utf8(&self.bytes[at..inner]).map_err(|_| NotAMessage)?;
        self.at = inner;
        Ok((at, inner - at))
    }

    /// A field the message does not have, passed over (a group with everything in
    /// it, up to its end with the same number).
    fn skip(&mut self, field: u32, wire: u8, end: usize, depth: u32) -> Result<(), NotAMessage> {
        if depth == 0 {
            return Err(NotAMessage);
        }
        let len = match wire {
            VARINT => {
                self.varint(end)?;
                0
            }
            FIXED64 => 8,
            FIXED32 => 4,
            LEN => self.varint(end)?,
            START_GROUP => loop {
                match self.key(end)? {
                    (inner, END_GROUP) if inner == field => break 0,
                    (_, END_GROUP) => return Err(NotAMessage),
                    (inner, wire) => self.skip(inner, wire, end, depth - 1)?,
                }
            },
            _ => return Err(NotAMessage),
        };
        self.at = usize::try_from(len).ok().and_then(|len| self.at.checked_add(len)).filter(|&e| e <= end).ok_or(NotAMessage)?;
        Ok(())
    }
}

/// A `Value`'s number as proto3 JSON writes it: an integral one within 2^53 without a
/// fraction, one JSON cannot hold (NaN, infinities) as null.
fn number(x: f64) -> Node {
    if x.fract() == 0.0 && x.abs() < 9.007_199_254_740_992e15 {
        Node::I64(x as i64)
    } else if x.is_finite() {
        Node::F64(x)
    } else {
        Node::Null
    }
}

/// Encodes an output the engine wrote as JSON into an `EnforcedEvent` (appended to
/// `out`, length-delimited when `delimited`): the bytes prost writes for the message
/// (fields in order, empty ones left out, a struct's members by name), written straight
/// from the JSON read once ([`flat`]), with no tree and no message between the two.
pub fn from_output_json(json: &[u8], delimited: bool, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    flat::with(|doc| {
        doc.read_json(json)?;
        let whole = delimited.then(|| wire::open_len(out));
        write_enforced(doc, json, out);
        if let Some(at) = whole {
            wire::close_len(out, at);
        }
        Ok(())
    })
}

/// A field's key: its number and wire type.
const fn key(field: u8, wire_type: u8) -> u8 {
    field << 3 | wire_type
}
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const FIXED32: u8 = 5;

fn write_enforced(doc: &mut Flat, json: &[u8], out: &mut Vec<u8>) {
    let [event_id, source, device_id, subject_id, category, occurred_at, attributes, stamp] =
        doc.members(json, 0, ["event_id", "source", "device_id", "subject_id", "category", "occurred_at", "attributes", "accord"]);
    for (field, value, optional) in [(1, event_id, false), (2, source, false), (3, device_id, true), (4, subject_id, true), (5, category, false)] {
        if let Some(t) = doc.string(json, value) {
            write_bytes(out, field, t, optional);
        }
    }
    let at = doc.string(json, occurred_at).and_then(|t| chrono::DateTime::parse_from_rfc3339(std::str::from_utf8(t).ok()?).ok());
    if let Some(at) = at {
        out.push(key(6, LEN));
        let len = wire::open_len(out);
        if at.timestamp() != 0 {
            out.push(key(1, VARINT));
            wire::write_varint(at.timestamp() as u64, out);
        }
        if at.timestamp_subsec_nanos() != 0 {
            out.push(key(2, VARINT));
            wire::write_varint(u64::from(at.timestamp_subsec_nanos()), out);
        }
        wire::close_len(out, len);
    }
    if let Some(attributes) = attributes.filter(|&i| matches!(doc.nodes[i], Node::Object { .. })) {
        out.push(key(7, LEN));
        let len = wire::open_len(out);
        encode_struct(doc, json, attributes, out);
        wire::close_len(out, len);
    }
    if let Some(stamp) = stamp {
        out.push(key(8, LEN));
        let len = wire::open_len(out);
        let [agreement, version, rule, purpose, key_id] = doc.members(json, stamp, ["agreement", "version", "rule", "purpose", "key_id"]);
        if let Some(t) = doc.string(json, agreement) {
            write_bytes(out, 1, t, false);
        }
        // uint32: a version that is not a non-negative integer is 0; a larger one
        // wraps, as `as u32` does.
        if let Some(Node::U64(v)) = version.map(|i| doc.nodes[i]) {
            if v as u32 != 0 {
                out.push(key(2, VARINT));
                wire::write_varint(u64::from(v as u32), out);
            }
        }
        for (field, value) in [(3, rule), (4, purpose), (5, key_id)] {
            if let Some(t) = doc.string(json, value) {
                write_bytes(out, field, t, false);
            }
        }
        wire::close_len(out, len);
    }
}

/// A string or bytes field (left out when empty, unless it is `optional`).
fn write_bytes(out: &mut Vec<u8>, field: u8, bytes: &[u8], optional: bool) {
    if bytes.is_empty() && !optional {
        return;
    }
    out.push(key(field, LEN));
    wire::write_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// A `google.protobuf.Struct`'s fields: one map entry per member, by name.
fn encode_struct(doc: &mut Flat, json: &[u8], object: usize, out: &mut Vec<u8>) {
    let _ = doc.sorted_members::<()>(json, object, |doc, name| {
        out.push(key(1, LEN));
        let entry = wire::open_len(out);
        // The map entry's key (left out when empty, as prost does), then its value.
        write_bytes(out, 1, doc.text(json, name), false);
        out.push(key(2, LEN));
        let value = wire::open_len(out);
        encode_value(doc, json, name + 1, out);
        wire::close_len(out, value);
        wire::close_len(out, entry);
        Ok(())
    });
}

/// A `google.protobuf.Value`'s one field (a oneof: written even when zero).
fn encode_value(doc: &mut Flat, json: &[u8], i: usize, out: &mut Vec<u8>) {
    let number = |out: &mut Vec<u8>, x: f64| {
        out.push(key(2, FIXED64));
        out.extend_from_slice(&x.to_le_bytes());
    };
    match doc.nodes[i] {
        Node::Null => out.extend_from_slice(&[key(1, VARINT), 0]),
        Node::Bool(b) => out.extend_from_slice(&[key(4, VARINT), u8::from(b)]),
        Node::U64(n) => number(out, n as f64),
        Node::I64(n) => number(out, n as f64),
        Node::F64(x) => number(out, x),
        Node::Str { .. } => write_bytes(out, 3, doc.text(json, i), true),
        Node::Object { .. } => {
            out.push(key(5, LEN));
            let len = wire::open_len(out);
            encode_struct(doc, json, i, out);
            wire::close_len(out, len);
        }
        Node::Array { .. } => {
            out.push(key(6, LEN));
            let len = wire::open_len(out);
            let mut item = i + 1;
            while item < doc.after(i) {
                out.push(key(1, LEN));
                let value = wire::open_len(out);
                encode_value(doc, json, item, out);
                wire::close_len(out, value);
                item = doc.after(item);
            }
            wire::close_len(out, len);
        }
    }
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

    use prost::Message as _;

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

    /// Decoding with prost, then writing JSON from the message: the reference the
    /// direct decoder is held to, byte for byte.
    fn through_prost(bytes: &[u8], json: &mut Vec<u8>) -> Result<(), Malformed> {
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


    /// The encoding as it was first written, through a JSON tree and a prost message:
    /// the reference the direct encoder is held to, byte for byte.
fn through_a_message(json: &[u8], delimited: bool, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
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

    proptest! {
        /// The direct encoder writes the bytes the prost message did, for any output
        /// text (and fails where that failed), bare and length-delimited.
        #[test]
        fn outputs_encode_as_through_a_message(text in flat::gen::output_text(), delimited in any::<bool>()) {
            let (mut direct, mut reference) = (vec![9], vec![9]);
            let a = from_output_json(text.as_bytes(), delimited, &mut direct).is_ok();
            let b = through_a_message(text.as_bytes(), delimited, &mut reference).is_ok();
            prop_assert_eq!(a, b, "{}", text);
            if a {
                prop_assert_eq!(direct, reference, "{}", text);
            }
        }
    }

    /// A field of the wire format: its key, then `payload` as it is (a varint, fixed
    /// bytes), or with its length in front (`wire` 2).
    fn field(number: u32, wire: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        wire::write_varint(u64::from(number << 3 | u32::from(wire)), &mut out);
        if wire == LEN {
            wire::write_varint(payload.len() as u64, &mut out);
        }
        out.extend_from_slice(payload);
        out
    }

    fn varint(n: u64) -> Vec<u8> {
        let mut out = Vec::new();
        wire::write_varint(n, &mut out);
        out
    }

    /// A field no message here has: of any wire type, a group with a field in it.
    fn unknown() -> impl Strategy<Value = Vec<u8>> {
        (9u32..12, 0u8..4, any::<u64>()).prop_map(|(n, kind, x)| match kind {
            0 => field(n, VARINT, &varint(x)),
            1 => field(n, FIXED64, &x.to_le_bytes()),
            2 => field(n, FIXED32, &x.to_le_bytes()[..4]),
            _ => [field(n, START_GROUP, &[]), field(1, VARINT, &varint(x)), field(n, END_GROUP, &[])].concat(),
        })
    }

    /// The body of a `google.protobuf.Value`: any of its fields, none, or several (the
    /// last counts; structs and lists given twice merge), and fields it does not have.
    fn value_body() -> impl Strategy<Value = Vec<u8>> {
        let text = "[a-zé\"\\\\\u{0}-\u{1f}😀]{0,5}";
        let scalar = prop_oneof![
            (0u64..3).prop_map(|n| field(1, VARINT, &varint(n))),
            prop_oneof![any::<f64>(), Just(-0.0), Just(3.0), Just(9.007_199_254_740_992e15), Just(f64::NAN), Just(f64::NEG_INFINITY)].prop_map(|x| field(2, FIXED64, &x.to_le_bytes())),
            text.prop_map(|s| field(3, LEN, s.as_bytes())),
            (0u64..3).prop_map(|n| field(4, VARINT, &varint(n))),
            unknown(),
        ];
        let leaf = prop::collection::vec(scalar, 0..3).prop_map(|f| f.concat());
        leaf.prop_recursive(4, 24, 4, move |inner| {
            let entry = prop_oneof![
                "[ab\"é]{0,2}".prop_map(|k| field(1, LEN, k.as_bytes())),
                inner.clone().prop_map(|v| field(2, LEN, &v)),
                unknown(),
            ];
            // A map entry; its key, value or both may be missing, or given twice; now
            // and then its field has the wrong wire type.
            let entries = prop::collection::vec((prop::collection::vec(entry, 0..4), prop_oneof![5 => Just(LEN), 1 => 0u8..6]), 0..4)
                .prop_map(|es| es.into_iter().map(|(e, wire)| [varint(u64::from(8 | u32::from(wire))), varint(e.concat().len() as u64), e.concat()].concat()).collect::<Vec<_>>().concat());
            let list = prop::collection::vec(prop_oneof![3 => inner.clone().prop_map(|v| field(1, LEN, &v)), 1 => unknown()], 0..4).prop_map(|f| f.concat());
            prop::collection::vec(prop_oneof![entries.prop_map(|s| field(5, LEN, &s)), list.prop_map(|l| field(6, LEN, &l)), inner], 1..3).prop_map(|f| f.concat())
        })
    }

    /// A `SensorEvent` on the wire, field by field in any order: fields given twice,
    /// attributes given twice (merged), timestamps in parts, unknown fields.
    fn sensor_event_wire() -> impl Strategy<Value = Vec<u8>> {
        let member = prop_oneof![
            (1u32..6, "[a-z\"é]{0,4}").prop_map(|(n, s)| field(n, LEN, s.as_bytes())),
            prop::collection::vec(prop_oneof![
                any::<i64>().prop_map(|s| field(1, VARINT, &varint(s as u64))),
                (1_700_000_000u64..1_800_000_000).prop_map(|s| field(1, VARINT, &varint(s))),
                (0u64..1_100_000_000).prop_map(|n| field(2, VARINT, &varint(n))),
                unknown(),
            ], 0..3).prop_map(|f| field(6, LEN, &f.concat())),
            // A value's body as the attributes: its struct field (5) is a field a
            // Struct does not have; so the attributes are a struct's body taken from
            // inside it now and then.
            value_body().prop_map(|v| field(7, LEN, &v)),
            value_body().prop_filter_map("a struct", |v| (v.first() == Some(&(5 << 3 | LEN))).then(|| {
                let mut body = &v[1..];
                let len = body.iter().position(|b| b & 0x80 == 0).unwrap() + 1;
                let n = body[..len].iter().rev().fold(0usize, |n, b| n << 7 | usize::from(b & 0x7f));
                body = &body[len..len + n];
                field(7, LEN, body)
            })),
            unknown(),
        ];
        let required = ["e", "s", "w", "c"].into_iter().zip([1u32, 2, 4, 5]).map(|(t, n)| field(n, LEN, t.as_bytes())).collect::<Vec<_>>().concat();
        let time = field(6, LEN, &field(1, VARINT, &varint(1_772_446_051)));
        prop::collection::vec(member, 0..8).prop_map(move |m| [required.clone(), time.clone(), m.concat()].concat())
    }

    fn same_as_through_prost(bytes: &[u8]) -> Result<(), TestCaseError> {
        flat::gen::decodes_alike(bytes, to_json, through_prost)
    }

    proptest! {
        /// The direct decoder reads any message as prost reads it: the same JSON, or
        /// refused for the same reason.
        #[test]
        fn messages_decode_as_through_prost(bytes in sensor_event_wire()) {
            same_as_through_prost(&bytes)?;
        }

        /// So does any message changed anywhere: bytes replaced, cut short or added.
        #[test]
        fn changed_messages_decode_as_through_prost(
            bytes in sensor_event_wire(),
            changes in flat::gen::changes(),
        ) {
            let mut bytes = bytes;
            changes.apply(&mut bytes);
            same_as_through_prost(&bytes)?;
        }
    }

    /// Nesting is refused exactly where prost refuses it (100 messages below the
    /// event), for lists, structs and groups.
    #[test]
    fn nesting_is_refused_where_prost_refuses_it() {
        let event = |attributes: Vec<u8>| [field(1, LEN, b"e"), field(2, LEN, b"s"), field(4, LEN, b"w"), field(5, LEN, b"c"), field(6, LEN, &field(1, VARINT, &varint(1))), field(7, LEN, &attributes)].concat();
        // Each kind crosses the limit within the levels tried: a list level is two
        // messages, a struct level three, a group one.
        let mut outcomes = [std::collections::BTreeSet::new(), std::collections::BTreeSet::new(), std::collections::BTreeSet::new()];
        for (levels, extra) in (40..56).flat_map(|levels| (0..3).map(move |extra| (levels, extra))) {
            // Innermost, a value of no, one or two messages more: every count of
            // messages is met.
            let innermost = match extra {
                0 => field(1, VARINT, &varint(0)),
                1 => field(5, LEN, &[]),
                _ => field(6, LEN, &field(1, LEN, &[])),
            };
            // attributes {"k": [[[...]]]}: a list in a value in a list ...
            let mut value = innermost.clone();
            for _ in 0..levels {
                value = field(6, LEN, &field(1, LEN, &value));
            }
            let lists = event(field(1, LEN, &[field(1, LEN, b"k"), field(2, LEN, &value)].concat()));
            // attributes {"k": {"k": {...}}}
            let mut value = innermost;
            for _ in 0..levels - 16 {
                value = field(5, LEN, &field(1, LEN, &[field(1, LEN, b"k"), field(2, LEN, &value)].concat()));
            }
            let structs = event(field(1, LEN, &[field(1, LEN, b"k"), field(2, LEN, &value)].concat()));
            // a group in a group in ..., in a field the event does not have
            let mut group = Vec::new();
            for _ in 0..levels * 2 {
                group = [field(9, START_GROUP, &[]), group, field(9, END_GROUP, &[])].concat();
            }
            let groups = [event(Vec::new()), group].concat();
            for (kind, bytes) in [lists, structs, groups].into_iter().enumerate() {
                same_as_through_prost(&bytes).unwrap();
                outcomes[kind].insert(to_json(&bytes, &mut Vec::new()).is_ok());
            }
        }
        assert!(outcomes.iter().all(|o| o.len() == 2), "each kind is read below the limit and refused beyond it");
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
