//! Starts one worker process and supervises it to the end.
//!
//! The runner writes the task to stdin and closes it, drains stdout and stderr at the same
//! time within fixed memory, enforces the time limit on the worker's whole process group
//! (TERM, a short grace, then KILL), reaps the worker and reports what happened. It knows
//! nothing of the protocol's meaning: judging the output is `crate::protocol`'s job.

mod capture;
mod command;
mod group;
pub mod persistent;

use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

pub use command::{ResolveError, WorkerCommand, python_interpreter, resolve, shell_quote};
pub use group::{Leftover, signal_name};

use capture::{CappedBuffer, TailBuffer};
use group::{GroupGuard, live_members, signal_group, wait_until_empty};

/// Limits for one run.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Wall-clock limit from start until the worker has exited and closed its pipes.
    pub timeout: Duration,
    /// stdout beyond this many bytes fails the run.
    pub max_stdout: usize,
    /// How much of the end of stderr is kept.
    pub stderr_tail: usize,
    /// Time between SIGTERM and SIGKILL when the runner stops a worker.
    pub kill_grace: Duration,
    /// Copy the worker's stderr to ours as it arrives (for `wh send`).
    pub echo_stderr: bool,
    /// Stop the worker when its process group's resident memory goes past this many bytes
    /// (checked every 100 ms; Linux only).
    pub max_memory: Option<u64>,
    /// Have the kernel kill the worker if `wh` itself dies (Linux `PR_SET_PDEATHSIG`), so a
    /// host killed with SIGKILL does not leave its workers running a task that will be
    /// delivered again. Costs the fast spawn path, so only the host sets it.
    pub die_with_parent: bool,
}

/// Called with each chunk of a worker's stderr as it arrives.
pub type StderrHook = Box<dyn Fn(&[u8]) + Send + Sync>;

/// Callbacks into a run, for the host's events.
#[derive(Default)]
pub struct Hooks {
    /// The worker process started, with this pid.
    pub on_spawn: Option<Box<dyn Fn(u32) + Send + Sync>>,
    /// A chunk of the worker's stderr arrived.
    pub on_stderr: Option<StderrHook>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            max_stdout: 16 * 1024 * 1024,
            stderr_tail: 1024 * 1024,
            kill_grace: Duration::from_secs(2),
            echo_stderr: false,
            max_memory: None,
            die_with_parent: false,
        }
    }
}

/// Why the runner, rather than the worker, ended a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stopped {
    /// The time limit passed before the worker exited and closed its pipes.
    TimedOut,
    /// stdout went past `Limits::max_stdout`.
    StdoutOverflow,
    /// The user interrupted `wh` (Ctrl+C), or the host is shutting down.
    Cancelled,
    /// The worker's process group used more memory than `Limits::max_memory`.
    MemoryLimit,
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stopped::TimedOut => "wh stopped it at the time limit",
            Stopped::StdoutOverflow => "wh stopped it: stdout went past its cap (--max-stdout)",
            Stopped::Cancelled => "wh was interrupted",
            Stopped::MemoryLimit => "wh stopped it: its memory went past the limit",
        })
    }
}

/// How the worker process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    fn from_status(status: ExitStatus) -> Self {
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            if let Some(sig) = status.signal() {
                return Exit::Signal(sig);
            }
        }
        Exit::Code(status.code().unwrap_or(-1))
    }

    pub fn code(self) -> Option<i32> {
        match self {
            Exit::Code(c) => Some(c),
            Exit::Signal(_) => None,
        }
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => write!(f, "killed by {}", signal_name(*s)),
        }
    }
}

/// Everything observed about one run.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub exit: Exit,
    /// Set when the runner ended the run; `exit` is then the signal it used.
    pub stopped: Option<Stopped>,
    pub duration: Duration,
    /// stdout, whole, or its first `max_stdout` bytes when it overflowed.
    pub stdout: Vec<u8>,
    pub stdout_len: u64,
    pub stdout_utf8: bool,
    /// The last `stderr_tail` bytes of stderr.
    pub stderr: Vec<u8>,
    pub stderr_len: u64,
    pub stderr_utf8: bool,
    /// Processes of the worker's group still running after the worker exited by itself.
    /// The runner killed them.
    pub leftovers: Vec<Leftover>,
    /// The worker exited, but something it started kept stdout or stderr open.
    pub pipes_held_open: bool,
    /// With `Stopped::MemoryLimit`: the group's resident memory when it was stopped, in bytes.
    pub peak_memory: u64,
    /// The memory limit the run had, in bytes.
    pub memory_limit: Option<u64>,
}

