//! One long-lived worker process that serves many tasks, one at a time, one line each way
//! (persistent mode, docs/protocol.md section 8).
//!
//! The same guarantees as a one-shot run, per task: a time limit, a cap on what stdout may
//! hold, a memory limit, and the whole process group stopped (TERM, grace, KILL) whenever the
//! process cannot be trusted to serve another task. stderr is read for the whole life of the
//! process; what arrives during a task is that task's tail. What a result line means is
//! `crate::protocol`'s business; this module only moves bytes and watches the process.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio_util::sync::CancellationToken;

use super::capture::TailBuffer;
use super::group::{self, GroupGuard, signal_group};
use super::{Exit, Limits, SpawnError, StderrHook, Stopped, WorkerCommand, terminate_group, tokio_command};

/// Why a process did not become ready to serve.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    /// It started, but did not confirm persistent mode; it has been stopped.
    #[error("no persistent-mode handshake: {reason}")]
    NoHandshake {
        reason: String,
        /// The end of what it wrote on stderr meanwhile.
        stderr: Vec<u8>,
    },
}

/// What one task's exchange came to.
#[derive(Debug, Clone)]
pub struct TaskRun {
    /// The line the process answered with (without its `\n`), when it answered.
    pub line: Option<Vec<u8>>,
    /// Set when the runner stopped the process during this task.
    pub stopped: Option<Stopped>,
    /// Set when the process ended during this task (by itself, or stopped by the runner): it
    /// serves no more tasks.
    pub exit: Option<Exit>,
    pub duration: Duration,
    /// The last `stderr_tail` bytes the process wrote on stderr during this task.
    pub stderr: Vec<u8>,
    pub stderr_len: u64,
    pub stderr_utf8: bool,
    /// With `Stopped::MemoryLimit`: the group's resident memory when it was stopped.
    pub peak_memory: u64,
    pub memory_limit: Option<u64>,
}

/// stderr as the reader thread shares it: the current task's tail and hook.
struct StderrShared {
    tail: TailBuffer,
    hook: Option<StderrHook>,
}

/// How stdout's next line came.
enum LineRead {
    Line,
    Eof,
    TooLong,
}

/// A started process that has confirmed persistent mode.
pub struct Process {
    child: Child,
    pgid: i32,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    line: Vec<u8>,
    stderr: Arc<Mutex<StderrShared>>,
    stderr_keep: usize,
    /// The stderr reader; it ends when every holder of the pipe has exited.
    stderr_reader: Option<tokio::task::JoinHandle<()>>,
    guard: GroupGuard,
    /// The process can serve another task (it has not ended, nor been stopped).
    alive: bool,
    /// Tasks it has answered.
    pub served: u64,
    pub started: Instant,
    /// When its last task ended (or it became ready).
    pub idle_since: Instant,
    /// When its owner last read its memory (the pool checks between tasks, at most so often).
    pub checked_at: Instant,
}

/// How long a process that ended may take to flush the line it wrote just before.
const FLUSH_AFTER_EXIT: Duration = Duration::from_millis(200);

