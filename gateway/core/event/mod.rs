//! Sensor events: decoding the input formats into one borrowed view, and the
//! protobuf messages of `schemas/`.
//!
//! JSON is decoded without building a value tree: the string fields borrow from the
//! input, and `attributes` stays raw JSON until a rule asks for a path in it. Protobuf
//! input is mapped to its proto3 JSON form and takes the same path. Whatever cannot be
//! decoded is [`Malformed`], with a reason that never quotes the input.

pub mod avro;
pub mod flat;
pub mod json;
pub mod proto;
pub mod tape;
pub mod wire;

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, Datelike, FixedOffset};

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
    /// The attributes object as raw JSON text, if present and not null.
    pub attributes: Option<&'a str>,
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
    let at = match common_time(s.as_bytes()) {
        Some(at) => at,
        None => DateTime::parse_from_rfc3339(s).map_err(|_| Malformed::BadTime)?,
    };
    // chrono accepts `:60` as a leap second, kept in the nanoseconds past 1e9.
    if at.timestamp_subsec_nanos() >= 1_000_000_000 || !(0..=9999).contains(&at.naive_utc().year()) {
        return Err(Malformed::BadTime);
    }
    Ok(at)
}

/// The form nearly every sensor writes, `YYYY-MM-DDTHH:MM:SS` then `Z` or `±HH:MM`,
/// read directly; `None` for anything else (fractions, `:60`, another separator, an
/// impossible date), which chrono's reading then takes or refuses.
fn common_time(b: &[u8]) -> Option<DateTime<FixedOffset>> {
    use chrono::{NaiveDate, TimeZone};
    if !matches!(b.len(), 20 | 25) || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let number = |from: usize, to: usize| b[from..to].iter().try_fold(0u32, |n, &d| d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0')));
    let offset = match (b[19], b.len()) {
        (b'Z', 20) => 0,
        (sign @ (b'+' | b'-'), 25) if b[22] == b':' => {
            let (h, m) = (number(20, 22)?, number(23, 25)?);
            if h > 23 || m > 59 {
                return None;
            }
            let seconds = (h * 3600 + m * 60) as i32;
            if sign == b'-' { -seconds } else { seconds }
        }
        _ => return None,
    };
    let (hour, minute, second) = (number(11, 13)?, number(14, 16)?, number(17, 19)?);
    if second > 59 {
        return None;
    }
    let local = NaiveDate::from_ymd_opt(number(0, 4)? as i32, number(5, 7)?, number(8, 10)?)?.and_hms_opt(hour, minute, second)?;
    FixedOffset::east_opt(offset)?.from_local_datetime(&local).single()
}

/// How deeply `json` nests (objects and arrays), stopping early past `limit`.
pub fn nesting_exceeds(json: &[u8], limit: usize) -> bool {
    // Fast path: fewer openers than the limit cannot nest deeper than it.
    if memchr::memchr2_iter(b'{', b'[', json).take(limit + 1).count() <= limit {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_is_measured_outside_strings() {
        assert!(!nesting_exceeds(br#"{"a":{"b":[1,2]}}"#, 3));
        assert!(nesting_exceeds(br#"{"a":{"b":[1,2]}}"#, 2));
        assert!(!nesting_exceeds(br#"{"a":"[[[[[[\"[[["}"#, 1));
    }

    proptest::proptest! {
        /// The common form is read exactly as chrono reads it, or left to chrono;
        /// near-misses (bad digits, days, hours, offsets, separators) included.
        #[test]
        fn the_common_time_form_reads_as_chrono_reads_it(
            y in 0u32..10_000, mo in 0u32..14, d in 0u32..33, h in 0u32..26, mi in 0u32..62, sec in 0u32..62,
            oh in 0u32..26, om in 0u32..62, zone in 0usize..4, sep in proptest::sample::select(&b"Tt x"[..]),
            mutate in proptest::option::of((0usize..25, proptest::sample::select(&b"0a-:+Z9 "[..]))),
        ) {
            let offset = match zone { 0 => "Z".to_string(), 1 => format!("+{oh:02}:{om:02}"), 2 => format!("-{oh:02}:{om:02}"), _ => format!("+{oh:02}{om:02}") };
            let mut text = format!("{y:04}-{mo:02}-{d:02}{}{h:02}:{mi:02}:{sec:02}{offset}", sep as char).into_bytes();
            if let Some((at, byte)) = mutate {
                if at < text.len() {
                    text[at] = byte;
                }
            }
            let text = String::from_utf8(text).unwrap();
            let chrono = DateTime::parse_from_rfc3339(&text);
            match common_time(text.as_bytes()) {
                Some(at) => proptest::prop_assert_eq!(Ok(at), chrono, "{}", text),
                // What chrono takes in the common form, the direct reading takes too.
                None => proptest::prop_assert!(chrono.is_err() || mutate.is_some() || sep != b'T' || zone == 3 || sec > 59 || oh > 23 || om > 59, "{}", text),
            }
        }
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
}
