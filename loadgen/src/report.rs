//! Results: the figures assertions look at, the human summary table and the JSON file.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::engine::Point;
use crate::stats::Percentiles;

/// The headline figures of a run (for sweep: of its best passing step).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Figures {
    /// Deliveries expected.
    pub expected: u64,
    /// Distinct deliveries received.
    pub delivered: u64,
    /// `expected - delivered`.
    pub lost: u64,
    /// Repeated receptions.
    pub duplicates: u64,
    /// Deliveries that arrived out of order.
    pub reordered: u64,
    /// Deliveries per second.
    pub delivered_per_sec: f64,
    /// Latency percentiles (µs).
    pub latency_us: Percentiles,
    /// Connections that failed to open.
    pub conn_failures: u64,
    /// Connections that closed while the run went on.
    pub dropped: u64,
}

/// One step of a sweep, for the table and the plot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Step {
    /// Offered messages per second.
    pub offered_rate: f64,
    /// Offered deliveries per second (offered rate × receivers per message).
    pub offered_deliveries_per_sec: f64,
    /// Achieved deliveries per second.
    pub delivered_per_sec: f64,
    /// p99 latency (µs).
    pub p99_us: f64,
    /// Lost deliveries.
    pub lost: u64,
    /// Whether the step met the SLO with nothing lost.
    pub pass: bool,
}

/// Everything a run produced.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// `connect`, `fanout`, `sweep` or `chat`.
    pub scenario: String,
    /// Headline figures.
    pub figures: Figures,
    /// Every figure, as written by `--json`.
    pub json: serde_json::Value,
    /// The summary table's rows.
    pub rows: Vec<(String, String)>,
    /// Latency over time (fanout, chat).
    pub timeline: Vec<Point>,
    /// The sweep's steps.
    pub steps: Vec<Step>,
}

/// The summary table, one aligned `name  value` row per line.
pub fn table(o: &Outcome) -> String {
    let width = o
        .rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    let mut s = format!("loadgen {}\n", o.scenario);
    for (k, v) in &o.rows {
        s.push_str(&format!("  {k:<width$}  {v}\n"));
    }
    s
}

/// The standard rows for a run's figures.
pub fn figure_rows(f: &Figures) -> Vec<(String, String)> {
    let l = f.latency_us;
    vec![
        ("expected deliveries".into(), f.expected.to_string()),
        ("delivered".into(), f.delivered.to_string()),
        (
            "lost".into(),
            format!("{} ({:.4}%)", f.lost, pct(f.lost, f.expected)),
        ),
        (
            "duplicates / reordered".into(),
            format!("{} / {}", f.duplicates, f.reordered),
        ),
        ("delivered/s".into(), format!("{:.0}", f.delivered_per_sec)),
        (
            "latency µs p50/p90/p99/p99.9/max".into(),
            format!("{} / {} / {} / {} / {}", l.p50, l.p90, l.p99, l.p999, l.max),
        ),
    ]
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// The failed assertions, one reason each (empty when all hold).
pub fn check(o: &Outcome, expect_no_loss: bool, max_p99: Option<Duration>) -> Vec<String> {
    let f = &o.figures;
    let mut reasons = Vec::new();
    if expect_no_loss {
        if f.lost > 0 {
            reasons.push(format!(
                "{} of {} expected deliveries lost (delivered {})",
                f.lost, f.expected, f.delivered
            ));
        }
        if f.duplicates > 0 {
            reasons.push(format!("{} duplicate deliveries", f.duplicates));
        }
        if f.conn_failures > 0 {
            reasons.push(format!("{} connections failed to open", f.conn_failures));
        }
        if f.dropped > 0 {
            reasons.push(format!(
                "{} connections were closed during the run",
                f.dropped
            ));
        }
    }
    if let Some(limit) = max_p99 {
        let limit_us = limit.as_secs_f64() * 1e6;
        if f.latency_us.p99 > limit_us {
            reasons.push(format!(
                "p99 latency {} µs exceeds --max-p99 {}",
                f.latency_us.p99,
                humantime::format_duration(limit)
            ));
        }
    }
    reasons
}

/// Writes `value` as pretty JSON.
pub fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).expect("JSON values serialize");
    std::fs::write(path, text + "\n").map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(lost: u64, p99: f64, failures: u64) -> Outcome {
        let figures = Figures {
            expected: 100,
            delivered: 100 - lost,
            lost,
            latency_us: Percentiles {
                p99,
                ..Percentiles::default()
            },
            conn_failures: failures,
            ..Figures::default()
        };
        Outcome {
            figures,
            ..Outcome::default()
        }
    }

    #[test]
    fn assertions_fail_with_reasons() {
        assert!(check(&outcome(0, 10.0, 0), true, Some(Duration::from_millis(1))).is_empty());
        let r = check(&outcome(3, 10.0, 0), true, None);
        assert_eq!(
            r,
            vec!["3 of 100 expected deliveries lost (delivered 97)".to_string()]
        );
        assert!(check(&outcome(3, 10.0, 0), false, None).is_empty());
        let r = check(&outcome(0, 2500.0, 2), true, Some(Duration::from_millis(2)));
        assert_eq!(r.len(), 2, "{r:?}");
        assert!(r[1].contains("exceeds --max-p99 2ms"), "{r:?}");
    }

    #[test]
    fn table_aligns_rows() {
        let o = Outcome {
            scenario: "fanout".into(),
            rows: vec![("a".into(), "1".into()), ("long name".into(), "2".into())],
            ..Outcome::default()
        };
        assert_eq!(
            table(&o),
            "loadgen fanout\n  a          1\n  long name  2\n"
        );
    }
}
