//! The rollup tiers both engines share: table and column names, and how a time range splits
//! into whole days, whole hours and the minutes at either end (falling back to a coarser tier
//! where a finer one was pruned). Pure: no database in here.

use crate::histogram::BUCKETS;
use crate::store::{Granularity, TimeRange};

pub(crate) const DAY_MS: i64 = 86_400_000;
pub(crate) const HOUR_MS: i64 = 3_600_000;
pub(crate) const MINUTE_MS: i64 = 60_000;

/// The `meta` key remembering how far a rollup tier was pruned, so that reads fall back to the
/// next coarser tier there.
pub(crate) fn pruned_before_key(granularity: Granularity) -> &'static str {
    match granularity {
        Granularity::Minute => "minute_rollups_pruned_before_ms",
        Granularity::Hour => "hour_rollups_pruned_before_ms",
        Granularity::Day => "day_rollups_pruned_before_ms",
    }
}

/// The rollup table of a granularity.
pub(crate) fn rollup_table(granularity: Granularity) -> &'static str {
    match granularity {
        Granularity::Minute => "rollup_minute",
        Granularity::Hour => "rollup_hour",
        Granularity::Day => "rollup_day",
    }
}

/// Names of the histogram columns, `h00`..`h31`.
pub(crate) fn histogram_columns() -> impl Iterator<Item = String> {
    (0..BUCKETS).map(|i| format!("h{i:02}"))
}

/// Milliseconds since the Unix epoch.
pub(crate) fn to_ms(at: chrono::DateTime<chrono::Utc>) -> i64 {
    at.timestamp_millis()
}

/// One stretch of time read from one rollup table: buckets starting in `[from_ms, to_ms)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) granularity: Granularity,
    pub(crate) from_ms: i64,
    pub(crate) to_ms: i64,
}

pub(crate) fn floor_to(ms: i64, unit: i64) -> i64 {
    ms.div_euclid(unit) * unit
}

pub(crate) fn ceil_to(ms: i64, unit: i64) -> i64 {
    -floor_to(-ms, unit)
}

/// A half-open `[from, to)` in ms.
pub(crate) type Interval = (i64, i64);

/// Splits `[from, to)` at `unit` boundaries: the whole units inside it, and the partial units at
/// either end (each inside one unit).
pub(crate) fn split(from: i64, to: i64, unit: i64) -> (Option<Interval>, Vec<Interval>) {
    let head_end = ceil_to(from, unit);
    let tail_start = floor_to(to, unit);
    if head_end > tail_start {
        // Both ends inside one unit.
        return (None, vec![(from, to)]);
    }
    let whole = (head_end < tail_start).then_some((head_end, tail_start));
    let mut partial = Vec::new();
    if from < head_end {
        partial.push((from, head_end));
    }
    if tail_start < to {
        partial.push((tail_start, to));
    }
    (whole, partial)
}

/// How far each tier has been pruned (ms; `i64::MIN` when never).
#[derive(Clone, Copy, Debug)]
pub(crate) struct PrunedBefore {
    pub(crate) minute: i64,
    pub(crate) hour: i64,
}

/// Splits a range (its start rounded down to the minute) into whole UTC days read from day
/// rollups, whole hours from hour rollups and the minutes left at either end from minute
/// rollups. Where a finer tier was pruned, the enclosing hour or day is read whole instead.
pub(crate) fn spans(range: TimeRange, pruned: PrunedBefore) -> Vec<Span> {
    let from = floor_to(to_ms(range.from), MINUTE_MS);
    let to = to_ms(range.to);
    if to <= from {
        return Vec::new();
    }
    let span = |granularity, (from_ms, to_ms)| Span {
        granularity,
        from_ms,
        to_ms,
    };
    let mut out = Vec::new();
    let (days, partial_days) = split(from, to, DAY_MS);
    if let Some(days) = days {
        out.push(span(Granularity::Day, days));
    }
    for (a, b) in partial_days {
        if a < pruned.hour {
            let day = floor_to(a, DAY_MS);
            out.push(span(Granularity::Day, (day, day + DAY_MS)));
            continue;
        }
        let (hours, partial_hours) = split(a, b, HOUR_MS);
        if let Some(hours) = hours {
            out.push(span(Granularity::Hour, hours));
        }
        for (c, d) in partial_hours {
            if c < pruned.minute {
                let hour = floor_to(c, HOUR_MS);
                out.push(span(Granularity::Hour, (hour, hour + HOUR_MS)));
            } else {
                out.push(span(Granularity::Minute, (c, d)));
            }
        }
    }
    out.sort_by_key(|s| s.from_ms);
    out
}

