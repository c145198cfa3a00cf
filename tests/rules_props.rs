//! Property tests for the rule evaluator, the event pattern matcher and the
//! Appwrite decoder's check of the unsigned events header: arbitrary input
//! never panics, and the matcher keeps its algebraic properties.

use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use revokd::rules::{Action, Pattern, Rule, RuleSet, UserRef};
use revokd::sources::appwrite::AppwriteSource;
use revokd::sources::{DecodedEvent, HeaderLookup, Inbound, Rejection};
use secrecy::SecretString;
use serde_json::{json, Value};

/// Cases per property: enough to hit the edge cases, small enough for CI.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

/// Generates one segment of an event name or pattern, biased toward the characters
/// that matter: dots, stars and empty text.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9]{1,6}",
        Just("*".to_string()),
        Just("**".to_string()),
        Just("users".to_string()),
        ".{0,4}",
    ]
}

/// Generates dot-joined names with 1 to 8 segments, often with `*` in them, as
/// Appwrite sends.
fn event_name() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec(segment(), 1..8).prop_map(|parts| parts.join(".")),
        ".{0,40}",
    ]
}

/// Generates a valid literal segment: non-empty, no dot, no star.
fn literal_segment() -> impl Strategy<Value = String> {
    "[^.*]{1,8}"
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        ".{0,12}".prop_map(Value::String),
        Just(json!("6650c1f2a7b3e9d4c021")),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("$id".to_string()),
                    Just("userId".to_string()),
                    Just("status".to_string()),
                    Just("data".to_string()),
                    ".{0,6}"
                ],
                inner,
                0..6
            )
            .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// JSON Pointers, valid or not: the evaluator must cope with both, although
/// the config loader rejects invalid ones.
fn pointer() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("/$id".to_string()),
        Just("/userId".to_string()),
        Just("/data/id".to_string()),
        Just("/status".to_string()),
        Just(String::new()),
        "(/[a-z$~0-9]{0,5}){0,4}",
        ".{0,10}",
    ]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        Just(Action::DeleteSessions),
        Just(Action::DeleteSession),
        Just(Action::BlockUser),
        Just(Action::UnblockUser),
    ]
}

/// Generates patterns that `Pattern::parse` accepts.
fn valid_pattern() -> impl Strategy<Value = Pattern> {
    let part = prop_oneof![
        literal_segment(),
        Just("*".to_string()),
        Just("**".to_string()),
    ];
    proptest::collection::vec(part, 1..6)
        .prop_map(|parts| Pattern::parse(&parts.join(".")).expect("generated pattern is valid"))
}

fn rule() -> impl Strategy<Value = Rule> {
    (
        prop_oneof![Just("appwrite"), Just("clerk")],
        valid_pattern(),
        proptest::collection::vec(valid_pattern(), 0..3),
        proptest::collection::vec((pointer(), arbitrary_json()), 0..3),
        pointer(),
        proptest::option::of(pointer()),
        action(),
        any::<bool>(),
    )
        .prop_map(
            |(source, event, except, when, user, session, action, dry_run)| Rule {
                name: Arc::from(format!("rule-{event}")),
                source: source.to_string(),
                event,
                except,
                when,
                user: UserRef::Id(user),
                session,
                action,
                target: Arc::from("main"),
                dry_run,
            },
        )
}

fn segment_count(name: &str) -> usize {
    name.split('.').count()
}

