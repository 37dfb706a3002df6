//! The gateway in Kafka mode against a real Apache Kafka broker (issue 3).
//!
//! Every test needs the broker named by `ACCORD_KAFKA_BOOTSTRAP` (scripts/test.sh
//! starts one) and fails, saying so, without it: none is ever skipped. Each test works
//! in its own topics and consumer group (suffixed with a unique id), so they share the
//! broker in parallel; only `broker_restart_mid_stream_loses_nothing` takes it for
//! itself, since it stops the broker (through `scripts/kafka.sh` and
//! `ACCORD_KAFKA_DIR`). The gateway always runs as the real binary with a config file
//! in a temporary directory, so `kill -9` is real.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::common::{self, http_get, DEMO_KEY_ID};

// ---------------------------------------------------------------- the broker --

fn bootstrap() -> String {
    match std::env::var("ACCORD_KAFKA_BOOTSTRAP") {
        Ok(b) if !b.trim().is_empty() => b,
        _ => panic!("no Kafka broker: run scripts/test.sh, or set ACCORD_KAFKA_BOOTSTRAP to an existing broker"),
    }
}

/// Tests share the broker (read); the broker-restart test takes it alone (write).
static BROKER: RwLock<()> = RwLock::new(());

fn shared_broker() -> RwLockReadGuard<'static, ()> {
    bootstrap();
    BROKER.read().unwrap_or_else(|e| e.into_inner())
}

fn unique(name: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{name}-{}-{nanos:09}", std::process::id())
}

fn admin() -> AdminClient<DefaultClientContext> {
    ClientConfig::new().set("bootstrap.servers", bootstrap()).create().expect("an admin client")
}

/// Sets `topic`'s largest accepted batch (`max.message.bytes`): below any output, the
/// broker refuses every delivery to it.
fn set_max_message_bytes(topic: &str, bytes: &str) {
    use rdkafka::admin::{AlterConfig, ResourceSpecifier};
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let altered = futures::executor::block_on(admin().alter_configs(&[AlterConfig::new(ResourceSpecifier::Topic(topic)).set("max.message.bytes", bytes)], &opts));
    assert!(altered.expect("configs altered").iter().all(Result::is_ok), "max.message.bytes of {topic} set to {bytes}");
}

/// Adds `lines` (each `  key: value\n`) to the `limits` of the gateway config at `config`.
fn add_limits(config: &Path, lines: &str) {
    let text = std::fs::read_to_string(config).unwrap().replace("limits:\n", &format!("limits:\n{lines}"));
    std::fs::write(config, text).unwrap();
}

fn create_topics(topics: &[(&str, i32)]) {
    let new: Vec<NewTopic<'_>> = topics.iter().map(|(t, p)| NewTopic::new(t, *p, TopicReplication::Fixed(1))).collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = futures::executor::block_on(admin().create_topics(&new, &opts)).expect("topics created");
    for r in results {
        if let Err((t, e)) = r {
            panic!("cannot create topic {t}: {e}");
        }
    }
}

/// Sends every record to `topic`, record `i` to partition `i % partitions`.
fn produce(topic: &str, partitions: i32, records: &[String]) {
    produce_bytes(topic, partitions, &records.iter().map(|r| r.as_bytes().to_vec()).collect::<Vec<_>>());
}

fn produce_bytes(topic: &str, partitions: i32, records: &[Vec<u8>]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .create()
        .expect("a producer");
    for (i, r) in records.iter().enumerate() {
        let mut record = BaseRecord::<(), [u8]>::to(topic).payload(&r[..]).partition(i as i32 % partitions);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(60)).expect("test input produced");
}

/// One record read back from an output topic.
#[derive(Clone, Debug)]
struct Rec {
    topic: String,
    partition: i32,
    key: Option<Vec<u8>>,
    /// The value as text (JSON outputs), and as bytes (protobuf outputs).
    payload: String,
    bytes: Vec<u8>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Reads topics from the beginning, as a plain consumer outside any group.
struct Reader {
    consumer: BaseConsumer,
    recs: Vec<Rec>,
}

impl Reader {
    fn new(topics: &[&str], read_committed: bool) -> Reader {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap())
            .set("group.id", unique("reader"))
            .set("enable.auto.commit", "false")
            .set("isolation.level", if read_committed { "read_committed" } else { "read_uncommitted" })
            .create()
            .expect("a reader");
        let mut tpl = TopicPartitionList::new();
        for t in topics {
            for p in 0..partitions(&consumer, t) {
                tpl.add_partition_offset(t, p, Offset::Beginning).unwrap();
            }
        }
        consumer.assign(&tpl).expect("assigned");
        Reader { consumer, recs: Vec::new() }
    }

    fn poll_for(&mut self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until {
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => self.recs.push(Rec {
                    topic: m.topic().to_string(),
                    partition: m.partition(),
                    key: m.key().map(<[u8]>::to_vec),
                    payload: String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                    bytes: m.payload().unwrap_or_default().to_vec(),
                    headers: m.headers().map_or(Vec::new(), |h| h.iter().map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec))).collect()),
                }),
                Some(Err(e)) => panic!("reading outputs: {e}"),
                None => {}
            }
        }
    }

    /// Reads until `done` holds, or fails after `timeout` saying what was awaited.
    fn until(&mut self, timeout: Duration, what: &str, done: impl Fn(&[Rec]) -> bool) {
        self.until_else(timeout, what, done, String::new);
    }

    /// [`Reader::until`], adding what `explain` says to the failure.
    fn until_else(&mut self, timeout: Duration, what: &str, done: impl Fn(&[Rec]) -> bool, explain: impl FnOnce() -> String) {
        let start = Instant::now();
        while !done(&self.recs) {
            if start.elapsed() >= timeout {
                panic!("timed out after {timeout:?} waiting for {what} ({} records read){}", self.recs.len(), explain());
            }
            self.poll_for(Duration::from_millis(200));
        }
    }

    fn payloads(&self, topic: &str) -> Vec<String> {
        self.recs.iter().filter(|r| r.topic == topic).map(|r| r.payload.clone()).collect()
    }
}

/// The partitions of `topics` that have no leader, as the broker's metadata says.
fn leaderless(topics: &[String]) -> String {
    let consumer: BaseConsumer = match ClientConfig::new().set("bootstrap.servers", bootstrap()).create() {
        Ok(c) => c,
        Err(e) => return format!("no client for the metadata ({e})"),
    };
    let mut none = Vec::new();
    for t in topics {
        match consumer.fetch_metadata(Some(t), Duration::from_secs(10)) {
            Ok(md) => none.extend(md.topics().iter().flat_map(|t| t.partitions().iter().filter(|p| p.leader() < 0).map(move |p| format!("{}[{}]", t.name(), p.id())))),
            Err(e) => none.push(format!("{t}: no metadata ({e})")),
        }
    }
    format!("output partitions without a leader: {}", if none.is_empty() { "none".to_string() } else { none.join(" ") })
}

fn partitions(consumer: &BaseConsumer, topic: &str) -> i32 {
    let start = Instant::now();
    loop {
        let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
        let n = md.topics().first().map_or(0, |t| t.partitions().len());
        if n > 0 {
            return n as i32;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "topic {topic} has no partitions");
        std::thread::sleep(Duration::from_millis(200));
    }
}

// ------------------------------------------------------------------ a site --

const PURPOSES: [&str; 4] = ["safety", "payroll", "planning", "it_security"];
/// The examples' only identified purpose: it may see `subject_id` in the clear.
const IDENTIFIED: &str = "payroll";

/// One test's world: the example agreement with its own topics, an input topic and
/// a quarantine topic, in a temporary directory.
struct Site {
    id: String,
    dir: tempfile::TempDir,
    agreement: PathBuf,
    input: String,
    quarantine: String,
    partitions: i32,
}

impl Site {
    fn new(name: &str, partitions: i32) -> Site {
        let id = unique(name);
        let dir = tempfile::tempdir().unwrap();
        let mut text = std::fs::read_to_string(common::example("agreement.yaml")).unwrap();
        for p in PURPOSES {
            let from = format!("topic: accord.{p}\n");
            assert!(text.contains(&from), "the example agreement routes {p} to accord.{p}");
            text = text.replace(&from, &format!("topic: accord.{p}.{id}\n"));
        }
        let agreement = dir.path().join("agreement.yaml");
        std::fs::write(&agreement, text).unwrap();
        let site = Site { input: format!("sensors.{id}"), quarantine: format!("quarantine.{id}"), id, dir, agreement, partitions };
        let mut topics: Vec<(String, i32)> = vec![(site.input.clone(), partitions), (site.quarantine.clone(), 1)];
        topics.extend(PURPOSES.iter().map(|p| (site.topic(p), 2)));
        create_topics(&topics.iter().map(|(t, p)| (t.as_str(), *p)).collect::<Vec<_>>());
        site
    }

    fn topic(&self, purpose: &str) -> String {
        format!("accord.{purpose}.{}", self.id)
    }

    fn outputs(&self) -> Vec<String> {
        PURPOSES.iter().map(|p| self.topic(p)).collect()
    }

    /// Reads every output topic and the quarantine topic until `expected` outputs and
    /// `quarantined` notes are there, then half a second more, so that anything extra
    /// shows up too.
    fn read_all(&self, timeout: Duration, what: &str, expected: &BTreeMap<String, Vec<String>>, quarantined: usize) -> Reader {
        let mut topics = self.outputs();
        topics.push(self.quarantine.clone());
        let mut reader = Reader::new(&topics.iter().map(String::as_str).collect::<Vec<_>>(), false);
        reader.until(timeout, what, |recs| expected.iter().all(|(t, v)| count_in(recs, t) >= v.len()) && count_in(recs, &self.quarantine) >= quarantined);
        reader.poll_for(Duration::from_millis(500));
        reader
    }

