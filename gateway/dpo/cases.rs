//! `accord test`: test cases for an agreement, kept beside it like policy tests.
//!
//! A case file is a YAML list of cases. Each has a `name`, an `event` (the JSON event
//! written as YAML, or a string holding raw JSON, for malformed input) and what is
//! expected: either `dropped: REASON`, or `outputs:` naming every purpose the event
//! must reach and, per purpose, which paths are `present`, `absent` or
//! `pseudonymised`, and which `equals` a value (a generalised one, say). An output to
//! a purpose the case does not list is a failure; `rule:` optionally names the rule
//! that must decide.
//!
//! ```yaml
//! - name: heart rate reaches safety in steps of 5
//!   event: { event_id: t1, source: wearable, subject_id: emp-1, category: health,
//!            occurred_at: "2026-03-03T10:00:00+01:00", attributes: { heart_rate: 112 } }
//!   expect:
//!     rule: heat-stress
//!     outputs:
//!       safety:
//!         pseudonymised: [subject_id]
//!         equals: { attributes.heart_rate: 110 }
//! ```
//!
//! Reading checks the file against the agreement (known keys, purposes, drop reasons
//! and paths) and reports every problem at its line; running a case calls the engine
//! the gateway runs and returns each difference as `expected ..., got ...`.

use serde_json::Value;

use crate::agreement::diagnostic::{suggest, Diagnostics};
use crate::agreement::yaml::{self, Node, NodeKind, Span};
use crate::agreement::{Agreement, Diagnostic};
use crate::engine::{DropReason, Engine, Outputs, Verdict};
use crate::event::Format;

use super::PLACEHOLDER_KEY_ID;

/// One test case.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    /// Where the case starts in its file.
    pub span: Span,
    /// The event as JSON bytes, exactly as the engine will read it.
    pub event: Vec<u8>,
    pub expect: Expect,
}

#[derive(Clone, Debug)]
pub enum Expect {
    Dropped(DropReason),
    Forwarded { rule: Option<String>, outputs: Vec<OutputExpect> },
}

/// What one purpose's output must hold. Paths are dotted paths into the output event
/// (`subject_id`, `attributes.vitals.heart_rate`, `accord.rule`).
#[derive(Clone, Debug, Default)]
pub struct OutputExpect {
    pub purpose: String,
    pub present: Vec<String>,
    pub absent: Vec<String>,
    pub pseudonymised: Vec<String>,
    pub equals: Vec<(String, Value)>,
}


/// The top-level fields of an output event; `attributes.` and `accord.` paths go deeper.
const FIELDS: [&str; 8] = ["event_id", "source", "category", "occurred_at", "subject_id", "device_id", "attributes", "accord"];

/// Reads a case file, checking it against the agreement. On problems, every one.
pub fn parse(text: &str, agreement: &Agreement) -> Result<Vec<Case>, Vec<Diagnostic>> {
    let root = yaml::parse(text).map_err(|e| vec![Diagnostic::error(e.span, e.message)])?;
    let mut r = Reader { diags: Diagnostics::default(), agreement };
    yaml::duplicate_keys(&root, |key, first, again| {
        r.diags.error(again, format!("`{key}` is given twice in one mapping (first on line {}); keep one: YAML tools disagree on which counts", first.line));
    });
    let mut cases = Vec::new();
    match &root.kind {
        NodeKind::Seq(items) => {
            for item in items {
                if let Some(case) = r.case(item) {
                    cases.push(case);
                }
            }
        }
        _ => r.diags.error(root.span, "a case file is a list of cases, each starting with `- name: ...`"),
    }
    let mut seen: Vec<&str> = Vec::new();
    for case in &cases {
        if seen.contains(&case.name.as_str()) {
            r.diags.error(case.span, format!("the case name `{}` is used twice; give each case its own name", case.name));
        }
        seen.push(&case.name);
    }
    if r.diags.has_errors() {
        Err(r.diags.into_sorted())
    } else {
        Ok(cases)
    }
}

