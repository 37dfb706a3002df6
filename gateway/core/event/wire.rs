//! The Confluent Schema Registry wire format (SPEC 4), around any of the formats: a
//! magic byte 0, the schema id as 4 bytes big-endian, then for protobuf the
//! message-index list (zigzag varints: the count, then each index; the list `[0]` as
//! the single byte 0), then the message itself.
//!
//! Framing is configured per input and per output, never guessed: a framed input whose
//! record does not start with the header is malformed.

use super::{Format, Malformed};

/// Plain records, or records in the Confluent wire format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Framing {
    #[default]
    Plain,
    Confluent,
}

impl Framing {
    pub const NAMES: [&'static str; 2] = ["plain", "confluent"];

    pub fn as_str(self) -> &'static str {
        match self {
            Framing::Plain => "plain",
            Framing::Confluent => "confluent",
        }
    }
}

impl std::str::FromStr for Framing {
    type Err = String;

    fn from_str(s: &str) -> Result<Framing, String> {
        match s {
            "plain" => Ok(Framing::Plain),
            "confluent" => Ok(Framing::Confluent),
            _ => Err(format!("`{s}` is not a framing; use one of {}", Framing::NAMES.join(", "))),
        }
    }
}

/// The header of a framed record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub schema_id: u32,
    /// Protobuf only: the path of the message type in its schema (`[0]` for the first).
    pub message_indexes: Vec<i64>,
}

/// The most message indexes accepted (nesting in a .proto file is shallow).
const MAX_INDEXES: i64 = 64;

/// Splits a framed record into its header and the message.
pub fn unframe(record: &[u8], format: Format) -> Result<(Header, &[u8]), Malformed> {
    let [0, a, b, c, d, rest @ ..] = record else { return Err(Malformed::NotFramed) };
    let schema_id = u32::from_be_bytes([*a, *b, *c, *d]);
    let mut message_indexes = Vec::new();
    let mut rest = rest;
    if format == Format::Proto {
        let count = zigzag_varint(&mut rest).ok_or(Malformed::NotFramed)?;
        if count == 0 {
            message_indexes.push(0);
        } else {
            if !(1..=MAX_INDEXES).contains(&count) {
                return Err(Malformed::NotFramed);
            }
            for _ in 0..count {
                let i = zigzag_varint(&mut rest).ok_or(Malformed::NotFramed)?;
                if i < 0 {
                    return Err(Malformed::NotFramed);
                }
                message_indexes.push(i);
            }
        }
    }
    Ok((Header { schema_id, message_indexes }, rest))
}

/// Appends the header of a framed record to `out`.
pub fn write_header(schema_id: u32, format: Format, message_indexes: &[i64], out: &mut Vec<u8>) {
    out.push(0);
    out.extend_from_slice(&schema_id.to_be_bytes());
    if format == Format::Proto {
        if message_indexes == [0] {
            out.push(0);
        } else {
            write_zigzag(message_indexes.len() as i64, out);
            for i in message_indexes {
                write_zigzag(*i, out);
            }
        }
    }
}

fn zigzag_varint(bytes: &mut &[u8]) -> Option<i64> {
    let mut n: u64 = 0;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first()?;
        *bytes = rest;
        n |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some((n >> 1) as i64 ^ -((n & 1) as i64));
        }
    }
    None
}

/// A signed number as a zigzag varint (Avro's `long`, the message-index list).
pub fn write_zigzag(v: i64, out: &mut Vec<u8>) {
    write_varint(((v << 1) ^ (v >> 63)) as u64, out);
}

/// An unsigned varint (protobuf's, and the length before a delimited message).
pub fn write_varint(n: u64, out: &mut Vec<u8>) {
    let (bytes, len) = varint(n);
    out.extend_from_slice(&bytes[..len]);
}

