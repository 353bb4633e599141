//! `sweep`: find the highest offered rate at which everything is delivered and p99 stays
//! within the SLO. Starting at `--start-rate`, the rate doubles while steps pass; after the
//! first failure it bisects between the best pass and the lowest failure until they are within
//! `--tolerance` (or `--max-steps` is reached). Connections are opened once and reused; any that
//! a step lost (say, closed as slow consumers) are reopened before the next step, and an earlier
//! step's late messages are told apart by their trial id. After a failed step, the next one
//! waits until no message has arrived for `--cooldown` (at most 30 s), so it does not start
//! behind the server's backlog of the failed one.
//!
//! A step passes when nothing is lost or duplicated, no connection closed, loadgen kept its
//! schedule, and p99 ≤ SLO.

use serde_json::{Value, json};

use super::{
    Probe, add_usage, check_duration, connect_json, connections_row, figures, prepare, trial_json,
    trial_spec, usage_rows,
};
use crate::cli::SweepArgs;
use crate::engine::{Engine, TrialReport};
use crate::progress::Progress;
use crate::report::{Outcome, Step, figure_rows};

/// Longest wait for a server to work off a failed step's backlog.
const SETTLE_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// The next rate to try, or `None` when the search is over.
pub fn next_rate(
    rate: f64,
    best_pass: Option<f64>,
    lowest_fail: Option<f64>,
    tolerance: f64,
) -> Option<f64> {
    match (best_pass, lowest_fail) {
        (_, None) => Some(rate * 2.0),
        (None, Some(f)) => (f / 2.0 >= 1.0).then_some(f / 2.0),
        (Some(p), Some(f)) => ((f - p) / p > tolerance).then_some((p + f) / 2.0),
    }
}

