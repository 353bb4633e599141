//! Delivery bookkeeping: per-publisher sequence tracking, tallies, latency histograms (and the
//! receive path's cheaper bucket counts, `latency.rs`) and failure causes. Pure data, merged
//! across threads at the end of a trial.
//!
//! What counts, per (receiver, publisher) pair within one trial:
//! - *delivered*: a sequence number received for the first time (each counts once);
//! - *reordered*: a delivery whose number is below one already received (it filled a gap);
//! - *duplicate*: a number received again (not a delivery);
//! - *lost*: computed once per trial as `expected - delivered`, where `expected` adds, for each
//!   message sent, the number of other connections of its channel open when the trial started.

use std::collections::BTreeMap;
use std::io;

use hdrhistogram::Histogram;
use serde::Serialize;

mod latency;

pub use latency::LatencyCounts;

/// How a received sequence number relates to what the pair had seen before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// At or past the highest number seen so far (gaps behind it are remembered).
    InOrder,
    /// Fills a gap: a delivery, but out of order.
    Reordered,
    /// Already received.
    Duplicate,
}

/// Tracks the sequence numbers one receiver got from one publisher, exactly, in O(1) while
/// messages arrive in order (the ordinary case over TCP) and O(gaps) otherwise.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeqTracker {
    /// One past the highest number received.
    next: u64,
    /// Numbers below `next` not received yet, as sorted, disjoint, half-open ranges.
    missing: Vec<(u64, u64)>,
}

impl SeqTracker {
    /// Records the arrival of `seq`.
    #[inline]
    pub fn record(&mut self, seq: u64) -> Arrival {
        if seq == self.next {
            self.next = seq + 1;
            return Arrival::InOrder;
        }
        self.record_out_of_line(seq)
    }

    /// [`SeqTracker::record`] for anything but the next number: a gap opens or closes, or a
    /// duplicate.
    #[cold]
    fn record_out_of_line(&mut self, seq: u64) -> Arrival {
        if seq > self.next {
            self.missing.push((self.next, seq));
            self.next = seq + 1;
            return Arrival::InOrder;
        }
        let i = self.missing.partition_point(|&(_, end)| end <= seq);
        match self.missing.get(i).copied() {
            Some((start, end)) if start <= seq => {
                match (start == seq, end == seq + 1) {
                    (true, true) => {
                        self.missing.remove(i);
                    }
                    (true, false) => self.missing[i].0 = seq + 1,
                    (false, true) => self.missing[i].1 = seq,
                    (false, false) => {
                        self.missing[i].1 = seq;
                        self.missing.insert(i + 1, (seq + 1, end));
                    }
                }
                Arrival::Reordered
            }
            _ => Arrival::Duplicate,
        }
    }

    /// How many distinct numbers were received.
    pub fn received(&self) -> u64 {
        self.next - self.missing.iter().map(|&(s, e)| e - s).sum::<u64>()
    }
}

/// Counters of one trial, summed over receivers (and threads).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// First receptions of this trial's messages.
    pub delivered: u64,
    /// Receptions of a message already received.
    pub duplicates: u64,
    /// Deliveries that arrived after a higher-numbered message from the same publisher.
    pub reordered: u64,
    /// Messages from an earlier trial that arrived during this one (ignored otherwise).
    pub stale: u64,
    /// Messages without a loadgen stamp (too short), e.g. from another client on the channel.
    pub foreign: u64,
    /// Payload bytes of every data message received, as on the wire (compressed or not).
    pub wire_bytes: u64,
    /// Data messages that arrived compressed (permessage-deflate).
    pub compressed: u64,
}

impl Tally {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Tally) {
        self.delivered += other.delivered;
        self.duplicates += other.duplicates;
        self.reordered += other.reordered;
        self.stale += other.stale;
        self.foreign += other.foreign;
        self.wire_bytes += other.wire_bytes;
        self.compressed += other.compressed;
    }
}

/// The largest latency a histogram tells apart (1 hour, in ns); larger ones count as this.
pub const LATENCY_MAX_NS: u64 = 3_600_000_000_000;

/// A latency histogram in nanoseconds, 1 ns to 1 hour at 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_NS, 3).expect("valid histogram bounds")
}

/// Latency percentiles in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest value recorded.
    pub max: f64,
}

impl Percentiles {
    /// Reads the percentiles of a nanosecond histogram (all zero when it is empty).
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let us = |ns: u64| (ns as f64 / 100.0).round() / 10.0;
        Percentiles {
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        }
    }
}

/// Why a connection failed to open, or closed during a trial.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// The server refused the TCP connection (nothing listening, or the backlog overflowed).
    Refused,
    /// The TCP connect plus handshake did not finish within `--connect-timeout`.
    TimedOut,
    /// The server answered the upgrade with another HTTP status.
    Http(u16),
    /// The connection was reset or closed before (or instead of) a proper WebSocket close.
    Reset,
    /// `Sec-WebSocket-Accept` was missing or wrong.
    BadAccept,
    /// `Sec-WebSocket-Protocol` was missing or not the offered channel.
    BadProtocol,
    /// `Sec-WebSocket-Extensions` named what we did not offer or cannot honour.
    BadExtension,
    /// The server's answer was not valid HTTP.
    BadResponse,
    /// No local address/port was available (ephemeral ports exhausted: add `--source`s).
    AddrUnavailable,
    /// The server sent a close frame (with this code, if any).
    Closed(Option<u16>),
    /// The server broke the framing rules (reported by the frame reader).
    Protocol,
    /// The TLS handshake failed (e.g. a certificate not trusted) or a record was bad.
    Tls,
    /// Any other socket error.
    Io(io::ErrorKind),
}

