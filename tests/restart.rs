//! Runs the real `revokd` binary: a job acknowledged before the process is
//! killed is delivered by the next process on the same store, and no secret
//! reaches the logs.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use revokd::simulator::{Fault, Simulator};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_revokd(config: &Path, log: &Path) -> Child {
    let log_file = std::fs::File::create(log).unwrap();
    Command::new(env!("CARGO_BIN_EXE_revokd"))
        .args(["--log-format", "json", "serve", "--config"])
        .arg(config)
        .env("TEST_API_KEY", API_KEY)
        .env("TEST_APPWRITE_SECRET", APPWRITE_SECRET)
        .env("TEST_CLERK_SECRET", CLERK_SECRET)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::from(log_file.try_clone().unwrap()))
        .stderr(Stdio::from(log_file))
        .spawn()
        .expect("cannot start revokd")
}

async fn wait_ready(http: &reqwest::Client, base: &str) {
    wait_for(
        "revokd to answer /readyz",
        Duration::from_secs(20),
        || async {
            let response = http.get(format!("{base}/readyz")).send().await.ok()?;
            (response.status() == 200).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_process_job_is_delivered_after_restart() {
    let simulator = Simulator::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    simulator.add_project(PROJECT);
    simulator.add_key(PROJECT, API_KEY, &["users.read", "users.write"]);
    simulator.add_user(PROJECT, USER, "jane.doe@example.com");
    simulator.add_session(PROJECT, USER, "sessa");
    // The first call hangs, so the job is claimed and in flight when the
    // process dies.
    simulator.push_faults([Fault::Slow { delay_ms: 20_000 }]);

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let signed_url = format!("{base}/hooks/appwrite");
    let text = config_text(
        &dir.path().join("revokd.db").display().to_string(),
        &simulator.endpoint(),
        &signed_url,
        DEFAULT_RULES,
    )
    .replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    );
    let config = dir.path().join("revokd.toml");
    std::fs::write(&config, text).unwrap();

    let first_log = dir.path().join("first.log");
    let mut first = start_revokd(&config, &first_log);
    let http = reqwest::Client::new();
    wait_ready(&http, &base).await;

    let app = Sender {
        http: http.clone(),
        base: base.clone(),
        signed_url,
    };
    let accepted = app.post_password_update().await;
    assert_eq!(accepted.status(), 200);
    wait_for(
        "the call to reach Appwrite",
        Duration::from_secs(10),
        || async { (!simulator.requests().is_empty()).then_some(()) },
    )
    .await;
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(simulator.sessions(PROJECT, USER).unwrap().len(), 1);

    let second_log = dir.path().join("second.log");
    let mut second = start_revokd(&config, &second_log);
    wait_ready(&http, &base).await;
    wait_for(
        "the job to be delivered again",
        Duration::from_secs(20),
        || async {
            simulator
                .sessions(PROJECT, USER)
                .unwrap()
                .is_empty()
                .then_some(())
        },
    )
    .await;
    let delivered: Vec<u16> = simulator.requests().iter().map(|r| r.status).collect();
    assert_eq!(delivered.last(), Some(&204), "{delivered:?}");

    // A bad signature is rejected by the restarted process too.
    let forged = http
        .post(format!("{base}/hooks/appwrite"))
        .header(
            "X-Appwrite-Webhook-Events",
            sample_events("appwrite-password-updated.body"),
        )
        .header(
            "X-Appwrite-Webhook-Signature",
            "c2lnbmF0dXJlLWd1ZXNzLTEyMzQ1Ng==",
        )
        .body(PASSWORD_UPDATED.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);

    // SIGTERM: a clean stop, exit code 0.
    let pid = second.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let exit = second.wait().unwrap();
    assert!(exit.success(), "revokd exited with {exit:?}");
    simulator.stop().await;

    let logs = std::fs::read_to_string(&first_log).unwrap()
        + &std::fs::read_to_string(&second_log).unwrap();
    let outcome_lines: Vec<&str> = logs
        .lines()
        .filter(|line| line.contains("\"message\":\"outcome\""))
        .collect();
    assert_eq!(outcome_lines.len(), 1, "one outcome line per job:\n{logs}");
    let outcome: serde_json::Value = serde_json::from_str(outcome_lines[0]).unwrap();
    assert_eq!(outcome["success"], true);
    assert_eq!(outcome["action"], "delete_sessions");
    assert_eq!(outcome["user_id"], USER);
    assert_eq!(outcome["rule"], "logout-on-password-change");
    assert_eq!(
        outcome["event_type"],
        format!("users.{USER}.update.password")
    );
    assert!(
        logs.contains("\"reason\":\"bad signature\""),
        "rejection logged:\n{logs}"
    );

    let signature =
        revokd::senders::appwrite_signature(APPWRITE_SECRET, &app.signed_url, PASSWORD_UPDATED);
    let password_hash = "$argon2id$v=19$m=7168,t=5,p=1$c2FsdHNhbHRzYWx0";
    for secret in [
        API_KEY,
        APPWRITE_SECRET,
        CLERK_SECRET,
        signature.as_str(),
        password_hash,
        "c2lnbmF0dXJlLWd1ZXNzLTEyMzQ1Ng==",
    ] {
        assert!(
            !logs.contains(secret),
            "a secret reached the logs: {secret}"
        );
    }
}

struct Sender {
    http: reqwest::Client,
    base: String,
    signed_url: String,
}

impl Sender {
    async fn post_password_update(&self) -> reqwest::Response {
        let signature = revokd::senders::appwrite_signature(
            APPWRITE_SECRET,
            &self.signed_url,
            PASSWORD_UPDATED,
        );
        self.http
            .post(format!("{}/hooks/appwrite", self.base))
            .header("Content-Type", "application/json")
            .header(
                "X-Appwrite-Webhook-Events",
                sample_events("appwrite-password-updated.body"),
            )
            .header("X-Appwrite-Webhook-Signature", signature)
            .body(PASSWORD_UPDATED.to_vec())
            .send()
            .await
            .unwrap()
    }
}
