//! A small typed client for the four Appwrite Users API calls revokd makes.
//!
//! It has no access to the store and makes no retries. It makes one call and
//! reports the result, so the delivery workers can decide what to do next.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::{Method, Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Characters left as they are in a path segment (RFC 3986 unreserved).
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Maximum length of a non-JSON error body kept in an error message.
const MAX_ERROR_TEXT: usize = 200;

/// Builds the one HTTP client shared by every target, so connections are reused.
pub fn http_client(
    request_timeout: Duration,
    connect_timeout: Duration,
) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("revokd/", env!("CARGO_PKG_VERSION")))
        .timeout(request_timeout)
        .connect_timeout(connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(90))
        .build()
}

/// The reason a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// Appwrite (or a proxy in front of it) responded with an error status.
    #[error("HTTP {status} {error_type}: {message}")]
    Api {
        status: u16,
        /// Appwrite's error `type`, or `http_<status>` when the body is not Appwrite's JSON.
        error_type: String,
        message: String,
        /// From `Retry-After` (seconds) or `X-RateLimit-Reset` (Unix seconds).
        retry_after: Option<Duration>,
    },
    #[error("request timed out: {0}")]
    Timeout(String),
    #[error("cannot connect: {0}")]
    Connect(String),
    /// Any other transport failure, including a dropped connection.
    #[error("request failed: {0}")]
    Transport(String),
    /// A success status with a body that cannot be read.
    #[error("unexpected response: {0}")]
    Decode(String),
}

impl CallError {
    /// Returns the `error_type` reported in the outcome line.
    pub fn error_type(&self) -> &str {
        match self {
            CallError::Api { error_type, .. } => error_type,
            CallError::Timeout(_) => "timeout",
            CallError::Connect(_) => "connect",
            CallError::Transport(_) => "transport",
            CallError::Decode(_) => "decode",
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            CallError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Checks whether Appwrite reported that the user does not exist.
    pub fn is_user_not_found(&self) -> bool {
        matches!(self, CallError::Api { status: 404, error_type, .. } if error_type == "user_not_found")
    }
}

/// A session as listed by `GET /users/{id}/sessions`; only the id is kept.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SessionSummary {
    #[serde(rename = "$id")]
    pub id: String,
}

/// A webhook as listed by `GET /webhooks`, with the fields that show its health.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WebhookSummary {
    #[serde(rename = "$id")]
    pub id: String,
    #[serde(default)]
    pub name: String,
    pub url: String,
    pub enabled: bool,
    /// Consecutive failed deliveries; Appwrite switches the webhook off at 10.
    #[serde(default)]
    pub attempts: u64,
    /// Appwrite's note on the most recent failure.
    #[serde(default)]
    pub logs: String,
}

#[derive(Deserialize)]
struct WebhookList {
    webhooks: Vec<WebhookSummary>,
    #[serde(default)]
    total: u64,
}

#[derive(Deserialize)]
struct IdOnly {
    #[serde(rename = "$id")]
    id: String,
}

/// `GET /users` returns full User models, which carry password hashes:
/// only the ids are read, and the rest is dropped unparsed.
#[derive(Deserialize)]
struct UserList {
    users: Vec<IdOnly>,
}

#[derive(Deserialize)]
struct IdentityOwner {
    #[serde(rename = "userId")]
    user_id: String,
}

#[derive(Deserialize)]
struct IdentityList {
    identities: Vec<IdentityOwner>,
}

#[derive(Deserialize)]
struct SessionList {
    sessions: Vec<SessionSummary>,
}

#[derive(Deserialize)]
struct ErrorBody {
    message: String,
    #[serde(rename = "type")]
    error_type: String,
}

/// Calls one Appwrite project's Users API with one API key.
#[derive(Clone)]
pub struct AppwriteClient {
    http: reqwest::Client,
    /// Base URL including `/v1`, without a trailing slash.
    endpoint: String,
    project: String,
    api_key: SecretString,
}

impl std::fmt::Debug for AppwriteClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppwriteClient")
            .field("endpoint", &self.endpoint)
            .field("project", &self.project)
            .finish_non_exhaustive()
    }
}

