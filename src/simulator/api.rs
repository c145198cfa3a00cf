//! The Users and Webhooks API routes revokd calls, and the checks Appwrite 1.9.6 runs before them.

use serde_json::{json, Value};

use super::models::{error_body, format_datetime, session_json, user_json};
use super::state::{now_ms, Project, SharedState, UserRecord};

/// The parts of an HTTP request the API logic needs, owned so the logic can run in a spawned task.
pub(crate) struct ApiRequest {
    pub method: String,
    /// Request path with the leading `/v1` removed, e.g. `/users/u1/sessions`.
    pub route_path: String,
    pub query: String,
    /// Value of `X-Appwrite-Project`, if present and non-empty.
    pub project_header: Option<String>,
    /// Value of `X-Appwrite-Key`, if present and non-empty.
    pub key: Option<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// A response before it becomes an actix `HttpResponse`.
pub(crate) enum ApiResponse {
    Json {
        status: u16,
        body: Value,
        headers: Vec<(String, String)>,
    },
    NoContent,
    Text {
        status: u16,
        body: String,
    },
}

impl ApiResponse {
    pub fn status(&self) -> u16 {
        match self {
            ApiResponse::Json { status, .. } | ApiResponse::Text { status, .. } => *status,
            ApiResponse::NoContent => 204,
        }
    }

    pub fn error(status: u16, error_type: &str, message: impl AsRef<str>) -> ApiResponse {
        ApiResponse::Json {
            status,
            body: error_body(status, error_type, message.as_ref()),
            headers: Vec::new(),
        }
    }

    fn ok(body: Value) -> ApiResponse {
        ApiResponse::Json {
            status: 200,
            body,
            headers: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Operation {
    ListSessions,
    DeleteSessions,
    DeleteSession,
    UpdateStatus,
    ListUsers,
    ListIdentities,
    ListWebhooks,
}

impl Operation {
    /// Scopes that allow the operation. Appwrite 1.9.6 accepts a key holding any one of them.
    fn scopes(self) -> &'static [&'static str] {
        match self {
            Operation::ListSessions => &["users.read", "sessions.read"],
            Operation::DeleteSessions | Operation::DeleteSession => {
                &["users.write", "sessions.write"]
            }
            Operation::UpdateStatus => &["users.write"],
            Operation::ListUsers | Operation::ListIdentities => &["users.read"],
            Operation::ListWebhooks => &["webhooks.read"],
        }
    }
}

struct Route {
    operation: Operation,
    /// Empty for the list routes, which take no user in the path.
    user_id: String,
    session_id: Option<String>,
}

/// Matches method and path against the routes and decodes the path parameters.
fn match_route(method: &str, route_path: &str) -> Option<Route> {
    let segments: Vec<&str> = route_path.strip_prefix('/')?.split('/').collect();
    let list = |operation| {
        Some(Route {
            operation,
            user_id: String::new(),
            session_id: None,
        })
    };
    match (method, segments.as_slice()) {
        ("GET", ["users"]) => return list(Operation::ListUsers),
        ("GET", ["users", "identities"]) => return list(Operation::ListIdentities),
        ("GET", ["webhooks"]) => return list(Operation::ListWebhooks),
        _ => {}
    }
    let (operation, session_id) = match (method, segments.as_slice()) {
        ("GET", ["users", _, "sessions"]) => (Operation::ListSessions, None),
        ("DELETE", ["users", _, "sessions"]) => (Operation::DeleteSessions, None),
        ("DELETE", ["users", _, "sessions", session]) => {
            (Operation::DeleteSession, Some(percent_decode(session)))
        }
        ("PATCH", ["users", _, "status"]) => (Operation::UpdateStatus, None),
        _ => return None,
    };
    Some(Route {
        operation,
        user_id: percent_decode(segments[1]),
        session_id,
    })
}

/// Decodes `%XX` escapes. Invalid escapes stay as they are, and bytes that do not form UTF-8
/// become U+FFFD, which the ID check then rejects.
pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = bytes.get(i + 1..i + 3).and_then(|hex| {
            let hex = std::str::from_utf8(hex).ok()?;
            u8::from_str_radix(hex, 16).ok()
        });
        match (bytes[i], escape) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                i += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// Returns the decoded value of query parameter `name` (form encoding, so `+` means a space).
pub(crate) fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(&key.replace('+', " ")) == name)
            .then(|| percent_decode(&value.replace('+', " ")))
    })
}

