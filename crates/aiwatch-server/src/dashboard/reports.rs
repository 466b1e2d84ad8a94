//! What people report about a service, on its page: the level the core's detector raised, the
//! last 24 h of reports against the usual for each hour, the most reported symptoms, what
//! public posts say, how late the official page acknowledges outages, and a "Report a problem"
//! form that works without JavaScript (`POST /report`).

use std::sync::Arc;

use aiwatch_core::crowd::CrowdLevel;
use aiwatch_core::official_lag::LagSummary;
use aiwatch_core::symptom::Symptom;
use aiwatch_core::Service;
use aiwatch_store::{PublicPost, TimeRange};
use axum::extract::{ConnectInfo, Extension, Form, State as AxumState};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, DurationRound, Utc};
use maud::{html, Markup};

use super::just_me::SYMPTOMS;
use crate::engine::Engine;
use crate::reports::{Incoming, Refusal};

/// One hour of the chart: reports counted, and the usual for that hour of the day.
pub struct Hour {
    pub start: DateTime<Utc>,
    pub count: u32,
    pub usual: f64,
}

/// The reports part of a service page.
pub struct CrowdView {
    pub level: CrowdLevel,
    pub regions: Vec<String>,
    pub hours: Vec<Hour>,
    pub top: Vec<(String, u32)>,
    pub posts: Vec<PublicPost>,
    pub lag: LagSummary,
    pub page_host: Option<String>,
}

/// Reads what the section shows (store reads: call off the async threads).
pub fn gather(
    engine: &Engine,
    service: &Service,
    now: DateTime<Utc>,
) -> Result<CrowdView, aiwatch_store::Error> {
    let this_hour = now.duration_trunc(Duration::hours(1)).unwrap_or(now);
    let from = this_hour - Duration::days(8);
    let minutes = engine
        .store
        .report_minutes(&service.name, None, TimeRange::new(from, now))?;
    // Counts per hour over 8 days; the last 24 are shown, the 7 days before make the usual.
    let mut per_hour = vec![0u32; 8 * 24 + 1];
    for (at, count) in minutes {
        let index = (at - from).num_hours();
        if let Some(slot) = usize::try_from(index)
            .ok()
            .and_then(|i| per_hour.get_mut(i))
        {
            *slot += count;
        }
    }
    let last = per_hour.len() - 1;
    let hours = (0..24)
        .map(|back| {
            let index = last - (23 - back);
            let usual = (1..=7)
                .filter_map(|d| index.checked_sub(d * 24).map(|i| f64::from(per_hour[i])))
                .sum::<f64>()
                / 7.0;
            Hour {
                start: from + Duration::hours(index as i64),
                count: per_hour[index],
                usual,
            }
        })
        .collect();
    let day = TimeRange::new(now - Duration::hours(24), now);
    let top = engine.store.report_symptoms(&service.name, day)?;
    let posts = engine.store.posts(&service.name, day, 10)?;
    let (level, regions) = engine
        .crowd
        .reading(&service.name)
        .map(|(c, _)| (c.level, c.regions.iter().map(|r| r.to_string()).collect()))
        .unwrap_or((CrowdLevel::None, Vec::new()));
    Ok(CrowdView {
        level,
        regions,
        hours,
        top,
        posts,
        lag: engine
            .crowd
            .lags()
            .remove(&service.name)
            .unwrap_or_else(|| aiwatch_core::official_lag::summarize([])),
        page_host: service
            .status
            .as_ref()
            .and_then(|s| aiwatch_core::network::url_host(s.url()).map(str::to_owned)),
    })
}

fn level_words(level: CrowdLevel) -> (&'static str, &'static str) {
    match level {
        CrowdLevel::None => ("ok", "No unusual number of reports"),
        CrowdLevel::Possible => ("warn", "Possible problems: more reports than usual"),
        CrowdLevel::Likely => ("bad", "Likely problems: far more reports than usual"),
    }
}

/// Bars of the last 24 h of reports, and a line for the usual.
fn chart(hours: &[Hour]) -> Markup {
    const W: f64 = 480.0;
    const H: f64 = 80.0;
    let top = hours
        .iter()
        .map(|h| f64::from(h.count).max(h.usual))
        .fold(1.0_f64, f64::max);
    let step = W / hours.len().max(1) as f64;
    let y = |v: f64| H - v / top * (H - 4.0);
    let usual: String = hours
        .iter()
        .enumerate()
        .map(|(i, h)| format!("{:.1},{:.1}", (i as f64 + 0.5) * step, y(h.usual)))
        .collect::<Vec<_>>()
        .join(" ");
    let total: u32 = hours.iter().map(|h| h.count).sum();
    let label = format!("{total} reports in the last 24 hours");
    html! {
        svg.reportchart viewBox={"0 0 " (W) " " (H)} role="img" aria-label=(label) preserveAspectRatio="none" {
            title { (label) }
            @for (i, h) in hours.iter().enumerate() {
                @if h.count > 0 {
                    rect x=(format!("{:.1}", i as f64 * step + 1.0)) y=(format!("{:.1}", y(f64::from(h.count))))
                        width=(format!("{:.1}", step - 2.0)) height=(format!("{:.1}", H - y(f64::from(h.count))))
                        class="bar" {
                        title { (h.start.format("%H:00")) " UTC: " (h.count) " reports (usually " (format!("{:.1}", h.usual)) ")" }
                    }
                }
            }
            polyline points=(usual) class="usual" fill="none" {}
        }
    }
}

