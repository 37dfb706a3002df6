//! Live reload under a steady stream, in file mode: nothing lost, every output stamped
//! with exactly one version, the switch visible, a broken agreement changing nothing.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::common::{accord, example};

#[test]
fn reload_under_a_steady_stream_loses_nothing_and_mixes_no_versions() {
    let dir = tempfile::tempdir().unwrap();
    let agreement = dir.path().join("agreement.yaml");
    let v4 = std::fs::read_to_string(example("agreement.yaml")).unwrap();
    std::fs::write(&agreement, &v4).unwrap();
    let out_dir = dir.path().join("out");
    let mut child = accord()
        .args(["run", "--agreement"])
        .arg(&agreement)
        .arg("--key-file")
        .arg(example("demo.key"))
        .args(["--key-id", "demo-2026", "--input", "-", "--output"])
        .arg(&out_dir)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let reader = std::thread::spawn(move || {
        for line in stderr.lines() {
            let line = line.unwrap();
            let _ = tx.send(line);
        }
    });
    let wait_for = |what: &str| -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_else(|_| panic!("no `{what}` on stderr; saw {seen:#?}"));
            let done = line.contains(what);
            seen.push(line);
            if done {
                return seen;
            }
        }
    };
    let events: Vec<String> = std::fs::read_to_string(example("events.jsonl")).unwrap().lines().map(str::to_owned).collect();
    let mut stdin = child.stdin.take().unwrap();
    let feed = |stdin: &mut std::process::ChildStdin| {
        for e in &events {
            writeln!(stdin, "{e}").unwrap();
        }
        stdin.flush().unwrap();
    };

    feed(&mut stdin);
    // Version 5: planning now rounds to 2 decimals.
    let v5 = v4.replace("version: 4", "version: 5").replace("attributes.lat: { round: 3 }", "attributes.lat: { round: 2 }");
    assert_ne!(v4, v5);
    std::fs::write(&agreement, &v5).unwrap();
    wait_for("version 5 is now in force");
    feed(&mut stdin);
    // A broken agreement: refused with its problems at their lines; 5 stays in force.
    std::fs::write(&agreement, v5.replace("purposes: [planning]", "purposes: [planing]")).unwrap();
    let refused = wait_for("was refused");
    assert!(refused.iter().any(|l| l.contains("agreement.yaml:") && l.contains("purpose `planing` is not defined")), "{refused:#?}");
    feed(&mut stdin);
    drop(stdin);
    assert!(child.wait().unwrap().success());
    reader.join().unwrap();

    // Every output names one version; within each topic they switch once, 4 then 5.
    let mut total = 0;
    let (mut fours, mut fives) = (0, 0);
    for entry in std::fs::read_dir(&out_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap() == "quarantine.jsonl" {
            continue;
        }
        let versions: Vec<u64> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["accord"]["version"].as_u64().unwrap())
            .collect();
        assert!(versions.windows(2).all(|w| w[0] <= w[1]), "{}: versions go back", path.display());
        fours += versions.iter().filter(|v| **v == 4).count();
        fives += versions.iter().filter(|v| **v == 5).count();
        total += versions.len();
    }
    assert_eq!(fours + fives, total, "only versions 4 and 5");
    // Nothing lost: three copies of the week's outputs. The second and third copy came
    // after version 5 was in force; the first mostly before (the watcher may have
    // swapped while the gateway was still at the end of it).
    let engine = crate::common::example_engine();
    let mut out = accord::engine::Outputs::default();
    let per_copy: usize = events.iter().map(|e| { engine.process(e.as_bytes(), accord::event::Format::Json, &mut out); out.items.len() }).sum();
    assert_eq!(total, 3 * per_copy);
    assert!(fours > 0 && fives >= 2 * per_copy, "4: {fours}, 5: {fives}");
    let planning = std::fs::read_to_string(out_dir.join("accord.planning.jsonl")).unwrap();
    let last: Value = serde_json::from_str(planning.lines().last().unwrap()).unwrap();
    let lat = last["attributes"]["lat"].as_f64().unwrap();
    assert_eq!((lat * 100.0).round() / 100.0, lat, "version 5 rounds to 2 decimals: {lat}");
}
