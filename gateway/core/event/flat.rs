//! A JSON value read once into a flat list of nodes, for the formats that are not JSON:
//! an engine output on its way to protobuf or Avro ([`super::proto`], [`super::avro`]),
//! and a protobuf or Avro input on its way to JSON (their readers fill the list).
//!
//! Reading builds no tree: the nodes go into a list reused from one value to the next
//! (per thread), and a string is a range of the bytes read, or of a scratch buffer for
//! one that had escapes. A JSON text is read by serde_json, so numbers, strings, errors
//! and the nesting limit are exactly those of a `serde_json::Value`.

use std::cell::RefCell;

use serde::de::{DeserializeSeed, Deserializer, Error, MapAccess, SeqAccess, Visitor};

/// One node. A container's items follow it, up to (not including) the node at `end`;
/// an object's items are its members' names and values in turn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Node {
    Null,
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    /// `len` bytes at `at` of the source, or of the scratch when `copied`.
    Str { at: usize, len: usize, copied: bool },
    Array { end: usize },
    Object { end: usize },
}

/// The nodes of one value, and the buffers reused for the next.
#[derive(Default)]
pub struct Flat {
    pub nodes: Vec<Node>,
    /// The bytes of the strings that could not be borrowed from the source.
    scratch: Vec<u8>,
    /// Members' indices, sorted per object while it is written (a stack: each object's
    /// run above its parent's).
    order: Vec<usize>,
}

thread_local! {
    static FLAT: RefCell<Flat> = RefCell::new(Flat::default());
}

/// Runs `f` with this thread's [`Flat`], emptied.
pub fn with<R>(f: impl FnOnce(&mut Flat) -> R) -> R {
    FLAT.with(|flat| {
        let mut flat = flat.borrow_mut();
        flat.nodes.clear();
        flat.scratch.clear();
        flat.order.clear();
        f(&mut flat)
    })
}

impl Flat {
    /// Reads one JSON value (and nothing after it but whitespace) from `json`.
    pub fn read_json(&mut self, json: &[u8]) -> Result<(), serde_json::Error> {
        let mut de = serde_json::Deserializer::from_slice(json);
        (&mut Builder { flat: self, base: json.as_ptr() as usize, len: json.len() }).deserialize(&mut de)?;
        de.end()
    }

    /// Appends a string node for `len` bytes at `at` of the source.
    pub fn push_str(&mut self, at: usize, len: usize) {
        self.nodes.push(Node::Str { at, len, copied: false });
    }

    /// Starts a container (`object` or array); [`Flat::close`] ends it.
    pub fn open(&mut self, object: bool) -> usize {
        self.nodes.push(if object { Node::Object { end: 0 } } else { Node::Array { end: 0 } });
        self.nodes.len() - 1
    }

    /// Ends the container begun at `at` after the nodes appended since (a container
    /// ended again takes in what was appended after: a merge).
    pub fn close(&mut self, at: usize) {
        let end = self.nodes.len();
        match &mut self.nodes[at] {
            Node::Object { end: e } | Node::Array { end: e } => *e = end,
            _ => unreachable!("only a container is closed"),
        }
    }

    /// The bytes of the string node `i` (empty for any other node).
    pub fn text<'a>(&'a self, source: &'a [u8], i: usize) -> &'a [u8] {
        match self.nodes[i] {
            Node::Str { at, len, copied: false } => &source[at..at + len],
            Node::Str { at, len, copied: true } => &self.scratch[at..at + len],
            _ => &[],
        }
    }

    /// The index just past node `i` and everything in it.
    pub fn after(&self, i: usize) -> usize {
        match self.nodes[i] {
            Node::Object { end } | Node::Array { end } => end,
            _ => i + 1,
        }
    }

