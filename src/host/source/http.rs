//! The PrismQ TaskManager (a PHP + MariaDB task queue behind a REST API) as a task source.
//!
//! The server's behaviour, quirks included, is described in `spec/TASKMANAGER_API.md`; where
//! its OpenAPI document differs, the spec file (what the running server does) wins.
//!
//! # Requests
//!
//! Every request carries `X-API-Key` (except `GET /health`), the configured timeout, and is
//! retried with exponential backoff (`retry_backoff` is the multiplier, from 0.5 s, capped at
//! 30 s, ±20% jitter) on network errors and 5xx answers, `max_retries` times. A 4xx is an
//! answer and is never retried. The one 5xx that is an answer too is the claim's
//! "There is no active transaction" (the server's way of saying the queue is empty). The
//! server closes the connection after every response, so connections are not pooled.
//! Errors name the endpoint (method and URL without credentials), never the key.
//!
//! # How the trait maps onto the server
//!
//! - **Task types** are claimed by id: each type the host serves is looked up once with
//!   `GET /task-types/{name}` and cached. A type the server does not know is skipped with a
//!   warning and looked up again 30 s later. Names must match `[A-Za-z0-9._-]+` because the
//!   server does not URL-decode path segments.
//! - **claim** asks type by type (the first type rotates from call to call, for fairness)
//!   with `worker_id` = the configured `worker_id`, else the host's owner string (truncated to
//!   the server's 255 characters). `Claimed.lease` holds that worker id: the server's claim
//!   has no token, the worker id is what `complete` is checked against. The claim reply has
//!   no creation time, so `created_at` is the claim time.
//! - **Leases** are the server's fixed claim timeout (300 s by default), not the `lease`
//!   asked for: there is no reaper and no extension. Past the timeout another claimer may take
//!   the task (with `attempts + 1`); this host's later `complete` then gets 403, which is
//!   [`SourceError::LeaseLost`]. If nobody re-claimed it, the late completion is accepted.
//!   `extend` is therefore a no-op, and a host warns once when it asks for leases longer than
//!   300 s.
//! - **release** does nothing (the server has no release endpoint): the task stays claimed
//!   until the server's claim timeout, then anyone may claim it again. Completing it as failed
//!   instead would spend one of its attempts and could fail it for good.
//! - **finish**: `Completed` is `complete` with `success: true` and the result; a result
//!   larger than 60 KiB (measured as PHP's `json_encode` writes it: `\/` and `\uXXXX`) is
//!   replaced by `{"truncated": true, "original_bytes": n, "note": ...}` and the `error` says
//!   so, because the server cannot store more than 64 KiB and would refuse the whole
//!   completion. `Retry`, `Failed` and `Dead` are `success: false` with a one-line `error`
//!   (`retry: ...`, `failed: ...`, `dead: ...`, at most 4 KiB). The server alone decides
//!   what a failure means: while `attempts < MAX_TASK_ATTEMPTS` (3 by default) the task goes
//!   back to pending *at once*, else it is failed. So a `Retry`'s delay cannot be honoured
//!   (the server has no delayed requeue); and a `Failed` or `Dead` the server requeued is
//!   remembered by this process: when it is claimed again it is failed again at once, without
//!   running, until the server gives up on it.
//! - **The completion journal**: a completion that cannot be delivered now (network down, or
//!   5xx after the retries, or 401) is appended to the journal file as one JSON line (`id`,
//!   `worker_id`, `body`) and fsynced, and `finish` returns `Ok`: the outcome is kept, not
//!   dropped. Every later `claim`, `finish` and `health` first delivers the journal in order
//!   (one try per entry, stopping at the first that cannot be delivered); an entry leaves the
//!   journal once delivered or once the server refuses it with a 4xx other than 401 (logged:
//!   typically 403 because the claim timed out meanwhile and someone else took the task).
//!   While the journal is not empty, new completions go behind it, so order is kept.
//!   `connect` delivers what a previous run left.
//! - **depth** counts `GET /tasks?status=pending|claimed&type=...&limit=1000` (two requests
//!   per type): `ready` = pending, `running` = claimed (a claim past its timeout is still
//!   counted as running), `delayed` = 0 (the server never delays). Counts are capped at 1000
//!   per type and status, which is enough for metrics and `--drain`.
//! - **enqueue** posts tasks one by one (the server has no batch): everything is validated
//!   before the first post. Params must be a non-empty object of at most 64 KiB. The server
//!   dedupes every task by a hash of its type and params (whatever its status), reported as
//!   `deduplicated: true`; `priority` and `dedupe_key` cannot be set (warned once). A batch
//!   that fails half way can be posted again safely: the posted tasks dedupe.
//! - **list** / **show**: `claimed` is `running`; a failed task whose error starts with
//!   `dead:` is `dead`. The list's type filter is an SQL LIKE on the server (`_` matches any
//!   character), so results are filtered to the exact type here.
//! - **retry** is not supported: the server has no requeue endpoint.
//! - **progress** is `POST /tasks/{id}/progress` with `worker_id`, `progress` and `message`,
//!   one try, under the worker id the task was claimed with (remembered per claimed task, as
//!   the dispatcher calls it without the claim at hand). A 403 or 400 means the claim is gone
//!   (timed out and claimed by another worker, or already completed): `LeaseLost`, and the
//!   task is forgotten, so nothing more is sent for it. The server does not extend the claim
//!   on progress.
//! - **health** is `GET /health`, one try (a readiness probe repeats it).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::header::{ACCEPT, HeaderValue};
use reqwest::{Method, Url};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{
    Claimed, Depth, Enqueued, ListFilter, NewTask, Outcome, Record, SourceError, Status, TaskSource, TaskView,
};

/// The claim's 500 when the queue is empty (a server bug) and the documented 404.
const NO_TASK_500: &str = "there is no active transaction";
const NO_TASK_404: &str = "no tasks available";
/// The complete's 400 when the task was already completed (or requeued).
const NOT_CLAIMED: &str = "not in claimed state";
/// The server's `worker_id` column.
const WORKER_ID_MAX_CHARS: usize = 255;
/// The server's `params` and `result` columns (MariaDB TEXT).
const SERVER_COLUMN_MAX: usize = 65_535;
/// The largest result sent as is; larger ones are summarised.
const RESULT_MAX: usize = 60 * 1024;
/// The longest `error` sent.
const ERROR_MAX: usize = 4 * 1024;
/// The server's default claim timeout, past which a claimed task is claimable again.
const SERVER_CLAIM_TIMEOUT: Duration = Duration::from_secs(300);
/// The most tasks counted per type and status by `depth`.
const DEPTH_LIMIT: usize = 1000;
const DEFAULT_LIST_LIMIT: usize = 100;
/// How long an unknown task type is skipped before it is looked up again.
const UNKNOWN_TYPE_RECHECK: Duration = Duration::from_secs(30);
/// The first wait between request retries, and the longest.
const RETRY_BASE: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// How many task ids finished `Failed`/`Dead` (and requeued by the server) are remembered.
const TERMINAL_MEMORY: usize = 10_000;
/// How many remembered failures one `claim` fails again before it gives up for this call.
const REFAILS_PER_CLAIM: usize = 16;

/// How to reach the TaskManager (from `task_manager` in the config).
#[derive(Clone)]
pub struct HttpConfig {
    /// The base URL, ending in `/api`.
    pub url: String,
    /// Sent as `X-API-Key`; never logged, never in an error.
    pub api_key: Option<String>,
    /// Per request.
    pub timeout: Duration,
    /// Retries of a request that failed on the network or with a 5xx.
    pub max_retries: u32,
    /// The multiplier of the wait between retries.
    pub retry_backoff: f64,
    /// The worker id claims and completions are made under. Default: the host's owner string.
    pub worker_id: Option<String>,
    /// `created_at`, `priority`, `id` or `attempts`.
    pub sort_by: Option<String>,
    /// `ASC` or `DESC`.
    pub sort_order: Option<String>,
    /// Where completions that cannot be delivered yet are kept.
    pub journal: PathBuf,
}

impl fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpConfig")
            .field("url", &self.url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("retry_backoff", &self.retry_backoff)
            .field("worker_id", &self.worker_id)
            .field("sort_by", &self.sort_by)
            .field("sort_order", &self.sort_order)
            .field("journal", &self.journal)
            .finish()
    }
}

/// The TaskManager HTTP API as a [`TaskSource`].
pub struct HttpSource {
    client: reqwest::Client,
    /// The base URL without a trailing slash, for building request URLs.
    base: String,
    /// The base URL without credentials, for messages.
    shown: String,
    api_key: Option<HeaderValue>,
    max_retries: u32,
    retry_backoff: f64,
    retry_base: Duration,
    worker_id: Option<String>,
    sort_by: Option<String>,
    sort_order: Option<String>,
    journal: Journal,
    types: Mutex<HashMap<String, TypeId>>,
    rotation: AtomicUsize,
    terminal: Mutex<Terminal>,
    /// Tasks claimed and not finished yet: their worker id and attempt, for `progress`.
    claims: Mutex<HashMap<String, (String, u32)>>,
    warned_long_lease: AtomicBool,
    warned_priority: AtomicBool,
    warned_dedupe_key: AtomicBool,
}

impl fmt::Debug for HttpSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpSource")
            .field("url", &self.shown)
            .field("journal", &self.journal.path)
            .finish_non_exhaustive()
    }
}

/// A task type's id on the server, or when to look again.
#[derive(Debug, Clone, Copy)]
enum TypeId {
    Known(i64),
    Unknown { recheck_at: Instant },
}

/// Tasks this host finished `Failed` or `Dead` that the server put back to pending.
#[derive(Default)]
struct Terminal {
    errors: HashMap<String, String>,
    order: VecDeque<String>,
}

impl Terminal {
    fn remember(&mut self, id: &str, error: &str) {
        if self.errors.insert(id.to_string(), error.to_string()).is_none() {
            self.order.push_back(id.to_string());
        }
        while self.order.len() > TERMINAL_MEMORY {
            if let Some(old) = self.order.pop_front() {
                self.errors.remove(&old);
            }
        }
    }

    fn forget(&mut self, id: &str) {
        if self.errors.remove(id).is_some() {
            self.order.retain(|x| x != id);
        }
    }
}

/// Why a request did not succeed.
#[derive(Debug)]
enum Fail {
    /// No answer: connection, timeout, or the body could not be read.
    Transport(String),
    /// An HTTP answer other than success.
    Status { code: u16, message: String },
    /// A 2xx whose body is not the server's success envelope.
    Reply(String),
}

/// A failed request, with the endpoint it went to.
#[derive(Debug)]
struct CallError {
    endpoint: String,
    fail: Fail,
    tries: u32,
}

impl CallError {
    fn status(&self) -> Option<u16> {
        match self.fail {
            Fail::Status { code, .. } => Some(code),
            _ => None,
        }
    }

    fn server_message(&self) -> &str {
        match &self.fail {
            Fail::Transport(m) | Fail::Reply(m) => m,
            Fail::Status { message, .. } => message,
        }
    }

    /// The message with the endpoint, for errors and logs.
    fn message(&self) -> String {
        let what = match &self.fail {
            Fail::Transport(m) => m.clone(),
            Fail::Status { code, message } => format!("HTTP {code}: {message}"),
            Fail::Reply(m) => format!("unexpected reply: {m}"),
        };
        let hint = if self.status() == Some(401) {
            " (check task_manager.api_key)"
        } else {
            ""
        };
        let tries = if self.tries > 1 {
            format!(" (after {} tries)", self.tries)
        } else {
            String::new()
        };
        format!("TaskManager {}: {what}{hint}{tries}", self.endpoint)
    }

    /// A 4xx other than 401: the server refused this request itself, whatever its state.
    fn is_refusal(&self) -> bool {
        matches!(self.status(), Some(code) if (400..500).contains(&code) && code != 401)
    }

    /// The usual mapping: a refusal is `Invalid`, anything else `Unavailable`.
    fn into_source_error(self) -> SourceError {
        if self.is_refusal() && self.status() != Some(403) {
            SourceError::Invalid(self.message())
        } else {
            SourceError::Unavailable(self.message())
        }
    }
}

/// One request.
struct Req<'a> {
    method: Method,
    path: String,
    query: Vec<(&'static str, String)>,
    body: Option<&'a Value>,
    auth: bool,
    retries: u32,
    /// A 5xx that is an answer, returned at once rather than retried.
    final_5xx: fn(&str) -> bool,
}

impl<'a> Req<'a> {
    fn new(method: Method, path: String) -> Req<'a> {
        Req {
            method,
            path,
            query: Vec::new(),
            body: None,
            auth: true,
            retries: 0,
            final_5xx: |_| false,
        }
    }
}

