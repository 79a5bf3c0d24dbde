//! The host's HTTP endpoints: metrics, liveness, readiness and per-worker health.
//!
//! | path | answer |
//! |---|---|
//! | metrics path (`/metrics`) | 200, [`Metrics::encode`] after refreshing the queue depth |
//! | health path (`/health`) | 200 `{"status": "alive"}` |
//! | `/ready` | 200 `{"status": "ready"}` when the task source answers within 2 s, else 503 |
//! | `/workers/{name}/health` | 200 when the worker's interpreter, entry point and folder exist, else 503; 404 for an unknown worker |
//!
//! `/ready` and `/workers/...` are served beside the health path. Metrics and health may share
//! one port (one server answers both) or use two. [`bind`] opens the ports first, so a port in
//! use is reported before the host starts taking tasks; [`Bound::run`] then serves until the
//! shutdown token is cancelled.
//!
//! Paths are matched exactly (no router patterns), so any configured path is safe to serve.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::metrics::{CONTENT_TYPE as METRICS_CONTENT_TYPE, Metrics};
use super::registry::Registry;
use super::source::TaskSource;
use crate::config::model::{Config, Endpoint, Monitoring, Worker};
use crate::runner::WorkerCommand;

/// The metrics path of the short form `metrics_port`.
pub const DEFAULT_METRICS_PATH: &str = "/metrics";
/// The health path of the short form `health_check_port`.
pub const DEFAULT_HEALTH_PATH: &str = "/health";
/// Readiness, served beside the health path.
pub const READY_PATH: &str = "/ready";
/// How long `/ready` (and the depth refresh of `/metrics`) waits for the task source.
pub const SOURCE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long open connections may finish after shutdown before they are dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What the endpoints read.
pub struct HealthState {
    pub source: Arc<dyn TaskSource>,
    pub metrics: Metrics,
    pub workers: Vec<WorkerProbe>,
    /// The task types whose depth `wh_queue_depth` reports (empty: all types).
    pub task_types: Vec<String>,
    /// The warm-process pools of persistent workers, by worker name.
    pub pools: Vec<(String, Arc<super::pool::Pool>)>,
}

/// The paths the host resolved for one worker, checked by `/workers/{name}/health`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerProbe {
    pub name: String,
    /// The program that runs the worker (`venv_python`, `python3`, `command[0]`). A bare name
    /// (no `/`) is looked up on `$PATH`; a relative path is taken from `working_dir`. It must
    /// be an executable file. `None`: nothing to check (reported as `"none"`).
    pub interpreter: Option<PathBuf>,
    /// The script, or the module's file or package folder (relative: from `working_dir`).
    /// `None`: nothing to check (reported as `"none"`).
    pub entry: Option<PathBuf>,
    /// Must be an existing folder.
    pub working_dir: PathBuf,
}

impl WorkerProbe {
    /// The probe of a configured worker, from the command the host resolved for it: the
    /// program, the script (`script` form) or the module's file or package folder (`module`
    /// form, under `project_path` or its `src/`), and the working directory. A `command`
    /// worker has no entry point to check.
    pub fn for_worker(worker: &Worker, command: &WorkerCommand) -> WorkerProbe {
        let working_dir = command.cwd.clone().unwrap_or_else(|| PathBuf::from("."));
        let entry = if worker.script.is_some() {
            command.args.first().map(PathBuf::from)
        } else if let Some(module) = &worker.module {
            let rel: PathBuf = module.split('.').collect();
            let mut file = rel.clone().into_os_string();
            file.push(".py");
            let candidates = [working_dir.clone(), working_dir.join("src")]
                .into_iter()
                .flat_map(|base| [base.join(&file), base.join(&rel)]);
            Some(
                candidates
                    .into_iter()
                    .find(|p| p.exists())
                    .unwrap_or_else(|| working_dir.join(&file)),
            )
        } else {
            None
        };
        WorkerProbe {
            name: worker.name.clone(),
            interpreter: Some(PathBuf::from(&command.program)),
            entry,
            working_dir,
        }
    }
}

/// One endpoint to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub port: u16,
    /// Starts with `/`.
    pub path: String,
}

/// Which endpoints to serve, where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServePlan {
    /// 127.0.0.1 unless the operator asks for another address.
    pub bind_address: IpAddr,
    pub metrics: Option<Route>,
    /// The health path; `/ready` and `/workers/{name}/health` go on the same port.
    pub health: Option<Route>,
}

