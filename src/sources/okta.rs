//! Okta Event Hooks verification and decoding.
//!
//! Okta does not sign event hooks. It sends the value configured on the hook
//! (`channel.config.authScheme`) verbatim in one header, `Authorization`
//! unless the admin chose another, on every delivery. So the scheme has no
//! timestamp, and a replayed delivery is caught only by deduplication on
//! each event's `uuid`.
//!
//! Each POST carries a batch in `data.events[]`, each element a System Log
//! event. Before delivering, Okta verifies the endpoint once with a GET that
//! carries `X-Okta-Verification-Challenge`, which must be echoed back.

use std::fmt;

use secrecy::SecretString;
use serde_json::{Map, Value};

use super::{
    header_name_setting, header_str, parse_json_body, rfc3339_to_unix_millis, DecodedEvent,
    Inbound, Rejection, SharedHeaderValues,
};

const CHALLENGE_HEADER: &str = "x-okta-verification-challenge";

/// Payload member that `decode` adds for the event's target user.
const USER_MEMBER: &str = "user";

/// Settings of one Okta event hook, with secrets resolved.
#[derive(Debug)]
pub struct OktaSettings {
    /// Name of the header that carries the shared value, usually
    /// `Authorization`. Header names compare case-insensitively.
    pub header: String,
    /// Accepted header values, in rotation order.
    pub secrets: Vec<SecretString>,
}

impl Default for OktaSettings {
    fn default() -> Self {
        Self {
            header: "Authorization".to_owned(),
            secrets: Vec::new(),
        }
    }
}

/// Verifier and decoder for one configured Okta event hook.
pub struct OktaSource {
    /// The configured header name in lowercase.
    header: String,
    accepted: SharedHeaderValues,
}

impl OktaSource {
    /// Builds a verifier from the hook's settings.
    ///
    /// Errors when the header name is empty or not a header name, or when the
    /// secret list is empty or a secret is empty or padded with whitespace.
    pub fn new(settings: OktaSettings) -> Result<Self, String> {
        let header = header_name_setting("okta source: header", &settings.header)?;
        let accepted = SharedHeaderValues::new(
            "okta",
            &settings.secrets,
            "configured on the Okta event hook's authentication field",
        )?;
        Ok(Self { header, accepted })
    }

    /// Compares the configured header with every accepted value, in constant
    /// time.
    pub fn verify(&self, req: &Inbound) -> Result<(), Rejection> {
        self.accepted.verify_header(req, &self.header)
    }

    /// Decodes a verified request into one event per element of
    /// `data.events`, in order. An empty array gives no events.
    ///
    /// Each payload is the element with a `user` member added: the first
    /// `target[]` entry whose `type` is `User`. The actor is never used,
    /// because for an admin action it is the admin. Without such a target the
    /// payload has no `user` member, and a `user` member that the element
    /// already had is removed, so rules read only the target user there.
    pub fn decode(&self, req: &Inbound) -> Result<Vec<DecodedEvent>, Rejection> {
        let body = parse_json_body(req.body)?;
        let Some(Value::Array(elements)) = body.pointer("/data/events") else {
            return Err(Rejection::Malformed(
                "body has no data.events array".to_owned(),
            ));
        };

        elements
            .iter()
            .enumerate()
            .map(|(index, element)| decode_element(index, element))
            .collect()
    }

    /// Builds the response to Okta's one-time verification GET.
    ///
    /// Checks the configured header as `verify` does, then returns
    /// `{"verification": <X-Okta-Verification-Challenge value>}`, which the
    /// HTTP layer sends as the 200 body. Errors with `Malformed` when the
    /// challenge header is missing, empty or not UTF-8.
    ///
    /// NOTE: Okta's event hook documentation does not say whether the
    /// verification GET carries the configured header. If it does not, this
    /// check fails and the hook cannot be verified.
    pub fn verification_response(&self, req: &Inbound) -> Result<Value, Rejection> {
        self.verify(req)?;
        let challenge = header_str(req.headers, CHALLENGE_HEADER)
            .filter(|value| !value.is_empty())
            .ok_or_else(|| {
                Rejection::Malformed("missing X-Okta-Verification-Challenge header".to_owned())
            })?;
        Ok(serde_json::json!({ "verification": challenge }))
    }
}