impl Process {
    /// Starts `cmd` and waits, up to `handshake_timeout`, for its first stdout line, which
    /// `check` must accept. The caller puts the mode's signal in `cmd`'s environment.
    pub async fn start(
        cmd: &WorkerCommand,
        limits: &Limits,
        handshake_timeout: Duration,
        check: impl Fn(&[u8]) -> Result<(), String>,
    ) -> Result<Process, StartError> {
        let mut command = tokio_command(cmd, limits);
        let mut child = command.spawn().map_err(|e| SpawnError::new(cmd, e))?;
        let pgid = child.id().expect("a just-spawned child has a pid") as i32;
        let guard = GroupGuard::new(pgid);
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = BufReader::with_capacity(64 * 1024, child.stdout.take().expect("stdout is piped"));
        let stderr = Arc::new(Mutex::new(StderrShared {
            tail: TailBuffer::new(limits.stderr_tail),
            hook: None,
        }));
        let stderr_reader = tokio::spawn(read_stderr(
            child.stderr.take().expect("stderr is piped"),
            stderr.clone(),
            limits.echo_stderr,
        ));
        let now = Instant::now();
        let mut process = Process {
            child,
            pgid,
            stdin: Some(stdin),
            stdout,
            line: Vec::new(),
            stderr,
            stderr_keep: limits.stderr_tail,
            stderr_reader: Some(stderr_reader),
            guard,
            alive: true,
            served: 0,
            started: now,
            idle_since: now,
            checked_at: now,
        };

        let deadline = tokio::time::Instant::now() + handshake_timeout;
        let cap = limits.max_stdout;
        let first = tokio::select! {
            read = read_line_capped(&mut process.stdout, &mut process.line, cap) => match read {
                Ok(LineRead::Line) => check(&process.line),
                Ok(LineRead::TooLong) => Err(format!("its first line went past {} bytes", cap)),
                Ok(LineRead::Eof) | Err(_) => {
                    let exit = tokio::time::timeout(FLUSH_AFTER_EXIT, process.child.wait()).await;
                    Err(match exit {
                        Ok(Ok(status)) => format!("it ended ({}) before its handshake", Exit::from_status(status)),
                        _ => "it closed stdout before its handshake".to_string(),
                    })
                }
            },
            status = process.child.wait() => {
                let how = match status {
                    Ok(status) => Exit::from_status(status).to_string(),
                    Err(e) => format!("waiting for it failed: {e}"),
                };
                // What it wrote just before it ended may still be in the pipe.
                let read = tokio::time::timeout(
                    FLUSH_AFTER_EXIT,
                    read_line_capped(&mut process.stdout, &mut process.line, cap),
                )
                .await;
                match read {
                    Ok(Ok(LineRead::Line)) => match check(&process.line) {
                        Ok(()) => Err(format!("it ended ({how}) right after its handshake")),
                        Err(e) => Err(e),
                    },
                    _ => Err(format!("it ended ({how}) before its handshake")),
                }
            }
            _ = tokio::time::sleep_until(deadline) => Err(format!(
                "no handshake line within {}s (a one-shot worker waits for stdin to close)",
                handshake_timeout.as_secs_f64()
            )),
        };
        match first {
            Ok(()) => {
                process.line.clear();
                process.idle_since = Instant::now();
                Ok(process)
            }
            Err(reason) => {
                process.kill(limits.kill_grace).await;
                process.finish_stderr().await;
                let stderr = process.take_stderr().0;
                Err(StartError::NoHandshake { reason, stderr })
            }
        }
    }

    /// The process group's id (the worker's pid).
    pub fn pid(&self) -> u32 {
        self.pgid as u32
    }

    /// Whether it can serve another task.
    pub fn is_alive(&self) -> bool {
        self.alive
    }

    /// The resident memory of its whole process group, in bytes.
    pub fn resident_bytes(&self) -> u64 {
        group::resident_bytes(self.pgid)
    }

