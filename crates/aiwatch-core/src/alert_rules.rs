//! Which notifications each `[[alert]]` is owed, moment after moment. It reads only the one
//! fused picture (never raw probe results) and decides, per alert:
//!
//! - the monitor's own trouble (its connection, its DNS, an interceptor in its path) is one
//!   `monitor_trouble` subject, never an alert per service;
//! - an account problem is told as "your account", not as an outage;
//! - a trouble that goes away and comes back within the alert's `settle` continues the one
//!   alert (no second `opened`, no `recovered` in between) — the event-level debounce on top
//!   of the assessor's hysteresis;
//! - components in the provider's announced maintenance are muted, and the maintenance itself
//!   is told once;
//! - `min_duration`, `repeat` and quiet hours as [`AlertConfig::due`] says.
//!
//! Pure: the caller passes the picture and the time; every decision carries an idempotency key
//! (`<subject id>:<event>`, reminders `…:r<n>`) so the store's outbox can make it durable and a
//! replay after a restart is recognised.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::alert::{AlertConfig, AlertEvent};
use crate::assess::Key;
use crate::assessment::{Agreement, Assessment, Notice};
use crate::cause::{AdviceContext, Cause, Scope, Status};

/// The version of [`AlertMessage`]'s JSON (the webhook body); bumped on incompatible changes.
pub const MESSAGE_VERSION: u32 = 1;

/// What the official page says, as a message carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfficialNote {
    /// The page's indicator (`none`, `minor`, `major`, `critical`, `maintenance`).
    pub indicator: Option<String>,
    /// The title of the page's newest open incident that touches the service.
    pub incident: Option<String>,
    pub url: Option<String>,
}

/// An open incident of a key, as the rules need it.
#[derive(Clone, Debug, PartialEq)]
pub struct IncidentBrief {
    pub id: String,
    pub opened_at: DateTime<Utc>,
    pub confirmed: bool,
}

/// One key of the fused picture.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyPicture {
    pub key: Key,
    /// The service's title ("OpenAI API").
    pub title: String,
    pub assessment: Assessment,
    /// Since when the key's state holds.
    pub since: Option<DateTime<Utc>>,
    pub incident: Option<IncidentBrief>,
    /// One sentence on what is seen.
    pub summary: String,
    /// The advice for the assessment's cause, made concrete for this service.
    pub advice: Vec<String>,
    pub official: Option<OfficialNote>,
}

/// A key of the gateway whose usage rose far above its norm.
#[derive(Clone, Debug, PartialEq)]
pub struct UsageSpike {
    /// The key's label (`key-1`), never the key.
    pub label: String,
    pub since: DateTime<Utc>,
    pub summary: String,
}

/// Everything the rules read at one moment.
#[derive(Clone, Debug)]
pub struct Picture {
    pub at: DateTime<Utc>,
    pub keys: Vec<KeyPicture>,
    /// The monitor's control probe passes.
    pub monitor_online: bool,
    pub usage_spikes: Vec<UsageSpike>,
    /// The dashboard's base address, without a trailing slash.
    pub dashboard: String,
}

/// One notification, rendered once for every channel: the webhook body is its JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertMessage {
    pub version: u32,
    pub event: AlertEvent,
    /// The service's name (`openai-api`); `None` for the monitor's own trouble and usage.
    pub service: Option<String>,
    pub service_title: Option<String>,
    pub component: Option<String>,
    pub region: Option<String>,
    pub status: Status,
    pub scope: Scope,
    pub cause: Cause,
    /// One line: what happened, to whom.
    pub title: String,
    /// One sentence on what is seen.
    pub summary: String,
    pub advice: Vec<String>,
    pub official: Option<OfficialNote>,
    pub dashboard_url: String,
    /// The incident (or other subject) this is about; stable across its notifications.
    pub incident_id: String,
    pub idempotency_key: String,
    pub at: DateTime<Utc>,
    /// When the subject began.
    pub since: DateTime<Utc>,
}

