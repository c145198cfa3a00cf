//! Runs the JWT source kinds on tokens signed by another implementation
//! (PyJWT with `cryptography`) and compares each verdict with the expected
//! one.
//!
//! The file's top-level `now`, `jwks`, `oidc_backchannel` and `ssf` members
//! hold the clock, the key set and each kind's settings. An `UnknownKey`
//! rejection counts as invalid here: the HTTP layer refetches the JWKS once,
//! and the vector's key set is all there is.

use jsonwebtoken::jwk::JwkSet;
use revokd::sources::jwt::TokenRejection;
use revokd::sources::oidc_backchannel::{OidcBackchannelSettings, OidcBackchannelSource};
use revokd::sources::ssf::{SsfSettings, SsfSource};
use revokd::sources::{DecodedEvent, Inbound};
use serde_json::Value;

const JWT_VECTORS: &str = include_str!("vectors/jwt.json");

/// Counts the cases in the raw file text, independently of the JSON loader,
/// so that a loader or loop that skips cases fails.
fn declared_case_count(text: &str) -> usize {
    text.matches("\"valid\":").count()
}

fn describe(result: &Result<Vec<DecodedEvent>, TokenRejection>) -> String {
    match result {
        Ok(events) => format!("valid ({} events)", events.len()),
        Err(TokenRejection::UnknownKey { kid }) => format!("unknown key {kid:?}"),
        Err(TokenRejection::Invalid { code, reason, .. }) => format!("invalid ({code}: {reason})"),
    }
}

fn string_setting(settings: &Value, name: &str) -> String {
    settings[name]
        .as_str()
        .unwrap_or_else(|| panic!("jwt.json: setting {name:?} is not a string"))
        .to_owned()
}

#[test]
fn jwt_vectors() {
    let document: Value = serde_json::from_str(JWT_VECTORS).expect("jwt.json is JSON");
    let now = document["now"]
        .as_i64()
        .expect("jwt.json: now is an integer");
    let keys: JwkSet =
        serde_json::from_value(document["jwks"].clone()).expect("jwt.json: jwks is a JWK set");

    let oidc_settings = &document["oidc_backchannel"];
    let oidc = OidcBackchannelSource::new(OidcBackchannelSettings {
        issuer: string_setting(oidc_settings, "issuer"),
        audience: string_setting(oidc_settings, "audience"),
        max_age_seconds: oidc_settings["max_age_seconds"]
            .as_u64()
            .expect("jwt.json: max_age_seconds is an integer"),
    })
    .expect("oidc_backchannel settings are accepted");
    let ssf_settings = &document["ssf"];
    let ssf = SsfSource::new(SsfSettings {
        issuer: string_setting(ssf_settings, "issuer"),
        audience: string_setting(ssf_settings, "audience"),
        authorization: None,
    })
    .expect("ssf settings are accepted");

    let cases = document["cases"].as_array().expect("jwt.json: cases array");
    let headers: Vec<(String, String)> = Vec::new();
    let mut checked = 0;
    let mut failures = Vec::new();

    for case in cases {
        let name = case["name"].as_str().expect("case has a name");
        let token = case["token"]
            .as_str()
            .unwrap_or_else(|| panic!("case {name:?} has no token"));
        let valid = case["valid"]
            .as_bool()
            .unwrap_or_else(|| panic!("case {name:?} has no boolean valid"));

        let result = match case["kind"].as_str() {
            Some("oidc-backchannel") => {
                let body = format!("logout_token={token}");
                oidc.verify_and_decode(
                    &Inbound {
                        headers: &headers,
                        body: body.as_bytes(),
                        now,
                    },
                    &keys,
                )
            }
            Some("ssf") => ssf.verify_and_decode(
                &Inbound {
                    headers: &headers,
                    body: token.as_bytes(),
                    now,
                },
                &keys,
            ),
            other => panic!("case {name:?} has unknown kind {other:?}"),
        };

        if result.is_ok() != valid {
            failures.push(format!(
                "{name:?}: expected valid={valid}, got {}",
                describe(&result)
            ));
        }
        checked += 1;
    }

    assert_eq!(checked, declared_case_count(JWT_VECTORS), "cases checked");
    assert!(checked >= 18, "only {checked} cases in jwt.json");
    assert!(
        failures.is_empty(),
        "failed cases:\n{}",
        failures.join("\n")
    );
}

/// The valid vectors decode into the documented events.
#[test]
fn jwt_vectors_decode() {
    let document: Value = serde_json::from_str(JWT_VECTORS).unwrap();
    let keys: JwkSet = serde_json::from_value(document["jwks"].clone()).unwrap();
    let now = document["now"].as_i64().unwrap();
    let token_of = |name: &str| {
        document["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|case| case["name"] == name)
            .unwrap_or_else(|| panic!("no case {name:?}"))["token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let headers: Vec<(String, String)> = Vec::new();

    let ssf = SsfSource::new(SsfSettings {
        issuer: "https://transmitter.example.com".to_owned(),
        audience: "https://hooks.example.com/hooks/ssf".to_owned(),
        authorization: None,
    })
    .unwrap();
    let token = token_of("SET RISC account-disabled valid");
    let events = ssf
        .verify_and_decode(
            &Inbound {
                headers: &headers,
                body: token.as_bytes(),
                now,
            },
            &keys,
        )
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].types, vec!["risc.account-disabled"]);
    assert_eq!(
        events[0].delivery_key,
        "set-9c3d2e1b0a https://schemas.openid.net/secevent/risc/event-type/account-disabled"
    );
    assert_eq!(events[0].payload["subject"]["sub"], "248289761001");

    let oidc = OidcBackchannelSource::new(OidcBackchannelSettings {
        issuer: "https://id.example.com/realms/main".to_owned(),
        audience: "revokd-client".to_owned(),
        max_age_seconds: 300,
    })
    .unwrap();
    let body = format!("logout_token={}", token_of("logout token ES256 valid"));
    let events = oidc
        .verify_and_decode(
            &Inbound {
                headers: &headers,
                body: body.as_bytes(),
                now,
            },
            &keys,
        )
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].types, vec!["backchannel-logout"]);
    assert_eq!(events[0].delivery_key, "bcl-4d1c8a7e-91f2");
    assert_eq!(events[0].occurred_at, Some(1_764_849_595_000));
    assert_eq!(
        events[0].payload["sid"],
        "08a5019c-17e1-4977-8f42-65a12843ea02"
    );
}
