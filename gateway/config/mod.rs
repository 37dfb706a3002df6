//! The gateway's runtime configuration: the YAML file behind `accord run --config`.
//!
//! Like the agreement, it is read in two stages. [`Raw`] is the file as the platform
//! team wrote it (every value with its line and column, unknown keys refused); [`Config`]
//! is what the gateway runs with, after environment overrides, defaults and checks.
//! Every problem is collected and reported at once as `FILE:LINE:COL: what is wrong`.
//!
//! Paths and secrets can come from the environment, as Kubernetes hands them over:
//! `ACCORD_AGREEMENT`, `ACCORD_KEY_FILE`, `ACCORD_KEY_ID` and `ACCORD_KAFKA_BROKERS`
//! override the file, and a librdkafka property value written `${NAME}` is read from
//! the environment variable `NAME` (for `sasl.password` and the like). A property value
//! never appears in an error.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use crate::event::Format;

/// How outputs and input offsets are tied together (SPEC 4, "Delivery").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// An input offset is committed only once every output of it and of every earlier
    /// record of its partition is acknowledged. After a crash some outputs may be
    /// written twice; none is lost.
    #[default]
    AtLeastOnce,
    /// Outputs and input offsets are committed in one Kafka transaction: a
    /// `read_committed` reader sees each output once, across crashes.
    ExactlyOnce,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::AtLeastOnce => "at_least_once",
            Delivery::ExactlyOnce => "exactly_once",
        }
    }
}

/// The configuration the gateway runs with.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the configuration was read from (for messages).
    pub source: String,
    /// The agreement to enforce.
    pub agreement: PathBuf,
    /// The file whose bytes are the pseudonym key, and the key's public id.
    pub key_file: PathBuf,
    pub key_id: String,
    /// The admin (metrics and health) address.
    pub admin: Option<SocketAddr>,
    pub kafka: Kafka,
    /// Parties whose signature the agreement must carry (name, public key file); empty
    /// when signatures are not required.
    pub required_signatures: Vec<(String, PathBuf)>,
    /// The log's level (a `tracing` filter such as `info`) and format; the environment
    /// (`ACCORD_LOG`, `ACCORD_LOG_FORMAT`) wins.
    pub log_level: Option<String>,
    pub log_format: Option<crate::report::log::LogFormat>,
    /// The audit trail (`audit:`); the command line's `--audit` wins over its file.
    pub audit: Audit,
}

/// Where the audit trail goes in Kafka mode.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Audit {
    /// The trail's file: the source of truth.
    pub file: Option<PathBuf>,
    /// A topic (of one partition) that receives a copy of every record.
    pub topic: Option<String>,
    /// Between two counters records.
    pub interval: Option<Duration>,
}

/// The Kafka side of the gateway.
#[derive(Clone, Debug)]
pub struct Kafka {
    pub brokers: String,
    pub group: String,
    pub topics: Vec<String>,
    pub input_format: Format,
    pub output_format: Format,
    /// Inputs in the Confluent Schema Registry wire format.
    pub input_framing: crate::event::wire::Framing,
    /// Outputs in the Confluent wire format, carrying this schema id (`output.schema_id`).
    pub output_schema_id: Option<u32>,
    pub quarantine_topic: String,
    pub delivery: Delivery,
    /// `exactly_once` only: the producer's `transactional.id`.
    pub transactional_id: Option<String>,
    /// librdkafka properties for the consumer and the producer, as the user wrote
    /// them (`properties` first, then `consumer` or `producer`), environment resolved.
    pub consumer: Vec<(String, Secret)>,
    pub producer: Vec<(String, Secret)>,
    pub limits: Limits,
}

/// Bounds on the work in flight and on the time spent draining it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Outputs sent but not yet acknowledged; above it the consumer pauses.
    pub max_in_flight: usize,
    /// How often done offsets are committed (at-least-once) or a transaction is
    /// committed (exactly-once).
    pub commit_interval: Duration,
    /// How long a revoke or a shutdown waits for outstanding deliveries.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_in_flight: 100_000, commit_interval: Duration::from_secs(1), drain_timeout: Duration::from_secs(20) }
    }
}

