//! `wh lint`: each broken config in `fixtures/configs/` is caught by its rule on the right
//! line (with a snapshot of the human output), clean configs stay clean, hostile input fails
//! fast, and every format holds the same findings.

use predicates::prelude::*;
use serde_json::Value;

use crate::support::{ROOT, wh};

/// (fixture, rule that must fire, line it must point at)
const CAUGHT: &[(&str, &str, usize)] = &[
    ("duplicate_worker_name.yaml", "duplicate-worker-name", 5),
    ("task_type_shadowed.yaml", "task-type-shadowed", 7),
    ("undefined_env_var.yaml", "undefined-env-var", 3),
    ("literal_secret.yaml", "literal-secret", 4),
    ("worker_start_form.yaml", "worker-start-form", 2),
    ("executable_missing.yaml", "executable-missing", 3),
    ("project_path_missing.yaml", "project-path-missing", 3),
    ("module_not_found.yaml", "module-not-found", 4),
    ("windows_venv_path.yaml", "windows-venv-path", 3),
    ("timeout_range.yaml", "timeout-range", 2),
    ("negative_retries.yaml", "negative-retries", 5),
    ("endpoint_conflict.yaml", "endpoint-conflict", 10),
    ("unsupported_task_manager.yaml", "unsupported-task-manager", 2),
    ("unknown_key.yaml", "unknown-key", 5),
    ("invalid_value.yaml", "invalid-value", 6),
    ("wrong_type.yaml", "wrong-type", 3),
    ("missing_key.yaml", "missing-key", 2),
    ("source_fields.yaml", "source-fields", 3),
    ("syntax_error.yaml", "syntax", 4),
    ("invalid_json.json", "syntax", 3),
    ("alias_bomb.yaml", "syntax", 7),
    ("deep_nesting.yaml", "syntax", 1),
];

fn lint_json(file: &str) -> (i32, Value) {
    let out = wh().args(["lint", "--format", "json", file]).output().unwrap();
    (
        out.status.code().unwrap(),
        serde_json::from_slice(&out.stdout).unwrap(),
    )
}

#[test]
fn each_broken_config_is_caught_by_its_rule_on_its_line() {
    for (fixture, rule, line) in CAUGHT {
        let path = format!("fixtures/configs/{fixture}");
        let (_, report) = lint_json(&path);
        let found = report["files"][0]["diagnostics"].as_array().unwrap();
        assert!(
            found.iter().any(|d| d["rule"] == *rule && d["line"] == *line),
            "{fixture}: expected {rule} on line {line}, got {found:#?}"
        );
    }
}

#[test]
fn human_output_of_each_broken_config() {
    for (fixture, _, _) in CAUGHT {
        let path = format!("fixtures/configs/{fixture}");
        let out = wh().args(["lint", &path]).output().unwrap();
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_path(format!("{ROOT}/tests/cli/snapshots/lint"));
        settings.set_snapshot_suffix(fixture.replace('.', "_"));
        settings.bind(|| insta::assert_snapshot!(String::from_utf8_lossy(&out.stdout)));
    }
}

