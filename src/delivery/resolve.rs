//! Finds the Appwrite user for a job that names the user by email or by an
//! identity provider's user id.
//!
//! Lookups run in the delivery worker, so an Appwrite outage during a lookup
//! is retried like any other call. A lookup with no match ends the job with
//! `user_unresolved` instead of retrying.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{invalid_id, Failure};
use crate::appwrite::AppwriteClient;
use crate::rules::is_appwrite_id;

/// How long a found user id is reused. Short, because an email or identity
/// can move to another user.
const CACHE_TTL: Duration = Duration::from_secs(60);

/// Maximum cached lookups; the cache is emptied when it grows past this.
const CACHE_CAPACITY: usize = 10_000;

/// (target, user kind, value) of a lookup.
type CacheKey = (String, String, String);

#[derive(Default)]
pub(super) struct UserResolver {
    cache: Mutex<HashMap<CacheKey, (String, Instant)>>,
}

impl UserResolver {
    /// Returns the Appwrite user id for `value`, looked up as `kind`
    /// (`email`, `identity` or `identity:<provider>`).
    pub async fn resolve(
        &self,
        target: &str,
        client: &AppwriteClient,
        kind: &str,
        value: &str,
    ) -> Result<String, Failure> {
        let key = (target.to_string(), kind.to_string(), value.to_string());
        if let Some(id) = self.cached(&key) {
            return Ok(id);
        }
        let (found, described) = match kind {
            "email" => (client.find_users_by_email(value).await, "email"),
            "identity" => (
                client.find_identity_owners(value, None).await,
                "provider user id",
            ),
            _ => match kind.strip_prefix("identity:") {
                Some(provider) => (
                    client.find_identity_owners(value, Some(provider)).await,
                    "provider user id",
                ),
                None => {
                    return Err(Failure::permanent(
                        "unsupported_user_kind",
                        format!("user lookup by `{kind}` is not known to this version"),
                    ))
                }
            },
        };
        let ids = found.map_err(Failure::from)?;
        let id = match ids.as_slice() {
            [id] => id.clone(),
            [] => {
                return Err(Failure::permanent(
                    "user_unresolved",
                    format!("no Appwrite user matches this {described}"),
                ))
            }
            _ => {
                return Err(Failure::permanent(
                    "user_unresolved",
                    format!(
                        "{} Appwrite users match this {described}: refusing to guess",
                        ids.len()
                    ),
                ))
            }
        };
        if !is_appwrite_id(&id) {
            return Err(invalid_id("resolved user"));
        }
        self.store(key, id.clone());
        Ok(id)
    }

    fn cached(&self, key: &CacheKey) -> Option<String> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(key)
            .filter(|(_, at)| at.elapsed() < CACHE_TTL)
            .map(|(id, _)| id.clone())
    }

    fn store(&self, key: CacheKey, id: String) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(key, (id, Instant::now()));
    }
}
