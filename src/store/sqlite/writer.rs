//! The writer thread: it owns the only connection of a `SqliteStore` and runs
//! one command at a time, committing queued ingests together (group commit).

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rusqlite::{Connection, Transaction, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::ops;
use crate::store::{Attempt, Disposition, Ingested, NewEvent, StoreError};

/// Maximum number of `ingest` calls committed in one transaction. It bounds
/// the time a group holds the write lock and the memory of its replies.
pub const MAX_GROUP_CALLS: usize = 256;

pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// An operation other than `ingest`. It runs on the writer thread with the
/// connection and sends its own reply.
pub(super) type Job = Box<dyn FnOnce(&mut Connection) + Send>;

pub(super) enum Command {
    Ingest {
        events: Vec<NewEvent>,
        reply: Reply<Vec<Ingested>>,
    },
    Run(Job),
    /// Records a finished attempt. Attempts queued together commit in one
    /// transaction, as ingests do.
    Finish(Finish),
    /// Stops the thread after the commands queued before it.
    Close {
        reply: Reply<()>,
    },
}

/// A finished attempt to record. The reply is `false` when no job has the id.
pub(super) struct Finish {
    pub(super) job_id: String,
    pub(super) attempt: Attempt,
    pub(super) disposition: Disposition,
    pub(super) reply: Reply<bool>,
}

/// An operation queued behind an ingest group, run after the group's commit.
enum Deferred {
    Run(Job),
    Finish(Finish),
}

/// Counters of committed ingest and finish transactions, shared with the
/// store handle.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) transactions: AtomicU64,
    pub(super) calls: AtomicU64,
    pub(super) finish_transactions: AtomicU64,
    pub(super) finish_calls: AtomicU64,
}

pub(super) struct Writer {
    pub(super) conn: Connection,
    /// Whether ingest commits use `synchronous = FULL`. When they do, every
    /// other command commits with `NORMAL`: see [`Writer::set_synchronous`].
    pub(super) synchronous_full: bool,
    /// The level set on the connection now.
    pub(super) synchronous_is_full: bool,
    pub(super) commands: mpsc::Receiver<Command>,
    pub(super) counters: Arc<Counters>,
    /// Database path, for log lines.
    pub(super) path: String,
}

