//! Replays of minute-by-minute report counts through the crowd detector, pinning the minute at
//! which each level is raised and cleared.
//!
//! Scenario minutes count from Monday 2026-01-05 00:00 UTC; history is recorded before it.
//! A change `(m, level)` means the level changed at the assessment right after minute `m`'s
//! count was recorded (that is, at `now` = minute `m + 1`).

use aiwatch_core::crowd::{CrowdConfig, CrowdHistory, CrowdLevel, CrowdSeries, Sensitivity};
use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;

use CrowdLevel::{Likely, None as Clear, Possible};

const HOUR: i64 = 60;
const DAY: i64 = 24 * HOUR;
const WEEK: i64 = 7 * DAY;

fn at(minute: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-05T00:00:00Z")
        .expect("a date")
        .to_utc()
        + TimeDelta::minutes(minute)
}

/// A series with `weeks` of history before minute 0, `rate(minute)` reports in each minute.
fn with_history(weeks: i64, mut rate: impl FnMut(i64) -> f64) -> CrowdSeries {
    let mut series = CrowdSeries::new();
    for minute in -weeks * WEEK..0 {
        series.record_minute(at(minute), rate(minute));
    }
    series
}

/// Records `counts` from minute `from` on, assessing after each, and returns the level changes.
/// It also checks that `since` is the minute of each raise.
fn replay(
    series: &mut CrowdSeries,
    config: &CrowdConfig,
    from: i64,
    counts: impl IntoIterator<Item = f64>,
) -> Vec<(i64, CrowdLevel)> {
    let mut changes = Vec::new();
    let mut level = Clear;
    let mut raised = None;
    for (i, count) in counts.into_iter().enumerate() {
        let minute = from + i as i64;
        series.record_minute(at(minute), count);
        let reading = series.assess(at(minute + 1), config);
        if reading.level > level {
            raised = Some(at(minute + 1));
        }
        if reading.level != level {
            changes.push((i as i64, reading.level));
            level = reading.level;
        }
        let expected_since = if level == Clear { None } else { raised };
        assert_eq!(
            reading.since, expected_since,
            "since at scenario minute {i}"
        );
    }
    changes
}

/// A Poisson draw (Knuth's method; the means here are small).
fn poisson(rng: &mut fastrand::Rng, mean: f64) -> f64 {
    let limit = (-mean).exp();
    let mut product = rng.f64();
    let mut count = 0.0;
    while product > limit {
        product *= rng.f64();
        count += 1.0;
    }
    count
}

/// Reports a minute for a busy-by-day service: 0.5 at 03:00 UTC, 5.5 at 15:00, weekends ×0.6.
fn seasonal_rate(minute: i64) -> f64 {
    let hour_of_day = minute.rem_euclid(DAY) as f64 / HOUR as f64;
    let daily = 3.0 - 2.5 * (std::f64::consts::TAU * (hour_of_day - 3.0) / 24.0).cos();
    let weekend = minute.rem_euclid(WEEK) >= 5 * DAY;
    if weekend {
        daily * 0.6
    } else {
        daily
    }
}

#[test]
fn a_normal_week_raises_nothing() {
    // Poisson noise around a daily swing. (Over 100 seeds, the default sensitivity raised
    // nothing in any week; `high` raised a short possible in five.)
    let mut rng = fastrand::Rng::with_seed(2026);
    let mut series = with_history(8, |minute| poisson(&mut rng, seasonal_rate(minute)));
    let week = (0..WEEK).map(|minute| poisson(&mut rng, seasonal_rate(minute)));
    assert_eq!(replay(&mut series, &CrowdConfig::default(), 0, week), []);
}

/// History: exactly 2 reports a minute, so a 5-minute window expects 10.
fn steady_history() -> CrowdSeries {
    with_history(8, |_| 2.0)
}

#[test]
fn a_sharp_spike_raises_possible_then_likely_and_clears_after_ten_quiet_minutes() {
    // Minutes 0–9 are normal, 10–29 see 14 reports a minute, and from 30 it is normal again.
    // The possible bar against an expected 10 is 31 reports (p ≈ 8e-8), the likely bar 37
    // (p ≈ 4e-11). The window holds 34 after minute 11 (possible) and 46 after 12 (likely):
    // possible has held two minutes at 12, likely at 13. Going down, the window still holds 34
    // after minute 32 and 22 after 33: ten minutes below the possible bar end with minute 42.
    let counts = (0..60).map(|minute| {
        if (10..30).contains(&minute) {
            14.0
        } else {
            2.0
        }
    });
    let changes = replay(
        &mut steady_history(),
        &CrowdConfig::default(),
        10 * HOUR,
        counts,
    );
    assert_eq!(changes, [(12, Possible), (13, Likely), (42, Clear)]);
}

