//! ## What it does
//! Finds a Windows virtualenv interpreter (`venv/Scripts/python.exe`, backslashes) in a
//! config linted on a POSIX host.
//!
//! ## Why is this bad?
//! It cannot run here: POSIX virtualenvs keep the interpreter in `venv/bin/python`. The design's
//! own example mixes both; a config is for one platform.

use crate::lint::{Context, Finding, Rule, Severity};

pub static RULE: Rule = Rule {
    id: "windows-venv-path",
    severity: Severity::Warning,
    summary: "a Windows venv path (Scripts/python.exe) on a POSIX host",
    check,
};

/// `Scripts/python.exe`, a `.exe`, or backslashes.
pub fn is_windows_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    lower.contains('\\') || lower.ends_with(".exe") || lower.contains("/scripts/python")
}

fn check(ctx: &Context) -> Vec<Finding> {
    if !cfg!(unix) {
        return Vec::new();
    }
    ctx.workers()
        .filter_map(|(i, w)| {
            let python = w.get("venv_python")?.as_str()?;
            is_windows_path(python).then(|| {
                Finding::new(
                    format!("/workers/{i}/venv_python"),
                    format!("`{python}` is a Windows virtualenv path"),
                )
                .hint("on Linux and macOS the interpreter is venv/bin/python; keep one config per platform")
            })
        })
        .collect()
}
