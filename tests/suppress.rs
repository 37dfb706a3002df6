//! SPEC 2.7 in file mode and through the library: `accord suppress` writes an entry
//! without the raw identifier and audits the act without the subject; `accord run
//! --suppressions` honours it (step 6a), refuses invalid lines at their line, and a
//! lifted entry stops; property: a suppressed worker's events never leave for a
//! suppressed purpose.

use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use accord::engine::suppress::{Entry, Suppressions};
use accord::engine::{DropReason, Engine, Outputs, Verdict};
use accord::event::Format;
use proptest::prelude::*;
use serde_json::{json, Value};

use crate::common::{accord, example, example_engine, DEMO_KEY_ID};

/// A worker with payroll (identified: the id in the clear) and other outputs.
const WORKER: &str = "emp-00492";

fn suppress(file: &Path, audit: &Path, extra: &[&str]) -> Output {
    accord()
        .args(["suppress", "--subject", WORKER, "--key-id", DEMO_KEY_ID, "--key-file"])
        .arg(example("demo.key"))
        .arg("--file")
        .arg(file)
        .arg("--audit")
        .arg(audit)
        .args(extra)
        .output()
        .unwrap()
}

/// Runs file mode on the example events; every output line, and stderr.
fn run(suppressions: Option<&Path>) -> (Vec<Value>, String) {
    let mut cmd = accord();
    cmd.args(["run", "--key-id", DEMO_KEY_ID, "--output", "-", "--agreement"])
        .arg(example("agreement.yaml"))
        .arg("--key-file")
        .arg(example("demo.key"))
        .arg("--input")
        .arg(example("events.jsonl"));
    if let Some(s) = suppressions {
        cmd.arg("--suppressions").arg(s);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines = String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    (lines, String::from_utf8(out.stderr).unwrap())
}

fn purposes_of(outputs: &[Value], subject_in_clear: &str) -> Vec<String> {
    outputs.iter().filter(|o| o["subject_id"] == subject_in_clear).map(|o| o["accord"]["purpose"].as_str().unwrap().to_string()).collect()
}

#[test]
fn accord_suppress_writes_no_raw_identifier_and_audits_without_the_subject() {
    let dir = tempfile::tempdir().unwrap();
    let (file, audit) = (dir.path().join("suppressions.jsonl"), dir.path().join("audit.jsonl"));
    let out = suppress(&file, &audit, &["--reason", "objection", "--purpose", "planning", "--from", "2026-03-01T00:00:00+01:00"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains(WORKER) && !text.contains("00492"), "{text}");
    let entry = Entry::parse(text.trim().as_bytes()).unwrap();
    // SPEC 2.7's formula, computed here with the demo key.
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&crate::common::demo_key()).unwrap();
    mac.update(format!("accord-suppression\0{WORKER}").as_bytes());
    assert_eq!(entry.subject.to_string(), format!("{DEMO_KEY_ID}:{}", &hex::encode(mac.finalize().into_bytes())[..32]));
    let trail = std::fs::read_to_string(&audit).unwrap();
    assert!(trail.contains("\"suppression\"") && trail.contains("objection") && trail.contains("planning"), "{trail}");
    assert!(!trail.contains(WORKER) && !trail.contains(&entry.subject.to_string()[DEMO_KEY_ID.len() + 1..]), "the trail holds the subject: {trail}");
    // Bad usage: exit 2, one sentence.
    let out = suppress(&file, &audit, &["--reason", "objection", "--from", "tomorrow"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--from must be an RFC 3339 time"));
}

#[test]
fn file_mode_honours_suppressions_refuses_bad_lines_at_their_line_and_a_lift_ends_them() {
    let dir = tempfile::tempdir().unwrap();
    let (file, audit) = (dir.path().join("s.jsonl"), dir.path().join("audit.jsonl"));
    let (before, _) = run(None);
    let reached = purposes_of(&before, WORKER);
    assert!(reached.contains(&"payroll".to_string()), "the worker's clocking reaches payroll: {reached:?}");

    // Only payroll suppressed: the other purposes still see the worker's events.
    assert!(suppress(&file, &audit, &["--reason", "restriction", "--purpose", "payroll"]).status.success());
    // A line with an unknown key, and one that is not JSON: refused at their line.
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str("{\"subject\":\"demo-2026:00000000000000000000000000000000\",\"reason\":\"objection\",\"note\":\"x\"}\nnot json\n");
    std::fs::write(&file, &text).unwrap();
    let (outputs, stderr) = run(Some(&file));
    assert!(purposes_of(&outputs, WORKER).is_empty(), "payroll still gets the worker");
    assert!(stderr.contains(&format!("{}:2: the suppression is refused: unknown key `note`", file.display())), "{stderr}");
    assert!(stderr.contains(&format!("{}:3: the suppression is refused: a suppression must be one JSON object", file.display())), "{stderr}");
    assert!(stderr.lines().any(|l| l.trim_start().starts_with("suppressed") ), "the summary counts `suppressed`: {stderr}");
    // Events of others are untouched.
    let others = |v: &[Value]| v.iter().filter(|o| o["subject_id"] != WORKER).count();
    assert_eq!(others(&outputs), others(&before));

    // Lifted: everything as before.
    assert!(suppress(&file, &audit, &["--reason", "restriction", "--lift"]).status.success());
    let (after, _) = run(Some(&file));
    assert_eq!(after.len(), before.len());
    let trail = std::fs::read_to_string(&audit).unwrap();
    assert!(trail.contains("\"lifted\""), "{trail}");
}

fn subject_of(engine: &Engine, id: &str) -> String {
    engine.pseudonymiser().suppression_subject(id)
}

fn entry(subject: &str, purposes: Option<&[&str]>, from: Option<&str>, until: Option<&str>) -> Entry {
    let mut j = json!({"subject": subject, "reason": "privacy_switch"});
    if let Some(p) = purposes {
        j["purposes"] = json!(p);
    }
    if let Some(f) = from {
        j["from"] = json!(f);
    }
    if let Some(u) = until {
        j["until"] = json!(u);
    }
    Entry::parse(j.to_string().as_bytes()).unwrap()
}

fn clocking(worker: &str, at: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"event_id": "e", "source": "access_pass", "device_id": "rdr-ts-1", "subject_id": worker, "category": "clocking", "occurred_at": at, "attributes": {"turnstile": "T1", "direction": "in"}})).unwrap()
}

