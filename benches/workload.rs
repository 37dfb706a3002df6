//! The benchmarks' workloads, generated deterministically.
//!
//! - [`Mix::Examples`]: the examples' mix, scaled up. Each example line is taken in
//!   turn, as the sensors wrote it; parseable events get a fresh `event_id` and one of
//!   2,000 workers, so pseudonym caching behaves as on a site; malformed lines stay as
//!   they are.
//! - [`Mix::Site`]: a large site under `benches/site-agreement.yaml`, from a seeded
//!   PRNG (no data file): about 10,000 workers, events in time order over the year 2026
//!   under weekly rotation, tracker events forwarded to two purposes, two or three
//!   pseudonymised fields per output (one nested inside attributes), attributes nested
//!   three to four levels deep with members to scrub, and about 20% of events dropped
//!   at different steps (malformed, not in force, prohibited, special, no rule,
//!   outside the schedule).
//! - [`Mix::Wearables`]: lifting wearables under `benches/wearables-agreement.yaml`,
//!   from a seeded PRNG: every event to two purposes with four pseudonymised fields
//!   each, about 50,000 workers under daily pseudonyms, arrays kept, and a heart rate in
//!   a fifth of the events that only one purpose may receive. Pseudonyms dominate.

#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use accord::agreement::Agreement;
use accord::engine::Engine;
use accord::pseudonym::{Key, Pseudonymiser};
use serde_json::Value;

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Which workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mix {
    Examples,
    Site,
    Wearables,
}

impl Mix {
    pub const ALL: [Mix; 3] = [Mix::Examples, Mix::Site, Mix::Wearables];

    pub fn name(self) -> &'static str {
        match self {
            Mix::Examples => "examples",
            Mix::Site => "site",
            Mix::Wearables => "wearables",
        }
    }

    /// `examples` or `site`.
    pub fn parse(name: &str) -> Option<Mix> {
        Mix::ALL.into_iter().find(|m| m.name() == name)
    }

    pub fn agreement_path(self) -> std::path::PathBuf {
        Path::new(ROOT).join(match self {
            Mix::Examples => "examples/agreement.yaml",
            Mix::Site => "benches/site-agreement.yaml",
            Mix::Wearables => "benches/wearables-agreement.yaml",
        })
    }
}

pub fn example_lines() -> Vec<String> {
    std::fs::read_to_string(Path::new(ROOT).join("examples/events.jsonl")).unwrap().lines().map(str::to_owned).collect()
}

pub fn engine() -> Engine {
    engine_for(Mix::Examples)
}

pub fn key() -> Key {
    Key::new(&std::fs::read(Path::new(ROOT).join("examples/demo.key")).unwrap(), "demo-2026").unwrap()
}

pub fn engine_for(mix: Mix) -> Engine {
    engine_of(&mix.agreement_path())
}

/// An engine for the agreement at `path`, with the demo key.
pub fn engine_of(path: &Path) -> Engine {
    let agreement = Agreement::load(path).unwrap_or_else(|e| panic!("{e}")).agreement;
    Engine::new(Arc::new(agreement), Arc::new(Pseudonymiser::new(key())))
}

/// The example agreement without its `instruments` section (as before issue 14).
pub fn engine_without_instruments() -> Engine {
    let text = std::fs::read_to_string(Path::new(ROOT).join("examples/agreement.yaml")).unwrap();
    let start = text.find("\ninstruments:\n").expect("the example lists instruments");
    let end = start + text[start..].find("\nrules:\n").expect("rules follow");
    let text = format!("{}{}", &text[..start], &text[end..]);
    let agreement = Agreement::parse(text.as_bytes()).unwrap().agreement;
    assert!(agreement.instruments.is_none());
    let key = Key::new(&std::fs::read(Path::new(ROOT).join("examples/demo.key")).unwrap(), "demo-2026").unwrap();
    Engine::new(Arc::new(agreement), Arc::new(Pseudonymiser::new(key)))
}

