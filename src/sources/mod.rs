//! Source kinds: verify a request on its raw bytes, then decode it into events.
//!
//! Everything here is pure: no I/O, no store, and the clock is passed in, so the
//! verifiers test without a server.

pub mod appwrite;
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
