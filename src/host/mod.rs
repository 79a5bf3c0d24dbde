//! `wh host`: the coordinator loop. Claims tasks from a source, routes each to its worker by
//! type, runs it through the runner with the worker's limits, and records the outcome with
//! retries and backoff. It holds no business logic.
//!
//! - `source/`: where tasks come from (`TaskSource` trait; the local SQLite queue).
//! - `registry.rs`: task type → worker, and each worker's launch command.
//! - `dispatch.rs`: the claim/run/record loop, concurrency, shutdown.
//! - `policy.rs`: retry, fail or give up, with backoff.
//! - `progress.rs`: a worker's progress reports, forwarded to the source, throttled.
//! - `events.rs`: lifecycle events and observers; `log.rs`, `metrics.rs`, `summary.rs`
//!   observe them.
//! - `http.rs`: /metrics, /health, /ready, /workers/<name>/health.

pub mod dispatch;
pub mod events;
pub mod http;
pub mod log;
pub mod metrics;
pub mod policy;
pub mod pool;
pub mod progress;
pub mod registry;
pub mod source;
pub mod summary;
