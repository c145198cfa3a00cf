//! Signature verification of each source kind on 1 KiB and 16 KiB bodies,
//! and one RS256 logout token. Run with `cargo bench --bench verify`.

use std::hint::black_box;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hmac::{Hmac, Mac};
use revokd::senders::{appwrite_signature, standard_webhooks_signature};
use revokd::sources::appwrite::AppwriteSource;
use revokd::sources::auth0::{Auth0Settings, Auth0Source};
use revokd::sources::body_hmac::{HmacAlgorithm, HmacSettings, HmacSource, SignatureEncoding};
use revokd::sources::oidc_backchannel::{OidcBackchannelSettings, OidcBackchannelSource};
use revokd::sources::okta::{OktaSettings, OktaSource};
use revokd::sources::standard_webhooks::StandardWebhooksSource;
use revokd::sources::stripe_style::{StripeStyleSettings, StripeStyleSource, TimestampUnit};
use revokd::sources::Inbound;
use secrecy::SecretString;
use serde_json::{json, Value};
use sha2::Sha256;

const NOW: i64 = 1_764_849_598;
const SIGNED_URL: &str = "https://hooks.example.com/hooks/appwrite";
const APPWRITE_SECRET: &str = "bench-appwrite-webhook-secret-0123456789abcdef";
const WHSEC: &str = "whsec_AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
const HMAC_SECRET: &str = "bench-hmac-secret-0123456789abcdef";
const SHARED_VALUE: &str = "Bearer bench-shared-header-value-0123456789";
const SIZES: [usize; 2] = [1024, 16 * 1024];

fn secret(text: &str) -> SecretString {
    SecretString::from(text.to_owned())
}

type Headers = Vec<(String, String)>;

fn header(name: &str, value: impl Into<String>) -> (String, String) {
    (name.to_owned(), value.into())
}

/// Builds a JSON object with a `type` field, padded to exactly `size` bytes.
fn body(size: usize) -> Vec<u8> {
    let open = r#"{"type":"user.updated","data":{"id":"6650c1f2a7b3e9d4c021"},"pad":""#;
    let pad = size - open.len() - 2;
    let mut text = String::with_capacity(size);
    text.push_str(open);
    text.extend(std::iter::repeat_n('a', pad));
    text.push_str("\"}");
    text.into_bytes()
}

fn hmac_sha256_hex(key: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    for part in parts {
        mac.update(part);
    }
    hex::encode(mac.finalize().into_bytes())
}

/// Measures `verify` on one request, after checking that it verifies.
fn bench_verify(
    c: &mut Criterion,
    group: &str,
    size: usize,
    headers: &Headers,
    body: &[u8],
    verify: impl Fn(&Inbound) -> bool,
) {
    let inbound = Inbound {
        headers,
        body,
        now: NOW,
    };
    assert!(
        verify(&inbound),
        "{group}: the benchmark request must verify"
    );
    let mut group = c.benchmark_group(group);
    group.throughput(Throughput::Bytes(size as u64));
    group.bench_function(BenchmarkId::from_parameter(size), |b| {
        b.iter(|| verify(black_box(&inbound)))
    });
    group.finish();
}

