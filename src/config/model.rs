//! The coordinator config, section by section (docs/config.md). The JSON Schema in
//! `schemas/config.schema.json` is generated from these types (`wh lint --print-schema`), and
//! a test fails when the two drift apart.
//!
//! Doc comments here become the schema's `title` (the `# ` line) and `description`, which
//! editors show as you type. Ranges that need judgement (timeouts, retries, ports in use) are
//! lint rules rather than schema keywords, so their messages can say why.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// # WorkerHost configuration
/// Which workers exist, how to start them, where tasks come from, and how the host logs and
/// reports. Paths are relative to this file's folder; `${VAR}` and `${VAR:-default}` are
/// replaced from the environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "WorkerHost configuration")]
pub struct Config {
    /// # Config format version
    /// Always "1.0" for this format.
    #[serde(default = "default_version")]
    pub version: ConfigVersion,

    /// # Task source
    /// Where tasks come from and where outcomes go. Absent: the embedded local queue.
    #[serde(default)]
    pub task_manager: TaskManager,

    /// # Workers
    /// One entry per worker. A task goes to the first worker that lists its type.
    #[schemars(length(min = 1))]
    pub workers: Vec<Worker>,

    /// # Logging
    /// The host's own logs (workers log to their stderr).
    #[serde(default)]
    pub logging: Logging,

    /// # Monitoring
    /// Prometheus metrics, health checks and event observers.
    #[serde(default)]
    pub monitoring: Monitoring,

    /// # Advanced settings
    /// Worker pools, resource limits and security switches.
    #[serde(default)]
    pub advanced: Advanced,
}

fn default_version() -> ConfigVersion {
    ConfigVersion::V1
}

/// # Config format version
/// The version of this file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConfigVersion {
    #[serde(rename = "1.0")]
    V1,
}

/// # Task source type
/// `local`: the embedded durable queue (one SQLite file). `http`: the PrismQ TaskManager API.
/// `redis`: Redis Streams. `amqp`: RabbitMQ.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskManagerKind {
    #[default]
    Local,
    Http,
    Redis,
    Amqp,
}

/// # Task source
/// Where tasks come from and where outcomes go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskManager {
    /// # Type
    /// Which task source: local (default), http, redis or amqp.
    #[serde(rename = "type", default)]
    pub kind: TaskManagerKind,

    /// # URL
    /// Base URL of the task source (http: the TaskManager API ending in /api; redis:
    /// redis:// or rediss://; amqp: amqp:// or amqps://).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,

    /// # API key
    /// Sent as X-API-Key. Use an environment variable ("${TASKMANAGER_API_KEY}"), never a
    /// literal: it is never logged and never reaches a worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,

    /// # Queue file
    /// local only: the SQLite file of the embedded queue. Default: workerhost.db beside this
    /// config file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,

    /// # Poll interval
    /// Seconds between polls when the source has no task.
    #[serde(default = "default_poll_interval")]
    pub poll_interval: f64,

    /// # Request timeout
    /// Seconds a request to the task source may take.
    #[serde(default = "default_request_timeout")]
    pub timeout: f64,

    /// # Request retries
    /// How many times a failed request to the task source is retried.
    #[serde(default = "default_retries")]
    pub max_retries: i64,

    /// # Retry backoff
    /// Multiplier of the wait between request retries (exponential backoff); wh host also
    /// uses it between a task's retries.
    #[serde(default = "default_backoff")]
    pub retry_backoff: f64,

    /// # Claimer id
    /// http: the worker_id this host claims and completes under. Default: hostname:pid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,

    /// # Claim order
    /// http: which tasks a claim prefers: created_at (default on the server), priority, id or
    /// attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort_by: Option<SortBy>,

    /// # Claim order direction
    /// http: ASC or DESC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort_order: Option<SortOrder>,

    /// # Completion journal
    /// http: file where completions that cannot be delivered yet are kept until they are.
    /// Default: workerhost.journal beside this config file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<String>,

    /// # Key prefix
    /// redis and amqp: the prefix of every stream, key, queue and exchange wh uses. Default: wh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,

    /// # Visibility timeout
    /// redis: seconds a claimed entry may stay unacknowledged before another host takes it
    /// over. Default: the longest worker timeout plus 60.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility_timeout: Option<f64>,

    /// # Results queue
    /// amqp: the queue results are published to when a task message has no reply_to.
    /// Default: <prefix>.results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results_queue: Option<String>,
}

