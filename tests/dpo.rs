//! The DPO's workflow (issue 5): `accord test` on good and bad cases, `accord diff` on
//! pairs of agreements with known changes, `accord render` in headless Chromium, and
//! co-signing with `keygen`, `sign` and `verify`.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use accord::agreement::Agreement;
use accord::dpo::{diff, placeholder_engine};

use crate::common::{accord, chromium, example, root};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn example_yaml() -> String {
    std::fs::read_to_string(example("agreement.yaml")).unwrap()
}

/// The example agreement with each `(from, to)` replaced once; panics if one is absent,
/// so a fixture never silently stops changing anything.
fn edited(changes: &[(&str, &str)]) -> String {
    let mut yaml = example_yaml();
    for (from, to) in changes {
        assert!(yaml.contains(from), "the example no longer contains {from:?}");
        yaml = yaml.replacen(from, to, 1);
    }
    yaml
}

fn compiled(yaml: &str) -> Agreement {
    match Agreement::parse(yaml.as_bytes()) {
        Ok(l) => l.agreement,
        Err(d) => panic!("fixture does not check: {d:#?}"),
    }
}

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn run(args: &[&std::ffi::OsStr]) -> (Output, String, String) {
    let out = accord().args(args).output().unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    (out, stdout, stderr)
}

// ---------------------------------------------------------------------------
// accord test

#[test]
fn accord_test_passes_the_example_cases() {
    let (out, stdout, stderr) = run(&["test".as_ref(), example("agreement.yaml").as_os_str()]);
    assert!(out.status.success(), "{stdout}{stderr}");
    let cases = stdout.lines().filter(|l| l.starts_with("PASS ")).count();
    assert!(cases >= 12, "{stdout}");
    assert!(stdout.lines().all(|l| l.starts_with("PASS ") || l.ends_with(" passed, 0 failed")), "{stdout}");
    assert!(stdout.trim_end().ends_with(&format!("{cases} passed, 0 failed")), "{stdout}");
    // Every drop reason is covered by at least one case (but `suppressed`: a case file
    // holds no suppressions; tests/suppress.rs covers it).
    let file = std::fs::read_to_string(example("agreement.tests.yaml")).unwrap();
    for reason in accord::engine::DropReason::ALL.into_iter().filter(|r| *r != accord::engine::DropReason::Suppressed) {
        assert!(file.contains(&format!("dropped: {reason}")), "no case for {reason}");
    }
}

#[test]
fn accord_test_fails_bad_cases_with_a_readable_difference() {
    let dir = tempfile::tempdir().unwrap();
    let cases = write(
        dir.path(),
        "bad.tests.yaml",
        r#"- name: right
  event: { event_id: e1, source: wearable, device_id: wbl-0101, subject_id: emp-1, category: health,
           occurred_at: "2026-03-03T10:00:00+01:00", attributes: { heart_rate: 112 } }
  expect: { rule: heat-stress, outputs: { safety: { equals: { attributes.heart_rate: 110 } } } }
- name: wrong bucket
  event: { event_id: e2, source: wearable, device_id: wbl-0101, subject_id: emp-1, category: health,
           occurred_at: "2026-03-03T10:00:00+01:00", attributes: { heart_rate: 112 } }
  expect:
    outputs:
      safety:
        equals: { attributes.heart_rate: 115 }
        absent: [subject_id]
- name: wrong reason
  event: { event_id: e3, source: camera, subject_id: emp-1, category: emotion, occurred_at: "2026-03-03T10:00:00Z" }
  expect: { dropped: no_matching_rule }
- name: forgot a purpose
  event: { event_id: e4, source: access_pass, device_id: rdr-d01, subject_id: emp-7, category: access,
           occurred_at: "2026-03-03T10:00:00Z", attributes: { door: D1 } }
  expect: { outputs: { planning: { present: [attributes.door] } } }
- name: kept in the clear is not pseudonymised
  event: { event_id: e5, source: access_pass, device_id: rdr-ts-1, subject_id: emp-7, category: clocking,
           occurred_at: "2026-03-03T10:00:00Z" }
  expect: { outputs: { payroll: { pseudonymised: [subject_id] } } }
"#,
    );
    let (out, stdout, _) = run(&["test".as_ref(), example("agreement.yaml").as_os_str(), cases.as_os_str()]);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let file = cases.display().to_string();
    let expect = [
        format!("PASS {file}:1 right"),
        format!("FAIL {file}:5 wrong bucket"),
        "     safety: attributes.heart_rate: expected 115, got 110".to_string(),
        "     safety: subject_id: expected absent, got \"placeholder:".to_string(),
        format!("FAIL {file}:13 wrong reason"),
        "     expected dropped (no_matching_rule), got dropped (prohibited_category)".to_string(),
        format!("FAIL {file}:16 forgot a purpose"),
        "     unexpected output to purpose `safety`".to_string(),
        "     expected an output to purpose `planning`, got none (forwarded by rule `door-roll-call` to `safety`)".to_string(),
        format!("FAIL {file}:20 kept in the clear is not pseudonymised"),
        "     payroll: subject_id: expected pseudonymised (`placeholder:` and 32 hex digits), got \"emp-7\"".to_string(),
        "1 passed, 4 failed".to_string(),
    ];
    for line in expect {
        assert!(stdout.lines().any(|l| l.starts_with(&line)), "expected a line starting `{line}` in:\n{stdout}");
    }
}

