//! Source kinds: verify a request on its raw bytes, then decode it into events.
//!
//! Everything here is pure: no I/O, no store, and the clock is passed in, so the
//! verifiers test without a server.

pub mod appwrite;
pub mod auth0;
pub mod body_hmac;
pub mod jwt;
pub mod oidc_backchannel;
pub mod okta;
pub mod ssf;
pub mod standard_webhooks;
pub mod stripe_style;
mod verifier;

pub use verifier::{is_json_media_type, SourceError, Verifier};

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Case-insensitive header access over whatever the HTTP layer uses.
pub trait HeaderLookup {
    /// Returns the first value of `name` (given in lowercase), as raw bytes.
    fn header(&self, name: &str) -> Option<&[u8]>;
}

/// Header list for tests and tools: names compare case-insensitively.
impl HeaderLookup for [(String, String)] {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_bytes())
    }
}

impl HeaderLookup for Vec<(String, String)> {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.as_slice().header(name)
    }
}

/// One inbound request, as a verifier reads it.
pub struct Inbound<'a> {
    pub headers: &'a dyn HeaderLookup,
    /// The body exactly as received.
    pub body: &'a [u8],
    /// The verifier's clock, in Unix seconds.
    pub now: i64,
}

/// One event decoded from a verified request.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedEvent {
    /// Deduplication key: the sender's delivery id, else a digest of the body.
    pub delivery_key: String,
    /// Event type names. Appwrite sends a set of names; other kinds send one.
    pub types: Vec<String>,
    /// The document that rules address with JSON Pointers.
    pub payload: Value,
    /// The time the sender gives for the event, in Unix milliseconds.
    pub occurred_at: Option<i64>,
}

/// The reason a request was rejected. It is logged, never sent to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Authentication failed: HTTP 401.
    #[error("authentication failed: {0}")]
    Unauthorized(&'static str),
    /// Authenticated, but the body cannot be decoded: HTTP 400.
    #[error("malformed event: {0}")]
    Malformed(String),
}

/// Reads a header as UTF-8 text, trimmed. Non-UTF-8 values count as absent.
pub fn header_str<'a>(headers: &'a dyn HeaderLookup, name: &str) -> Option<&'a str> {
    let raw = headers.header(name)?;
    std::str::from_utf8(raw).ok().map(str::trim)
}

/// Parses a verified body as JSON.
///
/// The message names the position of the error, never the body's content.
/// serde_json writes a fixed phrase for syntax and end-of-input errors. Its
/// data errors can quote input, so their text is replaced.
pub(crate) fn parse_json_body(body: &[u8]) -> Result<Value, Rejection> {
    serde_json::from_slice(body).map_err(|error| json_body_rejection(&error))
}

/// Turns a JSON error on a verified body into a rejection that names the
/// error's position but none of the body's content.
pub(crate) fn json_body_rejection(error: &serde_json::Error) -> Rejection {
    let message = match error.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => error.to_string(),
        _ => format!(
            "invalid data at line {} column {}",
            error.line(),
            error.column()
        ),
    };
    Rejection::Malformed(format!("body is not JSON: {message}"))
}

/// Reads the non-empty string at a JSON Pointer of the payload.
///
/// The messages name the pointer, which comes from the config, and never the
/// value found there.
pub(crate) fn string_at_pointer<'a>(
    payload: &'a Value,
    pointer: &str,
) -> Result<&'a str, Rejection> {
    match payload.pointer(pointer) {
        Some(Value::String(text)) if !text.is_empty() => Ok(text),
        Some(Value::String(_)) => Err(Rejection::Malformed(format!(
            "body field at {pointer} is empty"
        ))),
        Some(_) => Err(Rejection::Malformed(format!(
            "body field at {pointer} is not a string"
        ))),
        None => Err(Rejection::Malformed(format!(
            "body has no field at {pointer}"
        ))),
    }
}

