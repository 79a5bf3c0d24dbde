//! `wh test-worker`: select cases, run the suite, print the report, map to an exit code.

use std::collections::BTreeMap;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

use super::{color_for, limits, load_for_run, parse_params, print_stdout, spawn_failure, worker_command};
use crate::cli::{TestWorkerArgs, WorkerArgs};
use crate::compliance::report::{self, Format};
use crate::compliance::{self, Mode, Profile, Status, Suite, TaskTemplate};
use crate::error::Failure;
use crate::exit;
use crate::runner::shell_quote;

pub async fn run(args: TestWorkerArgs, cancel: CancellationToken) -> Result<u8, Failure> {
    let profile_name = match args.profile {
        Profile::Basic => "basic",
        Profile::Strict => "strict",
    };
    let mode = match args.mode {
        Some(mode) => mode,
        None => configured_mode(&args.worker)?,
    };
    if args.list {
        print_stdout(list(args.profile, mode).as_bytes())?;
        return Ok(exit::OK);
    }
    let selected = compliance::select(args.profile, mode, &args.cases, &args.skips)
        .map_err(|e| Failure::new(exit::USAGE, e))?;
    crate::protocol::Schemas::warm_up();
    let worker = worker_command(&args.worker, exit::USAGE)?;

    let task_type = args
        .task_type
        .clone()
        .or_else(|| worker.task_types.first().cloned())
        .unwrap_or_else(|| compliance::tasks::DEFAULT_TASK_TYPE.to_string());
    let mut task_args = String::new();
    if let Some(explicit) = &args.task_type {
        task_args.push_str(&format!(" --task-type {}", shell_quote(explicit)));
    }
    let mut template = TaskTemplate {
        task_type,
        ..TaskTemplate::default()
    };
    if let Some(params) = &args.params {
        template.params = parse_params("--params", params, exit::USAGE)?;
        task_args.push_str(&format!(" --params {}", shell_quote(params)));
    }
    let jobs = args
        .jobs
        .map(usize::from)
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let suite = Suite {
        command: worker.command,
        worker_arg: args.worker.as_typed(),
        task_args,
        template,
        user_params: args.params.is_some(),
        limits: limits(&args.limits, args.timeout),
        mode,
        cases: selected,
        jobs,
    };

    let to_terminal = args.output.is_none() && args.format == Format::Human;
    let color = to_terminal && color_for(&console::Term::stdout());
    let stream = to_terminal.then(|| InOrder::new(suite.cases.len()));
    let bar = progress_bar(suite.cases.len());
    if let Some(stream) = &stream {
        stream.emit(&bar, report::human::header(&suite, profile_name, color));
    }

    let result = compliance::run(&suite, &cancel, |case_result| {
        bar.inc(1);
        if let Some(stream) = &stream {
            let index = suite
                .cases
                .iter()
                .position(|c| c.case.id == case_result.case.id)
                .unwrap_or(0);
            stream.ready(&bar, index, report::human::case(&suite, case_result, color));
        }
    })
    .await
    .map_err(|e| spawn_failure(e, exit::USAGE))?;
    bar.finish_and_clear();

    let rendered = match args.format {
        Format::Human if to_terminal => report::human::summary(&result, profile_name, color),
        Format::Human => {
            let mut text = report::human::header(&suite, profile_name, false);
            for r in &result.results {
                text.push_str(&report::human::case(&suite, r, false));
            }
            text + &report::human::summary(&result, profile_name, false)
        }
        Format::Json => report::json::render(&suite, &result, args.profile),
        Format::Junit => report::junit::render(&suite, &result, profile_name),
    };
    match &args.output {
        Some(path) => {
            std::fs::write(path, rendered).map_err(|e| {
                Failure::new(
                    exit::USAGE,
                    format!("cannot write report to `{}`", path.display()),
                )
                .cause(e)
            })?;
            let color = color_for(&console::Term::stdout());
            print_stdout(
                report::human::summary(&result, profile_name, color)
                    .trim_start()
                    .as_bytes(),
            )?;
        }
        None => print_stdout(rendered.as_bytes())?,
    }

    Ok(if result.count(Status::Interrupted) > 0 {
        exit::INTERRUPTED
    } else if result.all_passed() {
        exit::OK
    } else {
        exit::CASE_FAILED
    })
}

/// The mode of a `--config` worker as the host would run it (`mode`, else the pool's
/// `enabled`); one-shot for a worker named by its file or command.
fn configured_mode(args: &WorkerArgs) -> Result<Mode, Failure> {
    let (Some(path), Some(name)) = (&args.config, &args.worker_name) else {
        return Ok(Mode::Oneshot);
    };
    let (_, config) = load_for_run(path, exit::USAGE)?;
    let persistent = config
        .workers
        .iter()
        .find(|w| &w.name == name)
        .is_some_and(|w| w.persistent(&config.advanced.worker_pool));
    Ok(match persistent {
        true => Mode::Persistent,
        false => Mode::Oneshot,
    })
}

/// `--list`: the cases of a profile in a mode with the rule each enforces.
fn list(profile: Profile, mode: Mode) -> String {
    let mut out = String::new();
    for case in compliance::catalogue(mode).filter(|c| c.profile <= profile) {
        out.push_str(&format!(
            "{:<30} {:<7} {}\n{:<38} {}\n",
            case.id,
            case.profile_name(),
            case.name,
            "",
            case.rule_in(mode)
        ));
        if let Some(reason) = case.skipped_in(mode) {
            out.push_str(&format!("{:<38} (skipped: {reason})\n", ""));
        }
    }
    out
}

/// A progress bar on stderr when it is a terminal; hidden otherwise.
fn progress_bar(len: usize) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {pos}/{len} cases {wide_bar} {elapsed}")
            .expect("the template is valid"),
    );
    if !console::Term::stderr().is_term() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// Prints case blocks in catalogue order as soon as every earlier one is done, so parallel
/// runs read like serial ones.
struct InOrder {
    state: Mutex<(usize, BTreeMap<usize, String>)>,
}

impl InOrder {
    fn new(_len: usize) -> Self {
        Self {
            state: Mutex::new((0, BTreeMap::new())),
        }
    }

    fn emit(&self, bar: &ProgressBar, text: String) {
        bar.suspend(|| {
            let _ = print_stdout(text.as_bytes());
        });
    }

    fn ready(&self, bar: &ProgressBar, index: usize, text: String) {
        let mut state = self.state.lock().expect("no panics while printing");
        state.1.insert(index, text);
        loop {
            let next = state.0;
            let Some(text) = state.1.remove(&next) else { break };
            state.0 += 1;
            self.emit(bar, text);
        }
    }
}