/// Runs one case; each difference between what was expected and what happened, as a
/// sentence. Empty: the case passes.
pub fn run(engine: &Engine, case: &Case) -> Vec<String> {
    let a = &**engine.agreement();
    let mut out = Outputs::default();
    let verdict = engine.process(&case.event, Format::Json, &mut out);
    let got = describe_verdict(engine, verdict, &out);
    let mut diffs = Vec::new();
    match (&case.expect, verdict) {
        (Expect::Dropped(want), Verdict::Dropped(d)) if *want == d.reason => {}
        (Expect::Dropped(want), _) => diffs.push(format!("expected dropped ({want}), got {got}")),
        (Expect::Forwarded { outputs, .. }, Verdict::Dropped(_)) => {
            let names: Vec<String> = outputs.iter().map(|o| format!("`{}`", o.purpose)).collect();
            diffs.push(format!("expected outputs to {}, got {got}", names.join(", ")));
        }
        (Expect::Forwarded { rule, outputs }, Verdict::Forwarded(decision)) => {
            let decided = &a.rules[decision.rule].name;
            if let Some(rule) = rule {
                if rule != decided {
                    diffs.push(format!("expected rule `{rule}` to decide, got rule `{decided}`"));
                }
            }
            let input: Option<Value> = serde_json::from_slice(&case.event).ok();
            for o in &out.items {
                let name = &a.purposes[o.purpose as usize].name;
                if !outputs.iter().any(|e| &e.purpose == name) {
                    diffs.push(format!("unexpected output to purpose `{name}`: {}", short(&String::from_utf8_lossy(out.payload(o)))));
                }
            }
            for want in outputs {
                let found = out.items.iter().find(|o| a.purposes[o.purpose as usize].name == want.purpose);
                let Some(o) = found else {
                    diffs.push(format!("expected an output to purpose `{}`, got none ({got})", want.purpose));
                    continue;
                };
                let payload: Value = serde_json::from_slice(out.payload(o)).expect("the engine writes valid JSON");
                check_output(want, &payload, input.as_ref(), &mut diffs);
            }
        }
    }
    diffs
}

fn check_output(want: &OutputExpect, payload: &Value, input: Option<&Value>, diffs: &mut Vec<String>) {
    let p = &want.purpose;
    for path in &want.present {
        if lookup(payload, path).is_none() {
            diffs.push(format!("{p}: {path}: expected present, got absent"));
        }
    }
    for path in &want.absent {
        if let Some(v) = lookup(payload, path) {
            diffs.push(format!("{p}: {path}: expected absent, got {}", show(v)));
        }
    }
    for path in &want.pseudonymised {
        match lookup(payload, path) {
            None => diffs.push(format!("{p}: {path}: expected pseudonymised, got absent")),
            Some(v) => {
                let original = input.and_then(|i| lookup(i, path));
                let is_pseudonym = v.as_str().is_some_and(is_pseudonym);
                let unchanged = original.is_some_and(|o| o == v || o.as_str().is_some_and(|s| Some(s) == v.as_str()));
                if !is_pseudonym || unchanged {
                    diffs.push(format!("{p}: {path}: expected pseudonymised (`{PLACEHOLDER_KEY_ID}:` and 32 hex digits), got {}", show(v)));
                }
            }
        }
    }
    for (path, expected) in &want.equals {
        match lookup(payload, path) {
            None => diffs.push(format!("{p}: {path}: expected {}, got absent", show(expected))),
            Some(v) if !same(v, expected) => diffs.push(format!("{p}: {path}: expected {}, got {}", show(expected), show(v))),
            Some(_) => {}
        }
    }
}

/// What happened to an event, in words: `dropped (reason: ...)` or `forwarded by ...`.
fn describe_verdict(engine: &Engine, verdict: Verdict, out: &Outputs) -> String {
    let a = &**engine.agreement();
    match verdict {
        Verdict::Dropped(d) => match d.malformed {
            Some(m) => format!("dropped ({}: {m})", d.reason),
            None => format!("dropped ({})", d.reason),
        },
        Verdict::Forwarded(decision) => {
            let names: Vec<String> = out.items.iter().map(|o| format!("`{}`", a.purposes[o.purpose as usize].name)).collect();
            format!("forwarded by rule `{}` to {}", a.rules[decision.rule].name, names.join(", "))
        }
    }
}

fn is_pseudonym(s: &str) -> bool {
    s.strip_prefix(PLACEHOLDER_KEY_ID)
        .and_then(|rest| rest.strip_prefix(':'))
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

/// A dotted path into a JSON value.
pub fn lookup<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(value, |v, seg| v.as_object()?.get(seg))
}

/// JSON equality, with numbers compared by value (`110` equals `110.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64().zip(y.as_f64()).is_some_and(|(x, y)| x == y),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y)),
        (Value::Object(x), Value::Object(y)) => x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w))),
        _ => a == b,
    }
}

