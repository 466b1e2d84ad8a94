//! Usage accounting: requests and tokens per gateway key and upstream, taken from each
//! answer's `usage`, and a spike flag per key when its tokens per minute leave their normal.

use std::collections::{BTreeMap, VecDeque};

use aiwatch_core::spike::{baseline, exceeds, Spike, SpikeRule};
use serde::Serialize;

use crate::auth::KeyLabel;

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

#[derive(Debug, Default)]
struct KeyMinutes {
    /// (minute, tokens) for the minutes that saw traffic, oldest first.
    minutes: VecDeque<(u64, u64)>,
    /// The baseline of the earlier minutes, computed once per minute.
    baseline: Option<(u64, Option<f64>)>,
}

impl KeyMinutes {
    fn add(&mut self, minute: u64, tokens: u64) {
        match self.minutes.back_mut() {
            Some((m, t)) if *m == minute => *t = t.saturating_add(tokens),
            _ => self.minutes.push_back((minute, tokens)),
        }
        while self
            .minutes
            .front()
            .is_some_and(|(m, _)| minute.saturating_sub(*m) > HISTORY_MINUTES as u64)
        {
            self.minutes.pop_front();
        }
    }

    /// A spike at `minute`, judging this minute's tokens against the earlier ones.
    fn spike(&mut self, minute: u64, rule: &SpikeRule) -> Option<Spike> {
        let base = match self.baseline {
            Some((at, base)) if at == minute => base,
            _ => {
                let (history, _) = self.history(minute);
                let base = baseline(&history, rule);
                self.baseline = Some((minute, base));
                base
            }
        };
        let current = self
            .minutes
            .back()
            .filter(|(m, _)| *m == minute)
            .map_or(0, |(_, t)| *t);
        exceeds(base?, current as f64, rule)
    }

    /// Earlier minutes (quiet ones count as 0) and the current one.
    fn history(&self, minute: u64) -> (Vec<f64>, f64) {
        let first = self.minutes.front().map_or(minute, |(m, _)| *m);
        let start = first.max(minute.saturating_sub(HISTORY_MINUTES as u64));
        let mut history = Vec::new();
        for m in start..minute {
            let tokens = self
                .minutes
                .iter()
                .find(|(at, _)| *at == m)
                .map_or(0, |(_, t)| *t);
            history.push(tokens as f64);
        }
        let current = self
            .minutes
            .back()
            .filter(|(m, _)| *m == minute)
            .map_or(0, |(_, t)| *t);
        (history, current as f64)
    }
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

/// The ledger of everything served.
#[derive(Debug)]
pub struct Ledger {
    rule: SpikeRule,
    /// Per key, per upstream.
    totals: BTreeMap<KeyLabel, BTreeMap<String, Totals>>,
    minutes: BTreeMap<KeyLabel, KeyMinutes>,
}

impl Ledger {
    pub fn new(rule: SpikeRule) -> Self {
        Self {
            rule,
            totals: BTreeMap::new(),
            minutes: BTreeMap::new(),
        }
    }

    /// Records one answer; returns a spike if this key is now spiking.
    pub fn record(
        &mut self,
        key: KeyLabel,
        upstream: &str,
        tokens: Option<Tokens>,
        minute: u64,
    ) -> Option<Spike> {
        let of_key = self.totals.entry(key).or_default();
        // Looked up by reference first: the upstream's name is copied only the first time.
        if !of_key.contains_key(upstream) {
            of_key.insert(upstream.to_owned(), Totals::default());
        }
        let totals = of_key.get_mut(upstream)?;
        totals.requests += 1;
        match tokens {
            Some(t) => {
                totals.prompt_tokens = totals.prompt_tokens.saturating_add(t.prompt);
                totals.completion_tokens = totals.completion_tokens.saturating_add(t.completion);
            }
            None => totals.without_usage += 1,
        }
        let minutes = self.minutes.entry(key).or_default();
        minutes.add(minute, tokens.map_or(0, Tokens::total));
        minutes.spike(minute, &self.rule)
    }

