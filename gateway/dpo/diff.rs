//! `accord diff OLD NEW`: what changes in enforcement between two agreements, in
//! sentences a works council understands, and, on a sample of events, how many
//! events' outcomes change.
//!
//! [`compare`] works on the compiled agreements, so comments, layout and key order
//! are never differences: purposes, rules and schedules are matched by name (a renamed
//! rule is one removed and one added), purpose sets by purpose name, and taxonomy
//! additions by category. [`replay`] runs each event through two engines with the same
//! placeholder key and compares verdict, drop reason, purposes and each output (without
//! its `accord` stamp, which names the version and so always differs).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::agreement::taxonomy::Class;
use crate::agreement::{Agreement, Domain, FieldOp, PurposeSet, Rotate, Rule, Schedule};
use crate::engine::{DropReason, Engine, Outputs, Verdict};
use crate::event::Format;

use super::and_list;
use super::hhmm;

/// The part of the agreement a change is in, in file order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    Agreement,
    Purposes,
    Categories,
    Schedules,
    Pseudonymisation,
    Instruments,
    Rules,
}

impl Section {
    pub fn title(self) -> &'static str {
        match self {
            Section::Agreement => "The agreement",
            Section::Purposes => "Purposes",
            Section::Categories => "What is never collected, and the exceptions",
            Section::Schedules => "Schedules",
            Section::Pseudonymisation => "Pseudonyms",
            Section::Instruments => "Approved instruments",
            Section::Rules => "Rules",
        }
    }
}

/// One change, as a sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub section: Section,
    pub text: String,
}

/// Every difference in what is enforced, in file order.
pub fn compare(old: &Agreement, new: &Agreement) -> Vec<Change> {
    let mut c = Changes::default();
    header(old, new, &mut c);
    purposes(old, new, &mut c);
    categories(old, new, &mut c);
    schedules(old, new, &mut c);
    pseudonymisation(old, new, &mut c);
    for text in super::instruments::changes(old, new) {
        c.push(Section::Instruments, text);
    }
    rules(old, new, &mut c);
    if old.version == new.version && c.list.iter().any(|ch| ch.section != Section::Agreement) {
        c.push(
            Section::Agreement,
            format!("The version number stays {} although what is enforced changes; raise it, so every output shows which version decided it.", new.version),
        );
    }
    c.list.sort_by_key(|ch| ch.section);
    c.list
}

/// The changes as text, one section per heading.
pub fn render(changes: &[Change]) -> String {
    let mut s = String::new();
    let mut section = None;
    for ch in changes {
        if section != Some(ch.section) {
            if section.is_some() {
                s.push('\n');
            }
            let _ = writeln!(s, "{}", ch.section.title());
            section = Some(ch.section);
        }
        let _ = writeln!(s, "  - {}", ch.text);
    }
    s
}

#[derive(Default)]
struct Changes {
    list: Vec<Change>,
}

impl Changes {
    fn push(&mut self, section: Section, text: impl Into<String>) {
        self.list.push(Change { section, text: text.into() });
    }
}

fn header(old: &Agreement, new: &Agreement, c: &mut Changes) {
    let s = Section::Agreement;
    if old.id != new.id {
        c.push(s, format!("The agreement's id changes from `{}` to `{}` (every output carries it).", old.id, new.id));
    }
    if old.version != new.version {
        c.push(s, format!("Version {} becomes version {}.", old.version, new.version));
    }
    for p in &new.parties {
        if !old.parties.contains(p) {
            c.push(s, format!("`{p}` becomes a party to the agreement."));
        }
    }
    for p in &old.parties {
        if !new.parties.contains(p) {
            c.push(s, format!("`{p}` is no longer a party to the agreement."));
        }
    }
    match (old.valid_from, new.valid_from) {
        (a, b) if a == b => {}
        (Some(a), Some(b)) => c.push(s, format!("The agreement now takes effect on {} instead of {}.", moment(b), moment(a))),
        (None, Some(b)) => c.push(s, format!("The agreement now takes effect on {} (before: no start date).", moment(b))),
        (Some(a), None) => c.push(s, format!("The agreement no longer has a start date (before: {}).", moment(a))),
        (None, None) => {}
    }
    match (old.valid_until, new.valid_until) {
        (a, b) if a == b => {}
        (Some(a), Some(b)) => c.push(s, format!("The agreement now ends on {} instead of {}.", moment(b), moment(a))),
        (None, Some(b)) => c.push(s, format!("The agreement now ends on {} (before: no end date).", moment(b))),
        (Some(a), None) => c.push(s, format!("The agreement no longer ends (before: it ended on {}).", moment(a))),
        (None, None) => {}
    }
}

