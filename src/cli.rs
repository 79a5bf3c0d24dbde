//! The command line. Doc comments here are the `--help` text.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::compliance::report::Format;
use crate::compliance::{Mode, Profile};

/// wh: run subprocess workers safely, and check that they speak the worker protocol.
///
/// A worker reads one JSON task on stdin, writes one JSON result on stdout, logs to stderr,
/// and says with its exit code whether a failure is worth retrying. See docs/protocol.md.
#[derive(Debug, Parser)]
#[command(name = "wh", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a worker against the protocol: the compliance gate for authors and CI.
    ///
    /// Runs each compliance case (a task sent to a fresh worker process, or with --mode
    /// persistent one line to a long-lived one) and reports which rule passed or failed.
    /// Exit codes: 0 every case passed, 1 a case failed or timed out, 2 usage error or the
    /// worker cannot be started, 130 interrupted.
    ///
    /// Examples:
    ///   wh test-worker example-workers/python/example_worker.py
    ///   wh test-worker --profile basic my_worker.py
    ///   wh test-worker --task-type Acme.Resize --params '{"width": 10}' worker.py
    ///   wh test-worker --format junit --output report.xml -- node worker.js
    ///   wh test-worker --mode persistent worker.py
    #[command(name = "test-worker", verbatim_doc_comment)]
    TestWorker(TestWorkerArgs),

    /// Send one task to a worker and show what comes back.
    ///
    /// The result goes to stdout (pretty on a terminal), the worker's stderr to stderr as it
    /// arrives, then a line with the outcome class, exit and duration. The exit code mirrors
    /// the worker's class: 0 success, 1 retriable failure, 2 not retriable, 3 timeout,
    /// 4 protocol violation, 5 crashed, 130 interrupted; 64 when wh itself cannot run the task.
    ///
    /// Examples:
    ///   wh send --type PrismQ.Example.ProcessData --params '{"input_data": "hi"}' worker.py
    ///   wh send --task task.json worker.py
    ///   echo '{"id": "1", "type": "T", "params": {}}' | wh send --task - -- ./worker
    #[command(verbatim_doc_comment)]
    Send(SendArgs),

    /// Check coordinator configs against their JSON Schema and against common sense.
    ///
    /// Every finding has a rule id, a severity and a place (file:line:col) with the source line
    /// and a hint. Exit codes: 0 no errors (warnings allowed), 1 errors (or warnings with
    /// --deny-warnings), 2 usage error or a file that cannot be read.
    ///
    /// Examples:
    ///   wh lint workerhost.yaml
    ///   wh lint --format github configs/*.yaml
    ///   wh lint --print-schema > config.schema.json
    #[command(verbatim_doc_comment)]
    Lint(LintArgs),

    /// Start a new worker (or a host config) from a template that passes the gate as is.
    ///
    /// Writes a complete project into a new folder (NAME, or --dir), then prints the exact
    /// `wh test-worker` command and the host-config entry for it. Refuses a non-empty folder
    /// unless --force; a failure leaves nothing half-written. Exit codes: 0 written, 2 bad
    /// input (name, folder, template) or a failed --venv.
    ///
    /// Examples:
    ///   wh scaffold python image-resizer --task-type Acme.Image.Resize
    ///   wh scaffold python image-resizer --venv
    ///   wh scaffold rust fast-hasher --dir workers/hasher
    ///   wh scaffold config
    ///   wh scaffold --list
    #[command(verbatim_doc_comment)]
    Scaffold(ScaffoldArgs),

    /// Run the coordinator: claim tasks, run each in its worker, record the outcome.
    ///
    /// Tasks come from the config's task source (the embedded local queue by default). SIGTERM
    /// or Ctrl+C stops claiming and lets running tasks finish within --grace, then releases
    /// the rest back to the queue (a second signal stops at once, still releasing); SIGHUP
    /// reloads the config. A worker with `mode: persistent` is served by warm processes
    /// (advanced.worker_pool) instead of one process per task. Exit codes: 0 clean stop or
    /// drain, 2 bad config or queue.
    ///
    /// Examples:
    ///   wh host --config workerhost.yaml
    ///   wh host --config example-workers/workerhost.yaml --enqueue example-workers/sample-tasks.ndjson --drain
    ///   wh host --config workerhost.yaml --dry-run
    #[command(verbatim_doc_comment)]
    Host(HostArgs),

    /// Add tasks to the config's task source: one from the arguments, or many as NDJSON.
    ///
    /// Examples:
    ///   wh enqueue PrismQ.Example.ProcessData --params '{"input_data": "hi"}'
    ///   wh enqueue --file tasks.ndjson      (one {"type", "params", "priority", "dedupe_key"} per line)
    ///   cat tasks.ndjson | wh enqueue --file -
    #[command(verbatim_doc_comment)]
    Enqueue(EnqueueArgs),

    /// List the task source's tasks, show one, or requeue a failed or dead one (local queue,
    /// Redis and the TaskManager; RabbitMQ cannot list).
    ///
    /// Examples:
    ///   wh tasks --status failed
    ///   wh tasks show 3f2c...
    ///   wh tasks retry 3f2c...
    #[command(verbatim_doc_comment)]
    Tasks(TasksArgs),
}

