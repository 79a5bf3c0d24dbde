//! `wh host` with real worker processes on the embedded queue: outcomes by exit class, time
//! limits, crashes, hard kills of the host, signals, reload, and two hosts on one queue.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::support::{ROOT, eventually, processes_mentioning, wh};

/// A config in `dir` whose workers are `(name, fixture or example script, task types, extra yaml)`.
pub(crate) fn config(dir: &Path, workers: &[(&str, &str, &[&str], &str)]) -> PathBuf {
    let mut yaml =
        String::from("task_manager:\n  type: local\n  path: queue.db\n  poll_interval: 0.2\nworkers:\n");
    for (name, script, types, extra) in workers {
        let script = Path::new(ROOT).join(script);
        yaml.push_str(&format!(
            "  - name: {name}\n    command: [\"python3\", \"{}\"]\n    task_types: {types:?}\n    timeout: 10\n    max_retries: 3\n",
            script.display()
        ));
        for line in extra.lines() {
            yaml.push_str(&format!("    {line}\n"));
        }
    }
    let path = dir.join("workerhost.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

pub(crate) fn enqueue(cfg: &Path, ndjson: &str) {
    let out = wh()
        .args(["enqueue", "--config"])
        .arg(cfg)
        .args(["--file", "-"])
        .write_stdin(ndjson)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `wh host --drain` to the end; returns its stdout (the summary table).
pub(crate) fn drain(cfg: &Path, extra: &[&str]) -> String {
    let out = wh()
        .args([
            "host",
            "--drain",
            "--retry-delay",
            "0.05",
            "--kill-grace",
            "0.3",
            "--config",
        ])
        .arg(cfg)
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

pub(crate) fn tasks(cfg: &Path) -> Vec<Value> {
    let out = wh()
        .args(["tasks", "--json", "--limit", "1000", "--config"])
        .arg(cfg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn only_task(cfg: &Path) -> Value {
    let all = tasks(cfg);
    assert_eq!(all.len(), 1, "{all:#?}");
    all.into_iter().next().unwrap()
}

#[test]
fn the_quick_start_runs_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    // A copy of the example config beside its own queue file.
    let examples = Path::new(ROOT).join("example-workers");
    let yaml = std::fs::read_to_string(examples.join("workerhost.yaml"))
        .unwrap()
        .replace("./python", &examples.join("python").display().to_string());
    let cfg = tmp.path().join("workerhost.yaml");
    std::fs::write(&cfg, yaml).unwrap();
    let table = drain(
        &cfg,
        &[
            "--enqueue",
            &examples.join("sample-tasks.ndjson").display().to_string(),
        ],
    );
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        row("example").split_whitespace().collect::<Vec<_>>()[1..4] == ["2", "0", "1"],
        "{table}"
    );
    assert!(
        row("flaky").split_whitespace().collect::<Vec<_>>()[1..4] == ["1", "2", "0"],
        "{table}"
    );
    let all = tasks(&cfg);
    let flaky = all.iter().find(|t| t["type"] == "PrismQ.Example.Flaky").unwrap();
    assert_eq!(
        (flaky["status"].as_str(), flaky["attempts"].as_u64()),
        (Some("completed"), Some(3))
    );
    let bad = all.iter().find(|t| t["status"] == "failed").unwrap();
    assert!(
        bad["error"]
            .as_str()
            .unwrap()
            .contains("input_data must be a string"),
        "{bad:#}"
    );
    assert_eq!(bad["attempts"], 1, "exit 2 is not retried");
}

#[test]
fn a_hung_worker_is_killed_at_its_timeout_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), &[("hang", "fixtures/workers/hang.py", &["T"], "")]);
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("timeout: 10", "timeout: 0.5"),
    )
    .unwrap();
    enqueue(&cfg, r#"{"type": "T"}"#);
    drain(&cfg, &[]);
    let task = only_task(&cfg);
    assert_eq!(task["status"], "failed");
    assert_eq!(task["class"], "timeout");
    assert!(
        task["error"]
            .as_str()
            .unwrap()
            .contains("no result within the 0.5s limit")
    );
    let hang = Path::new(ROOT)
        .join("fixtures/workers/hang.py")
        .display()
        .to_string();
    let cfg_dir = tmp.path().display().to_string();
    eventually("no hang.py of this test left", || {
        processes_mentioning(&hang).iter().all(|c| !c.contains(&cfg_dir))
    });
}

#[test]
fn exit_two_fails_once_and_a_flaky_worker_completes_on_attempt_three() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        &[
            (
                "example",
                "example-workers/python/example_worker.py",
                &["PrismQ.Example.ProcessData"],
                "",
            ),
            (
                "flaky",
                "example-workers/python/flaky_worker.py",
                &["PrismQ.Example.Flaky"],
                "",
            ),
        ],
    );
    enqueue(
        &cfg,
        "{\"type\": \"PrismQ.Example.ProcessData\", \"params\": {\"input_data\": 1}}\n\
         {\"type\": \"PrismQ.Example.Flaky\", \"params\": {\"succeed_on_attempt\": 3}}\n",
    );
    drain(&cfg, &[]);
    for t in tasks(&cfg) {
        match t["type"].as_str().unwrap() {
            "PrismQ.Example.Flaky" => assert_eq!(
                (t["status"].clone(), t["attempts"].clone()),
                ("completed".into(), 3.into())
            ),
            _ => {
                assert_eq!(
                    (t["status"].clone(), t["attempts"].clone()),
                    ("failed".into(), 1.into())
                );
                assert_eq!(t["class"], "permanent_failure");
            }
        }
    }
}

