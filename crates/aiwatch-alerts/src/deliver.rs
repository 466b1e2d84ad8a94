//! The outbox worker: takes due deliveries from the store, sends each through its channel, and
//! records the outcome — sent, retry later (exponential backoff with jitter, never sooner than
//! the receiver's `Retry-After`), or dead once the retry budget is spent or the receiver
//! refuses for good. What was pending when the process stopped (even by kill -9) is still in
//! the outbox and goes out when it starts again; the idempotency key lets receivers drop a
//! repeat of a delivery whose acceptance was not recorded.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aiwatch_core::alert_rules::AlertMessage;
use aiwatch_probe::layered::ProbeContext;
use aiwatch_store::{Delivery, DeliveryOutcome, Store};
use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use crate::channel::Channel;
use crate::send::{attempt, Answer};

/// Deliveries taken from the outbox per pass.
const PASS: usize = 256;
/// Attempts in flight at once.
const CONCURRENCY: usize = 16;
/// The worker looks at the outbox at least this often, woken or not.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// When to try again, and when to stop.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// The wait after the first failure; doubled after each further one.
    pub base: Duration,
    /// The longest wait between attempts (a longer `Retry-After` is still honoured, up to
    /// `max_age`).
    pub max_delay: Duration,
    /// Attempts before a delivery is given up.
    pub max_attempts: u32,
    /// A delivery older than this is given up.
    pub max_age: Duration,
    /// Each wait is spread by ± this fraction, so receivers are not hit in lockstep.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(5),
            max_delay: Duration::from_secs(30 * 60),
            max_attempts: 12,
            max_age: Duration::from_secs(24 * 3600),
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// When attempt number `attempts + 1` should run after `attempts` failed ones, or `None`
    /// when the budget is spent. `unit` is a random number in `0..1` (the jitter).
    pub fn next_attempt(
        &self,
        attempts: u32,
        retry_after: Option<Duration>,
        created_at: DateTime<Utc>,
        now: DateTime<Utc>,
        unit: f64,
    ) -> Option<DateTime<Utc>> {
        if attempts >= self.max_attempts {
            return None;
        }
        let doubled = self
            .base
            .saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
        let backoff = doubled.min(self.max_delay);
        let spread = 1.0 + self.jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        let jittered = backoff.mul_f64(spread.max(0.0));
        let wait = retry_after.map_or(jittered, |asked| asked.max(jittered));
        let at = now + chrono::Duration::from_std(wait).ok()?;
        let deadline = created_at + chrono::Duration::from_std(self.max_age).ok()?;
        (at <= deadline).then_some(at)
    }
}

/// Told about every attempt's outcome (the daemon counts them in `/metrics`).
pub type Observer = Box<dyn Fn(&DeliveryOutcome) + Send + Sync>;

/// The worker over the outbox.
pub struct Deliverer {
    store: Arc<dyn Store>,
    channels: HashMap<String, Arc<Channel>>,
    ctx: ProbeContext,
    policy: RetryPolicy,
    /// One attempt's deadline.
    timeout: Duration,
    wake: Arc<Notify>,
    observer: Option<Observer>,
    /// Whether this process sends (several `serve` instances on one database: only the one
    /// holding the deliverer's lease does).
    active: std::sync::atomic::AtomicBool,
}

impl Deliverer {
    pub fn new(
        store: Arc<dyn Store>,
        channels: Vec<Channel>,
        ctx: ProbeContext,
        policy: RetryPolicy,
        timeout: Duration,
    ) -> Self {
        Self {
            store,
            channels: channels
                .into_iter()
                .map(|c| (c.name().to_owned(), Arc::new(c)))
                .collect(),
            ctx,
            policy,
            timeout,
            wake: Arc::new(Notify::new()),
            active: std::sync::atomic::AtomicBool::new(true),
            observer: None,
        }
    }

