//! JWK set fetching and caching for the JWT source kinds.
//!
//! A [`JwksCache`] loads an issuer's public keys from a URL or a file on first
//! use and serves them from memory afterwards. It reloads them once they are
//! [`MAX_AGE`] old, and keeps serving the old set when the reload fails. A
//! token signed with a key id not in the set may force one reload, at most
//! once per [`UNKNOWN_KID_REFRESH_INTERVAL`]. Timing uses
//! `tokio::time::Instant`, so tests can move the clock with
//! `tokio::time::pause` and `advance`.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Age after which the cached set is reloaded on the next use.
pub const MAX_AGE: Duration = Duration::from_secs(3600);

/// Minimum time between two reloads forced by an unknown key id.
pub const UNKNOWN_KID_REFRESH_INTERVAL: Duration = Duration::from_secs(60);

/// Wait after a failed reload before the next one, while an older set is
/// still served.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(60);

/// Wait after a failed first load before the next one. Until a set has
/// loaded, every request needs one, so without this pause a flood of tokens
/// while the issuer is unreachable would become a flood of fetches.
pub const FIRST_LOAD_RETRY: Duration = Duration::from_secs(1);

/// Maximum size of a JWK set document, in bytes. Published sets hold a few
/// keys in a few kilobytes.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// Source of a JWK set: a URL or a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksLocation {
    /// An `https://` (or, in tests, `http://`) URL, fetched with GET.
    Url(String),
    /// A local file, read again on every reload.
    File(PathBuf),
}

impl fmt::Display for JwksLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwksLocation::Url(url) => write!(f, "jwks_url {url}"),
            JwksLocation::File(path) => write!(f, "jwks_file {}", path.display()),
        }
    }
}

/// Failure to load a JWK set. Each message names the URL or file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// The HTTP request failed: connection, TLS or timeout.
    #[error("fetching the JWKS from {url} failed: {reason}")]
    Fetch { url: String, reason: String },
    /// The server responded with a status other than 2xx.
    #[error("fetching the JWKS from {url} failed: HTTP status {status}")]
    Status { url: String, status: u16 },
    /// The file could not be read.
    #[error("reading the JWKS file {path} failed: {reason}")]
    Read { path: String, reason: String },
    /// The document is too large, not a JWK set, or has no usable key.
    #[error("the JWKS from {location} is invalid: {reason}")]
    Invalid { location: String, reason: String },
}

/// Cached keys of one issuer, shared by the requests of one source.
pub struct JwksCache {
    location: JwksLocation,
    http: reqwest::Client,
    state: Mutex<CacheState>,
}

#[derive(Default)]
struct CacheState {
    keys: Option<Arc<JwkSet>>,
    /// When `keys` was last loaded successfully.
    loaded_at: Option<Instant>,
    /// When the last load attempt ended, and its error if it failed.
    last_attempt: Option<Instant>,
    last_error: Option<JwksError>,
    /// When the last reload forced by an unknown key id started.
    last_forced: Option<Instant>,
}

