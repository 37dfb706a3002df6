//! Accord's core: what was agreed, and what it does to one event. Pure.
//!
//! - [`agreement`]: the agreement file read with positions, checked (every problem at
//!   its line), and compiled into the immutable form the engine uses.
//! - [`event`]: the event formats (JSON, protobuf) decoded into one borrowed view, and
//!   outputs encoded.
//! - [`engine`]: SPEC 2.1, one event in, outputs or a drop reason out.
//! - [`pseudonym`]: the keyed pseudonyms of SPEC 3, and the caller-owned cache.
//! - [`time`]: dates written as outputs and pseudonym domains write them; durations.
//! - [`valid`]: topic names and key ids, checked in one place.
//!
//! Nothing here knows of Kafka, files, metrics or the command line, and nothing here
//! holds shared mutable state: a caller owns every buffer and cache it passes in. The
//! shells (file mode, Kafka mode) live in the `accord` crate above; Cargo keeps the
//! arrows pointing one way.

pub mod agreement;
pub mod engine;
pub mod event;
pub mod pseudonym;
pub mod time;
pub mod valid;
