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
        c.arg("--audit-key").arg(example("audit.key"));
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
    assert_eq!(recorded.lines().count(), 2, "the look-up, then a signed checkpoint");
    assert!(recorded.lines().nth(1).unwrap().contains("\"kind\":\"checkpoint\""));
    let verified = accord().args(["audit", "verify"]).arg(&trail).arg("--pub").arg(example("audit.pub")).output().unwrap();
    assert!(verified.status.success(), "{}", text(&verified.stderr));
    let record: Value = serde_json::from_str(recorded.lines().next().unwrap()).unwrap();
    assert_eq!(record["kind"], "pseudonym_lookup");
    assert_eq!(record["content"]["period"], "2026-W10");
    assert_eq!(record["content"]["reason"], "access request 2026-114");
    assert!(!recorded.contains("emp-00417") && !recorded.contains("86b3838a81e4ac3e"));
    // The agreement rotates: without --at the period is unknown (usage error).
    let out = args("planning", None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("rotates pseudonyms, so the period must be picked: give --at a time or a date in it, e.g. --at 2026-03-02"), "{}", text(&out.stderr));
    let out = args("marketing", Some("2026-03-03"));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("purpose `marketing` is not one of the purposes of"), "{}", text(&out.stderr));
}

// ---------------------------------------------------------------------------
// Issue 15: the first hour. Each rough edge a newcomer met, with its sentence and its
// exit status (1 bad input, 2 bad usage: SPEC 6).
// ---------------------------------------------------------------------------

/// The example agreement cut into its top-level sections, in file order.
fn example_sections() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(example("agreement.yaml")).unwrap();
    let mut sections: Vec<(String, String)> = Vec::new();
    for line in text.split_inclusive('\n') {
        let top = line.chars().next().is_some_and(|c| c.is_ascii_lowercase());
        match (top, sections.last_mut()) {
            (true, _) => sections.push((line.split(':').next().unwrap().to_string(), line.to_string())),
            (false, Some((_, body))) => body.push_str(line),
            (false, None) => {} // the opening comments
        }
    }
    sections
}

