//! Per-key limits (pure): requests per minute and tokens per minute for each gateway key, as
//! token buckets that refill continuously (no burst at a minute's edge). A request takes one
//! from the key's request bucket before it is sent; the tokens an answer used are charged after
//! it, so a key over its token budget is refused until the bucket has refilled. A refusal says
//! how long to wait (`Retry-After`). Time is passed in.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::auth::KeyLabel;

/// The limits every gateway key has (`None`: no limit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyLimits {
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u32>,
}

impl KeyLimits {
    pub fn any(self) -> bool {
        self.requests_per_minute.is_some() || self.tokens_per_minute.is_some()
    }
}

/// Which limit refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exceeded {
    Requests,
    Tokens,
}

impl Exceeded {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requests => "requests",
            Self::Tokens => "tokens",
        }
    }
}

/// A bucket of `per_minute` that refills continuously; its level may go below zero when more
/// was charged than it held (tokens are known only after the answer).
#[derive(Clone, Copy, Debug)]
struct Bucket {
    level: f64,
    at: Instant,
}

impl Bucket {
    fn full(per_minute: u32, now: Instant) -> Self {
        Self {
            level: f64::from(per_minute),
            at: now,
        }
    }

    fn refill(&mut self, per_minute: u32, now: Instant) {
        let rate = f64::from(per_minute) / 60.0;
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level + elapsed * rate).min(f64::from(per_minute));
        self.at = now;
    }

    /// How long until the level reaches `need`.
    fn wait_for(&self, need: f64, per_minute: u32) -> Duration {
        let rate = f64::from(per_minute.max(1)) / 60.0;
        Duration::from_secs_f64(((need - self.level) / rate).max(0.0))
    }
}

#[derive(Clone, Copy, Debug)]
struct KeyBuckets {
    requests: Bucket,
    tokens: Bucket,
    /// Requests admitted and tokens charged in the current window, for the usage view.
    requests_seen: u64,
    tokens_seen: u64,
    window_start: Instant,
}

/// Each key's buckets.
#[derive(Debug)]
pub struct Limiter {
    limits: KeyLimits,
    keys: HashMap<KeyLabel, KeyBuckets>,
}

/// What one key used of its limits in the last minute, for `/admin/usage`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct KeyLimitView {
    pub requests_last_minute: u64,
    pub tokens_last_minute: u64,
    /// Requests that could be sent now.
    pub requests_left: Option<u64>,
    /// Tokens that could be spent now (0 while the key is over its budget).
    pub tokens_left: Option<u64>,
}

impl Limiter {
    pub fn new(limits: KeyLimits) -> Self {
        Self {
            limits,
            keys: HashMap::new(),
        }
    }

    pub fn limits(&self) -> KeyLimits {
        self.limits
    }

    fn entry(&mut self, key: KeyLabel, now: Instant) -> &mut KeyBuckets {
        let limits = self.limits;
        let entry = self.keys.entry(key).or_insert_with(|| KeyBuckets {
            requests: Bucket::full(limits.requests_per_minute.unwrap_or(0), now),
            tokens: Bucket::full(limits.tokens_per_minute.unwrap_or(0), now),
            requests_seen: 0,
            tokens_seen: 0,
            window_start: now,
        });
        if now.saturating_duration_since(entry.window_start) >= Duration::from_secs(60) {
            entry.requests_seen = 0;
            entry.tokens_seen = 0;
            entry.window_start = now;
        }
        if let Some(rpm) = limits.requests_per_minute {
            entry.requests.refill(rpm, now);
        }
        if let Some(tpm) = limits.tokens_per_minute {
            entry.tokens.refill(tpm, now);
        }
        entry
    }

    /// Admits one request of `key` now, or says which limit refuses it and for how long.
    pub fn admit(&mut self, key: KeyLabel, now: Instant) -> Result<(), (Exceeded, Duration)> {
        let limits = self.limits;
        let entry = self.entry(key, now);
        if let Some(tpm) = limits.tokens_per_minute {
            if entry.tokens.level <= 0.0 {
                return Err((Exceeded::Tokens, entry.tokens.wait_for(1.0, tpm)));
            }
        }
        if let Some(rpm) = limits.requests_per_minute {
            if entry.requests.level < 1.0 {
                return Err((Exceeded::Requests, entry.requests.wait_for(1.0, rpm)));
            }
            entry.requests.level -= 1.0;
        }
        entry.requests_seen += 1;
        Ok(())
    }

