//! Names as SPEC 2.5 compares them: one normal form, two readings into words, and the
//! run-of-words match of the taxonomy's terms.
//!
//! The normal form is built from Unicode's own data, through maintained crates of the
//! unicode-rs project (all at Unicode 16 or later):
//! - `unicode-normalization`: NFD, NFKD, NFKC and the combining-mark property;
//! - `caseless`: full default case folding;
//! - `unicode-security`: the UTS #39 confusable skeleton (and, through it, the
//!   Default_Ignorable_Code_Point property).
//!
//! [`normalise`] applies NFKC case folding, removes combining marks after canonical
//! decomposition, maps look-alikes to their prototypes and folds case again, until the
//! name no longer changes. Pure ASCII names, the common case, take a table built once
//! from the same functions.

use std::collections::HashMap;
use std::sync::OnceLock;

use caseless::Caseless;
use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// The most rounds [`normalise`] runs; real names settle in two.
const MAX_ROUNDS: usize = 8;

/// One round of SPEC 2.5's normalisation.
fn round(s: &str) -> String {
    // NFKC case folding (Unicode D145, compatibility caseless form), then combining
    // marks and default-ignorable code points removed after decomposition.
    let folded: String = s
        .chars()
        .nfd()
        .default_case_fold()
        .nfkd()
        .default_case_fold()
        .nfkd()
        .filter(|c| !is_combining_mark(*c) && !is_default_ignorable(*c))
        .collect();
    // Look-alikes to the letters they imitate, then case folding again.
    unicode_security::skeleton(&folded).default_case_fold().nfkd().filter(|c| !is_combining_mark(*c)).collect()
}

fn normalise_slow(s: &str) -> String {
    let mut current = s.to_owned();
    for _ in 0..MAX_ROUNDS {
        let next = round(&current);
        if next == current {
            break;
        }
        current = next;
    }
    current
}

/// The normal form of one ASCII character when it is one to three ASCII bytes (`len`
/// 0: it is not, and names holding it take the full path).
#[derive(Clone, Copy, Default)]
struct Mapped {
    len: u8,
    bytes: [u8; 3],
}

/// The normal form of each ASCII character, built once from the full normalisation.
fn ascii_table() -> &'static [Mapped; 128] {
    static TABLE: OnceLock<[Mapped; 128]> = OnceLock::new();
    TABLE.get_or_init(|| {
        std::array::from_fn(|i| {
            let n = normalise_slow(&char::from(i as u8).to_string());
            let mut m = Mapped::default();
            if n.is_ascii() && !n.is_empty() && n.len() <= 3 {
                m.len = n.len() as u8;
                m.bytes[..n.len()].copy_from_slice(n.as_bytes());
            }
            m
        })
    })
}

/// A name in SPEC 2.5's normal form.
pub fn normalise(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len() + 4);
    if ascii_normal_bytes(s, &mut out) {
        return String::from_utf8(out).unwrap_or_default();
    }
    normalise_slow(s)
}

/// [`normalise`] for names whose characters the ASCII table maps (most names), into
/// `out` (cleared); false, with `out` unspecified, for any other name. Each step of
/// the normalisation maps ASCII character by character, so the fixed point of the
/// whole is the fixed points of its characters, where they stay ASCII.
pub fn ascii_normal_into(s: &str, out: &mut String) -> bool {
    let mut bytes = std::mem::take(out).into_bytes();
    let ok = ascii_normal_bytes(s, &mut bytes);
    *out = String::from_utf8(bytes).unwrap_or_default();
    ok
}

/// [`ascii_normal_into`] as bytes (always ASCII), for the hot path.
pub fn ascii_normal_bytes(s: &str, out: &mut Vec<u8>) -> bool {
    out.clear();
    if !s.is_ascii() {
        return false;
    }
    let table = ascii_table();
    out.reserve(s.len());
    for b in s.bytes() {
        let m = table[b as usize];
        match m.len {
            1 => out.push(m.bytes[0]),
            0 => return false,
            n => out.extend_from_slice(&m.bytes[..n as usize]),
        }
    }
    true
}

/// A 64-bit hash of a name's normal form: equal normal forms always hash alike; a
/// collision can only make two names look like duplicates (the event is then
/// refused), never two duplicates unlike, and a name that looks like a listed one is
/// then compared in full.
///
/// What is hashed is the normal form with each `rn` read as `m` (a normal form has no
/// `m`: its skeleton is `rn`), so that most names, lowercase or not, hash as their own
/// bytes, eight at a time ([`plain_hash`]). Other ASCII names are normalised byte by
/// byte through the ASCII table and hashed as they go.
pub fn normal_hash(s: &str) -> u64 {
    match plain_hash(s.as_bytes()) {
        Some(h) => h,
        None => unplain_hash(s),
    }
}

