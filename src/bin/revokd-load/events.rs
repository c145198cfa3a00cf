//! Builds one unique, correctly signed request per sequence number.

use bytes::Bytes;
use revokd::senders::{appwrite_signature, standard_webhooks_signature};

/// Appwrite webhook key of the benchmark config. Not a real secret: the
/// benchmark server and the generator both use it.
pub const APPWRITE_SECRET: &str = "bench-appwrite-webhook-secret-0123456789abcdef";
/// Standard Webhooks secret of the benchmark config (32 bytes, base64).
pub const STANDARD_WEBHOOKS_SECRET: &str = "whsec_AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
/// Appwrite project and API key that the in-process simulator accepts.
pub const PROJECT: &str = "bench";
pub const API_KEY: &str = "bench-api-key-0123456789abcdef";

/// The kind of events the generator sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// `POST /hooks/appwrite`: an Appwrite `users.*.update.password` webhook.
    Appwrite,
    /// `POST /hooks/standard-webhooks`: a Clerk-style `user.updated` event.
    StandardWebhooks,
    /// `DELETE /v1/users/{id}/sessions` with the benchmark project and key,
    /// to measure the Appwrite simulator alone.
    Simulator,
}

impl Kind {
    /// Request path for sequence number `n` (the simulator path names the user).
    fn path(self, user_id: &str) -> String {
        match self {
            Kind::Appwrite => "/hooks/appwrite".to_owned(),
            Kind::StandardWebhooks => "/hooks/standard-webhooks".to_owned(),
            Kind::Simulator => format!("/v1/users/{user_id}/sessions"),
        }
    }
}

/// One request ready to send.
pub struct PreparedRequest {
    pub method: &'static str,
    pub path: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
    /// The Appwrite user id the event names, which revokd's call carries in its path.
    pub user_id: String,
}

/// Makes requests of one kind, each with its own user id, delivery id and body.
pub struct EventFactory {
    kind: Kind,
    /// Base URL of the server as the sender signs it, e.g. `http://127.0.0.1:8080`.
    base_url: String,
    /// Prefix of every user id, unique per generator run, so that two runs
    /// against one store never repeat a delivery key.
    run_tag: String,
    body_bytes: usize,
}

impl EventFactory {
    pub fn new(kind: Kind, base_url: &str, body_bytes: usize) -> EventFactory {
        let run_tag = format!("lg{:08x}", rand::random::<u32>());
        EventFactory {
            kind,
            base_url: base_url.trim_end_matches('/').to_owned(),
            run_tag,
            body_bytes,
        }
    }

    /// Builds request `n`, signed for the clock value `now_secs` (Unix seconds).
    pub fn make(&self, n: u64, now_secs: i64) -> PreparedRequest {
        let user_id = format!("{}n{n}", self.run_tag);
        let path = self.kind.path(&user_id);
        match self.kind {
            Kind::Appwrite => {
                let body = padded(appwrite_body(&user_id), self.body_bytes);
                let signed_url = format!("{}{path}", self.base_url);
                let signature = appwrite_signature(APPWRITE_SECRET, &signed_url, &body);
                let events = format!(
                    "users.{user_id}.update,users.*.update,users.{user_id}.update.password,\
                     users.*.update.password,users.{user_id},users.*"
                );
                PreparedRequest {
                    method: "POST",
                    path,
                    headers: vec![
                        ("content-type", "application/json".to_owned()),
                        ("x-appwrite-webhook-events", events),
                        ("x-appwrite-webhook-signature", signature),
                    ],
                    body: Bytes::from(body),
                    user_id,
                }
            }
            Kind::StandardWebhooks => {
                let body = padded(standard_webhooks_body(&user_id, now_secs), self.body_bytes);
                let id = format!("msg_{user_id}");
                let signature =
                    standard_webhooks_signature(STANDARD_WEBHOOKS_SECRET, &id, now_secs, &body);
                PreparedRequest {
                    method: "POST",
                    path,
                    headers: vec![
                        ("content-type", "application/json".to_owned()),
                        ("webhook-id", id),
                        ("webhook-timestamp", now_secs.to_string()),
                        ("webhook-signature", signature),
                    ],
                    body: Bytes::from(body),
                    user_id,
                }
            }
            Kind::Simulator => PreparedRequest {
                method: "DELETE",
                path,
                headers: vec![
                    ("x-appwrite-project", PROJECT.to_owned()),
                    ("x-appwrite-key", API_KEY.to_owned()),
                ],
                body: Bytes::new(),
                user_id,
            },
        }
    }
}

