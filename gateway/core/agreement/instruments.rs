//! Approved instruments and their quality (SPEC 2.6): the `instruments` section read
//! with positions, checked, and compiled.
//!
//! When the agreement lists instruments, an event is admitted only from the first one
//! whose `source` matches and whose `devices` globs (if any) match the raw `device_id`,
//! and only while its validation has not expired; its `fields` are the only attributes
//! that go on to the rules, and its quality bounds must hold. The engine applies this
//! (steps 4a and 4b, `engine/instrument.rs`); this file owns the language: what a DPO
//! writes, every problem at its line, and the compiled [`Instrument`].
//!
//! Decisions where SPEC is silent, all fail-closed: `validation` with its `reference`
//! and `valid_until` is required (an instrument nobody validated is not approved);
//! `fields: []` lets no attribute through (only an absent `fields` means no limit); a
//! quality bound on a path that `fields` does not let through is an error (it could
//! never be met); a rule's `match.source` naming a source no instrument is for is an
//! error (all its events would be dropped as `unapproved_instrument`).

use chrono::{DateTime, Utc};

use super::compile::parse_instant;
use super::compiled::{FieldOp, Selector};
use super::diagnostic::{suggest, Diagnostics};
use super::model::{Doc, Reader, Text};
use super::yaml::{Node, Span};

/// One `instruments` entry as written.
#[derive(Debug)]
pub struct InstrumentDoc {
    pub span: Span,
    pub name: Option<Text>,
    pub source: Option<Text>,
    pub devices: Vec<Text>,
    pub validation: Option<ValidationDoc>,
    pub fields: Option<Vec<Text>>,
    pub quality: Vec<QualityDoc>,
}

#[derive(Debug)]
pub struct ValidationDoc {
    pub span: Span,
    pub reference: Option<Text>,
    pub valid_until: Option<Text>,
}

#[derive(Debug)]
pub struct QualityDoc {
    pub path: Text,
    pub min: Option<Text>,
    pub max: Option<Text>,
}

/// An approved instrument, compiled.
#[derive(Debug)]
pub struct Instrument {
    pub name: String,
    /// The line the entry starts on, for `explain`.
    pub line: usize,
    pub source: String,
    /// `source` in the normal form of SPEC 2.5, as events' sources are compared.
    pub source_normal: String,
    /// Glob patterns on the raw `device_id`; empty: any device (and none).
    pub devices: Vec<String>,
    /// The validation report, as the DPO wrote it.
    pub reference: String,
    /// From this instant on, the instrument is no longer approved.
    pub valid_until: DateTime<Utc>,
    /// The attribute paths it may send (each leaf `Keep`); `None`: no limit.
    pub fields: Option<Selector>,
    pub quality: Vec<Bound>,
    /// Per rule: every attribute path the rule treats lies within `fields`, so
    /// restricting the attributes first changes none of its outputs (the engine skips
    /// that work). Worked out once, at compile time.
    pub rule_within_fields: Vec<bool>,
}

/// The most quality bounds one instrument may have.
pub const MAX_BOUNDS: usize = 64;

/// An inclusive number bound on an attribute path.
#[derive(Debug)]
pub struct Bound {
    /// As written, e.g. `pos.accuracy_m`.
    pub path: String,
    /// The path's names, in normal form (SPEC 2.5).
    pub segments: Vec<String>,
    /// Each segment's [`crate::agreement::names::normal_hash`], to match members by.
    pub hashes: Vec<u64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl Instrument {
    /// Does this entry approve events of this source from this device?
    /// `source` is the event's source in normal form (SPEC 2.5); devices compare raw.
    pub fn admits(&self, source: &str, device_id: Option<&str>) -> bool {
        self.source_normal == source
            && (self.devices.is_empty() || device_id.is_some_and(|d| self.devices.iter().any(|g| glob(g, d))))
    }

    /// The `fields` as dotted paths (empty: none listed, or no limit; see `fields`).
    pub fn fields_list(&self) -> Vec<String> {
        self.fields.as_ref().map(|f| f.paths().into_iter().map(|(p, _)| p).collect()).unwrap_or_default()
    }
}

impl Bound {
    /// A bound on the path `segments` (names in normal form), written `path`.
    pub fn new(path: String, segments: Vec<String>, min: Option<f64>, max: Option<f64>) -> Bound {
        let hashes = segments.iter().map(|s| crate::agreement::names::normal_hash(s)).collect();
        Bound { path, segments, hashes, min, max }
    }

