//! SPEC 2.6 through the library: the `instruments` section checked at its lines, steps
//! 4a and 4b, the `fields` restriction, and the property a works council relies on:
//! no event from an instrument that is not listed ever leaves.

use accord::agreement::{Agreement, Severity};
use accord::engine::{DropReason, Engine, Outputs, Verdict};
use accord::event::Format;
use proptest::prelude::*;
use serde_json::{json, Value};

use crate::common::engine_for;

const BASE: &str = r#"
agreement: { id: ins, version: 1, parties: [Employer, Works council] }
purposes:
  planning: { description: Coarse location., topic: t.planning }
  safety: { description: Alarms., topic: t.safety }
instruments:
  - name: uwb-tag-v3
    source: tracker
    devices: ["tag-*", "uwb-?"]
    validation:
      reference: "Accuracy test ACME-2026-07: 30 cm at 95%, independent lab"
      valid_until: 2027-06-30
    fields: [zone, pos.lat, pos.lon, pos.accuracy_m, speed_kmh, hits.id]
    quality:
      pos.accuracy_m: { max: 5 }
  - name: pass-reader
    source: access_pass
    validation:
      reference: "Site acceptance test"
      valid_until: "2026-06-01T00:00:00+02:00"
rules:
  - name: loc
    match: { source: [tracker] }
    purposes: [planning]
    pseudonymise: [subject_id]
    keep: [attributes.zone, attributes.pos, attributes.battery, attributes.hits]
  - name: pass
    match: { source: [access_pass] }
    purposes: [safety]
    keep: [attributes]
"#;

fn base() -> String {
    // `keep: [attributes]` is not a path; the instrument tests want a valid base.
    BASE.replace("keep: [attributes]\n", "keep: [attributes.door]\n")
}

fn event(source: &str, device: Option<&str>, at: &str, attributes: Value) -> Vec<u8> {
    let mut e = json!({"event_id": "e-1", "source": source, "subject_id": "emp-00417", "category": "location", "occurred_at": at, "attributes": attributes});
    if let Some(d) = device {
        e["device_id"] = json!(d);
    }
    serde_json::to_vec(&e).unwrap()
}

fn run(engine: &Engine, input: &[u8]) -> (Verdict, Vec<Value>) {
    let mut out = Outputs::default();
    let verdict = engine.process(input, Format::Json, &mut out);
    let outputs = out.iter().map(|(_, p)| serde_json::from_slice(p).unwrap()).collect();
    (verdict, outputs)
}

fn reason(engine: &Engine, input: &[u8]) -> Option<DropReason> {
    match run(engine, input).0 {
        Verdict::Dropped(d) => Some(d.reason),
        Verdict::Forwarded(_) => None,
    }
}

/// The diagnostics of a broken agreement, as `LINE:COL: message`.
fn problems(yaml: &str) -> Vec<(Severity, String)> {
    match Agreement::parse(yaml.as_bytes()) {
        Ok(l) => l.warnings.iter().map(|d| (d.severity, format!("{}:{}: {}", d.span.line, d.span.col, d.message))).collect(),
        Err(d) => d.iter().map(|d| (d.severity, format!("{}:{}: {}", d.span.line, d.span.col, d.message))).collect(),
    }
}

fn has(problems: &[(Severity, String)], severity: Severity, at: &str, words: &str) {
    assert!(problems.iter().any(|(s, m)| *s == severity && m.starts_with(at) && m.contains(words)), "expected {severity:?} `{at} ...{words}...` in {problems:#?}");
}

