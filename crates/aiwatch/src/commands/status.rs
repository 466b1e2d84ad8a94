//! `aiwatch status`: what the providers' own status pages say about each service — page
//! indicator, covered components, active incidents and maintenance — as a report or JSON, with
//! an exit code; a page that cannot be read is said to be unavailable, never shown as green.
//!
//! Exit codes: 0 every readable page shows its services operational, 1 degraded or under
//! maintenance, 2 an outage, 4 a page could not be read (or said something unrecognized); when
//! several apply, `check`'s ranking decides: outage (2) over unreadable (4) over degraded (1).

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use aiwatch_core::official::{
    Component, ComponentStatus, Impact, Incident, IncidentStatus, IncidentUpdate, Indicator,
    Maintenance, MaintenanceStatus, OfficialStatus,
};
use aiwatch_core::service::StatusSource;
use aiwatch_core::verdict::Fault;
use aiwatch_core::Service;
use aiwatch_probe::dns::Dns;
use aiwatch_probe::layered::ProbeContext;
use aiwatch_probe::poller::{PollTarget, Poller, PollerOptions, SourceState};
use aiwatch_probe::tls::Trust;
use aiwatch_probe::ProxySettings;
use anyhow::Context;
use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use owo_colors::OwoColorize;
use serde::Serialize;

use crate::cli::StatusArgs;
use crate::exit;
use crate::load;
use crate::report::use_color;

/// Update texts longer than this are shortened in the report (never in JSON).
const UPDATE_CHARS: usize = 240;

pub fn run(
    config_path: Option<&Path>,
    args: &StatusArgs,
    verbose: bool,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    let loaded = load::load(config_path)?;
    let services = load::select_services(&loaded.catalog, &args.services, || {
        loaded
            .catalog
            .iter()
            .filter(|s| s.status.is_some())
            .cloned()
            .collect()
    })?;
    let timeout = load::timeout(args.timeout.as_deref(), &loaded.config)?;
    let dns = load::network(args.network.dns_server.as_deref(), &args.network.ca_file)?;
    let proxies = ProxySettings::from_env().map_err(|e| exit::config(e.to_string()))?;
    let targets = PollTarget::from_services(services.iter());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let progress = (!args.json && !targets.is_empty() && std::io::stderr().is_terminal())
        .then(|| progress_bar(targets.len()));
    let states = runtime.block_on(async {
        let ctx = ProbeContext {
            // One query may use at most half the budget, so a slow resolver leaves time to report.
            dns: Dns::new(&dns, timeout / 2)?,
            proxies,
            trust: Trust::new(&args.network.ca_file).map_err(|e| exit::usage(e.to_string()))?,
        };
        let poller = Poller::new(
            ctx,
            targets,
            PollerOptions {
                request_timeout: timeout,
                ..PollerOptions::default()
            },
        );
        match &progress {
            Some(bar) => {
                let mut updates = poller.subscribe();
                let follow = async {
                    while updates.changed().await.is_ok() {
                        let done = updates
                            .borrow_and_update()
                            .iter()
                            .filter(|s| s.last_attempt_at.is_some())
                            .count();
                        bar.set_position(done as u64);
                    }
                };
                tokio::select! {
                    () = poller.poll_all() => {}
                    () = follow => {}
                }
            }
            None => poller.poll_all().await,
        }
        anyhow::Ok(poller.snapshot())
    })?;
    // Resolver and connection tasks must not keep the process alive past the report.
    runtime.shutdown_timeout(Duration::from_millis(50));
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }

    let now = Utc::now();
    let reports: Vec<ServiceReport> = services
        .iter()
        .map(|service| ServiceReport::build(service, &states, now))
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        let detail = if quiet {
            Detail::Quiet
        } else if verbose {
            Detail::Verbose
        } else {
            Detail::Normal
        };
        print!("{}", render(&reports, detail, now, use_color()));
    }
    let fault = Fault::worst(reports.iter().map(|r| r.state.fault()));
    Ok(ExitCode::from(fault.exit_code()))
}

/// The services asked for, or every service with a status page; unknown names are usage errors.
fn progress_bar(pages: usize) -> ProgressBar {
    let bar = ProgressBar::new(pages as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} reading status pages {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(80));
    bar
}

