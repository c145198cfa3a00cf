//! The outcome line: exactly one structured log line per job when it ends.
//!
//! Written with `tracing` under the target `revokd::outcome`, so operators can
//! route or filter it on its own. It carries ids, names and error texts from
//! Appwrite, never a secret, a signature or any part of an event body.

use crate::store::ClaimedJob;

pub const TARGET: &str = "revokd::outcome";

/// The message of every outcome line, for filtering JSON logs.
pub const MESSAGE: &str = "outcome";

pub struct Outcome<'a> {
    pub job: &'a ClaimedJob,
    /// The Appwrite user id, once known: the job's own id, or the result of
    /// an email or identity lookup.
    pub user_id: Option<&'a str>,
    pub attempts: u32,
    /// Milliseconds from receiving the event to the job's end.
    pub latency_ms: i64,
    pub success: bool,
    pub note: Option<&'a str>,
    pub dry_run: bool,
    pub error_type: Option<&'a str>,
    pub error: Option<&'a str>,
}

pub fn log(outcome: &Outcome) {
    let job = outcome.job;
    // For a lookup by email or identity, the line also names what was looked up.
    let lookup = (job.user_kind != "id").then(|| format!("{} {}", job.user_kind, job.user));
    // Optional fields are recorded only when set, so a line has no empty keys.
    tracing::info!(
        target: TARGET,
        event_id = %job.event_id,
        source = %job.source,
        event_type = %job.event_type,
        rule = %job.rule,
        action = %job.action,
        target = %job.target,
        user_id = outcome.user_id.map(display),
        user_lookup = lookup.as_deref().map(display),
        session_id = job.session_id.as_deref().map(display),
        job_id = %job.id,
        attempts = outcome.attempts,
        latency_ms = outcome.latency_ms,
        success = outcome.success,
        note = outcome.note.map(display),
        dry_run = outcome.dry_run.then_some(true),
        error_type = outcome.error_type.map(display),
        error = outcome.error.map(display),
        "outcome"
    );
}
