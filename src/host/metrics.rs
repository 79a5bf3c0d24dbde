//! Prometheus metrics (OpenMetrics text), kept up to date as an [`Observer`].
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `wh_tasks_total` | worker, outcome | finished deliveries: completed, retried, failed, dead, released |
//! | `wh_task_duration_seconds` | worker | run time of completed tasks (10 ms .. 1 h buckets) |
//! | `wh_tasks_in_flight` | worker | worker processes running now |
//! | `wh_task_retries_total` | worker | retries scheduled |
//! | `wh_task_failures_total` | worker, class | retries and failures by exit class |
//! | `wh_worker_spawn_failures_total` | worker | worker processes that could not be started |
//! | `wh_queue_depth` | state | tasks ready, delayed (waiting for a retry) and running |
//! | `wh_host_info` | version | always 1 |
//!
//! A task no worker handles is counted under `worker="none"`.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::events::{Event, Observer, PoolEvent, TaskRef};
use super::log::class_name;
use super::source::Depth;

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `outcome` label values of `wh_tasks_total`.
pub const OUTCOMES: [&str; 5] = ["completed", "retried", "failed", "dead", "released"];

/// Upper bounds (seconds) of `wh_task_duration_seconds`: 10 ms to 1 h.
const DURATION_BUCKETS: [f64; 17] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 60.0, 150.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// The worker label of events about a task no worker handles.
const NO_WORKER: &str = "none";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabels {
    worker: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    worker: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabels {
    worker: String,
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RetireLabels {
    worker: String,
    cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// The host's metrics. Cloning shares them.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    tasks: Family<OutcomeLabels, Counter>,
    duration: Family<WorkerLabels, Histogram, fn() -> Histogram>,
    in_flight: Family<WorkerLabels, Gauge>,
    retries: Family<WorkerLabels, Counter>,
    failures: Family<ClassLabels, Counter>,
    spawn_failures: Family<WorkerLabels, Counter>,
    depth: Family<StateLabels, Gauge>,
    pool_processes: Family<WorkerLabels, Gauge>,
    pool_spawns: Family<WorkerLabels, Counter>,
    pool_retired: Family<RetireLabels, Counter>,
    /// Worker processes counted in `in_flight`, by task id and attempt, with their worker: an
    /// exit (or a failed start) only decrements what a start incremented, once.
    running: Mutex<HashMap<(String, u32), String>>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Registers every metric, with the label sets of each of `workers` at zero so dashboards
    /// see them before the first task.
    pub fn new(workers: &[String]) -> Metrics {
        let mut registry = Registry::with_prefix("wh");
        let tasks = Family::<OutcomeLabels, Counter>::default();
        let duration = Family::<WorkerLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            duration_histogram as fn() -> Histogram,
        );
        let in_flight = Family::<WorkerLabels, Gauge>::default();
        let retries = Family::<WorkerLabels, Counter>::default();
        let failures = Family::<ClassLabels, Counter>::default();
        let spawn_failures = Family::<WorkerLabels, Counter>::default();
        let depth = Family::<StateLabels, Gauge>::default();
        let info = Family::<VersionLabels, Gauge>::default();
        let pool_processes = Family::<WorkerLabels, Gauge>::default();
        let pool_spawns = Family::<WorkerLabels, Counter>::default();
        let pool_retired = Family::<RetireLabels, Counter>::default();

        registry.register(
            "tasks",
            "Finished deliveries by worker and outcome (completed, retried, failed, dead, released)",
            tasks.clone(),
        );
        registry.register_with_unit(
            "task_duration",
            "Run time of completed tasks",
            Unit::Seconds,
            duration.clone(),
        );
        registry.register(
            "tasks_in_flight",
            "Worker processes running now",
            in_flight.clone(),
        );
        registry.register("task_retries", "Retries scheduled", retries.clone());
        registry.register(
            "task_failures",
            "Retried and failed deliveries by exit class",
            failures.clone(),
        );
        registry.register(
            "worker_spawn_failures",
            "Worker processes that could not be started",
            spawn_failures.clone(),
        );
        registry.register(
            "queue_depth",
            "Tasks in the source: ready, delayed (waiting for a retry) and running",
            depth.clone(),
        );
        registry.register("host_info", "The running wh host (always 1)", info.clone());
        registry.register(
            "pool_processes",
            "Warm processes alive now (persistent mode)",
            pool_processes.clone(),
        );
        registry.register(
            "pool_spawns",
            "Warm processes started (persistent mode)",
            pool_spawns.clone(),
        );
        registry.register(
            "pool_retired",
            "Warm processes ended, by cause (idle, max_tasks, memory, reload, shutdown, lost)",
            pool_retired.clone(),
        );

        for name in workers {
            let worker = WorkerLabels { worker: name.clone() };
            for outcome in OUTCOMES {
                let _ = tasks.get_or_create(&OutcomeLabels {
                    worker: name.clone(),
                    outcome,
                });
            }
            let _ = duration.get_or_create(&worker);
            let _ = in_flight.get_or_create(&worker);
            let _ = retries.get_or_create(&worker);
            let _ = spawn_failures.get_or_create(&worker);
        }
        for state in ["ready", "delayed", "running"] {
            let _ = depth.get_or_create(&StateLabels { state });
        }
        info.get_or_create(&VersionLabels {
            version: env!("CARGO_PKG_VERSION"),
        })
        .set(1);

        Metrics {
            inner: Arc::new(Inner {
                registry,
                tasks,
                duration,
                in_flight,
                retries,
                failures,
                spawn_failures,
                depth,
                pool_processes,
                pool_spawns,
                pool_retired,
                running: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Sets `wh_queue_depth` from the source's counts.
    pub fn set_depth(&self, depth: &Depth) {
        for (state, n) in [
            ("ready", depth.ready),
            ("delayed", depth.delayed),
            ("running", depth.running),
        ] {
            let value = i64::try_from(n).unwrap_or(i64::MAX);
            self.inner.depth.get_or_create(&StateLabels { state }).set(value);
        }
    }

    /// Every metric as OpenMetrics text (serve it as [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail, and no metric here is of a kind the text format
        // rejects.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry);
        out
    }

    fn count(&self, worker: &str, outcome: &'static str) {
        self.inner
            .tasks
            .get_or_create(&OutcomeLabels {
                worker: label(worker),
                outcome,
            })
            .inc();
    }

    fn fail(&self, worker: &str, class: &'static str) {
        self.inner
            .failures
            .get_or_create(&ClassLabels {
                worker: label(worker),
                class,
            })
            .inc();
    }

    fn started(&self, task: &TaskRef, worker: &str) {
        let mut running = self.inner.running.lock().unwrap_or_else(|e| e.into_inner());
        if running
            .insert((task.id.clone(), task.attempt), worker.to_string())
            .is_none()
        {
            self.inner.in_flight.get_or_create(&worker_labels(worker)).inc();
        }
    }

    fn stopped(&self, task: &TaskRef) {
        let mut running = self.inner.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(worker) = running.remove(&(task.id.clone(), task.attempt)) {
            self.inner.in_flight.get_or_create(&worker_labels(&worker)).dec();
        }
    }
}

fn label(worker: &str) -> String {
    if worker.is_empty() {
        NO_WORKER.to_string()
    } else {
        worker.to_string()
    }
}

fn worker_labels(worker: &str) -> WorkerLabels {
    WorkerLabels {
        worker: label(worker),
    }
}

impl Observer for Metrics {
    fn on_pool(&self, event: &PoolEvent) {
        let inner = &self.inner;
        match event {
            PoolEvent::Started { worker, .. } => {
                inner.pool_processes.get_or_create(&worker_labels(worker)).inc();
                inner.pool_spawns.get_or_create(&worker_labels(worker)).inc();
            }
            PoolEvent::Retired { worker, cause, .. } => {
                inner.pool_processes.get_or_create(&worker_labels(worker)).dec();
                inner
                    .pool_retired
                    .get_or_create(&RetireLabels {
                        worker: label(worker),
                        cause: cause.label(),
                    })
                    .inc();
            }
            PoolEvent::Fallback { .. } => {}
        }
    }

    fn on_event(&self, event: &Event) {
        match event {
            Event::Received { .. } | Event::WorkerStderr { .. } | Event::Progress { .. } => {}
            Event::WorkerSpawned { task, worker, .. } | Event::Handed { task, worker, .. } => {
                self.started(task, worker)
            }
            Event::WorkerExited { task, .. } | Event::Answered { task, .. } => self.stopped(task),
            Event::SpawnFailed { task, worker, .. } => {
                self.stopped(task);
                self.inner
                    .spawn_failures
                    .get_or_create(&worker_labels(worker))
                    .inc();
            }
            Event::Completed { worker, duration, .. } => {
                self.count(worker, "completed");
                self.inner
                    .duration
                    .get_or_create(&worker_labels(worker))
                    .observe(duration.as_secs_f64());
            }
            Event::Retrying { worker, class, .. } => {
                self.count(worker, "retried");
                self.inner.retries.get_or_create(&worker_labels(worker)).inc();
                self.fail(worker, class_name(*class));
            }
            Event::Failed { worker, class, .. } => {
                self.count(worker, "failed");
                self.fail(worker, class.map(class_name).unwrap_or("none"));
            }
            Event::Dead { worker, .. } => self.count(worker, "dead"),
            Event::Released { worker, .. } => self.count(worker, "released"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::protocol::ExitClass;
    use crate::runner::Exit;

    fn task(id: &str) -> TaskRef {
        TaskRef {
            id: id.into(),
            task_type: "scrape".into(),
            attempt: 1,
        }
    }

    /// The value of one sample line (`name{labels} value`).
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn configured_workers_are_visible_at_zero() {
        let m = Metrics::new(&["scraper".into(), "mailer".into()]);
        let text = m.encode();
        for outcome in OUTCOMES {
            let series = format!("wh_tasks_total{{worker=\"mailer\",outcome=\"{outcome}\"}}");
            assert_eq!(sample(&text, &series), Some(0.0), "{series}\n{text}");
        }
        assert_eq!(sample(&text, "wh_tasks_in_flight{worker=\"scraper\"}"), Some(0.0));
        assert_eq!(
            sample(&text, "wh_task_retries_total{worker=\"scraper\"}"),
            Some(0.0)
        );
        assert_eq!(
            sample(&text, "wh_worker_spawn_failures_total{worker=\"scraper\"}"),
            Some(0.0)
        );
        assert_eq!(
            sample(&text, "wh_task_duration_seconds_count{worker=\"scraper\"}"),
            Some(0.0)
        );
        assert!(
            text.contains("wh_task_duration_seconds_bucket{le=\"3600.0\",worker=\"scraper\"}"),
            "{text}"
        );
        assert_eq!(sample(&text, "wh_queue_depth{state=\"delayed\"}"), Some(0.0));
        let info = format!("wh_host_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"));
        assert_eq!(sample(&text, &info), Some(1.0));
        assert!(text.contains("# TYPE wh_tasks counter"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn events_move_the_counters() {
        let m = Metrics::new(&["scraper".into()]);
        let w = || "scraper".to_string();
        let events = [
            Event::Received { task: task("a") },
            Event::WorkerSpawned {
                task: task("a"),
                worker: w(),
                pid: Some(7),
            },
            Event::WorkerSpawned {
                task: task("b"),
                worker: w(),
                pid: None,
            },
        ];
        for e in &events {
            m.on_event(e);
        }
        assert_eq!(
            sample(&m.encode(), "wh_tasks_in_flight{worker=\"scraper\"}"),
            Some(2.0)
        );

        let events = [
            Event::WorkerExited {
                task: task("a"),
                worker: w(),
                exit: Exit::Code(0),
                duration: Duration::from_millis(300),
            },
            // A second exit for the same delivery does not count twice.
            Event::WorkerExited {
                task: task("a"),
                worker: w(),
                exit: Exit::Code(0),
                duration: Duration::from_millis(300),
            },
            Event::Completed {
                task: task("a"),
                worker: w(),
                duration: Duration::from_millis(300),
            },
            Event::SpawnFailed {
                task: task("b"),
                worker: w(),
                error: "not found".into(),
            },
            // A failed start never announced as spawned leaves the gauge alone.
            Event::SpawnFailed {
                task: task("c"),
                worker: w(),
                error: "not found".into(),
            },
            Event::Retrying {
                task: task("d"),
                worker: w(),
                class: ExitClass::Timeout,
                error: "timed out".into(),
                delay: Duration::from_secs(1),
            },
            Event::Failed {
                task: task("e"),
                worker: String::new(),
                class: None,
                error: "no worker".into(),
            },
            Event::Dead {
                task: task("f"),
                worker: w(),
                error: "too many deliveries".into(),
            },
            Event::Released {
                task: task("g"),
                worker: w(),
            },
        ];
        for e in &events {
            m.on_event(e);
        }
        m.set_depth(&Depth {
            ready: 3,
            delayed: 1,
            running: 2,
        });
        let text = m.encode();
        let s = |series: &str| sample(&text, series).unwrap_or_else(|| panic!("{series} missing:\n{text}"));
        assert_eq!(s("wh_tasks_in_flight{worker=\"scraper\"}"), 0.0);
        assert_eq!(s("wh_tasks_total{worker=\"scraper\",outcome=\"completed\"}"), 1.0);
        assert_eq!(s("wh_tasks_total{worker=\"scraper\",outcome=\"retried\"}"), 1.0);
        assert_eq!(s("wh_tasks_total{worker=\"none\",outcome=\"failed\"}"), 1.0);
        assert_eq!(s("wh_tasks_total{worker=\"scraper\",outcome=\"dead\"}"), 1.0);
        assert_eq!(s("wh_tasks_total{worker=\"scraper\",outcome=\"released\"}"), 1.0);
        assert_eq!(s("wh_task_retries_total{worker=\"scraper\"}"), 1.0);
        assert_eq!(
            s("wh_task_failures_total{worker=\"scraper\",class=\"timeout\"}"),
            1.0
        );
        assert_eq!(s("wh_task_failures_total{worker=\"none\",class=\"none\"}"), 1.0);
        assert_eq!(s("wh_worker_spawn_failures_total{worker=\"scraper\"}"), 2.0);
        assert_eq!(s("wh_task_duration_seconds_count{worker=\"scraper\"}"), 1.0);
        assert_eq!(s("wh_task_duration_seconds_sum{worker=\"scraper\"}"), 0.3);
        assert_eq!(
            s("wh_task_duration_seconds_bucket{le=\"0.25\",worker=\"scraper\"}"),
            0.0
        );
        assert_eq!(
            s("wh_task_duration_seconds_bucket{le=\"0.5\",worker=\"scraper\"}"),
            1.0
        );
        assert_eq!(s("wh_queue_depth{state=\"ready\"}"), 3.0);
        assert_eq!(s("wh_queue_depth{state=\"delayed\"}"), 1.0);
        assert_eq!(s("wh_queue_depth{state=\"running\"}"), 2.0);
    }

    #[test]
    fn clones_share_and_cross_threads() {
        fn send_sync<T: Send + Sync + Clone + 'static>() {}
        send_sync::<Metrics>();
        let m = Metrics::new(&[]);
        let other = m.clone();
        std::thread::spawn(move || {
            other.on_event(&Event::Released {
                task: task("a"),
                worker: "x".into(),
            })
        })
        .join()
        .unwrap();
        assert_eq!(
            sample(&m.encode(), "wh_tasks_total{worker=\"x\",outcome=\"released\"}"),
            Some(1.0)
        );
    }
}
