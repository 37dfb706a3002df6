//! The gateway's runtime configuration: the YAML file behind `accord run --config`.
//!
//! Like the agreement, it is read in two stages, with the agreement's own positioned
//! YAML reader. [`raw`] is the file as the platform team wrote it (every value with its
//! line and column, unknown and repeated keys refused); [`Config`] is what the gateway
//! runs with, after environment overrides, defaults and checks. Every problem of both
//! stages is collected and reported at once as `FILE:LINE:COL: what is wrong`.
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

mod compile;
mod raw;

use raw::Raw;

use crate::event::Format;

/// How outputs and input offsets are tied together (SPEC 4, "Delivery").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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
    /// The compacted topic of workers' suppressions (`suppressions.topic`, SPEC 2.7).
    pub suppressions_topic: Option<String>,
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
    /// The audit key's private file (`accord keygen --audit`): signs the trail's
    /// checkpoints. None: the trail gets no checkpoints and never verifies as closed.
    pub key: Option<PathBuf>,
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
    /// committed (exactly-once). Unless set: [`Limits::COMMIT_INTERVAL`], or
    /// [`Limits::TRANSACTION_INTERVAL`] with exactly-once.
    pub commit_interval: Duration,
    /// How long a revoke or a shutdown waits for outstanding deliveries.
    pub drain_timeout: Duration,
    /// How long an output's delivery (at-least-once), or the commit of the consumed
    /// offsets or of the transaction, may keep failing (retried all the while), or the
    /// consumer stay out of its group, before `/healthz` fails, so that the gateway is
    /// restarted with new clients; a success, or a restart, ends it.
    pub stuck_after: Duration,
    /// Threads that enforce records in Kafka mode (the consumer loop's own thread is
    /// one of them). Unless set: the cores available to the process
    /// ([`std::thread::available_parallelism`], which heeds a container's CPU quota).
    pub threads: usize,
}

impl Limits {
    /// At-least-once: what a crash can make the gateway produce again is about this
    /// long of throughput plus the outputs in flight. Measured with `kafka_e2e --crashes`
    /// (docs/kafka.md): 100 ms halved the duplicates per crash against 1 s, at no cost
    /// in throughput; a smaller `max_in_flight` cost a quarter of it.
    pub const COMMIT_INTERVAL: Duration = Duration::from_millis(100);
    /// Exactly-once: each commit ends a transaction (a round trip on the loop).
    pub const TRANSACTION_INTERVAL: Duration = Duration::from_secs(1);
    /// The most `limits.threads` a configuration may ask for.
    pub const MAX_THREADS: usize = 256;

    /// The default `limits.threads`: the cores this process may use.
    pub fn available_threads() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get()).min(Limits::MAX_THREADS)
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_in_flight: 100_000, commit_interval: Limits::COMMIT_INTERVAL, drain_timeout: Duration::from_secs(20), stuck_after: Duration::from_secs(300), threads: Limits::available_threads() }
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
    #[error(transparent)]
    WrongKind(crate::filekind::WrongKind),
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

// ------------------------------------------------------------------ loading --

