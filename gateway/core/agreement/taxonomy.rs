//! The built-in taxonomy of SPEC 2.2, and the merged form the engine consults.
//!
//! The agreement may add prohibited categories and attribute-name mappings; it can
//! never remove a built-in entry. Every lookup compares names in SPEC 2.5's normal form
//! and matches terms by words.

use std::collections::HashMap;

use super::names::{self, Terms};

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// What the law and the agreement say about a data category.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Never collected (EU AI Act art. 5, or the agreement).
    Prohibited,
    /// GDPR art. 9: only under an explicit `special_allowed` exception.
    Special,
    /// Neither: an ordinary category, decided by the rules.
    Ordinary,
}

/// Prohibited by law, with the reason a DPO or worker can cite.
pub const PROHIBITED: &[(&str, &str)] = &[
    ("emotion", "EU AI Act art. 5(1)(f): no emotion recognition at work"),
    ("facial_expression", "EU AI Act art. 5(1)(f): no emotion recognition at work"),
    ("racial_ethnic_origin", "EU AI Act art. 5(1)(g): no biometric categorisation"),
    ("political_opinion", "EU AI Act art. 5(1)(g): no biometric categorisation"),
    ("religion", "EU AI Act art. 5(1)(g): no biometric categorisation"),
    ("trade_union", "EU AI Act art. 5(1)(g): no biometric categorisation"),
    ("sex_life", "EU AI Act art. 5(1)(g): no biometric categorisation"),
    ("sexual_orientation", "EU AI Act art. 5(1)(g): no biometric categorisation"),
    ("genetic", "DNA profiles have no place in employment"),
];

/// Special categories of GDPR art. 9.
pub const SPECIAL: &[&str] = &["health", "biometric"];

/// Attribute-name terms and the category they reveal (SPEC 2.2). A member name is
/// classified when one of these appears in it as a run of its words (SPEC 2.5).
pub const FIELDS: &[(&str, &str)] = &[
    ("emotion", "emotion"),
    ("emotional", "emotion"),
    ("mood", "emotion"),
    ("sentiment", "emotion"),
    ("stress", "emotion"),
    ("valence", "emotion"),
    ("arousal", "emotion"),
    ("facial_expression", "emotion"),
    ("feeling", "emotion"),
    ("happiness", "emotion"),
    ("anxiety", "emotion"),
    ("frustration", "emotion"),
    ("anger", "emotion"),
    ("heart_rate", "health"),
    ("heartrate", "health"),
    ("heartbeat", "health"),
    ("pulse", "health"),
    ("bpm", "health"),
    ("hrv", "health"),
    ("ecg", "health"),
    ("blood_pressure", "health"),
    ("blood_oxygen", "health"),
    ("spo2", "health"),
    ("respiration", "health"),
    ("respiratory_rate", "health"),
    ("breathing_rate", "health"),
    ("body_temperature", "health"),
    ("skin_temperature", "health"),
    ("glucose", "health"),
    ("diagnosis", "health"),
    ("medical", "health"),
    ("medication", "health"),
    ("illness", "health"),
    ("sick", "health"),
    ("sleep", "health"),
    ("fatigue", "health"),
    ("pregnancy", "health"),
    ("biometric", "biometric"),
    ("fingerprint", "biometric"),
    ("face", "biometric"),
    ("facial", "biometric"),
    ("iris", "biometric"),
    ("retina", "biometric"),
    ("voiceprint", "biometric"),
    ("gait", "biometric"),
    ("palm_vein", "biometric"),
    ("face_template", "biometric"),
    ("iris_template", "biometric"),
    ("dna", "genetic"),
    ("genome", "genetic"),
    ("genetic", "genetic"),
];

/// Index of a category in [`Taxonomy::categories`].
pub type CategoryId = u16;

/// The built-in taxonomy merged with the agreement's additions.
///
/// Names compare in SPEC 2.5's normal form ([`names::normalise`]); attribute names
/// and category names are classified by the terms whose words they contain.
#[derive(Clone, Debug)]
pub struct Taxonomy {
    /// Known category names (lowercase, as written) and their class. Index = [`CategoryId`].
    categories: Vec<(String, Class)>,
    /// Normalised category name -> id.
    by_name: Map<String, CategoryId>,
    /// Attribute term (lowercase, as written) -> category, for listings.
    fields: Map<String, CategoryId>,
    /// Attribute terms by their words (a term may reveal several categories).
    field_terms: Terms<CategoryId>,
    /// Category names by their words: a category name holding one is classified so.
    category_terms: Terms<CategoryId>,
}

