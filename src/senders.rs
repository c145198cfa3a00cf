//! Signs requests the way each sender does, for the demo, tests and load tools.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;

/// Appwrite's `X-Appwrite-Webhook-Signature`: base64 HMAC-SHA1 keyed with the
/// webhook's key text, over the configured URL followed by the body.
pub fn appwrite_signature(key: &str, signed_url: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(key.as_bytes()).expect("HMAC takes any key length");
    mac.update(signed_url.as_bytes());
    mac.update(body);
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Computes a Standard Webhooks `v1,<base64>` signature: HMAC-SHA256 keyed with the
/// base64-decoded secret (after `whsec_`), over `id.timestamp.body`.
///
/// Panics if the secret is not base64: callers pass their own test secrets.
pub fn standard_webhooks_signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = STANDARD.decode(encoded).expect("secret is base64");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// Builds a compact JWS signed with Ed25519 (`alg` `EdDSA`), as an identity
/// provider signs a logout token or a Security Event Token.
pub fn ed25519_jwt(seed: &[u8; 32], kid: &str, typ: &str, claims: &serde_json::Value) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use ed25519_dalek::Signer;

    let header = serde_json::json!({ "alg": "EdDSA", "kid": kid, "typ": typ });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let key = ed25519_dalek::SigningKey::from_bytes(seed);
    let signature = key.sign(signing_input.as_bytes());
    format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.to_bytes())
    )
}

/// Returns the public JWK of the Ed25519 key made from `seed`, for a JWK set.
pub fn ed25519_jwk(seed: &[u8; 32], kid: &str) -> serde_json::Value {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    let key = ed25519_dalek::SigningKey::from_bytes(seed);
    serde_json::json!({
        "kty": "OKP",
        "crv": "Ed25519",
        "x": URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes()),
        "kid": kid,
        "alg": "EdDSA",
        "use": "sig",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_standard_webhooks_vector() {
        let body = br#"{"test": 2432232314}"#;
        let signature = standard_webhooks_signature(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            body,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn appwrite_documented_vector() {
        let signature = appwrite_signature(
            "test-signing-key-for-docs-only",
            "https://hooks.example.com/appwrite/webhook",
            br#"{"$id":"6650c1f2a7b3e9d4c021","status":false}"#,
        );
        assert_eq!(signature, "REneW/8dU3t4+JsPj7L7T5zfFho=");
    }
}
