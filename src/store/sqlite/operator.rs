//! SQL statements for the operator tools: listing events, reading one event
//! and retrying dead jobs. Like `ops`, each function runs on the writer
//! thread inside a transaction that its caller opens and commits.

use rusqlite::types::{ToSql, Type};
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::ops;
use crate::store::{
    EventDetail, EventFilter, EventSummary, JobCounts, JobState, Millis, RetriedJob,
};

/// Returns the events that match `filter`, newest first. `claimed` in each
/// count is the number of pending jobs whose lease runs past `now`.
pub(super) fn list_events(
    conn: &Connection,
    filter: &EventFilter,
    now: Millis,
) -> rusqlite::Result<Vec<EventSummary>> {
    if filter.limit == 0 {
        return Ok(Vec::new());
    }
    // SQLite reads a negative LIMIT as "no limit", so clamp instead of wrapping.
    let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
    let state = filter.state.map(JobState::as_str);

    // Only the filters in use become conditions, so SQLite can plan each
    // combination on its own indexes. The values stay bound parameters.
    let mut conditions = Vec::new();
    let mut values: Vec<&dyn ToSql> = vec![&now, &limit];
    if let Some(state) = &state {
        values.push(state);
        conditions.push(format!(
            "e.id IN (SELECT event_id FROM jobs WHERE state = ?{})",
            values.len()
        ));
    }
    if let Some(source) = &filter.source {
        values.push(source);
        conditions.push(format!("e.source = ?{}", values.len()));
    }
    if let Some(since) = &filter.since {
        values.push(since);
        conditions.push(format!("e.received_at >= ?{}", values.len()));
    }
    let where_clause = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };

    // The inner query picks the page of events first, so jobs are counted
    // for those events only.
    let sql = format!(
        "WITH picked AS (
             SELECT e.id, e.source, e.delivery_key, e.types, e.received_at, e.ignored_reason
             FROM events e
             {where_clause}
             ORDER BY e.received_at DESC, e.id DESC
             LIMIT ?2
         )
         SELECT p.id, p.source, p.delivery_key, p.types, p.received_at, p.ignored_reason,
                COALESCE(SUM(j.state = 'pending'), 0),
                COALESCE(SUM(j.state = 'pending' AND j.lease_until > ?1), 0),
                COALESCE(SUM(j.state = 'done'), 0),
                COALESCE(SUM(j.state = 'dead'), 0)
         FROM picked p LEFT JOIN jobs j ON j.event_id = p.id
         GROUP BY p.id
         ORDER BY p.received_at DESC, p.id DESC"
    );
    let mut select = conn.prepare(&sql)?;
    let events = select
        .query_map(values.as_slice(), event_summary_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(events)
}

fn event_summary_from_row(row: &Row<'_>) -> rusqlite::Result<EventSummary> {
    let types = types_from_column(row, 3)?;
    Ok(EventSummary {
        id: row.get(0)?,
        source: row.get(1)?,
        delivery_key: row.get(2)?,
        first_type: types.first().cloned(),
        type_count: types.len(),
        received_at: row.get(4)?,
        ignored_reason: row.get(5)?,
        jobs: JobCounts {
            pending: row.get(6)?,
            claimed: row.get(7)?,
            done: row.get(8)?,
            dead: row.get(9)?,
        },
    })
}

/// Decodes the JSON array of event type names stored in `events.types`.
fn types_from_column(row: &Row<'_>, index: usize) -> rusqlite::Result<Vec<String>> {
    let text: String = row.get(index)?;
    serde_json::from_str(&text).map_err(|err| {
        rusqlite::Error::FromSqlConversionFailure(
            index,
            Type::Text,
            format!("invalid event types {text:?}: {err}").into(),
        )
    })
}

/// Returns the event with its jobs and their attempts, or `None` when no
/// event has this id.
pub(super) fn event_detail(
    conn: &Connection,
    event_id: &str,
) -> rusqlite::Result<Option<EventDetail>> {
    let event = conn
        .query_row(
            "SELECT id, source, delivery_key, types, received_at, occurred_at, ignored_reason
             FROM events WHERE id = ?1",
            [event_id],
            |row| {
                Ok(EventDetail {
                    id: row.get(0)?,
                    source: row.get(1)?,
                    delivery_key: row.get(2)?,
                    types: types_from_column(row, 3)?,
                    received_at: row.get(4)?,
                    occurred_at: row.get(5)?,
                    ignored_reason: row.get(6)?,
                    jobs: Vec::new(),
                })
            },
        )
        .optional()?;
    let Some(mut event) = event else {
        return Ok(None);
    };
    event.jobs = ops::read_jobs(conn, event_id)?;
    Ok(Some(event))
}

/// Result of [`retry_job`].
pub(super) enum RetryOutcome {
    Retried(RetriedJob),
    NotFound,
    /// The job exists but is not dead, so it was left unchanged.
    NotDead(JobState),
}

/// The assignments that make a dead job pending again, due at `?1`.
///
/// The job keeps `attempts` and its attempt rows, so the next attempt number
/// continues. `attempts_before_retry` takes the current count, so the
/// worker's `max_attempts` budget starts over, and `retried_at` replaces the
/// event's receive time as the start of `max_age`. The last error stays for
/// inspection until the next attempt replaces it.
const RETRY_ASSIGNMENTS: &str = "state = 'pending', next_attempt_at = ?1,
     lease_owner = NULL, lease_until = NULL, finished_at = NULL,
     attempts_before_retry = attempts, retried_at = ?1";

/// Moves the dead job `job_id` back to pending, due at `now`.
pub(super) fn retry_job(
    conn: &Connection,
    job_id: &str,
    now: Millis,
) -> rusqlite::Result<RetryOutcome> {
    let found = conn
        .query_row(
            "SELECT event_id, action, target, user, attempts, state FROM jobs WHERE id = ?1",
            [job_id],
            |row| {
                let job = RetriedJob {
                    id: job_id.to_owned(),
                    event_id: row.get(0)?,
                    action: row.get(1)?,
                    target: row.get(2)?,
                    user: row.get(3)?,
                    attempts: row.get(4)?,
                    due_at: now,
                };
                Ok((job, ops::job_state_from_column(row, 5)?))
            },
        )
        .optional()?;
    let Some((job, state)) = found else {
        return Ok(RetryOutcome::NotFound);
    };
    if state != JobState::Dead {
        return Ok(RetryOutcome::NotDead(state));
    }

    conn.execute(
        &format!("UPDATE jobs SET {RETRY_ASSIGNMENTS} WHERE id = ?2 AND state = 'dead'"),
        params![now, job_id],
    )?;
    Ok(RetryOutcome::Retried(job))
}

/// Moves every dead job back to pending, due at `now`. Returns how many moved.
pub(super) fn retry_all_dead(conn: &Connection, now: Millis) -> rusqlite::Result<usize> {
    conn.execute(
        &format!("UPDATE jobs SET {RETRY_ASSIGNMENTS} WHERE state = 'dead'"),
        [now],
    )
}
