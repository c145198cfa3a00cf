//! Compact JWS checks shared by the `oidc-backchannel` and `ssf` kinds.
//!
//! A token is split into its three parts, each decoded as unpadded base64url
//! with canonical trailing bits, so no two spellings of one part both verify.
//! Its `alg` must be one of the asymmetric algorithms in `allowed_algorithm`:
//! `none` and the HMAC family are rejected before any key is looked at. The
//! signature is checked with a key from the issuer's JWK set whose type, curve
//! and `alg` fit the token's `alg`. RSA keys must have 2048 to 8192 bits, the
//! range `ring` 0.17 verifies. Claims are parsed only after the signature
//! verified. Claim helpers take the clock as an argument.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

/// Seconds a token's `exp` may lie in the past and still be accepted, to allow
/// for clock skew between the sender and this service.
pub const EXPIRY_LEEWAY_SECONDS: i64 = 60;

/// Reason a token was rejected.
///
/// The HTTP layer maps `Invalid` to 400 with the spec's JSON error body
/// (`{"error","error_description"}` for OIDC Back-Channel Logout,
/// `{"err","description"}` for SSF push delivery), and `UnknownKey` to one
/// JWKS refetch and a retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRejection {
    /// The token names a key id not in the key set, or has no `kid` and no key
    /// of its algorithm's type is in the set. The caller may refetch the JWKS
    /// once and retry.
    UnknownKey { kid: Option<String> },
    /// The token is invalid.
    Invalid {
        /// The spec's error code: `invalid_request` for OIDC Back-Channel
        /// Logout, one of RFC 8935's codes for SSF.
        code: &'static str,
        /// Short fixed phrase for logs and counters.
        reason: &'static str,
        /// Text safe to send to the caller: it contains no token content.
        description: String,
    },
}

impl TokenRejection {
    /// Returns the short fixed phrase to log for this rejection.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenRejection::UnknownKey { .. } => "unknown key id",
            TokenRejection::Invalid { reason, .. } => reason,
        }
    }

    /// Turns `UnknownKey` into a final `Invalid` with `code`, for use once a
    /// JWKS refetch did not bring the key. Other rejections are returned as
    /// they are.
    pub fn unknown_key_as_invalid(self, code: &'static str) -> TokenRejection {
        match self {
            TokenRejection::UnknownKey { .. } => TokenRejection::Invalid {
                code,
                reason: "unknown key id",
                description: "the token is signed with a key that is not in the issuer's JWKS"
                    .to_owned(),
            },
            other => other,
        }
    }
}

/// Category of a failed check. Each source kind maps a category to its spec's
/// error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureClass {
    /// The token or a claim is malformed, missing or not acceptable.
    Request,
    /// The algorithm, key or signature is not acceptable.
    Key,
    /// The `iss` claim does not match.
    Issuer,
    /// The `aud` claim does not match.
    Audience,
}

/// One failed check, with fixed texts only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CheckFailure {
    pub class: FailureClass,
    pub reason: &'static str,
    pub description: &'static str,
}

impl CheckFailure {
    pub(crate) const fn new(
        class: FailureClass,
        reason: &'static str,
        description: &'static str,
    ) -> CheckFailure {
        CheckFailure {
            class,
            reason,
            description,
        }
    }

    fn request(reason: &'static str, description: &'static str) -> CheckFailure {
        CheckFailure::new(FailureClass::Request, reason, description)
    }

    fn key(reason: &'static str, description: &'static str) -> CheckFailure {
        CheckFailure::new(FailureClass::Key, reason, description)
    }

    /// Converts the failure into a rejection with the code `code_for` assigns
    /// to its class.
    pub(crate) fn into_rejection(
        self,
        code_for: fn(FailureClass) -> &'static str,
    ) -> TokenRejection {
        TokenRejection::Invalid {
            code: code_for(self.class),
            reason: self.reason,
            description: self.description.to_owned(),
        }
    }
}

/// A failed token check: an unknown key, or any other failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenError {
    UnknownKey { kid: Option<String> },
    Failed(CheckFailure),
}

impl From<CheckFailure> for TokenError {
    fn from(failure: CheckFailure) -> TokenError {
        TokenError::Failed(failure)
    }
}

