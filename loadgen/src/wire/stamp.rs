//! The header every published payload starts with, padded with zeros to `--size`.
//!
//! Layout, little-endian: publisher id (u32), trial id (u32), sequence number (u64), scheduled
//! send time (u64, monotonic ns since the run's start). The trial id lets `sweep` reuse its
//! connections from one offered rate to the next: a late message from an earlier trial is
//! counted as stale, never as a delivery of the current one.

/// Bytes of the stamp; `--size` may not be smaller.
pub const STAMP_LEN: usize = 24;

/// What a receiver learns from a payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// Which publisher sent it (index into the run's publishers).
    pub publisher: u32,
    /// Which trial (offered-rate step) it belongs to.
    pub trial: u32,
    /// The publisher's sequence number within the trial, from 0.
    pub seq: u64,
    /// When it was scheduled to be sent, in ns since the run's start.
    pub scheduled_ns: u64,
}

impl Stamp {
    /// Writes the stamp into the first [`STAMP_LEN`] bytes of `out`.
    pub fn write(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&self.publisher.to_le_bytes());
        out[4..8].copy_from_slice(&self.trial.to_le_bytes());
        out[8..16].copy_from_slice(&self.seq.to_le_bytes());
        out[16..24].copy_from_slice(&self.scheduled_ns.to_le_bytes());
    }

    /// Reads a stamp from the start of a payload; `None` when it is too short to hold one.
    pub fn read(head: &[u8]) -> Option<Stamp> {
        let h: &[u8; STAMP_LEN] = head.get(..STAMP_LEN)?.try_into().ok()?;
        let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let u64_at = |i: usize| u64::from_le_bytes(h[i..i + 8].try_into().expect("8 bytes"));
        Some(Stamp {
            publisher: u32_at(0),
            trial: u32_at(4),
            seq: u64_at(8),
            scheduled_ns: u64_at(16),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trips_and_short_payloads_are_rejected() {
        let s = Stamp {
            publisher: 7,
            trial: 3,
            seq: u64::MAX - 1,
            scheduled_ns: 123_456_789,
        };
        let mut buf = [0u8; 64];
        s.write(&mut buf);
        assert_eq!(Stamp::read(&buf), Some(s));
        assert_eq!(Stamp::read(&buf[..STAMP_LEN]), Some(s));
        assert_eq!(Stamp::read(&buf[..STAMP_LEN - 1]), None);
    }
}
