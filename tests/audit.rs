//! What auditors read: the metrics, the audit trail and its report, and that none of
//! them ever holds an identifier, an attribute value or the key.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::Stdio;

use accord::report::admin::Metrics;
use accord::event::Format;
use accord::run::filemode::{self, Sink};
use serde_json::Value;

use crate::common::{accord, demo_key, example, example_engine, http_get, run_examples};

fn run_with_trail(dir: &std::path::Path) -> (std::path::PathBuf, String) {
    let trail = dir.join("audit.jsonl");
    let out = run_examples()
        .args(["--input"])
        .arg(example("events.jsonl"))
        .arg("--output")
        .arg(dir.join("out"))
        .arg("--audit")
        .arg(&trail)
        .arg("--audit-key")
        .arg(example("audit.key"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (trail, String::from_utf8(out.stderr).unwrap())
}

/// `name   N` lines of the run's summary.
fn summary_counts(summary: &str) -> BTreeMap<String, u64> {
    summary
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            Some((words.next()?.to_string(), words.next()?.parse().ok()?))
        })
        .collect()
}

#[test]
fn the_trails_counters_equal_the_runs_summary() {
    let dir = tempfile::tempdir().unwrap();
    let (trail, summary) = run_with_trail(dir.path());
    let summary = summary_counts(&summary);
    let records: Vec<Value> = std::fs::read_to_string(&trail).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let kinds: Vec<&str> = records.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"gateway_started"));
    assert_eq!(kinds[1], "agreement_loaded");
    assert_eq!(kinds[kinds.len() - 2..], ["gateway_stopped", "checkpoint"]);
    assert_eq!(records[1]["content"]["sha256"].as_str().unwrap().len(), 64);
    let mut got: BTreeMap<String, u64> = BTreeMap::new();
    for r in records.iter().filter(|r| r["kind"] == "counters") {
        *got.entry("received".into()).or_default() += r["content"]["received"].as_u64().unwrap();
        for f in r["content"]["forwarded"].as_array().unwrap() {
            *got.entry(f["purpose"].as_str().unwrap().into()).or_default() += f["count"].as_u64().unwrap();
        }
        for d in r["content"]["dropped"].as_array().unwrap() {
            *got.entry(d["reason"].as_str().unwrap().into()).or_default() += d["count"].as_u64().unwrap();
        }
    }
    for (name, n) in &got {
        assert_eq!(summary.get(name), Some(n), "{name}");
    }
    for name in ["received", "safety", "payroll", "planning", "it_security", "malformed", "agreement_not_in_force", "prohibited_category", "special_category", "no_matching_rule", "outside_schedule"] {
        assert!(got.contains_key(name), "{name} missing from the trail");
    }
}

