//! `accord audit verify` and `accord audit report`: what auditors run on a trail
//! (a file; `verify` also checks the copy on Kafka mode's audit topic).
//!
//! Both need the audit key's public half (`--pub`): a trail verifies only when every
//! link holds, every checkpoint is signed by that key, and its last record is a
//! checkpoint (closed); `--open` accepts records after the last checkpoint, for a
//! gateway still writing. `report` verifies first and reports only on a trail that
//! verifies.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Duration;

use accord::agreement::compile::parse_instant;
use accord::report::audit::{self, report, Expect, Head, Verified};
use accord::config::Config;
use accord::dpo::render::Lang;
use accord::run::kafka::audit_topic;
use accord::dpo::signing::{Party, AUDIT_PARTY};
use anyhow::{anyhow, Context};
use clap::Subcommand;

use super::{Failure, Outcome};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

/// What every check of a trail takes.
#[derive(clap::Args)]
struct Check {
    /// The audit key's public half (`accord keygen --audit`): every checkpoint must
    /// be signed by it.
    #[arg(long = "pub", value_name = "KEY", required = true)]
    public: PathBuf,
    /// Accept records after the last signed checkpoint (a gateway still writing to
    /// the trail); without it such a trail is refused as open.
    #[arg(long)]
    open: bool,
    /// A head recorded before (`SEQ:HASH`, as `verify` prints it): the trail must
    /// extend it, nothing up to it changed.
    #[arg(long, value_name = "SEQ:HASH")]
    since: Option<String>,
}

impl Check {
    fn expect(&self) -> Result<Expect, Failure> {
        let key = Party::from_file(&self.public, Some(AUDIT_PARTY))?;
        let since = self.since.as_deref().map(str::parse::<Head>).transpose().map_err(|e| Failure::Usage(anyhow!("--since: {e}")))?;
        Ok(Expect { key, since })
    }
}

