//! `wh send`: one task, the result on stdout, the verdict on stderr, the class as exit code.

use predicates::prelude::*;
use serde_json::Value;

use crate::support::wh;

const EXAMPLE: &str = "example-workers/python/example_worker.py";

#[test]
fn sends_a_task_and_prints_the_result() {
    let out = wh()
        .args([
            "send",
            "--type",
            "PrismQ.Example.ProcessData",
            "--params",
            r#"{"input_data": "héllo"}"#,
            EXAMPLE,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["success"], true);
    assert_eq!(result["result"]["processed"], "HÉLLO");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("wh: success · exit code 0"), "{stderr}");
}

#[test]
fn exit_code_mirrors_the_worker_class() {
    wh().args(["send", "--type", "Nope.Type", EXAMPLE])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("failure (not retriable)"));
}

#[test]
fn a_whole_task_from_stdin_is_sent_as_is() {
    let task = r#"{"id": "t-1", "type": "PrismQ.Example.ProcessData", "params": {"input_data": "a b"}}"#;
    let out = wh()
        .args(["send", "--task", "-", EXAMPLE])
        .write_stdin(task)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["result"]["word_count"], 2);
}

#[test]
fn broken_task_input_is_sent_with_a_warning() {
    wh().args(["send", "--task", "-", EXAMPLE])
        .write_stdin(r#"{"id": "x", "type":"#)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("warning: the task is not valid JSON"));
}

#[test]
fn raw_prints_the_exact_bytes() {
    let out = wh()
        .args(["send", "--raw", "--type", "PrismQ.Example.ProcessData", EXAMPLE])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.ends_with("}\n"));
    assert_eq!(text.lines().count(), 1, "the worker writes one line: {text}");
}

#[test]
fn malformed_params_name_the_flag_and_position() {
    wh().args(["send", "--type", "T", "--params", r#"{"a": 1,}"#, EXAMPLE])
        .assert()
        .code(64)
        .stderr(predicate::str::contains(
            "invalid JSON in --params at line 1, column 9",
        ));
}

#[test]
fn usage_errors_exit_64() {
    wh().args(["send", EXAMPLE]).assert().code(64);
    wh().args(["send", "--type", "T", "no/such/worker.py"])
        .assert()
        .code(64)
        .stderr(predicate::str::contains("worker not found: no/such/worker.py"));
}

#[test]
fn a_timeout_exits_3() {
    wh().args([
        "send",
        "--type",
        "T",
        "--timeout",
        "0.3",
        "fixtures/workers/hang.py",
    ])
    .assert()
    .code(3)
    .stderr(predicate::str::contains("no result within the 0.3s limit"));
}
