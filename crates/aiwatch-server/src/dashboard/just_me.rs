//! The "Is it just me?" page (`/just-me`): the reader picks a service and what they see; the
//! server checks the service from its own vantage point and shows the verdict beside the steps
//! that fix each symptom on the reader's side.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aiwatch_core::cause::AdviceContext;
use aiwatch_core::classify::classify;
use aiwatch_core::evidence::{CheckEvidence, OfficialOutcome};
use aiwatch_core::symptom::Symptom;
use aiwatch_core::{Scope, Service, Status, Verdict};
use axum::extract::{ConnectInfo, Extension, Form, Query, State as AxumState};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, MethodRouter};
use chrono::Utc;
use maud::{html, Markup};

use super::layout::{self, Nav, Page};
use super::present::{self, Tone};
use super::{service as service_page, Shared};
use crate::engine::Engine;

/// A check of a service is reused for this long, so the page cannot be used to hammer providers.
const FRESH: Duration = Duration::from_secs(15);
/// At most this many on-demand checks run at once.
const CONCURRENT: usize = 2;
/// More parameters than this is not a form this page sent.
const MAX_PARAMS: usize = 32;
/// Checks one client address may ask for in a burst, then one per [`CLIENT_REFILL`].
const CLIENT_BURST: u32 = 10;
const CLIENT_REFILL: Duration = Duration::from_secs(6);
/// Requests waiting for a check slot at most; past it the page says the server is busy.
const MAX_WAITING: usize = 16;

/// One thing a reader can do on their side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    ClearCookies,
    OtherBrowser,
    Relogin,
    NoVpn,
    Firewall,
    OtherNetwork,
    Wait,
}

impl Step {
    pub fn text(self) -> &'static str {
        match self {
            Step::ClearCookies => "Clear the site's cookies and cache (or open a private window), then sign in again.",
            Step::OtherBrowser => "Try another browser with no extensions: ad blockers and privacy extensions break these apps.",
            Step::Relogin => "Log out and log in again to refresh the session.",
            Step::NoVpn => "Disable the VPN or proxy: bot protection often blocks shared VPN addresses.",
            Step::Firewall => "On a work or school network, ask whether a corporate firewall or filter blocks the site.",
            Step::OtherNetwork => "Try another network, such as a phone hotspot, to tell your network from the service.",
            Step::Wait => "Wait a minute before retrying; retrying at once makes a limit last longer.",
        }
    }
}

/// How the page shows a symptom the reader may pick: its label and the steps for it (the
/// symptom, and the cause it stands for, are the core's).
pub struct SymptomHelp {
    pub symptom: Symptom,
    pub label: &'static str,
    pub steps: &'static [Step],
}

/// The symptoms the form offers; their ids are the only accepted values of `symptom`.
pub const SYMPTOMS: &[SymptomHelp] = &[
    SymptomHelp {
        symptom: Symptom::LoginLoop,
        label: "Login loop: sent back to the sign-in page",
        steps: &[Step::Relogin, Step::ClearCookies, Step::OtherBrowser],
    },
    SymptomHelp {
        symptom: Symptom::BlankPage,
        label: "Blank or half-loaded page",
        steps: &[Step::OtherBrowser, Step::ClearCookies, Step::Firewall],
    },
    SymptomHelp {
        symptom: Symptom::AccessDenied,
        label: "“Access denied”, a Cloudflare check or “unusual activity”",
        steps: &[Step::NoVpn, Step::ClearCookies, Step::OtherBrowser],
    },
    SymptomHelp {
        symptom: Symptom::NetworkError,
        label: "“Network error” or the answer stops midway",
        steps: &[Step::NoVpn, Step::Firewall, Step::OtherNetwork],
    },
    SymptomHelp {
        symptom: Symptom::CannotLoad,
        label: "The site does not load at all",
        steps: &[Step::OtherNetwork, Step::Firewall, Step::NoVpn],
    },
    SymptomHelp {
        symptom: Symptom::LoggedOut,
        label: "Keeps logging me out",
        steps: &[Step::Relogin, Step::ClearCookies, Step::NoVpn],
    },
    SymptomHelp {
        symptom: Symptom::RegionBlocked,
        label: "“Not available in your country”",
        steps: &[Step::NoVpn],
    },
    SymptomHelp {
        symptom: Symptom::RateLimited,
        label: "“Too many requests” or a usage limit",
        steps: &[Step::Wait, Step::Relogin],
    },
    SymptomHelp {
        symptom: Symptom::SlowOrCutOff,
        label: "Very slow or cut-off answers",
        steps: &[Step::OtherNetwork, Step::NoVpn],
    },
    SymptomHelp {
        symptom: Symptom::MissingHistory,
        label: "My chat history is gone",
        steps: &[Step::Relogin, Step::OtherBrowser],
    },
    SymptomHelp {
        symptom: Symptom::Other,
        label: "Something else",
        steps: &[Step::OtherBrowser, Step::OtherNetwork],
    },
];

