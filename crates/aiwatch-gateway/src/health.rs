//! An upstream's health, kept apart from who it is and how to reach it: its breaker (which
//! logs its own transitions), its time-to-first-token baseline and its canaries' spend.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::breaker::{Breaker, BreakerConfig, BreakerView, Transition};

/// Latencies kept for an upstream's baseline.
const BASELINE_WINDOW: usize = 50;

/// Services the monitor sees in an outage, with a short why: what `serve` tells the gateway.
pub type MonitorView = std::collections::HashMap<aiwatch_core::service::ServiceName, String>;

/// How the proxy may use an upstream right now.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Availability {
    /// The fraction of its configured share it takes (0 while tripped or cooling down).
    pub share: f64,
    /// It may take a failed-over request.
    pub available: bool,
    /// The provider asked to be left alone for a while (Retry-After).
    pub cooling: bool,
}

pub struct UpstreamHealth {
    /// The upstream's id, for the breaker's log lines.
    id: String,
    breaker: Mutex<Breaker>,
    /// The breaker [is settled](Breaker::is_settled), as of its last change: every request
    /// reads this instead of taking the breaker's lock, which the edge threads would otherwise
    /// pass between them on every request.
    settled: AtomicBool,
    /// Recent times to first token of streamed answers, in milliseconds: the canaries' norm.
    baseline: Mutex<VecDeque<f64>>,
    /// (hour, tokens) canaries spent in that hour.
    pub canary_spend: Mutex<(u64, u64)>,
    /// A canary is running.
    pub canary_running: AtomicBool,
}

impl UpstreamHealth {
    pub fn new(id: &str, config: BreakerConfig) -> Self {
        Self {
            id: id.to_owned(),
            breaker: Mutex::new(Breaker::new(config)),
            settled: AtomicBool::new(true),
            baseline: Mutex::new(VecDeque::new()),
            canary_spend: Mutex::new((0, 0)),
            canary_running: AtomicBool::new(false),
        }
    }

    /// The breaker, locked. A panic elsewhere while it was held leaves it usable: its state is
    /// plain data, always consistent between calls.
    fn locked(&self) -> MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the breaker under its lock, then logs the transition the change reports, once
    /// the lock is released: never log under it.
    fn change<R>(&self, change: impl FnOnce(&mut Breaker) -> (R, Option<Transition>)) -> R {
        let (result, transition) = {
            let mut breaker = self.locked();
            let changed = change(&mut breaker);
            // Under the lock, so the flag never lags a change made after it.
            self.settled.store(breaker.is_settled(), Ordering::Release);
            changed
        };
        if let Some(t) = transition {
            t.log(&self.id);
        }
        result
    }

    /// Advances the breaker's clock and says how the proxy may use the upstream now.
    pub fn availability(&self, now: Instant) -> Availability {
        if self.settled.load(Ordering::Acquire) {
            return Availability {
                share: 1.0,
                available: true,
                cooling: false,
            };
        }
        self.change(|b| {
            let transition = b.tick(now);
            let availability = Availability {
                share: b.share(now),
                available: b.available(now),
                cooling: b.cooling_left(now).is_some(),
            };
            (availability, transition)
        })
    }

    /// How long the provider's Retry-After still asks to wait, if it does.
    pub fn cooling_left(&self, now: Instant) -> Option<Duration> {
        self.locked().cooling_left(now)
    }

    /// Advances the breaker's clock and returns what the admin view and the metrics show.
    pub fn view(&self, now: Instant) -> BreakerView {
        self.change(|b| {
            let transition = b.tick(now);
            (b.view(now), transition)
        })
    }

    /// Advances the breaker's clock; is a canary due?
    pub fn canary_due(&self, now: Instant) -> bool {
        self.change(|b| {
            let transition = b.tick(now);
            (b.canary_due(now), transition)
        })
    }

    /// A request it served completely.
    pub fn on_success(&self) {
        if self.settled.load(Ordering::Acquire) {
            return;
        }
        self.change(|b| {
            b.on_success();
            ((), None)
        });
    }