impl Config {
    /// Reads and checks a configuration file, with overrides from the process
    /// environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let display = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Read { path: display.clone(), source })?;
        let parsed = match std::str::from_utf8(&bytes) {
            Ok(text) => Config::parse(text, &display, |name| std::env::var(name).ok()),
            Err(_) => Err(ConfigError::Invalid { path: display.clone(), problems: vec![Problem { line: 0, column: 0, message: "the file is not UTF-8 text".into() }] }),
        };
        // Another of Accord's files (an agreement, a key, events): say which, and what to run.
        parsed.map_err(|e| crate::filekind::expect(&display, &bytes, crate::filekind::FileKind::GatewayConfig).err().map_or(e, ConfigError::WrongKind))
    }

    /// Checks a configuration given as text; `env` looks up environment variables.
    pub fn parse(text: &str, source: &str, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let invalid = |problems| ConfigError::Invalid { path: source.to_string(), problems };
        let raw: Raw = raw::read(text).map_err(invalid)?;
        let mut p = Vec::new();
        let config = compile::compile(raw, source, &env, &mut p);
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
        assert!(p[0].message.contains("unknown key `grup`") && p[0].message.contains("did you mean `group`?"), "{p:?}");
    }

    /// The file's shape is checked whole, like the agreement: every unknown or repeated
    /// key and every value of the wrong kind, each at its line, not the first alone.
    #[test]
    fn every_problem_of_the_files_shape_is_reported_at_once() {
        let text = GOOD.replace("  group: accord\n", "  group: accord\n  grup: x\n  group: again\n").replace("  id: k2026\n", "  id: k2026\n  idd: 1\n")
            + "limits:\n  max_in_flight: many\nlog: [debug]\n";
        let p = problems(&text);
        let at: Vec<(u32, &str)> = p.iter().map(|p| (p.line, p.message.as_str())).collect();
        assert_eq!(p.len(), 5, "{at:?}");
        assert!(p[0].line == 5 && p[0].message.contains("unknown key `idd`"), "{at:?}");
        assert!(p[1].line == 9 && p[1].message.contains("unknown key `grup`"), "{at:?}");
        assert!(p[2].line == 10 && p[2].message.contains("`group` is given twice"), "{at:?}");
        assert!(p[3].line == 22 && p[3].message.contains("`limits.max_in_flight` must be a whole number"), "{at:?}");
        assert!(p[4].line == 23 && p[4].message.contains("`log` must be a mapping"), "{at:?}");
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
    fn the_commit_interval_defaults_by_delivery_mode_and_a_given_one_wins() {
        let exactly_once = GOOD.replace("kafka:\n", "kafka:\n  delivery: exactly_once\n  transactional_id: accord-1\n");
        let c = Config::parse(&exactly_once, "gw.yaml", env).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.kafka.limits.commit_interval, Limits::TRANSACTION_INTERVAL);
        let c = Config::parse(GOOD, "gw.yaml", env).unwrap();
        assert_eq!(c.kafka.limits.commit_interval, Limits::COMMIT_INTERVAL);
        for text in [exactly_once, GOOD.to_string()] {
            let c = Config::parse(&format!("{text}limits:\n  commit_interval: 250ms\n"), "gw.yaml", env).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(c.kafka.limits.commit_interval, Duration::from_millis(250));
        }
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
        assert_eq!(c.kafka.limits.threads, Limits::available_threads(), "unless set, the cores available");
        let c = Config::parse(&format!("{GOOD}limits:\n  threads: 3\n"), "gw.yaml", env).unwrap();
        assert_eq!(c.kafka.limits.threads, 3);
        for bad in ["0", "257", "many"] {
            let p = problems(&format!("{GOOD}limits:\n  threads: {bad}\n"));
            assert!(p[0].line == 19 && p[0].message.contains("`limits.threads` must be"), "{bad}: {p:?}");
        }
        assert_eq!(c.kafka.limits.stuck_after, Duration::from_secs(300), "unless set, five minutes");
        let c = Config::parse(&format!("{GOOD}limits:\n  stuck_after: 90s\n"), "gw.yaml", env).unwrap();
        assert_eq!(c.kafka.limits.stuck_after, Duration::from_secs(90));
        let p = problems(&format!("{GOOD}limits:\n  stuck_after: 0s\n"));
        assert!(p[0].line == 19 && p[0].message.contains("`limits.stuck_after` must be a duration"), "{p:?}");
    }

    #[test]
    fn the_audit_section_names_a_file_and_a_topic_for_its_copy() {
        let c = Config::parse(&format!("{GOOD}audit:\n  file: /var/lib/accord/audit.jsonl\n  key: /etc/accord/audit/audit.key\n  topic: accord.audit\n  interval: 30s\n"), "gw.yaml", env).unwrap();
        assert_eq!(
            c.audit,
            Audit {
                file: Some("/var/lib/accord/audit.jsonl".into()),
                topic: Some("accord.audit".into()),
                interval: Some(Duration::from_secs(30)),
                key: Some("/etc/accord/audit/audit.key".into())
            }
        );
        let p = problems(&format!("{GOOD}audit:\n  key: audit.key\n"));
        assert!(p[0].message.contains("`audit.key` signs the trail's checkpoints: set `audit.file` too"), "{p:?}");
        assert_eq!(Config::parse(GOOD, "gw.yaml", env).unwrap().audit, Audit::default());
        let p = problems(&format!("{GOOD}audit:\n  topic: accord.audit\n"));
        assert_eq!((p[0].line, p[0].column), (19, 10), "{p:?}");
        assert!(p[0].message.contains("set `audit.file` too"), "{p:?}");
        let p = problems(&format!("{GOOD}audit:\n  file: a.jsonl\n  topic: sensors.raw\n  interval: 1ms\n  tpoic: x\n"));
        assert!(p[0].message.contains("unknown key `tpoic`"), "{p:?}");
        let p = problems(&format!("{GOOD}audit:\n  file: a.jsonl\n  topic: sensors.raw\n  interval: 1ms\n"));
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].message.contains("also an input topic") && p[0].line == 20, "{p:?}");
        assert!(p[1].message.contains("`audit.interval` must be") && p[1].line == 21, "{p:?}");
    }
}
