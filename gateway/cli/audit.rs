//! `accord audit verify` and `accord audit report`: what auditors run on a trail.

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;

use accord::agreement::compile::parse_instant;
use accord::audit::{self, report};
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
    Verify {
        /// The trail (JSON Lines).
        file: PathBuf,
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
        #[arg(long, value_enum, default_value = "text")]
        format: ReportFormat,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ReportFormat {
    Text,
    Json,
    Html,
}

pub fn run(args: Args) -> Outcome {
    match args.command {
        Command::Verify { file } => {
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
