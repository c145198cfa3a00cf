//! Verification and decoding for the `stripe-style` kind: a `t=…,v1=…`
//! signature header, as WorkOS and Stripe send it.
//!
//! The sender signs `{t}.{body}` with HMAC-SHA256, keyed with the secret
//! text's UTF-8 bytes (a Stripe `whsec_` secret is used whole, not decoded),
//! and writes the tag as hex. Stripe sends `t` in Unix seconds, comma-separated
//! (`t=…,v1=…`). WorkOS sends milliseconds, with a space after the comma
//! (`t=…, v1=…`). Several `v1` entries may appear during secret rotation.

use std::fmt;

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};

use super::{
    header_name_setting, header_str, json_pointer_setting, parse_json_body, string_at_pointer,
    DecodedEvent, Inbound, Rejection,
};

type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA256 output length in bytes.
const SIGNATURE_LEN: usize = 32;

/// Unit of the `t` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampUnit {
    /// Unix seconds, as Stripe sends.
    Seconds,
    /// Unix milliseconds, as WorkOS sends.
    Millis,
}

/// Settings of one `stripe-style` source, with secrets resolved.
#[derive(Debug)]
pub struct StripeStyleSettings {
    /// Name of the signature header, e.g. `Stripe-Signature` or
    /// `WorkOS-Signature`.
    pub header: String,
    pub timestamp_unit: TimestampUnit,
    /// Maximum distance between `t` and the clock, in seconds, in both
    /// directions. Stripe's SDKs default to 300.
    pub tolerance_seconds: u64,
    /// HMAC keys as the secret text is given, in rotation order.
    pub secrets: Vec<SecretString>,
    /// JSON Pointer to the event type: `/type` for Stripe, `/event` for
    /// WorkOS.
    pub type_pointer: String,
}

/// Verifier and decoder for one configured `stripe-style` source.
pub struct StripeStyleSource {
    /// Signature header name in lowercase.
    header: String,
    timestamp_unit: TimestampUnit,
    tolerance_seconds: u64,
    /// One keyed HMAC state per secret, cloned for each request.
    signers: Vec<HmacSha256>,
    type_pointer: String,
}

/// The parts of a signature header that verification reads.
struct SignatureHeader<'a> {
    /// `t` exactly as sent, because the signed content uses these bytes.
    timestamp_text: &'a str,
    /// `t` as a number, in the configured unit.
    timestamp: i64,
    /// The hex value of every `v1` entry.
    signatures: Vec<&'a str>,
}

