//! End-to-end throughput through a real Kafka broker: the gateway against a bare
//! rdkafka consume-produce that shares none of its code (module `passthrough` below).
//!
//! ```sh
//! eval "$(scripts/kafka.sh start /tmp/accord-bench | tail -n1)"
//! ACCORD_KAFKA_BOOTSTRAP=$KAFKA_BOOTSTRAP cargo bench --bench kafka_e2e            # 2M events
//! ACCORD_KAFKA_BOOTSTRAP=$KAFKA_BOOTSTRAP cargo bench --bench kafka_e2e -- --events 500000 --rounds 2
//! ACCORD_KAFKA_BOOTSTRAP=$KAFKA_BOOTSTRAP cargo bench --bench kafka_e2e -- --codec zstd   # zstd in and out
//! ACCORD_KAFKA_BOOTSTRAP=$KAFKA_BOOTSTRAP cargo bench --bench kafka_e2e -- --events 200000 --crashes 4
//! ```
//!
//! `--crashes N` measures what a crash costs instead of speed: the gateway (at-least-once)
//! is killed with SIGKILL N times, evenly through the run, and started again each time;
//! once its group has committed the end of the input, every output beyond the expected
//! ones is a duplicate. Prints the duplicates per crash.
//!
//! `--threads N` sets the gateway's `limits.threads` (default: the cores available to
//! it, so under `taskset -c 0,1` two).
//!
//! `--exactly-once` runs the gateway with `delivery: exactly_once` (the pass-through is
//! unchanged). Its output topics' end offsets then count the transactions' commit
//! markers too, one per partition a transaction wrote to: a few hundred in a run of
//! hundreds of thousands of outputs.
//!
//! `--passthrough-headers` has the pass-through add to each record three headers of
//! the names SPEC section 4 gives the gateway's outputs (`accord-purpose`,
//! `accord-agreement`, `accord-version`, with values of the same lengths): the same
//! work per record that librdkafka does for the gateway's headers, so that the ratio
//! shows what is left beyond them. The issue's comparison is without it.
//!
//! `--codec C` (default `lz4`) is the input's compression and both children's
//! `compression.type`: `gzip`, `snappy`, `lz4` or `zstd`. `--mix site`, `wearables` or
//! `large` runs that workload of `workload.rs`, under its own agreement, instead of the
//! examples' mix.
//!
//! The examples' mix of events (each copy with its own event ids) is produced into a
//! 6-partition input topic. Then, in turn, the pass-through (each record produced
//! unchanged to one 6-partition topic, no engine, no gateway code) and the gateway (the example
//! agreement, outputs to four 6-partition purpose topics and quarantine) each run in a
//! child process of this binary, as a new consumer group from the start of the input,
//! with the same librdkafka settings and limits, until every record they should produce
//! has landed (the output topics' end offsets, polled). Reported per run: end-to-end
//! events/s (child start to last output, group join included), the steady rate (first
//! output to last), the child's peak RSS (VmHWM), and the ratio gateway/pass-through.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use accord::agreement::Agreement;
use accord::config::Config;
use accord::engine::{Engine, Outputs, Verdict};
use accord::event::Format;
use accord::run::kafka::{Pipeline, Shutdown};
use accord::pseudonym::{Key, Pseudonymiser};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;

mod workload;

