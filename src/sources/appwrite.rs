//! Appwrite webhook verification and decoding.
//!
//! Appwrite sends `X-Appwrite-Webhook-Signature`: the standard base64 of
//! HMAC-SHA1, keyed with the webhook's secret as UTF-8 text, over the
//! configured webhook URL followed by the raw body. The scheme has no
//! timestamp or nonce, so a replayed delivery is caught only by deduplication
//! on the body digest. `X-Appwrite-Webhook-Events` is not signed, so `decode`
//! checks its names against the user that the signed body names.

use std::collections::HashSet;
use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use percent_encoding::percent_decode_str;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use super::{header_str, parse_json_body, DecodedEvent, Inbound, Rejection};

type HmacSha1 = Hmac<Sha1>;

const SIGNATURE_HEADER: &str = "x-appwrite-webhook-signature";
const EVENTS_HEADER: &str = "x-appwrite-webhook-events";
const AUTHORIZATION_HEADER: &str = "authorization";

/// HMAC-SHA1 output length in bytes.
const SIGNATURE_LEN: usize = 20;

/// HTTP basic auth credentials configured on the Appwrite webhook.
///
/// Appwrite sends `Authorization: Basic …` only when both values are
/// non-empty, so `AppwriteSource::new` rejects an empty one.
#[derive(Debug)]
pub struct BasicAuth {
    pub user: SecretString,
    pub password: SecretString,
}

/// Verifier and decoder for one configured Appwrite webhook.
pub struct AppwriteSource {
    /// The webhook URL exactly as configured in Appwrite.
    signed_url: String,
    /// One keyed HMAC state per (secret, URL form), already fed with the URL,
    /// so that each request hashes only its body.
    signers: Vec<HmacSha1>,
    /// `user:password`, which the `Authorization: Basic` token must decode to.
    basic_credentials: Option<SecretString>,
}

impl AppwriteSource {
    /// Builds a verifier for the webhook URL exactly as configured in Appwrite.
    ///
    /// `secrets` are the webhook's signing secrets, in rotation order, and a
    /// request verifies when any of them signed it. Errors when `signed_url`,
    /// the secret list, a secret, or a basic auth value is empty.
    pub fn new(
        signed_url: &str,
        secrets: Vec<SecretString>,
        basic_auth: Option<BasicAuth>,
    ) -> Result<Self, String> {
        if signed_url.is_empty() {
            return Err(
                "appwrite source: signed_url is empty; set it to the webhook URL \
                 exactly as configured in Appwrite"
                    .to_owned(),
            );
        }
        if !has_http_scheme(signed_url) {
            // Appwrite signs the full webhook URL, scheme included, so a
            // signed_url without one can never match a signature.
            return Err(
                "appwrite source: signed_url does not start with http:// or https://. \
                 Set it to the whole webhook URL exactly as configured in Appwrite, \
                 e.g. https://hooks.example.com/hooks/appwrite"
                    .to_owned(),
            );
        }
        if secrets.is_empty() {
            return Err(
                "appwrite source: no secret configured; add the webhook's secret \
                 from the Appwrite console"
                    .to_owned(),
            );
        }

        let url_forms = signed_url_forms(signed_url);
        let mut signers = Vec::with_capacity(secrets.len() * url_forms.len());
        for (index, secret) in secrets.iter().enumerate() {
            let key = secret.expose_secret().as_bytes();
            if key.is_empty() {
                return Err(format!(
                    "appwrite source: secret at position {} is empty; set it to the \
                     webhook's secret from the Appwrite console",
                    index + 1
                ));
            }
            for url in &url_forms {
                let mut signer =
                    HmacSha1::new_from_slice(key).expect("HMAC accepts keys of any length");
                signer.update(url);
                signers.push(signer);
            }
        }

        let basic_credentials = match basic_auth {
            None => None,
            Some(auth) => {
                let user = auth.user.expose_secret();
                let password = auth.password.expose_secret();
                if user.is_empty() || password.is_empty() {
                    return Err("appwrite source: basic auth needs both a user and a \
                         password, because Appwrite sends no Authorization header when \
                         either is empty; set both or remove basic auth"
                        .to_owned());
                }
                Some(SecretString::from(format!("{user}:{password}")))
            }
        };

        Ok(Self {
            signed_url: signed_url.to_owned(),
            signers,
            basic_credentials,
        })
    }

    /// Returns the webhook URL exactly as configured.
    pub fn signed_url(&self) -> &str {
        &self.signed_url
    }

