//! The daemon's engine: runs one service's check, judges it with the assessor, and hands the
//! observations, incidents and states to the store writer; keeps the current picture that the
//! API serves.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use aiwatch_core::assess::{AssessConfig, Assessor, Event, Incident, Key};
use aiwatch_core::assessment::{fuse, roll_up, Assessment, Notice, OfficialReading, ProbeReading};
use aiwatch_core::classify::classify;
use aiwatch_core::evidence::{CheckEvidence, HttpOutcome, OfficialOutcome};
use aiwatch_core::observation::{Component, Health, Observation, Region};
use aiwatch_core::official::OfficialView;
use aiwatch_core::secret::ApiKey;
use aiwatch_core::{Service, ServiceName, Status, Verdict};
use aiwatch_probe::Checker;
use aiwatch_store::{SavedState, Store};
use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::writer::{WriteOp, Writer};

/// The verifier of a service's own CA, if it declares one.
type Verifier = Option<Arc<aiwatch_probe::tls::ExpectedVerifier>>;

/// When a service's API last streamed a completion, and whether that stream failed (then every
/// check streams until one comes back whole, so cut-off answers are seen check after check).
#[derive(Clone, Copy, Default)]
struct LastStream {
    at: Option<Instant>,
    failed: bool,
}

/// A key's state as the assessor lists it: status and since when.
type KeyStatus = (Key, Status, Option<DateTime<Utc>>);

/// One counted problem report per reporter, service and window.
const REPORT_WINDOW: Duration = Duration::from_secs(3600);

/// How long a control-probe result is trusted before it is asked again.
const CONTROL_TTL: Duration = Duration::from_secs(10);

/// A service's latest check: its evidence and when it ran.
type LatestCheck = (CheckEvidence, DateTime<Utc>);

/// What the official page currently says about one service.
#[derive(Clone, Debug, Default)]
pub struct OfficialNow {
    pub view: Option<OfficialView>,
    /// "official status unavailable since …" when the page cannot be read.
    pub unavailable: Option<String>,
}

impl OfficialNow {
    pub fn signal(&self) -> Status {
        self.view.as_ref().map_or(Status::Unknown, |v| v.signal)
    }

    /// What the fusion reads of it, for a service that does (or does not) have a page.
    pub fn reading(&self, has_page: bool) -> OfficialReading {
        match &self.view {
            Some(view) => OfficialReading::Read(view.signal),
            None if has_page => OfficialReading::Unread,
            None => OfficialReading::None,
        }
    }
}

/// One component of a service as every surface shows it: the core's assessment, since when
/// the state holds, and a sentence.
#[derive(Clone, Debug)]
pub struct ComponentNow {
    pub key: Key,
    pub assessment: Assessment,
    pub since: Option<DateTime<Utc>>,
    pub description: String,
}

/// A service as every surface shows it: the rolled-up assessment, its headline, and its
/// components.
#[derive(Clone, Debug)]
pub struct ServiceNow {
    pub assessment: Assessment,
    pub headline: String,
    pub since: Option<DateTime<Utc>>,
    /// One per (component, region) key.
    pub components: Vec<ComponentNow>,
    /// The regions whose probes see trouble (named when the scope is `regional`).
    pub failing_regions: Vec<Region>,
    /// Each vantage point's own word on the service (this machine's, then each agent's).
    pub regions: Vec<RegionNow>,
}

/// One vantage point's word on a service.
#[derive(Clone, Debug)]
pub struct RegionNow {
    pub region: Region,
    /// The region's components rolled up (unknown when its agent is silent).
    pub assessment: Assessment,
    /// How the quorum counted it.
    pub role: aiwatch_core::regions::RegionRole,
    pub silent: bool,
}

struct ControlCache {
    checked: Option<Instant>,
    online: bool,
}

