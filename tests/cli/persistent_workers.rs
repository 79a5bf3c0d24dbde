//! Persistent mode (docs/protocol.md section 8) as the example workers and the scaffolded
//! templates serve it. Each worker is started here directly with `WH_WORKER_MODE=persistent`
//! and driven over its pipes the way the host drives it: the handshake, then one task line at
//! a time, each answered before the next is sent. Every read has a time limit (stdout is read
//! by a thread and handed over a channel), so a broken worker fails the test instead of
//! hanging it. The rust template is checked by `scaffold::rust_builds_with_cargo_and_passes_the_gate`,
//! which already builds it.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::scaffold::{have, scaffold};
use crate::support::ROOT;

/// How long one answer may take (generous: CI machines are slow and busy).
const ANSWER_LIMIT: Duration = Duration::from_secs(10);
/// How soon a worker must exit after EOF, or after SIGTERM.
const EXIT_LIMIT: Duration = Duration::from_secs(2);
/// How much a worker's resident memory may grow between task 100 and task 1,000: the bound
/// `wh test-worker --mode persistent` holds workers to (`persistent.memory`). The Python
/// workers grow by nothing; Node grows 1.5 to 7 MiB while V8 compiles the hot loop, then stays
/// flat.
const RSS_GROWTH_LIMIT_KIB: u64 = 16 * 1024;

/// A worker process in persistent mode. It is killed when dropped, so a failed test leaves
/// no process behind.
pub struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// The last few KiB of its stderr, for failure messages (stderr is drained so that a
    /// chatty worker never blocks on a full pipe).
    stderr: Arc<Mutex<Vec<u8>>>,
    what: String,
}