impl Default for Taxonomy {
    fn default() -> Self {
        let mut t = Taxonomy {
            categories: Vec::new(),
            by_name: Map::default(),
            fields: Map::default(),
            field_terms: Terms::default(),
            category_terms: Terms::default(),
        };
        for (name, _) in PROHIBITED {
            t.set_class(name, Class::Prohibited);
        }
        for name in SPECIAL {
            t.set_class(name, Class::Special);
        }
        for (field, category) in FIELDS {
            t.map_field(field, category);
        }
        t
    }
}

impl Taxonomy {
    /// Registers a category name (for metric labels and lookups); keeps its class if known.
    pub fn intern(&mut self, name: &str) -> CategoryId {
        let key = names::normalise(name);
        if let Some(&id) = self.by_name.get(&key) {
            return id;
        }
        let id = self.categories.len() as CategoryId;
        self.categories.push((name.to_lowercase(), Class::Ordinary));
        self.by_name.insert(key, id);
        self.category_terms.add(name, id);
        id
    }

    /// Marks a category; a built-in prohibited or special class is never weakened.
    /// A prohibited category's name becomes an attribute term too (an attribute named
    /// `political_opinion` reveals one).
    pub fn set_class(&mut self, name: &str, class: Class) {
        let id = self.intern(name);
        let current = self.categories[id as usize].1;
        if current == Class::Ordinary || class == Class::Prohibited {
            self.categories[id as usize].1 = class;
        }
        if class == Class::Prohibited {
            self.field_terms.add(name, id);
        }
    }

    /// Adds an attribute term. Terms only add: a name that also holds a stricter term
    /// is still classified by it.
    pub fn map_field(&mut self, field: &str, category: &str) {
        let id = self.intern(category);
        let key = field.to_lowercase();
        // The listing keeps a built-in name's stricter category.
        let keep_existing = self
            .fields
            .get(&key)
            .is_some_and(|&old| self.class(old) != Class::Ordinary && self.class(id) == Class::Ordinary);
        if !keep_existing {
            self.fields.insert(key, id);
        }
        self.field_terms.add(field, id);
    }

    /// The category of exactly this name (normalised), if the taxonomy or agreement knows it.
    pub fn category(&self, name: &str) -> Option<CategoryId> {
        self.by_name.get(&names::normalise(name)).copied()
    }

    /// Every category a category name reveals (SPEC 2.1 steps 3 and 4): its own, and
    /// those of every category name or attribute term among its words.
    pub fn category_classes(&self, name: &str, mut f: impl FnMut(CategoryId)) {
        if let Some(id) = self.category(name) {
            f(id);
        }
        let r = names::readings(name);
        self.category_terms.find(&r, &mut f);
        self.field_terms.find(&r, &mut f);
    }

    /// Every category an attribute name reveals (SPEC 2.2).
    pub fn field_classes(&self, name: &str, f: impl FnMut(CategoryId)) {
        self.field_terms.find(&names::readings(name), f);
    }

    /// False only when an attribute name whose normal form is `normal` (ASCII, from
    /// [`names::ascii_normal_bytes`]) reveals no category: [`Taxonomy::field_classes`]
    /// would find nothing, known without reading it into words.
    pub fn field_may_reveal(&self, normal: &[u8]) -> bool {
        self.field_terms.may_occur_in(normal)
    }

    /// The strictest category of a category name (prohibited, then special), else its own.
    pub fn classify_category(&self, name: &str) -> Option<CategoryId> {
        let mut found = self.category(name);
        self.category_classes(name, |id| found = Some(self.stricter(found, id)));
        found
    }

    /// The strictest category an attribute name reveals, if any.
    pub fn field(&self, name: &str) -> Option<CategoryId> {
        let mut found = None;
        self.field_classes(name, |id| found = Some(self.stricter(found, id)));
        found
    }

    fn stricter(&self, old: Option<CategoryId>, new: CategoryId) -> CategoryId {
        let rank = |id: CategoryId| match self.class(id) {
            Class::Prohibited => 2,
            Class::Special => 1,
            Class::Ordinary => 0,
        };
        match old {
            Some(old) if rank(old) >= rank(new) => old,
            _ => new,
        }
    }

    pub fn class(&self, id: CategoryId) -> Class {
        self.categories[id as usize].1
    }

    pub fn name(&self, id: CategoryId) -> &str {
        &self.categories[id as usize].0
    }

    pub fn len(&self) -> usize {
        self.categories.len()
    }

    pub fn is_empty(&self) -> bool {
        self.categories.is_empty()
    }

    /// Every category name with its class, in registration order.
    pub fn iter(&self) -> impl Iterator<Item = (CategoryId, &str, Class)> {
        self.categories.iter().enumerate().map(|(i, (n, c))| (i as CategoryId, n.as_str(), *c))
    }

