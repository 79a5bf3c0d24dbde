//! The worker as the host sees it: the built binary, a task on stdin, one JSON result line on
//! stdout and an exit code; in persistent mode, one process and one task line at a time.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

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
        .env_remove("WH_WORKER_MODE")
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
    let input = [
        r#"{"id": "test-1", "type": ""#,
        TASK_TYPES[0],
        r#"", "params": {"#,
    ]
    .concat();
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

// ------------------------------------------------------------------------------------------
// Persistent mode: one process, the handshake, then one result line per task line.
// ------------------------------------------------------------------------------------------

/// The worker started as the host starts it with `mode: persistent`. stdout is read by a
/// thread, so every read has a time limit: a worker that stops answering fails the test
/// instead of hanging it.
struct Persistent {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Persistent {
    fn start() -> Persistent {
        let mut child = Command::new(WORKER)
            .env("WH_WORKER_MODE", "persistent")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("failed to start the worker");
        let stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Persistent {
            child,
            stdin,
            lines,
        }
    }

    /// The next line on stdout, parsed.
    fn read(&self) -> Value {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(10))
            .expect("no line from the worker within 10 s");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    fn write(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        stdin.write_all(text.as_bytes()).expect("failed to write");
        stdin.flush().expect("failed to flush");
    }

    /// Write one line; the result line it gets.
    fn send(&mut self, line: &str) -> Value {
        self.write(&format!("{line}\n"));
        self.read()
    }

    /// EOF on stdin: the exit code, once stdout has ended with nothing after the results.
    fn close(mut self) -> i32 {
        drop(self.stdin.take());
        match self.lines.recv_timeout(Duration::from_secs(10)) {
            Err(mpsc::RecvTimeoutError::Disconnected) => {}
            other => panic!("stdout did not end after EOF: {other:?}"),
        }
        let status = self.child.wait().expect("failed to wait for the worker");
        status.code().expect("the worker was killed by a signal")
    }
}

impl Drop for Persistent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn persistent_the_handshake_comes_first() {
    let worker = Persistent::start();
    let handshake = worker.read(); // before any task is sent
    assert_eq!(handshake["ready"], true);
    assert_eq!(handshake["mode"], "persistent");
    assert_eq!(worker.close(), 0);
}

#[test]
fn persistent_tasks_are_answered_in_order_each_with_its_own_logs() {
    let mut worker = Persistent::start();
    worker.read();
    for n in 0..5 {
        let input = json!({"id": format!("t-{n}"), "type": TASK_TYPES[0],
                           "params": {"input_data": format!("task {n}")}});
        let result = worker.send(&input.to_string());
        assert_eq!(result["success"], true, "{result}");
        assert_eq!(result["result"]["processed_input"], format!("TASK {n}"));
        let received: Vec<&Value> = result["logs"]
            .as_array()
            .expect("logs")
            .iter()
            .filter(|e| {
                e["message"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("Received task")
            })
            .collect();
        assert_eq!(received.len(), 1, "{result}");
        assert_eq!(
            received[0]["message"],
            format!("Received task t-{n} of type {}", TASK_TYPES[0])
        );
    }
    assert_eq!(worker.close(), 0);
}

#[test]
fn persistent_a_failed_task_does_not_end_the_worker() {
    let mut worker = Persistent::start();
    worker.read();
    let failed = worker.send(&task("Not.A.Known.Type", json!({})).to_string());
    assert_eq!(failed["success"], false);
    assert_eq!(failed["error"]["retry_possible"], false);
    let result = worker.send(&task(TASK_TYPES[0], sample_params()).to_string());
    assert_eq!(result["success"], true, "{result}");
    assert_eq!(worker.close(), 0);
}

#[test]
fn persistent_invalid_json_then_a_task() {
    let mut worker = Persistent::start();
    worker.read();
    let failed = worker.send(r#"{"id": "test-1", "type": "#);
    assert_eq!(failed["error"]["type"], "JSONDecodeError");
    assert_eq!(failed["error"]["retry_possible"], false);
    worker.write("\n   \n"); // blank lines are not tasks: no answer
    let result = worker.send(&task(TASK_TYPES[0], sample_params()).to_string());
    assert_eq!(result["success"], true, "{result}");
    assert_eq!(worker.close(), 0);
}
