//! How a worker is named on the command line, and the command line it becomes.
//!
//! - a path ending in `.py` runs with `--python PATH`, else `$WH_PYTHON`, else `python3`;
//! - any other existing file must be executable and runs directly (its `#!` line decides);
//! - `-- PROGRAM ARGS...` runs exactly that command.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// A resolved worker command: what to execute, with which arguments, where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerCommand {
    pub program: OsString,
    pub args: Vec<OsString>,
    pub cwd: Option<PathBuf>,
    pub env: Vec<(OsString, OsString)>,
    /// Variables of `wh`'s own environment the worker must not see (the task source's secrets).
    pub env_remove: Vec<OsString>,
}

impl WorkerCommand {
    pub fn new(program: impl Into<OsString>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            cwd: None,
            env: Vec::new(),
            env_remove: Vec::new(),
        }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// The command as one shell-quoted line, for reports and reproduce commands.
    pub fn display(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|s| shell_quote(&s.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Why a worker named on the command line cannot be run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    #[error("no worker given")]
    Missing,
    #[error("worker not found: {0}")]
    NotFound(String),
    #[error("worker is a directory, not a file: {0}")]
    Directory(String),
    #[error("worker is not executable: {0}")]
    NotExecutable(String),
    #[error("give the worker either as a path or after `--`, not both")]
    Both,
}

impl ResolveError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            ResolveError::Missing => {
                Some("name a worker file (`worker.py`, an executable) or a command after `--`".into())
            }
            ResolveError::NotExecutable(path) => Some(format!(
                "run `chmod +x {path}` (with a #! line), or name its interpreter: `-- node {path}`"
            )),
            ResolveError::NotFound(_) => Some("check the path; a command on $PATH goes after `--`".into()),
            _ => None,
        }
    }
}

/// The interpreter for `.py` workers: `--python`, else `$WH_PYTHON`, else `python3`.
pub fn python_interpreter(flag: Option<&Path>) -> OsString {
    flag.map(|p| p.as_os_str().to_owned())
        .or_else(|| std::env::var_os("WH_PYTHON").filter(|v| !v.is_empty()))
        .unwrap_or_else(|| OsString::from("python3"))
}

/// Turns `wh ... <worker>` or `wh ... -- <command...>` into a command to run.
pub fn resolve(
    worker: Option<&Path>,
    command: &[OsString],
    python: Option<&Path>,
) -> Result<WorkerCommand, ResolveError> {
    match (worker, command.split_first()) {
        (Some(_), Some(_)) => Err(ResolveError::Both),
        (None, None) => Err(ResolveError::Missing),
        (None, Some((program, args))) => {
            let mut cmd = WorkerCommand::new(program.clone());
            cmd.args = args.to_vec();
            Ok(cmd)
        }
        (Some(path), None) => resolve_path(path, python),
    }
}

fn resolve_path(path: &Path, python: Option<&Path>) -> Result<WorkerCommand, ResolveError> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|_| ResolveError::NotFound(shown.clone()))?;
    if meta.is_dir() {
        return Err(ResolveError::Directory(shown));
    }
    if path.extension().is_some_and(|e| e == "py") {
        return Ok(WorkerCommand::new(python_interpreter(python)).arg(path));
    }
    if !is_executable(&meta) {
        return Err(ResolveError::NotExecutable(shown));
    }
    // A bare file name would be looked up on $PATH by exec; make it explicitly relative.
    let program = if path.components().count() == 1 {
        Path::new(".").join(path)
    } else {
        path.to_path_buf()
    };
    Ok(WorkerCommand::new(program))
}

#[cfg(unix)]
fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_meta: &std::fs::Metadata) -> bool {
    true
}

/// Quotes a word for a POSIX shell when it needs it.
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_file_runs_with_the_chosen_interpreter() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("w.py");
        std::fs::write(&file, "print()").unwrap();
        let cmd = resolve(Some(&file), &[], Some(Path::new("/opt/py"))).unwrap();
        assert_eq!(cmd.program, "/opt/py");
        assert_eq!(cmd.args, vec![file.as_os_str().to_owned()]);
    }

    #[test]
    fn non_executable_file_is_refused_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("worker.js");
        std::fs::write(&file, "").unwrap();
        let err = resolve(Some(&file), &[], None).unwrap_err();
        assert!(matches!(err, ResolveError::NotExecutable(_)));
        assert!(err.hint().unwrap().contains("chmod +x"));
    }

    #[test]
    fn missing_file_and_both_forms_are_errors() {
        assert!(matches!(
            resolve(Some(Path::new("/nope/w.py")), &[], None),
            Err(ResolveError::NotFound(_))
        ));
        assert_eq!(
            resolve(Some(Path::new("w.py")), &["node".into()], None),
            Err(ResolveError::Both)
        );
        assert_eq!(resolve(None, &[], None), Err(ResolveError::Missing));
    }

    #[test]
    fn command_after_dashes_runs_as_given() {
        let cmd = resolve(None, &["node".into(), "worker.js".into()], None).unwrap();
        assert_eq!(cmd.display(), "node worker.js");
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("x.py"), "x.py");
    }
}