impl TokenError {
    pub(crate) fn into_rejection(
        self,
        code_for: fn(FailureClass) -> &'static str,
    ) -> TokenRejection {
        match self {
            TokenError::UnknownKey { kid } => TokenRejection::UnknownKey { kid },
            TokenError::Failed(failure) => failure.into_rejection(code_for),
        }
    }
}

/// Maps an `alg` header value to an accepted algorithm: RSA PKCS#1 v1.5 and
/// PSS, ECDSA on P-256 and P-384, and EdDSA. Everything else, including `none`
/// and `HS*`, returns `None`.
pub(crate) fn allowed_algorithm(name: &str) -> Option<Algorithm> {
    let algorithm = match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    };
    Some(algorithm)
}

/// A compact JWS split and decoded, with its signature not yet checked.
#[derive(Debug)]
pub(crate) struct ParsedToken<'a> {
    pub algorithm: Algorithm,
    pub kid: Option<String>,
    pub typ: Option<String>,
    /// `header.payload`, the bytes the signature covers.
    signing_input: &'a str,
    /// The third part, still base64url: the form `jsonwebtoken` verifies.
    signature: &'a str,
    payload: Vec<u8>,
}

/// Splits and decodes a compact JWS and checks its protected header.
///
/// Rejects five-part tokens (JWE), a disallowed `alg`, and any `crit` header,
/// because no JWS extension is supported here.
pub(crate) fn parse(token: &str) -> Result<ParsedToken<'_>, CheckFailure> {
    if token.is_empty() {
        return Err(CheckFailure::request("empty token", "the token is empty"));
    }
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() == 5 {
        return Err(CheckFailure::request(
            "encrypted token",
            "encrypted tokens (JWE) are not supported; send a signed JWT",
        ));
    }
    let [header_part, payload_part, signature_part] = parts[..] else {
        return Err(CheckFailure::request(
            "malformed token",
            "the token is not a compact JWS with three dot-separated parts",
        ));
    };

    let header_bytes = decode_part(header_part)?;
    let header: Map<String, Value> = match serde_json::from_slice(&header_bytes) {
        Ok(Value::Object(header)) => header,
        _ => {
            return Err(CheckFailure::request(
                "malformed header",
                "the token's header is not a JSON object",
            ))
        }
    };

    let algorithm = match header.get("alg") {
        Some(Value::String(name)) => allowed_algorithm(name).ok_or(CheckFailure::key(
            "algorithm not allowed",
            "the token's alg is not accepted; sign with RS256, RS384, RS512, PS256, \
             PS384, PS512, ES256, ES384 or EdDSA",
        ))?,
        Some(_) => {
            return Err(CheckFailure::request(
                "malformed header",
                "the token's alg header is not a string",
            ))
        }
        None => {
            return Err(CheckFailure::request(
                "missing alg",
                "the token's header has no alg",
            ))
        }
    };
    if header.contains_key("crit") {
        return Err(CheckFailure::request(
            "unsupported crit header",
            "the token's header has a crit member, and no JWS extension is supported",
        ));
    }
    let kid = optional_header_string(&header, "kid")?;
    let typ = optional_header_string(&header, "typ")?;

    let payload = decode_part(payload_part)?;
    if decode_part(signature_part)?.is_empty() {
        return Err(CheckFailure::key(
            "missing signature",
            "the token has no signature",
        ));
    }

    let signing_input = &token[..header_part.len() + 1 + payload_part.len()];
    Ok(ParsedToken {
        algorithm,
        kid,
        typ,
        signing_input,
        signature: signature_part,
        payload,
    })
}

fn decode_part(part: &str) -> Result<Vec<u8>, CheckFailure> {
    URL_SAFE_NO_PAD.decode(part).map_err(|_| {
        CheckFailure::request(
            "malformed token",
            "a part of the token is not unpadded base64url",
        )
    })
}

fn optional_header_string(
    header: &Map<String, Value>,
    name: &str,
) -> Result<Option<String>, CheckFailure> {
    match header.get(name) {
        None => Ok(None),
        Some(Value::String(value)) => Ok(Some(value.clone())),
        Some(_) => Err(CheckFailure::request(
            "malformed header",
            "the token's kid or typ header is not a string",
        )),
    }
}

