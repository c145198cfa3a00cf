//! The actix-web service: records `/v1` requests, applies queued faults and turns API results into
//! HTTP responses.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Extensions;
use actix_web::http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;

use super::api::{respond, ApiRequest, ApiResponse};
use super::models::error_body;
use super::state::{now_ms, Fault, RecordedRequest, SharedState};

/// Request bodies above this size are rejected with 400. Users API bodies are a few bytes.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A second handle to the client's TCP socket, kept per connection so that a `Drop` fault can shut
/// the connection down from inside a handler.
#[derive(Clone)]
struct ClientSocket(Arc<std::net::TcpStream>);

/// Stores a [`ClientSocket`] in the connection data. This is the `HttpServer::on_connect` callback.
pub(crate) fn capture_client_socket(connection: &dyn Any, data: &mut Extensions) {
    let Some(stream) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() else {
        return;
    };
    match clone_socket(stream) {
        Ok(socket) => {
            data.insert(ClientSocket(Arc::new(socket)));
        }
        Err(error) => {
            tracing::warn!(%error, "failed to duplicate client socket, so Drop faults on this connection will not close it")
        }
    }
}

#[cfg(unix)]
fn clone_socket(stream: &actix_web::rt::net::TcpStream) -> std::io::Result<std::net::TcpStream> {
    use std::os::fd::AsFd;
    Ok(std::net::TcpStream::from(
        stream.as_fd().try_clone_to_owned()?,
    ))
}

#[cfg(windows)]
fn clone_socket(stream: &actix_web::rt::net::TcpStream) -> std::io::Result<std::net::TcpStream> {
    use std::os::windows::io::AsSocket;
    Ok(std::net::TcpStream::from(
        stream.as_socket().try_clone_to_owned()?,
    ))
}

/// Shuts down both directions of the client's connection, so the client reads EOF with no
/// response. The response actix tries to write afterwards fails and is discarded.
fn drop_connection(request: &HttpRequest) {
    let Some(ClientSocket(socket)) = request.conn_data::<ClientSocket>() else {
        tracing::warn!(
            "Drop fault not applied because no client socket is stored for this connection"
        );
        return;
    };
    if let Err(error) = socket.shutdown(std::net::Shutdown::Both) {
        tracing::warn!(%error, "failed to shut down client connection for Drop fault");
    }
}

/// Handles every request: `/v1` paths go to the simulated API, other paths get a plain-text 404
/// like a console front end that was sent a URL without `/v1`.
pub(crate) async fn handle(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<SharedState>,
) -> HttpResponse {
    let path = request.path().to_owned();
    let route_path = match path.strip_prefix("/v1") {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest.to_owned(),
        _ => {
            return HttpResponse::NotFound()
                .content_type("text/plain; charset=utf-8")
                .body("Not Found")
        }
    };

    let (body, body_too_large) = read_body(payload).await;
    let seq = state.record(record_of(&request, &body));

    let fault = state.pop_fault();
    if let Some(fault) = &fault {
        tracing::info!(method = %request.method(), %path, ?fault, "applying fault");
    }
    let response = match fault {
        Some(Fault::Drop) => {
            drop_connection(&request);
            return HttpResponse::InternalServerError().finish();
        }
        Some(Fault::Status {
            status,
            error_type,
            json,
        }) => status_fault(status, &error_type, json),
        Some(Fault::RateLimited { retry_after_secs }) => rate_limited(retry_after_secs),
        Some(Fault::Slow { delay_ms }) => {
            let api_request = api_request_of(&request, route_path, body);
            let state = Arc::clone(&state);
            // The work runs in its own task so it finishes and is recorded even when the client
            // gives up and actix drops this handler.
            let task = tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                let response = answer(&state, &api_request, body_too_large);
                state.set_status(seq, sent_status(response.status()).as_u16());
                response
            });
            match task.await {
                Ok(response) => response,
                Err(error) => {
                    tracing::error!(%error, "delayed request task failed");
                    ApiResponse::error(500, "general_unknown", "Server Error")
                }
            }
        }
        None => {
            let api_request = api_request_of(&request, route_path, body);
            answer(&state, &api_request, body_too_large)
        }
    };

    let response = into_http_response(response);
    let status = response.status().as_u16();
    state.set_status(seq, status);
    tracing::debug!(method = %request.method(), %path, status, "request handled");
    response
}

