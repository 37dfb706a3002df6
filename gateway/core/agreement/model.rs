//! The agreement as the DPO wrote it: the YAML shape of SPEC section 2, every value
//! with its position, nothing derived yet.
//!
//! Reading checks the shape only (known keys, lists where lists belong, numbers where
//! numbers belong) and records a diagnostic for each problem instead of stopping;
//! meaning (does this purpose exist? is this timezone real?) is `compile.rs`'s job.

use super::diagnostic::{suggest, Diagnostics};
use super::yaml::{Node, NodeKind, Span};

/// A value and where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Span,
}

pub type Text = Spanned<String>;

#[derive(Debug, Default)]
pub struct Doc {
    pub header: Header,
    pub purposes: Vec<PurposeDoc>,
    pub categories: CategoriesDoc,
    pub schedules: Vec<ScheduleDoc>,
    pub pseudonymisation: PseudonymisationDoc,
    pub rules: Vec<RuleDoc>,
    /// `None`: no `instruments` section, every instrument admitted (SPEC 2.6).
    pub instruments: Option<Vec<super::instruments::InstrumentDoc>>,
    /// Where the `purposes:` and `rules:` keys stand (for "missing" messages).
    pub purposes_span: Option<Span>,
    pub rules_span: Option<Span>,
    /// Where each top-level section stands (to place a missing one); set by the caller.
    pub sections: super::diagnostic::Sections,
}

#[derive(Debug, Default)]
pub struct Header {
    pub span: Span,
    pub id: Option<Text>,
    pub version: Option<Spanned<i64>>,
    pub parties: Vec<Text>,
    pub valid_from: Option<Text>,
    pub valid_until: Option<Text>,
}

#[derive(Debug)]
pub struct PurposeDoc {
    pub name: Text,
    pub description: Option<Text>,
    pub topic: Option<Text>,
    pub identified: bool,
}

#[derive(Debug, Default)]
pub struct CategoriesDoc {
    pub prohibited: Vec<Text>,
    pub fields: Vec<(Text, Text)>,
    pub special_allowed: Vec<SpecialDoc>,
}

#[derive(Debug)]
pub struct SpecialDoc {
    pub span: Span,
    pub category: Option<Text>,
    pub purposes: Vec<Text>,
    pub basis: Option<Text>,
    pub justification: Option<Text>,
}

#[derive(Debug)]
pub struct ScheduleDoc {
    pub name: Text,
    pub timezone: Option<Text>,
    pub days: Vec<Text>,
    pub from: Option<Text>,
    pub until: Option<Text>,
}

#[derive(Debug, Default)]
pub struct PseudonymisationDoc {
    pub domain: Option<Text>,
    pub rotate: Option<Text>,
}

#[derive(Debug)]
pub struct RuleDoc {
    pub span: Span,
    pub name: Option<Text>,
    pub match_source: Option<Vec<Text>>,
    pub match_category: Option<Vec<Text>>,
    pub during: Option<Text>,
    pub purposes: Vec<Text>,
    pub purposes_span: Option<Span>,
    pub keep: Vec<Text>,
    pub pseudonymise: Vec<Text>,
    pub generalise: Vec<GeneraliseDoc>,
}

#[derive(Debug)]
pub struct GeneraliseDoc {
    pub path: Text,
    /// `round`, `bucket` or `truncate`, and its argument as written.
    pub op: Option<(Text, Text)>,
}

/// Reads the whole document, recording every shape problem in `diags`.
pub fn read(root: &Node, diags: &mut Diagnostics) -> Doc {
    let mut doc = Doc::default();
    let mut r = Reader { diags };
    let Some(entries) = r.map(root, "the agreement file") else { return doc };
    for (key, value) in r.keys(entries, &["agreement", "purposes", "categories", "schedules", "pseudonymisation", "instruments", "rules"], "at the top of the file") {
        match key {
            "agreement" => doc.header = r.header(value),
            "purposes" => {
                doc.purposes_span = Some(value.span);
                if let Some(items) = r.map(value, "`purposes`") {
                    for (k, v) in items {
                        if let Some(name) = r.text(k, "a purpose name") {
                            doc.purposes.push(r.purpose(name, v));
                        }
                    }
                }
            }
            "categories" => doc.categories = r.categories(value),
            "instruments" => doc.instruments = Some(super::instruments::read(&mut r, value)),
            "schedules" => {
                if let Some(items) = r.map(value, "`schedules`") {
                    for (k, v) in items {
                        if let Some(name) = r.text(k, "a schedule name") {
                            doc.schedules.push(r.schedule(name, v));
                        }
                    }
                }
            }
            "pseudonymisation" => {
                if let Some(items) = r.map(value, "`pseudonymisation`") {
                    for (k, v) in r.keys(items, &["domain", "rotate"], "in `pseudonymisation`") {
                        match k {
                            "domain" => doc.pseudonymisation.domain = r.text(v, "`domain`"),
                            _ => doc.pseudonymisation.rotate = r.text(v, "`rotate`"),
                        }
                    }
                }
            }
            _ => {
                doc.rules_span = Some(value.span);
                if let Some(items) = r.seq(value, "`rules`") {
                    for item in items {
                        if let Some(rule) = r.rule(item) {
                            doc.rules.push(rule);
                        }
                    }
                }
            }
        }
    }
    doc
}

