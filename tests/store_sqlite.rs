//! Tests of `SqliteStore` against real database files in temporary directories.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use revokd::store::sqlite::{SqliteOptions, SqliteStore};
use revokd::store::{
    Attempt, AttemptRecord, Disposition, EventFilter, Ingested, JobCounts, JobState, Millis,
    NewEvent, NewJob, RetriedJob, Store, StoreError, DEFAULT_EVENT_LIMIT,
};
use tempfile::TempDir;

fn db_path(dir: &TempDir) -> PathBuf {
    dir.path().join("revokd.db")
}

fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(SqliteOptions::new(path)).expect("open store")
}

fn temp_store() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("create temp dir");
    let store = open(&db_path(&dir));
    (dir, store)
}

fn job(id: &str) -> NewJob {
    NewJob {
        id: id.to_owned(),
        rule: "logout-on-password-change".to_owned(),
        action: "delete_sessions".to_owned(),
        target: "main".to_owned(),
        user_kind: "id".to_owned(),
        user: "6650c1f2a7b3e9d4c021".to_owned(),
        session_id: None,
        event_type: "users.6650c1f2a7b3e9d4c021.update.password".to_owned(),
        dry_run: false,
    }
}

/// Builds an event from source `appwrite` with `jobs` jobs named `<id>-job<n>`.
fn event(id: &str, key: &str, received_at: Millis, jobs: usize) -> NewEvent {
    NewEvent {
        id: id.to_owned(),
        source: "appwrite".to_owned(),
        delivery_key: key.to_owned(),
        types: vec![
            "users.*.update.password".to_owned(),
            "users.6650c1f2a7b3e9d4c021.update.password".to_owned(),
        ],
        received_at,
        occurred_at: Some(received_at - 5),
        ignored_reason: if jobs == 0 {
            Some("no rule matched".to_owned())
        } else {
            None
        },
        jobs: (0..jobs).map(|n| job(&format!("{id}-job{n}"))).collect(),
    }
}

fn attempt(started_at: Millis, status: Option<u16>, error_type: Option<&str>) -> Attempt {
    Attempt {
        started_at,
        finished_at: started_at + 12,
        status,
        error_type: error_type.map(str::to_owned),
        error: error_type.map(|kind| format!("Appwrite returned {kind}")),
    }
}

fn now_millis() -> Millis {
    let elapsed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    Millis::try_from(elapsed.as_millis()).expect("time fits in i64")
}

fn new_event(event_id: &str, jobs: usize) -> Ingested {
    Ingested::New {
        event_id: event_id.to_owned(),
        jobs,
    }
}

fn duplicate(event_id: &str) -> Ingested {
    Ingested::Duplicate {
        event_id: event_id.to_owned(),
    }
}

#[tokio::test]
async fn ingest_stores_event_and_jobs() {
    let (_dir, store) = temp_store();

    let results = store
        .ingest(vec![event("ev1", "key1", 1000, 2)])
        .await
        .unwrap();
    assert_eq!(results, vec![new_event("ev1", 2)]);

    let jobs = store.event_jobs("ev1").await.unwrap();
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[0].id, "ev1-job0");
    assert_eq!(jobs[1].id, "ev1-job1");
    assert_eq!(jobs[0].rule, "logout-on-password-change");
    assert_eq!(jobs[0].action, "delete_sessions");
    assert_eq!(jobs[0].target, "main");
    assert_eq!(jobs[0].user, "6650c1f2a7b3e9d4c021");
    assert_eq!(jobs[0].state, JobState::Pending);
    assert_eq!(jobs[0].note, None);
    assert!(jobs[0].attempts.is_empty());

    let counts = store.job_counts().await.unwrap();
    assert_eq!(
        counts,
        JobCounts {
            pending: 2,
            claimed: 0,
            done: 0,
            dead: 0
        }
    );
}

#[tokio::test]
async fn ingest_event_without_jobs() {
    let (_dir, store) = temp_store();

    let results = store
        .ingest(vec![event("ev1", "key1", 1000, 0)])
        .await
        .unwrap();
    assert_eq!(results, vec![new_event("ev1", 0)]);

    let jobs = store.event_jobs("ev1").await.unwrap();
    assert!(jobs.is_empty());
    assert_eq!(store.next_due().await.unwrap(), None);
}

#[tokio::test]
async fn ingest_empty_batch() {
    let (_dir, store) = temp_store();

    let results = store.ingest(Vec::new()).await.unwrap();
    assert!(results.is_empty());
}

#[tokio::test]
async fn ingest_duplicate_across_batches() {
    let (_dir, store) = temp_store();
    store
        .ingest(vec![event("ev1", "key1", 1000, 2)])
        .await
        .unwrap();

    let results = store
        .ingest(vec![event("ev2", "key1", 2000, 3)])
        .await
        .unwrap();
    assert_eq!(results, vec![duplicate("ev1")]);

    let missing = store.event_jobs("ev2").await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
    let counts = store.job_counts().await.unwrap();
    assert_eq!(counts.pending, 2);
}

