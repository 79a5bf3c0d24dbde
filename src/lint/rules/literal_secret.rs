//! ## What it does
//! Finds secrets written into the file: a literal `task_manager.api_key`, credentials in a
//! URL, and worker `env` entries whose name says secret (KEY, TOKEN, SECRET, PASSWORD) with a
//! literal value.
//!
//! ## Why is this bad?
//! Config files get committed, copied and pasted into issues. A secret belongs in the
//! environment: `api_key: "${TASKMANAGER_API_KEY}"`.

use serde_json::Value;

use crate::lint::{Context, Finding, Rule, Severity};

pub static RULE: Rule = Rule {
    id: "literal-secret",
    severity: Severity::Warning,
    summary: "a secret written in the file instead of taken from the environment",
    check,
};

fn literal(value: Option<&Value>) -> Option<&str> {
    value
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && !s.contains("${"))
}

fn check(ctx: &Context) -> Vec<Finding> {
    let mut out = Vec::new();
    if literal(ctx.raw.pointer("/task_manager/api_key")).is_some() {
        out.push(
            Finding::new("/task_manager/api_key", "the API key is written in the file")
                .label("a literal secret")
                .hint("take it from the environment: api_key: \"${TASKMANAGER_API_KEY}\""),
        );
    }
    if let Some(url) = literal(ctx.raw.pointer("/task_manager/url"))
        && let Some((_, rest)) = url.split_once("://")
        && rest
            .split('/')
            .next()
            .is_some_and(|authority| authority.contains(':') && authority.contains('@'))
    {
        out.push(
            Finding::new("/task_manager/url", "the URL holds a password")
                .hint("write the URL with a variable: url: \"redis://:${REDIS_PASSWORD}@host:6379\""),
        );
    }
    let workers = ctx
        .raw
        .get("workers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate();
    for (i, w) in workers {
        let Some(env) = w.get("env").and_then(Value::as_object) else {
            continue;
        };
        for (name, value) in env {
            let upper = name.to_ascii_uppercase();
            let secretish = ["KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD"]
                .iter()
                .any(|s| upper.contains(s));
            if secretish && literal(Some(value)).is_some() {
                out.push(
                    Finding::new(
                        format!("/workers/{i}/env/{}", crate::config::env::escape(name)),
                        format!("`{name}` looks like a secret written in the file"),
                    )
                    .hint(format!("take it from the environment: {name}: \"${{{name}}}\"")),
                );
            }
        }
    }
    out
}
