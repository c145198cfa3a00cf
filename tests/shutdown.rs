//! Graceful shutdown of the real `revokd` binary: SIGTERM while Appwrite is
//! slow and requests are in flight. The process must exit 0 within its
//! shutdown grace, reply to the requests it already read, leave no job
//! leased, and a restart must deliver every acknowledged event.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use revokd::delivery::now_millis;
use revokd::simulator::{Fault, Simulator};
use revokd::store::sqlite::{SqliteOptions, SqliteStore};
use revokd::store::{Millis, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const GRACE: Duration = Duration::from_secs(3);
/// Time allowed beyond the grace for what follows it: releasing leases,
/// closing the store and the process exit. It is below the one second that
/// actix-web's server takes to notice its last connection closed, because
/// actix-server 2.10 checks its connections every second while it shuts down.
/// So a stop that drains the server and then the workers, one grace after the
/// other, fails the test.
const EXIT_MARGIN: Duration = Duration::from_millis(800);
const STREAM_USERS: usize = 40;

fn user_id(index: usize) -> String {
    format!("shutdown-user-{index:02}")
}

fn password_update(user: &str) -> (String, String) {
    let events = format!(
        "users.{user}.update,users.*.update,users.{user}.update.password,users.*.update.password,users.{user},users.*"
    );
    let body = format!(r#"{{"$id":"{user}","status":true}}"#);
    (events, body)
}

/// One acknowledged event: its user and when its request was sent.
type Acknowledged = (String, Millis);

/// Sends one password update per user in `users`, one after the other,
/// until the first connection error. Returns the acknowledged ones.
async fn send_stream(
    http: reqwest::Client,
    signed_url: String,
    users: Vec<String>,
    acknowledged: Arc<Mutex<Vec<Acknowledged>>>,
) {
    for user in users {
        let (events, body) = password_update(&user);
        let sent_at = now_millis();
        let request = appwrite_request(&http, &signed_url, &events, body.as_bytes());
        let Ok(response) = request.send().await else {
            return;
        };
        assert_eq!(response.status(), 200, "event for {user} not accepted");
        acknowledged.lock().unwrap().push((user, sent_at));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writes the head and the first half of a signed hooks request on a raw
/// connection and returns the connection with the rest of the body.
async fn start_split_request(
    base: &str,
    signed_url: &str,
    user: &str,
) -> (tokio::net::TcpStream, Vec<u8>) {
    let (events, body) = password_update(user);
    let signature =
        revokd::senders::appwrite_signature(APPWRITE_SECRET, signed_url, body.as_bytes());
    let address = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /hooks/appwrite HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         X-Appwrite-Webhook-Events: {events}\r\nX-Appwrite-Webhook-Signature: {signature}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(first).await.unwrap();
    stream.flush().await.unwrap();
    (stream, rest.to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_requests_and_releases_jobs() {
    let simulator = Simulator::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    simulator.add_project(PROJECT);
    simulator.add_key(PROJECT, API_KEY, &["users.read", "users.write"]);
    for index in 0..STREAM_USERS + 6 {
        let user = user_id(index);
        simulator.add_user(PROJECT, &user, &format!("{user}@example.com"));
        simulator.add_session(PROJECT, &user, &format!("session-{index:02}"));
    }

    // Appwrite calls may take 10s, so slow calls are in flight at SIGTERM.
    // The 40s lease makes a job that was not released show as claimed.
    let setup = BinarySetup::new(&simulator.endpoint(), |text| {
        text.replace("shutdown_grace = \"5s\"", "shutdown_grace = \"3s\"")
            .replace("request_timeout = \"1s\"", "request_timeout = \"10s\"")
            .replace("lease = \"4s\"", "lease = \"40s\"")
    });
    let http = reqwest::Client::new();
    let mut process = setup.spawn("first");
    setup.wait_ready(&http, &mut process).await;

    // Two calls finish within the grace and two outlast it.
    simulator.push_faults([
        Fault::Slow { delay_ms: 800 },
        Fault::Slow { delay_ms: 8_000 },
        Fault::Slow { delay_ms: 800 },
        Fault::Slow { delay_ms: 8_000 },
    ]);
    let mut acknowledged: Vec<Acknowledged> = Vec::new();
    for index in 0..4 {
        let user = user_id(STREAM_USERS + index);
        let (events, body) = password_update(&user);
        let sent_at = now_millis();
        let response = appwrite_request(&http, &setup.signed_url, &events, body.as_bytes())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        acknowledged.push((user, sent_at));
    }
    wait_for(
        "four slow calls to reach Appwrite",
        Duration::from_secs(10),
        || async { (simulator.requests().len() >= 4).then_some(()) },
    )
    .await;

    let split_user = user_id(STREAM_USERS + 4);
    let split_sent_at = now_millis();
    let (mut split, rest) = start_split_request(&setup.base, &setup.signed_url, &split_user).await;
    let streamed = Arc::new(Mutex::new(Vec::new()));
    let stream = tokio::spawn(send_stream(
        http.clone(),
        setup.signed_url.clone(),
        (0..STREAM_USERS).map(user_id).collect(),
        streamed.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;

    let terminated_at = Instant::now();
    let pid = process.id().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    // The request that was half read when the signal arrived is finished
    // after it, and must still get its reply.
    tokio::time::sleep(Duration::from_millis(300)).await;
    split.write_all(&rest).await.unwrap();
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(10), split.read_to_string(&mut reply))
        .await
        .expect("no reply to the request in flight within 10s")
        .unwrap();
    assert!(
        reply.starts_with("HTTP/1.1 200"),
        "request in flight at SIGTERM: {reply}"
    );
    acknowledged.push((split_user, split_sent_at));

    let exit = wait_for("revokd to exit after SIGTERM", GRACE * 4, || {
        let exited = process.try_wait();
        async move { exited }
    })
    .await;
    let took = terminated_at.elapsed();
    assert!(exit.success(), "revokd exited with {exit:?}");
    assert!(
        took <= GRACE + EXIT_MARGIN,
        "revokd took {took:?} to exit; its shutdown grace is {GRACE:?}"
    );
    tokio::time::timeout(Duration::from_secs(10), stream)
        .await
        .expect("the request stream did not end after the exit")
        .unwrap();
    let streamed = streamed.lock().unwrap().clone();
    println!(
        "shutdown: exit after {took:?}; {} streamed events acknowledged before the exit",
        streamed.len()
    );
    assert!(
        !streamed.is_empty(),
        "no event of the stream was acknowledged"
    );
    acknowledged.extend(streamed);

    let store = SqliteStore::open(SqliteOptions::new(&setup.store)).unwrap();
    let counts = store.job_counts().await.unwrap();
    store.close().await.unwrap();
    assert_eq!(counts.claimed, 0, "{counts:?}");
    assert_eq!(counts.dead, 0, "{counts:?}");
    assert_eq!(
        counts.pending + counts.done,
        acknowledged.len() as u64,
        "one job per acknowledged event: {counts:?}"
    );
    assert!(counts.pending >= 2, "slow jobs left pending: {counts:?}");

    let mut process = setup.spawn("second");
    setup.wait_ready(&http, &mut process).await;
    let reader = SqliteStore::open(SqliteOptions::new(&setup.store)).unwrap();
    let counts = wait_for(
        "every job to leave pending after the restart",
        Duration::from_secs(20),
        || async {
            let counts = reader.job_counts().await.unwrap();
            (counts.pending == 0).then_some(counts)
        },
    )
    .await;
    reader.close().await.unwrap();
    assert_eq!(counts.done, acknowledged.len() as u64, "{counts:?}");
    assert_eq!(counts.dead, 0, "{counts:?}");

    let mut deletes: HashMap<String, Vec<Millis>> = HashMap::new();
    for request in simulator.requests() {
        if request.method == "DELETE" && request.status == 204 {
            deletes.entry(request.path).or_default().push(request.at_ms);
        }
    }
    for (user, sent_at) in &acknowledged {
        let path = format!("/v1/users/{user}/sessions");
        let delivered = deletes
            .get(&path)
            .is_some_and(|times| times.iter().any(|at| at >= sent_at));
        assert!(delivered, "acknowledged event for {user} never delivered");
        assert_eq!(
            simulator.sessions(PROJECT, user).unwrap().len(),
            0,
            "{user}"
        );
    }

    let (exit, took) = process.terminate(GRACE * 4).await;
    assert!(exit.success(), "restarted revokd exited with {exit:?}");
    assert!(took <= GRACE + EXIT_MARGIN, "{took:?}");
    simulator.stop().await;
}
