//! `wh test-worker`: runs the compliance cases against one worker and reports verdicts.
//!
//! `cases` says what each case sends and how it judges; this module selects cases, runs
//! their tasks (one-shot: each in a fresh process, cases in parallel, reporting in a stable
//! order; persistent: through one long-lived process, see `persistent`) and hands typed
//! results to the reporters in `report`.

pub mod cases;
mod persistent;
pub mod report;
pub mod tasks;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::protocol::{ExitClass, classify};
use crate::runner::{self, Exit, Leftover, Limits, RunOutcome, SpawnError, Stopped, WorkerCommand};
pub use cases::{CASES, Case, Expect, Finding, InPersistent, Profile};
use cases::{CaseInputs, Probe};
pub use tasks::TaskTemplate;

/// How the worker serves the cases' tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A fresh process per task: the task on stdin, then EOF (the protocol's default).
    Oneshot,
    /// One process started with WH_WORKER_MODE=persistent serves every task, one line each
    /// way (docs/protocol.md section 8).
    Persistent,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Oneshot => "oneshot",
            Mode::Persistent => "persistent",
        }
    }
}

/// Everything a suite run needs.
pub struct Suite {
    pub command: WorkerCommand,
    /// How the user named the worker, for reproduce commands (`worker.py` or `-- node w.js`).
    pub worker_arg: String,
    /// `--task-type`/`--params` as the user gave them (with a leading space), for reruns.
    pub task_args: String,
    pub template: TaskTemplate,
    pub user_params: bool,
    pub limits: Limits,
    pub mode: Mode,
    pub cases: Vec<Selected>,
    /// Cases run at once (one-shot mode; persistent mode runs them one after another).
    pub jobs: usize,
}

/// A case in the run, or skipped (by `--skip`, or because it does not apply in the mode).
#[derive(Clone, Copy)]
pub struct Selected {
    pub case: &'static Case,
    pub skipped: bool,
    /// Why the mode skips it; `None` for a case skipped by `--skip`.
    pub skip_reason: Option<&'static str>,
}

/// A case's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Passed,
    Failed,
    TimedOut,
    Skipped,
    Interrupted,
}

/// What came back for one task, in either mode: what the judges and the reports read.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The exit code that answers the task. Always there one-shot; never in persistent mode,
    /// where a task has no exit code (how the process ended, if it did, is in `process`).
    pub exit: Option<Exit>,
    /// Set when `wh` ended the run (or, persistent, stopped the process).
    pub stopped: Option<Stopped>,
    pub duration: Duration,
    /// One-shot: stdout, whole. Persistent: the result line, without its `\n`.
    pub stdout: Captured,
    /// The end of what the worker wrote on stderr during the task.
    pub stderr: Captured,
    /// One-shot: processes of the worker's group still running after it exited (killed).
    pub leftovers: Vec<Leftover>,
    /// Persistent mode: the process the task went to.
    pub process: Option<Served>,
}

/// What a worker wrote on one stream during a task.
#[derive(Debug, Clone, Default)]
pub struct Captured {
    /// What was kept of it.
    pub bytes: Vec<u8>,
    /// How many bytes it wrote in all.
    pub len: u64,
    /// All of it was valid UTF-8.
    pub utf8: bool,
}

impl Captured {
    /// A stream kept whole.
    pub fn whole(bytes: Vec<u8>) -> Self {
        Captured {
            len: bytes.len() as u64,
            utf8: std::str::from_utf8(&bytes).is_ok(),
            bytes,
        }
    }
}

/// The persistent process a task went to, and what became of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Served {
    pub pid: u32,
    /// Tasks it had answered before this one.
    pub served_before: u64,
    /// It wrote a line for the task.
    pub answered: bool,
    /// It can serve the next task. When false it ended or `wh` stopped it, and the next case
    /// gets a fresh process.
    pub reusable: bool,
    /// How it ended, when it did during the task.
    pub exit: Option<Exit>,
}

impl From<RunOutcome> for Observed {
    fn from(run: RunOutcome) -> Self {
        let captured = |bytes, len, utf8| Captured { bytes, len, utf8 };
        Observed {
            exit: Some(run.exit),
            stopped: run.stopped,
            duration: run.duration,
            stdout: captured(run.stdout, run.stdout_len, run.stdout_utf8),
            stderr: captured(run.stderr, run.stderr_len, run.stderr_utf8),
            leftovers: run.leftovers,
            process: None,
        }
    }
}

/// One task a case sent and what came back.
#[derive(Debug, Clone)]
pub struct ProbeRun {
    /// The bytes written to stdin.
    pub input: Vec<u8>,
    /// What stands in for the task when the case sent none (the handshake, closing stdin).
    pub note: Option<&'static str>,
    pub expect: Expect,
    pub outcome: Observed,
    pub class: ExitClass,
    pub reason: Option<String>,
}

