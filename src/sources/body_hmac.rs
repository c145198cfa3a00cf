//! Verification and decoding for the `hmac` kind: an HMAC of the raw body
//! in one header, as GitHub, the p2-inc Keycloak events extension and
//! Descope send it.
//!
//! GitHub sends `X-Hub-Signature-256: sha256=<hex>`, Keycloak sends bare hex
//! in `X-Keycloak-Signature`, and Descope sends base64 in
//! `x-descope-webhook-s256`, each an HMAC-SHA256 keyed with the secret's
//! UTF-8 bytes. The scheme has no timestamp, so a replayed delivery is caught
//! only by deduplication.

use std::fmt;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256, Sha512};
use subtle::{Choice, ConstantTimeEq};

use super::{
    header_name_setting, header_str, json_pointer_setting, parse_json_body, string_at_pointer,
    DecodedEvent, Inbound, Rejection,
};

/// Event type when neither `type_header` nor `type_pointer` is configured.
const DEFAULT_EVENT_TYPE: &str = "webhook";

/// Standard base64 that accepts padded and unpadded input.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Hash function of the HMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HmacAlgorithm {
    Sha256,
    Sha512,
}

/// Text encoding of the HMAC in the signature header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureEncoding {
    /// Hex digits, lowercase or uppercase.
    Hex,
    /// Standard base64, padded or not.
    Base64,
}

/// Settings of one `hmac` source, with secrets resolved.
#[derive(Debug)]
pub struct HmacSettings {
    /// Name of the signature header, e.g. `X-Hub-Signature-256`.
    pub header: String,
    /// Text before the signature in the header value, e.g. `sha256=`. Empty
    /// when the value is the signature alone.
    pub prefix: String,
    pub algorithm: HmacAlgorithm,
    pub encoding: SignatureEncoding,
    /// HMAC keys as UTF-8 text, in rotation order.
    pub secrets: Vec<SecretString>,
    /// Header with the sender's delivery id, e.g. `X-GitHub-Delivery`.
    pub id_header: Option<String>,
    /// Header with the event type, e.g. `X-GitHub-Event`.
    pub type_header: Option<String>,
    /// JSON Pointer to the event type in the body, e.g. `/type`.
    pub type_pointer: Option<String>,
}

/// A keyed HMAC state, cloned for each request.
#[derive(Clone)]
enum Signer {
    Sha256(Hmac<Sha256>),
    Sha512(Hmac<Sha512>),
}

impl Signer {
    fn new(algorithm: HmacAlgorithm, key: &[u8]) -> Self {
        match algorithm {
            HmacAlgorithm::Sha256 => {
                Signer::Sha256(Hmac::new_from_slice(key).expect("HMAC accepts keys of any length"))
            }
            HmacAlgorithm::Sha512 => {
                Signer::Sha512(Hmac::new_from_slice(key).expect("HMAC accepts keys of any length"))
            }
        }
    }

    /// Compares the HMAC of `body` with `signature` in constant time.
    fn matches(&self, body: &[u8], signature: &[u8]) -> Choice {
        match self.clone() {
            Signer::Sha256(mut mac) => {
                mac.update(body);
                mac.finalize().into_bytes().as_slice().ct_eq(signature)
            }
            Signer::Sha512(mut mac) => {
                mac.update(body);
                mac.finalize().into_bytes().as_slice().ct_eq(signature)
            }
        }
    }
}

/// Verifier and decoder for one configured `hmac` source.
pub struct HmacSource {
    /// Signature header name in lowercase.
    header: String,
    prefix: String,
    encoding: SignatureEncoding,
    /// HMAC output length in bytes.
    signature_len: usize,
    /// One keyed state per secret.
    signers: Vec<Signer>,
    /// Header names in lowercase.
    id_header: Option<String>,
    type_header: Option<String>,
    type_pointer: Option<String>,
}

