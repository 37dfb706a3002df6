//! Accord: a streaming gateway that holds workplace sensor data to the agreement an
//! employer and its works council negotiated.
//!
//! The house has four floors, and the arrows point down only:
//!
//! 1. **The core** (the `accord-core` crate under `gateway/core/`, re-exported here as
//!    [`agreement`], [`event`], [`engine`] and [`pseudonym`]): what was agreed, and what
//!    it does to one event. Pure; Cargo enforces that it imports nothing from above.
//! 2. **The runs** ([`run`]): the one enforcement step ([`run::enforce`]) and the shells
//!    that feed it: file mode, Kafka mode, and the live reload of the agreement.
//! 3. **Reporting** ([`report`]): tallies, metrics and health, the audit trail, logs.
//!    **The DPO's tools** ([`dpo`]): explain, test cases, diff, the workers' page,
//!    co-signing. Both read the core; neither knows the shells.
//! 4. **The edges**: [`config`] (the gateway's runtime configuration), [`filekind`]
//!    (which of Accord's files a file is, for commands given the wrong one) and the
//!    command line (`gateway/cli/`, in the binary), which wire the floors together.

pub use accord_core::{agreement, engine, event, pseudonym};

pub mod config;
pub mod filekind;
pub mod dpo;
pub mod report;
pub mod run;
