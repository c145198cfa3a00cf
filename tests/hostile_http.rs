//! Hostile clients over raw sockets on 127.0.0.1: bodies over the limit,
//! slow and stalled requests, and a flood of bad signatures whose log lines
//! must be aggregated.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::*;
use revokd::senders::appwrite_signature;
use revokd::store::Store;
use revokd::telemetry::{init_with_writer, LogFormat};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

const SCOPES: &[&str] = &["users.read", "users.write"];

/// How a raw request ended, as seen by the client.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// A response head arrived with this status.
    Status(u16, String),
    /// The server closed or reset the connection before a full response head.
    Closed,
    /// Nothing conclusive arrived before the deadline.
    TimedOut,
}

impl Outcome {
    fn status(&self) -> Option<u16> {
        match self {
            Outcome::Status(status, _) => Some(*status),
            _ => None,
        }
    }
}

async fn connect(app: &TestApp) -> TcpStream {
    let address = app.base.trim_start_matches("http://");
    assert!(address.starts_with("127.0.0.1:"), "{address}");
    TcpStream::connect(address).await.unwrap()
}

/// Reads until a full response head arrives, the connection ends, or
/// `limit` passes.
async fn read_response_head(reader: &mut OwnedReadHalf, limit: Duration) -> Outcome {
    let deadline = tokio::time::Instant::now() + limit;
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let read = tokio::time::timeout_at(deadline, reader.read(&mut buffer)).await;
        match read {
            Err(_) => return Outcome::TimedOut,
            Ok(Err(_)) | Ok(Ok(0)) => return Outcome::Closed,
            Ok(Ok(count)) => received.extend_from_slice(&buffer[..count]),
        }
        if let Some(end) = received.windows(4).position(|window| window == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&received[..end]).into_owned();
            let status = head
                .split_whitespace()
                .nth(1)
                .and_then(|code| code.parse().ok())
                .unwrap_or_else(|| panic!("no status in response head {head:?}"));
            return Outcome::Status(status, head);
        }
        assert!(received.len() < 64 * 1024, "response head never ended");
    }
}

