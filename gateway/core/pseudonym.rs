//! Keyed pseudonyms (SPEC section 3).
//!
//! `KEY_ID ":" HEX`, where HEX is the first 32 lowercase hex digits of
//! `HMAC-SHA256(key, DOMAIN || 0x00 || VALUE)`. The HMAC is keyed once (SHA-256's
//! state after the inner and the outer pad) and each value then costs SHA-256's
//! compression alone: one block for a short value, one for the outer hash. Results are remembered in a [`Cache`] that the caller owns
//! (one per thread, no lock), since a site's workers each appear in many events. The
//! key never leaves this module: it is not `Debug`, not `Display`, and never in an
//! error.

use std::path::Path;

use chrono::{DateTime, Datelike, Utc};
use sha2::digest::generic_array::GenericArray;
use sha2::{Digest, Sha256};

use crate::agreement::{Agreement, Domain, Rotate};

/// The shortest key accepted, in bytes.
pub const MIN_KEY_LEN: usize = 32;

/// Why a key cannot be used. Never holds the key's bytes.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the key file {path}")]
    Read { path: String, source: std::io::Error },
    #[error("the key file {path} holds {len} bytes; a pseudonym key needs at least {MIN_KEY_LEN}")]
    TooShort { path: String, len: usize },
    #[error("the key id `{0}` must be 1 to 64 letters, digits, `.`, `_` or `-`")]
    BadId(String),
}

/// The secret key and its public id.
pub struct Key {
    id: String,
    /// SHA-256's state after the key's inner pad block (RFC 2104's `K ^ ipad`).
    inner: [u32; 8],
    /// And after its outer pad block (`K ^ opad`).
    outer: [u32; 8],
}

/// SHA-256's initial state (FIPS 180-4, 5.3.3).
const SHA256_INIT: [u32; 8] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

/// SHA-256's compression over whole 64-byte blocks (the `sha2` crate's, which uses
/// the CPU's SHA instructions where it has them).
fn compress(state: &mut [u32; 8], blocks: &[u8]) {
    for block in blocks.chunks_exact(64) {
        sha2::compress256(state, std::slice::from_ref(GenericArray::from_slice(block)));
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key").field("id", &self.id).finish_non_exhaustive()
    }
}

/// What reading a key file noticed that its owner should hear about (never its bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyFileNote {
    /// The file ends in a line break (`echo secret > key`), which is part of the key.
    TrailingNewline,
}

impl Key {
    /// The key file's bytes, exactly, are the key.
    pub fn from_file(path: &Path, id: &str) -> Result<Key, KeyError> {
        Key::from_file_noting(path, id).map(|(key, _)| key)
    }

    /// The key file's bytes, exactly, are the key, a trailing newline included: the
    /// key is what the Secret holds, so every system that reads the Secret's bytes
    /// computes the same pseudonyms, and pseudonyms (and suppressions) made so far stay
    /// valid. Stripping it would silently be another key. The caller warns on the note.
    pub fn from_file_noting(path: &Path, id: &str) -> Result<(Key, Option<KeyFileNote>), KeyError> {
        let display = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| KeyError::Read { path: display.clone(), source })?;
        if bytes.len() < MIN_KEY_LEN {
            return Err(KeyError::TooShort { path: display, len: bytes.len() });
        }
        let note = bytes.ends_with(b"\n").then_some(KeyFileNote::TrailingNewline);
        Ok((Key::new(&bytes, id)?, note))
    }

    pub fn new(secret: &[u8], id: &str) -> Result<Key, KeyError> {
        if !crate::valid::key_id(id) {
            return Err(KeyError::BadId(id.to_string()));
        }
        if secret.len() < MIN_KEY_LEN {
            return Err(KeyError::TooShort { path: "given".into(), len: secret.len() });
        }
        // RFC 2104: a key longer than the block is hashed first, then padded with zeros.
        let mut block = [0u8; 64];
        if secret.len() > 64 {
            block[..32].copy_from_slice(&Sha256::digest(secret));
        } else {
            block[..secret.len()].copy_from_slice(secret);
        }
        let padded = |pad: u8| {
            let mut state = SHA256_INIT;
            compress(&mut state, &block.map(|b| b ^ pad));
            state
        };
        Ok(Key { id: id.to_string(), inner: padded(0x36), outer: padded(0x5c) })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The first 16 bytes of the HMAC of `message`.
    fn digest(&self, message: &[u8]) -> [u8; 16] {
        // The inner hash: the pad block was compressed at keying, then the message,
        // padded with 0x80, zeros and its length in bits (pad block included).
        let mut state = self.inner;
        let whole = message.len() / 64 * 64;
        compress(&mut state, &message[..whole]);
        let rest = &message[whole..];
        let mut last = [0u8; 128];
        last[..rest.len()].copy_from_slice(rest);
        last[rest.len()] = 0x80;
        let n = if rest.len() < 56 { 64 } else { 128 };
        last[n - 8..n].copy_from_slice(&((64 + message.len() as u64) * 8).to_be_bytes());
        compress(&mut state, &last[..n]);
        // The outer hash, over the inner one's 32 bytes: one block.
        let mut block = [0u8; 64];
        for (i, word) in state.iter().enumerate() {
            block[4 * i..4 * i + 4].copy_from_slice(&word.to_be_bytes());
        }
        block[32] = 0x80;
        block[56..].copy_from_slice(&((64 + 32) * 8u64).to_be_bytes());
        let mut outer = self.outer;
        compress(&mut outer, &block);
        let mut tag = [0u8; 16];
        for (i, word) in outer[..4].iter().enumerate() {
            tag[4 * i..4 * i + 4].copy_from_slice(&word.to_be_bytes());
        }
        tag
    }
}

