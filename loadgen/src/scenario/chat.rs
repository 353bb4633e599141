//! `chat`: K rooms of M members, every member publishing; many-to-many.
//!
//! Rooms are channels `room-0` … `room-{K-1}`; the offered rate is spread evenly over all
//! K×M members, and each message is expected at the M−1 other members of its room.

use serde_json::json;

use super::{prepare, run_fixed, trial_spec};
use crate::cli::ChatArgs;
use crate::report::Outcome;

/// Runs the scenario.
pub fn run(a: &ChatArgs) -> Result<Outcome, String> {
    if a.rooms == 0 || a.members < 2 {
        return Err("--rooms must be at least 1 and --members at least 2".into());
    }
    let (mut plan, opts) = prepare(&a.common, a.rooms * a.members, a.size)?;
    // Members are added room by room, interleaved across rooms, so a room's members spread
    // over every thread and publisher slots alternate between rooms.
    let rooms: Vec<u32> = (0..a.rooms)
        .map(|k| plan.channel(format!("room-{k}")))
        .collect();
    for _ in 0..a.members {
        for &room in &rooms {
            plan.publisher(room);
        }
    }
    let spec = trial_spec(a.rate, a.duration, &a.common);
    let params = json!({
        "rooms": a.rooms, "members": a.members, "rate": a.rate, "size": a.size,
        "duration_s": a.duration.as_secs_f64(), "threads": a.common.threads,
    });
    run_fixed("chat", plan, opts, spec, &a.common, params)
}
