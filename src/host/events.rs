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
            Event::SpawnFailed { .. } => "spawn_failed",
            Event::WorkerStderr { .. } => "worker_stderr",
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
            | Event::SpawnFailed { task, .. }
            | Event::WorkerStderr { task, .. }
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
}
