//! Accord's integration tests, in one binary (faster to build than one per file).
//!
//! - `engine`: SPEC 2.1 through the library, agreement fixtures, property tests.
//! - `instruments`: SPEC 2.6, approved instruments and their quality (steps 4a, 4b).
//! - `issue10`: what real sensors send: look-alike names, words, arrays, numbers.
//! - `cli`: the `accord` binary as users run it (check, run, explain, pseudonym).
//! - `audit`: metrics, the audit trail and its report, and that none of them holds an
//!   identifier, a value or the key.
//! - `reload`: a changed agreement under a steady stream.
//! - `suppress`: SPEC 2.7 in file mode: `accord suppress`, `--suppressions`, step 6a.
//! - `dpo`: the DPO's workflow: `accord test`, `diff`, `render` (in Chromium), co-signing.
//! - `kafka`: the gateway against a real Apache Kafka broker (see scripts/test.sh).
//! - `readme`: the README's commands, run as written, and its synopsis against `--help`.

mod common;
mod audit;
mod cli;
mod dpo;
mod engine;
mod instruments;
mod issue10;
mod kafka;
mod readme;
mod reload;
mod suppress;
