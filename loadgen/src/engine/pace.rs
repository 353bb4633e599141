//! Read pacing: while data arrives densely, a loop turn begins at least [`PACE`] after the one
//! before (or sooner, when a send, connect or progress tick is due). The frames that arrive
//! meanwhile are then read with one `recv` per socket, instead of a wake-up, an `epoll_wait`
//! and a `recv` for every few arrivals: a server that writes frames one by one (or a fan-out
//! server walking its subscribers) would otherwise make loadgen pay a wake-up per write, and on
//! loopback every `recv` also sends the ACK for what it read. Pacing adds at most [`PACE`] to
//! latencies that are then in milliseconds, and never applies to sparse traffic: a chat room's
//! deliveries keep their microsecond latency. Pure arithmetic on timestamps: the worker sleeps.

use std::time::Duration;

/// The shortest time from one turn to the next while reads are dense.
pub const PACE: Duration = Duration::from_micros(200);

/// Dense: at least this many readable sockets per millisecond over the last window — 50 000
/// a second. `chat`'s 9 000 deliveries a second are sparse; a 1 000-subscriber fan-out is dense
/// while a broadcast lasts.
pub const DENSE_READS_PER_MS: u64 = 50;

/// Density is measured over windows of at least this long.
pub const WINDOW: Duration = Duration::from_millis(1);

/// Turn times and the read density of an event loop.
#[derive(Clone, Copy, Debug, Default)]
pub struct Pacer {
    /// When the latest turn began (ns since the run's start).
    turn_ns: u64,
    /// When the current window began, and the reads in it so far.
    window_ns: u64,
    window_reads: u64,
    /// Whether the last complete window was dense.
    dense: bool,
}

impl Pacer {
    /// A turn began at `now_ns` with `reads` readable sockets.
    pub fn turn(&mut self, now_ns: u64, reads: usize) {
        self.turn_ns = now_ns;
        self.window_reads += reads as u64;
        let span = now_ns.saturating_sub(self.window_ns);
        if span >= WINDOW.as_nanos() as u64 {
            self.dense = self.window_reads * 1_000_000 >= DENSE_READS_PER_MS * span;
            self.window_ns = now_ns;
            self.window_reads = 0;
        }
    }

    /// The earliest instant the next poll should begin, when reads are dense.
    pub fn resume_at(&self) -> Option<u64> {
        self.dense.then(|| self.turn_ns + PACE.as_nanos() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: u64 = 1_000;

    #[test]
    fn sparse_reads_are_never_paced() {
        // chat: 9 reads every millisecond, and a timer turn between them.
        let mut p = Pacer::default();
        for ms in 0..50 {
            p.turn(ms * 1000 * US, 0);
            p.turn(ms * 1000 * US + 80 * US, 9);
            assert_eq!(p.resume_at(), None, "at {ms} ms");
        }
    }

    #[test]
    fn dense_reads_are_paced_until_they_thin_out() {
        let mut p = Pacer::default();
        // A broadcast: 20 reads every 100 µs (200 a millisecond).
        let mut t = 0;
        for _ in 0..30 {
            t += 100 * US;
            p.turn(t, 20);
        }
        assert_eq!(p.resume_at(), Some(t + 200 * US));
        // Then a read a millisecond: paced no longer once a window has passed.
        for _ in 0..3 {
            t += 1000 * US;
            p.turn(t, 1);
        }
        assert_eq!(p.resume_at(), None);
    }
}