/// Computes pseudonyms: the pre-keyed HMAC, immutable and shared by every thread.
/// What it has computed is remembered in a [`Cache`] the caller owns.
pub struct Pseudonymiser {
    key: Key,
    /// Tells one key's cache entries from another's without holding the key.
    fingerprint: u64,
}

impl std::fmt::Debug for Pseudonymiser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pseudonymiser").field("key", &self.key).finish()
    }
}

impl Pseudonymiser {
    pub fn new(key: Key) -> Pseudonymiser {
        let tag = key.digest(b"accord-cache-fingerprint");
        let fingerprint = u64::from_be_bytes(tag[..8].try_into().expect("8 bytes"));
        Pseudonymiser { key, fingerprint }
    }

    pub fn key_id(&self) -> &str {
        self.key.id()
    }

    /// Appends `KEY_ID:HEX` for the message `DOMAIN 0x00 VALUE` held in `message`
    /// (built by [`message`]), from `cache` when it holds it.
    pub fn write(&self, message: &[u8], cache: &mut Cache, out: &mut Vec<u8>) {
        out.extend_from_slice(self.key.id.as_bytes());
        out.push(b':');
        out.extend_from_slice(&self.hex(message, cache));
    }

    /// The pseudonym's [`HEX_DIGITS`] hex digits (what follows `KEY_ID:`).
    pub fn hex(&self, message: &[u8], cache: &mut Cache) -> [u8; HEX_DIGITS] {
        let tag = cache.get_or_insert(self.fingerprint, message, || self.key.digest(message));
        let mut hex = [0u8; HEX_DIGITS];
        hex::encode_to_slice(tag, &mut hex).expect("32 hex digits for 16 bytes");
        hex
    }

    /// The 32 hex digits of a suppression's subject (SPEC 2.7): the HMAC of
    /// `"accord-suppression" 0x00 SUBJECT_ID`, never rotated; remembered in `cache`.
    pub fn suppression_hex(&self, subject_id: &[u8], msg: &mut Vec<u8>, cache: &mut Cache) -> [u8; 32] {
        let mut hex = [0u8; 32];
        hex::encode_to_slice(self.suppression_digest(subject_id, msg, cache).to_be_bytes(), &mut hex).expect("32 hex digits for 16 bytes");
        hex
    }

    /// The same 16 bytes as a number (the hex read as one), for look-ups.
    pub fn suppression_digest(&self, subject_id: &[u8], msg: &mut Vec<u8>, cache: &mut Cache) -> u128 {
        msg.clear();
        msg.extend_from_slice(SUPPRESSION_DOMAIN);
        msg.push(0);
        msg.extend_from_slice(subject_id);
        u128::from_be_bytes(cache.get_or_insert(self.fingerprint, msg, || self.key.digest(msg)))
    }

    /// A suppression's `subject`, `KEY_ID:HEX` (for `accord suppress`).
    pub fn suppression_subject(&self, subject_id: &str) -> String {
        let hex = self.suppression_hex(subject_id.as_bytes(), &mut Vec::new(), &mut Cache::disabled());
        format!("{}:{}", self.key.id, std::str::from_utf8(&hex).expect("hex is ASCII"))
    }

