//! The service page (`/services/{name}?range=…`): latency p50/p95 over a chosen range, the
//! latest check's phases, the per-region matrix, own and official incidents with their
//! timelines, and the latest diagnosis with its advice.

use aiwatch_core::assess::{Incident, Key};
use aiwatch_core::assessment::{fuse, Assessment, OfficialReading, ProbeReading};
use aiwatch_core::observation::{Component, PhaseMs, Region};
use aiwatch_core::verdict::Outcome;
use aiwatch_core::Status;
use aiwatch_core::{Scope, Service, Verdict};
use aiwatch_store::{Granularity, IncidentQuery, LatencyHistogram, Rollup, Selector, TimeRange};
use axum::extract::{Path, Query, State as AxumState};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Duration, Utc};
use maud::{html, Markup};

use super::charts::{self, LatencyPoint};
use super::history::{self, DAYS};
use super::layout::{self, Nav, Page};
use super::overview::{self, ComponentNow};
use super::present::{self, Tone};
use super::{incidents, Shared};
use crate::engine::{Engine, OfficialNow};

/// The ranges the latency chart offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Range {
    Day,
    Week,
    Month,
    Quarter,
}

impl Range {
    pub const ALL: [Range; 4] = [Range::Day, Range::Week, Range::Month, Range::Quarter];

    pub fn code(self) -> &'static str {
        match self {
            Range::Day => "24h",
            Range::Week => "7d",
            Range::Month => "30d",
            Range::Quarter => "90d",
        }
    }

    pub fn parse(raw: &str) -> Option<Range> {
        Self::ALL.into_iter().find(|r| r.code() == raw)
    }

    fn words(self) -> &'static str {
        match self {
            Range::Day => "last 24 hours",
            Range::Week => "last 7 days",
            Range::Month => "last 30 days",
            Range::Quarter => "last 90 days",
        }
    }

    fn span(self) -> Duration {
        match self {
            Range::Day => Duration::hours(24),
            Range::Week => Duration::days(7),
            Range::Month => Duration::days(30),
            Range::Quarter => Duration::days(90),
        }
    }

    /// Rollups read and the width of one chart bucket.
    fn resolution(self) -> (Granularity, Duration) {
        match self {
            Range::Day => (Granularity::Minute, Duration::minutes(15)),
            Range::Week => (Granularity::Hour, Duration::hours(2)),
            Range::Month => (Granularity::Hour, Duration::hours(6)),
            Range::Quarter => (Granularity::Day, Duration::days(1)),
        }
    }
}

/// Phase figures of one component's recent checks.
pub struct Phases {
    pub latest: PhaseMs,
    pub latest_at: DateTime<Utc>,
    /// Medians of each phase over `checks` recent checks.
    pub median: PhaseMs,
    /// Median of what the total spent beyond the phases (reading the answer).
    pub median_transfer: Option<f32>,
    pub checks: usize,
}

/// One component's latency over the range.
pub struct ComponentLatency {
    pub component: Component,
    pub points: Vec<LatencyPoint>,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub phases: Option<Phases>,
}

/// One vantage point as the region matrix heads its column.
pub struct RegionColumn {
    pub region: Region,
    pub role: aiwatch_core::regions::RegionRole,
    pub silent: bool,
    pub contact: Option<crate::agents::Contact>,
}

/// Everything the service page shows.
pub struct Detail {
    pub site: String,
    pub now: DateTime<Utc>,
    pub range: Range,
    pub name: String,
    pub title: String,
    pub kind: &'static str,
    /// The core's decision about the service; `state` is its status.
    pub assessment: Assessment,
    pub headline: String,
    pub state: Status,
    pub since: Option<DateTime<Utc>>,
    pub components: Vec<ComponentNow>,
    /// (component, region, state, since, description).
    pub matrix: Vec<(Key, Status, Option<DateTime<Utc>>, String)>,
    /// Every vantage point, this server's first: how the quorum counted it and when its agent
    /// was last heard from.
    pub regions: Vec<RegionColumn>,
    pub official: OfficialNow,
    pub has_status_page: bool,
    pub days: Vec<history::Day>,
    pub uptime_90: Option<f64>,
    pub uptime_range: Option<f64>,
    pub latency: Vec<ComponentLatency>,
    pub incidents: Vec<Incident>,
    pub verdict: Option<Verdict>,
    /// What people report.
    pub crowd: super::reports::CrowdView,
    /// What the reader's own report did (`?reported=1|0` after the form).
    pub reported: Option<bool>,
    /// How to keep working while this web app fails (the core's plan B), if there is a way.
    pub plan_b: Option<Markup>,
}

