//! End-to-end tests for the JWT kinds: OpenID Connect Back-Channel Logout
//! and OpenID Shared Signals push delivery. Tokens are signed here with the
//! RSA test key of `tests/fixtures/jwt-rsa-test-key.json` or an Ed25519 key
//! from a fixed seed. Key sets come from a file or from a JWKS server on
//! 127.0.0.1 that each test starts.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use common::*;
use ed25519_dalek::Signer as _;
use revokd::delivery::now_millis;
use serde_json::{json, Value};

const LOGOUT_CLAIMS: &str = include_str!("fixtures/oidc-logout-token.claims.json");
const CAEP_CLAIMS: &str = include_str!("fixtures/ssf-caep-session-revoked.claims.json");
const RISC_CLAIMS: &str = include_str!("fixtures/ssf-risc-account-disabled.claims.json");
const RSA_FIXTURE: &str = include_str!("fixtures/jwt-rsa-test-key.json");

/// The `sub` of the sample logout token and RISC SET.
const PROVIDER_SUBJECT: &str = "248289761001";
const SAM: &str = "6650c1f2a7b3e9d4c022";
const SAM_EMAIL: &str = "sam.lee@example.com";
const SCOPES: &[&str] = &["users.read", "users.write"];

const SESSION_REVOKED: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
const ACCOUNT_DISABLED: &str =
    "https://schemas.openid.net/secevent/risc/event-type/account-disabled";

// --- Signing -----------------------------------------------------------------

enum PrivateKey {
    Rsa(jsonwebtoken::EncodingKey),
    Ed25519(ed25519_dalek::SigningKey),
}

/// A signing key and its public JWK.
struct TestKey {
    kid: &'static str,
    private: PrivateKey,
    jwk: Value,
}

fn base64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The RSA-2048 fixture key, kid `rsa-test`, for RS256.
fn rsa_key() -> TestKey {
    let fixture: Value = serde_json::from_str(RSA_FIXTURE).unwrap();
    let der = STANDARD
        .decode(fixture["private_pkcs1_der_base64"].as_str().unwrap())
        .unwrap();
    TestKey {
        kid: "rsa-test",
        private: PrivateKey::Rsa(jsonwebtoken::EncodingKey::from_rsa_der(&der)),
        jwk: fixture["jwk"].clone(),
    }
}

/// Makes an Ed25519 key from `seed`, for EdDSA.
fn ed25519_key(kid: &'static str, seed: u8) -> TestKey {
    let signing = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    let jwk = json!({
        "kty": "OKP",
        "crv": "Ed25519",
        "kid": kid,
        "use": "sig",
        "x": base64url(signing.verifying_key().as_bytes()),
    });
    TestKey {
        kid,
        private: PrivateKey::Ed25519(signing),
        jwk,
    }
}

fn key_set(keys: &[&TestKey]) -> Value {
    json!({ "keys": keys.iter().map(|key| key.jwk.clone()).collect::<Vec<_>>() })
}

/// Builds a compact JWS of `claims` signed by `key`, with `kid` and `typ` in
/// its header.
fn sign_with_kid(key: &TestKey, kid: &str, typ: &str, claims: &Value) -> String {
    let algorithm = match key.private {
        PrivateKey::Rsa(_) => "RS256",
        PrivateKey::Ed25519(_) => "EdDSA",
    };
    let header = json!({ "alg": algorithm, "kid": kid, "typ": typ });
    let signing_input = format!(
        "{}.{}",
        base64url(header.to_string().as_bytes()),
        base64url(claims.to_string().as_bytes())
    );
    let signature = match &key.private {
        PrivateKey::Rsa(private) => jsonwebtoken::crypto::sign(
            signing_input.as_bytes(),
            private,
            jsonwebtoken::Algorithm::RS256,
        )
        .unwrap(),
        PrivateKey::Ed25519(private) => {
            base64url(&private.sign(signing_input.as_bytes()).to_bytes())
        }
    };
    format!("{signing_input}.{signature}")
}

fn sign(key: &TestKey, typ: &str, claims: &Value) -> String {
    sign_with_kid(key, key.kid, typ, claims)
}

fn now_seconds() -> i64 {
    now_millis() / 1000
}

/// Parses the sample claims in `text`, with `iat` set to now and `jti`
/// replaced.
fn claims_from(text: &str, jti: &str) -> Value {
    let mut claims: Value = serde_json::from_str(text).unwrap();
    claims["iat"] = json!(now_seconds());
    claims["jti"] = json!(jti);
    claims
}

