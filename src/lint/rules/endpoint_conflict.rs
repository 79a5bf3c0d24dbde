//! ## What it does
//! Finds the metrics and health endpoints on the same port and path, and a short form
//! (`metrics_port`, `health_check_port`) that disagrees with the long form's port.
//!
//! ## Why is this bad?
//! One URL cannot answer both Prometheus and a load balancer's health probe; one of them would
//! get the other's reply. Two different ports for one endpoint leave the reader guessing.

use serde_json::Value;

use crate::lint::{Context, Finding, Rule, Severity};

pub static RULE: Rule = Rule {
    id: "endpoint-conflict",
    severity: Severity::Error,
    summary: "metrics and health endpoints on the same port and path",
    check,
};

struct Endpoint {
    port: u64,
    path: String,
    pointer: String,
}

fn endpoint(v: &Value, long: &str, short: &str, default_path: &str) -> Option<Endpoint> {
    let section = v.pointer(&format!("/monitoring/{long}"));
    if section.and_then(|s| s.get("enabled")) == Some(&Value::Bool(false)) {
        return None;
    }
    let long_port = section.and_then(|s| s.get("port")).and_then(Value::as_u64);
    let short_port = v.pointer(&format!("/monitoring/{short}")).and_then(Value::as_u64);
    let (port, pointer) = match (long_port, short_port) {
        (Some(p), _) => (p, format!("/monitoring/{long}/port")),
        (None, Some(p)) => (p, format!("/monitoring/{short}")),
        (None, None) => return None,
    };
    let path = section
        .and_then(|s| s.get("path"))
        .and_then(Value::as_str)
        .unwrap_or(default_path)
        .to_string();
    Some(Endpoint { port, path, pointer })
}

fn check(ctx: &Context) -> Vec<Finding> {
    let v = ctx.value();
    if v.pointer("/monitoring/enabled") == Some(&Value::Bool(false)) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (long, short) in [("metrics", "metrics_port"), ("health_check", "health_check_port")] {
        let long_port = v
            .pointer(&format!("/monitoring/{long}/port"))
            .and_then(Value::as_u64);
        let short_port = v.pointer(&format!("/monitoring/{short}")).and_then(Value::as_u64);
        if let (Some(a), Some(b)) = (long_port, short_port)
            && a != b
        {
            out.push(
                Finding::new(
                    format!("/monitoring/{short}"),
                    format!("{short} ({b}) disagrees with {long}.port ({a})"),
                )
                .hint(format!("keep one: {long}.port wins")),
            );
        }
    }
    let metrics = endpoint(v, "metrics", "metrics_port", "/metrics");
    let health = endpoint(v, "health_check", "health_check_port", "/health");
    if let (Some(m), Some(h)) = (metrics, health)
        && m.port == h.port
        && m.path == h.path
    {
        let line = ctx.line_of(&m.pointer);
        out.push(
            Finding::new(
                h.pointer,
                format!("health check and metrics both at port {} path {}", h.port, h.path),
            )
            .label(format!("metrics are here too (line {line})"))
            .hint("give them different paths (/metrics and /health) or ports"),
        );
    }
    out
}