#[test]
fn every_problem_in_instruments_is_reported_at_its_line() {
    let yaml = r#"
agreement: { id: ins, version: 1, parties: [Employer, Works council] }
purposes:
  planning: { description: Coarse location., topic: t.planning }
instruments:
  - name: a
    source: tracker
    devices: ["tag-[0-9]", ""]
    validation:
      reference: "Report 1"
      valid_until: 30-06-2027
    fields: [zone, pos..lat]
    quality:
      speed: { max: fast }
      zone: { }
      pos.acc: { min: 5, max: 1 }
    colour: blue
  - name: a
    source: tracker
  - source: camera
    validation: { reference: "", valid_until: 2027-01-01, lab: x }
rules:
  - name: loc
    match: { source: [tracker, wearable] }
    purposes: [planning]
    keep: [attributes.zone, attributes.battery]
"#;
    let p = problems(yaml);
    has(&p, Severity::Error, "8:15:", "only `*` (any run of characters) and `?` (one character) are wildcards");
    has(&p, Severity::Error, "8:28:", "is empty");
    has(&p, Severity::Error, "11:20:", "`valid_until` must be a date like 2027-06-30");
    has(&p, Severity::Error, "12:20:", "`pos..lat` is not an attribute path");
    has(&p, Severity::Error, "14:7:", "quality bound on `speed`, but its `fields` do not let that attribute through");
    has(&p, Severity::Error, "14:21:", "`max` must be a number, not `fast`");
    has(&p, Severity::Error, "15:7:", "names neither `min` nor `max`");
    has(&p, Severity::Error, "16:7:", "has `min` 5 above `max` 1");
    has(&p, Severity::Error, "17:5:", "unknown key `colour` in an instrument");
    has(&p, Severity::Error, "18:11:", "instrument `a` is already defined on line 6");
    has(&p, Severity::Error, "18:9:", "instrument `a` has no `validation`");
    has(&p, Severity::Error, "20:11:", "this instrument has no `name`");
    has(&p, Severity::Error, "21:17:", "needs a `reference`");
    has(&p, Severity::Error, "21:59:", "unknown key `lab` in `validation`");
    has(&p, Severity::Error, "24:32:", "matches source `wearable`, but no instrument in `instruments` is for that source");
    // The second `a` lists no `fields`: it may send anything, so no path warning here.
    assert!(!p.iter().any(|(_, m)| m.contains("attributes.battery")), "{p:#?}");
}

#[test]
fn a_rule_path_no_instrument_sends_is_a_warning_and_the_agreement_still_loads() {
    let yaml = base();
    let loaded = Agreement::parse(yaml.as_bytes()).expect("the base agreement checks");
    let w: Vec<&str> = loaded.warnings.iter().map(|d| d.message.as_str()).collect();
    assert!(w.iter().any(|m| m.contains("treats `attributes.battery`, but no instrument of its sources sends it")), "{w:#?}");
    // `attributes.pos` is sent in part (pos.lat, ...): no warning.
    assert!(!w.iter().any(|m| m.contains("`attributes.pos`")), "{w:#?}");
    assert_eq!(loaded.agreement.instruments.as_ref().map(Vec::len), Some(2));
}

#[test]
fn step_4a_only_the_first_matching_instrument_admits_and_only_while_validated() {
    let e = engine_for(&base());
    let ok = json!({"zone": "A", "pos": {"accuracy_m": 1}});
    let at = "2026-03-03T10:00:00+01:00";
    assert_eq!(reason(&e, &event("tracker", Some("tag-0042"), at, ok.clone())), None);
    assert_eq!(reason(&e, &event("tracker", Some("uwb-7"), at, ok.clone())), None);
    assert_eq!(reason(&e, &event("tracker", Some("uwb-77"), at, ok.clone())), Some(DropReason::UnapprovedInstrument));
    assert_eq!(reason(&e, &event("tracker", Some("TAG-0042"), at, ok.clone())), Some(DropReason::UnapprovedInstrument));
    assert_eq!(reason(&e, &event("tracker", None, at, ok.clone())), Some(DropReason::UnapprovedInstrument));
    assert_eq!(reason(&e, &event("camera", Some("tag-1"), at, ok.clone())), Some(DropReason::UnapprovedInstrument));
    // Sources compare in SPEC 2.5's normal form (devices' globs stay case-sensitive).
    assert_eq!(reason(&e, &event("Tracker", Some("tag-1"), at, ok.clone())), None);
    assert_eq!(reason(&e, &event("ｔｒａｃｋｅｒ", Some("tag-1"), at, ok.clone())), None);
    // Quality paths compare normalised too: `POS.Accuracy_M` is `pos.accuracy_m`.
    assert_eq!(reason(&e, &event("tracker", Some("tag-1"), at, json!({"zone": "A", "POS": {"Accuracy_M": 1}}))), None);
    assert_eq!(reason(&e, &event("tracker", Some("tag-1"), at, json!({"zone": "A", "POS": {"Accuracy_M": 99}}))), Some(DropReason::BelowQuality));
    // Validation ends at valid_until (a date: midnight UTC), exclusive.
    assert_eq!(reason(&e, &event("tracker", Some("tag-1"), "2027-06-29T23:59:59Z", ok.clone())), None);
    assert_eq!(reason(&e, &event("tracker", Some("tag-1"), "2027-06-30T00:00:00Z", ok.clone())), Some(DropReason::UnapprovedInstrument));
    // Without devices, any device and none; an RFC 3339 valid_until keeps its offset.
    assert_eq!(reason(&e, &event("access_pass", None, "2026-05-31T21:59:59Z", json!({}))), None);
    assert_eq!(reason(&e, &event("access_pass", Some("x"), "2026-05-31T22:00:00Z", json!({}))), Some(DropReason::UnapprovedInstrument));
}

