//! ## What it does
//! Checks that what starts a worker is there: `venv_python` and `command[0]` exist and are
//! executable (or, without a `/`, are found on `$PATH`), and `script` exists.
//!
//! ## Why is this bad?
//! The host would fail every task of that worker at spawn time. It is a warning, not an
//! error, because a config is often linted on a machine other than the one it runs on.

use std::path::{Path, PathBuf};

use crate::config::resolve::working_dir;
use crate::lint::{Context, Finding, Rule, Severity};

pub static RULE: Rule = Rule {
    id: "executable-missing",
    severity: Severity::Warning,
    summary: "venv_python, script or command[0] missing or not executable",
    check,
};

fn check(ctx: &Context) -> Vec<Finding> {
    let mut out = Vec::new();
    for (i, worker) in ctx.typed_workers() {
        let cwd = working_dir(&worker, ctx.dir());
        if let Some(python) = &worker.venv_python
            && !super::windows_venv_path::is_windows_path(python)
            && (worker.module.is_some() || worker.script.is_some())
        {
            let resolved = crate::config::resolve::interpreter(&worker, ctx.dir());
            if let Some(problem) = problem(&resolved, python.contains('/')) {
                out.push(
                    Finding::new(format!("/workers/{i}/venv_python"), format!("venv_python `{python}` {problem}"))
                        .label(format!("resolved to {}", resolved.display()))
                        .hint("create the virtualenv (python3 -m venv venv) or fix the path; paths are relative to the config file"),
                );
            }
        }
        if let Some(script) = &worker.script {
            let resolved = crate::config::resolve::join(&cwd, script);
            if !resolved.is_file() {
                out.push(
                    Finding::new(
                        format!("/workers/{i}/script"),
                        format!("script `{script}` does not exist"),
                    )
                    .label(format!("resolved to {}", resolved.display()))
                    .hint("scripts are relative to project_path"),
                );
            }
        }
        if let Some(program) = worker.command.as_ref().and_then(|c| c.first()) {
            let has_slash = program.contains('/');
            let resolved = if has_slash {
                crate::config::resolve::join(&cwd, program)
            } else {
                PathBuf::from(program)
            };
            if let Some(problem) = problem(&resolved, has_slash) {
                out.push(
                    Finding::new(
                        format!("/workers/{i}/command/0"),
                        format!("command `{program}` {problem}"),
                    )
                    .label(format!("resolved to {}", resolved.display()))
                    .hint(
                        "a path in command[0] is relative to project_path; a bare name is looked up on $PATH",
                    ),
                );
            }
        }
    }
    out
}

/// Why `path` cannot be executed, if it cannot.
fn problem(path: &Path, is_path: bool) -> Option<&'static str> {
    if !is_path {
        return if on_path(path) {
            None
        } else {
            Some("is not found on $PATH")
        };
    }
    match std::fs::metadata(path) {
        Err(_) => Some("does not exist"),
        Ok(m) if m.is_dir() => Some("is a directory"),
        Ok(m) if !is_executable(&m) => Some("is not executable"),
        Ok(_) => None,
    }
}

fn on_path(program: &Path) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths)
            .any(|dir| std::fs::metadata(dir.join(program)).is_ok_and(|m| m.is_file() && is_executable(&m)))
    })
}

#[cfg(unix)]
fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_meta: &std::fs::Metadata) -> bool {
    true
}
