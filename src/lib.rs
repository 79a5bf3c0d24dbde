//! `wh`, the WorkerHost toolkit, as a library: the binary in `main.rs` is a thin shell over it.
//!
//! Dependencies point one way: [`protocol`] (types, schemas, classification; no I/O) ←
//! [`runner`] (start and supervise one worker process) ← [`compliance`] (`wh test-worker`) and
//! [`commands`] (one file per subcommand).

pub mod cli;
pub mod commands;
pub mod compliance;
pub mod config;
pub mod error;
pub mod exit;
pub mod host;
pub mod lint;
pub mod protocol;
pub mod runner;
pub mod scaffold;