/// Reads and discards until the server closes or resets the connection;
/// returns false if it is still open after `limit`.
async fn read_until_closed(reader: &mut OwnedReadHalf, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, reader.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Err(_)) | Ok(Ok(0)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// Writes `bytes`, giving up after `limit`; returns whether all were written.
async fn write_within(writer: &mut OwnedWriteHalf, bytes: &[u8], limit: Duration) -> bool {
    matches!(
        tokio::time::timeout(limit, writer.write_all(bytes)).await,
        Ok(Ok(()))
    )
}

fn request_head(app: &TestApp, extra_headers: &[(&str, String)]) -> String {
    let address = app.base.trim_start_matches("http://");
    let mut head = format!(
        "POST /hooks/appwrite HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n"
    );
    for (name, value) in extra_headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// Builds a correctly signed password-update body of at least `size` bytes, so that
/// only the size limit can reject it.
fn signed_padded_body(app: &TestApp, size: usize) -> (Vec<u8>, Vec<(&'static str, String)>) {
    let padding = "p".repeat(size);
    let body = format!(r#"{{"$id":"{USER}","padding":"{padding}"}}"#).into_bytes();
    let signature = appwrite_signature(APPWRITE_SECRET, &app.signed_url, &body);
    let headers = vec![
        (
            "X-Appwrite-Webhook-Events",
            sample_events("appwrite-password-updated.body"),
        ),
        ("X-Appwrite-Webhook-Signature", signature),
    ];
    (body, headers)
}

/// Sends `body` with chunked transfer encoding, 8 KiB per chunk, and returns
/// the number of body bytes written before a write failed or stalled.
async fn send_chunked(mut writer: OwnedWriteHalf, head: String, body: Vec<u8>) -> usize {
    let step = Duration::from_secs(2);
    if !write_within(&mut writer, head.as_bytes(), step).await {
        return 0;
    }
    let mut sent = 0;
    for chunk in body.chunks(8192) {
        let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
        framed.extend_from_slice(chunk);
        framed.extend_from_slice(b"\r\n");
        if !write_within(&mut writer, &framed, step).await {
            return sent;
        }
        sent += chunk.len();
    }
    write_within(&mut writer, b"0\r\n\r\n", step).await;
    sent
}

fn stored_event_count(app: &TestApp) -> i64 {
    let connection = rusqlite::Connection::open_with_flags(
        app.store_path(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    connection
        .query_row("SELECT count(*) FROM events", [], |row| row.get(0))
        .unwrap()
}

async fn assert_nothing_stored(app: &TestApp) {
    let counts = app.store().job_counts().await.unwrap();
    assert_eq!(counts.pending, 0);
    assert_eq!(counts.claimed, 0);
    assert_eq!(counts.done, 0);
    assert_eq!(counts.dead, 0);
    assert_eq!(stored_event_count(app), 0);
    assert!(app.calls().is_empty(), "{:?}", app.calls());
}

fn with_request_timeout(seconds: u64) -> impl FnOnce(String) -> String {
    move |text: String| {
        let from = "request_timeout = \"5s\"";
        assert_eq!(
            text.matches(from).count(),
            1,
            "server timeout line not found"
        );
        text.replace(from, &format!("request_timeout = \"{seconds}s\""))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_over_limit_is_cut_off() {
    let app = spawn_app().await;
    // 1 MiB against the 64 KiB limit.
    let (body, headers) = signed_padded_body(&app, 1024 * 1024);
    let mut head_headers = headers;
    head_headers.push(("Transfer-Encoding", "chunked".into()));
    let head = request_head(&app, &head_headers);

    let (mut reader, writer) = connect(&app).await.into_split();
    let sending = tokio::spawn(send_chunked(writer, head, body));
    let outcome = read_response_head(&mut reader, Duration::from_secs(10)).await;

    assert!(
        matches!(outcome, Outcome::Status(413, _) | Outcome::Closed),
        "{outcome:?}"
    );
    if let Outcome::Status(_, head) = &outcome {
        assert!(
            head.to_ascii_lowercase().contains("connection: close"),
            "{head}"
        );
    }
    assert!(
        read_until_closed(&mut reader, Duration::from_secs(5)).await,
        "connection still open 5 s after the response"
    );
    sending.await.unwrap();
    assert_nothing_stored(&app).await;
    app.stop().await;
}

/// A client that keeps sending chunks after the 413 must be disconnected,
/// not have the rest of its body read and discarded for as long as it sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_chunked_body_is_disconnected() {
    // Loopback can carry several GiB per second, so the cap is far above
    // what fits in actix's one-second discard window.
    const MAX_SENT: usize = 64 * 1024 * 1024 * 1024;
    let app = spawn_app().await;
    let (_, mut headers) = signed_padded_body(&app, 16);
    headers.push(("Transfer-Encoding", "chunked".into()));
    let head = request_head(&app, &headers);

    let (mut reader, mut writer) = connect(&app).await.into_split();
    // Sends 64 KiB chunks for at most 10 s or 4 GiB, whichever comes first.
    let sending = tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(10);
        let step = Duration::from_secs(1);
        if !write_within(&mut writer, head.as_bytes(), step).await {
            return 0;
        }
        let mut chunk = format!("{:x}\r\n", 65536).into_bytes();
        chunk.extend_from_slice(&[b'p'; 65536]);
        chunk.extend_from_slice(b"\r\n");
        let mut sent = 0;
        while sent < MAX_SENT && Instant::now() < deadline {
            if !write_within(&mut writer, &chunk, step).await {
                // The server closed the connection or stopped reading.
                return sent;
            }
            sent += 65536;
        }
        usize::MAX
    });
    let outcome = read_response_head(&mut reader, Duration::from_secs(10)).await;
    let answered = Instant::now();
    let closed = read_until_closed(&mut reader, Duration::from_secs(5)).await;
    let closed_after = answered.elapsed();
    let sent = sending.await.unwrap();

    assert_eq!(outcome.status(), Some(413), "{outcome:?}");
    assert!(closed, "connection still open 5 s after the 413");
    assert!(closed_after < Duration::from_secs(5), "{closed_after:?}");
    assert!(
        sent != usize::MAX,
        "the server kept reading until the client's cap or deadline"
    );
    assert_nothing_stored(&app).await;
    app.stop().await;
}

/// The same chunked request is accepted under a limit that fits it, so the
/// test above fails if the limit stops being enforced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_under_raised_limit_is_accepted() {
    let app = spawn_app_edited(DEFAULT_RULES, SCOPES, |text| {
        text.replace("max_body_bytes = 65536", "max_body_bytes = 4194304")
    })
    .await;
    let (body, headers) = signed_padded_body(&app, 1024 * 1024);
    let mut head_headers = headers;
    head_headers.push(("Transfer-Encoding", "chunked".into()));
    let head = request_head(&app, &head_headers);

    let (mut reader, writer) = connect(&app).await.into_split();
    let body_len = body.len();
    let sending = tokio::spawn(send_chunked(writer, head, body));
    let outcome = read_response_head(&mut reader, Duration::from_secs(10)).await;
    let sent = sending.await.unwrap();

    assert_eq!(sent, body_len);
    assert_eq!(outcome.status(), Some(200), "{outcome:?}");
    let settled = app.settle().await;
    assert_eq!(settled.done, 1);
    assert_eq!(stored_event_count(&app), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_length_over_limit_rejected_before_body() {
    let app = spawn_app().await;
    let (_, mut headers) = signed_padded_body(&app, 16);
    headers.push(("Content-Length", (100 * 1024 * 1024).to_string()));
    let head = request_head(&app, &headers);

    let (mut reader, mut writer) = connect(&app).await.into_split();
    assert!(write_within(&mut writer, head.as_bytes(), Duration::from_secs(2)).await);
    // No body byte is sent: the response must come from the headers alone.
    let outcome = read_response_head(&mut reader, Duration::from_secs(5)).await;

    let Outcome::Status(status, head) = &outcome else {
        panic!("expected a response, got {outcome:?}");
    };
    assert_eq!(*status, 413);
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    drop(writer);
    assert_nothing_stored(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_body_times_out() {
    let app = spawn_app_edited(DEFAULT_RULES, SCOPES, with_request_timeout(1)).await;
    let (body, mut headers) = signed_padded_body(&app, 16);
    headers.push(("Content-Length", body.len().to_string()));
    let head = request_head(&app, &headers);

    let (mut reader, mut writer) = connect(&app).await.into_split();
    let started = Instant::now();
    assert!(write_within(&mut writer, head.as_bytes(), Duration::from_secs(2)).await);
    assert!(write_within(&mut writer, &body[..10], Duration::from_secs(2)).await);
    let outcome = read_response_head(&mut reader, Duration::from_secs(6)).await;
    let elapsed = started.elapsed();

    assert!(
        matches!(outcome, Outcome::Status(408, _) | Outcome::Closed),
        "{outcome:?}"
    );
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
    drop(writer);
    assert_nothing_stored(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_body_times_out() {
    let app = spawn_app_edited(DEFAULT_RULES, SCOPES, with_request_timeout(1)).await;
    let (body, mut headers) = signed_padded_body(&app, 200);
    headers.push(("Content-Length", body.len().to_string()));
    let head = request_head(&app, &headers);

    let (mut reader, mut writer) = connect(&app).await.into_split();
    let started = Instant::now();
    assert!(write_within(&mut writer, head.as_bytes(), Duration::from_secs(2)).await);
    // One byte every 100 ms: about 8 s for the whole body, if it were let through.
    let trickle = tokio::spawn(async move {
        for byte in body.iter().take(80) {
            if !write_within(&mut writer, &[*byte], Duration::from_secs(1)).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let outcome = read_response_head(&mut reader, Duration::from_secs(6)).await;
    let elapsed = started.elapsed();
    trickle.abort();

    assert!(
        matches!(outcome, Outcome::Status(408, _) | Outcome::Closed),
        "{outcome:?}"
    );
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
    assert_nothing_stored(&app).await;
    app.stop().await;
}

/// After the 408 a chunked body could be read and discarded for as long as
/// the client trickles it, which would hold the connection open forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_chunked_body_is_disconnected() {
    let app = spawn_app_edited(DEFAULT_RULES, SCOPES, with_request_timeout(1)).await;
    let (_, mut headers) = signed_padded_body(&app, 16);
    headers.push(("Transfer-Encoding", "chunked".into()));
    let head = request_head(&app, &headers);

    let (mut reader, mut writer) = connect(&app).await.into_split();
    let started = Instant::now();
    assert!(write_within(&mut writer, head.as_bytes(), Duration::from_secs(2)).await);
    // One single-byte chunk every 100 ms, for at most 10 s.
    let trickle = tokio::spawn(async move {
        for _ in 0..100 {
            if !write_within(&mut writer, b"1\r\np\r\n", Duration::from_secs(1)).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let outcome = read_response_head(&mut reader, Duration::from_secs(6)).await;
    let closed = read_until_closed(&mut reader, Duration::from_secs(5)).await;
    let elapsed = started.elapsed();
    trickle.abort();

    assert!(
        matches!(outcome, Outcome::Status(408, _) | Outcome::Closed),
        "{outcome:?}"
    );
    assert!(closed, "connection still open after the 408");
    assert!(elapsed < Duration::from_secs(6), "{elapsed:?}");
    assert_nothing_stored(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_headers_are_disconnected() {
    let app = spawn_app_edited(DEFAULT_RULES, SCOPES, with_request_timeout(1)).await;
    let (mut reader, mut writer) = connect(&app).await.into_split();
    let started = Instant::now();
    let partial = b"POST /hooks/appwrite HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Appwrite-Webhook-";
    assert!(write_within(&mut writer, partial, Duration::from_secs(2)).await);
    let outcome = read_response_head(&mut reader, Duration::from_secs(6)).await;
    let elapsed = started.elapsed();

    assert!(
        matches!(outcome, Outcome::Status(408, _) | Outcome::Closed),
        "{outcome:?}"
    );
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
    drop(writer);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_headers_are_disconnected() {
    let app = spawn_app_edited(DEFAULT_RULES, SCOPES, with_request_timeout(1)).await;
    let (mut reader, mut writer) = connect(&app).await.into_split();
    let started = Instant::now();
    // A header line that never ends, one byte every 100 ms, for at most 8 s.
    let trickle = tokio::spawn(async move {
        let start = b"POST /hooks/appwrite HTTP/1.1\r\nX-Slow: ";
        if !write_within(&mut writer, start, Duration::from_secs(1)).await {
            return;
        }
        for _ in 0..80 {
            if !write_within(&mut writer, b"a", Duration::from_secs(1)).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let outcome = read_response_head(&mut reader, Duration::from_secs(6)).await;
    let elapsed = started.elapsed();
    trickle.abort();

    assert!(
        matches!(outcome, Outcome::Status(408, _) | Outcome::Closed),
        "{outcome:?}"
    );
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
    app.stop().await;
}

/// Log output captured for this test binary: one JSON object per line.
#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber once per test binary and returns it.
///
/// NOTE: a `RUST_LOG` that hides `revokd::request` at info level makes the
/// log tests fail, because `init_with_writer` prefers it to the default.
fn captured_logs() -> Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let capture = Capture(Arc::new(Mutex::new(Vec::new())));
            let writer = capture.clone();
            init_with_writer(LogFormat::Json, "info", move || writer.clone());
            capture
        })
        .clone()
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Rejection lines for `source` and `reason`, parsed.
    fn rejections(&self, source: &str, reason: &str) -> Vec<Value> {
        self.text()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|line| {
                let message = line["message"].as_str().unwrap_or("");
                message.starts_with("request rejected")
                    && line["source"] == source
                    && line["reason"] == reason
            })
            .collect()
    }
}

/// Counts the rejections that `lines` report: one per first line plus the
/// repeat count of each summary line.
fn reported_total(lines: &[Value]) -> u64 {
    lines
        .iter()
        .map(|line| line["repeated"].as_u64().unwrap_or(1))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signature_flood_logs_summary() {
    const FLOOD: u64 = 200;
    const BAD_SIGNATURE: &str = "Zmxvb2Qtc2lnbmF0dXJlLTAwMDA=";
    let logs = captured_logs();
    let app = spawn_app().await;
    let events = sample_events("appwrite-password-updated.body");

    let started = Instant::now();
    for index in 0..FLOOD {
        let body = format!(r#"{{"$id":"{USER}","marker":"flood-body-{index}"}}"#);
        let response = app
            .http
            .post(&app.signed_url)
            .header("Content-Type", "application/json")
            .header("X-Appwrite-Webhook-Events", &events)
            .header("X-Appwrite-Webhook-Signature", BAD_SIGNATURE)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
    }
    let flood_time = started.elapsed();

    // The flood stops here and the server keeps running: the periodic flush
    // must report the repeats on its own, about 10 s after the first one.
    let lines = wait_for(
        "the summary of the repeated rejections",
        Duration::from_secs(25),
        || {
            let lines = logs.rejections("appwrite", "bad signature");
            std::future::ready((reported_total(&lines) >= FLOOD).then_some(lines))
        },
    )
    .await;

    assert_eq!(reported_total(&lines), FLOOD);
    assert!(
        lines.len() < 10,
        "{} lines for {FLOOD} rejections",
        lines.len()
    );
    for line in &lines {
        assert_eq!(line["status"], 401);
        assert_eq!(line["level"], "INFO");
    }
    if flood_time < Duration::from_secs(9) {
        // The whole flood fell into one interval.
        let repeats: Vec<u64> = lines
            .iter()
            .filter_map(|line| line["repeated"].as_u64())
            .collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0]["message"], "request rejected");
        assert_eq!(repeats, vec![FLOOD - 1]);
    }
    let text = logs.text();
    assert!(!text.contains(BAD_SIGNATURE), "a signature was logged");
    assert!(!text.contains(APPWRITE_SECRET), "a secret was logged");
    assert!(!text.contains("flood-body-"), "a body was logged");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_reports_pending_repeats() {
    const FLOOD: u64 = 50;
    let logs = captured_logs();
    let app = spawn_app().await;
    for index in 0..FLOOD {
        let body = format!(r#"{{"type":"user.updated","n":{index}}}"#);
        let response = app
            .http
            .post(format!("{}/hooks/clerk", app.base))
            .header("Content-Type", "application/json")
            .header("svix-id", format!("msg_flood_{index}"))
            .header(
                "svix-timestamp",
                (revokd::delivery::now_millis() / 1000).to_string(),
            )
            .header(
                "svix-signature",
                "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            )
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
    }
    let before_stop = logs.rejections("clerk", "bad signature");
    assert_eq!(reported_total(&before_stop), 1, "{before_stop:?}");

    // Stopping the server drops the rejection log, which writes what it counted.
    app.stop().await;
    let lines = wait_for(
        "the summary written on stop",
        Duration::from_secs(5),
        || {
            let lines = logs.rejections("clerk", "bad signature");
            std::future::ready((reported_total(&lines) >= FLOOD).then_some(lines))
        },
    )
    .await;
    assert_eq!(reported_total(&lines), FLOOD);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[1]["repeated"], FLOOD - 1);
}
