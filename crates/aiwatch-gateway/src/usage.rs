//! Usage accounting: requests and tokens per gateway key and upstream, taken from each
//! answer's `usage`, and a spike flag per key when its tokens per minute leave their normal.
//! Recorded per edge thread without a lock; summed and judged when read.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use aiwatch_core::spike::{baseline, exceeds, Spike, SpikeRule};
use serde::Serialize;

use crate::auth::KeyLabel;
use crate::edge::PerEdge;

/// Minutes of per-key history the spike baseline looks at.
const HISTORY_MINUTES: usize = 60;

/// Tokens one answer used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tokens {
    pub prompt: u64,
    pub completion: u64,
}

impl Tokens {
    /// Reads an OpenAI-shaped `usage` object (`prompt_tokens`, `completion_tokens`).
    pub fn from_usage(usage: &serde_json::Value) -> Option<Tokens> {
        let get = |k: &str| usage.get(k).and_then(serde_json::Value::as_u64);
        let prompt = get("prompt_tokens");
        let completion = get("completion_tokens");
        if prompt.is_none() && completion.is_none() {
            return None;
        }
        Some(Tokens {
            prompt: prompt.unwrap_or(0),
            completion: completion.unwrap_or(0),
        })
    }

    pub fn total(self) -> u64 {
        self.prompt.saturating_add(self.completion)
    }
}

/// Totals of one key at one upstream.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub requests: u64,
    /// Answers that came without a `usage` object.
    pub without_usage: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// Slots of the per-minute ring: more than the history and the current minute, so a slot in
/// the window is only ever reused by a minute after it.
const RING: usize = 64;
/// A ring slot holds `(minute + 1) << TOKEN_BITS | tokens`: one atomic word, so writers on
/// one slot never need a lock; 0 is a slot no minute used.
const TOKEN_BITS: u32 = 40;
const TOKEN_MASK: u64 = (1 << TOKEN_BITS) - 1;

/// One edge thread's counts.
struct Shard {
    /// By `key * upstreams + upstream`.
    totals: Box<[TotalsCell]>,
    /// Tokens per minute, by key.
    minutes: Box<[[AtomicU64; RING]]>,
}

#[derive(Default)]
struct TotalsCell {
    requests: AtomicU64,
    without_usage: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
}

/// One key's line in the usage report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KeyUsage {
    pub key: String,
    pub upstreams: BTreeMap<String, Totals>,
    pub tokens_this_minute: u64,
    /// Set when this minute's tokens are far above the key's normal: a leaked key or a
    /// runaway script.
    pub spike: Option<Spike>,
}

/// The ledger of everything served: requests and tokens per gateway key and upstream, and
/// tokens per key and minute. Each edge thread records into counts of its own (atomics no
/// other core writes, see [`PerEdge`]), and a read sums them: an answer is recorded without a
/// lock and without passing a cache line between cores. Spikes are judged when read.
#[derive(Debug)]
pub struct Ledger {
    rule: SpikeRule,
    /// The upstreams' ids, by position.
    upstreams: Box<[String]>,
    /// Key slots: every [`KeyLabel`] the gateway gives (1 to the number of keys) has one.
    keys: usize,
    shards: PerEdge<Shard>,
}

impl Ledger {
    /// A ledger for key labels up to `keys` and the upstreams `upstreams` names, by position.
    pub fn new(rule: SpikeRule, keys: usize, upstreams: Vec<String>) -> Self {
        let slots = keys + 1;
        let cells = slots * upstreams.len();
        Self {
            rule,
            keys: slots,
            shards: PerEdge::new(|| Shard {
                totals: (0..cells).map(|_| TotalsCell::default()).collect(),
                minutes: (0..slots)
                    .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                    .collect(),
            }),
            upstreams: upstreams.into_boxed_slice(),
        }
    }

    /// Records one answer of upstream number `upstream` to `key`, at `minute`.
    pub fn record(&self, key: KeyLabel, upstream: usize, tokens: Option<Tokens>, minute: u64) {
        if key.0 >= self.keys || upstream >= self.upstreams.len() {
            return;
        }
        let shard = self.shards.local();
        let cell = &shard.totals[key.0 * self.upstreams.len() + upstream];
        cell.requests.fetch_add(1, Relaxed);
        match tokens {
            Some(t) => {
                cell.prompt_tokens.fetch_add(t.prompt, Relaxed);
                cell.completion_tokens.fetch_add(t.completion, Relaxed);
            }
            None => {
                cell.without_usage.fetch_add(1, Relaxed);
            }
        }
        let slot = &shard.minutes[key.0][(minute % RING as u64) as usize];
        let stamp = (minute + 1) << TOKEN_BITS;
        let tokens = tokens.map_or(0, Tokens::total);
        let _ = slot.fetch_update(Relaxed, Relaxed, |word| {
            let before = if word & !TOKEN_MASK == stamp {
                word & TOKEN_MASK
            } else {
                0
            };
            Some(stamp | before.saturating_add(tokens).min(TOKEN_MASK))
        });
    }

