//! Persistent mode's side of the protocol (docs/protocol.md section 8): the signal a worker is
//! started with, the handshake it answers with, and how one result line is classified when
//! there is no exit code per task.

use serde_json::Value;

use super::classify::{Classification, ExitClass, memory_reason, parse_output};
use crate::runner::Stopped;
use crate::runner::persistent::TaskRun;

/// The environment variable that tells a worker to serve persistently, and its value.
pub const MODE_ENV: &str = "WH_WORKER_MODE";
pub const MODE_VALUE: &str = "persistent";

/// The `error.type` that a worker uses to report a timeout of its own.
pub const TIMEOUT_ERROR_TYPE: &str = "TimeoutError";

/// Accepts a handshake line: a JSON object with `"ready": true` and `"mode": "persistent"`.
pub fn check_handshake(line: &[u8]) -> Result<(), String> {
    let shown = || {
        let text = String::from_utf8_lossy(line);
        let mut short: String = text.chars().take(120).collect();
        if text.chars().count() > 120 {
            short.push('…');
        }
        short
    };
    let value: Value =
        serde_json::from_slice(line).map_err(|_| format!("its first line is not JSON: {:?}", shown()))?;
    let ready = value.get("ready").and_then(Value::as_bool) == Some(true);
    let mode = value.get("mode").and_then(Value::as_str) == Some(MODE_VALUE);
    if ready && mode {
        Ok(())
    } else {
        Err(format!(
            "its first line is not {{\"ready\": true, \"mode\": \"persistent\"}}: {:?}",
            shown()
        ))
    }
}

/// A persistent task, judged; `reusable` says whether the process may serve another task
/// (false when it ended, was stopped, or wrote something that is not a result).
pub fn classify_line(run: &TaskRun, timeout_secs: f64) -> (Classification, bool) {
    let lost = |class, reason: String| {
        (
            Classification {
                class,
                output: None,
                reason: Some(reason),
            },
            false,
        )
    };
    match run.stopped {
        Some(Stopped::TimedOut) => {
            return lost(
                ExitClass::Timeout,
                format!("no result within the {timeout_secs}s limit; wh stopped the process"),
            );
        }
        Some(Stopped::StdoutOverflow) => {
            return lost(
                ExitClass::Crashed,
                "its result line went past the stdout cap (--max-stdout); wh stopped the process".into(),
            );
        }
        Some(Stopped::MemoryLimit) => {
            return lost(
                ExitClass::Crashed,
                memory_reason(run.memory_limit, run.peak_memory),
            );
        }
        Some(Stopped::Cancelled) => {
            return lost(ExitClass::Interrupted, "interrupted: wh was stopped".into());
        }
        None => {}
    }
    let Some(line) = &run.line else {
        let how = run.exit.map_or("it closed stdout".to_string(), |e| e.to_string());
        return lost(
            ExitClass::Crashed,
            format!("the process ended during the task ({how}) without a result"),
        );
    };
    let output = match parse_output(line) {
        Ok(output) => output,
        Err(e) => {
            return lost(
                ExitClass::Crashed,
                format!("it wrote a line that is not a result ({e}); wh replaced the process"),
            );
        }
    };
    let reusable = run.exit.is_none();
    let (class, reason) = if output.success {
        (ExitClass::Success, None)
    } else {
        let error = output.error.as_ref();
        let class = match error {
            Some(e) if e.error_type == TIMEOUT_ERROR_TYPE => ExitClass::Timeout,
            Some(e) if e.retry_possible == Some(false) => ExitClass::PermanentFailure,
            _ => ExitClass::RetriableFailure,
        };
        let reason = error.map(|e| format!("{}: {}", e.error_type, e.message.lines().next().unwrap_or("")));
        (class, reason)
    };
    (
        Classification {
            class,
            output: Some(output),
            reason,
        },
        reusable,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::Exit;
    use std::time::Duration;

    fn run(line: Option<&str>) -> TaskRun {
        TaskRun {
            line: line.map(|l| l.as_bytes().to_vec()),
            stopped: None,
            exit: None,
            duration: Duration::from_millis(1),
            stderr: Vec::new(),
            stderr_len: 0,
            stderr_utf8: true,
            peak_memory: 0,
            memory_limit: None,
        }
    }

    #[test]
    fn handshake_needs_ready_and_the_mode() {
        assert!(check_handshake(br#"{"ready": true, "mode": "persistent", "name": "x"}"#).is_ok());
        assert!(check_handshake(br#"{"ready": true}"#).is_err());
        assert!(check_handshake(br#"{"ready": "yes", "mode": "persistent"}"#).is_err());
        let err = check_handshake(br#"{"success": true, "result": {}}"#).unwrap_err();
        assert!(err.contains("not {\"ready\""), "{err}");
        assert!(
            check_handshake(b"starting up...")
                .unwrap_err()
                .contains("not JSON")
        );
    }

    #[test]
    fn the_class_comes_from_the_result() {
        let c = |l: &str| classify_line(&run(Some(l)), 10.0);
        assert_eq!(
            c(r#"{"success": true, "result": {}}"#).0.class,
            ExitClass::Success
        );
        let fail =
            |extra: &str| format!(r#"{{"success": false, "error": {{"type": "E", "message": "m"{extra}}}}}"#);
        assert_eq!(c(&fail("")).0.class, ExitClass::RetriableFailure);
        assert_eq!(
            c(&fail(r#", "retry_possible": true"#)).0.class,
            ExitClass::RetriableFailure
        );
        let permanent = c(&fail(r#", "retry_possible": false"#));
        assert_eq!(permanent.0.class, ExitClass::PermanentFailure);
        assert_eq!(permanent.0.reason.as_deref(), Some("E: m"));
        assert!(permanent.1, "a failure result keeps the process");
        let timeout = r#"{"success": false, "error": {"type": "TimeoutError", "message": "slow"}}"#;
        assert_eq!(c(timeout).0.class, ExitClass::Timeout);
    }

    #[test]
    fn garbage_an_exit_or_a_timeout_lose_the_process() {
        let (garbage, keep) = classify_line(&run(Some("Loading model...")), 10.0);
        assert_eq!(garbage.class, ExitClass::Crashed);
        assert!(!keep);
        assert!(garbage.reason.unwrap().contains("not a result"));
        let mut died = run(None);
        died.exit = Some(Exit::Signal(11));
        let (c, keep) = classify_line(&died, 10.0);
        assert_eq!(c.class, ExitClass::Crashed);
        assert!(c.reason.unwrap().contains("killed by SIGSEGV"));
        assert!(!keep);
        let mut slow = run(None);
        slow.stopped = Some(Stopped::TimedOut);
        assert_eq!(classify_line(&slow, 2.0).0.class, ExitClass::Timeout);
        // A result written just before exiting counts, but the process is gone.
        let mut last = run(Some(r#"{"success": true, "result": {}}"#));
        last.exit = Some(Exit::Code(0));
        let (c, keep) = classify_line(&last, 10.0);
        assert_eq!(c.class, ExitClass::Success);
        assert!(!keep);
    }
}
