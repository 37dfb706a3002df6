//! `accord verify AGREEMENT --party NAME=PUBKEY_FILE ...`: has every named party signed
//! the agreement's exact bytes? Names each missing or bad party; exit 1 if any.

use std::path::PathBuf;

use accord::dpo::signing::{verify_parties, Party};
use anyhow::Context;

use super::{Failure, Outcome};

#[derive(clap::Args)]
pub struct Args {
    /// The agreement file.
    agreement: PathBuf,
    /// A party whose signature is required, and its public key file (from `accord
    /// keygen`); once per party.
    #[arg(long = "party", value_name = "NAME=PUBKEY_FILE", required = true)]
    parties: Vec<String>,
}

pub fn run(args: Args) -> Outcome {
    let mut parties = Vec::new();
    for spec in &args.parties {
        let Some((name, file)) = spec.split_once('=') else {
            return Err(Failure::Usage(anyhow::anyhow!("--party takes NAME=PUBKEY_FILE, e.g. --party \"Ondernemingsraad ACME Utrecht=or.pub\"; got `{spec}`")));
        };
        parties.push(Party::from_file(&PathBuf::from(file), Some(name))?);
    }
    let bytes = std::fs::read(&args.agreement).with_context(|| format!("cannot read the agreement {}", args.agreement.display()))?;
    verify_parties(&args.agreement, &bytes, &parties)?;
    let names: Vec<String> = parties.iter().map(|p| format!("`{}`", p.name)).collect();
    println!("{}: signed by every party named: {}", args.agreement.display(), names.join(", "));
    Ok(())
}
