//! Accord: a streaming gateway that holds workplace sensor data to the agreement an
//! employer and its works council negotiated.
//!
//! The arrows point one way. [`agreement`] reads and compiles what was agreed;
//! [`engine`] applies it to one event at a time, purely; [`event`] decodes and encodes
//! events; [`pseudonym`] computes the keyed pseudonyms; [`filemode`] is the thin shell
//! that runs the engine over files.

pub mod admin;
pub mod agreement;
pub mod audit;
pub mod pseudonym;
pub mod reload;
pub mod event;
pub mod engine;
pub mod filemode;
pub mod log;
pub mod observe;
pub mod tally;
pub mod explain;
pub mod config;
pub mod filekind;
pub mod kafka;
pub mod signing;
pub mod dpo;