impl fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksCache")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl JwksCache {
    /// Creates an empty cache. Nothing is loaded until the first call to
    /// [`keys`](Self::keys) or [`refresh_for_unknown_kid`](Self::refresh_for_unknown_kid).
    ///
    /// `http` should be the service's shared client, whose timeouts bound a
    /// fetch.
    pub fn new(location: JwksLocation, http: reqwest::Client) -> JwksCache {
        JwksCache {
            location,
            http,
            state: Mutex::new(CacheState::default()),
        }
    }

    /// Returns the location keys are loaded from.
    pub fn location(&self) -> &JwksLocation {
        &self.location
    }

    /// Returns the current keys, loading them on first use and again once they
    /// are [`MAX_AGE`] old.
    ///
    /// When a reload fails, the previous set is returned and the next reload
    /// waits [`RETRY_AFTER_FAILURE`]. Fails only when no set was ever loaded
    /// and loading fails now, or failed less than [`FIRST_LOAD_RETRY`] ago.
    /// Concurrent callers share one load.
    pub async fn keys(&self) -> Result<Arc<JwkSet>, JwksError> {
        let requested_at = Instant::now();
        let mut state = self.state.lock().await;

        if let Some(keys) = &state.keys {
            let fresh = state
                .loaded_at
                .is_some_and(|loaded_at| loaded_at.elapsed() < MAX_AGE);
            let recently_failed = state.last_error.is_some()
                && state
                    .last_attempt
                    .is_some_and(|attempt| attempt.elapsed() < RETRY_AFTER_FAILURE);
            if fresh || recently_failed {
                return Ok(Arc::clone(keys));
            }
        } else if let Some(result) = state.result_since(requested_at) {
            return result;
        } else if let (Some(error), Some(attempt)) = (&state.last_error, state.last_attempt) {
            if attempt.elapsed() < FIRST_LOAD_RETRY {
                return Err(error.clone());
            }
        }
        self.load(&mut state).await
    }

    /// Reloads the keys after a token named a key id not in the set, unless a
    /// forced reload started less than [`UNKNOWN_KID_REFRESH_INTERVAL`] ago.
    ///
    /// Returns the possibly unchanged set. Like [`keys`](Self::keys), fails
    /// only when no set was ever loaded and loading fails now.
    pub async fn refresh_for_unknown_kid(&self) -> Result<Arc<JwkSet>, JwksError> {
        let requested_at = Instant::now();
        let mut state = self.state.lock().await;

        // Another caller finished a load while this one waited for the lock.
        if let Some(result) = state.result_since(requested_at) {
            return result;
        }
        let throttled = state
            .last_forced
            .is_some_and(|forced| forced.elapsed() < UNKNOWN_KID_REFRESH_INTERVAL);
        if throttled {
            if let Some(keys) = &state.keys {
                return Ok(Arc::clone(keys));
            }
        }
        state.last_forced = Some(Instant::now());
        self.load(&mut state).await
    }

    /// Loads the set into `state`. On failure, returns the cached set if there
    /// is one, else the error.
    async fn load(&self, state: &mut CacheState) -> Result<Arc<JwkSet>, JwksError> {
        let result = self.fetch().await;
        let finished_at = Instant::now();
        state.last_attempt = Some(finished_at);
        match result {
            Ok(set) => {
                tracing::info!(location = %self.location, keys = set.keys.len(), "JWKS loaded");
                let set = Arc::new(set);
                state.keys = Some(Arc::clone(&set));
                state.loaded_at = Some(finished_at);
                state.last_error = None;
                Ok(set)
            }
            Err(error) => {
                state.last_error = Some(error.clone());
                match &state.keys {
                    Some(keys) => {
                        tracing::warn!(%error, "JWKS reload failed; serving the cached keys");
                        Ok(Arc::clone(keys))
                    }
                    None => {
                        tracing::warn!(%error, "JWKS load failed and no keys are cached");
                        Err(error)
                    }
                }
            }
        }
    }

    async fn fetch(&self) -> Result<JwkSet, JwksError> {
        let document = match &self.location {
            JwksLocation::Url(url) => self.fetch_url(url).await?,
            JwksLocation::File(path) => read_file(path.clone()).await?,
        };
        parse_key_set(&document).map_err(|reason| JwksError::Invalid {
            location: self.location.to_string(),
            reason,
        })
    }

    async fn fetch_url(&self, url: &str) -> Result<Vec<u8>, JwksError> {
        let fetch_error = |error: reqwest::Error| JwksError::Fetch {
            url: url.to_owned(),
            reason: error.without_url().to_string(),
        };
        let mut response = self
            .http
            .get(url)
            .header(
                reqwest::header::ACCEPT,
                "application/json, application/jwk-set+json",
            )
            .send()
            .await
            .map_err(fetch_error)?;
        if !response.status().is_success() {
            return Err(JwksError::Status {
                url: url.to_owned(),
                status: response.status().as_u16(),
            });
        }
        let too_large = || JwksError::Invalid {
            location: self.location.to_string(),
            reason: format!("the document is larger than {MAX_JWKS_BYTES} bytes"),
        };
        if response
            .content_length()
            .is_some_and(|length| length > MAX_JWKS_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut document = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(fetch_error)? {
            if document.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(too_large());
            }
            document.extend_from_slice(&chunk);
        }
        Ok(document)
    }
}

