//! Steps 4a and 5's look-ups by hashing, built once per agreement: the first
//! instrument that admits an event, and the first rule whose `match` lists its source
//! and category. Comparing every entry in turn cost an agreement of 300 rules a third
//! of each event's time, and one of 800 instruments nine tenths of it. These indexes
//! give the same answers, by the same order: a few hash look-ups, and for rules that
//! list both a source and a category, a search of the shorter of two ordered lists in
//! the longer.

use std::collections::HashMap;

use crate::agreement::instruments::Instrument;
use crate::agreement::names::normalise;

type Map<V> = HashMap<Box<str>, V, foldhash::fast::RandomState>;

/// Step 5: the first rule that lists the event's source and category (in normal
/// form), a list the rule leaves out matching anything.
///
/// The rules that match are those listing the source, or no sources, and listing
/// the category, or no categories. So the first of them is the first of four kinds,
/// each found on its own: listing neither (one number), listing the source and no
/// categories (kept per source), listing the category and no sources (kept per
/// category), and listing both (the first rule in both lists of rules).
#[derive(Debug, Default)]
pub(super) struct Rules {
    sources: Map<Named>,
    categories: Map<Named>,
    /// The first rule that lists neither.
    open: Option<u32>,
}

/// The rules that name one source (or one category), in order.
#[derive(Debug, Default)]
struct Named {
    /// Those that also list the other side (categories, or sources).
    rules: Vec<u32>,
    /// The first that leaves the other side out.
    open: Option<u32>,
}

impl Rules {
    /// From each rule's `match` lists (sources, categories; `None`: not listed), in
    /// the rules' order.
    pub(super) fn new<'a>(rules: impl Iterator<Item = (&'a Option<Vec<String>>, &'a Option<Vec<String>>)>) -> Rules {
        let mut index = Rules::default();
        for (i, (sources, categories)) in rules.enumerate() {
            let i = i as u32;
            let lists = |l: &Option<Vec<String>>| l.as_ref().map(|l| l.iter().map(|x| normalise(x)).collect::<Vec<_>>());
            let (sources, categories) = (lists(sources), lists(categories));
            let file = |map: &mut Map<Named>, names: &[String], other_listed: bool| {
                for name in names {
                    let named = map.entry(name.as_str().into()).or_default();
                    if !other_listed {
                        named.open.get_or_insert(i);
                    } else if named.rules.last() != Some(&i) {
                        named.rules.push(i);
                    }
                }
            };
            match (&sources, &categories) {
                (None, None) => {
                    index.open.get_or_insert(i);
                }
                (Some(s), c) => file(&mut index.sources, s, c.is_some()),
                (None, Some(c)) => file(&mut index.categories, c, false),
            }
            if let (Some(_), Some(c)) = (&sources, &categories) {
                file(&mut index.categories, c, true);
            }
        }
        index
    }

    /// The first rule for this source and category, both in normal form.
    pub(super) fn first(&self, source: &str, category: &str) -> Option<usize> {
        let (s, c) = (self.sources.get(source), self.categories.get(category));
        let mut best = self.open.unwrap_or(u32::MAX);
        for open in [s.and_then(|s| s.open), c.and_then(|c| c.open)].into_iter().flatten() {
            best = best.min(open);
        }
        if let (Some(s), Some(c)) = (s, c) {
            // Both lists are in order: the first of the shorter found in the longer is
            // the first in both.
            let (short, long) = if s.rules.len() <= c.rules.len() { (&s.rules, &c.rules) } else { (&c.rules, &s.rules) };
            if let Some(&both) = short.iter().take_while(|&&r| r < best).find(|r| long.binary_search(r).is_ok()) {
                best = both;
            }
        }
        (best != u32::MAX).then_some(best as usize)
    }
}

/// Step 4a: the first instrument whose source is the event's and whose device globs
/// match its `device_id`. Per source, the entries that name devices only exactly (no
/// `*` or `?`) are found by the device's id; only the others are tried in turn, and
/// only those before the exact match.
#[derive(Debug, Default)]
pub(super) struct Instruments {
    sources: Map<BySource>,
}