/// Backtracking reference matcher over pattern text, for small inputs only.
fn reference_matches(pattern: &[&str], name: &[&str]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((&"**", rest)) => (0..=name.len()).any(|skip| reference_matches(rest, &name[skip..])),
        Some((head, rest)) => match name.split_first() {
            None => false,
            Some((part, name_rest)) => {
                (*head == "*" || head == part) && reference_matches(rest, name_rest)
            }
        },
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn pattern_parse_never_panics(text in ".{0,60}", names in proptest::collection::vec(event_name(), 0..6)) {
        if let Ok(pattern) = Pattern::parse(&text) {
            prop_assert_eq!(pattern.as_str(), text.as_str());
            for name in &names {
                let _ = pattern.matches(name);
            }
        }
    }

    #[test]
    fn pattern_parse_rejects_empty_segments(parts in proptest::collection::vec(literal_segment(), 1..5), at in any::<prop::sample::Index>()) {
        let mut parts = parts;
        let position = at.index(parts.len() + 1);
        parts.insert(position, String::new());
        let text = parts.join(".");
        prop_assert!(Pattern::parse(&text).is_err(), "accepted {text:?}");
    }

    #[test]
    fn pattern_parse_rejects_partial_wildcard(prefix in "[a-z]{0,3}", suffix in "[a-z]{0,3}") {
        prop_assume!(!(prefix.is_empty() && suffix.is_empty()));
        let text = format!("users.{prefix}*{suffix}.update");
        prop_assert!(Pattern::parse(&text).is_err(), "accepted {text:?}");
    }

    #[test]
    fn matcher_agrees_with_reference(pattern in valid_pattern(), name in event_name()) {
        let pattern_parts: Vec<&str> = pattern.as_str().split('.').collect();
        let name_parts: Vec<&str> = name.split('.').collect();
        prop_assert_eq!(
            pattern.matches(&name),
            reference_matches(&pattern_parts, &name_parts),
            "pattern {} name {:?}", pattern, name
        );
    }

    #[test]
    fn double_star_matches_everything(name in event_name()) {
        let pattern = Pattern::parse("**").unwrap();
        prop_assert!(pattern.matches(&name), "`**` did not match {name:?}");
    }

    #[test]
    fn prefix_double_star_matches_extensions(prefix in proptest::collection::vec(literal_segment(), 1..4), rest in proptest::collection::vec(literal_segment(), 0..4)) {
        let pattern = Pattern::parse(&format!("{}.**", prefix.join("."))).unwrap();
        let mut name = prefix.clone();
        name.extend(rest);
        let name = name.join(".");
        prop_assert!(pattern.matches(&name), "{pattern} did not match {name:?}");
    }

    #[test]
    fn literal_matches_only_itself(parts in proptest::collection::vec(literal_segment(), 1..6), name in event_name()) {
        let text = parts.join(".");
        let pattern = Pattern::parse(&text).unwrap();
        prop_assert!(pattern.matches(&text));
        prop_assert_eq!(pattern.matches(&name), name == text, "pattern {:?} name {:?}", text, name);
    }

    #[test]
    fn literal_rejects_any_changed_segment(parts in proptest::collection::vec(literal_segment(), 1..6), at in any::<prop::sample::Index>(), other in literal_segment()) {
        let text = parts.join(".");
        let pattern = Pattern::parse(&text).unwrap();
        let mut changed = parts.clone();
        let index = at.index(changed.len());
        prop_assume!(changed[index] != other);
        changed[index] = other;
        let changed = changed.join(".");
        prop_assert!(!pattern.matches(&changed), "{text:?} matched {changed:?}");
    }

    #[test]
    fn single_stars_match_by_segment_count(stars in 1usize..6, name in event_name()) {
        let pattern = Pattern::parse(&vec!["*"; stars].join(".")).unwrap();
        prop_assert_eq!(pattern.matches(&name), segment_count(&name) == stars, "{} vs {:?}", pattern, name);
    }

    #[test]
    fn no_double_star_means_same_segment_count(pattern in valid_pattern(), name in event_name()) {
        let has_any = pattern.as_str().split('.').any(|part| part == "**");
        if !has_any && pattern.matches(&name) {
            prop_assert_eq!(segment_count(&name), segment_count(pattern.as_str()));
        }
    }

    #[test]
    fn pattern_matches_own_text(pattern in valid_pattern()) {
        // A `*` segment in a name is matched by `*` and by a literal `*`, so a
        // pattern without `**` matches its own text.
        let has_any = pattern.as_str().split('.').any(|part| part == "**");
        prop_assume!(!has_any);
        prop_assert!(pattern.matches(pattern.as_str()));
    }

    #[test]
    fn evaluate_never_panics(
        rules in proptest::collection::vec(rule(), 0..5),
        source in prop_oneof![Just("appwrite"), Just("clerk"), Just("other")],
        types in proptest::collection::vec(event_name(), 0..6),
        payload in arbitrary_json(),
    ) {
        let rule_set = RuleSet::new(rules.clone());
        let event = DecodedEvent {
            delivery_key: "key".into(),
            types: types.clone(),
            payload: payload.clone(),
            occurred_at: None,
        };
        let evaluation = rule_set.evaluate(source, &event);
        let candidates = rules.iter().filter(|rule| rule.source == source).count();
        prop_assert!(evaluation.jobs.len() + evaluation.skipped.len() <= candidates);
        prop_assert!(!evaluation.ignored_reason().is_empty());
        for job in &evaluation.jobs {
            let rule = rules
                .iter()
                .find(|rule| rule.name == job.rule && rule.source == source)
                .expect("job names one of the source's rules");
            prop_assert!(types.contains(&job.event_type));
            prop_assert!(rule.event.matches(&job.event_type));
            prop_assert!(!job.user.is_empty());
            prop_assert_eq!(payload.pointer(rule.user.pointer()), Some(&Value::String(job.user.clone())));
            prop_assert_eq!(job.action, rule.action);
            prop_assert_eq!(job.dry_run, rule.dry_run);
            // The reported name is the most specific: no matching name has more segments.
            let longest = types
                .iter()
                .filter(|name| rule.event.matches(name))
                .map(|name| segment_count(name))
                .max()
                .unwrap();
            prop_assert_eq!(segment_count(&job.event_type), longest);
        }
    }

    #[test]
    fn double_star_rule_makes_job(types in proptest::collection::vec(event_name(), 1..6), user in "[a-z0-9]{1,20}") {
        let rule = Rule {
            name: Arc::from("all"),
            source: "appwrite".into(),
            event: Pattern::parse("**").unwrap(),
            except: vec![],
            when: vec![],
            user: UserRef::Id("/$id".into()),
            session: None,
            action: Action::DeleteSessions,
            target: Arc::from("main"),
            dry_run: false,
        };
        let event = DecodedEvent {
            delivery_key: "key".into(),
            types,
            payload: json!({ "$id": user.clone() }),
            occurred_at: None,
        };
        let evaluation = RuleSet::new(vec![rule]).evaluate("appwrite", &event);
        prop_assert_eq!(evaluation.jobs.len(), 1);
        prop_assert_eq!(&evaluation.jobs[0].user, &user);
    }
}