/// Settings of the engine.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Budget of one check.
    pub timeout: Duration,
    /// Interval of services that set none.
    pub default_interval: Duration,
    pub assess: AssessConfig,
    /// Name of the Statuspage-compatible page.
    pub page_name: String,
    /// How often an API check also streams a tiny completion (the first check always does);
    /// `None` streams only the canaries of a recovery.
    pub stream_interval: Option<Duration>,
    /// When problem reports make a spike.
    pub crowd: aiwatch_core::crowd::CrowdConfig,
    /// Agents, their grace period and the quorum of regions.
    pub regions: crate::agents::RegionOptions,
    /// This instance's name when several share one database (PostgreSQL): checks are split
    /// between them by leases. `None`: the store is this process's own.
    pub instance: Option<String>,
}

/// Everything the daemon knows and does, shared by the scheduler, the poller and the API.
pub struct Engine {
    pub services: Vec<Service>,
    checker: Checker,
    keys: HashMap<ServiceName, ApiKey>,
    expected: Vec<Verifier>,
    assessor: Mutex<Assessor>,
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    writer: Writer,
    control: tokio::sync::Mutex<ControlCache>,
    official: RwLock<HashMap<ServiceName, OfficialNow>>,
    /// The latest check's evidence per service; the verdict is classified when asked for, so
    /// the hot path pays for one classification per face, not two.
    latest: RwLock<HashMap<ServiceName, Arc<LatestCheck>>>,
    pub options: EngineOptions,
    pub started_at: DateTime<Utc>,
    ready: AtomicBool,
    /// Each service's latest measured status and when it was seen, for views that must not
    /// show "unknown" (the Statuspage format) while the monitor cannot see the service.
    last_measured: Mutex<HashMap<ServiceName, (Status, DateTime<Utc>)>>,
    /// Each service's last streamed completion, by index.
    streams: Mutex<Vec<LastStream>>,
    /// The alert rules and deliverer, when `[[alert]]`s are configured.
    alerting: std::sync::OnceLock<Arc<crate::alerting::Alerting>>,
    /// Takes problem reports.
    pub reports: crate::reports::ReportDesk,
    /// What people report, per service, through the core's detector.
    pub crowd: crate::crowd::Crowd,
    /// The agents of other regions: who may push, and when each was last heard from.
    pub agents: crate::agents::AgentDesk,
    /// Which checks this instance runs (all, unless several instances share the database).
    pub leases: crate::leases::Leases,
    /// The time of the newest observation assessed per key, so following the store never
    /// assesses one twice.
    assessed: Mutex<HashMap<Key, DateTime<Utc>>>,
}

