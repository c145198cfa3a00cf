//! Crash safety of the real `revokd` binary: while clients send a stream of
//! signed events, the process is killed with SIGKILL at random moments and
//! restarted on the same store. Every event that got a 2xx must reach
//! Appwrite, and no rejected one may.
//!
//! The seed of the kill schedule and event mix is printed. Set `CRASH_SEED`
//! to repeat both. Thread and network timing still differ between runs.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use revokd::delivery::now_millis;
use revokd::simulator::{Fault, Simulator};
use revokd::store::sqlite::{SqliteOptions, SqliteStore};
use revokd::store::{Millis, Store};

/// Users 0..TARGET_USERS receive valid events; the rest only receive
/// requests that revokd must reject.
const TARGET_USERS: usize = 180;
const ALL_USERS: usize = 200;
const KILLS: usize = 6;
const CLIENTS: usize = 4;
/// Maximum number of events one client sends.
const MAX_EVENTS_PER_CLIENT: u64 = 800;
/// Maximum number of times one event is sent while no 2xx or 4xx arrives.
const MAX_SENDS_PER_EVENT: usize = 60;

fn user_id(index: usize) -> String {
    format!("chaos-user-{index:03}")
}

fn sessions_path(user: &str) -> String {
    format!("/v1/users/{user}/sessions")
}

/// One request a client sends, with the outcome it expects.
#[derive(Debug, Clone, Copy, PartialEq)]
enum EventKind {
    /// Signed Appwrite password update: 2xx and a delete-all-sessions job.
    AppwritePassword,
    /// Signed Standard Webhooks ban: 2xx and a block-user job, which ends
    /// with a delete-all-sessions call.
    ClerkBan,
    /// Appwrite body with a wrong signature: 401.
    ForgedSignature,
    /// Standard Webhooks body with a wrong signature: 401.
    ForgedClerk,
    /// Correctly signed Appwrite body without the events header: 400.
    MissingEventsHeader,
}

impl EventKind {
    fn is_valid(self) -> bool {
        matches!(self, EventKind::AppwritePassword | EventKind::ClerkBan)
    }

    fn expected_rejection(self) -> Option<u16> {
        match self {
            EventKind::AppwritePassword | EventKind::ClerkBan => None,
            EventKind::ForgedSignature | EventKind::ForgedClerk => Some(401),
            EventKind::MissingEventsHeader => Some(400),
        }
    }
}

/// What happened to one event, from the client's side.
#[derive(Debug, Clone)]
struct SentEvent {
    kind: EventKind,
    user: String,
    /// When the first copy was sent. A copy whose reply was lost may have
    /// committed, so a delivery counts from here, not from the 2xx.
    first_sent_at: Millis,
    /// Final HTTP status, or `None` when no reply came after every send.
    status: Option<u16>,
    /// `accepted` plus `duplicates` from a 2xx body.
    stored: u64,
    sends: usize,
}

struct Client {
    http: reqwest::Client,
    base: String,
    signed_url: String,
    next_seq: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<SentEvent>>>,
}

impl Client {
    async fn run(self, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        for _ in 0..MAX_EVENTS_PER_CLIENT {
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
            let kind = match rng.gen_range(0..20) {
                0 => EventKind::ForgedSignature,
                1 => EventKind::ForgedClerk,
                2 => EventKind::MissingEventsHeader,
                3..=8 => EventKind::ClerkBan,
                _ => EventKind::AppwritePassword,
            };
            let user = if kind.is_valid() {
                user_id(rng.gen_range(0..TARGET_USERS))
            } else {
                user_id(rng.gen_range(TARGET_USERS..ALL_USERS))
            };
            let sent = self.send(kind, &user, seq).await;
            self.log.lock().unwrap().push(sent);
            // A pause, so the stream lasts through every kill on a slow machine.
            tokio::time::sleep(Duration::from_millis(rng.gen_range(5..=25))).await;
        }
    }