    /// The pseudonym as a string (for the CLI and tests), computed without a cache.
    pub fn pseudonym(&self, agreement: &Agreement, purpose: &str, at: Option<DateTime<Utc>>, value: &str) -> String {
        let mut msg = Vec::new();
        message(agreement, purpose, at, value.as_bytes(), &mut msg);
        let mut out = Vec::new();
        self.write(&msg, &mut Cache::disabled(), &mut out);
        String::from_utf8(out).expect("key ids and hex are ASCII")
    }
}

/// The hex digits of a pseudonym, after its `KEY_ID:`.
pub const HEX_DIGITS: usize = 32;

/// The domain of suppression subjects (SPEC 2.7).
pub const SUPPRESSION_DOMAIN: &[u8] = b"accord-suppression";

/// The longest message a cache slot holds (`planning@2026-W10`, 0x00 and an id of up
/// to 25 bytes); longer ones are computed every time.
const SLOT_MESSAGE: usize = 43;

/// Slots in the default table where SHA-256 runs on the CPU's own instructions: 64 KiB,
/// one cache line each. A larger table's probe leaves the L1 and L2 and costs more than
/// the HMAC it saves (docs/performance.md, "The pseudonym cache").
pub const CACHE_SLOTS: usize = 1 << 10;

/// Slots in the default table where SHA-256 runs in software and an HMAC costs several
/// probes: 256 KiB.
pub const CACHE_SLOTS_SOFTWARE_SHA: usize = 1 << 12;

/// Look-ups over which the cache judges whether it pays.
const WINDOW: u32 = 4096;

/// Windows a cache that did not pay sits out before it tries again.
const REST: u32 = 15;

/// One cache line: the message's hash, the message, and the 16 bytes of its HMAC.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Slot {
    tag: [u8; 16],
    /// The message's hash (upper half); 0 marks an empty slot.
    hash: u32,
    len: u8,
    message: [u8; SLOT_MESSAGE],
}

const EMPTY: Slot = Slot { tag: [0; 16], hash: 0, len: 0, message: [0; SLOT_MESSAGE] };

/// A fixed-size, direct-mapped table of pseudonyms, owned by one thread's caller and
/// reused across events: no lock, no allocation after the first use. A slot is one
/// cache line, overwritten by the next message that maps to it, so memory never grows
/// and a rotation period that ends simply ages out. Entries are tagged with the key
/// they were computed with: a cache handed to another key starts empty.
///
/// Never slower than no cache: with SHA-NI an HMAC costs about as much as a look-up
/// that misses the CPU's caches, so a table that hits rarely only adds work. The cache
/// counts its hits over each window of [`WINDOW`] look-ups; below the bar it stops
/// looking for the next [`REST`] windows (computing every pseudonym), then tries
/// again. The bar is lower where SHA-256 runs in software and an HMAC costs more.
pub struct Cache {
    slots: Vec<Slot>,
    mask: usize,
    fingerprint: u64,
    hasher: foldhash::fast::FixedState,
    /// Hits needed per window to keep looking.
    bar: u32,
    window: u32,
    window_hits: u32,
    resting: u32,
    pub stats: CacheStats,
}

/// How a cache has fared, for benchmarks and tuning.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    /// Misses that overwrote another message's entry.
    pub evictions: u64,
    /// Messages too long for a slot, or met while the cache rested, computed without it.
    pub uncached: u64,
    /// Windows the cache sat out because it did not pay.
    pub rests: u64,
}

impl Default for Cache {
    fn default() -> Cache {
        Cache::new(if sha_in_hardware() { CACHE_SLOTS } else { CACHE_SLOTS_SOFTWARE_SHA })
    }
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache").field("slots", &self.slots.len()).field("stats", &self.stats).finish()
    }
}

/// Whether SHA-256 runs on the CPU's own instructions (as the `sha2` crate detects).
fn sha_in_hardware() -> bool {
    #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
    {
        std::arch::is_x86_feature_detected!("sha") && std::arch::is_x86_feature_detected!("sse4.1")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("sha2")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "x86", target_arch = "aarch64")))]
    {
        false
    }
}

impl Cache {
    /// A table of `slots` entries (rounded up to a power of two); allocated on first use.
    pub fn new(slots: usize) -> Cache {
        // Hits per window needed to pay, from docs/performance.md: with SHA-NI the
        // table paid at 41% hits and broke even near 35%, so it rests below 25%;
        // where SHA-256 runs in software an HMAC costs several look-ups: 5%.
        let bar = if sha_in_hardware() { WINDOW / 4 } else { WINDOW / 20 };
        Cache::with_bar(slots, bar)
    }

