//! What the bridge counts, as atomics it and the loops update and a `/metrics` scrape reads;
//! and their Prometheus exposition.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tracing::{info, warn};

/// Upper bounds of the envelope-age histogram, in seconds: from a loopback hop (~100 µs) to a
/// Redis that stalls for seconds.
pub const AGE_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// The backplane's counters and gauges.
#[derive(Debug, Default)]
pub struct BackplaneStats {
    /// Subscriber connections up (one per shard).
    pub(super) sub_up: AtomicU64,
    /// The publisher has a connection to every shard.
    pub(super) pub_up: AtomicBool,
    /// Shards in use: 1 without a cluster, the primaries in one; 0 until `--redis` answered.
    pub shards: AtomicU64,
    /// Messages published to Redis (acknowledged by it).
    pub published: AtomicU64,
    /// Envelopes from other nodes handed to the loops.
    pub received: AtomicU64,
    /// Messages not published: the queue was full, or Redis failed while they were sent.
    pub dropped: AtomicU64,
    /// Channels subscribed in Redis now.
    pub subscriptions: AtomicU64,
    /// Envelopes from Redis that were not ours and could not be read (another version,
    /// something else publishing under the prefix).
    pub invalid: AtomicU64,
    /// (Un)subscribe notices the loops could not queue for the bridge: it then re-reads the
    /// channel directory instead.
    pub interest_overflows: AtomicU64,
    /// Subscriber connections replaced for delivering nothing while Redis took probes.
    pub wedged: AtomicU64,
    /// Per probe channel, the publish time of the newest probe Redis acknowledged (µs since
    /// the epoch).
    probe_acked_us: Mutex<HashMap<String, u64>>,
    /// Envelope age on arrival: a count per bucket (not cumulative), then the `+Inf` one.
    age_buckets: [AtomicU64; AGE_BUCKETS.len() + 1],
    age_sum_us: AtomicU64,
    /// The state last logged (`None`: nothing yet), so each change is logged once.
    logged: Mutex<Option<bool>>,
}

/// What went up or down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Link {
    /// The publisher's connections (all shards together).
    Publisher,
    /// One shard's subscriber connection: callers report each change once.
    Subscriber,
    /// Asking `--redis` what it is (a failure only logs).
    SlotMap,
}

impl BackplaneStats {
    /// Whether every connection to Redis is up: the publisher's to every shard, and a
    /// subscriber connection per shard. One shard down is a part of the channels not crossing
    /// nodes, so it counts as down.
    pub fn up(&self) -> bool {
        let shards = self.shards.load(Ordering::Acquire);
        shards > 0
            && self.sub_up.load(Ordering::Acquire) >= shards
            && self.pub_up.load(Ordering::Acquire)
    }

    /// Redis acknowledged a probe published at `us` on `channel`.
    pub(super) fn probe_acked(&self, channel: &str, us: u64) {
        let mut acked = self
            .probe_acked_us
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match acked.get_mut(channel) {
            Some(t) => *t = us,
            None => {
                acked.insert(channel.to_owned(), us);
            }
        }
    }

    /// When Redis last acknowledged a probe on `channel` (0: never).
    pub(super) fn probe_acked_at(&self, channel: &str) -> u64 {
        let acked = self
            .probe_acked_us
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        acked.get(channel).copied().unwrap_or(0)
    }