impl AlertMessage {
    /// The plain-text body chat and mail channels send: summary, advice, the official view and
    /// the dashboard link, under the title.
    pub fn text(&self) -> String {
        let mut out = String::new();
        out.push_str(&self.summary);
        if !self.advice.is_empty() && self.event != AlertEvent::Recovered {
            out.push_str("\n\nWhat to do:");
            for line in &self.advice {
                out.push_str("\n• ");
                out.push_str(line);
            }
        }
        out.push_str("\n\n");
        out.push_str(&self.official_line());
        out.push_str("\nDashboard: ");
        out.push_str(&self.dashboard_url);
        out
    }

    /// One line on what the provider's own page says.
    pub fn official_line(&self) -> String {
        match &self.official {
            None => "Official page: not read.".to_owned(),
            Some(note) => match (&note.incident, note.indicator.as_deref()) {
                (Some(title), _) => format!("Official page: \"{title}\""),
                (None, Some("none")) => "Official page: all systems operational.".to_owned(),
                (None, Some(indicator)) => format!("Official page: indicator {indicator}."),
                (None, None) => "Official page: says nothing about it.".to_owned(),
            },
        }
    }
}

/// One notification owed to one alert.
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    /// The `[[alert]]` name.
    pub alert: String,
    pub message: AlertMessage,
}

impl Notification {
    pub fn idempotency_key(&self) -> &str {
        &self.message.idempotency_key
    }
}

/// A notification already decided (read back from the outbox at start).
#[derive(Clone, Debug, PartialEq)]
pub struct Decided {
    pub alert: String,
    pub message: AlertMessage,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// The provider's trouble (own probes, or the official page alone).
    Trouble,
    Account,
    Monitor,
    Maintenance,
    Usage,
}

/// Something that may be told about.
#[derive(Clone, Debug)]
struct Subject {
    id: String,
    /// What a comeback within `settle` continues: the key (or "monitor").
    lineage: String,
    kind: Kind,
    key: Option<Key>,
    title: String,
    status: Status,
    scope: Scope,
    cause: Cause,
    since: DateTime<Utc>,
    confirmed: bool,
    summary: String,
    advice: Vec<String>,
    official: Option<OfficialNote>,
    dashboard_url: String,
}

impl Subject {
    /// The event that tells this subject began.
    fn primary(&self) -> AlertEvent {
        match self.kind {
            Kind::Trouble if self.status == Status::Degraded => AlertEvent::Degraded,
            Kind::Trouble | Kind::Account => AlertEvent::Opened,
            Kind::Monitor => AlertEvent::MonitorTrouble,
            Kind::Maintenance => AlertEvent::MaintenanceStarted,
            Kind::Usage => AlertEvent::UsageSpike,
        }
    }

    fn covered_by(&self, alert: &AlertConfig) -> bool {
        match &self.key {
            Some(key) => {
                alert.covers(&key.service) && alert.covers_part(key.component, key.region.as_str())
            }
            None => true,
        }
    }

    fn message(&self, event: AlertEvent, key_suffix: &str, at: DateTime<Utc>) -> AlertMessage {
        let idempotency_key = format!("{}:{}{key_suffix}", self.id, event.as_str());
        let mut message = AlertMessage {
            version: MESSAGE_VERSION,
            event,
            service: self.key.as_ref().map(|k| k.service.to_string()),
            service_title: self.key.as_ref().map(|_| self.title.clone()),
            component: self.key.as_ref().map(|k| k.component.as_str().to_owned()),
            region: self.key.as_ref().map(|k| k.region.as_str().to_owned()),
            status: self.status,
            scope: self.scope,
            cause: self.cause,
            title: String::new(),
            summary: self.summary.clone(),
            advice: self.advice.clone(),
            official: self.official.clone(),
            dashboard_url: self.dashboard_url.clone(),
            incident_id: self.id.clone(),
            idempotency_key,
            at,
            since: self.since,
        };
        message.title = title(&message, self.kind);
        message
    }
}