impl AppwriteClient {
    pub fn new(
        http: reqwest::Client,
        endpoint: &str,
        project: &str,
        api_key: SecretString,
    ) -> AppwriteClient {
        AppwriteClient {
            http,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            project: project.to_string(),
            api_key,
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// `GET /users/{userId}/sessions`: every session of the user (Appwrite returns one page).
    pub async fn list_sessions(&self, user_id: &str) -> Result<Vec<SessionSummary>, CallError> {
        let url = format!("{}/users/{}/sessions", self.endpoint, segment(user_id));
        let response = self.send(Method::GET, &url, None).await?;
        let list: SessionList = response
            .json()
            .await
            .map_err(|err| CallError::Decode(format!("session list: {err}")))?;
        Ok(list.sessions)
    }

    /// `GET /users` with an `equal` query on `email`: the ids of the users
    /// with that email (Appwrite keeps emails unique, so zero or one).
    pub async fn find_users_by_email(&self, email: &str) -> Result<Vec<String>, CallError> {
        let url = with_queries(
            &format!("{}/users", self.endpoint),
            &[equal_query("email", email)],
        )?;
        let response = self.send(Method::GET, url.as_str(), None).await?;
        let list: UserList = response
            .json()
            .await
            .map_err(|err| CallError::Decode(format!("user list: {err}")))?;
        Ok(list.users.into_iter().map(|user| user.id).collect())
    }

    /// `GET /users/identities` with `equal` queries on `providerUid` (and
    /// `provider` when given): the ids of the users linked to that account.
    pub async fn find_identity_owners(
        &self,
        provider_uid: &str,
        provider: Option<&str>,
    ) -> Result<Vec<String>, CallError> {
        let mut queries = vec![equal_query("providerUid", provider_uid)];
        if let Some(provider) = provider {
            queries.push(equal_query("provider", provider));
        }
        let url = with_queries(&format!("{}/users/identities", self.endpoint), &queries)?;
        let response = self.send(Method::GET, url.as_str(), None).await?;
        let list: IdentityList = response
            .json()
            .await
            .map_err(|err| CallError::Decode(format!("identity list: {err}")))?;
        let mut owners: Vec<String> = list.identities.into_iter().map(|i| i.user_id).collect();
        owners.sort();
        owners.dedup();
        Ok(owners)
    }

    /// `GET /webhooks`: the project's webhooks (first page only) and the total
    /// count. Needs the `webhooks.read` scope.
    pub async fn list_webhooks(&self) -> Result<(Vec<WebhookSummary>, u64), CallError> {
        let url = format!("{}/webhooks", self.endpoint);
        let response = self.send(Method::GET, &url, None).await?;
        let list: WebhookList = response
            .json()
            .await
            .map_err(|err| CallError::Decode(format!("webhook list: {err}")))?;
        Ok((list.webhooks, list.total))
    }

    /// `DELETE /users/{userId}/sessions`: ends every session of the user.
    pub async fn delete_sessions(&self, user_id: &str) -> Result<(), CallError> {
        let url = format!("{}/users/{}/sessions", self.endpoint, segment(user_id));
        self.send(Method::DELETE, &url, None).await.map(drop)
    }

    /// `DELETE /users/{userId}/sessions/{sessionId}`: ends one session.
    pub async fn delete_session(&self, user_id: &str, session_id: &str) -> Result<(), CallError> {
        let url = format!(
            "{}/users/{}/sessions/{}",
            self.endpoint,
            segment(user_id),
            segment(session_id)
        );
        self.send(Method::DELETE, &url, None).await.map(drop)
    }

    /// `PATCH /users/{userId}/status`: blocks (`false`) or unblocks (`true`) the user.
    /// The response (a User with password hash fields) is read and dropped unparsed.
    pub async fn update_status(&self, user_id: &str, status: bool) -> Result<(), CallError> {
        let url = format!("{}/users/{}/status", self.endpoint, segment(user_id));
        let body = serde_json::json!({ "status": status });
        let response = self.send(Method::PATCH, &url, Some(body)).await?;
        response
            .bytes()
            .await
            .map_err(|err| CallError::Transport(err.to_string()))?;
        Ok(())
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Response, CallError> {
        let mut request = self
            .http
            .request(method, url)
            .header("X-Appwrite-Project", &self.project)
            .header("X-Appwrite-Key", self.api_key.expose_secret())
            .header("Accept", "application/json");
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        Err(api_error(status, response).await)
    }
}

/// Builds an Appwrite 1.9 `equal` query in the JSON form the official SDKs send.
fn equal_query(attribute: &str, value: &str) -> String {
    serde_json::json!({ "method": "equal", "attribute": attribute, "values": [value] }).to_string()
}

/// Appends queries as `queries[0]`, `queries[1]`, … the way the SDKs do.
fn with_queries(url: &str, queries: &[String]) -> Result<reqwest::Url, CallError> {
    let mut url = reqwest::Url::parse(url)
        .map_err(|err| CallError::Transport(format!("invalid URL {url}: {err}")))?;
    {
        let mut pairs = url.query_pairs_mut();
        for (index, query) in queries.iter().enumerate() {
            pairs.append_pair(&format!("queries[{index}]"), query);
        }
    }
    Ok(url)
}

fn segment(id: &str) -> String {
    utf8_percent_encode(id, PATH_SEGMENT).to_string()
}

fn transport_error(err: reqwest::Error) -> CallError {
    // reqwest's Display hides the cause ("error sending request"), so the
    // source chain is appended: it names the refused connection or reset.
    let mut message = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    if err.is_timeout() {
        CallError::Timeout(message)
    } else if err.is_connect() {
        CallError::Connect(message)
    } else {
        CallError::Transport(message)
    }
}

async fn api_error(status: StatusCode, response: Response) -> CallError {
    let retry_after = retry_after(response.headers());
    let text = match response.text().await {
        Ok(text) => text,
        Err(err) => return transport_error(err),
    };
    match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) => CallError::Api {
            status: status.as_u16(),
            error_type: body.error_type,
            message: body.message,
            retry_after,
        },
        Err(_) => {
            let mut message: String = text.chars().take(MAX_ERROR_TEXT).collect();
            message = message.split_whitespace().collect::<Vec<_>>().join(" ");
            if message.is_empty() {
                message = status.canonical_reason().unwrap_or("no body").to_string();
            }
            CallError::Api {
                status: status.as_u16(),
                error_type: format!("http_{}", status.as_u16()),
                message,
                retry_after,
            }
        }
    }
}

/// Reads `Retry-After` in seconds, else `X-RateLimit-Reset` as a Unix time.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let text = |name: &str| headers.get(name)?.to_str().ok().map(str::trim);
    if let Some(seconds) = text("retry-after").and_then(|v| v.parse::<u64>().ok()) {
        return Some(Duration::from_secs(seconds));
    }
    let reset = text("x-ratelimit-reset")?.parse::<u64>().ok()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(reset.saturating_sub(now)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_percent_encoded() {
        assert_eq!(segment("abc.DEF-1_2"), "abc.DEF-1_2");
        assert_eq!(segment("../x"), "..%2Fx");
        assert_eq!(segment("a b"), "a%20b");
    }

    #[test]
    fn retry_after_prefers_seconds() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("retry-after", "7".parse().unwrap());
        headers.insert("x-ratelimit-reset", "1".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
    }

    #[test]
    fn retry_after_from_reset_time() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-ratelimit-reset", (now + 30).to_string().parse().unwrap());
        let wait = retry_after(&headers).unwrap();
        assert!(wait <= Duration::from_secs(30), "{wait:?}");
        assert!(wait >= Duration::from_secs(28), "{wait:?}");
    }

    #[test]
    fn user_not_found_is_recognised() {
        let error = CallError::Api {
            status: 404,
            error_type: "user_not_found".into(),
            message: "User with the requested ID could not be found.".into(),
            retry_after: None,
        };
        assert!(error.is_user_not_found());
        let other = CallError::Api {
            status: 404,
            error_type: "project_not_found".into(),
            message: String::new(),
            retry_after: None,
        };
        assert!(!other.is_user_not_found());
    }
}