impl ServePlan {
    /// The endpoints `monitoring` asks for, on 127.0.0.1. The long form (`metrics.port`)
    /// wins over the short form (`metrics_port`); the short form alone uses `/metrics` or
    /// `/health`; `enabled: false` (of the section or of the endpoint) serves nothing.
    pub fn from_config(monitoring: &Monitoring) -> ServePlan {
        let route = |long: &Option<Endpoint>, short: Option<u16>, default_path: &str| match long {
            _ if !monitoring.enabled => None,
            Some(e) if !e.enabled => None,
            Some(e) => Some(Route {
                port: e.port,
                path: e.path.clone(),
            }),
            None => short.map(|port| Route {
                port,
                path: default_path.to_string(),
            }),
        };
        ServePlan {
            bind_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            metrics: route(&monitoring.metrics, monitoring.metrics_port, DEFAULT_METRICS_PATH),
            health: route(
                &monitoring.health_check,
                monitoring.health_check_port,
                DEFAULT_HEALTH_PATH,
            ),
        }
    }

    /// Nothing to serve.
    pub fn is_empty(&self) -> bool {
        self.metrics.is_none() && self.health.is_none()
    }
}

/// Which endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EndpointKind {
    Metrics,
    /// The health path, with `/ready` and `/workers/{name}/health` beside it.
    Health,
}

impl fmt::Display for EndpointKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EndpointKind::Metrics => "metrics",
            EndpointKind::Health => "health check",
        })
    }
}

/// An endpoint being served, with the address it got (the real port when 0 was asked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundEndpoint {
    pub kind: EndpointKind,
    pub addr: SocketAddr,
    pub path: String,
}

impl BoundEndpoint {
    /// `http://127.0.0.1:9090/metrics`.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, self.path)
    }
}

/// Listening sockets, not yet serving.
#[derive(Debug)]
pub struct Bound {
    listeners: Vec<Listener>,
}

#[derive(Debug)]
struct Listener {
    tcp: TcpListener,
    addr: SocketAddr,
    routes: Routes,
}

/// The paths one server answers.
#[derive(Debug, Clone, Default)]
struct Routes {
    metrics: Option<String>,
    health: Option<String>,
}

/// Binds the endpoints `config.monitoring` asks for on `bind_address` and serves them in the
/// background until `shutdown` is cancelled. Returns each endpoint and its URL, for the log
/// (empty when nothing is configured). An error (a port in use, clashing paths) means nothing
/// is served.
pub async fn start(
    config: &Config,
    bind_address: IpAddr,
    source: Arc<dyn TaskSource>,
    metrics: Metrics,
    registry: &Registry,
    shutdown: CancellationToken,
) -> Result<Vec<(EndpointKind, String)>, String> {
    let plan = ServePlan {
        bind_address,
        ..ServePlan::from_config(&config.monitoring)
    };
    if plan.is_empty() {
        return Ok(Vec::new());
    }
    let bound = bind(&plan).await?;
    let endpoints = bound.endpoints().iter().map(|e| (e.kind, e.url())).collect();
    let workers = registry
        .workers
        .iter()
        .filter_map(|spec| {
            let worker = config.workers.iter().find(|w| w.name == spec.name)?;
            Some(WorkerProbe::for_worker(worker, &spec.command))
        })
        .collect();
    let pools = registry
        .workers
        .iter()
        .filter_map(|spec| Some((spec.name.clone(), spec.pool.get()?.clone())))
        .collect();
    let state = Arc::new(HealthState {
        source,
        metrics,
        workers,
        task_types: registry.types(),
        pools,
    });
    tokio::spawn(async move {
        if let Err(e) = bound.run(state, shutdown).await {
            tracing::error!(error = %e, "the metrics and health endpoints stopped");
        }
    });
    Ok(endpoints)
}