    /// The items of the container `i` (for an object: its members' names).
    pub fn items(&self, i: usize) -> Items<'_> {
        let end = self.after(i);
        let object = matches!(self.nodes[i], Node::Object { .. });
        Items { flat: self, at: i + 1, end, object }
    }

    /// The members `names` of the object `i` (each the last of its name, as
    /// a `serde_json::Value` keeps it), found in one pass: the index of each one's value.
    pub fn members<const N: usize>(&self, source: &[u8], i: usize, names: [&str; N]) -> [Option<usize>; N] {
        let mut found = [None; N];
        if matches!(self.nodes.get(i), Some(Node::Object { .. })) {
            for k in self.items(i) {
                let name = self.text(source, k);
                if let Some(n) = names.iter().position(|m| m.as_bytes() == name) {
                    found[n] = Some(k + 1);
                }
            }
        }
        found
    }

    /// The text of the string node `i`, if it is one.
    pub fn string<'a>(&'a self, source: &'a [u8], i: Option<usize>) -> Option<&'a [u8]> {
        i.filter(|&i| matches!(self.nodes[i], Node::Str { .. })).map(|i| self.text(source, i))
    }

    /// The members of the object `i` by name (bytewise, as a `BTreeMap<String, _>`
    /// orders them), each name once with its last value, as a `serde_json::Value` keeps
    /// them: `f` is called with the index of each name, its value right after it.
    pub fn sorted_members<E>(&mut self, source: &[u8], i: usize, mut f: impl FnMut(&mut Flat, usize) -> Result<(), E>) -> Result<(), E> {
        let start = self.order.len();
        let mut k = i + 1;
        let end = self.after(i);
        while k < end {
            self.order.push(k);
            k = self.after(k + 1);
        }
        // Stable: of two equal names the later stays later, and is the one kept.
        let mut run = std::mem::take(&mut self.order);
        run[start..].sort_by(|&a, &b| self.text(source, a).cmp(self.text(source, b)));
        self.order = run;
        let mut n = start;
        while n < self.order.len() {
            let name = self.order[n];
            let duplicate = n + 1 < self.order.len() && self.text(source, self.order[n + 1]) == self.text(source, name);
            if !duplicate {
                f(self, name)?;
            }
            n += 1;
        }
        self.order.truncate(start);
        Ok(())
    }

    /// Writes the value `i` as JSON text, each object's members by name, each name once
    /// (its last value): what serde_json writes for the `serde_json::Value` of it. A
    /// number JSON cannot hold (NaN, an infinity) fails it.
    pub fn write_json(&mut self, source: &[u8], i: usize, out: &mut Vec<u8>) -> Result<(), NotFinite> {
        match self.nodes[i] {
            Node::Null => out.extend_from_slice(b"null"),
            Node::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
            Node::U64(n) => out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
            Node::I64(n) => out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
            Node::F64(x) if x.is_finite() => serde_json::to_writer(&mut *out, &x).expect("writing to a Vec cannot fail"),
            Node::F64(_) => return Err(NotFinite),
            Node::Str { .. } => write_text(out, self.text(source, i)),
            Node::Array { .. } => {
                out.push(b'[');
                let (mut k, end) = (i + 1, self.after(i));
                while k < end {
                    if k > i + 1 {
                        out.push(b',');
                    }
                    self.write_json(source, k, out)?;
                    k = self.after(k);
                }
                out.push(b']');
            }
            Node::Object { .. } => {
                out.push(b'{');
                let mut first = true;
                self.sorted_members(source, i, |flat, name| {
                    if !first {
                        out.push(b',');
                    }
                    first = false;
                    write_text(out, flat.text(source, name));
                    out.push(b':');
                    flat.write_json(source, name + 1, out)
                })?;
                out.push(b'}');
            }
        }
        Ok(())
    }
}

/// A number JSON cannot hold.
#[derive(Debug, PartialEq)]
pub struct NotFinite;

/// Ends a decoded event's JSON text after its attributes: its other members by name
/// (`device_id` only when given), and the closing brace.
pub fn write_event_fields(json: &mut Vec<u8>, category: &[u8], device_id: Option<&[u8]>, event_id: &[u8], occurred_at: &[u8], source: &[u8], subject_id: &[u8]) {
    json.extend_from_slice(b"\"category\":");
    write_text(json, category);
    if let Some(d) = device_id {
        json.extend_from_slice(b",\"device_id\":");
        write_text(json, d);
    }
    for (name, value) in [("event_id", event_id), ("occurred_at", occurred_at), ("source", source), ("subject_id", subject_id)] {
        json.extend_from_slice(b",\"");
        json.extend_from_slice(name.as_bytes());
        json.extend_from_slice(b"\":");
        write_text(json, value);
    }
    json.push(b'}');
}

/// A JSON string of valid UTF-8 `text`, escaped as serde_json escapes it.
pub fn write_text(out: &mut Vec<u8>, text: &[u8]) {
    if super::tape::is_plain(text) {
        out.push(b'"');
        out.extend_from_slice(text);
        out.push(b'"');
    } else {
        let text = std::str::from_utf8(text).expect("strings are read as UTF-8");
        serde_json::to_writer(out, text).expect("writing to a Vec cannot fail");
    }
}

/// The items of a container: its values, or an object's members' names.
pub struct Items<'a> {
    flat: &'a Flat,
    at: usize,
    end: usize,
    object: bool,
}