#[tokio::test]
async fn ingest_duplicate_within_batch() {
    let (_dir, store) = temp_store();
    let mut other_source = event("ev3", "key1", 1000, 1);
    other_source.source = "clerk".to_owned();

    let results = store
        .ingest(vec![
            event("ev1", "key1", 1000, 1),
            event("ev2", "key1", 1000, 1),
            other_source,
        ])
        .await
        .unwrap();

    assert_eq!(results.len(), 3);
    assert_eq!(results[0], new_event("ev1", 1));
    assert_eq!(results[1], duplicate("ev1"));
    // The same delivery key from another source is a different delivery.
    assert_eq!(results[2], new_event("ev3", 1));
    assert_eq!(store.job_counts().await.unwrap().pending, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_same_key_stores_one_event() {
    let (_dir, store) = temp_store();
    let store = Arc::new(store);

    let mut tasks = Vec::new();
    for n in 0..50 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            store
                .ingest(vec![event(&format!("ev{n}"), "same-key", 1000, 1)])
                .await
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        let mut result = task.await.unwrap().unwrap();
        assert_eq!(result.len(), 1);
        results.push(result.remove(0));
    }

    let stored: Vec<&String> = results
        .iter()
        .filter_map(|result| match result {
            Ingested::New { event_id, .. } => Some(event_id),
            Ingested::Duplicate { .. } => None,
        })
        .collect();
    assert_eq!(stored.len(), 1, "{results:?}");
    let stored_id = stored[0].clone();
    for result in &results {
        if let Ingested::Duplicate { event_id } = result {
            assert_eq!(event_id, &stored_id);
        }
    }
    assert_eq!(store.job_counts().await.unwrap().pending, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_commit_batches_queued_ingests() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = Arc::new(open(&path));

    // A second connection holds the write lock, so the writer thread waits
    // (busy_timeout) on its first transaction while the other calls queue up.
    let blocker = rusqlite::Connection::open(&path).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();

    let calls = 200;
    let mut tasks = Vec::new();
    for n in 0..calls {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let id = format!("ev{n:03}");
            store.ingest(vec![event(&id, &id, 1000 + n, 1)]).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    blocker.execute_batch("COMMIT").unwrap();

    for (n, task) in tasks.into_iter().enumerate() {
        let result = task.await.unwrap().unwrap();
        assert_eq!(result, vec![new_event(&format!("ev{n:03}"), 1)]);
    }

    let stats = store.group_commit_stats();
    assert_eq!(stats.calls, calls as u64);
    // Expected: one transaction for the call that waited on the lock and one
    // for the 199 queued behind it.
    assert!(stats.transactions <= 5, "{stats:?}");

    store.close().await.unwrap();
    drop(store);
    let reopened = open(&path);
    for n in 0..calls {
        let jobs = reopened.event_jobs(&format!("ev{n:03}")).await.unwrap();
        assert_eq!(jobs.len(), 1, "event ev{n:03}");
    }
    assert_eq!(reopened.job_counts().await.unwrap().pending, calls as u64);
}

#[tokio::test]
async fn reopen_after_close_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = open(&path);
    store
        .ingest(vec![event("ev1", "key1", 1000, 2)])
        .await
        .unwrap();
    let claimed = store.claim_due(1000, 1, 60_000, "worker-a").await.unwrap();
    assert_eq!(claimed.len(), 1);
    store
        .finish_attempt(
            &claimed[0].id,
            attempt(1001, Some(204), None),
            Disposition::Done { note: None },
        )
        .await
        .unwrap();
    store
        .record_status_change("main", "user1", false, 1500)
        .await
        .unwrap();
    store.close().await.unwrap();
    drop(store);

    let reopened = open(&path);
    let jobs = reopened.event_jobs("ev1").await.unwrap();
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[0].state, JobState::Done);
    assert_eq!(jobs[0].attempts.len(), 1);
    assert_eq!(jobs[1].state, JobState::Pending);
    assert!(reopened
        .status_changed_since("user1", false, 1500)
        .await
        .unwrap());
    let again = reopened
        .ingest(vec![event("ev9", "key1", 3000, 1)])
        .await
        .unwrap();
    assert_eq!(again, vec![duplicate("ev1")]);
}

#[tokio::test]
async fn reopen_after_drop_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = open(&path);
    store
        .ingest(vec![event("ev1", "key1", 1000, 3)])
        .await
        .unwrap();
    // No close: the acknowledged commit must be visible to the next open.
    drop(store);

    let reopened = open(&path);
    let jobs = reopened.event_jobs("ev1").await.unwrap();
    assert_eq!(jobs.len(), 3);
    assert_eq!(reopened.job_counts().await.unwrap().pending, 3);
}

#[tokio::test]
async fn open_applies_wal_and_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = open(&path);
    store.check_writable().await.unwrap();

    let conn = rusqlite::Connection::open(&path).unwrap();
    let journal_mode: String = conn
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(journal_mode, "wal");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, 2);
}

#[tokio::test]
async fn open_with_synchronous_normal() {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteOptions {
        path: db_path(&dir),
        synchronous_full: false,
    };
    let store = SqliteStore::open(options).unwrap();

    let results = store
        .ingest(vec![event("ev1", "key1", 1000, 1)])
        .await
        .unwrap();
    assert_eq!(results, vec![new_event("ev1", 1)]);
}

#[tokio::test]
async fn open_missing_directory_names_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing").join("revokd.db");

    let result = SqliteStore::open(SqliteOptions::new(&path));
    let Err(StoreError::Unavailable(message)) = result else {
        panic!("expected Unavailable");
    };
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("directory exists"), "{message}");
}

#[tokio::test]
async fn open_rejects_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("PRAGMA user_version = 99").unwrap();
    drop(conn);

    let result = SqliteStore::open(SqliteOptions::new(&path));
    let Err(StoreError::Unavailable(message)) = result else {
        panic!("expected Unavailable");
    };
    assert!(message.contains("schema version 99"), "{message}");
    assert!(message.contains("Upgrade revokd"), "{message}");
}

#[tokio::test]
async fn calls_after_close_fail() {
    let (_dir, store) = temp_store();
    store.close().await.unwrap();

    let ingest = store.ingest(vec![event("ev1", "key1", 1000, 1)]).await;
    assert!(
        matches!(ingest, Err(StoreError::Unavailable(_))),
        "{ingest:?}"
    );
    let counts = store.job_counts().await;
    assert!(
        matches!(counts, Err(StoreError::Unavailable(_))),
        "{counts:?}"
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn claim_waits_for_due_time() {
    let (_dir, store) = temp_store();
    store
        .ingest(vec![event("ev1", "key1", 1000, 1)])
        .await
        .unwrap();

    let early = store.claim_due(999, 10, 500, "worker-a").await.unwrap();
    assert!(early.is_empty());

    let claimed = store.claim_due(1000, 10, 500, "worker-a").await.unwrap();
    assert_eq!(claimed.len(), 1);
    let job = &claimed[0];
    assert_eq!(job.id, "ev1-job0");
    assert_eq!(job.event_id, "ev1");
    assert_eq!(job.source, "appwrite");
    assert_eq!(job.rule, "logout-on-password-change");
    assert_eq!(job.action, "delete_sessions");
    assert_eq!(job.target, "main");
    assert_eq!(job.user_kind, "id");
    assert_eq!(job.user, "6650c1f2a7b3e9d4c021");
    assert_eq!(job.session_id, None);
    assert_eq!(job.event_type, "users.6650c1f2a7b3e9d4c021.update.password");
    assert!(!job.dry_run);
    assert_eq!(job.attempts, 0);
    assert_eq!(job.event_received_at, 1000);
}

#[tokio::test]
async fn claim_respects_lease() {
    let (_dir, store) = temp_store();
    store
        .ingest(vec![event("ev1", "key1", 1000, 1)])
        .await
        .unwrap();

    let first = store.claim_due(1000, 10, 500, "worker-a").await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(store.next_due().await.unwrap(), Some(1500));

    let during_lease = store.claim_due(1499, 10, 500, "worker-b").await.unwrap();
    assert!(during_lease.is_empty());

    // worker-a never finished, as if its process died: the job comes back.
    let after_lease = store.claim_due(1500, 10, 500, "worker-b").await.unwrap();
    assert_eq!(after_lease.len(), 1);
    assert_eq!(after_lease[0].id, "ev1-job0");
    assert_eq!(after_lease[0].attempts, 0);
    assert_eq!(store.next_due().await.unwrap(), Some(2000));
}

#[tokio::test]
async fn claim_orders_by_due_time_and_limits() {
    let (_dir, store) = temp_store();
    store
        .ingest(vec![
            event("ev1", "key1", 100, 1),
            event("ev2", "key2", 300, 1),
            event("ev3", "key3", 200, 1),
        ])
        .await
        .unwrap();

    let claimed = store.claim_due(1000, 2, 500, "worker-a").await.unwrap();
    let ids: Vec<&str> = claimed.iter().map(|job| job.id.as_str()).collect();
    assert_eq!(ids, vec!["ev1-job0", "ev3-job0"]);

    let none = store.claim_due(1000, 0, 500, "worker-a").await.unwrap();
    assert!(none.is_empty());
    let rest = store.claim_due(1000, 10, 500, "worker-a").await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].id, "ev2-job0");
}

#[tokio::test]
async fn next_due_without_pending_jobs() {
    let (_dir, store) = temp_store();
    assert_eq!(store.next_due().await.unwrap(), None);

    store
        .ingest(vec![event("ev1", "key1", 700, 1)])
        .await
        .unwrap();
    assert_eq!(store.next_due().await.unwrap(), Some(700));
}

