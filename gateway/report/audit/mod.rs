//! The audit trail: what was enforced, for auditors and the works council, never the
//! data itself.
//!
//! Append-only JSON Lines, hash-chained: each record holds its sequence number, time,
//! kind, content and the SHA-256 of the record before it, and ends with its own
//! SHA-256 over everything before that field. Changing any byte of a record breaks its
//! own hash; deleting or reordering records breaks the sequence and the chain.
//! [`verify`] finds the first broken link; [`report`] summarises a period.

pub mod report;

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::agreement::Agreement;
use crate::report::tally::Tally;

/// The `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a record is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    GatewayStarted,
    GatewayStopped,
    AgreementLoaded,
    AgreementRefused,
    Counters,
    PseudonymLookup,
}

/// One record as it is written (the `hash` field follows it on the line).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub seq: u64,
    pub time: String,
    pub kind: Kind,
    pub content: Value,
    pub prev: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot open the audit trail {path}")]
    Open { path: String, source: io::Error },
    #[error("cannot write to the audit trail {path}")]
    Write { path: String, source: io::Error },
    #[error("the audit trail {path} ends in a record that cannot be read (sequence {seq}); run `accord audit verify` on it")]
    BadTail { path: String, seq: u64 },
}

/// Where each appended line is also sent (the audit topic, in Kafka mode).
pub type Mirror = Box<dyn Fn(&[u8]) + Send + Sync>;

/// An open trail. Appends are serialised by a mutex: records are rare (start, stop,
/// agreement changes, counters every interval), never per event.
pub struct AuditTrail {
    path: PathBuf,
    state: Mutex<State>,
    mirror: Option<Mirror>,
}

struct State {
    file: File,
    next_seq: u64,
    prev: String,
}

impl std::fmt::Debug for AuditTrail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditTrail").field("path", &self.path).finish_non_exhaustive()
    }
}

impl AuditTrail {
    /// Opens (or creates) a trail and continues its chain.
    pub fn open(path: &Path) -> Result<AuditTrail, AuditError> {
        let display = path.display().to_string();
        let open_err = |source| AuditError::Open { path: display.clone(), source };
        let (mut next_seq, mut prev) = (0, GENESIS.to_string());
        if path.exists() {
            let reader = BufReader::new(File::open(path).map_err(open_err)?);
            let mut last = None;
            for line in reader.lines() {
                let line = line.map_err(open_err)?;
                if !line.trim().is_empty() {
                    last = Some(line);
                }
            }
            if let Some(line) = last {
                let (record, hash) = parse_line(&line).ok_or(AuditError::BadTail { path: display.clone(), seq: next_seq })?;
                next_seq = record.seq + 1;
                prev = hash;
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(open_err)?;
        Ok(AuditTrail { path: path.to_path_buf(), state: Mutex::new(State { file, next_seq, prev }), mirror: None })
    }

    /// Also sends every new line to `mirror` (after it is on disk).
    pub fn with_mirror(mut self, mirror: Mirror) -> AuditTrail {
        self.mirror = Some(mirror);
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record, synced to disk before it returns.
    pub fn append(&self, kind: Kind, content: Value) -> Result<u64, AuditError> {
        self.append_at(kind, content, Utc::now())
    }

    pub fn append_at(&self, kind: Kind, content: Value, time: DateTime<Utc>) -> Result<u64, AuditError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let record = Record { seq: state.next_seq, time: time.to_rfc3339_opts(SecondsFormat::Millis, true), kind, content, prev: state.prev.clone() };
        let (line, hash) = seal(&record);
        let write_err = |source| AuditError::Write { path: self.path.display().to_string(), source };
        state.file.write_all(&line).map_err(write_err)?;
        state.file.sync_data().map_err(write_err)?;
        state.next_seq += 1;
        state.prev = hash;
        // Still under the lock, so the copy receives the lines in the file's order
        // (a mirror only hands the line over, it does not wait for it).
        if let Some(mirror) = &self.mirror {
            mirror(&line[..line.len() - 1]);
        }
        drop(state);
        Ok(record.seq)
    }
}

/// The record's line (with its hash, and a newline) and its hash.
fn seal(record: &Record) -> (Vec<u8>, String) {
    let mut body = serde_json::to_vec(record).expect("a record serialises");
    let hash = hex::encode(Sha256::digest(&body));
    body.pop(); // the closing brace
    body.extend_from_slice(b",\"hash\":\"");
    body.extend_from_slice(hash.as_bytes());
    body.extend_from_slice(b"\"}\n");
    (body, hash)
}

/// Splits a line into its record and its stated hash, if it has the trail's shape.
fn parse_line(line: &str) -> Option<(Record, String)> {
    parse_sealed(line.as_bytes()).map(|(r, stated, _)| (r, stated))
}

/// A line's record, its stated hash, and the hash its bytes actually have.
fn parse_sealed(line: &[u8]) -> Option<(Record, String, String)> {
    const TAIL: usize = ",\"hash\":\"".len() + 64 + "\"}".len();
    if line.len() < TAIL || !line.ends_with(b"\"}") {
        return None;
    }
    let (body, tail) = line.split_at(line.len() - TAIL);
    let stated = std::str::from_utf8(tail).ok()?.strip_prefix(",\"hash\":\"")?.strip_suffix("\"}")?.to_string();
    let mut sealed = body.to_vec();
    sealed.push(b'}');
    let actual = hex::encode(Sha256::digest(&sealed));
    let record: Record = serde_json::from_slice(&sealed).ok()?;
    Some((record, stated, actual))
}

/// The first problem in a trail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broken {
    /// 1-based line of the file (for a copy on a topic, the record's offset).
    pub line: usize,
    /// The sequence number expected there.
    pub seq: u64,
    pub why: String,
}

/// What [`verify`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub records: u64,
    pub broken: Option<Broken>,
}

