//! Builds each `[sources.NAME]` table into its verifier.

use ipnet::IpNet;
use secrecy::SecretString;

use super::raw::{self, RawSource};
use super::{Environment, SecretRef, SourceConfig};
use crate::jwks::{JwksCache, JwksLocation};
use crate::sources::appwrite::{AppwriteSource, BasicAuth};
use crate::sources::auth0::{Auth0Settings, Auth0Source};
use crate::sources::body_hmac::{HmacAlgorithm, HmacSettings, HmacSource, SignatureEncoding};
use crate::sources::oidc_backchannel::{OidcBackchannelSettings, OidcBackchannelSource};
use crate::sources::okta::{OktaSettings, OktaSource};
use crate::sources::ssf::{SsfSettings, SsfSource};
use crate::sources::standard_webhooks::StandardWebhooksSource;
use crate::sources::stripe_style::{StripeStyleSettings, StripeStyleSource, TimestampUnit};
use crate::sources::Verifier;

pub(super) fn build_source(
    name: &str,
    raw: RawSource,
    env: &dyn Environment,
    jwks_http: &reqwest::Client,
) -> Result<SourceConfig, String> {
    let key = format!("sources.{name}");
    let in_source = |err: String| format!("{key}: {err}");
    let mut jwks = None;
    let (verifier, allow_ips, secret_count): (Verifier, Vec<IpNet>, usize) = match raw {
        RawSource::Appwrite(settings) => {
            let secrets = resolve_all(&key, &settings.secrets, env)?;
            let count = secrets.len();
            let basic_auth = match settings.basic_auth {
                None => None,
                Some(auth) => Some(BasicAuth {
                    user: resolve_one(&format!("{key}.basic_auth.user"), &auth.user, env)?,
                    password: resolve_one(
                        &format!("{key}.basic_auth.password"),
                        &auth.password,
                        env,
                    )?,
                }),
            };
            let source = AppwriteSource::new(&settings.signed_url, secrets, basic_auth)
                .map_err(in_source)?;
            (Verifier::Appwrite(source), settings.allow_ips, count)
        }
        RawSource::StandardWebhooks(settings) => {
            let secrets = resolve_all(&key, &settings.secrets, env)?;
            let count = secrets.len();
            let mut source = StandardWebhooksSource::new(secrets, settings.tolerance_seconds)
                .map_err(in_source)?;
            if !settings.public_keys.is_empty() {
                let keys = settings
                    .public_keys
                    .iter()
                    .enumerate()
                    .map(|(index, reference)| {
                        resolve_one(&format!("{key}.public_keys[{index}]"), reference, env)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                source = source.with_public_keys(keys).map_err(in_source)?;
            }
            (
                Verifier::StandardWebhooks(source),
                settings.allow_ips,
                count,
            )
        }
        RawSource::Okta(settings) => {
            let secrets = resolve_all(&key, &settings.secrets, env)?;
            let count = secrets.len();
            let source = OktaSource::new(OktaSettings {
                header: settings.header,
                secrets,
            })
            .map_err(in_source)?;
            (Verifier::Okta(source), settings.allow_ips, count)
        }
        RawSource::Auth0(settings) => {
            let secrets = resolve_all(&key, &settings.secrets, env)?;
            let count = secrets.len();
            let source = Auth0Source::new(Auth0Settings { secrets }).map_err(in_source)?;
            (Verifier::Auth0(source), settings.allow_ips, count)
        }
        RawSource::Hmac(settings) => build_hmac(&key, settings, env)?,
        RawSource::StripeStyle(settings) => {
            let secrets = resolve_all(&key, &settings.secrets, env)?;
            let count = secrets.len();
            let timestamp_unit = match settings.timestamp_unit.as_str() {
                "s" => TimestampUnit::Seconds,
                "ms" => TimestampUnit::Millis,
                other => {
                    return Err(format!(
                        "{key}.timestamp_unit: `{other}` is not a unit: use \"s\" (Stripe) or \"ms\" (WorkOS)"
                    ))
                }
            };
            let source = StripeStyleSource::new(StripeStyleSettings {
                header: settings.header,
                timestamp_unit,
                tolerance_seconds: settings.tolerance_seconds,
                secrets,
                type_pointer: settings.type_pointer,
            })
            .map_err(in_source)?;
            (Verifier::StripeStyle(source), settings.allow_ips, count)
        }
        RawSource::OidcBackchannel(settings) => {
            let location = jwks_location(&key, settings.jwks_url, settings.jwks_file)?;
            jwks = Some(JwksCache::new(location, jwks_http.clone()));
            let source = OidcBackchannelSource::new(OidcBackchannelSettings {
                issuer: settings.issuer,
                audience: settings.audience,
                max_age_seconds: settings.max_age_seconds,
            })
            .map_err(in_source)?;
            (Verifier::OidcBackchannel(source), settings.allow_ips, 0)
        }
        RawSource::Ssf(settings) => {
            let location = jwks_location(&key, settings.jwks_url, settings.jwks_file)?;
            jwks = Some(JwksCache::new(location, jwks_http.clone()));
            let authorization = match &settings.authorization {
                None => None,
                Some(reference) => Some(resolve_one(
                    &format!("{key}.authorization"),
                    reference,
                    env,
                )?),
            };
            let count = usize::from(authorization.is_some());
            let source = SsfSource::new(SsfSettings {
                issuer: settings.issuer,
                audience: settings.audience,
                authorization,
            })
            .map_err(in_source)?;
            (Verifier::Ssf(source), settings.allow_ips, count)
        }
    };
    Ok(SourceConfig {
        name: name.to_string(),
        verifier,
        jwks,
        allow_ips,
        secret_count,
    })
}

fn build_hmac(
    key: &str,
    settings: raw::RawHmac,
    env: &dyn Environment,
) -> Result<(Verifier, Vec<IpNet>, usize), String> {
    let secrets = resolve_all(key, &settings.secrets, env)?;
    let count = secrets.len();
    let algorithm = match settings.algorithm.as_str() {
        "sha256" => HmacAlgorithm::Sha256,
        "sha512" => HmacAlgorithm::Sha512,
        other => {
            return Err(format!(
                "{key}.algorithm: `{other}` is not supported: use \"sha256\" or \"sha512\""
            ))
        }
    };
    let encoding = match settings.encoding.as_str() {
        "hex" => SignatureEncoding::Hex,
        "base64" => SignatureEncoding::Base64,
        other => {
            return Err(format!(
                "{key}.encoding: `{other}` is not supported: use \"hex\" or \"base64\""
            ))
        }
    };
    let source = HmacSource::new(HmacSettings {
        header: settings.header,
        prefix: settings.prefix,
        algorithm,
        encoding,
        secrets,
        id_header: settings.id_header,
        type_header: settings.type_header,
        type_pointer: settings.type_pointer,
    })
    .map_err(|err| format!("{key}: {err}"))?;
    Ok((Verifier::Hmac(source), settings.allow_ips, count))
}

fn jwks_location(
    key: &str,
    url: Option<String>,
    file: Option<std::path::PathBuf>,
) -> Result<JwksLocation, String> {
    match (url, file) {
        (Some(url), None) => {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(format!(
                    "{key}.jwks_url: `{url}` is not an http(s) URL: use the issuer's jwks_uri"
                ));
            }
            Ok(JwksLocation::Url(url))
        }
        (None, Some(file)) => Ok(JwksLocation::File(file)),
        (None, None) => Err(format!(
            "{key}: set jwks_url (the issuer's jwks_uri) or jwks_file (a local JWK set)"
        )),
        (Some(_), Some(_)) => Err(format!("{key}: set either jwks_url or jwks_file, not both")),
    }
}

fn resolve_one(
    key: &str,
    reference: &SecretRef,
    env: &dyn Environment,
) -> Result<SecretString, String> {
    reference
        .resolve(env)
        .map_err(|err| format!("{key}: {err}"))
}

fn resolve_all(
    key: &str,
    refs: &[SecretRef],
    env: &dyn Environment,
) -> Result<Vec<SecretString>, String> {
    if refs.is_empty() {
        return Err(format!(
            "{key}.secrets is empty: add at least one, e.g. secrets = [{{ env = \"WEBHOOK_SECRET\" }}]"
        ));
    }
    refs.iter()
        .enumerate()
        .map(|(index, reference)| resolve_one(&format!("{key}.secrets[{index}]"), reference, env))
        .collect()
}
