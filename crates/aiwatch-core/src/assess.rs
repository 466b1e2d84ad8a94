//! The daemon's pure state machine over time: per (service, component, region) it turns own
//! probe and canary observations plus the official page's signal into a state, and opens,
//! updates and resolves incidents, declaring recovery only after validation.
//!
//! Time comes in as `now` arguments; nothing here reads the clock or does I/O, so the daemon can
//! replay stored observations through an [`Assessor`] and get the same incidents back.
//!
//! # Rules
//!
//! - **Per key.** Every [`Key`] (service, component, region) has its own counters, baseline and
//!   at most one open incident; keys never influence each other. The official signal is per
//!   service and applies to all of its keys. Work per observation is O(1) (the baseline median
//!   is over at most `baseline_window` samples), and a key costs a few hundred bytes.
//! - **Hysteresis.** `failures_to_open` consecutive Down or Degraded observations open an
//!   incident (severity Outage if any of them was Down, else Degraded); fewer change nothing and
//!   the state stays Operational. An Up observation resets the failure count. A key never
//!   observed is Unknown; its first Up, Down or Degraded observation makes it Operational.
//! - **Slower than usual.** Outside incidents, an Up probe whose latency is past
//!   `slow_above(baseline)` of the key's own probe baseline (once it holds
//!   [`MIN_BASELINE_SAMPLES`]) counts as Degraded `slow_responses` and is kept out of the
//!   baseline: `serve` judges slowness against each service's own normal, besides the absolute
//!   per-layer thresholds `classify` applies to one check.
//! - **Intermittent.** Failures that never come `failures_to_open` in a row still count:
//!   `intermittent_failures` (at least `failures_to_open`) of the last `intermittent_window`
//!   known observations open a Degraded incident ("3 of the last 10 checks failed"). Such an
//!   incident resolves like any other and, in addition, only once the failures left in the
//!   window are fewer than half the opening count, so a flaky service shows one incident, not a
//!   flapping series. A resolved incident starts a fresh window.
//!   Observations with `Source::Official` are ignored: the page comes in through
//!   [`Assessor::official`].
//! - **Gaps.** `Health::Unknown` observations (the monitor's own network is down, or the source
//!   was unreadable) never open an incident and never count as failures or successes; the state
//!   shows Unknown while they last and the counters from before the gap carry on after it.
//! - **Fusion.** An incident opened while the official signal for the service is Outage or
//!   Degraded, or one that becomes so while the incident is open, is `confirmed` (timeline
//!   Confirmed, naming the official incident's title). Opened while the page is Operational it
//!   is unconfirmed ("unconfirmed outage — official page green": the early warning). If the page
//!   turns Operational again while own checks still fail (phase Open), the incident becomes
//!   unconfirmed again (timeline Unconfirmed). While the official page announces Maintenance,
//!   failing own checks show the state Maintenance and no incident opens (failures keep counting,
//!   so a maintenance that overruns opens an incident on the next failure after it ends). An
//!   official Unknown (page unreadable or not polled yet) neither confirms nor unconfirms.
//! - **Recovery validation.** The first Up observation of an open incident does not resolve
//!   it: the phase becomes Validating (timeline ValidationStarted) and [`Assessor::wants_canary`]
//!   turns true. Resolution needs `successes_to_close` consecutive validated successes after
//!   that: health Up, `complete != Some(false)` (no truncated answer), and latency
//!   (`phases.total`) at most `max(baseline × latency_factor, baseline + latency_slack_ms)`,
//!   where the baseline is the median of the key's last `baseline_window` healthy latencies from
//!   the same source (probe or canary; a canary without a baseline of its own is held to the
//!   probes' one) recorded outside incidents; with no baseline yet, latency
//!   cannot fail. Each pass is a CanaryPassed entry, each failure a CanaryFailed entry with the
//!   reason ("slow: …", "truncated answer", "error: …" for a Degraded observation) and the
//!   count restarts; a Down
//!   observation while validating sends the incident back to Open (timeline Reopened). Then the
//!   incident is Resolved (timeline Resolved) and leaves the assessor.
//! - **Events.** A call returns what changed, in this order: the incident event
//!   (IncidentOpened, IncidentUpdated when its timeline grew — severity worsened, cause changed,
//!   (un)confirmed, phase changed, canary passed or failed — or IncidentResolved), then
//!   StateChanged when the key's state differs from the last one reported. Timelines hold at
//!   most [`TIMELINE_CAP`] entries: the Opened entry and the newest others.
//! - **Restart.** [`Assessor::restore`] takes the last states and the open incidents from the
//!   store, so an outage that spans a restart keeps its incident (no duplicate opens) and a
//!   validating incident restarts its canary count from zero. A restored Maintenance state
//!   assumes the page still announces maintenance until the first official signal arrives.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::assessment::ProbeReading;
use crate::cause::{Cause, Status};
use crate::config::Defaults;
use crate::observation::{Component, Health, Observation, Region, Source};
use crate::service::ServiceName;

/// At most this many entries are kept in an incident's timeline (the Opened entry and the
/// newest ones), so an incident that flaps for days stays small.
pub const TIMELINE_CAP: usize = 200;

