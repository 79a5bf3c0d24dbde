//! ## What it does
//! Checks that a worker's `module` can be found under its `project_path`
//! (`a/b/c.py`, `a/b/c/__init__.py` or a namespace folder `a/b/c`), or under its `src/`
//! folder (the src layout, whose package is importable once installed into the venv), and
//! that the module file defines its `function`.
//!
//! ## Why is this bad?
//! The host imports the module from `project_path`; a typo there fails every task with an
//! `ImportError` or `AttributeError` deep in a worker's stderr.

use crate::config::resolve::{DEFAULT_FUNCTION, working_dir};
use crate::lint::{Context, Finding, Rule, Severity};

pub static RULE: Rule = Rule {
    id: "module-not-found",
    severity: Severity::Warning,
    summary: "module not found under project_path, or function not defined in it",
    check,
};

fn check(ctx: &Context) -> Vec<Finding> {
    let mut out = Vec::new();
    for (i, worker) in ctx.typed_workers() {
        let Some(module) = &worker.module else { continue };
        let root = working_dir(&worker, ctx.dir());
        if !root.is_dir() {
            continue; // project-path-missing says so
        }
        let rel: std::path::PathBuf = module.split('.').collect();
        let candidates = [root.clone(), root.join("src")].into_iter().flat_map(|base| {
            [
                base.join(&rel).with_extension("py"),
                base.join(&rel).join("__init__.py"),
            ]
        });
        let found = candidates.into_iter().find(|p| p.is_file());
        match found {
            None if root.join(&rel).is_dir() || root.join("src").join(&rel).is_dir() => {}
            None => out.push(
                Finding::new(
                    format!("/workers/{i}/module"),
                    format!("module `{module}` is not under project_path"),
                )
                .label(format!("looked for {}.py in {}", rel.display(), root.display()))
                .hint("the module is imported with project_path as the working directory"),
            ),
            Some(path) => {
                let function = worker.function.as_deref().unwrap_or(DEFAULT_FUNCTION);
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let defined = text.lines().any(|l| {
                    let l = l.trim_start();
                    let l = l.strip_prefix("async ").unwrap_or(l);
                    l.strip_prefix("def ")
                        .is_some_and(|rest| rest.starts_with(&format!("{function}(")))
                        || l.starts_with(&format!("{function} ="))
                        || l.contains(&format!("import {function}"))
                        || l.contains(&format!(" as {function}"))
                });
                if !defined {
                    let pointer = if worker.function.is_some() {
                        "function"
                    } else {
                        "module"
                    };
                    out.push(
                        Finding::new(
                            format!("/workers/{i}/{pointer}"),
                            format!("`{function}` is not defined in {}", path.display()),
                        )
                        .hint("the host calls this function with no arguments; it reads the task from stdin"),
                    );
                }
            }
        }
    }
    out
}
