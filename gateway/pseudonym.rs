//! Keyed pseudonyms (SPEC section 3).
//!
//! `KEY_ID ":" HEX`, where HEX is the first 32 lowercase hex digits of
//! `HMAC-SHA256(key, DOMAIN || 0x00 || VALUE)`. The HMAC is keyed once and its state
//! cloned for each value; results are cached in a concurrent map, since a site has a
//! few thousand workers and each appears in many events. The key never leaves this
//! module: it is not `Debug`, not `Display`, and never in an error.

use std::path::Path;

use chrono::{DateTime, Datelike, Utc};
use dashmap::DashMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::agreement::{Agreement, Domain, Rotate};

/// The shortest key accepted, in bytes.
pub const MIN_KEY_LEN: usize = 32;

/// Entries kept in the cache before it is cleared (bounded memory under rotation).
const CACHE_LIMIT: usize = 200_000;

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
    mac: Hmac<Sha256>,
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
        let id_ok = !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !id_ok {
            return Err(KeyError::BadId(id.to_string()));
        }
        if secret.len() < MIN_KEY_LEN {
            return Err(KeyError::TooShort { path: "given".into(), len: secret.len() });
        }
        let mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
        Ok(Key { id: id.to_string(), mac })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The first 16 bytes of the HMAC of `message`, as 32 lowercase hex digits.
    fn digest_hex(&self, message: &[u8]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(message);
        let tag = mac.finalize().into_bytes();
        let mut out = [0u8; 32];
        hex::encode_to_slice(&tag[..16], &mut out).expect("32 hex digits for 16 bytes");
        out
    }
}

/// Computes pseudonyms for one agreement's domains, with a cache.
pub struct Pseudonymiser {
    key: Key,
    cache: DashMap<Box<[u8]>, [u8; 32], foldhash::fast::RandomState>,
}

impl std::fmt::Debug for Pseudonymiser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pseudonymiser").field("key", &self.key).field("cached", &self.cache.len()).finish()
    }
}

impl Pseudonymiser {
    pub fn new(key: Key) -> Pseudonymiser {
        Pseudonymiser { key, cache: DashMap::default() }
    }

    pub fn key_id(&self) -> &str {
        self.key.id()
    }

    /// Appends `KEY_ID:HEX` for the message `DOMAIN 0x00 VALUE` held in `message`.
    /// `message` is the caller's scratch buffer, built by [`message`].
    pub fn write(&self, message: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(self.key.id.as_bytes());
        out.push(b':');
        if let Some(hex) = self.cache.get(message) {
            out.extend_from_slice(&*hex);
            return;
        }
        let hex = self.key.digest_hex(message);
        if self.cache.len() >= CACHE_LIMIT {
            self.cache.clear();
        }
        self.cache.insert(message.into(), hex);
        out.extend_from_slice(&hex);
    }

    /// The pseudonym as a string (for the CLI and tests).
    pub fn pseudonym(&self, agreement: &Agreement, purpose: &str, at: Option<DateTime<Utc>>, value: &str) -> String {
        let mut msg = Vec::new();
        message(agreement, purpose, at, value.as_bytes(), &mut msg);
        let mut out = Vec::new();
        self.write(&msg, &mut out);
        String::from_utf8(out).expect("key ids and hex are ASCII")
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
    use crate::engine::generalise::{two_digits, write_date, write_year};
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

    fn hmac_hex(key: &[u8], data: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(data);
        hex::encode(mac.finalize().into_bytes())
    }

    /// RFC 4231, test cases 1, 2, 4, 6 and 7 (full-length outputs).
    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        assert_eq!(hmac_hex(&[0x0b; 20], b"Hi There"), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
        assert_eq!(hmac_hex(b"Jefe", b"what do ya want for nothing?"), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        let key4: Vec<u8> = (1..=0x19).collect();
        assert_eq!(hmac_hex(&key4, &[0xcd; 50]), "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");
        assert_eq!(
            hmac_hex(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First"),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        assert_eq!(
            hmac_hex(&[0xaa; 131], b"This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm."),
            "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"
        );
    }

    /// The digest a pre-keyed, cloned state gives is the digest of a fresh HMAC.
    #[test]
    fn pre_keyed_state_gives_the_plain_hmac() {
        let key = Key::new(&[7u8; 32], "k1").unwrap();
        let direct = hmac_hex(&[7u8; 32], b"safety\0emp-1");
        assert_eq!(std::str::from_utf8(&key.digest_hex(b"safety\0emp-1")).unwrap(), &direct[..32]);
        // Twice through the cache, the same answer.
        let p = Pseudonymiser::new(key);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        p.write(b"safety\0emp-1", &mut a);
        p.write(b"safety\0emp-1", &mut b);
        assert_eq!(a, b);
        assert_eq!(String::from_utf8(a).unwrap(), format!("k1:{}", &direct[..32]));
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
