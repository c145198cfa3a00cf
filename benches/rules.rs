//! `RuleSet::evaluate` with 100 rules. Run with `cargo bench --bench rules`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use revokd::config::{Config, Environment};
use revokd::sources::DecodedEvent;
use serde_json::json;

struct BenchEnv;

impl Environment for BenchEnv {
    fn var(&self, _name: &str) -> Option<String> {
        Some("bench-secret-0123456789abcdef".to_owned())
    }
}

const RULE_COUNT: usize = 100;

/// Builds a config with 100 rules on one Appwrite source: 99 on event names the
/// benchmark event does not carry, and the last on its password change.
fn config_text() -> String {
    let mut text = String::from(
        r#"
[server]
listen = "127.0.0.1:0"

[store]
url = "sqlite://unused.db"

[targets.main]
endpoint = "http://127.0.0.1:9/v1"
project = "bench"
api_key = { env = "KEY" }

[sources.appwrite]
kind = "appwrite"
signed_url = "http://127.0.0.1:9/hooks/appwrite"
secrets = [{ env = "SECRET" }]
"#,
    );
    for index in 0..RULE_COUNT - 1 {
        text.push_str(&format!(
            r#"
[[rules]]
name = "rule-{index}"
source = "appwrite"
event = "users.*.sessions.*.custom{index}"
when = {{ "/status" = false }}
user = {{ id = "/$id" }}
action = "delete_sessions"
target = "main"
"#
        ));
    }
    text.push_str(
        r#"
[[rules]]
name = "logout-on-password-change"
source = "appwrite"
event = "users.*.update.password"
user = { id = "/$id" }
action = "delete_sessions"
target = "main"
"#,
    );
    text
}

fn evaluate(c: &mut Criterion) {
    let config = Config::parse(&config_text(), &BenchEnv).unwrap();
    assert_eq!(config.rules.rules().len(), RULE_COUNT);
    let user = "6650c1f2a7b3e9d4c021";
    let event = DecodedEvent {
        delivery_key: "bench".to_owned(),
        types: vec![
            format!("users.{user}.update"),
            "users.*.update".to_owned(),
            format!("users.{user}.update.password"),
            "users.*.update.password".to_owned(),
            format!("users.{user}"),
            "users.*".to_owned(),
        ],
        payload: json!({ "$id": user, "status": true, "email": "jane.doe@example.com" }),
        occurred_at: None,
    };
    let evaluation = config.rules.evaluate("appwrite", &event);
    assert_eq!(evaluation.jobs.len(), 1);
    c.bench_function("rules/evaluate-100-rules", |b| {
        b.iter(|| {
            config
                .rules
                .evaluate(black_box("appwrite"), black_box(&event))
        })
    });
}

criterion_group!(benches, evaluate);
criterion_main!(benches);
