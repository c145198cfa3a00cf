//! Source kinds: verify a request on its raw bytes, then decode it into events.
//!
//! Everything here is pure: no I/O, no store, and the clock is passed in, so the
//! verifiers test without a server.

pub mod appwrite;
pub mod jwt;
pub mod oidc_backchannel;
pub mod ssf;
pub mod standard_webhooks;

use serde_json::Value;

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

/// One inbound request as a verifier sees it.
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
    /// What rules address with JSON Pointers.
    pub payload: Value,
    /// When the sender says the event happened, in Unix milliseconds.
    pub occurred_at: Option<i64>,
}

/// Why a request was not accepted. The reason is logged, never sent to the caller.
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
    serde_json::from_slice(body).map_err(|error| {
        let message = match error.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                error.to_string()
            }
            _ => format!(
                "invalid data at line {} column {}",
                error.line(),
                error.column()
            ),
        };
        Rejection::Malformed(format!("body is not JSON: {message}"))
    })
}

/// A configured source's verifier and decoder, one variant per kind.
pub enum Verifier {
    Appwrite(appwrite::AppwriteSource),
    StandardWebhooks(standard_webhooks::StandardWebhooksSource),
}

impl Verifier {
    /// The kind's name as written in the config.
    pub fn kind(&self) -> &'static str {
        match self {
            Verifier::Appwrite(_) => "appwrite",
            Verifier::StandardWebhooks(_) => "standard-webhooks",
        }
    }

    /// Whether the kind takes a body of this `Content-Type`. A missing header is
    /// taken as the kind's own type.
    pub fn accepts_content_type(&self, content_type: Option<&str>) -> bool {
        match content_type {
            None => true,
            Some(value) => is_json_media_type(value),
        }
    }

    /// Authenticates the request on its raw bytes. Nothing is parsed before this.
    pub fn verify(&self, request: &Inbound) -> Result<(), Rejection> {
        match self {
            Verifier::Appwrite(source) => source.verify(request),
            Verifier::StandardWebhooks(source) => source.verify(request),
        }
    }

    /// Decodes a verified request into its events.
    pub fn decode(&self, request: &Inbound) -> Result<Vec<DecodedEvent>, Rejection> {
        match self {
            Verifier::Appwrite(source) => source.decode(request),
            Verifier::StandardWebhooks(source) => source.decode(request),
        }
    }
}

/// `application/json` or any `…+json` type, with any parameters.
pub fn is_json_media_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json")
            || subtype.len() > 5 && subtype[subtype.len() - 5..].eq_ignore_ascii_case("+json"))
}

#[cfg(test)]
mod media_type_tests {
    use super::is_json_media_type;

    #[test]
    fn json_media_types() {
        assert!(is_json_media_type("application/json"));
        assert!(is_json_media_type("application/json; charset=utf-8"));
        assert!(is_json_media_type("Application/JSON"));
        assert!(is_json_media_type("application/cloudevents+json"));
        assert!(!is_json_media_type("text/plain"));
        assert!(!is_json_media_type("application/x-www-form-urlencoded"));
        assert!(!is_json_media_type("application/+json"));
        assert!(!is_json_media_type("json"));
    }
}
