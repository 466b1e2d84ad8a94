//! Crowd reports: is a service's count of user problem reports far above what this hour of the
//! week usually sees? A Downdetector-style detector over per-minute counts, with time passed in.
//!
//! # Input
//!
//! One [`CrowdSeries`] per service × region. Each minute the caller records the number of counted
//! reports (one per reporter per service per dedup window — deduplication happens before this
//! module), optionally plus weighted public-post matches, so counts are `f64`. Minutes must come
//! in increasing order; a minute at or before the last recorded one is ignored, a skipped
//! minute counts as zero, and a count that is negative or not finite counts as zero.
//!
//! # Method
//!
//! - **Window.** [`CrowdSeries::assess`] sums the last `window_minutes` complete minutes before
//!   `now` (default 5, at most [`MAX_WINDOW_MINUTES`]).
//! - **Baseline.** For each minute of the window, the expected rate is the *median* over the
//!   last [`HISTORY_WEEKS`] weeks of that hour of the week's reports per minute (hours run from
//!   Monday 00:00 UTC). The median ignores one past outage or holiday in the same hour. An hour
//!   with no observed past week falls back to the series' overall rate (all complete minutes of
//!   the kept weeks); every rate is at least one report an hour.
//! - **Test.** The window's count `k` is compared with `λ` = the expected count in the window
//!   by the Poisson upper tail `P(X ≥ k | λ)`, computed with `statrs` as the regularized
//!   incomplete gamma function `P(k, λ)` (equal to Poisson's survival function at `k − 1` for
//!   whole counts, and continuous between them for weighted ones). Real report counts are more
//!   spread out than Poisson, so a bar also needs the count to be a multiple of `λ`:
//!
//!   | sensitivity | possible: ratio, p ≤ | likely: ratio, p ≤ |
//!   |-------------|----------------------|--------------------|
//!   | `low`       | 3×, 1e-9             | 5×, 1e-14          |
//!   | `normal`    | 2×, 1e-7             | 3×, 1e-10          |
//!   | `high`      | 1.5×, 1e-5           | 2×, 1e-8           |
//!
//!   Windows overlap and are tested every minute, 10,080 times a week, so the p-values are
//!   small: at `normal` a series of clean Poisson noise passes the possible bar at most about
//!   once in twenty years (a replayed noisy week raised nothing over 100 seeds; `high` raised a
//!   short possible in five).
//!
//!   `likely` also needs the window to clear the *possible* bar against the series' overall
//!   rate. So an hour that is quiet in history (a holiday, a night) seeing the series' ordinary
//!   volume is at most `possible`; calling it `likely` takes about twice the ordinary volume.
//!
//! # Guards
//!
//! - No level with fewer than `min_reports` (default 5) reports in the window.
//! - Cold start: until the series has `cold_start_minutes` (default one week) of minutes since
//!   its first record, a level needs `cold_start_min_reporters` (default 10) reports in the
//!   window, and is at most `possible` — there is no baseline to call anything likely.
//! - A level is raised only once its bar has held for `min_duration_minutes` consecutive
//!   assessed minutes (default 2). Levels only go up during an episode.
//! - Hysteresis: a raised level clears to `none` only after the window has stayed below the
//!   *possible* bar for `clear_after_minutes` consecutive minutes (default 10), so it does not
//!   flap while a spike wobbles.
//!
//! # Cost
//!
//! Per series the history keeps 9 week rows (8 past weeks and the current one) of 168 hourly
//! sums as `u16` (saturating at 65,535 reports an hour), plus the last 60 minutes as `f32`:
//! about 3.7 KiB in all. Recording a minute is O(1); assessing reads at most 16 hourly sums and
//! 9 row totals, and computes the Poisson tail only when the count already passes a ratio bar.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use statrs::function::gamma::checked_gamma_lr;

/// Weeks of history the baseline is taken from.
pub const HISTORY_WEEKS: usize = 8;
/// The longest window [`CrowdSeries::assess`] can look at, in minutes.
pub const MAX_WINDOW_MINUTES: u32 = 60;

