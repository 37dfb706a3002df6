//! Suppressions (SPEC 2.7): a worker's objection, a restriction, or a privacy switch,
//! and step 6a of SPEC 2.1.
//!
//! An [`Entry`] is one JSON object, read strictly ([`Entry::parse`] refuses unknown
//! keys and wrong values with a sentence). A [`Suppressions`] set is immutable and
//! indexed by the subject's 128-bit digest, so step 6a costs nothing when the set is
//! empty and one cached HMAC and one hash look-up when it is not. Whoever holds the
//! entries (file mode, the Kafka follower) builds a new set when they change and hands
//! it over in an `Arc`; the engine only reads it.

use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, FixedOffset, Utc};
use serde_json::{Map, Value};

use super::{Decision, DropReason, Dropped, Engine, Outputs};
use crate::agreement::{Agreement, PurposeSet};
use crate::event::Event;

/// Why a suppression applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// GDPR art. 21.
    Objection,
    /// GDPR art. 18.
    Restriction,
    /// The agreement's privacy switch (tracking off during breaks).
    PrivacySwitch,
}

impl Reason {
    pub const NAMES: [&'static str; 3] = ["objection", "restriction", "privacy_switch"];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Objection => "objection",
            Reason::Restriction => "restriction",
            Reason::PrivacySwitch => "privacy_switch",
        }
    }
}

impl std::str::FromStr for Reason {
    type Err = String;

    fn from_str(s: &str) -> Result<Reason, String> {
        match s {
            "objection" => Ok(Reason::Objection),
            "restriction" => Ok(Reason::Restriction),
            "privacy_switch" => Ok(Reason::PrivacySwitch),
            _ => Err(format!("`reason` must be one of objection, restriction, privacy_switch{}", hint(s))),
        }
    }
}

fn hint(s: &str) -> String {
    // Never echo what could be a raw identifier: only a close match of a known word.
    Reason::NAMES.iter().find(|n| strsim::levenshtein(n, s) <= 2).map(|n| format!(" (did you mean `{n}`?)")).unwrap_or_default()
}

/// `KEY_ID ":" HEX`: a worker, without their identifier.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subject {
    pub key_id: String,
    /// The first 32 hex digits of the HMAC, as a number.
    pub digest: u128,
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{:032x}", self.key_id, self.digest)
    }
}

impl std::str::FromStr for Subject {
    type Err = String;

    fn from_str(s: &str) -> Result<Subject, String> {
        let bad = || "`subject` must be KEY_ID:HEX, the key id and 32 lowercase hex digits (as `accord suppress` computes it), never a raw identifier".to_string();
        let (key_id, hex) = s.rsplit_once(':').ok_or_else(bad)?;
        if !crate::valid::key_id(key_id) || hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(bad());
        }
        let digest = u128::from_str_radix(hex, 16).map_err(|_| bad())?;
        Ok(Subject { key_id: key_id.to_string(), digest })
    }
}

/// One suppression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub subject: Subject,
    pub reason: Reason,
    /// `None`: every purpose.
    pub purposes: Option<Vec<String>>,
    pub from: Option<DateTime<FixedOffset>>,
    pub until: Option<DateTime<FixedOffset>>,
}

const KEYS: [&str; 5] = ["subject", "reason", "purposes", "from", "until"];

impl Entry {
    /// Reads one entry; an invalid one is refused with a sentence that never quotes
    /// the subject.
    pub fn parse(json: &[u8]) -> Result<Entry, String> {
        let value: Value = serde_json::from_slice(json).map_err(|_| "a suppression must be one JSON object on one line".to_string())?;
        let Value::Object(map) = value else { return Err("a suppression must be a JSON object".to_string()) };
        Entry::from_map(&map)
    }

