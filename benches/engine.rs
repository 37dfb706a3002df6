//! Criterion benchmarks of the engine, one per path of SPEC 2.1: each kind of drop,
//! and forwarding with pseudonyms, generalisation and nested stripping.
//!
//! Then each workload of `workload.rs` whole, with the pseudonym cache and without, and
//! its events that protobuf can carry, as JSON and as protobuf (`--format proto`).
//!
//! Then, in group `formats`, the whole enforcement step (decoding, enforcing, encoding
//! every output) for JSON, protobuf and Avro, on each mix.
//!
//!     cargo bench --bench engine

mod workload;

use accord::engine::{Outputs, Verdict};
use accord::event::Format;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

/// The first example line with `needle` whose verdict is of the wanted kind.
fn find(engine: &accord::engine::Engine, lines: &[String], needle: &str, forwarded: bool) -> Vec<u8> {
    let mut out = Outputs::default();
    lines
        .iter()
        .find(|l| l.contains(needle) && matches!(engine.process(l.as_bytes(), Format::Json, &mut out), Verdict::Forwarded(_)) == forwarded)
        .unwrap_or_else(|| panic!("no example with {needle}"))
        .clone()
        .into_bytes()
}

fn paths(c: &mut Criterion) {
    let engine = workload::engine();
    let lines = workload::example_lines();
    let cases = [
        ("forward/location (round, bucket, truncate, 2 pseudonyms)", find(&engine, &lines, "\"category\": \"location\"", true)),
        ("forward/clocking (identified, nested keep)", find(&engine, &lines, "\"clocking\"", true)),
        ("forward/heat-stress (nested special and emotion members)", find(&engine, &lines, "stress_level", true)),
        ("drop/prohibited_category", find(&engine, &lines, "\"emotion\"", false)),
        ("drop/no_matching_rule", find(&engine, &lines, "\"video\"", false)),
        ("drop/malformed (not JSON)", b"{\"event_id\": \"x\", \"source\": ".to_vec()),
    ];
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(1));
    for (name, event) in &cases {
        let mut out = Outputs::default();
        let verdict = engine.process(event, Format::Json, &mut out);
        assert_eq!(name.starts_with("forward"), matches!(verdict, Verdict::Forwarded(_)), "{name}: {verdict:?}");
        group.bench_function(*name, |b| b.iter(|| engine.process(std::hint::black_box(event), Format::Json, &mut out)));
    }
    group.finish();

    // Each whole mix, with fresh subjects (pseudonym cache misses included), with the
    // pseudonym cache and without it.
    for mix in workload::Mix::ALL {
        let engine = workload::engine_for(mix);
        let events = workload::lines(mix, 10_000);
        let mut group = c.benchmark_group("engine");
        group.throughput(Throughput::Elements(events.len() as u64));
        for cached in [true, false] {
            let name = format!("mix/10k {} events, {}", mix.name(), if cached { "cache" } else { "no cache" });
            group.bench_function(&name, |b| {
                b.iter_batched_ref(
                    || {
                        let mut out = Outputs::default();
                        if !cached {
                            out.cache = accord::pseudonym::Cache::disabled();
                        }
                        out
                    },
                    |out| {
                        for e in &events {
                            engine.process(e, Format::Json, out);
                        }
                    },
                    BatchSize::LargeInput,
                )
            });
        }
        // The same events as protobuf: decoded to JSON text, then enforced as JSON.
        let [json, proto, _] = in_every_format(events);
        group.throughput(Throughput::Elements(json.len() as u64));
        for (format, events) in [(Format::Json, &json), (Format::Proto, &proto)] {
            let name = format!("mix/{} {} events protobuf can carry, as {format:?}", events.len(), mix.name());
            group.bench_function(&name, |b| {
                let mut out = Outputs::default();
                b.iter(|| {
                    for e in events {
                        engine.process(e, format, &mut out);
                    }
                })
            });
        }
        group.finish();
    }
}

/// The whole enforcement step (`run::enforce::Enforcer`: decode, enforce, encode every
/// output) for each format SPEC 4 names, on each mix's events that all three carry:
/// JSON in and out, protobuf in and out (one message per record, as in Kafka), Avro in
/// and out.
fn formats(c: &mut Criterion) {
    use accord::run::enforce::{Encoding, Enforcer};
    for mix in workload::Mix::ALL {
        let engine = std::sync::Arc::new(workload::engine_for(mix));
        let [json, proto, avro] = in_every_format(workload::lines(mix, 10_000));
        let mut group = c.benchmark_group("formats");
        group.throughput(Throughput::Elements(json.len() as u64));
        for (format, events) in [(Format::Json, &json), (Format::Proto, &proto), (Format::Avro, &avro)] {
            let mut enforcer = Enforcer::new(std::sync::Arc::new(engine.clone()), format, Encoding { format, length_delimited: false });
            let forwarded = events.iter().filter(|e| matches!(enforcer.enforce(e), accord::run::enforce::Outcome::Forward(_))).count();
            assert!(forwarded > events.len() / 2, "{} as {format:?}: only {forwarded} of {} forwarded", mix.name(), events.len());
            let name = format!("mix/{} {} events, {format:?} in and out", events.len(), mix.name());
            group.bench_function(&name, |b| {
                b.iter(|| {
                    for e in events {
                        std::hint::black_box(enforcer.enforce(e));
                    }
                })
            });
        }
        group.finish();
    }
}

/// The `events` that protobuf and Avro can both carry, as JSON, as protobuf
/// `SensorEvent`s and as Avro datums.
fn in_every_format(events: Vec<Vec<u8>>) -> [Vec<Vec<u8>>; 3] {
    use prost::Message as _;
    let (mut json, mut proto, mut avro) = (Vec::new(), Vec::new(), Vec::new());
    for e in events {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&e) else { continue };
        let (Some(p), Some(a)) = (accord::event::proto::sensor_event_from_json(&v), accord::event::avro::sensor_event_from_json(&v)) else { continue };
        json.push(e);
        proto.push(p.encode_to_vec());
        avro.push(a);
    }
    [json, proto, avro]
}

criterion_group!(benches, paths, formats);
criterion_main!(benches);
