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
    assert_eq!(kinds.last(), Some(&"gateway_stopped"));
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

#[test]
fn verify_passes_an_untouched_trail_and_names_the_first_broken_link() {
    let dir = tempfile::tempdir().unwrap();
    let (trail, _) = run_with_trail(dir.path());
    let verify = |path: &std::path::Path| accord().args(["audit", "verify"]).arg(path).output().unwrap();
    let ok = verify(&trail);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("every link verified"));

    let text = std::fs::read_to_string(&trail).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 4);
    // One byte changed in record 2 (a count, still valid JSON).
    let mut changed = lines.clone();
    let flipped = changed[2].replacen("\"received\":", "\"received\":1", 1);
    changed[2] = &flipped;
    let tampered = dir.path().join("tampered.jsonl");
    std::fs::write(&tampered, changed.join("\n")).unwrap();
    let out = verify(&tampered);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("broken at sequence number 2: record 2 was changed"), "{}", String::from_utf8_lossy(&out.stderr));
    // A record deleted.
    std::fs::write(&tampered, [&lines[..1], &lines[2..]].concat().join("\n")).unwrap();
    let out = verify(&tampered);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("broken at sequence number 1"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_report_summarises_the_period_as_text_json_and_html() {
    let dir = tempfile::tempdir().unwrap();
    let (trail, summary) = run_with_trail(dir.path());
    let summary = summary_counts(&summary);
    let report = |format: &str| {
        let out = accord().args(["audit", "report", "--format", format]).arg(&trail).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
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
    assert!(dom.contains("Forwarded per purpose") && dom.contains("<rect"), "{dom}");
    assert!(std::fs::metadata(&png).unwrap().len() > 10_000);
    // A period before the run holds nothing.
    let out = accord().args(["audit", "report", "--format", "json", "--until", "2000-01-01"]).arg(&trail).output().unwrap();
    let empty: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(empty["records"], 0);
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
    let html = accord().args(["audit", "report", "--format", "html"]).arg(&trail).output().unwrap().stdout;
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
    assert_eq!(finished["received"], 357);
    assert_nothing_identifying(&log, "the JSON log");
}