    fn from_map(map: &Map<String, Value>) -> Result<Entry, String> {
        for k in map.keys() {
            if !KEYS.contains(&k.as_str()) {
                let name: String = k.chars().take(40).filter(|c| !c.is_control()).collect();
                return Err(format!("unknown key `{name}` in a suppression (known keys: subject, reason, purposes, from, until)"));
            }
        }
        let text = |key: &str| match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(format!("`{key}` must be a string")),
        };
        let subject = text("subject")?.ok_or("a suppression needs a `subject`")?.parse::<Subject>()?;
        let reason = text("reason")?.ok_or("a suppression needs a `reason`: objection, restriction or privacy_switch")?.parse::<Reason>()?;
        let purposes = match map.get("purposes") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => {
                let mut names = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Value::String(s) if !s.is_empty() && s.len() <= 64 => names.push(s.clone()),
                        _ => return Err("`purposes` must be a list of purpose names".to_string()),
                    }
                }
                if names.is_empty() {
                    return Err("`purposes` is empty; leave it out to suppress every purpose".to_string());
                }
                Some(names)
            }
            Some(_) => return Err("`purposes` must be a list of purpose names".to_string()),
        };
        let time = |key: &str| -> Result<Option<DateTime<FixedOffset>>, String> {
            text(key)?.map(|s| DateTime::parse_from_rfc3339(s).map_err(|_| format!("`{key}` must be an RFC 3339 time with an offset, such as 2026-03-02T12:00:00+01:00"))).transpose()
        };
        let (from, until) = (time("from")?, time("until")?);
        if let (Some(f), Some(u)) = (from, until) {
            if u <= f {
                return Err("`until` must be after `from`".to_string());
            }
        }
        Ok(Entry { subject, reason, purposes, from, until })
    }

    /// The entry as one JSON line (keys in SPEC order, absent ones left out).
    pub fn to_json(&self) -> String {
        let mut m = Map::new();
        m.insert("subject".into(), Value::String(self.subject.to_string()));
        m.insert("reason".into(), Value::String(self.reason.as_str().into()));
        if let Some(p) = &self.purposes {
            m.insert("purposes".into(), Value::Array(p.iter().cloned().map(Value::String).collect()));
        }
        if let Some(f) = self.from {
            m.insert("from".into(), Value::String(f.to_rfc3339()));
        }
        if let Some(u) = self.until {
            m.insert("until".into(), Value::String(u.to_rfc3339()));
        }
        Value::Object(m).to_string()
    }

    /// The Kafka record key: `subject "/" reason`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.subject, self.reason.as_str())
    }

    /// Is `at` inside `[from, until)`?
    pub fn covers(&self, at: DateTime<Utc>) -> bool {
        self.from.is_none_or(|f| at >= f) && self.until.is_none_or(|u| at < u)
    }
}

/// An immutable set of suppressions, for one pseudonym key.
#[derive(Debug, Default)]
pub struct Suppressions {
    by_subject: HashMap<u128, Vec<Entry>, foldhash::fast::FixedState>,
    len: usize,
}

impl Suppressions {
    /// The entries written with `key_id` (the gateway's); entries for another key can
    /// never match and are the caller's to refuse ([`Suppressions::refuse_other_key`]).
    pub fn new(key_id: &str, entries: impl IntoIterator<Item = Entry>) -> Suppressions {
        let mut s = Suppressions::default();
        for e in entries {
            if e.subject.key_id == key_id {
                s.len += 1;
                s.by_subject.entry(e.subject.digest).or_default().push(e);
            }
        }
        s
    }