/// [`normal_hash`] without trying [`plain_hash`] first: the same answer for any name,
/// for a caller that has already tried it.
pub fn unplain_hash(s: &str) -> u64 {
    if s.is_ascii() {
        let table = ascii_table();
        let mut h = FormHash::default();
        let mut ok = true;
        for b in s.bytes() {
            let m = table[b as usize];
            match m.len {
                1 => h.feed(m.bytes[0]),
                0 => {
                    ok = false;
                    break;
                }
                n => m.bytes[..n as usize].iter().for_each(|&x| h.feed(x)),
            }
        }
        if ok {
            return h.finish();
        }
    }
    let mut h = FormHash::default();
    normalise_slow(s).bytes().for_each(|x| h.feed(x));
    h.finish()
}

/// Bit 7 of each byte.
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The eight ASCII bytes of `w` as [`normal_hash`] reads them, if each is a letter,
/// a digit, `_` or `-`: letters in lowercase, `0` as `o` and `1` as `l` (their normal
/// forms; `m` stands for the normal form's `rn`). Also, bit 7 of each byte that is an
/// `r`. `None` if a byte is anything else. Every byte is compared at once: with no
/// byte above 0x7f, adding at most 0x7f to each never carries into the next.
#[inline]
fn plain_word(w: u64) -> Option<(u64, u64)> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    if w & HIGH != 0 {
        return None;
    }
    let at_least = |w: u64, c: u8| w.wrapping_add(ONES * u64::from(0x80 - c)) & HIGH;
    let equal = |w: u64, c: u8| {
        let y = w ^ (ONES * u64::from(c));
        !(y.wrapping_add(ONES * 0x7f) | y) & HIGH
    };
    let upper = at_least(w, b'A') & !at_least(w, b'Z' + 1);
    let (zero, one) = (equal(w, b'0'), equal(w, b'1'));
    let read = w + (upper >> 7) * 0x20 + (zero >> 7) * u64::from(b'o' - b'0') + (one >> 7) * u64::from(b'l' - b'1');
    let lower = at_least(read, b'a') & !at_least(read, b'z' + 1);
    let digit = at_least(read, b'2') & !at_least(read, b'9' + 1);
    let ok = lower | digit | equal(read, b'_') | equal(read, b'-');
    (ok == HIGH).then(|| (read, equal(read, b'r')))
}