    pub fn holds(&self, x: f64) -> bool {
        self.min.is_none_or(|m| x >= m) && self.max.is_none_or(|m| x <= m)
    }

    /// `at least 1`, `at most 5` or `from 1 to 5`, for DPOs.
    pub fn describe(&self) -> String {
        match (self.min, self.max) {
            (Some(a), Some(b)) => format!("from {a} to {b}"),
            (Some(a), None) => format!("at least {a}"),
            (None, Some(b)) => format!("at most {b}"),
            (None, None) => "any number".to_string(),
        }
    }
}

/// `*` any run of characters (none too), `?` exactly one character; everything else
/// literal and case-sensitive. Linear in practice: one backtrack point, the last `*`.
pub fn glob(pattern: &str, text: &str) -> bool {
    let pat = pattern.as_bytes();
    let txt = text.as_bytes();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    let char_len = |b: u8| match b {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    };
    while ti < txt.len() {
        if pi < pat.len() && pat[pi] == b'*' {
            pi += 1;
            star = Some((pi, ti));
            continue;
        }
        if pi < pat.len() && pat[pi] == b'?' {
            pi += 1;
            ti += char_len(txt[ti]);
            continue;
        }
        if pi < pat.len() {
            let n = char_len(pat[pi]);
            if txt[ti..].starts_with(&pat[pi..pi + n]) {
                pi += n;
                ti += n;
                continue;
            }
        }
        match star {
            Some((sp, st)) => {
                let next = st + char_len(txt[st]);
                star = Some((sp, next));
                pi = sp;
                ti = next;
            }
            None => return false,
        }
    }
    pat[pi..].iter().all(|b| *b == b'*')
}

/// Reads the `instruments` list (shape only).
pub(super) fn read(r: &mut Reader<'_>, node: &Node) -> Vec<InstrumentDoc> {
    let mut out = Vec::new();
    for item in r.seq(node, "`instruments`").unwrap_or(&[]) {
        let Some(entries) = r.map(item, "an instrument") else { continue };
        let mut i = InstrumentDoc { span: item.span, name: None, source: None, devices: Vec::new(), validation: None, fields: None, quality: Vec::new() };
        for (k, v) in r.keys(entries, &["name", "source", "devices", "validation", "fields", "quality"], "in an instrument") {
            match k {
                "name" => i.name = r.text(v, "an instrument's `name`"),
                "source" => i.source = r.text(v, "an instrument's `source`"),
                "devices" => i.devices = r.texts(v, "`devices`"),
                "validation" => {
                    let mut val = ValidationDoc { span: v.span, reference: None, valid_until: None };
                    if let Some(entries) = r.map(v, "`validation`") {
                        for (k, v) in r.keys(entries, &["reference", "valid_until"], "in `validation`") {
                            if k == "reference" {
                                val.reference = r.text(v, "`reference`");
                            } else {
                                val.valid_until = r.text(v, "`valid_until`");
                            }
                        }
                    }
                    i.validation = Some(val);
                }
                "fields" => i.fields = Some(r.texts(v, "`fields`")),
                _ => {
                    for (path, bounds) in r.map(v, "`quality`").unwrap_or(&[]) {
                        let Some(path) = r.text(path, "an attribute path") else { continue };
                        let mut q = QualityDoc { path, min: None, max: None };
                        if let Some(entries) = r.map(bounds, "a quality bound (`{ min: 1, max: 5 }`)") {
                            for (k, v) in r.keys(entries, &["min", "max"], "in a quality bound") {
                                if k == "min" {
                                    q.min = r.text(v, "`min`");
                                } else {
                                    q.max = r.text(v, "`max`");
                                }
                            }
                        }
                        i.quality.push(q);
                    }
                }
            }
        }
        out.push(i);
    }
    out
}

/// Checks and compiles the section; `None` if the agreement has none.
pub(super) fn compile(doc: &Doc, diags: &mut Diagnostics) -> Option<Vec<Instrument>> {
    let docs = doc.instruments.as_ref()?;
    let mut out: Vec<Instrument> = Vec::new();
    for d in docs {
        let name = match &d.name {
            Some(n) => {
                if let Some(first) = out.iter().find(|o| o.name == n.value) {
                    diags.error(n.span, format!("instrument `{}` is already defined on line {}; instrument names must be unique", n.value, first.line));
                }
                n.value.clone()
            }
            None => {
                diags.error(d.span, "this instrument has no `name`; give each instrument a unique name");
                String::new()
            }
        };
        let what = if name.is_empty() { "this instrument".to_string() } else { format!("instrument `{name}`") };
        let source = match &d.source {
            Some(s) if !s.value.trim().is_empty() => s.value.clone(),
            Some(s) => {
                diags.error(s.span, format!("{what} has an empty `source`; name the kind of sensor, e.g. tracker"));
                String::new()
            }
            None => {
                diags.error(d.span, format!("{what} has no `source`; name the kind of sensor it is, e.g. `source: tracker`"));
                String::new()
            }
        };
        for g in &d.devices {
            if let Some(why) = bad_glob(&g.value) {
                diags.error(g.span, format!("device pattern `{}` {why}", g.value));
            }
        }
        let (reference, valid_until) = match &d.validation {
            None => {
                diags.error(d.span, format!("{what} has no `validation`; add its `reference` (the validation report) and `valid_until`, or it is not approved"));
                (String::new(), DateTime::<Utc>::MIN_UTC)
            }
            Some(v) => {
                let reference = match &v.reference {
                    Some(r) if !r.value.trim().is_empty() => r.value.clone(),
                    _ => {
                        diags.error(v.span, format!("the validation of {what} needs a `reference`: the report that shows its quality"));
                        String::new()
                    }
                };
                let until = match &v.valid_until {
                    Some(t) => parse_instant(&t.value).unwrap_or_else(|| {
                        diags.error(t.span, format!("`valid_until` must be a date like 2027-06-30 or a time like 2027-06-30T00:00:00+02:00, not `{}`", t.value));
                        DateTime::<Utc>::MIN_UTC
                    }),
                    None => {
                        diags.error(v.span, format!("the validation of {what} needs a `valid_until`: the date from which it is no longer approved"));
                        DateTime::<Utc>::MIN_UTC
                    }
                };
                (reference, until)
            }
        };
        let fields = d.fields.as_ref().map(|list| {
            if list.is_empty() {
                diags.warning(d.span, format!("{what} lists no `fields`, so no attribute of its events reaches any rule; leave `fields` out for no limit"));
            }
            let mut sel = Selector::default();
            for f in list {
                if let Some(segments) = attribute_path(f, diags) {
                    sel.insert(&segments, FieldOp::Keep);
                }
            }
            sel
        });
        let mut quality = Vec::new();
        if d.quality.len() > MAX_BOUNDS {
            diags.error(d.span, format!("{what} has {} quality bounds; at most {MAX_BOUNDS} are allowed", d.quality.len()));
        }
        for q in d.quality.iter().take(MAX_BOUNDS) {
            let Some(segments) = attribute_path(&q.path, diags) else { continue };
            if let Some(f) = &fields {
                if !sends(f, &segments) {
                    diags.error(q.path.span, format!("{what} has a quality bound on `{}`, but its `fields` do not let that attribute through, so the bound could never be met; add it to `fields`", q.path.value));
                }
            }
            let mut number = |t: &Option<Text>, key: &str| {
                t.as_ref().and_then(|t| match t.value.parse::<f64>() {
                    Ok(x) if x.is_finite() => Some(x),
                    _ => {
                        diags.error(t.span, format!("`{key}` must be a number, not `{}`", t.value));
                        None
                    }
                })
            };
            let (min, max) = (number(&q.min, "min"), number(&q.max, "max"));
            if q.min.is_none() && q.max.is_none() {
                diags.error(q.path.span, format!("the quality bound on `{}` names neither `min` nor `max`; write e.g. `{{ max: 5 }}`", q.path.value));
            }
            if let (Some(a), Some(b)) = (min, max) {
                if a > b {
                    diags.error(q.path.span, format!("the quality bound on `{}` has `min` {a} above `max` {b}; no reading could meet it", q.path.value));
                }
            }
            quality.push(Bound::new(q.path.value.clone(), segments.iter().map(|s| crate::agreement::names::normalise(s)).collect(), min, max));
        }
        out.push(Instrument {
            name,
            line: d.span.line,
            source_normal: crate::agreement::names::normalise(&source),
            source,
            devices: d.devices.iter().map(|g| g.value.clone()).collect(),
            reference,
            valid_until,
            fields,
            quality,
            rule_within_fields: Vec::new(),
        });
    }
    if docs.is_empty() {
        diags.warning(doc.rules_span.unwrap_or_default(), "`instruments` is empty: no instrument is approved, so every event will be dropped");
    }
    check_rules(doc, &out, diags);
    Some(out)
}

/// Works out [`Instrument::rule_within_fields`] once the rules are compiled.
pub(super) fn mark_rules(instruments: &mut [Instrument], rules: &[super::compiled::Rule]) {
    for ins in instruments {
        ins.rule_within_fields = rules
            .iter()
            .map(|r| match &ins.fields {
                None => true,
                Some(f) => r.attributes.paths().iter().all(|(path, _)| within(f, &path.split('.').collect::<Vec<_>>())),
            })
            .collect();
    }
}

/// Where an attribute path leads in an instrument's `fields` tree.
enum Reach {
    /// A field on the path, or on one of its parents, sends all of it.
    Covered,
    /// The path is a branch of the tree: the fields below it send part of it.
    Branch,
    /// No field names it.
    Off,
}

fn reach(fields: &Selector, path: &[&str]) -> Reach {
    let mut node = fields;
    for seg in path {
        if node.op.is_some() {
            return Reach::Covered;
        }
        match node.child(seg) {
            Some(c) => node = c,
            None => return Reach::Off,
        }
    }
    if node.op.is_some() {
        Reach::Covered
    } else {
        Reach::Branch
    }
}

/// Does a field (a leaf of the tree) name this path or one of its parents?
fn within(fields: &Selector, path: &[&str]) -> bool {
    matches!(reach(fields, path), Reach::Covered)
}

/// A path as written in `fields` or `quality`: `a.b`, relative to `attributes`.
fn attribute_path<'t>(t: &'t Text, diags: &mut Diagnostics) -> Option<Vec<&'t str>> {
    let segments: Vec<&str> = t.value.split('.').collect();
    if segments.iter().any(|s| s.is_empty()) {
        diags.error(t.span, format!("`{}` is not an attribute path; write a member name or a dotted path such as `pos.lat`", t.value));
        return None;
    }
    Some(segments)
}

