//! OpenID Shared Signals (SSF 1.0) push delivery: Security Event Tokens
//! (RFC 8417) carrying CAEP and RISC events, delivered as in RFC 8935.
//!
//! The transmitter POSTs the compact SET itself as the body, with content type
//! `application/secevent+jwt`, and may send a fixed `Authorization` value that
//! the receiver chose when it created the stream. A SET needs `typ`
//! `secevent+jwt`, a valid signature from the transmitter's JWK set, `iss`,
//! `aud`, `iat`, `jti` and a non-empty `events` object. SETs usually have no
//! `exp`, so one is checked only when present. Failures use RFC 8935's error
//! codes, sent as `{"err","description"}` with status 400.

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::jwt::{self, CheckFailure, FailureClass, TokenRejection};
use super::{header_str, DecodedEvent, Inbound};
use jsonwebtoken::jwk::JwkSet;

/// Prefix of CAEP event-type URIs. Their events are typed `caep.<name>`.
pub const CAEP_EVENT_PREFIX: &str = "https://schemas.openid.net/secevent/caep/event-type/";

/// Prefix of RISC event-type URIs. Their events are typed `risc.<name>`.
pub const RISC_EVENT_PREFIX: &str = "https://schemas.openid.net/secevent/risc/event-type/";

/// RFC 8935 error code for a token signed with a key that is not in the
/// transmitter's JWK set, for use once a refetch did not bring the key.
pub const UNKNOWN_KEY_ERROR_CODE: &str = "invalid_key";

/// RFC 8935 error code for a missing or wrong `Authorization` header.
pub const AUTHENTICATION_FAILED: &str = "authentication_failed";

/// Settings of one `ssf` source.
#[derive(Debug, Clone)]
pub struct SsfSettings {
    /// Expected `iss`, compared exactly.
    pub issuer: String,
    /// Value that `aud` must be or contain.
    pub audience: String,
    /// When set, the request's `Authorization` header must equal this whole
    /// value (for example `Bearer …`), as SSF's `authorization_header`.
    pub authorization: Option<SecretString>,
}

/// Verifier and decoder for one SSF transmitter's pushed SETs.
pub struct SsfSource {
    issuer: String,
    audience: String,
    /// SHA-256 of the expected `Authorization` value. Digests have one length,
    /// so comparing them in constant time does not leak the value's length.
    authorization_digest: Option<[u8; 32]>,
}

impl std::fmt::Debug for SsfSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsfSource")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("authorization", &self.authorization_digest.is_some())
            .finish()
    }
}

fn error_code(class: FailureClass) -> &'static str {
    match class {
        FailureClass::Request => "invalid_request",
        FailureClass::Key => "invalid_key",
        FailureClass::Issuer => "invalid_issuer",
        FailureClass::Audience => "invalid_audience",
    }
}

fn digest(value: &[u8]) -> [u8; 32] {
    Sha256::digest(value).into()
}

fn request_failure(reason: &'static str, description: &'static str) -> CheckFailure {
    CheckFailure::new(FailureClass::Request, reason, description)
}

impl SsfSource {
    /// Builds a verifier. Fails when the issuer, the audience or a configured
    /// authorization value is empty.
    pub fn new(settings: SsfSettings) -> Result<Self, String> {
        if settings.issuer.is_empty() {
            return Err("ssf source: issuer is empty; set it to the transmitter's \
                 issuer exactly as its SETs carry it in `iss`"
                .to_owned());
        }
        if settings.audience.is_empty() {
            return Err("ssf source: audience is empty; set it to the `aud` value \
                 the transmitter puts in its SETs for this stream"
                .to_owned());
        }
        let authorization_digest = match &settings.authorization {
            None => None,
            Some(value) if value.expose_secret().trim().is_empty() => {
                return Err("ssf source: authorization is empty; set it to the whole \
                     Authorization header value given to the transmitter, or remove it"
                    .to_owned())
            }
            Some(value) => Some(digest(value.expose_secret().trim().as_bytes())),
        };
        Ok(Self {
            issuer: settings.issuer,
            audience: settings.audience,
            authorization_digest,
        })
    }

