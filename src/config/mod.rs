//! Configuration: one TOML file, validated as a whole before anything starts.
//!
//! Every error names the key it is about and the fix. Secrets are
//! read from environment variables or files and kept wrapped in `secrecy`
//! types, so `Debug` output shows them redacted.

mod raw;
pub mod secret;
mod source_tables;
mod sources;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use secrecy::SecretString;

use crate::jwks::JwksCache;
use crate::rules::{validate_pointer, Action, Pattern, Rule, RuleSet, UserRef};
use crate::sources::Verifier;
use secret::SecretResolver;
pub use secret::{Environment, ProcessEnv, SecretRef};

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// HTTP worker threads.
    pub workers: usize,
    pub max_body_bytes: usize,
    /// Time allowed to receive a whole request.
    pub request_timeout: Duration,
    /// Time allowed for in-flight work after SIGTERM.
    pub shutdown_grace: Duration,
    /// Proxies whose `X-Forwarded-For` entries are trusted.
    pub trusted_proxies: Vec<IpNet>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    Sqlite(PathBuf),
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub location: StoreLocation,
    /// How long a delivery key is remembered for deduplication.
    pub dedupe_retention: Duration,
    /// SQLite `synchronous = FULL` (the default) survives a power cut;
    /// `NORMAL` only survives a process crash.
    pub sqlite_synchronous_full: bool,
}

#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    pub concurrency_per_target: usize,
    pub max_attempts: u32,
    pub max_age: Duration,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// How long a claimed job stays with its worker before another may take it.
    pub lease: Duration,
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    /// Appwrite API base URL, ending in `/v1`.
    pub endpoint: String,
    pub project: String,
    pub api_key: SecretString,
}

pub struct SourceConfig {
    pub name: String,
    pub verifier: Verifier,
    /// Signing keys of the issuer, for the JWT kinds.
    pub jwks: Option<JwksCache>,
    /// Client address ranges allowed to post; empty allows every address.
    pub allow_ips: Vec<IpNet>,
    /// Number of configured secrets, for `revokd check`.
    pub secret_count: usize,
}

pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub delivery: DeliveryConfig,
    pub targets: BTreeMap<String, Target>,
    pub sources: BTreeMap<String, Arc<SourceConfig>>,
    pub rules: RuleSet,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("server", &self.server)
            .field("store", &self.store)
            .field("delivery", &self.delivery)
            .field("targets", &self.targets)
            .field("sources", &self.sources.keys().collect::<Vec<_>>())
            .field("rules", &self.rules.rules().len())
            .finish()
    }
}

/// A configuration error, with the file it came from.
#[derive(Debug, thiserror::Error)]
#[error("{location}: {message}")]
pub struct ConfigError {
    pub location: String,
    pub message: String,
}

impl Config {
    /// Reads and validates the file at `path`, resolving secrets from the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError {
            location: path.display().to_string(),
            message: format!("cannot read the config file: {err}"),
        })?;
        Config::parse(&text, &ProcessEnv).map_err(|message| ConfigError {
            location: path.display().to_string(),
            message,
        })
    }

    /// Parses and validates TOML text, resolving secrets from `env`.
    pub fn parse(text: &str, env: &dyn Environment) -> Result<Config, String> {
        let raw: raw::RawConfig = serde_path_to_error::deserialize(toml::Deserializer::new(text))
            .map_err(|err| {
            let path = err.path().to_string();
            // `toml::Spanned` reads its value as a field named
            // `$__serde_spanned_private_value`, which is no config key.
            let path = path.split(".$__").next().unwrap_or_default();
            let message = toml_error(text, err.inner());
            // `.` is the path of the document itself, e.g. for a syntax error.
            if path == "." {
                message
            } else {
                format!("{path}: {message}")
            }
        })?;
        let sources = source_tables::parse_sources(text, &raw.sources.0)?;
        build(raw, sources, text, env)
    }
}