/// `accord audit verify TRAIL --pub audit.pub` with `extra` flags.
fn verify(trail: &std::path::Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let out = accord().args(["audit", "verify"]).arg(trail).arg("--pub").arg(example("audit.pub")).args(extra).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `accord audit report TRAIL --pub audit.pub` with `extra` flags.
fn report(trail: &std::path::Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let out = accord().args(["audit", "report"]).arg(trail).arg("--pub").arg(example("audit.pub")).args(extra).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The `head: SEQ:HASH` that verify prints.
fn head(stdout: &str) -> String {
    stdout.lines().find_map(|l| l.strip_prefix("head: ")).unwrap_or_else(|| panic!("no head in {stdout}")).to_string()
}

/// Rewrites records with every hash recomputed and the sequence renumbered: what
/// anyone who can write the file, but does not hold the audit key, can do.
fn reseal(records: &[accord::report::audit::Record]) -> String {
    use sha2::{Digest, Sha256};
    let mut prev = accord::report::audit::GENESIS.to_string();
    let mut out = String::new();
    for (i, r) in records.iter().enumerate() {
        let mut r = r.clone();
        r.seq = i as u64;
        r.prev = prev;
        let body = serde_json::to_string(&r).unwrap();
        let hash = hex::encode(Sha256::digest(body.as_bytes()));
        out += &format!("{},\"hash\":\"{hash}\"}}\n", &body[..body.len() - 1]);
        prev = hash;
    }
    out
}

fn records(text: &str) -> Vec<accord::report::audit::Record> {
    accord::report::audit::read(text.as_bytes()).unwrap()
}

#[test]
fn verify_passes_an_untouched_trail_closed_and_prints_its_head() {
    let dir = tempfile::tempdir().unwrap();
    let (trail, log) = run_with_trail(dir.path());
    let text = std::fs::read_to_string(&trail).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.last().unwrap().contains("\"kind\":\"checkpoint\""), "the stop ends in a checkpoint: {}", lines.last().unwrap());
    let (code, stdout, stderr) = verify(&trail, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("every link verified") && stdout.contains("closed"), "{stdout}");
    let last: Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(head(&stdout), format!("{}:{}", lines.len() - 1, last["hash"].as_str().unwrap()));
    // Another run appends to it: the new trail extends the head written down.
    let before = head(&stdout);
    assert!(log.contains(&format!("its head is {before}")), "the gateway logs the head it closed the trail with: {log}");
    run_with_trail(dir.path());
    let (code, stdout, stderr) = verify(&trail, &["--since", &before]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains(&format!("extends the head {before}")), "{stdout}");
    assert_ne!(head(&stdout), before);
    // A head that is not in the trail: refused (exit 1), and a malformed one is a usage error.
    let forged = format!("{}:{}", 2, "0".repeat(64));
    let (code, _, stderr) = verify(&trail, &["--since", &forged]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("is not the head recorded before"), "{stderr}");
    assert_eq!(verify(&trail, &["--since", "2:xyz"]).0, Some(2));
}

/// Issue 13: every tampering is found by `verify` and refused by `report`, which
/// names the first broken record.
#[test]
fn each_tampering_is_found_by_verify_and_refused_by_report() {
    let dir = tempfile::tempdir().unwrap();
    let (trail, _) = run_with_trail(dir.path());
    let text = std::fs::read_to_string(&trail).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let n = lines.len();
    assert!(n >= 6, "{text}");
    let counters = lines.iter().position(|l| l.contains("\"kind\":\"counters\"")).unwrap();
    let rs = records(&text);
    // Zero the prohibited_category counts and recompute every hash (issue 13's forgery).
    let mut zeroed = rs.clone();
    for r in &mut zeroed {
        for d in r.content["dropped"].as_array_mut().into_iter().flatten() {
            if d["reason"] == "prohibited_category" {
                d["count"] = 0.into();
            }
        }
    }
    assert_ne!(zeroed, rs, "the trail counts prohibited categories");
    // A checkpoint signed with another key, over the very same records.
    let other_key = dir.path().join("other");
    assert!(accord().args(["keygen", "--audit", "--out"]).arg(&other_key).output().unwrap().status.success());
    let other_trail = dir.path().join("other.jsonl");
    let out = crate::common::run_examples()
        .arg("--input")
        .arg(example("events.jsonl"))
        .arg("--output")
        .arg(dir.path().join("out2"))
        .arg("--audit")
        .arg(&other_trail)
        .arg("--audit-key")
        .arg(other_key.join("audit.key"))
        .output()
        .unwrap();
    assert!(out.status.success());

    let edited = lines[counters].replacen("\"received\":", "\"received\":1", 1);
    let cases: Vec<(&str, String, u64, &str)> = vec![
        ("edited", [&lines[..counters], &[edited.as_str()], &lines[counters + 1..]].concat().join("\n"), counters as u64, "was changed"),
        ("inserted", [&lines[..2], &[lines[1]], &lines[2..]].concat().join("\n"), 2, "missing or out of order"),
        ("deleted", [&lines[..1], &lines[2..]].concat().join("\n"), 1, "missing or out of order"),
        ("reordered", { let mut l = lines.clone(); l.swap(1, 2); l.join("\n") }, 1, "missing or out of order"),
        ("forged", reseal(&zeroed), 0, "checkpoint"),
        ("other key", std::fs::read_to_string(&other_trail).unwrap(), 0, "signature the audit key did not make"),
    ];
    for (what, tampered, seq, why) in cases {
        let path = dir.path().join(format!("{what}.jsonl"));
        std::fs::write(&path, tampered).unwrap();
        let (code, _, stderr) = verify(&path, &[]);
        assert_eq!(code, Some(1), "{what}: {stderr}");
        assert!(stderr.contains(why), "{what}: {stderr}");
        if seq > 0 {
            assert!(stderr.contains(&format!("broken at sequence number {seq}:")), "{what}: {stderr}");
        }
        // --open does not excuse a broken link.
        assert_eq!(verify(&path, &["--open"]).0, Some(1), "{what}");
        let (code, stdout, stderr) = report(&path, &["--open"]);
        assert_eq!(code, Some(1), "{what}: {stderr}");
        assert!(stdout.is_empty(), "{what}: nothing is reported: {stdout}");
        assert!(stderr.contains(": broken at sequence number") && stderr.contains("the trail does not verify, so it is not reported on"), "{what}: {stderr}");
    }

    // Cut at the end: open, with how many records follow the last checkpoint.
    let cut = dir.path().join("cut.jsonl");
    std::fs::write(&cut, lines[..n - 1].join("\n")).unwrap();
    let (code, _, stderr) = verify(&cut, &[]);
    assert_eq!(code, Some(1), "{stderr}");
    let last_checkpoint = lines[..n - 1].iter().rposition(|l| l.contains("\"kind\":\"checkpoint\""));
    let following = n - 1 - last_checkpoint.map_or(0, |i| i + 1);
    assert!(stderr.contains("open: the last record is not a signed checkpoint"), "{stderr}");
    assert!(stderr.contains(&format!("{following} record(s) follow the last")) || (last_checkpoint.is_none() && stderr.contains("no signed checkpoint")), "{stderr}");
    let (code, stdout, _) = verify(&cut, &["--open"]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("open:") && stdout.contains("head: "), "{stdout}");
    let (code, _, stderr) = report(&cut, &[]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("the trail is open"), "{stderr}");
    let (code, stdout, _) = report(&cut, &["--open"]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("The trail is still open"), "{stdout}");
    // Cut before the head written down: --since finds it even at a checkpoint.
    let (_, stdout, _) = verify(&trail, &[]);
    let cut_at_checkpoint = lines[..=last_checkpoint.unwrap()].join("\n");
    std::fs::write(&cut, cut_at_checkpoint).unwrap();
    assert_eq!(verify(&cut, &[]).0, Some(0), "a trail cut at a checkpoint is closed");
    let (code, _, stderr) = verify(&cut, &["--since", &head(&stdout)]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("records were removed from its end"), "{stderr}");
}

/// Without an audit key the trail has no checkpoint: it never verifies as closed.
#[test]
fn a_trail_without_an_audit_key_never_verifies_closed() {
    let dir = tempfile::tempdir().unwrap();
    let trail = dir.path().join("audit.jsonl");
    let out = crate::common::run_examples().arg("--input").arg(example("events.jsonl")).arg("--output").arg(dir.path().join("out")).arg("--audit").arg(&trail).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no audit key is configured"), "{}", String::from_utf8_lossy(&out.stderr));
    let (code, _, stderr) = verify(&trail, &[]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("it has no signed checkpoint"), "{stderr}");
    assert_eq!(verify(&trail, &["--open"]).0, Some(0));
    assert_eq!(report(&trail, &[]).0, Some(1));
    // A party's co-signing key is not the audit key: refused before anything is written.
    let keys = dir.path().join("keys");
    assert!(accord().args(["keygen", "--party", "Ondernemingsraad", "--out"]).arg(&keys).output().unwrap().status.success());
    let other = dir.path().join("other.jsonl");
    let out = crate::common::run_examples()
        .arg("--input")
        .arg(example("events.jsonl"))
        .arg("--output")
        .arg(dir.path().join("out2"))
        .arg("--audit")
        .arg(&other)
        .arg("--audit-key")
        .arg(keys.join("ondernemingsraad.key"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is for party `Ondernemingsraad`, not `audit`"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = accord().args(["audit", "verify"]).arg(&trail).arg("--pub").arg(keys.join("ondernemingsraad.pub")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn the_report_summarises_the_period_as_text_json_and_html() {
    let dir = tempfile::tempdir().unwrap();
    let (trail, summary) = run_with_trail(dir.path());
    let summary = summary_counts(&summary);
    let report = |format: &str| {
        let (code, stdout, stderr) = report(&trail, &["--format", format]);
        assert_eq!(code, Some(0), "{stderr}");
        stdout
    };
    let json: Value = serde_json::from_str(&report("json")).unwrap();
    assert_eq!(json["received"].as_u64(), summary.get("received").copied());
    assert_eq!(json["forwarded"]["planning"].as_u64(), summary.get("planning").copied());
    assert_eq!(json["agreements"][0]["agreement"], "acme-dc-utrecht");
    assert_eq!(json["days"].as_array().unwrap().len(), 1);
    assert!(report("text").contains("acme-dc-utrecht version 4"));
    let html = report("html");
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("<svg"));
    // Self-contained: no script, and no address but the SVG namespace.
    assert!(!html.contains("<script"));
    assert_eq!(html.matches("http").count(), html.matches("xmlns=\"http://www.w3.org/2000/svg\"").count());
    for purpose in ["safety", "payroll", "planning", "it_security"] {
        assert!(html.contains(purpose), "{purpose}");
    }
    // It renders in a browser, with its charts.
    let page = dir.path().join("report.html");
    std::fs::write(&page, &html).unwrap();
    let png = dir.path().join("report.png");
    let dom = crate::common::chromium(&page, &png);
    assert!(dom.contains("Passed on per purpose") && dom.contains("<rect"), "{dom}");
    assert!(std::fs::metadata(&png).unwrap().len() > 10_000);
    // A period before the run holds nothing.
    let (_, out, _) = crate::audit::report(&trail, &["--format", "json", "--until", "2000-01-01"]);
    let empty: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(empty["records"], 0);
    assert_eq!(empty["verification"]["closed"], true);
    // Words a works council reads, in English and Dutch; the raw codes only in JSON.
    assert!(json["dropped"].as_array().unwrap().iter().any(|d| d["reason"] == "prohibited_category"));
    let (_, nl, _) = crate::audit::report(&trail, &["--lang", "nl"]);
    let (_, nl_html, _) = crate::audit::report(&trail, &["--lang", "nl", "--format", "html"]);
    for page in [&report("text"), &html, &nl, &nl_html] {
        for code in ["prohibited_category", "special_category", "no_matching_rule", "agreement_not_in_force", "outside_schedule", "malformed"] {
            assert!(!page.contains(code), "raw code {code} in a report for people");
        }
    }
    assert!(report("text").contains("data the law or the agreement forbids"));
    assert!(nl.contains("gegevens die de wet of de afspraak verbiedt") && nl.contains("Het auditlogboek is gecontroleerd"), "{nl}");
    assert!(nl_html.contains("<html lang=\"nl\">") && nl_html.contains("Tegengehouden, en waarom"));
}

/// Exactly what the run counted, counter by counter (the only in-process user of the
/// global metrics recorder in this test binary).
#[test]
fn metrics_equal_the_runs_tally_reason_by_reason() {
    let engine = std::sync::Arc::new(example_engine());
    let agreement = engine.agreement().clone();
    let metrics = Metrics::new(&agreement, "file");
    let dir = tempfile::tempdir().unwrap();
    let mut sink = Sink::dir(dir.path(), &engine, Format::Json).unwrap();
    let events = std::fs::read(example("events.jsonl")).unwrap();
    let totals = filemode::run(Arc::new(engine.clone()), &mut filemode::Input::new(&events[..]), Format::Json, &mut sink, Format::Json, &mut |_, t, d| metrics.record(t, d)).unwrap();
    let tally = totals.single().unwrap();
    let text = accord::report::admin::recorder().render();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) | prometheus_parse::Value::Gauge(v) => v,
                _ => 0.0,
            })
            .sum()
    };
    assert_eq!(value("accord_events_received_total", &[("input", "file")]), tally.received as f64);
    for reason in accord::engine::DropReason::ALL {
        assert_eq!(value("accord_events_dropped_total", &[("reason", reason.as_str())]), tally.dropped_for(reason) as f64, "{reason}");
    }
    for (i, p) in agreement.purposes.iter().enumerate() {
        assert_eq!(value("accord_events_forwarded_total", &[("purpose", &p.name)]), tally.forwarded_to(i) as f64, "{}", p.name);
    }
    assert_eq!(value("accord_fields_removed_total", &[]), tally.fields_removed.iter().sum::<u64>() as f64);
    // Categories are labelled by name, else `other`; never by free text from events.
    assert!(value("accord_events_dropped_total", &[("reason", "prohibited_category"), ("category", "emotion")]) > 0.0);
    for s in &scrape.samples {
        if let Some(c) = s.labels.get("category") {
            assert!(c == "other" || agreement.taxonomy.category(c).is_some(), "{c}");
        }
    }
}