fn hmac_kinds(c: &mut Criterion) {
    let appwrite = AppwriteSource::new(SIGNED_URL, vec![secret(APPWRITE_SECRET)], None).unwrap();
    let standard = StandardWebhooksSource::new(vec![secret(WHSEC)], 300).unwrap();
    let github_style = HmacSource::new(HmacSettings {
        header: "X-Hub-Signature-256".to_owned(),
        prefix: "sha256=".to_owned(),
        algorithm: HmacAlgorithm::Sha256,
        encoding: SignatureEncoding::Hex,
        secrets: vec![secret(HMAC_SECRET)],
        id_header: None,
        type_header: None,
        type_pointer: Some("/type".to_owned()),
    })
    .unwrap();
    let stripe = StripeStyleSource::new(StripeStyleSettings {
        header: "Stripe-Signature".to_owned(),
        timestamp_unit: TimestampUnit::Seconds,
        tolerance_seconds: 300,
        secrets: vec![secret(HMAC_SECRET)],
        type_pointer: "/type".to_owned(),
    })
    .unwrap();

    for size in SIZES {
        let body = body(size);

        let headers = vec![header(
            "X-Appwrite-Webhook-Signature",
            appwrite_signature(APPWRITE_SECRET, SIGNED_URL, &body),
        )];
        bench_verify(c, "verify/appwrite", size, &headers, &body, |req| {
            appwrite.verify(req).is_ok()
        });

        let id = "msg_2a9XkQp4bench";
        let headers = vec![
            header("webhook-id", id),
            header("webhook-timestamp", NOW.to_string()),
            header(
                "webhook-signature",
                standard_webhooks_signature(WHSEC, id, NOW, &body),
            ),
        ];
        bench_verify(
            c,
            "verify/standard-webhooks",
            size,
            &headers,
            &body,
            |req| standard.verify(req).is_ok(),
        );

        let signature = hmac_sha256_hex(HMAC_SECRET.as_bytes(), &[&body]);
        let headers = vec![header("X-Hub-Signature-256", format!("sha256={signature}"))];
        bench_verify(c, "verify/hmac-sha256-hex", size, &headers, &body, |req| {
            github_style.verify(req).is_ok()
        });

        let timestamp = NOW.to_string();
        let signature =
            hmac_sha256_hex(HMAC_SECRET.as_bytes(), &[timestamp.as_bytes(), b".", &body]);
        let headers = vec![header(
            "Stripe-Signature",
            format!("t={timestamp},v1={signature}"),
        )];
        bench_verify(c, "verify/stripe-style", size, &headers, &body, |req| {
            stripe.verify(req).is_ok()
        });
    }
}

/// Okta and Auth0 compare a header with the configured value; the body is
/// not read, so one size is enough.
fn shared_header_kinds(c: &mut Criterion) {
    let okta = OktaSource::new(OktaSettings {
        header: "Authorization".to_owned(),
        secrets: vec![secret(SHARED_VALUE)],
    })
    .unwrap();
    let auth0 = Auth0Source::new(Auth0Settings {
        secrets: vec![secret(SHARED_VALUE)],
    })
    .unwrap();
    let body = body(1024);
    let headers = vec![header("Authorization", SHARED_VALUE)];
    bench_verify(c, "verify/okta", 1024, &headers, &body, |req| {
        okta.verify(req).is_ok()
    });
    bench_verify(c, "verify/auth0", 1024, &headers, &body, |req| {
        auth0.verify(req).is_ok()
    });
}

/// An OpenID back-channel logout token signed with RS256 by the RSA-2048
/// test key in `tests/fixtures/jwt-rsa-test-key.json`.
fn jwt_logout_token(c: &mut Criterion) {
    let fixture: Value =
        serde_json::from_str(include_str!("../tests/fixtures/jwt-rsa-test-key.json")).unwrap();
    let der = STANDARD
        .decode(fixture["private_pkcs1_der_base64"].as_str().unwrap())
        .unwrap();
    let key = jsonwebtoken::EncodingKey::from_rsa_der(&der);
    let mut jwt_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    jwt_header.kid = Some("rsa-test".to_owned());
    jwt_header.typ = Some("logout+jwt".to_owned());
    let claims = json!({
        "iss": "https://id.example.com/realms/main",
        "aud": "revokd-client",
        "iat": NOW,
        "exp": NOW + 120,
        "jti": "bench-logout-token-1",
        "sub": "6650c1f2a7b3e9d4c021",
        "events": { "http://schemas.openid.net/event/backchannel-logout": {} },
    });
    let token = jsonwebtoken::encode(&jwt_header, &claims, &key).unwrap();
    let keys: jsonwebtoken::jwk::JwkSet =
        serde_json::from_value(json!({ "keys": [fixture["jwk"]] })).unwrap();
    let source = OidcBackchannelSource::new(OidcBackchannelSettings {
        issuer: "https://id.example.com/realms/main".to_owned(),
        audience: "revokd-client".to_owned(),
        max_age_seconds: 300,
    })
    .unwrap();
    let body = format!("logout_token={token}").into_bytes();
    let headers: Headers = Vec::new();
    let size = body.len();
    bench_verify(
        c,
        "verify/oidc-backchannel-rs256",
        size,
        &headers,
        &body,
        |req| source.verify_and_decode(req, &keys).is_ok(),
    );
}

criterion_group!(benches, hmac_kinds, shared_header_kinds, jwt_logout_token);
criterion_main!(benches);
