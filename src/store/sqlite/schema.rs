//! Connection setup and schema migrations, versioned with `PRAGMA user_version`.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::store::StoreError;

/// How long a connection waits for another connection's lock (for example a
/// CLI reading while the server writes) before it fails with `SQLITE_BUSY`.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Schema migrations in order: `MIGRATIONS[n]` upgrades `user_version` n to n + 1.
/// Append new entries and never edit a released one.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE events (
    id             TEXT PRIMARY KEY,
    source         TEXT NOT NULL,
    delivery_key   TEXT NOT NULL,
    types          TEXT NOT NULL,   -- JSON array of event type names
    received_at    INTEGER NOT NULL,
    occurred_at    INTEGER,
    ignored_reason TEXT,
    UNIQUE (source, delivery_key)
);
CREATE INDEX events_received_at ON events (received_at);

CREATE TABLE jobs (
    id              TEXT PRIMARY KEY,
    event_id        TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    rule            TEXT NOT NULL,
    action          TEXT NOT NULL,
    target          TEXT NOT NULL,
    user_kind       TEXT NOT NULL,
    user            TEXT NOT NULL,
    session_id      TEXT,
    event_type      TEXT NOT NULL,
    dry_run         INTEGER NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'done', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_until     INTEGER,
    note            TEXT,
    last_error_type TEXT,
    last_error      TEXT,
    finished_at     INTEGER
);
CREATE INDEX jobs_due ON jobs (state, next_attempt_at);
CREATE INDEX jobs_event ON jobs (event_id);
CREATE INDEX jobs_lease_owner ON jobs (lease_owner) WHERE lease_owner IS NOT NULL;

CREATE TABLE attempts (
    job_id      TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    number      INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER NOT NULL,
    status      INTEGER,
    error_type  TEXT,
    error       TEXT,
    PRIMARY KEY (job_id, number)
);

CREATE TABLE status_changes (
    target TEXT NOT NULL,
    user   TEXT NOT NULL,
    status INTEGER NOT NULL,
    at     INTEGER NOT NULL
);
CREATE INDEX status_changes_user ON status_changes (user, status, at);
CREATE INDEX status_changes_at ON status_changes (at);

-- One row that check_writable updates, so a readiness probe makes a real commit.
CREATE TABLE heartbeat (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    written_at INTEGER NOT NULL
);
INSERT INTO heartbeat (id, written_at) VALUES (1, 0);
"#,
    r#"
-- Operator retries of dead jobs. A retry copies `attempts` into
-- `attempts_before_retry` and sets `retried_at`. Workers count the attempt
-- budget from the first and the job's age from the second, while attempt
-- numbers continue from `attempts`.
ALTER TABLE jobs ADD COLUMN attempts_before_retry INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN retried_at INTEGER;
-- Finds the events that have a job in a given state, for `revokd events list --state`.
CREATE INDEX jobs_state_event ON jobs (state, event_id);
"#,
];

/// Schema version that this build creates and expects.
pub(super) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Whether opening a database may create it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OpenMode {
    /// Create the file and the schema when the file is missing.
    Create,
    /// Fail when the file is missing or has no revokd schema.
    Existing,
}

/// Opens the database file, applies the connection pragmas and migrates the
/// schema to [`SCHEMA_VERSION`]. Every error names `path`.
pub(super) fn open_connection(
    path: &Path,
    synchronous_full: bool,
    mode: OpenMode,
) -> Result<Connection, StoreError> {
    let path_text = path.display();
    let fail = |what: &str, err: rusqlite::Error| {
        StoreError::Unavailable(format!(
            "{what} failed for SQLite database {path_text}: {err}. Check that the directory \
             exists and is writable, and that the file is a revokd database"
        ))
    };

    if mode == OpenMode::Existing && !path.exists() {
        return Err(StoreError::Unavailable(format!(
            "SQLite database {path_text} does not exist. Check the path: it must be the \
             file that `revokd serve` uses (store.url in its config)"
        )));
    }
    let conn = match mode {
        OpenMode::Create => Connection::open(path),
        OpenMode::Existing => Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        ),
    };
    let conn = conn.map_err(|err| fail("opening", err))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|err| fail("setting busy_timeout", err))?;

    // Checked before the pragmas below, which would write to a foreign file.
    if mode == OpenMode::Existing {
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(|err| fail("reading the schema version", err))?;
        if version == 0 {
            return Err(StoreError::Unavailable(format!(
                "SQLite database {path_text} has no revokd schema (user_version is 0). \
                 Check the store path: it must be the file that `revokd serve` uses"
            )));
        }
    }

    let journal_mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(|err| fail("setting journal_mode", err))?;
    if !journal_mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Unavailable(format!(
            "SQLite database {path_text} cannot use WAL mode (journal_mode is {journal_mode}). \
             Put the file on a local file system"
        )));
    }

    let synchronous = if synchronous_full { "FULL" } else { "NORMAL" };
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = ON;"
    ))
    .map_err(|err| fail("setting synchronous and foreign_keys", err))?;

    migrate(conn, path)
}

/// Applies every migration after the file's `user_version`, each in its own
/// transaction together with the version bump.
fn migrate(mut conn: Connection, path: &Path) -> Result<Connection, StoreError> {
    let path_text = path.display();
    let fail = |err: rusqlite::Error| {
        StoreError::Unavailable(format!(
            "migrating the schema of SQLite database {path_text} failed: {err}. \
             Check that the file is writable and the disk is not full"
        ))
    };

    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(fail)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Unavailable(format!(
            "SQLite database {path_text} has schema version {version}, but this revokd \
             supports at most {SCHEMA_VERSION}. Upgrade revokd or use another database file"
        )));
    }
    if version < 0 {
        return Err(StoreError::Unavailable(format!(
            "SQLite database {path_text} has invalid schema version {version}, so revokd \
             did not create it. Use another database file"
        )));
    }

    for (from, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let to = from + 1;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(fail)?;
        tx.execute_batch(sql).map_err(fail)?;
        // PRAGMA takes no bound parameters, so `to`, a small integer, is formatted in.
        tx.execute_batch(&format!("PRAGMA user_version = {to}"))
            .map_err(fail)?;
        tx.commit().map_err(fail)?;
        tracing::info!(path = %path_text, from, to, "migrated SQLite schema");
    }
    Ok(conn)
}