/// A librdkafka property value: it may be a password, so it is never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the gateway configuration {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", Problems(.path, .problems))]
    Invalid { path: String, problems: Vec<Problem> },
}

/// One problem, at its place in the file (line 0 when it has none, e.g. a missing
/// environment variable for a setting the file leaves out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub line: u32,
    pub column: u32,
    pub message: String,
}

struct Problems<'a>(&'a String, &'a Vec<Problem>);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.1.len();
        write!(f, "the gateway configuration {} has {n} problem{}", self.0, if n == 1 { "" } else { "s" })?;
        for p in self.1 {
            if p.line == 0 {
                write!(f, "\n  {}: {}", self.0, p.message)?;
            } else {
                write!(f, "\n  {}:{}:{}: {}", self.0, p.line, p.column, p.message)?;
            }
        }
        Ok(())
    }
}

// ----------------------------------------------------------------- the file --

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    agreement: Option<Spanned<String>>,
    pseudonym_key: Option<RawKey>,
    admin: Option<RawAdmin>,
    kafka: Option<Spanned<RawKafka>>,
    limits: Option<RawLimits>,
    agreement_signatures: Option<Spanned<RawSignatures>>,
    audit: Option<Spanned<RawAudit>>,
    log: Option<RawLog>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    file: Option<Spanned<String>>,
    topic: Option<Spanned<String>>,
    interval: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: Option<Spanned<String>>,
    format: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSignatures {
    required: Option<Spanned<bool>>,
    #[serde(default)]
    parties: Vec<RawParty>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParty {
    name: Spanned<String>,
    public_key_file: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    file: Option<Spanned<String>>,
    id: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    address: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKafka {
    brokers: Option<Spanned<String>>,
    group: Option<Spanned<String>>,
    input: Option<Spanned<RawInput>>,
    #[serde(default)]
    output: RawOutput,
    quarantine_topic: Option<Spanned<String>>,
    #[serde(default)]
    delivery: Delivery,
    transactional_id: Option<Spanned<String>>,
    #[serde(default)]
    properties: Properties,
    #[serde(default)]
    consumer: Properties,
    #[serde(default)]
    producer: Properties,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInput {
    topics: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    format: Format,
    #[serde(default)]
    framing: crate::event::wire::Framing,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    #[serde(default)]
    format: Format,
    #[serde(default)]
    framing: crate::event::wire::Framing,
    /// The id of the EnforcedEvent schema (of this format) in the registry the
    /// outputs' readers use; required with `framing: confluent`.
    schema_id: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_in_flight: Option<Spanned<u64>>,
    commit_interval: Option<Spanned<String>>,
    drain_timeout: Option<Spanned<String>>,
}

/// A map of librdkafka properties, in file order, keys and values with their place.
/// Numbers and booleans are taken as the text librdkafka expects.
#[derive(Debug, Default)]
struct Properties(Vec<(Spanned<String>, Spanned<String>)>);

impl<'de> Deserialize<'de> for Properties {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Properties;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of librdkafka properties (name: value)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Properties, A::Error> {
                let mut v = Vec::new();
                while let Some(entry) = map.next_entry::<Spanned<String>, Spanned<String>>()? {
                    v.push(entry);
                }
                Ok(Properties(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// Properties the gateway sets itself: changing them would break its guarantees.
const RESERVED: &[(&str, &str)] = &[
    ("bootstrap.servers", "set `kafka.brokers` instead"),
    ("metadata.broker.list", "set `kafka.brokers` instead"),
    ("group.id", "set `kafka.group` instead"),
    ("transactional.id", "set `kafka.transactional_id` instead"),
    ("enable.auto.offset.store", "Accord stores an offset only once its outputs are acknowledged"),
    ("enable.auto.commit", "Accord decides when offsets are committed"),
];

/// Properties that `exactly_once` needs as they are.
const RESERVED_EXACTLY_ONCE: &[(&str, &str)] = &[
    ("enable.idempotence", "exactly-once needs the idempotent producer"),
    ("isolation.level", "exactly-once reads its input `read_committed`"),
];

// ------------------------------------------------------------------ loading --

impl Config {
    /// Reads and checks a configuration file, with overrides from the process
    /// environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: display.clone(), source })?;
        Config::parse(&text, &display, |name| std::env::var(name).ok())
    }

    /// Checks a configuration given as text; `env` looks up environment variables.
    pub fn parse(text: &str, source: &str, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let invalid = |problems| ConfigError::Invalid { path: source.to_string(), problems };
        let raw: Raw = serde_saphyr::from_str(text).map_err(|e| invalid(vec![yaml_problem(&e)]))?;
        let mut p = Vec::new();
        let config = compile(raw, source, &env, &mut p);
        match config {
            Some(c) if p.is_empty() => Ok(c),
            _ => Err(invalid(p)),
        }
    }

    /// The default `transactional.id` for exactly-once: stable across restarts of the
    /// same replica (a StatefulSet pod keeps its name), so that a restarted gateway
    /// fences its predecessor and aborts its open transaction at once.
    pub fn default_transactional_id(group: &str) -> String {
        let host = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_string()))
            .unwrap_or_else(|| "accord".to_string());
        format!("accord-{group}-{host}")
    }
}

fn at(l: &Location) -> (u32, u32) {
    (l.line() as u32, l.column() as u32)
}

fn problem(p: &mut Vec<Problem>, l: &Location, message: impl Into<String>) {
    let (line, column) = at(l);
    p.push(Problem { line, column, message: message.into() });
}

fn yaml_problem(e: &serde_saphyr::Error) -> Problem {
    let e = e.without_snippet();
    let (line, column) = e.location().map(|l| at(&l)).unwrap_or((0, 0));
    let mut message = e.to_string();
    // serde-saphyr ends its messages with " at line L, column C"; we lead with it.
    if let Some(i) = message.rfind(" at line ") {
        message.truncate(i);
    }
    Problem { line, column, message }
}

/// Picks a setting from the environment, else from the file.
fn setting(env: &impl Fn(&str) -> Option<String>, var: &str, file: Option<&Spanned<String>>) -> Option<(String, Option<Location>)> {
    match env(var).filter(|v| !v.is_empty()) {
        Some(v) => Some((v, None)),
        None => file.map(|s| (s.value.clone(), Some(s.referenced))),
    }
}

fn compile(raw: Raw, source: &str, env: &impl Fn(&str) -> Option<String>, p: &mut Vec<Problem>) -> Option<Config> {
    let missing = |p: &mut Vec<Problem>, what: &str, var: &str| {
        p.push(Problem { line: 0, column: 0, message: format!("no {what}: set it in the file or in the environment variable {var}") })
    };
    let agreement = setting(env, "ACCORD_AGREEMENT", raw.agreement.as_ref());
    if agreement.is_none() {
        missing(p, "`agreement` (the agreement file)", "ACCORD_AGREEMENT");
    }
    let key = raw.pseudonym_key.as_ref();
    let key_file = setting(env, "ACCORD_KEY_FILE", key.and_then(|k| k.file.as_ref()));
    if key_file.is_none() {
        missing(p, "`pseudonym_key.file` (the pseudonym key file)", "ACCORD_KEY_FILE");
    }
    let key_id = setting(env, "ACCORD_KEY_ID", key.and_then(|k| k.id.as_ref()));
    match &key_id {
        None => missing(p, "`pseudonym_key.id` (the key's public id)", "ACCORD_KEY_ID"),
        Some((id, l)) => {
            if !accord_core::valid::key_id(id) {
                let message = "`pseudonym_key.id` must be 1 to 64 letters, digits, `.`, `_` or `-`";
                match l {
                    Some(l) => problem(p, l, message),
                    None => p.push(Problem { line: 0, column: 0, message: format!("{message} (from ACCORD_KEY_ID)") }),
                }
            }
        }
    }
    let admin = raw.admin.as_ref().and_then(|a| match a.address.value.parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            problem(p, &a.address.referenced, "`admin.address` must be an IP address and port, such as `0.0.0.0:9464`");
            None
        }
    });
    let limits = compile_limits(raw.limits.as_ref(), p);
    let kafka = match raw.kafka {
        Some(k) => compile_kafka(k, env, limits, p),
        None => {
            p.push(Problem { line: 0, column: 0, message: "no `kafka` section: the gateway needs brokers, a group and input topics".into() });
            None
        }
    };
    let mut required_signatures = Vec::new();
    if let Some(sigs) = &raw.agreement_signatures {
        if sigs.value.required.as_ref().is_none_or(|r| r.value) {
            if sigs.value.parties.is_empty() {
                problem(p, &sigs.referenced, "`agreement_signatures` requires signatures but names no `parties`; list each party's `name` and `public_key_file`");
            }
            required_signatures = sigs.value.parties.iter().map(|party| (party.name.value.clone(), PathBuf::from(&party.public_key_file.value))).collect();
        }
    }
    let log_level = raw.log.as_ref().and_then(|l| l.level.as_ref()).and_then(|l| {
        if tracing_subscriber::EnvFilter::try_new(&l.value).is_ok() {
            Some(l.value.clone())
        } else {
            problem(p, &l.referenced, "`log.level` must be a level such as `info` or `debug`, or a filter such as `accord=debug`");
            None
        }
    });
    let log_format = raw.log.as_ref().and_then(|l| l.format.as_ref()).and_then(|f| match f.value.as_str() {
        "json" => Some(crate::report::log::LogFormat::Json),
        "text" => Some(crate::report::log::LogFormat::Text),
        _ => {
            problem(p, &f.referenced, "`log.format` must be `json` or `text`");
            None
        }
    });
    Some(Config {
        source: source.to_string(),
        agreement: PathBuf::from(agreement?.0),
        key_file: PathBuf::from(key_file?.0),
        key_id: key_id?.0,
        admin,
        audit: compile_audit(raw.audit.as_ref(), kafka.as_ref(), p),
        kafka: kafka?,
        required_signatures,
        log_level,
        log_format,
    })
}

fn compile_audit(raw: Option<&Spanned<RawAudit>>, kafka: Option<&Kafka>, p: &mut Vec<Problem>) -> Audit {
    let mut audit = Audit::default();
    let Some(raw) = raw else { return audit };
    if let Some(f) = &raw.value.file {
        if f.value.trim().is_empty() {
            problem(p, &f.referenced, "`audit.file` is empty: name the trail's file");
        } else {
            audit.file = Some(PathBuf::from(&f.value));
        }
    }
    if let Some(t) = &raw.value.topic {
        if !accord_core::valid::topic(&t.value) {
            problem(p, &t.referenced, format!("`{}` is not a Kafka topic name (1 to 249 of a-z, A-Z, 0-9, `.`, `_`, `-`)", t.value));
        } else if kafka.is_some_and(|k| k.topics.contains(&t.value)) {
            problem(p, &t.referenced, "the audit topic is also an input topic; audit records would be read back as events");
        } else if kafka.is_some_and(|k| k.quarantine_topic == t.value) {
            problem(p, &t.referenced, "the audit topic is also the quarantine topic; give the trail a topic of its own");
        } else if raw.value.file.is_none() {
            problem(p, &t.referenced, "`audit.topic` receives a copy of the trail's file: set `audit.file` too (the file is the source of truth)");
        } else {
            audit.topic = Some(t.value.clone());
        }
    }
    if let Some(i) = &raw.value.interval {
        match accord_core::time::parse_duration(&i.value) {
            Some(d) if d >= Duration::from_secs(1) && d <= Duration::from_secs(86_400) => audit.interval = Some(d),
            _ => problem(p, &i.referenced, "`audit.interval` must be a duration from 1s to 24h, such as `60s` or `15m`"),
        }
    }
    audit
}

fn compile_limits(raw: Option<&RawLimits>, p: &mut Vec<Problem>) -> Limits {
    let mut limits = Limits::default();
    let Some(raw) = raw else { return limits };
    if let Some(n) = &raw.max_in_flight {
        if n.value == 0 || n.value > 10_000_000 {
            problem(p, &n.referenced, "`limits.max_in_flight` must be between 1 and 10000000 outputs");
        } else {
            limits.max_in_flight = n.value as usize;
        }
    }
    for (field, raw, into) in [
        ("commit_interval", &raw.commit_interval, &mut limits.commit_interval),
        ("drain_timeout", &raw.drain_timeout, &mut limits.drain_timeout),
    ] {
        if let Some(s) = raw {
            match accord_core::time::parse_duration(&s.value) {
                Some(d) if !d.is_zero() && d <= Duration::from_secs(3600) => *into = d,
                _ => problem(p, &s.referenced, format!("`limits.{field}` must be a duration from 1ms to 1h, such as `500ms`, `5s` or `1m`")),
            }
        }
    }
    limits
}




fn compile_kafka(raw: Spanned<RawKafka>, env: &impl Fn(&str) -> Option<String>, limits: Limits, p: &mut Vec<Problem>) -> Option<Kafka> {
    let section = raw.referenced;
    let raw = raw.value;
    let required = |p: &mut Vec<Problem>, what: &str| problem(p, &section, format!("the `kafka` section needs `{what}`"));

    let brokers = setting(env, "ACCORD_KAFKA_BROKERS", raw.brokers.as_ref()).map(|b| b.0);
    if brokers.as_deref().is_none_or(|b| b.trim().is_empty()) {
        match &raw.brokers {
            Some(b) => problem(p, &b.referenced, "`kafka.brokers` is empty: list the bootstrap brokers as `host:port,host:port`"),
            None => required(p, "brokers` (or the environment variable ACCORD_KAFKA_BROKERS"),
        }
    }
    let group = raw.group.as_ref().map(|g| g.value.clone());
    match &raw.group {
        None => required(p, "group"),
        Some(g) if g.value.trim().is_empty() => problem(p, &g.referenced, "`kafka.group` (the consumer group) is empty"),
        Some(_) => {}
    }
    let mut topics = Vec::new();
    let mut input_format = Format::Json;
    let mut input_framing = crate::event::wire::Framing::Plain;
    match &raw.input {
        None => required(p, "input` (with `topics"),
        Some(input) => {
            input_format = input.value.format;
            input_framing = input.value.framing;
            if input.value.topics.value.is_empty() {
                problem(p, &input.value.topics.referenced, "`kafka.input.topics` is empty: name at least one topic to read");
            }
            for t in &input.value.topics.value {
                if !accord_core::valid::topic(&t.value) {
                    problem(p, &t.referenced, format!("`{}` is not a Kafka topic name (1 to 249 of a-z, A-Z, 0-9, `.`, `_`, `-`)", t.value));
                } else if topics.contains(&t.value) {
                    problem(p, &t.referenced, format!("the input topic `{}` is listed twice", t.value));
                } else {
                    topics.push(t.value.clone());
                }
            }
        }
    }
    let quarantine_topic = match &raw.quarantine_topic {
        None => {
            required(p, "quarantine_topic");
            None
        }
        Some(q) if !accord_core::valid::topic(&q.value) => {
            problem(p, &q.referenced, format!("`{}` is not a Kafka topic name (1 to 249 of a-z, A-Z, 0-9, `.`, `_`, `-`)", q.value));
            None
        }
        Some(q) if topics.contains(&q.value) => {
            problem(p, &q.referenced, "the quarantine topic is also an input topic; quarantine notes would be read back as events");
            None
        }
        Some(q) => Some(q.value.clone()),
    };
    let transactional_id = match (&raw.transactional_id, raw.delivery) {
        (Some(t), Delivery::AtLeastOnce) => {
            problem(p, &t.referenced, "`kafka.transactional_id` is only used with `delivery: exactly_once`");
            None
        }
        (Some(t), Delivery::ExactlyOnce) if t.value.trim().is_empty() => {
            problem(p, &t.referenced, "`kafka.transactional_id` is empty");
            None
        }
        (Some(t), Delivery::ExactlyOnce) => Some(t.value.clone()),
        (None, Delivery::ExactlyOnce) => group.as_deref().map(Config::default_transactional_id),
        (None, Delivery::AtLeastOnce) => None,
    };
    let output_schema_id = match (raw.output.framing, &raw.output.schema_id) {
        (crate::event::wire::Framing::Confluent, Some(id)) => Some(id.value),
        (crate::event::wire::Framing::Confluent, None) => {
            problem(p, &section, "`kafka.output.framing: confluent` needs `kafka.output.schema_id`: the id under which your Schema Registry holds Accord's EnforcedEvent schema of this format");
            None
        }
        (crate::event::wire::Framing::Plain, Some(id)) => {
            problem(p, &id.referenced, "`kafka.output.schema_id` is only for `framing: confluent`");
            None
        }
        (crate::event::wire::Framing::Plain, None) => None,
    };
    let common = properties(&raw.properties, "properties", raw.delivery, env, p);
    let mut consumer = common.clone();
    consumer.extend(properties(&raw.consumer, "consumer", raw.delivery, env, p));
    let mut producer = common;
    producer.extend(properties(&raw.producer, "producer", raw.delivery, env, p));

    Some(Kafka {
        brokers: brokers?,
        group: group?,
        topics,
        input_format,
        output_format: raw.output.format,
        input_framing,
        output_schema_id,
        quarantine_topic: quarantine_topic?,
        delivery: raw.delivery,
        transactional_id,
        consumer,
        producer,
        limits,
    })
}

/// Checks one map of librdkafka properties: not reserved, known to librdkafka, with
/// a value it takes; `${NAME}` values read from the environment.
fn properties(raw: &Properties, section: &str, delivery: Delivery, env: &impl Fn(&str) -> Option<String>, p: &mut Vec<Problem>) -> Vec<(String, Secret)> {
    let mut out = Vec::new();
    for (key, value) in &raw.0 {
        let name = key.value.trim();
        let reserved = RESERVED
            .iter()
            .chain(if delivery == Delivery::ExactlyOnce { RESERVED_EXACTLY_ONCE } else { &[] })
            .find(|(r, _)| *r == name);
        if let Some((_, why)) = reserved {
            problem(p, &key.referenced, format!("`kafka.{section}` cannot set `{name}`: {why}"));
            continue;
        }
        let resolved = match expand_env(&value.value, env) {
            Ok(v) => v,
            Err(var) => {
                problem(p, &value.referenced, format!("`{name}` refers to the environment variable {var}, which is not set"));
                continue;
            }
        };
        // librdkafka checks the name and the value; its message may quote the value.
        if let Err(e) = rdkafka::ClientConfig::new().set(name, &resolved).create_native_config() {
            let mut message = e.to_string();
            if !resolved.is_empty() {
                message = message.replace(&resolved, "<value>");
            }
            problem(p, &key.referenced, format!("`kafka.{section}`: librdkafka does not accept `{name}`: {message}"));
            continue;
        }
        out.push((name.to_string(), Secret(resolved)));
    }
    out
}

/// Replaces each `${NAME}` with the environment variable `NAME`; `Err(NAME)` if unset.
fn expand_env(value: &str, env: &impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start + 2..].find('}') else { break };
        let name = &rest[start + 2..start + 2 + len];
        out.push_str(&rest[..start]);
        out.push_str(&env(name).ok_or_else(|| name.to_string())?);
        rest = &rest[start + 3 + len..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
agreement: /etc/accord/agreement.yaml
pseudonym_key:
  file: /var/run/secrets/accord/key
  id: k2026
kafka:
  brokers: kafka:9092
  group: accord
  input:
    topics: [sensors.raw]
  quarantine_topic: accord.quarantine
  properties:
    security.protocol: sasl_ssl
    sasl.mechanisms: PLAIN
    sasl.username: accord
    sasl.password: ${KAFKA_PASSWORD}
  producer:
    linger.ms: 10
";

    fn env(name: &str) -> Option<String> {
        match name {
            "KAFKA_PASSWORD" => Some("hunter2-very-secret".into()),
            _ => None,
        }
    }

    fn problems(text: &str) -> Vec<Problem> {
        match Config::parse(text, "gw.yaml", env) {
            Ok(c) => panic!("expected problems, got {c:?}"),
            Err(ConfigError::Invalid { problems, .. }) => problems,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn the_log_section_is_checked_at_its_line() {
        let c = Config::parse(&format!("{GOOD}log:\n  level: debug\n  format: text\n"), "gw.yaml", env).unwrap();
        assert_eq!(c.log_level.as_deref(), Some("debug"));
        assert_eq!(c.log_format, Some(crate::report::log::LogFormat::Text));
        let bad = Config::parse(&format!("{GOOD}log:\n  format: xml\n"), "gw.yaml", env).unwrap_err().to_string();
        let line = GOOD.lines().count() + 2;
        assert!(bad.contains(&format!("gw.yaml:{line}:")) && bad.contains("`log.format` must be `json` or `text`"), "{bad}");
    }

    #[test]
    fn a_good_file_compiles_with_defaults() {
        let c = Config::parse(GOOD, "gw.yaml", env).unwrap();
        assert_eq!(c.agreement, PathBuf::from("/etc/accord/agreement.yaml"));
        assert_eq!(c.kafka.delivery, Delivery::AtLeastOnce);
        assert_eq!(c.kafka.input_format, Format::Json);
        assert_eq!(c.kafka.topics, ["sensors.raw"]);
        assert_eq!(c.kafka.limits, Limits::default());
        let password = c.kafka.consumer.iter().find(|(k, _)| k == "sasl.password").unwrap();
        assert_eq!(password.1.expose(), "hunter2-very-secret");
        assert!(c.kafka.producer.iter().any(|(k, v)| k == "linger.ms" && v.expose() == "10"));
        assert!(!c.kafka.consumer.iter().any(|(k, _)| k == "linger.ms"));
        assert!(!format!("{c:?}").contains("hunter2"), "a secret in Debug output");
    }

    #[test]
    fn unknown_keys_are_reported_at_their_line() {
        let p = problems(&GOOD.replace("  group: accord\n", "  group: accord\n  grup: x\n"));
        assert_eq!((p[0].line, p[0].column), (8, 3), "{p:?}");
        assert!(p[0].message.contains("unknown field `grup`"), "{p:?}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = GOOD
            .replace("[sensors.raw]", "[sensors.raw, \"bad topic\"]")
            .replace("    linger.ms: 10\n", "    linger.ms: 10\n    enable.auto.offset.store: true\n    no.such.property: 1\n")
            .replace("accord.quarantine", "sensors.raw");
        let p = problems(&text);
        let text = ConfigError::Invalid { path: "gw.yaml".into(), problems: p.clone() }.to_string();
        assert_eq!(p.len(), 4, "{text}");
        assert!(text.contains("gw.yaml:9:27: `bad topic` is not a Kafka topic name"), "{text}");
        assert!(text.contains("gw.yaml:10:21: the quarantine topic is also an input topic"), "{text}");
        assert!(text.contains("gw.yaml:18:5: `kafka.producer` cannot set `enable.auto.offset.store`"), "{text}");
        assert!(text.contains("gw.yaml:19:5: `kafka.producer`: librdkafka does not accept `no.such.property`"), "{text}");
    }

    #[test]
    fn paths_and_secrets_come_from_the_environment() {
        let text = "kafka:\n  group: g\n  input: { topics: [a] }\n  quarantine_topic: q\n";
        let env = |name: &str| match name {
            "ACCORD_AGREEMENT" => Some("/a.yaml".to_string()),
            "ACCORD_KEY_FILE" => Some("/k".to_string()),
            "ACCORD_KEY_ID" => Some("k1".to_string()),
            "ACCORD_KAFKA_BROKERS" => Some("b:9092".to_string()),
            other => super::tests::env(other),
        };
        let c = Config::parse(text, "gw.yaml", env).unwrap();
        assert_eq!((c.agreement.to_str(), c.key_file.to_str(), c.key_id.as_str()), (Some("/a.yaml"), Some("/k"), "k1"));
        assert_eq!(c.kafka.brokers, "b:9092");
        // The environment wins over the file.
        let c = Config::parse(GOOD, "gw.yaml", |n| if n == "ACCORD_AGREEMENT" { Some("/other.yaml".into()) } else { env(n) }).unwrap();
        assert_eq!(c.agreement, PathBuf::from("/other.yaml"));
    }

    #[test]
    fn a_missing_secret_is_named_but_never_shown() {
        let p = problems(&GOOD.replace("${KAFKA_PASSWORD}", "${NOPE}"));
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].line, p[0].column), (15, 20));
        assert!(p[0].message.contains("NOPE"));
        let p = problems(&GOOD.replace("security.protocol: sasl_ssl", "security.protocol: ${KAFKA_PASSWORD}"));
        assert!(!p[0].message.contains("hunter2"), "{p:?}");
    }

    #[test]
    fn exactly_once_gets_a_transactional_id_and_keeps_its_properties() {
        let c = Config::parse(&GOOD.replace("  group: accord\n", "  group: accord\n  delivery: exactly_once\n"), "gw.yaml", env).unwrap();
        assert_eq!(c.kafka.delivery, Delivery::ExactlyOnce);
        assert!(c.kafka.transactional_id.unwrap().starts_with("accord-accord-"));
        let p = problems(&GOOD.replace("  group: accord\n", "  group: accord\n  delivery: exactly_once\n").replace("linger.ms: 10", "enable.idempotence: false"));
        assert!(p[0].message.contains("exactly-once needs the idempotent producer"), "{p:?}");
        let p = problems(&GOOD.replace("  group: accord\n", "  group: accord\n  transactional_id: x\n"));
        assert!(p[0].message.contains("only used with `delivery: exactly_once`"), "{p:?}");
    }

    #[test]
    fn the_example_configuration_checks() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/gateway.yaml")).unwrap();
        let c = Config::parse(&text, "examples/gateway.yaml", |_| None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.kafka.topics, ["sensors.raw"]);
        assert_eq!(c.kafka.delivery, Delivery::AtLeastOnce);
        assert_eq!(c.kafka.limits, Limits::default(), "the example shows the defaults");
        assert!(c.admin.is_some());
    }

    #[test]
    fn limits() {
        let c = Config::parse(&format!("{GOOD}limits:\n  max_in_flight: 500\n  drain_timeout: 5s\n"), "gw.yaml", env).unwrap();
        assert_eq!(c.kafka.limits.max_in_flight, 500);
        assert_eq!(c.kafka.limits.drain_timeout, Duration::from_secs(5));
        let p = problems(&format!("{GOOD}limits:\n  commit_interval: soon\n"));
        assert_eq!(p[0].line, 19);
    }

    #[test]
    fn the_audit_section_names_a_file_and_a_topic_for_its_copy() {
        let c = Config::parse(&format!("{GOOD}audit:\n  file: /var/lib/accord/audit.jsonl\n  topic: accord.audit\n  interval: 30s\n"), "gw.yaml", env).unwrap();
        assert_eq!(
            c.audit,
            Audit { file: Some("/var/lib/accord/audit.jsonl".into()), topic: Some("accord.audit".into()), interval: Some(Duration::from_secs(30)) }
        );
        assert_eq!(Config::parse(GOOD, "gw.yaml", env).unwrap().audit, Audit::default());
        let p = problems(&format!("{GOOD}audit:\n  topic: accord.audit\n"));
        assert_eq!((p[0].line, p[0].column), (19, 10), "{p:?}");
        assert!(p[0].message.contains("set `audit.file` too"), "{p:?}");
        let p = problems(&format!("{GOOD}audit:\n  file: a.jsonl\n  topic: sensors.raw\n  interval: 1ms\n  tpoic: x\n"));
        assert!(p[0].message.contains("unknown field `tpoic`"), "{p:?}");
        let p = problems(&format!("{GOOD}audit:\n  file: a.jsonl\n  topic: sensors.raw\n  interval: 1ms\n"));
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].message.contains("also an input topic") && p[0].line == 20, "{p:?}");
        assert!(p[1].message.contains("`audit.interval` must be") && p[1].line == 21, "{p:?}");
    }
}
