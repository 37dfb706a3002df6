//! Problems found in an agreement, each at its place in the file.
//!
//! Parsing and checking never stop at the first problem: they collect every
//! [`Diagnostic`] and the caller reports them all at once, as
//! `FILE:LINE:COL: error: what is wrong, and what would be right`.

use std::fmt;

use super::yaml::{Node, NodeKind, Span};

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

/// The top-level sections of an agreement, in the order the language lists them.
pub const SECTIONS: [&str; 6] = ["agreement", "purposes", "categories", "schedules", "pseudonymisation", "rules"];

/// Where the file's top-level sections stand, so that a missing one is reported where
/// it belongs, at a line the DPO can go to (never at 0:0).
#[derive(Clone, Debug, Default)]
pub struct Sections {
    /// Each top-level key as written, at its position.
    keys: Vec<(String, Span)>,
    /// The line after the file's last.
    end: Span,
}

impl Sections {
    pub fn read(root: &Node, text: &str) -> Sections {
        let keys = match &root.kind {
            NodeKind::Map(entries) => entries.iter().filter_map(|(k, _)| Some((k.as_scalar()?.to_string(), k.span))).collect(),
            _ => Vec::new(),
        };
        Sections { keys, end: Span { line: text.lines().count() + 1, col: 1 } }
    }

    pub fn has(&self, section: &str) -> bool {
        self.keys.iter().any(|(k, _)| k == section)
    }

    /// Where a missing `section` belongs, and those words: above the first section of
    /// the file that the language lists after it, else at the end of the file (at its
    /// top when it has no sections).
    pub fn place(&self, section: &str) -> (Span, String) {
        let rank = |name: &str| SECTIONS.iter().position(|s| *s == name);
        let own = rank(section).unwrap_or(SECTIONS.len());
        let next = self.keys.iter().filter(|(k, _)| rank(k).is_some_and(|r| r > own)).min_by_key(|(_, span)| *span);
        match next {
            Some((k, span)) => (Span { line: span.line, col: 1 }, format!("above `{k}:` (line {})", span.line)),
            None if self.keys.is_empty() => (Span { line: 1, col: 1 }, "at the top of the file".to_string()),
            None => (self.end, format!("at the end of the file (line {})", self.end.line)),
        }
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
    fn a_missing_section_belongs_above_the_next_or_at_the_end() {
        let text = "agreement: { id: a }\nschedules: {}\nrules: []\n";
        let sections = Sections::read(&super::super::yaml::parse(text).unwrap(), text);
        assert_eq!(sections.place("purposes"), (Span { line: 2, col: 1 }, "above `schedules:` (line 2)".to_string()));
        assert_eq!(sections.place("pseudonymisation").0, Span { line: 3, col: 1 });
        let text = "purposes: {}\n";
        let sections = Sections::read(&super::super::yaml::parse(text).unwrap(), text);
        assert_eq!(sections.place("agreement").0, Span { line: 1, col: 1 });
        assert_eq!(sections.place("rules"), (Span { line: 2, col: 1 }, "at the end of the file (line 2)".to_string()));
        let sections = Sections::read(&super::super::yaml::parse("").unwrap(), "");
        assert_eq!(sections.place("rules"), (Span { line: 1, col: 1 }, "at the top of the file".to_string()));
    }

    #[test]
    fn renders_file_line_column() {
        let d = Diagnostic::error(Span { line: 3, col: 5 }, "bad");
        assert_eq!(d.display("a.yaml").to_string(), "a.yaml:3:5: error: bad");
    }
}
