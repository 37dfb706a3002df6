//! The built-in taxonomy of SPEC 2.2, and the merged form the engine consults.
//!
//! The agreement may add prohibited categories and attribute-name mappings; it can
//! never remove a built-in entry. Every lookup is case-insensitive.

use std::collections::HashMap;

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

/// Attribute names (the last path segment) and the category they reveal.
pub const FIELDS: &[(&str, &str)] = &[
    ("emotion", "emotion"),
    ("mood", "emotion"),
    ("sentiment", "emotion"),
    ("stress", "emotion"),
    ("stress_level", "emotion"),
    ("valence", "emotion"),
    ("arousal", "emotion"),
    ("facial_expression", "emotion"),
    ("heart_rate", "health"),
    ("hrv", "health"),
    ("blood_pressure", "health"),
    ("spo2", "health"),
    ("body_temperature", "health"),
    ("glucose", "health"),
    ("diagnosis", "health"),
    ("fingerprint", "biometric"),
    ("face_template", "biometric"),
    ("iris_template", "biometric"),
    ("voiceprint", "biometric"),
    ("dna", "genetic"),
    ("genome", "genetic"),
];

/// Index of a category in [`Taxonomy::categories`].
pub type CategoryId = u16;

/// The built-in taxonomy merged with the agreement's additions.
#[derive(Clone, Debug)]
pub struct Taxonomy {
    /// Known category names (lowercase) and their class. Index = [`CategoryId`].
    categories: Vec<(String, Class)>,
    by_name: Map<String, CategoryId>,
    /// Attribute name (lowercase) -> category.
    fields: Map<String, CategoryId>,
}

impl Default for Taxonomy {
    fn default() -> Self {
        let mut t = Taxonomy { categories: Vec::new(), by_name: Map::default(), fields: Map::default() };
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
        let lower = name.to_lowercase();
        if let Some(&id) = self.by_name.get(&lower) {
            return id;
        }
        let id = self.categories.len() as CategoryId;
        self.categories.push((lower.clone(), Class::Ordinary));
        self.by_name.insert(lower, id);
        id
    }

    /// Marks a category; a built-in prohibited or special class is never weakened.
    pub fn set_class(&mut self, name: &str, class: Class) {
        let id = self.intern(name) as usize;
        let current = self.categories[id].1;
        if current == Class::Ordinary || class == Class::Prohibited {
            self.categories[id].1 = class;
        }
    }

    pub fn map_field(&mut self, field: &str, category: &str) {
        let id = self.intern(category);
        let key = field.to_lowercase();
        // The agreement adds; it never remaps a built-in name to something weaker.
        let keep_existing = self
            .fields
            .get(&key)
            .is_some_and(|&old| self.class(old) != Class::Ordinary && self.class(id) == Class::Ordinary);
        if !keep_existing {
            self.fields.insert(key, id);
        }
    }

    /// The category of an event, case-insensitively.
    pub fn category(&self, name: &str) -> Option<CategoryId> {
        if name.bytes().any(|b| b.is_ascii_uppercase()) || !name.is_ascii() {
            self.by_name.get(&name.to_lowercase()).copied()
        } else {
            self.by_name.get(name).copied()
        }
    }

    /// The category an attribute name reveals, case-insensitively.
    pub fn field(&self, name: &str) -> Option<CategoryId> {
        if name.bytes().any(|b| b.is_ascii_uppercase()) || !name.is_ascii() {
            self.fields.get(&name.to_lowercase()).copied()
        } else {
            self.fields.get(name).copied()
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

    /// Every attribute name with the category it maps to.
    pub fn fields(&self) -> impl Iterator<Item = (&str, CategoryId)> {
        self.fields.iter().map(|(k, v)| (k.as_str(), *v))
    }
}

/// Why the law prohibits a built-in category, if it is one.
pub fn legal_basis(category: &str) -> Option<&'static str> {
    PROHIBITED.iter().find(|(n, _)| n.eq_ignore_ascii_case(category)).map(|(_, why)| *why)
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
}
