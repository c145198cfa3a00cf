//! The load engine: one keep-alive HTTP/1.1 connection per worker task, in
//! closed loop (each connection sends its next request as soon as the last
//! response arrived) or open loop (requests start on a fixed schedule).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::events::EventFactory;

/// Highest latency the histograms record, in microseconds; longer ones are clamped.
const MAX_LATENCY_MICROS: u64 = 60_000_000;

/// Pause after a failed connect, so that a refused port does not spin.
const RECONNECT_PAUSE: Duration = Duration::from_millis(20);

/// Settings of one load run.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub addr: SocketAddr,
    /// Value of the `Host` header.
    pub host: String,
    pub connections: usize,
    pub duration: Duration,
    /// The run also stops after this many requests.
    pub max_requests: u64,
    /// Requests per second over all connections; `None` for closed loop.
    pub rate: Option<f64>,
    /// Time allowed for one request, connect included.
    pub request_timeout: Duration,
    /// Keep the user id and Unix time of every 2xx, for end-to-end latency.
    pub record_acks: bool,
}

/// One acknowledged request: its user id and when the 2xx arrived.
pub struct Ack {
    pub user_id: String,
    pub unix_micros: i64,
}

/// The measurements of one run, merged over its connections.
pub struct LoadResult {
    pub elapsed: Duration,
    /// Latency in microseconds of every request that got a response. In open
    /// loop it counts from the scheduled start, so queueing behind a slow
    /// response is included (no coordinated omission).
    pub latency: Histogram<u64>,
    pub statuses: BTreeMap<u16, u64>,
    /// Connect failures, timeouts and broken connections.
    pub errors: u64,
    /// Requests of an open-loop schedule that started later than planned by
    /// more than 1 ms, because every connection was busy.
    pub late_starts: u64,
    pub acks: Vec<Ack>,
}

struct WorkerResult {
    latency: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
    late_starts: u64,
    acks: Vec<Ack>,
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_MICROS, 3).expect("valid histogram bounds")
}

/// Runs the load and waits for every connection to finish. Returns an error
/// only when no request could be sent at all.
pub async fn run(factory: Arc<EventFactory>, options: LoadOptions) -> anyhow::Result<LoadResult> {
    anyhow::ensure!(options.connections > 0, "--connections must be at least 1");
    if let Some(rate) = options.rate {
        anyhow::ensure!(rate > 0.0, "--rate must be above 0");
    }
    let options = Arc::new(options);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..options.connections {
        workers.spawn(worker(
            factory.clone(),
            options.clone(),
            next.clone(),
            start,
        ));
    }

    let mut result = LoadResult {
        elapsed: Duration::ZERO,
        latency: new_histogram(),
        statuses: BTreeMap::new(),
        errors: 0,
        late_starts: 0,
        acks: Vec::new(),
    };
    while let Some(joined) = workers.join_next().await {
        let worker = joined.context("a load worker task failed")?;
        result
            .latency
            .add(&worker.latency)
            .expect("histograms have equal bounds");
        for (status, count) in worker.statuses {
            *result.statuses.entry(status).or_default() += count;
        }
        result.errors += worker.errors;
        result.late_starts += worker.late_starts;
        result.acks.extend(worker.acks);
    }
    result.elapsed = start.elapsed();
    Ok(result)
}

async fn worker(
    factory: Arc<EventFactory>,
    options: Arc<LoadOptions>,
    next: Arc<AtomicU64>,
    start: Instant,
) -> WorkerResult {
    let deadline = start + options.duration;
    let mut result = WorkerResult {
        latency: new_histogram(),
        statuses: BTreeMap::new(),
        errors: 0,
        late_starts: 0,
        acks: Vec::new(),
    };
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    loop {
        let n = next.fetch_add(1, Ordering::Relaxed);
        if n >= options.max_requests {
            break;
        }
        let scheduled = match options.rate {
            Some(rate) => start + Duration::from_secs_f64(n as f64 / rate),
            None => Instant::now(),
        };
        if scheduled >= deadline {
            break;
        }
        if options.rate.is_some() {
            tokio::time::sleep_until(scheduled.into()).await;
            if scheduled.elapsed() > Duration::from_millis(1) {
                result.late_starts += 1;
            }
        }

        let prepared = factory.make(n, unix_micros() / 1_000_000);
        let mut builder = Request::builder()
            .method(prepared.method)
            .uri(prepared.path.as_str())
            .header("host", options.host.as_str());
        for (name, value) in &prepared.headers {
            builder = builder.header(*name, value.as_str());
        }
        let request = builder
            .body(Full::new(prepared.body))
            .expect("generated requests are valid");

        let exchange = async {
            if sender.is_none() {
                sender = Some(connect(options.addr).await?);
            }
            let connection = sender.as_mut().expect("connected above");
            connection.ready().await?;
            let response = connection.send_request(request).await?;
            let status = response.status().as_u16();
            let acked_at = unix_micros();
            // The body is small; reading it keeps the connection usable.
            response.into_body().collect().await?;
            anyhow::Ok((status, acked_at))
        };
        match tokio::time::timeout(options.request_timeout, exchange).await {
            Ok(Ok((status, acked_at))) => {
                let micros = scheduled.elapsed().as_micros() as u64;
                result
                    .latency
                    .saturating_record(micros.clamp(1, MAX_LATENCY_MICROS));
                *result.statuses.entry(status).or_default() += 1;
                if options.record_acks && (200..300).contains(&status) {
                    result.acks.push(crate::load::Ack {
                        user_id: prepared.user_id,
                        unix_micros: acked_at,
                    });
                }
            }
            Ok(Err(_)) | Err(_) => {
                result.errors += 1;
                sender = None;
                if Instant::now() + RECONNECT_PAUSE < deadline {
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                }
            }
        }
    }
    result
}

/// Opens one keep-alive HTTP/1.1 connection and drives it in a background task.
async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // An error here shows up as a failed request on `sender`.
        let _ = connection.await;
    });
    Ok(sender)
}

pub fn unix_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_micros() as i64)
}