    /// A gateway configuration for this site; `kafka` is extra YAML inside `kafka:`.
    fn config(&self, name: &str, group: &str, kafka: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.yaml"));
        let text = format!(
            "agreement: {agreement}\n\
             pseudonym_key:\n  file: {key}\n  id: {DEMO_KEY_ID}\n\
             kafka:\n  brokers: {brokers}\n  group: {group}\n  input:\n    topics: [{input}]\n  quarantine_topic: {quarantine}\n\
             {kafka}\
             \n  consumer:\n    session.timeout.ms: 6000\n    heartbeat.interval.ms: 500\n    max.poll.interval.ms: 30000\n\
             limits:\n  commit_interval: 300ms\n  drain_timeout: 10s\n",
            agreement = self.agreement.display(),
            key = common::example("demo.key").display(),
            brokers = bootstrap(),
            input = self.input,
            quarantine = self.quarantine,
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// What file mode makes of `events`: every output per topic, and the number of
    /// quarantined events.
    fn file_mode(&self, events: &[String]) -> (BTreeMap<String, Vec<String>>, usize) {
        let input = self.dir.path().join(format!("events-{}.jsonl", unique("in")));
        std::fs::write(&input, events.join("\n") + "\n").unwrap();
        let out = self.dir.path().join(unique("file-mode"));
        let status = common::accord()
            .args(["run", "--key-id", DEMO_KEY_ID, "--output"])
            .arg(&out)
            .arg("--agreement")
            .arg(&self.agreement)
            .arg("--key-file")
            .arg(common::example("demo.key"))
            .arg("--input")
            .arg(&input)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "file mode failed");
        let lines = |path: PathBuf| -> Vec<String> { std::fs::read_to_string(path).unwrap().lines().map(str::to_string).collect() };
        let outputs = PURPOSES.iter().map(|p| (self.topic(p), lines(out.join(format!("{}.jsonl", self.topic(p)))))).collect();
        (outputs, lines(out.join("quarantine.jsonl")).len())
    }

    /// Waits until `group` has committed the end of every input partition.
    fn wait_for_the_end_committed(&self, group: &str, timeout: Duration) {
        let start = Instant::now();
        loop {
            let committed = self.offsets_committed(group);
            if committed.iter().all(|(_, c, high)| c == high) {
                return;
            }
            assert!(start.elapsed() < timeout, "committed offsets behind the end: {committed:?}");
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn offsets_committed(&self, group: &str) -> Vec<(i32, i64, i64)> {
        let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", bootstrap()).set("group.id", group).create().unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..self.partitions {
            tpl.add_partition(&self.input, p);
        }
        let committed = consumer.committed_offsets(tpl, Duration::from_secs(10)).expect("committed offsets");
        (0..self.partitions)
            .map(|p| {
                let c = match committed.find_partition(&self.input, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    _ => -1,
                };
                let (_, high) = consumer.fetch_watermarks(&self.input, p, Duration::from_secs(10)).unwrap();
                (p, c, high)
            })
            .collect()
    }
}

/// The example events, one per line (file mode reads lines; Kafka, records).
fn example_events() -> Vec<String> {
    std::fs::read_to_string(common::example("events.jsonl")).unwrap().lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect()
}

/// `n` copies of the example events, each event id made unique per copy.
fn many_events(n: usize) -> Vec<String> {
    let base = example_events();
    let mut out = Vec::with_capacity(base.len() * n);
    for copy in 0..n {
        for line in &base {
            let marker = "\"event_id\": \"";
            out.push(match line.find(marker) {
                Some(i) => {
                    let at = i + marker.len();
                    format!("{}c{copy}-{}", &line[..at], &line[at..])
                }
                None => line.clone(),
            });
        }
    }
    out
}

// ---------------------------------------------------------------- a gateway --

/// The `accord run --config` process, its stderr collected line by line.
struct Gateway {
    name: String,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Gateway {
    fn start(name: &str, config: &Path) -> Gateway {
        let mut child = common::accord()
            .arg("run")
            .arg("--config")
            .arg(config)
            .env("ACCORD_LOG_FORMAT", "text")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the gateway starts");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (stderr, lines) = (child.stderr.take().unwrap(), log.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        Gateway { name: name.to_string(), child, log }
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    fn kill_9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then the exit status, which must come within `timeout`.
    fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let ok = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap().success();
        assert!(ok, "cannot signal {}", self.name);
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < timeout, "{} did not exit within {timeout:?} of SIGTERM:\n{}", self.name, self.log().join("\n"));
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The input partitions it holds now, from its `assigned`/`revoked`/`lost` lines.
    fn holds(&self) -> BTreeSet<i32> {
        let mut held = BTreeSet::new();
        for line in self.log() {
            for verb in ["assigned", "revoked", "lost"] {
                let Some(rest) = line.split_once(&format!("{verb} sensors.")).map(|(_, r)| r) else { continue };
                let parts = rest.split_once('[').and_then(|(_, r)| r.split_once(']')).map_or("", |(ps, _)| ps);
                for p in parts.split(',').filter_map(|p| p.parse::<i32>().ok()) {
                    if verb == "assigned" {
                        held.insert(p);
                    } else {
                        held.remove(&p);
                    }
                }
            }
        }
        held
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("----- {} stderr -----\n{}", self.name, self.log().join("\n"));
        }
    }
}

// ------------------------------------------------------------------ checks --

fn multiset(v: &[String]) -> BTreeMap<&str, usize> {
    let mut m = BTreeMap::new();
    for s in v {
        *m.entry(s.as_str()).or_insert(0) += 1;
    }
    m
}

fn assert_same_outputs(topic: &str, kafka: &[String], file: &[String]) {
    let (k, f) = (multiset(kafka), multiset(file));
    if k != f {
        let missing: Vec<_> = f.keys().filter(|p| k.get(*p) != f.get(*p)).take(3).collect();
        let extra: Vec<_> = k.keys().filter(|p| !f.contains_key(*p)).take(3).collect();
        panic!("{topic}: Kafka mode has {} outputs, file mode {}; e.g. differing {missing:?}, only in Kafka {extra:?}", kafka.len(), file.len());
    }
}

/// Every output in `expected` is among `got` (duplicates allowed), and nothing else is.
fn assert_nothing_missing(topic: &str, got: &[String], expected: &[String]) {
    let got_set: BTreeSet<&str> = got.iter().map(String::as_str).collect();
    let want: BTreeSet<&str> = expected.iter().map(String::as_str).collect();
    let missing = want.difference(&got_set).count();
    let unexpected: Vec<_> = got_set.difference(&want).take(3).collect();
    assert_eq!(missing, 0, "{topic}: {missing} of {} expected outputs are missing", want.len());
    assert!(unexpected.is_empty(), "{topic}: outputs file mode does not make: {unexpected:?}");
}

fn count_in(recs: &[Rec], topic: &str) -> usize {
    recs.iter().filter(|r| r.topic == topic).count()
}

/// Every output in `recs` carries exactly its purpose's three headers (the example
/// agreement, version 4), and every quarantine note the agreement's two: most go out
/// with the header lists of earlier outputs, which must never be another route's.
fn assert_headers(site: &Site, recs: &[Rec]) {
    let of = |r: &Rec| -> BTreeMap<String, Vec<u8>> { r.headers.iter().map(|(k, v)| (k.clone(), v.clone().unwrap_or_default())).collect() };
    let base = [("accord-agreement".to_string(), b"acme-dc-utrecht".to_vec()), ("accord-version".to_string(), b"4".to_vec())];
    for purpose in PURPOSES {
        let topic = site.topic(purpose);
        let want: BTreeMap<String, Vec<u8>> = base.iter().cloned().chain([("accord-purpose".to_string(), purpose.as_bytes().to_vec())]).collect();
        for r in recs.iter().filter(|r| r.topic == topic) {
            assert_eq!(of(r), want, "{topic}: the headers of another purpose or agreement");
        }
    }
    for r in recs.iter().filter(|r| r.topic == site.quarantine) {
        assert_eq!(of(r), base.iter().cloned().collect(), "a quarantine note's headers");
    }
}

/// How many outputs went out with an earlier one's headers, from a gateway's last line.
fn headers_sent_again(log: &str) -> Option<u64> {
    log.lines().find_map(|l| l.split_once(" output(s) went out with the headers of an earlier one")).and_then(|(before, _)| before.rsplit(' ').next()?.parse().ok())
}

/// At least the expected number of distinct outputs in every output topic.
fn all_there(expected: &BTreeMap<String, Vec<String>>) -> impl Fn(&[Rec]) -> bool + '_ {
    move |recs| {
        expected.iter().all(|(topic, want)| {
            let got: BTreeSet<&str> = recs.iter().filter(|r| &r.topic == topic).map(|r| r.payload.as_str()).collect();
            got.len() >= want.iter().collect::<BTreeSet<_>>().len()
        })
    }
}

fn is_raw_subject(s: &str) -> bool {
    // The example site's employee numbers: `emp-` and five digits.
    let b = s.as_bytes();
    b.windows(9).any(|w| w.starts_with(b"emp-") && w[4..].iter().all(u8::is_ascii_digit))
}

fn is_pseudonym(s: &str) -> bool {
    s.strip_prefix(&format!("{DEMO_KEY_ID}:")).is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
}

// ------------------------------------------------------- the examples, once --

/// The examples run once through Kafka (3 input partitions), shared by the tests that
/// look at the outputs.
struct ExamplesRun {
    site: Site,
    recs: Vec<Rec>,
    expected: BTreeMap<String, Vec<String>>,
    quarantined: usize,
    exit: ExitStatus,
    stopped_in: Duration,
    committed: Vec<(i32, i64, i64)>,
}

fn examples_run() -> &'static ExamplesRun {
    static RUN: OnceLock<ExamplesRun> = OnceLock::new();
    RUN.get_or_init(|| {
        let site = Site::new("examples", 3);
        let events = example_events();
        let (expected, quarantined) = site.file_mode(&events);
        produce(&site.input, site.partitions, &events);
        let group = unique("examples");
        let mut gw = Gateway::start("gateway", &site.config("gw", &group, ""));
        let reader = site.read_all(Duration::from_secs(90), "every example output and quarantine note", &expected, quarantined);
        let started = Instant::now();
        let exit = gw.terminate(Duration::from_secs(30));
        let stopped_in = started.elapsed();
        let committed = site.offsets_committed(&group);
        ExamplesRun { site, recs: reader.recs, expected, quarantined, exit, stopped_in, committed }
    })
}

// ------------------------------------------------------------------- tests --

#[test]
fn examples_through_kafka_give_the_same_outputs_as_file_mode() {
    let _broker = shared_broker();
    let run = examples_run();
    for (topic, want) in &run.expected {
        let got: Vec<String> = run.recs.iter().filter(|r| &r.topic == topic).map(|r| r.payload.clone()).collect();
        assert_same_outputs(topic, &got, want);
    }
    assert!(run.expected.values().map(Vec::len).sum::<usize>() > 200, "the examples make outputs for every purpose");
    assert_eq!(count_in(&run.recs, &run.site.quarantine), run.quarantined, "as many quarantine notes as file mode");
}

#[test]
fn outputs_hold_no_prohibited_data_and_no_raw_ids() {
    let _broker = shared_broker();
    let run = examples_run();
    // SPEC 2.2 and the example agreement's own additions.
    let prohibited_categories = [
        "emotion", "facial_expression", "racial_ethnic_origin", "political_opinion", "religion", "trade_union", "sex_life",
        "sexual_orientation", "genetic", "keystroke_content", "screen_capture", "mood", "stress_level",
    ];
    let prohibited_names = [
        "emotion", "mood", "sentiment", "stress", "stress_level", "valence", "arousal", "facial_expression", "dna", "genome", "typed_text",
        "keylog", "window_title", "screenshot", "mood_score", "stress_score", "fingerprint", "face_template", "iris_template", "voiceprint",
    ];
    let health_names = ["heart_rate", "hrv", "blood_pressure", "spo2", "body_temperature", "glucose", "diagnosis", "heat_stress_index", "skin_temp_c", "hrv_ms"];
    fn names(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => m.iter().for_each(|(k, v)| {
                out.push(k.to_ascii_lowercase());
                names(v, out);
            }),
            serde_json::Value::Array(a) => a.iter().for_each(|v| names(v, out)),
            _ => {}
        }
    }
    let mut seen = 0;
    for purpose in PURPOSES {
        let topic = run.site.topic(purpose);
        for r in run.recs.iter().filter(|r| r.topic == topic) {
            seen += 1;
            let event: serde_json::Value = serde_json::from_str(&r.payload).unwrap();
            let category = event["category"].as_str().unwrap().to_ascii_lowercase();
            assert!(!prohibited_categories.contains(&category.as_str()), "{topic}: a {category} event");
            let mut attrs = Vec::new();
            names(&event["attributes"], &mut attrs);
            for name in &attrs {
                assert!(!prohibited_names.contains(&name.as_str()), "{topic}: attribute {name} in {}", r.payload);
                if purpose != "safety" {
                    assert!(!health_names.contains(&name.as_str()), "{topic}: health attribute {name} outside safety");
                }
            }
            assert_eq!(event["accord"]["purpose"], purpose);
            let subject = event["subject_id"].as_str();
            let key = r.key.as_deref().map(|k| std::str::from_utf8(k).unwrap());
            assert_eq!(key, subject, "{topic}: the key is the subject_id as output");
            if purpose == IDENTIFIED {
                assert!(subject.is_some_and(is_raw_subject), "{topic}: payroll keeps the employee number");
            } else {
                assert!(!is_raw_subject(&r.payload), "{topic}: a raw subject id in {}", r.payload);
                if let Some(k) = key {
                    assert!(is_pseudonym(k), "{topic}: key {k} is not a pseudonym");
                }
            }
            let headers: BTreeMap<&str, &[u8]> = r.headers.iter().map(|(k, v)| (k.as_str(), v.as_deref().unwrap_or_default())).collect();
            let want: BTreeMap<&str, &[u8]> = [("accord-agreement", &b"acme-dc-utrecht"[..]), ("accord-purpose", purpose.as_bytes()), ("accord-version", b"4")].into();
            assert_eq!(headers, want, "{topic}: exactly the accord headers, none of the input's");
        }
    }
    assert!(seen > 200);
    for r in run.recs.iter().filter(|r| r.topic == run.site.quarantine) {
        assert!(!is_raw_subject(&r.payload) && r.key.is_none(), "quarantine note with an id: {}", r.payload);
        assert!(r.headers.iter().all(|(k, v)| !v.as_deref().is_some_and(|v| is_raw_subject(&String::from_utf8_lossy(v))) && k.starts_with("accord-")));
    }
}

