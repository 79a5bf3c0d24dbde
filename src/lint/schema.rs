//! Findings of the JSON Schema, located in the YAML and explained (with "did you mean").

use super::{Diagnostic, Severity, did_you_mean, dotted};
use crate::config::load::{Loaded, SchemaKind};

pub fn diagnostics(loaded: &Loaded) -> Vec<Diagnostic> {
    let tree = &loaded.tree;
    let mut out = Vec::new();
    for p in &loaded.schema {
        match &p.kind {
            SchemaKind::UnknownKeys { keys, allowed } => {
                for key in keys {
                    let pointer = format!("{}/{}", p.pointer, crate::config::env::escape(key));
                    let hint = match did_you_mean(key, allowed.iter().map(String::as_str)) {
                        Some(c) => format!("did you mean `{c}`?"),
                        None if allowed.is_empty() => "remove it".into(),
                        None => format!("allowed here: {}", allowed.join(", ")),
                    };
                    out.push(Diagnostic {
                        rule: "unknown-key",
                        severity: Severity::Error,
                        message: format!("unknown key `{key}` in {}", dotted(&p.pointer)),
                        span: tree
                            .key_span_at(&pointer)
                            .or_else(|| Some(tree.span_at(&p.pointer))),
                        pointer,
                        label: Some("not a field of this section".into()),
                        hint: Some(hint),
                    });
                }
            }
            SchemaKind::NotInEnum { options } => {
                let found = loaded
                    .value
                    .pointer(&p.pointer)
                    .map(|v| v.to_string())
                    .unwrap_or_default();
                let word = found.trim_matches('"').to_string();
                let task_manager = p.pointer == "/task_manager/type";
                let hint = match did_you_mean(&word, options.iter().map(String::as_str)) {
                    Some(c) => format!("did you mean `{c}`?"),
                    None => format!("use one of: {}", options.join(", ")),
                };
                out.push(Diagnostic {
                    rule: if task_manager {
                        "unsupported-task-manager"
                    } else {
                        "invalid-value"
                    },
                    severity: Severity::Error,
                    message: if task_manager {
                        format!(
                            "task source type `{word}` is not supported ({})",
                            options.join(", ")
                        )
                    } else {
                        format!(
                            "`{word}` is not a valid {} ({})",
                            dotted(&p.pointer),
                            options.join(", ")
                        )
                    },
                    pointer: p.pointer.clone(),
                    span: Some(tree.span_at(&p.pointer)),
                    label: None,
                    hint: Some(hint),
                });
            }
            SchemaKind::Missing { key } => out.push(Diagnostic {
                rule: "missing-key",
                severity: Severity::Error,
                message: format!("{} has no `{key}`", dotted(&p.pointer)),
                pointer: p.pointer.clone(),
                span: Some(tree.span_at(&p.pointer)),
                label: Some(format!("`{key}` is required here")),
                hint: None,
            }),
            SchemaKind::WrongType { expected } => out.push(Diagnostic {
                rule: "wrong-type",
                severity: Severity::Error,
                message: format!(
                    "{} must be {expected}, not {}",
                    dotted(&p.pointer),
                    loaded
                        .value
                        .pointer(&p.pointer)
                        .map_or("missing", crate::config::load::value_kind)
                ),
                pointer: p.pointer.clone(),
                span: Some(tree.span_at(&p.pointer)),
                label: None,
                hint: None,
            }),
            SchemaKind::Other => out.push(Diagnostic {
                rule: "schema",
                severity: Severity::Error,
                message: format!("{}: {}", dotted(&p.pointer), p.message),
                pointer: p.pointer.clone(),
                span: Some(tree.span_at(&p.pointer)),
                label: None,
                hint: None,
            }),
        }
    }
    out
}
