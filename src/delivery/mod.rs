//! Delivery workers: claim due jobs, call Appwrite, record the outcome.
//!
//! Delivery is at least once: a job is only marked done after its calls
//! succeeded, and a job whose worker died is claimed again once its lease
//! runs out. Every action is idempotent, so a repeat does no harm.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

mod resolve;

use crate::appwrite::{AppwriteClient, CallError};
use crate::config::DeliveryConfig;
use crate::outcome::{self, Outcome};
use crate::rules::{is_appwrite_id, Action};
use crate::store::{Attempt, ClaimedJob, Disposition, Millis, Store};
use resolve::UserResolver;

/// How long a status change made by revokd is remembered, so the webhook it
/// causes is not acted on again.
pub const OWN_STATUS_CHANGE_WINDOW: Millis = 10 * 60 * 1000;

/// Maximum wait between polls when nothing is due, so jobs released by
/// another process are picked up.
const MAX_IDLE_WAIT: Duration = Duration::from_secs(5);

pub fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

/// One Appwrite target as the workers use it.
pub struct TargetHandle {
    pub client: AppwriteClient,
    /// Limits concurrent calls to this target.
    pub permits: Arc<Semaphore>,
}

pub struct Delivery {
    store: Arc<dyn Store>,
    targets: HashMap<String, TargetHandle>,
    config: DeliveryConfig,
    /// Lease owner name, unique per process.
    owner: String,
    wake: Arc<Notify>,
    resolver: UserResolver,
}

/// The result of one job run, before it is written to the store.
#[derive(Debug, Clone, PartialEq)]
enum RunResult {
    Done { note: Option<&'static str> },
    DryRun,
    Failed(Failure),
}

#[derive(Debug, Clone, PartialEq)]
struct Failure {
    error_type: String,
    message: String,
    status: Option<u16>,
    retryable: bool,
    retry_after: Option<Duration>,
}

impl Failure {
    fn permanent(error_type: &str, message: String) -> Failure {
        Failure {
            error_type: error_type.to_string(),
            message,
            status: None,
            retryable: false,
            retry_after: None,
        }
    }
}

impl From<CallError> for Failure {
    fn from(error: CallError) -> Failure {
        let status = error.status();
        let retryable = match status {
            None => true,
            Some(code) => code == 408 || code == 429 || code >= 500,
        };
        let retry_after = match &error {
            CallError::Api { retry_after, .. } => *retry_after,
            _ => None,
        };
        Failure {
            error_type: error.error_type().to_string(),
            message: match &error {
                CallError::Api { message, .. } => message.clone(),
                other => other.to_string(),
            },
            status,
            retryable,
            retry_after,
        }
    }
}

impl Delivery {
    pub fn new(
        store: Arc<dyn Store>,
        targets: HashMap<String, TargetHandle>,
        config: DeliveryConfig,
        wake: Arc<Notify>,
    ) -> Delivery {
        Delivery {
            store,
            targets,
            config,
            owner: format!("revokd-{}-{}", std::process::id(), ulid::Ulid::new()),
            wake,
            resolver: UserResolver::default(),
        }
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Runs until `shutdown` turns true, then lets in-flight jobs finish for
    /// up to `grace` and releases the leases of any still running.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>, grace: Duration) {
        let capacity = self.targets.len().max(1) * self.config.concurrency_per_target;
        let slots = Arc::new(Semaphore::new(capacity));
        let mut running = JoinSet::new();
        tracing::info!(owner = %self.owner, capacity, "delivery started");
        loop {
            while running.try_join_next().is_some() {}
            if *shutdown.borrow() {
                break;
            }
            let free = slots.available_permits();
            let now = now_millis();
            let claimed = if free == 0 {
                Vec::new()
            } else {
                match self
                    .store
                    .claim_due(
                        now,
                        free,
                        self.config.lease.as_millis() as Millis,
                        &self.owner,
                    )
                    .await
                {
                    Ok(jobs) => jobs,
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot claim jobs; retrying shortly");
                        Vec::new()
                    }
                }
            };
            let claimed_any = !claimed.is_empty();
            for job in claimed {
                let permit = slots.clone().acquire_owned().await.expect("never closed");
                let delivery = self.clone();
                running.spawn(async move { delivery.process(job, permit).await });
            }
            if claimed_any && slots.available_permits() > 0 {
                continue;
            }
            // With every slot taken, the next turn comes when a slot is freed
            // or new events arrive, so the due time is not needed.
            let wait = self.idle_wait(now, slots.available_permits() == 0).await;
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
                Some(_) = running.join_next(), if !running.is_empty() => {}
            }
        }

