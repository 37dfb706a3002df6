//! The second stage: the file as written ([`super::raw`]) becomes the [`Config`] the
//! gateway runs with: environment overrides, defaults, and every check, each problem
//! at its line. librdkafka properties are checked by librdkafka itself, and a value
//! (it may be a password) never appears in a message.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::raw::{Location, Properties, Raw, RawAudit, RawKafka, RawLimits, Spanned};
use super::{Audit, Config, Delivery, Kafka, Limits, Problem, Secret};
use crate::event::wire::Framing;
use crate::event::Format;

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


fn at(l: &Location) -> (u32, u32) {
    (l.line(), l.column())
}

fn problem(p: &mut Vec<Problem>, l: &Location, message: impl Into<String>) {
    let (line, column) = at(l);
    p.push(Problem { line, column, message: message.into() });
}

/// Picks a setting from the environment, else from the file.
fn setting(env: &impl Fn(&str) -> Option<String>, var: &str, file: Option<&Spanned<String>>) -> Option<(String, Option<Location>)> {
    match env(var).filter(|v| !v.is_empty()) {
        Some(v) => Some((v, None)),
        None => file.map(|s| (s.value.clone(), Some(s.referenced))),
    }
}

pub(super) fn compile(raw: Raw, source: &str, env: &impl Fn(&str) -> Option<String>, p: &mut Vec<Problem>) -> Option<Config> {
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
    let mut limits = compile_limits(raw.limits.as_ref(), p);
    let kafka = match raw.kafka {
        Some(k) => {
            if k.value.delivery == Delivery::ExactlyOnce && raw.limits.as_ref().is_none_or(|l| l.commit_interval.is_none()) {
                limits.commit_interval = Limits::TRANSACTION_INTERVAL;
            }
            compile_kafka(k, env, limits, p)
        }
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
        suppressions_topic: raw.suppressions.as_ref().and_then(|t| compile_suppressions(t, kafka.as_ref(), raw.audit.as_ref(), p)),
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
    if let Some(k) = &raw.value.key {
        if k.value.trim().is_empty() {
            problem(p, &k.referenced, "`audit.key` is empty: name the audit key's file (from `accord keygen --audit`)");
        } else if raw.value.file.is_none() {
            problem(p, &k.referenced, "`audit.key` signs the trail's checkpoints: set `audit.file` too");
        } else {
            audit.key = Some(PathBuf::from(&k.value));
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

/// The suppressions topic: a valid name that no other stream of the gateway uses.
fn compile_suppressions(t: &Spanned<String>, kafka: Option<&Kafka>, audit: Option<&Spanned<RawAudit>>, p: &mut Vec<Problem>) -> Option<String> {
    let why = if !accord_core::valid::topic(&t.value) {
        Some("is not a Kafka topic name (1 to 249 of a-z, A-Z, 0-9, `.`, `_`, `-`)")
    } else if kafka.is_some_and(|k| k.topics.contains(&t.value)) {
        Some("is also an input topic; suppressions would be read as events")
    } else if kafka.is_some_and(|k| k.quarantine_topic == t.value) {
        Some("is also the quarantine topic; give suppressions a topic of their own")
    } else if audit.and_then(|a| a.value.topic.as_ref()).is_some_and(|a| a.value == t.value) {
        Some("is also the audit topic; give suppressions a topic of their own")
    } else {
        None
    };
    match why {
        Some(why) => {
            problem(p, &t.referenced, format!("`suppressions.topic` `{}` {why}", t.value));
            None
        }
        None => Some(t.value.clone()),
    }
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
    if let Some(n) = &raw.threads {
        if n.value == 0 || n.value > Limits::MAX_THREADS as u64 {
            problem(p, &n.referenced, format!("`limits.threads` must be between 1 and {} threads", Limits::MAX_THREADS));
        } else {
            limits.threads = n.value as usize;
        }
    }
    for (field, raw, into) in [
        ("commit_interval", &raw.commit_interval, &mut limits.commit_interval),
        ("drain_timeout", &raw.drain_timeout, &mut limits.drain_timeout),
        ("stuck_after", &raw.stuck_after, &mut limits.stuck_after),
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
    let mut input_framing = Framing::Plain;
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
        (Framing::Confluent, Some(id)) => Some(id.value),
        (Framing::Confluent, None) => {
            problem(p, &section, "`kafka.output.framing: confluent` needs `kafka.output.schema_id`: the id under which your Schema Registry holds Accord's EnforcedEvent schema of this format");
            None
        }
        (Framing::Plain, Some(id)) => {
            problem(p, &id.referenced, "`kafka.output.schema_id` is only for `framing: confluent`");
            None
        }
        (Framing::Plain, None) => None,
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
