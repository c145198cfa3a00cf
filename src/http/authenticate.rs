//! The authenticate-and-decode step of `POST /hooks/{source}`, with the
//! error responses that each kind's specification defines.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde_json::{json, Value};

use crate::config::SourceConfig;
use crate::jwks::JwksError;
use crate::sources::jwt::TokenRejection;
use crate::sources::{
    oidc_backchannel, ssf, DecodedEvent, Inbound, Rejection, SourceError, Verifier,
};

/// A request that is not accepted: the status, the reason for the log (never
/// sent to the caller) and the body that is sent.
pub(super) struct Refusal {
    pub status: StatusCode,
    pub reason: String,
    body: Value,
    retry_after: Option<&'static str>,
}

impl Refusal {
    pub fn response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if let Some(seconds) = self.retry_after {
            response.insert_header(("Retry-After", seconds));
        }
        response.json(&self.body)
    }
}

/// Verifies the request and decodes its events. For the JWT kinds the
/// checks that need no keys run first: an `ssf` caller without the stream's
/// `Authorization` value gets 400 and causes no JWKS fetch. Then the issuer's
/// keys are loaded. A token signed by an unknown key causes one reload, which
/// the key cache allows at most once a minute per source, before it is rejected.
pub(super) async fn events(
    source: &SourceConfig,
    inbound: &Inbound<'_>,
) -> Result<Vec<DecodedEvent>, Refusal> {
    let verifier = &source.verifier;
    if !verifier.needs_keys() {
        return verifier
            .verify_and_decode(inbound, None)
            .map_err(|error| refusal(verifier, error));
    }
    verifier
        .authenticate_before_keys(inbound)
        .map_err(|error| refusal(verifier, error))?;
    // An oidc-backchannel request has nothing to check before the keys. While
    // no key set has loaded, the cache tries at most one fetch per
    // `FIRST_LOAD_RETRY`, whatever the request rate.
    let Some(cache) = &source.jwks else {
        return Err(keys_unavailable("no key set is configured for this source"));
    };
    let keys = cache
        .keys()
        .await
        .map_err(|err| keys_unavailable(&jwks_reason(&err)))?;
    match verifier.verify_and_decode(inbound, Some(&keys)) {
        Err(SourceError::Token(TokenRejection::UnknownKey { .. })) => {
            let keys = cache
                .refresh_for_unknown_kid()
                .await
                .map_err(|err| keys_unavailable(&jwks_reason(&err)))?;
            verifier
                .verify_and_decode(inbound, Some(&keys))
                .map_err(|error| match error {
                    SourceError::Token(token) => {
                        SourceError::Token(token.unknown_key_as_invalid(unknown_key_code(verifier)))
                    }
                    other => other,
                })
                .map_err(|error| refusal(verifier, error))
        }
        result => result.map_err(|error| refusal(verifier, error)),
    }
}

fn unknown_key_code(verifier: &Verifier) -> &'static str {
    match verifier {
        Verifier::Ssf(_) => ssf::UNKNOWN_KEY_ERROR_CODE,
        _ => oidc_backchannel::ERROR_CODE,
    }
}

fn jwks_reason(err: &JwksError) -> String {
    format!("signing keys unavailable: {err}")
}

/// 503, so the sender retries: a 400 would tell it to drop the event.
fn keys_unavailable(reason: &str) -> Refusal {
    Refusal {
        status: StatusCode::SERVICE_UNAVAILABLE,
        reason: reason.to_string(),
        body: json!({ "error": "signing keys unavailable, retry later" }),
        retry_after: Some("30"),
    }
}

fn refusal(verifier: &Verifier, error: SourceError) -> Refusal {
    match error {
        SourceError::Rejected(Rejection::Unauthorized(reason)) => Refusal {
            status: StatusCode::UNAUTHORIZED,
            reason: reason.to_string(),
            body: json!({ "error": "unauthorized" }),
            retry_after: None,
        },
        SourceError::Rejected(Rejection::Malformed(reason)) => Refusal {
            status: StatusCode::BAD_REQUEST,
            reason,
            body: json!({ "error": "malformed event" }),
            retry_after: None,
        },
        SourceError::Token(token) => {
            let reason = token.reason().to_string();
            let (code, description) = match token {
                TokenRejection::Invalid {
                    code, description, ..
                } => (code, description),
                TokenRejection::UnknownKey { .. } => (
                    unknown_key_code(verifier),
                    "the token is signed with an unknown key".to_string(),
                ),
            };
            // OIDC Back-Channel Logout uses OAuth's error members; RFC 8935
            // (SET push delivery) uses `err` and `description`.
            let body = match verifier {
                Verifier::Ssf(_) => json!({ "err": code, "description": description }),
                _ => json!({ "error": code, "error_description": description }),
            };
            Refusal {
                status: StatusCode::BAD_REQUEST,
                reason,
                body,
                retry_after: None,
            }
        }
    }
}