    /// Every key's totals and spike state at `minute`.
    pub fn report(&self, minute: u64) -> Vec<KeyUsage> {
        let mut out: BTreeMap<KeyLabel, KeyUsage> = BTreeMap::new();
        for (key, upstream, totals) in self
            .totals
            .iter()
            .flat_map(|(k, ups)| ups.iter().map(move |(u, t)| (k, u, t)))
        {
            let entry = out.entry(*key).or_insert_with(|| {
                let (history, current) = self
                    .minutes
                    .get(key)
                    .map_or((Vec::new(), 0.0), |m| m.history(minute));
                KeyUsage {
                    key: key.to_string(),
                    upstreams: BTreeMap::new(),
                    tokens_this_minute: current as u64,
                    spike: baseline(&history, &self.rule)
                        .and_then(|b| exceeds(b, current, &self.rule)),
                }
            });
            entry.upstreams.insert(upstream.clone(), totals.clone());
        }
        out.into_values().collect()
    }

    /// The keys spiking at `minute`, as the `usage_spike` alerts read them: each since the
    /// start of the wall-clock minute `now` is in.
    pub fn alert_spikes(
        &self,
        minute: u64,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Vec<aiwatch_core::alert_rules::UsageSpike> {
        let since = now - chrono::Duration::seconds(now.timestamp().rem_euclid(60));
        self.report(minute)
            .into_iter()
            .filter_map(|usage| {
                let spike = usage.spike?;
                Some(aiwatch_core::alert_rules::UsageSpike {
                    summary: format!(
                        "gateway key {} used {:.0} tokens this minute, {:.1}× its normal of {:.0} (a leaked key or a runaway script?)",
                        usage.key,
                        spike.current,
                        spike.ratio(),
                        spike.baseline
                    ),
                    label: usage.key,
                    since,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger() -> Ledger {
        Ledger::new(SpikeRule {
            factor: 10.0,
            min_increase: 1_000.0,
            min_history: 5,
        })
    }

    fn tokens(total: u64) -> Option<Tokens> {
        Some(Tokens {
            prompt: total / 2,
            completion: total - total / 2,
        })
    }

    #[test]
    fn totals_are_kept_per_key_and_upstream() {
        let mut l = ledger();
        l.record(KeyLabel(1), "openai-api:gpt-4o-mini", tokens(30), 0);
        l.record(KeyLabel(1), "openai-api:gpt-4o-mini", None, 0);
        l.record(KeyLabel(2), "ollama:llama3.2", tokens(10), 0);
        let report = l.report(0);
        assert_eq!(report.len(), 2);
        let first = &report[0].upstreams["openai-api:gpt-4o-mini"];
        assert_eq!(first.requests, 2);
        assert_eq!(first.without_usage, 1);
        assert_eq!(first.prompt_tokens + first.completion_tokens, 30);
    }

    #[test]
    fn a_runaway_key_is_flagged_and_a_steady_one_is_not() {
        let mut l = ledger();
        for minute in 0..20 {
            assert!(l.record(KeyLabel(1), "up", tokens(500), minute).is_none());
            assert!(l.record(KeyLabel(2), "up", tokens(500), minute).is_none());
        }
        let mut spike = None;
        for _ in 0..100 {
            spike = l.record(KeyLabel(1), "up", tokens(500), 20);
        }
        let spike = spike.expect("key-1 spikes");
        assert_eq!(spike.baseline, 500.0);
        let report = l.report(20);
        assert!(report[0].spike.is_some());
        assert!(report[1].spike.is_none());
    }

    #[test]
    fn a_spiking_key_becomes_one_usage_spike_for_the_alerts_naming_its_label_never_its_key() {
        let mut l = ledger();
        for minute in 0..10 {
            l.record(KeyLabel(1), "up", tokens(500), minute);
            l.record(KeyLabel(2), "up", tokens(500), minute);
        }
        for _ in 0..30 {
            l.record(KeyLabel(2), "up", tokens(500), 10);
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
        let mut l = ledger();
        l.record(KeyLabel(1), "up", tokens(100), 0);
        for _ in 0..3 {
            l.record(KeyLabel(1), "up", tokens(1_000), 30);
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
