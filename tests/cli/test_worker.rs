//! `wh test-worker`: selection, options, exit codes and errors, in both modes.

use std::time::{Duration, Instant};

use predicates::prelude::*;
use serde_json::Value;

use crate::support::{ROOT, not_passed, report, status, wh};

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

// --- persistent mode (docs/protocol.md section 8) ---

/// The JSON report of `--mode persistent`, checked against schemas/report.schema.json.
fn persistent_report(args: &[&str]) -> (i32, Value) {
    let mut all = vec!["--mode", "persistent"];
    all.extend_from_slice(args);
    let (code, report) = report(&all);
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{ROOT}/schemas/report.schema.json")).unwrap())
            .unwrap();
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    let errors: Vec<String> = validator.iter_errors(&report).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{args:?}: {errors:#?}");
    assert_eq!(report["mode"], "persistent");
    (code, report)
}

fn case<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no case {id}"))
}

/// The first finding's `actual` of a case.
fn actual<'a>(report: &'a Value, id: &str) -> &'a str {
    case(report, id)["findings"][0]["actual"].as_str().unwrap_or("")
}

#[test]
fn persistent_mode_passes_the_example_worker() {
    let (code, report) = persistent_report(&[EXAMPLE]);
    assert_eq!(not_passed(&report), ["stdin.multi-line-task"], "{report:#}");
    assert_eq!(code, 0);
    assert_eq!(report["summary"]["passed"], 16);
    let skipped = case(&report, "stdin.multi-line-task");
    assert_eq!(skipped["status"], "skipped");
    assert!(
        skipped["skip_reason"]
            .as_str()
            .unwrap()
            .contains("every task is one line")
    );
    // One process served every case.
    let pids: std::collections::HashSet<_> = report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["runs"].as_array().unwrap())
        .map(|r| r["process"]["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(pids.len(), 1, "{pids:?}");
}

#[test]
fn the_persistent_fixture_fails_only_where_it_means_to() {
    // persistent.py succeeds on any task, whatever its type or id (its params choose what it
    // does): every case that wants a validation failure fails, every other case passes.
    let (code, report) = persistent_report(&["fixtures/workers/persistent.py"]);
    assert_eq!(code, 1);
    assert_eq!(
        not_passed(&report),
        [
            "basic.missing-id",
            "basic.unknown-type",
            "exit.validation-not-retriable",
            "stdin.multi-line-task",
            "persistent.many-in-order",
            "persistent.survives-failure",
        ]
    );
    assert_eq!(status(&report, "stdin.multi-line-task"), "skipped");
    assert_eq!(actual(&report, "basic.unknown-type"), "a success result");
    assert_eq!(
        actual(&report, "persistent.many-in-order"),
        "task 2 of 50: a success result"
    );
}

#[test]
fn a_one_shot_worker_fails_the_handshake_within_the_time_limit() {
    let started = Instant::now();
    let (code, report) = persistent_report(&["--timeout", "1", "fixtures/workers/compliant.py"]);
    let took = started.elapsed();
    assert_eq!(code, 1);
    assert!(took < Duration::from_secs(8), "{took:?}");
    let handshake = case(&report, "persistent.handshake");
    assert_eq!(handshake["status"], "failed");
    assert_eq!(
        handshake["findings"][0]["actual"],
        "no handshake line within 1s (a one-shot worker waits for stdin to close)"
    );
    // Every other case that ran fails with no process, and says why.
    let valid = case(&report, "basic.valid-task");
    assert_eq!(valid["status"], "failed");
    assert_eq!(valid["findings"][0]["run"], Value::Null);
    assert!(
        valid["findings"][0]["actual"]
            .as_str()
            .unwrap()
            .starts_with("none: the handshake failed: no handshake line within 1s"),
        "{valid:#}"
    );
    assert_eq!(report["summary"]["failed"], 16);
    // The human report says it in as many words.
    wh().args([
        "test-worker",
        "--mode",
        "persistent",
        "--timeout",
        "1",
        "--case",
        "persistent.handshake",
    ])
    .arg("fixtures/workers/compliant.py")
    .assert()
    .code(1)
    .stdout(predicate::str::contains("FAIL  persistent.handshake"))
    .stdout(predicate::str::contains(
        r#"expected   {"ready": true, "mode": "persistent"} as the first line on stdout"#,
    ));
}

#[test]
fn a_leaking_worker_fails_the_memory_case() {
    let (code, report) = persistent_report(&["fixtures/workers/leaks_memory.py"]);
    assert_eq!(code, 1);
    assert_eq!(
        not_passed(&report),
        ["stdin.multi-line-task", "persistent.memory"]
    );
    let found = &case(&report, "persistent.memory")["findings"][0];
    assert_eq!(
        found["expected"],
        "at most 16 MiB more resident memory after task 1000 than after task 100"
    );
    let text = found["actual"].as_str().unwrap();
    assert!(text.contains(" per task)"), "{text}");
    // 900 tasks of 50 KiB: about 44 MiB.
    let mib: f64 = text.split(" MiB more").next().unwrap().parse().unwrap();
    assert!((35.0..60.0).contains(&mib), "{text}");
}

#[test]
fn a_worker_that_exits_after_each_task_fails_many_in_order() {
    const WORKER: &str = "fixtures/workers/exits_after_each_task.py";
    let (code, report) = persistent_report(&["--case", "persistent.many-in-order", WORKER]);
    assert_eq!(code, 1);
    assert_eq!(not_passed(&report), ["persistent.many-in-order"]);
    let many = case(&report, "persistent.many-in-order");
    assert!(
        many["findings"][0]["actual"]
            .as_str()
            .unwrap()
            .starts_with("task 2 of 50: the process ended during the task (exit code 0) without a result, after answering 1 task(s)"),
        "{many:#}"
    );
    assert_eq!(many["runs"][0]["process"]["reusable"], false);

    // The case that found the process gone fails; the next one gets a new process, so one
    // bug does not hide the cases after it.
    let (_, report) = persistent_report(&["--profile", "basic", WORKER]);
    assert_eq!(not_passed(&report), ["basic.missing-id", "basic.empty-params"]);
    let pid = |id: &str| case(&report, id)["runs"][0]["process"]["pid"].as_u64().unwrap();
    assert_eq!(pid("basic.valid-task"), pid("basic.missing-id"));
    assert_ne!(pid("basic.missing-id"), pid("basic.unknown-type"));
}

#[test]
fn list_and_selection_follow_the_mode() {
    let out = wh()
        .args(["test-worker", "--list", "--mode", "persistent"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("persistent.handshake"), "{text}");
    for id in [
        "persistent.many-in-order",
        "persistent.memory",
        "persistent.eof-exits",
    ] {
        assert!(text.contains(id), "{id}: {text}");
    }
    assert!(text.contains("(skipped: one-shot only: in persistent mode every task is one line)"));
    assert!(!text.contains("stdin.invalid-json") && !text.contains("process.no-leftovers"));
    assert!(text.contains("retry_possible false, not retried."), "{text}");
    let oneshot = wh().args(["test-worker", "--list"]).output().unwrap();
    assert!(!String::from_utf8(oneshot.stdout).unwrap().contains("persistent."));

    wh().args(["test-worker", "--case", "persistent.memory", EXAMPLE])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "case `persistent.memory` runs only with --mode persistent",
        ));
    wh().args(["test-worker", "--mode", "persistent", "--case", "process.no-leftovers", EXAMPLE])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "case `process.no-leftovers` is one-shot only; with --mode persistent, `persistent.eof-exits` checks its rule",
        ));
}

