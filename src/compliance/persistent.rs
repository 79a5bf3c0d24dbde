//! `wh test-worker --mode persistent`: the cases run one after another through one process
//! started with `WH_WORKER_MODE=persistent` (docs/protocol.md section 8).
//!
//! The process starts, and its handshake is judged, before the first case; every task of
//! every case then goes to it as one line, judged by the same code as one-shot. A case that
//! breaks the process (it ended, wrote a line that is not a result, ran past the time limit)
//! fails with the reason, and the next case gets a fresh process, so that one bug does not
//! hide the others. A start whose handshake fails is not tried again: every case after it
//! fails with "no process".

use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::cases::{Case, Expect, Finding, Kind, Probe};
use super::tasks::as_line;
use super::{
    Captured, CaseResult, Observed, ProbeRun, RunFinding, Sender, Sent, Served, Status, Suite, inputs,
    run_case, skipped,
};
use crate::protocol::persistent::{MODE_ENV, MODE_VALUE, check_handshake, classify_line};
use crate::protocol::{ExitClass, human_bytes};
use crate::runner::persistent::{Process, StartError, TaskRun};
use crate::runner::{Exit, SpawnError, WorkerCommand};

/// Runs the suite's cases in catalogue order through the persistent process.
pub(super) async fn run(
    suite: &Suite,
    cancel: &CancellationToken,
    on_done: &(impl Fn(&CaseResult) + Send + Sync),
) -> Result<Vec<CaseResult>, SpawnError> {
    let inputs = inputs(suite);
    let mut session = Session::new(suite, cancel);
    let mut results = Vec::with_capacity(suite.cases.len());
    for sel in &suite.cases {
        let result = if sel.skipped {
            skipped(sel)
        } else if cancel.is_cancelled() {
            CaseResult::new(sel.case, Status::Interrupted)
        } else {
            session.case(sel.case, (sel.case.probes)(&inputs)).await?
        };
        on_done(&result);
        results.push(result);
    }
    session.close().await;
    Ok(results)
}

/// The process the cases share, and what the current case asked to measure.
struct Session<'a> {
    suite: &'a Suite,
    cancel: &'a CancellationToken,
    /// The worker's command with the mode's signal in its environment.
    command: WorkerCommand,
    process: Option<Process>,
    /// Set once a start failed its handshake: why there is no process.
    no_process: Option<String>,
    /// Tasks the current case has had answered.
    answered: usize,
    /// After which of them to read the process group's resident memory, and what was read.
    measure_after: Vec<usize>,
    measured: Vec<u64>,
}

impl<'a> Session<'a> {
    fn new(suite: &'a Suite, cancel: &'a CancellationToken) -> Self {
        let mut command = suite.command.clone();
        command.env.retain(|(k, _)| k != MODE_ENV);
        command.env.push((MODE_ENV.into(), MODE_VALUE.into()));
        Session {
            suite,
            cancel,
            command,
            process: None,
            no_process: None,
            answered: 0,
            measure_after: Vec::new(),
            measured: Vec::new(),
        }
    }

    async fn case(&mut self, case: &'static Case, probes: Vec<Probe>) -> Result<CaseResult, SpawnError> {
        self.answered = 0;
        self.measure_after.clear();
        self.measured.clear();
        let timeout = self.suite.limits.timeout;
        match case.kind() {
            Kind::Handshake => self.handshake(case).await,
            Kind::Eof => self.eof(case).await,
            Kind::Tasks => run_case(case, probes, self, timeout).await,
            Kind::Memory { from, limit } => {
                let last = probes.len();
                self.measure_after = vec![from, last];
                let mut result = run_case(case, probes, self, timeout).await?;
                if result.status == Status::Passed
                    && let [before, after] = self.measured[..]
                    && after.saturating_sub(before) > limit
                {
                    result.status = Status::Failed;
                    result.findings.push(RunFinding {
                        run: result.runs.len().checked_sub(1),
                        finding: memory_finding(from, last, before, after, limit),
                    });
                }
                Ok(result)
            }
        }
    }

    /// Starts a process. A failed handshake is remembered for every later case and returned
    /// with the stderr the process wrote meanwhile.
    async fn start(&mut self) -> Result<Option<(String, Vec<u8>)>, SpawnError> {
        let limits = &self.suite.limits;
        match Process::start(&self.command, limits, limits.timeout, check_handshake).await {
            Ok(process) => {
                self.process = Some(process);
                Ok(None)
            }
            Err(StartError::Spawn(e)) => Err(e),
            Err(StartError::NoHandshake { reason, stderr }) => {
                self.no_process = Some(format!("none: the handshake failed: {reason}"));
                Ok(Some((reason, stderr)))
            }
        }
    }

    /// The process for the next task: the current one, or a fresh one when the last was
    /// lost. `Err` says why there is none.
    async fn ensure(&mut self) -> Result<Result<&mut Process, String>, SpawnError> {
        if self.process.is_none() && self.no_process.is_none() {
            self.start().await?;
        }
        Ok(match &mut self.process {
            Some(process) => Ok(process),
            None => Err(self.no_process.clone().unwrap_or_default()),
        })
    }

    async fn handshake(&mut self, case: &'static Case) -> Result<CaseResult, SpawnError> {
        let started = Instant::now();
        let failed = self.start().await?;
        let took = started.elapsed();
        let pid = self.process.as_ref().map(Process::pid);
        let (class, reason, stderr) = match failed {
            None => (ExitClass::Success, None, Vec::new()),
            Some((reason, stderr)) => (ExitClass::ProtocolViolation, Some(reason), stderr),
        };
        let outcome = quiet(
            took,
            stderr,
            pid.map(|pid| Served {
                pid,
                served_before: 0,
                answered: true,
                reusable: true,
                exit: None,
            }),
        );
        let run = ProbeRun {
            input: Vec::new(),
            note: Some("none yet: the handshake comes before any task"),
            expect: Expect::Success,
            outcome,
            class,
            reason,
        };
        Ok(judged_alone(case, run))
    }

