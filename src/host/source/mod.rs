//! Where tasks come from and where outcomes go, behind one trait: the embedded local queue
//! here; Redis, RabbitMQ and the TaskManager HTTP API implement the same trait.
//!
//! Delivery is at least once. A claim takes a lease; a host that dies loses nothing because
//! an expired lease makes the task claimable again. Every claim counts as a delivery
//! (`attempts`), hard kills included, so the dispatcher can bury a task that keeps killing its
//! worker or host (`finish` with `Outcome::Dead`) instead of looping forever.

pub mod amqp;
pub mod http;
pub mod local;
pub mod redis;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The end of `s` (a stderr tail to keep), at most `max` bytes, starting on a char boundary.
pub(crate) fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// A task's state in a source that keeps state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting to be claimed (possibly not before `available_at`, after a retry).
    Pending,
    /// Claimed by a host, under a lease.
    Running,
    Completed,
    /// Failed for good: not retriable, or out of retries.
    Failed,
    /// Delivered too many times without an outcome (its worker or host keeps dying).
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Running => "running",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Dead => "dead",
        }
    }
}

/// A task to add.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTask {
    #[serde(rename = "type")]
    pub task_type: String,
    #[serde(default)]
    pub params: Map<String, Value>,
    #[serde(default)]
    pub priority: i64,
    /// A second task with the same key is not added (the first one's id is returned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedupe_key: Option<String>,
}

/// What `enqueue` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Enqueued {
    pub id: String,
    /// The dedupe key matched an existing task; nothing was added.
    pub deduplicated: bool,
}

/// A claimed task, under lease.
#[derive(Debug, Clone, Serialize)]
pub struct Claimed {
    pub id: String,
    pub task_type: String,
    pub params: Map<String, Value>,
    pub priority: i64,
    /// Deliveries so far, this one included (1 on the first claim).
    pub attempts: u32,
    /// Unix seconds when the task was created.
    pub created_at: f64,
    /// The lease token: completing with a stale token (the lease expired and someone else
    /// claimed the task) is refused.
    pub lease: String,
}

/// How a delivery ended, as the source records it.
#[derive(Debug, Clone, Serialize)]
pub enum Outcome {
    /// Done; the worker's `result` object.
    Completed { result: Value },
    /// Try again, not before `delay` from now.
    Retry { error: String, delay: Duration },
    /// Failed for good.
    Failed { error: String },
    /// Too many deliveries without an outcome.
    Dead { error: String },
}

/// Extra facts kept with a finished delivery.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Record {
    /// The last bytes of the worker's stderr.
    pub stderr_tail: String,
    /// The outcome class (`success`, `retriable_failure`, ...).
    pub class: Option<String>,
    pub duration_ms: u64,
}

/// A task as listed or shown.
#[derive(Debug, Clone, Serialize)]
pub struct TaskView {
    pub id: String,
    #[serde(rename = "type")]
    pub task_type: String,
    pub status: Status,
    pub priority: i64,
    pub attempts: u32,
    pub params: Map<String, Value>,
    pub dedupe_key: Option<String>,
    pub created_at: f64,
    pub updated_at: f64,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub class: Option<String>,
    pub stderr_tail: Option<String>,
    pub lease_owner: Option<String>,
    /// The last progress (percent) the worker reported during the current or last delivery,
    /// where the source keeps it (docs/protocol.md, section 9); cleared by the next claim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<u8>,
    /// The message of that report, if it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress_message: Option<String>,
}

/// Filters for `list`.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub status: Option<Status>,
    pub task_type: Option<String>,
    pub limit: usize,
}

/// Counts by status, for metrics and `--drain`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Depth {
    /// Pending and claimable now (retries waiting for their backoff not included).
    pub ready: u64,
    /// Pending, waiting for a retry's backoff.
    pub delayed: u64,
    pub running: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("the task source is unavailable: {0}")]
    Unavailable(String),
    #[error("no task `{0}`")]
    NotFound(String),
    /// The lease expired and the task was claimed again; this delivery's outcome is dropped.
    #[error("task `{0}` is no longer leased to this host")]
    LeaseLost(String),
    #[error("{0}")]
    Invalid(String),
}

/// Where tasks come from and where outcomes go.
#[async_trait]
pub trait TaskSource: Send + Sync {
    /// Claims one task of one of `types` (highest priority, then oldest), leasing it to
    /// `owner` for `lease`. `None` when there is nothing to do now.
    async fn claim(
        &self,
        types: &[String],
        owner: &str,
        lease: Duration,
    ) -> Result<Option<Claimed>, SourceError>;

    /// Claims up to `max` tasks at once, as [`TaskSource::claim`] claims one (in one
    /// transaction or round trip where the engine allows). Empty when there is nothing to do.
    async fn claim_batch(
        &self,
        types: &[String],
        owner: &str,
        lease: Duration,
        max: usize,
    ) -> Result<Vec<Claimed>, SourceError> {
        let _ = max;
        Ok(self.claim(types, owner, lease).await?.into_iter().collect())
    }

    /// Records how a delivery ended.
    async fn finish(&self, task: &Claimed, outcome: &Outcome, record: &Record) -> Result<(), SourceError>;

    /// Gives a claimed task back untouched (shutdown): claimable again at once. Where the
    /// engine allows, the delivery does not count against the task's retries (a hard kill
    /// does: its lease expires instead).
    async fn release(&self, task: &Claimed) -> Result<(), SourceError>;

    /// Extends the lease of a task still running.
    async fn extend(&self, task: &Claimed, lease: Duration) -> Result<(), SourceError>;

    /// Records a progress report of a running delivery (docs/protocol.md, section 9):
    /// `percent` 0..=100 and an optional message. It never extends the lease.
    ///
    /// Best effort: the dispatcher sends at most one report per task per second, in the
    /// background; a failure is logged and never fails the task. `LeaseLost` means the delivery
    /// is no longer this host's (finished, released, or claimed again): the dispatcher then
    /// sends no more reports for it.
    ///
    /// `task` may have an empty `lease` and no params: the dispatcher's stderr hook knows only
    /// the task's id, type and attempt. A source that checks leases then identifies the
    /// delivery by `id` and `attempts`.
    ///
    /// The default does nothing: a source with nowhere to keep progress (RabbitMQ) drops it.
    async fn progress(
        &self,
        _task: &Claimed,
        _percent: u8,
        _message: Option<&str>,
    ) -> Result<(), SourceError> {
        Ok(())
    }

    /// Whether the source answers (for `/ready`).
    async fn health(&self) -> Result<(), SourceError>;

    /// Tasks waiting and running, of `types` (all types when empty), for metrics and
    /// `--drain`.
    async fn depth(&self, types: &[String]) -> Result<Depth, SourceError>;

    /// Adds tasks (in one transaction where the engine allows).
    async fn enqueue(&self, tasks: &[NewTask]) -> Result<Vec<Enqueued>, SourceError>;

    /// Lists tasks, newest first.
    async fn list(&self, filter: &ListFilter) -> Result<Vec<TaskView>, SourceError>;

    /// One task, whole.
    async fn show(&self, id: &str) -> Result<TaskView, SourceError>;

    /// Puts a failed or dead task back to pending with its attempts reset.
    async fn retry(&self, id: &str) -> Result<(), SourceError>;
}