impl Cause {
    /// Classifies a socket error (or a TLS error that `Conn::read` wrapped in one).
    pub fn of(e: &io::Error) -> Cause {
        use io::ErrorKind as K;
        if e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) {
            return Cause::Tls;
        }
        match e.kind() {
            K::ConnectionRefused => Cause::Refused,
            K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
                Cause::Reset
            }
            K::TimedOut => Cause::TimedOut,
            K::AddrNotAvailable | K::AddrInUse => Cause::AddrUnavailable,
            kind => Cause::Io(kind),
        }
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cause::Refused => f.write_str("refused"),
            Cause::TimedOut => f.write_str("timed_out"),
            Cause::Http(s) => write!(f, "http_{s}"),
            Cause::Reset => f.write_str("reset"),
            Cause::BadAccept => f.write_str("bad_accept"),
            Cause::BadProtocol => f.write_str("bad_protocol"),
            Cause::BadExtension => f.write_str("bad_extension"),
            Cause::BadResponse => f.write_str("bad_response"),
            Cause::AddrUnavailable => f.write_str("addr_unavailable"),
            Cause::Closed(Some(c)) => write!(f, "closed_{c}"),
            Cause::Closed(None) => f.write_str("closed"),
            Cause::Protocol => f.write_str("protocol_error"),
            Cause::Tls => f.write_str("tls"),
            Cause::Io(k) => write!(f, "io_{k:?}"),
        }
    }
}

/// Counts of failures by cause (keyed by the cause's name, for the report and the JSON).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Failures(pub BTreeMap<String, u64>);

impl Failures {
    /// Counts one failure.
    pub fn add(&mut self, cause: Cause) {
        *self.0.entry(cause.to_string()).or_default() += 1;
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Failures) {
        for (k, v) in &other.0 {
            *self.0.entry(k.clone()).or_default() += v;
        }
    }

    /// Total failures.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// `refused=3 timed_out=1`, or `none`.
    pub fn describe(&self) -> String {
        if self.0.is_empty() {
            return "none".into();
        }
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_stream_has_no_gaps() {
        let mut t = SeqTracker::default();
        for s in 0..1000 {
            assert_eq!(t.record(s), Arrival::InOrder);
        }
        assert_eq!(t.received(), 1000);
        assert!(t.missing.is_empty());
    }

    #[test]
    fn loss_duplicates_and_reordering_are_counted_exactly() {
        let mut t = SeqTracker::default();
        let arrivals = [0, 1, 4, 2, 2, 7, 3, 3, 6, 0, 10];
        let got: Vec<Arrival> = arrivals.iter().map(|&s| t.record(s)).collect();
        use Arrival::*;
        assert_eq!(
            got,
            [
                InOrder, InOrder, InOrder, Reordered, Duplicate, InOrder, Reordered, Duplicate,
                Reordered, Duplicate, InOrder
            ]
        );
        // Received {0,1,2,3,4,6,7,10}; 5, 8 and 9 are missing.
        assert_eq!(t.received(), 8);
        assert_eq!(t.missing, vec![(5, 6), (8, 10)]);
        assert_eq!(t.record(9), Reordered);
        assert_eq!(t.missing, vec![(5, 6), (8, 9)]);
        assert_eq!(t.record(8), Reordered);
        assert_eq!(t.record(5), Reordered);
        assert!(t.missing.is_empty());
        assert_eq!(t.received(), 11);
    }

    #[test]
    fn a_gap_split_in_the_middle_stays_exact() {
        let mut t = SeqTracker::default();
        t.record(100);
        assert_eq!(t.received(), 1);
        assert_eq!(t.record(50), Arrival::Reordered);
        assert_eq!(t.missing, vec![(0, 50), (51, 100)]);
        assert_eq!(t.record(50), Arrival::Duplicate);
        assert_eq!(t.received(), 2);
    }

    #[test]
    fn every_tenth_lost_is_reported_exactly() {
        let mut t = SeqTracker::default();
        (0..1000u64).filter(|s| s % 10 != 9).for_each(|s| {
            t.record(s);
        });
        // 9, 19, ..., 989 are gaps; 999 is after the last arrival, so only the sent count (1000)
        // reveals it: loss is always `sent - received`, never the number of gaps.
        assert_eq!(t.missing.len(), 99);
        assert_eq!(1000 - t.received(), 100);
    }

    #[test]
    fn percentiles_are_in_microseconds() {
        let mut h = latency_histogram();
        for us in 1..=1000u64 {
            h.record(us * 1000).unwrap();
        }
        let p = Percentiles::of(&h);
        assert!((p.p50 - 500.0).abs() < 1.0, "{p:?}");
        assert!((p.p99 - 990.0).abs() < 1.0, "{p:?}");
        assert!((p.max - 1000.0).abs() < 1.0, "{p:?}");
        assert_eq!(
            Percentiles::of(&latency_histogram()),
            Percentiles::default()
        );
    }

    #[test]
    fn failures_are_named_by_cause() {
        let mut f = Failures::default();
        f.add(Cause::Refused);
        f.add(Cause::Http(503));
        f.add(Cause::Http(503));
        f.add(Cause::of(&io::Error::from(io::ErrorKind::ConnectionReset)));
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        f.add(Cause::of(&io::Error::new(io::ErrorKind::InvalidData, tls)));
        assert_eq!(f.describe(), "http_503=2 refused=1 reset=1 tls=1");
        assert_eq!(f.total(), 5);
    }
}