/// The uptime of `range` from each matching series' counts and first sighting (unix ms), the
/// same for both engines: with `expected_interval`, a series' checks that never came count as
/// missing (unknown).
pub(crate) fn uptime_of(
    per_series: &[(crate::histogram::HealthCounts, i64)],
    range: TimeRange,
    expected_interval: Option<std::time::Duration>,
) -> crate::error::Result<crate::store::Uptime> {
    let range_ms = (to_ms(range.to) - to_ms(range.from)).max(0) as u128;
    let per_series_expected = expected_interval
        .filter(|i| !i.is_zero())
        .map(|i| (range_ms / i.as_millis().max(1)) as u64);
    let mut counts = crate::histogram::HealthCounts::default();
    let mut missing = 0u64;
    for (c, _) in per_series {
        if let Some(expected) = per_series_expected {
            missing += expected.saturating_sub(c.total());
        }
        counts.merge(c);
    }
    let known = counts.known();
    let ratio = |n: u64, d: u64| (d > 0).then(|| n as f64 / d as f64);
    Ok(crate::store::Uptime {
        counts,
        series: per_series.len(),
        expected: per_series_expected.map(|e| e * per_series.len() as u64),
        missing,
        up_ratio: counts.up_ratio(),
        degraded_ratio: ratio(counts.degraded, known),
        unknown_ratio: aiwatch_core::uptime::unknown_ratio(counts.unknown, missing, counts.total()),
        first_seen: per_series
            .iter()
            .map(|(_, first_seen_ms)| *first_seen_ms)
            .min()
            .map(crate::codec::from_ms)
            .transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn from_ms(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(ms).unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    const NEVER: PrunedBefore = PrunedBefore {
        minute: i64::MIN,
        hour: i64::MIN,
    };

    fn shape(spans: &[Span]) -> Vec<(Granularity, String, String)> {
        spans
            .iter()
            .map(|s| {
                (
                    s.granularity,
                    from_ms(s.from_ms).format("%dT%H:%M").to_string(),
                    from_ms(s.to_ms).format("%dT%H:%M").to_string(),
                )
            })
            .collect()
    }

    fn g(granularity: Granularity, from: &str, to: &str) -> (Granularity, String, String) {
        (granularity, from.into(), to.into())
    }

    #[test]
    fn a_range_splits_into_days_hours_and_minutes() {
        use Granularity::*;
        let r = TimeRange::new(at("2025-01-01T12:34:30Z"), at("2025-01-04T06:07:00Z"));
        assert_eq!(
            shape(&spans(r, NEVER)),
            [
                g(Minute, "01T12:34", "01T13:00"),
                g(Hour, "01T13:00", "02T00:00"),
                g(Day, "02T00:00", "04T00:00"),
                g(Hour, "04T00:00", "04T06:00"),
                g(Minute, "04T06:00", "04T06:07"),
            ]
        );
        // Inside one hour; across midnight without a whole day or hour.
        let inside = TimeRange::new(at("2025-01-01T01:10:00Z"), at("2025-01-01T01:20:00Z"));
        assert_eq!(
            shape(&spans(inside, NEVER)),
            [g(Minute, "01T01:10", "01T01:20")]
        );
        let midnight = TimeRange::new(at("2025-01-01T23:30:00Z"), at("2025-01-02T00:30:00Z"));
        assert_eq!(
            shape(&spans(midnight, NEVER)),
            [
                g(Minute, "01T23:30", "02T00:00"),
                g(Minute, "02T00:00", "02T00:30"),
            ]
        );
        // Minute rollups pruned up to Jan 3: the head's partial hour is read from its hour.
        let pruned = PrunedBefore {
            minute: to_ms(at("2025-01-03T00:00:00Z")),
            hour: i64::MIN,
        };
        assert_eq!(
            shape(&spans(r, pruned))[..2],
            [
                g(Hour, "01T12:00", "01T13:00"),
                g(Hour, "01T13:00", "02T00:00"),
            ]
        );
        // Hour rollups pruned too: the head's partial day is read from its day.
        let pruned = PrunedBefore {
            minute: to_ms(at("2025-01-03T00:00:00Z")),
            hour: to_ms(at("2025-01-02T00:00:00Z")),
        };
        assert_eq!(
            shape(&spans(r, pruned)),
            [
                g(Day, "01T00:00", "02T00:00"),
                g(Day, "02T00:00", "04T00:00"),
                g(Hour, "04T00:00", "04T06:00"),
                g(Minute, "04T06:00", "04T06:07"),
            ]
        );
    }
}