impl HttpSource {
    /// Checks the configuration, opens (creating) the journal and delivers what a previous
    /// run left in it. The server need not be up: what cannot be delivered stays journaled.
    pub async fn connect(cfg: HttpConfig) -> Result<HttpSource, SourceError> {
        let (base, shown) = parse_base(&cfg.url)?;
        let api_key = match &cfg.api_key {
            Some(key) if !key.is_empty() => {
                let mut value = HeaderValue::from_str(key).map_err(|_| {
                    SourceError::Invalid(
                        "task_manager.api_key contains characters an HTTP header cannot carry".to_string(),
                    )
                })?;
                value.set_sensitive(true);
                Some(value)
            }
            _ => None,
        };
        if let Some(id) = &cfg.worker_id {
            let chars = id.chars().count();
            if id.trim().is_empty() || chars > WORKER_ID_MAX_CHARS {
                return Err(SourceError::Invalid(format!(
                    "task_manager.worker_id must be 1 to {WORKER_ID_MAX_CHARS} characters (it is {chars})"
                )));
            }
        }
        let sort_by = match cfg.sort_by.as_deref() {
            None => None,
            Some(s @ ("created_at" | "priority" | "id" | "attempts")) => Some(s.to_string()),
            Some(other) => {
                return Err(SourceError::Invalid(format!(
                    "task_manager.sort_by `{other}`: expected created_at, priority, id or attempts"
                )));
            }
        };
        let sort_order = match cfg.sort_order.as_deref().map(str::to_ascii_uppercase) {
            None => None,
            Some(s) if s == "ASC" || s == "DESC" => Some(s),
            Some(other) => {
                return Err(SourceError::Invalid(format!(
                    "task_manager.sort_order `{other}`: expected ASC or DESC"
                )));
            }
        };
        if cfg.timeout.is_zero() {
            return Err(SourceError::Invalid(
                "task_manager.timeout must be more than 0 seconds".to_string(),
            ));
        }
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            // The server closes the connection after every response.
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| SourceError::Unavailable(format!("cannot set up the HTTP client: {e}")))?;
        let journal = Journal::open(cfg.journal.clone()).await?;
        let source = HttpSource {
            client,
            base,
            shown,
            api_key,
            max_retries: cfg.max_retries,
            retry_backoff: if cfg.retry_backoff.is_finite() {
                cfg.retry_backoff.max(1.0)
            } else {
                1.0
            },
            retry_base: RETRY_BASE,
            worker_id: cfg.worker_id,
            sort_by,
            sort_order,
            journal,
            types: Mutex::new(HashMap::new()),
            rotation: AtomicUsize::new(0),
            terminal: Mutex::new(Terminal::default()),
            claims: Mutex::new(HashMap::new()),
            warned_long_lease: AtomicBool::new(false),
            warned_priority: AtomicBool::new(false),
            warned_dedupe_key: AtomicBool::new(false),
        };
        let left = source.journal.len();
        if left > 0 {
            tracing::info!(
                journal = %source.journal.path.display(),
                completions = left,
                "delivering completions a previous run could not deliver"
            );
            if !source.deliver_journal().await {
                tracing::warn!(
                    journal = %source.journal.path.display(),
                    completions = source.journal.len(),
                    "the TaskManager cannot take the journaled completions yet; they are kept and sent later"
                );
            }
        }
        Ok(source)
    }

    fn endpoint(&self, method: &Method, path: &str) -> String {
        format!("{method} {}{path}", self.shown)
    }

    /// The wait before retry `n` (1 for the first).
    fn retry_delay(&self, n: u32) -> Duration {
        let exp = self.retry_backoff.powi(n.saturating_sub(1).min(30) as i32);
        let raw = (self.retry_base.as_secs_f64() * exp).min(RETRY_MAX.as_secs_f64());
        Duration::from_secs_f64(raw * (0.8 + 0.4 * rand::random::<f64>()))
    }

    /// Sends `req`, retrying network errors and 5xx answers; the reply's `data` on success.
    async fn call(&self, req: &Req<'_>) -> Result<Value, CallError> {
        let mut tries = 0;
        loop {
            tries += 1;
            let fail = match self.send_once(req).await {
                Ok(data) => return Ok(data),
                Err(fail) => fail,
            };
            let retriable = match &fail {
                Fail::Transport(_) => true,
                Fail::Status { code, message } => *code >= 500 && !(req.final_5xx)(message),
                Fail::Reply(_) => false,
            };
            let error = CallError {
                endpoint: self.endpoint(&req.method, &req.path),
                fail,
                tries,
            };
            if !retriable || tries > req.retries {
                return Err(error);
            }
            let delay = self.retry_delay(tries);
            tracing::debug!(error = %error.message(), retry_in = ?delay, "TaskManager request failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }

    async fn send_once(&self, req: &Req<'_>) -> Result<Value, Fail> {
        let mut url = Url::parse(&format!("{}{}", self.base, req.path))
            .map_err(|e| Fail::Transport(format!("bad URL: {e}")))?;
        if !req.query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in &req.query {
                pairs.append_pair(k, v);
            }
        }
        let mut builder = self
            .client
            .request(req.method.clone(), url)
            .header(ACCEPT, "application/json");
        if req.auth
            && let Some(key) = &self.api_key
        {
            builder = builder.header("X-API-Key", key.clone());
        }
        if let Some(body) = req.body {
            builder = builder.json(body);
        }
        let response = builder.send().await.map_err(|e| Fail::Transport(describe(e)))?;
        let code = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| Fail::Transport(format!("reading the reply: {}", describe(e))))?;
        let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
        if !code.is_success() {
            let message = error_text(parsed.as_ref(), &bytes)
                .unwrap_or_else(|| code.canonical_reason().unwrap_or("no message").to_string());
            return Err(Fail::Status {
                code: code.as_u16(),
                message,
            });
        }
        let Some(Value::Object(mut envelope)) = parsed else {
            return Err(Fail::Reply(format!(
                "HTTP {} with a body that is not a JSON object: {}",
                code.as_u16(),
                snippet(&String::from_utf8_lossy(&bytes))
            )));
        };
        if envelope.get("success") != Some(&Value::Bool(true)) {
            let message = error_text(Some(&Value::Object(envelope.clone())), &bytes)
                .unwrap_or_else(|| "`success` is not true".to_string());
            return Err(Fail::Reply(message));
        }
        Ok(envelope.remove("data").unwrap_or(Value::Null))
    }

    /// The worker id to claim under: the configured one, else `owner` (at most 255 chars).
    fn worker_id_for(&self, owner: &str) -> Result<String, SourceError> {
        if let Some(id) = &self.worker_id {
            return Ok(id.clone());
        }
        let id: String = owner.chars().take(WORKER_ID_MAX_CHARS).collect();
        if id.trim().is_empty() {
            return Err(SourceError::Invalid(
                "an empty owner cannot claim from the TaskManager: set task_manager.worker_id".to_string(),
            ));
        }
        Ok(id)
    }

    /// The server's id of task type `name`; `None` when the server does not know it.
    async fn type_id(&self, name: &str) -> Result<Option<i64>, SourceError> {
        let cached = self
            .types
            .lock()
            .expect("no panics under the types lock")
            .get(name)
            .copied();
        match cached {
            Some(TypeId::Known(id)) => return Ok(Some(id)),
            Some(TypeId::Unknown { recheck_at }) if Instant::now() < recheck_at => return Ok(None),
            _ => {}
        }
        let req = Req {
            retries: self.max_retries,
            ..Req::new(Method::GET, format!("/task-types/{name}"))
        };
        let data = match self.call(&req).await {
            Ok(data) => data,
            Err(e) if e.status() == Some(404) => json!({"items": []}),
            Err(e) => return Err(e.into_source_error()),
        };
        let items = data
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let active = |item: &&Value| {
            !matches!(
                item.get("is_active"),
                Some(Value::Bool(false)) | Some(Value::Null)
            ) && item.get("is_active").and_then(as_i64) != Some(0)
        };
        let chosen = items.iter().find(active).or_else(|| items.first());
        let id = chosen
            .and_then(|item| item.get("id"))
            .and_then(as_i64)
            .filter(|id| *id > 0);
        let entry = match id {
            Some(id) => TypeId::Known(id),
            None => {
                tracing::warn!(
                    task_type = name,
                    "the TaskManager has no task type `{name}`; its tasks are not claimed (looked up again in {}s)",
                    UNKNOWN_TYPE_RECHECK.as_secs()
                );
                TypeId::Unknown {
                    recheck_at: Instant::now() + UNKNOWN_TYPE_RECHECK,
                }
            }
        };
        self.types
            .lock()
            .expect("no panics under the types lock")
            .insert(name.to_string(), entry);
        Ok(id)
    }

    /// Forgets the claim of task `id`'s delivery `attempts` (not a later claim of the task).
    fn forget_claim(&self, id: &str, attempts: u32) {
        let mut claims = self.claims.lock().expect("no panics under the claims lock");
        if claims.get(id).is_some_and(|(_, a)| *a == attempts) {
            claims.remove(id);
        }
    }

    fn forget_type(&self, name: &str) {
        self.types
            .lock()
            .expect("no panics under the types lock")
            .remove(name);
    }

    /// One claim of type `name`; `None` when it has nothing now.
    async fn claim_type(
        &self,
        name: &str,
        type_id: i64,
        worker_id: &str,
    ) -> Result<Option<Value>, CallError> {
        let mut body = json!({"worker_id": worker_id, "task_type_id": type_id});
        if let Some(by) = &self.sort_by {
            body["sort_by"] = json!(by);
        }
        if let Some(order) = &self.sort_order {
            body["sort_order"] = json!(order);
        }
        let req = Req {
            body: Some(&body),
            retries: self.max_retries,
            final_5xx: |m| m.to_ascii_lowercase().contains(NO_TASK_500),
            ..Req::new(Method::POST, "/tasks/claim".to_string())
        };
        match self.call(&req).await {
            Ok(data) => Ok(Some(data)),
            Err(e) if is_no_task(&e) => Ok(None),
            Err(e) => {
                tracing::debug!(task_type = name, error = %e.message(), "claim failed");
                Err(e)
            }
        }
    }

    /// The claim reply as a `Claimed`, or why it cannot be read.
    fn claimed_from(&self, name: &str, data: &Value, worker_id: &str) -> Result<Claimed, (String, String)> {
        let id = data.get("id").and_then(id_string).ok_or_else(|| {
            (
                String::new(),
                format!("a claim reply without an id: {}", snippet(&data.to_string())),
            )
        })?;
        if let Some(other) = data.get("type").and_then(Value::as_str)
            && other != name
        {
            tracing::warn!(task_id = %id, asked = name, got = other, "the TaskManager answered a claim with another type");
        }
        let params = params_of(data.get("params")).map_err(|why| (id.clone(), why))?;
        let attempts = data
            .get("attempts")
            .and_then(as_i64)
            .map_or(1, |n| u32::try_from(n.max(1)).unwrap_or(u32::MAX));
        Ok(Claimed {
            task_type: name.to_string(),
            params,
            priority: data.get("priority").and_then(as_i64).unwrap_or(0),
            attempts,
            created_at: data.get("created_at").and_then(parse_time).unwrap_or_else(now),
            lease: worker_id.to_string(),
            id,
        })
    }

    /// Sends a completion, journaling it when it cannot be delivered now. The reply's
    /// `status` when delivered, `None` when journaled.
    async fn complete(&self, id: &str, worker_id: &str, body: Value) -> Result<Option<String>, SourceError> {
        let req = Req {
            body: Some(&body),
            retries: self.max_retries,
            ..Req::new(Method::POST, format!("/tasks/{id}/complete"))
        };
        let e = match self.call(&req).await {
            Ok(data) => {
                let status = data
                    .get("status")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                return Ok(Some(status));
            }
            Err(e) => e,
        };
        match e.status() {
            Some(403) => return Err(SourceError::LeaseLost(id.to_string())),
            Some(400) if e.server_message().to_ascii_lowercase().contains(NOT_CLAIMED) => {
                return Err(SourceError::LeaseLost(id.to_string()));
            }
            Some(404) => return Err(SourceError::NotFound(id.to_string())),
            _ if e.is_refusal() => return Err(SourceError::Invalid(e.message())),
            _ => {}
        }
        self.journal_completion(id, worker_id, body, &e.message()).await?;
        Ok(None)
    }

    async fn journal_completion(
        &self,
        id: &str,
        worker_id: &str,
        body: Value,
        why: &str,
    ) -> Result<(), SourceError> {
        let entry = Entry {
            id: id.to_string(),
            worker_id: worker_id.to_string(),
            body,
        };
        match self.journal.append(&entry).await {
            Ok(()) => {
                tracing::warn!(
                    task_id = %id,
                    journal = %self.journal.path.display(),
                    reason = why,
                    "the completion cannot be delivered now; journaled, it is sent later"
                );
                Ok(())
            }
            Err(e) => Err(SourceError::Unavailable(format!(
                "{why}; and the completion of task `{id}` could not be journaled in {}: {e}",
                self.journal.path.display()
            ))),
        }
    }

    /// Delivers journaled completions in order, one try each, until one cannot be
    /// delivered. Whether the journal is empty afterwards.
    async fn deliver_journal(&self) -> bool {
        if self.journal.len() == 0 {
            return true;
        }
        // One delivery round at a time; a caller that finds one running moves on.
        let Ok(_round) = self.journal.delivering.try_lock() else {
            return false;
        };
        let lines = match self.journal.read().await {
            Ok(lines) => lines,
            Err(e) => {
                tracing::error!(journal = %self.journal.path.display(), error = %e, "cannot read the completion journal");
                return false;
            }
        };
        let mut done = 0;
        for line in &lines {
            let entry = match serde_json::from_str::<Entry>(line) {
                Ok(entry) if is_task_id(&entry.id) => entry,
                _ => {
                    tracing::error!(
                        journal = %self.journal.path.display(),
                        line = %snippet(line),
                        "an unreadable line in the completion journal; dropped"
                    );
                    done += 1;
                    continue;
                }
            };
            let req = Req {
                body: Some(&entry.body),
                ..Req::new(Method::POST, format!("/tasks/{}/complete", entry.id))
            };
            match self.call(&req).await {
                Ok(_) => {
                    tracing::info!(task_id = %entry.id, "delivered a journaled completion");
                    done += 1;
                }
                Err(e) if e.is_refusal() => {
                    tracing::warn!(
                        task_id = %entry.id,
                        error = %e.message(),
                        "the TaskManager refused a journaled completion; dropped"
                    );
                    done += 1;
                }
                Err(e) => {
                    tracing::debug!(error = %e.message(), "journaled completions cannot be delivered yet");
                    break;
                }
            }
        }
        if done > 0
            && let Err(e) = self.journal.remove_first(done).await
        {
            // They were delivered; delivering them again later is refused (400) and dropped.
            tracing::error!(journal = %self.journal.path.display(), error = %e, "cannot rewrite the completion journal");
        }
        self.journal.len() == 0
    }

    /// Fails a task again that this host finished `Failed`/`Dead` and the server requeued.
    async fn fail_again(&self, task: &Claimed, error: &str) {
        tracing::info!(
            task_id = %task.id,
            attempt = task.attempts,
            "the TaskManager requeued a task this host failed for good; failing it again without running it"
        );
        let body = json!({"worker_id": task.lease, "success": false, "error": error});
        match self.complete(&task.id, &task.lease, body).await {
            Ok(Some(status)) if !status.starts_with("pending") => {
                self.terminal
                    .lock()
                    .expect("no panics under the terminal lock")
                    .forget(&task.id);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(task_id = %task.id, error = %e, "could not fail the task again"),
        }
    }

    fn remembered_failure(&self, id: &str) -> Option<String> {
        self.terminal
            .lock()
            .expect("no panics under the terminal lock")
            .errors
            .get(id)
            .cloned()
    }

    /// Tasks of `status` (and `task_type`, exactly), at most `limit`.
    async fn list_items(
        &self,
        status: Option<&str>,
        task_type: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Value>, SourceError> {
        let mut query = vec![("limit", limit.to_string())];
        if let Some(status) = status {
            query.push(("status", status.to_string()));
        }
        if let Some(t) = task_type {
            query.push(("type", t.to_string()));
        }
        let req = Req {
            query,
            retries: self.max_retries,
            ..Req::new(Method::GET, "/tasks".to_string())
        };
        let data = self.call(&req).await.map_err(CallError::into_source_error)?;
        let items = match data {
            Value::Array(items) => items,
            other => other
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        };
        // The server's type filter is an SQL LIKE: `_` matches any character.
        Ok(items
            .into_iter()
            .filter(|item| task_type.is_none_or(|t| item.get("type").and_then(Value::as_str) == Some(t)))
            .collect())
    }
}

#[async_trait]
impl TaskSource for HttpSource {
    async fn claim(
        &self,
        types: &[String],
        owner: &str,
        lease: Duration,
    ) -> Result<Option<Claimed>, SourceError> {
        self.deliver_journal().await;
        if types.is_empty() {
            return Ok(None);
        }
        for name in types {
            check_type_name(name)?;
        }
        if lease > SERVER_CLAIM_TIMEOUT && !self.warned_long_lease.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                lease_s = lease.as_secs(),
                "tasks may run longer than the TaskManager's claim timeout (300 s by default): past it \
                 another host may claim the same task, and this host's completion is then refused"
            );
        }
        let worker_id = self.worker_id_for(owner)?;
        let n = types.len();
        let start = self.rotation.fetch_add(1, Ordering::Relaxed) % n;
        let mut refused: Option<SourceError> = None;
        let mut refails = 0;
        let mut i = 0;
        while i < n {
            let name = &types[(start + i) % n];
            let Some(type_id) = self.type_id(name).await? else {
                i += 1;
                continue;
            };
            let data = match self.claim_type(name, type_id, &worker_id).await {
                Ok(Some(data)) => data,
                Ok(None) => {
                    i += 1;
                    continue;
                }
                Err(e) if e.is_refusal() => {
                    // A stale type id (the type was registered again?): look it up next time.
                    self.forget_type(name);
                    refused.get_or_insert(e.into_source_error());
                    i += 1;
                    continue;
                }
                Err(e) => return Err(e.into_source_error()),
            };
            let task = match self.claimed_from(name, &data, &worker_id) {
                Ok(task) => task,
                Err((id, why)) if is_task_id(&id) => {
                    // Claimed but unusable: fail it rather than leave it claimed for nothing.
                    let error = one_line(&format!("failed: unreadable task from the TaskManager: {why}"));
                    let body = json!({"worker_id": worker_id, "success": false, "error": error});
                    if let Err(e) = self.complete(&id, &worker_id, body).await {
                        tracing::warn!(task_id = %id, error = %e, "could not fail an unreadable task");
                    }
                    return Err(SourceError::Invalid(format!(
                        "task `{id}`: {why} (reported as failed)"
                    )));
                }
                Err((_, why)) => return Err(SourceError::Unavailable(format!("TaskManager claim: {why}"))),
            };
            if let Some(error) = self.remembered_failure(&task.id)
                && refails < REFAILS_PER_CLAIM
            {
                refails += 1;
                self.fail_again(&task, &error).await;
                continue;
            }
            self.claims
                .lock()
                .expect("no panics under the claims lock")
                .insert(task.id.clone(), (task.lease.clone(), task.attempts));
            return Ok(Some(task));
        }
        match refused {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }

    async fn finish(&self, task: &Claimed, outcome: &Outcome, _record: &Record) -> Result<(), SourceError> {
        if !is_task_id(&task.id) {
            return Err(SourceError::NotFound(task.id.clone()));
        }
        self.forget_claim(&task.id, task.attempts);
        let worker_id = if task.lease.is_empty() {
            self.worker_id.clone().ok_or_else(|| {
                SourceError::Invalid(format!(
                    "task `{}` has no lease (worker id) to complete under",
                    task.id
                ))
            })?
        } else {
            task.lease.clone()
        };
        let (body, terminal_error) = match outcome {
            Outcome::Completed { result } => {
                let mut body = json!({"worker_id": worker_id, "success": true});
                let size = php_json_len(result);
                if size > RESULT_MAX {
                    tracing::warn!(
                        task_id = %task.id,
                        bytes = size,
                        "the result is too large for the TaskManager; a summary is stored instead"
                    );
                    body["result"] = json!({
                        "truncated": true,
                        "original_bytes": size,
                        "note": format!(
                            "the worker's result was {size} bytes of JSON, more than the {RESULT_MAX} \
                             bytes the TaskManager can store; it was not kept"
                        ),
                    });
                    body["error"] = json!(format!(
                        "result truncated: {size} bytes of JSON, over the TaskManager's 64 KiB limit"
                    ));
                } else {
                    body["result"] = result.clone();
                }
                (body, None)
            }
            Outcome::Retry { error, .. } => (failure_body(&worker_id, "retry", error), None),
            Outcome::Failed { error } => {
                let body = failure_body(&worker_id, "failed", error);
                let error = body["error"].as_str().map(str::to_string);
                (body, error)
            }
            Outcome::Dead { error } => {
                let body = failure_body(&worker_id, "dead", error);
                let error = body["error"].as_str().map(str::to_string);
                (body, error)
            }
        };
        if !self.deliver_journal().await {
            // Behind the completions still waiting, in order.
            return self
                .journal_completion(
                    &task.id,
                    &worker_id,
                    body,
                    "earlier completions are still journaled",
                )
                .await;
        }
        let status = self.complete(&task.id, &worker_id, body).await?;
        if let (Some(status), Some(error)) = (status, terminal_error) {
            let mut terminal = self.terminal.lock().expect("no panics under the terminal lock");
            if status.starts_with("pending") {
                terminal.remember(&task.id, &error);
            } else {
                terminal.forget(&task.id);
            }
        }
        Ok(())
    }

    async fn release(&self, task: &Claimed) -> Result<(), SourceError> {
        self.forget_claim(&task.id, task.attempts);
        tracing::debug!(
            task_id = %task.id,
            "the TaskManager has no release: the task stays claimed until its claim times out"
        );
        Ok(())
    }

    async fn extend(&self, _task: &Claimed, _lease: Duration) -> Result<(), SourceError> {
        // No endpoint extends a claim (progress updates do not either).
        Ok(())
    }

    async fn progress(&self, task: &Claimed, percent: u8, message: Option<&str>) -> Result<(), SourceError> {
        let claimed = self
            .claims
            .lock()
            .expect("no panics under the claims lock")
            .get(&task.id)
            .cloned();
        // Not claimed by this source, finished, or refused before: nothing to report on.
        let Some((worker_id, attempts)) = claimed.filter(|(_, a)| *a == task.attempts) else {
            return Err(SourceError::LeaseLost(task.id.clone()));
        };
        let mut body = json!({"worker_id": worker_id, "progress": percent.min(100)});
        if let Some(message) = message {
            body["message"] = json!(message);
        }
        // One try: a lost report is replaced by the next one.
        let req = Req {
            body: Some(&body),
            ..Req::new(Method::POST, format!("/tasks/{}/progress", task.id))
        };
        let Err(e) = self.call(&req).await else {
            return Ok(());
        };
        let gone = match e.status() {
            Some(403 | 400) => SourceError::LeaseLost(task.id.clone()),
            Some(404) => SourceError::NotFound(task.id.clone()),
            _ if e.is_refusal() => SourceError::Invalid(e.message()),
            _ => return Err(SourceError::Unavailable(e.message())),
        };
        tracing::debug!(task_id = %task.id, attempt = attempts, error = %e.message(), "the TaskManager refused progress; no more is sent for this claim");
        self.forget_claim(&task.id, attempts);
        Err(gone)
    }

    async fn health(&self) -> Result<(), SourceError> {
        self.deliver_journal().await;
        let req = Req {
            auth: false,
            ..Req::new(Method::GET, "/health".to_string())
        };
        let data = self
            .call(&req)
            .await
            .map_err(|e| SourceError::Unavailable(e.message()))?;
        let status = data.get("status").and_then(Value::as_str);
        let database = data.get("database").and_then(Value::as_str);
        if status.is_some_and(|s| s != "healthy") || database.is_some_and(|d| d != "connected") {
            return Err(SourceError::Unavailable(format!(
                "TaskManager {}: status {}, database {}",
                self.endpoint(&Method::GET, "/health"),
                status.unwrap_or("?"),
                database.unwrap_or("?")
            )));
        }
        Ok(())
    }

    async fn depth(&self, types: &[String]) -> Result<Depth, SourceError> {
        for name in types {
            check_type_name(name)?;
        }
        let all = [None];
        let names: Vec<Option<&str>> = if types.is_empty() {
            all.to_vec()
        } else {
            types.iter().map(|t| Some(t.as_str())).collect()
        };
        let mut depth = Depth::default();
        for name in names {
            depth.ready += self.list_items(Some("pending"), name, DEPTH_LIMIT).await?.len() as u64;
            depth.running += self.list_items(Some("claimed"), name, DEPTH_LIMIT).await?.len() as u64;
        }
        Ok(depth)
    }

    async fn enqueue(&self, tasks: &[NewTask]) -> Result<Vec<Enqueued>, SourceError> {
        for task in tasks {
            check_type_name(&task.task_type)?;
            if task.params.is_empty() {
                return Err(SourceError::Invalid(format!(
                    "a task of type `{}` has no params: the TaskManager refuses an empty params object",
                    task.task_type
                )));
            }
            let size = php_json_len(&Value::Object(task.params.clone()));
            if size > SERVER_COLUMN_MAX {
                return Err(SourceError::Invalid(format!(
                    "a task of type `{}` has {size} bytes of params; the TaskManager stores at most 64 KiB",
                    task.task_type
                )));
            }
        }
        if tasks.iter().any(|t| t.priority != 0) && !self.warned_priority.swap(true, Ordering::Relaxed) {
            tracing::warn!("the TaskManager cannot set a task's priority on creation; priority is ignored");
        }
        if tasks.iter().any(|t| t.dedupe_key.is_some())
            && !self.warned_dedupe_key.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                "the TaskManager dedupes tasks by their type and params, not by a key; dedupe_key is ignored"
            );
        }
        let mut out = Vec::with_capacity(tasks.len());
        for task in tasks {
            let body = json!({"type": task.task_type, "params": Value::Object(task.params.clone())});
            let req = Req {
                body: Some(&body),
                retries: self.max_retries,
                ..Req::new(Method::POST, "/tasks".to_string())
            };
            let data = match self.call(&req).await {
                Ok(data) => data,
                Err(e) => {
                    let note = if out.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " ({} of {} tasks were added; adding them all again is safe: the server dedupes)",
                            out.len(),
                            tasks.len()
                        )
                    };
                    let why = match e.status() {
                        Some(404) => format!(
                            "the TaskManager has no task type `{}` (register it first): {}",
                            task.task_type,
                            e.message()
                        ),
                        _ => e.message(),
                    };
                    return Err(if e.is_refusal() {
                        SourceError::Invalid(format!("{why}{note}"))
                    } else {
                        SourceError::Unavailable(format!("{why}{note}"))
                    });
                }
            };
            let id = data.get("id").and_then(id_string).ok_or_else(|| {
                SourceError::Unavailable(format!(
                    "TaskManager {}: a reply without an id",
                    self.endpoint(&Method::POST, "/tasks")
                ))
            })?;
            let deduplicated = [data.get("deduplicated"), data.get("duplicate")]
                .into_iter()
                .flatten()
                .any(truthy);
            out.push(Enqueued { id, deduplicated });
        }
        Ok(out)
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<TaskView>, SourceError> {
        if let Some(t) = &filter.task_type {
            check_type_name(t)?;
        }
        let status = filter.status.map(|s| match s {
            Status::Pending => "pending",
            Status::Running => "claimed",
            Status::Completed => "completed",
            Status::Failed | Status::Dead => "failed",
        });
        let limit = if filter.limit == 0 {
            DEFAULT_LIST_LIMIT
        } else {
            filter.limit
        };
        let items = self
            .list_items(status, filter.task_type.as_deref(), limit)
            .await?;
        let mut out = Vec::with_capacity(items.len());
        for item in &items {
            let view = view_of(item)?;
            if filter.status.is_none_or(|s| s == view.status) {
                out.push(view);
            }
        }
        Ok(out)
    }

    async fn show(&self, id: &str) -> Result<TaskView, SourceError> {
        if !is_task_id(id) {
            return Err(SourceError::NotFound(id.to_string()));
        }
        let req = Req {
            retries: self.max_retries,
            ..Req::new(Method::GET, format!("/tasks/{id}"))
        };
        let data = match self.call(&req).await {
            Ok(data) => data,
            Err(e) if e.status() == Some(404) => return Err(SourceError::NotFound(id.to_string())),
            Err(e) => return Err(e.into_source_error()),
        };
        let item = match &data {
            Value::Object(o) if o.contains_key("items") => {
                o["items"].as_array().and_then(|items| items.first()).cloned()
            }
            Value::Object(o) if o.contains_key("id") => Some(data.clone()),
            _ => None,
        };
        match item {
            Some(item) => view_of(&item),
            None => Err(SourceError::NotFound(id.to_string())),
        }
    }

    async fn retry(&self, id: &str) -> Result<(), SourceError> {
        Err(SourceError::Invalid(format!(
            "cannot retry task `{id}`: the TaskManager has no requeue endpoint"
        )))
    }
}

