//! Each misbehaving worker in `fixtures/workers/` is caught by the case named for its rule,
//! and the basic profile agrees with the design's reference harness on it.

use crate::support::{not_passed, report, status};

/// (fixture, the case that must catch it, does the reference harness pass it?)
const CAUGHT_BY: &[(&str, &str, bool)] = &[
    ("stdout_pollution.py", "stdout.one-json-object", false),
    ("nan_in_result.py", "stdout.one-json-object", true),
    ("result_not_object.py", "result.schema", true),
    ("bad_log_entries.py", "result.schema", true),
    ("truthy_success.py", "result.schema", true),
    ("retry_mismatch.py", "exit.agrees-with-result", true),
    ("validation_retriable.py", "exit.validation-not-retriable", true),
    ("crash_on_invalid_json.py", "stdin.invalid-json", true),
    ("reads_one_line.py", "stdin.multi-line-task", true),
    ("grandchild_left_running.py", "process.no-leftovers", true),
    ("ascii_only.py", "unicode.round-trip", true),
    ("fixed_buffer_read.py", "size.large-task", true),
    ("crash_by_signal.py", "basic.valid-task", false),
    ("invalid_utf8_stdout.py", "basic.valid-task", false),
    ("invalid_utf8_stderr.py", "basic.valid-task", false),
];

const BASIC: [&str; 4] = [
    "basic.valid-task",
    "basic.missing-id",
    "basic.unknown-type",
    "basic.empty-params",
];

#[test]
fn each_fixture_is_caught_by_its_case() {
    for (fixture, case, _) in CAUGHT_BY {
        let path = format!("fixtures/workers/{fixture}");
        let (code, report) = report(&["-j", "2", &path]);
        assert_eq!(code, 1, "{fixture} should fail the strict profile");
        assert_eq!(
            status(&report, case),
            "failed",
            "{fixture} should be caught by {case}: {report:#}"
        );
    }
}

#[test]
fn basic_profile_agrees_with_the_reference_harness() {
    for (fixture, _, reference_passes) in CAUGHT_BY {
        let path = format!("fixtures/workers/{fixture}");
        let (code, report) = report(&["--profile", "basic", "-j", "4", &path]);
        let failed = not_passed(&report);
        if *reference_passes {
            assert_eq!(
                (code, failed.len()),
                (0, 0),
                "{fixture}: the reference passes it, got {failed:?}"
            );
        } else {
            assert_eq!(code, 1, "{fixture}");
            assert_eq!(failed, BASIC, "{fixture}: the reference fails every case");
        }
    }
}

#[test]
fn strict_only_fixtures_fail_nothing_but_strict_cases() {
    // Their misbehaviour is invisible to the reference cases, so strict is what finds it.
    for fixture in [
        "crash_on_invalid_json.py",
        "reads_one_line.py",
        "fixed_buffer_read.py",
        "ascii_only.py",
    ] {
        let (_, report) = report(&["-j", "2", &format!("fixtures/workers/{fixture}")]);
        assert_eq!(
            not_passed(&report).len(),
            1,
            "{fixture}: {:?}",
            not_passed(&report)
        );
    }
}

#[test]
fn compliant_workers_pass_both_profiles() {
    for worker in [
        "example-workers/python/example_worker.py",
        "fixtures/workers/compliant.py",
    ] {
        for profile in ["basic", "strict"] {
            let (code, report) = report(&["--profile", profile, "-j", "2", worker]);
            assert_eq!(code, 0, "{worker} {profile}: {:?}", not_passed(&report));
            assert_eq!(report["summary"]["compliant"], true);
        }
    }
}

#[test]
fn an_executable_runs_directly_and_a_command_after_dashes() {
    let (code, _) = report(&["--profile", "basic", "fixtures/workers/compliant_executable"]);
    assert_eq!(code, 0);
    let (code, report) = report(&[
        "--profile",
        "basic",
        "--",
        "python3",
        "fixtures/workers/compliant.py",
    ]);
    assert_eq!(code, 0);
    assert_eq!(
        report["worker"]["command"],
        "python3 fixtures/workers/compliant.py"
    );
}
