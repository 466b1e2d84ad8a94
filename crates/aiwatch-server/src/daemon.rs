//! Starts and stops the whole daemon: store writer, engine, scheduler, status poller and HTTP
//! server, all ended by one shutdown future with a grace period for in-flight work.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aiwatch_core::secret::ApiKey;
use aiwatch_core::{Service, ServiceName};
use aiwatch_probe::poller::{PollTarget, Poller, PollerOptions};
use aiwatch_probe::{CheckOptions, Checker};
use aiwatch_store::Store;
use chrono::Utc;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::engine::{Engine, EngineOptions, OfficialNow};
use crate::metrics::Metrics;
use crate::scheduler::{self, Job, Limits};
use crate::writer::Writer;
use crate::Error;

/// One alert delivery attempt's deadline.
const ALERT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the alert rules are asked about time-driven decisions.
const ALERT_TICK: Duration = Duration::from_secs(1);

/// Everything `serve` is made of.
pub struct DaemonConfig {
    pub services: Vec<Service>,
    pub check: CheckOptions,
    pub keys: HashMap<ServiceName, ApiKey>,
    pub store: Arc<dyn Store>,
    pub engine: EngineOptions,
    pub limits: Limits,
    /// What the API and dashboard listener allows its clients.
    pub http: aiwatch_inbound::Limits,
    /// Who may read the API, the metrics and the dashboard.
    pub access: crate::access::Access,
    pub retention: aiwatch_store::Retention,
    pub poll: PollerOptions,
    /// The configured alert channels, secrets resolved (empty: no alerting).
    pub alerts: Vec<aiwatch_alerts::Channel>,
    /// How deliveries are retried.
    pub alert_retry: aiwatch_alerts::RetryPolicy,
    /// The dashboard's address as people reach it, for the links in alerts.
    pub dashboard_url: String,
    /// The gateway's usage spikes, when it runs in this process.
    pub usage_spikes: Option<crate::alerting::UsageSource>,
    /// Public feeds read for posts about trouble (`[[feed]]`).
    pub feeds: Vec<aiwatch_core::config::FeedConfig>,
}

/// A running daemon's handles, for tests and the benchmark.
pub struct Running {
    pub engine: Arc<Engine>,
}