// === The report model (also the JSON schema) ===

/// What the official page says about one service, overall.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum State {
    Operational,
    Degraded,
    Outage,
    Maintenance,
    /// The page was read but says something aiwatch does not recognize.
    Unknown,
    /// The page could not be read.
    Unavailable,
    /// The service has no official status page.
    NotConfigured,
}

impl State {
    fn from_signal(signal: aiwatch_core::Status) -> Self {
        use aiwatch_core::Status as OfficialSignal;
        match signal {
            OfficialSignal::Operational => Self::Operational,
            OfficialSignal::Degraded => Self::Degraded,
            OfficialSignal::Outage => Self::Outage,
            OfficialSignal::Maintenance => Self::Maintenance,
            OfficialSignal::Unknown | OfficialSignal::NotRunning => Self::Unknown,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Operational => "operational",
            Self::Degraded => "degraded",
            Self::Outage => "outage",
            Self::Maintenance => "maintenance",
            Self::Unknown => "unknown",
            Self::Unavailable => "unavailable",
            Self::NotConfigured => "not_configured",
        }
    }

    fn fault(self) -> Fault {
        match self {
            Self::Operational | Self::NotConfigured => Fault::None,
            Self::Degraded | Self::Maintenance => Fault::Degraded,
            Self::Outage => Fault::Provider,
            Self::Unknown | Self::Unavailable => Fault::CouldNotTell,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Self::Operational => "✓",
            Self::Degraded | Self::Maintenance => "!",
            Self::Outage => "✗",
            Self::Unknown | Self::Unavailable => "?",
            Self::NotConfigured => "-",
        }
    }
}

#[derive(Debug, Serialize)]
struct ServiceReport {
    service: String,
    title: String,
    state: State,
    /// `{format, url}`, or null when the service has none.
    status_page: Option<StatusSource>,
    /// Why the page could not be read (state `unavailable`).
    error: Option<String>,
    page: Option<PageInfo>,
    components: Vec<ComponentReport>,
    incidents: Vec<IncidentReport>,
    maintenances: Vec<MaintenanceReport>,
    /// When the page was asked.
    checked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize)]
struct PageInfo {
    name: Option<String>,
    url: Option<String>,
    indicator: Option<Indicator>,
    description: Option<String>,
    updated_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize)]
struct ComponentReport {
    id: String,
    name: String,
    group: Option<String>,
    status: ComponentStatus,
}

#[derive(Debug, Serialize)]
struct UpdateReport {
    status: String,
    body: String,
    at: Option<DateTime<Utc>>,
    age_seconds: Option<i64>,
}

#[derive(Debug, Serialize)]
struct IncidentReport {
    id: String,
    title: String,
    impact: Impact,
    status: IncidentStatus,
    url: Option<String>,
    created_at: Option<DateTime<Utc>>,
    updated_at: Option<DateTime<Utc>>,
    /// Seconds since it was opened (`created_at`).
    age_seconds: Option<i64>,
    /// Names of the components it is tied to; empty when the page does not say.
    components: Vec<String>,
    latest_update: Option<UpdateReport>,
}

#[derive(Debug, Serialize)]
struct MaintenanceReport {
    id: String,
    title: String,
    status: MaintenanceStatus,
    impact: Impact,
    in_progress: bool,
    scheduled_for: Option<DateTime<Utc>>,
    scheduled_until: Option<DateTime<Utc>>,
    url: Option<String>,
    components: Vec<String>,
    latest_update: Option<UpdateReport>,
}