impl Engine {
    /// Builds the engine and resumes the assessor from the store (open incidents, last states,
    /// latency baselines).
    pub fn new(
        services: Vec<Service>,
        checker: Checker,
        keys: HashMap<ServiceName, ApiKey>,
        store: Arc<dyn Store>,
        writer: Writer,
        metrics: Arc<Metrics>,
        options: EngineOptions,
    ) -> Result<Self, crate::Error> {
        let expected = services
            .iter()
            .map(|s| checker.expected_verifier(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| crate::Error::Setup(e.to_string()))?;
        let states = store.load_states()?;
        let open = store.open_incidents()?;
        let mut assessor = Assessor::restore(
            options.assess.clone(),
            states.iter().map(|s| (s.key.clone(), s.state)).collect(),
            open,
        );
        for saved in &states {
            let recent = store.recent_latencies(
                &saved.key,
                aiwatch_core::observation::Source::Probe,
                options.assess.baseline_window,
            )?;
            if !recent.is_empty() {
                assessor.seed_baseline(
                    &saved.key,
                    aiwatch_core::observation::Source::Probe,
                    &recent,
                );
            }
        }
        metrics
            .open_incidents
            .set(i64::try_from(assessor.open_incidents().len()).unwrap_or(i64::MAX));
        let services_len = services.len();
        let store_for_reports = store.clone();
        let crowd_config = options.crowd.clone();
        let regions = options.regions.clone();
        let shortest = services
            .iter()
            .map(|s| s.interval.unwrap_or(options.default_interval))
            .min()
            .unwrap_or(options.default_interval);
        let leases = match &options.instance {
            Some(name) => crate::leases::Leases::shared(
                name.clone(),
                crate::leases::Leases::ttl_for(shortest),
            ),
            None => crate::leases::Leases::solo(),
        };
        Ok(Self {
            services,
            checker,
            keys,
            expected,
            assessor: Mutex::new(assessor),
            store,
            metrics,
            writer,
            control: tokio::sync::Mutex::new(ControlCache {
                checked: None,
                online: true,
            }),
            official: RwLock::new(HashMap::new()),
            latest: RwLock::new(HashMap::new()),
            options,
            started_at: Utc::now(),
            ready: AtomicBool::new(false),
            last_measured: Mutex::new(HashMap::new()),
            streams: Mutex::new(vec![LastStream::default(); services_len]),
            alerting: std::sync::OnceLock::new(),
            reports: crate::reports::ReportDesk::new(&*store_for_reports, REPORT_WINDOW)?,
            crowd: crate::crowd::Crowd::restore(&*store_for_reports, crowd_config, Utc::now()),
            agents: crate::agents::AgentDesk::new(regions),
            leases,
            assessed: Mutex::new(HashMap::new()),
        })
    }

    /// Connects the alert rules and deliverer (once, at start).
    pub fn set_alerting(&self, alerting: Arc<crate::alerting::Alerting>) {
        let _ = self.alerting.set(alerting);
    }

    pub fn alerting(&self) -> Option<&Arc<crate::alerting::Alerting>> {
        self.alerting.get()
    }

    /// Whether the picture is complete enough for alerts: every service checked once since
    /// the start (or two intervals passed), so a restart does not read "not checked yet" as a
    /// recovery.
    fn alerts_armed(&self) -> bool {
        let checked = self.latest.read().map_or(0, |l| l.len());
        checked >= self.services.len()
            || (Utc::now() - self.started_at).to_std().unwrap_or_default()
                >= self.options.default_interval * 2
    }

    /// Tells the assessor which services many people report problems with right now (a failing
    /// check of those opens an incident at once).
    pub fn apply_crowd(&self) {
        let mut assessor = self.assessor();
        for service in &self.services {
            let raised = self
                .crowd
                .reading(&service.name)
                .is_some_and(|(c, _)| c.level != aiwatch_core::crowd::CrowdLevel::None);
            assessor.set_crowd(&service.name, raised);
        }
    }

    /// Asks the alert rules what is owed now and saves it (time-driven decisions: a
    /// `min_duration` reached, quiet hours over, a recovery settled, a reminder due).
    pub async fn alert_tick(&self) {
        self.record(Vec::new()).await;
    }

    /// Saves incident changes together with the notifications the rules decide on the picture
    /// they leave, in one transaction.
    async fn record(&self, mut incidents: Vec<Incident>) {
        // Several instances on one database: a service's incidents are written by the instance
        // running its checks, and notifications by the one holding the deliverer's lease.
        incidents.retain(|i| self.leases.holds(i.key.service.as_str()));
        let notifications = match self.alerting.get() {
            Some(alerting)
                if self.alerts_armed() && self.leases.holds(crate::leases::DELIVERER) =>
            {
                alerting.evaluate(self, Utc::now())
            }
            _ => Vec::new(),
        };
        if incidents.is_empty() && notifications.is_empty() {
            return;
        }
        let wake = self.alerting.get().map(|a| a.deliverer.clone());
        self.writer
            .send(WriteOp::Record {
                incidents,
                notifications,
                wake,
            })
            .await;
    }

    pub fn checker(&self) -> &Checker {
        &self.checker
    }

    pub fn mark_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && self.store.healthy() && self.writer.is_alive()
    }

