//! `revokd check`, run as a binary: config validation and the `--targets`
//! probe against the Appwrite simulator.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use revokd::simulator::{Simulator, WebhookState};

const SIGNED_URL: &str = "https://hooks.example.com/hooks/appwrite";

fn run_check(config: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_revokd"))
        .arg("check")
        .arg("--config")
        .arg(config)
        .args(extra)
        .env("TEST_API_KEY", API_KEY)
        .env("TEST_APPWRITE_SECRET", APPWRITE_SECRET)
        .env("TEST_CLERK_SECRET", CLERK_SECRET)
        .output()
        .expect("cannot run revokd")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn write_config(dir: &Path, endpoint: &str) -> std::path::PathBuf {
    let text = config_text(
        &dir.join("revokd.db").display().to_string(),
        endpoint,
        SIGNED_URL,
        DEFAULT_RULES,
    );
    let path = dir.join("revokd.toml");
    std::fs::write(&path, text).unwrap();
    path
}

async fn simulator_with(scopes: &[&str]) -> Simulator {
    let simulator = Simulator::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    simulator.add_project(PROJECT);
    simulator.add_key(PROJECT, API_KEY, scopes);
    simulator
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_prints_rules_as_understood() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "http://127.0.0.1:9/v1");
    let output = run_check(&config, &[]);
    assert!(output.status.success(), "{output:?}");
    let text = stdout(&output);
    assert!(text.contains("config is valid"), "{text}");
    assert!(
        text.contains("logout-on-block: on appwrite events users.*.update.status when /status = false, take the user id from /$id, delete_sessions on main"),
        "{text}"
    );
    assert!(text.contains("block-on-ban"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_rejects_a_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "http://127.0.0.1:9/v1");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("target = \"main\"", "target = \"nope\"");
    std::fs::write(&config, text).unwrap();
    let output = run_check(&config, &[]);
    assert_eq!(output.status.code(), Some(1));
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("no target named `nope`"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_probe_reports_scopes_and_webhooks() {
    let simulator = simulator_with(&["users.read", "users.write", "webhooks.read"]).await;
    simulator.put_webhook(
        PROJECT,
        WebhookState {
            id: "hook1".into(),
            name: "revokd".into(),
            url: SIGNED_URL.into(),
            enabled: true,
            attempts: 0,
            logs: String::new(),
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &simulator.endpoint());
    let healthy = run_check(&config, &["--targets"]);
    let text = stdout(&healthy);
    assert!(healthy.status.success(), "{text}");
    assert!(text.contains("users.read (list sessions): ok"), "{text}");
    assert!(text.contains("users.write (delete sessions): ok"), "{text}");
    assert!(text.contains("users.write (update status): ok"), "{text}");
    assert!(text.contains("webhook hook1 (revokd): ok"), "{text}");

    simulator.put_webhook(
        PROJECT,
        WebhookState {
            id: "hook1".into(),
            name: "revokd".into(),
            url: SIGNED_URL.into(),
            enabled: false,
            attempts: 10,
            logs: "HTTP 503".into(),
        },
    );
    let disabled = run_check(&config, &["--targets"]);
    assert_eq!(disabled.status.code(), Some(1));
    assert!(
        stdout(&disabled).contains("webhook hook1 (revokd): DISABLED after 10 failed deliveries")
    );

    simulator.put_webhook(
        PROJECT,
        WebhookState {
            id: "hook1".into(),
            name: "revokd".into(),
            url: SIGNED_URL.into(),
            enabled: true,
            attempts: 3,
            logs: "HTTP 503\nmore".into(),
        },
    );
    let failing = run_check(&config, &["--targets"]);
    assert_eq!(failing.status.code(), Some(1));
    assert!(stdout(&failing).contains("FAILING, 3 failed deliveries in a row"));

    // No probe call may change anything: the random user never exists.
    for call in simulator.requests() {
        assert!(call.status == 404 || call.status == 200, "{call:?}");
    }
    simulator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_probe_names_missing_scope_and_bad_endpoint() {
    let simulator = simulator_with(&["users.read"]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &simulator.endpoint());
    let output = run_check(&config, &["--targets"]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    assert!(text.contains("users.read (list sessions): ok"), "{text}");
    assert!(
        text.contains("users.write (delete sessions): MISSING SCOPE"),
        "{text}"
    );
    assert!(text.contains("webhooks: not checked"), "{text}");

    let without_v1 = simulator.endpoint().trim_end_matches("/v1").to_string();
    let config = write_config(dir.path(), &without_v1);
    let output = run_check(&config, &[]);
    assert_eq!(output.status.code(), Some(1));
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("targets.main.endpoint"), "{error}");
    assert!(error.contains("does not end in /v1"), "{error}");

    // An endpoint that ends in /v1 but is not Appwrite's API.
    let elsewhere = format!("{without_v1}/api/v1");
    let config = write_config(dir.path(), &elsewhere);
    let output = run_check(&config, &["--targets"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output).contains("does it end in /v1?"),
        "{}",
        stdout(&output)
    );

    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(API_KEY, "x");
    std::fs::write(&config, text).unwrap();
    let config = write_config(dir.path(), &simulator.endpoint());
    let output = Command::new(env!("CARGO_BIN_EXE_revokd"))
        .args(["check", "--targets", "--config"])
        .arg(&config)
        .env("TEST_API_KEY", "wrong-key")
        .env("TEST_APPWRITE_SECRET", APPWRITE_SECRET)
        .env("TEST_CLERK_SECRET", CLERK_SECRET)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output).contains("KEY REJECTED (user_unauthorized)"),
        "{}",
        stdout(&output)
    );
    assert!(
        stdout(&output).contains("check targets.main.api_key"),
        "{}",
        stdout(&output)
    );
    simulator.stop().await;
}
