//! Tests of the Appwrite simulator over real HTTP on 127.0.0.1.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reqwest::{Client, Method, StatusCode};
use revokd::simulator::{Fault, RecordedRequest, Simulator};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PROJECT: &str = "proj-1";
const FULL_KEY: &str = "key-full";
const USERS_READ_KEY: &str = "key-users-read";
const USERS_WRITE_KEY: &str = "key-users-write";
const SESSIONS_READ_KEY: &str = "key-sessions-read";
const SESSIONS_WRITE_KEY: &str = "key-sessions-write";

/// Upper bound for any single test request that is not meant to be slow.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Starts a simulator with one project, keys of each scope mix, user `u1` with sessions `s1`
/// and `s2`, and user `u2` with session `s3`.
async fn seeded() -> Simulator {
    let sim = Simulator::start(localhost()).await.unwrap();
    sim.add_project(PROJECT);
    sim.add_key(PROJECT, FULL_KEY, &["users.read", "users.write"]);
    sim.add_key(PROJECT, USERS_READ_KEY, &["users.read"]);
    sim.add_key(PROJECT, USERS_WRITE_KEY, &["users.write"]);
    sim.add_key(PROJECT, SESSIONS_READ_KEY, &["sessions.read"]);
    sim.add_key(PROJECT, SESSIONS_WRITE_KEY, &["sessions.write"]);
    sim.add_user(PROJECT, "u1", "u1@example.com");
    sim.add_session(PROJECT, "u1", "s1");
    sim.add_session(PROJECT, "u1", "s2");
    sim.add_user(PROJECT, "u2", "u2@example.com");
    sim.add_session(PROJECT, "u2", "s3");
    sim
}

fn client() -> Client {
    Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .unwrap()
}

