//! A YAML document as a tree of nodes that remember where they stood in the file.
//!
//! The agreement is parsed in two stages (see `agreement/mod.rs`); this is the layer
//! below both: `yaml-rust2`'s event parser turned into [`Node`]s with a line and column
//! each, so every later diagnostic can point at the exact place a DPO has to edit.
//! Anchors, aliases and tags are refused: an agreement should read as it is written.

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A position in the agreement file, 1-based.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span {
    pub line: usize,
    pub col: usize,
}

impl Span {
    fn from_marker(m: Marker) -> Span {
        // yaml-rust2 counts lines from 1 and columns from 0.
        Span { line: m.line(), col: m.col() + 1 }
    }
}

/// One YAML node with its position.
#[derive(Clone, Debug)]
pub struct Node {
    pub span: Span,
    pub kind: NodeKind,
}

#[derive(Clone, Debug)]
pub enum NodeKind {
    /// A scalar as written; `quoted` tells `"4"` from `4`.
    Scalar { text: String, quoted: bool },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The scalar's text, if this is a scalar.
    pub fn as_scalar(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// A plain `~`, `null` or empty scalar.
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, NodeKind::Scalar { text, quoted: false }
            if text.is_empty() || text == "~" || text == "null" || text == "Null" || text == "NULL")
    }

    /// What a DPO would call this kind of value, for error messages.
    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            NodeKind::Scalar { .. } if self.is_null() => "nothing",
            NodeKind::Scalar { .. } => "a single value",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
        }
    }
}

/// A YAML syntax error, or a construct the agreement language does not allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub span: Span,
    pub message: String,
}

/// Parses one YAML document. An empty file is a null scalar at 1:1.
pub fn parse(source: &str) -> Result<Node, SyntaxError> {
    let mut builder = Builder { source: Some(source), ..Builder::default() };
    let mut parser = Parser::new_from_str(source);
    // Every document is read, so that a second one is refused, never ignored.
    parser.load(&mut builder, true).map_err(|e| SyntaxError {
        span: Span::from_marker(*e.marker()),
        message: format!("this is not valid YAML: {}", e.info()),
    })?;
    if let Some(err) = builder.error {
        return Err(err);
    }
    Ok(builder.root.unwrap_or(Node {
        span: Span { line: 1, col: 1 },
        kind: NodeKind::Scalar { text: String::new(), quoted: false },
    }))
}

#[derive(Default)]
struct Builder<'s> {
    source: Option<&'s str>,
    stack: Vec<Open>,
    root: Option<Node>,
    error: Option<SyntaxError>,
}

enum Open {
    Seq(Span, Vec<Node>),
    Map(Span, Vec<(Node, Node)>, Option<Node>),
}

impl Builder<'_> {
    fn refuse(&mut self, span: Span, what: &str) {
        if self.error.is_none() {
            self.error = Some(SyntaxError {
                span,
                message: format!("{what} are not allowed in an agreement; write the value out in full"),
            });
        }
    }

    /// Where the `&` of an anchor stands: the parser marks the node, which for a block
    /// mapping or list starts on the line after its anchor.
    fn anchor_span(&self, mark: Marker) -> Span {
        let Some(source) = self.source else { return Span::from_marker(mark) };
        let end = source.char_indices().nth(mark.index()).map_or(source.len(), |(i, _)| i);
        let Some(amp) = source[..end].rfind('&') else { return Span::from_marker(mark) };
        let line = source[..amp].bytes().filter(|b| *b == b'\n').count() + 1;
        let col = source[..amp].rfind('\n').map_or(amp, |nl| amp - nl - 1) + 1;
        Span { line, col }
    }

    fn push_node(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Open::Seq(_, items)) => items.push(node),
            Some(Open::Map(_, entries, pending)) => match pending.take() {
                None => *pending = Some(node),
                Some(key) => entries.push((key, node)),
            },
        }
    }
}

