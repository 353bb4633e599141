//! What happens to bytes read from an open connection: frames are read, stamped messages are
//! counted against the current trial (loss, duplicates, reordering, latency), pings are
//! answered and a close frame ends the connection. No socket here: the worker hands bytes in.
//!
//! This is loadgen's hot path — at a fan-out server's full rate, millions of frames a second
//! pass through it — so a delivery costs a header check (the reader's scan), one stamp read, an
//! in-order check on its (receiver, publisher) tracker and one increment of a latency bucket,
//! and nothing is allocated. The buckets become an HDR histogram once per progress interval
//! (`LatencyCounts`), the trial's histogram is the sum of the intervals', and the progress
//! counter is a difference of the tally, not an extra count.

use fanout::proto::frame::OpCode;
use hdrhistogram::Histogram;

use super::conn::Conn;
use crate::stats::{Arrival, Cause, LatencyCounts, SeqTracker, Tally, latency_histogram};
use crate::wire::inflate::HeadInflater;
use crate::wire::reader::Frame;
use crate::wire::stamp::Stamp;
use crate::wire::writer::{KeyGen, write_control};

/// A worker's receive-side counters for the current trial.
#[derive(Debug)]
pub struct RecvState {
    /// The trial being counted; stamped messages of any other trial are stale.
    pub trial: Option<u32>,
    /// Counters since the trial began.
    pub tally: Tally,
    /// Latency (ns, from the scheduled send time) of the deliveries of the trial's completed
    /// progress intervals; [`RecvState::interval`] holds the rest.
    pub hist: Histogram<u64>,
    /// Latency of the deliveries since the last progress interval: where a delivery is counted.
    pub interval: LatencyCounts,
    /// `tally.delivered` when the shared progress counter was last updated.
    pub synced: u64,
    /// Data messages of any trial (stale ones too) not yet added to the shared counter.
    pub unsynced_frames: u64,
    /// When the latest delivery arrived (ns since the run's start).
    pub last_delivery_ns: u64,
    /// The loop's inflater for compressed heads (allocated on first use).
    pub inflater: HeadInflater,
}

impl Default for RecvState {
    fn default() -> Self {
        RecvState {
            trial: None,
            tally: Tally::default(),
            hist: latency_histogram(),
            interval: LatencyCounts::default(),
            synced: 0,
            unsynced_frames: 0,
            last_delivery_ns: 0,
            inflater: HeadInflater::default(),
        }
    }
}

impl RecvState {
    /// Closes the current progress interval: its histogram (returned, with its deliveries) is
    /// added to the trial's and the counts start again from zero.
    pub fn end_interval(&mut self) -> (Histogram<u64>, u64) {
        let mut done = latency_histogram();
        self.interval.drain_into(&mut done);
        // Both come from `latency_histogram()`: the same bounds, so adding cannot fail.
        self.hist
            .add(&done)
            .expect("histograms with the same bounds");
        let delivered = done.len();
        (done, delivered)
    }

    /// Deliveries not yet added to the shared progress counter (and marks them added).
    pub fn take_unsynced(&mut self) -> u64 {
        let n = self.tally.delivered - self.synced;
        self.synced = self.tally.delivered;
        n
    }
}

/// Handles bytes read from an open connection at `now_ns`. `Ok(Some(cause))`: the server
/// closed the connection (our close reply is queued); `Err`: it broke the protocol.
pub fn on_bytes(
    conn: &mut Conn,
    bytes: &[u8],
    rx: &mut RecvState,
    now_ns: u64,
    keys: &mut KeyGen,
) -> Result<Option<Cause>, Cause> {
    let mut closed = None;
    let Conn {
        reader,
        trackers,
        wbuf,
        ..
    } = conn;
    let delivered = rx.tally.delivered;
    let RecvState {
        trial,
        tally,
        interval,
        unsynced_frames,
        inflater,
        ..
    } = &mut *rx;
    let result = reader.feed(bytes, inflater, |frame| match frame {
        Frame::Message {
            head,
            len,
            compressed,
            ..
        } => {
            *unsynced_frames += 1;
            tally.wire_bytes += len;
            tally.compressed += u64::from(compressed);
            match Stamp::read(head) {
                None => tally.foreign += 1,
                Some(s) if Some(s.trial) != *trial => tally.stale += 1,
                Some(s) => count(trackers, tally, interval, s, now_ns),
            }
        }
        Frame::Ping(payload) => write_control(wbuf, OpCode::Pong, payload, keys.key()),
        Frame::Pong => {}
        Frame::Close(code) => {
            if closed.is_none() {
                let echo = code.map(u16::to_be_bytes);
                write_control(
                    wbuf,
                    OpCode::Close,
                    echo.as_ref().map_or(&[], |c| c),
                    keys.key(),
                );
                closed = Some(Cause::Closed(code));
            }
        }
    });
    if rx.tally.delivered != delivered {
        rx.last_delivery_ns = rx.last_delivery_ns.max(now_ns);
    }
    result.map_err(|_| Cause::Protocol)?;
    Ok(closed)
}