impl ServiceReport {
    fn build(service: &Service, states: &[SourceState], now: DateTime<Utc>) -> Self {
        let mut report = Self {
            service: service.name.to_string(),
            title: service.title.clone(),
            state: State::NotConfigured,
            status_page: service.status.clone(),
            error: None,
            page: None,
            components: Vec::new(),
            incidents: Vec::new(),
            maintenances: Vec::new(),
            checked_at: None,
        };
        let Some(source) = &service.status else {
            return report;
        };
        let Some(state) = states.iter().find(|s| &s.source == source) else {
            report.state = State::Unavailable;
            report.error = Some("the page was not asked".into());
            return report;
        };
        report.checked_at = state.last_attempt_at;
        let page = match (&state.status, &state.last_error) {
            (Some(page), None) => page,
            (_, error) => {
                report.state = State::Unavailable;
                report.error = Some(
                    error
                        .clone()
                        .unwrap_or_else(|| "the page did not answer".into()),
                );
                return report;
            }
        };
        let view = page.view_for(&service.status_components);
        report.state = State::from_signal(view.signal);
        report.page = Some(PageInfo {
            name: page.page_name.clone(),
            url: page.page_url.clone(),
            indicator: page.indicator.clone(),
            description: page.description.clone(),
            updated_at: page.updated_at,
        });
        report.components = view
            .components
            .iter()
            .map(|c: &Component| ComponentReport {
                id: c.id.clone(),
                name: c.name.clone(),
                group: c.group.clone(),
                status: c.status.clone(),
            })
            .collect();
        report.incidents = view
            .incidents
            .iter()
            .map(|i| incident_report(i, page, now))
            .collect();
        report.maintenances = view
            .maintenances
            .iter()
            .map(|m| maintenance_report(m, page, now))
            .collect();
        report
    }
}

fn seconds_since(now: DateTime<Utc>, at: Option<DateTime<Utc>>) -> Option<i64> {
    at.map(|t| (now - t).num_seconds())
}

fn update_report(update: &IncidentUpdate, now: DateTime<Utc>) -> UpdateReport {
    UpdateReport {
        status: update.status.clone(),
        body: update.body.clone(),
        at: update.created_at,
        age_seconds: seconds_since(now, update.created_at),
    }
}

/// Component ids turned into names where the page lists them.
fn component_names(ids: &[String], page: &OfficialStatus) -> Vec<String> {
    ids.iter()
        .map(|id| {
            page.components
                .iter()
                .find(|c| &c.id == id)
                .map_or_else(|| id.clone(), |c| c.name.clone())
        })
        .collect()
}

fn incident_report(i: &Incident, page: &OfficialStatus, now: DateTime<Utc>) -> IncidentReport {
    IncidentReport {
        id: i.id.clone(),
        title: i.name.clone(),
        impact: i.impact.clone(),
        status: i.status.clone(),
        url: i.url.clone(),
        created_at: i.created_at,
        updated_at: i.updated_at,
        age_seconds: seconds_since(now, i.created_at),
        components: component_names(&i.components, page),
        latest_update: i.updates.first().map(|u| update_report(u, now)),
    }
}

fn maintenance_report(
    m: &Maintenance,
    page: &OfficialStatus,
    now: DateTime<Utc>,
) -> MaintenanceReport {
    MaintenanceReport {
        id: m.id.clone(),
        title: m.name.clone(),
        status: m.status.clone(),
        impact: m.impact.clone(),
        in_progress: m.status.is_active(),
        scheduled_for: m.scheduled_for,
        scheduled_until: m.scheduled_until,
        url: m.url.clone(),
        components: component_names(&m.components, page),
        latest_update: m.updates.first().map(|u| update_report(u, now)),
    }
}

// === Human output ===

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Detail {
    Quiet,
    Normal,
    Verbose,
}

/// "3h 12m ago", "in 2h 5m", "just now".
fn age_text(now: DateTime<Utc>, at: DateTime<Utc>) -> String {
    let seconds = (now - at).num_seconds();
    let span = seconds.unsigned_abs();
    if span < 60 {
        return "just now".into();
    }
    let (days, hours, minutes) = (span / 86_400, span % 86_400 / 3600, span % 3600 / 60);
    let text = if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {minutes}m")
    } else {
        format!("{minutes}m")
    };
    if seconds >= 0 {
        format!("{text} ago")
    } else {
        format!("in {text}")
    }
}

