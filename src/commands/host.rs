//! `wh host`: load the config, open the source, start the observers and endpoints, run the
//! loop, and handle signals (stop, stop now, reload).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::queue::{open_source, read_ndjson};
use super::{load_for_run, print_stdout};
use crate::cli::HostArgs;
use crate::config::model::{Config, ObserverKind};
use crate::config::support::unenforced;
use crate::error::Failure;
use crate::exit;
use crate::host::dispatch::{self, Control, Options};
use crate::host::events::{Observers, RetireCause};
use crate::host::policy::Backoff;
use crate::host::registry::Registry;
use crate::host::summary::Summary;
use crate::host::{http, log, metrics::Metrics};
use crate::runner::Limits;

pub async fn run(args: HostArgs) -> Result<u8, Failure> {
    let (loaded, config) = load_for_run(&args.config.config, exit::USAGE)?;
    let concurrency = args
        .concurrency
        .map(|c| c as usize)
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let secrets = crate::config::resolve::secret_vars(&loaded.tree.to_json());
    let registry = Registry::build(&config, &loaded.dir, &secrets, concurrency, None)
        .map_err(|e| Failure::new(exit::USAGE, e))?;
    check_workers(&config, &loaded)?;

    if args.dry_run {
        let mut text = registry.describe();
        for (pointer, why) in unenforced(&config) {
            text.push_str(&format!("\nnot enforced: {pointer}: {why}"));
        }
        print_stdout(format!("{text}\n").as_bytes())?;
        return Ok(exit::OK);
    }

    let _log_guard = log::init(&config.logging, &loaded.dir).map_err(|e| Failure::new(exit::USAGE, e))?;
    for (pointer, why) in unenforced(&config) {
        tracing::warn!(setting = %pointer, "{why}");
    }
    let source = open_source(&config, &loaded.dir).await?;
    if let Some(file) = &args.enqueue {
        let tasks = read_ndjson(file)?;
        let added = source
            .enqueue(&tasks)
            .await
            .map_err(|e| Failure::new(exit::USAGE, "cannot add the tasks").cause(e))?;
        tracing::info!(count = added.len(), file = %file.display(), "tasks enqueued");
    }

    let worker_names: Vec<String> = registry.workers.iter().map(|w| w.name.clone()).collect();
    let metrics = Metrics::new(&worker_names);
    let summary = Arc::new(Summary::default());
    // `monitoring.observers` can switch the logging and metrics observers off.
    let observer_on = |kind: ObserverKind| {
        config
            .monitoring
            .observers
            .iter()
            .filter(|o| o.kind == kind)
            .all(|o| o.enabled)
    };
    let mut observers = Observers::default();
    if observer_on(ObserverKind::Logging) {
        observers.add(log::LogObserver {
            capture_worker_output: config.logging.capture_worker_output,
        });
    }
    if config.monitoring.enabled && observer_on(ObserverKind::Metrics) {
        observers.add(metrics.clone());
    }
    observers.add(SharedSummary(summary.clone()));
    let observers = Arc::new(observers);

    let limits = Limits {
        timeout: Duration::from_secs(300),
        max_stdout: args.limits.max_stdout,
        stderr_tail: args.limits.stderr_tail,
        kill_grace: args.limits.kill_grace,
        echo_stderr: false,
        max_memory: config
            .advanced
            .resource_limits
            .max_memory_mb
            .map(|mb| mb * 1024 * 1024),
        die_with_parent: true,
    };
    // Persistent workers get their pools (warmed up by the dispatcher).
    registry.attach_pools(None, &limits, &observers);

    let shutdown_http = CancellationToken::new();
    let endpoints = http::start(
        &config,
        args.bind,
        source.clone(),
        metrics.clone(),
        &registry,
        shutdown_http.clone(),
    )
    .await
    .map_err(|e| Failure::new(exit::USAGE, e))?;
    for (what, addr) in &endpoints {
        tracing::info!(endpoint = %what, address = %addr, "listening");
    }

    let registry = Arc::new(RwLock::new(Arc::new(registry)));
    let control = Control::default();
    spawn_signal_handlers(
        control.clone(),
        ReloadPlan {
            path: args.config.config.clone(),
            registry: registry.clone(),
            concurrency,
            limits: limits.clone(),
            observers: observers.clone(),
        },
    );

    let host_id = args.host_id.clone().unwrap_or_else(default_host_id);
    tracing::info!(host_id = %host_id, concurrency, workers = worker_names.len(), "host started");
    let options = Options {
        concurrency,
        drain: args.drain,
        max_tasks: args.max_tasks,
        grace: args.grace,
        host_id,
        backoff: Backoff {
            base: args.retry_delay,
            multiplier: config.task_manager.retry_backoff,
            max: Duration::from_secs(300),
        },
        idle_max: Duration::from_secs_f64(config.task_manager.poll_interval.clamp(0.05, 60.0)),
        limits: limits.clone(),
    };
    let totals = dispatch::run(source.clone(), registry, observers, options, control).await;
    shutdown_http.cancel();
    tracing::info!(claimed = totals.claimed, "host stopped");

    print_stdout(summary.table().as_bytes())?;
    Ok(exit::OK)
}