use workload::{Mix, LARGE_PURPOSES};
const PARTITIONS: i32 = 6;

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        return child(&args[i + 1], &args[i + 2], args.get(i + 3).map_or("", String::as_str));
    }
    let Ok(bootstrap) = std::env::var("ACCORD_KAFKA_BOOTSTRAP") else {
        eprintln!("kafka_e2e: no Kafka broker: set ACCORD_KAFKA_BOOTSTRAP to one (scripts/kafka.sh start DIR prints its address)");
        std::process::exit(1);
    };
    let flag = |name: &str, default: usize| -> usize {
        args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map_or(default, |v| v.parse().expect("a number"))
    };
    let events = flag("--events", 2_000_000);
    let rounds = flag("--rounds", 1);
    // For tuning: librdkafka properties (`--consumer k=v`, `--producer k=v`, repeatable),
    // `--max-in-flight N`, `--commit-interval D`, and `--only passthrough|gateway`.
    let props = |name: &str| -> String {
        args.windows(2).filter(|w| w[0] == name).map(|w| w[1].split_once('=').expect("--consumer/--producer take k=v")).map(|(k, v)| format!("    {k}: \"{v}\"\n")).collect()
    };
    let codec = args.iter().position(|a| a == "--codec").map_or("lz4".to_string(), |i| args[i + 1].clone());
    assert!(["gzip", "snappy", "lz4", "zstd"].contains(&codec.as_str()), "--codec takes gzip, snappy, lz4 or zstd");
    let (consumer_props, mut producer_props) = (props("--consumer"), props("--producer"));
    if !producer_props.contains("compression.type") {
        producer_props.push_str(&format!("    compression.type: \"{codec}\"\n"));
    }
    let max_in_flight = flag("--max-in-flight", 0);
    let only = args.iter().position(|a| a == "--only").map(|i| args[i + 1].clone());
    let commit_interval = args.iter().position(|a| a == "--commit-interval").map(|i| args[i + 1].clone());
    let crashes = flag("--crashes", 0);
    // The gateway's `limits.threads`; unset: its default, the cores available (under
    // `taskset`, the cores of the mask).
    let threads = flag("--threads", 0);
    let exactly_once = args.iter().any(|a| a == "--exactly-once");
    let passthrough_headers = args.iter().any(|a| a == "--passthrough-headers");

    let id = format!("{}-{}", std::process::id(), SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs());
    let dir = tempfile::tempdir().unwrap();
    let mix = args.iter().position(|a| a == "--mix").map_or(Mix::Examples, |i| Mix::parse(&args[i + 1]).expect("--mix examples|site|wearables|large"));
    // Each mix's purposes, and the prefix of their topics in its agreement.
    let (purposes, prefix): (&[&str], &str) = match mix {
        Mix::Examples => (&["safety", "payroll", "planning", "it_security"], "accord"),
        Mix::Site => (&["planning", "safety", "ergonomics"], "site"),
        Mix::Wearables => (&["ergonomics", "safety"], "wearables"),
        Mix::Large => (&LARGE_PURPOSES, "large"),
    };
    let mut agreement = mix.agreement();
    for p in purposes {
        let (from, to) = (format!("topic: {prefix}.{p}\n"), format!("topic: bench.{p}.{id}\n"));
        assert!(agreement.contains(&from), "the {} agreement names no topic `{prefix}.{p}`", mix.name());
        agreement = agreement.replace(&from, &to);
    }
    let agreement_path = dir.path().join("agreement.yaml");
    std::fs::write(&agreement_path, &agreement).unwrap();
    let input = format!("bench.sensors.{id}");
    let quarantine = format!("bench.quarantine.{id}");
    let pass = format!("bench.pass.{id}");
    let mut topics = vec![input.clone(), quarantine.clone(), pass.clone()];
    topics.extend(purposes.iter().map(|p| format!("bench.{p}.{id}")));
    create_topics(&bootstrap, &topics);

    let lines: Vec<Vec<u8>> = match mix {
        Mix::Site | Mix::Wearables | Mix::Large => workload::lines(mix, events),
        Mix::Examples => {
            // The examples' mix, each copy with its own event ids.
            let base: Vec<String> = std::fs::read_to_string(root().join("examples/events.jsonl")).unwrap().lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect();
            let lines: Vec<Vec<u8>> = (0..events)
                .map(|i| {
                    let (copy, line) = (i / base.len(), &base[i % base.len()]);
                    let marker = "\"event_id\": \"";
                    match line.find(marker) {
                        Some(at) => format!("{}b{copy}-{}", &line[..at + marker.len()], &line[at + marker.len()..]).into_bytes(),
                        None => line.clone().into_bytes(),
                    }
                })
                .collect();
            lines
        }
    };
    let bytes: usize = lines.iter().map(Vec::len).sum();

    // What the gateway must produce: outputs plus quarantine notes.
    let engine = engine(&agreement_path);
    let mut outputs = Outputs::default();
    let mut expected_gateway = 0u64;
    for l in &lines {
        expected_gateway += match engine.process(l, Format::Json, &mut outputs) {
            Verdict::Forwarded(_) => outputs.items.len() as u64,
            Verdict::Dropped(d) if d.malformed.is_some() => 1,
            Verdict::Dropped(_) => 0,
        };
    }

    eprintln!("kafka_e2e: producing {events} events ({:.0} MB) into {input} ({PARTITIONS} partitions, {codec})", bytes as f64 / 1e6);
    let started = Instant::now();
    produce(&bootstrap, &input, &lines, &codec);
    eprintln!("kafka_e2e: produced in {:.1?} ({:.0} events/s)", started.elapsed(), events as f64 / started.elapsed().as_secs_f64());
    drop(lines);

    let gateway_outputs: Vec<String> = purposes.iter().map(|p| format!("bench.{p}.{id}")).chain([quarantine.clone()]).collect();
    let mut results = Vec::new();
    for round in 0..rounds {
        for mode in ["passthrough", "gateway"] {
            if only.as_deref().is_some_and(|o| o != mode) {
                continue;
            }
            let config = dir.path().join(format!("{mode}-{round}.yaml"));
            let group = format!("bench-{mode}-{round}-{id}");
            let mut text = format!(
                "agreement: {}\npseudonym_key:\n  file: {}\n  id: demo-2026\nkafka:\n  brokers: {bootstrap}\n  group: {group}\n  input:\n    topics: [{input}]\n  quarantine_topic: {quarantine}\n",
                agreement_path.display(),
                root().join("examples/demo.key").display()
            );
            if passthrough_headers && mode == "passthrough" {
                // Read by the pass-through only (the gateway would refuse the key).
                let id = agreement.lines().find_map(|l| l.strip_prefix("  id: ")).expect("the agreement's id");
                text.push_str(&format!("pass_headers: {id};{}\n", purposes.join(",")));
            }
            if exactly_once && mode == "gateway" {
                text.push_str(&format!("  delivery: exactly_once\n  transactional_id: bench-{round}-{id}\n"));
            }
            if !consumer_props.is_empty() {
                text.push_str(&format!("  consumer:\n{consumer_props}"));
            }
            if !producer_props.is_empty() {
                text.push_str(&format!("  producer:\n{producer_props}"));
            }
            if max_in_flight > 0 || commit_interval.is_some() || threads > 0 {
                text.push_str("limits:\n");
            }
            if threads > 0 {
                text.push_str(&format!("  threads: {threads}\n"));
            }
            if max_in_flight > 0 {
                text.push_str(&format!("  max_in_flight: {max_in_flight}\n"));
            }
            if let Some(d) = &commit_interval {
                text.push_str(&format!("  commit_interval: {d}\n"));
            }
            std::fs::write(&config, text).unwrap();
            let (watch, expected, extra) = match mode {
                "passthrough" => (vec![pass.clone()], events as u64, pass.clone()),
                _ => (gateway_outputs.clone(), expected_gateway, String::new()),
            };
            if crashes > 0 {
                if mode == "gateway" {
                    crash(&bootstrap, &config, &group, &input, &watch, expected, crashes);
                }
                continue;
            }
            let r = measure(&bootstrap, mode, &config, &extra, &watch, expected, events);
            eprintln!(
                "kafka_e2e: {mode:<11} {events} events -> {expected} records in {:.2?}: {:.0} events/s end to end, {:.0} events/s steady, peak RSS {:.1} MiB, CPU {:.1?} ({:.1} µs/event)",
                r.total,
                r.rate(),
                r.steady_rate(),
                r.peak_rss_kib as f64 / 1024.0,
                r.cpu,
                r.cpu.as_secs_f64() * 1e6 / events as f64
            );
            let by_thread: Vec<String> = r.threads.iter().map(|(name, t)| format!("{name} {:.1}", t.as_secs_f64() * 1e6 / events as f64)).collect();
            eprintln!("kafka_e2e: {mode:<11} CPU by thread, µs/event: {}; the broker's meanwhile {:.1}", by_thread.join(", "), r.broker.as_secs_f64() * 1e6 / events as f64);
            results.push((mode, r));
        }
    }
    if crashes > 0 {
        return;
    }
    let best = |mode: &str, f: &dyn Fn(&Run) -> f64| results.iter().filter(|(m, _)| *m == mode).map(|(_, r)| f(r)).fold(0.0, f64::max);
    let (pass_rate, gw_rate) = (best("passthrough", &Run::rate), best("gateway", &Run::rate));
    let (pass_steady, gw_steady) = (best("passthrough", &Run::steady_rate), best("gateway", &Run::steady_rate));
    println!("kafka_e2e: {events} events of the {} mix, {PARTITIONS} input partitions, broker {bootstrap}", mix.name());
    println!("  pass-through  {pass_rate:>10.0} events/s end to end   {pass_steady:>10.0} events/s steady");
    println!("  gateway       {gw_rate:>10.0} events/s end to end   {gw_steady:>10.0} events/s steady");
    println!("  ratio         {:>10.2}x end to end          {:>10.2}x steady (goal: at least 0.9x)", gw_rate / pass_rate, gw_steady / pass_steady);
    for (mode, r) in &results {
        println!("  peak RSS      {:>10.1} MiB ({mode})", r.peak_rss_kib as f64 / 1024.0);
    }
    // The topics stay on the broker; `scripts/kafka.sh stop` deletes them with it.
}