fn time_text(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn when_text(now: DateTime<Utc>, at: Option<DateTime<Utc>>) -> String {
    match at {
        Some(t) => format!("{} ({})", time_text(t), age_text(now, t)),
        None => "at an unknown time".into(),
    }
}

/// One line of text, cut at `limit` characters when there is a limit.
fn one_line(text: &str, limit: Option<usize>) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match limit {
        Some(limit) if flat.chars().count() > limit => {
            let cut: String = flat.chars().take(limit).collect();
            format!("{}…", cut.trim_end())
        }
        _ => flat,
    }
}

fn headline(report: &ServiceReport) -> String {
    match report.state {
        State::Unavailable => format!(
            "official status unavailable: {}",
            report.error.as_deref().unwrap_or("no answer")
        ),
        State::NotConfigured => "no official status page configured".into(),
        state => {
            let mut line = state.as_str().to_owned();
            match report.incidents.len() {
                0 => {}
                1 => line.push_str(" · 1 active incident"),
                n => line.push_str(&format!(" · {n} active incidents")),
            }
            if report.maintenances.iter().any(|m| m.in_progress) {
                line.push_str(" · maintenance in progress");
            } else if !report.maintenances.is_empty() {
                line.push_str(" · maintenance scheduled");
            }
            line
        }
    }
}

fn paint(text: &str, state: State, color: bool) -> String {
    if !color {
        return text.to_owned();
    }
    match state {
        State::Operational => text.green().to_string(),
        State::Outage => text.red().bold().to_string(),
        State::Unknown | State::Unavailable => text.magenta().to_string(),
        State::NotConfigured => text.dimmed().to_string(),
        State::Degraded | State::Maintenance => text.yellow().to_string(),
    }
}

fn render(reports: &[ServiceReport], detail: Detail, now: DateTime<Utc>, color: bool) -> String {
    let width = reports.iter().map(|r| r.service.len()).max().unwrap_or(8);
    let limit = (detail != Detail::Verbose).then_some(UPDATE_CHARS);
    let mut out = String::new();
    for report in reports {
        let line = format!(
            "{} {:<width$}  {}",
            report.state.symbol(),
            report.service,
            headline(report)
        );
        let _ = writeln!(out, "{}", paint(&line, report.state, color));
        if detail == Detail::Quiet {
            continue;
        }
        if let Some(page) = &report.page {
            let source = report
                .status_page
                .as_ref()
                .map(|s| s.url().to_owned())
                .unwrap_or_default();
            let overall = match (&page.description, &page.indicator) {
                (Some(d), Some(i)) => format!("\"{d}\" (indicator {i})"),
                (Some(d), None) => format!("\"{d}\""),
                (None, Some(i)) => format!("indicator {i}"),
                (None, None) => "not given".into(),
            };
            let _ = writeln!(out, "    page         {source} · overall: {overall}");
        }
        render_components(&mut out, report, detail);
        for incident in &report.incidents {
            let _ = writeln!(
                out,
                "    incident     {} [{} impact · {}] opened {}",
                incident.title,
                incident.impact,
                incident.status,
                when_text(now, incident.created_at)
            );
            if !incident.components.is_empty() {
                let _ = writeln!(
                    out,
                    "                 affects {}",
                    incident.components.join(", ")
                );
            }
            if let Some(update) = &incident.latest_update {
                let _ = writeln!(
                    out,
                    "                 latest: {} {}: {}",
                    update.status,
                    when_text(now, update.at),
                    one_line(&update.body, limit)
                );
            }
            if let Some(url) = &incident.url {
                let _ = writeln!(out, "                 {url}");
            }
        }
        for maintenance in &report.maintenances {
            let phase = if maintenance.in_progress {
                "in progress"
            } else {
                "upcoming"
            };
            let window = match (maintenance.scheduled_for, maintenance.scheduled_until) {
                (Some(from), Some(until)) => format!(
                    "{} → {} ({})",
                    time_text(from),
                    time_text(until),
                    if maintenance.in_progress {
                        format!("ends {}", age_text(now, until))
                    } else {
                        format!("starts {}", age_text(now, from))
                    }
                ),
                (Some(from), None) => format!("from {}", when_text(now, Some(from))),
                (None, Some(until)) => format!("until {}", when_text(now, Some(until))),
                (None, None) => "no window given".into(),
            };
            let _ = writeln!(
                out,
                "    maintenance  {phase}: {} · {window}",
                maintenance.title
            );
        }
    }
    out
}