    /// Charges the tokens an answer of `key` used.
    pub fn charge(&mut self, key: KeyLabel, tokens: u64, now: Instant) {
        let limits = self.limits;
        let entry = self.entry(key, now);
        entry.tokens_seen += tokens;
        if limits.tokens_per_minute.is_some() {
            entry.tokens.level -= tokens as f64;
        }
    }

    /// Each key's use of its limits, by label.
    pub fn view(&mut self, now: Instant) -> Vec<(KeyLabel, KeyLimitView)> {
        let labels: Vec<KeyLabel> = self.keys.keys().copied().collect();
        let limits = self.limits;
        let mut out: Vec<(KeyLabel, KeyLimitView)> = labels
            .into_iter()
            .map(|key| {
                let e = *self.entry(key, now);
                let left = |bucket: Bucket, limit: Option<u32>| {
                    limit.map(|_| bucket.level.max(0.0).floor() as u64)
                };
                (
                    key,
                    KeyLimitView {
                        requests_last_minute: e.requests_seen,
                        tokens_last_minute: e.tokens_seen,
                        requests_left: left(e.requests, limits.requests_per_minute),
                        tokens_left: left(e.tokens, limits.tokens_per_minute),
                    },
                )
            })
            .collect();
        out.sort_by_key(|(k, _)| k.0);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: KeyLabel = KeyLabel(1);

    #[test]
    fn requests_past_the_per_minute_limit_wait_for_the_bucket_to_refill() {
        let t0 = Instant::now();
        let mut limiter = Limiter::new(KeyLimits {
            requests_per_minute: Some(3),
            tokens_per_minute: None,
        });
        for _ in 0..3 {
            assert!(limiter.admit(KEY, t0).is_ok());
        }
        let (which, wait) = limiter.admit(KEY, t0).unwrap_err();
        assert_eq!(which, Exceeded::Requests);
        assert!(
            wait > Duration::from_secs(19) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        // A third of a minute later one request's worth has come back.
        assert!(limiter.admit(KEY, t0 + Duration::from_secs(20)).is_ok());
        // Another key has its own budget.
        assert!(limiter.admit(KeyLabel(2), t0).is_ok());
    }

    #[test]
    fn a_key_over_its_token_budget_is_refused_until_it_refills() {
        let t0 = Instant::now();
        let mut limiter = Limiter::new(KeyLimits {
            requests_per_minute: None,
            tokens_per_minute: Some(600),
        });
        assert!(limiter.admit(KEY, t0).is_ok());
        // The answer used more than the whole budget: the bucket goes below zero.
        limiter.charge(KEY, 900, t0);
        let (which, wait) = limiter.admit(KEY, t0).unwrap_err();
        assert_eq!(which, Exceeded::Tokens);
        // 300 tokens in debt at 10 tokens/s: about 30 s.
        assert!(
            wait >= Duration::from_secs(30) && wait < Duration::from_secs(31),
            "{wait:?}"
        );
        assert!(limiter.admit(KEY, t0 + Duration::from_secs(31)).is_ok());
        let view = limiter.view(t0 + Duration::from_secs(31));
        assert_eq!(view[0].1.tokens_last_minute, 900);
        assert_eq!(view[0].1.requests_last_minute, 2);
    }

    #[test]
    fn without_limits_everything_is_admitted_and_still_counted() {
        let t0 = Instant::now();
        let mut limiter = Limiter::new(KeyLimits::default());
        for _ in 0..1_000 {
            assert!(limiter.admit(KEY, t0).is_ok());
        }
        limiter.charge(KEY, 5, t0);
        let view = limiter.view(t0);
        assert_eq!(view[0].1.requests_last_minute, 1_000);
        assert_eq!(view[0].1.requests_left, None);
    }
}
