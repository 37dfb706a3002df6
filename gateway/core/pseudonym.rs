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

/// The table sizes the default cache chooses among, in slots of one cache line: 64 KiB,
/// 256 KiB, 1 MiB and 4 MiB.
pub const SIZES: [usize; 4] = [1 << 10, 1 << 12, 1 << 14, 1 << 16];

/// What one look-up in a table of each of [`SIZES`] costs, hit or miss, as a share of
/// one HMAC, where SHA-256 runs on the CPU's own instructions. A larger table's probe
/// leaves the CPU's nearer caches, so it needs more hits to pay: with an HMAC costing 1,
/// a table of hit rate `h` costs `probe + (1 - h)` a look-up, against 1 for none. From
/// the measurements in docs/performance.md ("The pseudonym cache"): the 64 KiB table
/// broke even near 25% hits; on the site mix the 1 MiB table lost at 44% hits and
/// the 4 MiB one at 46%; on six purposes per event both won at 75% and 92%.
const PROBE_COST: [f32; 4] = [0.25, 0.35, 0.55, 0.65];

/// The same where SHA-256 runs in software and an HMAC costs several probes.
const PROBE_COST_SOFTWARE_SHA: [f32; 4] = [0.05, 0.05, 0.14, 0.16];

/// One look-up in 2^SAMPLE_BITS (by its hash) is also played on the ghost tables.
const SAMPLE_BITS: u32 = 4;

/// Look-ups between two choices of size.
const EPOCH: u32 = 1 << 16;

/// How much cheaper (in HMACs a look-up) another size must promise before the cache
/// changes to it: a size is not changed back and forth on the sampling's noise.
const HYSTERESIS: f32 = 0.05;

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

/// A direct-mapped table of pseudonyms, owned by one thread's caller and reused across
/// events: no lock, and no allocation but when its size changes. A slot is one cache
/// line, overwritten by the next message that maps to it, so memory never grows past
/// the largest of [`SIZES`] and a rotation period that ends simply ages out. Entries
/// are tagged with the key they were computed with: a cache handed to another key
/// starts empty.
///
/// Meant never to be slower than no cache, on any workload. With SHA-NI an HMAC costs about as much
/// as a look-up that misses the CPU's caches, so which size pays (if any) depends on
/// how many distinct messages the stream repeats: a site's few pseudonyms per event
/// pay only in a small table, six purposes' many in a large one, and daily pseudonyms
/// of 50,000 wearers in none. The default cache therefore measures the hit rate every
/// size would have, by playing one look-up in sixteen (chosen by the message's hash)
/// on small "ghost" tables of hashes alone, one per size, that hold exactly the sampled
/// sets of the real ones (set sampling). Every [`EPOCH`] look-ups it takes the size
/// whose [`PROBE_COST`] plus miss rate is least, or no table when none beats an HMAC
/// (it then rests, computing every pseudonym, and keeps sampling).
pub struct Cache {
    slots: Vec<Slot>,
    /// The slots' count less one; `usize::MAX` for a cache that remembers nothing.
    mask: usize,
    fingerprint: u64,
    hasher: foldhash::fast::FixedState,
    /// `None`: the size given is kept, whatever it costs.
    adaptive: Option<Adaptive>,
    pub stats: CacheStats,
}

/// The default cache's sampling of every size.
struct Adaptive {
    probe_cost: &'static [f32; 4],
    /// Per size: the hashes of the sampled sets' messages, 0 where empty.
    ghosts: [Vec<u32>; 4],
    ghost_hits: [u32; 4],
    sampled: u32,
    looked: u32,
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
    /// Epochs the cache sat out because no size paid.
    pub rests: u64,
    /// Times the cache changed its size (to rest, or from resting, included).
    pub resizes: u64,
}

