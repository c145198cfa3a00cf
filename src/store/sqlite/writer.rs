//! The writer thread: it owns the only connection of a `SqliteStore` and runs
//! one command at a time, committing queued ingests together (group commit).

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::ops;
use crate::store::{Ingested, NewEvent, StoreError};

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
    /// Stops the thread after the commands queued before it.
    Close {
        reply: Reply<()>,
    },
}

/// Counters of committed ingest transactions, shared with the store handle.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) transactions: AtomicU64,
    pub(super) calls: AtomicU64,
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
                    let mut deferred: Vec<Job> = Vec::new();
                    while group.len() < MAX_GROUP_CALLS {
                        match self.commands.try_recv() {
                            Ok(Command::Ingest { events, reply }) => group.push((events, reply)),
                            Ok(Command::Run(job)) if deferred.len() < MAX_GROUP_CALLS => {
                                deferred.push(job)
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
                    for job in deferred {
                        let _ = self.set_synchronous(false);
                        job(&mut self.conn);
                    }
                }
                Command::Run(job) => {
                    // A failure only leaves FULL in place, which is safe.
                    let _ = self.set_synchronous(false);
                    job(&mut self.conn);
                }
                Command::Close { reply } => return Some(reply),
            }
        }
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

    /// Commits a group of ingest calls in one transaction. Each call runs in
    /// its own savepoint, so an error in one call (such as a reused job id)
    /// fails only that call. The exceptions are a failed commit and an error
    /// after which SQLite rolled back the transaction: both fail the whole group.
    fn commit_group(&mut self, group: Vec<(Vec<NewEvent>, Reply<Vec<Ingested>>)>) {
        let size = group.len();
        let mut tx = match self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
        {
            Ok(tx) => tx,
            Err(err) => {
                tracing::warn!(path = %self.path, calls = size, error = %err,
                    "starting an ingest transaction failed");
                let message = format!("ingest failed: starting the transaction failed: {err}");
                for (_, reply) in group {
                    let _ = reply.send(Err(StoreError::Unavailable(message.clone())));
                }
                return;
            }
        };

        // Results of calls whose savepoint was released, waiting for the commit.
        let mut staged: Vec<(Reply<Vec<Ingested>>, Vec<Ingested>)> = Vec::with_capacity(size);
        let mut group = group.into_iter();
        let mut aborted: Option<String> = None;
        for (events, reply) in group.by_ref() {
            let outcome = tx.savepoint().and_then(|savepoint| {
                let results = ops::insert_events(&savepoint, &events)?;
                savepoint.commit()?;
                Ok(results)
            });
            match outcome {
                Ok(results) => staged.push((reply, results)),
                Err(err) => {
                    let message = format!("ingest failed: {err}");
                    // After SQLITE_FULL, SQLITE_IOERR or SQLITE_NOMEM, SQLite may
                    // roll back the whole transaction. Nothing of the group can commit then.
                    if tx.is_autocommit() {
                        let _ = reply.send(Err(StoreError::Unavailable(message.clone())));
                        aborted = Some(message);
                        break;
                    }
                    tracing::warn!(path = %self.path, error = %err,
                        "an ingest call failed; the rest of its group continues");
                    let _ = reply.send(Err(StoreError::Unavailable(message)));
                }
            }
        }

        let commit_error = match aborted {
            Some(message) => Some(message),
            None => tx
                .commit()
                .err()
                .map(|err| format!("ingest failed: committing the transaction failed: {err}")),
        };
        match commit_error {
            None => {
                self.counters.transactions.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .calls
                    .fetch_add(staged.len() as u64, Ordering::Relaxed);
                tracing::trace!(calls = staged.len(), "committed an ingest group");
                for (reply, results) in staged {
                    // A caller that went away (a cancelled request) still had its
                    // events committed; the sender's retry will be a duplicate.
                    let _ = reply.send(Ok(results));
                }
            }
            Some(message) => {
                tracing::warn!(path = %self.path, calls = size, error = %message,
                    "an ingest transaction failed; nothing of its group was written");
                let replies = staged
                    .into_iter()
                    .map(|(reply, _)| reply)
                    .chain(group.map(|(_, reply)| reply));
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Unavailable(message.clone())));
                }
            }
        }
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
