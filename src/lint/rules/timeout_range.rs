//! ## What it does
//! Checks time settings (`workers[].timeout`, `task_manager.timeout`,
//! `task_manager.poll_interval`): more than zero, and at most a day.
//!
//! ## Why is this bad?
//! A zero or negative timeout kills every task at once; one longer than a day is almost
//! always a unit mistake (milliseconds for seconds) and lets a hung worker hold its slot.

use serde_json::Value;

use crate::lint::{Context, Finding, Rule, Severity, dotted};

pub static RULE: Rule = Rule {
    id: "timeout-range",
    severity: Severity::Error,
    summary: "a timeout that is zero, negative or longer than a day",
    check,
};

const DAY: f64 = 86_400.0;

fn check(ctx: &Context) -> Vec<Finding> {
    let mut pointers = vec![
        "/task_manager/timeout".to_string(),
        "/task_manager/poll_interval".to_string(),
    ];
    pointers.extend(ctx.workers().map(|(i, _)| format!("/workers/{i}/timeout")));
    pointers
        .into_iter()
        .filter_map(|p| {
            let secs = ctx.value().pointer(&p).and_then(Value::as_f64)?;
            let problem = if secs <= 0.0 {
                "must be more than 0 seconds"
            } else if secs > DAY {
                "is longer than a day"
            } else {
                return None;
            };
            Some(
                Finding::new(p.clone(), format!("{} {problem} ({secs} s)", dotted(&p)))
                    .hint("times are in seconds: 300 is five minutes"),
            )
        })
        .collect()
}