    /// Closes the process's stdin and judges how it ends.
    async fn eof(&mut self, case: &'static Case) -> Result<CaseResult, SpawnError> {
        if let Err(why) = self.ensure().await? {
            let mut result = CaseResult::new(case, Status::Failed);
            result.fail_without_run("a persistent process to close", why);
            return Ok(result);
        }
        let process = self.process.take().expect("ensure() left a process");
        let (pid, served_before) = (process.pid(), process.served);
        let grace = self.suite.limits.kill_grace;
        let started = Instant::now();
        let exit = process.shutdown(grace).await;
        let took = started.elapsed();
        let (class, reason) = match exit {
            Some(Exit::Code(0)) if took < grace => (ExitClass::Success, None),
            Some(exit) if took < grace => (
                ExitClass::ProtocolViolation,
                Some(format!(
                    "it ended with {exit} after stdin closed; at EOF a persistent worker exits 0"
                )),
            ),
            exit => (
                ExitClass::Timeout,
                Some(format!(
                    "it, or a process it started, was still running {}s after stdin closed; wh stopped its process group ({})",
                    grace.as_secs_f64(),
                    exit.map_or_else(|| "how it ended is unknown".to_string(), |e| e.to_string())
                )),
            ),
        };
        let run = ProbeRun {
            input: Vec::new(),
            note: Some("none: wh closed stdin (EOF)"),
            expect: Expect::Success,
            outcome: quiet(
                took,
                Vec::new(),
                Some(Served {
                    pid,
                    served_before,
                    answered: false,
                    reusable: false,
                    exit,
                }),
            ),
            class,
            reason,
        };
        Ok(judged_alone(case, run))
    }

    /// Ends the process, if one is left, as the host would: stdin closed, grace, then stopped.
    async fn close(&mut self) {
        if let Some(process) = self.process.take() {
            process.shutdown(self.suite.limits.kill_grace).await;
        }
    }
}

impl Sender for Session<'_> {
    async fn send(&mut self, probe: Probe) -> Result<Sent, SpawnError> {
        let (suite, cancel) = (self.suite, self.cancel);
        let measure = self.measure_after.contains(&(self.answered + 1));
        let process = match self.ensure().await? {
            Ok(process) => process,
            Err(why) => return Ok(Sent::NoProcess(why)),
        };
        let (pid, served_before) = (process.pid(), process.served);
        let line = as_line(&probe.input);
        let run = process.run_task(&line, &suite.limits, cancel, None).await;
        let (judged, reusable) = classify_line(&run, suite.limits.timeout.as_secs_f64());
        let rss = (reusable && measure).then(|| process.resident_bytes());
        if reusable {
            self.answered += 1;
            self.measured.extend(rss);
        } else {
            // The runner stopped it already, unless it wrote a line that is not a result.
            if process.is_alive() {
                process.kill(suite.limits.kill_grace).await;
            }
            self.process = None;
        }
        Ok(Sent::Run(Box::new(ProbeRun {
            input: line,
            note: None,
            expect: probe.expect,
            outcome: observed(run, pid, served_before, reusable),
            class: judged.class,
            reason: judged.reason,
        })))
    }
}

/// A persistent task's run, as the judges and reports read it: the line is its stdout, and
/// there is no exit code.
fn observed(run: TaskRun, pid: u32, served_before: u64, reusable: bool) -> Observed {
    let answered = run.line.is_some();
    Observed {
        exit: None,
        stopped: run.stopped,
        duration: run.duration,
        stdout: Captured::whole(run.line.unwrap_or_default()),
        stderr: Captured {
            bytes: run.stderr,
            len: run.stderr_len,
            utf8: run.stderr_utf8,
        },
        leftovers: Vec::new(),
        process: Some(Served {
            pid,
            served_before,
            answered,
            reusable,
            exit: run.exit,
        }),
    }
}

/// What a run that sent no task saw: its stderr, when there is one to show.
fn quiet(duration: std::time::Duration, stderr: Vec<u8>, process: Option<Served>) -> Observed {
    Observed {
        exit: None,
        stopped: None,
        duration,
        stdout: Captured::whole(Vec::new()),
        stderr: Captured::whole(stderr),
        leftovers: Vec::new(),
        process,
    }
}

/// A case of one run that its runner classified itself (the handshake, EOF).
fn judged_alone(case: &'static Case, run: ProbeRun) -> CaseResult {
    let found = (case.judge)(&run);
    let status = if found.is_empty() {
        Status::Passed
    } else {
        Status::Failed
    };
    CaseResult {
        duration: run.outcome.duration,
        findings: found
            .into_iter()
            .map(|finding| RunFinding {
                run: Some(0),
                finding,
            })
            .collect(),
        runs: vec![run],
        ..CaseResult::new(case, status)
    }
}

fn memory_finding(from: usize, last: usize, before: u64, after: u64, limit: u64) -> Finding {
    let growth = after - before;
    Finding {
        expected: format!(
            "at most {} more resident memory after task {last} than after task {from}",
            human_bytes(limit)
        ),
        actual: format!(
            "{} more: {} after task {from}, {} after task {last} (about {} per task)",
            human_bytes(growth),
            human_bytes(before),
            human_bytes(after),
            human_bytes(growth / (last - from) as u64)
        ),
    }
}
