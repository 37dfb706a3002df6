//! The `accord` binary as users run it: `check` on agreements with seeded problems,
//! file mode end to end, `explain` and `pseudonym`.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Output, Stdio};

use serde_json::Value;

use crate::common::{accord, demo_key, example, run_examples};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn check(yaml: &str) -> (Output, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agreement.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = accord().arg("check").arg(&path).output().unwrap();
    let stderr = text(&out.stderr).replace(&path.display().to_string(), "A");
    (out, stderr)
}

#[test]
fn check_accepts_the_example_and_summarises_it() {
    let out = accord().arg("check").arg(example("agreement.yaml")).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("agreement `acme-dc-utrecht` version 4 is valid"), "{stdout}");
    for name in ["safety", "payroll", "planning", "it_security", "shift-location"] {
        assert!(stdout.contains(name), "{name} missing from the summary");
    }
}

/// Several seeded problems: each is reported at its own line, all in one run.
#[test]
fn check_reports_every_problem_at_its_line() {
    let yaml = "\
agreement:
  id: Bad_ID
  version: 0
  parties: [Employer, Council]
  valid_from: 2026-06-01
  valid_until: 2026-01-01
purposes:
  safety:
    topic: accord.safety
  planing:
    topic: bad topic!
schedules:
  office:
    timezone: Europe/Amsterdamm
    days: [mon, funday]
    from: \"19:00\"
    until: \"07:00\"
rules:
  - name: r1
    match: { source: [tracker], category: [emotion] }
    purposes: [safety]
    keep: [subject_id, attributes.mood]
  - name: r1
    match: { category: [health] }
    purposes: [planning]
    during: offfice
    generalise:
      attributes.lat: { round: many }
      occurred_at: { truncate: 5 minutes }
    colour: blue
";
    let (out, stderr) = check(yaml);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let expect = [
        ("A:2:7: error:", "agreement id `Bad_ID`"),
        ("A:3:12: error:", "`version` must be a whole number"),
        ("A:6:16: error:", "`valid_until` must be after `valid_from`"),
        ("A:11:12: error:", "not a valid Kafka topic name"),
        ("A:14:15: error:", "`Europe/Amsterdamm` is not a timezone name; use an IANA name such as Europe/Amsterdam; did you mean `Europe/Amsterdam`?"),
        ("A:15:17: error:", "`funday` is not a day"),
        ("A:17:12: error:", "`until` must be later than `from`"),
        ("A:20:44: error:", "matches `emotion`, a prohibited category (EU AI Act art. 5(1)(f)"),
        ("A:22:12: error:", "keeps `subject_id` in the clear for purpose `safety`"),
        ("A:22:24: error:", "`mood` is emotion data, which is prohibited"),
        ("A:23:11: error:", "rule name `r1` is already used on line 19"),
        ("A:24:25: error:", "matches `health`, a special category"),
        ("A:25:16: error:", "purpose `planning` is not defined; did you mean `planing`?"),
        ("A:26:13: error:", "schedule `offfice` is not defined; did you mean `office`?"),
        ("A:28:32: error:", "`round` takes a number of decimals"),
        ("A:29:32: error:", "`truncate` takes a duration"),
        ("A:30:5: error:", "unknown key `colour` in a rule"),
    ];
    for (place, words) in expect {
        assert!(stderr.lines().any(|l| l.starts_with(place) && l.contains(words)), "expected `{place} ...{words}...` in:\n{stderr}");
    }
    assert!(stderr.contains("the agreement cannot be used until the errors are fixed"));
}

#[test]
fn check_suggests_the_nearest_key_and_warns_without_failing() {
    let base = std::fs::read_to_string(example("agreement.yaml")).unwrap();
    let (out, stderr) = check(&base.replacen("pseudonymisation:", "pseudonymization:", 1));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("unknown key `pseudonymization` at the top of the file; did you mean `pseudonymisation`?"), "{stderr}");

    let shadowed = base.replace("rules:\n", "rules:\n  - name: catch-all\n    match: { source: [tracker] }\n    purposes: [safety]\n");
    let (out, stderr) = check(&shadowed);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("warning: rule `lone-worker-alarm` can never match") || stderr.contains("warning: rule `shift-location` can never match"), "{stderr}");
}

