//! Builds each `[sources.NAME]` table into its verifier.

use std::collections::BTreeMap;

use ipnet::IpNet;
use secrecy::SecretString;

use super::raw::{self, RawSource};
use super::secret::SecretResolver;
use super::source_tables::SourceTable;
use super::{SecretRef, SourceConfig};
use crate::jwks::{JwksCache, JwksLocation};
use crate::sources::appwrite::{AppwriteSource, BasicAuth};
use crate::sources::auth0::{Auth0Settings, Auth0Source};
use crate::sources::body_hmac::{HmacAlgorithm, HmacSettings, HmacSource, SignatureEncoding};
use crate::sources::oidc_backchannel::{OidcBackchannelSettings, OidcBackchannelSource};
use crate::sources::okta::{OktaSettings, OktaSource};
use crate::sources::ssf::{SsfSettings, SsfSource};
use crate::sources::standard_webhooks::StandardWebhooksSource;
use crate::sources::stripe_style::{StripeStyleSettings, StripeStyleSource, TimestampUnit};
use crate::sources::{header_name_setting, json_pointer_setting, Verifier};

/// Names the keys of one source table in messages, with their lines.
struct SourceKeys<'a> {
    name: &'a str,
    line: usize,
    key_lines: &'a BTreeMap<String, usize>,
}

impl SourceKeys<'_> {
    /// Formats `sources.NAME.KEY (line N)`. `key` may go on with an index or
    /// a subkey, e.g. `secrets[1]`, and then takes the line of its first part.
    /// A key that is not written in the table, so has its default, gets no line.
    fn key(&self, key: &str) -> String {
        let first = key.split(['.', '[']).next().unwrap_or(key);
        match self.key_lines.get(first) {
            Some(line) => format!("sources.{}.{key} (line {line})", self.name),
            None => format!("sources.{}.{key}", self.name),
        }
    }

    /// Formats `sources.NAME (line N)`, for an error about the table as a whole.
    ///
    /// NOTE: errors from the verifier constructors, such as an empty `issuer`
    /// or a secret that does not decode, also get the table's line, because
    /// a constructor returns plain text that does not say which key it is about.
    fn table(&self) -> String {
        format!("sources.{} (line {})", self.name, self.line)
    }
}

/// A source's verifier and what it needs besides.
struct Built {
    verifier: Verifier,
    allow_ips: Vec<IpNet>,
    secret_count: usize,
    jwks: Option<JwksLocation>,
}

/// Builds one source. Returns `Ok(None)` when one of its secrets cannot be
/// read, because `secrets` has then recorded why and the caller reports it.
pub(super) fn build_source(
    name: &str,
    table: SourceTable,
    secrets: &mut SecretResolver,
    jwks_http: &reqwest::Client,
) -> Result<Option<SourceConfig>, String> {
    let keys = SourceKeys {
        name,
        line: table.line,
        key_lines: &table.key_lines,
    };
    let built = match table.settings {
        RawSource::Appwrite(settings) => build_appwrite(&keys, settings, secrets)?,
        RawSource::StandardWebhooks(settings) => build_standard_webhooks(&keys, settings, secrets)?,
        RawSource::Okta(settings) => build_okta(&keys, settings, secrets)?,
        RawSource::Auth0(settings) => build_auth0(&keys, settings, secrets)?,
        RawSource::Hmac(settings) => build_hmac(&keys, settings, secrets)?,
        RawSource::StripeStyle(settings) => build_stripe_style(&keys, settings, secrets)?,
        RawSource::OidcBackchannel(settings) => build_oidc_backchannel(&keys, settings)?,
        RawSource::Ssf(settings) => build_ssf(&keys, settings, secrets)?,
    };
    let Some(built) = built else {
        return Ok(None);
    };
    Ok(Some(SourceConfig {
        name: name.to_string(),
        verifier: built.verifier,
        jwks: built
            .jwks
            .map(|location| JwksCache::new(location, jwks_http.clone())),
        allow_ips: built.allow_ips,
        secret_count: built.secret_count,
    }))
}

fn build_appwrite(
    keys: &SourceKeys,
    settings: raw::RawAppwrite,
    secrets: &mut SecretResolver,
) -> Result<Option<Built>, String> {
    let signing = resolve_list(keys, &settings.secrets, secrets)?;
    let basic_auth = match &settings.basic_auth {
        None => Some(None),
        Some(auth) => {
            let user = secrets.resolve(&keys.key("basic_auth.user"), &auth.user);
            let password = secrets.resolve(&keys.key("basic_auth.password"), &auth.password);
            match (user, password) {
                (Some(user), Some(password)) => Some(Some(BasicAuth { user, password })),
                _ => None,
            }
        }
    };
    let (Some(signing), Some(basic_auth)) = (signing, basic_auth) else {
        return Ok(None);
    };
    let count = signing.len();
    let source = AppwriteSource::new(&settings.signed_url, signing, basic_auth)
        .map_err(|err| format!("{}: {err}", keys.table()))?;
    Ok(Some(Built {
        verifier: Verifier::Appwrite(source),
        allow_ips: settings.allow_ips,
        secret_count: count,
        jwks: None,
    }))
}

