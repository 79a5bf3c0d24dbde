//! Reporters for `wh test-worker`: human (terminal), JSON (`schemas/report.schema.json`) and
//! JUnit XML. All three read the same typed [`SuiteResult`].

pub mod human;
pub mod json;
pub mod junit;

use super::{Captured, Mode, ProbeRun, Suite};
use crate::runner::shell_quote;

/// Output formats of `wh test-worker`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Readable text; colour and a progress bar on a terminal.
    Human,
    /// One JSON document, described by schemas/report.schema.json.
    Json,
    /// JUnit XML, for CI test reports.
    Junit,
}

/// How much of stdout or stderr a report shows.
pub const EXCERPT: usize = 800;
/// Tasks longer than this are abridged in reports.
const TASK_SHOWN: usize = 400;

/// The first `limit` characters of a stream, lossily decoded, with a note of what was cut.
pub fn excerpt_head(stream: &Captured, limit: usize) -> String {
    let total = stream.len;
    let text = String::from_utf8_lossy(&stream.bytes);
    let mut out: String = text.chars().take(limit).collect();
    let shown = out.len() as u64;
    if shown < total {
        out.push_str(&format!("… [{} more bytes]", total - shown));
    }
    out
}

/// The last `limit` characters of a stream, lossily decoded, with a note of what was cut.
pub fn excerpt_tail(stream: &Captured, limit: usize) -> String {
    let total = stream.len;
    let text = String::from_utf8_lossy(&stream.bytes);
    let count = text.chars().count();
    let tail: String = text.chars().skip(count.saturating_sub(limit)).collect();
    let cut = total.saturating_sub(tail.len() as u64);
    if cut > 0 {
        format!("[{cut} earlier bytes] …{tail}")
    } else {
        tail
    }
}

/// The task as sent, abridged when long (or what stands in for it when none was sent).
pub fn task_shown(run: &ProbeRun) -> String {
    if let Some(note) = run.note {
        return format!("({note})");
    }
    let text = String::from_utf8_lossy(&run.input);
    let text = text.trim_end();
    if text.chars().count() <= TASK_SHOWN {
        return text.to_string();
    }
    let head: String = text.chars().take(TASK_SHOWN).collect();
    format!("{head}… [{} bytes in all]", run.input.len())
}

/// A one-line command that sends the same task with `wh send`, or for a task too large for a
/// line, that reruns the case. In persistent mode it always reruns the case: what a task
/// gets may depend on the tasks the process served before.
pub fn reproduce(suite: &Suite, case_id: &str, run: &ProbeRun) -> String {
    let timeout = format!("{}", suite.limits.timeout.as_secs_f64());
    let text = String::from_utf8_lossy(&run.input);
    if suite.mode == Mode::Persistent || run.input.len() > 2048 || text.trim_end().contains('\n') {
        let mode = match suite.mode {
            Mode::Persistent => " --mode persistent",
            Mode::Oneshot => "",
        };
        return format!(
            "wh test-worker{mode} --case {case_id} --timeout {timeout}{} {}",
            suite.task_args, suite.worker_arg
        );
    }
    format!(
        "printf '%s' {} | wh send --task - --timeout {timeout} {}",
        shell_quote(&text),
        suite.worker_arg
    )
}

/// How the process that served a run ended or went on, for the `process` row and field.
pub fn process_shown(run: &ProbeRun) -> Option<String> {
    let served = run.outcome.process?;
    let after = format!("after {} ms", run.outcome.duration.as_millis());
    let pid = served.pid;
    // A run with no task (closing stdin) is meant to end the process.
    let next = match run.note {
        Some(_) => "",
        None => "; the next case gets a new process",
    };
    Some(match (served.exit, run.outcome.stopped) {
        _ if served.reusable => format!("pid {pid}, still serving, {after}"),
        (_, Some(stopped)) => format!("pid {pid}: {stopped} ({after}){next}"),
        (Some(exit), None) => format!("pid {pid} ended, {exit}, {after}{next}"),
        (None, None) => format!("pid {pid} stopped by wh {after}{next}"),
    })
}
