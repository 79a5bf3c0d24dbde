//! Tasks in Redis: one stream per task type, read by a consumer group, with each task's
//! state in a hash. Several `wh host` processes (on any machines) share one Redis.
//!
//! # Keys
//!
//! Every key starts with the prefix (`task_manager.prefix`, default `wh`), written `P` here:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:stream:{type}` | stream | one entry per delivery to come, field `id` = the task id |
//! | `P:task:{id}` | hash | the task: see below |
//! | `P:index` | sorted set | every task id, scored by an enqueue sequence number (for `list`) |
//! | `P:seq` | string | that sequence's counter |
//! | `P:dedupe` | hash | dedupe key → task id |
//! | `P:delayed:{type}` | sorted set | task ids waiting for a retry's backoff, scored by the unix time in ms they are due |
//! | `P:types` | set | every task type ever enqueued (for `depth` of all types) |
//! | `P:dead` | stream | a copy (`id`, `type`, `error`) of every task buried as dead |
//!
//! Each stream has one consumer group named `P` (created on demand at id `0`, so entries
//! added before it existed are delivered too); a host reads as the consumer named by its
//! owner string (`hostname:pid`).
//!
//! The task hash `P:task:{id}` has the fields `id`, `type`, `params` (a JSON object),
//! `priority`, `dedupe_key`, `status` (`pending`, `running`, `completed`, `failed`, `dead`),
//! `attempts`, `created_at` and `updated_at` (unix seconds, with microseconds),
//! `completed_at`, `result` (JSON, completed tasks only), `error` (the last error seen),
//! `class`, `stderr_tail` (the last 64 KiB of the worker's stderr), `duration_ms`, `progress`
//! and `progress_message` (the last progress report of the current or last delivery, cleared
//! by the next claim), and while a delivery is under way `entry` (its stream entry id),
//! `lease` (the lease token), `lease_owner` and `lease_until` (unix ms).
//!
//! **Results** are read by task id: `HGET P:task:{id} result` (a JSON document), once
//! `HGET P:task:{id} status` is `completed`. `wh` never deletes a task hash; expire or delete
//! old ones (and their `P:index` and `P:dedupe` members) as you see fit.
//!
//! # Guarantees
//!
//! Every operation is one Lua script (or one read), so it is atomic on the server: the lease
//! check and the writes it guards cannot interleave with another host's. (Scripts rather than
//! `WATCH`/`MULTI`: the connection is multiplexed between concurrent tasks, and `WATCH` state
//! belongs to a connection.) Times are the Redis server's clock (`TIME`), so hosts' clocks do
//! not matter.
//!
//! - A stream entry is delivered to one consumer (`XREADGROUP ... >`); the claim then takes a
//!   lease (a new token), counts the delivery (`attempts`), and marks the task running.
//! - An outcome is recorded in the hash first and the entry is acknowledged and deleted
//!   (`XACK` + `XDEL`) in the same script: an entry is never acknowledged without its
//!   outcome. A task has at most one live entry; acknowledged entries are always deleted.
//! - Delivery is at least once. An entry left unacknowledged (its host died) is taken over by
//!   the next claim once it has been idle at least the visibility timeout **and** its lease
//!   (`claim`'s `lease`, renewed by `extend`) has run out (`XPENDING ... IDLE` + `XCLAIM`,
//!   which counts as another delivery). The lease floor keeps a visibility timeout shorter
//!   than a worker's timeout from running a task twice at once.
//! - `finish` and `release` with a token that is no longer the task's lease change nothing
//!   and fail with `LeaseLost`. Repeating a `finish` or `release` that already succeeded with
//!   the same token (a retry after a timeout whose reply was lost) succeeds and changes
//!   nothing: the first outcome stands.
//! - `release` (shutdown) puts a fresh entry on the stream, claimable at once, and takes the
//!   delivery back off `attempts`: a graceful restart does not use up a task's retries. A
//!   host that dies releases nothing, so its deliveries count.
//! - A retry waits in `P:delayed:{type}`; the first claim for that type after it is due puts
//!   it back on the stream.
//! - `enqueue` of a batch is one script: all of it or none. Dedupe is atomic: a key already
//!   mapped to an existing task (whatever its status) returns that task's id.
//!
//! # Limits
//!
//! - Order is first in, first out per type; `priority` is stored and shown but does not
//!   reorder a stream. Claims rotate the type they try first, so one busy type does not
//!   starve the others.
//! - `depth` is exact for tasks written by this code: ready = stream length − pending
//!   entries + due retries + pending entries whose lease and visibility have run out;
//!   delayed = retries not yet due; running = the other pending entries. Hand-made entries or
//!   entries of deleted tasks count as ready until a claim discards them. At most 1000 idle
//!   pending entries per type are examined.
//! - `list` walks `P:index` newest first and reads each hash: a filter that matches few
//!   tasks reads many.
//! - A standalone Redis (or a primary with replicas) ≥ 6.2 is required; the scripts touch
//!   keys they compute, which Redis Cluster does not allow.
//! - Consumers are never deleted from the group; one per host process that ever claimed.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, FromRedisValue, RedisError, Script, ScriptInvocation};
use serde_json::{Map, Value};

use super::tail;
use super::{
    Claimed, Depth, Enqueued, ListFilter, NewTask, Outcome, Record, SourceError, Status, TaskSource, TaskView,
};

/// The most of a worker's stderr kept per task (its end).
const STDERR_TAIL_MAX: usize = 64 * 1024;
const TYPE_MAX_CHARS: usize = 255;
const DEFAULT_LIST_LIMIT: usize = 100;
/// Task hashes read per round trip by `list`.
const LIST_PAGE: isize = 200;

/// Helpers every script starts with. `ARGV[1]` is always the prefix (also the group name).
const LUA_COMMON: &str = r#"
local P = ARGV[1]
local G = P
local function k_task(id) return P .. ':task:' .. id end
local function k_stream(t) return P .. ':stream:' .. t end
local function k_delayed(t) return P .. ':delayed:' .. t end
local function int(x) return string.format('%d', x) end
local T = redis.call('TIME')
local NOW_MS = tonumber(T[1]) * 1000 + math.floor(tonumber(T[2]) / 1000)
local NOW_S = string.format('%d.%06d', tonumber(T[1]), tonumber(T[2]))
local function ensure_group(s)
  -- BUSYGROUP (it exists) is the usual answer and is ignored.
  redis.pcall('XGROUP', 'CREATE', s, G, '0', 'MKSTREAM')
end
local function entry_task_id(fields)
  if not fields then return nil end
  for i = 1, #fields, 2 do
    if fields[i] == 'id' then return fields[i + 1] end
  end
  return nil
end
local function drop_entry(s, e)
  redis.call('XACK', s, G, e)
  redis.call('XDEL', s, e)
end
local function push(t, id)
  local s = k_stream(t)
  ensure_group(s)
  local e = redis.call('XADD', s, '*', 'id', id)
  redis.call('HSET', k_task(id), 'entry', e)
  return e
end
"#;

/// ARGV: prefix, consumer, lease token, lease ms, visibility ms, types... Returns false, or
/// {id, type, params, priority, attempts, created_at}.
const LUA_CLAIM: &str = r#"
local consumer, token = ARGV[2], ARGV[3]
local lease_ms, vis_ms = tonumber(ARGV[4]), tonumber(ARGV[5])

-- Takes entry `e` of stream `s` (type `t`), now delivered to us, for its task; nil (and the
-- entry discarded) when the entry is stale: its task is gone or has moved on.
local function take(t, s, e, id)
  if not id then drop_entry(s, e) return nil end
  local h = k_task(id)
  local f = redis.call('HMGET', h, 'type', 'status', 'entry')
  if f[1] ~= t or f[3] ~= e or (f[2] ~= 'pending' and f[2] ~= 'running') then
    drop_entry(s, e)
    return nil
  end
  local attempts = redis.call('HINCRBY', h, 'attempts', 1)
  redis.call('HSET', h, 'status', 'running', 'lease', token, 'lease_owner', consumer,
    'lease_until', int(NOW_MS + lease_ms), 'updated_at', NOW_S)
  redis.call('HDEL', h, 'done_lease', 'progress', 'progress_message')
  local v = redis.call('HMGET', h, 'params', 'priority', 'created_at')
  return {id, t, v[1] or '', v[2] or '', attempts, v[3] or ''}
end

-- 1. Retries whose backoff is over go back on their stream.
for i = 6, #ARGV do
  local t = ARGV[i]
  local d = k_delayed(t)
  local due = redis.call('ZRANGEBYSCORE', d, '-inf', int(NOW_MS), 'LIMIT', 0, 100)
  for _, id in ipairs(due) do
    redis.call('ZREM', d, id)
    local f = redis.call('HMGET', k_task(id), 'status', 'type')
    if f[1] == 'pending' and f[2] == t then push(t, id) end
  end
end

