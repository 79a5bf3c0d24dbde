//! `wh lint`: checks a config against its schema and against common sense, and points every
//! finding at `file:line:col`.
//!
//! Findings come from three places, all with a rule id: the loader (syntax, `${VAR}`,
//! overrides), the JSON Schema (mapped back to YAML positions, with "did you mean"), and the
//! rules in `rules/`, one per file. `render/` formats them (human, json, sarif, github).

pub mod render;
pub mod rules;
mod schema;

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::config::load::{self, Environment, Loaded, ReadError};
use crate::config::yaml::Span;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

/// One finding, located.
#[derive(Debug, Clone, Serialize)]
pub struct Diagnostic {
    pub rule: &'static str,
    pub severity: Severity,
    pub message: String,
    /// JSON pointer of the value (empty for the whole file).
    pub pointer: String,
    #[serde(skip)]
    pub span: Option<Span>,
    /// A short label under the caret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// All findings for one file, with its text for snippets.
#[derive(Debug)]
pub struct FileReport {
    pub path: PathBuf,
    pub source: String,
    pub diagnostics: Vec<Diagnostic>,
}

impl FileReport {
    pub fn count(&self, severity: Severity) -> usize {
        self.diagnostics.iter().filter(|d| d.severity == severity).count()
    }
}

/// What a rule sees.
pub struct Context<'a> {
    pub loaded: &'a Loaded,
    /// The config before `${VAR}` substitution (for rules about what is written).
    pub raw: Value,
}

impl Context<'_> {
    /// The config after substitution and overrides.
    pub fn value(&self) -> &Value {
        &self.loaded.value
    }

    /// Config paths are relative to this folder.
    pub fn dir(&self) -> &Path {
        &self.loaded.dir
    }

    /// The line a pointer is written on, for messages that point elsewhere.
    pub fn line_of(&self, pointer: &str) -> usize {
        self.loaded.tree.span_at(pointer).start.line
    }

    /// The workers that deserialize as the model's `Worker`, with their index (rules about
    /// paths need the typed entry; malformed ones are the schema's to report).
    pub fn typed_workers(&self) -> impl Iterator<Item = (usize, crate::config::model::Worker)> + '_ {
        self.workers()
            .filter_map(|(i, w)| Some((i, serde_json::from_value(w.clone().into()).ok()?)))
    }

    /// The workers as (index, object), skipping entries that are not objects.
    pub fn workers(&self) -> impl Iterator<Item = (usize, &serde_json::Map<String, Value>)> {
        self.value()
            .get("workers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
            .filter_map(|(i, w)| Some((i, w.as_object()?)))
    }
}

/// What a rule reports; the engine adds the rule id, severity and position.
pub struct Finding {
    pub pointer: String,
    /// Overrides the rule's severity for this finding.
    pub severity: Option<Severity>,
    /// Point at the key rather than the value.
    pub at_key: bool,
    pub message: String,
    pub label: Option<String>,
    pub hint: Option<String>,
}

impl Finding {
    pub fn new(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            pointer: pointer.into(),
            severity: None,
            at_key: false,
            message: message.into(),
            label: None,
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    pub fn warning(mut self) -> Self {
        self.severity = Some(Severity::Warning);
        self
    }

    pub fn at_key(mut self) -> Self {
        self.at_key = true;
        self
    }
}

/// A lint rule beyond the schema.
pub struct Rule {
    pub id: &'static str,
    pub severity: Severity,
    /// One line: what it finds.
    pub summary: &'static str,
    pub check: fn(&Context) -> Vec<Finding>,
}

/// Lints one file. `Err` only when the file cannot be read as text at all.
pub fn lint_file(path: &Path, env: &Environment) -> Result<FileReport, ReadError> {
    match load::load(path, env) {
        Ok(loaded) => Ok(lint_loaded(&loaded)),
        Err(ReadError::Syntax {
            message,
            line,
            col,
            offset,
            source_text,
        }) => {
            let source = source_text
                .or_else(|| {
                    std::fs::read(path)
                        .ok()
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                })
                .unwrap_or_default();
            let span = offset.map(|o| {
                let pos = crate::config::yaml::Pos {
                    line: line.unwrap_or(1),
                    col: col.unwrap_or(1),
                    offset: o,
                };
                Span { start: pos, end: pos }
            });
            Ok(FileReport {
                path: path.to_path_buf(),
                source,
                diagnostics: vec![Diagnostic {
                    rule: "syntax",
                    severity: Severity::Error,
                    message,
                    pointer: String::new(),
                    span,
                    label: None,
                    hint: Some("fix the syntax first: the other checks run on a file that parses".into()),
                }],
            })
        }
        Err(other) => Err(other),
    }
}

/// Lints a loaded config.
pub fn lint_loaded(loaded: &Loaded) -> FileReport {
    let ctx = Context {
        loaded,
        raw: loaded.tree.to_json(),
    };
    let mut diagnostics = schema::diagnostics(loaded);
    for rule in rules::ALL {
        for f in (rule.check)(&ctx) {
            let span = if f.at_key {
                loaded
                    .tree
                    .key_span_at(&f.pointer)
                    .or_else(|| Some(loaded.tree.span_at(&f.pointer)))
            } else if f.pointer.is_empty() {
                None
            } else {
                Some(loaded.tree.span_at(&f.pointer))
            };
            diagnostics.push(Diagnostic {
                rule: rule.id,
                severity: f.severity.unwrap_or(rule.severity),
                message: f.message,
                pointer: f.pointer,
                span,
                label: f.label,
                hint: f.hint,
            });
        }
    }
    diagnostics.sort_by_key(|d| (d.span.map_or((0, 0), |s| (s.start.line, s.start.col)), d.rule));
    FileReport {
        path: loaded.path.clone(),
        source: loaded.source.clone(),
        diagnostics,
    }
}

/// "did you mean `x`?" among `options`, when one is close.
pub fn did_you_mean<'a>(word: &str, options: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    options
        .into_iter()
        .map(|o| {
            (
                strsim::damerau_levenshtein(&word.to_lowercase(), &o.to_lowercase()),
                o,
            )
        })
        .filter(|(d, o)| *d <= 2.max(o.len() / 3))
        .min()
        .map(|(_, o)| o)
}

/// `workers[2].timeout` for `/workers/2/timeout`: how people say where a value is.
pub fn dotted(pointer: &str) -> String {
    let mut out = String::new();
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if seg.chars().all(|c| c.is_ascii_digit()) && !seg.is_empty() {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg);
        }
    }
    if out.is_empty() { "the file".into() } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_paths_read_naturally() {
        assert_eq!(dotted("/workers/2/timeout"), "workers[2].timeout");
        assert_eq!(dotted(""), "the file");
        assert_eq!(dotted("/workers/0/env/A~1B"), "workers[0].env.A/B");
    }

    #[test]
    fn suggestions_are_close_only() {
        assert_eq!(did_you_mean("timout", ["timeout", "name"]), Some("timeout"));
        assert_eq!(did_you_mean("kafka", ["local", "http", "redis", "amqp"]), None);
        assert_eq!(
            did_you_mean("htp", ["local", "http", "redis", "amqp"]),
            Some("http")
        );
    }
}