#[test]
fn a_slow_ramp_is_raised_once_it_is_far_enough_above_normal() {
    // Reports climb by one every four minutes from the normal 2 up to 13 (minutes 0–47), then
    // fall back the same way (48–95). The window reaches the possible bar, 31, after minute
    // 20 (raised at 21) and the likely bar, 37, after minute 25 (raised at 26). On the way down
    // it falls below 31 after minute 80; ten minutes below end with minute 89.
    let up = (0..48).map(|i| 2.0 + (i / 4) as f64);
    let down = (0..48).rev().map(|i| 2.0 + (i / 4) as f64);
    let counts: Vec<f64> = up.chain(down).chain([2.0; 20]).collect();
    let changes = replay(
        &mut steady_history(),
        &CrowdConfig::default(),
        10 * HOUR,
        counts,
    );
    assert_eq!(changes, [(21, Possible), (26, Likely), (89, Clear)]);
}

#[test]
fn one_noisy_reporter_raises_nothing() {
    // A service nobody has reported in eight weeks. One reporter posts all day; deduplication
    // counts them once per 5-minute window.
    let mut series = with_history(8, |_| 0.0);
    let noisy = (0..DAY).map(|minute| if minute % 5 == 0 { 1.0 } else { 0.0 });
    assert_eq!(replay(&mut series, &CrowdConfig::default(), 0, noisy), []);

    // Five different reporters at once on the same quiet service are another matter.
    let five = [5.0].into_iter().chain([0.0; 30]);
    assert_eq!(
        replay(&mut series, &CrowdConfig::default(), DAY, five),
        [(1, Possible), (14, Clear)]
    );
}

#[test]
fn a_quiet_hour_in_history_seeing_normal_volume_is_at_most_possible() {
    // Four reports a minute, except Mondays 09:00–10:00, which had one every other minute (a
    // recurring quiet hour, like a holiday). This Monday that hour sees the usual 4 a minute:
    // unusual for the hour, so possible, but not above the series' ordinary volume, so never
    // likely. The scenario starts at 08:00. As the window moves into 09:00 its expected count
    // falls from 20 to 2.5 while it holds 20: after minute 64 (09:04) it expects 2.5
    // (p ≈ 3e-12, possible; after 63 it expected 6, p ≈ 5e-6), so the level is raised at 65.
    // From minute 120, when the window reaches 10:00 and expects 6 again, it is below the bar,
    // and it clears at 129.
    let quiet_hour = |minute: i64| (9 * HOUR..10 * HOUR).contains(&minute.rem_euclid(WEEK));
    let mut series = with_history(8, |minute| {
        if quiet_hour(minute) {
            f64::from(minute % 2 == 0)
        } else {
            4.0
        }
    });
    let changes = replay(
        &mut series,
        &CrowdConfig::default(),
        8 * HOUR,
        [4.0; 3 * HOUR as usize],
    );
    assert_eq!(changes, [(65, Possible), (129, Clear)]);
}

#[test]
fn cold_start_needs_ten_reporters_and_says_at_most_possible() {
    let config = CrowdConfig::default();
    let quiet = [0.0; 30];

    // Nine reporters within five minutes of a brand-new series: nothing.
    let mut series = CrowdSeries::new();
    let nine = quiet.into_iter().chain([3.0, 3.0, 3.0]).chain(quiet);
    assert_eq!(replay(&mut series, &config, 0, nine), []);

    // Ten: the window holds 10 after minutes 32, 33 and 34, so possible at 33; below the bar
    // from 35, cleared ten minutes later.
    let mut series = CrowdSeries::new();
    let ten = quiet.into_iter().chain([3.0, 3.0, 4.0]).chain(quiet);
    assert_eq!(
        replay(&mut series, &config, 0, ten),
        [(33, Possible), (44, Clear)]
    );

    // A hundred a minute is still only possible without a week of history to compare with.
    let mut series = CrowdSeries::new();
    let flood = quiet.into_iter().chain([100.0; 10]);
    assert_eq!(replay(&mut series, &config, 0, flood), [(31, Possible)]);
}