/// Why a device pattern cannot be used, if it cannot.
fn bad_glob(g: &str) -> Option<&'static str> {
    if g.is_empty() {
        return Some("is empty; write a pattern such as `tag-*`, or leave `devices` out for any device");
    }
    if g.contains(['[', ']', '{', '}', '\\']) {
        return Some("uses a wildcard Accord does not know; only `*` (any run of characters) and `?` (one character) are wildcards");
    }
    if g.chars().any(char::is_control) {
        return Some("holds a control character");
    }
    None
}

/// Does the instrument's `fields` tree let (some of) this attribute path through?
/// A field on a parent sends everything under it; a field below the path sends part.
fn sends(fields: &Selector, path: &[&str]) -> bool {
    !matches!(reach(fields, path), Reach::Off)
}

/// Rules against the instruments: every source a rule matches must have an
/// instrument (error), and every attribute path it treats must be sent by at least one
/// instrument of its sources (warning: the path is always absent).
fn check_rules(doc: &Doc, instruments: &[Instrument], diags: &mut Diagnostics) {
    for rule in &doc.rules {
        let name = rule.name.as_ref().map(|n| n.value.as_str()).unwrap_or("");
        if let Some(sources) = &rule.match_source {
            for s in sources {
                if !instruments.iter().any(|i| i.source == s.value) {
                    let hint = suggest(&s.value, instruments.iter().map(|i| i.source.as_str()));
                    diags.error(s.span, format!("rule `{name}` matches source `{}`, but no instrument in `instruments` is for that source, so every such event is dropped as unapproved{hint}; add an approved instrument or remove the source", s.value));
                }
            }
        }
        let of_rule: Vec<&Instrument> = instruments
            .iter()
            .filter(|i| rule.match_source.as_ref().is_none_or(|l| l.iter().any(|s| s.value == i.source)))
            .collect();
        if of_rule.is_empty() {
            continue;
        }
        let paths = rule.keep.iter().chain(&rule.pseudonymise).chain(rule.generalise.iter().map(|g| &g.path));
        for p in paths {
            let Some(rest) = p.value.strip_prefix("attributes.") else { continue };
            let segments: Vec<&str> = rest.split('.').collect();
            if segments.iter().any(|s| s.is_empty()) {
                continue;
            }
            if !of_rule.iter().any(|i| i.fields.as_ref().is_none_or(|f| sends(f, &segments))) {
                let names: Vec<String> = of_rule.iter().map(|i| format!("`{}`", i.name)).collect();
                diags.warning(p.span, format!("rule `{name}` treats `{}`, but no instrument of its sources sends it (by their `fields`: {}); it will always be absent", p.value, names.join(", ")));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::model::Spanned;
    use super::*;
    use proptest::prelude::*;

    fn t(s: &str) -> Text {
        Spanned { value: s.to_string(), span: Span::default() }
    }

    #[test]
    fn globs_match_runs_and_single_characters_case_sensitively() {
        assert!(glob("tag-*", "tag-0042"));
        assert!(glob("tag-*", "tag-"));
        assert!(!glob("tag-*", "TAG-1"));
        assert!(glob("t?g-*-x", "tög-1-2-x"));
        assert!(!glob("t?g", "tg"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exactly"));
    }

    /// A reference matcher: the obvious exponential recursion.
    fn reference(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('*', rest)) => (0..=t.len()).any(|i| reference(rest, &t[i..])),
            Some(('?', rest)) => !t.is_empty() && reference(rest, &t[1..]),
            Some((c, rest)) => t.first() == Some(c) && reference(rest, &t[1..]),
        }
    }

    proptest! {
        #[test]
        fn glob_agrees_with_the_reference(p in "[ab*?é]{0,7}", s in "[abé]{0,9}") {
            let pc: Vec<char> = p.chars().collect();
            let sc: Vec<char> = s.chars().collect();
            prop_assert_eq!(glob(&p, &s), reference(&pc, &sc));
        }
    }

    #[test]
    fn sends_covers_parents_and_children() {
        let mut f = Selector::default();
        f.insert(&["pos", "lat"], FieldOp::Keep);
        f.insert(&["zone"], FieldOp::Keep);
        assert!(sends(&f, &["zone"]));
        assert!(sends(&f, &["zone", "x"]));
        assert!(sends(&f, &["pos"]));
        assert!(sends(&f, &["pos", "lat"]));
        assert!(!sends(&f, &["pos", "lon"]));
        assert!(!sends(&f, &["speed"]));
    }

    #[test]
    fn within_needs_a_field_on_the_path_or_above_it() {
        let mut f = Selector::default();
        f.insert(&["pos", "lat"], FieldOp::Keep);
        f.insert(&["zone"], FieldOp::Keep);
        assert!(within(&f, &["zone"]));
        assert!(within(&f, &["zone", "x"]));
        assert!(within(&f, &["pos", "lat"]));
        assert!(!within(&f, &["pos"]));
        assert!(!within(&f, &["speed"]));
    }

    #[test]
    fn bad_patterns_and_paths_are_refused() {
        assert!(bad_glob("").is_some());
        assert!(bad_glob("tag-[0-9]").is_some());
        assert!(bad_glob("tag-*").is_none());
        let mut d = Diagnostics::default();
        assert!(attribute_path(&t("pos..lat"), &mut d).is_none());
        assert!(d.has_errors());
    }
}
