//! The embedded durable task queue: one SQLite file, shared safely by several `wh host`
//! processes (each with its own connection).
//!
//! Every write (claim, finish, release, extend, progress, enqueue, retry) runs in a
//! `BEGIN IMMEDIATE` transaction, which takes SQLite's single write lock up front: a claim's
//! select and update are atomic across processes, so two hosts never lease the same task at
//! once. Waiting for the lock is bounded by a 5 s busy timeout.
//!
//! rusqlite is synchronous, so each call runs on tokio's blocking pool behind a mutex; the
//! async caller never blocks.
//!
//! Times are unix seconds as `REAL`. Ties in priority and creation time (tasks enqueued in
//! one batch share a timestamp) are broken by insertion order (SQLite's `rowid`), not by the
//! random id, so a batch is claimed first in, first out and listed newest first.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::types::{FromSql, Value as SqlValue};
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params, params_from_iter};
use serde_json::{Map, Value};

use super::tail;
use super::{
    Claimed, Depth, Enqueued, ListFilter, NewTask, Outcome, Record, SourceError, Status, TaskSource, TaskView,
};

/// The schema this code writes. A file with a newer version is refused; an older one is
/// migrated when it is opened (see [`MIGRATIONS`]).
const SCHEMA_VERSION: i64 = 2;
const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);
/// The most of a worker's stderr kept per task (its end).
const STDERR_TAIL_MAX: usize = 64 * 1024;
const TYPE_MAX_CHARS: usize = 255;
const DEFAULT_LIST_LIMIT: usize = 100;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY NOT NULL,
    value NOT NULL
);
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY NOT NULL,
    type TEXT NOT NULL,
    params TEXT NOT NULL,
    priority INTEGER NOT NULL,
    dedupe_key TEXT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    available_at REAL NOT NULL,
    lease_owner TEXT NULL,
    lease_token TEXT NULL,
    lease_until REAL NULL,
    result TEXT NULL,
    error TEXT NULL,
    class TEXT NULL,
    stderr_tail TEXT NULL,
    duration_ms INTEGER NULL,
    completed_at REAL NULL,
    progress INTEGER NULL,
    progress_message TEXT NULL
);
CREATE INDEX IF NOT EXISTS tasks_claim ON tasks (status, type, priority DESC, created_at);
CREATE UNIQUE INDEX IF NOT EXISTS tasks_dedupe_key ON tasks (dedupe_key);
-- Scanned backwards for `list`: (created_at DESC, rowid DESC) without a sort.
CREATE INDEX IF NOT EXISTS tasks_created ON tasks (created_at);
";

/// Each step from schema version `n` (the index + 1) to `n + 1`, run in the transaction that
/// opens the file. `SCHEMA` already has what they add, for a new file.
const MIGRATIONS: &[&str] = &[
    // 1 -> 2: the last progress a worker reported (docs/protocol.md, section 9).
    "ALTER TABLE tasks ADD COLUMN progress INTEGER NULL;
     ALTER TABLE tasks ADD COLUMN progress_message TEXT NULL;",
];

/// The columns a `TaskView` is read from, in `view_from_row`'s order.
const VIEW_COLUMNS: &str = "id, type, status, priority, attempts, params, dedupe_key, created_at, updated_at, \
                            result, error, class, stderr_tail, lease_owner, progress, progress_message";

/// A lease that ran out: its host died (or stalled) and the task may be claimed again. A
/// running row without a lease (never written by this code) counts as expired rather than
/// being stuck for ever.
const LEASE_EXPIRED: &str = "IFNULL(lease_until, 0) < ?1";

/// The embedded queue, in one SQLite file.
pub struct LocalQueue {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Mutex<Connection>,
    path: PathBuf,
    /// Outcomes waiting to be written, and whether a writer is at work on them: finishes
    /// that arrive while one transaction commits are written together in the next one.
    finishes: Mutex<Finishes>,
}

#[derive(Default)]
struct Finishes {
    waiting: Vec<PendingFinish>,
    writing: bool,
}

/// One outcome to record: the id, the UPDATE's arguments, and who waits for the verdict.
struct PendingFinish {
    id: String,
    args: Vec<SqlValue>,
    done: tokio::sync::oneshot::Sender<Result<(), SourceError>>,
}

/// The UPDATE that records an outcome; ?1 is the id and ?2 the lease token.
const FINISH_SQL: &str = "UPDATE tasks SET status = ?3, available_at = IFNULL(?4, available_at), result = ?5,
         error = IFNULL(?6, error), class = ?7, stderr_tail = ?8, duration_ms = ?9,
         completed_at = ?10, updated_at = ?11,
         lease_owner = NULL, lease_token = NULL, lease_until = NULL
     WHERE id = ?1 AND status = 'running' AND lease_token = ?2";

/// Why a call inside the blocking closure failed: the database, or a verdict already made.
enum Fail {
    Db(rusqlite::Error),
    Source(SourceError),
}

impl From<rusqlite::Error> for Fail {
    fn from(e: rusqlite::Error) -> Fail {
        Fail::Db(e)
    }
}

impl From<SourceError> for Fail {
    fn from(e: SourceError) -> Fail {
        Fail::Source(e)
    }
}

impl LocalQueue {
    /// Opens the queue at `path`, creating the file and its schema if missing. Fails with
    /// `Unavailable` naming the path when the file cannot be opened, is not a SQLite
    /// database, is some other program's database, or was written by a newer wh.
    pub fn open(path: &Path) -> Result<LocalQueue, SourceError> {
        let conn = open_connection(path).map_err(|why| {
            SourceError::Unavailable(format!("cannot open the local queue {}: {why}", path.display()))
        })?;
        Ok(LocalQueue {
            inner: Arc::new(Inner {
                conn: Mutex::new(conn),
                path: path.to_path_buf(),
                finishes: Mutex::new(Finishes::default()),
            }),
        })
    }

    /// The file this queue lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn run<T, F>(&self, f: F) -> Result<T, SourceError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, Fail> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let joined = tokio::task::spawn_blocking(move || {
            let mut conn = inner.conn.lock().map_err(|_| {
                SourceError::Unavailable(format!(
                    "the local queue {} is unusable: an earlier call panicked while using it",
                    inner.path.display()
                ))
            })?;
            f(&mut conn).map_err(|fail| match fail {
                Fail::Db(e) => SourceError::Unavailable(format!("local queue {}: {e}", inner.path.display())),
                Fail::Source(e) => e,
            })
        })
        .await;
        joined.map_err(|e| {
            SourceError::Unavailable(format!(
                "local queue {}: the call did not finish: {e}",
                self.inner.path.display()
            ))
        })?
    }
}

fn open_connection(path: &Path) -> Result<Connection, String> {
    let mut conn = Connection::open(path).map_err(|e| e.to_string())?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| e.to_string())?;
    // Look before writing anything (switching to WAL writes the header): a file that is not
    // a wh queue is left as it was.
    check_schema(&conn)?;
    // WAL lets readers (list, show, depth) run beside the one writer. `synchronous = NORMAL`
    // in WAL mode syncs at checkpoints, not at every commit: a committed transaction survives
    // a crash of the process (the OS has the data), but a power loss or OS crash can lose the
    // last transactions before the next checkpoint. It never corrupts the file. A lost claim,
    // extend or outcome means a task runs again, which at-least-once delivery already asks
    // every task to tolerate; a lost enqueue or `retry` is the real cost (acknowledged, then
    // gone), accepted to spare an fsync on every claim and finish (FULL).
    // The returned mode is not checked: where WAL is impossible SQLite keeps a rollback
    // journal, which is slower but still atomic across processes.
    let _mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(|e| e.to_string())?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(|e| e.to_string())?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| e.to_string())?;
    // Again under the write lock: another process may have created or migrated the schema
    // meanwhile.
    let found = check_schema(&tx)?;
    tx.execute_batch(SCHEMA).map_err(|e| e.to_string())?;
    if let Some(version) = found {
        migrate(&tx, version)?;
    }
    tx.execute(
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?1)",
        [SCHEMA_VERSION],
    )
    .map_err(|e| e.to_string())?;
    tx.commit().map_err(|e| e.to_string())?;
    Ok(conn)
}