#[test]
fn step_4b_bounds_are_inclusive_and_a_missing_or_odd_value_fails() {
    let e = engine_for(&base());
    let at = "2026-03-03T10:00:00+01:00";
    let q = |acc: Value| reason(&e, &event("tracker", Some("tag-1"), at, json!({"pos": {"accuracy_m": acc}})));
    assert_eq!(q(json!(5)), None);
    assert_eq!(q(json!(5.0)), None);
    assert_eq!(q(json!(0.2)), None);
    assert_eq!(q(json!(5.0001)), Some(DropReason::BelowQuality));
    assert_eq!(q(json!("3")), Some(DropReason::BelowQuality));
    assert_eq!(q(json!(null)), Some(DropReason::BelowQuality));
    assert_eq!(q(json!([1])), Some(DropReason::BelowQuality));
    assert_eq!(reason(&e, &event("tracker", Some("tag-1"), at, json!({"zone": "A"}))), Some(DropReason::BelowQuality));
    let no_attributes = br#"{"event_id":"e","source":"tracker","device_id":"tag-1","subject_id":"w","category":"location","occurred_at":"2026-03-03T10:00:00Z"}"#;
    assert_eq!(reason(&e, no_attributes), Some(DropReason::BelowQuality));
    // Through arrays: every value named must meet the bound.
    assert_eq!(reason(&e, &event("tracker", Some("tag-1"), at, json!({"pos": [{"accuracy_m": 1}, {"accuracy_m": 2}]}))), None);
    assert_eq!(reason(&e, &event("tracker", Some("tag-1"), at, json!({"pos": [{"accuracy_m": 1}, {"accuracy_m": 9}]}))), Some(DropReason::BelowQuality));
}

#[test]
fn an_instruments_fields_are_the_only_attributes_the_rules_see() {
    let e = engine_for(&base());
    let attrs = json!({
        "zone": "A",
        "battery": 80,
        "pos": {"lat": 52.1, "lon": 5.1, "accuracy_m": 1, "raw_signal": [1, 2, 3]},
        "hits": [{"id": 1, "rssi": -40}, {"rssi": -50}],
        "firmware_extra": {"mac": "aa:bb"}
    });
    let (verdict, outputs) = run(&e, &event("tracker", Some("tag-1"), "2026-03-03T10:00:00+01:00", attrs));
    assert!(matches!(verdict, Verdict::Forwarded(_)));
    // The rule keeps the whole of `pos`, but the instrument sends only lat, lon, accuracy.
    assert_eq!(outputs[0]["attributes"], json!({"zone": "A", "pos": {"lat": 52.1, "lon": 5.1, "accuracy_m": 1}, "hits": [{"id": 1}]}));
}

#[test]
fn an_empty_list_admits_nothing() {
    let yaml = base().replace("instruments:\n", "instruments: []\nx_old_instruments:\n");
    let yaml = yaml.split("x_old_instruments:").next().unwrap().to_string() + "rules:\n  - name: loc\n    purposes: [planning]\n    keep: [attributes.zone]\n";
    let loaded = Agreement::parse(yaml.as_bytes()).expect("checks, with a warning");
    assert!(loaded.warnings.iter().any(|d| d.message.contains("`instruments` is empty")), "{:#?}", loaded.warnings);
    let e = engine_for(&yaml);
    assert_eq!(reason(&e, &event("tracker", Some("tag-1"), "2026-03-03T10:00:00Z", json!({"zone": "A"}))), Some(DropReason::UnapprovedInstrument));
}

prop_compose! {
    fn name()(s in "[a-zA-Z_-]{1,8}") -> String { s }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whatever the source, device and attributes: an event leaves only if an instrument
    /// listed for its source matches its device, and only with attributes it may send.
    #[test]
    fn no_event_from_an_unlisted_instrument_ever_leaves(
        source in prop_oneof![Just("tracker".to_string()), Just("access_pass".to_string()), name()],
        device in proptest::option::of(prop_oneof![Just("tag-1".to_string()), Just("uwb-9".to_string()), "[a-zA-Z0-9?*-]{0,8}"]),
        acc in prop_oneof![Just(json!(1)), Just(json!(6)), Just(json!("x"))],
        extra in name(),
    ) {
        prop_assume!(!["zone", "pos", "hits", "door", "speed_kmh"].contains(&extra.as_str()));
        let e = engine_for(&base());
        let attrs = json!({"zone": "A", "pos": {"accuracy_m": acc, "secret": 1}, extra.clone(): 7});
        let (verdict, outputs) = run(&e, &event(&source, device.as_deref(), "2026-03-03T10:00:00Z", attrs));
        let listed = match (source.as_str(), device.as_deref()) {
            ("tracker", Some(d)) => (d.starts_with("tag-")) || (d.len() == 5 && d.starts_with("uwb-")),
            ("access_pass", _) => true,
            _ => false,
        };
        if !listed {
            prop_assert!(matches!(verdict, Verdict::Dropped(d) if d.reason == DropReason::UnapprovedInstrument), "{:?}", verdict);
            prop_assert!(outputs.is_empty());
        }
        for o in &outputs {
            let a = &o["attributes"];
            prop_assert!(a.get(&extra).is_none());
            prop_assert!(a["pos"].get("secret").is_none());
        }
    }
}

