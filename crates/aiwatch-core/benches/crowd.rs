//! Benchmarks the crowd-report detector at its budget: 1,000 series, each with 8 weeks of
//! history, get one minute recorded and are assessed, as the server does once a minute.
//!
//! Run with `cargo bench -p aiwatch-core --bench crowd`; divide the time by 1,000 for the cost
//! of one series (criterion also prints it as a throughput in series per second).

use std::hint::black_box;

use aiwatch_core::crowd::{CrowdConfig, CrowdSeries};
use chrono::{DateTime, TimeDelta, Utc};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const SERIES: usize = 1_000;
const WEEKS: i64 = 8;
const MINUTES_PER_WEEK: i64 = 7 * 24 * 60;

fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-05T00:00:00Z")
        .expect("a date")
        .to_utc()
}

/// Reports a minute with a daily swing between 1 and 7, plus noise.
fn normal_count(rng: &mut fastrand::Rng, minute: i64) -> f64 {
    let hour = (minute / 60) % 24;
    let base = if (8..20).contains(&hour) { 6 } else { 1 };
    f64::from(rng.u32(0..=base))
}

/// 1,000 series with 8 weeks of history: a few distinct histories, cloned.
fn series() -> Vec<CrowdSeries> {
    let mut rng = fastrand::Rng::with_seed(7);
    let bases: Vec<CrowdSeries> = (0..4)
        .map(|_| {
            let mut series = CrowdSeries::new();
            for minute in 0..WEEKS * MINUTES_PER_WEEK {
                let count = normal_count(&mut rng, minute);
                series.record_minute(start() + TimeDelta::minutes(minute), count);
            }
            series
        })
        .collect();
    (0..SERIES)
        .map(|i| bases[i % bases.len()].clone())
        .collect()
}

fn record_and_assess(c: &mut Criterion) {
    let config = CrowdConfig::default();
    let mut group = c.benchmark_group("crowd");
    group.throughput(Throughput::Elements(SERIES as u64));

    for (name, spiking) in [("normal_minute", false), ("every_series_spiking", true)] {
        let mut all = series();
        let mut rng = fastrand::Rng::with_seed(11);
        let mut minute = WEEKS * MINUTES_PER_WEEK;
        group.bench_function(format!("record_and_assess_1000_series/{name}"), |b| {
            b.iter(|| {
                let at = start() + TimeDelta::minutes(minute);
                let next = at + TimeDelta::minutes(1);
                for series in &mut all {
                    let count = if spiking {
                        f64::from(rng.u32(40..=60))
                    } else {
                        normal_count(&mut rng, minute)
                    };
                    series.record_minute(at, count);
                    black_box(series.assess(next, &config));
                }
                minute += 1;
            });
        });
    }
    group.finish();
}

criterion_group!(benches, record_and_assess);
criterion_main!(benches);
