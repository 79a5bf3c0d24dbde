//! `wh host` with workers in persistent mode: warm pools that grow and shrink, a crash or a
//! timeout that costs one task and not the pool, recycling, fallback to one-shot, reload, and
//! nothing left running after shutdown.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::host::{drain, enqueue, start_host, status_of, tasks};
use crate::support::{ROOT, eventually, eventually_within};

/// A config with one worker `w` (task type `T`) running `script` persistently, the pool
/// settings `pool` (YAML lines under `worker_pool:`), the worker's `extra` lines, and JSON logs
/// in `host.log`.
fn config(dir: &Path, script: &str, pool: &str, extra: &str) -> PathBuf {
    let script = Path::new(ROOT).join(script);
    let mut yaml = format!(
        "task_manager:\n  type: local\n  path: queue.db\n  poll_interval: 0.1\n\
         logging:\n  level: DEBUG\n  structured: true\n  file: host.log\n\
         monitoring:\n  metrics: {{port: 0, path: /metrics}}\n  health_check: {{port: 0, path: /health}}\n\
         workers:\n  - name: w\n    command: [\"python3\", \"{}\"]\n    task_types: [T]\n    mode: persistent\n    max_retries: 0\n",
        script.display()
    );
    if !extra.contains("timeout:") {
        yaml.push_str("    timeout: 10\n");
    }
    for line in extra.lines() {
        yaml.push_str(&format!("    {line}\n"));
    }
    yaml.push_str("advanced:\n  worker_pool:\n");
    for line in pool.lines() {
        yaml.push_str(&format!("    {line}\n"));
    }
    let path = dir.join("workerhost.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// `n` tasks of `params`, as NDJSON.
fn many(n: usize, params: &str) -> String {
    (0..n)
        .map(|_| format!("{{\"type\": \"T\", \"params\": {params}}}\n"))
        .collect()
}

/// The host's JSON log lines about warm processes (`event` = `name`).
fn log_events(dir: &Path, name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("host.log")).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"] == name)
        .collect()
}

/// A GET to the host's metrics/health server, whose address the host logged.
fn http_get(dir: &Path, path: &str) -> String {
    use std::io::{Read, Write};
    let text = std::fs::read_to_string(dir.join("host.log")).unwrap_or_default();
    let addr = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|v| v["address"].as_str().map(str::to_string))
        .expect("the host logs where it listens");
    let host = addr
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let mut s = std::net::TcpStream::connect(&host).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    response
}

fn retired_because(dir: &Path, cause: &str) -> usize {
    log_events(dir, "process_retired")
        .iter()
        .filter(|e| e["cause"] == cause)
        .count()
}

/// The pid that served each completed task, in the order they finished.
fn pids(cfg: &Path) -> Vec<u64> {
    let mut all = tasks(cfg);
    all.sort_by(|a, b| {
        a["updated_at"]
            .as_f64()
            .partial_cmp(&b["updated_at"].as_f64())
            .unwrap()
    });
    all.iter().filter_map(|t| t["result"]["pid"].as_u64()).collect()
}

fn alive(pid: u64) -> bool {
    // A zombie has exited; only a live process has a status other than Z.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s.rsplit(')').next().unwrap_or("").split_whitespace().next();
            state != Some("Z")
        })
        .unwrap_or(false)
}

/// A running `wh host`, killed if a test fails before it stops it, so no host outlives its test.
struct Host(std::process::Child);

impl Host {
    fn start(cfg: &Path) -> Host {
        Host(start_host(cfg, &["--concurrency", "8"]))
    }

    fn start_with(cfg: &Path, concurrency: &str) -> Host {
        Host(start_host(cfg, &["--concurrency", concurrency]))
    }

    /// SIGTERM, then its exit code.
    fn stop(&mut self) -> Option<i32> {
        kill(Pid::from_raw(self.0.id() as i32), Signal::SIGTERM).unwrap();
        self.0.wait().unwrap().code()
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.0.id() as i32), signal).unwrap();
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn by_status(cfg: &Path, status: &str) -> Vec<Value> {
    tasks(cfg).into_iter().filter(|t| t["status"] == status).collect()
}

