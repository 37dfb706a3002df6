//! Sensor events: decoding the input formats into one borrowed view, and the
//! protobuf messages of `schemas/`.
//!
//! JSON is decoded without building a value tree: the string fields borrow from the
//! input, and `attributes` stays raw JSON until a rule asks for a path in it. Protobuf
//! input is mapped to its proto3 JSON form and takes the same path. Whatever cannot be
//! decoded is [`Malformed`], with a reason that never quotes the input.

pub mod avro;
pub mod json;
pub mod proto;
pub mod wire;

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, Datelike, FixedOffset};
use serde_json::value::RawValue;

/// How the records of an input (or an output) are encoded. Configured, never guessed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Json,
    Proto,
    Avro,
}

impl Format {
    /// Every format, by the name users write.
    pub const NAMES: [&'static str; 3] = ["json", "proto", "avro"];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Proto => "proto",
            Format::Avro => "avro",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "json" => Ok(Format::Json),
            "proto" => Ok(Format::Proto),
            "avro" => Ok(Format::Avro),
            _ => Err(format!("`{s}` is not a format; use one of {}", Format::NAMES.join(", "))),
        }
    }
}

/// One decoded event; strings borrow from the input where they can.
#[derive(Debug)]
pub struct Event<'a> {
    pub event_id: Cow<'a, str>,
    pub source: Cow<'a, str>,
    pub device_id: Option<Cow<'a, str>>,
    pub subject_id: Cow<'a, str>,
    pub category: Cow<'a, str>,
    /// As written, for output when it is not generalised.
    pub occurred_at_text: Cow<'a, str>,
    pub occurred_at: DateTime<FixedOffset>,
    /// The attributes object as raw JSON, if present and not null.
    pub attributes: Option<&'a RawValue>,
    /// Top-level members that are not part of the event format (they are removed).
    pub extra_fields: u32,
}

/// The largest event accepted, in bytes.
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// The deepest nesting accepted inside `attributes`.
pub const MAX_DEPTH: usize = 64;

/// Why an event could not be decoded. The text names fields, never values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    NotUtf8,
    NotJson,
    NotAnObject,
    TooLarge,
    TooDeep,
    Missing(&'static str),
    WrongType(&'static str),
    Duplicate(&'static str),
    BadTime,
    NotProtobuf,
    /// A member name holds a control character or a default-ignorable code point.
    BadName,
    /// Two members of one object have names equal once normalised (SPEC 2.5).
    DuplicateName,
    NotAvro,
    NotFramed,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::NotUtf8 => write!(f, "not UTF-8"),
            Malformed::NotJson => write!(f, "not valid JSON"),
            Malformed::NotAnObject => write!(f, "not a JSON object"),
            Malformed::TooLarge => write!(f, "larger than {} bytes", MAX_EVENT_BYTES),
            Malformed::TooDeep => write!(f, "attributes nested deeper than {} levels", MAX_DEPTH),
            Malformed::Missing(field) => write!(f, "missing field `{field}`"),
            Malformed::WrongType(field) => write!(f, "field `{field}` has the wrong type"),
            Malformed::Duplicate(field) => write!(f, "field `{field}` appears twice"),
            Malformed::BadTime => write!(f, "`occurred_at` is not an RFC 3339 time with an offset"),
            Malformed::NotProtobuf => write!(f, "not a valid SensorEvent message"),
            Malformed::BadName => write!(f, "a member name holds a control or invisible character"),
            Malformed::DuplicateName => write!(f, "two members of one object have the same name once normalised"),
            Malformed::NotAvro => write!(f, "not a valid SensorEvent Avro record"),
            Malformed::NotFramed => write!(f, "not in the Confluent Schema Registry wire format"),
        }
    }
}

impl std::error::Error for Malformed {}

/// Parses `occurred_at`: RFC 3339, offset required; no leap second (`:60`), and in
/// the years 0000 to 9999 in UTC (SPEC 2.5).
pub fn parse_time(s: &str) -> Result<DateTime<FixedOffset>, Malformed> {
    let at = DateTime::parse_from_rfc3339(s).map_err(|_| Malformed::BadTime)?;
    // chrono accepts `:60` as a leap second, kept in the nanoseconds past 1e9.
    if at.timestamp_subsec_nanos() >= 1_000_000_000 || !(0..=9999).contains(&at.naive_utc().year()) {
        return Err(Malformed::BadTime);
    }
    Ok(at)
}

