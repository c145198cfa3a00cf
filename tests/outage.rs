//! Appwrite outage: jobs queued while Appwrite refuses connections, then
//! returns 503, then 429 with `Retry-After`, are all delivered once it
//! recovers, with backoff between attempts, while `/readyz` stays 200.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use revokd::simulator::{Fault, Simulator};
use revokd::store::{JobRecord, Store};

/// Users with one event each, `USER` first.
const USERS: [&str; 4] = [
    USER,
    "6650c1f2a7b3e9d4c0a1",
    "6650c1f2a7b3e9d4c0a2",
    "6650c1f2a7b3e9d4c0a3",
];
const BACKOFF_MAX_MS: i64 = 400;
/// Time a retry may start after it is due: the worker's poll, the claim and
/// a busy machine.
const SCHEDULING_SLACK_MS: i64 = 500;
const RATE_LIMIT_SECS: u64 = 1;

fn password_update(user: &str) -> (String, String) {
    let events = format!(
        "users.{user}.update,users.*.update,users.{user}.update.password,users.*.update.password,users.{user},users.*"
    );
    let body = format!(r#"{{"$id":"{user}","status":true}}"#);
    (events, body)
}

/// Returns the ids of every stored event, oldest first.
fn event_ids(app: &TestApp) -> Vec<String> {
    let conn = rusqlite::Connection::open_with_flags(
        app.store_path(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut select = conn
        .prepare("SELECT id FROM events ORDER BY received_at, id")
        .unwrap();
    let ids = select
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<rusqlite::Result<Vec<String>>>()
        .unwrap();
    ids
}

async fn jobs_of(app: &TestApp, event_ids: &[String]) -> Vec<JobRecord> {
    let store = app.store();
    let mut jobs = Vec::new();
    for id in event_ids {
        jobs.extend(store.event_jobs(id).await.unwrap());
    }
    jobs
}

/// Polls `/readyz` every 50ms until `stop` is set and returns every status.
fn watch_readiness(app: &TestApp, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<u16>> {
    let http = app.http.clone();
    let url = format!("{}/readyz", app.base);
    tokio::spawn(async move {
        let mut statuses = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
            let status = match http.get(&url).send().await {
                Ok(response) => response.status().as_u16(),
                Err(_) => 0,
            };
            statuses.push(status);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        statuses
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusing_simulator_gives_connection_refused() {
    let simulator = Simulator::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    simulator.add_key(PROJECT, API_KEY, &["users.read"]);
    simulator.add_user(PROJECT, USER, "jane.doe@example.com");
    let url = format!("{}/users/{USER}/sessions", simulator.endpoint());
    // No pooled connection, so a request during the outage has to connect.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let get = || {
        http.get(&url)
            .header("X-Appwrite-Project", PROJECT)
            .header("X-Appwrite-Key", API_KEY)
            .send()
    };
    assert_eq!(get().await.unwrap().status(), 200);

    simulator.set_refusing(true).await.unwrap();
    assert!(simulator.is_refusing());
    let refused = std::net::TcpStream::connect(simulator.addr()).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    let failed = get().await.unwrap_err();
    assert!(failed.is_connect(), "{failed:?}");

    simulator.set_refusing(false).await.unwrap();
    assert!(!simulator.is_refusing());
    assert_eq!(get().await.unwrap().status(), 200);
    // Data and the request log survive the outage.
    let statuses: Vec<u16> = simulator.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![200, 200]);
    assert_eq!(simulator.sessions(PROJECT, USER), Some(Vec::new()));
    simulator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_jobs_are_delivered_after_recovery() {
    let app = spawn_app_edited(DEFAULT_RULES, &["users.read", "users.write"], |text| {
        text.replace("backoff_base = \"50ms\"", "backoff_base = \"100ms\"")
            .replace("backoff_max = \"200ms\"", "backoff_max = \"400ms\"")
            .replace("max_attempts = 5", "max_attempts = 40")
    })
    .await;
    for (index, user) in USERS.iter().enumerate().skip(1) {
        app.simulator
            .add_user(PROJECT, user, &format!("user{index}@example.com"));
        app.simulator
            .add_session(PROJECT, user, &format!("session{index}"));
    }
    let stop_watching = Arc::new(AtomicBool::new(false));
    let readiness = watch_readiness(&app, stop_watching.clone());

    app.simulator.set_refusing(true).await.unwrap();
    for user in USERS {
        let (events, body) = password_update(user);
        let answer = counts(app.post_appwrite(&events, body.as_bytes()).await).await;
        assert_eq!(answer["accepted"], 1, "{user}");
    }
    let events = event_ids(&app);
    assert_eq!(events.len(), USERS.len());

    // Every job fails to connect a few times before Appwrite accepts connections again.
    let refused_at_least = 3;
    wait_for(
        "every job to fail to connect 3 times",
        Duration::from_secs(15),
        || async {
            let jobs = jobs_of(&app, &events).await;
            jobs.iter()
                .all(|job| job.attempts.len() >= refused_at_least)
                .then_some(())
        },
    )
    .await;

    app.simulator.push_faults(
        (0..USERS.len())
            .map(|_| Fault::Status {
                status: 503,
                error_type: "general_server_error".into(),
                json: true,
            })
            .chain((0..USERS.len()).map(|_| Fault::RateLimited {
                retry_after_secs: RATE_LIMIT_SECS,
            })),
    );
    app.simulator.set_refusing(false).await.unwrap();

    let settled = wait_for(
        "every job to finish after recovery",
        Duration::from_secs(30),
        || async {
            let counts = app.store().job_counts().await.unwrap();
            (counts.pending == 0).then_some(counts)
        },
    )
    .await;
    stop_watching.store(true, Ordering::SeqCst);
    assert_eq!(settled.done, USERS.len() as u64, "{settled:?}");
    assert_eq!(settled.dead, 0, "{settled:?}");

    for user in USERS {
        assert_eq!(app.simulator.sessions(PROJECT, user), Some(Vec::new()));
    }
    let statuses: Vec<u16> = app.calls().iter().map(|call| call.status).collect();
    let count = |status: u16| statuses.iter().filter(|s| **s == status).count();
    assert_eq!(count(503), USERS.len(), "{statuses:?}");
    assert_eq!(count(429), USERS.len(), "{statuses:?}");
    assert_eq!(count(204), USERS.len(), "{statuses:?}");
    assert_eq!(statuses.len(), 3 * USERS.len(), "{statuses:?}");

    let jobs = jobs_of(&app, &events).await;
    assert_eq!(jobs.len(), USERS.len());
    let mut attempts_per_job = Vec::new();
    for job in &jobs {
        let attempts = &job.attempts;
        let (last, failed) = attempts.split_last().unwrap();
        assert_eq!(last.error_type, None, "job {} did not end done", job.id);
        assert!(failed.len() >= refused_at_least, "job {}", job.id);
        assert!(
            failed.iter().all(|attempt| attempt.error_type.is_some()),
            "job {}: {attempts:?}",
            job.id
        );
        let refused = failed
            .iter()
            .take_while(|attempt| attempt.error_type.as_deref() == Some("connect"))
            .count();
        assert!(refused >= refused_at_least, "job {}: {attempts:?}", job.id);
        // With a tight loop the job would reach its 40 attempts and be dead.
        assert!(attempts.len() <= 20, "job {}: {attempts:?}", job.id);
        attempts_per_job.push(attempts.len());

        for pair in attempts.windows(2) {
            let gap = pair[1].started_at - pair[0].finished_at;
            assert!(gap >= 0, "job {}: attempts overlap: {attempts:?}", job.id);
            if pair[0].status == Some(429) {
                assert!(
                    gap >= RATE_LIMIT_SECS as i64 * 1000,
                    "job {}: retried {gap} ms after a 429 with Retry-After: {RATE_LIMIT_SECS}",
                    job.id
                );
            } else {
                assert!(
                    gap <= BACKOFF_MAX_MS + SCHEDULING_SLACK_MS,
                    "job {}: waited {gap} ms, over backoff_max: {attempts:?}",
                    job.id
                );
            }
        }
    }
    println!("outage: attempts per job {attempts_per_job:?}");

    let readiness = readiness.await.unwrap();
    assert!(readiness.len() >= 10, "{readiness:?}");
    assert!(
        readiness.iter().all(|status| *status == 200),
        "/readyz during the outage: {readiness:?}"
    );
    app.stop().await;
}
