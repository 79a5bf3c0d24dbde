//! The design's registry and factory: task type → worker (the first worker listed wins), and
//! each worker's launch command and limits, built once per config (and again on reload).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::Semaphore;

use super::events::{Observers, RetireCause};
use super::pool::{self, Pool};
use crate::config::model::Config;
use crate::config::resolve;
use crate::runner::{Limits, WorkerCommand};

/// One worker, ready to run tasks.
#[derive(Debug)]
pub struct WorkerSpec {
    pub name: String,
    pub command: WorkerCommand,
    pub task_types: Vec<String>,
    pub timeout: Duration,
    pub max_retries: u32,
    pub retry_on_timeout: bool,
    /// Its own concurrency limit, if it has one.
    pub concurrency: Option<u32>,
    /// Slots of its own limit (the host's limit when it has none; at most the pool's
    /// `max_workers` when persistent).
    pub slots: Arc<Semaphore>,
    /// The number of `slots`.
    pub limit: usize,
    /// Set when the worker runs persistently: its pool's sizes.
    pub persistent: Option<pool::Settings>,
    /// Its warm processes, once [`Registry::attach_pools`] has run.
    pub pool: OnceLock<Arc<Pool>>,
}

impl WorkerSpec {
    /// The longest a task of this worker can hold its claim: a persistent worker may first
    /// wait for a new process's handshake (up to `timeout`) and then run the task.
    ///
    /// A prefetched task also waits for the tasks ahead of it, one `timeout` per process's
    /// worth of them at most.
    pub fn longest_run(&self) -> Duration {
        match &self.persistent {
            Some(p) => self.timeout * (2 + p.prefetch.div_ceil(p.max.max(1)) as u32),
            None => self.timeout,
        }
    }

    /// Tasks of this worker claimed ahead of its free processes.
    pub fn prefetch(&self) -> usize {
        self.persistent.as_ref().map_or(0, |p| p.prefetch)
    }
}

/// Task type → worker.
#[derive(Debug, Default)]
pub struct Registry {
    pub workers: Vec<Arc<WorkerSpec>>,
    by_type: HashMap<String, usize>,
}

impl Registry {
    /// Builds the registry. `previous` lends its slot semaphores to workers whose name and
    /// limit did not change, so a reload does not let a worker exceed its limit.
    pub fn build(
        config: &Config,
        dir: &Path,
        secrets: &[String],
        host_concurrency: usize,
        previous: Option<&Registry>,
    ) -> Result<Registry, String> {
        let mut registry = Registry::default();
        for worker in &config.workers {
            let mut command = resolve::worker_command(worker, dir).map_err(|e| e.to_string())?;
            command.env_remove = secrets.iter().map(Into::into).collect();
            let persistent = worker
                .persistent(&config.advanced.worker_pool)
                .then(|| pool::Settings::from_config(&config.advanced.worker_pool));
            let mut limit = worker.concurrency.map_or(host_concurrency, |c| c.max(1) as usize);
            if let Some(settings) = &persistent {
                // Processes, plus the tasks that wait for one (prefetch).
                limit = limit.min(settings.max) + settings.prefetch;
            }
            let slots = previous
                .and_then(|p| {
                    p.workers
                        .iter()
                        .find(|w| w.name == worker.name && w.limit == limit)
                })
                .map(|w| w.slots.clone())
                .unwrap_or_else(|| Arc::new(Semaphore::new(limit)));
            let index = registry.workers.len();
            for t in &worker.task_types {
                registry.by_type.entry(t.clone()).or_insert(index);
            }
            registry.workers.push(Arc::new(WorkerSpec {
                name: worker.name.clone(),
                command,
                task_types: worker.task_types.clone(),
                timeout: Duration::from_secs_f64(worker.timeout.max(0.001)),
                max_retries: worker.max_retries.max(0) as u32,
                retry_on_timeout: worker.retry_on_timeout,
                concurrency: worker.concurrency,
                slots,
                limit,
                persistent,
                pool: OnceLock::new(),
            }));
        }
        Ok(registry)
    }

    /// Gives each persistent worker its pool: the previous registry's when the worker is
    /// unchanged (same command, timeout and pool sizes, and not fallen back to one-shot), else
    /// a new one. Returns the previous pools no worker kept, for the caller to close.
    pub fn attach_pools(
        &self,
        previous: Option<&Registry>,
        limits: &Limits,
        observers: &Arc<Observers>,
    ) -> Vec<Arc<Pool>> {
        let mut kept = Vec::new();
        for spec in &self.workers {
            let Some(settings) = &spec.persistent else {
                continue;
            };
            let same = previous.and_then(|p| {
                let old = p.workers.iter().find(|w| w.name == spec.name)?;
                let pool = old.pool.get()?;
                let unchanged = old.command == spec.command
                    && old.timeout == spec.timeout
                    && old.persistent.as_ref() == Some(settings)
                    && pool.fallback().is_none();
                unchanged.then(|| pool.clone())
            });
            let pool = match same {
                Some(pool) => pool,
                None => Pool::new(
                    &spec.name,
                    &spec.command,
                    settings.clone(),
                    spec.timeout,
                    limits.clone(),
                    observers.clone(),
                ),
            };
            kept.push(pool.clone());
            let _ = spec.pool.set(pool);
        }
        let Some(previous) = previous else {
            return Vec::new();
        };
        previous
            .workers
            .iter()
            .filter_map(|w| w.pool.get())
            .filter(|old| !kept.iter().any(|k| Arc::ptr_eq(k, old)))
            .cloned()
            .collect()
    }

