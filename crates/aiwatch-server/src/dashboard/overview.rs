//! The overview page (`/`): every watched service with its state per component, the official
//! view beside the own probes and whether they agree, 90-day uptime bars and a latency sparkline.

use std::collections::HashMap;

use aiwatch_core::assess::Incident;
use aiwatch_core::assessment::{Agreement, Assessment, Notice};
use aiwatch_core::observation::{Component, Health, Region};
use aiwatch_core::official::{Maintenance, MaintenanceStatus};
use aiwatch_core::plan_b::Viewer;
use aiwatch_core::Service;
use aiwatch_core::Status;
use aiwatch_store::{IncidentQuery, Selector, TimeRange};
use std::sync::Arc;

use axum::extract::{Extension, State as AxumState};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Duration, Utc};
use maud::{html, Markup};

use super::cache::{History, HistoryCache};
use super::history::{self, Day, DAYS};
use super::layout::{self, Nav, Page};
use super::present::{self, Tone};
use super::{charts, Shared};
use crate::engine::{Engine, OfficialNow, ServiceNow};

/// How many recent checks the sparkline draws.
pub const SPARK_POINTS: usize = 32;

/// Everything the overview shows, read in one go.
pub struct Overview {
    pub site: String,
    pub now: DateTime<Utc>,
    pub services: Vec<Row>,
    pub maintenances: Vec<Upcoming>,
}

/// One service on the overview.
pub struct Row {
    pub name: String,
    pub title: String,
    /// The core's decision about the service; `state` is its status.
    pub assessment: Assessment,
    pub headline: String,
    pub state: Status,
    pub since: Option<DateTime<Utc>>,
    pub components: Vec<ComponentNow>,
    pub official: OfficialNow,
    pub has_status_page: bool,
    pub days: Vec<Day>,
    pub uptime: Option<f64>,
    /// Latencies of the latest checks of the main component, oldest first.
    pub latency: Vec<f32>,
    pub open_incidents: usize,
    /// How to keep working while this web app fails (the core's plan B), if there is a way.
    pub plan_b: Option<Markup>,
}

/// One component's current state (the worst over regions).
pub struct ComponentNow {
    pub component: Component,
    pub state: Status,
    pub since: Option<DateTime<Utc>>,
    pub description: String,
    pub regions: usize,
}

/// An official maintenance in progress or ahead, with the services it touches.
pub struct Upcoming {
    pub maintenance: Maintenance,
    pub services: Vec<(String, String)>,
}

/// A service's components as the overview lists them (the worst region of each), web first,
/// then the API, as people meet them.
pub fn components_of(now: &ServiceNow) -> Vec<ComponentNow> {
    let mut out: Vec<ComponentNow> = Vec::new();
    for c in &now.components {
        let state = c.assessment.status;
        match out.iter_mut().find(|o| o.component == c.key.component) {
            Some(o) => {
                o.regions += 1;
                if state.severity() > o.state.severity() {
                    o.state = state;
                    o.since = c.since;
                    o.description = c.description.clone();
                }
            }
            None => out.push(ComponentNow {
                component: c.key.component,
                state,
                since: c.since,
                description: c.description.clone(),
                regions: 1,
            }),
        }
    }
    out.sort_by_key(|c| match c.component {
        Component::Web => 0,
        Component::Api => 1,
        Component::Official => 2,
    });
    out
}

/// The component whose latency stands for the service: the API if it has one.
pub fn main_component(service: &Service) -> Component {
    if service.api_base.is_some() {
        Component::Api
    } else {
        Component::Web
    }
}

/// Incidents from the store since `from`, refreshed by the engine's open ones, grouped by service.
pub fn incidents_since(
    engine: &Engine,
    from: DateTime<Utc>,
) -> Result<HashMap<String, Vec<Incident>>, aiwatch_store::Error> {
    let stored = engine.store.incidents(&IncidentQuery {
        from: Some(from),
        limit: 10_000,
        ..IncidentQuery::default()
    })?;
    let mut by_service: HashMap<String, Vec<Incident>> = HashMap::new();
    for incident in with_open(stored, engine.open_incidents()) {
        by_service
            .entry(incident.key.service.to_string())
            .or_default()
            .push(incident);
    }
    Ok(by_service)
}

/// Stored incidents with the engine's open ones in place of their stored copies (the store
/// lags the engine by a write batch).
pub fn with_open(stored: Vec<Incident>, open: Vec<Incident>) -> Vec<Incident> {
    let mut out: Vec<Incident> = stored
        .into_iter()
        .filter(|s| !open.iter().any(|o| o.id == s.id))
        .collect();
    out.extend(open);
    out
}