#[test]
fn check_refuses_what_is_not_yaml_or_not_there() {
    let (out, stderr) = check("agreement: [unclosed\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.starts_with("A:"), "{stderr}");
    let out = accord().args(["check", "/nonexistent/agreement.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot read the agreement /nonexistent/agreement.yaml"));
    let out = accord().args(["check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

fn run_to_dir(extra: &[&str]) -> (tempfile::TempDir, Output) {
    let dir = tempfile::tempdir().unwrap();
    let out = run_examples()
        .args(["--input"])
        .arg(example("events.jsonl"))
        .arg("--output")
        .arg(dir.path())
        .args(extra)
        .output()
        .unwrap();
    (dir, out)
}

#[test]
fn file_mode_writes_one_file_per_topic_a_quarantine_and_a_summary() {
    let (dir, out) = run_to_dir(&[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary = text(&out.stderr);
    let mut per_topic = BTreeMap::new();
    for topic in ["accord.safety", "accord.payroll", "accord.planning", "accord.it_security"] {
        let content = std::fs::read_to_string(dir.path().join(format!("{topic}.jsonl"))).unwrap();
        for line in content.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            assert_eq!(format!("accord.{}", v["accord"]["purpose"].as_str().unwrap()), topic);
        }
        per_topic.insert(topic, content.lines().count());
    }
    // The summary's counts are the files' counts.
    for (topic, n) in &per_topic {
        let purpose = topic.trim_start_matches("accord.");
        let line = summary.lines().find(|l| l.trim_start().starts_with(&format!("{purpose} "))).unwrap();
        assert!(line.contains(&format!(" {n}  -> {topic}")), "{line} vs {n}");
    }
    // Quarantine: line numbers and reasons, never content.
    let quarantine = std::fs::read_to_string(dir.path().join("quarantine.jsonl")).unwrap();
    let events: Vec<String> = std::fs::read_to_string(example("events.jsonl")).unwrap().lines().map(str::to_owned).collect();
    let malformed: Vec<u64> = std::fs::read_to_string(example("expected-drops.txt"))
        .unwrap()
        .lines()
        .filter(|l| l.ends_with(" malformed"))
        .map(|l| l.split(' ').next().unwrap().parse().unwrap())
        .collect();
    let quarantined: Vec<u64> = quarantine.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["line"].as_u64().unwrap()).collect();
    assert_eq!(quarantined, malformed);
    for n in &quarantined {
        let line = &events[*n as usize - 1];
        if line.len() > 12 {
            assert!(!quarantine.contains(line.as_str()));
        }
    }
    assert!(!quarantine.contains("emp-"));
    let counted = summary.lines().find_map(|l| l.trim().strip_prefix("malformed")).map(|n| n.trim().parse::<usize>().unwrap());
    assert_eq!(counted, Some(malformed.len()), "{summary}");
}

#[test]
fn the_key_never_appears_in_any_output() {
    let key = text(&demo_key());
    let (dir, out) = run_to_dir(&[]);
    assert!(!text(&out.stdout).contains(&key) && !text(&out.stderr).contains(&key));
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        assert!(!std::fs::read_to_string(entry.unwrap().path()).unwrap().contains(&key));
    }
}

#[test]
fn stdout_mode_keeps_input_order_and_protobuf_mode_agrees() {
    let run = |format: &str, input: &[u8]| {
        let mut child = accord()
            .args(["run", "--agreement"])
            .arg(example("agreement.yaml"))
            .arg("--key-file")
            .arg(example("demo.key"))
            .args(["--key-id", "demo-2026", "--input", "-", "--output", "-", "--format", format])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    };
    let events = std::fs::read(example("events.jsonl")).unwrap();
    let out = run("json", &events);
    assert!(out.status.success());
    let ids: Vec<String> = text(&out.stdout).lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["event_id"].as_str().unwrap().to_string()).collect();
    let input_ids: Vec<String> = text(&events)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["event_id"].as_str().map(str::to_owned))
        .filter(|id| ids.contains(id))
        .collect();
    assert_eq!(ids, input_ids);

    // The same events as length-delimited protobuf give the same number of outputs.
    use prost::Message;
    let mut proto = Vec::new();
    let mut expected = 0;
    for line in text(&events).lines() {
        if let Some(msg) = serde_json::from_str::<Value>(line).ok().and_then(|v| accord::event::proto::sensor_event_from_json(&v)) {
            msg.encode_length_delimited(&mut proto).unwrap();
            expected += 1;
        }
    }
    let out = run("proto", &proto);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(&format!("received   {expected:>9}")), "{}", text(&out.stderr));
    let mut bytes = &out.stdout[..];
    let mut n = 0;
    while !bytes.is_empty() {
        let msg = accord::event::proto::EnforcedEvent::decode_length_delimited(&mut bytes).unwrap();
        assert!(msg.accord.is_some());
        n += 1;
    }
    assert!(n > 250, "{n}");
}