#[tokio::test]
async fn finish_attempt_retry_then_done() {
    let (_dir, store) = temp_store();
    store
        .ingest(vec![event("ev1", "key1", 1000, 1)])
        .await
        .unwrap();
    let claimed = store.claim_due(1000, 1, 500, "worker-a").await.unwrap();
    assert_eq!(claimed.len(), 1);

    store
        .finish_attempt(
            "ev1-job0",
            attempt(1010, Some(503), Some("http_503")),
            Disposition::Retry { at: 5000 },
        )
        .await
        .unwrap();
    assert_eq!(store.next_due().await.unwrap(), Some(5000));
    let early = store.claim_due(4999, 1, 500, "worker-a").await.unwrap();
    assert!(early.is_empty());
    let retried = store.claim_due(5000, 1, 500, "worker-a").await.unwrap();
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0].attempts, 1);

    store
        .finish_attempt(
            "ev1-job0",
            attempt(5010, Some(404), None),
            Disposition::Done {
                note: Some("user_not_found".to_owned()),
            },
        )
        .await
        .unwrap();

    let jobs = store.event_jobs("ev1").await.unwrap();
    assert_eq!(jobs[0].state, JobState::Done);
    assert_eq!(jobs[0].note.as_deref(), Some("user_not_found"));
    assert_eq!(
        jobs[0].attempts,
        vec![
            AttemptRecord {
                number: 1,
                started_at: 1010,
                finished_at: 1022,
                status: Some(503),
                error_type: Some("http_503".to_owned()),
                error: Some("Appwrite returned http_503".to_owned()),
            },
            AttemptRecord {
                number: 2,
                started_at: 5010,
                finished_at: 5022,
                status: Some(404),
                error_type: None,
                error: None,
            },
        ]
    );
    assert_eq!(store.next_due().await.unwrap(), None);
    let counts = store.job_counts().await.unwrap();
    assert_eq!(counts.pending, 0);
    assert_eq!(counts.done, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn finish_attempts_commit_together() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = Arc::new(open(&path));
    let jobs = 100;
    let events = (0..jobs)
        .map(|n| event(&format!("ev{n:03}"), &format!("key{n:03}"), 1000, 1))
        .collect();
    store.ingest(events).await.unwrap();
    let claimed = store.claim_due(1000, jobs, 500, "worker-a").await.unwrap();
    assert_eq!(claimed.len(), jobs);

    // A second connection holds the write lock, so the calls queue up behind
    // the first one. The unknown id in the middle fails alone.
    let blocker = rusqlite::Connection::open(&path).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let mut tasks = Vec::new();
    for n in 0..=jobs {
        let store = Arc::clone(&store);
        let job_id = match n.cmp(&(jobs / 2)) {
            std::cmp::Ordering::Less => format!("ev{n:03}-job0"),
            std::cmp::Ordering::Equal => "no-such-job".to_owned(),
            std::cmp::Ordering::Greater => format!("ev{:03}-job0", n - 1),
        };
        tasks.push(tokio::spawn(async move {
            let disposition = Disposition::Done { note: None };
            store
                .finish_attempt(&job_id, attempt(1010, Some(204), None), disposition)
                .await
        }));
        if n == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    blocker.execute_batch("COMMIT").unwrap();

    for (n, task) in tasks.into_iter().enumerate() {
        let result = task.await.unwrap();
        if n == jobs / 2 {
            assert!(matches!(result, Err(StoreError::NotFound(_))), "{result:?}");
        } else {
            assert!(result.is_ok(), "call {n}: {result:?}");
        }
    }
    let stats = store.group_commit_stats();
    assert_eq!(stats.finish_calls, jobs as u64 + 1);
    // Expected: one transaction for the call that waited on the lock and one
    // for the calls queued behind it.
    assert!(stats.finish_transactions <= 5, "{stats:?}");

    let counts = store.job_counts().await.unwrap();
    assert_eq!(counts.done, jobs as u64);
    assert_eq!(counts.pending, 0);
}

#[tokio::test]
async fn finish_attempt_dead() {
    let (_dir, store) = temp_store();
    store
        .ingest(vec![event("ev1", "key1", 1000, 1)])
        .await
        .unwrap();
    store.claim_due(1000, 1, 500, "worker-a").await.unwrap();

    store
        .finish_attempt(
            "ev1-job0",
            attempt(1010, Some(401), Some("general_unauthorized_scope")),
            Disposition::Dead,
        )
        .await
        .unwrap();

    let jobs = store.event_jobs("ev1").await.unwrap();
    assert_eq!(jobs[0].state, JobState::Dead);
    assert_eq!(jobs[0].attempts.len(), 1);
    assert_eq!(jobs[0].attempts[0].number, 1);
    assert_eq!(
        jobs[0].attempts[0].error_type.as_deref(),
        Some("general_unauthorized_scope")
    );
    let counts = store.job_counts().await.unwrap();
    assert_eq!(counts.dead, 1);
    assert_eq!(counts.pending, 0);
    let later = store.claim_due(100_000, 1, 500, "worker-a").await.unwrap();
    assert!(later.is_empty());
}

#[tokio::test]
async fn finish_attempt_after_done_keeps_state() {
    let (_dir, store) = temp_store();
    store
        .ingest(vec![event("ev1", "key1", 1000, 1)])
        .await
        .unwrap();
    store
        .finish_attempt(
            "ev1-job0",
            attempt(1010, Some(204), None),
            Disposition::Done { note: None },
        )
        .await
        .unwrap();

    // A late Retry from a worker whose lease had expired must not reopen the job.
    store
        .finish_attempt(
            "ev1-job0",
            attempt(1020, None, Some("timeout")),
            Disposition::Retry { at: 2000 },
        )
        .await
        .unwrap();

    let jobs = store.event_jobs("ev1").await.unwrap();
    assert_eq!(jobs[0].state, JobState::Done);
    assert_eq!(jobs[0].attempts.len(), 2);
    assert_eq!(jobs[0].attempts[1].number, 2);
    assert_eq!(store.next_due().await.unwrap(), None);
}

#[tokio::test]
async fn finish_attempt_unknown_job() {
    let (_dir, store) = temp_store();

    let result = store
        .finish_attempt(
            "no-such-job",
            attempt(1010, Some(204), None),
            Disposition::Done { note: None },
        )
        .await;
    assert!(matches!(result, Err(StoreError::NotFound(_))), "{result:?}");
}

#[tokio::test]
async fn release_frees_only_owner_leases() {
    let (_dir, store) = temp_store();
    store
        .ingest(vec![
            event("ev1", "key1", 100, 2),
            event("ev2", "key2", 200, 1),
        ])
        .await
        .unwrap();
    let by_a = store.claim_due(1000, 2, 60_000, "worker-a").await.unwrap();
    assert_eq!(by_a.len(), 2);
    let by_b = store.claim_due(1000, 2, 60_000, "worker-b").await.unwrap();
    assert_eq!(by_b.len(), 1);

    assert_eq!(store.release("worker-a").await.unwrap(), 2);
    assert_eq!(store.release("nobody").await.unwrap(), 0);

    let by_c = store.claim_due(1000, 10, 60_000, "worker-c").await.unwrap();
    let ids: Vec<&str> = by_c.iter().map(|job| job.id.as_str()).collect();
    assert_eq!(ids, vec!["ev1-job0", "ev1-job1"]);
    assert_eq!(by_c[0].attempts, 0);
}

#[tokio::test]
async fn status_changed_since_matches() {
    let (_dir, store) = temp_store();
    store
        .record_status_change("main", "user1", false, 1000)
        .await
        .unwrap();

    assert!(store
        .status_changed_since("user1", false, 1000)
        .await
        .unwrap());
    assert!(store.status_changed_since("user1", false, 0).await.unwrap());
    assert!(!store
        .status_changed_since("user1", false, 1001)
        .await
        .unwrap());
    assert!(!store.status_changed_since("user1", true, 0).await.unwrap());
    assert!(!store.status_changed_since("user2", false, 0).await.unwrap());
}

#[tokio::test]
async fn prune_keeps_pending_work() {
    let (_dir, store) = temp_store();
    store
        .ingest(vec![
            event("old-done", "key1", 100, 1),
            event("old-pending", "key2", 100, 1),
            event("old-ignored", "key3", 100, 0),
            event("old-mixed", "key4", 100, 2),
            event("new-done", "key5", 5000, 1),
        ])
        .await
        .unwrap();
    for job_id in ["old-done-job0", "old-mixed-job0", "new-done-job0"] {
        store
            .finish_attempt(
                job_id,
                attempt(150, Some(204), None),
                Disposition::Done { note: None },
            )
            .await
            .unwrap();
    }
    store
        .record_status_change("main", "user1", false, 100)
        .await
        .unwrap();
    store
        .record_status_change("main", "user2", false, 5000)
        .await
        .unwrap();

    let removed = store.prune(1000).await.unwrap();
    assert_eq!(removed, 2);

    let done = store.event_jobs("old-done").await;
    assert!(matches!(done, Err(StoreError::NotFound(_))), "{done:?}");
    let ignored = store.event_jobs("old-ignored").await;
    assert!(
        matches!(ignored, Err(StoreError::NotFound(_))),
        "{ignored:?}"
    );
    assert_eq!(store.event_jobs("old-pending").await.unwrap().len(), 1);
    assert_eq!(store.event_jobs("old-mixed").await.unwrap().len(), 2);
    assert_eq!(store.event_jobs("new-done").await.unwrap().len(), 1);
    assert!(!store.status_changed_since("user1", false, 0).await.unwrap());
    assert!(store.status_changed_since("user2", false, 0).await.unwrap());

    let counts = store.job_counts().await.unwrap();
    assert_eq!(counts.pending, 2);
    assert_eq!(counts.done, 2);

    // The pruned delivery key is free again.
    let again = store
        .ingest(vec![event("again", "key1", 6000, 1)])
        .await
        .unwrap();
    assert_eq!(again, vec![new_event("again", 1)]);
}

#[tokio::test]
async fn job_counts_claimed_subset_of_pending() {
    let (_dir, store) = temp_store();
    let now = now_millis();
    store
        .ingest(vec![
            event("ev1", "key1", now - 3000, 1),
            event("ev2", "key2", now - 2000, 1),
            event("ev3", "key3", now - 1000, 1),
        ])
        .await
        .unwrap();
    store.claim_due(now, 2, 600_000, "worker-a").await.unwrap();
    store
        .finish_attempt(
            "ev1-job0",
            attempt(now, Some(204), None),
            Disposition::Done { note: None },
        )
        .await
        .unwrap();

    let counts = store.job_counts().await.unwrap();
    assert_eq!(
        counts,
        JobCounts {
            pending: 2,
            claimed: 1,
            done: 1,
            dead: 0
        }
    );
}

#[tokio::test]
async fn check_writable_on_fresh_store() {
    let (_dir, store) = temp_store();
    store.check_writable().await.unwrap();
}

#[tokio::test]
async fn reused_job_id_fails_whole_call() {
    let (_dir, store) = temp_store();
    store
        .ingest(vec![event("ev1", "key1", 1000, 1)])
        .await
        .unwrap();

    // ev2 carries a job id that ev1 already uses.
    let mut clash = event("ev2", "key2", 1000, 1);
    clash.jobs[0].id = "ev1-job0".to_owned();
    let result = store
        .ingest(vec![event("ev3", "key3", 1000, 1), clash])
        .await;
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{result:?}"
    );

    // Nothing of the failed call is stored, not even its first event.
    let first = store.event_jobs("ev3").await;
    assert!(matches!(first, Err(StoreError::NotFound(_))), "{first:?}");
    let second = store.event_jobs("ev2").await;
    assert!(matches!(second, Err(StoreError::NotFound(_))), "{second:?}");
    assert_eq!(store.job_counts().await.unwrap().pending, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_call_spares_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = Arc::new(open(&path));
    store
        .ingest(vec![event("ev0", "key0", 1000, 1)])
        .await
        .unwrap();

    // Hold the write lock so that the calls below are committed together.
    let blocker = rusqlite::Connection::open(&path).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let first = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.ingest(vec![event("ev1", "key1", 1000, 1)]).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let clashing = {
        let store = Arc::clone(&store);
        let mut clash = event("ev2", "key2", 1000, 1);
        clash.jobs[0].id = "ev0-job0".to_owned();
        tokio::spawn(async move { store.ingest(vec![clash]).await })
    };
    let last = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.ingest(vec![event("ev3", "key3", 1000, 1)]).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    blocker.execute_batch("COMMIT").unwrap();

    assert_eq!(first.await.unwrap().unwrap(), vec![new_event("ev1", 1)]);
    let clash_result = clashing.await.unwrap();
    assert!(
        matches!(clash_result, Err(StoreError::Unavailable(_))),
        "{clash_result:?}"
    );
    assert_eq!(last.await.unwrap().unwrap(), vec![new_event("ev3", 1)]);

    let stats = store.group_commit_stats();
    // ev0 took one transaction. The failed call shared a transaction with at
    // least one of ev1 and ev3, otherwise there would be four.
    assert_eq!(stats.calls, 3);
    assert!(stats.transactions <= 3, "{stats:?}");
    let missing = store.event_jobs("ev2").await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
    assert_eq!(store.job_counts().await.unwrap().pending, 3);
}

/// Builds 20 events with 3 jobs each, large enough to need new database pages.
fn large_batch(prefix: &str) -> Vec<NewEvent> {
    (0..20)
        .map(|n| {
            let id = format!("{prefix}{n:02}");
            let mut event = event(&id, &format!("{id}-{}", "k".repeat(2000)), 1000, 3);
            for job in &mut event.jobs {
                job.user = "u".repeat(1000);
            }
            event
        })
        .collect()
}

#[tokio::test]
async fn full_disk_fails_ingest_without_partial_writes() {
    let (_dir, store) = temp_store();
    store
        .ingest(vec![event("ev0", "key0", 1000, 1)])
        .await
        .unwrap();

    let limit = store.set_max_page_count(1).await.unwrap();
    assert!(limit > 1, "limit {limit}");

    // The small first event fits in existing pages; the large ones do not.
    let mut batch = vec![event("small", "small-key", 1000, 1)];
    batch.extend(large_batch("big"));
    let result = store.ingest(batch).await;
    let Err(StoreError::Unavailable(message)) = result else {
        panic!("expected Unavailable, got {result:?}");
    };
    assert!(message.contains("full"), "{message}");

    let small = store.event_jobs("small").await;
    assert!(matches!(small, Err(StoreError::NotFound(_))), "{small:?}");
    let big = store.event_jobs("big00").await;
    assert!(matches!(big, Err(StoreError::NotFound(_))), "{big:?}");
    assert_eq!(store.job_counts().await.unwrap().pending, 1);

    let lifted = store.set_max_page_count(u32::MAX).await.unwrap();
    assert!(lifted > limit, "lifted {lifted}, before {limit}");
    let results = store.ingest(large_batch("big")).await.unwrap();
    assert_eq!(results.len(), 20);
    assert_eq!(results[0], new_event("big00", 3));
    assert_eq!(results[19], new_event("big19", 3));
    assert_eq!(store.job_counts().await.unwrap().pending, 61);
}

#[tokio::test]
async fn full_disk_fails_finish_attempt() {
    let (_dir, store) = temp_store();
    let mut events = large_batch("big");
    events.truncate(4);
    store.ingest(events).await.unwrap();
    let claimed = store.claim_due(1000, 12, 500, "worker-a").await.unwrap();
    assert_eq!(claimed.len(), 12);
    store.set_max_page_count(1).await.unwrap();

    // Each attempt stores a long error, so the attempts need new pages.
    let long_error = |started_at| Attempt {
        error: Some("e".repeat(2000)),
        ..attempt(started_at, Some(503), Some("http_503"))
    };
    let mut failed = 0;
    for job in &claimed {
        let result = store
            .finish_attempt(&job.id, long_error(1010), Disposition::Retry { at: 5000 })
            .await;
        if let Err(StoreError::Unavailable(message)) = &result {
            assert!(message.contains("full"), "{message}");
            failed += 1;
        }
    }
    assert!(failed > 0, "no finish_attempt call failed on a full disk");

    // A failed call leaves its job pending, leased and without the attempt.
    let jobs = store.event_jobs("big03").await.unwrap();
    assert_eq!(jobs[2].state, JobState::Pending);
    assert!(jobs[2].attempts.is_empty(), "{:?}", jobs[2].attempts);
    assert_eq!(jobs[2].lease_owner.as_deref(), Some("worker-a"));

    store.set_max_page_count(u32::MAX).await.unwrap();
    store
        .finish_attempt(
            &jobs[2].id,
            long_error(1020),
            Disposition::Done { note: None },
        )
        .await
        .unwrap();
    let jobs = store.event_jobs("big03").await.unwrap();
    assert_eq!(jobs[2].state, JobState::Done);
    assert_eq!(jobs[2].attempts.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_disk_fails_concurrent_ingests() {
    let (_dir, store) = temp_store();
    let store = Arc::new(store);
    store.set_max_page_count(1).await.unwrap();

    let mut tasks = Vec::new();
    for n in 0..8 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            store.ingest(large_batch(&format!("task{n}-"))).await
        }));
    }
    for task in tasks {
        let result = task.await.unwrap();
        assert!(
            matches!(result, Err(StoreError::Unavailable(_))),
            "{result:?}"
        );
    }
    assert_eq!(store.job_counts().await.unwrap(), JobCounts::default());

    store.set_max_page_count(u32::MAX).await.unwrap();
    store.check_writable().await.unwrap();
    let results = store.ingest(large_batch("after-")).await.unwrap();
    assert_eq!(results.len(), 20);
}

