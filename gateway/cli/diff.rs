//! `accord diff OLD NEW [--events FILE]`: what changes in enforcement, as sentences a
//! works council understands; with `--events`, how many events' outcomes change.

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
    println!(
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
            println!("The two files are identical.");
        } else {
            println!("No change in what is enforced: the files differ only in comments, layout or the order of keys.");
        }
    } else {
        print!("{}", diff::render(&changes));
        println!("\n{} change(s) in what is enforced.", changes.len());
    }
    if let Some(path) = &args.events {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read the events file {}", path.display()))?;
        let replay = diff::replay(&placeholder_engine(old), &placeholder_engine(new), bytes.split(|b| *b == b'\n'));
        println!("\nReplaying {}:", path.display());
        print!("{replay}");
    }
    Ok(())
}
