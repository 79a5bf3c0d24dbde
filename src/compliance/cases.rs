//! The compliance cases: each has a stable id (its filter and JUnit name), the protocol rule
//! it enforces, the tasks it sends and how it judges what came back.
//!
//! The `basic` cases reproduce the design's reference harness exactly, including its Python
//! semantics (`json.loads`, truthiness, a crash on undecodable output). The `strict` cases add
//! one case per stricter rule of PROTOCOL.md. The `persistent.*` cases check persistent mode
//! (docs/protocol.md section 8); most one-shot cases run in that mode too, each task as one
//! line to the same process, judged by the same code with the class read from the result.

use serde::Serialize;
use serde_json::Value;

use super::tasks::{TaskTemplate, pretty, python_dumps};
use super::{Mode, ProbeRun};
use crate::protocol::pyjson::{self, PyValue};
use crate::protocol::{ExitClass, Schemas, parse_json_object};
use crate::runner::{Exit, signal_name};

/// Which cases a run holds: `basic` is the reference four, `strict` adds the stricter rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    Basic,
    Strict,
}

/// One task a case sends, and what it expects back.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Bytes written to stdin (one-shot; persistent mode sends them as one compact line).
    pub input: Vec<u8>,
    pub expect: Expect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    Success,
    Failure,
}

/// One way a run broke the case's rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub expected: String,
    pub actual: String,
}

fn finding(expected: impl Into<String>, actual: impl Into<String>) -> Finding {
    Finding {
        expected: expected.into(),
        actual: actual.into(),
    }
}

/// What the probes of a case are built from.
pub struct CaseInputs<'a> {
    pub template: &'a TaskTemplate,
    /// The user named their own params (`--params`).
    pub user_params: bool,
}

/// A compliance case.
pub struct Case {
    pub id: &'static str,
    pub name: &'static str,
    pub profile: Profile,
    /// The protocol rule it enforces, in one sentence.
    pub rule: &'static str,
    /// Where the rule is explained for worker authors.
    pub doc: &'static str,
    pub probes: fn(&CaseInputs) -> Vec<Probe>,
    /// Judges one task's run; the time limit is judged before, for every case alike.
    pub judge: fn(&ProbeRun) -> Vec<Finding>,
    /// What becomes of the case in persistent mode.
    pub persistent: InPersistent,
}