/// Claims and finishes `job_id` with one failed attempt at `at` that makes it dead.
async fn make_dead(store: &SqliteStore, job_id: &str, at: Millis) {
    store
        .finish_attempt(
            job_id,
            attempt(at, Some(401), Some("general_unauthorized_scope")),
            Disposition::Dead,
        )
        .await
        .unwrap();
}

async fn make_done(store: &SqliteStore, job_id: &str, at: Millis) {
    store
        .finish_attempt(
            job_id,
            attempt(at, Some(204), None),
            Disposition::Done { note: None },
        )
        .await
        .unwrap();
}

/// Stores four events: `ignored` (no jobs, received at 1000), `done` (1 done
/// job, 2000), `mixed` (one job each pending, done and dead, 3000) from source
/// `clerk`, and `dead` (2 dead jobs, 4000).
async fn seed_events(store: &SqliteStore) {
    let mut mixed = event("mixed", "key-mixed", 3000, 3);
    mixed.source = "clerk".to_owned();
    mixed.types = vec!["user.updated".to_owned()];
    store
        .ingest(vec![
            event("ignored", "key-ignored", 1000, 0),
            event("done", "key-done", 2000, 1),
            mixed,
            event("dead", "key-dead", 4000, 2),
        ])
        .await
        .unwrap();
    make_done(store, "done-job0", 2100).await;
    make_done(store, "mixed-job1", 3100).await;
    make_dead(store, "mixed-job2", 3200).await;
    make_dead(store, "dead-job0", 4100).await;
    make_dead(store, "dead-job1", 4200).await;
}