fn show(v: &Value) -> String {
    short(&v.to_string())
}

fn short(s: &str) -> String {
    if s.chars().count() > 120 {
        format!("{}...", s.chars().take(117).collect::<String>())
    } else {
        s.to_string()
    }
}

struct Reader<'a> {
    diags: Diagnostics,
    agreement: &'a Agreement,
}

impl Reader<'_> {
    fn case(&mut self, node: &Node) -> Option<Case> {
        let NodeKind::Map(entries) = &node.kind else {
            self.diags.error(node.span, format!("a case must be a mapping with `name`, `event` and `expect`, not {}", node.kind_name()));
            return None;
        };
        // The case's place: its first key, where `- name:` stands.
        let span = entries.first().map_or(node.span, |(k, _)| k.span);
        let (mut name, mut event, mut expect) = (None, None, None);
        for (key, value) in self.keys(entries, &["name", "event", "expect"], "in a case") {
            match key {
                "name" => name = self.scalar(value, "a case's `name`"),
                "event" => event = self.event(value),
                _ => expect = self.expect(value),
            }
        }
        if name.is_none() {
            self.diags.error(span, "this case has no `name`; name it after what it shows (e.g. `heart rate reaches safety in steps of 5`)");
        }
        if event.is_none() && !entries.iter().any(|(k, _)| k.as_scalar() == Some("event")) {
            self.diags.error(span, "this case has no `event`; give the sensor event, as YAML or as a JSON string");
        }
        if expect.is_none() && !entries.iter().any(|(k, _)| k.as_scalar() == Some("expect")) {
            self.diags.error(span, "this case has no `expect`; say `dropped: REASON` or list the `outputs`");
        }
        Some(Case { name: name?, span, event: event?, expect: expect? })
    }

    fn event(&mut self, node: &Node) -> Option<Vec<u8>> {
        match &node.kind {
            // A string is the raw JSON text, for malformed events.
            NodeKind::Scalar { text, .. } => Some(text.clone().into_bytes()),
            NodeKind::Map(_) => {
                let mut json = String::new();
                self.json(node, &mut json).then(|| json.into_bytes())
            }
            NodeKind::Seq(_) => {
                self.diags.error(node.span, "`event` must be a mapping (the event's fields) or a string of raw JSON, not a list");
                None
            }
        }
    }

    fn expect(&mut self, node: &Node) -> Option<Expect> {
        let NodeKind::Map(entries) = &node.kind else {
            self.diags.error(node.span, "`expect` must be a mapping: `{ dropped: REASON }` or `{ outputs: { PURPOSE: {...} } }`");
            return None;
        };
        let found = self.keys(entries, &["dropped", "rule", "outputs"], "in `expect`");
        let get = |k: &str| found.iter().find(|(name, _)| *name == k).map(|(_, v)| *v);
        match (get("dropped"), get("outputs")) {
            (Some(reason), None) => {
                if let Some(rule) = get("rule") {
                    self.diags.error(rule.span, "a dropped event has no rule to check; remove `rule` or expect `outputs`");
                }
                let text = self.scalar(reason, "`dropped`")?;
                match DropReason::ALL.iter().find(|r| r.as_str() == text) {
                    Some(r) => Some(Expect::Dropped(*r)),
                    None => {
                        let reasons = DropReason::ALL.map(DropReason::as_str);
                        let hint = suggest(&text, reasons);
                        self.diags.error(reason.span, format!("unknown drop reason `{text}`{hint} (the reasons: {})", reasons.join(", ")));
                        None
                    }
                }
            }
            (None, Some(outputs)) => {
                let rule = match get("rule") {
                    Some(node) => {
                        let name = self.scalar(node, "`rule`")?;
                        if self.agreement.rule_index(&name).is_none() {
                            let hint = suggest(&name, self.agreement.rules.iter().map(|r| r.name.as_str()));
                            self.diags.error(node.span, format!("the agreement has no rule `{name}`{hint}"));
                        }
                        Some(name)
                    }
                    None => None,
                };
                let outputs = self.outputs(outputs)?;
                Some(Expect::Forwarded { rule, outputs })
            }
            (Some(d), Some(_)) => {
                self.diags.error(d.span, "expect either `dropped` or `outputs`, not both");
                None
            }
            (None, None) => {
                if !found.is_empty() || entries.is_empty() {
                    self.diags.error(node.span, "say what to expect: `dropped: REASON`, or `outputs:` with every purpose the event reaches");
                }
                None
            }
        }
    }

    fn outputs(&mut self, node: &Node) -> Option<Vec<OutputExpect>> {
        let NodeKind::Map(entries) = &node.kind else {
            self.diags.error(node.span, "`outputs` must map each purpose the event reaches to what its output holds (`safety: { present: [...] }`)");
            return None;
        };
        if entries.is_empty() {
            self.diags.error(node.span, "`outputs` names no purpose; a forwarded event reaches at least one (or expect `dropped`)");
            return None;
        }
        let mut list: Vec<OutputExpect> = Vec::new();
        let mut ok = true;
        for (key, value) in entries {
            let Some(purpose) = self.scalar(key, "a purpose name") else {
                ok = false;
                continue;
            };
            if self.agreement.purpose_index(&purpose).is_none() {
                let hint = suggest(&purpose, self.agreement.purposes.iter().map(|p| p.name.as_str()));
                self.diags.error(key.span, format!("the agreement has no purpose `{purpose}`{hint}"));
                ok = false;
            }
            if list.iter().any(|o| o.purpose == purpose) {
                self.diags.error(key.span, format!("purpose `{purpose}` is listed twice; keep one"));
                ok = false;
            }
            let mut o = OutputExpect { purpose, ..OutputExpect::default() };
            match &value.kind {
                NodeKind::Map(checks) => {
                    for (k, v) in self.keys(checks, &["present", "absent", "pseudonymised", "equals"], &format!("in output `{}`", o.purpose)) {
                        match k {
                            "present" => o.present = self.paths(v, "`present`"),
                            "absent" => o.absent = self.paths(v, "`absent`"),
                            "pseudonymised" => o.pseudonymised = self.paths(v, "`pseudonymised`"),
                            _ => match &v.kind {
                                NodeKind::Map(pairs) => {
                                    for (path, expected) in pairs {
                                        let (Some(path), Some(value)) = (self.path(path), self.value(expected)) else { continue };
                                        o.equals.push((path, value));
                                    }
                                }
                                _ => self.diags.error(v.span, "`equals` must map paths to values (`{ attributes.heart_rate: 110 }`)"),
                            },
                        }
                    }
                }
                _ if value.is_null() => {}
                _ => {
                    self.diags.error(value.span, format!("the output to `{}` must be a mapping of checks (`present`, `absent`, `pseudonymised`, `equals`) or `{{}}`", o.purpose));
                    ok = false;
                }
            }
            list.push(o);
        }
        ok.then_some(list)
    }

    fn paths(&mut self, node: &Node, what: &str) -> Vec<String> {
        match &node.kind {
            NodeKind::Seq(items) => items.iter().filter_map(|n| self.path(n)).collect(),
            NodeKind::Scalar { .. } if !node.is_null() => self.path(node).into_iter().collect(),
            _ if node.is_null() => Vec::new(),
            _ => {
                self.diags.error(node.span, format!("{what} must be a list of paths (`[subject_id, attributes.zone]`)"));
                Vec::new()
            }
        }
    }

    fn path(&mut self, node: &Node) -> Option<String> {
        let path = self.scalar(node, "a path")?;
        let first = path.split('.').next().unwrap_or("");
        if !FIELDS.contains(&first) || path.split('.').any(str::is_empty) {
            let hint = suggest(first, FIELDS);
            self.diags.error(
                node.span,
                format!("`{path}` is not a path in an output event (paths are `subject_id`, `device_id`, `occurred_at`, `attributes.NAME...`, `accord.rule` and the like){hint}"),
            );
            return None;
        }
        Some(path)
    }

    fn value(&mut self, node: &Node) -> Option<Value> {
        let mut json = String::new();
        if !self.json(node, &mut json) {
            return None;
        }
        Some(serde_json::from_str(&json).expect("json() writes valid JSON"))
    }

    /// Writes a YAML node as JSON text (YAML 1.2 core types; numbers as written).
    fn json(&mut self, node: &Node, out: &mut String) -> bool {
        match &node.kind {
            NodeKind::Scalar { text, quoted: true } => out.push_str(&serde_json::to_string(text).expect("a string serialises")),
            NodeKind::Scalar { text, quoted: false } => match plain_scalar(text) {
                Some(json) => out.push_str(&json),
                None => {
                    self.diags.error(node.span, format!("`{text}` cannot be written in JSON; quote it if it is text"));
                    return false;
                }
            },
            NodeKind::Seq(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    if !self.json(item, out) {
                        return false;
                    }
                }
                out.push(']');
            }
            NodeKind::Map(entries) => {
                out.push('{');
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let Some(key) = self.scalar(k, "a field name") else { return false };
                    out.push_str(&serde_json::to_string(&key).expect("a string serialises"));
                    out.push(':');
                    if !self.json(v, out) {
                        return false;
                    }
                }
                out.push('}');
            }
        }
        true
    }

    fn scalar(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.kind {
            NodeKind::Scalar { text, .. } if !node.is_null() => Some(text.clone()),
            _ => {
                self.diags.error(node.span, format!("{what} must be a single value, not {}", node.kind_name()));
                None
            }
        }
    }

    fn keys<'n>(&mut self, entries: &'n [(Node, Node)], known: &[&'static str], place: &str) -> Vec<(&'static str, &'n Node)> {
        crate::agreement::model::known_keys(&mut self.diags, entries, known, place)
    }
}

