//! From a finished run to an outcome class: the one place that decides what a worker's exit
//! code and stdout mean together.

use serde::Serialize;
use serde_json::Value;

use super::schema::{SchemaError, Schemas};
use super::types::WorkerOutput;
use crate::runner::{Exit, RunOutcome, Stopped, signal_name};

/// What a run amounts to, as the host acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitClass {
    /// Exit 0 with a success result.
    Success,
    /// Exit 1: failed, worth retrying.
    RetriableFailure,
    /// Exit 2: failed, retrying will not help.
    PermanentFailure,
    /// Exit 3, or the host stopped the worker at its time limit.
    Timeout,
    /// Exit 130, SIGINT, or the user interrupted `wh`.
    Interrupted,
    /// Killed by a signal.
    Crashed,
    /// Any other exit code, or output that breaks the protocol.
    ProtocolViolation,
}

impl ExitClass {
    /// A short label for humans.
    pub fn label(self) -> &'static str {
        match self {
            ExitClass::Success => "success",
            ExitClass::RetriableFailure => "failure (retriable)",
            ExitClass::PermanentFailure => "failure (not retriable)",
            ExitClass::Timeout => "timeout",
            ExitClass::Interrupted => "interrupted",
            ExitClass::Crashed => "crashed",
            ExitClass::ProtocolViolation => "protocol violation",
        }
    }
}

/// Why stdout is not a valid result, first problem only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputError {
    Empty,
    NotUtf8,
    /// Not one RFC 8259 JSON document (serde_json's message, with line and column).
    Json(String),
    NotObject,
    Schema(Vec<SchemaError>),
}

impl std::fmt::Display for OutputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OutputError::Empty => write!(f, "stdout is empty: no result was written"),
            OutputError::NotUtf8 => write!(f, "stdout is not valid UTF-8"),
            OutputError::Json(e) => write!(f, "stdout is not one JSON document: {e}"),
            OutputError::NotObject => write!(f, "stdout is JSON but not an object"),
            OutputError::Schema(errors) => {
                let first = errors.first().map(|e| e.to_string()).unwrap_or_default();
                write!(f, "result breaks result.schema.json {first}")?;
                if errors.len() > 1 {
                    write!(f, " (and {} more)", errors.len() - 1)?;
                }
                Ok(())
            }
        }
    }
}

/// Parses stdout as exactly one JSON object (RFC 8259; surrounding whitespace allowed).
pub fn parse_json_object(stdout: &[u8]) -> Result<Value, OutputError> {
    let text = std::str::from_utf8(stdout).map_err(|_| OutputError::NotUtf8)?;
    if text.trim().is_empty() {
        return Err(OutputError::Empty);
    }
    let value: Value = serde_json::from_str(text).map_err(|e| OutputError::Json(e.to_string()))?;
    if !value.is_object() {
        return Err(OutputError::NotObject);
    }
    Ok(value)
}

/// Parses stdout and checks it against the result schema.
pub fn parse_output(stdout: &[u8]) -> Result<WorkerOutput, OutputError> {
    let value = parse_json_object(stdout)?;
    let errors = Schemas::get().result_errors(&value);
    if !errors.is_empty() {
        return Err(OutputError::Schema(errors));
    }
    serde_json::from_value(value).map_err(|e| OutputError::Json(e.to_string()))
}

/// A run, judged.
#[derive(Debug, Clone)]
pub struct Classification {
    pub class: ExitClass,
    /// The worker's result, when stdout held a valid one.
    pub output: Option<WorkerOutput>,
    /// One line saying why, for anything but a clean success.
    pub reason: Option<String>,
}

/// Judges a run: exit code and stdout together.
pub fn classify(outcome: &RunOutcome, timeout_secs: f64) -> Classification {
    let parsed = parse_output(&outcome.stdout);
    let output = parsed.as_ref().ok().cloned();
    let verdict = |class, reason: String| Classification {
        class,
        output: output.clone(),
        reason: Some(reason),
    };

    match outcome.stopped {
        Some(Stopped::TimedOut) if outcome.pipes_held_open => {
            return verdict(
                ExitClass::Timeout,
                format!(
                    "the worker exited but a process it started kept stdout/stderr open past the {timeout_secs}s limit"
                ),
            );
        }
        Some(Stopped::TimedOut) => {
            return verdict(
                ExitClass::Timeout,
                format!("no result within the {timeout_secs}s limit; stopped by wh"),
            );
        }
        Some(Stopped::StdoutOverflow) => {
            return verdict(
                ExitClass::ProtocolViolation,
                format!(
                    "stdout went past the {} cap; the worker was stopped",
                    human_bytes(outcome.stdout.len() as u64)
                ),
            );
        }
        Some(Stopped::MemoryLimit) => {
            return verdict(
                ExitClass::Crashed,
                memory_reason(outcome.memory_limit, outcome.peak_memory),
            );
        }
        Some(Stopped::Cancelled) => {
            return verdict(
                ExitClass::Interrupted,
                "interrupted: wh was stopped by the user".into(),
            );
        }
        None => {}
    }

    let code = match outcome.exit {
        Exit::Signal(sig) if sig == nix::sys::signal::Signal::SIGINT as i32 => {
            return verdict(ExitClass::Interrupted, "killed by SIGINT".into());
        }
        Exit::Signal(sig) => {
            return verdict(ExitClass::Crashed, format!("killed by {}", signal_name(sig)));
        }
        Exit::Code(code) => code,
    };

    match (code, &parsed) {
        (3, _) => verdict(
            ExitClass::Timeout,
            "the worker reported a timeout (exit 3)".into(),
        ),
        (130, _) => verdict(
            ExitClass::Interrupted,
            "the worker was interrupted (exit 130)".into(),
        ),
        (0..=2, Err(e)) => verdict(ExitClass::ProtocolViolation, format!("exit code {code}, but {e}")),
        (0, Ok(out)) if out.success => Classification {
            class: ExitClass::Success,
            output,
            reason: None,
        },
        (0, Ok(_)) => verdict(
            ExitClass::ProtocolViolation,
            "exit code 0, but the result says success: false".into(),
        ),
        (1 | 2, Ok(out)) if out.success => verdict(
            ExitClass::ProtocolViolation,
            format!("exit code {code}, but the result says success: true"),
        ),
        (1 | 2, Ok(out)) => {
            let class = if code == 1 {
                ExitClass::RetriableFailure
            } else {
                ExitClass::PermanentFailure
            };
            let reason = out
                .error
                .as_ref()
                .map(|e| format!("{}: {}", e.error_type, first_line(&e.message)))
                .unwrap_or_default();
            verdict(class, reason)
        }
        (other, _) => verdict(
            ExitClass::ProtocolViolation,
            format!("unexpected exit code {other} (the protocol knows 0, 1, 2, 3 and 130)"),
        ),
    }
}

