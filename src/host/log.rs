//! The host's own logs: one global `tracing` subscriber writing to stderr and, when
//! `logging.file` is set, to a size-rotated file; and [`LogObserver`], which turns lifecycle
//! events into log lines.
//!
//! The level comes from `logging.level`; `WH_LOG` (an `EnvFilter` directive such as `debug` or
//! `wh=debug,hyper=warn`) overrides it. `logging.structured` switches both outputs to JSON
//! lines with the event's fields at the top level. `logging.format` (a Python logging format
//! string in the original design) is not interpreted: text logs always use one compact format.
//!
//! Rotation follows Python's `RotatingFileHandler`: a line that would take the file past
//! `max_bytes` goes to a fresh file (so lines are never split and JSON lines stay whole),
//! rotated files are `<file>.1` (newest) .. `<file>.<backup_count>`, and a `max_bytes` or
//! `backup_count` of 0 means the file is never rotated.

use std::fs::OpenOptions;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use file_rotate::compression::Compression;
use file_rotate::suffix::AppendCount;
use file_rotate::{ContentLimit, FileRotate};
use tracing::Dispatch;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Layer, Layered, SubscriberExt};
use tracing_subscriber::{EnvFilter, Registry};

use super::events::{Event, Observer, PoolEvent, RetireCause, TaskRef};
use crate::config::model::{LogLevel, Logging};
use crate::protocol::ExitClass;

/// The environment variable that overrides `logging.level` (`EnvFilter` syntax).
pub const LOG_ENV: &str = "WH_LOG";

/// The `tracing` target of lifecycle events (`WH_LOG=wh::task=debug` selects them alone).
pub const TASK_TARGET: &str = "wh::task";

/// Returned by [`init`]; keep it for the life of the program.
///
/// Logs are written synchronously (no background thread), so dropping it loses nothing
/// today; it exists so a buffered writer can be added without changing callers.
#[derive(Debug)]
#[must_use = "keep the guard for the life of the program"]
pub struct LogGuard {
    file: Option<PathBuf>,
}

impl LogGuard {
    /// The log file written beside stderr, resolved against the config's folder.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }
}

/// Installs the global subscriber. A second call (or any other global subscriber already
/// installed) is an error, not a panic.
pub fn init(logging: &Logging, config_dir: &Path) -> Result<LogGuard, String> {
    let env = std::env::var(LOG_ENV).ok().filter(|v| !v.trim().is_empty());
    let ansi = io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let (dispatch, guard) = build(logging, config_dir, env.as_deref(), io::stderr, ansi)?;
    tracing::dispatcher::set_global_default(dispatch)
        .map_err(|_| "the host's logging is already set up".to_string())?;
    Ok(guard)
}

type Base = Layered<EnvFilter, Registry>;
type BoxedLayer = Box<dyn Layer<Base> + Send + Sync>;

/// The subscriber `init` installs, with the `WH_LOG` value and the stderr writer passed in
/// (tests use their own).
fn build<W>(
    logging: &Logging,
    config_dir: &Path,
    env_filter: Option<&str>,
    stderr: W,
    ansi: bool,
) -> Result<(Dispatch, LogGuard), String>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = match env_filter {
        Some(directives) => EnvFilter::try_new(directives)
            .map_err(|e| format!("{LOG_ENV}={directives:?} is not a valid filter: {e}"))?,
        None => EnvFilter::new(level_directive(logging.level)),
    };

    let mut outputs = vec![output_layer(logging.structured, stderr, ansi)];
    let file = match &logging.file {
        Some(file) => {
            let path = config_dir.join(file);
            let writer = RotatingFile::open(&path, logging.max_bytes, logging.backup_count)?;
            outputs.push(output_layer(logging.structured, Mutex::new(writer), false));
            Some(path)
        }
        None => None,
    };

    let subscriber = Registry::default().with(filter).with(outputs);
    Ok((Dispatch::new(subscriber), LogGuard { file }))
}

/// `logging.level` as an `EnvFilter` directive (CRITICAL has no `tracing` level of its own).
fn level_directive(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warning => "warn",
        LogLevel::Error | LogLevel::Critical => "error",
    }
}