/// What a case does in persistent mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InPersistent {
    /// Each task goes as one line to the persistent process and is judged as one-shot; with
    /// no exit code, the class comes from the result.
    Same,
    /// The same, under this rule (the one-shot rule speaks of exit codes).
    Rule(&'static str),
    /// Reported as skipped, for this reason.
    Skipped(&'static str),
    /// Left out: the persistent case with this id checks its rule.
    ReplacedBy(&'static str),
    /// A persistent-mode case, left out one-shot.
    Only(Kind),
}

/// How a persistent-mode case runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Sends its tasks and judges each answer.
    Tasks,
    /// Starts the process and judges its handshake.
    Handshake,
    /// Sends its tasks, then compares the process group's resident memory after task `from`
    /// with that after the last task: it may be at most `limit` bytes more.
    Memory { from: usize, limit: u64 },
    /// Closes stdin and judges how the process ends.
    Eof,
}

/// Tasks `persistent.many-in-order` sends in a row.
pub const SEQUENCE_TASKS: usize = 50;
/// Tasks `persistent.memory` sends, and the task after which its first measure is taken.
pub const MEMORY_TASKS: usize = 1000;
pub const MEMORY_FROM: usize = 100;
/// How much the process group's resident memory may grow from task 100 to task 1,000.
pub const MEMORY_GROWTH_LIMIT: u64 = 16 * 1024 * 1024;

fn one(value: Value, expect: Expect) -> Probe {
    Probe {
        input: python_dumps(&value),
        expect,
    }
}

/// The invalid-JSON task: cut off inside its params.
fn invalid_json(i: &CaseInputs) -> Probe {
    let input = format!(
        r#"{{"id": "test-invalid-json", "type": "{}", "params": {{"#,
        i.template.task_type
    );
    Probe {
        input: input.into_bytes(),
        expect: Expect::Failure,
    }
}

/// `count` tasks in a row, each with its own id: the valid task, then the unknown-type one,
/// and so on.
fn alternating(i: &CaseInputs, count: usize, prefix: &str) -> Vec<Probe> {
    (0..count)
        .map(|n| {
            let (mut task, expect) = if n % 2 == 0 {
                (i.template.valid(), Expect::Success)
            } else {
                (i.template.unknown_type(), Expect::Failure)
            };
            task["id"] = format!("{prefix}-{:04}", n + 1).into();
            one(task, expect)
        })
        .collect()
}

/// Every case, in the order they run and report.
pub static CASES: &[Case] = &[
    Case {
        id: "persistent.handshake",
        name: "Persistent-mode handshake",
        profile: Profile::Basic,
        rule: "Started with WH_WORKER_MODE=persistent, the worker first writes one line, {\"ready\": true, \"mode\": \"persistent\"}, on stdout, before it reads any task.",
        doc: "docs/protocol.md#persistent-handshake",
        probes: |_| Vec::new(),
        judge: |run| {
            expect_class(
                run,
                "{\"ready\": true, \"mode\": \"persistent\"} as the first line on stdout",
            )
        },
        persistent: InPersistent::Only(Kind::Handshake),
    },
    Case {
        id: "basic.valid-task",
        name: "Valid Task Processing",
        profile: Profile::Basic,
        rule: "A valid task gets a success result and exit code 0.",
        doc: "docs/protocol.md#the-reference-cases",
        probes: |i| vec![one(i.template.valid(), Expect::Success)],
        judge: reference_judge,
        persistent: InPersistent::Rule("A valid task gets a success result."),
    },
    Case {
        id: "basic.missing-id",
        name: "Missing Task ID",
        profile: Profile::Basic,
        rule: "A task without an id gets a failure result and a non-zero exit code.",
        doc: "docs/protocol.md#the-reference-cases",
        probes: |i| vec![one(i.template.missing_id(i.user_params), Expect::Failure)],
        judge: reference_judge,
        persistent: InPersistent::Rule("A task without an id gets a failure result."),
    },
    Case {
        id: "basic.unknown-type",
        name: "Unknown Task Type",
        profile: Profile::Basic,
        rule: "A task of a type the worker does not handle gets a failure result and a non-zero exit code.",
        doc: "docs/protocol.md#the-reference-cases",
        probes: |i| vec![one(i.template.unknown_type(), Expect::Failure)],
        judge: reference_judge,
        persistent: InPersistent::Rule("A task of a type the worker does not handle gets a failure result."),
    },
    Case {
        id: "basic.empty-params",
        name: "Empty Params",
        profile: Profile::Basic,
        rule: "A task with empty params gets a success result (defaults apply) and exit code 0.",
        doc: "docs/protocol.md#the-reference-cases",
        probes: |i| vec![one(i.template.empty_params(), Expect::Success)],
        judge: reference_judge,
        persistent: InPersistent::Rule("A task with empty params gets a success result (defaults apply)."),
    },
    Case {
        id: "stdout.one-json-object",
        name: "stdout holds one JSON object and nothing else",
        profile: Profile::Strict,
        rule: "stdout holds exactly one JSON object (RFC 8259, valid UTF-8): no log line, no second document, no NaN.",
        doc: "docs/protocol.md#stdout-one-json-object",
        probes: |i| {
            vec![
                one(i.template.valid(), Expect::Success),
                one(i.template.unknown_type(), Expect::Failure),
            ]
        },
        judge: judge_one_object,
        persistent: InPersistent::Rule(
            "Each result line holds exactly one JSON object (RFC 8259, valid UTF-8): no log line, no second document, no NaN.",
        ),
    },
    Case {
        id: "result.schema",
        name: "Result matches result.schema.json",
        profile: Profile::Strict,
        rule: "`result` is an object, `logs` a list of {level, message}, `error.type` a non-empty string, `success` a boolean.",
        doc: "docs/protocol.md#result-schema",
        probes: |i| {
            vec![
                one(i.template.valid(), Expect::Success),
                one(i.template.missing_id(i.user_params), Expect::Failure),
                one(i.template.unknown_type(), Expect::Failure),
            ]
        },
        judge: judge_schema,
        persistent: InPersistent::Same,
    },
    Case {
        id: "exit.agrees-with-result",
        name: "Exit code agrees with the result",
        profile: Profile::Strict,
        rule: "Exit 0 goes with success; a failure exits 1 or 2; exit 2 means retry_possible is false, exit 1 means it is true or absent.",
        doc: "docs/protocol.md#exit-agrees-with-result",
        probes: |i| {
            vec![
                one(i.template.valid(), Expect::Success),
                one(i.template.missing_id(i.user_params), Expect::Failure),
                one(i.template.unknown_type(), Expect::Failure),
            ]
        },
        judge: judge_exit_agreement,
        persistent: InPersistent::Rule(
            "With no exit code, the class comes from the result: success is a success, a failure is not retriable with retry_possible false and retriable otherwise, and only a timeout says error.type TimeoutError.",
        ),
    },
    Case {
        id: "exit.validation-not-retriable",
        name: "Validation errors are not retriable",
        profile: Profile::Strict,
        rule: "A task without an id or of an unknown type is a validation error: exit 2, not retried.",
        doc: "docs/protocol.md#exit-validation-not-retriable",
        probes: |i| {
            vec![
                one(i.template.missing_id(i.user_params), Expect::Failure),
                one(i.template.unknown_type(), Expect::Failure),
            ]
        },
        judge: judge_exit_two,
        persistent: InPersistent::Rule(
            "A task without an id or of an unknown type is a validation error: retry_possible false, not retried.",
        ),
    },
    Case {
        id: "stdin.invalid-json",
        name: "Invalid JSON on stdin",
        profile: Profile::Strict,
        rule: "Invalid JSON on stdin gets a failure result with exit code 2, not a crash.",
        doc: "docs/protocol.md#stdin-invalid-json",
        probes: |i| vec![invalid_json(i)],
        judge: judge_exit_two,
        persistent: InPersistent::ReplacedBy("persistent.invalid-json"),
    },
    Case {
        id: "stdin.multi-line-task",
        name: "A pretty-printed task is read whole",
        profile: Profile::Strict,
        rule: "Workers read stdin to EOF, not one line: a task that spans several lines works.",
        doc: "docs/protocol.md#stdin-multi-line-task",
        probes: |i| {
            let mut task = i.template.valid();
            task["id"] = "test-multi-line".into();
            vec![Probe {
                input: pretty(&task),
                expect: Expect::Success,
            }]
        },
        judge: judge_strict_success,
        persistent: InPersistent::Skipped("one-shot only: in persistent mode every task is one line"),
    },
    Case {
        id: "process.no-leftovers",
        name: "No process left running",
        profile: Profile::Strict,
        rule: "When the worker exits, no process it started is still running.",
        doc: "docs/protocol.md#process-no-leftovers",
        probes: |i| vec![one(i.template.valid(), Expect::Success)],
        judge: judge_no_leftovers,
        persistent: InPersistent::ReplacedBy("persistent.eof-exits"),
    },
    Case {
        id: "unicode.round-trip",
        name: "Unicode in params survives",
        profile: Profile::Strict,
        rule: "Non-ASCII text in params is read and written as UTF-8 without loss.",
        doc: "docs/protocol.md#unicode-round-trip",
        probes: |i| vec![one(i.template.unicode(), Expect::Success)],
        judge: judge_unicode,
        persistent: InPersistent::Same,
    },
    Case {
        id: "size.large-task",
        name: "A 2 MiB task works",
        profile: Profile::Strict,
        rule: "Large tasks (megabytes) are read whole and answered.",
        doc: "docs/protocol.md#size-large-task",
        probes: |i| vec![one(i.template.large(), Expect::Success)],
        judge: judge_strict_success,
        persistent: InPersistent::Rule("Large tasks (a 2 MiB line) are read whole and answered."),
    },
    Case {
        id: "persistent.many-in-order",
        name: "50 tasks in a row, answered in order",
        profile: Profile::Strict,
        rule: "One process answers task after task, one result line per task line, in order: 50 tasks alternating the valid task and an unknown type get success, failure, success, ...",
        doc: "docs/protocol.md#persistent-many-in-order",
        probes: |i| alternating(i, SEQUENCE_TASKS, "test-seq"),
        judge: judge_answer_matches,
        persistent: InPersistent::Only(Kind::Tasks),
    },
    Case {
        id: "persistent.survives-failure",
        name: "A failed task does not end the worker",
        profile: Profile::Strict,
        rule: "A task that fails gets its failure result and the worker goes on: the same process answers the next task.",
        doc: "docs/protocol.md#persistent-survives-failure",
        probes: |i| {
            vec![
                one(i.template.unknown_type(), Expect::Failure),
                one(i.template.missing_id(i.user_params), Expect::Failure),
                one(i.template.valid(), Expect::Success),
            ]
        },
        judge: judge_answer_matches,
        persistent: InPersistent::Only(Kind::Tasks),
    },
    Case {
        id: "persistent.invalid-json",
        name: "Invalid JSON on a line",
        profile: Profile::Strict,
        rule: "A line that is not JSON gets a failure result with retry_possible false, and the worker reads the next line.",
        doc: "docs/protocol.md#persistent-invalid-json",
        probes: |i| vec![invalid_json(i), one(i.template.valid(), Expect::Success)],
        judge: |run| match run.expect {
            Expect::Failure => judge_exit_two(run),
            Expect::Success => judge_strict_success(run),
        },
        persistent: InPersistent::Only(Kind::Tasks),
    },
    Case {
        id: "persistent.memory",
        name: "Memory stays flat over 1,000 tasks",
        profile: Profile::Strict,
        rule: "Serving tasks does not grow memory: the process group's resident memory after task 1,000 is at most 16 MiB above its level after task 100.",
        doc: "docs/protocol.md#persistent-memory",
        probes: |i| alternating(i, MEMORY_TASKS, "test-memory"),
        // Any result will do: whether answers match their tasks is many-in-order's business.
        judge: |_| Vec::new(),
        persistent: InPersistent::Only(Kind::Memory {
            from: MEMORY_FROM,
            limit: MEMORY_GROWTH_LIMIT,
        }),
    },
    Case {
        id: "persistent.eof-exits",
        name: "EOF on stdin ends the worker",
        profile: Profile::Strict,
        rule: "When stdin closes, the worker exits 0 within the kill grace; wh stops whatever is left in its process group.",
        doc: "docs/protocol.md#persistent-eof-exits",
        probes: |_| Vec::new(),
        judge: |run| expect_class(run, "exit code 0 soon after stdin closes, within the kill grace"),
        persistent: InPersistent::Only(Kind::Eof),
    },
];

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Case {
    pub fn profile_name(&self) -> &'static str {
        match self.profile {
            Profile::Basic => "basic",
            Profile::Strict => "strict",
        }
    }

    /// Whether the case is in the mode's catalogue (run, or reported as skipped).
    pub fn runs_in(&self, mode: Mode) -> bool {
        !matches!(
            (mode, self.persistent),
            (Mode::Oneshot, InPersistent::Only(_)) | (Mode::Persistent, InPersistent::ReplacedBy(_))
        )
    }

    /// Why the mode skips the case, if it does.
    pub fn skipped_in(&self, mode: Mode) -> Option<&'static str> {
        match (mode, self.persistent) {
            (Mode::Persistent, InPersistent::Skipped(reason)) => Some(reason),
            _ => None,
        }
    }

    /// The rule the case enforces in the mode.
    pub fn rule_in(&self, mode: Mode) -> &'static str {
        match (mode, self.persistent) {
            (Mode::Persistent, InPersistent::Rule(rule)) => rule,
            _ => self.rule,
        }
    }

    pub fn kind(&self) -> Kind {
        match self.persistent {
            InPersistent::Only(kind) => kind,
            _ => Kind::Tasks,
        }
    }
}

