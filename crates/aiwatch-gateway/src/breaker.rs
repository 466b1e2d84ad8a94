//! One upstream's circuit breaker: trips after repeated failures, comes back only after
//! validation canaries pass, then ramps its share of traffic up in steps. Pure: the time is
//! passed in.

use std::time::Duration;

use serde::Serialize;
use smallvec::SmallVec;
use tokio::time::Instant;

/// The breaker's knobs, from `[gateway]`.
#[derive(Clone, Debug, PartialEq)]
pub struct BreakerConfig {
    pub failures_to_trip: u32,
    pub canary_interval: Duration,
    pub canaries_to_close: u32,
    /// Percent of the upstream's share at each ramp step; the last is 100.
    pub ramp: Vec<u8>,
    pub ramp_step: Duration,
}

impl BreakerConfig {
    pub fn from_gateway(g: &aiwatch_core::config::GatewayConfig) -> Self {
        Self {
            failures_to_trip: g.failures_to_trip.max(1),
            canary_interval: g.canary_interval,
            canaries_to_close: g.canaries_to_close.max(1),
            ramp: g.ramp.clone(),
            ramp_step: g.ramp_step,
        }
    }
}

/// Where a breaker stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Takes its full share.
    Closed,
    /// Tripped: no traffic; canaries run every interval.
    Open,
    /// Tripped, and at least one canary in a row passed.
    Validating,
    /// Validated; its share grows step by step.
    Ramping,
}

impl Phase {
    /// The value of the `aiwatch_gateway_breaker_state` gauge.
    pub fn gauge(self) -> i64 {
        match self {
            Phase::Closed => 0,
            Phase::Open => 1,
            Phase::Validating => 2,
            Phase::Ramping => 3,
        }
    }
}

/// A change worth a log line and a metric.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transition {
    Tripped { reason: String },
    Validated,
    RampedTo { percent: u8 },
    Closed,
}

impl Transition {
    /// The transition's log line. The breaker's owner calls it once its lock is released.
    pub fn log(&self, upstream: &str) {
        match self {
            Transition::Tripped { reason } => {
                tracing::warn!(%upstream, %reason, "breaker tripped: no traffic until canaries pass")
            }
            Transition::Validated => tracing::info!(%upstream, "canary passed"),
            Transition::RampedTo { percent } => {
                tracing::info!(%upstream, percent, "validated; ramping traffic back")
            }
            Transition::Closed => tracing::info!(%upstream, "back at its full share"),
        }
    }
}

/// What the admin endpoint shows of a breaker.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BreakerView {
    pub state: Phase,
    /// Percent of its configured share it takes now.
    pub share_percent: u8,
    pub consecutive_failures: u32,
    /// Why it tripped (or the last failure while closed).
    pub reason: Option<String>,
    pub canary_passes: u32,
    /// Seconds until the next canary (open) or ramp step (ramping).
    pub next_try_in_s: Option<f64>,
    /// Seconds left of a provider's Retry-After.
    pub retry_after_s: Option<f64>,
    pub monitor_outage: bool,
}

#[derive(Clone, Debug)]
pub struct Breaker {
    config: BreakerConfig,
    phase: Phase,
    consecutive_failures: u32,
    reason: Option<String>,
    canary_passes: u32,
    next_canary: Option<Instant>,
    ramp_started: Option<Instant>,
    cooling_until: Option<Instant>,
    monitor_outage: bool,
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            phase: Phase::Closed,
            consecutive_failures: 0,
            reason: None,
            canary_passes: 0,
            next_canary: None,
            ramp_started: None,
            cooling_until: None,
            monitor_outage: false,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Advances time-driven changes (ramp steps, the end of a Retry-After).
    pub fn tick(&mut self, now: Instant) -> Option<Transition> {
        if self.cooling_until.is_some_and(|t| now >= t) {
            self.cooling_until = None;
        }
        if self.phase != Phase::Ramping {
            return None;
        }
        let started = self.ramp_started.unwrap_or(now);
        let step = self.ramp_step_at(started, now);
        if step + 1 >= self.config.ramp.len() {
            self.phase = Phase::Closed;
            self.ramp_started = None;
            self.reason = None;
            return Some(Transition::Closed);
        }
        None
    }

    fn ramp_step_at(&self, started: Instant, now: Instant) -> usize {
        let step = self.config.ramp_step.as_secs_f64().max(1e-3);
        (now.saturating_duration_since(started).as_secs_f64() / step) as usize
    }