struct Run {
    total: Duration,
    first: Duration,
    peak_rss_kib: u64,
    /// The child's CPU time (user + system), all threads.
    cpu: Duration,
    /// The broker's CPU time over the same span (0 if it runs elsewhere).
    broker: Duration,
    /// The child's CPU time by thread, read just before it stops (see [`threads_cpu`]).
    threads: Vec<(String, Duration)>,
    events: usize,
}

impl Run {
    fn rate(&self) -> f64 {
        self.events as f64 / self.total.as_secs_f64()
    }

    fn steady_rate(&self) -> f64 {
        self.events as f64 / (self.total - self.first).as_secs_f64().max(1e-3)
    }
}

/// Runs one child until `expected` records have landed in `watch`.
fn measure(bootstrap: &str, mode: &str, config: &std::path::Path, extra: &str, watch: &[String], expected: u64, events: usize) -> Run {
    let watcher: BaseConsumer = ClientConfig::new().set("bootstrap.servers", bootstrap).create().unwrap();
    let landed = |w: &BaseConsumer| -> u64 {
        let mut n = 0;
        for t in watch {
            for p in 0..PARTITIONS {
                let (low, high) = w.fetch_watermarks(t, p, Duration::from_secs(10)).unwrap();
                n += (high - low) as u64;
            }
        }
        n
    };
    let before = landed(&watcher);
    let brokers = broker_pids();
    let broker_before: Duration = brokers.iter().map(|&p| cpu_time(p)).sum();
    let started = Instant::now();
    let mut child: Child = Command::new(std::env::current_exe().unwrap())
        .args(["--child", mode])
        .arg(config)
        .arg(extra)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut first = None;
    let mut peak = 0;
    loop {
        let n = landed(&watcher) - before;
        if n > 0 && first.is_none() {
            first = Some(started.elapsed());
        }
        peak = peak.max(vm_hwm(pid));
        if n >= expected {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            panic!("the {mode} child exited ({status}) with {n} of {expected} records landed:\n{err}");
        }
        assert!(started.elapsed() < Duration::from_secs(1800), "{mode}: {n} of {expected} records after 30 minutes");
        std::thread::sleep(Duration::from_millis(100));
    }
    let total = started.elapsed();
    peak = peak.max(vm_hwm(pid));
    let cpu = cpu_time(pid);
    let threads = threads_cpu(pid, cpu);
    let broker = brokers.iter().map(|&p| cpu_time(p)).sum::<Duration>().saturating_sub(broker_before);
    drop(child.stdin.take()); // The child stops on EOF: drain, commit, exit.
    let status = child.wait().unwrap();
    assert!(status.success(), "the {mode} child failed: {status}");
    Run { total, first: first.unwrap_or_default(), peak_rss_kib: peak, cpu, broker, threads, events }
}