/// The binary's admin server, scraped over HTTP while it runs: every SPEC 5 name
/// with its type, health and readiness; and no identifier, value or key anywhere.
#[test]
fn the_admin_server_serves_every_spec_metric_and_nothing_identifying() {
    let mut child = run_examples()
        .args(["--input", "-", "--output", "-", "--admin", "127.0.0.1:0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    let addr = first.trim().rsplit("http://").next().unwrap().split_whitespace().next().unwrap().to_string();
    // Three copies of the examples: more than two batches are counted while the
    // gateway waits for more input.
    let events = std::fs::read(example("events.jsonl")).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for _ in 0..7 {
        stdin.write_all(&events).unwrap();
    }
    stdin.flush().unwrap();
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = http_get(&addr, "/metrics").1;
        if metrics.contains("accord_events_forwarded_total{") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(http_get(&addr, "/healthz").0, 200);
    assert_eq!(http_get(&addr, "/readyz").0, 200);
    let scrape = prometheus_parse::Scrape::parse(metrics.lines().map(|l| Ok(l.to_string()))).unwrap();
    let kind = |name: &str| scrape.samples.iter().find(|s| s.metric == name).map(|s| std::mem::discriminant(&s.value));
    let counter = Some(std::mem::discriminant(&prometheus_parse::Value::Counter(0.0)));
    for name in ["accord_events_received_total", "accord_events_forwarded_total", "accord_events_dropped_total", "accord_fields_removed_total", "accord_fields_pseudonymised_total", "accord_fields_generalised_total", "accord_agreement_reloads_total"] {
        assert_eq!(kind(name), counter, "{name} missing or not a counter in:\n{metrics}");
    }
    assert_eq!(kind("accord_agreement_info"), Some(std::mem::discriminant(&prometheus_parse::Value::Gauge(0.0))));
    assert!(metrics.contains("# TYPE accord_processing_seconds histogram"), "{metrics}");
    assert!(scrape.samples.iter().any(|s| s.metric == "accord_processing_seconds" && matches!(s.value, prometheus_parse::Value::Histogram(_))));
    drop(stdin);
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert!(child.wait().unwrap().success());
    assert_nothing_identifying(&metrics, "metrics");
    assert_nothing_identifying(&rest, "the log");
}

/// Every identifier, and every attribute value that is not a name from the agreement,
/// of the examples.
fn identifying_values() -> Vec<String> {
    let agreement = std::fs::read_to_string(example("agreement.yaml")).unwrap();
    let mut out = vec![String::from_utf8(demo_key()).unwrap()];
    fn strings(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
            Value::Object(m) => m.values().for_each(|v| strings(v, out)),
            _ => {}
        }
    }
    for line in std::fs::read_to_string(example("events.jsonl")).unwrap().lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
        for field in ["event_id", "subject_id", "device_id"] {
            if let Some(s) = v.get(field).and_then(Value::as_str) {
                out.push(s.to_string());
            }
        }
        let mut attrs = Vec::new();
        strings(&v["attributes"], &mut attrs);
        out.extend(attrs.into_iter().filter(|s| s.len() >= 5 && !agreement.contains(s.as_str())));
    }
    out.sort();
    out.dedup();
    out
}

