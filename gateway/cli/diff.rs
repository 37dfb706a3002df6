//! `accord diff OLD NEW [--events FILE]`: what changes in enforcement, as sentences a
//! works council understands; with `--events`, how many events' outcomes change.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use accord::dpo::{diff, placeholder_engine};
use anyhow::Context;

use super::{load_agreement, Outcome};

#[derive(clap::Args)]
pub struct Args {
    /// The agreement in force (or the last one agreed).
    old: PathBuf,
    /// The proposed agreement.
    new: PathBuf,
    /// Replay these events (JSON Lines) through both and count what changes.
    #[arg(long, value_name = "FILE")]
    events: Option<PathBuf>,
}

pub fn run(args: Args) -> Outcome {
    let old = load_agreement(&args.old)?;
    let new = load_agreement(&args.new)?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "From {} (`{}` version {}) to {} (`{}` version {}):\n",
        args.old.display(),
        old.id,
        old.version,
        args.new.display(),
        new.id,
        new.version
    );
    let changes = diff::compare(&old, &new);
    if changes.is_empty() {
        if old.sha256 == new.sha256 {
            out.push_str("The two files are identical.\n");
        } else {
            out.push_str("No change in what is enforced: the files differ only in comments, layout or the order of keys.\n");
        }
    } else {
        out.push_str(&diff::render(&changes));
        let _ = writeln!(out, "\n{} change(s) in what is enforced.", changes.len());
    }
    if let Some(path) = &args.events {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read the events file {}", path.display()))?;
        let replay = diff::replay(&placeholder_engine(old), &placeholder_engine(new), bytes.split(|b| *b == b'\n'));
        let _ = write!(out, "\nReplaying {}:\n{replay}", path.display());
    }
    // Written at once; a reader that stops early (`| head`) is not an error.
    match std::io::stdout().lock().write_all(out.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(anyhow::Error::from(e).context("cannot write to standard output").into()),
        _ => Ok(()),
    }
}
