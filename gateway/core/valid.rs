//! The names Accord checks in more than one place, each checked here once.

/// A Kafka topic name (SPEC 2.3): `[a-zA-Z0-9._-]{1,249}`.
pub fn topic(name: &str) -> bool {
    (1..=249).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A pseudonym key's public id: 1 to 64 letters, digits, `.`, `_` or `-` (it is written
/// before every pseudonym, so never a `:`).
pub fn key_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// What [`key_id`] accepts, in words.
pub const KEY_ID_RULE: &str = "1 to 64 letters, digits, `.`, `_` or `-`";

/// What [`topic`] accepts, in words.
pub const TOPIC_RULE: &str = "1 to 249 letters, digits, `.`, `_` or `-`";

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn topics_and_key_ids_are_exactly_their_character_classes(s in "\\PC{0,70}") {
            let class = |b: u8| b.is_ascii_alphanumeric() || b"._-".contains(&b);
            proptest::prop_assert_eq!(key_id(&s), !s.is_empty() && s.len() <= 64 && s.bytes().all(class));
            proptest::prop_assert_eq!(topic(&s), !s.is_empty() && s.len() <= 249 && s.bytes().all(class));
        }
    }

    #[test]
    fn lengths_are_bounded() {
        assert!(topic(&"a".repeat(249)) && !topic(&"a".repeat(250)) && !topic(""));
        assert!(key_id(&"k".repeat(64)) && !key_id(&"k".repeat(65)) && !key_id("k:1"));
    }
}
