//! The daemon's Prometheus metrics: service states, probe latencies by phase, results by cause,
//! schedule drift, store writes — and their text exposition.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aiwatch_core::Status;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub service: String,
    pub component: String,
    pub region: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceStatusLabels {
    pub service: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub service: String,
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub service: String,
    pub component: String,
    pub cause: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    pub service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegionLabels {
    pub region: String,
}

fn latency_histogram() -> Histogram {
    // 1 ms … ~33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Every metric the daemon exports.
pub struct Metrics {
    registry: Registry,
    pub state: Family<StateLabels, Gauge>,
    pub service_status: Family<ServiceStatusLabels, Gauge>,
    pub monitor_blind: Family<ServiceLabels, Gauge>,
    pub phase_seconds: Family<PhaseLabels, Histogram, fn() -> Histogram>,
    pub results: Family<ResultLabels, Counter>,
    pub drift_seconds: Histogram,
    pub skipped: Counter,
    pub store_write_seconds: Histogram,
    pub stored: Counter,
    /// Store writes that failed (each is retried until the retry buffer is full).
    pub store_write_failures: Counter,
    /// Observations given up after the retry buffer filled while the store kept failing.
    pub store_dropped: Counter,
    /// Work waiting for the store writer.
    pub store_queue_depth: Gauge,
    pub open_incidents: Gauge,
    pub canaries: Family<ServiceLabels, Counter>,
    pub control_up: Gauge,
    /// Alert delivery attempts by outcome (`sent`, `retry`, `dead`).
    pub alert_attempts: Family<OutcomeLabels, Counter>,
    /// Deliveries waiting in the outbox (set at scrape).
    pub alerts_pending: Gauge,
    /// How late each official page acknowledged what aiwatch saw first (90 days).
    pub official_lag: Family<LagLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Problem reports' level per service: 0 none, 1 possible, 2 likely.
    pub crowd_level: Family<ServiceLabels, Gauge>,
    /// Observations stored from agents' pushes.
    pub agent_observations: Counter,
    /// Checks this instance holds when several share one database.
    pub checks_held: Gauge,
    /// Per declared agent region: 1 heard from within the grace period, 0 silent (at scrape).
    pub agent_connected: Family<RegionLabels, Gauge>,
    /// Per-service phase histograms, or one series per phase (`service="all"`) when the daemon
    /// watches more services than [`PER_SERVICE_HISTOGRAMS_UP_TO`].
    per_service_phases: bool,
    /// Worst drift seen since start, in microseconds.
    max_drift_us: AtomicU64,
    pub max_drift_seconds: Gauge<f64, AtomicU64>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LagLabels {
    pub service: String,
    pub quantile: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

/// Above this many services, phase histograms are aggregated across services: 10,000
/// services × 5 phases × 18 lines would make every scrape tens of megabytes.
pub const PER_SERVICE_HISTOGRAMS_UP_TO: usize = 200;

impl Default for Metrics {
    fn default() -> Self {
        Self::new(0)
    }
}

impl Metrics {
    /// Metrics for a daemon watching `services` services.
    pub fn new(services: usize) -> Self {
        let mut registry = Registry::with_prefix("aiwatch");
        let state = Family::<StateLabels, Gauge>::default();
        registry.register(
            "service_state",
            "The core's status per service, component and region (1 for the current state, 0 for the others)",
            state.clone(),
        );
        let service_status = Family::<ServiceStatusLabels, Gauge>::default();
        registry.register(
            "service_status",
            "The core's status of each service, as every surface shows it: one series per service, labelled with its current status",
            service_status.clone(),
        );
        let monitor_blind = Family::<ServiceLabels, Gauge>::default();
        registry.register(
            "monitor_blind",
            "1 while the monitor cannot see the service from its own vantage point (its DNS, firewall, proxy, or connection): the monitor's trouble, not the provider's",
            monitor_blind.clone(),
        );
        let phase_seconds =
            Family::<PhaseLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register(
            "probe_phase_seconds",
            "Probe latency by phase (dns, connect, tls, first_byte, total); per service up to 200 services, else service=\"all\"",
            phase_seconds.clone(),
        );
        let results = Family::<ResultLabels, Counter>::default();
        registry.register(
            "probe_results",
            "Probe results by cause code",
            results.clone(),
        );
        let drift_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        registry.register(
            "schedule_drift_seconds",
            "How late scheduled checks started",
            drift_seconds.clone(),
        );
        let max_drift_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "schedule_drift_max_seconds",
            "The latest start of any scheduled check since the daemon started",
            max_drift_seconds.clone(),
        );
        let skipped = Counter::default();
        registry.register(
            "schedule_skipped",
            "Runs skipped because the previous run of the same check was still going",
            skipped.clone(),
        );
        let store_write_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "store_write_seconds",
            "Latency of one batch write to the store",
            store_write_seconds.clone(),
        );
        let stored = Counter::default();
        registry.register(
            "store_observations",
            "Observations written to the store",
            stored.clone(),
        );
        let store_write_failures = Counter::default();
        registry.register(
            "store_write_failures",
            "Store writes that failed; the data is kept and retried",
            store_write_failures.clone(),
        );
        let store_dropped = Counter::default();
        registry.register(
            "store_dropped_observations",
            "Observations given up because the store kept failing and the retry buffer was full",
            store_dropped.clone(),
        );
        let store_queue_depth = Gauge::default();
        registry.register(
            "store_queue_depth",
            "Writes waiting for the store writer",
            store_queue_depth.clone(),
        );
        let open_incidents = Gauge::default();
        registry.register(
            "open_incidents",
            "Incidents currently open",
            open_incidents.clone(),
        );
        let canaries = Family::<ServiceLabels, Counter>::default();
        registry.register(
            "canary_checks",
            "Recovery-validation canaries sent (each at most a few tokens)",
            canaries.clone(),
        );
        let control_up = Gauge::default();
        registry.register(
            "control_up",
            "1 when the monitor's own connection works (control probe), 0 when it does not",
            control_up.clone(),
        );
        let alert_attempts = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "alert_delivery_attempts",
            "Alert delivery attempts by outcome: sent (accepted), retry (will try again), dead (given up)",
            alert_attempts.clone(),
        );
        let alerts_pending = Gauge::default();
        registry.register(
            "alerts_pending",
            "Alert deliveries waiting in the outbox",
            alerts_pending.clone(),
        );
        let official_lag = Family::<LagLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "official_lag_seconds",
            "How long after aiwatch's own probes the official page acknowledged incidents (last 90 days; quantile 0.5 and 0.9)",
            official_lag.clone(),
        );
        let crowd_level = Family::<ServiceLabels, Gauge>::default();
        registry.register(
            "crowd_level",
            "Problem reports compared with the usual: 0 none, 1 possible problems, 2 likely problems",
            crowd_level.clone(),
        );
        let agent_observations = Counter::default();
        registry.register(
            "agent_observations",
            "Observations stored from agents' pushes",
            agent_observations.clone(),
        );
        let checks_held = Gauge::default();
        registry.register(
            "checks_held",
            "Checks this instance runs when several instances share one database (leases)",
            checks_held.clone(),
        );
        let agent_connected = Family::<RegionLabels, Gauge>::default();
        registry.register(
            "agent_connected",
            "Per agent region: 1 heard from within the grace period, 0 silent or never seen",
            agent_connected.clone(),
        );
        Self {
            registry,
            state,
            service_status,
            monitor_blind,
            phase_seconds,
            results,
            drift_seconds,
            skipped,
            store_write_seconds,
            stored,
            store_write_failures,
            store_dropped,
            store_queue_depth,
            open_incidents,
            canaries,
            control_up,
            alert_attempts,
            alerts_pending,
            official_lag,
            crowd_level,
            agent_observations,
            checks_held,
            agent_connected,
            per_service_phases: services <= PER_SERVICE_HISTOGRAMS_UP_TO,
            max_drift_us: AtomicU64::new(0),
            max_drift_seconds,
        }
    }

    pub fn record_drift(&self, drift: Duration) {
        self.drift_seconds.observe(drift.as_secs_f64());
        let us = u64::try_from(drift.as_micros()).unwrap_or(u64::MAX);
        let before = self.max_drift_us.fetch_max(us, Ordering::Relaxed);
        if us > before {
            self.max_drift_seconds.set(drift.as_secs_f64());
        }
    }

    pub fn max_drift(&self) -> Duration {
        Duration::from_micros(self.max_drift_us.load(Ordering::Relaxed))
    }

    /// Records one phase duration of one probe.
    pub fn observe_phase(&self, service: &str, phase: &str, duration: Duration) {
        let service = if self.per_service_phases {
            service
        } else {
            "all"
        };
        self.phase_seconds
            .get_or_create(&PhaseLabels {
                service: service.to_owned(),
                phase: phase.to_owned(),
            })
            .observe(duration.as_secs_f64());
    }

    /// Sets the one-hot state gauges of a key to the core's status.
    pub fn set_state(&self, service: &str, component: &str, region: &str, current: Status) {
        for state in Status::ALL {
            self.state
                .get_or_create(&StateLabels {
                    service: service.to_owned(),
                    component: component.to_owned(),
                    region: region.to_owned(),
                    state: state.as_str().to_owned(),
                })
                .set(i64::from(state == current));
        }
    }

    /// Sets a service's status gauge — one series, `status` = the current status, value 1; the
    /// series of its previous status is removed, so 10,000 services cost 10,000 series, not
    /// 60,000 — and whether the monitor can see it.
    pub fn set_service(&self, service: &str, current: Status, monitor_blind: bool) {
        for state in Status::ALL {
            let labels = ServiceStatusLabels {
                service: service.to_owned(),
                status: state.as_str().to_owned(),
            };
            if state == current {
                self.service_status.get_or_create(&labels).set(1);
            } else {
                self.service_status.remove(&labels);
            }
        }
        self.monitor_blind
            .get_or_create(&ServiceLabels {
                service: service.to_owned(),
            })
            .set(i64::from(monitor_blind));
    }

    /// The Prometheus text exposition (format 0.0.4, which every scraper and `promtool`
    /// read): the OpenMetrics encoding with counter families named after their `_total`
    /// samples and without the OpenMetrics-only `# EOF` / `# UNIT` lines.
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

    #[test]
    fn counters_are_named_after_their_total_samples() {
        let metrics = Metrics::new(1);
        metrics.skipped.inc();
        let text = metrics.encode();
        assert!(
            text.contains("# TYPE aiwatch_schedule_skipped_total counter"),
            "{text}"
        );
        assert!(
            text.contains("# HELP aiwatch_schedule_skipped_total "),
            "{text}"
        );
        assert!(text.contains("aiwatch_schedule_skipped_total 1"), "{text}");
        assert!(!text.contains("# EOF"));
    }
}

#[cfg(test)]
mod status_series_tests {
    use super::*;

    #[test]
    fn a_status_change_replaces_the_services_status_series() {
        let metrics = Metrics::new(1);
        metrics.set_service("x", Status::Outage, false);
        metrics.set_service("x", Status::Operational, false);
        let text = metrics.encode();
        assert!(
            text.contains("aiwatch_service_status{service=\"x\",status=\"operational\"} 1"),
            "{text}"
        );
        assert!(!text.contains("status=\"outage\""), "{text}");
    }
}