impl MarkedEventReceiver for Builder<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let span = Span::from_marker(mark);
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                if anchor != 0 {
                    self.refuse(self.anchor_span(mark), "anchors (&name)");
                }
                if tag.is_some() {
                    self.refuse(span, "tags (!name)");
                }
                let quoted = !matches!(style, TScalarStyle::Plain);
                self.push_node(Node { span, kind: NodeKind::Scalar { text, quoted } });
            }
            Event::SequenceStart(anchor, tag) => {
                if anchor != 0 {
                    self.refuse(self.anchor_span(mark), "anchors (&name)");
                }
                if tag.is_some() {
                    self.refuse(span, "tags (!name)");
                }
                self.stack.push(Open::Seq(span, Vec::new()));
            }
            Event::MappingStart(anchor, tag) => {
                if anchor != 0 {
                    self.refuse(self.anchor_span(mark), "anchors (&name)");
                }
                if tag.is_some() {
                    self.refuse(span, "tags (!name)");
                }
                self.stack.push(Open::Map(span, Vec::new(), None));
            }
            Event::SequenceEnd => {
                if let Some(Open::Seq(span, items)) = self.stack.pop() {
                    self.push_node(Node { span, kind: NodeKind::Seq(items) });
                }
            }
            Event::MappingEnd => {
                if let Some(Open::Map(span, entries, _)) = self.stack.pop() {
                    self.push_node(Node { span, kind: NodeKind::Map(entries) });
                }
            }
            Event::Alias(_) => self.refuse(span, "aliases (*name)"),
            Event::DocumentStart => {
                if self.root.is_some() && self.error.is_none() && self.stack.is_empty() {
                    self.error = Some(SyntaxError { span, message: "an agreement file holds one YAML document; remove the second `---`".into() });
                }
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
    }
}

/// Calls `found(key, first, again)` for every key given twice in one mapping, anywhere
/// in the tree (SPEC 2.3: an error, since YAML tools disagree on which one counts).
/// Linear in the size of the tree; no recursion.
pub fn duplicate_keys(root: &Node, mut found: impl FnMut(&str, Span, Span)) {
    let mut todo = vec![root];
    while let Some(node) = todo.pop() {
        match &node.kind {
            NodeKind::Scalar { .. } => {}
            NodeKind::Seq(items) => todo.extend(items.iter()),
            NodeKind::Map(entries) => {
                let mut seen: std::collections::HashMap<&str, Span> = std::collections::HashMap::with_capacity(entries.len());
                for (k, v) in entries {
                    if let Some(text) = k.as_scalar() {
                        if let Some(first) = seen.insert(text, k.span) {
                            found(text, first, k.span);
                            seen.insert(text, first);
                        }
                    }
                    todo.push(v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_keep_their_line_and_column() {
        let doc = parse("a:\n  b: [x, y]\n  c: \"4\"\n").unwrap();
        let NodeKind::Map(top) = &doc.kind else { panic!("not a map") };
        let (key, value) = &top[0];
        assert_eq!(key.as_scalar(), Some("a"));
        assert_eq!(key.span, Span { line: 1, col: 1 });
        let NodeKind::Map(inner) = &value.kind else { panic!("not a map") };
        assert_eq!(inner[0].0.span, Span { line: 2, col: 3 });
        assert!(matches!(inner[0].1.kind, NodeKind::Seq(ref v) if v.len() == 2));
        assert!(matches!(inner[1].1.kind, NodeKind::Scalar { quoted: true, .. }));
    }

    #[test]
    fn syntax_errors_and_aliases_are_refused_with_a_position() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.span.line >= 1, "{err:?}");
        let err = parse("a: &x 1\nb: *x\n").unwrap_err();
        assert_eq!(err.span.line, 1);
        assert!(err.message.contains("anchors"));
    }

    /// Issue 10: an anchor at its own line, a second document refused, duplicate keys
    /// found anywhere.
    #[test]
    fn issue_10_anchors_documents_and_duplicate_keys() {
        let err = parse("a: 1\nb: &x\n  c: 2\n").unwrap_err();
        assert_eq!((err.span.line, err.span.col), (2, 4), "{err:?}");
        let err = parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert!(err.message.contains("one YAML document"), "{err:?}");
        assert_eq!(err.span.line, 2);
        let root = parse("a:\n  x: 1\n  y: [ {p: 1, p: 2} ]\n  x: 3\n").unwrap();
        let mut found = Vec::new();
        duplicate_keys(&root, |k, first, again| found.push((k.to_string(), first.line, again.line)));
        found.sort();
        assert_eq!(found, [("p".to_string(), 3, 3), ("x".to_string(), 2, 4)]);
    }
}
