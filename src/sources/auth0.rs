//! Auth0 log stream (custom webhook) verification and decoding.
//!
//! Auth0 does not sign log stream deliveries. It sends the stream's
//! Authorization Token setting verbatim as the `Authorization` header, so
//! the scheme has no timestamp, and a replayed delivery is caught only by
//! deduplication on each entry's `log_id`.
//!
//! Each POST carries a batch of entries `{"log_id": …, "data": {…}}`, where
//! `data` is one tenant log entry. The stream's content format decides the
//! framing: a JSON array (`JSONARRAY`), one entry per line (`JSONLINES`), or
//! a single entry (`JSONOBJECT`).

use std::fmt;

use secrecy::SecretString;
use serde_json::{Map, Value};

use super::{
    json_body_rejection, rfc3339_to_unix_millis, DecodedEvent, Inbound, Rejection,
    SharedHeaderValues,
};

const AUTHORIZATION_HEADER: &str = "authorization";

/// Settings of one Auth0 log stream, with secrets resolved.
#[derive(Debug)]
pub struct Auth0Settings {
    /// Accepted `Authorization` values, in rotation order.
    pub secrets: Vec<SecretString>,
}

/// Verifier and decoder for one configured Auth0 log stream.
pub struct Auth0Source {
    accepted: SharedHeaderValues,
}

impl Auth0Source {
    /// Builds a verifier from the stream's settings.
    ///
    /// Errors when the secret list is empty or a secret is empty or padded
    /// with whitespace.
    pub fn new(settings: Auth0Settings) -> Result<Self, String> {
        let accepted = SharedHeaderValues::new(
            "auth0",
            &settings.secrets,
            "set as the log stream's Authorization Token in Auth0",
        )?;
        Ok(Self { accepted })
    }

    /// Compares `Authorization` with every accepted value, in constant time.
    pub fn verify(&self, req: &Inbound) -> Result<(), Rejection> {
        self.accepted.verify_header(req, AUTHORIZATION_HEADER)
    }

    /// Decodes a verified request into one event per log entry, in order.
    ///
    /// The body is a JSON array of entries, entries one per line, or a
    /// single entry. An empty array gives no events. Each event's delivery
    /// key is the entry's `log_id` (else `data.log_id`), its type is
    /// `data.type` (a log type code such as `scp`, `sdu` or `pwd_leak`), its
    /// payload is the whole entry, and its time is `data.date`.
    ///
    /// Entries whose `data.user_id` is missing or empty are still returned
    /// as events. Rules then find no user in them, and the event is recorded
    /// as ignored with that reason.
    pub fn decode(&self, req: &Inbound) -> Result<Vec<DecodedEvent>, Rejection> {
        parse_entries(req.body)?
            .iter()
            .enumerate()
            .map(|(index, entry)| decode_entry(index, entry))
            .collect()
    }
}

impl fmt::Debug for Auth0Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth0Source")
            .field("secrets", &self.accepted.len())
            .finish()
    }
}

/// Reads the body as a sequence of JSON values separated by whitespace. One
/// array is a batch. Anything else is taken as entries, one per value.
fn parse_entries(body: &[u8]) -> Result<Vec<Value>, Rejection> {
    let mut values = Vec::new();
    for value in serde_json::Deserializer::from_slice(body).into_iter::<Value>() {
        values.push(value.map_err(|error| json_body_rejection(&error))?);
    }

    match values.len() {
        0 => Err(Rejection::Malformed(
            "body contains no log entries".to_owned(),
        )),
        1 if values[0].is_array() => match values.pop() {
            Some(Value::Array(entries)) => Ok(entries),
            _ => unreachable!("the single value is an array"),
        },
        _ => Ok(values),
    }
}

/// Decodes the log entry at `index` of the batch.
fn decode_entry(index: usize, entry: &Value) -> Result<DecodedEvent, Rejection> {
    let Value::Object(fields) = entry else {
        return Err(Rejection::Malformed(format!(
            "log entry {index} is not a JSON object"
        )));
    };
    let Some(Value::Object(data)) = fields.get("data") else {
        return Err(Rejection::Malformed(format!(
            "log entry {index} has no data object"
        )));
    };

    let log_id = non_empty_string(fields, "log_id")
        .or_else(|| non_empty_string(data, "log_id"))
        .ok_or_else(|| Rejection::Malformed(format!("log entry {index} has no log_id")))?;
    let log_type = non_empty_string(data, "type")
        .ok_or_else(|| Rejection::Malformed(format!("log entry {index} has no data.type")))?;
    let occurred_at = data
        .get("date")
        .and_then(Value::as_str)
        .and_then(rfc3339_to_unix_millis);

    Ok(DecodedEvent {
        delivery_key: log_id.to_owned(),
        types: vec![log_type.to_owned()],
        payload: entry.clone(),
        occurred_at,
    })
}

