//! ## What it does
//! Finds a task type listed by more than one worker (or twice by one).
//!
//! ## Why is this bad?
//! The registry routes a task to the first worker that lists its type, as the design's does:
//! the later listing never receives a task, which is rarely what was meant.

use std::collections::HashMap;

use crate::lint::{Context, Finding, Rule, Severity};

pub static RULE: Rule = Rule {
    id: "task-type-shadowed",
    severity: Severity::Warning,
    summary: "a task type listed by two workers: the first one wins",
    check,
};

fn check(ctx: &Context) -> Vec<Finding> {
    let mut first: HashMap<String, (usize, String)> = HashMap::new();
    let mut out = Vec::new();
    for (i, worker) in ctx.workers() {
        let name = worker
            .get("name")
            .and_then(|n| n.as_str())
            .unwrap_or("?")
            .to_string();
        let types = worker
            .get("task_types")
            .and_then(|t| t.as_array())
            .into_iter()
            .flatten();
        for (k, t) in types.enumerate() {
            let Some(t) = t.as_str() else { continue };
            let pointer = format!("/workers/{i}/task_types/{k}");
            match first.get(t) {
                Some((j, _)) if *j == i => out.push(
                    Finding::new(pointer, format!("task type `{t}` is listed twice by `{name}`"))
                        .hint("remove the second listing"),
                ),
                Some((j, owner)) => {
                    let line = ctx.line_of(&format!("/workers/{j}/name"));
                    out.push(
                        Finding::new(
                            pointer,
                            format!("task type `{t}` is also handled by `{owner}`, which comes first"),
                        )
                        .label(format!(
                            "`{name}` never receives it: `{owner}` (line {line}) wins"
                        ))
                        .hint(format!(
                            "the first worker listed wins; remove `{t}` here or from `{owner}`"
                        )),
                    )
                }
                None => {
                    first.insert(t.to_string(), (i, name.clone()));
                }
            }
        }
    }
    out
}
