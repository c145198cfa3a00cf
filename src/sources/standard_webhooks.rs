//! Standard Webhooks verification and decoding (Svix, Clerk, Resend, Supabase).
//!
//! The sender signs `id.timestamp.body` with HMAC-SHA256, keyed with the
//! base64-decoded part of a `whsec_` secret, and sends space-separated
//! `v1,<base64>` entries in `webhook-signature`. Svix and Clerk send the same
//! values under `svix-*` header names. The timestamp is in Unix seconds and
//! must lie within the tolerance of the verifier's clock, in both directions.

use std::fmt;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};

use super::{header_str, parse_json_body, DecodedEvent, Inbound, Rejection};

type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA256 output length in bytes.
const SIGNATURE_LEN: usize = 32;

const SECRET_PREFIX: &str = "whsec_";

/// Standard base64 that accepts padded and unpadded input and non-zero
/// trailing bits, so a secret copied without its `=` padding still works.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// One of the three signed headers, with its Svix and standard names.
struct SignedHeader {
    svix: &'static str,
    standard: &'static str,
    missing: &'static str,
}

const ID_HEADER: SignedHeader = SignedHeader {
    svix: "svix-id",
    standard: "webhook-id",
    missing: "missing id header",
};
const TIMESTAMP_HEADER: SignedHeader = SignedHeader {
    svix: "svix-timestamp",
    standard: "webhook-timestamp",
    missing: "missing timestamp header",
};
const SIGNATURE_HEADER: SignedHeader = SignedHeader {
    svix: "svix-signature",
    standard: "webhook-signature",
    missing: "missing signature header",
};

/// Verifier and decoder for one configured Standard Webhooks sender.
pub struct StandardWebhooksSource {
    /// One keyed HMAC state per secret, cloned for each request.
    signers: Vec<HmacSha256>,
    /// Maximum distance between the timestamp header and the clock, in seconds.
    tolerance_seconds: u64,
}

impl StandardWebhooksSource {
    /// Builds a verifier from the sender's signing secrets, in rotation order.
    ///
    /// Each secret is `whsec_<base64>` or bare base64, padded or not. Errors
    /// name a bad secret by its position, never by its value, when the list
    /// is empty or a secret is empty, `whsec_` alone, or not base64.
    pub fn new(secrets: Vec<SecretString>, tolerance_seconds: u64) -> Result<Self, String> {
        if secrets.is_empty() {
            return Err("standard-webhooks source: no secret configured; add the \
                 sender's signing secret (whsec_…)"
                .to_owned());
        }
        let signers = secrets
            .iter()
            .enumerate()
            .map(|(index, secret)| signer_for(secret.expose_secret(), index + 1))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            signers,
            tolerance_seconds,
        })
    }

    /// Checks the timestamp against `req.now` and the `v1` signatures on the
    /// raw body.
    ///
    /// Reads nothing from the body but its bytes.
    pub fn verify(&self, req: &Inbound) -> Result<(), Rejection> {
        let id = signed_header(req, &ID_HEADER)?;
        let timestamp_text = signed_header(req, &TIMESTAMP_HEADER)?;
        let signature_header = signed_header(req, &SIGNATURE_HEADER)?;

        let timestamp =
            parse_timestamp(timestamp_text).ok_or(Rejection::Unauthorized("invalid timestamp"))?;
        let distance = (i128::from(req.now) - i128::from(timestamp)).unsigned_abs();
        if distance > u128::from(self.tolerance_seconds) {
            return Err(Rejection::Unauthorized("timestamp outside tolerance"));
        }

        let signatures: Vec<&str> = v1_signatures(signature_header).collect();
        if signatures.is_empty() {
            return Err(Rejection::Unauthorized("no supported signature"));
        }

        let expected: Vec<_> = self
            .signers
            .iter()
            .map(|signer| {
                let mut mac = signer.clone();
                mac.update(id.as_bytes());
                mac.update(b".");
                mac.update(timestamp_text.as_bytes());
                mac.update(b".");
                mac.update(req.body);
                mac.finalize().into_bytes()
            })
            .collect();

        // Every well-formed signature is compared with every secret's tag, so
        // the time taken does not depend on which one matched.
        let mut matched = Choice::from(0);
        for signature in signatures {
            let Ok(decoded) = LENIENT_BASE64.decode(signature) else {
                continue;
            };
            if decoded.len() != SIGNATURE_LEN {
                continue;
            }
            for tag in &expected {
                matched |= tag.as_slice().ct_eq(&decoded);
            }
        }
        if bool::from(matched) {
            Ok(())
        } else {
            Err(Rejection::Unauthorized("bad signature"))
        }
    }

    /// Decodes a verified request into one event typed by the body's `type`.
    ///
    /// The delivery key is the id header, which stays the same across a
    /// sender's retries of one message (Supabase sends a new id per attempt).
    pub fn decode(&self, req: &Inbound) -> Result<Vec<DecodedEvent>, Rejection> {
        let id = signed_header(req, &ID_HEADER)?;
        let timestamp = parse_timestamp(signed_header(req, &TIMESTAMP_HEADER)?)
            .ok_or(Rejection::Unauthorized("invalid timestamp"))?;
        let payload = parse_json_body(req.body)?;
        let event_type = event_type(&payload)?.to_owned();

        Ok(vec![DecodedEvent {
            delivery_key: id.to_owned(),
            types: vec![event_type],
            payload,
            occurred_at: timestamp.checked_mul(1000),
        }])
    }
}

