//! `wh`: parse the command line, run the command, exit with its code. Nothing else.

use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;

use wh::cli::{Cli, Command};
use wh::{commands, error, exit};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => exit::OK,
                _ if invoked_send() => exit::SEND_USAGE,
                _ => exit::USAGE,
            };
            return ExitCode::from(code);
        }
    };

    // One thread is enough: workers are separate processes, and every wait is I/O.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprint!(
                "{}",
                error::Failure::new(exit::USAGE, "failed to start the async runtime")
                    .cause(e)
                    .render()
            );
            return ExitCode::from(exit::USAGE);
        }
    };
    let code = runtime.block_on(async {
        let cancel = CancellationToken::new();
        // Registered before any worker starts, so an early Ctrl+C still stops the worker's
        // process group (which does not receive the terminal's SIGINT itself).
        listen_for_stop_signals(cancel.clone());
        let result = match cli.command {
            Command::TestWorker(args) => commands::test_worker::run(args, cancel).await,
            Command::Send(args) => commands::send::run(args, cancel).await,
            Command::Lint(args) => commands::lint::run(args),
            Command::Scaffold(args) => commands::scaffold::run(args),
            Command::Host(args) => commands::host::run(args).await,
            Command::Enqueue(args) => commands::queue::enqueue(args).await,
            Command::Tasks(args) => commands::queue::tasks(args).await,
        };
        match result {
            Ok(code) => code,
            Err(failure) => {
                eprint!("{}", failure.render());
                failure.code
            }
        }
    });
    ExitCode::from(code)
}

/// Whether the (unparseable) command line was for `wh send`, whose own errors exit 64.
fn invoked_send() -> bool {
    std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .is_some_and(|a| a == "send")
}

/// Ctrl+C (SIGINT) and SIGTERM cancel the run: workers' groups are stopped, reports say
/// "interrupted", and `wh` exits 130.
fn listen_for_stop_signals(cancel: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    else {
        return;
    };
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        cancel.cancel();
    });
}
