//! How a configured worker becomes a command line: the same one for `wh host`,
//! `wh test-worker --config` and `wh send --config`.
//!
//! | form | command line | working directory |
//! |---|---|---|
//! | `module` | `<venv_python> -c <bootstrap> <module> <function>` | `project_path` |
//! | `script` | `<venv_python> <project_path>/<script>` | `project_path` |
//! | `command` | the argv as given (`command[0]` with a `/` is taken relative to `project_path`) | `project_path` |
//!
//! The bootstrap imports `module` (from `project_path`, which `-c` puts first on `sys.path`),
//! calls `function()` with no arguments and exits with the int it returns (0 for anything
//! else). The design's own host ran `python -m module function`, which runs the module as a
//! script and never calls the function; this does.

use std::path::{Path, PathBuf};

use super::model::Worker;
use crate::runner::WorkerCommand;

/// The Python program that calls `function` from `module`.
pub const MODULE_BOOTSTRAP: &str = "import importlib, sys
_module, _function = sys.argv[1], sys.argv[2]
sys.argv = [_module]
_result = getattr(importlib.import_module(_module), _function)()
sys.exit(_result if isinstance(_result, int) and not isinstance(_result, bool) else 0)
";

/// The default entry point of a `module` worker.
pub const DEFAULT_FUNCTION: &str = "main";

/// The worker's working directory: `project_path` relative to the config's folder.
pub fn working_dir(worker: &Worker, config_dir: &Path) -> PathBuf {
    match &worker.project_path {
        Some(p) => join(config_dir, p),
        None => config_dir.to_path_buf(),
    }
}

/// `base/rel` without `.` segments (`cfg/./venv` reads as `cfg/venv`); `..` is kept, since
/// resolving it lexically could be wrong across symlinks.
pub fn join(base: &Path, rel: impl AsRef<Path>) -> PathBuf {
    let joined = base.join(rel);
    let mut out = PathBuf::new();
    for part in joined.components() {
        if part != std::path::Component::CurDir {
            out.push(part);
        }
    }
    if out.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        out
    }
}

/// The interpreter of a `module` or `script` worker: `venv_python` relative to the config's
/// folder when it is a path, else looked up on `$PATH`; default `python3`.
pub fn interpreter(worker: &Worker, config_dir: &Path) -> PathBuf {
    match &worker.venv_python {
        Some(p) if p.contains('/') || p.contains('\\') => join(config_dir, p),
        Some(p) => PathBuf::from(p),
        None => PathBuf::from("python3"),
    }
}

/// Why a worker entry cannot become a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartFormError {
    #[error("worker `{0}` has no way to start: give one of `module`, `script` or `command`")]
    None(String),
    #[error("worker `{0}` has more than one way to start ({1}): keep exactly one")]
    Several(String, String),
    #[error("worker `{0}` has an empty `command`")]
    EmptyCommand(String),
}

/// Environment variables that carry the task source's secrets: those the raw (unsubstituted)
/// `task_manager.api_key` and `task_manager.url` refer to, and the API key and URL overrides.
/// Workers never get them.
pub fn secret_vars(raw: &serde_json::Value) -> Vec<String> {
    // The URL override can carry a password too.
    let mut names = vec![
        "WORKERHOST_TASKMANAGER_API_KEY".to_string(),
        "WORKERHOST_TASKMANAGER_URL".to_string(),
    ];
    for pointer in ["/task_manager/api_key", "/task_manager/url"] {
        if let Some(text) = raw.pointer(pointer).and_then(serde_json::Value::as_str) {
            names.extend(super::env::references(text).into_iter().map(|r| r.var));
        }
    }
    names.sort();
    names.dedup();
    names
}

/// The forms a worker entry gives.
pub fn start_forms(worker: &Worker) -> Vec<&'static str> {
    let mut forms = Vec::new();
    if worker.module.is_some() {
        forms.push("module");
    }
    if worker.script.is_some() {
        forms.push("script");
    }
    if worker.command.is_some() {
        forms.push("command");
    }
    forms
}