    /// Sends one event until a reply other than 503 arrives, sending the same
    /// bytes again after a connection error, as a webhook sender does.
    async fn send(&self, kind: EventKind, user: &str, seq: u64) -> SentEvent {
        // Each body is unique, so deduplication never hides an event.
        let appwrite_body = format!(
            r#"{{"$id":"{user}","status":true,"passwordUpdate":"2026-05-20T10:15:30.512+00:00","seq":{seq}}}"#
        );
        let events = format!(
            "users.{user}.update,users.*.update,users.{user}.update.password,users.*.update.password,users.{user},users.*"
        );
        let clerk_body = format!(
            r#"{{"type":"user.updated","data":{{"banned":true,"external_id":"{user}"}},"seq":{seq}}}"#
        );
        let clerk_id = format!("msg_chaos_{seq}");

        let first_sent_at = now_millis();
        let mut sends = 0;
        while sends < MAX_SENDS_PER_EVENT {
            sends += 1;
            let request = match kind {
                EventKind::AppwritePassword => appwrite_request(
                    &self.http,
                    &self.signed_url,
                    &events,
                    appwrite_body.as_bytes(),
                ),
                EventKind::ClerkBan => {
                    clerk_request(&self.http, &self.base, &clerk_id, clerk_body.as_bytes())
                }
                EventKind::ForgedSignature => self
                    .http
                    .post(&self.signed_url)
                    .header("Content-Type", "application/json")
                    .header("X-Appwrite-Webhook-Events", &events)
                    .header(
                        "X-Appwrite-Webhook-Signature",
                        "c2lnbmF0dXJlLWd1ZXNzLTEyMzQ1Ng==",
                    )
                    .body(appwrite_body.clone()),
                EventKind::ForgedClerk => self
                    .http
                    .post(format!("{}/hooks/clerk", self.base))
                    .header("Content-Type", "application/json")
                    .header("svix-id", &clerk_id)
                    .header("svix-timestamp", (now_millis() / 1000).to_string())
                    .header(
                        "svix-signature",
                        "v1,c2lnbmF0dXJlLWd1ZXNzLTEyMzQ1NmFiY2RlZmdoaWprbG1ub3A=",
                    )
                    .body(clerk_body.clone()),
                EventKind::MissingEventsHeader => {
                    let signature = revokd::senders::appwrite_signature(
                        APPWRITE_SECRET,
                        &self.signed_url,
                        appwrite_body.as_bytes(),
                    );
                    self.http
                        .post(&self.signed_url)
                        .header("Content-Type", "application/json")
                        .header("X-Appwrite-Webhook-Signature", signature)
                        .body(appwrite_body.clone())
                }
            };
            match request.send().await {
                Ok(response) if response.status() == 503 => {}
                Ok(response) => {
                    let status = response.status().as_u16();
                    let stored = if response.status().is_success() {
                        match response.json::<HashMap<String, u64>>().await {
                            Ok(body) => body["accepted"] + body["duplicates"],
                            // The process died between the status line and the body.
                            Err(_) => continue,
                        }
                    } else {
                        0
                    };
                    return SentEvent {
                        kind,
                        user: user.to_string(),
                        first_sent_at,
                        status: Some(status),
                        stored,
                        sends,
                    };
                }
                // The process is down or died mid-request: not acknowledged.
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        SentEvent {
            kind,
            user: user.to_string(),
            first_sent_at,
            status: None,
            stored: 0,
            sends,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_process_loses_no_acknowledged_event() {
    let started = Instant::now();
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| now_millis() as u64);
    println!("crash test seed: {seed} (set CRASH_SEED={seed} to repeat the schedule)");
    let mut rng = StdRng::seed_from_u64(seed);

    let simulator = Simulator::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    simulator.add_project(PROJECT);
    simulator.add_key(PROJECT, API_KEY, &["users.read", "users.write"]);
    for index in 0..ALL_USERS {
        let user = user_id(index);
        simulator.add_user(PROJECT, &user, &format!("{user}@example.com"));
        simulator.add_session(PROJECT, &user, &format!("session-{index:03}"));
    }

    // Jobs leased by a killed process are claimed again after the 4s lease
    // of `config_text`.
    let setup = BinarySetup::new(&simulator.endpoint(), |text| {
        text.replace("workers = 1", "workers = 2")
    });
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut process = setup.spawn("run-0");
    setup.wait_ready(&http, &mut process).await;

    let stop = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(Vec::new()));
    let next_seq = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let client = Client {
            http: http.clone(),
            base: setup.base.clone(),
            signed_url: setup.signed_url.clone(),
            next_seq: next_seq.clone(),
            stop: stop.clone(),
            log: log.clone(),
        };
        clients.push(tokio::spawn(client.run(rng.gen())));
    }

    for kill in 1..=KILLS {
        // Some Appwrite calls are slow, so a kill often lands while a call
        // is in flight and its job is leased.
        let slow = rng.gen_range(0..4);
        simulator.push_faults((0..slow).map(|_| Fault::Slow { delay_ms: 300 }));
        tokio::time::sleep(Duration::from_millis(rng.gen_range(150..=800))).await;
        let status = process.kill();
        assert!(!status.success(), "revokd exited by itself: {status:?}");
        process = setup.spawn(&format!("run-{kill}"));
        setup.wait_ready(&http, &mut process).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        tokio::time::timeout(Duration::from_secs(30), client)
            .await
            .expect("a client did not finish within 30s")
            .unwrap();
    }

    // The test reads the store while the last process runs, as the CLI
    // does. Jobs leased by a killed process wait for their lease to expire.
    let reader = SqliteStore::open(SqliteOptions::new(&setup.store)).unwrap();
    wait_for(
        "every job to leave pending",
        Duration::from_secs(30),
        || async {
            let counts = reader.job_counts().await.unwrap();
            (counts.pending == 0).then_some(())
        },
    )
    .await;
    reader.close().await.unwrap();
    let (exit, _) = process.terminate(Duration::from_secs(10)).await;
    assert!(exit.success(), "revokd exited with {exit:?} after SIGTERM");

    let sent = log.lock().unwrap().clone();
    let requests = simulator.requests();
    let mut deletes: HashMap<String, Vec<Millis>> = HashMap::new();
    let mut successful_deletes = 0u64;
    for request in &requests {
        if request.method == "DELETE" && request.status == 204 {
            deletes
                .entry(request.path.clone())
                .or_default()
                .push(request.at_ms);
            successful_deletes += 1;
        }
    }

    let valid: Vec<&SentEvent> = sent.iter().filter(|event| event.kind.is_valid()).collect();
    let acknowledged: Vec<&SentEvent> = valid
        .iter()
        .copied()
        .filter(|event| {
            event
                .status
                .is_some_and(|status| (200..300).contains(&status))
        })
        .collect();
    for event in &valid {
        if let Some(status) = event.status {
            assert!(
                (200..300).contains(&status),
                "valid event answered {status}: {event:?}"
            );
        }
    }
    for event in &acknowledged {
        assert_eq!(event.stored, 1, "2xx without a stored event: {event:?}");
    }
    let lost: Vec<&&SentEvent> = acknowledged
        .iter()
        .filter(|event| {
            let calls = deletes.get(&sessions_path(&event.user));
            !calls.is_some_and(|times| times.iter().any(|at| *at >= event.first_sent_at))
        })
        .collect();

    let rejected: Vec<&SentEvent> = sent.iter().filter(|event| !event.kind.is_valid()).collect();
    for event in &rejected {
        if let Some(status) = event.status {
            assert_eq!(
                Some(status),
                event.kind.expected_rejection(),
                "rejected request answered {status}: {event:?}"
            );
        }
    }
    let rejected_answered = rejected
        .iter()
        .filter(|event| event.status.is_some())
        .count();
    for index in TARGET_USERS..ALL_USERS {
        let user = user_id(index);
        let prefix = format!("/v1/users/{user}");
        let calls: Vec<_> = requests
            .iter()
            .filter(|request| request.path.starts_with(&prefix))
            .collect();
        assert!(
            calls.is_empty(),
            "rejected user {user} was called: {calls:?}"
        );
        assert_eq!(
            simulator.sessions(PROJECT, &user).unwrap().len(),
            1,
            "{user}"
        );
    }

    let store = SqliteStore::open(SqliteOptions::new(&setup.store)).unwrap();
    let counts = store.job_counts().await.unwrap();
    store.close().await.unwrap();
    let duplicates = successful_deletes.saturating_sub(counts.done);
    let resent = sent.iter().filter(|event| event.sends > 1).count();
    println!(
        "crash test: {KILLS} kills; valid events sent {}, acknowledged {}, delivered {}, \
         duplicates delivered {duplicates}, lost {}; rejected requests sent {}, answered 4xx {}; \
         events sent more than once {resent}; jobs {counts:?}; {:.1}s",
        valid.len(),
        acknowledged.len(),
        acknowledged.len() - lost.len(),
        lost.len(),
        rejected.len(),
        rejected_answered,
        started.elapsed().as_secs_f64(),
    );

    assert!(
        lost.is_empty(),
        "acknowledged but never delivered: {lost:?}"
    );
    assert!(
        acknowledged.len() >= 100,
        "too few events acknowledged to test anything: {}",
        acknowledged.len()
    );
    assert!(rejected_answered >= 10, "{rejected_answered}");
    assert_eq!(counts.pending, 0);
    assert_eq!(counts.claimed, 0);
    assert_eq!(counts.dead, 0);
    assert!(
        counts.done >= acknowledged.len() as u64,
        "{} done jobs for {} acknowledged events",
        counts.done,
        acknowledged.len()
    );
    simulator.stop().await;
}