fn purposes(old: &Agreement, new: &Agreement, c: &mut Changes) {
    let s = Section::Purposes;
    for p in &new.purposes {
        let Some(o) = old.purposes.iter().find(|o| o.name == p.name) else {
            let identified = if p.identified { "; it receives workers' ids in the clear" } else { "" };
            c.push(s, format!("New purpose `{}` (topic `{}`){identified}: {}", p.name, p.topic, sentence(&p.description)));
            continue;
        };
        if o.topic != p.topic {
            c.push(s, format!("Purpose `{}` now goes to topic `{}` instead of `{}`.", p.name, p.topic, o.topic));
        }
        match (o.identified, p.identified) {
            (false, true) => c.push(s, format!("Purpose `{}` now receives workers' ids in the clear (identified).", p.name)),
            (true, false) => c.push(s, format!("Purpose `{}` no longer receives workers' ids in the clear.", p.name)),
            _ => {}
        }
        if o.description.split_whitespace().ne(p.description.split_whitespace()) {
            c.push(s, format!("The description of purpose `{}` changes to: {}", p.name, sentence(&p.description)));
        }
    }
    for o in &old.purposes {
        if !new.purposes.iter().any(|p| p.name == o.name) {
            c.push(s, format!("Purpose `{}` is removed: nothing goes to topic `{}` any more.", o.name, o.topic));
        }
    }
}

