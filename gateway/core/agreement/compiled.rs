//! The compiled agreement: immutable, resolved, ready for the engine.
//!
//! Names are resolved to indices, the taxonomy is merged, schedules carry their
//! timezone, and each rule's field paths form one [`Selector`] tree. Nothing here
//! remembers YAML; the engine reads only this.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::taxonomy::{CategoryId, Taxonomy};

/// Index into [`Agreement::purposes`]. At most [`MAX_PURPOSES`] purposes.
pub type PurposeId = u8;

/// A set of purposes, one bit each.
pub type PurposeSet = u64;

pub const MAX_PURPOSES: usize = 64;

#[derive(Debug)]
pub struct Agreement {
    pub id: String,
    pub version: u32,
    pub parties: Vec<String>,
    pub valid_from: Option<DateTime<Utc>>,
    pub valid_until: Option<DateTime<Utc>>,
    pub purposes: Vec<Purpose>,
    pub taxonomy: Taxonomy,
    pub special_allowed: Vec<SpecialAllowance>,
    pub schedules: Vec<Schedule>,
    pub domain: Domain,
    pub rotate: Option<Rotate>,
    pub rules: Vec<Rule>,
    /// The approved instruments (SPEC 2.6), in file order; `None`: no such section.
    pub instruments: Option<Vec<super::instruments::Instrument>>,
    /// SHA-256 of the file's exact bytes, lowercase hex.
    pub sha256: String,
}

#[derive(Debug)]
pub struct Purpose {
    pub name: String,
    pub description: String,
    pub topic: String,
    /// May receive `subject_id` in the clear.
    pub identified: bool,
}

/// A GDPR art. 9 exception: this special category may reach these purposes.
#[derive(Debug)]
pub struct SpecialAllowance {
    pub category: CategoryId,
    pub purposes: PurposeSet,
    pub basis: String,
    pub justification: String,
}

#[derive(Debug)]
pub struct Schedule {
    pub name: String,
    pub timezone: Tz,
    /// Monday first.
    pub days: [bool; 7],
    /// Seconds since local midnight; the window is `[from, until)`.
    pub from: u32,
    pub until: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Domain {
    PerPurpose,
    Shared,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rotate {
    Daily,
    Weekly,
    Monthly,
}

#[derive(Debug)]
pub struct Rule {
    pub name: String,
    /// The line the rule starts on, for `explain`.
    pub line: usize,
    /// `None` matches every source.
    pub sources: Option<Vec<String>>,
    /// `None` matches every category. Compared exactly.
    pub categories: Option<Vec<String>>,
    pub during: Option<usize>,
    /// In file order; outputs follow this order.
    pub purposes: Vec<PurposeId>,
    pub subject_id: Option<FieldOp>,
    pub device_id: Option<FieldOp>,
    /// Truncation of `occurred_at`, in seconds.
    pub occurred_at: Option<i64>,
    /// What to output of `attributes`; empty means nothing.
    pub attributes: Selector,
}

impl Rule {
    /// Does the rule's `match` list this source and category? Names compare
    /// normalised (SPEC 2.5). The engine keeps the normal forms; this is for the tools.
    pub fn matches(&self, source: &str, category: &str) -> bool {
        let listed = |list: &Option<Vec<String>>, v: &str| {
            let v = super::names::normalise(v);
            list.as_ref().is_none_or(|l| l.iter().any(|x| super::names::normalise(x) == v))
        };
        listed(&self.sources, source) && listed(&self.categories, category)
    }

    pub fn purpose_set(&self) -> PurposeSet {
        self.purposes.iter().fold(0, |set, p| set | (1 << p))
    }
}

/// What happens to one field.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FieldOp {
    Keep,
    Pseudonymise,
    /// To N decimals, half away from zero.
    Round(u32),
    /// Down to a multiple of the width.
    Bucket(f64),
    /// Timestamps down to a multiple of this many seconds since the epoch.
    Truncate(i64),
}

impl FieldOp {
    /// The word a DPO wrote for it.
    pub fn verb(&self) -> &'static str {
        match self {
            FieldOp::Keep => "kept",
            FieldOp::Pseudonymise => "pseudonymised",
            FieldOp::Round(_) | FieldOp::Bucket(_) | FieldOp::Truncate(_) => "generalised",
        }
    }
}