#[test]
fn malformed_records_land_in_quarantine_without_payload_and_the_rest_flows() {
    let _broker = shared_broker();
    let site = Site::new("quarantine", 2);
    let secret = "emp-99999 SECRET-PAYLOAD-MARKER";
    let good = example_events().into_iter().filter(|e| e.contains("\"category\": \"access\"")).take(20).collect::<Vec<_>>();
    assert_eq!(good.len(), 20);
    let bad = [
        format!("{{\"event_id\": \"bad-1\", \"subject_id\": \"{secret}\""),
        format!("not json at all: {secret}"),
        format!("{{\"event_id\": \"bad-3\", \"source\": \"tracker\", \"subject_id\": \"{secret}\", \"category\": \"location\"}}"),
        format!("[\"{secret}\"]"),
        String::new(),
    ];
    // Interleave: good, bad, good, bad, ... all in partition order.
    let mut events = Vec::new();
    let mut bad_at = Vec::new();
    for (i, g) in good.iter().enumerate() {
        events.push(g.clone());
        if let Some(b) = bad.get(i) {
            bad_at.push(events.len());
            events.push(b.clone());
        }
    }
    let (expected, _) = site.file_mode(&good);
    produce(&site.input, site.partitions, &events);
    let mut gw = Gateway::start("gateway", &site.config("gw", &unique("q"), ""));
    let mut topics = site.outputs();
    topics.push(site.quarantine.clone());
    let mut reader = Reader::new(&topics.iter().map(String::as_str).collect::<Vec<_>>(), false);
    let q = site.quarantine.clone();
    reader.until(Duration::from_secs(60), "the good events' outputs and five quarantine notes", |recs| {
        count_in(recs, &q) >= bad.len() && expected.iter().all(|(t, v)| count_in(recs, t) >= v.len())
    });
    assert!(gw.terminate(Duration::from_secs(30)).success());

    for (topic, want) in &expected {
        assert_same_outputs(topic, &reader.payloads(topic), want);
    }
    let mut noted = BTreeSet::new();
    for r in reader.recs.iter().filter(|r| r.topic == q) {
        let note: serde_json::Value = serde_json::from_str(&r.payload).unwrap();
        let keys: BTreeSet<&str> = note.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["agreement", "detail", "offset", "partition", "reason", "topic", "version"].into(), "{}", r.payload);
        assert_eq!(note["topic"], site.input.as_str());
        assert_eq!(note["reason"], "malformed");
        // Record i went to partition i % 2 at offset i / 2.
        let (p, o) = (note["partition"].as_i64().unwrap(), note["offset"].as_i64().unwrap());
        noted.insert((o * 2 + p) as usize);
    }
    assert_eq!(noted, bad_at.iter().copied().collect::<BTreeSet<_>>(), "one note per malformed record, at its partition and offset");
    for r in &reader.recs {
        assert!(!r.payload.contains("SECRET-PAYLOAD-MARKER") && !r.payload.contains("emp-99999"), "{}: payload leaked: {}", r.topic, r.payload);
    }
}

#[test]
fn sigterm_drains_commits_everything_and_exits_zero() {
    let _broker = shared_broker();
    let run = examples_run();
    assert!(run.exit.success(), "exit status {:?}", run.exit);
    assert!(run.stopped_in < Duration::from_secs(20), "stopping took {:?}", run.stopped_in);
    for (p, committed, end) in &run.committed {
        assert_eq!(committed, end, "input partition {p}: committed offset {committed}, log end {end}");
    }
}

#[test]
fn kill_9_mid_stream_then_restart_loses_nothing() {
    let _broker = shared_broker();
    let site = Site::new("kill9", 3);
    let events = many_events(120);
    let (expected, _) = site.file_mode(&events);
    let total: usize = expected.values().map(Vec::len).sum();
    produce(&site.input, site.partitions, &events);
    let config = site.config("gw", &unique("kill9"), "");
    // At most a thousand outputs unacknowledged, one record at a time: the run then takes
    // seconds, so that the kill lands mid-stream however fast the gateway is (a
    // release build enforces and produces all of these events in a fraction of one).
    add_limits(&config, "  max_in_flight: 1000\n  threads: 1\n");
    let outputs = site.outputs();
    let mut reader = Reader::new(&outputs.iter().map(String::as_str).collect::<Vec<_>>(), false);

    let mut first = Gateway::start("first gateway", &config);
    reader.until(Duration::from_secs(90), "the first outputs", |recs| recs.len() >= total / 10);
    first.kill_9();
    reader.poll_for(Duration::from_millis(300));
    let at_kill = reader.recs.len();
    assert!(at_kill < total, "the gateway finished ({at_kill} of {total} outputs) before it could be killed mid-stream");

    let mut second = Gateway::start("second gateway", &config);
    reader.until(Duration::from_secs(120), "every expected output after the restart", all_there(&expected));
    assert!(second.terminate(Duration::from_secs(30)).success());
    for (topic, want) in &expected {
        assert_nothing_missing(topic, &reader.payloads(topic), want);
    }
    eprintln!("kill -9 at {at_kill} of {total} outputs; {} read in all ({} duplicates)", reader.recs.len(), reader.recs.len() - total);
}

#[test]
fn kill_9_in_exactly_once_mode_each_output_once_for_a_read_committed_reader() {
    let _broker = shared_broker();
    let site = Site::new("eos", 3);
    let events = many_events(120);
    let (expected, _) = site.file_mode(&events);
    let total: usize = expected.values().map(Vec::len).sum();
    produce(&site.input, site.partitions, &events);
    let txid = format!("accord-test-{}", site.id);
    let config = site.config("gw", &unique("eos"), &format!("  delivery: exactly_once\n  transactional_id: {txid}\n"));
    // Transactions of at most a thousand outputs, so that the kill lands between two
    // commits however fast the gateway is (a release build enforces all of these
    // events within one commit interval).
    add_limits(&config, "  max_in_flight: 1000\n");
    let outputs = site.outputs();
    let mut reader = Reader::new(&outputs.iter().map(String::as_str).collect::<Vec<_>>(), true);

    let mut first = Gateway::start("first gateway", &config);
    reader.until(Duration::from_secs(90), "the first committed outputs", |recs| recs.len() >= total / 10);
    first.kill_9();
    let at_kill = reader.recs.len();
    assert!(at_kill < total, "the gateway finished ({at_kill} of {total} outputs) before it could be killed mid-stream");

    let mut second = Gateway::start("second gateway", &config);
    reader.until(Duration::from_secs(120), "every output, committed", |recs| recs.len() >= total);
    assert!(second.terminate(Duration::from_secs(30)).success());
    // Whatever else was committed would be readable now.
    reader.poll_for(Duration::from_secs(2));
    for (topic, want) in &expected {
        assert_same_outputs(topic, &reader.payloads(topic), want);
    }
    // An uncommitted reader sees the aborted leftovers of the killed gateway too, which
    // is what read_committed hides.
    eprintln!("exactly-once: kill -9 at {at_kill} of {total} committed outputs; read_committed saw each once");
}

/// A gateway fenced by a newer one with the same `transactional.id` is a zombie: it
/// stops with status 1, where any other fatal error of its producer is cured by a new
/// producer (which here would fence the newer in turn). The newer goes on, and a
/// `read_committed` reader sees file mode's outputs exactly once.
#[test]
fn a_fenced_exactly_once_gateway_stops_and_the_newer_goes_on() {
    let _broker = shared_broker();
    let site = Site::new("fence", 1);
    let events = many_events(40);
    let (expected, _) = site.file_mode(&events);
    let total: usize = expected.values().map(Vec::len).sum();
    let txid = format!("accord-test-{}", site.id);
    let config = site.config("gw", &unique("fence"), &format!("  delivery: exactly_once\n  transactional_id: {txid}\n"));
    add_limits(&config, "  max_in_flight: 500\n");
    let outputs = site.outputs();
    let mut reader = Reader::new(&outputs.iter().map(String::as_str).collect::<Vec<_>>(), true);
    let mut old = Gateway::start("old gateway", &config);
    old.wait_for_log(Duration::from_secs(60), "assigned ");
    let mut new = Gateway::start("new gateway", &config);
    new.wait_for_log(Duration::from_secs(60), "consuming ");
    produce(&site.input, 1, &events);
    let start = Instant::now();
    let status = loop {
        if let Some(status) = old.child.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < Duration::from_secs(90), "the fenced gateway is still running:\n{}", old.log().join("\n"));
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = old.log().join("\n");
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("fenced") && !log.contains("replacing it"), "stopped as a zombie, without a new producer:\n{log}");
    reader.until(Duration::from_secs(120), "every output, committed", |recs| recs.len() >= total);
    assert!(new.alive(), "the newer gateway goes on:\n{}", new.log().join("\n"));
    assert!(new.terminate(Duration::from_secs(30)).success());
    reader.poll_for(Duration::from_secs(2));
    for (topic, want) in &expected {
        assert_same_outputs(topic, &reader.payloads(topic), want);
    }
}

/// Partitions added to an input topic while the gateway runs are consumed within
/// seconds, not after librdkafka's default metadata refresh of five minutes.
#[test]
fn partitions_added_to_the_input_are_consumed_within_seconds() {
    let _broker = shared_broker();
    let site = Site::new("grow", 1);
    let events = many_events(2);
    let (early, late) = events.split_at(events.len() / 2);
    let (expected, _) = site.file_mode(&events);
    let (first, _) = site.file_mode(early);
    let outputs = site.outputs();
    let mut reader = Reader::new(&outputs.iter().map(String::as_str).collect::<Vec<_>>(), false);
    let mut gw = Gateway::start("gateway", &site.config("gw", &unique("grow"), ""));
    produce(&site.input, 1, early);
    reader.until(Duration::from_secs(90), "the first half's outputs", all_there(&first));
    let grown = futures::executor::block_on(admin().create_partitions(&[NewPartitions::new(&site.input, 3)], &AdminOptions::new()));
    assert!(grown.is_ok_and(|r| r.iter().all(Result::is_ok)), "the input topic grew to 3 partitions");
    let added = Instant::now();
    produce(&site.input, 3, late);
    reader.until(Duration::from_secs(60), "the second half's outputs, two thirds of them from the new partitions", all_there(&expected));
    let log = gw.log();
    assert!(log.iter().any(|l| l.contains("assigned ") && l.contains("[1,2]")), "the new partitions were assigned:\n{}", log.join("\n"));
    eprintln!("added partitions consumed within {:.1?}", added.elapsed());
    assert!(gw.terminate(Duration::from_secs(30)).success());
}