fn ids(events: &[revokd::store::EventSummary]) -> Vec<&str> {
    events.iter().map(|event| event.id.as_str()).collect()
}

fn filter() -> EventFilter {
    EventFilter::default()
}

#[test]
fn event_filter_default_limit() {
    let filter = EventFilter::default();
    assert_eq!(filter.limit, 100);
    assert_eq!(DEFAULT_EVENT_LIMIT, 100);
    assert_eq!(filter.state, None);
    assert_eq!(filter.source, None);
    assert_eq!(filter.since, None);
}

#[tokio::test]
async fn list_events_newest_first_with_counts() {
    let (_dir, store) = temp_store();
    seed_events(&store).await;

    let events = store.list_events(filter()).await.unwrap();
    assert_eq!(ids(&events), vec!["dead", "mixed", "done", "ignored"]);

    let dead = &events[0];
    assert_eq!(dead.source, "appwrite");
    assert_eq!(dead.delivery_key, "key-dead");
    assert_eq!(dead.first_type.as_deref(), Some("users.*.update.password"));
    assert_eq!(dead.type_count, 2);
    assert_eq!(dead.received_at, 4000);
    assert_eq!(dead.ignored_reason, None);
    assert_eq!(
        dead.jobs,
        JobCounts {
            pending: 0,
            claimed: 0,
            done: 0,
            dead: 2
        }
    );

    let mixed = &events[1];
    assert_eq!(mixed.source, "clerk");
    assert_eq!(mixed.first_type.as_deref(), Some("user.updated"));
    assert_eq!(mixed.type_count, 1);
    assert_eq!(
        mixed.jobs,
        JobCounts {
            pending: 1,
            claimed: 0,
            done: 1,
            dead: 1
        }
    );

    let ignored = &events[3];
    assert_eq!(ignored.ignored_reason.as_deref(), Some("no rule matched"));
    assert_eq!(ignored.jobs, JobCounts::default());
}

#[tokio::test]
async fn list_events_counts_claimed_jobs() {
    let (_dir, store) = temp_store();
    let now = now_millis();
    store
        .ingest(vec![event("ev1", "key1", now - 1000, 2)])
        .await
        .unwrap();
    store.claim_due(now, 1, 600_000, "worker-a").await.unwrap();

    let events = store.list_events(filter()).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].jobs.pending, 2);
    assert_eq!(events[0].jobs.claimed, 1);
}