/// Formats a TOML error with its line and column but without the excerpt of
/// the file that `toml` adds, because that line may hold a secret written
/// in the file by mistake.
fn toml_error(text: &str, err: &toml::de::Error) -> String {
    let message = err.message().trim_end();
    let Some(span) = err.span() else {
        return format!("TOML parse error: {message}");
    };
    let mut offset = span.start.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let line_start = text[..offset].rfind('\n').map_or(0, |index| index + 1);
    let column = text[line_start..offset].chars().count() + 1;
    format!(
        "TOML parse error at line {}, column {column}: {message}",
        line_of(text, offset)
    )
}

/// Returns the 1-based line number of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let before = &text.as_bytes()[..offset.min(text.len())];
    before.iter().filter(|&&byte| byte == b'\n').count() + 1
}

fn build(
    raw: raw::RawConfig,
    source_tables: BTreeMap<String, source_tables::SourceTable>,
    text: &str,
    env: &dyn Environment,
) -> Result<Config, String> {
    let server = build_server(raw.server)?;
    let store = build_store(raw.store)?;
    let delivery = build_delivery(raw.delivery)?;

    // A secret that cannot be read does not stop the build: `secrets` records
    // it, and `finish` below reports all such secrets in one error.
    let mut secrets = SecretResolver::new(env);
    let mut targets = BTreeMap::new();
    for (name, target) in raw.targets {
        let key = format!("targets.{name}");
        let endpoint = target.endpoint.trim_end_matches('/').to_string();
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(format!(
                "{key}.endpoint: `{endpoint}` is not an http(s) URL: use e.g. https://cloud.appwrite.io/v1"
            ));
        }
        if !endpoint.ends_with("/v1") {
            return Err(format!(
                "{key}.endpoint: `{endpoint}` does not end in /v1: Appwrite's API is under /v1, e.g. https://cloud.appwrite.io/v1"
            ));
        }
        if target.project.is_empty() {
            return Err(format!(
                "{key}.project is empty: set the Appwrite project id"
            ));
        }
        let api_key_line = line_of(text, target.api_key.span().start);
        let api_key_with_line = format!("{key}.api_key (line {api_key_line})");
        let Some(api_key) = secrets.resolve(&api_key_with_line, target.api_key.get_ref()) else {
            continue;
        };
        targets.insert(
            name.clone(),
            Target {
                name,
                endpoint,
                project: target.project,
                api_key,
            },
        );
    }

    // JWKS documents are fetched with their own client: it never follows
    // redirects, and its timeouts are the delivery ones.
    let jwks_http =
        crate::appwrite::http_client(delivery.request_timeout, delivery.connect_timeout)
            .map_err(|err| format!("cannot build the HTTP client for JWKS: {err}"))?;
    let mut sources = BTreeMap::new();
    for (name, table) in source_tables {
        if let Some(built) = sources::build_source(&name, table, &mut secrets, &jwks_http)? {
            sources.insert(name, Arc::new(built));
        }
    }
    secrets.finish()?;

    let mut rules = Vec::new();
    for (index, rule) in raw.rules.into_iter().enumerate() {
        let built = build_rule(index, rule, &sources, &targets)?;
        if rules
            .iter()
            .any(|existing: &Rule| existing.name == built.name)
        {
            return Err(format!(
                "rules[{index}]: the name `{}` is used twice: give each rule its own name",
                built.name
            ));
        }
        rules.push(built);
    }

    Ok(Config {
        server,
        store,
        delivery,
        targets,
        sources,
        rules: RuleSet::new(rules),
    })
}