    /// The fraction of its configured share it takes now: 1 closed, the ramp step's
    /// percentage while ramping, 0 while tripped or told by the provider to wait.
    pub fn share(&self, now: Instant) -> f64 {
        if self.cooling_until.is_some_and(|t| now < t) || self.monitor_outage {
            return 0.0;
        }
        match self.phase {
            Phase::Closed => 1.0,
            Phase::Open | Phase::Validating => 0.0,
            Phase::Ramping => {
                let started = self.ramp_started.unwrap_or(now);
                let step = self
                    .ramp_step_at(started, now)
                    .min(self.config.ramp.len().saturating_sub(1));
                f64::from(self.config.ramp.get(step).copied().unwrap_or(100)) / 100.0
            }
        }
    }

    /// How long the provider's Retry-After still asks the gateway to wait, if it does.
    pub fn cooling_left(&self, now: Instant) -> Option<Duration> {
        self.cooling_until
            .filter(|t| *t > now)
            .map(|t| t.saturating_duration_since(now))
    }

    /// May it take a failed-over request? Closed or ramping, and not asked to wait.
    pub fn available(&self, now: Instant) -> bool {
        matches!(self.phase, Phase::Closed | Phase::Ramping)
            && !self.monitor_outage
            && self.cooling_until.is_none_or(|t| now >= t)
    }

    /// Closed with nothing pending: no failure counted, no Retry-After, no outage seen by the
    /// monitor. While so, time changes nothing (see [`Breaker::tick`]), it takes its whole
    /// share, and a success changes nothing.
    pub fn is_settled(&self) -> bool {
        self.phase == Phase::Closed
            && self.consecutive_failures == 0
            && self.reason.is_none()
            && self.cooling_until.is_none()
            && !self.monitor_outage
    }

    /// A request it served completely.
    pub fn on_success(&mut self) {
        self.consecutive_failures = 0;
        if self.phase == Phase::Closed {
            self.reason = None;
        }
    }

    /// A request it failed. `retry_after` is the provider's own request to wait; `trip_now`
    /// trips it without waiting for more failures (the account there will not heal by itself).
    pub fn on_failure(
        &mut self,
        now: Instant,
        reason: String,
        retry_after: Option<Duration>,
        trip_now: bool,
    ) -> Option<Transition> {
        if let Some(wait) = retry_after {
            let until = now + wait.min(Duration::from_secs(600));
            self.cooling_until = Some(self.cooling_until.map_or(until, |t| t.max(until)));
        }
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let trips = match self.phase {
            Phase::Closed => trip_now || self.consecutive_failures >= self.config.failures_to_trip,
            // A validated upstream that fails while ramping was not well after all.
            Phase::Ramping => true,
            Phase::Open | Phase::Validating => false,
        };
        self.reason = Some(reason.clone());
        if trips {
            self.trip(now, reason.clone());
            return Some(Transition::Tripped { reason });
        }
        None
    }

    fn trip(&mut self, now: Instant, reason: String) {
        self.phase = Phase::Open;
        self.reason = Some(reason);
        self.canary_passes = 0;
        self.ramp_started = None;
        let first = now + self.config.canary_interval;
        self.next_canary = Some(self.cooling_until.map_or(first, |t| t.max(first)));
    }

    /// Is a canary due now? Only while tripped, not while the monitor still sees an outage.
    pub fn canary_due(&self, now: Instant) -> bool {
        matches!(self.phase, Phase::Open | Phase::Validating)
            && !self.monitor_outage
            && self.next_canary.is_none_or(|t| now >= t)
    }

    /// A canary's verdict: `Err(reason)` restarts the count.
    pub fn on_canary(&mut self, now: Instant, result: Result<(), String>) -> Option<Transition> {
        if !matches!(self.phase, Phase::Open | Phase::Validating) {
            return None;
        }
        self.next_canary = Some(now + self.config.canary_interval);
        match result {
            Err(reason) => {
                self.canary_passes = 0;
                self.phase = Phase::Open;
                self.reason = Some(format!("canary failed: {reason}"));
                None
            }
            Ok(()) => {
                self.canary_passes += 1;
                if self.canary_passes >= self.config.canaries_to_close {
                    self.phase = Phase::Ramping;
                    self.ramp_started = Some(now);
                    self.consecutive_failures = 0;
                    self.next_canary = None;
                    let percent = self.config.ramp.first().copied().unwrap_or(100);
                    if percent >= 100 {
                        self.phase = Phase::Closed;
                        self.reason = None;
                        return Some(Transition::Closed);
                    }
                    Some(Transition::RampedTo { percent })
                } else {
                    self.phase = Phase::Validating;
                    Some(Transition::Validated)
                }
            }
        }
    }

