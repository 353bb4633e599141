//! `fanout`: N subscribers and P publishers on one channel, a fixed offered rate.
//!
//! Each message is expected at the N subscribers and the P−1 other publishers.

use serde_json::json;

use super::{prepare, run_fixed, trial_spec};
use crate::cli::FanoutArgs;
use crate::report::Outcome;

/// Runs the scenario.
pub fn run(a: &FanoutArgs) -> Result<Outcome, String> {
    if a.pubs == 0 {
        return Err("--pubs must be at least 1".into());
    }
    let (mut plan, opts) = prepare(&a.common, a.subs + a.pubs, a.size)?;
    let ch = plan.channel(a.channel.clone());
    for _ in 0..a.pubs {
        plan.publisher(ch);
    }
    plan.subscribers(ch, a.subs);
    let spec = trial_spec(a.rate, a.duration, &a.common);
    let params = json!({
        "subs": a.subs, "pubs": a.pubs, "rate": a.rate, "size": a.size,
        "duration_s": a.duration.as_secs_f64(), "channel": a.channel, "threads": a.common.threads,
    });
    run_fixed("fanout", plan, opts, spec, &a.common, params)
}
