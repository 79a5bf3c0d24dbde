//! Warm processes for a worker in persistent mode (docs/protocol.md section 8): between
//! `min_workers` and `max_workers` processes per worker, started on demand, each serving one
//! task at a time, retired between tasks when idle too long, after `max_tasks_per_process`
//! tasks, when grown past `max_memory_mb`, on reload and on shutdown.
//!
//! The pool only keeps processes; running a task on one is the runner's job
//! (`crate::runner::persistent`), judging its line the protocol's, and deciding what to do
//! with the task the dispatcher's. A process that does not confirm persistent mode makes the
//! whole pool fall back to one-shot runs, with the reason logged once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::events::{Observers, PoolEvent, RetireCause};
use crate::config::model::WorkerPool as PoolConfig;
use crate::protocol::persistent::{MODE_ENV, MODE_VALUE, check_handshake};
use crate::runner::persistent::{Process, StartError};
use crate::runner::{Limits, SpawnError, WorkerCommand};

/// How often, at most, a process's memory is read between its tasks.
const MEMORY_CHECK_EVERY: Duration = Duration::from_secs(1);

/// A pool's sizes and recycling rules.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub min: usize,
    pub max: usize,
    pub idle_timeout: Duration,
    /// Retire a process after this many tasks.
    pub max_tasks: Option<u64>,
    /// Retire a process whose group's resident memory is past this, in bytes (checked after
    /// each task).
    pub max_memory: Option<u64>,
    /// Tasks claimed ahead of free processes.
    pub prefetch: usize,
}

impl Settings {
    pub fn from_config(pool: &PoolConfig) -> Self {
        let max = pool.max_workers.max(1) as usize;
        Settings {
            min: (pool.min_workers as usize).min(max),
            max,
            idle_timeout: Duration::from_secs_f64(pool.idle_timeout.max(0.0)),
            max_tasks: pool.max_tasks_per_process.filter(|n| *n > 0),
            max_memory: pool.max_memory_mb.map(|mb| mb * 1024 * 1024),
            prefetch: pool.prefetch as usize,
        }
    }
}

/// What a task gets from the pool.
pub enum Checkout {
    /// A ready process, the pool's until it is checked in.
    Process(Box<Process>),
    /// The worker does not speak persistent mode: run the task one-shot.
    OneShot,
}