impl Writer {
    /// Runs commands until `Close` arrives or every sender is dropped, then
    /// checkpoints the WAL and closes the connection.
    pub(super) fn run(mut self) {
        tracing::info!(path = %self.path, "SQLite writer thread started");

        // A panic here is a bug. Catching it lets the thread log it through
        // tracing. Callers see `Unavailable` because their replies are dropped.
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| self.serve()));
        let close_reply = match outcome {
            Ok(reply) => reply,
            Err(_) => {
                tracing::error!(
                    path = %self.path,
                    "SQLite writer thread panicked; every store call now fails until restart"
                );
                return;
            }
        };

        // Reject commands sent from now on. Those already queued are dropped
        // below, so their callers get `Unavailable`.
        self.commands.close();
        let Writer { conn, path, .. } = self;
        let result = close_connection(conn, &path);
        if let Some(reply) = close_reply {
            let _ = reply.send(result);
        }
        tracing::info!(path = %path, "SQLite writer thread stopped");
    }

    /// Returns the reply of the `Close` command, or `None` when every sender
    /// was dropped.
    fn serve(&mut self) -> Option<Reply<()>> {
        let mut carried: Option<Command> = None;
        loop {
            let command = match carried.take() {
                Some(command) => command,
                None => self.commands.blocking_recv()?,
            };
            match command {
                Command::Ingest { events, reply } => {
                    let mut group = vec![(events, reply)];
                    // Take every ingest already queued. Other operations queued
                    // between them (delivery's claims and finished attempts) run
                    // right after the group's commit instead of splitting the
                    // group, so a busy delivery does not cost ingest its group
                    // commit. Each caller waits for its own reply, and the
                    // other operations keep their order among themselves.
                    let mut deferred: Vec<Deferred> = Vec::new();
                    while group.len() < MAX_GROUP_CALLS {
                        match self.commands.try_recv() {
                            Ok(Command::Ingest { events, reply }) => group.push((events, reply)),
                            Ok(Command::Run(job)) if deferred.len() < MAX_GROUP_CALLS => {
                                deferred.push(Deferred::Run(job))
                            }
                            Ok(Command::Finish(finish)) if deferred.len() < MAX_GROUP_CALLS => {
                                deferred.push(Deferred::Finish(finish))
                            }
                            Ok(other) => {
                                carried = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    match self.set_synchronous(true) {
                        Ok(()) => self.commit_group(group),
                        // Committing with less than FULL would break the
                        // promise that an acknowledged event survives a power cut.
                        Err(message) => {
                            for (_, reply) in group {
                                let _ = reply.send(Err(StoreError::Unavailable(message.clone())));
                            }
                        }
                    }
                    self.run_deferred(deferred);
                }
                Command::Run(job) => {
                    // A failure only leaves FULL in place, which is safe.
                    let _ = self.set_synchronous(false);
                    job(&mut self.conn);
                }
                Command::Finish(finish) => {
                    let mut finishes = vec![finish];
                    while finishes.len() < MAX_GROUP_CALLS {
                        match self.commands.try_recv() {
                            Ok(Command::Finish(finish)) => finishes.push(finish),
                            Ok(other) => {
                                carried = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    let _ = self.set_synchronous(false);
                    self.commit_finishes(finishes);
                }
                Command::Close { reply } => return Some(reply),
            }
        }
    }

    /// Runs the operations queued behind an ingest group in their order, each
    /// run of consecutive finished attempts in one transaction.
    fn run_deferred(&mut self, deferred: Vec<Deferred>) {
        let _ = self.set_synchronous(false);
        let mut finishes: Vec<Finish> = Vec::new();
        for operation in deferred {
            match operation {
                Deferred::Finish(finish) => finishes.push(finish),
                Deferred::Run(job) => {
                    if !finishes.is_empty() {
                        self.commit_finishes(std::mem::take(&mut finishes));
                    }
                    job(&mut self.conn);
                }
            }
        }
        if !finishes.is_empty() {
            self.commit_finishes(finishes);
        }
    }

    /// Records finished attempts in one transaction (see [`commit_batch`]).
    fn commit_finishes(&mut self, finishes: Vec<Finish>) {
        let prefix = format!("finish attempt failed on SQLite database {}", self.path);
        let calls = finishes
            .into_iter()
            .map(|finish| {
                let Finish {
                    job_id,
                    attempt,
                    disposition,
                    reply,
                } = finish;
                ((job_id, attempt, disposition), reply)
            })
            .collect();
        let finish =
            |conn: &Connection, (job_id, attempt, disposition): &(String, Attempt, Disposition)| {
                ops::finish_attempt(conn, job_id, attempt, disposition)
            };
        let counters = CommitCounters {
            transactions: &self.counters.finish_transactions,
            calls: &self.counters.finish_calls,
        };
        commit_batch(
            &mut self.conn,
            &self.path,
            &prefix,
            calls,
            &finish,
            &counters,
        );
    }

    /// Switches between `FULL` for ingest commits and `NORMAL` for the rest,
    /// when the store runs with `FULL`.
    ///
    /// Only an acknowledged event must survive a power cut. In WAL mode a
    /// `NORMAL` commit skips its fsync, and the next `FULL` commit's fsync of
    /// the WAL makes the earlier frames durable too. A power cut can therefore
    /// lose only the bookkeeping since the last ingest (claims, attempts,
    /// finished states), and every such job is delivered again, which the
    /// idempotent actions allow. Measured with `tools/bench.sh`, this lets
    /// delivery bookkeeping stop competing with ingest for fsyncs.
    fn set_synchronous(&mut self, ingest: bool) -> Result<(), String> {
        if !self.synchronous_full || self.synchronous_is_full == ingest {
            return Ok(());
        }
        let level = if ingest { "FULL" } else { "NORMAL" };
        match self.conn.pragma_update(None, "synchronous", level) {
            Ok(()) => {
                self.synchronous_is_full = ingest;
                Ok(())
            }
            Err(err) => {
                tracing::warn!(path = %self.path, error = %err, level, "setting SQLite synchronous failed");
                Err(format!(
                    "ingest failed: setting synchronous = {level} failed: {err}"
                ))
            }
        }
    }

    /// Commits a group of ingest calls in one transaction (see [`commit_batch`]).
    fn commit_group(&mut self, group: Vec<(Vec<NewEvent>, Reply<Vec<Ingested>>)>) {
        let counters = CommitCounters {
            transactions: &self.counters.transactions,
            calls: &self.counters.calls,
        };
        commit_batch(
            &mut self.conn,
            &self.path,
            "ingest failed",
            group,
            &|conn, events| ops::insert_events(conn, events),
            &counters,
        );
    }
}

/// The counters that a group's commits add to. A commit adds to them
/// before its replies are sent, so a caller that reads them after its reply
/// finds its own commit counted.
struct CommitCounters<'a> {
    transactions: &'a AtomicU64,
    calls: &'a AtomicU64,
}

impl CommitCounters<'_> {
    fn add(&self, calls: usize) {
        self.transactions.fetch_add(1, Ordering::Relaxed);
        self.calls.fetch_add(calls as u64, Ordering::Relaxed);
        tracing::trace!(calls, "committed a group transaction");
    }
}

/// Runs `operation` for each call of a group in one immediate transaction
/// and replies to each caller after the commit, which it adds to `counters`.
///
/// The group first runs without savepoints, because a savepoint copies every
/// page it changes into a sub-journal, which cost about a tenth of the writer
/// thread's time. When a call fails, the transaction is rolled back and the
/// group runs again with one savepoint per call, so that the error (such as a
/// reused job id) fails only that call. A failed commit fails every call.
///
/// An error after which SQLite rolled back the whole transaction (such as
/// SQLITE_FULL from a full disk or `max_page_count`) fails the call that got
/// it. The calls before it and the calls after it then run again as two
/// groups, so that on a nearly full disk the calls that fit still commit.
fn commit_batch<I, T, F>(
    conn: &mut Connection,
    path: &str,
    prefix: &str,
    calls: Vec<(I, Reply<T>)>,
    operation: &F,
    counters: &CommitCounters<'_>,
) where
    F: Fn(&Connection, &I) -> rusqlite::Result<T>,
{
    let size = calls.len();
    let tx = match begin_group(conn, path, prefix, calls.len()) {
        Ok(tx) => tx,
        Err(message) => return fail_all(calls, &message),
    };
    let mut results = Vec::with_capacity(size);
    let mut first_error = None;
    for (input, _) in &calls {
        match operation(&tx, input) {
            Ok(result) => results.push(result),
            Err(err) => {
                first_error = Some(err);
                break;
            }
        }
    }
    if results.len() == size {
        if let Err(err) = tx.commit() {
            let message = format!("{prefix}: committing the transaction failed: {err}");
            tracing::warn!(path, calls = size, error = %message,
                "a group transaction failed; nothing of its group was written");
            fail_all(calls, &message);
            return;
        }
        counters.add(size);
        for ((_, reply), result) in calls.into_iter().zip(results) {
            // A caller that went away (a cancelled request) still had its
            // work committed. For an ingest, the sender's retry is a duplicate.
            let _ = reply.send(Ok(result));
        }
        return;
    }
    let failed_at = results.len();
    drop(results);
    // After SQLITE_FULL, SQLITE_IOERR or SQLITE_NOMEM, SQLite may have rolled
    // back the whole transaction already, and the error is the one to report.
    if tx.is_autocommit() {
        drop(tx);
        let err = first_error.map_or_else(|| "unknown error".to_owned(), |err| err.to_string());
        let message = format!("{prefix}: {err}");
        tracing::warn!(path, calls = size, failed_call = failed_at, error = %message,
            "SQLite rolled back a group transaction; the rest of its group runs again");
        let mut before = calls;
        let after = before.split_off(failed_at + 1);
        if let Some((_, reply)) = before.pop() {
            let _ = reply.send(Err(StoreError::Unavailable(message)));
        }
        // Each part is shorter than this group, so the recursion ends.
        for part in [before, after] {
            if !part.is_empty() {
                commit_batch(conn, path, prefix, part, operation, counters);
            }
        }
        return;
    }
    if let Err(err) = tx.rollback() {
        let message = format!("{prefix}: rolling back the transaction failed: {err}");
        tracing::warn!(path, calls = size, error = %message,
            "a group transaction failed; nothing of its group was written");
        fail_all(calls, &message);
        return;
    }
    commit_with_savepoints(conn, path, prefix, calls, operation, counters);
}

/// Runs a group as [`commit_batch`] does, with each call in its own savepoint.
fn commit_with_savepoints<I, T, F>(
    conn: &mut Connection,
    path: &str,
    prefix: &str,
    calls: Vec<(I, Reply<T>)>,
    operation: &F,
    counters: &CommitCounters<'_>,
) where
    F: Fn(&Connection, &I) -> rusqlite::Result<T>,
{
    let size = calls.len();
    let mut tx = match begin_group(conn, path, prefix, size) {
        Ok(tx) => tx,
        Err(message) => return fail_all(calls, &message),
    };

    // Results of calls whose savepoint was released, waiting for the commit.
    let mut staged: Vec<(Reply<T>, T)> = Vec::with_capacity(size);
    let mut calls = calls.into_iter();
    let mut aborted: Option<String> = None;
    for (input, reply) in calls.by_ref() {
        let outcome = tx.savepoint().and_then(|savepoint| {
            let result = operation(&savepoint, &input)?;
            savepoint.commit()?;
            Ok(result)
        });
        match outcome {
            Ok(result) => staged.push((reply, result)),
            Err(err) => {
                let message = format!("{prefix}: {err}");
                let _ = reply.send(Err(StoreError::Unavailable(message.clone())));
                // After SQLITE_FULL, SQLITE_IOERR or SQLITE_NOMEM, SQLite may
                // roll back the whole transaction. Nothing of the group can commit then.
                // NOTE: unlike `commit_batch`, this fails the calls that fit
                // too. It happens only when another call of the group failed
                // first with an error that SQLite did not roll back.
                if tx.is_autocommit() {
                    aborted = Some(message);
                    break;
                }
                tracing::warn!(path, error = %err,
                    "a call of a group transaction failed; the rest of its group continues");
            }
        }
    }

    let commit_error = match aborted {
        Some(message) => Some(message),
        None => tx
            .commit()
            .err()
            .map(|err| format!("{prefix}: committing the transaction failed: {err}")),
    };
    match commit_error {
        None => {
            counters.add(staged.len());
            for (reply, result) in staged {
                let _ = reply.send(Ok(result));
            }
        }
        Some(message) => {
            tracing::warn!(path, calls = size, error = %message,
                "a group transaction failed; nothing of its group was written");
            let replies = staged
                .into_iter()
                .map(|(reply, _)| reply)
                .chain(calls.map(|(_, reply)| reply));
            fail_replies(replies, &message);
        }
    }
}

/// Starts the immediate transaction of a group of `calls` calls. On failure,
/// logs the error and returns the message for the callers.
fn begin_group<'c>(
    conn: &'c mut Connection,
    path: &str,
    prefix: &str,
    calls: usize,
) -> Result<Transaction<'c>, String> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|err| {
            tracing::warn!(path, calls, error = %err, "{prefix}: starting the transaction failed");
            format!("{prefix}: starting the transaction failed: {err}")
        })
}