// --- JWKS server -------------------------------------------------------------

struct JwksState {
    document: Mutex<Value>,
    requests: AtomicUsize,
}

/// A JWKS endpoint at `/jwks.json` that counts its requests.
struct JwksServer {
    url: String,
    state: web::Data<JwksState>,
    handle: actix_web::dev::ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn serve_jwks(state: web::Data<JwksState>) -> HttpResponse {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let document = state.document.lock().unwrap().to_string();
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document)
}

impl JwksServer {
    /// Serves `document` on `listener`, which must be bound on 127.0.0.1.
    fn start(listener: TcpListener, document: Value) -> JwksServer {
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let state = web::Data::new(JwksState {
            document: Mutex::new(document),
            requests: AtomicUsize::new(0),
        });
        let shared = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(shared.clone())
                .route("/jwks.json", web::get().to(serve_jwks))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        let task = tokio::spawn(server);
        JwksServer {
            url,
            state,
            handle,
            task,
        }
    }

    fn set_document(&self, document: Value) {
        *self.state.document.lock().unwrap() = document;
    }

    fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    async fn stop(self) {
        self.handle.stop(true).await;
        self.task.await.unwrap().unwrap();
    }
}

fn write_key_set(dir: &Path, keys: &[&TestKey]) -> String {
    let path = dir.join("jwks.json");
    std::fs::write(&path, key_set(keys).to_string()).unwrap();
    path.display().to_string()
}

// --- Requests and checks -----------------------------------------------------

/// Status, `Cache-Control`, `Retry-After` and body of a hooks response.
struct HookResponse {
    status: u16,
    cache_control: Option<String>,
    retry_after: Option<String>,
    body: Vec<u8>,
}

impl HookResponse {
    async fn read(response: reqwest::Response) -> HookResponse {
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|value| value.to_str().unwrap().to_string())
        };
        let cache_control = header("cache-control");
        let retry_after = header("retry-after");
        HookResponse {
            status: response.status().as_u16(),
            cache_control,
            retry_after,
            body: response.bytes().await.unwrap().to_vec(),
        }
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON response body")
    }
}

async fn post_logout(app: &TestApp, source: &str, content_type: &str, token: &str) -> HookResponse {
    let response = app
        .http
        .post(format!("{}/hooks/{source}", app.base))
        .header("Content-Type", content_type)
        .body(format!("logout_token={token}"))
        .send()
        .await
        .unwrap();
    HookResponse::read(response).await
}

const FORM: &str = "application/x-www-form-urlencoded";
const SET_TYPE: &str = "application/secevent+jwt";

async fn post_set(
    app: &TestApp,
    authorization: Option<&str>,
    content_type: &str,
    token: &str,
) -> HookResponse {
    let mut request = app
        .http
        .post(format!("{}/hooks/ssf", app.base))
        .header("Content-Type", content_type)
        .header("Accept", "application/json")
        .body(token.to_string());
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    HookResponse::read(request.send().await.unwrap()).await
}

/// Asserts a logout was accepted: 200, no body, and `Cache-Control:
/// no-store`.
fn assert_logout_accepted(response: &HookResponse) {
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(response.cache_control.as_deref(), Some("no-store"));
    assert!(
        response.body.is_empty(),
        "{}",
        String::from_utf8_lossy(&response.body)
    );
}

