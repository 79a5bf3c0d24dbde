//! Output formats of `wh lint`: human (snippets with carets), json, sarif, github.

pub mod github;
pub mod human;
pub mod json;
pub mod sarif;

/// `wh lint --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LintFormat {
    /// Each finding with its source line and a caret under the span.
    Human,
    /// One JSON document with every finding.
    Json,
    /// SARIF 2.1.0, for code-scanning UIs.
    Sarif,
    /// GitHub Actions workflow annotations (::error file=...).
    Github,
}

/// 1-based (line, column, end line, end column) of a finding, when it has a place.
pub fn line_col(d: &crate::lint::Diagnostic) -> Option<(usize, usize, usize, usize)> {
    d.span
        .map(|s| (s.start.line, s.start.col, s.end.line.max(s.start.line), s.end.col))
}