#[test]
fn two_instances_share_six_partitions_and_the_survivor_takes_over() {
    let _broker = shared_broker();
    let site = Site::new("scale", 6);
    let events = many_events(100);
    let (expected, _) = site.file_mode(&events);
    let total: usize = expected.values().map(Vec::len).sum();
    let (early, late) = events.split_at(events.len() / 2);
    produce(&site.input, site.partitions, early);
    let group = unique("scale");
    let mut a = Gateway::start("gateway a", &site.config("a", &group, ""));
    let mut b = Gateway::start("gateway b", &site.config("b", &group, ""));
    let start = Instant::now();
    while a.holds().is_empty() || b.holds().is_empty() || a.holds().len() + b.holds().len() != 6 {
        assert!(start.elapsed() < Duration::from_secs(60), "the two gateways did not share the partitions: a {:?}, b {:?}", a.holds(), b.holds());
        assert!(a.alive() && b.alive(), "a gateway exited");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (held_by_a, held_by_b) = (a.holds(), b.holds());
    assert!(held_by_a.is_disjoint(&held_by_b), "a {held_by_a:?} and b {held_by_b:?} overlap");
    let outputs = site.outputs();
    let mut reader = Reader::new(&outputs.iter().map(String::as_str).collect::<Vec<_>>(), false);
    reader.until(Duration::from_secs(90), "outputs from both halves", |recs| recs.len() >= total / 8);
    a.kill_9();
    produce(&site.input, site.partitions, late);
    reader.until(Duration::from_secs(120), "every expected output after gateway a was killed", all_there(&expected));
    let start = Instant::now();
    while b.holds().len() != 6 {
        assert!(start.elapsed() < Duration::from_secs(30), "gateway b holds {:?}, not all six partitions", b.holds());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(b.terminate(Duration::from_secs(30)).success());
    for (topic, want) in &expected {
        assert_nothing_missing(topic, &reader.payloads(topic), want);
    }
    eprintln!("scale-out: a held {held_by_a:?}, b held {held_by_b:?}, then all six");
}

#[test]
fn protobuf_in_and_out_gives_the_same_outputs_as_file_mode() {
    use prost::Message as _;
    let _broker = shared_broker();
    let site = Site::new("proto", 2);
    let events: Vec<Vec<u8>> = example_events()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| accord::event::proto::sensor_event_from_json(&v))
        .map(|e| e.encode_to_vec())
        .collect();
    assert!(events.len() > 300);
    // File mode reads varint length-delimited messages and writes them likewise.
    let input = site.dir.path().join("events.pb");
    let mut delimited = Vec::new();
    for e in &events {
        prost::encoding::encode_varint(e.len() as u64, &mut delimited);
        delimited.extend_from_slice(e);
    }
    std::fs::write(&input, delimited).unwrap();
    let out = site.dir.path().join("file-mode-proto");
    let status = common::accord()
        .args(["run", "--format", "proto", "--key-id", DEMO_KEY_ID, "--agreement"])
        .arg(&site.agreement)
        .arg("--key-file")
        .arg(common::example("demo.key"))
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&out)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let mut expected: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for p in PURPOSES {
        let mut bytes = &std::fs::read(out.join(format!("{}.pb", site.topic(p)))).unwrap()[..];
        let list = expected.entry(site.topic(p)).or_default();
        while !bytes.is_empty() {
            let len = prost::encoding::decode_varint(&mut bytes).unwrap() as usize;
            list.push(bytes[..len].to_vec());
            bytes = &bytes[len..];
        }
    }
    assert!(expected.values().map(Vec::len).sum::<usize>() > 200);

    produce_bytes(&site.input, site.partitions, &events);
    let config = site.config("gw", &unique("proto"), "  output:\n    format: proto\n");
    let text = std::fs::read_to_string(&config).unwrap().replace("    topics: [", "    format: proto\n    topics: [");
    std::fs::write(&config, text).unwrap();
    let mut gw = Gateway::start("gateway", &config);
    let outputs = site.outputs();
    let mut reader = Reader::new(&outputs.iter().map(String::as_str).collect::<Vec<_>>(), false);
    reader.until(Duration::from_secs(60), "every protobuf output", |recs| expected.iter().all(|(t, v)| count_in(recs, t) >= v.len()));
    assert!(gw.terminate(Duration::from_secs(30)).success());
    for (topic, want) in &expected {
        let mut got: Vec<&Vec<u8>> = reader.recs.iter().filter(|r| &r.topic == topic).map(|r| &r.bytes).collect();
        let mut want: Vec<&Vec<u8>> = want.iter().collect();
        got.sort();
        want.sort();
        assert!(got == want, "{topic}: {} protobuf outputs through Kafka, {} in file mode, not the same", got.len(), want.len());
    }
}

/// Stops the shared broker; it is started again when this is dropped, even on failure.
struct BrokerDown {
    dir: String,
    down: bool,
}

fn kafka_sh(args: &[&str]) {
    let out = Command::new(common::root().join("scripts/kafka.sh")).args(args).output().expect("scripts/kafka.sh runs");
    assert!(out.status.success(), "kafka.sh {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
}

impl BrokerDown {
    fn stop(dir: &str) -> BrokerDown {
        kafka_sh(&["stop-broker", dir]);
        BrokerDown { dir: dir.to_string(), down: true }
    }

    fn start(&mut self) {
        kafka_sh(&["start-broker", &self.dir]);
        self.down = false;
    }
}

impl Drop for BrokerDown {
    fn drop(&mut self) {
        if self.down {
            let _ = Command::new(common::root().join("scripts/kafka.sh")).args(["start-broker", &self.dir]).status();
        }
    }
}

#[test]
fn broker_restart_mid_stream_loses_nothing() {
    broker_restart_mid_stream("restart", false);
}

/// The same in `exactly_once`: deliveries that time out abort their transaction,
/// which is consumed again; a `read_committed` reader sees file mode's outputs
/// exactly once.
#[test]
fn broker_restart_in_exactly_once_mode_each_output_once() {
    broker_restart_mid_stream("eosrestart", true);
}

fn broker_restart_mid_stream(name: &str, exactly_once: bool) {
    bootstrap();
    let dir = std::env::var("ACCORD_KAFKA_DIR").unwrap_or_else(|_| {
        panic!("this test stops and restarts the broker: set ACCORD_KAFKA_DIR to the run directory of a broker started with scripts/kafka.sh (scripts/test.sh does)")
    });
    let _alone = BROKER.write().unwrap_or_else(|e| e.into_inner());
    let site = Site::new(name, 3);
    let events = many_events(120);
    let (expected, _) = site.file_mode(&events);
    let total: usize = expected.values().map(Vec::len).sum();
    produce(&site.input, site.partitions, &events);
    // Short delivery timeouts, so that deliveries fail while the broker is away and
    // the gateway's own retries (which hold the watermark) are exercised, or
    // (exactly-once) its transactions' aborts.
    let delivery = if exactly_once { format!("  delivery: exactly_once\n  transactional_id: accord-test-{}\n", site.id) } else { String::new() };
    let config = site.config("gw", &unique(name), &format!("{delivery}  producer:\n    message.timeout.ms: 3000\n"));
    // The consumer's session as the gateway ships it (45 s), longer than the broker is
    // away: the restart is survived without losing the assignment. (With the tests'
    // 6 s session it expires while the broker is away, and librdkafka's cooperative
    // rejoin after the coordinator's restart sometimes never got an assignment back:
    // 2 runs in 9 under load here, once in CI. docs/kafka.md says so.)
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("session.timeout.ms: 6000"), "the tests' consumer block changed:\n{text}");
    // A delivery failing for 30 s makes /healthz fail: the broker is away for less.
    let text = text.replace("session.timeout.ms: 6000", "session.timeout.ms: 45000").replace("heartbeat.interval.ms: 500", "heartbeat.interval.ms: 3000").replace("max.poll.interval.ms: 30000", "max.poll.interval.ms: 300000");
    std::fs::write(&config, text + "  stuck_after: 30s\nadmin:\n  address: 127.0.0.1:0\n").unwrap();
    let outputs = site.outputs();
    let mut gw = Gateway::start("gateway", &config);
    let addr = gw.admin_address();
    {
        let mut reader = Reader::new(&outputs.iter().map(String::as_str).collect::<Vec<_>>(), exactly_once);
        reader.until(Duration::from_secs(90), "the first outputs", |recs| recs.len() >= total / 10);
        assert!(reader.recs.len() < total, "the gateway finished before the broker could be stopped");
    }
    let mut down = BrokerDown::stop(&dir);
    std::thread::sleep(Duration::from_secs(5));
    assert!(gw.alive(), "the gateway exited while the broker was down:\n{}", gw.log().join("\n"));
    down.start();
    let mut reader = Reader::new(&outputs.iter().map(String::as_str).collect::<Vec<_>>(), exactly_once);
    let back = Instant::now();
    let mut healthy = true;
    while !all_there(&expected)(&reader.recs) && back.elapsed() < Duration::from_secs(90) && gw.alive() && healthy {
        reader.poll_for(Duration::from_millis(500));
        healthy = http_get(&addr, "/healthz").0 == 200;
    }
    assert!(gw.alive(), "the gateway exited while the broker came back:\n{}", gw.log().join("\n"));
    if !all_there(&expected)(&reader.recs) {
        // librdkafka's clients sometimes stay wedged after a broker restart (docs/kafka.md,
        // "Broker restarts"): Kubernetes restarts a gateway whose /healthz fails (a
        // delivery stuck), an operator one that does not recover. What this test holds
        // the gateway to is that nothing is lost, whether it recovers alone or not.
        let who = if healthy { "an operator would: it had not recovered within 90 s" } else { "Kubernetes would: /healthz failed" };
        eprintln!(
            "broker restart: restarting the gateway as {who}.\n{}\n{}",
            leaderless(&outputs),
            gw.log().iter().rev().take(20).rev().cloned().collect::<Vec<_>>().join("\n")
        );
        gw.kill_9();
        gw = Gateway::start("gateway", &config);
    }
    reader.until_else(Duration::from_secs(180), "every expected output after the broker came back", all_there(&expected), || {
        let logs = Command::new(common::root().join("scripts/kafka.sh")).args(["logs", &dir, "80"]).output();
        let logs = logs.map_or_else(|e| e.to_string(), |o| String::from_utf8_lossy(&o.stderr).into_owned());
        format!("\n{}\n{logs}", leaderless(&outputs))
    });
    assert!(gw.alive(), "the gateway exited");
    assert!(gw.terminate(Duration::from_secs(30)).success());
    if exactly_once {
        // Whatever else was committed would be readable now.
        reader.poll_for(Duration::from_secs(2));
    }
    for (topic, want) in &expected {
        if exactly_once {
            assert_same_outputs(topic, &reader.payloads(topic), want);
        } else {
            assert_nothing_missing(topic, &reader.payloads(topic), want);
        }
    }
    let retried = gw.log().iter().filter(|l| l.contains("failed") || l.contains("retry")).count();
    let renewed = gw.log().iter().filter(|l| l.contains("replacing it")).count();
    eprintln!("broker restart ({name}): {} outputs read for {total} expected; {retried} retry/failure notes; {renewed} producer(s) replaced", reader.recs.len());
}