/// A finding tied to the run that produced it.
#[derive(Debug, Clone, Serialize)]
pub struct RunFinding {
    /// Index into `CaseResult::runs`; `None` when no task could be sent (no process).
    pub run: Option<usize>,
    #[serde(flatten)]
    pub finding: Finding,
}

/// A case, run and judged.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub case: &'static Case,
    pub status: Status,
    pub runs: Vec<ProbeRun>,
    pub findings: Vec<RunFinding>,
    pub duration: Duration,
    /// Why the mode skipped it.
    pub skip_reason: Option<&'static str>,
}

/// The whole run.
pub struct SuiteResult {
    pub results: Vec<CaseResult>,
    pub duration: Duration,
}

impl SuiteResult {
    pub fn count(&self, status: Status) -> usize {
        self.results.iter().filter(|r| r.status == status).count()
    }

    /// Cases that ran (not skipped).
    pub fn ran(&self) -> usize {
        self.results.len() - self.count(Status::Skipped)
    }

    pub fn all_passed(&self) -> bool {
        self.results
            .iter()
            .all(|r| matches!(r.status, Status::Passed | Status::Skipped))
    }
}

/// Picks the cases of a profile in a mode, then applies `--case` and `--skip` (exact ids or
/// a prefix ending in `*`). Unknown ids are an error naming the closest real one; a case of
/// the other mode is an error saying so.
pub fn select(
    profile: Profile,
    mode: Mode,
    only: &[String],
    skip: &[String],
) -> Result<Vec<Selected>, String> {
    for pattern in only.iter().chain(skip) {
        if catalogue(mode).any(|c| matches(pattern, c.id)) {
            continue;
        }
        if let Some(other) = CASES.iter().find(|c| matches(pattern, c.id)) {
            return Err(match (mode, other.persistent) {
                (Mode::Persistent, InPersistent::ReplacedBy(by)) => format!(
                    "case `{}` is one-shot only; with --mode persistent, `{by}` checks its rule",
                    other.id
                ),
                (Mode::Persistent, _) => format!("case `{}` is one-shot only", other.id),
                (Mode::Oneshot, _) => {
                    format!("case `{}` runs only with --mode persistent", other.id)
                }
            });
        }
        let hint = closest(pattern, mode)
            .map(|c| format!(" (did you mean `{c}`?)"))
            .unwrap_or_default();
        return Err(format!(
            "unknown case `{pattern}`{hint}; `wh test-worker --list` shows them"
        ));
    }
    Ok(catalogue(mode)
        .filter(|c| c.profile <= profile || only.iter().any(|p| matches(p, c.id)))
        .filter(|c| only.is_empty() || only.iter().any(|p| matches(p, c.id)))
        .map(|case| {
            let skip_reason = case.skipped_in(mode);
            Selected {
                case,
                skipped: skip_reason.is_some() || skip.iter().any(|p| matches(p, case.id)),
                skip_reason,
            }
        })
        .collect())
}

/// The cases of a mode, in the order they run and report.
pub fn catalogue(mode: Mode) -> impl Iterator<Item = &'static Case> {
    CASES.iter().filter(move |c| c.runs_in(mode))
}

fn matches(pattern: &str, id: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => id.starts_with(prefix),
        None => pattern == id,
    }
}

fn closest(pattern: &str, mode: Mode) -> Option<&'static str> {
    catalogue(mode)
        .map(|c| (strsim::levenshtein(pattern, c.id), c.id))
        .filter(|(d, _)| *d <= 4)
        .min()
        .map(|(_, id)| id)
}

/// Runs the suite. `on_done` is told each time a case finishes (for a progress bar).
pub async fn run(
    suite: &Suite,
    cancel: &CancellationToken,
    on_done: impl Fn(&CaseResult) + Send + Sync,
) -> Result<SuiteResult, SpawnError> {
    let started = std::time::Instant::now();
    let results = match suite.mode {
        Mode::Oneshot => run_oneshot(suite, cancel, &on_done).await?,
        Mode::Persistent => persistent::run(suite, cancel, &on_done).await?,
    };
    Ok(SuiteResult {
        results,
        duration: started.elapsed(),
    })
}

fn inputs(suite: &Suite) -> CaseInputs<'_> {
    CaseInputs {
        template: &suite.template,
        user_params: suite.user_params,
    }
}