/// The one template per event kind: the title line every channel leads with.
fn title(m: &AlertMessage, kind: Kind) -> String {
    let who = m.service_title.as_deref().unwrap_or("aiwatch");
    let place = match (m.scope, m.region.as_deref()) {
        (Scope::Global, _) => " for everyone".to_owned(),
        (Scope::Regional, Some(region)) => format!(" in {region}"),
        (Scope::Local, _) => " from this monitor only".to_owned(),
        _ => String::new(),
    };
    let part = m
        .component
        .as_deref()
        .map(|c| format!(" {c}"))
        .unwrap_or_default();
    match (m.event, kind) {
        (AlertEvent::Opened, Kind::Account) => format!(
            "Your account at {who} has a problem: {} (the service itself is not down)",
            m.cause
        ),
        (AlertEvent::Opened, _) => format!("{who}{part}: outage{place} ({})", m.cause),
        (AlertEvent::Degraded, _) => format!("{who}{part}: degraded{place} ({})", m.cause),
        (AlertEvent::ConfirmedByProvider, _) => {
            format!("{who}{part}: the provider confirms the trouble ({})", m.cause)
        }
        (AlertEvent::Recovered, Kind::Monitor) => {
            "aiwatch's own connection works again; provider checks resume".to_owned()
        }
        (AlertEvent::Recovered, Kind::Account) => format!("Your account at {who} works again"),
        (AlertEvent::Recovered, _) => format!("{who}{part}: recovered"),
        (AlertEvent::MonitorTrouble, _) => format!(
            "aiwatch itself cannot see the providers ({}): this is the monitor's trouble, not theirs",
            m.cause
        ),
        (AlertEvent::MaintenanceStarted, _) => format!("{who}{part}: announced maintenance started"),
        (AlertEvent::UsageSpike, _) => format!("Gateway usage spike: {}", m.summary),
    }
}

/// What an alert has told about a subject.
#[derive(Clone, Debug)]
struct Told {
    subject: Subject,
    /// The primary event told (None when only a confirmation was wanted).
    primary: Option<AlertEvent>,
}

#[derive(Clone, Debug)]
struct Settling {
    told: Told,
    gone_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Default)]
struct AlertState {
    told: HashMap<String, Told>,
    settling: Vec<Settling>,
}

/// The rules of every configured alert, with what each has already told.
#[derive(Clone, Debug)]
pub struct AlertRules {
    alerts: Vec<AlertConfig>,
    state: Vec<AlertState>,
    /// (alert index, idempotency key) of every notification decided.
    decided: HashSet<(usize, String)>,
    /// When the monitor's current trouble began.
    monitor_since: Option<DateTime<Utc>>,
}

impl AlertRules {
    pub fn new(alerts: Vec<AlertConfig>) -> Self {
        let state = vec![AlertState::default(); alerts.len()];
        Self {
            alerts,
            state,
            decided: HashSet::new(),
            monitor_since: None,
        }
    }

    pub fn alerts(&self) -> &[AlertConfig] {
        &self.alerts
    }

    /// Takes back what was decided before a restart, so nothing is told twice and what was
    /// open is followed to its recovery. Oldest first.
    pub fn resume(&mut self, decided: &[Decided]) {
        for d in decided {
            let Some(index) = self.alerts.iter().position(|a| a.name == d.alert) else {
                continue;
            };
            self.decided
                .insert((index, d.message.idempotency_key.clone()));
            let m = &d.message;
            let id = m.incident_id.clone();
            let state = &mut self.state[index];
            match m.event {
                AlertEvent::Recovered => {
                    state.told.remove(&id);
                }
                AlertEvent::Opened
                | AlertEvent::Degraded
                | AlertEvent::MonitorTrouble
                | AlertEvent::MaintenanceStarted
                | AlertEvent::UsageSpike => {
                    let subject = subject_of(m);
                    if subject.kind == Kind::Monitor {
                        self.monitor_since = Some(m.since);
                    }
                    state.told.insert(
                        id,
                        Told {
                            subject,
                            primary: Some(m.event),
                        },
                    );
                }
                AlertEvent::ConfirmedByProvider => {
                    state.told.entry(id).or_insert_with(|| Told {
                        subject: subject_of(m),
                        primary: None,
                    });
                }
            }
        }
    }

