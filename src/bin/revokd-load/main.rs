//! Load generator and baseline server for revokd's benchmarks
//! (`tools/bench.sh`). Every address it sends to or listens on must be a
//! loopback address, and every run is bounded in time and request count.

mod baseline;
mod events;
mod load;
mod report;
mod revokd_run;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use events::{EventFactory, Kind};
use load::LoadOptions;
use report::{write_json, LoadSummary};

#[derive(Parser)]
#[command(
    name = "revokd-load",
    about = "Load generator and baseline server for revokd benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: CommandKind,
}

#[derive(Subcommand)]
enum CommandKind {
    /// Sends load to a server that is already running (revokd, the baseline
    /// or `revokd simulate-appwrite`).
    Load {
        /// Server address, e.g. 127.0.0.1:8080. Must be a loopback address.
        #[arg(long)]
        target: String,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Serves the baseline: revokd's routes, responding 200 after reading the body.
    Baseline {
        /// Address to listen on; must be a loopback address.
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: SocketAddr,
        /// HTTP worker threads (default: CPU cores, as revokd).
        #[arg(long)]
        workers: Option<usize>,
        /// Seconds after which the server stops by itself.
        #[arg(long, default_value_t = 900)]
        max_lifetime: u64,
    },
    /// Starts revokd (as a child process) and an Appwrite simulator (in this
    /// process), sends the load, waits for the deliveries, and reports
    /// ingest, peak RSS and 2xx-to-call latency.
    Revokd {
        /// The revokd binary to start.
        #[arg(long, default_value = "target/release/revokd")]
        binary: PathBuf,
        /// Directory for the config, the SQLite file and revokd's log. A
        /// store left there by an earlier run is deleted first.
        #[arg(long)]
        workdir: PathBuf,
        /// `store.sqlite_synchronous`: full (the default) or normal.
        #[arg(long, default_value = "full")]
        synchronous: String,
        /// `server.workers` (default: revokd's default, one per CPU core).
        #[arg(long)]
        workers: Option<usize>,
        /// Use rules that match no generated event: each event is committed
        /// as ignored, with no job and no delivery.
        #[arg(long)]
        ignore_events: bool,
        /// Seconds to wait for outstanding deliveries after the load (0: no wait).
        #[arg(long, default_value_t = 0.0)]
        drain_timeout: f64,
        #[command(flatten)]
        load: LoadArgs,
    },
}

#[derive(Args)]
struct LoadArgs {
    /// Request kind.
    #[arg(long, value_enum, default_value = "standard-webhooks")]
    kind: Kind,
    /// Body size in bytes; the event is padded with a JSON string field.
    #[arg(long, default_value_t = 1024)]
    body_bytes: usize,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Length of the run in seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Maximum number of requests; the run stops at whichever limit comes first.
    #[arg(long, default_value_t = 10_000_000)]
    requests: u64,
    /// Requests per second over all connections (open loop). Without it, each
    /// connection sends as fast as responses arrive (closed loop).
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds allowed for one request, connect included.
    #[arg(long, default_value_t = 10.0)]
    request_timeout: f64,
    /// Name of the run in the output.
    #[arg(long, default_value = "run")]
    label: String,
    /// Also write the summary as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Maximum run length the generator accepts, in seconds.
const MAX_DURATION_SECS: f64 = 3600.0;

impl LoadArgs {
    fn duration(&self) -> anyhow::Result<Duration> {
        anyhow::ensure!(
            self.duration > 0.0 && self.duration <= MAX_DURATION_SECS,
            "--duration {} is out of range; give seconds in (0, {MAX_DURATION_SECS}]",
            self.duration
        );
        Ok(Duration::from_secs_f64(self.duration))
    }

    fn request_timeout(&self) -> anyhow::Result<Duration> {
        anyhow::ensure!(
            self.request_timeout > 0.0 && self.request_timeout <= 60.0,
            "--request-timeout {} is out of range; give seconds in (0, 60]",
            self.request_timeout
        );
        Ok(Duration::from_secs_f64(self.request_timeout))
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("revokd-load: cannot start the tokio runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("revokd-load: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        CommandKind::Load { target, load } => run_load(&target, load).await,
        CommandKind::Baseline {
            listen,
            workers,
            max_lifetime,
        } => {
            let workers = workers.unwrap_or_else(default_workers);
            baseline::serve(listen, workers, Duration::from_secs(max_lifetime)).await
        }
        CommandKind::Revokd {
            binary,
            workdir,
            synchronous,
            workers,
            ignore_events,
            drain_timeout,
            load,
        } => {
            anyhow::ensure!(
                (0.0..=600.0).contains(&drain_timeout),
                "--drain-timeout {drain_timeout} is out of range; give seconds in [0, 600]"
            );
            revokd_run::run(revokd_run::RevokdRun {
                binary,
                workdir,
                synchronous,
                workers,
                ignore_events,
                kind: load.kind,
                body_bytes: load.body_bytes,
                connections: load.connections,
                duration: load.duration()?,
                max_requests: load.requests,
                rate: load.rate,
                request_timeout: load.request_timeout()?,
                drain_timeout: Duration::from_secs_f64(drain_timeout),
                label: load.label,
                json: load.json,
            })
            .await
        }
    }
}

/// revokd's default `server.workers`.
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(2, |cores| cores.get())
}

async fn run_load(target: &str, load: LoadArgs) -> anyhow::Result<()> {
    let addr = target
        .to_socket_addrs()
        .with_context(|| format!("--target {target} is not host:port"))?
        .next()
        .with_context(|| format!("--target {target} resolves to no address"))?;
    anyhow::ensure!(
        addr.ip().is_loopback(),
        "--target {target} is not a loopback address; revokd-load only sends to 127.0.0.1 or ::1"
    );
    let factory = Arc::new(EventFactory::new(
        load.kind,
        &format!("http://{target}"),
        load.body_bytes,
    ));
    let options = LoadOptions {
        addr,
        host: target.to_owned(),
        connections: load.connections,
        duration: load.duration()?,
        max_requests: load.requests,
        rate: load.rate,
        request_timeout: load.request_timeout()?,
        record_acks: false,
    };
    let result = load::run(factory, options).await?;
    let summary = LoadSummary::new(
        &load.label,
        load.kind,
        load.body_bytes,
        load.connections,
        load.rate,
        &result,
    );
    summary.print();
    if let Some(path) = &load.json {
        write_json(path, &summary)?;
    }
    Ok(())
}