    /// The monitor's view of the upstream's service: an outage trips it at once, so no
    /// request pays for finding out; when it clears, canaries validate as usual.
    pub fn on_monitor(&mut self, now: Instant, outage: Option<&str>) -> Option<Transition> {
        match outage {
            Some(why) if !self.monitor_outage => {
                self.monitor_outage = true;
                let reason = format!("the monitor sees an outage: {why}");
                if matches!(self.phase, Phase::Closed | Phase::Ramping) {
                    self.trip(now, reason.clone());
                    Some(Transition::Tripped { reason })
                } else {
                    // Passes counted before the outage do not count after it.
                    self.phase = Phase::Open;
                    self.canary_passes = 0;
                    self.reason = Some(reason);
                    None
                }
            }
            None if self.monitor_outage => {
                self.monitor_outage = false;
                self.next_canary = Some(now);
                None
            }
            _ => None,
        }
    }

    pub fn view(&self, now: Instant) -> BreakerView {
        let secs = |t: Instant| t.saturating_duration_since(now).as_secs_f64();
        let next_try_in_s = match self.phase {
            Phase::Open | Phase::Validating => self.next_canary.map(secs),
            Phase::Ramping => self.ramp_started.map(|started| {
                let step = self.ramp_step_at(started, now) as u32 + 1;
                secs(started + self.config.ramp_step * step)
            }),
            Phase::Closed => None,
        };
        BreakerView {
            state: self.phase,
            share_percent: (self.share(now) * 100.0).round() as u8,
            consecutive_failures: self.consecutive_failures,
            reason: self.reason.clone(),
            canary_passes: self.canary_passes,
            next_try_in_s,
            retry_after_s: self.cooling_until.filter(|t| *t > now).map(secs),
            monitor_outage: self.monitor_outage,
        }
    }
}

/// The order in which one request tries a route's upstreams.
///
/// `weights[i]` is upstream i's configured share and `shares[i]` the fraction of it its
/// breaker allows now; `available[i]` says whether it may take failed-over traffic. The share
/// a tripped or ramping upstream gives up goes to the next available upstream after it, so
/// a pure failover route ([1, 0, 0]) sends everything to the second when the first trips, and
/// 90 % there while the first ramps at 10 %. `unit` is a uniform random number in [0, 1).
/// When nothing is available the upstreams `last_resort` allows (tripped, but not asked by
/// their provider to wait) are tried in order; the order may then be empty.
/// Routes with at most this many upstreams plan a request without allocating.
pub const ROUTE_INLINE: usize = 8;

/// The upstreams a request tries, by index, in order.
pub type Order = SmallVec<[usize; ROUTE_INLINE]>;