impl CacheState {
    /// Returns the outcome of a load that ended at or after `requested_at`, so
    /// a caller that waited for the lock reuses it instead of loading again.
    fn result_since(&self, requested_at: Instant) -> Option<Result<Arc<JwkSet>, JwksError>> {
        let attempt = self.last_attempt?;
        if attempt < requested_at {
            return None;
        }
        match (&self.keys, &self.last_error) {
            (Some(keys), _) => Some(Ok(Arc::clone(keys))),
            (None, Some(error)) => Some(Err(error.clone())),
            (None, None) => None,
        }
    }
}

async fn read_file(path: PathBuf) -> Result<Vec<u8>, JwksError> {
    let read_error = |path: &PathBuf, reason: String| JwksError::Read {
        path: path.display().to_string(),
        reason,
    };
    let task_path = path.clone();
    let joined = tokio::task::spawn_blocking(move || {
        let metadata = std::fs::metadata(&task_path)?;
        if metadata.len() > MAX_JWKS_BYTES as u64 {
            return Ok(None);
        }
        std::fs::read(&task_path).map(Some)
    })
    .await;
    match joined {
        Ok(Ok(Some(document))) => Ok(document),
        Ok(Ok(None)) => Err(read_error(
            &path,
            format!("the file is larger than {MAX_JWKS_BYTES} bytes"),
        )),
        Ok(Err(error)) => Err(read_error(&path, error.to_string())),
        Err(error) => Err(read_error(&path, format!("the read task failed: {error}"))),
    }
}

/// Parses a JWK set document, keeping each key that `jsonwebtoken` can
/// represent and skipping the others (for example an X25519 or P-521 key), so
/// one unusual key does not hide the rest.
///
/// Fails when the document is not a JSON object with a `keys` array, or when
/// no key in it can be used. Messages contain no key material.
pub fn parse_key_set(document: &[u8]) -> Result<JwkSet, String> {
    let value: Value = serde_json::from_slice(document)
        .map_err(|error| format!("the document is not JSON ({error})"))?;
    let Some(entries) = value.get("keys").and_then(Value::as_array) else {
        return Err("the document is not a JWK set: it has no \"keys\" array".to_owned());
    };
    let keys: Vec<Jwk> = entries
        .iter()
        .filter_map(|entry| serde_json::from_value(entry.clone()).ok())
        .collect();
    if keys.is_empty() {
        return Err(format!(
            "none of its {} keys is a supported RSA, EC (P-256, P-384) or Ed25519 public key",
            entries.len()
        ));
    }
    let skipped = entries.len() - keys.len();
    if skipped > 0 {
        tracing::debug!(skipped, "JWKS entries of unsupported types were skipped");
    }
    Ok(JwkSet { keys })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_key_set_skips_unsupported_keys() {
        let document = br#"{"keys":[
            {"kty":"OKP","crv":"X25519","x":"AAAA","kid":"x"},
            {"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA","kid":"ec","alg":"ES512"},
            {"kty":"RSA","n":"AQAB","e":"AQAB","kid":"rsa"}
        ]}"#;
        let set = parse_key_set(document).unwrap();
        assert_eq!(set.keys.len(), 1);
        assert_eq!(set.keys[0].common.key_id.as_deref(), Some("rsa"));
    }

    #[test]
    fn parse_key_set_rejects_non_sets() {
        for (document, phrase) in [
            (&b"not json"[..], "not JSON"),
            (b"[]", "no \"keys\" array"),
            (br#"{"keys":{}}"#, "no \"keys\" array"),
            (br#"{"keys":[]}"#, "none of its 0 keys"),
            (br#"{"keys":[{"kty":"XYZ"}]}"#, "none of its 1 keys"),
        ] {
            let error = parse_key_set(document).unwrap_err();
            assert!(error.contains(phrase), "{error}");
        }
    }

    #[test]
    fn location_display_names_setting() {
        assert_eq!(
            JwksLocation::Url("https://id.example/jwks".to_owned()).to_string(),
            "jwks_url https://id.example/jwks"
        );
        assert_eq!(
            JwksLocation::File(PathBuf::from("/etc/keys.json")).to_string(),
            "jwks_file /etc/keys.json"
        );
    }
}
