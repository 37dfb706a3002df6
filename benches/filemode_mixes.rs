//! File mode against the speed of JSON itself, on one core, on each workload (issue 11;
//! `filemode.rs` is the examples' mix with instruments and suppressions, issue 14).
//!
//! For each workload of `workload.rs` (the examples' mix, about 320 bytes an event, the
//! site mix, about 420, the wearables' mix, about 390, where pseudonyms dominate, and
//! the large mix, about 400, where the agreement is large), writes 1M events to a temporary file, then, in the same
//! run and on the same thread, times:
//!
//! 1. the baseline: each line parsed into a `serde_json::Value` and written back;
//! 2. `accord run` file mode (the library's `filemode::run`) into a directory;
//! 3. file mode again, counting every batch into the Prometheus metrics, to show
//!    that metrics cost nothing measurable (the goal: within 3%).
//!
//! Times are the thread's CPU time (user and system, so the writes count), not the
//! wall clock: on a shared machine a wait for a core is not work. All stream the file through a 64 KiB reader. Prints events/s for each, the ratios,
//! and the peak RSS (flat: the input is streamed, never held). Then the pseudonym
//! cache: the engine alone over the events in memory, with the default cache, with
//! other sizes and with none, best of 5 each, with its hit, miss and eviction counts.
//!
//!     taskset -c 1 cargo bench --bench filemode_mixes [-- EVENTS] [--mix examples|site|wearables|large] [--no-cache-table | --cache-only]
//!
//! `--input FILE --agreement FILE` runs the same comparison on your own workload (JSON
//! lines, one event each) under your own agreement, with the demo key:
//!
//!     taskset -c 1 cargo bench --bench filemode_mixes -- --input events.jsonl --agreement agreement.yaml
//!
//! `--shapes` runs it on each of `workload.rs`'s [`Shape`](workload::Shape)s instead of
//! the mixes, `EVENTS` of each (corners, not sites: see there):
//!
//!     taskset -c 1 cargo bench --bench filemode_mixes -- 200000 --shapes [--shape NAME] [--no-cache-table | --cache-only | --once]
//!
//! `--once` instead runs file mode once over the events held in memory, into nothing,
//! untimed: for counting instructions, a figure a noisy machine cannot move:
//!
//!     valgrind --tool=callgrind --collect-atstart=no --toggle-collect='accord::run::filemode::run_with' \
//!         target/release/deps/filemode_mixes-HASH 20000 --mix site --once

mod workload;

use workload::{Mix, Shape};
use std::fs::File;
use std::io::BufWriter;
use std::sync::Arc;


use accord::event::Format;
use accord::run::filemode::{self, Sink};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| args.iter().position(|a| a == flag).map(|i| args.get(i + 1).unwrap_or_else(|| panic!("{flag} FILE")).clone());
    if let Some(input) = value("--input") {
        let agreement = value("--agreement").expect("--input needs --agreement FILE");
        let engine = Arc::new(workload::engine_of(agreement.as_ref()));
        let file = File::open(&input).unwrap_or_else(|e| panic!("{input}: {e}"));
        let n = std::io::BufRead::split(std::io::BufReader::new(file), b'\n').filter(|l| l.as_ref().is_ok_and(|l| !l.is_empty())).count();
        let dir = tempfile::tempdir().unwrap();
        compare(&input, std::path::Path::new(&input), n, &engine, dir.path());
        println!("peak RSS: {}", peak_rss());
        return;
    }
    let n: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(1_000_000);
    let flag = |f: &str| args.iter().any(|a| a == f);
    let loads: Vec<Load> = if flag("--shapes") {
        match value("--shape") {
            Some(name) => vec![Load::Shape(Shape::parse(&name).expect("--shape tiny|wide-kept|wide-stripped|six-purposes|arrays|deep|long-strings|mostly-dropped"))],
            None => Shape::ALL.map(Load::Shape).to_vec(),
        }
    } else {
        match value("--mix") {
            Some(name) => vec![Load::Mix(Mix::parse(&name).expect("--mix examples|site|wearables|large"))],
            None => Mix::ALL.map(Load::Mix).to_vec(),
        }
    };
    if flag("--once") {
        for &load in &loads {
            once(load, n);
        }
        return;
    }
    let mut summary = Vec::new();
    for &load in &loads {
        if !flag("--cache-only") {
            summary.push(file_mode(load, n));
        }
    }
    println!("peak RSS after file mode: {}", peak_rss());
    if !flag("--no-cache-table") {
        for &load in &loads {
            cache_table(load, n);
        }
    }
    for line in summary {
        println!("{line}");
    }
    println!("peak RSS (the cache table holds its events in memory): {}", peak_rss());
}

