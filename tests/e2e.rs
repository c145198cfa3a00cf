//! End-to-end tests: the real HTTP server, a real SQLite file and the
//! Appwrite simulator, driven over HTTP.

mod common;

use common::*;
use revokd::senders::appwrite_signature;
use revokd::simulator::Fault;

fn only_call(app: &TestApp) -> revokd::simulator::RecordedRequest {
    let calls = app.calls();
    assert_eq!(calls.len(), 1, "expected one Appwrite call, got {calls:?}");
    calls.into_iter().next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_update_deletes_all_sessions() {
    let app = spawn_app().await;
    assert_eq!(app.sessions().len(), 3);

    let answer = counts(
        app.post_appwrite(
            &sample_events("appwrite-password-updated.body"),
            PASSWORD_UPDATED,
        )
        .await,
    )
    .await;
    assert_eq!(answer["accepted"], 1);
    assert_eq!(answer["duplicates"], 0);
    assert_eq!(answer["ignored"], 0);

    let settled = app.settle().await;
    assert_eq!(settled.done, 1);
    assert!(app.sessions().is_empty());
    let call = only_call(&app);
    assert_eq!(call.method, "DELETE");
    assert_eq!(call.path, format!("/v1/users/{USER}/sessions"));
    assert_eq!(call.header("x-appwrite-project"), Some(PROJECT));
    assert_eq!(call.header("x-appwrite-key"), Some(API_KEY));
    assert_eq!(call.status, 204);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_token_uses_user_id_field() {
    let app = spawn_app().await;
    let answer = counts(
        app.post_appwrite(
            &sample_events("appwrite-recovery-completed.body"),
            RECOVERY_COMPLETED,
        )
        .await,
    )
    .await;
    assert_eq!(answer["accepted"], 1);
    app.settle().await;
    assert_eq!(only_call(&app).path, format!("/v1/users/{USER}/sessions"));
    assert!(app.sessions().is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clerk_ban_blocks_then_deletes_sessions() {
    let app = spawn_app().await;
    let answer = counts(app.post_clerk("msg_ban_1", CLERK_USER_BANNED).await).await;
    assert_eq!(answer["accepted"], 1);
    app.settle().await;

    let calls = app.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0].method, "PATCH");
    assert_eq!(calls[0].path, format!("/v1/users/{USER}/status"));
    let body: serde_json::Value = serde_json::from_str(&calls[0].body).unwrap();
    assert_eq!(body, serde_json::json!({"status": false}));
    assert_eq!(calls[1].method, "DELETE");
    assert_eq!(calls[1].path, format!("/v1/users/{USER}/sessions"));
    assert_eq!(app.simulator.user_status(PROJECT, USER), Some(false));
    assert!(app.sessions().is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_block_echo_is_ignored() {
    let app = spawn_app().await;
    counts(app.post_clerk("msg_ban_echo", CLERK_USER_BANNED).await).await;
    app.settle().await;
    app.simulator.clear_requests();

    // Appwrite's webhook for the block revokd just made.
    let answer = counts(
        app.post_appwrite(&sample_events("appwrite-user-blocked.body"), USER_BLOCKED)
            .await,
    )
    .await;
    assert_eq!(answer["ignored"], 1);
    assert_eq!(answer["accepted"], 0);
    // The delete-all-sessions echo is never acted on either.
    let echo = format!(
        "users.{USER}.sessions,users.*.sessions,users.{USER}.sessions.delete,users.*.sessions.delete,users.{USER},users.*"
    );
    let answer = counts(app.post_appwrite(&echo, PASSWORD_UPDATED).await).await;
    assert_eq!(answer["ignored"], 1);
    app.settle().await;
    assert!(app.calls().is_empty(), "{:?}", app.calls());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_user_from_appwrite_loses_sessions() {
    let app = spawn_app().await;
    let answer = counts(
        app.post_appwrite(&sample_events("appwrite-user-blocked.body"), USER_BLOCKED)
            .await,
    )
    .await;
    assert_eq!(answer["accepted"], 1);
    app.settle().await;
    assert!(app.sessions().is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_delivery_twice_makes_one_job() {
    let app = spawn_app().await;
    let events = sample_events("appwrite-password-updated.body");
    let first = counts(app.post_appwrite(&events, PASSWORD_UPDATED).await).await;
    let second = counts(app.post_appwrite(&events, PASSWORD_UPDATED).await).await;
    assert_eq!(first["accepted"], 1);
    assert_eq!(second["duplicates"], 1);
    assert_eq!(second["accepted"], 0);

    let clerk_first = counts(app.post_clerk("msg_same", CLERK_USER_BANNED).await).await;
    let clerk_again = counts(app.post_clerk("msg_same", CLERK_USER_BANNED).await).await;
    assert_eq!(clerk_first["accepted"], 1);
    assert_eq!(clerk_again["duplicates"], 1);

    let settled = app.settle().await;
    assert_eq!(settled.done, 2);
    assert_eq!(app.calls().len(), 3, "{:?}", app.calls());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_without_matching_rule_is_ignored() {
    let app = spawn_app().await;
    let events = format!("users.{USER}.update.email,users.*.update.email,users.{USER},users.*");
    let answer = counts(app.post_appwrite(&events, PASSWORD_UPDATED).await).await;
    assert_eq!(answer["ignored"], 1);
    let unbanned =
        br#"{"type":"user.updated","data":{"banned":false,"external_id":"6650c1f2a7b3e9d4c021"}}"#;
    let answer = counts(app.post_clerk("msg_unbanned", unbanned).await).await;
    assert_eq!(answer["ignored"], 1);
    // MFA removal sends `[]`: accepted and ignored, never a 4xx.
    let mfa = format!("users.{USER}.delete,users.*.delete,users.{USER}.delete.mfa,users.*.delete.mfa,users.{USER},users.*");
    let answer = counts(app.post_appwrite(&mfa, b"[]").await).await;
    assert_eq!(answer["ignored"], 1);
    app.settle().await;
    assert!(app.calls().is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_until_success() {
    let app = spawn_app().await;
    app.simulator.push_faults([
        Fault::Status {
            status: 503,
            error_type: "general_server_error".into(),
            json: true,
        },
        Fault::Status {
            status: 502,
            error_type: String::new(),
            json: false,
        },
    ]);
    counts(
        app.post_appwrite(
            &sample_events("appwrite-password-updated.body"),
            PASSWORD_UPDATED,
        )
        .await,
    )
    .await;
    let settled = app.settle().await;
    assert_eq!(settled.done, 1);
    assert_eq!(settled.dead, 0);
    let statuses: Vec<u16> = app.calls().iter().map(|call| call.status).collect();
    assert_eq!(statuses, vec![503, 502, 204]);
    assert!(app.sessions().is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_scope_is_dead_at_once() {
    let app = spawn_app_with(DEFAULT_RULES, &["users.read"]).await;
    let answer = counts(
        app.post_appwrite(
            &sample_events("appwrite-password-updated.body"),
            PASSWORD_UPDATED,
        )
        .await,
    )
    .await;
    assert_eq!(answer["accepted"], 1);
    let settled = app.settle().await;
    assert_eq!(settled.dead, 1);
    let call = only_call(&app);
    assert_eq!(call.status, 401);
    assert_eq!(app.sessions().len(), 3);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_user_counts_as_revoked() {
    let app = spawn_app().await;
    let other = "6650c1f2a7b3e9d4c099";
    let body = format!(r#"{{"$id":"{other}","status":true}}"#);
    let events = format!("users.{other}.update.password,users.*.update.password");
    counts(app.post_appwrite(&events, body.as_bytes()).await).await;
    let settled = app.settle().await;
    assert_eq!(settled.done, 1);
    assert_eq!(only_call(&app).status, 404);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_user_id_makes_no_call() {
    let app = spawn_app().await;
    let body =
        br#"{"type":"user.updated","data":{"banned":true,"external_id":"../../v1/projects"}}"#;
    let answer = counts(app.post_clerk("msg_bad_id", body).await).await;
    assert_eq!(answer["accepted"], 1);
    let settled = app.settle().await;
    assert_eq!(settled.dead, 1);
    assert!(app.calls().is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_codes_for_bad_requests() {
    let app = spawn_app().await;
    let events = sample_events("appwrite-password-updated.body");
    let post = |path: &str| app.http.post(format!("{}{path}", app.base));

    let unknown = post("/hooks/nope").body("{}").send().await.unwrap();
    assert_eq!(unknown.status(), 404);

    let unsigned = post("/hooks/appwrite")
        .header("X-Appwrite-Webhook-Events", &events)
        .header(
            "X-Appwrite-Webhook-Signature",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        )
        .body(PASSWORD_UPDATED.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);

    let empty_signed = app.post_appwrite(&events, b"").await;
    assert_eq!(empty_signed.status(), 400);
    let empty_unsigned = post("/hooks/appwrite")
        .header("X-Appwrite-Webhook-Events", &events)
        .send()
        .await
        .unwrap();
    assert_eq!(empty_unsigned.status(), 401);

    let not_json = app.post_appwrite(&events, b"{not json").await;
    assert_eq!(not_json.status(), 400);

    let other_user = events.replace(USER, "6650c1f2a7b3e9d4c099");
    let mismatch = app.post_appwrite(&other_user, PASSWORD_UPDATED).await;
    assert_eq!(mismatch.status(), 401);

    let too_big = vec![b' '; 70_000];
    let oversize = app.post_appwrite(&events, &too_big).await;
    assert_eq!(oversize.status(), 413);

    let signature = appwrite_signature(APPWRITE_SECRET, &app.signed_url, PASSWORD_UPDATED);
    let text = post("/hooks/appwrite")
        .header("Content-Type", "text/plain")
        .header("X-Appwrite-Webhook-Events", &events)
        .header("X-Appwrite-Webhook-Signature", &signature)
        .body(PASSWORD_UPDATED.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(text.status(), 415);

    let charset = post("/hooks/appwrite")
        .header("Content-Type", "application/json; charset=utf-8")
        .header("X-Appwrite-Webhook-Events", &events)
        .header("X-Appwrite-Webhook-Signature", &signature)
        .body(PASSWORD_UPDATED.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(charset.status(), 200);

    let stale = app
        .post_clerk_at(
            "msg_stale",
            revokd::delivery::now_millis() / 1000 - 301,
            CLERK_USER_BANNED,
        )
        .await;
    assert_eq!(stale.status(), 401);
    let no_type = app.post_clerk("msg_no_type", br#"{"data":{}}"#).await;
    assert_eq!(no_type.status(), 400);

    let health = app
        .http
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready = app
        .http
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let wrong_method = app
        .http
        .get(format!("{}/hooks/appwrite", app.base))
        .send()
        .await
        .unwrap();
    assert!(
        wrong_method.status().is_client_error(),
        "{}",
        wrong_method.status()
    );

    // Only the one correctly signed, well-formed request made a job.
    let settled = app.settle().await;
    assert_eq!(settled.done, 1);
    assert_eq!(settled.dead, 0);
    assert_eq!(app.calls().len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_and_single_session_actions() {
    let rules = r#"
[[rules]]
name = "end-one-session"
source = "clerk"
event = "session.revoked"
user = { id = "/data/user_id" }
session = "/data/id"
action = "delete_session"
target = "main"

[[rules]]
name = "unblock"
source = "clerk"
event = "user.unbanned"
user = { id = "/data/user_id" }
action = "unblock_user"
target = "main"

[[rules]]
name = "rehearse"
source = "clerk"
event = "user.deleted"
user = { id = "/data/user_id" }
action = "delete_sessions"
target = "main"
dry_run = true
"#;
    let app = spawn_app_with(rules, &["users.read", "users.write"]).await;
    let revoke =
        format!(r#"{{"type":"session.revoked","data":{{"user_id":"{USER}","id":"sessb"}}}}"#);
    counts(app.post_clerk("msg_one", revoke.as_bytes()).await).await;
    let missing =
        format!(r#"{{"type":"session.revoked","data":{{"user_id":"{USER}","id":"gone"}}}}"#);
    counts(app.post_clerk("msg_gone", missing.as_bytes()).await).await;
    let dry = format!(r#"{{"type":"user.deleted","data":{{"user_id":"{USER}"}}}}"#);
    counts(app.post_clerk("msg_dry", dry.as_bytes()).await).await;
    app.settle().await;

    let mut remaining = app.sessions();
    remaining.sort();
    assert_eq!(remaining, vec!["sessa".to_string(), "sessc".to_string()]);
    let calls: Vec<(String, String)> = app
        .calls()
        .into_iter()
        .map(|call| (call.method, call.path))
        .collect();
    let list = ("GET".to_string(), format!("/v1/users/{USER}/sessions"));
    let delete_one = (
        "DELETE".to_string(),
        format!("/v1/users/{USER}/sessions/sessb"),
    );
    assert_eq!(
        calls.iter().filter(|call| **call == list).count(),
        2,
        "{calls:?}"
    );
    assert_eq!(
        calls.iter().filter(|call| **call == delete_one).count(),
        1,
        "{calls:?}"
    );
    assert_eq!(calls.len(), 3, "the dry run made no call: {calls:?}");

    app.simulator.clear_requests();
    let unban = format!(r#"{{"type":"user.unbanned","data":{{"user_id":"{USER}"}}}}"#);
    counts(app.post_clerk("msg_unban", unban.as_bytes()).await).await;
    app.settle().await;
    let call = only_call(&app);
    assert_eq!(call.method, "PATCH");
    let body: serde_json::Value = serde_json::from_str(&call.body).unwrap();
    assert_eq!(body, serde_json::json!({"status": true}));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_is_retried() {
    let app = spawn_app().await;
    app.simulator.push_faults([Fault::RateLimited {
        retry_after_secs: 0,
    }]);
    let response = app
        .post_appwrite(
            &sample_events("appwrite-password-updated.body"),
            PASSWORD_UPDATED,
        )
        .await;
    assert_eq!(response.status(), 200);
    let settled = app.settle().await;
    assert_eq!(settled.done, 1);
    let statuses: Vec<u16> = app.calls().iter().map(|call| call.status).collect();
    assert_eq!(statuses, vec![429, 204]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_make_one_job() {
    let app = spawn_app().await;
    let events = sample_events("appwrite-password-updated.body");
    let mut sends = Vec::new();
    for _ in 0..10 {
        sends.push(app.post_appwrite(&events, PASSWORD_UPDATED));
    }
    let mut accepted = 0;
    let mut duplicates = 0;
    for response in futures_util::future::join_all(sends).await {
        let answer = counts(response).await;
        accepted += answer["accepted"];
        duplicates += answer["duplicates"];
    }
    assert_eq!(accepted, 1);
    assert_eq!(duplicates, 9);
    let settled = app.settle().await;
    assert_eq!(settled.done, 1);
    assert_eq!(app.calls().len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_ips_and_trusted_proxies() {
    let app = spawn_app_edited(DEFAULT_RULES, &["users.read", "users.write"], |text| {
        text.replace(
            "[server]\n",
            "[server]\ntrusted_proxies = [\"127.0.0.0/8\"]\n",
        )
        .replace(
            "[sources.clerk]\n",
            "[sources.clerk]\nallow_ips = [\"10.0.0.0/8\"]\n",
        )
    })
    .await;
    let body = CLERK_USER_BANNED;
    let send = |id: &'static str, forwarded: Option<&'static str>| {
        let timestamp = revokd::delivery::now_millis() / 1000;
        let signature =
            revokd::senders::standard_webhooks_signature(CLERK_SECRET, id, timestamp, body);
        let mut request = app
            .http
            .post(format!("{}/hooks/clerk", app.base))
            .header("Content-Type", "application/json")
            .header("svix-id", id)
            .header("svix-timestamp", timestamp.to_string())
            .header("svix-signature", signature)
            .body(body.to_vec());
        if let Some(forwarded) = forwarded {
            request = request.header("X-Forwarded-For", forwarded);
        }
        request.send()
    };
    // The peer is 127.0.0.1, a trusted proxy, so the client is taken from the header.
    assert_eq!(send("msg_direct", None).await.unwrap().status(), 403);
    assert_eq!(
        send("msg_inside", Some("10.1.2.3")).await.unwrap().status(),
        200
    );
    let spoofed = send("msg_spoofed", Some("10.1.2.3, 192.0.2.1"))
        .await
        .unwrap();
    assert_eq!(spoofed.status(), 403);
    let garbage = send("msg_garbage", Some("not-an-address")).await.unwrap();
    assert_eq!(garbage.status(), 403);
    // Sources without allow_ips take every address.
    let appwrite = app
        .post_appwrite(
            &sample_events("appwrite-password-updated.body"),
            PASSWORD_UPDATED,
        )
        .await;
    assert_eq!(appwrite.status(), 200);
    let settled = app.settle().await;
    assert_eq!(settled.done, 2);
    app.stop().await;
}

const LOOKUP_RULES: &str = r#"
[[rules]]
name = "by-email"
source = "clerk"
event = "user.updated"
user = { email = "/data/email_addresses/0/email_address" }
action = "delete_sessions"
target = "main"

[[rules]]
name = "by-identity"
source = "clerk"
event = "session.revoked"
user = { identity = "/data/user_id", provider = "oidc" }
action = "delete_sessions"
target = "main"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_found_by_email_and_identity() {
    let app = spawn_app_with(LOOKUP_RULES, &["users.read", "users.write"]).await;
    app.simulator
        .add_identity(PROJECT, USER, "oidc", "user_2a9XkQp4");

    counts(app.post_clerk("msg_email_1", CLERK_USER_BANNED).await).await;
    app.settle().await;
    let calls = app.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0].method, "GET");
    assert_eq!(calls[0].path, "/v1/users");
    let query = revokd_query(&calls[0].query);
    assert_eq!(
        query,
        r#"{"attribute":"email","method":"equal","values":["jane.doe@example.com"]}"#
    );
    assert_eq!(calls[1].path, format!("/v1/users/{USER}/sessions"));
    assert!(app.sessions().is_empty());

    // The second event for the same email reuses the lookup.
    counts(app.post_clerk("msg_email_2", CLERK_USER_BANNED).await).await;
    app.settle().await;
    assert_eq!(app.calls().len(), 3, "{:?}", app.calls());

    app.simulator.clear_requests();
    let revoked = br#"{"type":"session.revoked","data":{"id":"sess_1","user_id":"user_2a9XkQp4"}}"#;
    counts(app.post_clerk("msg_identity", revoked).await).await;
    let settled = app.settle().await;
    assert_eq!(settled.dead, 0);
    let calls = app.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0].path, "/v1/users/identities");
    assert!(calls[0].query.contains("providerUid"), "{}", calls[0].query);
    assert!(calls[0].query.contains("oidc"), "{}", calls[0].query);
    assert_eq!(calls[1].path, format!("/v1/users/{USER}/sessions"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_email_is_unresolved_not_retried() {
    let app = spawn_app_with(LOOKUP_RULES, &["users.read", "users.write"]).await;
    let body = br#"{"type":"user.updated","data":{"email_addresses":[{"email_address":"nobody@example.com"}]}}"#;
    counts(app.post_clerk("msg_nobody", body).await).await;
    let settled = app.settle().await;
    assert_eq!(settled.dead, 1);
    let calls = app.calls();
    assert_eq!(calls.len(), 1, "one lookup and no retry: {calls:?}");
    assert_eq!(calls[0].path, "/v1/users");
    assert_eq!(app.sessions().len(), 3);

    // An identity lookup of another provider finds nothing either.
    app.simulator
        .add_identity(PROJECT, USER, "github", "user_2a9XkQp4");
    let revoked = br#"{"type":"session.revoked","data":{"id":"sess_1","user_id":"user_2a9XkQp4"}}"#;
    counts(app.post_clerk("msg_other_provider", revoked).await).await;
    let settled = app.settle().await;
    assert_eq!(settled.dead, 2);
    assert_eq!(app.sessions().len(), 3);
    app.stop().await;
}

/// Decodes the first `queries[0]` value of a query string.
fn revokd_query(query: &str) -> String {
    let value = query
        .split('&')
        .find_map(|pair| {
            pair.strip_prefix("queries%5B0%5D=")
                .or_else(|| pair.strip_prefix("queries[0]="))
        })
        .expect("a queries[0] parameter");
    let plus_as_space = value.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_as_space)
        .decode_utf8()
        .unwrap()
        .into_owned()
}
