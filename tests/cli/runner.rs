//! The runner's promises, seen from outside: time limits kill the whole group, floods are
//! capped, signals are named, nothing is left running.

use crate::support::{eventually, private_copy, processes_mentioning, report, status, wh};

#[test]
fn a_hung_worker_times_out_and_leaves_nothing() {
    let (_dir, hang) = private_copy("fixtures/workers/hang.py");
    let (code, report) = report(&["--timeout", "0.5", "--case", "basic.valid-task", &hang]);
    assert_eq!(code, 1);
    assert_eq!(status(&report, "basic.valid-task"), "timed_out");
    let run = &report["cases"][0]["runs"][0];
    assert_eq!(run["class"], "timeout");
    assert_eq!(run["stopped"], "timed_out");
    assert!(processes_mentioning(&hang).is_empty());
}

#[test]
fn a_worker_that_ignores_sigterm_is_killed() {
    let (_dir, stubborn) = private_copy("fixtures/workers/ignores_sigterm.py");
    let (_, report) = report(&[
        "--timeout",
        "0.5",
        "--kill-grace",
        "0.3",
        "--case",
        "basic.valid-task",
        &stubborn,
    ]);
    let run = &report["cases"][0]["runs"][0];
    assert_eq!(run["exit"]["kind"], "signal");
    assert_eq!(run["exit"]["value"], 9, "escalated to SIGKILL: {run:#}");
    assert!(processes_mentioning(&stubborn).is_empty());
}

#[test]
fn a_grandchild_holding_stdout_times_out_and_is_killed() {
    let (_dir, holder) = private_copy("fixtures/workers/grandchild_holds_stdout.py");
    let (_, report) = report(&["--timeout", "1", "--case", "basic.valid-task", &holder]);
    assert_eq!(status(&report, "basic.valid-task"), "timed_out");
    let reason = report["cases"][0]["runs"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("kept stdout/stderr open"), "{reason}");
    eventually("the sleeping grandchild is gone", || {
        processes_mentioning("sleep 30")
            .iter()
            .all(|c| !c.contains(&holder))
    });
}

#[test]
fn a_leftover_grandchild_is_reported_and_killed() {
    let (_dir, leaver) = private_copy("fixtures/workers/grandchild_left_running.py");
    let (_, report) = report(&["--case", "process.no-leftovers", &leaver]);
    let case = &report["cases"][0];
    assert_eq!(case["status"], "failed");
    let leftovers = case["runs"][0]["leftovers"].as_array().unwrap();
    assert!(
        leftovers[0]["command"].as_str().unwrap().starts_with("sleep"),
        "{leftovers:?}"
    );
    let pid = leftovers[0]["pid"].as_i64().unwrap();
    eventually("the leftover is killed", || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z"))
    });
}

#[test]
fn a_stdout_flood_is_capped() {
    let out = wh()
        .args([
            "send",
            "--type",
            "T",
            "--max-stdout",
            "1MiB",
            "fixtures/workers/stdout_flood.py",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "protocol violation");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("stdout went past the 1 MiB cap"), "{stderr}");
    assert_eq!(out.stdout.len(), 1024 * 1024, "the first 1 MiB is shown as is");
}

#[test]
fn a_crash_names_the_signal() {
    let out = wh()
        .args(["send", "--type", "T", "fixtures/workers/crash_by_signal.py"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("killed by SIGSEGV"), "{stderr}");
}