        tracing::info!(in_flight = running.len(), "delivery stopping");
        let drained = tokio::time::timeout(grace, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            running.abort_all();
            while running.join_next().await.is_some() {}
        }
        match self.store.release(&self.owner).await {
            Ok(released) => tracing::info!(released, "delivery stopped"),
            Err(err) => {
                tracing::error!(error = %err, "cannot release claimed jobs; they are claimed again after their lease")
            }
        }
    }

    async fn idle_wait(&self, now: Millis, busy: bool) -> Duration {
        if busy {
            return MAX_IDLE_WAIT;
        }
        match self.store.next_due().await {
            Ok(Some(due)) if due > now => {
                Duration::from_millis((due - now) as u64).min(MAX_IDLE_WAIT)
            }
            Ok(Some(_)) => Duration::from_millis(10),
            _ => MAX_IDLE_WAIT,
        }
    }

    /// Runs one claimed job and records what happened. The slot is freed
    /// once the calls are done, so that recording, which waits for the store's
    /// next commit, does not keep the next job from being claimed.
    async fn process(&self, job: ClaimedJob, slot: OwnedSemaphorePermit) {
        let started_at = now_millis();
        let (result, resolved_user) = self.execute(&job).await;
        drop(slot);
        self.wake.notify_one();
        let finished_at = now_millis();
        let attempts = job.attempts + 1;

        let attempt = |failure: Option<&Failure>| Attempt {
            started_at,
            finished_at,
            status: failure.and_then(|failure| failure.status),
            error_type: failure.map(|failure| failure.error_type.clone()),
            error: failure.map(|failure| failure.message.clone()),
        };
        let (disposition, attempt) = match &result {
            RunResult::Done { note } => (
                Disposition::Done {
                    note: note.map(str::to_string),
                },
                attempt(None),
            ),
            RunResult::DryRun => (
                Disposition::Done {
                    note: Some("dry_run".into()),
                },
                attempt(None),
            ),
            RunResult::Failed(failure) => (
                self.failure_disposition(&job, attempts, failure, finished_at),
                attempt(Some(failure)),
            ),
        };

        if let Err(err) = self
            .store
            .finish_attempt(&job.id, attempt, disposition.clone())
            .await
        {
            // The lease runs out and the job is run again: at least once.
            tracing::error!(job_id = %job.id, event_id = %job.event_id, error = %err,
                "cannot record the job's attempt; it is retried after its lease");
            return;
        }

        let latency_ms = finished_at - job.event_received_at;
        match (&disposition, result) {
            (Disposition::Retry { at }, RunResult::Failed(failure)) => {
                tracing::warn!(
                    job_id = %job.id,
                    event_id = %job.event_id,
                    action = %job.action,
                    target = %job.target,
                    attempts,
                    error_type = %failure.error_type,
                    error = %failure.message,
                    retry_in_ms = at - finished_at,
                    "Appwrite call failed; retrying"
                );
            }
            (_, result) => {
                let (note, error_type, error) = match &result {
                    RunResult::Done { note } => (*note, None, None),
                    RunResult::DryRun => (None, None, None),
                    RunResult::Failed(failure) => (
                        None,
                        Some(failure.error_type.as_str()),
                        Some(failure.message.as_str()),
                    ),
                };
                outcome::log(&Outcome {
                    job: &job,
                    user_id: resolved_user.as_deref(),
                    attempts,
                    latency_ms,
                    success: error_type.is_none(),
                    note,
                    dry_run: result == RunResult::DryRun,
                    error_type,
                    error,
                });
            }
        }
    }

    fn failure_disposition(
        &self,
        job: &ClaimedJob,
        attempts: u32,
        failure: &Failure,
        now: Millis,
    ) -> Disposition {
        if !failure.retryable || attempts >= self.config.max_attempts {
            return Disposition::Dead;
        }
        let delay = failure.retry_after.unwrap_or_else(|| {
            backoff_delay(
                attempts,
                self.config.backoff_base,
                self.config.backoff_max,
                &mut rand::thread_rng(),
            )
        });
        let at = now + delay.as_millis() as Millis;
        if at - job.event_received_at > self.config.max_age.as_millis() as Millis {
            return Disposition::Dead;
        }
        Disposition::Retry { at }
    }

    /// Runs the job's calls. Returns the result and the Appwrite user id, once known.
    async fn execute(&self, job: &ClaimedJob) -> (RunResult, Option<String>) {
        let Some(action) = Action::parse(&job.action) else {
            let failure = Failure::permanent(
                "unknown_action",
                format!("action `{}` is not known to this version", job.action),
            );
            return (RunResult::Failed(failure), None);
        };
        let known_id = (job.user_kind == "id").then(|| job.user.clone());
        if known_id.is_some() && !is_appwrite_id(&job.user) {
            return (RunResult::Failed(invalid_id("user")), None);
        }
        if let Some(session) = &job.session_id {
            if !is_appwrite_id(session) {
                return (RunResult::Failed(invalid_id("session")), known_id);
            }
        }
        // A dry run makes no call at all, so a lookup by email or identity is skipped too.
        if job.dry_run {
            return (RunResult::DryRun, known_id);
        }
        let Some(target) = self.targets.get(&job.target) else {
            let failure = Failure::permanent(
                "unknown_target",
                format!("target `{}` is not in the config any more", job.target),
            );
            return (RunResult::Failed(failure), known_id);
        };
        let _permit = target.permits.acquire().await.expect("never closed");
        let user = match known_id {
            Some(id) => id,
            None => match self
                .resolver
                .resolve(&job.target, &target.client, &job.user_kind, &job.user)
                .await
            {
                Ok(id) => id,
                Err(failure) => return (RunResult::Failed(failure), None),
            },
        };
        let result = match self.call(action, job, &user, &target.client).await {
            Ok(note) => RunResult::Done { note },
            Err(failure) => RunResult::Failed(failure),
        };
        (result, Some(user))
    }

    async fn call(
        &self,
        action: Action,
        job: &ClaimedJob,
        user: &str,
        client: &AppwriteClient,
    ) -> Result<Option<&'static str>, Failure> {
        match action {
            Action::DeleteSessions => revoke_all(client, user).await,
            Action::DeleteSession => {
                let session = job.session_id.as_deref().unwrap_or_default();
                let sessions = match client.list_sessions(user).await {
                    Ok(sessions) => sessions,
                    Err(err) if err.is_user_not_found() => return Ok(Some("user_not_found")),
                    Err(err) => return Err(err.into()),
                };
                // Appwrite 1.9.6 deletes a session by id without checking its
                // owner, so only a session listed for this user is deleted.
                if !sessions.iter().any(|listed| listed.id == session) {
                    return Ok(Some("session_not_found"));
                }
                match client.delete_session(user, session).await {
                    Ok(()) => Ok(None),
                    Err(CallError::Api {
                        status: 404,
                        error_type,
                        ..
                    }) if error_type == "user_session_not_found" => Ok(Some("session_not_found")),
                    Err(err) if err.is_user_not_found() => Ok(Some("user_not_found")),
                    Err(err) => Err(err.into()),
                }
            }
            Action::BlockUser => {
                self.record_status_change(job, user, false).await?;
                match client.update_status(user, false).await {
                    Ok(()) => {}
                    Err(err) if err.is_user_not_found() => return Ok(Some("user_not_found")),
                    Err(err) => return Err(err.into()),
                }
                // Blocking alone leaves the user's sessions alive.
                revoke_all(client, user).await
            }
            Action::UnblockUser => {
                self.record_status_change(job, user, true).await?;
                client
                    .update_status(user, true)
                    .await
                    .map_err(Failure::from)?;
                Ok(None)
            }
        }
    }

    /// Records the status change before making it, so the webhook Appwrite
    /// sends for it is recognised even if it arrives before the call returns.
    async fn record_status_change(
        &self,
        job: &ClaimedJob,
        user: &str,
        status: bool,
    ) -> Result<(), Failure> {
        self.store
            .record_status_change(&job.target, user, status, now_millis())
            .await
            .map_err(|err| Failure {
                error_type: "store".into(),
                message: err.to_string(),
                status: None,
                retryable: true,
                retry_after: None,
            })
    }
}

