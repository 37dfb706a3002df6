//! SPEC 2.1 through the library: the examples against their intended outcomes,
//! agreement fixtures step by step, bad input, and property tests of the rules a DPO
//! relies on.

use std::collections::BTreeMap;

use accord::engine::{DropReason, Engine, Outputs, Verdict};
use accord::event::Format;
use hmac::{Hmac, Mac};
use proptest::prelude::*;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::common::{demo_key, engine_for, example, example_engine, outputs_written, run, DEMO_KEY_ID};

/// A small agreement that exercises every step.
const FIXTURE: &str = r#"
agreement:
  id: fixture
  version: 7
  parties: [Employer, Works council]
  valid_from: 2026-01-01
  valid_until: 2027-01-01
purposes:
  safety: { description: Alarms., topic: t.safety }
  planning: { description: Coarse location., topic: t.planning }
  payroll: { description: Hours., topic: t.payroll, identified: true }
categories:
  prohibited: [keystroke_content]
  fields: { hrv_ms: health, keylog: keystroke_content }
  special_allowed:
    - category: health
      purposes: [safety]
      basis: "GDPR Art. 9(2)(b)"
      justification: "Heat stress."
schedules:
  office:
    timezone: Europe/Amsterdam
    days: [mon, tue, wed, thu, fri]
    from: "07:00"
    until: "19:00"
pseudonymisation:
  rotate: weekly
rules:
  - name: pass
    match: { source: [access_pass], category: [access] }
    purposes: [payroll]
    keep: [subject_id, attributes.door]
  - name: location
    match: { source: [tracker], category: [location] }
    during: office
    purposes: [planning, safety]
    pseudonymise: [subject_id, attributes.badge]
    keep: [attributes.zone, attributes.data]
    generalise:
      attributes.lat: { round: 3 }
      attributes.floor: { bucket: 10 }
      attributes.seen: { truncate: 1h }
      occurred_at: { truncate: 15m }
  - name: vitals
    match: { source: [wearable] }
    purposes: [planning, safety]
    pseudonymise: [subject_id]
    keep: [attributes.vitals, attributes.hrv_ms]
"#;

fn event(source: &str, category: &str, at: &str, attributes: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "event_id": "e-1", "source": source, "device_id": "dev-9", "subject_id": "emp-00417",
        "category": category, "occurred_at": at, "attributes": attributes,
    }))
    .unwrap()
}

fn reason(engine: &Engine, input: &[u8]) -> Option<DropReason> {
    match run(engine, input).0 {
        Verdict::Dropped(d) => Some(d.reason),
        Verdict::Forwarded(_) => None,
    }
}

// A Tuesday, 10:07:31 in Amsterdam.
const TUESDAY: &str = "2026-03-03T10:07:31+01:00";

