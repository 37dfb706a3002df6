//! An event's `attributes`, read once into a flat list of nodes.
//!
//! Steps 7 and 8 walk the attributes once per purpose and once per nesting level;
//! reading the raw JSON text again each time cost more than all the rest of the
//! engine. [`Tape::read`] reads it once per event, checks SPEC 2.5's rules on member
//! names on the way, and records for every value its text and where its members or
//! elements are, so each walk after it only follows indices. The tape owns no text:
//! its ranges point into the attributes' JSON, and it is reused from event to event.
//!
//! The text must be valid JSON (decoding checked it), nested no deeper than
//! [`super::MAX_DEPTH`] (decoding refused deeper), so the reader needs no error path of
//! its own beyond the names.

use std::borrow::Cow;

use super::{Malformed, MAX_DEPTH};

/// One value: a member of an object (with its name) or an element of an array.
#[derive(Clone, Copy, Debug)]
struct Node {
    /// The member's name: inside the quotes in the text, or, if it had escapes, in
    /// [`Tape::unescaped`]. Empty for an element.
    name: (u32, u32),
    name_unescaped: bool,
    /// The hash the reader gave the name (its normal form's; 0 for an element).
    hash: u64,
    /// The value's JSON text.
    value: (u32, u32),
    /// The index of the node after this value and everything inside it.
    next: u32,
}

/// The attributes of one event, as nodes; node 0 is the attributes object itself.
#[derive(Debug, Default)]
pub struct Tape {
    nodes: Vec<Node>,
    /// Names that had escapes, unescaped.
    unescaped: String,
    /// Per open object, the hashes of its members' names so far.
    hashes: Vec<u64>,
    scratch: Vec<u64>,
}

/// A value on a [`Tape`].
#[derive(Clone, Copy, Debug)]
pub struct Value<'t> {
    tape: &'t Tape,
    text: &'t str,
    index: u32,
}

impl Tape {
    /// Reads `json`, one JSON value nested at most [`MAX_DEPTH`] deep. `hash` gives
    /// each member name's normal-form hash or refuses the name; two members of one
    /// object with the same hash make it `DuplicateName`. Text that is not JSON is
    /// `NotJson`, deeper nesting `TooDeep`.
    pub fn read(&mut self, json: &str, mut hash: impl FnMut(&str) -> Result<u64, Malformed>) -> Result<(), Malformed> {
        let end = self.read_at(json, 0, &mut hash)?;
        if skip_space(json.as_bytes(), end) != json.len() {
            return Err(Malformed::NotJson);
        }
        Ok(())
    }

    /// Reads the JSON value that starts at `at` in `text`, as [`Tape::read`] does;
    /// returns where it ends. The tape's positions count from `at`: walk it over
    /// `&text[at..]`.
    pub(crate) fn read_at(&mut self, text: &str, at: usize, hash: &mut impl FnMut(&str) -> Result<u64, Malformed>) -> Result<usize, Malformed> {
        self.nodes.clear();
        self.unescaped.clear();
        self.hashes.clear();
        let mut reader = Reader { s: text, b: text.as_bytes(), at, base: at, tape: self };
        reader.value::<true>((0, 0), false, 0, MAX_DEPTH, hash)?;
        Ok(reader.at)
    }

    /// The value read last, over the text it was read from.
    pub fn root<'t>(&'t self, text: &'t str) -> Value<'t> {
        debug_assert!(!self.nodes.is_empty(), "a tape is read before it is walked");
        Value { tape: self, text, index: 0 }
    }
}