impl ParsedToken<'_> {
    /// Checks the signature with a key from `keys`.
    ///
    /// With a `kid`, only keys of that id are tried, and a `kid` not in the set
    /// is `UnknownKey`. Without one, every key that fits the algorithm is
    /// tried, and a set with no such key is `UnknownKey { kid: None }`.
    pub(crate) fn verify_signature(&self, keys: &JwkSet) -> Result<(), TokenError> {
        let candidates: Vec<&Jwk> = match &self.kid {
            Some(kid) => {
                let named: Vec<&Jwk> = keys
                    .keys
                    .iter()
                    .filter(|jwk| jwk.common.key_id.as_deref() == Some(kid.as_str()))
                    .collect();
                if named.is_empty() {
                    return Err(TokenError::UnknownKey {
                        kid: Some(kid.clone()),
                    });
                }
                let fitting: Vec<&Jwk> = named
                    .into_iter()
                    .filter(|jwk| key_fits(jwk, self.algorithm))
                    .collect();
                if fitting.is_empty() {
                    return Err(CheckFailure::key(
                        "key does not fit algorithm",
                        "the key named by the token's kid is not a signing key for its alg",
                    )
                    .into());
                }
                fitting
            }
            None => {
                let fitting: Vec<&Jwk> = keys
                    .keys
                    .iter()
                    .filter(|jwk| key_fits(jwk, self.algorithm))
                    .collect();
                if fitting.is_empty() {
                    return Err(TokenError::UnknownKey { kid: None });
                }
                fitting
            }
        };

        for jwk in candidates {
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            let verified = jsonwebtoken::crypto::verify(
                self.signature,
                self.signing_input.as_bytes(),
                &key,
                self.algorithm,
            );
            if verified == Ok(true) {
                return Ok(());
            }
        }
        Err(CheckFailure::key(
            "bad signature",
            "the token's signature does not verify with the issuer's keys",
        )
        .into())
    }

    /// Parses the payload as a JSON object. Call only after the signature
    /// verified.
    pub(crate) fn claims(&self) -> Result<Map<String, Value>, CheckFailure> {
        match serde_json::from_slice(&self.payload) {
            Ok(Value::Object(claims)) => Ok(claims),
            _ => Err(CheckFailure::request(
                "malformed claims",
                "the token's payload is not a JSON object",
            )),
        }
    }
}

/// Returns whether `jwk` may verify a signature made with `algorithm`: its
/// `use` (if any) is `sig`, its `key_ops` (if any) include `verify`, its `alg` (if any)
/// equals `algorithm`, and its type and curve fit the algorithm.
pub(crate) fn key_fits(jwk: &Jwk, algorithm: Algorithm) -> bool {
    let use_fits = matches!(
        jwk.common.public_key_use,
        None | Some(PublicKeyUse::Signature)
    );
    let operations_fit = jwk
        .common
        .key_operations
        .as_ref()
        .is_none_or(|operations| operations.contains(&KeyOperations::Verify));
    let algorithm_fits = jwk
        .common
        .key_algorithm
        .is_none_or(|key_algorithm| key_algorithm_is(key_algorithm, algorithm));
    use_fits && operations_fit && algorithm_fits && key_type_fits(&jwk.algorithm, algorithm)
}

fn key_algorithm_is(key_algorithm: KeyAlgorithm, algorithm: Algorithm) -> bool {
    matches!(
        (key_algorithm, algorithm),
        (KeyAlgorithm::RS256, Algorithm::RS256)
            | (KeyAlgorithm::RS384, Algorithm::RS384)
            | (KeyAlgorithm::RS512, Algorithm::RS512)
            | (KeyAlgorithm::PS256, Algorithm::PS256)
            | (KeyAlgorithm::PS384, Algorithm::PS384)
            | (KeyAlgorithm::PS512, Algorithm::PS512)
            | (KeyAlgorithm::ES256, Algorithm::ES256)
            | (KeyAlgorithm::ES384, Algorithm::ES384)
            | (KeyAlgorithm::EdDSA, Algorithm::EdDSA)
    )
}

fn key_type_fits(parameters: &AlgorithmParameters, algorithm: Algorithm) -> bool {
    match parameters {
        AlgorithmParameters::RSA(_) => matches!(
            algorithm,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
        ),
        AlgorithmParameters::EllipticCurve(ec) => matches!(
            (&ec.curve, algorithm),
            (EllipticCurve::P256, Algorithm::ES256) | (EllipticCurve::P384, Algorithm::ES384)
        ),
        AlgorithmParameters::OctetKeyPair(okp) => {
            okp.curve == EllipticCurve::Ed25519 && algorithm == Algorithm::EdDSA
        }
        // Symmetric keys never verify: an `oct` key in the set must not let an
        // HMAC token through.
        AlgorithmParameters::OctetKey(_) => false,
    }
}