fn assert_nothing_identifying(text: &str, what: &str) {
    for v in identifying_values() {
        assert!(!text.contains(&v), "{what} holds `{v}`");
    }
}

#[test]
fn no_identifier_value_or_key_in_the_trail_or_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let (trail, stderr) = run_with_trail(dir.path());
    assert_nothing_identifying(&std::fs::read_to_string(&trail).unwrap(), "the trail");
    assert_nothing_identifying(&stderr, "the log");
    let html = report(&trail, &["--format", "html"]).1.into_bytes();
    assert_nothing_identifying(&String::from_utf8(html).unwrap(), "the report");
}

/// In a container the log is JSON, one object per line, and holds nothing identifying.
#[test]
fn the_log_is_json_lines_without_identifiers() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_examples()
        .env("ACCORD_LOG_FORMAT", "json")
        .args(["--input"])
        .arg(example("events.jsonl"))
        .arg("--output")
        .arg(dir.path())
        .args(["--admin", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let log = String::from_utf8(out.stderr).unwrap();
    // The log lines are JSON; the closing summary is for people, in plain text after them (issue 15).
    let summary = log.lines().skip_while(|l| l.starts_with('{')).collect::<Vec<_>>().join("\n");
    assert!(summary.starts_with("agreement acme-dc-utrecht version 4") && summary.contains("-> accord.safety"), "{log}");
    let lines: Vec<Value> = log.lines().take_while(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not a JSON line: {l}"))).collect();
    assert!(lines.len() >= 2, "{log}");
    for l in &lines {
        assert!(l["level"].is_string() && l["message"].is_string() && l["timestamp"].is_string(), "{l}");
    }
    let finished = lines.iter().find(|l| l["message"] == "run finished").expect("a closing event");
    assert_eq!(finished["received"], 365);
    assert_nothing_identifying(&log, "the JSON log");
}

/// The admin address `accord run --admin 127.0.0.1:0` logs first on stderr.
fn admin_address(stderr: &mut BufReader<std::process::ChildStderr>) -> String {
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    first.trim().rsplit("http://").next().unwrap().split_whitespace().next().unwrap().to_string()
}

/// Event lines of the examples that are forwarded (by the run of the whole file).
fn forwarded_event_lines(n: usize) -> Vec<String> {
    let out = run_examples().arg("--input").arg(example("events.jsonl")).args(["--output", "-"]).output().unwrap();
    let ids: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["event_id"].as_str().unwrap().to_string()).collect();
    let events = std::fs::read_to_string(example("events.jsonl")).unwrap();
    let mut picked: Vec<String> = Vec::new();
    for line in events.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
        if v["event_id"].as_str().is_some_and(|id| ids.iter().any(|i| i == id)) && !picked.iter().any(|p| p == line) {
            picked.push(line.to_string());
        }
        if picked.len() == n {
            break;
        }
    }
    assert_eq!(picked.len(), n);
    picked
}

