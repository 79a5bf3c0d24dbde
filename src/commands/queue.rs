//! `wh enqueue` and `wh tasks`: add to, and look into, the config's local queue.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::{load_for_run, parse_params, print_stdout};
use crate::cli::{EnqueueArgs, TasksAction, TasksArgs};
use crate::config::model::{Config, TaskManagerKind};
use crate::error::Failure;
use crate::exit;
use crate::host::source::local::LocalQueue;
use crate::host::source::{ListFilter, NewTask, TaskSource, TaskView};

/// The queue file of a config: `task_manager.path`, default `workerhost.db` beside the config.
pub fn queue_path(config: &Config, dir: &Path) -> PathBuf {
    crate::config::resolve::join(
        dir,
        config.task_manager.path.as_deref().unwrap_or("workerhost.db"),
    )
}

/// Opens the config's task source: the local queue, the TaskManager HTTP API, Redis or
/// RabbitMQ.
pub async fn open_source(config: &Config, dir: &Path) -> Result<Arc<dyn TaskSource>, Failure> {
    use crate::host::source::{amqp::AmqpSource, http, redis::RedisSource};
    let tm = &config.task_manager;
    let fail = |e: crate::host::source::SourceError| {
        Failure::new(
            exit::USAGE,
            format!("cannot open the {} task source", kind_name(tm.kind)),
        )
        .cause(e)
    };
    let timeout = Duration::from_secs_f64(tm.timeout.clamp(0.1, 3600.0));
    let url = || {
        tm.url.clone().ok_or_else(|| {
            Failure::new(
                exit::USAGE,
                format!("task_manager.type `{}` needs a url", kind_name(tm.kind)),
            )
            .hint("`wh lint` shows what each source needs")
        })
    };
    let prefix = tm.prefix.clone().unwrap_or_else(|| "wh".into());
    Ok(match tm.kind {
        TaskManagerKind::Local => {
            let path = queue_path(config, dir);
            let queue = LocalQueue::open(&path).map_err(|e| {
                Failure::new(exit::USAGE, format!("cannot open the queue `{}`", path.display())).cause(e)
            })?;
            Arc::new(queue)
        }
        TaskManagerKind::Http => {
            let cfg = http::HttpConfig {
                url: url()?,
                api_key: tm.api_key.clone(),
                timeout,
                max_retries: tm.max_retries.max(0) as u32,
                retry_backoff: tm.retry_backoff,
                worker_id: tm.worker_id.clone(),
                sort_by: tm.sort_by.map(|s| serde_plain(&s)),
                sort_order: tm.sort_order.map(|s| serde_plain(&s)),
                journal: crate::config::resolve::join(
                    dir,
                    tm.journal.as_deref().unwrap_or("workerhost.journal"),
                ),
            };
            Arc::new(http::HttpSource::connect(cfg).await.map_err(fail)?)
        }
        TaskManagerKind::Redis => {
            let longest = config.workers.iter().map(|w| w.timeout).fold(0.0, f64::max);
            let visibility = tm.visibility_timeout.unwrap_or(longest + 60.0);
            let visibility = Duration::from_secs_f64(visibility.clamp(1.0, 7.0 * 86_400.0));
            Arc::new(
                RedisSource::connect(&url()?, &prefix, visibility, timeout)
                    .await
                    .map_err(fail)?,
            )
        }
        TaskManagerKind::Amqp => Arc::new(
            AmqpSource::connect(&url()?, &prefix, tm.results_queue.clone(), timeout)
                .await
                .map_err(fail)?,
        ),
    })
}

/// An enum's serde name (`created_at`, `DESC`).
fn serde_plain<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn kind_name(kind: TaskManagerKind) -> &'static str {
    match kind {
        TaskManagerKind::Local => "local",
        TaskManagerKind::Http => "http",
        TaskManagerKind::Redis => "redis",
        TaskManagerKind::Amqp => "amqp",
    }
}

/// Reads NDJSON tasks (`-` for stdin); errors name the line.
pub fn read_ndjson(path: &Path) -> Result<Vec<NewTask>, Failure> {
    let shown = path.display().to_string();
    let text = if path.as_os_str() == "-" {
        let mut buf = String::new();
        std::io::stdin()
            .read_to_string(&mut buf)
            .map_err(|e| Failure::new(exit::USAGE, "cannot read tasks from stdin").cause(e))?;
        buf
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| Failure::new(exit::USAGE, format!("cannot read `{shown}`")).cause(e))?
    };
    let mut tasks = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with("//") {
            continue;
        }
        let task: NewTask = serde_json::from_str(line).map_err(|e| {
            Failure::new(exit::USAGE, format!("`{shown}` line {}: {e}", i + 1)).hint(
                r#"one task per line: {"type": "T", "params": {...}, "priority": 0, "dedupe_key": "k"}"#,
            )
        })?;
        tasks.push(task);
    }
    Ok(tasks)
}

