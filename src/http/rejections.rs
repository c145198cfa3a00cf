//! Aggregated log lines for rejected requests.
//!
//! A flood of bad requests must not become a flood of log lines. Rejections
//! are grouped by (source, reason, status) per interval: the first one in an
//! interval is logged at once, later ones are only counted, and one summary
//! line with `repeated = N` follows when the interval is over. The summary is
//! written by the next rejection with the same key after the interval, by
//! [`RejectionLog::flush_expired`] (run periodically by [`spawn_flush_task`]),
//! or when the log is dropped, so no count is lost when a flood stops.
//!
//! Lines carry the source, reason, status and an optional detail chosen by
//! the caller, never a signature, secret or body.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// Log target of every rejection line.
pub const REQUEST_LOG: &str = "revokd::request";

/// How long repeats of one (source, reason, status) are counted before a
/// summary line is written.
pub const REJECTION_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Maximum number of distinct keys counted at once. The source name of an
/// unknown source comes from the URL, so a client could otherwise grow the
/// map without bound. Further keys are counted under [`OVERFLOW_SOURCE`].
const MAX_KEYS: usize = 1024;

/// Source name under which rejections are counted once `MAX_KEYS` is reached.
pub const OVERFLOW_SOURCE: &str = "(other sources)";

/// Clock that returns the current instant; injectable for tests.
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    source: String,
    reason: String,
    status: u16,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    /// Rejections after the first one in this window.
    repeated: u64,
}

/// One line to write, decided while the lock is held and written after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogLine {
    /// The first rejection with this key in an interval.
    First {
        source: String,
        reason: String,
        status: u16,
        detail: Option<String>,
    },
    /// Rejections with this key that were counted but not logged.
    Summary {
        source: String,
        reason: String,
        status: u16,
        repeated: u64,
    },
}

impl LogLine {
    fn write(&self) {
        match self {
            LogLine::First {
                source,
                reason,
                status,
                detail: Some(detail),
            } => {
                tracing::info!(target: REQUEST_LOG, source = %source, reason = %reason, status, detail = %detail, "request rejected");
            }
            LogLine::First {
                source,
                reason,
                status,
                detail: None,
            } => {
                tracing::info!(target: REQUEST_LOG, source = %source, reason = %reason, status, "request rejected");
            }
            LogLine::Summary {
                source,
                reason,
                status,
                repeated,
            } => {
                tracing::info!(target: REQUEST_LOG, source = %source, reason = %reason, status, repeated, "request rejected repeatedly");
            }
        }
    }
}

fn summary(key: &Key, repeated: u64) -> LogLine {
    LogLine::Summary {
        source: key.source.clone(),
        reason: key.reason.clone(),
        status: key.status,
        repeated,
    }
}

/// Counts rejections per (source, reason, status) and writes the lines.
pub struct RejectionLog {
    interval: Duration,
    clock: Clock,
    windows: Mutex<HashMap<Key, Window>>,
}

impl RejectionLog {
    /// Builds a log with [`REJECTION_LOG_INTERVAL`] and the system clock.
    pub fn new() -> RejectionLog {
        RejectionLog::with_clock(REJECTION_LOG_INTERVAL, Arc::new(Instant::now))
    }