    /// Sends one task line (`input` must end with `\n` and hold no other) and waits for the
    /// answer line, within `limits.timeout`. When the returned run has an `exit`, the process
    /// is gone; when the caller does not trust the line it got, it must [`Process::kill`] it.
    pub async fn run_task(
        &mut self,
        input: &[u8],
        limits: &Limits,
        cancel: &CancellationToken,
        on_stderr: Option<StderrHook>,
    ) -> TaskRun {
        let started = Instant::now();
        let deadline = tokio::time::Instant::from_std(started + limits.timeout);
        {
            let mut shared = self.stderr.lock().expect("no panics under the stderr lock");
            shared.tail = TailBuffer::new(self.stderr_keep);
            shared.hook = on_stderr;
        }
        self.line.clear();
        let mut run = TaskRun {
            line: None,
            stopped: None,
            exit: None,
            duration: Duration::ZERO,
            stderr: Vec::new(),
            stderr_len: 0,
            stderr_utf8: true,
            peak_memory: 0,
            memory_limit: limits.max_memory,
        };

        let over_memory = group::over_memory(self.pgid, limits.max_memory);
        let stdin = self.stdin.as_mut();
        let write = async {
            // A process that stops reading is caught by the time limit; a broken pipe means it
            // ended, which the exit branch sees.
            if let Some(stdin) = stdin {
                let _ = stdin.write_all(input).await;
                let _ = stdin.flush().await;
            }
            std::future::pending::<()>().await
        };
        let cap = limits.max_stdout;
        enum Ended {
            Read(std::io::Result<LineRead>),
            Exited(Option<std::process::ExitStatus>),
        }
        let ended = tokio::select! {
            read = read_line_capped(&mut self.stdout, &mut self.line, cap) => Some(Ended::Read(read)),
            status = self.child.wait() => Some(Ended::Exited(status.ok())),
            _ = write => None,
            _ = tokio::time::sleep_until(deadline) => { run.stopped = Some(Stopped::TimedOut); None }
            _ = cancel.cancelled() => { run.stopped = Some(Stopped::Cancelled); None }
            rss = over_memory => { run.stopped = Some(Stopped::MemoryLimit); run.peak_memory = rss; None }
        };
        match ended {
            Some(Ended::Read(Ok(LineRead::Line))) => {
                run.line = Some(std::mem::take(&mut self.line));
                self.served += 1;
            }
            Some(Ended::Read(Ok(LineRead::TooLong))) => {
                run.stopped = Some(Stopped::StdoutOverflow);
            }
            Some(Ended::Read(Ok(LineRead::Eof) | Err(_))) => {
                // stdout closed: the process is ending; give it a moment to be reaped.
                if let Ok(Ok(status)) = tokio::time::timeout(limits.kill_grace, self.child.wait()).await {
                    run.exit = Some(Exit::from_status(status));
                }
            }
            Some(Ended::Exited(status)) => {
                // It ended; a line it wrote just before may still be in the pipe.
                let read = tokio::time::timeout(
                    FLUSH_AFTER_EXIT,
                    read_line_capped(&mut self.stdout, &mut self.line, cap),
                )
                .await;
                if let Ok(Ok(LineRead::Line)) = read {
                    run.line = Some(std::mem::take(&mut self.line));
                    self.served += 1;
                }
                run.exit = Some(status.map(Exit::from_status).unwrap_or(Exit::Code(-1)));
            }
            None => {}
        }
        if run.stopped.is_some() || (run.exit.is_none() && run.line.is_none()) {
            let exit = self.kill(limits.kill_grace).await;
            run.exit = run.exit.or(exit);
        } else if run.exit.is_some() {
            // It ended by itself: whatever it left in its group goes too.
            self.alive = false;
            terminate_group(self.pgid, limits.kill_grace).await;
            self.guard.disarm();
        }
        if !self.alive {
            self.finish_stderr().await;
        }
        let (stderr, stderr_len, stderr_utf8) = self.take_stderr();
        run.stderr = stderr;
        run.stderr_len = stderr_len;
        run.stderr_utf8 = stderr_utf8;
        run.duration = started.elapsed();
        self.idle_since = Instant::now();
        run
    }

    /// Once the process is gone: lets the stderr reader take in the last of it (briefly: a
    /// process that left the group could hold the pipe open).
    async fn finish_stderr(&mut self) {
        if let Some(mut reader) = self.stderr_reader.take()
            && tokio::time::timeout(super::DRAIN_AFTER_KILL, &mut reader)
                .await
                .is_err()
        {
            reader.abort();
        }
    }

    /// The current task's stderr tail, and detaches its hook.
    fn take_stderr(&mut self) -> (Vec<u8>, u64, bool) {
        let mut shared = self.stderr.lock().expect("no panics under the stderr lock");
        shared.hook = None;
        let tail = std::mem::replace(&mut shared.tail, TailBuffer::new(self.stderr_keep));
        let (total, valid) = (tail.total, tail.utf8.is_valid());
        (tail.into_tail(), total, valid)
    }

