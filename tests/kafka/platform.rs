//! Kafka as platform teams run it (issue 12): every codec in and out, OIDC and GSSAPI
//! built in, and no silent stalls.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;

use super::*;
use crate::common::{self, http_get};

const CODECS: [&str; 4] = ["gzip", "snappy", "lz4", "zstd"];

/// Sends `records` to partition 0 of `topic` with the given `compression.type`.
fn produce_compressed(topic: &str, codec: &str, records: &[String]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("linger.ms", "5")
        .set("compression.type", codec)
        .create()
        .unwrap_or_else(|e| panic!("a {codec} producer: {e}"));
    for r in records {
        producer.send(BaseRecord::<(), str>::to(topic).payload(r.as_str()).partition(0)).map_err(|(e, _)| e).expect("queued");
    }
    producer.flush(Duration::from_secs(60)).expect("test input produced");
}

/// The codecs of the record batches in partition 0 of `topic`, as the broker stored
/// them (Kafka's own DumpLogSegments on the segment file).
fn codecs_on_disk(topic: &str) -> BTreeSet<String> {
    let dir = std::env::var("ACCORD_KAFKA_DIR").unwrap_or_else(|_| {
        panic!("this test reads the broker's segment files: set ACCORD_KAFKA_DIR to the run directory of a broker started with scripts/kafka.sh (scripts/test.sh does)")
    });
    let segment = Path::new(&dir).join("data").join(format!("{topic}-0")).join("00000000000000000000.log");
    assert!(segment.exists(), "no segment file {}", segment.display());
    let out = Command::new(common::root().join("scripts/kafka.sh"))
        .args(["tool", "kafka.tools.DumpLogSegments", "--files"])
        .arg(&segment)
        .output()
        .expect("scripts/kafka.sh runs");
    assert!(out.status.success(), "DumpLogSegments failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    text.split("compresscodec: ").skip(1).filter_map(|rest| rest.split_whitespace().next()).map(str::to_ascii_lowercase).collect()
}

/// SPEC 4: every codec Kafka has is read and can be written (`compression.type: zstd`
/// and the others accepted in the configuration). The input holds batches
/// of all four codecs; for each codec, a gateway configured with it writes outputs
/// that equal file mode's, and the broker holds them compressed with that codec.
#[test]
fn every_codec_is_read_and_written() {
    let _broker = shared_broker();
    for codec in CODECS {
        let site = Site::new(&format!("codec-{codec}"), 1);
        let events = example_events();
        let (expected, quarantined) = site.file_mode(&events);
        let quarter = events.len().div_ceil(4);
        for (chunk, c) in events.chunks(quarter).zip(CODECS) {
            produce_compressed(&site.input, c, chunk);
        }
        assert_eq!(codecs_on_disk(&site.input), CODECS.iter().map(|c| c.to_string()).collect(), "the input holds batches of every codec");
        let config = site.config("gw", &unique("codec"), &format!("  producer:\n    compression.type: {codec}\n"));
        let mut gw = Gateway::start(codec, &config);
        let mut topics = site.outputs();
        topics.push(site.quarantine.clone());
        let mut reader = Reader::new(&topics.iter().map(String::as_str).collect::<Vec<_>>(), false);
        let q = site.quarantine.clone();
        reader.until(Duration::from_secs(90), "every output", |recs| {
            expected.iter().all(|(t, v)| count_in(recs, t) >= v.len()) && count_in(recs, &q) >= quarantined
        });
        for (topic, want) in &expected {
            assert_same_outputs(topic, &reader.payloads(topic), want);
        }
        assert!(gw.terminate(Duration::from_secs(30)).success(), "{codec}: the gateway stops cleanly");
        let busiest = expected.iter().max_by_key(|(_, v)| v.len()).map(|(t, _)| t.clone()).unwrap();
        // Outputs went to either partition of the topic; partition 0 of the busiest holds some.
        assert_eq!(codecs_on_disk(&busiest), BTreeSet::from([codec.to_string()]), "outputs written with {codec}");
    }
}

/// The librdkafka built into the gateway has every codec, GSSAPI (Cyrus SASL) and OIDC
/// (libcurl): a client with `sasl.oauthbearer.method: oidc` fetches its token from the
/// configured endpoint, and one with `sasl.mechanism: GSSAPI` is accepted.
#[test]
fn oidc_tokens_are_fetched_and_gssapi_is_built_in() {
    let native = ClientConfig::new().create_native_config().unwrap();
    let features = native.get("builtin.features").unwrap();
    for f in ["gzip", "snappy", "lz4", "zstd", "sasl_gssapi", "sasl_oauthbearer", "oidc"] {
        assert!(features.split(',').any(|x| x == f), "librdkafka is built without {f}: {features}");
    }

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}/token", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("librdkafka calls the token endpoint");
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&request).contains("grant_type") {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        // A token librdkafka accepts: a JWT with `sub` and `exp`.
        let b64 = |s: &str| base64url(s.as_bytes());
        let jwt = format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(r#"{"sub":"accord","exp":4102444800,"iat":1700000000}"#));
        let body = format!(r#"{{"access_token":"{jwt}","token_type":"bearer","expires_in":3600}}"#);
        let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        String::from_utf8_lossy(&request).into_owned()
    });
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", "127.0.0.1:9")
        .set("group.id", "oidc")
        .set("security.protocol", "sasl_plaintext")
        .set("sasl.mechanism", "OAUTHBEARER")
        .set("sasl.oauthbearer.method", "oidc")
        .set("sasl.oauthbearer.client.id", "accord")
        .set("sasl.oauthbearer.client.secret", "not-a-secret")
        .set("sasl.oauthbearer.token.endpoint.url", &endpoint)
        .create()
        .expect("an OIDC client is accepted");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !server.is_finished() {
        assert!(Instant::now() < deadline, "librdkafka never called the OIDC token endpoint");
        let _ = consumer.poll(Duration::from_millis(100));
    }
    let request = server.join().unwrap();
    assert!(request.starts_with("POST /token"), "{request}");
    assert!(request.contains("grant_type=client_credentials"), "{request}");

    let gssapi: Result<BaseConsumer, _> = ClientConfig::new()
        .set("bootstrap.servers", "127.0.0.1:9")
        .set("group.id", "gssapi")
        .set("security.protocol", "sasl_plaintext")
        .set("sasl.mechanism", "GSSAPI")
        .set("sasl.kerberos.kinit.cmd", "true")
        .create();
    assert!(gssapi.is_ok(), "GSSAPI is refused: {:?}", gssapi.err());
}