fn output_layer<W>(structured: bool, writer: W, ansi: bool) -> BoxedLayer
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer().with_writer(writer);
    if structured {
        Box::new(
            layer
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .with_ansi(false),
        )
    } else {
        Box::new(layer.compact().with_ansi(ansi))
    }
}

/// The log file, rotated by size before a write that would take it past `max_bytes`.
struct RotatingFile {
    file: FileRotate<AppendCount>,
    /// Bytes in the current file; `None` when the file is never rotated.
    limit: Option<(u64, u64)>,
}

impl RotatingFile {
    fn open(path: &Path, max_bytes: u64, backup_count: u32) -> Result<Self, String> {
        let shown = path.display();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create the log folder {}: {e}", parent.display()))?;
        }
        // FileRotate swallows open errors (and drops every line after); find them here.
        let existing = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|f| f.metadata())
            .map_err(|e| format!("cannot open the log file {shown}: {e}"))?
            .len();
        let file = FileRotate::new(
            path,
            AppendCount::new(backup_count as usize),
            ContentLimit::None,
            Compression::None,
            None,
        );
        let limit = (max_bytes > 0 && backup_count > 0).then_some((existing, max_bytes));
        Ok(Self { file, limit })
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some((written, max)) = &mut self.limit {
            if *written > 0 && *written + buf.len() as u64 > *max {
                self.file.rotate()?;
                *written = 0;
            }
            *written += buf.len() as u64;
        }
        self.file.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Writes one log line per lifecycle event (target [`TASK_TARGET`]).
///
/// Levels: received, worker_spawned, progress, worker_exited DEBUG; completed, released INFO;
/// retrying WARN; failed, dead, spawn_failed ERROR; worker_stderr INFO, and only when
/// `capture_worker_output`.
#[derive(Debug, Clone, Copy)]
pub struct LogObserver {
    pub capture_worker_output: bool,
}

/// The common fields, then the event's own.
macro_rules! task_event {
    ($level:ident, $event:expr, $task:expr, $message:literal $(, $($field:tt)+)?) => {
        tracing::event!(
            target: TASK_TARGET,
            tracing::Level::$level,
            event = $event.name(),
            task_id = $task.id.as_str(),
            task_type = $task.task_type.as_str(),
            attempt = $task.attempt,
            $($($field)+,)?
            $message
        )
    };
}

impl LogObserver {
    /// A warm process started, ended, or its worker fell back to one-shot runs.
    fn pool_event(&self, event: &PoolEvent) {
        match event {
            PoolEvent::Started { worker, pid, startup } => tracing::info!(
                target: TASK_TARGET,
                event = "process_started",
                worker = worker.as_str(),
                pid = *pid,
                startup_ms = millis(*startup),
                "warm process started"
            ),
            PoolEvent::Retired {
                worker,
                pid,
                served,
                cause,
            } => {
                let cause_text = cause.to_string();
                if matches!(cause, RetireCause::Lost(_)) {
                    tracing::warn!(target: TASK_TARGET, event = "process_retired", worker = worker.as_str(), pid = *pid, served = *served, cause = cause.label(), reason = cause_text.as_str(), "warm process replaced")
                } else {
                    tracing::info!(target: TASK_TARGET, event = "process_retired", worker = worker.as_str(), pid = *pid, served = *served, cause = cause.label(), reason = cause_text.as_str(), "warm process retired")
                }
            }
            PoolEvent::Fallback {
                worker,
                reason,
                stderr,
            } => tracing::warn!(
                target: TASK_TARGET,
                event = "persistent_fallback",
                worker = worker.as_str(),
                reason = reason.as_str(),
                stderr = stderr.as_str(),
                "worker did not confirm persistent mode; running it one-shot until a reload"
            ),
        }
    }
}

impl Observer for LogObserver {
    fn on_pool(&self, event: &PoolEvent) {
        self.pool_event(event);
    }