    /// A request it failed (see [`Breaker::on_failure`]).
    pub fn on_failure(&self, reason: String, retry_after: Option<Duration>, trip_now: bool) {
        self.change(|b| {
            let transition = b.on_failure(Instant::now(), reason, retry_after, trip_now);
            ((), transition)
        });
    }

    /// A canary's verdict.
    pub fn on_canary(&self, result: Result<(), String>) {
        self.change(|b| ((), b.on_canary(Instant::now(), result)));
    }

    /// What the monitor says of the upstream's service: `Some(why)` while it sees an outage.
    pub fn on_monitor(&self, now: Instant, outage: Option<&str>) {
        self.change(|b| ((), b.on_monitor(now, outage)));
    }

    /// Adds a healthy time to first token to the baseline.
    pub fn record_ttft(&self, ms: f64) {
        if let Ok(mut baseline) = self.baseline.lock() {
            if baseline.len() == BASELINE_WINDOW {
                baseline.pop_front();
            }
            baseline.push_back(ms);
        }
    }

    /// The median healthy time to first token, once there are a few.
    pub fn baseline_ms(&self) -> Option<f64> {
        let baseline = self.baseline.lock().ok()?;
        if baseline.len() < 3 {
            return None;
        }
        let mut sorted: Vec<f64> = baseline.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        Some(sorted[sorted.len() / 2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig {
            failures_to_trip: 2,
            canary_interval: Duration::from_secs(10),
            canaries_to_close: 1,
            ramp: vec![50, 100],
            ramp_step: Duration::from_secs(30),
        }
    }

    #[test]
    fn a_tripped_upstream_takes_no_share_until_canaries_pass() {
        let health = UpstreamHealth::new("openai:gpt", config());
        let now = Instant::now();
        assert_eq!(health.availability(now).share, 1.0);
        health.on_failure("503".into(), None, false);
        health.on_failure("503".into(), None, false);
        let tripped = health.availability(now);
        assert!(!tripped.available);
        assert_eq!(tripped.share, 0.0);
        assert_eq!(health.view(now).reason.as_deref(), Some("503"));
    }

    #[test]
    fn a_settled_breaker_answers_as_its_locked_state_does_through_every_change() {
        let health = UpstreamHealth::new("openai:gpt", config());
        let now = Instant::now();
        let locked = |h: &UpstreamHealth, at: Instant| {
            let b = h.locked();
            Availability {
                share: b.share(at),
                available: b.available(at),
                cooling: b.cooling_left(at).is_some(),
            }
        };
        let settled = |h: &UpstreamHealth| h.settled.load(Ordering::Acquire);
        let agree = |h: &UpstreamHealth, at: Instant, what: &str| {
            assert_eq!(h.availability(at), locked(h, at), "{what}");
        };
        assert!(settled(&health), "new");
        agree(&health, now, "new");
        health.on_failure("503".into(), None, false);
        assert!(!settled(&health), "a failure is counted");
        agree(&health, now, "one failure, not yet tripped");
        health.on_success();
        assert!(settled(&health), "a success clears the count");
        assert_eq!(health.view(now).consecutive_failures, 0);
        health.on_failure("429".into(), Some(Duration::from_secs(60)), false);
        assert!(!settled(&health), "cooling down");
        let cooling = health.availability(now);
        assert!(cooling.cooling && cooling.share == 0.0, "{cooling:?}");
        agree(&health, now, "cooling down");
        let later = now + Duration::from_secs(61);
        agree(&health, later, "the Retry-After is over");
        health.on_success();
        assert!(settled(&health), "over, and a success since");
        health.on_monitor(later, Some("status page says outage"));
        assert!(!settled(&health), "the monitor sees an outage");
        agree(&health, later, "the monitor sees an outage");
        health.on_monitor(later, None);
        assert!(
            !settled(&health),
            "tripped: canaries decide, not the monitor's word"
        );
        agree(&health, later, "the outage is over, the breaker still open");
    }

    #[test]
    fn the_baseline_is_the_median_of_recent_first_tokens() {
        let health = UpstreamHealth::new("u", config());
        health.record_ttft(100.0);
        health.record_ttft(300.0);
        assert_eq!(health.baseline_ms(), None, "too few to be a norm");
        health.record_ttft(200.0);
        assert_eq!(health.baseline_ms(), Some(200.0));
    }
}