const HOURS_PER_WEEK: i64 = 168;
/// The past weeks and the current one.
const ROWS: usize = HISTORY_WEEKS + 1;
/// Minute slots kept for the window.
const RECENT: usize = MAX_WINDOW_MINUTES as usize;
/// Minutes from Monday 1969-12-29 00:00 UTC to the Unix epoch, so that weeks start on Monday.
const EPOCH_OFFSET_MINUTES: i64 = 3 * 24 * 60;
/// The least expected rate, in reports a minute (one an hour), so a silent history still gives
/// the Poisson test a mean to work with.
const MIN_RATE: f64 = 1.0 / 60.0;
/// The largest count accepted for one minute.
const MAX_COUNT: f64 = 1e9;

/// How readily a rise is called a spike.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sensitivity {
    Low,
    #[default]
    Normal,
    High,
}

/// The bars one sensitivity sets: a level needs both the ratio and the tail probability.
struct Bars {
    possible_ratio: f64,
    possible_p: f64,
    likely_ratio: f64,
    likely_p: f64,
}

impl Sensitivity {
    fn bars(self) -> Bars {
        match self {
            Sensitivity::Low => Bars {
                possible_ratio: 3.0,
                possible_p: 1e-9,
                likely_ratio: 5.0,
                likely_p: 1e-14,
            },
            Sensitivity::Normal => Bars {
                possible_ratio: 2.0,
                possible_p: 1e-7,
                likely_ratio: 3.0,
                likely_p: 1e-10,
            },
            Sensitivity::High => Bars {
                possible_ratio: 1.5,
                possible_p: 1e-5,
                likely_ratio: 2.0,
                likely_p: 1e-8,
            },
        }
    }
}

/// When a crowd of reports is a spike. Out-of-range values are clamped when used.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CrowdConfig {
    /// Minutes summed per assessment (1 to [`MAX_WINDOW_MINUTES`]).
    pub window_minutes: u32,
    /// Reports needed in the window before any level.
    pub min_reports: u32,
    /// Reports needed in the window while the series is in its cold start.
    pub cold_start_min_reporters: u32,
    /// Minutes since the first record during which the series is in its cold start.
    pub cold_start_minutes: u32,
    /// Consecutive minutes a bar must hold before its level is raised (at least 1).
    pub min_duration_minutes: u32,
    /// Consecutive minutes below the possible bar before a raised level clears.
    pub clear_after_minutes: u32,
    pub sensitivity: Sensitivity,
}

impl Default for CrowdConfig {
    fn default() -> Self {
        Self {
            window_minutes: 5,
            min_reports: 5,
            cold_start_min_reporters: 10,
            cold_start_minutes: 7 * 24 * 60,
            min_duration_minutes: 2,
            clear_after_minutes: 10,
            sensitivity: Sensitivity::Normal,
        }
    }
}

/// How sure we are that users are seeing a problem.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum CrowdLevel {
    #[default]
    None,
    Possible,
    Likely,
}

impl CrowdLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            CrowdLevel::None => "none",
            CrowdLevel::Possible => "possible",
            CrowdLevel::Likely => "likely",
        }
    }
}

/// One assessment of a series.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CrowdReading {
    pub level: CrowdLevel,
    /// Reports in the window.
    pub count_in_window: f64,
    /// Reports the window usually sees at this hour of the week.
    pub expected_in_window: f64,
    /// The minute the current level was raised; `None` while the level is `None`.
    pub since: Option<DateTime<Utc>>,
}

/// The counts a series has seen: hourly sums of the kept weeks and the last hour of minutes.
///
/// Serialize it to persist a series; [`CrowdSeries::from_history`] restores it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CrowdHistory {
    /// The first recorded minute (minutes since Monday 1969-12-29 00:00 UTC).
    first_minute: Option<i64>,
    /// The last recorded minute.
    last_minute: Option<i64>,
    /// The hour being summed (hours since the same Monday); it goes to its row when it ends.
    open_hour: i64,
    open_sum: f64,
    /// A ring of weeks, indexed by week number modulo [`ROWS`].
    weeks: Vec<WeekRow>,
    /// A ring of the last minutes' counts, indexed by minute modulo [`RECENT`].
    recent: Vec<f32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct WeekRow {
    /// Which week this row holds; a row holding another week reads as a week of zeros.
    week: i64,
    /// Reports in each hour of the week, rounded.
    hours: Vec<u16>,
    /// The sum of `hours`, kept for the overall rate.
    #[serde(skip)]
    total: u32,
}

// === impl CrowdHistory ===

impl Default for CrowdHistory {
    fn default() -> Self {
        Self {
            first_minute: None,
            last_minute: None,
            open_hour: 0,
            open_sum: 0.0,
            weeks: (0..ROWS).map(|_| WeekRow::empty()).collect(),
            recent: vec![0.0; RECENT],
        }
    }
}