/// Checks every link of a trail: each line's own hash, its sequence number, and that
/// its `prev` is the hash of the record before.
pub fn verify(input: impl BufRead) -> io::Result<Verified> {
    let mut chain = Chain::new();
    for (i, line) in input.split(b'\n').enumerate() {
        if !chain.push(&line?, i + 1) {
            break;
        }
    }
    Ok(chain.verified())
}

/// One trail checked line by line, as its lines arrive (from a file, or from a topic
/// where several gateways' trails are interleaved, one [`Chain`] each).
#[derive(Clone, Debug)]
pub struct Chain {
    prev: String,
    seq: u64,
    broken: Option<Broken>,
}

impl Default for Chain {
    fn default() -> Chain {
        Chain::new()
    }
}

impl Chain {
    pub fn new() -> Chain {
        Chain { prev: GENESIS.to_string(), seq: 0, broken: None }
    }

    /// Checks the next line (`at`: where it is, for the report); false once the
    /// chain is broken (later lines are not looked at).
    pub fn push(&mut self, line: &[u8], at: usize) -> bool {
        if self.broken.is_some() {
            return false;
        }
        let seq = self.seq;
        let why = match parse_sealed(line) {
            None => Some(format!("record {seq} cannot be read: it is not a sealed audit record")),
            Some((_, stated, actual)) if actual != stated => Some(format!("record {seq} was changed: its content does not match its hash")),
            Some((record, _, _)) if record.seq != seq => Some(format!("record {seq} is missing or out of order: found record {} in its place", record.seq)),
            Some((record, _, _)) if record.prev != self.prev => Some(format!("record {seq} does not follow the record before it (the chain is broken)")),
            Some((_, stated, _)) => {
                self.prev = stated;
                self.seq += 1;
                None
            }
        };
        if let Some(why) = why {
            self.broken = Some(Broken { line: at, seq, why });
            return false;
        }
        true
    }

    /// What was found so far: the records verified, and the first broken link.
    pub fn verified(&self) -> Verified {
        Verified { records: self.seq, broken: self.broken.clone() }
    }
}

/// Reads every record of a trail (for reports), stopping at the first unreadable one.
pub fn read(input: impl BufRead) -> io::Result<Vec<Record>> {
    let mut out = Vec::new();
    for line in input.lines() {
        match parse_line(&line?) {
            Some((r, _)) => out.push(r),
            None => break,
        }
    }
    Ok(out)
}

