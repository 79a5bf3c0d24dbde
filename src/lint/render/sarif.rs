//! `--format sarif`: SARIF 2.1.0, which code-scanning UIs (GitHub, GitLab, VS Code) read.
//! Written with serde_json: the document is small and its shape fixed.

use serde_json::{Value, json};

use super::line_col;
use crate::lint::{FileReport, Severity, rules};

pub fn render(reports: &[FileReport]) -> String {
    let mut rule_ids: Vec<&str> = rules::ALL.iter().map(|r| r.id).collect();
    for r in reports {
        for d in &r.diagnostics {
            if !rule_ids.contains(&d.rule) {
                rule_ids.push(d.rule);
            }
        }
    }
    let rules_json: Vec<Value> = rule_ids
        .iter()
        .map(|id| {
            let summary = rules::ALL.iter().find(|r| r.id == *id).map_or(
                match *id {
                    "unknown-key" => "a key the config schema does not know",
                    "invalid-value" => "a value outside the allowed set",
                    "unsupported-task-manager" => "a task source type wh does not support",
                    "missing-key" => "a required key is missing",
                    "wrong-type" => "a value of the wrong type",
                    "syntax" => "the file does not parse",
                    _ => "a schema violation",
                },
                |r| r.summary,
            );
            json!({
                "id": id,
                "shortDescription": {"text": summary},
                "helpUri": "https://github.com/search?q=wh+docs%2Fconfig.md",
            })
        })
        .collect();
    let results: Vec<Value> = reports
        .iter()
        .flat_map(|r| {
            r.diagnostics.iter().map(move |d| {
                let mut location = json!({"physicalLocation": {"artifactLocation": {"uri": uri(&r.path)}}});
                if let Some((line, col, end_line, end_col)) = line_col(d) {
                    location["physicalLocation"]["region"] = json!({
                        "startLine": line, "startColumn": col, "endLine": end_line, "endColumn": end_col.max(1),
                    });
                }
                let mut text = d.message.clone();
                if let Some(hint) = &d.hint {
                    text.push_str(&format!(" ({hint})"));
                }
                json!({
                    "ruleId": d.rule,
                    "level": match d.severity { Severity::Error => "error", Severity::Warning => "warning" },
                    "message": {"text": text},
                    "locations": [location],
                })
            })
        })
        .collect();
    let doc = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "wh lint", "version": env!("CARGO_PKG_VERSION"), "rules": rules_json}},
            "results": results,
        }],
    });
    let mut text = serde_json::to_string_pretty(&doc).expect("SARIF serializes");
    text.push('\n');
    text
}

fn uri(path: &std::path::Path) -> String {
    path.to_string_lossy().replace('\\', "/").replace(' ', "%20")
}
