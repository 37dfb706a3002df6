//! `accord check AGREEMENT`: every problem at once, each at its line; a summary when
//! the agreement is valid.

use std::path::PathBuf;

use accord::agreement::{Agreement, LoadError};

use super::{report, Failure, Outcome};

#[derive(clap::Args)]
pub struct Args {
    /// The agreement file (YAML).
    agreement: PathBuf,
}

pub fn run(args: Args) -> Outcome {
    let path = args.agreement.display().to_string();
    let loaded = match Agreement::load(&args.agreement) {
        Ok(loaded) => loaded,
        Err(LoadError::Invalid { path, diagnostics }) => {
            if let Some(wrong) = super::not_an_agreement(&path) {
                return Err(Failure::Input(wrong.into()));
            }
            report(&path, &diagnostics);
            return Err(Failure::Reported);
        }
        Err(e) => return Err(Failure::Input(e.into())),
    };
    report(&path, &loaded.warnings);
    let a = &loaded.agreement;
    let day = |t: Option<chrono::DateTime<chrono::Utc>>| t.map_or("open".to_string(), |t| t.format("%Y-%m-%d %H:%M UTC").to_string());
    println!("{path}: agreement `{}` version {} is valid ({} warning(s))", a.id, a.version, loaded.warnings.len());
    println!("  parties:   {}", a.parties.join("; "));
    println!("  in force:  from {} until {}", day(a.valid_from), day(a.valid_until));
    println!("  sha256:    {}", a.sha256);
    println!("  purposes:  {}", a.purposes.len());
    for p in &a.purposes {
        let identified = if p.identified { ", identified" } else { "" };
        println!("    {:<20} -> {}{identified}", p.name, p.topic);
    }
    println!("  rules:     {}", a.rules.len());
    for r in &a.rules {
        let purposes: Vec<&str> = r.purposes.iter().map(|p| a.purposes[*p as usize].name.as_str()).collect();
        println!("    {:<20} line {:<4} -> {}", r.name, r.line, purposes.join(", "));
    }
    if let Some(list) = &a.instruments {
        println!("  instruments: {} approved (others are dropped)", list.len());
        for i in list {
            println!("    {:<20} line {:<4} {} until {}", i.name, i.line, i.source, i.valid_until.format("%Y-%m-%d %H:%M UTC"));
        }
    }
    Ok(())
}