/// [`normal_hash`] of a name of letters, digits, `_` and `-` with no `rn` (as
/// [`plain_word`] reads it; most names), eight bytes at a time. `None` for any other
/// name. Such a name has no control character.
#[inline]
pub fn plain_hash(b: &[u8]) -> Option<u64> {
    let mut h = FormHash { len: b.len() as u32, ..FormHash::default() };
    // The `r`s of the word before, at its last byte (bit 63).
    let mut r_before = 0u64;
    let mut word = |w: u64| -> Option<u64> {
        let (read, r) = plain_word(w)?;
        let n = read ^ (0x0101_0101_0101_0101 * u64::from(b'n'));
        let n = !(n.wrapping_add(0x7f7f_7f7f_7f7f_7f7f) | n) & HIGH;
        // An `r` right before an `n`: within the word, or across from the last one.
        if (r & (n >> 8)) != 0 || (r_before >> 56) & n & 0x80 != 0 {
            return None;
        }
        r_before = r;
        Some(read)
    };
    let mut chunks = b.chunks_exact(8);
    for chunk in &mut chunks {
        let read = word(u64::from_le_bytes(chunk.try_into().expect("eight bytes")))?;
        h.hash = FormHash::mix(h.hash ^ read, FormHash::K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        // Padded with `a`s, which are plain, then cut back to zeros.
        let keep = u64::MAX >> (8 * (8 - rest.len()));
        let padded = last_word(b, rest.len()) | (0x6161_6161_6161_6161 & !keep);
        h.word = word(padded)? & keep;
    }
    Some(h.finish())
}

/// The last `n` (1 to 7) bytes of `b` as the low bytes of a word, the rest zero; read
/// in whole words (a copy into a buffer would stall the load that follows it).
#[inline]
fn last_word(b: &[u8], n: usize) -> u64 {
    if b.len() >= 8 {
        return u64::from_le_bytes(b[b.len() - 8..].try_into().expect("eight bytes")) >> (8 * (8 - n));
    }
    let (mut w, mut i) = (0u64, 0);
    if n >= 4 {
        w = u64::from(u32::from_le_bytes(b[..4].try_into().expect("four bytes")));
        i = 4;
    }
    if n - i >= 2 {
        w |= u64::from(u16::from_le_bytes(b[i..i + 2].try_into().expect("two bytes"))) << (8 * i);
        i += 2;
    }
    if n > i {
        w |= u64::from(b[i]) << (8 * i);
    }
    w
}

/// The hash of a normal form's bytes, fed one at a time: each eight are mixed in with
/// a folded 128-bit multiply. Fixed: the same in every process.
#[derive(Default)]
struct FormHash {
    hash: u64,
    word: u64,
    len: u32,
    /// An `r` fed and not yet pushed: an `n` after it makes them an `m`.
    r: bool,
}

impl FormHash {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;

    fn mix(x: u64, k: u64) -> u64 {
        let m = u128::from(x) * u128::from(k);
        (m as u64) ^ ((m >> 64) as u64)
    }

    /// Feeds one byte of a normal form, reading `rn` as `m`.
    #[inline]
    fn feed(&mut self, byte: u8) {
        if self.r {
            self.r = false;
            if byte == b'n' {
                self.push(b'm');
                return;
            }
            self.push(b'r');
        }
        if byte == b'r' {
            self.r = true;
        } else {
            self.push(byte);
        }
    }

    #[inline]
    fn push(&mut self, byte: u8) {
        self.word |= u64::from(byte) << (8 * (self.len % 8));
        self.len += 1;
        if self.len % 8 == 0 {
            self.hash = Self::mix(self.hash ^ self.word, Self::K);
            self.word = 0;
        }
    }

    fn finish(mut self) -> u64 {
        if self.r {
            self.r = false;
            self.push(b'r');
        }
        Self::mix(self.hash ^ self.word ^ u64::from(self.len).rotate_right(8), 0xa076_1d64_78bd_642f)
    }
}

/// Default_Ignorable_Code_Point, from `unicode-security`'s table: the skeleton of a
/// lone character drops exactly these (none of them decomposes, and no confusable
/// prototype is empty).
pub fn is_default_ignorable(c: char) -> bool {
    if c.is_ascii() {
        return false;
    }
    let mut buf = [0u8; 4];
    let empty = unicode_security::skeleton(c.encode_utf8(&mut buf)).next().is_none();
    empty
}

/// Is this character refused in a member name (SPEC 2.5): a control character or a
/// default-ignorable code point?
pub fn is_refused_in_name(c: char) -> bool {
    c.is_control() || is_default_ignorable(c)
}

/// Does a member name hold a character SPEC 2.5 refuses?
pub fn is_refused_name(name: &str) -> bool {
    if name.is_ascii() {
        return name.bytes().any(|b| b < 0x20 || b == 0x7f);
    }
    name.chars().any(is_refused_in_name)
}

/// A word character: letters and digits, and the combining marks that belong to them.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || is_combining_mark(c)
}

/// The readings of SPEC 2.5, each a list of normalised words: split at what is not a
/// letter or digit; and split there and at case changes. SPEC 2.5 splits a run of
/// capitals before its last letter when a lower-case letter follows (`HTTPServer`:
/// http, server) yet reads `HRVms` as hrv, ms; both are read, as a third reading
/// (more readings can only find more terms: fail closed).
pub type Readings = [Vec<String>; 3];

pub fn readings(name: &str) -> Readings {
    let mut out: Readings = Default::default();
    let chars: Vec<char> = name.chars().filter(|c| !is_default_ignorable(*c)).collect();
    let mut starts = [0usize; 3];
    for i in 0..=chars.len() {
        if i == chars.len() || !is_word_char(chars[i]) {
            for (r, start) in starts.iter_mut().enumerate() {
                push_words(&chars[*start..i], &mut out[r]);
                *start = i + 1;
            }
            continue;
        }
        for (r, start) in starts.iter_mut().enumerate().skip(1) {
            if i > *start && is_case_boundary(&chars, *start, i, r == 2) {
                push_words(&chars[*start..i], &mut out[r]);
                *start = i;
            }
        }
    }
    out
}