#[test]
fn one_warm_process_serves_every_task_and_ends_with_the_host() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        "fixtures/workers/persistent.py",
        "min_workers: 1\nmax_workers: 1",
        "",
    );
    enqueue(&cfg, &many(20, r#"{"action": "ok"}"#));
    drain(&cfg, &["--concurrency", "1"]);
    let pids = pids(&cfg);
    assert_eq!(pids.len(), 20);
    assert_eq!(
        pids.iter().collect::<BTreeSet<_>>().len(),
        1,
        "one process: {pids:?}"
    );
    assert!(!alive(pids[0]), "the process ended with the host");
    assert_eq!(retired_because(tmp.path(), "shutdown"), 1);
}

#[test]
fn the_pool_grows_to_max_workers_and_shrinks_to_min_when_idle() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        "fixtures/workers/persistent.py",
        "min_workers: 1\nmax_workers: 3\nidle_timeout: 0.5",
        "",
    );
    let mut host = Host::start(&cfg);
    eventually("the first process is warm", || {
        log_events(tmp.path(), "process_started").len() == 1
    });
    enqueue(&cfg, &many(9, r#"{"action": "sleep", "seconds": 0.4}"#));
    eventually_within("every task completed", Duration::from_secs(30), || {
        status_of(&cfg, "completed") == 9
    });
    let used: BTreeSet<u64> = pids(&cfg).into_iter().collect();
    assert_eq!(used.len(), 3, "max_workers caps the pool: {used:?}");
    assert_eq!(log_events(tmp.path(), "process_started").len(), 3);
    eventually("idle processes beyond min_workers retired", || {
        retired_because(tmp.path(), "idle") == 2
    });
    assert_eq!(
        used.iter().filter(|p| alive(**p)).count(),
        1,
        "min_workers stays warm"
    );
    let health = http_get(tmp.path(), "/workers/w/health");
    assert!(
        health.contains(r#""mode":"persistent""#) && health.contains(r#""processes":1"#),
        "{health}"
    );
    let metrics = http_get(tmp.path(), "/metrics");
    assert!(
        metrics.contains(r#"wh_pool_processes{worker="w"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"wh_pool_spawns_total{worker="w"} 3"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"wh_pool_retired_total{worker="w",cause="idle"} 2"#),
        "{metrics}"
    );
    assert_eq!(host.stop(), Some(0));
    assert!(used.iter().all(|p| !alive(*p)), "no process left after shutdown");
}

#[test]
fn a_crash_or_garbage_fails_only_that_task_and_the_pool_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), "fixtures/workers/persistent.py", "max_workers: 1", "");
    let tasks_in = [
        r#"{"action": "ok"}"#,
        r#"{"action": "crash"}"#,
        r#"{"action": "ok"}"#,
        r#"{"action": "garbage"}"#,
        r#"{"action": "ok"}"#,
        r#"{"action": "fail"}"#,
        r#"{"action": "ok"}"#,
    ];
    for params in tasks_in {
        // One at a time, so the order of the tasks is the order they run in.
        enqueue(&cfg, &many(1, params));
        std::thread::sleep(Duration::from_millis(5));
    }
    drain(&cfg, &["--concurrency", "1"]);
    // Out of retries (max_retries 0), a task that cost its process ends dead, like one that
    // kills a one-shot worker; a failure result just fails.
    let failed = by_status(&cfg, "failed");
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert_eq!(failed[0]["class"], "permanent_failure");
    let dead = by_status(&cfg, "dead");
    assert_eq!(dead.len(), 2, "{dead:#?}");
    assert!(dead.iter().all(|t| t["class"] == "crashed"), "{dead:#?}");
    let crash = dead.iter().find(|t| t["params"]["action"] == "crash").unwrap();
    assert!(
        crash["error"]
            .as_str()
            .unwrap()
            .contains("ended during the task (exit code 1)"),
        "{crash:#}"
    );
    assert!(
        crash["stderr_tail"]
            .as_str()
            .unwrap()
            .contains("crashing on purpose")
    );
    let garbage = dead.iter().find(|t| t["params"]["action"] == "garbage").unwrap();
    assert!(
        garbage["error"].as_str().unwrap().contains("not a result"),
        "{garbage:#}"
    );
    // Four successes; the crash and the garbage each cost the process, the failure did not.
    let pids = pids(&cfg);
    assert_eq!(pids.len(), 4);
    assert_eq!(pids.iter().collect::<BTreeSet<_>>().len(), 3, "{pids:?}");
    assert_eq!(pids[2], pids[3], "a failure result keeps the process");
    assert_eq!(retired_because(tmp.path(), "lost"), 2);
}

