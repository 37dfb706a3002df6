//! `accord audit verify` and `accord audit report`: what auditors run on a trail
//! (a file; `verify` also checks the copy on Kafka mode's audit topic).

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Duration;

use accord::agreement::compile::parse_instant;
use accord::report::audit::{self, report};
use accord::config::Config;
use accord::run::kafka::audit_topic;
use anyhow::{anyhow, Context};
use clap::Subcommand;

use super::{Failure, Outcome};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check every link of an audit trail; exit 1 at the first broken one.
    ///
    /// With `--config GATEWAY.yaml`, check the copy on the audit topic instead (the
    /// config's `audit.topic`, or `--topic`), read from its start to its end with the
    /// config's brokers and properties; each gateway's trail on it is checked on its own.
    Verify {
        /// The trail (JSON Lines).
        #[arg(required_unless_present = "config", conflicts_with_all = ["config", "topic"])]
        file: Option<PathBuf>,
        /// The audit topic to check (default: the config's `audit.topic`).
        #[arg(long, value_name = "TOPIC", requires = "config")]
        topic: Option<String>,
        /// The gateway configuration: how to reach the brokers.
        #[arg(long, value_name = "GATEWAY.yaml")]
        config: Option<PathBuf>,
    },
    /// Summarise a period: agreements in force, forwarded per purpose, dropped per
    /// reason and category, per day.
    Report {
        /// The trail (JSON Lines).
        file: PathBuf,
        /// Start of the period (RFC 3339 or a date), inclusive.
        #[arg(long, value_name = "TIME")]
        from: Option<String>,
        /// End of the period (RFC 3339 or a date), exclusive.
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// Text for reading, JSON for tools, or one HTML page with charts.
        #[arg(long, value_enum, default_value = "text")]
        format: ReportFormat,
    },
}

/// `verify --config GATEWAY.yaml [--topic T]`: every trail on the audit topic.
fn verify_topic(config: &Path, topic: Option<String>) -> Outcome {
    let config = Config::load(config)?;
    let Some(topic) = topic.or_else(|| config.audit.topic.clone()) else {
        return Err(Failure::Usage(anyhow!("{} names no `audit.topic`: give the topic with --topic", config.source)));
    };
    let found = audit_topic::verify(&config.kafka, &topic, Duration::from_secs(30))?;
    if found.start > 0 {
        eprintln!("accord: note: the topic {topic} starts at offset {}: the records before it were deleted (retention); a trail that began there fails at sequence 0", found.start);
    }
    for t in &found.trails {
        let name = if t.key.is_empty() { "(records without a key)".to_string() } else { t.key.clone() };
        match &t.verified.broken {
            None => println!("{topic}: trail {name}: {} records from offset {}, every link verified", t.verified.records, t.first_offset),
            Some(b) => {
                eprintln!("{topic}: trail {name}: offset {}: broken at sequence number {}: {}", b.line, b.seq, b.why);
                eprintln!("accord: the {} records before it in that trail verify; nothing from sequence {} on can be trusted", t.verified.records, b.seq);
            }
        }
    }
    let broken = found.broken().count();
    println!("{topic}: {} trail(s), {} records verified, offsets {} to {}{}", found.trails.len(), found.records(), found.start, found.end, if broken > 0 { format!("; {broken} broken") } else { String::new() });
    if broken > 0 {
        return Err(Failure::Reported);
    }
    Ok(())
}

/// Refuses, in one sentence, a file that is recognisably not an audit trail (events,
/// an agreement, a key) before its first line is reported as a broken link.
fn is_a_trail(file: &Path) -> Outcome {
    let mut head = Vec::new();
    if let Ok(f) = File::open(file) {
        use std::io::Read;
        let _ = f.take(64 * 1024).read_to_end(&mut head);
    }
    let head = match head.iter().rposition(|b| *b == b'\n') {
        Some(end) if head.len() == 64 * 1024 => &head[..=end],
        _ => &head[..],
    };
    accord::filekind::expect(&file.display().to_string(), head, accord::filekind::FileKind::AuditTrail).map_err(|e| Failure::Input(e.into()))
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ReportFormat {
    Text,
    Json,
    Html,
}

pub fn run(args: Args) -> Outcome {
    match args.command {
        Command::Verify { file: None, topic, config } => verify_topic(&config.expect("clap requires --config without FILE"), topic),
        Command::Verify { file: Some(file), .. } => {
            is_a_trail(&file)?;
            let reader = BufReader::new(File::open(&file).with_context(|| format!("cannot open the audit trail {}", file.display()))?);
            let verified = audit::verify(reader).with_context(|| format!("cannot read the audit trail {}", file.display()))?;
            match verified.broken {
                None => {
                    println!("{}: {} records, every link verified", file.display(), verified.records);
                    Ok(())
                }
                Some(b) => {
                    eprintln!("{}:{}: broken at sequence number {}: {}", file.display(), b.line, b.seq, b.why);
                    eprintln!("accord: the {} records before it verify; nothing from sequence {} on can be trusted", verified.records, b.seq);
                    Err(Failure::Reported)
                }
            }
        }
        Command::Report { file, from, until, format } => {
            let time = |t: &Option<String>, flag: &str| -> Result<_, Failure> {
                t.as_ref()
                    .map(|t| parse_instant(t).ok_or_else(|| Failure::Usage(anyhow!("--{flag} must be an RFC 3339 time or a date like 2026-03-01, not `{t}`"))))
                    .transpose()
            };
            let (from, until) = (time(&from, "from")?, time(&until, "until")?);
            is_a_trail(&file)?;
            // SPEC 7: a trail that does not verify is not reported on.
            let reader = BufReader::new(File::open(&file).with_context(|| format!("cannot open the audit trail {}", file.display()))?);
            let verified = audit::verify(reader).with_context(|| format!("cannot read the audit trail {}", file.display()))?;
            if let Some(b) = verified.broken {
                eprintln!("{}:{}: broken at sequence number {}: {}", file.display(), b.line, b.seq, b.why);
                eprintln!("accord: the trail does not verify, so it is not reported on; `accord audit verify {}` says more", file.display());
                return Err(Failure::Reported);
            }
            let reader = BufReader::new(File::open(&file).with_context(|| format!("cannot open the audit trail {}", file.display()))?);
            let records = audit::read(reader)?;
            let r = report::build(&records, from, until);
            match format {
                ReportFormat::Text => print!("{}", report::to_text(&r)),
                ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&r)?),
                ReportFormat::Html => print!("{}", report::to_html(&r)),
            }
            Ok(())
        }
    }
}