    /// Host slots for tasks claimed ahead of a free process, beyond `--concurrency`.
    pub fn prefetch(&self) -> usize {
        self.workers.iter().map(|w| w.prefetch()).sum()
    }

    /// Closes every pool: idle processes end now, busy ones after their task. Waits up to
    /// `limit` for every process to be gone.
    pub async fn close_pools(&self, cause: RetireCause, limit: Duration) {
        let pools: Vec<&Arc<Pool>> = self.workers.iter().filter_map(|w| w.pool.get()).collect();
        futures::future::join_all(pools.iter().map(|p| p.close(cause.clone()))).await;
        futures::future::join_all(pools.iter().map(|p| p.wait_empty(limit))).await;
    }

    /// The worker for a task type.
    pub fn route(&self, task_type: &str) -> Result<Arc<WorkerSpec>, String> {
        self.by_type
            .get(task_type)
            .map(|&i| self.workers[i].clone())
            .ok_or_else(|| format!("No worker registered for task type: {task_type}"))
    }

    /// The task types a worker actually receives (those no earlier worker took).
    pub fn types_of(&self, worker: &WorkerSpec) -> Vec<String> {
        worker
            .task_types
            .iter()
            .filter(|t| {
                self.by_type
                    .get(*t)
                    .is_some_and(|&i| self.workers[i].name == worker.name)
            })
            .cloned()
            .collect()
    }

    /// Every task type with a worker.
    pub fn types(&self) -> Vec<String> {
        let mut types: Vec<String> = self.by_type.keys().cloned().collect();
        types.sort();
        types
    }

    /// The registry and each worker's exact launch command, for `--dry-run`.
    pub fn describe(&self) -> String {
        let mut out = String::from("task type -> worker\n");
        for t in self.types() {
            let w = self.route(&t).expect("listed types route");
            out.push_str(&format!("  {t} -> {}\n", w.name));
        }
        out.push_str("\nworkers\n");
        for w in &self.workers {
            out.push_str(&format!("  {}\n", w.name));
            out.push_str(&format!("    command: {}\n", w.command.display()));
            if let Some(cwd) = &w.command.cwd {
                out.push_str(&format!("    working directory: {}\n", cwd.display()));
            }
            for (k, v) in &w.command.env {
                out.push_str(&format!(
                    "    env: {}={}\n",
                    k.to_string_lossy(),
                    v.to_string_lossy()
                ));
            }
            if !w.command.env_remove.is_empty() {
                let names: Vec<String> = w
                    .command
                    .env_remove
                    .iter()
                    .map(|n| n.to_string_lossy().into_owned())
                    .collect();
                out.push_str(&format!("    env removed: {}\n", names.join(", ")));
            }
            if let Some(p) = &w.persistent {
                out.push_str(&format!(
                    "    mode: persistent (WH_WORKER_MODE=persistent), {}..{} processes, idle_timeout {}s{}{}\n",
                    p.min,
                    p.max.min(w.limit - p.prefetch),
                    p.idle_timeout.as_secs_f64(),
                    p.max_tasks.map_or(String::new(), |n| format!(", max_tasks_per_process {n}"))
                        + &if p.prefetch > 0 { format!(", prefetch {}", p.prefetch) } else { String::new() },
                    p.max_memory
                        .map_or(String::new(), |b| format!(", max_memory_mb {}", b / (1024 * 1024))),
                ));
            }
            out.push_str(&format!(
                "    timeout: {}s, max_retries: {}, concurrency: {}{}\n",
                w.timeout.as_secs_f64(),
                w.max_retries,
                w.concurrency.map_or("host's".to_string(), |c| c.to_string()),
                if w.retry_on_timeout {
                    ", retries timeouts"
                } else {
                    ""
                }
            ));
            let shadowed: Vec<&String> = w
                .task_types
                .iter()
                .filter(|t| !self.types_of(w).contains(t))
                .collect();
            if !shadowed.is_empty() {
                out.push_str(&format!(
                    "    never receives (an earlier worker lists them): {shadowed:?}\n"
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: serde_json::Value) -> Config {
        serde_json::from_value(yaml).unwrap()
    }

    #[test]
    fn the_first_worker_listed_wins_and_unknown_types_fail() {
        let c = config(serde_json::json!({"workers": [
            {"name": "a", "command": ["x"], "task_types": ["T", "U"]},
            {"name": "b", "command": ["y"], "task_types": ["U", "V"]},
        ]}));
        let r = Registry::build(&c, Path::new("/cfg"), &[], 4, None).unwrap();
        assert_eq!(r.route("U").unwrap().name, "a");
        assert_eq!(r.route("V").unwrap().name, "b");
        assert_eq!(r.route("W").unwrap_err(), "No worker registered for task type: W");
        assert_eq!(r.types_of(&r.workers[1]), vec!["V".to_string()]);
        assert!(r.describe().contains("never receives"));
    }

    #[test]
    fn reload_keeps_slots_of_unchanged_workers() {
        let c = config(serde_json::json!({"workers": [
            {"name": "a", "command": ["x"], "task_types": ["T"], "concurrency": 2},
        ]}));
        let first = Registry::build(&c, Path::new("/"), &[], 4, None).unwrap();
        let second = Registry::build(&c, Path::new("/"), &[], 4, Some(&first)).unwrap();
        assert!(Arc::ptr_eq(&first.workers[0].slots, &second.workers[0].slots));
        assert_eq!(second.workers[0].slots.available_permits(), 2);
    }
}