/// The assessor's knobs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AssessConfig {
    /// Consecutive failed observations before an incident opens (at least 1 is used).
    pub failures_to_open: u32,
    /// Consecutive validated successes before an incident resolves (at least 1 is used).
    pub successes_to_close: u32,
    /// How many healthy latencies per key and source the baseline keeps.
    pub baseline_window: usize,
    /// A canary is slow when its latency exceeds the baseline times this factor…
    pub latency_factor: f64,
    /// …and also exceeds the baseline plus this many milliseconds (so jitter on a 2 ms
    /// loopback baseline is not "slow").
    pub latency_slack_ms: f64,
    /// How many recent known observations the intermittent rule looks at (at most 32).
    pub intermittent_window: u32,
    /// Failures among the last `intermittent_window` observations, not in a row, that open a
    /// Degraded incident (at least `failures_to_open` and 2 are used).
    pub intermittent_failures: u32,
}

impl AssessConfig {
    pub const DEFAULT_BASELINE_WINDOW: usize = 50;
    pub const DEFAULT_LATENCY_FACTOR: f64 = 2.0;
    pub const DEFAULT_LATENCY_SLACK_MS: f64 = 200.0;
    pub const DEFAULT_INTERMITTENT_WINDOW: u32 = 10;
    pub const DEFAULT_INTERMITTENT_FAILURES: u32 = 3;

    /// The config's hysteresis with the default baseline settings.
    pub fn from_defaults(d: &Defaults) -> Self {
        Self {
            failures_to_open: d.failures_to_open,
            successes_to_close: d.successes_to_close,
            baseline_window: Self::DEFAULT_BASELINE_WINDOW,
            latency_factor: Self::DEFAULT_LATENCY_FACTOR,
            latency_slack_ms: Self::DEFAULT_LATENCY_SLACK_MS,
            intermittent_window: Self::DEFAULT_INTERMITTENT_WINDOW,
            intermittent_failures: Self::DEFAULT_INTERMITTENT_FAILURES,
        }
    }

    fn open_after(&self) -> u32 {
        self.failures_to_open.max(1)
    }

    fn window(&self) -> u32 {
        self.intermittent_window.clamp(1, 32)
    }

    /// Scattered failures in the window that open a Degraded incident.
    fn intermittent_after(&self) -> u32 {
        self.intermittent_failures.max(self.open_after()).max(2)
    }

    fn close_after(&self) -> u32 {
        self.successes_to_close.max(1)
    }

    /// The latency above which a canary counts as slow, given a baseline.
    pub fn slow_above(&self, baseline_ms: f64) -> f64 {
        (baseline_ms * self.latency_factor).max(baseline_ms + self.latency_slack_ms)
    }
}

impl Default for AssessConfig {
    fn default() -> Self {
        Self::from_defaults(&Defaults::default())
    }
}

/// What one state machine is about: a service's component as seen from one region.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key {
    pub service: ServiceName,
    pub component: Component,
    pub region: Region,
}

impl Key {
    pub fn new(service: ServiceName, component: Component, region: impl Into<Region>) -> Self {
        Self {
            service,
            component,
            region: region.into(),
        }
    }

    /// The key an observation belongs to.
    pub fn of(obs: &Observation) -> Self {
        Self::new(obs.service.clone(), obs.component, obs.region.clone())
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.service, self.component, self.region)
    }
}

/// Where an incident is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentPhase {
    /// Own checks fail.
    Open,
    /// Own checks pass again; canaries are validating the recovery.
    Validating,
    Resolved,
}

impl IncidentPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Validating => "validating",
            Self::Resolved => "resolved",
        }
    }

    /// Parses [`IncidentPhase::as_str`]'s output; anything else is `Open`.
    pub fn from_str_lossy(raw: &str) -> Self {
        match raw {
            "validating" => Self::Validating,
            "resolved" => Self::Resolved,
            _ => Self::Open,
        }
    }
}

/// One incident of one key, with the story of what was observed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// Stable: `inc-<service>-<component>-<region>-<unix seconds opened>` (component and region
    /// slugged to `[a-z0-9-]`; a `-2`, `-3`… suffix if a key opens twice in one second).
    pub id: String,
    pub key: Key,
    pub opened_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub phase: IncidentPhase,
    /// Degraded or Outage: the worst seen.
    pub severity: Status,
    /// The cause of the latest failure.
    pub cause: Cause,
    /// The official page agrees (it reports an outage or degradation for the service).
    pub confirmed: bool,
    /// Oldest first.
    pub timeline: Vec<TimelineEntry>,
}

impl Incident {
    pub fn is_open(&self) -> bool {
        self.phase != IncidentPhase::Resolved
    }

    fn note(&mut self, at: DateTime<Utc>, kind: TimelineKind, text: String) {
        if self.timeline.len() >= TIMELINE_CAP.max(2) {
            self.timeline.remove(1);
        }
        self.timeline.push(TimelineEntry { at, kind, text });
        self.updated_at = at;
    }
}

/// One line of an incident's story.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub at: DateTime<Utc>,
    pub kind: TimelineKind,
    /// A sentence a person can read.
    pub text: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimelineKind {
    Opened,
    Worsened,
    CauseChanged,
    Confirmed,
    Unconfirmed,
    ValidationStarted,
    CanaryPassed,
    CanaryFailed,
    Resolved,
    Reopened,
}

