//! Property tests for the Okta, Auth0, `hmac` and `stripe-style` verifiers
//! and for Standard Webhooks `v1a`: arbitrary requests never panic and never
//! verify, and a valid request with one bit flipped never verifies.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use hmac::{Hmac, Mac};
use proptest::prelude::*;
use revokd::sources::auth0::{Auth0Settings, Auth0Source};
use revokd::sources::body_hmac::{HmacAlgorithm, HmacSettings, HmacSource, SignatureEncoding};
use revokd::sources::okta::{OktaSettings, OktaSource};
use revokd::sources::standard_webhooks::StandardWebhooksSource;
use revokd::sources::stripe_style::{StripeStyleSettings, StripeStyleSource, TimestampUnit};
use revokd::sources::Inbound;
use secrecy::SecretString;
use sha2::{Sha256, Sha512};

const OKTA_SECRET: &str = "Basic b2t0YS1ob29rOnMzY3JldC12YWx1ZQ==";
const AUTH0_SECRET: &str = "Bearer auth0-stream-token-0123456789";
const HMAC_SECRET: &str = "hmac-secret-0123456789abcdef";
const STRIPE_SECRET: &str = "whsec_test_5f2e9a0c4b7d";
/// 32 bytes 0x01..=0x20, the Standard Webhooks HMAC key.
const STANDARD_SECRET: &str = "whsec_AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
/// Seed of the Ed25519 key that signs `v1a` entries in these tests.
const ED25519_SEED: [u8; 32] = [9; 32];
const NOW: i64 = 1_764_849_600;
const TOLERANCE: u64 = 300;

fn okta_source() -> OktaSource {
    OktaSource::new(OktaSettings {
        header: "Authorization".to_owned(),
        secrets: vec![SecretString::from(OKTA_SECRET)],
    })
    .unwrap()
}

fn auth0_source() -> Auth0Source {
    Auth0Source::new(Auth0Settings {
        secrets: vec![SecretString::from(AUTH0_SECRET)],
    })
    .unwrap()
}

fn hmac_source(algorithm: HmacAlgorithm, encoding: SignatureEncoding) -> HmacSource {
    HmacSource::new(HmacSettings {
        header: "X-Hub-Signature-256".to_owned(),
        prefix: "sha256=".to_owned(),
        algorithm,
        encoding,
        secrets: vec![SecretString::from(HMAC_SECRET)],
        id_header: Some("X-GitHub-Delivery".to_owned()),
        type_header: Some("X-GitHub-Event".to_owned()),
        type_pointer: Some("/type".to_owned()),
    })
    .unwrap()
}

fn stripe_source(timestamp_unit: TimestampUnit) -> StripeStyleSource {
    StripeStyleSource::new(StripeStyleSettings {
        header: "Stripe-Signature".to_owned(),
        timestamp_unit,
        tolerance_seconds: TOLERANCE,
        secrets: vec![SecretString::from(STRIPE_SECRET)],
        type_pointer: "/type".to_owned(),
    })
    .unwrap()
}

fn ed25519_public_key() -> String {
    let key = SigningKey::from_bytes(&ED25519_SEED).verifying_key();
    format!("whpk_{}", BASE64.encode(key.as_bytes()))
}

fn standard_source() -> StandardWebhooksSource {
    StandardWebhooksSource::new(vec![SecretString::from(STANDARD_SECRET)], TOLERANCE)
        .unwrap()
        .with_public_keys(vec![SecretString::from(ed25519_public_key())])
        .unwrap()
}

fn hmac_tag(algorithm: HmacAlgorithm, body: &[u8]) -> Vec<u8> {
    match algorithm {
        HmacAlgorithm::Sha256 => {
            let mut mac = Hmac::<Sha256>::new_from_slice(HMAC_SECRET.as_bytes()).unwrap();
            mac.update(body);
            mac.finalize().into_bytes().to_vec()
        }
        HmacAlgorithm::Sha512 => {
            let mut mac = Hmac::<Sha512>::new_from_slice(HMAC_SECRET.as_bytes()).unwrap();
            mac.update(body);
            mac.finalize().into_bytes().to_vec()
        }
    }
}

fn encode(encoding: SignatureEncoding, tag: &[u8]) -> String {
    match encoding {
        SignatureEncoding::Hex => hex::encode(tag),
        SignatureEncoding::Base64 => BASE64.encode(tag),
    }
}