fn non_empty_string<'a>(fields: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    fields
        .get(name)
        .and_then(Value::as_str)
        .filter(|text| !text.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "Bearer auth0-stream-token-0123456789";
    const NEW_SECRET: &str = "Bearer auth0-stream-token-rotated-abcdef";

    const SAMPLE_KEYS: [&str; 3] = [
        "90020260602083012345678901234567890123456789",
        "90020260602083055555555555555555555555555555",
        "90020260602083099999999999999999999999999999",
    ];

    fn fixture() -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/auth0-log-stream.json",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|error| panic!("cannot read {path}: {error}"))
    }

    fn source() -> Auth0Source {
        Auth0Source::new(Auth0Settings {
            secrets: vec![SecretString::from(SECRET), SecretString::from(NEW_SECRET)],
        })
        .unwrap()
    }

    fn verify(pairs: &[(&str, &str)]) -> Result<(), Rejection> {
        let list: Vec<(String, String)> = pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        source().verify(&Inbound {
            headers: &list,
            body: b"[]",
            now: 0,
        })
    }

    fn decode(body: &[u8]) -> Result<Vec<DecodedEvent>, Rejection> {
        let list = vec![("Authorization".to_owned(), SECRET.to_owned())];
        source().decode(&Inbound {
            headers: &list,
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

    /// Serialises the sample's entries compactly, one per line.
    fn sample_as_json_lines() -> Vec<u8> {
        let entries: Vec<Value> = serde_json::from_slice(&fixture()).unwrap();
        let lines: Vec<String> = entries.iter().map(Value::to_string).collect();
        format!("{}\n", lines.join("\n")).into_bytes()
    }

    #[test]
    fn verify_accepts_each_secret() {
        assert_eq!(verify(&[("Authorization", SECRET)]), Ok(()));
        assert_eq!(verify(&[("AUTHORIZATION", NEW_SECRET)]), Ok(()));
    }

    #[test]
    fn verify_rejects_missing_header() {
        assert_eq!(
            verify(&[("X-Authorization", SECRET)]),
            Err(Rejection::Unauthorized("missing authorization header"))
        );
    }

    #[test]
    fn verify_rejects_mismatch() {
        for value in [
            "",
            "Bearer",
            "bearer auth0-stream-token-0123456789",
            "auth0-stream-token-0123456789",
            &format!("{SECRET}0"),
        ] {
            assert_eq!(
                verify(&[("Authorization", value)]),
                Err(Rejection::Unauthorized("authorization mismatch")),
                "value {value:?}"
            );
        }
    }

    #[test]
    fn decode_sample_array() {
        let decoded = decode(&fixture()).unwrap();
        assert_eq!(decoded.len(), 3);

        let keys: Vec<&str> = decoded.iter().map(|e| e.delivery_key.as_str()).collect();
        assert_eq!(keys, SAMPLE_KEYS);
        assert_eq!(decoded[0].types, vec!["scp"]);
        assert_eq!(decoded[1].types, vec!["sdu"]);
        assert_eq!(decoded[2].types, vec!["s"]);

        // 2026-06-02T08:30:12.345Z
        assert_eq!(decoded[0].occurred_at, Some(1_780_389_012_345));
        assert_eq!(decoded[1].occurred_at, Some(1_780_389_055_000));

        assert_eq!(
            decoded[0].payload["data"]["user_id"],
            "auth0|6650c1f2a7b3e9d4c021"
        );
        assert_eq!(decoded[0].payload["log_id"], SAMPLE_KEYS[0]);
    }

    #[test]
    fn decode_json_lines() {
        let decoded = decode(&sample_as_json_lines()).unwrap();
        let keys: Vec<&str> = decoded.iter().map(|e| e.delivery_key.as_str()).collect();
        assert_eq!(keys, SAMPLE_KEYS);
        assert_eq!(decoded[1].types, vec!["sdu"]);
    }

    #[test]
    fn decode_json_lines_with_crlf() {
        let body = String::from_utf8(sample_as_json_lines())
            .unwrap()
            .replace('\n', "\r\n");
        let decoded = decode(body.as_bytes()).unwrap();
        assert_eq!(decoded.len(), 3);
    }

    #[test]
    fn decode_single_object() {
        let entries: Vec<Value> = serde_json::from_slice(&fixture()).unwrap();
        let body = serde_json::to_vec_pretty(&entries[1]).unwrap();
        let decoded = decode(&body).unwrap();
        assert_eq!(decoded.len(), 1);
        assert_eq!(decoded[0].delivery_key, SAMPLE_KEYS[1]);
        assert_eq!(decoded[0].types, vec!["sdu"]);
        assert_eq!(decoded[0].payload, entries[1]);
    }

    #[test]
    fn decode_empty_array() {
        assert_eq!(decode(b"[]"), Ok(Vec::new()));
        assert_eq!(decode(b" [ ]\n"), Ok(Vec::new()));
    }

    #[test]
    fn decode_keeps_entry_without_user() {
        let body = br#"[{"log_id":"l1","data":{"type":"sapi","date":"2026-06-02T08:30:12Z"}},
                        {"log_id":"l2","data":{"type":"scp","user_id":""}}]"#;
        let decoded = decode(body).unwrap();
        assert_eq!(decoded.len(), 2);
        assert_eq!(decoded[0].types, vec!["sapi"]);
        assert_eq!(decoded[1].delivery_key, "l2");
    }

    #[test]
    fn decode_falls_back_to_data_log_id() {
        let body = br#"{"data":{"type":"scp","log_id":"inner-1"}}"#;
        assert_eq!(decode(body).unwrap()[0].delivery_key, "inner-1");
    }

    #[test]
    fn decode_unparsable_date() {
        let body = br#"[{"log_id":"l1","data":{"type":"scp","date":"02/06/2026"}},
                        {"log_id":"l2","data":{"type":"scp","date":1780389012345}}]"#;
        let decoded = decode(body).unwrap();
        assert_eq!(decoded[0].occurred_at, None);
        assert_eq!(decoded[1].occurred_at, None);
    }

    #[test]
    fn decode_rejects_missing_log_id() {
        let body = br#"[{"log_id":"l1","data":{"type":"scp"}},{"data":{"type":"sdu"}}]"#;
        assert_eq!(malformed_message(decode(body)), "log entry 1 has no log_id");

        let body = br#"[{"log_id":"","data":{"type":"scp","log_id":""}}]"#;
        assert_eq!(malformed_message(decode(body)), "log entry 0 has no log_id");
    }

    #[test]
    fn decode_rejects_missing_type() {
        for body in [
            &br#"[{"log_id":"l1","data":{}}]"#[..],
            br#"[{"log_id":"l1","data":{"type":""}}]"#,
            br#"[{"log_id":"l1","data":{"type":3}}]"#,
        ] {
            assert_eq!(
                malformed_message(decode(body)),
                "log entry 0 has no data.type"
            );
        }
    }

    #[test]
    fn decode_rejects_missing_data() {
        for body in [
            &br#"[{"log_id":"l1"}]"#[..],
            br#"[{"log_id":"l1","data":"scp"}]"#,
        ] {
            assert_eq!(
                malformed_message(decode(body)),
                "log entry 0 has no data object"
            );
        }
    }

    #[test]
    fn decode_rejects_non_object_entries() {
        assert_eq!(
            malformed_message(decode(br#"["l1"]"#)),
            "log entry 0 is not a JSON object"
        );
        // Two arrays are not one batch.
        assert_eq!(
            malformed_message(decode(b"[] []")),
            "log entry 0 is not a JSON object"
        );
    }

    #[test]
    fn decode_rejects_empty_body() {
        for body in [&b""[..], b" \n"] {
            assert_eq!(
                malformed_message(decode(body)),
                "body contains no log entries"
            );
        }
    }

    #[test]
    fn decode_rejects_non_json_body() {
        let body = b"{\"log_id\":\"l1\",\"data\":{\"type\":\"scp\"}}\nhidden-value\n";
        let message = malformed_message(decode(body));
        assert!(message.starts_with("body is not JSON: "), "{message}");
        assert!(!message.contains("hidden-value"), "{message}");
    }

    #[test]
    fn new_rejects_bad_secrets() {
        let cases = [
            (vec![], "secrets is empty"),
            (vec![SECRET, ""], "position 2 is empty"),
            (vec!["Bearer hidden-token\n"], "position 1 starts or ends"),
        ];
        for (secrets, phrase) in cases {
            let error = Auth0Source::new(Auth0Settings {
                secrets: secrets.into_iter().map(SecretString::from).collect(),
            })
            .unwrap_err();
            assert!(error.contains(phrase), "{error}");
            assert!(!error.contains("hidden"), "{error}");
        }
    }

    #[test]
    fn debug_output_hides_secrets() {
        let text = format!("{:?}", source());
        assert!(!text.contains("token"), "{text}");
    }
}
