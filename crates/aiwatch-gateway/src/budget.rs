//! The retry budget: failovers may add at most a fifth to the traffic, plus a small steady
//! allowance, so a wide outage cannot turn every request into a storm of retries.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::time::Instant;

/// Budget amounts are kept in thousandths of a retry, so they fit one atomic integer.
const MILLI: u64 = 1_000;
/// Each request earns this fraction of a retry.
const EARNED_PER_REQUEST: u64 = MILLI / 5;
/// Retries allowed per second regardless of traffic.
const ALLOWANCE_PER_SECOND: f64 = 10.0;
/// The most retries that can be saved up.
const CAPACITY: u64 = 200 * MILLI;

/// Shared by every request without a lock on the way in: a deposit is one atomic load while
/// the budget is full (no retries lately), an atomic add otherwise. Only a withdrawal (a
/// failover, rare) takes the lock that keeps when the allowance was last counted.
#[derive(Debug)]
pub struct RetryBudget {
    /// Thousandths of a retry.
    tokens: AtomicU64,
    last: Mutex<Option<Instant>>,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self {
            tokens: AtomicU64::new(CAPACITY),
            last: Mutex::new(None),
        }
    }
}

impl RetryBudget {
    /// A request arrived.
    pub fn deposit(&self) {
        if self.tokens.load(Ordering::Relaxed) >= CAPACITY {
            return;
        }
        self.add(EARNED_PER_REQUEST);
    }

    /// May one more attempt be made? Takes a retry from the budget if so.
    pub fn withdraw(&self, now: Instant) -> bool {
        let refill = {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            let since = last.map_or(0.0, |l| now.saturating_duration_since(l).as_secs_f64());
            *last = Some(now.max(last.unwrap_or(now)));
            (since * ALLOWANCE_PER_SECOND * MILLI as f64) as u64
        };
        if refill > 0 {
            self.add(refill);
        }
        self.tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                t.checked_sub(MILLI)
            })
            .is_ok()
    }

    fn add(&self, amount: u64) {
        let _ = self
            .tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some(t.saturating_add(amount).min(CAPACITY))
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_storm_of_retries_runs_dry_and_refills_with_time_and_traffic() {
        let t0 = Instant::now();
        let budget = RetryBudget::default();
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