/// The base URL (without a trailing slash) and its form for messages (no credentials).
fn parse_base(url: &str) -> Result<(String, String), SourceError> {
    let trimmed = url.trim().trim_end_matches('/');
    let parsed = Url::parse(trimmed).map_err(|e| {
        SourceError::Invalid(format!(
            "task_manager.url is not a URL ({e}); expected e.g. https://host/api"
        ))
    })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(SourceError::Invalid(
            "task_manager.url must be an http:// or https:// URL with a host, e.g. https://host/api"
                .to_string(),
        ));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(SourceError::Invalid(
            "task_manager.url must not have a query or fragment (the API key goes in api_key)".to_string(),
        ));
    }
    let mut shown = parsed.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    let shown = shown.as_str().trim_end_matches('/').to_string();
    let base = parsed.as_str().trim_end_matches('/').to_string();
    Ok((base, shown))
}

/// Type names go into URL paths the server does not decode.
fn check_type_name(name: &str) -> Result<(), SourceError> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(SourceError::Invalid(format!(
            "task type `{name}` cannot be used with the TaskManager: names must be made of \
             A-Z, a-z, 0-9, `.`, `_` and `-` (the server does not URL-decode paths)"
        )));
    }
    Ok(())
}

/// The server's task ids are positive integers.
fn is_task_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit())
}

