use std::collections::HashMap;

use secrecy::ExposeSecret;

use super::*;

struct Env(HashMap<&'static str, &'static str>);

impl Environment for Env {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).map(|value| value.to_string())
    }
}

fn env() -> Env {
    Env(HashMap::from([
        ("APPWRITE_API_KEY", "standard_key"),
        ("APPWRITE_WEBHOOK_SECRET", "hexkey"),
        (
            "CLERK_WEBHOOK_SECRET",
            "whsec_AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=",
        ),
    ]))
}

const EXAMPLE: &str = include_str!("../../deploy/revokd.toml");

fn parse(text: &str) -> Result<Config, String> {
    Config::parse(text, &env())
}

fn error_of(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("config was accepted"),
        Err(err) => err,
    }
}

#[test]
fn example_config_loads_with_defaults() {
    let config = parse(EXAMPLE).unwrap();
    assert_eq!(config.rules.rules().len(), 4);
    assert_eq!(config.sources.len(), 2);
    assert_eq!(config.delivery.max_attempts, 12);
    assert_eq!(config.delivery.lease, Duration::from_secs(60));
    assert_eq!(
        config.store.dedupe_retention,
        Duration::from_secs(7 * 24 * 3600)
    );
    assert!(config.store.sqlite_synchronous_full);
    assert_eq!(config.server.max_body_bytes, 1024 * 1024);
    assert_eq!(
        config.targets["main"].api_key.expose_secret(),
        "standard_key"
    );
}

