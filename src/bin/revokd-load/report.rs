//! Summaries of a run, printed as a table and written as JSON.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use crate::events::Kind;
use crate::load::LoadResult;

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// The generator's view of one run.
#[derive(Debug, Serialize)]
pub struct LoadSummary {
    pub label: String,
    pub kind: Kind,
    pub connections: usize,
    pub body_bytes: usize,
    /// `closed` (maximum throughput) or `open` (fixed rate).
    pub mode: &'static str,
    pub target_rate: Option<f64>,
    pub elapsed_s: f64,
    pub responses: u64,
    /// Responses of any status per second.
    pub requests_per_s: f64,
    /// 2xx responses per second.
    pub ok_per_s: f64,
    pub statuses: BTreeMap<String, u64>,
    pub errors: u64,
    pub late_starts: u64,
    pub latency_ms: Percentiles,
}

impl LoadSummary {
    pub fn new(
        label: &str,
        kind: Kind,
        body_bytes: usize,
        connections: usize,
        rate: Option<f64>,
        result: &LoadResult,
    ) -> LoadSummary {
        let elapsed = result.elapsed.as_secs_f64();
        let responses: u64 = result.statuses.values().sum();
        let ok: u64 = result
            .statuses
            .iter()
            .filter(|(status, _)| (200..300).contains(*status))
            .map(|(_, count)| count)
            .sum();
        let millis = |micros: u64| micros as f64 / 1000.0;
        let latency = &result.latency;
        LoadSummary {
            label: label.to_owned(),
            kind,
            connections,
            body_bytes,
            mode: if rate.is_some() { "open" } else { "closed" },
            target_rate: rate,
            elapsed_s: elapsed,
            responses,
            requests_per_s: responses as f64 / elapsed,
            ok_per_s: ok as f64 / elapsed,
            statuses: result
                .statuses
                .iter()
                .map(|(status, count)| (status.to_string(), *count))
                .collect(),
            errors: result.errors,
            late_starts: result.late_starts,
            latency_ms: Percentiles {
                p50: millis(latency.value_at_quantile(0.50)),
                p99: millis(latency.value_at_quantile(0.99)),
                p999: millis(latency.value_at_quantile(0.999)),
                max: millis(latency.max()),
            },
        }
    }

    /// Prints the summary as a two-column table.
    pub fn print(&self) {
        let statuses = self
            .statuses
            .iter()
            .map(|(status, count)| format!("{status}: {count}"))
            .collect::<Vec<_>>()
            .join(", ");
        let rate = self
            .target_rate
            .map_or_else(|| "-".to_owned(), |rate| format!("{rate:.0}/s"));
        let rows = [
            ("run", self.label.clone()),
            (
                "load",
                format!(
                    "{:?}, {} B bodies, {} connections, {} loop, rate {rate}",
                    self.kind, self.body_bytes, self.connections, self.mode
                ),
            ),
            ("elapsed", format!("{:.2} s", self.elapsed_s)),
            ("requests/s", format!("{:.0}", self.requests_per_s)),
            ("2xx/s", format!("{:.0}", self.ok_per_s)),
            ("statuses", statuses),
            ("errors", self.errors.to_string()),
            ("late starts", self.late_starts.to_string()),
            (
                "latency ms",
                format!(
                    "p50 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
                    self.latency_ms.p50,
                    self.latency_ms.p99,
                    self.latency_ms.p999,
                    self.latency_ms.max
                ),
            ),
        ];
        for (name, value) in rows {
            println!("{name:<12} {value}");
        }
    }
}

/// Writes `value` as pretty JSON to `path`.
pub fn write_json(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n")
        .with_context(|| format!("cannot write the JSON report to {}", path.display()))
}

/// Returns the `q` quantile (0..=1) of sorted values, or 0 for an empty slice.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index]
}
