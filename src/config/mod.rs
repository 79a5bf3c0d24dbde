//! The coordinator config: its model, loading with source positions, `${VAR}` substitution
//! and `WORKERHOST_*` overrides, and how a configured worker becomes a command line.

pub mod env;
pub mod load;
pub mod model;
pub mod resolve;
pub mod support;
pub mod yaml;
