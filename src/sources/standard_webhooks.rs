//! Standard Webhooks verification and decoding (Svix, Clerk, Resend, Supabase).
//!
//! The sender signs `id.timestamp.body` with HMAC-SHA256, keyed with the
//! base64-decoded part of a `whsec_` secret, and sends space-separated
//! `v1,<base64>` entries in `webhook-signature`. Svix and Clerk send the same
//! values under `svix-*` header names. The timestamp is in Unix seconds and
//! must lie within the tolerance of the verifier's clock, in both directions.
//!
//! Senders that sign with Ed25519 send `v1a,<base64>` entries instead: the
//! signature over the same content, checked with the sender's `whpk_` public
//! key. Svix's server signs this way; the reference libraries do not.

use std::fmt;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use ed25519_dalek::{Signature, VerifyingKey};
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
const PUBLIC_KEY_PREFIX: &str = "whpk_";

/// Maximum number of `v1a` entries checked per request. Later entries are
/// ignored, so a long header cannot make a request cost many Ed25519
/// verifications. Senders send one entry per active key.
const MAX_ED25519_SIGNATURES: usize = 8;

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
    /// Ed25519 keys for `v1a` entries, empty when none is configured.
    public_keys: Vec<VerifyingKey>,
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
            public_keys: Vec::new(),
        })
    }

    /// Adds the sender's Ed25519 public keys, in rotation order, so that
    /// `v1a` entries verify.
    ///
    /// Each key is `whpk_<base64>` or bare base64 of the 32-byte key, padded
    /// or not. Errors name a bad key by its position, never by its value.
    pub fn with_public_keys(mut self, public_keys: Vec<SecretString>) -> Result<Self, String> {
        self.public_keys = public_keys
            .iter()
            .enumerate()
            .map(|(index, key)| verifying_key_for(key.expose_secret(), index + 1))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self)
    }

    /// Checks the timestamp against `req.now` and the signatures on the raw
    /// body. The request verifies when any `v1` entry matches a secret or,
    /// with public keys configured, any `v1a` entry matches a key.
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

        let signatures: Vec<&str> = signatures_of(signature_header, "v1").collect();
        let ed25519_signatures: Vec<&str> = if self.public_keys.is_empty() {
            Vec::new()
        } else {
            signatures_of(signature_header, "v1a")
                .take(MAX_ED25519_SIGNATURES)
                .collect()
        };
        if signatures.is_empty() && ed25519_signatures.is_empty() {
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
        if !ed25519_signatures.is_empty() {
            let content = signed_content(id, timestamp_text, req.body);
            matched |= self.ed25519_matches(&content, &ed25519_signatures);
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

impl StandardWebhooksSource {
    /// Checks every well-formed `v1a` signature with every public key. The
    /// keys and signatures are public, so the checks need not take constant
    /// time, but all of them run anyway.
    fn ed25519_matches(&self, content: &[u8], signatures: &[&str]) -> Choice {
        let mut matched = Choice::from(0);
        for signature in signatures {
            let Ok(decoded) = LENIENT_BASE64.decode(signature) else {
                continue;
            };
            let Ok(signature) = Signature::from_slice(&decoded) else {
                continue;
            };
            for key in &self.public_keys {
                let verified = key.verify_strict(content, &signature).is_ok();
                matched |= Choice::from(u8::from(verified));
            }
        }
        matched
    }
}

impl fmt::Debug for StandardWebhooksSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StandardWebhooksSource")
            .field("signers", &self.signers.len())
            .field("public_keys", &self.public_keys.len())
            .field("tolerance_seconds", &self.tolerance_seconds)
            .finish()
    }
}