#[test]
fn issue_15_check_places_a_missing_section_where_it_belongs() {
    let sections = example_sections();
    let without = |names: &[&str]| sections.iter().filter(|(k, _)| !names.contains(&k.as_str())).map(|(_, b)| b.as_str()).collect::<String>();
    let yaml = without(&["purposes"]);
    let next = yaml.lines().position(|l| l.starts_with("categories:")).unwrap() + 1;
    let (out, stderr) = check(&yaml);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let expected = format!("A:{next}:1: error: the `purposes:` section is missing: add it above `categories:` (line {next}), with at least one purpose, its `description` and the `topic` its events go to");
    assert!(stderr.lines().any(|l| l == expected), "expected `{expected}` in:\n{stderr}");

    // No rules: a warning (exit 0) at the end of the file, never at 0:0.
    let yaml = without(&["rules"]);
    let end = yaml.lines().count() + 1;
    let (out, stderr) = check(&yaml);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains(&format!("A:{end}:1: warning: the `rules:` section is missing, so every event will be dropped: add it at the end of the file (line {end}), with rules that each give a `name`")), "{stderr}");

    let (out, stderr) = check(&without(&["agreement"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("A:1:1: error: the `agreement:` section is missing: add it above `purposes:` (line 1), with the agreement's `id`, `version` and `parties`"), "{stderr}");
    assert!(!stderr.contains(":0:0:"), "{stderr}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    /// Whatever sections are left out, every problem is at a real place in the file: a
    /// line from 1 to one past the last, a column from 1; and each missing required
    /// section is reported by name.
    #[test]
    fn issue_15_no_problem_is_ever_at_0_0(keep in proptest::collection::vec(proptest::bool::ANY, 6), swap in 0usize..6) {
        let mut sections = example_sections();
        let n = sections.len();
        sections.swap(0, swap.min(n - 1));
        let yaml: String = sections.iter().zip(&keep).filter(|(_, k)| **k).map(|((_, b), _)| b.as_str()).collect();
        let kept: Vec<&str> = sections.iter().zip(&keep).filter(|(_, k)| **k).map(|((n, _), _)| n.as_str()).collect();
        let diagnostics = match accord::agreement::Agreement::parse(yaml.as_bytes()) {
            Ok(loaded) => loaded.warnings,
            Err(d) => d,
        };
        let last = yaml.lines().count() + 1;
        for d in &diagnostics {
            proptest::prop_assert!(d.span.line >= 1 && d.span.line <= last && d.span.col >= 1, "{:?} in\n{yaml}", d);
        }
        for required in ["agreement", "purposes", "rules"] {
            let reported = diagnostics.iter().any(|d| d.message.starts_with(&format!("the `{required}:` section is missing")));
            proptest::prop_assert_eq!(reported, !kept.contains(&required), "{}: {:?}", required, diagnostics);
        }
    }
}

#[test]
fn issue_15_an_unknown_purpose_is_bad_input_with_the_nearest_names() {
    let dir = tempfile::tempdir().unwrap();
    let out = accord()
        .args(["pseudonym", "--agreement"])
        .arg(example("agreement.yaml"))
        .arg("--key-file")
        .arg(example("demo.key"))
        .args(["--key-id", "demo-2026", "--purpose", "plannign", "--at", "2026-03-03", "--reason", "access request 2026-114", "--audit"])
        .arg(dir.path().join("audit.jsonl"))
        .arg("emp-00417")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let expected = format!("accord: error: purpose `plannign` is not one of the purposes of {} (safety, payroll, planning, it_security); did you mean `planning`?\n", example("agreement.yaml").display());
    assert_eq!(text(&out.stderr), expected);
    // Nothing was looked up, so nothing is in the trail.
    assert!(!dir.path().join("audit.jsonl").exists() || std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap().is_empty());
}

#[test]
fn issue_15_explain_takes_one_event_and_says_how_to_pick_it() {
    let explain = |extra: &[&str]| accord().args(["explain", "--agreement"]).arg(example("agreement.yaml")).args(extra).arg(example("events.jsonl")).output().unwrap();
    let out = explain(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!("accord: error: {} holds 365 lines of events, and explain takes one: pick it with --line N (e.g. --line 1), or put that one event in a file of its own\n", example("events.jsonl").display())
    );
    assert!(out.stdout.is_empty());

    // --line N explains that line, as `sed -n Np` would cut it out.
    let out = explain(&["--line", "50"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    let line50: Value = serde_json::from_str(std::fs::read_to_string(example("events.jsonl")).unwrap().lines().nth(49).unwrap()).unwrap();
    assert!(s.starts_with(&format!("Line 50 of {}.\n", example("events.jsonl").display())), "{s}");
    assert!(s.contains(&format!("Event `{}`", line50["event_id"].as_str().unwrap())), "{s}");

    let out = explain(&["--line", "366"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("has 365 line(s), so there is no line 366; give --line a number from 1 to 365"), "{}", text(&out.stderr));
    let out = explain(&["--line", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

    // A malformed line is explained as malformed, at its line (as the quarantine names it).
    let quarantined: u64 = std::fs::read_to_string(example("expected-drops.txt")).unwrap().lines().find(|l| l.ends_with(" malformed")).unwrap().split(' ').next().unwrap().parse().unwrap();
    let out = explain(&["--line", &quarantined.to_string()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("Verdict: dropped, reason `malformed`"), "{}", text(&out.stdout));
}

#[test]
fn issue_15_run_config_recognises_other_files_and_names_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let suppressions = dir.path().join("suppressions.jsonl");
    std::fs::write(&suppressions, "{\"subject\": \"demo-2026:3f0c\", \"reason\": \"objection\"}\n").unwrap();
    let binary_key = dir.path().join("random.key");
    std::fs::write(&binary_key, [0x9c, 0xff, 0x00, 0x41, 0xfe, 0x80, 0x12, 0x33].repeat(4)).unwrap();
    let cases = [
        (example("agreement.yaml"), "is an agreement, not a gateway configuration: check it with `accord check"),
        (example("demo.key"), "is what looks like a pseudonym key file, not a gateway configuration: a gateway configuration names it under `pseudonym_key"),
        (binary_key.clone(), "is what looks like a pseudonym key file, not a gateway configuration"),
        (example("events.jsonl"), "is a file of sensor events, not a gateway configuration: enforce it with `accord run --agreement A"),
        (suppressions.clone(), "is a suppression list, not a gateway configuration: give it to file mode with `--suppressions FILE`"),
        (example("agreement.tests.yaml"), "is an agreement's test cases, not a gateway configuration: run it with `accord test AGREEMENT"),
    ];
    for (file, words) in cases {
        let out = accord().args(["run", "--config"]).arg(&file).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = text(&out.stderr);
        assert!(err.starts_with(&format!("accord: error: {} {words}", file.display())), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(!err.contains(&text(&demo_key())), "the key is never quoted");
    }
    // And the other way round: a gateway configuration given to `check`.
    let out = accord().arg("check").arg(example("gateway.yaml")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("is a gateway configuration, not an agreement: run it with `accord run --config"), "{}", text(&out.stderr));
}

/// Every option of every subcommand says what it is for (`explain --key-id` did not).
#[test]
fn issue_15_every_option_has_a_help_text() {
    let help = |args: &[&str]| text(&accord().args(args).arg("--help").output().unwrap().stdout);
    let top = help(&[]);
    let commands: Vec<String> = top
        .split("Commands:")
        .nth(1)
        .unwrap()
        .split("\n\n")
        .next()
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|c| c != "help")
        .collect();
    assert!(commands.len() >= 10, "{top}");
    let mut pages = Vec::new();
    for c in &commands {
        let page = help(&[c]);
        if let Some(subs) = page.split("Commands:").nth(1) {
            for sub in subs.split("\n\n").next().unwrap().lines().filter_map(|l| l.split_whitespace().next()).filter(|s| *s != "help") {
                pages.push((format!("{c} {sub}"), help(&[c, sub])));
            }
        }
        pages.push((c.clone(), page));
    }
    for (name, page) in &pages {
        assert!(page.lines().next().is_some_and(|l| !l.trim().is_empty()), "`accord {name} --help` opens without a sentence:\n{page}");
        // An entry is `  -x, --flag <V>  text` or `      --flag <V>  text`, or an argument `  <NAME>  text`;
        // clap leaves the text out when there is none, and continuation lines are indented deeper.
        // In the long layout the text is on the next line, indented deeper.
        let lines: Vec<&str> = page.lines().collect();
        for (i, line) in lines.iter().enumerate().filter(|(_, l)| l.starts_with("  -") || l.starts_with("      --") || l.starts_with("  <") || l.starts_with("  [")) {
            let indent = |l: &str| l.len() - l.trim_start().len();
            let inline = line.trim_start().split("  ").filter(|p| !p.trim().is_empty()).count() >= 2;
            let below = lines.get(i + 1).is_some_and(|next| !next.trim().is_empty() && indent(next) >= 8);
            assert!(inline || below, "`accord {name} --help` has an option without a help text: `{line}`");
        }
    }
}

#[test]
fn issue_15_errors_and_the_summary_are_plain_text_when_stderr_is_not_a_terminal() {
    // stderr is a pipe here, as in a container: the log defaults to JSON.
    let dir = tempfile::tempdir().unwrap();
    let out = run_examples().env_remove("ACCORD_LOG_FORMAT").arg("--input").arg(example("events.jsonl")).arg("--output").arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let err = text(&out.stderr);
    assert!(err.lines().any(|l| l == "received         365"), "{err}");
    assert!(err.lines().any(|l| l.trim_start().starts_with("safety ") && l.ends_with("-> accord.safety")), "the per-purpose table is missing:\n{err}");
    // The log lines stay JSON; the closing event is there for collectors.
    for l in err.lines().filter(|l| l.starts_with('{')) {
        serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"));
    }
    assert!(err.lines().any(|l| l.starts_with('{') && l.contains("\"run finished\"")), "{err}");

    let out = run_examples().env_remove("ACCORD_LOG_FORMAT").args(["--input", "/nonexistent/events.jsonl", "--output", "-"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "accord: error: cannot open the input /nonexistent/events.jsonl: No such file or directory (os error 2)\n");
}

#[test]
fn issue_15_a_key_file_ending_in_a_newline_is_used_as_it_is_and_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let with_newline = dir.path().join("echo.key");
    let mut key = demo_key();
    key.push(b'\n');
    std::fs::write(&with_newline, &key).unwrap();
    let first_output = |key_file: &std::path::Path| {
        let out = accord()
            .args(["run", "--agreement"])
            .arg(example("agreement.yaml"))
            .arg("--key-file")
            .arg(key_file)
            .args(["--key-id", "demo-2026", "--input"])
            .arg(example("events.jsonl"))
            .args(["--output", "-"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        // The first pseudonymised subject.
        let pseudonym = text(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).unwrap()["subject_id"].as_str().map(str::to_owned))
            .find(|s| s.starts_with("demo-2026:"))
            .unwrap();
        (pseudonym, text(&out.stderr))
    };
    let (kept, warned) = first_output(&with_newline);
    let expected = format!("accord: warning: the key file {} ends in a newline, which Accord uses as part of the key;", with_newline.display());
    let warning: Vec<&str> = warned.lines().filter(|l| l.starts_with("accord: warning:")).collect();
    assert_eq!(warning.len(), 1, "{warned}");
    assert!(warning[0].starts_with(&expected), "{warned}");
    assert!(warning[0].contains("printf %s") && warning[0].contains("other pseudonyms"), "{warned}");
    assert!(!warned.contains(text(&demo_key()).trim()), "the key is never printed");
    // The newline is part of the key: the pseudonyms differ from those of the key without it.
    let (plain, quiet) = first_output(&example("demo.key"));
    assert!(!quiet.contains("warning"), "{quiet}");
    assert_ne!(kept, plain);

    // `accord pseudonym` with the same file: the key's bytes, newline included, and one warning.
    let out = accord()
        .args(["pseudonym", "--agreement"])
        .arg(example("agreement.yaml"))
        .arg("--key-file")
        .arg(&with_newline)
        .args(["--key-id", "demo-2026", "--purpose", "planning", "--at", "2026-03-03T10:00:00+01:00", "--reason", "access request 2026-114", "--audit"])
        .arg(dir.path().join("audit.jsonl"))
        .arg("emp-00417")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).starts_with(&expected) && text(&out.stderr).lines().count() == 1, "{}", text(&out.stderr));
    let agreement = accord::agreement::Agreement::load(&example("agreement.yaml")).unwrap().agreement;
    let at = chrono::DateTime::parse_from_rfc3339("2026-03-03T10:00:00+01:00").unwrap().with_timezone(&chrono::Utc);
    let by_bytes = |key: &[u8]| accord::pseudonym::Pseudonymiser::new(accord::pseudonym::Key::new(key, "demo-2026").unwrap()).pseudonym(&agreement, "planning", Some(at), "emp-00417");
    assert_eq!(text(&out.stdout).trim(), by_bytes(&key));
    assert_ne!(text(&out.stdout).trim(), by_bytes(&demo_key()));
}

/// Walking the README's commands with the wrong files: each error names the file and
/// the remedy, and none quotes a key.
#[test]
fn issue_15_wrong_files_on_the_readme_paths_say_what_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let key = text(&demo_key());
    // A pseudonym key given as a party's key: refused without quoting a byte of it.
    for args in [vec!["verify".to_string(), example("agreement.yaml").display().to_string(), "--party".into(), format!("X={}", example("demo.key").display())], vec!["sign".to_string(), example("agreement.yaml").display().to_string(), "--key".into(), example("demo.key").display().to_string()]] {
        let out = accord().args(&args).current_dir(dir.path()).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = text(&out.stderr);
        assert!(err.contains(&format!("{} is not an Accord", example("demo.key").display())) && err.contains("`accord keygen` writes these files"), "{err}");
        assert!(!err.contains(key.trim()) && !err.contains(&key[..16]), "the key leaked: {err}");
    }
    // Events given to the auditor's commands, and an agreement given as the event.
    for sub in ["verify", "report"] {
        let out = accord().args(["audit", sub]).arg(example("events.jsonl")).arg("--pub").arg(example("audit.pub")).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "audit {sub}");
        assert!(text(&out.stderr).contains("is a file of sensor events, not an audit trail: enforce it with `accord run"), "{}", text(&out.stderr));
        assert!(out.stdout.is_empty());
    }
    let out = accord().args(["explain", "--agreement"]).arg(example("agreement.yaml")).arg(example("agreement.yaml")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("is an agreement, not a file of sensor events: check it with `accord check"), "{}", text(&out.stderr));
}

/// SPEC 7: `audit report` verifies first; a trail that does not verify is not reported on.
#[test]
fn issue_15_audit_report_refuses_a_trail_that_does_not_verify() {
    let dir = tempfile::tempdir().unwrap();
    let trail = dir.path().join("audit.jsonl");
    let out = run_examples().arg("--input").arg(example("events.jsonl")).args(["--output"]).arg(dir.path().join("out")).arg("--audit").arg(&trail).arg("--audit-key").arg(example("audit.key")).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = accord().args(["audit", "report"]).arg(&trail).arg("--pub").arg(example("audit.pub")).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let records = std::fs::read_to_string(&trail).unwrap();
    let mut lines: Vec<&str> = records.lines().collect();
    assert!(lines.len() >= 3);
    lines.remove(1);
    std::fs::write(&trail, lines.join("\n") + "\n").unwrap();
    let out = accord().args(["audit", "report"]).arg(&trail).arg("--pub").arg(example("audit.pub")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "a broken trail is not reported on");
    let err = text(&out.stderr);
    assert!(err.starts_with(&format!("{}:2: broken at sequence number", trail.display())), "{err}");
    assert!(err.contains("the trail does not verify, so it is not reported on"), "{err}");
}

/// The demo's closing suggestion is a command that runs as printed, from the repository.
#[test]
fn issue_15_the_demo_suggests_a_command_that_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = accord().arg("demo").arg("--output").arg(dir.path().join("out")).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    let next = stdout.lines().find_map(|l| l.strip_prefix("Next: `")).and_then(|l| l.split('`').next()).expect("a Next: line with a command");
    let words: Vec<&str> = next.split_whitespace().collect();
    assert_eq!(words[0], "accord");
    let out = accord().args(&words[1..]).current_dir(crate::common::root()).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "`{next}`: {}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Verdict:"), "{}", text(&out.stdout));
}
