//! End-to-end tests for the identity-provider kinds that authenticate with a
//! shared header value or an HMAC: Okta, Auth0, `hmac`, `stripe-style` and
//! Standard Webhooks with Ed25519 (`v1a`) signatures. Each runs the real
//! server, a real SQLite file and the Appwrite simulator over HTTP.

mod common;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use common::*;
use ed25519_dalek::Signer as _;
use hmac::{Hmac, Mac};
use revokd::delivery::now_millis;
use serde_json::{json, Value};
use sha2::{Digest, Sha256, Sha512};

const OKTA_SAMPLE: &[u8] = include_bytes!("fixtures/okta-event-hook.json");
const AUTH0_SAMPLE: &[u8] = include_bytes!("fixtures/auth0-log-stream.json");

const JANE_EMAIL: &str = "jane.doe@example.com";
const SAM: &str = "6650c1f2a7b3e9d4c022";
const SAM_EMAIL: &str = "sam.lee@example.com";
const ADMIN: &str = "6650c1f2a7b3e9d4c0ad";
const ADMIN_EMAIL: &str = "admin@example.com";
const OLD_ACCOUNT: &str = "6650c1f2a7b3e9d4c0dd";
const OLD_ACCOUNT_EMAIL: &str = "old.account@example.com";

const SCOPES: &[&str] = &["users.read", "users.write"];

fn call(method: &str, path: String) -> (String, String) {
    (method.to_string(), path)
}

fn delete_sessions(user: &str) -> Vec<(String, String)> {
    vec![call("DELETE", format!("/v1/users/{user}/sessions"))]
}

fn block(user: &str) -> Vec<(String, String)> {
    vec![
        call("PATCH", format!("/v1/users/{user}/status")),
        call("DELETE", format!("/v1/users/{user}/sessions")),
    ]
}

fn email_lookup(email: &str) -> (String, Vec<Value>) {
    ("/v1/users".to_string(), vec![equal_query("email", email)])
}

fn identity_lookup(provider_uid: &str, provider: &str) -> (String, Vec<Value>) {
    (
        "/v1/users/identities".to_string(),
        vec![
            equal_query("providerUid", provider_uid),
            equal_query("provider", provider),
        ],
    )
}

/// Returns the lookups sorted, because jobs of one request run concurrently.
fn sorted_lookups(app: &TestApp) -> Vec<(String, Vec<Value>)> {
    let mut found = lookups(&app.calls());
    found.sort_by_key(|(path, queries)| format!("{path} {queries:?}"));
    found
}

fn counts_json(accepted: u64, duplicates: u64, ignored: u64) -> Value {
    json!({ "accepted": accepted, "duplicates": duplicates, "ignored": ignored })
}

/// Returns the status and the JSON body of a response.
async fn status_and_json(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = response.json().await.expect("a JSON response body");
    (status, body)
}

fn unauthorized() -> (u16, Value) {
    (401, json!({ "error": "unauthorized" }))
}

fn patch_bodies(app: &TestApp, user: &str) -> Vec<Value> {
    let path = format!("/v1/users/{user}/status");
    app.calls()
        .iter()
        .filter(|call| call.method == "PATCH" && call.path == path)
        .map(|call| serde_json::from_str(&call.body).unwrap())
        .collect()
}

// --- Okta --------------------------------------------------------------------

const OKTA_RULES: &str = r#"
[sources.okta]
kind = "okta"
header = "Authorization"
secrets = [{ env = "TEST_OKTA_AUTHORIZATION" }]

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
"#;

async fn okta_get(
    app: &TestApp,
    authorization: Option<&str>,
    challenge: Option<&str>,
) -> (u16, Value) {
    let mut request = app.http.get(format!("{}/hooks/okta", app.base));
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    if let Some(value) = challenge {
        request = request.header("X-Okta-Verification-Challenge", value);
    }
    status_and_json(request.send().await.unwrap()).await
}