fn categories(old: &Agreement, new: &Agreement, c: &mut Changes) {
    let s = Section::Categories;
    let classed = |a: &Agreement, class: Class| -> BTreeSet<String> { a.taxonomy.iter().filter(|(_, _, k)| *k == class).map(|(_, n, _)| n.to_string()).collect() };
    let (op, np) = (classed(old, Class::Prohibited), classed(new, Class::Prohibited));
    for name in np.difference(&op) {
        c.push(s, format!("`{name}` is now prohibited: events of this category are dropped, and attributes of it removed."));
    }
    for name in op.difference(&np) {
        c.push(s, format!("`{name}` is no longer prohibited by this agreement."));
    }
    let fields = |a: &Agreement| -> BTreeMap<String, String> { a.taxonomy.fields().map(|(f, cat)| (f.to_string(), a.taxonomy.name(cat).to_string())).collect() };
    let (of, nf) = (fields(old), fields(new));
    for (field, cat) in &nf {
        match of.get(field) {
            None => c.push(s, format!("Attribute `{field}` now counts as {cat} data{}.", class_note(new, cat))),
            Some(before) if before != cat => c.push(s, format!("Attribute `{field}` now counts as {cat} data instead of {before} data{}.", class_note(new, cat))),
            Some(_) => {}
        }
    }
    for (field, cat) in &of {
        if !nf.contains_key(field) {
            c.push(s, format!("Attribute `{field}` no longer counts as {cat} data."));
        }
    }
    // GDPR art. 9 exceptions, by category.
    let exceptions = |a: &Agreement| -> BTreeMap<String, (PurposeSet, Vec<String>, Vec<String>)> {
        let mut m: BTreeMap<String, (PurposeSet, Vec<String>, Vec<String>)> = BTreeMap::new();
        for e in &a.special_allowed {
            let entry = m.entry(a.taxonomy.name(e.category).to_string()).or_default();
            entry.0 |= e.purposes;
            entry.1.push(e.basis.clone());
            entry.2.push(e.justification.clone());
        }
        m
    };
    let (oe, ne) = (exceptions(old), exceptions(new));
    for (cat, (purposes, basis, justification)) in &ne {
        let now = names(new, *purposes);
        let Some((before_set, before_basis, before_just)) = oe.get(cat) else {
            c.push(
                s,
                format!("New exception (GDPR art. 9): {cat} data may go to {}; basis: {}; justification: {}", purpose_list(&now), basis.join("; "), sentence(&justification.join(" "))),
            );
            continue;
        };
        let before = names(old, *before_set);
        let added: Vec<String> = now.iter().filter(|p| !before.contains(p)).cloned().collect();
        let removed: Vec<String> = before.iter().filter(|p| !now.contains(p)).cloned().collect();
        if !added.is_empty() {
            c.push(s, format!("{} data may now also go to {}.", capital(cat), purpose_list(&added)));
        }
        if !removed.is_empty() {
            c.push(s, format!("{} data may no longer go to {}.", capital(cat), purpose_list(&removed)));
        }
        if before_basis != basis {
            c.push(s, format!("The legal basis of the {cat} exception changes to: {} (before: {}).", basis.join("; "), before_basis.join("; ")));
        }
        if before_just.join(" ").split_whitespace().ne(justification.join(" ").split_whitespace()) {
            c.push(s, format!("The justification of the {cat} exception changes to: {}", sentence(&justification.join(" "))));
        }
    }
    for (cat, (purposes, ..)) in &oe {
        if !ne.contains_key(cat) {
            c.push(s, format!("The exception for {cat} data is removed: it no longer goes to {}; such events are dropped.", purpose_list(&names(old, *purposes))));
        }
    }
}

fn schedules(old: &Agreement, new: &Agreement, c: &mut Changes) {
    let s = Section::Schedules;
    for n in &new.schedules {
        let Some(o) = old.schedules.iter().find(|o| o.name == n.name) else {
            c.push(s, format!("New schedule `{}`: {}.", n.name, describe_schedule(n)));
            continue;
        };
        if o.timezone != n.timezone {
            c.push(s, format!("`{}` now counts in {} time instead of {} time.", n.name, n.timezone.name(), o.timezone.name()));
        }
        let added: Vec<String> = (0..7).filter(|d| n.days[*d] && !o.days[*d]).map(|d| DAYS[d].to_string()).collect();
        let removed: Vec<String> = (0..7).filter(|d| o.days[*d] && !n.days[*d]).map(|d| DAYS[d].to_string()).collect();
        if !added.is_empty() {
            c.push(s, format!("`{}` now also applies on {}.", n.name, and_list(&added, "and")));
        }
        if !removed.is_empty() {
            c.push(s, format!("`{}` no longer applies on {}.", n.name, and_list(&removed, "and")));
        }
        if o.from != n.from {
            c.push(s, format!("`{}` now starts at {} instead of {}.", n.name, hhmm(n.from), hhmm(o.from)));
        }
        if o.until != n.until {
            c.push(s, format!("`{}` now ends at {} instead of {}.", n.name, hhmm(n.until), hhmm(o.until)));
        }
    }
    for o in &old.schedules {
        if !new.schedules.iter().any(|n| n.name == o.name) {
            c.push(s, format!("Schedule `{}` ({}) is removed.", o.name, describe_schedule(o)));
        }
    }
}