/// Looks a case up by id.
pub fn find(id: &str) -> Option<&'static Case> {
    CASES.iter().find(|c| c.id == id)
}

/// Judges one answer with the case's judge. In persistent mode there must be an answer at
/// all, and the process must still be there to serve the next task.
pub fn judge(case: &Case, run: &ProbeRun) -> Vec<Finding> {
    let Some(served) = run.outcome.process else {
        return (case.judge)(run);
    };
    if !served.answered {
        let mut actual = run.reason.clone().unwrap_or_default();
        if served.exit.is_some() && run.outcome.stopped.is_none() && served.served_before > 0 {
            actual.push_str(&format!(
                ", after answering {} task(s); a persistent worker serves until stdin closes",
                served.served_before
            ));
        }
        return vec![finding(
            format!("a result line from the process (pid {})", served.pid),
            actual,
        )];
    }
    let mut found = (case.judge)(run);
    if found.is_empty() && !served.reusable {
        let actual = match served.exit {
            Some(exit) => {
                format!("it ended ({exit}) after answering; a persistent worker serves until stdin closes")
            }
            None => run.reason.clone().unwrap_or_default(),
        };
        found.push(finding(
            format!("the process (pid {}) ready for the next task", served.pid),
            actual,
        ));
    }
    found
}