#[tokio::test]
async fn list_events_filters_by_state() {
    let (_dir, store) = temp_store();
    seed_events(&store).await;

    let dead = EventFilter {
        state: Some(JobState::Dead),
        ..filter()
    };
    assert_eq!(
        ids(&store.list_events(dead).await.unwrap()),
        vec!["dead", "mixed"]
    );

    let pending = EventFilter {
        state: Some(JobState::Pending),
        ..filter()
    };
    assert_eq!(
        ids(&store.list_events(pending).await.unwrap()),
        vec!["mixed"]
    );

    let done = EventFilter {
        state: Some(JobState::Done),
        ..filter()
    };
    assert_eq!(
        ids(&store.list_events(done).await.unwrap()),
        vec!["mixed", "done"]
    );
}

#[tokio::test]
async fn list_events_filters_by_source_since_limit() {
    let (_dir, store) = temp_store();
    seed_events(&store).await;

    let clerk = EventFilter {
        source: Some("clerk".to_owned()),
        ..filter()
    };
    assert_eq!(ids(&store.list_events(clerk).await.unwrap()), vec!["mixed"]);

    let unknown = EventFilter {
        source: Some("github".to_owned()),
        ..filter()
    };
    assert!(store.list_events(unknown).await.unwrap().is_empty());

    // `since` includes an event received exactly at that time.
    let since = EventFilter {
        since: Some(2000),
        ..filter()
    };
    assert_eq!(
        ids(&store.list_events(since).await.unwrap()),
        vec!["dead", "mixed", "done"]
    );

    let limited = EventFilter {
        limit: 2,
        ..filter()
    };
    assert_eq!(
        ids(&store.list_events(limited).await.unwrap()),
        vec!["dead", "mixed"]
    );

    let none = EventFilter {
        limit: 0,
        ..filter()
    };
    assert!(store.list_events(none).await.unwrap().is_empty());

    let combined = EventFilter {
        state: Some(JobState::Dead),
        source: Some("appwrite".to_owned()),
        since: Some(3500),
        limit: 10,
    };
    assert_eq!(
        ids(&store.list_events(combined).await.unwrap()),
        vec!["dead"]
    );
}

#[tokio::test]
async fn list_events_orders_same_time_by_id() {
    let (_dir, store) = temp_store();
    store
        .ingest(vec![
            event("ev-a", "key-a", 1000, 0),
            event("ev-c", "key-c", 1000, 0),
            event("ev-b", "key-b", 1000, 0),
        ])
        .await
        .unwrap();

    let events = store.list_events(filter()).await.unwrap();
    assert_eq!(ids(&events), vec!["ev-c", "ev-b", "ev-a"]);
}

#[tokio::test]
async fn event_detail_returns_jobs_and_attempts() {
    let (_dir, store) = temp_store();
    let mut with_session = event("ev1", "key1", 1000, 2);
    with_session.jobs[1].action = "delete_session".to_owned();
    with_session.jobs[1].session_id = Some("sessa".to_owned());
    with_session.jobs[1].dry_run = true;
    store.ingest(vec![with_session]).await.unwrap();
    store.claim_due(1000, 1, 500, "worker-a").await.unwrap();
    store
        .finish_attempt(
            "ev1-job0",
            attempt(1010, Some(503), Some("general_server_error")),
            Disposition::Retry { at: 2000 },
        )
        .await
        .unwrap();
    make_dead(&store, "ev1-job0", 2010).await;
    store.claim_due(1000, 1, 500, "worker-b").await.unwrap();

    let detail = store.event_detail("ev1").await.unwrap();
    assert_eq!(detail.id, "ev1");
    assert_eq!(detail.source, "appwrite");
    assert_eq!(detail.delivery_key, "key1");
    assert_eq!(
        detail.types,
        vec![
            "users.*.update.password".to_owned(),
            "users.6650c1f2a7b3e9d4c021.update.password".to_owned()
        ]
    );
    assert_eq!(detail.received_at, 1000);
    assert_eq!(detail.occurred_at, Some(995));
    assert_eq!(detail.ignored_reason, None);
    assert_eq!(detail.jobs.len(), 2);

    let dead = &detail.jobs[0];
    assert_eq!(dead.id, "ev1-job0");
    assert_eq!(dead.state, JobState::Dead);
    assert_eq!(dead.user_kind, "id");
    assert_eq!(
        dead.event_type,
        "users.6650c1f2a7b3e9d4c021.update.password"
    );
    assert_eq!(dead.next_attempt_at, 2000);
    assert_eq!(dead.lease_owner, None);
    assert_eq!(dead.lease_until, None);
    assert_eq!(
        dead.last_error_type.as_deref(),
        Some("general_unauthorized_scope")
    );
    assert_eq!(
        dead.last_error.as_deref(),
        Some("Appwrite returned general_unauthorized_scope")
    );
    assert_eq!(dead.finished_at, Some(2022));
    assert_eq!(dead.retried_at, None);
    assert_eq!(dead.attempts_before_retry, 0);
    let numbers: Vec<u32> = dead.attempts.iter().map(|a| a.number).collect();
    assert_eq!(numbers, vec![1, 2]);
    assert_eq!(dead.attempts[0].status, Some(503));
    assert_eq!(dead.attempts[1].status, Some(401));

    let leased = &detail.jobs[1];
    assert_eq!(leased.id, "ev1-job1");
    assert_eq!(leased.state, JobState::Pending);
    assert_eq!(leased.action, "delete_session");
    assert_eq!(leased.session_id.as_deref(), Some("sessa"));
    assert!(leased.dry_run);
    assert_eq!(leased.lease_owner.as_deref(), Some("worker-b"));
    assert_eq!(leased.lease_until, Some(1500));
    assert_eq!(leased.finished_at, None);
    assert!(leased.attempts.is_empty());
}

#[tokio::test]
async fn event_detail_of_ignored_event() {
    let (_dir, store) = temp_store();
    store
        .ingest(vec![event("ev1", "key1", 1000, 0)])
        .await
        .unwrap();

    let detail = store.event_detail("ev1").await.unwrap();
    assert_eq!(detail.ignored_reason.as_deref(), Some("no rule matched"));
    assert!(detail.jobs.is_empty());
}

#[tokio::test]
async fn event_detail_unknown_id() {
    let (_dir, store) = temp_store();

    let result = store.event_detail("no-such-event").await;
    let Err(StoreError::NotFound(message)) = result else {
        panic!("expected NotFound, got {result:?}");
    };
    assert_eq!(message, "event no-such-event");
}