fn pseudonymisation(old: &Agreement, new: &Agreement, c: &mut Changes) {
    let s = Section::Pseudonymisation;
    match (old.domain, new.domain) {
        (Domain::PerPurpose, Domain::Shared) => c.push(
            s,
            "A worker now has one code for all purposes (shared) instead of a different code per purpose: data of different purposes can now be joined.",
        ),
        (Domain::Shared, Domain::PerPurpose) => c.push(s, "A worker now has a different code in each purpose instead of one shared code: purposes can no longer join their data."),
        _ => {}
    }
    let period = |r: Option<Rotate>| match r {
        None => "never",
        Some(Rotate::Daily) => "daily",
        Some(Rotate::Weekly) => "weekly",
        Some(Rotate::Monthly) => "monthly",
    };
    match (old.rotate, new.rotate) {
        (a, b) if a == b => {}
        (Some(_), None) => c.push(s, format!("Codes now never change (before: {}): a worker can be followed over time.", period(old.rotate))),
        (None, Some(_)) => c.push(s, format!("Codes now change {} (before: never), so a worker cannot be followed from one period to the next.", period(new.rotate))),
        _ => c.push(s, format!("Codes now change {} instead of {}.", period(new.rotate), period(old.rotate))),
    }
}

fn rules(old: &Agreement, new: &Agreement, c: &mut Changes) {
    let s = Section::Rules;
    for (i, r) in new.rules.iter().enumerate() {
        let Some(o) = old.rules.iter().find(|o| o.name == r.name) else {
            c.push(s, format!("New rule `{}` (number {} of {}): {}", r.name, i + 1, new.rules.len(), describe_rule(new, r)));
            continue;
        };
        rule(old, o, new, r, c);
    }
    for o in &old.rules {
        if !new.rules.iter().any(|r| r.name == o.name) {
            let what = subject(o);
            c.push(s, format!("Rule `{}` is removed: {what} no longer goes to {} under it (a later rule may take it, or it is dropped).", o.name, purpose_list(&rule_purposes(old, o))));
        }
    }
    let old_order: Vec<&str> = old.rules.iter().map(|r| r.name.as_str()).filter(|n| new.rule_index(n).is_some()).collect();
    let new_order: Vec<&str> = new.rules.iter().map(|r| r.name.as_str()).filter(|n| old.rule_index(n).is_some()).collect();
    if old_order != new_order {
        let quote = |l: &[&str]| l.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
        c.push(s, format!("The rules are in a new order (the first that matches decides): {} (before: {}).", quote(&new_order), quote(&old_order)));
    }
}

fn rule(old: &Agreement, o: &Rule, new: &Agreement, r: &Rule, c: &mut Changes) {
    let s = Section::Rules;
    let name = &r.name;
    let what = subject(r);
    list_change(c, name, "source", &o.sources, &r.sources);
    list_change(c, name, "category", &o.categories, &r.categories);

    let during = |a: &Agreement, x: &Rule| x.during.map(|i| a.schedules[i].name.clone());
    match (during(old, o), during(new, r)) {
        (a, b) if a == b => {}
        (None, Some(b)) => c.push(s, format!("Rule `{name}`: {what} now passes only during `{b}` (before: at any time).")),
        (Some(a), None) => c.push(s, format!("Rule `{name}`: {what} now passes at any time (before: only during `{a}`).")),
        (Some(a), Some(b)) => c.push(s, format!("Rule `{name}`: {what} now passes during `{b}` instead of `{a}`.")),
        (None, None) => {}
    }

    let (op, np) = (rule_purposes(old, o), rule_purposes(new, r));
    let added: Vec<String> = np.iter().filter(|p| !op.contains(p)).cloned().collect();
    let removed: Vec<String> = op.iter().filter(|p| !np.contains(p)).cloned().collect();
    if !added.is_empty() {
        c.push(s, format!("Rule `{name}`: {what} now also goes to {}.", purpose_list(&added)));
    }
    if !removed.is_empty() {
        c.push(s, format!("Rule `{name}`: {what} no longer goes to {}.", purpose_list(&removed)));
    }

    let (of, nf) = (fields(o), fields(r));
    let for_new = and_list(&np, "and");
    let for_old = and_list(&op, "and");
    for (path, nop) in &nf {
        let field = short_path(path);
        match of.iter().find(|(p, _)| p == path) {
            None if *nop == FieldOp::Keep => c.push(s, format!("Rule `{name}`: `{field}` is now kept for {for_new}.")),
            None => c.push(s, format!("Rule `{name}`: `{field}` is now passed on to {for_new}, {}.", describe_op(nop))),
            Some((_, oop)) if oop != nop => c.push(s, format!("Rule `{name}`: `{field}` for {for_new} is now {}.", changed_op(oop, nop))),
            Some(_) => {}
        }
    }
    for (path, oop) in &of {
        if !nf.iter().any(|(p, _)| p == path) {
            let field = short_path(path);
            match oop {
                FieldOp::Keep => c.push(s, format!("Rule `{name}`: `{field}` is no longer kept for {for_old}.")),
                other => c.push(s, format!("Rule `{name}`: `{field}` is no longer passed on to {for_old} (it was {}).", describe_op(other))),
            }
        }
    }
}

