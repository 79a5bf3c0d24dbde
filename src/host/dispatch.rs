//! The loop: claim a task only when a slot is free, route it, run it, record the outcome.
//!
//! Concurrency has two levels: the host's `--concurrency` (one semaphore) and a worker's own
//! `concurrency` (its semaphore in the registry). Before each claim the loop reserves every
//! free host slot and as many slots of each worker that has some, and claims a batch of at
//! most that many of those workers' task types in one call, so it never holds a task it
//! cannot start (no prefetch starvation). The one exception is opt-in: a persistent worker's
//! `worker_pool.prefetch` adds slots for tasks that wait for one of its warm processes.
//!
//! A task's slots are freed as soon as its worker is done with it, before its outcome is
//! recorded: the next claim does not wait for the write, and outcomes recorded at the same
//! time share a commit where the source allows (the local queue does).
//!
//! Shutdown: `stop` ends claiming; running tasks get `grace` to finish; then (or at once on
//! `hard`) they are stopped and released back to the source, so nothing is lost.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::events::{Event, Observers, RetireCause, TaskRef};
use super::policy::{self, Backoff, Decision};
use super::pool::{Checkout, Pool};
use super::registry::{Registry, WorkerSpec};
use super::source::{Claimed, Outcome, Record, SourceError, TaskSource};
use crate::protocol::{classify, persistent};
use crate::runner::persistent::Process;
use crate::runner::{self, Hooks, Limits, Stopped};

/// How long past a worker's timeout (and kill grace) a claim stays leased: a healthy host has
/// recorded the outcome by then; after it, the task is claimable again (its host died).
pub const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// The most tasks one claim takes.
pub const MAX_BATCH: usize = 64;

/// How long an outcome is retried while the source is unreachable.
pub const OUTCOME_RETRY_LIMIT: Duration = Duration::from_secs(600);

/// How the loop runs.
#[derive(Debug, Clone)]
pub struct Options {
    pub concurrency: usize,
    /// Exit once no task of ours is waiting or running.
    pub drain: bool,
    /// Exit after this many claims.
    pub max_tasks: Option<u64>,
    /// Time running tasks get to finish after a stop request.
    pub grace: Duration,
    /// The lease owner name (hostname:pid).
    pub host_id: String,
    pub backoff: Backoff,
    /// The longest wait between claims when the source is empty.
    pub idle_max: Duration,
    /// Output and memory limits for every worker (the timeout comes from the worker).
    pub limits: Limits,
}

/// Signals from outside the loop.
#[derive(Clone, Default)]
pub struct Control {
    /// Stop claiming; let running tasks finish within the grace period.
    pub stop: CancellationToken,
    /// Stop running tasks now and release them.
    pub hard: CancellationToken,
}

/// What the loop did, for the exit summary.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub claimed: u64,
}