impl WeekRow {
    fn empty() -> Self {
        Self {
            week: i64::MIN,
            hours: vec![0; HOURS_PER_WEEK as usize],
            total: 0,
        }
    }
}

impl CrowdHistory {
    /// Makes a deserialized history safe to index: right lengths, sane sums, totals recomputed.
    fn repaired(mut self) -> Self {
        self.weeks.resize_with(ROWS, WeekRow::empty);
        for (index, row) in self.weeks.iter_mut().enumerate() {
            if row.week.rem_euclid(ROWS as i64) as usize != index {
                *row = WeekRow::empty();
            }
            row.hours.resize(HOURS_PER_WEEK as usize, 0);
            row.total = row.hours.iter().map(|&h| u32::from(h)).sum();
        }
        self.recent.resize(RECENT, 0.0);
        for count in &mut self.recent {
            *count = clean(f64::from(*count)) as f32;
        }
        self.open_sum = clean(self.open_sum);
        if self.first_minute.is_none() || self.last_minute.is_none() {
            self.first_minute = None;
            self.last_minute = None;
        }
        self
    }

    fn record(&mut self, minute: i64, count: f64) {
        let hour = minute.div_euclid(60);
        match self.last_minute {
            Some(last) if minute <= last => return,
            Some(last) => {
                let skipped_from = (last + 1).max(minute - RECENT as i64 + 1);
                for skipped in skipped_from..minute {
                    self.recent[slot(skipped)] = 0.0;
                }
                if hour != self.open_hour {
                    self.close_hour();
                    self.open_hour = hour;
                    self.open_sum = 0.0;
                }
            }
            None => {
                self.first_minute = Some(minute);
                self.open_hour = hour;
                self.open_sum = 0.0;
            }
        }
        self.recent[slot(minute)] = count as f32;
        self.open_sum += count;
        self.last_minute = Some(minute);
    }

    /// Moves the open hour's sum into its week's row.
    fn close_hour(&mut self) {
        let week = self.open_hour.div_euclid(HOURS_PER_WEEK);
        let row = &mut self.weeks[week.rem_euclid(ROWS as i64) as usize];
        if row.week != week {
            *row = WeekRow::empty();
            row.week = week;
        }
        let index = self.open_hour.rem_euclid(HOURS_PER_WEEK) as usize;
        let value = self.open_sum.round().min(f64::from(u16::MAX)) as u16;
        row.total = row.total - u32::from(row.hours[index]) + u32::from(value);
        row.hours[index] = value;
    }

    /// Reports in one hour; zero for an hour no row holds.
    fn hour_sum(&self, hour: i64) -> f64 {
        if self.last_minute.is_some() && hour == self.open_hour {
            return self.open_sum;
        }
        let week = hour.div_euclid(HOURS_PER_WEEK);
        let row = &self.weeks[week.rem_euclid(ROWS as i64) as usize];
        if row.week == week {
            f64::from(row.hours[hour.rem_euclid(HOURS_PER_WEEK) as usize])
        } else {
            0.0
        }
    }

    /// Minutes of `hour` at or after the first record.
    fn observed_minutes(&self, hour: i64) -> i64 {
        let Some(first) = self.first_minute else {
            return 0;
        };
        let start = hour * 60;
        (start + 60 - start.max(first)).clamp(0, 60)
    }

    /// Reports a minute over the complete minutes of the kept weeks before `now_hour`, leaving
    /// out the minutes from `window_start` on: the window being judged is never its own
    /// baseline (reports that straddle an hour would otherwise raise what they are judged
    /// against).
    fn overall_rate(&self, now_hour: i64, window_start: i64) -> Option<f64> {
        let first = self.first_minute?;
        let oldest_week = now_hour.div_euclid(HOURS_PER_WEEK) - HISTORY_WEEKS as i64;
        let start = first.max(oldest_week * HOURS_PER_WEEK * 60);
        let end = now_hour * 60;
        let cut = window_start.min(end);
        if cut <= start {
            return None;
        }
        let now_week = oldest_week + HISTORY_WEEKS as i64;
        let mut sum: f64 = self
            .weeks
            .iter()
            .filter(|row| (oldest_week..=now_week).contains(&row.week))
            .map(|row| f64::from(row.total))
            .sum();
        if self.open_hour < now_hour && self.open_hour >= oldest_week * HOURS_PER_WEEK {
            sum += self.open_sum;
        }
        sum -= self.window_count(end, end - cut);
        Some(sum.max(0.0) / (cut - start) as f64)
    }