struct State {
    idle: Vec<Process>,
    /// Processes alive or starting, idle and busy alike.
    live: usize,
    /// Set once a process failed its handshake: why the worker runs one-shot.
    fallback: Option<String>,
    /// Set when the pool was closed, with why: processes end instead of going back.
    retired: Option<RetireCause>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("worker", &self.worker)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The warm processes of one worker.
pub struct Pool {
    worker: String,
    command: WorkerCommand,
    settings: Settings,
    handshake_timeout: Duration,
    limits: Limits,
    observers: Arc<Observers>,
    state: Mutex<State>,
    /// Told when a process becomes idle or a live slot frees up.
    changed: tokio::sync::Notify,
    maintained: AtomicBool,
}

impl Pool {
    /// A pool for `command` (the mode's signal is added here). `limits` are the host's: the
    /// output caps and kill grace every process gets.
    pub fn new(
        worker: &str,
        command: &WorkerCommand,
        settings: Settings,
        handshake_timeout: Duration,
        limits: Limits,
        observers: Arc<Observers>,
    ) -> Arc<Pool> {
        let mut command = command.clone();
        command.env.retain(|(k, _)| k != MODE_ENV);
        command.env.push((MODE_ENV.into(), MODE_VALUE.into()));
        Arc::new(Pool {
            worker: worker.to_string(),
            command,
            settings,
            handshake_timeout,
            limits,
            observers,
            state: Mutex::new(State {
                idle: Vec::new(),
                live: 0,
                fallback: None,
                retired: None,
            }),
            changed: tokio::sync::Notify::new(),
            maintained: AtomicBool::new(false),
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Processes alive or starting.
    pub fn live(&self) -> usize {
        self.lock().live
    }

    /// Processes waiting for a task.
    pub fn idle(&self) -> usize {
        self.lock().idle.len()
    }

    /// Why the worker runs one-shot, once a process failed its handshake.
    pub fn fallback(&self) -> Option<String> {
        self.lock().fallback.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("no panics under the pool lock")
    }

    /// Starts the pool's upkeep once (warm-up to `min`, idle retirement); call from inside
    /// the runtime. It ends when the pool is retired or dropped.
    pub fn maintain(self: &Arc<Self>) {
        if self.maintained.swap(true, Ordering::AcqRel) {
            return;
        }
        let pool = Arc::downgrade(self);
        let tick = (self.settings.idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        tokio::spawn(upkeep(pool, tick));
    }

    /// A process for one task: an idle one (the most recently used, so the others can age
    /// out), else a new one. A process that cannot be started is an error for this task; one
    /// that does not confirm persistent mode switches the pool to one-shot.
    ///
    /// With `max_workers` alive (one still starting, say), it waits for one to be free: the
    /// dispatcher's slots never let more tasks than `max_workers` in at once.
    pub async fn checkout(&self) -> Result<Checkout, SpawnError> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                if state.fallback.is_some() {
                    return Ok(Checkout::OneShot);
                }
                if let Some(p) = state.idle.pop() {
                    return Ok(Checkout::Process(Box::new(p)));
                }
                if state.live < self.settings.max {
                    state.live += 1;
                    break;
                }
            }
            notified.await;
        }
        match self.spawn().await {
            Ok(p) => Ok(Checkout::Process(Box::new(p))),
            Err(StartError::Spawn(e)) => {
                self.free_slot();
                Err(e)
            }
            Err(StartError::NoHandshake { .. }) => Ok(Checkout::OneShot),
        }
    }

    /// Starts one process (its `live` slot already counted); a failed handshake sets the
    /// fallback and gives the slot back.
    async fn spawn(&self) -> Result<Process, StartError> {
        let started = Instant::now();
        let result = Process::start(
            &self.command,
            &self.limits,
            self.handshake_timeout,
            check_handshake,
        )
        .await;
        match &result {
            Ok(p) => self.observers.emit_pool(&PoolEvent::Started {
                worker: self.worker.clone(),
                pid: p.pid(),
                startup: started.elapsed(),
            }),
            Err(StartError::NoHandshake { reason, stderr }) => {
                let mut state = self.lock();
                state.live -= 1;
                self.changed.notify_waiters();
                if state.fallback.is_none() {
                    state.fallback = Some(reason.clone());
                    drop(state);
                    self.observers.emit_pool(&PoolEvent::Fallback {
                        worker: self.worker.clone(),
                        reason: reason.clone(),
                        stderr: crate::host::source::tail(&String::from_utf8_lossy(stderr), 2000).to_string(),
                    });
                }
            }
            Err(StartError::Spawn(_)) => {}
        }
        result
    }

    /// Gives a process back after a task. `reusable` is false when the task's outcome says the
    /// process cannot be trusted (it was then stopped already, or is stopped here).
    ///
    /// A process that ends is ended in the background (gracefully: stdin closed, the kill
    /// grace, then its group killed), so the task's outcome is not held up by it; it counts
    /// against `max_workers` until it is gone.
    pub async fn checkin(self: &Arc<Self>, mut process: Process, reusable: bool, lost_because: &str) {
        let closed = self.lock().retired.clone();
        let cause = if !reusable || !process.is_alive() {
            Some(RetireCause::Lost(lost_because.to_string()))
        } else if closed.is_some() {
            closed
        } else if self.settings.max_tasks.is_some_and(|n| process.served >= n) {
            Some(RetireCause::MaxTasks(process.served))
        } else if let Some(limit) = self.settings.max_memory
            && process.checked_at.elapsed() >= MEMORY_CHECK_EVERY
        {
            // Reading a group's memory scans /proc: once a second is enough to catch growth.
            process.checked_at = Instant::now();
            let rss = process.resident_bytes();
            (rss > limit).then_some(RetireCause::Memory { rss, limit })
        } else {
            None
        };
        let cause = match cause {
            Some(cause) => cause,
            None => {
                let mut state = self.lock();
                match state.retired.clone() {
                    // Closed meanwhile.
                    Some(cause) => cause,
                    None => {
                        state.idle.push(process);
                        drop(state);
                        self.changed.notify_waiters();
                        return;
                    }
                }
            }
        };
        let pool = self.clone();
        tokio::spawn(async move {
            if matches!(cause, RetireCause::Lost(_)) && process.is_alive() {
                // It broke the stream: no graceful end for it.
                process.kill(pool.limits.kill_grace).await;
            }
            pool.retire(process, cause).await;
        });
    }

    /// One process fewer is alive or starting.
    fn free_slot(&self) {
        self.lock().live -= 1;
        self.changed.notify_waiters();
    }

    /// Ends one process (gracefully if it is still alive) and counts it out.
    async fn retire(&self, process: Process, cause: RetireCause) {
        let (pid, served) = (process.pid(), process.served);
        if process.is_alive() {
            process.shutdown(self.limits.kill_grace).await;
        }
        self.free_slot();
        self.observers.emit_pool(&PoolEvent::Retired {
            worker: self.worker.clone(),
            pid,
            served,
            cause,
        });
    }

    /// Stops taking tasks: idle processes end now (stdin closed, grace, then killed), busy
    /// ones when their task is done. For shutdown and for a reload that changed the worker.
    pub async fn close(&self, cause: RetireCause) {
        let idle = {
            let mut state = self.lock();
            state.retired = Some(cause.clone());
            std::mem::take(&mut state.idle)
        };
        futures::future::join_all(idle.into_iter().map(|p| self.retire(p, cause.clone()))).await;
    }

    /// Waits until every process is gone (after [`Pool::close`]), for at most `limit`.
    pub async fn wait_empty(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.live() > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// One round of upkeep: retire idle processes past `idle_timeout` while more than `min`
    /// are alive, then start processes up to `min`.
    async fn tend(self: &Arc<Self>) {
        let expired: Vec<Process> = {
            let mut state = self.lock();
            if state.retired.is_some() || state.fallback.is_some() {
                return;
            }
            let mut spare = state.live.saturating_sub(self.settings.min);
            let mut expired = Vec::new();
            // Oldest-idle first: `idle` is a stack, so they sit at the bottom.
            let mut i = 0;
            while i < state.idle.len() && spare > 0 {
                if state.idle[i].idle_since.elapsed() >= self.settings.idle_timeout {
                    expired.push(state.idle.remove(i));
                    spare -= 1;
                } else {
                    i += 1;
                }
            }
            expired
        };
        for p in expired {
            self.retire(p, RetireCause::Idle).await;
        }
        if let Some(limit) = self.settings.max_memory {
            // A process that grew during its last task and has had no task since.
            let grown: Vec<(Process, u64)> = {
                let mut state = self.lock();
                let mut grown = Vec::new();
                let mut i = 0;
                while i < state.idle.len() {
                    let p = &mut state.idle[i];
                    if p.checked_at.elapsed() >= MEMORY_CHECK_EVERY {
                        p.checked_at = Instant::now();
                        let rss = p.resident_bytes();
                        if rss > limit {
                            grown.push((state.idle.remove(i), rss));
                            continue;
                        }
                    }
                    i += 1;
                }
                grown
            };
            for (p, rss) in grown {
                self.retire(p, RetireCause::Memory { rss, limit }).await;
            }
        }
        loop {
            {
                let mut state = self.lock();
                if state.retired.is_some() || state.fallback.is_some() || state.live >= self.settings.min {
                    return;
                }
                state.live += 1;
            }
            match self.spawn().await {
                Ok(p) => self.checkin(p, true, "").await,
                Err(StartError::Spawn(e)) => {
                    self.free_slot();
                    tracing::warn!(worker = %self.worker, error = %e, "could not start a warm process");
                    return;
                }
                Err(StartError::NoHandshake { .. }) => return,
            }
        }
    }
}

async fn upkeep(pool: Weak<Pool>, tick: Duration) {
    loop {
        {
            let Some(pool) = pool.upgrade() else { return };
            if pool.lock().retired.is_some() {
                return;
            }
            pool.tend().await;
        }
        tokio::time::sleep(tick).await;
    }
}