    fn assessor(&self) -> std::sync::MutexGuard<'_, Assessor> {
        self.assessor.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the monitor's own connection works, asking the control host at most every
    /// `CONTROL_TTL`.
    async fn monitor_online(&self) -> bool {
        let mut cache = self.control.lock().await;
        if cache.checked.is_some_and(|t| t.elapsed() < CONTROL_TTL) {
            return cache.online;
        }
        let deadline = Instant::now() + self.options.timeout;
        let online = match self.checker.control(deadline).await {
            None => true,
            Some(report) => {
                matches!(&report.http, Some(HttpOutcome::Response(r)) if (200..300).contains(&r.status))
            }
        };
        cache.checked = Some(Instant::now());
        cache.online = online;
        self.metrics.control_up.set(i64::from(online));
        online
    }

    /// A remote provider answered properly: the monitor's own connection works, whatever its
    /// last control probe said (the control host is only asked when something fails, so
    /// without this a recovered monitor would read as offline until then).
    async fn reached_the_internet(&self) {
        let mut cache = self.control.lock().await;
        if cache.checked.is_some() && !cache.online {
            cache.online = true;
            cache.checked = Some(Instant::now());
            self.metrics.control_up.set(1);
        }
    }

    /// Runs the scheduled check of service `index`: probes (a canary while recovery is being
    /// validated), observations, assessment, storage.
    pub async fn check(&self, index: usize) {
        let Some(service) = self.services.get(index) else {
            return;
        };
        let api_key = Key::new(service.name.clone(), Component::Api, Region::local());
        let canary = service.api_base.is_some() && self.assessor().wants_canary(&api_key);
        if canary {
            self.metrics
                .canaries
                .get_or_create(&crate::metrics::ServiceLabels {
                    service: service.name.to_string(),
                })
                .inc();
        }
        let stream = service.api_base.is_some() && (canary || self.stream_due(index));
        let deadline = Instant::now() + self.options.timeout;
        let probes = self
            .checker
            .check_service(
                service,
                self.keys.get(&service.name),
                self.expected[index].clone(),
                stream,
                deadline,
            )
            .await;
        if let Some(streamed) = &probes.stream {
            self.streamed(index, streamed.finished);
        }
        let now = Utc::now();
        let mut observations = aiwatch_probe::observe::observations(
            service,
            &Region::local(),
            &probes,
            true,
            canary,
            self.options.timeout,
            now,
        );
        if !service.local && observations.iter().all(|o| o.health == Health::Up) {
            self.reached_the_internet().await;
        }
        if observations.iter().any(|o| o.health != Health::Up)
            && !service.local
            && !self.monitor_online().await
        {
            observations = aiwatch_probe::observe::observations(
                service,
                &Region::local(),
                &probes,
                false,
                canary,
                self.options.timeout,
                now,
            );
        }

        for report in [&probes.web, &probes.api].into_iter().flatten() {
            let t = &report.timings;
            for (phase, d) in [
                ("dns", t.dns),
                ("connect", t.connect),
                ("tls", t.tls),
                ("first_byte", t.first_byte),
                ("total", t.total),
            ] {
                if let Some(d) = d {
                    self.metrics.observe_phase(service.name.as_str(), phase, d);
                }
            }
        }
        let evidence = CheckEvidence {
            control: None,
            web: probes.web,
            api: probes.api,
            stream: probes.stream,
            // The official view is joined when the verdict is asked for.
            official: OfficialOutcome::NotConfigured,
            budget: self.options.timeout,
        };
        self.latest
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(service.name.clone(), Arc::new((evidence, now)));
        self.ingest(observations, now).await;
    }

    /// Whether service `index` is due for a stream check: never streamed, its last stream
    /// failed, or `stream_interval` has passed.
    fn stream_due(&self, index: usize) -> bool {
        let Some(every) = self.options.stream_interval else {
            return false;
        };
        let streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        streams
            .get(index)
            .is_some_and(|last| last.failed || last.at.is_none_or(|t| t.elapsed() >= every))
    }

    fn streamed(&self, index: usize, finished: bool) {
        let mut streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(last) = streams.get_mut(index) {
            *last = LastStream {
                at: Some(Instant::now()),
                failed: !finished,
            };
        }
    }