/// The command that starts `worker`, with its working directory and environment.
pub fn worker_command(worker: &Worker, config_dir: &Path) -> Result<WorkerCommand, StartFormError> {
    // Absolute, because the worker runs in project_path: a relative script path would be
    // looked up from there.
    let absolute = std::path::absolute(config_dir).unwrap_or_else(|_| config_dir.to_path_buf());
    let config_dir = absolute.as_path();
    let cwd = working_dir(worker, config_dir);
    let forms = start_forms(worker);
    let mut cmd = match forms.as_slice() {
        [] => return Err(StartFormError::None(worker.name.clone())),
        ["module"] => WorkerCommand::new(interpreter(worker, config_dir))
            .arg("-c")
            .arg(MODULE_BOOTSTRAP)
            .arg(worker.module.clone().unwrap_or_default())
            .arg(worker.function.clone().unwrap_or_else(|| DEFAULT_FUNCTION.into())),
        ["script"] => WorkerCommand::new(interpreter(worker, config_dir))
            .arg(join(&cwd, worker.script.as_deref().unwrap_or(""))),
        ["command"] => {
            let argv = worker.command.as_deref().unwrap_or_default();
            let Some((program, args)) = argv.split_first() else {
                return Err(StartFormError::EmptyCommand(worker.name.clone()));
            };
            let program = if program.contains('/') {
                join(&cwd, program)
            } else {
                PathBuf::from(program)
            };
            let mut cmd = WorkerCommand::new(program);
            cmd.args = args.iter().map(Into::into).collect();
            cmd
        }
        several => return Err(StartFormError::Several(worker.name.clone(), several.join(", "))),
    };
    cmd.cwd = Some(cwd);
    cmd.env = worker.env.iter().map(|(k, v)| (k.into(), v.into())).collect();
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(json: serde_json::Value) -> Worker {
        let mut base = serde_json::json!({"name": "w", "task_types": ["T"]});
        base.as_object_mut()
            .unwrap()
            .extend(json.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn module_form_calls_the_function() {
        let w = worker(
            serde_json::json!({"venv_python": "./venv/bin/python", "module": "src.w", "project_path": "proj"}),
        );
        let cmd = worker_command(&w, Path::new("/etc/wh")).unwrap();
        assert_eq!(cmd.program, "/etc/wh/venv/bin/python");
        assert_eq!(cmd.args[0], "-c");
        assert_eq!(cmd.args[2], "src.w");
        assert_eq!(cmd.args[3], "main");
        assert_eq!(cmd.cwd.as_deref(), Some(Path::new("/etc/wh/proj")));
    }

    #[test]
    fn script_and_command_forms() {
        let s = worker(serde_json::json!({"script": "worker.py", "project_path": "p"}));
        let cmd = worker_command(&s, Path::new("/c")).unwrap();
        assert_eq!(cmd.program, "python3");
        assert_eq!(cmd.args, vec![std::ffi::OsString::from("/c/p/worker.py")]);
        let c = worker(serde_json::json!({"command": ["node", "w.js"], "env": {"A": "1"}}));
        let cmd = worker_command(&c, Path::new("/c")).unwrap();
        assert_eq!((cmd.program.to_str(), cmd.args.len()), (Some("node"), 1));
        assert_eq!(cmd.env, vec![("A".into(), "1".into())]);
    }

    #[test]
    fn exactly_one_form() {
        assert!(matches!(
            worker_command(&worker(serde_json::json!({})), Path::new("/")),
            Err(StartFormError::None(_))
        ));
        let two = worker(serde_json::json!({"module": "m", "command": ["x"]}));
        assert_eq!(
            worker_command(&two, Path::new("/")).unwrap_err().to_string(),
            "worker `w` has more than one way to start (module, command): keep exactly one"
        );
    }

    #[test]
    fn the_bootstrap_really_calls_the_function() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("pkg")).unwrap();
        std::fs::write(dir.path().join("pkg/__init__.py"), "").unwrap();
        std::fs::write(
            dir.path().join("pkg/entry.py"),
            "import sys\ndef run():\n    print(sys.argv)\n    return 7\n",
        )
        .unwrap();
        let out = std::process::Command::new("python3")
            .current_dir(dir.path())
            .args(["-c", MODULE_BOOTSTRAP, "pkg.entry", "run"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(7));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "['pkg.entry']");
    }
}