#[test]
fn exit_codes() {
    wh().args(["lint", "fixtures/configs/clean.json"])
        .assert()
        .code(0)
        .stdout("no problems in 1 file\n");
    wh().args(["lint", "fixtures/configs/negative_retries.yaml"])
        .assert()
        .code(1);
    // Warnings pass unless denied.
    wh().args(["lint", "fixtures/configs/windows_venv_path.yaml"])
        .assert()
        .code(0);
    wh().args([
        "lint",
        "--deny-warnings",
        "fixtures/configs/windows_venv_path.yaml",
    ])
    .assert()
    .code(1);
    wh().args(["lint", "no/such/file.yaml"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cannot read"));
    wh().args(["lint", "README.md"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("use .yaml, .yml or .json"));
}

#[test]
fn the_reference_shape_has_no_errors_only_path_and_not_enforced_warnings() {
    let (code, report) = lint_json("fixtures/configs/reference_shape.yaml");
    assert_eq!(code, 0);
    assert_eq!(report["errors"], 0);
    let rules: Vec<&str> = report["files"][0]["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["rule"].as_str().unwrap())
        .collect();
    assert!(!rules.is_empty());
    assert!(
        rules.iter().all(|r| [
            "project-path-missing",
            "executable-missing",
            "windows-venv-path",
            "not-enforced"
        ]
        .contains(r)),
        "{rules:?}"
    );
}

#[test]
fn the_designs_own_reference_config_has_no_errors_when_present() {
    // shared/ sits beside the project on the team's machines; the fixture above proves the
    // same shape when it does not.
    let reference = std::path::Path::new(ROOT).join("../shared/reference/workerhost_config.yaml");
    if reference.is_file() {
        wh().arg("lint")
            .arg(&reference)
            .env_remove("TASKMANAGER_API_KEY")
            .assert()
            .code(0);
    }
}

#[test]
fn example_configs_lint_clean() {
    for file in [
        "example-workers/workerhost.yaml",
        "fixtures/configs/clean.json",
        "fixtures/configs/module_form.yaml",
    ] {
        wh().args(["lint", "--deny-warnings", file]).assert().code(0);
    }
}

#[test]
fn config_examples_in_the_docs_lint_clean() {
    let doc = std::fs::read_to_string(format!("{ROOT}/docs/config.md")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for (i, block) in doc.split("```yaml\n").skip(1).enumerate() {
        let body = block.split("```").next().unwrap();
        if !body.contains("workers:") {
            continue;
        }
        let file = dir.path().join(format!("block{i}.yaml"));
        std::fs::write(&file, body).unwrap();
        let out = wh()
            .arg("lint")
            .arg("--format")
            .arg("json")
            .arg(&file)
            .output()
            .unwrap();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["errors"], 0, "docs/config.md block {i}: {report:#}");
        checked += 1;
    }
    assert!(checked > 0, "docs/config.md has no complete yaml example");
}

#[test]
fn hostile_input_fails_fast_and_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let huge = dir.path().join("huge.yaml");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(100 * 1024 * 1024)
        .unwrap();
    wh().arg("lint")
        .arg(&huge)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("limited to 10 MiB"));
    let garbage = dir.path().join("garbage.yaml");
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let bytes: Vec<u8> = (0..100_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    std::fs::write(&garbage, bytes).unwrap();
    wh().arg("lint")
        .arg(&garbage)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("is not text"));
    wh().args(["lint", "fixtures/configs/alias_bomb.yaml"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("alias bomb"));
}

#[test]
fn formats_hold_the_same_findings() {
    let file = "fixtures/configs/timeout_range.yaml";
    let out = wh().args(["lint", "--format", "sarif", file]).output().unwrap();
    let sarif: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["ruleId"], "timeout-range");
    assert_eq!(
        results[0]["locations"][0]["physicalLocation"]["region"]["startLine"],
        2
    );
    let github = wh().args(["lint", "--format", "github", file]).output().unwrap();
    let text = String::from_utf8(github.stdout).unwrap();
    assert_eq!(text.lines().count(), 3);
    assert!(
        text.starts_with("::error file=fixtures/configs/timeout_range.yaml,line=2,col=18,"),
        "{text}"
    );
}

#[test]
fn print_schema_is_the_published_schema() {
    let published = std::fs::read_to_string(format!("{ROOT}/schemas/config.schema.json")).unwrap();
    wh().args(["lint", "--print-schema"])
        .assert()
        .success()
        .stdout(published);
}

#[test]
fn env_substitution_and_overrides_reach_the_checks() {
    // A default types like YAML; an override can break a valid file, and lint sees it.
    wh().args(["lint", "fixtures/configs/clean.json"])
        .env("WORKERHOST_TASKMANAGER_TIMEOUT", "-3")
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "task_manager.timeout must be more than 0 seconds",
        ));
    wh().args(["lint", "fixtures/configs/clean.json"])
        .env("WORKERHOST_LOGING_LEVEL", "DEBUG")
        .assert()
        .code(0)
        .stdout(predicate::str::contains(
            "did you mean `WORKERHOST_LOGGING_LEVEL`?",
        ));
}

#[test]
fn test_worker_and_send_start_a_configured_worker_as_the_host_would() {
    wh().args([
        "test-worker",
        "--config",
        "example-workers/workerhost.yaml",
        "--worker",
        "example",
    ])
    .assert()
    .success()
    .stdout(predicate::str::contains("13/13 passed"));
    // Module form: the function is really called.
    wh().args([
        "test-worker",
        "--profile",
        "basic",
        "--config",
        "fixtures/configs/module_form.yaml",
        "--worker",
    ])
    .arg("example-module")
    .assert()
    .success();
    // The task type defaults to the worker's first.
    let out = wh()
        .args([
            "send",
            "--config",
            "example-workers/workerhost.yaml",
            "--worker",
            "example",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_wrong_worker_name_or_a_broken_config_is_a_usage_error() {
    wh().args([
        "test-worker",
        "--config",
        "example-workers/workerhost.yaml",
        "--worker",
        "exampel",
    ])
    .assert()
    .code(2)
    .stderr(predicate::str::contains("did you mean `example`?"));
    wh().args([
        "send",
        "--config",
        "fixtures/configs/negative_retries.yaml",
        "--worker",
        "w",
    ])
    .assert()
    .code(64)
    .stderr(predicate::str::contains("[negative-retries]"));
    wh().args([
        "send",
        "--config",
        "fixtures/configs/undefined_env_var.yaml",
        "--worker",
        "w",
    ])
    .assert()
    .code(64)
    .stderr(predicate::str::contains("WH_TEST_SURELY_UNDEFINED_URL"));
}

#[test]
fn the_task_sources_secret_never_reaches_a_worker() {
    let out = wh()
        .args([
            "send",
            "--config",
            "fixtures/configs/secret_env.yaml",
            "--worker",
            "env-reporter",
        ])
        .env("WH_TEST_SECRET_KEY", "s3cret")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["result"]["secret_seen"], false);
    assert_eq!(result["result"]["extra"], "from the config");
}