fn bucket_points(
    rollups: &[&Rollup],
    from: DateTime<Utc>,
    bucket: Duration,
    count: usize,
) -> (Vec<LatencyPoint>, LatencyHistogram) {
    let mut merged = vec![LatencyHistogram::default(); count];
    let mut all = LatencyHistogram::default();
    let width = bucket.num_milliseconds().max(1);
    for r in rollups {
        let index = (r.start - from).num_milliseconds().div_euclid(width);
        if let Some(h) = usize::try_from(index).ok().and_then(|i| merged.get_mut(i)) {
            h.merge(&r.latency);
        }
        all.merge(&r.latency);
    }
    let points = merged
        .iter()
        .enumerate()
        .map(|(i, h)| LatencyPoint {
            start: from + bucket * i as i32,
            p50: h.quantile(0.5),
            p95: h.quantile(0.95),
            count: h.count,
        })
        .collect();
    (points, all)
}

fn median_of(values: impl Iterator<Item = Option<f32>>) -> Option<f32> {
    let mut v: Vec<f32> = values.flatten().collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f32::total_cmp);
    Some(v[v.len() / 2])
}

fn phases_of(
    engine: &Engine,
    service: &Service,
    component: Component,
    now: DateTime<Utc>,
) -> Result<Option<Phases>, aiwatch_store::Error> {
    let selector = Selector::service(service.name.clone())
        .component(component)
        .region(Region::local());
    let rows =
        engine
            .store
            .observations(&selector, TimeRange::last(Duration::hours(24), now), 200)?;
    let timed: Vec<_> = rows.iter().filter(|o| o.phases.total.is_some()).collect();
    let Some(latest) = timed.first() else {
        return Ok(None);
    };
    let pick = |f: fn(&PhaseMs) -> Option<f32>| median_of(timed.iter().map(|o| f(&o.phases)));
    Ok(Some(Phases {
        latest: latest.phases,
        latest_at: latest.at,
        median: PhaseMs {
            dns: pick(|p| p.dns),
            connect: pick(|p| p.connect),
            tls: pick(|p| p.tls),
            first_byte: pick(|p| p.first_byte),
            total: pick(|p| p.total),
        },
        median_transfer: median_of(timed.iter().map(|o| {
            let p = &o.phases;
            let phases = [p.dns, p.connect, p.tls, p.first_byte]
                .iter()
                .flatten()
                .sum::<f32>();
            p.total.map(|t| (t - phases).max(0.0))
        })),
        checks: timed.len(),
    }))
}