impl Worker {
    /// Starts `command` with `WH_WORKER_MODE=persistent` and reads its handshake.
    pub fn start(mut command: Command, what: &str) -> Worker {
        let mut child = command
            .env("WH_WORKER_MODE", "persistent")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut pipe = child.stderr.take().unwrap();
        let tail = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut tail = tail.lock().unwrap();
                tail.extend_from_slice(&buf[..n]);
                let excess = tail.len().saturating_sub(4096);
                tail.drain(..excess);
            }
        });
        let stdin = child.stdin.take();
        let worker = Worker {
            child,
            stdin,
            lines,
            stderr,
            what: what.to_string(),
        };
        let handshake = worker.read();
        assert_eq!(handshake["ready"], true, "{what}: handshake {handshake}");
        assert_eq!(handshake["mode"], "persistent", "{what}: handshake {handshake}");
        worker
    }

    fn stderr_tail(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// The next stdout line, which must be one JSON object.
    fn read(&self) -> Value {
        let line = match self.lines.recv_timeout(ANSWER_LIMIT) {
            Ok(line) => line,
            Err(e) => panic!(
                "{}: no line on stdout within {ANSWER_LIMIT:?} ({e}); stderr:\n{}",
                self.what,
                self.stderr_tail()
            ),
        };
        let value: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{}: not JSON ({e}): {line}", self.what));
        assert!(value.is_object(), "{}: not an object: {line}", self.what);
        value
    }

    fn write(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        stdin
            .write_all(text.as_bytes())
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("{}: cannot write to stdin: {e}", self.what));
    }

    /// Sends one line and returns the result line it gets.
    pub fn send(&mut self, line: &str) -> Value {
        self.write(&format!("{line}\n"));
        self.read()
    }

    /// Resident memory, from /proc/<pid>/status.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{}: no VmRSS in its status", self.what))
    }

    /// Waits for the process to exit, at most `limit`.
    fn exit_within(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{}: still running {limit:?} later; stderr:\n{}",
                self.what,
                self.stderr_tail()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Closes stdin: stdout must end with nothing after the last result, and the process must
    /// exit 0 within `EXIT_LIMIT`.
    pub fn close(mut self) {
        drop(self.stdin.take());
        match self.lines.recv_timeout(EXIT_LIMIT) {
            Err(RecvTimeoutError::Disconnected) => {}
            Ok(line) => panic!("{}: stdout after the last result: {line}", self.what),
            Err(RecvTimeoutError::Timeout) => {
                panic!("{}: stdout still open {EXIT_LIMIT:?} after EOF", self.what)
            }
        }
        let status = self.exit_within(EXIT_LIMIT);
        assert_eq!(
            status.code(),
            Some(0),
            "{}: exit after EOF; stderr:\n{}",
            self.what,
            self.stderr_tail()
        );
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends 1,000 tasks one at a time: three successes of `task_type` (whose result must hold
/// the upper-cased `input_data`, as every template's and example's does) then one failure
/// (an unknown type), so the order of results is checked by what each one says; an invalid
/// JSON line and a blank line halfway. Checks memory growth (and prints it), then EOF.
pub fn serves_a_thousand_tasks(command: Command, task_type: &str, what: &str) {
    let mut worker = Worker::start(command, what);
    let mut after_100 = 0;
    for i in 1..=1000u32 {
        if i % 4 == 0 {
            let unknown = format!("No.Such.Type{i}");
            let task = json!({"id": format!("t-{i}"), "type": unknown, "params": {}});
            let result = worker.send(&task.to_string());
            assert_eq!(result["success"], false, "{what}: task {i}: {result}");
            assert_eq!(
                result["error"]["retry_possible"], false,
                "{what}: task {i}: {result}"
            );
            let message = result["error"]["message"].as_str().unwrap_or_default();
            assert!(
                message.contains(&unknown),
                "{what}: task {i} out of order: {result}"
            );
        } else {
            let task = json!({"id": format!("t-{i}"), "type": task_type,
                              "params": {"input_data": format!("task-{i}")}});
            let result = worker.send(&task.to_string());
            assert_eq!(result["success"], true, "{what}: task {i}: {result}");
            let expected = format!("\"TASK-{i}\"");
            assert!(
                result["result"].to_string().contains(&expected),
                "{what}: task {i} out of order: {result}"
            );
        }
        if i == 500 {
            let result = worker.send(r#"{"id": "broken", "type": "#);
            assert_eq!(result["success"], false, "{what}: invalid JSON: {result}");
            assert_eq!(result["error"]["retry_possible"], false, "{what}: {result}");
            // A blank line gets no answer: the next result read is the next task's.
            worker.write("\n");
        }
        if i == 100 {
            after_100 = worker.rss_kib();
        }
    }
    let after_1000 = worker.rss_kib();
    eprintln!("{what}: VmRSS {after_100} KiB after task 100, {after_1000} KiB after task 1000");
    assert!(
        after_1000 <= after_100 + RSS_GROWTH_LIMIT_KIB,
        "{what}: memory grew from {after_100} KiB (task 100) to {after_1000} KiB (task 1000)"
    );
    worker.close();
}

/// A task of `task_type` is answered, then SIGTERM between tasks ends the process within
/// `EXIT_LIMIT` (how it ends is the worker's business: an exit code or the signal).
pub fn stops_on_sigterm_between_tasks(command: Command, task_type: &str, what: &str) {
    let mut worker = Worker::start(command, what);
    let task = json!({"id": "t-1", "type": task_type, "params": {}});
    assert_eq!(worker.send(&task.to_string())["success"], true, "{what}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(worker.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    worker.exit_within(EXIT_LIMIT);
}

fn python(script: &std::path::Path) -> Command {
    let mut command = Command::new("python3");
    command.arg(script);
    command
}

const EXAMPLE: &str = "example-workers/python/example_worker.py";

#[test]
fn the_example_worker_serves_a_thousand_tasks() {
    let script = std::path::Path::new(ROOT).join(EXAMPLE);
    serves_a_thousand_tasks(python(&script), "PrismQ.Example.ProcessData", "example worker");
    stops_on_sigterm_between_tasks(python(&script), "PrismQ.Example.ProcessData", "example worker");
}

#[test]
fn the_flaky_worker_decides_each_delivery_from_its_attempt() {
    let script = std::path::Path::new(ROOT).join("example-workers/python/flaky_worker.py");
    let mut worker = Worker::start(python(&script), "flaky worker");
    let delivery = |attempt: Option<u32>| {
        let mut task = json!({"id": "t-1", "type": "PrismQ.Example.Flaky",
                              "params": {"succeed_on_attempt": 3}});
        if let Some(attempt) = attempt {
            task["metadata"] = json!({"attempt": attempt});
        }
        task.to_string()
    };
    for attempt in [1, 2] {
        let result = worker.send(&delivery(Some(attempt)));
        assert_eq!(result["success"], false, "{result}");
        assert_eq!(result["error"]["type"], "NetworkError");
        assert_eq!(result["error"]["retry_possible"], true);
    }
    let result = worker.send(&delivery(Some(3)));
    assert_eq!(result["result"]["attempt"], 3, "{result}");
    let result = worker.send("not json");
    assert_eq!(result["error"]["retry_possible"], false, "{result}");
    let result = worker.send(&delivery(None));
    assert_eq!(
        result["success"], true,
        "without an attempt it succeeds: {result}"
    );
    worker.close();
}

#[test]
fn the_python_template_serves_a_thousand_tasks() {
    let tmp = tempfile::tempdir().unwrap();
    scaffold(
        tmp.path(),
        &["python", "text-cleaner", "--task-type", "Acme.Clean"],
    );
    let script = tmp.path().join("text-cleaner/src/text_cleaner/worker.py");
    serves_a_thousand_tasks(python(&script), "Acme.Clean", "python template");
    stops_on_sigterm_between_tasks(python(&script), "Acme.Clean", "python template");
}

#[test]
fn the_node_template_serves_a_thousand_tasks() {
    if !have("node") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    scaffold(tmp.path(), &["node", "json-echo", "--task-type", "Acme.Echo"]);
    let node = || {
        let mut command = Command::new("node");
        command.arg(tmp.path().join("json-echo/worker.js"));
        command
    };
    serves_a_thousand_tasks(node(), "Acme.Echo", "node template");
    stops_on_sigterm_between_tasks(node(), "Acme.Echo", "node template");
}
