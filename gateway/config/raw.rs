//! The gateway configuration as the platform team wrote it: every value with its line
//! and column, read with the same positioned YAML reader as the agreement
//! ([`accord_core::agreement::yaml`]) and the same key reader, so that every unknown
//! key, repeated key and value of the wrong kind is reported at once, each at its place,
//! rather than the first alone.

use accord_core::agreement::diagnostic::Diagnostics;
use accord_core::agreement::model::known_keys;
use accord_core::agreement::yaml::{self, Node, NodeKind, Span};

use super::{Delivery, Problem};
use crate::event::wire::Framing;
use crate::event::Format;

/// A place in the file, 1-based.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Location {
    line: u32,
    column: u32,
}

impl Location {
    pub fn line(&self) -> u32 {
        self.line
    }

    pub fn column(&self) -> u32 {
        self.column
    }
}

impl From<Span> for Location {
    fn from(s: Span) -> Location {
        Location { line: s.line as u32, column: s.col as u32 }
    }
}

/// A value and the place it was written.
#[derive(Clone, Debug)]
pub struct Spanned<T> {
    pub value: T,
    pub referenced: Location,
}

/// The file as written.
#[derive(Debug, Default)]
pub struct Raw {
    pub agreement: Option<Spanned<String>>,
    pub pseudonym_key: Option<RawKey>,
    pub admin: Option<RawAdmin>,
    pub kafka: Option<Spanned<RawKafka>>,
    pub limits: Option<RawLimits>,
    pub agreement_signatures: Option<Spanned<RawSignatures>>,
    pub audit: Option<Spanned<RawAudit>>,
    pub log: Option<RawLog>,
    /// `suppressions.topic`: the compacted topic of workers' suppressions (SPEC 2.7).
    pub suppressions: Option<Spanned<String>>,
}

#[derive(Debug, Default)]
pub struct RawAudit {
    pub file: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
    pub topic: Option<Spanned<String>>,
    pub interval: Option<Spanned<String>>,
}

#[derive(Debug, Default)]
pub struct RawLog {
    pub level: Option<Spanned<String>>,
    pub format: Option<Spanned<String>>,
}

#[derive(Debug, Default)]
pub struct RawSignatures {
    pub required: Option<Spanned<bool>>,
    pub parties: Vec<RawParty>,
}

#[derive(Debug)]
pub struct RawParty {
    pub name: Spanned<String>,
    pub public_key_file: Spanned<String>,
}

#[derive(Debug, Default)]
pub struct RawKey {
    pub file: Option<Spanned<String>>,
    pub id: Option<Spanned<String>>,
}

#[derive(Debug)]
pub struct RawAdmin {
    pub address: Spanned<String>,
}

#[derive(Debug, Default)]
pub struct RawKafka {
    pub brokers: Option<Spanned<String>>,
    pub group: Option<Spanned<String>>,
    pub input: Option<Spanned<RawInput>>,
    pub output: RawOutput,
    pub quarantine_topic: Option<Spanned<String>>,
    pub delivery: Delivery,
    pub transactional_id: Option<Spanned<String>>,
    pub properties: Properties,
    pub consumer: Properties,
    pub producer: Properties,
}

#[derive(Debug)]
pub struct RawInput {
    pub topics: Spanned<Vec<Spanned<String>>>,
    pub format: Format,
    pub framing: Framing,
}

#[derive(Debug, Default)]
pub struct RawOutput {
    pub format: Format,
    pub framing: Framing,
    /// The id of the EnforcedEvent schema (of this format) in the registry the
    /// outputs' readers use; required with `framing: confluent`.
    pub schema_id: Option<Spanned<u32>>,
}

#[derive(Debug, Default)]
pub struct RawLimits {
    pub max_in_flight: Option<Spanned<u64>>,
    pub commit_interval: Option<Spanned<String>>,
    pub drain_timeout: Option<Spanned<String>>,
    pub stuck_after: Option<Spanned<String>>,
    pub threads: Option<Spanned<u64>>,
}

/// A map of librdkafka properties, in file order, keys and values with their place.
/// Numbers and booleans are taken as the text librdkafka expects.
#[derive(Debug, Default)]
pub struct Properties(pub Vec<(Spanned<String>, Spanned<String>)>);