impl<'t> Value<'t> {
    #[inline]
    fn node(&self) -> &'t Node {
        &self.tape.nodes[self.index as usize]
    }

    /// The value's JSON text, as written.
    #[inline]
    pub fn raw(&self) -> &'t str {
        let (a, b) = self.node().value;
        &self.text[a as usize..b as usize]
    }

    /// The first byte of its text: `{`, `[`, `"`, or that of a number or literal.
    #[inline]
    pub fn first(&self) -> u8 {
        // 0 for an empty value, which valid JSON never has.
        self.text.as_bytes().get(self.node().value.0 as usize).copied().unwrap_or(0)
    }

    /// The member's name, unescaped ("" for an element).
    #[inline]
    pub fn name(&self) -> &'t str {
        let n = self.node();
        let (a, b) = (n.name.0 as usize, n.name.1 as usize);
        if n.name_unescaped {
            &self.tape.unescaped[a..b]
        } else {
            &self.text[a..b]
        }
    }

    /// The member's name as it stands between its quotes in the text, if it had no
    /// escapes: then it is a JSON string's contents as it is.
    #[inline]
    pub fn name_as_written(&self) -> Option<&'t str> {
        let n = self.node();
        (!n.name_unescaped).then(|| &self.text[n.name.0 as usize..n.name.1 as usize])
    }

    /// The hash the tape was read with of the member's name (equal normal forms, equal
    /// hashes); 0 for an element.
    #[inline]
    pub fn name_hash(&self) -> u64 {
        self.node().hash
    }

    /// The members of an object or the elements of an array, in order (none for a
    /// scalar).
    #[inline]
    pub fn children(&self) -> Children<'t> {
        let end = self.node().next;
        let first = if matches!(self.first(), b'{' | b'[') { self.index + 1 } else { end };
        Children { tape: self.tape, text: self.text, at: first, end }
    }
}

/// What a filter keeps of one member or element: `Some(whole)`, kept as it is
/// (`true`) or filtered again with `S` (`false`, for an object or array).
pub type Pick<'s, S> = Option<(&'s S, bool)>;

impl Tape {
    /// Writes into `buf` (cleared) what `pick` keeps of the object or array `v`
    /// and reads it onto this tape in the same walk, as [`Tape::read`] would read
    /// `buf` (with the names' hashes `v`'s tape has). `pick` is asked, under an
    /// object's selector, about each of its members; an array's elements are
    /// filtered with the array's selector, and a scalar element is left out. An
    /// object or array left with nothing is left out; false (`buf` empty) if nothing
    /// is left at all.
    pub fn filter_from<S>(&mut self, v: Value<'_>, sel: &S, pick: &impl for<'s> Fn(&'s S, Value<'_>) -> Pick<'s, S>, buf: &mut Vec<u8>) -> bool {
        self.nodes.clear();
        self.unescaped.clear();
        buf.clear();
        self.filter_value(v, sel, pick, buf, ((0, 0), false, 0))
    }

    fn filter_value<S>(&mut self, v: Value<'_>, sel: &S, pick: &impl for<'s> Fn(&'s S, Value<'_>) -> Pick<'s, S>, buf: &mut Vec<u8>, name: ((u32, u32), bool, u64)) -> bool {
        let object = match v.first() {
            b'{' => true,
            b'[' => false,
            _ => return false,
        };
        let (start, index, unescaped) = (buf.len(), self.nodes.len(), self.unescaped.len());
        self.nodes.push(Node { name: name.0, name_unescaped: name.1, hash: name.2, value: (start as u32, 0), next: 0 });
        buf.push(if object { b'{' } else { b'[' });
        let mut any = false;
        for m in v.children() {
            let (child, whole) = if object {
                match pick(sel, m) {
                    Some(kept) => kept,
                    None => continue,
                }
            } else {
                (sel, false)
            };
            let (mark, nodes, names) = (buf.len(), self.nodes.len(), self.unescaped.len());
            if any {
                buf.push(b',');
            }
            let mut name = ((0, 0), false, 0);
            if object {
                name = match m.name_as_written() {
                    Some(plain) => {
                        buf.push(b'"');
                        let at = buf.len() as u32;
                        buf.extend_from_slice(plain.as_bytes());
                        buf.extend_from_slice(b"\":");
                        ((at, at + plain.len() as u32), false, m.name_hash())
                    }
                    None => {
                        let escaped = serde_json::to_string(m.name()).expect("a string is written");
                        buf.extend_from_slice(escaped.as_bytes());
                        buf.push(b':');
                        let at = self.unescaped.len() as u32;
                        self.unescaped.push_str(m.name());
                        ((at, self.unescaped.len() as u32), true, m.name_hash())
                    }
                };
            }
            let wrote = if whole {
                self.copy_value(m, buf, name);
                true
            } else {
                self.filter_value(m, child, pick, buf, name)
            };
            if wrote {
                any = true;
            } else {
                buf.truncate(mark);
                self.nodes.truncate(nodes);
                self.unescaped.truncate(names);
            }
        }
        if !any {
            buf.truncate(start);
            self.nodes.truncate(index);
            self.unescaped.truncate(unescaped);
            return false;
        }
        buf.push(if object { b'}' } else { b']' });
        let (end, next) = (buf.len() as u32, self.nodes.len() as u32);
        let node = &mut self.nodes[index];
        node.value.1 = end;
        node.next = next;
        true
    }