/// Python's name for how a process ended: `returncode`, negative for a signal.
fn python_returncode(exit: Exit) -> i32 {
    match exit {
        Exit::Code(c) => c,
        Exit::Signal(s) => -s,
    }
}

/// The reference harness's verdict, reproduced: stdout decoded as UTF-8 (stderr too: the
/// harness decodes both and crashes on either), `json.loads`, then Python truthiness. In
/// persistent mode, where there is no harness and no exit code, the same tests of the result
/// line without the exit code and the stderr artifact.
fn reference_judge(run: &ProbeRun) -> Vec<Finding> {
    let out = &run.outcome;
    let expected = match (run.expect, out.exit) {
        (Expect::Success, Some(_)) => "a success result with exit code 0",
        (Expect::Failure, Some(_)) => "a failure result with a non-zero exit code",
        (Expect::Success, None) => "a success result",
        (Expect::Failure, None) => "a failure result",
    };
    let fail = |actual: String| vec![finding(expected, actual)];
    if let Some(stopped) = out.stopped {
        return fail(stopped.to_string());
    }
    if !out.stdout.utf8 {
        return fail("stdout is not valid UTF-8 (the reference harness crashes decoding it)".into());
    }
    if !out.stderr.utf8 && out.exit.is_some() {
        return fail(
            "stderr is not valid UTF-8 (the reference harness decodes stderr too, and crashes)".into(),
        );
    }
    let text = String::from_utf8_lossy(&out.stdout.bytes);
    let output = match pyjson::loads(&text) {
        Ok(v) => v,
        Err(e) => return fail(format!("stdout is not JSON: {e}")),
    };
    if !output.is_dict() {
        return fail(format!(
            "stdout is JSON but a {}, not an object",
            output.type_name()
        ));
    }
    let Some(success) = output.get("success") else {
        return fail("no 'success' field in the output".into());
    };
    let code = out.exit.map(python_returncode);
    if success.truthy() {
        if output.get("result").is_none() {
            return fail("success, but no 'result' field".into());
        }
        if let Some(exit) = out.exit
            && code != Some(0)
        {
            return fail(format!("success, but {exit}"));
        }
        if run.expect == Expect::Failure {
            return fail(match code {
                Some(_) => "a success result (exit code 0)".into(),
                None => "a success result".into(),
            });
        }
        return Vec::new();
    }
    let Some(error) = output.get("error") else {
        return fail("failure, but no 'error' field".into());
    };
    let (Some(kind), Some(message)) = (error.get("type"), error.get("message")) else {
        return fail(match error {
            PyValue::Dict(_) => "failure, but 'error' lacks 'type' or 'message'".into(),
            other => format!("failure, but 'error' is a {}, not an object", other.type_name()),
        });
    };
    if code == Some(0) {
        return fail("a failure result with exit code 0".into());
    }
    if run.expect == Expect::Success {
        return fail(format!("a failure: {} - {}", py_str(kind), py_str(message)));
    }
    Vec::new()
}