/// Runs the API logic, unless the body was cut off at [`MAX_BODY_BYTES`].
fn answer(state: &SharedState, request: &ApiRequest, body_too_large: bool) -> ApiResponse {
    if body_too_large {
        return ApiResponse::error(
            400,
            "general_argument_invalid",
            format!("Request body exceeds {MAX_BODY_BYTES} bytes"),
        );
    }
    respond(state, request)
}

/// Reads the body up to [`MAX_BODY_BYTES`]. The returned flag is true when the client sent more.
async fn read_body(mut payload: web::Payload) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(error) => {
                tracing::warn!(%error, "failed to read request body");
                break;
            }
        };
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return (body, true);
        }
        body.extend_from_slice(&chunk);
    }
    (body, false)
}

fn record_of(request: &HttpRequest, body: &[u8]) -> RecordedRequest {
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in request.headers() {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(name.as_str().to_ascii_lowercase())
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(&value);
            })
            .or_insert(value);
    }
    RecordedRequest {
        method: request.method().to_string(),
        path: request.path().to_owned(),
        query: request.query_string().to_owned(),
        headers,
        body: String::from_utf8_lossy(body).into_owned(),
        status: 0,
        at_ms: now_ms(),
    }
}

fn api_request_of(request: &HttpRequest, route_path: String, body: Vec<u8>) -> ApiRequest {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
    };
    ApiRequest {
        method: request.method().to_string(),
        route_path,
        query: request.query_string().to_owned(),
        project_header: header("x-appwrite-project"),
        key: header("x-appwrite-key"),
        content_type: header("content-type"),
        body,
    }
}

fn status_fault(status: u16, error_type: &str, json: bool) -> ApiResponse {
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|code| code.canonical_reason())
        .unwrap_or("Error");
    if json {
        ApiResponse::error(status, error_type, reason)
    } else {
        ApiResponse::Text {
            status,
            body: format!("{status} {reason}\n"),
        }
    }
}

fn rate_limited(retry_after_secs: u64) -> ApiResponse {
    let now_secs = u64::try_from(now_ms() / 1000).unwrap_or(0);
    let reset = now_secs.saturating_add(retry_after_secs);
    ApiResponse::Json {
        status: 429,
        body: error_body(
            429,
            "general_rate_limit_exceeded",
            &format!("Too many requests: retry after {retry_after_secs} seconds"),
        ),
        headers: vec![
            ("Retry-After".to_owned(), retry_after_secs.to_string()),
            ("X-RateLimit-Limit".to_owned(), "60".to_owned()),
            ("X-RateLimit-Remaining".to_owned(), "0".to_owned()),
            ("X-RateLimit-Reset".to_owned(), reset.to_string()),
        ],
    }
}

/// Converts a status number to the status actually sent: 500 when `code` is not a valid HTTP
/// status, which only a `Status` fault can produce.
fn sent_status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn into_http_response(response: ApiResponse) -> HttpResponse {
    let status_of = sent_status;
    match response {
        ApiResponse::NoContent => HttpResponse::NoContent().finish(),
        ApiResponse::Text { status, body } => HttpResponse::build(status_of(status))
            .content_type("text/plain; charset=utf-8")
            .body(body),
        ApiResponse::Json {
            status,
            body,
            headers,
        } => {
            let mut builder = HttpResponse::build(status_of(status));
            builder.insert_header((CONTENT_TYPE, "application/json"));
            for (name, value) in headers {
                if let (Ok(name), Ok(value)) = (
                    HeaderName::try_from(name.as_str()),
                    HeaderValue::try_from(value.as_str()),
                ) {
                    builder.insert_header((name, value));
                }
            }
            builder.body(body.to_string())
        }
    }
}