    /// The notifications owed at `picture.at`, each decided once.
    pub fn evaluate(&mut self, picture: &Picture) -> Vec<Notification> {
        let now = picture.at;
        let subjects = self.subjects(picture);
        let mut out = Vec::new();
        for index in 0..self.alerts.len() {
            let alert = &self.alerts[index];
            let state = &mut self.state[index];
            let decided = &mut self.decided;
            let mut emit = |subject: &Subject, event: AlertEvent, suffix: &str| {
                let message = subject.message(event, suffix, now);
                if decided.insert((index, message.idempotency_key.clone())) {
                    out.push(Notification {
                        alert: alert.name.clone(),
                        message,
                    });
                }
            };
            let covered: Vec<&Subject> = subjects.iter().filter(|s| s.covered_by(alert)).collect();
            let present: HashSet<&str> = covered.iter().map(|s| s.id.as_str()).collect();

            // Subjects that went away start settling.
            let gone: Vec<String> = state
                .told
                .keys()
                .filter(|id| !present.contains(id.as_str()))
                .cloned()
                .collect();
            for id in gone {
                if let Some(told) = state.told.remove(&id) {
                    state.settling.push(Settling { told, gone_at: now });
                }
            }

            for subject in covered {
                let quiet = alert
                    .quiet_hours
                    .as_ref()
                    .is_some_and(|q| q.is_quiet_at(now));
                let primary = subject.primary();
                if let Some(told) = state.told.get_mut(&subject.id) {
                    told.subject = subject.clone();
                } else if let Some(at) = state
                    .settling
                    .iter()
                    .position(|s| s.told.subject.lineage == subject.lineage)
                {
                    // Back within `settle`: the same alert goes on.
                    let settled = state.settling.remove(at);
                    state.told.insert(
                        subject.id.clone(),
                        Told {
                            subject: subject.clone(),
                            primary: settled.told.primary,
                        },
                    );
                    continue;
                } else {
                    if !alert.due(subject.since, None, now) {
                        continue;
                    }
                    let wanted = alert.wants(primary);
                    if wanted {
                        emit(subject, primary, "");
                    }
                    state.told.insert(
                        subject.id.clone(),
                        Told {
                            subject: subject.clone(),
                            primary: wanted.then_some(primary),
                        },
                    );
                }
                let Some(told) = state.told.get_mut(&subject.id) else {
                    continue;
                };
                if quiet {
                    continue;
                }
                // Worse than told: a degradation that became an outage is told again.
                if primary == AlertEvent::Opened
                    && told.primary != Some(AlertEvent::Opened)
                    && matches!(subject.kind, Kind::Trouble | Kind::Account)
                    && alert.wants(AlertEvent::Opened)
                {
                    emit(subject, AlertEvent::Opened, "");
                    told.primary = Some(AlertEvent::Opened);
                }
                if subject.confirmed
                    && subject.kind == Kind::Trouble
                    && alert.wants(AlertEvent::ConfirmedByProvider)
                {
                    emit(subject, AlertEvent::ConfirmedByProvider, "");
                }
                if let (Some(every), Some(told_event)) = (alert.repeat, told.primary) {
                    let held = (now - subject.since).to_std().unwrap_or_default();
                    let past = held.saturating_sub(alert.min_duration);
                    let n = past.as_secs() / every.as_secs().max(1);
                    if n >= 1
                        && matches!(subject.kind, Kind::Trouble | Kind::Account | Kind::Monitor)
                    {
                        emit(subject, told_event, &format!(":r{n}"));
                    }
                }
            }

            // Recoveries that held for `settle` are told (after quiet hours).
            let quiet = alert
                .quiet_hours
                .as_ref()
                .is_some_and(|q| q.is_quiet_at(now));
            let settle = alert.settle;
            let mut keep = Vec::with_capacity(state.settling.len());
            for settling in std::mem::take(&mut state.settling) {
                let held = (now - settling.gone_at).to_std().unwrap_or_default();
                if held < settle || quiet {
                    keep.push(settling);
                    continue;
                }
                let told = &settling.told;
                let tells_recovery = matches!(
                    told.primary,
                    Some(AlertEvent::Opened | AlertEvent::Degraded | AlertEvent::MonitorTrouble)
                );
                if tells_recovery && alert.wants(AlertEvent::Recovered) {
                    let mut subject = told.subject.clone();
                    subject.status = Status::Operational;
                    subject.summary = recovered_summary(&subject, settling.gone_at);
                    subject.advice.clear();
                    emit(&subject, AlertEvent::Recovered, "");
                }
            }
            state.settling = keep;
        }
        out
    }

