//! Arbitrary patterns, event names and payloads through the pattern parser,
//! the matcher and the rule evaluator.

#![no_main]

use std::sync::Arc;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use revokd::rules::{Action, Pattern, Rule, RuleSet, UserRef};
use revokd::sources::DecodedEvent;
use serde_json::Value;

#[derive(Arbitrary, Debug)]
struct FuzzRule {
    event: String,
    except: Vec<String>,
    when: Vec<(String, String)>,
    user: String,
    session: Option<String>,
    action: u8,
    dry_run: bool,
}

#[derive(Arbitrary, Debug)]
struct Input {
    rules: Vec<FuzzRule>,
    types: Vec<String>,
    payload: String,
}

const ACTIONS: [Action; 4] = [
    Action::DeleteSessions,
    Action::DeleteSession,
    Action::BlockUser,
    Action::UnblockUser,
];

fuzz_target!(|input: Input| {
    let any = Pattern::parse("**").expect("valid pattern");
    for name in &input.types {
        assert!(any.matches(name), "`**` did not match {name:?}");
    }

    let mut rules = Vec::new();
    for (index, rule) in input.rules.into_iter().take(8).enumerate() {
        let Ok(event) = Pattern::parse(&rule.event) else {
            continue;
        };
        assert_eq!(event.as_str(), rule.event);
        if !rule.event.contains('*') {
            assert!(
                event.matches(&rule.event),
                "literal {:?} did not match itself",
                rule.event
            );
        }
        let except = rule
            .except
            .iter()
            .filter_map(|text| Pattern::parse(text).ok())
            .collect();
        // `when` values are JSON text; invalid text becomes a string value.
        let when = rule
            .when
            .into_iter()
            .map(|(pointer, value)| {
                let value = serde_json::from_str(&value).unwrap_or(Value::String(value));
                (pointer, value)
            })
            .collect();
        rules.push(Rule {
            name: Arc::from(format!("rule-{index}")),
            source: "fuzz".into(),
            event,
            except,
            when,
            user: UserRef::Id(rule.user),
            session: rule.session,
            action: ACTIONS[usize::from(rule.action) % ACTIONS.len()],
            target: Arc::from("main"),
            dry_run: rule.dry_run,
        });
    }

    let payload = serde_json::from_str(&input.payload).unwrap_or(Value::Null);
    let event = DecodedEvent {
        delivery_key: "fuzz".into(),
        types: input.types,
        payload,
        occurred_at: None,
    };
    let candidates = rules.len();
    let evaluation = RuleSet::new(rules.clone()).evaluate("fuzz", &event);
    assert!(evaluation.jobs.len() + evaluation.skipped.len() <= candidates);
    for job in &evaluation.jobs {
        let rule = rules
            .iter()
            .find(|rule| rule.name == job.rule)
            .expect("known rule");
        assert!(event.types.contains(&job.event_type));
        assert!(rule.event.matches(&job.event_type));
        assert!(!job.user.is_empty());
    }
});
