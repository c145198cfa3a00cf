//! Runs the real `revokd events` binary against the store of a running
//! in-process server: list, show and retry, then the server delivers the
//! retried jobs.

mod common;

use std::process::Output;
use std::time::Duration;

use common::*;
use revokd::delivery::now_millis;
use revokd::simulator::Fault;
use revokd::store::{JobState, Millis, NewEvent, NewJob, Store};
use serde_json::Value;

/// Runs `revokd` with `args` and the environment `env`, failing the test
/// after 30 seconds.
async fn run_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_revokd"));
    command
        .args(args)
        .env_remove("REVOKD_CONFIG")
        .env_remove("RUST_LOG")
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .expect("revokd did not exit within 30 s")
        .expect("cannot run revokd")
}

/// Runs `revokd events ARGS --store sqlite://<the app's store>`.
async fn events(app: &TestApp, args: &[&str]) -> Output {
    let store = store_url(app);
    let mut all = vec!["events"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--store", &store]);
    run_with_env(&all, &[]).await
}

fn store_url(app: &TestApp) -> String {
    format!("sqlite://{}", app.store().path().display())
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// Runs `revokd events ARGS --json`, checks it succeeded and parses stdout.
async fn events_json(app: &TestApp, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let output = events(app, &all).await;
    assert!(
        output.status.success(),
        "revokd events {args:?} failed: {}",
        stderr(&output)
    );
    serde_json::from_str(&stdout(&output)).expect("stdout is one JSON document")
}

fn event_ids(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a JSON array")
        .iter()
        .map(|event| event["id"].as_str().unwrap().to_owned())
        .collect()
}

fn fault(status: u16, error_type: &str) -> Fault {
    Fault::Status {
        status,
        error_type: error_type.into(),
        json: true,
    }
}

fn unauthorized() -> Fault {
    fault(401, "general_unauthorized_scope")
}

fn server_error() -> Fault {
    fault(503, "general_server_error")
}

/// Posts the password-updated webhook and returns the stored event's id.
async fn post_password_updated(app: &TestApp) -> String {
    post_and_find(app, "appwrite-password-updated.body", PASSWORD_UPDATED).await
}

/// Posts an Appwrite webhook and returns the id of the event it stored.
async fn post_and_find(app: &TestApp, events_name: &str, body: &[u8]) -> String {
    let before = app.store().list_events(Default::default()).await.unwrap();
    let response = app.post_appwrite(&sample_events(events_name), body).await;
    assert_eq!(counts(response).await["accepted"], 1);
    let after = app.store().list_events(Default::default()).await.unwrap();
    let new: Vec<String> = after
        .into_iter()
        .filter(|event| !before.iter().any(|old| old.id == event.id))
        .map(|event| event.id)
        .collect();
    assert_eq!(new.len(), 1, "expected one new event, got {new:?}");
    new[0].clone()
}

/// Waits until the store counts `done` done and `dead` dead jobs and no pending job.
async fn wait_for_counts(app: &TestApp, done: u64, dead: u64) {
    let store = app.store();
    wait_for(
        &format!("{done} done and {dead} dead jobs"),
        Duration::from_secs(15),
        || async {
            let counts = store.job_counts().await.unwrap();
            (counts.pending == 0 && counts.done == done && counts.dead == dead).then_some(())
        },
    )
    .await;
}

fn job(id: &str) -> NewJob {
    NewJob {
        id: id.to_owned(),
        rule: "logout-on-password-change".to_owned(),
        action: "delete_sessions".to_owned(),
        target: "main".to_owned(),
        user_kind: "id".to_owned(),
        user: USER.to_owned(),
        session_id: None,
        event_type: format!("users.{USER}.update.password"),
        dry_run: false,
    }
}

fn stored_event(id: &str, source: &str, received_at: Millis, jobs: Vec<NewJob>) -> NewEvent {
    NewEvent {
        id: id.to_owned(),
        source: source.to_owned(),
        delivery_key: format!("key-{id}"),
        types: vec!["user.updated".to_owned()],
        received_at,
        occurred_at: None,
        ignored_reason: jobs.is_empty().then(|| "no rule matched".to_owned()),
        jobs,
    }
}

/// Stores four events and returns their ids, newest first. The first is a
/// clerk event whose job is pending, due in an hour. Then come an Appwrite
/// event whose job is dead (401) and one whose job is done. The last is an
/// ignored event received an hour ago.
async fn seed(app: &TestApp) -> [String; 4] {
    let done = post_password_updated(app).await;
    wait_for_counts(app, 1, 0).await;

    app.simulator.push_faults([unauthorized()]);
    let dead = post_and_find(app, "appwrite-user-blocked.body", USER_BLOCKED).await;
    wait_for_counts(app, 1, 1).await;

    let now = now_millis();
    app.store()
        .ingest(vec![
            stored_event(
                "01PENDINGCLERKEVENT00000",
                "clerk",
                now + 3_600_000,
                vec![job("01PENDINGCLERKJOB0000000")],
            ),
            stored_event(
                "01IGNOREDEVENT0000000000",
                "appwrite",
                now - 3_600_000,
                vec![],
            ),
        ])
        .await
        .unwrap();
    [
        "01PENDINGCLERKEVENT00000".to_owned(),
        dead,
        done,
        "01IGNOREDEVENT0000000000".to_owned(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_json_has_every_event() {
    let app = spawn_app().await;
    let [pending, dead, done, ignored] = seed(&app).await;

    let list = events_json(&app, &["list"]).await;
    assert_eq!(event_ids(&list), [pending, dead, done, ignored]);

    let pending_event = &list[0];
    assert_eq!(pending_event["source"], "clerk");
    assert_eq!(
        pending_event["delivery_key"],
        "key-01PENDINGCLERKEVENT00000"
    );
    assert_eq!(pending_event["first_type"], "user.updated");
    assert_eq!(pending_event["type_count"], 1);
    assert_eq!(pending_event["jobs"]["pending"], 1);
    assert_eq!(pending_event["jobs"]["claimed"], 0);
    assert_eq!(pending_event["jobs"]["done"], 0);
    assert_eq!(pending_event["jobs"]["dead"], 0);

    let dead_event = &list[1];
    assert_eq!(dead_event["source"], "appwrite");
    assert_eq!(dead_event["jobs"]["dead"], 1);
    assert_eq!(dead_event["jobs"]["done"], 0);
    assert!(dead_event["received_at"].is_i64());
    assert!(dead_event["ignored_reason"].is_null());
    let blocked_types = sample_events("appwrite-user-blocked.body");
    let first_type = blocked_types.split(',').next().unwrap();
    assert_eq!(dead_event["first_type"], first_type);
    assert_eq!(dead_event["type_count"], blocked_types.split(',').count());

    assert_eq!(list[2]["jobs"]["done"], 1);
    assert_eq!(list[3]["ignored_reason"], "no rule matched");
    assert_eq!(list[3]["jobs"]["pending"], 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_by_state_source_since() {
    let app = spawn_app().await;
    let [pending, dead, done, ignored] = seed(&app).await;

    let cases: Vec<(Vec<String>, Vec<&String>)> = vec![
        (vec!["--state".into(), "dead".into()], vec![&dead]),
        (vec!["--state".into(), "pending".into()], vec![&pending]),
        (vec!["--state".into(), "done".into()], vec![&done]),
        (vec!["--source".into(), "clerk".into()], vec![&pending]),
        (
            vec!["--source".into(), "appwrite".into()],
            vec![&dead, &done, &ignored],
        ),
        (
            vec!["--since".into(), "30m".into()],
            vec![&pending, &dead, &done],
        ),
        (
            vec![
                "--since".into(),
                humantime::format_rfc3339_millis(
                    std::time::SystemTime::now() - Duration::from_secs(7200),
                )
                .to_string(),
            ],
            vec![&pending, &dead, &done, &ignored],
        ),
        (vec!["--limit".into(), "1".into()], vec![&pending]),
        (
            vec![
                "--state".into(),
                "dead".into(),
                "--source".into(),
                "clerk".into(),
            ],
            vec![],
        ),
    ];
    for (args, expected) in cases {
        let mut all = vec!["list"];
        all.extend(args.iter().map(String::as_str));
        let list = events_json(&app, &all).await;
        let expected: Vec<String> = expected.into_iter().cloned().collect();
        assert_eq!(event_ids(&list), expected, "revokd events {all:?}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_prints_aligned_table() {
    let app = spawn_app().await;
    let [pending, dead, done, ignored] = seed(&app).await;

    let output = events(&app, &["list"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    let header = lines[0];
    assert!(header.starts_with("RECEIVED"), "{header}");
    // Every column starts at the same offset on every line.
    let event_column = header.find("EVENT").unwrap();
    for (line, id) in lines[1..].iter().zip([&pending, &dead, &done, &ignored]) {
        assert_eq!(line.find(id.as_str()), Some(event_column), "{text}");
    }

    let dead_cells: Vec<&str> = lines[2].split_whitespace().collect();
    // RECEIVED EVENT SOURCE TYPE [(+N more)] PENDING DONE DEAD
    assert!(dead_cells[0].ends_with('Z'), "{}", lines[2]);
    assert!(
        humantime::parse_rfc3339(dead_cells[0]).is_ok(),
        "{}",
        lines[2]
    );
    assert_eq!(dead_cells[2], "appwrite");
    assert_eq!(dead_cells[dead_cells.len() - 3..], ["0", "0", "1"]);
    assert!(
        lines[4].ends_with("ignored: no rule matched"),
        "{}",
        lines[4]
    );

    let empty = events(&app, &["list", "--state", "dead", "--source", "clerk"]).await;
    assert!(empty.status.success());
    assert_eq!(stdout(&empty), "No events match.\n");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_prints_jobs_and_attempts() {
    let app = spawn_app().await;
    app.simulator.push_faults([unauthorized()]);
    let event_id = post_and_find(&app, "appwrite-user-blocked.body", USER_BLOCKED).await;
    wait_for_counts(&app, 0, 1).await;

    let detail = events_json(&app, &["show", &event_id]).await;
    assert_eq!(detail["id"], event_id.as_str());
    assert_eq!(detail["source"], "appwrite");
    let expected_types: Vec<String> = sample_events("appwrite-user-blocked.body")
        .split(',')
        .map(str::to_owned)
        .collect();
    assert_eq!(detail["types"], serde_json::json!(expected_types));
    let jobs = detail["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0];
    assert_eq!(job["state"], "dead");
    assert_eq!(job["rule"], "logout-on-block");
    assert_eq!(job["action"], "delete_sessions");
    assert_eq!(job["target"], "main");
    assert_eq!(job["user"], USER);
    assert_eq!(job["last_error_type"], "general_unauthorized_scope");
    assert!(job["finished_at"].is_i64());
    assert!(job["retried_at"].is_null());
    let attempts = job["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["number"], 1);
    assert_eq!(attempts[0]["status"], 401);
    assert_eq!(attempts[0]["error_type"], "general_unauthorized_scope");
    let job_id = job["id"].as_str().unwrap();

    let output = events(&app, &["show", &event_id]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.starts_with("Event "), "{text}");
    assert!(text.contains(&event_id), "{text}");
    assert!(text.contains(&format!("Job {job_id} (dead)")), "{text}");
    assert!(text.contains("logout-on-block"), "{text}");
    assert!(text.contains("delete_sessions on target main"), "{text}");
    assert!(text.contains("Last error"), "{text}");
    let attempt_line = text
        .lines()
        .find(|line| line.trim_start().starts_with("1 "))
        .unwrap_or_else(|| panic!("no attempt line in {text}"));
    assert!(attempt_line.contains(" 401 "), "{attempt_line}");
    assert!(
        attempt_line.contains("general_unauthorized_scope"),
        "{attempt_line}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_job_gets_fresh_attempt_budget() {
    let app = spawn_app().await;
    // The test config allows 5 attempts, so five 503s make the job dead.
    app.simulator.push_faults((0..5).map(|_| server_error()));
    let event_id = post_password_updated(&app).await;
    wait_for_counts(&app, 0, 1).await;
    let detail = app.store().event_detail(&event_id).await.unwrap();
    let job_id = detail.jobs[0].id.clone();
    assert_eq!(detail.jobs[0].attempts.len(), 5);

    // One more 503 after the retry: with the old count it would be dead at
    // once, with a fresh budget it is retried and then succeeds.
    app.simulator.push_faults([server_error()]);
    let output = events(&app, &["retry", &job_id]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.starts_with(&format!("Retried job {job_id} of event {event_id}")),
        "{text}"
    );
    assert!(text.contains("keeps its 5 attempts"), "{text}");

    wait_for_counts(&app, 1, 0).await;
    let job = &app.store().event_detail(&event_id).await.unwrap().jobs[0];
    assert_eq!(job.state, JobState::Done);
    assert_eq!(job.attempts_before_retry, 5);
    // The server polls at least every 5 s, so the first attempt after the
    // retry starts within that, plus time to claim.
    let retried_at = job.retried_at.expect("retried_at is set");
    let first_after_retry = job.attempts[5].started_at - retried_at;
    assert!(
        (0..=6000).contains(&first_after_retry),
        "first attempt {first_after_retry} ms after the retry"
    );
    let numbers: Vec<u32> = job.attempts.iter().map(|a| a.number).collect();
    assert_eq!(numbers, vec![1, 2, 3, 4, 5, 6, 7]);
    let statuses: Vec<u16> = app.calls().iter().map(|call| call.status).collect();
    assert_eq!(statuses, vec![503, 503, 503, 503, 503, 503, 204]);
    assert!(app.sessions().is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_old_event_gets_fresh_age() {
    let app = spawn_app().await;
    // The event is older than max_age (24 h by default), so the first
    // retryable failure makes its job dead.
    app.simulator.push_faults([server_error()]);
    let two_days_ago = now_millis() - 2 * 24 * 3_600_000;
    app.store()
        .ingest(vec![stored_event(
            "01OLDEVENT00000000000000",
            "appwrite",
            two_days_ago,
            vec![job("01OLDJOB0000000000000000")],
        )])
        .await
        .unwrap();
    wait_for_counts(&app, 0, 1).await;

    app.simulator.push_faults([server_error()]);
    let retried = events_json(&app, &["retry", "01OLDJOB0000000000000000"]).await;
    assert_eq!(retried["id"], "01OLDJOB0000000000000000");
    assert_eq!(retried["event_id"], "01OLDEVENT00000000000000");
    assert_eq!(retried["attempts"], 1);
    assert!(retried["due_at"].as_i64().unwrap() > two_days_ago);

    wait_for_counts(&app, 1, 0).await;
    let statuses: Vec<u16> = app.calls().iter().map(|call| call.status).collect();
    assert_eq!(statuses, vec![503, 503, 204]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_all_dead_is_delivered() {
    let app = spawn_app().await;
    app.simulator.push_faults([unauthorized(), unauthorized()]);
    post_password_updated(&app).await;
    post_and_find(&app, "appwrite-user-blocked.body", USER_BLOCKED).await;
    wait_for_counts(&app, 0, 2).await;
    assert_eq!(app.sessions().len(), 3);

    let retried = events_json(&app, &["retry", "--all-dead"]).await;
    assert_eq!(retried, serde_json::json!({ "retried": 2 }));

    wait_for_counts(&app, 2, 0).await;
    assert!(app.sessions().is_empty());
    let dead = events_json(&app, &["list", "--state", "dead"]).await;
    assert_eq!(event_ids(&dead), Vec::<String>::new());

    let again = events(&app, &["retry", "--all-dead"]).await;
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(stdout(&again), "No dead jobs to retry.\n");

    app.simulator.push_faults([unauthorized()]);
    post_and_find(&app, "appwrite-recovery-completed.body", RECOVERY_COMPLETED).await;
    wait_for_counts(&app, 2, 1).await;
    let text = events(&app, &["retry", "--all-dead"]).await;
    assert!(text.status.success(), "{}", stderr(&text));
    assert_eq!(stdout(&text), "Retried 1 dead job, due now.\n");
    wait_for_counts(&app, 3, 0).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_ids_exit_with_error() {
    let app = spawn_app().await;
    let event_id = post_password_updated(&app).await;
    wait_for_counts(&app, 1, 0).await;
    let done_job = app.store().event_detail(&event_id).await.unwrap().jobs[0]
        .id
        .clone();

    let show = events(&app, &["show", "01NOSUCHEVENT"]).await;
    assert_eq!(show.status.code(), Some(1));
    assert!(show.stdout.is_empty());
    let message = stderr(&show);
    assert!(
        message.contains("event 01NOSUCHEVENT not found"),
        "{message}"
    );
    assert!(message.contains("revokd events list"), "{message}");

    let retry = events(&app, &["retry", "01NOSUCHJOB"]).await;
    assert_eq!(retry.status.code(), Some(1));
    let message = stderr(&retry);
    assert!(message.contains("job 01NOSUCHJOB not found"), "{message}");

    let not_dead = events(&app, &["retry", &done_job]).await;
    assert_eq!(not_dead.status.code(), Some(1));
    let message = stderr(&not_dead);
    assert!(
        message.contains(&format!("job {done_job} is done, not dead")),
        "{message}"
    );
    app.stop().await;
}

#[tokio::test]
async fn unreadable_store_exits_with_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.db");
    let store = format!("sqlite://{}", missing.display());

    let output = run_with_env(&["events", "list", "--store", &store], &[]).await;
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(
        message.contains(&missing.display().to_string()),
        "{message}"
    );
    assert!(message.contains("does not exist"), "{message}");
    assert!(!missing.exists(), "the command must not create the file");

    let none = run_with_env(&["events", "list"], &[]).await;
    assert_eq!(none.status.code(), Some(1));
    assert!(stderr(&none).contains("--store sqlite://PATH"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_flag_finds_store() {
    let app = spawn_app().await;
    let event_id = post_password_updated(&app).await;
    wait_for_counts(&app, 1, 0).await;

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("revokd.toml");
    let text = config_text(
        &app.store().path().display().to_string(),
        &app.simulator.endpoint(),
        &app.signed_url,
        DEFAULT_RULES,
    );
    std::fs::write(&config, text).unwrap();
    let config = config.display().to_string();
    let secrets = [
        ("TEST_API_KEY", API_KEY),
        ("TEST_APPWRITE_SECRET", APPWRITE_SECRET),
        ("TEST_CLERK_SECRET", CLERK_SECRET),
    ];

    let by_flag = run_with_env(&["events", "list", "--json", "--config", &config], &secrets).await;
    assert!(by_flag.status.success(), "{}", stderr(&by_flag));
    let list: Value = serde_json::from_slice(&by_flag.stdout).unwrap();
    assert_eq!(event_ids(&list), vec![event_id.clone()]);

    let mut with_env = secrets.to_vec();
    with_env.push(("REVOKD_CONFIG", &config));
    let by_env = run_with_env(&["events", "show", &event_id], &with_env).await;
    assert!(by_env.status.success(), "{}", stderr(&by_env));
    assert!(stdout(&by_env).contains(&event_id));

    // Without the secrets the config cannot load, and the error points to --store.
    let without = run_with_env(&["events", "list", "--config", &config], &[]).await;
    assert_eq!(without.status.code(), Some(1));
    let message = stderr(&without);
    assert!(message.contains("--store sqlite://PATH"), "{message}");
    for output in [&by_flag, &by_env, &without] {
        for secret in [API_KEY, APPWRITE_SECRET, CLERK_SECRET] {
            assert!(!stdout(output).contains(secret));
            assert!(!stderr(output).contains(secret));
        }
    }
    app.stop().await;
}