fn list_change(c: &mut Changes, rule: &str, what: &str, old: &Option<Vec<String>>, new: &Option<Vec<String>>) {
    let s = Section::Rules;
    let quote = |l: &[String]| l.iter().map(|x| format!("`{x}`")).collect::<Vec<_>>();
    match (old, new) {
        (Some(o), Some(n)) => {
            let added: Vec<String> = n.iter().filter(|x| !o.contains(x)).cloned().collect();
            let removed: Vec<String> = o.iter().filter(|x| !n.contains(x)).cloned().collect();
            if !added.is_empty() {
                c.push(s, format!("Rule `{rule}` now also matches {what} {}.", and_list(&quote(&added), "and")));
            }
            if !removed.is_empty() {
                c.push(s, format!("Rule `{rule}` no longer matches {what} {}.", and_list(&quote(&removed), "or")));
            }
        }
        (Some(o), None) => c.push(s, format!("Rule `{rule}` now matches every {what} (before: only {}).", and_list(&quote(o), "and"))),
        (None, Some(n)) => c.push(s, format!("Rule `{rule}` now matches only {what} {} (before: every {what}).", and_list(&quote(n), "and"))),
        (None, None) => {}
    }
}

/// Every output path of a rule with what happens to it, `attributes.` paths in full.
fn fields(r: &Rule) -> Vec<(String, FieldOp)> {
    let mut out = Vec::new();
    if let Some(op) = r.subject_id {
        out.push(("subject_id".to_string(), op));
    }
    if let Some(op) = r.device_id {
        out.push(("device_id".to_string(), op));
    }
    if let Some(secs) = r.occurred_at {
        out.push(("occurred_at".to_string(), FieldOp::Truncate(secs)));
    }
    for (path, op) in r.attributes.paths() {
        out.push((format!("attributes.{path}"), op));
    }
    out
}

fn short_path(path: &str) -> &str {
    path.strip_prefix("attributes.").unwrap_or(path)
}

/// What a rule does to a field, in words: `kept as it is`, `rounded to 3 decimals`.
pub fn describe_op(op: &FieldOp) -> String {
    match op {
        FieldOp::Keep => "kept as it is".into(),
        FieldOp::Pseudonymise => "pseudonymised (a code instead of the value)".into(),
        FieldOp::Round(n) => format!("rounded to {n} decimal{}", if *n == 1 { "" } else { "s" }),
        FieldOp::Bucket(w) => format!("rounded down to steps of {w}"),
        FieldOp::Truncate(secs) => format!("truncated to {}", duration(*secs)),
    }
}