#[test]
fn a_task_that_kills_its_worker_every_time_ends_dead() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        &[("crash", "fixtures/workers/crash_by_signal.py", &["T"], "")],
    );
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("max_retries: 3", "max_retries: 2"),
    )
    .unwrap();
    enqueue(&cfg, r#"{"type": "T"}"#);
    drain(&cfg, &[]);
    let task = only_task(&cfg);
    assert_eq!(
        (task["status"].as_str(), task["attempts"].as_u64()),
        (Some("dead"), Some(3))
    );
    assert!(
        task["error"].as_str().unwrap().contains("killed by SIGSEGV"),
        "{task:#}"
    );
}

#[test]
fn a_stdout_flood_fails_the_task() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        &[("flood", "fixtures/workers/stdout_flood.py", &["T"], "")],
    );
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("max_retries: 3", "max_retries: 0"),
    )
    .unwrap();
    enqueue(&cfg, r#"{"type": "T"}"#);
    drain(&cfg, &["--max-stdout", "1MiB"]);
    let task = only_task(&cfg);
    assert_eq!(task["status"], "failed");
    assert!(
        task["error"]
            .as_str()
            .unwrap()
            .contains("stdout went past the 1 MiB cap"),
        "{task:#}"
    );
}

pub(crate) fn start_host(cfg: &Path, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_wh"))
        .args(["host", "--retry-delay", "0.05", "--kill-grace", "0.3", "--config"])
        .arg(cfg)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

pub(crate) fn status_of(cfg: &Path, status: &str) -> usize {
    tasks(cfg).iter().filter(|t| t["status"] == status).count()
}

#[test]
fn a_task_survives_a_kill_9_of_its_host_and_its_worker_dies_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (_copy, worker) = crate::support::private_copy("fixtures/workers/slow_success.py");
    let cfg = config(tmp.path(), &[("slow", &worker, &["T"], "")]);
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg)
            .unwrap()
            // Room for a slow interpreter start on a loaded machine: the second delivery must
            // finish within it.
            .replace("timeout: 10", "timeout: 4"),
    )
    .unwrap();
    enqueue(&cfg, r#"{"type": "T", "params": {"seconds": 1.5}}"#);
    let mut host = start_host(&cfg, &[]);
    eventually("the task is running", || status_of(&cfg, "running") == 1);
    eventually("its worker started", || !processes_mentioning(&worker).is_empty());
    kill(Pid::from_raw(host.id() as i32), Signal::SIGKILL).unwrap();
    host.wait().unwrap();
    // The kernel kills the worker with its host (PR_SET_PDEATHSIG): it does not finish a task
    // that will be delivered again.
    eventually("the worker died with its host", || {
        processes_mentioning(&worker).is_empty()
    });
    // The lease (timeout + kill grace + margin) runs out, then a new host takes the task.
    drain(&cfg, &[]);
    let task = only_task(&cfg);
    assert_eq!(task["status"], "completed");
    assert_eq!(task["attempts"], 2, "the killed delivery counts");
}

#[test]
fn sigterm_lets_running_tasks_finish_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        &[("slow", "fixtures/workers/slow_success.py", &["T"], "")],
    );
    let tasks_ndjson: String = (0..4)
        .map(|_| "{\"type\": \"T\", \"params\": {\"seconds\": 1}}\n")
        .collect();
    enqueue(&cfg, &tasks_ndjson);
    let mut host = start_host(&cfg, &["--concurrency", "2"]);
    eventually("two tasks are running", || status_of(&cfg, "running") == 2);
    kill(Pid::from_raw(host.id() as i32), Signal::SIGTERM).unwrap();
    let status = host.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(status_of(&cfg, "completed"), 2, "the running ones finished");
    assert_eq!(status_of(&cfg, "pending"), 2, "the others wait, untouched");
}