#[test]
fn accord_test_reports_every_problem_in_a_case_file_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases = write(
        dir.path(),
        "typos.tests.yaml",
        "- name: a\n  event: { event_id: x }\n  expct: { dropped: malformed }\n- name: b\n  event: { event_id: x }\n  expect: { dropped: malformd }\n- name: c\n  event: { event_id: x }\n  expect: { outputs: { safty: { presnt: [subjct_id] } } }\n",
    );
    let (out, stdout, stderr) = run(&["test".as_ref(), example("agreement.yaml").as_os_str(), cases.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout.is_empty(), "no case runs while the file is broken: {stdout}");
    let stderr = stderr.replace(&cases.display().to_string(), "C");
    for (place, words) in [
        ("C:1:3: error:", "this case has no `expect`"),
        ("C:3:3: error:", "unknown key `expct` in a case; did you mean `expect`?"),
        ("C:6:22: error:", "unknown drop reason `malformd`; did you mean `malformed`?"),
        ("C:9:24: error:", "the agreement has no purpose `safty`; did you mean `safety`?"),
        ("C:9:33: error:", "unknown key `presnt`"),
    ] {
        assert!(stderr.lines().any(|l| l.starts_with(place) && l.contains(words)), "expected `{place} ...{words}...` in:\n{stderr}");
    }
}

// ---------------------------------------------------------------------------
// accord diff

fn changes(old: &str, new: &str) -> Vec<String> {
    diff::compare(&compiled(old), &compiled(new)).into_iter().map(|c| c.text).collect()
}

fn assert_names(changes: &[String], expected: &[&str]) {
    for e in expected {
        assert!(changes.iter().any(|c| c.contains(e)), "no change says {e:?}; the changes:\n{}", changes.join("\n"));
    }
}

#[test]
fn diff_of_a_reformatted_agreement_is_empty() {
    let base = example_yaml();
    let without_comments: String = base.lines().filter(|l| !l.trim_start().starts_with('#')).map(|l| format!("{l}\n")).collect();
    let reflowed = without_comments.replace("  domain: per_purpose\n  rotate: weekly\n", "  rotate: weekly\n  domain: per_purpose\n");
    assert_ne!(reflowed, base);
    assert_eq!(changes(&base, &reflowed), Vec::<String>::new());
}

#[test]
fn diff_names_each_change_in_rules_schedules_and_exceptions() {
    let new = edited(&[
        ("version: 4", "version: 5"),
        ("    until: \"19:00\"", "    until: \"22:00\""),
        ("    during: warehouse_shifts\n    purposes: [planning]", "    during: warehouse_shifts\n    purposes: [planning, safety]"),
        ("      attributes.heart_rate: { bucket: 5 }        # 112 -> 110\n", ""),
        ("      attributes.lat: { round: 3 }", "      attributes.lat: { round: 2 }"),
        ("      - attributes.alarm\n", ""),
        ("      purposes: [safety]\n      basis:", "      purposes: [safety, planning]\n      basis:"),
        ("match: { source: [tracker, wearable], category: [alarm] }", "match: { source: [tracker], category: [alarm, fall] }"),
        ("    during: working_hours\n    purposes: [it_security]", "    purposes: [it_security]"),
    ]);
    let all = changes(&example_yaml(), &new);
    assert_names(
        &all,
        &[
            "Version 4 becomes version 5.",
            "`working_hours` now ends at 22:00 instead of 19:00.",
            "Rule `shift-location`: tracker location now also goes to purpose `safety`.",
            "Rule `heat-stress`: `heart_rate` is no longer passed on to safety (it was rounded down to steps of 5).",
            "Rule `heat-stress`: `alarm` is no longer kept for safety.",
            "Rule `shift-location`: `lat` for planning and safety is now rounded to 2 decimals instead of 3.",
            "Health data may now also go to purpose `planning`.",
            "Rule `lone-worker-alarm` no longer matches source `wearable`.",
            "Rule `lone-worker-alarm` now also matches category `fall`.",
            "Rule `pc-activity`: computer_activity activity now passes at any time (before: only during `working_hours`).",
        ],
    );
    assert_eq!(all.len(), 10, "one sentence per change:\n{}", all.join("\n"));
}