/// `rounded to 2 decimals instead of 3`, or `kept as it is instead of pseudonymised`.
fn changed_op(old: &FieldOp, new: &FieldOp) -> String {
    match (old, new) {
        (FieldOp::Round(a), FieldOp::Round(b)) => format!("rounded to {b} decimal{} instead of {a}", if *b == 1 { "" } else { "s" }),
        (FieldOp::Bucket(a), FieldOp::Bucket(b)) => format!("rounded down to steps of {b} instead of {a}"),
        (FieldOp::Truncate(a), FieldOp::Truncate(b)) => format!("truncated to {} instead of {}", duration(*b), duration(*a)),
        _ => format!("{} instead of {}", describe_op(new), describe_op(old)),
    }
}

/// "tracker location", "location from any sensor", "every tracker event".
fn subject(r: &Rule) -> String {
    let join = |l: &[String]| l.join(" or ");
    match (&r.sources, &r.categories) {
        (Some(s), Some(c)) => format!("{} {}", join(s), join(c)),
        (None, Some(c)) => format!("{} from any sensor", join(c)),
        (Some(s), None) => format!("every {} event", join(s)),
        (None, None) => "every event".into(),
    }
}

fn describe_rule(a: &Agreement, r: &Rule) -> String {
    let mut parts = vec![format!("{} goes to {}", subject(r), purpose_list(&rule_purposes(a, r)))];
    if let Some(i) = r.during {
        parts.push(format!("only during `{}`", a.schedules[i].name));
    }
    let fields = fields(r);
    let listed = |want: FieldOp| -> Vec<String> { fields.iter().filter(|(_, op)| *op == want).map(|(p, _)| format!("`{}`", short_path(p))).collect() };
    let (kept, pseudonymised) = (listed(FieldOp::Keep), listed(FieldOp::Pseudonymise));
    if !kept.is_empty() {
        parts.push(format!("keeping {}", and_list(&kept, "and")));
    }
    if !pseudonymised.is_empty() {
        parts.push(format!("pseudonymising {}", and_list(&pseudonymised, "and")));
    }
    let generalised: Vec<String> = fields
        .iter()
        .filter(|(_, op)| !matches!(op, FieldOp::Keep | FieldOp::Pseudonymise))
        .map(|(p, op)| format!("`{}` {}", short_path(p), describe_op(op)))
        .collect();
    if !generalised.is_empty() {
        parts.push(format!("with {}", and_list(&generalised, "and")));
    }
    if fields.is_empty() {
        parts.push("with no fields beyond the event's id, source, category and time".into());
    }
    format!("{}.", parts.join(", "))
}

fn rule_purposes(a: &Agreement, r: &Rule) -> Vec<String> {
    r.purposes.iter().map(|p| a.purposes[*p as usize].name.clone()).collect()
}

fn names(a: &Agreement, set: PurposeSet) -> Vec<String> {
    a.purposes.iter().enumerate().filter(|(i, _)| set & (1 << i) != 0).map(|(_, p)| p.name.clone()).collect()
}

fn purpose_list(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.len() {
        0 => "no purpose".into(),
        1 => format!("purpose {}", quoted[0]),
        _ => format!("purposes {}", and_list(&quoted, "and")),
    }
}

fn class_note(a: &Agreement, category: &str) -> &'static str {
    match a.taxonomy.category(category).map(|c| a.taxonomy.class(c)) {
        Some(Class::Prohibited) => " (prohibited: it is removed from every output)",
        Some(Class::Special) => " (special: it passes only where an exception allows it)",
        _ => "",
    }
}

const DAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

fn describe_schedule(s: &Schedule) -> String {
    let days: Vec<String> = (0..7).filter(|d| s.days[*d]).map(|d| DAYS[d].to_string()).collect();
    format!("{}, {} to {}, {} time", and_list(&days, "and"), hhmm(s.from), hhmm(s.until), s.timezone.name())
}


