//! The incident history page (`/incidents`): own incidents with their timelines, what official
//! pages report now, and scheduled maintenance ahead of time; plus the incident cards the
//! service page reuses.

use aiwatch_core::assess::{Incident, IncidentPhase, TimelineKind};
use aiwatch_core::official;
use aiwatch_core::ServiceName;
use aiwatch_core::Status;
use aiwatch_store::IncidentQuery;
use axum::extract::{Query, State as AxumState};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use maud::{html, Markup};

use super::layout::{self, Nav, Page};
use super::overview::{self, Upcoming};
use super::present::{self, Tone};
use super::Shared;
use crate::engine::Engine;

/// How many incidents the page lists.
const LIMIT: usize = 200;

/// The cause code in words: "provider_error" → "provider error".
pub fn cause_words(incident: &Incident) -> String {
    incident.cause.as_str().replace('_', " ")
}

fn kind_words(kind: TimelineKind) -> &'static str {
    match kind {
        TimelineKind::Opened => "opened",
        TimelineKind::Worsened => "worsened",
        TimelineKind::CauseChanged => "cause changed",
        TimelineKind::Confirmed => "confirmed",
        TimelineKind::Unconfirmed => "unconfirmed",
        TimelineKind::ValidationStarted => "validating",
        TimelineKind::CanaryPassed => "canary passed",
        TimelineKind::CanaryFailed => "canary failed",
        TimelineKind::Resolved => "resolved",
        TimelineKind::Reopened => "reopened",
    }
}

fn phase_words(incident: &Incident) -> &'static str {
    match incident.phase {
        IncidentPhase::Open => "ongoing",
        IncidentPhase::Validating => "recovering, being validated",
        IncidentPhase::Resolved => "resolved",
    }
}

/// One own incident: a summary line, and its timeline folded out (open ones start unfolded).
pub fn incident_card(
    incident: &Incident,
    service_title: Option<&str>,
    now: DateTime<Utc>,
) -> Markup {
    let state = if incident.is_open() {
        incident.severity
    } else {
        Status::Operational
    };
    let lasted = incident.resolved_at.unwrap_or(now) - incident.opened_at;
    html! {
        details.inc open[incident.is_open()] {
            summary {
                span class={"sev t-" (Tone::of(incident.severity).class())} {
                    (present::icon(Tone::of(incident.severity)))
                    (if incident.severity == Status::Outage { "Outage" } else { "Degradation" })
                }
                span.what {
                    @if let Some(title) = service_title {
                        a href={"/services/" (incident.key.service)} { (title) } " · "
                    }
                    (incident.key.component)
                    @if incident.key.region != aiwatch_core::observation::Region::local() { " (" (incident.key.region) ")" }
                    ": " (cause_words(incident))
                }
                span.when {
                    (present::time(incident.opened_at, now)) " · "
                    span class={"t-" (Tone::of(state).class())} { (phase_words(incident)) }
                    " · " (if incident.is_open() { "for " } else { "lasted " }) (present::duration(lasted))
                    " · " (if incident.confirmed { "confirmed by the provider" } else { "not confirmed by the provider" })
                }
            }
            ol.timeline {
                @for entry in &incident.timeline {
                    li class={"k-" (entry.kind.as_str())} {
                        (present::time(entry.at, now))
                        span.kind { (kind_words(entry.kind)) }
                        span.text { (entry.text) }
                    }
                }
            }
        }
    }
}

/// One incident from an official page, with its updates (third-party text, escaped like all).
pub fn official_incident(incident: &official::Incident, now: DateTime<Utc>) -> Markup {
    html! {
        details.inc.off open {
            summary {
                span class={"sev t-" (impact_tone(&incident.impact).class())} {
                    (present::icon(impact_tone(&incident.impact))) "Official"
                }
                span.what { (incident.name) }
                span.when {
                    (incident.status.raw()) " · impact " (incident.impact.raw())
                    @if let Some(at) = incident.created_at { " · since " (present::time(at, now)) }
                    @if let Some(url) = incident.url.as_deref().and_then(present::safe_link) {
                        " · " a href=(url) rel="noopener noreferrer nofollow" { "on the provider's page" }
                    }
                }
            }
            @if !incident.updates.is_empty() {
                ol.timeline {
                    @for update in &incident.updates {
                        li {
                            @if let Some(at) = update.created_at { (present::time(at, now)) }
                            span.kind { (update.status) }
                            span.text { (update.body) }
                        }
                    }
                }
            }
        }
    }
}

fn impact_tone(impact: &official::Impact) -> Tone {
    match impact {
        official::Impact::None => Tone::Ok,
        official::Impact::Minor => Tone::Warn,
        official::Impact::Major | official::Impact::Critical => Tone::Bad,
        official::Impact::Maintenance => Tone::Maint,
        official::Impact::Unknown(_) => Tone::Unknown,
    }
}