fn is_no_task(e: &CallError) -> bool {
    let message = e.server_message().to_ascii_lowercase();
    match e.status() {
        Some(500) => message.contains(NO_TASK_500),
        Some(404) => message.contains(NO_TASK_404),
        _ => false,
    }
}

/// A reqwest error without its URL, with its causes.
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut out = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// The server's message in an error body (`error`, `details`, or the 401's `message`).
fn error_text(parsed: Option<&Value>, raw: &[u8]) -> Option<String> {
    if let Some(Value::Object(o)) = parsed {
        let error = o.get("error").and_then(Value::as_str);
        let message = o.get("message").and_then(Value::as_str);
        let mut text = match (error, message) {
            (Some(e), Some(m)) if o.get("success").is_none() => format!("{e}: {m}"),
            (Some(e), _) => e.to_string(),
            (None, Some(m)) => m.to_string(),
            (None, None) => String::new(),
        };
        if let Some(details) = o.get("details").and_then(Value::as_array) {
            let details: Vec<String> = details
                .iter()
                .map(|d| d.as_str().map_or_else(|| d.to_string(), str::to_string))
                .collect();
            if !details.is_empty() {
                text.push_str(&format!(" ({})", details.join("; ")));
            }
        }
        if !text.is_empty() {
            return Some(snippet(&text));
        }
    }
    let raw = String::from_utf8_lossy(raw);
    let raw = raw.trim();
    (!raw.is_empty()).then(|| snippet(raw))
}

/// A short one-line excerpt, for messages.
fn snippet(text: &str) -> String {
    let line = one_line(text);
    if line.chars().count() <= 300 {
        return line;
    }
    let cut: String = line.chars().take(300).collect();
    format!("{cut}…")
}

/// `text` on one line, at most `ERROR_MAX` bytes (cut on a char boundary).
fn one_line(text: &str) -> String {
    let mut line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if line.len() > ERROR_MAX {
        let mut end = ERROR_MAX - '…'.len_utf8();
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
        line.push('…');
    }
    line
}

fn failure_body(worker_id: &str, kind: &str, error: &str) -> Value {
    json!({"worker_id": worker_id, "success": false, "error": one_line(&format!("{kind}: {error}"))})
}

/// The size of `value` as PHP's `json_encode` writes it (by default `/` as `\/` and every
/// non-ASCII character as `\uXXXX`), which is what the server stores.
fn php_json_len(value: &Value) -> usize {
    let text = serde_json::to_string(value).unwrap_or_default();
    text.chars()
        .map(|c| match c {
            '/' => 2,
            c if c.is_ascii() => 1,
            c if (c as u32) < 0x10000 => 6,
            _ => 12,
        })
        .sum()
}

/// An id given as an integer or a string.
fn id_string(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => n.as_u64().map(|n| n.to_string()),
        Value::String(s) if is_task_id(s.trim()) => Some(s.trim().to_string()),
        _ => None,
    }
}

/// A number given as a number or a string.
fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        Value::Bool(b) => Some(i64::from(*b)),
        _ => None,
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty() && s != "0" && s != "false",
        _ => false,
    }
}

/// Params given as an object, a JSON string of one, or nothing.
fn params_of(v: Option<&Value>) -> Result<Map<String, Value>, String> {
    match v {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(o)) => Ok(o.clone()),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(o)) => Ok(o),
            _ => Err(format!("its params are not a JSON object: {}", snippet(s))),
        },
        Some(other) => Err(format!(
            "its params are not a JSON object: {}",
            snippet(&other.to_string())
        )),
    }
}

/// Unix seconds from the server's `"YYYY-MM-DD HH:MM:SS"` (UTC), an RFC 3339 time, or a
/// number.
fn parse_time(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => {
            let s = s.trim();
            if let Ok(n) = s.parse::<f64>() {
                return Some(n);
            }
            if let Ok(ts) = s.parse::<jiff::Timestamp>() {
                return Some(ts.as_millisecond() as f64 / 1000.0);
            }
            let dt = s.parse::<jiff::civil::DateTime>().ok()?;
            let ts = jiff::tz::TimeZone::UTC.to_timestamp(dt).ok()?;
            Some(ts.as_millisecond() as f64 / 1000.0)
        }
        _ => None,
    }
}

fn now() -> f64 {
    jiff::Timestamp::now().as_millisecond() as f64 / 1000.0
}

fn status_of(status: &str, error: Option<&str>) -> Option<Status> {
    let status = status.trim().to_ascii_lowercase();
    Some(match status.as_str() {
        s if s.starts_with("pending") => Status::Pending,
        "claimed" | "running" | "processing" => Status::Running,
        "completed" => Status::Completed,
        "failed" if error.is_some_and(|e| e.starts_with("dead:")) => Status::Dead,
        "failed" => Status::Failed,
        "dead" => Status::Dead,
        _ => return None,
    })
}

/// A task of `GET /tasks` or `GET /tasks/{id}`.
fn view_of(item: &Value) -> Result<TaskView, SourceError> {
    let id = item.get("id").and_then(id_string).ok_or_else(|| {
        SourceError::Invalid(format!("a task without an id: {}", snippet(&item.to_string())))
    })?;
    let text = |key: &str| item.get(key).and_then(Value::as_str).map(str::to_string);
    let error = text("error_message").or_else(|| text("error"));
    let status_text = text("status").unwrap_or_default();
    let status = status_of(&status_text, error.as_deref())
        .ok_or_else(|| SourceError::Invalid(format!("task `{id}`: unknown status `{status_text}`")))?;
    let params =
        params_of(item.get("params")).map_err(|why| SourceError::Invalid(format!("task `{id}`: {why}")))?;
    let created_at = item.get("created_at").and_then(parse_time).unwrap_or(0.0);
    let updated_at = ["completed_at", "updated_at", "claimed_at"]
        .iter()
        .filter_map(|k| item.get(*k).and_then(parse_time))
        .fold(created_at, f64::max);
    let result = match item.get("result") {
        None | Some(Value::Null) => None,
        // The server may hand back the stored JSON text.
        Some(Value::String(s)) => Some(serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone()))),
        Some(v) => Some(v.clone()),
    };
    Ok(TaskView {
        task_type: text("type").unwrap_or_default(),
        status,
        priority: item.get("priority").and_then(as_i64).unwrap_or(0),
        attempts: item
            .get("attempts")
            .and_then(as_i64)
            .map_or(0, |n| u32::try_from(n.max(0)).unwrap_or(u32::MAX)),
        params,
        dedupe_key: text("dedupe_key"),
        created_at,
        updated_at,
        result,
        error,
        class: None,
        stderr_tail: None,
        lease_owner: if status == Status::Running {
            text("claimed_by")
        } else {
            None
        },
        // The server keeps the last progress (0 until one is reported), not its message.
        progress: item
            .get("progress")
            .and_then(as_i64)
            .and_then(|p| u8::try_from(p).ok())
            .filter(|p| *p <= 100),
        progress_message: None,
        id,
    })
}

/// A completion waiting in the journal.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    id: String,
    worker_id: String,
    body: Value,
}

/// The completion journal: JSON lines, appended and fsynced, rewritten (to a temporary file,
/// renamed over) when delivered entries leave it.
struct Journal {
    path: PathBuf,
    /// Guards every read and write of the file.
    file: tokio::sync::Mutex<()>,
    /// One delivery round at a time.
    delivering: tokio::sync::Mutex<()>,
    /// Lines in the file.
    lines: AtomicUsize,
}

impl Journal {
    /// Opens the journal, creating it (empty) so that a path that cannot be written is
    /// found now rather than when the server is down.
    async fn open(path: PathBuf) -> Result<Journal, SourceError> {
        let p = path.clone();
        let lines = tokio::task::spawn_blocking(move || -> std::io::Result<usize> {
            OpenOptions::new().create(true).append(true).open(&p)?;
            Ok(read_lines(&p)?.len())
        })
        .await
        .map_err(|e| SourceError::Unavailable(format!("the journal check did not finish: {e}")))?
        .map_err(|e| {
            SourceError::Unavailable(format!(
                "cannot open the completion journal {}: {e}",
                path.display()
            ))
        })?;
        Ok(Journal {
            path,
            file: tokio::sync::Mutex::new(()),
            delivering: tokio::sync::Mutex::new(()),
            lines: AtomicUsize::new(lines),
        })
    }

    fn len(&self) -> usize {
        self.lines.load(Ordering::SeqCst)
    }

    async fn append(&self, entry: &Entry) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let _file = self.file.lock().await;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || append_line(&path, &line))
            .await
            .map_err(std::io::Error::other)??;
        self.lines.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn read(&self) -> std::io::Result<Vec<String>> {
        let _file = self.file.lock().await;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || read_lines(&path))
            .await
            .map_err(std::io::Error::other)?
    }

    /// Removes the first `n` lines (appends only ever add at the end).
    async fn remove_first(&self, n: usize) -> std::io::Result<()> {
        let _file = self.file.lock().await;
        let path = self.path.clone();
        let left = tokio::task::spawn_blocking(move || -> std::io::Result<usize> {
            let lines = read_lines(&path)?;
            let rest = &lines[n.min(lines.len())..];
            let mut tmp = path.clone().into_os_string();
            tmp.push(".tmp");
            let tmp = PathBuf::from(tmp);
            {
                let mut f = File::create(&tmp)?;
                for line in rest {
                    f.write_all(line.as_bytes())?;
                    f.write_all(b"\n")?;
                }
                f.sync_all()?;
            }
            std::fs::rename(&tmp, &path)?;
            sync_dir(&path);
            Ok(rest.len())
        })
        .await
        .map_err(std::io::Error::other)??;
        self.lines.store(left, Ordering::SeqCst);
        Ok(())
    }
}

fn read_lines(path: &Path) -> std::io::Result<Vec<String>> {
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    Ok(text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect())
}

/// Appends `line` (ending in a newline) and fsyncs it.
fn append_line(path: &Path, line: &[u8]) -> std::io::Result<()> {
    let mut f = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)?;
    let len = f.metadata()?.len();
    let mut buf = Vec::with_capacity(line.len() + 1);
    if len > 0 {
        // A line torn by a crash mid-write must not swallow this one.
        let mut last = [0u8];
        f.seek(SeekFrom::End(-1))?;
        f.read_exact(&mut last)?;
        if last[0] != b'\n' {
            buf.push(b'\n');
        }
    }
    buf.extend_from_slice(line);
    f.write_all(&buf)?;
    f.sync_all()?;
    if len == 0 {
        sync_dir(path);
    }
    Ok(())
}

/// Makes a file's creation or renaming durable (best effort: not every file system can).
fn sync_dir(path: &Path) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
        tracing::debug!(dir = %dir.display(), error = %e, "cannot fsync the journal's directory");
    }
}

