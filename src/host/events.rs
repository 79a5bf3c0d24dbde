//! Lifecycle events (the design's observer pattern): the dispatcher emits them, every
//! observer hears every one. Logs, metrics and the end-of-run summary are observers.

use std::time::Duration;

use crate::protocol::ExitClass;
use crate::runner::Exit;

/// Which task an event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRef {
    pub id: String,
    pub task_type: String,
    /// The delivery this is (1 for the first).
    pub attempt: u32,
}

/// Something that happened to a task or a worker process.
#[derive(Debug, Clone)]
pub enum Event {
    /// A task was claimed from the source.
    Received { task: TaskRef },
    /// A worker process was started for a task.
    WorkerSpawned {
        task: TaskRef,
        worker: String,
        pid: Option<u32>,
    },
    /// A warm process of a persistent worker took the task.
    Handed { task: TaskRef, worker: String, pid: u32 },
    /// The warm process answered (or was lost) after `duration`; it ends nothing else.
    Answered {
        task: TaskRef,
        worker: String,
        duration: Duration,
    },
    /// The worker process could not be started.
    SpawnFailed {
        task: TaskRef,
        worker: String,
        error: String,
    },
    /// One line the worker wrote to stderr (when `logging.capture_worker_output`).
    WorkerStderr {
        task: TaskRef,
        worker: String,
        line: String,
    },
    /// The worker reported progress on stderr (docs/protocol.md, section 9); the line is also
    /// a `WorkerStderr` event.
    Progress {
        task: TaskRef,
        worker: String,
        percent: u8,
        message: Option<String>,
    },
    /// The worker process ended (by itself or stopped by the host).
    WorkerExited {
        task: TaskRef,
        worker: String,
        exit: Exit,
        duration: Duration,
    },
    /// The task succeeded.
    Completed {
        task: TaskRef,
        worker: String,
        duration: Duration,
    },
    /// The task failed and will be tried again after `delay`.
    Retrying {
        task: TaskRef,
        worker: String,
        class: ExitClass,
        error: String,
        delay: Duration,
    },
    /// The task failed for good (`worker` is empty when no worker handles its type).
    Failed {
        task: TaskRef,
        worker: String,
        class: Option<ExitClass>,
        error: String,
    },
    /// The task was delivered too many times without an outcome.
    Dead {
        task: TaskRef,
        worker: String,
        error: String,
    },
    /// The task was given back to the source untouched (shutdown).
    Released { task: TaskRef, worker: String },
}

impl Event {
    /// Short name of the event, as logs and metrics label it.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Received { .. } => "received",
            Event::WorkerSpawned { .. } => "worker_spawned",
            Event::Handed { .. } => "handed",
            Event::Answered { .. } => "answered",
            Event::SpawnFailed { .. } => "spawn_failed",
            Event::WorkerStderr { .. } => "worker_stderr",
            Event::Progress { .. } => "progress",
            Event::WorkerExited { .. } => "worker_exited",
            Event::Completed { .. } => "completed",
            Event::Retrying { .. } => "retrying",
            Event::Failed { .. } => "failed",
            Event::Dead { .. } => "dead",
            Event::Released { .. } => "released",
        }
    }

    pub fn task(&self) -> &TaskRef {
        match self {
            Event::Received { task }
            | Event::WorkerSpawned { task, .. }
            | Event::Handed { task, .. }
            | Event::Answered { task, .. }
            | Event::SpawnFailed { task, .. }
            | Event::WorkerStderr { task, .. }
            | Event::Progress { task, .. }
            | Event::WorkerExited { task, .. }
            | Event::Completed { task, .. }
            | Event::Retrying { task, .. }
            | Event::Failed { task, .. }
            | Event::Dead { task, .. }
            | Event::Released { task, .. } => task,
        }
    }
}

/// Hears every event. Must not block: observers run on the dispatcher's thread.
pub trait Observer: Send + Sync {
    fn on_event(&self, event: &Event);

    /// Hears what happens to a persistent worker's processes (most observers need not).
    fn on_pool(&self, _event: &PoolEvent) {}
}

/// Something that happened to a warm process of a worker in persistent mode.
#[derive(Debug, Clone)]
pub enum PoolEvent {
    /// A process started and confirmed persistent mode.
    Started {
        worker: String,
        pid: u32,
        /// From spawn to its handshake.
        startup: Duration,
    },
    /// A process ended, after serving `served` tasks.
    Retired {
        worker: String,
        pid: u32,
        served: u64,
        cause: RetireCause,
    },
    /// A process did not confirm persistent mode: the worker runs one-shot from now on.
    Fallback {
        worker: String,
        reason: String,
        /// The end of what it wrote on stderr.
        stderr: String,
    },
}

/// Why a warm process was ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetireCause {
    /// Idle for `idle_timeout` while more than `min_workers` were alive.
    Idle,
    /// Served `max_tasks_per_process` tasks.
    MaxTasks(u64),
    /// Its memory grew past `worker_pool.max_memory_mb` (bytes).
    Memory { rss: u64, limit: u64 },
    /// A reload changed the worker.
    Reload,
    /// The host is stopping.
    Shutdown,
    /// It crashed, timed out or broke the stream during a task (the reason).
    Lost(String),
}

impl RetireCause {
    /// The metrics label.
    pub fn label(&self) -> &'static str {
        match self {
            RetireCause::Idle => "idle",
            RetireCause::MaxTasks(_) => "max_tasks",
            RetireCause::Memory { .. } => "memory",
            RetireCause::Reload => "reload",
            RetireCause::Shutdown => "shutdown",
            RetireCause::Lost(_) => "lost",
        }
    }
}

impl std::fmt::Display for RetireCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mb = |b: u64| b / (1024 * 1024);
        match self {
            RetireCause::Idle => write!(f, "idle past idle_timeout"),
            RetireCause::MaxTasks(n) => write!(f, "served {n} tasks (max_tasks_per_process)"),
            RetireCause::Memory { rss, limit } => write!(
                f,
                "grew to {} MB, past worker_pool.max_memory_mb ({} MB)",
                mb(*rss),
                mb(*limit)
            ),
            RetireCause::Reload => write!(f, "the config changed this worker (reload)"),
            RetireCause::Shutdown => write!(f, "the host is stopping"),
            RetireCause::Lost(why) => write!(f, "lost during a task: {why}"),
        }
    }
}

/// Every observer, in order.
#[derive(Default)]
pub struct Observers {
    observers: Vec<Box<dyn Observer>>,
}

impl Observers {
    pub fn add(&mut self, observer: impl Observer + 'static) {
        self.observers.push(Box::new(observer));
    }

    pub fn emit(&self, event: Event) {
        for o in &self.observers {
            o.on_event(&event);
        }
    }

    pub fn emit_pool(&self, event: &PoolEvent) {
        for o in &self.observers {
            o.on_pool(event);
        }
    }
}
