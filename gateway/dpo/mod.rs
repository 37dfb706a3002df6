//! The data protection officer's tools around an agreement, before it goes live.
//!
//! - [`cases`]: `accord test`: test cases kept beside the agreement (an event and the
//!   outcome the DPO expects), run through the same engine the gateway runs.
//! - [`diff`]: `accord diff`: what changes in enforcement between two agreements, in
//!   sentences a works council understands, and optionally on a sample of events.
//! - [`render`]: `accord render`: a self-contained page for workers, in Dutch or
//!   English, with a diagram of the data flows.
//!
//! All three are pure: they take compiled agreements (and bytes) and return values or
//! text; the CLI reads and writes the files. Pseudonyms are computed with a fixed
//! placeholder key ([`placeholder_engine`]), never the gateway's.

pub mod cases;
pub mod explain;
pub mod instruments;
pub mod signing;
pub mod diff;
pub mod render;

use std::sync::Arc;

use crate::agreement::Agreement;
use crate::engine::Engine;
use crate::pseudonym::{Key, Pseudonymiser};

/// The key id written before every pseudonym these tools compute.
pub const PLACEHOLDER_KEY_ID: &str = "placeholder";

/// An engine with a fixed, public placeholder key: pseudonyms have the real form
/// (`placeholder:` and 32 hex digits) but are not the gateway's.
pub fn placeholder_engine(agreement: Arc<Agreement>) -> Engine {
    let key = Key::new(b"accord-dpo-placeholder-key-not-a-secret", PLACEHOLDER_KEY_ID).expect("a valid placeholder key");
    Engine::new(agreement, Arc::new(Pseudonymiser::new(key)))
}

/// `07:00` for seconds since midnight.
pub(crate) fn hhmm(secs: u32) -> String {
    format!("{:02}:{:02}", secs / 3600, secs % 3600 / 60)
}

/// `a, b and c` (or `a, b en c`).
pub(crate) fn and_list(items: &[String], and: &str) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} {and} {last}", init.join(", ")),
    }
}
