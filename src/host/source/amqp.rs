//! RabbitMQ (AMQP 0-9-1) as the task source.
//!
//! # Topology
//!
//! Every name starts with the configured prefix (`wh` by default). All of it is declared on
//! demand (idempotently) the first time a connection needs it:
//!
//! - `{prefix}.tasks.{type}`: one durable **quorum** queue per task type. Quorum queues count
//!   every return of a message (a `basic.reject`/`basic.nack` with requeue, a channel or
//!   connection that closes with the message unacknowledged, so a host killed with `-9` too)
//!   and hand the count to the next consumer in the `x-delivery-count` header. Its dead-letter
//!   exchange is `{prefix}.dlx`, with the `at-least-once` dead-letter strategy (which needs
//!   `x-overflow: reject-publish`; it only matters once a length limit is set).
//! - `{prefix}.dlx`: a durable fanout exchange, bound to `{prefix}.dead`, a durable quorum
//!   queue that keeps failed and dead tasks for people to look at (management UI, shovel).
//! - `{prefix}.delay.{type}`: a durable classic queue holding retries during their backoff. A
//!   retry is published there with a per-message `expiration`; when it expires RabbitMQ
//!   dead-letters it (default exchange, routing key `{prefix}.tasks.{type}`) back into the
//!   task queue. Classic queues expire messages at the head only, so a retry never becomes
//!   claimable before its delay but can wait behind a longer delay of the same type queued
//!   before it. A delay of zero is published straight to the task queue.
//! - The results queue (`{prefix}.results` unless configured): a durable quorum queue,
//!   declared only if it does not exist yet (an existing queue of any type is used as is).
//!
//! # Messages
//!
//! A task is a persistent message (delivery mode 2, published with publisher confirms and
//! `mandatory`, so an unroutable one is an error) whose body is the JSON object
//! `{id, type, params, priority, created_at}`, with `message_id` = the task id (a UUID v4) and
//! `content_type` `application/json`. Messages published by other programs are accepted if
//! their body is a JSON object: a missing `id` is taken from `message_id`, the type is always
//! the queue's, missing `params` are `{}`.
//!
//! An outcome (completed, failed or dead; a retry is not an outcome) is published as the JSON
//! object `{id, type, success, status, attempts, duration_ms, finished_at}` plus `result` (on
//! success) or `error`, `class` and the end of the worker's stderr `stderr_tail` (on failure).
//! It goes to the task message's `reply_to` (RPC style, with its `correlation_id`) when it has
//! one, otherwise (or when `reply_to` cannot be routed to) to the results queue.
//!
//! # Claims and leases
//!
//! A claim is a `basic.get` (manual acknowledgement) on the requested types' queues, tried in
//! an order that rotates from one claim to the next, until one returns a message. This is a
//! pull: the host claims only when it has a free slot for one of the types, so the number of
//! unacknowledged deliveries a host holds never exceeds its free slots. That is how this
//! source reads "prefetch equal to the free slots": `basic.qos` only limits push consumers,
//! and a push consumer would receive tasks before a slot is free. FIFO order within a type;
//! priorities are not supported (quorum queues have none): they are ignored with a warning.
//!
//! The lease is the unacknowledged delivery itself. Each claimed task keeps its own channel
//! (from a small pool) until its outcome is recorded, so a channel-level error hurts at most
//! one task, and the channel count grows with the host's concurrency (RabbitMQ allows 2047
//! per connection by default). `Claimed::lease` is a fresh token naming the delivery in this
//! source. The requested lease duration is not used: RabbitMQ keeps a delivery unacknowledged
//! as long as its channel lives, so `extend` only checks that the channel is still open. The
//! effective limit is the broker's `consumer_timeout` (30 minutes by default): a delivery held
//! longer gets its channel closed by the broker and is redelivered, and this lease is lost.
//! Workers that may run longer need a higher `consumer_timeout`.
//!
//! `attempts` = `x-wh-attempts` + `x-delivery-count` + 1. A retry republishes the task as a
//! new message, whose delivery count starts again at 0, so the attempts so far travel in the
//! `x-wh-attempts` header. RabbitMQ 4.3 narrowed `x-delivery-count` to failure-like returns
//! (a `basic.reject` with requeue, which is what `release` sends) and counts every return in
//! `x-acquired-count`; the larger of the two is used, so a kill counts on every version.
//! RabbitMQ 4 quorum queues have a default `delivery-limit` of 20, after which the broker
//! dead-letters the message itself (without a result); the host's own limit (`max_retries` +
//! 1 deliveries) normally comes first, since only kills and releases are returns.
//!
//! # Outcomes
//!
//! - Completed: the result is published (and confirmed), then the delivery is acknowledged.
//! - Retry: the task is republished to its delay queue (same `message_id`, `reply_to` and
//!   `correlation_id`, `x-wh-attempts` = the attempts so far, `x-wh-last-error`), confirmed,
//!   then the delivery is acknowledged.
//! - Failed and Dead: the outcome is published, then the delivery is rejected without requeue,
//!   so RabbitMQ dead-letters it to `{prefix}.dead`.
//! - Release (shutdown): rejected with requeue; claimable again at once, and the delivery
//!   counts in `x-delivery-count`.
//!
//! Acknowledging only after the outcome is confirmed means a crash between the two runs the
//! task again and publishes a second outcome: delivery is at least once. When the outcome
//! cannot be published, the delivery's channel is closed, which hands the task back to its
//! queue (it runs again), and `finish` says so. A lease whose channel or connection is gone
//! is `LeaseLost`: RabbitMQ has already put the message back.
//!
//! # Connection
//!
//! One connection per source. When it is lost, the next call reconnects; failed attempts
//! back off (0.25 s doubling up to 15 s), and calls in between fail at once with
//! `Unavailable`. Every broker operation is bounded by the configured timeout. The URL's
//! password never appears in an error or a log line.
//!
//! # Not supported
//!
//! RabbitMQ cannot list or look up messages: `list`, `show` and `retry` are `Invalid`.
//! `dedupe_key` is `Invalid` (no deduplication in the broker). `enqueue` is not atomic: when it
//! fails part-way, the tasks before the failure may have been added. `depth` counts ready
//! messages of the task queues and messages of the delay queues with passive declares;
//! `running` is the deliveries this source holds (RabbitMQ does not tell other consumers'
//! unacknowledged counts over AMQP). With no types given, `depth` covers the types this source
//! has seen.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use lapin::message::Delivery;
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, BasicRejectOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::uri::AMQPUri;
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ErrorKind, ExchangeKind,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::tail;
use super::{
    Claimed, Depth, Enqueued, ListFilter, NewTask, Outcome, Record, SourceError, TaskSource, TaskView,
};

/// The prefix of every queue and exchange when none is configured.
pub const DEFAULT_PREFIX: &str = "wh";
/// Why `list`, `show` and `retry` are refused.
pub const NOT_SUPPORTED: &str =
    "RabbitMQ cannot list or look up messages; use the results queue / management UI";

/// Attempts before the current message's own deliveries (carried across retries).
const HEADER_ATTEMPTS: &str = "x-wh-attempts";
/// The error of the delivery that asked for the retry.
const HEADER_LAST_ERROR: &str = "x-wh-last-error";
/// Returns of this message, counted by the quorum queue.
const HEADER_DELIVERY_COUNT: &str = "x-delivery-count";
/// Every return of this message (RabbitMQ 4.3 and later).
const HEADER_ACQUIRED_COUNT: &str = "x-acquired-count";
const PERSISTENT: u8 = 2;
const JSON: &str = "application/json";
/// AMQP short strings (queue names, routing keys) are at most this many bytes.
const NAME_MAX: usize = 255;
/// Idle channels kept open for the next operation.
const IDLE_CHANNELS_MAX: usize = 32;
const BACKOFF_FIRST: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(15);
const TIMEOUT_MIN: Duration = Duration::from_millis(100);
/// The most of a worker's stderr put in a failure's outcome message (its end).
const STDERR_TAIL_MAX: usize = 4 * 1024;
const ERROR_HEADER_MAX: usize = 1024;

/// A RabbitMQ connection used as the task source.
pub struct AmqpSource {
    /// The URL as given, password included: only ever handed to the client library.
    url: String,
    /// The URL with its password replaced by `***`: for messages.
    shown_url: String,
    /// The password as written in the URL and decoded, scrubbed from every message.
    secrets: Vec<String>,
    prefix: String,
    results_queue: String,
    timeout: Duration,
    state: tokio::sync::Mutex<ConnState>,
    leases: Mutex<HashMap<String, Lease>>,
    /// Types declared through this source, for `depth(&[])`.
    known_types: Mutex<BTreeSet<String>>,
    /// Where the next claim starts in its list of types.
    cursor: AtomicUsize,
}

/// The connection, or why there is none and when to try again.
#[derive(Default)]
struct ConnState {
    live: Option<Arc<Live>>,
    failures: u32,
    retry_at: Option<Instant>,
    last_error: String,
}