fn build_server(raw: raw::RawServer) -> Result<ServerConfig, String> {
    let listen: SocketAddr = raw.listen.parse().map_err(|_| {
        format!(
            "server.listen: `{}` is not an address: write host:port, e.g. 0.0.0.0:8080",
            raw.listen
        )
    })?;
    let workers = match raw.workers {
        Some(0) => return Err("server.workers must be at least 1".into()),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(2, |n| n.get()),
    };
    if raw.max_body_bytes == 0 {
        return Err("server.max_body_bytes must be at least 1".into());
    }
    positive("server.request_timeout", raw.request_timeout)?;
    Ok(ServerConfig {
        listen,
        workers,
        max_body_bytes: raw.max_body_bytes,
        request_timeout: raw.request_timeout,
        shutdown_grace: raw.shutdown_grace,
        trusted_proxies: raw.trusted_proxies,
    })
}

fn build_store(raw: raw::RawStore) -> Result<StoreConfig, String> {
    let location = if let Some(path) = raw.url.strip_prefix("sqlite://") {
        if path.is_empty() {
            return Err("store.url: `sqlite://` needs a file path, e.g. sqlite://revokd.db".into());
        }
        StoreLocation::Sqlite(PathBuf::from(path))
    } else if raw.url.starts_with("postgres://") || raw.url.starts_with("postgresql://") {
        // TODO: PostgreSQL store for several replicas.
        return Err(
            "store.url: PostgreSQL is not supported by this version yet: use sqlite://PATH".into(),
        );
    } else {
        return Err(format!(
            "store.url: `{}` is not a store URL: use sqlite://PATH (e.g. sqlite://revokd.db)",
            raw.url
        ));
    };
    let sqlite_synchronous_full = match raw.sqlite_synchronous.as_str() {
        "full" => true,
        "normal" => false,
        other => {
            return Err(format!(
                "store.sqlite_synchronous: `{other}` is not supported: use \"full\" or \"normal\""
            ))
        }
    };
    Ok(StoreConfig {
        location,
        dedupe_retention: raw.dedupe_retention,
        sqlite_synchronous_full,
    })
}

fn build_delivery(raw: raw::RawDelivery) -> Result<DeliveryConfig, String> {
    if raw.concurrency_per_target == 0 {
        return Err("delivery.concurrency_per_target must be at least 1".into());
    }
    if raw.max_attempts == 0 {
        return Err("delivery.max_attempts must be at least 1".into());
    }
    positive("delivery.backoff_base", raw.backoff_base)?;
    positive("delivery.lease", raw.lease)?;
    positive("delivery.request_timeout", raw.request_timeout)?;
    positive("delivery.connect_timeout", raw.connect_timeout)?;
    if raw.backoff_max < raw.backoff_base {
        return Err("delivery.backoff_max must not be shorter than delivery.backoff_base".into());
    }
    if raw.lease <= raw.request_timeout * 3 {
        return Err(format!(
            "delivery.lease ({}) must be longer than three delivery.request_timeout ({}), \
             because one job may make three Appwrite calls",
            humantime::format_duration(raw.lease),
            humantime::format_duration(raw.request_timeout)
        ));
    }
    Ok(DeliveryConfig {
        concurrency_per_target: raw.concurrency_per_target,
        max_attempts: raw.max_attempts,
        max_age: raw.max_age,
        backoff_base: raw.backoff_base,
        backoff_max: raw.backoff_max,
        lease: raw.lease,
        request_timeout: raw.request_timeout,
        connect_timeout: raw.connect_timeout,
    })
}

fn positive(key: &str, value: Duration) -> Result<(), String> {
    if value.is_zero() {
        return Err(format!("{key} must be longer than zero"));
    }
    Ok(())
}