    /// Appends `v`'s text to `buf` and its nodes to this tape, named `name`.
    fn copy_value(&mut self, v: Value<'_>, buf: &mut Vec<u8>, name: ((u32, u32), bool, u64)) {
        let src = v.node();
        let shift = |at: u32| at - src.value.0 + buf.len() as u32;
        let first = self.nodes.len() as u32;
        self.nodes.push(Node { name: name.0, name_unescaped: name.1, hash: name.2, value: (shift(src.value.0), shift(src.value.1)), next: first + (src.next - v.index) });
        for k in v.index + 1..src.next {
            let n = v.tape.nodes[k as usize];
            let name = if n.name_unescaped {
                let at = self.unescaped.len() as u32;
                self.unescaped.push_str(&v.tape.unescaped[n.name.0 as usize..n.name.1 as usize]);
                (at, self.unescaped.len() as u32)
            } else if n.name == (0, 0) {
                (0, 0)
            } else {
                (shift(n.name.0), shift(n.name.1))
            };
            self.nodes.push(Node { name, value: (shift(n.value.0), shift(n.value.1)), next: first + (n.next - v.index), ..n });
        }
        buf.extend_from_slice(v.raw().as_bytes());
    }
}

/// The members or elements of one value.
pub struct Children<'t> {
    tape: &'t Tape,
    text: &'t str,
    at: u32,
    end: u32,
}

impl<'t> Iterator for Children<'t> {
    type Item = Value<'t>;

    #[inline]
    fn next(&mut self) -> Option<Value<'t>> {
        if self.at >= self.end {
            return None;
        }
        let v = Value { tape: self.tape, text: self.text, index: self.at };
        self.at = v.node().next;
        Some(v)
    }
}

struct Reader<'a, 't> {
    s: &'a str,
    b: &'a [u8],
    at: usize,
    /// Where the value read onto the tape starts: its positions count from here.
    base: usize,
    tape: &'t mut Tape,
}