#[test]
fn empty_file_gets_every_default() {
    let config = parse("").unwrap();
    assert_eq!(config.server.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(config.server.request_timeout, Duration::from_secs(10));
    assert_eq!(config.server.shutdown_grace, Duration::from_secs(30));
    assert_eq!(
        config.store.location,
        StoreLocation::Sqlite("revokd.db".into())
    );
    assert_eq!(config.delivery.concurrency_per_target, 8);
    assert_eq!(config.delivery.max_age, Duration::from_secs(24 * 3600));
    assert_eq!(config.delivery.backoff_base, Duration::from_secs(1));
    assert_eq!(config.delivery.backoff_max, Duration::from_secs(600));
    assert_eq!(config.delivery.request_timeout, Duration::from_secs(10));
    assert_eq!(config.delivery.connect_timeout, Duration::from_secs(5));
}

#[test]
fn unknown_key_is_named() {
    let err = error_of("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 1\n");
    assert!(err.contains("unknown field `lisen`"), "{err}");
}

#[test]
fn unknown_source_key_is_named() {
    let err = error_of(
        "[sources.a]\nkind = \"appwrite\"\nsigned_url = \"https://x/y\"\nsecrets = [{ env = \"APPWRITE_WEBHOOK_SECRET\" }]\ntolerance_seconds = 5\n",
    );
    assert!(err.contains("tolerance_seconds"), "{err}");
}

#[test]
fn missing_secret_names_the_key_and_variable() {
    let text = EXAMPLE.replace("CLERK_WEBHOOK_SECRET", "NOT_SET_ANYWHERE");
    let err = error_of(&text);
    assert!(err.contains("sources.clerk.secrets[0]"), "{err}");
    assert!(err.contains("NOT_SET_ANYWHERE is not set"), "{err}");
}

#[test]
fn inline_secret_is_rejected() {
    let text = EXAMPLE.replace(
        "api_key = { env = \"APPWRITE_API_KEY\" }",
        "api_key = \"standard_abc\"",
    );
    let err = error_of(&text);
    assert!(err.contains("not read from the config file"), "{err}");
}

#[test]
fn rule_with_unknown_source_or_target() {
    let source = error_of(&EXAMPLE.replacen("source = \"clerk\"", "source = \"clark\"", 1));
    assert!(source.contains("no source named `clark`"), "{source}");
    assert!(source.contains("appwrite, clerk"), "{source}");
    let target = error_of(&EXAMPLE.replacen("target = \"main\"", "target = \"mian\"", 1));
    assert!(target.contains("no target named `mian`"), "{target}");
}

#[test]
fn bad_pointer_is_named() {
    let err = error_of(&EXAMPLE.replacen("user = { id = \"/$id\" }", "user = { id = \"$id\" }", 1));
    assert!(err.contains("user.id"), "{err}");
    assert!(err.contains("must start with `/`"), "{err}");
    let when = error_of(&EXAMPLE.replacen("\"/status\" = false", "\"status\" = false", 1));
    assert!(when.contains(".when"), "{when}");
}

#[test]
fn unknown_action_lists_the_valid_ones() {
    let err = error_of(&EXAMPLE.replacen("action = \"block_user\"", "action = \"ban\"", 1));
    assert!(err.contains("`ban` is not an action"), "{err}");
    assert!(
        err.contains("delete_sessions, delete_session, block_user, unblock_user"),
        "{err}"
    );
}

#[test]
fn delete_session_needs_a_session_pointer() {
    let err =
        error_of(&EXAMPLE.replacen("action = \"block_user\"", "action = \"delete_session\"", 1));
    assert!(err.contains("delete_session needs a JSON Pointer"), "{err}");
}

#[test]
fn duplicate_rule_names_are_rejected() {
    let err = error_of(&EXAMPLE.replacen(
        "name = \"logout-on-block\"",
        "name = \"logout-on-password-change\"",
        1,
    ));
    assert!(err.contains("used twice"), "{err}");
}

#[test]
fn bad_durations_and_store_urls() {
    let duration = error_of("[delivery]\nbackoff_base = \"soon\"\n");
    assert!(duration.contains("backoff_base"), "{duration}");
    let store = error_of("[store]\nurl = \"mysql://x\"\n");
    assert!(store.contains("use sqlite://PATH"), "{store}");
    let sync = error_of("[store]\nsqlite_synchronous = \"off\"\n");
    assert!(sync.contains("\"full\" or \"normal\""), "{sync}");
    let lease = error_of("[delivery]\nlease = \"20s\"\n");
    assert!(lease.contains("delivery.lease"), "{lease}");
}

#[test]
fn debug_output_hides_secrets() {
    let config = parse(EXAMPLE).unwrap();
    let shown = format!("{config:?}");
    assert!(!shown.contains("standard_key"), "{shown}");
    assert!(
        shown.contains("REDACTED") || shown.contains("Secret"),
        "{shown}"
    );
}

#[test]
fn unknown_kind_is_named() {
    let err = error_of("[sources.x]\nkind = \"carrier-pigeon\"\n");
    assert!(err.contains("carrier-pigeon"), "{err}");
}

#[test]
fn user_lookup_by_email_or_identity() {
    let email = parse(&EXAMPLE.replacen(
        "user = { id = \"/data/external_id\" }",
        "user = { email = \"/data/email_addresses/0/email_address\" }",
        1,
    ))
    .unwrap();
    let rule = &email.rules.rules()[3];
    assert_eq!(rule.user.kind(), "email");
    assert_eq!(rule.user.pointer(), "/data/email_addresses/0/email_address");

    let identity = parse(&EXAMPLE.replacen(
        "user = { id = \"/data/external_id\" }",
        "user = { identity = \"/data/id\", provider = \"oidc\" }",
        1,
    ))
    .unwrap();
    assert_eq!(identity.rules.rules()[3].user.kind(), "identity:oidc");

    let both = error_of(&EXAMPLE.replacen(
        "user = { id = \"/data/external_id\" }",
        "user = { id = \"/a\", email = \"/b\" }",
        1,
    ));
    assert!(
        both.contains("exactly one of id, email or identity"),
        "{both}"
    );
    let stray = error_of(&EXAMPLE.replacen(
        "user = { id = \"/data/external_id\" }",
        "user = { id = \"/a\", provider = \"oidc\" }",
        1,
    ));
    assert!(
        stray.contains("only an `identity` lookup takes a provider"),
        "{stray}"
    );
}

/// A `secrets` line whose variable `env()` sets, so that the tables below
/// fail on another key.
const SECRET: &str = "secrets = [{ env = \"APPWRITE_WEBHOOK_SECRET\" }]";

#[test]
fn appwrite_unknown_key_line() {
    let err = error_of(&format!(
        "[sources.hook]\nkind = \"appwrite\"\nsigned_url = \"https://x/y\"\n{SECRET}\ntolerance_seconds = 5\n"
    ));
    assert!(err.starts_with("sources.hook.tolerance_seconds: "), "{err}");
    assert!(err.contains("at line 5, column 1"), "{err}");
    assert!(err.contains("unknown field `tolerance_seconds`"), "{err}");
    assert!(
        err.contains("expected one of `signed_url`, `secrets`, `basic_auth`, `allow_ips`"),
        "{err}"
    );
}

#[test]
fn standard_webhooks_wrong_type_line() {
    let err = error_of(&format!(
        "[sources.clerk]\n{SECRET}\nkind = \"standard-webhooks\"\ntolerance_seconds = \"5m\"\n"
    ));
    assert!(
        err.starts_with("sources.clerk.tolerance_seconds: "),
        "{err}"
    );
    assert!(err.contains("at line 4, column 21"), "{err}");
    assert!(err.contains("expected u64"), "{err}");
}

#[test]
fn hmac_bad_values_name_key_and_line() {
    let table =
        format!("[sources.github]\nkind = \"hmac\"\nheader = \"X-Hub-Signature-256\"\n{SECRET}\n");
    let pointer = error_of(&format!("{table}type_pointer = \"action\"\n"));
    assert!(
        pointer.starts_with("sources.github.type_pointer (line 5) "),
        "{pointer}"
    );
    assert!(pointer.contains("not a JSON Pointer"), "{pointer}");

    let algorithm = error_of(&format!("{table}\nalgorithm = \"md5\"\n"));
    assert!(
        algorithm.starts_with("sources.github.algorithm (line 6): "),
        "{algorithm}"
    );
    assert!(algorithm.contains("`md5` is not supported"), "{algorithm}");

    let header = error_of(&table.replace("X-Hub-Signature-256", "X-Sig: sha256"));
    assert!(
        header.starts_with("sources.github.header (line 3) "),
        "{header}"
    );

    let wrong_type = error_of(&format!("{table}encoding = [\"hex\"]\n"));
    assert!(
        wrong_type.starts_with("sources.github.encoding: "),
        "{wrong_type}"
    );
    assert!(wrong_type.contains("at line 5, column 12"), "{wrong_type}");
}

#[test]
fn oidc_backchannel_errors_name_key_and_line() {
    let table = "[sources.idp]\nkind = \"oidc-backchannel\"\nissuer = \"https://idp\"\naudience = \"revokd\"\n";
    let url = error_of(&format!("{table}jwks_url = \"ftp://idp/jwks\"\n"));
    assert!(url.starts_with("sources.idp.jwks_url (line 5): "), "{url}");
    assert!(url.contains("not an http(s) URL"), "{url}");

    let unknown = error_of(&format!(
        "{table}jwks_url = \"https://idp/jwks\"\nmax_age = \"5m\"\n"
    ));
    assert!(unknown.starts_with("sources.idp.max_age: "), "{unknown}");
    assert!(unknown.contains("at line 6, column 1"), "{unknown}");
    assert!(unknown.contains("`max_age_seconds`"), "{unknown}");
}

#[test]
fn source_missing_key_names_table() {
    let err = error_of("[server]\nworkers = 1\n\n[sources.github]\nkind = \"hmac\"\n");
    assert!(err.starts_with("sources.github: "), "{err}");
    assert!(err.contains("at line 4, column 1"), "{err}");
    assert!(err.contains("missing field `header`"), "{err}");
}

#[test]
fn every_missing_secret_is_named() {
    let text = EXAMPLE
        .replace("APPWRITE_WEBHOOK_SECRET", "FIRST_NOT_SET")
        .replace("CLERK_WEBHOOK_SECRET", "SECOND_NOT_SET");
    let err = error_of(&text);
    assert!(err.starts_with("2 secrets cannot be read:"), "{err}");
    assert!(
        err.contains("sources.appwrite.secrets[0] (line 40): "),
        "{err}"
    );
    assert!(err.contains("FIRST_NOT_SET is not set: export it"), "{err}");
    assert!(
        err.contains("sources.clerk.secrets[0] (line 46): "),
        "{err}"
    );
    assert!(
        err.contains("SECOND_NOT_SET is not set: export it"),
        "{err}"
    );
    assert!(!err.contains("standard_key"), "{err}");
}

#[test]
fn missing_secrets_across_tables() {
    let text = EXAMPLE.replace("APPWRITE_API_KEY", "KEY_NOT_SET").replace(
        "secrets = [{ env = \"CLERK_WEBHOOK_SECRET\" }]",
        "secrets = [{ env = \"CLERK_WEBHOOK_SECRET\" }, { file = \"/nonexistent/revokd-secret\" }]",
    );
    let err = error_of(&text);
    assert!(err.starts_with("2 secrets cannot be read:"), "{err}");
    assert!(err.contains("targets.main.api_key (line 35): "), "{err}");
    assert!(err.contains("KEY_NOT_SET is not set"), "{err}");
    assert!(
        err.contains("sources.clerk.secrets[1] (line 46): "),
        "{err}"
    );
    assert!(
        err.contains("cannot read secret file /nonexistent/revokd-secret"),
        "{err}"
    );
    assert!(!err.contains("whsec_"), "{err}");
}

/// Appwrite source settings whose secret `env()` sets, as dotted keys under
/// `prefix`.
fn dotted_appwrite(prefix: &str) -> String {
    format!(
        "{prefix}kind = \"appwrite\"\n\
         {prefix}signed_url = \"https://x/y\"\n\
         {prefix}secrets = [{{ env = \"APPWRITE_WEBHOOK_SECRET\" }}]\n"
    )
}

#[test]
fn dotted_source_keys_load() {
    for text in [
        dotted_appwrite("sources.hook."),
        format!("[sources]\n{}", dotted_appwrite("hook.")),
        format!(
            "[sources.hook.basic_auth]\nuser = {{ env = \"APPWRITE_API_KEY\" }}\n\
             password = {{ env = \"APPWRITE_API_KEY\" }}\n\n[sources.hook]\n{}",
            dotted_appwrite("")
        ),
    ] {
        let config = parse(&text).unwrap_or_else(|err| panic!("{err}\n{text}"));
        assert!(config.sources.contains_key("hook"), "{text}");
    }
}

#[test]
fn dotted_source_errors_name_key_and_line() {
    let unknown = error_of(&format!(
        "{}sources.hook.tolerance_seconds = 5\n",
        dotted_appwrite("sources.hook.")
    ));
    assert!(
        unknown.starts_with("sources.hook.tolerance_seconds: "),
        "{unknown}"
    );
    assert!(unknown.contains("at line 4, column 14"), "{unknown}");

    let empty = error_of(
        &dotted_appwrite("sources.hook.").replace("[{ env = \"APPWRITE_WEBHOOK_SECRET\" }]", "[]"),
    );
    assert!(
        empty.starts_with("sources.hook.secrets (line 3) is empty"),
        "{empty}"
    );
}

#[test]
fn source_without_kind_is_named() {
    let err =
        error_of("[server]\nworkers = 1\n\n[sources.hook.basic_auth]\nuser = { env = \"A\" }\n");
    assert!(err.contains("sources.hook"), "{err}");
    assert!(err.contains("`kind`"), "{err}");
    assert!(err.contains("`appwrite`"), "{err}");
}

#[test]
fn source_array_of_tables_is_rejected() {
    let err = error_of("[[sources.hook]]\nkind = \"appwrite\"\n");
    assert!(!err.contains("unknown variant"), "{err}");
    assert!(err.contains("expected a table"), "{err}");
    assert!(err.contains("at line 1"), "{err}");
}

#[test]
fn kind_of_wrong_type_lists_kinds() {
    for value in ["5", "[\"appwrite\"]", "{ appwrite = 1 }"] {
        let err = error_of(&format!("[sources.hook]\nkind = {value}\n"));
        assert!(err.starts_with("sources.hook.kind: "), "{err}");
        assert!(err.contains("`standard-webhooks`"), "{err}");
        assert!(err.contains("at line 2, column 8"), "{err}");
    }
}

#[test]
fn inline_secret_value_is_not_echoed() {
    const VALUE: &str = "S3CRET-VALUE-123";
    let cases = [
        ("api_key = { env = \"APPWRITE_API_KEY\" }", "api_key = \"S3CRET-VALUE-123\""),
        (
            "secrets = [{ env = \"APPWRITE_WEBHOOK_SECRET\" }]",
            "secrets = \"S3CRET-VALUE-123\"",
        ),
        (
            "secrets = [{ env = \"APPWRITE_WEBHOOK_SECRET\" }]",
            "secrets = [\"S3CRET-VALUE-123\"]",
        ),
        (
            "# basic_auth = { user = { env = \"HOOK_USER\" }, password = { env = \"HOOK_PASSWORD\" } }",
            "basic_auth = \"admin:S3CRET-VALUE-123\"",
        ),
        (
            "# basic_auth = { user = { env = \"HOOK_USER\" }, password = { env = \"HOOK_PASSWORD\" } }",
            "basic_auth = { user = \"admin\", password = \"S3CRET-VALUE-123\" }",
        ),
    ];
    for (from, to) in cases {
        assert!(EXAMPLE.contains(from), "{from}");
        let err = error_of(&EXAMPLE.replacen(from, to, 1));
        assert!(!err.contains(VALUE), "{to}: {err}");
        assert!(err.contains("not read from the config file"), "{to}: {err}");
    }

    let api_key = error_of(&EXAMPLE.replacen(cases[0].0, cases[0].1, 1));
    assert!(
        api_key.starts_with("targets.main.api_key: TOML parse error at line 35"),
        "{api_key}"
    );
}