#[test]
fn diff_names_changes_to_purposes_pseudonyms_parties_and_rule_order() {
    let base = example_yaml();
    let start = base.find("  # Planning: coarse location").unwrap();
    let end = base.find("  # IT security: activity").unwrap();
    // pc-activity moves before shift-location.
    let reordered = format!("{}{}{}", &base[..start], &base[end..], &base[start..end]);
    let new = reordered
        .replacen("  it_security:\n", "  hr:\n    description: Absence statistics.\n    topic: accord.hr\n  it_security:\n", 1)
        .replacen("    topic: accord.planning\n", "    topic: accord.planning-v2\n", 1)
        .replacen("  domain: per_purpose", "  domain: shared", 1)
        .replacen("  rotate: weekly", "  rotate: monthly", 1)
        .replacen("    - stress_level        #", "    - location_history\n    - stress_level        #", 1)
        .replacen("    hrv_ms: health\n", "    hrv_ms: health\n    core_temp_c: health\n", 1)
        .replacen("\"Ondernemingsraad ACME Utrecht\"]", "\"Ondernemingsraad ACME Utrecht\", \"FNV\"]", 1)
        .replacen("  valid_until: 2027-01-01", "  valid_until: 2027-07-01", 1)
        .replacen("    days: [mon, tue, wed, thu, fri, sat]", "    days: [mon, tue, wed, thu, fri]", 1)
        + "\n  - name: badge-stats\n    match: { category: [access] }\n    purposes: [hr]\n    keep: [attributes.door]\n";
    assert_ne!(new, base);
    let all = changes(&base, &new);
    assert_names(
        &all,
        &[
            "The version number stays 4 although what is enforced changes",
            "`FNV` becomes a party to the agreement.",
            "The agreement now ends on 2027-07-01 instead of 2027-01-01.",
            "New purpose `hr` (topic `accord.hr`): Absence statistics.",
            "Purpose `planning` now goes to topic `accord.planning-v2` instead of `accord.planning`.",
            "`location_history` is now prohibited",
            "Attribute `core_temp_c` now counts as health data",
            "`warehouse_shifts` no longer applies on Saturday.",
            "A worker now has one code for all purposes (shared)",
            "Codes now change monthly instead of weekly.",
            "New rule `badge-stats` (number 7 of 7): access from any sensor goes to purpose `hr`, keeping `door`.",
            "The rules are in a new order (the first that matches decides): `turnstile-clocking`, `door-roll-call`, `lone-worker-alarm`, `heat-stress`, `pc-activity`, `shift-location`",
        ],
    );
    // And back: removals are named too.
    let back = changes(&new, &base);
    assert_names(
        &back,
        &[
            "Purpose `hr` is removed: nothing goes to topic `accord.hr` any more.",
            "Rule `badge-stats` is removed: access from any sensor no longer goes to purpose `hr`",
            "`FNV` is no longer a party to the agreement.",
            "`location_history` is no longer prohibited by this agreement.",
            "A worker now has a different code in each purpose",
        ],
    );
}

