//! Signed checkpoints: what makes the trail's chain a chain nobody can rewrite
//! without the audit key.
//!
//! A checkpoint is a record of kind `checkpoint` whose content is
//!
//! ```json
//! {"trail": "<hash of record 0>", "seq": 41, "head": "<hash of record 41>",
//!  "key": "<fingerprint of the audit key>", "signature": "<128 hex digits>"}
//! ```
//!
//! where `seq` and `head` name the record just before it. The signature is plain
//! Ed25519 (RFC 8032) over the text
//!
//! ```text
//! accord audit checkpoint v1
//! trail: <trail>
//! seq: <seq>
//! head: <head>
//! time: <the checkpoint record's time>
//! ```
//!
//! (each line ending in `\n`), so any Ed25519 tool can check it. The head hash covers
//! every record before it through the chain, so one valid signature vouches for the
//! whole trail up to it. The gateway appends one at least every minute (the
//! [`Checkpoints`] thread), after its last record at every stop, and `accord pseudonym`
//! after its look-up.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

use super::{AuditTrail, Fault, Head, Record};
use crate::dpo::signing::{Party, PartyKey};

/// The longest time between two checkpoints (SPEC 7: at least every minute).
pub const MAX_INTERVAL: Duration = Duration::from_secs(60);

/// The text a checkpoint's signature signs.
pub fn message(trail: &str, head: &Head, time: &str) -> String {
    format!("accord audit checkpoint v1\ntrail: {trail}\nseq: {}\nhead: {}\ntime: {time}\n", head.seq, head.hash)
}

/// A checkpoint's content over `head` of `trail`, signed at `time`.
pub fn sign(key: &PartyKey, trail: &str, head: &Head, time: &str) -> Value {
    let signature = key.sign_hex(message(trail, head, time).as_bytes());
    serde_json::json!({"trail": trail, "seq": head.seq, "head": head.hash, "key": key.public().fingerprint(), "signature": signature})
}

/// Checks a checkpoint record: it names this trail and the record before it (`head`),
/// and `key` signed it.
pub(super) fn check(key: &Party, trail: &str, head: &Head, record: &Record) -> Option<(Fault, String)> {
    let seq = record.seq;
    let c = &record.content;
    let (Some(named_trail), Some(named_seq), Some(named_head), Some(signature)) = (c["trail"].as_str(), c["seq"].as_u64(), c["head"].as_str(), c["signature"].as_str())
    else {
        return Some((Fault::BadCheckpoint, format!("record {seq} is a checkpoint that cannot be read (it lacks its trail, sequence number, head or signature)")));
    };
    if named_trail != trail {
        return Some((Fault::BadCheckpoint, format!("record {seq} is a checkpoint of another trail")));
    }
    if named_seq != head.seq || named_head != head.hash {
        return Some((Fault::BadCheckpoint, format!("record {seq} is a checkpoint that does not name the record before it: records before it were changed since it was signed")));
    }
    if !key.verifies(message(trail, head, &record.time).as_bytes(), signature) {
        let by = c["key"].as_str().filter(|k| *k != key.fingerprint()).map(|k| format!(" (it names key {k}, the key given is {})", key.fingerprint())).unwrap_or_default();
        return Some((
            Fault::BadSignature,
            format!("record {seq} is a checkpoint whose signature the audit key did not make{by}: it was signed with another key, or the records before it were rewritten"),
        ));
    }
    None
}

/// The thread that appends a checkpoint every `every` while records come (none while
/// the last record already is one). Stops, without a last checkpoint, when dropped:
/// the stop itself appends the last one, after its own record.
pub struct Checkpoints {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpoints {
    pub fn spawn(trail: Arc<AuditTrail>, every: Duration) -> std::io::Result<Checkpoints> {
        let every = every.min(MAX_INTERVAL);
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new().name("accord-checkpoints".into()).spawn(move || loop {
            match stopped.recv_timeout(every) {
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(e) = trail.checkpoint() {
                        tracing::error!("cannot append a checkpoint to the audit trail: {e}");
                    }
                }
                _ => return,
            }
        })?;
        Ok(Checkpoints { stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for Checkpoints {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
