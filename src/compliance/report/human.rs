//! The terminal report: one line per case, details under each failure, the summary last.

use std::fmt::Write as _;

use console::Style;

use super::{EXCERPT, excerpt_head, excerpt_tail, process_shown, reproduce, task_shown};
use crate::compliance::{CaseResult, Mode, Status, Suite, SuiteResult};

/// Styles, all plain when colour is off.
struct Palette {
    pass: Style,
    fail: Style,
    warn: Style,
    dim: Style,
    bold: Style,
}

impl Palette {
    fn new(color: bool) -> Self {
        let s = |style: Style| style.force_styling(color);
        Palette {
            pass: s(Style::new().green().bold()),
            fail: s(Style::new().red().bold()),
            warn: s(Style::new().yellow().bold()),
            dim: s(Style::new().dim()),
            bold: s(Style::new().bold()),
        }
    }
}

/// The header printed before the cases run.
pub fn header(suite: &Suite, profile: &str, color: bool) -> String {
    let p = Palette::new(color);
    let ran = suite.cases.iter().filter(|c| !c.skipped).count();
    let mode = match suite.mode {
        Mode::Persistent => "mode persistent · ",
        Mode::Oneshot => "",
    };
    format!(
        "{} {}\n{}\n\n",
        p.bold.apply_to("wh test-worker"),
        suite.command.display(),
        p.dim.apply_to(format!(
            "{mode}profile {profile} · {ran} case{} · time limit {}s per task",
            if ran == 1 { "" } else { "s" },
            suite.limits.timeout.as_secs_f64()
        ))
    )
}

/// One case's line, plus its details when it did not pass.
pub fn case(suite: &Suite, result: &CaseResult, color: bool) -> String {
    let p = Palette::new(color);
    let (label, style) = match result.status {
        Status::Passed => ("PASS", &p.pass),
        Status::Failed => ("FAIL", &p.fail),
        Status::TimedOut => ("TIME", &p.fail),
        Status::Skipped => ("SKIP", &p.warn),
        Status::Interrupted => ("INT ", &p.warn),
    };
    let mut out = String::new();
    let time = if result.status == Status::Skipped {
        match result.skip_reason {
            Some(reason) => format!("skipped: {reason}"),
            None => "skipped".to_string(),
        }
    } else {
        format!("{} ms", result.duration.as_millis())
    };
    let _ = writeln!(
        out,
        "{}  {:<30} {} {}",
        style.apply_to(label),
        result.case.id,
        result.case.name,
        p.dim.apply_to(format!("({time})"))
    );
    if matches!(result.status, Status::Passed | Status::Skipped) {
        return out;
    }
    let row = |out: &mut String, key: &str, value: &str| {
        let mut lines = value.lines();
        let first = lines.next().unwrap_or("");
        let _ = writeln!(out, "      {} {first}", p.dim.apply_to(format!("{key:<10}")));
        for line in lines {
            let _ = writeln!(out, "                 {line}");
        }
    };
    row(&mut out, "rule", result.case.rule_in(suite.mode));
    for f in &result.findings {
        row(&mut out, "expected", &f.finding.expected);
        row(&mut out, "actual", &f.finding.actual);
        let Some(run) = f.run.and_then(|i| result.runs.get(i)) else {
            continue;
        };
        row(&mut out, "task", &task_shown(run));
        let leftovers = if run.outcome.leftovers.is_empty() {
            String::new()
        } else {
            format!(
                ", {} process(es) left running (killed)",
                run.outcome.leftovers.len()
            )
        };
        if let Some(process) = process_shown(run) {
            row(&mut out, "process", &process);
        } else if let Some(exit) = run.outcome.exit {
            row(
                &mut out,
                "exit",
                &format!("{exit} after {} ms{leftovers}", run.outcome.duration.as_millis()),
            );
        }
        row(
            &mut out,
            "stdout",
            &shown(excerpt_head(&run.outcome.stdout, EXCERPT)),
        );
        row(
            &mut out,
            "stderr",
            &shown(excerpt_tail(&run.outcome.stderr, EXCERPT)),
        );
        row(&mut out, "reproduce", &reproduce(suite, result.case.id, run));
    }
    row(&mut out, "docs", result.case.doc);
    out.push('\n');
    out
}

fn shown(text: String) -> String {
    if text.trim().is_empty() {
        "(empty)".into()
    } else {
        text.trim_end().to_string()
    }
}

/// The summary: "N/M passed" and the verdict line.
pub fn summary(result: &SuiteResult, profile: &str, color: bool) -> String {
    let p = Palette::new(color);
    let ran = result.ran();
    let passed = result.count(Status::Passed);
    let mut counts = vec![format!("{passed}/{ran} passed")];
    for (status, word) in [
        (Status::Failed, "failed"),
        (Status::TimedOut, "timed out"),
        (Status::Interrupted, "interrupted"),
        (Status::Skipped, "skipped"),
    ] {
        let n = result.count(status);
        if n > 0 {
            counts.push(format!("{n} {word}"));
        }
    }
    let verdict = if result.count(Status::Interrupted) > 0 {
        format!("{}  interrupted before every case ran", p.warn.apply_to("INT "))
    } else if result.all_passed() {
        format!(
            "{}  protocol compliant (profile {profile})",
            p.pass.apply_to("PASS")
        )
    } else {
        format!(
            "{}  not protocol compliant (profile {profile})",
            p.fail.apply_to("FAIL")
        )
    };
    format!(
        "\n{} {}\n{verdict}\n",
        counts.join(", "),
        p.dim
            .apply_to(format!("in {:.2}s", result.duration.as_secs_f64()))
    )
}