fn build_standard_webhooks(
    keys: &SourceKeys,
    settings: raw::RawStandardWebhooks,
    secrets: &mut SecretResolver,
) -> Result<Option<Built>, String> {
    let signing = resolve_list(keys, &settings.secrets, secrets)?;
    let public_keys: Vec<Option<SecretString>> = settings
        .public_keys
        .iter()
        .enumerate()
        .map(|(index, reference)| {
            secrets.resolve(&keys.key(&format!("public_keys[{index}]")), reference)
        })
        .collect();
    let public_keys: Option<Vec<SecretString>> = public_keys.into_iter().collect();
    let (Some(signing), Some(public_keys)) = (signing, public_keys) else {
        return Ok(None);
    };
    let count = signing.len();
    let in_table = |err: String| format!("{}: {err}", keys.table());
    let mut source =
        StandardWebhooksSource::new(signing, settings.tolerance_seconds).map_err(in_table)?;
    if !public_keys.is_empty() {
        source = source.with_public_keys(public_keys).map_err(in_table)?;
    }
    Ok(Some(Built {
        verifier: Verifier::StandardWebhooks(source),
        allow_ips: settings.allow_ips,
        secret_count: count,
        jwks: None,
    }))
}

fn build_okta(
    keys: &SourceKeys,
    settings: raw::RawOkta,
    secrets: &mut SecretResolver,
) -> Result<Option<Built>, String> {
    header_name_setting(&keys.key("header"), &settings.header)?;
    let Some(shared) = resolve_list(keys, &settings.secrets, secrets)? else {
        return Ok(None);
    };
    let count = shared.len();
    let source = OktaSource::new(OktaSettings {
        header: settings.header,
        secrets: shared,
    })
    .map_err(|err| format!("{}: {err}", keys.table()))?;
    Ok(Some(Built {
        verifier: Verifier::Okta(source),
        allow_ips: settings.allow_ips,
        secret_count: count,
        jwks: None,
    }))
}

fn build_auth0(
    keys: &SourceKeys,
    settings: raw::RawAuth0,
    secrets: &mut SecretResolver,
) -> Result<Option<Built>, String> {
    let Some(shared) = resolve_list(keys, &settings.secrets, secrets)? else {
        return Ok(None);
    };
    let count = shared.len();
    let source = Auth0Source::new(Auth0Settings { secrets: shared })
        .map_err(|err| format!("{}: {err}", keys.table()))?;
    Ok(Some(Built {
        verifier: Verifier::Auth0(source),
        allow_ips: settings.allow_ips,
        secret_count: count,
        jwks: None,
    }))
}

fn build_hmac(
    keys: &SourceKeys,
    settings: raw::RawHmac,
    secrets: &mut SecretResolver,
) -> Result<Option<Built>, String> {
    let algorithm = match settings.algorithm.as_str() {
        "sha256" => HmacAlgorithm::Sha256,
        "sha512" => HmacAlgorithm::Sha512,
        other => {
            return Err(format!(
                "{}: `{other}` is not supported: use \"sha256\" or \"sha512\"",
                keys.key("algorithm")
            ))
        }
    };
    let encoding = match settings.encoding.as_str() {
        "hex" => SignatureEncoding::Hex,
        "base64" => SignatureEncoding::Base64,
        other => {
            return Err(format!(
                "{}: `{other}` is not supported: use \"hex\" or \"base64\"",
                keys.key("encoding")
            ))
        }
    };
    header_name_setting(&keys.key("header"), &settings.header)?;
    for (key, value) in [
        ("id_header", &settings.id_header),
        ("type_header", &settings.type_header),
    ] {
        if let Some(value) = value {
            header_name_setting(&keys.key(key), value)?;
        }
    }
    if let Some(pointer) = &settings.type_pointer {
        json_pointer_setting(&keys.key("type_pointer"), pointer)?;
    }
    let Some(signing) = resolve_list(keys, &settings.secrets, secrets)? else {
        return Ok(None);
    };
    let count = signing.len();
    let source = HmacSource::new(HmacSettings {
        header: settings.header,
        prefix: settings.prefix,
        algorithm,
        encoding,
        secrets: signing,
        id_header: settings.id_header,
        type_header: settings.type_header,
        type_pointer: settings.type_pointer,
    })
    .map_err(|err| format!("{}: {err}", keys.table()))?;
    Ok(Some(Built {
        verifier: Verifier::Hmac(source),
        allow_ips: settings.allow_ips,
        secret_count: count,
        jwks: None,
    }))
}