-- 2. Deliveries whose host died: idle past the visibility timeout, lease run out.
for i = 6, #ARGV do
  local t = ARGV[i]
  local s = k_stream(t)
  if redis.call('EXISTS', s) == 1 then
    ensure_group(s)
    local start = '-'
    for _ = 1, 10 do
      local idle = redis.call('XPENDING', s, G, 'IDLE', vis_ms, start, '+', 100)
      for _, p in ipairs(idle) do
        local e = p[1]
        local r = redis.call('XRANGE', s, e, e)
        local id = r[1] and entry_task_id(r[1][2])
        local expired = true
        if id then
          local until_ms = tonumber(redis.call('HGET', k_task(id), 'lease_until') or '0') or 0
          expired = until_ms <= NOW_MS
        end
        if expired then
          local got = redis.call('XCLAIM', s, G, consumer, vis_ms, e, 'JUSTID')
          if #got > 0 then
            local c = take(t, s, e, id)
            if c then return c end
          end
        end
      end
      if #idle < 100 then break end
      start = '(' .. idle[#idle][1]
    end
  end
end

-- 3. New entries, the types in the order given.
for i = 6, #ARGV do
  local t = ARGV[i]
  local s = k_stream(t)
  if redis.call('EXISTS', s) == 1 then
    for _ = 1, 100 do
      local r = redis.call('XREADGROUP', 'GROUP', G, consumer, 'COUNT', 1, 'STREAMS', s, '>')
      if not r or not r[1] or #r[1][2] == 0 then break end
      local m = r[1][2][1]
      local c = take(t, s, m[1], entry_task_id(m[2]))
      if c then return c end
    end
  end
end
return false
"#;

/// ARGV: prefix, id, token, kind (completed|retry|failed|dead), result, error, has_error,
/// class, has_class, stderr_tail, duration_ms, delay_ms. Returns 0 (lease lost), 1 (already
/// recorded with this token) or 2 (recorded).
const LUA_FINISH: &str = r#"
local id, token, kind = ARGV[2], ARGV[3], ARGV[4]
local h = k_task(id)
local f = redis.call('HMGET', h, 'lease', 'done_lease', 'type', 'entry', 'status')
if f[1] ~= token or f[5] ~= 'running' then
  if f[2] == token then return 1 end
  return 0
end
local t = f[3]
local status = kind
if kind == 'retry' then status = 'pending' end
-- The outcome first...
redis.call('HSET', h, 'status', status, 'updated_at', NOW_S, 'stderr_tail', ARGV[10],
  'duration_ms', ARGV[11], 'done_lease', token)
redis.call('HDEL', h, 'lease', 'lease_owner', 'lease_until', 'entry')
if ARGV[7] == '1' then redis.call('HSET', h, 'error', ARGV[6]) end
if ARGV[9] == '1' then redis.call('HSET', h, 'class', ARGV[8]) else redis.call('HDEL', h, 'class') end
if kind == 'completed' then
  redis.call('HSET', h, 'result', ARGV[5])
else
  redis.call('HDEL', h, 'result')
end
if kind == 'retry' then
  redis.call('HDEL', h, 'completed_at')
  redis.call('ZADD', k_delayed(t), int(NOW_MS + tonumber(ARGV[12])), id)
else
  redis.call('HSET', h, 'completed_at', NOW_S)
end
if kind == 'dead' then
  redis.call('XADD', P .. ':dead', '*', 'id', id, 'type', t, 'error', ARGV[6])
end
-- ...then the entry is acknowledged.
if f[4] and f[4] ~= '' then drop_entry(k_stream(t), f[4]) end
return 2
"#;

/// ARGV: prefix, id, token. Returns 0 (lease lost), 1 (already released) or 2.
const LUA_RELEASE: &str = r#"
local id, token = ARGV[2], ARGV[3]
local h = k_task(id)
local f = redis.call('HMGET', h, 'lease', 'done_lease', 'type', 'entry', 'status')
if f[1] ~= token or f[5] ~= 'running' then
  if f[2] == token then return 1 end
  return 0
end
local t = f[3]
-- A release (shutdown) does not count as a delivery: it is given back.
if (tonumber(redis.call('HGET', h, 'attempts')) or 0) > 0 then
  redis.call('HINCRBY', h, 'attempts', -1)
end
redis.call('HSET', h, 'status', 'pending', 'updated_at', NOW_S, 'done_lease', token)
redis.call('HDEL', h, 'lease', 'lease_owner', 'lease_until', 'entry')
if f[4] and f[4] ~= '' then drop_entry(k_stream(t), f[4]) end
push(t, id)
return 2
"#;

/// ARGV: prefix, id, token, lease ms. Returns 0 (lease lost) or 2.
const LUA_EXTEND: &str = r#"
local id, token = ARGV[2], ARGV[3]
local h = k_task(id)
local f = redis.call('HMGET', h, 'lease', 'type', 'entry', 'status', 'lease_owner')
if f[1] ~= token or f[4] ~= 'running' then return 0 end
if f[3] and f[5] then
  -- Back to idle 0 under the same consumer; JUSTID does not count a delivery.
  redis.call('XCLAIM', k_stream(f[2]), G, f[5], 0, f[3], 'JUSTID')
end
redis.call('HSET', h, 'lease_until', int(NOW_MS + tonumber(ARGV[4])), 'updated_at', NOW_S)
return 2
"#;

/// ARGV: prefix, id, token (empty: the delivery whose attempts match), attempts, percent,
/// message, has message. Returns 0 (not this delivery, or not running) or 2.
const LUA_PROGRESS: &str = r#"
local id, token = ARGV[2], ARGV[3]
local h = k_task(id)
local f = redis.call('HMGET', h, 'lease', 'status', 'attempts')
if f[2] ~= 'running' then return 0 end
if token ~= '' then
  if f[1] ~= token then return 0 end
elseif f[3] ~= ARGV[4] then
  return 0
end
redis.call('HSET', h, 'progress', ARGV[5], 'updated_at', NOW_S)
if ARGV[7] == '1' then
  redis.call('HSET', h, 'progress_message', ARGV[6])
else
  redis.call('HDEL', h, 'progress_message')
end
return 2
"#;

/// ARGV: prefix, then per task: id, type, params, priority, dedupe key, has dedupe key.
/// Returns {{id, deduplicated 0|1}, ...}.
const LUA_ENQUEUE: &str = r#"
local out = {}
for i = 2, #ARGV, 6 do
  local id, t, params, priority, key, has_key = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  local existing = nil
  if has_key == '1' then
    existing = redis.call('HGET', P .. ':dedupe', key)
    if existing and redis.call('EXISTS', k_task(existing)) == 0 then existing = nil end
  end
  if existing then
    out[#out + 1] = {existing, 1}
  else
    local h = k_task(id)
    redis.call('HSET', h, 'id', id, 'type', t, 'params', params, 'priority', priority,
      'status', 'pending', 'attempts', 0, 'created_at', NOW_S, 'updated_at', NOW_S)
    if has_key == '1' then
      redis.call('HSET', h, 'dedupe_key', key)
      redis.call('HSET', P .. ':dedupe', key, id)
    end
    redis.call('ZADD', P .. ':index', redis.call('INCR', P .. ':seq'), id)
    redis.call('SADD', P .. ':types', t)
    push(t, id)
    out[#out + 1] = {id, 0}
  end
end
return out
"#;

/// ARGV: prefix, id. Returns {'ok'}, {'notfound'} or {'invalid', status}.
const LUA_RETRY: &str = r#"
local id = ARGV[2]
local h = k_task(id)
local f = redis.call('HMGET', h, 'status', 'type')
if not f[1] then return {'notfound'} end
if f[1] ~= 'failed' and f[1] ~= 'dead' then return {'invalid', f[1]} end
redis.call('HSET', h, 'status', 'pending', 'attempts', 0, 'updated_at', NOW_S)
redis.call('HDEL', h, 'result', 'completed_at', 'lease', 'lease_owner', 'lease_until', 'done_lease')
if not f[2] then return {'invalid', 'without a type'} end
redis.call('ZREM', k_delayed(f[2]), id)
push(f[2], id)
return {'ok'}
"#;

/// ARGV: prefix, visibility ms, types... (none: every type ever enqueued). Returns
/// {ready, delayed, running}.
const LUA_DEPTH: &str = r#"
local vis_ms = tonumber(ARGV[2])
local types = {}
if #ARGV >= 3 then
  for i = 3, #ARGV do types[#types + 1] = ARGV[i] end
else
  types = redis.call('SMEMBERS', P .. ':types')
end
local ready, delayed, running = 0, 0, 0
for _, t in ipairs(types) do
  local d = k_delayed(t)
  local due = redis.call('ZCOUNT', d, '-inf', int(NOW_MS))
  ready = ready + due
  delayed = delayed + redis.call('ZCARD', d) - due
  local s = k_stream(t)
  if redis.call('EXISTS', s) == 1 then
    local len = redis.call('XLEN', s)
    local pending = 0
    local summary = redis.pcall('XPENDING', s, G)
    if type(summary) == 'table' and not summary.err then pending = tonumber(summary[1]) or 0 end
    local expired = 0
    if pending > 0 then
      local idle = redis.call('XPENDING', s, G, 'IDLE', vis_ms, '-', '+', 1000)
      for _, p in ipairs(idle) do
        local r = redis.call('XRANGE', s, p[1], p[1])
        local id = r[1] and entry_task_id(r[1][2])
        local until_ms = 0
        if id then until_ms = tonumber(redis.call('HGET', k_task(id), 'lease_until') or '0') or 0 end
        if until_ms <= NOW_MS then expired = expired + 1 end
      end
    end
    ready = ready + len - pending + expired
    running = running + pending - expired
  end
end
return {ready, delayed, running}
"#;

fn script(body: &str) -> Script {
    Script::new(&format!("{LUA_COMMON}{body}"))
}

static CLAIM: LazyLock<Script> = LazyLock::new(|| script(LUA_CLAIM));
static FINISH: LazyLock<Script> = LazyLock::new(|| script(LUA_FINISH));
static RELEASE: LazyLock<Script> = LazyLock::new(|| script(LUA_RELEASE));
static EXTEND: LazyLock<Script> = LazyLock::new(|| script(LUA_EXTEND));
static PROGRESS: LazyLock<Script> = LazyLock::new(|| script(LUA_PROGRESS));
static ENQUEUE: LazyLock<Script> = LazyLock::new(|| script(LUA_ENQUEUE));
static RETRY: LazyLock<Script> = LazyLock::new(|| script(LUA_RETRY));
static DEPTH: LazyLock<Script> = LazyLock::new(|| script(LUA_DEPTH));

/// What the lease-checked scripts answer.
const LEASE_LOST: i64 = 0;

/// The Redis task source. One multiplexed connection, shared by every call, re-opened on the
/// next call after it breaks.
pub struct RedisSource {
    client: redis::Client,
    config: AsyncConnectionConfig,
    /// The live connection and its generation (so a failed call drops only the connection it
    /// used, not a newer one).
    conn: tokio::sync::Mutex<Option<(u64, MultiplexedConnection)>>,
    generation: AtomicU64,
    prefix: String,
    visibility: Duration,
    timeout: Duration,
    /// The URL without its user info, for messages.
    shown: String,
    /// Strings never to show (the URL's user info and password).
    secrets: Vec<String>,
    /// The type a claim tries first, rotating.
    next_type: AtomicUsize,
}

impl std::fmt::Debug for RedisSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSource")
            .field("url", &self.shown)
            .field("prefix", &self.prefix)
            .field("visibility", &self.visibility)
            .finish_non_exhaustive()
    }
}

impl RedisSource {
    /// Connects to `url` (`redis://` or `rediss://`, user info allowed), keys under `prefix`.
    /// `visibility_timeout` is how long a delivery may stay unacknowledged (and its lease run
    /// out) before another host takes it over; `timeout` bounds connecting and every request.
    /// Fails with `Unavailable` (the URL shown without its password) when the URL is invalid
    /// or the server does not answer.
    pub async fn connect(
        url: &str,
        prefix: &str,
        visibility_timeout: Duration,
        timeout: Duration,
    ) -> Result<RedisSource, SourceError> {
        let (shown, secrets) = redact(url);
        let scrub = |text: String| scrub(text, &secrets);
        if prefix.is_empty() {
            return Err(SourceError::Invalid(
                "the redis key prefix must not be empty".to_string(),
            ));
        }
        let client = redis::Client::open(url)
            .map_err(|e| SourceError::Unavailable(scrub(format!("redis {shown}: invalid URL: {e}"))))?;
        let timeout = if timeout.is_zero() {
            Duration::from_secs(30)
        } else {
            timeout
        };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let source = RedisSource {
            client,
            config,
            conn: tokio::sync::Mutex::new(None),
            generation: AtomicU64::new(0),
            prefix: prefix.to_string(),
            visibility: visibility_timeout,
            timeout,
            shown,
            secrets,
            next_type: AtomicUsize::new(0),
        };
        source.health().await?;
        Ok(source)
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The hash holding task `id` (its `result` field is the worker's result, as JSON).
    pub fn task_key(&self, id: &str) -> String {
        format!("{}:task:{id}", self.prefix)
    }

    /// The live connection, opened if there is none.
    async fn connection(&self) -> Result<(u64, MultiplexedConnection), SourceError> {
        let mut slot = self.conn.lock().await;
        if let Some((generation, conn)) = slot.as_ref() {
            return Ok((*generation, conn.clone()));
        }
        let opened = tokio::time::timeout(
            self.timeout,
            self.client
                .get_multiplexed_async_connection_with_config(&self.config),
        )
        .await;
        let conn = match opened {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(self.unavailable("cannot connect", &e)),
            Err(_) => {
                return Err(SourceError::Unavailable(format!(
                    "redis {}: cannot connect: no answer within {:?}",
                    self.shown, self.timeout
                )));
            }
        };
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        *slot = Some((generation, conn.clone()));
        Ok((generation, conn))
    }

    /// Maps a failed request; a broken connection is dropped so the next call reconnects.
    async fn failed(&self, generation: u64, e: RedisError) -> SourceError {
        if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_unrecoverable_error() {
            let mut slot = self.conn.lock().await;
            if slot.as_ref().is_some_and(|(g, _)| *g == generation) {
                *slot = None;
            }
        }
        self.unavailable("request failed", &e)
    }

    fn unavailable(&self, what: &str, e: &RedisError) -> SourceError {
        SourceError::Unavailable(scrub(format!("redis {}: {what}: {e}", self.shown), &self.secrets))
    }

    async fn invoke<T: FromRedisValue>(&self, call: &ScriptInvocation<'_>) -> Result<T, SourceError> {
        let (generation, mut conn) = self.connection().await?;
        match call.invoke_async(&mut conn).await {
            Ok(v) => Ok(v),
            Err(e) => Err(self.failed(generation, e).await),
        }
    }

    async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, SourceError> {
        let (generation, mut conn) = self.connection().await?;
        match cmd.query_async(&mut conn).await {
            Ok(v) => Ok(v),
            Err(e) => Err(self.failed(generation, e).await),
        }
    }

    async fn query_pipe<T: FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T, SourceError> {
        let (generation, mut conn) = self.connection().await?;
        match pipe.query_async(&mut conn).await {
            Ok(v) => Ok(v),
            Err(e) => Err(self.failed(generation, e).await),
        }
    }

    /// Runs a lease-checked script; `LeaseLost` when it says so.
    async fn leased(&self, task: &Claimed, call: &ScriptInvocation<'_>) -> Result<(), SourceError> {
        let answer: i64 = self.invoke(call).await?;
        if answer == LEASE_LOST {
            return Err(SourceError::LeaseLost(task.id.clone()));
        }
        Ok(())
    }

    /// The claim script's answer as a `Claimed`; `Invalid` when the stored task is unreadable.
    fn claimed_from(
        fields: (String, String, String, String, i64, String),
        lease: String,
    ) -> Result<Claimed, String> {
        let (id, task_type, params, priority, attempts, created_at) = fields;
        let params: Map<String, Value> = serde_json::from_str(&params)
            .map_err(|e| format!("task `{id}`: its stored params are not a JSON object: {e}"))?;
        let priority = priority
            .parse()
            .map_err(|_| format!("task `{id}`: priority `{priority}` is not an integer"))?;
        let attempts = u32::try_from(attempts)
            .map_err(|_| format!("task `{id}`: attempts {attempts} is out of range"))?;
        let created_at = created_at
            .parse()
            .map_err(|_| format!("task `{id}`: created_at `{created_at}` is not a number"))?;
        Ok(Claimed {
            id,
            task_type,
            params,
            priority,
            attempts,
            created_at,
            lease,
        })
    }
}

/// The URL without user info, and the secrets in it (user info, password).
fn redact(url: &str) -> (String, Vec<String>) {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return ("<an invalid URL>".to_string(), Vec::new());
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return (url.to_string(), Vec::new());
    };
    let userinfo = &authority[..at];
    let shown = format!("{}{}", &url[..scheme_end], &rest[at + 1..]);
    let mut secrets = vec![userinfo.to_string()];
    if let Some((_, password)) = userinfo.split_once(':') {
        secrets.push(password.to_string());
    }
    secrets.retain(|s| !s.is_empty());
    (shown, secrets)
}

fn scrub(mut text: String, secrets: &[String]) -> String {
    for secret in secrets {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), "***");
        }
    }
    text
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn parse_status(s: &str) -> Option<Status> {
    Some(match s {
        "pending" => Status::Pending,
        "running" => Status::Running,
        "completed" => Status::Completed,
        "failed" => Status::Failed,
        "dead" => Status::Dead,
        _ => return None,
    })
}

