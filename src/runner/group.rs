//! Process groups: every worker runs as the leader of its own group, so one signal reaches
//! everything it started (unless a descendant deliberately left with `setsid`).

use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::Serialize;

/// A process that was still running in a worker's group after the worker itself exited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Leftover {
    pub pid: i32,
    pub command: String,
}

/// Sends `signal` to every process of the group; a group that is already gone is fine.
pub fn signal_group(pgid: i32, signal: Signal) {
    let _ = killpg(Pid::from_raw(pgid), signal);
}

/// The live (not zombie) processes of a group.
///
/// Read from `/proc` on Linux, because a zombie still counts for `kill(-pgid, 0)` until its
/// new parent reaps it, and not every container's PID 1 reaps promptly.
#[cfg(target_os = "linux")]
pub fn live_members(pgid: i32) -> Vec<Leftover> {
    // The common case, a group already gone, costs one syscall instead of a /proc scan.
    if killpg(Pid::from_raw(pgid), None).is_err() {
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut fields = after.split_whitespace();
        let state = fields.next().unwrap_or("");
        let pgrp = fields.nth(1).and_then(|s| s.parse::<i32>().ok());
        if pgrp == Some(pgid) && state != "Z" && state != "X" {
            found.push(Leftover {
                pid,
                command: command_line(pid),
            });
        }
    }
    found.sort_by_key(|l| l.pid);
    found
}

#[cfg(not(target_os = "linux"))]
pub fn live_members(pgid: i32) -> Vec<Leftover> {
    match killpg(Pid::from_raw(pgid), None) {
        Ok(()) => vec![Leftover {
            pid: -1,
            command: "(unknown)".into(),
        }],
        Err(_) => Vec::new(),
    }
}

#[cfg(target_os = "linux")]
fn command_line(pid: i32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let text = String::from_utf8_lossy(&raw).replace('\0', " ");
    let text = text.trim();
    let mut out: String = text.chars().take(200).collect();
    if text.chars().count() > 200 {
        out.push('…');
    }
    out
}

/// The resident memory of every live process of the group, in bytes (Linux; 0 elsewhere).
pub fn resident_bytes(pgid: i32) -> u64 {
    #[cfg(target_os = "linux")]
    {
        live_members(pgid)
            .iter()
            .filter_map(|l| std::fs::read_to_string(format!("/proc/{}/status", l.pid)).ok())
            .filter_map(|status| {
                let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
                line.split_whitespace().nth(1)?.parse::<u64>().ok()
            })
            .map(|kib| kib * 1024)
            .sum()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pgid;
        0
    }
}

/// Resolves, with the group's resident memory, once it is past `limit` (read every 100 ms,
/// first 100 ms after the call: most tasks end before the first look, which scans /proc).
/// Never resolves without a limit.
pub async fn over_memory(pgid: i32, limit: Option<u64>) -> u64 {
    let Some(limit) = limit else {
        return std::future::pending().await;
    };
    let every = Duration::from_millis(100);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tick.tick().await;
        let rss = resident_bytes(pgid);
        if rss > limit {
            return rss;
        }
    }
}

/// Waits until the group has no live process, polling, for at most `limit`.
pub async fn wait_until_empty(pgid: i32, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if live_members(pgid).is_empty() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The conventional name of a signal number ("SIGSEGV"), or "signal N".
pub fn signal_name(number: i32) -> String {
    Signal::try_from(number)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {number}"))
}

/// Kills the whole group with SIGKILL when dropped, unless disarmed: whatever path leaves
/// the runner (an error, a panic, a cancelled future), no worker process survives it.
pub struct GroupGuard {
    pgid: Option<i32>,
}

impl GroupGuard {
    pub fn new(pgid: i32) -> Self {
        Self { pgid: Some(pgid) }
    }

    pub fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid {
            signal_group(pgid, Signal::SIGKILL);
        }
    }
}
