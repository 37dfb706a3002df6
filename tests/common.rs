//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use accord::agreement::Agreement;
use accord::engine::Engine;
use accord::pseudonym::{Key, Pseudonymiser};

pub const DEMO_KEY_ID: &str = "demo-2026";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn example(name: &str) -> PathBuf {
    root().join("examples").join(name)
}

/// The `accord` binary under test: `ACCORD_BIN`, else the one cargo built.
pub fn accord_bin() -> PathBuf {
    std::env::var_os("ACCORD_BIN").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_accord")), PathBuf::from)
}

/// The `accord` binary built for these tests, logging as text (a test that checks
/// the JSON log sets `ACCORD_LOG_FORMAT=json` itself). `ACCORD_BIN` names another
/// copy of it: worktrees that share one target directory overwrite each other's
/// `target/debug/accord`, so a run copies its own first.
pub fn accord() -> std::process::Command {
    let mut c = std::process::Command::new(accord_bin());
    c.env("ACCORD_LOG_FORMAT", "text");
    c
}

/// `accord run` in file mode on the examples, with the demo key; add `--input` etc.
pub fn run_examples() -> std::process::Command {
    let mut c = accord();
    c.args(["run", "--agreement"]).arg(example("agreement.yaml")).arg("--key-file").arg(example("demo.key")).args(["--key-id", DEMO_KEY_ID]);
    c
}

/// A plain HTTP/1.1 GET: the status and the body.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

pub fn demo_key() -> Vec<u8> {
    std::fs::read(example("demo.key")).unwrap()
}

/// An engine for an agreement given as YAML text, with the demo key.
pub fn engine_for(yaml: &str) -> Engine {
    let agreement = match Agreement::parse(yaml.as_bytes()) {
        Ok(l) => l.agreement,
        Err(d) => panic!("agreement does not check: {d:#?}"),
    };
    Engine::new(Arc::new(agreement), Arc::new(Pseudonymiser::new(Key::new(&demo_key(), DEMO_KEY_ID).unwrap())))
}

/// An engine for the example agreement.
pub fn example_engine() -> Engine {
    engine_for(&std::fs::read_to_string(example("agreement.yaml")).unwrap())
}

/// Renders a local HTML file in headless Chromium: its DOM as text, and a screenshot
/// written to `png`. Fails, saying why, when Chromium is missing.
pub fn chromium(html: &std::path::Path, png: &std::path::Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let base = |c: &mut std::process::Command| {
        c.args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"])
            .arg(format!("--user-data-dir={}", profile.path().display()));
    };
    let mut shot = std::process::Command::new("chromium");
    base(&mut shot);
    let status = shot
        .arg("--window-size=1100,1600")
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", html.display()))
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("cannot run chromium ({e}): scripts/test.sh installs Debian's chromium"));
    assert!(status.success(), "chromium failed on {}", html.display());
    let mut dom = std::process::Command::new("chromium");
    base(&mut dom);
    let out = dom.arg("--dump-dom").arg(format!("file://{}", html.display())).stderr(std::process::Stdio::null()).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs one JSON event through `engine`: the verdict and each output as (purpose, JSON).
/// One output as the tests compare it: purpose, payload, record key, field counts.
pub type Written = (u8, Vec<u8>, Option<Vec<u8>>, accord::engine::FieldCounts);

/// The outputs of `input`, written by `process` (`walked: false`), or by `accord
/// explain`'s path, which walks the event once for every purpose (`walked: true`);
/// `None` if the event is dropped.
pub fn outputs_written(engine: &Engine, input: &[u8], walked: bool) -> Option<Vec<Written>> {
    let mut out = accord::engine::Outputs::default();
    if walked {
        let event = engine.decode(input).ok()?;
        let decision = engine.decide(&event).ok()?;
        engine.write_outputs(&event, decision, &mut out, Some(&mut Vec::new())).ok()?;
    } else if !matches!(engine.process(input, accord::event::Format::Json, &mut out), accord::engine::Verdict::Forwarded(_)) {
        return None;
    }
    Some(out.iter().map(|(o, payload)| (o.purpose, payload.to_vec(), out.key(o).map(<[u8]>::to_vec), o.fields)).collect())
}

pub fn run(engine: &Engine, input: &[u8]) -> (accord::engine::Verdict, Vec<(String, serde_json::Value)>) {
    let mut out = accord::engine::Outputs::default();
    let verdict = engine.process(input, accord::event::Format::Json, &mut out);
    let outputs = out
        .iter()
        .map(|(o, payload)| {
            let purpose = engine.agreement().purposes[o.purpose as usize].name.clone();
            (purpose, serde_json::from_slice(payload).expect("every output is JSON"))
        })
        .collect();
    (verdict, outputs)
}
