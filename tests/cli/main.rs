//! End-to-end tests of the `wh` binary: one integration test binary, one file per feature.

mod fixtures;
mod host;
mod lint;
mod persistent_workers;
mod pool;
mod remote;
mod reports;
mod runner;
mod scaffold;
mod send;
mod signals;
mod support;
mod test_worker;
