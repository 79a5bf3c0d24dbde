//! `wh scaffold`: every template's output passes `wh test-worker --profile strict` as is, its
//! printed config entry lints clean, and bad input writes nothing.

use std::path::Path;
use std::process::Command;

use predicates::prelude::*;

use crate::persistent_workers;
use crate::support::wh;

/// `wh scaffold ARGS` run in `dir`; returns stdout.
pub(crate) fn scaffold(dir: &Path, args: &[&str]) -> String {
    let out = wh().current_dir(dir).arg("scaffold").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "wh scaffold {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The config entry the scaffold printed, as a config file in `dir`, linted.
fn lint_printed_snippet(dir: &Path, stdout: &str) {
    let snippet: String = stdout
        .lines()
        .skip_while(|l| l.trim() != "workers:")
        .take_while(|l| l.starts_with("    ") || l.trim() == "workers:")
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect();
    assert!(snippet.contains("task_types"), "no snippet in: {stdout}");
    std::fs::write(dir.join("workerhost.yaml"), &snippet).unwrap();
    let out = wh()
        .current_dir(dir)
        .args(["lint", "--deny-warnings", "workerhost.yaml"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "snippet:\n{snippet}\nlint:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The test command the scaffold printed, run in `dir` (it starts with `wh test-worker`).
fn run_printed_test_command(dir: &Path, stdout: &str) {
    let line = stdout
        .lines()
        .find(|l| l.contains("wh test-worker"))
        .expect("a test command")
        .trim();
    let cmd = line.rsplit("&& ").next().unwrap();
    let words = shell_words(cmd.strip_prefix("wh ").unwrap());
    let out = wh()
        .current_dir(dir)
        .args(&words)
        .args(["--profile", "strict"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Splits the few quoted forms the printed commands use.
fn shell_words(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| w.trim_matches('\'').to_string())
        .collect()
}

#[test]
fn python_without_venv_passes_the_gate() {
    let tmp = tempfile::tempdir().unwrap();
    let out = scaffold(
        tmp.path(),
        &["python", "image-resizer", "--task-type", "Acme.Image.Resize"],
    );
    assert!(tmp.path().join("image-resizer/pyproject.toml").is_file());
    assert!(tmp.path().join("image-resizer/.gitignore").is_file());
    assert!(
        tmp.path()
            .join("image-resizer/src/image_resizer/worker.py")
            .is_file()
    );
    run_printed_test_command(tmp.path(), &out);
    lint_printed_snippet(tmp.path(), &out);
}

#[test]
fn python_with_venv_passes_the_gate_and_its_own_pytest() {
    let tmp = tempfile::tempdir().unwrap();
    let out = scaffold(
        tmp.path(),
        &[
            "python",
            "text-cleaner",
            "--venv",
            "--description",
            "Cleans \"text\"",
        ],
    );
    let project = tmp.path().join("text-cleaner");
    run_printed_test_command(tmp.path(), &out);
    lint_printed_snippet(tmp.path(), &out);
    // Started as the host will: module + function through the venv's interpreter.
    wh().current_dir(tmp.path())
        .args([
            "test-worker",
            "--config",
            "workerhost.yaml",
            "--worker",
            "text-cleaner",
        ])
        .assert()
        .success();
    let pytest = Command::new(project.join(".venv/bin/pytest"))
        .arg("-q")
        .current_dir(&project)
        .output()
        .unwrap();
    assert!(
        pytest.status.success(),
        "{}",
        String::from_utf8_lossy(&pytest.stdout)
    );
}

/// Tools the other templates need; on CI their absence fails the run instead of skipping.
pub(crate) fn have(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "`{tool}` is required on CI"
        );
        eprintln!("skipping: `{tool}` is not installed");
    }
    found
}

#[test]
fn node_passes_the_gate_and_its_own_tests() {
    if !have("node") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = scaffold(tmp.path(), &["node", "json-echo", "--task-type", "Acme.Echo"]);
    run_printed_test_command(tmp.path(), &out);
    lint_printed_snippet(tmp.path(), &out);
    let test = Command::new("node")
        .arg("--test")
        .current_dir(tmp.path().join("json-echo"))
        .output()
        .unwrap();
    assert!(test.status.success(), "{}", String::from_utf8_lossy(&test.stdout));
}

/// Also persistent mode: built once here, the release binary serves the same checks as the
/// other templates in `persistent_workers`.
#[test]
fn rust_builds_with_cargo_and_passes_the_gate() {
    let tmp = tempfile::tempdir().unwrap();
    let out = scaffold(tmp.path(), &["rust", "fast-hasher", "--task-type", "Acme.Hash"]);
    let project = tmp.path().join("fast-hasher");
    // `cargo test` builds the worker and runs its own tests; the release build is the one the
    // printed command and config entry use.
    for args in [&["test", "--quiet"][..], &["build", "--release", "--quiet"][..]] {
        let cargo = Command::new(env!("CARGO"))
            .args(args)
            .current_dir(&project)
            .output()
            .unwrap();
        assert!(
            cargo.status.success(),
            "cargo {args:?}: {}",
            String::from_utf8_lossy(&cargo.stderr)
        );
    }
    let line = out.lines().find(|l| l.contains("wh test-worker")).unwrap();
    let cmd = line.rsplit("&& ").next().unwrap();
    let words = shell_words(cmd.strip_prefix("wh ").unwrap());
    wh().current_dir(tmp.path())
        .args(&words)
        .args(["--profile", "strict"])
        .assert()
        .success();
    lint_printed_snippet(tmp.path(), &out);
    let binary = || Command::new(project.join("target/release/fast-hasher"));
    persistent_workers::serves_a_thousand_tasks(binary(), "Acme.Hash", "rust template");
    persistent_workers::stops_on_sigterm_between_tasks(binary(), "Acme.Hash", "rust template");
}

#[test]
fn config_template_lints_clean_and_is_not_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("other.txt"), "keep").unwrap();
    scaffold(tmp.path(), &["config"]);
    wh().current_dir(tmp.path())
        .args(["lint", "--deny-warnings", "workerhost.yaml"])
        .assert()
        .success();
    let schema = std::fs::read_to_string(tmp.path().join("workerhost.schema.json")).unwrap();
    assert!(schema.contains("\"title\": \"WorkerHost configuration\""));
    wh().current_dir(tmp.path())
        .args(["scaffold", "config"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("workerhost.yaml` exists"));
}

#[test]
fn bad_input_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let entries = |p: &Path| std::fs::read_dir(p).unwrap().count();
    wh().current_dir(tmp.path())
        .args(["scaffold", "python", "Image Resizer"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("invalid worker name `Image Resizer`"));
    wh().current_dir(tmp.path())
        .args(["scaffold", "python", "json"])
        .assert()
        .code(2);
    wh().current_dir(tmp.path())
        .args(["scaffold", "cobol", "w"])
        .assert()
        .code(2);
    wh().current_dir(tmp.path())
        .args(["scaffold", "python", "w", "--task-type", "has space"])
        .assert()
        .code(2);
    assert_eq!(entries(tmp.path()), 0);

    std::fs::create_dir(tmp.path().join("taken")).unwrap();
    std::fs::write(tmp.path().join("taken/notes.txt"), "mine").unwrap();
    wh().current_dir(tmp.path())
        .args(["scaffold", "python", "w", "--dir", "taken"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("exists and is not empty"))
        .stderr(predicate::str::contains("--force"));
    assert_eq!(entries(&tmp.path().join("taken")), 1);

    // A parent that is a file: the folder cannot be created.
    std::fs::write(tmp.path().join("file"), "").unwrap();
    wh().current_dir(tmp.path())
        .args(["scaffold", "python", "w", "--dir", "file/sub"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cannot write"));
    assert_eq!(entries(tmp.path()), 2, "no staging folder left behind");
    wh().current_dir(tmp.path())
        .args(["scaffold", "node", "w", "--venv"])
        .assert()
        .code(2);
}

#[test]
fn force_writes_into_a_non_empty_folder() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("w")).unwrap();
    std::fs::write(tmp.path().join("w/notes.txt"), "mine").unwrap();
    scaffold(tmp.path(), &["python", "w", "--force"]);
    assert!(tmp.path().join("w/notes.txt").is_file());
    assert!(tmp.path().join("w/src/w/worker.py").is_file());
}

#[test]
fn list_shows_every_template() {
    wh().args(["scaffold", "--list"])
        .assert()
        .success()
        .stdout(predicate::str::contains("python"))
        .stdout(predicate::str::contains("node"))
        .stdout(predicate::str::contains("rust"))
        .stdout(predicate::str::contains("config"));
}