    /// A connection went up or down (`error`: why); logs when the backplane as a whole
    /// changed state, once per change.
    pub(super) fn set(&self, link: Link, up: bool, error: Option<&dyn std::fmt::Display>) {
        let mut logged = self.logged.lock().unwrap_or_else(|e| e.into_inner());
        match (link, up) {
            (Link::Publisher, _) => self.pub_up.store(up, Ordering::Release),
            (Link::Subscriber, true) => {
                self.sub_up.fetch_add(1, Ordering::AcqRel);
            }
            (Link::Subscriber, false) => {
                let _ = (self.sub_up).fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    Some(n.saturating_sub(1))
                });
            }
            (Link::SlotMap, _) => {}
        }
        let now = self.up();
        // Up takes both connections; down is worth a line as soon as either fails.
        let change = match *logged {
            None => now || !up,
            Some(was) => was != now && (now || !up),
        };
        if change {
            *logged = Some(now);
            match (now, error) {
                (true, _) => info!("backplane: connected to Redis"),
                (false, Some(e)) => {
                    warn!(?link, error = %e, "backplane: Redis unreachable; local delivery goes on, reconnecting")
                }
                (false, None) => warn!(
                    ?link,
                    "backplane: Redis unreachable; local delivery goes on, reconnecting"
                ),
            }
        }
    }

    /// Records the age of an envelope that just arrived (0 when the sender's clock is ahead).
    pub fn observe_age(&self, age: Duration) {
        let secs = age.as_secs_f64();
        let i = AGE_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(AGE_BUCKETS.len());
        self.age_buckets[i].fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(age.as_micros()).unwrap_or(u64::MAX);
        self.age_sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Appends the backplane's metrics to a `/metrics` text.
    pub fn render(&self, out: &mut String) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut one = |name: &str, kind: &str, help: &str, value: u64| {
            let suffix = if kind == "counter" { "_total" } else { "" };
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name}{suffix} {value}");
        };
        one(
            "fanout_backplane_up",
            "gauge",
            "1 while this node's connections to Redis are up (to every shard).",
            u64::from(self.up()),
        );
        one(
            "fanout_backplane_shards",
            "gauge",
            "Redis shards the backplane uses: 1 without a cluster, the primaries of a Redis Cluster.",
            get(&self.shards),
        );
        one(
            "fanout_backplane_published",
            "counter",
            "Messages published to Redis.",
            get(&self.published),
        );
        one(
            "fanout_backplane_received",
            "counter",
            "Messages from other nodes received through Redis.",
            get(&self.received),
        );
        one(
            "fanout_backplane_dropped",
            "counter",
            "Messages not published to Redis: the --redis-queue was full, or Redis failed.",
            get(&self.dropped),
        );
        one(
            "fanout_backplane_invalid",
            "counter",
            "Envelopes from Redis that could not be read (another version or publisher).",
            get(&self.invalid),
        );
        one(
            "fanout_backplane_interest_overflows",
            "counter",
            "Subscription changes the bridge was told of by re-reading every channel.",
            get(&self.interest_overflows),
        );
        one(
            "fanout_backplane_wedged",
            "counter",
            "Subscriber connections replaced because this node's probes stopped coming back.",
            get(&self.wedged),
        );
        one(
            "fanout_backplane_subscriptions",
            "gauge",
            "Channels this node is subscribed to in Redis.",
            get(&self.subscriptions),
        );
        let name = "fanout_backplane_age_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Age of envelopes from other nodes on arrival (publish to hand-off to the loops)."
        );
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut total = 0;
        for (i, bucket) in self.age_buckets.iter().enumerate() {
            total += get(bucket);
            match AGE_BUCKETS.get(i) {
                Some(le) => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {total}");
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
                }
            }
        }
        let sum = get(&self.age_sum_us) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {total}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_cumulative_histogram_and_the_counters() {
        let s = BackplaneStats::default();
        s.observe_age(Duration::from_micros(80));
        s.observe_age(Duration::from_micros(300));
        s.observe_age(Duration::from_micros(300));
        s.observe_age(Duration::from_secs(60));
        s.published.store(5, Ordering::Relaxed);
        s.sub_up.store(1, Ordering::Relaxed);
        s.shards.store(1, Ordering::Relaxed);
        let mut text = String::new();
        s.render(&mut text);
        assert!(text.contains("fanout_backplane_up 0\n"), "{text}");
        assert!(text.contains("fanout_backplane_published_total 5\n"));
        assert!(text.contains("fanout_backplane_age_seconds_bucket{le=\"0.0001\"} 1\n"));
        assert!(text.contains("fanout_backplane_age_seconds_bucket{le=\"0.00025\"} 1\n"));
        assert!(text.contains("fanout_backplane_age_seconds_bucket{le=\"0.0005\"} 3\n"));
        assert!(text.contains("fanout_backplane_age_seconds_bucket{le=\"5\"} 3\n"));
        assert!(text.contains("fanout_backplane_age_seconds_bucket{le=\"+Inf\"} 4\n"));
        assert!(
            text.contains("fanout_backplane_age_seconds_sum 60.00068\n"),
            "{text}"
        );
        assert!(text.ends_with("fanout_backplane_age_seconds_count 4\n"));
        assert!(text.contains("fanout_backplane_shards 1\n"), "{text}");
        s.pub_up.store(true, Ordering::Relaxed);
        assert!(s.up());
        s.shards.store(3, Ordering::Relaxed);
        assert!(!s.up(), "one subscriber connection of three shards");
        s.sub_up.store(3, Ordering::Relaxed);
        assert!(s.up());
    }
}