/// Which config (and so which queue) a command uses.
#[derive(Debug, Args)]
pub struct ConfigArg {
    /// The host config [default: workerhost.yaml in this folder].
    #[arg(long, short = 'c', value_name = "FILE", default_value = "workerhost.yaml")]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct HostArgs {
    #[command(flatten)]
    pub config: ConfigArg,

    /// Tasks run at once [default: number of CPUs].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: Option<u32>,

    /// Exit when no task of this host's types is waiting or running (and print the summary).
    #[arg(long)]
    pub drain: bool,

    /// Exit after claiming this many tasks.
    #[arg(long, value_name = "N")]
    pub max_tasks: Option<u64>,

    /// Print the registry and each worker's exact launch command, then exit.
    #[arg(long)]
    pub dry_run: bool,

    /// Add the tasks of this NDJSON file to the queue before starting (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    pub enqueue: Option<PathBuf>,

    /// Seconds running tasks get to finish after SIGTERM/Ctrl+C before they are stopped and
    /// released.
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = parse_seconds)]
    pub grace: Duration,

    /// Delay before the first retry, in seconds; later retries multiply it by
    /// task_manager.retry_backoff.
    #[arg(long, value_name = "SECONDS", default_value = "1", value_parser = parse_seconds)]
    pub retry_delay: Duration,

    /// The name this host claims tasks under [default: hostname:pid].
    #[arg(long, value_name = "ID")]
    pub host_id: Option<String>,

    /// Address the metrics and health endpoints listen on.
    #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
    pub bind: std::net::IpAddr,

    #[command(flatten)]
    pub limits: LimitArgs,
}

#[derive(Debug, Args)]
pub struct EnqueueArgs {
    #[command(flatten)]
    pub config: ConfigArg,

    /// Task type of the one task to add.
    #[arg(
        value_name = "TYPE",
        required_unless_present = "file",
        conflicts_with = "file"
    )]
    pub task_type: Option<String>,

    /// Its params: a JSON object, or @FILE [default: {}].
    #[arg(long, value_name = "JSON|@FILE", requires = "task_type")]
    pub params: Option<String>,

    /// Its priority: higher runs first.
    #[arg(long, value_name = "N", default_value = "0", allow_negative_numbers = true)]
    pub priority: i64,

    /// Add it only if no task with this key exists (whatever its status).
    #[arg(long, value_name = "KEY")]
    pub dedupe_key: Option<String>,

    /// Add every task of this NDJSON file instead (`-` for stdin), in one transaction.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct TasksArgs {
    #[command(subcommand)]
    pub action: Option<TasksAction>,

    /// The host config [default: workerhost.yaml in this folder].
    #[arg(
        long,
        short = 'c',
        value_name = "FILE",
        default_value = "workerhost.yaml",
        global = true
    )]
    pub config: PathBuf,

    /// Only tasks in this state.
    #[arg(long, value_enum)]
    pub status: Option<crate::host::source::Status>,

    /// Only tasks of this type.
    #[arg(long = "type", value_name = "TYPE")]
    pub task_type: Option<String>,

    /// At most this many, newest first.
    #[arg(long, value_name = "N", default_value = "50")]
    pub limit: usize,

    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum TasksAction {
    /// One task with its params, result, error, attempts and stderr tail.
    Show { id: String },
    /// Put a failed or dead task back to pending, attempts reset.
    Retry { id: String },
}