#[test]
fn explain_says_which_instrument_and_which_bound() {
    let e = crate::common::example_engine();
    let lines: Vec<String> = std::fs::read_to_string(crate::common::example("events.jsonl")).unwrap().lines().map(str::to_owned).collect();
    let find = |id: &str| lines.iter().find(|l| l.contains(id)).unwrap().as_bytes().to_vec();
    let s = accord::dpo::explain::explain(&e, &find("ins-000001"));
    assert!(s.contains("4a. Instrument: none of the 4 approved instrument(s) is for source `tracker` and its device."), "{s}");
    assert!(s.contains("reason `unapproved_instrument`"), "{s}");
    let s = accord::dpo::explain::explain(&e, &find("ins-000003"));
    assert!(s.contains("4a. Instrument: `uwb-tag-v3`") && s.contains("4b. Quality: not met; required: `lat` from 52 to 52.2, `lon` from 5 to 5.25"), "{s}");
    let s = accord::dpo::explain::explain(&e, &find("ins-000007"));
    assert!(s.contains("but its validation (CE class IIa; field trial Arbodienst ACME 2025 (heat alarm)) expired on 2026-07-01T00:00:00+00:00"), "{s}");
    let s = accord::dpo::explain::explain(&e, &find("ins-000008"));
    assert!(s.contains("4a. Instrument: `heat-stress-band`") && s.contains("Verdict: forwarded"), "{s}");

    // Step 6a, with a suppression for that worker's safety outputs.
    let subject = e.pseudonymiser().suppression_subject("emp-00417");
    let entry = accord::engine::suppress::Entry::parse(format!(r#"{{"subject":"{subject}","reason":"objection","purposes":["safety"]}}"#).as_bytes()).unwrap();
    let set = accord::engine::Suppressions::new(crate::common::DEMO_KEY_ID, [entry]);
    let s = accord::dpo::explain::explain_with(&e, &find("ins-000008"), &set);
    assert!(s.contains("6a. Suppressions: this worker's suppression covers every remaining purpose (`safety`)."), "{s}");
    assert!(s.contains("reason `suppressed`"), "{s}");
}

#[test]
fn the_workers_page_lists_the_instruments_and_diff_names_their_changes() {
    use accord::dpo::render::{render, Lang};
    let text = std::fs::read_to_string(crate::common::example("agreement.yaml")).unwrap();
    let old = Agreement::parse(text.as_bytes()).unwrap().agreement;
    let page = render(&old, Lang::En);
    for words in ["Approved instruments", "uwb-tag-v3", "Accuracy test ACME-2026-07: 30 cm at 95%, independent lab", "2027-06-30", "<code>lat</code> from 52 to 52.2", "trk-*"] {
        assert!(page.contains(words), "the workers' page lacks `{words}`");
    }
    assert!(render(&old, Lang::Nl).contains("Goedgekeurde meetinstrumenten"));

    let new_text = text.replace("valid_until: 2027-06-30", "valid_until: 2027-12-31").replace("      lon: { min: 5.0, max: 5.25 }\n", "");
    let new = Agreement::parse(new_text.as_bytes()).unwrap().agreement;
    let changes: Vec<String> = accord::dpo::diff::compare(&old, &new).into_iter().map(|c| c.text).collect();
    assert!(changes.iter().any(|c| c == "Instrument `uwb-tag-v3` is now approved until 2027-12-31 instead of 2027-06-30."), "{changes:#?}");
    assert!(changes.iter().any(|c| c.starts_with("The quality required of instrument `uwb-tag-v3` is now `lat` from 52 to 52.2 (before:")), "{changes:#?}");
    let without = text.replace("  - name: pc-activity-agent\n", "  - name: pc-agent-v2\n");
    let changes: Vec<String> = accord::dpo::diff::compare(&old, &Agreement::parse(without.as_bytes()).unwrap().agreement).into_iter().map(|c| c.text).collect();
    assert!(changes.iter().any(|c| c.starts_with("Instrument `pc-activity-agent` (source `computer_activity`")), "{changes:#?}");
    assert!(changes.iter().any(|c| c.starts_with("New approved instrument `pc-agent-v2`")), "{changes:#?}");
}
