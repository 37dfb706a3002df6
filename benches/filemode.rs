//! File mode against the speed of JSON itself, on one core.
//!
//! Writes 1M events of the examples' mix (as the sensors wrote them, about 320 bytes
//! each) to a temporary file, then, in the same run and on the same thread, times:
//!
//! 1. the baseline: each line parsed into a `serde_json::Value` and written back;
//! 2. `accord run` file mode (the library's `filemode::run`) into a directory;
//! 3. file mode again, counting every batch into the Prometheus metrics, to show
//!    that metrics cost nothing measurable (the goal: within 3%).
//!
//! All stream the file through a 64 KiB reader. Prints events/s for each, the ratios,
//! and the peak RSS (flat: the input is streamed, never held).
//!
//!     cargo bench --bench filemode [-- EVENTS]

mod workload;

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::sync::Arc;
use std::time::Instant;

use accord::event::Format;
use accord::run::filemode::{self, Sink};

fn main() {
    let n: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    let bytes = workload::write_events(n, &mut BufWriter::new(File::create(&input).unwrap())).unwrap();
    println!("workload: {n} events, {:.0} bytes each on average, {}", bytes as f64 / n as f64, input.display());

    let engine = std::sync::Arc::new(workload::engine());
    let rounds = 5;
    let metrics = accord::report::admin::Metrics::new(engine.agreement(), "file");
    let (mut best_base, mut best_accord, mut best_metrics) = (f64::MAX, f64::MAX, f64::MAX);
    for round in 1..=rounds {
        // 1. serde_json::Value parse and write-back (skipped with ACCORD_BENCH_ONLY=accord, for profiling).
        let only_accord = std::env::var("ACCORD_BENCH_ONLY").is_ok_and(|v| v == "accord");
        let start = Instant::now();
        let mut reader = BufReader::with_capacity(1 << 16, File::open(&input).unwrap());
        let mut out = BufWriter::with_capacity(1 << 16, File::create(dir.path().join("baseline.jsonl")).unwrap());
        let mut line = Vec::new();
        let mut parsed = 0u64;
        while !only_accord && reader.read_until(b'\n', &mut line).unwrap() > 0 {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&line) {
                serde_json::to_writer(&mut out, &v).unwrap();
                out.write_all(b"\n").unwrap();
                parsed += 1;
            }
            line.clear();
        }
        out.flush().unwrap();
        let base = start.elapsed().as_secs_f64();

        // 2. Accord file mode.
        let start = Instant::now();
        let mut reader = filemode::Input::open(input.to_str().unwrap()).unwrap();
        let mut sink = Sink::dir(&dir.path().join("out"), &engine, Format::Json).unwrap();
        let tally = filemode::run(Arc::new(engine.clone()), &mut reader, Format::Json, &mut sink, Format::Json, &mut |_, _, _| {}).unwrap();
        let accord = start.elapsed().as_secs_f64();
        assert_eq!(tally.received(), n as u64);
        println!(
            "round {round}: baseline {:>9.0} events/s ({parsed} parsed)   accord {:>9.0} events/s ({} forwarded, {} dropped)",
            n as f64 / base,
            n as f64 / accord,
            tally.forwarded_events(),
            tally.dropped_total()
        );
        // 3. With metrics.
        let start = Instant::now();
        let mut reader = filemode::Input::open(input.to_str().unwrap()).unwrap();
        let mut sink = Sink::dir(&dir.path().join("out"), &engine, Format::Json).unwrap();
        filemode::run(Arc::new(engine.clone()), &mut reader, Format::Json, &mut sink, Format::Json, &mut |_, t, d| metrics.record(t, d)).unwrap();
        let with_metrics = start.elapsed().as_secs_f64();
        println!("         accord with metrics {:>9.0} events/s", n as f64 / with_metrics);
        best_base = best_base.min(base);
        best_accord = best_accord.min(accord);
        best_metrics = best_metrics.min(with_metrics);
    }
    let (base_rate, accord_rate) = (n as f64 / best_base, n as f64 / best_accord);
    println!("best of {rounds}: serde_json::Value parse+write {base_rate:.0} events/s; accord file mode {accord_rate:.0} events/s; ratio {:.2}x", accord_rate / base_rate);
    let metrics_rate = n as f64 / best_metrics;
    println!("with metrics: {metrics_rate:.0} events/s ({:+.1}% against without)", (metrics_rate / accord_rate - 1.0) * 100.0);
    println!("peak RSS: {}", peak_rss());
}

fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM")).map(|l| l.trim_start_matches("VmHWM:").trim().to_string()))
        .unwrap_or_else(|| "unknown".into())
}