    /// The subjects of the picture: the monitor's own trouble as one, each key's trouble,
    /// account problem or maintenance, and each usage spike.
    fn subjects(&mut self, picture: &Picture) -> Vec<Subject> {
        let now = picture.at;
        let mut subjects = Vec::new();
        let monitor_cause = picture
            .keys
            .iter()
            .find_map(|k| match k.assessment.notice {
                Some(
                    Notice::MonitorOffline(c)
                    | Notice::MonitorCannotSee(c)
                    | Notice::MonitorIntercepted(c),
                ) => Some(c),
                _ => None,
            })
            .or((!picture.monitor_online).then_some(Cause::Unknown));
        match monitor_cause {
            Some(cause) => {
                let since = *self.monitor_since.get_or_insert(now);
                let cannot_see: Vec<&str> = picture
                    .keys
                    .iter()
                    .filter(|k| is_monitor_notice(k.assessment.notice))
                    .map(|k| k.title.as_str())
                    .collect();
                let summary = if cannot_see.is_empty() {
                    format!("The monitor's own connection is failing ({cause}); no provider is blamed while it cannot see them.")
                } else {
                    format!(
                        "The monitor cannot reach {} from where it runs ({cause}); no provider is blamed for the monitor's own trouble.",
                        cannot_see.join(", ")
                    )
                };
                subjects.push(Subject {
                    id: format!("monitor-{}", since.timestamp()),
                    lineage: "monitor".into(),
                    kind: Kind::Monitor,
                    key: None,
                    title: "aiwatch".into(),
                    status: Status::Unknown,
                    scope: Scope::Local,
                    cause,
                    since,
                    confirmed: false,
                    summary,
                    advice: cause.advice(&AdviceContext::default()),
                    official: None,
                    dashboard_url: format!("{}/", picture.dashboard),
                });
            }
            None => self.monitor_since = None,
        }
        for k in &picture.keys {
            let a = &k.assessment;
            if is_monitor_notice(a.notice) {
                continue;
            }
            let since = k.since.unwrap_or(now);
            let slug = format!("{}-{}-{}", k.key.service, k.key.component, k.key.region);
            let (kind, id, since) = if a.status == Status::Maintenance {
                (
                    Kind::Maintenance,
                    format!("maint-{slug}-{}", since.timestamp()),
                    since,
                )
            } else if let Some(Notice::Account(_)) = a.notice {
                match &k.incident {
                    Some(i) => (Kind::Account, i.id.clone(), i.opened_at),
                    None => (
                        Kind::Account,
                        format!("account-{slug}-{}", since.timestamp()),
                        since,
                    ),
                }
            } else if a.is_trouble() {
                match &k.incident {
                    Some(i) => (Kind::Trouble, i.id.clone(), i.opened_at),
                    None => (
                        Kind::Trouble,
                        format!("official-{slug}-{}", since.timestamp()),
                        since,
                    ),
                }
            } else {
                continue;
            };
            let confirmed = k.incident.as_ref().is_some_and(|i| i.confirmed)
                || a.provenance.agreement == Agreement::Confirmed;
            subjects.push(Subject {
                id,
                lineage: format!("{kind:?}/{}", k.key),
                kind,
                key: Some(k.key.clone()),
                title: k.title.clone(),
                status: a.status,
                scope: if kind == Kind::Account {
                    Scope::Account
                } else {
                    a.scope
                },
                cause: a.notice.map_or(a.cause, Notice::cause),
                since,
                confirmed,
                summary: k.summary.clone(),
                advice: k.advice.clone(),
                official: k.official.clone(),
                dashboard_url: format!("{}/services/{}", picture.dashboard, k.key.service),
            });
        }
        for spike in &picture.usage_spikes {
            subjects.push(Subject {
                id: format!("usage-{}-{}", spike.label, spike.since.timestamp()),
                lineage: format!("usage/{}", spike.label),
                kind: Kind::Usage,
                key: None,
                title: "aiwatch gateway".into(),
                status: Status::Operational,
                scope: Scope::Account,
                cause: Cause::Unknown,
                since: spike.since,
                confirmed: false,
                summary: spike.summary.clone(),
                advice: Vec::new(),
                official: None,
                dashboard_url: format!("{}/", picture.dashboard),
            });
        }
        subjects
    }
}