    /// Feeds observations to the assessor and the store.
    pub async fn ingest(&self, observations: Vec<Observation>, now: DateTime<Utc>) {
        let events = self.assess(&observations, Some(now));
        self.writer.send(WriteOp::Observations(observations)).await;
        self.apply_events(events).await;
    }

    /// Several instances on one database: assesses what the others stored for the checks this
    /// instance does not hold (their probes and the agents' pushes they took), newer than what
    /// was already assessed per key, in time order. Nothing is written.
    pub async fn follow(&self) {
        if !self.leases.is_shared() {
            return;
        }
        let now = Utc::now();
        for service in &self.services {
            let from = {
                let assessed = self.assessed.lock().unwrap_or_else(|p| p.into_inner());
                assessed
                    .iter()
                    .filter(|(k, _)| k.service == service.name)
                    .map(|(_, at)| *at)
                    .min()
                    .unwrap_or(now - chrono::Duration::minutes(10))
            };
            let store = self.store.clone();
            let selector = aiwatch_store::Selector::service(service.name.clone());
            let range = aiwatch_store::TimeRange::new(from, now + chrono::Duration::seconds(1));
            let Ok(Ok(mut found)) =
                tokio::task::spawn_blocking(move || store.observations(&selector, range, 5_000))
                    .await
            else {
                continue;
            };
            {
                let assessed = self.assessed.lock().unwrap_or_else(|p| p.into_inner());
                found.retain(|o| {
                    o.source != aiwatch_core::observation::Source::Official
                        && assessed.get(&Key::of(o)).is_none_or(|at| o.at > *at)
                });
            }
            if found.is_empty() {
                continue;
            }
            found.sort_by_key(|o| o.at);
            let events = self.assess(&found, None);
            self.apply_events(events).await;
        }
    }

    /// Takes over `service` from another instance: its open incidents as the store holds them
    /// replace this assessor's own.
    pub async fn adopt(&self, service: &ServiceName) {
        let store = self.store.clone();
        let Ok(Ok(open)) = tokio::task::spawn_blocking(move || store.open_incidents()).await else {
            return;
        };
        self.assessor().adopt(service, &open);
    }

    /// Feeds an agent's push, already stored with its cursor, to the assessor (each at its
    /// own time: a buffered push tells what happened when it happened).
    pub async fn assess_pushed(&self, observations: &[Observation]) {
        let events = self.assess(observations, None);
        self.apply_events(events).await;
    }

    /// The assessor's events for `observations` (official ones excepted: the page is read
    /// through `set_official`) at `now` (`None`: each at its own time), and the result
    /// counters.
    fn assess(&self, observations: &[Observation], now: Option<DateTime<Utc>>) -> Vec<Event> {
        let mut events = Vec::new();
        {
            let mut assessor = self.assessor();
            // Only instances sharing a database follow the store, so only they keep the cursor.
            let mut assessed = self
                .leases
                .is_shared()
                .then(|| self.assessed.lock().unwrap_or_else(|p| p.into_inner()));
            for obs in observations {
                if obs.source != aiwatch_core::observation::Source::Official {
                    events.extend(assessor.observe(obs, now.unwrap_or(obs.at)));
                    if let Some(assessed) = assessed.as_mut() {
                        let newest = assessed.entry(Key::of(obs)).or_insert(obs.at);
                        *newest = (*newest).max(obs.at);
                    }
                }
            }
            self.metrics
                .open_incidents
                .set(i64::try_from(assessor.open_incidents().len()).unwrap_or(i64::MAX));
        }
        for obs in observations {
            self.metrics
                .results
                .get_or_create(&crate::metrics::ResultLabels {
                    service: obs.service.to_string(),
                    component: obs.component.as_str().to_owned(),
                    cause: obs.cause.as_str().to_owned(),
                })
                .inc();
        }
        events
    }

