//! The baseline: a bare actix-web server with revokd's routes and worker
//! count, which reads each hook body and responds 200 without verifying or
//! storing anything. It is the upper bound for revokd on the same machine.

use std::net::SocketAddr;
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use bytes::BytesMut;
use futures_util::StreamExt;

/// revokd's default `server.max_body_bytes`.
const MAX_BODY_BYTES: usize = 1024 * 1024;

async fn receive(mut payload: web::Payload) -> HttpResponse {
    let mut body = BytesMut::with_capacity(4096);
    while let Some(chunk) = payload.next().await {
        let Ok(chunk) = chunk else {
            return HttpResponse::BadRequest().finish();
        };
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return HttpResponse::PayloadTooLarge().finish();
        }
        body.extend_from_slice(&chunk);
    }
    // The same response body revokd sends for one accepted event.
    HttpResponse::Ok().json(serde_json::json!({
        "accepted": 1,
        "duplicates": 0,
        "ignored": 0,
    }))
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// Serves on `listen` until SIGTERM, Ctrl-C or `max_lifetime`, whichever comes first.
pub async fn serve(
    listen: SocketAddr,
    workers: usize,
    max_lifetime: Duration,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        listen.ip().is_loopback(),
        "--listen {listen} is not a loopback address; the baseline only binds 127.0.0.1 or ::1"
    );
    let server = HttpServer::new(|| {
        App::new()
            .route("/hooks/{source}", web::post().to(receive))
            .route("/healthz", web::get().to(healthz))
    })
    .workers(workers)
    .disable_signals()
    .bind(listen)?
    .run();
    let handle = server.handle();
    let task = tokio::spawn(server);
    eprintln!("baseline listening on {listen} with {workers} workers");

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
        _ = tokio::time::sleep(max_lifetime) => eprintln!("baseline: --max-lifetime reached"),
    }
    handle.stop(true).await;
    task.await??;
    Ok(())
}