    fn on_event(&self, event: &Event) {
        let task: &TaskRef = event.task();
        match event {
            Event::Received { .. } => task_event!(DEBUG, event, task, "task received"),
            Event::WorkerSpawned { worker, pid, .. } => {
                task_event!(
                    DEBUG,
                    event,
                    task,
                    "worker started",
                    worker = worker.as_str(),
                    pid = *pid
                )
            }
            Event::Handed { worker, pid, .. } => {
                task_event!(
                    DEBUG,
                    event,
                    task,
                    "task handed to a warm process",
                    worker = worker.as_str(),
                    pid = *pid
                )
            }
            Event::Answered { worker, duration, .. } => task_event!(
                DEBUG,
                event,
                task,
                "warm process answered",
                worker = worker.as_str(),
                duration_ms = millis(*duration)
            ),
            Event::SpawnFailed { worker, error, .. } => {
                task_event!(
                    ERROR,
                    event,
                    task,
                    "worker could not be started",
                    worker = worker.as_str(),
                    error = error.as_str()
                )
            }
            Event::WorkerStderr { worker, line, .. } => {
                if self.capture_worker_output {
                    task_event!(
                        INFO,
                        event,
                        task,
                        "worker stderr",
                        worker = worker.as_str(),
                        line = line.as_str()
                    )
                }
            }
            Event::Progress {
                worker,
                percent,
                message,
                ..
            } => task_event!(
                DEBUG,
                event,
                task,
                "worker progress",
                worker = worker.as_str(),
                percent = *percent,
                progress_message = message.as_deref()
            ),
            Event::WorkerExited {
                worker,
                exit,
                duration,
                ..
            } => task_event!(
                DEBUG,
                event,
                task,
                "worker exited",
                worker = worker.as_str(),
                exit = exit.to_string().as_str(),
                duration_ms = millis(*duration)
            ),
            Event::Completed { worker, duration, .. } => task_event!(
                INFO,
                event,
                task,
                "task completed",
                worker = worker.as_str(),
                duration_ms = millis(*duration)
            ),
            Event::Retrying {
                worker,
                class,
                error,
                delay,
                ..
            } => task_event!(
                WARN,
                event,
                task,
                "task will be retried",
                worker = worker.as_str(),
                class = class_name(*class),
                error = error.as_str(),
                delay_ms = millis(*delay)
            ),
            Event::Failed {
                worker, class, error, ..
            } => task_event!(
                ERROR,
                event,
                task,
                "task failed",
                worker = (!worker.is_empty()).then_some(worker.as_str()),
                class = class.map(class_name),
                error = error.as_str()
            ),
            Event::Dead { worker, error, .. } => {
                task_event!(
                    ERROR,
                    event,
                    task,
                    "task is dead",
                    worker = worker.as_str(),
                    error = error.as_str()
                )
            }
            Event::Released { worker, .. } => {
                task_event!(INFO, event, task, "task released", worker = worker.as_str())
            }
        }
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The class's serde name (`retriable_failure`), as results and the queue record it.
pub(crate) fn class_name(class: ExitClass) -> &'static str {
    match class {
        ExitClass::Success => "success",
        ExitClass::RetriableFailure => "retriable_failure",
        ExitClass::PermanentFailure => "permanent_failure",
        ExitClass::Timeout => "timeout",
        ExitClass::Interrupted => "interrupted",
        ExitClass::Crashed => "crashed",
        ExitClass::ProtocolViolation => "protocol_violation",
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, MutexGuard};
    use std::time::Duration;

    use serde_json::Value;

    use super::*;
    use crate::runner::Exit;

    /// An in-memory stderr.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Capture {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    struct CaptureWriter<'a>(MutexGuard<'a, Vec<u8>>);

    impl Write for CaptureWriter<'_> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Capture {
        type Writer = CaptureWriter<'a>;
        fn make_writer(&'a self) -> Self::Writer {
            CaptureWriter(self.0.lock().unwrap())
        }
    }

    fn task() -> TaskRef {
        TaskRef {
            id: "t-1".into(),
            task_type: "scrape".into(),
            attempt: 2,
        }
    }