/// A tree of attribute paths: `attributes.a.b` is child `a`, grandchild `b`; where `a`
/// is an array, `b` is the member of every object in it (SPEC 2.5). An `op` on an
/// inner node applies to the whole value below it; a kept node's children apply
/// their own ops inside it. Children are keyed by their normalised name.
#[derive(Clone, Debug, Default)]
pub struct Selector {
    pub op: Option<FieldOp>,
    /// (normalised name, child).
    pub children: Vec<(String, Selector)>,
    /// The children's names' normal-form hashes ([`super::names::normal_hash`]), in
    /// order: a member whose hash is none of them is no child, without comparing names.
    pub hashes: Vec<u64>,
    /// The name as the DPO wrote it (empty at the root).
    pub written: String,
    /// The purposes this node's name may reach (the taxonomy, worked out once at
    /// compile time); `None` means look it up.
    pub allowed: Option<PurposeSet>,
}

impl Selector {
    pub fn is_empty(&self) -> bool {
        self.op.is_none() && self.children.is_empty()
    }

    /// Works out `allowed` for every node below this one.
    pub fn resolve(&mut self, allowed: &dyn Fn(&str) -> PurposeSet) {
        for (_, child) in &mut self.children {
            child.allowed = Some(allowed(&child.written));
            child.resolve(allowed);
        }
    }

    /// The child a member name selects (names compare normalised). A name written as
    /// a listed child is one (children are kept in normal form, a fixed point), so the
    /// normal form is only computed, and allocated, for the other names.
    pub fn child(&self, name: &str) -> Option<&Selector> {
        if let Some((_, s)) = self.children.iter().find(|(n, _)| n == name) {
            return Some(s);
        }
        let name = super::names::normalise(name);
        self.children.iter().find(|(n, _)| *n == name).map(|(_, s)| s)
    }

    pub fn insert(&mut self, path: &[&str], op: FieldOp) {
        match path.split_first() {
            None => self.op = Some(op),
            Some((head, rest)) => {
                let key = super::names::normalise(head);
                let idx = match self.children.iter().position(|(n, _)| *n == key) {
                    Some(i) => i,
                    None => {
                        self.children.push((key, Selector { written: (*head).to_string(), ..Selector::default() }));
                        self.hashes.push(super::names::normal_hash(head));
                        self.children.len() - 1
                    }
                };
                self.children[idx].1.insert(rest, op);
            }
        }
    }

    /// Every path below this node with its op, as `a.b` (for `explain` and `diff`).
    pub fn paths(&self) -> Vec<(String, FieldOp)> {
        let mut out = Vec::new();
        self.collect("", &mut out);
        out
    }

    fn collect(&self, prefix: &str, out: &mut Vec<(String, FieldOp)>) {
        if let Some(op) = self.op {
            out.push((prefix.to_string(), op));
        }
        for (_, child) in &self.children {
            let name = &child.written;
            let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
            child.collect(&path, out);
        }
    }
}

impl Agreement {
    pub fn purpose_index(&self, name: &str) -> Option<PurposeId> {
        self.purposes.iter().position(|p| p.name == name).map(|i| i as PurposeId)
    }

    pub fn rule_index(&self, name: &str) -> Option<usize> {
        self.rules.iter().position(|r| r.name == name)
    }

    /// Purposes a special category may reach (the union of its exceptions).
    pub fn special_purposes(&self, category: CategoryId) -> PurposeSet {
        self.special_allowed.iter().filter(|s| s.category == category).fold(0, |set, s| set | s.purposes)
    }
}
