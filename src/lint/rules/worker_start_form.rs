//! ## What it does
//! Checks that each worker gives exactly one way to start: `module` (called through
//! `venv_python`), `script` (run by `venv_python`) or `command` (any language).
//!
//! ## Why is this bad?
//! With none the host cannot start the worker; with two it would have to guess which one you
//! meant. `function` without `module`, and `venv_python` next to `command`, are ignored, which
//! hides a mistake.

use crate::lint::{Context, Finding, Rule, Severity};

pub static RULE: Rule = Rule {
    id: "worker-start-form",
    severity: Severity::Error,
    summary: "a worker without exactly one of module, script or command",
    check,
};

fn check(ctx: &Context) -> Vec<Finding> {
    let mut out = Vec::new();
    for (i, w) in ctx.workers() {
        let name = w.get("name").and_then(|n| n.as_str()).unwrap_or("?");
        let forms: Vec<&str> = ["module", "script", "command"]
            .into_iter()
            .filter(|f| w.contains_key(*f))
            .collect();
        let at = format!("/workers/{i}");
        match forms.as_slice() {
            [] => out.push(
                Finding::new(
                    format!("{at}/name"),
                    format!("worker `{name}` has no way to start"),
                )
                .hint("add `module` (with venv_python), `script` or `command`"),
            ),
            [_] => {}
            several => out.push(
                Finding::new(
                    format!("{at}/{}", several[1]),
                    format!(
                        "worker `{name}` has more than one way to start: {}",
                        several.join(", ")
                    ),
                )
                .at_key()
                .hint("keep exactly one of module, script or command"),
            ),
        }
        if w.contains_key("function") && !w.contains_key("module") {
            out.push(
                Finding::new(
                    format!("{at}/function"),
                    format!("worker `{name}` has `function` but no `module`"),
                )
                .at_key()
                .hint("`function` names the entry point inside `module`"),
            );
        }
        if w.contains_key("command") && w.contains_key("venv_python") {
            out.push(
                Finding::new(
                    format!("{at}/venv_python"),
                    "`venv_python` is not used with `command`",
                )
                .at_key()
                .hint("put the interpreter in the command: command: [\"./venv/bin/python\", \"worker.py\"]"),
            );
        }
        if w.get("command")
            .and_then(|c| c.as_array())
            .is_some_and(Vec::is_empty)
        {
            out.push(Finding::new(
                format!("{at}/command"),
                format!("worker `{name}` has an empty command"),
            ));
        }
    }
    out
}