/// Walks the member names of a JSON value at every depth (the text must be valid
/// JSON): `id` gives each name's interned normal form or refuses it, and two members
/// of one object with the same form make it `DuplicateName`.
pub fn check_member_names(json: &str, mut id: impl FnMut(&str) -> Result<u64, Malformed>) -> Result<(), Malformed> {
    let b = json.as_bytes();
    // Open containers: where each object's names start in `ids` (arrays: `None`).
    let mut open: Vec<Option<usize>> = Vec::new();
    let mut ids: Vec<u64> = Vec::new();
    let mut scratch: Vec<u64> = Vec::new();
    let mut at = 0;
    loop {
        // Brackets lie between strings; string contents are skipped whole.
        let quote = memchr::memchr(b'"', &b[at..]).map_or(b.len(), |k| at + k);
        for &c in &b[at..quote] {
            match c {
                b'{' => open.push(Some(ids.len())),
                b'[' => open.push(None),
                b'}' | b']' => {
                    if let Some(Some(start)) = open.pop() {
                        if has_duplicate(&ids[start..], &mut scratch) {
                            return Err(Malformed::DuplicateName);
                        }
                        ids.truncate(start);
                    }
                }
                _ => {}
            }
        }
        if quote == b.len() {
            return Ok(());
        }
        // The closing quote: the next `"` not escaped.
        let mut end = quote + 1;
        while let Some(k) = b.get(end..).and_then(|rest| memchr::memchr2(b'"', b'\\', rest)) {
            end += k;
            if b[end] == b'"' {
                break;
            }
            end += 2;
        }
        let end = end.min(b.len() - 1);
        at = end + 1;
        // A member name is the string a `:` follows; no value is.
        let next = b[at..].iter().find(|c| !c.is_ascii_whitespace());
        if next == Some(&b':') {
            let quoted = &json[quote..=end];
            let inner = &quoted[1..quoted.len() - 1];
            let name = if inner.contains('\\') {
                Cow::Owned(serde_json::from_str::<String>(quoted).map_err(|_| Malformed::NotJson)?)
            } else {
                Cow::Borrowed(inner)
            };
            ids.push(id(&name)?);
        }
    }
}

/// How deeply `json` nests (objects and arrays), stopping early past `limit`.
pub fn nesting_exceeds(json: &[u8], limit: usize) -> bool {
    // Fast path: fewer openers than the limit cannot nest deeper than it.
    if json.iter().filter(|&&b| b == b'{' || b == b'[').count() <= limit {
        return false;
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in json {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Do two of an object's member names share a normal form?
fn has_duplicate(names: &[u64], scratch: &mut Vec<u64>) -> bool {
    if names.len() <= 16 {
        return names.iter().enumerate().any(|(k, x)| names[k + 1..].contains(x));
    }
    scratch.clear();
    scratch.extend_from_slice(names);
    scratch.sort_unstable();
    scratch.windows(2).any(|w| w[0] == w[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_is_measured_outside_strings() {
        assert!(!nesting_exceeds(br#"{"a":{"b":[1,2]}}"#, 3));
        assert!(nesting_exceeds(br#"{"a":{"b":[1,2]}}"#, 2));
        assert!(!nesting_exceeds(br#"{"a":"[[[[[[\"[[["}"#, 1));
    }

    #[test]
    fn time_needs_an_offset() {
        assert!(parse_time("2026-03-02T10:00:00+01:00").is_ok());
        assert!(parse_time("2026-03-02T10:00:00Z").is_ok());
        assert_eq!(parse_time("2026-03-02T10:00:00"), Err(Malformed::BadTime));
        assert_eq!(parse_time("yesterday"), Err(Malformed::BadTime));
    }

    /// Leap seconds and years outside 0000 to 9999 in UTC are malformed (issue 10).
    #[test]
    fn issue_10_leap_seconds_and_far_years_are_malformed() {
        assert_eq!(parse_time("2016-12-31T23:59:60Z"), Err(Malformed::BadTime));
        assert_eq!(parse_time("0000-01-01T00:30:00+01:00"), Err(Malformed::BadTime));
        assert!(parse_time("0000-01-01T00:30:00Z").is_ok());
        assert_eq!(parse_time("9999-12-31T23:30:00-01:00"), Err(Malformed::BadTime));
        assert!(parse_time("9999-12-31T23:59:59Z").is_ok());
    }

    #[test]
    fn member_names_at_every_depth_are_checked() {
        let id = |n: &str| -> Result<u64, Malformed> {
            if n.contains('\u{200b}') {
                return Err(Malformed::BadName);
            }
            Ok(crate::agreement::names::normal_hash(n))
        };
        assert_eq!(check_member_names(r#"{"a":{"b":1,"c":[{"d":"x","D":2}]}}"#, id), Err(Malformed::DuplicateName));
        assert_eq!(check_member_names(r#"{"a":{"b":1},"c":[{"b":"\"}]"}],"A\u0301":1}"#, id), Err(Malformed::DuplicateName));
        assert_eq!(check_member_names("{\"a\":[{\"x\u{200b}\":1}]}", id), Err(Malformed::BadName));
        assert_eq!(check_member_names(r#"{"a":{"b":1},"c":[{"b":"}\\","d":{"b":[]}}]}"#, id), Ok(()));
        let many = format!("{{{}}}", (0..40).map(|k| format!("\"k{k}\":1")).collect::<Vec<_>>().join(","));
        assert_eq!(check_member_names(&many, id), Ok(()));
        let dup = many.replace("\"k7\"", "\"K7\"").replace("\"k9\"", "\"k7\"");
        assert_eq!(check_member_names(&dup, id), Err(Malformed::DuplicateName));
    }
}