/// Records in `topics` (the sum of their partitions' high minus low watermarks).
fn landed(w: &BaseConsumer, topics: &[String]) -> u64 {
    let mut n = 0;
    for t in topics {
        for p in 0..PARTITIONS {
            let (low, high) = w.fetch_watermarks(t, p, Duration::from_secs(10)).unwrap();
            n += (high - low) as u64;
        }
    }
    n
}

fn start_child(mode: &str, config: &std::path::Path, extra: &str) -> Child {
    Command::new(std::env::current_exe().unwrap()).args(["--child", mode]).arg(config).arg(extra).stdin(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap()
}

/// Kills the gateway `crashes` times, evenly through the run, starting it again each
/// time; then waits until its group has committed the end of the input and counts what
/// landed beyond `expected`.
fn crash(bootstrap: &str, config: &std::path::Path, group: &str, input: &str, watch: &[String], expected: u64, crashes: usize) {
    let watcher: BaseConsumer = ClientConfig::new().set("bootstrap.servers", bootstrap).set("group.id", group).create().unwrap();
    let before = landed(&watcher, watch);
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(input, p);
    }
    let committed = |w: &BaseConsumer| -> i64 {
        let c = w.committed_offsets(tpl.clone(), Duration::from_secs(10)).unwrap();
        c.elements().iter().map(|e| if let rdkafka::Offset::Offset(o) = e.offset() { o } else { 0 }).sum()
    };
    let started = Instant::now();
    let mut child = start_child("gateway", config, "");
    for k in 1..=crashes {
        let at = expected * k as u64 / (crashes as u64 + 1);
        while landed(&watcher, watch) - before < at {
            assert!(child.try_wait().unwrap().is_none(), "the gateway exited before crash {k}");
            assert!(started.elapsed() < Duration::from_secs(1800), "crash {k}: the outputs stopped");
            std::thread::sleep(Duration::from_millis(20));
        }
        let input_committed = committed(&watcher);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        eprintln!("kafka_e2e: crash {k} with {} of {expected} outputs landed, {input_committed} input records committed, {:.1?} after the start", landed(&watcher, watch) - before, started.elapsed());
        child = start_child("gateway", config, "");
    }
    // Done when the group's committed offsets reach the end of the input.
    let ends: Vec<i64> = (0..PARTITIONS).map(|p| watcher.fetch_watermarks(input, p, Duration::from_secs(10)).unwrap().1).collect();
    loop {
        let committed = watcher.committed_offsets(tpl.clone(), Duration::from_secs(10)).unwrap();
        let done = committed.elements().iter().all(|e| matches!(e.offset(), rdkafka::Offset::Offset(o) if o >= ends[e.partition() as usize]));
        if done {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(1800), "the input was never committed to its end");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(child.stdin.take());
    child.wait().unwrap();
    let total = landed(&watcher, watch) - before;
    let duplicates = total.saturating_sub(expected);
    println!("kafka_e2e: {crashes} crash(es) (SIGKILL) in at-least-once over {expected} outputs: {total} landed, {duplicates} duplicates ({:.1}% of all outputs), {:.0} per crash", duplicates as f64 * 100.0 / expected as f64, duplicates as f64 / crashes as f64);
}

/// CPU time of a process so far (utime + stime from /proc, at 100 ticks/s).
fn cpu_time(pid: u32) -> Duration {
    cpu_time_of(std::path::Path::new(&format!("/proc/{pid}/stat")))
}

/// utime + stime of a `/proc/.../stat` file.
fn cpu_time_of(path: &std::path::Path) -> Duration {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let ticks: u64 = [11, 12].iter().filter_map(|i| fields.get(*i)?.parse::<u64>().ok()).sum();
    Duration::from_millis(ticks * 10)
}

/// The local Kafka brokers' processes (`kafka.Kafka` in their command line): their
/// CPU time is read around each run. A remote broker's is not seen (reported as 0).
fn broker_pids() -> Vec<u32> {
    let Ok(procs) = std::fs::read_dir("/proc") else { return Vec::new() };
    procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.split(|b| *b == 0).any(|arg| arg == b"kafka.Kafka")))
        .collect()
}

