//! TEMPORARY preview harness (not to be committed): serves the dashboard with seeded history.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aiwatch_core::assess::{
    AssessConfig, Incident, IncidentPhase, Key, State, TimelineEntry, TimelineKind,
};
use aiwatch_core::observation::{Health, Observation, PhaseMs, Source, LOCAL_REGION};
use aiwatch_core::official::*;
use aiwatch_core::{Catalog, Cause, Service};
use aiwatch_probe::{CheckOptions, Checker, DnsChoice, ProxySettings};
use aiwatch_server::engine::{Engine, EngineOptions, OfficialNow};
use aiwatch_server::metrics::Metrics;
use aiwatch_server::writer::{Retention, Writer};
use aiwatch_store::{SqliteStore, Store};
use chrono::{DateTime, Utc};

fn observation(
    service: &Service,
    component: &str,
    region: &str,
    at: DateTime<Utc>,
    health: Health,
    ms: f32,
) -> Observation {
    Observation {
        service: service.name.clone(),
        component: component.into(),
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
            dns: Some(ms * 0.05),
            connect: Some(ms * 0.1),
            tls: Some(ms * 0.15),
            first_byte: Some(ms * 0.6),
            total: Some(ms),
        },
        complete: None,
        detail: "HTTP 200".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn preview() {
    let now = Utc::now();
    let catalog = Catalog::builtin();
    let services: Vec<Service> = catalog.iter().cloned().collect();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().unwrap());
    let mut rng = fastrand::Rng::with_seed(3);
    let mut batch = Vec::new();
    for (n, s) in services.iter().enumerate() {
        if s.local {
            continue;
        }
        let watched = if n % 3 == 2 { 40 } else { 90 };
        let bad: Vec<i64> = (0..2).map(|_| rng.i64(1..watched)).collect();
        for day in 0..watched {
            for hour in 0..48 {
                let at =
                    now - chrono::Duration::days(day) - chrono::Duration::minutes(30 * hour + 61);
                for c in ["web", "api"] {
                    if c == "web" && s.web_url.is_none() {
                        continue;
                    }
                    if c == "api" && s.api_base.is_none() {
                        continue;
                    }
                    let down = bad.contains(&day) && hour < 6 && c == "api";
                    let blip = rng.u32(0..400) == 0;
                    let ms = 90.0
                        + rng.f32() * 60.0
                        + (n as f32) * 25.0
                        + if day < 3 { 40.0 } else { 0.0 };
                    batch.push(observation(
                        s,
                        c,
                        LOCAL_REGION,
                        at,
                        if down || blip {
                            Health::Down
                        } else {
                            Health::Up
                        },
                        ms,
                    ));
                }
            }
        }
        for m in 0..60 {
            let at = now - chrono::Duration::minutes(m);
            for c in ["web", "api"] {
                if c == "web" && s.web_url.is_none() {
                    continue;
                }
                if c == "api" && s.api_base.is_none() {
                    continue;
                }
                batch.push(observation(
                    s,
                    c,
                    LOCAL_REGION,
                    at,
                    Health::Up,
                    100.0
                        + rng.f32() * 80.0
                        + (n as f32) * 20.0
                        + if m % 17 == 0 { 150.0 } else { 0.0 },
                ));
            }
        }
        for (k, day) in bad.iter().enumerate() {
            let opened = now - chrono::Duration::days(*day) - chrono::Duration::hours(3);
            let resolved = opened + chrono::Duration::hours(2) + chrono::Duration::minutes(13);
            let e = |at, kind, text: &str| TimelineEntry {
                at,
                kind,
                text: text.into(),
            };
            store
                .upsert_incident(&Incident {
                    id: format!("inc-{}-{k}", s.name),
                    key: Key::new(s.name.clone(), "api", LOCAL_REGION),
                    opened_at: opened,
                    updated_at: resolved,
                    resolved_at: Some(resolved),
                    phase: IncidentPhase::Resolved,
                    severity: if k == 0 {
                        State::Outage
                    } else {
                        State::Degraded
                    },
                    cause: if k == 0 {
                        Cause::ProviderError
                    } else {
                        Cause::ProviderOverloaded
                    },
                    confirmed: k == 0,
                    timeline: vec![
                        e(
                            opened,
                            TimelineKind::Opened,
                            "3 failed checks in a row: GET /models answered HTTP 500",
                        ),
                        e(
                            opened + chrono::Duration::minutes(12),
                            TimelineKind::Confirmed,
                            "the provider confirms: “Elevated error rates on the API”",
                        ),
                        e(
                            resolved - chrono::Duration::minutes(5),
                            TimelineKind::ValidationStarted,
                            "checks pass again; validating with canaries",
                        ),
                        e(
                            resolved - chrono::Duration::minutes(2),
                            TimelineKind::CanaryPassed,
                            "canary 1 of 2 passed in 182 ms",
                        ),
                        e(
                            resolved,
                            TimelineKind::Resolved,
                            "2 validated canaries passed",
                        ),
                    ],
                })
                .unwrap();
        }
    }
    for chunk in batch.chunks(2000) {
        store.insert_observations(chunk).unwrap();
    }

    let metrics = Arc::new(Metrics::new());
    let writer = Writer::start(store.clone(), metrics.clone(), Retention::default());
    let checker = Checker::new(CheckOptions {
        timeout: Duration::from_secs(3),
        dns: DnsChoice::Server("127.0.0.1:9".parse().unwrap()),
        ca_files: vec![],
        control_url: None,
        deep: false,
        proxies: ProxySettings::none(),
    })
    .unwrap();
    let engine = Arc::new(
        Engine::new(
            services.clone(),
            checker,
            HashMap::new(),
            store,
            writer,
            metrics,
            EngineOptions {
                timeout: Duration::from_secs(3),
                default_interval: Duration::from_secs(30),
                assess: AssessConfig {
                    failures_to_open: 3,
                    ..AssessConfig::default()
                },
                page_name: "aiwatch".into(),
            },
        )
        .unwrap(),
    );
    let green = OfficialStatus {
        indicator: Some(Indicator::None),
        description: Some("All Systems Operational".into()),
        ..OfficialStatus::default()
    };
    for s in &services {
        if s.local {
            continue;
        }
        let failing = s.name.as_str() == "openai-api";
        let degraded = s.name.as_str() == "claude";
        for k in 0..4 {
            let at = now - chrono::Duration::minutes(14) + chrono::Duration::minutes(4 * k);
            let mut obs = vec![];
            if s.web_url.is_some() {
                obs.push(observation(
                    s,
                    "web",
                    LOCAL_REGION,
                    at,
                    if degraded {
                        Health::Degraded
                    } else {
                        Health::Up
                    },
                    140.0,
                ));
            }
            if s.api_base.is_some() {
                obs.push(observation(
                    s,
                    "api",
                    LOCAL_REGION,
                    at,
                    if failing { Health::Down } else { Health::Up },
                    120.0,
                ));
            }
            if s.name.as_str() == "anthropic-api" {
                obs.push(observation(s, "api", "eu-west", at, Health::Up, 95.0));
                obs.push(observation(s, "api", "us-east", at, Health::Up, 60.0));
            }
            engine.ingest(obs, at);
        }
        let mut page = green.clone();
        if degraded {
            page = OfficialStatus {
                indicator: Some(Indicator::Minor),
                description: Some("Partially Degraded Service".into()),
                components: vec![Component {
                    id: "c".into(),
                    name: "claude.ai".into(),
                    status: ComponentStatus::DegradedPerformance,
                    group: None,
                }],
                incidents: vec![aiwatch_core::official::Incident {
                    id: "x".into(),
                    name: "Elevated errors on claude.ai <script>alert(1)</script>".into(),
                    status: IncidentStatus::Identified,
                    impact: Impact::Minor,
                    created_at: Some(now - chrono::Duration::minutes(40)),
                    updated_at: None,
                    resolved_at: None,
                    url: Some("https://status.anthropic.com/incidents/x".into()),
                    components: vec![],
                    updates: vec![
                        IncidentUpdate {
                            status: "identified".into(),
                            body: "The issue has been identified and a fix is being implemented."
                                .into(),
                            created_at: Some(now - chrono::Duration::minutes(20)),
                        },
                        IncidentUpdate {
                            status: "investigating".into(),
                            body: "We are investigating elevated error rates.".into(),
                            created_at: Some(now - chrono::Duration::minutes(40)),
                        },
                    ],
                }],
                ..OfficialStatus::default()
            };
        }
        if s.name.as_str() == "gemini-api" {
            page.maintenances = vec![Maintenance {
                id: "m".into(),
                name: "Scheduled database maintenance".into(),
                status: MaintenanceStatus::Scheduled,
                impact: Impact::Maintenance,
                scheduled_for: Some(now + chrono::Duration::hours(20)),
                scheduled_until: Some(now + chrono::Duration::hours(22)),
                url: None,
                components: vec![],
                updates: vec![],
            }];
        }
        if s.status.is_some() {
            engine.set_official(
                s,
                OfficialNow {
                    view: Some(page.view_for(&[])),
                    unavailable: None,
                },
                now,
            );
        }
    }
    engine.flush();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:8099")
        .await
        .unwrap();
    let secs: u64 = std::env::var("PREVIEW_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let server = axum::serve(listener, aiwatch_server::api::app(engine.clone()));
    let _ = tokio::time::timeout(Duration::from_secs(secs), server).await;
}