/// SPEC 4: a gateway whose input topic does not exist says so once, counts it, answers
/// 503 on `/readyz` naming the cause, and becomes ready and consumes once the topic
/// exists, saying so once.
#[test]
fn an_unknown_input_topic_stops_readiness_until_it_exists() {
    let _broker = shared_broker();
    let site = Site::new("stall", 1);
    let missing = format!("missing.{}", site.id);
    let config = site.config_with_metrics("gw", &unique("stall"), "");
    let text = std::fs::read_to_string(&config).unwrap().replace(&format!("topics: [{}]", site.input), &format!("topics: [{missing}]"));
    // Not live is for what a restart may free: a missing topic is not that.
    std::fs::write(&config, text.replace("limits:\n", "limits:\n  stuck_after: 2s\n")).unwrap();
    let mut gw = Gateway::start("gateway", &config);
    let addr = gw.admin_address();
    let (scrape, text) = scrape_until(&addr, Duration::from_secs(30), "an unknown_topic consume error", |s| {
        samples(s, "accord_kafka_consume_errors_total").any(|x| x.labels.get("kind") == Some("unknown_topic") && value(x) >= 1.0)
    });
    assert!(samples(&scrape, "accord_kafka_consume_errors_total").all(|x| x.labels.get("kind") == Some("unknown_topic") || value(x) == 0.0), "{text}");
    let (status, body) = http_get(&addr, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("does not exist"), "/readyz names the cause: {body}");
    // Several fetch and metadata rounds: still one line saying so.
    std::thread::sleep(Duration::from_secs(8));
    let stopped = |log: &[String]| log.iter().filter(|l| l.contains("consumption stopped")).count();
    assert_eq!(stopped(&gw.log()), 1, "logged once when it starts:\n{}", gw.log().join("\n"));
    assert!(gw.log().iter().any(|l| l.contains("consumption stopped") && l.contains("does not exist")), "{}", gw.log().join("\n"));
    assert_eq!(http_get(&addr, "/readyz").0, 503);
    assert_eq!(http_get(&addr, "/healthz").0, 200, "live: the consumer is a steady member of its group, with nothing to consume:\n{}", gw.log().join("\n"));

    create_topics(&[(&missing, 1)]);
    produce(&missing, 1, &example_events());
    let log = gw.wait_for_log(Duration::from_secs(90), "consumption resumed");
    assert_eq!(log.iter().filter(|l| l.contains("consumption resumed")).count(), 1, "logged once when it clears");
    let start = Instant::now();
    loop {
        let (status, body) = http_get(&addr, "/readyz");
        if status == 200 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "not ready after the topic exists: {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut reader = Reader::new(&[site.topic("safety").as_str()], false);
    reader.until(Duration::from_secs(60), "outputs from the topic that now exists", |recs| !recs.is_empty());
    assert_eq!(stopped(&gw.log()), 1, "{}", gw.log().join("\n"));
    assert!(gw.terminate(Duration::from_secs(30)).success());
}

/// Unpadded base64url, for the test's token.
fn base64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

// ------------------------------------------- Confluent's serializers (SPEC 4) --

/// The Python with `confluent-kafka` (and `grpcio-tools`) that scripts/test.sh installs.
fn confluent_python() -> String {
    match std::env::var("ACCORD_CONFLUENT_PYTHON") {
        Ok(p) if !p.trim().is_empty() => p,
        _ => panic!("no Python with confluent-kafka: run scripts/test.sh, or set ACCORD_CONFLUENT_PYTHON to a python that has confluent-kafka[avro,protobuf,json] and grpcio-tools"),
    }
}

/// The example events the engine does not find malformed (Confluent's serializers
/// refuse the broken ones before they are sent).
fn well_formed_examples() -> Vec<String> {
    let engine = common::example_engine();
    let mut out = accord::engine::Outputs::default();
    example_events()
        .into_iter()
        .filter(|e| {
            let v = engine.process(e.as_bytes(), accord::event::Format::Json, &mut out);
            !matches!(v, accord::engine::Verdict::Dropped(accord::engine::Dropped { malformed: Some(_), .. }))
        })
        .collect()
}

/// Per topic, the event ids of its outputs (a multiset, as sorted lists).
fn event_ids(outputs: &BTreeMap<String, Vec<String>>) -> BTreeMap<String, Vec<String>> {
    outputs
        .iter()
        .map(|(t, v)| {
            let mut ids: Vec<String> = v.iter().map(|o| serde_json::from_str::<serde_json::Value>(o).unwrap()["event_id"].as_str().unwrap().to_string()).collect();
            ids.sort();
            (t.clone(), ids)
        })
        .collect()
}

impl Site {
    /// A configuration whose input has `format` and `framing`, and `output` YAML.
    fn config_formats(&self, name: &str, group: &str, input: &str, output: &str) -> PathBuf {
        let path = self.config(name, group, output);
        let text = std::fs::read_to_string(&path).unwrap();
        let topics = format!("    topics: [{}]\n", self.input);
        assert!(text.contains(&topics));
        std::fs::write(&path, text.replace(&topics, &format!("{topics}{input}"))).unwrap();
        path
    }
}

/// SPEC 4: records written by Confluent's own serializers (confluent-kafka's
/// AvroSerializer, ProtobufSerializer and JSONSerializer, in the Schema Registry wire
/// format) are decoded: every event gives the outputs file mode gives for it, and none
/// is quarantined.
#[test]
fn records_from_confluents_serializers_are_decoded() {
    let _broker = shared_broker();
    let python = confluent_python();
    let events = well_formed_examples();
    assert!(events.len() > 300, "most examples are well formed");
    for (serializer, format) in [("avro", "avro"), ("protobuf", "proto"), ("json", "json")] {
        let site = Site::new(&format!("confluent-{serializer}"), 1);
        let (expected, quarantined) = site.file_mode(&events);
        assert_eq!(quarantined, 0);
        let file = site.dir.path().join("events.jsonl");
        std::fs::write(&file, events.join("\n") + "\n").unwrap();
        let out = Command::new(&python)
            .arg(common::root().join("tests/confluent/produce.py"))
            .args([&bootstrap(), &site.input, serializer])
            .arg(&file)
            .output()
            .expect("python runs");
        assert!(out.status.success(), "{serializer}: produce.py failed:\n{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), events.len().to_string());
        let config = site.config_formats("gw", &unique("confluent"), &format!("    format: {format}\n    framing: confluent\n"), "");
        let mut gw = Gateway::start(serializer, &config);
        let mut topics = site.outputs();
        topics.push(site.quarantine.clone());
        let mut reader = Reader::new(&topics.iter().map(String::as_str).collect::<Vec<_>>(), false);
        reader.until(Duration::from_secs(90), "every output", |recs| expected.iter().all(|(t, v)| count_in(recs, t) >= v.len()));
        reader.poll_for(Duration::from_millis(500));
        let got: BTreeMap<String, Vec<String>> = expected.keys().map(|t| (t.clone(), reader.payloads(t))).collect();
        assert_eq!(event_ids(&got), event_ids(&expected), "{serializer}: the same outputs as file mode");
        assert_eq!(count_in(&reader.recs, &site.quarantine), 0, "{serializer}: nothing quarantined");
        assert!(gw.terminate(Duration::from_secs(30)).success());
    }
}

/// SPEC 4: framed outputs carry the configured schema id and are read by Confluent's
/// own deserializers (Avro and Protobuf); a plain record on a framed input is
/// quarantined.
#[test]
fn framed_outputs_are_read_by_confluents_deserializers() {
    let _broker = shared_broker();
    let python = confluent_python();
    let events = well_formed_examples();
    for (deserializer, format) in [("avro", "avro"), ("protobuf", "proto")] {
        let site = Site::new(&format!("framed-{deserializer}"), 1);
        let (expected, _) = site.file_mode(&events);
        produce(&site.input, 1, &events);
        let config = site.config_formats("gw", &unique("framed"), "", &format!("  output:\n    format: {format}\n    framing: confluent\n    schema_id: 1\n"));
        let mut gw = Gateway::start(deserializer, &config);
        let total: usize = expected.values().map(Vec::len).sum();
        let mut cmd = Command::new(&python);
        cmd.arg(common::root().join("tests/confluent/consume.py")).args([&bootstrap(), deserializer, &total.to_string()]).args(expected.keys());
        let out = cmd.output().expect("python runs");
        assert!(out.status.success(), "{deserializer}: consume.py failed:\n{}", String::from_utf8_lossy(&out.stderr));
        let mut got: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["schema_id"], 1, "{line}");
            assert!(v["value"]["accord"]["purpose"].is_string(), "the stamp is read: {line}");
            got.entry(v["topic"].as_str().unwrap().to_string()).or_default().push(v["value"].to_string());
        }
        for t in expected.keys() {
            got.entry(t.clone()).or_default();
        }
        assert_eq!(event_ids(&got), event_ids(&expected), "{deserializer}: Confluent's deserializer reads every output");
        assert!(gw.terminate(Duration::from_secs(30)).success());
    }

    // A plain record on a framed input is malformed: quarantined, never decoded.
    let site = Site::new("framed-plain", 1);
    produce(&site.input, 1, &events[..5]);
    let config = site.config_formats("gw", &unique("framed"), "    framing: confluent\n", "");
    let mut gw = Gateway::start("plain-on-framed", &config);
    let mut reader = Reader::new(&[site.quarantine.as_str()], false);
    reader.until(Duration::from_secs(60), "5 quarantine notes", |recs| recs.len() >= 5);
    assert!(reader.recs.iter().all(|r| r.payload.contains("wire format")), "{:?}", reader.payloads(&site.quarantine));
    assert!(gw.terminate(Duration::from_secs(30)).success());
}