/// Replies to every call of a group with the same error.
fn fail_all<I, T>(calls: Vec<(I, Reply<T>)>, message: &str) {
    fail_replies(calls.into_iter().map(|(_, reply)| reply), message);
}

/// Replies to each caller with the same error.
fn fail_replies<T>(replies: impl IntoIterator<Item = Reply<T>>, message: &str) {
    for reply in replies {
        let _ = reply.send(Err(StoreError::Unavailable(message.to_owned())));
    }
}

/// Checkpoints the WAL into the database file and closes the connection, so
/// that the next open starts without a WAL to replay.
fn close_connection(conn: Connection, path: &str) -> Result<(), StoreError> {
    let checkpoint: rusqlite::Result<(i64, i64, i64)> =
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        });
    match checkpoint {
        // The first column is 1 when another connection's read kept the
        // checkpoint from finishing. The WAL file then stays, and the next
        // open reads the commits from it.
        Ok((1, _, _)) => {
            tracing::info!(path = %path, "WAL checkpoint was blocked by another connection")
        }
        Ok(_) => {}
        Err(err) => {
            tracing::warn!(path = %path, error = %err, "WAL checkpoint at close failed")
        }
    }
    conn.close().map_err(|(_, err)| {
        tracing::warn!(path = %path, error = %err, "closing the SQLite connection failed");
        StoreError::Unavailable(format!("closing SQLite database {path} failed: {err}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(synchronous_full: bool) -> (Writer, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("w.db")).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        let level = if synchronous_full { "FULL" } else { "NORMAL" };
        conn.pragma_update(None, "synchronous", level).unwrap();
        let (_sender, commands) = mpsc::channel(1);
        let writer = Writer {
            conn,
            synchronous_full,
            synchronous_is_full: synchronous_full,
            commands,
            counters: Arc::default(),
            path: "w.db".into(),
        };
        (writer, dir)
    }

    /// SQLite reports `synchronous` as 2 for FULL and 1 for NORMAL.
    fn level(writer: &Writer) -> i64 {
        writer
            .conn
            .query_row("PRAGMA synchronous", [], |row| row.get(0))
            .unwrap()
    }

    #[test]
    fn ingest_commits_full_and_bookkeeping_normal() {
        let (mut writer, _dir) = writer(true);
        writer.set_synchronous(false).unwrap();
        assert_eq!(level(&writer), 1);
        writer.set_synchronous(true).unwrap();
        assert_eq!(level(&writer), 2);
    }

    #[test]
    fn normal_store_stays_normal_for_ingest() {
        let (mut writer, _dir) = writer(false);
        writer.set_synchronous(true).unwrap();
        assert_eq!(level(&writer), 1);
    }
}