impl Iterator for Items<'_> {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        if self.at >= self.end {
            return None;
        }
        let item = self.at;
        self.at = if self.object { self.flat.after(item + 1) } else { self.flat.after(item) };
        Some(item)
    }
}

/// Builds the nodes as serde_json reads a value.
struct Builder<'f> {
    flat: &'f mut Flat,
    /// Where the source lies, to tell a borrowed string's place in it.
    base: usize,
    len: usize,
}

impl<'de> DeserializeSeed<'de> for &mut Builder<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for &mut Builder<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: Error>(self) -> Result<(), E> {
        self.flat.nodes.push(Node::Null);
        Ok(())
    }
    fn visit_bool<E: Error>(self, b: bool) -> Result<(), E> {
        self.flat.nodes.push(Node::Bool(b));
        Ok(())
    }
    fn visit_u64<E: Error>(self, n: u64) -> Result<(), E> {
        self.flat.nodes.push(Node::U64(n));
        Ok(())
    }
    fn visit_i64<E: Error>(self, n: i64) -> Result<(), E> {
        self.flat.nodes.push(Node::I64(n));
        Ok(())
    }
    fn visit_f64<E: Error>(self, x: f64) -> Result<(), E> {
        self.flat.nodes.push(Node::F64(x));
        Ok(())
    }
    fn visit_borrowed_str<E: Error>(self, s: &'de str) -> Result<(), E> {
        let at = (s.as_ptr() as usize).wrapping_sub(self.base);
        if at <= self.len && s.len() <= self.len - at {
            self.flat.push_str(at, s.len());
            Ok(())
        } else {
            self.visit_str(s)
        }
    }
    fn visit_str<E: Error>(self, s: &str) -> Result<(), E> {
        let at = self.flat.scratch.len();
        self.flat.scratch.extend_from_slice(s.as_bytes());
        self.flat.nodes.push(Node::Str { at, len: s.len(), copied: true });
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let at = self.flat.open(false);
        while seq.next_element_seed(&mut *self)?.is_some() {}
        self.flat.close(at);
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let at = self.flat.open(true);
        while map.next_key_seed(&mut *self)?.is_some() {
            map.next_value_seed(&mut *self)?;
        }
        self.flat.close(at);
        Ok(())
    }
}

/// Generated JSON texts and changed bytes, for the property tests of the formats.
#[cfg(test)]
pub mod gen {
    use proptest::prelude::*;
    use proptest::sample::Index;

    use crate::event::Malformed;

    /// Changes to make to an encoded event: bytes replaced, the rest cut off, bytes
    /// added.
    #[derive(Clone, Debug)]
    pub struct Changes {
        replace: Vec<(Index, u8)>,
        cut: Option<Index>,
        extra: Vec<u8>,
    }

    impl Changes {
        pub fn apply(&self, bytes: &mut Vec<u8>) {
            for (at, byte) in &self.replace {
                let i = at.index(bytes.len());
                bytes[i] = *byte;
            }
            if let Some(at) = &self.cut {
                bytes.truncate(at.index(bytes.len()));
            }
            bytes.extend_from_slice(&self.extra);
        }
    }

    pub fn changes() -> impl Strategy<Value = Changes> {
        (prop::collection::vec((any::<Index>(), any::<u8>()), 1..4), prop::option::of(any::<Index>()), prop::collection::vec(any::<u8>(), 0..3))
            .prop_map(|(replace, cut, extra)| Changes { replace, cut, extra })
    }

    type Decoder = fn(&[u8], &mut Vec<u8>) -> Result<(), Malformed>;

    /// `decode` reads `bytes` as `reference` does: into the same JSON, byte for byte,
    /// or refused for the same reason.
    pub fn decodes_alike(bytes: &[u8], decode: Decoder, reference: Decoder) -> Result<(), TestCaseError> {
        let (mut direct, mut expected) = (b"left over".to_vec(), Vec::new());
        let a = decode(bytes, &mut direct);
        prop_assert_eq!(a, reference(bytes, &mut expected));
        if a.is_ok() {
            prop_assert_eq!(String::from_utf8(direct).unwrap(), String::from_utf8(expected).unwrap());
        }
        Ok(())
    }