/// # Claim order
/// The TaskManager's sort_by values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SortBy {
    CreatedAt,
    Priority,
    Id,
    Attempts,
}

/// # Claim order direction
/// Ascending or descending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SortOrder {
    #[serde(rename = "ASC")]
    Asc,
    #[serde(rename = "DESC")]
    Desc,
}

fn default_poll_interval() -> f64 {
    5.0
}
fn default_request_timeout() -> f64 {
    30.0
}
fn default_retries() -> i64 {
    3
}
fn default_backoff() -> f64 {
    2.0
}

impl Default for TaskManager {
    fn default() -> Self {
        Self {
            kind: TaskManagerKind::Local,
            url: None,
            api_key: None,
            path: None,
            poll_interval: default_poll_interval(),
            timeout: default_request_timeout(),
            max_retries: default_retries(),
            retry_backoff: default_backoff(),
            worker_id: None,
            sort_by: None,
            sort_order: None,
            journal: None,
            prefix: None,
            visibility_timeout: None,
            results_queue: None,
        }
    }
}

/// # Worker
/// One worker: how to start it and which task types it handles. Give exactly one way to
/// start it: `module` (with `venv_python`), `script` (with `venv_python`) or `command`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Worker {
    /// # Name
    /// Unique name, used in logs, metrics and /workers/<name>/health.
    pub name: String,

    /// # Description
    /// What the worker does, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,

    /// # Project path
    /// The worker's working directory (relative to this file). Default: this file's folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_path: Option<String>,

    /// # Python interpreter
    /// The worker's own interpreter, usually its virtualenv's (venv/bin/python). Runs
    /// `module` or `script`. Default: python3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub venv_python: Option<String>,

    /// # Module
    /// Dotted Python module under project_path (src.workers.scraper); the host calls its
    /// `function`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,

    /// # Function
    /// The entry point in `module`, called with no arguments; it reads the task from stdin.
    /// An int it returns is the exit code. Default: main.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,

    /// # Script
    /// A Python file run by venv_python (relative to project_path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,

    /// # Command
    /// The worker's argv, for any language: ["node", "worker.js"]. Run in project_path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,

    /// # Task types
    /// The task types this worker handles.
    #[schemars(length(min = 1))]
    pub task_types: Vec<String>,

    /// # Timeout
    /// Seconds one task may run before the host stops the worker's process group.
    #[serde(default = "default_worker_timeout")]
    pub timeout: f64,

    /// # Retries
    /// How many times a retriable failure is retried.
    #[serde(default = "default_retries")]
    pub max_retries: i64,

    /// # Concurrency
    /// At most this many tasks of this worker at once (within the host's --concurrency).
    /// Default: no limit of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,

    /// # Mode
    /// How the worker serves tasks. `oneshot`: a new process per task (the protocol's
    /// default; every worker must support it). `persistent`: warm processes that serve many
    /// tasks, one line each way (docs/protocol.md section 8), pooled by
    /// `advanced.worker_pool`. Default: persistent when `advanced.worker_pool.enabled`, else
    /// oneshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<WorkerMode>,

    /// # Retry timeouts
    /// Retry a task that timed out (the worker exited 3 or ran past `timeout`), like a
    /// retriable failure. Default: a timeout fails the task.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retry_on_timeout: bool,

    /// # Environment
    /// Variables added to the worker's environment (on top of the host's, minus the task
    /// source's secrets).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,

    /// # Metadata
    /// Free-form facts for people and tools (version, python_version, dependencies, author).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    #[schemars(with = "Map<String, Value>")]
    pub metadata: Map<String, Value>,
}

/// # Worker mode
/// `oneshot`: one process per task. `persistent`: warm processes serving many tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WorkerMode {
    Oneshot,
    Persistent,
}

impl Worker {
    /// Whether the host runs this worker persistently, under `pool`.
    pub fn persistent(&self, pool: &WorkerPool) -> bool {
        match self.mode {
            Some(mode) => mode == WorkerMode::Persistent,
            None => pool.enabled,
        }
    }
}

fn default_worker_timeout() -> f64 {
    300.0
}

/// # Log level
/// The least severe level written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum LogLevel {
    Debug,
    #[default]
    Info,
    Warning,
    Error,
    Critical,
}

