//! Handler tests of the dashboard: every page through `api::app(engine)`, over an engine fed
//! observations and official views by hand (and, for the on-demand check, loopback fakes), with
//! third-party text that tries to inject markup, and bad input.

mod common;

use std::sync::Arc;
use std::time::Duration;

use aiwatch_core::observation::{Health, Observation, PhaseMs, Source, LOCAL_REGION};
use aiwatch_core::official::{
    Component, ComponentStatus, Impact, Incident, IncidentStatus, IncidentUpdate, Indicator,
    Maintenance, MaintenanceStatus, OfficialStatus,
};
use aiwatch_core::{Catalog, Cause, Config, Service};
use aiwatch_probe::{CheckOptions, DnsChoice, ProxySettings};
use aiwatch_server::engine::{Engine, OfficialNow};
use aiwatch_testkit::{canned, summary_operational, World};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use chrono::{DateTime, Utc};
use tower::ServiceExt;

const SCRIPT: &str = "<script>alert(1)</script>";
const IMG: &str = "<img src=x onerror=alert(1)>";

/// An engine over an in-memory store; `checks` says how its checker reaches services.
fn engine_with(services: Vec<Service>, checks: CheckOptions) -> Arc<Engine> {
    common::engine(
        services,
        checks,
        aiwatch_server::agents::RegionOptions::default(),
    )
}

/// An engine for the built-in services `names` whose checker never runs.
fn engine(names: &[&str]) -> Arc<Engine> {
    let catalog = Catalog::builtin();
    let services = names
        .iter()
        .map(|n| catalog.get(n).expect("built-in").clone())
        .collect();
    engine_with(services, common::no_network())
}

fn service<'a>(engine: &'a Engine, name: &str) -> &'a Service {
    engine
        .services
        .iter()
        .find(|s| s.name.as_str() == name)
        .unwrap()
}

fn obs(
    engine: &Engine,
    name: &str,
    component: &str,
    region: &str,
    at: DateTime<Utc>,
    health: Health,
    ms: f32,
) -> Observation {
    Observation {
        service: service(engine, name).name.clone(),
        component: aiwatch_core::observation::Component::parse(component)
            .expect("a known component"),
        region: region.into(),
        source: Source::Probe,
        at,
        health,
        cause: if health == Health::Up {
            Cause::Ok
        } else {
            Cause::ProviderError
        },
        phases: PhaseMs {
            dns: Some(ms * 0.1),
            connect: Some(ms * 0.1),
            tls: Some(ms * 0.2),
            first_byte: Some(ms * 0.5),
            total: Some(ms),
        },
        complete: None,
        detail: if health == Health::Up {
            "HTTP 200".into()
        } else {
            "HTTP 500 from the provider".into()
        },
    }
}

/// Feeds `count` checks one minute apart ending `ago` minutes before now.
async fn feed(engine: &Engine, name: &str, component: &str, health: Health, count: i64, ago: i64) {
    let now = Utc::now();
    for i in 0..count {
        let at = now - chrono::Duration::minutes(ago + count - i);
        engine
            .ingest(
                vec![obs(
                    engine,
                    name,
                    component,
                    LOCAL_REGION,
                    at,
                    health,
                    100.0 + i as f32,
                )],
                at,
            )
            .await;
    }
}

/// An official page whose every piece of text tries to inject markup.
fn hostile_page() -> OfficialStatus {
    let soon = Utc::now() + chrono::Duration::days(2);
    OfficialStatus {
        page_name: Some(SCRIPT.into()),
        indicator: Some(Indicator::Major),
        description: Some(format!("Partial outage {IMG}")),
        components: vec![Component {
            id: "c1".into(),
            name: IMG.into(),
            status: ComponentStatus::MajorOutage,
            group: None,
        }],
        incidents: vec![Incident {
            id: "i1".into(),
            name: format!("Elevated errors {SCRIPT}"),
            status: IncidentStatus::Investigating,
            impact: Impact::Major,
            created_at: Some(Utc::now() - chrono::Duration::minutes(30)),
            updated_at: None,
            resolved_at: None,
            url: Some("javascript:alert(1)".into()),
            components: Vec::new(),
            updates: vec![IncidentUpdate {
                status: format!("investigating{IMG}"),
                body: format!("We are looking into it. {SCRIPT} {IMG}"),
                created_at: Some(Utc::now() - chrono::Duration::minutes(20)),
            }],
        }],
        maintenances: vec![Maintenance {
            id: "m1".into(),
            name: format!("Database upgrade {SCRIPT}"),
            status: MaintenanceStatus::Scheduled,
            impact: Impact::Maintenance,
            scheduled_for: Some(soon),
            scheduled_until: Some(soon + chrono::Duration::hours(2)),
            url: None,
            components: Vec::new(),
            updates: Vec::new(),
        }],
        updated_at: None,
        page_url: None,
    }
}

