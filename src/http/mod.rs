//! The HTTP interface: `POST /hooks/{source}`, `GET /healthz`, `GET /readyz`.
//!
//! The server is built from a bound listener, so tests can bind port 0.
//! No route ever responds with a redirect: Appwrite counts a 3xx as delivered.

mod authenticate;
mod client_ip;
mod hooks;
pub mod rejections;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::dev::Server;
use actix_web::{web, App, HttpResponse, HttpServer};
use tokio::sync::Notify;

use crate::config::{ServerConfig, SourceConfig};
use crate::rules::RuleSet;
use crate::store::Store;

use self::rejections::{spawn_flush_task, RejectionLog};

/// The state shared by every request handler.
pub struct AppState {
    pub sources: BTreeMap<String, Arc<SourceConfig>>,
    pub rules: RuleSet,
    pub store: Arc<dyn Store>,
    /// Woken after a commit that created jobs, so workers start at once.
    pub wake: Arc<Notify>,
    pub server: ServerConfig,
    /// When the last ingest failed, unless one succeeded since. `/readyz`
    /// reports unready for [`INGEST_FAILURE_WINDOW`] after it.
    pub last_ingest_failure: Mutex<Option<Instant>>,
}

/// How long a failed ingest keeps `/readyz` at 503: the `Retry-After` that
/// the hooks route sends with its 503.
///
/// The store's own write check updates one row in place. When the disk is
/// full, that update can still commit while every ingest, which needs new
/// pages, fails. After the window, `/readyz` follows the write check again,
/// so a load balancer sends requests again and the next ingest tests the store.
pub const INGEST_FAILURE_WINDOW: Duration = Duration::from_secs(5);

impl AppState {
    /// Records whether an ingest committed, for `/readyz`.
    pub fn record_ingest(&self, committed: bool) {
        let mut last = self
            .last_ingest_failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *last = if committed {
            None
        } else {
            Some(Instant::now())
        };
    }

    fn recent_ingest_failure(&self) -> Option<Duration> {
        let last = self
            .last_ingest_failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        last.map(|at| at.elapsed())
            .filter(|age| *age < INGEST_FAILURE_WINDOW)
    }
}

/// Builds the HTTP server on `listener`; the caller runs and stops it.
///
/// Called inside a tokio runtime, it also starts the task that writes the
/// summaries of repeated rejections (see [`rejections`]).
pub fn build_server(listener: TcpListener, state: Arc<AppState>) -> std::io::Result<Server> {
    let workers = state.server.workers;
    let grace = state.server.shutdown_grace;
    let request_timeout = state.server.request_timeout;
    let data = web::Data::from(state);
    let rejection_log = Arc::new(RejectionLog::new());
    spawn_flush_task(&rejection_log);
    let rejections = web::Data::from(rejection_log);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(rejections.clone())
            .route("/hooks/{source}", web::post().to(hooks::receive))
            .route("/hooks/{source}", web::get().to(hooks::challenge))
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .default_service(web::to(not_found))
    })
    .workers(workers)
    // Headers must arrive within the request timeout; the body has its own
    // deadline in the handler.
    .client_request_timeout(request_timeout)
    .shutdown_timeout(grace.as_secs().max(1))
    .disable_signals()
    .listen(listener)?
    .run();
    Ok(server)
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if let Some(age) = state.recent_ingest_failure() {
        tracing::warn!(
            failed_ms_ago = age.as_millis() as u64,
            "not ready: the last ingest failed"
        );
        return HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "5"))
            .json(serde_json::json!({ "status": "store unavailable" }));
    }
    match state.store.check_writable().await {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({ "status": "ready" })),
        Err(err) => {
            tracing::warn!(error = %err, "not ready: the store cannot commit");
            HttpResponse::ServiceUnavailable()
                .insert_header(("Retry-After", "5"))
                .json(serde_json::json!({ "status": "store unavailable" }))
        }
    }
}

async fn not_found() -> HttpResponse {
    HttpResponse::NotFound().json(serde_json::json!({ "error": "not found" }))
}