#[derive(Debug, Default)]
struct BySource {
    /// Each device id an entry names exactly: the first such entry.
    exact: Map<u32>,
    /// The entries with a pattern, or with no devices (any device), in order.
    tried: Vec<u32>,
}

impl Instruments {
    pub(super) fn new(list: &[Instrument]) -> Instruments {
        let mut index = Instruments::default();
        for (i, ins) in list.iter().enumerate() {
            let by = index.sources.entry(ins.source_normal.as_str().into()).or_default();
            let pattern = |d: &String| d.contains(['*', '?']);
            if ins.devices.is_empty() || ins.devices.iter().any(pattern) {
                by.tried.push(i as u32);
            } else {
                for d in &ins.devices {
                    by.exact.entry(d.as_str().into()).or_insert(i as u32);
                }
            }
        }
        index
    }

    /// The first entry of `list` (the one this index was built from) that admits this
    /// source (in normal form) and device.
    pub(super) fn first(&self, list: &[Instrument], source: &str, device: Option<&str>) -> Option<usize> {
        let by = self.sources.get(source)?;
        let exact = device.and_then(|d| by.exact.get(d)).copied();
        let before = exact.unwrap_or(u32::MAX);
        let tried = by.tried.iter().copied().take_while(|&i| i < before).find(|&i| list[i as usize].admits(source, device));
        tried.or(exact).map(|i| i as usize)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Names from a small alphabet, so that lists overlap and events often match.
    fn name() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["tracker", "Tracker", "pass", "wearable", "location", "alarm", "access", "x"]).prop_map(String::from)
    }

    fn list() -> impl Strategy<Value = Option<Vec<String>>> {
        prop::option::weighted(0.75, prop::collection::vec(name(), 0..4))
    }

    fn instrument(source: &str, devices: &[&str]) -> Instrument {
        Instrument {
            name: "i".into(),
            line: 1,
            source: source.into(),
            source_normal: normalise(source),
            devices: devices.iter().map(|d| d.to_string()).collect(),
            reference: String::new(),
            valid_until: chrono::DateTime::<chrono::Utc>::MAX_UTC,
            fields: None,
            quality: Vec::new(),
            rule_within_fields: Vec::new(),
        }
    }

    proptest! {
        /// The index finds the rule the rules' order finds: the first whose lists hold
        /// the source and the category, compared in normal form.
        #[test]
        fn the_rule_index_finds_the_first_matching_rule(
            rules in prop::collection::vec((list(), list()), 0..24),
            source in name(),
            category in name(),
        ) {
            let (source, category) = (normalise(&source), normalise(&category));
            let listed = |l: &Option<Vec<String>>, v: &str| l.as_ref().is_none_or(|l| l.iter().any(|x| normalise(x) == v));
            let expected = rules.iter().position(|(s, c)| listed(s, &source) && listed(c, &category));
            prop_assert_eq!(Rules::new(rules.iter().map(|(s, c)| (s, c))).first(&source, &category), expected);
        }

        /// The index finds the instrument the list's order finds, exact device ids,
        /// patterns and entries for any device mixed.
        #[test]
        fn the_instrument_index_finds_the_first_admitting_instrument(
            entries in prop::collection::vec((name(), prop::collection::vec(prop::sample::select(vec!["d1", "d2", "d*", "?2", "*", "d10", "e1"]), 0..3)), 0..24),
            source in name(),
            device in prop::option::weighted(0.9, prop::sample::select(vec!["d1", "d2", "d10", "e1", "f", ""])),
        ) {
            let list: Vec<Instrument> = entries.iter().map(|(s, d)| instrument(s, d)).collect();
            let source = normalise(&source);
            let expected = list.iter().position(|ins| ins.admits(&source, device));
            prop_assert_eq!(Instruments::new(&list).first(&list, &source, device), expected);
        }
    }
}
