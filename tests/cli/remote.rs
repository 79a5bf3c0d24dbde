//! `wh host` on Redis and RabbitMQ with several hosts: every task completed exactly once
//! without faults, and all of them still completed when one host is killed with SIGKILL
//! (duplicates counted and reported). Needs the local servers: with CI=true a missing server
//! fails the run; elsewhere the test says why it skipped.

use std::collections::HashMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::{ROOT, eventually_within, wh};

const TASKS: usize = 1000;

fn server_up(what: &str, addr: &str) -> bool {
    let up = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2)).is_ok();
    if !up {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{what} is not running at {addr} (CI=true)"
        );
        eprintln!("skipping: {what} is not running at {addr}");
    }
    up
}

fn config(dir: &Path, task_manager: &str) -> PathBuf {
    let worker = Path::new(ROOT).join("fixtures/workers/slow_success.py");
    let yaml = format!(
        "task_manager:\n{task_manager}  poll_interval: 0.2\nlogging:\n  level: WARNING\nmonitoring:\n  enabled: false\n\
         workers:\n  - name: w\n    command: [\"python3\", \"{}\"]\n    task_types: [Remote.T]\n    timeout: 5\n    max_retries: 3\n",
        worker.display()
    );
    let path = dir.join("workerhost.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

fn enqueue_many(cfg: &Path, log: &Path) {
    let ndjson: String = (0..TASKS)
        .map(|_| {
            format!(
                "{{\"type\": \"Remote.T\", \"params\": {{\"log\": \"{}\"}}}}\n",
                log.display()
            )
        })
        .collect();
    let out = wh()
        .args(["enqueue", "--config"])
        .arg(cfg)
        .args(["--file", "-"])
        .write_stdin(ndjson)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn host(cfg: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_wh"))
        .args(["host", "--drain", "--concurrency", "2", "--config"])
        .arg(cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// (runs, distinct tasks) from the workers' log of task ids.
fn runs(log: &Path) -> (usize, usize) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for id in text.lines() {
        *counts.entry(id).or_default() += 1;
    }
    (text.lines().count(), counts.len())
}

/// Three hosts drain TASKS tasks; with `kill_one`, the first is killed with SIGKILL mid-run and a
/// fresh host finishes what is left.
fn three_hosts(task_manager: &str, kill_one: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), task_manager);
    let log = tmp.path().join("runs.log");
    enqueue_many(&cfg, &log);
    let mut hosts: Vec<Child> = (0..3).map(|_| host(&cfg)).collect();
    if kill_one {
        eventually_within("a tenth of the tasks ran", Duration::from_secs(300), || {
            runs(&log).0 >= TASKS / 10
        });
        kill(Pid::from_raw(hosts[0].id() as i32), Signal::SIGKILL).unwrap();
    }
    for h in &mut hosts {
        h.wait().unwrap();
    }
    if kill_one {
        // The killed host's deliveries come back (lease or connection loss); drain them.
        let mut last = host(&cfg);
        assert!(last.wait().unwrap().success());
    }
    let (total, distinct) = runs(&log);
    assert_eq!(distinct, TASKS, "every task completed");
    if kill_one {
        eprintln!(
            "{} duplicate run(s) after killing one host with SIGKILL",
            total - distinct
        );
        assert!(
            total - distinct <= 4,
            "at most the killed host's in-flight tasks ran twice"
        );
    } else {
        assert_eq!(total, TASKS, "exactly once without faults");
    }
}

fn prefix() -> String {
    format!("whtest-{}", uuid::Uuid::new_v4().simple())
}

fn redis_task_manager(prefix: &str) -> String {
    format!("  type: redis\n  url: redis://127.0.0.1:6379\n  prefix: {prefix}\n  visibility_timeout: 8\n")
}

fn amqp_task_manager(prefix: &str) -> String {
    format!("  type: amqp\n  url: amqp://guest:guest@127.0.0.1:5672/%2f\n  prefix: {prefix}\n")
}

/// Deletes every key a test's prefix made, whatever the test's outcome.
struct RedisCleanup(String);

impl Drop for RedisCleanup {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open("redis://127.0.0.1:6379") else {
            return;
        };
        let Ok(mut conn) = client.get_connection() else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.0))
            .query(&mut conn)
            .unwrap_or_default();
        for chunk in keys.chunks(500) {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(chunk).query(&mut conn);
        }
    }
}

/// Deletes the queues and the exchange a test's prefix made.
struct AmqpCleanup(String);

impl Drop for AmqpCleanup {
    fn drop(&mut self) {
        let prefix = self.0.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
            let url = "amqp://guest:guest@127.0.0.1:5672/%2f";
            let Ok(conn) = lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await
            else {
                return;
            };
            for queue in [
                format!("{prefix}.tasks.Remote.T"),
                format!("{prefix}.delay.Remote.T"),
                format!("{prefix}.dead"),
                format!("{prefix}.results"),
            ] {
                // A fresh channel per call: a failed delete closes its channel.
                if let Ok(ch) = conn.create_channel().await {
                    let _ = ch
                        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                        .await;
                }
            }
            if let Ok(ch) = conn.create_channel().await {
                let _ = ch
                    .exchange_delete(
                        format!("{prefix}.dlx").as_str().into(),
                        ExchangeDeleteOptions::default(),
                    )
                    .await;
            }
            let _ = conn.close(0, "done".into()).await;
        });
    }
}

#[test]
fn redis_three_hosts_exactly_once() {
    if server_up("Redis", "127.0.0.1:6379") {
        let p = prefix();
        let _cleanup = RedisCleanup(p.clone());
        three_hosts(&redis_task_manager(&p), false);
    }
}

#[test]
fn redis_survives_a_host_killed_mid_run() {
    if server_up("Redis", "127.0.0.1:6379") {
        let p = prefix();
        let _cleanup = RedisCleanup(p.clone());
        three_hosts(&redis_task_manager(&p), true);
    }
}

#[test]
fn amqp_three_hosts_exactly_once() {
    if server_up("RabbitMQ", "127.0.0.1:5672") {
        let p = prefix();
        let _cleanup = AmqpCleanup(p.clone());
        three_hosts(&amqp_task_manager(&p), false);
    }
}

#[test]
fn amqp_survives_a_host_killed_mid_run() {
    if server_up("RabbitMQ", "127.0.0.1:5672") {
        let p = prefix();
        let _cleanup = AmqpCleanup(p.clone());
        three_hosts(&amqp_task_manager(&p), true);
    }
}
