//! ## What it does
//! Finds two workers with the same `name`.
//!
//! ## Why is this bad?
//! Names identify workers in logs, metrics and `/workers/<name>/health`; two workers with one
//! name make all three ambiguous.

use std::collections::HashMap;

use crate::lint::{Context, Finding, Rule, Severity};

pub static RULE: Rule = Rule {
    id: "duplicate-worker-name",
    severity: Severity::Error,
    summary: "two workers with the same name",
    check,
};

fn check(ctx: &Context) -> Vec<Finding> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, worker) in ctx.workers() {
        let Some(name) = worker.get("name").and_then(|n| n.as_str()) else {
            continue;
        };
        match seen.get(name) {
            Some(first) => {
                let line = ctx.line_of(&format!("/workers/{first}/name"));
                out.push(
                    Finding::new(
                        format!("/workers/{i}/name"),
                        format!("worker name `{name}` is used twice"),
                    )
                    .label(format!("first used on line {line}"))
                    .hint("names identify workers in logs, metrics and health checks: rename one"),
                );
            }
            None => {
                seen.insert(name, i);
            }
        }
    }
    out
}
