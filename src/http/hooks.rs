//! `POST /hooks/{source}`: limit, authenticate, decode, dedupe, apply the
//! rules, commit, and only then respond 2xx.

use std::convert::Infallible;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, MessageBody};
use actix_web::http::header::{ContentType, HeaderMap, CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder};
use bytes::BytesMut;
use futures_util::StreamExt;
use serde_json::{json, Value};

use super::authenticate;
use super::client_ip::{allowed, client_ip};
use super::rejections::{RejectionLog, REQUEST_LOG};
use super::AppState;
use crate::config::SourceConfig;
use crate::delivery::{now_millis, OWN_STATUS_CHANGE_WINDOW};
use crate::rules::Pattern;
use crate::sources::{DecodedEvent, HeaderLookup, Inbound, Rejection, Verifier};
use crate::store::{Ingested, NewEvent, NewJob};

/// Maximum length, in bytes, of a client-chosen value (an unknown source
/// name, a content type) in a log line.
const MAX_LOGGED_VALUE: usize = 64;

struct ActixHeaders<'a>(&'a HeaderMap);

impl HeaderLookup for ActixHeaders<'_> {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.0.get(name).map(|value| value.as_bytes())
    }
}

pub async fn receive(
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
    rejections: web::Data<RejectionLog>,
) -> HttpResponse {
    let source_name = path.into_inner();
    let Some(source) = state.sources.get(&source_name).cloned() else {
        let logged_source = truncate(&source_name, MAX_LOGGED_VALUE);
        rejections.reject(logged_source, "unknown source", 404, None);
        return HttpResponse::NotFound().json(json!({ "error": "unknown source" }));
    };

    if !client_allowed(&request, &state, &source, &rejections) {
        return forbidden();
    }

    let mut payload = payload;
    let body = match read_body(&request, &mut payload, &state).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            rejections.reject(
                &source_name,
                "body over the limit",
                413,
                Some(format!("limit {} bytes", state.server.max_body_bytes)),
            );
            return closing_response(
                HttpResponse::PayloadTooLarge(),
                json!({ "error": "body too large" }),
                payload,
            );
        }
        Err(BodyError::TimedOut) => {
            rejections.reject(
                &source_name,
                "body not received within the request timeout",
                408,
                None,
            );
            return closing_response(
                HttpResponse::RequestTimeout(),
                json!({ "error": "request timeout" }),
                payload,
            );
        }
        Err(BodyError::Broken(reason)) => {
            rejections.reject(&source_name, &reason, 400, None);
            return HttpResponse::BadRequest().json(json!({ "error": "unreadable body" }));
        }
    };

    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("(not text)"));
    if !source.verifier.accepts_content_type(content_type) {
        let logged_type = truncate(content_type.unwrap_or(""), MAX_LOGGED_VALUE);
        rejections.reject(
            &source_name,
            "content type not accepted",
            415,
            Some(format!("content type {logged_type:?}")),
        );
        return HttpResponse::UnsupportedMediaType()
            .json(json!({ "error": "unsupported content type" }));
    }

    let headers = ActixHeaders(request.headers());
    let now = now_millis();
    let inbound = Inbound {
        headers: &headers,
        body: &body,
        now: now / 1000,
    };
    let events = match authenticate::events(&source, &inbound).await {
        Ok(events) => events,
        Err(refusal) => {
            rejections.reject(&source_name, &refusal.reason, refusal.status.as_u16(), None);
            return refusal.response();
        }
    };

    let mut batch = Vec::with_capacity(events.len());
    for event in &events {
        batch.push(build_event(&state, &source_name, &source.verifier, event, now).await);
    }
    let summaries: Vec<(String, Option<String>)> = batch
        .iter()
        .map(|event| {
            (
                event.types.first().cloned().unwrap_or_default(),
                event.ignored_reason.clone(),
            )
        })
        .collect();

    let results = match state.store.ingest(batch).await {
        Ok(results) => {
            state.record_ingest(true);
            results
        }
        Err(err) => {
            state.record_ingest(false);
            tracing::error!(source = %source_name, error = %err, "cannot commit the event; responding 503 so the sender retries");
            return HttpResponse::ServiceUnavailable()
                .insert_header(("Retry-After", "5"))
                .json(json!({ "error": "store unavailable, retry later" }));
        }
    };

    let (mut accepted, mut duplicates, mut ignored) = (0, 0, 0);
    for (result, (event_type, ignored_reason)) in results.iter().zip(summaries) {
        match result {
            Ingested::New { event_id, jobs } if *jobs > 0 => {
                accepted += 1;
                tracing::debug!(target: REQUEST_LOG, %event_id, source = %source_name, jobs, "event accepted");
            }
            Ingested::New { event_id, .. } => {
                ignored += 1;
                tracing::info!(target: REQUEST_LOG, %event_id, source = %source_name, event_type = %event_type,
                    reason = ignored_reason.as_deref().unwrap_or(""), "event ignored");
            }
            Ingested::Duplicate { event_id } => {
                duplicates += 1;
                tracing::info!(target: REQUEST_LOG, %event_id, source = %source_name, event_type = %event_type,
                    reason = "delivery seen before", "duplicate event");
            }
        }
    }
    if accepted > 0 {
        state.wake.notify_one();
    }
    match source.verifier {
        // RFC 8935: a SET that was received and validated gets 202, no body.
        Verifier::Ssf(_) => HttpResponse::Accepted().finish(),
        // OIDC Back-Channel Logout: 200, and the response must not be cached.
        Verifier::OidcBackchannel(_) => HttpResponse::Ok()
            .insert_header(("Cache-Control", "no-store"))
            .finish(),
        _ => HttpResponse::Ok().json(json!({
            "accepted": accepted,
            "duplicates": duplicates,
            "ignored": ignored,
        })),
    }
}