/// Reads a JSON number as a NumericDate in whole Unix seconds. Fractions are
/// truncated. Returns `None` for non-numbers and values outside `i64`.
pub(crate) fn numeric_date(value: &Value) -> Option<i64> {
    let Value::Number(number) = value else {
        return None;
    };
    if let Some(seconds) = number.as_i64() {
        return Some(seconds);
    }
    let seconds = number.as_f64()?;
    // `i64::MAX as f64` rounds up to 2^63, so the upper bound is exclusive.
    if seconds.is_finite() && seconds >= i64::MIN as f64 && seconds < i64::MAX as f64 {
        Some(seconds.trunc() as i64)
    } else {
        None
    }
}

/// Checks that `iss` equals `expected` exactly.
pub(crate) fn check_issuer(
    claims: &Map<String, Value>,
    expected: &str,
) -> Result<(), CheckFailure> {
    match claims.get("iss") {
        Some(Value::String(issuer)) if issuer == expected => Ok(()),
        Some(_) => Err(CheckFailure::new(
            FailureClass::Issuer,
            "issuer mismatch",
            "the token's iss does not match the configured issuer",
        )),
        None => Err(CheckFailure::new(
            FailureClass::Issuer,
            "missing issuer",
            "the token has no iss claim",
        )),
    }
}

/// Checks that `aud` is `expected`, or an array that contains it.
pub(crate) fn check_audience(
    claims: &Map<String, Value>,
    expected: &str,
) -> Result<(), CheckFailure> {
    let matches = match claims.get("aud") {
        Some(Value::String(audience)) => audience == expected,
        Some(Value::Array(audiences)) => audiences
            .iter()
            .any(|audience| audience.as_str() == Some(expected)),
        Some(_) => false,
        None => {
            return Err(CheckFailure::new(
                FailureClass::Audience,
                "missing audience",
                "the token has no aud claim",
            ))
        }
    };
    if matches {
        Ok(())
    } else {
        Err(CheckFailure::new(
            FailureClass::Audience,
            "audience mismatch",
            "the token's aud does not contain the configured audience",
        ))
    }
}

/// Checks `exp` when present: it must be a NumericDate no more than
/// [`EXPIRY_LEEWAY_SECONDS`] before `now`.
pub(crate) fn check_not_expired(claims: &Map<String, Value>, now: i64) -> Result<(), CheckFailure> {
    let Some(value) = claims.get("exp") else {
        return Ok(());
    };
    let expires_at = numeric_date(value).ok_or(CheckFailure::request(
        "invalid exp",
        "the token's exp is not a NumericDate",
    ))?;
    if i128::from(now) > i128::from(expires_at) + i128::from(EXPIRY_LEEWAY_SECONDS) {
        return Err(CheckFailure::request(
            "token expired",
            "the token has expired",
        ));
    }
    Ok(())
}

/// Returns `iat`, which must be present and a NumericDate.
pub(crate) fn issued_at(claims: &Map<String, Value>) -> Result<i64, CheckFailure> {
    let value = claims.get("iat").ok_or(CheckFailure::request(
        "missing iat",
        "the token has no iat claim",
    ))?;
    numeric_date(value).ok_or(CheckFailure::request(
        "invalid iat",
        "the token's iat is not a NumericDate",
    ))
}

/// Returns `jti`, which must be a non-empty string.
pub(crate) fn token_id(claims: &Map<String, Value>) -> Result<&str, CheckFailure> {
    match claims.get("jti") {
        Some(Value::String(id)) if !id.is_empty() => Ok(id),
        Some(_) => Err(CheckFailure::request(
            "invalid jti",
            "the token's jti is not a non-empty string",
        )),
        None => Err(CheckFailure::request(
            "missing jti",
            "the token has no jti claim",
        )),
    }
}