/// Recent on-demand verdicts, the limit on concurrent checks, the bounded wait for one, and
/// the per-client limit on starting them.
pub struct JustMe {
    recent: Mutex<HashMap<String, (Instant, Verdict)>>,
    running: tokio::sync::Semaphore,
    waiting: std::sync::atomic::AtomicUsize,
    per_client: aiwatch_inbound::throttle::Throttle,
}

/// Why no check ran for this request.
enum Refused {
    /// This client started too many checks lately; retry after this long.
    TooMany(Duration),
    /// Too many requests are already waiting for a check slot.
    Busy,
}

/// Counts one waiter while alive.
struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl JustMe {
    fn new() -> Self {
        Self {
            recent: Mutex::new(HashMap::new()),
            running: tokio::sync::Semaphore::new(CONCURRENT),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            per_client: aiwatch_inbound::throttle::Throttle::new(CLIENT_BURST, CLIENT_REFILL),
        }
    }

    fn fresh(&self, name: &str) -> Option<(Duration, Verdict)> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent
            .get(name)
            .filter(|(at, _)| at.elapsed() < FRESH)
            .map(|(at, v)| (at.elapsed(), v.clone()))
    }

    /// The verdict of a check run now, or of one run moments ago, and its age. Every ask
    /// counts against `client`'s limit; a new check waits for a slot only if few others do.
    async fn verdict(
        &self,
        engine: &Engine,
        service: &Service,
        client: Option<std::net::IpAddr>,
    ) -> Result<(Duration, Verdict), Refused> {
        if let Some(ip) = client {
            self.per_client.take(ip).map_err(Refused::TooMany)?;
        }
        if let Some(hit) = self.fresh(service.name.as_str()) {
            return Ok(hit);
        }
        let queued = self
            .waiting
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let _waiting = Waiting(&self.waiting);
        if queued >= MAX_WAITING {
            return Err(Refused::Busy);
        }
        let _permit = self.running.acquire().await.ok();
        if let Some(hit) = self.fresh(service.name.as_str()) {
            return Ok(hit);
        }
        let verdict = check(engine, service).await;
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.retain(|_, (at, _)| at.elapsed() < FRESH);
        recent.insert(service.name.to_string(), (Instant::now(), verdict.clone()));
        Ok((Duration::ZERO, verdict))
    }
}

/// Checks a service from this server as an anonymous visitor would reach it: no API key is
/// sent (the reader's account is not the server's), with the control probe and the official view.
pub async fn check(engine: &Engine, service: &Service) -> Verdict {
    let mut anonymous = service.clone();
    anonymous.api_key_env = None;
    let checker = engine.checker();
    let expected = checker.expected_verifier(service).ok().flatten();
    let deadline = tokio::time::Instant::now() + engine.options.timeout;
    let (control, probes) = tokio::join!(
        checker.control(deadline),
        checker.check_service(&anonymous, None, expected, false, deadline)
    );
    let official = engine.official_of(&service.name);
    let evidence = CheckEvidence {
        control,
        web: probes.web,
        api: probes.api,
        stream: probes.stream,
        official: match (official.view, official.unavailable) {
            (Some(view), _) => OfficialOutcome::View(view),
            (None, Some(error)) => OfficialOutcome::Unavailable { error },
            (None, None) => OfficialOutcome::NotConfigured,
        },
        budget: engine.options.timeout,
    };
    classify(&anonymous, &evidence, Utc::now())
}

/// The `/just-me` route: GET (a linkable form and result) and POST.
pub fn method_router() -> MethodRouter<Shared> {
    get(get_handler)
        .post(post_handler)
        .layer(Extension(Arc::new(JustMe::new())))
}

/// The client's address, when the request came through the inbound listener.
type Client = Option<Extension<ConnectInfo<std::net::SocketAddr>>>;

async fn get_handler(
    AxumState(engine): AxumState<Shared>,
    Extension(state): Extension<Arc<JustMe>>,
    client: Client,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    respond(engine, state, client.map(|c| c.0 .0.ip()), params).await
}

async fn post_handler(
    AxumState(engine): AxumState<Shared>,
    Extension(state): Extension<Arc<JustMe>>,
    client: Client,
    Form(params): Form<Vec<(String, String)>>,
) -> Response {
    respond(engine, state, client.map(|c| c.0 .0.ip()), params).await
}