/// Sends `method path` (path relative to the `/v1` endpoint) with project and key headers.
async fn call(
    sim: &Simulator,
    method: Method,
    path: &str,
    project: Option<&str>,
    key: Option<&str>,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = client().request(method, format!("{}{path}", sim.endpoint()));
    if let Some(project) = project {
        request = request.header("X-Appwrite-Project", project);
    }
    if let Some(key) = key {
        request = request.header("X-Appwrite-Key", key);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

async fn list(sim: &Simulator, user: &str, key: &str) -> reqwest::Response {
    let path = format!("/users/{user}/sessions");
    call(sim, Method::GET, &path, Some(PROJECT), Some(key), None).await
}

async fn delete_all(sim: &Simulator, user: &str, key: &str) -> reqwest::Response {
    let path = format!("/users/{user}/sessions");
    call(sim, Method::DELETE, &path, Some(PROJECT), Some(key), None).await
}

async fn delete_one(sim: &Simulator, user: &str, session: &str, key: &str) -> reqwest::Response {
    let path = format!("/users/{user}/sessions/{session}");
    call(sim, Method::DELETE, &path, Some(PROJECT), Some(key), None).await
}

async fn set_status(sim: &Simulator, user: &str, status: bool, key: &str) -> reqwest::Response {
    let path = format!("/users/{user}/status");
    let body = serde_json::json!({ "status": status });
    call(
        sim,
        Method::PATCH,
        &path,
        Some(PROJECT),
        Some(key),
        Some(body),
    )
    .await
}

/// Checks an Appwrite error response and returns its body.
async fn expect_error(response: reqwest::Response, status: u16, error_type: &str) -> Value {
    assert_eq!(response.status().as_u16(), status, "HTTP status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "content type {content_type}"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], error_type, "error type in {body}");
    assert_eq!(body["code"], status, "code in {body}");
    assert_eq!(body["version"], "1.9.6", "version in {body}");
    assert!(body["message"].is_string(), "message in {body}");
    body
}

// --- routing ---

#[tokio::test]
async fn path_without_v1_gets_plain_404() {
    let sim = seeded().await;
    let url = format!("http://{}/users/u1/sessions", sim.addr());
    let response = client()
        .get(url)
        .header("X-Appwrite-Project", PROJECT)
        .header("X-Appwrite-Key", FULL_KEY)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = response.text().await.unwrap();
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
    assert!(sim.requests().is_empty(), "non-/v1 paths are not recorded");
    sim.stop().await;
}

#[tokio::test]
async fn unknown_v1_route_gets_json_404() {
    let sim = seeded().await;
    let cases = [
        (Method::GET, "/health/version"),
        (Method::PUT, "/users/u1/sessions"),
        (Method::GET, "/users/u1/sessions/s1"),
        (Method::GET, "/users/u1/status"),
        (Method::DELETE, "/users/u1"),
        (Method::GET, ""),
    ];
    for (method, path) in cases {
        let response = call(&sim, method, path, Some(PROJECT), Some(FULL_KEY), None).await;
        expect_error(response, 404, "general_route_not_found").await;
    }
    sim.stop().await;
}

// --- project and key checks ---

#[tokio::test]
async fn missing_project_header() {
    let sim = seeded().await;
    let with_key = call(
        &sim,
        Method::GET,
        "/users/u1/sessions",
        None,
        Some(FULL_KEY),
        None,
    )
    .await;
    expect_error(with_key, 403, "project_id_missing").await;

    let without_key = call(&sim, Method::GET, "/users/u1/sessions", None, None, None).await;
    expect_error(without_key, 401, "general_unauthorized_scope").await;
    sim.stop().await;
}

#[tokio::test]
async fn project_from_query_parameter() {
    let sim = seeded().await;
    let path = format!("/users/u1/sessions?project={PROJECT}");
    let response = call(&sim, Method::GET, &path, None, Some(FULL_KEY), None).await;
    assert_eq!(response.status(), StatusCode::OK);
    sim.stop().await;
}

#[tokio::test]
async fn unknown_project_is_project_not_found() {
    let sim = seeded().await;
    let response = call(
        &sim,
        Method::GET,
        "/users/u1/sessions",
        Some("no-such-project"),
        Some(FULL_KEY),
        None,
    )
    .await;
    expect_error(response, 404, "project_not_found").await;
    sim.stop().await;
}

#[tokio::test]
async fn unknown_key_is_user_unauthorized() {
    let sim = seeded().await;
    sim.add_key("other-project", "other-key", &["users.read", "users.write"]);

    for key in ["wrong-key", "other-key"] {
        let response = list(&sim, "u1", key).await;
        expect_error(response, 401, "user_unauthorized").await;
    }
    sim.stop().await;
}

#[tokio::test]
async fn project_without_keys_rejects_any_key() {
    let sim = seeded().await;
    sim.add_project("empty");
    let response = call(
        &sim,
        Method::DELETE,
        "/users/u1/sessions",
        Some("empty"),
        Some(FULL_KEY),
        None,
    )
    .await;
    expect_error(response, 401, "user_unauthorized").await;
    sim.stop().await;
}

#[tokio::test]
async fn no_key_is_guest_without_scopes() {
    let sim = seeded().await;
    let cases = [
        (Method::GET, "/users/u1/sessions", None),
        (Method::DELETE, "/users/u1/sessions", None),
        (Method::DELETE, "/users/u1/sessions/s1", None),
        (
            Method::PATCH,
            "/users/u1/status",
            Some(serde_json::json!({"status": false})),
        ),
    ];
    for (method, path, body) in cases {
        let response = call(&sim, method, path, Some(PROJECT), None, body).await;
        let body = expect_error(response, 401, "general_unauthorized_scope").await;
        assert!(
            body["message"].as_str().unwrap().contains("guests"),
            "{body}"
        );
    }
    assert_eq!(sim.sessions(PROJECT, "u1").unwrap(), vec!["s1", "s2"]);
    assert_eq!(sim.user_status(PROJECT, "u1"), Some(true));
    sim.stop().await;
}

// --- scopes (Appwrite 1.9.6 accepts any one listed scope) ---

#[tokio::test]
async fn list_sessions_scopes() {
    let sim = seeded().await;
    for key in [FULL_KEY, USERS_READ_KEY, SESSIONS_READ_KEY] {
        assert_eq!(
            list(&sim, "u1", key).await.status(),
            StatusCode::OK,
            "{key}"
        );
    }
    for key in [USERS_WRITE_KEY, SESSIONS_WRITE_KEY] {
        let body = expect_error(
            list(&sim, "u1", key).await,
            401,
            "general_unauthorized_scope",
        )
        .await;
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("users.read"), "{message}");
        assert!(message.contains("sessions.read"), "{message}");
    }
    sim.stop().await;
}

#[tokio::test]
async fn delete_sessions_scopes() {
    let sim = seeded().await;
    for key in [USERS_READ_KEY, SESSIONS_READ_KEY] {
        let response = delete_all(&sim, "u1", key).await;
        let body = expect_error(response, 401, "general_unauthorized_scope").await;
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("users.write"), "{message}");
        assert!(message.contains("sessions.write"), "{message}");

        let response = delete_one(&sim, "u1", "s1", key).await;
        expect_error(response, 401, "general_unauthorized_scope").await;
    }
    assert_eq!(sim.sessions(PROJECT, "u1").unwrap(), vec!["s1", "s2"]);

    assert_eq!(
        delete_one(&sim, "u1", "s1", USERS_WRITE_KEY).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        delete_one(&sim, "u1", "s2", SESSIONS_WRITE_KEY)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        delete_all(&sim, "u2", SESSIONS_WRITE_KEY).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        delete_all(&sim, "u2", USERS_WRITE_KEY).await.status(),
        StatusCode::NO_CONTENT
    );
    sim.stop().await;
}

#[tokio::test]
async fn sessions_write_key_cannot_block() {
    let sim = seeded().await;
    let response = set_status(&sim, "u1", false, SESSIONS_WRITE_KEY).await;
    let body = expect_error(response, 401, "general_unauthorized_scope").await;
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("users.write"), "{message}");
    assert!(!message.contains("sessions.write"), "{message}");
    assert_eq!(sim.user_status(PROJECT, "u1"), Some(true));

    for key in [USERS_READ_KEY, SESSIONS_READ_KEY] {
        let response = set_status(&sim, "u1", false, key).await;
        expect_error(response, 401, "general_unauthorized_scope").await;
    }
    assert_eq!(
        set_status(&sim, "u1", false, USERS_WRITE_KEY)
            .await
            .status(),
        StatusCode::OK
    );
    sim.stop().await;
}