/// Reads the file; every problem of its shape at once.
pub fn read(text: &str) -> Result<Raw, Vec<Problem>> {
    let root = yaml::parse(text).map_err(|e| vec![Problem { line: e.span.line as u32, column: e.span.col as u32, message: e.message }])?;
    let mut r = Reader { diags: Diagnostics::default() };
    yaml::duplicate_keys(&root, |key, first, again| {
        r.diags.error(again, format!("`{key}` is given twice in one mapping (first on line {}); keep one: YAML tools disagree on which counts", first.line));
    });
    let raw = r.root(&root);
    if r.diags.has_errors() {
        return Err(r.diags.into_sorted().into_iter().map(|d| Problem { line: d.span.line as u32, column: d.span.col as u32, message: d.message }).collect());
    }
    Ok(raw)
}

struct Reader {
    diags: Diagnostics,
}

fn at<T>(value: T, node: &Node) -> Spanned<T> {
    Spanned { value, referenced: node.span.into() }
}

impl Reader {
    fn map<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [(Node, Node)]> {
        match &node.kind {
            NodeKind::Map(entries) => Some(entries),
            _ => {
                self.diags.error(node.span, format!("{what} must be a mapping of settings, not {}", node.kind_name()));
                None
            }
        }
    }

    fn text(&mut self, node: &Node, what: &str) -> Option<Spanned<String>> {
        match &node.kind {
            NodeKind::Scalar { text, .. } if !node.is_null() => Some(at(text.clone(), node)),
            _ => {
                self.diags.error(node.span, format!("{what} must be a single value, not {}", node.kind_name()));
                None
            }
        }
    }

    fn root(&mut self, node: &Node) -> Raw {
        let mut raw = Raw::default();
        if node.is_null() {
            self.diags.error(node.span, "the gateway configuration is empty: it needs at least `agreement`, `pseudonym_key` and `kafka` (see examples/gateway.yaml)");
            return raw;
        }
        let Some(entries) = self.map(node, "the gateway configuration") else { return raw };
        let known = ["agreement", "pseudonym_key", "admin", "kafka", "limits", "agreement_signatures", "audit", "log", "suppressions"];
        for (k, v) in known_keys(&mut self.diags, entries, &known, "in the gateway configuration") {
            match k {
                "agreement" => raw.agreement = self.text(v, "`agreement`"),
                "pseudonym_key" => raw.pseudonym_key = self.key(v),
                "admin" => raw.admin = self.admin(v),
                "kafka" => raw.kafka = self.kafka(v).map(|k| at(k, v)),
                "limits" => raw.limits = self.limits(v),
                "agreement_signatures" => raw.agreement_signatures = self.signatures(v).map(|s| at(s, v)),
                "audit" => raw.audit = self.audit(v).map(|a| at(a, v)),
                "suppressions" => {
                    if let Some(entries) = self.map(v, "`suppressions`") {
                        for (_, t) in known_keys(&mut self.diags, entries, &["topic"], "in `suppressions`") {
                            raw.suppressions = self.text(t, "`suppressions.topic`");
                        }
                    }
                    if raw.suppressions.is_none() && !self.diags.has_errors() {
                        self.diags.error(v.span, "`suppressions` needs a `topic`: the compacted topic `accord suppress` writes to");
                    }
                }
                _ => raw.log = self.log(v),
            }
        }
        raw
    }

    fn key(&mut self, node: &Node) -> Option<RawKey> {
        let entries = self.map(node, "`pseudonym_key`")?;
        let mut key = RawKey::default();
        for (k, v) in known_keys(&mut self.diags, entries, &["file", "id"], "in `pseudonym_key`") {
            match k {
                "file" => key.file = self.text(v, "`pseudonym_key.file`"),
                _ => key.id = self.text(v, "`pseudonym_key.id`"),
            }
        }
        Some(key)
    }

    fn admin(&mut self, node: &Node) -> Option<RawAdmin> {
        let entries = self.map(node, "`admin`")?;
        let mut address = None;
        for (_, v) in known_keys(&mut self.diags, entries, &["address"], "in `admin`") {
            address = self.text(v, "`admin.address`");
        }
        if address.is_none() && !self.diags.has_errors() {
            self.diags.error(node.span, "`admin` needs an `address`, such as `0.0.0.0:9464`");
        }
        Some(RawAdmin { address: address? })
    }