#[test]
fn the_examples_meet_their_intended_outcomes() {
    let engine = example_engine();
    let expected: BTreeMap<usize, String> = std::fs::read_to_string(example("expected-drops.txt"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (n, r) = l.split_once(' ').unwrap();
            (n.parse().unwrap(), r.trim().to_string())
        })
        .collect();
    let events = std::fs::read(example("events.jsonl")).unwrap();
    let mut seen = BTreeMap::new();
    let mut wrong = Vec::new();
    for (i, line) in events.split(|b| *b == b'\n').enumerate().filter(|(_, l)| !l.is_empty()) {
        let got = reason(&engine, line).map(|r| r.as_str().to_string());
        if got.as_ref() != expected.get(&(i + 1)) {
            wrong.push(format!("line {}: got {got:?}, expected {:?}", i + 1, expected.get(&(i + 1))));
        }
        *seen.entry(got.unwrap_or_else(|| "forwarded".into())).or_insert(0) += 1;
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // Every drop reason appears in the examples (suppressions have their own tests:
    // the examples run without a suppression file).
    for r in DropReason::ALL.into_iter().filter(|r| *r != DropReason::Suppressed) {
        assert!(seen.contains_key(r.as_str()), "no example is dropped for {r}");
    }
}

#[test]
fn step_2_events_outside_the_agreement_period_are_dropped() {
    let e = engine_for(FIXTURE);
    let loc = |at| event("tracker", "location", at, json!({}));
    assert_eq!(reason(&e, &loc("2025-12-31T23:59:59Z")), Some(DropReason::AgreementNotInForce));
    assert_eq!(reason(&e, &loc("2027-01-01T00:00:00Z")), Some(DropReason::AgreementNotInForce));
    // valid_from is inclusive; an offset moves the instant.
    assert_eq!(reason(&e, &event("access_pass", "access", "2026-01-01T00:00:00Z", json!({}))), None);
    assert_eq!(reason(&e, &event("access_pass", "access", "2026-01-01T00:30:00+01:00", json!({}))), Some(DropReason::AgreementNotInForce));
}

#[test]
fn step_3_prohibited_categories_compare_without_case() {
    let e = engine_for(FIXTURE);
    for cat in ["emotion", "Emotion", "FACIAL_EXPRESSION", "genetic", "keystroke_content", "Keystroke_Content"] {
        assert_eq!(reason(&e, &event("tracker", cat, TUESDAY, json!({}))), Some(DropReason::ProhibitedCategory), "{cat}");
    }
}

#[test]
fn step_4_special_categories_need_an_exception_and_are_narrowed_to_it() {
    let e = engine_for(FIXTURE);
    assert_eq!(reason(&e, &event("wearable", "biometric", TUESDAY, json!({}))), Some(DropReason::SpecialCategory));
    // `vitals` serves planning and safety; the health exception narrows it to safety.
    let (verdict, outputs) = run(&e, &event("wearable", "Health", TUESDAY, json!({"vitals": {"heart_rate": 80}})));
    assert!(matches!(verdict, Verdict::Forwarded(_)));
    assert_eq!(outputs.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(), ["safety"]);
    // A special event whose rule has no covered purpose drops, at step 4.
    let narrow = FIXTURE.replace("    purposes: [planning, safety]\n    pseudonymise: [subject_id]\n", "    purposes: [planning]\n    pseudonymise: [subject_id]\n");
    let narrow = narrow.replace("keep: [attributes.vitals, attributes.hrv_ms]", "keep: [attributes.vitals]");
    let e = engine_for(&narrow);
    assert_eq!(reason(&e, &event("wearable", "health", TUESDAY, json!({}))), Some(DropReason::SpecialCategory));
}

#[test]
fn step_5_the_first_matching_rule_decides_and_names_compare_normalised() {
    let e = engine_for(FIXTURE);
    assert_eq!(reason(&e, &event("camera", "video", TUESDAY, json!({}))), Some(DropReason::NoMatchingRule));
    // SPEC 2.5 (changed by issue 10): source and category names compare normalised.
    assert_eq!(reason(&e, &event("Tracker", "location", TUESDAY, json!({}))), None);
    assert_eq!(reason(&e, &event("tracker", "Ｌｏｃａｔｉｏｎ", TUESDAY, json!({}))), None);
    assert_eq!(reason(&e, &event("track-er", "location", TUESDAY, json!({}))), Some(DropReason::NoMatchingRule));
    // `vitals` matches every category of a wearable.
    let (_, outputs) = run(&e, &event("wearable", "steps", TUESDAY, json!({})));
    assert_eq!(outputs[0].1["accord"]["rule"], "vitals");
}

#[test]
fn step_6_schedules_use_local_time_with_daylight_saving() {
    let e = engine_for(FIXTURE);
    let loc = |at| reason(&e, &event("tracker", "location", at, json!({})));
    assert_eq!(loc("2026-03-03T06:59:59+01:00"), Some(DropReason::OutsideSchedule));
    assert_eq!(loc("2026-03-03T07:00:00+01:00"), None);
    assert_eq!(loc("2026-03-03T19:00:00+01:00"), Some(DropReason::OutsideSchedule));
    assert_eq!(loc("2026-03-07T10:00:00+01:00"), Some(DropReason::OutsideSchedule)); // Saturday
    // In summer, Amsterdam is UTC+2: 05:30Z is 07:30 local (in), 17:30Z is 19:30 (out).
    assert_eq!(loc("2026-07-07T05:30:00Z"), None);
    assert_eq!(loc("2026-07-07T17:30:00Z"), Some(DropReason::OutsideSchedule));
}

#[test]
fn step_7_only_listed_fields_leave_and_forbidden_members_go_at_any_depth() {
    let e = engine_for(FIXTURE);
    let attrs = json!({
        "zone": "dock-3", "lat": 52.0912345, "floor": 27, "seen": "2026-03-03T10:59:59+01:00",
        "badge": 4711, "secret": "x", "missing_type": null,
        "data": {"ok": 1, "mood": "happy", "deeper": [{"stress_level": 3, "heart_rate": 70, "hrv_ms": 40, "keylog": "abc", "fine": true}]},
    });
    let (verdict, outputs) = run(&e, &event("tracker", "location", TUESDAY, attrs));
    assert!(matches!(verdict, Verdict::Forwarded(_)));
    assert_eq!(outputs.len(), 2);
    let (purpose, planning) = &outputs[0];
    assert_eq!(purpose, "planning");
    assert_eq!(planning["occurred_at"], "2026-03-03T09:00:00Z");
    assert!(planning.get("device_id").is_none());
    let a = &planning["attributes"];
    assert_eq!(a["zone"], "dock-3");
    assert_eq!(a["lat"], 52.091);
    assert_eq!(a["floor"], 20);
    assert_eq!(a["seen"], "2026-03-03T09:00:00Z");
    assert!(a["badge"].as_str().unwrap().starts_with("demo-2026:"));
    assert!(a.get("secret").is_none());
    // Emotion and keystroke members are gone everywhere; health only for safety.
    assert_eq!(a["data"], json!({"ok": 1, "deeper": [{"fine": true}]}));
    let safety = &outputs[1].1["attributes"]["data"];
    assert_eq!(safety, &json!({"ok": 1, "deeper": [{"heart_rate": 70, "hrv_ms": 40, "fine": true}]}));
    // Every output is stamped.
    assert_eq!(planning["accord"], json!({"agreement": "fixture", "version": 7, "rule": "location", "purpose": "planning", "key_id": DEMO_KEY_ID}));
}

#[test]
fn step_8_a_value_of_the_wrong_type_is_removed_and_counted() {
    let e = engine_for(FIXTURE);
    let attrs = json!({"lat": "north", "floor": [1], "seen": 12, "badge": 1.5});
    let mut out = Outputs::default();
    let verdict = e.process(&event("tracker", "location", TUESDAY, attrs), Format::Json, &mut out);
    assert!(matches!(verdict, Verdict::Forwarded(_)));
    let o = &out.items[0];
    let v: Value = serde_json::from_slice(out.payload(o)).unwrap();
    assert!(v.get("attributes").is_none(), "{v}");
    // lat, floor, seen, badge removed; device_id removed too.
    assert_eq!(o.fields.removed, 5);
    assert_eq!(o.fields.pseudonymised, 1);
    assert_eq!(o.fields.generalised, 1); // occurred_at
}

#[test]
fn identified_purposes_get_the_subject_in_the_clear_and_it_is_the_record_key() {
    let e = engine_for(FIXTURE);
    let mut out = Outputs::default();
    e.process(&event("access_pass", "access", TUESDAY, json!({"door": "D1"})), Format::Json, &mut out);
    let o = &out.items[0];
    assert_eq!(out.key(o), Some(&b"emp-00417"[..]));
    let mut out = Outputs::default();
    e.process(&event("tracker", "location", TUESDAY, json!({})), Format::Json, &mut out);
    let key = std::str::from_utf8(out.key(&out.items[0]).unwrap()).unwrap();
    assert!(key.starts_with("demo-2026:") && key.len() == "demo-2026:".len() + 32);
}

/// SPEC 3 computed by hand: HMAC-SHA256(key, "planning@2026-W10" 0x00 "emp-00417").
#[test]
fn pseudonyms_follow_the_spec_formula() {
    let mut mac = Hmac::<Sha256>::new_from_slice(&demo_key()).unwrap();
    mac.update(b"planning@2026-W10\0emp-00417");
    let hex = hex::encode(mac.finalize().into_bytes());
    let expected = format!("demo-2026:{}", &hex[..32]);
    // Also computed independently with Python's hmac (examples/README.md).
    assert_eq!(expected, "demo-2026:86b3838a81e4ac3e312e8d16c553b0a5");
    let e = example_engine();
    let input = json!({"event_id": "e-1", "source": "tracker", "device_id": "trk-0031", "subject_id": "emp-00417", "category": "location", "occurred_at": "2026-03-03T10:00:00+01:00", "attributes": {"lat": 52.09, "lon": 5.12}});
    let (_, outputs) = run(&e, &serde_json::to_vec(&input).unwrap());
    assert_eq!(outputs[0].1["subject_id"], expected.as_str());
    let at = chrono::DateTime::parse_from_rfc3339("2026-03-03T10:00:00+01:00").unwrap().to_utc();
    assert_eq!(e.pseudonymiser().pseudonym(e.agreement(), "planning", Some(at), "emp-00417"), expected);
}

#[test]
fn integers_are_pseudonymised_as_their_decimal_text() {
    let e = engine_for(FIXTURE);
    let (_, a) = run(&e, &event("tracker", "location", TUESDAY, json!({"badge": 4711})));
    let (_, b) = run(&e, &event("tracker", "location", TUESDAY, json!({"badge": "4711"})));
    // Both present, both pseudonyms, and equal: a field gone from both would not pass.
    let (pa, pb) = (a[0].1["attributes"]["badge"].as_str(), b[0].1["attributes"]["badge"].as_str());
    assert!(pa.is_some_and(|p| p.starts_with("demo-2026:") && p.len() == "demo-2026:".len() + 32), "{:?}", a[0].1);
    assert_eq!(pa, pb);
    assert_ne!(pa, Some("4711"));
}

#[test]
fn bad_input_is_malformed_never_a_crash() {
    let e = example_engine();
    let good = String::from_utf8(event("tracker", "location", TUESDAY, json!({"zone": "a"}))).unwrap();
    let deep = format!("{}1{}", "{\"a\":".repeat(20_000), "}".repeat(20_000));
    let huge = format!("{{\"event_id\":\"{}\"}}", "x".repeat(10 << 20));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("invalid JSON", b"{\"event_id\": ".to_vec()),
        ("not JSON at all", b"hello".to_vec()),
        ("wrong type", good.replace("\"emp-00417\"", "17").into_bytes()),
        ("missing field", good.replace("\"event_id\":\"e-1\",", "").into_bytes()),
        ("no offset", good.replace("+01:00", "").into_bytes()),
        ("invalid UTF-8", [&good.as_bytes()[..20], b"\xff\xfe", &good.as_bytes()[20..]].concat()),
        ("20,000 levels", good.replace("{\"zone\":\"a\"}", &deep).into_bytes()),
        ("20,000 levels at the top", format!("{}{}", "[".repeat(20_000), "]".repeat(20_000)).into_bytes()),
        ("a 10 MB line", huge.into_bytes()),
        ("an empty object", b"{}".to_vec()),
        ("a JSON array", b"[{\"event_id\":\"e\"}]".to_vec()),
        ("empty input", Vec::new()),
    ];
    for (what, input) in cases {
        assert_eq!(reason(&e, &input), Some(DropReason::Malformed), "{what}");
    }
}