async fn set_official(engine: &Engine, name: &str, page: &OfficialStatus) {
    let view = page.view_for(&[]);
    engine
        .set_official(
            service(engine, name),
            OfficialNow {
                view: Some(view),
                unavailable: None,
            },
            Utc::now(),
        )
        .await;
}

struct Page {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn send(engine: &Arc<Engine>, request: Request<Body>) -> Page {
    send_to(&aiwatch_server::api::app(engine.clone()), engine, request).await
}

/// Sends through one router, as a running daemon does (its on-demand check cache lives there).
async fn send_to(app: &axum::Router, engine: &Engine, request: Request<Body>) -> Page {
    engine.flush().await;
    let response = app
        .clone()
        .oneshot(request)
        .await
        .expect("the router answers");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    Page {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).expect("utf-8"),
    }
}

async fn get(engine: &Arc<Engine>, path: &str) -> Page {
    send(engine, Request::get(path).body(Body::empty()).unwrap()).await
}

fn assert_html(page: &Page, path: &str) {
    let content_type = page
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        content_type.starts_with("text/html"),
        "{path}: {content_type}"
    );
    let csp = page
        .headers
        .get(header::CONTENT_SECURITY_POLICY)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(csp.contains("default-src 'none'"), "{path}: {csp}");
    assert!(page.body.starts_with("<!DOCTYPE html>"), "{path}");
    assert!(page.body.contains("<main"), "{path}: a main landmark");
    assert!(page.body.contains("<nav"), "{path}: a navigation landmark");
}

/// Every `src=` and stylesheet/script `href=` stays on this origin: the page makes no request
/// elsewhere.
fn assert_no_foreign_requests(page: &Page, path: &str) {
    for attr in [
        "src=\"",
        "<link rel=\"stylesheet\" href=\"",
        "<link rel=\"icon\" href=\"",
    ] {
        for (i, _) in page.body.match_indices(attr) {
            let value = &page.body[i + attr.len()..];
            assert!(
                value.starts_with('/') && !value.starts_with("//"),
                "{path}: a request off the origin: {}",
                &value[..value.len().min(60)]
            );
        }
    }
}

fn assert_escaped(page: &Page, path: &str) {
    assert!(
        !page.body.contains(SCRIPT),
        "{path}: a raw <script> from a status page"
    );
    assert!(
        !page.body.contains("<img src=x"),
        "{path}: a raw <img onerror> from a status page"
    );
    assert!(
        !page.body.contains("href=\"javascript:"),
        "{path}: a javascript: link"
    );
    assert!(!page.body.contains("<script>"), "{path}: an inline script");
}