fn py_str(value: &PyValue) -> String {
    match value {
        PyValue::Str(s) => s.clone(),
        PyValue::Null => "None".into(),
        PyValue::Bool(b) => if *b { "True" } else { "False" }.into(),
        PyValue::Number { text, .. } => text.clone(),
        other => other.type_name().into(),
    }
}

/// Strictly parsed output, or a finding saying why there is none.
fn strict_output(run: &ProbeRun) -> Result<Value, Finding> {
    let out = &run.outcome;
    if let Some(stopped) = out.stopped {
        return Err(finding("one JSON object on stdout", stopped.to_string()));
    }
    if !out.stdout.utf8 {
        return Err(finding(
            "one JSON object in valid UTF-8",
            "stdout is not valid UTF-8",
        ));
    }
    parse_json_object(&out.stdout.bytes).map_err(|e| finding("one JSON object on stdout", e.to_string()))
}

fn judge_one_object(run: &ProbeRun) -> Vec<Finding> {
    strict_output(run).err().into_iter().collect()
}

fn judge_schema(run: &ProbeRun) -> Vec<Finding> {
    let value = match strict_output(run) {
        Ok(v) => v,
        Err(f) => return vec![f],
    };
    Schemas::get()
        .result_errors(&value)
        .into_iter()
        .map(|e| finding("a result that matches schemas/result.schema.json", e.to_string()))
        .collect()
}

fn judge_exit_agreement(run: &ProbeRun) -> Vec<Finding> {
    let value = match strict_output(run) {
        Ok(v) => v,
        Err(f) => return vec![f],
    };
    let code = match run.outcome.exit {
        Some(Exit::Code(c)) => c,
        Some(Exit::Signal(s)) => {
            return vec![finding("an exit code", format!("killed by {}", signal_name(s)))];
        }
        None => return class_agreement(run),
    };
    let success = value.get("success").and_then(Value::as_bool);
    let retry = value.pointer("/error/retry_possible");
    match success {
        Some(true) if code != 0 => vec![finding(
            "exit code 0 with success: true",
            format!("exit code {code}"),
        )],
        Some(false) if code == 0 => {
            vec![finding("exit code 1 or 2 with success: false", "exit code 0")]
        }
        Some(false) if code == 2 && retry != Some(&Value::Bool(false)) => vec![finding(
            "retry_possible: false with exit code 2 (not retriable)",
            match retry {
                None => "retry_possible absent (absent means retriable)".to_string(),
                Some(v) => format!("retry_possible: {v}"),
            },
        )],
        Some(false) if code == 1 && retry == Some(&Value::Bool(false)) => vec![finding(
            "retry_possible true or absent with exit code 1 (retriable)",
            "retry_possible: false",
        )],
        Some(false) if code != 1 && code != 2 => vec![finding(
            "exit code 1 (retriable) or 2 (not retriable) with success: false",
            format!("exit code {code}"),
        )],
        None => vec![finding("a boolean 'success' field", "none")],
        _ => Vec::new(),
    }
}

