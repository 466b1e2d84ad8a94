//! The retry budget: failovers may add at most a fifth to the traffic, plus a small steady
//! allowance, so a wide outage cannot turn every request into a storm of retries.

use tokio::time::Instant;

/// Each request earns this fraction of a retry.
const EARNED_PER_REQUEST: f64 = 0.2;
/// Retries allowed per second regardless of traffic.
const ALLOWANCE_PER_SECOND: f64 = 10.0;
/// The most retries that can be saved up.
const CAPACITY: f64 = 200.0;

#[derive(Debug)]
pub struct RetryBudget {
    tokens: f64,
    last: Option<Instant>,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self {
            tokens: CAPACITY,
            last: None,
        }
    }
}

impl RetryBudget {
    /// A request arrived.
    pub fn deposit(&mut self) {
        self.tokens = (self.tokens + EARNED_PER_REQUEST).min(CAPACITY);
    }

    /// May one more attempt be made? Takes a retry from the budget if so.
    pub fn withdraw(&mut self, now: Instant) -> bool {
        if let Some(last) = self.last {
            let refill = now.saturating_duration_since(last).as_secs_f64() * ALLOWANCE_PER_SECOND;
            self.tokens = (self.tokens + refill).min(CAPACITY);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_storm_of_retries_runs_dry_and_refills_with_time_and_traffic() {
        let t0 = Instant::now();
        let mut budget = RetryBudget::default();
        let granted = (0..1_000).filter(|_| budget.withdraw(t0)).count();
        assert_eq!(granted, 200, "the saved-up budget, then no more");
        assert!(!budget.withdraw(t0));
        for _ in 0..5 {
            budget.deposit();
        }
        assert!(budget.withdraw(t0), "five requests earn one retry");
        assert!(!budget.withdraw(t0));
        assert!(
            budget.withdraw(t0 + Duration::from_millis(100)),
            "and time earns more"
        );
    }
}
