//! ## What it does
//! Finds settings this build of `wh host` reads but does not enforce (`max_cpu_percent`,
//! an enabled `worker_pool`, a Python `logging.format`, an enabled alerting observer, and
//! `max_memory_mb` off Linux).
//!
//! ## Why is this bad?
//! A limit that looks set but is not applied is worse than none: nobody watches for what it
//! was meant to prevent. The host also logs each of these when it starts.

use crate::config::support::unenforced;
use crate::lint::{Context, Finding, Rule, Severity};

pub static RULE: Rule = Rule {
    id: "not-enforced",
    severity: Severity::Warning,
    summary: "a setting this build of wh host does not enforce",
    check,
};

fn check(ctx: &Context) -> Vec<Finding> {
    let Some(config) = &ctx.loaded.config else {
        return Vec::new();
    };
    unenforced(config)
        .into_iter()
        .map(|(pointer, why)| Finding::new(pointer, why))
        .collect()
}
