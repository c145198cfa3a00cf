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
use crate::senders::{appwrite_signature, ed25519_jwk, ed25519_jwt, standard_webhooks_signature};
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
const OKTA_AUTHORIZATION: &str = "Bearer demo-okta-hook-secret";
/// The second user, whom the Okta sample's admin suspends.
const OTHER_USER: &str = "6650c1f2a7b3e9d4c0ff";
const OTHER_EMAIL: &str = "sam.lee@example.com";
const OTHER_SESSIONS: [&str; 2] = ["6651d0aa3c5e7f9b1d30", "6651d0aa3c5e7f9b1d31"];
/// Seed of the demo transmitter's Ed25519 signing key.
const SSF_KEY_SEED: [u8; 32] = [42; 32];
const SSF_ISSUER: &str = "https://transmitter.example.com";

const PASSWORD_UPDATED: &[u8] = include_bytes!("../tests/fixtures/appwrite-password-updated.body");
const USER_BLOCKED: &[u8] = include_bytes!("../tests/fixtures/appwrite-user-blocked.body");
const RECOVERY_COMPLETED: &[u8] =
    include_bytes!("../tests/fixtures/appwrite-recovery-completed.body");
const CLERK_USER_BANNED: &[u8] = include_bytes!("../tests/fixtures/clerk-user-banned.json");
const EVENT_HEADERS: &str = include_str!("../tests/fixtures/appwrite-events.json");
const OKTA_BATCH: &[u8] = include_bytes!("../tests/fixtures/okta-event-hook.json");
const SSF_CLAIMS: &str = include_str!("../tests/fixtures/ssf-caep-session-revoked.claims.json");

/// The rules of the example config in `deploy/revokd.toml`: Appwrite
/// password changes, blocks and recoveries, and Clerk bans.
pub const EXAMPLE_RULES: &str = r#"
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

/// Rules for the demo's Okta and Shared Signals sources.
const IDP_RULES: &str = r#"
[[rules]]
name = "okta-password-change"
source = "okta"
event = "user.account.update_password"
user = { email = "/user/alternateId" }
action = "delete_sessions"
target = "main"

[[rules]]
name = "okta-suspend"
source = "okta"
event = "user.lifecycle.suspend"
user = { email = "/user/alternateId" }
action = "block_user"
target = "main"

[[rules]]
name = "caep-session-revoked"
source = "ssf"
event = "caep.session-revoked"
user = { email = "/subject/email" }
action = "delete_sessions"
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
    simulator.add_user(PROJECT, OTHER_USER, OTHER_EMAIL);
    for session in OTHER_SESSIONS {
        simulator.add_session(PROJECT, OTHER_USER, session);
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

[sources.okta]
kind = "okta"
secrets = [{{ file = "{okta_secret}" }}]

[sources.ssf]
kind = "ssf"
issuer = "{SSF_ISSUER}"
audience = "{base}/hooks/ssf"
jwks_file = "{jwks_file}"
{EXAMPLE_RULES}{IDP_RULES}"#,
        store = dir.path().join("revokd.db").display(),
        endpoint = simulator.endpoint(),
        api_key = secret("appwrite-api-key", API_KEY)?,
        appwrite_secret = secret("appwrite-webhook-secret", APPWRITE_KEY)?,
        clerk_secret = secret("clerk-webhook-secret", CLERK_SECRET)?,
        okta_secret = secret("okta-hook-authorization", OKTA_AUTHORIZATION)?,
        jwks_file = secret(
            "ssf-jwks.json",
            &serde_json::json!({ "keys": [ed25519_jwk(&SSF_KEY_SEED, "demo-ed25519")] })
                .to_string(),
        )?,
    );
    let config = Config::parse(&config_text, &ProcessEnv).map_err(anyhow::Error::msg)?;

    println!("== revokd demo");
    println!(
        "Appwrite simulator at {}, revokd at {base}",
        simulator.endpoint()
    );
    for user in [USER, OTHER_USER] {
        let sessions = simulator.sessions(PROJECT, user).unwrap_or_default();
        println!("user {user} sessions before: {sessions:?}");
    }

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

    let response = client
        .post(format!("{base}/hooks/okta"))
        .header("Content-Type", "application/json")
        .header("Authorization", OKTA_AUTHORIZATION)
        .body(OKTA_BATCH)
        .send()
        .await?;
    results.push((
        "okta-event-hook.json",
        response.status(),
        response.text().await?,
    ));

    let mut claims: serde_json::Value = serde_json::from_str(SSF_CLAIMS)?;
    claims["iat"] = serde_json::json!(timestamp);
    claims["aud"] = serde_json::json!(format!("{base}/hooks/ssf"));
    let token = ed25519_jwt(&SSF_KEY_SEED, "demo-ed25519", "secevent+jwt", &claims);
    let response = client
        .post(format!("{base}/hooks/ssf"))
        .header("Content-Type", "application/secevent+jwt")
        .body(token)
        .send()
        .await?;
    results.push((
        "ssf-caep-session-revoked, a signed SET",
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

    let mut all_ended = true;
    for user in [USER, OTHER_USER] {
        let sessions = simulator.sessions(PROJECT, user).unwrap_or_default();
        let blocked = simulator.user_status(PROJECT, user) == Some(false);
        println!("user {user} sessions after: {sessions:?}");
        println!(
            "user {user} status after: {}",
            if blocked { "blocked" } else { "active" }
        );
        all_ended &= sessions.is_empty() && blocked;
    }
    println!("Appwrite calls received:");
    for request in simulator.requests() {
        println!("  {} {} → {}", request.method, request.path, request.status);
    }
    simulator.stop().await;

    if results.iter().any(|(_, status, _)| !status.is_success()) {
        bail!("an event was not accepted");
    }
    if !all_ended {
        bail!("a user still has sessions or is not blocked");
    }
    println!("== done: every session ended and both users are blocked");
    Ok(())
}