/// Converts an RFC 3339 date-time (`2026-06-02T08:30:10.411Z`) to Unix
/// milliseconds. Returns `None` when the text does not parse or the instant
/// does not fit in an `i64`.
pub(crate) fn rfc3339_to_unix_millis(text: &str) -> Option<i64> {
    let instant = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    i64::try_from(instant.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Checks a header name setting and returns it in lowercase, the form that
/// `HeaderLookup::header` takes.
///
/// `context` names the source kind and setting, e.g. `okta source: header`.
pub(crate) fn header_name_setting(context: &str, name: &str) -> Result<String, String> {
    if name.is_empty() {
        return Err(format!(
            "{context} is empty; set it to the name of the header the sender sends"
        ));
    }
    if !name.bytes().all(is_token_byte) {
        return Err(format!(
            "{context} is not a valid HTTP header name (letters, digits and              !#$%&'*+-.^_`|~ only); write the name without a colon or value"
        ));
    }
    Ok(name.to_ascii_lowercase())
}

/// Returns true when `byte` may appear in an HTTP header name (RFC 9110
/// `tchar`).
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// Checks a JSON Pointer setting (RFC 6901): it must start with `/`.
///
/// `context` names the source kind and setting, e.g. `hmac source: type_pointer`.
pub(crate) fn json_pointer_setting(context: &str, pointer: &str) -> Result<(), String> {
    if pointer.starts_with('/') {
        Ok(())
    } else {
        Err(format!(
            "{context} is not a JSON Pointer; write it with a leading slash, \
             e.g. \"/type\""
        ))
    }
}

/// Accepted values of a header that carries a shared secret as is, as Okta
/// and Auth0 send it. Only SHA-256 digests are kept, so that every comparison
/// takes the same time whatever the lengths of the value and the secrets.
pub(crate) struct SharedHeaderValues {
    digests: Vec<[u8; 32]>,
}

impl SharedHeaderValues {
    /// Builds the accepted set. `kind` names the source kind in messages, and
    /// `hint` names where the value is configured at the sender.
    ///
    /// Errors when the list is empty, or a secret is empty or has leading or
    /// trailing whitespace, which HTTP strips from header values so that it
    /// could never match.
    pub(crate) fn new(kind: &str, secrets: &[SecretString], hint: &str) -> Result<Self, String> {
        if secrets.is_empty() {
            return Err(format!(
                "{kind} source: secrets is empty; add the header value {hint}"
            ));
        }
        let mut digests = Vec::with_capacity(secrets.len());
        for (index, secret) in secrets.iter().enumerate() {
            let value = secret.expose_secret();
            let position = index + 1;
            if value.is_empty() {
                return Err(format!(
                    "{kind} source: secret at position {position} is empty; set it to \
                     the header value {hint}"
                ));
            }
            if value.trim() != value {
                return Err(format!(
                    "{kind} source: secret at position {position} starts or ends with \
                     whitespace, which HTTP strips from header values; remove it"
                ));
            }
            digests.push(Sha256::digest(value.as_bytes()).into());
        }
        Ok(Self { digests })
    }

    /// Checks that header `name` is present and equals an accepted value.
    pub(crate) fn verify_header(&self, req: &Inbound, name: &str) -> Result<(), Rejection> {
        let value = req
            .headers
            .header(name)
            .ok_or(Rejection::Unauthorized("missing authorization header"))?;
        if self.matches(value) {
            Ok(())
        } else {
            Err(Rejection::Unauthorized("authorization mismatch"))
        }
    }

    /// Returns true when `value`, with surrounding ASCII whitespace trimmed,
    /// equals any accepted value. Every digest is compared, so the time taken
    /// does not depend on which one matched.
    pub(crate) fn matches(&self, value: &[u8]) -> bool {
        let digest = Sha256::digest(value.trim_ascii());
        let mut matched = Choice::from(0);
        for accepted in &self.digests {
            matched |= accepted.as_slice().ct_eq(digest.as_slice());
        }
        bool::from(matched)
    }

    /// Returns the number of accepted values, for `Debug` output.
    pub(crate) fn len(&self) -> usize {
        self.digests.len()
    }
}