#[test]
fn step_6a_removes_the_named_purposes_within_the_window_only() {
    let e = example_engine();
    let s = subject_of(&e, WORKER);
    let set = Suppressions::new(DEMO_KEY_ID, [entry(&s, Some(&["payroll"]), Some("2026-03-03T12:00:00+01:00"), Some("2026-03-03T12:30:00+01:00"))]);
    let mut out = Outputs::default();
    let mut at = |t: &str| e.process_with(&clocking(WORKER, t), Format::Json, &set, &mut out);
    assert!(matches!(at("2026-03-03T11:59:59+01:00"), Verdict::Forwarded(_)));
    assert!(matches!(at("2026-03-03T12:00:00+01:00"), Verdict::Dropped(d) if d.reason == DropReason::Suppressed));
    assert!(matches!(at("2026-03-03T12:29:59+01:00"), Verdict::Dropped(d) if d.reason == DropReason::Suppressed));
    assert!(matches!(at("2026-03-03T12:30:00+01:00"), Verdict::Forwarded(_)));
    // Another worker, same time: untouched.
    assert!(matches!(e.process_with(&clocking("emp-00448", "2026-03-03T12:10:00+01:00"), Format::Json, &set, &mut out), Verdict::Forwarded(_)));
    // A purpose the rule does not serve removes nothing.
    let other = Suppressions::new(DEMO_KEY_ID, [entry(&s, Some(&["planning"]), None, None)]);
    assert!(matches!(e.process_with(&clocking(WORKER, "2026-03-03T12:10:00+01:00"), Format::Json, &other, &mut out), Verdict::Forwarded(_)));
}

/// Workers with many events in the examples.
const WORKERS: [&str; 6] = ["emp-00417", "emp-00448", "emp-00468", "emp-00400", "emp-00460", "emp-00492"];

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whoever is suppressed, for whichever purposes: none of their events leaves for
    /// a suppressed purpose, and everyone else's outputs are exactly as without.
    #[test]
    fn a_suppressed_worker_never_reaches_a_suppressed_purpose(
        who in 0usize..6,
        purposes in proptest::sample::subsequence(vec!["safety", "payroll", "planning", "it_security"], 0..=4),
    ) {
        let e = Arc::new(example_engine());
        let events = std::fs::read_to_string(example("events.jsonl")).unwrap();
        let target = WORKERS[who];
        let p: Option<&[&str]> = if purposes.is_empty() { None } else { Some(&purposes) };
        let set = Suppressions::new(DEMO_KEY_ID, [entry(&subject_of(&e, target), p, None, None)]);
        let (mut with, mut without) = (Outputs::default(), Outputs::default());
        let mut seen = false;
        for line in events.lines() {
            e.process_with(line.as_bytes(), Format::Json, &set, &mut with);
            e.process(line.as_bytes(), Format::Json, &mut without);
            let is_target = serde_json::from_str::<Value>(line).ok().is_some_and(|v| v["subject_id"] == target);
            seen |= is_target;
            let outs = |o: &Outputs| o.iter().map(|(o, b)| (o.purpose, b.to_vec())).collect::<Vec<_>>();
            if is_target {
                for (purpose, _) in outs(&with) {
                    let name = &e.agreement().purposes[purpose as usize].name;
                    prop_assert!(p.is_some_and(|p| !p.contains(&name.as_str())), "{target} reached {name}");
                }
            } else {
                prop_assert_eq!(outs(&with), outs(&without));
            }
        }
        prop_assert!(seen, "{} has no event in the examples", target);
    }
}