/// Opens one listening socket per distinct port of `plan` (endpoints with the same port
/// number, 0 included, share one). Fails, naming the port and the endpoint, when a port is
/// taken or two endpoints on one port want the same path.
pub async fn bind(plan: &ServePlan) -> Result<Bound, String> {
    let mut by_port: BTreeMap<u16, Routes> = BTreeMap::new();
    for (kind, route) in [
        (EndpointKind::Metrics, &plan.metrics),
        (EndpointKind::Health, &plan.health),
    ] {
        let Some(route) = route else { continue };
        if !route.path.starts_with('/') {
            return Err(format!("the {kind} path `{}` must start with `/`", route.path));
        }
        let routes = by_port.entry(route.port).or_default();
        match kind {
            EndpointKind::Metrics => routes.metrics = Some(route.path.clone()),
            EndpointKind::Health => routes.health = Some(route.path.clone()),
        }
    }

    let mut listeners = Vec::new();
    for (port, routes) in by_port {
        check_paths(port, &routes)?;
        let wanted = SocketAddr::new(plan.bind_address, port);
        let who = match (&routes.metrics, &routes.health) {
            (Some(_), Some(_)) => "the metrics and health check endpoints".to_string(),
            (Some(_), None) => "the metrics endpoint".to_string(),
            _ => "the health check endpoint".to_string(),
        };
        let tcp = TcpListener::bind(wanted).await.map_err(|e| {
            let reason = match e.kind() {
                std::io::ErrorKind::AddrInUse => format!("port {port} is already in use"),
                _ => e.to_string(),
            };
            format!("cannot serve {who} on {wanted}: {reason}")
        })?;
        let addr = tcp
            .local_addr()
            .map_err(|e| format!("cannot serve {who} on {wanted}: {e}"))?;
        listeners.push(Listener { tcp, addr, routes });
    }
    Ok(Bound { listeners })
}

/// Paths on one port must not answer for each other.
fn check_paths(port: u16, routes: &Routes) -> Result<(), String> {
    let Some(health) = &routes.health else {
        return Ok(());
    };
    if health == READY_PATH || worker_name(health).is_some() {
        return Err(format!(
            "the health check path `{health}` is taken by the readiness or worker endpoints: choose another"
        ));
    }
    if let Some(metrics) = &routes.metrics
        && (metrics == health || metrics == READY_PATH || worker_name(metrics).is_some())
    {
        return Err(format!(
            "the metrics path `{metrics}` clashes with the health check endpoints on port {port}: \
             use another path or port"
        ));
    }
    Ok(())
}

impl Bound {
    /// Each endpoint and the address it got.
    pub fn endpoints(&self) -> Vec<BoundEndpoint> {
        let mut out = Vec::new();
        for l in &self.listeners {
            if let Some(path) = &l.routes.metrics {
                out.push(BoundEndpoint {
                    kind: EndpointKind::Metrics,
                    addr: l.addr,
                    path: path.clone(),
                });
            }
            if let Some(path) = &l.routes.health {
                out.push(BoundEndpoint {
                    kind: EndpointKind::Health,
                    addr: l.addr,
                    path: path.clone(),
                });
            }
        }
        out.sort_by_key(|e| e.kind);
        out
    }

    /// The address of `kind`'s endpoint, if served.
    pub fn addr(&self, kind: EndpointKind) -> Option<SocketAddr> {
        self.endpoints()
            .into_iter()
            .find(|e| e.kind == kind)
            .map(|e| e.addr)
    }

    /// Serves until `shutdown` is cancelled, then lets open requests finish (a few seconds at
    /// most). An error means a server stopped by itself.
    pub async fn run(self, state: Arc<HealthState>, shutdown: CancellationToken) -> Result<(), String> {
        let mut servers = JoinSet::new();
        for listener in self.listeners {
            let app = App {
                state: state.clone(),
                routes: Arc::new(listener.routes),
            };
            let router = Router::new().fallback(handle).with_state(app);
            let token = shutdown.clone();
            let addr = listener.addr;
            servers.spawn(async move {
                axum::serve(listener.tcp, router)
                    .with_graceful_shutdown(token.cancelled_owned())
                    .await
                    .map_err(|e| format!("the HTTP server on {addr} stopped: {e}"))
            });
        }
        let finished = async {
            while let Some(joined) = servers.join_next().await {
                match joined {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(e),
                    Err(e) => return Err(format!("an HTTP server failed: {e}")),
                }
            }
            Ok(())
        };
        let grace_over = async {
            shutdown.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        tokio::select! {
            result = finished => result,
            () = grace_over => Ok(()),
        }
        // Dropping the set aborts any server still draining.
    }
}

#[derive(Clone)]
struct App {
    state: Arc<HealthState>,
    routes: Arc<Routes>,
}

enum Target {
    Metrics,
    Alive,
    Ready,
    Worker(String),
}

async fn handle(State(app): State<App>, method: Method, uri: Uri) -> Response {
    let path = uri.path();
    let target = if app.routes.metrics.as_deref() == Some(path) {
        Some(Target::Metrics)
    } else if let Some(health) = app.routes.health.as_deref() {
        if path == health {
            Some(Target::Alive)
        } else if path == READY_PATH {
            Some(Target::Ready)
        } else {
            worker_name(path).map(Target::Worker)
        }
    } else {
        None
    };
    let Some(target) = target else {
        return json_response(StatusCode::NOT_FOUND, json!({"error": "not found"}));
    };
    if method != Method::GET && method != Method::HEAD {
        let mut response = json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"error": "method not allowed"}),
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match target {
        Target::Metrics => metrics(&app.state).await,
        Target::Alive => json_response(StatusCode::OK, json!({"status": "alive"})),
        Target::Ready => ready(&app.state, SOURCE_TIMEOUT).await,
        Target::Worker(name) => worker_health(&app.state, &name).await,
    }
}