/// Every byte that ends a run of plain string bytes: a quote, a backslash, a control
/// character.
const fn string_stops() -> [bool; 256] {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 0x20 {
        t[c] = true;
        c += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
}
static STOPS: [bool; 256] = string_stops();

impl Reader<'_, '_> {
    fn skip_space(&mut self) {
        self.at = skip_space(self.b, self.at);
    }

    /// The byte at `at`, after any space.
    fn peek(&mut self) -> Option<u8> {
        self.skip_space();
        self.b.get(self.at).copied()
    }

    /// Steps past `byte`, after any space; anything else is not JSON.
    fn expect(&mut self, byte: u8) -> Result<(), Malformed> {
        if self.peek() != Some(byte) {
            return Err(Malformed::NotJson);
        }
        self.at += 1;
        Ok(())
    }

    /// From an opening quote to just past the closing one; true if it had escapes.
    fn string(&mut self) -> Result<bool, Malformed> {
        let (end, escaped) = string_at(self.b, self.at).ok_or(Malformed::NotJson)?;
        self.at = end;
        Ok(escaped)
    }

    /// A number, as JSON writes one: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn number(&mut self) -> Result<(), Malformed> {
        let b = self.b;
        let digits = |i: &mut usize| {
            let from = *i;
            while *i < b.len() && b[*i].is_ascii_digit() {
                *i += 1;
            }
            *i > from
        };
        let mut i = self.at;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                digits(&mut i);
            }
            _ => return Err(Malformed::NotJson),
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            if !digits(&mut i) {
                return Err(Malformed::NotJson);
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if !digits(&mut i) {
                return Err(Malformed::NotJson);
            }
        }
        self.at = i;
        Ok(())
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), Malformed> {
        if !self.b[self.at..].starts_with(word) {
            return Err(Malformed::NotJson);
        }
        self.at += word.len();
        Ok(())
    }

    /// One value at `self.at` (after any space), nested at most `depth` deep: as a
    /// node named `name` when `RECORD`, else only checked.
    fn value<const RECORD: bool>(&mut self, name: (u32, u32), name_unescaped: bool, name_hash: u64, depth: usize, hash: &mut impl FnMut(&str) -> Result<u64, Malformed>) -> Result<(), Malformed> {
        self.skip_space();
        let index = self.tape.nodes.len();
        let start = self.at;
        if RECORD {
            let at = (start - self.base) as u32;
            self.tape.nodes.push(Node { name, name_unescaped, hash: name_hash, value: (at, at), next: 0 });
        }
        match self.b.get(start) {
            Some(b'{' | b'[') if depth == 0 => return Err(Malformed::TooDeep),
            Some(b'{') => self.object::<RECORD>(depth - 1, hash)?,
            Some(b'[') => self.items(b']', |r| r.value::<RECORD>((0, 0), false, 0, depth - 1, hash))?,
            Some(b'"') => {
                self.string()?;
            }
            Some(b't') => self.literal(b"true")?,
            Some(b'f') => self.literal(b"false")?,
            Some(b'n') => self.literal(b"null")?,
            _ => self.number()?,
        }
        if RECORD {
            let (end, next) = ((self.at - self.base) as u32, self.tape.nodes.len() as u32);
            let node = &mut self.tape.nodes[index];
            node.value.1 = end;
            node.next = next;
        }
        Ok(())
    }

    /// The items of an object or array, from its opening bracket to just past `close`,
    /// separated by commas; `item` reads each one.
    fn items(&mut self, close: u8, mut item: impl FnMut(&mut Self) -> Result<(), Malformed>) -> Result<(), Malformed> {
        self.at += 1;
        if self.peek() == Some(close) {
            self.at += 1;
            return Ok(());
        }
        loop {
            item(self)?;
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(c) if c == close => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return Err(Malformed::NotJson),
            }
        }
    }

    fn object<const RECORD: bool>(&mut self, depth: usize, hash: &mut impl FnMut(&str) -> Result<u64, Malformed>) -> Result<(), Malformed> {
        let first = self.tape.hashes.len();
        self.items(b'}', |r| r.member::<RECORD>(depth, hash))?;
        if RECORD {
            if has_duplicate(&self.tape.hashes[first..], &mut self.tape.scratch) {
                return Err(Malformed::DuplicateName);
            }
            self.tape.hashes.truncate(first);
        }
        Ok(())
    }

    /// One member of an object: its name (when `RECORD`, hashed and unescaped if need
    /// be), then its value.
    fn member<const RECORD: bool>(&mut self, depth: usize, hash: &mut impl FnMut(&str) -> Result<u64, Malformed>) -> Result<(), Malformed> {
        if self.peek() != Some(b'"') {
            return Err(Malformed::NotJson);
        }
        let open = self.at;
        let escaped = self.string()?;
        let (mut name, mut unescaped, mut h) = ((0, 0), false, 0);
        if RECORD {
            let inner = (open + 1, self.at - 1);
            if escaped {
                // Strictly: a lone surrogate is not a name.
                let s = unquote(&self.s[open..self.at]).ok_or(Malformed::NotJson)?;
                let a = self.tape.unescaped.len();
                self.tape.unescaped.push_str(&s);
                name = (a as u32, self.tape.unescaped.len() as u32);
                unescaped = true;
                h = hash(&self.tape.unescaped[a..])?;
            } else {
                name = ((inner.0 - self.base) as u32, (inner.1 - self.base) as u32);
                h = hash(&self.s[inner.0..inner.1])?;
            }
            self.tape.hashes.push(h);
        }
        self.expect(b':')?;
        self.value::<RECORD>(name, unescaped, h, depth, hash)
    }
}