impl Default for Cache {
    /// The cache that chooses its size: it starts with the smallest of [`SIZES`] that
    /// pays where SHA-256 runs as it does on this CPU.
    fn default() -> Cache {
        let hardware = sha_in_hardware();
        let start = if hardware { 0 } else { 1 };
        let mut cache = Cache::fixed(SIZES[start]);
        cache.adaptive = Some(Adaptive {
            probe_cost: if hardware { &PROBE_COST } else { &PROBE_COST_SOFTWARE_SHA },
            ghosts: SIZES.map(|n| vec![0; n >> SAMPLE_BITS]),
            ghost_hits: [0; 4],
            sampled: 0,
            looked: 0,
        });
        cache
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
    /// A table of `slots` entries (rounded up to a power of two) that always looks,
    /// whether it pays or not (for tests and benchmarks); allocated on first use.
    pub fn fixed(slots: usize) -> Cache {
        let n = slots.max(1).next_power_of_two();
        Cache {
            slots: Vec::new(),
            mask: n - 1,
            fingerprint: 0,
            hasher: foldhash::fast::FixedState::with_seed(0x005e_edac_c04d),
            adaptive: None,
            stats: CacheStats::default(),
        }
    }

    /// A cache that remembers nothing.
    pub fn disabled() -> Cache {
        Cache { mask: usize::MAX, ..Cache::fixed(1) }
    }

    /// The slots of the table in use now (0 while resting, or disabled).
    pub fn slots(&self) -> usize {
        self.mask.wrapping_add(1)
    }

    fn get_or_insert(&mut self, fingerprint: u64, message: &[u8], compute: impl FnOnce() -> [u8; 16]) -> [u8; 16] {
        if self.mask == usize::MAX && self.adaptive.is_none() || message.len() > SLOT_MESSAGE {
            self.stats.uncached += 1;
            return compute();
        }
        use std::hash::BuildHasher as _;
        let full = self.hasher.hash_one(message);
        let hash = (full >> 32) as u32 | 1;
        if self.fingerprint != fingerprint {
            self.forget(fingerprint);
        }
        if let Some(a) = &mut self.adaptive {
            if full & ((1 << SAMPLE_BITS) - 1) == 0 {
                a.sample(full, hash);
            }
            a.looked += 1;
            if a.looked == EPOCH {
                self.choose_size();
            }
        }
        if self.mask == usize::MAX {
            self.stats.uncached += 1;
            return compute();
        }
        if self.slots.is_empty() {
            self.slots.resize(self.mask + 1, EMPTY);
        }
        let slot = &mut self.slots[(full as usize) & self.mask];
        if slot.hash == hash && &slot.message[..slot.len as usize] == message {
            self.stats.hits += 1;
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

    /// Another key: nothing remembered holds for it.
    fn forget(&mut self, fingerprint: u64) {
        self.slots.clear();
        self.fingerprint = fingerprint;
        if let Some(a) = &mut self.adaptive {
            a.ghosts.iter_mut().for_each(|g| g.fill(0));
        }
    }

    /// An epoch ended: take the size that costs least, or none.
    fn choose_size(&mut self) {
        let Some(a) = &mut self.adaptive else { return };
        let now = SIZES.iter().position(|&n| n == self.mask.wrapping_add(1));
        let next = a.cheapest(now).unwrap_or(now);
        a.ghost_hits = [0; 4];
        a.sampled = 0;
        a.looked = 0;
        if next.is_none() {
            self.stats.rests += 1;
        }
        if next == now {
            return;
        }
        self.stats.resizes += 1;
        self.slots = Vec::new();
        self.mask = next.map_or(usize::MAX, |i| SIZES[i] - 1);
    }
}

impl Adaptive {
    /// Plays a sampled look-up on every ghost table.
    fn sample(&mut self, full: u64, hash: u32) {
        self.sampled += 1;
        for (i, ghost) in self.ghosts.iter_mut().enumerate() {
            let set = ((full as usize) & (SIZES[i] - 1)) >> SAMPLE_BITS;
            if ghost[set] == hash {
                self.ghost_hits[i] += 1;
            } else {
                ghost[set] = hash;
            }
        }
    }

    /// The size (`Some(None)`: no table) that promises to cost least per look-up, if it
    /// is clearly cheaper than the one in use (`now`); `None` to keep it, or when too few
    /// look-ups were sampled to tell.
    fn cheapest(&self, now: Option<usize>) -> Option<Option<usize>> {
        if self.sampled < 256 {
            return None;
        }
        let miss = |i: usize| 1.0 - self.ghost_hits[i] as f32 / self.sampled as f32;
        let cost = |size: Option<usize>| size.map_or(1.0, |i| self.probe_cost[i] + miss(i));
        let best = std::iter::once(None).chain((0..SIZES.len()).map(Some)).min_by(|x, y| cost(*x).total_cmp(&cost(*y))).expect("five choices");
        (cost(best) + HYSTERESIS < cost(now)).then_some(best)
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
        let mut cache = Cache::fixed(4);
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
            let mut cache = Cache::fixed(8);
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

    /// Runs `epochs` epochs of look-ups of `message(i)` through `cache`, each answer
    /// checked against the uncached one.
    fn look_up(cache: &mut Cache, epochs: u32, message: impl Fn(u32) -> String) {
        let p = Pseudonymiser::new(Key::new(&[5u8; 32], "k").unwrap());
        for i in 0..EPOCH * epochs {
            let m = message(i);
            let (mut cached, mut plain) = (Vec::new(), Vec::new());
            p.write(m.as_bytes(), cache, &mut cached);
            p.write(m.as_bytes(), &mut Cache::disabled(), &mut plain);
            assert_eq!(cached, plain, "look-up {i}");
        }
    }

    /// Issue 11: the default cache rests when no size would pay (every answer still
    /// right, and none looked up in a table from the first epoch's end on).
    #[test]
    fn a_cache_that_never_hits_rests() {
        let mut cache = Cache::default();
        look_up(&mut cache, 3, |i| format!("safety\0w-{i}"));
        assert_eq!((cache.stats.rests, cache.stats.resizes, cache.slots()), (3, 1, 0), "{:?}", cache.stats);
        // The look-up that ends the first epoch is the first one the rest computes.
        assert_eq!(cache.stats.hits + cache.stats.misses, u64::from(EPOCH - 1), "{:?}", cache.stats);
    }

    /// Issue 11: a stream that repeats more messages than the smallest table holds
    /// gets a larger table, and then hits where the small one missed.
    #[test]
    fn a_cache_grows_to_the_messages_its_stream_repeats() {
        let mut cache = Cache::default();
        look_up(&mut cache, 2, |i| format!("p{}@2026-W10\0w-{:05}", i % 6, i % 3_000));
        assert!(cache.slots() > SIZES[1], "{:?}", cache.stats);
        let before = cache.stats;
        look_up(&mut cache, 1, |i| format!("p{}@2026-W10\0w-{:05}", i % 6, i % 3_000));
        let hits = (cache.stats.hits - before.hits) as f64 / f64::from(EPOCH);
        assert!(hits > 0.8, "{hits} hits a look-up: {:?}", cache.stats);
        // The same stream through the smallest table, for comparison.
        let mut small = Cache::fixed(SIZES[0]);
        look_up(&mut small, 1, |i| format!("p{}@2026-W10\0w-{:05}", i % 6, i % 3_000));
        assert!((small.stats.hits as f64 / f64::from(EPOCH)) < 0.2, "{:?}", small.stats);
    }

    /// Issue 11: a stream of a few messages keeps the small table it started with.
    #[test]
    fn a_cache_of_few_messages_stays_small() {
        let mut cache = Cache::default();
        let start = cache.slots();
        look_up(&mut cache, 2, |i| format!("safety\0w-{}", i % 8));
        assert_eq!((cache.stats.rests, cache.stats.resizes, cache.slots(), cache.stats.misses), (0, 0, start, 8), "{:?}", cache.stats);
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
