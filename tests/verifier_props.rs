//! Property tests for the verifiers: arbitrary requests never panic and never
//! verify, and a valid request with one bit flipped never verifies.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use proptest::prelude::*;
use revokd::sources::appwrite::AppwriteSource;
use revokd::sources::standard_webhooks::StandardWebhooksSource;
use revokd::sources::Inbound;
use secrecy::SecretString;
use sha1::Sha1;
use sha2::Sha256;

const APPWRITE_URL: &str = "https://hooks.example.com/hooks/appwrite?tenant=a%2Bb";
const APPWRITE_SECRET: &str = "0123456789abcdef0123456789abcdef";
/// 32 bytes 0x01..=0x20.
const STANDARD_KEY_BASE64: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
const TOLERANCE: u64 = 300;

fn appwrite_source() -> AppwriteSource {
    AppwriteSource::new(
        APPWRITE_URL,
        vec![SecretString::from(APPWRITE_SECRET)],
        None,
    )
    .unwrap()
}

fn standard_source() -> StandardWebhooksSource {
    let secret = format!("whsec_{STANDARD_KEY_BASE64}");
    StandardWebhooksSource::new(vec![SecretString::from(secret)], TOLERANCE).unwrap()
}

fn appwrite_signature(body: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha1>::new_from_slice(APPWRITE_SECRET.as_bytes()).unwrap();
    mac.update(APPWRITE_URL.as_bytes());
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

fn standard_signature(id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let key = BASE64.decode(STANDARD_KEY_BASE64).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

fn standard_headers(id: &str, timestamp: i64, signature: &[u8]) -> Vec<(String, String)> {
    vec![
        ("webhook-id".to_owned(), id.to_owned()),
        ("webhook-timestamp".to_owned(), timestamp.to_string()),
        (
            "webhook-signature".to_owned(),
            format!("v1,{}", BASE64.encode(signature)),
        ),
    ]
}

fn flip_bit(bytes: &mut [u8], bit: usize) {
    let bit = bit % (bytes.len() * 8);
    bytes[bit / 8] ^= 1 << (bit % 8);
}

/// Header names the verifiers read, plus one they ignore, in mixed case.
fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("X-Appwrite-Webhook-Signature"),
        Just("x-appwrite-webhook-events"),
        Just("Authorization"),
        Just("webhook-id"),
        Just("Webhook-Timestamp"),
        Just("webhook-signature"),
        Just("svix-id"),
        Just("SVIX-TIMESTAMP"),
        Just("svix-signature"),
        Just("content-type"),
    ]
    .prop_map(str::to_owned)
}

/// Header values: free text, plausible signatures and timestamps.
fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,80}",
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(|bytes| BASE64.encode(bytes)),
        proptest::collection::vec(any::<u8>(), 32..=32)
            .prop_map(|bytes| format!("v1,{}", BASE64.encode(bytes))),
        proptest::collection::vec(any::<u8>(), 32..=32).prop_map(|bytes| format!(
            "v1a,{} v1,{}",
            BASE64.encode(&bytes),
            BASE64.encode(&bytes)
        )),
        (1_700_000_000i64..1_800_000_000).prop_map(|ts| ts.to_string()),
        "users\\.[a-z0-9*]{1,20}(\\.[a-z]{1,10}){0,3}",
    ]
}

fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::vec((header_name(), header_value()), 0..8)
}

proptest! {
    #[test]
    fn appwrite_random_requests_never_verify(
        headers in headers(),
        body in proptest::collection::vec(any::<u8>(), 0..256),
        now in any::<i64>(),
    ) {
        let source = appwrite_source();
        let request = Inbound { headers: &headers, body: &body, now };
        prop_assert!(source.verify(&request).is_err());
        // Decode runs only after verify in the service, but must not panic on any input.
        let _ = source.decode(&request);
    }

    #[test]
    fn standard_random_requests_never_verify(
        headers in headers(),
        body in proptest::collection::vec(any::<u8>(), 0..256),
        now in 1_700_000_000i64..1_800_000_000,
    ) {
        let source = standard_source();
        let request = Inbound { headers: &headers, body: &body, now };
        prop_assert!(source.verify(&request).is_err());
        let _ = source.decode(&request);
    }

    #[test]
    fn standard_extreme_clock_never_panics(
        timestamp in "[0-9]{1,25}",
        now in any::<i64>(),
    ) {
        let headers = vec![
            ("webhook-id".to_owned(), "msg_1".to_owned()),
            ("webhook-timestamp".to_owned(), timestamp),
            ("webhook-signature".to_owned(), "v1,AAA=".to_owned()),
        ];
        let request = Inbound { headers: &headers, body: b"{}", now };
        prop_assert!(standard_source().verify(&request).is_err());
    }

    #[test]
    fn appwrite_flipped_bit_never_verifies(
        body in proptest::collection::vec(any::<u8>(), 1..256),
        flip_in_body in any::<bool>(),
        bit in any::<usize>(),
    ) {
        let source = appwrite_source();
        let mut signature = appwrite_signature(&body);

        let valid_headers = vec![(
            "x-appwrite-webhook-signature".to_owned(),
            BASE64.encode(&signature),
        )];
        let valid = Inbound { headers: &valid_headers, body: &body, now: 0 };
        prop_assert!(source.verify(&valid).is_ok());

        let mut body = body.clone();
        if flip_in_body {
            flip_bit(&mut body, bit);
        } else {
            flip_bit(&mut signature, bit);
        }
        let headers = vec![(
            "x-appwrite-webhook-signature".to_owned(),
            BASE64.encode(&signature),
        )];
        let tampered = Inbound { headers: &headers, body: &body, now: 0 };
        prop_assert!(source.verify(&tampered).is_err());
    }

    #[test]
    fn standard_flipped_bit_never_verifies(
        id in "msg_[A-Za-z0-9]{1,30}",
        body in proptest::collection::vec(any::<u8>(), 1..256),
        target in 0usize..4,
        bit in any::<usize>(),
    ) {
        let source = standard_source();
        let timestamp = 1_764_849_600i64;
        let mut signature = standard_signature(&id, timestamp, &body);

        let valid_headers = standard_headers(&id, timestamp, &signature);
        let valid = Inbound { headers: &valid_headers, body: &body, now: timestamp };
        prop_assert!(source.verify(&valid).is_ok());

        let mut id = id.into_bytes();
        let mut body = body.clone();
        let mut tampered_timestamp = timestamp;
        match target {
            0 => flip_bit(&mut body, bit),
            1 => flip_bit(&mut signature, bit),
            // Low bits only, so the timestamp stays within the tolerance
            // and only the signature check can reject it.
            2 => tampered_timestamp ^= 1 << (bit % 8),
            // Bits 0..=6 keep the byte ASCII, so the id stays valid UTF-8.
            _ => {
                let index = bit % id.len();
                id[index] ^= 1 << (bit / id.len() % 7);
            }
        }
        let id = String::from_utf8(id).unwrap();
        let headers = standard_headers(&id, tampered_timestamp, &signature);
        let tampered = Inbound { headers: &headers, body: &body, now: timestamp };
        prop_assert!(source.verify(&tampered).is_err());
    }
}
