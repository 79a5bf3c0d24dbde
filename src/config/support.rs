//! What this build of `wh host` does not enforce, so that nothing in a config is silently
//! ignored: `wh lint` reports each as a warning and the host logs each at start-up.

use super::model::Config;

/// (JSON pointer, why it is not enforced) for every such setting in `config`.
pub fn unenforced(config: &Config) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let advanced = &config.advanced;
    if advanced.resource_limits.max_cpu_percent.is_some() {
        out.push((
            "/advanced/resource_limits/max_cpu_percent".into(),
            "max_cpu_percent is not enforced by wh host: a worker may use whole CPUs".into(),
        ));
    }
    if advanced.resource_limits.max_memory_mb.is_some() && !cfg!(target_os = "linux") {
        out.push((
            "/advanced/resource_limits/max_memory_mb".into(),
            "max_memory_mb is enforced on Linux only (from /proc); not on this platform".into(),
        ));
    }
    if config.logging.format.is_some() {
        out.push((
            "/logging/format".into(),
            "logging.format (a Python logging format) is not used: wh writes its own text or JSON lines"
                .into(),
        ));
    }
    for (i, o) in config.monitoring.observers.iter().enumerate() {
        if o.enabled && o.kind == super::model::ObserverKind::Alerting {
            out.push((
                format!("/monitoring/observers/{i}/enabled"),
                "the alerting observer is not implemented: alert on /metrics instead".into(),
            ));
        }
    }
    out
}
