//! One enum over every source kind, so the HTTP layer treats them alike.

use jsonwebtoken::jwk::JwkSet;

use super::jwt::TokenRejection;
use super::{
    appwrite, auth0, body_hmac, oidc_backchannel, okta, ssf, standard_webhooks, stripe_style,
    DecodedEvent, Inbound, Rejection,
};

/// A configured source's verifier and decoder, one variant per kind.
pub enum Verifier {
    Appwrite(appwrite::AppwriteSource),
    StandardWebhooks(standard_webhooks::StandardWebhooksSource),
    Okta(okta::OktaSource),
    Auth0(auth0::Auth0Source),
    Hmac(body_hmac::HmacSource),
    StripeStyle(stripe_style::StripeStyleSource),
    OidcBackchannel(oidc_backchannel::OidcBackchannelSource),
    Ssf(ssf::SsfSource),
}

/// The reason a request was rejected, in the terms of its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceError {
    /// A shared-secret or HMAC kind rejected it.
    Rejected(Rejection),
    /// A JWT kind rejected the token.
    Token(TokenRejection),
}

impl Verifier {
    /// Returns the kind's name as written in the config.
    pub fn kind(&self) -> &'static str {
        match self {
            Verifier::Appwrite(_) => "appwrite",
            Verifier::StandardWebhooks(_) => "standard-webhooks",
            Verifier::Okta(_) => "okta",
            Verifier::Auth0(_) => "auth0",
            Verifier::Hmac(_) => "hmac",
            Verifier::StripeStyle(_) => "stripe-style",
            Verifier::OidcBackchannel(_) => "oidc-backchannel",
            Verifier::Ssf(_) => "ssf",
        }
    }

    /// Returns whether requests carry a JWT checked against the issuer's key set.
    pub fn needs_keys(&self) -> bool {
        matches!(self, Verifier::OidcBackchannel(_) | Verifier::Ssf(_))
    }

    /// Returns whether the kind takes a body of this `Content-Type`. Parameters such
    /// as `charset` are ignored, and a missing header is taken as the kind's
    /// own type.
    pub fn accepts_content_type(&self, content_type: Option<&str>) -> bool {
        let Some(value) = content_type else {
            return true;
        };
        let essence = value.split(';').next().unwrap_or("").trim();
        match self {
            Verifier::OidcBackchannel(_) => {
                essence.eq_ignore_ascii_case("application/x-www-form-urlencoded")
            }
            Verifier::Ssf(_) => essence.eq_ignore_ascii_case("application/secevent+jwt"),
            _ => is_json_media_type(value),
        }
    }

    /// Runs the checks that need no key set: for `ssf`, the stream's
    /// `Authorization` value. Other kinds pass. A request that fails here
    /// never causes a JWKS fetch.
    pub fn authenticate_before_keys(&self, request: &Inbound) -> Result<(), SourceError> {
        match self {
            Verifier::Ssf(source) => source.authenticate(request).map_err(SourceError::Token),
            _ => Ok(()),
        }
    }

    /// Authenticates the request on its raw bytes, then decodes its events.
    /// Nothing is parsed before the authentication. `keys` is the issuer's key
    /// set for the JWT kinds and is ignored by the others.
    pub fn verify_and_decode(
        &self,
        request: &Inbound,
        keys: Option<&JwkSet>,
    ) -> Result<Vec<DecodedEvent>, SourceError> {
        let rejected = SourceError::Rejected;
        match self {
            Verifier::Appwrite(source) => {
                source.verify(request).map_err(rejected)?;
                source.decode(request).map_err(rejected)
            }
            Verifier::StandardWebhooks(source) => {
                source.verify(request).map_err(rejected)?;
                source.decode(request).map_err(rejected)
            }
            Verifier::Okta(source) => {
                source.verify(request).map_err(rejected)?;
                source.decode(request).map_err(rejected)
            }
            Verifier::Auth0(source) => {
                source.verify(request).map_err(rejected)?;
                source.decode(request).map_err(rejected)
            }
            Verifier::Hmac(source) => {
                source.verify(request).map_err(rejected)?;
                source.decode(request).map_err(rejected)
            }
            Verifier::StripeStyle(source) => {
                source.verify(request).map_err(rejected)?;
                source.decode(request).map_err(rejected)
            }
            Verifier::OidcBackchannel(source) => source
                .verify_and_decode(request, keys.unwrap_or(&EMPTY_KEYS))
                .map_err(SourceError::Token),
            Verifier::Ssf(source) => source
                .verify_and_decode(request, keys.unwrap_or(&EMPTY_KEYS))
                .map_err(SourceError::Token),
        }
    }
}

/// The key set used when a JWT kind is called without one: nothing verifies.
static EMPTY_KEYS: JwkSet = JwkSet { keys: Vec::new() };

/// `application/json` or any `…+json` type, with any parameters.
pub fn is_json_media_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json")
            || subtype.len() > 5 && subtype[subtype.len() - 5..].eq_ignore_ascii_case("+json"))
}

#[cfg(test)]
mod media_type_tests {
    use super::is_json_media_type;

    #[test]
    fn json_media_types() {
        assert!(is_json_media_type("application/json"));
        assert!(is_json_media_type("application/json; charset=utf-8"));
        assert!(is_json_media_type("Application/JSON"));
        assert!(is_json_media_type("application/cloudevents+json"));
        assert!(!is_json_media_type("text/plain"));
        assert!(!is_json_media_type("application/x-www-form-urlencoded"));
        assert!(!is_json_media_type("application/+json"));
        assert!(!is_json_media_type("json"));
    }
}