pub fn attempt_order(
    weights: &[u32],
    shares: &[f64],
    available: &[bool],
    last_resort: &[bool],
    unit: f64,
) -> Order {
    let n = weights.len();
    let mut effective: SmallVec<[f64; ROUTE_INLINE]> = smallvec::smallvec![0.0f64; n];
    for i in 0..n {
        let w = f64::from(weights[i]);
        let share = shares.get(i).copied().unwrap_or(0.0).clamp(0.0, 1.0);
        effective[i] += w * share;
        let given_up = w * (1.0 - share);
        if given_up > 0.0 {
            let heir = (i + 1..n)
                .chain(0..i)
                .find(|&j| available.get(j).copied().unwrap_or(false));
            if let Some(j) = heir {
                effective[j] += given_up;
            }
        }
    }
    let total: f64 = effective.iter().sum();
    let mut order = Order::new();
    if total > 0.0 {
        let mut point = unit.clamp(0.0, 1.0) * total;
        let mut first = None;
        for (i, w) in effective.iter().enumerate() {
            if *w <= 0.0 {
                continue;
            }
            first = Some(i);
            if point < *w {
                break;
            }
            point -= w;
        }
        if let Some(first) = first {
            order.push(first);
        }
    }
    for i in 0..n {
        if !order.contains(&i) && available.get(i).copied().unwrap_or(false) {
            order.push(i);
        }
    }
    if order.is_empty() {
        order.extend((0..n).filter(|&i| last_resort.get(i).copied().unwrap_or(false)));
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig {
            failures_to_trip: 3,
            canary_interval: Duration::from_secs(10),
            canaries_to_close: 2,
            ramp: vec![10, 50, 100],
            ramp_step: Duration::from_secs(30),
        }
    }

    fn fail(b: &mut Breaker, now: Instant) -> Option<Transition> {
        b.on_failure(now, "503 from upstream".into(), None, false)
    }

    #[test]
    fn an_account_failure_trips_at_once() {
        let now = Instant::now();
        let mut b = Breaker::new(config());
        assert!(matches!(
            b.on_failure(now, "401 (auth_invalid)".into(), None, true),
            Some(Transition::Tripped { .. })
        ));
        assert_eq!(b.phase(), Phase::Open);
    }

    #[test]
    fn trips_after_consecutive_failures_only() {
        let now = Instant::now();
        let mut b = Breaker::new(config());
        assert_eq!(fail(&mut b, now), None);
        assert_eq!(fail(&mut b, now), None);
        b.on_success();
        assert_eq!(fail(&mut b, now), None, "a success resets the count");
        assert_eq!(fail(&mut b, now), None);
        assert!(matches!(
            fail(&mut b, now),
            Some(Transition::Tripped { .. })
        ));
        assert_eq!(b.phase(), Phase::Open);
        assert_eq!(b.share(now), 0.0);
        assert!(!b.available(now));
    }

    #[test]
    fn comes_back_only_after_canaries_then_ramps_in_steps() {
        let t0 = Instant::now();
        let mut b = Breaker::new(config());
        for _ in 0..3 {
            fail(&mut b, t0);
        }
        assert!(!b.canary_due(t0), "the first canary waits an interval");
        let t1 = t0 + Duration::from_secs(10);
        assert!(b.canary_due(t1));
        assert_eq!(b.on_canary(t1, Ok(())), Some(Transition::Validated));
        assert_eq!(b.share(t1), 0.0, "one canary is not enough");
        let t2 = t1 + Duration::from_secs(10);
        assert_eq!(
            b.on_canary(t2, Ok(())),
            Some(Transition::RampedTo { percent: 10 })
        );
        assert!((b.share(t2) - 0.1).abs() < 1e-9);
        assert!(b.available(t2));
        let t3 = t2 + Duration::from_secs(31);
        assert_eq!(b.tick(t3), None);
        assert!((b.share(t3) - 0.5).abs() < 1e-9);
        let t4 = t2 + Duration::from_secs(61);
        assert_eq!(b.tick(t4), Some(Transition::Closed));
        assert_eq!(b.share(t4), 1.0);
    }

    #[test]
    fn a_failed_canary_restarts_validation() {
        let t0 = Instant::now();
        let mut b = Breaker::new(config());
        for _ in 0..3 {
            fail(&mut b, t0);
        }
        let t1 = t0 + Duration::from_secs(10);
        b.on_canary(t1, Ok(()));
        let t2 = t1 + Duration::from_secs(10);
        b.on_canary(t2, Err("slow: 900 ms vs baseline 40 ms".into()));
        assert_eq!(b.phase(), Phase::Open);
        assert!(b.view(t2).reason.unwrap_or_default().contains("slow"));
        let t3 = t2 + Duration::from_secs(10);
        assert_eq!(b.on_canary(t3, Ok(())), Some(Transition::Validated));
    }

    #[test]
    fn a_failure_while_ramping_trips_again_at_once() {
        let t0 = Instant::now();
        let mut b = Breaker::new(config());
        for _ in 0..3 {
            fail(&mut b, t0);
        }
        b.on_canary(t0 + Duration::from_secs(10), Ok(()));
        b.on_canary(t0 + Duration::from_secs(20), Ok(()));
        assert_eq!(b.phase(), Phase::Ramping);
        assert!(matches!(
            fail(&mut b, t0 + Duration::from_secs(21)),
            Some(Transition::Tripped { .. })
        ));
    }

    #[test]
    fn retry_after_keeps_an_upstream_out_until_it_passes() {
        let t0 = Instant::now();
        let mut b = Breaker::new(config());
        b.on_failure(t0, "429".into(), Some(Duration::from_secs(20)), false);
        assert_eq!(b.phase(), Phase::Closed);
        assert!(!b.available(t0 + Duration::from_secs(19)));
        assert!(b.available(t0 + Duration::from_secs(20)));
        assert!((b.view(t0).retry_after_s.unwrap_or_default() - 20.0).abs() < 1e-6);
    }

    #[test]
    fn the_monitor_trips_before_any_request_pays() {
        let t0 = Instant::now();
        let mut b = Breaker::new(config());
        assert!(matches!(
            b.on_monitor(t0, Some("outage since 12:00")),
            Some(Transition::Tripped { .. })
        ));
        assert!(
            !b.canary_due(t0 + Duration::from_secs(60)),
            "no canaries while the monitor sees the outage"
        );
        b.on_monitor(t0 + Duration::from_secs(60), None);
        assert!(b.canary_due(t0 + Duration::from_secs(60)));
        assert_eq!(
            b.phase(),
            Phase::Open,
            "the monitor's all-clear is not validation"
        );
    }

    #[test]
    fn canary_passes_before_a_monitor_outage_do_not_count_after_it() {
        let t0 = Instant::now();
        let mut b = Breaker::new(config());
        for _ in 0..3 {
            fail(&mut b, t0);
        }
        b.on_canary(t0 + Duration::from_secs(10), Ok(()));
        assert_eq!(b.phase(), Phase::Validating);
        b.on_monitor(t0 + Duration::from_secs(11), Some("outage"));
        b.on_monitor(t0 + Duration::from_secs(12), None);
        assert_eq!(
            b.on_canary(t0 + Duration::from_secs(13), Ok(())),
            Some(Transition::Validated),
            "validation starts over"
        );
    }

    #[test]
    fn failover_routes_take_everything_from_a_tripped_primary() {
        let order = attempt_order(
            &[1, 0, 0],
            &[0.0, 1.0, 1.0],
            &[false, true, true],
            &[true; 3],
            0.3,
        );
        assert_eq!(order.as_slice(), [1, 2]);
        let healthy = attempt_order(
            &[1, 0, 0],
            &[1.0, 1.0, 1.0],
            &[true, true, true],
            &[true; 3],
            0.99,
        );
        assert_eq!(healthy.as_slice(), [0, 1, 2]);
    }

    #[test]
    fn a_ramping_primary_gets_its_step_share_and_the_rest_goes_next() {
        let shares = [0.1, 1.0];
        let available = [true, true];
        let firsts: Vec<usize> = (0..100)
            .map(|i| {
                attempt_order(
                    &[1, 0],
                    &shares,
                    &available,
                    &[true; 2],
                    f64::from(i) / 100.0,
                )[0]
            })
            .collect();
        let to_primary = firsts.iter().filter(|&&i| i == 0).count();
        assert_eq!(to_primary, 10);
        assert_eq!(
            attempt_order(&[1, 0], &shares, &available, &[true; 2], 0.5).as_slice(),
            [1, 0],
            "the ramping primary is still a failover target"
        );
    }

    #[test]
    fn weights_split_first_attempts() {
        let firsts: Vec<usize> = (0..100)
            .map(|i| {
                attempt_order(
                    &[3, 1],
                    &[1.0, 1.0],
                    &[true, true],
                    &[true; 2],
                    f64::from(i) / 100.0,
                )[0]
            })
            .collect();
        assert_eq!(firsts.iter().filter(|&&i| i == 0).count(), 75);
    }

    #[test]
    fn when_everything_is_tripped_all_are_tried_in_order() {
        assert_eq!(
            attempt_order(&[1, 0, 0], &[0.0; 3], &[false; 3], &[true; 3], 0.5).as_slice(),
            [0, 1, 2]
        );
        assert_eq!(
            attempt_order(
                &[1, 0, 0],
                &[0.0; 3],
                &[false; 3],
                &[false, true, false],
                0.5
            )
            .as_slice(),
            [1],
            "but never one its provider asked to wait"
        );
    }

    proptest::proptest! {
        #[test]
        fn every_upstream_appears_at_most_once(
            weights in proptest::collection::vec(0u32..5, 1..6),
            unit in 0.0f64..1.0,
            seed in 0u64..1000,
        ) {
            let n = weights.len();
            let shares: Vec<f64> = (0..n).map(|i| ((seed >> i) & 1) as f64).collect();
            let available: Vec<bool> = (0..n).map(|i| (seed >> (i + 8)) & 1 == 1).collect();
            let order = attempt_order(&weights, &shares, &available, &available, unit);
            let mut seen = order.clone();
            seen.sort_unstable();
            seen.dedup();
            proptest::prop_assert_eq!(seen.len(), order.len());
            proptest::prop_assert!(!order.is_empty() || available.iter().all(|a| !a));
            proptest::prop_assert!(order.iter().all(|&i| i < n));
        }
    }
}
