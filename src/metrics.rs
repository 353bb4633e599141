//! The loops' counters and their Prometheus text exposition (format 0.0.4).
//!
//! Counters are plain integers owned by each loop: the only per-message cost is an increment.
//! Labelled counters (refusals by status, close frames by code) sit in small fixed arrays, so
//! [`Stats`] is `Copy`: at the end of every turn each loop copies its counters into its slot
//! in the node (a few hundred bytes under an uncontended lock), and a scrape on any loop adds
//! the slots up. Gauges are computed when scraped (each loop's queue total at most every
//! [`crate::node::GAUGE_INTERVAL`]).

use std::fmt::Write;

use crate::auth::AuthError;
use crate::hub::HubStats;
use crate::tls::ErrorKind as TlsErrorKind;

/// Counts by a small code (an HTTP status, a close code) in a fixed array. Codes past its
/// room are counted under `other`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ByCode {
    slots: [(u16, u64); 16],
    other: u64,
}

impl ByCode {
    /// Counts one `code`.
    pub fn add(&mut self, code: u16) {
        self.add_n(code, 1);
    }

    fn add_n(&mut self, code: u16, n: u64) {
        match self.slots.iter_mut().find(|(c, _)| *c == code || *c == 0) {
            Some(slot) => *slot = (code, slot.1 + n),
            None => self.other += n,
        }
    }

    /// The count of `code`.
    pub fn get(&self, code: u16) -> u64 {
        self.slots
            .iter()
            .find(|(c, _)| *c == code)
            .map_or(0, |s| s.1)
    }

    /// Adds `other`'s counts in.
    pub fn merge(&mut self, other: &ByCode) {
        for &(code, n) in other.slots.iter().filter(|(c, _)| *c != 0) {
            self.add_n(code, n);
        }
        self.other += other.other;
    }

    /// `(label value, count)` in code order, `other` last.
    fn samples(&self, label: &str) -> Vec<(String, u64)> {
        let mut codes: Vec<_> = self.slots.iter().filter(|(c, _)| *c != 0).collect();
        codes.sort_unstable();
        let mut out: Vec<_> = codes
            .into_iter()
            .map(|&(c, n)| (format!("{{{label}=\"{c}\"}}"), n))
            .collect();
        if self.other > 0 {
            out.push((format!("{{{label}=\"other\"}}"), self.other));
        }
        out
    }
}

