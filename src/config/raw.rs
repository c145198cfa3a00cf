//! The config file's shape, with every default. Unknown keys are rejected.
//!
//! Source tables are read in two passes: [`RawSourceHeader`] takes only
//! `kind`, and `source_tables` then reads the settings of that kind.

use std::collections::BTreeMap;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use super::secret::SecretRef;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub delivery: RawDelivery,
    #[serde(default)]
    pub targets: BTreeMap<String, RawTarget>,
    #[serde(default)]
    pub sources: BTreeMap<String, Spanned<RawSourceHeader>>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    pub listen: String,
    pub workers: Option<usize>,
    pub max_body_bytes: usize,
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    pub trusted_proxies: Vec<IpNet>,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: "0.0.0.0:8080".into(),
            workers: None,
            max_body_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(30),
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStore {
    pub url: String,
    #[serde(with = "humantime_serde")]
    pub dedupe_retention: Duration,
    pub sqlite_synchronous: String,
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore {
            url: "sqlite://revokd.db".into(),
            dedupe_retention: Duration::from_secs(7 * 24 * 3600),
            sqlite_synchronous: "full".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDelivery {
    pub concurrency_per_target: usize,
    pub max_attempts: u32,
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_base: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
}

impl Default for RawDelivery {
    fn default() -> Self {
        RawDelivery {
            concurrency_per_target: 8,
            max_attempts: 12,
            max_age: Duration::from_secs(24 * 3600),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(600),
            lease: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub endpoint: String,
    pub project: String,
    pub api_key: Spanned<SecretRef>,
}

/// The `kind` of a `[sources.NAME]` table. Its other keys are read later,
/// as the settings struct of that kind.
#[derive(Debug, Deserialize)]
pub struct RawSourceHeader {
    pub kind: SourceKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SourceKind {
    #[serde(rename = "appwrite")]
    Appwrite,
    #[serde(rename = "standard-webhooks")]
    StandardWebhooks,
    #[serde(rename = "okta")]
    Okta,
    #[serde(rename = "auth0")]
    Auth0,
    #[serde(rename = "hmac")]
    Hmac,
    #[serde(rename = "stripe-style")]
    StripeStyle,
    #[serde(rename = "oidc-backchannel")]
    OidcBackchannel,
    #[serde(rename = "ssf")]
    Ssf,
}

/// The settings of one source, by kind.
#[derive(Debug)]
pub enum RawSource {
    Appwrite(RawAppwrite),
    StandardWebhooks(RawStandardWebhooks),
    Okta(RawOkta),
    Auth0(RawAuth0),
    Hmac(RawHmac),
    StripeStyle(RawStripeStyle),
    OidcBackchannel(RawOidcBackchannel),
    Ssf(RawSsf),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOkta {
    /// The header Okta sends the shared value in.
    #[serde(default = "default_authorization_header")]
    pub header: String,
    pub secrets: Vec<SecretRef>,
    #[serde(default)]
    pub allow_ips: Vec<IpNet>,
}

fn default_authorization_header() -> String {
    "Authorization".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth0 {
    pub secrets: Vec<SecretRef>,
    #[serde(default)]
    pub allow_ips: Vec<IpNet>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHmac {
    pub header: String,
    #[serde(default)]
    pub prefix: String,
    #[serde(default = "default_hmac_algorithm")]
    pub algorithm: String,
    #[serde(default = "default_hmac_encoding")]
    pub encoding: String,
    pub secrets: Vec<SecretRef>,
    pub id_header: Option<String>,
    pub type_header: Option<String>,
    pub type_pointer: Option<String>,
    #[serde(default)]
    pub allow_ips: Vec<IpNet>,
}

fn default_hmac_algorithm() -> String {
    "sha256".into()
}

fn default_hmac_encoding() -> String {
    "hex".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStripeStyle {
    pub header: String,
    #[serde(default = "default_timestamp_unit")]
    pub timestamp_unit: String,
    #[serde(default = "default_tolerance")]
    pub tolerance_seconds: u64,
    pub secrets: Vec<SecretRef>,
    #[serde(default = "default_type_pointer")]
    pub type_pointer: String,
    #[serde(default)]
    pub allow_ips: Vec<IpNet>,
}

fn default_timestamp_unit() -> String {
    "s".into()
}

fn default_type_pointer() -> String {
    "/type".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOidcBackchannel {
    pub issuer: String,
    pub audience: String,
    pub jwks_url: Option<String>,
    pub jwks_file: Option<std::path::PathBuf>,
    #[serde(default = "default_tolerance")]
    pub max_age_seconds: u64,
    #[serde(default)]
    pub allow_ips: Vec<IpNet>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSsf {
    pub issuer: String,
    pub audience: String,
    pub jwks_url: Option<String>,
    pub jwks_file: Option<std::path::PathBuf>,
    /// The whole `Authorization` header value the transmitter must send.
    pub authorization: Option<SecretRef>,
    #[serde(default)]
    pub allow_ips: Vec<IpNet>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAppwrite {
    /// The webhook URL exactly as entered in Appwrite.
    pub signed_url: String,
    pub secrets: Vec<SecretRef>,
    pub basic_auth: Option<RawBasicAuth>,
    #[serde(default)]
    pub allow_ips: Vec<IpNet>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBasicAuth {
    pub user: SecretRef,
    pub password: SecretRef,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStandardWebhooks {
    pub secrets: Vec<SecretRef>,
    #[serde(default = "default_tolerance")]
    pub tolerance_seconds: u64,
    #[serde(default)]
    pub public_keys: Vec<SecretRef>,
    #[serde(default)]
    pub allow_ips: Vec<IpNet>,
}

fn default_tolerance() -> u64 {
    300
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: String,
    pub source: String,
    pub event: String,
    #[serde(default)]
    pub except: Vec<String>,
    #[serde(default)]
    pub when: BTreeMap<String, toml::Value>,
    pub user: RawUser,
    pub session: Option<String>,
    pub action: String,
    pub target: String,
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    pub id: Option<String>,
    pub email: Option<String>,
    pub identity: Option<String>,
    /// Limits an `identity` lookup to one OAuth provider, e.g. "oidc".
    pub provider: Option<String>,
}