/// A consumer that has not been a steady member of its group for `limits.stuck_after`
/// makes `/healthz` fail, so that the liveness probe restarts it: a client that never
/// finds its coordinator again after a broker restart (seen in CI) consumes nothing
/// and reports nothing else. Back in its group, `/healthz` is ok again.
#[test]
fn a_consumer_out_of_its_group_fails_healthz_until_it_is_back() {
    bootstrap();
    let dir = std::env::var("ACCORD_KAFKA_DIR").unwrap_or_else(|_| {
        panic!("this test stops and restarts the broker: set ACCORD_KAFKA_DIR to the run directory of a broker started with scripts/kafka.sh (scripts/test.sh does)")
    });
    let _alone = BROKER.write().unwrap_or_else(|e| e.into_inner());
    let site = Site::new("group", 1);
    let events = example_events();
    let (expected, _) = site.file_mode(&events);
    let per_copy: usize = expected.values().map(Vec::len).sum();
    // The session as the gateway ships it, longer than the broker is away (see
    // broker_restart_mid_stream_loses_nothing); statistics every 500 ms.
    let config = site.config_with_metrics("gw", &unique("group"), "");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("session.timeout.ms: 6000") && text.contains("limits:\n"), "the tests' configuration changed:\n{text}");
    let text = text.replace("session.timeout.ms: 6000", "session.timeout.ms: 45000").replace("max.poll.interval.ms: 30000", "max.poll.interval.ms: 300000");
    std::fs::write(&config, text.replace("limits:\n", "limits:\n  stuck_after: 2s\n")).unwrap();
    let outputs = site.outputs();
    let outputs: Vec<&str> = outputs.iter().map(String::as_str).collect();
    produce(&site.input, 1, &events);
    let mut gw = Gateway::start("gateway", &config);
    let addr = gw.admin_address();
    // A reader of its own before the broker goes away (the tests' reader does not
    // survive it).
    Reader::new(&outputs, false).until(Duration::from_secs(90), "the first copy's outputs", |r| r.len() >= per_copy);
    assert_eq!(http_get(&addr, "/healthz"), (200, "ok\n".to_string()), "a steady member, with its outputs delivered");

    let healthz_until = |timeout: Duration, code: u16| {
        let start = Instant::now();
        loop {
            let answer = http_get(&addr, "/healthz");
            if answer.0 == code || start.elapsed() > timeout {
                return answer;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    // What the gateway says from here on: a slow first join (a broker still loading
    // its coordinators after the other tests' restarts) may have been reported
    // already, rightly, and is not this outage.
    let said_before = gw.log().len();
    let mut down = BrokerDown::stop(&dir);
    let (code, why) = healthz_until(Duration::from_secs(30), 503);
    assert!(code == 503 && why.contains("out of its group"), "/healthz while the broker is away: {code} {why}\n{}", gw.log().join("\n"));
    let (code, _) = http_get(&addr, "/readyz");
    assert_eq!(code, 503, "not ready either");
    down.start();
    let (code, why) = healthz_until(Duration::from_secs(90), 200);
    let log = gw.log();
    let said = |text: &str| log[said_before..].iter().filter(|l| l.contains(text)).count();
    assert_eq!(said("out of its group (or between a leave and a join) for longer than limits.stuck_after (2s; the last error: librdkafka's group handler is"), 1, "said once for the outage:\n{}", log.join("\n"));
    if code != 200 {
        // librdkafka's wedge after a broker restart, which /healthz is there to catch:
        // Kubernetes restarts the gateway.
        eprintln!("group: /healthz still {code} {why} 90 s after the broker came back; restarting the gateway as Kubernetes would.\n{}", log.iter().rev().take(20).rev().cloned().collect::<Vec<_>>().join("\n"));
        gw.kill_9();
        gw = Gateway::start("gateway", &config);
    } else {
        assert_eq!(said("the consumer's membership of its group works again: /healthz no longer fails for it"), 1, "{}", log.join("\n"));
    }
    produce(&site.input, 1, &events);
    Reader::new(&outputs, false).until(Duration::from_secs(90), "both copies' outputs", |r| r.len() >= 2 * per_copy);
    assert!(gw.alive() && gw.terminate(Duration::from_secs(30)).success());
}

// ------------------------------------------------------ the DPO's changes --

impl Gateway {
    /// Waits until a log line contains `text`.
    fn wait_for_log(&mut self, timeout: Duration, text: &str) -> Vec<String> {
        let start = Instant::now();
        loop {
            let log = self.log();
            if log.iter().any(|l| l.contains(text)) {
                return log;
            }
            assert!(self.alive(), "{} exited while waiting for `{text}`:\n{}", self.name, log.join("\n"));
            assert!(start.elapsed() < timeout, "no `{text}` in {}'s log within {timeout:?}:\n{}", self.name, log.join("\n"));
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A reloaded agreement comes into force between two records (every output and its
/// header name one version, in order), and a broken one changes nothing.
#[test]
fn reload_in_kafka_mode_switches_between_records_and_refuses_a_broken_agreement() {
    let _broker = shared_broker();
    let site = Site::new("reload", 1);
    let events = example_events();
    let (expected, _) = site.file_mode(&events);
    let per_copy: usize = expected.values().map(Vec::len).sum();
    let outputs = site.outputs();
    let mut reader = Reader::new(&outputs.iter().map(String::as_str).collect::<Vec<_>>(), false);
    let mut gw = Gateway::start("gateway", &site.config("gw", &unique("reload"), ""));

    produce(&site.input, 1, &events);
    reader.until(Duration::from_secs(90), "the first copy's outputs", |r| r.len() >= per_copy);
    let v4 = std::fs::read_to_string(&site.agreement).unwrap();
    std::fs::write(&site.agreement, v4.replace("version: 4", "version: 5")).unwrap();
    gw.wait_for_log(Duration::from_secs(20), "version 5 is now in force");
    produce(&site.input, 1, &events);
    reader.until(Duration::from_secs(90), "the second copy's outputs", |r| r.len() >= 2 * per_copy);
    let broken = v4.replace("version: 4", "version: 6").replace("purposes: [planning]", "purposes: [planing]");
    std::fs::write(&site.agreement, broken).unwrap();
    let log = gw.wait_for_log(Duration::from_secs(20), "was refused");
    assert!(log.iter().any(|l| l.contains("agreement.yaml:") && l.contains("`planing`")), "{}", log.join("\n"));
    produce(&site.input, 1, &events);
    reader.until(Duration::from_secs(90), "the third copy's outputs", |r| r.len() >= 3 * per_copy);
    assert!(gw.terminate(Duration::from_secs(30)).success());

    // Per output topic (each filled in input order): 4 for the first copy, then 5.
    for topic in &outputs {
        let recs: Vec<&Rec> = reader.recs.iter().filter(|r| &r.topic == topic).collect();
        let versions: Vec<u64> = recs.iter().map(|r| serde_json::from_str::<serde_json::Value>(&r.payload).unwrap()["accord"]["version"].as_u64().unwrap()).collect();
        let want = expected[topic].len();
        assert_eq!(versions.len(), 3 * want, "{topic}");
        assert!(versions[..want].iter().all(|v| *v == 4) && versions[want..].iter().all(|v| *v == 5), "{topic}: {versions:?}");
        for (r, v) in recs.iter().zip(&versions) {
            let header = r.headers.iter().find(|(k, _)| k == "accord-version").and_then(|(_, v)| v.clone());
            assert_eq!(header, Some(v.to_string().into_bytes()), "{topic}: the header names the version that decided");
        }
    }
}

/// With signatures required, an unsigned agreement is refused at start, naming the
/// party whose signature is missing; a signed one runs, and an unsigned change to it
/// is refused while the signed one stays in force.
#[test]
fn required_signatures_are_checked_at_start_and_at_reload() {
    let _broker = shared_broker();
    let site = Site::new("signed", 1);
    let keys = site.dir.path().join("keys");
    for party in ["ACME Logistics B.V.", "Ondernemingsraad ACME Utrecht"] {
        let out = common::accord().args(["keygen", "--party", party, "--out"]).arg(&keys).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let mut pubs: Vec<PathBuf> = std::fs::read_dir(&keys).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "pub")).collect();
    pubs.sort();
    let key_for = |pubfile: &Path| pubfile.with_extension("key");
    let name_of = |pubfile: &Path| -> String {
        let text = std::fs::read_to_string(pubfile).unwrap();
        text.lines().find_map(|l| l.strip_prefix("party:")).unwrap().trim().to_string()
    };
    let mut config_text = std::fs::read_to_string(site.config("gw", &unique("signed"), "")).unwrap();
    config_text.push_str("agreement_signatures:\n  required: true\n  parties:\n");
    for p in &pubs {
        config_text.push_str(&format!("    - name: \"{}\"\n      public_key_file: {}\n", name_of(p), p.display()));
    }
    let config = site.dir.path().join("signed.yaml");
    std::fs::write(&config, config_text).unwrap();

    // Unsigned: refused at start, naming a party.
    let out = common::accord().args(["run", "--config"]).arg(&config).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Ondernemingsraad ACME Utrecht") || err.contains("ACME Logistics B.V."), "{err}");

    // Signed by both: it runs.
    let sign = |agreement: &Path, key: &Path| {
        let out = common::accord().arg("sign").arg(agreement).arg("--key").arg(key).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    for p in &pubs {
        sign(&site.agreement, &key_for(p));
    }
    let mut gw = Gateway::start("signed gateway", &config);
    gw.wait_for_log(Duration::from_secs(30), "assigned");
    // A change signed by one party only is refused; the signed agreement stays.
    let text = std::fs::read_to_string(&site.agreement).unwrap();
    std::fs::write(&site.agreement, text.replace("version: 4", "version: 5")).unwrap();
    sign(&site.agreement, &key_for(&pubs[0]));
    let log = gw.wait_for_log(Duration::from_secs(20), "was refused");
    assert!(log.iter().any(|l| l.contains(&name_of(&pubs[1]))), "the missing party is named:\n{}", log.join("\n"));
    assert!(!log.iter().any(|l| l.contains("version 5 is now in force")));
    assert!(gw.terminate(Duration::from_secs(30)).success());
}

// ---------------------------------------------- what operators scrape (issue 4) --


impl Site {
    /// A configuration with librdkafka's statistics every 500 ms on both clients and
    /// the admin server on a free port; `extra` is appended at the top level.
    fn config_with_metrics(&self, name: &str, group: &str, extra: &str) -> PathBuf {
        let path = self.config(name, group, "  producer:\n    statistics.interval.ms: 500\n");
        let text = std::fs::read_to_string(&path).unwrap();
        let consumer = "    heartbeat.interval.ms: 500\n";
        assert!(text.contains(consumer));
        let text = text.replace(consumer, &format!("{consumer}    statistics.interval.ms: 500\n")) + "admin:\n  address: 127.0.0.1:0\n" + extra;
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Gateway {
    /// The admin address it logged.
    fn admin_address(&mut self) -> String {
        let log = self.wait_for_log(Duration::from_secs(30), "serving /metrics");
        let line = log.iter().find(|l| l.contains("serving /metrics")).unwrap();
        line.rsplit("http://").next().unwrap().split_whitespace().next().unwrap().to_string()
    }
}

/// `/metrics` scraped and parsed until `done` holds; the last scrape.
fn scrape_until(addr: &str, timeout: Duration, what: &str, done: impl Fn(&prometheus_parse::Scrape) -> bool) -> (prometheus_parse::Scrape, String) {
    let start = Instant::now();
    loop {
        let (status, text) = http_get(addr, "/metrics");
        assert_eq!(status, 200);
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text format");
        if done(&scrape) {
            return (scrape, text);
        }
        assert!(start.elapsed() < timeout, "no {what} on /metrics within {timeout:?}:\n{text}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn samples<'a>(scrape: &'a prometheus_parse::Scrape, name: &'a str) -> impl Iterator<Item = &'a prometheus_parse::Sample> + 'a {
    scrape.samples.iter().filter(move |s| s.metric == name)
}

fn value(s: &prometheus_parse::Sample) -> f64 {
    match s.value {
        prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
        _ => f64::NAN,
    }
}

/// librdkafka's statistics on `/metrics`, as the operations guide's alerts use them:
/// lag per assigned input partition (which falls to 0 once everything is done), the
/// producer's queue and the delivery errors, each with its Prometheus type.
#[test]
fn kafka_client_metrics_are_served_with_their_types_and_lag_falls_to_zero() {
    let _broker = shared_broker();
    let site = Site::new("stats", 2);
    let events = many_events(5);
    produce(&site.input, site.partitions, &events);
    let mut gw = Gateway::start("gateway", &site.config_with_metrics("gw", &unique("stats"), ""));
    let addr = gw.admin_address();
    let input = site.input.clone();
    let lag_of = |s: &prometheus_parse::Scrape, p: &str| {
        samples(s, "accord_kafka_consumer_lag").find(|x| x.labels.get("topic") == Some(input.as_str()) && x.labels.get("partition") == Some(p)).map(value)
    };
    let (scrape, text) = scrape_until(&addr, Duration::from_secs(90), "lag 0 on both input partitions", |s| {
        lag_of(s, "0") == Some(0.0) && lag_of(s, "1") == Some(0.0) && samples(s, "accord_kafka_producer_queue_messages").next().is_some()
    });
    let kind = |name: &str| samples(&scrape, name).next().map(|s| std::mem::discriminant(&s.value));
    let gauge = Some(std::mem::discriminant(&prometheus_parse::Value::Gauge(0.0)));
    let counter = Some(std::mem::discriminant(&prometheus_parse::Value::Counter(0.0)));
    assert_eq!(kind("accord_kafka_consumer_lag"), gauge, "{text}");
    assert_eq!(kind("accord_kafka_producer_queue_messages"), gauge, "{text}");
    assert_eq!(kind("accord_kafka_producer_queue_bytes"), gauge, "{text}");
    assert_eq!(kind("accord_kafka_delivery_errors_total"), counter, "{text}");
    assert_eq!(samples(&scrape, "accord_kafka_delivery_errors_total").map(value).sum::<f64>(), 0.0, "a healthy run has no delivery errors");
    // Labels from bounded sets: the configured input topic and its partition numbers.
    for s in samples(&scrape, "accord_kafka_consumer_lag") {
        assert_eq!(s.labels.get("topic"), Some(site.input.as_str()), "{text}");
        assert!(["0", "1"].contains(&s.labels.get("partition").unwrap_or("")), "{text}");
    }
    assert!(text.contains("# HELP accord_kafka_consumer_lag "), "described: {text}");
    // And SPEC 5's counters are there too, counting through Kafka: the lag counts from
    // the done watermark, so it may reach 0 up to one hand-over (500 ms) before them.
    scrape_until(&addr, Duration::from_millis(1500), "every record received, soon after lag 0", |s| {
        samples(s, "accord_events_received_total").map(value).sum::<f64>() as usize == events.len()
    });
    // The counters equal what the engine decides for these events, reason by reason
    // and purpose by purpose (a clean run: nothing consumed twice).
    let engine = common::example_engine();
    let mut expected = accord::report::tally::Tally::new(engine.agreement());
    let mut out = accord::engine::Outputs::default();
    for e in &events {
        let verdict = engine.process(e.as_bytes(), accord::event::Format::Json, &mut out);
        expected.add(&verdict, &out);
    }
    let (scrape, text) = scrape_until(&addr, Duration::from_secs(30), "every event counted", |s| {
        samples(s, "accord_events_forwarded_total").map(value).sum::<f64>() as u64 == expected.forwarded.iter().sum::<u64>()
    });
    for reason in accord::engine::DropReason::ALL {
        let got: f64 = samples(&scrape, "accord_events_dropped_total").filter(|x| x.labels.get("reason") == Some(reason.as_str())).map(value).sum();
        assert_eq!(got as u64, expected.dropped_for(reason), "{reason}: {text}");
    }
    for (i, p) in engine.agreement().purposes.iter().enumerate() {
        let got: f64 = samples(&scrape, "accord_events_forwarded_total").filter(|x| x.labels.get("purpose") == Some(p.name.as_str())).map(value).sum();
        assert_eq!(got as u64, expected.forwarded_to(i), "{}: {text}", p.name);
    }
    assert!(gw.terminate(Duration::from_secs(30)).success());
}

/// A purpose topic that refuses every batch (`max.message.bytes` below any output):
/// each failed delivery report is counted, the gateway keeps retrying, and the input
/// partition's lag stays above zero (its committed offset waits for the retries).
#[test]
fn failed_deliveries_are_counted() {
    let _broker = shared_broker();
    let site = Site::new("delivery-errors", 1);
    let refusing = site.topic("planning");
    set_max_message_bytes(&refusing, "64");
    produce(&site.input, 1, &example_events());
    let mut gw = Gateway::start("gateway", &site.config_with_metrics("gw", &unique("delivery-errors"), ""));
    let addr = gw.admin_address();
    let lag = |s: &prometheus_parse::Scrape| samples(s, "accord_kafka_consumer_lag").find(|x| x.labels.get("partition") == Some("0")).map(value);
    let (scrape, text) = scrape_until(&addr, Duration::from_secs(60), "delivery errors and a lag held up", |s| {
        samples(s, "accord_kafka_delivery_errors_total").map(value).sum::<f64>() > 0.0 && lag(s).is_some_and(|l| l > 0.0)
    });
    assert!(matches!(samples(&scrape, "accord_kafka_delivery_errors_total").next().unwrap().value, prometheus_parse::Value::Counter(_)), "{text}");
    assert!(gw.alive(), "the gateway keeps retrying");
    assert!(gw.log().iter().any(|l| l.contains("delivery to") && l.contains(&refusing)), "{}", gw.log().join("\n"));
    gw.kill_9();
}

/// A purpose topic that refuses every batch at first and then accepts them (issue 11:
/// an output's ticket is a number librdkafka carries, not an allocation): each failed
/// output is retried until it lands, none is lost, and the input's offsets are
/// committed to the end only once the retries have landed.
#[test]
fn failed_deliveries_are_retried_until_they_land_and_the_offsets_wait_for_them() {
    let _broker = shared_broker();
    let site = Site::new("delivery-retries", 1);
    let refusing = site.topic("planning");
    set_max_message_bytes(&refusing, "64");
    let events = many_events(60);
    let (expected, quarantined) = site.file_mode(&events);
    assert!(!expected[&refusing].is_empty(), "some events are for the refusing topic");
    produce(&site.input, 1, &events);
    let group = unique("delivery-retries");
    let config = site.config("gw", &group, "");
    let text = std::fs::read_to_string(&config).unwrap() + "  stuck_after: 2s\nadmin:\n  address: 127.0.0.1:0\n";
    std::fs::write(&config, text).unwrap();
    let mut gw = Gateway::start("gateway", &config);
    let addr = gw.admin_address();
    let log = gw.wait_for_log(Duration::from_secs(60), "delivery to");
    assert!(log.iter().any(|l| l.contains("delivery to") && l.contains(&refusing)), "{}", log.join("\n"));
    // The other topics take their outputs; the input's offset stays behind the first
    // record whose output was refused.
    std::thread::sleep(Duration::from_secs(2));
    let (_, committed, end) = site.offsets_committed(&group)[0];
    assert!(committed < end, "committed {committed} of {end} while outputs were refused");
    // Refused for longer than limits.stuck_after: /healthz fails, once said.
    let log = gw.wait_for_log(Duration::from_secs(30), "has kept failing for longer than limits.stuck_after");
    let (status, body) = http_get(&addr, "/healthz");
    assert_eq!((status, body.contains("stuck_after")), (503, true), "/healthz while a delivery is stuck: {body}");
    assert_eq!(http_get(&addr, "/readyz").0, 503);
    assert!(log.iter().any(|l| l.contains("has kept failing") && l.contains(&refusing)), "{}", log.join("\n"));
    set_max_message_bytes(&refusing, "1048588");
    let mut reader = site.read_all(Duration::from_secs(90), "every output once the topic accepts them", &expected, quarantined);
    reader.poll_for(Duration::from_millis(300));
    for (topic, want) in &expected {
        assert_nothing_missing(topic, &reader.payloads(topic), want);
    }
    // A retried output keeps its headers: taken back from its failed report, and sent
    // again with it.
    assert!(reader.recs.iter().any(|r| r.topic == refusing));
    assert_headers(&site, &reader.recs);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, committed, end) = site.offsets_committed(&group)[0];
        if committed == end {
            break;
        }
        assert!(Instant::now() < deadline, "committed {committed} of {end} after every output landed");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, body) = http_get(&addr, "/healthz");
    assert_eq!(status, 200, "/healthz once every retry landed: {body}");
    let log = gw.log();
    assert_eq!(log.iter().filter(|l| l.contains("has kept failing for longer")).count(), 1, "said once:\n{}", log.join("\n"));
    assert!(log.iter().any(|l| l.contains("no delivery is stuck any more")), "{}", log.join("\n"));
    assert!(gw.terminate(Duration::from_secs(30)).success());
}

// ------------------------------------------------- the audit topic (issue 4) --

fn verify_topic(config: &Path, topic: &str) -> (bool, String, String) {
    verify_topic_with(config, topic, &[])
}

fn verify_topic_with(config: &Path, topic: &str, extra: &[&str]) -> (bool, String, String) {
    let out = common::accord().args(["audit", "verify", "--config"]).arg(config).args(["--topic", topic, "--pub"]).arg(common::example("audit.pub")).args(extra).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Two gateways (replicas) copy their trails to one audit topic: `accord audit verify
/// --topic` checks each trail's chain and checkpoint signatures, like the file's. A copy
/// with one byte changed, or a record deleted, fails at that record's sequence number;
/// a copy cut at its end is open (issue 13); a topic of several partitions is refused.
#[test]
fn the_audit_topic_holds_each_trail_and_verify_finds_tampering() {
    let _broker = shared_broker();
    let site = Site::new("audit", 2);
    let [audit, changed, deleted, wide, cut] = ["audit", "audit-changed", "audit-deleted", "audit-wide", "audit-cut"].map(|t| format!("{t}.{}", site.id));
    create_topics(&[(&audit, 1), (&changed, 1), (&deleted, 1), (&wide, 2), (&cut, 1)]);
    let group = unique("audit");
    let trail = |name: &str| site.dir.path().join(format!("{name}.jsonl"));
    let config = |name: &str| {
        let path = site.config(name, &group, "");
        let text = std::fs::read_to_string(&path).unwrap() + &format!("audit:\n  file: {}\n  key: {}\n  topic: {audit}\n  interval: 1s\n", trail(name).display(), common::example("audit.key").display());
        std::fs::write(&path, text).unwrap();
        path
    };
    let (config_a, config_b) = (config("a"), config("b"));
    let mut a = Gateway::start("gateway a", &config_a);
    let mut b = Gateway::start("gateway b", &config_b);
    // Each holds one input partition before the events come, so both count some.
    let start = Instant::now();
    while a.holds().len() != 1 || b.holds().len() != 1 {
        assert!(start.elapsed() < Duration::from_secs(60), "the two gateways did not share the partitions: a {:?}, b {:?}", a.holds(), b.holds());
        std::thread::sleep(Duration::from_millis(100));
    }
    produce(&site.input, site.partitions, &many_events(3));
    let counted = |name: &str| std::fs::read_to_string(trail(name)).unwrap_or_default().contains("\"kind\":\"counters\"");
    let start = Instant::now();
    while !(counted("a") && counted("b")) {
        assert!(start.elapsed() < Duration::from_secs(60), "no counters record in both trails");
        assert!(a.alive() && b.alive(), "a gateway exited:\n{}\n{}", a.log().join("\n"), b.log().join("\n"));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(a.terminate(Duration::from_secs(30)).success());
    assert!(b.terminate(Duration::from_secs(30)).success());

    let lines = |name: &str| -> Vec<String> { std::fs::read_to_string(trail(name)).unwrap().lines().map(str::to_string).collect() };
    let (lines_a, lines_b) = (lines("a"), lines("b"));
    for l in [&lines_a, &lines_b] {
        assert!(l[0].contains("\"kind\":\"gateway_started\"") && l[l.len() - 2].contains("\"kind\":\"gateway_stopped\""), "{l:?}");
        assert!(l.last().unwrap().contains("\"kind\":\"checkpoint\""), "the stop is signed: {l:?}");
    }
    let (ok, stdout, stderr) = verify_topic(&config_a, &audit);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains(&format!("2 trail(s), {} records verified", lines_a.len() + lines_b.len())), "{stdout}");
    for (name, l) in [("a", &lines_a), ("b", &lines_b)] {
        let (file, count) = (format!("/{name}.jsonl from offset"), format!(": {} records, every link verified", l.len()));
        assert!(stdout.lines().any(|line| line.contains(&file) && line.contains(&count) && line.contains("closed")), "trail {name} with all its records, closed: {stdout}");
    }
    // The topic holds each trail byte for byte as its file.
    let mut reader = Reader::new(&[audit.as_str()], false);
    reader.until(Duration::from_secs(30), "the audit records", |r| r.len() >= lines_a.len() + lines_b.len());
    let copied = |name: &str| -> Vec<String> {
        reader.recs.iter().filter(|r| r.key.as_deref().is_some_and(|k| k.ends_with(format!("/{name}.jsonl").as_bytes()))).map(|r| r.payload.clone()).collect()
    };
    assert_eq!(copied("a"), lines_a);
    assert_eq!(copied("b"), lines_b);

    // One byte changed in record 2 of a copy (records without a key: one trail).
    let mut bytes: Vec<Vec<u8>> = lines_a.iter().map(|l| l.clone().into_bytes()).collect();
    let middle = bytes[2].len() / 2;
    bytes[2][middle] ^= 0x01;
    produce_bytes(&changed, 1, &bytes);
    let (ok, _, stderr) = verify_topic(&config_a, &changed);
    assert!(!ok);
    assert!(stderr.contains("offset 2: broken at sequence number 2: record 2"), "{stderr}");
    // Record 1 deleted.
    let mut bytes: Vec<Vec<u8>> = lines_a.iter().map(|l| l.clone().into_bytes()).collect();
    bytes.remove(1);
    produce_bytes(&deleted, 1, &bytes);
    let (ok, _, stderr) = verify_topic(&config_a, &deleted);
    assert!(!ok);
    assert!(stderr.contains("broken at sequence number 1: record 1 is missing or out of order"), "{stderr}");
    // The last record (the stop's checkpoint) cut: open, refused unless --open.
    let bytes: Vec<Vec<u8>> = lines_a[..lines_a.len() - 1].iter().map(|l| l.clone().into_bytes()).collect();
    produce_bytes(&cut, 1, &bytes);
    let (ok, _, stderr) = verify_topic(&config_a, &cut);
    assert!(!ok);
    let following = bytes.iter().rev().take_while(|l| !String::from_utf8_lossy(l).contains("\"kind\":\"checkpoint\"")).count();
    assert!(stderr.contains(&format!("open: the last record is not a signed checkpoint; {following} record(s) follow the last")), "{stderr}");
    let (ok, stdout, stderr) = verify_topic_with(&config_a, &cut, &["--open"]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("head: "), "{stdout}");
    // Two partitions: no order between them, refused.
    let (ok, _, stderr) = verify_topic(&config_a, &wide);
    assert!(!ok);
    assert!(stderr.contains("has 2 partitions; it must have exactly one"), "{stderr}");
}

// ------------------------------------------------ suppressions (issue 14) --

/// Creates a compacted topic, as the suppressions topic must be.
fn create_compacted(topic: &str, partitions: i32) {
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1)).set("cleanup.policy", "compact");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in futures::executor::block_on(admin().create_topics(&[new], &opts)).expect("topic created") {
        r.unwrap_or_else(|(t, e)| panic!("cannot create topic {t}: {e}"));
    }
}

/// A clocking event for payroll (identified: the worker is in the clear in the output).
fn clocking(id: &str, worker: &str) -> String {
    format!(r#"{{"event_id":"{id}","source":"access_pass","device_id":"rdr-ts-1","subject_id":"{worker}","category":"clocking","occurred_at":"2026-03-03T08:00:00+01:00","attributes":{{"turnstile":"T1","direction":"in"}}}}"#)
}

/// `accord_suppressions` on a gateway's `/metrics`, if served yet.
fn suppressions_gauge(addr: &str) -> Option<f64> {
    let (status, text) = http_get(addr, "/metrics");
    if status != 200 {
        return None;
    }
    text.lines().find_map(|l| l.strip_prefix("accord_suppressions ")).and_then(|v| v.trim().parse().ok())
}

/// Waits until every gateway's gauge reads `n`; the time each took, from `since`.
fn gauges_reach(addrs: &[String], n: f64, since: Instant) -> Vec<Duration> {
    addrs
        .iter()
        .map(|a| {
            loop {
                if suppressions_gauge(a) == Some(n) {
                    return since.elapsed();
                }
                assert!(since.elapsed() < Duration::from_secs(10), "accord_suppressions on {a} did not reach {n}");
                std::thread::sleep(Duration::from_millis(2));
            }
        })
        .collect()
}

/// SPEC 2.7 in Kafka mode, across two replicas and a restart: an entry written while
/// events flow is honoured for every record produced (so processed) from 1 s after the
/// broker acknowledged it, a lift ends it as fast, a restarted replica honours it from
/// its first record, and the topic holds no raw identifier. The delays are printed.
#[test]
fn suppressions_topic_is_honoured_within_a_second_on_every_replica_and_after_a_restart() {
    use accord::engine::suppress::Entry;
    use accord::pseudonym::{Key, Pseudonymiser};
    let _broker = shared_broker();
    let site = Site::new("suppress", 4);
    let topic = format!("suppressions.{}", site.id);
    create_compacted(&topic, 2);
    let group = unique("suppress");
    let extra = format!("suppressions:\n  topic: {topic}\n");
    let (config_a, config_b) = (site.config_with_metrics("a", &group, &extra), site.config_with_metrics("b", &group, &extra));
    let kafka = accord::config::Config::load(&config_a).unwrap().kafka;
    let (worker, other) = ("emp-00492", "emp-00448");
    let pseudonymiser = Pseudonymiser::new(Key::new(&common::demo_key(), DEMO_KEY_ID).unwrap());
    let subject = pseudonymiser.suppression_subject(worker);
    let entry = Entry::parse(format!(r#"{{"subject":"{subject}","reason":"objection"}}"#).as_bytes()).unwrap();

    let mut a = Gateway::start("gateway a", &config_a);
    let mut b = Gateway::start("gateway b", &config_b);
    let addrs = [a.admin_address(), b.admin_address()];
    let start = Instant::now();
    while a.holds().is_empty() || b.holds().is_empty() {
        assert!(start.elapsed() < Duration::from_secs(60), "the two gateways did not share the partitions");
        std::thread::sleep(Duration::from_millis(50));
    }
    let payroll = site.topic("payroll");
    let mut reader = Reader::new(&[payroll.as_str()], false);

    // Events flow: one for each worker every 5 ms, each id holding its send time (ms).
    let t0 = Instant::now();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producer_thread = {
        let (stop, input, partitions) = (stop.clone(), site.input.clone(), site.partitions);
        std::thread::spawn(move || {
            let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new().set("bootstrap.servers", bootstrap()).set("linger.ms", "0").create().unwrap();
            let mut sent = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let ms = t0.elapsed().as_millis();
                for (w, tag) in [(worker, "w"), (other, "x")] {
                    let payload = clocking(&format!("{tag}-{ms}-{sent}"), w);
                    let record = BaseRecord::<(), str>::to(&input).payload(&payload).partition((sent % partitions as usize) as i32);
                    producer.send(record).map_err(|(e, _)| e).unwrap();
                    sent += 1;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            producer.flush(Duration::from_secs(30)).unwrap();
            sent
        })
    };
    std::thread::sleep(Duration::from_secs(3));
    accord::run::kafka::suppressions::write(&kafka, &topic, &entry, false).unwrap();
    let acked = t0.elapsed().as_millis();
    let honoured = gauges_reach(&addrs, 1.0, Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    // The lift may be in force from the moment it is sent; the entry until then.
    let lifting = t0.elapsed().as_millis();
    accord::run::kafka::suppressions::write(&kafka, &topic, &entry, true).unwrap();
    let lifted = t0.elapsed().as_millis();
    let lifted_in = gauges_reach(&addrs, 0.0, Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = producer_thread.join().unwrap();
    reader.until(Duration::from_secs(60), "every other worker's output", |recs| recs.iter().filter(|r| r.payload.contains(other)).count() * 2 >= sent);

    // Which of the worker's events went out, by their send time.
    let sent_at = |r: &Rec| -> u128 {
        let v: serde_json::Value = serde_json::from_str(&r.payload).unwrap();
        v["event_id"].as_str().unwrap().split('-').nth(1).unwrap().parse().unwrap()
    };
    let out: Vec<u128> = reader.recs.iter().filter(|r| r.payload.contains(worker)).map(sent_at).collect();
    let leaked: Vec<u128> = out.iter().copied().filter(|t| *t >= acked + 1000 && *t < lifting).collect();
    assert!(leaked.is_empty(), "{} of the worker's events sent 1 s after the acknowledgement (at {acked} ms) still left: {leaked:?}", leaked.len());
    let last_leak = out.iter().copied().filter(|t| *t >= acked && *t < lifting).max();
    let after_lift: Vec<u128> = out.iter().copied().filter(|t| *t >= lifted + 1000).collect();
    assert!(!after_lift.is_empty() && out.iter().any(|t| *t < acked), "the worker's events flow before the entry and after the lift");
    let first_after_lift = out.iter().copied().filter(|t| *t >= lifted).min().unwrap();
    eprintln!(
        "suppression: acknowledged at {acked} ms; gauges of both replicas set after {honoured:?}; last of the worker's events out was sent {} ms after the acknowledgement; \
         lift sent at {lifting} ms and acknowledged at {lifted} ms, gauges after {lifted_in:?}, first event out again sent {} ms after the lift",
        last_leak.map_or(0, |t| t as i128 - acked as i128),
        first_after_lift as i128 - lifted as i128
    );

    // A restart: the entry is written while no replica runs, then a backlog waits; the
    // new replica reads the topic before its first record, so none of it leaves.
    a.kill_9();
    b.kill_9();
    accord::run::kafka::suppressions::write(&kafka, &topic, &entry, false).unwrap();
    let backlog: Vec<String> = (0..200).map(|i| clocking(&format!("{}-{i}", if i % 2 == 0 { "wb" } else { "xb" }), if i % 2 == 0 { worker } else { other })).collect();
    produce(&site.input, site.partitions, &backlog);
    let mut c = Gateway::start("gateway c", &config_a);
    reader.until(Duration::from_secs(90), "the backlog of the other worker", |recs| recs.iter().filter(|r| r.payload.contains("\"xb-")).count() >= 100);
    reader.poll_for(Duration::from_secs(1));
    assert_eq!(reader.recs.iter().filter(|r| r.payload.contains("\"wb-")).count(), 0, "a restarted replica let the worker's backlog out");
    assert!(c.terminate(Duration::from_secs(30)).success());

    // The topic: keys and values hold the keyed digest, never the worker's id.
    let mut topic_reader = Reader::new(&[topic.as_str()], false);
    topic_reader.until(Duration::from_secs(30), "the suppressions topic", |recs| recs.len() >= 3);
    for r in &topic_reader.recs {
        let key = String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned();
        assert_eq!(key, format!("{subject}/objection"));
        assert!(!key.contains(worker) && !r.payload.contains(worker) && !r.payload.contains("emp-"), "{key} {}", r.payload);
    }
    assert!(topic_reader.recs.iter().any(|r| r.bytes.is_empty()), "the lift is a tombstone");
}

// ------------------------------------------- fresh metrics in Kafka mode (issue 13) --

/// Issue 13: with librdkafka's statistics at the gateway's default, one second after
/// every output is seen the counters hold every record and the lag gauge is 0; after a
/// reload, `accord_agreement_info` names the new version as soon as its first output
/// is on the topic.
#[test]
fn kafka_metrics_are_fresh_within_a_second_and_info_switches_with_the_first_output() {
    let _broker = shared_broker();
    let site = Site::new("fresh", 1);
    let events = example_events();
    let (expected, _) = site.file_mode(&events);
    let per_copy: usize = expected.values().map(Vec::len).sum();
    let outputs = site.outputs();
    let mut reader = Reader::new(&outputs.iter().map(String::as_str).collect::<Vec<_>>(), false);
    let path = site.config("gw", &unique("fresh"), "");
    let text = std::fs::read_to_string(&path).unwrap() + "admin:\n  address: 127.0.0.1:0\n";
    std::fs::write(&path, text).unwrap();
    let mut gw = Gateway::start("gateway", &path);
    let addr = gw.admin_address();
    // Assigned, and librdkafka's first statistics in (the gauge exists).
    scrape_until(&addr, Duration::from_secs(60), "a lag gauge", |s| samples(s, "accord_kafka_consumer_lag").next().is_some());
    produce(&site.input, 1, &events);
    reader.until(Duration::from_secs(90), "every output", |r| r.len() >= per_copy);
    std::thread::sleep(Duration::from_millis(1200));
    let (_, text) = http_get(&addr, "/metrics");
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    assert_eq!(samples(&scrape, "accord_events_received_total").map(value).sum::<f64>() as usize, events.len(), "{text}");
    assert_eq!(samples(&scrape, "accord_events_forwarded_total").map(value).sum::<f64>() as usize, per_copy, "{text}");
    let lag: Vec<f64> = samples(&scrape, "accord_kafka_consumer_lag").map(value).collect();
    assert_eq!(lag, [0.0], "every record done a second ago: {text}");

    let v4 = std::fs::read_to_string(&site.agreement).unwrap();
    std::fs::write(&site.agreement, v4.replace("version: 4", "version: 5")).unwrap();
    gw.wait_for_log(Duration::from_secs(20), "version 5 is now in force");
    let first: Vec<String> = events.iter().filter(|e| expected.values().flatten().any(|o| o.contains(&serde_json::from_str::<serde_json::Value>(e).unwrap()["event_id"].as_str().unwrap().to_string()))).take(1).cloned().collect();
    produce(&site.input, 1, &first);
    reader.until(Duration::from_secs(90), "an output of version 5", |r| r.iter().any(|x| x.payload.contains("\"version\":5")));
    let (_, text) = http_get(&addr, "/metrics");
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let info = |version: &str| samples(&scrape, "accord_agreement_info").filter(|s| s.labels.get("version") == Some(version)).map(value).sum::<f64>();
    assert_eq!((info("4"), info("5")), (0.0, 1.0), "the info gauge switched with the first output of version 5: {text}");
    assert!(gw.terminate(Duration::from_secs(30)).success());
}

/// Issue 13, exactly-once: counters do not wait for the transaction's commit. With a
/// commit every 10 s, every record is counted on `/metrics` long before its outputs
/// are committed (a `read_committed` reader sees none yet).
#[test]
fn exactly_once_counters_do_not_wait_for_the_commit() {
    let _broker = shared_broker();
    let site = Site::new("eosfresh", 1);
    let events = example_events();
    let txid = unique("eosfresh-tx");
    let path = site.config("gw", &unique("eosfresh"), &format!("  delivery: exactly_once\n  transactional_id: {txid}\n"));
    let text = std::fs::read_to_string(&path).unwrap().replace("commit_interval: 300ms", "commit_interval: 10s") + "admin:\n  address: 127.0.0.1:0\n";
    assert!(text.contains("commit_interval: 10s"));
    std::fs::write(&path, text).unwrap();
    let mut gw = Gateway::start("gateway", &path);
    let addr = gw.admin_address();
    scrape_until(&addr, Duration::from_secs(60), "a lag gauge (assigned)", |s| samples(s, "accord_kafka_consumer_lag").next().is_some());
    let outputs = site.outputs();
    let mut reader = Reader::new(&outputs.iter().map(String::as_str).collect::<Vec<_>>(), true);
    let produced = Instant::now();
    produce(&site.input, 1, &events);
    scrape_until(&addr, Duration::from_secs(8), "every record counted", |s| samples(s, "accord_events_received_total").map(value).sum::<f64>() as usize == events.len());
    let counted = produced.elapsed();
    reader.poll_for(Duration::from_millis(500));
    assert!(reader.recs.is_empty(), "counted {counted:?} after producing, and the transaction is not committed yet: {} outputs visible", reader.recs.len());
    assert!(gw.terminate(Duration::from_secs(30)).success());
}

/// Issue 13: records that trickle in without a pause (one every 60 ms) are counted
/// within a second: a second after the 30th was produced, while more keep coming, at
/// least 30 are on `/metrics`.
#[test]
fn a_trickle_of_records_is_counted_within_a_second() {
    let _broker = shared_broker();
    let site = Site::new("trickle", 1);
    let path = site.config("gw", &unique("trickle"), "");
    let text = std::fs::read_to_string(&path).unwrap() + "admin:\n  address: 127.0.0.1:0\n";
    std::fs::write(&path, text).unwrap();
    let mut gw = Gateway::start("gateway", &path);
    let addr = gw.admin_address();
    scrape_until(&addr, Duration::from_secs(60), "a lag gauge (assigned)", |s| samples(s, "accord_kafka_consumer_lag").next().is_some());
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new().set("bootstrap.servers", bootstrap()).set("linger.ms", "0").create().expect("a producer");
    let events = many_events(1);
    let received = || {
        let (_, text) = http_get(&addr, "/metrics");
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
        samples(&scrape, "accord_events_received_total").map(value).sum::<f64>() as usize
    };
    let mut thirtieth = None;
    let mut checked = None;
    for (i, e) in events.iter().cycle().take(60).enumerate() {
        producer.send(BaseRecord::<(), str>::to(&site.input).payload(e.as_str()).partition(0)).map_err(|(e, _)| e).unwrap();
        producer.flush(Duration::from_secs(5)).unwrap();
        if i + 1 == 30 {
            thirtieth = Some(Instant::now());
        }
        if let Some(t) = thirtieth.filter(|t| checked.is_none() && t.elapsed() >= Duration::from_secs(1)) {
            checked = Some((received(), t.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(60));
    }
    let (count, after) = checked.expect("the trickle lasted more than a second after the 30th record");
    assert!(count >= 30, "{after:?} after the 30th record was produced, only {count} were counted");
    assert!(gw.terminate(Duration::from_secs(30)).success());
}

// ------------------------------------------- several enforcing threads (issue 11) --

/// Issue 11: with `limits.threads: 3` the records of six partitions are enforced in
/// batches over three threads, and still every output arrives once, the outputs of
/// each input partition come out in that partition's order (on every output
/// partition), and the offsets committed are the end of every input partition.
#[test]
fn issue_11_threads_enforce_in_parallel_keeping_each_partitions_order_and_offsets() {
    let _broker = shared_broker();
    let site = Site::new("threads", 6);
    let events = many_events(30);
    let (expected, quarantined) = site.file_mode(&events);
    // Record i goes to input partition i % 6, as its (i / 6)th record.
    // (Some example events are malformed on purpose: their ids are read as text.)
    let id_of = |e: &str| -> Option<String> {
        let rest = &e[e.find("\"event_id\"")? + "\"event_id\"".len()..];
        let rest = &rest[rest.find('"')? + 1..];
        Some(rest[..rest.find('"')?].to_string())
    };
    // An id that several events share (the examples repeat a few) places none of them.
    let mut seen: BTreeMap<String, Option<usize>> = BTreeMap::new();
    for (i, e) in events.iter().enumerate() {
        if let Some(id) = id_of(e) {
            seen.entry(id).and_modify(|p| *p = None).or_insert(Some(i));
        }
    }
    let place: BTreeMap<String, usize> = seen.into_iter().filter_map(|(id, i)| Some((id, i?))).collect();
    assert!(place.len() > events.len() * 9 / 10, "{} of {} events placed", place.len(), events.len());
    // All input is there before the gateway starts, so its polls find full batches.
    produce(&site.input, site.partitions, &events);
    let group = unique("threads");
    let path = site.config("gw", &group, "");
    let text = std::fs::read_to_string(&path).unwrap() + "  threads: 3\n";
    assert!(text.ends_with("limits:\n  commit_interval: 300ms\n  drain_timeout: 10s\n  threads: 3\n"), "{text}");
    std::fs::write(&path, text).unwrap();
    let mut gw = Gateway::start("gateway", &path);
    let reader = site.read_all(Duration::from_secs(120), "every output and quarantine note", &expected, quarantined);
    for (topic, want) in &expected {
        assert_same_outputs(topic, &reader.payloads(topic), want);
    }
    assert_eq!(count_in(&reader.recs, &site.quarantine), quarantined);
    assert!(expected.values().map(Vec::len).sum::<usize>() > 5000, "enough outputs to fill many batches");

    // Per output topic and partition, the outputs of each input partition in input order.
    let (mut checked, mut unplaced) = (0, 0);
    for topic in site.outputs() {
        for out_partition in 0..2 {
            let mut last: BTreeMap<usize, usize> = BTreeMap::new();
            for r in reader.recs.iter().filter(|r| r.topic == topic && r.partition == out_partition) {
                let v: serde_json::Value = serde_json::from_str(&r.payload).unwrap();
                let id = v["event_id"].as_str().unwrap_or_else(|| panic!("an output without its event id: {}", r.payload));
                let Some(&i) = place.get(id) else {
                    unplaced += 1;
                    continue;
                };
                let (input_partition, seq) = (i % 6, i / 6);
                if let Some(before) = last.insert(input_partition, seq) {
                    assert!(before < seq, "{topic}[{out_partition}]: input partition {input_partition}'s record {seq} came after its record {before}");
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked + unplaced, expected.values().map(Vec::len).sum::<usize>());
    assert!(unplaced * 20 < checked, "{unplaced} outputs not placed, {checked} checked");
    assert_headers(&site, &reader.recs);

    // Committed: the end of every input partition, while the gateway still runs.
    site.wait_for_the_end_committed(&group, Duration::from_secs(30));
    assert!(gw.terminate(Duration::from_secs(30)).success());
    let log = gw.log().join("\n");
    assert!(log.contains("enforcing on 3 threads"), "{log}");
    let spread = log.lines().find_map(|l| l.split_once(" of them spread over ")).and_then(|(before, _)| before.rsplit(' ').next()?.parse::<u64>().ok());
    assert!(spread.is_some_and(|n| n > 0), "some batches were enforced on several threads: {log}");
    assert!(headers_sent_again(&log).is_some_and(|n| n > 1000), "most outputs went out with earlier outputs' header lists: {log}");
    let committed = site.offsets_committed(&group);
    assert!(committed.iter().all(|(_, c, high)| c == high && *high > 0), "{committed:?}");
}

/// With two threads a gateway produces one batch while it enforces the next. A
/// rebalance that takes partitions from it while records stream in loses no output,
/// and the group commits the end of every input partition. (Whether the revoke finds
/// a batch in hand is up to timing; the log line printed at the end says.)
#[test]
fn issue_11_a_rebalance_mid_stream_with_batches_in_hand_loses_nothing() {
    rebalance_mid_stream_with_batches_in_hand("inhand", None);
}

/// The same in exactly-once mode, where the batches are enforced over the threads too:
/// a `read_committed` reader sees every output of file mode exactly once, though the
/// revoke commits the open transaction while a batch may be in hand.
#[test]
fn issue_11_exactly_once_over_threads_through_a_rebalance_each_output_once() {
    rebalance_mid_stream_with_batches_in_hand("eosinhand", Some("exactly_once"));
}

fn rebalance_mid_stream_with_batches_in_hand(name: &str, delivery: Option<&str>) {
    let _broker = shared_broker();
    let site = Site::new(name, 6);
    let events = many_events(80);
    let (expected, _) = site.file_mode(&events);
    let total: usize = expected.values().map(Vec::len).sum();
    let (backlog, stream) = events.split_at(events.len() / 4);
    produce(&site.input, site.partitions, backlog);
    let group = unique(name);
    let config = |gateway: &str| {
        let kafka = delivery.map_or(String::new(), |d| format!("  delivery: {d}\n  transactional_id: accord-test-{}-{gateway}\n", site.id));
        let path = site.config(gateway, &group, &kafka);
        let text = std::fs::read_to_string(&path).unwrap() + "  threads: 2\n";
        std::fs::write(&path, text).unwrap();
        path
    };
    let (config_a, config_b) = (config("a"), config("b"));
    let outputs = site.outputs();
    let exactly_once = delivery.is_some();
    let mut reader = Reader::new(&outputs.iter().map(String::as_str).collect::<Vec<_>>(), exactly_once);
    let mut a = Gateway::start("gateway a", &config_a);
    reader.until(Duration::from_secs(90), "gateway a's first outputs", |recs| recs.len() >= total / 20);
    // The rest arrives in slices while gateway b joins.
    let (input, partitions) = (site.input.clone(), site.partitions);
    let slices: Vec<Vec<String>> = stream.chunks(stream.len().div_ceil(20)).map(<[String]>::to_vec).collect();
    let feeder = std::thread::spawn(move || {
        for slice in slices {
            produce(&input, partitions, &slice);
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let mut b = Gateway::start("gateway b", &config_b);
    let start = Instant::now();
    while b.holds().is_empty() {
        assert!(start.elapsed() < Duration::from_secs(60), "gateway b got no partition: a {:?}", a.holds());
        assert!(a.alive() && b.alive(), "a gateway exited");
        std::thread::sleep(Duration::from_millis(100));
    }
    feeder.join().unwrap();
    reader.until(Duration::from_secs(120), "every expected output", all_there(&expected));
    site.wait_for_the_end_committed(&group, Duration::from_secs(30));
    assert!(a.terminate(Duration::from_secs(30)).success());
    assert!(b.terminate(Duration::from_secs(30)).success());
    if exactly_once {
        // Whatever else was committed would be readable now.
        reader.poll_for(Duration::from_secs(2));
    }
    for (topic, want) in &expected {
        if exactly_once {
            assert_same_outputs(topic, &reader.payloads(topic), want);
        } else {
            assert_nothing_missing(topic, &reader.payloads(topic), want);
        }
    }
    assert_headers(&site, &reader.recs);
    let log = a.log().join("\n");
    assert!(headers_sent_again(&log).is_some_and(|n| n > 0), "gateway a sent header lists again: {log}");
    assert!(log.contains("enforcing on 2 threads"), "{log}");
    assert!(log.lines().any(|l| l.contains("revoked sensors.")), "gateway b took partitions from gateway a: {log}");
    let spread = log.lines().find_map(|l| l.split_once(" of them spread over ")).and_then(|(before, _)| before.rsplit(' ').next()?.parse::<u64>().ok());
    assert!(spread.is_some_and(|n| n > 0), "gateway a spread batches over its threads: {log}");
    let let_go: Vec<&str> = log.lines().filter(|l| l.contains("let go of")).collect();
    eprintln!("rebalance mid-stream ({}): gateway a held {:?} at the end; {} let-go note(s): {let_go:?}", delivery.unwrap_or("at_least_once"), a.holds(), let_go.len());
}

// ------------------------------------------- as platform teams run it (issue 12) --

mod platform;
