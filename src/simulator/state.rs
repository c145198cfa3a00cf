//! In-memory data of the simulated Appwrite server: projects, keys, users, sessions, the request
//! log and the fault queue.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use rand::Rng;
use serde::{Deserialize, Serialize};

/// One request received on a `/v1` route, as the simulator saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    pub method: String,
    /// Raw request path, without the query string.
    pub path: String,
    /// Raw query string without the leading `?` (empty when there was none).
    pub query: String,
    /// lowercase header name → value (repeated headers joined with ", ")
    pub headers: BTreeMap<String, String>,
    /// Request body, with invalid UTF-8 replaced by U+FFFD.
    pub body: String,
    /// Status the simulator responded with (0 when the connection was dropped).
    /// It is also 0 while the request is still being handled.
    pub status: u16,
    /// Unix ms when received
    pub at_ms: i64,
}

impl RecordedRequest {
    /// Returns the value of header `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// A failure the simulator injects into the next `/v1` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// Responds with this status and an Appwrite error JSON (`type` e.g. "general_server_error");
    /// `json: false` sends a plain-text body instead (like a proxy's 502).
    Status {
        status: u16,
        error_type: String,
        json: bool,
    },
    /// 429 `general_rate_limit_exceeded` with `Retry-After: <secs>` and `X-RateLimit-Reset`.
    RateLimited { retry_after_secs: u64 },
    /// Wait this long, then handle normally (to trip client timeouts).
    Slow { delay_ms: u64 },
    /// Close the connection without any response.
    Drop,
}

pub(crate) struct SessionRecord {
    pub id: String,
    pub user_id: String,
    pub created_ms: i64,
    /// Stands in for the hashed secret that Appwrite stores and shows to API-key callers.
    pub secret: String,
}

/// A link between a user and an account at an OAuth provider.
pub(crate) struct IdentityRecord {
    pub id: String,
    pub provider: String,
    /// The user's id at the provider, e.g. an OIDC `sub`.
    pub provider_uid: String,
    pub provider_email: String,
    pub created_ms: i64,
}

/// A project webhook, with the delivery health Appwrite tracks for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookState {
    pub id: String,
    pub name: String,
    pub url: String,
    pub enabled: bool,
    /// Consecutive failed deliveries.
    pub attempts: u64,
    /// Note on the most recent failure.
    pub logs: String,
}

pub(crate) struct UserRecord {
    pub id: String,
    pub email: String,
    pub identities: Vec<IdentityRecord>,
    pub status: bool,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// Sessions in creation order.
    pub sessions: Vec<SessionRecord>,
}

#[derive(Default)]
pub(crate) struct Project {
    /// API key secret → scopes.
    pub keys: HashMap<String, Vec<String>>,
    pub users: HashMap<String, UserRecord>,
    /// Session ID → owning user ID, for lookups across the whole project.
    pub session_owners: HashMap<String, String>,
    pub webhooks: Vec<WebhookState>,
}

impl Project {
    /// Removes session `session_id` from whichever user owns it and returns whether it existed.
    pub fn remove_session(&mut self, session_id: &str) -> bool {
        let Some(owner) = self.session_owners.remove(session_id) else {
            return false;
        };
        if let Some(user) = self.users.get_mut(&owner) {
            user.sessions.retain(|session| session.id != session_id);
        }
        true
    }
}

#[derive(Default)]
pub(crate) struct RequestLog {
    next_seq: u64,
    /// Entries with their sequence number, so a status can be filled in after `clear`.
    entries: Vec<(u64, RecordedRequest)>,
}

/// Everything the HTTP workers and the `Simulator` handle share.
#[derive(Default)]
pub(crate) struct SharedState {
    projects: Mutex<HashMap<String, Project>>,
    log: Mutex<RequestLog>,
    faults: Mutex<VecDeque<Fault>>,
}

/// Locks `mutex`, recovering the data if another thread panicked while holding the lock.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) fn now_ms() -> i64 {
    let elapsed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
}

/// Returns 64 random hex digits, the length of a SHA-256 hex digest.
fn random_hex_secret() -> String {
    let mut rng = rand::thread_rng();
    (0..32)
        .map(|_| format!("{:02x}", rng.gen::<u8>()))
        .collect()
}

