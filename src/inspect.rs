//! `revokd events`: list stored events, show one with its jobs and attempts,
//! and retry dead jobs.
//!
//! The commands open the store file directly, so they work while a server
//! runs on the same file. A retried job is due at once, and a running server
//! claims it at its next poll.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;

use crate::config::{Config, StoreLocation};
use crate::delivery::now_millis;
use crate::store::sqlite::{SqliteOptions, SqliteStore};
use crate::store::{
    EventDetail, EventFilter, EventSummary, JobRecord, JobState, Millis, RetriedJob, Store,
    StoreError, DEFAULT_EVENT_LIMIT,
};

/// Arguments of `revokd events`.
#[derive(Args, Debug)]
pub struct EventsArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    #[command(subcommand)]
    pub command: EventsCommand,
}

/// Location of the store for `revokd events`.
#[derive(Args, Debug)]
pub struct StoreArgs {
    /// Config file (TOML) whose `store.url` names the database. Loading it
    /// resolves every secret, so each must be set. Without them, use --store.
    #[arg(long, env = "REVOKD_CONFIG", global = true)]
    pub config: Option<PathBuf>,

    /// Database to open, as sqlite://PATH. Takes precedence over --config
    /// and needs no secrets.
    #[arg(long, global = true, value_name = "URL", value_parser = parse_store_url)]
    pub store: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum EventsCommand {
    /// List events, newest first, with their jobs per state.
    List {
        /// Only events with at least one job in this state.
        #[arg(long, value_enum)]
        state: Option<StateArg>,

        /// Only events from this source (a [sources.NAME] of the config).
        #[arg(long)]
        source: Option<String>,

        /// Only events received at or after this time: an RFC 3339 time in
        /// UTC (2024-06-01T12:00:00Z) or a duration before now (90m, 2h, 7d).
        #[arg(long, value_name = "TIME", value_parser = parse_since)]
        since: Option<Millis>,

        /// Maximum number of events to print.
        #[arg(long, default_value_t = DEFAULT_EVENT_LIMIT, value_parser = parse_limit)]
        limit: usize,

        /// Print one JSON array instead of a table. Times are Unix milliseconds.
        #[arg(long)]
        json: bool,
    },
    /// Show one event with its jobs and every attempt.
    Show {
        /// Event id, as `revokd events list` prints it.
        event_id: String,

        /// Print one JSON object instead of text. Times are Unix milliseconds.
        #[arg(long)]
        json: bool,
    },
    /// Move a dead job, or every dead job, back to pending, due now. A
    /// retried job keeps its attempts and gets a fresh max_attempts and
    /// max_age budget.
    Retry {
        /// Job id, as `revokd events show` prints it.
        #[arg(required_unless_present = "all_dead", conflicts_with = "all_dead")]
        job_id: Option<String>,

        /// Retry every dead job.
        #[arg(long)]
        all_dead: bool,

        /// Print one JSON object instead of text: the retried job, or
        /// {"retried": N} with --all-dead.
        #[arg(long)]
        json: bool,
    },
}

/// A job state as `--state` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateArg {
    Pending,
    Done,
    Dead,
}

impl From<StateArg> for JobState {
    fn from(state: StateArg) -> JobState {
        match state {
            StateArg::Pending => JobState::Pending,
            StateArg::Done => JobState::Done,
            StateArg::Dead => JobState::Dead,
        }
    }
}