/// # Logging
/// The host's own logs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Logging {
    /// # Level
    /// DEBUG, INFO, WARNING, ERROR or CRITICAL.
    #[serde(default)]
    pub level: LogLevel,

    /// # Format
    /// Line format of text logs (the design's Python logging format string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,

    /// # Log file
    /// Write logs to this file (relative to this file) as well as stderr.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,

    /// # Rotate at
    /// Bytes after which the log file is rotated.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,

    /// # Rotated files kept
    /// How many rotated log files are kept.
    #[serde(default = "default_backup_count")]
    pub backup_count: u32,

    /// # Structured
    /// JSON log lines instead of text.
    #[serde(default)]
    pub structured: bool,

    /// # Capture worker output
    /// Keep the worker's stderr tail with the task and in the logs.
    #[serde(default = "yes")]
    pub capture_worker_output: bool,
}

fn default_max_bytes() -> u64 {
    10_485_760
}
fn default_backup_count() -> u32 {
    5
}
fn yes() -> bool {
    true
}

impl Default for Logging {
    fn default() -> Self {
        Self {
            level: LogLevel::Info,
            format: None,
            file: None,
            max_bytes: default_max_bytes(),
            backup_count: default_backup_count(),
            structured: false,
            capture_worker_output: true,
        }
    }
}

/// # Monitoring
/// Metrics, health checks and observers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Monitoring {
    /// # Enabled
    /// Switch all monitoring on or off.
    #[serde(default = "yes")]
    pub enabled: bool,

    /// # Metrics
    /// The Prometheus metrics endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Endpoint>,

    /// # Health check
    /// The health endpoint (and /ready, /workers/<name>/health beside it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<Endpoint>,

    /// # Metrics port (short form)
    /// The design's shorter form of metrics.port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_port: Option<u16>,

    /// # Health check port (short form)
    /// The design's shorter form of health_check.port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_port: Option<u16>,

    /// # Observers
    /// Who hears lifecycle events.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub observers: Vec<Observer>,
}

impl Default for Monitoring {
    fn default() -> Self {
        Self {
            enabled: true,
            metrics: None,
            health_check: None,
            metrics_port: None,
            health_check_port: None,
            observers: Vec::new(),
        }
    }
}

/// # Endpoint
/// An HTTP endpoint the host serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// # Enabled
    /// Serve this endpoint.
    #[serde(default = "yes")]
    pub enabled: bool,

    /// # Port
    /// TCP port.
    pub port: u16,

    /// # Path
    /// URL path, starting with /.
    pub path: String,
}

/// # Observer
/// One receiver of lifecycle events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Observer {
    /// # Type
    /// logging, metrics or alerting.
    #[serde(rename = "type")]
    pub kind: ObserverKind,

    /// # Enabled
    /// Deliver events to this observer.
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// # Observer type
/// Which observer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ObserverKind {
    Logging,
    Metrics,
    Alerting,
}

/// # Advanced settings
/// Pools, limits, security.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Advanced {
    /// # Worker pool
    /// Keep worker processes warm between tasks.
    #[serde(default)]
    pub worker_pool: WorkerPool,

    /// # Resource limits
    /// Limits on each worker process.
    #[serde(default)]
    pub resource_limits: ResourceLimits,

    /// # Security
    /// Safety switches.
    #[serde(default)]
    pub security: Security,
}

/// # Worker pool
/// Warm worker processes for workers in persistent mode (docs/protocol.md section 8). The
/// sizes are per worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkerPool {
    /// # Enabled
    /// Run every worker persistently unless its entry says `mode: oneshot`.
    #[serde(default)]
    pub enabled: bool,

    /// # Minimum workers
    /// Processes kept alive per persistent worker, started with the host.
    #[serde(default = "one")]
    pub min_workers: u32,

    /// # Maximum workers
    /// Processes at most per persistent worker: its tasks run at most this many at once.
    #[serde(default = "five")]
    pub max_workers: u32,

    /// # Idle timeout
    /// Seconds an idle process lives, while more than min_workers are alive, before it is
    /// stopped.
    #[serde(default = "idle")]
    pub idle_timeout: f64,

    /// # Tasks per process
    /// Replace a process after it has served this many tasks (a guard against slow leaks).
    /// Default: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tasks_per_process: Option<u64>,

    /// # Prefetch
    /// Tasks claimed ahead per persistent worker, beyond its free processes, so that a
    /// process never waits for a claim between two short tasks. They wait on this host (their
    /// lease covers the wait) while another host might be idle: raise it for throughput of
    /// tasks of a few milliseconds, keep 0 (the default) for fair sharing between hosts. Read
    /// at start-up.
    #[serde(default)]
    pub prefetch: u32,

    /// # Memory per process
    /// Replace a process, between tasks, once its resident memory (with its children's) has
    /// grown past this many MB. Unlike resource_limits.max_memory_mb this never fails a task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory_mb: Option<u64>,
}