fn validate(task: &NewTask) -> Result<(), SourceError> {
    if task.task_type.is_empty() {
        return Err(SourceError::Invalid("a task type must not be empty".to_string()));
    }
    let chars = task.task_type.chars().count();
    if chars > TYPE_MAX_CHARS {
        return Err(SourceError::Invalid(format!(
            "task type `{}…` is {chars} characters long; the limit is {TYPE_MAX_CHARS}",
            task.task_type.chars().take(40).collect::<String>()
        )));
    }
    Ok(())
}

/// A `TaskView` from a task hash (`id` when the hash has no `id` field).
fn view_from_hash(id: &str, mut h: HashMap<String, String>) -> Result<TaskView, SourceError> {
    let invalid = |what: String| SourceError::Invalid(format!("task `{id}`: {what}"));
    let status = h.remove("status").unwrap_or_default();
    let status = parse_status(&status).ok_or_else(|| invalid(format!("unknown status `{status}`")))?;
    let params = h.remove("params").unwrap_or_else(|| "{}".to_string());
    let params: Map<String, Value> = serde_json::from_str(&params)
        .map_err(|e| invalid(format!("its stored params are not a JSON object: {e}")))?;
    let result = match h.remove("result") {
        Some(text) => Some(
            serde_json::from_str(&text)
                .map_err(|e| invalid(format!("its stored result is not valid JSON: {e}")))?,
        ),
        None => None,
    };
    let number = |h: &mut HashMap<String, String>, name: &str| -> Result<Option<f64>, SourceError> {
        h.remove(name)
            .map(|v| {
                v.parse::<f64>()
                    .map_err(|_| invalid(format!("`{name}` `{v}` is not a number")))
            })
            .transpose()
    };
    let created_at = number(&mut h, "created_at")?.unwrap_or(0.0);
    let updated_at = number(&mut h, "updated_at")?.unwrap_or(created_at);
    let priority: i64 = match h.remove("priority") {
        Some(v) => v
            .parse()
            .map_err(|_| invalid(format!("priority `{v}` is not an integer")))?,
        None => 0,
    };
    let attempts: u32 = match h.remove("attempts") {
        Some(v) => v
            .parse()
            .map_err(|_| invalid(format!("attempts `{v}` is out of range")))?,
        None => 0,
    };
    Ok(TaskView {
        id: h.remove("id").unwrap_or_else(|| id.to_string()),
        task_type: h.remove("type").unwrap_or_default(),
        status,
        priority,
        attempts,
        params,
        dedupe_key: h.remove("dedupe_key"),
        created_at,
        updated_at,
        result,
        error: h.remove("error"),
        class: h.remove("class"),
        stderr_tail: h.remove("stderr_tail"),
        lease_owner: h.remove("lease_owner"),
        progress: h
            .remove("progress")
            .map(|v| {
                v.parse::<u8>()
                    .map_err(|_| invalid(format!("progress `{v}` is not a percent")))
            })
            .transpose()?,
        progress_message: h.remove("progress_message"),
    })
}