async fn metrics(state: &HealthState) -> Response {
    // A source that does not answer leaves the last depth in place.
    let depth = state.source.depth(&state.task_types);
    if let Ok(Ok(depth)) = tokio::time::timeout(SOURCE_TIMEOUT, depth).await {
        state.metrics.set_depth(&depth);
    }
    response(StatusCode::OK, METRICS_CONTENT_TYPE, state.metrics.encode())
}

async fn ready(state: &HealthState, within: Duration) -> Response {
    let error = match tokio::time::timeout(within, state.source.health()).await {
        Ok(Ok(())) => return json_response(StatusCode::OK, json!({"status": "ready"})),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("the task source did not answer within {}", humanize(within)),
    };
    json_response(
        StatusCode::SERVICE_UNAVAILABLE,
        json!({"status": "not ready", "error": error}),
    )
}

async fn worker_health(state: &HealthState, name: &str) -> Response {
    let Some(worker) = state.workers.iter().find(|w| w.name == name).cloned() else {
        return json_response(
            StatusCode::NOT_FOUND,
            json!({"error": format!("no worker named `{name}`")}),
        );
    };
    // A few stat calls, and a $PATH search: off the async threads.
    let report = tokio::task::spawn_blocking(move || probe(&worker)).await;
    let Ok(report) = report else {
        return json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": "the worker check failed"}),
        );
    };
    let mut body = json!({
        "worker": report.worker,
        "interpreter": report.interpreter.as_str(),
        "entry_point": report.entry_point.as_str(),
        "working_dir": report.working_dir.as_str(),
        "mode": "oneshot",
    });
    if let Some((_, pool)) = state.pools.iter().find(|(n, _)| n == name) {
        body["mode"] = json!("persistent");
        body["pool"] = json!({
            "processes": pool.live(),
            "idle": pool.idle(),
            "min_workers": pool.settings().min,
            "max_workers": pool.settings().max,
        });
        if let Some(reason) = pool.fallback() {
            // It did not confirm the mode: it runs one-shot until a reload.
            body["mode"] = json!("oneshot (fallback)");
            body["pool"]["fallback"] = json!(reason);
        }
    }
    let missing: Vec<&str> = [
        ("interpreter", report.interpreter),
        ("entry_point", report.entry_point),
        ("working_dir", report.working_dir),
    ]
    .into_iter()
    .filter(|(_, check)| check.is_problem())
    .map(|(what, _)| what)
    .collect();
    if missing.is_empty() {
        json_response(StatusCode::OK, body)
    } else {
        body["missing"] = json!(missing);
        json_response(StatusCode::SERVICE_UNAVAILABLE, body)
    }
}

/// What one path check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Present,
    Missing,
    /// The interpreter exists but is not an executable file.
    NotExecutable,
    /// Nothing to check.
    None,
}

impl Check {
    fn as_str(self) -> &'static str {
        match self {
            Check::Present => "present",
            Check::Missing => "missing",
            Check::NotExecutable => "not_executable",
            Check::None => "none",
        }
    }

    fn is_problem(self) -> bool {
        matches!(self, Check::Missing | Check::NotExecutable)
    }
}

struct Report {
    worker: String,
    interpreter: Check,
    entry_point: Check,
    working_dir: Check,
}

fn probe(worker: &WorkerProbe) -> Report {
    let interpreter = match &worker.interpreter {
        None => Check::None,
        Some(program) if is_bare(program) => {
            if on_path(program) {
                Check::Present
            } else {
                Check::Missing
            }
        }
        Some(program) => match std::fs::metadata(worker.working_dir.join(program)) {
            Err(_) => Check::Missing,
            Ok(meta) if is_executable(&meta) => Check::Present,
            Ok(_) => Check::NotExecutable,
        },
    };
    let entry_point = match &worker.entry {
        None => Check::None,
        Some(entry) if worker.working_dir.join(entry).exists() => Check::Present,
        Some(_) => Check::Missing,
    };
    let working_dir = if worker.working_dir.is_dir() {
        Check::Present
    } else {
        Check::Missing
    };
    Report {
        worker: worker.name.clone(),
        interpreter,
        entry_point,
        working_dir,
    }
}

