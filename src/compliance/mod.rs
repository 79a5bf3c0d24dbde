//! `wh test-worker`: runs the compliance cases against one worker and reports verdicts.
//!
//! `cases` says what each case sends and how it judges; this module selects cases, runs
//! their tasks through the runner (in parallel, reporting in a stable order) and hands typed
//! results to the reporters in `report`.

pub mod cases;
pub mod report;
pub mod tasks;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::protocol::{ExitClass, classify};
use crate::runner::{self, Limits, RunOutcome, SpawnError, Stopped, WorkerCommand};
pub use cases::{CASES, Case, Expect, Finding, Profile};
use cases::{CaseInputs, Probe};
pub use tasks::TaskTemplate;

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
    pub cases: Vec<Selected>,
    pub jobs: usize,
}

/// A case in the run, or skipped by `--skip`.
#[derive(Clone, Copy)]
pub struct Selected {
    pub case: &'static Case,
    pub skipped: bool,
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

/// One task a case sent and what came back.
#[derive(Debug, Clone)]
pub struct ProbeRun {
    pub input: Vec<u8>,
    pub expect: Expect,
    pub outcome: RunOutcome,
    pub class: ExitClass,
    pub reason: Option<String>,
}

/// A finding tied to the run that produced it.
#[derive(Debug, Clone, Serialize)]
pub struct RunFinding {
    /// Index into `CaseResult::runs`.
    pub run: usize,
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

/// Picks the cases of a profile, then applies `--case` and `--skip` (exact ids or a prefix
/// ending in `*`). Unknown ids are an error naming the closest real one.
pub fn select(profile: Profile, only: &[String], skip: &[String]) -> Result<Vec<Selected>, String> {
    for pattern in only.iter().chain(skip) {
        if !CASES.iter().any(|c| matches(pattern, c.id)) {
            let hint = closest(pattern)
                .map(|c| format!(" (did you mean `{c}`?)"))
                .unwrap_or_default();
            return Err(format!(
                "unknown case `{pattern}`{hint}; `wh test-worker --list` shows them"
            ));
        }
    }
    Ok(CASES
        .iter()
        .filter(|c| c.profile <= profile || only.iter().any(|p| matches(p, c.id)))
        .filter(|c| only.is_empty() || only.iter().any(|p| matches(p, c.id)))
        .map(|case| Selected {
            case,
            skipped: skip.iter().any(|p| matches(p, case.id)),
        })
        .collect())
}

fn matches(pattern: &str, id: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => id.starts_with(prefix),
        None => pattern == id,
    }
}

fn closest(pattern: &str) -> Option<&'static str> {
    CASES
        .iter()
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
    let slots = Arc::new(Semaphore::new(suite.jobs.max(1)));
    let inputs = CaseInputs {
        template: &suite.template,
        user_params: suite.user_params,
    };
    let futures = suite.cases.iter().map(|sel| {
        let probes = if sel.skipped {
            Vec::new()
        } else {
            (sel.case.probes)(&inputs)
        };
        let slots = slots.clone();
        let on_done = &on_done;
        async move {
            let result = if sel.skipped {
                skipped(sel.case)
            } else {
                let _slot = slots.acquire().await.expect("semaphore stays open");
                run_case(sel.case, probes, suite, cancel).await?
            };
            on_done(&result);
            Ok::<_, SpawnError>(result)
        }
    });
    // join_all keeps the catalogue order whatever order the cases finish in.
    let results = futures::future::join_all(futures)
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SuiteResult {
        results,
        duration: started.elapsed(),
    })
}

fn skipped(case: &'static Case) -> CaseResult {
    CaseResult {
        case,
        status: Status::Skipped,
        runs: Vec::new(),
        findings: Vec::new(),
        duration: Duration::ZERO,
    }
}

async fn run_case(
    case: &'static Case,
    probes: Vec<Probe>,
    suite: &Suite,
    cancel: &CancellationToken,
) -> Result<CaseResult, SpawnError> {
    let started = std::time::Instant::now();
    let mut runs = Vec::new();
    let mut findings = Vec::new();
    let mut status = Status::Passed;
    for probe in probes {
        let outcome = runner::run(&suite.command, &probe.input, &suite.limits, cancel).await?;
        let judged = classify(&outcome, suite.limits.timeout.as_secs_f64());
        let index = runs.len();
        match outcome.stopped {
            Some(Stopped::Cancelled) => status = Status::Interrupted,
            Some(Stopped::TimedOut) => {
                status = Status::TimedOut;
                findings.push(RunFinding {
                    run: index,
                    finding: Finding {
                        expected: format!(
                            "an answer within the {}s time limit",
                            suite.limits.timeout.as_secs_f64()
                        ),
                        actual: judged.reason.clone().unwrap_or_default(),
                    },
                });
            }
            _ => {
                let found = (case.judge)(&probe, &outcome);
                if !found.is_empty() {
                    status = Status::Failed;
                }
                findings.extend(
                    found
                        .into_iter()
                        .map(|finding| RunFinding { run: index, finding }),
                );
            }
        }
        runs.push(ProbeRun {
            input: probe.input,
            expect: probe.expect,
            outcome,
            class: judged.class,
            reason: judged.reason,
        });
        if status != Status::Passed {
            break;
        }
    }
    Ok(CaseResult {
        case,
        status,
        runs,
        findings,
        duration: started.elapsed(),
    })
}