/// A mix or a shape of `workload.rs`.
#[derive(Clone, Copy)]
enum Load {
    Mix(Mix),
    Shape(Shape),
}

impl Load {
    fn name(self) -> String {
        match self {
            Load::Mix(m) => format!("{} mix", m.name()),
            Load::Shape(s) => format!("{} shape", s.name()),
        }
    }

    /// `n` events as JSON lines into `out`; returns the bytes written.
    fn write(self, n: usize, out: &mut impl std::io::Write) -> std::io::Result<u64> {
        match self {
            Load::Mix(m) => workload::write_mix(m, n, out),
            Load::Shape(s) => s.write(n, out),
        }
    }

    fn engine(self) -> accord::engine::Engine {
        match self {
            Load::Mix(m) => workload::engine_for(m),
            Load::Shape(s) => workload::engine_for_shape(s),
        }
    }

    /// `n` events held in memory.
    fn in_memory(self, n: usize) -> Vec<u8> {
        let mut all = Vec::new();
        self.write(n, &mut all).unwrap();
        all
    }
}

/// File mode once over `n` events of `load` in memory, written nowhere (`--once`).
fn once(load: Load, n: usize) {
    let all = load.in_memory(n);
    let engine = Arc::new(load.engine());
    let mut reader = filemode::Input::new(&all[..]);
    let mut sink = Sink::Stream { out: Box::new(std::io::sink()), notes: Box::new(std::io::sink()) };
    let tally = filemode::run(Arc::new(engine.clone()), &mut reader, Format::Json, &mut sink, Format::Json, &mut |_, _, _| {}).unwrap();
    assert_eq!(tally.received(), n as u64);
    println!("{}: {n} events once through file mode, {} forwarded", load.name(), tally.forwarded_events());
}

/// File mode against the JSON round trip on one mix or shape; returns the summary line.
fn file_mode(load: Load, n: usize) -> String {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    let bytes = load.write(n, &mut BufWriter::new(File::create(&input).unwrap())).unwrap();
    println!("workload {}: {n} events, {:.0} bytes each on average, {}", load.name(), bytes as f64 / n as f64, input.display());
    let engine = Arc::new(load.engine());
    compare(&load.name(), &input, n, &engine, dir.path())
}

/// The JSON round trip against file mode (and file mode with metrics) on the `n` events
/// in `input`, best of 5 rounds, writing into `dir`; returns the summary line.
fn compare(name: &str, input: &std::path::Path, n: usize, engine: &Arc<accord::engine::Engine>, dir: &std::path::Path) -> String {
    let rounds = 5;
    let metrics = accord::report::admin::Metrics::new(engine.agreement(), "file");
    let (mut best_base, mut best_accord, mut best_metrics) = (f64::MAX, f64::MAX, f64::MAX);
    for round in 1..=rounds {
        // 1. serde_json::Value parse and write-back (skipped with ACCORD_BENCH_ONLY=accord, for profiling).
        let only_accord = std::env::var("ACCORD_BENCH_ONLY").is_ok_and(|v| v == "accord");
        let start = cpu_now();
        let parsed = if only_accord { 0 } else { workload::json_round_trip(input, &dir.join("baseline.jsonl")) };
        let base = cpu_now() - start;

        // 2. Accord file mode.
        let start = cpu_now();
        let mut reader = filemode::Input::open(input.to_str().unwrap()).unwrap();
        let mut sink = Sink::dir(&dir.join("out"), engine, Format::Json).unwrap();
        let tally = filemode::run(Arc::new(engine.clone()), &mut reader, Format::Json, &mut sink, Format::Json, &mut |_, _, _| {}).unwrap();
        let accord = cpu_now() - start;
        assert_eq!(tally.received(), n as u64);
        println!(
            "round {round}: baseline {:>9.0} events/s ({parsed} parsed)   accord {:>9.0} events/s ({} forwarded, {} dropped)",
            n as f64 / base,
            n as f64 / accord,
            tally.forwarded_events(),
            tally.dropped_total()
        );
        // 3. With metrics.
        let start = cpu_now();
        let mut reader = filemode::Input::open(input.to_str().unwrap()).unwrap();
        let mut sink = Sink::dir(&dir.join("out"), engine, Format::Json).unwrap();
        filemode::run(Arc::new(engine.clone()), &mut reader, Format::Json, &mut sink, Format::Json, &mut |_, t, d| metrics.record(t, d)).unwrap();
        let with_metrics = cpu_now() - start;
        println!("         accord with metrics {:>9.0} events/s", n as f64 / with_metrics);
        best_base = best_base.min(base);
        best_accord = best_accord.min(accord);
        best_metrics = best_metrics.min(with_metrics);
    }
    let (base_rate, accord_rate) = (n as f64 / best_base, n as f64 / best_accord);
    let metrics_rate = n as f64 / best_metrics;
    let line = format!(
        "{name}, best of {rounds}: serde_json::Value parse+write {base_rate:.0} events/s; accord file mode {accord_rate:.0} events/s; ratio {:.2}x; with metrics {metrics_rate:.0} events/s ({:+.1}%)",
        accord_rate / base_rate,
        (metrics_rate / accord_rate - 1.0) * 100.0
    );
    println!("{line}");
    line
}

