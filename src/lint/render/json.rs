//! `--format json`: every finding of every file, with its position and JSON pointer.

use serde::Serialize;

use super::line_col;
use crate::lint::{Diagnostic, FileReport, Severity};

#[derive(Serialize)]
struct Out<'a> {
    files: Vec<File<'a>>,
    errors: usize,
    warnings: usize,
}

#[derive(Serialize)]
struct File<'a> {
    path: String,
    diagnostics: Vec<Item<'a>>,
}

#[derive(Serialize)]
struct Item<'a> {
    #[serde(flatten)]
    diagnostic: &'a Diagnostic,
    line: Option<usize>,
    column: Option<usize>,
    end_line: Option<usize>,
    end_column: Option<usize>,
}

pub fn render(reports: &[FileReport]) -> String {
    let out = Out {
        errors: reports.iter().map(|r| r.count(Severity::Error)).sum(),
        warnings: reports.iter().map(|r| r.count(Severity::Warning)).sum(),
        files: reports
            .iter()
            .map(|r| File {
                path: r.path.display().to_string(),
                diagnostics: r
                    .diagnostics
                    .iter()
                    .map(|d| {
                        let pos = line_col(d);
                        Item {
                            diagnostic: d,
                            line: pos.map(|p| p.0),
                            column: pos.map(|p| p.1),
                            end_line: pos.map(|p| p.2),
                            end_column: pos.map(|p| p.3),
                        }
                    })
                    .collect(),
            })
            .collect(),
    };
    let mut text = serde_json::to_string_pretty(&out).expect("findings serialize");
    text.push('\n');
    text
}
