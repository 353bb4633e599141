//! What happens to bytes read from an open connection: frames are read, stamped messages are
//! counted against the current trial (loss, duplicates, reordering, latency), pings are
//! answered and a close frame ends the connection. No socket here: the worker hands bytes in.

use fanout::proto::frame::OpCode;
use hdrhistogram::Histogram;

use super::conn::Conn;
use crate::stats::{Arrival, Cause, SeqTracker, Tally, latency_histogram};
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
    /// Latency of every delivery since the trial began (ns, from the scheduled send time).
    pub hist: Histogram<u64>,
    /// Latency since the last progress interval.
    pub interval: Histogram<u64>,
    /// Deliveries since the last progress interval.
    pub interval_delivered: u64,
    /// Deliveries not yet added to the shared progress counter.
    pub unsynced: u64,
    /// Data messages of any trial (stale ones too) not yet added to the shared counter.
    pub unsynced_frames: u64,
    /// When the latest delivery arrived (ns since the run's start).
    pub last_delivery_ns: u64,
}

impl Default for RecvState {
    fn default() -> Self {
        RecvState {
            trial: None,
            tally: Tally::default(),
            hist: latency_histogram(),
            interval: latency_histogram(),
            interval_delivered: 0,
            unsynced: 0,
            unsynced_frames: 0,
            last_delivery_ns: 0,
        }
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
    let result = reader.feed(bytes, |frame| match frame {
        Frame::Message { head, .. } => {
            rx.unsynced_frames += 1;
            match Stamp::read(head) {
                None => rx.tally.foreign += 1,
                Some(s) if Some(s.trial) != rx.trial => rx.tally.stale += 1,
                Some(s) => count(trackers, rx, s, now_ns),
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
    result.map_err(|_| Cause::Protocol)?;
    Ok(closed)
}

/// Counts one stamped message of the current trial.
fn count(trackers: &mut Vec<(u32, SeqTracker)>, rx: &mut RecvState, s: Stamp, now_ns: u64) {
    let i = match trackers.iter().position(|(p, _)| *p == s.publisher) {
        Some(i) => i,
        None => {
            trackers.push((s.publisher, SeqTracker::default()));
            trackers.len() - 1
        }
    };
    match trackers[i].1.record(s.seq) {
        Arrival::Duplicate => rx.tally.duplicates += 1,
        arrival => {
            rx.tally.delivered += 1;
            rx.tally.reordered += u64::from(arrival == Arrival::Reordered);
            rx.interval_delivered += 1;
            rx.unsynced += 1;
            rx.last_delivery_ns = rx.last_delivery_ns.max(now_ns);
            let latency = now_ns.saturating_sub(s.scheduled_ns).max(1);
            rx.hist.saturating_record(latency);
            rx.interval.saturating_record(latency);
        }
    }
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
        };
        assert_eq!(rx.tally, want);
        assert_eq!(rx.hist.len(), 4);
        assert_eq!(rx.hist.max(), rx.hist.highest_equivalent(50_000));
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