// --- argument checks ---

#[tokio::test]
async fn invalid_ids_are_argument_invalid() {
    let sim = seeded().await;
    let too_long = "a".repeat(37);
    for user in ["_u1", ".u1", "-u1", "u%201", "u!1", too_long.as_str()] {
        let response = list(&sim, user, FULL_KEY).await;
        expect_error(response, 400, "general_argument_invalid").await;
    }
    let response = delete_one(&sim, "u1", "_s1", FULL_KEY).await;
    expect_error(response, 400, "general_argument_invalid").await;

    // 36 characters is the maximum, so this ID is valid and only unknown.
    let longest = "b".repeat(36);
    let response = list(&sim, &longest, FULL_KEY).await;
    expect_error(response, 404, "user_not_found").await;
    sim.stop().await;
}

#[tokio::test]
async fn status_body_must_hold_boolean() {
    let sim = seeded().await;
    let bodies = [
        serde_json::json!({}),
        serde_json::json!({"status": null}),
        serde_json::json!({"status": "false"}),
        serde_json::json!({"blocked": true}),
    ];
    for body in bodies {
        let response = call(
            &sim,
            Method::PATCH,
            "/users/u1/status",
            Some(PROJECT),
            Some(FULL_KEY),
            Some(body),
        )
        .await;
        expect_error(response, 400, "general_argument_invalid").await;
    }

    // A JSON body without the JSON content type is not parsed, so `status` is missing.
    let response = client()
        .patch(format!("{}/users/u1/status", sim.endpoint()))
        .header("X-Appwrite-Project", PROJECT)
        .header("X-Appwrite-Key", FULL_KEY)
        .body(r#"{"status":false}"#)
        .send()
        .await
        .unwrap();
    expect_error(response, 400, "general_argument_invalid").await;

    let no_body = call(
        &sim,
        Method::PATCH,
        "/users/u1/status",
        Some(PROJECT),
        Some(FULL_KEY),
        None,
    )
    .await;
    expect_error(no_body, 400, "general_argument_invalid").await;

    assert_eq!(sim.user_status(PROJECT, "u1"), Some(true));
    sim.stop().await;
}

#[tokio::test]
async fn checks_run_in_appwrite_order() {
    let sim = seeded().await;
    // Unknown project beats an unknown key.
    let response = call(
        &sim,
        Method::GET,
        "/users/_bad/sessions",
        Some("nope"),
        Some("wrong"),
        None,
    )
    .await;
    expect_error(response, 404, "project_not_found").await;

    // Unknown key beats an invalid ID.
    let response = list(&sim, "_bad", "wrong").await;
    expect_error(response, 401, "user_unauthorized").await;

    // Missing scope beats an invalid ID.
    let response = list(&sim, "_bad", USERS_WRITE_KEY).await;
    expect_error(response, 401, "general_unauthorized_scope").await;

    // Invalid ID beats an unknown user, and a missing status beats an unknown user.
    let response = list(&sim, "_bad", FULL_KEY).await;
    expect_error(response, 400, "general_argument_invalid").await;
    let response = call(
        &sim,
        Method::PATCH,
        "/users/ghost/status",
        Some(PROJECT),
        Some(FULL_KEY),
        Some(serde_json::json!({})),
    )
    .await;
    expect_error(response, 400, "general_argument_invalid").await;
    sim.stop().await;
}

// --- the four operations ---

#[tokio::test]
async fn unknown_user_is_user_not_found() {
    let sim = seeded().await;
    expect_error(list(&sim, "ghost", FULL_KEY).await, 404, "user_not_found").await;
    expect_error(
        delete_all(&sim, "ghost", FULL_KEY).await,
        404,
        "user_not_found",
    )
    .await;
    expect_error(
        delete_one(&sim, "ghost", "s1", FULL_KEY).await,
        404,
        "user_not_found",
    )
    .await;
    expect_error(
        set_status(&sim, "ghost", false, FULL_KEY).await,
        404,
        "user_not_found",
    )
    .await;
    assert_eq!(sim.sessions(PROJECT, "u1").unwrap(), vec!["s1", "s2"]);
    sim.stop().await;
}

#[tokio::test]
async fn list_sessions_returns_session_models() {
    let sim = seeded().await;
    let response = list(&sim, "u1", FULL_KEY).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();

    assert_eq!(body["total"], 2);
    let sessions = body["sessions"].as_array().unwrap();
    let ids: Vec<&str> = sessions
        .iter()
        .map(|s| s["$id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["s1", "s2"]);

    let first = &sessions[0];
    assert_eq!(first["userId"], "u1");
    assert_eq!(first["current"], false);
    assert_eq!(first["provider"], "email");
    assert!(!first["secret"].as_str().unwrap().is_empty());
    assert!(first["ip"].is_string());
    assert!(first["factors"].is_array());
    for field in ["$createdAt", "$updatedAt", "expire"] {
        let value = first[field].as_str().unwrap();
        assert!(
            value.ends_with("+00:00") && value.contains('T'),
            "{field}: {value}"
        );
    }
    for field in [
        "providerUid",
        "providerAccessToken",
        "osCode",
        "clientName",
        "deviceName",
        "countryCode",
        "countryName",
        "mfaUpdatedAt",
    ] {
        assert!(first.get(field).is_some(), "missing {field}");
    }

    let path = "/users/u1/sessions?total=false";
    let response = call(&sim, Method::GET, path, Some(PROJECT), Some(FULL_KEY), None).await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["total"], 0);
    assert_eq!(body["sessions"].as_array().unwrap().len(), 2);

    sim.add_user(PROJECT, "u3", "u3@example.com");
    let body: Value = list(&sim, "u3", FULL_KEY).await.json().await.unwrap();
    assert_eq!(body["total"], 0);
    assert_eq!(body["sessions"], serde_json::json!([]));
    sim.stop().await;
}

#[tokio::test]
async fn delete_sessions_empties_user() {
    let sim = seeded().await;
    let response = delete_all(&sim, "u1", FULL_KEY).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(response.bytes().await.unwrap().is_empty());
    assert_eq!(sim.sessions(PROJECT, "u1").unwrap(), Vec::<String>::new());
    assert_eq!(sim.sessions(PROJECT, "u2").unwrap(), vec!["s3"]);

    // Deleting again, with nothing left, still gives 204.
    let again = delete_all(&sim, "u1", FULL_KEY).await;
    assert_eq!(again.status(), StatusCode::NO_CONTENT);

    // Deleted session IDs are gone from the project as well.
    let response = delete_one(&sim, "u1", "s1", FULL_KEY).await;
    expect_error(response, 404, "user_session_not_found").await;
    sim.stop().await;
}

#[tokio::test]
async fn delete_one_session() {
    let sim = seeded().await;
    let response = delete_one(&sim, "u1", "s1", FULL_KEY).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(response.bytes().await.unwrap().is_empty());
    assert_eq!(sim.sessions(PROJECT, "u1").unwrap(), vec!["s2"]);

    let again = delete_one(&sim, "u1", "s1", FULL_KEY).await;
    expect_error(again, 404, "user_session_not_found").await;
    let unknown = delete_one(&sim, "u1", "nope", FULL_KEY).await;
    expect_error(unknown, 404, "user_session_not_found").await;
    assert_eq!(sim.sessions(PROJECT, "u1").unwrap(), vec!["s2"]);
    sim.stop().await;
}

#[tokio::test]
async fn delete_one_ignores_owner_like_1_9_6() {
    let sim = seeded().await;
    // s3 belongs to u2, but Appwrite 1.9.6 deletes it through u1's route.
    let response = delete_one(&sim, "u1", "s3", FULL_KEY).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(sim.sessions(PROJECT, "u2").unwrap(), Vec::<String>::new());
    assert_eq!(sim.sessions(PROJECT, "u1").unwrap(), vec!["s1", "s2"]);
    sim.stop().await;
}

#[tokio::test]
async fn sessions_are_per_project() {
    let sim = seeded().await;
    sim.add_key("proj-2", "key-2", &["users.read", "users.write"]);
    sim.add_user("proj-2", "u1", "other@example.com");
    sim.add_session("proj-2", "u1", "s1");

    let response = call(
        &sim,
        Method::DELETE,
        "/users/u1/sessions/s3",
        Some("proj-2"),
        Some("key-2"),
        None,
    )
    .await;
    expect_error(response, 404, "user_session_not_found").await;
    assert_eq!(sim.sessions(PROJECT, "u2").unwrap(), vec!["s3"]);

    let response = call(
        &sim,
        Method::DELETE,
        "/users/u1/sessions",
        Some("proj-2"),
        Some("key-2"),
        None,
    )
    .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(sim.sessions("proj-2", "u1").unwrap(), Vec::<String>::new());
    assert_eq!(sim.sessions(PROJECT, "u1").unwrap(), vec!["s1", "s2"]);
    sim.stop().await;
}

#[tokio::test]
async fn update_status_returns_user_model() {
    let sim = seeded().await;
    let response = set_status(&sim, "u1", false, FULL_KEY).await;
    assert_eq!(response.status(), StatusCode::OK);
    let user: Value = response.json().await.unwrap();

    assert_eq!(user["$id"], "u1");
    assert_eq!(user["status"], false);
    assert_eq!(user["email"], "u1@example.com");
    assert!(user["password"].as_str().unwrap().starts_with("$argon2"));
    assert_eq!(user["hash"], "argon2");
    assert_eq!(user["hashOptions"]["type"], "argon2");
    for field in [
        "$createdAt",
        "$updatedAt",
        "name",
        "registration",
        "labels",
        "passwordUpdate",
        "phone",
        "emailVerification",
        "phoneVerification",
        "mfa",
        "prefs",
        "targets",
        "accessedAt",
    ] {
        assert!(user.get(field).is_some(), "missing {field}");
    }
    assert_eq!(sim.user_status(PROJECT, "u1"), Some(false));
    // Blocking keeps the sessions, as in Appwrite.
    assert_eq!(sim.sessions(PROJECT, "u1").unwrap(), vec!["s1", "s2"]);

    let response = set_status(&sim, "u1", true, FULL_KEY).await;
    let user: Value = response.json().await.unwrap();
    assert_eq!(user["status"], true);
    assert_eq!(sim.user_status(PROJECT, "u1"), Some(true));
    assert_eq!(sim.user_status(PROJECT, "u2"), Some(true));
    sim.stop().await;
}

#[tokio::test]
async fn state_getters_for_unknown_user() {
    let sim = seeded().await;
    assert_eq!(sim.sessions(PROJECT, "ghost"), None);
    assert_eq!(sim.user_status(PROJECT, "ghost"), None);
    assert_eq!(sim.sessions("no-project", "u1"), None);
    sim.stop().await;
}

#[tokio::test]
#[should_panic(expected = "does not exist")]
async fn add_session_panics_for_missing_user() {
    let sim = seeded().await;
    sim.add_session(PROJECT, "ghost", "s9");
}

// --- faults ---

#[tokio::test]
async fn status_fault_json_applies_once() {
    let sim = seeded().await;
    sim.push_faults([Fault::Status {
        status: 503,
        error_type: "general_server_error".to_owned(),
        json: true,
    }]);
    let response = delete_all(&sim, "u1", FULL_KEY).await;
    expect_error(response, 503, "general_server_error").await;
    assert_eq!(sim.sessions(PROJECT, "u1").unwrap(), vec!["s1", "s2"]);

    let next = delete_all(&sim, "u1", FULL_KEY).await;
    assert_eq!(next.status(), StatusCode::NO_CONTENT);
    sim.stop().await;
}

#[tokio::test]
async fn status_fault_plain_text() {
    let sim = seeded().await;
    sim.push_faults([Fault::Status {
        status: 502,
        error_type: "unused".to_owned(),
        json: false,
    }]);
    let response = list(&sim, "u1", FULL_KEY).await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(!content_type.contains("json"), "{content_type}");
    let text = response.text().await.unwrap();
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");

    assert_eq!(list(&sim, "u1", FULL_KEY).await.status(), StatusCode::OK);
    sim.stop().await;
}

#[tokio::test]
async fn rate_limited_fault_headers() {
    let sim = seeded().await;
    sim.push_faults([Fault::RateLimited {
        retry_after_secs: 7,
    }]);
    let before_secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let response = delete_all(&sim, "u1", FULL_KEY).await;

    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(header("retry-after").as_deref(), Some("7"));
    let reset: u64 = header("x-ratelimit-reset").unwrap().parse().unwrap();
    assert!(
        reset >= before_secs + 7,
        "reset {reset}, before {before_secs}"
    );
    assert!(
        reset <= before_secs + 7 + 60,
        "reset {reset}, before {before_secs}"
    );
    assert_eq!(header("x-ratelimit-remaining").as_deref(), Some("0"));
    expect_error(response, 429, "general_rate_limit_exceeded").await;
    assert_eq!(sim.sessions(PROJECT, "u1").unwrap(), vec!["s1", "s2"]);

    assert_eq!(
        delete_all(&sim, "u1", FULL_KEY).await.status(),
        StatusCode::NO_CONTENT
    );
    sim.stop().await;
}

#[tokio::test]
async fn slow_fault_trips_client_timeout() {
    let sim = seeded().await;
    sim.push_faults([Fault::Slow { delay_ms: 5_000 }]);
    let impatient = Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let url = format!("{}/users/u1/sessions", sim.endpoint());
    let error = impatient
        .get(&url)
        .header("X-Appwrite-Project", PROJECT)
        .header("X-Appwrite-Key", FULL_KEY)
        .send()
        .await
        .unwrap_err();
    assert!(error.is_timeout(), "{error}");

    // The next request is not delayed.
    let response = impatient
        .get(&url)
        .header("X-Appwrite-Project", PROJECT)
        .header("X-Appwrite-Key", FULL_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // `stop` could wait for the delayed request, so the simulator is dropped, which stops it
    // without waiting.
    drop(sim);
}

#[tokio::test]
async fn slow_fault_then_normal_answer() {
    let sim = seeded().await;
    sim.push_faults([Fault::Slow { delay_ms: 300 }]);
    let started = Instant::now();
    let response = delete_one(&sim, "u1", "s1", FULL_KEY).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(sim.sessions(PROJECT, "u1").unwrap(), vec!["s2"]);
    assert_eq!(sim.requests()[0].status, 204);
    sim.stop().await;
}

#[tokio::test]
async fn drop_fault_closes_connection() {
    let sim = seeded().await;
    sim.push_faults([Fault::Drop]);
    let shared_client = client();
    let url = format!("{}/users/u1/sessions", sim.endpoint());
    let error = shared_client
        .delete(&url)
        .header("X-Appwrite-Project", PROJECT)
        .header("X-Appwrite-Key", FULL_KEY)
        .send()
        .await
        .unwrap_err();
    assert!(!error.is_timeout(), "{error}");
    assert!(error.is_request() || error.is_connect(), "{error:?}");

    // The dropped request changed nothing and is recorded with status 0.
    assert_eq!(sim.sessions(PROJECT, "u1").unwrap(), vec!["s1", "s2"]);
    let recorded = sim.requests();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].method, "DELETE");
    assert_eq!(recorded[0].status, 0);

    let response = shared_client
        .delete(&url)
        .header("X-Appwrite-Project", PROJECT)
        .header("X-Appwrite-Key", FULL_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(sim.requests()[1].status, 204);
    sim.stop().await;
}

#[tokio::test]
async fn faults_apply_in_order() {
    let sim = seeded().await;
    sim.push_faults([
        Fault::Status {
            status: 500,
            error_type: "general_unknown".to_owned(),
            json: true,
        },
        Fault::RateLimited {
            retry_after_secs: 1,
        },
    ]);
    expect_error(list(&sim, "u1", FULL_KEY).await, 500, "general_unknown").await;
    expect_error(
        list(&sim, "u1", FULL_KEY).await,
        429,
        "general_rate_limit_exceeded",
    )
    .await;
    assert_eq!(list(&sim, "u1", FULL_KEY).await.status(), StatusCode::OK);
    let statuses: Vec<u16> = sim.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![500, 429, 200]);
    sim.stop().await;
}

#[tokio::test]
async fn faults_skip_paths_without_v1() {
    let sim = seeded().await;
    sim.push_faults([Fault::Status {
        status: 500,
        error_type: "general_server_error".to_owned(),
        json: true,
    }]);
    let url = format!("http://{}/console", sim.addr());
    let response = client().get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    expect_error(
        list(&sim, "u1", FULL_KEY).await,
        500,
        "general_server_error",
    )
    .await;
    sim.stop().await;
}

#[test]
fn fault_serde_uses_kind_tag() {
    let fault = Fault::RateLimited {
        retry_after_secs: 3,
    };
    let text = serde_json::to_string(&fault).unwrap();
    assert_eq!(text, r#"{"kind":"rate_limited","retry_after_secs":3}"#);
    let parsed: Fault = serde_json::from_str(r#"{"kind":"drop"}"#).unwrap();
    assert_eq!(parsed, Fault::Drop);
    let parsed: Fault = serde_json::from_str(r#"{"kind":"slow","delay_ms":10}"#).unwrap();
    assert_eq!(parsed, Fault::Slow { delay_ms: 10 });
}

// --- recording ---

#[tokio::test]
async fn requests_are_recorded() {
    let sim = seeded().await;
    let path = "/users/u1/status?x=1";
    let body = serde_json::json!({"status": false});
    call(
        &sim,
        Method::PATCH,
        path,
        Some(PROJECT),
        Some(FULL_KEY),
        Some(body),
    )
    .await;
    list(&sim, "u2", "wrong").await;

    let recorded = sim.requests();
    assert_eq!(recorded.len(), 2);
    let first: &RecordedRequest = &recorded[0];
    assert_eq!(first.method, "PATCH");
    assert_eq!(first.path, "/v1/users/u1/status");
    assert_eq!(first.query, "x=1");
    assert_eq!(first.header("X-Appwrite-Project"), Some(PROJECT));
    assert_eq!(first.header("x-appwrite-key"), Some(FULL_KEY));
    assert_eq!(first.header("content-type"), Some("application/json"));
    assert!(first.headers.keys().all(|k| k == &k.to_ascii_lowercase()));
    let sent: Value = serde_json::from_str(&first.body).unwrap();
    assert_eq!(sent, serde_json::json!({"status": false}));
    assert_eq!(first.status, 200);
    assert!(first.at_ms > 1_700_000_000_000, "{}", first.at_ms);

    let second = &recorded[1];
    assert_eq!(second.method, "GET");
    assert_eq!(second.path, "/v1/users/u2/sessions");
    assert_eq!(second.status, 401);
    assert!(second.at_ms >= first.at_ms);

    sim.clear_requests();
    assert!(sim.requests().is_empty());
    list(&sim, "u1", FULL_KEY).await;
    assert_eq!(sim.requests().len(), 1);
    sim.stop().await;
}

// --- raw connections ---

/// Reads one HTTP/1.1 response with a Content-Length (or none, for 204) from `stream`.
/// Returns the status line and body, or None on EOF before a full head.
async fn read_response(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(position) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break position + 4;
        }
        assert!(buffer.len() < 64 * 1024, "response head too large");
        let read = tokio::time::timeout(REQUEST_TIMEOUT, stream.read(&mut chunk))
            .await
            .expect("read timed out")
            .ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let status_line = head.lines().next().unwrap_or_default().to_owned();
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = buffer[head_end..].to_vec();
    while body.len() < length {
        let read = tokio::time::timeout(REQUEST_TIMEOUT, stream.read(&mut chunk))
            .await
            .expect("read timed out")
            .ok()?;
        if read == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..read]);
    }
    Some((status_line, body))
}

fn raw_list_request(host: SocketAddr) -> String {
    format!(
        "GET /v1/users/u1/sessions HTTP/1.1\r\nHost: {host}\r\nX-Appwrite-Project: {PROJECT}\r\n\
         X-Appwrite-Key: {FULL_KEY}\r\n\r\n"
    )
}

#[tokio::test]
async fn keep_alive_then_drop_on_same_connection() {
    let sim = seeded().await;
    let mut stream = TcpStream::connect(sim.addr()).await.unwrap();
    let request = raw_list_request(sim.addr());

    for _ in 0..2 {
        stream.write_all(request.as_bytes()).await.unwrap();
        let (status_line, body) = read_response(&mut stream).await.expect("response");
        assert!(status_line.contains(" 200 "), "{status_line}");
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["total"], 2);
    }

    sim.push_faults([Fault::Drop]);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(REQUEST_TIMEOUT, stream.read_to_end(&mut rest))
        .await
        .expect("connection was not closed");
    // Either a clean EOF or a reset, but never response bytes.
    if read.is_ok() {
        assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    }

    let statuses: Vec<u16> = sim.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![200, 200, 0]);
    sim.stop().await;
}

#[tokio::test]
async fn stop_closes_listener() {
    let sim = seeded().await;
    let addr = sim.addr();
    assert_eq!(list(&sim, "u1", FULL_KEY).await.status(), StatusCode::OK);
    sim.stop().await;
    assert!(TcpStream::connect(addr).await.is_err());
}
