//! Durable storage of events, jobs and attempts.
//!
//! The HTTP layer commits an event and its jobs in one transaction before it
//! acknowledges the request. The delivery workers claim due jobs under a lease
//! and record every attempt. Bodies are never stored, because Appwrite user
//! payloads carry password hashes.

pub mod sqlite;

use async_trait::async_trait;
use serde::Serialize;

/// Milliseconds since the Unix epoch; the unit of every time in the store.
pub type Millis = i64;

/// An event ready to be committed, with the jobs its rules produced.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// revokd's own id for the event (a ULID).
    pub id: String,
    pub source: String,
    pub delivery_key: String,
    /// Every event type name the sender gave, in the sender's order.
    pub types: Vec<String>,
    pub received_at: Millis,
    pub occurred_at: Option<Millis>,
    /// The reason no job was made, when `jobs` is empty.
    pub ignored_reason: Option<String>,
    pub jobs: Vec<NewJob>,
}

/// One action for one user, produced by one rule.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub id: String,
    pub rule: String,
    pub action: String,
    pub target: String,
    /// The form of `user`: `id`, `email`, `identity` or `identity:<provider>`.
    pub user_kind: String,
    pub user: String,
    pub session_id: Option<String>,
    /// The event type name the rule matched.
    pub event_type: String,
    pub dry_run: bool,
}

/// The result for one event of a committed batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingested {
    /// Stored, with this many jobs (zero means recorded as ignored).
    New { event_id: String, jobs: usize },
    /// The (source, delivery key) pair was seen within the retention window.
    Duplicate { event_id: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Pending,
    Done,
    Dead,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Done => "done",
            JobState::Dead => "dead",
        }
    }
}

/// A job claimed by a worker, with what the outcome line needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedJob {
    pub id: String,
    pub event_id: String,
    pub source: String,
    pub rule: String,
    pub action: String,
    pub target: String,
    pub user_kind: String,
    pub user: String,
    pub session_id: Option<String>,
    pub event_type: String,
    pub dry_run: bool,
    /// Attempts counted against `max_attempts` before this claim: those made
    /// since an operator last retried the job, or all of them if none did.
    /// Attempt numbers in the store continue across retries.
    pub attempts: u32,
    /// Start of the job's age for `max_age` and of the outcome line's
    /// `latency_ms`: when the event was received, or when an operator last
    /// retried the job.
    pub event_received_at: Millis,
}

/// One finished call attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub started_at: Millis,
    pub finished_at: Millis,
    /// HTTP status of the last Appwrite response, if any arrived.
    pub status: Option<u16>,
    pub error_type: Option<String>,
    pub error: Option<String>,
}

/// The next state of a claimed job when its worker is done with it.
#[derive(Debug, Clone, PartialEq)]
pub enum Disposition {
    /// Finished successfully, with an optional note such as `user_not_found`.
    Done { note: Option<String> },
    /// Given up: no further attempt.
    Dead,
    /// Try again at this time.
    Retry { at: Millis },
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// The record exists, but its state does not allow the operation.
    #[error("invalid state: {0}")]
    InvalidState(String),
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Commits each event and its jobs in one transaction, skipping events whose
    /// (source, delivery key) pair is already stored. Returns one entry per
    /// event, in order, only after the commit is durable.
    async fn ingest(&self, events: Vec<NewEvent>) -> Result<Vec<Ingested>, StoreError>;

    /// Claims up to `limit` pending jobs due at `now` whose lease is free or
    /// expired, leasing them to `owner` until `now + lease`.
    async fn claim_due(
        &self,
        now: Millis,
        limit: usize,
        lease: Millis,
        owner: &str,
    ) -> Result<Vec<ClaimedJob>, StoreError>;

    /// Returns the earliest time a pending job becomes claimable, if any.
    async fn next_due(&self) -> Result<Option<Millis>, StoreError>;

    /// Records an attempt and moves the job to its next state, releasing the lease.
    async fn finish_attempt(
        &self,
        job_id: &str,
        attempt: Attempt,
        disposition: Disposition,
    ) -> Result<(), StoreError>;

    /// Releases every lease held by `owner` without counting an attempt.
    async fn release(&self, owner: &str) -> Result<usize, StoreError>;

    /// Records that revokd set `user`'s status to `status` on `target` at `at`.
    async fn record_status_change(
        &self,
        target: &str,
        user: &str,
        status: bool,
        at: Millis,
    ) -> Result<(), StoreError>;

    /// Checks whether revokd set `user`'s status to `status` on any target at or after `since`.
    async fn status_changed_since(
        &self,
        user: &str,
        status: bool,
        since: Millis,
    ) -> Result<bool, StoreError>;