    /// A table that needs `bar` hits per window of 4096 look-ups to keep looking (0:
    /// always looks).
    pub fn with_bar(slots: usize, bar: u32) -> Cache {
        let n = slots.max(1).next_power_of_two();
        Cache {
            slots: Vec::new(),
            mask: n - 1,
            fingerprint: 0,
            hasher: foldhash::fast::FixedState::with_seed(0x005e_edac_c04d),
            bar,
            window: 0,
            window_hits: 0,
            resting: 0,
            stats: CacheStats::default(),
        }
    }

    /// A cache that remembers nothing.
    pub fn disabled() -> Cache {
        Cache { mask: usize::MAX, ..Cache::with_bar(1, 0) }
    }

    fn get_or_insert(&mut self, fingerprint: u64, message: &[u8], compute: impl FnOnce() -> [u8; 16]) -> [u8; 16] {
        if self.mask == usize::MAX || message.len() > SLOT_MESSAGE {
            self.stats.uncached += 1;
            return compute();
        }
        self.window += 1;
        if self.window == WINDOW {
            self.end_window();
        }
        if self.resting > 0 {
            self.stats.uncached += 1;
            return compute();
        }
        if self.fingerprint != fingerprint || self.slots.is_empty() {
            self.slots.clear();
            self.slots.resize(self.mask + 1, EMPTY);
            self.fingerprint = fingerprint;
        }
        use std::hash::BuildHasher as _;
        let full = self.hasher.hash_one(message);
        let hash = (full >> 32) as u32 | 1;
        let slot = &mut self.slots[(full as usize) & self.mask];
        if slot.hash == hash && &slot.message[..slot.len as usize] == message {
            self.stats.hits += 1;
            self.window_hits += 1;
            return slot.tag;
        }
        self.stats.misses += 1;
        if slot.hash != 0 {
            self.stats.evictions += 1;
        }
        let tag = compute();
        slot.hash = hash;
        slot.len = message.len() as u8;
        slot.message[..message.len()].copy_from_slice(message);
        slot.tag = tag;
        tag
    }

    /// A window of look-ups ended: rest for a while if it did not pay.
    fn end_window(&mut self) {
        if self.resting > 0 {
            self.resting -= 1;
        } else if self.window_hits < self.bar {
            self.resting = REST;
            self.stats.rests += 1;
        }
        self.window = 0;
        self.window_hits = 0;
    }
}

/// Builds `DOMAIN 0x00 VALUE` into `buf` (cleared first): the domain is the purpose or
/// the agreement id, then `@PERIOD` when the agreement rotates.
pub fn message(agreement: &Agreement, purpose: &str, at: Option<DateTime<Utc>>, value: &[u8], buf: &mut Vec<u8>) {
    buf.clear();
    buf.extend_from_slice(domain(agreement, purpose).as_bytes());
    if let (Some(rotate), Some(at)) = (agreement.rotate, at) {
        buf.push(b'@');
        write_period(rotate, at, buf);
    }
    buf.push(0);
    buf.extend_from_slice(value);
}

/// The domain name before any period.
pub fn domain<'a>(agreement: &'a Agreement, purpose: &'a str) -> &'a str {
    match agreement.domain {
        Domain::PerPurpose => purpose,
        Domain::Shared => &agreement.id,
    }
}

/// `2026-03-02`, `2026-W10` or `2026-03`: the period of `at` in UTC.
pub fn write_period(rotate: Rotate, at: DateTime<Utc>, buf: &mut Vec<u8>) {
    use crate::time::{two_digits, write_date, write_year};
    match rotate {
        Rotate::Daily => write_date(at.year(), at.month(), Some(at.day()), buf),
        Rotate::Weekly => {
            let w = at.iso_week();
            write_year(w.year(), buf);
            buf.extend_from_slice(b"-W");
            two_digits(w.week(), buf);
        }
        Rotate::Monthly => write_date(at.year(), at.month(), None, buf),
    }
}

