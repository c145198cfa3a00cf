//! `revokd-load revokd`: starts an Appwrite simulator in this process and a
//! revokd child process that delivers to it, then runs the load against
//! revokd and waits for the deliveries. It reports ingest, peak RSS and the
//! time from each 2xx to the simulator receiving its Appwrite call.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use revokd::simulator::{RecordedRequest, Simulator};
use serde::Serialize;

use crate::events::STANDARD_WEBHOOKS_SECRET;
use crate::events::{EventFactory, Kind, API_KEY, APPWRITE_SECRET, PROJECT};
use crate::load::{self, LoadOptions};
use crate::report::{quantile, write_json, LoadSummary};

/// Time allowed for revokd to respond to `/healthz` after it starts.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);
/// Time revokd has to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// How often the simulator's request log is counted while deliveries drain.
const DRAIN_POLL: Duration = Duration::from_millis(250);

/// Settings of a revokd run, from the command line.
pub struct RevokdRun {
    pub binary: PathBuf,
    pub workdir: PathBuf,
    pub synchronous: String,
    pub workers: Option<usize>,
    /// Configure rules that match none of the generated events, so each
    /// event is stored as ignored and no job or delivery follows.
    pub ignore_events: bool,
    pub kind: Kind,
    pub body_bytes: usize,
    pub connections: usize,
    pub duration: Duration,
    pub max_requests: u64,
    pub rate: Option<f64>,
    pub request_timeout: Duration,
    /// Maximum wait for outstanding deliveries after the load; zero skips it.
    pub drain_timeout: Duration,
    pub label: String,
    pub json: Option<PathBuf>,
}

/// Delivery figures taken from the simulator's request log.
#[derive(Debug, Serialize)]
pub struct DeliverySummary {
    /// 2xx responses the generator received.
    pub acked: usize,
    /// Appwrite calls for those events that the simulator received.
    pub delivered: usize,
    pub delivered_during_load: usize,
    /// Acknowledged events without a call when the load stopped.
    pub backlog_at_load_end: usize,
    /// Calls per second from the first call to the last.
    pub calls_per_s: f64,
    /// Calls per second after the load stopped, while the backlog drained.
    pub drain_calls_per_s: Option<f64>,
    /// Simulator receive time minus the generator's 2xx time, in ms. Both
    /// clocks are the same wall clock, but the simulator records whole
    /// milliseconds, so each value is low by up to 1 ms.
    pub ack_to_call_ms_p50: f64,
    pub ack_to_call_ms_p99: f64,
    pub ack_to_call_ms_max: f64,
}

#[derive(Debug, Serialize)]
struct RevokdReport {
    load: LoadSummary,
    synchronous: String,
    workers: Option<usize>,
    ignore_events: bool,
    peak_rss_kib: Option<u64>,
    delivery: DeliverySummary,
}

