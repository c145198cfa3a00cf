//! SQLite implementation of the store.
//!
//! One database file in WAL mode. A dedicated OS thread owns the only
//! connection of a [`SqliteStore`] and runs every operation, reads included,
//! so async calls never block a tokio worker on SQLite (only the synchronous
//! [`SqliteStore::open`] and [`SqliteStore::open_existing`] do file I/O on the
//! calling thread). Concurrent `ingest` calls that are queued together are
//! committed in one transaction, so one fsync covers many requests (group
//! commit). Each caller still gets its reply
//! only after that commit.
//!
//! `synchronous = FULL` is the default, so a committed ingest survives a power
//! cut and not only a process crash.

mod operator;
mod ops;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::{
    Attempt, ClaimedJob, Disposition, EventDetail, EventFilter, EventSummary, Ingested, JobCounts,
    JobRecord, Millis, NewEvent, RetriedJob, Store, StoreError,
};
use operator::RetryOutcome;
use schema::OpenMode;
use writer::{Command, Counters, Finish, Writer};

pub use writer::MAX_GROUP_CALLS;

/// Capacity of the command queue. When it is full, callers wait
/// asynchronously, which limits the memory taken by a burst.
const QUEUE_CAPACITY: usize = 4096;

/// Settings of a [`SqliteStore`].
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Database file, created when missing. Its directory must exist.
    pub path: PathBuf,
    /// `synchronous = FULL` when true (the default). False selects `NORMAL`,
    /// where a power cut can lose the last commits, but not a process crash.
    pub synchronous_full: bool,
}

impl SqliteOptions {
    /// Returns options for `path` with `synchronous = FULL`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteOptions {
            path: path.into(),
            synchronous_full: true,
        }
    }
}

/// Counts of committed ingest transactions and the `ingest` calls they
/// contained, since the store was opened, and the same for `finish_attempt`.
/// Calls per transaction above one show group commit at work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupCommitStats {
    pub transactions: u64,
    pub calls: u64,
    pub finish_transactions: u64,
    pub finish_calls: u64,
}