impl HmacSource {
    /// Builds a verifier from the source's settings.
    ///
    /// Errors name the setting, and a bad secret by its position, when a
    /// header name is empty or invalid, the secret list is empty, a secret is
    /// empty, or `type_pointer` does not start with `/`.
    pub fn new(settings: HmacSettings) -> Result<Self, String> {
        let header = header_name_setting("hmac source: header", &settings.header)?;
        let id_header = settings
            .id_header
            .as_deref()
            .map(|name| header_name_setting("hmac source: id_header", name))
            .transpose()?;
        let type_header = settings
            .type_header
            .as_deref()
            .map(|name| header_name_setting("hmac source: type_header", name))
            .transpose()?;
        if let Some(pointer) = &settings.type_pointer {
            json_pointer_setting("hmac source: type_pointer", pointer)?;
        }

        if settings.secrets.is_empty() {
            return Err("hmac source: secrets is empty; add the webhook secret \
                 configured at the sender"
                .to_owned());
        }
        let mut signers = Vec::with_capacity(settings.secrets.len());
        for (index, secret) in settings.secrets.iter().enumerate() {
            let key = secret.expose_secret().as_bytes();
            if key.is_empty() {
                return Err(format!(
                    "hmac source: secret at position {} is empty; set it to the \
                     webhook secret configured at the sender",
                    index + 1
                ));
            }
            signers.push(Signer::new(settings.algorithm, key));
        }

        let signature_len = match settings.algorithm {
            HmacAlgorithm::Sha256 => 32,
            HmacAlgorithm::Sha512 => 64,
        };
        Ok(Self {
            header,
            prefix: settings.prefix,
            encoding: settings.encoding,
            signature_len,
            signers,
            id_header,
            type_header,
            type_pointer: settings.type_pointer,
        })
    }

    /// Checks the HMAC of the raw body against the signature header, with
    /// every secret, in constant time.
    ///
    /// Reads nothing from the body but its bytes.
    pub fn verify(&self, req: &Inbound) -> Result<(), Rejection> {
        let value = header_str(req.headers, &self.header)
            .ok_or(Rejection::Unauthorized("missing signature header"))?;
        let encoded = value
            .strip_prefix(self.prefix.as_str())
            .ok_or(Rejection::Unauthorized("signature prefix mismatch"))?;

        let decoded = match self.encoding {
            SignatureEncoding::Hex => hex::decode(encoded).ok(),
            SignatureEncoding::Base64 => LENIENT_BASE64.decode(encoded).ok(),
        };
        let signature = match decoded {
            Some(bytes) if bytes.len() == self.signature_len => bytes,
            _ => return Err(Rejection::Unauthorized("bad signature")),
        };

        // Every secret is tried, so the time taken does not depend on which
        // one matched.
        let mut matched = Choice::from(0);
        for signer in &self.signers {
            matched |= signer.matches(req.body, &signature);
        }
        if bool::from(matched) {
            Ok(())
        } else {
            Err(Rejection::Unauthorized("bad signature"))
        }
    }

    /// Decodes a verified request into one event whose payload is the body,
    /// which must be JSON.
    ///
    /// The delivery key is the `id_header` value when it is configured and
    /// present, else the lowercase hex SHA-256 of the body. The type is the
    /// `type_header` value when it is configured and present, else the
    /// string at `type_pointer` when that is configured (a missing, empty or
    /// non-string value is `Malformed`), else `webhook`.
    ///
    /// NOTE: the id and type headers are not covered by the HMAC. Anyone who
    /// has one signed delivery can resend it with another id, which
    /// deduplication then takes as a new delivery, or another type.
    pub fn decode(&self, req: &Inbound) -> Result<Vec<DecodedEvent>, Rejection> {
        let payload = parse_json_body(req.body)?;

        let delivery_key = match self.present_header(req, self.id_header.as_deref()) {
            Some(id) => id.to_owned(),
            None => hex::encode(Sha256::digest(req.body)),
        };
        let event_type = match (
            self.present_header(req, self.type_header.as_deref()),
            &self.type_pointer,
        ) {
            (Some(name), _) => name.to_owned(),
            (None, Some(pointer)) => string_at_pointer(&payload, pointer)?.to_owned(),
            (None, None) => DEFAULT_EVENT_TYPE.to_owned(),
        };

        Ok(vec![DecodedEvent {
            delivery_key,
            types: vec![event_type],
            payload,
            occurred_at: None,
        }])
    }