/// Checks an Appwrite custom ID: 1 to 36 characters of `a-zA-Z0-9._-`, not starting with
/// `.`, `-` or `_`.
fn is_valid_id(id: &str) -> bool {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    match id.chars().next() {
        Some(first) => first.is_ascii_alphanumeric() && id.len() <= 36 && id.chars().all(allowed),
        None => false,
    }
}

fn check_id(param: &str, value: &str) -> Result<(), ApiResponse> {
    if is_valid_id(value) {
        return Ok(());
    }
    Err(ApiResponse::error(
        400,
        "general_argument_invalid",
        format!(
            "Invalid `{param}` param: expected 1 to 36 characters of a-z, A-Z, 0-9, period, \
             hyphen or underscore, not starting with a special character"
        ),
    ))
}

fn missing_scopes_error(role: &str, operation: Operation) -> ApiResponse {
    let scopes = serde_json::to_string(operation.scopes()).unwrap_or_default();
    ApiResponse::error(
        401,
        "general_unauthorized_scope",
        format!("{role} missing scopes ({scopes})"),
    )
}

/// Handles one `/v1` request after any fault: route, project, key, scope, arguments, user.
pub(crate) fn respond(state: &SharedState, request: &ApiRequest) -> ApiResponse {
    let Some(route) = match_route(&request.method, &request.route_path) else {
        return ApiResponse::error(
            404,
            "general_route_not_found",
            format!(
                "Route not found: {} /v1{}",
                request.method, request.route_path
            ),
        );
    };

    let project_id = request
        .project_header
        .clone()
        .or_else(|| query_param(&request.query, "project").filter(|p| !p.is_empty()));
    let Some(project_id) = project_id else {
        // NOTE: Appwrite 1.9.6 falls back to its `console` project when no project is given.
        // A project key then fails with `project_id_missing`, and a request without a key runs
        // as a guest. This follows a reading of Appwrite's code and is not confirmed by a test.
        return match request.key {
            Some(_) => ApiResponse::error(
                403,
                "project_id_missing",
                "Missing project ID: send the X-Appwrite-Project header",
            ),
            None => missing_scopes_error("User (role: guests)", route.operation),
        };
    };

    let mut projects = state.projects();
    let Some(project) = projects.get_mut(&project_id) else {
        return ApiResponse::error(
            404,
            "project_not_found",
            format!("Project with the requested ID '{project_id}' could not be found"),
        );
    };

    let key_scopes = match &request.key {
        None => return missing_scopes_error("User (role: guests)", route.operation),
        Some(key) => match project.keys.get(key) {
            Some(scopes) => scopes,
            None => {
                return ApiResponse::error(
                    401,
                    "user_unauthorized",
                    "The API key is not valid for this project",
                )
            }
        },
    };
    let allowed = route
        .operation
        .scopes()
        .iter()
        .any(|needed| key_scopes.iter().any(|held| held == needed));
    if !allowed {
        return missing_scopes_error("API key (role: applications)", route.operation);
    }

    let takes_user = !matches!(
        route.operation,
        Operation::ListUsers | Operation::ListIdentities | Operation::ListWebhooks
    );
    if takes_user {
        if let Err(response) = check_id("userId", &route.user_id) {
            return response;
        }
    }
    if let Some(session_id) = &route.session_id {
        if let Err(response) = check_id("sessionId", session_id) {
            return response;
        }
    }

    let result = match route.operation {
        Operation::ListSessions => list_sessions(project, &route.user_id, &request.query),
        Operation::DeleteSessions => delete_sessions(project, &route.user_id),
        Operation::DeleteSession => {
            let session_id = route.session_id.as_deref().unwrap_or_default();
            delete_session(project, &route.user_id, session_id)
        }
        Operation::UpdateStatus => update_status(project, &route.user_id, request),
        Operation::ListUsers => list_users(project, &request.query),
        Operation::ListIdentities => list_identities(project, &request.query),
        Operation::ListWebhooks => Ok(list_webhooks(project)),
    };
    result.unwrap_or_else(|error| error)
}

/// One `equal` filter from the `queries[]` parameter.
struct EqualFilter {
    attribute: String,
    values: Vec<Value>,
}