#[derive(Debug, Args)]
pub struct ScaffoldArgs {
    /// Template to start from.
    #[arg(value_enum, required_unless_present = "list")]
    pub template: Option<crate::scaffold::Template>,

    /// Worker name: lowercase letters, digits and dashes (image-resizer). For `config`, the
    /// file name [default: workerhost.yaml].
    #[arg(value_name = "NAME")]
    pub name: Option<String>,

    /// List the templates and exit.
    #[arg(long)]
    pub list: bool,

    /// Folder to write [default: ./NAME; for config: this folder].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// A task type the worker handles (repeatable) [default: derived from NAME, e.g.
    /// ImageResizer.Process].
    #[arg(long = "task-type", value_name = "TYPE")]
    pub task_types: Vec<String>,

    /// One line on what the worker does.
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,

    /// python: create .venv in the project and install the worker (and pytest) into it.
    #[arg(long)]
    pub venv: bool,

    /// Write into a non-empty folder, replacing files of the same name.
    #[arg(long)]
    pub force: bool,

    /// Interpreter for --venv and .python-version [default: $WH_PYTHON, else python3].
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LintArgs {
    /// Config files (.yaml, .yml or .json) [default: workerhost.yaml in this folder].
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub format: crate::lint::render::LintFormat,

    /// Fail (exit 1) on warnings too.
    #[arg(long)]
    pub deny_warnings: bool,

    /// Print the config's JSON Schema and exit.
    #[arg(long, conflicts_with_all = ["files", "list_rules"])]
    pub print_schema: bool,

    /// List the rules (id, severity, what each finds) and exit.
    #[arg(long)]
    pub list_rules: bool,
}

/// How the worker is named: a file, or a command after `--`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The worker: a `.py` file (run with the Python below) or an executable file.
    #[arg(value_name = "WORKER")]
    pub worker: Option<PathBuf>,

    /// Or the command that runs the worker, after `--` (e.g. `-- node worker.js`).
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,

    /// Interpreter for `.py` workers [default: $WH_PYTHON, else python3].
    #[arg(long, value_name = "PATH", conflicts_with = "config")]
    pub python: Option<PathBuf>,

    /// Start the worker as `wh host` would, from this config file (with --worker).
    #[arg(long, value_name = "FILE", requires = "worker_name", conflicts_with_all = ["worker", "command"])]
    pub config: Option<PathBuf>,

    /// The worker's name in --config.
    #[arg(long = "worker", value_name = "NAME", requires = "config")]
    pub worker_name: Option<String>,
}

impl WorkerArgs {
    /// How the user named the worker, shell-quoted, for commands we print.
    pub fn as_typed(&self) -> String {
        use crate::runner::shell_quote;
        let mut parts = Vec::new();
        if let (Some(config), Some(name)) = (&self.config, &self.worker_name) {
            parts.push(format!(
                "--config {} --worker {}",
                shell_quote(&config.to_string_lossy()),
                shell_quote(name)
            ));
        }
        if let Some(python) = &self.python {
            parts.push(format!("--python {}", shell_quote(&python.to_string_lossy())));
        }
        if let Some(worker) = &self.worker {
            parts.push(shell_quote(&worker.to_string_lossy()));
        }
        if !self.command.is_empty() {
            parts.push("--".into());
            parts.extend(self.command.iter().map(|a| shell_quote(&a.to_string_lossy())));
        }
        parts.join(" ")
    }
}

/// Output and time limits of one worker run.
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Fail the run when stdout grows past this size (e.g. 16MiB, 512KiB, 1000000).
    #[arg(long, value_name = "SIZE", default_value = "16MiB", value_parser = parse_size)]
    pub max_stdout: usize,

    /// Keep this much of the end of the worker's stderr.
    #[arg(long, value_name = "SIZE", default_value = "1MiB", value_parser = parse_size)]
    pub stderr_tail: usize,

    /// Seconds between SIGTERM and SIGKILL when wh stops a worker's process group.
    #[arg(long, value_name = "SECONDS", default_value = "2", value_parser = parse_seconds)]
    pub kill_grace: Duration,
}

