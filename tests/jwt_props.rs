//! Property tests for the JWT source kinds: arbitrary input never panics, and
//! a valid token with any one bit flipped never verifies.
//!
//! The valid tokens are the RS256 and ES256 vectors from `vectors/jwt.json`,
//! signed by PyJWT.

use jsonwebtoken::jwk::JwkSet;
use proptest::prelude::*;
use revokd::sources::jwt::TokenRejection;
use revokd::sources::oidc_backchannel::{OidcBackchannelSettings, OidcBackchannelSource};
use revokd::sources::ssf::{SsfSettings, SsfSource};
use revokd::sources::{DecodedEvent, Inbound};
use serde_json::Value;

const JWT_VECTORS: &str = include_str!("vectors/jwt.json");

struct Fixture {
    now: i64,
    keys: JwkSet,
    oidc: OidcBackchannelSource,
    ssf: SsfSource,
    /// Valid tokens with their kind.
    valid: Vec<(String, String)>,
}

fn fixture() -> Fixture {
    let document: Value = serde_json::from_str(JWT_VECTORS).unwrap();
    let valid = document["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|case| case["valid"] == true)
        .map(|case| {
            (
                case["kind"].as_str().unwrap().to_owned(),
                case["token"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let settings = |name: &str, field: &str| document[name][field].as_str().unwrap().to_owned();
    Fixture {
        now: document["now"].as_i64().unwrap(),
        keys: serde_json::from_value(document["jwks"].clone()).unwrap(),
        oidc: OidcBackchannelSource::new(OidcBackchannelSettings {
            issuer: settings("oidc_backchannel", "issuer"),
            audience: settings("oidc_backchannel", "audience"),
            max_age_seconds: 300,
        })
        .unwrap(),
        ssf: SsfSource::new(SsfSettings {
            issuer: settings("ssf", "issuer"),
            audience: settings("ssf", "audience"),
            authorization: None,
        })
        .unwrap(),
        valid,
    }
}

impl Fixture {
    fn run(&self, kind: &str, body: &[u8]) -> Result<Vec<DecodedEvent>, TokenRejection> {
        let headers: Vec<(String, String)> = Vec::new();
        let request = Inbound {
            headers: &headers,
            body,
            now: self.now,
        };
        match kind {
            "oidc-backchannel" => self.oidc.verify_and_decode(&request, &self.keys),
            "ssf" => self.ssf.verify_and_decode(&request, &self.keys),
            other => panic!("unknown kind {other}"),
        }
    }

    fn run_token(&self, kind: &str, token: &[u8]) -> Result<Vec<DecodedEvent>, TokenRejection> {
        if kind == "oidc-backchannel" {
            let mut body = b"logout_token=".to_vec();
            body.extend_from_slice(token);
            self.run(kind, &body)
        } else {
            self.run(kind, token)
        }
    }
}

#[test]
fn valid_vectors_present() {
    let fixture = fixture();
    assert!(
        fixture.valid.len() >= 4,
        "{} valid vectors",
        fixture.valid.len()
    );
    for (kind, token) in &fixture.valid {
        assert!(fixture.run_token(kind, token.as_bytes()).is_ok(), "{kind}");
    }
}

/// Token-like text: three base64url-ish parts, sometimes with JSON headers.
fn token_like() -> impl Strategy<Value = Vec<u8>> {
    let part = "[A-Za-z0-9_=+/-]{0,120}";
    let header = prop_oneof![
        Just("eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYS0xIn0".to_owned()),
        Just("eyJhbGciOiJFUzI1NiJ9".to_owned()),
        Just("eyJhbGciOiJub25lIn0".to_owned()),
        part.prop_map(|text| text.to_owned()),
    ];
    (header, part, part, 0usize..4).prop_map(|(header, payload, signature, extra)| {
        let mut token = format!("{header}.{payload}.{signature}");
        for _ in 0..extra {
            token.push('.');
        }
        token.into_bytes()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let fixture = fixture();
        for kind in ["oidc-backchannel", "ssf"] {
            let _ = fixture.run(kind, &body);
            let _ = fixture.run_token(kind, &body);
        }
    }

    #[test]
    fn token_like_input_never_verifies(token in token_like()) {
        let fixture = fixture();
        for kind in ["oidc-backchannel", "ssf"] {
            prop_assert!(fixture.run_token(kind, &token).is_err());
        }
    }

    #[test]
    fn one_flipped_bit_never_verifies(
        choice in any::<prop::sample::Index>(),
        position in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let fixture = fixture();
        let (kind, token) = choice.get(&fixture.valid);
        let mut flipped = token.clone().into_bytes();
        let at = position.index(flipped.len());
        flipped[at] ^= 1 << bit;
        let result = fixture.run_token(kind, &flipped);
        prop_assert!(result.is_err(), "{} token verified with bit {} of byte {} flipped", kind, bit, at);
    }
}