/// Issue 13: at 1 event a second, `/metrics` shows each event within a second (file
/// mode used to publish every 64 events); the processing histogram measures work
/// (no observation in +Inf, none for the pauses); forwarded series exist only for the
/// (purpose, rule) pairs the agreement allows.
#[test]
fn metrics_of_a_slow_input_are_fresh_within_a_second() {
    let mut child = run_examples()
        .args(["--input", "-", "--output", "-", "--admin", "127.0.0.1:0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let addr = admin_address(&mut stderr);
    let mut stdin = child.stdin.take().unwrap();
    let value = |scrape: &prometheus_parse::Scrape, name: &str| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .map(|s| match &s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => *v,
                _ => 0.0,
            })
            .sum()
    };
    let events = forwarded_event_lines(3);
    let mut scrape = None;
    for (i, line) in events.iter().enumerate() {
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
        std::thread::sleep(std::time::Duration::from_secs(1));
        let text = http_get(&addr, "/metrics").1;
        let s = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
        assert_eq!(value(&s, "accord_events_received_total"), (i + 1) as f64, "one second after event {}:\n{text}", i + 1);
        assert!(value(&s, "accord_events_forwarded_total") >= (i + 1) as f64, "{text}");
        scrape = Some(s);
    }
    let scrape = scrape.unwrap();
    // Forwarded: exactly the pairs a rule names.
    let agreement = example_engine().agreement().clone();
    let mut allowed: Vec<(String, String)> = Vec::new();
    for r in &agreement.rules {
        for p in &r.purposes {
            allowed.push((agreement.purposes[usize::from(*p)].name.clone(), r.name.clone()));
        }
    }
    let mut series: Vec<(String, String)> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "accord_events_forwarded_total")
        .map(|s| (s.labels.get("purpose").unwrap().to_string(), s.labels.get("rule").unwrap().to_string()))
        .collect();
    series.sort();
    allowed.sort();
    assert_eq!(series, allowed, "forwarded series only for pairs that can occur");
    assert!(allowed.len() < agreement.rules.len() * agreement.purposes.len(), "the examples have pairs that cannot occur");
    // The histogram: one observation per non-empty batch, each within the buckets.
    let hist = scrape
        .samples
        .iter()
        .find_map(|s| match (&s.metric[..], &s.value) {
            ("accord_processing_seconds", prometheus_parse::Value::Histogram(h)) => Some(h.clone()),
            _ => None,
        })
        .expect("accord_processing_seconds");
    let count = hist.iter().map(|b| b.count).fold(0.0, f64::max);
    assert!((1.0..=3.0).contains(&count), "3 events, each a batch at most, the pauses none: {hist:?}");
    let at = |le: f64| hist.iter().find(|b| (b.less_than - le).abs() < 1e-12).map(|b| b.count);
    assert!(at(0.000_001).is_some(), "buckets from a microsecond: {hist:?}");
    assert_eq!(at(0.1), Some(count), "every batch took well under 100 ms of work: {hist:?}");
    drop(stdin);
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert!(child.wait().unwrap().success(), "{rest}");
}

