//! The scenarios, and what they share: validating the common flags against the machine's
//! limits, sampling `/proc` around a trial, and turning engine reports into figures and JSON.

pub mod chat;
pub mod connect;
pub mod fanout;
pub mod sweep;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::ClientConfig;

use serde::Serialize;
use serde_json::{Value, json};

use crate::cli::{Common, MAX_DURATION};
use crate::engine::{ConnectReport, Engine, EngineOpts, Plan, TrialReport, TrialSpec};
use crate::progress::Progress;
use crate::report::{Figures, Outcome, figure_rows};
use crate::sysinfo::{self, ProcSample};
use crate::target::{Target, parse_sources};
use crate::tls::{self, Trust};
use crate::wire::stamp::STAMP_LEN;

/// Checks the common flags, the open-file limit and the ephemeral ports for `conns`
/// connections; returns an empty plan for the target and the engine's options.
pub(crate) fn prepare(c: &Common, conns: usize, size: usize) -> Result<(Plan, EngineOpts), String> {
    let mut targets = (c.url.iter())
        .map(|u| Target::parse(u, c.allow_remote))
        .collect::<Result<Vec<_>, _>>()?;
    let pub_target = match &c.pub_url {
        None => None,
        Some(u) => {
            let t = Target::parse(u, c.allow_remote)?;
            Some(match targets.iter().position(|x| *x == t) {
                Some(i) => i as u32,
                None => {
                    targets.push(t);
                    (targets.len() - 1) as u32
                }
            })
        }
    };
    let sources = match &c.source {
        Some(s) => parse_sources(s, c.allow_remote)?,
        None => Vec::new(),
    };
    if !(1..=64).contains(&c.threads) {
        return Err("--threads must be between 1 and 64".into());
    }
    if !(STAMP_LEN..=16 << 20).contains(&size) {
        return Err(format!(
            "--size must be between {STAMP_LEN} bytes (the stamp) and 16 MiB"
        ));
    }
    if !(c.connect_rate.is_finite() && c.connect_rate >= 0.0) {
        return Err("--connect-rate must be 0 (unlimited) or positive".into());
    }
    sysinfo::ensure_fd_limit(conns as u64)?;
    if let Some(ports) = sysinfo::ephemeral_ports() {
        let capacity = ports * sources.len().max(1) as u64;
        if conns as u64 > capacity {
            return Err(format!(
                "{conns} connections need more local ports than {} source address(es) offer \
                 ({ports} ephemeral ports each); pass more with --source, e.g. \
                 --source 127.0.0.1-127.0.0.8",
                sources.len().max(1)
            ));
        }
    }
    let opts = EngineOpts {
        threads: c.threads,
        connect_rate: c.connect_rate,
        max_pending: c.max_pending.max(1),
        connect_timeout: c.connect_timeout,
        size,
        payload: c.payload,
        compress_publish: c.compress_publish,
    };
    let mut plan = Plan::cluster(targets, pub_target, sources);
    plan.token = c.token.clone();
    plan.deflate = c.deflate;
    plan.tls = tls_config(c, &plan.targets)?;
    Ok((plan, opts))
}

/// The TLS client configuration when a target is `wss://` (which needs `--ca-file` or
/// `--insecure`: there is no default trust store), else none.
fn tls_config(c: &Common, targets: &[Target]) -> Result<Option<Arc<ClientConfig>>, String> {
    if !targets.iter().any(|t| t.tls) {
        return Ok(None);
    }
    let trust = match (&c.ca_file, c.insecure) {
        (Some(path), _) => Trust::CaFile(path),
        (None, true) => Trust::Insecure,
        (None, false) => {
            return Err(
                "a wss:// URL needs a trust option: --ca-file PEM (the certificates \
                        to trust, e.g. the server's self-signed one) or --insecure (accept any \
                        certificate)"
                    .into(),
            );
        }
    };
    tls::client_config(trust).map(Some)
}

/// Refuses durations past the hard cap.
pub(crate) fn check_duration(d: Duration, flag: &str) -> Result<(), String> {
    if d.is_zero() || d > MAX_DURATION {
        return Err(format!(
            "{flag} must be positive and at most {}",
            humantime::format_duration(MAX_DURATION)
        ));
    }
    Ok(())
}

/// CPU and memory of the server (and of loadgen) between two instants.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Usage {
    /// Wall time between the samples.
    pub wall_s: f64,
    /// Server CPU time used, µs (when `--server-pid` was given).
    pub server_cpu_us: Option<u64>,
    /// Server CPU per delivery, µs.
    pub server_cpu_us_per_delivery: Option<f64>,
    /// Server CPU use, % of one core.
    pub server_cpu_percent: Option<f64>,
    /// Server RSS before, KiB.
    pub server_rss_kib_before: Option<u64>,
    /// Server RSS after, KiB.
    pub server_rss_kib_after: Option<u64>,
    /// loadgen's own CPU use, % of one core.
    pub loadgen_cpu_percent: f64,
}

