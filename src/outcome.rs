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
    // A failed job logs at WARN, so that a log filtered to warnings still
    // shows every revocation that did not happen.
    macro_rules! outcome_line {
        ($level:expr) => {
            tracing::event!(
                target: TARGET,
                $level,
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
            )
        };
    }
    if outcome.success {
        outcome_line!(tracing::Level::INFO);
    } else {
        outcome_line!(tracing::Level::WARN);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A log writer that appends to a shared buffer.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Logs one outcome and returns its JSON line.
    fn logged(success: bool) -> serde_json::Value {
        let job = ClaimedJob {
            id: "job1".into(),
            event_id: "event1".into(),
            source: "appwrite".into(),
            rule: "logout".into(),
            action: "delete_sessions".into(),
            target: "main".into(),
            user_kind: "id".into(),
            user: "6650c1f2a7b3e9d4c021".into(),
            session_id: None,
            event_type: "users.6650c1f2a7b3e9d4c021.update.password".into(),
            dry_run: false,
            attempts: 0,
            event_received_at: 0,
        };
        let outcome = Outcome {
            job: &job,
            user_id: Some("6650c1f2a7b3e9d4c021"),
            attempts: 1,
            latency_ms: 5,
            success,
            note: None,
            dry_run: false,
            error_type: (!success).then_some("general_unauthorized_scope"),
            error: (!success).then_some("missing scope"),
        };
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || log(&outcome));
        let bytes = captured.0.lock().unwrap().clone();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn outcome_level_follows_success() {
        let done = logged(true);
        assert_eq!(done["level"], "INFO");
        assert_eq!(done["fields"]["success"], true);
        let failed = logged(false);
        assert_eq!(failed["level"], "WARN");
        assert_eq!(failed["fields"]["success"], false);
        assert_eq!(failed["fields"]["error_type"], "general_unauthorized_scope");
    }
}