/// Where the JSON whitespace that starts at `at` in `b` ends.
#[inline]
pub(crate) fn skip_space(b: &[u8], mut at: usize) -> usize {
    // Most tokens follow no space at all: one compare rules it out (all four are
    // at most b' ').
    if b.get(at).is_none_or(|&c| c > b' ') {
        return at;
    }
    while at < b.len() && matches!(b[at], b' ' | b'\t' | b'\n' | b'\r') {
        at += 1;
    }
    at
}

/// Checks the JSON string whose opening quote is at `at` in `b` (no control character,
/// escapes well formed); returns where it ends, just past the closing quote, and
/// whether it has escapes; `None` if it is not a string (an answer that fits in two
/// registers). Surrogates in `\u` escapes are not checked here: a value's text is kept
/// as written, and a name with escapes is unescaped strictly.
#[inline]
pub(crate) fn string_at(b: &[u8], at: usize) -> Option<(usize, bool)> {
    let mut i = at + 1;
    let mut escaped = false;
    loop {
        // Sixteen bytes at a time while none of them stops the run; the last few one
        // by one.
        loop {
            match b.get(i..i + 16) {
                Some(chunk) => {
                    let (stops, quotes) = stops_in(chunk.try_into().expect("sixteen bytes"));
                    if stops != 0 {
                        let k = stops.trailing_zeros() as usize;
                        // The closing quote, told by the mask, not by reading it again.
                        if quotes >> k & 1 != 0 {
                            return Some((i + k + 1, escaped));
                        }
                        i += k;
                        break;
                    }
                    i += 16;
                }
                None => {
                    while i < b.len() && !STOPS[b[i] as usize] {
                        i += 1;
                    }
                    break;
                }
            }
        }
        match b.get(i) {
            Some(b'"') => return Some((i + 1, escaped)),
            Some(b'\\') => {
                escaped = true;
                match b.get(i + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                    Some(b'u') if b.get(i + 2..i + 6).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) => i += 6,
                    _ => return None,
                }
            }
            _ => return None,
        }
    }
}

/// Whether no byte of `b` stops a run of plain string bytes: written between quotes,
/// it is a JSON string as it is.
pub(crate) fn is_plain(b: &[u8]) -> bool {
    let mut chunks = b.chunks_exact(16);
    chunks.all(|c| stops_in(c.try_into().expect("sixteen bytes")).0 == 0) && !chunks.remainder().iter().any(|&c| STOPS[c as usize])
}

/// Which bytes of `chunk` stop a run of plain string bytes ([`STOPS`]), and which of
/// those are quotes: one bit per byte, the first byte lowest. All sixteen are compared
/// at once.
#[cfg(target_arch = "x86_64")]
#[inline]
fn stops_in(chunk: &[u8; 16]) -> (u32, u32) {
    use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8};
    // SAFETY: SSE2 is part of every x86_64 CPU, and the load reads the sixteen bytes
    // `chunk` borrows, unaligned.
    unsafe {
        let v = _mm_loadu_si128(chunk.as_ptr().cast());
        let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        // A control character is its own minimum with 0x1f.
        let control = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
        let stops = _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control)) as u32;
        (stops, _mm_movemask_epi8(quote) as u32)
    }
}

/// [`stops_in`] byte by byte, where there is no SSE2.
#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn stops_in(chunk: &[u8; 16]) -> (u32, u32) {
    let (mut stops, mut quotes) = (0, 0);
    for (k, &c) in chunk.iter().enumerate() {
        stops |= u32::from(STOPS[c as usize]) << k;
        quotes |= u32::from(c == b'"') << k;
    }
    (stops, quotes)
}

/// Checks the JSON value at `at` in `text` (after any space), nested at most `depth`
/// deep, recording nothing; returns where it ends.
pub(crate) fn skip_value(text: &str, at: usize, depth: usize) -> Result<usize, Malformed> {
    let mut tape = Tape::default();
    let mut reader = Reader { s: text, b: text.as_bytes(), at, base: 0, tape: &mut tape };
    reader.value::<false>((0, 0), false, 0, depth, &mut |_| Ok(0))?;
    Ok(reader.at)
}

