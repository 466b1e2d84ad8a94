//! Health counts and the fixed log-scale latency histogram that rollups keep, with merging and
//! percentile estimates.

use aiwatch_core::observation::Health;
use serde::{Deserialize, Serialize};

/// Number of latency buckets: `[0, 1) ms`, 30 log-spaced buckets from 1 ms to 60 s, `[60 s, ∞)`.
pub const BUCKETS: usize = 32;

/// Lower edge of the first log-spaced bucket, in milliseconds.
const LOW_MS: f64 = 1.0;
/// Lower edge of the overflow bucket, in milliseconds.
const HIGH_MS: f64 = 60_000.0;
/// Number of log-spaced buckets between `LOW_MS` and `HIGH_MS`.
const LOG_BUCKETS: usize = BUCKETS - 2;

/// How many observations came out each way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCounts {
    pub up: u64,
    pub degraded: u64,
    pub down: u64,
    pub unknown: u64,
}

impl HealthCounts {
    /// The uptime figure of these counts (the formula lives in `aiwatch_core::uptime`).
    pub fn up_ratio(&self) -> Option<f64> {
        aiwatch_core::uptime::up_ratio(self.up, self.degraded, self.down)
    }

    pub fn record(&mut self, health: Health) {
        match health {
            Health::Up => self.up += 1,
            Health::Degraded => self.degraded += 1,
            Health::Down => self.down += 1,
            Health::Unknown => self.unknown += 1,
        }
    }

    pub fn merge(&mut self, other: &HealthCounts) {
        self.up += other.up;
        self.degraded += other.degraded;
        self.down += other.down;
        self.unknown += other.unknown;
    }

    /// All observations, unknown ones included.
    pub fn total(&self) -> u64 {
        self.up + self.degraded + self.down + self.unknown
    }

    /// Observations that said something about the service (up, degraded or down).
    pub fn known(&self) -> u64 {
        self.up + self.degraded + self.down
    }
}

/// Latencies (a probe's total time) bucketed on a fixed log scale, plus exact count, sum, min and
/// max. Two histograms merge by adding, so percentiles over any range come from merged rollups.
///
/// Estimates are exact when all samples share a value, and otherwise lie in the bucket of the
/// true value: a bucket spans a factor of 60000^(1/30) ≈ 1.44, so the error is at most 44 % and
/// typically far less (geometric interpolation inside the bucket, clamped to min/max).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyHistogram {
    pub count: u64,
    pub sum_ms: f64,
    pub min_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub buckets: [u64; BUCKETS],
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            count: 0,
            sum_ms: 0.0,
            min_ms: None,
            max_ms: None,
            buckets: [0; BUCKETS],
        }
    }
}

/// The ratio between the edges of a log-spaced bucket.
fn ratio() -> f64 {
    (HIGH_MS / LOW_MS).powf(1.0 / LOG_BUCKETS as f64)
}

/// The bucket a latency falls in.
pub fn bucket_of(ms: f64) -> usize {
    if ms.is_nan() || ms < LOW_MS {
        0
    } else if ms >= HIGH_MS {
        BUCKETS - 1
    } else {
        let i = ((ms / LOW_MS).ln() / ratio().ln()).floor() as usize + 1;
        i.clamp(1, LOG_BUCKETS)
    }
}

/// The `[lower, upper)` edges of a bucket in milliseconds (the last one is open-ended).
pub fn bucket_bounds(i: usize) -> (f64, f64) {
    match i {
        0 => (0.0, LOW_MS),
        i if i >= BUCKETS - 1 => (HIGH_MS, f64::INFINITY),
        i => (
            LOW_MS * ratio().powi(i as i32 - 1),
            LOW_MS * ratio().powi(i as i32),
        ),
    }
}

impl LatencyHistogram {
    /// Adds one latency; negative or NaN values are ignored.
    pub fn record(&mut self, ms: f64) {
        if !ms.is_finite() || ms < 0.0 {
            return;
        }
        self.count += 1;
        self.sum_ms += ms;
        self.min_ms = Some(self.min_ms.map_or(ms, |m| m.min(ms)));
        self.max_ms = Some(self.max_ms.map_or(ms, |m| m.max(ms)));
        self.buckets[bucket_of(ms)] += 1;
    }

    pub fn merge(&mut self, other: &LatencyHistogram) {
        self.count += other.count;
        self.sum_ms += other.sum_ms;
        self.min_ms = match (self.min_ms, other.min_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.max_ms = match (self.max_ms, other.max_ms) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *mine += theirs;
        }
    }

    pub fn mean_ms(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum_ms / self.count as f64)
    }

    /// The estimated `q`-quantile (`0.0..=1.0`) in milliseconds; `None` when empty or `q` is out
    /// of range.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let (min, max) = (self.min_ms?, self.max_ms?);
        if q == 0.0 {
            return Some(min);
        }
        if q == 1.0 {
            return Some(max);
        }
        // The rank of the sample we want, 1-based (nearest-rank definition).
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut below = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            if n == 0 {
                continue;
            }
            if below + n >= rank {
                let (lo, hi) = bucket_bounds(i);
                let lo = lo.max(min);
                let hi = hi.min(max);
                if hi <= lo {
                    return Some(lo);
                }
                // Where the rank sits inside this bucket's samples, mid-sample.
                let pos = ((rank - below) as f64 - 0.5) / n as f64;
                let est = if lo > 0.0 {
                    lo * (hi / lo).powf(pos)
                } else {
                    lo + (hi - lo) * pos
                };
                return Some(est.clamp(min, max));
            }
            below += n;
        }
        Some(max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_the_range_in_order() {
        assert_eq!(bucket_of(0.0), 0);
        assert_eq!(bucket_of(0.99), 0);
        assert_eq!(bucket_of(1.0), 1);
        assert_eq!(bucket_of(59_999.0), BUCKETS - 2);
        assert_eq!(bucket_of(60_000.0), BUCKETS - 1);
        assert_eq!(bucket_of(1e9), BUCKETS - 1);
        let mut last = 0;
        for ms in (0..70_000).step_by(7) {
            let b = bucket_of(ms as f64);
            assert!(b >= last);
            let (lo, hi) = bucket_bounds(b);
            assert!(
                lo <= ms as f64 * 1.000_001 && (ms as f64) < hi * 1.000_001,
                "{ms} in {b}"
            );
            last = b;
        }
    }

    #[test]
    fn one_value_is_exact() {
        let mut h = LatencyHistogram::default();
        for _ in 0..10 {
            h.record(123.0);
        }
        assert_eq!(h.quantile(0.5), Some(123.0));
        assert_eq!(h.quantile(0.99), Some(123.0));
        assert_eq!(h.mean_ms(), Some(123.0));
    }

    #[test]
    fn quantiles_land_in_the_true_bucket() {
        let mut h = LatencyHistogram::default();
        let values: Vec<f64> = (1..=1000).map(|i| i as f64 * 3.0).collect();
        for &v in &values {
            h.record(v);
        }
        for q in [0.01, 0.25, 0.5, 0.9, 0.95, 0.99] {
            let truth = values[((q * 1000.0_f64).ceil() as usize).max(1) - 1];
            let est = h.quantile(q).unwrap();
            assert!(
                (est / truth - 1.0).abs() < ratio() - 1.0,
                "q={q} est={est} truth={truth}"
            );
        }
        assert_eq!(h.quantile(1.0), Some(3000.0));
        assert_eq!(h.quantile(1.5), None);
    }
}