/// Warnings from the task source (an ignored priority, a skipped type) go to stderr.
fn show_source_warnings() {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::WARN)
        .without_time()
        .with_target(false)
        .try_init();
}

pub async fn enqueue(args: EnqueueArgs) -> Result<u8, Failure> {
    show_source_warnings();
    let (loaded, config) = load_for_run(&args.config.config, exit::USAGE)?;
    let tasks = match &args.file {
        Some(file) => read_ndjson(file)?,
        None => {
            let params = match &args.params {
                Some(text) => parse_params("--params", text, exit::USAGE)?,
                None => Default::default(),
            };
            vec![NewTask {
                task_type: args.task_type.clone().unwrap_or_default(),
                params,
                priority: args.priority,
                dedupe_key: args.dedupe_key.clone(),
            }]
        }
    };
    warn_unrouted(&config, &tasks);
    let source = open_source(&config, &loaded.dir).await?;
    let added = source
        .enqueue(&tasks)
        .await
        .map_err(|e| Failure::new(exit::USAGE, "cannot add the tasks").cause(e))?;
    let mut out = String::new();
    for (task, e) in tasks.iter().zip(&added) {
        let note = if e.deduplicated {
            "  (already queued: dedupe key)"
        } else {
            ""
        };
        out.push_str(&format!("{}  {}{note}\n", e.id, task.task_type));
    }
    print_stdout(out.as_bytes())?;
    Ok(exit::OK)
}

/// Tasks no worker of this config handles wait for a host that has one; say so.
fn warn_unrouted(config: &Config, tasks: &[NewTask]) {
    let known: std::collections::HashSet<&str> = config
        .workers
        .iter()
        .flat_map(|w| w.task_types.iter().map(String::as_str))
        .collect();
    let mut unknown: Vec<&str> = tasks
        .iter()
        .map(|t| t.task_type.as_str())
        .filter(|t| !known.contains(t))
        .collect();
    unknown.sort();
    unknown.dedup();
    if !unknown.is_empty() {
        eprintln!(
            "wh: warning: no worker in this config handles {}; those tasks wait for a host that does",
            unknown.join(", ")
        );
    }
}

pub async fn tasks(args: TasksArgs) -> Result<u8, Failure> {
    show_source_warnings();
    let (loaded, config) = load_for_run(&args.config, exit::USAGE)?;
    let source = open_source(&config, &loaded.dir).await?;
    match &args.action {
        Some(TasksAction::Show { id }) => {
            let task = source
                .show(id)
                .await
                .map_err(|e| Failure::new(exit::USAGE, e.to_string()))?;
            let text = serde_json::to_string_pretty(&task).expect("a task serializes");
            print_stdout(format!("{text}\n").as_bytes())?;
        }
        Some(TasksAction::Retry { id }) => {
            source
                .retry(id)
                .await
                .map_err(|e| Failure::new(exit::USAGE, e.to_string()))?;
            print_stdout(format!("{id} requeued\n").as_bytes())?;
        }
        None => {
            let filter = ListFilter {
                status: args.status,
                task_type: args.task_type.clone(),
                limit: args.limit,
            };
            let list = source
                .list(&filter)
                .await
                .map_err(|e| Failure::new(exit::USAGE, e.to_string()))?;
            let text = if args.json {
                list.iter()
                    .map(|t| serde_json::to_string(t).expect("a task serializes") + "\n")
                    .collect()
            } else {
                table(&list)
            };
            print_stdout(text.as_bytes())?;
        }
    }
    Ok(exit::OK)
}

fn table(tasks: &[TaskView]) -> String {
    let mut out = format!(
        "{:<36}  {:<9}  {:>8}  {:<28}  {}\n",
        "id", "status", "attempts", "type", "error"
    );
    for t in tasks {
        let error: String = t.error.as_deref().unwrap_or("").chars().take(60).collect();
        out.push_str(&format!(
            "{:<36}  {:<9}  {:>8}  {:<28}  {}\n",
            t.id,
            t.status.as_str(),
            t.attempts,
            t.task_type,
            error
        ));
    }
    out
}
