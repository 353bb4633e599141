//! The per-connection message rate limit (`--max-client-rate N` messages per second, with a
//! burst of `--max-client-burst`): a token bucket with no timer.
//!
//! The bucket is refilled lazily: each [`Bucket::try_take`] first adds what the time since the
//! last call earned, capped at the burst, then takes one message if there is one. The caller
//! passes the time (the `Instant` it read for this loop turn), so the bucket costs nothing
//! between messages and a million idle connections cost no wake-ups.
//!
//! # Exact arithmetic
//!
//! The level is kept in integer *credits*: one message is worth [`CREDITS_PER_MESSAGE`] (10⁹)
//! credits, and every nanosecond earns `rate` credits. So `elapsed` earns exactly
//! `elapsed_ns × rate` credits (an integer: one second earns `rate × 10⁹`, exactly `rate`
//! messages), computed in `u128` so that no span between two `Instant`s can overflow it. There
//! is no division and no rounding anywhere, so nothing is lost or gained between calls however
//! they are spaced: after a full bucket, a client sending as fast as it can gets exactly
//! `burst + ⌊elapsed_ns × rate / 10⁹⌋` messages through, whether it is asked every nanosecond
//! or once a year. (A float level, or a fixed `10⁹ / rate` nanoseconds per message, would drift:
//! 10⁹ / 3 is not an integer.) The full level, `burst × 10⁹` ≤ 4.3 × 10¹⁸, fits a `u64`.
//!
//! The state is 32 bytes: the last refill `Instant`, the level, and the two limits.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

/// Credits per message; equal to nanoseconds per second, so that a nanosecond earns `rate`
/// credits.
pub const CREDITS_PER_MESSAGE: u64 = 1_000_000_000;

/// A token bucket: at most `burst` messages at once, refilled at `rate` messages per second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    /// When the level was last brought up to date; never moves backwards.
    last: Instant,
    /// The level, in credits: `0..=burst × CREDITS_PER_MESSAGE`.
    credits: u64,
    /// Messages per second earned.
    rate: u32,
    /// Most messages held.
    burst: u32,
}

impl Bucket {
    /// A full bucket at `now`: a new connection may send `burst` messages at once.
    pub fn new(rate: NonZeroU32, burst: NonZeroU32, now: Instant) -> Self {
        Bucket {
            last: now,
            credits: u64::from(burst.get()) * CREDITS_PER_MESSAGE,
            rate: rate.get(),
            burst: burst.get(),
        }
    }

    /// Takes one message's worth if the bucket holds it at `now`: `true` means the message may
    /// go, `false` that it is over the limit (and nothing was taken). A `now` earlier than a
    /// previous one is taken as that previous one (no time passed).
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        match self.credits.checked_sub(CREDITS_PER_MESSAGE) {
            Some(left) => {
                self.credits = left;
                true
            }
            None => false,
        }
    }

    /// How many whole messages could be taken at `now` (at most the burst).
    pub fn available(&self, now: Instant) -> u32 {
        let mut b = *self;
        b.refill(now);
        // At most `burst`, which is a `u32`.
        (b.credits / CREDITS_PER_MESSAGE) as u32
    }

    /// How long after `now` until one message may be taken: zero when one may be taken now.
    /// (For a loop that prefers to stop reading a fast client until then rather than drop.)
    pub fn wait(&self, now: Instant) -> Duration {
        let mut b = *self;
        b.refill(now);
        let missing = CREDITS_PER_MESSAGE.saturating_sub(b.credits);
        Duration::from_nanos(missing.div_ceil(u64::from(b.rate)))
    }

    /// Adds what the time since the last refill earned, capped at the burst.
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = self.last.max(now);
        let full = u64::from(self.burst) * CREDITS_PER_MESSAGE;
        let room = full - self.credits;
        let earned = elapsed.as_nanos().saturating_mul(u128::from(self.rate));
        // `min` with `room` (a `u64`) makes the cast lossless.
        self.credits += earned.min(u128::from(room)) as u64;
    }
}

#[cfg(test)]
mod tests;