/// A program name that `exec` looks up on `$PATH`.
fn is_bare(program: &Path) -> bool {
    program.components().count() == 1 && !program.to_string_lossy().contains('/')
}

fn on_path(program: &Path) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .any(|dir| std::fs::metadata(dir.join(program)).is_ok_and(|m| is_executable(&m)))
}

#[cfg(unix)]
fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.is_file() && meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(meta: &std::fs::Metadata) -> bool {
    meta.is_file()
}

/// The worker name in `/workers/{name}/health`, percent-decoded.
fn worker_name(path: &str) -> Option<String> {
    let raw = path.strip_prefix("/workers/")?.strip_suffix("/health")?;
    if raw.is_empty() || raw.contains('/') {
        return None;
    }
    percent_decode(raw)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn humanize(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

fn json_response(status: StatusCode, body: Value) -> Response {
    response(status, "application/json", body.to_string())
}

fn response(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;
    use crate::host::source::{
        Claimed, Depth, Enqueued, ListFilter, NewTask, Outcome, Record, SourceError, TaskView,
    };

    /// A source that only answers `health` and `depth`.
    struct FakeSource {
        healthy: bool,
        slow: bool,
    }

    #[async_trait]
    impl TaskSource for FakeSource {
        async fn claim(&self, _: &[String], _: &str, _: Duration) -> Result<Option<Claimed>, SourceError> {
            Ok(None)
        }
        async fn finish(&self, _: &Claimed, _: &Outcome, _: &Record) -> Result<(), SourceError> {
            Ok(())
        }
        async fn release(&self, _: &Claimed) -> Result<(), SourceError> {
            Ok(())
        }
        async fn extend(&self, _: &Claimed, _: Duration) -> Result<(), SourceError> {
            Ok(())
        }
        async fn health(&self) -> Result<(), SourceError> {
            if self.slow {
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            if self.healthy {
                Ok(())
            } else {
                Err(SourceError::Unavailable("database is locked".into()))
            }
        }
        async fn depth(&self, _: &[String]) -> Result<Depth, SourceError> {
            if self.healthy {
                Ok(Depth {
                    ready: 4,
                    delayed: 2,
                    running: 1,
                })
            } else {
                Err(SourceError::Unavailable("database is locked".into()))
            }
        }
        async fn enqueue(&self, _: &[NewTask]) -> Result<Vec<Enqueued>, SourceError> {
            Ok(Vec::new())
        }
        async fn list(&self, _: &ListFilter) -> Result<Vec<TaskView>, SourceError> {
            Ok(Vec::new())
        }
        async fn show(&self, id: &str) -> Result<TaskView, SourceError> {
            Err(SourceError::NotFound(id.into()))
        }
        async fn retry(&self, _: &str) -> Result<(), SourceError> {
            Ok(())
        }
    }

    struct Reply {
        status: u16,
        content_type: String,
        body: String,
    }

    impl Reply {
        fn json(&self) -> Value {
            serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
        }
    }

    /// One HTTP/1.1 request over a fresh connection.
    async fn request(addr: SocketAddr, method: &str, path: &str) -> Reply {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let text = String::from_utf8(raw).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        let content_type = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-type")
                    .then(|| value.trim().to_string())
            })
            .unwrap_or_default();
        Reply {
            status,
            content_type,
            body: body.to_string(),
        }
    }

    async fn get(addr: SocketAddr, path: &str) -> Reply {
        request(addr, "GET", path).await
    }

    struct Server {
        bound: Vec<BoundEndpoint>,
        shutdown: CancellationToken,
        task: tokio::task::JoinHandle<Result<(), String>>,
    }

    impl Server {
        fn addr(&self, kind: EndpointKind) -> SocketAddr {
            self.bound.iter().find(|e| e.kind == kind).unwrap().addr
        }

        async fn stop(self) {
            self.shutdown.cancel();
            let result = tokio::time::timeout(Duration::from_secs(10), self.task).await;
            assert_eq!(result.unwrap().unwrap(), Ok(()));
        }
    }

    fn plan(metrics_port: u16, health_port: u16) -> ServePlan {
        ServePlan {
            bind_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            metrics: Some(Route {
                port: metrics_port,
                path: "/metrics".into(),
            }),
            health: Some(Route {
                port: health_port,
                path: "/health".into(),
            }),
        }
    }

    async fn serve_plan(plan: &ServePlan, source: FakeSource, workers: Vec<WorkerProbe>) -> Server {
        let bound = bind(plan).await.unwrap();
        let endpoints = bound.endpoints();
        let state = Arc::new(HealthState {
            source: Arc::new(source),
            metrics: Metrics::new(&workers.iter().map(|w| w.name.clone()).collect::<Vec<_>>()),
            workers,
            task_types: Vec::new(),
            pools: Vec::new(),
        });
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(bound.run(state, shutdown.clone()));
        Server {
            bound: endpoints,
            shutdown,
            task,
        }
    }

    fn healthy() -> FakeSource {
        FakeSource {
            healthy: true,
            slow: false,
        }
    }

    #[tokio::test]
    async fn shared_port_serves_every_route() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("worker.py"), "").unwrap();
        let worker = WorkerProbe {
            name: "scraper".into(),
            interpreter: Some(PathBuf::from("sh")),
            entry: Some(PathBuf::from("worker.py")),
            working_dir: dir.path().to_path_buf(),
        };
        let server = serve_plan(&plan(0, 0), healthy(), vec![worker]).await;
        assert_eq!(server.bound.len(), 2);
        let addr = server.addr(EndpointKind::Health);
        assert_eq!(addr, server.addr(EndpointKind::Metrics), "one port, one server");
        assert_ne!(addr.port(), 0);
        assert!(addr.ip().is_loopback());
        assert_eq!(server.bound[0].url(), format!("http://{addr}/metrics"));

        let metrics = get(addr, "/metrics").await;
        assert_eq!(metrics.status, 200);
        assert!(metrics.content_type.starts_with("application/openmetrics-text"));
        assert!(
            metrics
                .body
                .contains("wh_tasks_total{worker=\"scraper\",outcome=\"completed\"} 0")
        );
        assert!(
            metrics.body.contains("wh_queue_depth{state=\"ready\"} 4"),
            "{}",
            metrics.body
        );

        let alive = get(addr, "/health").await;
        assert_eq!((alive.status, alive.json()), (200, json!({"status": "alive"})));
        assert_eq!(alive.content_type, "application/json");

        let ready = get(addr, "/ready").await;
        assert_eq!((ready.status, ready.json()), (200, json!({"status": "ready"})));

        let probe = get(addr, "/workers/scraper/health").await;
        assert_eq!(probe.status, 200);
        assert_eq!(
            probe.json(),
            json!({"worker": "scraper", "interpreter": "present", "entry_point": "present", "working_dir": "present", "mode": "oneshot"})
        );

        let unknown = get(addr, "/workers/nobody/health").await;
        assert_eq!(unknown.status, 404);
        assert!(unknown.json()["error"].as_str().unwrap().contains("nobody"));
        assert_eq!(get(addr, "/nothing").await.status, 404);
        assert_eq!(request(addr, "POST", "/health").await.status, 405);
        let head = request(addr, "HEAD", "/health").await;
        assert_eq!((head.status, head.body.as_str()), (200, ""));
        server.stop().await;
    }

    #[tokio::test]
    async fn separate_ports_keep_their_own_paths() {
        let mut plan = plan(0, 0);
        // Two distinct free ports: take them, release them, then bind.
        let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (a, b) = (free(), free());
        plan.metrics.as_mut().unwrap().port = a.local_addr().unwrap().port();
        plan.health.as_mut().unwrap().port = b.local_addr().unwrap().port();
        plan.metrics.as_mut().unwrap().path = "/prom".into();
        drop((a, b));
        let server = serve_plan(&plan, healthy(), Vec::new()).await;
        let (m, h) = (
            server.addr(EndpointKind::Metrics),
            server.addr(EndpointKind::Health),
        );
        assert_ne!(m, h);
        assert_eq!(get(m, "/prom").await.status, 200);
        assert_eq!(get(m, "/health").await.status, 404);
        assert_eq!(get(m, "/ready").await.status, 404);
        assert_eq!(get(h, "/prom").await.status, 404);
        assert_eq!(get(h, "/ready").await.status, 200);
        server.stop().await;
    }

    #[tokio::test]
    async fn ready_is_503_when_the_source_fails_and_metrics_still_answer() {
        let source = FakeSource {
            healthy: false,
            slow: false,
        };
        let server = serve_plan(&plan(0, 0), source, Vec::new()).await;
        let addr = server.addr(EndpointKind::Health);
        let ready = get(addr, "/ready").await;
        assert_eq!(ready.status, 503);
        assert_eq!(ready.json()["status"], "not ready");
        assert!(
            ready.json()["error"]
                .as_str()
                .unwrap()
                .contains("database is locked")
        );
        let metrics = get(addr, "/metrics").await;
        assert_eq!(metrics.status, 200);
        assert!(metrics.body.contains("wh_queue_depth{state=\"ready\"} 0"));
        assert_eq!(get(addr, "/health").await.status, 200);
        server.stop().await;
    }

    #[tokio::test]
    async fn ready_gives_up_on_a_slow_source() {
        let state = HealthState {
            source: Arc::new(FakeSource {
                healthy: true,
                slow: true,
            }),
            metrics: Metrics::new(&[]),
            workers: Vec::new(),
            task_types: Vec::new(),
            pools: Vec::new(),
        };
        let response = ready(&state, Duration::from_millis(50)).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(humanize(SOURCE_TIMEOUT), "2s");
    }

    #[tokio::test]
    async fn worker_probe_names_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let not_executable = dir.path().join("python");
        std::fs::write(&not_executable, "").unwrap();
        let workers = vec![
            WorkerProbe {
                name: "gone".into(),
                interpreter: Some(dir.path().join("venv/bin/python")),
                entry: Some(PathBuf::from("worker.py")),
                working_dir: dir.path().to_path_buf(),
            },
            WorkerProbe {
                name: "bare".into(),
                interpreter: Some(PathBuf::from("wh-no-such-interpreter-on-path")),
                entry: None,
                working_dir: dir.path().join("nowhere"),
            },
            WorkerProbe {
                name: "my worker".into(),
                interpreter: Some(not_executable),
                entry: None,
                working_dir: dir.path().to_path_buf(),
            },
        ];
        let server = serve_plan(&plan(0, 0), healthy(), workers).await;
        let addr = server.addr(EndpointKind::Health);

        let gone = get(addr, "/workers/gone/health").await;
        assert_eq!(gone.status, 503);
        assert_eq!(
            gone.json(),
            json!({"worker": "gone", "interpreter": "missing", "entry_point": "missing",
                   "working_dir": "present", "mode": "oneshot",
                   "missing": ["interpreter", "entry_point"]})
        );
        let bare = get(addr, "/workers/bare/health").await;
        assert_eq!(bare.status, 503);
        assert_eq!(bare.json()["interpreter"], "missing");
        assert_eq!(bare.json()["entry_point"], "none");
        assert_eq!(bare.json()["missing"], json!(["interpreter", "working_dir"]));
        let spaced = get(addr, "/workers/my%20worker/health").await;
        assert_eq!(spaced.status, 503);
        assert_eq!(spaced.json()["interpreter"], "not_executable");
        server.stop().await;
    }

    #[tokio::test]
    async fn a_taken_port_is_named() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let mut plan = plan(port, 0);
        plan.health = None;
        let err = bind(&plan).await.unwrap_err();
        assert!(err.contains(&format!("port {port} is already in use")), "{err}");
        assert!(err.contains("metrics endpoint"), "{err}");
    }

    #[tokio::test]
    async fn clashing_paths_are_refused() {
        let mut same = plan(0, 0);
        same.metrics.as_mut().unwrap().path = "/health".into();
        assert!(bind(&same).await.unwrap_err().contains("clashes"));
        let mut ready = plan(0, 0);
        ready.metrics.as_mut().unwrap().path = READY_PATH.into();
        assert!(bind(&ready).await.is_err());
        let mut relative = plan(0, 0);
        relative.health.as_mut().unwrap().path = "health".into();
        assert!(bind(&relative).await.unwrap_err().contains("must start with `/`"));
        // The same path on two ports is fine.
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut apart = plan(free.local_addr().unwrap().port(), 0);
        drop(free);
        apart.metrics.as_mut().unwrap().path = "/health".into();
        assert!(bind(&apart).await.is_ok());
    }

    #[tokio::test]
    async fn shutdown_stops_the_server() {
        let server = serve_plan(&plan(0, 0), healthy(), Vec::new()).await;
        let addr = server.addr(EndpointKind::Health);
        server.stop().await;
        assert!(TcpStream::connect(addr).await.is_err());
    }

    fn config(workers: Value, dir: &Path) -> (Config, Registry) {
        let config: Config = serde_json::from_value(json!({
            "workers": workers,
            "monitoring": {"metrics_port": 0, "health_check_port": 0},
        }))
        .unwrap();
        let registry = Registry::build(&config, dir, &[], 1, None).unwrap();
        (config, registry)
    }

    #[test]
    fn probes_follow_each_start_form() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("proj/src/pkg/jobs")).unwrap();
        let (config, registry) = config(
            json!([
                {"name": "s", "task_types": ["a"], "script": "w.py", "project_path": "proj", "venv_python": "venv/bin/python"},
                {"name": "m", "task_types": ["b"], "module": "pkg.jobs", "project_path": "proj"},
                {"name": "f", "task_types": ["c"], "module": "tasks.run", "project_path": "proj"},
                {"name": "c", "task_types": ["d"], "command": ["node", "w.js"]},
            ]),
            dir.path(),
        );
        let probe = |i: usize| WorkerProbe::for_worker(&config.workers[i], &registry.workers[i].command);
        let root = std::path::absolute(dir.path()).unwrap();
        let s = probe(0);
        assert_eq!(s.interpreter, Some(root.join("venv/bin/python")));
        assert_eq!(s.entry, Some(root.join("proj/w.py")));
        assert_eq!(s.working_dir, root.join("proj"));
        assert_eq!(probe(1).entry, Some(root.join("proj/src/pkg/jobs")));
        assert_eq!(probe(1).interpreter, Some(PathBuf::from("python3")));
        assert_eq!(probe(2).entry, Some(root.join("proj/tasks/run.py")));
        let c = probe(3);
        assert_eq!((c.interpreter, c.entry), (Some(PathBuf::from("node")), None));
        assert_eq!(c.working_dir, root);
    }

    #[tokio::test]
    async fn start_serves_what_the_config_asks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("w.sh"), "").unwrap();
        let (config, registry) = config(
            json!([{"name": "w", "task_types": ["a"], "script": "w.sh", "venv_python": "sh"}]),
            dir.path(),
        );
        let shutdown = CancellationToken::new();
        let metrics = Metrics::new(&["w".into()]);
        let endpoints = super::start(
            &config,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            Arc::new(healthy()),
            metrics,
            &registry,
            shutdown.clone(),
        )
        .await
        .unwrap();
        assert_eq!(endpoints.len(), 2);
        assert_eq!(endpoints[0].0, EndpointKind::Metrics);
        assert_eq!(endpoints[1].0.to_string(), "health check");
        let url = &endpoints[1].1;
        let addr: SocketAddr = url
            .strip_prefix("http://")
            .and_then(|u| u.strip_suffix("/health"))
            .unwrap()
            .parse()
            .unwrap();
        let probe = get(addr, "/workers/w/health").await;
        assert_eq!(probe.status, 200, "{}", probe.body);
        assert!(
            get(addr, "/metrics")
                .await
                .body
                .contains("wh_queue_depth{state=\"ready\"} 4")
        );
        shutdown.cancel();

        let mut quiet = config.clone();
        quiet.monitoring = Monitoring::default();
        let none = super::start(
            &quiet,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            Arc::new(healthy()),
            Metrics::new(&[]),
            &registry,
            CancellationToken::new(),
        )
        .await
        .unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn plan_follows_the_config() {
        let mut m = Monitoring::default();
        assert!(ServePlan::from_config(&m).is_empty());
        m.metrics_port = Some(9090);
        m.health_check_port = Some(8080);
        let p = ServePlan::from_config(&m);
        assert_eq!(p.bind_address, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(
            p.metrics,
            Some(Route {
                port: 9090,
                path: "/metrics".into()
            })
        );
        assert_eq!(p.health.as_ref().unwrap().path, "/health");
        m.metrics = Some(Endpoint {
            enabled: true,
            port: 9100,
            path: "/m".into(),
        });
        assert_eq!(ServePlan::from_config(&m).metrics.unwrap().port, 9100);
        m.metrics.as_mut().unwrap().enabled = false;
        assert_eq!(ServePlan::from_config(&m).metrics, None);
        m.enabled = false;
        assert!(ServePlan::from_config(&m).is_empty());
    }

    #[test]
    fn worker_paths_parse() {
        assert_eq!(worker_name("/workers/a/health").as_deref(), Some("a"));
        assert_eq!(worker_name("/workers/a%2Fb/health").as_deref(), Some("a/b"));
        assert_eq!(worker_name("/workers//health"), None);
        assert_eq!(worker_name("/workers/a/b/health"), None);
        assert_eq!(worker_name("/workers/%zz/health"), None);
    }
}