    /// The median over the kept weeks of `hour`'s reports a minute, or `fallback` when no past
    /// week of that hour was observed.
    fn hour_rate(&self, hour: i64, fallback: f64) -> f64 {
        let mut rates = [0.0; HISTORY_WEEKS];
        let mut seen = 0;
        for back in 1..=HISTORY_WEEKS as i64 {
            let past = hour - back * HOURS_PER_WEEK;
            let minutes = self.observed_minutes(past);
            if minutes > 0 {
                rates[seen] = self.hour_sum(past) / minutes as f64;
                seen += 1;
            }
        }
        if seen == 0 {
            return fallback;
        }
        let rates = &mut rates[..seen];
        rates.sort_unstable_by(f64::total_cmp);
        let mid = seen / 2;
        if seen % 2 == 0 {
            (rates[mid - 1] + rates[mid]) / 2.0
        } else {
            rates[mid]
        }
    }

    /// Reports in the minutes `[end - window, end)`.
    fn window_count(&self, end: i64, window: i64) -> f64 {
        let (Some(first), Some(last)) = (self.first_minute, self.last_minute) else {
            return 0.0;
        };
        let from = (end - window).max(last - RECENT as i64 + 1).max(first);
        let to = (end - 1).min(last);
        (from..=to)
            .map(|minute| f64::from(self.recent[slot(minute)]))
            .sum()
    }

    /// Reports the minutes `[end - window, end)` usually see, hour of the week by hour.
    fn window_expected(&self, end: i64, window: i64, fallback: f64) -> f64 {
        let mut expected = 0.0;
        let mut minute = end - window;
        while minute < end {
            let hour = minute.div_euclid(60);
            let until = ((hour + 1) * 60).min(end);
            let rate = self.hour_rate(hour, fallback).max(MIN_RATE);
            expected += rate * (until - minute) as f64;
            minute = until;
        }
        expected
    }
}

// === impl CrowdSeries ===

/// One service × region: its history and the state of its current episode.
#[derive(Clone, Debug, Default)]
pub struct CrowdSeries {
    history: CrowdHistory,
    episode: Episode,
}

/// Where the level stands, and since when each bar has held.
#[derive(Clone, Debug, Default)]
struct Episode {
    level: CrowdLevel,
    raised_at: Option<i64>,
    possible_from: Option<i64>,
    likely_from: Option<i64>,
    below_from: Option<i64>,
}

impl CrowdSeries {
    pub fn new() -> Self {
        Self::default()
    }

    /// Restores a series from its persisted history; the episode starts over at `None`.
    pub fn from_history(history: CrowdHistory) -> Self {
        Self {
            history: history.repaired(),
            episode: Episode::default(),
        }
    }

    /// The history to persist.
    pub fn history(&self) -> &CrowdHistory {
        &self.history
    }

    /// Records the reports counted in the minute starting at `minute_start` (seconds ignored).
    pub fn record_minute(&mut self, minute_start: DateTime<Utc>, count: f64) {
        self.history
            .record(minute_index(minute_start), clean(count));
    }

    /// Judges the window of complete minutes before `now` and moves the episode on.
    pub fn assess(&mut self, now: DateTime<Utc>, config: &CrowdConfig) -> CrowdReading {
        let now_minute = minute_index(now);
        let window = i64::from(config.window_minutes.clamp(1, MAX_WINDOW_MINUTES));
        let history = &self.history;
        let overall = history.overall_rate(now_minute.div_euclid(60), now_minute - window);
        let count = history.window_count(now_minute, window);
        let expected = history.window_expected(now_minute, window, overall.unwrap_or(0.0));
        let typical = overall.unwrap_or(0.0).max(MIN_RATE) * window as f64;
        let cold = history
            .first_minute
            .is_none_or(|first| now_minute - first < i64::from(config.cold_start_minutes));

        let bars = config.sensitivity.bars();
        let needed = if cold {
            config.min_reports.max(config.cold_start_min_reporters)
        } else {
            config.min_reports
        };
        let possible = count >= f64::from(needed.max(1))
            && above(count, expected, bars.possible_ratio, bars.possible_p);
        let likely = possible
            && !cold
            && above(count, expected, bars.likely_ratio, bars.likely_p)
            && above(count, typical, bars.possible_ratio, bars.possible_p);

        self.episode.step(now_minute, possible, likely, config);
        CrowdReading {
            level: self.episode.level,
            count_in_window: count,
            expected_in_window: expected,
            since: self.episode.raised_at.map(minute_start),
        }
    }
}