/// Reads every `queries[…]` parameter. Appwrite 1.9 takes each query as a
/// JSON string such as `{"method":"equal","attribute":"email","values":["a@b"]}`.
/// The simulator supports `equal` on the attributes in `allowed`.
fn equal_filters(query: &str, allowed: &[&str]) -> Result<Vec<EqualFilter>, ApiResponse> {
    let invalid = |message: String| ApiResponse::error(400, "general_query_invalid", message);
    let mut filters = Vec::new();
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(&key.replace('+', " "));
        if !key.starts_with("queries[") {
            continue;
        }
        let text = percent_decode(&value.replace('+', " "));
        let parsed: Value =
            serde_json::from_str(&text).map_err(|_| invalid(format!("Invalid query: {text}")))?;
        let method = parsed.get("method").and_then(Value::as_str).unwrap_or("");
        let attribute = parsed
            .get("attribute")
            .and_then(Value::as_str)
            .unwrap_or("");
        let values = parsed.get("values").and_then(Value::as_array).cloned();
        match (method, values) {
            ("equal", Some(values)) if allowed.contains(&attribute) => filters.push(EqualFilter {
                attribute: attribute.to_owned(),
                values,
            }),
            ("equal", Some(_)) => {
                return Err(invalid(format!(
                    "Invalid query: Attribute not found in schema: {attribute}"
                )))
            }
            _ => return Err(invalid(format!("Invalid query method: {method}"))),
        }
    }
    Ok(filters)
}

fn matches_all(filters: &[EqualFilter], field: impl Fn(&str) -> Option<String>) -> bool {
    filters.iter().all(|filter| {
        field(&filter.attribute).is_some_and(|actual| {
            filter
                .values
                .iter()
                .any(|value| value.as_str() == Some(&actual))
        })
    })
}

fn list_users(project: &Project, query: &str) -> Result<ApiResponse, ApiResponse> {
    let filters = equal_filters(query, &["email", "name", "status"])?;
    let mut users: Vec<&UserRecord> = project
        .users
        .values()
        .filter(|user| {
            matches_all(&filters, |attribute| match attribute {
                "email" => Some(user.email.clone()),
                _ => None,
            })
        })
        .collect();
    users.sort_by(|a, b| a.id.cmp(&b.id));
    let list: Vec<Value> = users.iter().map(|user| user_json(user)).collect();
    Ok(ApiResponse::ok(json!({"total": list.len(), "users": list})))
}

fn list_identities(project: &Project, query: &str) -> Result<ApiResponse, ApiResponse> {
    let filters = equal_filters(
        query,
        &["userId", "provider", "providerUid", "providerEmail"],
    )?;
    let mut identities = Vec::new();
    for user in project.users.values() {
        for identity in &user.identities {
            let keep = matches_all(&filters, |attribute| match attribute {
                "userId" => Some(user.id.clone()),
                "provider" => Some(identity.provider.clone()),
                "providerUid" => Some(identity.provider_uid.clone()),
                "providerEmail" => Some(identity.provider_email.clone()),
                _ => None,
            });
            if keep {
                identities.push(json!({
                    "$id": identity.id,
                    "$createdAt": format_datetime(identity.created_ms),
                    "$updatedAt": format_datetime(identity.created_ms),
                    "userId": user.id,
                    "provider": identity.provider,
                    "providerUid": identity.provider_uid,
                    "providerEmail": identity.provider_email,
                    "providerAccessToken": "",
                    "providerAccessTokenExpiry": format_datetime(identity.created_ms),
                    "providerRefreshToken": "",
                }));
            }
        }
    }
    Ok(ApiResponse::ok(
        json!({"total": identities.len(), "identities": identities}),
    ))
}

fn list_webhooks(project: &Project) -> ApiResponse {
    let hooks: Vec<Value> = project
        .webhooks
        .iter()
        .map(|hook| {
            json!({
                "$id": hook.id,
                "$createdAt": format_datetime(0),
                "$updatedAt": format_datetime(0),
                "name": hook.name,
                "url": hook.url,
                "events": ["users.*.update.password"],
                "tls": true,
                "authUsername": "",
                "authPassword": "",
                "secret": "",
                "enabled": hook.enabled,
                "logs": hook.logs,
                "attempts": hook.attempts,
            })
        })
        .collect();
    ApiResponse::ok(json!({"total": hooks.len(), "webhooks": hooks}))
}

fn user_not_found(user_id: &str) -> ApiResponse {
    ApiResponse::error(
        404,
        "user_not_found",
        format!("User with the requested ID '{user_id}' could not be found"),
    )
}