fn build_stripe_style(
    keys: &SourceKeys,
    settings: raw::RawStripeStyle,
    secrets: &mut SecretResolver,
) -> Result<Option<Built>, String> {
    let timestamp_unit = match settings.timestamp_unit.as_str() {
        "s" => TimestampUnit::Seconds,
        "ms" => TimestampUnit::Millis,
        other => {
            return Err(format!(
                "{}: `{other}` is not a unit: use \"s\" (Stripe) or \"ms\" (WorkOS)",
                keys.key("timestamp_unit")
            ))
        }
    };
    header_name_setting(&keys.key("header"), &settings.header)?;
    json_pointer_setting(&keys.key("type_pointer"), &settings.type_pointer)?;
    let Some(signing) = resolve_list(keys, &settings.secrets, secrets)? else {
        return Ok(None);
    };
    let count = signing.len();
    let source = StripeStyleSource::new(StripeStyleSettings {
        header: settings.header,
        timestamp_unit,
        tolerance_seconds: settings.tolerance_seconds,
        secrets: signing,
        type_pointer: settings.type_pointer,
    })
    .map_err(|err| format!("{}: {err}", keys.table()))?;
    Ok(Some(Built {
        verifier: Verifier::StripeStyle(source),
        allow_ips: settings.allow_ips,
        secret_count: count,
        jwks: None,
    }))
}

fn build_oidc_backchannel(
    keys: &SourceKeys,
    settings: raw::RawOidcBackchannel,
) -> Result<Option<Built>, String> {
    let location = jwks_location(keys, settings.jwks_url, settings.jwks_file)?;
    let source = OidcBackchannelSource::new(OidcBackchannelSettings {
        issuer: settings.issuer,
        audience: settings.audience,
        max_age_seconds: settings.max_age_seconds,
    })
    .map_err(|err| format!("{}: {err}", keys.table()))?;
    Ok(Some(Built {
        verifier: Verifier::OidcBackchannel(source),
        allow_ips: settings.allow_ips,
        secret_count: 0,
        jwks: Some(location),
    }))
}

fn build_ssf(
    keys: &SourceKeys,
    settings: raw::RawSsf,
    secrets: &mut SecretResolver,
) -> Result<Option<Built>, String> {
    let location = jwks_location(keys, settings.jwks_url, settings.jwks_file)?;
    let authorization = match &settings.authorization {
        None => None,
        Some(reference) => match secrets.resolve(&keys.key("authorization"), reference) {
            Some(value) => Some(value),
            None => return Ok(None),
        },
    };
    let count = usize::from(authorization.is_some());
    let source = SsfSource::new(SsfSettings {
        issuer: settings.issuer,
        audience: settings.audience,
        authorization,
    })
    .map_err(|err| format!("{}: {err}", keys.table()))?;
    Ok(Some(Built {
        verifier: Verifier::Ssf(source),
        allow_ips: settings.allow_ips,
        secret_count: count,
        jwks: Some(location),
    }))
}

fn jwks_location(
    keys: &SourceKeys,
    url: Option<String>,
    file: Option<std::path::PathBuf>,
) -> Result<JwksLocation, String> {
    match (url, file) {
        (Some(url), None) => {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(format!(
                    "{}: `{url}` is not an http(s) URL: use the issuer's jwks_uri",
                    keys.key("jwks_url")
                ));
            }
            Ok(JwksLocation::Url(url))
        }
        (None, Some(file)) => Ok(JwksLocation::File(file)),
        (None, None) => Err(format!(
            "{}: set jwks_url (the issuer's jwks_uri) or jwks_file (a local JWK set)",
            keys.table()
        )),
        (Some(_), Some(_)) => Err(format!(
            "{}: set either jwks_url or jwks_file, not both",
            keys.key("jwks_file")
        )),
    }
}

/// Resolves a source's `secrets` list. An empty list is an error at once.
/// Returns `Ok(None)` when a secret cannot be read, after `secrets` has
/// recorded every failing one.
fn resolve_list(
    keys: &SourceKeys,
    refs: &[SecretRef],
    secrets: &mut SecretResolver,
) -> Result<Option<Vec<SecretString>>, String> {
    if refs.is_empty() {
        return Err(format!(
            "{} is empty: add at least one, e.g. secrets = [{{ env = \"WEBHOOK_SECRET\" }}]",
            keys.key("secrets")
        ));
    }
    let resolved: Vec<Option<SecretString>> = refs
        .iter()
        .enumerate()
        .map(|(index, reference)| {
            secrets.resolve(&keys.key(&format!("secrets[{index}]")), reference)
        })
        .collect();
    Ok(resolved.into_iter().collect())
}