impl StripeStyleSource {
    /// Builds a verifier from the source's settings.
    ///
    /// Errors name the setting, and a bad secret by its position, when the
    /// header name is empty or invalid, the secret list is empty, a secret is
    /// empty, or `type_pointer` does not start with `/`.
    pub fn new(settings: StripeStyleSettings) -> Result<Self, String> {
        let header = header_name_setting("stripe-style source: header", &settings.header)?;
        json_pointer_setting("stripe-style source: type_pointer", &settings.type_pointer)?;
        if settings.secrets.is_empty() {
            return Err("stripe-style source: secrets is empty; add the endpoint's \
                 signing secret from the sender"
                .to_owned());
        }
        let mut signers = Vec::with_capacity(settings.secrets.len());
        for (index, secret) in settings.secrets.iter().enumerate() {
            let key = secret.expose_secret().as_bytes();
            if key.is_empty() {
                return Err(format!(
                    "stripe-style source: secret at position {} is empty; set it to \
                     the endpoint's signing secret from the sender",
                    index + 1
                ));
            }
            signers.push(HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length"));
        }
        Ok(Self {
            header,
            timestamp_unit: settings.timestamp_unit,
            tolerance_seconds: settings.tolerance_seconds,
            signers,
            type_pointer: settings.type_pointer,
        })
    }

    /// Checks `t` against `req.now` and the `v1` signatures on the raw body.
    ///
    /// A millisecond `t` is truncated to whole seconds before the tolerance
    /// check. Reads nothing from the body but its bytes.
    pub fn verify(&self, req: &Inbound) -> Result<(), Rejection> {
        let header = self.signature_header(req)?;

        let seconds = match self.timestamp_unit {
            TimestampUnit::Seconds => header.timestamp,
            TimestampUnit::Millis => header.timestamp / 1000,
        };
        let distance = (i128::from(req.now) - i128::from(seconds)).unsigned_abs();
        if distance > u128::from(self.tolerance_seconds) {
            return Err(Rejection::Unauthorized("timestamp outside tolerance"));
        }

        if header.signatures.is_empty() {
            return Err(Rejection::Unauthorized("no supported signature"));
        }

        let expected: Vec<_> = self
            .signers
            .iter()
            .map(|signer| {
                let mut mac = signer.clone();
                mac.update(header.timestamp_text.as_bytes());
                mac.update(b".");
                mac.update(req.body);
                mac.finalize().into_bytes()
            })
            .collect();

        // Every well-formed signature is compared with every secret's tag, so
        // the time taken does not depend on which one matched.
        let mut matched = Choice::from(0);
        for signature in &header.signatures {
            let Ok(decoded) = hex::decode(signature) else {
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

    /// Decodes a verified request into one event.
    ///
    /// The delivery key is the body's `id`, the type is the string at
    /// `type_pointer`, and the time is `t`. Each of the two fields must be a
    /// non-empty string, else the request is `Malformed`.
    pub fn decode(&self, req: &Inbound) -> Result<Vec<DecodedEvent>, Rejection> {
        let header = self.signature_header(req)?;
        let payload = parse_json_body(req.body)?;
        let id = string_at_pointer(&payload, "/id")?.to_owned();
        let event_type = string_at_pointer(&payload, &self.type_pointer)?.to_owned();
        let occurred_at = match self.timestamp_unit {
            TimestampUnit::Seconds => header.timestamp.checked_mul(1000),
            TimestampUnit::Millis => Some(header.timestamp),
        };

        Ok(vec![DecodedEvent {
            delivery_key: id,
            types: vec![event_type],
            payload,
            occurred_at,
        }])
    }

    /// Reads and parses the signature header.
    ///
    /// Items are separated by `,` with optional whitespace around each. The
    /// header must have exactly one `t`. Items of other schemes (`v0`) and
    /// items without `=` are ignored.
    fn signature_header<'a>(&self, req: &Inbound<'a>) -> Result<SignatureHeader<'a>, Rejection> {
        let value = header_str(req.headers, &self.header)
            .ok_or(Rejection::Unauthorized("missing signature header"))?;

        let mut timestamp_text = None;
        let mut signatures = Vec::new();
        for item in value.split(',') {
            match item.trim().split_once('=') {
                Some(("t", _)) if timestamp_text.is_some() => {
                    return Err(Rejection::Unauthorized("more than one timestamp"));
                }
                Some(("t", text)) => timestamp_text = Some(text),
                Some(("v1", signature)) => signatures.push(signature),
                _ => {}
            }
        }

        let timestamp_text = timestamp_text.ok_or(Rejection::Unauthorized("missing timestamp"))?;
        let timestamp =
            parse_timestamp(timestamp_text).ok_or(Rejection::Unauthorized("invalid timestamp"))?;
        Ok(SignatureHeader {
            timestamp_text,
            timestamp,
            signatures,
        })
    }
}

impl fmt::Debug for StripeStyleSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeStyleSource")
            .field("header", &self.header)
            .field("timestamp_unit", &self.timestamp_unit)
            .field("tolerance_seconds", &self.tolerance_seconds)
            .field("signers", &self.signers.len())
            .field("type_pointer", &self.type_pointer)
            .finish()
    }
}