/// The worker could not be started at all.
#[derive(Debug, thiserror::Error)]
#[error("failed to start worker `{command}`: {reason}")]
pub struct SpawnError {
    pub command: String,
    pub reason: String,
    pub hint: Option<String>,
}

impl SpawnError {
    fn new(cmd: &WorkerCommand, err: std::io::Error) -> Self {
        let program = cmd.program.to_string_lossy();
        let (reason, hint) = match err.kind() {
            std::io::ErrorKind::NotFound => (
                format!("`{program}` was not found"),
                Some("check the path, or that the interpreter is installed and on $PATH".into()),
            ),
            std::io::ErrorKind::PermissionDenied => (
                format!("`{program}` is not executable"),
                Some(format!("run `chmod +x {program}`")),
            ),
            _ if err.raw_os_error() == Some(libc_enoexec()) => (
                format!("`{program}` is not a program the system can execute"),
                Some("add a #! line (e.g. #!/usr/bin/env python3) or name the interpreter after `--`".into()),
            ),
            _ => (err.to_string(), None),
        };
        SpawnError {
            command: cmd.display(),
            reason,
            hint,
        }
    }
}

fn libc_enoexec() -> i32 {
    nix::errno::Errno::ENOEXEC as i32
}

/// How long readers may take to finish after the group was killed; only a process that left
/// the group (`setsid`) can still hold a pipe then, and it must not hold `wh` too.
const DRAIN_AFTER_KILL: Duration = Duration::from_millis(500);

/// Runs `cmd` once with `input` on its stdin.
pub async fn run(
    cmd: &WorkerCommand,
    input: &[u8],
    limits: &Limits,
    cancel: &CancellationToken,
) -> Result<RunOutcome, SpawnError> {
    run_with(cmd, input, limits, cancel, Hooks::default()).await
}

/// [`run`], with callbacks for the host's events.
pub async fn run_with(
    cmd: &WorkerCommand,
    input: &[u8],
    limits: &Limits,
    cancel: &CancellationToken,
    hooks: Hooks,
) -> Result<RunOutcome, SpawnError> {
    let started = Instant::now();
    let deadline = tokio::time::Instant::from_std(started + limits.timeout);

    let mut command = tokio_command(cmd, limits);
    let mut child = command.spawn().map_err(|e| SpawnError::new(cmd, e))?;
    let pgid = child.id().expect("a just-spawned child has a pid") as i32;
    let mut guard = GroupGuard::new(pgid);
    if let Some(on_spawn) = &hooks.on_spawn {
        on_spawn(pgid as u32);
    }

    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = input.to_vec();
    let writer = tokio::spawn(async move {
        // A worker may exit without reading its task; a broken pipe is its business.
        let _ = stdin.write_all(&input).await;
        let _ = stdin.shutdown().await;
    });

    let (overflow_tx, mut overflow_rx) = oneshot::channel();
    let stdout = child.stdout.take().expect("stdout is piped");
    let stdout_task = tokio::spawn(read_stdout(stdout, limits.max_stdout, overflow_tx));
    let stderr = child.stderr.take().expect("stderr is piped");
    let stderr_task = tokio::spawn(read_stderr(
        stderr,
        limits.stderr_tail,
        limits.echo_stderr,
        hooks.on_stderr,
    ));

    let mut stopped = None;
    let mut pipes_held_open = false;
    let mut leftovers = Vec::new();
    let (mut stdout_task, mut stderr_task) = (Some(stdout_task), Some(stderr_task));
    let (mut out, mut err) = (None, None);

    // Phase 1: the worker exits by itself, or the runner stops it.
    let mut peak_memory = 0;
    let over_memory = group::over_memory(pgid, limits.max_memory);
    let status = tokio::select! {
        status = child.wait() => status.ok(),
        _ = tokio::time::sleep_until(deadline) => { stopped = Some(Stopped::TimedOut); None }
        Ok(()) = &mut overflow_rx => { stopped = Some(Stopped::StdoutOverflow); None }
        _ = cancel.cancelled() => { stopped = Some(Stopped::Cancelled); None }
        rss = over_memory => { stopped = Some(Stopped::MemoryLimit); peak_memory = rss; None }
    };

    let status = match status {
        Some(status) => {
            // Phase 2: the worker exited; its output is complete once both pipes close. Like
            // the reference harness, that must happen within the same time limit.
            let (o, e) = (stdout_task.as_mut().unwrap(), stderr_task.as_mut().unwrap());
            tokio::select! {
                (o, e) = async { tokio::join!(o, e) } => {
                    out = o.ok();
                    err = e.ok();
                    stdout_task = None;
                    stderr_task = None;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    stopped = Some(Stopped::TimedOut);
                    pipes_held_open = true;
                }
                _ = cancel.cancelled() => { stopped = Some(Stopped::Cancelled); }
            }
            leftovers = live_members(pgid);
            if !leftovers.is_empty() {
                terminate_group(pgid, limits.kill_grace).await;
            }
            status
        }
        None => {
            signal_group(pgid, Signal::SIGTERM);
            let exited = tokio::time::timeout(limits.kill_grace, child.wait()).await;
            let status = match exited {
                Ok(Ok(status)) => status,
                _ => {
                    signal_group(pgid, Signal::SIGKILL);
                    child.wait().await.map_err(|e| SpawnError::new(cmd, e))?
                }
            };
            // The worker is gone; whatever it left in its group goes too.
            terminate_group(pgid, limits.kill_grace).await;
            status
        }
    };
    guard.disarm();
    writer.abort();

    if let Some(task) = stdout_task {
        out = finish_reader(task).await;
    }
    if let Some(task) = stderr_task {
        err = finish_reader(task).await;
    }
    let (stdout_bytes, stdout_len, stdout_utf8) = match out {
        Some(buf) => (buf.bytes, buf.total, buf.utf8.is_valid()),
        None => (Vec::new(), 0, true),
    };
    let (stderr_bytes, stderr_len, stderr_utf8) = match err {
        Some(buf) => {
            let (total, valid) = (buf.total, buf.utf8.is_valid());
            (buf.into_tail(), total, valid)
        }
        None => (Vec::new(), 0, true),
    };

    Ok(RunOutcome {
        exit: Exit::from_status(status),
        stopped,
        duration: started.elapsed(),
        stdout: stdout_bytes,
        stdout_len,
        stdout_utf8,
        stderr: stderr_bytes,
        stderr_len,
        stderr_utf8,
        leftovers,
        pipes_held_open,
        peak_memory,
        memory_limit: limits.max_memory,
    })
}