/// Defines [`Stats`] and its merge from one list of fields.
macro_rules! stats {
    ($($(#[doc = $doc:expr])* $field:ident: $ty:ty,)*) => {
        /// Counters kept by a loop.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct Stats {
            $($(#[doc = $doc])* pub $field: $ty,)*
        }

        impl Stats {
            /// Adds another loop's counters in.
            pub fn merge(&mut self, other: &Stats) {
                $(Merge::merge(&mut self.$field, &other.$field);)*
            }
        }
    };
}

trait Merge {
    fn merge(&mut self, other: &Self);
}

impl Merge for u64 {
    fn merge(&mut self, other: &u64) {
        *self += other;
    }
}

impl<const N: usize> Merge for [u64; N] {
    fn merge(&mut self, other: &Self) {
        for (a, b) in self.iter_mut().zip(other) {
            *a += b;
        }
    }
}

/// Room for every [`AuthError`] in [`Stats::auth_refusals`].
pub const AUTH_ERRORS: usize = 16;

/// One counter per [`TlsErrorKind`] in [`Stats::tls_errors`].
pub const TLS_ERROR_KINDS: usize = TlsErrorKind::ALL.len();

impl Merge for ByCode {
    fn merge(&mut self, other: &ByCode) {
        ByCode::merge(self, other);
    }
}

stats! {
    /// TCP connections accepted.
    accepted: u64,
    /// WebSocket handshakes completed.
    upgraded: u64,
    /// Requests refused with an HTTP error status (upgrades and API calls alike), by status.
    refusals: ByCode,
    /// Data messages received from WebSocket clients.
    messages_in: u64,
    /// Subscribers closed with 1008 for being over `--max-backpressure`.
    slow_closes: u64,
    /// History frames queued to new subscribers.
    history_sent: u64,
    /// History frames not sent to a new subscriber because they did not fit in half of
    /// `--max-backpressure` (the oldest ones go first).
    history_skipped: u64,
    /// Connections turned away (503 or 1013) for taking `--max-input-memory` over.
    input_memory_refusals: u64,
    /// Bytes read from sockets.
    bytes_in: u64,
    /// Bytes written to sockets.
    bytes_out: u64,
    /// Close frames sent, by close code.
    closes_sent: ByCode,
    /// `POST /publish` requests answered, by status.
    publishes: ByCode,
    /// Send system calls made.
    sends: u64,
    /// Sends that found the socket buffer full (`WouldBlock`): the connection is not written
    /// again until its writable event.
    sends_blocked: u64,
    /// Pongs that replaced one still waiting (a peer pinging faster than it reads).
    pongs_coalesced: u64,
    /// Times a connection's input was set aside for the next turn, having used its share of
    /// this one (reads or deliveries caused).
    read_yields: u64,
    /// Times freed memory was given back to the operating system (see [`crate::memory`]).
    memory_trims: u64,
    /// `Handle::publish` messages not delivered because their channel would have had to be
    /// created past `--max-channels` (clients and HTTP publishers get a 503 instead).
    channel_refusals: u64,
    /// Messages from clients refused because they may not publish (`--client-publish false`,
    /// or their token's `publish` claim): the connection is closed with 1008.
    publish_refusals: u64,
    /// Upgrades and publishes refused for their token, by [`AuthError`] (its index in
    /// [`AuthError::ALL`]).
    auth_refusals: [u64; AUTH_ERRORS],
    /// Client messages over `--max-client-rate` (closed or dropped per `--rate-limit`).
    rate_limited: u64,
    /// Connections closed with 1008 "token expired".
    token_expired: u64,
    /// Batches of messages handed to other loops (one per target loop per turn at most).
    handoffs: u64,
    /// Messages handed to other loops, counted once per target loop.
    handed_off: u64,
    /// TLS handshakes completed (`--tls-cert`).
    tls_handshakes: u64,
    /// TLS connections that failed, by [`TlsErrorKind`] (its index in [`TlsErrorKind::ALL`]).
    tls_errors: [u64; TLS_ERROR_KINDS],
}

impl Stats {
    /// Counts a refusal for a token, if `refusal` is one.
    pub fn auth_refused(&mut self, refusal: &crate::proto::handshake::Refusal) {
        if let Some(i) = AuthError::ALL.iter().position(|e| e.refusal() == *refusal) {
            self.auth_refusals[i] += 1;
        }
    }

    /// Counts a close frame about to be sent (its code is in bytes 2–3).
    pub fn close_sent(&mut self, frame: &[u8]) {
        if let [_, _, hi, lo, ..] = *frame {
            self.closes_sent.add(u16::from_be_bytes([hi, lo]));
        }
    }
}

/// Values read at scrape time, for the whole process.
#[derive(Clone, Copy, Debug, Default)]
pub struct Gauges {
    /// Open connections (any phase).
    pub connections: usize,
    /// Memory held by queued output, over all connections.
    pub queued_bytes: usize,
    /// Channels that exist.
    pub channels: usize,
    /// Heap bytes of partly received input, over all connections.
    pub input_memory: usize,
    /// Memory held by history, over all channels.
    pub history_bytes: usize,
}

/// One loop's gauges (a `loop` label), so an operator sees an unbalanced loop.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoopGauges {
    /// Its open connections.
    pub connections: usize,
    /// Memory held by its queued output.
    pub queued_bytes: usize,
    /// Its connections that negotiated permessage-deflate.
    pub deflate_connections: usize,
}

/// Renders every metric in the Prometheus text format: the loops' counters, the hubs' (what
/// they delivered, dropped and evicted), the process's gauges and each loop's.
pub fn render(stats: &Stats, hub: &HubStats, gauges: &Gauges, loops: &[LoopGauges]) -> String {
    let mut out = String::with_capacity(4096);
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let suffix = if kind == "counter" { "_total" } else { "" };
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{suffix}{labels} {value}");
        }
    };
    let one = |v: u64| [(String::new(), v)];
    let counters: [(&str, &str, u64); 25] = [
        (
            "fanout_client_publish_refusals",
            "Client messages refused (not allowed to publish there): closed with 1008.",
            stats.publish_refusals,
        ),
        (
            "fanout_rate_limited",
            "Client messages over --max-client-rate.",
            stats.rate_limited,
        ),
        (
            "fanout_token_expired_closes",
            "Connections closed with 1008 token expired.",
            stats.token_expired,
        ),
        (
            "fanout_connections_accepted",
            "TCP connections accepted.",
            stats.accepted,
        ),
        (
            "fanout_upgrades",
            "WebSocket handshakes completed.",
            stats.upgraded,
        ),
        (
            "fanout_messages_received",
            "Data messages received from WebSocket clients.",
            stats.messages_in,
        ),
        (
            "fanout_deliveries",
            "Frames queued to subscribers.",
            hub.deliveries,
        ),
        (
            "fanout_dropped",
            "Frames skipped for slow consumers (--slow-consumer drop).",
            hub.dropped,
        ),
        (
            "fanout_batches",
            "Batches built: a channel's frames of one turn copied into one buffer shared by its subscribers.",
            hub.batches,
        ),
        (
            "fanout_slow_consumer_closes",
            "Subscribers closed with 1008 slow consumer.",
            stats.slow_closes,
        ),
        (
            "fanout_history_sent",
            "History frames queued to new subscribers.",
            stats.history_sent,
        ),
        (
            "fanout_history_skipped",
            "Oldest history frames not sent to a new subscriber, for not fitting in half of --max-backpressure.",
            stats.history_skipped,
        ),
        (
            "fanout_input_memory_refusals",
            "Connections turned away (503 or 1013) for taking --max-input-memory over.",
            stats.input_memory_refusals,
        ),
        (
            "fanout_history_evicted",
            "History frames dropped, oldest first, to stay under --max-history-memory.",
            hub.history_evicted,
        ),
        (
            "fanout_received_bytes",
            "Bytes read from sockets.",
            stats.bytes_in,
        ),
        (
            "fanout_sent_bytes",
            "Bytes written to sockets.",
            stats.bytes_out,
        ),
        ("fanout_send_calls", "Send system calls made.", stats.sends),
        (
            "fanout_send_blocked",
            "Sends that found the socket buffer full; the connection waits for its writable event.",
            stats.sends_blocked,
        ),
        (
            "fanout_pongs_coalesced",
            "Pongs that replaced one not yet sent (a peer pinging faster than it reads).",
            stats.pongs_coalesced,
        ),
        (
            "fanout_read_yields",
            "Times a connection's input waited for the next turn, its share of this one used.",
            stats.read_yields,
        ),
        (
            "fanout_channel_refusals",
            "Handle::publish messages dropped because their channel would pass --max-channels.",
            stats.channel_refusals,
        ),
        (
            "fanout_memory_trims",
            "Times freed heap memory was given back to the operating system after a burst.",
            stats.memory_trims,
        ),
        (
            "fanout_handoffs",
            "Batches of messages handed to other loops (at most one per target loop per turn).",
            stats.handoffs,
        ),
        (
            "fanout_handed_off",
            "Messages handed to other loops, once per target loop.",
            stats.handed_off,
        ),
        (
            "fanout_tls_handshakes",
            "TLS handshakes completed (--tls-cert).",
            stats.tls_handshakes,
        ),
    ];
    let per_loop = |f: fn(&LoopGauges) -> usize| -> Vec<(String, u64)> {
        (loops.iter().enumerate())
            .map(|(i, g)| (format!("{{loop=\"{i}\"}}"), f(g) as u64))
            .collect()
    };
    metric(
        "fanout_connections",
        "gauge",
        "Open connections.",
        &one(gauges.connections as u64),
    );
    metric(
        "fanout_loop_connections",
        "gauge",
        "Open connections of each event loop.",
        &per_loop(|g| g.connections),
    );
    for (name, help, value) in counters {
        metric(name, "counter", help, &one(value));
    }
    metric(
        "fanout_refusals",
        "counter",
        "Requests refused with an HTTP error status, by status.",
        &stats.refusals.samples("status"),
    );
    metric(
        "fanout_close_frames_sent",
        "counter",
        "Close frames sent, by close code.",
        &stats.closes_sent.samples("code"),
    );
    metric(
        "fanout_publish_requests",
        "counter",
        "POST /publish requests answered, by status.",
        &stats.publishes.samples("status"),
    );
    let auth: Vec<(String, u64)> = (AuthError::ALL.iter().zip(stats.auth_refusals))
        .map(|(e, n)| (format!("{{reason=\"{}\"}}", snake(&format!("{e:?}"))), n))
        .collect();
    let tls: Vec<(String, u64)> = (TlsErrorKind::ALL.iter().zip(stats.tls_errors))
        .map(|(k, n)| (format!("{{kind=\"{}\"}}", k.label()), n))
        .collect();
    metric(
        "fanout_tls_errors",
        "counter",
        "TLS connections closed for an error, by kind (see the README).",
        &tls,
    );
    let d = &hub.deflate;
    for (name, help, value) in [
        (
            "fanout_deflate_compressed",
            "Messages compressed once for permessage-deflate subscribers.",
            d.compressed,
        ),
        (
            "fanout_deflate_skipped",
            "Messages sent plain to deflate subscribers: small, or not smaller compressed.",
            d.skipped,
        ),
        (
            "fanout_deflate_bytes_in",
            "Payload bytes of compressed messages, before compression.",
            d.bytes_in,
        ),
        (
            "fanout_deflate_bytes_out",
            "Frame bytes of compressed messages, after compression.",
            d.bytes_out,
        ),
    ] {
        metric(name, "counter", help, &one(value));
    }
    let deflating = loops.iter().map(|g| g.deflate_connections).sum::<usize>();
    metric(
        "fanout_deflate_connections",
        "gauge",
        "Connections that negotiated permessage-deflate (refreshed every 100 ms).",
        &one(deflating as u64),
    );
    metric(
        "fanout_auth_refusals",
        "counter",
        "Upgrades and publishes refused for their token, by reason.",
        &auth,
    );
    metric(
        "fanout_loops",
        "gauge",
        "Event loops (--threads).",
        &one(loops.len() as u64),
    );
    metric(
        "fanout_queued_bytes",
        "gauge",
        "Memory held by queued output (bytes plus per-entry overhead), as --max-backpressure counts it.",
        &one(gauges.queued_bytes as u64),
    );
    metric(
        "fanout_loop_queued_bytes",
        "gauge",
        "Memory held by each event loop's queued output.",
        &per_loop(|g| g.queued_bytes),
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

/// `MissingToken` as `missing_token`.
fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
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
        stats.refusals.add(400);
        let gauges = Gauges {
            connections: 2,
            queued_bytes: 10,
            channels: 1,
            input_memory: 7,
            history_bytes: 5,
        };
        let loops = [
            LoopGauges {
                connections: 2,
                queued_bytes: 10,
                deflate_connections: 0,
            },
            LoopGauges::default(),
        ];
        let text = render(&stats, &hub, &gauges, &loops);
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
        assert!(text.contains(
            "fanout_loop_queued_bytes{loop=\"0\"} 10\nfanout_loop_queued_bytes{loop=\"1\"} 0\n"
        ));
        assert!(text.contains("fanout_loop_connections{loop=\"1\"} 0\n"));
        assert!(text.contains("fanout_loops 2\n"));
        assert!(text.contains("fanout_input_memory_bytes 7\n"));
        assert!(text.contains("fanout_history_bytes 5\n"));
        assert!(text.contains("fanout_history_evicted_total 2\n"));
        assert!(text.ends_with("fanout_channels 1\n"));
    }

    #[test]
    fn codes_past_the_room_are_counted_as_other_and_merges_add_up() {
        let mut a = ByCode::default();
        for code in 3000..3020 {
            a.add(code);
        }
        a.add(3000);
        assert_eq!(
            (a.get(3000), a.get(3015), a.get(3016), a.other),
            (2, 1, 0, 4)
        );
        let mut b = ByCode::default();
        b.add(3000);
        b.add(1000);
        b.merge(&a);
        assert_eq!((b.get(3000), b.get(1000)), (3, 1));
        assert_eq!(b.other, 4 + 1, "a's last code finds no room in b");
        let mut s = Stats {
            sends: 1,
            ..Stats::default()
        };
        s.merge(&Stats {
            sends: 2,
            publishes: b,
            ..Stats::default()
        });
        assert_eq!((s.sends, s.publishes.get(1000)), (3, 1));
    }
}