#[derive(Debug, Args)]
pub struct TestWorkerArgs {
    #[command(flatten)]
    pub worker: WorkerArgs,

    /// Which cases: `basic` is the design's four reference cases, `strict` adds one case per
    /// stricter protocol rule.
    #[arg(long, value_enum, default_value = "strict")]
    pub profile: Profile,

    /// How the worker serves the cases' tasks. `persistent` starts with its handshake, adds
    /// the persistent.* cases, runs the cases one after another (no --jobs) and gives the next
    /// case a fresh process when one breaks [default: the --config worker's mode, else
    /// oneshot].
    #[arg(long, value_enum, value_name = "MODE")]
    pub mode: Option<Mode>,

    /// Task type used by the success cases (real workers handle their own types)
    /// [default: the --config worker's first task type, else PrismQ.Example.ProcessData].
    #[arg(long, value_name = "TYPE")]
    pub task_type: Option<String>,

    /// Params of the success cases: a JSON object, or @FILE to read one
    /// [default: {"input_data": "hello world"}].
    #[arg(long, value_name = "JSON|@FILE")]
    pub params: Option<String>,

    /// Time limit for each task a case sends, in seconds; past it the case is "timed out".
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_seconds)]
    pub timeout: Duration,

    /// Print the cases of the profile in the mode (id, name, rule) and exit.
    #[arg(long)]
    pub list: bool,

    /// Run only this case (repeatable; `basic.*` selects by prefix).
    #[arg(long = "case", value_name = "ID")]
    pub cases: Vec<String>,

    /// Do not run this case; it is reported as skipped (repeatable; prefix with `*`).
    #[arg(long = "skip", value_name = "ID")]
    pub skips: Vec<String>,

    /// Cases to run at once, one-shot [default: number of CPUs]. Output keeps the catalogue
    /// order.
    #[arg(short = 'j', long = "jobs", value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: Option<u16>,

    /// Report format.
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,

    /// Write the report to FILE instead of stdout (a summary line still goes to stdout).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,

    #[command(flatten)]
    pub limits: LimitArgs,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    #[command(flatten)]
    pub worker: WorkerArgs,

    /// Task type of the task to send [default with --config: the worker's first task type].
    #[arg(long = "type", value_name = "TYPE")]
    pub task_type: Option<String>,

    /// Params of the task: a JSON object, or @FILE to read one [default: {}].
    #[arg(long, value_name = "JSON|@FILE")]
    pub params: Option<String>,

    /// Task id [default: a generated `send-...` id].
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,

    /// Send this whole task instead: a file, or `-` for stdin. Sent as is, even when it is not
    /// a valid task (wh warns), so broken input can be tried on a worker.
    #[arg(long, value_name = "FILE|-", conflicts_with_all = ["task_type", "params", "id"])]
    pub task: Option<PathBuf>,

    /// Time limit in seconds; past it wh stops the worker's process group.
    #[arg(long, value_name = "SECONDS", default_value = "300", value_parser = parse_seconds)]
    pub timeout: Duration,

    /// Print stdout exactly as the worker wrote it (no pretty-printing).
    #[arg(long)]
    pub raw: bool,

    #[command(flatten)]
    pub limits: LimitArgs,
}

/// "16MiB", "512KiB", "2MB", "1000000" → bytes.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size (e.g. 16MiB, 512KiB, 1000000)"))?;
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "unknown size unit `{other}` (use B, KiB, MiB, GiB, KB, MB, GB)"
            ));
        }
    };
    let bytes = number * scale;
    if !(1.0..=(usize::MAX as f64)).contains(&bytes) {
        return Err(format!("`{text}` must be at least 1 byte"));
    }
    Ok(bytes as usize)
}

/// "10", "0.5" → a positive duration.
pub fn parse_seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .trim()
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if !secs.is_finite() || secs <= 0.0 || secs > 7.0 * 24.0 * 3600.0 {
        return Err(format!(
            "`{text}` must be more than 0 and at most a week of seconds"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn sizes_and_seconds() {
        assert_eq!(parse_size("16MiB"), Ok(16 * 1024 * 1024));
        assert_eq!(parse_size("2KB"), Ok(2000));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("0").is_err());
        assert_eq!(parse_seconds("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_seconds("0").is_err());
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("NaN").is_err());
    }
}