impl fmt::Debug for StandardWebhooksSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StandardWebhooksSource")
            .field("signers", &self.signers.len())
            .field("tolerance_seconds", &self.tolerance_seconds)
            .finish()
    }
}

/// Builds the keyed HMAC state for the secret at `position` (1-based).
fn signer_for(secret: &str, position: usize) -> Result<HmacSha256, String> {
    if secret.is_empty() {
        return Err(format!(
            "standard-webhooks source: secret at position {position} is empty; set it \
             to the sender's signing secret (whsec_…)"
        ));
    }
    let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    if encoded.is_empty() {
        return Err(format!(
            "standard-webhooks source: secret at position {position} is `whsec_` with \
             no key after it; copy the whole secret from the sender"
        ));
    }
    let key = LENIENT_BASE64.decode(encoded).map_err(|_| {
        format!(
            "standard-webhooks source: secret at position {position} is not valid \
             base64 after the optional `whsec_` prefix; copy the whole secret from the \
             sender (a Supabase `v1,` prefix must be removed)"
        )
    })?;
    Ok(HmacSha256::new_from_slice(&key).expect("HMAC accepts keys of any length"))
}

/// Reads a signed header, preferring the `svix-` name. An empty value counts
/// as missing.
fn signed_header<'a>(req: &Inbound<'a>, header: &SignedHeader) -> Result<&'a str, Rejection> {
    [header.svix, header.standard]
        .into_iter()
        .filter_map(|name| header_str(req.headers, name))
        .find(|value| !value.is_empty())
        .ok_or(Rejection::Unauthorized(header.missing))
}

/// Parses Unix seconds written as ASCII digits only (no sign, no fraction).
fn parse_timestamp(text: &str) -> Option<i64> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Returns the base64 part of each `v1` entry in a signature header.
///
/// Entries are separated by any whitespace. One trailing `,` is stripped
/// from each, because Supabase joins several signatures with `", "`.
/// Entries of other versions (`v1a` is Ed25519) are skipped.
fn v1_signatures(header: &str) -> impl Iterator<Item = &str> {
    header.split_whitespace().filter_map(|entry| {
        let entry = entry.strip_suffix(',').unwrap_or(entry);
        match entry.split_once(',') {
            Some(("v1", signature)) => Some(signature),
            _ => None,
        }
    })
}