    fn audit(&mut self, node: &Node) -> Option<RawAudit> {
        let entries = self.map(node, "`audit`")?;
        let mut audit = RawAudit::default();
        for (k, v) in known_keys(&mut self.diags, entries, &["file", "key", "topic", "interval"], "in `audit`") {
            match k {
                "file" => audit.file = self.text(v, "`audit.file`"),
                "key" => audit.key = self.text(v, "`audit.key`"),
                "topic" => audit.topic = self.text(v, "`audit.topic`"),
                _ => audit.interval = self.text(v, "`audit.interval`"),
            }
        }
        Some(audit)
    }

    fn log(&mut self, node: &Node) -> Option<RawLog> {
        let entries = self.map(node, "`log`")?;
        let mut log = RawLog::default();
        for (k, v) in known_keys(&mut self.diags, entries, &["level", "format"], "in `log`") {
            match k {
                "level" => log.level = self.text(v, "`log.level`"),
                _ => log.format = self.text(v, "`log.format`"),
            }
        }
        Some(log)
    }

    fn signatures(&mut self, node: &Node) -> Option<RawSignatures> {
        let entries = self.map(node, "`agreement_signatures`")?;
        let mut sigs = RawSignatures::default();
        for (k, v) in known_keys(&mut self.diags, entries, &["required", "parties"], "in `agreement_signatures`") {
            match k {
                "required" => sigs.required = self.boolean(v, "`agreement_signatures.required`"),
                _ => {
                    for party in self.list(v, "`agreement_signatures.parties`") {
                        if let Some(p) = self.party(party) {
                            sigs.parties.push(p);
                        }
                    }
                }
            }
        }
        Some(sigs)
    }

    fn party(&mut self, node: &Node) -> Option<RawParty> {
        let entries = self.map(node, "a party under `agreement_signatures.parties`")?;
        let (mut name, mut file) = (None, None);
        for (k, v) in known_keys(&mut self.diags, entries, &["name", "public_key_file"], "in a party") {
            match k {
                "name" => name = self.text(v, "a party's `name`"),
                _ => file = self.text(v, "a party's `public_key_file`"),
            }
        }
        if name.is_none() || file.is_none() {
            self.diags.error(node.span, "each party needs a `name` and a `public_key_file`");
        }
        Some(RawParty { name: name?, public_key_file: file? })
    }