impl SharedState {
    pub fn projects(&self) -> MutexGuard<'_, HashMap<String, Project>> {
        lock(&self.projects)
    }

    pub fn add_project(&self, project: &str) {
        self.projects().entry(project.to_owned()).or_default();
    }

    pub fn add_key(&self, project: &str, key: &str, scopes: &[&str]) {
        let scopes = scopes.iter().map(|scope| scope.to_string()).collect();
        self.projects()
            .entry(project.to_owned())
            .or_default()
            .keys
            .insert(key.to_owned(), scopes);
    }

    pub fn add_user(&self, project: &str, user_id: &str, email: &str) {
        let now = now_ms();
        let mut projects = self.projects();
        let project = projects.entry(project.to_owned()).or_default();
        match project.users.get_mut(user_id) {
            Some(user) => {
                user.email = email.to_owned();
                user.updated_ms = now;
            }
            None => {
                let user = UserRecord {
                    id: user_id.to_owned(),
                    email: email.to_owned(),
                    status: true,
                    created_ms: now,
                    updated_ms: now,
                    sessions: Vec::new(),
                    identities: Vec::new(),
                };
                project.users.insert(user_id.to_owned(), user);
            }
        }
    }

    /// Adds a session to user `user_id`, moving it if another user owned the same session ID.
    /// Returns false when the project or the user does not exist.
    pub fn add_session(&self, project: &str, user_id: &str, session_id: &str) -> bool {
        let mut projects = self.projects();
        let Some(project) = projects.get_mut(project) else {
            return false;
        };
        if !project.users.contains_key(user_id) {
            return false;
        }
        project.remove_session(session_id);

        let session = SessionRecord {
            id: session_id.to_owned(),
            user_id: user_id.to_owned(),
            created_ms: now_ms(),
            secret: random_hex_secret(),
        };
        if let Some(user) = project.users.get_mut(user_id) {
            user.sessions.push(session);
        }
        project
            .session_owners
            .insert(session_id.to_owned(), user_id.to_owned());
        true
    }

    /// Links user `user_id` to `provider_uid` at `provider`. Returns false
    /// when the project or the user does not exist.
    pub fn add_identity(
        &self,
        project: &str,
        user_id: &str,
        provider: &str,
        provider_uid: &str,
    ) -> bool {
        let mut projects = self.projects();
        let Some(user) = projects
            .get_mut(project)
            .and_then(|project| project.users.get_mut(user_id))
        else {
            return false;
        };
        let identity = IdentityRecord {
            id: random_hex_secret()[..20].to_string(),
            provider: provider.to_owned(),
            provider_uid: provider_uid.to_owned(),
            provider_email: user.email.clone(),
            created_ms: now_ms(),
        };
        user.identities.push(identity);
        true
    }

    /// Adds or replaces (by id) a project webhook.
    pub fn put_webhook(&self, project: &str, webhook: WebhookState) {
        let mut projects = self.projects();
        let hooks = &mut projects.entry(project.to_owned()).or_default().webhooks;
        hooks.retain(|existing| existing.id != webhook.id);
        hooks.push(webhook);
    }

    pub fn sessions(&self, project: &str, user_id: &str) -> Option<Vec<String>> {
        let projects = self.projects();
        let user = projects.get(project)?.users.get(user_id)?;
        Some(user.sessions.iter().map(|s| s.id.clone()).collect())
    }

    pub fn user_status(&self, project: &str, user_id: &str) -> Option<bool> {
        let projects = self.projects();
        Some(projects.get(project)?.users.get(user_id)?.status)
    }

    /// Appends `request` to the log and returns its sequence number for `set_status`.
    pub fn record(&self, request: RecordedRequest) -> u64 {
        let mut log = lock(&self.log);
        let seq = log.next_seq;
        log.next_seq += 1;
        log.entries.push((seq, request));
        seq
    }

    /// Sets the response status of logged request `seq`, unless the log was cleared since.
    pub fn set_status(&self, seq: u64, status: u16) {
        let mut log = lock(&self.log);
        if let Some((_, request)) = log.entries.iter_mut().rev().find(|(s, _)| *s == seq) {
            request.status = status;
        }
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        let log = lock(&self.log);
        log.entries.iter().map(|(_, r)| r.clone()).collect()
    }

    pub fn clear_requests(&self) {
        lock(&self.log).entries.clear();
    }

    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        lock(&self.faults).extend(faults);
    }

    pub fn pop_fault(&self) -> Option<Fault> {
        lock(&self.faults).pop_front()
    }
}
