//! `wh send`: one task to one worker, the result on stdout, the verdict on stderr.

use std::io::Read;

use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use super::{color_for, limits, parse_params, print_stdout, spawn_failure, worker_command};
use crate::cli::SendArgs;
use crate::error::Failure;
use crate::exit;
use crate::protocol::{ExitClass, Schemas, Task, classify, human_bytes};
use crate::runner;

pub async fn run(args: SendArgs, cancel: CancellationToken) -> Result<u8, Failure> {
    Schemas::warm_up();
    let worker = worker_command(&args.worker, exit::SEND_USAGE)?;
    let input = match &args.task {
        Some(path) => {
            if args.task_type.is_some() || args.params.is_some() || args.id.is_some() {
                return Err(Failure::new(
                    exit::SEND_USAGE,
                    "--task sends a whole task: drop --type, --params and --id",
                ));
            }
            read_task(path)?
        }
        None => {
            let task_type = args
                .task_type
                .clone()
                .or_else(|| worker.task_types.first().cloned())
                .ok_or_else(|| {
                    Failure::new(exit::SEND_USAGE, "no task to send")
                        .hint("give --type TYPE (and --params JSON), or a whole task with --task FILE|-")
                })?;
            build_task(&args, task_type)?.to_bytes()
        }
    };
    let command = worker.command;

    let mut limits = limits(&args.limits, args.timeout);
    limits.echo_stderr = true;
    let outcome = runner::run(&command, &input, &limits, &cancel)
        .await
        .map_err(|e| spawn_failure(e, exit::SEND_USAGE))?;
    let judged = classify(&outcome, args.timeout.as_secs_f64());

    let stdout = console::Term::stdout();
    let reformatted = match serde_json::from_slice::<Value>(&outcome.stdout) {
        Ok(value) if !args.raw => {
            let mut text = if stdout.is_term() {
                serde_json::to_vec_pretty(&value)
            } else {
                serde_json::to_vec(&value)
            }
            .expect("a Value serializes");
            text.push(b'\n');
            Some(text)
        }
        _ => None,
    };
    print_stdout(reformatted.as_deref().unwrap_or(&outcome.stdout))?;

    let color = color_for(&console::Term::stderr());
    let style = match judged.class {
        ExitClass::Success => console::Style::new().green().bold(),
        _ => console::Style::new().red().bold(),
    }
    .force_styling(color);
    let mut line = format!(
        "wh: {} · {} · {} ms",
        style.apply_to(judged.class.label()),
        outcome.exit,
        outcome.duration.as_millis()
    );
    if let Some(reason) = &judged.reason {
        line.push_str(&format!("\nwh: {reason}"));
    }
    if !outcome.leftovers.is_empty() {
        line.push_str(&format!(
            "\nwh: warning: {} process(es) of the worker were still running after it exited; killed: {}",
            outcome.leftovers.len(),
            outcome
                .leftovers
                .iter()
                .map(|l| format!("{} ({})", l.pid, l.command))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if outcome.stderr_len > outcome.stderr.len() as u64 {
        line.push_str(&format!(
            "\nwh: stderr was {} in all",
            human_bytes(outcome.stderr_len)
        ));
    }
    eprintln!("{line}");
    Ok(exit::for_class(judged.class))
}

fn build_task(args: &SendArgs, task_type: String) -> Result<Task, Failure> {
    let params = match &args.params {
        Some(text) => parse_params("--params", text, exit::SEND_USAGE)?,
        None => Map::new(),
    };
    let id = args
        .id
        .clone()
        .unwrap_or_else(|| format!("send-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]));
    let metadata = json!({"created_at": crate::compliance::tasks::now_iso(), "sent_by": "wh send"});
    Ok(Task {
        id,
        task_type,
        params,
        metadata: metadata.as_object().cloned(),
    })
}

/// Reads `--task FILE|-` as bytes; sends them as they are, warning when they are not a task.
fn read_task(path: &std::path::Path) -> Result<Vec<u8>, Failure> {
    let bytes = if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| Failure::new(exit::SEND_USAGE, "cannot read the task from stdin").cause(e))?;
        buf
    } else {
        std::fs::read(path).map_err(|e| {
            Failure::new(
                exit::SEND_USAGE,
                format!("cannot read task file `{}`", path.display()),
            )
            .cause(e)
        })?
    };
    match serde_json::from_slice::<Value>(&bytes) {
        Err(e) => eprintln!("wh: warning: the task is not valid JSON ({e}); sending it as is"),
        Ok(value) => {
            if let Some(err) = Schemas::get().task_errors(&value).first() {
                eprintln!("wh: warning: the task breaks task.schema.json {err}; sending it as is");
            }
        }
    }
    Ok(bytes)
}