/// Persistent mode's agreement: the class is read from the result, so a success or a failure
/// agrees by construction; what can disagree is a failure the host reads as a timeout.
fn class_agreement(run: &ProbeRun) -> Vec<Finding> {
    match run.class {
        ExitClass::Success | ExitClass::RetriableFailure | ExitClass::PermanentFailure => Vec::new(),
        ExitClass::Timeout => vec![finding(
            "a failure classed retriable or not by retry_possible",
            format!(
                "classed as a timeout (error.type TimeoutError): {}",
                describe(run)
            ),
        )],
        _ => vec![finding("a result the host can class", describe(run))],
    }
}

/// A failure result that is not retriable: exit code 2 one-shot, `retry_possible: false` in
/// persistent mode.
fn judge_exit_two(run: &ProbeRun) -> Vec<Finding> {
    let (expected, retriable) = match run.outcome.exit {
        Some(_) => ("a failure result with exit code 2 (not retriable)", "exit code 1"),
        None => (
            "a failure result with retry_possible: false (not retriable)",
            "retry_possible true or absent",
        ),
    };
    match run.class {
        ExitClass::PermanentFailure => Vec::new(),
        ExitClass::RetriableFailure => vec![finding(
            expected,
            format!(
                "{retriable} (retriable): {}",
                run.reason.clone().unwrap_or_default()
            ),
        )],
        _ => vec![finding(expected, describe(run))],
    }
}

/// A success result (with exit code 0, one-shot), judged strictly.
fn judge_strict_success(run: &ProbeRun) -> Vec<Finding> {
    if run.class == ExitClass::Success {
        return Vec::new();
    }
    let expected = match run.outcome.exit {
        Some(_) => "a success result with exit code 0",
        None => "a success result",
    };
    vec![finding(expected, describe(run))]
}

/// The answer's success matches the task: the valid task succeeds, the others fail.
fn judge_answer_matches(run: &ProbeRun) -> Vec<Finding> {
    let failed = matches!(
        run.class,
        ExitClass::RetriableFailure | ExitClass::PermanentFailure
    );
    match run.expect {
        Expect::Success => judge_strict_success(run),
        Expect::Failure if failed => Vec::new(),
        Expect::Failure => vec![finding(
            "a failure result",
            match run.class {
                ExitClass::Success => "a success result".to_string(),
                ExitClass::Timeout => format!("classed as a timeout: {}", describe(run)),
                _ => describe(run),
            },
        )],
    }
}

/// A run the case's runner judged itself (the handshake, closing stdin): success, or the
/// reason it gave.
fn expect_class(run: &ProbeRun, expected: &str) -> Vec<Finding> {
    if run.class == ExitClass::Success {
        return Vec::new();
    }
    vec![finding(expected, run.reason.clone().unwrap_or_default())]
}

/// What the worker did instead, in one line.
fn describe(run: &ProbeRun) -> String {
    let Some(exit) = run.outcome.exit else {
        // Persistent: the reason says what the line was, or what became of the process.
        return match (&run.reason, run.class) {
            (Some(reason), _) => reason.clone(),
            (None, ExitClass::Success) => "a success result".into(),
            (None, class) => class.label().into(),
        };
    };
    let reason = run.reason.clone().unwrap_or_default();
    if run.outcome.stdout.bytes.is_empty() && !reason.contains(&exit.to_string()) {
        format!("{exit}, nothing on stdout")
    } else if reason.contains(&exit.to_string()) || reason.starts_with("killed") {
        reason
    } else {
        format!("{exit}: {reason}")
    }
}

fn judge_no_leftovers(run: &ProbeRun) -> Vec<Finding> {
    let mut findings: Vec<Finding> = run
        .outcome
        .leftovers
        .iter()
        .map(|l| {
            finding(
                "no process of the worker's group running after it exits",
                format!("pid {} still running: {}", l.pid, l.command),
            )
        })
        .collect();
    if findings.is_empty() {
        findings = judge_strict_success(run);
    }
    findings
}

