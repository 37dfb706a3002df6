//! The audit trail: what was enforced, for auditors and the works council, never the
//! data itself.
//!
//! Append-only JSON Lines, hash-chained: each record holds its sequence number, time,
//! kind, content and the SHA-256 of the record before it, and ends with its own
//! SHA-256 over everything before that field. Changing any byte of a record breaks its
//! own hash; deleting or reordering records breaks the sequence and the chain.
//!
//! A chain alone has no key: whoever can write the file can recompute every hash. So
//! the gateway appends signed **checkpoints** ([`checkpoint`]): at least every minute
//! and at every stop, a record naming the trail (the hash of its record 0), the
//! sequence number and hash of the record before it (the head), signed with Ed25519 by
//! the audit key, a key apart from the pseudonym key whose public half the auditors
//! hold. [`verify`] checks every link and every signature, reports a trail whose last
//! record is not a checkpoint as open, and prints the head an auditor writes down;
//! given an earlier head, it proves the trail extends it. [`report`] summarises a
//! period of a trail that verifies.
pub mod checkpoint;
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
use crate::dpo::signing::{Party, PartyKey};
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
    /// A signed checkpoint ([`checkpoint`]).
    Checkpoint,
    /// A suppression written or lifted (SPEC 2.7): reason, purposes, window; never the subject.
    Suppression,
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
/// agreement changes, counters and checkpoints every interval), never per event.
pub struct AuditTrail {
    path: PathBuf,
    state: Mutex<State>,
    mirror: Option<Mirror>,
    /// Signs the checkpoints; none: the trail gets none (and never verifies as closed).
    key: Option<PartyKey>,
}

struct State {
    file: File,
    next_seq: u64,
    prev: String,
    /// The trail's id: the hash of its record 0 (none while it is empty).
    trail: Option<String>,
    /// The last record is a checkpoint (nothing to sign since).
    signed: bool,
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
        let (mut next_seq, mut prev, mut trail, mut signed) = (0, GENESIS.to_string(), None, false);
        if path.exists() {
            let reader = BufReader::new(File::open(path).map_err(open_err)?);
            let (mut first, mut last) = (None, None);
            for line in reader.lines() {
                let line = line.map_err(open_err)?;
                if !line.trim().is_empty() {
                    if first.is_none() {
                        first = Some(line.clone());
                    }
                    last = Some(line);
                }
            }
            if let (Some(first), Some(line)) = (first, last) {
                let bad = || AuditError::BadTail { path: display.clone(), seq: next_seq };
                let (_, first_hash) = parse_line(&first).ok_or_else(bad)?;
                let (record, hash) = parse_line(&line).ok_or_else(bad)?;
                next_seq = record.seq + 1;
                prev = hash;
                trail = Some(first_hash);
                signed = record.kind == Kind::Checkpoint;
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(open_err)?;
        let state = State { file, next_seq, prev, trail, signed };
        Ok(AuditTrail { path: path.to_path_buf(), state: Mutex::new(state), mirror: None, key: None })
    }

    /// Also sends every new line to `mirror` (after it is on disk).
    pub fn with_mirror(mut self, mirror: Mirror) -> AuditTrail {
        self.mirror = Some(mirror);
        self
    }

    /// Signs checkpoints with `key` (the audit key, never the pseudonym key).
    pub fn with_key(mut self, key: PartyKey) -> AuditTrail {
        self.key = Some(key);
        self
    }

    /// Whether checkpoints are signed.
    pub fn signs(&self) -> bool {
        self.key.is_some()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The last record's sequence number and hash (none while the trail is empty).
    pub fn head(&self) -> Option<Head> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.next_seq.checked_sub(1).map(|seq| Head { seq, hash: state.prev.clone() })
    }

    /// Appends one record, synced to disk before it returns.
    pub fn append(&self, kind: Kind, content: Value) -> Result<u64, AuditError> {
        self.append_at(kind, content, Utc::now())
    }

    pub fn append_at(&self, kind: Kind, content: Value, time: DateTime<Utc>) -> Result<u64, AuditError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.append_locked(&mut state, kind, content, time)
    }