pub(super) struct Reader<'d> {
    pub(super) diags: &'d mut Diagnostics,
}

impl Reader<'_> {
    pub(super) fn map<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [(Node, Node)]> {
        match &node.kind {
            NodeKind::Map(entries) => Some(entries),
            _ if node.is_null() => Some(&[]),
            _ => {
                self.diags.error(node.span, format!("{what} must be a mapping of `key: value` lines, not {}", node.kind_name()));
                None
            }
        }
    }

    pub(super) fn seq<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [Node]> {
        match &node.kind {
            NodeKind::Seq(items) => Some(items),
            _ if node.is_null() => Some(&[]),
            _ => {
                self.diags.error(node.span, format!("{what} must be a list (`[a, b]` or `- a` lines), not {}", node.kind_name()));
                None
            }
        }
    }

    pub(super) fn text(&mut self, node: &Node, what: &str) -> Option<Text> {
        match &node.kind {
            NodeKind::Scalar { text, .. } if !node.is_null() => Some(Spanned { value: text.clone(), span: node.span }),
            _ => {
                self.diags.error(node.span, format!("{what} must be a single value, not {}", node.kind_name()));
                None
            }
        }
    }

    pub(super) fn texts(&mut self, node: &Node, what: &str) -> Vec<Text> {
        match &node.kind {
            // A single value where a list is expected is almost always meant as a list of one.
            NodeKind::Scalar { .. } if !node.is_null() => self.text(node, what).into_iter().collect(),
            _ => self.seq(node, what).unwrap_or(&[]).iter().filter_map(|n| self.text(n, what)).collect(),
        }
    }

    fn boolean(&mut self, node: &Node, what: &str) -> bool {
        match node.as_scalar() {
            Some("true") => true,
            Some("false") => false,
            _ => {
                self.diags.error(node.span, format!("{what} must be `true` or `false`"));
                false
            }
        }
    }

    pub(super) fn keys<'n>(&mut self, entries: &'n [(Node, Node)], known: &[&'static str], place: &str) -> Vec<(&'static str, &'n Node)> {
        known_keys(self.diags, entries, known, place)
    }

    fn header(&mut self, node: &Node) -> Header {
        let mut h = Header { span: node.span, ..Header::default() };
        let Some(entries) = self.map(node, "`agreement`") else { return h };
        for (k, v) in self.keys(entries, &["id", "version", "parties", "valid_from", "valid_until"], "in `agreement`") {
            match k {
                "id" => h.id = self.text(v, "`id`"),
                "version" => {
                    h.version = match v.as_scalar().map(str::parse::<i64>) {
                        Some(Ok(n)) => Some(Spanned { value: n, span: v.span }),
                        _ => {
                            self.diags.error(v.span, "`version` must be a whole number, 1 or more");
                            None
                        }
                    }
                }
                "parties" => h.parties = self.texts(v, "`parties`"),
                "valid_from" => h.valid_from = self.text(v, "`valid_from`"),
                _ => h.valid_until = self.text(v, "`valid_until`"),
            }
        }
        h
    }

    fn purpose(&mut self, name: Text, node: &Node) -> PurposeDoc {
        let mut p = PurposeDoc { name, description: None, topic: None, identified: false };
        let what = format!("purpose `{}`", p.name.value);
        if let Some(entries) = self.map(node, &what) {
            for (k, v) in self.keys(entries, &["description", "topic", "identified"], &format!("in {what}")) {
                match k {
                    "description" => p.description = self.text(v, "`description`"),
                    "topic" => p.topic = self.text(v, "`topic`"),
                    _ => p.identified = self.boolean(v, "`identified`"),
                }
            }
        }
        p
    }

    fn categories(&mut self, node: &Node) -> CategoriesDoc {
        let mut c = CategoriesDoc::default();
        let Some(entries) = self.map(node, "`categories`") else { return c };
        for (k, v) in self.keys(entries, &["prohibited", "fields", "special_allowed"], "in `categories`") {
            match k {
                "prohibited" => c.prohibited = self.texts(v, "`prohibited`"),
                "fields" => {
                    if let Some(items) = self.map(v, "`fields`") {
                        for (f, cat) in items {
                            if let (Some(f), Some(cat)) = (self.text(f, "an attribute name"), self.text(cat, "a category name")) {
                                c.fields.push((f, cat));
                            }
                        }
                    }
                }
                _ => {
                    for item in self.seq(v, "`special_allowed`").unwrap_or(&[]) {
                        let mut s = SpecialDoc { span: item.span, category: None, purposes: Vec::new(), basis: None, justification: None };
                        if let Some(entries) = self.map(item, "a `special_allowed` entry") {
                            for (k, v) in self.keys(entries, &["category", "purposes", "basis", "justification"], "in `special_allowed`") {
                                match k {
                                    "category" => s.category = self.text(v, "`category`"),
                                    "purposes" => s.purposes = self.texts(v, "`purposes`"),
                                    "basis" => s.basis = self.text(v, "`basis`"),
                                    _ => s.justification = self.text(v, "`justification`"),
                                }
                            }
                        }
                        c.special_allowed.push(s);
                    }
                }
            }
        }
        c
    }

    fn schedule(&mut self, name: Text, node: &Node) -> ScheduleDoc {
        let mut s = ScheduleDoc { name, timezone: None, days: Vec::new(), from: None, until: None };
        let what = format!("schedule `{}`", s.name.value);
        if let Some(entries) = self.map(node, &what) {
            for (k, v) in self.keys(entries, &["timezone", "days", "from", "until"], &format!("in {what}")) {
                match k {
                    "timezone" => s.timezone = self.text(v, "`timezone`"),
                    "days" => s.days = self.texts(v, "`days`"),
                    "from" => s.from = self.text(v, "`from`"),
                    _ => s.until = self.text(v, "`until`"),
                }
            }
        }
        s
    }

    fn rule(&mut self, node: &Node) -> Option<RuleDoc> {
        let entries = self.map(node, "a rule")?;
        let mut rule = RuleDoc {
            span: node.span,
            name: None,
            match_source: None,
            match_category: None,
            during: None,
            purposes: Vec::new(),
            purposes_span: None,
            keep: Vec::new(),
            pseudonymise: Vec::new(),
            generalise: Vec::new(),
        };
        let known = ["name", "match", "during", "purposes", "keep", "pseudonymise", "generalise"];
        for (k, v) in self.keys(entries, &known, "in a rule") {
            match k {
                "name" => rule.name = self.text(v, "a rule's `name`"),
                "match" => {
                    if let Some(entries) = self.map(v, "`match`") {
                        for (k, v) in self.keys(entries, &["source", "category"], "in `match`") {
                            if k == "source" {
                                rule.match_source = Some(self.texts(v, "`source`"));
                            } else {
                                rule.match_category = Some(self.texts(v, "`category`"));
                            }
                        }
                    }
                }
                "during" => rule.during = self.text(v, "`during`"),
                "purposes" => {
                    rule.purposes_span = Some(v.span);
                    rule.purposes = self.texts(v, "`purposes`");
                }
                "keep" => rule.keep = self.texts(v, "`keep`"),
                "pseudonymise" => rule.pseudonymise = self.texts(v, "`pseudonymise`"),
                _ => {
                    for (path, op) in self.map(v, "`generalise`").unwrap_or(&[]) {
                        let Some(path) = self.text(path, "a field path") else { continue };
                        let op = self.generalisation(op);
                        rule.generalise.push(GeneraliseDoc { path, op });
                    }
                }
            }
        }
        if rule.name.is_none() {
            self.diags.error(node.span, "this rule has no `name`; give each rule a unique name, it is stamped on every output");
        }
        Some(rule)
    }

    fn generalisation(&mut self, node: &Node) -> Option<(Text, Text)> {
        let entries = self.map(node, "a generalisation (`{ round: 3 }`, `{ bucket: 10 }` or `{ truncate: 15m }`)")?;
        let found = self.keys(entries, &["round", "bucket", "truncate"], "in a generalisation");
        match found.as_slice() {
            [(op, arg)] => {
                let arg = self.text(arg, &format!("`{op}`"))?;
                Some((Spanned { value: (*op).to_string(), span: node.span }, arg))
            }
            [] => {
                self.diags.error(node.span, "say how to generalise: `{ round: N }`, `{ bucket: W }` or `{ truncate: D }`");
                None
            }
            _ => {
                self.diags.error(node.span, "a field takes one generalisation; choose one of `round`, `bucket`, `truncate`");
                None
            }
        }
    }
}

/// The entries of a mapping whose keys are all known (the one YAML key reader of the
/// agreement and of the DPO's case files); every unknown or repeated key
/// is reported (with the nearest known name), and left out.
pub fn known_keys<'n>(diags: &mut Diagnostics, entries: &'n [(Node, Node)], known: &[&'static str], place: &str) -> Vec<(&'static str, &'n Node)> {
    let mut seen: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for (k, v) in entries {
        let Some(name) = k.as_scalar() else {
            diags.error(k.span, format!("a key {place} must be a plain name"));
            continue;
        };
        match known.iter().find(|known| **known == name) {
            // Reported once for every mapping by `yaml::duplicate_keys`.
            Some(known) if seen.contains(known) => {}
            Some(known) => {
                seen.push(known);
                out.push((*known, v));
            }
            None => {
                let hint = suggest(name, known.iter().copied());
                let list = known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
                diags.error(k.span, format!("unknown key `{name}` {place}{hint} (known keys: {list})"));
            }
        }
    }
    out
}
