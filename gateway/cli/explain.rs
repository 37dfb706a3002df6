//! `accord explain --agreement A EVENT_FILE`: SPEC 2.1 step by step for one event.

use std::path::PathBuf;
use std::sync::Arc;

use accord::engine::Engine;
use accord::pseudonym::{Key, Pseudonymiser};
use anyhow::Context;

use super::{load_agreement, Outcome};

#[derive(clap::Args)]
pub struct Args {
    /// The agreement to apply.
    #[arg(long, value_name = "FILE")]
    agreement: PathBuf,
    /// A file holding one event (JSON).
    event: PathBuf,
    /// Compute pseudonyms with this key (else with a placeholder key, `explain`).
    #[arg(long, value_name = "FILE", requires = "key_id")]
    key_file: Option<PathBuf>,
    #[arg(long, value_name = "ID", requires = "key_file")]
    key_id: Option<String>,
}

pub fn run(args: Args) -> Outcome {
    let agreement = load_agreement(&args.agreement)?;
    let key = match (&args.key_file, &args.key_id) {
        (Some(file), Some(id)) => Key::from_file(file, id)?,
        _ => Key::new(b"accord-explain-placeholder-key-not-a-secret", "explain").expect("a valid placeholder key"),
    };
    let engine = Engine::new(agreement, Arc::new(Pseudonymiser::new(key)));
    let input = std::fs::read(&args.event).with_context(|| format!("cannot read the event file {}", args.event.display()))?;
    let trimmed = input.trim_ascii();
    print!("{}", accord::dpo::explain::explain(&engine, trimmed));
    if args.key_file.is_none() {
        println!("(Pseudonyms above use a placeholder key `explain`; give --key-file and --key-id for the gateway's.)");
    }
    Ok(())
}