    /// Checks basic auth (when configured) and the signature on the raw body.
    ///
    /// Reads nothing from the body but its bytes.
    pub fn verify(&self, req: &Inbound) -> Result<(), Rejection> {
        if let Some(expected) = &self.basic_credentials {
            check_basic_auth(req, expected)?;
        }

        let header = header_str(req.headers, SIGNATURE_HEADER)
            .ok_or(Rejection::Unauthorized("missing signature header"))?;
        let signature = match BASE64.decode(header) {
            Ok(bytes) if bytes.len() == SIGNATURE_LEN => bytes,
            _ => return Err(Rejection::Unauthorized("bad signature")),
        };

        // Every state is hashed and compared, so the time taken does not
        // depend on which secret or URL form matched.
        let mut matched = Choice::from(0);
        for signer in &self.signers {
            let mut mac = signer.clone();
            mac.update(req.body);
            matched |= mac.finalize().into_bytes().as_slice().ct_eq(&signature);
        }
        if bool::from(matched) {
            Ok(())
        } else {
            Err(Rejection::Unauthorized("bad signature"))
        }
    }

    /// Decodes a verified request into one event carrying every name from
    /// `X-Appwrite-Webhook-Events`.
    ///
    /// Rejects with `Unauthorized` when an event name's user segment is
    /// neither `*` nor the user that the body names (`userId`, else `$id`),
    /// because the events header is not covered by the signature.
    pub fn decode(&self, req: &Inbound) -> Result<Vec<DecodedEvent>, Rejection> {
        let types = event_names(req)?;
        let payload = parse_json_body(req.body)?;

        if let Some(user_id) = body_user_id(&payload) {
            let consistent = types.iter().all(|name| user_segment_allows(name, user_id));
            if !consistent {
                return Err(Rejection::Unauthorized("events header names another user"));
            }
        }

        Ok(vec![DecodedEvent {
            delivery_key: hex::encode(Sha256::digest(req.body)),
            types,
            payload,
            occurred_at: None,
        }])
    }
}

impl fmt::Debug for AppwriteSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppwriteSource")
            .field("signers", &self.signers.len())
            .field("basic_auth", &self.basic_credentials.is_some())
            .finish()
    }
}

/// Returns `true` if `url` starts with `http://` or `https://`, in any letter case.
fn has_http_scheme(url: &str) -> bool {
    ["http://", "https://"].iter().any(|scheme| {
        url.get(..scheme.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(scheme))
    })
}

/// Returns the URL forms that Appwrite may sign: the configured bytes, and
/// the percent-decoded bytes when they differ.
///
/// Appwrite 1.9.6 and older sign `rawurldecode(url)` (`%XX` decoded, `+`
/// kept) but post to the raw URL. Unreleased code on Appwrite's main branch
/// signs the raw URL. The decoder leaves a `%` without two hex digits as is,
/// as PHP's `rawurldecode` does.
fn signed_url_forms(url: &str) -> Vec<Vec<u8>> {
    let raw = url.as_bytes().to_vec();
    let decoded: Vec<u8> = percent_decode_str(url).collect();
    if decoded == raw {
        vec![raw]
    } else {
        vec![raw, decoded]
    }
}

/// Compares the `Authorization: Basic` credentials with `expected` in
/// constant time (apart from their length).
fn check_basic_auth(req: &Inbound, expected: &SecretString) -> Result<(), Rejection> {
    let value = header_str(req.headers, AUTHORIZATION_HEADER)
        .ok_or(Rejection::Unauthorized("missing basic auth"))?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(Rejection::Unauthorized("basic auth mismatch"));
    }

    // Invalid base64 decodes to nothing, which never equals `user:password`.
    let credentials = BASE64.decode(token.trim()).unwrap_or_default();
    if bool::from(credentials.ct_eq(expected.expose_secret().as_bytes())) {
        Ok(())
    } else {
        Err(Rejection::Unauthorized("basic auth mismatch"))
    }
}

/// Reads the event names: split on `,`, trimmed, empty names dropped, and
/// duplicates dropped after their first occurrence.
fn event_names(req: &Inbound) -> Result<Vec<String>, Rejection> {
    let Some(value) = header_str(req.headers, EVENTS_HEADER) else {
        let message = if req.headers.header(EVENTS_HEADER).is_some() {
            format!("{EVENTS_HEADER} header is not valid UTF-8")
        } else {
            format!("missing {EVENTS_HEADER} header")
        };
        return Err(Rejection::Malformed(message));
    };

    let mut seen = HashSet::new();
    let names: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty() && seen.insert(*name))
        .map(str::to_owned)
        .collect();
    if names.is_empty() {
        return Err(Rejection::Malformed(format!(
            "{EVENTS_HEADER} header contains no event names"
        )));
    }
    Ok(names)
}