    /// Reads an optional header's value. An empty value counts as absent.
    fn present_header<'a>(&self, req: &Inbound<'a>, name: Option<&str>) -> Option<&'a str> {
        header_str(req.headers, name?).filter(|value| !value.is_empty())
    }
}

impl fmt::Debug for HmacSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HmacSource")
            .field("header", &self.header)
            .field("prefix", &self.prefix)
            .field("encoding", &self.encoding)
            .field("signature_len", &self.signature_len)
            .field("signers", &self.signers.len())
            .field("id_header", &self.id_header)
            .field("type_header", &self.type_header)
            .field("type_pointer", &self.type_pointer)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD as BASE64;

    const SECRET: &str = "It's a Secret to Everybody";
    const OLD_SECRET: &str = "previous-secret-0123456789";
    const BODY: &[u8] = br#"{"type":"access.UPDATE_PASSWORD","realmId":"main","uid":"u1"}"#;

    fn settings() -> HmacSettings {
        HmacSettings {
            header: "X-Hub-Signature-256".to_owned(),
            prefix: "sha256=".to_owned(),
            algorithm: HmacAlgorithm::Sha256,
            encoding: SignatureEncoding::Hex,
            secrets: vec![SecretString::from(OLD_SECRET), SecretString::from(SECRET)],
            id_header: None,
            type_header: None,
            type_pointer: None,
        }
    }

    fn tag(algorithm: HmacAlgorithm, secret: &str, body: &[u8]) -> Vec<u8> {
        match algorithm {
            HmacAlgorithm::Sha256 => {
                let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
                mac.update(body);
                mac.finalize().into_bytes().to_vec()
            }
            HmacAlgorithm::Sha512 => {
                let mut mac = Hmac::<Sha512>::new_from_slice(secret.as_bytes()).unwrap();
                mac.update(body);
                mac.finalize().into_bytes().to_vec()
            }
        }
    }

    fn run_verify(
        source: &HmacSource,
        pairs: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), Rejection> {
        let list: Vec<(String, String)> = pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        source.verify(&Inbound {
            headers: &list,
            body,
            now: 0,
        })
    }

    fn run_decode(
        source: &HmacSource,
        pairs: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Vec<DecodedEvent>, Rejection> {
        let list: Vec<(String, String)> = pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        source.decode(&Inbound {
            headers: &list,
            body,
            now: 0,
        })
    }

    fn github_header(body: &[u8]) -> String {
        format!(
            "sha256={}",
            hex::encode(tag(HmacAlgorithm::Sha256, SECRET, body))
        )
    }

    #[test]
    fn verify_github_published_value() {
        let source = HmacSource::new(settings()).unwrap();
        let header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(
            run_verify(
                &source,
                &[("x-hub-signature-256", header)],
                b"Hello, World!"
            ),
            Ok(())
        );
    }

    #[test]
    fn verify_accepts_uppercase_hex() {
        let source = HmacSource::new(settings()).unwrap();
        let header = format!(
            "sha256={}",
            hex::encode_upper(tag(HmacAlgorithm::Sha256, SECRET, BODY))
        );
        assert_eq!(
            run_verify(&source, &[("X-Hub-Signature-256", &header)], BODY),
            Ok(())
        );
    }

    #[test]
    fn verify_accepts_older_secret() {
        let source = HmacSource::new(settings()).unwrap();
        let header = format!(
            "sha256={}",
            hex::encode(tag(HmacAlgorithm::Sha256, OLD_SECRET, BODY))
        );
        assert_eq!(
            run_verify(&source, &[("X-Hub-Signature-256", &header)], BODY),
            Ok(())
        );
    }

    #[test]
    fn verify_rejects_missing_header() {
        let source = HmacSource::new(settings()).unwrap();
        assert_eq!(
            run_verify(&source, &[("X-Hub-Signature", &github_header(BODY))], BODY),
            Err(Rejection::Unauthorized("missing signature header"))
        );
    }

    #[test]
    fn verify_rejects_prefix_mismatch() {
        let source = HmacSource::new(settings()).unwrap();
        let hex_tag = hex::encode(tag(HmacAlgorithm::Sha256, SECRET, BODY));
        for header in [
            hex_tag.clone(),
            format!("sha1={hex_tag}"),
            format!("SHA256={hex_tag}"),
        ] {
            assert_eq!(
                run_verify(&source, &[("X-Hub-Signature-256", &header)], BODY),
                Err(Rejection::Unauthorized("signature prefix mismatch")),
                "header {header:?}"
            );
        }
    }

    #[test]
    fn verify_rejects_bad_signatures() {
        let source = HmacSource::new(settings()).unwrap();
        let good = github_header(BODY);
        for header in [
            "sha256=".to_owned(),
            "sha256=zz".to_owned(),
            good[..good.len() - 2].to_owned(),
            format!("{good}00"),
            github_header(b"{}"),
        ] {
            assert_eq!(
                run_verify(&source, &[("X-Hub-Signature-256", &header)], BODY),
                Err(Rejection::Unauthorized("bad signature")),
                "header {header:?}"
            );
        }
    }

    #[test]
    fn verify_base64_sha256() {
        // Descope-style: base64 of HMAC-SHA256, no prefix.
        let source = HmacSource::new(HmacSettings {
            header: "x-descope-webhook-s256".to_owned(),
            prefix: String::new(),
            encoding: SignatureEncoding::Base64,
            secrets: vec![SecretString::from("A3jt6D8lz")],
            ..settings()
        })
        .unwrap();
        let body = br#"{"type":"access.UPDATE_PASSWORD","realmId":"r1","uid":"u1"}"#;
        let header = "p1sVK0BtXrvX+YZN8AHawZGzRLMRr1aId6Xwy1D/fjY=";
        assert_eq!(
            run_verify(&source, &[("X-Descope-Webhook-S256", header)], body),
            Ok(())
        );
        let unpadded = header.trim_end_matches('=');
        assert_eq!(
            run_verify(&source, &[("X-Descope-Webhook-S256", unpadded)], body),
            Ok(())
        );
        let hex_value = hex::encode(BASE64.decode(header).unwrap());
        assert_eq!(
            run_verify(&source, &[("X-Descope-Webhook-S256", &hex_value)], body),
            Err(Rejection::Unauthorized("bad signature"))
        );
    }

    #[test]
    fn verify_sha512() {
        let source = HmacSource::new(HmacSettings {
            prefix: "sha512=".to_owned(),
            algorithm: HmacAlgorithm::Sha512,
            ..settings()
        })
        .unwrap();
        let sha512 = format!(
            "sha512={}",
            hex::encode(tag(HmacAlgorithm::Sha512, SECRET, BODY))
        );
        assert_eq!(
            run_verify(&source, &[("X-Hub-Signature-256", &sha512)], BODY),
            Ok(())
        );

        // A SHA-256 tag has the wrong length for a SHA-512 source.
        let sha256 = format!(
            "sha512={}",
            hex::encode(tag(HmacAlgorithm::Sha256, SECRET, BODY))
        );
        assert_eq!(
            run_verify(&source, &[("X-Hub-Signature-256", &sha256)], BODY),
            Err(Rejection::Unauthorized("bad signature"))
        );
    }

    #[test]
    fn decode_defaults() {
        let source = HmacSource::new(settings()).unwrap();
        let decoded = run_decode(&source, &[], BODY).unwrap();
        assert_eq!(decoded.len(), 1);
        assert_eq!(decoded[0].delivery_key, hex::encode(Sha256::digest(BODY)));
        assert_eq!(decoded[0].types, vec!["webhook"]);
        assert_eq!(decoded[0].payload["realmId"], "main");
        assert_eq!(decoded[0].occurred_at, None);
    }

    #[test]
    fn decode_reads_configured_headers() {
        let source = HmacSource::new(HmacSettings {
            id_header: Some("X-GitHub-Delivery".to_owned()),
            type_header: Some("X-GitHub-Event".to_owned()),
            type_pointer: Some("/type".to_owned()),
            ..settings()
        })
        .unwrap();
        let headers = [
            ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            ("x-github-event", "member"),
        ];
        let decoded = run_decode(&source, &headers, BODY).unwrap();
        assert_eq!(
            decoded[0].delivery_key,
            "72d3162e-cc78-11e3-81ab-4c9367dc0958"
        );
        assert_eq!(decoded[0].types, vec!["member"]);
    }

    #[test]
    fn decode_falls_back_when_headers_absent() {
        let source = HmacSource::new(HmacSettings {
            id_header: Some("X-GitHub-Delivery".to_owned()),
            type_header: Some("X-GitHub-Event".to_owned()),
            type_pointer: Some("/type".to_owned()),
            ..settings()
        })
        .unwrap();
        let decoded = run_decode(&source, &[("X-GitHub-Delivery", " ")], BODY).unwrap();
        assert_eq!(decoded[0].delivery_key, hex::encode(Sha256::digest(BODY)));
        assert_eq!(decoded[0].types, vec!["access.UPDATE_PASSWORD"]);

        let without_pointer = HmacSource::new(HmacSettings {
            type_header: Some("X-GitHub-Event".to_owned()),
            ..settings()
        })
        .unwrap();
        let decoded = run_decode(&without_pointer, &[], BODY).unwrap();
        assert_eq!(decoded[0].types, vec!["webhook"]);
    }

    #[test]
    fn decode_rejects_bad_type_pointer_value() {
        let source = HmacSource::new(HmacSettings {
            type_pointer: Some("/event/name".to_owned()),
            ..settings()
        })
        .unwrap();
        for (body, phrase) in [
            (&br#"{"type":"x"}"#[..], "has no field at /event/name"),
            (br#"{"event":{"name":""}}"#, "at /event/name is empty"),
            (br#"{"event":{"name":["hidden"]}}"#, "is not a string"),
        ] {
            let Err(Rejection::Malformed(message)) = run_decode(&source, &[], body) else {
                panic!("expected Malformed for {body:?}");
            };
            assert!(message.contains(phrase), "{message}");
            assert!(!message.contains("hidden"), "{message}");
        }
    }

    #[test]
    fn decode_rejects_non_json_body() {
        let source = HmacSource::new(settings()).unwrap();
        let Err(Rejection::Malformed(message)) = run_decode(&source, &[], b"Hello, World!") else {
            panic!("expected Malformed");
        };
        assert!(message.starts_with("body is not JSON: "), "{message}");
        assert!(!message.contains("Hello"), "{message}");
    }

    #[test]
    fn new_rejects_bad_settings() {
        let cases: [(HmacSettings, &str); 6] = [
            (
                HmacSettings {
                    header: String::new(),
                    ..settings()
                },
                "header is empty",
            ),
            (
                HmacSettings {
                    secrets: Vec::new(),
                    ..settings()
                },
                "secrets is empty",
            ),
            (
                HmacSettings {
                    secrets: vec![SecretString::from(SECRET), SecretString::from("")],
                    ..settings()
                },
                "position 2 is empty",
            ),
            (
                HmacSettings {
                    id_header: Some("X GitHub Delivery".to_owned()),
                    ..settings()
                },
                "id_header is not a valid HTTP header name",
            ),
            (
                HmacSettings {
                    type_header: Some(String::new()),
                    ..settings()
                },
                "type_header is empty",
            ),
            (
                HmacSettings {
                    type_pointer: Some("type".to_owned()),
                    ..settings()
                },
                "type_pointer is not a JSON Pointer",
            ),
        ];
        for (settings, phrase) in cases {
            let error = HmacSource::new(settings).unwrap_err();
            assert!(error.contains(phrase), "{error}");
            assert!(!error.contains("Everybody"), "{error}");
        }
    }

    #[test]
    fn debug_output_hides_secrets() {
        let text = format!("{:?}", HmacSource::new(settings()).unwrap());
        assert!(!text.contains("Everybody"), "{text}");
        assert!(!text.contains("previous"), "{text}");
    }
}