/// Returns `events`, which must be a JSON object.
pub(crate) fn events(claims: &Map<String, Value>) -> Result<&Map<String, Value>, CheckFailure> {
    match claims.get("events") {
        Some(Value::Object(events)) => Ok(events),
        Some(_) => Err(CheckFailure::request(
            "invalid events",
            "the token's events claim is not a JSON object",
        )),
        None => Err(CheckFailure::request(
            "missing events",
            "the token has no events claim",
        )),
    }
}

/// Keys and a token builder for the unit tests of the JWT source kinds.
#[cfg(test)]
pub(crate) mod testing {
    use base64::engine::general_purpose::STANDARD;
    use jsonwebtoken::{Algorithm, EncodingKey};
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use serde_json::{json, Value};

    use super::*;

    /// One signing key and the public JWK that verifies it.
    pub struct TestKey {
        pub algorithm: Algorithm,
        pub kid: &'static str,
        pub encoding: EncodingKey,
        pub jwk: Value,
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Generates a P-256 key for ES256.
    pub fn ec_key(kid: &'static str) -> TestKey {
        let random = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &random)
            .expect("P-256 key generation");
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &random)
                .expect("generated key parses");
        // Uncompressed SEC1 point: 0x04, then x and y of 32 bytes each.
        let point = pair.public_key().as_ref();
        TestKey {
            algorithm: Algorithm::ES256,
            kid,
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: json!({
                "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
                "x": b64(&point[1..33]), "y": b64(&point[33..65]),
            }),
        }
    }

    /// Generates an Ed25519 key for EdDSA.
    pub fn ed25519_key(kid: &'static str) -> TestKey {
        let pkcs8 =
            Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("Ed25519 key generation");
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("generated key parses");
        TestKey {
            algorithm: Algorithm::EdDSA,
            kid,
            encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
            jwk: json!({
                "kty": "OKP", "crv": "Ed25519", "kid": kid,
                "x": b64(pair.public_key().as_ref()),
            }),
        }
    }

    /// Loads the RSA-2048 test key from `tests/fixtures/jwt-rsa-test-key.json`,
    /// to sign with `algorithm` (an RS* or PS* one).
    pub fn rsa_key(algorithm: Algorithm) -> TestKey {
        let fixture: Value =
            serde_json::from_str(include_str!("../../tests/fixtures/jwt-rsa-test-key.json"))
                .expect("RSA fixture is JSON");
        let der = STANDARD
            .decode(fixture["private_pkcs1_der_base64"].as_str().unwrap())
            .expect("RSA fixture key is base64");
        TestKey {
            algorithm,
            kid: "rsa-test",
            encoding: EncodingKey::from_rsa_der(&der),
            jwk: fixture["jwk"].clone(),
        }
    }

    /// Builds a JWK set from public JWKs.
    pub fn key_set(jwks: &[&Value]) -> JwkSet {
        serde_json::from_value(json!({ "keys": jwks })).expect("test JWKs parse")
    }

    /// Signs `claims` under `header` exactly as given (no member is added).
    pub fn sign_with_header(key: &TestKey, header: &Value, claims: &Value) -> String {
        let signing_input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature =
            jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key.encoding, key.algorithm)
                .expect("test signing");
        format!("{signing_input}.{signature}")
    }

    /// Signs `claims` with `key`, with `alg`, `kid` and the given `typ`.
    pub fn sign(key: &TestKey, typ: &str, claims: &Value) -> String {
        let header = json!({
            "alg": algorithm_name(key.algorithm),
            "kid": key.kid,
            "typ": typ,
        });
        sign_with_header(key, &header, claims)
    }

    pub fn algorithm_name(algorithm: Algorithm) -> &'static str {
        match algorithm {
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::EdDSA => "EdDSA",
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
        }
    }
}

#[cfg(test)]
mod tests {
    use hmac::{Hmac, Mac};
    use serde_json::json;
    use sha2::Sha256;

    use super::testing::*;
    use super::*;

    const NOW: i64 = 1_764_849_600;