/// Asserts an SET was accepted: 202 and no body.
fn assert_set_accepted(response: &HookResponse) {
    assert_eq!(
        response.status,
        202,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert!(
        response.body.is_empty(),
        "{}",
        String::from_utf8_lossy(&response.body)
    );
}

fn logout_error(description: &str) -> Value {
    json!({ "error": "invalid_request", "error_description": description })
}

fn set_error(code: &str, description: &str) -> Value {
    json!({ "err": code, "description": description })
}

fn identity_lookup(provider_uid: &str) -> (String, Vec<Value>) {
    (
        "/v1/users/identities".to_string(),
        vec![
            equal_query("providerUid", provider_uid),
            equal_query("provider", "oidc"),
        ],
    )
}

fn email_lookup(email: &str) -> (String, Vec<Value>) {
    ("/v1/users".to_string(), vec![equal_query("email", email)])
}

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

// --- OpenID Connect Back-Channel Logout ---------------------------------------

/// Config for a back-channel logout source named `logout` that loads its
/// keys from `jwks` (a `jwks_file = …` or `jwks_url = …` line).
fn logout_rules(jwks: &str) -> String {
    format!(
        r#"
[sources.logout]
kind = "oidc-backchannel"
issuer = "https://id.example.com/realms/main"
audience = "revokd-client"
{jwks}

[[rules]]
name = "backchannel-logout"
source = "logout"
event = "backchannel-logout"
user = {{ identity = "/sub", provider = "oidc" }}
action = "delete_sessions"
target = "main"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backchannel_logout_with_jwks_file() {
    let dir = tempfile::tempdir().unwrap();
    let key = rsa_key();
    let jwks_file = write_key_set(dir.path(), &[&key]);
    let app = spawn_app_with(
        &logout_rules(&format!("jwks_file = \"{jwks_file}\"")),
        SCOPES,
    )
    .await;
    app.simulator
        .add_identity(PROJECT, USER, "oidc", PROVIDER_SUBJECT);

    let claims = claims_from(LOGOUT_CLAIMS, "bcl-file-1");
    let token = sign(&key, "logout+jwt", &claims);

    let json = post_logout(&app, "logout", "application/json", &token).await;
    assert_eq!(json.status, 415);
    assert_eq!(json.json(), json!({ "error": "unsupported content type" }));

    let mut with_nonce = claims.clone();
    with_nonce["nonce"] = json!("n-0S6_WzA2Mj");
    let response = post_logout(&app, "logout", FORM, &sign(&key, "logout+jwt", &with_nonce)).await;
    assert_eq!(response.status, 400);
    assert_eq!(
        response.json(),
        logout_error("a logout token must not contain a nonce claim")
    );

    let mut other_client = claims.clone();
    other_client["aud"] = json!("another-client");
    let response = post_logout(
        &app,
        "logout",
        FORM,
        &sign(&key, "logout+jwt", &other_client),
    )
    .await;
    assert_eq!(response.status, 400);
    assert_eq!(
        response.json(),
        logout_error("the token's aud does not contain the configured audience")
    );

    let mut stale = claims.clone();
    stale["iat"] = json!(now_seconds() - 301);
    let response = post_logout(&app, "logout", FORM, &sign(&key, "logout+jwt", &stale)).await;
    assert_eq!(response.status, 400);
    assert_eq!(
        response.json(),
        logout_error("the token's iat is too far from the current time")
    );

    // A signature over other claims.
    let forged = {
        let signed = sign(&key, "logout+jwt", &claims);
        let mut parts: Vec<String> = signed.split('.').map(str::to_string).collect();
        let mut changed = claims.clone();
        changed["sub"] = json!("another-subject");
        parts[1] = base64url(changed.to_string().as_bytes());
        parts.join(".")
    };
    let response = post_logout(&app, "logout", FORM, &forged).await;
    assert_eq!(response.status, 400);
    assert_eq!(
        response.json(),
        logout_error("the token's signature does not verify with the issuer's keys")
    );
    assert_nothing_recorded(&app, "logout").await;

    assert_logout_accepted(&post_logout(&app, "logout", FORM, &token).await);
    let settled = app.settle().await;
    assert_eq!(settled.done, 1);
    assert_eq!(settled.dead, 0);
    let calls = app.calls();
    assert_eq!(lookups(&calls), vec![identity_lookup(PROVIDER_SUBJECT)]);
    assert_eq!(user_calls(&calls, USER), delete_sessions(USER));
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(app.sessions().is_empty());

    // The provider may send the same token again: it is a duplicate.
    assert_logout_accepted(&post_logout(&app, "logout", FORM, &token).await);
    app.settle().await;
    assert_eq!(app.calls().len(), 2);
    let events = stored_events(&app, "logout").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, "bcl-file-1");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backchannel_logout_key_rotation() {
    let first = rsa_key();
    let rotated = ed25519_key("ed-rotated", 0x21);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let jwks = JwksServer::start(listener, key_set(&[&first]));
    let app = spawn_app_with(
        &logout_rules(&format!("jwks_url = \"{}\"", jwks.url)),
        SCOPES,
    )
    .await;
    app.simulator
        .add_identity(PROJECT, USER, "oidc", PROVIDER_SUBJECT);

    let token = sign(
        &first,
        "logout+jwt",
        &claims_from(LOGOUT_CLAIMS, "bcl-url-1"),
    );
    assert_logout_accepted(&post_logout(&app, "logout", FORM, &token).await);
    assert_eq!(jwks.requests(), 1);
    app.settle().await;
    assert_eq!(
        lookups(&app.calls()),
        vec![identity_lookup(PROVIDER_SUBJECT)]
    );
    assert_eq!(user_calls(&app.calls(), USER), delete_sessions(USER));

    // The provider rotates: only a refetched key set contains the new key.
    jwks.set_document(key_set(&[&first, &rotated]));
    let token = sign(
        &rotated,
        "logout+jwt",
        &claims_from(LOGOUT_CLAIMS, "bcl-url-2"),
    );
    assert_logout_accepted(&post_logout(&app, "logout", FORM, &token).await);
    assert_eq!(jwks.requests(), 2);

    // An unknown key id right after that refetch does not cause another one.
    let unknown = sign_with_kid(
        &rotated,
        "not-published",
        "logout+jwt",
        &claims_from(LOGOUT_CLAIMS, "bcl-url-3"),
    );
    let response = post_logout(&app, "logout", FORM, &unknown).await;
    assert_eq!(response.status, 400);
    assert_eq!(
        response.json(),
        logout_error("the token is signed with a key that is not in the issuer's JWKS")
    );
    assert_eq!(jwks.requests(), 2);

    let settled = app.settle().await;
    assert_eq!(settled.done, 2);
    assert_eq!(settled.dead, 0);
    // The second job reuses the first lookup.
    assert_eq!(
        lookups(&app.calls()),
        vec![identity_lookup(PROVIDER_SUBJECT)]
    );
    assert_eq!(
        user_calls(&app.calls(), USER),
        [delete_sessions(USER), delete_sessions(USER)].concat()
    );
    let keys: Vec<String> = stored_events(&app, "logout")
        .await
        .into_iter()
        .map(|(key, _, _)| key)
        .collect();
    assert_eq!(keys, vec!["bcl-url-1", "bcl-url-2"]);
    app.stop().await;
    jwks.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backchannel_logout_jwks_unreachable() {
    let key = rsa_key();
    let port = unused_port();
    let url = format!("http://127.0.0.1:{port}/jwks.json");
    let app = spawn_app_with(&logout_rules(&format!("jwks_url = \"{url}\"")), SCOPES).await;
    app.simulator
        .add_identity(PROJECT, USER, "oidc", PROVIDER_SUBJECT);
    let token = sign(
        &key,
        "logout+jwt",
        &claims_from(LOGOUT_CLAIMS, "bcl-down-1"),
    );

    // No key set was ever loaded, so the token cannot be checked yet. A 503
    // makes the provider retry instead of dropping the logout.
    let response = post_logout(&app, "logout", FORM, &token).await;
    assert_eq!(response.status, 503);
    assert_eq!(response.retry_after.as_deref(), Some("30"));
    assert_eq!(
        response.json(),
        json!({ "error": "signing keys unavailable, retry later" })
    );
    assert_nothing_recorded(&app, "logout").await;

    // Once the JWKS server is up, a retry succeeds: within a second, because
    // a failed first load is not repeated sooner.
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let jwks = JwksServer::start(listener, key_set(&[&key]));
    let accepted = wait_for(
        "the logout to be accepted",
        Duration::from_secs(5),
        || async {
            let response = post_logout(&app, "logout", FORM, &token).await;
            (response.status == 200).then_some(response)
        },
    )
    .await;
    assert_logout_accepted(&accepted);
    assert_eq!(jwks.requests(), 1);
    let settled = app.settle().await;
    assert_eq!(settled.done, 1);
    assert_eq!(user_calls(&app.calls(), USER), delete_sessions(USER));
    app.stop().await;
    jwks.stop().await;
}

// --- OpenID Shared Signals ---------------------------------------------------

/// Config for an `ssf` source that loads its keys from `jwks` (a
/// `jwks_file = …` or `jwks_url = …` line).
fn ssf_rules(jwks: &str) -> String {
    format!(
        r#"
[sources.ssf]
kind = "ssf"
issuer = "https://transmitter.example.com"
audience = "https://hooks.example.com/hooks/ssf"
{jwks}
authorization = {{ env = "TEST_SSF_AUTHORIZATION" }}

[[rules]]
name = "caep-session-revoked"
source = "ssf"
event = "caep.session-revoked"
user = {{ email = "/subject/email" }}
action = "delete_sessions"
target = "main"

[[rules]]
name = "risc-account-disabled"
source = "ssf"
event = "risc.account-disabled"
user = {{ identity = "/subject/sub", provider = "oidc" }}
action = "block_user"
target = "main"
"#
    )
}

/// Starts revokd with an `ssf` source whose key set contains `key`.
async fn spawn_ssf_app(dir: &Path, key: &TestKey) -> TestApp {
    let jwks_file = write_key_set(dir, &[key]);
    spawn_app_with(&ssf_rules(&format!("jwks_file = \"{jwks_file}\"")), SCOPES).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssf_session_revoked_by_email() {
    let dir = tempfile::tempdir().unwrap();
    let key = rsa_key();
    let app = spawn_ssf_app(dir.path(), &key).await;
    let claims = claims_from(CAEP_CLAIMS, "set-caep-1");
    let token = sign(&key, "secevent+jwt", &claims);
    let bearer = Some(SSF_AUTHORIZATION);

    let response = post_set(&app, None, SET_TYPE, &token).await;
    assert_eq!(response.status, 400);
    assert_eq!(
        response.json(),
        set_error(
            "authentication_failed",
            "the request has no Authorization header"
        )
    );
    let response = post_set(&app, Some("Bearer wrong"), SET_TYPE, &token).await;
    assert_eq!(response.status, 400);
    assert_eq!(
        response.json(),
        set_error(
            "authentication_failed",
            "the Authorization header does not match the stream's value"
        )
    );

    let mut other_audience = claims.clone();
    other_audience["aud"] = json!("https://other.example.com/hooks/ssf");
    let response = post_set(
        &app,
        bearer,
        SET_TYPE,
        &sign(&key, "secevent+jwt", &other_audience),
    )
    .await;
    assert_eq!(response.status, 400);
    assert_eq!(
        response.json(),
        set_error(
            "invalid_audience",
            "the token's aud does not contain the configured audience"
        )
    );

    let mut other_issuer = claims.clone();
    other_issuer["iss"] = json!("https://other-transmitter.example.com");
    let response = post_set(
        &app,
        bearer,
        SET_TYPE,
        &sign(&key, "secevent+jwt", &other_issuer),
    )
    .await;
    assert_eq!(response.status, 400);
    assert_eq!(
        response.json(),
        set_error(
            "invalid_issuer",
            "the token's iss does not match the configured issuer"
        )
    );

    let response = post_set(&app, bearer, SET_TYPE, &sign(&key, "JWT", &claims)).await;
    assert_eq!(response.status, 400);
    assert_eq!(
        response.json(),
        set_error(
            "invalid_request",
            "the SET's header typ is not secevent+jwt"
        )
    );

    let response = post_set(&app, bearer, "application/json", &token).await;
    assert_eq!(response.status, 415);
    assert_eq!(
        response.json(),
        json!({ "error": "unsupported content type" })
    );
    assert_nothing_recorded(&app, "ssf").await;

    assert_set_accepted(&post_set(&app, bearer, SET_TYPE, &token).await);
    let settled = app.settle().await;
    assert_eq!(settled.done, 1);
    assert_eq!(settled.dead, 0);
    let calls = app.calls();
    assert_eq!(lookups(&calls), vec![email_lookup("jane.doe@example.com")]);
    assert_eq!(user_calls(&calls, USER), delete_sessions(USER));
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(app.sessions().is_empty());

    let events = stored_events(&app, "ssf").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, format!("set-caep-1 {SESSION_REVOKED}"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssf_account_disabled_by_identity() {
    let dir = tempfile::tempdir().unwrap();
    let key = ed25519_key("ssf-ed", 0x42);
    let app = spawn_ssf_app(dir.path(), &key).await;
    app.add_user(SAM, SAM_EMAIL, &["sam-1", "sam-2"]);
    app.simulator
        .add_identity(PROJECT, SAM, "oidc", PROVIDER_SUBJECT);

    let token = sign(
        &key,
        "secevent+jwt",
        &claims_from(RISC_CLAIMS, "set-risc-1"),
    );
    assert_set_accepted(&post_set(&app, Some(SSF_AUTHORIZATION), SET_TYPE, &token).await);
    let settled = app.settle().await;
    assert_eq!(settled.done, 1);
    assert_eq!(settled.dead, 0);

    let calls = app.calls();
    assert_eq!(lookups(&calls), vec![identity_lookup(PROVIDER_SUBJECT)]);
    assert_eq!(user_calls(&calls, SAM), block(SAM));
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert_eq!(app.simulator.user_status(PROJECT, SAM), Some(false));
    assert_eq!(app.simulator.sessions(PROJECT, SAM), Some(Vec::new()));
    // Jane's sessions are untouched.
    assert_eq!(app.sessions().len(), 3);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssf_two_events_in_one_set() {
    let dir = tempfile::tempdir().unwrap();
    let key = rsa_key();
    let app = spawn_ssf_app(dir.path(), &key).await;
    app.add_user(SAM, SAM_EMAIL, &["sam-1"]);
    app.simulator
        .add_identity(PROJECT, SAM, "oidc", "sam-at-idp");

    // The session event names Jane through `sub_id`, and the RISC event
    // names Sam in its own legacy `subject`.
    let mut claims = claims_from(CAEP_CLAIMS, "set-pair-1");
    claims["events"][ACCOUNT_DISABLED] = json!({
        "subject": {
            "subject_type": "iss-sub",
            "iss": "https://id.example.com",
            "sub": "sam-at-idp"
        },
        "reason": "hijacking"
    });
    let token = sign(&key, "secevent+jwt", &claims);
    assert_set_accepted(&post_set(&app, Some(SSF_AUTHORIZATION), SET_TYPE, &token).await);
    let settled = app.settle().await;
    assert_eq!(settled.done, 2);
    assert_eq!(settled.dead, 0);

    let mut found = lookups(&app.calls());
    found.sort_by_key(|(path, _)| path.clone());
    assert_eq!(
        found,
        vec![
            email_lookup("jane.doe@example.com"),
            identity_lookup("sam-at-idp")
        ]
    );
    let calls = app.calls();
    assert_eq!(user_calls(&calls, USER), delete_sessions(USER));
    assert_eq!(user_calls(&calls, SAM), block(SAM));
    assert_eq!(calls.len(), 5, "{calls:?}");

    let events = stored_events(&app, "ssf").await;
    let summary: Vec<(String, Option<String>, u64)> = events
        .into_iter()
        .map(|(key, ignored, jobs)| (key, ignored, jobs.done))
        .collect();
    assert_eq!(
        summary,
        vec![
            (format!("set-pair-1 {SESSION_REVOKED}"), None, 1),
            (format!("set-pair-1 {ACCOUNT_DISABLED}"), None, 1),
        ]
    );

    // A resent SET is accepted again, and both of its events are duplicates.
    assert_set_accepted(&post_set(&app, Some(SSF_AUTHORIZATION), SET_TYPE, &token).await);
    app.settle().await;
    assert_eq!(app.calls().len(), 5);
    assert_eq!(stored_events(&app, "ssf").await.len(), 2);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssf_authorization_before_key_fetch() {
    let key = rsa_key();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let jwks = JwksServer::start(listener, key_set(&[&key]));
    let app = spawn_app_with(&ssf_rules(&format!("jwks_url = \"{}\"", jwks.url)), SCOPES).await;
    let token = sign(
        &key,
        "secevent+jwt",
        &claims_from(CAEP_CLAIMS, "set-early-1"),
    );

    // A caller without the stream's Authorization value is rejected before
    // the transmitter's keys are fetched for it.
    let response = post_set(&app, None, SET_TYPE, &token).await;
    assert_eq!(response.status, 400);
    assert_eq!(
        response.json(),
        set_error(
            "authentication_failed",
            "the request has no Authorization header"
        )
    );
    let response = post_set(&app, Some("Bearer wrong"), SET_TYPE, &token).await;
    assert_eq!(response.status, 400);
    assert_eq!(response.json()["err"], "authentication_failed");
    assert_eq!(jwks.requests(), 0);
    assert_nothing_recorded(&app, "ssf").await;

    // With the JWKS server gone and no keys loaded yet, the response to such
    // a caller is still the authentication failure, not a 503.
    jwks.stop().await;
    let response = post_set(&app, None, SET_TYPE, &token).await;
    assert_eq!(response.status, 400);
    assert_eq!(response.json()["err"], "authentication_failed");
    let response = post_set(&app, Some(SSF_AUTHORIZATION), SET_TYPE, &token).await;
    assert_eq!(response.status, 503);
    assert_nothing_recorded(&app, "ssf").await;
    app.stop().await;
}
