//! OpenID Connect Back-Channel Logout 1.0: logout token verification.
//!
//! The OpenID Provider POSTs `application/x-www-form-urlencoded` with a
//! `logout_token` field holding a signed JWT. Validation follows the spec's
//! section 2.6. The signature must verify with a key from the issuer's JWK set.
//! `iss` must equal the configured issuer and `aud` contain the configured
//! client id. `iat` must be recent, and `events` must have the back-channel
//! logout member. The token needs `sub` or `sid`, and must not contain a
//! `nonce`. Every failure gets status 400 with error code `invalid_request`
//! (section 2.8).

use percent_encoding::percent_decode;
use serde_json::{Map, Value};

use super::jwt::{self, CheckFailure, FailureClass, TokenRejection};
use super::{DecodedEvent, Inbound};
use jsonwebtoken::jwk::JwkSet;

/// Member of `events` that marks a logout token.
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// Event type that rules match for every logout token.
pub const EVENT_TYPE: &str = "backchannel-logout";

/// The only error code OIDC Back-Channel Logout defines for a rejected
/// request, used for every failure including an unknown key.
pub const ERROR_CODE: &str = "invalid_request";

/// Form field that carries the token.
const TOKEN_FIELD: &str = "logout_token";

/// Settings of one `oidc-backchannel` source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcBackchannelSettings {
    /// Expected `iss`, compared exactly.
    pub issuer: String,
    /// This relying party's client id, which `aud` must contain.
    pub audience: String,
    /// Maximum distance between `iat` and the clock, in seconds, in either
    /// direction. The configuration default is 300.
    pub max_age_seconds: u64,
}

/// Verifier and decoder for one OpenID Provider's logout tokens.
#[derive(Debug)]
pub struct OidcBackchannelSource {
    settings: OidcBackchannelSettings,
}

fn error_code(_class: FailureClass) -> &'static str {
    ERROR_CODE
}

impl OidcBackchannelSource {
    /// Builds a verifier. Fails when the issuer or audience is empty or
    /// `max_age_seconds` is 0.
    pub fn new(settings: OidcBackchannelSettings) -> Result<Self, String> {
        if settings.issuer.is_empty() {
            return Err("oidc-backchannel source: issuer is empty; set it to the \
                 OpenID Provider's issuer URL exactly as its tokens carry it in `iss`"
                .to_owned());
        }
        if settings.audience.is_empty() {
            return Err("oidc-backchannel source: audience is empty; set it to the \
                 client id this service is registered with at the OpenID Provider"
                .to_owned());
        }
        if settings.max_age_seconds == 0 {
            return Err(
                "oidc-backchannel source: max_age_seconds is 0, which rejects \
                 every token; set it to the accepted age of `iat` in seconds (300 is usual)"
                    .to_owned(),
            );
        }
        Ok(Self { settings })
    }

    /// Verifies the request's logout token against `keys` and the clock in
    /// `req.now`, and decodes it into one `backchannel-logout` event.
    ///
    /// The body is `application/x-www-form-urlencoded` with a `logout_token`
    /// field. The event's payload is the token's claims, its delivery key the
    /// `jti`, and its time the `iat`.
    pub fn verify_and_decode(
        &self,
        req: &Inbound,
        keys: &JwkSet,
    ) -> Result<Vec<DecodedEvent>, TokenRejection> {
        let token = logout_token(req.body).map_err(|failure| failure.into_rejection(error_code))?;
        let parsed = jwt::parse(&token).map_err(|failure| failure.into_rejection(error_code))?;
        parsed
            .verify_signature(keys)
            .map_err(|error| error.into_rejection(error_code))?;
        let claims = parsed
            .claims()
            .map_err(|failure| failure.into_rejection(error_code))?;
        let (delivery_key, issued_at) = self
            .check_claims(&claims, req.now)
            .map_err(|failure| failure.into_rejection(error_code))?;

        Ok(vec![DecodedEvent {
            delivery_key,
            types: vec![EVENT_TYPE.to_owned()],
            payload: Value::Object(claims),
            occurred_at: issued_at.checked_mul(1000),
        }])
    }