const APPWRITE_URL: &str = "https://hooks.example.com/hooks/appwrite";
const APPWRITE_SECRET: &str = "0123456789abcdef0123456789abcdef";
const USER: &str = "6650c1f2a7b3e9d4c021";

fn appwrite_source() -> AppwriteSource {
    AppwriteSource::new(
        APPWRITE_URL,
        vec![SecretString::from(APPWRITE_SECRET)],
        None,
    )
    .unwrap()
}

/// Headers with raw byte values, which may be invalid UTF-8 as on the wire.
struct RawHeaders(Vec<(&'static str, Vec<u8>)>);

impl HeaderLookup for RawHeaders {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_slice())
    }
}

fn decode_with(events: &str, body: &[u8]) -> Result<Vec<DecodedEvent>, Rejection> {
    let headers = vec![("X-Appwrite-Webhook-Events".to_string(), events.to_string())];
    appwrite_source().decode(&Inbound {
        headers: &headers,
        body,
        now: 0,
    })
}

/// Events header values: lists of plausible and arbitrary names with odd
/// separators and whitespace.
fn events_header() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        event_name(),
        Just(format!("users.{USER}.update")),
        Just("users.*.update.password".to_string()),
        "users\\.[a-z0-9*]{0,22}(\\.[a-z*]{1,8}){0,3}",
        Just("users".to_string()),
        Just(String::new()),
    ];
    (
        proptest::collection::vec(name, 0..6),
        prop_oneof![Just(","), Just(", "), Just(" ,"), Just(",,")],
    )
        .prop_map(|(names, separator)| names.join(separator))
}