    fn list<'n>(&mut self, node: &'n Node, what: &str) -> &'n [Node] {
        match &node.kind {
            NodeKind::Seq(items) => items,
            _ => {
                self.diags.error(node.span, format!("{what} must be a list, not {}", node.kind_name()));
                &[]
            }
        }
    }

    fn boolean(&mut self, node: &Node, what: &str) -> Option<Spanned<bool>> {
        match node.as_scalar() {
            Some("true") => Some(at(true, node)),
            Some("false") => Some(at(false, node)),
            _ => {
                self.diags.error(node.span, format!("{what} must be `true` or `false`"));
                None
            }
        }
    }

    fn kafka(&mut self, node: &Node) -> Option<RawKafka> {
        let entries = self.map(node, "`kafka`")?;
        let mut kafka = RawKafka::default();
        let known = ["brokers", "group", "input", "output", "quarantine_topic", "delivery", "transactional_id", "properties", "consumer", "producer"];
        for (k, v) in known_keys(&mut self.diags, entries, &known, "in `kafka`") {
            match k {
                "brokers" => kafka.brokers = self.text(v, "`kafka.brokers`"),
                "group" => kafka.group = self.text(v, "`kafka.group`"),
                "input" => kafka.input = self.input(v).map(|i| at(i, v)),
                "output" => kafka.output = self.output(v),
                "quarantine_topic" => kafka.quarantine_topic = self.text(v, "`kafka.quarantine_topic`"),
                "delivery" => {
                    kafka.delivery = match v.as_scalar() {
                        Some("at_least_once") => Delivery::AtLeastOnce,
                        Some("exactly_once") => Delivery::ExactlyOnce,
                        _ => {
                            self.diags.error(v.span, "`kafka.delivery` must be `at_least_once` (the default) or `exactly_once`");
                            Delivery::default()
                        }
                    }
                }
                "transactional_id" => kafka.transactional_id = self.text(v, "`kafka.transactional_id`"),
                "properties" => kafka.properties = self.properties(v, "`kafka.properties`"),
                "consumer" => kafka.consumer = self.properties(v, "`kafka.consumer`"),
                _ => kafka.producer = self.properties(v, "`kafka.producer`"),
            }
        }
        Some(kafka)
    }

    fn format(&mut self, node: &Node, what: &str) -> Format {
        match node.as_scalar().map(str::parse::<Format>) {
            Some(Ok(f)) => f,
            _ => {
                self.diags.error(node.span, format!("{what} must be one of {}", Format::NAMES.join(", ")));
                Format::default()
            }
        }
    }

    fn framing(&mut self, node: &Node, what: &str) -> Framing {
        match node.as_scalar().map(str::parse::<Framing>) {
            Some(Ok(f)) => f,
            _ => {
                self.diags.error(node.span, format!("{what} must be one of {}", Framing::NAMES.join(", ")));
                Framing::default()
            }
        }
    }

    fn input(&mut self, node: &Node) -> Option<RawInput> {
        let entries = self.map(node, "`kafka.input`")?;
        let (mut topics, mut format, mut framing) = (None, Format::default(), Framing::default());
        for (k, v) in known_keys(&mut self.diags, entries, &["topics", "format", "framing"], "in `kafka.input`") {
            match k {
                "topics" => {
                    let items = self.list(v, "`kafka.input.topics`");
                    let names = items.iter().filter_map(|t| self.text(t, "an input topic")).collect();
                    topics = Some(at(names, v));
                }
                "framing" => framing = self.framing(v, "`kafka.input.framing`"),
                _ => format = self.format(v, "`kafka.input.format`"),
            }
        }
        if topics.is_none() {
            self.diags.error(node.span, "`kafka.input` needs `topics`: the topics to read");
        }
        Some(RawInput { topics: topics?, format, framing })
    }

    fn output(&mut self, node: &Node) -> RawOutput {
        let mut output = RawOutput::default();
        let Some(entries) = self.map(node, "`kafka.output`") else { return output };
        for (k, v) in known_keys(&mut self.diags, entries, &["format", "framing", "schema_id"], "in `kafka.output`") {
            match k {
                "framing" => output.framing = self.framing(v, "`kafka.output.framing`"),
                "schema_id" => match v.as_scalar().map(str::parse::<u32>) {
                    Some(Ok(n)) => output.schema_id = Some(at(n, v)),
                    _ => self.diags.error(v.span, "`kafka.output.schema_id` must be a schema id (a whole number)"),
                },
                _ => output.format = self.format(v, "`kafka.output.format`"),
            }
        }
        output
    }

    fn limits(&mut self, node: &Node) -> Option<RawLimits> {
        let entries = self.map(node, "`limits`")?;
        let mut limits = RawLimits::default();
        for (k, v) in known_keys(&mut self.diags, entries, &["max_in_flight", "commit_interval", "drain_timeout", "stuck_after", "threads"], "in `limits`") {
            match k {
                "max_in_flight" => match v.as_scalar().map(str::parse::<u64>) {
                    Some(Ok(n)) => limits.max_in_flight = Some(at(n, v)),
                    _ => self.diags.error(v.span, "`limits.max_in_flight` must be a whole number of outputs"),
                },
                "threads" => match v.as_scalar().map(str::parse::<u64>) {
                    Some(Ok(n)) => limits.threads = Some(at(n, v)),
                    _ => self.diags.error(v.span, "`limits.threads` must be a whole number of threads"),
                },
                "commit_interval" => limits.commit_interval = self.text(v, "`limits.commit_interval`"),
                "stuck_after" => limits.stuck_after = self.text(v, "`limits.stuck_after`"),
                _ => limits.drain_timeout = self.text(v, "`limits.drain_timeout`"),
            }
        }
        Some(limits)
    }

    fn properties(&mut self, node: &Node, what: &str) -> Properties {
        let mut out = Properties::default();
        let Some(entries) = self.map(node, what) else { return out };
        for (k, v) in entries {
            let (Some(key), Some(value)) = (self.text(k, &format!("a property name in {what}")), self.text(v, &format!("a property value in {what}"))) else { continue };
            if out.0.iter().any(|(seen, _)| seen.value == key.value) {
                continue; // reported by `yaml::duplicate_keys`
            }
            out.0.push((key, value));
        }
        out
    }
}
