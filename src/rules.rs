//! Compiled rules: which events become which Appwrite actions for which user.
//!
//! Pure code: the HTTP layer hands in a decoded event and gets back the jobs to
//! commit, or the reason nothing matched.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use crate::sources::DecodedEvent;

/// An event pattern over dot-separated type names. `*` matches exactly one
/// segment and `**` matches zero or more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    One,
    Any,
}

impl Pattern {
    /// Parses a pattern. Empty segments (`a..b`, a leading or trailing dot) are
    /// rejected, and so is `*` or `**` mixed with other characters in a segment.
    pub fn parse(text: &str) -> Result<Pattern, String> {
        if text.is_empty() {
            return Err("event pattern is empty: use `**` to match every event".into());
        }
        let mut segments = Vec::new();
        for part in text.split('.') {
            let segment = match part {
                "" => {
                    return Err(format!(
                        "event pattern `{text}` has an empty segment: remove the extra dot"
                    ))
                }
                "*" => Segment::One,
                "**" => Segment::Any,
                _ if part.contains('*') => {
                    return Err(format!(
                        "event pattern `{text}` has `{part}`: a wildcard must be a whole segment (`*` or `**`)"
                    ))
                }
                _ => Segment::Literal(part.to_string()),
            };
            segments.push(segment);
        }
        Ok(Pattern {
            text: text.to_string(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn matches(&self, name: &str) -> bool {
        let parts: Vec<&str> = name.split('.').collect();
        match_segments(&self.segments, &parts)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Matches in O(pattern segments × name segments) time. A backtracking
/// matcher takes exponential time when a pattern has several `**` segments
/// and a name is long, and names come from Appwrite's events header, which
/// the signature does not cover.
fn match_segments(pattern: &[Segment], name: &[&str]) -> bool {
    // `reachable[j]`: the pattern segments seen so far match `name[..j]`.
    let mut reachable = vec![false; name.len() + 1];
    reachable[0] = true;
    for segment in pattern {
        let mut next = vec![false; name.len() + 1];
        match segment {
            Segment::Any => {
                let mut any_before = false;
                for (j, slot) in next.iter_mut().enumerate() {
                    any_before |= reachable[j];
                    *slot = any_before;
                }
            }
            Segment::One | Segment::Literal(_) => {
                for (j, part) in name.iter().enumerate() {
                    let head_matches = match segment {
                        Segment::Literal(literal) => literal == part,
                        _ => true,
                    };
                    next[j + 1] = reachable[j] && head_matches;
                }
            }
        }
        if !next.contains(&true) {
            return false;
        }
        reachable = next;
    }
    reachable[name.len()]
}

/// Checks that `pointer` is a JSON Pointer (RFC 6901): empty, or `/`-prefixed
/// with `~` only in the escapes `~0` and `~1`.
pub fn validate_pointer(pointer: &str) -> Result<(), String> {
    if pointer.is_empty() {
        return Ok(());
    }
    if !pointer.starts_with('/') {
        return Err(format!(
            "`{pointer}` is not a JSON Pointer: it must start with `/`, e.g. `/{pointer}`"
        ));
    }
    let mut chars = pointer.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0') | Some('1')) {
            return Err(format!(
                "`{pointer}` is not a JSON Pointer: `~` must be written `~0`, and `/` inside a key `~1`"
            ));
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    DeleteSessions,
    DeleteSession,
    BlockUser,
    UnblockUser,
}

impl Action {
    pub const NAMES: [&'static str; 4] = [
        "delete_sessions",
        "delete_session",
        "block_user",
        "unblock_user",
    ];

    pub fn parse(name: &str) -> Option<Action> {
        match name {
            "delete_sessions" => Some(Action::DeleteSessions),
            "delete_session" => Some(Action::DeleteSession),
            "block_user" => Some(Action::BlockUser),
            "unblock_user" => Some(Action::UnblockUser),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::DeleteSessions => "delete_sessions",
            Action::DeleteSession => "delete_session",
            Action::BlockUser => "block_user",
            Action::UnblockUser => "unblock_user",
        }
    }

    /// Returns whether the action changes a user's status, which needs the `users.write` scope.
    pub fn changes_status(self) -> bool {
        matches!(self, Action::BlockUser | Action::UnblockUser)
    }
}

/// The location of the user in an event payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserRef {
    /// A JSON Pointer to the Appwrite user id.
    Id(String),
    /// A JSON Pointer to an email address, looked up with the Users API.
    Email(String),
    /// A JSON Pointer to the user's id at an OAuth provider (Appwrite's
    /// identity `providerUid`), optionally only for one provider.
    Identity {
        pointer: String,
        provider: Option<String>,
    },
}

impl UserRef {
    /// Returns how the job names the user: `id`, `email`, `identity` or
    /// `identity:<provider>`. Delivery resolves all but `id` through Appwrite.
    pub fn kind(&self) -> String {
        match self {
            UserRef::Id(_) => "id".to_string(),
            UserRef::Email(_) => "email".to_string(),
            UserRef::Identity { provider: None, .. } => "identity".to_string(),
            UserRef::Identity {
                provider: Some(provider),
                ..
            } => format!("identity:{provider}"),
        }
    }

    pub fn pointer(&self) -> &str {
        match self {
            UserRef::Id(pointer) | UserRef::Email(pointer) => pointer,
            UserRef::Identity { pointer, .. } => pointer,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: Arc<str>,
    pub source: String,
    pub event: Pattern,
    pub except: Vec<Pattern>,
    /// (JSON Pointer, expected value) pairs that must all hold.
    pub when: Vec<(String, Value)>,
    pub user: UserRef,
    pub session: Option<String>,
    pub action: Action,
    pub target: Arc<str>,
    pub dry_run: bool,
}

/// A job a rule produced for one event, before it gets an id.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    pub rule: Arc<str>,
    pub action: Action,
    pub target: Arc<str>,
    pub user_kind: String,
    pub user: String,
    pub session_id: Option<String>,
    /// The most specific event type name the rule matched.
    pub event_type: String,
    pub dry_run: bool,
}

/// The result of applying the rules to one event.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Evaluation {
    pub jobs: Vec<JobSpec>,
    /// The reason each rule that matched the event type produced no job.
    pub skipped: Vec<String>,
}

impl Evaluation {
    /// Returns one line with the reason no job was made, for the store and the log.
    pub fn ignored_reason(&self) -> String {
        if self.skipped.is_empty() {
            "no rule matches the event type".to_string()
        } else {
            self.skipped.join("; ")
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
}

impl RuleSet {
    pub fn new(rules: Vec<Rule>) -> RuleSet {
        RuleSet { rules }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Applies every rule of `source` to `event`. Several rules may match.
    pub fn evaluate(&self, source: &str, event: &DecodedEvent) -> Evaluation {
        let mut evaluation = Evaluation::default();
        for rule in self.rules.iter().filter(|rule| rule.source == source) {
            let Some(event_type) = most_specific_match(&rule.event, &event.types) else {
                continue;
            };
            if let Some(name) = event
                .types
                .iter()
                .find(|name| rule.except.iter().any(|pattern| pattern.matches(name)))
            {
                evaluation
                    .skipped
                    .push(format!("rule {}: excluded by event {name}", rule.name));
                continue;
            }
            if let Some((pointer, _)) = rule
                .when
                .iter()
                .find(|(pointer, expected)| event.payload.pointer(pointer) != Some(expected))
            {
                evaluation.skipped.push(format!(
                    "rule {}: condition on {pointer} not met",
                    rule.name
                ));
                continue;
            }
            let Some(user) = string_at(&event.payload, rule.user.pointer()) else {
                evaluation.skipped.push(format!(
                    "rule {}: no user at {} in the payload",
                    rule.name,
                    rule.user.pointer()
                ));
                continue;
            };
            let session_id = match &rule.session {
                None => None,
                Some(pointer) => match string_at(&event.payload, pointer) {
                    Some(session) => Some(session),
                    None => {
                        evaluation.skipped.push(format!(
                            "rule {}: no session at {pointer} in the payload",
                            rule.name
                        ));
                        continue;
                    }
                },
            };
            evaluation.jobs.push(JobSpec {
                rule: rule.name.clone(),
                action: rule.action,
                target: rule.target.clone(),
                user_kind: rule.user.kind(),
                user,
                session_id,
                event_type: event_type.to_string(),
                dry_run: rule.dry_run,
            });
        }
        evaluation
    }
}

/// Returns the matching name with the most segments and, among those, the
/// fewest `*` segments: for Appwrite that is the name with the concrete ids.
fn most_specific_match<'a>(pattern: &Pattern, names: &'a [String]) -> Option<&'a str> {
    names
        .iter()
        .filter(|name| pattern.matches(name))
        .max_by_key(|name| {
            let segments = name.split('.').count();
            let wildcards = name.split('.').filter(|part| *part == "*").count();
            (segments, usize::MAX - wildcards)
        })
        .map(String::as_str)
}

/// Returns the non-empty string at `pointer`. Numbers are not ids, because Appwrite ids are strings.
fn string_at(payload: &Value, pointer: &str) -> Option<String> {
    match payload.pointer(pointer)? {
        Value::String(text) if !text.is_empty() => Some(text.clone()),
        _ => None,
    }
}

/// Checks whether `id` may go into an Appwrite URL path: at most 36 characters of
/// `a-z A-Z 0-9 . - _`, not starting with `.`, `-` or `_` (Appwrite's UID rule).
pub fn is_appwrite_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 36
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pattern(text: &str) -> Pattern {
        Pattern::parse(text).unwrap()
    }

    #[test]
    fn star_matches_one_segment() {
        assert!(pattern("users.*.update.password").matches("users.abc.update.password"));
        assert!(pattern("users.*.update.password").matches("users.*.update.password"));
        assert!(!pattern("users.*.update.password").matches("users.abc.update"));
        assert!(!pattern("users.*").matches("users.abc.update"));
    }

    #[test]
    fn double_star_matches_any_number() {
        assert!(pattern("**").matches("anything.at.all"));
        assert!(pattern("users.**").matches("users"));
        assert!(pattern("users.**").matches("users.a.b.c"));
        assert!(pattern("users.**.delete").matches("users.a.sessions.b.delete"));
        assert!(!pattern("users.**.delete").matches("users.a.delete.mfa"));
    }

    #[test]
    fn pattern_rejects_bad_text() {
        assert!(Pattern::parse("").is_err());
        assert!(Pattern::parse("users..update").is_err());
        assert!(Pattern::parse("users.a*").is_err());
        assert!(Pattern::parse("users.").is_err());
    }

    #[test]
    fn pointer_validation() {
        assert!(validate_pointer("/$id").is_ok());
        assert!(validate_pointer("/data/a~1b").is_ok());
        assert!(validate_pointer("").is_ok());
        assert!(validate_pointer("$id").is_err());
        assert!(validate_pointer("/a~2").is_err());
        assert!(validate_pointer("/a~").is_err());
    }

    #[test]
    fn appwrite_id_rule() {
        assert!(is_appwrite_id("6650c1f2a7b3e9d4c021"));
        assert!(is_appwrite_id("a.b-c_d"));
        assert!(!is_appwrite_id(""));
        assert!(!is_appwrite_id("_leading"));
        assert!(!is_appwrite_id("has/slash"));
        assert!(!is_appwrite_id("user_2a9XkQp4x".repeat(3).as_str()));
        assert!(!is_appwrite_id("../../etc"));
    }

    fn rule(name: &str, event: &str) -> Rule {
        Rule {
            name: name.into(),
            source: "appwrite".into(),
            event: pattern(event),
            except: vec![],
            when: vec![],
            user: UserRef::Id("/$id".into()),
            session: None,
            action: Action::DeleteSessions,
            target: "main".into(),
            dry_run: false,
        }
    }

    fn event(types: &[&str], payload: Value) -> DecodedEvent {
        DecodedEvent {
            delivery_key: "k".into(),
            types: types.iter().map(|t| t.to_string()).collect(),
            payload,
            occurred_at: None,
        }
    }

    #[test]
    fn picks_most_specific_name() {
        let rules = RuleSet::new(vec![rule("r", "users.*.update.password")]);
        let evaluation = rules.evaluate(
            "appwrite",
            &event(
                &[
                    "users.u1.update",
                    "users.*.update.password",
                    "users.u1.update.password",
                    "users.*",
                ],
                json!({"$id": "u1"}),
            ),
        );
        assert_eq!(evaluation.jobs.len(), 1);
        assert_eq!(evaluation.jobs[0].event_type, "users.u1.update.password");
        assert_eq!(evaluation.jobs[0].user, "u1");
    }

    #[test]
    fn except_and_when_skip_with_reasons() {
        let mut delete = rule("on-delete", "users.*.delete");
        delete.except = vec![pattern("users.*.delete.mfa")];
        let mut blocked = rule("on-block", "users.*.update.status");
        blocked.when = vec![("/status".into(), json!(false))];
        let rules = RuleSet::new(vec![delete, blocked]);

        let mfa = rules.evaluate(
            "appwrite",
            &event(&["users.u1.delete", "users.*.delete.mfa"], json!([])),
        );
        assert!(mfa.jobs.is_empty());
        assert!(mfa
            .ignored_reason()
            .contains("excluded by event users.*.delete.mfa"));

        let unblocked = rules.evaluate(
            "appwrite",
            &event(
                &["users.u1.update.status"],
                json!({"$id": "u1", "status": true}),
            ),
        );
        assert!(unblocked.jobs.is_empty());
        assert!(unblocked.ignored_reason().contains("condition on /status"));

        let blocked = rules.evaluate(
            "appwrite",
            &event(
                &["users.u1.update.status"],
                json!({"$id": "u1", "status": false}),
            ),
        );
        assert_eq!(blocked.jobs.len(), 1);
    }

    #[test]
    fn missing_user_or_other_source_makes_no_job() {
        let rules = RuleSet::new(vec![rule("r", "**")]);
        let no_user = rules.evaluate("appwrite", &event(&["users.u1.update"], json!([])));
        assert!(no_user.jobs.is_empty());
        assert!(no_user.ignored_reason().contains("no user at /$id"));

        let other = rules.evaluate("clerk", &event(&["user.updated"], json!({"$id": "u1"})));
        assert!(other.jobs.is_empty());
        assert_eq!(other.ignored_reason(), "no rule matches the event type");
    }

    #[test]
    fn several_rules_make_several_jobs() {
        let mut block = rule("block", "users.*.update.password");
        block.action = Action::BlockUser;
        let rules = RuleSet::new(vec![rule("logout", "users.*.update.password"), block]);
        let evaluation = rules.evaluate(
            "appwrite",
            &event(&["users.u1.update.password"], json!({"$id": "u1"})),
        );
        let actions: Vec<Action> = evaluation.jobs.iter().map(|job| job.action).collect();
        assert_eq!(actions, vec![Action::DeleteSessions, Action::BlockUser]);
    }

    #[test]
    fn session_pointer_is_required_when_set() {
        let mut one = rule("one", "session.revoked");
        one.source = "clerk".into();
        one.user = UserRef::Id("/data/user_id".into());
        one.session = Some("/data/id".into());
        one.action = Action::DeleteSession;
        let rules = RuleSet::new(vec![one]);
        let with_session = rules.evaluate(
            "clerk",
            &event(
                &["session.revoked"],
                json!({"data": {"user_id": "u1", "id": "s1"}}),
            ),
        );
        assert_eq!(with_session.jobs[0].session_id.as_deref(), Some("s1"));
        let without = rules.evaluate(
            "clerk",
            &event(&["session.revoked"], json!({"data": {"user_id": "u1"}})),
        );
        assert!(without.jobs.is_empty());
    }
}
