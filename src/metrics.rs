//! The loop's counters and their Prometheus text exposition (format 0.0.4).
//!
//! Counters are plain integers owned by the loop: the only per-message cost is an increment.
//! Labelled counters (refusals by status, close frames by code) change rarely and sit in small
//! ordered maps. Gauges are computed when scraped.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::hub::HubStats;

/// Counters kept by the loop.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// TCP connections accepted.
    pub accepted: u64,
    /// WebSocket handshakes completed.
    pub upgraded: u64,
    /// Requests refused with an HTTP error status (upgrades and API calls alike), by status.
    pub refusals: BTreeMap<u16, u64>,
    /// Data messages received from WebSocket clients.
    pub messages_in: u64,
    /// Subscribers closed with 1008 for being over `--max-backpressure`.
    pub slow_closes: u64,
    /// History frames queued to new subscribers.
    pub history_sent: u64,
    /// History frames not sent to a new subscriber because they did not fit in half of
    /// `--max-backpressure` (the oldest ones go first).
    pub history_skipped: u64,
    /// Connections turned away (503 or 1013) for taking `--max-input-memory` over.
    pub input_memory_refusals: u64,
    /// Bytes read from sockets.
    pub bytes_in: u64,
    /// Bytes written to sockets.
    pub bytes_out: u64,
    /// Close frames sent, by close code.
    pub closes_sent: BTreeMap<u16, u64>,
    /// `POST /publish` requests answered, by status.
    pub publishes: BTreeMap<u16, u64>,
    /// Send system calls made.
    pub sends: u64,
    /// Sends that found the socket buffer full (`WouldBlock`): the connection is not written
    /// again until its writable event.
    pub sends_blocked: u64,
    /// Pongs that replaced one still waiting (a peer pinging faster than it reads).
    pub pongs_coalesced: u64,
    /// Times a connection's input was set aside for the next turn, having used its share of
    /// this one (reads or deliveries caused).
    pub read_yields: u64,
    /// Times freed memory was given back to the operating system (see [`crate::memory`]).
    pub memory_trims: u64,
    /// `Handle::publish` messages not delivered because their channel would have had to be
    /// created past `--max-channels` (clients and HTTP publishers get a 503 instead).
    pub channel_refusals: u64,
}

impl Stats {
    /// Counts a close frame about to be sent (its code is in bytes 2–3).
    pub fn close_sent(&mut self, frame: &[u8]) {
        if let [_, _, hi, lo, ..] = *frame {
            *self
                .closes_sent
                .entry(u16::from_be_bytes([hi, lo]))
                .or_default() += 1;
        }
    }
}

/// Values read at scrape time.
#[derive(Clone, Copy, Debug, Default)]
pub struct Gauges {
    /// Open connections (any phase).
    pub connections: usize,
    /// Bytes queued and not yet written, over all connections.
    pub queued_bytes: usize,
    /// Channels that exist.
    pub channels: usize,
    /// Heap bytes of partly received input, over all connections.
    pub input_memory: usize,
    /// Bytes of history frames, over all channels.
    pub history_bytes: usize,
}

