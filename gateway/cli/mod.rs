//! The command line: one file per subcommand, `anyhow` only here at the edge.
//!
//! Every error is printed to stderr as one sentence, `accord: error: ...`, and
//! never holds a secret or a raw identifier.

mod audit;
mod check;
mod demo;
mod diff;
mod explain;
mod keygen;
mod observe;
mod pseudonym;
mod render;
mod run;
mod sign;
mod suppress;
mod test;
mod verify;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use accord::agreement::{Agreement, LoadError};
use accord::pseudonym::{Key, KeyFileNote, Pseudonymiser};
use clap::{Parser, Subcommand};

/// Accord holds workplace sensor data to the agreement an employer and its works
/// council negotiated: it drops forbidden categories, strips fields no purpose needs,
/// pseudonymises workers, coarsens place and time, and routes each event only to
/// its purpose's topic. What is not agreed is not allowed.
#[derive(Parser)]
#[command(
    name = "accord",
    version,
    max_term_width = 100,
    after_help = "New here? `accord demo` runs the example site with no files, key or broker; then `accord check`, `accord explain` and `accord run` on examples/.\nExit status: 0 done (whatever was dropped), 1 bad input (an agreement, key or file that cannot be used), 2 bad usage."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check an agreement file: every problem at its line, then a summary.
    Check(check::Args),
    /// Enforce an agreement: on a file or stdin (file mode), or in a Kafka pipeline
    /// (`--config`).
    Run(run::Args),
    /// Show, step by step, what the agreement does to one event.
    Explain(explain::Args),
    /// Compute a worker's pseudonym for one purpose (for access requests).
    Pseudonym(pseudonym::Args),
    /// Write (or lift) a worker's suppression: an objection, a restriction, or a privacy
    /// switch (to a suppressions file, or to the gateway's topic).
    Suppress(suppress::Args),
    /// Run file mode on the built-in example site (no files or broker needed).
    Demo(demo::Args),
    /// Verify an audit trail, or report what it says about a period.
    Audit(audit::Args),
    /// Run test cases (events and expected outcomes) against an agreement.
    Test(test::Args),
    /// Say what changes in enforcement from one agreement to another.
    Diff(diff::Args),
    /// Write a self-contained page for workers explaining the agreement.
    Render(render::Args),
    /// Make a signing key pair: for one party of the agreement, or (`--audit`) for the audit trail.
    Keygen(keygen::Args),
    /// Sign the agreement file as one party (a detached Ed25519 signature).
    Sign(sign::Args),
    /// Check that every named party signed the agreement file as it is.
    Verify(verify::Args),
}

/// A failure that decides the exit status.
pub enum Failure {
    /// Bad input: exit 1.
    Input(anyhow::Error),
    /// Bad usage: exit 2.
    Usage(anyhow::Error),
    /// Already reported (e.g. `check`'s diagnostics): exit 1 without more words.
    Reported,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Input(e.into())
    }
}

pub type Outcome = Result<(), Failure>;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(args) => check::run(args),
        Command::Run(args) => run::run(args),
        Command::Explain(args) => explain::run(args),
        Command::Pseudonym(args) => pseudonym::run(args),
        Command::Suppress(args) => suppress::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Audit(args) => audit::run(args),
        Command::Test(args) => test::run(args),
        Command::Diff(args) => diff::run(args),
        Command::Render(args) => render::run(args),
        Command::Keygen(args) => keygen::run(args),
        Command::Sign(args) => sign::run(args),
        Command::Verify(args) => verify::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Reported) => ExitCode::from(1),
        // Errors are for people: one plain sentence wherever stderr goes, also when
        // the log is JSON (the log is for collectors; a failure to start is not a log line).
        Err(Failure::Input(e)) => {
            eprintln!("accord: error: {e:#}");
            ExitCode::from(1)
        }
        Err(Failure::Usage(e)) => {
            eprintln!("accord: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Loads an agreement, printing its warnings; on problems, prints each at its line.
pub fn load_agreement(path: &Path) -> Result<Arc<Agreement>, Failure> {
    match Agreement::load(path) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("{}", w.display(&path.display().to_string()));
            }
            Ok(Arc::new(loaded.agreement))
        }
        Err(LoadError::Invalid { path, diagnostics }) => match not_an_agreement(&path) {
            Some(wrong) => Err(Failure::Input(wrong.into())),
            None => {
                report(&path, &diagnostics);
                Err(Failure::Reported)
            }
        },
        Err(e) => Err(Failure::Input(e.into())),
    }
}

/// When a file that is not a valid agreement is recognisably another of Accord's files
/// (a gateway configuration, events, a key), the one sentence that says so.
pub fn not_an_agreement(path: &str) -> Option<accord::filekind::WrongKind> {
    let bytes = std::fs::read(path).ok()?;
    accord::filekind::expect(path, &bytes, accord::filekind::FileKind::Agreement).err()
}

/// Prints every diagnostic and a closing count, to stderr.
pub fn report(path: &str, diagnostics: &[accord::agreement::Diagnostic]) {
    for d in diagnostics {
        eprintln!("{}", d.display(path));
    }
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = diagnostics.len() - errors;
    if errors > 0 {
        eprintln!("accord: {path}: {errors} error(s), {warnings} warning(s); the agreement cannot be used until the errors are fixed");
    }
}

/// The pseudonym key from its file and id.
#[derive(clap::Args, Clone)]
pub struct KeyArgs {
    /// File whose bytes, exactly, are the pseudonym key (at least 32 bytes; a final
    /// newline is part of it, and warned about).
    #[arg(long, value_name = "FILE")]
    pub key_file: PathBuf,
    /// The key's public id, written before every pseudonym (e.g. `k2026`).
    #[arg(long, value_name = "ID")]
    pub key_id: String,
}

impl KeyArgs {
    pub fn pseudonymiser(&self) -> Result<Arc<Pseudonymiser>, Failure> {
        Ok(Arc::new(Pseudonymiser::new(read_key(&self.key_file, &self.key_id)?)))
    }
}

/// Reads a pseudonym key file, warning (one line on stderr) when it ends in a newline.
pub fn read_key(path: &Path, id: &str) -> Result<Key, Failure> {
    let (key, note) = Key::from_file_noting(path, id)?;
    if note == Some(KeyFileNote::TrailingNewline) {
        eprintln!(
            "accord: warning: the key file {} ends in a newline, which Accord uses as part of the key; a system that reads the same Secret without it computes other pseudonyms. Write keys without one (`head -c 32 /dev/urandom > FILE`, or `printf %s \"$KEY\" > FILE`); removing it from this key changes every pseudonym, like a new key (docs/operations.md, \"The key file\")",
            path.display()
        );
    }
    Ok(key)
}