/// Runs an `events` command and returns the exit code: 1 after printing the
/// error to stderr.
pub async fn run(args: EventsArgs) -> ExitCode {
    match run_command(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run_command(args: EventsArgs) -> Result<(), String> {
    let options = store_options(&args.store)?;
    let path = options.path.clone();
    let store = tokio::task::spawn_blocking(move || SqliteStore::open_existing(options))
        .await
        .map_err(|err| format!("opening the store failed: {err}"))?
        .map_err(|err| err.to_string())?;

    let result = execute(&store, args.command, &path).await;
    // Close on every path, so the writer thread checkpoints the WAL and ends
    // before the process exits.
    let closed = store.close().await;
    print_stdout(&result?)?;
    closed.map_err(|err| format!("{err}. The command's changes were committed before that"))
}

/// Resolves the store from `--store`, else from the config file.
fn store_options(args: &StoreArgs) -> Result<SqliteOptions, String> {
    if let Some(path) = &args.store {
        return Ok(SqliteOptions::new(path));
    }
    let Some(config_path) = &args.config else {
        return Err(
            "no store given: pass --store sqlite://PATH, or --config FILE (or set REVOKD_CONFIG)"
                .to_owned(),
        );
    };
    let config = Config::load(config_path).map_err(|err| {
        format!("{err}. To open the store without loading the config, pass --store sqlite://PATH")
    })?;
    let StoreLocation::Sqlite(path) = config.store.location;
    Ok(SqliteOptions {
        path,
        synchronous_full: config.store.sqlite_synchronous_full,
    })
}

/// Runs the command on `store`, the file at `path`, and returns what to print
/// on stdout or the error message.
async fn execute(
    store: &SqliteStore,
    command: EventsCommand,
    path: &Path,
) -> Result<String, String> {
    let event_hint = "`revokd events list` prints the stored event ids";
    let job_hint = "`revokd events show EVENT_ID` prints the job ids of an event";
    match command {
        EventsCommand::List {
            state,
            source,
            since,
            limit,
            json,
        } => {
            let filter = EventFilter {
                state: state.map(JobState::from),
                source,
                since,
                limit,
            };
            let events = store
                .list_events(filter)
                .await
                .map_err(|err| describe_store_error(err, path, event_hint))?;
            Ok(if json {
                to_json(&events)
            } else {
                render_event_list(&events)
            })
        }
        EventsCommand::Show { event_id, json } => {
            let event = store
                .event_detail(&event_id)
                .await
                .map_err(|err| describe_store_error(err, path, event_hint))?;
            Ok(if json {
                to_json(&event)
            } else {
                render_event_detail(&event)
            })
        }
        EventsCommand::Retry {
            job_id: Some(job_id),
            json,
            ..
        } => {
            let job = store
                .retry_job(&job_id, now_millis())
                .await
                .map_err(|err| describe_store_error(err, path, job_hint))?;
            Ok(if json {
                to_json(&job)
            } else {
                render_retried_job(&job)
            })
        }
        EventsCommand::Retry {
            job_id: None, json, ..
        } => {
            let retried = store
                .retry_all_dead(now_millis())
                .await
                .map_err(|err| describe_store_error(err, path, job_hint))?;
            Ok(if json {
                to_json(&serde_json::json!({ "retried": retried }))
            } else if retried == 0 {
                "No dead jobs to retry.\n".to_owned()
            } else {
                format!("Retried {}, due now.\n", count(retried, "dead job"))
            })
        }
    }
}

/// Formats a store error for the command line. For an id that was not
/// found, `hint` names the command that prints valid ids.
fn describe_store_error(err: StoreError, path: &Path, hint: &str) -> String {
    match err {
        StoreError::NotFound(what) => {
            format!("{what} not found in {}. {hint}", path.display())
        }
        StoreError::InvalidState(message) => message,
        other => other.to_string(),
    }
}

/// Writes `text` to stdout. A closed pipe, as with `| head`, is not an error.
fn print_stdout(text: &str) -> Result<(), String> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(err) => Err(format!("writing to stdout failed: {err}")),
    }
}

fn to_json<T: Serialize>(value: &T) -> String {
    // serde_json fails only on non-string map keys or a failing custom
    // Serialize impl, and the store types have neither.
    let mut text = serde_json::to_string_pretty(value).expect("serializable value");
    text.push('\n');
    text
}

fn parse_store_url(text: &str) -> Result<PathBuf, String> {
    match text.strip_prefix("sqlite://") {
        Some(path) if !path.is_empty() => Ok(PathBuf::from(path)),
        Some(_) => {
            Err("`sqlite://` needs a file path, e.g. sqlite:///var/lib/revokd/revokd.db".into())
        }
        None => Err(format!(
            "`{text}` is not a store URL: use sqlite://PATH, as in store.url of the config"
        )),
    }
}

fn parse_limit(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(limit) if limit > 0 => Ok(limit),
        _ => Err(format!("`{text}` is not a positive whole number")),
    }
}

/// Parses `--since`: an RFC 3339 time in UTC, or a duration before now.
pub fn parse_since(text: &str) -> Result<Millis, String> {
    if let Ok(time) = humantime::parse_rfc3339_weak(text) {
        return Ok(system_time_to_millis(time));
    }
    if let Ok(ago) = humantime::parse_duration(text) {
        let ago = Millis::try_from(ago.as_millis()).unwrap_or(Millis::MAX);
        return Ok(now_millis().saturating_sub(ago));
    }
    Err(format!(
        "`{text}` is neither an RFC 3339 time in UTC (2024-06-01T12:00:00Z) \
         nor a duration such as 90m, 2h or 7d"
    ))
}

fn system_time_to_millis(time: SystemTime) -> Millis {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => Millis::try_from(after.as_millis()).unwrap_or(Millis::MAX),
        Err(before) => -Millis::try_from(before.duration().as_millis()).unwrap_or(Millis::MAX),
    }
}