/// Returns `id.timestamp.body`, the content that both schemes sign.
fn signed_content(id: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(id.len() + timestamp.len() + body.len() + 2);
    content.extend_from_slice(id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp.as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    content
}

/// Parses the Ed25519 public key at `position` (1-based).
fn verifying_key_for(key: &str, position: usize) -> Result<VerifyingKey, String> {
    let encoded = key.strip_prefix(PUBLIC_KEY_PREFIX).unwrap_or(key);
    if encoded.is_empty() {
        return Err(format!(
            "standard-webhooks source: public key at position {position} is empty; \
             set it to the sender's public key (whpk_…)"
        ));
    }
    let bytes = LENIENT_BASE64.decode(encoded).map_err(|_| {
        format!(
            "standard-webhooks source: public key at position {position} is not valid \
             base64 after the optional `whpk_` prefix; copy the whole key from the sender"
        )
    })?;
    let bytes: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
        format!(
            "standard-webhooks source: public key at position {position} decodes to {} \
             bytes, but an Ed25519 public key has 32; copy the public key (whpk_…), \
             not the secret key (whsk_…)",
            bytes.len()
        )
    })?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| {
        format!(
            "standard-webhooks source: public key at position {position} is not a valid \
             Ed25519 public key; copy the whole key from the sender"
        )
    })
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