    /// Authenticates the request, verifies its SET against `keys`, and decodes
    /// one event per member of `events`.
    ///
    /// Each event is typed by its URI (see [`event_type`]). Its delivery key is
    /// `"{jti} {event URI}"`. Its payload is the token's claims plus `event`
    /// (this event's object) and `subject` (see [`normalize_subject`]). Its
    /// time is the event's `event_timestamp`, else the token's `toe`, else its
    /// `iat`.
    pub fn verify_and_decode(
        &self,
        req: &Inbound,
        keys: &JwkSet,
    ) -> Result<Vec<DecodedEvent>, TokenRejection> {
        self.authenticate(req)?;

        let body = std::str::from_utf8(req.body)
            .map_err(|_| {
                request_failure("malformed token", "the body is not a compact JWS in ASCII")
            })
            .map_err(|failure| failure.into_rejection(error_code))?;
        let parsed =
            jwt::parse(body.trim()).map_err(|failure| failure.into_rejection(error_code))?;
        check_type(parsed.typ.as_deref()).map_err(|failure| failure.into_rejection(error_code))?;
        parsed
            .verify_signature(keys)
            .map_err(|error| error.into_rejection(error_code))?;
        let claims = parsed
            .claims()
            .map_err(|failure| failure.into_rejection(error_code))?;
        self.decode_claims(&claims, req.now)
            .map_err(|failure| failure.into_rejection(error_code))
    }

    /// Checks the request's `Authorization` header against the configured
    /// value, in constant time. Passes when no value is configured. Needs no
    /// key set, so the HTTP layer runs it before loading the issuer's keys.
    pub fn authenticate(&self, req: &Inbound) -> Result<(), TokenRejection> {
        let Some(expected) = &self.authorization_digest else {
            return Ok(());
        };
        let Some(value) = header_str(req.headers, "authorization") else {
            return Err(TokenRejection::Invalid {
                code: AUTHENTICATION_FAILED,
                reason: "missing authorization header",
                description: "the request has no Authorization header".to_owned(),
            });
        };
        if bool::from(digest(value.as_bytes()).ct_eq(expected)) {
            Ok(())
        } else {
            Err(TokenRejection::Invalid {
                code: AUTHENTICATION_FAILED,
                reason: "authorization mismatch",
                description: "the Authorization header does not match the stream's value"
                    .to_owned(),
            })
        }
    }

    fn decode_claims(
        &self,
        claims: &Map<String, Value>,
        now: i64,
    ) -> Result<Vec<DecodedEvent>, CheckFailure> {
        jwt::check_issuer(claims, &self.issuer)?;
        jwt::check_audience(claims, &self.audience)?;
        let issued_at = jwt::issued_at(claims)?;
        jwt::check_not_expired(claims, now)?;
        let token_id = jwt::token_id(claims)?;
        let events = jwt::events(claims)?;
        if events.is_empty() {
            return Err(request_failure(
                "no events",
                "the SET's events claim is empty",
            ));
        }

        let token_time = claims.get("toe").and_then(jwt::numeric_date);
        let mut decoded = Vec::with_capacity(events.len());
        for (uri, event) in events {
            let Value::Object(event_object) = event else {
                return Err(request_failure(
                    "invalid event",
                    "a member of the SET's events claim is not a JSON object",
                ));
            };
            let event_type = event_type(uri).ok_or(request_failure(
                "invalid event type",
                "an event-type URI in the SET has no name segment",
            ))?;
            let subject = subject_of(event_object, claims)?;
            let occurred_at = event_object
                .get("event_timestamp")
                .and_then(jwt::numeric_date)
                .or(token_time)
                .unwrap_or(issued_at);

            let mut payload = claims.clone();
            payload.insert("event".to_owned(), event.clone());
            payload.insert("subject".to_owned(), subject);
            decoded.push(DecodedEvent {
                delivery_key: format!("{token_id} {uri}"),
                types: vec![event_type],
                payload: Value::Object(payload),
                occurred_at: occurred_at.checked_mul(1000),
            });
        }
        Ok(decoded)
    }
}