/// Formats a store time as RFC 3339 UTC with milliseconds.
pub fn format_time(millis: Millis) -> String {
    match u64::try_from(millis) {
        Ok(after) => {
            humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(after)).to_string()
        }
        // Before 1970: no store writes such a time, so show the raw value.
        Err(_) => format!("{millis} ms"),
    }
}

/// Replaces line breaks and other control characters, so that text from
/// Appwrite or a sender cannot break the table layout.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Aligns `rows` under `headers`, two spaces between columns.
fn render_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers
        .iter()
        .map(|header| header.chars().count())
        .collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header_row: Vec<String> = headers.iter().map(|header| header.to_string()).collect();
    let mut text = String::new();
    for row in std::iter::once(&header_row).chain(rows) {
        let mut line = String::new();
        for (index, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if index > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            let padding = width.saturating_sub(cell.chars().count());
            line.extend(std::iter::repeat_n(' ', padding));
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// Aligns `label value` pairs, indented by `indent`.
fn render_fields(indent: &str, fields: &[(&str, String)]) -> String {
    let width = fields
        .iter()
        .map(|(label, _)| label.chars().count())
        .max()
        .unwrap_or(0);
    let mut text = String::new();
    for (label, value) in fields {
        text.push_str(&format!("{indent}{label:<width$}  {value}\n"));
    }
    text
}

/// Renders the event list as a table, one event per line.
pub fn render_event_list(events: &[EventSummary]) -> String {
    if events.is_empty() {
        return "No events match.\n".to_owned();
    }
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|event| {
            let event_type = match (&event.first_type, event.type_count) {
                (None, _) => "-".to_owned(),
                (Some(name), 1) => one_line(name),
                (Some(name), count) => format!("{} (+{} more)", one_line(name), count - 1),
            };
            let note = match &event.ignored_reason {
                Some(reason) => format!("ignored: {}", one_line(reason)),
                None => String::new(),
            };
            vec![
                format_time(event.received_at),
                event.id.clone(),
                one_line(&event.source),
                event_type,
                event.jobs.pending.to_string(),
                event.jobs.done.to_string(),
                event.jobs.dead.to_string(),
                note,
            ]
        })
        .collect();
    render_table(
        &[
            "RECEIVED", "EVENT", "SOURCE", "TYPE", "PENDING", "DONE", "DEAD", "NOTE",
        ],
        &rows,
    )
}

/// Renders one event, then each job with its attempts.
pub fn render_event_detail(event: &EventDetail) -> String {
    let mut fields = vec![
        ("Event", event.id.clone()),
        ("Source", one_line(&event.source)),
        ("Delivery key", one_line(&event.delivery_key)),
        (
            "Types",
            event
                .types
                .iter()
                .map(|name| one_line(name))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        ("Received", format_time(event.received_at)),
    ];
    if let Some(occurred_at) = event.occurred_at {
        fields.push(("Occurred", format_time(occurred_at)));
    }
    if let Some(reason) = &event.ignored_reason {
        fields.push(("Ignored", one_line(reason)));
    }
    let mut text = render_fields("", &fields);

    if event.jobs.is_empty() {
        text.push_str("\nNo jobs.\n");
    }
    for job in &event.jobs {
        text.push('\n');
        text.push_str(&render_job(job));
    }
    text
}

fn render_job(job: &JobRecord) -> String {
    let mut text = format!("Job {} ({})\n", job.id, job.state.as_str());
    let mut fields = vec![
        ("Rule", one_line(&job.rule)),
        (
            "Action",
            format!(
                "{} on target {}",
                one_line(&job.action),
                one_line(&job.target)
            ),
        ),
        ("User", format!("{} {}", job.user_kind, one_line(&job.user))),
        ("Event type", one_line(&job.event_type)),
    ];
    if let Some(session) = &job.session_id {
        fields.push(("Session", one_line(session)));
    }
    if job.dry_run {
        fields.push(("Dry run", "yes".to_owned()));
    }
    if let Some(note) = &job.note {
        fields.push(("Note", one_line(note)));
    }
    if job.state == JobState::Pending {
        fields.push(("Next attempt", format_time(job.next_attempt_at)));
    }
    if let (Some(owner), Some(until)) = (&job.lease_owner, job.lease_until) {
        fields.push(("Lease", format!("{owner} until {}", format_time(until))));
    }
    if let Some(finished_at) = job.finished_at {
        fields.push(("Finished", format_time(finished_at)));
    }
    if let Some(retried_at) = job.retried_at {
        fields.push((
            "Retried",
            format!(
                "{} after {}",
                format_time(retried_at),
                count(job.attempts_before_retry as usize, "attempt")
            ),
        ));
    }
    if let Some(error) = describe_error(job.last_error_type.as_deref(), job.last_error.as_deref()) {
        fields.push(("Last error", error));
    }
    text.push_str(&render_fields("  ", &fields));

    if job.attempts.is_empty() {
        text.push_str("  No attempts yet.\n");
        return text;
    }
    let rows: Vec<Vec<String>> = job
        .attempts
        .iter()
        .map(|attempt| {
            vec![
                attempt.number.to_string(),
                format_time(attempt.started_at),
                format!("{} ms", attempt.finished_at - attempt.started_at),
                attempt
                    .status
                    .map_or_else(|| "-".to_owned(), |status| status.to_string()),
                describe_error(attempt.error_type.as_deref(), attempt.error.as_deref())
                    .unwrap_or_default(),
            ]
        })
        .collect();
    let table = render_table(&["#", "STARTED", "DURATION", "STATUS", "ERROR"], &rows);
    for line in table.lines() {
        text.push_str("  ");
        text.push_str(line);
        text.push('\n');
    }
    text
}

fn describe_error(error_type: Option<&str>, error: Option<&str>) -> Option<String> {
    match (error_type, error) {
        (Some(kind), Some(message)) => Some(format!("{}: {}", one_line(kind), one_line(message))),
        (Some(kind), None) => Some(one_line(kind)),
        (None, Some(message)) => Some(one_line(message)),
        (None, None) => None,
    }
}

fn render_retried_job(job: &RetriedJob) -> String {
    format!(
        "Retried job {} of event {}: {} on target {} for user {}. \
         It keeps its {} and is due now.\n",
        job.id,
        job.event_id,
        one_line(&job.action),
        one_line(&job.target),
        one_line(&job.user),
        count(job.attempts as usize, "attempt")
    )
}

/// Formats `number` with `noun`, adding an "s" unless `number` is 1.
fn count(number: usize, noun: &str) -> String {
    if number == 1 {
        format!("1 {noun}")
    } else {
        format!("{number} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_rfc3339_and_durations() {
        assert_eq!(parse_since("1970-01-01T00:00:01Z"), Ok(1000));
        assert_eq!(
            parse_since("2024-06-01T12:00:00.250Z"),
            Ok(1_717_243_200_250)
        );

        let before = now_millis();
        let two_hours_ago = parse_since("2h").unwrap();
        let after = now_millis();
        assert!(two_hours_ago >= before - 7_200_000, "{two_hours_ago}");
        assert!(two_hours_ago <= after - 7_200_000, "{two_hours_ago}");
    }

    #[test]
    fn since_rejects_other_text() {
        let message = parse_since("yesterday").unwrap_err();
        assert!(message.contains("`yesterday`"), "{message}");
        assert!(message.contains("RFC 3339"), "{message}");
    }

    #[test]
    fn store_url_needs_sqlite_path() {
        assert_eq!(
            parse_store_url("sqlite://a/b.db"),
            Ok(PathBuf::from("a/b.db"))
        );
        assert!(parse_store_url("sqlite://").is_err());
        let message = parse_store_url("postgres://db").unwrap_err();
        assert!(message.contains("postgres://db"), "{message}");
    }

    #[test]
    fn limit_must_be_positive() {
        assert_eq!(parse_limit("5"), Ok(5));
        assert!(parse_limit("0").is_err());
        assert!(parse_limit("-1").is_err());
    }

    #[test]
    fn time_format_is_rfc3339_utc() {
        assert_eq!(format_time(1_717_243_200_250), "2024-06-01T12:00:00.250Z");
        assert_eq!(format_time(-5), "-5 ms");
    }

    #[test]
    fn table_aligns_columns() {
        let rows = vec![
            vec!["a".to_owned(), "long value".to_owned(), "x".to_owned()],
            vec!["bbb".to_owned(), "v".to_owned(), String::new()],
        ];
        let text = render_table(&["K", "VALUE", "NOTE"], &rows);
        assert_eq!(text, "K    VALUE       NOTE\na    long value  x\nbbb  v\n");
    }

    #[test]
    fn count_adds_plural_s() {
        assert_eq!(count(0, "attempt"), "0 attempts");
        assert_eq!(count(1, "attempt"), "1 attempt");
        assert_eq!(count(2, "dead job"), "2 dead jobs");
    }

    #[test]
    fn one_line_replaces_control_characters() {
        assert_eq!(one_line("a\nb\tc"), "a b c");
    }
}