/// A plain YAML scalar as JSON: null, a boolean, a number (kept as written when it is
/// already a JSON number), or else a string. `None` for what JSON cannot hold.
fn plain_scalar(text: &str) -> Option<String> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Some("null".into()),
        "true" | "True" | "TRUE" => return Some("true".into()),
        "false" | "False" | "FALSE" => return Some("false".into()),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "-.inf" | "-.Inf" | "-.INF" | ".nan" | ".NaN" | ".NAN" => return None,
        _ => {}
    }
    if is_json_number(text) {
        return Some(text.to_string());
    }
    // Other YAML numbers: `+1`, `.5`, `1.`, `0x1f`, `0o17`.
    let digits = text.strip_prefix('+').unwrap_or(text);
    if let Some(hex) = digits.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).ok().map(|n| n.to_string()).or_else(|| Some(quote(text)));
    }
    if let Some(oct) = digits.strip_prefix("0o") {
        return i64::from_str_radix(oct, 8).ok().map(|n| n.to_string()).or_else(|| Some(quote(text)));
    }
    let numeric = digits.bytes().any(|b| b.is_ascii_digit())
        && digits.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
        && digits.bytes().next().is_some_and(|b| b.is_ascii_digit() || b == b'.' || b == b'-');
    if numeric {
        if let Some(n) = digits.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
            return Some(n.to_string());
        }
    }
    Some(quote(text))
}

