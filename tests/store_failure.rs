//! A store that cannot commit, as on a full disk: hooks return 503 with
//! `Retry-After`, nothing of the failed requests is written, and the service
//! resumes by itself once the store can commit again.

mod common;

use std::time::Duration;

use common::*;
use revokd::delivery::now_millis;
use revokd::store::sqlite::SqliteStore;
use revokd::store::{NewEvent, Store, StoreError};

/// Builds event `number` with no job and an ignored reason of `reason_bytes`
/// bytes. With a 1-byte reason, its rows are smaller than those of any event
/// that a hooks request stores.
fn filler(number: usize, reason_bytes: usize) -> NewEvent {
    NewEvent {
        id: format!("filler-{number:06}"),
        source: "appwrite".into(),
        delivery_key: format!("{number:064x}"),
        types: Vec::new(),
        received_at: now_millis(),
        occurred_at: None,
        ignored_reason: Some("r".repeat(reason_bytes)),
        jobs: Vec::new(),
    }
}

/// Caps the database at its current size and fills the free room in its
/// pages, until 20 ingests in a row fail. SQLite's `max_page_count` only
/// stops the file from growing, so without filling a small insert still fits.
async fn fill_store(store: &SqliteStore) -> usize {
    store.set_max_page_count(1).await.unwrap();
    let mut number = 0;
    for reason_bytes in [2000, 200, 1] {
        let mut failures_in_a_row = 0;
        while failures_in_a_row < 20 {
            number += 1;
            assert!(number < 20_000, "the store still takes events");
            match store.ingest(vec![filler(number, reason_bytes)]).await {
                Ok(_) => failures_in_a_row = 0,
                Err(StoreError::Unavailable(message)) => {
                    assert!(message.contains("full"), "{message}");
                    failures_in_a_row += 1;
                }
                Err(other) => panic!("unexpected store error: {other}"),
            }
        }
    }
    number
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_store_returns_503_then_resumes() {
    let app = spawn_app().await;
    let store = app.store();
    let readyz = format!("{}/readyz", app.base);
    assert_eq!(app.http.get(&readyz).send().await.unwrap().status(), 200);

    let fillers = fill_store(&store).await;
    let before = store.job_counts().await.unwrap();
    assert_eq!(before.pending + before.done + before.dead, 0, "{before:?}");

    let events = sample_events("appwrite-password-updated.body");
    let rejected = app.post_appwrite(&events, PASSWORD_UPDATED).await;
    assert_eq!(rejected.status(), 503, "fillers: {fillers}");
    assert_eq!(
        rejected
            .headers()
            .get("retry-after")
            .map(|value| value.to_str().unwrap()),
        Some("5")
    );
    let clerk = app.post_clerk("msg_full_store", CLERK_USER_BANNED).await;
    assert_eq!(clerk.status(), 503);
    assert!(clerk.headers().contains_key("retry-after"));

    let not_ready = app.http.get(&readyz).send().await.unwrap();
    assert_eq!(not_ready.status(), 503);
    assert!(not_ready.headers().contains_key("retry-after"));

    assert_eq!(store.job_counts().await.unwrap(), before);
    assert!(app.calls().is_empty(), "{:?}", app.calls());
    assert_eq!(app.sessions().len(), 3);

    // Lifting the limit is all it takes: no restart. The bodies that got 503
    // were not stored: sent again, they are new events and not duplicates.
    store.set_max_page_count(u32::MAX).await.unwrap();
    let accepted = counts(app.post_appwrite(&events, PASSWORD_UPDATED).await).await;
    assert_eq!(accepted["accepted"], 1);
    assert_eq!(accepted["duplicates"], 0);
    let ready = app.http.get(&readyz).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let accepted = counts(app.post_clerk("msg_full_store", CLERK_USER_BANNED).await).await;
    assert_eq!(accepted["accepted"], 1);
    assert_eq!(accepted["duplicates"], 0);

    let settled = app.settle().await;
    assert_eq!(settled.done, 2);
    assert_eq!(settled.dead, 0);
    assert!(app.sessions().is_empty());
    let deletes = app
        .calls()
        .iter()
        .filter(|call| call.method == "DELETE" && call.status == 204)
        .count();
    assert_eq!(deletes, 2, "{:?}", app.calls());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_returns_without_new_requests() {
    let app = spawn_app().await;
    let store = app.store();
    let readyz = format!("{}/readyz", app.base);
    fill_store(&store).await;
    let events = sample_events("appwrite-password-updated.body");
    let rejected = app.post_appwrite(&events, PASSWORD_UPDATED).await;
    assert_eq!(rejected.status(), 503);
    assert_eq!(app.http.get(&readyz).send().await.unwrap().status(), 503);

    // With no request to show that commits work again, /readyz returns to
    // 200 once the failed ingest is older than the hooks' Retry-After (5s),
    // so that a load balancer sends requests again.
    store.set_max_page_count(u32::MAX).await.unwrap();
    wait_for("/readyz to return 200", Duration::from_secs(15), || async {
        let response = app.http.get(&readyz).send().await.ok()?;
        (response.status() == 200).then_some(())
    })
    .await;
    let accepted = counts(app.post_appwrite(&events, PASSWORD_UPDATED).await).await;
    assert_eq!(accepted["accepted"], 1);
    let settled = app.settle().await;
    assert_eq!(settled.done, 1);
    assert!(app.sessions().is_empty());
    app.stop().await;
}
