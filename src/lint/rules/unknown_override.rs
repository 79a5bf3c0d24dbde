//! ## What it does
//! Finds `WORKERHOST_*` environment variables that match no override.
//!
//! ## Why is this bad?
//! A misspelt override (`WORKERHOST_LOGING_LEVEL`) is silently ignored, and the setting it was
//! meant to change keeps the file's value.

use crate::config::env::OVERRIDES;
use crate::lint::{Context, Finding, Rule, Severity, did_you_mean};

pub static RULE: Rule = Rule {
    id: "unknown-override",
    severity: Severity::Warning,
    summary: "a WORKERHOST_* environment variable that overrides nothing",
    check,
};

fn check(ctx: &Context) -> Vec<Finding> {
    ctx.loaded
        .unknown_overrides
        .iter()
        .map(|name| {
            let hint = match did_you_mean(name, OVERRIDES.iter().map(|(n, _)| *n)) {
                Some(c) => format!("did you mean `{c}`?"),
                None => "docs/config.md lists the WORKERHOST_* overrides".into(),
            };
            Finding::new(
                "",
                format!("environment variable `{name}` looks like an override but matches none"),
            )
            .hint(hint)
        })
        .collect()
}