fn duration(secs: i64) -> String {
    let unit = |n: i64, one: &str, many: &str| if n == 1 { format!("1 {one}") } else { format!("{n} {many}") };
    match secs {
        s if s % 86400 == 0 => unit(s / 86400, "day", "days"),
        s if s % 3600 == 0 => unit(s / 3600, "hour", "hours"),
        s if s % 60 == 0 => unit(s / 60, "minute", "minutes"),
        s => unit(s, "second", "seconds"),
    }
}

fn moment(t: DateTime<Utc>) -> String {
    if t.format("%H:%M:%S").to_string() == "00:00:00" {
        t.format("%Y-%m-%d").to_string()
    } else {
        t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
    }
}

fn sentence(text: &str) -> String {
    let t = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if t.is_empty() {
        "(no description)".into()
    } else if t.ends_with(['.', '!', '?']) {
        t
    } else {
        format!("{t}.")
    }
}

fn capital(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map(|f| f.to_uppercase().collect::<String>() + chars.as_str()).unwrap_or_default()
}

/// What happened to one event under one agreement, comparable across agreements.
#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    Dropped(DropReason),
    /// The deciding rule (for the table, not compared) and each purpose's output
    /// without its `accord` stamp.
    Forwarded { rule: String, outputs: BTreeMap<String, Value> },
}

fn outcome(engine: &Engine, event: &[u8], out: &mut Outputs) -> Outcome {
    let a = &**engine.agreement();
    match engine.process(event, Format::Json, out) {
        Verdict::Dropped(d) => Outcome::Dropped(d.reason),
        Verdict::Forwarded(decision) => {
            let outputs = out
                .items
                .iter()
                .map(|o| {
                    let mut v: Value = serde_json::from_slice(out.payload(o)).expect("the engine writes valid JSON");
                    if let Some(obj) = v.as_object_mut() {
                        obj.remove("accord");
                    }
                    (a.purposes[o.purpose as usize].name.clone(), v)
                })
                .collect();
            Outcome::Forwarded { rule: a.rules[decision.rule].name.clone(), outputs }
        }
    }
}

/// How the outcomes of a sample of events change from one agreement to the other.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Replay {
    pub events: usize,
    pub changed: usize,
    /// What kind of change, in words, and how many events.
    pub kinds: BTreeMap<String, usize>,
    /// Per rule that decided (before or now) an event whose outcome changed.
    pub rules: BTreeMap<String, usize>,
    pub purposes: BTreeMap<String, PurposeCounts>,
}

/// Per purpose: events reaching it before and now, and of the changed events, those
/// it gained, lost, or received with other fields or values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PurposeCounts {
    pub before: usize,
    pub now: usize,
    pub gained: usize,
    pub lost: usize,
    pub changed: usize,
}