    /// Any JSON value as text: every kind of number (and one too large for a double),
    /// strings with escapes, nested arrays and objects whose names may repeat.
    pub fn json_text() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_string()),
            Just("true".to_string()),
            Just("false".to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_filter("finite", |x| x.is_finite()).prop_map(|x| format!("{x:e}")),
            Just("-0".to_string()),
            Just("1e400".to_string()),
            "(\\\\[\"\\\\/bnrt]|\\\\u00e9|[a-zé ])*".prop_map(|s| format!("\"{s}\"")),
        ];
        leaf.prop_recursive(4, 32, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(|v| format!("[{}]", v.join(","))),
                // Names may repeat, and may need escaping.
                prop::collection::vec(("[ab\\\\\"é]{0,3}", inner), 0..5)
                    .prop_map(|v| format!("{{{}}}", v.into_iter().map(|(k, v)| format!("\"{}\": {v}", k.replace('\\', "\\\\").replace('"', "\\\""))).collect::<Vec<_>>().join(", "))),
            ]
        })
    }


    /// An output's JSON text, as the engine writes it or not: each known member
    /// present or not, of its type or another, repeated or not, among others.
    pub fn output_text() -> impl Strategy<Value = String> {
        let string = prop_oneof![Just("\"\"".to_string()), "[a-z0-9:é\"\\\\]{1,8}".prop_map(|s| serde_json::to_string(&s).unwrap()), Just("7".to_string()), Just("null".to_string())];
        let time = prop_oneof![
            Just("\"2026-03-02T10:05:00Z\"".to_string()),
            Just("\"1970-01-01T00:00:00Z\"".to_string()),
            Just("\"1969-12-31T23:59:59.999999999-01:30\"".to_string()),
            Just("\"0001-01-01T00:00:00.5+14:00\"".to_string()),
            Just("\"2026-03-02 10:05\"".to_string()),
            Just("3".to_string()),
        ];
        let version = prop_oneof![any::<u64>().prop_map(|n| n.to_string()), Just("4294967296".to_string()), Just("-1".to_string()), Just("2.0".to_string()), Just("\"3\"".to_string())];
        let stamp = prop_oneof![
            (string.clone(), version, string.clone(), string.clone(), string.clone()).prop_map(|(a, v, r, p, k)| format!(r#"{{"agreement":{a},"version":{v},"rule":{r},"purpose":{p},"key_id":{k}}}"#)),
            Just("{}".to_string()),
            Just("[1]".to_string()),
        ];
        let member = prop_oneof![
            string.clone().prop_map(|v| format!(r#""event_id":{v}"#)),
            string.clone().prop_map(|v| format!(r#""source":{v}"#)),
            string.clone().prop_map(|v| format!(r#""device_id":{v}"#)),
            string.clone().prop_map(|v| format!(r#""subject_id":{v}"#)),
            string.prop_map(|v| format!(r#""category":{v}"#)),
            time.prop_map(|v| format!(r#""occurred_at":{v}"#)),
            json_text().prop_map(|v| format!(r#""attributes":{v}"#)),
            stamp.prop_map(|v| format!(r#""accord":{v}"#)),
            json_text().prop_map(|v| format!(r#""other":{v}"#)),
        ];
        prop_oneof![
            9 => prop::collection::vec(member, 0..12).prop_map(|m| format!("{{{}}}", m.join(","))),
            1 => json_text(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use gen::json_text;

    proptest! {
        /// Read and written again, any JSON text is what serde_json makes of it through
        /// a `Value`, byte for byte; it fails where that fails.
        #[test]
        fn written_again_as_serde_json_writes_its_value(text in json_text()) {
            let via_value = serde_json::from_str::<serde_json::Value>(&text).map(|v| serde_json::to_vec(&v).unwrap());
            let flat = with(|flat| flat.read_json(text.as_bytes()).map(|()| {
                let mut out = Vec::new();
                flat.write_json(text.as_bytes(), 0, &mut out).unwrap();
                out
            }));
            match (via_value, flat) {
                (Ok(a), Ok(b)) => prop_assert_eq!(String::from_utf8(a).unwrap(), String::from_utf8(b).unwrap()),
                (Err(_), Err(_)) => {}
                (a, b) => prop_assert!(false, "{text}: {a:?} against {b:?}"),
            }
        }
    }

    #[test]
    fn members_are_found_by_name_the_last_one_counting() {
        let text = br#"{"a": 1, "b": {"c": [true, null]}, "a": "x"}"#;
        with(|flat| {
            flat.read_json(text).unwrap();
            let [a, b, z] = flat.members(text, 0, ["a", "b", "z"]);
            assert_eq!(flat.string(text, a), Some(&b"x"[..]));
            assert_eq!(z, None);
            let [c] = flat.members(text, b.unwrap(), ["c"]);
            assert_eq!(flat.items(c.unwrap()).map(|i| flat.nodes[i]).collect::<Vec<_>>(), [Node::Bool(true), Node::Null]);
            assert_eq!(flat.members(text, c.unwrap(), ["a"]), [None], "an array has no members");
            assert_eq!(flat.string(text, b), None, "an object is no string");
        });
    }
}
