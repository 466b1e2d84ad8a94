//! Spike detection: is a count far above its own recent normal? The normal is the median of
//! recent periods, so one earlier burst does not hide the next.

use serde::Serialize;

/// When a count is a spike.
#[derive(Clone, Debug, PartialEq)]
pub struct SpikeRule {
    /// The count must exceed the baseline times this factor…
    pub factor: f64,
    /// …and the baseline plus this much (so 3 instead of 0 is not a spike).
    pub min_increase: f64,
    /// Periods of history needed before anything is called a spike.
    pub min_history: usize,
}

impl Default for SpikeRule {
    fn default() -> Self {
        Self {
            factor: 10.0,
            min_increase: 10_000.0,
            min_history: 10,
        }
    }
}

/// A count far above its baseline.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Spike {
    pub baseline: f64,
    pub current: f64,
}

impl Spike {
    pub fn ratio(&self) -> f64 {
        self.current / self.baseline.max(1.0)
    }
}

/// Compares `current` with the median of `history` (earlier periods of the same length).
pub fn detect(history: &[f64], current: f64, rule: &SpikeRule) -> Option<Spike> {
    exceeds(baseline(history, rule)?, current, rule)
}

/// Is `current` a spike over an already computed `baseline`?
pub fn exceeds(baseline: f64, current: f64, rule: &SpikeRule) -> Option<Spike> {
    let spiking = current.is_finite()
        && current > baseline * rule.factor
        && current > baseline + rule.min_increase;
    spiking.then_some(Spike { baseline, current })
}

/// The median of `history`, once there is enough of it to judge by.
pub fn baseline(history: &[f64], rule: &SpikeRule) -> Option<f64> {
    if history.len() < rule.min_history.max(1) {
        return None;
    }
    let mut sorted: Vec<f64> = history.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> SpikeRule {
        SpikeRule {
            factor: 10.0,
            min_increase: 1_000.0,
            min_history: 5,
        }
    }

    #[test]
    fn far_above_the_median_is_a_spike() {
        let history = [500.0, 700.0, 600.0, 550.0, 650.0];
        let spike = detect(&history, 50_000.0, &rule()).expect("a spike");
        assert_eq!(spike.baseline, 600.0);
        assert!(spike.ratio() > 80.0);
    }

    #[test]
    fn normal_busy_and_small_absolute_jumps_are_not() {
        let history = [500.0, 700.0, 600.0, 550.0, 650.0];
        assert_eq!(detect(&history, 3_000.0, &rule()), None);
        let quiet = [0.0, 0.0, 10.0, 0.0, 0.0];
        assert_eq!(
            detect(&quiet, 900.0, &rule()),
            None,
            "below the minimum increase"
        );
    }

    #[test]
    fn one_earlier_burst_does_not_raise_the_baseline() {
        let history = [500.0, 90_000.0, 600.0, 550.0, 650.0];
        assert!(detect(&history, 60_000.0, &rule()).is_some());
    }

    #[test]
    fn too_little_history_says_nothing() {
        assert_eq!(detect(&[1.0, 1.0], 1e9, &rule()), None);
    }
}
