//! The compliance cases: each has a stable id (its filter and JUnit name), the protocol rule
//! it enforces, the tasks it sends and how it judges what came back.
//!
//! The `basic` cases reproduce the design's reference harness exactly, including its Python
//! semantics (`json.loads`, truthiness, a crash on undecodable output). The `strict` cases add
//! one case per stricter rule of PROTOCOL.md.

use serde::Serialize;
use serde_json::Value;

use super::tasks::{TaskTemplate, pretty, python_dumps};
use crate::protocol::pyjson::{self, PyValue};
use crate::protocol::{ExitClass, Schemas, classify, parse_json_object};
use crate::runner::{Exit, RunOutcome, signal_name};

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
    /// Bytes written to stdin.
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
    /// Judges one probe's run; the time limit is judged before, for every case alike.
    pub judge: fn(&Probe, &RunOutcome) -> Vec<Finding>,
}

fn one(value: Value, expect: Expect) -> Probe {
    Probe {
        input: python_dumps(&value),
        expect,
    }
}

/// Every case, in the order they run and report.
pub static CASES: &[Case] = &[
    Case {
        id: "basic.valid-task",
        name: "Valid Task Processing",
        profile: Profile::Basic,
        rule: "A valid task gets a success result and exit code 0.",
        doc: "docs/protocol.md#the-reference-cases",
        probes: |i| vec![one(i.template.valid(), Expect::Success)],
        judge: reference_judge,
    },
    Case {
        id: "basic.missing-id",
        name: "Missing Task ID",
        profile: Profile::Basic,
        rule: "A task without an id gets a failure result and a non-zero exit code.",
        doc: "docs/protocol.md#the-reference-cases",
        probes: |i| vec![one(i.template.missing_id(i.user_params), Expect::Failure)],
        judge: reference_judge,
    },
    Case {
        id: "basic.unknown-type",
        name: "Unknown Task Type",
        profile: Profile::Basic,
        rule: "A task of a type the worker does not handle gets a failure result and a non-zero exit code.",
        doc: "docs/protocol.md#the-reference-cases",
        probes: |i| vec![one(i.template.unknown_type(), Expect::Failure)],
        judge: reference_judge,
    },
    Case {
        id: "basic.empty-params",
        name: "Empty Params",
        profile: Profile::Basic,
        rule: "A task with empty params gets a success result (defaults apply) and exit code 0.",
        doc: "docs/protocol.md#the-reference-cases",
        probes: |i| vec![one(i.template.empty_params(), Expect::Success)],
        judge: reference_judge,
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
    },
    Case {
        id: "stdin.invalid-json",
        name: "Invalid JSON on stdin",
        profile: Profile::Strict,
        rule: "Invalid JSON on stdin gets a failure result with exit code 2, not a crash.",
        doc: "docs/protocol.md#stdin-invalid-json",
        probes: |i| {
            let input = format!(
                r#"{{"id": "test-invalid-json", "type": "{}", "params": {{"#,
                i.template.task_type
            );
            vec![Probe {
                input: input.into_bytes(),
                expect: Expect::Failure,
            }]
        },
        judge: judge_exit_two,
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
    },
    Case {
        id: "process.no-leftovers",
        name: "No process left running",
        profile: Profile::Strict,
        rule: "When the worker exits, no process it started is still running.",
        doc: "docs/protocol.md#process-no-leftovers",
        probes: |i| vec![one(i.template.valid(), Expect::Success)],
        judge: judge_no_leftovers,
    },
    Case {
        id: "unicode.round-trip",
        name: "Unicode in params survives",
        profile: Profile::Strict,
        rule: "Non-ASCII text in params is read and written as UTF-8 without loss.",
        doc: "docs/protocol.md#unicode-round-trip",
        probes: |i| vec![one(i.template.unicode(), Expect::Success)],
        judge: judge_unicode,
    },
    Case {
        id: "size.large-task",
        name: "A 2 MiB task works",
        profile: Profile::Strict,
        rule: "Large tasks (megabytes) are read whole and answered.",
        doc: "docs/protocol.md#size-large-task",
        probes: |i| vec![one(i.template.large(), Expect::Success)],
        judge: judge_strict_success,
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
}

/// Looks a case up by id.
pub fn find(id: &str) -> Option<&'static Case> {
    CASES.iter().find(|c| c.id == id)
}

/// Python's name for how a process ended: `returncode`, negative for a signal.
fn python_returncode(exit: Exit) -> i32 {
    match exit {
        Exit::Code(c) => c,
        Exit::Signal(s) => -s,
    }
}