// ---- The contents of each kind of record. ----

/// `agreement_loaded`: who agreed what, identified by the file's SHA-256.
pub fn agreement_loaded(a: &Agreement) -> Value {
    serde_json::json!({
        "agreement": a.id,
        "version": a.version,
        "parties": a.parties,
        "sha256": a.sha256,
        "valid_from": a.valid_from.map(|t| t.to_rfc3339()),
        "valid_until": a.valid_until.map(|t| t.to_rfc3339()),
        "purposes": a.purposes.iter().map(|p| &p.name).collect::<Vec<_>>(),
        "rules": a.rules.iter().map(|r| &r.name).collect::<Vec<_>>(),
    })
}

/// `counters`: what was enforced since the last counters record.
pub fn counters(a: &Agreement, t: &Tally, since: DateTime<Utc>, until: DateTime<Utc>) -> Value {
    let np = a.purposes.len();
    let forwarded: Vec<Value> = t
        .forwarded
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(i, n)| serde_json::json!({"purpose": a.purposes[i % np].name, "rule": a.rules[i / np].name, "count": n}))
        .collect();
    let dropped: Vec<Value> = t.drops(a).map(|(r, c, n)| serde_json::json!({"reason": r.as_str(), "category": c, "count": n})).collect();
    let per_rule = |v: &[u64]| -> Vec<Value> { v.iter().enumerate().filter(|(_, n)| **n > 0).map(|(i, n)| serde_json::json!({"rule": a.rules[i].name, "count": n})).collect() };
    let pseudonymised: Vec<Value> = t
        .fields_pseudonymised
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(i, n)| serde_json::json!({"purpose": a.purposes[i].name, "count": n}))
        .collect();
    serde_json::json!({
        "agreement": a.id,
        "version": a.version,
        "since": since.to_rfc3339_opts(SecondsFormat::Millis, true),
        "until": until.to_rfc3339_opts(SecondsFormat::Millis, true),
        "received": t.received,
        "forwarded": forwarded,
        "dropped": dropped,
        "fields_removed": per_rule(&t.fields_removed),
        "fields_pseudonymised": pseudonymised,
        "fields_generalised": per_rule(&t.fields_generalised),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trail(n: u64) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let t = AuditTrail::open(&path).unwrap();
        for i in 0..n {
            t.append(Kind::Counters, serde_json::json!({"received": i})).unwrap();
        }
        (dir, path)
    }

    fn check(bytes: &[u8]) -> Verified {
        verify(bytes).unwrap()
    }

    #[test]
    fn an_untouched_trail_verifies_and_reopening_continues_the_chain() {
        let (_d, path) = trail(3);
        AuditTrail::open(&path).unwrap().append(Kind::GatewayStopped, Value::Null).unwrap();
        let v = check(&std::fs::read(&path).unwrap());
        assert_eq!(v, Verified { records: 4, broken: None });
    }

    #[test]
    fn any_flipped_byte_breaks_the_record_it_is_in() {
        let (_d, path) = trail(4);
        let bytes = std::fs::read(&path).unwrap();
        let starts: Vec<usize> = std::iter::once(0).chain(bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1)).collect();
        for pos in 0..bytes.len() {
            if bytes[pos] == b'\n' {
                continue;
            }
            let mut changed = bytes.clone();
            changed[pos] ^= 0x01;
            let line = starts.iter().rposition(|s| *s <= pos).unwrap();
            let v = check(&changed);
            let broken = v.broken.unwrap_or_else(|| panic!("flip at byte {pos} not detected"));
            assert_eq!(broken.seq, line as u64, "flip at byte {pos}");
        }
    }

    #[test]
    fn deleting_or_reordering_records_is_found_at_its_place() {
        let (_d, path) = trail(5);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let deleted = [&lines[..2], &lines[3..]].concat().join("\n");
        assert_eq!(check(deleted.as_bytes()).broken.unwrap().seq, 2);
        let mut swapped = lines.clone();
        swapped.swap(1, 3);
        assert_eq!(check(swapped.join("\n").as_bytes()).broken.unwrap().seq, 1);
    }
}