/// Returns the body's `type` field, which must be a non-empty string.
fn event_type(payload: &Value) -> Result<&str, Rejection> {
    let object = payload
        .as_object()
        .ok_or_else(|| Rejection::Malformed("body is not a JSON object".to_owned()))?;
    match object.get("type") {
        Some(Value::String(name)) if !name.is_empty() => Ok(name),
        Some(Value::String(_)) => Err(Rejection::Malformed(
            "body field \"type\" is empty".to_owned(),
        )),
        Some(_) => Err(Rejection::Malformed(
            "body field \"type\" is not a string".to_owned(),
        )),
        None => Err(Rejection::Malformed(
            "body has no \"type\" field".to_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::HeaderLookup;

    /// 32 bytes 0x01..=0x20, as `whsec_` + padded base64.
    const SECRET: &str = "whsec_AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
    const ID: &str = "msg_2pQe7Yk1";
    const NOW: i64 = 1_764_849_600;
    const BODY: &[u8] = br#"{"type":"user.updated","data":{"id":"user_2a9XkQ","banned":true}}"#;

    fn source() -> StandardWebhooksSource {
        StandardWebhooksSource::new(vec![SecretString::from(SECRET)], 300).unwrap()
    }

    fn sign(id: &str, timestamp: &str, body: &[u8]) -> String {
        let key = LENIENT_BASE64
            .decode(&SECRET[SECRET_PREFIX.len()..])
            .unwrap();
        let mut mac = HmacSha256::new_from_slice(&key).unwrap();
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body);
        LENIENT_BASE64.encode(mac.finalize().into_bytes())
    }

    fn request_headers(signature: &str, timestamp: &str) -> Vec<(String, String)> {
        vec![
            ("webhook-id".to_owned(), ID.to_owned()),
            ("webhook-timestamp".to_owned(), timestamp.to_owned()),
            ("webhook-signature".to_owned(), signature.to_owned()),
        ]
    }

    fn verify(headers: &dyn HeaderLookup, body: &[u8]) -> Result<(), Rejection> {
        source().verify(&Inbound {
            headers,
            body,
            now: NOW,
        })
    }

    fn decode(body: &[u8]) -> Result<Vec<DecodedEvent>, Rejection> {
        let headers = request_headers("", &NOW.to_string());
        source().decode(&Inbound {
            headers: &headers,
            body,
            now: NOW,
        })
    }

    fn malformed_message(result: Result<Vec<DecodedEvent>, Rejection>) -> String {
        match result {
            Err(Rejection::Malformed(message)) => message,
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    #[test]
    fn verify_accepts_valid_signature() {
        let signature = format!("v1,{}", sign(ID, &NOW.to_string(), BODY));
        assert_eq!(
            verify(&request_headers(&signature, &NOW.to_string()), BODY),
            Ok(())
        );
    }

    #[test]
    fn verify_accepts_trailing_comma_entry() {
        let good = sign(ID, &NOW.to_string(), BODY);
        let header = format!("v1,AAA=, v1,{good}");
        assert_eq!(
            verify(&request_headers(&header, &NOW.to_string()), BODY),
            Ok(())
        );

        let header = format!("v1,{good}, v1,AAA=");
        assert_eq!(
            verify(&request_headers(&header, &NOW.to_string()), BODY),
            Ok(())
        );
    }

    #[test]
    fn verify_accepts_any_whitespace_separator() {
        let good = sign(ID, &NOW.to_string(), BODY);
        let header = format!("v1,AAA=\t \tv1,{good}");
        assert_eq!(
            verify(&request_headers(&header, &NOW.to_string()), BODY),
            Ok(())
        );
    }

    #[test]
    fn verify_skips_v1a_entries() {
        let good = sign(ID, &NOW.to_string(), BODY);
        // The HMAC value under a `v1a` label must not count as a v1 signature.
        let header = format!("v1a,{good}");
        assert_eq!(
            verify(&request_headers(&header, &NOW.to_string()), BODY),
            Err(Rejection::Unauthorized("no supported signature"))
        );

        let header = format!("v1a,{good} v1,{good}");
        assert_eq!(
            verify(&request_headers(&header, &NOW.to_string()), BODY),
            Ok(())
        );
    }

    #[test]
    fn verify_rejects_bad_v1_entries() {
        let good = sign(ID, &NOW.to_string(), BODY);
        for header in ["v1,,", "v1,AAA=", "v1,!!!!", &format!("v1,{}", &good[..8])] {
            assert_eq!(
                verify(&request_headers(header, &NOW.to_string()), BODY),
                Err(Rejection::Unauthorized("bad signature")),
                "header {header:?}"
            );
        }

        // Stripping the trailing comma leaves `v1`, which has no signature part.
        assert_eq!(
            verify(&request_headers("v1,", &NOW.to_string()), BODY),
            Err(Rejection::Unauthorized("no supported signature"))
        );
    }

    #[test]
    fn verify_accepts_unpadded_signature() {
        let good = sign(ID, &NOW.to_string(), BODY);
        let header = format!("v1,{}", good.trim_end_matches('='));
        assert_eq!(
            verify(&request_headers(&header, &NOW.to_string()), BODY),
            Ok(())
        );
    }

    #[test]
    fn verify_tolerance_boundaries() {
        for (offset, accepted) in [(-300, true), (300, true), (-301, false), (301, false)] {
            let timestamp = (NOW + offset).to_string();
            let header = format!("v1,{}", sign(ID, &timestamp, BODY));
            let result = verify(&request_headers(&header, &timestamp), BODY);
            if accepted {
                assert_eq!(result, Ok(()), "offset {offset}");
            } else {
                assert_eq!(
                    result,
                    Err(Rejection::Unauthorized("timestamp outside tolerance")),
                    "offset {offset}"
                );
            }
        }
    }

    #[test]
    fn verify_rejects_invalid_timestamps() {
        for timestamp in [
            "-1",
            "+1764849600",
            "1764849600.5",
            "abc",
            "99999999999999999999",
        ] {
            let header = format!("v1,{}", sign(ID, timestamp, BODY));
            assert_eq!(
                verify(&request_headers(&header, timestamp), BODY),
                Err(Rejection::Unauthorized("invalid timestamp")),
                "timestamp {timestamp:?}"
            );
        }
    }

    #[test]
    fn verify_prefers_svix_headers() {
        let timestamp = NOW.to_string();
        let good = format!("v1,{}", sign(ID, &timestamp, BODY));
        let headers = vec![
            ("svix-id".to_owned(), ID.to_owned()),
            ("svix-timestamp".to_owned(), timestamp.clone()),
            ("svix-signature".to_owned(), good.clone()),
            ("webhook-id".to_owned(), "msg_other".to_owned()),
            ("webhook-timestamp".to_owned(), timestamp.clone()),
            ("webhook-signature".to_owned(), "v1,AAA=".to_owned()),
        ];
        assert_eq!(verify(&headers, BODY), Ok(()));
    }

    #[test]
    fn verify_reports_each_missing_header() {
        let timestamp = NOW.to_string();
        let full = request_headers("v1,AAA=", &timestamp);
        for (index, reason) in [
            "missing id header",
            "missing timestamp header",
            "missing signature header",
        ]
        .into_iter()
        .enumerate()
        {
            let mut headers = full.clone();
            headers.remove(index);
            assert_eq!(verify(&headers, BODY), Err(Rejection::Unauthorized(reason)));
        }
    }

    #[test]
    fn decode_valid_event() {
        let decoded = decode(BODY).unwrap();
        assert_eq!(decoded.len(), 1);
        assert_eq!(decoded[0].delivery_key, ID);
        assert_eq!(decoded[0].types, vec!["user.updated"]);
        assert_eq!(decoded[0].occurred_at, Some(NOW * 1000));
        assert_eq!(decoded[0].payload["data"]["banned"], true);
    }

    #[test]
    fn decode_rejects_missing_type() {
        let message = malformed_message(decode(br#"{"data":{"id":"user_1"}}"#));
        assert!(message.contains("\"type\""), "{message}");
    }

    #[test]
    fn decode_rejects_non_string_or_empty_type() {
        for body in [
            &br#"{"type":42}"#[..],
            br#"{"type":""}"#,
            br#"{"type":null}"#,
        ] {
            let message = malformed_message(decode(body));
            assert!(message.contains("\"type\""), "{message}");
        }
    }

    #[test]
    fn decode_rejects_non_object_body() {
        for body in [&b"[]"[..], b"\"user.updated\"", b"null", b"42"] {
            let message = malformed_message(decode(body));
            assert_eq!(message, "body is not a JSON object");
        }
    }

    #[test]
    fn decode_rejects_non_json_body() {
        let message = malformed_message(decode(b"type=user.deleted&token=hidden-value"));
        assert!(message.starts_with("body is not JSON: "), "{message}");
        assert!(!message.contains("hidden-value"), "{message}");
    }

    #[test]
    fn new_accepts_secret_forms() {
        for secret in [
            SECRET,
            "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=",
            "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ] {
            assert!(
                StandardWebhooksSource::new(vec![SecretString::from(secret)], 300).is_ok(),
                "secret {secret:?}"
            );
        }
    }

    #[test]
    fn new_rejects_bad_secrets() {
        let not_base64 = "whsec_not*base64*value";
        for (secret, phrase) in [
            ("", "is empty"),
            ("whsec_", "no key after it"),
            (not_base64, "not valid base64"),
            ("v1,whsec_AQIDBA==", "not valid base64"),
        ] {
            let secrets = vec![SecretString::from(SECRET), SecretString::from(secret)];
            let error = StandardWebhooksSource::new(secrets, 300).unwrap_err();
            assert!(error.contains("position 2"), "{error}");
            assert!(error.contains(phrase), "{error}");
            assert!(!error.contains("not*base64"), "{error}");
        }
    }

    #[test]
    fn new_rejects_empty_list() {
        let error = StandardWebhooksSource::new(Vec::new(), 300).unwrap_err();
        assert!(error.contains("no secret"), "{error}");
    }

    #[test]
    fn debug_output_hides_secrets() {
        let text = format!("{:?}", source());
        assert!(!text.contains("AQID"), "{text}");
    }
}