/// The reference harness's verdict, reproduced: stdout decoded as UTF-8 (stderr too: the
/// harness decodes both and crashes on either), `json.loads`, then Python truthiness.
fn reference_judge(probe: &Probe, run: &RunOutcome) -> Vec<Finding> {
    let expected = match probe.expect {
        Expect::Success => "a success result with exit code 0",
        Expect::Failure => "a failure result with a non-zero exit code",
    };
    let fail = |actual: String| vec![finding(expected, actual)];
    if let Some(stopped) = run.stopped {
        return fail(stopped.to_string());
    }
    if !run.stdout_utf8 {
        return fail("stdout is not valid UTF-8 (the reference harness crashes decoding it)".into());
    }
    if !run.stderr_utf8 {
        return fail(
            "stderr is not valid UTF-8 (the reference harness decodes stderr too, and crashes)".into(),
        );
    }
    let text = String::from_utf8_lossy(&run.stdout);
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
    let code = python_returncode(run.exit);
    if success.truthy() {
        if output.get("result").is_none() {
            return fail("success, but no 'result' field".into());
        }
        if code != 0 {
            return fail(format!("success, but {}", run.exit));
        }
        if probe.expect == Expect::Failure {
            return fail("a success result (exit code 0)".into());
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
    if code == 0 {
        return fail("a failure result with exit code 0".into());
    }
    if probe.expect == Expect::Success {
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
fn strict_output(run: &RunOutcome) -> Result<Value, Finding> {
    if let Some(stopped) = run.stopped {
        return Err(finding("one JSON object on stdout", stopped.to_string()));
    }
    if !run.stdout_utf8 {
        return Err(finding(
            "one JSON object in valid UTF-8",
            "stdout is not valid UTF-8",
        ));
    }
    parse_json_object(&run.stdout).map_err(|e| finding("one JSON object on stdout", e.to_string()))
}

fn judge_one_object(_probe: &Probe, run: &RunOutcome) -> Vec<Finding> {
    strict_output(run).err().into_iter().collect()
}

fn judge_schema(_probe: &Probe, run: &RunOutcome) -> Vec<Finding> {
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

fn judge_exit_agreement(_probe: &Probe, run: &RunOutcome) -> Vec<Finding> {
    let value = match strict_output(run) {
        Ok(v) => v,
        Err(f) => return vec![f],
    };
    let code = match run.exit {
        Exit::Code(c) => c,
        Exit::Signal(s) => {
            return vec![finding("an exit code", format!("killed by {}", signal_name(s)))];
        }
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

/// A failure result with exit code 2.
fn judge_exit_two(_probe: &Probe, run: &RunOutcome) -> Vec<Finding> {
    let expected = "a failure result with exit code 2 (not retriable)";
    let judged = classify(run, 0.0);
    match (judged.class, run.exit) {
        (ExitClass::PermanentFailure, _) => Vec::new(),
        (ExitClass::RetriableFailure, _) => {
            vec![finding(
                expected,
                format!("exit code 1 (retriable): {}", judged.reason.unwrap_or_default()),
            )]
        }
        (_, exit) => vec![finding(expected, describe(run, exit, judged.reason))],
    }
}

/// A success result with exit code 0, judged strictly.
fn judge_strict_success(_probe: &Probe, run: &RunOutcome) -> Vec<Finding> {
    let judged = classify(run, 0.0);
    if judged.class == ExitClass::Success {
        return Vec::new();
    }
    vec![finding(
        "a success result with exit code 0",
        describe(run, run.exit, judged.reason),
    )]
}

fn describe(run: &RunOutcome, exit: Exit, reason: Option<String>) -> String {
    let reason = reason.unwrap_or_default();
    if run.stdout.is_empty() && !reason.contains(&exit.to_string()) {
        format!("{exit}, nothing on stdout")
    } else if reason.contains(&exit.to_string()) || reason.starts_with("killed") {
        reason
    } else {
        format!("{exit}: {reason}")
    }
}

fn judge_no_leftovers(probe: &Probe, run: &RunOutcome) -> Vec<Finding> {
    let mut findings: Vec<Finding> = run
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
        findings = judge_strict_success(probe, run);
    }
    findings
}

fn judge_unicode(probe: &Probe, run: &RunOutcome) -> Vec<Finding> {
    let mut findings = judge_strict_success(probe, run);
    if findings.is_empty() && String::from_utf8_lossy(&run.stdout).contains('\u{FFFD}') {
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
    use std::collections::HashSet;
    use std::time::Duration;

    fn run(exit: Exit, stdout: &str) -> RunOutcome {
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

    fn probe(expect: Expect) -> Probe {
        Probe {
            input: Vec::new(),
            expect,
        }
    }

    #[test]
    fn ids_are_unique_and_basic_comes_first() {
        let ids: HashSet<_> = CASES.iter().map(|c| c.id).collect();
        assert_eq!(ids.len(), CASES.len());
        let basic: Vec<_> = CASES
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
    }

    #[test]
    fn reference_judge_uses_python_semantics() {
        fn ok(exit: Exit, out: &str, expect: Expect) -> bool {
            reference_judge(&probe(expect), &run(exit, out)).is_empty()
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
        let mut r = run(Exit::Code(0), r#"{"success": true, "result": {}}"#);
        r.stderr_utf8 = false;
        let f = reference_judge(&probe(Expect::Success), &r);
        assert!(f[0].actual.contains("stderr is not valid UTF-8"));
    }

    #[test]
    fn exit_agreement_checks_retry_possible() {
        fn judge(exit: Exit, out: &str) -> Vec<Finding> {
            judge_exit_agreement(&probe(Expect::Failure), &run(exit, out))
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
        let mut r = run(Exit::Code(0), r#"{"success": true, "result": {}}"#);
        r.leftovers.push(crate::runner::Leftover {
            pid: 42,
            command: "sleep 30".into(),
        });
        let f = judge_no_leftovers(&probe(Expect::Success), &r);
        assert_eq!(f[0].actual, "pid 42 still running: sleep 30");
    }
}