/// A process's CPU time by thread, summed by thread name: `loop` for its main thread,
/// librdkafka's threads by their names (`rdk:broker1`, `rdk:main`, ...; the
/// bootstrap connections' `rdk:broker-1` apart), and `ended` for threads that have
/// exited (what `total` has beyond the live threads).
fn threads_cpu(pid: u32, total: Duration) -> Vec<(String, Duration)> {
    let mut by: Vec<(String, Duration)> = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return by };
    for task in tasks.flatten() {
        let tid = task.file_name().to_string_lossy().into_owned();
        let name = if tid == pid.to_string() {
            "loop".to_string()
        } else {
            std::fs::read_to_string(task.path().join("comm")).unwrap_or_default().trim().to_string()
        };
        let cpu = cpu_time_of(&task.path().join("stat"));
        match by.iter_mut().find(|(n, _)| *n == name) {
            Some((_, t)) => *t += cpu,
            None => by.push((name, cpu)),
        }
    }
    let live: Duration = by.iter().map(|(_, t)| *t).sum();
    by.push(("ended".to_string(), total.saturating_sub(live)));
    by.retain(|(_, t)| !t.is_zero());
    by.sort_by_key(|(_, t)| std::cmp::Reverse(*t));
    by
}

/// Peak resident set size of a process, in KiB (0 once it is gone).
fn vm_hwm(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap_or(0)
}