fn render_components(out: &mut String, report: &ServiceReport, detail: Detail) {
    if report.page.is_none() {
        return;
    }
    if report.components.is_empty() {
        let _ = writeln!(
            out,
            "    components   none mapped for this service; the page indicator stands for it"
        );
        return;
    }
    let (fine, troubled): (Vec<&ComponentReport>, Vec<&ComponentReport>) = report
        .components
        .iter()
        .partition(|c| c.status == ComponentStatus::Operational);
    if detail == Detail::Verbose || troubled.is_empty() && fine.len() <= 1 {
        for c in &report.components {
            let _ = writeln!(out, "    component    {}: {}", c.name, c.status);
        }
        return;
    }
    for c in &troubled {
        let _ = writeln!(out, "    component    {}: {}", c.name, c.status);
    }
    match (fine.len(), troubled.is_empty()) {
        (0, _) => {}
        (n, true) => {
            let _ = writeln!(out, "    components   all {n} operational");
        }
        (n, false) => {
            let others = if n == 1 { "other" } else { "others" };
            let _ = writeln!(out, "    components   {n} {others} operational");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn ages_read_like_a_person_says_them() {
        let now = at("2026-01-15T13:00:00Z");
        assert_eq!(age_text(now, at("2026-01-15T12:59:30Z")), "just now");
        assert_eq!(age_text(now, at("2026-01-15T12:48:00Z")), "12m ago");
        assert_eq!(age_text(now, at("2026-01-15T09:48:00Z")), "3h 12m ago");
        assert_eq!(age_text(now, at("2026-01-13T09:00:00Z")), "2d 4h ago");
        assert_eq!(age_text(now, at("2026-01-15T15:05:00Z")), "in 2h 5m");
    }

    #[test]
    fn long_update_texts_become_one_shortened_line() {
        assert_eq!(one_line("a\n\n  b\tc", None), "a b c");
        assert_eq!(one_line("abcdef", Some(3)), "abc…");
        assert_eq!(one_line("ab cd", Some(3)), "ab…");
        assert_eq!(one_line("é".repeat(5).as_str(), Some(4)), "éééé…");
    }

    /// The components lines of a service whose page lists one troubled component and
    /// `fine` operational ones.
    fn components_text(fine: usize) -> String {
        let component = |name: &str, status: &str| ComponentReport {
            id: name.to_owned(),
            name: name.to_owned(),
            group: None,
            status: ComponentStatus::from_raw(status),
        };
        let mut components = vec![component("Chat Completions", "major_outage")];
        components.extend((0..fine).map(|i| component(&format!("API {i}"), "operational")));
        let report = ServiceReport {
            service: "openai-api".into(),
            title: "OpenAI API".into(),
            state: State::Outage,
            status_page: None,
            error: None,
            page: Some(PageInfo {
                name: None,
                url: None,
                indicator: None,
                description: None,
                updated_at: None,
            }),
            components,
            incidents: Vec::new(),
            maintenances: Vec::new(),
            checked_at: None,
        };
        let mut out = String::new();
        render_components(&mut out, &report, Detail::Normal);
        out
    }

    #[test]
    fn operational_components_beside_a_troubled_one_are_counted_in_good_english() {
        assert!(
            components_text(1).contains("components   1 other operational\n"),
            "{}",
            components_text(1)
        );
        assert!(
            components_text(3).contains("components   3 others operational\n"),
            "{}",
            components_text(3)
        );
    }

    #[test]
    fn exit_codes_rank_outage_over_unreadable_over_degraded() {
        let code = |states: &[State]| Fault::worst(states.iter().map(|s| s.fault())).exit_code();
        assert_eq!(code(&[State::Operational, State::NotConfigured]), 0);
        assert_eq!(code(&[State::Operational, State::Maintenance]), 1);
        assert_eq!(code(&[State::Degraded, State::Unavailable]), 4);
        assert_eq!(code(&[State::Unknown]), 4);
        assert_eq!(code(&[State::Unavailable, State::Outage]), 2);
        assert_eq!(code(&[]), 0);
    }
}
