//! The embedded engine: one SQLite file in WAL mode.
//!
//! Design (after k3s's kine): every write appends a row to `log`, keyed by its revision, so history and
//! watch replay are plain range scans. `current` maps each live key to the revision of its newest row,
//! so reads at the current revision never scan history.
//!
//! One writer thread owns the only write connection. It drains every queued request into one
//! transaction and commits it with one fsync (`synchronous = FULL`), so a write is acknowledged only
//! once it is on disk, yet many concurrent writers share the cost of one sync. After the commit the
//! writer publishes the batch's events on an in-process broadcast channel: watchers never poll.
//! A watcher that falls behind the channel, or starts in the past, replays the missing revisions from
//! `log`; reads run on a small pool of read connections, which WAL lets run beside the writer.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::continuation::{Continuation, key_after};
use crate::{
    Deleted, Event, EventKind, KeyValue, ListOptions, ListPage, Result, Revision, Store,
    StoreError, WatchStream, check_key, prefix_end,
};

/// Most requests committed in one transaction.
const MAX_BATCH: usize = 512;
/// Events a watcher may fall behind the live channel before it replays from the log instead.
const EVENT_BUFFER: usize = 4096;
/// Rows read per query when a watcher replays history.
const REPLAY_PAGE: i64 = 1000;
/// Events buffered between a watcher's replay task and its consumer.
const WATCH_QUEUE: usize = 256;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log (
    rev        INTEGER PRIMARY KEY,
    key        BLOB    NOT NULL,
    create_rev INTEGER NOT NULL,
    prev_rev   INTEGER NOT NULL,
    deleted    INTEGER NOT NULL,
    value      BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS log_key_rev ON log (key, rev);
CREATE TABLE IF NOT EXISTS current (
    key BLOB PRIMARY KEY,
    rev INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
";

/// A handle to an embedded SQLite store. Cloning is cheap; the writer thread stops when the last
/// handle is dropped.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    writes: mpsc::Sender<WriteRequest>,
    events: broadcast::Sender<Arc<Event>>,
    shared: Arc<Shared>,
}

/// State the handles, the writer and the watchers share.
#[derive(Debug)]
struct Shared {
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    /// Revision of the last committed write.
    committed: AtomicI64,
    /// Revision of the last event sent to the broadcast channel. Stored before the send, so a watcher
    /// that subscribed first and then reads this value misses nothing.
    published: AtomicI64,
    /// History before this revision is gone.
    compacted: AtomicI64,
}

#[derive(Debug)]
enum WriteOp {
    Create {
        key: String,
        value: Bytes,
    },
    Update {
        key: String,
        value: Bytes,
        expected: Revision,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
    Compact {
        revision: Revision,
    },
}

#[derive(Debug)]
enum WriteOutcome {
    Put(KeyValue),
    Deleted(Deleted),
    Compacted,
}

#[derive(Debug)]
struct WriteRequest {
    op: WriteOp,
    reply: oneshot::Sender<Result<WriteOutcome>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the store file at `path` and starts its writer thread.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let conn = Connection::open(&path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: the WAL is synced at every commit, so an acknowledged write survives a crash of the
        // process and of the machine.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        stable_plans(&conn)?;
        conn.execute_batch(SCHEMA)?;
        let compacted: Revision = conn
            .query_row("SELECT value FROM meta WHERE name = 'compacted'", [], |r| {
                r.get(0)
            })
            .optional()?
            .unwrap_or(0);
        let last_rev: Revision =
            conn.query_row("SELECT COALESCE(MAX(rev), 0) FROM log", [], |r| r.get(0))?;
        let revision = last_rev.max(compacted);

        let shared = Arc::new(Shared {
            path,
            readers: Mutex::new(Vec::new()),
            committed: AtomicI64::new(revision),
            published: AtomicI64::new(revision),
            compacted: AtomicI64::new(compacted),
        });
        let (writes, queue) = mpsc::channel(MAX_BATCH * 4);
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let writer = Writer {
            conn,
            queue,
            events: events.clone(),
            shared: shared.clone(),
            revision,
            compacted,
        };
        std::thread::Builder::new()
            .name("capstan-sqlite-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::Internal(format!("cannot start the writer thread: {e}")))?;
        Ok(Self {
            writes,
            events,
            shared,
        })
    }

    async fn write(&self, op: WriteOp) -> Result<WriteOutcome> {
        let (reply, answer) = oneshot::channel();
        self.writes
            .send(WriteRequest { op, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` on a read connection in a blocking thread.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || shared.with_reader(f))
            .await
            .map_err(|e| StoreError::Internal(format!("read task failed: {e}")))?
    }
}

impl Shared {
    fn with_reader<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let pooled = self.readers.lock().map_err(|_| poisoned())?.pop();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => {
                let conn = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                conn.busy_timeout(std::time::Duration::from_secs(10))?;
                stable_plans(&conn)?;
                conn
            }
        };
        let result = f(&mut conn);
        if result.is_ok() || matches!(result, Err(ref e) if !matches!(e, StoreError::Sqlite(_))) {
            self.readers.lock().map_err(|_| poisoned())?.push(conn);
        }
        result
    }
}

fn poisoned() -> StoreError {
    StoreError::Internal("reader pool lock poisoned".into())
}

/// The writer thread's state.
struct Writer {
    conn: Connection,
    queue: mpsc::Receiver<WriteRequest>,
    events: broadcast::Sender<Arc<Event>>,
    shared: Arc<Shared>,
    revision: Revision,
    compacted: Revision,
}

/// Changes of one batch, kept apart until the batch commits.
#[derive(Default)]
struct Batch {
    events: Vec<Event>,
    compacted: Option<Revision>,
}

impl Writer {
    fn run(mut self) {
        while let Some(first) = self.queue.blocking_recv() {
            let mut requests = vec![first];
            while requests.len() < MAX_BATCH {
                match self.queue.try_recv() {
                    Ok(request) => requests.push(request),
                    Err(_) => break,
                }
            }
            self.commit_batch(requests);
        }
        tracing::debug!("sqlite writer stopped: every handle was dropped");
    }

    fn commit_batch(&mut self, requests: Vec<WriteRequest>) {
        let mut batch = Batch::default();
        let mut revision = self.revision;
        let outcome = (|| -> rusqlite::Result<Vec<Result<WriteOutcome>>> {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut results = Vec::with_capacity(requests.len());
            for request in &requests {
                results.push(apply(
                    &tx,
                    &request.op,
                    &mut revision,
                    self.compacted,
                    &mut batch,
                )?);
            }
            tx.commit()?;
            Ok(results)
        })();
        match outcome {
            Ok(results) => {
                self.revision = revision;
                self.shared.committed.store(revision, Ordering::SeqCst);
                if let Some(compacted) = batch.compacted {
                    self.compacted = compacted;
                    self.shared.compacted.store(compacted, Ordering::SeqCst);
                }
                for event in batch.events {
                    self.shared
                        .published
                        .store(event.revision(), Ordering::SeqCst);
                    // No receiver is not an error: nobody is watching.
                    let _ = self.events.send(Arc::new(event));
                }
                for (request, result) in requests.into_iter().zip(results) {
                    let _ = request.reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "sqlite write batch failed");
                for request in requests {
                    let _ = request
                        .reply
                        .send(Err(StoreError::Internal(format!("sqlite: {e}"))));
                }
            }
        }
    }
}

/// Applies one request inside the batch's transaction. The outer `Err` is an engine failure that
/// aborts the batch; the inner one is this request's answer (conflict, not found, ...).
fn apply(
    tx: &rusqlite::Transaction<'_>,
    op: &WriteOp,
    revision: &mut Revision,
    compacted: Revision,
    batch: &mut Batch,
) -> rusqlite::Result<Result<WriteOutcome>> {
    match op {
        WriteOp::Create { key, value } => {
            let exists = tx
                .prepare_cached("SELECT 1 FROM current WHERE key = ?1")?
                .exists(params![key.as_bytes()])?;
            if exists {
                return Ok(Err(StoreError::AlreadyExists { key: key.clone() }));
            }
            let rev = *revision + 1;
            insert_log(tx, rev, key, rev, 0, false, value)?;
            tx.prepare_cached("INSERT INTO current (key, rev) VALUES (?1, ?2)")?
                .execute(params![key.as_bytes(), rev])?;
            *revision = rev;
            let kv = KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: rev,
                mod_revision: rev,
            };
            batch.events.push(Event {
                kind: EventKind::Created,
                kv: kv.clone(),
                prev: None,
            });
            Ok(Ok(WriteOutcome::Put(kv)))
        }
        WriteOp::Update {
            key,
            value,
            expected,
        } => {
            let Some(prev) = current_kv(tx, key)? else {
                return Ok(Err(StoreError::NotFound { key: key.clone() }));
            };
            if prev.mod_revision != *expected {
                return Ok(Err(conflict(key, *expected, prev)));
            }
            let rev = *revision + 1;
            insert_log(
                tx,
                rev,
                key,
                prev.create_revision,
                prev.mod_revision,
                false,
                value,
            )?;
            tx.prepare_cached("UPDATE current SET rev = ?2 WHERE key = ?1")?
                .execute(params![key.as_bytes(), rev])?;
            *revision = rev;
            let kv = KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: prev.create_revision,
                mod_revision: rev,
            };
            batch.events.push(Event {
                kind: EventKind::Updated,
                kv: kv.clone(),
                prev: Some(prev),
            });
            Ok(Ok(WriteOutcome::Put(kv)))
        }
        WriteOp::Delete { key, expected } => {
            let Some(prev) = current_kv(tx, key)? else {
                return Ok(Err(StoreError::NotFound { key: key.clone() }));
            };
            if let Some(expected) = expected
                && prev.mod_revision != *expected
            {
                return Ok(Err(conflict(key, *expected, prev)));
            }
            let rev = *revision + 1;
            insert_log(
                tx,
                rev,
                key,
                prev.create_revision,
                prev.mod_revision,
                true,
                &Bytes::new(),
            )?;
            tx.prepare_cached("DELETE FROM current WHERE key = ?1")?
                .execute(params![key.as_bytes()])?;
            *revision = rev;
            let kv = KeyValue {
                key: key.clone(),
                value: Bytes::new(),
                create_revision: prev.create_revision,
                mod_revision: rev,
            };
            batch.events.push(Event {
                kind: EventKind::Deleted,
                kv,
                prev: Some(prev.clone()),
            });
            Ok(Ok(WriteOutcome::Deleted(Deleted {
                revision: rev,
                prev,
            })))
        }
        WriteOp::Compact { revision: target } => {
            let already = batch.compacted.unwrap_or(compacted);
            if *target <= already {
                return Ok(Ok(WriteOutcome::Compacted));
            }
            if *target > *revision {
                return Ok(Err(StoreError::FutureRevision { requested: *target }));
            }
            // Keep, for every key, its newest row older than the target (unless that row is a
            // deletion): reads at the target and watches from it still find every state they need.
            let removed = tx.execute(
                "DELETE FROM log WHERE rev < ?1 AND (deleted = 1 OR EXISTS (
                     SELECT 1 FROM log AS newer
                     WHERE newer.key = log.key AND newer.rev > log.rev AND newer.rev < ?1))",
                params![target],
            )?;
            tx.execute(
                "INSERT INTO meta (name, value) VALUES ('compacted', ?1)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                params![target],
            )?;
            tracing::debug!(revision = target, removed, "compacted the sqlite log");
            batch.compacted = Some(*target);
            Ok(Ok(WriteOutcome::Compacted))
        }
    }
}

fn conflict(key: &str, expected: Revision, current: KeyValue) -> StoreError {
    StoreError::Conflict {
        key: key.to_owned(),
        expected,
        current: Box::new(current),
    }
}

fn insert_log(
    tx: &rusqlite::Transaction<'_>,
    rev: Revision,
    key: &str,
    create_rev: Revision,
    prev_rev: Revision,
    deleted: bool,
    value: &Bytes,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO log (rev, key, create_rev, prev_rev, deleted, value)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        rev,
        key.as_bytes(),
        create_rev,
        prev_rev,
        deleted,
        value.as_ref()
    ])?;
    Ok(())
}

/// Turns on the query planner stability guarantee. Without it, the bundled SQLite (built with
/// STAT4) marks statements whose plan could depend on a bound key as "re-prepare on bind": every
/// cached statement of ours was parsed and planned again on every execution (~5% of a create's CPU).
fn stable_plans(conn: &Connection) -> rusqlite::Result<bool> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )
}

/// The live state of `key`, if present.
fn current_kv(conn: &Connection, key: &str) -> rusqlite::Result<Option<KeyValue>> {
    conn.prepare_cached(
        "SELECT l.key, l.value, l.create_rev, l.rev
         FROM current AS c JOIN log AS l ON l.rev = c.rev WHERE c.key = ?1",
    )?
    .query_row(params![key.as_bytes()], row_to_kv)
    .optional()
}

fn row_to_kv(row: &rusqlite::Row<'_>) -> rusqlite::Result<KeyValue> {
    let key: Vec<u8> = row.get(0)?;
    let value: Vec<u8> = row.get(1)?;
    Ok(KeyValue {
        key: String::from_utf8(key).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, Box::new(e))
        })?,
        value: Bytes::from(value),
        create_revision: row.get(2)?,
        mod_revision: row.get(3)?,
    })
}

/// The revision and compaction point that a read transaction sees.
fn snapshot(conn: &Connection) -> Result<(Revision, Revision)> {
    let last: Revision = conn
        .prepare_cached("SELECT COALESCE(MAX(rev), 0) FROM log")?
        .query_row([], |r| r.get(0))?;
    let compacted: Revision = conn
        .prepare_cached("SELECT value FROM meta WHERE name = 'compacted'")?
        .query_row([], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    Ok((last.max(compacted), compacted))
}

/// Checks that `requested` can still be read in a snapshot at `current` compacted at `compacted`.
fn check_readable(requested: Revision, current: Revision, compacted: Revision) -> Result<()> {
    if requested > current {
        return Err(StoreError::FutureRevision { requested });
    }
    if requested < compacted {
        return Err(StoreError::Compacted { requested });
    }
    Ok(())
}

/// `AND key >= start [AND key < end]` with parameters `?start_param` and `?start_param+1`.
fn key_range_sql(column: &str, start_param: usize, bounded: bool) -> String {
    if bounded {
        format!(
            "{column} >= ?{start_param} AND {column} < ?{}",
            start_param + 1
        )
    } else {
        format!("{column} >= ?{start_param}")
    }
}

/// The newest row of each key at or before `revision`, deleted keys left out, in key order, at
/// most `limit + 1`. The keys and their revisions come from the `(key, rev)` index alone, in key
/// order, so a page reads only as far as it needs: one query joining the values and filtering
/// deletions made SQLite sort every later key's rows before the limit applied.
fn list_past(
    tx: &rusqlite::Transaction<'_>,
    start: Vec<u8>,
    end: Option<Vec<u8>>,
    revision: Revision,
    limit: Option<usize>,
) -> Result<Vec<KeyValue>> {
    let sql = format!(
        "SELECT key, MAX(rev) FROM log WHERE {} AND rev <= ?1 GROUP BY key ORDER BY key",
        key_range_sql("key", 2, end.is_some())
    );
    let mut keys = tx.prepare_cached(&sql)?;
    let mut row_at = tx.prepare_cached(
        "SELECT key, value, create_rev, rev FROM log WHERE rev = ?1 AND deleted = 0",
    )?;
    let mut newest = match &end {
        Some(end) => keys.query(params![revision, start, end])?,
        None => keys.query(params![revision, start])?,
    };
    let wanted = limit.map_or(usize::MAX, |l| l.saturating_add(1));
    let mut items = Vec::new();
    while items.len() < wanted {
        let Some(row) = newest.next()? else { break };
        let rev: Revision = row.get(1)?;
        if let Some(kv) = row_at.query_row(params![rev], row_to_kv).optional()? {
            items.push(kv);
        }
    }
    Ok(items)
}

fn list_snapshot(
    conn: &mut Connection,
    prefix: &str,
    start: Vec<u8>,
    pinned: Option<Revision>,
    limit: Option<usize>,
) -> Result<ListPage> {
    let tx = conn.transaction()?;
    let (current, compacted) = snapshot(&tx)?;
    let revision = match pinned {
        Some(revision) => {
            check_readable(revision, current, compacted)?;
            revision
        }
        None => current,
    };
    let end = prefix_end(prefix.as_bytes());
    // One extra row tells whether another page follows.
    let fetch = limit.map(|l| l as i64 + 1).unwrap_or(-1);
    let mut items = if revision == current {
        let sql = format!(
            "SELECT l.key, l.value, l.create_rev, l.rev
             FROM current AS c JOIN log AS l ON l.rev = c.rev
             WHERE {} ORDER BY c.key LIMIT ?1",
            key_range_sql("c.key", 2, end.is_some())
        );
        let mut stmt = tx.prepare_cached(&sql)?;
        let rows = match &end {
            Some(end) => stmt.query_map(params![fetch, start, end], row_to_kv)?,
            None => stmt.query_map(params![fetch, start], row_to_kv)?,
        };
        rows.collect::<rusqlite::Result<Vec<_>>>()?
    } else {
        list_past(&tx, start, end, revision, limit)?
    };
    let mut continue_token = None;
    if let Some(limit) = limit
        && items.len() > limit
    {
        items.truncate(limit);
        if let Some(last) = items.last() {
            continue_token = Some(
                Continuation {
                    revision,
                    last_key: last.key.clone(),
                }
                .encode(),
            );
        }
    }
    Ok(ListPage {
        items,
        revision,
        continue_token,
    })
}

/// Reads the events under `prefix` in `(after, until]`, oldest first, at most [`REPLAY_PAGE`].
fn replay_page(
    conn: &mut Connection,
    prefix: &str,
    after: Revision,
    until: Revision,
) -> Result<Vec<Event>> {
    let end = prefix_end(prefix.as_bytes());
    let sql = format!(
        "SELECT l.rev, l.key, l.create_rev, l.deleted, l.value, p.rev, p.value
         FROM log AS l LEFT JOIN log AS p ON p.rev = l.prev_rev
         WHERE l.rev > ?1 AND l.rev <= ?2 AND {} ORDER BY l.rev LIMIT ?3",
        key_range_sql("l.key", 4, end.is_some())
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let map = |row: &rusqlite::Row<'_>| -> rusqlite::Result<Event> {
        let rev: Revision = row.get(0)?;
        let key: Vec<u8> = row.get(1)?;
        let key = String::from_utf8(key).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Blob, Box::new(e))
        })?;
        let create_revision: Revision = row.get(2)?;
        let deleted: bool = row.get(3)?;
        let value: Vec<u8> = row.get(4)?;
        let prev_rev: Option<Revision> = row.get(5)?;
        let prev_value: Option<Vec<u8>> = row.get(6)?;
        let prev = prev_rev.map(|mod_revision| KeyValue {
            key: key.clone(),
            value: Bytes::from(prev_value.unwrap_or_default()),
            create_revision,
            mod_revision,
        });
        let kind = if deleted {
            EventKind::Deleted
        } else if create_revision == rev {
            EventKind::Created
        } else {
            EventKind::Updated
        };
        Ok(Event {
            kind,
            kv: KeyValue {
                key,
                value: Bytes::from(value),
                create_revision,
                mod_revision: rev,
            },
            prev,
        })
    };
    let start = prefix.as_bytes();
    let rows = match &end {
        Some(end) => stmt.query_map(params![after, until, REPLAY_PAGE, start, end], map)?,
        None => stmt.query_map(params![after, until, REPLAY_PAGE, start], map)?,
    };
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Feeds one watcher: replays history from the log when it is behind the live channel, then forwards
/// live events. `last` is the newest revision already handled (delivered or filtered out).
async fn pump(
    shared: Arc<Shared>,
    prefix: String,
    mut last: Revision,
    mut live: broadcast::Receiver<Arc<Event>>,
    out: mpsc::Sender<Result<Event>>,
) {
    loop {
        if shared.published.load(Ordering::SeqCst) > last {
            match replay(&shared, &prefix, last, &out).await {
                Ok(Some(replayed_to)) => last = replayed_to,
                Ok(None) => return,
                Err(e) => {
                    let _ = out.send(Err(e)).await;
                    return;
                }
            }
        }
        loop {
            let received = tokio::select! {
                received = live.recv() => received,
                // The consumer dropped the stream: stop instead of waiting for the next write.
                () = out.closed() => return,
            };
            match received {
                Ok(event) => {
                    if event.revision() <= last {
                        continue;
                    }
                    last = event.revision();
                    if event.kv.key.starts_with(&prefix)
                        && out.send(Ok((*event).clone())).await.is_err()
                    {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(
                        missed,
                        prefix,
                        "watcher fell behind; replaying from the log"
                    );
                    break;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

/// Sends every event after `after` up to the log's newest revision. Returns the revision replayed to,
/// or `None` when the consumer went away.
async fn replay(
    shared: &Arc<Shared>,
    prefix: &str,
    mut after: Revision,
    out: &mpsc::Sender<Result<Event>>,
) -> Result<Option<Revision>> {
    let until = {
        let shared = shared.clone();
        let requested = after + 1;
        tokio::task::spawn_blocking(move || {
            shared.with_reader(|conn| {
                let (current, compacted) = snapshot(conn)?;
                if requested < compacted {
                    return Err(StoreError::Compacted { requested });
                }
                Ok(current)
            })
        })
        .await
        .map_err(|e| StoreError::Internal(format!("replay task failed: {e}")))??
    };
    while after < until {
        let page = {
            let shared = shared.clone();
            let prefix = prefix.to_owned();
            tokio::task::spawn_blocking(move || {
                shared.with_reader(|conn| replay_page(conn, &prefix, after, until))
            })
            .await
            .map_err(|e| StoreError::Internal(format!("replay task failed: {e}")))??
        };
        let full = page.len() as i64 == REPLAY_PAGE;
        for event in page {
            after = event.revision();
            if out.send(Ok(event)).await.is_err() {
                return Ok(None);
            }
        }
        if !full {
            after = until;
        }
    }
    Ok(Some(until))
}

#[async_trait]
impl Store for SqliteStore {
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        check_key(key)?;
        match self
            .write(WriteOp::Create {
                key: key.to_owned(),
                value,
            })
            .await?
        {
            WriteOutcome::Put(kv) => Ok(kv),
            other => Err(unexpected(other)),
        }
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<KeyValue> {
        check_key(key)?;
        match self
            .write(WriteOp::Update {
                key: key.to_owned(),
                value,
                expected,
            })
            .await?
        {
            WriteOutcome::Put(kv) => Ok(kv),
            other => Err(unexpected(other)),
        }
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<Deleted> {
        check_key(key)?;
        match self
            .write(WriteOp::Delete {
                key: key.to_owned(),
                expected,
            })
            .await?
        {
            WriteOutcome::Deleted(deleted) => Ok(deleted),
            other => Err(unexpected(other)),
        }
    }

    async fn get(&self, key: &str, revision: Option<Revision>) -> Result<Option<KeyValue>> {
        check_key(key)?;
        let key = key.to_owned();
        self.read(move |conn| {
            let Some(revision) = revision else {
                return Ok(current_kv(conn, &key)?);
            };
            let tx = conn.transaction()?;
            let (current, compacted) = snapshot(&tx)?;
            check_readable(revision, current, compacted)?;
            let row = tx
                .prepare_cached(
                    "SELECT key, value, create_rev, rev, deleted FROM log
                     WHERE key = ?1 AND rev <= ?2 ORDER BY rev DESC LIMIT 1",
                )?
                .query_row(params![key.as_bytes(), revision], |row| {
                    Ok((row_to_kv(row)?, row.get::<_, bool>(4)?))
                })
                .optional()?;
            Ok(row.and_then(|(kv, deleted)| (!deleted).then_some(kv)))
        })
        .await
    }

    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListPage> {
        let (start, pinned) = match &options.continue_token {
            Some(token) => {
                let continuation = Continuation::decode(token, prefix)?;
                (
                    key_after(&continuation.last_key),
                    Some(continuation.revision),
                )
            }
            None => (prefix.as_bytes().to_vec(), options.revision),
        };
        let limit = options.limit.filter(|l| *l > 0);
        let prefix = prefix.to_owned();
        self.read(move |conn| list_snapshot(conn, &prefix, start, pinned, limit))
            .await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        // Subscribe before anything else: every event published from now on reaches this receiver,
        // and everything before it is in the log.
        let live = self.events.subscribe();
        let compacted = self.shared.compacted.load(Ordering::SeqCst);
        let after = after.max(0);
        if after + 1 < compacted {
            return Err(StoreError::Compacted {
                requested: after + 1,
            });
        }
        let (out, events) = mpsc::channel(WATCH_QUEUE);
        tokio::spawn(pump(
            self.shared.clone(),
            prefix.to_owned(),
            after,
            live,
            out,
        ));
        Ok(Box::pin(futures::stream::unfold(
            events,
            |mut events| async move { events.recv().await.map(|event| (event, events)) },
        )))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        match self.write(WriteOp::Compact { revision }).await? {
            WriteOutcome::Compacted => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.shared.committed.load(Ordering::SeqCst))
    }
}

fn unexpected(outcome: WriteOutcome) -> StoreError {
    StoreError::Internal(format!("unexpected write outcome {outcome:?}"))
}