/// Before an upper-case letter that follows a lower-case letter or a digit, and
/// before the last upper-case letter of a run of capitals that a lower-case letter
/// follows (or, `after_run`, before that lower-case letter). Combining marks are
/// skipped over when looking at neighbours.
fn is_case_boundary(chars: &[char], word_start: usize, i: usize, after_run: bool) -> bool {
    let c = chars[i];
    let prev = chars[word_start..i].iter().rev().find(|c| !is_combining_mark(**c));
    if after_run {
        let before = chars[word_start..i].iter().rev().filter(|c| !is_combining_mark(**c)).nth(1);
        if c.is_lowercase() && prev.is_some_and(|p| p.is_uppercase()) && before.is_some_and(|b| b.is_uppercase()) {
            return true;
        }
    }
    if !c.is_uppercase() {
        return false;
    }
    let next = chars[i + 1..].iter().find(|c| !is_combining_mark(**c));
    match prev {
        Some(p) if p.is_lowercase() || p.is_numeric() => true,
        Some(p) if p.is_uppercase() => !after_run && next.is_some_and(|n| n.is_lowercase()),
        _ => false,
    }
}

/// Normalises one word as written and appends what it reads as (normalising can
/// expand a character into letters and separators, so the result is split again).
fn push_words(chars: &[char], out: &mut Vec<String>) {
    if chars.is_empty() {
        return;
    }
    let word: String = chars.iter().collect();
    let norm = normalise(&word);
    if norm.chars().all(is_word_char) {
        if !norm.is_empty() {
            out.push(norm);
        }
        return;
    }
    out.extend(norm.split(|c: char| !is_word_char(c)).filter(|w| !w.is_empty()).map(str::to_owned));
}

/// Terms (runs of normalised words), each with a value, found by their words in a
/// name. A term written in camel case (`heartRate`) is registered in both readings.
#[derive(Clone, Debug)]
pub struct Terms<T> {
    by_first: HashMap<String, Vec<(Vec<String>, T)>, foldhash::fast::RandomState>,
    /// Every term's first word, to rule out in one pass a name that holds none of
    /// them ([`Terms::may_occur_in`]); built when first needed, after the last `add`
    /// (`None`: it could not be built, and every name is looked at in full).
    firsts: OnceLock<Option<aho_corasick::AhoCorasick>>,
}

impl<T> Default for Terms<T> {
    fn default() -> Self {
        Terms { by_first: HashMap::default(), firsts: OnceLock::new() }
    }
}

impl<T: Copy + PartialEq> Terms<T> {
    pub fn add(&mut self, term: &str, value: T) {
        self.firsts = OnceLock::new();
        for words in readings(term) {
            let Some((first, _)) = words.split_first() else { continue };
            let entries = self.by_first.entry(first.clone()).or_default();
            if !entries.iter().any(|(w, v)| *w == words && *v == value) {
                entries.push((words, value));
            }
        }
    }

    /// False only when no term can be found in a name whose normal form is `normal`
    /// ([`ascii_normal_bytes`]'s): no term's first word occurs in it anywhere. Every
    /// word of the name's readings does: each is a run of its characters, normalised
    /// character by character, so a run of `normal`.
    pub fn may_occur_in(&self, normal: &[u8]) -> bool {
        let firsts = self.firsts.get_or_init(|| aho_corasick::AhoCorasick::new(self.by_first.keys()).ok());
        firsts.as_ref().is_none_or(|words| words.is_match(normal))
    }