#[test]
fn diff_replays_events_and_counts_changed_outcomes() {
    // Only the working day of the PC agent ends earlier: only pc-activity events change.
    let new = edited(&[("version: 4", "version: 5"), ("    until: \"19:00\"", "    until: \"09:00\"")]);
    let events = std::fs::read(example("events.jsonl")).unwrap();
    let old_engine = placeholder_engine(Arc::new(compiled(&example_yaml())));
    let new_engine = placeholder_engine(Arc::new(compiled(&new)));
    let replay = diff::replay(&old_engine, &new_engine, events.split(|b| *b == b'\n'));
    assert_eq!(replay.events, 365);
    assert!(replay.changed > 0);
    assert_eq!(replay.rules.keys().collect::<Vec<_>>(), ["pc-activity"], "{replay}");
    assert_eq!(replay.kinds.keys().collect::<Vec<_>>(), ["forwarded before, dropped now (outside_schedule)"], "{replay}");
    let it = replay.purposes["it_security"];
    assert_eq!((it.lost, it.gained, it.before - it.now), (replay.changed, 0, replay.changed));
    assert_eq!(replay.purposes["safety"].changed + replay.purposes["planning"].lost, 0);

    // The same through the binary: sentences, then the table.
    let dir = tempfile::tempdir().unwrap();
    let new_path = write(dir.path(), "new.yaml", &new);
    let (out, stdout, stderr) = run(&[
        "diff".as_ref(),
        example("agreement.yaml").as_os_str(),
        new_path.as_os_str(),
        "--events".as_ref(),
        example("events.jsonl").as_os_str(),
    ]);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("  - `working_hours` now ends at 09:00 instead of 19:00."), "{stdout}");
    assert!(stdout.contains(&format!("365 event(s) replayed: {} change outcome", replay.changed)), "{stdout}");
    assert!(stdout.lines().any(|l| l.trim_start().starts_with("pc-activity") && l.trim_end().ends_with(&replay.changed.to_string())), "{stdout}");
}

// ---------------------------------------------------------------------------
// accord render

#[test]
fn the_page_for_workers_shows_every_purpose_prohibited_category_and_party_in_both_languages() {
    let agreement = compiled(&example_yaml());
    let out_dir = root().join("target").join("dpo-render");
    std::fs::create_dir_all(&out_dir).unwrap();
    for (lang, words) in [
        ("en", ["What is never collected", "Who agreed this", "EU AI Act, art. 5(1)(f)", "It applies from"]),
        ("nl", ["Wat nooit wordt verzameld", "Wie dit heeft afgesproken", "AI-verordening, art. 5 lid 1 onder f", "De afspraak geldt van"]),
    ] {
        let html_path = out_dir.join(format!("agreement.{lang}.html"));
        let (out, _, stderr) = run(&["render".as_ref(), example("agreement.yaml").as_os_str(), "--output".as_ref(), html_path.as_os_str(), "--lang".as_ref(), lang.as_ref()]);
        assert!(out.status.success(), "{stderr}");
        let html = std::fs::read_to_string(&html_path).unwrap();
        // Self-contained: no scripts, nothing fetched.
        for banned in ["<script", "http://", "https://", " src=", "<link", "@import", "<img", "<iframe", "<object"] {
            assert!(!html.contains(banned), "{lang}: the page contains {banned:?}");
        }
        assert!(html.match_indices("url(").all(|(i, _)| html[i + 4..].starts_with('#')), "{lang}: a url() that is not a fragment");
        let dom = chromium(&html_path, &out_dir.join(format!("agreement.{lang}.png")));
        assert!(dom.contains("<svg"), "{lang}: no diagram in the DOM");
        for w in words {
            assert!(dom.contains(w), "{lang}: {w:?} not on the page");
        }
        for p in ["Safety", "Payroll", "Planning", "IT security"] {
            assert!(dom.matches(p).count() >= 2, "{lang}: purpose {p} not in both the diagram and the text");
        }
        for p in &agreement.parties {
            assert!(dom.contains(p.as_str()), "{lang}: party {p} missing");
        }
        let prohibited: Vec<&str> = agreement.taxonomy.iter().filter(|(_, _, c)| *c == accord::agreement::taxonomy::Class::Prohibited).map(|(_, n, _)| n).collect();
        assert!(prohibited.len() >= 13, "{prohibited:?}");
        for name in prohibited {
            assert!(dom.contains(&format!("<code>{name}</code>")), "{lang}: prohibited category {name} missing");
        }
        assert!(dom.contains("GDPR Art. 9(2)(b)"), "{lang}: the exception's basis is missing");
        assert!(std::fs::metadata(out_dir.join(format!("agreement.{lang}.png"))).unwrap().len() > 10_000);
    }
}

#[test]
fn the_page_escapes_what_the_agreement_says() {
    let yaml = edited(&[("Hours worked, from clocking", "Hours <b>worked</b> & paid, from clocking")]);
    let html = accord::dpo::render::render(&compiled(&yaml), accord::dpo::render::Lang::En);
    assert!(html.contains("Hours &lt;b&gt;worked&lt;/b&gt; &amp; paid"));
    assert!(!html.contains("<b>worked"));
}

// ---------------------------------------------------------------------------
// Co-signing