    /// Appends a signed checkpoint over everything before it, unless the trail is
    /// empty, its last record already is one, or it has no key. Returns its sequence
    /// number.
    pub fn checkpoint(&self) -> Result<Option<u64>, AuditError> {
        let Some(key) = &self.key else { return Ok(None) };
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some(trail) = state.trail.clone() else { return Ok(None) };
        if state.signed {
            return Ok(None);
        }
        let time = Utc::now();
        let head = Head { seq: state.next_seq - 1, hash: state.prev.clone() };
        let content = checkpoint::sign(key, &trail, &head, &stamp(time));
        self.append_locked(&mut state, Kind::Checkpoint, content, time).map(Some)
    }

    fn append_locked(&self, state: &mut State, kind: Kind, content: Value, time: DateTime<Utc>) -> Result<u64, AuditError> {
        let record = Record { seq: state.next_seq, time: stamp(time), kind, content, prev: std::mem::take(&mut state.prev) };
        let (line, hash) = seal(&record);
        let written = state.file.write_all(&line).and_then(|()| state.file.sync_data());
        if let Err(source) = written {
            state.prev = record.prev;
            return Err(AuditError::Write { path: self.path.display().to_string(), source });
        }
        state.next_seq += 1;
        state.trail.get_or_insert_with(|| hash.clone());
        state.prev = hash;
        state.signed = kind == Kind::Checkpoint;
        // Still under the lock, so the copy receives the lines in the file's order
        // (a mirror only hands the line over, it does not wait for it).
        if let Some(mirror) = &self.mirror {
            mirror(&line[..line.len() - 1]);
        }
        Ok(record.seq)
    }
}

fn stamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
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

/// A point in a trail an auditor writes down: a record's sequence number and hash,
/// written `SEQ:HASH`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub hash: String,
}

impl std::fmt::Display for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.seq, self.hash)
    }
}

impl std::str::FromStr for Head {
    type Err = String;

    fn from_str(s: &str) -> Result<Head, String> {
        let bad = || format!("a head is SEQ:HASH, a sequence number and 64 lowercase hex digits as `accord audit verify` prints it, not `{}`", s.chars().take(80).collect::<String>());
        let (seq, hash) = s.trim().split_once(':').ok_or_else(bad)?;
        let seq = seq.parse().map_err(|_| bad())?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(bad());
        }
        Ok(Head { seq, hash: hash.to_string() })
    }
}

/// Why a trail does not verify, in the words [`Broken::why`] gives; the code is for
/// machines (JSON).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// Not a sealed record.
    Unreadable,
    /// Its content does not match its hash.
    Changed,
    /// Another sequence number in its place: records removed, inserted or reordered.
    OutOfOrder,
    /// Its `prev` is not the hash of the record before.
    Unlinked,
    /// A checkpoint that cannot be read, names another trail or another head.
    BadCheckpoint,
    /// A checkpoint whose signature the audit key did not make (records before it
    /// rewritten since it was signed, or signed with another key).
    BadSignature,
    /// The trail does not hold the head recorded before (`--since`).
    NotExtension,
}

/// The first problem in a trail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broken {
    /// 1-based line of the file (for a copy on a topic, the record's offset).
    pub line: usize,
    /// The sequence number expected there.
    pub seq: u64,
    pub fault: Fault,
    pub why: String,
}

/// What [`verify`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// Records whose links (and, for checkpoints, signatures) verify.
    pub records: u64,
    pub broken: Option<Broken>,
    /// The last verified record.
    pub head: Option<Head>,
    /// Verified checkpoints.
    pub checkpoints: u64,
    /// Records after the last checkpoint (all of them when there is none).
    pub unsigned: u64,
}

impl Verified {
    /// Every link verifies and the last record is a signed checkpoint.
    pub fn closed(&self) -> bool {
        self.broken.is_none() && self.checkpoints > 0 && self.unsigned == 0
    }
}

/// What a trail must satisfy besides its links.
#[derive(Clone, Debug)]
pub struct Expect {
    /// The audit key's public half: every checkpoint must be signed by it.
    pub key: Party,
    /// A head recorded before: the trail must hold it (it extends that trail).
    pub since: Option<Head>,
}

/// Checks every link of a trail: each line's own hash, its sequence number, that its
/// `prev` is the hash of the record before, and every checkpoint's signature.
pub fn verify(input: impl BufRead, expect: &Expect) -> io::Result<Verified> {
    let mut chain = Chain::new(expect.clone());
    for (i, line) in input.split(b'\n').enumerate() {
        let line = line?;
        if line.is_empty() && chain.broken.is_none() {
            // A final newline (or blank lines) carries no record.
            chain.blank = chain.blank.or(Some(i + 1));
            continue;
        }
        if !chain.push(&line, i + 1) {
            break;
        }
    }
    Ok(chain.verified())
}

