//! One file per subcommand: each turns parsed arguments into calls on the protocol core,
//! the runner and the compliance suite, and returns an exit code.

pub mod send;
pub mod test_worker;

use serde_json::{Map, Value};

use crate::cli::{LimitArgs, WorkerArgs};
use crate::error::Failure;
use crate::runner::{self, Limits, WorkerCommand};

/// Parses `--params JSON|@FILE` into an object; errors name the flag and the position.
pub fn parse_params(flag: &str, text: &str, code: u8) -> Result<Map<String, Value>, Failure> {
    let (source, json) = match text.strip_prefix('@') {
        Some(path) => {
            let json = std::fs::read_to_string(path)
                .map_err(|e| Failure::new(code, format!("cannot read {flag} file `{path}`")).cause(e))?;
            (format!("{flag} file `{path}`"), json)
        }
        None => (flag.to_string(), text.to_string()),
    };
    let value: Value = serde_json::from_str(&json).map_err(|e| {
        Failure::new(
            code,
            format!(
                "invalid JSON in {source} at line {}, column {}: {}",
                e.line(),
                e.column(),
                strip_position(&e)
            ),
        )
        .hint(format!(
            r#"{flag} takes a JSON object, e.g. {flag} '{{"input_data": "hello"}}', or @file.json"#
        ))
    })?;
    match value {
        Value::Object(map) => Ok(map),
        other => Err(Failure::new(
            code,
            format!("{source} must be a JSON object, not {}", kind(&other)),
        )
        .hint(format!(
            r#"wrap it in an object, e.g. {flag} '{{"value": {other}}}'"#
        ))),
    }
}

fn strip_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Resolves the worker named on the command line.
pub fn worker_command(args: &WorkerArgs, code: u8) -> Result<WorkerCommand, Failure> {
    runner::resolve(args.worker.as_deref(), &args.command, args.python.as_deref())
        .map_err(|e| Failure::new(code, e.to_string()).maybe_hint(e.hint()))
}

/// Limits from the shared flags.
pub fn limits(args: &LimitArgs, timeout: std::time::Duration) -> Limits {
    Limits {
        timeout,
        max_stdout: args.max_stdout,
        stderr_tail: args.stderr_tail,
        kill_grace: args.kill_grace,
        echo_stderr: false,
    }
}

/// Maps a failure to start the worker to the command's usage code.
pub fn spawn_failure(e: runner::SpawnError, code: u8) -> Failure {
    let hint = e.hint.clone();
    Failure::new(code, e.to_string()).maybe_hint(hint)
}

/// Writes to stdout; a closed pipe (`wh ... | head`) is not an error.
pub fn print_stdout(text: &[u8]) -> Result<(), Failure> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::new(crate::exit::USAGE, "failed to write to stdout").cause(e)),
    }
}

/// Whether colour is wanted on a stream: a terminal, and NO_COLOR not set.
pub fn color_for(term: &console::Term) -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && term.is_term()
        && std::env::var("TERM").map(|t| t != "dumb").unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_params_name_the_flag_and_position() {
        let err = parse_params("--params", r#"{"a": }"#, 2).unwrap_err();
        assert_eq!(
            err.message,
            "invalid JSON in --params at line 1, column 7: expected value"
        );
        let err = parse_params("--params", "[1]", 2).unwrap_err();
        assert_eq!(err.message, "--params must be a JSON object, not an array");
        assert!(parse_params("--params", "{}", 2).unwrap().is_empty());
    }
}