fn invalid_id(what: &str) -> Failure {
    Failure::permanent(
        "invalid_id",
        format!("{what} id is not an Appwrite id (at most 36 characters of a-z A-Z 0-9 . - _)"),
    )
}

async fn revoke_all(client: &AppwriteClient, user: &str) -> Result<Option<&'static str>, Failure> {
    match client.delete_sessions(user).await {
        Ok(()) => Ok(None),
        Err(err) if err.is_user_not_found() => Ok(Some("user_not_found")),
        Err(err) => Err(err.into()),
    }
}

/// Capped exponential backoff with full jitter: a uniform delay between zero
/// and `min(max, base × 2^(attempts − 1))`.
pub fn backoff_delay(attempts: u32, base: Duration, max: Duration, rng: &mut impl Rng) -> Duration {
    let exponent = attempts.saturating_sub(1).min(30);
    let ceiling = base.saturating_mul(1u32 << exponent).min(max);
    let millis = ceiling.as_millis() as u64;
    Duration::from_millis(rng.gen_range(0..=millis))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn backoff_stays_under_the_cap() {
        let mut rng = StdRng::seed_from_u64(7);
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(600);
        for attempts in 1..40 {
            let ceiling = base.saturating_mul(1u32 << (attempts - 1).min(30)).min(max);
            for _ in 0..50 {
                assert!(backoff_delay(attempts, base, max, &mut rng) <= ceiling);
            }
        }
    }

    #[test]
    fn backoff_spreads_over_the_window() {
        let mut rng = StdRng::seed_from_u64(11);
        let delays: Vec<Duration> = (0..200)
            .map(|_| {
                backoff_delay(
                    5,
                    Duration::from_secs(1),
                    Duration::from_secs(600),
                    &mut rng,
                )
            })
            .collect();
        let max = delays.iter().max().unwrap();
        let min = delays.iter().min().unwrap();
        assert!(*max > Duration::from_secs(12), "max {max:?}");
        assert!(*min < Duration::from_secs(4), "min {min:?}");
    }

    fn api(status: u16, error_type: &str) -> CallError {
        CallError::Api {
            status,
            error_type: error_type.into(),
            message: "m".into(),
            retry_after: None,
        }
    }

    #[test]
    fn retry_classes() {
        for status in [408, 429, 500, 502, 503, 504] {
            assert!(Failure::from(api(status, "x")).retryable, "{status}");
        }
        for status in [400, 401, 403, 404, 409] {
            assert!(!Failure::from(api(status, "x")).retryable, "{status}");
        }
        assert!(Failure::from(CallError::Timeout("t".into())).retryable);
        assert!(Failure::from(CallError::Connect("c".into())).retryable);
        assert!(Failure::from(CallError::Transport("r".into())).retryable);
    }
}
