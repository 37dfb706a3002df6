//! Co-signing the agreement: Ed25519 keys for each party, detached signatures over the
//! agreement file's exact bytes, and the check the gateway runs at start and at reload.
//!
//! An agreement is only as good as the consent behind it. Each party (the employer, the
//! works council) keeps a private key; `accord sign` writes `AGREEMENT.<party>.sig`
//! beside the file; [`verify_parties`] refuses the agreement unless every required
//! party signed exactly these bytes, naming every party that did not. So a platform
//! team cannot widen what is enforced without the works council signing.
//!
//! The three files are short UTF-8 text, a header line then `name: value` lines:
//!
//! ```text
//! accord ed25519 public key v1            accord ed25519 signature v1
//! party: Ondernemingsraad ACME Utrecht    party: Ondernemingsraad ACME Utrecht
//! key: <64 hex digits>                    sha256: <64 hex digits: the signed file>
//!                                         signature: <128 hex digits>
//! ```
//!
//! The same files hold the audit key (`accord keygen --audit`, party `audit`), which
//! signs the audit trail's checkpoints ([`crate::report::audit`]); its public half is what the
//! works council and auditors hold.
//!
//! The private key file is the public one with `private key` in its header and the
//! 32-byte secret seed as `key`. The signature is plain Ed25519 (RFC 8032) over the
//! file's bytes, nothing prepended, so any Ed25519 tool can check it independently.
//! The `sha256` line is for people (which version was signed); the signature decides.

use std::fmt;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

pub const PUBLIC_HEADER: &str = "accord ed25519 public key v1";
pub const PRIVATE_HEADER: &str = "accord ed25519 private key v1";
pub const SIGNATURE_HEADER: &str = "accord ed25519 signature v1";

/// The party name of the audit key (`accord keygen --audit`): the key that signs the
/// audit trail's checkpoints. Not a party to the agreement, and never the pseudonym key.
pub const AUDIT_PARTY: &str = "audit";

/// Key and signature files are a few lines; anything larger is not one.
const MAX_FILE: u64 = 64 * 1024;

/// Why a key or signature file cannot be used. Never holds a private key.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read {path}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} is not {what}: {why}")]
    Format { path: String, what: &'static str, why: String },
    #[error("the party name {0:?} is not usable: give one line of text, 1 to 200 characters")]
    BadParty(String),
    #[error("the key file {path} is for party `{found}`, not `{expected}`")]
    WrongParty { path: String, found: String, expected: String },
    #[error("cannot generate a key: the system's random source failed ({0})")]
    Random(String),
}

/// A party whose signature the gateway requires: its name and public key.
#[derive(Clone, PartialEq, Eq)]
pub struct Party {
    pub name: String,
    pub public_key: VerifyingKey,
}

impl fmt::Debug for Party {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Party").field("name", &self.name).field("public_key", &hex::encode(self.public_key.as_bytes())).finish()
    }
}

impl Party {
    /// Reads a public key file. When `expected` is given, the file must name that party
    /// (so a key is not configured for the wrong party by mistake).
    pub fn from_file(path: &Path, expected: Option<&str>) -> Result<Party, KeyFileError> {
        let display = path.display().to_string();
        let text = read_small(path)?;
        let party = Party::parse(&text).map_err(|why| KeyFileError::Format { path: display.clone(), what: "an Accord public key file", why })?;
        match expected {
            Some(name) if name != party.name => Err(KeyFileError::WrongParty { path: display, found: party.name, expected: name.to_string() }),
            _ => Ok(party),
        }
    }

    /// Parses the text of a public key file.
    pub fn parse(text: &str) -> Result<Party, String> {
        let fields = fields(text, PUBLIC_HEADER, &["party", "key"])?;
        let bytes: [u8; 32] = hex32(&fields[1], "key")?;
        let public_key = VerifyingKey::from_bytes(&bytes).map_err(|_| "`key` is not a valid Ed25519 public key".to_string())?;
        Ok(Party { name: fields[0].clone(), public_key })
    }

    /// The text of its public key file.
    pub fn to_text(&self) -> String {
        format!("{PUBLIC_HEADER}\nparty: {}\nkey: {}\n", self.name, hex::encode(self.public_key.as_bytes()))
    }

    /// Hex of the public key's SHA-256, first 16 digits: a short fingerprint to read aloud.
    pub fn fingerprint(&self) -> String {
        hex::encode(&Sha256::digest(self.public_key.as_bytes())[..8])
    }