/// Samples taken at the start of a measured span.
pub(crate) struct Probe {
    pid: Option<u32>,
    server: Option<ProcSample>,
    own: ProcSample,
    at: Instant,
}

impl Probe {
    /// Samples now; fails when `--server-pid` names no readable process.
    pub(crate) fn start(pid: Option<u32>) -> Result<Probe, String> {
        let server = match pid {
            Some(p) => {
                Some(sysinfo::sample(Some(p)).map_err(|e| format!("--server-pid {p}: {e}"))?)
            }
            None => None,
        };
        let own = sysinfo::sample(None).map_err(|e| format!("/proc/self: {e}"))?;
        Ok(Probe {
            pid,
            server,
            own,
            at: Instant::now(),
        })
    }

    /// Samples again and computes the usage over the span, per `deliveries`.
    pub(crate) fn finish(&self, deliveries: u64) -> Usage {
        let wall_us = self.at.elapsed().as_micros() as u64;
        let own = sysinfo::sample(None).unwrap_or(self.own);
        let mut u = Usage {
            wall_s: wall_us as f64 / 1e6,
            loadgen_cpu_percent: round2(sysinfo::cpu_percent(self.own, own, wall_us)),
            ..Usage::default()
        };
        if let (Some(pid), Some(before)) = (self.pid, self.server)
            && let Ok(after) = sysinfo::sample(Some(pid))
        {
            let cpu = after.cpu_us.saturating_sub(before.cpu_us);
            u.server_cpu_us = Some(cpu);
            u.server_cpu_us_per_delivery =
                (deliveries > 0).then(|| round4(cpu as f64 / deliveries as f64));
            u.server_cpu_percent = Some(round2(sysinfo::cpu_percent(before, after, wall_us)));
            u.server_rss_kib_before = Some(before.rss_kib);
            u.server_rss_kib_after = Some(after.rss_kib);
        }
        u
    }
}

/// A trial of `rate` messages/s for `duration`, with the run's drain and timeline interval.
pub(crate) fn trial_spec(rate: f64, duration: Duration, common: &Common) -> TrialSpec {
    TrialSpec {
        rate,
        duration,
        drain: common.drain,
        interval: common.interval,
    }
}

/// The summary row saying how many of the planned connections opened, and why others did not.
pub(crate) fn connections_row(conn: &ConnectReport) -> (String, String) {
    (
        "connections open".into(),
        format!(
            "{}/{} (failures: {})",
            conn.open,
            conn.planned,
            conn.failures.describe()
        ),
    )
}

/// The summary row saying how many handshakes negotiated permessage-deflate.
pub(crate) fn deflate_row(conn: &ConnectReport) -> (String, String) {
    (
        "deflate negotiated".into(),
        format!("{} of {} handshakes", conn.deflated, conn.handshakes),
    )
}