    /// Checks the claims of a verified token. Returns its `jti` and `iat`.
    fn check_claims(
        &self,
        claims: &Map<String, Value>,
        now: i64,
    ) -> Result<(String, i64), CheckFailure> {
        jwt::check_issuer(claims, &self.settings.issuer)?;
        jwt::check_audience(claims, &self.settings.audience)?;

        let issued_at = jwt::issued_at(claims)?;
        let age = (i128::from(now) - i128::from(issued_at)).unsigned_abs();
        if age > u128::from(self.settings.max_age_seconds) {
            return Err(CheckFailure::new(
                FailureClass::Request,
                "iat outside max age",
                "the token's iat is too far from the current time",
            ));
        }
        jwt::check_not_expired(claims, now)?;

        match jwt::events(claims)?.get(BACKCHANNEL_LOGOUT_EVENT) {
            Some(Value::Object(_)) => {}
            Some(_) => {
                return Err(CheckFailure::new(
                    FailureClass::Request,
                    "invalid logout event",
                    "the back-channel logout member of events is not a JSON object",
                ))
            }
            None => {
                return Err(CheckFailure::new(
                    FailureClass::Request,
                    "not a logout token",
                    "the token's events claim has no back-channel logout member",
                ))
            }
        }

        check_subject_or_session(claims)?;
        if claims.contains_key("nonce") {
            return Err(CheckFailure::new(
                FailureClass::Request,
                "nonce present",
                "a logout token must not contain a nonce claim",
            ));
        }
        let id = jwt::token_id(claims)?.to_owned();
        Ok((id, issued_at))
    }
}

/// Requires `sub`, `sid` or both, each a non-empty string when present.
fn check_subject_or_session(claims: &Map<String, Value>) -> Result<(), CheckFailure> {
    let mut found = false;
    for name in ["sub", "sid"] {
        match claims.get(name) {
            None => {}
            Some(Value::String(value)) if !value.is_empty() => found = true,
            Some(_) => {
                return Err(CheckFailure::new(
                    FailureClass::Request,
                    "invalid sub or sid",
                    "the token's sub or sid is not a non-empty string",
                ))
            }
        }
    }
    if found {
        Ok(())
    } else {
        Err(CheckFailure::new(
            FailureClass::Request,
            "missing sub and sid",
            "a logout token must contain sub, sid or both",
        ))
    }
}