/// One trail checked line by line, as its lines arrive (from a file, or from a topic
/// where several gateways' trails are interleaved, one [`Chain`] each).
#[derive(Clone, Debug)]
pub struct Chain {
    expect: Expect,
    prev: String,
    seq: u64,
    trail: Option<String>,
    checkpoints: u64,
    unsigned: u64,
    broken: Option<Broken>,
    /// A blank line seen (only a record after it is a fault).
    blank: Option<usize>,
    /// Where the last record was (for a `--since` beyond the end).
    last_at: usize,
}

impl Chain {
    pub fn new(expect: Expect) -> Chain {
        Chain { expect, prev: GENESIS.to_string(), seq: 0, trail: None, checkpoints: 0, unsigned: 0, broken: None, blank: None, last_at: 0 }
    }

    /// Checks the next line (`at`: where it is, for the report); false once the
    /// chain is broken (later lines are not looked at).
    pub fn push(&mut self, line: &[u8], at: usize) -> bool {
        if self.broken.is_some() {
            return false;
        }
        let seq = self.seq;
        let fault = |fault: Fault, why: String| Some((fault, why));
        let found = match parse_sealed(line) {
            _ if self.blank.is_some() => fault(Fault::Unreadable, format!("record {seq} cannot be read: a blank line comes before it")),
            None => fault(Fault::Unreadable, format!("record {seq} cannot be read: it is not a sealed audit record")),
            Some((_, stated, actual)) if actual != stated => fault(Fault::Changed, format!("record {seq} was changed: its content does not match its hash")),
            Some((record, _, _)) if record.seq != seq => {
                fault(Fault::OutOfOrder, format!("record {seq} is missing or out of order: found record {} in its place", record.seq))
            }
            Some((record, _, _)) if record.prev != self.prev => fault(Fault::Unlinked, format!("record {seq} does not follow the record before it (the chain is broken)")),
            Some((record, stated, _)) => self.accept(&record, stated),
        };
        if let Some((fault, why)) = found {
            self.broken = Some(Broken { line: at, seq, fault, why });
            return false;
        }
        self.last_at = at;
        true
    }

    /// A record whose links hold: its checkpoint (if it is one) and the earlier head.
    fn accept(&mut self, record: &Record, hash: String) -> Option<(Fault, String)> {
        let seq = record.seq;
        let trail = self.trail.get_or_insert_with(|| hash.clone());
        if record.kind == Kind::Checkpoint {
            let head = Head { seq: seq.wrapping_sub(1), hash: self.prev.clone() };
            if let Some(fault) = checkpoint::check(&self.expect.key, trail, &head, record) {
                return Some(fault);
            }
            self.checkpoints += 1;
            self.unsigned = 0;
        } else {
            self.unsigned += 1;
        }
        if let Some(since) = &self.expect.since {
            if since.seq == seq && since.hash != hash {
                return Some((Fault::NotExtension, format!("record {seq} is not the head recorded before ({since}): the trail was changed at or before it")));
            }
        }
        self.prev = hash;
        self.seq += 1;
        None
    }

    /// What was found so far: the records verified, and the first broken link.
    pub fn verified(&self) -> Verified {
        let mut broken = self.broken.clone();
        if let (None, Some(since)) = (&broken, &self.expect.since) {
            if since.seq >= self.seq {
                let why = format!("the trail ends at record {} before the head recorded before ({since}): records were removed from its end", self.seq);
                broken = Some(Broken { line: self.last_at + 1, seq: self.seq, fault: Fault::NotExtension, why });
            }
        }
        let head = self.seq.checked_sub(1).map(|seq| Head { seq, hash: self.prev.clone() });
        Verified { records: self.seq, broken, head, checkpoints: self.checkpoints, unsigned: self.unsigned }
    }
}