/// The child: one pipeline, in-process, until its stdin closes.
fn child(mode: &str, config: &str, pass_topic: &str) {
    let shutdown = Shutdown::new();
    let stop = shutdown.clone();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        stop.request();
    });
    if mode == "passthrough" {
        let n = passthrough::run(config, pass_topic, &shutdown);
        eprintln!("kafka_e2e child {mode}: {n} records");
        return;
    }
    let config = Config::load(config.as_ref()).unwrap_or_else(|e| panic!("{e}"));
    let engines = Arc::new(Arc::new(engine(&config.agreement)));
    let summary = Pipeline { kafka: &config.kafka, engines, shutdown, on_batch: None, health: None, suppressions: None }.run().unwrap_or_else(|e| panic!("{e}"));
    eprintln!("kafka_e2e child {mode}: {} records", summary.records);
}

/// The reference: a bare rdkafka consume-produce that shares none of the gateway's
/// code. It reads the child's configuration file only for the broker, the group, the
/// input topic and the user's librdkafka properties (plain text, no accord parser),
/// uses the gateway's documented librdkafka defaults (docs/kafka.md), produces each
/// record unchanged to one topic, and stores each input offset once its copy is
/// acknowledged (the highest acknowledged per partition).
mod passthrough {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use accord::run::kafka::Shutdown;
    use rdkafka::client::ClientContext;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{DeliveryResult, Header, Message, OwnedHeaders};
    use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
    use rdkafka::ClientConfig;

    struct Acks {
        consumer: Arc<BaseConsumer>,
        input: String,
        stored: Mutex<HashMap<i32, i64>>,
    }

    impl ClientContext for Acks {}

    impl ProducerContext for Acks {
        type DeliveryOpaque = Box<(i32, i64)>;

        fn delivery(&self, result: &DeliveryResult<'_>, at: Box<(i32, i64)>) {
            if result.is_err() {
                return;
            }
            let (partition, offset) = *at;
            let mut stored = self.stored.lock().unwrap();
            let best = stored.entry(partition).or_insert(-1);
            if offset > *best {
                *best = offset;
                let _ = self.consumer.store_offset(&self.input, partition, offset + 1);
            }
        }
    }

    /// `key: value` lines of the child's configuration, and the `consumer:` and
    /// `producer:` property sections.
    type Properties = Vec<(String, String)>;

    fn read(config: &str) -> (HashMap<String, String>, Properties, Properties) {
        let text = std::fs::read_to_string(config).unwrap();
        let (mut top, mut consumer, mut producer) = (HashMap::new(), Vec::new(), Vec::new());
        let mut section = "";
        for line in text.lines() {
            let trimmed = line.trim();
            let Some((k, v)) = trimmed.split_once(':') else { continue };
            let (k, v) = (k.trim().to_string(), v.trim().trim_matches('"').to_string());
            match line.len() - line.trim_start().len() {
                2 if v.is_empty() => section = if k == "consumer" || k == "producer" { if k == "consumer" { "c" } else { "p" } } else { "" },
                4 if section == "c" => consumer.push((k, v)),
                4 if section == "p" => producer.push((k, v)),
                _ => {
                    top.insert(k, v);
                }
            }
        }
        (top, consumer, producer)
    }