    /// Every attribute term with the category it maps to.
    pub fn fields(&self) -> impl Iterator<Item = (&str, CategoryId)> {
        self.fields.iter().map(|(k, v)| (k.as_str(), *v))
    }
}

/// Why the law prohibits a built-in category, if it is one.
pub fn legal_basis(category: &str) -> Option<&'static str> {
    let key = names::normalise(category);
    PROHIBITED.iter().find(|(n, _)| names::normalise(n) == key).map(|(_, why)| *why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_ignore_case_and_additions_never_weaken() {
        let mut t = Taxonomy::default();
        let emotion = t.category("Emotion").unwrap();
        assert_eq!(t.class(emotion), Class::Prohibited);
        t.set_class("emotion", Class::Ordinary);
        assert_eq!(t.class(emotion), Class::Prohibited);
        t.map_field("heart_rate", "location");
        assert_eq!(t.class(t.field("HEART_RATE").unwrap()), Class::Special);
        t.map_field("hrv_ms", "health");
        assert_eq!(t.name(t.field("hrv_ms").unwrap()), "health");
        assert_eq!(t.field("door"), None);
    }

    /// SPEC 2.2's examples, and categories classified through the terms (issue 10).
    #[test]
    fn issue_10_terms_match_by_words_in_any_spelling() {
        let t = Taxonomy::default();
        let class = |n: &str| t.field(n).map(|c| (t.name(c).to_string(), t.class(c)));
        for n in ["heartRate", "Heart-Rate", "avg_heart_rate_bpm", "HRVms", "pulse", "ſleep_score"] {
            assert_eq!(class(n).map(|c| c.1), Some(Class::Special), "{n}");
        }
        for n in ["emotion_score", "stressLevel", "ＳＴＲＥＳＳ", "EMOTİON", "emotıon", "móod", "facial_expreſſion", "political_opinion"] {
            assert_eq!(class(n).map(|c| c.1), Some(Class::Prohibited), "{n}");
        }
        assert_eq!(class("FaceMatchScore").unwrap().0, "biometric");
        assert_eq!(class("moodle_course"), None);
        assert_eq!(class("door"), None);
        let cat = |n: &str| t.classify_category(n).map(|c| t.class(c));
        for n in ["Mood", "stress_level", "religion_survey", "EMOTION", "ｅｍｏｔｉｏｎ"] {
            assert_eq!(cat(n), Some(Class::Prohibited), "{n}");
        }
        for n in ["heart_rate", "heart_rate_avg", "fingerprint", "Health"] {
            assert_eq!(cat(n), Some(Class::Special), "{n}");
        }
        assert_eq!(cat("location"), None);
    }

    /// Names built from pieces of terms, look-alike digits (`m00d`), separators and
    /// case changes: a name the one-pass check rules out is one the taxonomy finds no
    /// category in, under the default terms and under an agreement's own.
    #[test]
    fn a_name_ruled_out_in_one_pass_reveals_no_category() {
        use proptest::prelude::*;
        use proptest::test_runner::TestRunner;
        let pieces = ["heart", "Rate", "rate", "HRV", "ms", "m00d", "mo", "od", "_", "-", ".", "0", "1", "42", "rn", "spo", "2", "Sp02", "x", "zone", "Face", "ecg", "BPM", "pulse", "vein", "palm"];
        let name = prop::collection::vec(prop::sample::select(pieces.to_vec()), 1..6).prop_map(|p| p.concat());
        let mut own = Taxonomy::default();
        let _ = own.field_may_reveal(b"warm"); // built once here, then again after the additions
        own.map_field("zonerate", "health");
        own.map_field("x_42", "emotion");
        let mut ruled_out = 0;
        for t in [Taxonomy::default(), own.clone()] {
            TestRunner::default()
                .run(&name, |n| {
                    let mut normal = Vec::new();
                    if names::ascii_normal_bytes(&n, &mut normal) && !t.field_may_reveal(&normal) {
                        prop_assert_eq!(t.field(&n), None, "{}", n);
                    }
                    Ok(())
                })
                .unwrap();
            let mut normal = Vec::new();
            for n in ["1709280000", "zone_42", "x"] {
                assert!(names::ascii_normal_bytes(n, &mut normal));
                ruled_out += usize::from(!t.field_may_reveal(&normal));
            }
        }
        assert!(ruled_out >= 3, "the check rules out names with no term in them");
        let mut normal = Vec::new();
        assert!(names::ascii_normal_bytes("ZoneRate", &mut normal) && own.field_may_reveal(&normal), "an addition is looked for");
    }
}