/// Accepts `typ` `secevent+jwt` in any letter case, optionally with an
/// `application/` prefix.
fn check_type(typ: Option<&str>) -> Result<(), CheckFailure> {
    let Some(typ) = typ else {
        return Err(request_failure(
            "missing typ",
            "the SET's header has no typ; SSF requires secevent+jwt",
        ));
    };
    let media_type = match typ.get(..12) {
        Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &typ[12..],
        _ => typ,
    };
    if media_type.eq_ignore_ascii_case("secevent+jwt") {
        Ok(())
    } else {
        Err(request_failure(
            "wrong typ",
            "the SET's header typ is not secevent+jwt",
        ))
    }
}

/// Maps an event-type URI to the event type rules match: `caep.<name>` and
/// `risc.<name>` for the CAEP and RISC families, `ssf.<name>` for any other
/// URI, where `<name>` is the URI's last non-empty segment after `/`, `:` or
/// `#`. Returns `None` when the URI has no such segment.
///
/// For example `https://schemas.openid.net/secevent/caep/event-type/session-revoked`
/// becomes `caep.session-revoked`.
pub fn event_type(uri: &str) -> Option<String> {
    let family = if uri.starts_with(CAEP_EVENT_PREFIX) {
        "caep"
    } else if uri.starts_with(RISC_EVENT_PREFIX) {
        "risc"
    } else {
        "ssf"
    };
    let name = uri
        .rsplit(['/', ':', '#'])
        .find(|segment| !segment.is_empty())?;
    Some(format!("{family}.{name}"))
}

/// Returns the event's own `subject` if present, else the SET's `sub_id`,
/// normalized. Returns `null` when neither is present.
fn subject_of(
    event: &Map<String, Value>,
    claims: &Map<String, Value>,
) -> Result<Value, CheckFailure> {
    match event.get("subject").or_else(|| claims.get("sub_id")) {
        None => Ok(Value::Null),
        Some(Value::Object(subject)) => Ok(Value::Object(normalize_subject(subject))),
        Some(_) => Err(request_failure(
            "invalid subject",
            "the SET's subject or sub_id is not a JSON object",
        )),
    }
}

