//! Criterion benchmarks of the engine, one per path of SPEC 2.1: each kind of drop,
//! and forwarding with pseudonyms, generalisation and nested stripping.
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

    // The whole example mix, with fresh subjects (pseudonym cache misses included).
    let mut mix = Vec::new();
    workload::write_events(10_000, &mut mix).unwrap();
    let events: Vec<&[u8]> = mix.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("mix/10k example events", |b| {
        b.iter_batched_ref(
            Outputs::default,
            |out| {
                for e in &events {
                    engine.process(e, Format::Json, out);
                }
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, paths);
criterion_main!(benches);