/// One open connection and what was set up on it.
struct Live {
    connection: Connection,
    idle: Mutex<Vec<Channel>>,
    /// Topology declared on this connection (`base`, `type:{name}`).
    declared: Mutex<HashSet<String>>,
}

/// A claimed task's unacknowledged delivery, on the channel it came on.
struct Lease {
    live: Arc<Live>,
    channel: Channel,
    task_type: String,
    delivery: Delivery,
}

/// The body of a task message.
#[derive(Debug, Deserialize)]
struct TaskBody {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    params: Map<String, Value>,
    #[serde(default)]
    priority: i64,
    #[serde(default)]
    created_at: Option<f64>,
}

/// Where a publish ended.
enum Routed {
    Stored,
    /// Confirmed but unroutable (`mandatory`): no queue took it.
    Returned,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded values stay consistent at every await-free step, so a panic elsewhere does
    // not make them unusable.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `s` as an AMQP short string, or `Invalid` naming `what`.
fn short(what: &str, s: &str) -> Result<ShortString, SourceError> {
    ShortString::try_new(s).map_err(|_| {
        SourceError::Invalid(format!(
            "{what} `{}…` is {} bytes long; RabbitMQ allows {NAME_MAX}",
            s.chars().take(40).collect::<String>(),
            s.len()
        ))
    })
}

/// The URL with its password replaced by `***`, and the password as written and decoded.
fn redact_url(url: &str) -> (String, Vec<String>) {
    let start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[start..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let Some(at) = authority.rfind('@') else {
        return (url.to_string(), Vec::new());
    };
    let userinfo = &authority[..at];
    let Some(colon) = userinfo.find(':') else {
        return (url.to_string(), Vec::new());
    };
    let password = &userinfo[colon + 1..];
    let shown = format!(
        "{}{}***{}{}",
        &url[..start],
        &userinfo[..=colon],
        &authority[at..],
        &rest[end..]
    );
    let mut secrets = Vec::new();
    if !password.is_empty() {
        secrets.push(password.to_string());
        let decoded = percent_decode(password);
        if decoded != password {
            secrets.push(decoded);
        }
    }
    (shown, secrets)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The wait before connection attempt `failures + 1`.
fn backoff(failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    BACKOFF_FIRST.saturating_mul(factor).min(BACKOFF_MAX)
}

/// A non-negative integer header (`0` when absent or not an integer).
fn header_count(props: &BasicProperties, name: &str) -> u32 {
    let Some(value) = props.headers().as_ref().and_then(|h| h.inner().get(name)) else {
        return 0;
    };
    let n: i128 = match value {
        AMQPValue::ShortShortInt(n) => i128::from(*n),
        AMQPValue::ShortShortUInt(n) => i128::from(*n),
        AMQPValue::ShortInt(n) => i128::from(*n),
        AMQPValue::ShortUInt(n) => i128::from(*n),
        AMQPValue::LongInt(n) => i128::from(*n),
        AMQPValue::LongUInt(n) => i128::from(*n),
        AMQPValue::LongLongInt(n) => i128::from(*n),
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes())
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0),
        _ => 0,
    };
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

/// Deliveries so far, this one included. The returns of this message are the larger of
/// `x-delivery-count` and `x-acquired-count`: RabbitMQ 4.3 counts every return in the latter
/// and only failure-like ones in the former; earlier versions only send the former.
fn attempts_of(props: &BasicProperties) -> u32 {
    let returns = header_count(props, HEADER_DELIVERY_COUNT).max(header_count(props, HEADER_ACQUIRED_COUNT));
    header_count(props, HEADER_ATTEMPTS)
        .saturating_add(returns)
        .saturating_add(1)
}

/// Headers the broker adds on delivery or dead-lettering: not copied into a republished task.
fn is_broker_header(name: &str) -> bool {
    name == HEADER_DELIVERY_COUNT
        || name == "x-death"
        || name == HEADER_ACQUIRED_COUNT
        || name.starts_with("x-first-death-")
        || name.starts_with("x-last-death-")
}

/// The start of `s`, at most `max` bytes, ending on a char boundary.
fn head(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Whole milliseconds, rounded up (a per-message TTL is in ms).
fn ceil_millis(d: Duration) -> u128 {
    d.as_nanos().div_ceil(1_000_000)
}

/// The properties of a task republished for a retry: the original's, less the broker's
/// delivery headers, with the attempts so far and the last error.
fn retry_properties(
    orig: &BasicProperties,
    attempts: u32,
    error: &str,
    expiration: Option<String>,
) -> BasicProperties {
    let mut headers = FieldTable::default();
    if let Some(old) = orig.headers() {
        for (name, value) in old {
            let name_str = name.as_str();
            if !is_broker_header(name_str) && name_str != HEADER_ATTEMPTS && name_str != HEADER_LAST_ERROR {
                headers.insert(name.clone(), value.clone());
            }
        }
    }
    headers.insert(
        HEADER_ATTEMPTS.into(),
        AMQPValue::LongLongInt(i64::from(attempts)),
    );
    headers.insert(
        HEADER_LAST_ERROR.into(),
        AMQPValue::LongString(LongString::from(head(error, ERROR_HEADER_MAX))),
    );
    let mut props = BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_headers(headers)
        .with_content_type(orig.content_type().clone().unwrap_or_else(|| JSON.into()));
    if let Some(v) = orig.content_encoding() {
        props = props.with_content_encoding(v.clone());
    }
    if let Some(v) = orig.correlation_id() {
        props = props.with_correlation_id(v.clone());
    }
    if let Some(v) = orig.reply_to() {
        props = props.with_reply_to(v.clone());
    }
    if let Some(v) = orig.message_id() {
        props = props.with_message_id(v.clone());
    }
    if let Some(v) = orig.timestamp() {
        props = props.with_timestamp(*v);
    }
    if let Some(v) = orig.kind() {
        props = props.with_type(v.clone());
    }
    if let Some(v) = orig.app_id() {
        props = props.with_app_id(v.clone());
    }
    if let Some(ms) = expiration {
        props = props.with_expiration(ms.into());
    }
    props
}

/// The outcome message for `task`. `Retry` is not an outcome and never gets here.
fn outcome_body(task: &Claimed, outcome: &Outcome, record: &Record) -> Value {
    let (success, status, payload) = match outcome {
        Outcome::Completed { result } => (true, "completed", ("result", result.clone())),
        Outcome::Failed { error } => (false, "failed", ("error", Value::String(error.clone()))),
        Outcome::Dead { error } => (false, "dead", ("error", Value::String(error.clone()))),
        Outcome::Retry { error, .. } => (false, "retry", ("error", Value::String(error.clone()))),
    };
    let mut body = json!({
        "id": task.id,
        "type": task.task_type,
        "success": success,
        "status": status,
        "attempts": task.attempts,
        "duration_ms": record.duration_ms,
        "finished_at": now(),
    });
    let map = body.as_object_mut().expect("a json! object");
    map.insert(payload.0.to_string(), payload.1);
    if !success {
        if let Some(class) = &record.class {
            map.insert("class".to_string(), Value::String(class.clone()));
        }
        if !record.stderr_tail.is_empty() {
            map.insert(
                "stderr_tail".to_string(),
                Value::String(tail(&record.stderr_tail, STDERR_TAIL_MAX).to_string()),
            );
        }
    }
    body
}

fn validate_prefix(prefix: &str) -> Result<(), SourceError> {
    if prefix.is_empty() {
        return Err(SourceError::Invalid(
            "the amqp prefix must not be empty".to_string(),
        ));
    }
    if prefix.starts_with("amq.") || prefix == "amq" {
        return Err(SourceError::Invalid(format!(
            "the amqp prefix `{prefix}` is reserved: RabbitMQ refuses names starting with `amq.`"
        )));
    }
    // The longest fixed name built from it.
    short("the amqp prefix", &format!("{prefix}.results"))?;
    Ok(())
}

fn validate_type(prefix: &str, task_type: &str) -> Result<(), SourceError> {
    if task_type.is_empty() {
        return Err(SourceError::Invalid("a task type must not be empty".to_string()));
    }
    short("the queue name", &format!("{prefix}.tasks.{task_type}"))?;
    short("the queue name", &format!("{prefix}.delay.{task_type}"))?;
    Ok(())
}

fn is_not_found(e: &lapin::Error) -> bool {
    matches!(e.kind(), ErrorKind::ProtocolError(amqp)
        if matches!(amqp.kind(), AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND)))
}

fn is_precondition_failed(e: &lapin::Error) -> bool {
    matches!(e.kind(), ErrorKind::ProtocolError(amqp)
        if matches!(amqp.kind(), AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED)))
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

fn text_arg(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

fn quorum_args() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), text_arg("quorum"));
    args
}

/// Gives an idle channel back to the pool (or closes it, by dropping it).
fn put_back(live: &Live, channel: Channel) {
    if channel.status().connected() {
        let mut idle = lock(&live.idle);
        if idle.len() < IDLE_CHANNELS_MAX {
            idle.push(channel);
        }
    }
}