/// Builds a response after which the connection is closed, with the unread
/// request body left unread.
///
/// `force_close` is used because actix replaces a `Connection` header with
/// its own choice. That alone is not enough: actix-http 3.20 reads and
/// discards the rest of a chunked body whose reader was dropped, for as long
/// as the client sends. It closes instead when the reader is still alive as
/// the response ends, so the response body keeps `payload` until then.
fn closing_response(
    mut builder: HttpResponseBuilder,
    json: Value,
    payload: web::Payload,
) -> HttpResponse {
    let bytes = web::Bytes::from(json.to_string());
    builder
        .force_close()
        .content_type(ContentType::json())
        .body(BodyHoldingPayload {
            bytes: Some(bytes),
            _payload: payload,
        })
}

/// A fixed response body that keeps the request payload alive until the
/// body is dropped.
struct BodyHoldingPayload {
    bytes: Option<web::Bytes>,
    _payload: web::Payload,
}

impl MessageBody for BodyHoldingPayload {
    type Error = Infallible;

    fn size(&self) -> BodySize {
        BodySize::Sized(self.bytes.as_ref().map_or(0, |bytes| bytes.len() as u64))
    }

    fn poll_next(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<web::Bytes, Infallible>>> {
        Poll::Ready(self.get_mut().bytes.take().map(Ok))
    }
}

/// Returns `text` cut to at most `max` bytes, at a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `GET /hooks/{source}`: Okta's one-time verification request. Okta sends
/// `X-Okta-Verification-Challenge` and expects the value back as
/// `{"verification": …}`. Other kinds take only POST.
pub async fn challenge(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    rejections: web::Data<RejectionLog>,
) -> HttpResponse {
    let source_name = path.into_inner();
    let Some(source) = state.sources.get(&source_name).cloned() else {
        rejections.reject(
            truncate(&source_name, MAX_LOGGED_VALUE),
            "unknown source",
            404,
            None,
        );
        return HttpResponse::NotFound().json(json!({ "error": "unknown source" }));
    };
    if !client_allowed(&request, &state, &source, &rejections) {
        return forbidden();
    }
    let Verifier::Okta(okta) = &source.verifier else {
        return HttpResponse::MethodNotAllowed()
            .insert_header(("Allow", "POST"))
            .json(json!({ "error": "method not allowed" }));
    };
    let headers = ActixHeaders(request.headers());
    let inbound = Inbound {
        headers: &headers,
        body: &[],
        now: now_millis() / 1000,
    };
    match okta.verification_response(&inbound) {
        Ok(body) => {
            tracing::info!(target: REQUEST_LOG, source = %source_name, "returned the Okta verification challenge");
            HttpResponse::Ok().json(body)
        }
        Err(Rejection::Unauthorized(reason)) => {
            rejections.reject(&source_name, reason, 401, None);
            HttpResponse::Unauthorized().json(json!({ "error": "unauthorized" }))
        }
        Err(Rejection::Malformed(reason)) => {
            rejections.reject(&source_name, &reason, 400, None);
            HttpResponse::BadRequest().json(json!({ "error": "malformed request" }))
        }
    }
}

/// Checks the client address against the source's `allow_ips`, and logs
/// the rejection when it is outside them.
fn client_allowed(
    request: &HttpRequest,
    state: &AppState,
    source: &SourceConfig,
    rejections: &RejectionLog,
) -> bool {
    if source.allow_ips.is_empty() {
        return true;
    }
    let forwarded = request
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    let client = request
        .peer_addr()
        .and_then(|peer| client_ip(peer.ip(), forwarded, &state.server.trusted_proxies));
    if allowed(client, &source.allow_ips) {
        return true;
    }
    let shown = client.map_or_else(|| "unknown".to_string(), |ip: IpAddr| ip.to_string());
    rejections.reject(
        &source.name,
        "client address not in allow_ips",
        403,
        Some(format!("client {shown}")),
    );
    false
}

fn forbidden() -> HttpResponse {
    HttpResponse::Forbidden().json(json!({ "error": "forbidden" }))
}

enum BodyError {
    TooLarge,
    TimedOut,
    Broken(String),
}

/// Reads the body up to the limit. A declared length over the limit is
/// rejected before reading; a stream that grows past it is cut off.
async fn read_body(
    request: &HttpRequest,
    payload: &mut web::Payload,
    state: &AppState,
) -> Result<web::Bytes, BodyError> {
    let limit = state.server.max_body_bytes;
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(BodyError::TooLarge);
    }
    let read = async {
        let mut body = BytesMut::with_capacity(declared.unwrap_or(4096).min(limit));
        while let Some(chunk) = payload.next().await {
            let chunk =
                chunk.map_err(|err| BodyError::Broken(format!("body read failed: {err}")))?;
            if body.len() + chunk.len() > limit {
                return Err(BodyError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    tokio::time::timeout(state.server.request_timeout, read)
        .await
        .map_err(|_| BodyError::TimedOut)?
}

/// Turns one decoded event into what the store commits: its jobs, or the
/// reason it is ignored.
async fn build_event(
    state: &AppState,
    source: &str,
    verifier: &Verifier,
    event: &DecodedEvent,
    now: i64,
) -> NewEvent {
    let id = ulid::Ulid::new().to_string();
    let mut new_event = NewEvent {
        id,
        source: source.to_string(),
        delivery_key: event.delivery_key.clone(),
        types: event.types.clone(),
        received_at: now,
        occurred_at: event.occurred_at,
        ignored_reason: None,
        jobs: Vec::new(),
    };
    if let Verifier::Appwrite(_) = verifier {
        if let Some(reason) = own_appwrite_echo(state, event, now).await {
            new_event.ignored_reason = Some(reason);
            return new_event;
        }
    }
    let evaluation = state.rules.evaluate(source, event);
    if evaluation.jobs.is_empty() {
        new_event.ignored_reason = Some(evaluation.ignored_reason());
        return new_event;
    }
    new_event.jobs = evaluation
        .jobs
        .into_iter()
        .map(|spec| NewJob {
            id: ulid::Ulid::new().to_string(),
            rule: spec.rule.to_string(),
            action: spec.action.as_str().to_string(),
            target: spec.target.to_string(),
            user_kind: spec.user_kind,
            user: spec.user,
            session_id: spec.session_id,
            event_type: spec.event_type,
            dry_run: spec.dry_run,
        })
        .collect();
    new_event
}

/// Recognises the Appwrite events that revokd's own calls cause, so no rule
/// set can loop: every delete-all-sessions event, and a status change to the
/// value revokd itself set within the last ten minutes.
async fn own_appwrite_echo(state: &AppState, event: &DecodedEvent, now: i64) -> Option<String> {
    static SESSIONS_DELETE: OnceLock<Pattern> = OnceLock::new();
    static STATUS_UPDATE: OnceLock<Pattern> = OnceLock::new();
    let sessions_delete =
        SESSIONS_DELETE.get_or_init(|| Pattern::parse("users.*.sessions.delete").expect("valid"));
    let status_update =
        STATUS_UPDATE.get_or_init(|| Pattern::parse("users.*.update.status").expect("valid"));

    if event.types.iter().any(|name| sessions_delete.matches(name)) {
        return Some(
            "all sessions deleted: an effect of delete_sessions, nothing left to revoke".into(),
        );
    }
    if !event.types.iter().any(|name| status_update.matches(name)) {
        return None;
    }
    let user = event.payload.get("$id").and_then(Value::as_str)?;
    let status = event.payload.get("status").and_then(Value::as_bool)?;
    let since = now - OWN_STATUS_CHANGE_WINDOW;
    match state.store.status_changed_since(user, status, since).await {
        Ok(true) => Some("status change made by revokd itself".into()),
        Ok(false) => None,
        Err(err) => {
            // Acting on the event is the safe side: the actions are idempotent.
            tracing::warn!(error = %err, "cannot check revokd's own status changes; applying rules");
            None
        }
    }
}