#[async_trait]
impl TaskSource for RedisSource {
    async fn claim(
        &self,
        types: &[String],
        owner: &str,
        lease: Duration,
    ) -> Result<Option<Claimed>, SourceError> {
        if types.is_empty() {
            return Ok(None);
        }
        let first = self.next_type.fetch_add(1, Ordering::Relaxed) % types.len();
        let token = uuid::Uuid::new_v4().to_string();
        let mut call = CLAIM.prepare_invoke();
        call.arg(&self.prefix)
            .arg(owner)
            .arg(&token)
            .arg(millis(lease))
            .arg(millis(self.visibility));
        for t in types[first..].iter().chain(&types[..first]) {
            call.arg(t);
        }
        let got: Option<(String, String, String, String, i64, String)> = self.invoke(&call).await?;
        let Some(fields) = got else {
            return Ok(None);
        };
        let (id, task_type) = (fields.0.clone(), fields.1.clone());
        match RedisSource::claimed_from(fields, token.clone()) {
            Ok(claimed) => Ok(Some(claimed)),
            Err(why) => {
                // A task this code cannot read (edited by hand?) would come back for ever:
                // fail it, and say so.
                let unreadable = Claimed {
                    id,
                    task_type,
                    params: Map::new(),
                    priority: 0,
                    attempts: 0,
                    created_at: 0.0,
                    lease: token,
                };
                let error = format!("unreadable task, failed at claim: {why}");
                self.finish(&unreadable, &Outcome::Failed { error }, &Record::default())
                    .await?;
                Err(SourceError::Invalid(format!(
                    "{why} (the task is now marked failed)"
                )))
            }
        }
    }

