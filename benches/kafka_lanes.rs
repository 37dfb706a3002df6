//! Kafka mode's enforcement step without the broker (issue 11): how the batches of the
//! at-least-once loop spread over `limits.threads` threads, on the site mix.
//!
//! The events are held in memory; each run hands them to [`Records`] the way the loop
//! does, in batches of [`BATCH`], and reads every record's outputs back in consumption
//! order (what the loop then hands to the producer), on the calling thread, while the
//! next batch is enforced. The
//! reference is the one-record-at-a-time path (`limits.threads: 1`). Wall clock, best
//! of 3, events/s for 1, 2, ... lanes up to the cores available (or `--lanes N`), and
//! the least CPU time per event (all threads) of the 3.
//! What this leaves out is the broker and librdkafka: `kafka_e2e` measures those.
//!
//!     taskset -c 0,1 cargo bench --bench kafka_lanes [-- EVENTS] [--lanes N] [--batch N]

mod workload;

use std::sync::Arc;
use std::time::{Duration, Instant};

use accord::agreement::Agreement;
use accord::engine::Engine;
use accord::event::Format;
use accord::pseudonym::{Key, Pseudonymiser};
use accord::run::kafka::at_least_once::BATCH;
use accord::run::kafka::sink::{Made, Records};
use accord::run::reload::Engines;
use workload::Mix;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let flag = |name: &str| args.iter().position(|a| a == name).map(|i| args[i + 1].parse::<usize>().unwrap_or_else(|_| panic!("{name} N")));
    let events = args.iter().enumerate().filter(|(i, _)| *i == 0 || !args[i - 1].starts_with("--")).find_map(|(_, a)| a.parse().ok()).unwrap_or(300_000);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let max = flag("--lanes").unwrap_or(cores);
    // The loop's batch (BATCH); other sizes to see what a batch's fork and join cost.
    let batch = flag("--batch").unwrap_or(BATCH);
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let a = Agreement::parse(Mix::Site.agreement().as_bytes()).unwrap_or_else(|e| panic!("{e:?}")).agreement;
    let key = Key::from_file(&root.join("examples/demo.key"), "demo-2026").unwrap();
    let engines: Arc<dyn Engines + Send + Sync> = Arc::new(Arc::new(Engine::new(Arc::new(a), Arc::new(Pseudonymiser::new(key)))));
    let lines = workload::lines(Mix::Site, events);
    eprintln!("kafka_lanes: {events} events of the site mix, batches of {batch}, {cores} core(s) available");

    let one = best(|| {
        let mut records = Records::new(engines.clone(), Format::Json, Format::Json, "q");
        let mut bytes = 0usize;
        for (j, l) in lines.iter().enumerate() {
            let n = records.process("in", 0, j as i64, l);
            for i in 0..n {
                bytes += records.get(i).payload.len();
            }
        }
        bytes
    });
    let rate = |d: Duration| events as f64 / d.as_secs_f64();
    let per_event = |d: Duration| d.as_secs_f64() * 1e6 / events as f64;
    eprintln!("  one record at a time (threads: 1)  {:>9.0} events/s  CPU {:.2} µs/event", rate(one.0), per_event(one.1));
    for lanes in 1..=max {
        let t = best(|| {
            let mut records = Records::with_lanes(engines.clone(), Format::Json, Format::Json, "q", lanes);
            // As the loop does: each batch's outputs are read while the next is enforced.
            let mut bytes = 0usize;
            let mut before = 0;
            let read = |made: &mut Made, n: usize, bytes: &mut usize| {
                for j in 0..n {
                    for i in 0..made.staged(j, "in", 0, j as i64) {
                        *bytes += made.get(i).payload.len();
                    }
                }
            };
            for chunk in lines.chunks(batch) {
                let payloads: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
                records.enforce_batch_while(&payloads, |made| read(made, before, &mut bytes));
                before = payloads.len();
            }
            read(records.last(), before, &mut bytes);
            bytes
        });
        eprintln!(
            "  batches over {lanes} lane(s)             {:>9.0} events/s  CPU {:.2} µs/event  {:.2}x one at a time",
            rate(t.0),
            per_event(t.1),
            one.0.as_secs_f64() / t.0.as_secs_f64()
        );
    }
}

/// The best wall-clock time of 3 runs, and the least CPU time (all the process's
/// threads) of one (each run must make the same outputs).
fn best(mut run: impl FnMut() -> usize) -> (Duration, Duration) {
    let cpu = || {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
        Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
    };
    let mut best = (Duration::MAX, Duration::MAX);
    let mut made = None;
    for _ in 0..3 {
        let (started, cpu_started) = (Instant::now(), cpu());
        let bytes = std::hint::black_box(run());
        best = (best.0.min(started.elapsed()), best.1.min(cpu() - cpu_started));
        assert!(made.is_none_or(|m| m == bytes), "every run makes the same outputs");
        made = Some(bytes);
    }
    best
}