#[test]
fn every_party_signs_and_a_changed_byte_or_a_missing_party_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let agreement = write(d, "agreement.yaml", &example_yaml());
    let keys = d.join("keys");
    for party in ["ACME Logistics B.V.", "Ondernemingsraad ACME Utrecht"] {
        let (out, stdout, stderr) = run(&["keygen".as_ref(), "--party".as_ref(), party.as_ref(), "--out".as_ref(), keys.as_os_str()]);
        assert!(out.status.success(), "{stderr}");
        assert!(stdout.contains("fingerprint:"), "{stdout}");
    }
    let employer_key = keys.join("acme-logistics-b-v.key");
    let council_key = keys.join("ondernemingsraad-acme-utrecht.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&employer_key).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let public = std::fs::read_to_string(keys.join("ondernemingsraad-acme-utrecht.pub")).unwrap();
    assert!(public.starts_with("accord ed25519 public key v1\nparty: Ondernemingsraad ACME Utrecht\nkey: "), "{public}");
    // keygen never overwrites a key.
    let (out, _, stderr) = run(&["keygen".as_ref(), "--party".as_ref(), "ACME Logistics B.V.".as_ref(), "--out".as_ref(), keys.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("already exists"), "{stderr}");

    let verify = || {
        let employer = format!("ACME Logistics B.V.={}", keys.join("acme-logistics-b-v.pub").display());
        let council = format!("Ondernemingsraad ACME Utrecht={}", keys.join("ondernemingsraad-acme-utrecht.pub").display());
        run(&["verify".as_ref(), agreement.as_os_str(), "--party".as_ref(), employer.as_ref(), "--party".as_ref(), council.as_ref()])
    };

    // The employer signs; the council has not yet.
    let (out, stdout, stderr) = run(&["sign".as_ref(), agreement.as_os_str(), "--key".as_ref(), employer_key.as_os_str()]);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("signed by `ACME Logistics B.V.`"), "{stdout}");
    assert!(d.join("agreement.yaml.acme-logistics-b-v.sig").exists());
    let (out, _, stderr) = verify();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("`Ondernemingsraad ACME Utrecht` has not signed it"), "{stderr}");
    assert!(!stderr.contains("`ACME Logistics B.V.`"), "only the missing party is named: {stderr}");

    // Both signed: valid.
    let (out, _, stderr) = run(&["sign".as_ref(), agreement.as_os_str(), "--key".as_ref(), council_key.as_os_str()]);
    assert!(out.status.success(), "{stderr}");
    let (out, stdout, stderr) = verify();
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("signed by every party named"), "{stdout}");

    // One changed byte: both signatures fail, and both parties are named.
    let mut bytes = std::fs::read(&agreement).unwrap();
    let at = bytes.windows(10).position(|w| w == b"version: 4").unwrap() + 9;
    bytes[at] = b'5';
    std::fs::write(&agreement, &bytes).unwrap();
    let (out, _, stderr) = verify();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("the file was changed after `ACME Logistics B.V.` signed it"), "{stderr}");
    assert!(stderr.contains("the file was changed after `Ondernemingsraad ACME Utrecht` signed it"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one sentence: {stderr}");

    // The library call the gateway makes at start and reload says the same.
    let parties: Vec<_> = ["acme-logistics-b-v.pub", "ondernemingsraad-acme-utrecht.pub"]
        .iter()
        .map(|f| accord::dpo::signing::Party::from_file(&keys.join(f), None).unwrap())
        .collect();
    let err = accord::dpo::signing::verify_parties(&agreement, &bytes, &parties).unwrap_err();
    assert_eq!(err.parties(), ["ACME Logistics B.V.", "Ondernemingsraad ACME Utrecht"]);
}

#[test]
fn signing_refuses_an_agreement_with_errors_and_a_key_for_the_wrong_party() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let broken = write(d, "agreement.yaml", &edited(&[("version: 4", "version: four")]));
    let (out, _, _) = run(&["keygen".as_ref(), "--party".as_ref(), "OR".as_ref(), "--out".as_ref(), d.as_os_str()]);
    assert!(out.status.success());
    let (out, _, stderr) = run(&["sign".as_ref(), broken.as_os_str(), "--key".as_ref(), d.join("or.key").as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("not signed: fix the errors first"), "{stderr}");
    assert!(!d.join("agreement.yaml.or.sig").exists());

    let wrong = format!("Works council={}", d.join("or.pub").display());
    let (out, _, stderr) = run(&["verify".as_ref(), broken.as_os_str(), "--party".as_ref(), wrong.as_ref()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("is for party `OR`, not `Works council`"), "{stderr}");
}
