//! From what the DPO wrote to what the engine enforces: every check of SPEC 2.3.
//!
//! All problems are collected, never just the first; the agreement compiles only if
//! none of them is an error. Warnings (a rule that can never match, a purpose no rule
//! uses) are returned beside the compiled agreement.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDate, NaiveTime, Timelike, Utc};

use super::compiled::*;
use super::diagnostic::{suggest, Diagnostics};
use super::model::{Doc, RuleDoc, Text};
use super::taxonomy::{Class, Taxonomy};
use super::yaml::Span;

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Checks the document and, if it has no errors, compiles it.
pub fn compile(doc: &Doc, sha256: String, diags: &mut Diagnostics) -> Option<Agreement> {
    let mut c = Compiler { diags, doc };
    let header = c.header();
    let purposes = c.purposes();
    let taxonomy = c.taxonomy();
    let special_allowed = c.special_allowed(&taxonomy, &purposes);
    let schedules = c.schedules();
    let (domain, rotate) = c.pseudonymisation();
    let rules = c.rules(&purposes, &schedules, &taxonomy, &special_allowed);
    c.warn_unused_purposes(&purposes, &rules);
    let instruments = super::instruments::compile(doc, c.diags);
    let (id, version, parties, valid_from, valid_until) = header?;
    if c.diags.has_errors() {
        return None;
    }
    let rules: Vec<Rule> = rules.into_iter().map(|(rule, _)| rule).collect();
    let mut instruments = instruments;
    if let Some(list) = &mut instruments {
        super::instruments::mark_rules(list, &rules);
    }
    Some(Agreement {
        id,
        version,
        parties,
        valid_from,
        valid_until,
        purposes,
        taxonomy,
        special_allowed,
        schedules,
        domain,
        rotate,
        rules,
        instruments,
        sha256,
    })
}

type Header = (String, u32, Vec<String>, Option<DateTime<Utc>>, Option<DateTime<Utc>>);

struct Compiler<'a> {
    diags: &'a mut Diagnostics,
    doc: &'a Doc,
}

