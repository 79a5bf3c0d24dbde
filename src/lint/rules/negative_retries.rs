//! ## What it does
//! Finds a negative `max_retries` (on a worker or the task source).
//!
//! ## Why is this bad?
//! There is no meaning to retrying fewer than zero times; it is a typo for 0 or a positive
//! count, and the host would have to guess.

use serde_json::Value;

use crate::lint::{Context, Finding, Rule, Severity, dotted};

pub static RULE: Rule = Rule {
    id: "negative-retries",
    severity: Severity::Error,
    summary: "a negative max_retries",
    check,
};

fn check(ctx: &Context) -> Vec<Finding> {
    let mut pointers = vec!["/task_manager/max_retries".to_string()];
    pointers.extend(ctx.workers().map(|(i, _)| format!("/workers/{i}/max_retries")));
    pointers
        .into_iter()
        .filter_map(|p| {
            let n = ctx.value().pointer(&p).and_then(Value::as_f64)?;
            (n < 0.0).then(|| {
                Finding::new(p.clone(), format!("{} is negative ({n})", dotted(&p)))
                    .hint("use 0 for no retries")
            })
        })
        .collect()
}
