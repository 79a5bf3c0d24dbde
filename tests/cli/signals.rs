//! Ctrl+C on `wh` stops the worker's whole group and exits 130.

use std::process::{Command, Stdio};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::{ROOT, eventually, private_copy, processes_mentioning};

#[test]
fn sigint_stops_the_worker_and_exits_130() {
    let (_dir, hang) = private_copy("fixtures/workers/hang.py");
    let mut child = Command::new(env!("CARGO_BIN_EXE_wh"))
        .current_dir(ROOT)
        .args(["send", "--type", "T", &hang])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    eventually("the worker started", || {
        processes_mentioning(&hang)
            .iter()
            .any(|c| c.contains("python") && !c.contains("target/"))
    });
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    eventually("the worker is gone", || processes_mentioning(&hang).is_empty());
}

#[test]
fn sigint_during_test_worker_reports_interrupted() {
    let (_dir, hang) = private_copy("fixtures/workers/hang.py");
    let child = Command::new(env!("CARGO_BIN_EXE_wh"))
        .current_dir(ROOT)
        .args(["test-worker", "--format", "json", "-j", "1", &hang])
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
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["cases"][0]["status"], "interrupted");
    assert_eq!(report["summary"]["compliant"], false);
    eventually("the worker is gone", || processes_mentioning(&hang).is_empty());
}
