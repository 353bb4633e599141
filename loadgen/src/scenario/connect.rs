//! `connect`: open N idle connections at `--connect-rate`; handshakes/s, time to reach N,
//! failures by cause, and (with `--server-pid`) the server's RSS before and after, per
//! connection, measured after holding them open for `--hold`.

use std::time::Instant;

use serde_json::json;

use super::{Probe, check_duration, connect_json, prepare};
use crate::cli::ConnectArgs;
use crate::engine::Engine;
use crate::progress::Progress;
use crate::report::{Figures, Outcome};

/// Runs the scenario.
pub fn run(a: &ConnectArgs) -> Result<Outcome, String> {
    check_duration(a.hold, "--hold")?;
    let (mut plan, opts) = prepare(&a.common, a.conns, 64)?;
    let channels: Vec<u32> = (0..a.channels.max(1))
        .map(|k| plan.channel(format!("idle-{k}")))
        .collect();
    for i in 0..a.conns {
        plan.subscribers(channels[i % channels.len()], 1);
    }
    let progress = Progress::new(a.common.quiet);
    let probe = Probe::start(a.common.server_pid)?;
    let mut engine = Engine::start(plan, opts).map_err(|e| format!("cannot start: {e}"))?;
    let report = engine.connect(&mut |s| progress.show("connect", s));
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            progress.finish();
            return Err(e);
        }
    };
    let hold_until = Instant::now() + a.hold;
    while Instant::now() < hold_until {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    progress.finish();
    let still_open = engine.open();
    let usage = probe.finish(report.handshakes);
    drop(engine);

    let rss_per_conn = match (usage.server_rss_kib_before, usage.server_rss_kib_after) {
        (Some(b), Some(a)) if report.open > 0 => {
            Some((a.saturating_sub(b) as f64 * 1024.0 / report.open as f64).round())
        }
        _ => None,
    };
    let figures = Figures {
        conn_failures: report.failures.total(),
        dropped: report.open - still_open,
        ..Figures::default()
    };
    let mut json = connect_json(&report);
    json["scenario"] = json!("connect");
    json["url"] = json!(a.common.url);
    json["params"] = json!({ "conns": a.conns, "channels": a.channels, "connect_rate": a.common.connect_rate,
        "max_pending": a.common.max_pending, "hold_s": a.hold.as_secs_f64(), "threads": a.common.threads });
    for k in ["expected", "delivered", "lost", "duplicates", "reordered"] {
        json[k] = json!(0);
    }
    json["delivered_per_sec"] = json!(0);
    json["latency_us"] = json!(figures.latency_us);
    json["still_open_after_hold"] = json!(still_open);
    json["deflate_connections"] = json!(report.deflated);
    json["server_rss_bytes_per_conn"] = json!(rss_per_conn);
    json["server_cpu_us_per_handshake"] = json!(usage.server_cpu_us_per_delivery);
    json["usage"] = json!(usage);
    json["loadgen_cpu_percent"] = json!(usage.loadgen_cpu_percent);
    let mut rows = vec![
        (
            "connections open".into(),
            format!("{}/{}", report.open, report.planned),
        ),
        ("failures".into(), report.failures.describe()),
        (
            "time to open".into(),
            format!("{:.3} s", report.time_to_open.as_secs_f64()),
        ),
        (
            "handshakes/s".into(),
            format!("{:.0}", report.handshakes_per_sec()),
        ),
        ("still open after hold".into(), still_open.to_string()),
    ];
    if a.common.deflate {
        rows.push(super::deflate_row(&report));
    }
    if let (Some(b), Some(af)) = (usage.server_rss_kib_before, usage.server_rss_kib_after) {
        rows.push(("server RSS KiB before/after".into(), format!("{b} / {af}")));
    }
    if let Some(r) = rss_per_conn {
        rows.push(("server RSS bytes/connection".into(), format!("{r}")));
    }
    if let Some(c) = usage.server_cpu_us_per_delivery {
        rows.push(("server CPU µs/handshake".into(), format!("{c}")));
    }
    rows.push((
        "loadgen CPU %".into(),
        format!("{}", usage.loadgen_cpu_percent),
    ));
    Ok(Outcome {
        scenario: "connect".into(),
        figures,
        json,
        rows,
        ..Outcome::default()
    })
}
