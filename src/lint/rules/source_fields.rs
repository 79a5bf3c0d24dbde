//! ## What it does
//! Checks `task_manager` against its `type`: a remote source needs a `url` with the right
//! scheme (`http(s)://`, `redis(s)://`, `amqp(s)://`); the TaskManager needs an `api_key`;
//! fields that only another type reads are flagged.
//!
//! ## Why is this bad?
//! A missing or wrong URL fails at the first claim, far from the config; a field the chosen
//! source never reads (a `path` for redis, a `journal` for amqp) is a setting someone believes
//! is in force. The URL problems are errors; a missing API key and foreign fields are warnings.

use serde_json::Value;

use crate::lint::{Context, Finding, Rule, Severity};

pub static RULE: Rule = Rule {
    id: "source-fields",
    severity: Severity::Error,
    summary: "task_manager fields that do not fit its type (url scheme, missing url or api_key, foreign fields)",
    check,
};

/// The fields each source type reads (`type`, `retry_backoff` and `poll_interval` apply to all).
const FIELDS: &[(&str, &[&str])] = &[
    ("local", &["path"]),
    (
        "http",
        &[
            "url",
            "api_key",
            "timeout",
            "max_retries",
            "worker_id",
            "sort_by",
            "sort_order",
            "journal",
        ],
    ),
    (
        "redis",
        &["url", "timeout", "max_retries", "prefix", "visibility_timeout"],
    ),
    ("amqp", &["url", "timeout", "prefix", "results_queue"]),
];

const COMMON: &[&str] = &["type", "retry_backoff", "poll_interval"];

fn check(ctx: &Context) -> Vec<Finding> {
    let Some(tm) = ctx.value().get("task_manager").and_then(Value::as_object) else {
        return Vec::new();
    };
    let kind = tm.get("type").and_then(Value::as_str).unwrap_or("local");
    let Some((_, fields)) = FIELDS.iter().find(|(k, _)| *k == kind) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let schemes: &[&str] = match kind {
        "http" => &["http://", "https://"],
        "redis" => &["redis://", "rediss://"],
        "amqp" => &["amqp://", "amqps://"],
        _ => &[],
    };
    if !schemes.is_empty() {
        match tm.get("url").and_then(Value::as_str) {
            None => out.push(
                Finding::new(
                    "/task_manager/type",
                    format!("task source `{kind}` needs a `url`"),
                )
                .hint(format!("url: \"{}host...\"", schemes[0])),
            ),
            // An unset ${VAR} is undefined-env-var's to report.
            Some(url)
                if !url.contains("${")
                    && !schemes.iter().any(|s| url.to_ascii_lowercase().starts_with(s)) =>
            {
                out.push(
                    Finding::new(
                        "/task_manager/url",
                        format!("a `{kind}` url starts with {}", schemes.join(" or ")),
                    )
                    .label("wrong scheme for this source"),
                )
            }
            Some(_) => {}
        }
    }
    if kind == "http" && tm.get("api_key").is_none() {
        out.push(
            Finding::new(
                "/task_manager/type",
                "the TaskManager refuses requests without an API key",
            )
            .warning()
            .hint("api_key: \"${TASKMANAGER_API_KEY}\""),
        );
    }
    for key in tm.keys() {
        if COMMON.contains(&key.as_str()) || fields.contains(&key.as_str()) {
            continue;
        }
        let readers: Vec<&str> = FIELDS
            .iter()
            .filter(|(_, f)| f.contains(&key.as_str()))
            .map(|(k, _)| *k)
            .collect();
        out.push(
            Finding::new(
                format!("/task_manager/{key}"),
                format!("`{key}` is not read by the `{kind}` source"),
            )
            .at_key()
            .warning()
            .hint(format!("it applies to: {}; remove it here", readers.join(", "))),
        );
    }
    out
}