fn one() -> u32 {
    1
}
fn five() -> u32 {
    5
}
fn idle() -> f64 {
    300.0
}

impl Default for WorkerPool {
    fn default() -> Self {
        Self {
            enabled: false,
            min_workers: one(),
            max_workers: five(),
            idle_timeout: idle(),
            max_tasks_per_process: None,
            prefetch: 0,
            max_memory_mb: None,
        }
    }
}

/// # Resource limits
/// Limits on each worker process.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceLimits {
    /// # Memory limit
    /// MB of memory a worker may use before it is stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory_mb: Option<u64>,

    /// # CPU limit
    /// Percent of one CPU a worker may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cpu_percent: Option<f64>,
}

/// # Security
/// Safety switches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Security {
    /// # Validate worker paths
    /// Refuse to start when a worker's interpreter or files are missing.
    #[serde(default = "yes")]
    pub validate_worker_paths: bool,

    /// # Allow environment variables
    /// Replace ${VAR} in this file from the environment.
    #[serde(default = "yes")]
    pub allow_environment_variables: bool,

    /// # Restricted modules
    /// Python modules workers may not be started from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restricted_modules: Vec<String>,
}

impl Default for Security {
    fn default() -> Self {
        Self {
            validate_worker_paths: true,
            allow_environment_variables: true,
            restricted_modules: Vec::new(),
        }
    }
}

/// The JSON Schema of the config, as published in `schemas/config.schema.json`.
pub fn json_schema() -> Value {
    let settings = schemars::generate::SchemaSettings::draft2020_12();
    let schema = settings.into_generator().into_root_schema_for::<Config>();
    let mut value = serde_json::to_value(schema).expect("a schema serializes");
    unwrap_descriptions(&mut value);
    if let Some(obj) = value.as_object_mut() {
        obj.insert("$id".into(), Value::String("urn:wh:config:v1".into()));
    }
    value
}

/// Doc comments wrap at 100 columns; editors show descriptions as one paragraph.
fn unwrap_descriptions(node: &mut Value) {
    match node {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                match child {
                    Value::String(text) if key == "description" || key == "title" => {
                        *text = text.split('\n').map(str::trim).collect::<Vec<_>>().join(" ");
                    }
                    _ => unwrap_descriptions(child),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(unwrap_descriptions),
        _ => {}
    }
}

/// The schema as the checked-in file holds it (pretty, newline-terminated).
pub fn json_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&json_schema()).expect("a schema serializes");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `schemas/config.schema.json` is generated; regenerate with
    /// `cargo run -- lint --print-schema > schemas/config.schema.json`.
    #[test]
    fn the_published_schema_matches_the_model() {
        let published = include_str!("../../schemas/config.schema.json");
        assert!(
            published == json_schema_text(),
            "schemas/config.schema.json is out of date: run `cargo run -- lint --print-schema > schemas/config.schema.json`"
        );
    }

    #[test]
    fn every_property_has_a_title_and_a_description() {
        fn walk(node: &Value, at: &str, missing: &mut Vec<String>) {
            if let Some(props) = node.get("properties").and_then(Value::as_object) {
                for (name, prop) in props {
                    let title = prop.get("title").and_then(Value::as_str).unwrap_or("");
                    let desc = prop.get("description").and_then(Value::as_str).unwrap_or("");
                    if title.is_empty() || desc.is_empty() {
                        missing.push(format!("{at}/{name}"));
                    }
                }
            }
            if let Some(obj) = node.as_object() {
                for (key, child) in obj {
                    walk(child, &format!("{at}/{key}"), missing);
                }
            }
        }
        let mut missing = Vec::new();
        walk(&json_schema(), "", &mut missing);
        assert!(
            missing.is_empty(),
            "properties without title or description: {missing:#?}"
        );
    }

    #[test]
    fn descriptions_are_one_paragraph() {
        assert!(
            !json_schema_text().contains("\\n"),
            "doc comment line breaks leak into the schema"
        );
    }
}
