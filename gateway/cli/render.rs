//! `accord render AGREEMENT --output FILE.html [--lang nl|en]`: the agreement as one
//! self-contained page for workers.

use std::path::PathBuf;

use accord::dpo::render::{self, Lang};
use anyhow::Context;

use super::{load_agreement, Outcome};

#[derive(clap::Args)]
pub struct Args {
    /// The agreement to explain.
    agreement: PathBuf,
    /// The HTML file to write.
    #[arg(long, value_name = "FILE.html")]
    output: PathBuf,
    /// The page's language: Dutch or English.
    #[arg(long, value_enum, default_value = "nl")]
    lang: Lang,
}

pub fn run(args: Args) -> Outcome {
    let agreement = load_agreement(&args.agreement)?;
    let html = render::render(&agreement, args.lang);
    std::fs::write(&args.output, html).with_context(|| format!("cannot write {}", args.output.display()))?;
    println!("{}: a page for workers about agreement `{}` version {}", args.output.display(), agreement.id, agreement.version);
    Ok(())
}
