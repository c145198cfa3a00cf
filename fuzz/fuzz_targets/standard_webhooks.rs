//! Arbitrary headers and body through the Standard Webhooks verifier and
//! decoder. When `sign` is set the target adds correctly signed id,
//! timestamp and signature headers, so `decode` also runs on the verified
//! path the service takes.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use revokd::senders::standard_webhooks_signature;
use revokd::sources::standard_webhooks::StandardWebhooksSource;
use revokd::sources::{HeaderLookup, Inbound};
use secrecy::SecretString;

/// 32 bytes 0x01..=0x20.
const SECRET: &str = "whsec_AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
const TOLERANCE: u64 = 300;

const NAMES: [&str; 7] = [
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "svix-id",
    "svix-timestamp",
    "svix-signature",
    "x-other",
];

#[derive(Arbitrary, Debug)]
struct Input {
    headers: Vec<(u8, Vec<u8>)>,
    body: Vec<u8>,
    now: i64,
    sign: Option<(String, u32)>,
}

/// Headers with raw byte values, which may be invalid UTF-8 as on the wire.
struct RawHeaders(Vec<(&'static str, Vec<u8>)>);

impl HeaderLookup for RawHeaders {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_slice())
    }
}

fuzz_target!(|input: Input| {
    let source = StandardWebhooksSource::new(vec![SecretString::from(SECRET)], TOLERANCE)
        .expect("valid fuzz config");

    let mut headers = Vec::new();
    let mut now = input.now;
    let mut signed = false;
    if let Some((id, timestamp)) = &input.sign {
        let timestamp = i64::from(*timestamp);
        let signature = standard_webhooks_signature(SECRET, id, timestamp, &input.body);
        headers.push(("svix-id", id.clone().into_bytes()));
        headers.push(("svix-timestamp", timestamp.to_string().into_bytes()));
        headers.push(("svix-signature", signature.into_bytes()));
        now = timestamp;
        // A header value is trimmed and an empty id counts as missing, so
        // only a non-empty id without surrounding whitespace must verify.
        signed = !id.is_empty() && id.trim() == id;
    }
    for (selector, value) in input.headers {
        headers.push((NAMES[usize::from(selector) % NAMES.len()], value));
    }
    let headers = RawHeaders(headers);
    let request = Inbound {
        headers: &headers,
        body: &input.body,
        now,
    };

    let verified = source.verify(&request);
    if signed {
        assert!(verified.is_ok(), "a correctly signed body was rejected");
    }
    if let Ok(events) = source.decode(&request) {
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].types.len(), 1);
        assert!(!events[0].types[0].is_empty());
    }
});