/// Runs until stopped, drained, or out of `max_tasks`.
pub async fn run(
    source: Arc<dyn TaskSource>,
    registry: Arc<RwLock<Arc<Registry>>>,
    observers: Arc<Observers>,
    options: Options,
    control: Control,
) -> Totals {
    // Tasks claimed ahead for persistent workers (worker_pool.prefetch) wait for a process,
    // not for a host slot of --concurrency: they get slots of their own.
    let prefetch = registry
        .read()
        .expect("no panics under the registry lock")
        .prefetch();
    let host_slots = Arc::new(Semaphore::new(options.concurrency.max(1) + prefetch));
    // Finished runs whose outcome is being recorded, beyond the running ones.
    let recording = Arc::new(Semaphore::new(options.concurrency.max(1) * 4));
    let mut running: JoinSet<()> = JoinSet::new();
    let mut totals = Totals::default();
    let mut idle = Duration::from_millis(10);
    let options = Arc::new(options);

    loop {
        while running.try_join_next().is_some() {}
        if control.stop.is_cancelled() || options.max_tasks.is_some_and(|m| totals.claimed >= m) {
            break;
        }
        // Every free host slot (at least one), then every free slot of each worker, up to as
        // many: one claim takes a batch when several slots are free.
        let first = tokio::select! {
            p = host_slots.clone().acquire_owned() => p.expect("the semaphore stays open"),
            _ = control.stop.cancelled() => break,
        };
        let mut host_permits = vec![first];
        while host_permits.len() < MAX_BATCH {
            match host_slots.clone().try_acquire_owned() {
                Ok(p) => host_permits.push(p),
                Err(_) => break,
            }
        }
        let current = registry
            .read()
            .expect("no panics under the registry lock")
            .clone();
        let mut reserved: Vec<(Arc<WorkerSpec>, Vec<OwnedSemaphorePermit>)> = Vec::new();
        let mut types = Vec::new();
        for spec in &current.workers {
            if let Some(pool) = spec.pool.get() {
                pool.maintain();
            }
            let mut permits = Vec::new();
            while permits.len() < host_permits.len() {
                match spec.slots.clone().try_acquire_owned() {
                    Ok(p) => permits.push(p),
                    Err(_) => break,
                }
            }
            if !permits.is_empty() {
                types.extend(current.types_of(spec));
                reserved.push((spec.clone(), permits));
            }
        }
        if types.is_empty() {
            // Every worker is at its own limit: wait for a task to finish.
            drop((host_permits, reserved));
            tokio::select! {
                _ = running.join_next(), if !running.is_empty() => {}
                _ = tokio::time::sleep(idle) => {}
                _ = control.stop.cancelled() => break,
            }
            continue;
        }
        let lease = reserved
            .iter()
            .map(|(s, _)| s.longest_run())
            .max()
            .unwrap_or_default()
            + options.limits.kill_grace
            + LEASE_MARGIN;
        // However the batch splits between the workers offered, none gets more tasks than it
        // has slots reserved.
        let mut max = reserved
            .iter()
            .map(|(_, p)| p.len())
            .min()
            .unwrap_or(1)
            .min(host_permits.len());
        if let Some(limit) = options.max_tasks {
            max = max.min(limit.saturating_sub(totals.claimed) as usize);
        }
        match source.claim_batch(&types, &options.host_id, lease, max).await {
            Ok(batch) if !batch.is_empty() => {
                idle = Duration::from_millis(10);
                for task in batch {
                    totals.claimed += 1;
                    let spec = current.route(&task.task_type);
                    let worker_permit = spec.as_ref().ok().and_then(|s| {
                        let (_, permits) = reserved.iter_mut().find(|(r, _)| r.name == s.name)?;
                        permits.pop()
                    });
                    let host_permit = host_permits.pop();
                    let job = Job {
                        source: source.clone(),
                        observers: observers.clone(),
                        options: options.clone(),
                        hard: control.hard.clone(),
                        slots: std::sync::Mutex::new(Some((host_permit, worker_permit))),
                        recording: recording.clone(),
                    };
                    running.spawn(async move {
                        job.run(task, spec).await;
                    });
                }
                drop((host_permits, reserved));
            }
            Ok(_) => {
                drop((host_permits, reserved));
                if options.drain && running.is_empty() && nothing_left(&*source, &current.types()).await {
                    break;
                }
                tokio::select! {
                    _ = running.join_next(), if !running.is_empty() => {}
                    _ = tokio::time::sleep(idle) => {}
                    _ = control.stop.cancelled() => break,
                }
                idle = (idle * 2).min(options.idle_max);
            }
            Err(e) => {
                drop((host_permits, reserved));
                tracing::warn!(error = %e, "claim failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(idle.max(Duration::from_millis(200))) => {}
                    _ = control.stop.cancelled() => break,
                }
                idle = (idle * 2).min(options.idle_max);
            }
        }
    }

    // Stopping: running tasks get the grace period, then are stopped and released.
    if !running.is_empty() {
        let all_done = async { while running.join_next().await.is_some() {} };
        tokio::select! {
            _ = all_done => {}
            _ = tokio::time::sleep(options.grace) => control.hard.cancel(),
            _ = control.hard.cancelled() => {}
        }
        while running.join_next().await.is_some() {}
    }
    // Every task is done or released: the warm processes end (stdin closed, then killed).
    let current = registry
        .read()
        .expect("no panics under the registry lock")
        .clone();
    // Processes still being retired (recycled, lost) get the kill grace to end, then the
    // group kill's own wait.
    let limit = options.limits.kill_grace * 2 + Duration::from_secs(5);
    current.close_pools(RetireCause::Shutdown, limit).await;
    totals
}