/// Reads every record of a trail (for reports), stopping at the first unreadable one.
/// Call it on a trail that [`verify`] passed.
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
    use crate::dpo::signing::AUDIT_PARTY;

    fn key(seed: u8) -> PartyKey {
        PartyKey::from_seed(AUDIT_PARTY, [seed; 32])
    }

    fn expect() -> Expect {
        Expect { key: key(7).public(), since: None }
    }

    /// `n` counters records, a checkpoint after every third, and one at the end.
    fn trail(n: u64) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let t = AuditTrail::open(&path).unwrap().with_key(key(7));
        for i in 0..n {
            t.append(Kind::Counters, serde_json::json!({"received": i})).unwrap();
            if i % 3 == 2 {
                t.checkpoint().unwrap().unwrap();
            }
        }
        t.checkpoint().unwrap();
        (dir, path)
    }

    fn check(bytes: &[u8]) -> Verified {
        verify(bytes, &expect()).unwrap()
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path).unwrap().lines().map(str::to_string).collect()
    }

    /// Rewrites `records` with every hash recomputed (and the seqs renumbered): what
    /// anyone who can write the file, but has no audit key, can do.
    fn reseal(records: Vec<Record>) -> Vec<u8> {
        let mut prev = GENESIS.to_string();
        let mut out = Vec::new();
        for (i, mut r) in records.into_iter().enumerate() {
            r.seq = i as u64;
            r.prev = prev;
            let (line, hash) = seal(&r);
            out.extend_from_slice(&line);
            prev = hash;
        }
        out
    }

    fn records(path: &Path) -> Vec<Record> {
        read(BufReader::new(File::open(path).unwrap())).unwrap()
    }

    #[test]
    fn an_untouched_trail_verifies_closed_and_reopening_continues_the_chain() {
        let (_d, path) = trail(3);
        let v = check(&std::fs::read(&path).unwrap());
        assert!(v.closed(), "{v:?}");
        assert_eq!((v.records, v.checkpoints, v.unsigned), (4, 1, 0));
        let t = AuditTrail::open(&path).unwrap().with_key(key(7));
        assert_eq!(t.checkpoint().unwrap(), None, "nothing to sign since the last checkpoint");
        t.append(Kind::GatewayStopped, Value::Null).unwrap();
        let v = check(&std::fs::read(&path).unwrap());
        assert_eq!((v.records, v.unsigned, v.closed()), (5, 1, false));
        assert_eq!(t.checkpoint().unwrap(), Some(5));
        let v = check(&std::fs::read(&path).unwrap());
        assert!(v.closed());
        assert_eq!(v.head.as_ref().map(|h| h.seq), Some(5));
        assert_eq!(v.head.unwrap().hash, parse_line(lines(&path).last().unwrap()).unwrap().1);
    }

    #[test]
    fn without_a_key_a_trail_has_no_checkpoint_and_is_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        let t = AuditTrail::open(&path).unwrap();
        t.append(Kind::GatewayStarted, Value::Null).unwrap();
        assert_eq!(t.checkpoint().unwrap(), None);
        let v = check(&std::fs::read(&path).unwrap());
        assert_eq!((v.broken.clone(), v.checkpoints, v.unsigned, v.closed()), (None, 0, 1, false));
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
        let lines = lines(&path);
        let deleted = [&lines[..2], &lines[3..]].concat().join("\n");
        assert_eq!(check(deleted.as_bytes()).broken.unwrap().seq, 2);
        let mut swapped = lines.clone();
        swapped.swap(1, 3);
        assert_eq!(check(swapped.join("\n").as_bytes()).broken.unwrap().fault, Fault::OutOfOrder);
    }

    #[test]
    fn records_cut_from_the_end_leave_the_trail_open_with_the_count() {
        let (_d, path) = trail(7); // checkpoints at 3, 7 and 9
        let lines = lines(&path);
        assert_eq!(lines.len(), 10);
        for keep in 1..lines.len() {
            let v = check(lines[..keep].join("\n").as_bytes());
            assert_eq!(v.broken, None);
            let last_checkpoint = lines[..keep].iter().rposition(|l| l.contains("\"kind\":\"checkpoint\""));
            assert_eq!(v.unsigned, (keep - last_checkpoint.map_or(0, |i| i + 1)) as u64, "{keep} kept");
            assert_eq!(v.closed(), last_checkpoint == Some(keep - 1));
        }
    }

    #[test]
    fn a_rewrite_with_every_hash_recomputed_fails_at_the_next_checkpoint() {
        let (_d, path) = trail(5); // counters 0 1 2, checkpoint 3, counters 4 5, checkpoint 6
        let mut rs = records(&path);
        rs[4].content["received"] = 99.into();
        let v = check(&reseal(rs));
        let broken = v.broken.unwrap();
        assert_eq!((broken.seq, broken.fault), (6, Fault::BadCheckpoint), "{}", broken.why);
        // The forger also rewrites the checkpoint's head: the signature fails.
        let mut rs = records(&path);
        rs[4].content["received"] = 99.into();
        let forged = reseal(rs.clone());
        let head = parse_line(std::str::from_utf8(&forged).unwrap().lines().nth(5).unwrap()).unwrap().1;
        rs[6].content["head"] = head.into();
        let broken = check(&reseal(rs)).broken.unwrap();
        assert_eq!((broken.seq, broken.fault), (6, Fault::BadSignature), "{}", broken.why);
        // Or drops every checkpoint: nothing verifies as closed.
        let rs: Vec<Record> = records(&path).into_iter().filter(|r| r.kind != Kind::Checkpoint).collect();
        let v = check(&reseal(rs));
        assert_eq!((v.broken.clone(), v.checkpoints, v.closed()), (None, 0, false));
    }

    #[test]
    fn a_checkpoint_signed_with_another_key_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        let t = AuditTrail::open(&path).unwrap().with_key(key(8));
        t.append(Kind::GatewayStarted, Value::Null).unwrap();
        t.checkpoint().unwrap();
        let broken = check(&std::fs::read(&path).unwrap()).broken.unwrap();
        assert_eq!((broken.seq, broken.fault), (1, Fault::BadSignature));
        assert!(broken.why.contains(&key(7).public().fingerprint()), "{}", broken.why);
    }

    #[test]
    fn since_proves_an_extension_of_an_earlier_head() {
        let (_d, path) = trail(4);
        let before = check(&std::fs::read(&path).unwrap()).head.unwrap();
        assert_eq!(before.to_string().parse::<Head>().unwrap(), before);
        let t = AuditTrail::open(&path).unwrap().with_key(key(7));
        t.append(Kind::GatewayStarted, Value::Null).unwrap();
        t.checkpoint().unwrap();
        let since = |head: Head, bytes: &[u8]| verify(bytes, &Expect { key: key(7).public(), since: Some(head) }).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert!(since(before.clone(), &bytes).closed());
        // A rewrite of the trail up to that head (properly signed: the forger has the
        // key) no longer holds the head recorded.
        let mut rs = records(&path);
        rs[1].content["received"] = 99.into();
        rs.retain(|r| r.kind != Kind::Checkpoint);
        let resealed = reseal(rs);
        let v = since(before.clone(), &resealed);
        assert_eq!(v.broken.unwrap().fault, Fault::NotExtension);
        // A trail cut before the head.
        let cut: Vec<String> = lines(&path)[..before.seq as usize].to_vec();
        let broken = since(before, cut.join("\n").as_bytes()).broken.unwrap();
        assert_eq!(broken.fault, Fault::NotExtension);
        assert!(broken.why.contains("records were removed"), "{}", broken.why);
        assert!("3:abc".parse::<Head>().is_err());
    }

    proptest::proptest! {
        /// Whatever records are removed, duplicated or moved, a trail that is not the
        /// original nor a prefix of it does not verify; a prefix is open unless it
        /// ends on a checkpoint.
        #[test]
        fn any_edit_of_the_record_list_is_found(edits in proptest::collection::vec((0usize..12, 0usize..12, 0u8..3), 1..4)) {
            static ORIGINAL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
            let original = ORIGINAL.get_or_init(|| lines(&trail(8).1));
            let mut l = original.clone();
            for (a, b, op) in edits {
                let (a, b) = (a % l.len().max(1), b % l.len().max(1));
                if l.is_empty() { break; }
                match op {
                    0 => { l.remove(a); }
                    1 => { let x = l[a].clone(); l.insert(b, x); }
                    _ => l.swap(a, b),
                }
            }
            let v = check(l.join("\n").as_bytes());
            if l == original[..l.len().min(original.len())] {
                proptest::prop_assert!(v.broken.is_none());
                proptest::prop_assert_eq!(v.closed(), l.last().is_some_and(|x| x.contains("\"kind\":\"checkpoint\"")));
            } else {
                proptest::prop_assert!(v.broken.is_some());
            }
        }
    }
}