impl AmqpSource {
    /// Connects to RabbitMQ at `url` (`amqp://` or `amqps://`) and declares the shared
    /// topology (`{prefix}.dlx`, `{prefix}.dead`, the results queue). `results_queue`
    /// defaults to `{prefix}.results`; every broker operation is bounded by `timeout`.
    /// `Invalid` for a bad URL, prefix or queue name, `Unavailable` when the broker cannot be
    /// reached or refuses the login. The URL's password never appears in an error.
    pub async fn connect(
        url: &str,
        prefix: &str,
        results_queue: Option<String>,
        timeout: Duration,
    ) -> Result<AmqpSource, SourceError> {
        let source = AmqpSource::configure(url, prefix, results_queue, timeout)?;
        let live = source.live().await?;
        source.ensure_base(&live).await?;
        Ok(source)
    }

    /// A source with its settings checked, not connected yet.
    fn configure(
        url: &str,
        prefix: &str,
        results_queue: Option<String>,
        timeout: Duration,
    ) -> Result<AmqpSource, SourceError> {
        let (shown_url, secrets) = redact_url(url);
        let scrub = |text: &str| {
            secrets.iter().fold(text.to_string(), |acc, secret| {
                acc.replace(secret.as_str(), "***")
            })
        };
        let scheme = url.split("://").next().unwrap_or_default().to_ascii_lowercase();
        if !url.contains("://") || (scheme != "amqp" && scheme != "amqps") {
            return Err(SourceError::Invalid(format!(
                "the RabbitMQ URL `{shown_url}` must start with amqp:// or amqps://"
            )));
        }
        if let Err(why) = AMQPUri::from_str(url) {
            return Err(SourceError::Invalid(format!(
                "the RabbitMQ URL `{shown_url}` is not valid: {}",
                scrub(&why)
            )));
        }
        validate_prefix(prefix)?;
        let results_queue = results_queue.unwrap_or_else(|| format!("{prefix}.results"));
        if results_queue.is_empty() {
            return Err(SourceError::Invalid(
                "the results queue name must not be empty".to_string(),
            ));
        }
        short("the results queue name", &results_queue)?;
        Ok(AmqpSource {
            url: url.to_string(),
            shown_url,
            secrets,
            prefix: prefix.to_string(),
            results_queue,
            timeout: timeout.max(TIMEOUT_MIN),
            state: tokio::sync::Mutex::new(ConnState::default()),
            leases: Mutex::new(HashMap::new()),
            known_types: Mutex::new(BTreeSet::new()),
            cursor: AtomicUsize::new(0),
        })
    }

    /// The prefix of every queue and exchange this source uses.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The queue outcomes go to when a task has no `reply_to`.
    pub fn results_queue(&self) -> &str {
        &self.results_queue
    }

    /// The queue of a task type.
    pub fn tasks_queue(&self, task_type: &str) -> String {
        format!("{}.tasks.{task_type}", self.prefix)
    }

    /// The queue a task type's retries wait in.
    pub fn delay_queue(&self, task_type: &str) -> String {
        format!("{}.delay.{task_type}", self.prefix)
    }

    /// The queue failed and dead tasks are dead-lettered to.
    pub fn dead_queue(&self) -> String {
        format!("{}.dead", self.prefix)
    }

