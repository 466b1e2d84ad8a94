//! Builds the running gateway from the config: its routes, one connection pool and breaker per
//! upstream, the key check, metrics and the usage ledger.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aiwatch_core::config::{Config, GatewayConfig};
use aiwatch_core::secret::ApiKey;
use aiwatch_core::service::{ServiceKind, ServiceName};
use aiwatch_core::spike::{Spike, SpikeRule};
use aiwatch_core::Catalog;
use aiwatch_probe::{CheckOptions, Checker};
use tokio::time::Instant;

use crate::auth::{ClientKeys, KeyLabel};
use crate::breaker::BreakerConfig;
use crate::connector::UpstreamConnector;
use crate::dialect::Adapter;
use crate::health::UpstreamHealth;
use crate::metrics::{EntryMetrics, Gauge, Metrics, RouteMetrics};
use crate::pool::UpstreamPool;
use crate::upstream::UpstreamState;
use crate::usage::Ledger;
use crate::Error;

/// The longest a connection (DNS, TCP, proxy, TLS) to an upstream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything the gateway is made of.
pub struct GatewaySetup {
    pub config: Config,
    pub catalog: Catalog,
    /// Upstream keys, read from the variables the services name.
    pub keys: HashMap<ServiceName, ApiKey>,
    /// The keys clients must present; with none, every request is refused.
    pub client_keys: ClientKeys,
    /// Resolver, proxies and extra roots, as for `check`.
    pub network: CheckOptions,
    /// The monitor's view, when the gateway runs inside `serve`.
    pub monitor: Option<tokio::sync::watch::Receiver<crate::health::MonitorView>>,
}

/// One upstream of a route, with the route's own weight and timeout for it.
#[derive(Clone, Debug)]
pub struct RouteEntry {
    pub upstream: usize,
    pub weight: u32,
    pub timeout: Duration,
    pub metrics: Arc<EntryMetrics>,
}

#[derive(Clone, Debug)]
pub struct RouteTable {
    pub alias: String,
    pub entries: Vec<RouteEntry>,
    pub metrics: RouteMetrics,
}

/// The running gateway, shared by every request.
pub struct Gateway {
    pub settings: GatewayConfig,
    pub routes: HashMap<String, RouteTable>,
    /// Aliases in config order, for `/v1/models`.
    pub aliases: Vec<String>,
    pub upstreams: Vec<UpstreamState>,
    pub client_keys: ClientKeys,
    /// Failed authentications per client address: a burst, then 429 with Retry-After.
    pub auth_failures: aiwatch_inbound::throttle::Throttle,
    pub metrics: Metrics,
    /// The usage-spike gauge of each gateway key, by position from key-1.
    pub spike_gauges: Vec<Gauge>,
    pub ledger: Ledger,
    /// Per-key request and token limits; `None` when none are configured (no lock taken).
    pub key_limits: Option<Mutex<crate::key_limits::Limiter>>,
    pub retry_budget: crate::budget::RetryBudget,
    pub started: Instant,
    /// The unix time at `started`, for `created` fields.
    pub started_unix: i64,
    pub checker: Checker,
    pub monitor: Option<tokio::sync::watch::Receiver<crate::health::MonitorView>>,
}