/// The period as text (for the CLI and the audit trail).
pub fn period(rotate: Rotate, at: DateTime<Utc>) -> String {
    let mut buf = Vec::new();
    write_period(rotate, at, &mut buf);
    String::from_utf8(buf).expect("ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    proptest::proptest! {
        /// The HMAC computed from the keyed states is RFC 2104's, as the `hmac` crate
        /// computes it, for keys shorter and longer than a block and messages of every
        /// length around the padding's edges.
        #[test]
        fn the_digest_is_hmac_sha256(secret in proptest::collection::vec(proptest::prelude::any::<u8>(), MIN_KEY_LEN..200), message in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            use hmac::{Hmac, Mac};
            let key = Key::new(&secret, "k").unwrap();
            let mut mac = Hmac::<Sha256>::new_from_slice(&secret).unwrap();
            mac.update(&message);
            let want = mac.finalize().into_bytes();
            proptest::prop_assert_eq!(&key.digest(&message)[..], &want[..16]);
        }
    }

    /// SPEC 3's function on known answers, computed independently (Python's `hmac`):
    /// `HMAC-SHA256(key, DOMAIN || 0x00 || VALUE)`, first 32 hex digits, after the key id.
    #[test]
    fn pseudonyms_match_known_answers() {
        let p = Pseudonymiser::new(Key::new(&[7u8; 32], "k1").unwrap());
        let vectors: [(&[u8], &str); 3] = [
            (b"safety\0emp-1", "929be457d884dfef87c2873ab3bc0646"),
            (b"planning@2026-W10\0emp-00417", "f58cf5fdfa4e038557d7eba8b1badd19"),
            ("acme-dc-utrecht@2026-03\0wörker-ß".as_bytes(), "400ecfe6a33fdf0e6091d4f14949549b"),
        ];
        let mut cache = Cache::new(4);
        for round in 0..2 {
            for (message, hex) in vectors {
                let mut out = Vec::new();
                p.write(message, &mut cache, &mut out);
                assert_eq!(String::from_utf8(out).unwrap(), format!("k1:{hex}"), "round {round}");
            }
        }
        assert_eq!(cache.stats.hits + cache.stats.misses, 6);
    }

    proptest::proptest! {
        /// Whatever a (tiny, so always evicting) cache holds, its answer is the
        /// uncached one; and a cache handed to another key never answers for the first.
        #[test]
        fn a_cache_never_changes_an_answer(messages in proptest::collection::vec(proptest::collection::vec(0u8..8, 0..90), 1..60)) {
            let first = Pseudonymiser::new(Key::new(&[1u8; 32], "a").unwrap());
            let second = Pseudonymiser::new(Key::new(&[2u8; 32], "a").unwrap());
            let mut cache = Cache::new(8);
            for m in messages.iter().chain(messages.iter()) {
                for p in [&first, &second] {
                    let (mut cached, mut plain) = (Vec::new(), Vec::new());
                    p.write(m, &mut cache, &mut cached);
                    p.write(m, &mut Cache::disabled(), &mut plain);
                    proptest::prop_assert_eq!(cached, plain);
                }
            }
        }
    }

    /// Issue 11: a cache that does not pay stops looking (every answer still right),
    /// and one that pays keeps looking.
    #[test]
    fn a_cache_that_misses_rests_and_one_that_hits_keeps_looking() {
        let p = Pseudonymiser::new(Key::new(&[5u8; 32], "k").unwrap());
        let mut cold = Cache::with_bar(64, WINDOW / 2);
        for i in 0..(WINDOW * 3) {
            let m = format!("safety\0w-{i}");
            let (mut cached, mut plain) = (Vec::new(), Vec::new());
            p.write(m.as_bytes(), &mut cold, &mut cached);
            p.write(m.as_bytes(), &mut Cache::disabled(), &mut plain);
            assert_eq!(cached, plain);
        }
        assert_eq!(cold.stats.rests, 1);
        assert_eq!(cold.stats.misses, u64::from(WINDOW - 1));
        assert_eq!(cold.stats.uncached, u64::from(WINDOW * 2 + 1));
        let mut warm = Cache::with_bar(64, WINDOW / 2);
        for i in 0..(WINDOW * 3) {
            p.write(format!("safety\0w-{}", i % 8).as_bytes(), &mut warm, &mut Vec::new());
        }
        assert_eq!((warm.stats.rests, warm.stats.misses, warm.stats.uncached), (0, 8, 0));
    }

    #[test]
    fn short_keys_and_bad_ids_are_refused_without_showing_the_key() {
        let err = Key::new(b"too-short-secret", "k1").unwrap_err();
        assert!(!err.to_string().contains("too-short-secret"));
        assert!(Key::new(&[1; 32], "has:colon").is_err());
    }

    #[test]
    fn periods_are_utc_day_iso_week_and_month() {
        let at = Utc.with_ymd_and_hms(2026, 3, 2, 23, 30, 0).unwrap();
        assert_eq!(period(Rotate::Daily, at), "2026-03-02");
        assert_eq!(period(Rotate::Weekly, at), "2026-W10");
        assert_eq!(period(Rotate::Monthly, at), "2026-03");
        // 2027-01-01 is in ISO week 53 of 2026.
        let at = Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(period(Rotate::Weekly, at), "2026-W53");
    }
}