fn stripe_tag(timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(STRIPE_SECRET.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

fn ed25519_signature(id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut content = format!("{id}.{timestamp}.").into_bytes();
    content.extend_from_slice(body);
    SigningKey::from_bytes(&ED25519_SEED)
        .sign(&content)
        .to_bytes()
        .to_vec()
}

fn standard_headers(id: &str, timestamp: i64, signature: &[u8]) -> Vec<(String, String)> {
    vec![
        ("webhook-id".to_owned(), id.to_owned()),
        ("webhook-timestamp".to_owned(), timestamp.to_string()),
        (
            "webhook-signature".to_owned(),
            format!("v1a,{}", BASE64.encode(signature)),
        ),
    ]
}

fn flip_bit(bytes: &mut [u8], bit: usize) {
    let bit = bit % (bytes.len() * 8);
    bytes[bit / 8] ^= 1 << (bit % 8);
}

/// Flips one of bits 0..=6 of one byte, so ASCII text stays ASCII.
fn flip_ascii_bit(text: &str, bit: usize) -> String {
    let mut bytes = text.as_bytes().to_vec();
    let index = bit % bytes.len();
    bytes[index] ^= 1 << (bit / bytes.len() % 7);
    String::from_utf8(bytes).unwrap()
}

/// Header names the verifiers read, plus one they ignore, in mixed case.
fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("Authorization"),
        Just("x-okta-verification-challenge"),
        Just("X-Hub-Signature-256"),
        Just("x-github-delivery"),
        Just("X-GitHub-Event"),
        Just("Stripe-Signature"),
        Just("webhook-id"),
        Just("Webhook-Timestamp"),
        Just("webhook-signature"),
        Just("content-type"),
    ]
    .prop_map(str::to_owned)
}

/// Header values: free text, plausible shared values, signatures and
/// timestamps.
fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,80}",
        "(Basic|Bearer) [A-Za-z0-9+/=|-]{0,48}",
        proptest::collection::vec(any::<u8>(), 32..=32)
            .prop_map(|bytes| format!("sha256={}", hex::encode(bytes))),
        proptest::collection::vec(any::<u8>(), 32..=64).prop_map(|bytes| BASE64.encode(bytes)),
        (1_764_849_000i64..1_764_850_200, any::<[u8; 32]>())
            .prop_map(|(ts, bytes)| format!("t={ts},v1={},v0=00", hex::encode(bytes))),
        proptest::collection::vec(any::<u8>(), 64..=64).prop_map(|bytes| format!(
            "v1a,{} v1,{}",
            BASE64.encode(&bytes),
            BASE64.encode(&bytes[..32])
        )),
        (1_764_849_000i64..1_764_850_200).prop_map(|ts| ts.to_string()),
    ]
}

fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::vec((header_name(), header_value()), 0..8)
}