    async fn apply_events(&self, events: Vec<Event>) {
        let mut changed = Vec::new();
        let mut incidents = Vec::new();
        for event in events {
            match event {
                Event::StateChanged { key, to, at, .. } => {
                    changed.push(SavedState {
                        key,
                        state: to,
                        since: Some(at),
                    });
                }
                Event::IncidentOpened(incident)
                | Event::IncidentUpdated(incident)
                | Event::IncidentResolved(incident) => {
                    tracing::info!(incident = %incident.id, service = %incident.key.service, component = %incident.key.component, phase = incident.phase.as_str(), "incident");
                    incidents.push(incident);
                }
            }
        }
        let state_changed = !changed.is_empty();
        if state_changed {
            self.writer.send(WriteOp::States(changed)).await;
        }
        if !incidents.is_empty() || state_changed {
            self.record(incidents).await;
        }
    }

    /// Records what the official page says about `service` (from the status poller).
    pub async fn set_official(
        &self,
        service: &Service,
        now_official: OfficialNow,
        now: DateTime<Utc>,
    ) {
        let signal = now_official.signal();
        let title = now_official
            .view
            .as_ref()
            .and_then(|v| v.incidents.first())
            .map(|i| i.name.clone());
        let detail = match (&now_official.view, &now_official.unavailable) {
            (Some(v), _) => format!(
                "official: {}{}",
                v.description
                    .clone()
                    .unwrap_or_else(|| format!("{signal:?}").to_lowercase()),
                title
                    .as_deref()
                    .map(|t| format!(" — {t}"))
                    .unwrap_or_default()
            ),
            (None, Some(e)) => e.clone(),
            (None, None) => "official status not read yet".into(),
        };
        let events = self
            .assessor()
            .official(&service.name, signal, title.as_deref(), now);
        let obs = aiwatch_probe::observe::official_observation(
            service,
            now_official.view.as_ref().map(|v| v.signal),
            detail,
            now,
        );
        self.official
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(service.name.clone(), now_official);
        // Several instances read the same page: the one running the service's checks records it.
        if self.leases.holds(service.name.as_str()) {
            self.writer.send(WriteOp::Observations(vec![obs])).await;
        }
        self.apply_events(events).await;
    }

    pub fn official_of(&self, service: &ServiceName) -> OfficialNow {
        self.official
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(service)
            .cloned()
            .unwrap_or_default()
    }

    /// The diagnosis of the latest check, with the official view as it is now.
    pub fn latest_verdict(&self, service: &ServiceName) -> Option<Verdict> {
        let latest = self
            .latest
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(service)
            .cloned()?;
        let definition = self.services.iter().find(|s| &s.name == service)?;
        let (evidence, at) = &*latest;
        let mut evidence = evidence.clone();
        let official = self.official_of(service);
        evidence.official = match (official.view, official.unavailable) {
            (Some(view), _) => OfficialOutcome::View(view),
            (None, Some(error)) => OfficialOutcome::Unavailable { error },
            (None, None) if definition.status.is_some() => OfficialOutcome::Unavailable {
                error: "official status not read yet".into(),
            },
            (None, None) => OfficialOutcome::NotConfigured,
        };
        Some(classify(definition, &evidence, *at))
    }

    /// Whether the monitor's own connection worked at its latest control probe.
    pub fn monitor_online_now(&self) -> bool {
        self.control
            .try_lock()
            .map_or(true, |cache| cache.checked.is_none() || cache.online)
    }

    /// Each watched service's fused status now, by name: what the core's plan-B advice reads.
    pub fn statuses_now(&self) -> Vec<(ServiceName, Status)> {
        self.services
            .iter()
            .zip(self.services_now())
            .map(|(service, now)| (service.name.clone(), now.assessment.status))
            .collect()
    }