/// Issue 13: `--output -` through a pipe that pauses shows each output within a second
/// (`tail -f events | accord run ... --output -`).
#[test]
fn output_to_stdout_is_flushed_whenever_the_input_pauses() {
    let mut child = run_examples().args(["--input", "-", "--output", "-"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in stdout.lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let mut stdin = child.stdin.take().unwrap();
    for line in forwarded_event_lines(3) {
        let id = serde_json::from_str::<Value>(&line).unwrap()["event_id"].as_str().unwrap().to_string();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        let shown = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(out) if serde_json::from_str::<Value>(&out).unwrap()["event_id"] == id.as_str() => break true,
                Ok(_) => continue,
                Err(_) => break false,
            }
        };
        assert!(shown, "the output of {id} was not shown within a second while the input paused");
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
    reader.join().unwrap();
}

/// SPEC 7: while the gateway runs, a checkpoint follows new records within the
/// interval (at most a minute), so a running gateway's trail verifies as closed soon
/// after each record; at the stop, the last record is a checkpoint again.
#[test]
fn a_running_gateway_signs_its_trail_every_interval() {
    let dir = tempfile::tempdir().unwrap();
    let trail = dir.path().join("audit.jsonl");
    let mut child = run_examples()
        .args(["--input", "-", "--output", "-", "--audit-interval", "1"])
        .arg("--audit")
        .arg(&trail)
        .arg("--audit-key")
        .arg(example("audit.key"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let events = forwarded_event_lines(2);
    writeln!(stdin, "{}", events[0]).unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1200));
    writeln!(stdin, "{}", events[1]).unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let text = std::fs::read_to_string(&trail).unwrap();
    let kinds: Vec<String> = text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["kind"].as_str().unwrap().to_string()).collect();
    let counters = kinds.iter().position(|k| k == "counters").unwrap_or_else(|| panic!("no counters record yet: {kinds:?}"));
    assert!(kinds[counters..].iter().any(|k| k == "checkpoint"), "no checkpoint after the counters within the interval: {kinds:?}");
    assert!(!kinds.iter().any(|k| k == "gateway_stopped"), "still running: {kinds:?}");
    let (code, stdout, stderr) = verify(&trail, &["--open"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("every link verified"), "{stdout}");
    drop(stdin);
    assert!(child.wait().unwrap().success());
    let (code, stdout, stderr) = verify(&trail, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("closed"), "{stdout}");
}