#[test]
fn a_configured_persistent_worker_is_tested_persistently() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("workerhost.yaml");
    std::fs::write(
        &config,
        format!(
            "version: \"1.0\"\ntask_manager:\n  type: local\n  path: {}\nworkers:\n  - name: example\n    project_path: {ROOT}/example-workers/python\n    script: example_worker.py\n    task_types: [PrismQ.Example.ProcessData]\n    mode: persistent\n",
            dir.path().join("q.db").display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let args = ["--config", config, "--worker", "example", "--profile", "basic"];
    let (code, report) = report(&args);
    assert_eq!((code, report["mode"].as_str()), (0, Some("persistent")));
    assert_eq!(status(&report, "persistent.handshake"), "passed");
    let mut oneshot = args.to_vec();
    oneshot.extend(["--mode", "oneshot"]);
    let (code, report) = crate::support::report(&oneshot);
    assert_eq!((code, report["mode"].as_str()), (0, Some("oneshot")));
    assert_eq!(report["cases"].as_array().unwrap().len(), 4);
}

#[test]
fn persistent_failures_read_well_in_every_format() {
    let args = [
        "--mode",
        "persistent",
        "--case",
        "basic.valid-task",
        "--case",
        "basic.missing-id",
        "--case",
        "stdin.*",
        "fixtures/workers/exits_after_each_task.py",
    ];
    let out = wh().arg("test-worker").args(args).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("mode persistent · profile strict · 2 cases"),
        "{text}"
    );
    assert!(text.contains("      process    pid "), "{text}");
    assert!(text.contains("ended, exit code 0, after "), "{text}");
    assert!(text.contains(
        "reproduce  wh test-worker --mode persistent --case basic.missing-id --timeout 10 fixtures/workers/exits_after_each_task.py"
    ));
    assert!(text.contains("SKIP  stdin.multi-line-task"), "{text}");
    let out = wh()
        .arg("test-worker")
        .args(["--format", "junit"])
        .args(args)
        .output()
        .unwrap();
    let xml = String::from_utf8(out.stdout).unwrap();
    assert!(
        xml.contains(r#"<skipped message="one-shot only: in persistent mode every task is one line"/>"#),
        "{xml}"
    );
    assert!(
        xml.contains(r#"<testcase name="basic.missing-id" classname="wh.basic""#),
        "{xml}"
    );
}