fn judge_unicode(run: &ProbeRun) -> Vec<Finding> {
    let mut findings = judge_strict_success(run);
    if findings.is_empty() && String::from_utf8_lossy(&run.outcome.stdout.bytes).contains('\u{FFFD}') {
        findings.push(finding(
            "the text intact",
            "the result holds U+FFFD replacement characters: text was decoded or encoded with the wrong codec",
        ));
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compliance::{Observed, Served};
    use crate::protocol::classify;
    use crate::runner::RunOutcome;
    use std::collections::HashSet;
    use std::time::Duration;

    fn outcome(exit: Exit, stdout: &str) -> RunOutcome {
        RunOutcome {
            exit,
            stopped: None,
            duration: Duration::from_millis(1),
            stdout: stdout.as_bytes().to_vec(),
            stdout_len: stdout.len() as u64,
            stdout_utf8: true,
            stderr: Vec::new(),
            stderr_len: 0,
            stderr_utf8: true,
            leftovers: Vec::new(),
            pipes_held_open: false,
            peak_memory: 0,
            memory_limit: None,
        }
    }

    /// A one-shot run, classified as the suite classifies it.
    fn judged(outcome: RunOutcome, expect: Expect) -> ProbeRun {
        let c = classify(&outcome, 10.0);
        ProbeRun {
            input: Vec::new(),
            note: None,
            expect,
            outcome: outcome.into(),
            class: c.class,
            reason: c.reason,
        }
    }

    fn run(exit: Exit, stdout: &str, expect: Expect) -> ProbeRun {
        judged(outcome(exit, stdout), expect)
    }

    /// A persistent task's run: a result line and no exit code.
    fn line(stdout: &str, expect: Expect, class: ExitClass, reusable: bool) -> ProbeRun {
        let mut observed: Observed = outcome(Exit::Code(0), stdout).into();
        observed.exit = None;
        observed.process = Some(Served {
            pid: 7,
            served_before: 0,
            answered: true,
            reusable,
            exit: None,
        });
        ProbeRun {
            input: Vec::new(),
            note: None,
            expect,
            outcome: observed,
            class,
            reason: None,
        }
    }

    #[test]
    fn ids_are_unique_and_basic_comes_first() {
        let ids: HashSet<_> = CASES.iter().map(|c| c.id).collect();
        assert_eq!(ids.len(), CASES.len());
        let oneshot: Vec<_> = CASES.iter().filter(|c| c.runs_in(Mode::Oneshot)).collect();
        let basic: Vec<_> = oneshot
            .iter()
            .take_while(|c| c.profile == Profile::Basic)
            .map(|c| c.name)
            .collect();
        assert_eq!(
            basic,
            [
                "Valid Task Processing",
                "Missing Task ID",
                "Unknown Task Type",
                "Empty Params"
            ]
        );
        assert_eq!(oneshot.len(), 13);
    }

    #[test]
    fn persistent_mode_starts_with_the_handshake_and_ends_with_eof() {
        let ids: Vec<_> = CASES
            .iter()
            .filter(|c| c.runs_in(Mode::Persistent))
            .map(|c| c.id)
            .collect();
        assert_eq!(ids.first(), Some(&"persistent.handshake"));
        assert_eq!(ids.last(), Some(&"persistent.eof-exits"));
        for case in CASES {
            if let InPersistent::ReplacedBy(by) = case.persistent {
                assert!(find(by).is_some_and(|c| c.runs_in(Mode::Persistent)), "{by}");
                assert!(!ids.contains(&case.id));
            }
            let anchor = case.doc.strip_prefix("docs/protocol.md#").unwrap();
            let docs = include_str!("../../docs/protocol.md");
            assert!(docs.contains(&format!("<a id=\"{anchor}\"></a>")), "{}", case.id);
        }
    }

    #[test]
    fn reference_judge_uses_python_semantics() {
        fn ok(exit: Exit, out: &str, expect: Expect) -> bool {
            reference_judge(&run(exit, out, expect)).is_empty()
        }
        // Truthy success and NaN are fine for json.loads.
        assert!(ok(
            Exit::Code(0),
            r#"{"success": 1, "result": null}"#,
            Expect::Success
        ));
        assert!(ok(
            Exit::Code(0),
            r#"{"success": true, "result": NaN}"#,
            Expect::Success
        ));
        // A falsy "success" is a failure; a signal is a non-zero returncode.
        assert!(ok(
            Exit::Signal(9),
            r#"{"success": 0, "error": {"type": 1, "message": null}}"#,
            Expect::Failure
        ));
        assert!(!ok(Exit::Code(0), r#"{"success": true}"#, Expect::Success));
        assert!(!ok(
            Exit::Code(1),
            r#"{"success": true, "result": {}}"#,
            Expect::Success
        ));
        assert!(!ok(
            Exit::Code(2),
            r#"{"success": false, "error": "type message"}"#,
            Expect::Failure
        ));
        assert!(!ok(
            Exit::Code(0),
            "log\n{\"success\": true, \"result\": {}}",
            Expect::Success
        ));
        assert!(!ok(Exit::Code(0), r#"["success"]"#, Expect::Success));
    }

    #[test]
    fn reference_judge_fails_undecodable_stderr() {
        let mut r = outcome(Exit::Code(0), r#"{"success": true, "result": {}}"#);
        r.stderr_utf8 = false;
        let f = reference_judge(&judged(r, Expect::Success));
        assert!(f[0].actual.contains("stderr is not valid UTF-8"));
    }

    #[test]
    fn exit_agreement_checks_retry_possible() {
        fn judge(exit: Exit, out: &str) -> Vec<Finding> {
            judge_exit_agreement(&run(exit, out, Expect::Failure))
        }
        let err =
            |retry: &str| format!(r#"{{"success": false, "error": {{"type": "E", "message": "m"{retry}}}}}"#);
        assert!(judge(Exit::Code(2), &err(r#", "retry_possible": false"#)).is_empty());
        assert!(!judge(Exit::Code(2), &err(r#", "retry_possible": true"#)).is_empty());
        assert!(!judge(Exit::Code(2), &err("")).is_empty());
        assert!(judge(Exit::Code(1), &err("")).is_empty());
        assert!(!judge(Exit::Code(1), &err(r#", "retry_possible": false"#)).is_empty());
        assert!(!judge(Exit::Code(0), &err("")).is_empty());
    }

    #[test]
    fn leftovers_are_named() {
        let mut r = outcome(Exit::Code(0), r#"{"success": true, "result": {}}"#);
        r.leftovers.push(crate::runner::Leftover {
            pid: 42,
            command: "sleep 30".into(),
        });
        let f = judge_no_leftovers(&judged(r, Expect::Success));
        assert_eq!(f[0].actual, "pid 42 still running: sleep 30");
    }

    #[test]
    fn persistent_answers_are_judged_by_their_class() {
        let success = r#"{"success": true, "result": {}}"#;
        let failure = r#"{"success": false, "error": {"type": "E", "message": "m"}}"#;
        // The reference judge: no exit code to check, the result line alone.
        assert!(reference_judge(&line(success, Expect::Success, ExitClass::Success, true)).is_empty());
        let f = reference_judge(&line(success, Expect::Failure, ExitClass::Success, true));
        assert_eq!(f[0], finding("a failure result", "a success result"));
        // Not retriable means retry_possible false, said as such.
        let f = judge_exit_two(&line(failure, Expect::Failure, ExitClass::RetriableFailure, true));
        assert_eq!(
            f[0].expected,
            "a failure result with retry_possible: false (not retriable)"
        );
        assert!(
            f[0].actual
                .starts_with("retry_possible true or absent (retriable)")
        );
        // Agreement: a failure the host would read as a timeout.
        let f = judge_exit_agreement(&line(failure, Expect::Failure, ExitClass::Timeout, true));
        assert!(f[0].actual.starts_with("classed as a timeout"), "{f:?}");
        assert!(
            judge_exit_agreement(&line(failure, Expect::Failure, ExitClass::RetriableFailure, true))
                .is_empty()
        );
        assert!(
            judge_answer_matches(&line(failure, Expect::Failure, ExitClass::PermanentFailure, true))
                .is_empty()
        );
        assert!(!judge_answer_matches(&line(success, Expect::Failure, ExitClass::Success, true)).is_empty());
    }

    #[test]
    fn a_process_that_ends_fails_the_case_that_ended_it() {
        let case = find("basic.valid-task").unwrap();
        let mut r = line(
            r#"{"success": true, "result": {}}"#,
            Expect::Success,
            ExitClass::Success,
            false,
        );
        r.outcome.process = Some(Served {
            pid: 7,
            served_before: 1,
            answered: true,
            reusable: false,
            exit: Some(Exit::Code(0)),
        });
        let f = judge(case, &r);
        assert_eq!(f[0].expected, "the process (pid 7) ready for the next task");
        assert!(f[0].actual.starts_with("it ended (exit code 0) after answering"));
        // No answer at all: the reason, not the case's judge.
        r.outcome.process = Some(Served {
            pid: 7,
            served_before: 1,
            answered: false,
            reusable: false,
            exit: Some(Exit::Code(1)),
        });
        r.reason = Some("the process ended during the task (exit code 1) without a result".into());
        let f = judge(case, &r);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].expected, "a result line from the process (pid 7)");
        assert!(
            f[0].actual
                .ends_with(", after answering 1 task(s); a persistent worker serves until stdin closes")
        );
    }
}