/// Brings a queue at schema `version` up to `SCHEMA_VERSION`, in the caller's transaction.
fn migrate(tx: &Connection, version: i64) -> Result<(), String> {
    if version >= SCHEMA_VERSION {
        return Ok(());
    }
    for (step, sql) in MIGRATIONS.iter().enumerate().skip((version - 1) as usize) {
        tx.execute_batch(sql)
            .map_err(|e| format!("cannot migrate it from schema version {}: {e}", step + 1))?;
    }
    tx.execute(
        "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
        [SCHEMA_VERSION],
    )
    .map_err(|e| e.to_string())?;
    tracing::info!(
        from = version,
        to = SCHEMA_VERSION,
        "migrated the local queue's schema"
    );
    Ok(())
}

/// Whether the database is empty (`None`) or a wh queue this code can use, at which schema
/// version (this one or an older one, to migrate).
fn check_schema(conn: &Connection) -> Result<Option<i64>, String> {
    let tables: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
        )
        .and_then(|mut stmt| stmt.query_map([], |row| row.get(0))?.collect())
        .map_err(|e| e.to_string())?;
    if tables.is_empty() {
        return Ok(None);
    }
    if !tables.iter().any(|t| t == "meta") {
        return Err(format!(
            "it is not a wh queue (it has tables {} but no `meta`)",
            tables.join(", ")
        ));
    }
    let version: Option<SqlValue> = conn
        .query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |row| {
            row.get(0)
        })
        .optional()
        .map_err(|e| format!("it is not a wh queue: {e}"))?;
    match version {
        Some(SqlValue::Integer(v)) if (1..=SCHEMA_VERSION).contains(&v) => Ok(Some(v)),
        Some(SqlValue::Integer(v)) if v > SCHEMA_VERSION => Err(format!(
            "it was written by a newer wh (schema version {v}; this wh knows version {SCHEMA_VERSION})"
        )),
        _ => Err("it is not a wh queue (no valid schema_version in its `meta` table)".to_string()),
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
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

fn parse_params(id: &str, text: &str) -> Result<Map<String, Value>, SourceError> {
    serde_json::from_str(text).map_err(|e| {
        SourceError::Invalid(format!(
            "task `{id}`: its stored params are not a JSON object: {e}"
        ))
    })
}

/// Column `idx` (named `name`) of task `id`'s row; a value of the wrong type is `Invalid`.
fn column<T: FromSql>(row: &Row<'_>, idx: usize, name: &str, id: &str) -> Result<T, Fail> {
    row.get(idx)
        .map_err(|e| Fail::Source(SourceError::Invalid(format!("task `{id}`: column `{name}`: {e}"))))
}

fn row_id(row: &Row<'_>, idx: usize) -> Result<String, Fail> {
    row.get(idx).map_err(|e| {
        Fail::Source(SourceError::Invalid(format!(
            "a task row has no readable id: {e}"
        )))
    })
}

fn attempts_from(id: &str, n: i64) -> Result<u32, Fail> {
    u32::try_from(n).map_err(|_| {
        Fail::Source(SourceError::Invalid(format!(
            "task `{id}`: attempts {n} is out of range"
        )))
    })
}

/// A `TaskView` from a row selected with `VIEW_COLUMNS`.
fn view_from_row(row: &Row<'_>) -> Result<TaskView, Fail> {
    let id = row_id(row, 0)?;
    let status: String = column(row, 2, "status", &id)?;
    let status = parse_status(&status)
        .ok_or_else(|| SourceError::Invalid(format!("task `{id}`: unknown status `{status}`")))?;
    let params: String = column(row, 5, "params", &id)?;
    let result: Option<String> = column(row, 9, "result", &id)?;
    let result = match result {
        Some(text) => Some(serde_json::from_str(&text).map_err(|e| {
            SourceError::Invalid(format!("task `{id}`: its stored result is not valid JSON: {e}"))
        })?),
        None => None,
    };
    Ok(TaskView {
        task_type: column(row, 1, "type", &id)?,
        status,
        priority: column(row, 3, "priority", &id)?,
        attempts: attempts_from(&id, column(row, 4, "attempts", &id)?)?,
        params: parse_params(&id, &params)?,
        dedupe_key: column(row, 6, "dedupe_key", &id)?,
        created_at: column(row, 7, "created_at", &id)?,
        updated_at: column(row, 8, "updated_at", &id)?,
        result,
        error: column(row, 10, "error", &id)?,
        class: column(row, 11, "class", &id)?,
        stderr_tail: column(row, 12, "stderr_tail", &id)?,
        lease_owner: column(row, 13, "lease_owner", &id)?,
        progress: column(row, 14, "progress", &id)?,
        progress_message: column(row, 15, "progress_message", &id)?,
        id,
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

/// `count` numbered placeholders from `?first`: `?2, ?3, ?4`. Values are always bound,
/// never spliced into the SQL.
fn placeholders(count: usize, first: usize) -> String {
    (first..first + count)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The arguments `?1` = now, `?2..` = the types.
fn now_and_types(now: f64, types: &[String]) -> Vec<SqlValue> {
    let mut args = Vec::with_capacity(types.len() + 1);
    args.push(SqlValue::Real(now));
    args.extend(types.iter().map(|t| SqlValue::Text(t.clone())));
    args
}

/// The best claimable task, before it is claimed.
struct Candidate {
    rowid: i64,
    /// `Err(Invalid)` when its row cannot be read; the caller then fails it.
    task: Result<Claimed, Fail>,
}

/// The best claimable tasks of the given types, at most `max`, best first.
fn best_candidates(
    conn: &Connection,
    types: &[String],
    now: f64,
    max: usize,
) -> Result<Vec<Candidate>, Fail> {
    // ?1 is now; ?2 the limit; ?3.. are the types. Each branch takes its own best so the
    // claim index serves it; the outer query picks among the (at most) 2 × limit.
    let in_list = placeholders(types.len(), 3);
    let columns = "rowid AS rid, id, type, params, priority, attempts, created_at";
    let order = "ORDER BY priority DESC, created_at ASC, rid ASC LIMIT ?2";
    let sql = format!(
        "SELECT * FROM (
             SELECT * FROM (SELECT {columns} FROM tasks
                 WHERE status = 'pending' AND type IN ({in_list}) AND available_at <= ?1 {order})
             UNION ALL
             SELECT * FROM (SELECT {columns} FROM tasks
                 WHERE status = 'running' AND type IN ({in_list}) AND {LEASE_EXPIRED} {order})
         ) {order}"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut args = vec![SqlValue::Real(now), SqlValue::Integer(max as i64)];
    args.extend(types.iter().map(|t| SqlValue::Text(t.clone())));
    let mut rows = stmt.query(params_from_iter(args))?;
    let mut found = Vec::new();
    while let Some(row) = rows.next()? {
        let rowid: i64 = row.get(0)?;
        let read = || -> Result<Claimed, Fail> {
            let id = row_id(row, 1)?;
            let params: String = column(row, 3, "params", &id)?;
            let attempts: i64 = column(row, 5, "attempts", &id)?;
            Ok(Claimed {
                task_type: column(row, 2, "type", &id)?,
                params: parse_params(&id, &params)?,
                priority: column(row, 4, "priority", &id)?,
                attempts: attempts_from(&id, attempts.saturating_add(1))?,
                created_at: column(row, 6, "created_at", &id)?,
                lease: String::new(),
                id,
            })
        };
        found.push(Candidate { rowid, task: read() });
    }
    Ok(found)
}

/// Changes a row still leased with `task`'s token; `LeaseLost` (and nothing changed) when the
/// lease was lost. `sql` must use ?1 for the id and ?2 for the token.
fn update_leased(conn: &mut Connection, task_id: &str, sql: &str, args: &[SqlValue]) -> Result<(), Fail> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let changed = tx.prepare_cached(sql)?.execute(params_from_iter(args))?;
    if changed == 0 {
        // Dropping the transaction rolls it back (it changed nothing anyway).
        return Err(SourceError::LeaseLost(task_id.to_string()).into());
    }
    tx.commit()?;
    Ok(())
}

/// Writes waiting outcomes, all those waiting at once in one transaction, until none is
/// left (group commit: under load one commit serves many tasks). Each waiter learns its own
/// verdict: `LeaseLost` when its row was no longer leased to it.
fn write_finishes(inner: &Inner) {
    loop {
        let batch = {
            let mut finishes = inner.finishes.lock().expect("no panics under the finishes lock");
            if finishes.waiting.is_empty() {
                finishes.writing = false;
                return;
            }
            std::mem::take(&mut finishes.waiting)
        };
        let unavailable = |e: &dyn std::fmt::Display| {
            SourceError::Unavailable(format!("local queue {}: {e}", inner.path.display()))
        };
        let Ok(mut conn) = inner.conn.lock() else {
            for p in batch {
                let _ = p
                    .done
                    .send(Err(unavailable(&"an earlier call panicked while using it")));
            }
            continue;
        };
        let written = (|| -> Result<Vec<usize>, rusqlite::Error> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut changed = Vec::with_capacity(batch.len());
            {
                let mut stmt = tx.prepare_cached(FINISH_SQL)?;
                for p in &batch {
                    changed.push(stmt.execute(params_from_iter(&p.args))?);
                }
            }
            tx.commit()?;
            Ok(changed)
        })();
        drop(conn);
        match written {
            Ok(changed) => {
                for (p, n) in batch.into_iter().zip(changed) {
                    let verdict = if n == 0 {
                        Err(SourceError::LeaseLost(p.id))
                    } else {
                        Ok(())
                    };
                    let _ = p.done.send(verdict);
                }
            }
            Err(e) => {
                // Nothing of the batch was written: each waiter retries its own outcome.
                for p in batch {
                    let _ = p.done.send(Err(unavailable(&e)));
                }
            }
        }
    }
}

fn text(s: &str) -> SqlValue {
    SqlValue::Text(s.to_string())
}

fn opt_text(s: Option<&str>) -> SqlValue {
    s.map_or(SqlValue::Null, text)
}

fn count(what: &str, n: i64) -> Result<u64, Fail> {
    u64::try_from(n)
        .map_err(|_| Fail::Source(SourceError::Invalid(format!("depth: negative {what} count {n}"))))
}

#[async_trait]
impl TaskSource for LocalQueue {
    async fn claim(
        &self,
        types: &[String],
        owner: &str,
        lease: Duration,
    ) -> Result<Option<Claimed>, SourceError> {
        Ok(self.claim_batch(types, owner, lease, 1).await?.pop())
    }

    async fn claim_batch(
        &self,
        types: &[String],
        owner: &str,
        lease: Duration,
        max: usize,
    ) -> Result<Vec<Claimed>, SourceError> {
        if types.is_empty() || max == 0 {
            return Ok(Vec::new());
        }
        let types = types.to_vec();
        let owner = owner.to_string();
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = now();
            let mut batch = Vec::new();
            for Candidate { rowid, task } in best_candidates(&tx, &types, now, max)? {
                let mut claimed = match task {
                    Ok(claimed) => claimed,
                    Err(Fail::Source(SourceError::Invalid(why))) => {
                        // A row this code cannot read (edited by hand?) would be the best
                        // candidate for ever and block its type: fail it, and say so.
                        tx.prepare_cached(
                            "UPDATE tasks SET status = 'failed', error = ?2, updated_at = ?3, completed_at = ?3,
                                 lease_owner = NULL, lease_token = NULL, lease_until = NULL
                             WHERE rowid = ?1",
                        )?
                        .execute(params![rowid, format!("unreadable task, failed at claim: {why}"), now])?;
                        if batch.is_empty() {
                            tx.commit()?;
                            return Err(SourceError::Invalid(format!(
                                "{why} (the task is now marked failed)"
                            ))
                            .into());
                        }
                        tracing::warn!(error = %why, "an unreadable task was marked failed at claim");
                        continue;
                    }
                    Err(other) => return Err(other),
                };
                claimed.lease = uuid::Uuid::new_v4().to_string();
                tx.prepare_cached(
                    "UPDATE tasks SET status = 'running', attempts = attempts + 1, lease_owner = ?2,
                         lease_token = ?3, lease_until = ?4, updated_at = ?5,
                         progress = NULL, progress_message = NULL
                     WHERE rowid = ?1",
                )?
                .execute(params![rowid, owner, claimed.lease, now + lease.as_secs_f64(), now])?;
                batch.push(claimed);
            }
            tx.commit()?;
            Ok(batch)
        })
        .await
    }

    async fn finish(&self, task: &Claimed, outcome: &Outcome, record: &Record) -> Result<(), SourceError> {
        let id = task.id.clone();
        let token = task.lease.clone();
        let stderr_tail = tail(&record.stderr_tail, STDERR_TAIL_MAX).to_string();
        let class = record.class.clone();
        let duration_ms = i64::try_from(record.duration_ms).unwrap_or(i64::MAX);
        let now = now();
        // (status, available_at, result, error, terminal)
        let (status, available_at, result, error, terminal) = match outcome {
            Outcome::Completed { result } => {
                let json = serde_json::to_string(result).map_err(|e| {
                    SourceError::Invalid(format!("task `{id}`: the result cannot be stored: {e}"))
                })?;
                (Status::Completed, None, Some(json), None, true)
            }
            Outcome::Retry { error, delay } => (
                Status::Pending,
                Some(now + delay.as_secs_f64()),
                None,
                Some(error.as_str()),
                false,
            ),
            Outcome::Failed { error } => (Status::Failed, None, None, Some(error.as_str()), true),
            Outcome::Dead { error } => (Status::Dead, None, None, Some(error.as_str()), true),
        };
        // `error` is the last error seen: a completed task that was retried before keeps
        // the error of its last failed delivery. `class`, `stderr_tail` and `duration_ms`
        // are this delivery's. Failed and dead are terminal too: they get `completed_at`.
        let args = vec![
            text(&id),
            text(&token),
            text(status.as_str()),
            available_at.map_or(SqlValue::Null, SqlValue::Real),
            result.map_or(SqlValue::Null, SqlValue::Text),
            opt_text(error),
            opt_text(class.as_deref()),
            text(&stderr_tail),
            SqlValue::Integer(duration_ms),
            if terminal {
                SqlValue::Real(now)
            } else {
                SqlValue::Null
            },
            SqlValue::Real(now),
        ];
        let (done, verdict) = tokio::sync::oneshot::channel();
        let start_writer = {
            let mut finishes = self
                .inner
                .finishes
                .lock()
                .expect("no panics under the finishes lock");
            finishes.waiting.push(PendingFinish { id, args, done });
            !std::mem::replace(&mut finishes.writing, true)
        };
        if start_writer {
            let inner = Arc::clone(&self.inner);
            tokio::task::spawn_blocking(move || write_finishes(&inner));
        }
        verdict.await.unwrap_or_else(|_| {
            Err(SourceError::Unavailable(format!(
                "local queue {}: the outcome writer stopped",
                self.inner.path.display()
            )))
        })
    }

    async fn release(&self, task: &Claimed) -> Result<(), SourceError> {
        let id = task.id.clone();
        let token = task.lease.clone();
        self.run(move |conn| {
            let now = now();
            let args = [text(&id), text(&token), SqlValue::Real(now)];
            // A clean release gives the delivery back: it does not count against the task's
            // retries. (A hard kill still counts: its lease just expires.)
            update_leased(
                conn,
                &id,
                "UPDATE tasks SET status = 'pending', available_at = ?3, updated_at = ?3,
                     attempts = MAX(attempts - 1, 0),
                     lease_owner = NULL, lease_token = NULL, lease_until = NULL
                 WHERE id = ?1 AND status = 'running' AND lease_token = ?2",
                &args,
            )
        })
        .await
    }

    async fn extend(&self, task: &Claimed, lease: Duration) -> Result<(), SourceError> {
        let id = task.id.clone();
        let token = task.lease.clone();
        self.run(move |conn| {
            let now = now();
            let args = [
                text(&id),
                text(&token),
                SqlValue::Real(now + lease.as_secs_f64()),
                SqlValue::Real(now),
            ];
            update_leased(
                conn,
                &id,
                "UPDATE tasks SET lease_until = ?3, updated_at = ?4
                 WHERE id = ?1 AND status = 'running' AND lease_token = ?2",
                &args,
            )
        })
        .await
    }

    /// Kept in the row (`progress`, `progress_message`) while the delivery is running; the
    /// next claim clears them. With an empty `task.lease` the delivery is the one whose
    /// `attempts` match.
    async fn progress(&self, task: &Claimed, percent: u8, message: Option<&str>) -> Result<(), SourceError> {
        let id = task.id.clone();
        let token = task.lease.clone();
        let attempts = i64::from(task.attempts);
        let message = message.map(str::to_string);
        self.run(move |conn| {
            let args = [
                text(&id),
                text(&token),
                SqlValue::Integer(attempts),
                SqlValue::Integer(i64::from(percent.min(100))),
                opt_text(message.as_deref()),
                SqlValue::Real(now()),
            ];
            update_leased(
                conn,
                &id,
                "UPDATE tasks SET progress = ?4, progress_message = ?5, updated_at = ?6
                 WHERE id = ?1 AND status = 'running' AND attempts = ?3
                     AND (?2 = '' OR lease_token = ?2)",
                &args,
            )
        })
        .await
    }

    async fn health(&self) -> Result<(), SourceError> {
        self.run(|conn| {
            conn.query_row("SELECT 1", [], |row| row.get::<_, i64>(0))?;
            Ok(())
        })
        .await
    }

    async fn depth(&self, types: &[String]) -> Result<Depth, SourceError> {
        let types = types.to_vec();
        self.run(move |conn| {
            // ?1 is now; ?2.. are the types, if any (none: all types).
            let of_types = if types.is_empty() {
                String::new()
            } else {
                format!(" AND type IN ({})", placeholders(types.len(), 2))
            };
            let sql = format!(
                "SELECT
                     IFNULL(SUM((status = 'pending' AND available_at <= ?1)
                                OR (status = 'running' AND {LEASE_EXPIRED})), 0),
                     IFNULL(SUM(status = 'pending' AND available_at > ?1), 0),
                     IFNULL(SUM(status = 'running' AND NOT ({LEASE_EXPIRED})), 0)
                 FROM tasks WHERE status IN ('pending', 'running'){of_types}"
            );
            let (ready, delayed, running): (i64, i64, i64) =
                conn.query_row(&sql, params_from_iter(now_and_types(now(), &types)), |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })?;
            Ok(Depth {
                ready: count("ready", ready)?,
                delayed: count("delayed", delayed)?,
                running: count("running", running)?,
            })
        })
        .await
    }

    async fn enqueue(&self, tasks: &[NewTask]) -> Result<Vec<Enqueued>, SourceError> {
        for task in tasks {
            validate(task)?;
        }
        let tasks = tasks.to_vec();
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = now();
            let mut out = Vec::with_capacity(tasks.len());
            {
                let mut find = tx.prepare("SELECT id FROM tasks WHERE dedupe_key = ?1")?;
                let mut insert = tx.prepare(
                    "INSERT INTO tasks (id, type, params, priority, dedupe_key, status, attempts,
                         created_at, updated_at, available_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6, ?6, ?6)",
                )?;
                for task in &tasks {
                    if let Some(key) = &task.dedupe_key {
                        // Any status: a finished task with the key still wins. Inserts earlier
                        // in this batch are visible here, so the batch dedupes against itself.
                        let existing: Option<String> = find.query_row([key], |row| row.get(0)).optional()?;
                        if let Some(id) = existing {
                            out.push(Enqueued {
                                id,
                                deduplicated: true,
                            });
                            continue;
                        }
                    }
                    let id = uuid::Uuid::new_v4().to_string();
                    let params = serde_json::to_string(&task.params).map_err(|e| {
                        SourceError::Invalid(format!("task of type `{}`: params: {e}", task.task_type))
                    })?;
                    insert.execute(params![
                        id,
                        task.task_type,
                        params,
                        task.priority,
                        task.dedupe_key,
                        now
                    ])?;
                    out.push(Enqueued {
                        id,
                        deduplicated: false,
                    });
                }
            }
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<TaskView>, SourceError> {
        let filter = filter.clone();
        self.run(move |conn| {
            let mut sql = format!("SELECT {VIEW_COLUMNS} FROM tasks WHERE 1 = 1");
            let mut args: Vec<SqlValue> = Vec::new();
            if let Some(status) = filter.status {
                sql.push_str(" AND status = ?");
                args.push(text(status.as_str()));
            }
            if let Some(task_type) = &filter.task_type {
                sql.push_str(" AND type = ?");
                args.push(text(task_type));
            }
            sql.push_str(" ORDER BY created_at DESC, rowid DESC LIMIT ?");
            let limit = if filter.limit == 0 {
                DEFAULT_LIST_LIMIT
            } else {
                filter.limit
            };
            args.push(SqlValue::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
            let mut stmt = conn.prepare(&sql)?;
            let mut rows = stmt.query(params_from_iter(args))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(view_from_row(row)?);
            }
            Ok(out)
        })
        .await
    }

    async fn show(&self, id: &str) -> Result<TaskView, SourceError> {
        let id = id.to_string();
        self.run(move |conn| {
            let mut stmt = conn.prepare(&format!("SELECT {VIEW_COLUMNS} FROM tasks WHERE id = ?1"))?;
            let mut rows = stmt.query([&id])?;
            match rows.next()? {
                Some(row) => view_from_row(row),
                None => Err(SourceError::NotFound(id).into()),
            }
        })
        .await
    }

    /// Back to pending, claimable at once, with `attempts` 0. `result` and the lease are
    /// cleared; `error`, `class`, `stderr_tail` and `duration_ms` stay as the record of the
    /// last delivery (the last error) until the next delivery replaces them.
    async fn retry(&self, id: &str) -> Result<(), SourceError> {
        let id = id.to_string();
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let status: Option<String> = tx
                .query_row("SELECT status FROM tasks WHERE id = ?1", [&id], |row| row.get(0))
                .optional()?;
            let Some(status) = status else {
                return Err(SourceError::NotFound(id).into());
            };
            if !matches!(parse_status(&status), Some(Status::Failed | Status::Dead)) {
                return Err(SourceError::Invalid(format!(
                    "task `{id}` is {status}; only failed or dead tasks can be retried"
                ))
                .into());
            }
            tx.execute(
                "UPDATE tasks SET status = 'pending', attempts = 0, available_at = ?2, updated_at = ?2,
                     result = NULL, completed_at = NULL,
                     lease_owner = NULL, lease_token = NULL, lease_until = NULL
                 WHERE id = ?1",
                params![id, now()],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex as StdMutex;

    use serde_json::json;

    use super::*;

    const LONG: Duration = Duration::from_secs(60);

    fn queue() -> (tempfile::TempDir, LocalQueue) {
        let dir = tempfile::tempdir().expect("temp dir");
        let q = LocalQueue::open(&dir.path().join("queue.db")).expect("open");
        (dir, q)
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

    async fn enqueue_one(q: &LocalQueue, task: NewTask) -> String {
        q.enqueue(&[task]).await.expect("enqueue").remove(0).id
    }

    async fn claim(q: &LocalQueue, owner: &str) -> Option<Claimed> {
        q.claim(&types(&["t"]), owner, LONG).await.expect("claim")
    }

    #[tokio::test]
    async fn round_trip() {
        let (_dir, q) = queue();
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
        assert_eq!(q.show(&id).await.unwrap().status, Status::Pending);

        let c = claim(&q, "host-a").await.expect("a task");
        assert_eq!(c.id, id);
        assert_eq!(c.task_type, "t");
        assert_eq!(c.params, params);
        assert_eq!(c.priority, 5);
        assert_eq!(c.attempts, 1);
        assert!(!c.lease.is_empty());
        let running = q.show(&id).await.unwrap();
        assert_eq!(running.status, Status::Running);
        assert_eq!(running.lease_owner.as_deref(), Some("host-a"));
        assert!(
            claim(&q, "host-b").await.is_none(),
            "a leased task is not claimed twice"
        );

        let record = Record {
            stderr_tail: "warning: slow\n".to_string(),
            class: Some("success".to_string()),
            duration_ms: 1234,
        };
        q.finish(
            &c,
            &Outcome::Completed {
                result: json!({"pages": 7}),
            },
            &record,
        )
        .await
        .unwrap();
        let v = q.show(&id).await.unwrap();
        assert_eq!(v.status, Status::Completed);
        assert_eq!(v.result, Some(json!({"pages": 7})));
        assert_eq!(v.class.as_deref(), Some("success"));
        assert_eq!(v.stderr_tail.as_deref(), Some("warning: slow\n"));
        assert_eq!(v.attempts, 1);
        assert_eq!(v.lease_owner, None);
        assert_eq!(v.params, params);
        assert!(v.updated_at >= v.created_at);
        assert!(claim(&q, "host-a").await.is_none());
        assert_eq!(q.depth(&[]).await.unwrap(), Depth::default());
        q.health().await.unwrap();
        // Finishing twice is refused: the lease is gone.
        assert!(matches!(
            q.finish(&c, &done(), &Record::default()).await,
            Err(SourceError::LeaseLost(_))
        ));
    }

    #[tokio::test]
    async fn survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.db");
        let id = {
            let q = LocalQueue::open(&path).unwrap();
            enqueue_one(&q, new_task("t", 0)).await
        };
        let q = LocalQueue::open(&path).unwrap();
        assert_eq!(q.path(), path);
        assert_eq!(claim(&q, "a").await.unwrap().id, id);
    }

    #[tokio::test]
    async fn priority_then_age() {
        let (_dir, q) = queue();
        let low = enqueue_one(&q, new_task("t", 0)).await;
        let high = enqueue_one(&q, new_task("t", 10)).await;
        let low_later = enqueue_one(&q, new_task("t", 0)).await;
        let negative = enqueue_one(&q, new_task("t", -1)).await;
        // One batch shares a timestamp: first in, first out all the same.
        let batch: Vec<String> = q
            .enqueue(&[
                new_task("t", 3),
                new_task("t", 3),
                new_task("t", 3),
                new_task("t", 3),
            ])
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        let mut order = Vec::new();
        while let Some(c) = claim(&q, "a").await {
            order.push(c.id);
        }
        let mut expected = vec![high];
        expected.extend(batch);
        expected.extend([low, low_later, negative]);
        assert_eq!(order, expected);
    }

    #[tokio::test]
    async fn a_batch_claim_takes_the_same_order_in_one_go() {
        let (_dir, q) = queue();
        let ids: Vec<String> = q
            .enqueue(&[
                new_task("t", 0),
                new_task("t", 5),
                new_task("t", 0),
                new_task("u", 9),
            ])
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        let batch = q.claim_batch(&types(&["t"]), "a", LONG, 2).await.unwrap();
        let got: Vec<&str> = batch.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(got, [ids[1].as_str(), ids[0].as_str()], "priority, then age");
        assert!(batch.iter().all(|c| c.attempts == 1 && !c.lease.is_empty()));
        assert_ne!(batch[0].lease, batch[1].lease, "a lease each");
        let rest = q.claim_batch(&types(&["t"]), "b", LONG, 10).await.unwrap();
        assert_eq!(rest.len(), 1, "leased tasks are not claimed again");
        assert_eq!(rest[0].id, ids[2]);
        assert!(
            q.claim_batch(&types(&["t"]), "b", LONG, 10)
                .await
                .unwrap()
                .is_empty()
        );
        for c in batch.iter().chain(&rest) {
            q.finish(c, &Outcome::Completed { result: json!({}) }, &Record::default())
                .await
                .unwrap();
        }
        assert_eq!(q.depth(&types(&["t"])).await.unwrap(), Depth::default());
    }

    #[tokio::test]
    async fn concurrent_finishes_commit_together_and_each_gets_its_verdict() {
        let (_dir, q) = queue();
        let mut tasks = Vec::new();
        for _ in 0..50 {
            tasks.push(new_task("t", 0));
        }
        q.enqueue(&tasks).await.unwrap();
        let claimed = q.claim_batch(&types(&["t"]), "a", LONG, 50).await.unwrap();
        assert_eq!(claimed.len(), 50);
        let mut stale = claimed[7].clone();
        stale.lease = "not-the-lease".into();
        let done = Outcome::Completed {
            result: json!({"ok": true}),
        };
        let record = Record::default();
        let finishes = claimed
            .iter()
            .enumerate()
            .map(|(i, c)| if i == 7 { &stale } else { c })
            .map(|c| q.finish(c, &done, &record));
        let verdicts = futures::future::join_all(finishes).await;
        for (i, v) in verdicts.iter().enumerate() {
            if i == 7 {
                assert!(matches!(v, Err(SourceError::LeaseLost(_))), "{v:?}");
            } else {
                assert!(v.is_ok(), "{i}: {v:?}");
            }
        }
        let depth = q.depth(&types(&["t"])).await.unwrap();
        assert_eq!(depth.running, 1, "only the stale finish was refused");
    }

    #[tokio::test]
    async fn type_filtering_and_empty_types() {
        let (_dir, q) = queue();
        let other = enqueue_one(&q, new_task("other", 100)).await;
        let mine = enqueue_one(&q, new_task("t", 0)).await;
        let third = enqueue_one(&q, new_task("third", 0)).await;
        assert!(q.claim(&[], "a", LONG).await.unwrap().is_none());
        assert_eq!(claim(&q, "a").await.unwrap().id, mine);
        assert!(claim(&q, "a").await.is_none(), "other types are not claimed");
        let both = types(&["third", "other"]);
        assert_eq!(q.claim(&both, "a", LONG).await.unwrap().unwrap().id, other);
        assert_eq!(q.claim(&both, "a", LONG).await.unwrap().unwrap().id, third);
        assert!(q.claim(&both, "a", LONG).await.unwrap().is_none());
        // Types are values, never SQL.
        assert!(
            q.claim(&types(&["t') OR 1=1 --"]), "a", LONG)
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn dedupe_within_and_across_batches() {
        let (_dir, q) = queue();
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

        // Across batches, and whatever the first task's status.
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
        // No key: never deduplicated.
        let again = q.enqueue(&[new_task("t", 0)]).await.unwrap();
        assert!(!again[0].deduplicated);
        let all = q.list(&ListFilter::default()).await.unwrap();
        assert_eq!(all.len(), 5);
        assert_eq!(
            q.show(&first[0].id).await.unwrap().dedupe_key.as_deref(),
            Some("k1")
        );
    }

    #[tokio::test]
    async fn invalid_types_are_refused_and_nothing_is_added() {
        let (_dir, q) = queue();
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
    async fn retry_with_delay() {
        let (_dir, q) = queue();
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
        assert_eq!(v.stderr_tail.as_deref(), Some("boom"));
        assert_eq!(v.lease_owner, None);
        assert_eq!(v.attempts, 1);

        let mut again = None;
        for _ in 0..200 {
            if let Some(c) = claim(&q, "b").await {
                again = Some(c);
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let again = again.expect("claimable after the delay");
        assert_eq!(again.id, id);
        assert_eq!(again.attempts, 2, "attempts counts deliveries");
        q.finish(&again, &done(), &Record::default()).await.unwrap();
        let v = q.show(&id).await.unwrap();
        assert_eq!(v.status, Status::Completed);
        assert_eq!(v.attempts, 2);
        assert_eq!(v.error.as_deref(), Some("timeout"), "the last error is kept");
    }

    #[tokio::test]
    async fn failed_and_dead_outcomes() {
        let (_dir, q) = queue();
        let ids = q.enqueue(&[new_task("t", 0), new_task("t", 0)]).await.unwrap();
        let c = claim(&q, "a").await.unwrap();
        let record = Record {
            stderr_tail: "trace".to_string(),
            class: Some("failure".to_string()),
            duration_ms: 1,
        };
        q.finish(
            &c,
            &Outcome::Failed {
                error: "bad input".to_string(),
            },
            &record,
        )
        .await
        .unwrap();
        let c = claim(&q, "a").await.unwrap();
        q.finish(
            &c,
            &Outcome::Dead {
                error: "killed 5 times".to_string(),
            },
            &Record::default(),
        )
        .await
        .unwrap();
        let failed = q.show(&ids[0].id).await.unwrap();
        assert_eq!(failed.status, Status::Failed);
        assert_eq!(failed.error.as_deref(), Some("bad input"));
        assert_eq!(failed.stderr_tail.as_deref(), Some("trace"));
        assert_eq!(failed.class.as_deref(), Some("failure"));
        let dead = q.show(&ids[1].id).await.unwrap();
        assert_eq!(dead.status, Status::Dead);
        assert_eq!(dead.error.as_deref(), Some("killed 5 times"));
        assert!(claim(&q, "a").await.is_none());
    }

    #[tokio::test]
    async fn stderr_tail_is_truncated_on_a_char_boundary() {
        let (_dir, q) = queue();
        let id = enqueue_one(&q, new_task("t", 0)).await;
        let c = claim(&q, "a").await.unwrap();
        // 3-byte chars: 64 KiB is not a multiple of 3.
        let stderr = format!("head{}end", "€".repeat(30_000));
        let record = Record {
            stderr_tail: stderr.clone(),
            ..Record::default()
        };
        q.finish(&c, &done(), &record).await.unwrap();
        let kept = q.show(&id).await.unwrap().stderr_tail.unwrap();
        assert!(
            kept.len() <= STDERR_TAIL_MAX && kept.len() > STDERR_TAIL_MAX - 4,
            "{}",
            kept.len()
        );
        assert!(kept.ends_with("€end"));
        assert!(stderr.ends_with(&kept));

        assert_eq!(tail("abc", 5), "abc");
        assert_eq!(tail("abcdef", 3), "def");
        assert_eq!(tail("a€b", 3), "b");
        assert_eq!(tail("a€b", 4), "€b");
        assert_eq!(tail("", 0), "");
    }

    #[tokio::test]
    async fn expired_lease_is_reclaimed_and_the_late_finish_is_refused() {
        let (_dir, q) = queue();
        let id = enqueue_one(&q, new_task("t", 0)).await;
        let first = q
            .claim(&types(&["t"]), "host-a", Duration::from_millis(1))
            .await
            .unwrap()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            q.depth(&[]).await.unwrap(),
            Depth {
                ready: 1,
                delayed: 0,
                running: 0
            }
        );
        let second = claim(&q, "host-b").await.expect("an expired lease is claimable");
        assert_eq!(second.id, id);
        assert_eq!(second.attempts, 2);
        assert_ne!(second.lease, first.lease);

        let before = q.show(&id).await.unwrap();
        let late = q
            .finish(
                &first,
                &Outcome::Completed {
                    result: json!({"late": true}),
                },
                &Record::default(),
            )
            .await;
        assert!(
            matches!(late, Err(SourceError::LeaseLost(ref lost)) if *lost == id),
            "{late:?}"
        );
        assert!(matches!(q.release(&first).await, Err(SourceError::LeaseLost(_))));
        assert!(matches!(
            q.extend(&first, LONG).await,
            Err(SourceError::LeaseLost(_))
        ));
        let after = q.show(&id).await.unwrap();
        assert_eq!(after.status, Status::Running);
        assert_eq!(after.lease_owner.as_deref(), Some("host-b"));
        assert_eq!(after.result, None);
        assert_eq!(after.attempts, 2);
        assert_eq!(after.updated_at, before.updated_at, "nothing changed");

        q.finish(&second, &done(), &Record::default()).await.unwrap();
        assert_eq!(q.show(&id).await.unwrap().status, Status::Completed);
    }

    #[tokio::test]
    async fn extend_keeps_the_lease() {
        let (_dir, q) = queue();
        enqueue_one(&q, new_task("t", 0)).await;
        let c = q
            .claim(&types(&["t"]), "a", Duration::from_millis(30))
            .await
            .unwrap()
            .unwrap();
        q.extend(&c, LONG).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(claim(&q, "b").await.is_none(), "the extended lease is still live");
        assert_eq!(
            q.depth(&[]).await.unwrap(),
            Depth {
                ready: 0,
                delayed: 0,
                running: 1
            }
        );
        q.finish(&c, &done(), &Record::default()).await.unwrap();
    }

    #[tokio::test]
    async fn release_makes_the_task_claimable_at_once() {
        let (_dir, q) = queue();
        let id = enqueue_one(&q, new_task("t", 0)).await;
        let c = claim(&q, "a").await.unwrap();
        q.release(&c).await.unwrap();
        let v = q.show(&id).await.unwrap();
        assert_eq!(v.status, Status::Pending);
        assert_eq!(v.lease_owner, None);
        assert_eq!(v.attempts, 0, "a clean release gives the delivery back");
        let again = claim(&q, "b").await.expect("claimable at once");
        assert_eq!(again.id, id);
        assert_eq!(again.attempts, 1);
        assert!(matches!(q.release(&c).await, Err(SourceError::LeaseLost(_))));
    }

    #[tokio::test]
    async fn retry_of_failed_and_dead_tasks_only() {
        let (_dir, q) = queue();
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
        q.finish(
            &c,
            &Outcome::Failed {
                error: "bad".to_string(),
            },
            &record,
        )
        .await
        .unwrap();
        let c = claim(&q, "a").await.unwrap();
        q.finish(
            &c,
            &Outcome::Dead {
                error: "dies".to_string(),
            },
            &Record::default(),
        )
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

        // Claimable at once, ahead of the younger pending task (same priority, older).
        let again = claim(&q, "a").await.unwrap();
        assert_eq!(again.id, ids[0].id);
        assert_eq!(again.attempts, 1);

        for (id, status) in [(&ids[2].id, "pending"), (&ids[0].id, "running")] {
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
    async fn depth_counts() {
        let (_dir, q) = queue();
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
        let _expired = q
            .claim(&types(&["t"]), "a", Duration::from_millis(1))
            .await
            .unwrap()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        // One pending, one expired lease (ready again), one delayed, one live lease.
        assert_eq!(
            q.depth(&[]).await.unwrap(),
            Depth {
                ready: 2,
                delayed: 1,
                running: 1
            }
        );
        q.finish(&running, &done(), &Record::default()).await.unwrap();
        assert_eq!(
            q.depth(&[]).await.unwrap(),
            Depth {
                ready: 2,
                delayed: 1,
                running: 0
            }
        );

        // Scoped to types: none means all.
        q.enqueue(&[new_task("other", 0)]).await.unwrap();
        let ready = |n| Depth {
            ready: n,
            delayed: 1,
            running: 0,
        };
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

    #[tokio::test]
    async fn list_and_show() {
        let (_dir, q) = queue();
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
        assert_eq!(
            q.list(&ListFilter {
                limit: 1,
                ..ListFilter::default()
            })
            .await
            .unwrap()
            .len(),
            1
        );

        let many: Vec<NewTask> = (0..150).map(|_| new_task("c", 0)).collect();
        q.enqueue(&many).await.unwrap();
        assert_eq!(
            q.list(&ListFilter::default()).await.unwrap().len(),
            DEFAULT_LIST_LIMIT
        );
        assert_eq!(
            q.list(&ListFilter {
                limit: 1000,
                ..ListFilter::default()
            })
            .await
            .unwrap()
            .len(),
            153
        );

        assert!(matches!(q.show("missing").await, Err(SourceError::NotFound(ref id)) if id == "missing"));
    }

    #[tokio::test]
    async fn an_unreadable_row_is_invalid_and_does_not_block_the_queue() {
        let (_dir, q) = queue();
        let bad = enqueue_one(&q, new_task("t", 1)).await;
        let good = enqueue_one(&q, new_task("t", 0)).await;
        q.inner
            .conn
            .lock()
            .unwrap()
            .execute("UPDATE tasks SET params = 'not json' WHERE id = ?1", [&bad])
            .unwrap();
        assert!(matches!(q.show(&bad).await, Err(SourceError::Invalid(ref m)) if m.contains(&bad)));
        assert!(
            matches!(q.list(&ListFilter::default()).await, Err(SourceError::Invalid(ref m)) if m.contains(&bad))
        );
        let claimed = q.claim(&types(&["t"]), "a", LONG).await;
        assert!(
            matches!(claimed, Err(SourceError::Invalid(ref m)) if m.contains(&bad)),
            "{claimed:?}"
        );
        assert_eq!(
            claim(&q, "a").await.unwrap().id,
            good,
            "the bad row no longer blocks"
        );
        let status: String = q
            .inner
            .conn
            .lock()
            .unwrap()
            .query_row("SELECT status FROM tasks WHERE id = ?1", [&bad], |row| row.get(0))
            .unwrap();
        assert_eq!(status, "failed");

        q.inner
            .conn
            .lock()
            .unwrap()
            .execute("UPDATE tasks SET status = 'weird' WHERE id = ?1", [&good])
            .unwrap();
        assert!(matches!(q.show(&good).await, Err(SourceError::Invalid(ref m)) if m.contains("weird")));
    }

    /// Claims and completes until nothing is left; returns the ids it claimed.
    async fn drain(q: &LocalQueue, owner: &str) -> Vec<String> {
        let mut claimed = Vec::new();
        while let Some(c) = q.claim(&types(&["t"]), owner, LONG).await.expect("claim") {
            let outcome = Outcome::Completed {
                result: json!({"by": owner}),
            };
            q.finish(&c, &outcome, &Record::default()).await.expect("finish");
            claimed.push(c.id);
        }
        claimed
    }

    async fn assert_all_completed_once(q: &LocalQueue, claims: Vec<Vec<String>>) {
        let total: usize = claims.iter().map(Vec::len).sum();
        assert_eq!(
            total,
            200,
            "per claimer: {:?}",
            claims.iter().map(Vec::len).collect::<Vec<_>>()
        );
        let mut seen: HashMap<String, usize> = HashMap::new();
        for id in claims.into_iter().flatten() {
            *seen.entry(id).or_default() += 1;
        }
        assert_eq!(seen.len(), 200);
        assert!(seen.values().all(|&n| n == 1));
        let all = q
            .list(&ListFilter {
                limit: 1000,
                ..ListFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(all.len(), 200);
        for v in all {
            assert_eq!(v.status, Status::Completed, "{}", v.id);
            assert_eq!(v.attempts, 1, "{}", v.id);
            assert_eq!(seen.get(&v.id), Some(&1));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn exactly_once_across_connections() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.db");
        let queues: Vec<Arc<LocalQueue>> = (0..4)
            .map(|_| Arc::new(LocalQueue::open(&path).unwrap()))
            .collect();
        let tasks: Vec<NewTask> = (0..200).map(|i| new_task("t", i % 3)).collect();
        queues[0].enqueue(&tasks).await.unwrap();
        let handles: Vec<_> = queues
            .iter()
            .enumerate()
            .map(|(i, q)| {
                let q = Arc::clone(q);
                tokio::spawn(async move { drain(&q, &format!("host-{i}")).await })
            })
            .collect();
        let mut claims = Vec::new();
        for h in handles {
            claims.push(h.await.unwrap());
        }
        assert_all_completed_once(&queues[3], claims).await;
    }

    #[test]
    fn exactly_once_across_threads_with_their_own_runtimes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.db");
        let runtime = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
        };
        let q = LocalQueue::open(&path).unwrap();
        let tasks: Vec<NewTask> = (0..200).map(|_| new_task("t", 0)).collect();
        runtime().block_on(q.enqueue(&tasks)).unwrap();
        let claims = Arc::new(StdMutex::new(Vec::new()));
        let threads: Vec<_> = (0..2)
            .map(|i| {
                let path = path.clone();
                let claims = Arc::clone(&claims);
                std::thread::spawn(move || {
                    let q = LocalQueue::open(&path).unwrap();
                    let mine = runtime().block_on(drain(&q, &format!("thread-{i}")));
                    claims.lock().unwrap().push(mine);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let claims = std::mem::take(&mut *claims.lock().unwrap());
        runtime().block_on(assert_all_completed_once(&q, claims));
    }

    #[tokio::test]
    async fn garbage_file_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not-a-queue.db");
        let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7 + 13) as u8).collect();
        std::fs::write(&path, &garbage).unwrap();
        let Err(err) = LocalQueue::open(&path) else {
            panic!("a garbage file opened")
        };
        let SourceError::Unavailable(message) = &err else {
            panic!("{err:?}")
        };
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert_eq!(std::fs::read(&path).unwrap(), garbage, "the file is untouched");
    }

    #[tokio::test]
    async fn another_programs_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE users (name TEXT);")
            .unwrap();
        let err = LocalQueue::open(&path).err().expect("refused");
        assert!(
            matches!(&err, SourceError::Unavailable(m) if m.contains("not a wh queue") && m.contains("other.db"))
        );
        let mode: String = Connection::open(&path)
            .unwrap()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "delete", "not switched to WAL");
    }

    #[tokio::test]
    async fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.db");
        drop(LocalQueue::open(&path).unwrap());
        Connection::open(&path)
            .unwrap()
            .execute(
                "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
                [SCHEMA_VERSION + 1],
            )
            .unwrap();
        let err = LocalQueue::open(&path).err().expect("refused");
        assert!(
            matches!(&err, SourceError::Unavailable(m) if m.contains("newer wh") && m.contains("queue.db")),
            "{err}"
        );
    }

    /// The schema wh wrote before progress reports (version 1), as an older wh left it.
    const SCHEMA_V1: &str = "
        CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value NOT NULL);
        CREATE TABLE tasks (
            id TEXT PRIMARY KEY NOT NULL, type TEXT NOT NULL, params TEXT NOT NULL,
            priority INTEGER NOT NULL, dedupe_key TEXT NULL, status TEXT NOT NULL,
            attempts INTEGER NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL,
            available_at REAL NOT NULL, lease_owner TEXT NULL, lease_token TEXT NULL,
            lease_until REAL NULL, result TEXT NULL, error TEXT NULL, class TEXT NULL,
            stderr_tail TEXT NULL, duration_ms INTEGER NULL, completed_at REAL NULL
        );
        CREATE INDEX tasks_claim ON tasks (status, type, priority DESC, created_at);
        CREATE UNIQUE INDEX tasks_dedupe_key ON tasks (dedupe_key);
        CREATE INDEX tasks_created ON tasks (created_at);
        INSERT INTO meta (key, value) VALUES ('schema_version', 1);
        INSERT INTO tasks (id, type, params, priority, status, attempts, created_at, updated_at,
                           available_at, error)
            VALUES ('old-1', 't', '{\"n\": 1}', 0, 'pending', 1, 1.0, 2.0, 0.0, 'earlier');
    ";

    #[tokio::test]
    async fn a_version_1_queue_is_migrated_and_keeps_its_tasks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.db");
        Connection::open(&path).unwrap().execute_batch(SCHEMA_V1).unwrap();
        // The first opener migrates; a second one finds it done.
        let q = LocalQueue::open(&path).unwrap();
        let other = LocalQueue::open(&path).unwrap();
        let version: i64 = q
            .inner
            .conn
            .lock()
            .unwrap()
            .query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let old = q.show("old-1").await.unwrap();
        assert_eq!(
            (old.status, old.attempts, old.error.as_deref(), old.progress),
            (Status::Pending, 1, Some("earlier"), None)
        );
        let c = claim(&other, "a").await.unwrap();
        assert_eq!((c.id.as_str(), c.attempts), ("old-1", 2));
        q.progress(&c, 30, Some("on it")).await.unwrap();
        assert_eq!(q.show("old-1").await.unwrap().progress, Some(30));
        drop((q, other));
        // Opened again: nothing left to migrate.
        let q = LocalQueue::open(&path).unwrap();
        assert_eq!(
            q.show("old-1").await.unwrap().progress_message.as_deref(),
            Some("on it")
        );
    }

    /// A `Claimed` as the dispatcher's stderr hook has it: no lease token.
    fn without_lease(c: &Claimed) -> Claimed {
        Claimed {
            lease: String::new(),
            params: Map::new(),
            ..c.clone()
        }
    }

    #[tokio::test]
    async fn progress_is_kept_while_running_and_cleared_by_the_next_claim() {
        let (_dir, q) = queue();
        let id = enqueue_one(&q, new_task("t", 0)).await;
        let fresh = q.show(&id).await.unwrap();
        assert_eq!((fresh.progress, fresh.progress_message.as_deref()), (None, None));
        let json = serde_json::to_value(&fresh).unwrap();
        assert!(json.get("progress").is_none(), "absent, not null: {json}");

        let c = claim(&q, "a").await.unwrap();
        q.progress(&c, 25, Some("page 1/4")).await.unwrap();
        let v = q.show(&id).await.unwrap();
        assert_eq!(v.progress, Some(25));
        assert_eq!(v.progress_message.as_deref(), Some("page 1/4"));
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(
            (json["progress"].clone(), json["progress_message"].clone()),
            (json!(25), json!("page 1/4"))
        );
        // The hook's stand-in (no token) names the delivery by its attempt.
        q.progress(&without_lease(&c), 50, None).await.unwrap();
        let v = q.show(&id).await.unwrap();
        assert_eq!((v.progress, v.progress_message), (Some(50), None));
        // Progress never extends the lease, nor changes the status.
        assert_eq!(v.status, Status::Running);

        // A stale delivery (the wrong attempt or token) changes nothing.
        let stale = Claimed {
            attempts: c.attempts + 1,
            ..without_lease(&c)
        };
        assert!(matches!(
            q.progress(&stale, 60, None).await,
            Err(SourceError::LeaseLost(_))
        ));
        let other_token = Claimed {
            lease: "not-the-token".into(),
            ..c.clone()
        };
        assert!(matches!(
            q.progress(&other_token, 60, None).await,
            Err(SourceError::LeaseLost(_))
        ));
        assert_eq!(q.show(&id).await.unwrap().progress, Some(50));

        // After the outcome the last report stays, and later ones are refused.
        let retry = Outcome::Retry {
            error: "again".into(),
            delay: Duration::ZERO,
        };
        q.finish(&c, &retry, &Record::default()).await.unwrap();
        assert!(matches!(
            q.progress(&c, 70, None).await,
            Err(SourceError::LeaseLost(_))
        ));
        let v = q.show(&id).await.unwrap();
        assert_eq!((v.status, v.progress), (Status::Pending, Some(50)));
        // The next delivery starts with none.
        let again = claim(&q, "b").await.unwrap();
        assert_eq!(q.show(&id).await.unwrap().progress, None);
        assert!(matches!(
            q.progress(&c, 80, None).await,
            Err(SourceError::LeaseLost(_))
        ));
        q.progress(&without_lease(&again), 90, Some("nearly"))
            .await
            .unwrap();
        q.finish(&again, &done(), &Record::default()).await.unwrap();
        let v = q.show(&id).await.unwrap();
        assert_eq!((v.status, v.progress), (Status::Completed, Some(90)));
        assert!(matches!(
            q.progress(&c, 1, None).await,
            Err(SourceError::LeaseLost(_))
        ));
        assert!(matches!(
            q.progress(&without_lease(&again), 1, None).await,
            Err(SourceError::LeaseLost(_))
        ));
    }

    #[tokio::test]
    async fn missing_directory_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no/such/dir/queue.db");
        let err = LocalQueue::open(&path).err().expect("refused");
        assert!(
            matches!(&err, SourceError::Unavailable(m) if m.contains("no/such/dir")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn settings() {
        let (_dir, q) = queue();
        let conn = q.inner.conn.lock().unwrap();
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
        assert_eq!(sync, 1, "NORMAL");
        let timeout: i64 = conn.query_row("PRAGMA busy_timeout", [], |r| r.get(0)).unwrap();
        assert_eq!(timeout, 5000);
    }
}