/// Reads what the service page needs.
pub fn gather(
    engine: &Engine,
    service: &Service,
    range: Range,
    now: DateTime<Utc>,
) -> Result<Detail, aiwatch_store::Error> {
    let now_of = engine.service_now(&service.name);
    let components = now_of
        .as_ref()
        .map(overview::components_of)
        .unwrap_or_default();
    let local = Region::local();
    let mut matrix: Vec<_> = now_of
        .as_ref()
        .map(|n| {
            n.components
                .iter()
                .map(|c| {
                    (
                        c.key.clone(),
                        c.assessment.status,
                        c.since,
                        c.description.clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    matrix.sort_by(|a, b| {
        (a.0.region != local, &a.0.region).cmp(&(b.0.region != local, &b.0.region))
    });
    let regions: Vec<RegionColumn> = now_of
        .as_ref()
        .map(|n| {
            n.regions
                .iter()
                .map(|r| RegionColumn {
                    region: r.region.clone(),
                    role: r.role,
                    silent: r.silent,
                    contact: engine.agents.contact(&r.region),
                })
                .collect()
        })
        .unwrap_or_default();

    let first_day = history::first_day(now, DAYS);
    let all_incidents = overview::incidents_since(engine, first_day.min(now - range.span()))?;
    let own: Vec<Incident> = all_incidents
        .get(service.name.as_str())
        .cloned()
        .unwrap_or_default();
    let day_rollups = engine.store.rollups(
        &Selector::service(service.name.clone()),
        TimeRange::new(first_day, now),
        Granularity::Day,
    )?;
    let days = history::days(&day_rollups, &own.iter().collect::<Vec<_>>(), now, DAYS);

    let (granularity, bucket) = range.resolution();
    let width = bucket.num_milliseconds();
    let from_ms = (now - range.span()).timestamp_millis().div_euclid(width) * width;
    let from = DateTime::from_timestamp_millis(from_ms).unwrap_or(now - range.span());
    let from = if granularity == Granularity::Day {
        history::first_day(now, range.span().num_days() as usize)
    } else {
        from
    };
    let count = usize::try_from((now - from).num_milliseconds() / width + 1).unwrap_or(1);
    let rollups = if granularity == Granularity::Day && range == Range::Quarter {
        day_rollups.clone()
    } else {
        engine.store.rollups(
            &Selector::service(service.name.clone()),
            TimeRange::new(from, now),
            granularity,
        )?
    };
    let mut counts = aiwatch_store::HealthCounts::default();
    for r in rollups.iter().filter(|r| r.key.component.is_probed()) {
        counts.merge(&r.counts);
    }
    let uptime_range = counts.up_ratio();
    let mut latency = Vec::new();
    let mut names: Vec<Component> = components.iter().map(|c| c.component).collect();
    for r in &rollups {
        if r.key.component.is_probed() && !names.contains(&r.key.component) {
            names.push(r.key.component);
        }
    }
    for component in names {
        let of: Vec<&Rollup> = rollups
            .iter()
            .filter(|r| r.key.component == component)
            .collect();
        let (points, all) = bucket_points(&of, from, bucket, count);
        latency.push(ComponentLatency {
            p50: all.quantile(0.5),
            p95: all.quantile(0.95),
            phases: phases_of(engine, service, component, now)?,
            component,
            points,
        });
    }
    let range_from = now - range.span();
    let mut incidents: Vec<Incident> = own
        .into_iter()
        .filter(|i| i.resolved_at.is_none_or(|r| r >= range_from))
        .collect();
    if incidents.len() < 5 {
        // A quiet range still shows the last few incidents for context.
        let stored = engine.store.incidents(&IncidentQuery {
            service: Some(service.name.clone()),
            limit: 5,
            ..IncidentQuery::default()
        })?;
        let open = engine
            .open_incidents()
            .into_iter()
            .filter(|i| i.key.service == service.name)
            .collect();
        incidents = overview::with_open(stored, open);
    }
    incidents.sort_by_key(|i| std::cmp::Reverse(i.opened_at));
    let (assessment, headline) = match &now_of {
        Some(n) => (n.assessment, n.headline.clone()),
        None => {
            let a = fuse(ProbeReading::NotChecked, OfficialReading::None);
            (a, a.headline(&service.title))
        }
    };
    Ok(Detail {
        site: engine.options.page_name.clone(),
        now,
        range,
        name: service.name.to_string(),
        title: service.title.clone(),
        kind: service.kind.as_str(),
        state: assessment.status,
        assessment,
        headline,
        since: now_of.as_ref().and_then(|n| n.since),
        components,
        matrix,
        regions,
        official: engine.official_of(&service.name),
        has_status_page: service.status.is_some(),
        uptime_90: history::overall(&days),
        days,
        uptime_range,
        latency,
        incidents,
        verdict: engine.latest_verdict(&service.name),
        crowd: super::reports::gather(engine, service, now)?,
        reported: None,
        plan_b: present::plan_b(
            service.name.as_str(),
            &engine.statuses_now(),
            aiwatch_core::plan_b::Viewer::Dashboard,
        ),
    })
}

/// `GET /services/{name}?range=24h|7d|30d|90d`.
pub async fn handler(
    AxumState(engine): AxumState<Shared>,
    Path(name): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let service = match super::find_service(&engine, &name) {
        Ok(s) => s.clone(),
        Err(response) => return response,
    };
    let mut range = None;
    let reported = params
        .iter()
        .find(|(k, _)| k == "reported")
        .map(|(_, v)| v == "1");
    for (key, value) in &params {
        if key != "range" {
            continue;
        }
        if range.is_some() {
            return super::bad_request(&engine, "Give `range` at most once.");
        }
        match Range::parse(value) {
            Some(r) => range = Some(r),
            None => {
                return super::bad_request(&engine, "`range` must be one of 24h, 7d, 30d or 90d.")
            }
        }
    }
    let range = range.unwrap_or(Range::Day);
    super::blocking(&engine, move |engine| {
        match gather(engine, &service, range, Utc::now()) {
            Ok(mut detail) => {
                detail.reported = reported;
                layout::html_response(StatusCode::OK, render(&detail))
            }
            Err(e) => super::store_failed(engine, &e),
        }
    })
    .await
}

fn status_word(status: Status) -> &'static str {
    present::signal_word(status)
}

fn status_tone(status: Status) -> Tone {
    Tone::of(status)
}

/// Who is affected, in words.
pub fn scope_words(scope: Scope) -> &'static str {
    match scope {
        Scope::None => "nobody",
        Scope::Local => "this server's network only",
        Scope::Account => "this server's account only",
        Scope::Regional => "one region",
        Scope::Global => "everyone",
    }
}

fn outcome_tone(outcome: Outcome) -> (Tone, &'static str) {
    match outcome {
        Outcome::Ok => (Tone::Ok, "ok"),
        Outcome::Warn => (Tone::Warn, "warning"),
        Outcome::Fail => (Tone::Bad, "failed"),
        Outcome::Skip => (Tone::Unknown, "skipped"),
    }
}

/// The latest diagnosis: summary, who is affected, the evidence layer by layer, the advice.
pub fn diagnosis(verdict: &Verdict, now: DateTime<Utc>) -> Markup {
    // A fault on this side says nothing good about the service: never show it green.
    let tone = if verdict.scope.is_users_side() {
        Tone::Warn
    } else {
        status_tone(verdict.status)
    };
    html! {
        div class={"diag d-" (tone.class())} {
            p.verdict {
                (present::icon(tone))
                strong { (verdict.summary) }
            }
            dl.facts {
                div { dt { "Service" } dd { (status_word(verdict.status)) } }
                div { dt { "Affects" } dd { (scope_words(verdict.scope)) } }
                div { dt { "Cause" } dd { code { (verdict.cause.as_str()) } } }
                div { dt { "Checked" } dd { (present::time(verdict.checked_at, now)) } }
            }
            @if !verdict.advice.is_empty() {
                h3 { "What to do" }
                ul.advice { @for line in &verdict.advice { li { (line) } } }
            }
            @if !verdict.evidence.is_empty() {
                details.evidence {
                    summary { "Evidence, layer by layer" }
                    table {
                        thead { tr { th scope="col" { "Layer" } th scope="col" { "Result" } th scope="col" { "What was seen" } th scope="col" class="num" { "Time" } } }
                        tbody {
                            @for line in &verdict.evidence {
                                @let (tone, word) = outcome_tone(line.outcome);
                                tr {
                                    td { (line.layer) }
                                    td class={"t-" (tone.class())} { (present::icon(tone)) (word) }
                                    td { (line.detail) }
                                    td.num { @if let Some(ms) = line.ms { (present::ms(ms)) } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn region_name(region: &Region) -> String {
    if *region == Region::local() {
        "this server".into()
    } else {
        region.to_string()
    }
}

/// How a region's word was counted, in words.
fn role_words(column: &RegionColumn) -> &'static str {
    use aiwatch_core::regions::RegionRole;
    if column.silent && column.region != Region::local() {
        return if column.contact.is_some() {
            "silent: not counted"
        } else {
            "never heard from"
        };
    }
    match column.role {
        RegionRole::Failing => "sees trouble",
        RegionRole::Passing => "sees it work",
        RegionRole::NotCounted => "cannot tell",
    }
}

fn region_head(column: &RegionColumn, now: DateTime<Utc>) -> Markup {
    html! {
        (region_name(&column.region))
        span.sub { (role_words(column)) }
        @if let Some(contact) = &column.contact {
            span.sub {
                "agent " (contact.version) ", heard " (present::time(contact.last_contact, now))
                @if contact.clock_offset_ms != 0 {
                    ", clock off by " (present::ms(contact.clock_offset_ms.unsigned_abs() as f64))
                }
            }
        }
    }
}

fn region_matrix(d: &Detail) -> Markup {
    let mut regions: Vec<&Region> = d.regions.iter().map(|c| &c.region).collect();
    let mut components: Vec<Component> = Vec::new();
    for (k, ..) in &d.matrix {
        if !regions.contains(&&k.region) {
            regions.push(&k.region);
        }
        if !components.contains(&k.component) {
            components.push(k.component);
        }
    }
    html! {
        @if d.matrix.is_empty() {
            p.empty { "No checks yet." }
        } @else {
            div.scroll {
                table.matrix {
                    thead {
                        tr {
                            th scope="col" { "Component" }
                            @for r in &regions {
                                th scope="col" {
                                    @match d.regions.iter().find(|c| &c.region == *r) {
                                        Some(column) => { (region_head(column, d.now)) }
                                        None => { (region_name(r)) }
                                    }
                                }
                            }
                        }
                    }
                    tbody {
                        @for c in &components {
                            tr {
                                th scope="row" { (c) }
                                @for r in &regions {
                                    @match d.matrix.iter().find(|(k, ..)| k.component == *c && k.region == **r) {
                                        Some((_, state, since, description)) => {
                                            td title=(description) {
                                                (present::state_pill(*state))
                                                @if let Some(since) = since { span.sub { " since " (present::time(*since, d.now)) } }
                                                @if description.as_str() != present::state_word(*state).to_lowercase() { span.desc { (description) } }
                                            }
                                        }
                                        None => { td.none { "—" } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn phase_table(p: &Phases, now: DateTime<Utc>) -> Markup {
    let latest = charts::phases(&p.latest);
    let median = |name: &str| -> Option<f32> {
        match name {
            "DNS" => p.median.dns,
            "connect" => p.median.connect,
            "TLS" => p.median.tls,
            "first byte" => p.median.first_byte,
            "transfer" => p.median_transfer,
            _ => None,
        }
    };
    html! {
        div.phases {
            p.sub { "Latest check (" (present::time(p.latest_at, now)) "), by phase:" }
            (charts::phase_bar(&p.latest))
            table.ph {
                thead { tr { th scope="col" { "Phase" } th scope="col" class="num" { "Latest" } th scope="col" class="num" { "Median of " (p.checks) } } }
                tbody {
                    @for (name, class, v) in &latest {
                        tr {
                            th scope="row" { span class={"sw " (class)} aria-hidden="true" {} (name) }
                            td.num { (present::ms(*v)) }
                            td.num { @if let Some(m) = median(name) { (present::ms(f64::from(m))) } @else { "—" } }
                        }
                    }
                    tr.total {
                        th scope="row" { "total" }
                        td.num { @if let Some(t) = p.latest.total { (present::ms(f64::from(t))) } }
                        td.num { @if let Some(t) = p.median.total { (present::ms(f64::from(t))) } }
                    }
                }
            }
        }
    }
}

fn latency_section(d: &Detail) -> Markup {
    html! {
        section aria-labelledby="latency-title" {
            div.sechead {
                h2 #latency-title { "Latency, " (d.range.words()) }
                nav.ranges aria-label="Range" {
                    @for r in Range::ALL {
                        a href={"/services/" (d.name) "?range=" (r.code()) "#latency-title"} aria-current=[(r == d.range).then_some("true")] { (r.code()) }
                    }
                }
            }
            p.sub {
                "Uptime over the range: "
                strong { (d.uptime_range.map_or_else(|| "no data".to_owned(), present::percent)) }
                ". History keeps each check's total time; phases are shown for recent checks."
            }
            @if d.latency.is_empty() {
                p.empty { "No latency measured yet." }
            }
            @for c in &d.latency {
                @let label = format!(
                    "Latency of {} over the {}: p50 {}, p95 {}",
                    c.component, d.range.words(),
                    c.p50.map_or_else(|| "no data".to_owned(), present::ms),
                    c.p95.map_or_else(|| "no data".to_owned(), present::ms),
                );
                div.latency {
                    h3 {
                        (c.component)
                        span.figs {
                            "p50 " strong { (c.p50.map_or_else(|| "—".to_owned(), present::ms)) }
                            " · p95 " strong { (c.p95.map_or_else(|| "—".to_owned(), present::ms)) }
                        }
                    }
                    (charts::latency_chart(&c.points, &label, d.now))
                    p.keys aria-hidden="true" {
                        span.k50 { "p50 (median)" }
                        span.k95 { "p95" }
                    }
                    details.data {
                        summary { "Chart data" }
                        div.scroll {
                            table {
                                thead { tr { th scope="col" { "From" } th scope="col" class="num" { "Checks" } th scope="col" class="num" { "p50" } th scope="col" class="num" { "p95" } } }
                                tbody {
                                    @for p in c.points.iter().filter(|p| p.count > 0) {
                                        tr {
                                            td { (present::time(p.start, d.now)) }
                                            td.num { (p.count) }
                                            td.num { (p.p50.map_or_else(|| "—".to_owned(), present::ms)) }
                                            td.num { (p.p95.map_or_else(|| "—".to_owned(), present::ms)) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    @if let Some(p) = &c.phases { (phase_table(p, d.now)) }
                }
            }
        }
    }
}

fn official_section(d: &Detail) -> Markup {
    let view = d.official.view.as_ref();
    html! {
        section aria-labelledby="official-title" {
            h2 #official-title { "The provider's status page" }
            @match (view, &d.official.unavailable) {
                (Some(view), _) => {
                    p {
                        (present::icon(Tone::of(view.signal)))
                        "Says " strong { (present::signal_word(view.signal)) }
                        @if let Some(text) = &view.description { " — “" (text) "”" }
                    }
                    @if !view.components.is_empty() {
                        ul.offcomps {
                            @for c in &view.components {
                                li { span.cn { (c.name) } " " span.sub { (c.status.raw().replace('_', " ")) } }
                            }
                        }
                    }
                    @for incident in &view.incidents { (incidents::official_incident(incident, d.now)) }
                    @if !view.maintenances.is_empty() {
                        h3 { "Maintenance" }
                        ul {
                            @for m in &view.maintenances {
                                li {
                                    strong { (m.name) } " · " (m.status.raw().replace('_', " "))
                                    @if let Some(from) = m.scheduled_for { " · from " (present::time(from, d.now)) }
                                    @if let Some(until) = m.scheduled_until { " until " (present::time(until, d.now)) }
                                }
                            }
                        }
                    }
                }
                (None, Some(text)) => { p { (present::icon(Tone::Unknown)) (text) } }
                (None, None) if d.has_status_page => { p.empty { "Not read yet." } }
                (None, None) => { p.empty { "This service has no status page configured." } }
            }
        }
    }
}

/// The service page.
pub fn render(d: &Detail) -> Markup {
    let main = html! {
        div.pagehead {
            h1 { (d.title) " " (present::state_pill(d.state)) }
            p.headline { (d.headline) }
            p.sub { code { (d.name) } " · " (d.kind) " · " a href={"/just-me?service=" (d.name)} { "Is it just me?" } }
            @if let Some(plan_b) = &d.plan_b { (plan_b) }
        }
        (overview::comparison(&d.official, d.has_status_page, &d.assessment, d.since, d.now))
        section aria-labelledby="uptime-title" {
            h2 #uptime-title { "Uptime, last " (DAYS) " days" }
            div.barsbox.wide {
                (charts::uptime_bars(&d.days, d.uptime_90))
                (charts::bars_axis(d.uptime_90))
            }
        }
        section aria-labelledby="diag-title" {
            h2 #diag-title { "Latest diagnosis" }
            @match &d.verdict {
                Some(v) => { (diagnosis(v, d.now)) }
                None => { p.empty { "No check has finished yet." } }
            }
        }
        section aria-labelledby="regions-title" {
            h2 #regions-title { "By component and region" }
            (region_matrix(d))
        }
        (latency_section(d))
        section #incidents aria-labelledby="incidents-title" {
            h2 #incidents-title { "Incidents seen by aiwatch" }
            @if d.incidents.is_empty() {
                p.empty { "No incidents recorded." }
            }
            @for incident in &d.incidents { (incidents::incident_card(incident, None, d.now)) }
        }
        (official_section(d))
        (super::reports::section(&d.crowd, &d.name, d.reported))
        section aria-labelledby="embed-title" {
            h2 #embed-title { "Embed" }
            p {
                img src={"/badge/" (d.name) ".svg"} alt={(d.title) " status"} height="20";
            }
            p.sub { "Badge: " code { "/badge/" (d.name) ".svg" } " · Widget: " a href={"/widget/" (d.name)} { code { "/widget/" (d.name) } } }
        }
    };
    layout::page(
        &Page {
            title: &d.title,
            site: &d.site,
            nav: Nav::None,
            refresh: true,
        },
        main,
    )
}
