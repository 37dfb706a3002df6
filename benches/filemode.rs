//! File mode against the speed of JSON itself, on one core.
//!
//! Writes 1M events of the examples' mix (as the sensors wrote them, about 320 bytes
//! each) to a temporary file, then, in the same run and on the same thread, times:
//!
//! 1. the baseline: each line parsed into a `serde_json::Value` and written back;
//! 2. `accord run` file mode (the library's `filemode::run`) into a directory;
//! 3. file mode again, counting every batch into the Prometheus metrics, to show
//!    that metrics cost nothing measurable (the goal: within 3%);
//! 4. file mode with the agreement's approved instruments and 1,000 suppressions in
//!    force, against (2) run without instruments and without suppressions (issue 14:
//!    the goal is to lose at most 10%).
//!
//! All stream the file through a 64 KiB reader. Prints events/s for each, the ratios,
//! and the peak RSS (flat: the input is streamed, never held).
//!
//!     cargo bench --bench filemode [-- EVENTS]

mod workload;

use std::fs::File;
use std::io::BufWriter;
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

    // (2) and (3) run as before issue 14: no instruments, no suppressions.
    let engine = std::sync::Arc::new(workload::engine_without_instruments());
    let full = std::sync::Arc::new(workload::engine());
    let suppressions = accord::run::suppressions::none();
    suppressions.store(Arc::new(workload::suppressions(&full, 1000)));
    let mut best_full = f64::MAX;
    let (mut best_cpu, mut best_full_cpu) = (f64::MAX, f64::MAX);
    let rounds = 5;
    let metrics = accord::report::admin::Metrics::new(engine.agreement(), "file");
    let (mut best_base, mut best_accord, mut best_metrics) = (f64::MAX, f64::MAX, f64::MAX);
    for round in 1..=rounds {
        // 1. serde_json::Value parse and write-back (skipped with ACCORD_BENCH_ONLY=accord, for profiling).
        let only_accord = std::env::var("ACCORD_BENCH_ONLY").is_ok_and(|v| v == "accord");
        let start = Instant::now();
        let parsed = if only_accord { 0 } else { workload::json_round_trip(&input, &dir.path().join("baseline.jsonl")) };
        let base = start.elapsed().as_secs_f64();

        // 2. Accord file mode.
        let cpu = cpu_seconds();
        let start = Instant::now();
        let mut reader = filemode::Input::open(input.to_str().unwrap()).unwrap();
        let mut sink = Sink::dir(&dir.path().join("out"), &engine, Format::Json).unwrap();
        let tally = filemode::run(Arc::new(engine.clone()), &mut reader, Format::Json, &mut sink, Format::Json, &mut |_, _, _| {}).unwrap();
        let accord = start.elapsed().as_secs_f64();
        let accord_cpu = cpu_seconds() - cpu;
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
        // 4. With instruments and 1,000 suppressions.
        let cpu = cpu_seconds();
        let start = Instant::now();
        let mut reader = filemode::Input::open(input.to_str().unwrap()).unwrap();
        let mut sink = Sink::dir(&dir.path().join("out"), &full, Format::Json).unwrap();
        let t = filemode::run_with(Arc::new(full.clone()), suppressions.clone(), &mut reader, Format::Json, &mut sink, Format::Json, &mut |_, _, _| {}).unwrap();
        let with_all = start.elapsed().as_secs_f64();
        let with_all_cpu = cpu_seconds() - cpu;
        println!("         CPU time: accord {accord_cpu:.2} s, with instruments and suppressions {with_all_cpu:.2} s ({:+.1}%)", (with_all_cpu / accord_cpu - 1.0) * 100.0);
        best_cpu = best_cpu.min(accord_cpu);
        best_full_cpu = best_full_cpu.min(with_all_cpu);
        println!("         accord with instruments and 1000 suppressions {:>9.0} events/s ({} forwarded, {} dropped)", n as f64 / with_all, t.forwarded_events(), t.dropped_total());
        best_full = best_full.min(with_all);
        best_base = best_base.min(base);
        best_accord = best_accord.min(accord);
        best_metrics = best_metrics.min(with_metrics);
    }
    let (base_rate, accord_rate) = (n as f64 / best_base, n as f64 / best_accord);
    println!("best of {rounds}: serde_json::Value parse+write {base_rate:.0} events/s; accord file mode {accord_rate:.0} events/s; ratio {:.2}x", accord_rate / base_rate);
    let metrics_rate = n as f64 / best_metrics;
    println!("with metrics: {metrics_rate:.0} events/s ({:+.1}% against without)", (metrics_rate / accord_rate - 1.0) * 100.0);
    let full_rate = n as f64 / best_full;
    println!("with instruments and 1000 suppressions: {full_rate:.0} events/s ({:+.1}% against without)", (full_rate / accord_rate - 1.0) * 100.0);
    println!("CPU time, best of {rounds}: {best_cpu:.2} s without, {best_full_cpu:.2} s with instruments and 1000 suppressions ({:+.1}%)", (best_full_cpu / best_cpu - 1.0) * 100.0);
    println!("peak RSS: {}", peak_rss());
}

/// CPU time of this thread so far, in seconds (from /proc; 10 ms ticks): unlike wall
/// time, it does not count the time other processes hold the core.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    // After the name come field 3 (state) onwards: utime and stime are fields 14 and 15.
    let tick = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    (tick(11) + tick(12)) as f64 / 100.0
}

fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM")).map(|l| l.trim_start_matches("VmHWM:").trim().to_string()))
        .unwrap_or_else(|| "unknown".into())
}
