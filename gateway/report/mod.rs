//! Reporting: what was enforced, for operators and auditors; never what was carried.
//!
//! - [`tally`]: counts per batch (the hot path adds to plain integers) and totals.
//! - [`observe`]: hands each batch to the metrics and the audit trail.
//! - [`admin`]: `/metrics`, `/healthz` and `/readyz`.
//! - [`audit`]: the hash-chained audit trail and its report.
//! - [`log`]: structured logs.

pub mod admin;
pub mod audit;
pub mod log;
pub mod observe;
pub mod tally;