/// Bodies: arbitrary bytes, or JSON shaped like the kinds' payloads.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        Just(br#"{"data":{"events":[{"uuid":"u1","eventType":"user.session.end"}]}}"#.to_vec()),
        Just(br#"[{"log_id":"l1","data":{"type":"scp","user_id":"auth0|1"}}]"#.to_vec()),
        Just(br#"{"id":"evt_1","type":"customer.deleted"}"#.to_vec()),
        "\\{\"[a-z]{1,8}\":\"[a-z0-9]{0,16}\"\\}".prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn random_requests_never_verify(
        headers in headers(),
        body in body(),
        now in prop_oneof![Just(NOW), any::<i64>()],
    ) {
        let request = Inbound { headers: &headers, body: &body, now };

        let okta = okta_source();
        prop_assert!(okta.verify(&request).is_err());
        prop_assert!(okta.verification_response(&request).is_err());
        let _ = okta.decode(&request);

        let auth0 = auth0_source();
        prop_assert!(auth0.verify(&request).is_err());
        let _ = auth0.decode(&request);

        for algorithm in [HmacAlgorithm::Sha256, HmacAlgorithm::Sha512] {
            for encoding in [SignatureEncoding::Hex, SignatureEncoding::Base64] {
                let source = hmac_source(algorithm, encoding);
                prop_assert!(source.verify(&request).is_err());
                let _ = source.decode(&request);
            }
        }

        for unit in [TimestampUnit::Seconds, TimestampUnit::Millis] {
            let source = stripe_source(unit);
            prop_assert!(source.verify(&request).is_err());
            let _ = source.decode(&request);
        }

        let standard = standard_source();
        prop_assert!(standard.verify(&request).is_err());
        let _ = standard.decode(&request);
    }

    #[test]
    fn stripe_extreme_values_never_panic(
        timestamp in "[0-9]{1,25}",
        now in any::<i64>(),
        unit in prop_oneof![Just(TimestampUnit::Seconds), Just(TimestampUnit::Millis)],
    ) {
        let headers = vec![("Stripe-Signature".to_owned(), format!("t={timestamp},v1=00"))];
        let request = Inbound { headers: &headers, body: b"{}", now };
        let source = stripe_source(unit);
        prop_assert!(source.verify(&request).is_err());
        let _ = source.decode(&request);
    }

    #[test]
    fn shared_header_flipped_bit_never_verifies(bit in any::<usize>()) {
        for (secret, verify) in [
            (OKTA_SECRET, okta_verify as fn(&Inbound) -> bool),
            (AUTH0_SECRET, auth0_verify),
        ] {
            let valid = vec![("Authorization".to_owned(), secret.to_owned())];
            let request = Inbound { headers: &valid, body: b"[]", now: NOW };
            prop_assert!(verify(&request));

            let tampered = vec![("Authorization".to_owned(), flip_ascii_bit(secret, bit))];
            let request = Inbound { headers: &tampered, body: b"[]", now: NOW };
            prop_assert!(!verify(&request));
        }
    }

    #[test]
    fn hmac_flipped_bit_never_verifies(
        body in proptest::collection::vec(any::<u8>(), 1..256),
        algorithm in prop_oneof![Just(HmacAlgorithm::Sha256), Just(HmacAlgorithm::Sha512)],
        encoding in prop_oneof![Just(SignatureEncoding::Hex), Just(SignatureEncoding::Base64)],
        flip_in_body in any::<bool>(),
        bit in any::<usize>(),
    ) {
        let source = hmac_source(algorithm, encoding);
        let mut tag = hmac_tag(algorithm, &body);

        let valid = vec![(
            "x-hub-signature-256".to_owned(),
            format!("sha256={}", encode(encoding, &tag)),
        )];
        let request = Inbound { headers: &valid, body: &body, now: NOW };
        prop_assert!(source.verify(&request).is_ok());

        let mut body = body.clone();
        if flip_in_body {
            flip_bit(&mut body, bit);
        } else {
            flip_bit(&mut tag, bit);
        }
        let tampered = vec![(
            "x-hub-signature-256".to_owned(),
            format!("sha256={}", encode(encoding, &tag)),
        )];
        let request = Inbound { headers: &tampered, body: &body, now: NOW };
        prop_assert!(source.verify(&request).is_err());
    }

    #[test]
    fn stripe_flipped_bit_never_verifies(
        body in proptest::collection::vec(any::<u8>(), 1..256),
        millis in any::<bool>(),
        target in 0usize..3,
        bit in any::<usize>(),
    ) {
        let (unit, timestamp) = if millis {
            (TimestampUnit::Millis, NOW * 1000 + 123)
        } else {
            (TimestampUnit::Seconds, NOW)
        };
        let source = stripe_source(unit);
        let mut tag = stripe_tag(&timestamp.to_string(), &body);

        let valid = vec![(
            "Stripe-Signature".to_owned(),
            format!("t={timestamp},v1={}", hex::encode(&tag)),
        )];
        let request = Inbound { headers: &valid, body: &body, now: NOW };
        prop_assert!(source.verify(&request).is_ok());

        let mut body = body.clone();
        let mut tampered_timestamp = timestamp;
        match target {
            0 => flip_bit(&mut body, bit),
            1 => flip_bit(&mut tag, bit),
            // Low bits only, so the timestamp stays within the tolerance
            // and only the signature check can reject it.
            _ => tampered_timestamp ^= 1 << (bit % 8),
        }
        let tampered = vec![(
            "Stripe-Signature".to_owned(),
            format!("t={tampered_timestamp}, v1={}", hex::encode(&tag)),
        )];
        let request = Inbound { headers: &tampered, body: &body, now: NOW };
        prop_assert!(source.verify(&request).is_err());
    }

    #[test]
    fn ed25519_flipped_bit_never_verifies(
        id in "msg_[A-Za-z0-9]{1,30}",
        body in proptest::collection::vec(any::<u8>(), 1..256),
        target in 0usize..4,
        bit in any::<usize>(),
    ) {
        let source = standard_source();
        let mut signature = ed25519_signature(&id, NOW, &body);

        let valid = standard_headers(&id, NOW, &signature);
        let request = Inbound { headers: &valid, body: &body, now: NOW };
        prop_assert!(source.verify(&request).is_ok());

        let mut id = id;
        let mut body = body.clone();
        let mut tampered_timestamp = NOW;
        match target {
            0 => flip_bit(&mut body, bit),
            1 => flip_bit(&mut signature, bit),
            // Low bits only, so the timestamp stays within the tolerance.
            2 => tampered_timestamp ^= 1 << (bit % 8),
            _ => id = flip_ascii_bit(&id, bit),
        }
        let tampered = standard_headers(&id, tampered_timestamp, &signature);
        let request = Inbound { headers: &tampered, body: &body, now: NOW };
        prop_assert!(source.verify(&request).is_err());
    }
}

fn okta_verify(request: &Inbound) -> bool {
    okta_source().verify(request).is_ok()
}

fn auth0_verify(request: &Inbound) -> bool {
    auth0_source().verify(request).is_ok()
}
