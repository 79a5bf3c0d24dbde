//! The JUnit XML report (built with quick-junit), one `<testcase>` per case id.

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use super::{EXCERPT, excerpt_head, excerpt_tail, human};
use crate::compliance::{Status, Suite, SuiteResult};

/// The report as JUnit XML.
pub fn render(suite: &Suite, result: &SuiteResult, profile: &str) -> String {
    let mut report = Report::new("wh test-worker");
    report.set_time(result.duration);
    let mut test_suite = TestSuite::new(format!("wh test-worker ({profile}): {}", suite.command.display()));
    test_suite.set_time(result.duration);
    for r in &result.results {
        let status = match r.status {
            Status::Passed => TestCaseStatus::success(),
            Status::Skipped => {
                let mut status = TestCaseStatus::skipped();
                if let Some(reason) = r.skip_reason {
                    status.set_message(reason);
                }
                status
            }
            Status::Failed | Status::TimedOut | Status::Interrupted => {
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                let kind = match r.status {
                    Status::TimedOut => "timed_out",
                    Status::Interrupted => "interrupted",
                    _ => "failed",
                };
                status.set_type(kind);
                if let Some(f) = r.findings.first() {
                    status.set_message(format!(
                        "expected {}; got {}",
                        f.finding.expected, f.finding.actual
                    ));
                }
                status.set_description(human::case(suite, r, false));
                status
            }
        };
        let mut case = TestCase::new(r.case.id, status);
        case.set_classname(format!("wh.{}", r.case.profile_name()));
        case.set_time(r.duration);
        if let Some(run) = r.runs.last().filter(|_| r.status != Status::Passed) {
            case.set_system_out(excerpt_head(&run.outcome.stdout, EXCERPT));
            case.set_system_err(excerpt_tail(&run.outcome.stderr, EXCERPT));
        }
        test_suite.add_test_case(case);
    }
    report.add_test_suite(test_suite);
    report.to_string().expect("the JUnit report always serializes")
}