fn quote(text: &str) -> String {
    serde_json::to_string(text).expect("a string serialises")
}

/// Is `text` a number exactly as JSON writes it (serde_json's own grammar)?
fn is_json_number(text: &str) -> bool {
    serde_json::from_str::<serde_json::Number>(text).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_scalars_take_yaml_core_types() {
        assert_eq!(plain_scalar("112").unwrap(), "112");
        assert_eq!(plain_scalar("37.84").unwrap(), "37.84");
        assert_eq!(plain_scalar("-0.5e3").unwrap(), "-0.5e3");
        assert_eq!(plain_scalar("+1").unwrap(), "1.0");
        assert_eq!(plain_scalar("0x1f").unwrap(), "31");
        assert_eq!(plain_scalar("true").unwrap(), "true");
        assert_eq!(plain_scalar("~").unwrap(), "null");
        assert_eq!(plain_scalar("2026-03-02T10:00:00+01:00").unwrap(), "\"2026-03-02T10:00:00+01:00\"");
        assert_eq!(plain_scalar("emp-00417").unwrap(), "\"emp-00417\"");
        assert_eq!(plain_scalar("007").unwrap(), "7.0");
        assert!(plain_scalar(".nan").is_none());
    }

    #[test]
    fn pseudonyms_have_the_placeholder_form() {
        assert!(is_pseudonym("placeholder:0123456789abcdef0123456789abcdef"));
        assert!(!is_pseudonym("placeholder:0123456789ABCDEF0123456789abcdef"));
        assert!(!is_pseudonym("emp-1"));
    }

    #[test]
    fn numbers_compare_by_value() {
        assert!(same(&serde_json::json!(110), &serde_json::json!(110.0)));
        assert!(!same(&serde_json::json!(110), &serde_json::json!("110")));
    }
}
