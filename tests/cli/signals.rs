//! Ctrl+C on `wh` stops the worker's whole group and exits 130.

use std::process::{Child, Command, Stdio};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::{ROOT, eventually, private_copy, processes_mentioning};

/// Starts `wh ARGS... WORKER` on a private copy of the hang fixture, waits until the worker
/// runs, and sends SIGINT to `wh` alone (as a terminal would to its foreground job).
fn interrupt(args: &[&str]) -> (Child, tempfile::TempDir, String) {
    let (dir, hang) = private_copy("fixtures/workers/hang.py");
    let child = Command::new(env!("CARGO_BIN_EXE_wh"))
        .current_dir(ROOT)
        .args(args)
        .arg(&hang)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually("the worker started", || {
        processes_mentioning(&hang)
            .iter()
            .any(|c| c.contains("python") && !c.contains("target/"))
    });
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    (child, dir, hang)
}

#[test]
fn sigint_stops_the_worker_and_exits_130() {
    let (child, _dir, hang) = interrupt(&["send", "--type", "T"]);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    eventually("the worker is gone", || processes_mentioning(&hang).is_empty());
}

#[test]
fn sigint_during_test_worker_reports_interrupted() {
    let (child, _dir, hang) = interrupt(&["test-worker", "--format", "json", "-j", "1"]);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["cases"][0]["status"], "interrupted");
    assert_eq!(report["summary"]["compliant"], false);
    eventually("the worker is gone", || processes_mentioning(&hang).is_empty());
}