/// Runs the scenario.
pub fn run(a: &SweepArgs) -> Result<Outcome, String> {
    check_duration(a.step_duration, "--step-duration")?;
    if a.pubs == 0 || !(1..=30).contains(&a.max_steps) {
        return Err("--pubs must be at least 1 and --max-steps between 1 and 30".into());
    }
    if !(a.start_rate > 0.0 && a.max_rate >= a.start_rate && a.tolerance > 0.0 && a.tolerance < 1.0)
    {
        return Err("want 0 < --start-rate ≤ --max-rate and 0 < --tolerance < 1".into());
    }
    let (mut plan, opts) = prepare(&a.common, a.subs + a.pubs, a.size)?;
    let ch = plan.channel("sweep".into());
    for _ in 0..a.pubs {
        plan.publisher(ch);
    }
    plan.subscribers(ch, a.subs);
    let receivers = (a.subs + a.pubs - 1) as f64;
    let slo_us = a.slo.as_secs_f64() * 1e6;

    let progress = Progress::new(a.common.quiet);
    let mut engine = Engine::start(plan, opts).map_err(|e| format!("cannot start: {e}"))?;
    let conn = engine.connect(&mut |s| progress.show("sweep", s));
    let conn = conn.inspect_err(|_| progress.finish())?;
    if conn.open == 0 {
        progress.finish();
        return Err(format!(
            "no connection opened ({})",
            conn.failures.describe()
        ));
    }
    let mut steps: Vec<Step> = Vec::new();
    let mut step_json: Vec<Value> = Vec::new();
    let mut trials: Vec<(TrialReport, Value, super::Usage)> = Vec::new();
    let (mut best, mut lowest_fail, mut rate, mut reopened) =
        (None::<f64>, None::<f64>, a.start_rate, 0);
    for i in 0..a.max_steps {
        if engine.open() < engine.planned() {
            let r = engine.connect(&mut |s| progress.show("sweep reconnect", s));
            reopened += r.inspect_err(|_| progress.finish())?.handshakes;
        }
        let spec = trial_spec(rate, a.step_duration, &a.common);
        let probe = Probe::start(a.common.server_pid)?;
        let label = format!("step {} @ {rate:.0} msg/s", i + 1);
        let r = engine.trial(&spec, &mut |s| progress.show(&label, s));
        let r = r.inspect_err(|_| progress.finish())?;
        let usage = probe.finish(r.tally.delivered);
        let failed = failed_because(&r, slo_us);
        let pass = failed.is_empty();
        let step = Step {
            offered_rate: rate,
            offered_deliveries_per_sec: rate * receivers,
            delivered_per_sec: r.delivered_per_sec().round(),
            p99_us: r.latency.p99,
            lost: r.lost,
            pass,
        };
        let mut j = trial_json(&r);
        j["pass"] = json!(pass);
        j["failed_because"] = json!(failed);
        add_usage(&mut j, &usage);
        step_json.push(j.clone());
        steps.push(step);
        trials.push((r, j, usage));
        if pass {
            best = Some(best.map_or(rate, |b: f64| b.max(rate)));
        } else {
            lowest_fail = Some(lowest_fail.map_or(rate, |f: f64| f.min(rate)));
            progress.show(
                &format!("{label}: failed; waiting for the server to go quiet"),
                &Default::default(),
            );
            engine.settle(a.cooldown, SETTLE_MAX);
        }
        match next_rate(rate, best, lowest_fail, a.tolerance) {
            Some(next) if next <= a.max_rate => rate = next,
            _ => break,
        }
    }
    progress.finish();
    drop(engine);

    // Headline: the best passing step, else the gentlest failing one.
    let pick = match best {
        Some(b) => trials
            .iter()
            .position(|(r, _, _)| r.rate == b && steps_pass(&steps, r.rate)),
        None => trials
            .iter()
            .enumerate()
            .min_by(|x, y| x.1.0.rate.total_cmp(&y.1.0.rate))
            .map(|(i, _)| i),
    }
    .expect("at least one step ran");
    let (r, j, usage) = &trials[pick];
    let fig = figures(r, conn.failures.total());
    let max_rate = best.unwrap_or(0.0);
    let max_deliveries = if best.is_some() {
        fig.delivered_per_sec
    } else {
        0.0
    };
    let mut json = j.clone();
    json["scenario"] = json!("sweep");
    json["url"] = json!(a.common.url);
    json["params"] = json!({
        "subs": a.subs, "pubs": a.pubs, "size": a.size, "slo_ms": a.slo.as_secs_f64() * 1e3,
        "start_rate": a.start_rate, "step_duration_s": a.step_duration.as_secs_f64(),
        "tolerance": a.tolerance, "threads": a.common.threads,
    });
    json["connections"] = connect_json(&conn);
    json["reopened_connections"] = json!(reopened);
    json["max_rate"] = json!(max_rate);
    json["max_deliveries_per_sec"] = json!(max_deliveries);
    json["max_delivered_bytes_per_sec"] = json!(max_deliveries * a.size as f64);
    json["steps"] = json!(step_json);
    let top = json.as_object_mut().expect("object");
    top.remove("pass");
    top.remove("failed_because");

    let mut rows = vec![
        connections_row(&conn),
        (
            "steps (offered msg/s → result)".into(),
            describe_steps(&steps),
        ),
        (
            "max sustained msgs/s".into(),
            format!(
                "{max_rate:.0} (SLO p99 ≤ {})",
                humantime::format_duration(a.slo)
            ),
        ),
        ("max deliveries/s".into(), format!("{max_deliveries:.0}")),
        (
            "max delivered MB/s".into(),
            format!("{:.1}", max_deliveries * a.size as f64 / 1e6),
        ),
        ("figures of".into(), format!("step at {} msg/s", r.rate)),
    ];
    rows.extend(figure_rows(&fig));
    let lag = r.send_lag;
    rows.push((
        "loadgen send lag µs p50/p99/max".into(),
        format!("{} / {} / {}", lag.p50, lag.p99, lag.max),
    ));
    rows.extend(usage_rows(usage));
    Ok(Outcome {
        scenario: "sweep".into(),
        figures: fig,
        json,
        rows,
        timeline: Vec::new(),
        steps,
    })
}

/// Why a step failed (empty: it passed).
fn failed_because(r: &TrialReport, slo_us: f64) -> Vec<&'static str> {
    let checks = [
        (r.lost > 0, "lost"),
        (r.tally.duplicates > 0, "duplicates"),
        (r.dropped.total() > 0, "connections_closed"),
        (r.behind, "loadgen_behind"),
        (r.latency.p99 > slo_us, "p99_over_slo"),
    ];
    checks
        .into_iter()
        .filter(|(bad, _)| *bad)
        .map(|(_, why)| why)
        .collect()
}

fn steps_pass(steps: &[Step], rate: f64) -> bool {
    steps.iter().any(|s| s.offered_rate == rate && s.pass)
}

fn describe_steps(steps: &[Step]) -> String {
    steps
        .iter()
        .map(|s| format!("{:.0}{}", s.offered_rate, if s.pass { "✓" } else { "✗" }))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_then_bisects_then_stops() {
        assert_eq!(next_rate(100.0, Some(100.0), None, 0.05), Some(200.0));
        assert_eq!(
            next_rate(800.0, Some(400.0), Some(800.0), 0.05),
            Some(600.0)
        );
        assert_eq!(
            next_rate(600.0, Some(600.0), Some(800.0), 0.05),
            Some(700.0)
        );
        assert_eq!(next_rate(700.0, Some(700.0), Some(720.0), 0.05), None);
        assert_eq!(next_rate(100.0, None, Some(100.0), 0.05), Some(50.0));
        assert_eq!(next_rate(1.5, None, Some(1.5), 0.05), None);
    }
}
