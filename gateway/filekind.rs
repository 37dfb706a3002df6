//! Which of Accord's own files a file is, so that a command given the wrong one can say
//! so: "this is an agreement, not a gateway configuration: check it with `accord check`"
//! rather than a parser's complaint about line 35.
//!
//! Recognition looks at the shape only (a first line, the top-level keys, the members
//! of the first JSON object) and is asked only after a file has failed to be what a
//! command wanted, so it never changes what a valid file means. It never quotes the
//! file: a key file's bytes are a secret.

use std::fmt;

use crate::agreement::yaml::{self, Node, NodeKind};
use crate::dpo::signing::{PRIVATE_HEADER, PUBLIC_HEADER, SIGNATURE_HEADER};

/// Files larger than this are not parsed as YAML to recognise them.
const YAML_LIMIT: usize = 1 << 20;

/// One of the kinds of file Accord reads or writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Agreement,
    AgreementTests,
    GatewayConfig,
    Events,
    Suppressions,
    AuditTrail,
    PublicKey,
    PrivateKey,
    Signature,
    PseudonymKey,
}

impl FileKind {
    /// What a person would call it, with an article.
    pub fn name(self) -> &'static str {
        match self {
            FileKind::Agreement => "an agreement",
            FileKind::AgreementTests => "an agreement's test cases",
            FileKind::GatewayConfig => "a gateway configuration",
            FileKind::Events => "a file of sensor events",
            FileKind::Suppressions => "a suppression list",
            FileKind::AuditTrail => "an audit trail",
            FileKind::PublicKey => "a party's public key",
            FileKind::PrivateKey => "a party's private signing key",
            FileKind::Signature => "a party's signature of an agreement",
            FileKind::PseudonymKey => "what looks like a pseudonym key file",
        }
    }

    /// What to do with a file of this kind, given its path as written.
    pub fn remedy(self, path: &str) -> String {
        match self {
            FileKind::Agreement => format!("check it with `accord check {path}`; commands take it as `--agreement {path}`, a gateway configuration as `agreement: {path}`"),
            FileKind::AgreementTests => format!("run it with `accord test AGREEMENT {path}`"),
            FileKind::GatewayConfig => format!("run it with `accord run --config {path}`; the agreement is the file it names under `agreement:`"),
            FileKind::Events => {
                format!("enforce it with `accord run --agreement A --key-file K --key-id ID --input {path} --output DIR`, or explain one event with `accord explain --agreement A --line N {path}`")
            }
            FileKind::Suppressions => "give it to file mode with `--suppressions FILE`; Kafka mode reads suppressions from the topic its configuration names".to_string(),
            FileKind::AuditTrail => format!("verify it with `accord audit verify {path}`, or summarise it with `accord audit report {path}`"),
            FileKind::PublicKey => "name it in the gateway configuration under `agreement_signatures.parties` as a `public_key_file`, or give it to `accord verify --party NAME=FILE`".to_string(),
            FileKind::PrivateKey => format!("sign with it (`accord sign AGREEMENT --key {path}`); it belongs to its party alone, never to the gateway"),
            FileKind::Signature => "`accord verify AGREEMENT --party NAME=PUB` checks it beside its agreement".to_string(),
            FileKind::PseudonymKey => "a gateway configuration names it under `pseudonym_key: { file: ..., id: ... }`".to_string(),
        }
    }
}

/// A file of another kind than the one wanted, as one sentence.
#[derive(Debug, thiserror::Error)]
pub struct WrongKind {
    pub path: String,
    pub found: FileKind,
    /// What was wanted, with an article ("a gateway configuration").
    pub wanted: &'static str,
}

impl fmt::Display for WrongKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is {}, not {}: {}", self.path, self.found.name(), self.wanted, self.found.remedy(&self.path))
    }
}

/// `Err` when `bytes` are recognisably a kind of file other than `wanted`.
pub fn expect(path: &str, bytes: &[u8], wanted: FileKind) -> Result<(), WrongKind> {
    match recognise(bytes) {
        Some(found) if found != wanted => Err(WrongKind { path: path.to_string(), found, wanted: wanted.name() }),
        _ => Ok(()),
    }
}