/// Returns the user that a body names: `userId` (Token and Session
/// payloads), else `$id` (User payloads).
fn body_user_id(payload: &Value) -> Option<&str> {
    let object = payload.as_object()?;
    object
        .get("userId")
        .and_then(Value::as_str)
        .or_else(|| object.get("$id").and_then(Value::as_str))
}

/// Returns false when `name` has the form `users.<segment>[.…]` and the
/// segment is neither `*` nor `user_id`.
fn user_segment_allows(name: &str, user_id: &str) -> bool {
    let mut segments = name.split('.');
    match (segments.next(), segments.next()) {
        (Some("users"), Some(segment)) => segment == "*" || segment == user_id,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://hooks.example.com/hooks/appwrite";
    const SECRET: &str = "test-secret-0123456789abcdef";
    const USER_ID: &str = "6650c1f2a7b3e9d4c021";

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|error| panic!("cannot read {path}: {error}"))
    }

    fn fixture_events(body_name: &str) -> String {
        let events: Value = serde_json::from_slice(&fixture("appwrite-events.json"))
            .expect("appwrite-events.json is JSON");
        events[body_name]
            .as_str()
            .unwrap_or_else(|| panic!("appwrite-events.json has no entry for {body_name}"))
            .to_owned()
    }

    fn source() -> AppwriteSource {
        AppwriteSource::new(URL, vec![SecretString::from(SECRET)], None).expect("valid config")
    }

    fn sign(secret: &str, url: &str, body: &[u8]) -> String {
        let mut mac = HmacSha1::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(url.as_bytes());
        mac.update(body);
        BASE64.encode(mac.finalize().into_bytes())
    }

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    fn decode(events: Option<&str>, body: &[u8]) -> Result<Vec<DecodedEvent>, Rejection> {
        let list = match events {
            Some(value) => headers(&[("X-Appwrite-Webhook-Events", value)]),
            None => Vec::new(),
        };
        source().decode(&Inbound {
            headers: &list,
            body,
            now: 0,
        })
    }

    fn verify_with(
        source: &AppwriteSource,
        pairs: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), Rejection> {
        let list = headers(pairs);
        source.verify(&Inbound {
            headers: &list,
            body,
            now: 0,
        })
    }

    #[test]
    fn decode_sample_bodies() {
        for name in [
            "appwrite-password-updated.body",
            "appwrite-user-blocked.body",
            "appwrite-recovery-completed.body",
        ] {
            let body = fixture(name);
            let events = fixture_events(name);
            let decoded = decode(Some(&events), &body)
                .unwrap_or_else(|rejection| panic!("{name}: {rejection}"));

            assert_eq!(decoded.len(), 1, "{name}");
            let event = &decoded[0];
            let expected_types: Vec<&str> = events.split(',').collect();
            assert_eq!(event.types, expected_types, "{name}");
            assert_eq!(
                event.delivery_key,
                hex::encode(Sha256::digest(&body)),
                "{name}"
            );
            assert_eq!(event.delivery_key.len(), 64, "{name}");
            assert_eq!(
                event.payload,
                serde_json::from_slice::<Value>(&body).unwrap(),
                "{name}"
            );
            assert_eq!(event.occurred_at, None, "{name}");
        }
    }

    #[test]
    fn decode_keeps_escaped_slash_value() {
        let body = fixture("appwrite-password-updated.body");
        let events = fixture_events("appwrite-password-updated.body");
        let event = &decode(Some(&events), &body).unwrap()[0];
        let password = event.payload["password"].as_str().unwrap();
        assert!(password.contains("/YmF6"), "`\\/` decodes to `/`");
    }

    #[test]
    fn decode_rejects_events_for_another_user() {
        let body = fixture("appwrite-user-blocked.body");
        let events = "users.6650c1f2a7b3e9d4c021.update,users.someoneelse00000000.update.status";
        assert_eq!(
            decode(Some(events), &body),
            Err(Rejection::Unauthorized("events header names another user"))
        );
    }

    #[test]
    fn decode_rejects_bare_other_user_name() {
        let body = fixture("appwrite-user-blocked.body");
        assert_eq!(
            decode(Some("users.*.update,users.someoneelse00000000"), &body),
            Err(Rejection::Unauthorized("events header names another user"))
        );
    }

    #[test]
    fn decode_token_uses_user_id() {
        // A Token's `$id` names the token, and `userId` names the user.
        let body = fixture("appwrite-recovery-completed.body");
        let events = "users.6651f0e2d3c4b5a69788.recovery.6651f0e2d3c4b5a69788.update";
        assert_eq!(
            decode(Some(events), &body),
            Err(Rejection::Unauthorized("events header names another user"))
        );

        let events = format!("users.{USER_ID}.recovery.6651f0e2d3c4b5a69788.update");
        let event = &decode(Some(&events), &body).unwrap()[0];
        assert_eq!(event.payload["userId"], USER_ID);
    }

    #[test]
    fn decode_ignores_other_services() {
        let body = format!(r#"{{"$id":"{USER_ID}"}}"#);
        let events = "databases.main.collections.people.documents.abc.update,users";
        let event = &decode(Some(events), body.as_bytes()).unwrap()[0];
        assert_eq!(event.types.len(), 2);
    }

    #[test]
    fn decode_empty_array_body() {
        let events = format!("users.{USER_ID}.delete.mfa,users.*.delete.mfa");
        let decoded = decode(Some(&events), b"[]").unwrap();
        assert_eq!(decoded.len(), 1);
        assert_eq!(decoded[0].payload, Value::Array(Vec::new()));
        assert_eq!(decoded[0].types.len(), 2);
    }

    #[test]
    fn decode_body_without_user_skips_check() {
        let events = "users.anyone.update.mfa.recovery-codes";
        let body = br#"{"recoveryCodes":["a1b2c3"]}"#;
        assert!(decode(Some(events), body).is_ok());
    }

    #[test]
    fn decode_null_user_id_uses_id() {
        let body = format!(r#"{{"$id":"{USER_ID}","userId":null}}"#);
        assert!(decode(Some(&format!("users.{USER_ID}")), body.as_bytes()).is_ok());
        assert_eq!(
            decode(Some("users.other"), body.as_bytes()),
            Err(Rejection::Unauthorized("events header names another user"))
        );
    }

    #[test]
    fn decode_names_trimmed_and_deduplicated() {
        let body = b"[]";
        let event = &decode(Some(" users.*.update , ,users.*,users.*.update,"), body).unwrap()[0];
        assert_eq!(event.types, vec!["users.*.update", "users.*"]);
    }

    #[test]
    fn decode_rejects_non_json_body() {
        let body = b"{\"$id\":\"secret-looking-content\"";
        let Err(Rejection::Malformed(message)) = decode(Some("users.*"), body) else {
            panic!("expected Malformed");
        };
        assert!(message.starts_with("body is not JSON: "), "{message}");
        assert!(!message.contains("secret-looking-content"), "{message}");
    }

    #[test]
    fn decode_rejects_missing_events_header() {
        let Err(Rejection::Malformed(message)) = decode(None, b"[]") else {
            panic!("expected Malformed");
        };
        assert!(message.contains(EVENTS_HEADER), "{message}");
    }

    #[test]
    fn decode_rejects_empty_events_header() {
        for value in ["", " , ,"] {
            let Err(Rejection::Malformed(message)) = decode(Some(value), b"[]") else {
                panic!("expected Malformed for {value:?}");
            };
            assert!(message.contains(EVENTS_HEADER), "{message}");
        }
    }

    #[test]
    fn verify_accepts_valid_signature() {
        let body = fixture("appwrite-user-blocked.body");
        let signature = sign(SECRET, URL, &body);
        let result = verify_with(
            &source(),
            &[("X-Appwrite-Webhook-Signature", &signature)],
            &body,
        );
        assert_eq!(result, Ok(()));
    }

    #[test]
    fn verify_rejects_missing_signature() {
        assert_eq!(
            verify_with(&source(), &[], b"[]"),
            Err(Rejection::Unauthorized("missing signature header"))
        );
    }

    #[test]
    fn verify_rejects_malformed_signatures() {
        let good = sign(SECRET, URL, b"[]");
        let truncated = BASE64.encode(&BASE64.decode(&good).unwrap()[..19]);
        for signature in ["", "not base64!", "AAAA", truncated.as_str(), &good[..27]] {
            assert_eq!(
                verify_with(
                    &source(),
                    &[("x-appwrite-webhook-signature", signature)],
                    b"[]"
                ),
                Err(Rejection::Unauthorized("bad signature")),
                "signature {signature:?}"
            );
        }
    }

    #[test]
    fn verify_accepts_decoded_and_raw_url() {
        let configured = "https://hooks.example.com/hook?tenant=a%2Bb%20c+d";
        let decoded = "https://hooks.example.com/hook?tenant=a+b c+d";
        let source =
            AppwriteSource::new(configured, vec![SecretString::from(SECRET)], None).unwrap();
        for url in [configured, decoded] {
            let signature = sign(SECRET, url, b"[]");
            let result = verify_with(
                &source,
                &[("x-appwrite-webhook-signature", &signature)],
                b"[]",
            );
            assert_eq!(result, Ok(()), "signed over {url}");
        }

        // `+` is not a space in rawurldecode.
        let signature = sign(
            SECRET,
            "https://hooks.example.com/hook?tenant=a b c d",
            b"[]",
        );
        let result = verify_with(
            &source,
            &[("x-appwrite-webhook-signature", &signature)],
            b"[]",
        );
        assert_eq!(result, Err(Rejection::Unauthorized("bad signature")));
    }

    #[test]
    fn url_forms_follow_rawurldecode() {
        assert_eq!(signed_url_forms("https://a.example/x").len(), 1);
        assert_eq!(
            signed_url_forms("https://a.example/x?q=%41%zz%4"),
            vec![
                b"https://a.example/x?q=%41%zz%4".to_vec(),
                b"https://a.example/x?q=A%zz%4".to_vec()
            ]
        );
        assert_eq!(
            signed_url_forms("https://a.example/%FF")[1],
            b"https://a.example/\xff".to_vec()
        );
    }

    #[test]
    fn verify_checks_basic_auth() {
        let auth = BasicAuth {
            user: SecretString::from("revokd"),
            password: SecretString::from("p4ss:word"),
        };
        let source =
            AppwriteSource::new(URL, vec![SecretString::from(SECRET)], Some(auth)).unwrap();
        let signature = sign(SECRET, URL, b"[]");
        let good_auth = format!("Basic {}", BASE64.encode("revokd:p4ss:word"));
        let wrong_auth = format!("Basic {}", BASE64.encode("revokd:p4ss:wore"));

        let cases: [(Option<&str>, Result<(), Rejection>); 6] = [
            (Some(&good_auth), Ok(())),
            (None, Err(Rejection::Unauthorized("missing basic auth"))),
            (
                Some(&wrong_auth),
                Err(Rejection::Unauthorized("basic auth mismatch")),
            ),
            (
                Some("Basic"),
                Err(Rejection::Unauthorized("basic auth mismatch")),
            ),
            (
                Some("Basic %%%"),
                Err(Rejection::Unauthorized("basic auth mismatch")),
            ),
            (
                Some("Bearer cmV2b2tkOnA0c3M6d29yZA=="),
                Err(Rejection::Unauthorized("basic auth mismatch")),
            ),
        ];
        for (authorization, expected) in cases {
            let mut pairs = vec![("X-Appwrite-Webhook-Signature", signature.as_str())];
            if let Some(value) = authorization {
                pairs.push(("Authorization", value));
            }
            assert_eq!(
                verify_with(&source, &pairs, b"[]"),
                expected,
                "authorization {authorization:?}"
            );
        }
    }

    #[test]
    fn verify_basic_auth_still_needs_signature() {
        let auth = BasicAuth {
            user: SecretString::from("revokd"),
            password: SecretString::from("password"),
        };
        let source =
            AppwriteSource::new(URL, vec![SecretString::from(SECRET)], Some(auth)).unwrap();
        let good_auth = format!("basic {}", BASE64.encode("revokd:password"));
        assert_eq!(
            verify_with(&source, &[("authorization", &good_auth)], b"[]"),
            Err(Rejection::Unauthorized("missing signature header"))
        );
    }

    #[test]
    fn new_rejects_empty_settings() {
        let secret = || vec![SecretString::from(SECRET)];
        assert!(AppwriteSource::new("", secret(), None)
            .unwrap_err()
            .contains("signed_url"));
        let error =
            AppwriteSource::new("hooks.example.com/hooks/appwrite", secret(), None).unwrap_err();
        assert!(error.contains("does not start with http://"), "{error}");
        assert!(
            AppwriteSource::new("HTTP://127.0.0.1:8080/hooks/appwrite", secret(), None).is_ok()
        );
        assert!(AppwriteSource::new(URL, Vec::new(), None)
            .unwrap_err()
            .contains("no secret"));

        let error = AppwriteSource::new(
            URL,
            vec![SecretString::from(SECRET), SecretString::from("")],
            None,
        )
        .unwrap_err();
        assert!(error.contains("position 2"), "{error}");

        let auth = BasicAuth {
            user: SecretString::from("revokd"),
            password: SecretString::from(""),
        };
        assert!(AppwriteSource::new(URL, secret(), Some(auth))
            .unwrap_err()
            .contains("basic auth"));
    }

    #[test]
    fn debug_output_hides_secrets() {
        let text = format!("{:?}", source());
        assert!(!text.contains(SECRET), "{text}");
    }
}