impl Compiler<'_> {
    fn header(&mut self) -> Option<Header> {
        let h = &self.doc.header;
        if !self.doc.sections.has("agreement") {
            let (span, place) = self.doc.sections.place("agreement");
            self.diags.error(span, format!("the `agreement:` section is missing: add it {place}, with the agreement's `id`, `version` and `parties`, e.g. `agreement: {{ id: acme-dc-utrecht, version: 1, parties: [ACME, Works council] }}`"));
            return None;
        }
        let id = match &h.id {
            Some(id) if id.value.as_bytes() == crate::pseudonym::SUPPRESSION_DOMAIN => {
                self.diags.error(id.span, "the agreement id `accord-suppression` is reserved: it is the domain of suppression entries, and a shared pseudonym domain of that name would link workers' data to their objections; choose another id");
                None
            }
            Some(id) if is_name(&id.value, 64, |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') => Some(id.value.clone()),
            Some(id) => {
                self.diags.error(id.span, format!("agreement id `{}` must be 1 to 64 lowercase letters, digits or `-`", id.value));
                None
            }
            None => {
                self.diags.error(h.span, "the agreement has no `id`; add one such as `id: acme-dc-utrecht` under `agreement:`");
                None
            }
        };
        let version = match &h.version {
            Some(v) if v.value >= 1 && v.value <= u32::MAX as i64 => Some(v.value as u32),
            Some(v) => {
                self.diags.error(v.span, format!("`version` must be a whole number, 1 or more, not {}", v.value));
                None
            }
            None => {
                self.diags.error(h.span, "the agreement has no `version`; add `version: 1` under `agreement:` and raise it with each change");
                None
            }
        };
        if h.parties.is_empty() {
            self.diags.error(h.span, "the agreement names no `parties`; list who agreed it, e.g. the employer and the works council");
        }
        let valid_from = h.valid_from.as_ref().and_then(|t| self.instant(t, "valid_from"));
        let valid_until = h.valid_until.as_ref().and_then(|t| self.instant(t, "valid_until"));
        if let (Some(from), Some(until), Some(span)) = (valid_from, valid_until, h.valid_until.as_ref().map(|t| t.span)) {
            if until <= from {
                self.diags.error(span, "`valid_until` must be after `valid_from`");
            }
        }
        Some((id?, version?, h.parties.iter().map(|p| p.value.clone()).collect(), valid_from, valid_until))
    }

    fn instant(&mut self, t: &Text, key: &str) -> Option<DateTime<Utc>> {
        match parse_instant(&t.value) {
            Some(at) => Some(at),
            None => {
                self.diags.error(t.span, format!("`{key}` must be a date like 2026-01-01 or a time like 2026-01-01T00:00:00+01:00, not `{}`", t.value));
                None
            }
        }
    }

    fn purposes(&mut self) -> Vec<Purpose> {
        if self.doc.purposes_span.is_none() {
            let (span, place) = self.doc.sections.place("purposes");
            self.diags.error(span, format!("the `purposes:` section is missing: add it {place}, with at least one purpose, its `description` and the `topic` its events go to"));
        }
        let mut out: Vec<Purpose> = Vec::new();
        // Linear in the file (SPEC 2.3): names and topics seen, by value.
        let mut names: HashSet<&str> = HashSet::new();
        let mut topics: HashMap<&str, &Text> = HashMap::new();
        for p in &self.doc.purposes {
            let name = &p.name;
            if !is_name(&name.value, 64, |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-') {
                self.diags.error(name.span, format!("purpose name `{}` must be 1 to 64 lowercase letters, digits, `_` or `-`", name.value));
            }
            if !names.insert(name.value.as_str()) {
                self.diags.error(name.span, format!("purpose `{}` is defined twice", name.value));
            }
            if name.value.as_bytes() == crate::pseudonym::SUPPRESSION_DOMAIN {
                self.diags.error(name.span, "the purpose name `accord-suppression` is reserved: it is the domain of suppression entries, and its pseudonyms would link workers' data to their objections; choose another name");
            }
            let topic = match &p.topic {
                Some(t) if !crate::valid::topic(&t.value) => {
                    self.diags.error(t.span, format!("topic `{}` is not a valid Kafka topic name: use 1 to 249 letters, digits, `.`, `_` or `-`", t.value));
                    String::new()
                }
                Some(t) if t.value == "quarantine" => {
                    self.diags.error(t.span, "the topic name `quarantine` is reserved for malformed events; choose another");
                    String::new()
                }
                Some(t) => {
                    if let Some(first) = topics.get(t.value.as_str()) {
                        self.diags.error(t.span, format!("topic `{}` is already used by another purpose (line {}); each purpose needs its own topic", t.value, first.span.line));
                    } else {
                        topics.insert(t.value.as_str(), t);
                    }
                    t.value.clone()
                }
                None => {
                    self.diags.error(name.span, format!("purpose `{}` has no `topic`; add the Kafka topic its events go to", name.value));
                    String::new()
                }
            };
            out.push(Purpose {
                name: name.value.clone(),
                description: p.description.as_ref().map(|d| d.value.clone()).unwrap_or_default(),
                topic,
                identified: p.identified,
            });
        }
        if out.len() > MAX_PURPOSES {
            let span = self.doc.purposes_span.unwrap_or_default();
            self.diags.error(span, format!("an agreement may define at most {MAX_PURPOSES} purposes"));
        }
        out
    }

    fn taxonomy(&mut self) -> Taxonomy {
        let mut t = Taxonomy::default();
        let cats = &self.doc.categories;
        for p in &cats.prohibited {
            if t.category(&p.value).is_some_and(|id| t.class(id) == Class::Special) {
                self.diags.warning(p.span, format!("`{}` is a special category; prohibiting it also ends its exceptions", p.value));
            }
            t.set_class(&p.value, Class::Prohibited);
        }
        for (field, category) in &cats.fields {
            if let Some(old) = t.field(&field.value) {
                let (old_class, new_class) = (t.class(old), t.category(&category.value).map(|c| t.class(c)).unwrap_or(Class::Ordinary));
                if old_class != Class::Ordinary && new_class == Class::Ordinary {
                    self.diags.error(field.span, format!("`{}` is a built-in {} attribute; the agreement can add to the taxonomy but not remove from it", field.value, t.name(old)));
                    continue;
                }
            }
            t.map_field(&field.value, &category.value);
        }
        // Every category an agreement names becomes a metric label.
        for rule in &self.doc.rules {
            for c in rule.match_category.iter().flatten() {
                t.intern(&c.value);
            }
        }
        t
    }

    fn special_allowed(&mut self, t: &Taxonomy, purposes: &[Purpose]) -> Vec<SpecialAllowance> {
        let mut out = Vec::new();
        for s in &self.doc.categories.special_allowed {
            let Some(category) = &s.category else {
                self.diags.error(s.span, "a `special_allowed` entry needs a `category` (health or biometric)");
                continue;
            };
            let id = match t.category(&category.value) {
                Some(id) if t.class(id) == Class::Special => id,
                Some(id) if t.class(id) == Class::Prohibited => {
                    self.diags.error(category.span, format!("`{}` is prohibited; no exception can allow it", category.value));
                    continue;
                }
                _ => {
                    self.diags.error(category.span, format!("`{}` is not a special category; `special_allowed` is only for health and biometric data", category.value));
                    continue;
                }
            };
            if s.basis.as_ref().is_none_or(|b| b.value.trim().is_empty()) {
                self.diags.error(s.span, format!("the exception for `{}` needs a `basis`: the legal ground, e.g. \"GDPR Art. 9(2)(b)\"", category.value));
            }
            if s.justification.as_ref().is_none_or(|b| b.value.trim().is_empty()) {
                self.diags.error(s.span, format!("the exception for `{}` needs a `justification`: why this data is needed", category.value));
            }
            if s.purposes.is_empty() {
                self.diags.error(s.span, format!("the exception for `{}` names no `purposes`", category.value));
            }
            let set = self.purpose_set(&s.purposes, purposes);
            out.push(SpecialAllowance {
                category: id,
                purposes: set,
                basis: s.basis.as_ref().map(|b| b.value.clone()).unwrap_or_default(),
                justification: s.justification.as_ref().map(|b| b.value.clone()).unwrap_or_default(),
            });
        }
        out
    }

    fn purpose_set(&mut self, names: &[Text], purposes: &[Purpose]) -> PurposeSet {
        let mut set = 0;
        for n in names {
            match purposes.iter().position(|p| p.name == n.value) {
                Some(i) if i < MAX_PURPOSES => set |= 1 << i,
                Some(_) => {}
                None => self.undefined("purpose", n, purposes.iter().map(|p| p.name.as_str())),
            }
        }
        set
    }

    fn undefined<'n>(&mut self, what: &str, name: &Text, known: impl Iterator<Item = &'n str> + Clone) {
        let hint = suggest(&name.value, known.clone());
        let list: Vec<_> = known.map(|k| format!("`{k}`")).collect();
        let defined = if list.is_empty() { format!("no {what}s are defined") } else { format!("defined: {}", list.join(", ")) };
        self.diags.error(name.span, format!("{what} `{}` is not defined{hint} ({defined})", name.value));
    }

    fn schedules(&mut self) -> Vec<Schedule> {
        let mut out: Vec<Schedule> = Vec::new();
        for s in &self.doc.schedules {
            if out.iter().any(|o| o.name == s.name.value) {
                self.diags.error(s.name.span, format!("schedule `{}` is defined twice", s.name.value));
            }
            let timezone = match &s.timezone {
                Some(tz) => match tz.value.parse() {
                    Ok(tz) => tz,
                    Err(_) => {
                        let hint = suggest(&tz.value, chrono_tz::TZ_VARIANTS.iter().map(|t| t.name()));
                        self.diags.error(tz.span, format!("`{}` is not a timezone name; use an IANA name such as Europe/Amsterdam{hint}", tz.value));
                        chrono_tz::UTC
                    }
                },
                None => {
                    self.diags.error(s.name.span, format!("schedule `{}` has no `timezone`; add one such as Europe/Amsterdam", s.name.value));
                    chrono_tz::UTC
                }
            };
            let mut days = [false; 7];
            for d in &s.days {
                match DAYS.iter().position(|n| n.eq_ignore_ascii_case(&d.value)) {
                    Some(i) if days[i] => self.diags.warning(d.span, format!("`{}` is listed twice", d.value)),
                    Some(i) => days[i] = true,
                    None => {
                        let hint = suggest(&d.value, DAYS);
                        self.diags.error(d.span, format!("`{}` is not a day; use mon, tue, wed, thu, fri, sat or sun{hint}", d.value));
                    }
                }
            }
            if s.days.is_empty() {
                self.diags.error(s.name.span, format!("schedule `{}` lists no `days`", s.name.value));
            }
            let from = self.time_of_day(s.from.as_ref(), "from", &s.name);
            let until = self.time_of_day(s.until.as_ref(), "until", &s.name);
            if let (Some(f), Some(u), Some(span)) = (from, until, s.until.as_ref().map(|u| u.span)) {
                if u <= f {
                    self.diags.error(span, format!("schedule `{}`: `until` must be later than `from` on the same day", s.name.value));
                }
            }
            out.push(Schedule { name: s.name.value.clone(), timezone, days, from: from.unwrap_or(0), until: until.unwrap_or(0) });
        }
        out
    }

    fn time_of_day(&mut self, t: Option<&Text>, key: &str, schedule: &Text) -> Option<u32> {
        let Some(t) = t else {
            self.diags.error(schedule.span, format!("schedule `{}` has no `{key}` time", schedule.value));
            return None;
        };
        if t.value == "24:00" && key == "until" {
            return Some(24 * 3600);
        }
        match NaiveTime::parse_from_str(&t.value, "%H:%M") {
            Ok(time) if t.value.len() == 5 => Some(time.num_seconds_from_midnight()),
            _ => {
                self.diags.error(t.span, format!("`{key}` must be a time like \"07:00\" (24-hour, quoted), not `{}`", t.value));
                None
            }
        }
    }

    fn pseudonymisation(&mut self) -> (Domain, Option<Rotate>) {
        let p = &self.doc.pseudonymisation;
        let domain = match p.domain.as_ref().map(|d| d.value.as_str()) {
            None | Some("per_purpose") => Domain::PerPurpose,
            Some("shared") => Domain::Shared,
            Some(other) => {
                let hint = suggest(other, ["per_purpose", "shared"]);
                self.diags.error(p.domain.as_ref().unwrap().span, format!("`domain` must be `per_purpose` or `shared`, not `{other}`{hint}"));
                Domain::PerPurpose
            }
        };
        let rotate = match p.rotate.as_ref().map(|d| d.value.as_str()) {
            None => None,
            Some("daily") => Some(Rotate::Daily),
            Some("weekly") => Some(Rotate::Weekly),
            Some("monthly") => Some(Rotate::Monthly),
            Some(other) => {
                let hint = suggest(other, ["daily", "weekly", "monthly"]);
                self.diags.error(p.rotate.as_ref().unwrap().span, format!("`rotate` must be `daily`, `weekly` or `monthly`, not `{other}`{hint}"));
                None
            }
        };
        (domain, rotate)
    }

    fn rules(&mut self, purposes: &[Purpose], schedules: &[Schedule], t: &Taxonomy, special: &[SpecialAllowance]) -> Vec<(Rule, Span)> {
        let mut out: Vec<(Rule, Span)> = Vec::new();
        // Linear in the file (SPEC 2.3): rule names by value, and earlier rules by each
        // (source, category) pair they list (`None`: all), so that only rules sharing
        // a pair with a later one are compared with it.
        let mut names: HashMap<&str, &Text> = HashMap::new();
        let mut by_pair: HashMap<(Option<String>, Option<String>), Vec<usize>> = HashMap::new();
        for doc in &self.doc.rules {
            let name = doc.name.as_ref().map(|n| n.value.clone()).unwrap_or_default();
            if let Some(n) = &doc.name {
                if let Some(first) = names.get(n.value.as_str()) {
                    self.diags.error(n.span, format!("rule name `{}` is already used on line {}; rule names must be unique", n.value, first.span.line));
                } else {
                    names.insert(n.value.as_str(), n);
                }
            }
            let rule = self.rule(doc, name, purposes, schedules, t, special);
            // A rule that can never match because an earlier one always wins.
            let first = |l: &Option<Vec<String>>| l.as_ref().and_then(|l| l.first()).map(|x| super::names::normalise(x));
            let (s0, c0) = (first(&rule.sources), first(&rule.categories));
            let mut keys = vec![(None, None), (None, c0.clone())];
            if s0.is_some() {
                keys.push((s0.clone(), None));
                keys.push((s0, c0));
            }
            let earlier = keys
                .iter()
                .filter_map(|k| by_pair.get(k))
                .flatten()
                .copied()
                .filter(|&i| covers(&out[i].0.sources, &rule.sources) && covers(&out[i].0.categories, &rule.categories))
                .min();
            if let Some(i) = earlier {
                let earlier = &out[i].0;
                self.diags.warning(doc.span, format!("rule `{}` can never match: the earlier rule `{}` (line {}) matches every event it would", rule.name, earlier.name, earlier.line));
            }
            let all = |l: &Option<Vec<String>>| -> Vec<Option<String>> {
                match l {
                    None => vec![None],
                    Some(l) => l.iter().map(|x| Some(super::names::normalise(x))).collect(),
                }
            };
            for source in all(&rule.sources) {
                for category in all(&rule.categories) {
                    let list = by_pair.entry((source.clone(), category)).or_default();
                    // Only the first rule with a pair can be the first to cover.
                    if list.len() < 8 {
                        list.push(out.len());
                    }
                }
            }
            out.push((rule, doc.span));
        }
        match self.doc.rules_span {
            None => {
                let (span, place) = self.doc.sections.place("rules");
                self.diags.warning(span, format!("the `rules:` section is missing, so every event will be dropped: add it {place}, with rules that each give a `name`, what they `match`, their `purposes` and the fields they `keep`"));
            }
            Some(span) if self.doc.rules.is_empty() => self.diags.warning(span, "the agreement has no `rules`: every event will be dropped"),
            Some(_) => {}
        }
        out
    }

    fn rule(&mut self, doc: &RuleDoc, name: String, purposes: &[Purpose], schedules: &[Schedule], t: &Taxonomy, special: &[SpecialAllowance]) -> Rule {
        let texts = |l: &Option<Vec<Text>>| l.as_ref().map(|l| l.iter().map(|x| x.value.clone()).collect::<Vec<_>>());
        let during = doc.during.as_ref().and_then(|d| match schedules.iter().position(|s| s.name == d.value) {
            Some(i) => Some(i),
            None => {
                self.undefined("schedule", d, schedules.iter().map(|s| s.name.as_str()));
                None
            }
        });
        if doc.purposes.is_empty() {
            self.diags.error(doc.purposes_span.unwrap_or(doc.span), format!("rule `{name}` names no `purposes`; say which purposes its events serve"));
        }
        let mut rule_purposes = Vec::new();
        for p in &doc.purposes {
            match purposes.iter().position(|x| x.name == p.value) {
                Some(i) if rule_purposes.contains(&(i as PurposeId)) => self.diags.warning(p.span, format!("purpose `{}` is listed twice", p.value)),
                Some(i) if i < MAX_PURPOSES => rule_purposes.push(i as PurposeId),
                Some(_) => {}
                None => self.undefined("purpose", p, purposes.iter().map(|p| p.name.as_str())),
            }
        }
        let purpose_set = rule_purposes.iter().fold(0u64, |s, p| s | (1 << p));
        let covered = |category, set: PurposeSet| special.iter().filter(|s| s.category == category).fold(0, |a, s| a | s.purposes) & set;

        // The categories the rule matches.
        for c in doc.match_category.iter().flatten() {
            // Classified through the taxonomy's terms too (`heart_rate_avg` is health).
            let Some(id) = t.classify_category(&c.value) else { continue };
            match t.class(id) {
                Class::Prohibited => {
                    let why = super::taxonomy::legal_basis(t.name(id)).map(|w| format!(" ({w})")).unwrap_or_default();
                    let what = if super::names::normalise(&c.value) == super::names::normalise(t.name(id)) { "a prohibited category".to_string() } else { format!("which is `{}` data, a prohibited category", t.name(id)) };
                    self.diags.error(c.span, format!("rule `{name}` matches `{}`, {what}{why}; remove it", c.value));
                }
                Class::Special if covered(id, purpose_set) == 0 => {
                    self.diags.error(c.span, format!("rule `{name}` matches `{}`, a special category (GDPR art. 9), but no `special_allowed` entry covers any of its purposes", c.value));
                }
                Class::Special if covered(id, purpose_set) != purpose_set => {
                    self.diags.warning(c.span, format!("rule `{name}` matches `{}`, a special category: its events go only to the purposes its exception names", c.value));
                }
                _ => {}
            }
        }

        let mut rule = Rule {
            name: name.clone(),
            line: doc.span.line,
            sources: texts(&doc.match_source),
            categories: texts(&doc.match_category),
            during,
            purposes: rule_purposes,
            subject_id: None,
            device_id: None,
            occurred_at: None,
            attributes: Selector::default(),
        };
        let mut seen: Vec<(String, &'static str, FieldOp)> = Vec::new();
        let mut entries: Vec<(&Text, FieldOp)> = Vec::new();
        for p in &doc.keep {
            entries.push((p, FieldOp::Keep));
        }
        for p in &doc.pseudonymise {
            entries.push((p, FieldOp::Pseudonymise));
        }
        for g in &doc.generalise {
            if let Some(op) = g.op.as_ref().and_then(|(op, arg)| self.generalisation(op, arg)) {
                entries.push((&g.path, op));
            }
        }
        let kept: Vec<&Text> = entries.iter().filter(|(p, op)| *op == FieldOp::Keep && p.value.starts_with("attributes.")).map(|(p, _)| *p).collect();
        for (path, op) in entries {
            let verb = match op {
                FieldOp::Keep => "keep",
                FieldOp::Pseudonymise => "pseudonymise",
                _ => "generalise",
            };
            let normal = super::names::normalise(&path.value);
            if let Some((_, other, first)) = seen.iter().find(|(p, _, _)| *p == normal) {
                if *other == verb && *first != op {
                    self.diags.error(path.span, format!("`{}` is listed twice under `{verb}`, two different ways; a field is treated one way", path.value));
                } else if *other == verb {
                    self.diags.warning(path.span, format!("`{}` is listed twice under `{verb}`", path.value));
                } else {
                    self.diags.error(path.span, format!("`{}` is listed under both `{other}` and `{verb}`; a field is treated one way", path.value));
                }
                continue;
            }
            seen.push((normal, verb, op));
            self.field(&mut rule, path, op, t, purposes, purpose_set, &covered);
        }
        // What a member named exactly as written may reach: every category its words
        // reveal counts (the engine's `names::field_allowed`, worked out once here).
        // A kept path with listed paths below it is an object or an array kept whole:
        // whatever a sensor adds to it later leaves with it (SPEC 2.3, a warning).
        for path in kept {
            let segments: Vec<&str> = path.value["attributes.".len()..].split('.').collect();
            let node = segments.iter().try_fold(&rule.attributes, |sel, seg| sel.child(seg));
            if node.is_some_and(|n| !n.children.is_empty()) {
                self.diags.warning(
                    path.span,
                    format!("rule `{}` keeps `{}` whole: every member a sensor adds to it later leaves with it; list the members it needs instead", rule.name, path.value),
                );
            }
        }
        rule.attributes.resolve(&|name| {
            let mut allowed = PurposeSet::MAX;
            t.field_classes(name, |c| match t.class(c) {
                Class::Prohibited => allowed = 0,
                Class::Special => allowed &= covered(c, PurposeSet::MAX),
                Class::Ordinary => {}
            });
            allowed
        });
        rule
    }

    #[allow(clippy::too_many_arguments)]
    fn field(&mut self, rule: &mut Rule, path: &Text, op: FieldOp, t: &Taxonomy, purposes: &[Purpose], set: PurposeSet, covered: &dyn Fn(u16, PurposeSet) -> PurposeSet) {
        let name = rule.name.clone();
        let generalising = matches!(op, FieldOp::Round(_) | FieldOp::Bucket(_) | FieldOp::Truncate(_));
        match path.value.as_str() {
            "subject_id" | "device_id" => {
                if generalising {
                    self.diags.error(path.span, format!("`{}` is an identifier and cannot be generalised; keep or pseudonymise it", path.value));
                    return;
                }
                if op == FieldOp::Keep && path.value == "subject_id" {
                    for p in &rule.purposes {
                        let purpose = &purposes[*p as usize];
                        if !purpose.identified {
                            self.diags.error(path.span, format!("rule `{name}` keeps `subject_id` in the clear for purpose `{}`, which is not `identified: true`; pseudonymise it instead", purpose.name));
                        }
                    }
                }
                if path.value == "subject_id" {
                    rule.subject_id = Some(op);
                } else {
                    rule.device_id = Some(op);
                }
            }
            "occurred_at" => match op {
                FieldOp::Truncate(secs) => rule.occurred_at = Some(secs),
                FieldOp::Keep => self.diags.warning(path.span, "`occurred_at` is always output; listing it under `keep` changes nothing"),
                _ => self.diags.error(path.span, "`occurred_at` can only be generalised with `truncate`"),
            },
            "event_id" | "source" | "category" => {
                if op == FieldOp::Keep {
                    self.diags.warning(path.span, format!("`{}` is always output; listing it under `keep` changes nothing", path.value));
                } else {
                    self.diags.error(path.span, format!("`{}` is always output as it is; it cannot be {}", path.value, op.verb()));
                }
            }
            other => {
                let Some(rest) = other.strip_prefix("attributes.") else {
                    let hint = if other == "attributes" { "; list the attributes you need, e.g. `attributes.zone`".to_string() } else { suggest(other, ["subject_id", "device_id", "occurred_at"]) };
                    self.diags.error(path.span, format!("`{other}` is not a field path: use subject_id, device_id, occurred_at or attributes.<name>{hint}"));
                    return;
                };
                let segments: Vec<&str> = rest.split('.').collect();
                if segments.iter().any(|s| s.is_empty()) {
                    self.diags.error(path.span, format!("`{other}` has an empty part; write attributes.a.b"));
                    return;
                }
                for seg in &segments {
                    let Some(cat) = t.field(seg) else { continue };
                    match t.class(cat) {
                        Class::Prohibited => {
                            self.diags.error(path.span, format!("rule `{name}` would {} `{other}`, but `{seg}` is {} data, which is prohibited; remove it", verb_of(op), t.name(cat)));
                            return;
                        }
                        Class::Special if covered(cat, set) == 0 => {
                            self.diags.error(path.span, format!("rule `{name}` would {} `{other}`, {} data (GDPR art. 9), but no `special_allowed` entry for {} covers its purposes", verb_of(op), t.name(cat), t.name(cat)));
                            return;
                        }
                        _ => {}
                    }
                }
                rule.attributes.insert(&segments, op);
            }
        }
    }

    fn generalisation(&mut self, op: &Text, arg: &Text) -> Option<FieldOp> {
        match op.value.as_str() {
            "round" => match arg.value.parse::<u32>() {
                Ok(n) if n <= 15 => Some(FieldOp::Round(n)),
                _ => {
                    self.diags.error(arg.span, format!("`round` takes a number of decimals from 0 to 15, not `{}`", arg.value));
                    None
                }
            },
            "bucket" => match arg.value.parse::<f64>() {
                Ok(w) if w > 0.0 && w.is_finite() => Some(FieldOp::Bucket(w)),
                _ => {
                    self.diags.error(arg.span, format!("`bucket` takes a width greater than zero, not `{}`", arg.value));
                    None
                }
            },
            _ => match crate::time::parse_duration(&arg.value).filter(|d| d.subsec_nanos() == 0) {
                Some(d) => Some(FieldOp::Truncate(d.as_secs() as i64)),
                None => {
                    self.diags.error(arg.span, format!("`truncate` takes a duration such as 30s, 5m, 1h or 1d (a whole number of seconds, minutes, hours or days), not `{}`", arg.value));
                    None
                }
            },
        }
    }

    fn warn_unused_purposes(&mut self, purposes: &[Purpose], rules: &[(Rule, Span)]) {
        let used: HashSet<PurposeId> = rules.iter().flat_map(|(r, _)| r.purposes.iter().copied()).collect();
        for (i, p) in self.doc.purposes.iter().enumerate() {
            if i < purposes.len() && !used.contains(&(i as PurposeId)) {
                self.diags.warning(p.name.span, format!("purpose `{}` is not used by any rule", p.name.value));
            }
        }
    }
}