/// The kind of Accord file `bytes` look like, if any.
pub fn recognise(bytes: &[u8]) -> Option<FileKind> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        // Binary: random bytes from `head -c 32 /dev/urandom` are a key's usual shape.
        return (bytes.len() <= 4096).then_some(FileKind::PseudonymKey);
    };
    let first = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#'))?;
    let header = [(PUBLIC_HEADER, FileKind::PublicKey), (PRIVATE_HEADER, FileKind::PrivateKey), (SIGNATURE_HEADER, FileKind::Signature)];
    if let Some((_, kind)) = header.iter().find(|(h, _)| first == *h) {
        return Some(*kind);
    }
    if let Ok(serde_json::Value::Object(o)) = serde_json::from_str::<serde_json::Value>(first) {
        let has = |k: &str| o.contains_key(k);
        return if has("event_id") || (has("subject_id") && has("category")) {
            Some(FileKind::Events)
        } else if has("subject") && has("reason") {
            Some(FileKind::Suppressions)
        } else if has("seq") && has("prev") && has("kind") {
            Some(FileKind::AuditTrail)
        } else {
            None
        };
    }
    if is_key_like(text) {
        return Some(FileKind::PseudonymKey);
    }
    if text.len() > YAML_LIMIT {
        return None;
    }
    yaml_kind(&yaml::parse(text).ok()?)
}

/// One run of printable characters without spaces or YAML punctuation, long enough
/// for a key: what `openssl rand -hex 32 > key` or `echo SECRET > key` leaves.
fn is_key_like(text: &str) -> bool {
    let t = text.trim_end_matches(['\n', '\r']);
    t.len() >= 16 && !t.contains(['\n', ' ', '\t', ':', '#', '{', '[']) && !t.starts_with(['-', '"', '\''])
}

fn yaml_kind(root: &Node) -> Option<FileKind> {
    let key = |k: &Node| k.as_scalar().map(str::to_owned);
    match &root.kind {
        NodeKind::Map(entries) => {
            let keys: Vec<(String, &Node)> = entries.iter().filter_map(|(k, v)| Some((key(k)?, v))).collect();
            let value = |name: &str| keys.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
            let header_is_map = value("agreement").is_some_and(|v| matches!(v.kind, NodeKind::Map(_)));
            if header_is_map || value("purposes").is_some() || value("rules").is_some() {
                Some(FileKind::Agreement)
            } else if ["kafka", "pseudonym_key", "limits", "agreement_signatures"].iter().any(|k| value(k).is_some()) {
                Some(FileKind::GatewayConfig)
            } else {
                None
            }
        }
        NodeKind::Seq(items) => {
            let case = |n: &Node| matches!(&n.kind, NodeKind::Map(e) if e.iter().any(|(k, _)| k.as_scalar() == Some("expect")));
            items.first().filter(|n| case(n)).map(|_| FileKind::AgreementTests)
        }
        NodeKind::Scalar { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(name: &str) -> Vec<u8> {
        std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(name)).unwrap()
    }

    #[test]
    fn recognises_the_examples() {
        assert_eq!(recognise(&example("agreement.yaml")), Some(FileKind::Agreement));
        assert_eq!(recognise(&example("agreement.tests.yaml")), Some(FileKind::AgreementTests));
        assert_eq!(recognise(&example("gateway.yaml")), Some(FileKind::GatewayConfig));
        assert_eq!(recognise(&example("events.jsonl")), Some(FileKind::Events));
        assert_eq!(recognise(&example("demo.key")), Some(FileKind::PseudonymKey));
    }

    #[test]
    fn recognises_keys_trails_and_suppressions() {
        assert_eq!(recognise(&[0xff, 0x00, 0x9c, 0x41]), Some(FileKind::PseudonymKey));
        assert_eq!(recognise(b"0123456789abcdef0123456789abcdef\n"), Some(FileKind::PseudonymKey));
        assert_eq!(recognise(b"{\"subject\": \"k:00\", \"reason\": \"objection\"}\n"), Some(FileKind::Suppressions));
        assert_eq!(recognise(b"{\"seq\": 0, \"time\": \"t\", \"kind\": \"start\", \"content\": {}, \"prev\": \"00\"}\n"), Some(FileKind::AuditTrail));
        assert_eq!(recognise(format!("{PUBLIC_HEADER}\nparty: x\nkey: 00\n").as_bytes()), Some(FileKind::PublicKey));
        assert_eq!(recognise(format!("{PRIVATE_HEADER}\nparty: x\nkey: 00\n").as_bytes()), Some(FileKind::PrivateKey));
    }

    #[test]
    fn does_not_guess_at_what_it_does_not_know() {
        assert_eq!(recognise(b"brokers: localhost:9092\n"), None);
        assert_eq!(recognise(b""), None);
        assert_eq!(recognise(b"{\"a\": 1}\n"), None);
        assert_eq!(recognise(b"short\n"), None);
    }

    #[test]
    fn the_sentence_never_quotes_the_file() {
        let e = expect("k", b"s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t\n", FileKind::GatewayConfig).unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("k is what looks like a pseudonym key file, not a gateway configuration: "), "{s}");
        assert!(!s.contains("s3cr3t"));
        assert!(expect("a", &example("agreement.yaml"), FileKind::Agreement).is_ok());
    }
}