    fn every_event() -> Vec<Event> {
        let worker = || "scraper".to_string();
        vec![
            Event::Received { task: task() },
            Event::WorkerSpawned {
                task: task(),
                worker: worker(),
                pid: Some(42),
            },
            Event::WorkerStderr {
                task: task(),
                worker: worker(),
                line: "loading page".into(),
            },
            Event::Progress {
                task: task(),
                worker: worker(),
                percent: 40,
                message: Some("page 3/7".into()),
            },
            Event::WorkerExited {
                task: task(),
                worker: worker(),
                exit: Exit::Signal(9),
                duration: Duration::from_millis(1500),
            },
            Event::Completed {
                task: task(),
                worker: worker(),
                duration: Duration::from_millis(1500),
            },
            Event::Retrying {
                task: task(),
                worker: worker(),
                class: ExitClass::RetriableFailure,
                error: "HTTP 503".into(),
                delay: Duration::from_secs(4),
            },
            Event::Failed {
                task: task(),
                worker: String::new(),
                class: None,
                error: "no worker handles `scrape`".into(),
            },
            Event::Dead {
                task: task(),
                worker: worker(),
                error: "delivered 5 times".into(),
            },
            Event::SpawnFailed {
                task: task(),
                worker: worker(),
                error: "`python3` was not found".into(),
            },
            Event::Released {
                task: task(),
                worker: worker(),
            },
        ]
    }

    fn logging(structured: bool) -> Logging {
        Logging {
            level: LogLevel::Debug,
            structured,
            ..Logging::default()
        }
    }

    fn run(dispatch: &Dispatch, observer: LogObserver) {
        tracing::dispatcher::with_default(dispatch, || {
            for event in every_event() {
                observer.on_event(&event);
            }
        });
    }