/// Returns the base64 part of each entry of `version` (`v1` for HMAC,
/// `v1a` for Ed25519) in a signature header.
///
/// Entries are separated by any whitespace. One trailing `,` is stripped
/// from each, because Supabase joins several signatures with `", "`.
/// Entries of other versions are skipped.
fn signatures_of<'a>(header: &'a str, version: &'a str) -> impl Iterator<Item = &'a str> {
    header.split_whitespace().filter_map(move |entry| {
        let entry = entry.strip_suffix(',').unwrap_or(entry);
        match entry.split_once(',') {
            Some((label, signature)) if label == version => Some(signature),
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

    /// Ed25519 key and `v1a` signature from the Svix server's asymmetric
    /// signing test (`test_asymmetric_key_signing`).
    const ED25519_PUBLIC_KEY: &str = "whpk_1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4=";
    const ED25519_SECRET_KEY: &str = "whsk_6Xb/dCcHpPea21PS1N9VY/NZW723CEc77N4rJCubMbfVKIDij2HKpMKkioLlX0dRqSKJp4AJ6p9lMicMFs6Kvg==";
    const ED25519_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const ED25519_TIMESTAMP: i64 = 1_614_265_330;
    const ED25519_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const ED25519_SIGNATURE: &str = "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg==";

    fn ed25519_source(public_keys: &[&str]) -> StandardWebhooksSource {
        source()
            .with_public_keys(
                public_keys
                    .iter()
                    .copied()
                    .map(SecretString::from)
                    .collect(),
            )
            .unwrap()
    }

    fn ed25519_verify(
        source: &StandardWebhooksSource,
        signature: &str,
        body: &[u8],
    ) -> Result<(), Rejection> {
        let headers = vec![
            ("webhook-id".to_owned(), ED25519_ID.to_owned()),
            (
                "webhook-timestamp".to_owned(),
                ED25519_TIMESTAMP.to_string(),
            ),
            ("webhook-signature".to_owned(), signature.to_owned()),
        ];
        source.verify(&Inbound {
            headers: &headers,
            body,
            now: ED25519_TIMESTAMP,
        })
    }

    #[test]
    fn verify_ed25519_published_vector() {
        let source = ed25519_source(&[ED25519_PUBLIC_KEY]);
        assert_eq!(
            ed25519_verify(&source, ED25519_SIGNATURE, ED25519_BODY),
            Ok(())
        );

        let bare = ed25519_source(&[&ED25519_PUBLIC_KEY[PUBLIC_KEY_PREFIX.len()..]]);
        assert_eq!(
            ed25519_verify(&bare, ED25519_SIGNATURE, ED25519_BODY),
            Ok(())
        );
    }

    #[test]
    fn verify_ed25519_rejects_changed_body() {
        let source = ed25519_source(&[ED25519_PUBLIC_KEY]);
        assert_eq!(
            ed25519_verify(&source, ED25519_SIGNATURE, br#"{"test": 2432232315}"#),
            Err(Rejection::Unauthorized("bad signature"))
        );
    }

    #[test]
    fn verify_ed25519_needs_public_key() {
        // Without public keys, v1a entries are not a supported signature.
        assert_eq!(
            ed25519_verify(&source(), ED25519_SIGNATURE, ED25519_BODY),
            Err(Rejection::Unauthorized("no supported signature"))
        );

        let other = ed25519_source(&[&other_public_key()]);
        assert_eq!(
            ed25519_verify(&other, ED25519_SIGNATURE, ED25519_BODY),
            Err(Rejection::Unauthorized("bad signature"))
        );
    }

    /// Returns a valid public key that did not sign the vector.
    fn other_public_key() -> String {
        let signing_key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        format!(
            "whpk_{}",
            LENIENT_BASE64.encode(signing_key.verifying_key().as_bytes())
        )
    }

    #[test]
    fn verify_ed25519_any_entry_or_key() {
        let source = ed25519_source(&[&other_public_key(), ED25519_PUBLIC_KEY]);
        let zero = format!("v1a,{}", LENIENT_BASE64.encode([0u8; 64]));
        let header = format!("v1,AAA= {zero} v1a,!!!! {ED25519_SIGNATURE}");
        assert_eq!(ed25519_verify(&source, &header, ED25519_BODY), Ok(()));

        // A valid v1 entry verifies even when every v1a entry is wrong.
        let good = sign(ID, &NOW.to_string(), BODY);
        let header = format!("{zero} v1,{good}");
        let source = ed25519_source(&[ED25519_PUBLIC_KEY]);
        assert_eq!(verify_with_source(&source, &header), Ok(()));
    }

    fn verify_with_source(
        source: &StandardWebhooksSource,
        signature: &str,
    ) -> Result<(), Rejection> {
        let headers = request_headers(signature, &NOW.to_string());
        source.verify(&Inbound {
            headers: &headers,
            body: BODY,
            now: NOW,
        })
    }

    #[test]
    fn verify_ed25519_rejects_bad_entries() {
        let source = ed25519_source(&[ED25519_PUBLIC_KEY]);
        let signature = &ED25519_SIGNATURE["v1a,".len()..];
        for header in [
            "v1a,,".to_owned(),
            "v1a,AAA=".to_owned(),
            format!("v1a,{}", &signature[..40]),
            // The signature under a v1 label is the wrong length for HMAC.
            format!("v1,{signature}"),
        ] {
            assert_eq!(
                ed25519_verify(&source, &header, ED25519_BODY),
                Err(Rejection::Unauthorized("bad signature")),
                "header {header:?}"
            );
        }

        // Stripping the trailing comma leaves `v1a`, which has no signature part.
        assert_eq!(
            ed25519_verify(&source, "v1a,", ED25519_BODY),
            Err(Rejection::Unauthorized("no supported signature"))
        );
    }

    #[test]
    fn verify_ed25519_checks_timestamp() {
        let source = ed25519_source(&[ED25519_PUBLIC_KEY]);
        let headers = vec![
            ("webhook-id".to_owned(), ED25519_ID.to_owned()),
            (
                "webhook-timestamp".to_owned(),
                ED25519_TIMESTAMP.to_string(),
            ),
            ("webhook-signature".to_owned(), ED25519_SIGNATURE.to_owned()),
        ];
        let result = source.verify(&Inbound {
            headers: &headers,
            body: ED25519_BODY,
            now: ED25519_TIMESTAMP + 301,
        });
        assert_eq!(
            result,
            Err(Rejection::Unauthorized("timestamp outside tolerance"))
        );
    }

    #[test]
    fn with_public_keys_rejects_bad_keys() {
        let short = format!("whpk_{}", LENIENT_BASE64.encode([1u8; 31]));
        for (key, phrase) in [
            ("", "is empty"),
            ("whpk_", "is empty"),
            ("whpk_not*base64", "not valid base64"),
            (short.as_str(), "decodes to 31 bytes"),
            (ED25519_SECRET_KEY, "not valid base64"),
            (&ED25519_SECRET_KEY[5..], "decodes to 64 bytes"),
        ] {
            let keys = vec![
                SecretString::from(ED25519_PUBLIC_KEY),
                SecretString::from(key),
            ];
            let error = source().with_public_keys(keys).unwrap_err();
            assert!(error.contains("public key at position 2"), "{error}");
            assert!(error.contains(phrase), "{key:?}: {error}");
            assert!(!error.contains("6Xb/"), "{error}");
            assert!(!error.contains("not*base64"), "{error}");
        }
    }

    #[test]
    fn with_public_keys_accepts_empty_list() {
        let source = source().with_public_keys(Vec::new()).unwrap();
        let signature = format!("v1,{}", sign(ID, &NOW.to_string(), BODY));
        assert_eq!(verify_with_source(&source, &signature), Ok(()));
    }
}