#[test]
fn unusable_keys_and_inputs_exit_1_with_one_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short.key");
    std::fs::write(&short, b"only-20-bytes-secret").unwrap();
    let out = accord()
        .args(["run", "--agreement"])
        .arg(example("agreement.yaml"))
        .arg("--key-file")
        .arg(&short)
        .args(["--key-id", "k", "--input"])
        .arg(example("events.jsonl"))
        .args(["--output", "-"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("holds 20 bytes; a pseudonym key needs at least 32"), "{err}");
    assert!(!err.contains("only-20-bytes-secret"));
    assert_eq!(err.lines().count(), 1, "{err}");

    let out = accord()
        .args(["run", "--agreement"])
        .arg(example("agreement.yaml"))
        .arg("--key-file")
        .arg(example("demo.key"))
        .args(["--key-id", "k", "--input", "/nonexistent.jsonl", "--output", "-"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot open the input /nonexistent.jsonl"));
}

#[test]
fn explain_walks_a_dpo_through_each_step() {
    let dir = tempfile::tempdir().unwrap();
    let event = dir.path().join("event.json");
    let events = std::fs::read_to_string(example("events.jsonl")).unwrap();
    // The first heat-stress event with nested vitals.
    let line = events.lines().find(|l| l.contains("\"category\": \"health\"") && l.contains("stress_level")).unwrap();
    std::fs::write(&event, line).unwrap();
    let out = accord().arg("explain").arg("--agreement").arg(example("agreement.yaml")).arg(&event).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    for step in ["1. Decode: ok.", "2. In force: yes", "3. Prohibited category: no.", "4. Special category: `health` is special", "5. Rule: `heat-stress`", "6. Schedule: the rule has none", "-> purpose `safety`", "pseudonymised: subject_id, device_id", "attributes.vitals.stress_level (not listed)", "Verdict: forwarded to `safety`."] {
        assert!(s.contains(step), "missing `{step}` in:\n{s}");
    }
    // A rule that did not match is explained.
    assert!(s.contains("rule `turnstile-clocking` (line"), "{s}");

    std::fs::write(&event, line.replace("\"health\"", "\"Emotion\"")).unwrap();
    let s = text(&accord().arg("explain").arg("--agreement").arg(example("agreement.yaml")).arg(&event).output().unwrap().stdout);
    assert!(s.contains("Verdict: dropped, reason `prohibited_category`"), "{s}");
}

#[test]
fn pseudonym_answers_an_access_request() {
    let dir = tempfile::tempdir().unwrap();
    let trail = dir.path().join("audit.jsonl");
    let args = |purpose: &str, at: Option<&str>| {
        let mut c = accord();
        c.args(["pseudonym", "--agreement"]).arg(example("agreement.yaml")).arg("--key-file").arg(example("demo.key"));
        c.args(["--key-id", "demo-2026", "--purpose", purpose, "--reason", "access request 2026-114", "--audit"]).arg(&trail);
        if let Some(at) = at {
            c.args(["--at", at]);
        }
        c.arg("emp-00417");
        c.output().unwrap()
    };
    let out = args("planning", Some("2026-03-03T10:00:00+01:00"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "demo-2026:86b3838a81e4ac3e312e8d16c553b0a5");
    // The look-up is in the trail: purpose, period and reason, never the value or the result.
    let recorded = std::fs::read_to_string(&trail).unwrap();
    assert_eq!(recorded.lines().count(), 1);
    let record: Value = serde_json::from_str(recorded.lines().next().unwrap()).unwrap();
    assert_eq!(record["kind"], "pseudonym_lookup");
    assert_eq!(record["content"]["period"], "2026-W10");
    assert_eq!(record["content"]["reason"], "access request 2026-114");
    assert!(!recorded.contains("emp-00417") && !recorded.contains("86b3838a81e4ac3e"));
    // The agreement rotates: without --at the period is unknown (usage error).
    let out = args("planning", None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--at is required"));
    let out = args("marketing", Some("2026-03-03"));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("purpose `marketing` is not in the agreement"));
}