#[test]
fn protobuf_input_gives_the_same_outputs_as_json() {
    use prost::Message;
    let e = example_engine();
    let events = std::fs::read_to_string(example("events.jsonl")).unwrap();
    let mut compared = 0;
    for line in events.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
        let Some(msg) = accord::event::proto::sensor_event_from_json(&v) else { continue };
        // Protobuf times are UTC; compare against the same event written in UTC.
        let mut v_utc = v.clone();
        let at = chrono::DateTime::parse_from_rfc3339(v["occurred_at"].as_str().unwrap()).unwrap().to_utc();
        v_utc["occurred_at"] = json!(at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
        let (jv, jo) = run(&e, &serde_json::to_vec(&v_utc).unwrap());
        let mut out = Outputs::default();
        let pv = e.process(&msg.encode_to_vec(), Format::Proto, &mut out);
        let po: Vec<Value> = out.iter().map(|(_, p)| serde_json::from_slice(p).unwrap()).collect();
        assert_eq!(format!("{jv:?}"), format!("{pv:?}"), "{line}");
        // Protobuf numbers are doubles: 23.0 and 23 are the same number there.
        let jo: Vec<Value> = jo.into_iter().map(|(_, v)| as_doubles(v)).collect();
        assert_eq!(jo, po.into_iter().map(as_doubles).collect::<Vec<_>>(), "{line}");
        compared += 1;
    }
    assert!(compared > 300);
}