/// The process to start for `cmd`: piped stdio, its own process group, killed when dropped,
/// and (for the host) killed by the kernel if `wh` dies.
fn tokio_command(cmd: &WorkerCommand, limits: &Limits) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(&cmd.program);
    for name in &cmd.env_remove {
        command.env_remove(name);
    }
    command
        .args(&cmd.args)
        .envs(cmd.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = &cmd.cwd {
        command.current_dir(dir);
    }
    #[cfg(target_os = "linux")]
    if limits.die_with_parent {
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec here.
        unsafe {
            command
                .pre_exec(|| nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from));
        }
    }
    command
}

/// TERM to the group, a grace period, then KILL to whatever is left.
async fn terminate_group(pgid: i32, grace: Duration) {
    signal_group(pgid, Signal::SIGTERM);
    if !wait_until_empty(pgid, grace).await {
        signal_group(pgid, Signal::SIGKILL);
        wait_until_empty(pgid, Duration::from_secs(5)).await;
    }
}

async fn finish_reader<T>(mut task: tokio::task::JoinHandle<T>) -> Option<T> {
    match tokio::time::timeout(DRAIN_AFTER_KILL, &mut task).await {
        Ok(Ok(value)) => Some(value),
        _ => {
            task.abort();
            None
        }
    }
}

const CHUNK: usize = 64 * 1024;

async fn read_stdout(
    mut pipe: impl AsyncRead + Unpin,
    cap: usize,
    overflow: oneshot::Sender<()>,
) -> CappedBuffer {
    let mut buf = CappedBuffer::new(cap);
    let mut chunk = vec![0u8; CHUNK];
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if !buf.push(&chunk[..n]) {
                    let _ = overflow.send(());
                    break;
                }
            }
        }
    }
    buf
}

async fn read_stderr(
    mut pipe: impl AsyncRead + Unpin,
    keep: usize,
    echo: bool,
    on_chunk: Option<StderrHook>,
) -> TailBuffer {
    let mut buf = TailBuffer::new(keep);
    let mut chunk = vec![0u8; CHUNK];
    let mut out = tokio::io::stderr();
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                buf.push(&chunk[..n]);
                if let Some(f) = &on_chunk {
                    f(&chunk[..n]);
                }
                if echo {
                    let _ = out.write_all(&chunk[..n]).await;
                }
            }
        }
    }
    buf
}