    /// Deletes events (with their jobs) older than `before` whose jobs are all
    /// finished, and status records older than `before`. Returns events removed.
    async fn prune(&self, before: Millis) -> Result<usize, StoreError>;

    /// Checks that a write transaction can commit.
    async fn check_writable(&self) -> Result<(), StoreError>;

    /// Counts jobs in each state, for tests and tools.
    async fn job_counts(&self) -> Result<JobCounts, StoreError>;

    /// Returns the jobs of one event with their attempts.
    async fn event_jobs(&self, event_id: &str) -> Result<Vec<JobRecord>, StoreError>;

    /// Lists the events that match `filter`, newest first, with their job
    /// counts.
    async fn list_events(&self, filter: EventFilter) -> Result<Vec<EventSummary>, StoreError>;

    /// Returns one event with its jobs and their attempts, or
    /// `StoreError::NotFound` when no event has this id.
    async fn event_detail(&self, event_id: &str) -> Result<EventDetail, StoreError>;

    /// Moves a dead job back to pending, due at `now` with no lease. Its
    /// attempts stay recorded, and it gets a fresh `max_attempts` budget and
    /// `max_age` from `now` (see [`ClaimedJob`]). Fails with
    /// `StoreError::NotFound` for an unknown id and
    /// `StoreError::InvalidState` when the job is not dead.
    async fn retry_job(&self, job_id: &str, now: Millis) -> Result<RetriedJob, StoreError>;

    /// Retries every dead job as [`Store::retry_job`] does. Returns how many
    /// jobs moved back to pending.
    async fn retry_all_dead(&self, now: Millis) -> Result<usize, StoreError>;
}

/// Default `limit` of an [`EventFilter`].
pub const DEFAULT_EVENT_LIMIT: usize = 100;

/// Which events [`Store::list_events`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFilter {
    /// Only events with at least one job in this state.
    pub state: Option<JobState>,
    /// Only events from this source.
    pub source: Option<String>,
    /// Only events received at or after this time.
    pub since: Option<Millis>,
    /// Maximum number of events returned.
    pub limit: usize,
}

impl Default for EventFilter {
    fn default() -> Self {
        EventFilter {
            state: None,
            source: None,
            since: None,
            limit: DEFAULT_EVENT_LIMIT,
        }
    }
}

/// One line of the event list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventSummary {
    pub id: String,
    pub source: String,
    pub delivery_key: String,
    /// The first event type name the sender gave.
    pub first_type: Option<String>,
    /// Number of event type names the sender gave.
    pub type_count: usize,
    pub received_at: Millis,
    pub ignored_reason: Option<String>,
    /// The event's jobs per state.
    pub jobs: JobCounts,
}

/// An event as stored, with its jobs and their attempts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventDetail {
    pub id: String,
    pub source: String,
    pub delivery_key: String,
    /// Every event type name the sender gave, in the sender's order.
    pub types: Vec<String>,
    pub received_at: Millis,
    pub occurred_at: Option<Millis>,
    pub ignored_reason: Option<String>,
    /// Jobs in the order the rules produced them.
    pub jobs: Vec<JobRecord>,
}

/// A job that [`Store::retry_job`] moved from dead back to pending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetriedJob {
    pub id: String,
    pub event_id: String,
    pub action: String,
    pub target: String,
    pub user: String,
    /// Attempts recorded before the retry. The next attempt gets number
    /// `attempts + 1`.
    pub attempts: u32,
    /// When the job becomes due.
    pub due_at: Millis,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JobCounts {
    pub pending: u64,
    /// Pending jobs whose lease is held right now.
    pub claimed: u64,
    pub done: u64,
    pub dead: u64,
}

/// A job as stored, for inspection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRecord {
    pub id: String,
    pub rule: String,
    pub action: String,
    pub target: String,
    pub user_kind: String,
    pub user: String,
    pub session_id: Option<String>,
    /// The event type name the rule matched.
    pub event_type: String,
    pub dry_run: bool,
    pub state: JobState,
    pub note: Option<String>,
    /// When a pending job is due. For a finished job, the last due time.
    pub next_attempt_at: Millis,
    pub lease_owner: Option<String>,
    pub lease_until: Option<Millis>,
    pub last_error_type: Option<String>,
    pub last_error: Option<String>,
    /// When the job became done or dead.
    pub finished_at: Option<Millis>,
    /// When an operator last moved the job from dead back to pending.
    pub retried_at: Option<Millis>,
    /// Attempts made before that retry, which the `max_attempts` budget
    /// leaves out. Zero for a job never retried.
    pub attempts_before_retry: u32,
    pub attempts: Vec<AttemptRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttemptRecord {
    pub number: u32,
    pub started_at: Millis,
    pub finished_at: Millis,
    pub status: Option<u16>,
    pub error_type: Option<String>,
    pub error: Option<String>,
}
