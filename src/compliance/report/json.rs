//! The JSON report, described by `schemas/report.schema.json`.

use serde::Serialize;

use super::{EXCERPT, excerpt_head, excerpt_tail, reproduce, task_shown};
use crate::compliance::{Expect, Mode, Profile, RunFinding, Served, Status, Suite, SuiteResult};
use crate::protocol::{ExitClass, PROTOCOL_VERSION};
use crate::runner::{Exit, Leftover, Stopped};

#[derive(Serialize)]
struct Report<'a> {
    wh_version: &'static str,
    protocol_version: &'static str,
    worker: Worker,
    mode: Mode,
    profile: Profile,
    timeout_seconds: f64,
    summary: Summary,
    cases: Vec<Case<'a>>,
}

#[derive(Serialize)]
struct Worker {
    command: String,
}

#[derive(Serialize)]
struct Summary {
    total: usize,
    passed: usize,
    failed: usize,
    timed_out: usize,
    skipped: usize,
    interrupted: usize,
    compliant: bool,
    duration_ms: u128,
}

#[derive(Serialize)]
struct Case<'a> {
    id: &'static str,
    name: &'static str,
    profile: Profile,
    rule: &'static str,
    doc: &'static str,
    status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    skip_reason: Option<&'static str>,
    duration_ms: u128,
    findings: &'a [RunFinding],
    runs: Vec<Run<'a>>,
}

#[derive(Serialize)]
struct Run<'a> {
    task: String,
    expect: Expect,
    exit: Option<Exit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    process: Option<Served>,
    class: ExitClass,
    reason: Option<&'a str>,
    stopped: Option<Stopped>,
    duration_ms: u128,
    stdout_bytes: u64,
    stdout_excerpt: String,
    stderr_bytes: u64,
    stderr_excerpt: String,
    leftovers: &'a [Leftover],
    reproduce: String,
}

/// The report as a JSON document.
pub fn render(suite: &Suite, result: &SuiteResult, profile: Profile) -> String {
    let report = Report {
        wh_version: env!("CARGO_PKG_VERSION"),
        protocol_version: PROTOCOL_VERSION,
        worker: Worker {
            command: suite.command.display(),
        },
        mode: suite.mode,
        profile,
        timeout_seconds: suite.limits.timeout.as_secs_f64(),
        summary: Summary {
            total: result.results.len(),
            passed: result.count(Status::Passed),
            failed: result.count(Status::Failed),
            timed_out: result.count(Status::TimedOut),
            skipped: result.count(Status::Skipped),
            interrupted: result.count(Status::Interrupted),
            compliant: result.all_passed() && result.count(Status::Interrupted) == 0,
            duration_ms: result.duration.as_millis(),
        },
        cases: result
            .results
            .iter()
            .map(|r| Case {
                id: r.case.id,
                name: r.case.name,
                profile: r.case.profile,
                rule: r.case.rule_in(suite.mode),
                doc: r.case.doc,
                status: r.status,
                skip_reason: r.skip_reason,
                duration_ms: r.duration.as_millis(),
                findings: &r.findings,
                runs: r
                    .runs
                    .iter()
                    .map(|run| Run {
                        task: task_shown(run),
                        expect: run.expect,
                        exit: run.outcome.exit,
                        process: run.outcome.process,
                        class: run.class,
                        reason: run.reason.as_deref(),
                        stopped: run.outcome.stopped,
                        duration_ms: run.outcome.duration.as_millis(),
                        stdout_bytes: run.outcome.stdout.len,
                        stdout_excerpt: excerpt_head(&run.outcome.stdout, EXCERPT),
                        stderr_bytes: run.outcome.stderr.len,
                        stderr_excerpt: excerpt_tail(&run.outcome.stderr, EXCERPT),
                        leftovers: &run.outcome.leftovers,
                        reproduce: reproduce(suite, r.case.id, run),
                    })
                    .collect(),
            })
            .collect(),
    };
    let mut text = serde_json::to_string_pretty(&report).expect("the report always serializes");
    text.push('\n');
    text
}
