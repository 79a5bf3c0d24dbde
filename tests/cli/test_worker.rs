//! `wh test-worker`: selection, options, exit codes and errors.

use predicates::prelude::*;

use crate::support::{report, wh};

const EXAMPLE: &str = "example-workers/python/example_worker.py";

#[test]
fn the_quick_start_command_passes() {
    wh().args(["test-worker", EXAMPLE])
        .assert()
        .success()
        .stdout(predicate::str::contains("13/13 passed"))
        .stdout(predicate::str::contains(
            "PASS  protocol compliant (profile strict)",
        ));
}

#[test]
fn basic_runs_the_four_reference_cases() {
    let (code, report) = report(&["--profile", "basic", EXAMPLE]);
    assert_eq!(code, 0);
    let names: Vec<_> = report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "Valid Task Processing",
            "Missing Task ID",
            "Unknown Task Type",
            "Empty Params"
        ]
    );
}

#[test]
fn case_and_skip_select() {
    let (_, report) = report(&["--case", "basic.*", "--skip", "basic.empty-params", EXAMPLE]);
    let cases = report["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    assert_eq!(cases[3]["status"], "skipped");
    assert_eq!(report["summary"]["skipped"], 1);
    assert_eq!(report["summary"]["passed"], 3);
}

#[test]
fn an_unknown_case_suggests_the_closest() {
    wh().args(["test-worker", "--case", "basic.valid-tsk", EXAMPLE])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("did you mean `basic.valid-task`?"));
}

#[test]
fn task_type_and_params_reach_the_success_cases() {
    // compliant.py handles only the example type, so the case fails; what matters is the task.
    let (_, report) = report(&[
        "--case",
        "basic.valid-task",
        "--task-type",
        "Custom.Type",
        "--params",
        r#"{"k": "v"}"#,
        "--",
        "python3",
        "fixtures/workers/compliant.py",
    ]);
    let task = report["cases"][0]["runs"][0]["task"].as_str().unwrap();
    assert!(
        task.contains(r#""type": "Custom.Type", "params": {"k": "v"}"#),
        "{task}"
    );
}

#[test]
fn params_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("params.json");
    std::fs::write(&file, r#"{"input_data": "from file"}"#).unwrap();
    let (code, report) = report(&[
        "--case",
        "basic.valid-task",
        "--params",
        &format!("@{}", file.display()),
        EXAMPLE,
    ]);
    assert_eq!(code, 0);
    assert!(
        report["cases"][0]["runs"][0]["task"]
            .as_str()
            .unwrap()
            .contains("from file")
    );
}

#[test]
fn bad_input_is_a_clear_usage_error() {
    wh().args(["test-worker", "--params", "{nope", EXAMPLE])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "invalid JSON in --params at line 1, column 2",
        ));
    wh().args(["test-worker", "missing_worker.py"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "error: worker not found: missing_worker.py",
        ));
    wh().args(["test-worker", "Cargo.toml"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("worker is not executable"))
        .stderr(predicate::str::contains("hint: run `chmod +x Cargo.toml`"));
    wh().args(["test-worker", "--", "no-such-program-wh"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("`no-such-program-wh` was not found"));
    wh().args(["test-worker", "--timeout", "0", EXAMPLE])
        .assert()
        .code(2);
    wh().args(["test-worker"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no worker given"));
}

#[test]
fn output_file_gets_the_report_and_stdout_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("report.xml");
    wh().args([
        "test-worker",
        "--profile",
        "basic",
        "--format",
        "junit",
        "--output",
    ])
    .arg(&file)
    .arg(EXAMPLE)
    .assert()
    .success()
    .stdout(predicate::str::contains("4/4 passed"));
    let xml = std::fs::read_to_string(&file).unwrap();
    assert!(xml.contains(r#"<testcase name="basic.valid-task""#), "{xml}");
}

#[test]
fn parallel_output_keeps_catalogue_order() {
    let serial = wh().args(["test-worker", "--list"]).output().unwrap().stdout;
    let ids: Vec<String> = String::from_utf8(serial)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with(' '))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    let out = wh().args(["test-worker", "-j", "4", EXAMPLE]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let shown: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("PASS  ") && l.ends_with(" ms)"))
        .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
        .collect();
    assert_eq!(shown, ids);
}