impl TimelineKind {
    pub const ALL: [TimelineKind; 10] = [
        Self::Opened,
        Self::Worsened,
        Self::CauseChanged,
        Self::Confirmed,
        Self::Unconfirmed,
        Self::ValidationStarted,
        Self::CanaryPassed,
        Self::CanaryFailed,
        Self::Resolved,
        Self::Reopened,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Opened => "opened",
            Self::Worsened => "worsened",
            Self::CauseChanged => "cause_changed",
            Self::Confirmed => "confirmed",
            Self::Unconfirmed => "unconfirmed",
            Self::ValidationStarted => "validation_started",
            Self::CanaryPassed => "canary_passed",
            Self::CanaryFailed => "canary_failed",
            Self::Resolved => "resolved",
            Self::Reopened => "reopened",
        }
    }

    /// The kind with this code, if any.
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == code)
    }
}

impl fmt::Display for TimelineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What changed, for the store, the alerts and the dashboard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    StateChanged {
        key: Key,
        from: Status,
        to: Status,
        at: DateTime<Utc>,
    },
    IncidentOpened(Incident),
    /// The incident's timeline grew; this is its whole current value.
    IncidentUpdated(Incident),
    /// The incident's final value (phase Resolved).
    IncidentResolved(Incident),
}

impl Event {
    /// A stable snake_case name of the event's kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::StateChanged { .. } => "state_changed",
            Self::IncidentOpened(_) => "incident_opened",
            Self::IncidentUpdated(_) => "incident_updated",
            Self::IncidentResolved(_) => "incident_resolved",
        }
    }

    pub fn key(&self) -> &Key {
        match self {
            Self::StateChanged { key, .. } => key,
            Self::IncidentOpened(i) | Self::IncidentUpdated(i) | Self::IncidentResolved(i) => {
                &i.key
            }
        }
    }
}

/// The per-key state machines and the per-service official signals.
#[derive(Clone, Debug)]
pub struct Assessor {
    config: AssessConfig,
    keys: HashMap<Key, KeyState>,
    services: HashMap<ServiceName, ServiceSide>,
}

/// What the official page last said about a service, and the keys of that service.
#[derive(Clone, Debug)]
struct ServiceSide {
    signal: Status,
    title: Option<String>,
    keys: Vec<Key>,
    /// Many people report problems with the service right now: a failing check is believed at
    /// once (the incident opens on the first failure, "confirmed by reports").
    crowd: bool,
}

impl Default for ServiceSide {
    fn default() -> Self {
        Self {
            signal: Status::Unknown,
            title: None,
            keys: Vec::new(),
            crowd: false,
        }
    }
}

/// A ring buffer of healthy latencies.
#[derive(Clone, Debug, Default)]
struct Baseline {
    samples: Vec<f32>,
    /// The slot the next sample overwrites once the buffer is full.
    next: usize,
}

impl Baseline {
    fn push(&mut self, ms: f32, window: usize) {
        if window == 0 || !ms.is_finite() || ms < 0.0 {
            return;
        }
        if self.samples.len() < window {
            if self.samples.capacity() == 0 {
                self.samples.reserve_exact(window);
            }
            self.samples.push(ms);
        } else {
            let slot = self.next % self.samples.len();
            self.samples[slot] = ms;
            self.next = (slot + 1) % self.samples.len();
        }
    }

    fn median(&self) -> Option<f64> {
        if self.samples.is_empty() {
            return None;
        }
        let mut sorted = self.samples.clone();
        sorted.sort_unstable_by(f32::total_cmp);
        let mid = sorted.len() / 2;
        Some(if sorted.len() % 2 == 1 {
            f64::from(sorted[mid])
        } else {
            (f64::from(sorted[mid - 1]) + f64::from(sorted[mid])) / 2.0
        })
    }
}

/// One key's state machine.
#[derive(Clone, Debug)]
struct KeyState {
    /// The state last reported.
    shown: Status,
    since: Option<DateTime<Utc>>,
    /// A known (not Unknown) observation was seen since start or restore.
    observed: bool,
    /// The latest observation was Unknown.
    gap: bool,
    /// Consecutive failed observations (gaps skipped).
    failures: u32,
    /// Any of those failures was Down.
    run_down: bool,
    /// The last known (not Unknown) outcomes, newest in bit 0: 1 failed, 0 passed.
    recent: u32,
    /// The open incident was opened by scattered failures, not by a run.
    intermittent: bool,
    /// The cause of the latest failure.
    run_cause: Cause,
    /// The latest probe or canary observation's health and cause.
    last: Option<(Health, Cause)>,
    incident: Option<Incident>,
    /// Consecutive validated successes while validating.
    passes: u32,
    probe_baseline: Baseline,
    canary_baseline: Baseline,
    /// Unix second of the last incident opened, and how many opened in it (for unique ids).
    last_open_secs: i64,
    opens_in_second: u32,
}

impl KeyState {
    fn new(shown: Status) -> Self {
        Self {
            shown,
            since: None,
            observed: false,
            gap: false,
            failures: 0,
            run_down: false,
            recent: 0,
            intermittent: false,
            run_cause: Cause::Ok,
            last: None,
            incident: None,
            passes: 0,
            probe_baseline: Baseline::default(),
            canary_baseline: Baseline::default(),
            last_open_secs: i64::MIN,
            opens_in_second: 0,
        }
    }