/// Counts one stamped message of the current trial.
#[inline(always)]
fn count(
    trackers: &mut Vec<(u32, SeqTracker)>,
    tally: &mut Tally,
    interval: &mut LatencyCounts,
    s: Stamp,
    now_ns: u64,
) {
    // A receiver hears few publishers (one in a fan-out, the room's others in a chat), and
    // the first is by far the most common: a linear search, first entry first.
    let tracker = match trackers.iter_mut().position(|(p, _)| *p == s.publisher) {
        Some(i) => &mut trackers[i].1,
        None => {
            trackers.push((s.publisher, SeqTracker::default()));
            &mut trackers.last_mut().expect("just pushed").1
        }
    };
    match tracker.record(s.seq) {
        Arrival::InOrder => {}
        Arrival::Reordered => tally.reordered += 1,
        Arrival::Duplicate => {
            tally.duplicates += 1;
            return;
        }
    }
    tally.delivered += 1;
    interval.record(now_ns.saturating_sub(s.scheduled_ns).max(1));
}

#[cfg(test)]
mod tests {
    use super::*;
    use fanout::proto::frame::encode_frame;

    fn msg(publisher: u32, trial: u32, seq: u64, scheduled_ns: u64) -> Vec<u8> {
        let mut p = vec![0u8; 64];
        Stamp {
            publisher,
            trial,
            seq,
            scheduled_ns,
        }
        .write(&mut p);
        encode_frame(OpCode::Binary, &p)
    }

    #[test]
    fn deliveries_duplicates_reordering_and_stale_are_counted() {
        let mut conn = Conn::new(0, None);
        let mut rx = RecvState {
            trial: Some(2),
            ..RecvState::default()
        };
        let mut keys = KeyGen::new(1);
        let mut bytes = Vec::new();
        for (p, t, s) in [
            (0, 2, 0),
            (0, 2, 2),
            (0, 2, 1),
            (0, 2, 1),
            (1, 2, 0),
            (0, 1, 5),
        ] {
            bytes.extend(msg(p, t, s, 1_000));
        }
        bytes.extend(encode_frame(OpCode::Binary, b"short"));
        let r = on_bytes(&mut conn, &bytes, &mut rx, 51_000, &mut keys);
        assert_eq!(r, Ok(None));
        let want = Tally {
            delivered: 4,
            duplicates: 1,
            reordered: 1,
            stale: 1,
            foreign: 1,
            wire_bytes: 6 * 64 + 5,
            compressed: 0,
        };
        assert_eq!(rx.tally, want);
        assert_eq!(rx.last_delivery_ns, 51_000);
        assert_eq!(rx.take_unsynced(), 4);
        assert_eq!(rx.take_unsynced(), 0);
        // Closing the interval moves its deliveries into the trial's histogram.
        let (interval, delivered) = rx.end_interval();
        assert_eq!((interval.len(), delivered, rx.hist.len()), (4, 4, 4));
        assert_eq!(rx.hist.max(), rx.hist.highest_equivalent(50_000));
        assert_eq!(rx.end_interval().1, 0);
        assert_eq!(conn.trackers.len(), 2);
    }

    #[test]
    fn pings_are_answered_and_close_is_echoed() {
        let mut conn = Conn::new(0, None);
        let mut rx = RecvState::default();
        let mut keys = KeyGen::new(1);
        let mut bytes = encode_frame(OpCode::Ping, b"abc");
        bytes.extend(encode_frame(OpCode::Close, &1008u16.to_be_bytes()));
        let r = on_bytes(&mut conn, &bytes, &mut rx, 0, &mut keys);
        assert_eq!(r, Ok(Some(Cause::Closed(Some(1008)))));
        // A masked pong (2 + 4 + 3 bytes) and a masked close (2 + 4 + 2 bytes).
        assert_eq!(conn.wbuf.len(), 9 + 8);
        assert_eq!((conn.wbuf[0], conn.wbuf[1]), (0x8A, 0x83));
        assert_eq!((conn.wbuf[9], conn.wbuf[10]), (0x88, 0x82));
        assert!(conn.has_output());
    }
}