impl fmt::Debug for OktaSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OktaSource")
            .field("header", &self.header)
            .field("secrets", &self.accepted.len())
            .finish()
    }
}

/// Decodes the element at `index` of `data.events`.
fn decode_element(index: usize, element: &Value) -> Result<DecodedEvent, Rejection> {
    let Value::Object(fields) = element else {
        return Err(Rejection::Malformed(format!(
            "data.events[{index}] is not a JSON object"
        )));
    };
    let uuid = required_string(fields, "uuid", index)?;
    let event_type = required_string(fields, "eventType", index)?;
    let occurred_at = fields
        .get("published")
        .and_then(Value::as_str)
        .and_then(rfc3339_to_unix_millis);

    let mut payload = fields.clone();
    payload.remove(USER_MEMBER);
    if let Some(user) = target_user(fields) {
        payload.insert(USER_MEMBER.to_owned(), user.clone());
    }

    Ok(DecodedEvent {
        delivery_key: uuid.to_owned(),
        types: vec![event_type.to_owned()],
        payload: Value::Object(payload),
        occurred_at,
    })
}

/// Reads a field of an event that must be a non-empty string.
fn required_string<'a>(
    fields: &'a Map<String, Value>,
    name: &str,
    index: usize,
) -> Result<&'a str, Rejection> {
    match fields.get(name) {
        Some(Value::String(text)) if !text.is_empty() => Ok(text),
        Some(_) => Err(Rejection::Malformed(format!(
            "data.events[{index}].{name} is not a non-empty string"
        ))),
        None => Err(Rejection::Malformed(format!(
            "data.events[{index}] has no {name}"
        ))),
    }
}