#[test]
fn a_task_past_its_timeout_kills_the_process_and_the_pool_replaces_it() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        "fixtures/workers/persistent.py",
        "max_workers: 1",
        "timeout: 1",
    );
    enqueue(&cfg, &many(1, r#"{"action": "ok"}"#));
    std::thread::sleep(Duration::from_millis(5));
    enqueue(&cfg, &many(1, r#"{"action": "sleep", "seconds": 30}"#));
    std::thread::sleep(Duration::from_millis(5));
    enqueue(&cfg, &many(1, r#"{"action": "ok"}"#));
    drain(&cfg, &["--concurrency", "1"]);
    let failed = by_status(&cfg, "failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["class"], "timeout");
    let pids = pids(&cfg);
    assert_eq!(pids.len(), 2);
    assert_ne!(pids[0], pids[1], "the timed-out process was replaced");
    assert!(!alive(pids[0]));
}

#[test]
fn a_process_is_recycled_after_max_tasks_per_process_and_past_its_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        "fixtures/workers/persistent.py",
        "max_workers: 1\nmax_tasks_per_process: 3",
        "",
    );
    enqueue(&cfg, &many(7, r#"{"action": "ok"}"#));
    drain(&cfg, &["--concurrency", "1"]);
    let served: Vec<u64> = {
        let mut all = tasks(&cfg);
        all.sort_by(|a, b| {
            a["updated_at"]
                .as_f64()
                .partial_cmp(&b["updated_at"].as_f64())
                .unwrap()
        });
        all.iter()
            .map(|t| t["result"]["served"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(served, [1, 2, 3, 1, 2, 3, 1]);
    assert_eq!(retired_because(tmp.path(), "max_tasks"), 2);

    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        "fixtures/workers/persistent.py",
        "max_workers: 1\nmax_memory_mb: 60",
        "",
    );
    let mut host = Host::start_with(&cfg, "1");
    enqueue(&cfg, &many(1, r#"{"action": "grow", "mb": 100}"#));
    eventually("the growing task completed", || status_of(&cfg, "completed") == 1);
    // Memory is read between tasks, at most once a second, idle processes included.
    eventually("the grown process retired", || {
        retired_because(tmp.path(), "memory") == 1
    });
    enqueue(&cfg, &many(1, r#"{"action": "ok"}"#));
    eventually("the next task completed", || status_of(&cfg, "completed") == 2);
    assert_eq!(host.stop(), Some(0));
    let pids = pids(&cfg);
    assert_ne!(pids[0], pids[1]);
    let memory = log_events(tmp.path(), "process_retired");
    let memory = memory
        .iter()
        .find(|e| e["cause"] == "memory")
        .expect("retired for memory");
    assert!(
        memory["reason"]
            .as_str()
            .unwrap()
            .contains("past worker_pool.max_memory_mb (60 MB)"),
        "{memory:#}"
    );
}

#[test]
fn a_worker_without_the_handshake_runs_one_shot_with_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    // A one-shot worker: it waits for EOF on stdin, so it never sends a handshake.
    let cfg = config(
        tmp.path(),
        "fixtures/workers/slow_success.py",
        "max_workers: 1",
        "timeout: 1",
    );
    enqueue(&cfg, &many(3, r#"{"seconds": 0}"#));
    drain(&cfg, &["--concurrency", "1"]);
    assert_eq!(status_of(&cfg, "completed"), 3, "{:#?}", tasks(&cfg));
    let warnings = log_events(tmp.path(), "persistent_fallback");
    assert_eq!(warnings.len(), 1, "warned once");
    assert!(
        warnings[0]["reason"]
            .as_str()
            .unwrap()
            .contains("no handshake line within 1s"),
        "{:#}",
        warnings[0]
    );
}

#[test]
fn a_reload_that_changes_the_worker_drains_its_old_pool() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), "fixtures/workers/persistent.py", "max_workers: 1", "");
    let mut host = Host::start_with(&cfg, "1");
    enqueue(&cfg, &many(1, r#"{"action": "spawn"}"#));
    eventually("the first task completed", || status_of(&cfg, "completed") == 1);
    let first = pids(&cfg)[0];
    // The same worker with a changed environment is a changed worker.
    config(
        tmp.path(),
        "fixtures/workers/persistent.py",
        "max_workers: 1",
        "env: {RELOADED: \"1\"}",
    );
    host.signal(Signal::SIGHUP);
    eventually("the old process retired", || {
        retired_because(tmp.path(), "reload") == 1
    });
    assert!(!alive(first), "the old process ended");
    enqueue(&cfg, &many(1, r#"{"action": "ok"}"#));
    eventually("the second task completed", || status_of(&cfg, "completed") == 2);
    let second = pids(&cfg)[1];
    assert_ne!(first, second, "the new pool started a new process");
    assert_eq!(host.stop(), Some(0));
    assert!(!alive(second));
    // The `sleep 60` the first process left in its group went with it.
    assert!(group_members(first).is_empty(), "{:?}", group_members(first));
}

/// Live processes of the process group `pgid`.
fn group_members(pgid: u64) -> Vec<u64> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u64>().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string() {
            found.push(pid);
        }
    }
    found
}

#[test]
fn prefetched_tasks_wait_for_a_process_and_each_runs_once() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        "fixtures/workers/persistent.py",
        "min_workers: 2\nmax_workers: 2\nprefetch: 16",
        "",
    );
    enqueue(&cfg, &many(300, r#"{"action": "ok"}"#));
    drain(&cfg, &["--concurrency", "2"]);
    let all = tasks(&cfg);
    assert_eq!(all.len(), 300);
    assert!(
        all.iter()
            .all(|t| t["status"] == "completed" && t["attempts"] == 1),
        "every task completed on its first delivery"
    );
    let used: BTreeSet<u64> = pids(&cfg).into_iter().collect();
    assert_eq!(
        used.len(),
        2,
        "prefetch does not start processes past max_workers: {used:?}"
    );
    assert_eq!(log_events(tmp.path(), "process_started").len(), 2);
}