/// Why a run stopped over its memory limit, in the words the host records.
pub(crate) fn memory_reason(limit: Option<u64>, peak: u64) -> String {
    let mb = |b: u64| b / (1024 * 1024);
    format!(
        "exceeded {} MB (its processes used {} MB); stopped by wh",
        mb(limit.unwrap_or_default()),
        mb(peak)
    )
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

/// "16 MiB", "512 KiB", "42 bytes".
pub fn human_bytes(n: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = KIB * 1024;
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= MIB {
        format!("{:.1} MiB", n as f64 / MIB as f64)
    } else if n >= KIB && n.is_multiple_of(KIB) {
        format!("{} KiB", n / KIB)
    } else if n >= KIB {
        format!("{:.1} KiB", n as f64 / KIB as f64)
    } else {
        format!("{n} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn outcome(exit: Exit, stdout: &str) -> RunOutcome {
        RunOutcome {
            exit,
            stopped: None,
            duration: Duration::from_millis(5),
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

    const OK: &str = r#"{"success": true, "result": {}}"#;
    const FAIL: &str = r#"{"success": false, "error": {"type": "E", "message": "m"}}"#;

    #[test]
    fn exit_codes_map_to_classes() {
        let c = |exit, out| classify(&outcome(exit, out), 10.0).class;
        assert_eq!(c(Exit::Code(0), OK), ExitClass::Success);
        assert_eq!(c(Exit::Code(1), FAIL), ExitClass::RetriableFailure);
        assert_eq!(c(Exit::Code(2), FAIL), ExitClass::PermanentFailure);
        assert_eq!(c(Exit::Code(3), ""), ExitClass::Timeout);
        assert_eq!(c(Exit::Code(130), ""), ExitClass::Interrupted);
        assert_eq!(c(Exit::Signal(2), ""), ExitClass::Interrupted);
        assert_eq!(c(Exit::Signal(11), ""), ExitClass::Crashed);
        assert_eq!(c(Exit::Code(42), FAIL), ExitClass::ProtocolViolation);
    }

    #[test]
    fn exit_code_and_result_must_agree() {
        let c = |exit, out| classify(&outcome(exit, out), 10.0);
        assert_eq!(c(Exit::Code(0), FAIL).class, ExitClass::ProtocolViolation);
        assert_eq!(c(Exit::Code(1), OK).class, ExitClass::ProtocolViolation);
        let polluted = c(Exit::Code(0), &format!("log line\n{OK}"));
        assert_eq!(polluted.class, ExitClass::ProtocolViolation);
        assert!(polluted.reason.unwrap().contains("not one JSON document"));
    }

    #[test]
    fn signal_is_named() {
        let c = classify(&outcome(Exit::Signal(9), ""), 10.0);
        assert_eq!(c.reason.as_deref(), Some("killed by SIGKILL"));
    }

    #[test]
    fn host_timeout_and_overflow_say_so() {
        let mut timed_out = outcome(Exit::Signal(15), "");
        timed_out.stopped = Some(Stopped::TimedOut);
        let c = classify(&timed_out, 1.5);
        assert_eq!(c.class, ExitClass::Timeout);
        assert!(c.reason.unwrap().contains("1.5s"));
        let mut flood = outcome(Exit::Signal(15), "xxxx");
        flood.stopped = Some(Stopped::StdoutOverflow);
        assert_eq!(classify(&flood, 1.0).class, ExitClass::ProtocolViolation);
    }

    #[test]
    fn strict_parse_rejects_what_json_forbids() {
        assert_eq!(parse_json_object(b"  "), Err(OutputError::Empty));
        assert_eq!(parse_json_object(b"[1]"), Err(OutputError::NotObject));
        assert!(matches!(
            parse_json_object(b"{\"a\": NaN}"),
            Err(OutputError::Json(_))
        ));
        assert!(matches!(parse_json_object(b"{} {}"), Err(OutputError::Json(_))));
        assert!(parse_json_object(b"\n {\"a\": 1}\n").is_ok());
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(16 * 1024 * 1024), "16 MiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(12), "12 bytes");
    }
}