    /// Every watched service as the surfaces show it, in the order of `services`: the one
    /// decision of the core's fusion over the assessor's keys, the official page and the
    /// monitor's own health.
    pub fn services_now(&self) -> Vec<ServiceNow> {
        let online = self.monitor_online_now();
        let now = Utc::now();
        let official = self
            .official
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let assessor = self.assessor();
        let states = assessor.states();
        // Keys grouped by service once: the lock is held for O(keys), not O(services × keys).
        let mut by_service: HashMap<&ServiceName, Vec<&KeyStatus>> = HashMap::new();
        for state in states.iter().filter(|(k, ..)| k.component.is_probed()) {
            by_service.entry(&state.0.service).or_default().push(state);
        }
        let all: Vec<ServiceNow> = self
            .services
            .iter()
            .map(|service| {
                let reading = official.get(&service.name).map_or_else(
                    || OfficialNow::default().reading(service.status.is_some()),
                    |o| o.reading(service.status.is_some()),
                );
                let crowd = self.crowd.reading(&service.name);
                let components: Vec<ComponentNow> = by_service
                    .get(&service.name)
                    .into_iter()
                    .flatten()
                    .map(|(key, _, since)| {
                        let local = key.region.as_str() == aiwatch_core::observation::LOCAL_REGION;
                        let probes = if self.agents.is_silent(&key.region, now) {
                            ProbeReading::NotChecked
                        } else {
                            let online = if local {
                                online
                            } else {
                                self.agents.online(&key.region)
                            };
                            assessor.reading(key, service.local, online)
                        };
                        let mut assessment = fuse(probes, reading);
                        if let Some((crowd, reporting)) = &crowd {
                            assessment = aiwatch_core::assessment::with_crowd(
                                assessment,
                                crowd.level,
                                crowd.scope(*reporting),
                            );
                        }
                        let description = if assessor.incident(key).is_some() {
                            assessor.describe(key)
                        } else {
                            assessment.headline(&format!("{} {}", service.title, key.component))
                        };
                        ComponentNow {
                            key: key.clone(),
                            assessment,
                            since: *since,
                            description,
                        }
                    })
                    .collect();
                let fused = self.across_regions(&components, now);
                let rolled: Vec<Assessment> = fused.iter().map(|f| f.assessment).collect();
                let mut assessment =
                    roll_up(&rolled).unwrap_or_else(|| fuse(ProbeReading::NotChecked, reading));
                let mut failing_regions: Vec<Region> = fused
                    .iter()
                    .filter(|f| f.assessment.status.is_trouble())
                    .flat_map(|f| f.failing.iter().cloned())
                    .collect();
                failing_regions.sort();
                failing_regions.dedup();
                let regional = fused
                    .iter()
                    .find(|f| {
                        let a = f.assessment;
                        (a.status, a.scope, a.cause)
                            == (assessment.status, assessment.scope, assessment.cause)
                    })
                    .and_then(|f| aiwatch_core::regions::regional_headline(&service.title, f));
                if let Some((crowd, reporting)) = &crowd {
                    assessment = aiwatch_core::assessment::with_crowd(
                        assessment,
                        crowd.level,
                        crowd.scope(*reporting),
                    );
                }
                let since = components
                    .iter()
                    .filter(|c| c.assessment.status == assessment.status)
                    .filter_map(|c| c.since)
                    .min();
                let regions = self.region_words(&components, now);
                ServiceNow {
                    headline: regional.unwrap_or_else(|| assessment.headline(&service.title)),
                    assessment,
                    since,
                    components,
                    failing_regions,
                    regions,
                }
            })
            .collect();
        drop(assessor);
        let mut last = self.last_measured.lock().unwrap_or_else(|p| p.into_inner());
        for (service, now_of) in self.services.iter().zip(&all) {
            if now_of.assessment.status.statuspage_component().is_some() {
                last.insert(service.name.clone(), (now_of.assessment.status, now));
            }
        }
        all
    }