/// Whether two of `ids` are equal.
fn has_duplicate(ids: &[u64], scratch: &mut Vec<u64>) -> bool {
    match ids.len() {
        0 | 1 => false,
        2..=16 => ids.iter().enumerate().any(|(i, x)| ids[..i].contains(x)),
        _ => {
            scratch.clear();
            scratch.extend_from_slice(ids);
            scratch.sort_unstable();
            scratch.windows(2).any(|w| w[0] == w[1])
        }
    }
}

/// A raw JSON string's contents, borrowed when it has no escapes; `None` if it is not
/// a string or an escape is not a character (a lone surrogate).
pub fn unquote(text: &str) -> Option<Cow<'_, str>> {
    if !text.starts_with('"') || text.len() < 2 {
        return None;
    }
    let inner = &text[1..text.len() - 1];
    if !inner.contains('\\') {
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(text).ok().map(Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every value the tape gives, depth first, as (name, raw text).
    fn flatten(v: Value<'_>, out: &mut Vec<(String, String)>) {
        out.push((v.name().to_string(), v.raw().to_string()));
        for c in v.children() {
            flatten(c, out);
        }
    }

    /// The same, from serde_json's tree.
    fn expected(name: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
        out.push((name.to_string(), serde_json::to_string(v).unwrap()));
        match v {
            serde_json::Value::Object(m) => m.iter().for_each(|(k, v)| expected(k, v, out)),
            serde_json::Value::Array(a) => a.iter().for_each(|v| expected("", v, out)),
            _ => {}
        }
    }

    fn arb_json() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|i| serde_json::json!(i)),
            (-1e6f64..1e6).prop_map(|f| serde_json::json!(f)),
            "[a-zA-Z0-9 \"\\\\\u{e9}\u{1F600}\n]{0,8}".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::Array),
                proptest::collection::btree_map("[a-z\"\\\\\u{e9}]{1,6}", inner, 0..5).prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// The tape gives every value's text and every member's name exactly as
        /// serde_json reads them, whatever the spacing.
        #[test]
        fn the_tape_reads_what_serde_json_reads(v in arb_json(), pretty in proptest::bool::ANY) {
            let obj = serde_json::json!({ "root": v });
            let text = if pretty { serde_json::to_string_pretty(&obj).unwrap() } else { serde_json::to_string(&obj).unwrap() };
            let mut tape = Tape::default();
            let distinct = |name: &str| Ok(crate::agreement::names::normal_hash(name) ^ name.len() as u64);
            // Names of one length and one normal form (`rnm`, `mrn`) still share a hash.
            proptest::prop_assume!(tape.read(&text, distinct).is_ok());
            let mut got = Vec::new();
            flatten(tape.root(&text), &mut got);
            // Raw texts compare as JSON (the pretty form keeps its spacing inside).
            let got: Vec<(String, serde_json::Value)> = got.into_iter().map(|(n, t)| (n, serde_json::from_str(&t).unwrap())).collect();
            let mut want = Vec::new();
            expected("", &obj, &mut want);
            let want: Vec<(String, serde_json::Value)> = want.into_iter().map(|(n, t)| (n, serde_json::from_str(&t).unwrap())).collect();
            proptest::prop_assert_eq!(got, want);
        }
    }

    /// A byte-by-byte reading of a JSON string, the scanner's reference.
    fn string_by_bytes(b: &[u8], at: usize) -> Result<(usize, bool), Malformed> {
        let (mut i, mut escaped) = (at + 1, false);
        loop {
            match b.get(i) {
                Some(b'"') => return Ok((i + 1, escaped)),
                Some(b'\\') => match b.get(i + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => (i, escaped) = (i + 2, true),
                    Some(b'u') if b.get(i + 2..i + 6).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) => (i, escaped) = (i + 6, true),
                    _ => return Err(Malformed::NotJson),
                },
                Some(&c) if c < 0x20 => return Err(Malformed::NotJson),
                Some(_) => i += 1,
                None => return Err(Malformed::NotJson),
            }
        }
    }

    proptest::proptest! {
        /// The string scanner stops where a byte-by-byte reading does, wherever a
        /// quote, backslash, escape, control or non-ASCII byte falls in its sixteen-byte
        /// steps, and whatever follows the string.
        #[test]
        fn strings_end_where_they_end(body in proptest::collection::vec(proptest::sample::select(&b"aaaaaaaa\"\\\\nu00e9\x01\x1f\n\x7f\x80\xff "[..]), 0..80)) {
            let mut text = vec![b'"'];
            text.extend_from_slice(&body);
            proptest::prop_assert_eq!(string_at(&text, 0), string_by_bytes(&text, 0).ok(), "{:?}", String::from_utf8_lossy(&text));
            proptest::prop_assert_eq!(is_plain(&body), !body.iter().any(|&c| STOPS[c as usize]));
        }
    }

    /// Every value of a tape, depth first, with its name's hash and whether its name
    /// had escapes.
    fn nodes_of(v: Value<'_>, out: &mut Vec<(String, String, u64)>) {
        out.push((v.name().to_string(), v.raw().to_string(), v.name_hash()));
        for c in v.children() {
            nodes_of(c, out);
        }
    }

    proptest::proptest! {
        /// A filter's tape is the tape of the text it writes: read in the same walk,
        /// names with escapes and whole values with everything inside them included.
        #[test]
        fn a_filtered_tape_is_the_tape_of_its_text(v in arb_json(), keep in proptest::collection::vec(proptest::prelude::any::<u8>(), 8), pretty in proptest::bool::ANY) {
            let obj = serde_json::json!({ "root": v, "other": 1 });
            let text = if pretty { serde_json::to_string_pretty(&obj).unwrap() } else { serde_json::to_string(&obj).unwrap() };
            let hash = |n: &str| Ok(crate::agreement::names::normal_hash(n));
            let mut source = Tape::default();
            // Names the generator wrote apart may share a normal form (`e` and `é`, `rn`
            // and `m`): such text is refused, and has no tape to filter.
            proptest::prop_assume!(source.read(&text, hash).is_ok());
            // A member is kept whole, looked into, or left out, by its name's hash:
            // the same choice for the same name at any depth.
            fn pick<'s>(keep: &'s Vec<u8>, m: Value<'_>) -> Pick<'s, Vec<u8>> {
                match keep[(m.name_hash() % 8) as usize] % 3 {
                    0 => None,
                    1 => Some((keep, true)),
                    _ => Some((keep, false)),
                }
            }
            let (mut filtered, mut buf) = (Tape::default(), Vec::new());
            let wrote = filtered.filter_from(source.root(&text), &keep, &pick, &mut buf);
            proptest::prop_assert_eq!(wrote, !buf.is_empty());
            if wrote {
                let written = String::from_utf8(buf).unwrap();
                let mut again = Tape::default();
                again.read(&written, hash).unwrap();
                let (mut a, mut b) = (Vec::new(), Vec::new());
                nodes_of(filtered.root(&written), &mut a);
                nodes_of(again.root(&written), &mut b);
                proptest::prop_assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn member_names_at_every_depth_are_checked() {
        let id = |n: &str| -> Result<u64, Malformed> {
            if n.contains('\u{200b}') {
                return Err(Malformed::BadName);
            }
            Ok(crate::agreement::names::normal_hash(n))
        };
        let mut tape = Tape::default();
        let mut read = |s: &str| tape.read(s, id);
        assert_eq!(read(r#"{"a":{"b":1,"c":[{"d":"x","D":2}]}}"#), Err(Malformed::DuplicateName));
        assert_eq!(read(r#"{"a":{"b":1},"c":[{"b":"\"}]"}],"A\u0301":1}"#), Err(Malformed::DuplicateName));
        assert_eq!(read("{\"a\":[{\"x\u{200b}\":1}]}"), Err(Malformed::BadName));
        assert_eq!(read(r#"{"a":{"b":1},"c":[{"b":"}\\","d":{"b":[]}}]}"#), Ok(()));
        let many = format!("{{{}}}", (0..40).map(|k| format!("\"k{k}\":1")).collect::<Vec<_>>().join(","));
        assert_eq!(read(&many), Ok(()));
        let dup = many.replace("\"k7\"", "\"K7\"").replace("\"k9\"", "\"k7\"");
        assert_eq!(read(&dup), Err(Malformed::DuplicateName));
        assert_eq!(read(r#"{"a\u0062":1,"ab":2}"#), Err(Malformed::DuplicateName));
    }
}