#[test]
fn a_second_signal_stops_running_tasks_and_releases_them() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        &[("slow", "fixtures/workers/slow_success.py", &["T"], "")],
    );
    enqueue(&cfg, "{\"type\": \"T\", \"params\": {\"seconds\": 30}}\n");
    let mut host = start_host(&cfg, &[]);
    eventually("the task is running", || status_of(&cfg, "running") == 1);
    kill(Pid::from_raw(host.id() as i32), Signal::SIGTERM).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    kill(Pid::from_raw(host.id() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(host.wait().unwrap().code(), Some(0));
    let task = only_task(&cfg);
    assert_eq!(task["status"], "pending", "released back to the queue");
}

#[test]
fn sighup_adds_a_worker_without_dropping_a_task() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        &[("slow", "fixtures/workers/slow_success.py", &["Old"], "")],
    );
    enqueue(
        &cfg,
        "{\"type\": \"Old\", \"params\": {\"seconds\": 1.5}}\n{\"type\": \"New\"}\n",
    );
    let mut host = start_host(&cfg, &[]);
    eventually("the old task is running", || status_of(&cfg, "running") == 1);
    config(
        tmp.path(),
        &[
            ("slow", "fixtures/workers/slow_success.py", &["Old"], ""),
            ("added", "fixtures/workers/slow_success.py", &["New"], ""),
        ],
    );
    kill(Pid::from_raw(host.id() as i32), Signal::SIGHUP).unwrap();
    eventually("both tasks completed", || status_of(&cfg, "completed") == 2);
    kill(Pid::from_raw(host.id() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(host.wait().unwrap().code(), Some(0));
}

#[test]
fn an_invalid_reload_keeps_the_old_config() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        &[("slow", "fixtures/workers/slow_success.py", &["T"], "")],
    );
    let mut host = start_host(&cfg, &[]);
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(&cfg, "workers: [}").unwrap();
    kill(Pid::from_raw(host.id() as i32), Signal::SIGHUP).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // Still serving with the old registry.
    let out = wh()
        .args(["enqueue", "--config"])
        .arg(&cfg)
        .arg("T")
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "the broken file cannot be used to enqueue either"
    );
    let queue = tmp.path().join("queue.db");
    assert!(queue.exists());
    kill(Pid::from_raw(host.id() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(host.wait().unwrap().code(), Some(0));
}

#[test]
fn two_hosts_on_one_queue_run_every_task_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        &[("slow", "fixtures/workers/slow_success.py", &["T"], "")],
    );
    let log = tmp.path().join("runs.log");
    let ndjson: String = (0..30)
        .map(|_| {
            format!(
                "{{\"type\": \"T\", \"params\": {{\"log\": \"{}\"}}}}\n",
                log.display()
            )
        })
        .collect();
    enqueue(&cfg, &ndjson);
    let hosts: Vec<Child> = (0..2)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_wh"))
                .args(["host", "--drain", "--concurrency", "2", "--config"])
                .arg(&cfg)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut h in hosts {
        assert!(h.wait().unwrap().success());
    }
    let runs = std::fs::read_to_string(&log).unwrap();
    let mut ids: Vec<&str> = runs.lines().collect();
    assert_eq!(ids.len(), 30, "every task ran once: {runs}");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 30, "no task ran twice");
    assert_eq!(status_of(&cfg, "completed"), 30);
}

