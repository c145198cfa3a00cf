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

/// Header values and keys of the identity-provider sources that tests add
/// to the config, read through `TestEnv` like the secrets above.
pub const OKTA_AUTHORIZATION: &str = "Basic b2t0YS1ob29rOnRlc3Qtc2VjcmV0LTAxMjM0NQ==";
pub const AUTH0_AUTHORIZATION: &str = "Bearer auth0-stream-token-for-tests-0123456789";
pub const HMAC_SECRET: &str = "hmac-webhook-secret-for-tests-0123456789";
pub const STRIPE_SECRET: &str = "whsec_stripe_style_secret_for_tests_0123";
pub const WORKOS_SECRET: &str = "workos-webhook-secret-for-tests-0123456789";
pub const SSF_AUTHORIZATION: &str = "Bearer ssf-stream-secret-for-tests-0123";

/// Seed of the Ed25519 key that signs `v1a` Standard Webhooks signatures.
pub const WEBHOOK_SIGNING_SEED: [u8; 32] = [0x5a; 32];

/// Makes the Ed25519 key from `WEBHOOK_SIGNING_SEED`.
pub fn webhook_signing_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&WEBHOOK_SIGNING_SEED)
}

/// Returns the public half of `webhook_signing_key` as a `whpk_` key.
pub fn webhook_public_key() -> String {
    use base64::Engine as _;
    let public = webhook_signing_key().verifying_key().to_bytes();
    format!(
        "whpk_{}",
        base64::engine::general_purpose::STANDARD.encode(public)
    )
}

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

pub const DEFAULT_RULES: &str = revokd::demo::EXAMPLE_RULES;

struct TestEnv;