    async fn claim_batch(
        &self,
        types: &[String],
        owner: &str,
        lease: Duration,
        max: usize,
    ) -> Result<Vec<Claimed>, SourceError> {
        // Concurrent claims share the multiplexed connection: one round trip for the batch.
        let claims = (0..max.max(1)).map(|_| self.claim(types, owner, lease));
        let mut batch = Vec::new();
        let mut first_error = None;
        for claimed in futures::future::join_all(claims).await {
            match claimed {
                Ok(Some(task)) => batch.push(task),
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "one claim of a batch failed");
                    first_error.get_or_insert(e);
                }
            }
        }
        // Tasks claimed are never dropped for another claim's error: that error comes back on
        // the next claim if it lasts.
        match first_error {
            Some(e) if batch.is_empty() => Err(e),
            _ => Ok(batch),
        }
    }

    async fn finish(&self, task: &Claimed, outcome: &Outcome, record: &Record) -> Result<(), SourceError> {
        let (kind, result, error, delay) = match outcome {
            Outcome::Completed { result } => {
                let json = serde_json::to_string(result).map_err(|e| {
                    SourceError::Invalid(format!("task `{}`: the result cannot be stored: {e}", task.id))
                })?;
                ("completed", json, None, Duration::ZERO)
            }
            Outcome::Retry { error, delay } => ("retry", String::new(), Some(error.as_str()), *delay),
            Outcome::Failed { error } => ("failed", String::new(), Some(error.as_str()), Duration::ZERO),
            Outcome::Dead { error } => ("dead", String::new(), Some(error.as_str()), Duration::ZERO),
        };
        let mut call = FINISH.prepare_invoke();
        call.arg(&self.prefix)
            .arg(&task.id)
            .arg(&task.lease)
            .arg(kind)
            .arg(result)
            .arg(error.unwrap_or(""))
            .arg(if error.is_some() { "1" } else { "0" })
            .arg(record.class.as_deref().unwrap_or(""))
            .arg(if record.class.is_some() { "1" } else { "0" })
            .arg(tail(&record.stderr_tail, STDERR_TAIL_MAX))
            .arg(record.duration_ms)
            .arg(millis(delay));
        self.leased(task, &call).await
    }

    async fn release(&self, task: &Claimed) -> Result<(), SourceError> {
        let mut call = RELEASE.prepare_invoke();
        call.arg(&self.prefix).arg(&task.id).arg(&task.lease);
        self.leased(task, &call).await
    }

    async fn extend(&self, task: &Claimed, lease: Duration) -> Result<(), SourceError> {
        let mut call = EXTEND.prepare_invoke();
        call.arg(&self.prefix)
            .arg(&task.id)
            .arg(&task.lease)
            .arg(millis(lease));
        self.leased(task, &call).await
    }

    /// `HSET` into the task hash while the delivery runs (never a lease extension).
    async fn progress(&self, task: &Claimed, percent: u8, message: Option<&str>) -> Result<(), SourceError> {
        let mut call = PROGRESS.prepare_invoke();
        call.arg(&self.prefix)
            .arg(&task.id)
            .arg(&task.lease)
            .arg(task.attempts)
            .arg(percent.min(100))
            .arg(message.unwrap_or(""))
            .arg(if message.is_some() { "1" } else { "0" });
        self.leased(task, &call).await
    }

    async fn health(&self) -> Result<(), SourceError> {
        let _pong: String = self.query(&redis::cmd("PING")).await?;
        Ok(())
    }

    async fn depth(&self, types: &[String]) -> Result<Depth, SourceError> {
        let mut call = DEPTH.prepare_invoke();
        call.arg(&self.prefix).arg(millis(self.visibility));
        for t in types {
            call.arg(t);
        }
        let (ready, delayed, running): (i64, i64, i64) = self.invoke(&call).await?;
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(Depth {
            ready: count(ready),
            delayed: count(delayed),
            running: count(running),
        })
    }

    async fn enqueue(&self, tasks: &[NewTask]) -> Result<Vec<Enqueued>, SourceError> {
        for task in tasks {
            validate(task)?;
        }
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let mut call = ENQUEUE.prepare_invoke();
        call.arg(&self.prefix);
        for task in tasks {
            let params = serde_json::to_string(&task.params).map_err(|e| {
                SourceError::Invalid(format!("task of type `{}`: params: {e}", task.task_type))
            })?;
            call.arg(uuid::Uuid::new_v4().to_string())
                .arg(&task.task_type)
                .arg(params)
                .arg(task.priority)
                .arg(task.dedupe_key.as_deref().unwrap_or(""))
                .arg(if task.dedupe_key.is_some() { "1" } else { "0" });
        }
        let added: Vec<(String, i64)> = self.invoke(&call).await?;
        Ok(added
            .into_iter()
            .map(|(id, deduplicated)| Enqueued {
                id,
                deduplicated: deduplicated == 1,
            })
            .collect())
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<TaskView>, SourceError> {
        let limit = if filter.limit == 0 {
            DEFAULT_LIST_LIMIT
        } else {
            filter.limit
        };
        let index = format!("{}:index", self.prefix);
        let mut out = Vec::new();
        let mut start: isize = 0;
        loop {
            let ids: Vec<String> = self
                .query(
                    redis::cmd("ZREVRANGE")
                        .arg(&index)
                        .arg(start)
                        .arg(start + LIST_PAGE - 1),
                )
                .await?;
            if ids.is_empty() {
                return Ok(out);
            }
            let mut pipe = redis::pipe();
            for id in &ids {
                pipe.cmd("HGETALL").arg(self.task_key(id));
            }
            let hashes: Vec<HashMap<String, String>> = self.query_pipe(&pipe).await?;
            for (id, hash) in ids.iter().zip(hashes) {
                if hash.is_empty() {
                    continue; // deleted by hand
                }
                if filter
                    .task_type
                    .as_ref()
                    .is_some_and(|t| hash.get("type") != Some(t))
                {
                    continue;
                }
                if filter
                    .status
                    .is_some_and(|s| hash.get("status").map(String::as_str) != Some(s.as_str()))
                {
                    continue;
                }
                out.push(view_from_hash(id, hash)?);
                if out.len() >= limit {
                    return Ok(out);
                }
            }
            if ids.len() < LIST_PAGE as usize {
                return Ok(out);
            }
            start += LIST_PAGE;
        }
    }

    async fn show(&self, id: &str) -> Result<TaskView, SourceError> {
        let hash: HashMap<String, String> = self.query(redis::cmd("HGETALL").arg(self.task_key(id))).await?;
        if hash.is_empty() {
            return Err(SourceError::NotFound(id.to_string()));
        }
        view_from_hash(id, hash)
    }

    /// Back to pending, claimable at once, with `attempts` 0. `result` and the lease are
    /// cleared; `error`, `class`, `stderr_tail` and `duration_ms` stay as the record of the
    /// last delivery until the next delivery replaces them.
    async fn retry(&self, id: &str) -> Result<(), SourceError> {
        let mut call = RETRY.prepare_invoke();
        call.arg(&self.prefix).arg(id);
        let answer: Vec<String> = self.invoke(&call).await?;
        match answer.first().map(String::as_str) {
            Some("ok") => Ok(()),
            Some("notfound") => Err(SourceError::NotFound(id.to_string())),
            _ => {
                let status = answer.get(1).map(String::as_str).unwrap_or("in an unknown state");
                Err(SourceError::Invalid(format!(
                    "task `{id}` is {status}; only failed or dead tasks can be retried"
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};
    use std::sync::Arc;

    use serde_json::json;

    use super::*;

    const URL: &str = "redis://127.0.0.1:6379";
    const LONG: Duration = Duration::from_secs(60);

    /// A source under a fresh prefix; its keys are deleted when the guard drops (even after
    /// a failed assertion). `None` (the test is skipped) when no server answers, unless CI.
    async fn source_with(visibility: Duration) -> Option<(RedisSource, Cleanup)> {
        let prefix = format!("whtest:{}", uuid::Uuid::new_v4());
        match RedisSource::connect(URL, &prefix, visibility, Duration::from_secs(5)).await {
            Ok(source) => Some((source, Cleanup { prefix })),
            Err(e) => {
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!("no Redis at {URL}: {e}");
                }
                eprintln!("skipped: no Redis at {URL}: {e}");
                None
            }
        }
    }

    async fn source() -> Option<(RedisSource, Cleanup)> {
        source_with(LONG).await
    }

    struct Cleanup {
        prefix: String,
    }

    impl Drop for Cleanup {
        fn drop(&mut self) {
            let Ok(client) = redis::Client::open(URL) else {
                return;
            };
            let Ok(mut conn) = client.get_connection() else {
                return;
            };
            let keys: Vec<String> = match conn.scan_match(format!("{}:*", self.prefix)) {
                Ok(iter) => iter.filter_map(Result::ok).collect(),
                Err(_) => return,
            };
            for chunk in keys.chunks(500) {
                let _: Result<i64, _> = redis::cmd("DEL").arg(chunk).query(&mut conn);
            }
        }
    }

    use redis::TypedCommands;

    async fn raw<T: FromRedisValue>(cmd: &mut redis::Cmd) -> T {
        let client = redis::Client::open(URL).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        cmd.query_async(&mut conn).await.unwrap()
    }

    fn new_task(task_type: &str, priority: i64) -> NewTask {
        NewTask {
            task_type: task_type.to_string(),
            priority,
            ..NewTask::default()
        }
    }

    fn keyed(task_type: &str, key: &str) -> NewTask {
        NewTask {
            dedupe_key: Some(key.to_string()),
            ..new_task(task_type, 0)
        }
    }

    fn types(list: &[&str]) -> Vec<String> {
        list.iter().map(|t| t.to_string()).collect()
    }

    fn done() -> Outcome {
        Outcome::Completed {
            result: json!({"ok": true}),
        }
    }

    async fn enqueue_one(q: &RedisSource, task: NewTask) -> String {
        q.enqueue(&[task]).await.expect("enqueue").remove(0).id
    }

    async fn claim(q: &RedisSource, owner: &str) -> Option<Claimed> {
        q.claim(&types(&["t"]), owner, LONG).await.expect("claim")
    }

    async fn stream_len(q: &RedisSource, t: &str) -> i64 {
        raw(redis::cmd("XLEN").arg(format!("{}:stream:{t}", q.prefix))).await
    }

    async fn pending_count(q: &RedisSource, t: &str) -> i64 {
        let summary: redis::Value = raw(redis::cmd("XPENDING")
            .arg(format!("{}:stream:{t}", q.prefix))
            .arg(&q.prefix))
        .await;
        let redis::Value::Array(parts) = summary else {
            panic!("{summary:?}")
        };
        i64::from_redis_value(parts[0].clone()).unwrap()
    }

    #[tokio::test]
    async fn a_batch_claim_gets_distinct_tasks_in_one_go() {
        let Some((q, _keys)) = source().await else { return };
        let tasks: Vec<NewTask> = (0..5)
            .map(|_| NewTask {
                task_type: "t".to_string(),
                ..NewTask::default()
            })
            .collect();
        q.enqueue(&tasks).await.unwrap();
        let first = q.claim_batch(&types(&["t"]), "a", LONG, 3).await.unwrap();
        assert_eq!(first.len(), 3);
        let rest = q.claim_batch(&types(&["t"]), "b", LONG, 10).await.unwrap();
        assert_eq!(rest.len(), 2, "only the unclaimed ones");
        let ids: std::collections::BTreeSet<&str> =
            first.iter().chain(&rest).map(|c| c.id.as_str()).collect();
        assert_eq!(ids.len(), 5, "no task claimed twice");
        assert!(
            q.claim_batch(&types(&["t"]), "b", LONG, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn round_trip() {
        let Some((q, _keys)) = source().await else { return };
        let mut params = Map::new();
        params.insert("url".to_string(), json!("https://example.com"));
        params.insert("n".to_string(), json!(3));
        let task = NewTask {
            task_type: "t".to_string(),
            params: params.clone(),
            priority: 5,
            dedupe_key: None,
        };
        let added = q.enqueue(&[task]).await.unwrap();
        assert_eq!(added.len(), 1);
        assert!(!added[0].deduplicated);
        let id = added[0].id.clone();
        assert!(uuid::Uuid::parse_str(&id).is_ok());
        assert_eq!(q.show(&id).await.unwrap().status, Status::Pending);

        let c = claim(&q, "host-a").await.expect("a task");
        assert_eq!(c.id, id);
        assert_eq!(c.task_type, "t");
        assert_eq!(c.params, params);
        assert_eq!(c.priority, 5);
        assert_eq!(c.attempts, 1);
        assert!(c.created_at > 1.0e9);
        assert!(!c.lease.is_empty());
        let running = q.show(&id).await.unwrap();
        assert_eq!(running.status, Status::Running);
        assert_eq!(running.lease_owner.as_deref(), Some("host-a"));
        assert!(
            claim(&q, "host-b").await.is_none(),
            "a leased task is not claimed twice"
        );
        assert_eq!(pending_count(&q, "t").await, 1);

        let record = Record {
            stderr_tail: "warning: slow\n".to_string(),
            class: Some("success".to_string()),
            duration_ms: 1234,
        };
        let outcome = Outcome::Completed {
            result: json!({"pages": 7}),
        };
        q.finish(&c, &outcome, &record).await.unwrap();

        // What a client reads.
        let stored: String = raw(redis::cmd("HGET").arg(q.task_key(&id)).arg("result")).await;
        assert_eq!(
            serde_json::from_str::<Value>(&stored).unwrap(),
            json!({"pages": 7})
        );
        let status: String = raw(redis::cmd("HGET")
            .arg(format!("{}:task:{id}", q.prefix()))
            .arg("status"))
        .await;
        assert_eq!(status, "completed");

        let v = q.show(&id).await.unwrap();
        assert_eq!(v.status, Status::Completed);
        assert_eq!(v.result, Some(json!({"pages": 7})));
        assert_eq!(v.class.as_deref(), Some("success"));
        assert_eq!(v.stderr_tail.as_deref(), Some("warning: slow\n"));
        assert_eq!(v.attempts, 1);
        assert_eq!(v.lease_owner, None);
        assert_eq!(v.params, params);
        assert_eq!(v.priority, 5);
        assert!(v.updated_at >= v.created_at);
        // Acknowledged and deleted once recorded.
        assert_eq!(stream_len(&q, "t").await, 0);
        assert_eq!(pending_count(&q, "t").await, 0);
        assert!(claim(&q, "host-a").await.is_none());
        assert_eq!(q.depth(&[]).await.unwrap(), Depth::default());
        q.health().await.unwrap();

        // The same finish again (a retry after a lost reply) changes nothing and succeeds.
        q.finish(&c, &Outcome::Failed { error: "late".into() }, &Record::default())
            .await
            .unwrap();
        let again = q.show(&id).await.unwrap();
        assert_eq!(again.status, Status::Completed);
        assert_eq!(again.error, None);
        // Another token: refused.
        let stranger = Claimed {
            lease: "not-the-lease".to_string(),
            ..c.clone()
        };
        assert!(matches!(
            q.finish(&stranger, &done(), &Record::default()).await,
            Err(SourceError::LeaseLost(ref i)) if *i == id
        ));
        assert!(matches!(
            q.release(&stranger).await,
            Err(SourceError::LeaseLost(_))
        ));
        assert!(matches!(
            q.extend(&stranger, LONG).await,
            Err(SourceError::LeaseLost(_))
        ));
    }

    #[tokio::test]
    async fn dedupe_within_and_across_batches() {
        let Some((q, _keys)) = source().await else { return };
        let first = q
            .enqueue(&[
                keyed("t", "k1"),
                keyed("t", "k1"),
                new_task("t", 0),
                keyed("t", "k2"),
            ])
            .await
            .unwrap();
        assert!(!first[0].deduplicated);
        assert!(first[1].deduplicated);
        assert_eq!(first[1].id, first[0].id);
        assert!(!first[2].deduplicated);
        assert!(!first[3].deduplicated);
        assert_ne!(first[3].id, first[0].id);
        assert_eq!(stream_len(&q, "t").await, 3, "a duplicate adds no entry");

        let c = claim(&q, "a").await.unwrap();
        assert_eq!(c.id, first[0].id);
        q.finish(&c, &done(), &Record::default()).await.unwrap();
        let second = q.enqueue(&[keyed("t", "k1"), keyed("t", "k3")]).await.unwrap();
        assert_eq!(
            second[0],
            Enqueued {
                id: first[0].id.clone(),
                deduplicated: true
            }
        );
        assert!(!second[1].deduplicated);
        assert!(!q.enqueue(&[new_task("t", 0)]).await.unwrap()[0].deduplicated);
        assert_eq!(q.list(&ListFilter::default()).await.unwrap().len(), 5);
        assert_eq!(
            q.show(&first[0].id).await.unwrap().dedupe_key.as_deref(),
            Some("k1")
        );

        // A key whose task was deleted by hand no longer dedupes.
        raw::<i64>(redis::cmd("DEL").arg(q.task_key(&second[1].id))).await;
        let third = q.enqueue(&[keyed("t", "k3")]).await.unwrap();
        assert!(!third[0].deduplicated);
        assert_ne!(third[0].id, second[1].id);
    }

    #[tokio::test]
    async fn invalid_types_are_refused_and_nothing_is_added() {
        let Some((q, _keys)) = source().await else { return };
        let empty = q.enqueue(&[new_task("t", 0), new_task("", 0)]).await;
        assert!(matches!(empty, Err(SourceError::Invalid(_))), "{empty:?}");
        let long = q.enqueue(&[new_task(&"é".repeat(256), 0)]).await;
        assert!(
            matches!(long, Err(SourceError::Invalid(ref m)) if m.contains("256")),
            "{long:?}"
        );
        assert!(q.list(&ListFilter::default()).await.unwrap().is_empty());
        q.enqueue(&[new_task(&"é".repeat(255), 0)]).await.unwrap();
        assert!(q.enqueue(&[]).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn type_filtering_rotation_and_empty_types() {
        let Some((q, _keys)) = source().await else { return };
        let other = enqueue_one(&q, new_task("other", 100)).await;
        let mine = enqueue_one(&q, new_task("t", 0)).await;
        assert!(q.claim(&[], "a", LONG).await.unwrap().is_none());
        assert!(q.claim(&types(&["never"]), "a", LONG).await.unwrap().is_none());
        assert_eq!(claim(&q, "a").await.unwrap().id, mine);
        assert!(claim(&q, "a").await.is_none(), "other types are not claimed");
        assert_eq!(
            q.claim(&types(&["t", "other"]), "a", LONG)
                .await
                .unwrap()
                .unwrap()
                .id,
            other
        );

        // Two busy types: claims alternate between them.
        let batch: Vec<NewTask> = (0..10)
            .map(|i| new_task(if i < 5 { "x" } else { "y" }, 0))
            .collect();
        q.enqueue(&batch).await.unwrap();
        let both = types(&["x", "y"]);
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(q.claim(&both, "a", LONG).await.unwrap().unwrap().task_type);
        }
        assert_eq!(seen.iter().filter(|t| *t == "x").count(), 2, "{seen:?}");
        assert_eq!(seen.iter().filter(|t| *t == "y").count(), 2, "{seen:?}");
    }

    #[tokio::test]
    async fn first_in_first_out_per_type() {
        let Some((q, _keys)) = source().await else { return };
        let ids: Vec<String> = q
            .enqueue(&[new_task("t", 0), new_task("t", 9), new_task("t", 0)])
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        let mut order = Vec::new();
        while let Some(c) = claim(&q, "a").await {
            order.push(c.id);
        }
        assert_eq!(order, ids, "priority does not reorder a stream");
    }

    #[tokio::test]
    async fn retry_with_delay() {
        let Some((q, _keys)) = source().await else { return };
        let id = enqueue_one(&q, new_task("t", 0)).await;
        let c = claim(&q, "a").await.unwrap();
        let record = Record {
            stderr_tail: "boom".to_string(),
            class: Some("retriable_failure".to_string()),
            duration_ms: 5,
        };
        let outcome = Outcome::Retry {
            error: "timeout".to_string(),
            delay: Duration::from_millis(50),
        };
        q.finish(&c, &outcome, &record).await.unwrap();
        assert!(claim(&q, "a").await.is_none(), "not before the delay");
        assert_eq!(
            q.depth(&[]).await.unwrap(),
            Depth {
                ready: 0,
                delayed: 1,
                running: 0
            }
        );
        let v = q.show(&id).await.unwrap();
        assert_eq!(v.status, Status::Pending);
        assert_eq!(v.error.as_deref(), Some("timeout"));
        assert_eq!(v.class.as_deref(), Some("retriable_failure"));
        assert_eq!(stream_len(&q, "t").await, 0, "the old entry is gone");

        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(
            q.depth(&[]).await.unwrap(),
            Depth {
                ready: 1,
                delayed: 0,
                running: 0
            }
        );
        let again = claim(&q, "b").await.expect("claimable after the delay");
        assert_eq!(again.id, id);
        assert_eq!(again.attempts, 2);
        assert_ne!(again.lease, c.lease);
        assert!(matches!(
            q.finish(&c, &done(), &Record::default()).await,
            Err(SourceError::LeaseLost(_))
        ));
        q.finish(&again, &done(), &Record::default()).await.unwrap();
        let v = q.show(&id).await.unwrap();
        assert_eq!(v.status, Status::Completed);
        assert_eq!(v.attempts, 2);
        assert_eq!(v.error.as_deref(), Some("timeout"), "the last error is kept");
        assert_eq!(v.class, None);
    }

    #[tokio::test]
    async fn an_abandoned_delivery_is_taken_over_after_the_visibility_timeout() {
        let Some((q, _keys)) = source_with(Duration::from_millis(200)).await else {
            return;
        };
        let id = enqueue_one(&q, new_task("t", 0)).await;
        let short = Duration::from_millis(100);
        let a = q.claim(&types(&["t"]), "host-a", short).await.unwrap().unwrap();
        assert_eq!(a.attempts, 1);
        assert!(q.claim(&types(&["t"]), "host-b", short).await.unwrap().is_none());
        assert_eq!(
            q.depth(&[]).await.unwrap(),
            Depth {
                ready: 0,
                delayed: 0,
                running: 1
            }
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(
            q.depth(&[]).await.unwrap(),
            Depth {
                ready: 1,
                delayed: 0,
                running: 0
            },
            "an expired delivery counts as ready"
        );
        let b = q
            .claim(&types(&["t"]), "host-b", LONG)
            .await
            .unwrap()
            .expect("taken over");
        assert_eq!(b.id, id);
        assert_eq!(b.attempts, 2);
        assert_eq!(q.show(&id).await.unwrap().lease_owner.as_deref(), Some("host-b"));
        assert!(matches!(
            q.finish(&a, &done(), &Record::default()).await,
            Err(SourceError::LeaseLost(ref i)) if *i == id
        ));
        assert!(matches!(q.release(&a).await, Err(SourceError::LeaseLost(_))));
        assert_eq!(
            q.show(&id).await.unwrap().status,
            Status::Running,
            "A's late outcome changed nothing"
        );
        let outcome = Outcome::Completed {
            result: json!({"by": "b"}),
        };
        q.finish(&b, &outcome, &Record::default()).await.unwrap();
        let v = q.show(&id).await.unwrap();
        assert_eq!(v.result, Some(json!({"by": "b"})));
        assert_eq!(v.attempts, 2);
        assert_eq!(stream_len(&q, "t").await, 0);
        assert_eq!(pending_count(&q, "t").await, 0);
    }

    #[tokio::test]
    async fn a_live_lease_outlasts_the_visibility_timeout_and_extend_renews_it() {
        let Some((q, _keys)) = source_with(Duration::from_millis(100)).await else {
            return;
        };
        let id = enqueue_one(&q, new_task("t", 0)).await;
        let a = q
            .claim(&types(&["t"]), "host-a", Duration::from_millis(400))
            .await
            .unwrap()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(
            q.claim(&types(&["t"]), "host-b", LONG).await.unwrap().is_none(),
            "idle past the visibility timeout, but the lease still runs"
        );
        q.extend(&a, Duration::from_millis(400)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(
            q.claim(&types(&["t"]), "host-b", LONG).await.unwrap().is_none(),
            "extended"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        let b = q
            .claim(&types(&["t"]), "host-b", LONG)
            .await
            .unwrap()
            .expect("expired");
        assert_eq!((b.id.as_str(), b.attempts), (id.as_str(), 2));
        assert!(matches!(q.extend(&a, LONG).await, Err(SourceError::LeaseLost(_))));
        q.extend(&b, LONG).await.unwrap();
    }

    #[tokio::test]
    async fn progress_goes_into_the_hash_of_the_running_delivery_only() {
        let Some((q, _cleanup)) = source().await else {
            return;
        };
        let id = enqueue_one(&q, new_task("t", 0)).await;
        let c = claim(&q, "a").await.unwrap();
        q.progress(&c, 35, Some("page 2")).await.unwrap();
        let field = |name: &'static str| {
            let key = q.task_key(&id);
            async move { raw::<Option<String>>(redis::cmd("HGET").arg(key).arg(name)).await }
        };
        assert_eq!(field("progress").await.as_deref(), Some("35"));
        let v = q.show(&id).await.unwrap();
        assert_eq!(
            (v.progress, v.progress_message.as_deref()),
            (Some(35), Some("page 2"))
        );
        // Without the token (the dispatcher's stderr hook), the attempt names the delivery.
        let hook = Claimed {
            lease: String::new(),
            ..c.clone()
        };
        q.progress(&hook, 60, None).await.unwrap();
        assert_eq!(field("progress_message").await, None);
        let wrong_attempt = Claimed {
            attempts: 7,
            ..hook.clone()
        };
        for stale in [
            &wrong_attempt,
            &Claimed {
                lease: "other".into(),
                ..c.clone()
            },
        ] {
            assert!(matches!(
                q.progress(stale, 1, None).await,
                Err(SourceError::LeaseLost(_))
            ));
        }
        let retry = Outcome::Retry {
            error: "again".into(),
            delay: Duration::ZERO,
        };
        q.finish(&c, &retry, &Record::default()).await.unwrap();
        assert!(matches!(
            q.progress(&hook, 99, None).await,
            Err(SourceError::LeaseLost(_))
        ));
        assert_eq!(
            q.show(&id).await.unwrap().progress,
            Some(60),
            "the last report stays"
        );
        let again = claim(&q, "b").await.unwrap();
        assert_eq!(again.attempts, 2);
        assert_eq!(
            q.show(&id).await.unwrap().progress,
            None,
            "a new delivery starts with none"
        );
        q.finish(&again, &done(), &Record::default()).await.unwrap();
    }

    #[tokio::test]
    async fn release_makes_the_task_claimable_at_once() {
        let Some((q, _keys)) = source().await else { return };
        let id = enqueue_one(&q, new_task("t", 0)).await;
        let c = claim(&q, "a").await.unwrap();
        q.release(&c).await.unwrap();
        q.release(&c).await.unwrap(); // repeated: nothing changes
        let v = q.show(&id).await.unwrap();
        assert_eq!(v.status, Status::Pending);
        assert_eq!(v.attempts, 0, "a release does not count as a delivery");
        assert_eq!(v.lease_owner, None);
        assert_eq!(
            stream_len(&q, "t").await,
            1,
            "one fresh entry, the old one deleted"
        );
        assert_eq!(pending_count(&q, "t").await, 0);
        let again = claim(&q, "b").await.expect("claimable at once");
        assert_eq!(again.id, id);
        assert_eq!(again.attempts, 1);
        assert!(matches!(q.release(&c).await, Err(SourceError::LeaseLost(_))));
        assert!(matches!(
            q.finish(&c, &done(), &Record::default()).await,
            Err(SourceError::LeaseLost(_))
        ));
        q.finish(&again, &done(), &Record::default()).await.unwrap();
    }

    #[tokio::test]
    async fn dead_tasks_are_copied_to_the_dead_stream() {
        let Some((q, _keys)) = source().await else { return };
        let id = enqueue_one(&q, new_task("t", 0)).await;
        let c = claim(&q, "a").await.unwrap();
        let outcome = Outcome::Dead {
            error: "delivered 4 times".to_string(),
        };
        q.finish(&c, &outcome, &Record::default()).await.unwrap();
        let v = q.show(&id).await.unwrap();
        assert_eq!(v.status, Status::Dead);
        assert_eq!(v.error.as_deref(), Some("delivered 4 times"));
        let dead: Vec<(String, Vec<String>)> = raw(redis::cmd("XRANGE")
            .arg(format!("{}:dead", q.prefix))
            .arg("-")
            .arg("+"))
        .await;
        assert_eq!(dead.len(), 1);
        let fields: HashMap<String, String> = dead[0]
            .1
            .chunks(2)
            .map(|kv| (kv[0].clone(), kv[1].clone()))
            .collect();
        assert_eq!(fields.get("id"), Some(&id));
        assert_eq!(fields.get("type").map(String::as_str), Some("t"));
        assert_eq!(fields.get("error").map(String::as_str), Some("delivered 4 times"));
        assert_eq!(stream_len(&q, "t").await, 0);
        assert!(claim(&q, "a").await.is_none());
    }

    #[tokio::test]
    async fn failed_is_terminal_and_long_stderr_keeps_its_tail() {
        let Some((q, _keys)) = source().await else { return };
        let id = enqueue_one(&q, new_task("t", 0)).await;
        let c = claim(&q, "a").await.unwrap();
        let record = Record {
            stderr_tail: format!("{}end", "é".repeat(40_000)),
            class: Some("failure".to_string()),
            duration_ms: 3,
        };
        q.finish(&c, &Outcome::Failed { error: "bad".into() }, &record)
            .await
            .unwrap();
        let v = q.show(&id).await.unwrap();
        assert_eq!(v.status, Status::Failed);
        let kept = v.stderr_tail.unwrap();
        assert!(kept.len() <= STDERR_TAIL_MAX && kept.len() > STDERR_TAIL_MAX - 4);
        assert!(kept.ends_with("end"));
        assert!(claim(&q, "a").await.is_none());
    }

    #[tokio::test]
    async fn deleted_and_unreadable_tasks_do_not_block_the_stream() {
        let Some((q, _keys)) = source().await else { return };
        let gone = enqueue_one(&q, new_task("t", 0)).await;
        let bad = enqueue_one(&q, new_task("t", 0)).await;
        let good = enqueue_one(&q, new_task("t", 0)).await;
        raw::<i64>(redis::cmd("DEL").arg(q.task_key(&gone))).await;
        raw::<i64>(
            redis::cmd("HSET")
                .arg(q.task_key(&bad))
                .arg("params")
                .arg("not json"),
        )
        .await;

        let claimed = q.claim(&types(&["t"]), "a", LONG).await;
        assert!(
            matches!(claimed, Err(SourceError::Invalid(ref m)) if m.contains(&bad) && m.contains("marked failed")),
            "{claimed:?}"
        );
        let failed: String = raw(redis::cmd("HGET").arg(q.task_key(&bad)).arg("status")).await;
        assert_eq!(failed, "failed");
        assert_eq!(claim(&q, "a").await.unwrap().id, good);
        assert_eq!(stream_len(&q, "t").await, 1, "only the good task's entry is left");
        assert!(matches!(q.show(&gone).await, Err(SourceError::NotFound(ref i)) if *i == gone));
    }

    #[tokio::test]
    async fn retry_of_failed_and_dead_tasks_only() {
        let Some((q, _keys)) = source().await else { return };
        let ids = q
            .enqueue(&[new_task("t", 0), new_task("t", 0), new_task("t", 0)])
            .await
            .unwrap();
        let c = claim(&q, "a").await.unwrap();
        let record = Record {
            stderr_tail: "oops".to_string(),
            class: Some("failure".to_string()),
            duration_ms: 2,
        };
        q.finish(&c, &Outcome::Failed { error: "bad".into() }, &record)
            .await
            .unwrap();
        let c = claim(&q, "a").await.unwrap();
        q.finish(&c, &Outcome::Dead { error: "dies".into() }, &Record::default())
            .await
            .unwrap();

        q.retry(&ids[0].id).await.unwrap();
        let v = q.show(&ids[0].id).await.unwrap();
        assert_eq!(v.status, Status::Pending);
        assert_eq!(v.attempts, 0);
        assert_eq!(v.result, None);
        assert_eq!(v.error.as_deref(), Some("bad"), "the last error is kept");
        q.retry(&ids[1].id).await.unwrap();
        assert_eq!(q.show(&ids[1].id).await.unwrap().status, Status::Pending);

        // Back at the end of the stream: the never-claimed task comes first.
        let next = claim(&q, "a").await.unwrap();
        assert_eq!(next.id, ids[2].id);
        let again = claim(&q, "a").await.unwrap();
        assert_eq!(again.id, ids[0].id);
        assert_eq!(again.attempts, 1);

        for (id, status) in [(&ids[1].id, "pending"), (&ids[0].id, "running")] {
            let refused = q.retry(id).await;
            assert!(
                matches!(refused, Err(SourceError::Invalid(ref m)) if m.contains(status)),
                "{refused:?}"
            );
        }
        q.finish(&again, &done(), &Record::default()).await.unwrap();
        let refused = q.retry(&ids[0].id).await;
        assert!(
            matches!(refused, Err(SourceError::Invalid(ref m)) if m.contains("completed")),
            "{refused:?}"
        );
        assert!(matches!(q.retry("nope").await, Err(SourceError::NotFound(_))));
    }

    #[tokio::test]
    async fn list_and_show() {
        let Some((q, _keys)) = source().await else { return };
        let a = enqueue_one(&q, new_task("a", 0)).await;
        let batch = q.enqueue(&[new_task("b", 0), new_task("b", 0)]).await.unwrap();
        let all: Vec<String> = q
            .list(&ListFilter::default())
            .await
            .unwrap()
            .into_iter()
            .map(|v| v.id)
            .collect();
        assert_eq!(
            all,
            vec![batch[1].id.clone(), batch[0].id.clone(), a.clone()],
            "newest first"
        );

        let c = q.claim(&types(&["a"]), "h", LONG).await.unwrap().unwrap();
        q.finish(&c, &done(), &Record::default()).await.unwrap();
        let completed = ListFilter {
            status: Some(Status::Completed),
            ..ListFilter::default()
        };
        let listed = q.list(&completed).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, a);
        assert_eq!(listed[0].result, Some(json!({"ok": true})));
        let of_b = ListFilter {
            task_type: Some("b".to_string()),
            ..ListFilter::default()
        };
        assert_eq!(q.list(&of_b).await.unwrap().len(), 2);
        let none = ListFilter {
            status: Some(Status::Pending),
            task_type: Some("a".to_string()),
            limit: 0,
        };
        assert!(q.list(&none).await.unwrap().is_empty());
        let one = ListFilter {
            limit: 1,
            ..ListFilter::default()
        };
        assert_eq!(q.list(&one).await.unwrap().len(), 1);

        let many: Vec<NewTask> = (0..450).map(|_| new_task("c", 0)).collect();
        q.enqueue(&many).await.unwrap();
        assert_eq!(
            q.list(&ListFilter::default()).await.unwrap().len(),
            DEFAULT_LIST_LIMIT
        );
        let lots = ListFilter {
            limit: 1000,
            ..ListFilter::default()
        };
        assert_eq!(q.list(&lots).await.unwrap().len(), 453, "across pages");
        let oldest_b = ListFilter {
            task_type: Some("b".to_string()),
            limit: 1,
            ..ListFilter::default()
        };
        assert_eq!(
            q.list(&oldest_b).await.unwrap()[0].id,
            batch[1].id,
            "found past the first page"
        );

        assert!(matches!(q.show("missing").await, Err(SourceError::NotFound(ref id)) if id == "missing"));
        raw::<i64>(redis::cmd("HSET").arg(q.task_key(&a)).arg("status").arg("weird")).await;
        assert!(matches!(q.show(&a).await, Err(SourceError::Invalid(ref m)) if m.contains("weird")));
    }

    #[tokio::test]
    async fn depth_counts() {
        let Some((q, _keys)) = source().await else { return };
        assert_eq!(q.depth(&[]).await.unwrap(), Depth::default());
        q.enqueue(&[
            new_task("t", 0),
            new_task("t", 0),
            new_task("t", 0),
            new_task("t", 0),
        ])
        .await
        .unwrap();
        assert_eq!(
            q.depth(&[]).await.unwrap(),
            Depth {
                ready: 4,
                delayed: 0,
                running: 0
            }
        );
        let running = claim(&q, "a").await.unwrap();
        let delayed = claim(&q, "a").await.unwrap();
        let retry = Outcome::Retry {
            error: "later".to_string(),
            delay: Duration::from_secs(3600),
        };
        q.finish(&delayed, &retry, &Record::default()).await.unwrap();
        assert_eq!(
            q.depth(&[]).await.unwrap(),
            Depth {
                ready: 2,
                delayed: 1,
                running: 1
            }
        );
        q.finish(&running, &done(), &Record::default()).await.unwrap();
        let ready = |n| Depth {
            ready: n,
            delayed: 1,
            running: 0,
        };
        assert_eq!(q.depth(&[]).await.unwrap(), ready(2));

        q.enqueue(&[new_task("other", 0)]).await.unwrap();
        assert_eq!(q.depth(&[]).await.unwrap(), ready(3));
        assert_eq!(q.depth(&types(&["t"])).await.unwrap(), ready(2));
        assert_eq!(q.depth(&types(&["t", "other"])).await.unwrap(), ready(3));
        assert_eq!(
            q.depth(&types(&["other"])).await.unwrap(),
            Depth {
                ready: 1,
                delayed: 0,
                running: 0
            }
        );
        assert_eq!(q.depth(&types(&["nothing"])).await.unwrap(), Depth::default());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn exactly_once_across_connections() {
        let Some((first, _keys)) = source().await else {
            return;
        };
        let prefix = first.prefix().to_string();
        let mut sources = vec![Arc::new(first)];
        for _ in 0..2 {
            let q = RedisSource::connect(URL, &prefix, LONG, Duration::from_secs(5))
                .await
                .unwrap();
            sources.push(Arc::new(q));
        }
        let tasks: Vec<NewTask> = (0..300).map(|i| new_task("t", i % 3)).collect();
        sources[0].enqueue(&tasks).await.unwrap();
        let mut handles = Vec::new();
        for (i, q) in sources.iter().enumerate() {
            // Two claim loops per connection, as a host with spare slots would run.
            for j in 0..2 {
                let q = Arc::clone(q);
                let owner = format!("host-{i}");
                handles.push(tokio::spawn(async move {
                    let mut claimed = Vec::new();
                    while let Some(c) = q.claim(&types(&["t"]), &owner, LONG).await.expect("claim") {
                        let outcome = Outcome::Completed {
                            result: json!({"by": owner, "loop": j}),
                        };
                        q.finish(&c, &outcome, &Record::default()).await.expect("finish");
                        claimed.push(c.id);
                    }
                    claimed
                }));
            }
        }
        let mut claims = Vec::new();
        for h in handles {
            claims.push(h.await.unwrap());
        }
        let per_loop: Vec<usize> = claims.iter().map(Vec::len).collect();
        let total: usize = per_loop.iter().sum();
        assert_eq!(total, 300, "claims per loop: {per_loop:?}");
        let distinct: HashSet<&String> = claims.iter().flatten().collect();
        assert_eq!(distinct.len(), 300, "no task claimed twice");
        let all = sources[2]
            .list(&ListFilter {
                limit: 1000,
                ..ListFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(all.len(), 300);
        for v in &all {
            assert_eq!(v.status, Status::Completed, "{}", v.id);
            assert_eq!(v.attempts, 1, "{}", v.id);
            assert!(distinct.contains(&v.id));
        }
        assert_eq!(sources[1].depth(&[]).await.unwrap(), Depth::default());
        assert_eq!(stream_len(&sources[0], "t").await, 0);
    }

    #[tokio::test]
    async fn unreachable_servers_are_unavailable_and_passwords_are_never_shown() {
        let refused = RedisSource::connect(
            "redis://someone:s3cret-pw@127.0.0.1:1/0",
            "wh",
            LONG,
            Duration::from_secs(2),
        )
        .await;
        let Err(SourceError::Unavailable(message)) = refused else {
            panic!("{refused:?}")
        };
        assert!(!message.contains("s3cret-pw"), "{message}");
        assert!(message.contains("redis://127.0.0.1:1/0"), "{message}");

        let bad = RedisSource::connect("http://:pw-xyz@host/", "wh", LONG, Duration::from_secs(2)).await;
        let Err(SourceError::Unavailable(message)) = bad else {
            panic!("{bad:?}")
        };
        assert!(!message.contains("pw-xyz"), "{message}");

        assert_eq!(
            redact("rediss://u:p%40ss@h:6380/1?x=1"),
            (
                "rediss://h:6380/1?x=1".to_string(),
                vec!["u:p%40ss".to_string(), "p%40ss".to_string()]
            )
        );
        assert_eq!(redact("redis://h"), ("redis://h".to_string(), Vec::new()));
        assert_eq!(
            scrub("a u:pw b pw".to_string(), &redact("redis://u:pw@h").1),
            "a *** b ***"
        );
    }

    #[tokio::test]
    async fn tls_against_a_plain_server_is_unavailable() {
        if source().await.is_none() {
            return;
        }
        let tls = RedisSource::connect(
            "rediss://:pw-tls@127.0.0.1:6379",
            "wh",
            LONG,
            Duration::from_secs(2),
        )
        .await;
        let Err(SourceError::Unavailable(message)) = tls else {
            panic!("{tls:?}")
        };
        assert!(!message.contains("pw-tls"), "{message}");
    }

    #[tokio::test]
    async fn a_broken_connection_is_reopened() {
        let Some((q, _keys)) = source().await else { return };
        let id: i64 = q.query(&redis::cmd("CLIENT").arg("ID").to_owned()).await.unwrap();
        raw::<i64>(redis::cmd("CLIENT").arg("KILL").arg("ID").arg(id)).await;
        // The first call may see the dropped connection; the next one reconnects.
        let first = q.health().await;
        if let Err(e) = &first {
            assert!(matches!(e, SourceError::Unavailable(_)), "{e:?}");
        }
        q.health().await.unwrap();
        enqueue_one(&q, new_task("t", 0)).await;
        assert!(claim(&q, "a").await.is_some());
    }
}