    /// The dead-letter exchange of the task queues.
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dlx", self.prefix)
    }

    /// Closes the connection. Deliveries still held go back to their queues (and count).
    pub async fn close(&self) {
        let live = self.state.lock().await.live.take();
        lock(&self.leases).clear();
        if let Some(live) = live {
            lock(&live.idle).clear();
            let _ = tokio::time::timeout(self.timeout, live.connection.close(200, "OK".into())).await;
        }
    }

    fn scrub(&self, text: &str) -> String {
        self.secrets.iter().fold(text.to_string(), |acc, secret| {
            acc.replace(secret.as_str(), "***")
        })
    }

    fn unavailable(&self, what: &str, why: &str) -> SourceError {
        SourceError::Unavailable(format!(
            "RabbitMQ {}: {what}: {}",
            self.shown_url,
            self.scrub(why)
        ))
    }

    /// `fut` within the timeout; `Err` only when it did not finish in time.
    async fn timed<T>(
        &self,
        what: &str,
        fut: impl Future<Output = lapin::Result<T>>,
    ) -> Result<lapin::Result<T>, SourceError> {
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| self.unavailable(what, &format!("no answer within {} ms", self.timeout.as_millis())))
    }

    /// `fut` within the timeout, its error mapped: a refused precondition (a queue declared
    /// with other arguments) is `Invalid`, anything else `Unavailable`.
    async fn op<T>(&self, what: &str, fut: impl Future<Output = lapin::Result<T>>) -> Result<T, SourceError> {
        self.timed(what, fut)
            .await?
            .map_err(|e| self.broker_error(what, &e))
    }

    fn broker_error(&self, what: &str, e: &lapin::Error) -> SourceError {
        if is_precondition_failed(e) {
            SourceError::Invalid(format!(
                "RabbitMQ {}: {what}: {} (a queue or exchange of that name exists with other \
                 arguments: delete it or choose another prefix)",
                self.shown_url,
                self.scrub(&e.to_string())
            ))
        } else {
            self.unavailable(what, &e.to_string())
        }
    }

    /// The open connection, reconnecting (with backoff between failed attempts) if needed.
    async fn live(&self) -> Result<Arc<Live>, SourceError> {
        let mut state = self.state.lock().await;
        if let Some(live) = &state.live {
            if live.connection.status().connected() {
                return Ok(live.clone());
            }
            tracing::warn!(url = %self.shown_url, "the RabbitMQ connection was lost; reconnecting");
            state.live = None;
            state.last_error = "the connection was lost".to_string();
        }
        if let Some(at) = state.retry_at {
            let now = Instant::now();
            if now < at {
                return Err(SourceError::Unavailable(format!(
                    "RabbitMQ {}: not connected ({}); next attempt in {} ms",
                    self.shown_url,
                    state.last_error,
                    (at - now).as_millis()
                )));
            }
        }
        let props = ConnectionProperties::default().with_connection_name("wh".into());
        let opened = match tokio::time::timeout(self.timeout, Connection::connect(&self.url, props)).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(e)) => Err(self.scrub(&e.to_string())),
            Err(_) => Err(format!("no answer within {} ms", self.timeout.as_millis())),
        };
        match opened {
            Ok(connection) => {
                state.failures = 0;
                state.retry_at = None;
                state.last_error.clear();
                let live = Arc::new(Live {
                    connection,
                    idle: Mutex::new(Vec::new()),
                    declared: Mutex::new(HashSet::new()),
                });
                state.live = Some(live.clone());
                Ok(live)
            }
            Err(why) => {
                state.failures = state.failures.saturating_add(1);
                state.retry_at = Some(Instant::now() + backoff(state.failures));
                state.last_error = why.clone();
                Err(SourceError::Unavailable(format!(
                    "cannot connect to RabbitMQ at {}: {why}",
                    self.shown_url
                )))
            }
        }
    }

    /// An open channel in publisher-confirm mode: an idle one, or a new one.
    async fn channel(&self, live: &Live) -> Result<Channel, SourceError> {
        loop {
            let Some(channel) = lock(&live.idle).pop() else {
                break;
            };
            if channel.status().connected() {
                return Ok(channel);
            }
        }
        let channel = self
            .op("open a channel", live.connection.create_channel())
            .await?;
        self.op(
            "enable publisher confirms",
            channel.confirm_select(ConfirmSelectOptions::default()),
        )
        .await?;
        Ok(channel)
    }

    fn declared(live: &Live, key: &str) -> bool {
        lock(&live.declared).contains(key)
    }

    /// The dead-letter exchange, the dead queue and the results queue.
    async fn ensure_base(&self, live: &Live) -> Result<(), SourceError> {
        if Self::declared(live, "base") {
            return Ok(());
        }
        let dlx = self.dead_letter_exchange();
        let dead = self.dead_queue();
        let channel = self.channel(live).await?;
        self.op(
            &format!("declare exchange {dlx}"),
            channel.exchange_declare(
                dlx.as_str().into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            ),
        )
        .await?;
        self.op(
            &format!("declare queue {dead}"),
            channel.queue_declare(dead.as_str().into(), durable(), quorum_args()),
        )
        .await?;
        self.op(
            &format!("bind queue {dead} to {dlx}"),
            channel.queue_bind(
                dead.as_str().into(),
                dlx.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            ),
        )
        .await?;
        put_back(live, channel);
        // The results queue may be the operator's, of any type: use it if it exists.
        if self.message_count(live, &self.results_queue).await?.is_none() {
            let channel = self.channel(live).await?;
            self.op(
                &format!("declare queue {}", self.results_queue),
                channel.queue_declare(self.results_queue.as_str().into(), durable(), quorum_args()),
            )
            .await?;
            put_back(live, channel);
        }
        lock(&live.declared).insert("base".to_string());
        Ok(())
    }

    /// A type's task queue and delay queue (and the shared topology).
    async fn ensure_type(&self, live: &Live, task_type: &str) -> Result<(), SourceError> {
        self.ensure_base(live).await?;
        let key = format!("type:{task_type}");
        if Self::declared(live, &key) {
            return Ok(());
        }
        let tasks = self.tasks_queue(task_type);
        let delay = self.delay_queue(task_type);
        let mut task_args = quorum_args();
        task_args.insert(
            "x-dead-letter-exchange".into(),
            text_arg(&self.dead_letter_exchange()),
        );
        task_args.insert("x-dead-letter-strategy".into(), text_arg("at-least-once"));
        task_args.insert("x-overflow".into(), text_arg("reject-publish"));
        let mut delay_args = FieldTable::default();
        delay_args.insert("x-queue-type".into(), text_arg("classic"));
        delay_args.insert("x-dead-letter-exchange".into(), text_arg(""));
        delay_args.insert("x-dead-letter-routing-key".into(), text_arg(&tasks));
        let channel = self.channel(live).await?;
        self.op(
            &format!("declare queue {tasks}"),
            channel.queue_declare(short("the queue name", &tasks)?, durable(), task_args),
        )
        .await?;
        self.op(
            &format!("declare queue {delay}"),
            channel.queue_declare(short("the queue name", &delay)?, durable(), delay_args),
        )
        .await?;
        put_back(live, channel);
        lock(&live.declared).insert(key);
        lock(&self.known_types).insert(task_type.to_string());
        Ok(())
    }

    /// The ready messages of `queue`, `None` when it does not exist (passive declare).
    async fn message_count(&self, live: &Live, queue: &str) -> Result<Option<u64>, SourceError> {
        let channel = self.channel(live).await?;
        let what = format!("look up queue {queue}");
        let declared = self
            .timed(
                &what,
                channel.queue_declare(
                    short("the queue name", queue)?,
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                ),
            )
            .await?;
        match declared {
            Ok(q) => {
                put_back(live, channel);
                Ok(Some(u64::from(q.message_count())))
            }
            // The broker closed the channel; dropping it is all that is left to do.
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(self.broker_error(&what, &e)),
        }
    }

    /// Publishes `body` to `queue` (default exchange, `mandatory`) and waits for the confirm.
    async fn publish(
        &self,
        channel: &Channel,
        queue: &str,
        body: &[u8],
        props: BasicProperties,
    ) -> Result<Routed, SourceError> {
        let what = format!("publish to {queue}");
        let routing_key = short("the queue name", queue)?;
        let confirmation = self
            .op(&what, async {
                channel
                    .basic_publish(
                        "".into(),
                        routing_key,
                        BasicPublishOptions {
                            mandatory: true,
                            ..BasicPublishOptions::default()
                        },
                        body,
                        props,
                    )
                    .await?
                    .await
            })
            .await?;
        match confirmation {
            Confirmation::Ack(None) => Ok(Routed::Stored),
            Confirmation::Ack(Some(_)) => Ok(Routed::Returned),
            Confirmation::Nack(_) => Err(self.unavailable(&what, "the broker refused the message (nack)")),
            Confirmation::NotRequested => Err(self.unavailable(&what, "publisher confirms are off")),
        }
    }

    /// Publishes an outcome to the task's `reply_to` (falling back to the results queue when
    /// no queue takes it) or to the results queue.
    async fn publish_outcome(
        &self,
        lease: &Lease,
        task: &Claimed,
        outcome: &Outcome,
        record: &Record,
    ) -> Result<(), SourceError> {
        let body = serde_json::to_vec(&outcome_body(task, outcome, record)).map_err(|e| {
            SourceError::Invalid(format!("task `{}`: the outcome cannot be encoded: {e}", task.id))
        })?;
        let orig = &lease.delivery.properties;
        let mut props = BasicProperties::default()
            .with_delivery_mode(PERSISTENT)
            .with_content_type(JSON.into())
            .with_timestamp(now() as u64);
        // An id too long for a message id (a hand-made task) is still in the body.
        if let Ok(message_id) = ShortString::try_new(task.id.as_str()) {
            props = props.with_message_id(message_id);
        }
        if let Some(correlation_id) = orig.correlation_id() {
            props = props.with_correlation_id(correlation_id.clone());
        }
        if let Some(reply_to) = orig.reply_to().as_ref().filter(|r| !r.as_str().is_empty()) {
            match self
                .publish(&lease.channel, reply_to.as_str(), &body, props.clone())
                .await?
            {
                Routed::Stored => return Ok(()),
                Routed::Returned => tracing::warn!(
                    task_id = %task.id,
                    reply_to = %reply_to,
                    results_queue = %self.results_queue,
                    "no queue takes the task's reply_to; its outcome goes to the results queue"
                ),
            }
        }
        match self
            .publish(&lease.channel, &self.results_queue, &body, props)
            .await?
        {
            Routed::Stored => Ok(()),
            Routed::Returned => Err(self.unavailable(
                &format!("publish to {}", self.results_queue),
                "the results queue does not exist (deleted?)",
            )),
        }
    }

    /// Republishes a task to retry after `delay` (to its delay queue, or its task queue when
    /// there is no delay).
    async fn publish_retry(
        &self,
        lease: &Lease,
        task: &Claimed,
        error: &str,
        delay: Duration,
    ) -> Result<(), SourceError> {
        let (queue, expiration) = if delay.is_zero() {
            (self.tasks_queue(&task.task_type), None)
        } else {
            (
                self.delay_queue(&task.task_type),
                Some(ceil_millis(delay).to_string()),
            )
        };
        let props = retry_properties(&lease.delivery.properties, task.attempts, error, expiration);
        match self
            .publish(&lease.channel, &queue, &lease.delivery.data, props)
            .await?
        {
            Routed::Stored => Ok(()),
            Routed::Returned => Err(self.unavailable(
                &format!("publish to {queue}"),
                "the queue does not exist (deleted?)",
            )),
        }
    }

    /// Takes the lease of `task` out of the map: `LeaseLost` when it is unknown or its channel
    /// is gone (RabbitMQ has put the message back).
    fn take_lease(&self, task: &Claimed) -> Result<Lease, SourceError> {
        let lease = lock(&self.leases)
            .remove(&task.lease)
            .ok_or_else(|| SourceError::LeaseLost(task.id.clone()))?;
        if !lease.channel.status().connected() || !lease.delivery.acker.usable() {
            return Err(SourceError::LeaseLost(task.id.clone()));
        }
        Ok(lease)
    }

    /// Why a publish for a held delivery failed, once the delivery is given up: dropping the
    /// lease closes its channel, which puts the message back in its queue.
    fn gave_up(&self, task: &Claimed, lease: Lease, e: SourceError) -> SourceError {
        let alive = lease.channel.status().connected();
        drop(lease);
        if !alive {
            return SourceError::LeaseLost(task.id.clone());
        }
        match e {
            SourceError::Unavailable(why) => SourceError::Unavailable(format!(
                "{why}; task `{}` goes back to its queue and will run again",
                task.id
            )),
            other => other,
        }
    }

    /// Acknowledges (`reject` is `None`) or rejects (`Some(requeue)`) a held delivery, then
    /// pools its channel.
    async fn settle(&self, task: &Claimed, lease: Lease, reject: Option<bool>) -> Result<(), SourceError> {
        let acker = &lease.delivery.acker;
        let what = format!("settle the delivery of task `{}`", task.id);
        let settled = match reject {
            None => self.timed(&what, acker.ack(Default::default())).await,
            Some(requeue) => {
                self.timed(&what, acker.reject(BasicRejectOptions { requeue }))
                    .await
            }
        };
        match settled {
            Ok(Ok(true)) => {
                put_back(&lease.live, lease.channel.clone());
                Ok(())
            }
            // The channel died first: the broker put the message back.
            Ok(Ok(false)) | Ok(Err(_)) => Err(SourceError::LeaseLost(task.id.clone())),
            Err(e) => Err(e),
        }
    }

    /// A claimed delivery of `task_type`, held under a new lease.
    async fn hold(
        &self,
        live: Arc<Live>,
        channel: Channel,
        task_type: &str,
        delivery: Delivery,
    ) -> Result<Claimed, SourceError> {
        let body: Result<TaskBody, String> = serde_json::from_slice::<Value>(&delivery.data)
            .map_err(|e| format!("its body is not JSON: {e}"))
            .and_then(|v| {
                if v.is_object() {
                    serde_json::from_value(v).map_err(|e| format!("its body is not a task: {e}"))
                } else {
                    Err("its body is not a JSON object".to_string())
                }
            });
        let message_id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|m| m.as_str().to_string());
        let body = body.and_then(|b| match b.id.clone().or(message_id.clone()) {
            Some(id) if !id.is_empty() => Ok((id, b)),
            _ => Err("it has no id (neither in its body nor as message_id)".to_string()),
        });
        let (id, body) = match body {
            Ok(ok) => ok,
            Err(why) => {
                // It would come back for ever: dead-letter it, and say so.
                let what = format!("reject an unreadable message of {}", self.tasks_queue(task_type));
                let rejected = self
                    .timed(
                        &what,
                        delivery.acker.reject(BasicRejectOptions { requeue: false }),
                    )
                    .await;
                if matches!(rejected, Ok(Ok(true))) {
                    put_back(&live, channel);
                }
                return Err(SourceError::Invalid(format!(
                    "a message of {} (message_id {}) is not a wh task: {why}; it was dead-lettered \
                     to {}",
                    self.tasks_queue(task_type),
                    message_id.as_deref().unwrap_or("none"),
                    self.dead_queue()
                )));
            }
        };
        let created_at = body
            .created_at
            .or_else(|| delivery.properties.timestamp().map(|t| t as f64))
            .unwrap_or_else(now);
        let claimed = Claimed {
            id,
            task_type: task_type.to_string(),
            params: body.params,
            priority: body.priority,
            attempts: attempts_of(&delivery.properties),
            created_at,
            lease: uuid::Uuid::new_v4().to_string(),
        };
        lock(&self.leases).insert(
            claimed.lease.clone(),
            Lease {
                live,
                channel,
                task_type: task_type.to_string(),
                delivery,
            },
        );
        Ok(claimed)
    }
}