/// `n` as a varint: its bytes, and how many of them there are.
fn varint(mut n: u64) -> ([u8; 10], usize) {
    let (mut bytes, mut len) = ([0u8; 10], 0);
    while n >= 0x80 {
        bytes[len] = (n as u8) | 0x80;
        n >>= 7;
        len += 1;
    }
    bytes[len] = n as u8;
    (bytes, len + 1)
}

/// Starts a length-prefixed run of `out` whose length is not known yet: one byte is
/// held for it. [`close_len`] writes it there, as a varint, once the run is written.
pub fn open_len(out: &mut Vec<u8>) -> usize {
    out.push(0);
    out.len() - 1
}

/// Ends the run begun at `at` by [`open_len`]: its length goes in front of it (the run
/// moves up when the length needs more than the one byte held).
pub fn close_len(out: &mut Vec<u8>, at: usize) {
    let len = out.len() - at - 1;
    if len < 0x80 {
        out[at] = len as u8;
    } else {
        let (prefix, n) = varint(len as u64);
        out.splice(at..at + 1, prefix[..n].iter().copied());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// A run written after [`open_len`] ends up behind its length as a varint,
        /// whatever its length, and what came before it stays.
        #[test]
        fn a_run_gets_its_length_in_front(before in prop::collection::vec(any::<u8>(), 0..4), run in prop::collection::vec(any::<u8>(), 0..40_000)) {
            let mut out = before.clone();
            let at = open_len(&mut out);
            out.extend_from_slice(&run);
            close_len(&mut out, at);
            let mut expected = before;
            write_varint(run.len() as u64, &mut expected);
            expected.extend_from_slice(&run);
            prop_assert_eq!(out, expected);
        }

        #[test]
        fn headers_round_trip(id in any::<u32>(), indexes in prop::collection::vec(0i64..1000, 1..5), body in prop::collection::vec(any::<u8>(), 0..32), proto in any::<bool>()) {
            let format = if proto { Format::Proto } else { Format::Avro };
            let mut record = Vec::new();
            write_header(id, format, &indexes, &mut record);
            record.extend_from_slice(&body);
            let (h, rest) = unframe(&record, format).unwrap();
            prop_assert_eq!(h.schema_id, id);
            prop_assert_eq!(rest, &body[..]);
            if proto {
                prop_assert_eq!(h.message_indexes, indexes);
            } else {
                prop_assert!(h.message_indexes.is_empty());
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..24)) {
            for f in [Format::Json, Format::Proto, Format::Avro] {
                if let Ok((_, rest)) = unframe(&bytes, f) {
                    prop_assert!(bytes[0] == 0 && rest.len() <= bytes.len() - 5);
                }
            }
        }
    }

    #[test]
    fn confluents_bytes_are_read() {
        // What Confluent's serializers write: id 7, and for protobuf the first message
        // as the single byte 0, the third as [1 entry, index 2] = zigzag 2, 4.
        assert_eq!(unframe(&[0, 0, 0, 0, 7, b'{'], Format::Json).unwrap(), (Header { schema_id: 7, message_indexes: vec![] }, &b"{"[..]));
        assert_eq!(unframe(&[0, 0, 0, 0, 7, 0, 0x0a], Format::Proto).unwrap().0.message_indexes, [0]);
        assert_eq!(unframe(&[0, 0, 0, 0, 7, 2, 4, 0x0a], Format::Proto).unwrap(), (Header { schema_id: 7, message_indexes: vec![2] }, &[0x0a][..]));
        let mut out = Vec::new();
        write_header(7, Format::Proto, &[2], &mut out);
        assert_eq!(out, [0, 0, 0, 0, 7, 2, 4]);
        assert_eq!(unframe(b"{\"event_id\":1}", Format::Json), Err(Malformed::NotFramed), "a plain record is not framed");
        assert_eq!(unframe(&[0, 0, 0], Format::Avro), Err(Malformed::NotFramed));
        assert_eq!(unframe(&[1, 0, 0, 0, 7], Format::Avro), Err(Malformed::NotFramed), "magic byte 0 only");
    }
}