impl Environment for TestEnv {
    fn var(&self, name: &str) -> Option<String> {
        match name {
            "TEST_API_KEY" => Some(API_KEY.into()),
            "TEST_APPWRITE_SECRET" => Some(APPWRITE_SECRET.into()),
            "TEST_CLERK_SECRET" => Some(CLERK_SECRET.into()),
            "TEST_OKTA_AUTHORIZATION" => Some(OKTA_AUTHORIZATION.into()),
            "TEST_AUTH0_AUTHORIZATION" => Some(AUTH0_AUTHORIZATION.into()),
            "TEST_HMAC_SECRET" => Some(HMAC_SECRET.into()),
            "TEST_STRIPE_SECRET" => Some(STRIPE_SECRET.into()),
            "TEST_WORKOS_SECRET" => Some(WORKOS_SECRET.into()),
            "TEST_SSF_AUTHORIZATION" => Some(SSF_AUTHORIZATION.into()),
            "TEST_WEBHOOK_PUBLIC_KEY" => Some(webhook_public_key()),
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
    spawn_app_edited(rules, scopes, |text| text).await
}

/// Like `spawn_app_with`, with `edit` applied to the config text first.
pub async fn spawn_app_edited(
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
    pub fn store_path(&self) -> std::path::PathBuf {
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

    /// Adds a user with `email` and `sessions` to the simulator's project.
    pub fn add_user(&self, user: &str, email: &str, sessions: &[&str]) {
        self.simulator.add_user(PROJECT, user, email);
        for session in sessions {
            self.simulator.add_session(PROJECT, user, session);
        }
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

/// Returns the decoded value of query parameter `name` (for example
/// `queries[0]`), accepting the brackets raw or percent-encoded.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        let key = percent_encoding::percent_decode_str(key)
            .decode_utf8()
            .ok()?;
        if key != name {
            return None;
        }
        let plus_as_space = value.replace('+', " ");
        let value = percent_encoding::percent_decode_str(&plus_as_space)
            .decode_utf8()
            .ok()?;
        Some(value.into_owned())
    })
}

/// Returns the stored events of `source` sorted by delivery key, each as
/// (delivery key, ignored reason, job counts). Events of one request share
/// a receive time, so that time cannot order them.
pub async fn stored_events(
    app: &TestApp,
    source: &str,
) -> Vec<(String, Option<String>, JobCounts)> {
    use revokd::store::{EventFilter, Store as _};
    let mut events = app
        .store()
        .list_events(EventFilter {
            source: Some(source.to_string()),
            ..EventFilter::default()
        })
        .await
        .unwrap();
    events.sort_by(|a, b| a.delivery_key.cmp(&b.delivery_key));
    events
        .into_iter()
        .map(|event| (event.delivery_key, event.ignored_reason, event.jobs))
        .collect()
}

/// Asserts that `source` has no stored event, that no job exists and that
/// the simulator received no call.
pub async fn assert_nothing_recorded(app: &TestApp, source: &str) {
    assert_eq!(
        stored_events(app, source).await,
        Vec::new(),
        "stored events"
    );
    assert_eq!(app.settle().await, JobCounts::default(), "job counts");
    assert!(app.calls().is_empty(), "Appwrite calls: {:?}", app.calls());
}

/// Returns (method, path) of each call on the routes of `user`
/// (`/v1/users/{user}/…`), in arrival order.
pub fn user_calls(calls: &[RecordedRequest], user: &str) -> Vec<(String, String)> {
    let prefix = format!("/v1/users/{user}/");
    calls
        .iter()
        .filter(|call| call.path.starts_with(&prefix))
        .map(|call| (call.method.clone(), call.path.clone()))
        .collect()
}

/// Maximum number of `queries[…]` parameters `lookups` reads from one call.
const MAX_QUERIES: usize = 16;

/// Returns each user lookup (`GET /v1/users` or `GET /v1/users/identities`)
/// as its path and its `queries[0]`, `queries[1]`, … parsed as JSON, in
/// arrival order.
pub fn lookups(calls: &[RecordedRequest]) -> Vec<(String, Vec<serde_json::Value>)> {
    calls
        .iter()
        .filter(|call| call.path == "/v1/users" || call.path == "/v1/users/identities")
        .map(|call| {
            assert_eq!(call.method, "GET", "lookup {call:?}");
            let queries = (0..MAX_QUERIES)
                .map_while(|index| query_param(&call.query, &format!("queries[{index}]")))
                .map(|query| serde_json::from_str(&query).expect("a query is JSON"))
                .collect();
            (call.path.clone(), queries)
        })
        .collect()
}

/// Builds the query a lookup sends to find the users whose `attribute` is
/// `value`.
pub fn equal_query(attribute: &str, value: &str) -> serde_json::Value {
    serde_json::json!({ "method": "equal", "attribute": attribute, "values": [value] })
}

/// Returns a port on 127.0.0.1 that was free a moment ago.
pub fn unused_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Signs `body` as Appwrite does and builds the hooks request; the caller
/// sends it and handles connection errors.
pub fn appwrite_request(
    http: &reqwest::Client,
    signed_url: &str,
    events: &str,
    body: &[u8],
) -> reqwest::RequestBuilder {
    let signature = appwrite_signature(APPWRITE_SECRET, signed_url, body);
    http.post(signed_url)
        .header("Content-Type", "application/json")
        .header("X-Appwrite-Webhook-Events", events)
        .header("X-Appwrite-Webhook-Signature", signature)
        .body(body.to_vec())
}

/// Signs `body` as a Standard Webhooks sender does, with the current time,
/// and builds the request to `/hooks/clerk` under `base`.
pub fn clerk_request(
    http: &reqwest::Client,
    base: &str,
    id: &str,
    body: &[u8],
) -> reqwest::RequestBuilder {
    let timestamp = now_millis() / 1000;
    let signature = standard_webhooks_signature(CLERK_SECRET, id, timestamp, body);
    http.post(format!("{base}/hooks/clerk"))
        .header("Content-Type", "application/json")
        .header("svix-id", id)
        .header("svix-timestamp", timestamp.to_string())
        .header("svix-signature", signature)
        .body(body.to_vec())
}

/// The real `revokd` binary's files: a config that listens on a fixed port
/// of 127.0.0.1, its SQLite store and its logs, all in one temporary
/// directory, so that every process started from it uses the same store.
pub struct BinarySetup {
    pub dir: tempfile::TempDir,
    pub config: std::path::PathBuf,
    pub store: std::path::PathBuf,
    pub base: String,
    pub signed_url: String,
}

impl BinarySetup {
    /// Writes the config for a revokd that delivers to `endpoint` with
    /// `DEFAULT_RULES`, after `edit` has changed the text of `config_text`.
    pub fn new(endpoint: &str, edit: impl FnOnce(String) -> String) -> BinarySetup {
        let dir = tempfile::tempdir().unwrap();
        let port = unused_port();
        let base = format!("http://127.0.0.1:{port}");
        let signed_url = format!("{base}/hooks/appwrite");
        let store = dir.path().join("revokd.db");
        let text = config_text(
            &store.display().to_string(),
            endpoint,
            &signed_url,
            DEFAULT_RULES,
        )
        .replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        );
        let config = dir.path().join("revokd.toml");
        std::fs::write(&config, edit(text)).unwrap();
        BinarySetup {
            dir,
            config,
            store,
            base,
            signed_url,
        }
    }

    /// Starts `revokd serve` with JSON logs written to `<log_name>.log` in the
    /// temporary directory.
    pub fn spawn(&self, log_name: &str) -> RevokdProcess {
        let log = self.dir.path().join(format!("{log_name}.log"));
        let log_file = std::fs::File::create(&log).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_revokd"))
            .args(["--log-format", "json", "serve", "--config"])
            .arg(&self.config)
            .env("TEST_API_KEY", API_KEY)
            .env("TEST_APPWRITE_SECRET", APPWRITE_SECRET)
            .env("TEST_CLERK_SECRET", CLERK_SECRET)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::from(log_file.try_clone().unwrap()))
            .stderr(std::process::Stdio::from(log_file))
            .spawn()
            .expect("cannot start revokd");
        RevokdProcess {
            child: Some(child),
            log,
        }
    }