fn as_doubles(v: Value) -> Value {
    match v {
        Value::Number(n) => json!(n.as_f64().unwrap()),
        Value::Array(a) => Value::Array(a.into_iter().map(as_doubles).collect()),
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (k, as_doubles(v))).collect()),
        other => other,
    }
}

// ---- Property tests: the invariants a DPO relies on. ----

const PROHIBITED_NAMES: &[&str] = &["emotion", "Mood", "SENTIMENT", "stress", "stress_level", "valence", "arousal", "facial_expression", "dna", "genome", "keylog"];
const SPECIAL_NAMES: &[&str] = &["heart_rate", "HRV", "blood_pressure", "spo2", "body_temperature", "glucose", "diagnosis", "fingerprint", "face_template", "iris_template", "voiceprint", "hrv_ms"];
const PLAIN_NAMES: &[&str] = &["zone", "door", "ok", "lat", "floor", "data", "vitals", "x", "task"];

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(PROHIBITED_NAMES).prop_map(str::to_string),
        prop::sample::select(SPECIAL_NAMES).prop_map(str::to_string),
        prop::sample::select(PLAIN_NAMES).prop_map(str::to_string),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
        (-1000.0..1000.0f64).prop_map(Value::from),
        "[a-z0-9 ]{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(name(), inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn category() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(&["location", "access", "health", "biometric", "steps", "emotion", "Emotion", "genetic", "keystroke_content", "religion"][..]).prop_map(str::to_string),
        "[a-zA-Z_]{1,12}",
    ]
}

