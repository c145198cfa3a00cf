//! `revokd demo`: revokd and an Appwrite simulator on loopback, fed with
//! real-format events signed the way their senders sign them.
//!
//! Everything lives in a temporary directory that is removed at the end.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::app::Service;
use crate::config::{Config, ProcessEnv};
use crate::delivery::now_millis;
use crate::senders::{appwrite_signature, standard_webhooks_signature};
use crate::simulator::Simulator;
use crate::store::Store;

const PROJECT: &str = "demo-project";
const API_KEY: &str = "demo-api-key-with-users-read-and-write";
const USER: &str = "6650c1f2a7b3e9d4c021";
const SESSIONS: [&str; 3] = [
    "6651d0aa3c5e7f9b1d24",
    "6651d0aa3c5e7f9b1d25",
    "6651d0aa3c5e7f9b1d26",
];
/// Appwrite's webhook key is 128 hex characters; this one is made up.
const APPWRITE_KEY: &str = "3f9a1c7e5b2d8f4a6c0e1b3d5f7a9c2e4b6d8f0a1c3e5b7d9f2a4c6e8b0d1f3a\
                            5c7e9b1d3f5a7c9e0b2d4f6a8c1e3b5d7f9a0c2e4b6d8f1a3c5e7b9d0f2a4c6e";
const CLERK_SECRET: &str = "whsec_ZGVtby1jbGVyay1zaWduaW5nLXNlY3JldC0zMmI=";

const PASSWORD_UPDATED: &[u8] = include_bytes!("../tests/fixtures/appwrite-password-updated.body");
const USER_BLOCKED: &[u8] = include_bytes!("../tests/fixtures/appwrite-user-blocked.body");
const RECOVERY_COMPLETED: &[u8] =
    include_bytes!("../tests/fixtures/appwrite-recovery-completed.body");
const CLERK_USER_BANNED: &[u8] = include_bytes!("../tests/fixtures/clerk-user-banned.json");
const EVENT_HEADERS: &str = include_str!("../tests/fixtures/appwrite-events.json");

/// The rules of the documented example config.
const RULES: &str = r#"
[[rules]]
name = "logout-on-password-change"
source = "appwrite"
event = "users.*.update.password"
user = { id = "/$id" }
action = "delete_sessions"
target = "main"

[[rules]]
name = "logout-on-block"
source = "appwrite"
event = "users.*.update.status"
when = { "/status" = false }
user = { id = "/$id" }
action = "delete_sessions"
target = "main"

[[rules]]
name = "logout-on-recovery"
source = "appwrite"
event = "users.*.recovery.*.update"
user = { id = "/userId" }
action = "delete_sessions"
target = "main"

[[rules]]
name = "block-on-ban"
source = "clerk"
event = "user.updated"
when = { "/data/banned" = true }
user = { id = "/data/external_id" }
action = "block_user"
target = "main"
"#;

pub async fn run() -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let simulator = Simulator::start("127.0.0.1:0".parse()?)
        .await
        .context("cannot start the Appwrite simulator")?;
    simulator.add_project(PROJECT);
    simulator.add_key(PROJECT, API_KEY, &["users.read", "users.write"]);
    simulator.add_user(PROJECT, USER, "jane.doe@example.com");
    for session in SESSIONS {
        simulator.add_session(PROJECT, USER, session);
    }

    let secret = |name: &str, value: &str| -> anyhow::Result<String> {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("{value}\n"))?;
        Ok(path.display().to_string())
    };
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    listener.set_nonblocking(true)?;
    let base = format!("http://{}", listener.local_addr()?);
    let signed_url = format!("{base}/hooks/appwrite");
    let config_text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
workers = 2

[store]
url = "sqlite://{store}"

[delivery]
backoff_base = "100ms"

[targets.main]
endpoint = "{endpoint}"
project = "{PROJECT}"
api_key = {{ file = "{api_key}" }}

[sources.appwrite]
kind = "appwrite"
signed_url = "{signed_url}"
secrets = [{{ file = "{appwrite_secret}" }}]

[sources.clerk]
kind = "standard-webhooks"
secrets = [{{ file = "{clerk_secret}" }}]
{RULES}"#,
        store = dir.path().join("revokd.db").display(),
        endpoint = simulator.endpoint(),
        api_key = secret("appwrite-api-key", API_KEY)?,
        appwrite_secret = secret("appwrite-webhook-secret", APPWRITE_KEY)?,
        clerk_secret = secret("clerk-webhook-secret", CLERK_SECRET)?,
    );
    let config = Config::parse(&config_text, &ProcessEnv).map_err(anyhow::Error::msg)?;

    println!("== revokd demo");
    println!(
        "Appwrite simulator at {}, revokd at {base}",
        simulator.endpoint()
    );
    println!(
        "user {USER} sessions before: {:?}",
        simulator.sessions(PROJECT, USER).unwrap_or_default()
    );

    let service = Service::start(config, listener).await?;
    let store = service.store();
    let client = reqwest::Client::new();
    let headers: serde_json::Value = serde_json::from_str(EVENT_HEADERS)?;
    let appwrite_samples = [
        ("appwrite-password-updated.body", PASSWORD_UPDATED),
        ("appwrite-user-blocked.body", USER_BLOCKED),
        ("appwrite-recovery-completed.body", RECOVERY_COMPLETED),
    ];
    let mut results = Vec::new();
    for (name, body) in appwrite_samples {
        let events = headers[name]
            .as_str()
            .context("missing sample event header")?;
        let response = client
            .post(&signed_url)
            .header("Content-Type", "application/json")
            .header("X-Appwrite-Webhook-Events", events)
            .header(
                "X-Appwrite-Webhook-Signature",
                appwrite_signature(APPWRITE_KEY, &signed_url, body),
            )
            .body(body)
            .send()
            .await?;
        results.push((name, response.status(), response.text().await?));
    }
    let timestamp = now_millis() / 1000;
    let message_id = format!("msg_{}", ulid::Ulid::new());
    let response = client
        .post(format!("{base}/hooks/clerk"))
        .header("Content-Type", "application/json")
        .header("svix-id", &message_id)
        .header("svix-timestamp", timestamp.to_string())
        .header(
            "svix-signature",
            standard_webhooks_signature(CLERK_SECRET, &message_id, timestamp, CLERK_USER_BANNED),
        )
        .body(CLERK_USER_BANNED)
        .send()
        .await?;
    results.push((
        "clerk-user-banned.json",
        response.status(),
        response.text().await?,
    ));
    for (name, status, body) in &results {
        println!("POST {name}: {status} {body}");
    }

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let counts = store.job_counts().await?;
        if counts.pending == 0 {
            println!("jobs: {} done, {} dead", counts.done, counts.dead);
            break;
        }
        if Instant::now() > deadline {
            bail!("jobs still pending after 30 s: {counts:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    service.stop().await?;

    let sessions = simulator.sessions(PROJECT, USER).unwrap_or_default();
    let status = simulator.user_status(PROJECT, USER);
    println!("user {USER} sessions after: {sessions:?}");
    println!(
        "user {USER} status after: {}",
        if status == Some(false) {
            "blocked"
        } else {
            "active"
        }
    );
    println!("Appwrite calls received:");
    for request in simulator.requests() {
        println!("  {} {} → {}", request.method, request.path, request.status);
    }
    simulator.stop().await;

    if results.iter().any(|(_, status, _)| !status.is_success()) {
        bail!("an event was not accepted");
    }
    if !sessions.is_empty() || status != Some(false) {
        bail!("the user still has sessions or is not blocked");
    }
    println!("== done: every session ended and the user is blocked");
    Ok(())
}