fn build_rule(
    index: usize,
    raw: raw::RawRule,
    sources: &BTreeMap<String, Arc<SourceConfig>>,
    targets: &BTreeMap<String, Target>,
) -> Result<Rule, String> {
    let key = format!("rules[{index}] ({})", raw.name);
    if raw.name.trim().is_empty() {
        return Err(format!(
            "rules[{index}].name is empty: give the rule a name"
        ));
    }
    if !sources.contains_key(&raw.source) {
        return Err(format!(
            "{key}.source: no source named `{}`: define [sources.{}] or use one of: {}",
            raw.source,
            raw.source,
            names(sources.keys())
        ));
    }
    if !targets.contains_key(&raw.target) {
        return Err(format!(
            "{key}.target: no target named `{}`: define [targets.{}] or use one of: {}",
            raw.target,
            raw.target,
            names(targets.keys())
        ));
    }
    let action = Action::parse(&raw.action).ok_or_else(|| {
        format!(
            "{key}.action: `{}` is not an action: use one of {}",
            raw.action,
            Action::NAMES.join(", ")
        )
    })?;
    let event = Pattern::parse(&raw.event).map_err(|err| format!("{key}.event: {err}"))?;
    let except = raw
        .except
        .iter()
        .map(|text| Pattern::parse(text).map_err(|err| format!("{key}.except: {err}")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut when = Vec::new();
    for (pointer, value) in raw.when {
        validate_pointer(&pointer).map_err(|err| format!("{key}.when: {err}"))?;
        let value = serde_json::to_value(value)
            .map_err(|err| format!("{key}.when.\"{pointer}\": cannot compare this value: {err}"))?;
        when.push((pointer, value));
    }
    let user = build_user(&key, raw.user)?;
    if let Some(pointer) = &raw.session {
        validate_pointer(pointer).map_err(|err| format!("{key}.session: {err}"))?;
    }
    match (action, &raw.session) {
        (Action::DeleteSession, None) => {
            return Err(format!(
                "{key}.session: delete_session needs a JSON Pointer to the Appwrite session id"
            ))
        }
        (Action::DeleteSession, Some(_)) | (_, None) => {}
        (_, Some(_)) => {
            return Err(format!(
                "{key}.session: only delete_session uses a session: remove it or change the action"
            ))
        }
    }
    Ok(Rule {
        name: raw.name.into(),
        source: raw.source,
        event,
        except,
        when,
        user,
        session: raw.session,
        action,
        target: raw.target.into(),
        dry_run: raw.dry_run,
    })
}

fn build_user(key: &str, raw: raw::RawUser) -> Result<UserRef, String> {
    if raw.provider.is_some() && raw.identity.is_none() {
        return Err(format!(
            "{key}.user.provider: only an `identity` lookup takes a provider: remove it or use identity"
        ));
    }
    let user = match (raw.id, raw.email, raw.identity) {
        (Some(pointer), None, None) => {
            validate_pointer(&pointer).map_err(|err| format!("{key}.user.id: {err}"))?;
            UserRef::Id(pointer)
        }
        (None, Some(pointer), None) => {
            validate_pointer(&pointer).map_err(|err| format!("{key}.user.email: {err}"))?;
            UserRef::Email(pointer)
        }
        (None, None, Some(pointer)) => {
            validate_pointer(&pointer).map_err(|err| format!("{key}.user.identity: {err}"))?;
            if raw.provider.as_deref() == Some("") {
                return Err(format!(
                    "{key}.user.provider is empty: name the provider or remove it"
                ));
            }
            UserRef::Identity {
                pointer,
                provider: raw.provider,
            }
        }
        (None, None, None) => {
            return Err(format!(
                "{key}.user: say where the user is, e.g. user = {{ id = \"/$id\" }}, \
                 {{ email = \"/email\" }} or {{ identity = \"/sub\" }}"
            ))
        }
        _ => {
            return Err(format!(
                "{key}.user: give exactly one of id, email or identity"
            ))
        }
    };
    Ok(user)
}

fn names<'a>(keys: impl Iterator<Item = &'a String>) -> String {
    let list: Vec<&str> = keys.map(String::as_str).collect();
    if list.is_empty() {
        "(none defined)".to_string()
    } else {
        list.join(", ")
    }
}

#[cfg(test)]
mod tests;