pub async fn run(settings: RevokdRun) -> anyhow::Result<()> {
    anyhow::ensure!(
        settings.kind != Kind::Simulator,
        "--kind simulator is for `revokd-load load`; revokd takes appwrite or standard-webhooks"
    );
    std::fs::create_dir_all(&settings.workdir)
        .with_context(|| format!("cannot create {}", settings.workdir.display()))?;
    // Every run starts on an empty store, because a backlog left by an
    // earlier run would slow this one down.
    for name in ["revokd.db", "revokd.db-wal", "revokd.db-shm"] {
        let path = settings.workdir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                return Err(err).with_context(|| format!("cannot remove {}", path.display()))
            }
        }
    }

    let simulator = Simulator::start("127.0.0.1:0".parse().expect("valid address"))
        .await
        .context("cannot start the Appwrite simulator")?;
    simulator.add_project(PROJECT);
    simulator.add_key(PROJECT, API_KEY, &["users.read", "users.write"]);

    let addr = free_loopback_port()?;
    let config = settings.workdir.join("revokd.toml");
    std::fs::write(&config, config_text(&settings, addr, &simulator.endpoint()))
        .with_context(|| format!("cannot write {}", config.display()))?;
    let mut child = spawn_revokd(&settings.binary, &config, &settings.workdir)?;
    if let Err(error) = wait_healthy(addr, &mut child).await {
        stop(&mut child);
        return Err(error);
    }

    let factory = Arc::new(EventFactory::new(
        settings.kind,
        &format!("http://{addr}"),
        settings.body_bytes,
    ));
    let options = LoadOptions {
        addr,
        host: addr.to_string(),
        connections: settings.connections,
        duration: settings.duration,
        max_requests: settings.max_requests,
        rate: settings.rate,
        request_timeout: settings.request_timeout,
        record_acks: true,
    };
    let result = load::run(factory, options).await;
    let load_end_ms = load::unix_micros() / 1000;
    let result = match result {
        Ok(result) => result,
        Err(error) => {
            stop(&mut child);
            return Err(error);
        }
    };

    let acked = result.acks.len();
    wait_for_calls(&simulator, acked, settings.drain_timeout).await;
    let peak_rss_kib = peak_rss_kib(child.id());
    stop(&mut child);
    let requests = simulator.requests();
    simulator.stop().await;

    let summary = LoadSummary::new(
        &settings.label,
        settings.kind,
        settings.body_bytes,
        settings.connections,
        settings.rate,
        &result,
    );
    let delivery = delivery_summary(&result.acks, &requests, load_end_ms);
    let report = RevokdReport {
        load: summary,
        synchronous: settings.synchronous.clone(),
        workers: settings.workers,
        ignore_events: settings.ignore_events,
        peak_rss_kib,
        delivery,
    };
    report.load.print();
    let rss = report.peak_rss_kib.map_or_else(
        || "unknown".to_owned(),
        |kib| format!("{:.1} MiB", kib as f64 / 1024.0),
    );
    println!(
        "{:<12} {rss} (VmHWM), synchronous = {}",
        "revokd RSS", report.synchronous
    );
    let d = &report.delivery;
    println!(
        "{:<12} {} acked, {} delivered ({} during the load), {:.0} calls/s, drain {}",
        "delivery",
        d.acked,
        d.delivered,
        d.delivered_during_load,
        d.calls_per_s,
        d.drain_calls_per_s
            .map_or_else(|| "-".to_owned(), |rate| format!("{rate:.0} calls/s"))
    );
    println!(
        "{:<12} p50 {:.1}  p99 {:.1}  max {:.1}",
        "2xx→call ms", d.ack_to_call_ms_p50, d.ack_to_call_ms_p99, d.ack_to_call_ms_max
    );
    if let Some(path) = &settings.json {
        write_json(path, &report)?;
    }
    Ok(())
}

fn config_text(settings: &RevokdRun, addr: SocketAddr, endpoint: &str) -> String {
    let workers = settings
        .workers
        .map_or_else(String::new, |workers| format!("workers = {workers}\n"));
    let store = settings.workdir.join("revokd.db");
    let (appwrite_event, standard_event) = if settings.ignore_events {
        ("users.*.delete", "user.deleted")
    } else {
        ("users.*.update.password", "user.updated")
    };
    format!(
        r#"# Written by revokd-load for one benchmark run.
[server]
listen = "{addr}"
{workers}max_body_bytes = 1048576
request_timeout = "10s"
shutdown_grace = "2s"

[store]
url = "sqlite://{store}"
sqlite_synchronous = "{synchronous}"

[targets.main]
endpoint = "{endpoint}"
project = "{PROJECT}"
api_key = {{ env = "BENCH_API_KEY" }}

[sources.appwrite]
kind = "appwrite"
signed_url = "http://{addr}/hooks/appwrite"
secrets = [{{ env = "BENCH_APPWRITE_SECRET" }}]

[sources.standard-webhooks]
kind = "standard-webhooks"
secrets = [{{ env = "BENCH_STANDARD_WEBHOOKS_SECRET" }}]

[[rules]]
name = "logout-on-password-change"
source = "appwrite"
event = "{appwrite_event}"
user = {{ id = "/$id" }}
action = "delete_sessions"
target = "main"

[[rules]]
name = "logout-on-user-update"
source = "standard-webhooks"
event = "{standard_event}"
user = {{ id = "/data/external_id" }}
action = "delete_sessions"
target = "main"
"#,
        store = store.display(),
        synchronous = settings.synchronous,
    )
}