    pub fn run(config: &str, output: &str, shutdown: &Shutdown) -> u64 {
        let (top, consumer_props, producer_props) = read(config);
        let input = top["topics"].trim_matches(|c| c == '[' || c == ']').to_string();
        let mut c = ClientConfig::new();
        c.set("auto.offset.reset", "earliest")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("enable.partition.eof", "false")
            .set("queued.max.messages.kbytes", "65536")
            .set("fetch.wait.max.ms", "100");
        for (k, v) in &consumer_props {
            c.set(k, v);
        }
        c.set("bootstrap.servers", &top["brokers"]).set("group.id", &top["group"]).set("enable.auto.offset.store", "false").set("enable.auto.commit", "true");
        let consumer: Arc<BaseConsumer> = Arc::new(c.create().unwrap());
        consumer.subscribe(&[&input]).unwrap();
        let mut p = ClientConfig::new();
        p.set("linger.ms", "20")
            .set("batch.size", "1000000")
            .set("compression.type", "lz4")
            .set("queue.buffering.max.kbytes", "131072")
            .set("queue.buffering.max.messages", "200000");
        for (k, v) in &producer_props {
            p.set(k, v);
        }
        p.set("bootstrap.servers", &top["brokers"]).set("enable.idempotence", "true");
        let acks = Acks { consumer: consumer.clone(), input: input.clone(), stored: Mutex::new(HashMap::new()) };
        let producer: ThreadedProducer<Acks> = p.create_with_context(acks).unwrap();
        // `--passthrough-headers`: the agreement's id and the purposes, for headers of
        // the lengths the gateway's have.
        let headers: Option<(String, Vec<String>)> = top.get("pass_headers").map(|v| {
            let (id, purposes) = v.split_once(';').unwrap();
            (id.to_string(), purposes.split(',').map(str::to_string).collect())
        });
        let mut n = 0u64;
        while !shutdown.requested() {
            let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) else { continue };
            n += 1;
            let mut record = BaseRecord::with_opaque_to(output, Box::new((m.partition(), m.offset()))).payload(m.payload().unwrap_or_default());
            if let Some(key) = m.key() {
                record = record.key(key);
            }
            if let Some((id, purposes)) = &headers {
                let purpose = &purposes[n as usize % purposes.len()];
                record = record.headers(
                    OwnedHeaders::new_with_capacity(3)
                        .insert(Header { key: "accord-purpose", value: Some(purpose.as_str()) })
                        .insert(Header { key: "accord-agreement", value: Some(id.as_str()) })
                        .insert(Header { key: "accord-version", value: Some("1") }),
                );
            }
            while let Err((_, r)) = producer.send(record) {
                record = r;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        producer.flush(Duration::from_secs(30)).unwrap();
        let _ = consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync);
        n
    }
}

fn engine(agreement: &std::path::Path) -> Engine {
    let a = Agreement::load(agreement).unwrap_or_else(|e| panic!("{e}")).agreement;
    let key = Key::from_file(&root().join("examples/demo.key"), "demo-2026").unwrap();
    Engine::new(Arc::new(a), Arc::new(Pseudonymiser::new(key)))
}

fn create_topics(bootstrap: &str, topics: &[String]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", bootstrap).create().unwrap();
    let new: Vec<NewTopic<'_>> = topics.iter().map(|t| NewTopic::new(t, PARTITIONS, TopicReplication::Fixed(1))).collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in futures::executor::block_on(admin.create_topics(&new, &opts)).unwrap() {
        if let Err((t, e)) = r {
            panic!("cannot create {t}: {e}");
        }
    }
}

fn produce(bootstrap: &str, topic: &str, lines: &[Vec<u8>], codec: &str) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("compression.type", codec)
        .set("queue.buffering.max.messages", "500000")
        .create()
        .unwrap();
    for (i, l) in lines.iter().enumerate() {
        let mut record = BaseRecord::<(), [u8]>::to(topic).payload(&l[..]).partition(i as i32 % PARTITIONS);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(300)).unwrap();
}