    /// A sentence if the entry was written for another key than the gateway's.
    pub fn refuse_other_key(entry: &Entry, key_id: &str) -> Result<(), String> {
        if entry.subject.key_id == key_id {
            Ok(())
        } else {
            Err(format!("the subject was computed with key id `{}`, but the gateway's key id is `{key_id}`; compute it again with `accord suppress`", entry.subject.key_id))
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The purposes (of this agreement) removed for this subject at `at`.
    pub fn removed(&self, digest: u128, at: DateTime<Utc>, agreement: &Agreement) -> PurposeSet {
        let Some(entries) = self.by_subject.get(&digest) else { return 0 };
        let mut set = 0;
        for e in entries.iter().filter(|e| e.covers(at)) {
            match &e.purposes {
                None => return PurposeSet::MAX,
                Some(names) => {
                    for n in names {
                        if let Some(p) = agreement.purpose_index(n) {
                            set |= 1 << p;
                        }
                    }
                }
            }
        }
        set
    }
}

/// The empty set, for callers without suppressions.
pub static NONE: std::sync::LazyLock<Suppressions> = std::sync::LazyLock::new(Suppressions::default);

impl Engine {
    /// Step 6a: the purposes a suppression names are removed; none left: `suppressed`.
    /// The subject's digest is computed only when the set is not empty.
    pub fn suppress(&self, event: &Event<'_>, decision: Decision, set: &Suppressions, out: &mut Outputs) -> Result<Decision, Dropped> {
        if set.is_empty() {
            return Ok(decision);
        }
        let digest = self.pseudonymiser.suppression_digest(event.subject_id.as_bytes(), &mut out.msg, &mut out.cache);
        let removed = set.removed(digest, event.occurred_at.with_timezone(&Utc), &self.agreement);
        let purposes = decision.purposes & !removed;
        if purposes == 0 {
            return Err(Dropped { reason: DropReason::Suppressed, category: self.agreement.taxonomy.category(&event.category), malformed: None });
        }
        Ok(Decision { purposes, ..decision })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUBJECT: &str = "k7:3f0c00000000000000000000000000aa";

    #[test]
    fn an_entry_reads_strictly() {
        let e = Entry::parse(format!(r#"{{"subject":"{SUBJECT}","reason":"objection","purposes":["planning"],"from":"2026-03-02T12:00:00+01:00","until":"2026-03-02T12:30:00+01:00"}}"#).as_bytes()).unwrap();
        assert_eq!(e.subject.to_string(), SUBJECT);
        assert_eq!(e.reason, Reason::Objection);
        assert_eq!(Entry::parse(e.to_json().as_bytes()).unwrap(), e);
        assert_eq!(e.key(), format!("{SUBJECT}/objection"));
        for (bad, says) in [
            (format!(r#"{{"subject":"{SUBJECT}","reason":"objection","note":"x"}}"#), "unknown key `note`"),
            (format!(r#"{{"subject":"{SUBJECT}","reason":"objecton"}}"#), "did you mean `objection`"),
            (r#"{"subject":"worker-17","reason":"objection"}"#.to_string(), "never a raw identifier"),
            (format!(r#"{{"subject":"{SUBJECT}","reason":"objection","purposes":[]}}"#), "leave it out"),
            (format!(r#"{{"subject":"{SUBJECT}","reason":"objection","from":"2026-03-02"}}"#), "RFC 3339"),
            (format!(r#"{{"subject":"{SUBJECT}","reason":"objection","from":"2026-03-02T12:00:00Z","until":"2026-03-02T12:00:00Z"}}"#), "after `from`"),
            (format!(r#"{{"subject":"{SUBJECT}"}}"#), "needs a `reason`"),
            ("[1]".to_string(), "JSON object"),
        ] {
            let err = Entry::parse(bad.as_bytes()).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
            assert!(!err.contains("worker-17"), "{err}");
        }
    }

    #[test]
    fn the_window_is_half_open() {
        let e = Entry::parse(format!(r#"{{"subject":"{SUBJECT}","reason":"privacy_switch","from":"2026-03-02T12:00:00+01:00","until":"2026-03-02T12:30:00+01:00"}}"#).as_bytes()).unwrap();
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert!(!e.covers(at("2026-03-02T10:59:59Z")));
        assert!(e.covers(at("2026-03-02T11:00:00Z")));
        assert!(e.covers(at("2026-03-02T11:29:59Z")));
        assert!(!e.covers(at("2026-03-02T11:30:00Z")));
    }

    #[test]
    fn a_set_holds_only_its_keys_entries() {
        let e = Entry::parse(format!(r#"{{"subject":"{SUBJECT}","reason":"objection"}}"#).as_bytes()).unwrap();
        let mut other = e.clone();
        other.subject.key_id = "k8".into();
        let set = Suppressions::new("k7", [e.clone(), other.clone()]);
        assert_eq!(set.len(), 1);
        assert!(Suppressions::refuse_other_key(&other, "k7").unwrap_err().contains("`k8`"));
        assert!(Suppressions::refuse_other_key(&e, "k7").is_ok());
    }
}
