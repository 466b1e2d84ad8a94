//! The gateway's Prometheus metrics: requests, failovers, latency it adds, upstream latency,
//! time to first token, tokens, breaker states, canaries and usage spikes.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
pub use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::exponential_buckets;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use crate::edge::PerEdge;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub upstream: String,
    /// ok, client_error, truncated, failed, cancelled.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailoverLabels {
    pub route: String,
    pub from: String,
    /// The cause code of the failure that moved the request on.
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteUpstreamLabels {
    pub route: String,
    pub upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub route: String,
    pub upstream: String,
    pub key: String,
    /// in (prompt) or out (completion).
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CanaryLabels {
    pub upstream: String,
    /// passed or failed.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KeyLabels {
    pub key: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    /// unauthorized, bad_request, unknown_model, too_large, slow_client.
    pub reason: &'static str,
}

fn latency_histogram() -> Histogram {
    // 25 µs .. ~3.4 s: the gateway's own overhead sits at the bottom, upstreams higher.
    Histogram::new(exponential_buckets(0.000_025, 2.5, 14))
}

fn upstream_histogram() -> Histogram {
    // 5 ms .. ~5 min.
    Histogram::new(exponential_buckets(0.005, 2.5, 13))
}

/// A histogram of durations that each edge thread observes into on cache lines of its own,
/// summed when scraped: no lock per observation (prometheus-client's histogram takes one), no
/// line passed between cores. Encoded as prometheus-client's own histogram is.
#[derive(Clone)]
pub struct Histogram {
    inner: Arc<HistogramInner>,
}

struct HistogramInner {
    /// Upper bounds in seconds, as encoded; `+Inf` is the bucket after the last.
    bounds: Box<[f64]>,
    /// The same bounds in nanoseconds, as observed.
    bounds_nanos: Box<[u64]>,
    shards: PerEdge<Observations>,
}

/// One edge thread's observations.
struct Observations {
    /// Per bucket (not cumulative), the last one `+Inf`.
    buckets: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// A histogram with the upper bounds `bounds` (seconds, increasing) and `+Inf`.
    pub fn new(bounds: impl IntoIterator<Item = f64>) -> Self {
        let bounds: Box<[f64]> = bounds.into_iter().collect();
        let bounds_nanos = bounds.iter().map(|b| (b * 1e9).round() as u64).collect();
        let buckets = bounds.len() + 1;
        Self {
            inner: Arc::new(HistogramInner {
                bounds,
                bounds_nanos,
                shards: PerEdge::new(|| Observations {
                    buckets: (0..buckets).map(|_| AtomicU64::new(0)).collect(),
                    sum_nanos: AtomicU64::new(0),
                }),
            }),
        }
    }

    pub fn observe(&self, took: Duration) {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        // The first bucket whose bound is at least the value: Prometheus' `le`.
        let bucket = self
            .inner
            .bounds_nanos
            .partition_point(|bound| *bound < nanos);
        let own = self.inner.shards.local();
        own.buckets[bucket].fetch_add(1, Relaxed);
        own.sum_nanos.fetch_add(nanos, Relaxed);
    }

    /// The sum in seconds, the count, and each bucket's own count with its upper bound.
    fn totals(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut buckets: Vec<(f64, u64)> = self
            .inner
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::MAX))
            .map(|bound| (bound, 0))
            .collect();
        let mut sum_nanos = 0u64;
        for shard in self.inner.shards.iter() {
            for ((_, count), observed) in buckets.iter_mut().zip(shard.buckets.iter()) {
                *count += observed.load(Relaxed);
            }
            sum_nanos = sum_nanos.wrapping_add(shard.sum_nanos.load(Relaxed));
        }
        let count = buckets.iter().map(|(_, n)| n).sum();
        (sum_nanos as f64 / 1e9, count, buckets)
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (sum, count, _) = self.totals();
        f.debug_struct("Histogram")
            .field("count", &count)
            .field("sum", &sum)
            .finish_non_exhaustive()
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.totals();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// A route's own handles.
#[derive(Clone, Debug)]
pub struct RouteMetrics {
    pub added_latency: Histogram,
    /// Requests no upstream could answer.
    pub failed: Counter,
}

/// One upstream's handles within one route.
#[derive(Debug)]
pub struct EntryMetrics {
    pub ok: Counter,
    pub client_error: Counter,
    pub truncated: Counter,
    pub cancelled: Counter,
    pub upstream_latency: Histogram,
    pub time_to_first_token: Histogram,
    /// (in, out) per gateway key, by position from key-1.
    pub tokens: Vec<(Counter, Counter)>,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub failovers: Family<FailoverLabels, Counter>,
    pub added_latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub upstream_latency: Family<RouteUpstreamLabels, Histogram, fn() -> Histogram>,
    pub time_to_first_token: Family<RouteUpstreamLabels, Histogram, fn() -> Histogram>,
    pub tokens: Family<TokenLabels, Counter>,
    pub breaker_state: Family<UpstreamLabels, Gauge>,
    pub upstream_share: Family<UpstreamLabels, Gauge>,
    pub canaries: Family<CanaryLabels, Counter>,
    pub canary_tokens: Family<UpstreamLabels, Counter>,
    pub usage_spike: Family<KeyLabels, Gauge>,
    pub rejected: Family<RejectLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "aiwatch_gateway_requests",
            "Requests answered, by route, the upstream that answered and the outcome",
            requests.clone(),
        );
        let failovers = Family::<FailoverLabels, Counter>::default();
        registry.register(
            "aiwatch_gateway_failovers",
            "Requests moved from an upstream to the next, by the cause of the failure",
            failovers.clone(),
        );
        let added_latency =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register(
            "aiwatch_gateway_added_latency_seconds",
            "Time a request spent in the gateway itself, upstream waits excluded",
            added_latency.clone(),
        );
        let upstream_latency =
            Family::<RouteUpstreamLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                upstream_histogram,
            );
        registry.register(
            "aiwatch_gateway_upstream_latency_seconds",
            "Time an upstream took to answer (whole body when not streamed, headers when streamed)",
            upstream_latency.clone(),
        );
        let time_to_first_token =
            Family::<RouteUpstreamLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                upstream_histogram,
            );
        registry.register(
            "aiwatch_gateway_time_to_first_token_seconds",
            "Time from sending a streamed request to its first token",
            time_to_first_token.clone(),
        );
        let tokens = Family::<TokenLabels, Counter>::default();
        registry.register(
            "aiwatch_gateway_tokens",
            "Tokens used, from the answers' usage, by gateway key and direction",
            tokens.clone(),
        );
        let breaker_state = Family::<UpstreamLabels, Gauge>::default();
        registry.register(
            "aiwatch_gateway_breaker_state",
            "Breaker state per upstream: 0 closed, 1 open, 2 validating, 3 ramping",
            breaker_state.clone(),
        );
        let upstream_share = Family::<UpstreamLabels, Gauge>::default();
        registry.register(
            "aiwatch_gateway_upstream_share_percent",
            "Percent of its configured share an upstream takes now",
            upstream_share.clone(),
        );
        let canaries = Family::<CanaryLabels, Counter>::default();
        registry.register(
            "aiwatch_gateway_canaries",
            "Validation canaries run against tripped upstreams",
            canaries.clone(),
        );
        let canary_tokens = Family::<UpstreamLabels, Counter>::default();
        registry.register(
            "aiwatch_gateway_canary_tokens",
            "Tokens canaries spent (at most, as budgeted)",
            canary_tokens.clone(),
        );
        let usage_spike = Family::<KeyLabels, Gauge>::default();
        registry.register(
            "aiwatch_gateway_usage_spike",
            "1 while a gateway key's tokens per minute are far above its normal",
            usage_spike.clone(),
        );
        let rejected = Family::<RejectLabels, Counter>::default();
        registry.register(
            "aiwatch_gateway_rejected",
            "Requests refused before any upstream was asked",
            rejected.clone(),
        );
        Self {
            registry,
            requests,
            failovers,
            added_latency,
            upstream_latency,
            time_to_first_token,
            tokens,
            breaker_state,
            upstream_share,
            canaries,
            canary_tokens,
            usage_spike,
            rejected,
        }
    }

    pub fn reject(&self, reason: &'static str) {
        self.rejected.get_or_create(&RejectLabels { reason }).inc();
    }

    /// The handles one route's requests update, made once so a request allocates no labels.
    pub fn route(&self, route: &str) -> RouteMetrics {
        RouteMetrics {
            added_latency: self
                .added_latency
                .get_or_create(&RouteLabels {
                    route: route.to_owned(),
                })
                .clone(),
            failed: self
                .requests
                .get_or_create(&RequestLabels {
                    route: route.to_owned(),
                    upstream: "none".to_owned(),
                    outcome: "failed",
                })
                .clone(),
        }
    }

    /// The handles of one upstream within one route, with token counters per gateway key.
    /// `per_key`: one token series per gateway key; otherwise every key shares `key="all"`.
    pub fn entry(&self, route: &str, upstream: &str, keys: usize, per_key: bool) -> EntryMetrics {
        let outcome = |outcome: &'static str| {
            self.requests
                .get_or_create(&RequestLabels {
                    route: route.to_owned(),
                    upstream: upstream.to_owned(),
                    outcome,
                })
                .clone()
        };
        let labels = RouteUpstreamLabels {
            route: route.to_owned(),
            upstream: upstream.to_owned(),
        };
        let tokens = (1..=keys)
            .map(|k| {
                let counter = |direction: &'static str| {
                    self.tokens
                        .get_or_create(&TokenLabels {
                            route: route.to_owned(),
                            upstream: upstream.to_owned(),
                            key: if per_key {
                                format!("key-{k}")
                            } else {
                                "all".to_owned()
                            },
                            direction,
                        })
                        .clone()
                };
                (counter("in"), counter("out"))
            })
            .collect();
        EntryMetrics {
            ok: outcome("ok"),
            client_error: outcome("client_error"),
            truncated: outcome("truncated"),
            cancelled: outcome("cancelled"),
            upstream_latency: self.upstream_latency.get_or_create(&labels).clone(),
            time_to_first_token: self.time_to_first_token.get_or_create(&labels).clone(),
            tokens,
        }
    }

    /// The usage-spike gauge of each gateway key, by position; unpublished (kept for
    /// `/admin/usage` only) when the metrics are not per key.
    pub fn spike_gauges(&self, keys: usize, per_key: bool) -> Vec<Gauge> {
        if !per_key {
            return (0..keys).map(|_| Gauge::default()).collect();
        }
        (1..=keys)
            .map(|k| {
                self.usage_spike
                    .get_or_create(&KeyLabels {
                        key: format!("key-{k}"),
                    })
                    .clone()
            })
            .collect()
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut open_metrics = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut open_metrics, &self.registry);
        aiwatch_core::prometheus_text::from_open_metrics(&open_metrics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text exposition of one histogram registered as `name`.
    fn exposition(
        name: &str,
        metric: impl EncodeMetric + Send + Sync + std::fmt::Debug + 'static,
    ) -> String {
        let mut registry = Registry::default();
        registry.register(name, "test", metric);
        let mut text = String::new();
        encode(&mut text, &registry).expect("encodes");
        text
    }

    #[test]
    fn observations_from_every_edge_thread_encode_as_prometheus_clients_own_histogram_would() {
        let bounds = || exponential_buckets(0.000_025, 2.5, 14);
        let ours = Histogram::new(bounds());
        let theirs = prometheus_client::metrics::histogram::Histogram::new(bounds());
        // Values on a bound, between bounds, below the first and past the last; whole
        // microseconds, so the sums agree exactly in both.
        let values: Vec<Duration> = [0u64, 25, 26, 62, 63, 1_000, 999_999, 4_000_000_000]
            .iter()
            .map(|micros| Duration::from_micros(*micros))
            .collect();
        crate::edge::on_every_edge_thread(|| {
            for value in &values {
                ours.observe(*value);
            }
        });
        for _ in 0..crate::edge::edge_threads() {
            for value in &values {
                theirs.observe(value.as_secs_f64());
            }
        }
        let (ours, theirs) = (exposition("x", ours), exposition("x", theirs));
        // The sums are the same number, written from nanoseconds or added as floats.
        let without_sum = |text: &str| -> String {
            text.lines()
                .filter(|l| !l.starts_with("x_sum"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(without_sum(&ours), without_sum(&theirs));
        let sum = |text: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix("x_sum "))
                .and_then(|v| v.parse().ok())
                .expect("a sum")
        };
        assert!((sum(&ours) - sum(&theirs)).abs() < 1e-6, "{ours}\n{theirs}");
        assert!(ours.contains("x_bucket{le=\"+Inf\"}"), "{ours}");
    }
}