fn any_event() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(&["tracker", "access_pass", "wearable", "camera"][..]),
        category(),
        prop::collection::btree_map(name(), value(), 0..6),
        prop::sample::select(&[TUESDAY, "2026-03-07T10:00:00+01:00", "2026-06-01T12:00:00Z", "2025-06-01T12:00:00Z"][..]),
    )
        .prop_map(|(source, category, attrs, at)| event(source, &category, at, Value::Object(attrs.into_iter().collect())))
}

/// Every member name anywhere in a value.
fn names(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                out.push(k.to_lowercase());
                names(v, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| names(v, out)),
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// No prohibited category, and no prohibited attribute at any depth, ever leaves;
    /// special attributes leave only to the purposes their exception names.
    #[test]
    fn no_prohibited_data_in_any_output(input in any_event()) {
        let e = engine_for(FIXTURE);
        let (_, outputs) = run(&e, &input);
        let t = &e.agreement().taxonomy;
        for (purpose, out) in outputs {
            let category = out["category"].as_str().unwrap();
            let class = t.category(category).map(|c| t.class(c));
            prop_assert_ne!(class, Some(accord::agreement::taxonomy::Class::Prohibited));
            let mut all = Vec::new();
            names(&out["attributes"], &mut all);
            for n in all {
                let cat = t.field(&n).map(|c| (t.name(c).to_string(), t.class(c)));
                match cat {
                    Some((_, accord::agreement::taxonomy::Class::Prohibited)) => prop_assert!(false, "{n} reached {purpose}"),
                    Some((name, accord::agreement::taxonomy::Class::Special)) => prop_assert!(name == "health" && purpose == "safety", "{n} reached {purpose}"),
                    _ => {}
                }
            }
        }
    }

    /// Every output and record key is what walking the event for that purpose alone
    /// makes (`accord explain`'s path), though `process` writes the later purposes of
    /// an event from the first one's text when no member tells them apart.
    #[test]
    fn every_output_is_what_walking_its_purpose_alone_makes(input in any_event()) {
        let e = engine_for(FIXTURE);
        if let Some(fast) = outputs_written(&e, &input, false) {
            prop_assert_eq!(Some(fast), outputs_written(&e, &input, true));
        }
    }

    /// No raw subject_id (or device_id) reaches a purpose that is not identified, in
    /// the output or its key.
    #[test]
    fn no_raw_subject_outside_identified_purposes(input in any_event()) {
        let e = engine_for(FIXTURE);
        let mut out = Outputs::default();
        e.process(&input, Format::Json, &mut out);
        for (o, payload) in out.iter() {
            let purpose = &e.agreement().purposes[o.purpose as usize];
            let text = std::str::from_utf8(payload).unwrap();
            if !purpose.identified {
                prop_assert!(!text.contains("emp-00417"), "{text}");
                prop_assert!(out.key(o).is_none_or(|k| k != b"emp-00417"));
            }
            prop_assert!(!text.contains("dev-9"), "{text}");
        }
    }

    /// Pseudonyms are stable within a domain and period, and differ across purposes and
    /// periods.
    #[test]
    fn pseudonyms_are_stable_within_a_period_and_differ_across(subject in "[a-z0-9-]{1,16}", day in 0i64..365, hour in 0i64..24) {
        let e = engine_for(FIXTURE);
        let p = e.pseudonymiser();
        let a = e.agreement();
        let base = chrono::DateTime::from_timestamp(1_767_225_600 + day * 86400, 0).unwrap(); // 2026-01-01
        let same_week = base + chrono::Duration::hours(hour) ;
        let monday = base - chrono::Duration::days(i64::from(chrono::Datelike::weekday(&base).num_days_from_monday()));
        let within = monday + chrono::Duration::hours(hour * 7);
        let next_week = monday + chrono::Duration::days(7);
        let planning = p.pseudonym(a, "planning", Some(monday), &subject);
        prop_assert_eq!(&planning, &p.pseudonym(a, "planning", Some(within), &subject));
        prop_assert_ne!(&planning, &p.pseudonym(a, "safety", Some(monday), &subject));
        prop_assert_ne!(&planning, &p.pseudonym(a, "planning", Some(next_week), &subject));
        // Through the engine (with its cache) and through the CLI's look-up, the same.
        let event = serde_json::to_vec(&json!({"event_id": "e", "source": "wearable", "subject_id": subject, "category": "activity",
            "occurred_at": same_week.to_rfc3339(), "attributes": {}})).unwrap();
        let mut out = Outputs::default();
        for _ in 0..2 {
            e.process(&event, Format::Json, &mut out);
            let safety = out.iter().find_map(|(_, p)| {
                let v: Value = serde_json::from_slice(p).unwrap();
                (v["accord"]["purpose"] == "safety").then(|| v["subject_id"].as_str().map(str::to_string))
            });
            prop_assert_eq!(safety.flatten(), Some(p.pseudonym(a, "safety", Some(same_week), &subject)));
        }
    }
}