/// What the reader asked, validated.
#[derive(Default)]
struct Request {
    service: Option<Service>,
    symptoms: Vec<&'static SymptomHelp>,
}

fn validate(engine: &Engine, params: &[(String, String)]) -> Result<Request, String> {
    if params.len() > MAX_PARAMS {
        return Err("Too many parameters.".into());
    }
    let mut request = Request::default();
    let mut service_given = false;
    for (key, value) in params {
        match key.as_str() {
            "service" => {
                if service_given {
                    return Err("Pick one service.".into());
                }
                service_given = true;
                if value.is_empty() {
                    continue;
                }
                let found = engine.services.iter().find(|s| s.name.as_str() == value);
                match found {
                    Some(s) => request.service = Some(s.clone()),
                    None => {
                        return Err(
                            "Pick a service from the list; that one is not watched here.".into(),
                        )
                    }
                }
            }
            "symptom" => match Symptom::parse(value)
                .and_then(|parsed| SYMPTOMS.iter().find(|s| s.symptom == parsed))
            {
                Some(symptom)
                    if !request
                        .symptoms
                        .iter()
                        .any(|s| s.symptom == symptom.symptom) =>
                {
                    request.symptoms.push(symptom)
                }
                Some(_) => {}
                None => return Err("Pick symptoms from the list; one of them is not known.".into()),
            },
            _ => {}
        }
    }
    if service_given && request.service.is_none() {
        return Err("Pick a service to check.".into());
    }
    Ok(request)
}

async fn respond(
    engine: Shared,
    state: Arc<JustMe>,
    client: Option<std::net::IpAddr>,
    params: Vec<(String, String)>,
) -> Response {
    let now = Utc::now();
    match validate(&engine, &params) {
        Err(message) => layout::html_response(
            StatusCode::BAD_REQUEST,
            render(&engine, &Request::default(), None, Some(&message), now),
        ),
        Ok(request) => {
            let result = match &request.service {
                Some(service) => match state.verdict(&engine, service, client).await {
                    Ok(found) => Some(found),
                    Err(refused) => return refusal(&engine, &request, &refused, now),
                },
                None => None,
            };
            layout::html_response(
                StatusCode::OK,
                render(&engine, &request, result.as_ref(), None, now),
            )
        }
    }
}

/// The page with why no check ran: 429 with Retry-After for a client over its limit, 503 when
/// too many are waiting.
fn refusal(
    engine: &Engine,
    request: &Request,
    refused: &Refused,
    now: chrono::DateTime<Utc>,
) -> Response {
    let (status, message, retry) = match refused {
        Refused::TooMany(wait) => (
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "You started several checks in a short time; try again in {} s.",
                wait.as_secs().max(1)
            ),
            wait.as_secs().max(1),
        ),
        Refused::Busy => (
            StatusCode::SERVICE_UNAVAILABLE,
            "This server is busy with other checks; try again in a few seconds.".to_owned(),
            5,
        ),
    };
    let mut response =
        layout::html_response(status, render(engine, request, None, Some(&message), now));
    if let Ok(value) = axum::http::HeaderValue::from_str(&retry.to_string()) {
        response
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, value);
    }
    response
}

/// The one-line answer to the page's question.
fn headline(verdict: &Verdict, title: &str) -> (Tone, String) {
    let control_down = verdict
        .evidence
        .iter()
        .any(|e| e.layer == "control" && e.outcome == aiwatch_core::verdict::Outcome::Fail);
    let cause = verdict.cause;
    match (verdict.status, verdict.scope) {
        (_, Scope::Local) if control_down => (
            Tone::Unknown,
            "This server cannot tell: its own internet connection is down.".into(),
        ),
        (Status::NotRunning, _) => (
            Tone::Unknown,
            format!("{title} is not running on this server, so it cannot tell about yours."),
        ),
        (_, Scope::Local) => (
            Tone::Unknown,
            format!("This server cannot tell: its own network blocks {title} ({cause}), while its connection to the internet works."),
        ),
        (_, Scope::Account) => (
            Tone::Unknown,
            format!("{title} answers this server, but the account this server uses has a problem ({cause}); that says nothing about yours."),
        ),
        (Status::Operational, _) => (
            Tone::Ok,
            format!("{title} works from here. It is probably on your side."),
        ),
        (Status::Degraded | Status::Maintenance, _) => (
            Tone::Warn,
            format!("Not just you: {title} is degraded from here too."),
        ),
        (Status::Outage, _) => (
            Tone::Bad,
            format!("Not just you: {title} is failing from here too."),
        ),
        (Status::Unknown, _) => (Tone::Unknown, "This server could not tell.".into()),
    }
}