    /// `key`'s tokens in `minute`, or `None` if it had no answer then (or the minute is out of
    /// the ring).
    fn tokens_in(&self, key: usize, minute: u64) -> Option<u64> {
        let stamp = (minute + 1) << TOKEN_BITS;
        let mut seen = None;
        for shard in self.shards.iter() {
            let word = shard.minutes[key][(minute % RING as u64) as usize].load(Relaxed);
            if word & !TOKEN_MASK == stamp {
                seen = Some(seen.unwrap_or(0u64).saturating_add(word & TOKEN_MASK));
            }
        }
        seen
    }

    /// `key`'s earlier minutes (from its first answer, at most [`HISTORY_MINUTES`] back; quiet
    /// ones count as 0) and its current one.
    fn history(&self, key: usize, minute: u64) -> (Vec<f64>, f64) {
        let start = minute.saturating_sub(HISTORY_MINUTES as u64);
        let history = (start..minute)
            .map(|m| self.tokens_in(key, m))
            .skip_while(Option::is_none)
            .map(|tokens| tokens.unwrap_or(0) as f64)
            .collect();
        (history, self.tokens_in(key, minute).unwrap_or(0) as f64)
    }

    /// Whether `key`'s tokens are far above its normal at `minute`.
    pub fn spike(&self, key: KeyLabel, minute: u64) -> Option<Spike> {
        if key.0 >= self.keys {
            return None;
        }
        self.judge(key.0, minute).1
    }

    /// `key`'s tokens at `minute`, and whether they are far above its normal.
    fn judge(&self, key: usize, minute: u64) -> (f64, Option<Spike>) {
        let (history, current) = self.history(key, minute);
        let spike = baseline(&history, &self.rule).and_then(|b| exceeds(b, current, &self.rule));
        (current, spike)
    }

    /// Every key that was served: its totals per upstream and its spike state at `minute`.
    pub fn report(&self, minute: u64) -> Vec<KeyUsage> {
        let width = self.upstreams.len();
        (1..self.keys)
            .filter_map(|key| {
                let upstreams: BTreeMap<String, Totals> = self
                    .upstreams
                    .iter()
                    .enumerate()
                    .filter_map(|(upstream, id)| {
                        let mut totals = Totals::default();
                        for shard in self.shards.iter() {
                            let cell = &shard.totals[key * width + upstream];
                            totals.requests += cell.requests.load(Relaxed);
                            totals.without_usage += cell.without_usage.load(Relaxed);
                            totals.prompt_tokens += cell.prompt_tokens.load(Relaxed);
                            totals.completion_tokens += cell.completion_tokens.load(Relaxed);
                        }
                        (totals.requests > 0).then(|| (id.clone(), totals))
                    })
                    .collect();
                if upstreams.is_empty() {
                    return None;
                }
                let (current, spike) = self.judge(key, minute);
                Some(KeyUsage {
                    key: KeyLabel(key).to_string(),
                    upstreams,
                    tokens_this_minute: current as u64,
                    spike,
                })
            })
            .collect()
    }

