//! `accord pseudonym`: one worker's pseudonym for one purpose, so a DPO can answer an
//! access request (SPEC section 3).

use std::path::PathBuf;

use accord::agreement::compile::parse_instant;
use accord::agreement::diagnostic::suggest;
use accord::report::audit::{AuditTrail, Kind};
use anyhow::anyhow;

use super::{load_agreement, Failure, KeyArgs, Outcome};

#[derive(clap::Args)]
pub struct Args {
    /// The agreement in force (its domain and rotation decide the pseudonym).
    #[arg(long, value_name = "FILE")]
    agreement: PathBuf,
    #[command(flatten)]
    key: KeyArgs,
    /// The purpose whose pseudonym to compute, as the agreement names it under `purposes:`.
    #[arg(long, value_name = "PURPOSE")]
    purpose: String,
    /// A time in the period wanted (RFC 3339, or a date); required when the agreement rotates.
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// Why the look-up is made (e.g. "access request 2026-114"); written to the trail.
    #[arg(long, value_name = "WHY")]
    reason: String,
    /// The audit trail the look-up is recorded in.
    #[arg(long, value_name = "FILE", env = "ACCORD_AUDIT_FILE")]
    audit: PathBuf,
    /// The audit key (`accord keygen --audit`): the look-up is followed by a signed
    /// checkpoint, so the trail stays closed.
    #[arg(long, value_name = "FILE", env = "ACCORD_AUDIT_KEY")]
    audit_key: Option<PathBuf>,
    /// The value to pseudonymise, e.g. the worker's subject_id.
    value: String,
}

pub fn run(args: Args) -> Outcome {
    let agreement = load_agreement(&args.agreement)?;
    if agreement.purpose_index(&args.purpose).is_none() {
        // Bad input, not bad usage: the flag is right, the name is not the agreement's.
        let known: Vec<&str> = agreement.purposes.iter().map(|p| p.name.as_str()).collect();
        let hint = suggest(&args.purpose, known.iter().copied());
        return Err(Failure::Input(anyhow!("purpose `{}` is not one of the purposes of {} ({}){hint}", args.purpose, args.agreement.display(), known.join(", "))));
    }
    let at = match (&args.at, agreement.rotate) {
        (Some(t), _) => Some(parse_instant(t).ok_or_else(|| Failure::Usage(anyhow!("--at must be an RFC 3339 time or a date like 2026-03-02, not `{t}`")))?),
        (None, Some(_)) => return Err(Failure::Usage(anyhow!("the agreement {} rotates pseudonyms, so the period must be picked: give --at a time or a date in it, e.g. --at 2026-03-02", args.agreement.display()))),
        (None, None) => None,
    };
    if args.reason.trim().is_empty() {
        return Err(Failure::Usage(anyhow!("--reason must say why the look-up is made, e.g. --reason \"access request 2026-114\"; it is written to the audit trail")));
    }
    let pseudonymiser = args.key.pseudonymiser()?;
    let pseudonym = pseudonymiser.pseudonym(&agreement, &args.purpose, at, &args.value);
    // Recorded before it is shown: no look-up leaves without its trace.
    let mut trail = AuditTrail::open(&args.audit)?;
    if let Some(key) = &args.audit_key {
        trail = trail.with_key(accord::dpo::signing::PartyKey::audit_from_file(key)?);
    }
    let period = match (agreement.rotate, at) {
        (Some(rotate), Some(at)) => Some(accord::pseudonym::period(rotate, at)),
        _ => None,
    };
    trail.append(
        Kind::PseudonymLookup,
        serde_json::json!({"agreement": agreement.id, "version": agreement.version, "purpose": args.purpose, "period": period, "key_id": pseudonymiser.key_id(), "reason": args.reason}),
    )?;
    // Signed at once: a look-up never stays outside a checkpoint.
    trail.checkpoint()?;
    println!("{pseudonym}");
    Ok(())
}