#[async_trait]
impl TaskSource for AmqpSource {
    /// One `basic.get` per type, in rotating order, until one returns a message. `owner` and
    /// `lease` are not used: the delivery stays leased while this source's channel lives.
    async fn claim(
        &self,
        types: &[String],
        _owner: &str,
        _lease: Duration,
    ) -> Result<Option<Claimed>, SourceError> {
        if types.is_empty() {
            return Ok(None);
        }
        for task_type in types {
            validate_type(&self.prefix, task_type)?;
        }
        let live = self.live().await?;
        for task_type in types {
            self.ensure_type(&live, task_type).await?;
        }
        let channel = self.channel(&live).await?;
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        for i in 0..types.len() {
            let task_type = &types[(start + i) % types.len()];
            let queue = self.tasks_queue(task_type);
            let what = format!("get from {queue}");
            let got = self
                .timed(
                    &what,
                    channel.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false }),
                )
                .await?
                .map_err(|e| {
                    if is_not_found(&e) {
                        // Deleted under us: declare it again on the next claim.
                        lock(&live.declared).remove(&format!("type:{task_type}"));
                    }
                    self.broker_error(&what, &e)
                })?;
            if let Some(message) = got {
                return self
                    .hold(live, channel, task_type, message.delivery)
                    .await
                    .map(Some);
            }
        }
        put_back(&live, channel);
        Ok(None)
    }

    async fn finish(&self, task: &Claimed, outcome: &Outcome, record: &Record) -> Result<(), SourceError> {
        let lease = self.take_lease(task)?;
        let (published, reject) = match outcome {
            Outcome::Completed { .. } => (self.publish_outcome(&lease, task, outcome, record).await, None),
            Outcome::Retry { error, delay } => (self.publish_retry(&lease, task, error, *delay).await, None),
            Outcome::Failed { .. } | Outcome::Dead { .. } => (
                self.publish_outcome(&lease, task, outcome, record).await,
                Some(false),
            ),
        };
        match published {
            Ok(()) => self.settle(task, lease, reject).await,
            Err(e) => Err(self.gave_up(task, lease, e)),
        }
    }

    async fn release(&self, task: &Claimed) -> Result<(), SourceError> {
        let lease = self.take_lease(task)?;
        self.settle(task, lease, Some(true)).await
    }

    async fn extend(&self, task: &Claimed, _lease: Duration) -> Result<(), SourceError> {
        let mut leases = lock(&self.leases);
        let alive = leases
            .get(&task.lease)
            .map(|l| l.channel.status().connected() && l.delivery.acker.usable());
        match alive {
            Some(true) => Ok(()),
            Some(false) => {
                leases.remove(&task.lease);
                Err(SourceError::LeaseLost(task.id.clone()))
            }
            None => Err(SourceError::LeaseLost(task.id.clone())),
        }
    }

    async fn health(&self) -> Result<(), SourceError> {
        self.live().await.map(|_| ())
    }

    async fn depth(&self, types: &[String]) -> Result<Depth, SourceError> {
        let types: Vec<String> = if types.is_empty() {
            lock(&self.known_types).iter().cloned().collect()
        } else {
            types.to_vec()
        };
        for task_type in &types {
            validate_type(&self.prefix, task_type)?;
        }
        let live = self.live().await?;
        let mut depth = Depth::default();
        for task_type in &types {
            depth.ready += self
                .message_count(&live, &self.tasks_queue(task_type))
                .await?
                .unwrap_or(0);
            depth.delayed += self
                .message_count(&live, &self.delay_queue(task_type))
                .await?
                .unwrap_or(0);
        }
        let wanted: HashSet<&str> = types.iter().map(String::as_str).collect();
        depth.running = lock(&self.leases)
            .values()
            .filter(|l| wanted.contains(l.task_type.as_str()))
            .count() as u64;
        Ok(depth)
    }

    async fn enqueue(&self, tasks: &[NewTask]) -> Result<Vec<Enqueued>, SourceError> {
        for task in tasks {
            validate_type(&self.prefix, &task.task_type)?;
            if task.dedupe_key.is_some() {
                return Err(SourceError::Invalid(format!(
                    "task of type `{}`: dedupe_key is not supported by the amqp task source \
                     (RabbitMQ does not deduplicate messages)",
                    task.task_type
                )));
            }
        }
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let with_priority = tasks.iter().filter(|t| t.priority != 0).count();
        if with_priority > 0 {
            tracing::warn!(
                tasks = with_priority,
                "RabbitMQ quorum queues have no priorities: the priority of these tasks is ignored"
            );
        }
        let live = self.live().await?;
        for task in tasks {
            self.ensure_type(&live, &task.task_type).await?;
        }
        let channel = self.channel(&live).await?;
        let created_at = now();
        let mut out = Vec::with_capacity(tasks.len());
        let mut pending = Vec::with_capacity(tasks.len());
        for task in tasks {
            let id = uuid::Uuid::new_v4().to_string();
            let body = serde_json::to_vec(&json!({
                "id": id,
                "type": task.task_type,
                "params": Value::Object(task.params.clone()),
                "priority": task.priority,
                "created_at": created_at,
            }))
            .map_err(|e| SourceError::Invalid(format!("task of type `{}`: params: {e}", task.task_type)))?;
            let props = BasicProperties::default()
                .with_delivery_mode(PERSISTENT)
                .with_content_type(JSON.into())
                .with_message_id(id.as_str().into())
                .with_timestamp(created_at as u64);
            let queue = self.tasks_queue(&task.task_type);
            let what = format!("publish to {queue}");
            let confirm = self
                .op(
                    &what,
                    channel.basic_publish(
                        "".into(),
                        queue.as_str().into(),
                        BasicPublishOptions {
                            mandatory: true,
                            ..BasicPublishOptions::default()
                        },
                        &body,
                        props,
                    ),
                )
                .await?;
            pending.push((what, confirm));
            out.push(Enqueued {
                id,
                deduplicated: false,
            });
        }
        // Published back to back; now every confirm.
        let total = pending.len();
        for (done, (what, confirm)) in pending.into_iter().enumerate() {
            let failed = |why: &str| {
                self.unavailable(
                    &what,
                    &format!("{why} ({done} of the {total} tasks before it were added)"),
                )
            };
            match self.timed(&what, confirm).await? {
                Ok(Confirmation::Ack(None)) => {}
                Ok(Confirmation::Ack(Some(_))) => return Err(failed("no queue took the task")),
                Ok(Confirmation::Nack(_)) => return Err(failed("the broker refused the task (nack)")),
                Ok(Confirmation::NotRequested) => return Err(failed("publisher confirms are off")),
                Err(e) => return Err(failed(&e.to_string())),
            }
        }
        put_back(&live, channel);
        Ok(out)
    }

    async fn list(&self, _filter: &ListFilter) -> Result<Vec<TaskView>, SourceError> {
        Err(SourceError::Invalid(NOT_SUPPORTED.to_string()))
    }

    async fn show(&self, _id: &str) -> Result<TaskView, SourceError> {
        Err(SourceError::Invalid(NOT_SUPPORTED.to_string()))
    }

    async fn retry(&self, _id: &str) -> Result<(), SourceError> {
        Err(SourceError::Invalid(NOT_SUPPORTED.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::panic::AssertUnwindSafe;

    use futures::FutureExt;
    use lapin::message::BasicGetMessage;
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(10);
    const LEASE: Duration = Duration::from_secs(60);

    fn url() -> String {
        std::env::var("WH_TEST_AMQP_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_string())
    }

    /// A test's own prefix, and an admin channel to look at and clean up its queues.
    #[derive(Clone)]
    struct Fixture {
        prefix: String,
        channel: Channel,
        _connection: Arc<Connection>,
        /// Task types used, whose queues are deleted at the end.
        types: Vec<String>,
        /// Other queues the test declared.
        extra: Arc<Mutex<Vec<String>>>,
    }

    impl Fixture {
        /// `None` (after saying why) when no RabbitMQ answers; under `CI=true` that fails.
        async fn new(types: &[&str]) -> Option<Fixture> {
            let connected = tokio::time::timeout(
                TIMEOUT,
                Connection::connect(&url(), ConnectionProperties::default()),
            )
            .await;
            let connection = match connected {
                Ok(Ok(c)) => c,
                other => {
                    let why = match other {
                        Ok(Err(e)) => e.to_string(),
                        _ => "no answer".to_string(),
                    };
                    if std::env::var("CI").as_deref() == Ok("true") {
                        panic!("RabbitMQ at {} is unreachable: {why}", redact_url(&url()).0);
                    }
                    eprintln!(
                        "skipped: RabbitMQ at {} is unreachable ({why})",
                        redact_url(&url()).0
                    );
                    return None;
                }
            };
            let channel = connection.create_channel().await.expect("admin channel");
            Some(Fixture {
                prefix: format!("whtest-{}", uuid::Uuid::new_v4()),
                channel,
                _connection: Arc::new(connection),
                types: types.iter().map(|t| t.to_string()).collect(),
                extra: Arc::new(Mutex::new(Vec::new())),
            })
        }

        async fn source(&self) -> AmqpSource {
            AmqpSource::connect(&url(), &self.prefix, None, TIMEOUT)
                .await
                .expect("connect")
        }

        fn q(&self, suffix: &str) -> String {
            format!("{}.{suffix}", self.prefix)
        }

        /// One message of `queue`, acknowledged.
        async fn get(&self, queue: &str) -> Option<BasicGetMessage> {
            self.channel
                .basic_get(queue.into(), BasicGetOptions { no_ack: true })
                .await
                .expect("basic_get")
        }

        /// One message of `queue`, waiting up to 5 s for it.
        async fn wait_get(&self, queue: &str) -> BasicGetMessage {
            let until = Instant::now() + Duration::from_secs(5);
            loop {
                if let Some(m) = self.get(queue).await {
                    return m;
                }
                assert!(Instant::now() < until, "nothing arrived in {queue}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }

        async fn cleanup(&self) {
            let mut queues = vec![self.q("dead"), self.q("results")];
            for t in &self.types {
                queues.push(self.q(&format!("tasks.{t}")));
                queues.push(self.q(&format!("delay.{t}")));
            }
            queues.extend(lock(&self.extra).iter().cloned());
            for queue in queues {
                // A channel each: an error closes the channel it happens on.
                if let Ok(ch) = self._connection.create_channel().await {
                    let _ = ch
                        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                        .await;
                }
            }
            if let Ok(ch) = self._connection.create_channel().await {
                let _ = ch
                    .exchange_delete(self.q("dlx").as_str().into(), ExchangeDeleteOptions::default())
                    .await;
            }
        }
    }

    /// Runs `body` against a fresh prefix, then deletes its queues whatever happened.
    async fn with_server<F, Fut>(types: &[&str], body: F)
    where
        F: FnOnce(Fixture) -> Fut,
        Fut: Future<Output = ()>,
    {
        let Some(fx) = Fixture::new(types).await else {
            return;
        };
        let outcome = AssertUnwindSafe(body(fx.clone())).catch_unwind().await;
        fx.cleanup().await;
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }

    fn types(list: &[&str]) -> Vec<String> {
        list.iter().map(|t| t.to_string()).collect()
    }

    fn new_task(task_type: &str, params: Value) -> NewTask {
        NewTask {
            task_type: task_type.to_string(),
            params: params.as_object().cloned().unwrap_or_default(),
            ..NewTask::default()
        }
    }

    async fn enqueue_one(src: &AmqpSource, task_type: &str) -> String {
        src.enqueue(&[new_task(task_type, json!({"n": 1}))])
            .await
            .expect("enqueue")
            .remove(0)
            .id
    }

    async fn claim(src: &AmqpSource, list: &[&str]) -> Option<Claimed> {
        src.claim(&types(list), "test-host", LEASE).await.expect("claim")
    }

    /// The next claim of `list`, waiting up to `wait` for one.
    async fn claim_within(src: &AmqpSource, list: &[&str], wait: Duration) -> Option<Claimed> {
        let until = Instant::now() + wait;
        loop {
            if let Some(c) = claim(src, list).await {
                return Some(c);
            }
            if Instant::now() >= until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn body(m: &BasicGetMessage) -> Value {
        serde_json::from_slice(&m.delivery.data).expect("a JSON body")
    }

    fn done() -> Outcome {
        Outcome::Completed {
            result: json!({"ok": true}),
        }
    }

    // ----- without a server -----

    #[test]
    fn the_password_is_redacted() {
        let (shown, secrets) = redact_url("amqp://user:p%40ss@host:5672/%2f?heartbeat=10");
        assert_eq!(shown, "amqp://user:***@host:5672/%2f?heartbeat=10");
        assert_eq!(secrets, vec!["p%40ss".to_string(), "p@ss".to_string()]);
        assert_eq!(redact_url("amqp://host/%2f").0, "amqp://host/%2f");
        assert_eq!(redact_url("amqp://user@host").0, "amqp://user@host");
        // An `@` in the path is not userinfo.
        assert_eq!(redact_url("amqp://host/v@h").0, "amqp://host/v@h");
    }

    #[test]
    fn attempts_add_the_carried_count_and_the_delivery_count() {
        assert_eq!(attempts_of(&BasicProperties::default()), 1);
        let mut headers = FieldTable::default();
        headers.insert(HEADER_DELIVERY_COUNT.into(), AMQPValue::LongLongInt(2));
        headers.insert(HEADER_ATTEMPTS.into(), AMQPValue::LongInt(3));
        let props = BasicProperties::default().with_headers(headers.clone());
        assert_eq!(attempts_of(&props), 6);
        // RabbitMQ 4.3 counts every return in x-acquired-count.
        headers.insert(HEADER_ACQUIRED_COUNT.into(), AMQPValue::LongLongInt(5));
        assert_eq!(attempts_of(&BasicProperties::default().with_headers(headers)), 9);
        let mut headers = FieldTable::default();
        headers.insert(HEADER_DELIVERY_COUNT.into(), AMQPValue::LongLongInt(-4));
        assert_eq!(attempts_of(&BasicProperties::default().with_headers(headers)), 1);
    }

    #[test]
    fn a_retry_drops_the_broker_headers_and_keeps_the_rest() {
        let mut headers = FieldTable::default();
        headers.insert(HEADER_DELIVERY_COUNT.into(), AMQPValue::LongLongInt(2));
        headers.insert("x-death".into(), AMQPValue::Void);
        headers.insert("x-first-death-queue".into(), text_arg("q"));
        headers.insert("trace".into(), text_arg("abc"));
        let orig = BasicProperties::default()
            .with_headers(headers)
            .with_reply_to("replies".into())
            .with_correlation_id("c-1".into())
            .with_message_id("id-1".into());
        let props = retry_properties(&orig, 3, &"e".repeat(5000), Some("250".to_string()));
        let h = props.headers().clone().expect("headers");
        let names: Vec<&str> = h.inner().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, vec!["trace", HEADER_ATTEMPTS, HEADER_LAST_ERROR]);
        assert_eq!(header_count(&props, HEADER_ATTEMPTS), 3);
        assert_eq!(props.reply_to().as_ref().map(|s| s.as_str()), Some("replies"));
        assert_eq!(props.correlation_id().as_ref().map(|s| s.as_str()), Some("c-1"));
        assert_eq!(props.message_id().as_ref().map(|s| s.as_str()), Some("id-1"));
        assert_eq!(props.expiration().as_ref().map(|s| s.as_str()), Some("250"));
        assert_eq!(props.delivery_mode(), &Some(PERSISTENT));
        match h.inner().get(HEADER_LAST_ERROR) {
            Some(AMQPValue::LongString(s)) => assert_eq!(s.len(), ERROR_HEADER_MAX),
            other => panic!("last error header: {other:?}"),
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        assert_eq!(backoff(1), Duration::from_millis(250));
        assert_eq!(backoff(2), Duration::from_millis(500));
        assert_eq!(backoff(3), Duration::from_secs(1));
        assert_eq!(backoff(40), BACKOFF_MAX);
        assert_eq!(ceil_millis(Duration::from_micros(1)), 1);
        assert_eq!(ceil_millis(Duration::from_millis(100)), 100);
    }

    #[tokio::test]
    async fn bad_configuration_is_invalid_without_the_password() {
        let bad = [
            ("http://u:sekrit-pw@host", "wh"),
            ("amqp://u:sekrit-pw@host:notaport", "wh"),
            ("amqp://u:sekrit-pw@host", ""),
            ("amqp://u:sekrit-pw@host", "amq.x"),
        ];
        for (url, prefix) in bad {
            match AmqpSource::connect(url, prefix, None, TIMEOUT).await {
                Err(SourceError::Invalid(why)) => assert!(!why.contains("sekrit-pw"), "{why}"),
                Err(other) => panic!("{url} {prefix}: {other}"),
                Ok(_) => panic!("{url} {prefix}: accepted"),
            }
        }
    }

    #[tokio::test]
    async fn an_unreachable_broker_is_unavailable_without_the_password() {
        // Port 1 on localhost: refused at once.
        match AmqpSource::connect("amqp://u:sekrit-pw@127.0.0.1:1/%2f", "wh", None, TIMEOUT).await {
            Err(SourceError::Unavailable(why)) => {
                assert!(!why.contains("sekrit-pw"), "{why}");
                assert!(why.contains("u:***@127.0.0.1:1"), "{why}");
            }
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("connected to port 1"),
        }
    }

    #[tokio::test]
    async fn failed_connection_attempts_back_off() {
        let src = AmqpSource::configure("amqp://u:sekrit-pw@127.0.0.1:1/%2f", "wh", None, TIMEOUT)
            .expect("configure");
        match src.health().await {
            Err(SourceError::Unavailable(why)) => assert!(why.contains("cannot connect"), "{why}"),
            other => panic!("{other:?}"),
        }
        // Within the backoff: refused without trying.
        match src.health().await {
            Err(SourceError::Unavailable(why)) => {
                assert!(why.contains("next attempt in"), "{why}");
                assert!(!why.contains("sekrit-pw"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        tokio::time::sleep(backoff(1)).await;
        match src.health().await {
            Err(SourceError::Unavailable(why)) => assert!(why.contains("cannot connect"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(src.state.lock().await.failures, 2);
    }

    // ----- against RabbitMQ -----

    #[tokio::test]
    async fn a_lost_connection_loses_its_leases_and_reconnects() {
        with_server(&["t"], |fx| async move {
            let src = fx.source().await;
            let id = enqueue_one(&src, "t").await;
            let task = claim(&src, &["t"]).await.expect("a task");
            let live = src.state.lock().await.live.clone().expect("connected");
            live.connection
                .close(320, "test: connection lost".into())
                .await
                .expect("close");
            drop(live);
            assert!(matches!(
                src.extend(&task, LEASE).await,
                Err(SourceError::LeaseLost(_))
            ));
            assert!(matches!(
                src.finish(&task, &done(), &Record::default()).await,
                Err(SourceError::LeaseLost(_))
            ));
            // The next call reconnects; the broker put the task back, the delivery counted.
            let again = claim_within(&src, &["t"], Duration::from_secs(5))
                .await
                .expect("redelivered after the reconnect");
            assert_eq!(again.id, id);
            assert_eq!(again.attempts, 2);
            src.finish(&again, &done(), &Record::default())
                .await
                .expect("finish");
            assert_eq!(body(&fx.wait_get(&fx.q("results")).await)["id"], json!(id));
            src.health().await.expect("healthy");
        })
        .await;
    }

    #[tokio::test]
    async fn a_wrong_password_is_not_shown() {
        with_server(&[], |fx| async move {
            let bad = url().replacen("guest:guest@", "guest:wrong-sekrit@", 1);
            match AmqpSource::connect(&bad, &fx.prefix, None, TIMEOUT).await {
                Err(SourceError::Unavailable(why)) => assert!(!why.contains("wrong-sekrit"), "{why}"),
                Err(other) => panic!("{other}"),
                Ok(_) => panic!("logged in with a wrong password"),
            }
        })
        .await;
    }

    #[tokio::test]
    async fn completed_outcome_goes_to_the_results_queue_or_reply_to() {
        with_server(&["t"], |fx| async move {
            let src = fx.source().await;
            let id = enqueue_one(&src, "t").await;
            let task = claim(&src, &["t"]).await.expect("a task");
            assert_eq!(task.id, id);
            assert_eq!(task.task_type, "t");
            assert_eq!(task.attempts, 1);
            assert_eq!(task.params.get("n"), Some(&json!(1)));
            assert!(task.created_at > 0.0);
            let depth = src.depth(&types(&["t"])).await.expect("depth");
            assert_eq!(
                depth,
                Depth {
                    ready: 0,
                    delayed: 0,
                    running: 1
                }
            );
            src.extend(&task, LEASE).await.expect("extend");
            src.finish(&task, &done(), &Record::default())
                .await
                .expect("finish");
            // Finished: the lease is gone.
            assert!(matches!(
                src.extend(&task, LEASE).await,
                Err(SourceError::LeaseLost(_))
            ));
            assert!(matches!(
                src.finish(&task, &done(), &Record::default()).await,
                Err(SourceError::LeaseLost(_))
            ));

            let result = fx.get(&fx.q("results")).await.expect("a result");
            let value = body(&result);
            assert_eq!(value["id"], json!(id));
            assert_eq!(value["success"], json!(true));
            assert_eq!(value["status"], json!("completed"));
            assert_eq!(value["result"], json!({"ok": true}));
            assert_eq!(
                result
                    .delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|m| m.as_str()),
                Some(id.as_str())
            );
            assert!(fx.get(&fx.q("results")).await.is_none());
            assert!(claim(&src, &["t"]).await.is_none());
            assert_eq!(src.depth(&[]).await.expect("depth"), Depth::default());

            // RPC style: the outcome goes to reply_to, with the correlation id.
            let replies = fx.q("replies");
            lock(&fx.extra).push(replies.clone());
            fx.channel
                .queue_declare(
                    replies.as_str().into(),
                    QueueDeclareOptions::default(),
                    FieldTable::default(),
                )
                .await
                .expect("declare replies");
            let props = BasicProperties::default()
                .with_reply_to(replies.as_str().into())
                .with_correlation_id("corr-42".into())
                .with_delivery_mode(PERSISTENT);
            fx.channel
                .basic_publish(
                    "".into(),
                    fx.q("tasks.t").as_str().into(),
                    BasicPublishOptions::default(),
                    br#"{"id": "by-hand-1", "type": "t", "params": {"x": "y"}}"#,
                    props,
                )
                .await
                .expect("publish")
                .await
                .expect("published");
            let task = claim_within(&src, &["t"], Duration::from_secs(5))
                .await
                .expect("the hand-made task");
            assert_eq!(task.id, "by-hand-1");
            assert_eq!(task.params.get("x"), Some(&json!("y")));
            src.finish(&task, &done(), &Record::default())
                .await
                .expect("finish");
            let reply = fx.wait_get(&replies).await;
            assert_eq!(
                reply
                    .delivery
                    .properties
                    .correlation_id()
                    .as_ref()
                    .map(|c| c.as_str()),
                Some("corr-42")
            );
            assert_eq!(body(&reply)["id"], json!("by-hand-1"));
            assert_eq!(body(&reply)["success"], json!(true));
            assert!(fx.get(&fx.q("results")).await.is_none());
        })
        .await;
    }

    #[tokio::test]
    async fn a_retry_comes_back_after_its_delay_with_the_attempt_counted() {
        with_server(&["t"], |fx| async move {
            let src = fx.source().await;
            let id = enqueue_one(&src, "t").await;
            let task = claim(&src, &["t"]).await.expect("a task");
            let retry = Outcome::Retry {
                error: "flaky".to_string(),
                delay: Duration::from_millis(100),
            };
            let started = Instant::now();
            src.finish(&task, &retry, &Record::default())
                .await
                .expect("finish");
            let again = claim_within(&src, &["t"], Duration::from_secs(5))
                .await
                .expect("back after the delay");
            assert!(
                started.elapsed() >= Duration::from_millis(100),
                "{:?}",
                started.elapsed()
            );
            assert_eq!(again.id, id);
            assert_eq!(again.attempts, 2);
            assert_eq!(again.params.get("n"), Some(&json!(1)));
            // A retry is not an outcome.
            assert!(fx.get(&fx.q("results")).await.is_none());

            // A second retry, then a release: the count carries on across both.
            src.finish(&again, &retry, &Record::default())
                .await
                .expect("finish");
            let third = claim_within(&src, &["t"], Duration::from_secs(5))
                .await
                .expect("third");
            assert_eq!(third.attempts, 3);
            src.release(&third).await.expect("release");
            let fourth = claim(&src, &["t"]).await.expect("fourth");
            assert_eq!(fourth.attempts, 4);
            src.finish(&fourth, &done(), &Record::default())
                .await
                .expect("finish");
            assert_eq!(body(&fx.wait_get(&fx.q("results")).await)["attempts"], json!(4));

            // While waiting, a retry counts as delayed.
            let _ = enqueue_one(&src, "t").await;
            let task = claim(&src, &["t"]).await.expect("a task");
            let long = Outcome::Retry {
                error: "later".to_string(),
                delay: Duration::from_secs(30),
            };
            src.finish(&task, &long, &Record::default())
                .await
                .expect("finish");
            let depth = src.depth(&types(&["t"])).await.expect("depth");
            assert_eq!(
                depth,
                Depth {
                    ready: 0,
                    delayed: 1,
                    running: 0
                }
            );
            assert!(claim(&src, &["t"]).await.is_none());
        })
        .await;
    }

    #[tokio::test]
    async fn failed_and_dead_tasks_are_dead_lettered_with_their_outcome_published() {
        with_server(&["t"], |fx| async move {
            let src = fx.source().await;
            let failed_id = enqueue_one(&src, "t").await;
            let task = claim(&src, &["t"]).await.expect("a task");
            let record = Record {
                stderr_tail: "traceback...\n".to_string(),
                class: Some("permanent_failure".to_string()),
                duration_ms: 12,
            };
            let failed = Outcome::Failed {
                error: "boom".to_string(),
            };
            src.finish(&task, &failed, &record).await.expect("finish");
            let result = body(&fx.wait_get(&fx.q("results")).await);
            assert_eq!(result["id"], json!(failed_id));
            assert_eq!(result["success"], json!(false));
            assert_eq!(result["status"], json!("failed"));
            assert_eq!(result["error"], json!("boom"));
            assert_eq!(result["class"], json!("permanent_failure"));
            assert_eq!(result["stderr_tail"], json!("traceback...\n"));
            let dead = fx.wait_get(&fx.q("dead")).await;
            assert_eq!(
                dead.delivery.properties.message_id().as_ref().map(|m| m.as_str()),
                Some(failed_id.as_str())
            );

            let dead_id = enqueue_one(&src, "t").await;
            let task = claim(&src, &["t"]).await.expect("a task");
            let outcome = Outcome::Dead {
                error: "delivered too often".to_string(),
            };
            src.finish(&task, &outcome, &Record::default())
                .await
                .expect("finish");
            let result = body(&fx.wait_get(&fx.q("results")).await);
            assert_eq!(result["id"], json!(dead_id));
            assert_eq!(result["status"], json!("dead"));
            let dead = fx.wait_get(&fx.q("dead")).await;
            assert_eq!(body(&dead)["id"], json!(dead_id));
            assert!(claim(&src, &["t"]).await.is_none());
        })
        .await;
    }

    #[tokio::test]
    async fn a_released_task_is_claimable_at_once_and_the_delivery_counts() {
        with_server(&["t"], |fx| async move {
            let src = fx.source().await;
            let id = enqueue_one(&src, "t").await;
            let task = claim(&src, &["t"]).await.expect("a task");
            src.release(&task).await.expect("release");
            assert!(matches!(src.release(&task).await, Err(SourceError::LeaseLost(_))));
            let again = claim(&src, &["t"]).await.expect("claimable at once");
            assert_eq!(again.id, id);
            assert_eq!(again.attempts, 2);
            assert_ne!(again.lease, task.lease);
            src.finish(&again, &done(), &Record::default())
                .await
                .expect("finish");
        })
        .await;
    }

    #[tokio::test]
    async fn a_dead_host_s_task_goes_to_another_host_with_the_delivery_counted() {
        with_server(&["t"], |fx| async move {
            let dying = fx.source().await;
            let id = enqueue_one(&dying, "t").await;
            let task = claim(&dying, &["t"]).await.expect("a task");
            assert_eq!(task.attempts, 1);
            // No ack, no release: the connection just goes away.
            drop(dying);
            let other = fx.source().await;
            let again = claim_within(&other, &["t"], Duration::from_secs(10))
                .await
                .expect("redelivered to the other host");
            assert_eq!(again.id, id);
            assert_eq!(again.attempts, 2);
            other
                .finish(&again, &done(), &Record::default())
                .await
                .expect("finish");
        })
        .await;
    }

    #[tokio::test]
    async fn claims_rotate_over_the_types_and_skip_empty_ones() {
        with_server(&["a", "b", "c"], |fx| async move {
            let src = fx.source().await;
            for t in ["a", "a", "b", "b"] {
                enqueue_one(&src, t).await;
            }
            let mut seen = Vec::new();
            while let Some(task) = claim(&src, &["a", "b", "c"]).await {
                seen.push(task.task_type.clone());
                src.finish(&task, &done(), &Record::default())
                    .await
                    .expect("finish");
            }
            seen.sort();
            assert_eq!(seen, vec!["a", "a", "b", "b"]);
            // Only the asked-for types.
            enqueue_one(&src, "c").await;
            assert!(claim(&src, &["a", "b"]).await.is_none());
            assert_eq!(src.depth(&types(&["c"])).await.expect("depth").ready, 1);
        })
        .await;
    }

    #[tokio::test]
    async fn unsupported_requests_are_invalid() {
        with_server(&["t"], |fx| async move {
            let src = fx.source().await;
            let keyed = NewTask {
                dedupe_key: Some("k".to_string()),
                ..new_task("t", json!({}))
            };
            assert!(matches!(
                src.enqueue(&[keyed]).await,
                Err(SourceError::Invalid(_))
            ));
            assert!(matches!(
                src.list(&ListFilter::default()).await,
                Err(SourceError::Invalid(_))
            ));
            assert!(matches!(src.show("x").await, Err(SourceError::Invalid(_))));
            assert!(matches!(src.retry("x").await, Err(SourceError::Invalid(_))));
            let long = "x".repeat(300);
            assert!(matches!(
                src.claim(&[long], "h", LEASE).await,
                Err(SourceError::Invalid(_))
            ));
            src.health().await.expect("healthy");
            // A message that is not a task is dead-lettered, not delivered for ever. (The
            // claim declares the queue the message is published to.)
            assert!(claim(&src, &["t"]).await.is_none());
            fx.channel
                .basic_publish(
                    "".into(),
                    fx.q("tasks.t").as_str().into(),
                    BasicPublishOptions::default(),
                    b"not json",
                    BasicProperties::default(),
                )
                .await
                .expect("publish")
                .await
                .expect("published");
            let until = Instant::now() + Duration::from_secs(5);
            loop {
                match src.claim(&types(&["t"]), "h", LEASE).await {
                    Err(SourceError::Invalid(why)) => {
                        assert!(why.contains("not a wh task"), "{why}");
                        break;
                    }
                    Ok(None) if Instant::now() < until => tokio::time::sleep(Duration::from_millis(20)).await,
                    other => panic!("{other:?}"),
                }
            }
            assert_eq!(fx.wait_get(&fx.q("dead")).await.delivery.data, b"not json");
            assert!(claim(&src, &["t"]).await.is_none());
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn every_task_is_completed_exactly_once_across_hosts() {
        const TASKS: usize = 300;
        const HOSTS: usize = 3;
        const LOOPS: usize = 4;
        with_server(&["t"], |fx| async move {
            let first = fx.source().await;
            let batch: Vec<NewTask> = (0..TASKS).map(|i| new_task("t", json!({"i": i}))).collect();
            let ids: HashSet<String> = first
                .enqueue(&batch)
                .await
                .expect("enqueue")
                .into_iter()
                .map(|e| e.id)
                .collect();
            assert_eq!(ids.len(), TASKS);
            let mut hosts = vec![Arc::new(first)];
            for _ in 1..HOSTS {
                hosts.push(Arc::new(fx.source().await));
            }
            let finished = Arc::new(AtomicUsize::new(0));
            let mut loops = tokio::task::JoinSet::new();
            for host in &hosts {
                for _ in 0..LOOPS {
                    let (host, finished) = (host.clone(), finished.clone());
                    loops.spawn(async move {
                        let until = Instant::now() + Duration::from_secs(60);
                        let mut mine = 0usize;
                        while finished.load(Ordering::SeqCst) < TASKS && Instant::now() < until {
                            match host.claim(&types(&["t"]), "h", LEASE).await.expect("claim") {
                                Some(task) => {
                                    host.finish(&task, &done(), &Record::default())
                                        .await
                                        .expect("finish");
                                    finished.fetch_add(1, Ordering::SeqCst);
                                    mine += 1;
                                }
                                None => tokio::time::sleep(Duration::from_millis(5)).await,
                            }
                        }
                        mine
                    });
                }
            }
            let mut per_loop = Vec::new();
            while let Some(done) = loops.join_next().await {
                per_loop.push(done.expect("a claim loop"));
            }
            assert_eq!(per_loop.iter().sum::<usize>(), TASKS, "{per_loop:?}");
            let mut results = HashSet::new();
            while let Some(m) = fx.get(&fx.q("results")).await {
                let id = body(&m)["id"].as_str().expect("an id").to_string();
                assert!(results.insert(id.clone()), "task {id} completed twice");
            }
            assert_eq!(results, ids);
            // Nothing left anywhere.
            assert_eq!(
                hosts[0].depth(&types(&["t"])).await.expect("depth"),
                Depth::default()
            );
        })
        .await;
    }
}