fn form(engine: &Engine, request: &Request) -> Markup {
    let picked = |symptom: Symptom| request.symptoms.iter().any(|s| s.symptom == symptom);
    html! {
        form.justme method="get" action="/just-me" {
            div.field {
                label for="jm-service" { "Service" }
                select #jm-service name="service" required {
                    option value="" { "Choose…" }
                    @for s in &engine.services {
                        option value=(s.name) selected[request.service.as_ref().is_some_and(|r| r.name == s.name)] { (s.title) }
                    }
                }
            }
            fieldset {
                legend { "What do you see? (optional)" }
                div.symptoms {
                    @for s in SYMPTOMS {
                        label.check {
                            input type="checkbox" name="symptom" value=(s.symptom.id()) checked[picked(s.symptom)];
                            span { (s.label) }
                        }
                    }
                }
            }
            button type="submit" { "Check from this server" }
        }
    }
}

fn symptom_advice(symptom: &SymptomHelp, service: &Service) -> Markup {
    let host = service
        .web_url
        .as_deref()
        .or(service.api_base.as_deref())
        .and_then(aiwatch_core::network::url_host);
    let more = symptom
        .symptom
        .likely_cause()
        .map(|c| {
            c.advice(&AdviceContext {
                host,
                ..AdviceContext::default()
            })
        })
        .unwrap_or_default();
    html! {
        li {
            strong { (symptom.label) }
            ol { @for step in symptom.steps { li { (step.text()) } } }
            @if !more.is_empty() {
                p.sub { @for (i, line) in more.iter().enumerate() { @if i > 0 { " " } (line) } }
            }
        }
    }
}

/// The core's plan B for a reader stuck on a web app: the API status from the monitor's
/// picture, the web app's from the check just run.
fn reader_plan_b(engine: &Engine, verdict: &Verdict) -> Option<Markup> {
    let mut statuses = engine.statuses_now();
    match statuses.iter_mut().find(|(n, _)| *n == verdict.service) {
        Some(entry) => entry.1 = verdict.status,
        None => statuses.push((verdict.service.clone(), verdict.status)),
    }
    present::plan_b(
        verdict.service.as_str(),
        &statuses,
        aiwatch_core::plan_b::Viewer::StuckReader,
    )
}

fn render(
    engine: &Engine,
    request: &Request,
    result: Option<&(Duration, Verdict)>,
    error: Option<&str>,
    now: chrono::DateTime<Utc>,
) -> Markup {
    let main = html! {
        div.pagehead {
            h1 { "Is it just me?" }
            p.sub { "aiwatch checks the service from this server right now. If it works here but not for you, the steps on the right usually fix it." }
        }
        @if let Some(message) = error {
            div.alert role="alert" { (present::icon(Tone::Bad)) (message) }
        }
        (form(engine, request))
        @if let Some(service) = &request.service {
            (super::reports::form(service.name.as_str()))
        }
        @if let (Some(service), Some((age, verdict))) = (&request.service, result) {
            @let (tone, text) = headline(verdict, &service.title);
            @let plan_b = reader_plan_b(engine, verdict);
            section.result aria-labelledby="answer" aria-live="polite" {
                h2 #answer class={"answer a-" (tone.class())} { (present::icon(tone)) (text) }
                div.cols {
                    div {
                        h3 { "From this server" }
                        (service_page::diagnosis(verdict, now))
                        @if age.as_secs() > 0 { p.sub { "Checked " (age.as_secs()) " s ago; checks are reused for " (FRESH.as_secs()) " s." } }
                        p.sub { a href={"/services/" (service.name)} { "History and incidents of " (service.title) } }
                    }
                    div {
                        h3 { "On your side" }
                        @if let Some(plan_b) = &plan_b { (plan_b) }
                        @if request.symptoms.is_empty() {
                            p { "Pick what you see above for specific steps. In general:" }
                            ul.advice { @for step in [Step::ClearCookies, Step::OtherBrowser, Step::Relogin, Step::NoVpn, Step::Firewall] { li { (step.text()) } } }
                        } @else {
                            ul.symptom-advice { @for s in &request.symptoms { (symptom_advice(s, service)) } }
                        }
                    }
                }
            }
        }
    };
    layout::page(
        &Page {
            title: "Is it just me?",
            site: &engine.options.page_name,
            nav: Nav::JustMe,
            refresh: false,
        },
        main,
    )
}