    /// Stops it now: TERM to the whole group, `grace`, then KILL. Returns how it ended.
    pub async fn kill(&mut self, grace: Duration) -> Option<Exit> {
        self.alive = false;
        self.stdin = None;
        signal_group(self.pgid, Signal::SIGTERM);
        let status = match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(Ok(status)) => Some(status),
            _ => {
                signal_group(self.pgid, Signal::SIGKILL);
                self.child.wait().await.ok()
            }
        };
        terminate_group(self.pgid, grace).await;
        self.guard.disarm();
        status.map(Exit::from_status)
    }

    /// Ends it gracefully: closes stdin (the worker exits on EOF) and waits up to `grace`;
    /// then stops the group as [`Process::kill`] does. Returns how it ended.
    pub async fn shutdown(mut self, grace: Duration) -> Option<Exit> {
        if !self.alive {
            return None;
        }
        self.stdin = None;
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(Ok(status)) => {
                self.alive = false;
                // Anything it started goes with it.
                terminate_group(self.pgid, grace).await;
                self.guard.disarm();
                Some(Exit::from_status(status))
            }
            _ => self.kill(grace).await,
        }
    }
}

/// Reads up to the next `\n` into `line` (without it), holding at most `cap` bytes.
async fn read_line_capped(
    reader: &mut BufReader<ChildStdout>,
    line: &mut Vec<u8>,
    cap: usize,
) -> std::io::Result<LineRead> {
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(LineRead::Eof);
        }
        if let Some(i) = available.iter().position(|b| *b == b'\n') {
            if line.len() + i > cap {
                return Ok(LineRead::TooLong);
            }
            line.extend_from_slice(&available[..i]);
            reader.consume(i + 1);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(LineRead::Line);
        }
        let n = available.len();
        if line.len() + n > cap {
            return Ok(LineRead::TooLong);
        }
        line.extend_from_slice(available);
        reader.consume(n);
    }
}