    fn claims(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => panic!("test claims must be an object"),
        }
    }

    fn verify(token: &str, keys: &JwkSet) -> Result<Map<String, Value>, TokenError> {
        let parsed = parse(token)?;
        parsed.verify_signature(keys)?;
        Ok(parsed.claims()?)
    }

    fn failure_reason(result: Result<Map<String, Value>, TokenError>) -> &'static str {
        match result {
            Err(TokenError::Failed(failure)) => failure.reason,
            other => panic!("expected a check failure, got {other:?}"),
        }
    }

    fn body() -> Value {
        json!({ "iss": "https://issuer.example", "jti": "id-1" })
    }

    #[test]
    fn verify_accepts_each_allowed_algorithm() {
        let keys = [
            ec_key("ec"),
            ed25519_key("ed"),
            rsa_key(Algorithm::RS256),
            rsa_key(Algorithm::RS384),
            rsa_key(Algorithm::RS512),
            rsa_key(Algorithm::PS256),
            rsa_key(Algorithm::PS384),
            rsa_key(Algorithm::PS512),
        ];
        let set = key_set(&keys.iter().map(|key| &key.jwk).collect::<Vec<_>>());
        for key in &keys {
            let token = sign(key, "JWT", &body());
            let verified = verify(&token, &set);
            assert_eq!(
                verified.map(|claims| claims["jti"].clone()),
                Ok(json!("id-1")),
                "{}",
                algorithm_name(key.algorithm)
            );
        }
    }

    #[test]
    fn verify_rejects_alg_none() {
        let key = ec_key("ec");
        let set = key_set(&[&key.jwk]);
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","kid":"ec"}"#);
        let payload = URL_SAFE_NO_PAD.encode(body().to_string());
        for token in [
            format!("{header}.{payload}."),
            format!("{header}.{payload}.AAAA"),
        ] {
            assert_eq!(
                failure_reason(verify(&token, &set)),
                "algorithm not allowed"
            );
        }
    }

    #[test]
    fn verify_rejects_hmac_keyed_with_public_key() {
        let key = rsa_key(Algorithm::RS256);
        let set = key_set(&[&key.jwk]);
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","kid":"rsa-test"}"#);
        let payload = URL_SAFE_NO_PAD.encode(body().to_string());
        let signing_input = format!("{header}.{payload}");
        let mut mac = Hmac::<Sha256>::new_from_slice(key.jwk.to_string().as_bytes()).unwrap();
        mac.update(signing_input.as_bytes());
        let token = format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        );
        assert_eq!(
            failure_reason(verify(&token, &set)),
            "algorithm not allowed"
        );
    }

    #[test]
    fn verify_ignores_symmetric_keys() {
        let oct = json!({ "kty": "oct", "k": "c2VjcmV0", "kid": "oct", "alg": "HS256" });
        assert!(!key_fits(
            &serde_json::from_value(oct).unwrap(),
            Algorithm::RS256
        ));
    }

    #[test]
    fn verify_reports_unknown_kid() {
        let signer = ec_key("new");
        let other = ec_key("old");
        let token = sign(&signer, "JWT", &body());
        assert_eq!(
            verify(&token, &key_set(&[&other.jwk])),
            Err(TokenError::UnknownKey {
                kid: Some("new".to_owned())
            })
        );
    }

    #[test]
    fn verify_without_kid_tries_fitting_keys() {
        let signer = ec_key("b");
        let decoy = ec_key("a");
        let rsa = rsa_key(Algorithm::RS256);
        let header = json!({ "alg": "ES256" });
        let token = sign_with_header(&signer, &header, &body());

        let set = key_set(&[&rsa.jwk, &decoy.jwk, &signer.jwk]);
        assert!(verify(&token, &set).is_ok());

        assert_eq!(
            failure_reason(verify(&token, &key_set(&[&rsa.jwk, &decoy.jwk]))),
            "bad signature"
        );
        assert_eq!(
            verify(&token, &key_set(&[&rsa.jwk])),
            Err(TokenError::UnknownKey { kid: None })
        );
    }

    #[test]
    fn verify_rejects_key_type_mismatch() {
        // An RS256 header naming an EC key's kid.
        let rsa = rsa_key(Algorithm::RS256);
        let ec = ec_key("rsa-test");
        let token = sign(&rsa, "JWT", &body());
        assert_eq!(
            failure_reason(verify(&token, &key_set(&[&ec.jwk]))),
            "key does not fit algorithm"
        );
    }

    #[test]
    fn verify_rejects_jwk_alg_mismatch() {
        let rsa = rsa_key(Algorithm::PS256);
        let mut jwk = rsa.jwk.clone();
        jwk["alg"] = json!("RS256");
        let token = sign(&rsa, "JWT", &body());
        assert_eq!(
            failure_reason(verify(&token, &key_set(&[&jwk]))),
            "key does not fit algorithm"
        );

        jwk["alg"] = json!("PS256");
        assert!(verify(&token, &key_set(&[&jwk])).is_ok());
    }

    #[test]
    fn verify_rejects_curve_mismatch() {
        let ec = ec_key("ec");
        let mut jwk = ec.jwk.clone();
        jwk["crv"] = json!("P-384");
        let token = sign(&ec, "JWT", &body());
        assert_eq!(
            failure_reason(verify(&token, &key_set(&[&jwk]))),
            "key does not fit algorithm"
        );
    }

    #[test]
    fn verify_checks_use_and_key_ops() {
        let ec = ec_key("ec");
        let token = sign(&ec, "JWT", &body());
        for (member, value, accepted) in [
            ("use", json!("sig"), true),
            ("use", json!("enc"), false),
            ("key_ops", json!(["verify"]), true),
            ("key_ops", json!(["encrypt"]), false),
        ] {
            let mut jwk = ec.jwk.clone();
            jwk[member] = value.clone();
            let result = verify(&token, &key_set(&[&jwk]));
            assert_eq!(result.is_ok(), accepted, "{member} = {value}");
        }
    }

    #[test]
    fn verify_rejects_signature_of_other_key() {
        let signer = ec_key("ec");
        let published = ec_key("ec");
        let token = sign(&signer, "JWT", &body());
        assert_eq!(
            failure_reason(verify(&token, &key_set(&[&published.jwk]))),
            "bad signature"
        );
    }

    /// Sets the lowest bit of the last character's 6-bit value. An ES256
    /// signature is 64 bytes in 86 characters, so that bit is padding and the
    /// decoded bytes would not change under a lenient decoder.
    fn with_noncanonical_last_character(token: &str) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let last = *token.as_bytes().last().unwrap();
        let index = ALPHABET.iter().position(|&c| c == last).unwrap();
        let replacement = ALPHABET[index | 1] as char;
        format!("{}{replacement}", &token[..token.len() - 1])
    }

    #[test]
    fn parse_rejects_malformed_tokens() {
        let ec = ec_key("ec");
        let token = sign(&ec, "JWT", &body());
        let (header, rest) = token.split_once('.').unwrap();
        let cases = [
            (String::new(), "empty token"),
            ("a.b".to_owned(), "malformed token"),
            ("a.b.c.d".to_owned(), "malformed token"),
            ("a.b.c.d.e".to_owned(), "encrypted token"),
            (format!("{header}=.{rest}"), "malformed token"),
            (format!("{header}.{rest}="), "malformed token"),
            (format!("+{header}.{rest}"), "malformed token"),
            (with_noncanonical_last_character(&token), "malformed token"),
            (
                format!("{}.{rest}", URL_SAFE_NO_PAD.encode("[1]")),
                "malformed header",
            ),
            (
                format!("{}.{rest}", URL_SAFE_NO_PAD.encode(r#"{"kid":"ec"}"#)),
                "missing alg",
            ),
            (
                format!(
                    "{}.{rest}",
                    URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","kid":7}"#)
                ),
                "malformed header",
            ),
            (
                format!(
                    "{}.{rest}",
                    URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","crit":["b64"],"b64":false}"#)
                ),
                "unsupported crit header",
            ),
            (
                format!("{}.", &token[..token.rfind('.').unwrap()]),
                "missing signature",
            ),
        ];
        for (token, reason) in cases {
            assert_eq!(
                parse(&token).map(|_| ()).map_err(|failure| failure.reason),
                Err(reason),
                "token {token:?}"
            );
        }
    }

    #[test]
    fn claims_must_be_object() {
        let ec = ec_key("ec");
        let header = json!({ "alg": "ES256", "kid": "ec" });
        let token = sign_with_header(&ec, &header, &json!(["not", "an", "object"]));
        assert_eq!(
            failure_reason(verify(&token, &key_set(&[&ec.jwk]))),
            "malformed claims"
        );
    }

    #[test]
    fn numeric_date_forms() {
        assert_eq!(numeric_date(&json!(NOW)), Some(NOW));
        assert_eq!(numeric_date(&json!(1.9)), Some(1));
        assert_eq!(numeric_date(&json!(-5)), Some(-5));
        assert_eq!(numeric_date(&json!(u64::MAX)), None);
        assert_eq!(numeric_date(&json!(1e300)), None);
        assert_eq!(numeric_date(&json!("1764849600")), None);
        assert_eq!(numeric_date(&Value::Null), None);
    }

    #[test]
    fn issuer_check() {
        let expected = "https://issuer.example";
        assert!(check_issuer(&claims(json!({ "iss": expected })), expected).is_ok());
        for (value, reason) in [
            (
                json!({ "iss": "https://issuer.example/" }),
                "issuer mismatch",
            ),
            (
                json!({ "iss": ["https://issuer.example"] }),
                "issuer mismatch",
            ),
            (json!({}), "missing issuer"),
        ] {
            let failure = check_issuer(&claims(value), expected).unwrap_err();
            assert_eq!(failure.reason, reason);
            assert_eq!(failure.class, FailureClass::Issuer);
        }
    }

    #[test]
    fn audience_check() {
        let expected = "client-1";
        for accepted in [
            json!({ "aud": "client-1" }),
            json!({ "aud": ["other", "client-1"] }),
        ] {
            assert!(check_audience(&claims(accepted), expected).is_ok());
        }
        for (value, reason) in [
            (json!({ "aud": "client-2" }), "audience mismatch"),
            (json!({ "aud": [] }), "audience mismatch"),
            (json!({ "aud": [["client-1"]] }), "audience mismatch"),
            (json!({ "aud": 1 }), "audience mismatch"),
            (json!({}), "missing audience"),
        ] {
            let failure = check_audience(&claims(value), expected).unwrap_err();
            assert_eq!(failure.reason, reason);
            assert_eq!(failure.class, FailureClass::Audience);
        }
    }

    #[test]
    fn expiry_check_with_leeway() {
        let check = |exp: Value| check_not_expired(&claims(json!({ "exp": exp })), NOW);
        assert!(check_not_expired(&claims(json!({})), NOW).is_ok());
        assert!(check(json!(NOW + 1)).is_ok());
        assert!(check(json!(NOW - EXPIRY_LEEWAY_SECONDS)).is_ok());
        assert_eq!(
            check(json!(NOW - EXPIRY_LEEWAY_SECONDS - 1))
                .unwrap_err()
                .reason,
            "token expired"
        );
        assert_eq!(check(json!("soon")).unwrap_err().reason, "invalid exp");
        assert!(check(json!(i64::MIN)).is_err());
    }

    #[test]
    fn issued_at_required() {
        assert_eq!(issued_at(&claims(json!({ "iat": NOW }))), Ok(NOW));
        assert_eq!(
            issued_at(&claims(json!({}))).unwrap_err().reason,
            "missing iat"
        );
        assert_eq!(
            issued_at(&claims(json!({ "iat": null })))
                .unwrap_err()
                .reason,
            "invalid iat"
        );
    }

    #[test]
    fn token_id_required() {
        assert_eq!(token_id(&claims(json!({ "jti": "a" }))), Ok("a"));
        for (value, reason) in [
            (json!({}), "missing jti"),
            (json!({ "jti": "" }), "invalid jti"),
            (json!({ "jti": 5 }), "invalid jti"),
        ] {
            assert_eq!(token_id(&claims(value)).unwrap_err().reason, reason);
        }
    }

    #[test]
    fn events_must_be_object() {
        assert!(events(&claims(json!({ "events": {} }))).is_ok());
        assert_eq!(
            events(&claims(json!({}))).unwrap_err().reason,
            "missing events"
        );
        assert_eq!(
            events(&claims(json!({ "events": ["x"] })))
                .unwrap_err()
                .reason,
            "invalid events"
        );
    }

    #[test]
    fn unknown_key_as_invalid_keeps_other_rejections() {
        let unknown = TokenRejection::UnknownKey {
            kid: Some("k".to_owned()),
        };
        let TokenRejection::Invalid { code, reason, .. } =
            unknown.unknown_key_as_invalid("invalid_key")
        else {
            panic!("expected Invalid");
        };
        assert_eq!(code, "invalid_key");
        assert_eq!(reason, "unknown key id");

        let invalid = TokenRejection::Invalid {
            code: "invalid_issuer",
            reason: "issuer mismatch",
            description: String::new(),
        };
        assert_eq!(
            invalid.clone().unknown_key_as_invalid("invalid_key"),
            invalid
        );
    }
}
