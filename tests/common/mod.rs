//! Test harness: a real revokd on 127.0.0.1:0 with its own SQLite file,
//! wired to its own Appwrite simulator.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use revokd::app::Service;
use revokd::config::{Config, Environment};
use revokd::delivery::now_millis;
use revokd::senders::{appwrite_signature, standard_webhooks_signature};
use revokd::simulator::{RecordedRequest, Simulator};
use revokd::store::{JobCounts, Store};

pub const PROJECT: &str = "test-project";
pub const API_KEY: &str = "standard_test_key_0123456789abcdef";
pub const USER: &str = "6650c1f2a7b3e9d4c021";
pub const APPWRITE_SECRET: &str = "appwrite-webhook-secret-for-tests-0123456789abcdef";
pub const CLERK_SECRET: &str = "whsec_AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";

pub const PASSWORD_UPDATED: &[u8] = include_bytes!("../fixtures/appwrite-password-updated.body");
pub const USER_BLOCKED: &[u8] = include_bytes!("../fixtures/appwrite-user-blocked.body");
pub const RECOVERY_COMPLETED: &[u8] =
    include_bytes!("../fixtures/appwrite-recovery-completed.body");
pub const CLERK_USER_BANNED: &[u8] = include_bytes!("../fixtures/clerk-user-banned.json");

pub fn sample_events(name: &str) -> String {
    let all: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/appwrite-events.json")).unwrap();
    all[name].as_str().unwrap().to_string()
}

pub const DEFAULT_RULES: &str = r#"
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

struct TestEnv;

impl Environment for TestEnv {
    fn var(&self, name: &str) -> Option<String> {
        match name {
            "TEST_API_KEY" => Some(API_KEY.into()),
            "TEST_APPWRITE_SECRET" => Some(APPWRITE_SECRET.into()),
            "TEST_CLERK_SECRET" => Some(CLERK_SECRET.into()),
            _ => None,
        }
    }
}

/// Config text for a revokd that delivers to `endpoint`, with `rules`.
pub fn config_text(store: &str, endpoint: &str, signed_url: &str, rules: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
workers = 1
max_body_bytes = 65536
request_timeout = "5s"
shutdown_grace = "5s"

[store]
url = "sqlite://{store}"

[delivery]
backoff_base = "50ms"
backoff_max = "200ms"
max_attempts = 5
lease = "4s"
request_timeout = "1s"
connect_timeout = "1s"

[targets.main]
endpoint = "{endpoint}"
project = "{PROJECT}"
api_key = {{ env = "TEST_API_KEY" }}

[sources.appwrite]
kind = "appwrite"
signed_url = "{signed_url}"
secrets = [{{ env = "TEST_APPWRITE_SECRET" }}]

[sources.clerk]
kind = "standard-webhooks"
secrets = [{{ env = "TEST_CLERK_SECRET" }}]
{rules}"#
    )
}

pub struct TestApp {
    pub base: String,
    pub signed_url: String,
    pub simulator: Simulator,
    pub service: Option<Service>,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(DEFAULT_RULES, &["users.read", "users.write"]).await
}

/// Starts a simulator whose key has `scopes`, seeds `USER` with three
/// sessions, and starts revokd with `rules`.
pub async fn spawn_app_with(rules: &str, scopes: &[&str]) -> TestApp {
    spawn_app_with_config(rules, scopes, |text| text).await
}

/// Like [`spawn_app_with`], with the config text passed through `edit`
/// before it is parsed.
pub async fn spawn_app_with_config(
    rules: &str,
    scopes: &[&str],
    edit: impl FnOnce(String) -> String,
) -> TestApp {
    let simulator = Simulator::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    simulator.add_project(PROJECT);
    simulator.add_key(PROJECT, API_KEY, scopes);
    simulator.add_user(PROJECT, USER, "jane.doe@example.com");
    for session in ["sessa", "sessb", "sessc"] {
        simulator.add_session(PROJECT, USER, session);
    }
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let signed_url = format!("{base}/hooks/appwrite");
    let store = dir.path().join("revokd.db");
    let text = config_text(
        &store.display().to_string(),
        &simulator.endpoint(),
        &signed_url,
        rules,
    );
    let config = Config::parse(&edit(text), &TestEnv).unwrap();
    let service = Service::start(config, listener).await.unwrap();
    TestApp {
        base,
        signed_url,
        simulator,
        service: Some(service),
        http: reqwest::Client::new(),
        _dir: dir,
    }
}

impl TestApp {
    pub async fn post_appwrite(&self, events: &str, body: &[u8]) -> reqwest::Response {
        let signature = appwrite_signature(APPWRITE_SECRET, &self.signed_url, body);
        self.http
            .post(&self.signed_url)
            .header("Content-Type", "application/json")
            .header("X-Appwrite-Webhook-Events", events)
            .header("X-Appwrite-Webhook-Signature", signature)
            .body(body.to_vec())
            .send()
            .await
            .unwrap()
    }

    pub async fn post_clerk(&self, id: &str, body: &[u8]) -> reqwest::Response {
        let timestamp = now_millis() / 1000;
        self.post_clerk_at(id, timestamp, body).await
    }

    pub async fn post_clerk_at(&self, id: &str, timestamp: i64, body: &[u8]) -> reqwest::Response {
        let signature = standard_webhooks_signature(CLERK_SECRET, id, timestamp, body);
        self.http
            .post(format!("{}/hooks/clerk", self.base))
            .header("Content-Type", "application/json")
            .header("svix-id", id)
            .header("svix-timestamp", timestamp.to_string())
            .header("svix-signature", signature)
            .body(body.to_vec())
            .send()
            .await
            .unwrap()
    }

    /// Path of the SQLite file, for read-only checks.
    pub fn db_path(&self) -> std::path::PathBuf {
        self._dir.path().join("revokd.db")
    }

    pub fn store(&self) -> std::sync::Arc<revokd::store::sqlite::SqliteStore> {
        self.service.as_ref().unwrap().store()
    }

    /// Waits until no job is pending, then returns the counts.
    pub async fn settle(&self) -> JobCounts {
        let store = self.store();
        wait_for("every job to finish", Duration::from_secs(15), || async {
            let counts = store.job_counts().await.unwrap();
            (counts.pending == 0).then_some(counts)
        })
        .await
    }

    /// Requests the simulator saw on the Users API.
    pub fn calls(&self) -> Vec<RecordedRequest> {
        self.simulator.requests()
    }

    pub fn sessions(&self) -> Vec<String> {
        self.simulator.sessions(PROJECT, USER).unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(service) = self.service.take() {
            service.stop().await.unwrap();
        }
    }
}

/// Polls `check` until it returns a value, failing the test after `limit`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Returns the JSON body of a successful hooks request.
pub async fn counts(response: reqwest::Response) -> HashMap<String, u64> {
    assert_eq!(response.status(), 200, "hooks request not accepted");
    response.json().await.unwrap()
}