#[tokio::test]
async fn retry_job_makes_dead_job_due() {
    let (_dir, store) = temp_store();
    store
        .ingest(vec![event("ev1", "key1", 1000, 1)])
        .await
        .unwrap();
    store.claim_due(1000, 1, 500, "worker-a").await.unwrap();
    make_dead(&store, "ev1-job0", 1010).await;

    let retried = store.retry_job("ev1-job0", 90_000).await.unwrap();
    assert_eq!(
        retried,
        RetriedJob {
            id: "ev1-job0".to_owned(),
            event_id: "ev1".to_owned(),
            action: "delete_sessions".to_owned(),
            target: "main".to_owned(),
            user: "6650c1f2a7b3e9d4c021".to_owned(),
            attempts: 1,
            due_at: 90_000,
        }
    );

    let job = &store.event_detail("ev1").await.unwrap().jobs[0];
    assert_eq!(job.state, JobState::Pending);
    assert_eq!(job.next_attempt_at, 90_000);
    assert_eq!(job.lease_owner, None);
    assert_eq!(job.lease_until, None);
    assert_eq!(job.finished_at, None);
    assert_eq!(job.retried_at, Some(90_000));
    assert_eq!(job.attempts_before_retry, 1);
    assert_eq!(job.attempts.len(), 1);
    // The last error stays visible until the next attempt.
    assert_eq!(
        job.last_error_type.as_deref(),
        Some("general_unauthorized_scope")
    );

    assert_eq!(store.next_due().await.unwrap(), Some(90_000));
    let counts = store.job_counts().await.unwrap();
    assert_eq!(counts.pending, 1);
    assert_eq!(counts.dead, 0);
}

#[tokio::test]
async fn retried_job_gets_fresh_budget_and_age() {
    let (_dir, store) = temp_store();
    store
        .ingest(vec![event("ev1", "key1", 1000, 1)])
        .await
        .unwrap();
    for (n, at) in [(1u32, 1010), (2, 2010)] {
        let claimed = store.claim_due(at, 1, 500, "worker-a").await.unwrap();
        assert_eq!(claimed[0].attempts, n - 1);
        store
            .finish_attempt(
                "ev1-job0",
                attempt(at, Some(503), Some("general_server_error")),
                Disposition::Retry { at: at + 990 },
            )
            .await
            .unwrap();
    }
    let claimed = store.claim_due(3000, 1, 500, "worker-a").await.unwrap();
    assert_eq!(claimed[0].attempts, 2);
    make_dead(&store, "ev1-job0", 3000).await;

    store.retry_job("ev1-job0", 50_000).await.unwrap();
    let early = store.claim_due(49_999, 1, 500, "worker-b").await.unwrap();
    assert!(early.is_empty());
    let claimed = store.claim_due(50_000, 1, 500, "worker-b").await.unwrap();
    assert_eq!(claimed.len(), 1);
    // The worker counts max_attempts and max_age from the retry.
    assert_eq!(claimed[0].attempts, 0);
    assert_eq!(claimed[0].event_received_at, 50_000);

    store
        .finish_attempt(
            "ev1-job0",
            attempt(50_010, Some(503), Some("general_server_error")),
            Disposition::Retry { at: 51_000 },
        )
        .await
        .unwrap();
    let claimed = store.claim_due(51_000, 1, 500, "worker-b").await.unwrap();
    assert_eq!(claimed[0].attempts, 1);
    make_done(&store, "ev1-job0", 51_010).await;

    // Attempt numbers continue across the retry.
    let job = &store.event_detail("ev1").await.unwrap().jobs[0];
    assert_eq!(job.state, JobState::Done);
    let numbers: Vec<u32> = job.attempts.iter().map(|a| a.number).collect();
    assert_eq!(numbers, vec![1, 2, 3, 4, 5]);
    assert_eq!(job.attempts_before_retry, 3);
}

#[tokio::test]
async fn retry_job_twice_resets_again() {
    let (_dir, store) = temp_store();
    store
        .ingest(vec![event("ev1", "key1", 1000, 1)])
        .await
        .unwrap();
    make_dead(&store, "ev1-job0", 1010).await;
    store.retry_job("ev1-job0", 2000).await.unwrap();
    store.claim_due(2000, 1, 500, "worker-a").await.unwrap();
    make_dead(&store, "ev1-job0", 2010).await;

    let retried = store.retry_job("ev1-job0", 3000).await.unwrap();
    assert_eq!(retried.attempts, 2);
    let claimed = store.claim_due(3000, 1, 500, "worker-a").await.unwrap();
    assert_eq!(claimed[0].attempts, 0);
    assert_eq!(claimed[0].event_received_at, 3000);
}

#[tokio::test]
async fn retry_job_rejects_other_states() {
    let (_dir, store) = temp_store();
    store
        .ingest(vec![event("ev1", "key1", 1000, 2)])
        .await
        .unwrap();
    make_done(&store, "ev1-job1", 1010).await;

    let pending = store.retry_job("ev1-job0", 2000).await;
    let Err(StoreError::InvalidState(message)) = pending else {
        panic!("expected InvalidState, got {pending:?}");
    };
    assert_eq!(
        message,
        "job ev1-job0 is pending, not dead; only a dead job can be retried"
    );

    let done = store.retry_job("ev1-job1", 2000).await;
    let Err(StoreError::InvalidState(message)) = done else {
        panic!("expected InvalidState, got {done:?}");
    };
    assert!(message.contains("job ev1-job1 is done"), "{message}");

    let unknown = store.retry_job("no-such-job", 2000).await;
    let Err(StoreError::NotFound(message)) = unknown else {
        panic!("expected NotFound, got {unknown:?}");
    };
    assert_eq!(message, "job no-such-job");

    // Nothing changed.
    let jobs = store.event_detail("ev1").await.unwrap().jobs;
    assert_eq!(jobs[0].state, JobState::Pending);
    assert_eq!(jobs[0].next_attempt_at, 1000);
    assert_eq!(jobs[1].state, JobState::Done);
}

#[tokio::test]
async fn retry_all_dead_moves_only_dead() {
    let (_dir, store) = temp_store();
    seed_events(&store).await;

    let retried = store.retry_all_dead(10_000).await.unwrap();
    assert_eq!(retried, 3);

    let counts = store.job_counts().await.unwrap();
    assert_eq!(counts.dead, 0);
    assert_eq!(counts.pending, 4);
    assert_eq!(counts.done, 2);
    for job in store.event_detail("dead").await.unwrap().jobs {
        assert_eq!(job.state, JobState::Pending);
        assert_eq!(job.next_attempt_at, 10_000);
        assert_eq!(job.retried_at, Some(10_000));
        assert_eq!(job.attempts_before_retry, 1);
    }
    let mixed = store.event_detail("mixed").await.unwrap().jobs;
    // The job that was pending already keeps its due time and no retry mark.
    assert_eq!(mixed[0].next_attempt_at, 3000);
    assert_eq!(mixed[0].retried_at, None);
    assert_eq!(mixed[1].state, JobState::Done);
    assert_eq!(mixed[2].retried_at, Some(10_000));

    assert_eq!(store.retry_all_dead(11_000).await.unwrap(), 0);
}