/// Parses a timestamp written as ASCII digits only (no sign, no fraction).
fn parse_timestamp(text: &str) -> Option<i64> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRIPE_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const OLD_SECRET: &str = "whsec_previous_0123456789";
    const NOW: i64 = 1_764_849_600;
    const BODY: &[u8] = br#"{"id":"evt_1Q2w3E","type":"customer.deleted","data":{}}"#;
    const WORKOS_BODY: &[u8] = br#"{"id":"wh_123","event":"user.deleted"}"#;

    fn stripe_settings() -> StripeStyleSettings {
        StripeStyleSettings {
            header: "Stripe-Signature".to_owned(),
            timestamp_unit: TimestampUnit::Seconds,
            tolerance_seconds: 300,
            secrets: vec![
                SecretString::from(OLD_SECRET),
                SecretString::from(STRIPE_SECRET),
            ],
            type_pointer: "/type".to_owned(),
        }
    }

    fn workos_source() -> StripeStyleSource {
        StripeStyleSource::new(StripeStyleSettings {
            header: "WorkOS-Signature".to_owned(),
            timestamp_unit: TimestampUnit::Millis,
            tolerance_seconds: 180,
            secrets: vec![SecretString::from("secret")],
            type_pointer: "/event".to_owned(),
        })
        .unwrap()
    }

    fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
        let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    fn request(
        source: &StripeStyleSource,
        header: &str,
        value: &str,
        body: &[u8],
        now: i64,
    ) -> (Result<(), Rejection>, Result<Vec<DecodedEvent>, Rejection>) {
        let list = vec![(header.to_owned(), value.to_owned())];
        let inbound = Inbound {
            headers: &list,
            body,
            now,
        };
        (source.verify(&inbound), source.decode(&inbound))
    }

    fn stripe_verify(value: &str, body: &[u8], now: i64) -> Result<(), Rejection> {
        let source = StripeStyleSource::new(stripe_settings()).unwrap();
        request(&source, "stripe-signature", value, body, now).0
    }

    #[test]
    fn verify_stripe_computed_value() {
        let header =
            "t=1614265330,v1=2e37df5d4a028c51a7f3133d64ae1e300d2c2c900f1b1d49d4369ad2530f8964";
        assert_eq!(
            stripe_verify(header, br#"{"test": 2432232314}"#, 1_614_265_330),
            Ok(())
        );
    }

    #[test]
    fn verify_workos_computed_value() {
        let header =
            "t=1626125972272, v1=b2b39c64ec4884ef1bad3411e9f9643c18fe405fd9c9e8c749fc22e79542ed24";
        let (verified, decoded) = request(
            &workos_source(),
            "WorkOS-Signature",
            header,
            WORKOS_BODY,
            1_626_125_972,
        );
        assert_eq!(verified, Ok(()));

        let decoded = decoded.unwrap();
        assert_eq!(decoded[0].delivery_key, "wh_123");
        assert_eq!(decoded[0].types, vec!["user.deleted"]);
        assert_eq!(decoded[0].occurred_at, Some(1_626_125_972_272));
    }

    #[test]
    fn verify_accepts_uppercase_hex() {
        let timestamp = NOW.to_string();
        let signature = sign(STRIPE_SECRET, &timestamp, BODY).to_uppercase();
        assert_eq!(
            stripe_verify(&format!("t={timestamp},v1={signature}"), BODY, NOW),
            Ok(())
        );
    }

    #[test]
    fn verify_accepts_rotation_and_other_schemes() {
        let timestamp = NOW.to_string();
        let good = sign(OLD_SECRET, &timestamp, BODY);
        let wrong = sign("whsec_other", &timestamp, BODY);
        let header = format!("v0={good}, t={timestamp} ,v1={wrong},v1={good},v2=abc,junk");
        assert_eq!(stripe_verify(&header, BODY, NOW), Ok(()));
    }

    #[test]
    fn verify_signs_timestamp_as_sent() {
        // A leading zero changes the signed bytes but not the number.
        let timestamp = format!("0{NOW}");
        let header = format!("t={timestamp},v1={}", sign(STRIPE_SECRET, &timestamp, BODY));
        assert_eq!(stripe_verify(&header, BODY, NOW), Ok(()));

        let header = format!(
            "t={timestamp},v1={}",
            sign(STRIPE_SECRET, &NOW.to_string(), BODY)
        );
        assert_eq!(
            stripe_verify(&header, BODY, NOW),
            Err(Rejection::Unauthorized("bad signature"))
        );
    }

    #[test]
    fn verify_tolerance_boundaries_seconds() {
        for (offset, accepted) in [(-300, true), (300, true), (-301, false), (301, false)] {
            let timestamp = (NOW + offset).to_string();
            let header = format!("t={timestamp},v1={}", sign(STRIPE_SECRET, &timestamp, BODY));
            let result = stripe_verify(&header, BODY, NOW);
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
    fn verify_tolerance_boundaries_millis() {
        let source = workos_source();
        let now_ms = NOW * 1000;
        for (offset_ms, accepted) in [
            (-180_000, true),
            (180_999, true),
            (-180_001, false),
            (181_000, false),
        ] {
            let timestamp = (now_ms + offset_ms).to_string();
            let header = format!(
                "t={timestamp}, v1={}",
                sign("secret", &timestamp, WORKOS_BODY)
            );
            let (result, _) = request(&source, "workos-signature", &header, WORKOS_BODY, NOW);
            if accepted {
                assert_eq!(result, Ok(()), "offset {offset_ms} ms");
            } else {
                assert_eq!(
                    result,
                    Err(Rejection::Unauthorized("timestamp outside tolerance")),
                    "offset {offset_ms} ms"
                );
            }
        }
    }

    #[test]
    fn verify_distinguishes_seconds_and_millis() {
        // A millisecond value read as seconds lies far in the future.
        let timestamp = (NOW * 1000).to_string();
        let header = format!("t={timestamp},v1={}", sign(STRIPE_SECRET, &timestamp, BODY));
        assert_eq!(
            stripe_verify(&header, BODY, NOW),
            Err(Rejection::Unauthorized("timestamp outside tolerance"))
        );

        // A second value read as milliseconds lies in 1970.
        let timestamp = NOW.to_string();
        let header = format!(
            "t={timestamp}, v1={}",
            sign("secret", &timestamp, WORKOS_BODY)
        );
        let (result, _) = request(
            &workos_source(),
            "WorkOS-Signature",
            &header,
            WORKOS_BODY,
            NOW,
        );
        assert_eq!(
            result,
            Err(Rejection::Unauthorized("timestamp outside tolerance"))
        );
    }

    #[test]
    fn verify_rejects_header_problems() {
        let timestamp = NOW.to_string();
        let good = sign(STRIPE_SECRET, &timestamp, BODY);
        let cases = [
            (format!("v1={good}"), "missing timestamp"),
            (format!("t=,v1={good}"), "invalid timestamp"),
            (format!("t=-{timestamp},v1={good}"), "invalid timestamp"),
            (format!("t={timestamp}.5,v1={good}"), "invalid timestamp"),
            (
                format!("t=99999999999999999999,v1={good}"),
                "invalid timestamp",
            ),
            (
                format!("t={timestamp},t={timestamp},v1={good}"),
                "more than one timestamp",
            ),
            (format!("t={timestamp},v0={good}"), "no supported signature"),
            (format!("t={timestamp}"), "no supported signature"),
            (format!("t={timestamp},v1="), "bad signature"),
            (format!("t={timestamp},v1={}", &good[..62]), "bad signature"),
            (format!("t={timestamp},v1={good}00"), "bad signature"),
            (
                format!("t={timestamp},v1 = {good}"),
                "no supported signature",
            ),
        ];
        for (header, reason) in cases {
            assert_eq!(
                stripe_verify(&header, BODY, NOW),
                Err(Rejection::Unauthorized(reason)),
                "header {header:?}"
            );
        }
    }

    #[test]
    fn verify_rejects_missing_header() {
        let source = StripeStyleSource::new(stripe_settings()).unwrap();
        let (result, decoded) = request(&source, "WorkOS-Signature", "t=1,v1=00", BODY, NOW);
        assert_eq!(
            result,
            Err(Rejection::Unauthorized("missing signature header"))
        );
        assert_eq!(
            decoded,
            Err(Rejection::Unauthorized("missing signature header"))
        );
    }

    #[test]
    fn verify_rejects_changed_body() {
        let timestamp = NOW.to_string();
        let header = format!("t={timestamp},v1={}", sign(STRIPE_SECRET, &timestamp, BODY));
        assert_eq!(
            stripe_verify(
                &header,
                br#"{"id":"evt_1Q2w3E","type":"customer.created","data":{}}"#,
                NOW
            ),
            Err(Rejection::Unauthorized("bad signature"))
        );
    }

    #[test]
    fn decode_stripe_event() {
        let source = StripeStyleSource::new(stripe_settings()).unwrap();
        let header = format!("t={NOW},v1=00");
        let (_, decoded) = request(&source, "Stripe-Signature", &header, BODY, NOW);
        let decoded = decoded.unwrap();
        assert_eq!(decoded.len(), 1);
        assert_eq!(decoded[0].delivery_key, "evt_1Q2w3E");
        assert_eq!(decoded[0].types, vec!["customer.deleted"]);
        assert_eq!(decoded[0].occurred_at, Some(NOW * 1000));
        assert_eq!(decoded[0].payload["data"], serde_json::json!({}));
    }

    #[test]
    fn decode_rejects_missing_fields() {
        let source = StripeStyleSource::new(stripe_settings()).unwrap();
        let header = format!("t={NOW},v1=00");
        for (body, phrase) in [
            (&br#"{"type":"customer.deleted"}"#[..], "no field at /id"),
            (
                br#"{"id":7,"type":"customer.deleted"}"#,
                "/id is not a string",
            ),
            (br#"{"id":"evt_1"}"#, "no field at /type"),
            (br#"{"id":"evt_1","type":""}"#, "/type is empty"),
            (b"[]", "no field at /id"),
        ] {
            let (_, decoded) = request(&source, "Stripe-Signature", &header, body, NOW);
            let Err(Rejection::Malformed(message)) = decoded else {
                panic!("expected Malformed for {body:?}");
            };
            assert!(message.contains(phrase), "{message}");
        }
    }

    #[test]
    fn decode_rejects_non_json_body() {
        let source = StripeStyleSource::new(stripe_settings()).unwrap();
        let header = format!("t={NOW},v1=00");
        let (_, decoded) = request(
            &source,
            "Stripe-Signature",
            &header,
            b"id=hidden-value",
            NOW,
        );
        let Err(Rejection::Malformed(message)) = decoded else {
            panic!("expected Malformed");
        };
        assert!(message.starts_with("body is not JSON: "), "{message}");
        assert!(!message.contains("hidden-value"), "{message}");
    }

    #[test]
    fn new_rejects_bad_settings() {
        let cases: [(StripeStyleSettings, &str); 4] = [
            (
                StripeStyleSettings {
                    header: "Stripe Signature".to_owned(),
                    ..stripe_settings()
                },
                "header is not a valid HTTP header name",
            ),
            (
                StripeStyleSettings {
                    secrets: Vec::new(),
                    ..stripe_settings()
                },
                "secrets is empty",
            ),
            (
                StripeStyleSettings {
                    secrets: vec![SecretString::from(STRIPE_SECRET), SecretString::from("")],
                    ..stripe_settings()
                },
                "position 2 is empty",
            ),
            (
                StripeStyleSettings {
                    type_pointer: "event".to_owned(),
                    ..stripe_settings()
                },
                "type_pointer is not a JSON Pointer",
            ),
        ];
        for (settings, phrase) in cases {
            let error = StripeStyleSource::new(settings).unwrap_err();
            assert!(error.contains(phrase), "{error}");
            assert!(!error.contains("MfKQ"), "{error}");
        }
    }

    #[test]
    fn debug_output_hides_secrets() {
        let text = format!("{:?}", StripeStyleSource::new(stripe_settings()).unwrap());
        assert!(!text.contains("MfKQ"), "{text}");
        assert!(!text.contains("previous"), "{text}");
    }
}