/// The SQLite store. See the module documentation for its threading model.
pub struct SqliteStore {
    commands: mpsc::Sender<Command>,
    thread: Mutex<Option<JoinHandle<()>>>,
    closed: AtomicBool,
    counters: Arc<Counters>,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens or creates the database file, applies the pragmas and migrates the
    /// schema, then starts the writer thread. Runs blocking file I/O, so call it
    /// at startup or from `spawn_blocking`.
    pub fn open(options: SqliteOptions) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with_mode(options, OpenMode::Create)
    }

    /// Opens a database file that revokd created earlier, as [`SqliteStore::open`]
    /// does, but fails with `StoreError::Unavailable` when the file is missing
    /// or has no revokd schema instead of creating one. For tools such as
    /// `revokd events`, which may run while a server uses the same file: WAL
    /// mode lets them read during its writes, and a write waits up to
    /// 5 seconds for the server's write lock.
    pub fn open_existing(options: SqliteOptions) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with_mode(options, OpenMode::Existing)
    }

    fn open_with_mode(options: SqliteOptions, mode: OpenMode) -> Result<SqliteStore, StoreError> {
        let conn = schema::open_connection(&options.path, options.synchronous_full, mode)?;
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let counters = Arc::new(Counters::default());
        let writer = Writer {
            conn,
            synchronous_full: options.synchronous_full,
            synchronous_is_full: options.synchronous_full,
            commands: receiver,
            counters: Arc::clone(&counters),
            path: options.path.display().to_string(),
        };
        let thread = std::thread::Builder::new()
            .name("revokd-sqlite".to_owned())
            .spawn(move || writer.run())
            .map_err(|err| {
                StoreError::Unavailable(format!(
                    "starting the writer thread for SQLite database {} failed: {err}",
                    options.path.display()
                ))
            })?;
        Ok(SqliteStore {
            commands: sender,
            thread: Mutex::new(Some(thread)),
            closed: AtomicBool::new(false),
            counters,
            path: options.path,
        })
    }

    /// Stops the writer thread after it has run every command queued before
    /// this call, checkpoints the WAL and closes the connection. Every later
    /// call on the store returns `StoreError::Unavailable`. Closing twice is
    /// not an error.
    pub async fn close(&self) -> Result<(), StoreError> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let (reply, response) = oneshot::channel();
        let result = match self.commands.send(Command::Close { reply }).await {
            Ok(()) => response
                .await
                .unwrap_or_else(|_| Err(self.writer_stopped("close"))),
            Err(_) => Err(self.writer_stopped("close")),
        };

        let thread = self
            .thread
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(thread) = thread {
            // The thread returns right after its reply, so this wait is short.
            let joined = tokio::task::spawn_blocking(move || thread.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                tracing::warn!(path = %self.path.display(), "joining the SQLite writer thread failed");
            }
        }
        result
    }

    /// Sets SQLite's `max_page_count` on the writer connection and returns the
    /// limit in effect. SQLite never lowers the limit below the current file
    /// size, so `set_max_page_count(1)` makes every write that needs a new page
    /// fail with "database or disk is full", as a full disk would. Pass
    /// `u32::MAX` to lift the limit. The setting lasts until the store closes.
    /// Meant for tests that simulate a full disk.
    pub async fn set_max_page_count(&self, pages: u32) -> Result<u64, StoreError> {
        self.run("set max_page_count", move |conn| {
            conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |row| {
                row.get(0)
            })
        })
        .await
    }

    /// Returns the path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns the group commit counters since the store was opened.
    pub fn group_commit_stats(&self) -> GroupCommitStats {
        GroupCommitStats {
            transactions: self.counters.transactions.load(Ordering::Relaxed),
            calls: self.counters.calls.load(Ordering::Relaxed),
            finish_transactions: self.counters.finish_transactions.load(Ordering::Relaxed),
            finish_calls: self.counters.finish_calls.load(Ordering::Relaxed),
        }
    }

    fn writer_stopped(&self, operation: &str) -> StoreError {
        let state = if self.closed.load(Ordering::SeqCst) {
            "the store is closed"
        } else {
            "the writer thread stopped; see the log for the cause and restart revokd"
        };
        StoreError::Unavailable(format!(
            "{operation} failed on SQLite database {}: {state}",
            self.path.display()
        ))
    }

    /// Sends a command to the writer thread and waits for its reply.
    async fn request<T>(
        &self,
        operation: &str,
        command: Command,
        response: oneshot::Receiver<Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        if self.commands.send(command).await.is_err() {
            return Err(self.writer_stopped(operation));
        }
        response
            .await
            .unwrap_or_else(|_| Err(self.writer_stopped(operation)))
    }

    /// Runs `operation` on the writer thread without a transaction of its own.
    async fn run<T, F>(&self, name: &'static str, operation: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (reply, response) = oneshot::channel();
        let path = self.path.display().to_string();
        let job = Box::new(move |conn: &mut Connection| {
            let result = operation(conn).map_err(|err| {
                StoreError::Unavailable(format!("{name} failed on SQLite database {path}: {err}"))
            });
            let _ = reply.send(result);
        });
        self.request(name, Command::Run(job), response).await
    }

    /// Runs `operation` on the writer thread in an immediate transaction that
    /// commits when it returns `Ok` and rolls back otherwise.
    async fn run_in_transaction<T, F>(
        &self,
        name: &'static str,
        operation: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.run(name, move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = operation(&tx)?;
            tx.commit()?;
            Ok(value)
        })
        .await
    }
}

fn now_millis() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| Millis::try_from(elapsed.as_millis()).unwrap_or(Millis::MAX))
        .unwrap_or(0)
}