/// Schema version 1, as released, for the upgrade test.
const SCHEMA_V1: &str = r#"
CREATE TABLE events (
    id             TEXT PRIMARY KEY,
    source         TEXT NOT NULL,
    delivery_key   TEXT NOT NULL,
    types          TEXT NOT NULL,
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
CREATE TABLE heartbeat (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    written_at INTEGER NOT NULL
);
INSERT INTO heartbeat (id, written_at) VALUES (1, 0);
PRAGMA user_version = 1;
"#;

#[tokio::test]
async fn upgrade_from_schema_v1() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(SCHEMA_V1).unwrap();
    conn.execute_batch(
        r#"
        INSERT INTO events (id, source, delivery_key, types, received_at)
        VALUES ('ev1', 'appwrite', 'key1', '["users.*.update.password"]', 1000);
        INSERT INTO jobs (id, event_id, rule, action, target, user_kind, user, event_type,
                          dry_run, state, attempts, next_attempt_at, last_error_type,
                          last_error, finished_at)
        VALUES ('ev1-job0', 'ev1', 'logout', 'delete_sessions', 'main', 'id', 'u1',
                'users.u1.update.password', 0, 'dead', 2, 1500, 'general_unauthorized_scope',
                'missing scope', 1600);
        INSERT INTO attempts (job_id, number, started_at, finished_at, status, error_type, error)
        VALUES ('ev1-job0', 1, 1100, 1110, 503, 'general_server_error', 'down'),
               ('ev1-job0', 2, 1500, 1600, 401, 'general_unauthorized_scope', 'missing scope');
        "#,
    )
    .unwrap();
    drop(conn);

    let store = open(&path);
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, 2);

    let detail = store.event_detail("ev1").await.unwrap();
    let job = &detail.jobs[0];
    assert_eq!(job.state, JobState::Dead);
    assert_eq!(job.attempts_before_retry, 0);
    assert_eq!(job.retried_at, None);
    assert_eq!(job.attempts.len(), 2);
    assert_eq!(job.last_error.as_deref(), Some("missing scope"));

    let dead = EventFilter {
        state: Some(JobState::Dead),
        ..filter()
    };
    assert_eq!(ids(&store.list_events(dead).await.unwrap()), vec!["ev1"]);

    let retried = store.retry_job("ev1-job0", 5000).await.unwrap();
    assert_eq!(retried.attempts, 2);
    let claimed = store.claim_due(5000, 1, 500, "worker-a").await.unwrap();
    assert_eq!(claimed[0].attempts, 0);
    assert_eq!(claimed[0].event_received_at, 5000);
    make_done(&store, "ev1-job0", 5010).await;
    let numbers: Vec<u32> = store.event_detail("ev1").await.unwrap().jobs[0]
        .attempts
        .iter()
        .map(|a| a.number)
        .collect();
    assert_eq!(numbers, vec![1, 2, 3]);
}

#[tokio::test]
async fn open_existing_needs_revokd_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.db");
    let result = SqliteStore::open_existing(SqliteOptions::new(&missing));
    let Err(StoreError::Unavailable(message)) = result else {
        panic!("expected Unavailable");
    };
    assert!(
        message.contains(&missing.display().to_string()),
        "{message}"
    );
    assert!(message.contains("does not exist"), "{message}");
    assert!(!missing.exists());

    // An empty SQLite file has no revokd schema and stays untouched.
    let empty = dir.path().join("empty.db");
    rusqlite::Connection::open(&empty)
        .unwrap()
        .execute_batch("CREATE TABLE other (x INTEGER)")
        .unwrap();
    let result = SqliteStore::open_existing(SqliteOptions::new(&empty));
    let Err(StoreError::Unavailable(message)) = result else {
        panic!("expected Unavailable");
    };
    assert!(message.contains("no revokd schema"), "{message}");
    let tables: i64 = rusqlite::Connection::open(&empty)
        .unwrap()
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(tables, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_store_on_file_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let server = open(&path);
    assert_eq!(server.path(), path.as_path());
    server
        .ingest(vec![event("ev1", "key1", 1000, 1)])
        .await
        .unwrap();
    make_dead(&server, "ev1-job0", 1010).await;

    let tool = SqliteStore::open_existing(SqliteOptions::new(&path)).unwrap();
    let events = tool.list_events(filter()).await.unwrap();
    assert_eq!(ids(&events), vec!["ev1"]);
    tool.retry_job("ev1-job0", 2000).await.unwrap();

    // The first store reads the retry and keeps writing while the second is open.
    let claimed = server.claim_due(2000, 1, 500, "worker-a").await.unwrap();
    assert_eq!(claimed.len(), 1);
    make_done(&server, "ev1-job0", 2010).await;
    server
        .ingest(vec![event("ev2", "key2", 3000, 1)])
        .await
        .unwrap();

    tool.close().await.unwrap();
    let counts = server.job_counts().await.unwrap();
    assert_eq!(counts.done, 1);
    assert_eq!(counts.pending, 1);
    server.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn finish_group_on_full_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = Arc::new(open(&path));
    let mut events = large_batch("big");
    events.truncate(10);
    store.ingest(events).await.unwrap();
    let claimed = store.claim_due(1000, 30, 500, "worker-a").await.unwrap();
    assert_eq!(claimed.len(), 30);
    store.set_max_page_count(1).await.unwrap();

    // A second connection holds the write lock, so the calls queue up and
    // commit as a group. Every third attempt stores a long error that needs
    // new pages, and the bundled SQLite rolls back the whole transaction when
    // one of these fails. One by one, every short attempt fits.
    let blocker = rusqlite::Connection::open(&path).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let mut tasks = Vec::new();
    for (n, job) in claimed.iter().enumerate() {
        let store = Arc::clone(&store);
        let job_id = job.id.clone();
        let long = n % 3 == 1;
        tasks.push(tokio::spawn(async move {
            let error_bytes = if long { 3000 } else { 1 };
            let attempt = Attempt {
                error: Some("e".repeat(error_bytes)),
                ..attempt(1010, Some(503), Some("http_503"))
            };
            let result = store
                .finish_attempt(&job_id, attempt, Disposition::Retry { at: 5000 })
                .await;
            (job_id, long, result)
        }));
        if n == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    blocker.execute_batch("COMMIT").unwrap();

    let mut failed = Vec::new();
    for task in tasks {
        let (job_id, long, result) = task.await.unwrap();
        let event_id = job_id.rsplit_once("-job").unwrap().0.to_owned();
        let jobs = store.event_jobs(&event_id).await.unwrap();
        let job = jobs.iter().find(|job| job.id == job_id).unwrap();
        assert_eq!(job.state, JobState::Pending, "{job_id}");
        if long {
            let Err(StoreError::Unavailable(message)) = &result else {
                panic!("{job_id}: expected Unavailable, got {result:?}");
            };
            assert!(message.contains("full"), "{job_id}: {message}");
            assert!(job.attempts.is_empty(), "{job_id}: {:?}", job.attempts);
            assert_eq!(job.lease_owner.as_deref(), Some("worker-a"), "{job_id}");
            failed.push(job_id);
        } else {
            assert!(result.is_ok(), "{job_id}: {result:?}");
            assert_eq!(job.attempts.len(), 1, "{job_id}");
            assert_eq!(job.lease_owner, None, "{job_id}");
        }
    }

    // The jobs whose attempt failed are claimed again once the lease ends.
    store.set_max_page_count(u32::MAX).await.unwrap();
    let mut reclaimed: Vec<String> = store
        .claim_due(1500, 30, 500, "worker-b")
        .await
        .unwrap()
        .into_iter()
        .map(|job| job.id)
        .collect();
    reclaimed.sort();
    failed.sort();
    assert_eq!(reclaimed, failed);
    let stats = store.group_commit_stats();
    assert_eq!(stats.finish_calls, 20, "{stats:?}");
}
