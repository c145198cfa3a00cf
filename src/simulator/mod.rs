//! A stand-in Appwrite 1.9.6 server for the demo, tests and benchmarks.
//!
//! It serves the four Users API routes revokd calls (list sessions, delete all sessions, delete
//! one session, update status) with Appwrite's check order and error bodies. It records every
//! `/v1` request and can inject faults (error status, rate limit, delay, dropped connection).
//! The code is written from Appwrite's documented behaviour and shares no types with revokd's
//! Appwrite client, so a misreading of the API cannot hide in both.

mod api;
mod cli;
mod http;
mod models;
mod state;

use std::net::SocketAddr;

use actix_web::{web, App, HttpServer};
use tokio::task::JoinHandle;

pub use cli::{run, SimulateArgs};
pub use state::{Fault, RecordedRequest};

use state::SharedState;

/// How long `stop` waits for requests in flight, including delayed ones, before closing them.
const SHUTDOWN_TIMEOUT_SECS: u64 = 5;

/// A running simulated Appwrite server. Dropping it without `stop` stops it without waiting.
pub struct Simulator {
    addr: SocketAddr,
    state: web::Data<SharedState>,
    handle: actix_web::dev::ServerHandle,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Simulator {
    /// Binds `addr` (e.g. 127.0.0.1:0) and serves in background tasks on the current tokio runtime.
    pub async fn start(addr: SocketAddr) -> std::io::Result<Simulator> {
        let listener = std::net::TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let state = web::Data::new(SharedState::default());

        let app_state = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .default_service(web::to(http::handle))
        })
        .on_connect(http::capture_client_socket)
        .disable_signals()
        .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
        .listen(listener)?
        .run();

        let handle = server.handle();
        let task = tokio::spawn(server);
        tracing::info!(%addr, "Appwrite simulator started");
        Ok(Simulator {
            addr,
            state,
            handle,
            task: Some(task),
        })
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
    pub async fn stop(mut self) {
        self.handle.stop(true).await;
        if let Some(task) = self.task.take() {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::error!(%error, "Appwrite simulator failed"),
                Err(error) => tracing::error!(%error, "Appwrite simulator task failed"),
            }
        }
        tracing::info!(addr = %self.addr, "Appwrite simulator stopped");
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if self.task.is_some() {
            // `stop` sends the command right away; the returned future only waits for completion.
            drop(self.handle.stop(false));
        }
    }
}
