//! The HTTP interface: `POST /hooks/{source}`, `GET /healthz`, `GET /readyz`.
//!
//! The server is built from a bound listener, so tests can bind port 0.
//! No route ever answers with a redirect: Appwrite counts a 3xx as delivered.

mod client_ip;
mod hooks;
pub mod rejections;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{web, App, HttpResponse, HttpServer};
use tokio::sync::Notify;

use crate::config::{ServerConfig, SourceConfig};
use crate::rules::RuleSet;
use crate::store::Store;

use self::rejections::{spawn_flush_task, RejectionLog};

/// What every request handler shares.
pub struct AppState {
    pub sources: BTreeMap<String, Arc<SourceConfig>>,
    pub rules: RuleSet,
    pub store: Arc<dyn Store>,
    /// Woken after a commit that created jobs, so workers start at once.
    pub wake: Arc<Notify>,
    pub server: ServerConfig,
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