/// `security.validate_worker_paths` (on by default) refuses to start with a worker whose
/// interpreter, script, command or folder is missing; `restricted_modules` refuses modules.
fn check_workers(config: &Config, loaded: &crate::config::load::Loaded) -> Result<(), Failure> {
    let mut problems = Vec::new();
    let security = &config.advanced.security;
    if security.validate_worker_paths {
        let report = crate::lint::lint_loaded(loaded);
        for d in &report.diagnostics {
            if ["executable-missing", "project-path-missing", "windows-venv-path"].contains(&d.rule) {
                problems.push(format!("{} ({})", d.message, crate::lint::dotted(&d.pointer)));
            }
        }
    }
    for w in &config.workers {
        if let Some(module) = &w.module {
            for restricted in &security.restricted_modules {
                if module == restricted || module.starts_with(&format!("{restricted}.")) {
                    problems.push(format!("worker `{}` uses restricted module `{module}`", w.name));
                }
            }
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    let mut failure = Failure::new(
        exit::USAGE,
        format!("{} worker(s) cannot be started", problems.len()),
    )
    .hint("fix the paths, or set advanced.security.validate_worker_paths: false to start anyway");
    for p in problems {
        failure = failure.cause(p);
    }
    Err(failure)
}

fn default_host_id() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "host".into());
    format!("{host}:{}", std::process::id())
}

/// What SIGHUP needs to rebuild the registry.
struct ReloadPlan {
    path: std::path::PathBuf,
    registry: Arc<RwLock<Arc<Registry>>>,
    concurrency: usize,
    limits: Limits,
    observers: Arc<Observers>,
}

impl ReloadPlan {
    fn reload(&self) {
        let loaded = load_for_run(&self.path, exit::USAGE);
        let (loaded, config) = match loaded {
            Ok(ok) => ok,
            Err(failure) => {
                tracing::error!(findings = %failure.render(), "reload refused: the new config has errors; the old one keeps running");
                return;
            }
        };
        let secrets = crate::config::resolve::secret_vars(&loaded.tree.to_json());
        let previous = self
            .registry
            .read()
            .expect("no panics under the registry lock")
            .clone();
        match Registry::build(&config, &loaded.dir, &secrets, self.concurrency, Some(&previous)) {
            Ok(next) => {
                let names: Vec<&str> = next.workers.iter().map(|w| w.name.as_str()).collect();
                tracing::info!(workers = ?names, "config reloaded");
                let stale = next.attach_pools(Some(&previous), &self.limits, &self.observers);
                *self.registry.write().expect("no panics under the registry lock") = Arc::new(next);
                // A changed worker's old processes finish their task, then end.
                for pool in stale {
                    tokio::spawn(async move { pool.close(RetireCause::Reload).await });
                }
            }
            Err(e) => tracing::error!(error = %e, "reload refused; the old config keeps running"),
        }
    }
}

/// SIGTERM/SIGINT: the first stops claiming, the second stops running tasks (both release).
/// SIGHUP: reload.
fn spawn_signal_handlers(control: Control, reload: ReloadPlan) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::warn!("cannot listen for signals; stop the host with SIGKILL only as a last resort");
        return;
    };
    tokio::spawn(async move {
        let mut stops = 0;
        loop {
            tokio::select! {
                _ = int.recv() => stops += 1,
                _ = term.recv() => stops += 1,
                _ = hup.recv() => { reload.reload(); continue; }
            }
            if stops == 1 {
                tracing::info!(
                    "stopping: no new tasks; running ones may finish (a second signal stops them)"
                );
                control.stop.cancel();
            } else {
                tracing::warn!("stopping now: running tasks are stopped and released");
                control.hard.cancel();
                break;
            }
        }
    });
}

/// The summary, shared with the observer list.
struct SharedSummary(Arc<Summary>);

impl crate::host::events::Observer for SharedSummary {
    fn on_event(&self, event: &crate::host::events::Event) {
        self.0.on_event(event);
    }
}
