//! `accord suppress`: writes a worker's suppression (SPEC 2.7), or lifts it, to the
//! suppressions file of file mode or to the gateway's suppressions topic, and records
//! the act in the audit trail: reason, purposes and window, never the subject.
//!
//! The subject is given as the worker's `subject_id` and leaves this command only as
//! `KEY_ID:HEX` (the keyed digest of SPEC 2.7). The entry is written first and the act
//! recorded after: a suppression that is in force but not yet recorded errs on the
//! worker's side; the command then fails, saying so.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use accord::agreement::compile::parse_instant;
use accord::config::Config;
use accord::engine::suppress::{Entry, Reason};
use accord::report::audit::{AuditTrail, Kind};
use anyhow::{anyhow, Context};
use chrono::{DateTime, FixedOffset};

use super::{load_agreement, Failure, Outcome};

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["file", "config"])))]
pub struct Args {
    /// The worker's `subject_id`, as the sensors send it (never written anywhere).
    #[arg(long, value_name = "ID")]
    subject: String,
    /// objection (GDPR art. 21), restriction (art. 18) or privacy_switch.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(Reason::NAMES))]
    reason: String,
    /// A purpose the suppression covers (repeat for more); none: every purpose.
    #[arg(long = "purpose", value_name = "P")]
    purposes: Vec<String>,
    /// Start of the window (RFC 3339 with offset, or a date: midnight UTC); none: open.
    #[arg(long, value_name = "TIME")]
    from: Option<String>,
    /// End of the window (exclusive); none: open.
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Lift the suppression of this subject and reason instead of writing one.
    #[arg(long)]
    lift: bool,
    /// File mode: the JSON Lines file given to `accord run --suppressions`.
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// Kafka mode: the gateway configuration that names the suppressions topic and the key.
    #[arg(long, value_name = "GATEWAY.yaml")]
    config: Option<PathBuf>,
    /// File mode: the pseudonym key file (Kafka mode takes it from the configuration).
    #[arg(long, value_name = "FILE", requires = "key_id", conflicts_with = "config")]
    key_file: Option<PathBuf>,
    /// File mode: the key's public id (the subject is written as `KEY_ID:HEX`).
    #[arg(long, value_name = "ID", requires = "key_file", conflicts_with = "config")]
    key_id: Option<String>,
    /// The agreement, to check the purpose names against (recommended).
    #[arg(long, value_name = "FILE")]
    agreement: Option<PathBuf>,
    /// The audit trail the act is recorded in.
    #[arg(long, value_name = "FILE", env = "ACCORD_AUDIT_FILE")]
    audit: PathBuf,
}

fn time(t: &Option<String>, flag: &str) -> Result<Option<DateTime<FixedOffset>>, Failure> {
    t.as_ref()
        .map(|t| {
            DateTime::parse_from_rfc3339(t)
                .or_else(|_| parse_instant(t).map(|d| d.fixed_offset()).ok_or(()))
                .map_err(|_| Failure::Usage(anyhow!("--{flag} must be an RFC 3339 time with an offset, or a date like 2026-03-02, not `{t}`")))
        })
        .transpose()
}

pub fn run(args: Args) -> Outcome {
    if args.subject.trim().is_empty() {
        return Err(Failure::Usage(anyhow!("--subject must be the worker's subject_id")));
    }
    if let Some(path) = &args.agreement {
        let a = load_agreement(path)?;
        for p in &args.purposes {
            if a.purpose_index(p).is_none() {
                let known: Vec<&str> = a.purposes.iter().map(|p| p.name.as_str()).collect();
                return Err(Failure::Usage(anyhow!("purpose `{p}` is not in the agreement (its purposes: {})", known.join(", "))));
            }
        }
    }
    let config = args.config.as_deref().map(Config::load).transpose()?;
    let (key_file, key_id) = match (&config, &args.key_file, &args.key_id) {
        (Some(c), _, _) => (c.key_file.clone(), c.key_id.clone()),
        (None, Some(f), Some(id)) => (f.clone(), id.clone()),
        _ => return Err(Failure::Usage(anyhow!("with --file, give --key-file and --key-id: the subject is written only as its keyed digest"))),
    };
    let pseudonymiser = super::KeyArgs { key_file, key_id }.pseudonymiser()?;
    let subject = pseudonymiser.suppression_subject(&args.subject);
    // The entry goes through the same strict reader as every entry the gateway reads.
    let mut json = serde_json::json!({"subject": subject, "reason": args.reason});
    if !args.purposes.is_empty() {
        json["purposes"] = serde_json::json!(args.purposes);
    }
    let (from, until) = (time(&args.from, "from")?, time(&args.until, "until")?);
    if let Some(f) = from {
        json["from"] = serde_json::json!(f.to_rfc3339());
    }
    if let Some(u) = until {
        json["until"] = serde_json::json!(u.to_rfc3339());
    }
    let entry = Entry::parse(json.to_string().as_bytes()).map_err(|e| Failure::Usage(anyhow!(e)))?;

    let place = match (&args.file, &config) {
        (Some(file), _) => {
            write_file(file, &entry, args.lift).with_context(|| format!("cannot write the suppressions file {}", file.display()))?;
            format!("file {}", file.display())
        }
        (None, Some(c)) => {
            let topic = c.suppressions_topic.as_deref().ok_or_else(|| anyhow!("the configuration {} names no `suppressions.topic`", c.source))?;
            let (partition, offset) = accord::run::kafka::suppressions::write(&c.kafka, topic, &entry, args.lift)?;
            eprintln!("accord: written to {topic} partition {partition} offset {offset}");
            format!("topic {topic}")
        }
        (None, None) => unreachable!("clap requires --file or --config"),
    };
    let trail = AuditTrail::open(&args.audit)?;
    trail
        .append(
            Kind::Suppression,
            serde_json::json!({
                "act": if args.lift { "lifted" } else { "written" },
                "reason": entry.reason.as_str(),
                "purposes": entry.purposes,
                "from": entry.from.map(|t| t.to_rfc3339()),
                "until": entry.until.map(|t| t.to_rfc3339()),
                "key_id": entry.subject.key_id,
                "to": place,
            }),
        )
        .context("the suppression is in force, but the act could not be recorded in the audit trail")?;
    println!("{}", if args.lift { "lifted" } else { "in force" });
    Ok(())
}

/// Appends the entry, or (lift) removes every entry of the same subject and reason.
/// The file is rewritten whole through a temporary file, so a reader never sees half.
fn write_file(path: &Path, entry: &Entry, lift: bool) -> std::io::Result<()> {
    if !lift {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        return writeln!(f, "{}", entry.to_json());
    }
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let kept: Vec<&str> = text.lines().filter(|l| Entry::parse(l.as_bytes()).map_or(true, |e| e.key() != entry.key())).collect();
    let tmp = path.with_extension("tmp-accord");
    std::fs::write(&tmp, kept.iter().map(|l| format!("{l}\n")).collect::<String>())?;
    std::fs::rename(&tmp, path)
}