/// An Appwrite User payload, as Appwrite sends it after a password change.
/// Ends without its closing brace, so that [`padded`] can add a field.
fn appwrite_body(user_id: &str) -> String {
    format!(
        r#"{{"$id":"{user_id}","$createdAt":"2026-03-02T09:14:05.318+00:00","$updatedAt":"2026-05-20T10:15:30.514+00:00","name":"Load Test","registration":"2026-03-02T09:14:05.318+00:00","status":true,"labels":[],"passwordUpdate":"2026-05-20T10:15:30.512+00:00","email":"{user_id}@example.com","phone":"","emailVerification":true,"phoneVerification":false,"mfa":false,"prefs":{{}},"targets":[],"accessedAt":"2026-05-20T09:58:12.004+00:00""#
    )
}

/// A Clerk `user.updated` event whose `external_id` is the Appwrite user id.
/// Ends inside `data`, without its two closing braces.
fn standard_webhooks_body(user_id: &str, now_secs: i64) -> String {
    format!(
        r#"{{"type":"user.updated","object":"event","timestamp":{},"instance_id":"ins_bench","data":{{"id":"user_{user_id}","object":"user","banned":false,"locked":false,"external_id":"{user_id}""#,
        now_secs * 1000
    )
}

/// Closes the JSON object that `open` starts, with a `"pad"` string field
/// that brings the whole body to `target` bytes when `open` is shorter.
fn padded(open: String, target: usize) -> Vec<u8> {
    let depth = open.matches('{').count() - open.matches('}').count();
    let closing = "}".repeat(depth);
    let fixed = open.len() + r#","pad":"""#.len() + closing.len();
    let mut body = open;
    if target > fixed {
        body.push_str(r#","pad":""#);
        // Hex digits, so that the body does not compress to nothing.
        const DIGITS: &str = "0123456789abcdef";
        let pad = target - fixed;
        for _ in 0..pad / DIGITS.len() {
            body.push_str(DIGITS);
        }
        body.push_str(&DIGITS[..pad % DIGITS.len()]);
        body.push('"');
    }
    body.push_str(&closing);
    body.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_json_of_requested_size() {
        for kind in [Kind::Appwrite, Kind::StandardWebhooks] {
            for size in [1024, 16 * 1024] {
                let factory = EventFactory::new(kind, "http://127.0.0.1:1", size);
                let request = factory.make(7, 1_700_000_000);
                assert_eq!(request.body.len(), size, "{kind:?}");
                let value: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
                assert!(value.is_object());
            }
        }
    }

    #[test]
    fn requests_differ_by_sequence_number() {
        let factory = EventFactory::new(Kind::Appwrite, "http://127.0.0.1:1", 1024);
        let first = factory.make(1, 1_700_000_000);
        let second = factory.make(2, 1_700_000_000);
        assert_ne!(first.body, second.body);
        assert_ne!(first.user_id, second.user_id);
    }

    #[test]
    fn user_ids_are_valid_appwrite_ids() {
        let factory = EventFactory::new(Kind::Simulator, "http://127.0.0.1:1", 0);
        let request = factory.make(u64::MAX, 0);
        assert!(revokd::rules::is_appwrite_id(&request.user_id));
    }
}
