//! `accord test AGREEMENT [CASES...]`: run the DPO's test cases against an agreement.
//! One line per case, PASS or FAIL with its file and line; each failure says what was
//! expected and what happened; a closing `N passed, M failed`; exit 1 on any failure.

use std::path::{Path, PathBuf};

use accord::dpo::{cases, placeholder_engine};
use anyhow::Context;

use super::{load_agreement, Failure, Outcome};

#[derive(clap::Args)]
pub struct Args {
    /// The agreement to test.
    agreement: PathBuf,
    /// Case files (YAML). Without any, `AGREEMENT.tests.yaml` beside the agreement
    /// (`agreement.yaml` -> `agreement.tests.yaml`).
    cases: Vec<PathBuf>,
}

pub fn run(args: Args) -> Outcome {
    let agreement = load_agreement(&args.agreement)?;
    let files = if args.cases.is_empty() { vec![default_cases(&args.agreement)] } else { args.cases.clone() };

    // Read every file first: a broken case file is reported whole, before anything runs.
    let mut suites = Vec::new();
    let mut broken = false;
    for file in &files {
        let display = file.display().to_string();
        let text = std::fs::read_to_string(file).with_context(|| format!("cannot read the case file {display}"))?;
        match cases::parse(&text, &agreement) {
            Ok(list) => suites.push((display, list)),
            Err(diagnostics) => {
                for d in &diagnostics {
                    eprintln!("{}", d.display(&display));
                }
                eprintln!("accord: {display}: {} problem(s) in the case file; fix them, then run the cases again", diagnostics.len());
                broken = true;
            }
        }
    }
    if broken {
        return Err(Failure::Reported);
    }

    let engine = placeholder_engine(agreement);
    let (mut passed, mut failed) = (0, 0);
    for (file, list) in &suites {
        for case in list {
            let diffs = cases::run(&engine, case);
            if diffs.is_empty() {
                passed += 1;
                println!("PASS {file}:{} {}", case.span.line, case.name);
            } else {
                failed += 1;
                println!("FAIL {file}:{} {}", case.span.line, case.name);
                for d in diffs {
                    println!("     {d}");
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        Err(Failure::Reported)
    } else {
        Ok(())
    }
}

fn default_cases(agreement: &Path) -> PathBuf {
    let stem = agreement.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    agreement.with_file_name(format!("{stem}.tests.yaml"))
}