fn appwrite_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        arbitrary_json().prop_map(|value| serde_json::to_vec(&value).unwrap()),
        Just(format!(r#"{{"$id":"{USER}","status":false}}"#).into_bytes()),
        Just(format!(r#"{{"$id":"token1","userId":"{USER}"}}"#).into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..64),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn appwrite_decode_never_panics(events in events_header(), body in appwrite_body()) {
        let _ = decode_with(&events, &body);
    }

    #[test]
    fn appwrite_decode_arbitrary_header_bytes(events in proptest::collection::vec(any::<u8>(), 0..80), body in appwrite_body()) {
        let headers = RawHeaders(vec![("x-appwrite-webhook-events", events.clone())]);
        let result = appwrite_source().decode(&Inbound { headers: &headers, body: &body, now: 0 });
        if std::str::from_utf8(&events).is_err() {
            let message = "x-appwrite-webhook-events header is not valid UTF-8".to_string();
            prop_assert_eq!(result, Err(Rejection::Malformed(message)));
        }
    }

    #[test]
    fn appwrite_decoded_names_agree_with_body_user(events in events_header(), body in appwrite_body()) {
        let Ok(decoded) = decode_with(&events, &body) else {
            return Ok(());
        };
        prop_assert_eq!(decoded.len(), 1);
        let event = &decoded[0];
        prop_assert!(!event.types.is_empty());
        let object = event.payload.as_object();
        let user = object.and_then(|object| {
            object
                .get("userId")
                .and_then(Value::as_str)
                .or_else(|| object.get("$id").and_then(Value::as_str))
        });
        for name in &event.types {
            prop_assert_eq!(name.trim(), name.as_str());
            prop_assert!(!name.is_empty());
            let mut parts = name.split('.');
            if let (Some("users"), Some(segment), Some(user)) = (parts.next(), parts.next(), user) {
                prop_assert!(segment == "*" || segment == user, "{name:?} passed for user {user:?}");
            }
        }
    }

    #[test]
    fn appwrite_decode_rejects_other_user(other in "[a-z0-9]{1,20}", tail in "(\\.[a-z]{1,8}){0,3}", keep_valid in any::<bool>()) {
        prop_assume!(other != USER);
        let body = format!(r#"{{"$id":"{USER}","status":false}}"#);
        let mut names = vec![format!("users.{other}{tail}")];
        if keep_valid {
            names.insert(0, format!("users.{USER}.update"));
        }
        let result = decode_with(&names.join(","), body.as_bytes());
        prop_assert_eq!(result, Err(Rejection::Unauthorized("events header names another user")));
    }
}

/// Matching time must stay small for patterns an operator could write, so a
/// long event name cannot stall a worker. Many `**` segments against a long
/// name that does not match is the worst case for a backtracking matcher.
#[test]
fn many_double_stars_match_quickly() {
    let pattern = Pattern::parse(&format!("{}.end", ["**"; 12].join("."))).unwrap();
    let name = ["a"; 60].join(".");
    let (sender, receiver) = std::sync::mpsc::channel();
    // The match runs on its own thread so a slow matcher fails the test
    // instead of hanging it.
    std::thread::spawn(move || {
        let started = Instant::now();
        let matched = pattern.matches(&name);
        let _ = sender.send((matched, started.elapsed()));
    });
    let (matched, elapsed) = receiver
        .recv_timeout(Duration::from_secs(5))
        .expect("matching 12 `**` segments against 60 segments took over 5 s");
    assert!(!matched);
    assert!(
        elapsed < Duration::from_secs(1),
        "matching took {elapsed:?}"
    );
}