#[cfg(test)]
mod tests {
    //! An in-process fake TaskManager reproducing the documented behaviour and quirks.

    use std::net::SocketAddr;
    use std::sync::Arc;

    use axum::Router;
    use axum::body::{Body, Bytes};
    use axum::extract::State;
    use axum::http::{HeaderMap, Method as HttpMethod, StatusCode, Uri, header};
    use axum::response::Response;
    use tokio::sync::oneshot;

    use super::*;

    const KEY: &str = "sekrit-KEY-7f3a9c";
    const MAX_ATTEMPTS: i64 = 3;

    #[derive(Debug, Clone)]
    struct FakeTask {
        id: i64,
        task_type: String,
        params: Value,
        dedupe_key: String,
        status: String,
        attempts: i64,
        priority: i64,
        claimed_by: Option<String>,
        claimed_at: Option<Instant>,
        result: Option<Value>,
        error_message: Option<String>,
        created_at: String,
        progress: i64,
        progress_message: Option<String>,
    }

    #[derive(Debug, Clone)]
    struct Fault {
        method: &'static str,
        path: String,
        status: u16,
        content_type: &'static str,
        body: String,
        remaining: u32,
    }

    #[derive(Debug, Clone)]
    struct Hit {
        method: String,
        path: String,
        body: Value,
        key: Option<String>,
        at: Instant,
    }

    struct FakeState {
        types: Vec<(i64, String)>,
        tasks: Vec<FakeTask>,
        next_id: i64,
        claim_timeout: Duration,
        faults: Vec<Fault>,
        hits: Vec<Hit>,
    }

    type Shared = Arc<std::sync::Mutex<FakeState>>;

    fn fake_state(types: &[&str]) -> Shared {
        Arc::new(std::sync::Mutex::new(FakeState {
            types: types
                .iter()
                .enumerate()
                .map(|(i, t)| (i as i64 + 1, t.to_string()))
                .collect(),
            tasks: Vec::new(),
            next_id: 1,
            claim_timeout: Duration::from_secs(300),
            faults: Vec::new(),
            hits: Vec::new(),
        }))
    }

    fn envelope(data: Value) -> (u16, &'static str, String) {
        let body = json!({"success": true, "message": "Success", "data": data, "timestamp": 1_700_000_000});
        (200, "application/json", body.to_string())
    }

    fn error(code: u16, message: &str) -> (u16, &'static str, String) {
        let body = json!({"success": false, "error": message, "timestamp": 1_700_000_000});
        (code, "application/json", body.to_string())
    }

    fn sql_error(column: &str) -> (u16, &'static str, String) {
        error(
            500,
            &format!(
                "SQLSTATE[22001]: String data, right truncated: 1406 Data too long for column '{column}' at row 1"
            ),
        )
    }

