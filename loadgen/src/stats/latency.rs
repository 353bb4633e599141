//! [`LatencyCounts`]: the receive path's latency histogram — HDR's buckets, without HDR's
//! bookkeeping on every record.

use hdrhistogram::Histogram;

use super::LATENCY_MAX_NS;

/// Latency counts in exactly the buckets of [`super::latency_histogram`], recorded at the cost
/// of an index computation and an increment: the receive path's histogram. `Histogram::record`
/// also keeps a total, a minimum and a maximum, and checks for resizing, on every call; here
/// that bookkeeping happens once, in [`LatencyCounts::drain_into`], which records each bucket's
/// count at the bucket's lowest value. A histogram only ever reports values through their
/// bucket (percentiles, maximum and minimum are bucket bounds), so the result is the one that
/// recording each value would have given — `drained_counts_equal_recorded_values` checks it.
///
/// The layout is HDR's for 1 ns – 1 h at 3 significant digits: 2 048 sub-buckets of 1 ns for
/// values below 2 048 ns, then for each further power of two a bucket of 1 024 sub-buckets
/// twice as wide as the one before.
#[derive(Clone, Debug)]
pub struct LatencyCounts {
    counts: Box<[u64]>,
}

/// log2 of the sub-buckets per bucket after the first: 3 significant digits need 2 000
/// distinct values, so 2 048 sub-buckets, the upper half of which are new in each bucket.
const HALF_MAGNITUDE: u32 = 10;

/// How many buckets cover 0 – 1 h: up to the end of the bucket holding [`LATENCY_MAX_NS`].
const LATENCY_BUCKETS: usize =
    (LatencyCounts::power(LATENCY_MAX_NS) as usize + 2) << HALF_MAGNITUDE;

impl Default for LatencyCounts {
    fn default() -> Self {
        LatencyCounts {
            counts: vec![0; LATENCY_BUCKETS].into_boxed_slice(),
        }
    }
}

impl LatencyCounts {
    /// Which power of two past the first 2 048 values `v` falls in.
    #[inline(always)]
    const fn power(v: u64) -> u32 {
        53 - (v | 2047).leading_zeros()
    }

    /// The bucket of `ns`. Like `Histogram::saturating_record`, a value past the last bucket
    /// counts as [`LATENCY_MAX_NS`]; one past 1 h but within the last bucket counts as itself.
    #[inline(always)]
    fn index(ns: u64) -> usize {
        let p = Self::power(ns);
        let i = ((p as usize) << HALF_MAGNITUDE) + (ns >> p) as usize;
        if i < LATENCY_BUCKETS {
            i
        } else {
            Self::index(LATENCY_MAX_NS)
        }
    }

    /// The lowest value of bucket `i`.
    fn lowest(i: usize) -> u64 {
        let bucket = (i >> HALF_MAGNITUDE).saturating_sub(1) as u32;
        ((i - ((bucket as usize) << HALF_MAGNITUDE)) as u64) << bucket
    }

    /// Counts one latency.
    #[inline(always)]
    pub fn record(&mut self, ns: u64) {
        // `index` is below the length for every input, so this never skips a value.
        if let Some(c) = self.counts.get_mut(Self::index(ns)) {
            *c += 1;
        }
    }

    /// Adds the counts to `hist` (made by [`super::latency_histogram`]) and clears them.
    pub fn drain_into(&mut self, hist: &mut Histogram<u64>) {
        for (i, c) in self.counts.iter_mut().enumerate() {
            if *c > 0 {
                let n = std::mem::take(c);
                hist.record_n(Self::lowest(i), n)
                    .expect("every bucket is within the histogram's bounds");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Percentiles, latency_histogram};

    /// Values across the whole range: every one below 2^17, and around every power of two and
    /// a spread of others above, up to past the 1-hour bound.
    fn latency_samples() -> Vec<u64> {
        let mut v: Vec<u64> = (0..1 << 17).collect();
        for shift in 17..43 {
            let p = 1u64 << shift;
            v.extend([p - 1, p, p + 1, p + p / 3, p + p / 2 + 7, 2 * p - 1]);
        }
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.push(x % (LATENCY_MAX_NS * 2));
        }
        v.extend([
            LATENCY_MAX_NS - 1,
            LATENCY_MAX_NS,
            LATENCY_MAX_NS + 1,
            u64::MAX,
        ]);
        v
    }

    #[test]
    fn latency_buckets_are_the_histograms() {
        let h = latency_histogram();
        assert_eq!(LATENCY_BUCKETS, h.distinct_values());
        for v in latency_samples() {
            let i = LatencyCounts::index(v);
            // What `saturating_record` keeps: the value itself unless it is past the last bucket.
            let past_last = LatencyCounts::lowest(LATENCY_BUCKETS);
            let v = if v < past_last { v } else { LATENCY_MAX_NS };
            assert_eq!(LatencyCounts::lowest(i), h.lowest_equivalent(v), "{v}");
            assert_eq!(
                LatencyCounts::lowest(i + 1) - 1,
                h.highest_equivalent(v),
                "{v}"
            );
        }
    }

    #[test]
    fn drained_counts_equal_recorded_values() {
        let (mut direct, mut drained) = (latency_histogram(), latency_histogram());
        let mut counts = LatencyCounts::default();
        let samples = latency_samples();
        for &v in samples.iter().step_by(3) {
            direct.saturating_record(v);
            counts.record(v);
        }
        counts.drain_into(&mut drained);
        assert_eq!(drained.len(), direct.len());
        assert_eq!((drained.min(), drained.max()), (direct.min(), direct.max()));
        assert_eq!(Percentiles::of(&drained), Percentiles::of(&direct));
        for q in [0.0, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999, 1.0] {
            assert_eq!(
                drained.value_at_quantile(q),
                direct.value_at_quantile(q),
                "{q}"
            );
        }
        assert!(direct.iter_recorded().eq(drained.iter_recorded()));
        // Drained means cleared.
        let mut again = latency_histogram();
        counts.drain_into(&mut again);
        assert!(again.is_empty());
    }
}