    /// Does `signature` (128 hex digits) sign `message` with this key? Strict RFC 8032
    /// verification (the audit trail's checkpoints).
    pub fn verifies(&self, message: &[u8], signature: &str) -> bool {
        let raw = hex::decode(signature).ok().and_then(|b| <[u8; 64]>::try_from(b).ok());
        raw.is_some_and(|raw| self.public_key.verify_strict(message, &Signature::from_bytes(&raw)).is_ok())
    }
}

/// A party's private signing key. Not `Display`; its `Debug` shows only the party.
pub struct PartyKey {
    pub party: String,
    signing: SigningKey,
}

impl fmt::Debug for PartyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartyKey").field("party", &self.party).finish_non_exhaustive()
    }
}

impl PartyKey {
    /// A new key from the operating system's random source.
    pub fn generate(party: &str) -> Result<PartyKey, KeyFileError> {
        check_party(party)?;
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyFileError::Random(e.to_string()))?;
        let key = PartyKey::from_seed(party, seed);
        seed.fill(0);
        Ok(key)
    }

    /// A key from a known seed (for tests).
    pub fn from_seed(party: &str, seed: [u8; 32]) -> PartyKey {
        PartyKey { party: party.to_string(), signing: SigningKey::from_bytes(&seed) }
    }

    pub fn from_file(path: &Path) -> Result<PartyKey, KeyFileError> {
        let display = path.display().to_string();
        let text = read_small(path)?;
        PartyKey::parse(&text).map_err(|why| KeyFileError::Format { path: display, what: "an Accord private key file", why })
    }

    /// The audit key's private file (`accord keygen --audit`): refused when it is
    /// another party's key, so a co-signing key never signs the trail by mistake.
    pub fn audit_from_file(path: &Path) -> Result<PartyKey, KeyFileError> {
        let key = PartyKey::from_file(path)?;
        if key.party != AUDIT_PARTY {
            return Err(KeyFileError::WrongParty { path: path.display().to_string(), found: key.party.clone(), expected: AUDIT_PARTY.to_string() });
        }
        Ok(key)
    }

    pub fn parse(text: &str) -> Result<PartyKey, String> {
        let fields = fields(text, PRIVATE_HEADER, &["party", "key"])?;
        Ok(PartyKey::from_seed(&fields[0], hex32(&fields[1], "key")?))
    }

    /// The text of its private key file (keep it at mode 0600).
    pub fn to_text(&self) -> String {
        format!("{PRIVATE_HEADER}\nparty: {}\nkey: {}\n", self.party, hex::encode(self.signing.to_bytes()))
    }

    pub fn public(&self) -> Party {
        Party { name: self.party.clone(), public_key: self.signing.verifying_key() }
    }

    /// The bare signature over `message`, as 128 hex digits (the audit trail's
    /// checkpoints, which carry it inside a record rather than in a file).
    pub fn sign_hex(&self, message: &[u8]) -> String {
        hex::encode(self.signing.sign(message).to_bytes())
    }

    /// The text of a detached signature file over `bytes`.
    pub fn sign(&self, bytes: &[u8]) -> String {
        let signature = self.signing.sign(bytes);
        format!(
            "{SIGNATURE_HEADER}\nparty: {}\nsha256: {}\nsignature: {}\n",
            self.party,
            hex::encode(Sha256::digest(bytes)),
            hex::encode(signature.to_bytes())
        )
    }
}

/// A party name as a file-name part: lowercase ASCII letters and digits, every other
/// run of characters one `-` (so it is also a valid Kubernetes ConfigMap key).
pub fn slug(party: &str) -> String {
    let mut out = String::new();
    for c in party.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed = out.trim_matches('-');
    if trimmed.is_empty() { "party".to_string() } else { trimmed.to_string() }
}

/// Where a party's signature of an agreement lives: `AGREEMENT.<slug>.sig` beside it.
pub fn signature_path(agreement: &Path, party: &str) -> PathBuf {
    let mut name = agreement.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".{}.sig", slug(party)));
    agreement.with_file_name(name)
}

/// What is wrong with one party's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// No signature file.
    Missing(PathBuf),
    /// The file cannot be read or is not a signature file.
    Unreadable(PathBuf, String),
    /// The file names another party.
    OtherParty(PathBuf, String),
    /// The signature does not verify because the file changed after signing (the
    /// signature names another SHA-256).
    Changed(PathBuf),
    /// The signature does not verify for this file: another key made it, or it was altered.
    Invalid(PathBuf),
}

/// Some required parties did not sign the agreement's exact bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", describe(.agreement, .problems))]
pub struct SignatureError {
    pub agreement: String,
    /// Each party that failed, with why, in the order the parties were given.
    pub problems: Vec<(String, Problem)>,
}