/// The engine alone over `n` events of `load` held in memory: ns per event with the
/// pseudonym cache at several sizes and without it, best of 5, and the cache's counts.
fn cache_table(load: Load, n: usize) {
    use accord::engine::Outputs;
    use accord::pseudonym::Cache;
    let (engine, all) = (load.engine(), load.in_memory(n));
    let events: Vec<&[u8]> = all.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
    // Tables of one size that always look, and the default, which chooses its size (or none).
    type Size = (&'static str, fn() -> Cache);
    let sizes: [Size; 8] = [
        ("none", Cache::disabled),
        ("256 always", || Cache::fixed(256)),
        ("1024 always", || Cache::fixed(1024)),
        ("4096 always", || Cache::fixed(4096)),
        ("16384 always", || Cache::fixed(16384)),
        ("65536 always", || Cache::fixed(65536)),
        ("262144 always", || Cache::fixed(262_144)),
        ("default", Cache::default),
    ];
    println!("pseudonym cache, {}, engine only, {} events:", load.name(), events.len());
    // The sizes take turns, round after round, so that a slow spell of a shared machine
    // falls on all of them alike rather than on one size's five rounds.
    let mut best = [f64::MAX; 8];
    let mut stats = [(accord::pseudonym::CacheStats::default(), 0); 8];
    for _ in 0..5 {
        for (i, (_, make)) in sizes.iter().enumerate() {
            let mut out = Outputs::default();
            out.cache = make();
            let start = cpu_now();
            for e in &events {
                std::hint::black_box(engine.process(e, Format::Json, &mut out));
            }
            best[i] = best[i].min(cpu_now() - start);
            stats[i] = (out.cache.stats, out.cache.slots());
        }
    }
    for (i, (name, _)) in sizes.iter().enumerate() {
        let (accord::pseudonym::CacheStats { hits, misses, evictions, uncached, rests, resizes }, slots) = stats[i];
        let looked = (hits + misses).max(1) as f64;
        println!(
            "  cache {name:<16} {:>7.0} ns/event  hits {hits:>8} ({:>5.1}%)  misses {misses:>8}  evictions {evictions:>8} ({:>5.1}% of misses)  uncached {uncached}  rests {rests}  resizes {resizes}, {slots} slots at the end",
            best[i] * 1e9 / events.len() as f64,
            hits as f64 * 100.0 / looked,
            evictions as f64 * 100.0 / (misses.max(1) as f64)
        );
    }
}

/// This thread's CPU time in seconds (user and system). The machine is shared: a
/// thread that waits for a core is not charged, so the rounds compare the work done.
fn cpu_now() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM")).map(|l| l.trim_start_matches("VmHWM:").trim().to_string()))
        .unwrap_or_else(|| "unknown".into())
}
