//! Snapshots of the human, JSON and JUnit reports (times, timestamps and versions filtered),
//! and the JSON report against its published schema.

use serde_json::Value;

use crate::support::{ROOT, wh};

fn run(args: &[&str]) -> String {
    let out = wh().arg("test-worker").args(args).output().unwrap();
    String::from_utf8(out.stdout).unwrap()
}

macro_rules! snapshot {
    ($name:expr, $text:expr) => {{
        let mut settings = insta::Settings::clone_current();
        settings.add_filter(r"\(\d+ ms\)", "([ms])");
        settings.add_filter(r"after \d+ ms", "after [ms]");
        settings.add_filter(r"in \d+\.\d+s", "in [s]");
        settings.add_filter(r#""duration_ms": \d+"#, r#""duration_ms": [ms]"#);
        settings.add_filter(r#"time="[\d.]+""#, r#"time="[t]""#);
        settings.add_filter(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", "[timestamp]");
        settings.add_filter(r#""wh_version": "[^"]+""#, r#""wh_version": "[version]""#);
        settings.set_snapshot_path(format!("{ROOT}/tests/cli/snapshots"));
        settings.bind(|| insta::assert_snapshot!($name, $text));
    }};
}

#[test]
fn human_report_of_a_failing_worker() {
    snapshot!(
        "human_retry_mismatch",
        run(&["-j", "2", "fixtures/workers/retry_mismatch.py"])
    );
}

#[test]
fn human_report_of_a_compliant_worker() {
    snapshot!(
        "human_compliant",
        run(&["--profile", "basic", "fixtures/workers/compliant.py"])
    );
}

#[test]
fn json_report() {
    snapshot!(
        "json_validation_retriable",
        run(&[
            "--format",
            "json",
            "--case",
            "exit.*",
            "fixtures/workers/validation_retriable.py"
        ])
    );
}

#[test]
fn junit_report() {
    snapshot!(
        "junit_reads_one_line",
        run(&[
            "--format",
            "junit",
            "--case",
            "basic.valid-task",
            "--case",
            "stdin.*",
            "fixtures/workers/reads_one_line.py"
        ])
    );
}

#[test]
fn list_of_cases() {
    snapshot!("list_strict", run(&["--list"]));
}

#[test]
fn json_reports_match_their_schema() {
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{ROOT}/schemas/report.schema.json")).unwrap())
            .unwrap();
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    for worker in [
        "fixtures/workers/grandchild_left_running.py",
        "fixtures/workers/stdout_pollution.py",
    ] {
        let report: Value = serde_json::from_str(&run(&["--format", "json", "-j", "2", worker])).unwrap();
        let errors: Vec<String> = validator.iter_errors(&report).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{worker}: {errors:#?}");
    }
}