    fn baseline(&self, source: Source) -> &Baseline {
        match source {
            Source::Canary => &self.canary_baseline,
            Source::Probe | Source::Official => &self.probe_baseline,
        }
    }

    fn baseline_mut(&mut self, source: Source) -> &mut Baseline {
        match source {
            Source::Canary => &mut self.canary_baseline,
            Source::Probe | Source::Official => &mut self.probe_baseline,
        }
    }

    /// The state the counters, the incident and the official signal call for.
    fn derive(&self, official: Status) -> Status {
        if self.gap {
            Status::Unknown
        } else if let Some(incident) = &self.incident {
            incident.severity
        } else if !self.observed {
            self.shown
        } else if self.failures > 0 && official == Status::Maintenance {
            Status::Maintenance
        } else {
            Status::Operational
        }
    }

    /// Remembers one known outcome in the intermittent window.
    fn remember(&mut self, failed: bool, window: u32) {
        let mask = if window >= 32 {
            u32::MAX
        } else {
            (1u32 << window) - 1
        };
        self.recent = ((self.recent << 1) | u32::from(failed)) & mask;
    }

    /// Failures among the remembered outcomes.
    fn recent_failures(&self) -> u32 {
        self.recent.count_ones()
    }

    /// Reports a state change, if any.
    fn settle(&mut self, key: &Key, official: Status, now: DateTime<Utc>, events: &mut Vec<Event>) {
        let to = self.derive(official);
        if to != self.shown {
            events.push(Event::StateChanged {
                key: key.clone(),
                from: self.shown,
                to,
                at: now,
            });
            self.shown = to;
            self.since = Some(now);
        }
    }

    fn incident_id(&mut self, key: &Key, opened_at: DateTime<Utc>) -> String {
        let secs = opened_at.timestamp();
        if secs == self.last_open_secs {
            self.opens_in_second += 1;
        } else {
            self.last_open_secs = secs;
            self.opens_in_second = 1;
        }
        let mut id = format!(
            "inc-{}-{}-{}-{secs}",
            key.service,
            slug(key.component.as_str()),
            slug(key.region.as_str())
        );
        if self.opens_in_second > 1 {
            id.push_str(&format!("-{}", self.opens_in_second));
        }
        id
    }
}

/// The key's machine, created (with its service index entry) when missing.
fn key_entry<'a>(
    keys: &'a mut HashMap<Key, KeyState>,
    services: &mut HashMap<ServiceName, ServiceSide>,
    key: Key,
) -> &'a mut KeyState {
    match keys.entry(key) {
        Entry::Occupied(slot) => slot.into_mut(),
        Entry::Vacant(slot) => {
            let key = slot.key().clone();
            services
                .entry(key.service.clone())
                .or_default()
                .keys
                .push(key);
            slot.insert(KeyState::new(Status::Unknown))
        }
    }
}

