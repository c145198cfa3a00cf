//! Wires the parts together: store, HTTP server, delivery workers, pruning,
//! and a shutdown that loses nothing.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinHandle;

use crate::appwrite::{http_client, AppwriteClient};
use crate::config::{Config, StoreLocation};
use crate::delivery::{now_millis, Delivery, TargetHandle};
use crate::http::{build_server, AppState};
use crate::store::sqlite::{SqliteOptions, SqliteStore};
use crate::store::{Millis, Store};

/// How often events older than the dedupe retention are pruned.
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// A running revokd: HTTP server plus delivery workers.
pub struct Service {
    addr: SocketAddr,
    store: Arc<SqliteStore>,
    server: actix_web::dev::ServerHandle,
    server_task: JoinHandle<std::io::Result<()>>,
    shutdown: watch::Sender<bool>,
    delivery_task: JoinHandle<()>,
    prune_task: JoinHandle<()>,
}

impl Service {
    /// Opens the store and starts serving on `listener`.
    pub async fn start(config: Config, listener: TcpListener) -> anyhow::Result<Service> {
        let addr = listener
            .local_addr()
            .context("cannot read the listener's address")?;
        let StoreLocation::Sqlite(path) = &config.store.location;
        let store = Arc::new(
            SqliteStore::open(SqliteOptions {
                path: path.clone(),
                synchronous_full: config.store.sqlite_synchronous_full,
            })
            .with_context(|| format!("cannot open the store at {}", path.display()))?,
        );
        let dyn_store: Arc<dyn Store> = store.clone();

        let http = http_client(
            config.delivery.request_timeout,
            config.delivery.connect_timeout,
        )
        .context("cannot build the HTTP client for Appwrite")?;
        let targets: HashMap<String, TargetHandle> = config
            .targets
            .values()
            .map(|target| {
                let handle = TargetHandle {
                    client: AppwriteClient::new(
                        http.clone(),
                        &target.endpoint,
                        &target.project,
                        target.api_key.clone(),
                    ),
                    permits: Arc::new(Semaphore::new(config.delivery.concurrency_per_target)),
                };
                (target.name.clone(), handle)
            })
            .collect();

        let wake = Arc::new(Notify::new());
        let grace = config.server.shutdown_grace;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let delivery = Arc::new(Delivery::new(
            dyn_store.clone(),
            targets,
            config.delivery.clone(),
            wake.clone(),
        ));
        let delivery_task = tokio::spawn(delivery.run(shutdown_rx.clone(), grace));
        let prune_task = tokio::spawn(prune_loop(
            dyn_store.clone(),
            config.store.dedupe_retention,
            shutdown_rx,
        ));

        let state = Arc::new(AppState {
            sources: config.sources,
            rules: config.rules,
            store: dyn_store,
            last_ingest_failure: std::sync::Mutex::new(None),
            wake,
            server: config.server,
        });
        let server = build_server(listener, state).context("cannot start the HTTP server")?;
        let handle = server.handle();
        let server_task = tokio::spawn(server);
        tracing::info!(%addr, store = %path.display(), "revokd listening");
        Ok(Service {
            addr,
            store,
            server: handle,
            server_task,
            shutdown,
            delivery_task,
            prune_task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn store(&self) -> Arc<SqliteStore> {
        self.store.clone()
    }

    /// Stops accepting, lets in-flight requests finish their commit and reply,
    /// lets running jobs finish or releases them, and closes the store.
    ///
    /// The server and the delivery workers drain at the same time, each for
    /// at most the shutdown grace, so the whole stop takes about one grace.
    /// Draining one after the other took up to two graces. Jobs of events
    /// committed while the server drains stay pending for the next start.
    pub async fn stop(self) -> anyhow::Result<()> {
        tracing::info!("shutting down");
        let _ = self.shutdown.send(true);
        let server = async {
            self.server.stop(true).await;
            let _ = self.server_task.await;
        };
        let workers = async {
            let _ = self.delivery_task.await;
        };
        tokio::join!(server, workers);
        let _ = self.prune_task.await;
        self.store
            .close()
            .await
            .context("cannot close the store cleanly")?;
        tracing::info!("stopped");
        Ok(())
    }
}

async fn prune_loop(
    store: Arc<dyn Store>,
    retention: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let before = now_millis() - retention.as_millis() as Millis;
        match store.prune(before).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "pruned events older than the dedupe retention"),
            Err(err) => tracing::warn!(error = %err, "cannot prune old events; trying again later"),
        }
        tokio::select! {
            _ = tokio::time::sleep(PRUNE_INTERVAL) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Runs revokd with `config` until SIGTERM or Ctrl-C.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let listen = config.server.listen;
    let listener = TcpListener::bind(listen)
        .with_context(|| format!("cannot listen on {listen}: is another process using it?"))?;
    listener.set_nonblocking(true)?;
    let service = Service::start(config, listener).await?;
    wait_for_signal().await;
    service.stop().await
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("cannot install the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => tracing::info!("received Ctrl-C"),
            _ = term.recv() => tracing::info!("received SIGTERM"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