impl Gateway {
    pub fn new(setup: GatewaySetup) -> Result<Arc<Gateway>, Error> {
        let GatewaySetup {
            config,
            catalog,
            keys,
            client_keys,
            network,
            monitor,
        } = setup;
        let settings = config.gateway.clone().unwrap_or_default();
        if config.routes.is_empty() {
            return Err(Error::Setup(
                "the config has no [[route]]: the gateway would have nothing to serve; add one like\n\n[[route]]\nmodel = \"smart\"\nupstreams = [\"openai-api:gpt-4o-mini\", \"ollama:llama3.2\"]".into(),
            ));
        }
        let proxies = network.proxies.clone();
        let checker = Checker::new(network).map_err(|e| Error::Setup(e.to_string()))?;
        let breaker_config = BreakerConfig::from_gateway(&settings);
        let metrics = Metrics::new();
        let mut upstreams: Vec<UpstreamState> = Vec::new();
        let mut routes = HashMap::new();
        let mut aliases = Vec::new();
        for route in &config.routes {
            let mut entries = Vec::new();
            for up in &route.upstreams {
                let id = format!("{}:{}", up.service, up.model);
                let index = match upstreams.iter().position(|u| u.id == id) {
                    Some(i) => i,
                    None => {
                        let service = catalog
                            .get(up.service.as_str())
                            .map_err(|e| Error::Setup(e.to_string()))?
                            .clone();
                        if let Some(why) = no_api(&route.model, &service) {
                            return Err(Error::Setup(why));
                        }
                        let key = keys.get(&service.name).cloned();
                        if key.is_none() && !service.local {
                            if let Some(var) = &service.api_key_env {
                                tracing::warn!(upstream = %id, variable = %var, "no API key in the environment; the upstream will likely refuse requests");
                            }
                        }
                        let expected_ca = checker
                            .expected_verifier(&service)
                            .map_err(|e| Error::Setup(e.to_string()))?;
                        let connector = UpstreamConnector::new(
                            checker.context().clone(),
                            expected_ca.clone(),
                            key.is_some(),
                            CONNECT_TIMEOUT,
                        );
                        let pool = UpstreamPool::new(connector, service.api_base.as_deref());
                        let proxy_headers = crate::upstream::proxy_headers(&service, &proxies);
                        let adapter =
                            Adapter::for_service(&service, &up.model, key.as_ref(), &proxy_headers);
                        upstreams.push(UpstreamState {
                            health: UpstreamHealth::new(&id, breaker_config.clone()),
                            trace: crate::upstream::TraceValues::new(&id),
                            id,
                            adapter,
                            proxy_headers,
                            service,
                            model: up.model.clone(),
                            key,
                            timeout: up.timeout.unwrap_or(settings.upstream_timeout),
                            pool,
                            expected_ca,
                        });
                        upstreams.len() - 1
                    }
                };
                let timeout = up.timeout.unwrap_or(settings.upstream_timeout);
                upstreams[index].timeout = upstreams[index].timeout.min(timeout);
                entries.push(RouteEntry {
                    upstream: index,
                    weight: up.weight,
                    timeout,
                    metrics: Arc::new(metrics.entry(
                        &route.model,
                        &upstreams[index].id,
                        client_keys.len(),
                        settings.metrics_per_key,
                    )),
                });
            }
            aliases.push(route.model.clone());
            routes.insert(
                route.model.clone(),
                RouteTable {
                    alias: route.model.clone(),
                    entries,
                    metrics: metrics.route(&route.model),
                },
            );
        }
        let started_unix = chrono::Utc::now().timestamp();
        let spike_gauges = metrics.spike_gauges(client_keys.len(), settings.metrics_per_key);
        let limits = crate::key_limits::KeyLimits {
            requests_per_minute: settings.key_requests_per_minute,
            tokens_per_minute: settings.key_tokens_per_minute,
        };
        let key_limits = limits
            .any()
            .then(|| Mutex::new(crate::key_limits::Limiter::new(limits)));
        let ledger = Ledger::new(
            SpikeRule::default(),
            client_keys.len(),
            upstreams.iter().map(|up| up.id.clone()).collect(),
        );
        Ok(Arc::new(Gateway {
            spike_gauges,
            settings,
            routes,
            aliases,
            upstreams,
            client_keys,
            auth_failures: aiwatch_inbound::throttle::Throttle::new(
                crate::auth::FAILED_AUTH_BURST,
                crate::auth::FAILED_AUTH_REFILL,
            ),
            metrics,
            ledger,
            key_limits,
            retry_budget: crate::budget::RetryBudget::default(),
            started: Instant::now(),
            started_unix,
            checker,
            monitor,
        }))
    }

    /// Unix seconds now, from the gateway's monotonic clock.
    pub fn unix_now(&self) -> i64 {
        self.started_unix + self.started.elapsed().as_secs() as i64
    }

    /// Each gateway key's usage spike now (by position from key-1), with its
    /// `aiwatch_gateway_usage_spike` gauge set to match; a key whose gauge this raises is
    /// logged once, whichever judgement (the usage watch, a scrape) sees the spike first.
    pub fn judge_usage(&self) -> Vec<Option<Spike>> {
        self.judge_usage_at(self.minute())
    }

    /// [`judge_usage`](Self::judge_usage) at the ledger's `minute`.
    pub fn judge_usage_at(&self, minute: u64) -> Vec<Option<Spike>> {
        (1..=self.client_keys.len())
            .map(|key| {
                let spike = self.ledger.spike(KeyLabel(key), minute);
                let was = self
                    .spike_gauges
                    .get(key - 1)
                    .map(|gauge| gauge.set(i64::from(spike.is_some())));
                if let (Some(s), Some(0)) = (&spike, was) {
                    tracing::warn!(key = %KeyLabel(key), baseline = s.baseline, current = s.current, "usage spike: tokens per minute far above this key's normal");
                }
                spike
            })
            .collect()
    }

    /// Minutes since start, the usage ledger's clock.
    pub fn minute(&self) -> u64 {
        self.started.elapsed().as_secs() / 60
    }

    /// Close matches for an unknown alias.
    pub fn suggest(&self, alias: &str) -> Vec<String> {
        aiwatch_core::catalog::closest_names(alias, self.aliases.iter().map(String::as_str))
    }
}

/// Why the gateway cannot forward `route`'s traffic to `service` (a web page, or no API
/// base), if it cannot.
fn no_api(route: &str, service: &aiwatch_core::Service) -> Option<String> {
    (service.kind == ServiceKind::Http || service.api_base.is_none()).then(|| {
        format!(
            "route `{route}`: service `{}` has no API (kind http or no api_base); the gateway can only forward to an API",
            service.name
        )
    })
}

/// Every upstream of the config's routes the gateway would refuse at start-up, with why;
/// `aiwatch config check` reports them all at once.
pub fn unforwardable(config: &Config, catalog: &Catalog) -> Vec<String> {
    let mut found = Vec::new();
    for route in &config.routes {
        for up in &route.upstreams {
            if config
                .refused_services
                .iter()
                .any(|s| s == up.service.as_str())
            {
                continue; // its entry has an error of its own
            }
            let why = match catalog.get(up.service.as_str()) {
                Ok(service) => no_api(&route.model, service),
                Err(e) => Some(e.to_string()),
            };
            if let Some(why) = why.filter(|w| !found.contains(w)) {
                found.push(why);
            }
        }
    }
    found
}