    /// The keys spiking at `minute`, as the `usage_spike` alerts read them: each since the
    /// start of the wall-clock minute `now` is in.
    pub fn alert_spikes(
        &self,
        minute: u64,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Vec<aiwatch_core::alert_rules::UsageSpike> {
        let since = now - chrono::Duration::seconds(now.timestamp().rem_euclid(60));
        // A spike needs a history of tokens, so only served keys can have one: no totals needed.
        (1..self.keys)
            .filter_map(|key| {
                let spike = self.judge(key, minute).1?;
                let label = KeyLabel(key).to_string();
                Some(aiwatch_core::alert_rules::UsageSpike {
                    summary: format!(
                        "gateway key {label} used {:.0} tokens this minute, {:.1}× its normal of {:.0} (a leaked key or a runaway script?)",
                        spike.current,
                        spike.ratio(),
                        spike.baseline
                    ),
                    label,
                    since,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENAI: usize = 0;
    const OLLAMA: usize = 1;

    fn ledger() -> Ledger {
        Ledger::new(
            SpikeRule {
                factor: 10.0,
                min_increase: 1_000.0,
                min_history: 5,
            },
            2,
            vec!["openai-api:gpt-4o-mini".into(), "ollama:llama3.2".into()],
        )
    }

    fn tokens(total: u64) -> Option<Tokens> {
        Some(Tokens {
            prompt: total / 2,
            completion: total - total / 2,
        })
    }

    #[test]
    fn totals_are_kept_per_key_and_upstream() {
        let l = ledger();
        l.record(KeyLabel(1), OPENAI, tokens(30), 0);
        l.record(KeyLabel(1), OPENAI, None, 0);
        l.record(KeyLabel(2), OLLAMA, tokens(10), 0);
        let report = l.report(0);
        assert_eq!(report.len(), 2);
        assert_eq!(report[0].key, "key-1");
        assert_eq!(report[0].upstreams.len(), 1, "only upstreams that answered");
        let first = &report[0].upstreams["openai-api:gpt-4o-mini"];
        assert_eq!(first.requests, 2);
        assert_eq!(first.without_usage, 1);
        assert_eq!(first.prompt_tokens + first.completion_tokens, 30);
        assert_eq!(report[1].upstreams["ollama:llama3.2"].requests, 1);
    }

    #[test]
    fn answers_recorded_on_every_edge_thread_add_up_in_one_report() {
        let l = ledger();
        let threads = crate::edge::edge_threads();
        crate::edge::on_every_edge_thread(|| {
            for _ in 0..500 {
                l.record(KeyLabel(1), OPENAI, tokens(10), 7);
            }
        });
        let report = l.report(7);
        let totals = &report[0].upstreams["openai-api:gpt-4o-mini"];
        assert_eq!(totals.requests, 500 * threads as u64);
        assert_eq!(
            totals.prompt_tokens + totals.completion_tokens,
            5_000 * threads as u64
        );
        assert_eq!(report[0].tokens_this_minute, 5_000 * threads as u64);
    }

    #[test]
    fn unknown_keys_and_upstreams_are_ignored_rather_than_misfiled() {
        let l = ledger();
        l.record(KeyLabel(3), OPENAI, tokens(10), 0);
        l.record(KeyLabel(1), 2, tokens(10), 0);
        assert!(l.report(0).is_empty());
        assert!(l.spike(KeyLabel(9), 0).is_none());
    }

    #[test]
    fn a_runaway_key_is_flagged_and_a_steady_one_is_not() {
        let l = ledger();
        for minute in 0..20 {
            l.record(KeyLabel(1), OPENAI, tokens(500), minute);
            l.record(KeyLabel(2), OPENAI, tokens(500), minute);
            assert!(l.spike(KeyLabel(1), minute).is_none());
        }
        for _ in 0..100 {
            l.record(KeyLabel(1), OPENAI, tokens(500), 20);
        }
        let spike = l.spike(KeyLabel(1), 20).expect("key-1 spikes");
        assert_eq!(spike.baseline, 500.0);
        assert_eq!(spike.current, 50_000.0);
        assert!(l.spike(KeyLabel(2), 20).is_none());
        let report = l.report(20);
        assert!(report[0].spike.is_some());
        assert!(report[1].spike.is_none());
    }

    #[test]
    fn an_hour_old_minute_leaves_the_history_when_its_slot_comes_round_again() {
        let l = ledger();
        l.record(KeyLabel(1), OPENAI, tokens(7), 3);
        assert_eq!(
            l.history(1, 10),
            (vec![7.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], 0.0)
        );
        // Minute 3 + 64 shares minute 3's slot and replaces it.
        l.record(KeyLabel(1), OPENAI, tokens(5), 67);
        assert_eq!(l.tokens_in(1, 3), None);
        assert_eq!(l.tokens_in(1, 67), Some(5));
        // Beyond the hour, minute 3 is no longer history even while its slot is kept.
        l.record(KeyLabel(2), OPENAI, tokens(9), 3);
        assert_eq!(l.history(2, 70).0, Vec::<f64>::new());
    }

    #[test]
    fn a_spiking_key_becomes_one_usage_spike_for_the_alerts_naming_its_label_never_its_key() {
        let l = ledger();
        for minute in 0..10 {
            l.record(KeyLabel(1), OPENAI, tokens(500), minute);
            l.record(KeyLabel(2), OPENAI, tokens(500), minute);
        }
        for _ in 0..30 {
            l.record(KeyLabel(2), OPENAI, tokens(500), 10);
        }
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-07T10:15:42Z")
            .expect("a time")
            .to_utc();
        let spikes = l.alert_spikes(10, now);
        assert_eq!(spikes.len(), 1, "{spikes:?}");
        assert_eq!(spikes[0].label, "key-2");
        assert_eq!(spikes[0].since.to_rfc3339(), "2026-12-07T10:15:00+00:00");
        assert!(
            spikes[0].summary.contains("15000 tokens this minute"),
            "{}",
            spikes[0].summary
        );
        assert!(l.alert_spikes(11, now).is_empty(), "a quiet minute after");
    }

    #[test]
    fn quiet_minutes_count_as_zero_in_the_baseline() {
        let l = ledger();
        l.record(KeyLabel(1), OPENAI, tokens(100), 0);
        for _ in 0..3 {
            l.record(KeyLabel(1), OPENAI, tokens(1_000), 30);
        }
        assert!(
            l.report(30)[0].spike.is_some(),
            "29 quiet minutes make 3,000 unusual"
        );
    }

    #[test]
    fn usage_objects_are_read_leniently() {
        let usage =
            serde_json::json!({"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21});
        assert_eq!(
            Tokens::from_usage(&usage),
            Some(Tokens {
                prompt: 12,
                completion: 9
            })
        );
        assert_eq!(Tokens::from_usage(&serde_json::json!({"x": 1})), None);
        assert_eq!(
            Tokens::from_usage(&serde_json::json!({"prompt_tokens": 8, "total_tokens": 8})),
            Some(Tokens {
                prompt: 8,
                completion: 0
            })
        );
    }
}
