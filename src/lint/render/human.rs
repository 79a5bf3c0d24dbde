//! The terminal format: `error[rule]: message`, `--> file:line:col`, the source line with a
//! caret under the span, and a hint (rendered with annotate-snippets, as rustc and ruff do).

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};

use crate::lint::{FileReport, Severity};

pub fn render(report: &FileReport, color: bool) -> String {
    let renderer = if color {
        Renderer::styled()
    } else {
        Renderer::plain()
    };
    let path = report.path.display().to_string();
    let mut out = String::new();
    for d in &report.diagnostics {
        let level = match d.severity {
            Severity::Error => Level::ERROR,
            Severity::Warning => Level::WARNING,
        };
        let title = level.primary_title(d.message.as_str()).id(d.rule);
        let mut groups = Vec::new();
        let group = match d.span {
            Some(span) if !report.source.is_empty() => {
                let source = report.source.as_str();
                let start = floor_char(source, span.start.offset.min(source.len()));
                let mut end = floor_char(source, span.end.offset.clamp(start, source.len()));
                // A value spanning lines (a block) is marked on its first line only.
                if let Some(nl) = source[start..end].find('\n') {
                    end = start + nl;
                }
                // Hand the renderer only the finding's line: a whole file per finding would
                // make a large config quadratic.
                let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
                let line_end = source[end..].find('\n').map_or(source.len(), |i| end + i);
                let mut annotation = AnnotationKind::Primary.span(start - line_start..end - line_start);
                if let Some(label) = &d.label {
                    annotation = annotation.label(label.as_str());
                }
                title.element(
                    Snippet::source(&source[line_start..line_end])
                        .line_start(span.start.line)
                        .path(path.as_str())
                        .annotation(annotation),
                )
            }
            _ => title.element(annotate_snippets::Origin::path(path.as_str())),
        };
        groups.push(group);
        let at = format!("at {}", d.pointer);
        if !d.pointer.is_empty() {
            groups.push(Group::with_title(Level::NOTE.secondary_title(at.as_str())));
        }
        if let Some(hint) = &d.hint {
            groups.push(Group::with_title(Level::HELP.secondary_title(hint.as_str())));
        }
        out.push_str(&renderer.render(&groups));
        out.push_str("\n\n");
    }
    out
}

/// "2 errors, 1 warning in 3 files", or "no problems in 3 files".
pub fn summary(reports: &[FileReport], unreadable: usize) -> String {
    let errors: usize = reports.iter().map(|r| r.count(Severity::Error)).sum();
    let warnings: usize = reports.iter().map(|r| r.count(Severity::Warning)).sum();
    let files = reports.len() + unreadable;
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    let mut parts = Vec::new();
    if errors > 0 {
        parts.push(plural(errors, "error"));
    }
    if warnings > 0 {
        parts.push(plural(warnings, "warning"));
    }
    if unreadable > 0 {
        parts.push(format!("{unreadable} unreadable"));
    }
    let found = if parts.is_empty() {
        "no problems".to_string()
    } else {
        parts.join(", ")
    };
    format!("{found} in {}\n", plural(files, "file"))
}

/// The largest char boundary at or before `i`.
fn floor_char(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}
