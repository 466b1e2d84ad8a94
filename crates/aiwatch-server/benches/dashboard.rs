//! Benchmarks the overview page against its budget — 50 services × 90 days of history rendered
//! in under 20 ms, under 150 KB, with no request off the origin — over an SQLite store seeded
//! with day rollups, incidents, recent checks and official views.
//!
//! Run with `cargo bench -p aiwatch-server --bench dashboard`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aiwatch_core::assess::{
    AssessConfig, Incident, IncidentPhase, Key, TimelineEntry, TimelineKind,
};
use aiwatch_core::observation::{Component, Health, Observation, PhaseMs, Region, Source};
use aiwatch_core::official::{Indicator, OfficialStatus};
use aiwatch_core::{Catalog, Cause, Service, ServiceName, Status};
use aiwatch_probe::{CheckOptions, Checker, DnsChoice, ProxySettings};
use aiwatch_server::dashboard::cache::History;
use aiwatch_server::dashboard::overview;
use aiwatch_server::dashboard::service::{self as service_page, Range};
use aiwatch_server::engine::{Engine, EngineOptions, OfficialNow};
use aiwatch_server::metrics::Metrics;
use aiwatch_server::writer::Writer;
use aiwatch_store::{Retention, SqliteStore, Store};
use axum::body::Body;
use axum::http::Request;
use chrono::{DateTime, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use tower::ServiceExt;

const SERVICES: usize = 50;
const DAYS: i64 = 90;
/// Checks per component and day in the seeded history (rollups only count them).
const PER_DAY: i64 = 24;

/// 50 services cut from the built-in catalog, renamed.
fn services() -> Vec<Service> {
    let catalog = Catalog::builtin();
    let base: Vec<&Service> = catalog.iter().collect();
    (0..SERVICES)
        .map(|i| {
            let mut s = base[i % base.len()].clone();
            s.name = ServiceName::parse(&format!("{}-{i:02}", s.name)).unwrap();
            s.title = format!("{} {i:02}", s.title);
            s
        })
        .collect()
}

fn observation(
    service: &Service,
    component: Component,
    at: DateTime<Utc>,
    health: Health,
    ms: f32,
) -> Observation {
    Observation {
        service: service.name.clone(),
        component,
        region: Region::local(),
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

/// A store with 90 days of history for every service: hourly checks of web and API, a few bad
/// days with their incidents, and the last hour at one check a minute.
fn seed_store(store: &dyn Store, services: &[Service], now: DateTime<Utc>) {
    let mut batch = Vec::with_capacity(2_000);
    let mut rng = fastrand::Rng::with_seed(7);
    for (n, service) in services.iter().enumerate() {
        let bad_days: Vec<i64> = (0..3).map(|_| rng.i64(1..DAYS)).collect();
        for day in 0..DAYS {
            for hour in 0..PER_DAY {
                let at = now
                    - chrono::Duration::days(day)
                    - chrono::Duration::hours(hour)
                    - chrono::Duration::minutes(61);
                for component in [Component::Web, Component::Api] {
                    let bad = bad_days.contains(&day) && hour < 3 && component == Component::Api;
                    let health = if bad { Health::Down } else { Health::Up };
                    let ms = 80.0 + rng.f32() * 120.0 + (n % 7) as f32 * 20.0;
                    batch.push(observation(service, component, at, health, ms));
                    if batch.len() == 2_000 {
                        store.insert_observations(&batch).unwrap();
                        batch.clear();
                    }
                }
            }
        }
        for minute in 0..60 {
            let at = now - chrono::Duration::minutes(minute);
            for component in [Component::Web, Component::Api] {
                batch.push(observation(
                    service,
                    component,
                    at,
                    Health::Up,
                    90.0 + rng.f32() * 80.0,
                ));
            }
        }
        for (k, day) in bad_days.iter().enumerate() {
            let opened = now - chrono::Duration::days(*day) - chrono::Duration::hours(3);
            let resolved = opened + chrono::Duration::hours(2);
            let key = Key::new(service.name.clone(), Component::Api, Region::local());
            let entry = |at, kind, text: &str| TimelineEntry {
                at,
                kind,
                text: text.into(),
            };
            store
                .upsert_incident(&Incident {
                    id: format!("inc-{}-{k}", service.name),
                    key,
                    opened_at: opened,
                    updated_at: resolved,
                    resolved_at: Some(resolved),
                    phase: IncidentPhase::Resolved,
                    severity: if k == 0 {
                        Status::Outage
                    } else {
                        Status::Degraded
                    },
                    cause: Cause::ProviderError,
                    confirmed: k == 0,
                    timeline: vec![
                        entry(
                            opened,
                            TimelineKind::Opened,
                            "3 failed checks in a row: HTTP 500",
                        ),
                        entry(
                            resolved - chrono::Duration::minutes(5),
                            TimelineKind::ValidationStarted,
                            "checks pass again",
                        ),
                        entry(
                            resolved,
                            TimelineKind::Resolved,
                            "2 validated canaries passed",
                        ),
                    ],
                })
                .unwrap();
        }
    }
    store.insert_observations(&batch).unwrap();
}

/// The engine over the seeded store: current states, two services failing, official views.
async fn engine(store: Arc<dyn Store>, services: Vec<Service>, now: DateTime<Utc>) -> Arc<Engine> {
    let metrics = Arc::new(Metrics::new(0));
    let writer = Writer::start(store.clone(), metrics.clone(), Retention::default());
    let checker = Checker::new(CheckOptions {
        timeout: Duration::from_secs(1),
        dns: DnsChoice::Server("127.0.0.1:9".parse().unwrap()),
        ca_files: Vec::new(),
        control_url: None,
        deep: false,
        proxies: ProxySettings::none(),
    })
    .unwrap();
    let options = EngineOptions {
        timeout: Duration::from_secs(5),
        default_interval: Duration::from_secs(30),
        assess: AssessConfig::default(),
        page_name: "aiwatch bench".into(),
        stream_interval: None,
        crowd: aiwatch_core::crowd::CrowdConfig::default(),
        regions: aiwatch_server::agents::RegionOptions::default(),
        instance: None,
    };
    let engine = Arc::new(
        Engine::new(
            services.clone(),
            checker,
            HashMap::new(),
            store,
            writer,
            metrics,
            options,
        )
        .unwrap(),
    );
    let green = OfficialStatus {
        indicator: Some(Indicator::None),
        description: Some("All Systems Operational".into()),
        ..OfficialStatus::default()
    };
    for (i, service) in services.iter().enumerate() {
        let failing = i % 25 == 3;
        for k in 0..3 {
            let at = now - chrono::Duration::seconds(30 * (3 - k));
            let health = if failing { Health::Down } else { Health::Up };
            engine
                .ingest(
                    vec![
                        observation(service, Component::Web, at, Health::Up, 120.0),
                        observation(service, Component::Api, at, health, 140.0),
                    ],
                    at,
                )
                .await;
        }
        engine
            .set_official(
                service,
                OfficialNow {
                    view: Some(green.view_for(&[])),
                    unavailable: None,
                },
                now,
            )
            .await;
    }
    engine.flush().await;
    engine
}

/// Counts `src=` and linked stylesheets/scripts/icons that point off the origin.
fn foreign_requests(html: &str) -> usize {
    [
        "src=\"",
        "<link rel=\"stylesheet\" href=\"",
        "<link rel=\"icon\" href=\"",
    ]
    .iter()
    .flat_map(|attr| {
        html.match_indices(attr)
            .map(move |(i, _)| &html[i + attr.len()..])
    })
    .filter(|v| !v.starts_with('/') || v.starts_with("//"))
    .count()
}

fn bench(c: &mut Criterion) {
    let now = Utc::now();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("bench.db")).unwrap());
    let services = services();
    let started = Instant::now();
    seed_store(&*store, &services, now);
    eprintln!(
        "seeded {SERVICES} services × {DAYS} days in {:.1?}",
        started.elapsed()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let engine = runtime.block_on(engine(store, services, now));

    let history = History::read(&engine, Utc::now()).unwrap();
    let page = overview::render(&overview::gather(&engine, &history, Utc::now())).into_string();
    let bars = page.matches("<svg class=\"bars\"").count();
    let saved = std::env::temp_dir().join("aiwatch-overview-bench.html");
    std::fs::write(&saved, &page).unwrap();
    let assets: usize = ["dashboard.css", "dashboard.js", "favicon.svg"]
        .iter()
        .map(|name| {
            let path = format!("{}/assets/{name}", env!("CARGO_MANIFEST_DIR"));
            std::fs::metadata(path)
                .map(|m| m.len() as usize)
                .unwrap_or(0)
        })
        .sum();
    eprintln!(
        "overview: HTML {} bytes ({:.1} KB); with its stylesheet, script and icon {:.1} KB; \
         {bars} uptime bar sets; {} requests off the origin; saved to {}",
        page.len(),
        page.len() as f64 / 1024.0,
        (page.len() + assets) as f64 / 1024.0,
        foreign_requests(&page),
        saved.display()
    );
    assert_eq!(bars, SERVICES);
    assert!(
        page.len() + assets < 150 * 1024,
        "page weight budget: {} bytes",
        page.len() + assets
    );
    assert_eq!(foreign_requests(&page), 0);

    let mut group = c.benchmark_group("overview");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(8));
    group.bench_function("render (history cached, live state read)", |b| {
        b.iter(|| overview::render(&overview::gather(&engine, &history, Utc::now())).into_string())
    });
    group.bench_function("cold: read history from the store + render", |b| {
        b.iter(|| {
            let history = History::read(&engine, Utc::now()).unwrap();
            overview::render(&overview::gather(&engine, &history, Utc::now())).into_string()
        })
    });
    let service = engine.services[3].clone();
    for range in [Range::Day, Range::Quarter] {
        group.bench_function(format!("service page, range {}", range.code()), |b| {
            b.iter(|| {
                service_page::render(
                    &service_page::gather(&engine, &service, range, Utc::now()).unwrap(),
                )
                .into_string()
            })
        });
    }
    let app = aiwatch_server::api::app(engine.clone());
    group.bench_function("GET / through the router", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let response = app
                    .clone()
                    .oneshot(Request::get("/").body(Body::empty()).unwrap())
                    .await
                    .unwrap();
                axum::body::to_bytes(response.into_body(), usize::MAX)
                    .await
                    .unwrap()
                    .len()
            })
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