/// Reads the one `logout_token` field of a form body, decoded and with
/// surrounding whitespace removed.
fn logout_token(body: &[u8]) -> Result<String, CheckFailure> {
    let mut found: Option<Vec<u8>> = None;
    for pair in body.split(|&byte| byte == b'&') {
        let (name, value) = match pair.iter().position(|&byte| byte == b'=') {
            Some(index) => (&pair[..index], &pair[index + 1..]),
            None => (pair, &b""[..]),
        };
        if form_decode(name) != TOKEN_FIELD.as_bytes() {
            continue;
        }
        if found.is_some() {
            return Err(CheckFailure::new(
                FailureClass::Request,
                "duplicate logout_token",
                "the form body has more than one logout_token field",
            ));
        }
        found = Some(form_decode(value));
    }

    let missing = CheckFailure::new(
        FailureClass::Request,
        "missing logout_token",
        "the form body has no logout_token field, or it is empty",
    );
    let value = found.ok_or(missing.clone())?;
    let text = String::from_utf8(value).map_err(|_| {
        CheckFailure::new(
            FailureClass::Request,
            "malformed token",
            "the logout_token field is not valid UTF-8",
        )
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(missing);
    }
    Ok(token.to_owned())
}

/// Decodes one form component: `+` is a space, then percent-escapes.
fn form_decode(component: &[u8]) -> Vec<u8> {
    let spaced: Vec<u8> = component
        .iter()
        .map(|&byte| if byte == b'+' { b' ' } else { byte })
        .collect();
    percent_decode(&spaced).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::sources::jwt::testing::{ec_key, key_set, sign, TestKey};

    const SAMPLE: &str = include_str!("../../tests/fixtures/oidc-logout-token.claims.json");
    /// The sample's `iat`.
    const NOW: i64 = 1_764_849_600;

    fn sample() -> Value {
        serde_json::from_str(SAMPLE).unwrap()
    }

    fn source() -> OidcBackchannelSource {
        OidcBackchannelSource::new(OidcBackchannelSettings {
            issuer: "https://id.example.com/realms/main".to_owned(),
            audience: "revokd-client".to_owned(),
            max_age_seconds: 300,
        })
        .unwrap()
    }

    fn run(body: &[u8], key: &TestKey, now: i64) -> Result<Vec<DecodedEvent>, TokenRejection> {
        let headers: Vec<(String, String)> = Vec::new();
        source().verify_and_decode(
            &Inbound {
                headers: &headers,
                body,
                now,
            },
            &key_set(&[&key.jwk]),
        )
    }

    fn run_claims(claims: &Value) -> Result<Vec<DecodedEvent>, TokenRejection> {
        let key = ec_key("ec-1");
        let token = sign(&key, "logout+jwt", claims);
        run(format!("logout_token={token}").as_bytes(), &key, NOW)
    }

    fn rejection_reason(result: Result<Vec<DecodedEvent>, TokenRejection>) -> &'static str {
        match result {
            Err(TokenRejection::Invalid {
                code,
                reason,
                description,
            }) => {
                assert_eq!(code, ERROR_CODE);
                assert!(!description.is_empty());
                reason
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    fn with(mut claims: Value, name: &str, value: Value) -> Value {
        claims[name] = value;
        claims
    }

    fn without(mut claims: Value, name: &str) -> Value {
        claims.as_object_mut().unwrap().remove(name);
        claims
    }

    #[test]
    fn decode_sample_logout_token() {
        let events = run_claims(&sample()).unwrap();
        assert_eq!(events.len(), 1);
        let event = &events[0];
        assert_eq!(event.types, vec![EVENT_TYPE]);
        assert_eq!(event.delivery_key, "bcl-4d1c8a7e-91f2");
        assert_eq!(event.occurred_at, Some(NOW * 1000));
        assert_eq!(event.payload, sample());
    }

    #[test]
    fn form_body_variants() {
        let key = ec_key("ec-1");
        let token = sign(&key, "JWT", &sample());
        for body in [
            format!("logout_token={token}"),
            format!("state=x&logout_token={token}&other=1"),
            format!("logout%5Ftoken={token}"),
            format!("logout_token={token}%0A"),
            format!("logout_token={}", token.replace('.', "%2E")),
        ] {
            assert!(run(body.as_bytes(), &key, NOW).is_ok(), "body {body:?}");
        }
    }

    #[test]
    fn form_body_rejections() {
        let key = ec_key("ec-1");
        let token = sign(&key, "JWT", &sample());
        for (body, reason) in [
            (String::new(), "missing logout_token"),
            ("logout_token=".to_owned(), "missing logout_token"),
            ("logout_token".to_owned(), "missing logout_token"),
            ("token=abc".to_owned(), "missing logout_token"),
            (token.clone(), "missing logout_token"),
            (
                format!("logout_token={token}&logout_token={token}"),
                "duplicate logout_token",
            ),
            ("logout_token=%FF%FE".to_owned(), "malformed token"),
        ] {
            assert_eq!(
                rejection_reason(run(body.as_bytes(), &key, NOW)),
                reason,
                "body {body:?}"
            );
        }
    }

    #[test]
    fn issuer_and_audience() {
        assert_eq!(
            rejection_reason(run_claims(&with(sample(), "iss", json!("https://other")))),
            "issuer mismatch"
        );
        assert_eq!(
            rejection_reason(run_claims(&with(sample(), "aud", json!("other-client")))),
            "audience mismatch"
        );
        assert!(run_claims(&with(sample(), "aud", json!(["x", "revokd-client"]))).is_ok());
    }

    #[test]
    fn iat_window() {
        for (offset, accepted) in [(-300, true), (300, true), (-301, false), (301, false)] {
            let claims = with(sample(), "iat", json!(NOW + offset));
            let result = run_claims(&claims);
            if accepted {
                assert!(result.is_ok(), "offset {offset}");
            } else {
                assert_eq!(
                    rejection_reason(result),
                    "iat outside max age",
                    "offset {offset}"
                );
            }
        }
        assert_eq!(
            rejection_reason(run_claims(&without(sample(), "iat"))),
            "missing iat"
        );
        assert_eq!(
            rejection_reason(run_claims(&with(sample(), "iat", json!("now")))),
            "invalid iat"
        );
    }

    #[test]
    fn exp_checked_when_present() {
        assert!(run_claims(&with(sample(), "exp", json!(NOW + 120))).is_ok());
        assert!(run_claims(&with(sample(), "exp", json!(NOW - 60))).is_ok());
        assert_eq!(
            rejection_reason(run_claims(&with(sample(), "exp", json!(NOW - 61)))),
            "token expired"
        );
    }

    #[test]
    fn events_claim() {
        assert_eq!(
            rejection_reason(run_claims(&without(sample(), "events"))),
            "missing events"
        );
        assert_eq!(
            rejection_reason(run_claims(&with(sample(), "events", json!([])))),
            "invalid events"
        );
        let other_event =
            json!({ "https://schemas.openid.net/secevent/caep/event-type/session-revoked": {} });
        assert_eq!(
            rejection_reason(run_claims(&with(sample(), "events", other_event))),
            "not a logout token"
        );
        let not_object = json!({ BACKCHANNEL_LOGOUT_EVENT: true });
        assert_eq!(
            rejection_reason(run_claims(&with(sample(), "events", not_object))),
            "invalid logout event"
        );
    }

    #[test]
    fn sub_and_sid() {
        assert!(run_claims(&without(sample(), "sub")).is_ok());
        assert!(run_claims(&without(sample(), "sid")).is_ok());
        assert_eq!(
            rejection_reason(run_claims(&without(without(sample(), "sub"), "sid"))),
            "missing sub and sid"
        );
        assert_eq!(
            rejection_reason(run_claims(&with(sample(), "sub", json!(42)))),
            "invalid sub or sid"
        );
        assert_eq!(
            rejection_reason(run_claims(&with(
                without(sample(), "sid"),
                "sub",
                json!("")
            ))),
            "invalid sub or sid"
        );
    }

    #[test]
    fn nonce_forbidden() {
        assert_eq!(
            rejection_reason(run_claims(&with(sample(), "nonce", json!("n-1")))),
            "nonce present"
        );
    }

    #[test]
    fn jti_required() {
        assert_eq!(
            rejection_reason(run_claims(&without(sample(), "jti"))),
            "missing jti"
        );
    }

    #[test]
    fn unknown_kid_is_reported() {
        let signer = ec_key("ec-2");
        let published = ec_key("ec-1");
        let token = sign(&signer, "JWT", &sample());
        let result = run(format!("logout_token={token}").as_bytes(), &published, NOW);
        assert_eq!(
            result,
            Err(TokenRejection::UnknownKey {
                kid: Some("ec-2".to_owned())
            })
        );
    }

    #[test]
    fn descriptions_hold_no_token_content() {
        let claims = with(sample(), "iss", json!("https://secret-issuer.example"));
        let Err(TokenRejection::Invalid { description, .. }) = run_claims(&claims) else {
            panic!("expected Invalid");
        };
        assert!(!description.contains("secret-issuer"), "{description}");
    }

    #[test]
    fn new_rejects_bad_settings() {
        let good = OidcBackchannelSettings {
            issuer: "https://issuer".to_owned(),
            audience: "client".to_owned(),
            max_age_seconds: 300,
        };
        assert!(OidcBackchannelSource::new(good.clone()).is_ok());
        for (settings, phrase) in [
            (
                OidcBackchannelSettings {
                    issuer: String::new(),
                    ..good.clone()
                },
                "issuer is empty",
            ),
            (
                OidcBackchannelSettings {
                    audience: String::new(),
                    ..good.clone()
                },
                "audience is empty",
            ),
            (
                OidcBackchannelSettings {
                    max_age_seconds: 0,
                    ..good.clone()
                },
                "max_age_seconds is 0",
            ),
        ] {
            let error = OidcBackchannelSource::new(settings).unwrap_err();
            assert!(error.contains(phrase), "{error}");
        }
    }
}