#[derive(Subcommand)]
enum Command {
    /// Check every link and signature of an audit trail and print its head; exit 1 at
    /// the first broken record, or when the trail is open (without --open).
    ///
    /// With `--config GATEWAY.yaml`, check the copy on the audit topic instead (the
    /// config's `audit.topic`, or `--topic`), read from its start to its end with the
    /// config's brokers and properties; each gateway's trail on it is checked on its own.
    Verify {
        /// The trail (JSON Lines).
        #[arg(required_unless_present = "config", conflicts_with_all = ["config", "topic"])]
        file: Option<PathBuf>,
        #[command(flatten)]
        check: Check,
        /// The audit topic to check (default: the config's `audit.topic`).
        #[arg(long, value_name = "TOPIC", requires = "config")]
        topic: Option<String>,
        /// The gateway configuration: how to reach the brokers.
        #[arg(long, value_name = "GATEWAY.yaml")]
        config: Option<PathBuf>,
    },
    /// Verify the trail, then summarise a period: agreements in force, passed on per
    /// purpose, stopped per reason and kind of data, per day. A trail that does not
    /// verify is not reported on (exit 1, naming the first broken record).
    Report {
        /// The trail (JSON Lines).
        file: PathBuf,
        #[command(flatten)]
        check: Check,
        /// The language of the text and HTML report (JSON keeps the raw codes).
        #[arg(long, value_enum, default_value = "en")]
        lang: Lang,
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

/// Prints what a trail's check found (`name` says which trail); Err when it does
/// not verify, or is open without `open`.
fn judge(name: &str, v: &Verified, expect: &Expect, open: bool) -> Result<(), Failure> {
    if let Some(b) = &v.broken {
        eprintln!("{name}: broken at sequence number {}: {}", b.seq, b.why);
        eprintln!("accord: the {} records before it verify; nothing from sequence {} on can be trusted", v.records, b.seq);
        return Err(Failure::Reported);
    }
    let head = v.head.as_ref().map_or_else(|| "none (the trail is empty)".to_string(), Head::to_string);
    let extends = expect.since.as_ref().map(|s| format!("; it extends the head {s} recorded before")).unwrap_or_default();
    if v.closed() {
        println!("{name}: {} records, every link verified, {} checkpoint(s) signed by audit key {}; closed{extends}", v.records, v.checkpoints, expect.key.fingerprint());
        println!("head: {head}");
        return Ok(());
    }
    let last = match v.checkpoints {
        0 => "it has no signed checkpoint: no record is vouched for by the audit key".to_string(),
        n => format!("{} record(s) follow the last of its {n} signed checkpoint(s)", v.unsigned),
    };
    if open {
        println!("{name}: {} records, every link verified; open: {last}{extends}", v.records);
        println!("head: {head}");
        Ok(())
    } else {
        eprintln!("{name}: open: the last record is not a signed checkpoint; {last}");
        eprintln!("accord: records may have been cut from its end; for a gateway still writing to it, give --open");
        Err(Failure::Reported)
    }
}

fn verify_file(file: &Path, expect: &Expect) -> Result<Verified, Failure> {
    let reader = BufReader::new(File::open(file).with_context(|| format!("cannot open the audit trail {}", file.display()))?);
    Ok(audit::verify(reader, expect).with_context(|| format!("cannot read the audit trail {}", file.display()))?)
}

/// `verify --config GATEWAY.yaml [--topic T]`: every trail on the audit topic.
fn verify_topic(config: &Path, topic: Option<String>, check: &Check) -> Outcome {
    let config = Config::load(config)?;
    let Some(topic) = topic.or_else(|| config.audit.topic.clone()) else {
        return Err(Failure::Usage(anyhow!("{} names no `audit.topic`: give the topic with --topic", config.source)));
    };
    let expect = check.expect()?;
    let found = audit_topic::verify(&config.kafka, &topic, &expect, Duration::from_secs(30))?;
    if found.start > 0 {
        eprintln!("accord: note: the topic {topic} starts at offset {}: the records before it were deleted (retention); a trail that began there fails at sequence 0", found.start);
    }
    let mut failed = 0;
    for t in &found.trails {
        let name = if t.key.is_empty() { "(records without a key)".to_string() } else { t.key.clone() };
        let name = match &t.verified.broken {
            Some(b) => format!("{topic}: trail {name}: offset {}", b.line),
            None => format!("{topic}: trail {name} from offset {}", t.first_offset),
        };
        if judge(&name, &t.verified, &expect, check.open).is_err() {
            failed += 1;
        }
    }
    println!("{topic}: {} trail(s), {} records verified, offsets {} to {}{}", found.trails.len(), found.records(), found.start, found.end, if failed > 0 { format!("; {failed} failed") } else { String::new() });
    if failed > 0 {
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
        Command::Verify { file: None, topic, config, check } => verify_topic(&config.expect("clap requires --config without FILE"), topic, &check),
        Command::Verify { file: Some(file), check, .. } => {
            is_a_trail(&file)?;
            let expect = check.expect()?;
            let v = verify_file(&file, &expect)?;
            let name = match &v.broken {
                Some(b) => format!("{}:{}", file.display(), b.line),
                None => file.display().to_string(),
            };
            judge(&name, &v, &expect, check.open)
        }
        Command::Report { file, check, lang, from, until, format } => {
            let time = |t: &Option<String>, flag: &str| -> Result<_, Failure> {
                t.as_ref()
                    .map(|t| parse_instant(t).ok_or_else(|| Failure::Usage(anyhow!("--{flag} must be an RFC 3339 time or a date like 2026-03-01, not `{t}`"))))
                    .transpose()
            };
            let (from, until) = (time(&from, "from")?, time(&until, "until")?);
            is_a_trail(&file)?;
            // SPEC 7: a trail that does not verify is not reported on.
            let expect = check.expect()?;
            let v = verify_file(&file, &expect)?;
            if let Some(b) = &v.broken {
                eprintln!("{}:{}: broken at sequence number {}: {}", file.display(), b.line, b.seq, b.why);
                eprintln!("accord: the trail does not verify, so it is not reported on; `accord audit verify {} --pub KEY` says more", file.display());
                return Err(Failure::Reported);
            }
            if !v.closed() && !check.open {
                eprintln!("{}: the trail is open: {} record(s) follow its last signed checkpoint, and records may have been cut from its end", file.display(), v.unsigned);
                eprintln!("accord: not reported on; for a gateway still writing to it, give --open (the report then says it is open)");
                return Err(Failure::Reported);
            }
            let reader = BufReader::new(File::open(&file).with_context(|| format!("cannot open the audit trail {}", file.display()))?);
            let records = audit::read(reader)?;
            let r = report::build(report::Verification::new(&v, &expect.key.fingerprint()), &records, from, until);
            match format {
                ReportFormat::Text => print!("{}", report::to_text(&r, lang)),
                ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&r)?),
                ReportFormat::Html => print!("{}", report::to_html(&r, lang)),
            }
            Ok(())
        }
    }
}
