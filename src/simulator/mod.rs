//! A stand-in Appwrite 1.9.6 server for the demo, tests and benchmarks.
//!
//! It serves the four Users API routes revokd calls (list sessions, delete all sessions, delete
//! one session, update status) with Appwrite's check order and error bodies. It records every
//! `/v1` request and can inject faults (error status, rate limit, delay, dropped connection). It
//! can also close its listening socket for a while, so that clients get connection refused.
//! The code is written from Appwrite's documented behaviour and shares no types with revokd's
//! Appwrite client, so a misreading of the API cannot hide in both.

mod api;
mod cli;
mod http;
mod models;
mod state;

use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use actix_web::{web, App, HttpServer};
use tokio::task::JoinHandle;

pub use cli::{run, SimulateArgs};
pub use state::{Fault, RecordedRequest, WebhookState};

use state::SharedState;

/// How long `stop` waits for requests in flight, including delayed ones, before closing them.
const SHUTDOWN_TIMEOUT_SECS: u64 = 5;

/// How long [`Simulator::set_refusing`] retries binding the port again.
const REBIND_TIMEOUT: Duration = Duration::from_secs(5);

/// A running simulated Appwrite server. Dropping it without `stop` stops it without waiting.
pub struct Simulator {
    addr: SocketAddr,
    state: web::Data<SharedState>,
    /// The HTTP server while it listens. `None` while connections are refused
    /// (see [`Simulator::set_refusing`]) and after `stop`.
    server: Mutex<Option<RunningServer>>,
}

struct RunningServer {
    handle: actix_web::dev::ServerHandle,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// Serves `state` on `listener` in a background task on the current tokio runtime.
    fn spawn(
        listener: std::net::TcpListener,
        state: web::Data<SharedState>,
    ) -> std::io::Result<RunningServer> {
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .default_service(web::to(http::handle))
        })
        .on_connect(http::capture_client_socket)
        .disable_signals()
        .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
        .listen(listener)?
        .run();
        let handle = server.handle();
        let task = tokio::spawn(server);
        Ok(RunningServer { handle, task })
    }

    /// Stops the server and waits for its task. `graceful` lets requests in
    /// flight finish; otherwise their connections are closed at once.
    async fn stop(self, graceful: bool) {
        self.handle.stop(graceful).await;
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "Appwrite simulator failed"),
            Err(error) => tracing::error!(%error, "Appwrite simulator task failed"),
        }
    }
}

impl Simulator {
    /// Binds `addr` (e.g. 127.0.0.1:0) and serves in background tasks on the current tokio runtime.
    pub async fn start(addr: SocketAddr) -> std::io::Result<Simulator> {
        let listener = std::net::TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let state = web::Data::new(SharedState::default());
        let server = RunningServer::spawn(listener, state.clone())?;
        tracing::info!(%addr, "Appwrite simulator started");
        Ok(Simulator {
            addr,
            state,
            server: Mutex::new(Some(server)),
        })
    }

    /// Closes the listening socket, so that new connections to [`Simulator::addr`]
    /// are refused, or binds the same address again and serves as before.
    /// Users, sessions, the request log and queued faults are kept. Does
    /// nothing when already in the requested mode.
    ///
    /// NOTE: the server's worker threads close the open connections,
    /// including requests in flight, without being waited for. A request
    /// sent on a pooled keep-alive connection right after this call can
    /// still get a response.
    ///
    /// Binding again fails with `AddrInUse` when another socket took the port
    /// in the meantime. It is retried for up to [`REBIND_TIMEOUT`].
    pub async fn set_refusing(&self, refusing: bool) -> std::io::Result<()> {
        if refusing {
            let running = lock(&self.server).take();
            if let Some(running) = running {
                running.stop(false).await;
                tracing::info!(addr = %self.addr, "Appwrite simulator refuses connections");
            }
            return Ok(());
        }
        if lock(&self.server).is_some() {
            return Ok(());
        }
        let listener = bind_again(self.addr).await?;
        let server = RunningServer::spawn(listener, self.state.clone())?;
        *lock(&self.server) = Some(server);
        tracing::info!(addr = %self.addr, "Appwrite simulator accepts connections again");
        Ok(())
    }

    /// Returns true while the simulator refuses connections (see [`Simulator::set_refusing`]).
    pub fn is_refusing(&self) -> bool {
        lock(&self.server).is_none()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL including `/v1`, e.g. "http://127.0.0.1:41234/v1".
    pub fn endpoint(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Creates an empty project, unless it exists already.
    pub fn add_project(&self, project: &str) {
        self.state.add_project(project);
    }

    /// Adds or replaces API key `key` with `scopes`, creating the project when needed.
    pub fn add_key(&self, project: &str, key: &str, scopes: &[&str]) {
        self.state.add_key(project, key, scopes);
    }

    /// Creates an active user with no sessions, creating the project when needed. For an
    /// existing user only the email changes.
    pub fn add_user(&self, project: &str, user_id: &str, email: &str) {
        self.state.add_user(project, user_id, email);
    }

    /// Adds a session to an existing user; returns nothing, panics only on a missing user (test helper).
    /// A session ID that belongs to another user of the project moves to this user.
    pub fn add_session(&self, project: &str, user_id: &str, session_id: &str) {
        assert!(
            self.state.add_session(project, user_id, session_id),
            "add_session: user '{user_id}' does not exist in project '{project}'"
        );
    }

    /// Returns the user's session IDs in creation order. None when the user does not exist.
    /// Links a user to an account at an OAuth provider, so
    /// `GET /users/identities` finds it by `providerUid`. Panics on a
    /// missing user (test helper).
    pub fn add_identity(&self, project: &str, user_id: &str, provider: &str, provider_uid: &str) {
        assert!(
            self.state
                .add_identity(project, user_id, provider, provider_uid),
            "user {user_id} does not exist in project {project}"
        );
    }

    /// Adds or replaces a webhook listed by `GET /webhooks`.
    pub fn put_webhook(&self, project: &str, webhook: WebhookState) {
        self.state.put_webhook(project, webhook);
    }

    pub fn sessions(&self, project: &str, user_id: &str) -> Option<Vec<String>> {
        self.state.sessions(project, user_id)
    }

    /// Returns the user's `status` (false = blocked). None when the user does not exist.
    pub fn user_status(&self, project: &str, user_id: &str) -> Option<bool> {
        self.state.user_status(project, user_id)
    }

    /// Returns every request received on the Appwrite API routes, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests()
    }

    pub fn clear_requests(&self) {
        self.state.clear_requests();
    }

    /// Queues faults; each applies to exactly one next API request, in order.
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.push_faults(faults);
    }

    /// Gracefully stops the server.
    pub async fn stop(self) {
        let running = lock(&self.server).take();
        if let Some(running) = running {
            running.stop(true).await;
        }
        tracing::info!(addr = %self.addr, "Appwrite simulator stopped");
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(running) = lock(&self.server).take() {
            // `stop` sends the command right away; the returned future only waits for completion.
            drop(running.handle.stop(false));
        }
    }
}

/// Locks `mutex`, recovering the data if another thread panicked while holding the lock.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Binds `addr` again after [`Simulator::set_refusing`] closed it, retrying
/// while the port is still in use.
async fn bind_again(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let deadline = tokio::time::Instant::now() + REBIND_TIMEOUT;
    loop {
        match std::net::TcpListener::bind(addr) {
            Ok(listener) => return Ok(listener),
            Err(error)
                if error.kind() == std::io::ErrorKind::AddrInUse
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => return Err(error),
        }
    }
}