/// `[a-z0-9-]` only, so an id is safe in URLs and file names.
fn slug(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed = out.trim_matches('-');
    if trimmed.is_empty() {
        "x".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// "1 canary check" / "2 canary checks in a row".
fn canaries_in_a_row(n: u32) -> String {
    if n == 1 {
        "1 canary check".to_owned()
    } else {
        format!("{n} canary checks in a row")
    }
}

fn ms(value: f64) -> String {
    format!("{value:.0} ms")
}

fn official_words(signal: Status) -> &'static str {
    match signal {
        Status::Operational => "official page green",
        Status::Degraded => "official page reports degraded performance",
        Status::Outage => "official page reports an outage",
        Status::Maintenance => "official page reports maintenance",
        Status::Unknown | Status::NotRunning => "no official status page has confirmed it",
    }
}

/// A failed observation's cause; `ok` on a failure says nothing, so it becomes `unknown`.
fn failure_cause(cause: Cause) -> Cause {
    if cause == Cause::Ok {
        Cause::Unknown
    } else {
        cause
    }
}

fn agrees(signal: Status) -> bool {
    matches!(signal, Status::Outage | Status::Degraded)
}

fn confirmed_text(signal: Status, title: Option<&str>) -> String {
    match title {
        Some(title) if !title.trim().is_empty() => format!(
            "confirmed by the provider: “{}” ({})",
            title.trim(),
            official_words(signal)
        ),
        _ => format!("confirmed by the provider: {}", official_words(signal)),
    }
}

/// Samples a key's probe baseline needs before its own latency judges a probe slow.
pub const MIN_BASELINE_SAMPLES: usize = 10;

/// An Up probe observation of a key with no open incident whose latency is past
/// [`AssessConfig::slow_above`] its probe baseline (of at least [`MIN_BASELINE_SAMPLES`]),
/// as the Degraded `slow_responses` observation it stands for; `None` otherwise.
fn slower_than_usual(
    ks: &KeyState,
    obs: &Observation,
    config: &AssessConfig,
) -> Option<Observation> {
    if obs.health != Health::Up || obs.source != Source::Probe || ks.incident.is_some() {
        return None;
    }
    let baseline = &ks.probe_baseline;
    if baseline.samples.len() < MIN_BASELINE_SAMPLES {
        return None;
    }
    let usual = baseline.median()?;
    let total = f64::from(obs.phases.total?);
    if total <= config.slow_above(usual) {
        return None;
    }
    Some(Observation {
        health: Health::Degraded,
        cause: Cause::SlowResponses,
        detail: format!(
            "answered in {} where it usually takes {}",
            ms(total),
            ms(usual)
        ),
        ..obs.clone()
    })
}

/// Why a validating Up observation does not count as a pass, if it doesn't.
fn canary_failure(
    obs: &Observation,
    baseline: Option<f64>,
    config: &AssessConfig,
) -> Option<String> {
    canary_shortfall(
        obs.complete,
        obs.phases.total.map(f64::from),
        baseline,
        config,
    )
}

/// The recovery validation the monitor and the gateway share: a successful canary still fails
/// when its answer was cut off or it was slow against the baseline. `None` means it passed.
pub fn canary_shortfall(
    complete: Option<bool>,
    total_ms: Option<f64>,
    baseline_ms: Option<f64>,
    config: &AssessConfig,
) -> Option<String> {
    if complete == Some(false) {
        return Some("truncated answer".to_owned());
    }
    if let (Some(total), Some(base)) = (total_ms, baseline_ms) {
        if total > config.slow_above(base) {
            return Some(format!("slow: {} vs baseline {}", ms(total), ms(base)));
        }
    }
    None
}

impl Assessor {
    pub fn new(config: AssessConfig) -> Self {
        Self {
            config,
            keys: HashMap::new(),
            services: HashMap::new(),
        }
    }

    /// Restart: resume open incidents and last states so nothing is reopened or lost.
    ///
    /// Resolved incidents in `open_incidents` are ignored; of two open incidents for one key the
    /// later-opened one is kept. A validating incident restarts its canary count. Latency
    /// baselines are not part of this; see [`Assessor::seed_baseline`].
    pub fn restore(
        config: AssessConfig,
        states: Vec<(Key, Status)>,
        open_incidents: Vec<Incident>,
    ) -> Self {
        let mut assessor = Self::new(config);
        for (key, state) in states {
            if state == Status::Maintenance {
                // The page said maintenance before the restart; assume it still does until the
                // first official poll says otherwise.
                let side = assessor.services.entry(key.service.clone()).or_default();
                if side.signal == Status::Unknown {
                    side.signal = Status::Maintenance;
                }
            }
            assessor.key_state(key).shown = state;
        }
        for incident in open_incidents {
            if !incident.is_open() {
                continue;
            }
            let ks = assessor.key_state(incident.key.clone());
            if ks
                .incident
                .as_ref()
                .is_some_and(|kept| kept.opened_at > incident.opened_at)
            {
                continue;
            }
            ks.last_open_secs = incident.opened_at.timestamp();
            ks.opens_in_second = 1;
            if ks.shown != Status::Unknown {
                ks.shown = incident.severity;
            }
            ks.since = ks.since.or(Some(incident.opened_at));
            ks.run_cause = incident.cause;
            ks.incident = Some(incident);
        }
        assessor
    }

    pub fn config(&self) -> &AssessConfig {
        &self.config
    }

    /// Several instances on one database: the open incidents the store holds for `service`
    /// (written by the instance that ran its checks) replace this assessor's own for the same
    /// keys, so an instance that takes the service over continues the same incident instead of
    /// opening a second one.
    pub fn adopt(&mut self, service: &ServiceName, stored: &[Incident]) {
        for incident in stored
            .iter()
            .filter(|i| &i.key.service == service && i.is_open())
        {
            let ks = self.key_state(incident.key.clone());
            if ks
                .incident
                .as_ref()
                .is_some_and(|own| own.id == incident.id)
            {
                continue;
            }
            ks.last_open_secs = incident.opened_at.timestamp();
            ks.opens_in_second = 1;
            ks.since = ks.since.or(Some(incident.opened_at));
            ks.run_cause = incident.cause;
            ks.incident = Some(incident.clone());
        }
    }

    /// The key's machine, created (with its service index entry) when missing.
    fn key_state(&mut self, key: Key) -> &mut KeyState {
        key_entry(&mut self.keys, &mut self.services, key)
    }

    /// Adds healthy latencies (oldest first) to a key's baseline for `source`, e.g. from the
    /// store after a restart.
    pub fn seed_baseline(&mut self, key: &Key, source: Source, latencies_ms: &[f32]) {
        let window = self.config.baseline_window;
        let ks = self.key_state(key.clone());
        for &latency in latencies_ms {
            ks.baseline_mut(source).push(latency, window);
        }
    }

    /// The median of the key's recent healthy latencies from `source`, if any were recorded.
    pub fn baseline_ms(&self, key: &Key, source: Source) -> Option<f64> {
        self.keys.get(key)?.baseline(source).median()
    }

    /// An own-probe or canary observation (Source::Probe / Source::Canary).
    ///
    /// Observations with `Source::Official` are ignored: the official page comes in through
    /// [`Assessor::official`].
    pub fn observe(&mut self, obs: &Observation, now: DateTime<Utc>) -> Vec<Event> {
        let mut events = Vec::new();
        if obs.source == Source::Official {
            return events;
        }
        let key = Key::of(obs);
        let ks = key_entry(&mut self.keys, &mut self.services, key.clone());
        // A probe that answers, but far slower than this key's own baseline, is a slow one.
        let slowed = slower_than_usual(ks, obs, &self.config);
        let obs = slowed.as_ref().unwrap_or(obs);
        let side = self.services.get(&obs.service);
        let signal = side.map_or(Status::Unknown, |s| s.signal);
        let title = side.and_then(|s| s.title.as_deref());
        let crowd = side.is_some_and(|s| s.crowd);
        let config = &self.config;
        // Reports from many people corroborate a failing check: no need to wait for a run.
        let open_after = if crowd { 1 } else { config.open_after() };
        let mut dirty = false;
        ks.last = Some((obs.health, obs.cause));

        match obs.health {
            Health::Unknown => ks.gap = true,
            Health::Down | Health::Degraded => {
                ks.gap = false;
                ks.observed = true;
                ks.failures = ks.failures.saturating_add(1);
                ks.run_down |= obs.health == Health::Down;
                ks.run_cause = failure_cause(obs.cause);
                ks.remember(true, config.window());
                let passes = ks.passes;
                match ks.incident.as_mut() {
                    None => {
                        let in_a_row = ks.failures >= open_after;
                        let scattered = ks.recent_failures() >= config.intermittent_after();
                        if (in_a_row || scattered) && signal != Status::Maintenance {
                            let opening = if in_a_row {
                                Opening::InARow
                            } else {
                                Opening::Intermittent(config.window())
                            };
                            let incident =
                                open_incident(ks, &key, obs, signal, title, opening, now);
                            events.push(Event::IncidentOpened(incident));
                        }
                    }
                    Some(incident) => {
                        // An intermittent incident becomes an outage only when its failures
                        // come in a run again.
                        let run = ks.failures >= config.open_after() && ks.run_down;
                        if run {
                            ks.intermittent = false;
                        }
                        dirty = worsen(incident, obs, !ks.intermittent, now);
                        if incident.phase == IncidentPhase::Validating {
                            dirty = true;
                            if obs.health == Health::Down {
                                incident.phase = IncidentPhase::Open;
                                incident.note(
                                    now,
                                    TimelineKind::Reopened,
                                    format!(
                                        "down again ({}) after {passes} passed canar{}: back to open, validation starts over on the next success",
                                        failure_cause(obs.cause),
                                        if passes == 1 { "y" } else { "ies" }
                                    ),
                                );
                            } else {
                                incident.note(
                                    now,
                                    TimelineKind::CanaryFailed,
                                    format!(
                                        "canary failed: error: {}; count restarts (0/{})",
                                        failure_cause(obs.cause),
                                        config.close_after()
                                    ),
                                );
                            }
                            ks.passes = 0;
                        }
                    }
                }
            }
            Health::Up => {
                ks.gap = false;
                ks.observed = true;
                ks.failures = 0;
                ks.run_down = false;
                ks.remember(false, config.window());
                let validating = ks
                    .incident
                    .as_ref()
                    .is_some_and(|i| i.phase == IncidentPhase::Validating);
                // A canary with no canary baseline of its own is held to the probes' baseline:
                // the daemon's canaries time the same call as its probes (plus a stream).
                let baseline = if validating {
                    ks.baseline(obs.source)
                        .median()
                        .or_else(|| ks.baseline(Source::Probe).median())
                } else {
                    None
                };
                let mut resolved = false;
                let (left, intermittent) = (ks.recent_failures(), ks.intermittent);
                match ks.incident.as_mut() {
                    None => {
                        if obs.complete != Some(false) {
                            if let Some(total) = obs.phases.total {
                                ks.baseline_mut(obs.source)
                                    .push(total, config.baseline_window);
                            }
                        }
                    }
                    Some(incident) if incident.phase == IncidentPhase::Open => {
                        incident.phase = IncidentPhase::Validating;
                        ks.passes = 0;
                        let latency = obs
                            .phases
                            .total
                            .map(|t| format!(" ({})", ms(f64::from(t))))
                            .unwrap_or_default();
                        incident.note(
                            now,
                            TimelineKind::ValidationStarted,
                            format!(
                                "answers again{latency}; validating recovery: {} must pass",
                                canaries_in_a_row(config.close_after())
                            ),
                        );
                        dirty = true;
                    }
                    Some(incident) => {
                        dirty = true;
                        let close_after = config.close_after();
                        match canary_failure(obs, baseline, config) {
                            Some(reason) => {
                                ks.passes = 0;
                                incident.note(
                                    now,
                                    TimelineKind::CanaryFailed,
                                    format!(
                                        "canary failed: {reason}; count restarts (0/{close_after})"
                                    ),
                                );
                            }
                            None => {
                                ks.passes += 1;
                                let versus = match (obs.phases.total, baseline) {
                                    (Some(t), Some(b)) => {
                                        format!(": {} vs baseline {}", ms(f64::from(t)), ms(b))
                                    }
                                    (Some(t), None) => {
                                        format!(": {} (no baseline yet)", ms(f64::from(t)))
                                    }
                                    (None, _) => String::new(),
                                };
                                // Scattered failures still in the window hold an
                                // intermittent incident open, so a flaky service does not flap
                                // between resolved and reopened.
                                let held = intermittent && left * 2 >= config.intermittent_after();
                                let text = if ks.passes < close_after
                                    || (ks.passes == close_after && !held)
                                {
                                    format!("canary {}/{close_after} passed{versus}", ks.passes)
                                } else if held {
                                    format!(
                                        "canary passed{versus} ({} in a row); {left} of the last {} checks failed: held open until they age out",
                                        ks.passes,
                                        config.window()
                                    )
                                } else {
                                    format!(
                                        "canary passed{versus} ({} in a row); the scattered failures have aged out",
                                        ks.passes
                                    )
                                };
                                incident.note(now, TimelineKind::CanaryPassed, text);
                                resolved = ks.passes >= close_after && !held;
                            }
                        }
                    }
                }
                if resolved {
                    if let Some(mut done) = ks.incident.take() {
                        resolve(&mut done, ks.passes, now);
                        events.push(Event::IncidentResolved(done));
                    }
                    // A recovered key starts a fresh window.
                    ks.recent = 0;
                    ks.intermittent = false;
                    ks.passes = 0;
                    dirty = false;
                }
            }
        }

        if dirty {
            if let Some(incident) = &ks.incident {
                events.push(Event::IncidentUpdated(incident.clone()));
            }
        }
        ks.settle(&key, signal, now, &mut events);
        events
    }

    /// The official page's signal for a service (and the title of its incident, if any).
    /// Whether many people report problems with `service` right now (the crowd's level is
    /// raised): then a failing check opens an incident at once instead of after a run.
    pub fn set_crowd(&mut self, service: &ServiceName, raised: bool) {
        self.services.entry(service.clone()).or_default().crowd = raised;
    }

    pub fn official(
        &mut self,
        service: &ServiceName,
        signal: Status,
        incident_title: Option<&str>,
        now: DateTime<Utc>,
    ) -> Vec<Event> {
        let mut events = Vec::new();
        let side = self.services.entry(service.clone()).or_default();
        side.signal = signal;
        side.title = incident_title.map(str::to_owned);
        for key in &side.keys {
            let Some(ks) = self.keys.get_mut(key) else {
                continue;
            };
            if let Some(incident) = ks.incident.as_mut() {
                if agrees(signal) && !incident.confirmed {
                    incident.confirmed = true;
                    incident.note(
                        now,
                        TimelineKind::Confirmed,
                        confirmed_text(signal, incident_title),
                    );
                    events.push(Event::IncidentUpdated(incident.clone()));
                } else if signal == Status::Operational
                    && incident.confirmed
                    && incident.phase == IncidentPhase::Open
                {
                    incident.confirmed = false;
                    incident.note(
                        now,
                        TimelineKind::Unconfirmed,
                        "official page back to green while own checks still fail: unconfirmed"
                            .to_owned(),
                    );
                    events.push(Event::IncidentUpdated(incident.clone()));
                }
            }
            ks.settle(key, signal, now, &mut events);
        }
        events
    }

    /// The key's current state; Unknown for a key never seen.
    pub fn state(&self, key: &Key) -> Status {
        self.keys.get(key).map_or(Status::Unknown, |ks| ks.shown)
    }

    /// What the own probes of a key say now, for the fusion: an open incident speaks as a
    /// failure, a gap by its cause (the monitor cannot see, is offline, or a local runtime is
    /// absent), a pass by whether the answer was about the account.
    pub fn reading(&self, key: &Key, local: bool, monitor_online: bool) -> ProbeReading {
        let Some(ks) = self.keys.get(key) else {
            return ProbeReading::NotChecked;
        };
        if let Some((Health::Unknown, cause)) = ks.last {
            return ProbeReading::of_observation(Health::Unknown, cause, local, monitor_online);
        }
        if let Some(incident) = &ks.incident {
            return ProbeReading::Failing {
                status: incident.severity,
                cause: incident.cause,
            };
        }
        match (ks.shown, ks.last) {
            (Status::Maintenance, _) => ProbeReading::Failing {
                status: Status::Degraded,
                cause: ks.run_cause,
            },
            (_, Some((Health::Up, cause))) => {
                ProbeReading::of_observation(Health::Up, cause, local, monitor_online)
            }
            // Failures below the hysteresis threshold do not count yet.
            (_, Some(_)) => ProbeReading::Passing,
            (Status::Operational, None) => ProbeReading::Passing,
            (Status::Degraded | Status::Outage, None) => ProbeReading::Failing {
                status: ks.shown,
                cause: ks.run_cause,
            },
            _ => ProbeReading::NotChecked,
        }
    }

    /// Every key's state and since when (None when not known, e.g. right after a restore),
    /// sorted by key.
    pub fn states(&self) -> Vec<(Key, Status, Option<DateTime<Utc>>)> {
        let mut all: Vec<_> = self
            .keys
            .iter()
            .map(|(key, ks)| (key.clone(), ks.shown, ks.since))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// The open (or validating) incidents, sorted by key.
    pub fn open_incidents(&self) -> Vec<Incident> {
        let mut open: Vec<Incident> = self
            .keys
            .values()
            .filter_map(|ks| ks.incident.clone())
            .collect();
        open.sort_by(|a, b| a.key.cmp(&b.key));
        open
    }

    /// The key's open incident, if any.
    pub fn incident(&self, key: &Key) -> Option<&Incident> {
        self.keys.get(key)?.incident.as_ref()
    }

    /// True while a key is validating recovery: the scheduler then runs canary checks (a tiny
    /// streamed answer) instead of plain probes.
    pub fn wants_canary(&self, key: &Key) -> bool {
        self.incident(key)
            .is_some_and(|i| i.phase == IncidentPhase::Validating)
    }

    /// Human summary for dashboards: e.g. "unconfirmed outage — official page green",
    /// "outage confirmed by the provider", "recovering: 1 of 2 canaries passed".
    pub fn describe(&self, key: &Key) -> String {
        let Some(ks) = self.keys.get(key) else {
            return "unknown — no observations yet".to_owned();
        };
        let side = self.services.get(&key.service);
        let signal = side.map_or(Status::Unknown, |s| s.signal);
        let title = side.and_then(|s| s.title.as_deref());
        if ks.gap {
            return "unknown — no usable observation (the monitor's own network is down or the source is unreadable)".to_owned();
        }
        if let Some(incident) = &ks.incident {
            let what = incident.severity.noun();
            return match incident.phase {
                IncidentPhase::Validating => format!(
                    "recovering: {} of {} canaries passed",
                    ks.passes,
                    self.config.close_after()
                ),
                _ if incident.confirmed => match title {
                    Some(title) if !title.trim().is_empty() => {
                        format!("{what} confirmed by the provider: “{}”", title.trim())
                    }
                    _ => format!("{what} confirmed by the provider"),
                },
                _ if signal == Status::Maintenance => {
                    format!("{what} — official page reports maintenance")
                }
                _ => format!("unconfirmed {what} — {}", official_words(signal)),
            };
        }
        match ks.shown {
            Status::Maintenance => {
                "maintenance announced by the provider; own checks fail meanwhile".to_owned()
            }
            Status::Unknown => "unknown — no observations yet".to_owned(),
            _ if ks.failures > 0 => format!(
                "operational — {} of {} failed checks in a row before an incident opens ({})",
                ks.failures,
                self.config.open_after(),
                ks.run_cause
            ),
            _ if agrees(signal) => format!("operational here — {}", official_words(signal)),
            _ => "operational".to_owned(),
        }
    }
}

/// Why an incident opens: failures in a row, or scattered failures within the last N checks.
#[derive(Clone, Copy)]
enum Opening {
    InARow,
    Intermittent(u32),
}

/// Opens the key's incident from its failure run; returns a copy for the event. Failures in a
/// row are an outage when any was Down; scattered failures are at most a degradation (some
/// requests still get through).
fn open_incident(
    ks: &mut KeyState,
    key: &Key,
    obs: &Observation,
    signal: Status,
    title: Option<&str>,
    opening: Opening,
    now: DateTime<Utc>,
) -> Incident {
    let severity = if ks.run_down && matches!(opening, Opening::InARow) {
        Status::Outage
    } else {
        Status::Degraded
    };
    let confirmed = agrees(signal);
    let mut incident = Incident {
        id: ks.incident_id(key, now),
        key: key.clone(),
        opened_at: now,
        updated_at: now,
        resolved_at: None,
        phase: IncidentPhase::Open,
        severity,
        cause: failure_cause(obs.cause),
        confirmed,
        timeline: Vec::new(),
    };
    let detail = if obs.detail.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", obs.detail.trim())
    };
    let fusion = if confirmed {
        String::new()
    } else {
        format!(
            "; unconfirmed {} — {}",
            severity.noun(),
            official_words(signal)
        )
    };
    let run = match opening {
        Opening::InARow => format!("{} failed checks in a row", ks.failures),
        Opening::Intermittent(window) => format!(
            "{} of the last {window} checks failed (intermittent)",
            ks.recent_failures()
        ),
    };
    incident.note(
        now,
        TimelineKind::Opened,
        format!(
            "{} after {run} ({}){detail}{fusion}",
            severity.noun(),
            failure_cause(obs.cause)
        ),
    );
    if confirmed {
        incident.note(now, TimelineKind::Confirmed, confirmed_text(signal, title));
    }
    ks.passes = 0;
    ks.intermittent = matches!(opening, Opening::Intermittent(_));
    ks.incident = Some(incident.clone());
    incident
}

/// Applies a failed observation's severity and cause to an open incident; true if it changed.
fn worsen(
    incident: &mut Incident,
    obs: &Observation,
    may_become_outage: bool,
    now: DateTime<Utc>,
) -> bool {
    let mut changed = false;
    if obs.health == Health::Down && may_become_outage && incident.severity != Status::Outage {
        incident.severity = Status::Outage;
        incident.note(
            now,
            TimelineKind::Worsened,
            format!(
                "worsened to an outage: checks now fail outright ({})",
                failure_cause(obs.cause)
            ),
        );
        changed = true;
    }
    if obs.cause != incident.cause && !matches!(obs.cause, Cause::Ok | Cause::Unknown) {
        incident.note(
            now,
            TimelineKind::CauseChanged,
            format!("cause changed: {} → {}", incident.cause, obs.cause),
        );
        incident.cause = obs.cause;
        changed = true;
    }
    changed
}

fn resolve(incident: &mut Incident, passes: u32, now: DateTime<Utc>) {
    incident.phase = IncidentPhase::Resolved;
    incident.resolved_at = Some(now);
    let lasted = (now - incident.opened_at).to_std().unwrap_or_default();
    let lasted = std::time::Duration::from_secs(lasted.as_secs());
    incident.note(
        now,
        TimelineKind::Resolved,
        format!(
            "recovered: {} passed; the {} lasted {}",
            canaries_in_a_row(passes),
            incident.severity.noun(),
            humantime::format_duration(lasted)
        ),
    );
}