impl SignatureError {
    /// The names of the parties whose signature is missing or bad.
    pub fn parties(&self) -> Vec<&str> {
        self.problems.iter().map(|(p, _)| p.as_str()).collect()
    }
}

fn describe(agreement: &str, problems: &[(String, Problem)]) -> String {
    let each: Vec<String> = problems
        .iter()
        .map(|(party, problem)| match problem {
            Problem::Missing(p) => format!("`{party}` has not signed it (no {})", p.display()),
            Problem::Unreadable(p, why) => format!("the signature of `{party}` cannot be read ({}: {why})", p.display()),
            Problem::OtherParty(p, found) => format!("{} holds a signature of `{found}`, not of `{party}`", p.display()),
            Problem::Changed(p) => format!("the file was changed after `{party}` signed it ({})", p.display()),
            Problem::Invalid(p) => format!("the signature of `{party}` ({}) does not match the party's key: another key made it, or it was altered", p.display()),
        })
        .collect();
    format!("the agreement {agreement} is not signed by every party: {}", each.join("; "))
}

/// Checks that every party signed exactly `bytes` (the agreement as read from
/// `agreement_path`), reading each signature from [`signature_path`]. The gateway calls
/// this at start and at every reload, with the bytes it is about to compile, so what
/// is verified is what is enforced. The error names every missing or bad party.
pub fn verify_parties(agreement_path: &Path, bytes: &[u8], parties: &[Party]) -> Result<(), SignatureError> {
    let mut problems = Vec::new();
    for party in parties {
        let path = signature_path(agreement_path, &party.name);
        let text = match read_small(&path) {
            Ok(text) => text,
            Err(KeyFileError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                problems.push((party.name.clone(), Problem::Missing(path)));
                continue;
            }
            Err(KeyFileError::Read { source, .. }) => {
                problems.push((party.name.clone(), Problem::Unreadable(path, source.to_string())));
                continue;
            }
            Err(e) => {
                problems.push((party.name.clone(), Problem::Unreadable(path, e.to_string())));
                continue;
            }
        };
        if let Err(problem) = check_signature(bytes, party, &text, &path) {
            problems.push((party.name.clone(), problem));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(SignatureError { agreement: agreement_path.display().to_string(), problems })
    }
}

/// Checks one signature file's text against `bytes` and the party's key. Pure.
pub fn check_signature(bytes: &[u8], party: &Party, text: &str, path: &Path) -> Result<(), Problem> {
    let fields = fields(text, SIGNATURE_HEADER, &["party", "sha256", "signature"]).map_err(|why| Problem::Unreadable(path.to_path_buf(), why))?;
    if fields[0] != party.name {
        return Err(Problem::OtherParty(path.to_path_buf(), fields[0].clone()));
    }
    let raw = hex::decode(&fields[2]).ok().and_then(|b| <[u8; 64]>::try_from(b).ok());
    let Some(raw) = raw else {
        return Err(Problem::Unreadable(path.to_path_buf(), "`signature` must be 128 hex digits".into()));
    };
    let signature = Signature::from_bytes(&raw);
    party.public_key.verify_strict(bytes, &signature).map_err(|_| {
        if fields[1] != hex::encode(Sha256::digest(bytes)) {
            Problem::Changed(path.to_path_buf())
        } else {
            Problem::Invalid(path.to_path_buf())
        }
    })
}

fn check_party(party: &str) -> Result<(), KeyFileError> {
    let ok = !party.trim().is_empty() && party == party.trim() && party.chars().count() <= 200 && !party.chars().any(char::is_control);
    if ok { Ok(()) } else { Err(KeyFileError::BadParty(party.to_string())) }
}

fn read_small(path: &Path) -> Result<String, KeyFileError> {
    let display = path.display().to_string();
    let read = |source| KeyFileError::Read { path: display.clone(), source };
    let meta = std::fs::metadata(path).map_err(read)?;
    if meta.len() > MAX_FILE {
        return Err(KeyFileError::Format { path: display.clone(), what: "a key or signature file", why: format!("it is larger than {MAX_FILE} bytes") });
    }
    let bytes = std::fs::read(path).map_err(read)?;
    String::from_utf8(bytes).map_err(|_| KeyFileError::Format { path: display, what: "a key or signature file", why: "it is not UTF-8 text".into() })
}

/// The header line, then exactly the named `name: value` lines, in order. Blank lines
/// and lines starting with `#` are ignored.
fn fields(text: &str, header: &str, names: &[&str]) -> Result<Vec<String>, String> {
    let mut lines = text.lines().map(str::trim_end).filter(|l| !l.trim().is_empty() && !l.starts_with('#'));
    match lines.next() {
        Some(first) if first.trim() == header => {}
        // Never quoted: the file may be another key (a pseudonym key given by mistake).
        Some(_) => return Err(format!("its first line is not `{header}` (`accord keygen` writes these files)")),
        None => return Err("it is empty".into()),
    }
    let mut out = Vec::new();
    for name in names {
        let line = lines.next().ok_or_else(|| format!("the `{name}:` line is missing"))?;
        let value = line
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(':'))
            .ok_or_else(|| format!("the line where `{name}:` belongs holds something else"))?;
        let value = value.trim();
        if value.is_empty() {
            return Err(format!("`{name}` is empty"));
        }
        out.push(value.to_string());
    }
    if lines.next().is_some() {
        return Err(format!("it has more lines after `{}:`", names.last().unwrap_or(&"")));
    }
    Ok(out)
}