fn free_loopback_port() -> anyhow::Result<SocketAddr> {
    // NOTE: another process could take the port between this drop and
    // revokd's bind; the health check then fails and the run stops.
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind 127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

fn spawn_revokd(binary: &Path, config: &Path, workdir: &Path) -> anyhow::Result<Child> {
    let log_path = workdir.join("revokd.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    Command::new(binary)
        .arg("serve")
        .arg("--config")
        .arg(config)
        .env("BENCH_API_KEY", API_KEY)
        .env("BENCH_APPWRITE_SECRET", APPWRITE_SECRET)
        .env("BENCH_STANDARD_WEBHOOKS_SECRET", STANDARD_WEBHOOKS_SECRET)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))
}

async fn wait_healthy(addr: SocketAddr, child: &mut Child) -> anyhow::Result<()> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!(
                "revokd exited during startup with {status}; see revokd.log in the work directory"
            );
        }
        if healthz(addr).await.unwrap_or(false) {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "revokd did not answer /healthz on {addr} within {STARTUP_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn healthz(addr: SocketAddr) -> anyhow::Result<bool> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = hyper::Request::get("/healthz")
        .header("host", addr.to_string())
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    let ok = response.status().is_success();
    response.into_body().collect().await?;
    Ok(ok)
}

/// Waits until the simulator received `expected` calls, for at most `timeout`.
async fn wait_for_calls(simulator: &Simulator, expected: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let received = simulator
            .requests()
            .iter()
            .filter(|request| request.status != 0)
            .count();
        if received >= expected {
            return;
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
}

/// Reads `VmHWM` (peak resident set size) of process `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Sends SIGTERM and waits; kills revokd when it has not exited in time.
fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("revokd did not stop within {STOP_TIMEOUT:?} of SIGTERM; killing it");
    let _ = child.kill();
    let _ = child.wait();
}

fn delivery_summary(
    acks: &[load::Ack],
    requests: &[RecordedRequest],
    load_end_ms: i64,
) -> DeliverySummary {
    let acked_at: HashMap<&str, i64> = acks
        .iter()
        .map(|ack| (ack.user_id.as_str(), ack.unix_micros))
        .collect();
    let mut latencies_ms = Vec::new();
    let mut call_times_ms = Vec::new();
    for request in requests {
        let Some(user) = request
            .path
            .strip_prefix("/v1/users/")
            .and_then(|rest| rest.strip_suffix("/sessions"))
        else {
            continue;
        };
        let Some(ack_micros) = acked_at.get(user) else {
            continue;
        };
        call_times_ms.push(request.at_ms);
        latencies_ms.push((request.at_ms * 1000 - ack_micros) as f64 / 1000.0);
    }
    latencies_ms.sort_by(f64::total_cmp);
    call_times_ms.sort_unstable();

    let delivered = call_times_ms.len();
    let delivered_during_load = call_times_ms
        .iter()
        .filter(|at| **at <= load_end_ms)
        .count();
    let calls_per_s = match (call_times_ms.first(), call_times_ms.last()) {
        (Some(first), Some(last)) if last > first => {
            delivered as f64 / ((last - first) as f64 / 1000.0)
        }
        _ => 0.0,
    };
    let drained = delivered - delivered_during_load;
    let drain_calls_per_s = match call_times_ms.last() {
        Some(last) if drained > 0 && *last > load_end_ms => {
            Some(drained as f64 / ((last - load_end_ms) as f64 / 1000.0))
        }
        _ => None,
    };
    DeliverySummary {
        acked: acks.len(),
        delivered,
        delivered_during_load,
        backlog_at_load_end: acks.len().saturating_sub(delivered_during_load),
        calls_per_s,
        drain_calls_per_s,
        ack_to_call_ms_p50: quantile(&latencies_ms, 0.50),
        ack_to_call_ms_p99: quantile(&latencies_ms, 0.99),
        ack_to_call_ms_max: latencies_ms.last().copied().unwrap_or(0.0),
    }
}