#[tokio::test]
async fn overview_shows_each_service_with_official_view_beside_own_probes() {
    let engine = engine(&["openai-api", "anthropic-api"]);
    feed(&engine, "openai-api", "api", Health::Up, 5, 10).await;
    feed(&engine, "openai-api", "api", Health::Down, 3, 0).await;
    feed(&engine, "anthropic-api", "api", Health::Up, 5, 0).await;
    let green = OfficialStatus {
        indicator: Some(Indicator::None),
        ..OfficialStatus::default()
    };
    set_official(&engine, "openai-api", &green).await;
    set_official(&engine, "anthropic-api", &green).await;

    let page = get(&engine, "/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_html(&page, "/");
    assert_no_foreign_requests(&page, "/");
    let body = &page.body;
    assert!(body.contains("1 of 2 services has trouble"), "{body}");
    assert!(body.contains("href=\"/services/openai-api\""));
    assert!(body.contains(">Outage<"), "a pill says Outage in words");
    assert!(body.contains("Official: "));
    assert!(
        body.contains(">failing<") && body.contains(" since "),
        "our probes: failing since …"
    );
    assert!(body.contains("possible unreported outage: the official page is green"));
    assert!(body.contains(">agree<"), "anthropic-api: both green");
    assert_eq!(
        body.matches("<svg class=\"bars\"").count(),
        2,
        "one set of uptime bars per service"
    );
    assert!(
        body.contains("Uptime, last 90 days"),
        "the bars carry a text equivalent"
    );
    // Around midnight UTC the seeded trouble spans yesterday and today.
    assert!(
        body.contains("Trouble on 1 day") || body.contains("Trouble on 2 days"),
        "today had an incident: {body}"
    );
    assert!(
        body.contains("class=\"f-bad\""),
        "today's bar is an outage bar"
    );
    assert!(
        body.contains("1 incident"),
        "the day's tooltip counts the incident"
    );
    assert!(body.contains("<svg class=\"spark\""), "a latency sparkline");
    assert!(body.contains("1 open incident"));
    assert!(
        body.contains("data-refresh=\"30\""),
        "the overview refreshes itself"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overview_state_is_live_while_its_history_is_cached() {
    let engine = engine(&["openai-api"]);
    feed(&engine, "openai-api", "api", Health::Up, 3, 5).await;
    let app = aiwatch_server::api::app(engine.clone());
    let request = || Request::get("/").body(Body::empty()).unwrap();
    let page = send_to(&app, &engine, request()).await;
    assert!(
        page.body.contains("All watched services are operational"),
        "{}",
        page.body
    );
    feed(&engine, "openai-api", "api", Health::Down, 3, 0).await;
    let page = send_to(&app, &engine, request()).await;
    assert!(
        page.body.contains("1 of 1 services has trouble"),
        "the state comes from the engine, not the cache"
    );
    assert!(page.body.contains("1 open incident"), "open incidents too");
    assert!(
        page.body.contains(">failing<"),
        "the latency figure does not pretend all is well"
    );
}

#[tokio::test]
async fn overview_before_any_check_says_it_is_waiting() {
    let engine = engine(&["chatgpt"]);
    let page = get(&engine, "/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("Waiting for the first checks"),
        "{}",
        page.body
    );
    assert!(page.body.contains("No checks yet."));
    assert!(page.body.contains("No data on 90 days"));
}

#[tokio::test]
async fn service_page_shows_latency_regions_and_incident_timelines() {
    let engine = engine(&["openai-api"]);
    feed(&engine, "openai-api", "api", Health::Up, 20, 10).await;
    feed(&engine, "openai-api", "api", Health::Down, 3, 0).await;
    let now = Utc::now();
    engine
        .ingest(
            vec![obs(
                &engine,
                "openai-api",
                "api",
                "eu-west",
                now,
                Health::Up,
                80.0,
            )],
            now,
        )
        .await;

    for range in ["", "?range=24h", "?range=7d", "?range=30d", "?range=90d"] {
        let path = format!("/services/openai-api{range}");
        let page = get(&engine, &path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert_html(&page, &path);
        assert_no_foreign_requests(&page, &path);
        assert!(
            page.body.contains("<svg class=\"chart\""),
            "{path}: a latency chart"
        );
    }
    let page = get(&engine, "/services/openai-api?range=24h").await;
    let body = &page.body;
    assert!(body.contains("Latency, last 24 hours"));
    assert!(
        body.contains("aria-current=\"true\">24h<"),
        "the chosen range is marked"
    );
    assert!(body.contains("p50 ") && body.contains("p95 "));
    assert!(body.contains("by phase"), "the latest check's phases");
    assert!(
        body.contains(">DNS<") || body.contains("DNS</th>"),
        "{body}"
    );
    assert!(
        body.contains("this server") && body.contains("eu-west"),
        "a per-region matrix"
    );
    assert!(body.contains("id=\"incidents\""));
    assert!(body.contains("provider error"), "the incident's cause");
    assert!(
        body.contains("class=\"timeline\"") && body.contains(">opened<"),
        "its timeline"
    );
    assert!(
        body.contains("No check has finished yet."),
        "no diagnosis without a check"
    );
    assert!(body.contains("src=\"/badge/openai-api.svg\""));
}

#[tokio::test]
async fn bad_ranges_are_rejected_with_an_html_page() {
    let engine = engine(&["openai-api"]);
    for path in [
        "/services/openai-api?range=1y",
        "/services/openai-api?range=24h&range=7d",
        "/services/openai-api?range=%3Cscript%3E",
    ] {
        let page = get(&engine, path).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{path}");
        assert_html(&page, path);
        assert!(page.body.contains("range"), "{path}: says what is wrong");
        assert!(!page.body.contains("<script>"), "{path}");
    }
    let page = get(&engine, "/services/openai-api?utm_source=x").await;
    assert_eq!(
        page.status,
        StatusCode::OK,
        "unrelated parameters are ignored"
    );
}

#[tokio::test]
async fn unknown_services_and_paths_get_html_404_and_api_paths_keep_json() {
    let engine = engine(&["chatgpt", "openai-api"]);
    let page = get(&engine, "/services/chatgtp").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert_html(&page, "/services/chatgtp");
    assert!(page.body.contains("Unknown service"));
    assert!(
        page.body.contains("href=\"/services/chatgpt\""),
        "suggests the close name"
    );

    let page = get(&engine, "/services/%3Cscript%3Ealert(1)%3C%2Fscript%3E").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(
        page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        page.body
    );
    assert_escaped(&page, "unknown service name");

    for path in [
        "/nope",
        "/services",
        "/badge/chatgpt",
        "/badge/nope.svg",
        "/widget/nope",
    ] {
        let page = get(&engine, path).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}");
        assert_html(&page, path);
    }
    let page = get(&engine, "/api/nope").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    let json: serde_json::Value = serde_json::from_str(&page.body).expect("JSON under /api/");
    assert!(json["error"].is_string());
    assert_eq!(
        get(&engine, "/api/services/nope").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(get(&engine, "/healthz").await.status, StatusCode::OK);
}

#[tokio::test]
async fn text_from_official_pages_renders_as_text_everywhere() {
    let engine = engine(&["openai-api"]);
    feed(&engine, "openai-api", "api", Health::Down, 3, 0).await;
    set_official(&engine, "openai-api", &hostile_page()).await;
    for path in [
        "/",
        "/services/openai-api",
        "/services/openai-api?range=90d",
        "/incidents",
        "/widget/openai-api",
        "/just-me",
    ] {
        let page = get(&engine, path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert_escaped(&page, path);
        assert_no_foreign_requests(&page, path);
    }
    let page = get(&engine, "/services/openai-api").await;
    let body = &page.body;
    assert!(
        body.contains("Elevated errors &lt;script&gt;alert(1)&lt;/script&gt;"),
        "the incident title is shown as text"
    );
    assert!(
        body.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "the component name is shown as text"
    );
    assert!(
        body.contains("We are looking into it. &lt;script&gt;"),
        "the update body is shown as text"
    );
    assert!(
        !body.contains("on the provider's page"),
        "a javascript: URL is not linked"
    );
    let overview = get(&engine, "/").await;
    assert!(
        overview.body.contains("Database upgrade &lt;script&gt;"),
        "maintenance ahead of time, escaped"
    );
    assert!(overview.body.contains("agree: the provider confirms"));
}

#[tokio::test]
async fn incidents_page_lists_history_official_reports_and_maintenance_ahead() {
    let engine = engine(&["openai-api", "anthropic-api"]);
    feed(&engine, "openai-api", "api", Health::Down, 3, 30).await;
    feed(&engine, "openai-api", "api", Health::Up, 4, 0).await;
    feed(&engine, "anthropic-api", "api", Health::Down, 3, 0).await;
    set_official(&engine, "openai-api", &hostile_page()).await;

    let page = get(&engine, "/incidents").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_html(&page, "/incidents");
    let body = &page.body;
    assert!(
        body.contains("Scheduled maintenance"),
        "maintenance shown before it starts"
    );
    assert!(body.contains("Reported by the providers now"));
    assert!(body.contains("Seen by aiwatch"));
    assert!(body.contains("href=\"/services/anthropic-api\""));
    assert!(
        body.contains(">resolved<") || body.contains("resolved"),
        "the openai incident resolved after validation"
    );
    assert!(
        body.contains("ongoing"),
        "the anthropic incident is still open"
    );

    let page = get(&engine, "/incidents?service=anthropic-api").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        !page.body.contains("Elevated errors"),
        "filtered to one service"
    );
    assert_eq!(
        get(&engine, "/incidents?service=").await.status,
        StatusCode::OK,
        "the form's “All services”"
    );
    let page = get(&engine, "/incidents?service=nope").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert_html(&page, "/incidents?service=nope");
    assert_eq!(
        get(
            &engine,
            "/incidents?service=openai-api&service=anthropic-api"
        )
        .await
        .status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn just_me_validates_its_input() {
    let engine = engine(&["chatgpt"]);
    let page = get(&engine, "/just-me").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_html(&page, "/just-me");
    for label in [
        "Login loop",
        "Blank or half-loaded page",
        "Access denied",
        "Network error",
    ] {
        assert!(page.body.contains(label), "symptom {label}");
    }
    assert!(
        !page.body.contains("data-refresh"),
        "the check page never reloads itself"
    );
    for path in [
        "/just-me?service=chatgpt&symptom=bogus",
        "/just-me?service=chatgpt&symptom=%3Cscript%3E",
        "/just-me?service=nope",
        "/just-me?service=chatgpt&service=chatgpt",
    ] {
        let page = get(&engine, path).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{path}");
        assert_html(&page, path);
        assert!(
            page.body.contains("role=\"alert\""),
            "{path}: the error is announced"
        );
        assert!(
            page.body.contains("<form"),
            "{path}: the form is shown again"
        );
        assert_escaped(&page, path);
    }
    let many: String = (0..40).map(|_| "symptom=slow&").collect();
    assert_eq!(
        get(&engine, &format!("/just-me?service=chatgpt&{many}"))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
}

/// A world with one healthy OpenAI-compatible API and its green status page.
async fn openai_world() -> World {
    let mut world = World::start().await;
    let api = world.api("openai-api", "api.openai.test", "/v1").await;
    api.route("GET", "/v1/models", canned::openai_models());
    world
        .status_page("openai-api", "status.openai.test")
        .await
        .set_summary(&summary_operational(&["Chat Completions"]));
    world
}

fn world_engine(world: &World) -> Arc<Engine> {
    let config = Config::parse(&world.config_toml()).expect("world config");
    let catalog = Catalog::with_config(&config);
    let services = vec![catalog.get("openai-api").unwrap().clone()];
    engine_with(
        services,
        CheckOptions {
            timeout: Duration::from_secs(3),
            dns: DnsChoice::Server(world.dns.addr()),
            ca_files: vec![world.public_ca_path()],
            control_url: Some(world.control_url()),
            deep: false,
            proxies: ProxySettings::none(),
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn just_me_checks_from_the_server_and_maps_symptoms_to_steps() {
    let world = openai_world().await;
    let engine = world_engine(&world);
    let app = aiwatch_server::api::app(engine.clone());
    let request =
        Request::get("/just-me?service=openai-api&symptom=login-loop&symptom=access-denied")
            .body(Body::empty())
            .unwrap();
    let page = send_to(&app, &engine, request).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let body = &page.body;
    assert!(body.contains("works from here"), "{body}");
    assert!(
        body.contains("Log out and log in again"),
        "login loop → log out and in"
    );
    assert!(
        body.contains("Clear the site"),
        "login loop → clear cookies and cache"
    );
    assert!(
        body.contains("Disable the VPN"),
        "access denied → disable the VPN"
    );
    assert!(
        body.contains("bot protection"),
        "access denied → the bot-challenge advice, reused"
    );
    assert!(
        body.contains("checked=\"\"") || body.contains("checked"),
        "the picks stay picked"
    );
    let seen = world.service("openai-api").server.requests();
    assert!(!seen.is_empty(), "the check reached the fake provider");
    assert!(
        seen.iter()
            .all(|r| !r.headers.iter().any(|(k, _)| k == "authorization")),
        "no key is sent on a visitor's behalf"
    );

    // POSTing the form works as well, and a repeat within seconds reuses the check.
    let before = world.service("openai-api").server.requests().len();
    let request = Request::post("/just-me")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("service=openai-api&symptom=network-error"))
        .unwrap();
    let page = send_to(&app, &engine, request).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("corporate firewall"),
        "network error → check a corporate firewall"
    );
    assert_eq!(
        world.service("openai-api").server.requests().len(),
        before,
        "the fresh check was reused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_page_shows_the_latest_diagnosis_with_its_advice() {
    let world = openai_world().await;
    world.service("openai-api").server.route(
        "GET",
        "/v1/models",
        canned::openai_error(500, "server_error", None, "boom"),
    );
    let engine = world_engine(&world);
    engine.check(0).await;
    let page = get(&engine, "/services/openai-api").await;
    assert_eq!(page.status, StatusCode::OK);
    let body = &page.body;
    assert!(body.contains("Latest diagnosis"));
    assert!(body.contains("What to do"), "{body}");
    assert!(body.contains("provider_error"), "the cause code");
    assert!(
        body.contains("The provider's servers are failing"),
        "the cause's one advice text"
    );
    assert!(body.contains("Evidence, layer by layer"));
}

#[tokio::test]
async fn badge_and_widget_show_the_state_and_only_the_widget_may_be_framed() {
    let engine = engine(&["openai-api"]);
    feed(&engine, "openai-api", "api", Health::Down, 3, 0).await;
    let page = get(&engine, "/badge/openai-api.svg").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(
        page.headers.get(header::CONTENT_TYPE).unwrap(),
        "image/svg+xml; charset=utf-8"
    );
    assert!(page.body.starts_with("<svg"));
    assert!(page.body.contains(">outage<"));
    assert!(page.body.contains("OpenAI API"));

    let page = get(&engine, "/widget/openai-api").await;
    assert_eq!(page.status, StatusCode::OK);
    let csp = page
        .headers
        .get(header::CONTENT_SECURITY_POLICY)
        .unwrap()
        .to_str()
        .unwrap();
    assert!(csp.contains("frame-ancestors *"), "{csp}");
    assert!(page.headers.get(header::X_FRAME_OPTIONS).is_none());
    assert!(page.body.contains(">Outage<"));
    assert!(!page.body.contains("<script"), "the widget runs no script");
    assert_no_foreign_requests(&page, "/widget/openai-api");

    let page = get(&engine, "/").await;
    assert_eq!(page.headers.get(header::X_FRAME_OPTIONS).unwrap(), "DENY");
}

#[tokio::test]
async fn assets_are_embedded_versioned_and_cached() {
    let engine = engine(&["chatgpt"]);
    let page = get(&engine, "/").await;
    let start = page
        .body
        .find("/assets/dashboard.css?v=")
        .expect("the stylesheet is linked");
    let url: String = page.body[start..]
        .chars()
        .take_while(|c| *c != '"')
        .collect();
    let css = get(&engine, &url).await;
    assert_eq!(css.status, StatusCode::OK);
    assert_eq!(
        css.headers.get(header::CONTENT_TYPE).unwrap(),
        "text/css; charset=utf-8"
    );
    assert!(css
        .headers
        .get(header::CACHE_CONTROL)
        .unwrap()
        .to_str()
        .unwrap()
        .contains("immutable"));
    assert!(
        css.body.contains("prefers-color-scheme: dark"),
        "light and dark"
    );
    let js = get(&engine, "/assets/dashboard.js").await;
    assert_eq!(js.status, StatusCode::OK);
    assert_eq!(
        js.headers.get(header::CACHE_CONTROL).unwrap(),
        "no-cache",
        "an unversioned URL is revalidated"
    );
    let js_text = js.body.replace("http://www.w3.org/2000/svg", "");
    assert!(
        !js_text.contains("http://") && !js_text.contains("https://"),
        "the script calls no other origin"
    );
    assert_eq!(
        get(&engine, "/assets/favicon.svg").await.status,
        StatusCode::OK
    );
    assert_eq!(
        get(&engine, "/assets/secret.txt").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn just_me_limits_each_client_and_says_when_to_come_back() {
    let world = openai_world().await;
    let engine = world_engine(&world);
    let app = aiwatch_server::api::app(engine.clone());
    let ask =
        |ip: [u8; 4]| {
            let mut request = Request::get("/just-me?service=openai-api")
                .body(Body::empty())
                .unwrap();
            request.extensions_mut().insert(axum::extract::ConnectInfo(
                std::net::SocketAddr::from((ip, 40000)),
            ));
            request
        };
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let page = send_to(&app, &engine, ask([192, 0, 2, 7])).await;
        if page.status == StatusCode::TOO_MANY_REQUESTS {
            let wait: u64 = page.headers["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(wait >= 1);
            assert!(page.body.contains("try again in"), "{}", page.body);
        }
        statuses.push(page.status);
    }
    assert!(
        statuses[..10].iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    assert_eq!(&statuses[10..], &[StatusCode::TOO_MANY_REQUESTS; 2]);
    let other = send_to(&app, &engine, ask([192, 0, 2, 8])).await;
    assert_eq!(
        other.status,
        StatusCode::OK,
        "another reader is not affected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn just_me_turns_away_what_would_wait_too_long_for_a_check() {
    let world = openai_world().await;
    world.service("openai-api").server.route(
        "GET",
        "/v1/models",
        canned::openai_models().delay(Duration::from_millis(1500)),
    );
    let engine = world_engine(&world);
    let app = aiwatch_server::api::app(engine.clone());
    let mut readers = Vec::new();
    for n in 0..24u8 {
        let (app, engine) = (app.clone(), engine.clone());
        readers.push(tokio::spawn(async move {
            let mut request = Request::get("/just-me?service=openai-api")
                .body(Body::empty())
                .unwrap();
            request.extensions_mut().insert(axum::extract::ConnectInfo(
                std::net::SocketAddr::from(([198, 51, 100, n], 40000)),
            ));
            send_to(&app, &engine, request).await.status
        }));
    }
    let mut statuses = Vec::new();
    for reader in readers {
        statuses.push(reader.await.unwrap());
    }
    let busy = statuses
        .iter()
        .filter(|s| **s == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    let served = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert!(busy >= 1, "the wait is bounded: {statuses:?}");
    assert_eq!(busy + served, 24, "{statuses:?}");
}

// === What people report ===

async fn report(engine: &Arc<Engine>, reporter: &str, body: &str) -> Page {
    send(
        engine,
        Request::post("/api/v1/reports")
            .header("content-type", "application/json")
            .header("x-aiwatch-reporter", reporter)
            .body(Body::from(body.to_owned()))
            .unwrap(),
    )
    .await
}

/// The crowd detector's minutes after `since`, as the daemon's tick would record them. `since`
/// is taken before the reports are sent: a minute boundary passing while they are sent (a busy
/// machine) must not leave their minute out of the count.
fn minutes_pass(engine: &Engine, since: chrono::DateTime<Utc>, minutes: i64) {
    let now = since;
    for m in 1..=minutes {
        engine
            .crowd
            .tick(&*engine.store, now + chrono::Duration::minutes(m));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_from_many_people_move_the_assessment_and_one_reporter_moves_nothing() {
    let engine = engine(&["chatgpt"]);
    feed(&engine, "chatgpt", "web", Health::Up, 5, 0).await;
    let body = r#"{"service": "chatgpt", "symptom": "login_loop"}"#;
    let since = Utc::now();

    // One reporter repeating itself: counted once, then held back; nothing moves.
    let first = report(&engine, "reporter-repeating-0001", body).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    assert!(first.body.contains("\"counted\":true"), "{}", first.body);
    let mut refused = false;
    for _ in 0..20 {
        let again = report(&engine, "reporter-repeating-0001", body).await;
        match again.status {
            StatusCode::ACCEPTED => assert!(again.body.contains("\"counted\":false")),
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(again.headers.contains_key(header::RETRY_AFTER));
                refused = true;
                break;
            }
            other => panic!("unexpected {other}: {}", again.body),
        }
    }
    assert!(refused, "a flooding reporter is held back");
    minutes_pass(&engine, since, 4);
    let service = get(&engine, "/api/services/chatgpt").await;
    assert!(
        service.body.contains("\"state\":\"operational\""),
        "{}",
        service.body
    );

    // Twelve people (on a server that has not heard them yet): the level rises and the one
    // assessment says so everywhere.
    let engine = self::engine(&["chatgpt"]);
    feed(&engine, "chatgpt", "web", Health::Up, 5, 0).await;
    let since = Utc::now();
    for i in 0..12 {
        let page = report(&engine, &format!("reporter-distinct-{i:04}"), body).await;
        assert_eq!(page.status, StatusCode::ACCEPTED, "{}", page.body);
    }
    minutes_pass(&engine, since, 4);
    let api = get(&engine, "/api/services/chatgpt").await;
    let json: serde_json::Value = serde_json::from_str(&api.body).unwrap();
    assert_eq!(json["state"], "degraded", "{}", api.body);
    assert_eq!(json["cause"], "crowd_reports", "{}", api.body);
    let summary = get(&engine, "/api/v2/summary.json").await;
    assert!(
        summary.body.contains("degraded_performance"),
        "{}",
        summary.body
    );
    let page = get(&engine, "/services/chatgpt").await;
    assert!(
        page.body.contains("users report problems"),
        "the headline says so"
    );
    assert!(page.body.contains("What people report"));
    assert!(
        page.body.contains("Login loop"),
        "the top symptom is listed"
    );
    let reports = get(&engine, "/api/v1/services/chatgpt/reports").await;
    let reports: serde_json::Value = serde_json::from_str(&reports.body).unwrap();
    assert_eq!(
        reports["level"], "possible",
        "cold start says at most possible"
    );
    assert_eq!(reports["last_hour"]["total"], 12);
    assert_eq!(
        reports["last_hour"]["by_symptom"][0]["symptom"],
        "login_loop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_names_the_allowed_values_and_the_form_works_without_javascript() {
    let engine = engine(&["chatgpt"]);
    let bad = report(
        &engine,
        "reporter-bad-input-0001",
        r#"{"service": "chatgtp", "symptom": "login_loop"}"#,
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("did you mean chatgpt"), "{}", bad.body);
    let bad = report(
        &engine,
        "reporter-bad-input-0001",
        r#"{"service": "chatgpt", "symptom": "on_fire"}"#,
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.body.contains("cannot_load") && bad.body.contains("other"),
        "{}",
        bad.body
    );

    // A browser without a token: the form posts, gets a cookie and is sent to the service page.
    let posted = send(
        &engine,
        Request::post("/report")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(format!(
                "service=chatgpt&symptom=blank_page&comment={}",
                "%3Cscript%3Ealert(1)%3C%2Fscript%3E"
            )))
            .unwrap(),
    )
    .await;
    assert_eq!(posted.status, StatusCode::SEE_OTHER, "{}", posted.body);
    assert_eq!(
        posted.headers[header::LOCATION],
        "/services/chatgpt?reported=1#reports"
    );
    let cookie = posted.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(
        cookie.starts_with("aiwatch_reporter=") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let page = get(&engine, "/services/chatgpt?reported=1").await;
    assert!(page.body.contains("your report counts"), "{}", page.body);
    assert!(
        page.body.contains("action=\"/report\""),
        "the form is on the page"
    );
    assert_escaped(&page, "/services/chatgpt?reported=1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_pages_lag_is_measured_from_our_opening_to_its_acknowledgement() {
    use aiwatch_core::assess::{Incident, IncidentPhase, Key, TimelineEntry, TimelineKind};
    let engine = engine(&["openai-api"]);
    let opened = Utc::now() - chrono::Duration::days(2);
    for (i, minutes) in [4i64, 11, 30].into_iter().enumerate() {
        let at = opened + chrono::Duration::hours(i as i64);
        let entry = |offset: i64, kind| TimelineEntry {
            at: at + chrono::Duration::minutes(offset),
            kind,
            text: "…".into(),
        };
        engine
            .store
            .upsert_incident(&Incident {
                id: format!("inc-{i}"),
                key: Key::new(
                    aiwatch_core::ServiceName::parse("openai-api").unwrap(),
                    aiwatch_core::observation::Component::Api,
                    "local",
                ),
                opened_at: at,
                updated_at: at,
                resolved_at: Some(at + chrono::Duration::hours(1)),
                phase: IncidentPhase::Resolved,
                severity: aiwatch_core::Status::Outage,
                cause: Cause::ProviderError,
                confirmed: true,
                timeline: vec![
                    entry(0, TimelineKind::Opened),
                    entry(minutes, TimelineKind::Confirmed),
                    entry(60, TimelineKind::Resolved),
                ],
            })
            .unwrap();
    }
    let names = vec![aiwatch_core::ServiceName::parse("openai-api").unwrap()];
    engine.crowd.refresh_lag(&*engine.store, &names, Utc::now());
    let lag = get(&engine, "/api/v1/official-lag").await;
    let lag: serde_json::Value = serde_json::from_str(&lag.body).unwrap();
    assert_eq!(lag[0]["acknowledged"], 3);
    assert_eq!(lag[0]["median_seconds"], 660.0);
    assert!(
        lag[0]["sentence"]
            .as_str()
            .unwrap()
            .starts_with("status.openai.com acknowledged outages a median 11 min after our probes"),
        "{lag}"
    );
    let metrics = get(&engine, "/metrics").await;
    assert!(
        metrics
            .body
            .contains("aiwatch_official_lag_seconds{service=\"openai-api\",quantile=\"0.5\"} 660"),
        "{}",
        metrics.body
    );
    let page = get(&engine, "/services/openai-api").await;
    assert!(page.body.contains("acknowledged outages a median 11 min"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chatgpt_down_with_the_api_working_shows_plan_b_on_its_card_and_page_only() {
    let engine = engine(&["chatgpt", "openai-api", "claude", "anthropic-api"]);
    feed(&engine, "chatgpt", "web", Health::Down, 5, 0).await;
    feed(&engine, "openai-api", "api", Health::Up, 5, 0).await;
    feed(&engine, "claude", "web", Health::Up, 5, 0).await;
    feed(&engine, "anthropic-api", "api", Health::Up, 5, 0).await;
    let line = "chatgpt is failing, but the OpenAI API works";

    let overview = get(&engine, "/").await;
    assert_eq!(overview.status, StatusCode::OK);
    assert_eq!(
        overview.body.matches("Keep working: ").count(),
        1,
        "only the failing web app's card: {}",
        overview.body
    );
    assert!(
        overview.body.contains(line) && overview.body.contains("aiwatch gateway"),
        "{}",
        overview.body
    );
    let chatgpt = get(&engine, "/services/chatgpt").await;
    assert!(chatgpt.body.contains(line), "{}", chatgpt.body);
    for quiet in ["/services/claude", "/services/openai-api"] {
        let page = get(&engine, quiet).await;
        assert!(
            !page.body.contains("Keep working: "),
            "{quiet}: {}",
            page.body
        );
    }

    // When the API fails too, the API is no way out and the page stops saying so.
    feed(&engine, "openai-api", "api", Health::Down, 5, 0).await;
    let chatgpt = get(&engine, "/services/chatgpt").await;
    assert!(!chatgpt.body.contains("Keep working: "), "{}", chatgpt.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn just_me_on_a_failing_chatgpt_says_the_api_still_works() {
    let mut world = World::start().await;
    let web = world.web("chatgpt", "chatgpt.test").await;
    web.route("GET", "/", canned::cloudflare_origin_error(522));
    let config = Config::parse(&world.config_toml()).expect("world config");
    let catalog = Catalog::with_config(&config);
    let services = vec![
        catalog.get("chatgpt").unwrap().clone(),
        catalog.get("openai-api").unwrap().clone(),
    ];
    let engine = engine_with(
        services,
        CheckOptions {
            timeout: Duration::from_secs(3),
            dns: DnsChoice::Server(world.dns.addr()),
            ca_files: vec![world.public_ca_path()],
            control_url: Some(world.control_url()),
            deep: false,
            proxies: ProxySettings::none(),
        },
    );
    // The monitor's picture: the API works.
    feed(&engine, "openai-api", "api", Health::Up, 5, 0).await;
    let page = get(&engine, "/just-me?service=chatgpt&symptom=cannot_load").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains("Keep working: ")
            && page
                .body
                .contains("If chatgpt does not work for you, the OpenAI API does")
            && page.body.contains("aiwatch gateway"),
        "{}",
        page.body
    );
    // Asking about the API itself gets no plan B.
    let page = get(&engine, "/just-me?service=openai-api").await;
    assert!(!page.body.contains("Keep working: "), "{}", page.body);
}
