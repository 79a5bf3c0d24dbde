//! One file per subcommand: each turns parsed arguments into calls on the protocol core,
//! the runner and the compliance suite, and returns an exit code.

pub mod host;
pub mod lint;
pub mod queue;
pub mod scaffold;
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

/// A worker to run, and the task types its config entry lists (none for a bare file).
pub struct ResolvedWorker {
    pub command: WorkerCommand,
    pub task_types: Vec<String>,
}

/// Resolves the worker named on the command line: a file, a command after `--`, or
/// `--config FILE --worker NAME`, started exactly as the host would start it.
pub fn worker_command(args: &WorkerArgs, code: u8) -> Result<ResolvedWorker, Failure> {
    if let (Some(config), Some(name)) = (&args.config, &args.worker_name) {
        return configured_worker(config, name, code);
    }
    let command = runner::resolve(args.worker.as_deref(), &args.command, args.python.as_deref())
        .map_err(|e| Failure::new(code, e.to_string()).maybe_hint(e.hint()))?;
    Ok(ResolvedWorker {
        command,
        task_types: Vec::new(),
    })
}

/// Loads a config to run something from it: any lint error, or an unset `${VAR}`, refuses it
/// with the findings as causes.
pub fn load_for_run(
    path: &std::path::Path,
    code: u8,
) -> Result<(crate::config::load::Loaded, crate::config::model::Config), Failure> {
    use crate::config::load;
    use crate::lint::{Severity, lint_loaded};
    let shown = path.display();
    let loaded = load::load(path, &load::Environment::from_process())
        .map_err(|e| Failure::new(code, format!("cannot load config `{shown}`")).cause(e))?;
    let report = lint_loaded(&loaded);
    // To run a worker, an unset ${VAR} is an error, not the lint warning it is elsewhere.
    let errors: Vec<_> = report
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error || d.rule == "undefined-env-var")
        .collect();
    if !errors.is_empty() {
        let mut failure = Failure::new(code, format!("config `{shown}` has {} error(s)", errors.len()))
            .hint(format!("`wh lint {shown}` shows each one with its line"));
        for d in errors.iter().take(5) {
            let line = d
                .span
                .map(|s| format!(":{}:{}", s.start.line, s.start.col))
                .unwrap_or_default();
            failure = failure.cause(format!("{shown}{line}: [{}] {}", d.rule, d.message));
        }
        return Err(failure);
    }
    let config = loaded
        .config
        .clone()
        .expect("a config without errors deserializes");
    Ok((loaded, config))
}

fn configured_worker(path: &std::path::Path, name: &str, code: u8) -> Result<ResolvedWorker, Failure> {
    use crate::config::resolve;
    let shown = path.display();
    let (loaded, config) = load_for_run(path, code)?;
    let Some(worker) = config.workers.iter().find(|w| w.name == name) else {
        let names: Vec<&str> = config.workers.iter().map(|w| w.name.as_str()).collect();
        let hint = match crate::lint::did_you_mean(name, names.iter().copied()) {
            Some(close) => format!("did you mean `{close}`?"),
            None => format!("workers in this config: {}", names.join(", ")),
        };
        return Err(Failure::new(code, format!("no worker named `{name}` in `{shown}`")).hint(hint));
    };
    let mut command =
        resolve::worker_command(worker, &loaded.dir).map_err(|e| Failure::new(code, e.to_string()))?;
    // The task source's secrets never reach a worker.
    command.env_remove = resolve::secret_vars(&loaded.tree.to_json())
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(ResolvedWorker {
        command,
        task_types: worker.task_types.clone(),
    })
}

/// Limits from the shared flags.
pub fn limits(args: &LimitArgs, timeout: std::time::Duration) -> Limits {
    Limits {
        timeout,
        max_stdout: args.max_stdout,
        stderr_tail: args.stderr_tail,
        kill_grace: args.kill_grace,
        echo_stderr: false,
        max_memory: None,
        die_with_parent: false,
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