    pub fn with_clock(interval: Duration, clock: Clock) -> RejectionLog {
        RejectionLog {
            interval,
            clock,
            windows: Mutex::new(HashMap::new()),
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Records one rejection and writes whatever lines it causes.
    ///
    /// `detail` goes on the first line of an interval only, and is not part
    /// of the key, so it must not be a secret, signature or body.
    pub fn reject(&self, source: &str, reason: &str, status: u16, detail: Option<String>) {
        for line in self.record(source, reason, status, detail) {
            line.write();
        }
    }

    /// Records one rejection and returns the lines to write, in order.
    pub fn record(
        &self,
        source: &str,
        reason: &str,
        status: u16,
        detail: Option<String>,
    ) -> Vec<LogLine> {
        let now = (self.clock)();
        let mut key = Key {
            source: source.to_string(),
            reason: reason.to_string(),
            status,
        };
        let mut lines = Vec::new();
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() >= MAX_KEYS && !windows.contains_key(&key) {
            key.source = OVERFLOW_SOURCE.to_string();
        }
        let first = match windows.get_mut(&key) {
            Some(window) if now.saturating_duration_since(window.started) < self.interval => {
                window.repeated += 1;
                false
            }
            Some(window) => {
                if window.repeated > 0 {
                    lines.push(summary(&key, window.repeated));
                }
                window.started = now;
                window.repeated = 0;
                true
            }
            None => {
                windows.insert(
                    key.clone(),
                    Window {
                        started: now,
                        repeated: 0,
                    },
                );
                true
            }
        };
        drop(windows);
        if first {
            lines.push(LogLine::First {
                source: key.source,
                reason: key.reason,
                status,
                detail,
            });
        }
        lines
    }

    /// Writes the summary of every interval that is over and removes its key,
    /// so the next rejection with that key is logged at once.
    pub fn flush_expired(&self) {
        for line in self.take_expired() {
            line.write();
        }
    }

    /// Removes every interval that is over and returns the summaries of those
    /// that counted repeats.
    pub fn take_expired(&self) -> Vec<LogLine> {
        let now = (self.clock)();
        let mut lines = Vec::new();
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        windows.retain(|key, window| {
            if now.saturating_duration_since(window.started) < self.interval {
                return true;
            }
            if window.repeated > 0 {
                lines.push(summary(key, window.repeated));
            }
            false
        });
        lines
    }

    /// Removes every interval, over or not, and returns the summaries of those
    /// that counted repeats.
    pub fn take_all(&self) -> Vec<LogLine> {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        windows
            .drain()
            .filter(|(_, window)| window.repeated > 0)
            .map(|(key, window)| summary(&key, window.repeated))
            .collect()
    }
}

impl Default for RejectionLog {
    fn default() -> Self {
        RejectionLog::new()
    }
}

impl Drop for RejectionLog {
    /// Writes the counts still pending, so a server that stops during a
    /// flood still reports every rejection.
    fn drop(&mut self) {
        for line in self.take_all() {
            line.write();
        }
    }
}

/// Starts a task on the current tokio runtime that writes expired summaries
/// every tenth of `log.interval()`, so a summary is at most that late. The
/// task holds only a weak reference and ends once the log is dropped.
/// Without a runtime no task starts, and summaries are then written only by
/// later rejections and on drop.
pub fn spawn_flush_task(log: &Arc<RejectionLog>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let weak: Weak<RejectionLog> = Arc::downgrade(log);
    let period = (log.interval() / 10).max(Duration::from_millis(10));
    runtime.spawn(async move {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick completes at once.
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let Some(log) = weak.upgrade() else {
                return;
            };
            log.flush_expired();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    const INTERVAL: Duration = Duration::from_secs(10);

    /// A clock that moves only when the test advances it.
    struct ManualClock {
        start: Instant,
        elapsed_ms: AtomicU64,
    }

    impl ManualClock {
        fn new() -> Arc<ManualClock> {
            Arc::new(ManualClock {
                start: Instant::now(),
                elapsed_ms: AtomicU64::new(0),
            })
        }

        fn advance(&self, by: Duration) {
            self.elapsed_ms
                .fetch_add(by.as_millis() as u64, Ordering::SeqCst);
        }

        fn now(&self) -> Instant {
            self.start + Duration::from_millis(self.elapsed_ms.load(Ordering::SeqCst))
        }
    }

    fn log_with(clock: &Arc<ManualClock>) -> RejectionLog {
        let clock = clock.clone();
        RejectionLog::with_clock(INTERVAL, Arc::new(move || clock.now()))
    }

    fn first(source: &str, reason: &str, status: u16) -> LogLine {
        LogLine::First {
            source: source.into(),
            reason: reason.into(),
            status,
            detail: None,
        }
    }

    fn repeated(source: &str, reason: &str, status: u16, count: u64) -> LogLine {
        LogLine::Summary {
            source: source.into(),
            reason: reason.into(),
            status,
            repeated: count,
        }
    }

    #[test]
    fn first_rejection_is_logged_at_once() {
        let clock = ManualClock::new();
        let log = log_with(&clock);
        let lines = log.record("appwrite", "bad signature", 401, None);
        assert_eq!(lines, vec![first("appwrite", "bad signature", 401)]);
    }

    #[test]
    fn repeats_within_interval_are_counted() {
        let clock = ManualClock::new();
        let log = log_with(&clock);
        assert_eq!(log.record("appwrite", "bad signature", 401, None).len(), 1);
        for _ in 0..99 {
            clock.advance(Duration::from_millis(50));
            assert!(log
                .record("appwrite", "bad signature", 401, None)
                .is_empty());
        }
        // 99 × 50 ms = 4.95 s: the interval is not over yet.
        assert!(log.take_expired().is_empty());

        clock.advance(Duration::from_secs(6));
        let lines = log.record("appwrite", "bad signature", 401, None);
        assert_eq!(
            lines,
            vec![
                repeated("appwrite", "bad signature", 401, 99),
                first("appwrite", "bad signature", 401),
            ]
        );
    }

    #[test]
    fn keys_are_counted_separately() {
        let clock = ManualClock::new();
        let log = log_with(&clock);
        let keys = [
            ("appwrite", "bad signature", 401),
            ("appwrite", "missing signature header", 401),
            ("clerk", "bad signature", 401),
            ("appwrite", "bad signature", 400),
        ];
        for (source, reason, status) in keys {
            assert_eq!(
                log.record(source, reason, status, None),
                vec![first(source, reason, status)]
            );
        }
        for (source, reason, status) in keys {
            assert!(log.record(source, reason, status, None).is_empty());
        }
        let mut summaries = log.take_all();
        summaries.sort_by_key(|line| format!("{line:?}"));
        let mut expected: Vec<LogLine> = keys
            .iter()
            .map(|(source, reason, status)| repeated(source, reason, *status, 1))
            .collect();
        expected.sort_by_key(|line| format!("{line:?}"));
        assert_eq!(summaries, expected);
    }

    #[test]
    fn flush_reports_count_after_flood_stops() {
        let clock = ManualClock::new();
        let log = log_with(&clock);
        for _ in 0..200 {
            log.record("clerk", "bad signature", 401, None);
        }
        clock.advance(INTERVAL - Duration::from_millis(1));
        assert!(log.take_expired().is_empty());

        clock.advance(Duration::from_millis(1));
        assert_eq!(
            log.take_expired(),
            vec![repeated("clerk", "bad signature", 401, 199)]
        );
        // The key was forgotten, so the next rejection is logged at once.
        assert_eq!(
            log.record("clerk", "bad signature", 401, None),
            vec![first("clerk", "bad signature", 401)]
        );
    }

    #[test]
    fn flush_drops_quiet_keys_without_line() {
        let clock = ManualClock::new();
        let log = log_with(&clock);
        log.record("appwrite", "bad signature", 401, None);
        clock.advance(INTERVAL);
        assert!(log.take_expired().is_empty());
        assert!(log.take_all().is_empty());
    }

    #[test]
    fn detail_goes_on_first_line_only() {
        let clock = ManualClock::new();
        let log = log_with(&clock);
        let lines = log.record(
            "appwrite",
            "not allowed",
            403,
            Some("client 10.0.0.1".into()),
        );
        assert_eq!(
            lines,
            vec![LogLine::First {
                source: "appwrite".into(),
                reason: "not allowed".into(),
                status: 403,
                detail: Some("client 10.0.0.1".into()),
            }]
        );
        assert!(log
            .record(
                "appwrite",
                "not allowed",
                403,
                Some("client 10.0.0.2".into())
            )
            .is_empty());
    }

    #[test]
    fn distinct_keys_are_capped() {
        let clock = ManualClock::new();
        let log = log_with(&clock);
        for index in 0..MAX_KEYS {
            let source = format!("unknown-{index}");
            assert_eq!(log.record(&source, "unknown source", 404, None).len(), 1);
        }
        let lines = log.record("one-too-many", "unknown source", 404, None);
        assert_eq!(lines, vec![first(OVERFLOW_SOURCE, "unknown source", 404)]);
        assert!(log
            .record("another-one", "unknown source", 404, None)
            .is_empty());
        // Keys already counted keep their own lines.
        assert!(log
            .record("unknown-0", "unknown source", 404, None)
            .is_empty());
        let windows = log.windows.lock().unwrap();
        assert_eq!(windows.len(), MAX_KEYS + 1);
    }

    #[test]
    fn clock_going_backwards_counts_as_same_interval() {
        let start = Instant::now() + Duration::from_secs(100);
        let now = Arc::new(Mutex::new(start));
        let reader = now.clone();
        let log = RejectionLog::with_clock(INTERVAL, Arc::new(move || *reader.lock().unwrap()));
        log.record("appwrite", "bad signature", 401, None);
        *now.lock().unwrap() = start - Duration::from_secs(50);
        assert!(log
            .record("appwrite", "bad signature", 401, None)
            .is_empty());
    }
}
