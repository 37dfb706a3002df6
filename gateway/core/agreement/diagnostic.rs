//! Problems found in an agreement, each at its place in the file.
//!
//! Parsing and checking never stop at the first problem: they collect every
//! [`Diagnostic`] and the caller reports them all at once, as
//! `FILE:LINE:COL: error: what is wrong, and what would be right`.

use std::fmt;

use super::yaml::Span;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub span: Span,
    pub message: String,
}

impl Diagnostic {
    pub fn error(span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic { severity: Severity::Error, span, message: message.into() }
    }

    pub fn warning(span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic { severity: Severity::Warning, span, message: message.into() }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Shows the diagnostic as `FILE:LINE:COL: error: message`.
    pub fn display<'a>(&'a self, file: &'a str) -> impl fmt::Display + 'a {
        DisplayIn { diag: self, file }
    }
}

struct DisplayIn<'a> {
    diag: &'a Diagnostic,
    file: &'a str,
}

impl fmt::Display for DisplayIn<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.diag.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{}:{}:{}: {level}: {}", self.file, self.diag.span.line, self.diag.span.col, self.diag.message)
    }
}

/// Collects diagnostics while the agreement is read and checked.
#[derive(Default, Debug)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn error(&mut self, span: Span, message: impl Into<String>) {
        self.items.push(Diagnostic::error(span, message));
    }

    pub fn warning(&mut self, span: Span, message: impl Into<String>) {
        self.items.push(Diagnostic::warning(span, message));
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(Diagnostic::is_error)
    }

    /// Every diagnostic, in file order (errors before warnings at the same place).
    pub fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.items.sort_by_key(|d| (d.span, d.severity));
        self.items.dedup();
        self.items
    }
}

/// "did you mean `x`?" for a misspelt name, when one of `known` is close.
pub fn suggest<'a>(typo: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    let best = known
        .into_iter()
        .map(|k| (strsim::jaro_winkler(&typo.to_lowercase(), &k.to_lowercase()), k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((_, k)) => format!("; did you mean `{k}`?"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_nearest_name_only_when_it_is_close() {
        assert_eq!(suggest("purpsoes", ["purposes", "rules"]), "; did you mean `purposes`?");
        assert_eq!(suggest("zzz", ["purposes", "rules"]), "");
    }

    #[test]
    fn renders_file_line_column() {
        let d = Diagnostic::error(Span { line: 3, col: 5 }, "bad");
        assert_eq!(d.display("a.yaml").to_string(), "a.yaml:3:5: error: bad");
    }
}
