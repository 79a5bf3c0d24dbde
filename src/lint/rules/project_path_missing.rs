//! ## What it does
//! Checks that each worker's `project_path` is an existing folder.
//!
//! ## Why is this bad?
//! It is the worker's working directory: the host cannot start a process in a folder that is
//! not there. A warning, since configs are often linted away from their machine.

use crate::lint::{Context, Finding, Rule, Severity};

pub static RULE: Rule = Rule {
    id: "project-path-missing",
    severity: Severity::Warning,
    summary: "project_path is not an existing folder",
    check,
};

fn check(ctx: &Context) -> Vec<Finding> {
    ctx.workers()
        .filter_map(|(i, w)| {
            let path = w.get("project_path")?.as_str()?;
            let resolved = crate::config::resolve::join(ctx.dir(), path);
            let problem = match std::fs::metadata(&resolved) {
                Ok(m) if m.is_dir() => return None,
                Ok(_) => "is not a folder",
                Err(_) => "does not exist",
            };
            Some(
                Finding::new(
                    format!("/workers/{i}/project_path"),
                    format!("project_path `{path}` {problem}"),
                )
                .label(format!("resolved to {}", resolved.display()))
                .hint("paths are relative to the config file's folder"),
            )
        })
        .collect()
}