/// `--format avro` in file mode: varint length-delimited SensorEvent datums in,
/// EnforcedEvent datums out (`TOPIC.avro.bin`), the same decisions as JSON.
#[test]
fn file_mode_reads_and_writes_avro() {
    let events = well_formed_examples();
    let dir = tempfile::tempdir().unwrap();
    let mut input = Vec::new();
    for e in &events {
        let datum = accord::event::avro::sensor_event_from_json(&serde_json::from_str(e).unwrap()).expect("an example as Avro");
        let mut n = datum.len() as u64;
        while n >= 0x80 {
            input.push((n as u8) | 0x80);
            n >>= 7;
        }
        input.push(n as u8);
        input.extend_from_slice(&datum);
    }
    std::fs::write(dir.path().join("in.avro.bin"), &input).unwrap();
    std::fs::write(dir.path().join("in.jsonl"), events.join("\n") + "\n").unwrap();
    let run = |format: &str, input: &str, out: &str| {
        let status = common::run_examples().args(["--format", format, "--input"]).arg(dir.path().join(input)).arg("--output").arg(dir.path().join(out)).stderr(Stdio::null()).status().unwrap();
        assert!(status.success(), "file mode with --format {format}");
    };
    run("avro", "in.avro.bin", "avro");
    run("json", "in.jsonl", "json");
    let mut compared = 0;
    for p in PURPOSES {
        let topic = format!("accord.{p}");
        let json: Vec<String> = std::fs::read_to_string(dir.path().join(format!("json/{topic}.jsonl"))).unwrap().lines().map(str::to_string).collect();
        let bytes = std::fs::read(dir.path().join(format!("avro/{topic}.avro.bin"))).unwrap();
        let mut avro = Vec::new();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let (mut len, mut shift, mut used) = (0usize, 0, 0);
            loop {
                let b = rest[used];
                used += 1;
                len |= usize::from(b & 0x7f) << shift;
                shift += 7;
                if b & 0x80 == 0 {
                    break;
                }
            }
            let v = accord::event::avro::enforced_event_to_json(&rest[used..used + len]).expect("an EnforcedEvent datum");
            avro.push(v.to_string());
            rest = &rest[used + len..];
        }
        let ids = |v: &[String]| event_ids(&BTreeMap::from([(topic.clone(), v.to_vec())]));
        assert_eq!(ids(&avro), ids(&json), "{topic}");
        compared += json.len();
    }
    assert!(compared > 100, "the examples make outputs");
}
