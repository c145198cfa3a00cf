//! `revokd check`: print the config as understood and, with `--targets`, test
//! each Appwrite target with calls that cannot change anything.

use crate::appwrite::{http_client, AppwriteClient, CallError, WebhookSummary};
use crate::config::{Config, StoreLocation};
use crate::rules::{Rule, UserRef};
use crate::sources::Verifier;

/// Prints the sources, targets and rules as revokd understood them.
pub fn print_config(config: &Config) {
    println!("config is valid");
    let StoreLocation::Sqlite(path) = &config.store.location;
    println!(
        "listen {} · store sqlite {} · dedupe retention {}",
        config.server.listen,
        path.display(),
        humantime::format_duration(config.store.dedupe_retention)
    );
    println!("sources:");
    for source in config.sources.values() {
        let allow = if source.allow_ips.is_empty() {
            "any address".to_string()
        } else {
            source
                .allow_ips
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "  {} (kind {}, {} secret(s), from {allow})",
            source.name,
            source.verifier.kind(),
            source.secret_count
        );
    }
    println!("targets:");
    for target in config.targets.values() {
        println!(
            "  {} → {} project {}",
            target.name, target.endpoint, target.project
        );
    }
    println!("rules:");
    for rule in config.rules.rules() {
        println!("  {}", describe_rule(rule));
    }
}

/// Describes a rule in one line, e.g. "logout: on appwrite events users.*.update.password,
/// take the user id from /$id, delete_sessions on main".
pub fn describe_rule(rule: &Rule) -> String {
    let mut text = format!("{}: on {} events {}", rule.name, rule.source, rule.event);
    if !rule.except.is_empty() {
        let except: Vec<&str> = rule.except.iter().map(|p| p.as_str()).collect();
        text.push_str(&format!(" except {}", except.join(", ")));
    }
    for (pointer, value) in &rule.when {
        text.push_str(&format!(" when {pointer} = {value}"));
    }
    match &rule.user {
        UserRef::Id(pointer) => text.push_str(&format!(", take the user id from {pointer}")),
        UserRef::Email(pointer) => {
            text.push_str(&format!(", find the user by the email at {pointer}"))
        }
        UserRef::Identity { pointer, provider } => {
            text.push_str(&format!(
                ", find the user by the provider user id at {pointer}"
            ));
            if let Some(provider) = provider {
                text.push_str(&format!(" ({provider} identities only)"));
            }
        }
    }
    if let Some(session) = &rule.session {
        text.push_str(&format!(" and the session id from {session}"));
    }
    text.push_str(&format!(", {} on {}", rule.action.as_str(), rule.target));
    if rule.dry_run {
        text.push_str(" (dry run: no call)");
    }
    text
}

/// Calls each target on a random user id that cannot exist. Appwrite checks
/// the key's scopes before looking the user up, so 404 `user_not_found` shows
/// the scope is held and 401 `general_unauthorized_scope` shows it is missing.
/// Returns whether every target passed.
pub async fn probe_targets(config: &Config) -> bool {
    let http = match http_client(
        config.delivery.request_timeout,
        config.delivery.connect_timeout,
    ) {
        Ok(http) => http,
        Err(err) => {
            println!("cannot build the HTTP client: {err}");
            return false;
        }
    };
    let mut all_ok = true;
    for target in config.targets.values() {
        println!("target {} ({}):", target.name, target.endpoint);
        let client = AppwriteClient::new(
            http.clone(),
            &target.endpoint,
            &target.project,
            target.api_key.clone(),
        );
        let probe_user = format!(
            "revokdcheck{}",
            &ulid::Ulid::new().to_string().to_lowercase()[..20]
        );
        let changes_status = config
            .rules
            .rules()
            .iter()
            .any(|rule| *rule.target == *target.name && rule.action.changes_status());

        let read = client.list_sessions(&probe_user).await.map(drop);
        all_ok &= report(&target.name, "users.read (list sessions)", read);
        let write = client.delete_sessions(&probe_user).await;
        all_ok &= report(&target.name, "users.write (delete sessions)", write);
        if changes_status {
            let status = client.update_status(&probe_user, false).await;
            all_ok &= report(&target.name, "users.write (update status)", status);
        }
        all_ok &= check_webhooks(config, &client).await;
    }
    all_ok
}

