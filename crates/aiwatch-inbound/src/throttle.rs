//! Per-client rate limits for what a request costs the server or could gain an attacker (a
//! check run on demand, a failed sign-in, a problem report): a token bucket per client address
//! (or any other key, such as a reporter's token), in a bounded table so a flood of clients
//! cannot grow memory.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A bucket of `burst` tokens per client (by default, its address), refilled one per `every`.
pub struct Throttle<K = IpAddr> {
    burst: f64,
    every: Duration,
    max_clients: usize,
    table: Mutex<HashMap<K, Bucket>>,
    /// When every bucket has a whole token again at the latest, in nanoseconds after `epoch`:
    /// until then some client may be out of tokens. [`Throttle::check`] asks the table only
    /// before this moment, so the usual request (nobody is being throttled) takes no lock.
    all_refilled_at: AtomicU64,
    epoch: Instant,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl<K: Copy + Eq + Hash + Ord> Throttle<K> {
    /// Clients remembered at most; past it, full buckets and then the stalest are forgotten.
    pub const MAX_CLIENTS: usize = 10_000;

    pub fn new(burst: u32, every: Duration) -> Self {
        Self {
            burst: f64::from(burst.max(1)),
            every: every.max(Duration::from_millis(1)),
            max_clients: Self::MAX_CLIENTS,
            table: Mutex::new(HashMap::new()),
            all_refilled_at: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// `at` as nanoseconds after `epoch` (saturating: a u64 holds 584 years).
    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    fn refilled(&self, bucket: Bucket, now: Instant) -> f64 {
        let gained =
            now.saturating_duration_since(bucket.at).as_secs_f64() / self.every.as_secs_f64();
        (bucket.tokens + gained).min(self.burst)
    }

    /// How long until a bucket holding `tokens` has a whole one again (at least a second, as
    /// Retry-After counts in seconds).
    fn wait(&self, tokens: f64) -> Duration {
        Duration::from_secs_f64(self.every.as_secs_f64() * (1.0 - tokens))
            .max(Duration::from_secs(1))
    }

    /// Spends one token of `ip`'s bucket; `Err(retry_after)` when it is empty.
    pub fn take(&self, ip: K) -> Result<(), Duration> {
        let now = Instant::now();
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let tokens = table
            .get(&ip)
            .map_or(self.burst, |b| self.refilled(*b, now));
        if tokens < 1.0 {
            return Err(self.wait(tokens));
        }
        let left = tokens - 1.0;
        table.insert(
            ip,
            Bucket {
                tokens: left,
                at: now,
            },
        );
        if left < 1.0 {
            // Under the lock, so no `check` can find this bucket empty while this moment says
            // every bucket is full.
            let whole_again = now + self.every.mul_f64(1.0 - left);
            self.all_refilled_at
                .fetch_max(self.nanos(whole_again), Ordering::AcqRel);
        }
        if table.len() > self.max_clients {
            self.forget(&mut table, now);
        }
        Ok(())
    }

    /// Whether `ip` has run out, without spending anything; `Err(retry_after)` if so.
    pub fn check(&self, ip: K) -> Result<(), Duration> {
        let now = Instant::now();
        if self.nanos(now) >= self.all_refilled_at.load(Ordering::Acquire) {
            return Ok(());
        }
        let table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        match table.get(&ip).map(|b| self.refilled(*b, now)) {
            Some(tokens) if tokens < 1.0 => Err(self.wait(tokens)),
            _ => Ok(()),
        }
    }

    /// Drops buckets that have refilled (they hold nothing), then the stalest, down to 90 %.
    fn forget(&self, table: &mut HashMap<K, Bucket>, now: Instant) {
        table.retain(|_, b| self.refilled(*b, now) < self.burst);
        let keep = self.max_clients * 9 / 10;
        if table.len() > keep {
            let mut ages: Vec<(Instant, K)> = table.iter().map(|(ip, b)| (b.at, *ip)).collect();
            ages.sort_unstable();
            for (_, ip) in ages.into_iter().take(table.len() - keep) {
                table.remove(&ip);
            }
        }
    }

    /// Addresses remembered right now.
    pub fn clients(&self) -> usize {
        self.table.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    #[cfg(test)]
    fn with_max_clients(mut self, max: usize) -> Self {
        self.max_clients = max;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn a_burst_passes_then_the_address_waits_and_others_do_not() {
        let throttle = Throttle::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            assert!(throttle.take(ip(1)).is_ok());
        }
        let wait = throttle.take(ip(1)).expect_err("the fourth waits");
        assert!(
            wait >= Duration::from_secs(1) && wait <= Duration::from_secs(60),
            "{wait:?}"
        );
        assert!(throttle.check(ip(1)).is_err());
        assert!(
            throttle.take(ip(2)).is_ok(),
            "another address is not affected"
        );
    }

    #[test]
    fn check_sees_an_empty_bucket_and_nobody_else_is_held() {
        let throttle = Throttle::new(2, Duration::from_secs(60));
        assert!(throttle.check(ip(1)).is_ok(), "nothing spent yet");
        assert!(throttle.take(ip(1)).is_ok());
        assert!(throttle.check(ip(1)).is_ok(), "one token left");
        assert!(throttle.take(ip(1)).is_ok());
        assert!(throttle.check(ip(1)).is_err(), "the bucket is empty");
        assert!(throttle.check(ip(2)).is_ok(), "another address is not held");
    }

    #[test]
    fn check_lets_an_address_go_once_its_bucket_refilled() {
        let throttle = Throttle::new(1, Duration::from_millis(20));
        assert!(throttle.take(ip(1)).is_ok());
        std::thread::sleep(Duration::from_millis(40));
        assert!(throttle.check(ip(1)).is_ok(), "a whole token came back");
        assert!(throttle.check(ip(2)).is_ok());
    }

    #[test]
    fn tokens_come_back_with_time() {
        let throttle = Throttle::new(1, Duration::from_millis(20));
        assert!(throttle.take(ip(1)).is_ok());
        assert!(throttle.take(ip(1)).is_err());
        std::thread::sleep(Duration::from_millis(40));
        assert!(throttle.take(ip(1)).is_ok());
    }

    #[test]
    fn a_flood_of_addresses_keeps_the_table_bounded() {
        let throttle = Throttle::new(2, Duration::from_secs(60)).with_max_clients(100);
        for n in 0..10_000 {
            let _ = throttle.take(ip(n));
        }
        assert!(throttle.clients() <= 100, "{}", throttle.clients());
    }
}