/// Returns the first `target[]` entry whose `type` is `User`.
fn target_user(fields: &Map<String, Value>) -> Option<&Value> {
    fields
        .get("target")?
        .as_array()?
        .iter()
        .find(|target| target.get("type").and_then(Value::as_str) == Some("User"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "Basic b2t0YS1ob29rOnMzY3JldC12YWx1ZQ==";
    const OLD_SECRET: &str = "okta-hook-old-value-0123456789";

    fn fixture() -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/okta-event-hook.json",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|error| panic!("cannot read {path}: {error}"))
    }

    fn source() -> OktaSource {
        OktaSource::new(OktaSettings {
            secrets: vec![SecretString::from(SECRET), SecretString::from(OLD_SECRET)],
            ..OktaSettings::default()
        })
        .unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    fn verify_with(source: &OktaSource, pairs: &[(&str, &str)]) -> Result<(), Rejection> {
        let list = headers(pairs);
        source.verify(&Inbound {
            headers: &list,
            body: b"{}",
            now: 0,
        })
    }

    fn decode(body: &[u8]) -> Result<Vec<DecodedEvent>, Rejection> {
        source().decode(&Inbound {
            headers: &headers(&[("Authorization", SECRET)]),
            body,
            now: 0,
        })
    }

    fn malformed_message(result: Result<Vec<DecodedEvent>, Rejection>) -> String {
        match result {
            Err(Rejection::Malformed(message)) => message,
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    #[test]
    fn verify_accepts_each_secret() {
        assert_eq!(verify_with(&source(), &[("Authorization", SECRET)]), Ok(()));
        assert_eq!(
            verify_with(&source(), &[("authorization", OLD_SECRET)]),
            Ok(())
        );
    }

    #[test]
    fn verify_ignores_surrounding_whitespace() {
        let padded = format!("  {SECRET}\t");
        assert_eq!(
            verify_with(&source(), &[("Authorization", &padded)]),
            Ok(())
        );
    }

    #[test]
    fn verify_rejects_missing_header() {
        assert_eq!(
            verify_with(&source(), &[("X-Other", SECRET)]),
            Err(Rejection::Unauthorized("missing authorization header"))
        );
    }

    #[test]
    fn verify_rejects_mismatch() {
        for value in [
            "",
            "Basic",
            "basic b2t0YS1ob29rOnMzY3JldC12YWx1ZQ==",
            &SECRET[..SECRET.len() - 1],
            &format!("{SECRET}x"),
        ] {
            assert_eq!(
                verify_with(&source(), &[("Authorization", value)]),
                Err(Rejection::Unauthorized("authorization mismatch")),
                "value {value:?}"
            );
        }
    }

    #[test]
    fn verify_uses_configured_header() {
        let source = OktaSource::new(OktaSettings {
            header: "X-Okta-Secret".to_owned(),
            secrets: vec![SecretString::from(SECRET)],
        })
        .unwrap();
        assert_eq!(verify_with(&source, &[("x-okta-secret", SECRET)]), Ok(()));
        assert_eq!(
            verify_with(&source, &[("Authorization", SECRET)]),
            Err(Rejection::Unauthorized("missing authorization header"))
        );
    }

    #[test]
    fn verification_response_echoes_challenge() {
        let list = headers(&[
            ("Authorization", SECRET),
            ("X-Okta-Verification-Challenge", "Yc2i-Q5rK3hVfNA8"),
        ]);
        let request = Inbound {
            headers: &list,
            body: b"",
            now: 0,
        };
        assert_eq!(
            source().verification_response(&request),
            Ok(serde_json::json!({ "verification": "Yc2i-Q5rK3hVfNA8" }))
        );
    }

    #[test]
    fn verification_response_checks_header() {
        let list = headers(&[
            ("Authorization", "wrong"),
            ("X-Okta-Verification-Challenge", "Yc2i-Q5rK3hVfNA8"),
        ]);
        let request = Inbound {
            headers: &list,
            body: b"",
            now: 0,
        };
        assert_eq!(
            source().verification_response(&request),
            Err(Rejection::Unauthorized("authorization mismatch"))
        );
    }

    #[test]
    fn verification_response_requires_challenge() {
        for list in [
            headers(&[("Authorization", SECRET)]),
            headers(&[
                ("Authorization", SECRET),
                ("X-Okta-Verification-Challenge", " "),
            ]),
        ] {
            let request = Inbound {
                headers: &list,
                body: b"",
                now: 0,
            };
            let Err(Rejection::Malformed(message)) = source().verification_response(&request)
            else {
                panic!("expected Malformed");
            };
            assert!(
                message.contains("X-Okta-Verification-Challenge"),
                "{message}"
            );
        }
    }

    #[test]
    fn decode_sample_batch() {
        let decoded = decode(&fixture()).unwrap();
        assert_eq!(decoded.len(), 2);

        let keys: Vec<&str> = decoded.iter().map(|e| e.delivery_key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "1f0e9a5c-2b3d-11f0-9c1a-2f5e6d7c8b9a",
                "2a1b0c6d-2b3d-11f0-9c1a-2f5e6d7c8b9a"
            ]
        );
        assert_eq!(decoded[0].types, vec!["user.account.update_password"]);
        assert_eq!(decoded[1].types, vec!["user.lifecycle.suspend"]);

        // 2026-06-02T08:30:10.411Z
        assert_eq!(decoded[0].occurred_at, Some(1_780_389_010_411));
        assert_eq!(decoded[1].occurred_at, Some(1_780_389_011_002));
    }

    #[test]
    fn decode_user_is_target_not_actor() {
        let decoded = decode(&fixture()).unwrap();
        let suspend = &decoded[1].payload;

        // The admin suspended Sam Lee: the actor is the admin.
        assert_eq!(suspend["actor"]["id"], "00uAdm1n000000000000");
        assert_eq!(suspend["user"]["id"], "00u9z8y7x6W5v4U3t2s1");
        assert_eq!(suspend["user"]["alternateId"], "sam.lee@example.com");
        assert_eq!(suspend["uuid"], "2a1b0c6d-2b3d-11f0-9c1a-2f5e6d7c8b9a");

        assert_eq!(decoded[0].payload["user"]["id"], "00u1a2b3c4D5e6F7g8h9");
    }

    #[test]
    fn decode_picks_user_among_targets() {
        let body = br#"{"data":{"events":[{"uuid":"u1","eventType":"user.session.end",
            "actor":{"id":"00uAdmin","type":"User"},
            "target":[{"id":"0oaApp","type":"AppInstance"},{"id":"00uTarget","type":"User"},
                      {"id":"00uSecond","type":"User"}]}]}}"#;
        let decoded = decode(body).unwrap();
        assert_eq!(decoded[0].payload["user"]["id"], "00uTarget");
    }

    #[test]
    fn decode_without_user_target() {
        let body = br#"{"data":{"events":[{"uuid":"u1","eventType":"group.user_membership.add",
            "actor":{"id":"00uAdmin","type":"User"},"user":{"id":"00uForged"},
            "target":[{"id":"00gGroup","type":"UserGroup"}]}]}}"#;
        let decoded = decode(body).unwrap();
        let payload = decoded[0].payload.as_object().unwrap();
        assert!(!payload.contains_key("user"), "{payload:?}");
    }

    #[test]
    fn decode_unparsable_published() {
        let body = br#"{"data":{"events":[
            {"uuid":"u1","eventType":"a","published":"yesterday"},
            {"uuid":"u2","eventType":"b","published":1780389010411},
            {"uuid":"u3","eventType":"c"},
            {"uuid":"u4","eventType":"d","published":"2026-06-02T10:30:10.411+02:00"}]}}"#;
        let decoded = decode(body).unwrap();
        assert_eq!(decoded[0].occurred_at, None);
        assert_eq!(decoded[1].occurred_at, None);
        assert_eq!(decoded[2].occurred_at, None);
        assert_eq!(decoded[3].occurred_at, Some(1_780_389_010_411));
    }

    #[test]
    fn decode_empty_batch() {
        assert_eq!(decode(br#"{"data":{"events":[]}}"#), Ok(Vec::new()));
    }

    #[test]
    fn decode_rejects_missing_events() {
        for body in [
            &br#"{}"#[..],
            br#"{"data":{}}"#,
            br#"{"data":{"events":{}}}"#,
            br#"{"data":[]}"#,
            b"[]",
        ] {
            let message = malformed_message(decode(body));
            assert_eq!(message, "body has no data.events array");
        }
    }

    #[test]
    fn decode_rejects_missing_uuid() {
        let body = br#"{"data":{"events":[{"uuid":"u1","eventType":"a"},{"eventType":"b"}]}}"#;
        let message = malformed_message(decode(body));
        assert_eq!(message, "data.events[1] has no uuid");

        let body = br#"{"data":{"events":[{"uuid":"","eventType":"a"}]}}"#;
        let message = malformed_message(decode(body));
        assert!(message.contains("uuid"), "{message}");
    }

    #[test]
    fn decode_rejects_missing_event_type() {
        let body = br#"{"data":{"events":[{"uuid":"u1","eventType":7}]}}"#;
        let message = malformed_message(decode(body));
        assert!(message.contains("eventType"), "{message}");
    }

    #[test]
    fn decode_rejects_non_object_element() {
        let message = malformed_message(decode(br#"{"data":{"events":["u1"]}}"#));
        assert_eq!(message, "data.events[0] is not a JSON object");
    }

    #[test]
    fn decode_rejects_non_json_body() {
        let message = malformed_message(decode(b"uuid=hidden-value"));
        assert!(message.starts_with("body is not JSON: "), "{message}");
        assert!(!message.contains("hidden-value"), "{message}");
    }

    #[test]
    fn new_rejects_bad_settings() {
        let cases = [
            ("", vec![SECRET], "header is empty"),
            (
                "Authorization:",
                vec![SECRET],
                "not a valid HTTP header name",
            ),
            ("Authorization", vec![], "secrets is empty"),
            ("Authorization", vec![SECRET, ""], "position 2 is empty"),
            (
                "Authorization",
                vec![" hidden-padded"],
                "position 1 starts or ends",
            ),
        ];
        for (header, secrets, phrase) in cases {
            let error = OktaSource::new(OktaSettings {
                header: header.to_owned(),
                secrets: secrets.into_iter().map(SecretString::from).collect(),
            })
            .unwrap_err();
            assert!(error.contains(phrase), "{error}");
            assert!(!error.contains("hidden"), "{error}");
            assert!(!error.contains("b2t0"), "{error}");
        }
    }

    #[test]
    fn debug_output_hides_secrets() {
        let text = format!("{:?}", source());
        assert!(!text.contains("b2t0"), "{text}");
        assert!(!text.contains("old-value"), "{text}");
    }
}