/// A reader that hands over one byte at a time: every line is cut at the buffer's end.
struct Trickle<'a>(&'a [u8]);

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.len().min(buf.len()).min(1);
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

/// File mode enforces a line where it lies in the reader's buffer when it can, and
/// copies it when the line is cut: both give the same files, with `\r\n` line ends,
/// blank lines and a last line without an end.
#[test]
fn file_mode_reads_lines_the_same_whole_or_cut() {
    use accord::run::filemode::{self, Input, Sink};
    use std::sync::Arc;
    let engine = Arc::new(example_engine());
    let events = std::fs::read(example("events.jsonl")).unwrap();
    let mut input = Vec::new();
    for (i, line) in events.split(|b| *b == b'\n').enumerate() {
        input.extend_from_slice(line);
        input.extend_from_slice(match i % 3 {
            0 => b"\n",
            1 => b"\r\n",
            _ => b"\n\n  \n",
        });
    }
    input.extend_from_slice(&events[..events.iter().position(|b| *b == b'\n').unwrap()]);
    let run = |reader: Box<dyn std::io::Read + Send + '_>| {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = Sink::dir(dir.path(), &engine, Format::Json).unwrap();
        let totals = filemode::run(Arc::new(engine.clone()), &mut Input::new(reader), Format::Json, &mut sink, Format::Json, &mut |_, _, _| {}).unwrap();
        drop(sink);
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
            .collect();
        files.sort();
        (totals.single().unwrap().received, files)
    };
    let whole = run(Box::new(&input[..]));
    let cut = run(Box::new(Trickle(&input)));
    let lines = events.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count() as u64 + 1;
    assert_eq!(whole.0, lines);
    assert!(whole.1.iter().map(|(_, b)| b.len()).sum::<usize>() > 1000, "outputs were written");
    assert_eq!(whole, cut);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A kept map's members reach a purpose exactly when the taxonomy lets a member of
    /// that name reach it, however many names came before on this thread: maps keyed
    /// by time or by id, whose names come once, among names that reveal health or
    /// emotion in any spelling (the per-thread caches and the one-pass check must
    /// never let one of those through).
    #[test]
    fn kept_map_members_are_classified_however_many_names_came_before(
        maps in prop::collection::vec(
            prop::collection::vec(
                prop_oneof![
                    (0u64..u64::MAX).prop_map(|n| n.to_string()),
                    (0u32..100_000).prop_map(|n| format!("t{n}")),
                    prop::sample::select(vec!["mood", "Mood", "heartRate", "hrv_ms", "m00d_x", "HEART_RATE", "keylog", "zone", "z0ne", "ok", "stress_level", "pulse_2"]).prop_map(String::from),
                ],
                1..40,
            ),
            1..30,
        ),
    ) {
        let e = engine_for(FIXTURE);
        let a = e.agreement();
        let planning = a.purposes.iter().position(|p| p.name == "planning").unwrap();
        for keys in maps {
            // One member per normal form: duplicates make the event malformed.
            let mut seen = std::collections::HashSet::new();
            let keys: Vec<String> = keys.into_iter().filter(|k| seen.insert(accord::agreement::names::normalise(k))).collect();
            let data: serde_json::Map<String, Value> = keys.iter().map(|k| (k.clone(), json!(1))).collect();
            let (verdict, outputs) = run(&e, &event("tracker", "location", TUESDAY, json!({"data": data})));
            prop_assert!(matches!(verdict, Verdict::Forwarded(_)), "{:?}", verdict);
            let sent = outputs.iter().find(|(p, _)| p == "planning").map(|(_, o)| o["attributes"]["data"].clone()).unwrap_or(Value::Null);
            for k in &keys {
                let allowed = accord::engine::names::field_allowed(a, k) & (1 << planning) != 0;
                prop_assert_eq!(sent.get(k).is_some(), allowed, "member `{}`", k);
            }
        }
    }
}