/// Reads the loose boolean form Appwrite accepts in query strings.
fn parse_query_bool(value: &str) -> Option<bool> {
    match value {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

fn list_sessions(
    project: &Project,
    user_id: &str,
    query: &str,
) -> Result<ApiResponse, ApiResponse> {
    let count_total = match query_param(query, "total") {
        None => true,
        Some(value) => parse_query_bool(&value).ok_or_else(|| {
            ApiResponse::error(
                400,
                "general_argument_invalid",
                format!("Invalid `total` param: expected a boolean, got '{value}'"),
            )
        })?,
    };

    let user = project
        .users
        .get(user_id)
        .ok_or_else(|| user_not_found(user_id))?;
    let sessions: Vec<Value> = user
        .sessions
        .iter()
        .map(|session| session_json(session, user))
        .collect();
    // Appwrite returns `total: 0` when the caller sets `total=false`.
    let total = if count_total { sessions.len() } else { 0 };
    Ok(ApiResponse::ok(
        json!({"total": total, "sessions": sessions}),
    ))
}

fn delete_sessions(project: &mut Project, user_id: &str) -> Result<ApiResponse, ApiResponse> {
    let user = project
        .users
        .get_mut(user_id)
        .ok_or_else(|| user_not_found(user_id))?;
    let removed: Vec<String> = user.sessions.drain(..).map(|s| s.id).collect();
    for session_id in removed {
        project.session_owners.remove(&session_id);
    }
    Ok(ApiResponse::NoContent)
}

fn delete_session(
    project: &mut Project,
    user_id: &str,
    session_id: &str,
) -> Result<ApiResponse, ApiResponse> {
    if !project.users.contains_key(user_id) {
        return Err(user_not_found(user_id));
    }
    // This mirrors Appwrite 1.9.6: the session is looked up by ID across the whole project and
    // is not checked against `userId`, so a session of another user is deleted too.
    if !project.remove_session(session_id) {
        return Err(ApiResponse::error(
            404,
            "user_session_not_found",
            format!("Session with the requested ID '{session_id}' could not be found"),
        ));
    }
    Ok(ApiResponse::NoContent)
}

fn update_status(
    project: &mut Project,
    user_id: &str,
    request: &ApiRequest,
) -> Result<ApiResponse, ApiResponse> {
    let status = parse_status_body(request)?;
    let user = project
        .users
        .get_mut(user_id)
        .ok_or_else(|| user_not_found(user_id))?;
    user.status = status;
    user.updated_ms = now_ms();
    Ok(ApiResponse::ok(user_json(user)))
}

/// Reads `status` from a JSON body.
///
/// NOTE: Appwrite 1.9.6 validates `status` with a loose boolean check that probably also
/// accepts `"false"` and `0`. The simulator accepts only JSON booleans so that a client sending
/// another type fails here.
fn parse_status_body(request: &ApiRequest) -> Result<bool, ApiResponse> {
    let invalid = |message: &str| ApiResponse::error(400, "general_argument_invalid", message);

    // Appwrite decodes the body as JSON only when the Content-Type is application/json, so a JSON
    // body sent with another type leaves `status` missing.
    let is_json = request.content_type.as_deref().is_some_and(|value| {
        value
            .split(';')
            .next()
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
    });
    let params: Value = if is_json && !request.body.is_empty() {
        serde_json::from_slice(&request.body)
            .map_err(|_| invalid("Invalid request body: expected a JSON object"))?
    } else {
        Value::Null
    };

    match params.get("status") {
        None | Some(Value::Null) => Err(invalid(
            "Param \"status\" is not optional: send a JSON body {\"status\": true|false} \
             with Content-Type: application/json",
        )),
        Some(Value::Bool(status)) => Ok(*status),
        Some(other) => Err(invalid(&format!(
            "Invalid `status` param: expected a boolean, got {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::{is_valid_id, percent_decode, query_param};

    #[test]
    fn id_rules() {
        assert!(is_valid_id("a"));
        assert!(is_valid_id("user_1.b-c"));
        assert!(is_valid_id(&"x".repeat(36)));
        assert!(!is_valid_id(&"x".repeat(37)));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id("_a"));
        assert!(!is_valid_id(".a"));
        assert!(!is_valid_id("-a"));
        assert!(!is_valid_id("a b"));
        assert!(!is_valid_id("a/b"));
    }

    #[test]
    fn decoding_helpers() {
        assert_eq!(percent_decode("a%41b"), "aAb");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(
            query_param("a=1&total=false", "total").as_deref(),
            Some("false")
        );
        assert_eq!(
            query_param("project=my+proj", "project").as_deref(),
            Some("my proj")
        );
        assert_eq!(query_param("a=1", "total"), None);
    }
}