/// What the page lists.
pub struct History {
    pub site: String,
    pub now: DateTime<Utc>,
    pub filter: Option<(String, String)>,
    pub incidents: Vec<Incident>,
    /// Official incidents open now: (service name, service title, incident).
    pub official: Vec<(String, String, official::Incident)>,
    pub maintenances: Vec<Upcoming>,
}

/// Reads the history, for one service or all.
pub fn gather(
    engine: &Engine,
    service: Option<&ServiceName>,
    now: DateTime<Utc>,
) -> Result<History, aiwatch_store::Error> {
    let stored = engine.store.incidents(&IncidentQuery {
        service: service.cloned(),
        limit: LIMIT,
        ..IncidentQuery::default()
    })?;
    let open: Vec<Incident> = engine
        .open_incidents()
        .into_iter()
        .filter(|i| service.is_none_or(|s| &i.key.service == s))
        .collect();
    let mut incidents = overview::with_open(stored, open);
    incidents.sort_by_key(|i| std::cmp::Reverse(i.opened_at));
    incidents.truncate(LIMIT);
    let mut official_all = Vec::new();
    let mut official_open: Vec<(String, String, official::Incident)> = Vec::new();
    for s in engine
        .services
        .iter()
        .filter(|s| service.is_none_or(|n| &s.name == n))
    {
        let now_official = engine.official_of(&s.name);
        if let Some(view) = &now_official.view {
            for incident in &view.incidents {
                // One page may cover several services: list its incident once.
                if !official_open
                    .iter()
                    .any(|(_, _, i)| i.id == incident.id && i.name == incident.name)
                {
                    official_open.push((s.name.to_string(), s.title.clone(), incident.clone()));
                }
            }
        }
        official_all.push((s.name.to_string(), s.title.clone(), now_official));
    }
    Ok(History {
        site: engine.options.page_name.clone(),
        now,
        filter: service
            .and_then(|n| engine.services.iter().find(|s| &s.name == n))
            .map(|s| (s.name.to_string(), s.title.clone())),
        incidents,
        official: official_open,
        maintenances: overview::maintenances(&official_all),
    })
}

/// `GET /incidents?service=NAME`.
pub async fn handler(
    AxumState(engine): AxumState<Shared>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let mut service = None;
    for (key, value) in &params {
        if key != "service" || value.is_empty() {
            continue;
        }
        if service.is_some() {
            return super::bad_request(&engine, "Give `service` at most once.");
        }
        match super::find_service(&engine, value) {
            Ok(s) => service = Some(s.name.clone()),
            Err(_) => return super::unknown_service(&engine, value, "/incidents?service="),
        }
    }
    super::blocking(&engine, move |engine| {
        match gather(engine, service.as_ref(), Utc::now()) {
            Ok(history) => layout::html_response(StatusCode::OK, render(engine, &history)),
            Err(e) => super::store_failed(engine, &e),
        }
    })
    .await
}

fn render(engine: &Engine, h: &History) -> Markup {
    let title_of = |name: &ServiceName| {
        engine
            .services
            .iter()
            .find(|s| &s.name == name)
            .map_or_else(|| name.to_string(), |s| s.title.clone())
    };
    let main = html! {
        div.pagehead {
            h1 {
                "Incidents"
                @if let Some((_, title)) = &h.filter { " · " (title) }
            }
            form.filter method="get" action="/incidents" {
                label for="svc-filter" { "Service" }
                select #svc-filter name="service" {
                    option value="" selected[h.filter.is_none()] { "All services" }
                    @for s in &engine.services {
                        option value=(s.name) selected[h.filter.as_ref().is_some_and(|(n, _)| n == s.name.as_str())] { (s.title) }
                    }
                }
                button type="submit" { "Show" }
            }
        }
        (overview::maintenance_list(&h.maintenances, h.now))
        section aria-labelledby="official-title" {
            h2 #official-title { "Reported by the providers now" }
            @if h.official.is_empty() {
                p.empty { "No official page reports an open incident." }
            } @else {
                @for (name, title, incident) in &h.official {
                    p.src { "Status page of " a href={"/services/" (name)} { (title) } }
                    (official_incident(incident, h.now))
                }
            }
        }
        section aria-labelledby="own-title" {
            h2 #own-title { "Seen by aiwatch's probes" }
            @if h.incidents.is_empty() {
                p.empty { "No incidents recorded." }
            } @else {
                @for incident in &h.incidents {
                    (incident_card(incident, Some(&title_of(&incident.key.service)), h.now))
                }
            }
        }
    };
    layout::page(
        &Page {
            title: "Incidents",
            site: &h.site,
            nav: Nav::Incidents,
            refresh: true,
        },
        main,
    )
}
