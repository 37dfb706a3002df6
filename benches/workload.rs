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

/// The example agreement without its `instruments` section (as before issue 14).
pub fn engine_without_instruments() -> Engine {
    let text = std::fs::read_to_string(Path::new(ROOT).join("examples/agreement.yaml")).unwrap();
    let start = text.find("\ninstruments:\n").expect("the example lists instruments");
    let end = start + text[start..].find("\nrules:\n").expect("rules follow");
    let text = format!("{}{}", &text[..start], &text[end..]);
    let agreement = Agreement::parse(text.as_bytes()).unwrap().agreement;
    assert!(agreement.instruments.is_none());
    let key = Key::new(&std::fs::read(Path::new(ROOT).join("examples/demo.key")).unwrap(), "demo-2026").unwrap();
    Engine::new(Arc::new(agreement), Arc::new(Pseudonymiser::new(key)))
}

/// `n` suppressions in force: all but ten for people outside the workload's 2,000
/// workers (every look-up still computes the digest and looks it up), ten for workers
/// of the workload, for `planning` only.
pub fn suppressions(engine: &Engine, n: usize) -> accord::engine::Suppressions {
    use accord::engine::suppress::Entry;
    let entries = (0..n).map(|i| {
        let (who, purposes) = if i < 10 { (format!("emp-{:05}", i * 37), r#","purposes":["planning"]"#) } else { (format!("ext-{i:05}"), "") };
        let subject = engine.pseudonymiser().suppression_subject(&who);
        Entry::parse(format!(r#"{{"subject":"{subject}","reason":"objection"{purposes}}}"#).as_bytes()).unwrap()
    });
    accord::engine::Suppressions::new("demo-2026", entries.collect::<Vec<_>>())
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