    /// Tells `observer` every attempt's outcome.
    pub fn with_observer(mut self, observer: Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Lets this process send, or stops it (another instance holds the deliverer's lease).
    pub fn set_active(&self, active: bool) {
        let was = self
            .active
            .swap(active, std::sync::atomic::Ordering::Relaxed);
        if active && !was {
            self.wake.notify_one();
        }
    }

    /// Wakes the worker (new notifications were saved).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub fn channel(&self, name: &str) -> Option<&Arc<Channel>> {
        self.channels.get(name)
    }

    pub fn channel_names(&self) -> impl Iterator<Item = &str> {
        self.channels.keys().map(String::as_str)
    }

    /// Delivers what is due until `shutdown`; sleeps until woken or the next retry is due.
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            if !self.active.load(std::sync::atomic::Ordering::Relaxed) {
                tokio::select! {
                    () = &mut shutdown => return,
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(IDLE_CHECK) => {}
                }
                continue;
            }
            let handled = self.deliver_due().await;
            if handled >= PASS {
                continue;
            }
            let store = self.store.clone();
            let next = tokio::task::spawn_blocking(move || store.next_delivery_at())
                .await
                .ok()
                .and_then(Result::ok)
                .flatten();
            let wait = next
                .and_then(|at| (at - Utc::now()).to_std().ok())
                .map_or(IDLE_CHECK, |d| d.min(IDLE_CHECK));
            tokio::select! {
                () = &mut shutdown => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One pass: every delivery due now, at most [`CONCURRENCY`] at once. Returns how many
    /// were attempted.
    pub async fn deliver_due(&self) -> usize {
        let store = self.store.clone();
        let due = match tokio::task::spawn_blocking(move || store.due_deliveries(Utc::now(), PASS))
            .await
        {
            Ok(Ok(due)) => due,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the alert outbox cannot be read");
                return 0;
            }
            Err(_) => return 0,
        };
        let count = due.len();
        for chunk in due.chunks(CONCURRENCY) {
            futures_util::future::join_all(chunk.iter().map(|d| self.deliver(d))).await;
        }
        count
    }

    async fn deliver(&self, delivery: &Delivery) {
        let now = Utc::now;
        let outcome = match self.channels.get(&delivery.alert) {
            None => DeliveryOutcome::Dead {
                status: None,
                error: format!("no alert named `{}` is configured any more", delivery.alert),
            },
            Some(channel) => {
                let answer = self.send(channel, &delivery.message).await;
                self.judge(delivery, &answer, now())
            }
        };
        if let Some(observer) = &self.observer {
            observer(&outcome);
        }
        match &outcome {
            DeliveryOutcome::Sent { .. } => {}
            DeliveryOutcome::Retry { error, .. } => {
                tracing::info!(alert = %delivery.alert, key = %delivery.message.idempotency_key, error = %error, "alert delivery failed; will retry");
            }
            DeliveryOutcome::Dead { error, .. } => {
                tracing::warn!(alert = %delivery.alert, key = %delivery.message.idempotency_key, error = %error, "alert delivery given up");
            }
        }
        let store = self.store.clone();
        let id = delivery.id;
        let at = now();
        let saved =
            tokio::task::spawn_blocking(move || store.finish_attempt(id, &outcome, at)).await;
        if !matches!(saved, Ok(Ok(()))) {
            tracing::warn!(alert = %delivery.alert, "an alert delivery's outcome could not be saved; it may be sent again (receivers get the same Idempotency-Key)");
        }
    }

    /// Sends `message` through `channel` once.
    pub async fn send(&self, channel: &Channel, message: &AlertMessage) -> Answer {
        attempt(&self.ctx, channel, channel.outbound(message), self.timeout).await
    }

    fn judge(&self, delivery: &Delivery, answer: &Answer, now: DateTime<Utc>) -> DeliveryOutcome {
        if answer.accepted {
            return DeliveryOutcome::Sent {
                status: answer.status,
            };
        }
        if !answer.transient {
            return DeliveryOutcome::Dead {
                status: answer.status,
                error: answer.detail.clone(),
            };
        }
        match self.policy.next_attempt(
            delivery.attempts + 1,
            answer.retry_after,
            delivery.created_at,
            now,
            fastrand::f64(),
        ) {
            Some(at) => DeliveryOutcome::Retry {
                at,
                status: answer.status,
                error: answer.detail.clone(),
            },
            None => DeliveryOutcome::Dead {
                status: answer.status,
                error: format!(
                    "gave up after {} attempts: {}",
                    delivery.attempts + 1,
                    answer.detail
                ),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        "2026-12-01T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_the_budget_ends_it() {
        let policy = RetryPolicy::default();
        let wait = |attempts| {
            policy
                .next_attempt(attempts, None, t0(), t0(), 0.5)
                .map(|at| (at - t0()).num_seconds())
        };
        assert_eq!(wait(1), Some(5));
        assert_eq!(wait(2), Some(10));
        assert_eq!(wait(3), Some(20));
        assert_eq!(wait(11), Some(1800));
        assert_eq!(wait(12), None);
    }

    #[test]
    fn retry_after_is_never_cut_short_but_the_age_limit_holds() {
        let policy = RetryPolicy::default();
        let at = policy
            .next_attempt(1, Some(Duration::from_secs(120)), t0(), t0(), 0.5)
            .unwrap();
        assert_eq!((at - t0()).num_seconds(), 120);
        let late = t0() + chrono::Duration::hours(23) + chrono::Duration::minutes(59);
        assert_eq!(
            policy.next_attempt(3, Some(Duration::from_secs(600)), t0(), late, 0.5),
            None
        );
    }

    #[test]
    fn jitter_spreads_waits_within_its_fraction() {
        let policy = RetryPolicy::default();
        let low = policy.next_attempt(4, None, t0(), t0(), 0.0).unwrap();
        let high = policy.next_attempt(4, None, t0(), t0(), 1.0).unwrap();
        assert_eq!((low - t0()).num_seconds(), 32);
        assert_eq!((high - t0()).num_seconds(), 48);
    }
}