/// Reports every Appwrite webhook that points at one of revokd's `appwrite`
/// sources and is switched off or failing. Appwrite never redelivers, and it
/// switches a webhook off after 10 failed deliveries in a row, so such a
/// webhook is losing events. Skipped when the key lacks `webhooks.read`.
async fn check_webhooks(config: &Config, client: &AppwriteClient) -> bool {
    let signed_urls: Vec<&str> = config
        .sources
        .values()
        .filter_map(|source| match &source.verifier {
            Verifier::Appwrite(appwrite) => Some(appwrite.signed_url()),
            _ => None,
        })
        .collect();
    if signed_urls.is_empty() {
        return true;
    }
    let (webhooks, total) = match client.list_webhooks().await {
        Ok(list) => list,
        Err(CallError::Api {
            status: 401,
            error_type,
            ..
        }) if error_type == "general_unauthorized_scope" => {
            println!("  webhooks: not checked (the key lacks webhooks.read; add it to watch the webhook's state)");
            return true;
        }
        Err(err) => {
            println!("  webhooks: FAILED to list: {err}");
            return false;
        }
    };
    if (webhooks.len() as u64) < total {
        println!(
            "  webhooks: only the first {} of {total} checked",
            webhooks.len()
        );
    }
    let mut healthy = true;
    for url in signed_urls {
        let pointing: Vec<&WebhookSummary> =
            webhooks.iter().filter(|hook| hook.url == url).collect();
        if pointing.is_empty() {
            println!("  webhooks: none points at {url}: create one, or fix signed_url");
        }
        for hook in pointing {
            let label = format!("webhook {} ({})", hook.id, hook.name);
            if !hook.enabled {
                healthy = false;
                println!(
                    "  {label}: DISABLED after {} failed deliveries: fix revokd, then switch it on in the console",
                    hook.attempts
                );
            } else if hook.attempts > 0 {
                healthy = false;
                println!(
                    "  {label}: FAILING, {} failed deliveries in a row (Appwrite switches it off at 10); last: {}",
                    hook.attempts,
                    first_line(&hook.logs)
                );
            } else {
                println!("  {label}: ok, enabled and delivering");
            }
        }
    }
    healthy
}

/// Returns the first line of Appwrite's failure note, cut to 200 characters.
fn first_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(200)
        .collect()
}

fn report(target: &str, what: &str, result: Result<(), CallError>) -> bool {
    let (ok, text) = match result {
        Err(err) if err.is_user_not_found() => (true, "ok: endpoint answers, key valid, scope held".to_string()),
        Ok(()) => (true, "ok (unexpected success on a user that should not exist)".to_string()),
        Err(CallError::Api { status: 401, error_type, message, .. }) if error_type == "general_unauthorized_scope" => (
            false,
            format!("MISSING SCOPE: {message}: add the scope to the API key"),
        ),
        Err(CallError::Api { status: 401, error_type, .. }) => (
            false,
            format!("KEY REJECTED ({error_type}): check targets.{target}.api_key and that the key belongs to this project"),
        ),
        Err(CallError::Api { error_type, .. }) if error_type == "project_not_found" => (
            false,
            format!("PROJECT NOT FOUND: check targets.{target}.project"),
        ),
        Err(CallError::Api { status: 404, error_type, .. }) if error_type.starts_with("http_") => (
            false,
            "NOT APPWRITE'S API: the endpoint answered 404 without Appwrite's JSON; does it end in /v1?".to_string(),
        ),
        Err(CallError::Connect(message)) | Err(CallError::Timeout(message)) => (
            false,
            format!("ENDPOINT NOT ANSWERING: {message}"),
        ),
        Err(other) => (false, format!("FAILED: {other}")),
    };
    println!("  {what}: {text}");
    ok
}