async fn run_oneshot(
    suite: &Suite,
    cancel: &CancellationToken,
    on_done: &(impl Fn(&CaseResult) + Send + Sync),
) -> Result<Vec<CaseResult>, SpawnError> {
    let slots = Arc::new(Semaphore::new(suite.jobs.max(1)));
    let inputs = inputs(suite);
    let futures = suite.cases.iter().map(|sel| {
        let probes = if sel.skipped {
            Vec::new()
        } else {
            (sel.case.probes)(&inputs)
        };
        let slots = slots.clone();
        async move {
            let result = if sel.skipped {
                skipped(sel)
            } else {
                let _slot = slots.acquire().await.expect("semaphore stays open");
                let mut sender = OneShot { suite, cancel };
                run_case(sel.case, probes, &mut sender, suite.limits.timeout).await?
            };
            on_done(&result);
            Ok::<_, SpawnError>(result)
        }
    });
    // join_all keeps the catalogue order whatever order the cases finish in.
    futures::future::join_all(futures).await.into_iter().collect()
}

fn skipped(sel: &Selected) -> CaseResult {
    CaseResult {
        skip_reason: sel.skip_reason,
        ..CaseResult::new(sel.case, Status::Skipped)
    }
}

impl CaseResult {
    fn new(case: &'static Case, status: Status) -> Self {
        CaseResult {
            case,
            status,
            runs: Vec::new(),
            findings: Vec::new(),
            duration: Duration::ZERO,
            skip_reason: None,
        }
    }

    /// Fails the case with a finding that belongs to no task.
    fn fail_without_run(&mut self, expected: &str, actual: String) {
        self.status = Status::Failed;
        self.findings.push(RunFinding {
            run: None,
            finding: Finding {
                expected: expected.into(),
                actual,
            },
        });
    }
}

/// What sending one task came to.
enum Sent {
    Run(Box<ProbeRun>),
    /// There is no process to send it to (persistent mode), for this reason.
    NoProcess(String),
}

/// Where a case's tasks go: a fresh process each, or the persistent process.
trait Sender {
    async fn send(&mut self, probe: Probe) -> Result<Sent, SpawnError>;
}

/// One-shot mode: each task in a fresh process, stdin closed after it.
struct OneShot<'a> {
    suite: &'a Suite,
    cancel: &'a CancellationToken,
}

impl Sender for OneShot<'_> {
    async fn send(&mut self, probe: Probe) -> Result<Sent, SpawnError> {
        let limits = &self.suite.limits;
        let outcome = runner::run(&self.suite.command, &probe.input, limits, self.cancel).await?;
        let judged = classify(&outcome, limits.timeout.as_secs_f64());
        Ok(Sent::Run(Box::new(ProbeRun {
            input: probe.input,
            note: None,
            expect: probe.expect,
            outcome: outcome.into(),
            class: judged.class,
            reason: judged.reason,
        })))
    }
}

/// A case that sends more tasks than this keeps only the run of its last (or failing) one,
/// and its findings say which task it was.
const RUNS_KEPT: usize = 10;

/// Sends a case's tasks one after another and judges each answer; stops at the first that
/// fails the case.
async fn run_case(
    case: &'static Case,
    probes: Vec<Probe>,
    sender: &mut impl Sender,
    timeout: Duration,
) -> Result<CaseResult, SpawnError> {
    let started = std::time::Instant::now();
    let mut result = CaseResult::new(case, Status::Passed);
    let total = probes.len();
    for (n, probe) in probes.into_iter().enumerate() {
        let run = match sender.send(probe).await? {
            Sent::Run(run) => *run,
            Sent::NoProcess(reason) => {
                result.fail_without_run("a persistent process to send the task to", reason);
                break;
            }
        };
        let (status, found) = verdict(case, &run, timeout);
        if total > RUNS_KEPT {
            result.runs.clear();
        }
        let index = result.runs.len();
        result.findings.extend(found.into_iter().map(|mut finding| {
            if total > RUNS_KEPT {
                finding.actual = format!("task {} of {total}: {}", n + 1, finding.actual);
            }
            RunFinding {
                run: Some(index),
                finding,
            }
        }));
        result.runs.push(run);
        result.status = status;
        if status != Status::Passed {
            break;
        }
    }
    result.duration = started.elapsed();
    Ok(result)
}

/// One answer's verdict: the time limit and interruption alike for every case, then the
/// case's own judge.
fn verdict(case: &Case, run: &ProbeRun, timeout: Duration) -> (Status, Vec<Finding>) {
    match run.outcome.stopped {
        Some(Stopped::Cancelled) => (Status::Interrupted, Vec::new()),
        Some(Stopped::TimedOut) => (
            Status::TimedOut,
            vec![Finding {
                expected: format!("an answer within the {}s time limit", timeout.as_secs_f64()),
                actual: run.reason.clone().unwrap_or_default(),
            }],
        ),
        _ => {
            let found = cases::judge(case, run);
            let status = if found.is_empty() {
                Status::Passed
            } else {
                Status::Failed
            };
            (status, found)
        }
    }
}