/// `n` suppressions in force: all but ten for people outside the workload's 2,000
/// workers (every look-up still computes the digest and looks it up), ten for workers
/// of the workload, for `planning` only.
pub fn suppressions(engine: &Engine, n: usize) -> accord::engine::Suppressions {
    use accord::engine::suppress::Entry;
    let entries = (0..n).map(|i| {
        let (who, purposes) = if i < 10 { (format!("emp-{:05}", i * 37), r#","purposes":["planning"]"#) } else { (format!("ext-{i:05}"), "") };
        let subject = engine.pseudonymiser().suppression_subject(&who);
        Entry::parse(format!(r#"{{"subject":"{subject}","reason":"objection"{purposes}}}"#).as_bytes()).unwrap()
    });
    accord::engine::Suppressions::new("demo-2026", entries.collect::<Vec<_>>())
}

/// `n` events of the examples' mix as JSON lines into `out`.
pub fn write_events(n: usize, out: &mut impl Write) -> std::io::Result<u64> {
    write_mix(Mix::Examples, n, out)
}

/// `n` events of `mix` as JSON lines into `out`; returns the bytes written.
pub fn write_mix(mix: Mix, n: usize, out: &mut impl Write) -> std::io::Result<u64> {
    match mix {
        Mix::Examples => write_examples(n, out),
        Mix::Site => {
            let mut site = Site::new(n);
            write_generated(n, out, |i, line| site.event(i, line))
        }
        Mix::Wearables => {
            let mut rng = Rng(0x5eed_0022);
            write_generated(n, out, |i, line| wearable(&mut rng, i, n, line))
        }
    }
}

/// `n` generated lines into `out`; returns the bytes written.
fn write_generated(n: usize, out: &mut impl Write, mut event: impl FnMut(usize, &mut String)) -> std::io::Result<u64> {
    let mut bytes = 0u64;
    let mut line = String::new();
    for i in 0..n {
        line.clear();
        event(i, &mut line);
        line.push('\n');
        bytes += line.len() as u64;
        out.write_all(line.as_bytes())?;
    }
    Ok(bytes)
}

/// Event `i` of `n` of the wearables' mix, spread over the year.
fn wearable(r: &mut Rng, i: usize, n: usize, s: &mut String) {
    use std::fmt::Write as _;
    const WEARERS: u64 = 50_000;
    let t = YEAR_START + (i as f64 * 365.0 * 86_400.0 / n.max(1) as f64) as i64;
    let at = chrono::DateTime::from_timestamp(t, 0).unwrap().format("%Y-%m-%dT%H:%M:%SZ");
    let w = r.below(WEARERS);
    write!(s, r#"{{"event_id":"w-{i:09}","source":"wearable","device_id":"wr-{w:05}","subject_id":"emp-{w:05}","category":"activity","occurred_at":"{at}","attributes":{{"lifts":["#).unwrap();
    for k in 0..1 + r.below(4) {
        let sep = if k > 0 { "," } else { "" };
        write!(s, r#"{sep}{{"kg":{:.2},"t":{}}}"#, r.unit() * 30.0, r.below(3600)).unwrap();
    }
    write!(s, r#"],"zone":"z{}","readings":["#, r.below(40)).unwrap();
    for k in 0..8 {
        let sep = if k > 0 { "," } else { "" };
        write!(s, "{sep}{}", r.below(1000)).unwrap();
    }
    write!(s, r#"],"load_kg":{},"steps":{},"team":{{"lead":"emp-{:05}","buddy":"emp-{:05}"}}"#, r.unit() * 40.0, r.below(20_000), r.below(WEARERS), r.below(WEARERS)).unwrap();
    if r.below(5) == 0 {
        write!(s, r#","heart_rate":{}"#, 60 + r.below(120)).unwrap();
    }
    s.push_str("}}");
}

/// `n` events of `mix`, one line each (no newline).
pub fn lines(mix: Mix, n: usize) -> Vec<Vec<u8>> {
    let mut all = Vec::new();
    write_mix(mix, n, &mut all).unwrap();
    all.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect()
}

fn write_examples(n: usize, out: &mut impl Write) -> std::io::Result<u64> {
    let lines = example_lines();
    let ids: Vec<Option<(String, Option<String>)>> = lines
        .iter()
        .map(|l| {
            let v = serde_json::from_str::<Value>(l).ok()?;
            let id = v.get("event_id")?.as_str()?.to_owned();
            Some((id, v.get("subject_id").and_then(Value::as_str).map(str::to_owned)))
        })
        .collect();
    let mut bytes = 0u64;
    for i in 0..n {
        let k = i % lines.len();
        let mut line = lines[k].clone();
        if let Some((id, subject)) = &ids[k] {
            line = line.replacen(&format!("\"{id}\""), &format!("\"ev-{i:09}\""), 1);
            if let Some(subject) = subject {
                line = line.replacen(&format!("\"{subject}\""), &format!("\"emp-{:05}\"", (i * 7919) % 2000), 1);
            }
        }
        line.push('\n');
        bytes += line.len() as u64;
        out.write_all(line.as_bytes())?;
    }
    Ok(bytes)
}

/// SplitMix64: small, seeded, the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const WORKERS: u64 = 10_000;
const ZONES: [&str; 8] = ["aisle-03", "aisle-11", "aisle-27", "dock-2", "dock-5", "yard", "mezzanine", "packing"];
const TASKS: [&str; 4] = ["picking", "loading", "unloading", "replenishment"];

struct Site {
    rng: Rng,
    /// Seconds between consecutive events, so `n` events span the year.
    step: f64,
}

/// 2026-01-01T00:00:00Z.
const YEAR_START: i64 = 1_767_225_600;

impl Site {
    fn new(n: usize) -> Site {
        Site { rng: Rng(0x5eed_0011), step: 365.0 * 86_400.0 / n.max(1) as f64 }
    }

    fn worker(&mut self) -> u64 {
        // Most events come from the regulars: a skew like a real site's shifts.
        if self.rng.below(4) == 0 {
            self.rng.below(WORKERS)
        } else {
            self.rng.below(WORKERS / 4) * 4 % WORKERS
        }
    }

    fn event(&mut self, i: usize, s: &mut String) {
        use std::fmt::Write as _;
        let r = &mut self.rng;
        let mut t = YEAR_START + (i as f64 * self.step) as i64;
        // Shift hours mostly: move night-time events into the day, but not all of them.
        let hour = (t / 3600).rem_euclid(24);
        if !(5..20).contains(&hour) && r.below(10) != 0 {
            t += (5 + r.below(14) as i64 - hour).rem_euclid(24) * 3600;
        }
        let kind = r.below(1000);
        if kind < 20 {
            // 2%: before the agreement is in force.
            t = YEAR_START - 86_400 * (1 + r.below(30) as i64);
        }
        let at = chrono::DateTime::from_timestamp(t, 0).unwrap().with_timezone(&chrono::FixedOffset::east_opt(3600).unwrap());
        let at = at.format("%Y-%m-%dT%H:%M:%S%:z");
        let w = self.worker();
        let r = &mut self.rng;
        let zone = ZONES[r.below(ZONES.len() as u64) as usize];
        match kind {
            // 3% malformed, each its own way.
            20..=29 => write!(s, r#"{{"event_id": "s-{i:09}", "source": "tracker", "subject_id": "w-{w:05}", "category": "location", "occurred_at": "{at}", "attributes": {{"zone": "{zone}", "pos": {{"lat": 52.09"#).unwrap(),
            30..=39 => write!(s, r#"{{"event_id": "s-{i:09}", "source": "access_pass", "category": "access", "occurred_at": "{at}", "attributes": {{"door": "D{:02}"}}}}"#, r.below(40)).unwrap(),
            40..=49 => write!(s, r#"{{"event_id": "s-{i:09}", "source": "wearable", "subject_id": "w-{w:05}", "category": "activity", "occurred_at": "yesterday", "attributes": {{"steps": 120}}}}"#).unwrap(),
            // 3% prohibited, 1% special without an exception.
            50..=79 => write!(s, r#"{{"event_id": "s-{i:09}", "source": "wearable", "device_id": "wb-{:05}", "subject_id": "w-{w:05}", "category": "emotion", "occurred_at": "{at}", "attributes": {{"valence": {:.3}, "zone": "{zone}"}}}}"#, w, r.unit()).unwrap(),
            80..=89 => write!(s, r#"{{"event_id": "s-{i:09}", "source": "wearable", "device_id": "wb-{:05}", "subject_id": "w-{w:05}", "category": "health", "occurred_at": "{at}", "attributes": {{"heart_rate": {}, "zone": "{zone}"}}}}"#, w, 60 + r.below(80)).unwrap(),
            // 4% no rule: cameras, and wearables' location.
            90..=129 => write!(s, r#"{{"event_id": "s-{i:09}", "source": "camera", "device_id": "cam-{:03}", "subject_id": "w-{w:05}", "category": "video", "occurred_at": "{at}", "attributes": {{"frame": {}, "zone": "{zone}", "faces": {}}}}}"#, r.below(300), r.below(1 << 20), r.below(4)).unwrap(),
            // 5%: alarms, at any hour.
            130..=179 => write!(s, r#"{{"event_id": "s-{i:09}", "source": "tracker", "device_id": "tag-{w:05}", "subject_id": "w-{w:05}", "category": "alarm", "occurred_at": "{at}", "attributes": {{"alarm_type": "man_down", "zone": "{zone}", "pos": {{"lat": {:.6}, "lon": {:.6}, "floor": {}}}, "battery_pct": {}}}}}"#, 52.09 + r.unit() / 100.0, 5.12 + r.unit() / 100.0, r.below(3), r.below(100)).unwrap(),
            // 20%: door access, the reader's fingerprint scrubbed.
            180..=379 => write!(s, r#"{{"event_id": "s-{i:09}", "source": "access_pass", "device_id": "rdr-{:03}", "subject_id": "w-{w:05}", "category": "access", "occurred_at": "{at}", "attributes": {{"door": "D{:02}", "direction": "{}", "badge": {{"id": "pas-{:06}", "holder": "w-{w:05}"}}, "reader": {{"id": "rdr-{:03}", "firmware": "4.2.{}", "site": {{"building": "B{}", "fingerprint_template": "FXHQ3QZPM9B{:08x}"}}}}}}}}"#, r.below(200), r.below(40), if r.below(2) == 0 { "in" } else { "out" }, r.below(1_000_000), r.below(200), r.below(9), r.below(4), r.next() as u32).unwrap(),
            // 15%: wearables' activity, nested load details with members to scrub.
            380..=529 => write!(s, r#"{{"event_id": "s-{i:09}", "source": "wearable", "device_id": "wb-{w:05}", "subject_id": "w-{w:05}", "category": "activity", "occurred_at": "{at}", "attributes": {{"steps": {}, "zone": "{zone}", "shift": {{"lead": "w-{:05}", "code": "E{}"}}, "load": {{"kg": {:.2}, "lifts": {}, "detail": {{"posture": {{"bent_s": {}, "twist_s": {}, "heart_rate_bpm": {}}}, "grip": {{"left": {:.1}, "grip_strength_kg": {:.1}}}}}}}}}}}"#, r.below(4000), r.below(WORKERS), r.below(3), r.unit() * 900.0, r.below(200), r.below(600), r.below(300), 70 + r.below(90), r.unit() * 40.0, r.unit() * 60.0).unwrap(),
            // 47%: tracker location, to planning and safety, during shifts only.
            _ => write!(s, r#"{{"event_id": "s-{i:09}", "source": "tracker", "device_id": "tag-{w:05}", "subject_id": "w-{w:05}", "category": "location", "occurred_at": "{at}", "attributes": {{"zone": "{zone}", "pos": {{"lat": {:.6}, "lon": {:.6}, "floor": {}, "fix": {{"accuracy_m": {:.1}, "sats": {}}}}}, "tag": {{"owner": "w-{w:05}", "battery_pct": {}}}, "context": {{"task": {{"type": "{}", "order": {{"lines": {}, "picker_mood": {}, "wave": {}}}, "vehicle": {{"id": "flt-{:02}", "operator_stress": {:.2}}}}}}}}}}}"#, 52.09 + r.unit() / 100.0, 5.12 + r.unit() / 100.0, r.below(3), r.unit() * 5.0, 4 + r.below(8), r.below(100), TASKS[r.below(4) as usize], 1 + r.below(30), r.below(5), r.below(12), r.below(40), r.unit()).unwrap(),
        }
    }
}

/// The reference both file-mode benches measure Accord against: every line parsed into a
/// `serde_json::Value` and written back; returns how many lines parsed.
pub fn json_round_trip(input: &Path, output: &Path) -> u64 {
    use std::io::{BufRead, BufReader, BufWriter};
    let mut reader = BufReader::with_capacity(1 << 16, std::fs::File::open(input).unwrap());
    let mut out = BufWriter::with_capacity(1 << 16, std::fs::File::create(output).unwrap());
    let mut line = Vec::new();
    let mut parsed = 0u64;
    while reader.read_until(b'\n', &mut line).unwrap() > 0 {
        if let Ok(v) = serde_json::from_slice::<Value>(&line) {
            serde_json::to_writer(&mut out, &v).unwrap();
            out.write_all(b"\n").unwrap();
            parsed += 1;
        }
        line.clear();
    }
    out.flush().unwrap();
    parsed
}
