//! Arbitrary headers and body through the Appwrite verifier and decoder.
//! When `sign` is set the target signs the body itself, so `decode` also runs
//! on the verified path the service takes.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use revokd::senders::appwrite_signature;
use revokd::sources::appwrite::{AppwriteSource, BasicAuth};
use revokd::sources::{HeaderLookup, Inbound};
use secrecy::SecretString;

const URL: &str = "https://hooks.example.com/hooks/appwrite?tenant=a%2Bb";
const SECRET: &str = "fuzz-secret-0123456789abcdef";

const NAMES: [&str; 5] = [
    "x-appwrite-webhook-signature",
    "x-appwrite-webhook-events",
    "authorization",
    "content-type",
    "x-other",
];

#[derive(Arbitrary, Debug)]
struct Input {
    headers: Vec<(u8, Vec<u8>)>,
    body: Vec<u8>,
    sign: bool,
    basic_auth: bool,
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
    let basic_auth = input.basic_auth.then(|| BasicAuth {
        user: SecretString::from("fuzz-user"),
        password: SecretString::from("fuzz-password"),
    });
    let source = AppwriteSource::new(URL, vec![SecretString::from(SECRET)], basic_auth)
        .expect("valid fuzz config");

    let mut headers = Vec::new();
    if input.sign {
        let signature = appwrite_signature(SECRET, URL, &input.body);
        headers.push((NAMES[0], signature.into_bytes()));
    }
    for (selector, value) in input.headers {
        headers.push((NAMES[usize::from(selector) % NAMES.len()], value));
    }
    let headers = RawHeaders(headers);
    let request = Inbound {
        headers: &headers,
        body: &input.body,
        now: 0,
    };

    let verified = source.verify(&request);
    if input.sign && !input.basic_auth {
        assert!(verified.is_ok(), "a correctly signed body was rejected");
    }
    if let Ok(events) = source.decode(&request) {
        assert_eq!(events.len(), 1);
        assert!(!events[0].types.is_empty());
        assert_eq!(events[0].delivery_key.len(), 64);
    }
});