#[async_trait]
impl Store for SqliteStore {
    async fn ingest(&self, events: Vec<NewEvent>) -> Result<Vec<Ingested>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, response) = oneshot::channel();
        self.request("ingest", Command::Ingest { events, reply }, response)
            .await
    }

    async fn claim_due(
        &self,
        now: Millis,
        limit: usize,
        lease: Millis,
        owner: &str,
    ) -> Result<Vec<ClaimedJob>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let owner = owner.to_owned();
        self.run_in_transaction("claim due jobs", move |conn| {
            ops::claim_due(conn, now, limit, lease, &owner)
        })
        .await
    }

    async fn next_due(&self) -> Result<Option<Millis>, StoreError> {
        self.run("find next due job", |conn| ops::next_due(conn))
            .await
    }

    async fn finish_attempt(
        &self,
        job_id: &str,
        attempt: Attempt,
        disposition: Disposition,
    ) -> Result<(), StoreError> {
        let (reply, response) = oneshot::channel();
        let finish = Finish {
            job_id: job_id.to_owned(),
            attempt,
            disposition,
            reply,
        };
        let found = self
            .request("finish attempt", Command::Finish(finish), response)
            .await?;
        if found {
            Ok(())
        } else {
            Err(StoreError::NotFound(format!("job {job_id}")))
        }
    }

    async fn release(&self, owner: &str) -> Result<usize, StoreError> {
        let owner = owner.to_owned();
        self.run_in_transaction("release leases", move |conn| ops::release(conn, &owner))
            .await
    }

    async fn record_status_change(
        &self,
        target: &str,
        user: &str,
        status: bool,
        at: Millis,
    ) -> Result<(), StoreError> {
        let target = target.to_owned();
        let user = user.to_owned();
        self.run_in_transaction("record status change", move |conn| {
            ops::record_status_change(conn, &target, &user, status, at)
        })
        .await
    }

    async fn status_changed_since(
        &self,
        user: &str,
        status: bool,
        since: Millis,
    ) -> Result<bool, StoreError> {
        let user = user.to_owned();
        self.run("look up status changes", move |conn| {
            ops::status_changed_since(conn, &user, status, since)
        })
        .await
    }

    async fn prune(&self, before: Millis) -> Result<usize, StoreError> {
        self.run_in_transaction("prune", move |conn| ops::prune(conn, before))
            .await
    }

    async fn check_writable(&self) -> Result<(), StoreError> {
        let now = now_millis();
        self.run_in_transaction("write check", move |conn| ops::write_heartbeat(conn, now))
            .await
    }

    async fn job_counts(&self) -> Result<JobCounts, StoreError> {
        let now = now_millis();
        self.run("count jobs", move |conn| ops::job_counts(conn, now))
            .await
    }

    async fn event_jobs(&self, event_id: &str) -> Result<Vec<JobRecord>, StoreError> {
        let id = event_id.to_owned();
        // One read transaction, so jobs and attempts come from the same snapshot.
        let jobs = self
            .run_in_transaction("read event jobs", move |conn| ops::event_jobs(conn, &id))
            .await?;
        jobs.ok_or_else(|| StoreError::NotFound(format!("event {event_id}")))
    }

    async fn list_events(&self, filter: EventFilter) -> Result<Vec<EventSummary>, StoreError> {
        let now = now_millis();
        // One read transaction, so the events and their job counts come from
        // the same snapshot.
        self.run_in_transaction("list events", move |conn| {
            operator::list_events(conn, &filter, now)
        })
        .await
    }

    async fn event_detail(&self, event_id: &str) -> Result<EventDetail, StoreError> {
        let id = event_id.to_owned();
        let event = self
            .run_in_transaction("read event", move |conn| operator::event_detail(conn, &id))
            .await?;
        event.ok_or_else(|| StoreError::NotFound(format!("event {event_id}")))
    }

    async fn retry_job(&self, job_id: &str, now: Millis) -> Result<RetriedJob, StoreError> {
        let id = job_id.to_owned();
        let outcome = self
            .run_in_transaction("retry job", move |conn| operator::retry_job(conn, &id, now))
            .await?;
        match outcome {
            RetryOutcome::Retried(job) => {
                tracing::info!(job_id, event_id = %job.event_id, attempts = job.attempts,
                    "moved a dead job back to pending");
                Ok(job)
            }
            RetryOutcome::NotFound => Err(StoreError::NotFound(format!("job {job_id}"))),
            RetryOutcome::NotDead(state) => Err(StoreError::InvalidState(format!(
                "job {job_id} is {}, not dead; only a dead job can be retried",
                state.as_str()
            ))),
        }
    }

    async fn retry_all_dead(&self, now: Millis) -> Result<usize, StoreError> {
        let retried = self
            .run_in_transaction("retry dead jobs", move |conn| {
                operator::retry_all_dead(conn, now)
            })
            .await?;
        tracing::info!(jobs = retried, "moved every dead job back to pending");
        Ok(retried)
    }
}