async fn read_stderr(mut pipe: tokio::process::ChildStderr, shared: Arc<Mutex<StderrShared>>, echo: bool) {
    let mut chunk = vec![0u8; 64 * 1024];
    let mut out = tokio::io::stderr();
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                {
                    let mut s = shared.lock().expect("no panics under the stderr lock");
                    s.tail.push(&chunk[..n]);
                    if let Some(hook) = &s.hook {
                        hook(&chunk[..n]);
                    }
                }
                if echo {
                    let _ = out.write_all(&chunk[..n]).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> WorkerCommand {
        WorkerCommand::new("sh").arg("-c").arg(script)
    }

    fn accept_ready(line: &[u8]) -> Result<(), String> {
        if line == b"READY" {
            Ok(())
        } else {
            Err(format!("got {:?}", String::from_utf8_lossy(line)))
        }
    }

    fn limits(timeout_ms: u64) -> Limits {
        Limits {
            timeout: Duration::from_millis(timeout_ms),
            kill_grace: Duration::from_millis(300),
            ..Limits::default()
        }
    }

    /// `script` in sh, with a handshake limit of `handshake_ms`.
    async fn start(script: &str, l: &Limits, handshake_ms: u64) -> Result<Process, StartError> {
        Process::start(&sh(script), l, Duration::from_millis(handshake_ms), accept_ready).await
    }

    /// Why `script` was refused.
    async fn refused(script: &str, handshake_ms: u64) -> StartError {
        start(script, &limits(1000), handshake_ms)
            .await
            .err()
            .expect("refused")
    }

    // An echo server in sh: the handshake, then every line back, prefixed.
    const ECHO: &str = "echo READY; while read -r l; do echo \"got $l\"; echo \"log $l\" >&2; done";

    #[tokio::test]
    async fn serves_many_tasks_in_order_and_ends_on_eof() {
        let cancel = CancellationToken::new();
        let mut p = start(ECHO, &limits(5000), 5000).await.unwrap();
        for i in 0..50 {
            let run = p
                .run_task(format!("t{i}\n").as_bytes(), &limits(5000), &cancel, None)
                .await;
            assert_eq!(run.line.as_deref(), Some(format!("got t{i}").as_bytes()));
            assert!(run.exit.is_none() && run.stopped.is_none());
        }
        assert_eq!(p.served, 50);
        let pgid = p.pgid;
        assert_eq!(p.shutdown(Duration::from_secs(2)).await, Some(Exit::Code(0)));
        assert!(group::live_members(pgid).is_empty());
    }

    #[tokio::test]
    async fn a_missing_handshake_is_refused_and_the_process_stopped() {
        // A one-shot worker: reads stdin to EOF before it says anything.
        let err = refused("cat >/dev/null; echo '{}'", 300).await;
        assert!(err.to_string().contains("no handshake line within 0.3s"), "{err}");
        let err = refused("echo nope", 2000).await;
        assert!(err.to_string().contains("got \"nope\""), "{err}");
        let err = refused("echo oops >&2; exit 4", 2000).await;
        assert!(err.to_string().contains("exit code 4"), "{err}");
        let StartError::NoHandshake { stderr, .. } = err else {
            panic!()
        };
        assert_eq!(stderr, b"oops\n");
    }

    #[tokio::test]
    async fn a_task_past_its_time_limit_stops_the_whole_group() {
        let cancel = CancellationToken::new();
        // The second task hangs, with a child of its own in the group.
        let script = "echo READY; read -r a; echo one; read -r b; sleep 30 & sleep 30; echo two";
        let mut p = start(script, &limits(300), 5000).await.unwrap();
        assert!(
            p.run_task(b"a\n", &limits(300), &cancel, None)
                .await
                .line
                .is_some()
        );
        let pgid = p.pgid;
        let run = p.run_task(b"b\n", &limits(300), &cancel, None).await;
        assert_eq!(run.stopped, Some(Stopped::TimedOut));
        assert!(run.line.is_none() && run.exit.is_some());
        assert!(!p.is_alive());
        assert!(group::live_members(pgid).is_empty());
    }

    #[tokio::test]
    async fn an_exit_mid_task_and_an_overlong_line_end_the_process() {
        let cancel = CancellationToken::new();
        let mut p = start("echo READY; read -r a; exit 7", &limits(2000), 5000)
            .await
            .unwrap();
        let run = p.run_task(b"a\n", &limits(2000), &cancel, None).await;
        assert_eq!(run.exit, Some(Exit::Code(7)));
        assert!(run.line.is_none());

        let mut small = limits(2000);
        small.max_stdout = 10;
        let mut p = start(
            "echo READY; read -r a; head -c 100000 /dev/zero | tr '\\0' x; echo",
            &small,
            5000,
        )
        .await
        .unwrap();
        let run = p.run_task(b"a\n", &small, &cancel, None).await;
        assert_eq!(run.stopped, Some(Stopped::StdoutOverflow));
        assert!(!p.is_alive());
    }

    #[tokio::test]
    async fn stderr_is_attributed_to_the_task_it_came_during() {
        let cancel = CancellationToken::new();
        let script = "echo READY; while read -r l; do echo \"log $l\" >&2; sleep 0.05; echo \"got $l\"; done";
        let mut p = start(script, &limits(5000), 5000).await.unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let hook: StderrHook = Box::new(move |b: &[u8]| s.lock().unwrap().extend_from_slice(b));
        let first = p.run_task(b"one\n", &limits(5000), &cancel, Some(hook)).await;
        let second = p.run_task(b"two\n", &limits(5000), &cancel, None).await;
        assert_eq!(first.stderr, b"log one\n");
        assert_eq!(second.stderr, b"log two\n");
        assert_eq!(&*seen.lock().unwrap(), b"log one\n");
        p.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn shutdown_kills_a_process_that_ignores_eof() {
        let script = "trap '' TERM; echo READY; while true; do sleep 0.05; done";
        let p = start(script, &limits(1000), 5000).await.unwrap();
        let pgid = p.pgid;
        let exit = p.shutdown(Duration::from_millis(200)).await;
        assert_eq!(exit, Some(Exit::Signal(9)));
        assert!(group::live_members(pgid).is_empty());
    }
}
