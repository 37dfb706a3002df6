//! The agreement: what the employer and the works council agreed, in two stages.
//!
//! 1. [`model`]: the YAML as the DPO wrote it, every value with its line and column
//!    (read from [`yaml`]'s positioned nodes).
//! 2. [`compiled`]: the immutable form the engine uses, produced by [`compile`] after
//!    every check of SPEC 2.3.
//!
//! [`Agreement::load`] and [`Agreement::parse`] run both stages and return either the
//! compiled agreement with its warnings, or every problem found.

pub mod compile;
pub mod compiled;
pub mod diagnostic;
pub mod instruments;
pub mod model;
pub mod names;
pub mod taxonomy;
pub mod yaml;

use std::path::Path;

use sha2::{Digest, Sha256};

pub use compiled::*;
pub use diagnostic::{Diagnostic, Severity};

/// Why an agreement could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read the agreement {path}")]
    Read { path: String, source: std::io::Error },
    #[error("the agreement {path} has {} problem(s)", .diagnostics.iter().filter(|d| d.is_error()).count())]
    Invalid { path: String, diagnostics: Vec<Diagnostic> },
}

/// A compiled agreement and the warnings found on the way.
#[derive(Debug)]
pub struct Loaded {
    pub agreement: Agreement,
    pub warnings: Vec<Diagnostic>,
}

/// The largest agreement file read (SPEC 2.3: a larger file is refused with a sentence).
/// An agreement of 100,000 rules is about 15 MiB.
pub const MAX_AGREEMENT_BYTES: usize = 64 << 20;

impl Agreement {
    /// Reads, checks and compiles an agreement file.
    pub fn load(path: &Path) -> Result<Loaded, LoadError> {
        use std::io::Read as _;
        let display = path.display().to_string();
        let read = |source| LoadError::Read { path: display.clone(), source };
        // Never more than one byte past the limit: `parse` then refuses it.
        let mut bytes = Vec::new();
        std::fs::File::open(path).and_then(|f| f.take(MAX_AGREEMENT_BYTES as u64 + 1).read_to_end(&mut bytes)).map_err(read)?;
        Agreement::parse(&bytes).map_err(|diagnostics| LoadError::Invalid { path: display, diagnostics })
    }

    /// Checks and compiles an agreement from its bytes; on failure, every diagnostic
    /// (errors and warnings) in file order.
    pub fn parse(bytes: &[u8]) -> Result<Loaded, Vec<Diagnostic>> {
        if bytes.len() > MAX_AGREEMENT_BYTES {
            let message = format!("the file is larger than {} MiB, too large to be an agreement; check that this is the agreement file", MAX_AGREEMENT_BYTES >> 20);
            return Err(vec![Diagnostic::error(yaml::Span { line: 1, col: 1 }, message)]);
        }
        let sha256 = hex::encode(Sha256::digest(bytes));
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let line = bytes[..e.valid_up_to()].iter().filter(|b| **b == b'\n').count() + 1;
            vec![Diagnostic::error(yaml::Span { line, col: 1 }, "the file is not UTF-8 text; save it as UTF-8")]
        })?;
        let root = yaml::parse(text).map_err(|e| vec![Diagnostic::error(e.span, e.message)])?;
        let mut diags = diagnostic::Diagnostics::default();
        yaml::duplicate_keys(&root, |key, first, again| {
            diags.error(again, format!("`{key}` is given twice in one mapping (first on line {}); keep one: YAML tools disagree on which counts", first.line));
        });
        let mut doc = model::read(&root, &mut diags);
        doc.sections = diagnostic::Sections::read(&root, text);
        let compiled = compile::compile(&doc, sha256, &mut diags);
        let all = diags.into_sorted();
        match compiled {
            Some(agreement) if !all.iter().any(Diagnostic::is_error) => Ok(Loaded { agreement, warnings: all }),
            _ => Err(all),
        }
    }
}