#[test]
fn reports_just_before_the_hour_are_not_their_own_baseline() {
    // Five people report in the last minute of an hour, on a series that has seen nothing
    // before. When the hour turns, that minute must not become the "usual" it is judged against.
    let config = CrowdConfig {
        min_reports: 5,
        cold_start_min_reporters: 5,
        min_duration_minutes: 0,
        ..CrowdConfig::default()
    };
    let mut series = CrowdSeries::new();
    let changes = replay(&mut series, &config, HOUR - 1, [5.0, 0.0, 0.0]);
    assert_eq!(changes, [(0, Possible)]);
    let reading = series.assess(at(HOUR + 2), &config);
    assert!(
        reading.expected_in_window < 1.0,
        "the window's own reports leaked into the baseline: {reading:?}"
    );

    // The same with a quiet hour behind it: the hour's usual is near zero, not the spike.
    let mut series = CrowdSeries::new();
    let quiet_then_spike = [0.0; 59].into_iter().chain([5.0, 0.0]);
    assert_eq!(
        replay(&mut series, &config, 0, quiet_then_spike),
        [(59, Possible)]
    );
}

#[test]
fn history_round_trips_through_serde() {
    let mut rng = fastrand::Rng::with_seed(5);
    let series = with_history(9, |minute| poisson(&mut rng, seasonal_rate(minute)));
    let json = serde_json::to_string(series.history()).expect("serializes");
    let history: CrowdHistory = serde_json::from_str(&json).expect("deserializes");
    let mut restored = CrowdSeries::from_history(history);
    let mut original = series;
    let config = CrowdConfig::default();
    for minute in 0..3 * HOUR {
        let count = if minute > HOUR { 20.0 } else { 3.0 };
        original.record_minute(at(minute), count);
        restored.record_minute(at(minute), count);
        assert_eq!(
            original.assess(at(minute + 1), &config),
            restored.assess(at(minute + 1), &config)
        );
    }
}

fn any_count() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => 0.0..4.0f64,
        4 => (0u32..60).prop_map(f64::from),
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(-3.0),
        1 => Just(1e300),
    ]
}

fn any_config() -> impl Strategy<Value = CrowdConfig> {
    (
        0u32..80,
        0u32..20,
        0u32..30,
        0u32..400,
        0u32..5,
        0u32..20,
        prop_oneof![
            Just(Sensitivity::Low),
            Just(Sensitivity::Normal),
            Just(Sensitivity::High)
        ],
    )
        .prop_map(
            |(window, min_reports, cold_reporters, cold_minutes, duration, clear, sensitivity)| {
                CrowdConfig {
                    window_minutes: window,
                    min_reports,
                    cold_start_min_reporters: cold_reporters,
                    cold_start_minutes: cold_minutes,
                    min_duration_minutes: duration,
                    clear_after_minutes: clear,
                    sensitivity,
                }
            },
        )
}

proptest! {
    #[test]
    fn never_panic_and_levels_only_with_min_reports(
        start in -40_000_000i64..40_000_000,
        steps in prop::collection::vec((1i64..4, any_count()), 1..400),
        config in any_config(),
    ) {
        let mut series = CrowdSeries::new();
        let mut minute = start;
        let mut first = None;
        let mut level = Clear;
        for (gap, count) in steps {
            minute += gap;
            series.record_minute(at(minute), count);
            let now = at(minute + 1);
            let reading = series.assess(now, &config);
            let first = *first.get_or_insert(minute);
            let (count, expected) = (reading.count_in_window, reading.expected_in_window);
            prop_assert!(count.is_finite() && count >= 0.0);
            prop_assert!(expected.is_finite() && expected > 0.0);
            prop_assert_eq!(reading.level == Clear, reading.since.is_none());
            if reading.level > level {
                prop_assert_eq!(reading.since, Some(now));
                let cold = minute + 1 - first < i64::from(config.cold_start_minutes);
                let needed = if cold {
                    config.min_reports.max(config.cold_start_min_reporters)
                } else {
                    config.min_reports
                };
                prop_assert!(count >= f64::from(needed.max(1)));
                prop_assert!(!(cold && reading.level == Likely));
            }
            level = reading.level;
        }
    }
}