    /// Calls `f` with the value of every term whose words appear as a contiguous run
    /// in either reading of the name.
    pub fn find(&self, readings: &Readings, mut f: impl FnMut(T)) {
        for words in readings {
            for (i, w) in words.iter().enumerate() {
                let Some(entries) = self.by_first.get(w) else { continue };
                for (term, value) in entries {
                    if words[i..].starts_with(term) {
                        f(*value);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn look_alikes_normalise_to_the_letters_they_imitate() {
        let emotion = normalise("emotion");
        for s in ["EMOTİON", "emotıon", "ｅｍｏｔｉｏｎ", "móod", "Emotion", "EMOTION", "emo\u{301}tion"] {
            let n = normalise(s);
            if s.contains("ood") || s.contains("óod") {
                assert_eq!(n, normalise("mood"), "{s}");
            } else {
                assert_eq!(n, emotion, "{s}");
            }
        }
        assert_eq!(normalise("facial_expreſſion"), normalise("facial_expression"));
        assert_eq!(normalise("ﬁngerprint"), normalise("fingerprint"));
        assert_ne!(normalise("mood"), normalise("moodle"));
    }

    #[test]
    fn words_in_both_readings() {
        let words = |s: &str| readings(s).map(|r| r.join(" "));
        let n = |s: &str| s.split(' ').map(normalise).collect::<Vec<_>>().join(" ");
        assert_eq!(words("heart_rate")[0], n("heart rate"));
        assert_eq!(words("hEaRt_RaTe")[0], n("heart rate"));
        assert_eq!(words("heartRate")[1], n("heart rate"));
        assert_eq!(words("HRVms")[2], n("hrv ms"));
        assert_eq!(words("HTTPServer")[1], n("http server"));
        assert_eq!(words("FaceMatchScore")[1], n("face match score"));
        assert_eq!(words("spo2")[1], n("spo2"));
        assert_eq!(words("avg_heart_rate_bpm")[0], n("avg heart rate bpm"));
    }

    #[test]
    fn terms_match_runs_of_words() {
        let mut t = Terms::default();
        t.add("heart_rate", 1u8);
        t.add("mood", 2u8);
        let found = |s: &str| {
            let mut v = Vec::new();
            t.find(&readings(s), |x| v.push(x));
            v
        };
        assert!(found("heartRate").contains(&1));
        assert!(found("Heart-Rate").contains(&1));
        assert!(found("avg_heart_rate_bpm").contains(&1));
        assert!(found("rate_heart").is_empty());
        assert!(found("moodle_course").is_empty());
        assert!(found("Mood").contains(&2));
    }

    #[test]
    fn fast_forms_agree_with_the_full_one() {
        for (a, b) in [("Lat", "lat"), ("lat", "lаt"), ("pos_LAT", "pos_lat"), ("m", "rn"), ("zone", "zones"), ("a%", "a%"), ("a%", "b%")] {
            assert_eq!(normal_hash(a) == normal_hash(b), normalise(a) == normalise(b), "{a} {b}");
        }
    }

    #[test]
    fn refused_characters() {
        assert!(is_refused_name("a\u{200b}b"));
        assert!(is_refused_name("a\u{ad}b"));
        assert!(is_refused_name("a\u{202e}b"));
        assert!(is_refused_name("a\u{7f}"));
        assert!(is_refused_name("a\u{85}"));
        assert!(!is_refused_name("heart_rate"));
        assert!(!is_refused_name("größe"));
    }

    proptest! {
        /// The ASCII table gives what the full normalisation gives.
        #[test]
        fn ascii_fast_path_agrees(s in "[ -~]{0,12}") {
            prop_assert_eq!(normalise(&s), normalise_slow(&s));
            let mut h = FormHash::default();
            normalise_slow(&s).replace("rn", "m").bytes().for_each(|x| h.push(x));
            prop_assert_eq!(normal_hash(&s), h.finish());
        }

        /// The word-at-a-time path takes exactly the names whose bytes are their own
        /// normal form, and hashes them as the byte-at-a-time path does.
        #[test]
        fn plain_names_hash_as_their_normal_form(s in "[a-zA-Z0-9_\\-.|mrnMRN]{0,40}") {
            let read: String = s.chars().map(|c| match c { '0' => 'o', '1' => 'l', c => c.to_ascii_lowercase() }).collect();
            let plain = s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') && !read.contains("rn");
            prop_assert_eq!(plain_hash(s.as_bytes()).is_some(), plain, "{}", s);
            let mut h = FormHash::default();
            normalise_slow(&s).replace("rn", "m").bytes().for_each(|x| h.push(x));
            prop_assert_eq!(normal_hash(&s), h.finish());
        }

        /// Names with equal normal forms hash alike, whatever their script or length
        /// (the short ASCII path and the full one agree).
        #[test]
        fn equal_normal_forms_hash_alike(s in "[ -~]{0,80}|\\PC{0,8}", t in "[ -~]{0,80}|\\PC{0,8}") {
            let ns = normalise(&s);
            prop_assert_eq!(normal_hash(&s), normal_hash(&ns));
            prop_assert_eq!(unplain_hash(&s), normal_hash(&s));
            if ns == normalise(&t) {
                prop_assert_eq!(normal_hash(&s), normal_hash(&t));
            }
            // Case never tells two names apart.
            prop_assert_eq!(normal_hash(&s.to_ascii_uppercase()), normal_hash(&s.to_ascii_lowercase()));
        }

        /// Normalising is idempotent.
        #[test]
        fn normal_form_is_a_fixed_point(s in "\\PC{0,8}") {
            let n = normalise(&s);
            prop_assert_eq!(normalise(&n), n);
        }
    }
}