    /// Each face's word across the regions, by the core's quorum rule.
    fn across_regions(
        &self,
        components: &[ComponentNow],
        now: DateTime<Utc>,
    ) -> Vec<aiwatch_core::regions::RegionalAssessment> {
        let mut faces: Vec<Component> = components.iter().map(|c| c.key.component).collect();
        faces.sort();
        faces.dedup();
        faces
            .into_iter()
            .filter_map(|face| {
                let readings: Vec<aiwatch_core::regions::RegionReading> = components
                    .iter()
                    .filter(|c| c.key.component == face)
                    .map(|c| aiwatch_core::regions::RegionReading {
                        region: c.key.region.clone(),
                        assessment: c.assessment,
                        silent: self.agents.is_silent(&c.key.region, now),
                    })
                    .collect();
                aiwatch_core::regions::across_regions(&readings, self.agents.quorum())
            })
            .collect()
    }

    /// Each vantage point's own word: this machine's first, then every declared agent's (an
    /// agent never heard from is listed as unknown).
    fn region_words(&self, components: &[ComponentNow], now: DateTime<Utc>) -> Vec<RegionNow> {
        let mut regions: Vec<Region> = vec![Region::local()];
        regions.extend(self.agents.regions().cloned());
        for c in components {
            if !regions.contains(&c.key.region) {
                regions.push(c.key.region.clone());
            }
        }
        regions
            .into_iter()
            .map(|region| {
                let silent = self.agents.is_silent(&region, now);
                let own: Vec<Assessment> = components
                    .iter()
                    .filter(|c| c.key.region == region)
                    .map(|c| c.assessment)
                    .collect();
                let assessment = roll_up(&own)
                    .unwrap_or_else(|| fuse(ProbeReading::NotChecked, OfficialReading::None));
                let role = aiwatch_core::regions::role(&aiwatch_core::regions::RegionReading {
                    region: region.clone(),
                    assessment,
                    silent,
                });
                RegionNow {
                    region,
                    assessment,
                    role,
                    silent,
                }
            })
            .collect()
    }

    /// Sets the state gauges from the core's current decisions (at scrape time, so the metrics
    /// say what every other surface says).
    pub fn publish_states(&self) {
        self.metrics
            .store_queue_depth
            .set(i64::try_from(self.writer.queue_depth()).unwrap_or(i64::MAX));
        let at = Utc::now();
        for region in self.agents.regions() {
            self.metrics
                .agent_connected
                .get_or_create(&crate::metrics::RegionLabels {
                    region: region.to_string(),
                })
                .set(i64::from(!self.agents.is_silent(region, at)));
        }
        for (service, now) in self.services.iter().zip(self.services_now()) {
            let blind = matches!(
                now.assessment.notice,
                Some(Notice::MonitorCannotSee(_) | Notice::MonitorOffline(_))
            );
            self.metrics
                .set_service(service.name.as_str(), now.assessment.status, blind);
            for c in &now.components {
                self.metrics.set_state(
                    service.name.as_str(),
                    c.key.component.as_str(),
                    c.key.region.as_str(),
                    c.assessment.status,
                );
            }
        }
    }

    /// The service's latest measured status and when it was last measured, if ever.
    pub fn last_measured(&self, name: &ServiceName) -> Option<(Status, DateTime<Utc>)> {
        self.last_measured
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .copied()
    }

    /// One service as the surfaces show it.
    pub fn service_now(&self, name: &ServiceName) -> Option<ServiceNow> {
        let index = self.services.iter().position(|s| &s.name == name)?;
        self.services_now().into_iter().nth(index)
    }

    /// Every probed key's fused status, since when, and a sentence, sorted by key.
    pub fn states(&self) -> Vec<(Key, Status, Option<DateTime<Utc>>, String)> {
        let mut all: Vec<_> = self
            .services_now()
            .into_iter()
            .flat_map(|s| s.components)
            .map(|c| (c.key, c.assessment.status, c.since, c.description))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    pub fn open_incidents(&self) -> Vec<Incident> {
        self.assessor().open_incidents()
    }

    /// Writes everything pending and makes it durable (shutdown).
    pub async fn flush(&self) {
        self.writer.flush().await;
    }
}