fn hex32(text: &str, name: &str) -> Result<[u8; 32], String> {
    hex::decode(text).ok().and_then(|b| <[u8; 32]>::try_from(b).ok()).ok_or_else(|| format!("`{name}` must be 64 hex digits"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(party: &str, seed: u8) -> PartyKey {
        PartyKey::from_seed(party, [seed; 32])
    }

    /// RFC 8032 section 7.1, test 1: the empty message.
    #[test]
    fn signatures_are_plain_rfc_8032_ed25519() {
        let seed: [u8; 32] = hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60").unwrap().try_into().unwrap();
        let k = PartyKey::from_seed("p", seed);
        assert_eq!(hex::encode(k.public().public_key.as_bytes()), "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
        let text = k.sign(b"");
        assert!(text.contains(
            "signature: e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        ));
    }

    #[test]
    fn key_files_round_trip_and_name_their_party() {
        let k = key("Ondernemingsraad ACME Utrecht", 3);
        let back = PartyKey::parse(&k.to_text()).unwrap();
        assert_eq!(back.public(), k.public());
        let public = Party::parse(&k.public().to_text()).unwrap();
        assert_eq!(public.name, "Ondernemingsraad ACME Utrecht");
        assert!(Party::parse(&k.to_text()).unwrap_err().contains("first line"));
        assert!(!format!("{k:?}").contains(&hex::encode([3u8; 32])));
    }

    #[test]
    fn a_changed_byte_fails_and_every_bad_party_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agreement.yaml");
        let bytes = b"agreement:\n  version: 4\n".to_vec();
        let (employer, council) = (key("ACME Logistics B.V.", 1), key("Ondernemingsraad ACME Utrecht", 2));
        std::fs::write(signature_path(&path, &employer.party), employer.sign(&bytes)).unwrap();
        std::fs::write(signature_path(&path, &council.party), council.sign(&bytes)).unwrap();
        let parties = [employer.public(), council.public()];
        verify_parties(&path, &bytes, &parties).unwrap();

        let mut changed = bytes.clone();
        changed[20] = b'5';
        let err = verify_parties(&path, &changed, &parties).unwrap_err();
        assert_eq!(err.parties(), ["ACME Logistics B.V.", "Ondernemingsraad ACME Utrecht"]);
        assert!(err.to_string().contains("the file was changed after `ACME Logistics B.V.` signed it"), "{err}");

        std::fs::remove_file(signature_path(&path, &council.party)).unwrap();
        let err = verify_parties(&path, &bytes, &parties).unwrap_err();
        assert_eq!(err.parties(), ["Ondernemingsraad ACME Utrecht"]);
        assert!(err.to_string().contains("`Ondernemingsraad ACME Utrecht` has not signed it"), "{err}");
    }

    #[test]
    fn a_signature_by_another_key_or_for_another_party_fails() {
        let bytes = b"x";
        let council = key("Council", 2);
        let forged = key("Council", 9).sign(bytes);
        let p = Path::new("a.sig");
        assert_eq!(check_signature(bytes, &council.public(), &forged, p), Err(Problem::Invalid(p.into())));
        let other = key("Employer", 1).sign(bytes);
        assert_eq!(check_signature(bytes, &council.public(), &other, p), Err(Problem::OtherParty(p.into(), "Employer".into())));
    }

    #[test]
    fn slugs_are_configmap_keys() {
        assert_eq!(slug("ACME Logistics B.V."), "acme-logistics-b-v");
        assert_eq!(slug("Ondernemingsraad ACME Utrecht"), "ondernemingsraad-acme-utrecht");
        assert_eq!(slug("Zürich OR"), "z-rich-or");
        assert_eq!(slug("!!"), "party");
        assert_eq!(signature_path(Path::new("/etc/accord/agreement.yaml"), "OR"), Path::new("/etc/accord/agreement.yaml.or.sig"));
    }
}
