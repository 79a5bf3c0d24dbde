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
                let start = span.start.offset.min(report.source.len());
                let mut end = span.end.offset.clamp(start, report.source.len());
                // A value spanning lines (a block) is marked on its first line only.
                if let Some(nl) = report.source[start..end].find('\n') {
                    end = start + nl;
                }
                let mut annotation = AnnotationKind::Primary.span(start..end);
                if let Some(label) = &d.label {
                    annotation = annotation.label(label.as_str());
                }
                title.element(
                    Snippet::source(report.source.as_str())
                        .path(path.as_str())
                        .annotation(annotation),
                )
            }
            _ => title.element(annotate_snippets::Origin::path(path.as_str())),
        };
        groups.push(group);
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
