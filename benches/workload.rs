//! The benchmarks' workload: the examples' mix of events, scaled up.
//!
//! Each example line is taken in turn, as the sensors wrote it; parseable events get
//! a fresh `event_id` and one of 2,000 workers, so pseudonym caching behaves as on a
//! site; malformed lines stay as they are.

#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use accord::agreement::Agreement;
use accord::engine::Engine;
use accord::pseudonym::{Key, Pseudonymiser};
use serde_json::Value;

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

pub fn example_lines() -> Vec<String> {
    std::fs::read_to_string(Path::new(ROOT).join("examples/events.jsonl")).unwrap().lines().map(str::to_owned).collect()
}

pub fn engine() -> Engine {
    let agreement = Agreement::parse(&std::fs::read(Path::new(ROOT).join("examples/agreement.yaml")).unwrap()).unwrap().agreement;
    let key = Key::new(&std::fs::read(Path::new(ROOT).join("examples/demo.key")).unwrap(), "demo-2026").unwrap();
    Engine::new(Arc::new(agreement), Arc::new(Pseudonymiser::new(key)))
}

/// `n` events as JSON lines into `out`.
pub fn write_events(n: usize, out: &mut impl Write) -> std::io::Result<u64> {
    let lines = example_lines();
    let ids: Vec<Option<(String, Option<String>)>> = lines
        .iter()
        .map(|l| {
            let v = serde_json::from_str::<Value>(l).ok()?;
            let id = v.get("event_id")?.as_str()?.to_owned();
            Some((id, v.get("subject_id").and_then(Value::as_str).map(str::to_owned)))
        })
        .collect();
    let mut bytes = 0u64;
    for i in 0..n {
        let k = i % lines.len();
        let mut line = lines[k].clone();
        if let Some((id, subject)) = &ids[k] {
            line = line.replacen(&format!("\"{id}\""), &format!("\"ev-{i:09}\""), 1);
            if let Some(subject) = subject {
                line = line.replacen(&format!("\"{subject}\""), &format!("\"emp-{:05}\"", (i * 7919) % 2000), 1);
            }
        }
        line.push('\n');
        bytes += line.len() as u64;
        out.write_all(line.as_bytes())?;
    }
    Ok(bytes)
}