/// Latencies of a component's latest checks that answered, oldest first.
pub fn recent_latencies(
    engine: &Engine,
    service: &Service,
    component: Component,
    now: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<f32>, aiwatch_store::Error> {
    let selector = Selector::service(service.name.clone())
        .component(component)
        .region(Region::local());
    let rows =
        engine
            .store
            .observations(&selector, TimeRange::last(Duration::hours(24), now), limit)?;
    Ok(rows
        .iter()
        .rev()
        .filter(|o| matches!(o.health, Health::Up | Health::Degraded))
        .filter_map(|o| o.phases.total)
        .collect())
}

/// Official maintenances in progress or ahead, once each, soonest first.
pub fn maintenances(official: &[(String, String, OfficialNow)]) -> Vec<Upcoming> {
    let mut out: Vec<Upcoming> = Vec::new();
    for (name, title, now) in official {
        let Some(view) = &now.view else { continue };
        for m in view
            .maintenances
            .iter()
            .filter(|m| m.status != MaintenanceStatus::Completed)
        {
            match out
                .iter_mut()
                .find(|u| u.maintenance.id == m.id && u.maintenance.name == m.name)
            {
                Some(u) => u.services.push((name.clone(), title.clone())),
                None => out.push(Upcoming {
                    maintenance: m.clone(),
                    services: vec![(name.clone(), title.clone())],
                }),
            }
        }
    }
    out.sort_by_key(|u| u.maintenance.scheduled_for);
    out
}

/// Puts the overview together: live state from the engine, history from a [`History`] read
/// from the store (see `cache`).
pub fn gather(engine: &Engine, history: &History, now: DateTime<Utc>) -> Overview {
    let mut incidents: HashMap<String, Vec<Incident>> = HashMap::new();
    for incident in with_open(history.incidents.clone(), engine.open_incidents()) {
        incidents
            .entry(incident.key.service.to_string())
            .or_default()
            .push(incident);
    }
    let mut services = Vec::with_capacity(engine.services.len());
    let mut official_all = Vec::with_capacity(engine.services.len());
    let all_now = engine.services_now();
    let statuses: Vec<_> = engine
        .services
        .iter()
        .zip(&all_now)
        .map(|(s, n)| (s.name.clone(), n.assessment.status))
        .collect();
    for (service, now_of) in engine.services.iter().zip(all_now) {
        let name = service.name.to_string();
        let components = components_of(&now_of);
        let own: Vec<&Incident> = incidents
            .get(&name)
            .map(|v| v.iter().collect())
            .unwrap_or_default();
        let rollups = history.rollups.get(&name).map_or(&[][..], Vec::as_slice);
        let days = history::days(rollups, &own, now, DAYS);
        let official = engine.official_of(&service.name);
        official_all.push((name.clone(), service.title.clone(), official.clone()));
        services.push(Row {
            title: service.title.clone(),
            state: now_of.assessment.status,
            assessment: now_of.assessment,
            headline: now_of.headline,
            since: now_of.since,
            official,
            has_status_page: service.status.is_some(),
            uptime: history::overall(&days),
            days,
            latency: history.latency.get(&name).cloned().unwrap_or_default(),
            open_incidents: own.iter().filter(|i| i.is_open()).count(),
            components,
            plan_b: present::plan_b(&name, &statuses, Viewer::Dashboard),
            name,
        });
    }
    Overview {
        site: engine.options.page_name.clone(),
        now,
        maintenances: maintenances(&official_all),
        services,
    }
}

/// `GET /`.
pub async fn handler(
    AxumState(engine): AxumState<Shared>,
    Extension(cache): Extension<Arc<HistoryCache>>,
) -> Response {
    let shared = engine.clone();
    super::blocking(&engine, move |engine| {
        let now = Utc::now();
        match cache.get(&shared, now) {
            Ok(history) => {
                layout::html_response(StatusCode::OK, render(&gather(engine, &history, now)))
            }
            Err(e) => super::store_failed(engine, &e),
        }
    })
    .await
}

/// The official side of a service in a few words: "operational", "outage — “Title”".
pub fn official_words(official: &OfficialNow, has_status_page: bool) -> (Tone, String) {
    match (&official.view, &official.unavailable) {
        (Some(view), _) => {
            let mut words = present::signal_word(view.signal).to_owned();
            if let Some(incident) = view.incidents.first() {
                words.push_str(&format!(" — “{}”", incident.name.trim()));
            }
            (Tone::of(view.signal), words)
        }
        (None, Some(_)) => (Tone::Unknown, "unavailable".into()),
        (None, None) if has_status_page => (Tone::Unknown, "not read yet".into()),
        (None, None) => (Tone::Unknown, "no status page".into()),
    }
}

/// The core's word on whether the official page and the own probes agree, with its tone.
pub fn agreement(assessment: &Assessment) -> Option<(Tone, &'static str)> {
    let agreement = assessment.provenance.agreement;
    let tone = match agreement {
        Agreement::Agree | Agreement::Confirmed => Tone::Ok,
        Agreement::OfficialOnly => Tone::Warn,
        Agreement::ProbesOnly => Tone::Bad,
        Agreement::Maintenance => Tone::Maint,
        Agreement::NotComparable => return None,
    };
    Some((tone, agreement.text()?))
}

/// "Official: operational · Our probes: failing since 14:02 (23 min) · disagree: …".
pub fn comparison(
    official: &OfficialNow,
    has_status_page: bool,
    assessment: &Assessment,
    since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Markup {
    let (official_tone, official_text) = official_words(official, has_status_page);
    let own = assessment.provenance.probes;
    html! {
        p.cmp {
            span {
                "Official: "
                b class={"t-" (official_tone.class())} { (official_text) }
            }
            span {
                "Our probes: "
                b class={"t-" (Tone::of(own).class())} {
                    @if own == Status::Unknown && since.is_none() { "not checked yet" } @else { (present::probes_word(own)) }
                }
                @if let Some(since) = since.filter(|_| own != Status::Operational && own != Status::Unknown) {
                    " since " (present::time(since, now)) " (" (present::duration(now - since)) ")"
                }
            }
            @if let Some((tone, words)) = agreement(assessment) {
                span class={"agree a-" (tone.class())} { (present::icon(tone)) (words) }
            }
        }
    }
}

/// The headline: all well, or which services have trouble.
fn banner(overview: &Overview) -> Markup {
    let troubled: Vec<&Row> = overview
        .services
        .iter()
        .filter(|r| r.assessment.is_trouble())
        .collect();
    let unknown = overview
        .services
        .iter()
        .filter(|r| r.state == Status::Unknown)
        .count();
    let absent = overview
        .services
        .iter()
        .filter(|r| r.state == Status::NotRunning)
        .count();
    // The monitor's own trouble, said as such: never counted as the providers'.
    let blind: Vec<&Row> = overview
        .services
        .iter()
        .filter(|r| {
            matches!(
                r.assessment.notice,
                Some(Notice::MonitorCannotSee(_) | Notice::MonitorOffline(_))
            )
        })
        .collect();
    let offline = blind
        .iter()
        .any(|r| matches!(r.assessment.notice, Some(Notice::MonitorOffline(_))));
    let worst = Status::worst(troubled.iter().map(|r| r.state));
    let tone = if troubled.is_empty() && unknown + absent == overview.services.len() {
        Tone::Unknown
    } else if troubled.is_empty() {
        Tone::Ok
    } else {
        Tone::of(worst)
    };
    let headline = if overview.services.is_empty() {
        "No services are watched".to_owned()
    } else if troubled.is_empty() && offline {
        "aiwatch's own connection is down: nothing can be measured".to_owned()
    } else if troubled.is_empty() && unknown + absent == overview.services.len() {
        "Waiting for the first checks".to_owned()
    } else if troubled.is_empty() && unknown > 0 {
        format!(
            "No trouble seen; {} not measured",
            present::plural(unknown, "service", "services")
        )
    } else if troubled.is_empty() {
        "All watched services are operational".to_owned()
    } else {
        let verb = if troubled.len() == 1 { "has" } else { "have" };
        format!(
            "{} of {} services {verb} trouble",
            troubled.len(),
            overview.services.len()
        )
    };
    html! {
        section class={"banner b-" (tone.class())} aria-labelledby="headline" {
            (present::icon(tone))
            div {
                h1 #headline { (headline) }
                @if !troubled.is_empty() {
                    ul.trouble {
                        @for row in &troubled {
                            li { a href={"/services/" (row.name)} { (row.title) } ": " (present::state_word(row.state).to_lowercase()) }
                        }
                    }
                }
                @if !blind.is_empty() {
                    div.notice role="note" {
                        strong { "Monitor health: " }
                        @if offline { "this server's own connection is down; what it cannot see is shown as unknown, never as an outage." }
                        @else {
                            "this server cannot reach "
                            @for (i, row) in blind.iter().enumerate() {
                                @if i > 0 { ", " }
                                a href={"/services/" (row.name)} { (row.title) }
                                @if let Some(n) = row.assessment.notice { " (" (n.cause()) ")" }
                            }
                            " from its own network: its DNS, firewall or proxy is in the way. That is the monitor's trouble, not the providers'."
                        }
                    }
                }
                p.meta {
                    "Updated " (present::time(overview.now, overview.now))
                    @if unknown > 0 && unknown < overview.services.len() { " · " (present::plural(unknown, "service", "services")) " not measured" }
                    @if absent > 0 { " · " (present::plural(absent, "local runtime", "local runtimes")) " not running here" }
                }
            }
        }
    }
}

/// Maintenance announced by providers, shown before it starts.
pub fn maintenance_list(list: &[Upcoming], now: DateTime<Utc>) -> Markup {
    html! {
        @if !list.is_empty() {
            section.maint aria-labelledby="maint-title" {
                h2 #maint-title { (present::icon(Tone::Maint)) "Scheduled maintenance" }
                ul {
                    @for u in list {
                        li {
                            strong { (u.maintenance.name) }
                            " · "
                            @for (i, (name, title)) in u.services.iter().enumerate() {
                                @if i > 0 { ", " }
                                a href={"/services/" (name)} { (title) }
                            }
                            " · "
                            @match (u.maintenance.scheduled_for, u.maintenance.scheduled_until) {
                                (Some(from), Some(until)) => { (present::time(from, now)) " – " (present::time(until, now)) }
                                (Some(from), None) => { "from " (present::time(from, now)) }
                                (None, Some(until)) => { "until " (present::time(until, now)) }
                                (None, None) => { "time not announced" }
                            }
                            @if u.maintenance.status.is_active() { " · " strong { "in progress" } }
                        }
                    }
                }
            }
        }
    }
}

/// The sparkline with its figure.
/// The sparkline of the latest answered checks; while the service fails, the figure says so
/// instead of showing the last good latency.
pub fn latency_box(latency: &[f32], state: Status) -> Markup {
    let latest = latency.last().copied();
    let median = median(latency);
    let label = match (latest, median) {
        (Some(l), Some(m)) => format!(
            "Latency of the last {} checks: latest {}, median {}",
            latency.len(),
            present::ms(f64::from(l)),
            present::ms(m)
        ),
        _ => "No latency measured yet".to_owned(),
    };
    html! {
        div.lat {
            (charts::sparkline(latency, &label))
            span.latv {
                @if state == Status::Outage { "failing" }
                @else if let Some(l) = latest { (present::ms(f64::from(l))) }
                @else { "—" }
            }
        }
    }
}

/// The median of some values.
pub fn median(values: &[f32]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f32::total_cmp);
    Some(f64::from(sorted[sorted.len() / 2]))
}

fn service_row(row: &Row, now: DateTime<Utc>) -> Markup {
    let tone = Tone::of(row.state);
    html! {
        article class={"svc s-" (tone.class())} aria-labelledby={"svc-" (row.name)} {
            div.head {
                h2 id={"svc-" (row.name)} { a href={"/services/" (row.name)} { (row.title) } }
                (present::state_pill(row.state))
                @if row.open_incidents > 0 {
                    a.incl href={"/services/" (row.name) "#incidents"} { (present::plural(row.open_incidents, "open incident", "open incidents")) }
                }
            }
            @if row.components.is_empty() {
                p.comps { "No checks yet." }
            } @else {
                ul.comps aria-label="Components" {
                    @for c in &row.components {
                        @let word = present::state_word(c.state).to_lowercase();
                        li title=[(c.description != word).then_some(&c.description)] {
                            span.cn { (c.component) }
                            (present::icon(Tone::of(c.state)))
                            b class={"t-" (Tone::of(c.state).class())} { (word) }
                            @if c.regions > 1 { span.sub { " (worst of " (c.regions) " regions)" } }
                        }
                    }
                }
            }
            (comparison(&row.official, row.has_status_page, &row.assessment, row.since, now))
            @if let Some(plan_b) = &row.plan_b { (plan_b) }
            div.hist {
                div.barsbox {
                    (charts::uptime_bars(&row.days, row.uptime))
                    (charts::bars_axis(row.uptime))
                }
                (latency_box(&row.latency, row.state))
            }
        }
    }
}

/// The overview page.
pub fn render(overview: &Overview) -> Markup {
    let main = html! {
        (banner(overview))
        (maintenance_list(&overview.maintenances, overview.now))
        section.services aria-label="Services" {
            @for row in &overview.services {
                (service_row(row, overview.now))
            }
        }
        (legend())
    };
    layout::page(
        &Page {
            title: "",
            site: &overview.site,
            nav: Nav::Overview,
            refresh: true,
        },
        main,
    )
}

/// What the colors, shapes and heights mean.
pub fn legend() -> Markup {
    html! {
        section.legend aria-label="Legend" {
            @for state in [Status::Operational, Status::Degraded, Status::Outage, Status::Maintenance, Status::Unknown] {
                span { (present::icon(Tone::of(state))) (present::state_word(state)) }
            }
            span.note { "Taller bars mark worse days; hover or focus a bar for its day." }
        }
    }
}
