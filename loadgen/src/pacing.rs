//! The open-loop send schedule.
//!
//! A trial offers `rate` messages per second in total, spread evenly over `publishers`: slot
//! `j` of the trial is due at `start + j / rate`, and slot `j` belongs to publisher `j % P` as
//! its message number `j / P`. Each publisher therefore sends every `P / rate` seconds, phases
//! interleaved so the server sees a steady stream rather than P-message bursts.
//!
//! Open loop: a message's due time never depends on when earlier ones were sent or answered.
//! A sender that falls behind sends everything overdue at once, and latency is measured from
//! the *due* time, so a stall in the server (or in loadgen) shows up in the percentiles instead
//! of silently lowering the offered rate (coordinated omission).

/// When each message of a trial is due; all times are ns since the run's start.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    start_ns: u64,
    duration_ns: u64,
    rate: f64,
    publishers: u64,
    slots: u64,
}

impl Schedule {
    /// A schedule of `rate` messages/s in total over `publishers`, for `duration_ns` from
    /// `start_ns`. `rate` must be positive and finite, `publishers` at least 1.
    pub fn new(start_ns: u64, duration_ns: u64, rate: f64, publishers: u32) -> Schedule {
        assert!(rate.is_finite() && rate > 0.0, "rate must be positive");
        assert!(publishers > 0, "at least one publisher");
        let mut s = Schedule {
            start_ns,
            duration_ns,
            rate,
            publishers: publishers.into(),
            slots: 0,
        };
        // The number of slots is the least j whose offset reaches the duration; start from the
        // real-valued estimate and settle it with the same rounding `offset` uses.
        let mut j = (duration_ns as f64 * rate / 1e9).ceil() as u64;
        while j > 0 && s.offset(j - 1) >= duration_ns {
            j -= 1;
        }
        while s.offset(j) < duration_ns {
            j += 1;
        }
        s.slots = j;
        s
    }

    /// Offset of slot `j` from the start, in ns.
    fn offset(&self, j: u64) -> u64 {
        (j as f64 * 1e9 / self.rate) as u64
    }

    /// When message `k` of `publisher` is due, or `None` when it falls after the trial's end.
    pub fn due_ns(&self, publisher: u32, k: u64) -> Option<u64> {
        let j = k
            .checked_mul(self.publishers)?
            .checked_add(publisher.into())?;
        (j < self.slots).then(|| self.start_ns + self.offset(j))
    }

    /// How many messages `publisher` sends in the whole trial.
    pub fn count(&self, publisher: u32) -> u64 {
        let q = u64::from(publisher);
        if q < self.slots {
            (self.slots - q - 1) / self.publishers + 1
        } else {
            0
        }
    }

    /// How many messages all publishers send together.
    pub fn total(&self) -> u64 {
        self.slots
    }

    /// The trial's start, ns since the run's start.
    pub fn start_ns(&self) -> u64 {
        self.start_ns
    }

    /// The trial's end (exclusive): no message is due at or after it.
    pub fn end_ns(&self) -> u64 {
        self.start_ns + self.duration_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn total_is_rate_times_duration() {
        for (rate, dur, want) in [
            (50.0, SEC, 50),
            (50.0, 10 * SEC, 500),
            (1000.0, SEC / 2, 500),
            (3.0, SEC, 3),
            (7.0, SEC / 3, 3), // slots at 0, 1/7, 2/7 s are before 1/3 s
            (1e6, SEC, 1_000_000),
            (0.5, SEC, 1),
        ] {
            let s = Schedule::new(5, dur, rate, 1);
            assert_eq!(s.total(), want, "rate {rate} over {dur} ns");
            assert_eq!(s.count(0), want);
        }
    }

    #[test]
    fn publishers_share_the_slots_evenly_and_interleaved() {
        let s = Schedule::new(1000, SEC, 100.0, 3);
        assert_eq!(s.total(), 100);
        assert_eq!((s.count(0), s.count(1), s.count(2)), (34, 33, 33));
        assert_eq!(s.count(0) + s.count(1) + s.count(2), s.total());
        // Slot j = 3k + q is due at 1000 + j * 10 ms.
        assert_eq!(s.due_ns(0, 0), Some(1000));
        assert_eq!(s.due_ns(1, 0), Some(1000 + 10_000_000));
        assert_eq!(s.due_ns(2, 0), Some(1000 + 20_000_000));
        assert_eq!(s.due_ns(0, 1), Some(1000 + 30_000_000));
        for q in 0..3 {
            let n = s.count(q);
            assert!(s.due_ns(q, n - 1).is_some() && s.due_ns(q, n).is_none());
            let dues: Vec<u64> = (0..n).map(|k| s.due_ns(q, k).unwrap()).collect();
            assert!(
                dues.windows(2).all(|w| w[1] - w[0] == 30_000_000),
                "publisher {q}"
            );
            assert!(dues.iter().all(|&d| d >= s.start_ns() && d < s.end_ns()));
        }
    }

    #[test]
    fn more_publishers_than_slots_leaves_some_idle() {
        let s = Schedule::new(0, SEC, 2.0, 5);
        assert_eq!(s.total(), 2);
        assert_eq!(
            (0..5).map(|q| s.count(q)).collect::<Vec<_>>(),
            vec![1, 1, 0, 0, 0]
        );
        assert_eq!(s.due_ns(2, 0), None);
    }
}
