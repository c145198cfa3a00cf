//! The commit path: `SqliteStore::ingest` of one event with one job, alone
//! and as 64 concurrent calls (group commit), with `synchronous = FULL`.
//! The database is a temporary file, so the figures depend on the disk
//! under the system's temporary directory. Run with `cargo bench --bench store`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use revokd::store::sqlite::{SqliteOptions, SqliteStore};
use revokd::store::{NewEvent, NewJob, Store};

fn event(n: u64) -> NewEvent {
    let id = ulid::Ulid::new().to_string();
    NewEvent {
        id: id.clone(),
        source: "appwrite".to_owned(),
        delivery_key: format!("bench-delivery-{n}"),
        types: vec!["users.*.update.password".to_owned()],
        received_at: 1_764_849_598_000,
        occurred_at: None,
        ignored_reason: None,
        jobs: vec![NewJob {
            id: format!("{id}-job"),
            rule: "logout-on-password-change".to_owned(),
            action: "delete_sessions".to_owned(),
            target: "main".to_owned(),
            user_kind: "id".to_owned(),
            user: format!("user{n}"),
            session_id: None,
            event_type: "users.*.update.password".to_owned(),
            dry_run: false,
        }],
    }
}

fn ingest(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(SqliteStore::open(SqliteOptions::new(dir.path().join("bench.db"))).unwrap());
    let counter = AtomicU64::new(0);

    let mut group = c.benchmark_group("store/ingest");
    group.measurement_time(Duration::from_secs(5));
    group.sample_size(20);

    group.throughput(Throughput::Elements(1));
    group.bench_function("1-event", |b| {
        b.iter(|| {
            let n = counter.fetch_add(1, Ordering::Relaxed);
            runtime.block_on(store.ingest(vec![event(n)])).unwrap()
        })
    });

    group.throughput(Throughput::Elements(64));
    group.bench_function("64-concurrent", |b| {
        b.iter(|| {
            let calls: Vec<_> = (0..64)
                .map(|_| {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let store = store.clone();
                    runtime.spawn(async move { store.ingest(vec![event(n)]).await })
                })
                .collect();
            runtime.block_on(async {
                for call in calls {
                    call.await.unwrap().unwrap();
                }
            })
        })
    });
    group.finish();

    let stats = store.group_commit_stats();
    println!(
        "group commit: {} calls in {} transactions",
        stats.calls, stats.transactions
    );
    runtime.block_on(store.close()).unwrap();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
