//! Every exit code `wh` returns, documented once (and in `docs/exit-codes.md`).
//!
//! | code | `wh test-worker` | `wh send` | `wh lint` |
//! |------|------------------|-----------|-----------|
//! | 0    | every case passed (skipped ones aside) | the worker succeeded | no errors (warnings allowed) |
//! | 1    | a case failed or timed out | the worker failed, retriable (its exit 1) | errors (or warnings with `--deny-warnings`) |
//! | 2    | usage error, unreadable input, or the worker cannot be started | the worker failed, not retriable (its exit 2) | usage error or a file that cannot be read |
//! | 3    | — | timeout: the worker exited 3, or `wh` stopped it at `--timeout` | — |
//! | 4    | — | protocol violation: bad output, or an exit code outside the protocol | — |
//! | 5    | — | the worker crashed (killed by a signal) | — |
//! | 64   | — | usage error, unreadable input, or the worker cannot be started | — |
//! | 130  | interrupted (Ctrl+C) | interrupted: the worker exited 130 or SIGINT, or Ctrl+C | — |
//!
//! `wh scaffold` exits 0 when it wrote the project and 2 when it wrote nothing (bad name,
//! task type, template or folder, or a failed `--venv`).
//!
//! `wh send` keeps 1 and 2 for the worker's own answer, so its own errors use 64 (EX_USAGE).

use crate::protocol::ExitClass;

pub const OK: u8 = 0;
/// `wh test-worker`: at least one case failed or timed out.
pub const CASE_FAILED: u8 = 1;
/// `wh lint`: findings that fail the run.
pub const FINDINGS: u8 = 1;
/// Usage error, unreadable input, or a worker that cannot be started.
pub const USAGE: u8 = 2;
/// `wh send`'s own errors (its 1 and 2 belong to the worker).
pub const SEND_USAGE: u8 = 64;
/// Interrupted by the user.
pub const INTERRUPTED: u8 = 130;

/// `wh send`'s exit code for the worker's class.
pub fn for_class(class: ExitClass) -> u8 {
    match class {
        ExitClass::Success => 0,
        ExitClass::RetriableFailure => 1,
        ExitClass::PermanentFailure => 2,
        ExitClass::Timeout => 3,
        ExitClass::ProtocolViolation => 4,
        ExitClass::Crashed => 5,
        ExitClass::Interrupted => INTERRUPTED,
    }
}
