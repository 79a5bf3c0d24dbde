//! `--format github`: workflow commands that GitHub Actions turns into annotations on the
//! changed lines (`::error file=F,line=L,col=C,title=T::message`).

use super::line_col;
use crate::lint::{FileReport, Severity};

pub fn render(reports: &[FileReport]) -> String {
    let mut out = String::new();
    for r in reports {
        for d in &r.diagnostics {
            let kind = match d.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            let mut props = vec![format!("file={}", property(&r.path.display().to_string()))];
            if let Some((line, col, end_line, end_col)) = line_col(d) {
                props.push(format!("line={line}"));
                props.push(format!("col={col}"));
                props.push(format!("endLine={end_line}"));
                props.push(format!("endColumn={end_col}"));
            }
            props.push(format!("title={}", property(&format!("wh lint: {}", d.rule))));
            let mut message = d.message.clone();
            if let Some(hint) = &d.hint {
                message.push_str(&format!("\nhint: {hint}"));
            }
            out.push_str(&format!("::{kind} {}::{}\n", props.join(","), data(&message)));
        }
    }
    out
}

/// Escaping of a workflow command's message.
fn data(text: &str) -> String {
    text.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// Escaping of a workflow command's property value.
fn property(text: &str) -> String {
    data(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_the_actions_toolkit() {
        assert_eq!(data("50%\nnext"), "50%25%0Anext");
        assert_eq!(property("a:b,c"), "a%3Ab%2Cc");
    }
}