/// Renders every metric in the Prometheus text format: the loop's counters, the hub's (what
/// it delivered, dropped and evicted) and the gauges.
pub fn render(stats: &Stats, hub: &HubStats, gauges: &Gauges) -> String {
    let mut out = String::with_capacity(2048);
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let suffix = if kind == "counter" { "_total" } else { "" };
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{suffix}{labels} {value}");
        }
    };
    let one = |v: u64| [(String::new(), v)];
    let by = |label: &str, map: &BTreeMap<u16, u64>| -> Vec<(String, u64)> {
        map.iter()
            .map(|(k, v)| (format!("{{{label}=\"{k}\"}}"), *v))
            .collect()
    };
    metric(
        "fanout_connections",
        "gauge",
        "Open connections.",
        &one(gauges.connections as u64),
    );
    metric(
        "fanout_connections_accepted",
        "counter",
        "TCP connections accepted.",
        &one(stats.accepted),
    );
    metric(
        "fanout_upgrades",
        "counter",
        "WebSocket handshakes completed.",
        &one(stats.upgraded),
    );
    metric(
        "fanout_refusals",
        "counter",
        "Requests refused with an HTTP error status, by status.",
        &by("status", &stats.refusals),
    );
    metric(
        "fanout_messages_received",
        "counter",
        "Data messages received from WebSocket clients.",
        &one(stats.messages_in),
    );
    metric(
        "fanout_deliveries",
        "counter",
        "Frames queued to subscribers.",
        &one(hub.deliveries),
    );
    metric(
        "fanout_dropped",
        "counter",
        "Frames skipped for slow consumers (--slow-consumer drop).",
        &one(hub.dropped),
    );
    metric(
        "fanout_batches",
        "counter",
        "Batches built: a channel's frames of one turn copied into one buffer shared by its subscribers.",
        &one(hub.batches),
    );
    metric(
        "fanout_slow_consumer_closes",
        "counter",
        "Subscribers closed with 1008 slow consumer.",
        &one(stats.slow_closes),
    );
    metric(
        "fanout_history_sent",
        "counter",
        "History frames queued to new subscribers.",
        &one(stats.history_sent),
    );
    metric(
        "fanout_history_skipped",
        "counter",
        "Oldest history frames not sent to a new subscriber, for not fitting in half of --max-backpressure.",
        &one(stats.history_skipped),
    );
    metric(
        "fanout_input_memory_refusals",
        "counter",
        "Connections turned away (503 or 1013) for taking --max-input-memory over.",
        &one(stats.input_memory_refusals),
    );
    metric(
        "fanout_history_evicted",
        "counter",
        "History frames dropped, oldest first, to stay under --max-history-memory.",
        &one(hub.history_evicted),
    );
    metric(
        "fanout_received_bytes",
        "counter",
        "Bytes read from sockets.",
        &one(stats.bytes_in),
    );
    metric(
        "fanout_sent_bytes",
        "counter",
        "Bytes written to sockets.",
        &one(stats.bytes_out),
    );
    metric(
        "fanout_close_frames_sent",
        "counter",
        "Close frames sent, by close code.",
        &by("code", &stats.closes_sent),
    );
    metric(
        "fanout_publish_requests",
        "counter",
        "POST /publish requests answered, by status.",
        &by("status", &stats.publishes),
    );
    metric(
        "fanout_send_calls",
        "counter",
        "Send system calls made.",
        &one(stats.sends),
    );
    metric(
        "fanout_send_blocked",
        "counter",
        "Sends that found the socket buffer full; the connection waits for its writable event.",
        &one(stats.sends_blocked),
    );
    metric(
        "fanout_pongs_coalesced",
        "counter",
        "Pongs that replaced one not yet sent (a peer pinging faster than it reads).",
        &one(stats.pongs_coalesced),
    );
    metric(
        "fanout_read_yields",
        "counter",
        "Times a connection's input waited for the next turn, its share of this one used.",
        &one(stats.read_yields),
    );
    metric(
        "fanout_channel_refusals",
        "counter",
        "Handle::publish messages dropped because their channel would pass --max-channels.",
        &one(stats.channel_refusals),
    );
    metric(
        "fanout_memory_trims",
        "counter",
        "Times freed heap memory was given back to the operating system after a burst.",
        &one(stats.memory_trims),
    );
    metric(
        "fanout_queued_bytes",
        "gauge",
        "Memory held by queued output (bytes plus per-entry overhead), as --max-backpressure counts it.",
        &one(gauges.queued_bytes as u64),
    );
    metric(
        "fanout_input_memory_bytes",
        "gauge",
        "Heap bytes of partly received input (messages, requests), under --max-input-memory.",
        &one(gauges.input_memory as u64),
    );
    metric(
        "fanout_history_bytes",
        "gauge",
        "Memory held by history (frames and channels, with overheads), as --max-history-memory counts it.",
        &one(gauges.history_bytes as u64),
    );
    metric(
        "fanout_channels",
        "gauge",
        "Channels that exist.",
        &one(gauges.channels as u64),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_total_suffix_and_labels() {
        let mut stats = Stats {
            accepted: 3,
            ..Stats::default()
        };
        let hub = HubStats {
            history_evicted: 2,
            ..HubStats::default()
        };
        stats.close_sent(&[0x88, 2, 0x03, 0xe9]);
        stats.close_sent(&[0x88, 2, 0x03, 0xe9]);
        stats.refusals.insert(400, 1);
        let text = render(
            &stats,
            &hub,
            &Gauges {
                connections: 2,
                queued_bytes: 10,
                channels: 1,
                input_memory: 7,
                history_bytes: 5,
            },
        );
        assert!(
            text.contains("# TYPE fanout_connections gauge\nfanout_connections 2\n"),
            "{text}"
        );
        assert!(text.contains(
            "# TYPE fanout_connections_accepted counter\nfanout_connections_accepted_total 3\n"
        ));
        assert!(text.contains("fanout_close_frames_sent_total{code=\"1001\"} 2\n"));
        assert!(text.contains("fanout_refusals_total{status=\"400\"} 1\n"));
        assert!(text.contains("fanout_queued_bytes 10\n"));
        assert!(text.contains("fanout_input_memory_bytes 7\n"));
        assert!(text.contains("fanout_history_bytes 5\n"));
        assert!(text.contains("fanout_history_evicted_total 2\n"));
        assert!(text.ends_with("fanout_channels 1\n"));
    }
}
