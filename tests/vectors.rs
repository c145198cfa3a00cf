//! Runs the verifiers on signature vectors made by other implementations
//! (Python `hmac` for Appwrite, the `standardwebhooks` Python library for
//! Standard Webhooks) and compares each verdict with the expected one.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use revokd::sources::appwrite::AppwriteSource;
use revokd::sources::standard_webhooks::StandardWebhooksSource;
use revokd::sources::{Inbound, Rejection};
use secrecy::SecretString;
use serde_json::Value;

const APPWRITE_VECTORS: &str = include_str!("vectors/appwrite.json");
const STANDARD_WEBHOOKS_VECTORS: &str = include_str!("vectors/standard-webhooks.json");

/// One case, with the fields every vector file shares.
struct Case {
    name: String,
    secrets: Vec<SecretString>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    verified: bool,
    raw: Value,
}

fn load_cases(text: &str, file: &str) -> Vec<Case> {
    let document: Value =
        serde_json::from_str(text).unwrap_or_else(|error| panic!("{file}: invalid JSON: {error}"));
    let cases = document["cases"]
        .as_array()
        .unwrap_or_else(|| panic!("{file}: no \"cases\" array"));

    cases
        .iter()
        .enumerate()
        .map(|(index, raw)| {
            let name = raw["name"]
                .as_str()
                .unwrap_or_else(|| panic!("{file}: case {index} has no name"))
                .to_owned();
            let field = |key: &str| {
                raw.get(key)
                    .unwrap_or_else(|| panic!("{file}: case {name:?} has no {key:?}"))
            };
            let secrets = field("secrets")
                .as_array()
                .unwrap_or_else(|| panic!("{file}: case {name:?}: secrets is not an array"))
                .iter()
                .map(|secret| SecretString::from(secret.as_str().expect("secret is a string")))
                .collect();
            let headers = field("headers")
                .as_object()
                .unwrap_or_else(|| panic!("{file}: case {name:?}: headers is not an object"))
                .iter()
                .map(|(key, value)| {
                    let value = value.as_str().expect("header value is a string");
                    (key.clone(), value.to_owned())
                })
                .collect();
            let body = BASE64
                .decode(
                    field("body_base64")
                        .as_str()
                        .expect("body_base64 is a string"),
                )
                .unwrap_or_else(|error| panic!("{file}: case {name:?}: body_base64: {error}"));
            let verified = field("verified").as_bool().expect("verified is a boolean");

            Case {
                name,
                secrets,
                headers,
                body,
                verified,
                raw: raw.clone(),
            }
        })
        .collect()
}

/// Counts the cases in the raw file text, independently of the JSON loader,
/// so that a loader or loop that skips cases fails.
fn declared_case_count(text: &str) -> usize {
    text.matches("\"verified\":").count()
}

fn describe(result: &Result<(), Rejection>) -> String {
    match result {
        Ok(()) => "verified".to_owned(),
        Err(rejection) => format!("rejected ({rejection})"),
    }
}

#[test]
fn appwrite_vectors() {
    let cases = load_cases(APPWRITE_VECTORS, "appwrite.json");
    let mut checked = 0;
    let mut failures = Vec::new();

    for case in &cases {
        let signed_url = case.raw["signed_url"]
            .as_str()
            .unwrap_or_else(|| panic!("case {:?} has no signed_url", case.name));
        let source = AppwriteSource::new(signed_url, case.secrets.clone(), None)
            .unwrap_or_else(|error| panic!("case {:?}: {error}", case.name));
        let request = Inbound {
            headers: &case.headers,
            body: &case.body,
            now: 0,
        };

        let result = source.verify(&request);
        if result.is_ok() != case.verified {
            failures.push(format!(
                "{:?}: expected verified={}, got {}",
                case.name,
                case.verified,
                describe(&result)
            ));
        }
        // A delivery that verifies is a real Appwrite request, so it must decode.
        if result.is_ok() {
            if let Err(rejection) = source.decode(&request) {
                failures.push(format!(
                    "{:?}: verified but decode failed: {rejection}",
                    case.name
                ));
            }
        }
        checked += 1;
    }

    assert!(
        failures.is_empty(),
        "failed cases:\n{}",
        failures.join("\n")
    );
    assert!(checked > 0, "appwrite.json has no cases");
    assert_eq!(checked, declared_case_count(APPWRITE_VECTORS));
}

#[test]
fn standard_webhooks_vectors() {
    let cases = load_cases(STANDARD_WEBHOOKS_VECTORS, "standard-webhooks.json");
    let mut checked = 0;
    let mut failures = Vec::new();

    for case in &cases {
        let now = case.raw["now"]
            .as_i64()
            .unwrap_or_else(|| panic!("case {:?} has no integer now", case.name));
        let tolerance = case.raw["tolerance_seconds"]
            .as_u64()
            .unwrap_or_else(|| panic!("case {:?} has no tolerance_seconds", case.name));
        let source = StandardWebhooksSource::new(case.secrets.clone(), tolerance)
            .unwrap_or_else(|error| panic!("case {:?}: {error}", case.name));
        let request = Inbound {
            headers: &case.headers,
            body: &case.body,
            now,
        };

        let result = source.verify(&request);
        if result.is_ok() != case.verified {
            failures.push(format!(
                "{:?}: expected verified={}, got {}",
                case.name,
                case.verified,
                describe(&result)
            ));
        }
        checked += 1;
    }

    assert!(
        failures.is_empty(),
        "failed cases:\n{}",
        failures.join("\n")
    );
    assert!(checked > 0, "standard-webhooks.json has no cases");
    assert_eq!(checked, declared_case_count(STANDARD_WEBHOOKS_VECTORS));
}
