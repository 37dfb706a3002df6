//! `accord sign AGREEMENT --key PARTY_KEY`: a party's detached Ed25519 signature over
//! the agreement file's exact bytes, written to `AGREEMENT.<party>.sig` beside it.

use std::path::PathBuf;

use accord::agreement::Agreement;
use accord::dpo::signing::{signature_path, PartyKey};
use anyhow::Context;

use super::{report, Failure, Outcome};

#[derive(clap::Args)]
pub struct Args {
    /// The agreement file to sign (as it is, byte for byte).
    agreement: PathBuf,
    /// The party's private key file, from `accord keygen`.
    #[arg(long, value_name = "PARTY_KEY")]
    key: PathBuf,
}

pub fn run(args: Args) -> Outcome {
    let key = PartyKey::from_file(&args.key)?;
    let bytes = std::fs::read(&args.agreement).with_context(|| format!("cannot read the agreement {}", args.agreement.display()))?;
    // Nobody should sign an agreement the gateway would refuse.
    let display = args.agreement.display().to_string();
    let loaded = match Agreement::parse(&bytes) {
        Ok(loaded) => loaded,
        Err(diagnostics) => {
            report(&display, &diagnostics);
            eprintln!("accord: not signed: fix the errors first, then sign the corrected file");
            return Err(Failure::Reported);
        }
    };
    let a = &loaded.agreement;
    if !a.parties.iter().any(|p| p == &key.party) {
        eprintln!(
            "accord: warning: `{}` is not among the agreement's parties ({}); signing anyway",
            key.party,
            a.parties.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ")
        );
    }
    let out = signature_path(&args.agreement, &key.party);
    std::fs::write(&out, key.sign(&bytes)).with_context(|| format!("cannot write the signature {}", out.display()))?;
    println!("{}: agreement `{}` version {} signed by `{}`", display, a.id, a.version, key.party);
    println!("  sha256:    {}", a.sha256);
    println!("  signature: {}", out.display());
    Ok(())
}