fn verb_of(op: FieldOp) -> &'static str {
    match op {
        FieldOp::Keep => "keep",
        FieldOp::Pseudonymise => "pseudonymise",
        _ => "generalise",
    }
}

/// Does an earlier match list accept everything a later one does?
fn covers(earlier: &Option<Vec<String>>, later: &Option<Vec<String>>) -> bool {
    match (earlier, later) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(e), Some(l)) => {
            let e: HashSet<String> = e.iter().map(|x| super::names::normalise(x)).collect();
            l.iter().all(|x| e.contains(&super::names::normalise(x)))
        }
    }
}

fn is_name(s: &str, max: usize, ok: impl Fn(char) -> bool) -> bool {
    !s.is_empty() && s.len() <= max && s.chars().all(ok)
}

/// A date (midnight UTC) or an RFC 3339 time.
pub fn parse_instant(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(at) = DateTime::parse_from_rfc3339(s) {
        return Some(at.with_timezone(&Utc));
    }
    let date = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    Some(date.and_hms_opt(0, 0, 0)?.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The suppression entries' HMAC domain is never a pseudonym domain (SPEC 2.7, 3).
    #[test]
    fn the_suppression_domain_is_reserved() {
        let text = "agreement: { id: accord-suppression, version: 1, parties: [a, b] }\npurposes:\n  accord-suppression: { description: d, topic: t.x }\nrules:\n  - name: r\n    purposes: [accord-suppression]\n";
        let problems = match crate::agreement::Agreement::parse(text.as_bytes()) {
            Ok(_) => panic!("a reserved name was accepted"),
            Err(d) => d,
        };
        let reserved: Vec<_> = problems.iter().filter(|d| d.is_error() && d.message.contains("`accord-suppression` is reserved")).map(|d| d.span.line).collect();
        assert_eq!(reserved, [1, 3], "{problems:#?}");
    }

    #[test]
    fn instants() {
        assert_eq!(parse_instant("2026-01-01").unwrap().to_rfc3339(), "2026-01-01T00:00:00+00:00");
        assert_eq!(parse_instant("2026-01-01T01:00:00+01:00").unwrap().to_rfc3339(), "2026-01-01T00:00:00+00:00");
        assert!(parse_instant("01-01-2026").is_none());
    }

    #[test]
    fn covers_is_superset() {
        let s = |v: &[&str]| Some(v.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        assert!(covers(&None, &s(&["a"])));
        assert!(covers(&s(&["a", "b"]), &s(&["a"])));
        assert!(!covers(&s(&["a"]), &s(&["a", "b"])));
        assert!(!covers(&s(&["a"]), &None));
    }
}
