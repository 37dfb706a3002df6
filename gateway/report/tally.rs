//! Counting what was enforced, per batch, without formatting a label per event.
//!
//! A [`Tally`] is a plain array of counters indexed by rule, purpose, reason and
//! category; a shell adds each verdict to it and, once per batch, hands it to
//! whoever reports (the file-mode summary, the metrics exporter, the audit trail).

use std::sync::Arc;

use crate::agreement::Agreement;
use crate::engine::{DropReason, Outputs, Verdict};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub received: u64,
    /// Events with at least one output.
    pub forwarded_events: u64,
    /// Outputs per `rule * purposes + purpose`.
    pub forwarded: Vec<u64>,
    /// Drops per `reason * (categories + 1) + category`; the last category is `other`.
    pub dropped: Vec<u64>,
    pub fields_removed: Vec<u64>,
    pub fields_generalised: Vec<u64>,
    /// Per purpose.
    pub fields_pseudonymised: Vec<u64>,
    purposes: usize,
    categories: usize,
}

impl Tally {
    pub fn new(a: &Agreement) -> Tally {
        let (rules, purposes, categories) = (a.rules.len(), a.purposes.len(), a.taxonomy.len());
        Tally {
            forwarded: vec![0; rules * purposes],
            dropped: vec![0; DropReason::ALL.len() * (categories + 1)],
            fields_removed: vec![0; rules],
            fields_generalised: vec![0; rules],
            fields_pseudonymised: vec![0; purposes],
            purposes,
            categories,
            ..Tally::default()
        }
    }

    /// Adds one event's verdict and outputs.
    pub fn add(&mut self, verdict: &Verdict, outputs: &Outputs) {
        self.received += 1;
        match verdict {
            Verdict::Forwarded(_) => {
                self.forwarded_events += 1;
                for o in &outputs.items {
                    self.forwarded[o.rule * self.purposes + o.purpose as usize] += 1;
                    self.fields_removed[o.rule] += u64::from(o.fields.removed);
                    self.fields_generalised[o.rule] += u64::from(o.fields.generalised);
                    self.fields_pseudonymised[o.purpose as usize] += u64::from(o.fields.pseudonymised);
                }
            }
            Verdict::Dropped(d) => {
                let category = d.category.map_or(self.categories, usize::from);
                self.dropped[d.reason as usize * (self.categories + 1) + category] += 1;
            }
        }
    }

    /// Drops for one reason, over all categories.
    pub fn dropped_for(&self, reason: DropReason) -> u64 {
        let n = self.categories + 1;
        self.dropped[reason as usize * n..(reason as usize + 1) * n].iter().sum()
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }

    /// Outputs per purpose, over all rules.
    pub fn forwarded_to(&self, purpose: usize) -> u64 {
        self.forwarded.iter().skip(purpose).step_by(self.purposes.max(1)).sum()
    }

    /// Every non-zero drop counter as (reason, category label, count).
    pub fn drops<'a>(&'a self, a: &'a Agreement) -> impl Iterator<Item = (DropReason, &'a str, u64)> + 'a {
        let n = self.categories + 1;
        self.dropped.iter().enumerate().filter(|(_, c)| **c > 0).map(move |(i, c)| {
            let (reason, cat) = (DropReason::ALL[i / n], i % n);
            let label = if cat == self.categories { "other" } else { a.taxonomy.name(cat as u16) };
            (reason, label, *c)
        })
    }

    /// Zeroes every counter, keeping the shape (for reuse per batch).
    pub fn reset(&mut self) {
        self.received = 0;
        self.forwarded_events = 0;
        for v in [&mut self.forwarded, &mut self.dropped, &mut self.fields_removed, &mut self.fields_generalised, &mut self.fields_pseudonymised] {
            v.iter_mut().for_each(|x| *x = 0);
        }
    }

    /// Adds another tally of the same agreement.
    pub fn merge(&mut self, other: &Tally) {
        self.received += other.received;
        self.forwarded_events += other.forwarded_events;
        for (a, b) in [
            (&mut self.forwarded, &other.forwarded),
            (&mut self.dropped, &other.dropped),
            (&mut self.fields_removed, &other.fields_removed),
            (&mut self.fields_generalised, &other.fields_generalised),
            (&mut self.fields_pseudonymised, &other.fields_pseudonymised),
        ] {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
    }

    /// A summary for people, as `accord run` prints it at the end.
    pub fn summary(&self, a: &Agreement) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let outputs: u64 = self.forwarded.iter().sum();
        let _ = writeln!(s, "agreement {} version {} ({} rules)", a.id, a.version, a.rules.len());
        let _ = writeln!(s, "received   {:>9}", self.received);
        let _ = writeln!(s, "forwarded  {:>9} events as {} outputs", self.forwarded_events, outputs);
        for (i, p) in a.purposes.iter().enumerate() {
            let _ = writeln!(s, "  {:<22} {:>9}  -> {}", p.name, self.forwarded_to(i), p.topic);
        }
        let _ = writeln!(s, "dropped    {:>9}", self.dropped_total());
        for reason in DropReason::ALL {
            let _ = writeln!(s, "  {:<22} {:>9}", reason.as_str(), self.dropped_for(reason));
        }
        let removed: u64 = self.fields_removed.iter().sum();
        let pseudonymised: u64 = self.fields_pseudonymised.iter().sum();
        let generalised: u64 = self.fields_generalised.iter().sum();
        let _ = writeln!(s, "fields     {removed} removed, {pseudonymised} pseudonymised, {generalised} generalised");
        s
    }
}

/// What a run enforced, per agreement that was in force during it (more than one
/// when the agreement was reloaded).
#[derive(Debug, Default)]
pub struct Totals {
    pub parts: Vec<(Arc<Agreement>, Tally)>,
}

impl Totals {
    /// Adds a tally of `agreement` (a new part when the agreement changed).
    pub fn add(&mut self, agreement: &Arc<Agreement>, t: &Tally) {
        match self.parts.last_mut() {
            Some((a, total)) if Arc::ptr_eq(a, agreement) => total.merge(t),
            _ => self.parts.push((agreement.clone(), t.clone())),
        }
    }

    pub fn received(&self) -> u64 {
        self.parts.iter().map(|(_, t)| t.received).sum()
    }

    pub fn forwarded_events(&self) -> u64 {
        self.parts.iter().map(|(_, t)| t.forwarded_events).sum()
    }

    pub fn dropped_total(&self) -> u64 {
        self.parts.iter().map(|(_, t)| t.dropped_total()).sum()
    }

    /// The tally of a run that had one agreement throughout.
    pub fn single(&self) -> Option<&Tally> {
        match self.parts.as_slice() {
            [(_, t)] => Some(t),
            _ => None,
        }
    }

    /// The summary `accord run` prints: one section per agreement in force.
    pub fn summary(&self) -> String {
        self.parts.iter().map(|(a, t)| t.summary(a)).collect::<Vec<_>>().join("\n")
    }
}