fn is_monitor_notice(notice: Option<Notice>) -> bool {
    matches!(
        notice,
        Some(
            Notice::MonitorOffline(_) | Notice::MonitorCannotSee(_) | Notice::MonitorIntercepted(_)
        )
    )
}

fn recovered_summary(subject: &Subject, at: DateTime<Utc>) -> String {
    let lasted = humanize((at - subject.since).to_std().unwrap_or_default());
    match subject.kind {
        Kind::Monitor => format!("The monitor sees the providers again after {lasted}."),
        Kind::Account => format!("The account works again after {lasted}."),
        _ => format!(
            "Checks pass again and the recovery was validated; the trouble ({}) lasted {lasted}.",
            subject.cause
        ),
    }
}

fn humanize(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        _ => format!("{}h {}m", s / 3600, (s % 3600) / 60),
    }
}

/// A subject as a stored message describes it (to follow it after a restart).
fn subject_of(m: &AlertMessage) -> Subject {
    let key = match (&m.service, &m.component, &m.region) {
        (Some(service), Some(component), Some(region)) => {
            match (
                crate::service::ServiceName::parse(service),
                crate::observation::Component::parse(component),
            ) {
                (Ok(service), Some(component)) => {
                    Some(Key::new(service, component, region.as_str()))
                }
                _ => None,
            }
        }
        _ => None,
    };
    let kind = match m.event {
        AlertEvent::MonitorTrouble => Kind::Monitor,
        AlertEvent::MaintenanceStarted => Kind::Maintenance,
        AlertEvent::UsageSpike => Kind::Usage,
        _ if m.scope == Scope::Account => Kind::Account,
        _ => Kind::Trouble,
    };
    let lineage = match (&key, kind) {
        (_, Kind::Monitor) => "monitor".to_owned(),
        (Some(key), kind) => format!("{kind:?}/{key}"),
        (None, _) => m.incident_id.clone(),
    };
    Subject {
        id: m.incident_id.clone(),
        lineage,
        kind,
        key,
        title: m.service_title.clone().unwrap_or_else(|| "aiwatch".into()),
        status: m.status,
        scope: m.scope,
        cause: m.cause,
        since: m.since,
        confirmed: false,
        summary: m.summary.clone(),
        advice: m.advice.clone(),
        official: m.official.clone(),
        dashboard_url: m.dashboard_url.clone(),
    }
}
