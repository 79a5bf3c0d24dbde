//! The worker as the host sees it: the built binary, a task on stdin, one JSON result line on
//! stdout and an exit code.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

/// The worker binary Cargo built for these tests.
const WORKER: &str = env!("CARGO_BIN_EXE_{{name}}");

/// The task types the worker handles (as in src/main.rs).
const TASK_TYPES: &[&str] = &{{task_types_json}};

/// Params the worker accepts: change them along with process_task().
fn sample_params() -> Value {
    json!({"input_data": "hello world"})
}

/// Run the worker with `input` on stdin: its exit code and its one result object.
fn run(input: &[u8]) -> (i32, Value) {
    let mut child = Command::new(WORKER)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("failed to start the worker");
    // The worker reads to EOF before it writes, so writing all of stdin first cannot block.
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin.write_all(input).expect("failed to write the task");
    drop(stdin);
    let output = child
        .wait_with_output()
        .expect("failed to wait for the worker");

    let stdout = String::from_utf8(output.stdout).expect("stdout is not UTF-8");
    let line = stdout
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("stdout is not one line: {stdout:?}"));
    assert!(
        !line.contains('\n'),
        "stdout holds more than one line: {stdout:?}"
    );
    let result: Value = serde_json::from_str(line).expect("stdout is not JSON");
    let code = output
        .status
        .code()
        .expect("the worker was killed by a signal");
    (code, result)
}

fn task(task_type: &str, params: Value) -> Value {
    json!({"id": "test-1", "type": task_type, "params": params})
}

#[test]
fn a_valid_task_succeeds() {
    let (code, result) = run(task(TASK_TYPES[0], sample_params()).to_string().as_bytes());
    assert_eq!(code, 0, "{result}");
    assert_eq!(result["success"], true);
    assert!(result["result"].is_object());
    assert!(result["logs"].is_array());
}

#[test]
fn an_unknown_task_type_is_not_retriable() {
    let (code, result) = run(task("Not.A.Known.Type", json!({})).to_string().as_bytes());
    assert_eq!(code, 2, "{result}");
    assert_eq!(result["success"], false);
    assert_eq!(result["error"]["type"], "ValidationError");
    assert_eq!(
        result["error"]["message"],
        "Unknown task type: Not.A.Known.Type"
    );
    assert_eq!(result["error"]["retry_possible"], false);
}

#[test]
fn a_task_without_an_id_is_not_retriable() {
    let input = json!({"type": TASK_TYPES[0], "params": sample_params()});
    let (code, result) = run(input.to_string().as_bytes());
    assert_eq!(code, 2, "{result}");
    assert_eq!(result["error"]["retry_possible"], false);
}

#[test]
fn invalid_json_is_not_retriable() {
    // Cut off mid-object: `{"id": "test-1", "type": "<type>", "params": {`.
    let input = [r#"{"id": "test-1", "type": ""#, TASK_TYPES[0], r#"", "params": {"#].concat();
    let (code, result) = run(input.as_bytes());
    assert_eq!(code, 2, "{result}");
    assert_eq!(result["success"], false);
    assert_eq!(result["error"]["type"], "JSONDecodeError");
    assert_eq!(result["error"]["retry_possible"], false);
}

#[test]
fn a_task_over_several_lines_is_read_whole() {
    let input = serde_json::to_string_pretty(&task(TASK_TYPES[0], sample_params())).expect("JSON");
    let (code, result) = run(input.as_bytes());
    assert_eq!(code, 0, "{result}");
    assert_eq!(result["success"], true);
}
