//! The config file's shape, with every default. Unknown keys are rejected.
//!
//! Source tables are read in two passes: [`SourceKinds`] takes only each
//! `kind`, and `source_tables` then reads the settings of that kind.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use ipnet::IpNet;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

use super::secret::{self, SecretRef};

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
    pub sources: SourceKinds,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Appwrite,
    StandardWebhooks,
    Okta,
    Auth0,
    Hmac,
    StripeStyle,
    OidcBackchannel,
    Ssf,
}

/// Each source kind with the name a `kind` key gives it.
const KIND_NAMES: [(&str, SourceKind); 8] = [
    ("appwrite", SourceKind::Appwrite),
    ("standard-webhooks", SourceKind::StandardWebhooks),
    ("okta", SourceKind::Okta),
    ("auth0", SourceKind::Auth0),
    ("hmac", SourceKind::Hmac),
    ("stripe-style", SourceKind::StripeStyle),
    ("oidc-backchannel", SourceKind::OidcBackchannel),
    ("ssf", SourceKind::Ssf),
];

/// Formats the kind names as "`appwrite`, `standard-webhooks`, …".
fn kind_list() -> String {
    let names: Vec<String> = KIND_NAMES
        .iter()
        .map(|(name, _)| format!("`{name}`"))
        .collect();
    names.join(", ")
}

/// The `kind` of every `[sources.NAME]` table, by source name. The other
/// keys of each table are read later, as the settings struct of its kind.
///
/// It is written by hand because a derived struct would also accept an
/// array (`[[sources.NAME]]`) and then report "unknown variant `kind`".
#[derive(Debug, Default)]
pub struct SourceKinds(pub BTreeMap<String, SourceKind>);

impl<'de> Deserialize<'de> for SourceKinds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(SourceKindsVisitor)
    }
}

struct SourceKindsVisitor;

impl<'de> Visitor<'de> for SourceKindsVisitor {
    type Value = SourceKinds;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a table of sources, one [sources.NAME] table each")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SourceKinds, A::Error> {
        let mut kinds = BTreeMap::new();
        while let Some(name) = map.next_key::<String>()? {
            let kind = map.next_value_seed(TableKind { source: &name })?;
            kinds.insert(name, kind);
        }
        Ok(SourceKinds(kinds))
    }
}

/// Reads the `kind` key of the table of source `source` and skips the rest.
struct TableKind<'a> {
    source: &'a str,
}

impl<'de> DeserializeSeed<'de> for TableKind<'_> {
    type Value = SourceKind;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<SourceKind, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TableKind<'_> {
    type Value = SourceKind;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "a table for sources.{}, written [sources.{}]",
            self.source, self.source
        )
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SourceKind, A::Error> {
        let mut kind = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == "kind" {
                kind = Some(map.next_value_seed(KindValue)?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        kind.ok_or_else(|| {
            de::Error::custom(format!(
                "missing key `kind`: set it to one of {}",
                kind_list()
            ))
        })
    }
}

/// Reads the value of `sources.NAME.kind`. The error path that
/// `serde_path_to_error` adds names the source.
struct KindValue;

impl<'de> DeserializeSeed<'de> for KindValue {
    type Value = SourceKind;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<SourceKind, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KindValue {
    type Value = SourceKind;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a string, one of {}", kind_list())
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<SourceKind, E> {
        KIND_NAMES
            .iter()
            .find(|(name, _)| *name == value)
            .map(|(_, kind)| *kind)
            .ok_or_else(|| {
                E::custom(format!(
                    "`{value}` is not a source kind: use one of {}",
                    kind_list()
                ))
            })
    }
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
    #[serde(deserialize_with = "secret::secret_list")]
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
    #[serde(deserialize_with = "secret::secret_list")]
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
    #[serde(deserialize_with = "secret::secret_list")]
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
    #[serde(deserialize_with = "secret::secret_list")]
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
    #[serde(deserialize_with = "secret::secret_list")]
    pub secrets: Vec<SecretRef>,
    #[serde(default, deserialize_with = "basic_auth")]
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

/// Reads `basic_auth`. A string gets an error that does not repeat it,
/// because it may be the credentials themselves.
fn basic_auth<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<RawBasicAuth>, D::Error> {
    deserializer.deserialize_any(BasicAuthVisitor)
}

struct BasicAuthVisitor;

impl<'de> Visitor<'de> for BasicAuthVisitor {
    type Value = Option<RawBasicAuth>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("{ user = { env = \"VARIABLE\" }, password = { env = \"VARIABLE\" } }")
    }

    fn visit_str<E: de::Error>(self, _value: &str) -> Result<Self::Value, E> {
        Err(E::custom(
            "basic_auth: credentials are not read from the config file: write \
             basic_auth = { user = { env = \"VARIABLE\" }, password = { env = \"VARIABLE\" } }",
        ))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        RawBasicAuth::deserialize(de::value::MapAccessDeserializer::new(map)).map(Some)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStandardWebhooks {
    #[serde(deserialize_with = "secret::secret_list")]
    pub secrets: Vec<SecretRef>,
    #[serde(default = "default_tolerance")]
    pub tolerance_seconds: u64,
    #[serde(default, deserialize_with = "secret::secret_list")]
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