/// Replays every event (JSON, one per item) through both engines. Blank items are skipped.
pub fn replay<'e>(old: &Engine, new: &Engine, events: impl IntoIterator<Item = &'e [u8]>) -> Replay {
    let mut r = Replay::default();
    for p in old.agreement().purposes.iter().chain(&new.agreement().purposes) {
        r.purposes.entry(p.name.clone()).or_default();
    }
    let (mut oa, mut ob) = (Outputs::default(), Outputs::default());
    for event in events {
        let event = event.trim_ascii();
        if event.is_empty() {
            continue;
        }
        r.events += 1;
        let before = outcome(old, event, &mut oa);
        let now = outcome(new, event, &mut ob);
        let reached = |o: &Outcome| -> BTreeMap<String, Value> {
            match o {
                Outcome::Forwarded { outputs, .. } => outputs.clone(),
                Outcome::Dropped(_) => BTreeMap::new(),
            }
        };
        let (rb, rn) = (reached(&before), reached(&now));
        for p in rb.keys() {
            r.purposes.entry(p.clone()).or_default().before += 1;
        }
        for p in rn.keys() {
            r.purposes.entry(p.clone()).or_default().now += 1;
        }
        let kind = match (&before, &now) {
            (Outcome::Dropped(a), Outcome::Dropped(b)) if a == b => None,
            (Outcome::Dropped(a), Outcome::Dropped(b)) => Some(format!("dropped for another reason ({a} before, {b} now)")),
            (Outcome::Forwarded { .. }, Outcome::Dropped(b)) => Some(format!("forwarded before, dropped now ({b})")),
            (Outcome::Dropped(a), Outcome::Forwarded { .. }) => Some(format!("dropped before ({a}), forwarded now")),
            (Outcome::Forwarded { .. }, Outcome::Forwarded { .. }) if rb == rn => None,
            (Outcome::Forwarded { .. }, Outcome::Forwarded { .. }) if !rb.keys().eq(rn.keys()) => Some("reaches other purposes".to_string()),
            _ if rb.iter().zip(&rn).all(|((_, x), (_, y))| paths(x) == paths(y)) => Some("same purposes and fields, other values".to_string()),
            _ => Some("same purposes, other fields".to_string()),
        };
        let Some(kind) = kind else { continue };
        r.changed += 1;
        *r.kinds.entry(kind).or_default() += 1;
        let mut rules: Vec<&str> = Vec::new();
        for o in [&before, &now] {
            if let Outcome::Forwarded { rule, .. } = o {
                if !rules.contains(&rule.as_str()) {
                    rules.push(rule);
                }
            }
        }
        if rules.is_empty() {
            rules.push("(none: dropped before and now)");
        }
        for rule in rules {
            *r.rules.entry(rule.to_string()).or_default() += 1;
        }
        for p in rb.keys().chain(rn.keys()).collect::<BTreeSet<_>>() {
            let counts = r.purposes.entry(p.clone()).or_default();
            match (rb.get(p), rn.get(p)) {
                (None, Some(_)) => counts.gained += 1,
                (Some(_), None) => counts.lost += 1,
                (Some(x), Some(y)) if x != y => counts.changed += 1,
                _ => {}
            }
        }
    }
    r
}

/// Every leaf path of a JSON value (to tell other fields from other values).
fn paths(v: &Value) -> BTreeSet<String> {
    fn walk(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
        match v.as_object() {
            Some(map) if !map.is_empty() => {
                for (k, child) in map {
                    let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    walk(child, &p, out);
                }
            }
            _ => {
                out.insert(prefix.to_string());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(v, "", &mut out);
    out
}

impl fmt::Display for Replay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} event(s) replayed: {} change outcome, {} do not.", self.events, self.changed, self.events - self.changed)?;
        if self.changed == 0 {
            return Ok(());
        }
        writeln!(f)?;
        let width = self.kinds.keys().map(|k| k.chars().count()).max().unwrap_or(0).max(12);
        writeln!(f, "  {:<width$}  {:>6}", "what changes", "events")?;
        for (kind, n) in &self.kinds {
            writeln!(f, "  {kind:<width$}  {n:>6}")?;
        }
        writeln!(f)?;
        let width = self.rules.keys().map(|k| k.chars().count()).max().unwrap_or(0).max(30);
        writeln!(f, "  {:<width$}  {:>6}", "rule that decided, before or now", "events")?;
        for (rule, n) in &self.rules {
            writeln!(f, "  {rule:<width$}  {n:>6}")?;
        }
        writeln!(f)?;
        let width = self.purposes.keys().map(|k| k.chars().count()).max().unwrap_or(0).max(7);
        writeln!(f, "  {:<width$}  {:>6}  {:>6}  {:>6}  {:>6}  {:>14}", "purpose", "before", "now", "gained", "lost", "other content")?;
        for (p, c) in &self.purposes {
            writeln!(f, "  {p:<width$}  {:>6}  {:>6}  {:>6}  {:>6}  {:>14}", c.before, c.now, c.gained, c.lost, c.changed)?;
        }
        Ok(())
    }
}