impl Episode {
    fn step(&mut self, now: i64, possible: bool, likely: bool, config: &CrowdConfig) {
        let held = |from: Option<i64>| {
            from.is_some_and(|from| now - from + 1 >= i64::from(config.min_duration_minutes.max(1)))
        };
        self.possible_from = if possible {
            self.possible_from.or(Some(now))
        } else {
            None
        };
        self.likely_from = if likely {
            self.likely_from.or(Some(now))
        } else {
            None
        };
        let target = if held(self.likely_from) {
            CrowdLevel::Likely
        } else if held(self.possible_from) {
            CrowdLevel::Possible
        } else {
            CrowdLevel::None
        };

        if target > self.level {
            self.level = target;
            self.raised_at = Some(now);
            self.below_from = None;
        } else if self.level != CrowdLevel::None {
            if possible {
                self.below_from = None;
            } else {
                let below_from = *self.below_from.get_or_insert(now);
                if now - below_from + 1 >= i64::from(config.clear_after_minutes) {
                    *self = Episode::default();
                }
            }
        }
    }
}

/// Is `count` at least `ratio` times `expected` and improbable (`P(X ≥ count) ≤ p_max`) for a
/// Poisson count with mean `expected`?
fn above(count: f64, expected: f64, ratio: f64, p_max: f64) -> bool {
    count >= ratio * expected && poisson_upper_tail(count, expected) <= p_max
}

/// `P(X ≥ k)` for `X ~ Poisson(λ)`: the regularized lower incomplete gamma function `P(k, λ)`.
fn poisson_upper_tail(k: f64, lambda: f64) -> f64 {
    if k <= 0.0 || k.is_nan() {
        return 1.0;
    }
    checked_gamma_lr(k, lambda.max(f64::MIN_POSITIVE)).unwrap_or(1.0)
}

/// A count as recorded: finite, non-negative, bounded.
fn clean(count: f64) -> f64 {
    if count.is_finite() && count > 0.0 {
        count.min(MAX_COUNT)
    } else {
        0.0
    }
}

fn slot(minute: i64) -> usize {
    minute.rem_euclid(RECENT as i64) as usize
}

fn minute_index(time: DateTime<Utc>) -> i64 {
    time.timestamp().div_euclid(60) + EPOCH_OFFSET_MINUTES
}

fn minute_start(minute: i64) -> DateTime<Utc> {
    let seconds = (minute - EPOCH_OFFSET_MINUTES) * 60;
    DateTime::from_timestamp(seconds, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use statrs::distribution::{DiscreteCDF, Poisson};

    #[test]
    fn the_upper_tail_is_poissons_survival_function() {
        for lambda in [0.1, 2.5, 10.0, 300.0] {
            let poisson = Poisson::new(lambda).expect("a valid mean");
            for k in [1_u64, 2, 5, 20, 40, 400] {
                let tail = poisson_upper_tail(k as f64, lambda);
                let sf = poisson.sf(k - 1);
                assert!((tail - sf).abs() <= 1e-12 + sf * 1e-9, "{k} at {lambda}");
            }
        }
        assert_eq!(poisson_upper_tail(0.0, 3.0), 1.0);
        assert_eq!(poisson_upper_tail(f64::NAN, 3.0), 1.0);
    }

    #[test]
    fn weeks_start_on_monday() {
        let monday = DateTime::parse_from_rfc3339("2026-01-05T00:00:00Z")
            .expect("a date")
            .to_utc();
        let hour = minute_index(monday).div_euclid(60);
        assert_eq!(hour.rem_euclid(HOURS_PER_WEEK), 0);
        assert_eq!(minute_start(minute_index(monday)), monday);
    }

    #[test]
    fn the_history_stays_under_4_kib() {
        let history = CrowdHistory::default();
        let heap = history.weeks.len()
            * (std::mem::size_of::<WeekRow>() + HOURS_PER_WEEK as usize * 2)
            + history.recent.len() * 4;
        let total = std::mem::size_of::<CrowdSeries>() + heap;
        assert!(total < 4096, "{total} bytes");
    }
}
