//! Sends traffic through every request path, successes and errors alike,
//! and checks that no secret, API key, signature or password hash appears in
//! the captured logs or in any response body.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use revokd::senders::{appwrite_signature, standard_webhooks_signature};
use revokd::simulator::Fault;
use revokd::telemetry::{init_with_writer, LogFormat};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const PASSWORD_HASH: &str = "$argon2id$v=19$m=7168,t=5,p=1$c2FsdHNhbHRzYWx0$Zm9vYmFy";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_logs_or_responses() {
    let captured = Captured::default();
    let writer = captured.clone();
    init_with_writer(LogFormat::Json, "trace", move || writer.clone());

    let app = spawn_app().await;
    let events = sample_events("appwrite-password-updated.body");
    let mut signatures = vec![appwrite_signature(
        APPWRITE_SECRET,
        &app.signed_url,
        PASSWORD_UPDATED,
    )];
    let mut bodies = Vec::new();
    let mut keep = |text: String| bodies.push(text);

    // A delivery that fails twice (retry path), then succeeds.
    app.simulator.push_faults([
        Fault::Status {
            status: 503,
            error_type: "general_server_error".into(),
            json: true,
        },
        Fault::RateLimited {
            retry_after_secs: 0,
        },
    ]);
    keep(
        app.post_appwrite(&events, PASSWORD_UPDATED)
            .await
            .text()
            .await
            .unwrap(),
    );
    app.settle().await;

    // A Standard Webhooks event whose Appwrite call is rejected (dead job).
    app.simulator.push_faults([Fault::Status {
        status: 401,
        error_type: "user_unauthorized".into(),
        json: true,
    }]);
    let timestamp = revokd::delivery::now_millis() / 1000;
    signatures.push(standard_webhooks_signature(
        CLERK_SECRET,
        "msg_secret_check",
        timestamp,
        CLERK_USER_BANNED,
    ));
    keep(
        app.post_clerk("msg_secret_check", CLERK_USER_BANNED)
            .await
            .text()
            .await
            .unwrap(),
    );
    app.settle().await;

    // Rejections: forged, stale, malformed, mismatched header, wrong type, unknown source.
    let forged = "bm90LXRoZS1yaWdodC1zaWduYXR1cmU=";
    signatures.push(forged.to_string());
    let response = app
        .http
        .post(&app.signed_url)
        .header("X-Appwrite-Webhook-Events", &events)
        .header("X-Appwrite-Webhook-Signature", forged)
        .body(PASSWORD_UPDATED.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    keep(response.text().await.unwrap());

    let stale = app
        .post_clerk_at("msg_stale_secret", timestamp - 3600, CLERK_USER_BANNED)
        .await;
    assert_eq!(stale.status(), 401);
    keep(stale.text().await.unwrap());

    let garbage = br#"{"password":"$argon2id$v=19$m=7168,t=5,p=1$c2FsdHNhbHRzYWx0$Zm9vYmFy", oops"#;
    let malformed = app.post_appwrite(&events, garbage).await;
    assert_eq!(malformed.status(), 400);
    keep(malformed.text().await.unwrap());

    let mismatch = app
        .post_appwrite(&events.replace(USER, "someoneelse"), PASSWORD_UPDATED)
        .await;
    assert_eq!(mismatch.status(), 401);
    keep(mismatch.text().await.unwrap());

    let wrong_type = app
        .http
        .post(&app.signed_url)
        .header("Content-Type", "text/plain")
        .body(PASSWORD_UPDATED.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_type.status(), 415);
    keep(wrong_type.text().await.unwrap());

    let unknown = app
        .http
        .post(format!("{}/hooks/unknown", app.base))
        .body(PASSWORD_UPDATED.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    keep(unknown.text().await.unwrap());

    app.stop().await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("\"message\":\"outcome\""),
        "outcome lines were captured"
    );
    assert!(logs.contains("bad signature"), "rejections were captured");
    let escaped_hash = PASSWORD_HASH.replace('/', "\\/");
    let mut secrets: Vec<&str> = vec![
        API_KEY,
        APPWRITE_SECRET,
        CLERK_SECRET,
        PASSWORD_HASH,
        &escaped_hash,
    ];
    let bare_clerk = CLERK_SECRET.trim_start_matches("whsec_");
    secrets.push(bare_clerk);
    for signature in &signatures {
        secrets.push(signature.as_str());
        secrets.push(signature.trim_start_matches("v1,"));
    }
    for secret in &secrets {
        assert!(!logs.contains(secret), "logs contain a secret: {secret}");
        for body in &bodies {
            assert!(
                !body.contains(secret),
                "a response body contains a secret: {secret}"
            );
        }
    }
}
