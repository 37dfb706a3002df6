//! The suppressions in force (SPEC 2.7), as the shells hold them.
//!
//! The engine reads an immutable [`Suppressions`] set; this module keeps the current
//! one in a [`Live`] cell that the enforcement step loads once per record (a lock-free
//! pointer read) and that a loader swaps whole when entries change: the file of file
//! mode, read once at start, or the Kafka follower (`kafka/suppressions.rs`). Every
//! swap sets the `accord_suppressions` gauge to the number of entries in force.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::engine::suppress::{Entry, Suppressions};

/// The set in force, swapped whole.
pub type Live = Arc<ArcSwap<Suppressions>>;

/// A cell holding the empty set.
pub fn none() -> Live {
    Arc::new(ArcSwap::from_pointee(Suppressions::default()))
}

/// Puts a new set in force and says so on the gauge.
pub fn swap(live: &Live, set: Suppressions) {
    gauge(set.len());
    live.store(Arc::new(set));
}

/// Sets `accord_suppressions`.
pub fn gauge(n: usize) {
    metrics::gauge!("accord_suppressions").set(n as f64);
}

/// A suppression file read: the entries in force and a sentence per refused line.
#[derive(Debug, Default)]
pub struct Loaded {
    pub entries: Vec<Entry>,
    /// `FILE:LINE: why`, one per refused line; never the line's content.
    pub refused: Vec<String>,
}

/// Reads a JSON Lines suppression file: every valid record is in force; each invalid
/// one (or one written for another key id) is refused at its line, the rest stay.
pub fn read_file(path: &Path, key_id: &str) -> std::io::Result<Loaded> {
    let bytes = std::fs::read(path)?;
    Ok(read_lines(&path.display().to_string(), &bytes, key_id))
}

/// As [`read_file`], from bytes; `name` is the file's name in the sentences.
pub fn read_lines(name: &str, bytes: &[u8], key_id: &str) -> Loaded {
    let mut out = Loaded::default();
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        match Entry::parse(line).and_then(|e| Suppressions::refuse_other_key(&e, key_id).map(|()| e)) {
            Ok(e) => out.entries.push(e),
            Err(why) => out.refused.push(format!("{name}:{}: the suppression is refused: {why}", i + 1)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_lines_are_refused_at_their_line_and_the_rest_stay_in_force() {
        let good = r#"{"subject":"k1:0123456789abcdef0123456789abcdef","reason":"objection"}"#;
        let text = format!("{good}\n\n{{\"subject\":\"worker-17\",\"reason\":\"objection\"}}\nnot json\n{}\n{good}\n", good.replace("k1:", "k2:"));
        let loaded = read_lines("S", text.as_bytes(), "k1");
        assert_eq!(loaded.entries.len(), 2);
        assert_eq!(loaded.refused.len(), 3, "{:?}", loaded.refused);
        assert!(loaded.refused[0].starts_with("S:3: the suppression is refused: `subject` must be KEY_ID:HEX"));
        assert!(loaded.refused[1].starts_with("S:4: "));
        assert!(loaded.refused[2].starts_with("S:5: ") && loaded.refused[2].contains("key id `k2`"));
        assert!(loaded.refused.iter().all(|r| !r.contains("worker-17")));
    }
}