    fn json_lines(text: &str) -> Vec<Value> {
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    #[test]
    fn structured_lines_carry_flat_fields_and_levels() {
        let out = Capture::default();
        let dir = tempfile::tempdir().unwrap();
        let (dispatch, _guard) = build(&logging(true), dir.path(), None, out.clone(), false).unwrap();
        run(
            &dispatch,
            LogObserver {
                capture_worker_output: true,
            },
        );
        let lines = json_lines(&out.text());
        let names: Vec<_> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "received",
                "worker_spawned",
                "worker_stderr",
                "progress",
                "worker_exited",
                "completed",
                "retrying",
                "failed",
                "dead",
                "spawn_failed",
                "released"
            ]
        );
        let by = |name: &str| lines.iter().find(|l| l["event"] == name).unwrap().clone();
        let completed = by("completed");
        assert_eq!(completed["level"], "INFO");
        assert_eq!(completed["message"], "task completed");
        assert_eq!(completed["task_id"], "t-1");
        assert_eq!(completed["task_type"], "scrape");
        assert_eq!(completed["attempt"], 2);
        assert_eq!(completed["worker"], "scraper");
        assert_eq!(completed["duration_ms"], 1500);
        assert_eq!(completed["target"], TASK_TARGET);
        let retrying = by("retrying");
        assert_eq!(retrying["level"], "WARN");
        assert_eq!(retrying["class"], "retriable_failure");
        assert_eq!(retrying["delay_ms"], 4000);
        assert_eq!(retrying["error"], "HTTP 503");
        assert_eq!(by("worker_exited")["exit"], "killed by SIGKILL");
        assert_eq!(by("worker_exited")["level"], "DEBUG");
        assert_eq!(by("worker_spawned")["pid"], 42);
        assert_eq!(by("worker_stderr")["line"], "loading page");
        let progress = by("progress");
        assert_eq!(progress["level"], "DEBUG");
        assert_eq!(progress["message"], "worker progress");
        assert_eq!(progress["percent"], 40);
        assert_eq!(progress["progress_message"], "page 3/7");
        assert_eq!(progress["worker"], "scraper");
        let failed = by("failed");
        assert_eq!(failed["level"], "ERROR");
        assert!(failed.get("worker").is_none() && failed.get("class").is_none());
        assert_eq!(by("spawn_failed")["level"], "ERROR");
        assert_eq!(by("dead")["level"], "ERROR");
        assert_eq!(by("released")["level"], "INFO");
    }

    #[test]
    fn worker_stderr_is_dropped_unless_captured_and_level_filters() {
        let out = Capture::default();
        let dir = tempfile::tempdir().unwrap();
        let config = Logging {
            level: LogLevel::Warning,
            ..logging(true)
        };
        let (dispatch, _guard) = build(&config, dir.path(), None, out.clone(), false).unwrap();
        run(
            &dispatch,
            LogObserver {
                capture_worker_output: false,
            },
        );
        let names: Vec<_> = json_lines(&out.text())
            .iter()
            .map(|l| l["event"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, ["retrying", "failed", "dead", "spawn_failed"]);

        // WH_LOG wins over the configured level; CRITICAL is ERROR.
        let out = Capture::default();
        let (dispatch, _guard) = build(&config, dir.path(), Some("debug"), out.clone(), false).unwrap();
        run(
            &dispatch,
            LogObserver {
                capture_worker_output: false,
            },
        );
        assert_eq!(json_lines(&out.text()).len(), 10);
        assert_eq!(level_directive(LogLevel::Critical), "error");
        let bad = build(&config, dir.path(), Some("wh=loud"), Capture::default(), false);
        assert!(bad.unwrap_err().contains(LOG_ENV));
    }

    #[test]
    fn text_lines_are_compact_with_a_timestamp() {
        let out = Capture::default();
        let dir = tempfile::tempdir().unwrap();
        let (dispatch, _guard) = build(&logging(false), dir.path(), None, out.clone(), false).unwrap();
        run(
            &dispatch,
            LogObserver {
                capture_worker_output: true,
            },
        );
        let text = out.text();
        let line = text.lines().find(|l| l.contains("task completed")).unwrap();
        assert!(line.starts_with(|c: char| c.is_ascii_digit()), "{line}");
        assert!(line.contains(" INFO "), "{line}");
        assert!(
            line.contains("task_id=\"t-1\"") && line.contains("duration_ms=1500"),
            "{line}"
        );
        assert!(!text.contains('\x1b'));
    }

    #[test]
    fn file_gets_the_same_lines_without_colour_and_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let config = Logging {
            file: Some("logs/nested/host.log".into()),
            max_bytes: 600,
            backup_count: 2,
            ..logging(false)
        };
        let (dispatch, guard) = build(&config, dir.path(), None, io::sink, true).unwrap();
        let path = dir.path().join("logs/nested/host.log");
        assert_eq!(guard.file(), Some(path.as_path()));
        for _ in 0..5 {
            run(
                &dispatch,
                LogObserver {
                    capture_worker_output: true,
                },
            );
        }
        let rotated = |n: u32| PathBuf::from(format!("{}.{n}", path.display()));
        assert!(rotated(1).exists() && rotated(2).exists());
        assert!(!rotated(3).exists(), "backup_count is 2");
        for p in [path.clone(), rotated(1), rotated(2)] {
            let text = std::fs::read_to_string(&p).unwrap();
            assert!(text.len() <= 600, "{} has {} bytes", p.display(), text.len());
            assert!(text.ends_with('\n') && !text.contains('\x1b'));
        }
    }

    #[test]
    fn structured_file_lines_stay_whole_across_rotations() {
        let dir = tempfile::tempdir().unwrap();
        let config = Logging {
            file: Some("host.log".into()),
            max_bytes: 1000,
            backup_count: 3,
            ..logging(true)
        };
        let (dispatch, _guard) = build(&config, dir.path(), None, io::sink, false).unwrap();
        run(
            &dispatch,
            LogObserver {
                capture_worker_output: true,
            },
        );
        for name in ["host.log", "host.log.1", "host.log.2"] {
            let text = std::fs::read_to_string(dir.path().join(name)).unwrap();
            assert!(!json_lines(&text).is_empty(), "{name}");
        }
    }

    #[test]
    fn an_unwritable_log_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("taken"), "").unwrap();
        let config = Logging {
            file: Some("taken/host.log".into()),
            ..Logging::default()
        };
        let err = build(&config, dir.path(), None, io::sink, false).unwrap_err();
        assert!(err.contains("taken"), "{err}");
    }

    #[test]
    fn class_names_are_the_serde_names() {
        for class in [
            ExitClass::Success,
            ExitClass::RetriableFailure,
            ExitClass::PermanentFailure,
            ExitClass::Timeout,
            ExitClass::Interrupted,
            ExitClass::Crashed,
            ExitClass::ProtocolViolation,
        ] {
            assert_eq!(serde_json::to_value(class).unwrap(), class_name(class));
        }
    }

    #[test]
    fn init_twice_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let config = Logging {
            level: LogLevel::Error,
            ..Logging::default()
        };
        let _first = init(&config, dir.path());
        assert!(init(&config, dir.path()).is_err());
    }
}
