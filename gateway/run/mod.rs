//! The runs: the one enforcement step, and the shells that feed it.
//!
//! - [`enforce`]: a consumed record in, records to ship out (outputs, each encoded in
//!   the output format, or a quarantine decision), with the tally of what was decided.
//!   File mode and Kafka mode both use it, and nothing else enforces.
//! - [`filemode`]: files or stdin in, files or stdout out.
//! - [`kafka`]: topics in, topics out, with at-least-once or exactly-once delivery.
//! - [`reload`]: the agreement in force, swapped when its file changes.
//! - [`suppressions`]: the workers' suppressions in force, swapped when they change.

pub mod enforce;
pub mod filemode;
pub mod kafka;
pub mod reload;
pub mod suppressions;