    /// Waits until `/readyz` of `process` returns 200. Fails the test with
    /// the process's log when the process exits first.
    pub async fn wait_ready(&self, http: &reqwest::Client, process: &mut RevokdProcess) {
        let url = format!("{}/readyz", self.base);
        wait_for("revokd to answer /readyz", Duration::from_secs(20), || {
            let exited = process.child.as_mut().unwrap().try_wait().unwrap();
            if let Some(status) = exited {
                let log = std::fs::read_to_string(&process.log).unwrap_or_default();
                panic!("revokd exited with {status} before it was ready:\n{log}");
            }
            let request = http.get(&url).send();
            async move {
                let response = request.await.ok()?;
                (response.status() == 200).then_some(())
            }
        })
        .await;
    }
}

/// A running `revokd` process. Dropping it kills the process, so a failed
/// test leaves none behind.
pub struct RevokdProcess {
    child: Option<std::process::Child>,
    pub log: std::path::PathBuf,
}

impl RevokdProcess {
    pub fn id(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Returns the exit status when the process has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().unwrap().try_wait().unwrap()
    }

    /// Sends SIGKILL and waits until the process is gone.
    pub fn kill(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap()
    }

    /// Sends SIGTERM and waits up to `limit` for the process to exit.
    /// Returns the exit status and the time from the signal to the exit, or
    /// fails the test when the process is still running after `limit`.
    pub async fn terminate(mut self, limit: Duration) -> (std::process::ExitStatus, Duration) {
        let pid = self.id().to_string();
        let started = Instant::now();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM {pid} failed");
        let status = wait_for("revokd to exit after SIGTERM", limit, || {
            let exited = self.try_wait();
            async move { exited }
        })
        .await;
        self.child = None;
        (status, started.elapsed())
    }
}

impl Drop for RevokdProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