    /// PHP's truthiness: the string "false" is true.
    fn php_truthy(v: Option<&Value>) -> bool {
        match v {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::Number(n)) => n.as_f64() != Some(0.0),
            Some(Value::String(s)) => !(s.is_empty() || s == "0"),
            Some(Value::Array(a)) => !a.is_empty(),
            Some(Value::Object(_)) => true,
        }
    }

    /// SQL LIKE with `%` and `_`.
    fn like(pattern: &[char], text: &[char]) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some(('%', rest)) => (0..=text.len()).any(|i| like(rest, &text[i..])),
            Some(('_', rest)) => !text.is_empty() && like(rest, &text[1..]),
            Some((c, rest)) => text.first() == Some(c) && like(rest, &text[1..]),
        }
    }

    fn summary(t: &FakeTask) -> Value {
        json!({"id": t.id, "type": t.task_type, "status": t.status, "priority": t.priority,
               "attempts": t.attempts, "claimed_by": t.claimed_by, "created_at": t.created_at})
    }

    fn full(t: &FakeTask) -> Value {
        json!({"id": t.id, "type": t.task_type, "status": t.status, "params": t.params,
               "result": t.result, "error_message": t.error_message, "priority": t.priority,
               "progress": t.progress, "attempts": t.attempts, "claimed_by": t.claimed_by,
               "claimed_at": t.claimed_at.map(|_| "2025-01-01 00:00:00"), "completed_at": null,
               "created_at": t.created_at})
    }

    fn respond(
        st: &mut FakeState,
        method: &str,
        path: &str,
        query: &str,
        key: Option<&str>,
        body: &[u8],
    ) -> (u16, &'static str, String) {
        let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        st.hits.push(Hit {
            method: method.to_string(),
            path: path.to_string(),
            body: parsed.clone(),
            key: key.map(str::to_string),
            at: Instant::now(),
        });
        if let Some(f) = st
            .faults
            .iter_mut()
            .find(|f| f.method == method && f.path == path && f.remaining > 0)
        {
            f.remaining -= 1;
            return (f.status, f.content_type, f.body.clone());
        }
        let Some(path) = path.strip_prefix("/api") else {
            return (404, "text/html", "<html>Not Found</html>".to_string());
        };
        if path == "/health" && method == "GET" {
            return envelope(
                json!({"status": "healthy", "database": "connected", "timestamp": 1_700_000_000}),
            );
        }
        if key != Some(KEY) {
            let body = json!({"error": "Unauthorized", "message": "Invalid or missing API key",
                              "timestamp": "2025-01-01T00:00:00+00:00"});
            return (401, "text/html", body.to_string());
        }
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (method, segments.as_slice()) {
            ("GET", ["task-types"]) => {
                error(500, "SQLSTATE[42S22]: Column not found: 1054 Unknown column 'x'")
            }
            ("GET", ["task-types", name]) => {
                // Path segments are not URL-decoded.
                let items: Vec<Value> = st
                    .types
                    .iter()
                    .filter(|(_, n)| n == name)
                    .map(|(id, n)| json!({"id": id, "name": n, "version": "1.0", "param_schema": {"type": "object"}, "is_active": 1}))
                    .collect();
                let count = items.len();
                envelope(json!({"items": items, "count": count}))
            }
            ("POST", ["tasks"]) => {
                let Some(task_type) = parsed.get("type").and_then(Value::as_str) else {
                    return error(400, "Missing required field: type");
                };
                match parsed.get("params") {
                    Some(Value::Object(o)) if !o.is_empty() => {}
                    _ => {
                        let body = json!({"success": false, "error": "Validation failed",
                                          "details": ["params must be a non-empty object"], "timestamp": 1});
                        return (400, "application/json", body.to_string());
                    }
                }
                if !st.types.iter().any(|(_, n)| n == task_type) {
                    return error(404, "Task type not found");
                }
                let params_text = parsed["params"].to_string();
                if params_text.len() > 65_535 {
                    return sql_error("params");
                }
                let dedupe_key = format!("{task_type}:{params_text}");
                if let Some(t) = st.tasks.iter().find(|t| t.dedupe_key == dedupe_key) {
                    return envelope(json!({"id": t.id, "status": t.status, "deduplicated": true}));
                }
                let id = st.next_id;
                st.next_id += 1;
                st.tasks.push(FakeTask {
                    id,
                    task_type: task_type.to_string(),
                    params: parsed["params"].clone(),
                    dedupe_key: dedupe_key.clone(),
                    status: "pending".to_string(),
                    attempts: 0,
                    priority: 0,
                    claimed_by: None,
                    claimed_at: None,
                    result: None,
                    error_message: None,
                    created_at: format!("2025-01-01 00:00:{:02}", id % 60),
                    progress: 0,
                    progress_message: None,
                });
                envelope(
                    json!({"id": id.to_string(), "type": task_type, "status": "pending", "dedupe_key": dedupe_key}),
                )
            }
            ("POST", ["tasks", "claim"]) => {
                let worker = parsed.get("worker_id").and_then(Value::as_str).unwrap_or("");
                let type_id = parsed.get("task_type_id").and_then(Value::as_i64).unwrap_or(0);
                if worker.is_empty() || type_id <= 0 {
                    return error(400, "worker_id and a positive task_type_id are required");
                }
                if worker.chars().count() > 255 {
                    return sql_error("claimed_by");
                }
                let Some(name) = st
                    .types
                    .iter()
                    .find(|(id, _)| *id == type_id)
                    .map(|(_, n)| n.clone())
                else {
                    return error(500, "There is no active transaction");
                };
                let timeout = st.claim_timeout;
                let sort_by = parsed
                    .get("sort_by")
                    .and_then(Value::as_str)
                    .unwrap_or("created_at")
                    .to_string();
                let desc = parsed.get("sort_order").and_then(Value::as_str) == Some("DESC");
                let mut candidates: Vec<&mut FakeTask> = st
                    .tasks
                    .iter_mut()
                    .filter(|t| {
                        t.task_type == name
                            && (t.status == "pending"
                                || (t.status == "claimed"
                                    && t.claimed_at.is_some_and(|at| at.elapsed() >= timeout)))
                    })
                    .collect();
                candidates.sort_by(|a, b| {
                    let key = |t: &FakeTask| match sort_by.as_str() {
                        "priority" => t.priority,
                        "attempts" => t.attempts,
                        _ => t.id,
                    };
                    let ord = if sort_by == "created_at" {
                        a.created_at.cmp(&b.created_at)
                    } else {
                        key(a).cmp(&key(b))
                    };
                    let ord = if desc { ord.reverse() } else { ord };
                    ord.then(a.id.cmp(&b.id))
                });
                let Some(task) = candidates.into_iter().next() else {
                    // The real server's bug: an empty queue is a 500.
                    return error(500, "There is no active transaction");
                };
                task.status = "claimed".to_string();
                task.claimed_by = Some(worker.to_string());
                task.claimed_at = Some(Instant::now());
                task.attempts += 1;
                envelope(
                    json!({"id": task.id, "type": task.task_type, "params": task.params,
                                "attempts": task.attempts, "priority": task.priority}),
                )
            }
            ("GET", ["tasks"]) => {
                let pairs: Vec<(String, String)> = Url::parse(&format!("http://x/?{query}"))
                    .unwrap()
                    .query_pairs()
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                let limit: usize = get("limit").and_then(|l| l.parse().ok()).unwrap_or(10);
                let status = get("status");
                let pattern: Option<Vec<char>> = get("type").map(|t| t.chars().collect());
                let items: Vec<Value> = st
                    .tasks
                    .iter()
                    .rev()
                    .filter(|t| status.as_ref().is_none_or(|s| &t.status == s))
                    .filter(|t| {
                        pattern
                            .as_ref()
                            .is_none_or(|p| like(p, &t.task_type.chars().collect::<Vec<_>>()))
                    })
                    .take(limit)
                    .map(summary)
                    .collect();
                let count = items.len();
                envelope(json!({"items": items, "count": count}))
            }
            ("GET", ["tasks", id]) => {
                let items: Vec<Value> = st
                    .tasks
                    .iter()
                    .filter(|t| id.parse::<i64>().ok() == Some(t.id))
                    .map(full)
                    .collect();
                envelope(json!({"items": items, "count": items.len()}))
            }
            ("POST", ["tasks", id, "progress"]) => {
                let worker = parsed.get("worker_id").and_then(Value::as_str).unwrap_or("");
                let Some(progress) = parsed
                    .get("progress")
                    .and_then(Value::as_i64)
                    .filter(|p| (0..=100).contains(p))
                else {
                    return error(400, "progress must be an integer from 0 to 100");
                };
                if worker.is_empty() {
                    return error(400, "worker_id is required");
                }
                let Some(task) = st.tasks.iter_mut().find(|t| id.parse::<i64>().ok() == Some(t.id)) else {
                    return error(404, "Task not found");
                };
                if task.status != "claimed" {
                    return error(400, "Task is not in claimed state");
                }
                if task.claimed_by.as_deref() != Some(worker) {
                    return error(403, "Task is claimed by another worker");
                }
                // No claim extension: `claimed_at` stays.
                task.progress = progress;
                task.progress_message = parsed.get("message").and_then(Value::as_str).map(str::to_string);
                envelope(json!({"id": task.id.to_string(), "progress": progress}))
            }
            ("POST", ["tasks", id, "complete"]) => {
                let worker = parsed
                    .get("worker_id")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                if worker.is_empty() {
                    return error(400, "worker_id is required");
                }
                if worker.chars().count() > 255 {
                    return sql_error("claimed_by");
                }
                let Some(task) = st.tasks.iter_mut().find(|t| id.parse::<i64>().ok() == Some(t.id)) else {
                    return error(404, "Task not found");
                };
                if task.status != "claimed" {
                    return error(400, "Task is not in claimed state");
                }
                if task.claimed_by.as_deref() != Some(worker.as_str()) {
                    return error(403, "Task is claimed by another worker");
                }
                if parsed.get("result").is_some_and(|r| r.to_string().len() > 65_535) {
                    return sql_error("result");
                }
                task.error_message = parsed.get("error").and_then(Value::as_str).map(str::to_string);
                if php_truthy(parsed.get("success")) {
                    task.status = "completed".to_string();
                    task.result = parsed.get("result").cloned();
                } else if task.attempts < MAX_ATTEMPTS {
                    task.status = "pending".to_string();
                    task.claimed_by = None;
                    task.claimed_at = None;
                    return envelope(json!({"id": task.id.to_string(), "status": "pending (retry)"}));
                } else {
                    task.status = "failed".to_string();
                }
                envelope(json!({"id": task.id.to_string(), "status": task.status}))
            }
            _ => error(404, "Endpoint not found"),
        }
    }

    async fn handle(
        State(st): State<Shared>,
        method: HttpMethod,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
        let (code, content_type, text) = {
            let mut st = st.lock().unwrap();
            respond(
                &mut st,
                method.as_str(),
                uri.path(),
                uri.query().unwrap_or(""),
                key,
                &body,
            )
        };
        Response::builder()
            .status(StatusCode::from_u16(code).unwrap())
            .header(header::CONTENT_TYPE, content_type)
            .header(header::CONNECTION, "close")
            .body(Body::from(text))
            .unwrap()
    }

    struct Fake {
        state: Shared,
        addr: SocketAddr,
        stop: Option<oneshot::Sender<()>>,
        server: tokio::task::JoinHandle<()>,
    }

    impl Fake {
        async fn start(types: &[&str]) -> Fake {
            Fake::serve(fake_state(types), 0).await
        }

        async fn serve(state: Shared, port: u16) -> Fake {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
            let addr = listener.local_addr().unwrap();
            let app = Router::new().fallback(handle).with_state(state.clone());
            let (tx, rx) = oneshot::channel::<()>();
            let server = tokio::spawn(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await
                    .unwrap();
            });
            Fake {
                state,
                addr,
                stop: Some(tx),
                server,
            }
        }

        fn url(&self) -> String {
            format!("http://{}/api/", self.addr)
        }

        /// Stops the server; its state and port are handed back for a restart.
        async fn stop(mut self) -> (Shared, u16) {
            let _ = self.stop.take().unwrap().send(());
            self.server.await.unwrap();
            (self.state.clone(), self.addr.port())
        }

        fn fault(&self, method: &'static str, path: &str, status: u16, body: &str, times: u32) {
            let content_type = if body.starts_with('{') {
                "application/json"
            } else {
                "text/html"
            };
            self.state.lock().unwrap().faults.push(Fault {
                method,
                path: path.to_string(),
                status,
                content_type,
                body: body.to_string(),
                remaining: times,
            });
        }

        fn hits(&self, method: &str, path: &str) -> Vec<Hit> {
            let st = self.state.lock().unwrap();
            st.hits
                .iter()
                .filter(|h| h.method == method && h.path == path)
                .cloned()
                .collect()
        }

        fn task(&self, id: &str) -> FakeTask {
            let st = self.state.lock().unwrap();
            st.tasks.iter().find(|t| t.id.to_string() == id).cloned().unwrap()
        }

        fn add(&self, task_type: &str, params: Value, priority: i64) -> i64 {
            let mut st = self.state.lock().unwrap();
            let id = st.next_id;
            st.next_id += 1;
            st.tasks.push(FakeTask {
                id,
                task_type: task_type.to_string(),
                dedupe_key: format!("{task_type}:{params}"),
                params,
                status: "pending".to_string(),
                attempts: 0,
                priority,
                claimed_by: None,
                claimed_at: None,
                result: None,
                error_message: None,
                created_at: format!("2025-01-01 00:00:{:02}", id % 60),
                progress: 0,
                progress_message: None,
            });
            id
        }
    }

    fn config(url: &str, journal: &Path) -> HttpConfig {
        HttpConfig {
            url: url.to_string(),
            api_key: Some(KEY.to_string()),
            timeout: Duration::from_secs(5),
            max_retries: 2,
            retry_backoff: 2.0,
            worker_id: None,
            sort_by: None,
            sort_order: None,
            journal: journal.to_path_buf(),
        }
    }

    async fn source_with(cfg: HttpConfig) -> HttpSource {
        let mut source = HttpSource::connect(cfg).await.unwrap();
        source.retry_base = Duration::from_millis(5);
        source
    }

    async fn source(fake: &Fake, dir: &tempfile::TempDir) -> HttpSource {
        source_with(config(&fake.url(), &dir.path().join("journal"))).await
    }

    fn types(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn task(task_type: &str, params: Value) -> NewTask {
        NewTask {
            task_type: task_type.to_string(),
            params: params.as_object().unwrap().clone(),
            ..NewTask::default()
        }
    }

    const LEASE: Duration = Duration::from_secs(60);

    async fn claim(s: &HttpSource, list: &[&str], owner: &str) -> Option<Claimed> {
        s.claim(&types(list), owner, LEASE).await.unwrap()
    }

    fn done(result: Value) -> Outcome {
        Outcome::Completed { result }
    }

    fn journal_lines(dir: &tempfile::TempDir) -> Vec<Value> {
        read_lines(&dir.path().join("journal"))
            .unwrap()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn round_trip() {
        let fake = Fake::start(&["Demo.Echo"]).await;
        let dir = tempfile::tempdir().unwrap();
        let s = source(&fake, &dir).await;
        let added = s
            .enqueue(&[
                task("Demo.Echo", json!({"n": 1})),
                task("Demo.Echo", json!({"n": 2})),
            ])
            .await
            .unwrap();
        // Ids come back as strings on create.
        assert_eq!(
            added,
            vec![
                Enqueued {
                    id: "1".into(),
                    deduplicated: false
                },
                Enqueued {
                    id: "2".into(),
                    deduplicated: false
                }
            ]
        );
        // The server dedupes by type and params; its reply has an integer id.
        let again = s.enqueue(&[task("Demo.Echo", json!({"n": 1}))]).await.unwrap();
        assert_eq!(
            again,
            vec![Enqueued {
                id: "1".into(),
                deduplicated: true
            }]
        );

        let t = claim(&s, &["Demo.Echo"], "host:1").await.unwrap();
        assert_eq!(
            (t.id.as_str(), t.task_type.as_str(), t.attempts),
            ("1", "Demo.Echo", 1)
        );
        assert_eq!(Value::Object(t.params.clone()), json!({"n": 1}));
        assert_eq!(t.lease, "host:1");
        assert!(t.created_at > 1.7e9);
        let claim_hit = &fake.hits("POST", "/api/tasks/claim")[0];
        assert_eq!(claim_hit.body, json!({"worker_id": "host:1", "task_type_id": 1}));
        assert_eq!(claim_hit.key.as_deref(), Some(KEY));

        s.finish(&t, &done(json!({"echo": 1})), &Record::default())
            .await
            .unwrap();
        let hit = fake.hits("POST", "/api/tasks/1/complete").pop().unwrap();
        assert_eq!(hit.body["success"], Value::Bool(true));
        assert_eq!(fake.task("1").status, "completed");

        let shown = s.show("1").await.unwrap();
        assert_eq!(shown.status, Status::Completed);
        assert_eq!(shown.result, Some(json!({"echo": 1})));
        assert_eq!(shown.attempts, 1);
        assert!(matches!(s.show("99").await, Err(SourceError::NotFound(id)) if id == "99"));
        assert!(matches!(s.show("abc").await, Err(SourceError::NotFound(_))));

        let listed = s.list(&ListFilter::default()).await.unwrap();
        assert_eq!(
            listed.iter().map(|v| v.id.as_str()).collect::<Vec<_>>(),
            ["2", "1"]
        );
        let pending = s
            .list(&ListFilter {
                status: Some(Status::Pending),
                ..ListFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].id, "2");

        // Empty params are refused here, before the server refuses them.
        let hits_before = fake.hits("POST", "/api/tasks").len();
        let empty = s.enqueue(&[task("Demo.Echo", json!({}))]).await;
        assert!(matches!(empty, Err(SourceError::Invalid(m)) if m.contains("empty params")));
        assert_eq!(fake.hits("POST", "/api/tasks").len(), hits_before);
        // A retry is not something this server can do; release and extend are no-ops.
        assert!(
            matches!(s.retry("1").await, Err(SourceError::Invalid(m)) if m.contains("no requeue endpoint"))
        );
        s.health().await.unwrap();
    }

    #[tokio::test]
    async fn the_empty_queue_quirk_means_no_task_and_is_not_retried() {
        let fake = Fake::start(&["A"]).await;
        let dir = tempfile::tempdir().unwrap();
        let s = source(&fake, &dir).await;
        assert!(claim(&s, &["A"], "h").await.is_none());
        // One request: the 500 "There is no active transaction" is an answer.
        assert_eq!(fake.hits("POST", "/api/tasks/claim").len(), 1);
        // The documented 404 means the same.
        fake.fault(
            "POST",
            "/api/tasks/claim",
            404,
            r#"{"success": false, "error": "No tasks available", "timestamp": 1}"#,
            1,
        );
        assert!(claim(&s, &["A"], "h").await.is_none());
        assert_eq!(fake.hits("POST", "/api/tasks/claim").len(), 2);
        // Other 500s are errors (retried, then Unavailable).
        fake.fault(
            "POST",
            "/api/tasks/claim",
            500,
            r#"{"success": false, "error": "SQLSTATE[HY000]: boom"}"#,
            9,
        );
        let e = s.claim(&types(&["A"]), "h", LEASE).await.unwrap_err();
        assert!(
            matches!(&e, SourceError::Unavailable(m) if m.contains("boom") && m.contains("/tasks/claim")),
            "{e}"
        );
        assert_eq!(fake.hits("POST", "/api/tasks/claim").len(), 5);
        // The list of task types always fails on this server; it is never asked.
        assert!(fake.hits("GET", "/api/task-types").is_empty());
    }

    #[tokio::test]
    async fn unknown_and_invalid_types() {
        let fake = Fake::start(&["known"]).await;
        fake.add("known", json!({"x": 1}), 0);
        let dir = tempfile::tempdir().unwrap();
        let s = source(&fake, &dir).await;
        let t = claim(&s, &["nope", "known"], "h").await.unwrap();
        assert_eq!(t.task_type, "known");
        assert!(claim(&s, &["nope", "known"], "h").await.is_none());
        // Each type is looked up once; the unknown one is not asked again at once.
        assert_eq!(fake.hits("GET", "/api/task-types/known").len(), 1);
        assert_eq!(fake.hits("GET", "/api/task-types/nope").len(), 1);
        // ... but later: the type may be registered meanwhile.
        fake.state.lock().unwrap().types.push((7, "nope".into()));
        fake.add("nope", json!({"y": 1}), 0);
        if let Some(TypeId::Unknown { recheck_at }) = s.types.lock().unwrap().get_mut("nope") {
            *recheck_at = Instant::now();
        }
        assert_eq!(claim(&s, &["nope"], "h").await.unwrap().task_type, "nope");
        for bad in ["a b", "x/y", "ü", "", "a%20b"] {
            let e = s.claim(&types(&[bad]), "h", LEASE).await.unwrap_err();
            assert!(matches!(e, SourceError::Invalid(_)), "{bad}: {e}");
        }
    }

    #[tokio::test]
    async fn claims_rotate_over_types() {
        let fake = Fake::start(&["a", "b"]).await;
        for i in 0..3 {
            fake.add("a", json!({"i": i}), 0);
            fake.add("b", json!({"i": i}), 0);
        }
        let dir = tempfile::tempdir().unwrap();
        let s = source(&fake, &dir).await;
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(claim(&s, &["a", "b"], "h").await.unwrap().task_type);
        }
        assert_eq!(got, ["a", "b", "a", "b"]);
    }

    #[tokio::test]
    async fn claim_order_follows_sort_settings() {
        let fake = Fake::start(&["a"]).await;
        fake.add("a", json!({"i": 1}), 1);
        fake.add("a", json!({"i": 2}), 9);
        fake.add("a", json!({"i": 3}), 5);
        let dir = tempfile::tempdir().unwrap();
        // Default: oldest first.
        let s = source(&fake, &dir).await;
        assert_eq!(claim(&s, &["a"], "h").await.unwrap().id, "1");
        let mut cfg = config(&fake.url(), &dir.path().join("j2"));
        cfg.sort_by = Some("priority".into());
        cfg.sort_order = Some("desc".into());
        let s = source_with(cfg).await;
        let t = claim(&s, &["a"], "h").await.unwrap();
        assert_eq!((t.id.as_str(), t.priority), ("2", 9));
        assert_eq!(t.id, "2");
        let hit = fake.hits("POST", "/api/tasks/claim").pop().unwrap();
        assert_eq!(hit.body["sort_by"], "priority");
        assert_eq!(hit.body["sort_order"], "DESC");
        let mut bad = config(&fake.url(), &dir.path().join("j3"));
        bad.sort_by = Some("random".into());
        assert!(matches!(
            HttpSource::connect(bad).await,
            Err(SourceError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn transient_5xx_is_retried_and_4xx_is_not() {
        let fake = Fake::start(&["a"]).await;
        fake.add("a", json!({"i": 1}), 0);
        let dir = tempfile::tempdir().unwrap();
        let s = source(&fake, &dir).await;
        fake.fault("POST", "/api/tasks/claim", 502, "<html>502 Bad Gateway</html>", 2);
        let t = claim(&s, &["a"], "h").await.unwrap();
        assert_eq!(t.id, "1");
        assert_eq!(fake.hits("POST", "/api/tasks/claim").len(), 3);

        // A 4xx is an answer: one request, no retry.
        let e = s
            .enqueue(&[task("unregistered", json!({"a": 1}))])
            .await
            .unwrap_err();
        assert!(
            matches!(&e, SourceError::Invalid(m) if m.contains("no task type `unregistered`")),
            "{e}"
        );
        assert_eq!(fake.hits("POST", "/api/tasks").len(), 1);
        fake.fault(
            "GET",
            "/api/tasks/1",
            400,
            r#"{"success": false, "error": "Bad id"}"#,
            5,
        );
        assert!(matches!(s.show("1").await, Err(SourceError::Invalid(m)) if m.contains("Bad id")));
        assert_eq!(fake.hits("GET", "/api/tasks/1").len(), 1);
        fake.state.lock().unwrap().faults.clear();

        // Concurrent identical creates: a 500 "Duplicate entry" is retried, and is safe.
        fake.fault(
            "POST",
            "/api/tasks",
            500,
            r#"{"success": false, "error": "SQLSTATE[23000]: Integrity constraint violation: 1062 Duplicate entry 'k' for key 'dedupe_key'"}"#,
            1,
        );
        let added = s.enqueue(&[task("a", json!({"i": 1}))]).await.unwrap();
        assert_eq!(
            added,
            vec![Enqueued {
                id: "1".into(),
                deduplicated: true
            }]
        );

        // A persistent 5xx ends as Unavailable, naming the endpoint.
        fake.fault("GET", "/api/tasks/1", 503, "<html>down</html>", 10);
        let e = s.show("1").await.unwrap_err();
        let SourceError::Unavailable(m) = &e else {
            panic!("{e}")
        };
        assert!(
            m.contains(&format!("GET http://{}/api/tasks/1", fake.addr)),
            "{m}"
        );
        assert!(m.contains("HTTP 503") && m.contains("after 3 tries"), "{m}");
    }

    #[tokio::test]
    async fn failures_follow_the_servers_attempt_limit() {
        let fake = Fake::start(&["a"]).await;
        fake.add("a", json!({"i": 1}), 0);
        let dir = tempfile::tempdir().unwrap();
        let s = source(&fake, &dir).await;
        let retry = Outcome::Retry {
            error: "retriable failure: exit 1\nsecond line".into(),
            delay: Duration::from_secs(60),
        };
        let t = claim(&s, &["a"], "h").await.unwrap();
        assert_eq!(t.attempts, 1);
        s.finish(&t, &retry, &Record::default()).await.unwrap();
        let hit = fake.hits("POST", "/api/tasks/1/complete").pop().unwrap();
        // Always a JSON boolean: the server would take the string "false" as true.
        assert_eq!(hit.body["success"], Value::Bool(false));
        assert_eq!(hit.body["error"], "retry: retriable failure: exit 1 second line");
        // Back to pending at once (the delay cannot be honoured), attempts counting claims.
        assert_eq!(fake.task("1").status, "pending");
        let t = claim(&s, &["a"], "h").await.unwrap();
        assert_eq!(t.attempts, 2);

        // A permanent failure the server requeues is failed again, without running it,
        // until the server gives up.
        s.finish(
            &t,
            &Outcome::Failed {
                error: "permanent failure: exit 2".into(),
            },
            &Record::default(),
        )
        .await
        .unwrap();
        assert_eq!(fake.task("1").status, "pending");
        assert!(claim(&s, &["a"], "h").await.is_none());
        let task = fake.task("1");
        assert_eq!((task.status.as_str(), task.attempts), ("failed", 3));
        assert_eq!(
            task.error_message.as_deref(),
            Some("failed: permanent failure: exit 2")
        );
        assert_eq!(fake.hits("POST", "/api/tasks/1/complete").len(), 3);
        let shown = s.show("1").await.unwrap();
        assert_eq!(shown.status, Status::Failed);

        // A dead task shows as dead.
        fake.add("a", json!({"i": 2}), 0);
        {
            let mut st = fake.state.lock().unwrap();
            st.tasks[1].attempts = 2;
        }
        let t = claim(&s, &["a"], "h").await.unwrap();
        s.finish(
            &t,
            &Outcome::Dead {
                error: "delivered 3 times".into(),
            },
            &Record::default(),
        )
        .await
        .unwrap();
        assert_eq!(s.show(&t.id).await.unwrap().status, Status::Dead);
    }

    #[tokio::test]
    async fn the_fake_reproduces_the_string_success_quirk() {
        // Proves why the client must send a boolean: "false" as a string completes the task.
        let fake = Fake::start(&["a"]).await;
        fake.add("a", json!({"i": 1}), 0);
        let dir = tempfile::tempdir().unwrap();
        let s = source(&fake, &dir).await;
        claim(&s, &["a"], "h").await.unwrap();
        let reply = reqwest::Client::new()
            .post(format!("{}tasks/1/complete", fake.url()))
            .header("X-API-Key", KEY)
            .body(r#"{"worker_id": "h", "success": "false", "error": "it failed"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200);
        assert_eq!(fake.task("1").status, "completed");
    }

    #[tokio::test]
    async fn a_large_result_is_summarised_and_accepted() {
        let fake = Fake::start(&["a"]).await;
        fake.add("a", json!({"i": 1}), 0);
        let dir = tempfile::tempdir().unwrap();
        let s = source(&fake, &dir).await;
        let t = claim(&s, &["a"], "h").await.unwrap();
        let big = json!({"text": "x".repeat(100 * 1024)});
        // As is, the server refuses it with an SQL error (and the completion would be lost).
        let raw = reqwest::Client::new()
            .post(format!("{}tasks/1/complete", fake.url()))
            .header("X-API-Key", KEY)
            .json(&json!({"worker_id": "h", "success": true, "result": big}))
            .send()
            .await
            .unwrap();
        assert_eq!(raw.status(), 500);
        assert!(raw.text().await.unwrap().contains("Data too long"));

        s.finish(&t, &done(big.clone()), &Record::default())
            .await
            .unwrap();
        let stored = fake.task("1");
        assert_eq!(stored.status, "completed");
        let result = stored.result.unwrap();
        assert_eq!(result["truncated"], true);
        assert_eq!(result["original_bytes"], json!(php_json_len(&big)));
        assert!(stored.error_message.unwrap().starts_with("result truncated"));
        assert!(journal_lines(&dir).is_empty());

        // Params too large for the server are refused before sending.
        let e = s.enqueue(&[task("a", big)]).await.unwrap_err();
        assert!(matches!(e, SourceError::Invalid(m) if m.contains("64 KiB")));
    }

    #[tokio::test]
    async fn lease_lost_and_not_found() {
        let fake = Fake::start(&["a"]).await;
        fake.add("a", json!({"i": 1}), 0);
        let dir = tempfile::tempdir().unwrap();
        let s = source(&fake, &dir).await;
        let t = claim(&s, &["a"], "host-a").await.unwrap();
        // The server's claim times out; another host claims the task.
        fake.state.lock().unwrap().claim_timeout = Duration::ZERO;
        let other = claim(&s, &["a"], "host-b").await.unwrap();
        assert_eq!((other.id.as_str(), other.attempts), ("1", 2));
        fake.state.lock().unwrap().claim_timeout = Duration::from_secs(300);
        let late = s.finish(&t, &done(json!({})), &Record::default()).await;
        assert!(matches!(late, Err(SourceError::LeaseLost(id)) if id == "1"));
        // Completing twice: 400 "not in claimed state", also a lost lease.
        s.finish(&other, &done(json!({})), &Record::default())
            .await
            .unwrap();
        let twice = s.finish(&other, &done(json!({})), &Record::default()).await;
        assert!(matches!(twice, Err(SourceError::LeaseLost(_))));
        // A task the server does not have.
        let mut ghost = other.clone();
        ghost.id = "42".into();
        assert!(matches!(
            s.finish(&ghost, &done(json!({})), &Record::default()).await,
            Err(SourceError::NotFound(id)) if id == "42"
        ));
        // None of this was journaled.
        assert!(journal_lines(&dir).is_empty());
        // release and extend do nothing (the task stays claimed on the server).
        fake.add("a", json!({"i": 2}), 0);
        let t = claim(&s, &["a"], "h").await.unwrap();
        s.release(&t).await.unwrap();
        s.extend(&t, LEASE).await.unwrap();
        assert_eq!(fake.task(&t.id).status, "claimed");
    }

    #[tokio::test]
    async fn a_long_owner_is_truncated_and_a_long_worker_id_refused() {
        let fake = Fake::start(&["a"]).await;
        fake.add("a", json!({"i": 1}), 0);
        let dir = tempfile::tempdir().unwrap();
        let s = source(&fake, &dir).await;
        let owner = "h".repeat(300);
        let t = claim(&s, &["a"], &owner).await.unwrap();
        assert_eq!(t.lease.chars().count(), 255);
        s.finish(&t, &done(json!({"ok": true})), &Record::default())
            .await
            .unwrap();
        assert_eq!(fake.task("1").status, "completed");
        let mut cfg = config(&fake.url(), &dir.path().join("j2"));
        cfg.worker_id = Some("w".repeat(256));
        assert!(matches!(
            HttpSource::connect(cfg).await,
            Err(SourceError::Invalid(_))
        ));
        // A configured worker id wins over the owner.
        fake.add("a", json!({"i": 2}), 0);
        let mut cfg = config(&fake.url(), &dir.path().join("j3"));
        cfg.worker_id = Some("pool-1".into());
        let s = source_with(cfg).await;
        let t = claim(&s, &["a"], "host:9").await.unwrap();
        assert_eq!(t.lease, "pool-1");
        assert_eq!(fake.task(&t.id).claimed_by.as_deref(), Some("pool-1"));
    }

    #[tokio::test]
    async fn undeliverable_completions_are_journaled_and_delivered_later() {
        let fake = Fake::start(&["a"]).await;
        fake.add("a", json!({"i": 1}), 0);
        fake.add("a", json!({"i": 2}), 0);
        let dir = tempfile::tempdir().unwrap();
        let s = source(&fake, &dir).await;
        let t1 = claim(&s, &["a"], "h").await.unwrap();
        let t2 = claim(&s, &["a"], "h").await.unwrap();
        let (state, port) = fake.stop().await;

        // The server is down: the outcome is kept, and finish is Ok.
        s.finish(&t1, &done(json!({"r": 1})), &Record::default())
            .await
            .unwrap();
        s.finish(
            &t2,
            &Outcome::Failed {
                error: "permanent failure".into(),
            },
            &Record::default(),
        )
        .await
        .unwrap();
        let lines = journal_lines(&dir);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["id"], "1");
        assert_eq!(lines[0]["worker_id"], "h");
        assert_eq!(
            lines[0]["body"],
            json!({"worker_id": "h", "success": true, "result": {"r": 1}})
        );
        assert_eq!(lines[1]["body"]["success"], false);
        assert!(matches!(s.health().await, Err(SourceError::Unavailable(_))));
        assert!(s.claim(&types(&["a"]), "h", LEASE).await.is_err());
        assert_eq!(journal_lines(&dir).len(), 2);

        // Back on the same port: the next call delivers them, in order.
        let fake = Fake::serve(state, port).await;
        s.health().await.unwrap();
        assert!(journal_lines(&dir).is_empty());
        assert_eq!(fake.task("1").status, "completed");
        assert_eq!(fake.task("1").result, Some(json!({"r": 1})));
        // (attempts 1 < 3: the server requeued the failure.)
        assert_eq!(fake.task("2").status, "pending");
        let order: Vec<String> = fake
            .state
            .lock()
            .unwrap()
            .hits
            .iter()
            .filter(|h| h.path.ends_with("/complete"))
            .map(|h| h.path.clone())
            .collect();
        assert_eq!(order, ["/api/tasks/1/complete", "/api/tasks/2/complete"]);
    }

    #[tokio::test]
    async fn a_new_source_delivers_what_a_previous_run_left() {
        let fake = Fake::start(&["a"]).await;
        fake.add("a", json!({"i": 1}), 0);
        fake.add("a", json!({"i": 2}), 0);
        let dir = tempfile::tempdir().unwrap();
        let s = source(&fake, &dir).await;
        let t1 = claim(&s, &["a"], "h").await.unwrap();
        let t2 = claim(&s, &["a"], "h").await.unwrap();
        // t2 is completed by somebody else meanwhile: its journaled completion will be refused.
        let (state, _) = fake.stop().await;
        s.finish(&t1, &done(json!({"r": 1})), &Record::default())
            .await
            .unwrap();
        s.finish(&t2, &done(json!({"r": 2})), &Record::default())
            .await
            .unwrap();
        drop(s);
        assert_eq!(journal_lines(&dir).len(), 2);
        state.lock().unwrap().tasks[1].status = "completed".into();

        // A new URL: a new source over the same journal delivers at construction.
        let fake = Fake::serve(state, 0).await;
        let s = source(&fake, &dir).await;
        assert!(journal_lines(&dir).is_empty());
        assert_eq!(s.journal.len(), 0);
        assert_eq!(fake.task("1").status, "completed");
        assert_eq!(fake.hits("POST", "/api/tasks/2/complete").len(), 1);
    }

    #[tokio::test]
    async fn a_completion_refused_for_the_key_is_kept_for_a_restart_with_the_right_key() {
        let fake = Fake::start(&["a"]).await;
        fake.add("a", json!({"i": 1}), 0);
        let dir = tempfile::tempdir().unwrap();
        let s = source(&fake, &dir).await;
        let t = claim(&s, &["a"], "h").await.unwrap();
        // The key is rotated on the server while the task runs.
        let journal = dir.path().join("other-journal");
        let mut cfg = config(&fake.url(), &journal);
        cfg.api_key = Some("rotated-away".into());
        let stale = source_with(cfg.clone()).await;
        stale
            .finish(&t, &done(json!({"r": 1})), &Record::default())
            .await
            .unwrap();
        assert_eq!(
            fake.hits("POST", "/api/tasks/1/complete").len(),
            1,
            "a 401 is not retried"
        );
        assert_eq!(read_lines(&journal).unwrap().len(), 1);
        // Still refused: kept, not dropped.
        stale.health().await.unwrap();
        assert_eq!(read_lines(&journal).unwrap().len(), 1);
        // Restarted with the right key: delivered.
        cfg.api_key = Some(KEY.into());
        let _fixed = source_with(cfg).await;
        assert!(read_lines(&journal).unwrap().is_empty());
        assert_eq!(fake.task("1").status, "completed");
    }

    #[tokio::test]
    async fn a_torn_journal_line_is_dropped_not_fatal() {
        let fake = Fake::start(&["a"]).await;
        fake.add("a", json!({"i": 1}), 0);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        std::fs::write(&path, "{\"id\": \"1\", \"worker_id\"").unwrap();
        let s = source(&fake, &dir).await;
        assert_eq!(s.journal.len(), 0);
        let (state, port) = fake.stop().await;
        // Appending after a torn line starts a new line.
        let entry = Entry {
            id: "1".into(),
            worker_id: "h".into(),
            body: json!({"success": true}),
        };
        std::fs::write(&path, "{\"torn").unwrap();
        s.journal.lines.store(1, Ordering::SeqCst);
        s.journal.append(&entry).await.unwrap();
        assert_eq!(read_lines(&path).unwrap().len(), 2);
        let _fake = Fake::serve(state, port).await;
        s.health().await.unwrap();
        assert_eq!(s.journal.len(), 0);
    }

    #[tokio::test]
    async fn the_key_is_never_in_an_error() {
        let fake = Fake::start(&["a"]).await;
        fake.add("a", json!({"i": 1}), 0);
        let dir = tempfile::tempdir().unwrap();
        let mut messages = Vec::new();

        // A wrong key: 401, shaped differently (no `success`, text/html).
        let mut cfg = config(&fake.url(), &dir.path().join("j1"));
        cfg.api_key = Some("wrong-key-0000".into());
        let wrong = source_with(cfg.clone()).await;
        let e = wrong.claim(&types(&["a"]), "h", LEASE).await.unwrap_err();
        assert!(
            matches!(&e, SourceError::Unavailable(m) if m.contains("401") && m.contains("Invalid or missing API key")),
            "{e}"
        );
        assert_eq!(
            fake.hits("GET", "/api/task-types/a").len(),
            1,
            "a 401 is not retried"
        );
        messages.push(e.to_string());
        messages.push(format!("{cfg:?}"));
        // No key at all.
        cfg.api_key = None;
        let none = source_with(cfg).await;
        messages.push(
            none.claim(&types(&["a"]), "h", LEASE)
                .await
                .unwrap_err()
                .to_string(),
        );

        let s = source(&fake, &dir).await;
        messages.push(format!("{:?} {s:?}", config(&fake.url(), &dir.path().join("j"))));
        fake.fault("GET", "/api/tasks/1", 502, "<html>bad gateway</html>", 10);
        messages.push(s.show("1").await.unwrap_err().to_string());
        let t = claim(&s, &["a"], "h").await.unwrap();
        let (_, port) = fake.stop().await;
        messages.push(s.health().await.unwrap_err().to_string());
        messages.push(s.claim(&types(&["a"]), "h", LEASE).await.unwrap_err().to_string());
        messages.push(s.show("1").await.unwrap_err().to_string());
        messages.push(s.depth(&[]).await.unwrap_err().to_string());
        messages.push(
            s.enqueue(&[task("a", json!({"x": 1}))])
                .await
                .unwrap_err()
                .to_string(),
        );
        s.finish(&t, &done(json!({})), &Record::default()).await.unwrap();
        let journal = std::fs::read_to_string(dir.path().join("journal")).unwrap();
        messages.push(journal);
        for m in &messages {
            assert!(!m.contains(KEY), "the key leaked: {m}");
            assert!(!m.contains("wrong-key-0000"), "the key leaked: {m}");
        }
        assert!(messages.iter().any(|m| m.contains(&format!("127.0.0.1:{port}"))));
    }

    #[tokio::test]
    async fn health_needs_no_key_and_depth_counts_exact_types() {
        let fake = Fake::start(&["a_b", "axb"]).await;
        fake.add("a_b", json!({"i": 1}), 0);
        fake.add("a_b", json!({"i": 2}), 0);
        fake.add("axb", json!({"i": 3}), 0);
        let dir = tempfile::tempdir().unwrap();
        let s = source(&fake, &dir).await;
        s.health().await.unwrap();
        assert_eq!(fake.hits("GET", "/api/health").pop().unwrap().key, None);
        claim(&s, &["a_b"], "h").await.unwrap();
        // `a_b` is a LIKE pattern on the server (it matches `axb` too): counted exactly here.
        let d = s.depth(&types(&["a_b"])).await.unwrap();
        assert_eq!(
            d,
            Depth {
                ready: 1,
                delayed: 0,
                running: 1
            }
        );
        let d = s.depth(&[]).await.unwrap();
        assert_eq!(
            d,
            Depth {
                ready: 2,
                delayed: 0,
                running: 1
            }
        );
        let listed = s
            .list(&ListFilter {
                task_type: Some("a_b".into()),
                ..ListFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(listed.len(), 2);
        let running = listed.iter().find(|v| v.status == Status::Running).unwrap();
        assert_eq!(running.lease_owner.as_deref(), Some("h"));
    }

    #[tokio::test]
    async fn progress_is_posted_under_the_claim_and_stops_when_the_claim_is_gone() {
        let fake = Fake::start(&["a"]).await;
        fake.add("a", json!({"i": 1}), 0);
        fake.add("a", json!({"i": 2}), 0);
        let dir = tempfile::tempdir().unwrap();
        let s = source(&fake, &dir).await;
        let posts = |id: &str| fake.hits("POST", &format!("/api/tasks/{id}/progress"));
        let t = claim(&s, &["a"], "host-a").await.unwrap();
        // As the dispatcher's stderr hook calls it: id, type and attempt only.
        let hook = |c: &Claimed| {
            crate::host::progress::delivery(&crate::host::events::TaskRef {
                id: c.id.clone(),
                task_type: c.task_type.clone(),
                attempt: c.attempts,
            })
        };
        s.progress(&hook(&t), 30, Some("page 2/7")).await.unwrap();
        s.progress(&hook(&t), 45, None).await.unwrap();
        let bodies: Vec<Value> = posts("1").into_iter().map(|h| h.body).collect();
        assert_eq!(
            bodies,
            [
                json!({"worker_id": "host-a", "progress": 30, "message": "page 2/7"}),
                json!({"worker_id": "host-a", "progress": 45}),
            ]
        );
        assert_eq!(
            (fake.task("1").progress, fake.task("1").progress_message),
            (45, None)
        );
        assert_eq!(s.show("1").await.unwrap().progress, Some(45));
        // Another attempt is not this claim: nothing is sent.
        let stale = Claimed {
            attempts: 2,
            ..hook(&t)
        };
        assert!(matches!(
            s.progress(&stale, 50, None).await,
            Err(SourceError::LeaseLost(_))
        ));
        assert_eq!(posts("1").len(), 2);

        // The claim times out and another host takes the task: 403, then nothing more.
        fake.state.lock().unwrap().claim_timeout = Duration::ZERO;
        let other_host = source_with(config(&fake.url(), &dir.path().join("j2"))).await;
        let taken = claim(&other_host, &["a"], "host-b").await.unwrap();
        fake.state.lock().unwrap().claim_timeout = Duration::from_secs(300);
        assert_eq!((taken.id.as_str(), taken.attempts), ("1", 2));
        let refused = s.progress(&hook(&t), 60, None).await;
        assert!(matches!(refused, Err(SourceError::LeaseLost(_))), "{refused:?}");
        assert_eq!(posts("1").len(), 3, "sent, refused with 403");
        assert!(matches!(
            s.progress(&hook(&t), 61, None).await,
            Err(SourceError::LeaseLost(_))
        ));
        assert_eq!(posts("1").len(), 3, "not sent again");
        other_host.progress(&hook(&taken), 5, None).await.unwrap();
        assert_eq!(fake.task("1").progress, 5);
        // Finished: the claim is gone, nothing is sent; the server keeps the last value.
        other_host
            .finish(&taken, &done(json!({})), &Record::default())
            .await
            .unwrap();
        assert!(matches!(
            other_host.progress(&hook(&taken), 99, None).await,
            Err(SourceError::LeaseLost(_))
        ));
        assert_eq!(posts("1").len(), 4);
        assert_eq!(fake.task("1").progress, 5);

        // Completed behind this host's back: 400 "not in claimed state", then nothing more.
        let t2 = claim(&s, &["a"], "host-a").await.unwrap();
        fake.state.lock().unwrap().tasks[1].status = "completed".into();
        assert!(matches!(
            s.progress(&hook(&t2), 10, None).await,
            Err(SourceError::LeaseLost(_))
        ));
        assert!(matches!(
            s.progress(&hook(&t2), 20, None).await,
            Err(SourceError::LeaseLost(_))
        ));
        assert_eq!(posts("2").len(), 1);
        assert!(journal_lines(&dir).is_empty(), "progress is never journaled");
    }

    /// Collects the progress events the dispatcher emits.
    #[derive(Default)]
    struct ProgressEvents(std::sync::Mutex<Vec<(u8, Option<String>)>>);

    impl crate::host::events::Observer for Arc<ProgressEvents> {
        fn on_event(&self, event: &crate::host::events::Event) {
            if let crate::host::events::Event::Progress { percent, message, .. } = event {
                self.0.lock().unwrap().push((*percent, message.clone()));
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_workers_progress_lines_reach_the_server_throttled() {
        use std::sync::RwLock;

        use crate::config::model::Config;
        use crate::host::dispatch::{self, Control, Options};
        use crate::host::events::Observers;
        use crate::host::policy::Backoff;
        use crate::host::registry::Registry;

        let fake = Fake::start(&["Demo.Progress"]).await;
        // 10 goes at once; 20 and 40 arrive within the second: 40 wins and goes a second
        // later; the malformed lines are log lines; 90 arrives 1.5 s in and would wait until
        // 2 s, but the worker exits first: it is dropped.
        let steps = json!([
            ["@wh:progress 10 starting", 0],
            ["@wh:progress 20", 0],
            ["log: @wh:progress 30", 0],
            ["@wh:progress 40 half", 1.5],
            ["@wh:progress 150 out of range", 0],
            ["@wh:progress 90 almost", 0.1],
        ]);
        let id = fake.add("Demo.Progress", json!({"steps": steps}), 0).to_string();
        let dir = tempfile::tempdir().unwrap();
        let source: Arc<dyn TaskSource> = Arc::new(source(&fake, &dir).await);
        let worker = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/workers/reports_progress.py");
        let config: Config = serde_json::from_value(json!({"workers": [{
            "name": "reporter",
            "command": ["python3", worker],
            "task_types": ["Demo.Progress"],
            "timeout": 30,
        }]}))
        .unwrap();
        let registry = Registry::build(&config, dir.path(), &[], 1, None).unwrap();
        let events = Arc::new(ProgressEvents::default());
        let mut observers = Observers::default();
        observers.add(events.clone());
        let options = Options {
            concurrency: 1,
            drain: false,
            max_tasks: Some(1),
            grace: Duration::from_secs(5),
            host_id: "test-host".into(),
            backoff: Backoff {
                base: Duration::from_millis(10),
                multiplier: 2.0,
                max: Duration::from_secs(1),
            },
            idle_max: Duration::from_millis(50),
            limits: crate::runner::Limits::default(),
        };
        let run = dispatch::run(
            source,
            Arc::new(RwLock::new(Arc::new(registry))),
            Arc::new(observers),
            options,
            Control::default(),
        );
        tokio::time::timeout(Duration::from_secs(60), run)
            .await
            .expect("the host ran the task");

        assert_eq!(fake.task(&id).status, "completed");
        let hits = fake.hits("POST", &format!("/api/tasks/{id}/progress"));
        let bodies: Vec<Value> = hits.iter().map(|h| h.body.clone()).collect();
        assert_eq!(
            bodies,
            [
                json!({"worker_id": "test-host", "progress": 10, "message": "starting"}),
                json!({"worker_id": "test-host", "progress": 40, "message": "half"}),
            ]
        );
        let gap = hits[1].at - hits[0].at;
        assert!(gap >= Duration::from_millis(900), "at most one a second: {gap:?}");
        assert_eq!(fake.task(&id).progress, 40);
        // Every well-formed line is an event, throttled or not.
        let seen = events.0.lock().unwrap().clone();
        let percents: Vec<u8> = seen.iter().map(|(p, _)| *p).collect();
        assert_eq!(percents, [10, 20, 40, 90]);
        assert_eq!(seen[3].1.as_deref(), Some("almost"));
    }

    #[test]
    fn helpers() {
        assert_eq!(parse_time(&json!("2025-01-02 03:04:05")), Some(1_735_787_045.0));
        assert_eq!(parse_time(&json!("2025-01-02T03:04:05Z")), Some(1_735_787_045.0));
        assert_eq!(parse_time(&json!(12)), Some(12.0));
        assert_eq!(parse_time(&json!("soon")), None);
        assert_eq!(id_string(&json!(7)), Some("7".into()));
        assert_eq!(id_string(&json!("7")), Some("7".into()));
        assert_eq!(id_string(&json!("x")), None);
        assert_eq!(php_json_len(&json!("a/é")), 2 + 1 + 2 + 6);
        let long = one_line(&"é\n".repeat(5000));
        assert!(long.len() <= ERROR_MAX && !long.contains('\n') && long.ends_with('…'));
        assert!(parse_base("http://h/api?key=1").is_err());
        assert!(parse_base("ftp://h/api").is_err());
        let (base, shown) = parse_base("https://user:pw@h:8443/api/").unwrap();
        assert_eq!(base, "https://user:pw@h:8443/api");
        assert_eq!(shown, "https://h:8443/api");
        assert_eq!(status_of("pending (retry)", None), Some(Status::Pending));
        assert_eq!(status_of("failed", Some("dead: x")), Some(Status::Dead));
    }
}
