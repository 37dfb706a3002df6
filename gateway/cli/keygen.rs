//! `accord keygen --party NAME --out DIR`: a new Ed25519 key pair for one party of the
//! agreement: `DIR/<party>.key` (private, mode 0600) and `DIR/<party>.pub` (public).
//! `accord keygen --audit --out DIR`: the same for the audit key, which signs the audit
//! trail's checkpoints: `DIR/audit.key` (for the gateway's own Secret) and
//! `DIR/audit.pub` (for the works council and auditors).

use std::io::Write;
use std::path::{Path, PathBuf};

use accord::dpo::signing::{slug, PartyKey, AUDIT_PARTY};
use anyhow::Context;

use super::Outcome;

#[derive(clap::Args)]
pub struct Args {
    /// The party's name exactly as the gateway configuration will name it
    /// (e.g. "Ondernemingsraad ACME Utrecht").
    #[arg(long, value_name = "NAME", required_unless_present = "audit", conflicts_with = "audit")]
    party: Option<String>,
    /// The audit key instead: it signs the audit trail's checkpoints. Not a party's
    /// key, and never the pseudonym key.
    #[arg(long)]
    audit: bool,
    /// The folder to write the two key files into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

pub fn run(args: Args) -> Outcome {
    let party = args.party.as_deref().unwrap_or(AUDIT_PARTY);
    let key = PartyKey::generate(party)?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create the folder {}", args.out.display()))?;
    let base = slug(party);
    let private = args.out.join(format!("{base}.key"));
    let public = args.out.join(format!("{base}.pub"));
    for path in [&private, &public] {
        if path.exists() {
            return Err(anyhow::anyhow!("{} already exists; keygen never overwrites a key (move it away first)", path.display()).into());
        }
    }
    write_new(&private, key.to_text().as_bytes(), 0o600)?;
    write_new(&public, key.public().to_text().as_bytes(), 0o644)?;
    if args.audit {
        println!("audit key");
        println!("private key: {} (the gateway signs its audit trail with it: give it to the gateway in a Secret of its own, apart from the pseudonym key)", private.display());
        println!("public key:  {} (give it to the works council and the auditors: `accord audit verify --pub`)", public.display());
    } else {
        println!("party:       {party}");
        println!("private key: {} (keep it secret; only this party signs with it)", private.display());
        println!("public key:  {} (give it to the platform team for the gateway's configuration)", public.display());
    }
    println!("fingerprint: {} (compare it aloud with the platform team)", key.public().fingerprint());
    Ok(())
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).with_context(|| format!("cannot write {}", path.display()))
}
