//! The worker protocol (v1): what a task and a result look like, what a worker's exit code
//! means, and how one finished run is classified.
//!
//! This module does no I/O. It is shared by `wh send`, `wh test-worker` and `wh host`: the
//! runner (`crate::runner`) produces a [`crate::runner::RunOutcome`], and [`classify`] turns it
//! into an [`ExitClass`] plus the parsed [`WorkerOutput`].

mod classify;
pub mod persistent;
mod progress;
pub mod pyjson;
mod schema;
mod types;

pub use classify::{
    Classification, ExitClass, OutputError, classify, human_bytes, parse_json_object, parse_output,
};
pub use progress::{PROGRESS_KEYWORD, PROGRESS_MESSAGE_MAX_CHARS, Progress, parse_progress};
pub use schema::{SchemaError, Schemas};
pub use types::{LogEntry, Task, WorkerError, WorkerOutput};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: &str = "1";