/// Runs the daemon on `listener` until `shutdown` resolves; then in-flight checks get the
/// scheduler's grace period, and the store is flushed before this returns.
pub async fn run(
    listener: TcpListener,
    config: DaemonConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    started: impl FnOnce(Running) + Send,
) -> Result<(), Error> {
    let metrics = Arc::new(Metrics::new(config.services.len()));
    let writer = Writer::start(config.store.clone(), metrics.clone(), config.retention);
    let checker = Checker::new(config.check.clone()).map_err(|e| Error::Setup(e.to_string()))?;
    let ctx = checker.context().clone();
    let engine = Arc::new(Engine::new(
        config.services,
        checker,
        config.keys,
        config.store.clone(),
        writer,
        metrics.clone(),
        config.engine.clone(),
    )?);

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    // Alerts: the rules resume from the outbox, the deliverer sends what is due (also what was
    // pending when the last run stopped), and a tick asks the rules about time-driven
    // decisions.
    let mut alert_tasks = Vec::new();
    if !config.alerts.is_empty() {
        let rules = aiwatch_core::alert_rules::AlertRules::new(
            config.alerts.iter().map(|c| c.config.clone()).collect(),
        );
        let deliverer = Arc::new(
            aiwatch_alerts::Deliverer::new(
                config.store.clone(),
                config.alerts,
                engine.checker().context().clone(),
                config.alert_retry,
                ALERT_ATTEMPT_TIMEOUT,
            )
            .with_observer({
                let metrics = metrics.clone();
                Box::new(move |outcome| {
                    let outcome = match outcome {
                        aiwatch_store::DeliveryOutcome::Sent { .. } => "sent",
                        aiwatch_store::DeliveryOutcome::Retry { .. } => "retry",
                        aiwatch_store::DeliveryOutcome::Dead { .. } => "dead",
                    };
                    metrics
                        .alert_attempts
                        .get_or_create(&crate::metrics::OutcomeLabels { outcome })
                        .inc();
                })
            }),
        );
        let alerting = Arc::new(crate::alerting::Alerting::new(
            rules,
            deliverer.clone(),
            config.dashboard_url,
            &*config.store,
            Utc::now(),
        )?);
        if let Some(source) = config.usage_spikes {
            alerting.set_usage_source(source);
        }
        engine.set_alerting(alerting);
        let rx = stop_rx.clone();
        alert_tasks.push(tokio::spawn(deliverer.run(stopped(rx))));
        let (engine, rx) = (engine.clone(), stop_rx.clone());
        alert_tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(ALERT_TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let stop = stopped(rx);
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    () = &mut stop => break,
                    _ = tick.tick() => engine.alert_tick().await,
                }
            }
        }));
    }

    // Official pages: one poller for every distinct page; each change updates the services it
    // covers, and a periodic tick notices pages that went stale without a poll.
    let poller = Arc::new(Poller::new(
        ctx,
        PollTarget::from_services(&engine.services),
        config.poll,
    ));
    let poll_task = {
        let poller = poller.clone();
        let rx = stop_rx.clone();
        tokio::spawn(async move { poller.run(stopped(rx)).await })
    };
    let official_task = {
        let (poller, engine, rx) = (poller.clone(), engine.clone(), stop_rx.clone());
        tokio::spawn(async move {
            let mut updates = poller.subscribe();
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            let stop = stopped(rx);
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    () = &mut stop => break,
                    changed = updates.changed() => if changed.is_err() { break },
                    _ = tick.tick() => {}
                }
                let now = poller.now();
                let states = poller.snapshot();
                for service in &engine.services {
                    let Some(source) = &service.status else {
                        continue;
                    };
                    let Some(state) = states.iter().find(|s| &s.source == source) else {
                        continue;
                    };
                    let official = OfficialNow {
                        view: state
                            .current(now)
                            .map(|page| page.view_for(&service.status_components)),
                        unavailable: state.unavailable_text(now),
                    };
                    engine.set_official(service, official, Utc::now()).await;
                }
            }
        })
    };

    // The crowd: each complete minute of problem reports goes into the detector.
    let crowd_task = {
        let (engine, rx) = (engine.clone(), stop_rx.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            let stop = stopped(rx);
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    () = &mut stop => break,
                    _ = tick.tick() => {
                        let engine = engine.clone();
                        let _ = tokio::task::spawn_blocking(move || {
                            let now = Utc::now();
                            if engine.crowd.tick(&*engine.store, now) {
                                engine.apply_crowd();
                                let names: Vec<_> =
                                    engine.services.iter().map(|s| s.name.clone()).collect();
                                engine.crowd.refresh_lag(&*engine.store, &names, now);
                            }
                        })
                        .await;
                    }
                }
            }
        })
    };

    let chatter_task = (!config.feeds.is_empty()).then(|| {
        let (engine, rx) = (engine.clone(), stop_rx.clone());
        let ctx = engine.checker().context().clone();
        tokio::spawn(crate::chatter::run(engine, ctx, config.feeds, stopped(rx)))
    });

    // A restart resumes each service's schedule from its last stored observation.
    let last_seen = config.store.last_observation_times().unwrap_or_default();
    let now = Utc::now();
    let jobs: Vec<Job> = engine
        .services
        .iter()
        .map(|s| Job {
            first_due: last_seen
                .iter()
                .filter(|(k, _)| k.service == s.name && k.component.is_probed())
                .map(|(_, at)| *at)
                .max()
                .map(|last| {
                    let interval = s.interval.unwrap_or(config.engine.default_interval);
                    let due = last + chrono::Duration::from_std(interval).unwrap_or_default();
                    (due - now).to_std().unwrap_or(Duration::ZERO)
                }),
            interval: s.interval.unwrap_or(config.engine.default_interval),
            host: s
                .api_base
                .as_deref()
                .or(s.web_url.as_deref())
                .and_then(aiwatch_core::network::url_host)
                .unwrap_or("")
                .to_owned(),
        })
        .collect();
    // Several instances on one database: claim a share of the checks before the first runs.
    crate::leases::claim(&engine).await;
    let lease_task = {
        let (engine, rx) = (engine.clone(), stop_rx.clone());
        tokio::spawn(crate::leases::run(engine, stopped(rx)))
    };
    let scheduler_task = {
        let (engine, rx) = (engine.clone(), stop_rx.clone());
        let observer: Arc<dyn scheduler::Observer> = Arc::new(DriftObserver(metrics.clone()));
        let run_job = move |i: usize| {
            let engine = engine.clone();
            async move {
                let held = engine
                    .services
                    .get(i)
                    .is_some_and(|s| engine.leases.holds(s.name.as_str()));
                if held {
                    engine.check(i).await;
                }
            }
        };
        let limits = config.limits;
        tokio::spawn(
            async move { scheduler::run(jobs, limits, observer, run_job, stopped(rx)).await },
        )
    };

    engine.mark_ready();
    started(Running {
        engine: engine.clone(),
    });
    tracing::info!(address = %listener.local_addr()?, services = engine.services.len(), "aiwatch serve is up");
    let server = aiwatch_inbound::serve(
        listener,
        crate::access::protect(crate::api::app(engine.clone()), config.access),
        config.http,
        stopped(stop_rx.clone()),
    );
    let server_task = tokio::spawn(server);

    shutdown.await;
    tracing::info!("shutting down: finishing in-flight checks, flushing the store");
    let _ = stop_tx.send(true);
    let _ = scheduler_task.await;
    let _ = lease_task.await;
    let _ = official_task.await;
    let _ = poll_task.await;
    let _ = server_task.await;
    for task in alert_tasks {
        let _ = task.await;
    }
    let _ = crowd_task.await;
    if let Some(task) = chatter_task {
        let _ = task.await;
    }
    engine.flush().await;
    Ok(())
}

struct DriftObserver(Arc<Metrics>);

impl scheduler::Observer for DriftObserver {
    fn started(&self, _job: usize, drift: Duration) {
        self.0.record_drift(drift);
    }

    fn skipped(&self, _job: usize) {
        self.0.skipped.inc();
    }
}
