//! A query's end-to-end latency: for each output record the sink acknowledged, the time from the
//! record's timestamp (its input record's: the producer's create time, or the broker's append time)
//! to the acknowledgement, counted in fixed buckets as a Prometheus histogram.

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of the buckets, in milliseconds.
pub const BUCKETS_MS: [u64; 14] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 60_000,
];

/// Observations per bucket (not cumulative), their count and sum.
#[derive(Debug, Default)]
pub struct Latency {
    /// One more than the bounds: the last counts what is above every bound.
    buckets: [AtomicU64; BUCKETS_MS.len() + 1],
    count: AtomicU64,
    sum_ms: AtomicU64,
}

/// A histogram as it was read: cumulative counts per bound, then the total count and sum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencySnapshot {
    /// `(bound in ms, observations at or below it)`, for each of [`BUCKETS_MS`].
    pub cumulative: Vec<(u64, u64)>,
    pub count: u64,
    pub sum_ms: u64,
}

impl Latency {
    /// Counts records with timestamps `timestamps` (ms since the epoch) acknowledged at `now_ms`;
    /// timestamps in the future count as 0, records without one (negative) are left out.
    pub fn observe(&self, now_ms: i64, timestamps: impl IntoIterator<Item = i64>) {
        // Counted here first: a batch costs one atomic add per bucket it touches, not per record.
        let mut counts = [0u64; BUCKETS_MS.len() + 1];
        let mut sum = 0u64;
        for t in timestamps.into_iter().filter(|t| *t >= 0) {
            let ms = u64::try_from(now_ms.saturating_sub(t)).unwrap_or(0);
            let bucket = BUCKETS_MS.partition_point(|b| *b < ms);
            counts[bucket] += 1;
            sum = sum.saturating_add(ms);
        }
        for (bucket, n) in self.buckets.iter().zip(counts).filter(|(_, n)| *n > 0) {
            bucket.fetch_add(n, Ordering::Relaxed);
        }
        let count: u64 = counts.iter().sum();
        if count > 0 {
            self.count.fetch_add(count, Ordering::Relaxed);
            self.sum_ms.fetch_add(sum, Ordering::Relaxed);
        }
    }

    /// The histogram now.
    pub fn snapshot(&self) -> LatencySnapshot {
        let mut total = 0;
        let cumulative = BUCKETS_MS
            .iter()
            .zip(&self.buckets)
            .map(|(bound, n)| {
                total += n.load(Ordering::Relaxed);
                (*bound, total)
            })
            .collect();
        LatencySnapshot {
            cumulative,
            count: self.count.load(Ordering::Relaxed),
            sum_ms: self.sum_ms.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_fall_in_their_buckets() {
        let latency = Latency::default();
        latency.observe(1_000, [999, 995, 500, 2_000, -1, i64::MIN]);
        let s = latency.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.sum_ms, 1 + 5 + 500);
        assert_eq!(s.cumulative[0], (1, 2), "1 ms and the future one");
        assert_eq!(s.cumulative[2], (5, 3));
        assert_eq!(s.cumulative[8], (500, 4));
        assert_eq!(s.cumulative.last(), Some(&(60_000, 4)));
        latency.observe(i64::MAX, [0]);
        assert_eq!(
            latency.snapshot().cumulative.last(),
            Some(&(60_000, 4)),
            "beyond the last bound"
        );
        assert_eq!(latency.snapshot().count, 5);
    }
}