fn symptom_label(id: &str) -> &str {
    Symptom::parse(id)
        .and_then(|s| SYMPTOMS.iter().find(|h| h.symptom == s))
        .map_or(id, |h| h.label)
}

/// The "Report a problem" form (a plain form POST).
pub fn form(service: &str) -> Markup {
    html! {
        form.report method="post" action="/report" {
            input type="hidden" name="service" value=(service);
            fieldset {
                legend { "Report a problem you see with it" }
                div.symptoms {
                    @for s in SYMPTOMS {
                        label.check {
                            input type="radio" name="symptom" value=(s.symptom.id()) required;
                            span { (s.label) }
                        }
                    }
                }
            }
            div.field {
                label for="report-region" { "Region (optional)" }
                input #report-region name="region" maxlength="32" placeholder="e.g. eu-west or fr";
            }
            div.field {
                label for="report-comment" { "Comment (optional)" }
                textarea #report-comment name="comment" maxlength=(crate::reports::COMMENT_CAP) rows="2" {}
            }
            button type="submit" { "Report" }
            p.sub { "One report per hour counts for each service. Your browser keeps a random token; the server stores only a salted hash of it that changes daily, never your address." }
        }
    }
}

/// The section on a service page; `reported` is what the reader's own report did.
pub fn section(view: &CrowdView, service: &str, reported: Option<bool>) -> Markup {
    let (tone, words) = level_words(view.level);
    let last_hour: u32 = view.hours.last().map_or(0, |h| h.count);
    html! {
        section #reports aria-labelledby="reports-title" {
            h2 #reports-title { "What people report" }
            @if let Some(counted) = reported {
                p.notice {
                    @if counted { "Thanks, your report counts. " } @else { "You already reported this service in the last hour; it counts once. " }
                    "Here is what others see right now."
                }
            }
            p class={"crowd " (tone)} {
                strong { (words) }
                @if !view.regions.is_empty() && view.level != CrowdLevel::None {
                    " (" (view.regions.join(", ")) ")"
                }
                " · " (last_hour) " reports this hour"
            }
            (chart(&view.hours))
            p.sub { "Bars: reports per hour, last 24 h (UTC). Line: the usual for that hour over the week before." }
            @if !view.top.is_empty() {
                h3 { "Most reported, last 24 h" }
                ol.top {
                    @for (id, n) in view.top.iter().take(5) {
                        li { (symptom_label(id)) " — " (n) }
                    }
                }
            }
            @if !view.posts.is_empty() {
                h3 { "What people are saying" }
                ul.posts {
                    @for p in &view.posts {
                        li {
                            @match &p.url {
                                Some(url) if url.starts_with("https://") || url.starts_with("http://") => { a href=(url) rel="nofollow noopener" { (p.title) } }
                                _ => { (p.title) }
                            }
                            " " span.sub { (p.source) " · " (p.at.format("%H:%M UTC")) }
                        }
                    }
                }
            }
            @if let Some(sentence) = view.lag.sentence(view.page_host.as_deref().unwrap_or("The official page")) {
                p.sub { (sentence) "." }
            }
            (form(service))
        }
    }
}

/// The client's address, when the request came through the inbound listener.
type Client = Option<Extension<ConnectInfo<std::net::SocketAddr>>>;

/// `POST /report` (the form): takes the report, then sends the reader back to the service page,
/// which shows what others see.
pub async fn post(
    AxumState(engine): AxumState<Arc<Engine>>,
    client: Client,
    headers: HeaderMap,
    Form(params): Form<Vec<(String, String)>>,
) -> Response {
    if params.len() > 8 {
        return super::bad_request(&engine, "Too many fields.");
    }
    let field = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let incoming = Incoming {
        service: field("service").unwrap_or_default(),
        symptom: field("symptom").unwrap_or_default(),
        region: field("region").filter(|r| !r.trim().is_empty()),
        comment: field("comment"),
    };
    let service = incoming.service.clone();
    let (taken, cookie) =
        crate::api::take_report(&engine, &headers, client.map(|c| c.0 .0.ip()), incoming).await;
    let mut response = match taken {
        Ok(counted) => (
            StatusCode::SEE_OTHER,
            [(
                header::LOCATION,
                format!("/services/{service}?reported={}#reports", u8::from(counted)),
            )],
        )
            .into_response(),
        Err(Refusal::Invalid(message)) => return super::bad_request(&engine, &message),
        Err(Refusal::TooMany(wait)) => {
            let mut r = super::layout::error_page(
                &engine.options.page_name,
                StatusCode::TOO_MANY_REQUESTS,
                "Too many reports",
                "Too many reports came from you or your network lately; try again in a while.",
                &[],
            );
            if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return r;
        }
        Err(Refusal::Store) => {
            return super::layout::error_page(
                &engine.options.page_name,
                StatusCode::INTERNAL_SERVER_ERROR,
                "The report could not be saved",
                "aiwatch could not write its store; the log says why.",
                &[],
            )
        }
    };
    if let Some(cookie) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}