/// Returns a subject identifier with every member as sent, plus a `format`
/// when only the legacy RISC `subject_type` names it: `iss-sub` becomes
/// `iss_sub`, so rules can address both forms by `/subject/format`.
pub fn normalize_subject(subject: &Map<String, Value>) -> Map<String, Value> {
    let mut normalized = subject.clone();
    if !normalized.contains_key("format") {
        if let Some(Value::String(subject_type)) = subject.get("subject_type") {
            normalized.insert(
                "format".to_owned(),
                Value::String(subject_type.replace('-', "_")),
            );
        }
    }
    normalized
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::sources::jwt::testing::{ec_key, key_set, sign, TestKey};

    const CAEP_SAMPLE: &str =
        include_str!("../../tests/fixtures/ssf-caep-session-revoked.claims.json");
    const RISC_SAMPLE: &str =
        include_str!("../../tests/fixtures/ssf-risc-account-disabled.claims.json");
    const NOW: i64 = 1_764_849_700;
    const BEARER: &str = "Bearer stream-secret-0123";

    fn caep() -> Value {
        serde_json::from_str(CAEP_SAMPLE).unwrap()
    }

    fn risc() -> Value {
        serde_json::from_str(RISC_SAMPLE).unwrap()
    }

    fn settings(authorization: Option<&str>) -> SsfSettings {
        SsfSettings {
            issuer: "https://transmitter.example.com".to_owned(),
            audience: "https://hooks.example.com/hooks/ssf".to_owned(),
            authorization: authorization.map(SecretString::from),
        }
    }

    fn run_with(
        source: &SsfSource,
        headers: &[(String, String)],
        body: &[u8],
        key: &TestKey,
    ) -> Result<Vec<DecodedEvent>, TokenRejection> {
        let headers = headers.to_vec();
        source.verify_and_decode(
            &Inbound {
                headers: &headers,
                body,
                now: NOW,
            },
            &key_set(&[&key.jwk]),
        )
    }

    fn run_typed(claims: &Value, typ: &str) -> Result<Vec<DecodedEvent>, TokenRejection> {
        let key = ec_key("ec-1");
        let token = sign(&key, typ, claims);
        run_with(
            &SsfSource::new(settings(None)).unwrap(),
            &[],
            token.as_bytes(),
            &key,
        )
    }

    fn run(claims: &Value) -> Result<Vec<DecodedEvent>, TokenRejection> {
        run_typed(claims, "secevent+jwt")
    }

    fn rejection(
        result: Result<Vec<DecodedEvent>, TokenRejection>,
    ) -> (&'static str, &'static str) {
        match result {
            Err(TokenRejection::Invalid { code, reason, .. }) => (code, reason),
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
    fn decode_caep_sample() {
        let events = run(&caep()).unwrap();
        assert_eq!(events.len(), 1);
        let event = &events[0];
        let uri = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
        assert_eq!(event.types, vec!["caep.session-revoked"]);
        assert_eq!(event.delivery_key, format!("set-7b2e1f0a9c {uri}"));
        assert_eq!(event.occurred_at, Some(1_764_849_598_000));
        assert_eq!(event.payload["event"], caep()["events"][uri]);
        assert_eq!(
            event.payload["subject"],
            json!({ "format": "email", "email": "jane.doe@example.com" })
        );
        assert_eq!(event.payload["txn"], "txn-55aa");
        assert_eq!(event.payload["events"], caep()["events"]);
    }

    #[test]
    fn decode_risc_sample() {
        let events = run(&risc()).unwrap();
        assert_eq!(events.len(), 1);
        let event = &events[0];
        assert_eq!(event.types, vec!["risc.account-disabled"]);
        assert_eq!(event.occurred_at, Some(1_764_849_700_000));
        assert_eq!(event.payload["event"]["reason"], "hijacking");
        assert_eq!(
            event.payload["subject"],
            json!({ "format": "iss_sub", "iss": "https://id.example.com", "sub": "248289761001" })
        );
    }

    #[test]
    fn event_subject_overrides_sub_id() {
        let uri = "https://schemas.openid.net/secevent/risc/event-type/account-disabled";
        let legacy = json!({
            "subject_type": "iss-sub", "iss": "https://accounts.google.com/", "sub": "1234"
        });
        let claims = with(
            without(risc(), "sub_id"),
            "events",
            json!({ uri: { "subject": legacy, "reason": "hijacking" } }),
        );
        let events = run(&claims).unwrap();
        assert_eq!(
            events[0].payload["subject"],
            json!({
                "subject_type": "iss-sub", "format": "iss_sub",
                "iss": "https://accounts.google.com/", "sub": "1234"
            })
        );

        let opaque = json!({ "format": "opaque", "id": "stream-1" });
        let claims = with(
            risc(),
            "events",
            json!({ uri: { "subject": opaque.clone() } }),
        );
        assert_eq!(run(&claims).unwrap()[0].payload["subject"], opaque);
    }

    #[test]
    fn subject_absent_or_invalid() {
        let events = run(&without(caep(), "sub_id")).unwrap();
        assert_eq!(events[0].payload["subject"], Value::Null);
        assert_eq!(
            rejection(run(&with(caep(), "sub_id", json!("jane")))),
            ("invalid_request", "invalid subject")
        );
    }

    #[test]
    fn normalize_subject_keeps_members() {
        for subject in [
            json!({ "format": "email", "email": "a@example.com" }),
            json!({ "format": "iss_sub", "iss": "https://i", "sub": "s" }),
            json!({ "format": "opaque", "id": "x" }),
            json!({ "format": "complex", "user": { "format": "email", "email": "a@b" } }),
            json!({ "format": "iss_sub", "subject_type": "iss-sub", "iss": "i", "sub": "s" }),
        ] {
            let object = subject.as_object().unwrap();
            assert_eq!(&normalize_subject(object), object);
        }
        let legacy = json!({ "subject_type": "id_token_claims", "email": "a@b" });
        assert_eq!(
            normalize_subject(legacy.as_object().unwrap())["format"],
            "id_token_claims"
        );
    }

    #[test]
    fn event_type_mapping() {
        for (uri, expected) in [
            (
                "https://schemas.openid.net/secevent/caep/event-type/session-revoked",
                "caep.session-revoked",
            ),
            (
                "https://schemas.openid.net/secevent/caep/event-type/credential-change",
                "caep.credential-change",
            ),
            (
                "https://schemas.openid.net/secevent/risc/event-type/account-disabled",
                "risc.account-disabled",
            ),
            (
                "https://schemas.openid.net/secevent/risc/event-type/sessions-revoked/",
                "risc.sessions-revoked",
            ),
            (
                "https://schemas.openid.net/secevent/ssf/event-type/verification",
                "ssf.verification",
            ),
            (
                "https://schemas.openid.net/secevent/oauth/event-type/tokens-revoked",
                "ssf.tokens-revoked",
            ),
            ("urn:example:secevent:user-locked", "ssf.user-locked"),
            ("https://example.com/events#logout", "ssf.logout"),
        ] {
            assert_eq!(event_type(uri).as_deref(), Some(expected), "{uri}");
        }
        for uri in ["", "/", ":#/"] {
            assert_eq!(event_type(uri), None, "{uri:?}");
        }
    }

    #[test]
    fn one_event_per_member() {
        let caep_uri = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
        let risc_uri = "https://schemas.openid.net/secevent/risc/event-type/account-purged";
        let claims = with(
            caep(),
            "events",
            json!({ caep_uri: { "event_timestamp": 1_764_849_500 }, risc_uri: {} }),
        );
        let claims = with(claims, "toe", json!(1_764_849_550));
        let events = run(&claims).unwrap();
        assert_eq!(events.len(), 2);

        let by_type = |name: &str| events.iter().find(|event| event.types == [name]).unwrap();
        let session = by_type("caep.session-revoked");
        assert_eq!(session.delivery_key, format!("set-7b2e1f0a9c {caep_uri}"));
        assert_eq!(session.occurred_at, Some(1_764_849_500_000));
        let purged = by_type("risc.account-purged");
        assert_eq!(purged.delivery_key, format!("set-7b2e1f0a9c {risc_uri}"));
        assert_eq!(purged.occurred_at, Some(1_764_849_550_000));
        assert_eq!(purged.payload["event"], json!({}));
    }

    #[test]
    fn typ_header() {
        for typ in [
            "secevent+jwt",
            "SecEvent+JWT",
            "application/secevent+jwt",
            "Application/secevent+jwt",
        ] {
            assert!(run_typed(&caep(), typ).is_ok(), "{typ}");
        }
        for typ in [
            "JWT",
            "logout+jwt",
            "application/jwt",
            "secevent+jwt; x",
            "text/secevent+jwt",
        ] {
            assert_eq!(
                rejection(run_typed(&caep(), typ)),
                ("invalid_request", "wrong typ"),
                "{typ}"
            );
        }
        let key = ec_key("ec-1");
        let header = json!({ "alg": "ES256", "kid": "ec-1" });
        let token = crate::sources::jwt::testing::sign_with_header(&key, &header, &caep());
        let source = SsfSource::new(settings(None)).unwrap();
        assert_eq!(
            rejection(run_with(&source, &[], token.as_bytes(), &key)),
            ("invalid_request", "missing typ")
        );
    }

    #[test]
    fn error_codes_per_check() {
        let cases = [
            (
                with(caep(), "iss", json!("https://other")),
                "invalid_issuer",
                "issuer mismatch",
            ),
            (without(caep(), "iss"), "invalid_issuer", "missing issuer"),
            (
                with(caep(), "aud", json!("https://other")),
                "invalid_audience",
                "audience mismatch",
            ),
            (
                without(caep(), "aud"),
                "invalid_audience",
                "missing audience",
            ),
            (without(caep(), "jti"), "invalid_request", "missing jti"),
            (without(caep(), "iat"), "invalid_request", "missing iat"),
            (
                without(caep(), "events"),
                "invalid_request",
                "missing events",
            ),
            (
                with(caep(), "events", json!({})),
                "invalid_request",
                "no events",
            ),
            (
                with(caep(), "events", json!({ "https://x/y": "revoked" })),
                "invalid_request",
                "invalid event",
            ),
            (
                with(caep(), "exp", json!(NOW - 61)),
                "invalid_request",
                "token expired",
            ),
        ];
        for (claims, code, reason) in cases {
            assert_eq!(rejection(run(&claims)), (code, reason), "{reason}");
        }
    }

    #[test]
    fn exp_optional() {
        assert!(run(&without(caep(), "exp")).is_ok());
        assert!(run(&with(caep(), "exp", json!(NOW + 60))).is_ok());
    }

    #[test]
    fn old_iat_accepted() {
        // SETs have no freshness window: a transmitter may retry for hours.
        assert!(run(&with(caep(), "iat", json!(NOW - 86_400))).is_ok());
    }

    #[test]
    fn signature_failures_are_invalid_key() {
        let signer = ec_key("ec-1");
        let published = ec_key("ec-1");
        let token = sign(&signer, "secevent+jwt", &caep());
        let source = SsfSource::new(settings(None)).unwrap();
        assert_eq!(
            rejection(run_with(&source, &[], token.as_bytes(), &published)),
            ("invalid_key", "bad signature")
        );

        let unknown = ec_key("ec-9");
        let token = sign(&unknown, "secevent+jwt", &caep());
        let result = run_with(&source, &[], token.as_bytes(), &published);
        assert_eq!(
            result.clone(),
            Err(TokenRejection::UnknownKey {
                kid: Some("ec-9".to_owned())
            })
        );
        assert_eq!(
            rejection(Err(result
                .unwrap_err()
                .unknown_key_as_invalid(UNKNOWN_KEY_ERROR_CODE))),
            ("invalid_key", "unknown key id")
        );
    }

    #[test]
    fn authorization_header() {
        let key = ec_key("ec-1");
        let token = sign(&key, "secevent+jwt", &caep());
        let source = SsfSource::new(settings(Some(BEARER))).unwrap();
        let header = |value: &str| vec![("Authorization".to_owned(), value.to_owned())];

        assert!(run_with(&source, &header(BEARER), token.as_bytes(), &key).is_ok());
        assert_eq!(
            rejection(run_with(&source, &[], token.as_bytes(), &key)),
            (AUTHENTICATION_FAILED, "missing authorization header")
        );
        for wrong in [
            "Bearer stream-secret-0124",
            "stream-secret-0123",
            "bearer stream-secret-0123",
            "",
        ] {
            assert_eq!(
                rejection(run_with(&source, &header(wrong), token.as_bytes(), &key)),
                (AUTHENTICATION_FAILED, "authorization mismatch"),
                "{wrong:?}"
            );
        }
        // Authentication comes first: a bad token with a wrong header is an
        // authentication failure.
        assert_eq!(
            rejection(run_with(&source, &header("x"), b"garbage", &key)),
            (AUTHENTICATION_FAILED, "authorization mismatch")
        );
    }

    #[test]
    fn body_forms() {
        let key = ec_key("ec-1");
        let token = sign(&key, "secevent+jwt", &caep());
        let source = SsfSource::new(settings(None)).unwrap();
        assert!(run_with(&source, &[], format!("{token}\r\n").as_bytes(), &key).is_ok());
        for body in [&b""[..], b"\xff\xfe", b"logout_token=abc"] {
            assert_eq!(
                rejection(run_with(&source, &[], body, &key)).0,
                "invalid_request",
                "{body:?}"
            );
        }
    }

    #[test]
    fn new_rejects_bad_settings() {
        assert!(SsfSource::new(settings(Some(BEARER))).is_ok());
        let mut empty_issuer = settings(None);
        empty_issuer.issuer.clear();
        assert!(SsfSource::new(empty_issuer)
            .unwrap_err()
            .contains("issuer is empty"));
        let mut empty_audience = settings(None);
        empty_audience.audience.clear();
        assert!(SsfSource::new(empty_audience)
            .unwrap_err()
            .contains("audience is empty"));
        assert!(SsfSource::new(settings(Some(" ")))
            .unwrap_err()
            .contains("authorization is empty"));
    }

    #[test]
    fn debug_output_hides_authorization() {
        let text = format!("{:?}", SsfSource::new(settings(Some(BEARER))).unwrap());
        assert!(!text.contains("stream-secret"), "{text}");
    }
}
