//! ## What it does
//! Finds `${VAR}` references (without a `:-default`) whose variable is not set.
//!
//! ## Why is this bad?
//! The host would start with the literal text `${VAR}` as a URL or key, and fail later and
//! further from the cause. A default (`${VAR:-value}`) makes the intent explicit.
//!
//! A warning here, because configs are often linted where their secrets are not set (CI);
//! loading the config to run a worker (`wh host`, `--config`) refuses it as an error.

use crate::lint::{Context, Finding, Rule, Severity, dotted};

pub static RULE: Rule = Rule {
    id: "undefined-env-var",
    severity: Severity::Warning,
    summary: "`${VAR}` without a default whose variable is not set",
    check,
};

fn check(ctx: &Context) -> Vec<Finding> {
    ctx.loaded
        .undefined
        .iter()
        .map(|u| {
            Finding::new(
                u.pointer.clone(),
                format!(
                    "environment variable `{}` is not set (used in {})",
                    u.var,
                    dotted(&u.pointer)
                ),
            )
            .label(format!("${{{}}} has no value and no default", u.var))
            .hint(format!(
                "export {}=..., or give a default: ${{{}:-value}}",
                u.var, u.var
            ))
        })
        .collect()
}