#[test]
fn dry_run_prints_the_registry_and_launch_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        &[("slow", "fixtures/workers/slow_success.py", &["A", "B"], "")],
    );
    let out = wh()
        .args(["host", "--dry-run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("A -> slow"), "{text}");
    assert!(text.contains("slow_success.py"), "{text}");
}

#[test]
fn enqueue_dedupes_and_tasks_show_and_retry_work() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        &[(
            "example",
            "example-workers/python/example_worker.py",
            &["PrismQ.Example.ProcessData"],
            "",
        )],
    );
    for _ in 0..2 {
        let out = wh()
            .args(["enqueue", "--config"])
            .arg(&cfg)
            .args([
                "PrismQ.Example.ProcessData",
                "--params",
                r#"{"input_data": 5}"#,
                "--dedupe-key",
                "k1",
            ])
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    assert_eq!(tasks(&cfg).len(), 1, "the second was deduplicated");
    drain(&cfg, &[]);
    let task = only_task(&cfg);
    let id = task["id"].as_str().unwrap();
    let shown = wh()
        .args(["tasks", "show", id, "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["status"], "failed");
    assert!(shown["stderr_tail"].as_str().is_some());
    wh().args(["tasks", "retry", id, "--config"])
        .arg(&cfg)
        .assert()
        .success();
    assert_eq!(only_task(&cfg)["status"], "pending");
    wh().args(["tasks", "retry", id, "--config"])
        .arg(&cfg)
        .assert()
        .code(2);
}

#[test]
fn a_worker_over_the_memory_limit_is_stopped_and_the_cause_named() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        &[("hog", "fixtures/workers/memory_hog.py", &["T"], "max_retries: 0")],
    );
    let yaml = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("    max_retries: 3\n", "");
    std::fs::write(
        &cfg,
        format!("{yaml}advanced:\n  resource_limits:\n    max_memory_mb: 64\n"),
    )
    .unwrap();
    enqueue(&cfg, r#"{"type": "T"}"#);
    drain(&cfg, &[]);
    let task = only_task(&cfg);
    assert!(
        task["error"].as_str().unwrap().contains("exceeded 64 MB"),
        "{task:#}"
    );
}

#[test]
fn the_endpoints_answer_while_the_host_runs() {
    use std::io::{BufRead, BufReader, Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        &[("slow", "fixtures/workers/slow_success.py", &["T"], "")],
    );
    let yaml = std::fs::read_to_string(&cfg).unwrap();
    let monitoring =
        "monitoring:\n  metrics: {port: 0, path: /metrics}\n  health_check: {port: 0, path: /health}\n";
    std::fs::write(&cfg, format!("{yaml}{monitoring}")).unwrap();
    let mut host = Command::new(env!("CARGO_BIN_EXE_wh"))
        .args(["host", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The bound address is logged: `... listening endpoint=metrics address=http://127.0.0.1:P/metrics`.
    let mut stderr = BufReader::new(host.stderr.take().unwrap());
    let mut addr = None;
    let mut line = String::new();
    while addr.is_none() && stderr.read_line(&mut line).unwrap() > 0 {
        if let Some(rest) = line.split("address=http://").nth(1) {
            addr = Some(rest.split('/').next().unwrap().trim_matches('"').to_string());
        }
        line.clear();
    }
    let addr = addr.expect("the host logs where it listens");
    let get = |path: &str| {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut response = String::new();
        s.read_to_string(&mut response).unwrap();
        response
    };
    assert!(get("/health").starts_with("HTTP/1.1 200"));
    assert!(get("/ready").starts_with("HTTP/1.1 200"));
    let metrics = get("/metrics");
    assert!(metrics.contains("wh_tasks_total"), "{metrics}");
    assert!(get("/workers/slow/health").starts_with("HTTP/1.1 200"));
    assert!(get("/workers/nope/health").starts_with("HTTP/1.1 404"));
    kill(Pid::from_raw(host.id() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(host.wait().unwrap().code(), Some(0));
}

/// `wh tasks show ID` as JSON.
fn show(cfg: &Path, id: &str) -> Value {
    let out = wh()
        .args(["tasks", "show", id, "--config"])
        .arg(cfg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn progress_reports_reach_the_queue_and_tasks_show_prints_them() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        &[("reporter", "fixtures/workers/reports_progress.py", &["T"], "")],
    );
    // 5 goes at once, 40 a second later; the worker then works 3 s, so the test sees 40 on
    // a running task; 101 is a log line; 80 comes after a quiet second and goes at once.
    let steps = serde_json::json!([
        ["@wh:progress 5 starting", 0],
        ["@wh:progress 40 downloading page 3/7", 3.0],
        ["@wh:progress 101 not a report", 0],
        ["@wh:progress 80 converting", 0.5],
    ]);
    enqueue(
        &cfg,
        &format!(r#"{{"type": "T", "params": {{"steps": {steps}}}}}"#),
    );
    let id = only_task(&cfg)["id"].as_str().unwrap().to_string();
    assert!(show(&cfg, &id).get("progress").is_none(), "none before a report");

    let log = tmp.path().join("host.log");
    let mut host = Command::new(env!("CARGO_BIN_EXE_wh"))
        .args(["host", "--drain", "--config"])
        .arg(&cfg)
        .env("WH_LOG", "wh::task=debug")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut running = Value::Null;
    eventually("progress 40 on the running task", || {
        running = show(&cfg, &id);
        running["progress"] == 40
    });
    assert_eq!(running["status"], "running");
    assert_eq!(running["progress_message"], "downloading page 3/7");
    assert!(host.wait().unwrap().success());

    let done = show(&cfg, &id);
    assert_eq!(done["status"], "completed");
    assert_eq!(
        (done["progress"].clone(), done["progress_message"].clone()),
        (80.into(), "converting".into())
    );
    // Every report is a log line too; the malformed one only that.
    let tail = done["stderr_tail"].as_str().unwrap();
    assert!(
        tail.contains("@wh:progress 101 not a report\n@wh:progress 80 converting"),
        "{tail}"
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    let progress: Vec<&str> = logged.lines().filter(|l| l.contains("worker progress")).collect();
    assert_eq!(progress.len(), 3, "{logged}");
    assert!(
        progress[1].contains("percent=40") && progress[1].contains("downloading page 3/7"),
        "{logged}"
    );
    assert!(logged.contains("@wh:progress 101 not a report"), "{logged}");
}