async fn okta_post(app: &TestApp, authorization: Option<&str>, body: &[u8]) -> (u16, Value) {
    let mut request = app
        .http
        .post(format!("{}/hooks/okta", app.base))
        .header("Content-Type", "application/json")
        .body(body.to_vec());
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    status_and_json(request.send().await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_verification_challenge() {
    let app = spawn_app_with(OKTA_RULES, SCOPES).await;
    let challenge = "Xj8rTq2LmN0pQs4Uv6Wy";

    assert_eq!(
        okta_get(&app, Some(OKTA_AUTHORIZATION), Some(challenge)).await,
        (200, json!({ "verification": challenge }))
    );
    assert_eq!(
        okta_get(&app, Some("Basic d3Jvbmc6dmFsdWU="), Some(challenge)).await,
        unauthorized()
    );
    assert_eq!(okta_get(&app, None, Some(challenge)).await, unauthorized());
    assert_eq!(
        okta_get(&app, Some(OKTA_AUTHORIZATION), None).await,
        (400, json!({ "error": "malformed request" }))
    );

    // Only Okta sources accept a GET.
    let clerk = app
        .http
        .get(format!("{}/hooks/clerk", app.base))
        .header("X-Okta-Verification-Challenge", challenge)
        .send()
        .await
        .unwrap();
    assert_eq!(clerk.status(), 405);
    assert_eq!(clerk.headers()["allow"], "POST");

    assert_nothing_recorded(&app, "okta").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_batch_acts_on_targets() {
    let app = spawn_app_with(OKTA_RULES, SCOPES).await;
    app.add_user(SAM, SAM_EMAIL, &["sam-1", "sam-2"]);
    app.add_user(ADMIN, ADMIN_EMAIL, &["admin-1"]);

    assert_eq!(
        okta_post(&app, Some("Basic d3Jvbmc6dmFsdWU="), OKTA_SAMPLE).await,
        unauthorized()
    );
    assert_eq!(okta_post(&app, None, OKTA_SAMPLE).await, unauthorized());
    // The value must match whole: the secret without its scheme word fails.
    let without_scheme = OKTA_AUTHORIZATION.trim_start_matches("Basic ");
    assert_eq!(
        okta_post(&app, Some(without_scheme), OKTA_SAMPLE).await,
        unauthorized()
    );
    assert_nothing_recorded(&app, "okta").await;

    assert_eq!(
        okta_post(&app, Some(OKTA_AUTHORIZATION), OKTA_SAMPLE).await,
        (200, counts_json(2, 0, 0))
    );
    let settled = app.settle().await;
    assert_eq!(settled.done, 2);
    assert_eq!(settled.dead, 0);

    // Jane changed her own password. The admin suspended Sam, so Sam is
    // blocked and the admin, the actor, is never looked up.
    assert_eq!(
        sorted_lookups(&app),
        vec![email_lookup(JANE_EMAIL), email_lookup(SAM_EMAIL)]
    );
    let calls = app.calls();
    assert_eq!(user_calls(&calls, USER), delete_sessions(USER));
    assert_eq!(user_calls(&calls, SAM), block(SAM));
    assert_eq!(user_calls(&calls, ADMIN), Vec::new());
    assert_eq!(calls.len(), 5, "{calls:?}");
    assert_eq!(patch_bodies(&app, SAM), vec![json!({ "status": false })]);
    assert!(app.sessions().is_empty());
    assert_eq!(app.simulator.sessions(PROJECT, SAM), Some(Vec::new()));
    assert_eq!(app.simulator.user_status(PROJECT, SAM), Some(false));
    assert_eq!(
        app.simulator.sessions(PROJECT, ADMIN),
        Some(vec!["admin-1".to_string()])
    );
    assert_eq!(app.simulator.user_status(PROJECT, ADMIN), Some(true));

    let events = stored_events(&app, "okta").await;
    let keys: Vec<&str> = events.iter().map(|(key, _, _)| key.as_str()).collect();
    assert_eq!(
        keys,
        vec![
            "1f0e9a5c-2b3d-11f0-9c1a-2f5e6d7c8b9a",
            "2a1b0c6d-2b3d-11f0-9c1a-2f5e6d7c8b9a"
        ]
    );
    for (key, ignored, jobs) in &events {
        assert_eq!(*ignored, None, "{key}");
        assert_eq!(jobs.done, 1, "{key}");
    }

    // Okta retries a delivery as it was: each event is a duplicate.
    assert_eq!(
        okta_post(&app, Some(OKTA_AUTHORIZATION), OKTA_SAMPLE).await,
        (200, counts_json(0, 2, 0))
    );
    app.settle().await;
    assert_eq!(app.calls().len(), 5);
    app.stop().await;
}

// --- Auth0 -------------------------------------------------------------------

const AUTH0_RULES: &str = r#"
[sources.auth0]
kind = "auth0"
secrets = [{ env = "TEST_AUTH0_AUTHORIZATION" }]

[[rules]]
name = "auth0-password-changed"
source = "auth0"
event = "scp"
user = { email = "/data/user_name" }
action = "delete_sessions"
target = "main"

[[rules]]
name = "auth0-user-deleted"
source = "auth0"
event = "sdu"
user = { email = "/data/user_name" }
action = "block_user"
target = "main"

[[rules]]
name = "auth0-breached-password"
source = "auth0"
event = "pwd_leak"
user = { identity = "/data/user_id", provider = "auth0" }
action = "delete_sessions"
target = "main"
"#;

async fn auth0_post(app: &TestApp, authorization: Option<&str>, body: &[u8]) -> (u16, Value) {
    let mut request = app
        .http
        .post(format!("{}/hooks/auth0", app.base))
        .header("Content-Type", "application/json")
        .body(body.to_vec());
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    status_and_json(request.send().await.unwrap()).await
}

/// Returns entry `index` of the Auth0 sample batch.
fn auth0_entry(index: usize) -> Value {
    let sample: Value = serde_json::from_slice(AUTH0_SAMPLE).unwrap();
    sample[index].clone()
}

fn auth0_log(log_id: &str, data: Value) -> Value {
    json!({ "log_id": log_id, "data": data })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth0_sample_batch_counts() {
    let app = spawn_app_with(AUTH0_RULES, SCOPES).await;
    app.add_user(OLD_ACCOUNT, OLD_ACCOUNT_EMAIL, &["old-1"]);

    assert_eq!(
        auth0_post(&app, Some("Bearer wrong-token"), AUTH0_SAMPLE).await,
        unauthorized()
    );
    assert_eq!(auth0_post(&app, None, AUTH0_SAMPLE).await, unauthorized());
    assert_nothing_recorded(&app, "auth0").await;

    assert_eq!(
        auth0_post(&app, Some(AUTH0_AUTHORIZATION), AUTH0_SAMPLE).await,
        (200, counts_json(2, 0, 1))
    );
    let settled = app.settle().await;
    assert_eq!(settled.done, 2);
    assert_eq!(settled.dead, 0);

    assert_eq!(
        sorted_lookups(&app),
        vec![email_lookup(JANE_EMAIL), email_lookup(OLD_ACCOUNT_EMAIL)]
    );
    let calls = app.calls();
    assert_eq!(user_calls(&calls, USER), delete_sessions(USER));
    assert_eq!(user_calls(&calls, OLD_ACCOUNT), block(OLD_ACCOUNT));
    assert_eq!(calls.len(), 5, "{calls:?}");

    let events = stored_events(&app, "auth0").await;
    let summary: Vec<(&str, Option<&str>, u64)> = events
        .iter()
        .map(|(key, ignored, jobs)| (key.as_str(), ignored.as_deref(), jobs.done))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("90020260602083012345678901234567890123456789", None, 1),
            ("90020260602083055555555555555555555555555555", None, 1),
            (
                "90020260602083099999999999999999999999999999",
                Some("no rule matches the event type"),
                0
            ),
        ]
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth0_lines_object_and_no_user() {
    let app = spawn_app_with(AUTH0_RULES, SCOPES).await;
    app.add_user(OLD_ACCOUNT, OLD_ACCOUNT_EMAIL, &["old-1"]);

    // JSONLINES: one entry per line.
    let lines = format!("{}\n{}\n", auth0_entry(0), auth0_entry(2));
    assert_eq!(
        auth0_post(&app, Some(AUTH0_AUTHORIZATION), lines.as_bytes()).await,
        (200, counts_json(1, 0, 1))
    );

    // JSONOBJECT: a single entry.
    let object = auth0_entry(1).to_string();
    assert_eq!(
        auth0_post(&app, Some(AUTH0_AUTHORIZATION), object.as_bytes()).await,
        (200, counts_json(1, 0, 0))
    );

    // Entries that name no user are recorded as ignored, not rejected.
    let no_user = json!([
        auth0_log(
            "90020260602090000000000000000000000000000001",
            json!({ "type": "scp", "date": "2026-06-02T09:00:00.000Z", "user_id": "auth0|6650c1f2a7b3e9d4c021" }),
        ),
        auth0_log(
            "90020260602090000000000000000000000000000002",
            json!({ "type": "pwd_leak", "date": "2026-06-02T09:00:01.000Z", "user_id": "", "user_name": JANE_EMAIL }),
        ),
    ]);
    assert_eq!(
        auth0_post(
            &app,
            Some(AUTH0_AUTHORIZATION),
            no_user.to_string().as_bytes()
        )
        .await,
        (200, counts_json(0, 0, 2))
    );

    let settled = app.settle().await;
    assert_eq!(settled.done, 2);
    assert_eq!(settled.dead, 0);
    let calls = app.calls();
    assert_eq!(user_calls(&calls, USER), delete_sessions(USER));
    assert_eq!(user_calls(&calls, OLD_ACCOUNT), block(OLD_ACCOUNT));
    assert_eq!(
        sorted_lookups(&app),
        vec![email_lookup(JANE_EMAIL), email_lookup(OLD_ACCOUNT_EMAIL)]
    );
    assert_eq!(calls.len(), 5, "{calls:?}");

    let events = stored_events(&app, "auth0").await;
    let ignored: Vec<(&str, Option<&str>)> = events
        .iter()
        .filter(|(key, _, _)| key.starts_with("900202606020900"))
        .map(|(key, ignored, _)| (key.as_str(), ignored.as_deref()))
        .collect();
    assert_eq!(
        ignored,
        vec![
            (
                "90020260602090000000000000000000000000000001",
                Some("rule auth0-password-changed: no user at /data/user_name in the payload")
            ),
            (
                "90020260602090000000000000000000000000000002",
                Some("rule auth0-breached-password: no user at /data/user_id in the payload")
            ),
        ]
    );
    assert_eq!(events.len(), 5);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth0_mixed_batch_counts() {
    let app = spawn_app_with(AUTH0_RULES, SCOPES).await;
    app.add_user(OLD_ACCOUNT, OLD_ACCOUNT_EMAIL, &["old-1"]);

    // The user deletion arrives first, alone.
    let first = json!([auth0_entry(1)]).to_string();
    assert_eq!(
        auth0_post(&app, Some(AUTH0_AUTHORIZATION), first.as_bytes()).await,
        (200, counts_json(1, 0, 0))
    );
    app.settle().await;
    assert_eq!(user_calls(&app.calls(), OLD_ACCOUNT), block(OLD_ACCOUNT));
    app.simulator.clear_requests();

    // The batch repeats it, next to a password change and a login.
    assert_eq!(
        auth0_post(&app, Some(AUTH0_AUTHORIZATION), AUTH0_SAMPLE).await,
        (200, counts_json(1, 1, 1))
    );
    let settled = app.settle().await;
    assert_eq!(settled.done, 2);
    assert_eq!(settled.dead, 0);
    assert_eq!(sorted_lookups(&app), vec![email_lookup(JANE_EMAIL)]);
    let calls = app.calls();
    assert_eq!(user_calls(&calls, USER), delete_sessions(USER));
    assert_eq!(calls.len(), 2, "one lookup and one action: {calls:?}");
    app.stop().await;
}

// --- hmac --------------------------------------------------------------------

const HMAC_RULES: &str = r#"
[sources.github]
kind = "hmac"
header = "X-Hub-Signature-256"
prefix = "sha256="
algorithm = "sha256"
encoding = "hex"
secrets = [{ env = "TEST_HMAC_SECRET" }]
id_header = "X-GitHub-Delivery"
type_pointer = "/type"

[sources.descope]
kind = "hmac"
header = "X-Webhook-Signature-512"
algorithm = "sha512"
encoding = "base64"
secrets = [{ env = "TEST_HMAC_SECRET" }]
type_pointer = "/event/type"

[[rules]]
name = "keycloak-password-update"
source = "github"
event = "access.UPDATE_PASSWORD"
user = { identity = "/userId", provider = "oidc" }
action = "delete_sessions"
target = "main"

[[rules]]
name = "descope-user-disabled"
source = "descope"
event = "user.disabled"
user = { email = "/event/email" }
action = "block_user"
target = "main"
"#;

fn hmac_sha256(secret: &str, body: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

fn hmac_sha512(secret: &str, body: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha512>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

async fn github_post(app: &TestApp, delivery: &str, signature: &str, body: &[u8]) -> (u16, Value) {
    let request = app
        .http
        .post(format!("{}/hooks/github", app.base))
        .header("Content-Type", "application/json")
        .header("X-GitHub-Delivery", delivery)
        .header("X-Hub-Signature-256", signature)
        .body(body.to_vec());
    status_and_json(request.send().await.unwrap()).await
}

fn github_signature(body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac_sha256(HMAC_SECRET, body)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hmac_hex_signature_and_delivery_id() {
    let app = spawn_app_with(HMAC_RULES, SCOPES).await;
    app.simulator
        .add_identity(PROJECT, USER, "oidc", "kc-user-1");
    let body = br#"{"type":"access.UPDATE_PASSWORD","realmId":"main","userId":"kc-user-1"}"#;

    let wrong_secret = format!(
        "sha256={}",
        hex::encode(hmac_sha256("another-secret", body))
    );
    assert_eq!(
        github_post(&app, "delivery-0", &wrong_secret, body).await,
        unauthorized()
    );
    let without_prefix = hex::encode(hmac_sha256(HMAC_SECRET, body));
    assert_eq!(
        github_post(&app, "delivery-0", &without_prefix, body).await,
        unauthorized()
    );
    let missing = app
        .http
        .post(format!("{}/hooks/github", app.base))
        .header("Content-Type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(status_and_json(missing).await, unauthorized());
    assert_nothing_recorded(&app, "github").await;

    let signature = github_signature(body);
    assert_eq!(
        github_post(&app, "delivery-1", &signature, body).await,
        (200, counts_json(1, 0, 0))
    );
    assert_eq!(
        github_post(&app, "delivery-1", &signature, body).await,
        (200, counts_json(0, 1, 0))
    );
    // The delivery id, not the body, identifies a delivery.
    let other_body = br#"{"type":"access.UPDATE_PASSWORD","realmId":"other","userId":"kc-user-1"}"#;
    assert_eq!(
        github_post(
            &app,
            "delivery-1",
            &github_signature(other_body),
            other_body
        )
        .await,
        (200, counts_json(0, 1, 0))
    );
    // The type comes from the body at `type_pointer`.
    let login = br#"{"type":"access.LOGIN","realmId":"main","userId":"kc-user-1"}"#;
    assert_eq!(
        github_post(&app, "delivery-2", &github_signature(login), login).await,
        (200, counts_json(0, 0, 1))
    );

    let settled = app.settle().await;
    assert_eq!(settled.done, 1);
    assert_eq!(settled.dead, 0);
    assert_eq!(
        lookups(&app.calls()),
        vec![identity_lookup("kc-user-1", "oidc")]
    );
    assert_eq!(user_calls(&app.calls(), USER), delete_sessions(USER));
    assert_eq!(app.calls().len(), 2, "{:?}", app.calls());
    let events = stored_events(&app, "github").await;
    let summary: Vec<(&str, Option<&str>, u64)> = events
        .iter()
        .map(|(key, ignored, jobs)| (key.as_str(), ignored.as_deref(), jobs.done))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("delivery-1", None, 1),
            ("delivery-2", Some("no rule matches the event type"), 0),
        ]
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hmac_base64_sha512_signature() {
    let app = spawn_app_with(HMAC_RULES, SCOPES).await;
    app.add_user(SAM, SAM_EMAIL, &["sam-1"]);
    let body = br#"{"event":{"type":"user.disabled","email":"sam.lee@example.com"},"tenant":"t1"}"#;
    let send = |signature: String| {
        app.http
            .post(format!("{}/hooks/descope", app.base))
            .header("Content-Type", "application/json")
            .header("X-Webhook-Signature-512", signature)
            .body(body.to_vec())
            .send()
    };

    // The right HMAC in the wrong encoding, and a SHA-256 HMAC.
    let as_hex = hex::encode(hmac_sha512(HMAC_SECRET, body));
    assert_eq!(
        status_and_json(send(as_hex).await.unwrap()).await,
        unauthorized()
    );
    let sha256 = BASE64.encode(hmac_sha256(HMAC_SECRET, body));
    assert_eq!(
        status_and_json(send(sha256).await.unwrap()).await,
        unauthorized()
    );
    assert_nothing_recorded(&app, "descope").await;

    let signature = BASE64.encode(hmac_sha512(HMAC_SECRET, body));
    assert_eq!(
        status_and_json(send(signature.clone()).await.unwrap()).await,
        (200, counts_json(1, 0, 0))
    );
    // Without `id_header` the body's digest is the delivery key.
    assert_eq!(
        status_and_json(send(signature).await.unwrap()).await,
        (200, counts_json(0, 1, 0))
    );

    let settled = app.settle().await;
    assert_eq!(settled.done, 1);
    assert_eq!(lookups(&app.calls()), vec![email_lookup(SAM_EMAIL)]);
    assert_eq!(user_calls(&app.calls(), SAM), block(SAM));
    assert_eq!(app.calls().len(), 3, "{:?}", app.calls());
    let events = stored_events(&app, "descope").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, hex::encode(Sha256::digest(body)));
    app.stop().await;
}

// --- stripe-style ------------------------------------------------------------

const STRIPE_STYLE_RULES: &str = r#"
[sources.workos]
kind = "stripe-style"
header = "WorkOS-Signature"
timestamp_unit = "ms"
tolerance_seconds = 180
secrets = [{ env = "TEST_WORKOS_SECRET" }]
type_pointer = "/event"

[sources.stripe]
kind = "stripe-style"
header = "Stripe-Signature"
secrets = [{ env = "TEST_STRIPE_SECRET" }]

[[rules]]
name = "workos-session-revoked"
source = "workos"
event = "session.revoked"
user = { identity = "/data/user_id", provider = "oidc" }
action = "delete_sessions"
target = "main"

[[rules]]
name = "workos-user-deleted"
source = "workos"
event = "user.deleted"
user = { email = "/data/email" }
action = "block_user"
target = "main"

[[rules]]
name = "stripe-customer-deleted"
source = "stripe"
event = "customer.deleted"
user = { email = "/data/object/email" }
action = "delete_sessions"
target = "main"
"#;

/// Returns the hex HMAC-SHA256 of `{timestamp}.{body}`.
fn stripe_style_tag(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

async fn stripe_style_post(
    app: &TestApp,
    source: &str,
    header: &str,
    signature: &str,
    body: &[u8],
) -> (u16, Value) {
    let request = app
        .http
        .post(format!("{}/hooks/{source}", app.base))
        .header("Content-Type", "application/json")
        .header(header, signature)
        .body(body.to_vec());
    status_and_json(request.send().await.unwrap()).await
}

/// Signs as WorkOS does: milliseconds, and a space after the comma.
fn workos_signature(secret: &str, millis: i64, body: &[u8]) -> String {
    let timestamp = millis.to_string();
    format!(
        "t={timestamp}, v1={}",
        stripe_style_tag(secret, &timestamp, body)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_style_workos_milliseconds() {
    let app = spawn_app_with(STRIPE_STYLE_RULES, SCOPES).await;
    app.add_user(SAM, SAM_EMAIL, &["sam-1"]);
    app.simulator
        .add_identity(PROJECT, USER, "oidc", "user_01HWORKOSJANE");
    let revoked = br#"{"object":"event","id":"event_01HREVOKED","event":"session.revoked","data":{"id":"session_01H","user_id":"user_01HWORKOSJANE","status":"revoked"},"created_at":"2026-06-02T08:30:12.000Z"}"#;
    let deleted = br#"{"object":"event","id":"event_01HDELETED","event":"user.deleted","data":{"id":"user_01HWORKOSSAM","email":"sam.lee@example.com"},"created_at":"2026-06-02T08:30:13.000Z"}"#;
    let target = &app;
    let post = |signature: String, body: &'static [u8]| async move {
        stripe_style_post(target, "workos", "WorkOS-Signature", &signature, body).await
    };
    let now = now_millis();

    let stale = workos_signature(WORKOS_SECRET, now - 181_000, revoked);
    assert_eq!(post(stale, revoked).await, unauthorized());
    // The server compares whole seconds, so the margin past the 180 s
    // tolerance is more than one second.
    let future = workos_signature(WORKOS_SECRET, now + 185_000, revoked);
    assert_eq!(post(future, revoked).await, unauthorized());
    // Seconds where milliseconds are expected read as a time in 1970.
    let seconds = workos_signature(WORKOS_SECRET, now / 1000, revoked);
    assert_eq!(post(seconds, revoked).await, unauthorized());
    let wrong_secret = workos_signature(STRIPE_SECRET, now, revoked);
    assert_eq!(post(wrong_secret, revoked).await, unauthorized());
    assert_nothing_recorded(&app, "workos").await;

    let signature = workos_signature(WORKOS_SECRET, now_millis(), revoked);
    assert_eq!(post(signature, revoked).await, (200, counts_json(1, 0, 0)));
    let signature = workos_signature(WORKOS_SECRET, now_millis(), deleted);
    assert_eq!(post(signature, deleted).await, (200, counts_json(1, 0, 0)));

    let settled = app.settle().await;
    assert_eq!(settled.done, 2);
    assert_eq!(settled.dead, 0);
    assert_eq!(
        sorted_lookups(&app),
        vec![
            email_lookup(SAM_EMAIL),
            identity_lookup("user_01HWORKOSJANE", "oidc"),
        ]
    );
    let calls = app.calls();
    assert_eq!(user_calls(&calls, USER), delete_sessions(USER));
    assert_eq!(user_calls(&calls, SAM), block(SAM));
    assert_eq!(calls.len(), 5, "{calls:?}");
    let keys: Vec<String> = stored_events(&app, "workos")
        .await
        .into_iter()
        .map(|(key, _, _)| key)
        .collect();
    assert_eq!(keys, vec!["event_01HDELETED", "event_01HREVOKED"]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_style_stripe_seconds() {
    let app = spawn_app_with(STRIPE_STYLE_RULES, SCOPES).await;
    let body = br#"{"id":"evt_1Q2w3E4r5T6y","object":"event","type":"customer.deleted","data":{"object":{"id":"cus_Q1","email":"jane.doe@example.com"}}}"#;
    let target = &app;
    let post = |signature: String| async move {
        stripe_style_post(target, "stripe", "Stripe-Signature", &signature, body).await
    };
    let sign = |seconds: i64, secret: &str| {
        let timestamp = seconds.to_string();
        format!(
            "t={timestamp},v1={}",
            stripe_style_tag(secret, &timestamp, body)
        )
    };
    let now = now_millis() / 1000;

    assert_eq!(post(sign(now - 301, STRIPE_SECRET)).await, unauthorized());
    assert_eq!(post(sign(now, WORKOS_SECRET)).await, unauthorized());
    // Stripe signs with the whole `whsec_` text, never its decoded bytes.
    let decoded_key = STRIPE_SECRET.trim_start_matches("whsec_");
    assert_eq!(post(sign(now, decoded_key)).await, unauthorized());
    assert_nothing_recorded(&app, "stripe").await;

    // During a secret rotation Stripe sends one `v1` per secret.
    let timestamp = now.to_string();
    let rotated = format!(
        "t={timestamp},v1={},v1={},v0=ignored",
        stripe_style_tag("whsec_previous_secret", &timestamp, body),
        stripe_style_tag(STRIPE_SECRET, &timestamp, body)
    );
    assert_eq!(post(rotated).await, (200, counts_json(1, 0, 0)));
    // A retry has a new `t` and signature, and the same event id.
    let retried = sign(now_millis() / 1000, STRIPE_SECRET);
    assert_eq!(post(retried).await, (200, counts_json(0, 1, 0)));

    let settled = app.settle().await;
    assert_eq!(settled.done, 1);
    assert_eq!(lookups(&app.calls()), vec![email_lookup(JANE_EMAIL)]);
    assert_eq!(user_calls(&app.calls(), USER), delete_sessions(USER));
    assert_eq!(app.calls().len(), 2, "{:?}", app.calls());
    let events = stored_events(&app, "stripe").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, "evt_1Q2w3E4r5T6y");
    app.stop().await;
}

// --- Standard Webhooks with Ed25519 ------------------------------------------

const SIGNED_RULES: &str = r#"
[sources.signed]
kind = "standard-webhooks"
secrets = [{ env = "TEST_CLERK_SECRET" }]
public_keys = [{ env = "TEST_WEBHOOK_PUBLIC_KEY" }]

[[rules]]
name = "signed-ban"
source = "signed"
event = "user.updated"
when = { "/data/banned" = true }
user = { id = "/data/external_id" }
action = "block_user"
target = "main"

[[rules]]
name = "clerk-ban"
source = "clerk"
event = "user.updated"
when = { "/data/banned" = true }
user = { id = "/data/external_id" }
action = "block_user"
target = "main"
"#;

/// Returns a `v1a,<base64>` entry: the Ed25519 signature of
/// `{id}.{timestamp}.{body}` by `key`.
fn v1a_signature(key: &ed25519_dalek::SigningKey, id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut content = format!("{id}.{timestamp}.").into_bytes();
    content.extend_from_slice(body);
    format!("v1a,{}", BASE64.encode(key.sign(&content).to_bytes()))
}

async fn standard_webhooks_post(
    app: &TestApp,
    source: &str,
    id: &str,
    timestamp: i64,
    signature: &str,
    body: &[u8],
) -> (u16, Value) {
    let request = app
        .http
        .post(format!("{}/hooks/{source}", app.base))
        .header("Content-Type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body.to_vec());
    status_and_json(request.send().await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_webhooks_ed25519_signature() {
    let app = spawn_app_with(SIGNED_RULES, SCOPES).await;
    let key = webhook_signing_key();
    let body = CLERK_USER_BANNED;
    let now = now_millis() / 1000;

    let mut tampered = body.to_vec();
    let position = tampered.iter().position(|&byte| byte == b'{').unwrap() + 1;
    tampered.insert(position, b' ');
    let signature = v1a_signature(&key, "msg_v1a_1", now, body);
    assert_eq!(
        standard_webhooks_post(&app, "signed", "msg_v1a_1", now, &signature, &tampered).await,
        unauthorized()
    );
    // The signature covers the id as well.
    assert_eq!(
        standard_webhooks_post(&app, "signed", "msg_v1a_2", now, &signature, body).await,
        unauthorized()
    );
    let other_key = ed25519_dalek::SigningKey::from_bytes(&[0x33; 32]);
    let foreign = v1a_signature(&other_key, "msg_v1a_1", now, body);
    assert_eq!(
        standard_webhooks_post(&app, "signed", "msg_v1a_1", now, &foreign, body).await,
        unauthorized()
    );
    assert_nothing_recorded(&app, "signed").await;
    // A source with no public keys takes no `v1a` signature.
    assert_eq!(
        standard_webhooks_post(&app, "clerk", "msg_v1a_1", now, &signature, body).await,
        unauthorized()
    );
    assert_nothing_recorded(&app, "clerk").await;

    assert_eq!(
        standard_webhooks_post(&app, "signed", "msg_v1a_1", now, &signature, body).await,
        (200, counts_json(1, 0, 0))
    );
    let settled = app.settle().await;
    assert_eq!(settled.done, 1);
    assert_eq!(user_calls(&app.calls(), USER), block(USER));
    assert_eq!(app.calls().len(), 2, "{:?}", app.calls());
    assert_eq!(app.simulator.user_status(PROJECT, USER), Some(false));
    app.stop().await;
}