/// Payload bytes received on the wire per delivery (all data messages of the trial, over its
/// deliveries), rounded to 0.1.
pub(crate) fn wire_bytes_per_delivery(r: &TrialReport) -> Option<f64> {
    (r.tally.delivered > 0)
        .then(|| (r.tally.wire_bytes as f64 / r.tally.delivered as f64 * 10.0).round() / 10.0)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// The headline figures of a trial, with the connect failures that preceded it.
pub(crate) fn figures(r: &TrialReport, conn_failures: u64) -> Figures {
    Figures {
        expected: r.expected,
        delivered: r.tally.delivered,
        lost: r.lost,
        duplicates: r.tally.duplicates,
        reordered: r.tally.reordered,
        delivered_per_sec: r.delivered_per_sec().round(),
        latency_us: r.latency,
        conn_failures,
        dropped: r.dropped.total(),
    }
}

/// A trial's figures as JSON (the keys every report carries at top level).
pub(crate) fn trial_json(r: &TrialReport) -> Value {
    json!({
        "offered_rate": r.rate,
        "duration_s": r.duration.as_secs_f64(),
        "scheduled": r.scheduled,
        "sent": r.sent,
        "expected": r.expected,
        "delivered": r.tally.delivered,
        "lost": r.lost,
        "duplicates": r.tally.duplicates,
        "reordered": r.tally.reordered,
        "stale": r.tally.stale,
        "foreign": r.tally.foreign,
        "compressed": r.tally.compressed,
        "wire_bytes": r.tally.wire_bytes,
        "wire_bytes_per_delivery": wire_bytes_per_delivery(r),
        "delivered_per_sec": r.delivered_per_sec().round(),
        "active_s": r.active.as_secs_f64(),
        "latency_us": r.latency,
        "send_lag_us": r.send_lag,
        "dropped": r.dropped,
        "loadgen_behind": r.behind,
    })
}

/// A connect phase as JSON.
pub(crate) fn connect_json(c: &ConnectReport) -> Value {
    json!({
        "planned": c.planned,
        "open": c.open,
        "handshakes": c.handshakes,
        "deflate_connections": c.deflated,
        "failures": c.failures,
        "time_to_open_s": c.time_to_open.as_secs_f64(),
        "handshakes_per_sec": c.handshakes_per_sec().round(),
    })
}

/// Adds `usage` to a JSON object (nested, and its server figures also at top level).
pub(crate) fn add_usage(v: &mut Value, usage: &Usage) {
    v["usage"] = json!(usage);
    v["server_cpu_us_per_delivery"] = json!(usage.server_cpu_us_per_delivery);
    v["server_cpu_percent"] = json!(usage.server_cpu_percent);
    v["loadgen_cpu_percent"] = json!(usage.loadgen_cpu_percent);
}

/// Rows describing usage, for the summary table.
pub(crate) fn usage_rows(u: &Usage) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    if let (Some(per), Some(pct)) = (u.server_cpu_us_per_delivery, u.server_cpu_percent) {
        rows.push(("server CPU µs/delivery".into(), format!("{per}")));
        rows.push(("server CPU %".into(), format!("{pct}")));
    }
    if let (Some(a), Some(b)) = (u.server_rss_kib_before, u.server_rss_kib_after) {
        rows.push(("server RSS KiB before/after".into(), format!("{a} / {b}")));
    }
    rows.push(("loadgen CPU %".into(), format!("{}", u.loadgen_cpu_percent)));
    rows
}

/// Connects `plan` and runs one trial: `fanout` and `chat`.
pub(crate) fn run_fixed(
    name: &str,
    plan: Plan,
    opts: EngineOpts,
    spec: TrialSpec,
    common: &Common,
    params: Value,
) -> Result<Outcome, String> {
    check_duration(spec.duration, "--duration")?;
    if !(spec.rate.is_finite() && spec.rate > 0.0) {
        return Err("--rate must be positive".into());
    }
    let progress = Progress::new(common.quiet);
    let mut engine = Engine::start(plan, opts).map_err(|e| format!("cannot start: {e}"))?;
    let conn = engine.connect(&mut |s| progress.show(name, s))?;
    if conn.open == 0 {
        progress.finish();
        return Err(format!(
            "no connection opened ({})",
            conn.failures.describe()
        ));
    }
    let probe = Probe::start(common.server_pid)?;
    let trial = engine.trial(&spec, &mut |s| progress.show(name, s));
    progress.finish();
    let trial = trial?;
    let usage = probe.finish(trial.tally.delivered);
    drop(engine);

    let figures = figures(&trial, conn.failures.total());
    let mut json = trial_json(&trial);
    json["scenario"] = json!(name);
    json["url"] = json!(common.url);
    json["params"] = params;
    json["connections"] = connect_json(&conn);
    json["deflate_connections"] = json!(conn.deflated);
    json["timeline"] = json!(trial.timeline);
    add_usage(&mut json, &usage);
    let mut rows = vec![
        connections_row(&conn),
        (
            "offered msgs/s".into(),
            format!(
                "{} for {}",
                trial.rate,
                humantime::format_duration(trial.duration)
            ),
        ),
        (
            "messages sent".into(),
            format!("{} of {} scheduled", trial.sent, trial.scheduled),
        ),
    ];
    rows.extend(figure_rows(&figures));
    if common.deflate {
        rows.push(deflate_row(&conn));
        rows.push((
            "messages received compressed".into(),
            trial.tally.compressed.to_string(),
        ));
    }
    if let Some(b) = wire_bytes_per_delivery(&trial) {
        rows.push(("wire payload bytes/delivery".into(), format!("{b}")));
    }
    if trial.dropped.total() > 0 {
        rows.push(("closed during run".into(), trial.dropped.describe()));
    }
    let lag = trial.send_lag;
    rows.push((
        "loadgen send lag µs p50/p99/max".into(),
        format!("{} / {} / {}", lag.p50, lag.p99, lag.max),
    ));
    if trial.behind {
        rows.push(("warning".into(), "loadgen fell behind its schedule".into()));
    }
    rows.extend(usage_rows(&usage));
    Ok(Outcome {
        scenario: name.into(),
        figures,
        json,
        rows,
        timeline: trial.timeline,
        steps: Vec::new(),
    })
}