/// Nothing of ours waiting (now or after a backoff) or running anywhere.
async fn nothing_left(source: &dyn TaskSource, types: &[String]) -> bool {
    match source.depth(types).await {
        Ok(d) => d.ready == 0 && d.delayed == 0 && d.running == 0,
        Err(_) => false,
    }
}

/// Everything one task's run needs.
struct Job {
    source: Arc<dyn TaskSource>,
    observers: Arc<Observers>,
    options: Arc<Options>,
    hard: CancellationToken,
    /// The host slot and the worker slot this task holds while its worker runs.
    slots: std::sync::Mutex<Option<Slots>>,
    /// Bounds the runs whose outcome is still being recorded after their slots were freed.
    recording: Arc<Semaphore>,
}

type Slots = (Option<OwnedSemaphorePermit>, Option<OwnedSemaphorePermit>);

impl Job {
    async fn run(self, task: Claimed, spec: Result<Arc<WorkerSpec>, String>) {
        let task_ref = TaskRef {
            id: task.id.clone(),
            task_type: task.task_type.clone(),
            attempt: task.attempts,
        };
        self.observers.emit(Event::Received {
            task: task_ref.clone(),
        });
        let spec = match spec {
            Ok(spec) => spec,
            Err(no_worker) => {
                // Claimed under an older registry that a reload has since changed.
                self.finish(
                    &task,
                    Outcome::Failed {
                        error: no_worker.clone(),
                    },
                    Record::default(),
                )
                .await;
                self.observers.emit(Event::Failed {
                    task: task_ref,
                    worker: String::new(),
                    class: None,
                    error: no_worker,
                });
                return;
            }
        };
        let worker = spec.name.clone();
        if task.attempts > spec.max_retries + 1 {
            let error = format!(
                "delivered {} times without an outcome: its worker or host keeps dying (limit {})",
                task.attempts,
                spec.max_retries + 1
            );
            self.finish(&task, Outcome::Dead { error: error.clone() }, Record::default())
                .await;
            self.observers.emit(Event::Dead {
                task: task_ref,
                worker,
                error,
            });
            return;
        }

        let input = task_input(&task, &self.options.host_id);
        let mut limits = self.options.limits.clone();
        limits.timeout = spec.timeout;
        if let Some(pool) = spec.pool.get() {
            match pool.checkout().await {
                Ok(Checkout::Process(process)) => {
                    self.run_warm(&task, task_ref, &spec, pool, *process, &input, &limits)
                        .await;
                    return;
                }
                // The worker did not confirm persistent mode: one process for this task.
                Ok(Checkout::OneShot) => {}
                Err(e) => {
                    self.spawn_failed(&task, task_ref, &spec, e).await;
                    return;
                }
            }
        }
        let hooks = self.hooks(&task_ref, &worker);
        let result = runner::run_with(&spec.command, &input, &limits, &self.hard, hooks).await;
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(e) => {
                self.spawn_failed(&task, task_ref, &spec, e).await;
                return;
            }
        };
        self.observers.emit(Event::WorkerExited {
            task: task_ref.clone(),
            worker: worker.clone(),
            exit: outcome.exit,
            duration: outcome.duration,
        });
        if outcome.stopped == Some(Stopped::Cancelled) {
            self.release(&task, task_ref, &worker).await;
            return;
        }
        let judged = classify(&outcome, spec.timeout.as_secs_f64());
        let record = Record {
            stderr_tail: String::from_utf8_lossy(&outcome.stderr).into_owned(),
            class: Some(class_name(judged.class)),
            duration_ms: outcome.duration.as_millis() as u64,
        };
        let decision = policy::decide(&judged, task.attempts, &spec, &self.options.backoff);
        self.record(
            &task,
            task_ref,
            &worker,
            decision,
            Some((judged.class, outcome.duration)),
            record,
        )
        .await;
    }

    /// The worker could not be started: retried by policy like a crash.
    async fn spawn_failed(
        &self,
        task: &Claimed,
        task_ref: TaskRef,
        spec: &WorkerSpec,
        e: runner::SpawnError,
    ) {
        let error = e.to_string();
        self.observers.emit(Event::SpawnFailed {
            task: task_ref.clone(),
            worker: spec.name.clone(),
            error: error.clone(),
        });
        let decision = policy::retry_or_give_up(error, task.attempts, spec, &self.options.backoff);
        self.record(task, task_ref, &spec.name, decision, None, Record::default())
            .await;
    }

    /// One task on a warm process of a persistent worker; the process goes back to its pool
    /// (or is replaced) before the outcome is recorded.
    #[allow(clippy::too_many_arguments)]
    async fn run_warm(
        &self,
        task: &Claimed,
        task_ref: TaskRef,
        spec: &WorkerSpec,
        pool: &Arc<Pool>,
        mut process: Process,
        input: &[u8],
        limits: &Limits,
    ) {
        let worker = spec.name.clone();
        self.observers.emit(Event::Handed {
            task: task_ref.clone(),
            worker: worker.clone(),
            pid: process.pid(),
        });
        let hooks = self.hooks(&task_ref, &worker);
        let run = process.run_task(input, limits, &self.hard, hooks.on_stderr).await;
        let (judged, reusable) = persistent::classify_line(&run, spec.timeout.as_secs_f64());
        let cancelled = run.stopped == Some(Stopped::Cancelled);
        let why = if cancelled {
            "the host stopped it to shut down".to_string()
        } else {
            judged.reason.clone().unwrap_or_default()
        };
        pool.checkin(process, reusable, &why).await;
        self.observers.emit(Event::Answered {
            task: task_ref.clone(),
            worker: worker.clone(),
            duration: run.duration,
        });
        if cancelled {
            self.release(task, task_ref, &worker).await;
            return;
        }
        let record = Record {
            stderr_tail: String::from_utf8_lossy(&run.stderr).into_owned(),
            class: Some(class_name(judged.class)),
            duration_ms: run.duration.as_millis() as u64,
        };
        let decision = policy::decide(&judged, task.attempts, spec, &self.options.backoff);
        self.record(
            task,
            task_ref,
            &worker,
            decision,
            Some((judged.class, run.duration)),
            record,
        )
        .await;
    }

    /// Shutdown: gives the task back untouched.
    async fn release(&self, task: &Claimed, task_ref: TaskRef, worker: &str) {
        if let Err(e) = self.source.release(task).await {
            tracing::warn!(task_id = %task.id, error = %e, "release failed; the lease will expire");
        }
        self.observers.emit(Event::Released {
            task: task_ref,
            worker: worker.to_string(),
        });
    }

    async fn record(
        &self,
        task: &Claimed,
        task_ref: TaskRef,
        worker: &str,
        decision: Decision,
        run: Option<(crate::protocol::ExitClass, Duration)>,
        record: Record,
    ) {
        // The worker is done with the task: its slots go to the next claim while the outcome
        // is recorded (a batch of finishes then commits together), within a bound.
        let _recording = self.recording.clone().acquire_owned().await;
        drop(self.slots.lock().expect("no panics under the slots lock").take());
        let worker = worker.to_string();
        let class = run.map(|(c, _)| c);
        match decision {
            Decision::Complete(result) => {
                self.finish(task, Outcome::Completed { result }, record).await;
                let duration = run.map(|(_, d)| d).unwrap_or_default();
                self.observers.emit(Event::Completed {
                    task: task_ref,
                    worker,
                    duration,
                });
            }
            Decision::Retry { error, delay } => {
                self.finish(
                    task,
                    Outcome::Retry {
                        error: error.clone(),
                        delay,
                    },
                    record,
                )
                .await;
                let class = class.unwrap_or(crate::protocol::ExitClass::Crashed);
                self.observers.emit(Event::Retrying {
                    task: task_ref,
                    worker,
                    class,
                    error,
                    delay,
                });
            }
            Decision::Fail { error } => {
                self.finish(task, Outcome::Failed { error: error.clone() }, record)
                    .await;
                self.observers.emit(Event::Failed {
                    task: task_ref,
                    worker,
                    class,
                    error,
                });
            }
            Decision::Dead { error } => {
                self.finish(task, Outcome::Dead { error: error.clone() }, record)
                    .await;
                self.observers.emit(Event::Dead {
                    task: task_ref,
                    worker,
                    error,
                });
            }
        }
    }

    /// Records an outcome. While the source is unreachable the outcome is retried with backoff
    /// (for up to `OUTCOME_RETRY_LIMIT`), so a lost connection does not lose a finished task.
    async fn finish(&self, task: &Claimed, outcome: Outcome, record: Record) {
        let started = std::time::Instant::now();
        let mut wait = Duration::from_millis(200);
        loop {
            match self.source.finish(task, &outcome, &record).await {
                Ok(()) => return,
                Err(SourceError::LeaseLost(id)) => {
                    tracing::warn!(task_id = %id, "the lease expired and the task was claimed again; this outcome is dropped");
                    return;
                }
                Err(SourceError::Unavailable(e)) if started.elapsed() < OUTCOME_RETRY_LIMIT => {
                    tracing::warn!(task_id = %task.id, error = %e, retry_in_ms = wait.as_millis() as u64, "could not record the outcome; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(30));
                }
                Err(e) => {
                    tracing::error!(task_id = %task.id, error = %e, "could not record the outcome; the task will be delivered again when its lease expires");
                    return;
                }
            }
        }
    }

    fn hooks(&self, task: &TaskRef, worker: &str) -> Hooks {
        let (observers, t, w) = (self.observers.clone(), task.clone(), worker.to_string());
        let on_spawn = Box::new(move |pid: u32| {
            observers.emit(Event::WorkerSpawned {
                task: t.clone(),
                worker: w.clone(),
                pid: Some(pid),
            });
        });
        let (observers, t, w) = (self.observers.clone(), task.clone(), worker.to_string());
        let pending = std::sync::Mutex::new(Vec::<u8>::new());
        // Progress reports (protocol section 9) go to the source in the background, throttled;
        // dropped with this hook when the run is over.
        let progress = super::progress::Forwarder::new(self.source.clone(), super::progress::delivery(task));
        let on_stderr = Box::new(move |chunk: &[u8]| {
            let mut buf = pending.lock().expect("no panics while splitting lines");
            buf.extend_from_slice(chunk);
            while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=i).collect();
                let line = String::from_utf8_lossy(&line[..line.len() - 1])
                    .trim_end_matches('\r')
                    .to_string();
                let report = crate::protocol::parse_progress(&line);
                // A progress line is a log line too.
                observers.emit(Event::WorkerStderr {
                    task: t.clone(),
                    worker: w.clone(),
                    line,
                });
                if let Some(report) = report {
                    observers.emit(Event::Progress {
                        task: t.clone(),
                        worker: w.clone(),
                        percent: report.percent,
                        message: report.message.clone(),
                    });
                    progress.report(report);
                }
            }
            // A line longer than 64 KiB is emitted in pieces rather than buffered without end.
            if buf.len() > 64 * 1024 {
                let line = String::from_utf8_lossy(&buf).into_owned();
                buf.clear();
                observers.emit(Event::WorkerStderr {
                    task: t.clone(),
                    worker: w.clone(),
                    line,
                });
            }
        });
        Hooks {
            on_spawn: Some(on_spawn),
            on_stderr: Some(on_stderr),
        }
    }
}

/// The outcome class as sources record it (`success`, `retriable_failure`, ...).
fn class_name(class: crate::protocol::ExitClass) -> String {
    serde_json::to_value(class)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The task as the worker reads it: the protocol's fields plus the host's metadata.
fn task_input(task: &Claimed, host_id: &str) -> Vec<u8> {
    let created = jiff::Timestamp::from_duration(jiff::SignedDuration::from_secs_f64(task.created_at))
        .map(|t| t.to_string())
        .unwrap_or_default();
    let value = json!({
        "id": task.id,
        "type": task.task_type,
        "params": Value::Object(task.params.clone()),
        "metadata": {
            "priority": task.priority,
            "created_at": created,
            "worker_id": host_id,
            "attempt": task.attempts,
        },
    });
    let mut bytes = serde_json::to_vec(&value).expect("a Value serializes");
    bytes.push(b'\n');
    bytes
}
