//! End-to-end on loopback: the real daemon (scheduler, probes, assessor, SQLite store, HTTP API)
//! watches fake providers that go down, come back badly, and come back well.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aiwatch_core::assess::AssessConfig;
use aiwatch_core::secret::ApiKey;
use aiwatch_core::{Catalog, Config, ServiceName};
use aiwatch_probe::poller::PollerOptions;
use aiwatch_probe::{CheckOptions, DnsChoice, ProxySettings};
use aiwatch_server::engine::EngineOptions;
use aiwatch_server::scheduler::Limits;
use aiwatch_server::DaemonConfig;
use aiwatch_store::Retention;
use aiwatch_store::SqliteStore;
use aiwatch_testkit::{canned, summary_with_incident, ApiClient, DnsAnswer, World};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const INTERVAL: Duration = Duration::from_millis(150);

/// A daemon running against a world, with its API address.
struct Daemon {
    api: ApiClient,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Daemon {
    async fn start(world: &World, services: &[&str], db: &Path) -> Daemon {
        Self::start_with_alerts(world, services, db, "").await
    }

    /// Starts with the `[[alert]]` entries of `alerts_toml` (secrets read from this process's
    /// environment; receivers' certificates from the world's public CA).
    async fn start_with_alerts(
        world: &World,
        services: &[&str],
        db: &Path,
        alerts_toml: &str,
    ) -> Daemon {
        Self::start_with_usage(world, services, db, alerts_toml, None).await
    }

    /// [`Daemon::start_with_alerts`], with the gateway's usage spikes read from `usage`.
    async fn start_with_usage(
        world: &World,
        services: &[&str],
        db: &Path,
        alerts_toml: &str,
        usage: Option<aiwatch_server::alerting::UsageSource>,
    ) -> Daemon {
        let config = Config::parse(&format!("{}\n{alerts_toml}", world.config_toml()))
            .expect("valid world config");
        let trust = aiwatch_probe::tls::Trust::new(&[world.public_ca_path()]).unwrap();
        let alerts: Vec<aiwatch_alerts::Channel> = config
            .alerts
            .iter()
            .map(|a| {
                let mut a = a.clone();
                a.ca_file = Some(world.public_ca_path());
                aiwatch_alerts::Channel::build(a, &|v| std::env::var(v).ok(), &trust)
                    .expect("alert channel builds")
            })
            .collect();
        let catalog = Catalog::with_config(&config);
        let services: Vec<_> = services
            .iter()
            .map(|n| catalog.get(n).unwrap().clone())
            .collect();
        let keys: HashMap<ServiceName, ApiKey> = services
            .iter()
            .filter(|s| s.api_key_env.is_some())
            .map(|s| {
                (
                    s.name.clone(),
                    ApiKey::new("sk-daemon-test".into()).unwrap(),
                )
            })
            .collect();
        let daemon_config = DaemonConfig {
            services,
            check: CheckOptions {
                timeout: Duration::from_millis(1500),
                dns: DnsChoice::Server(world.dns.addr()),
                ca_files: vec![world.public_ca_path()],
                control_url: Some(world.control_url()),
                deep: false,
                proxies: ProxySettings::none(),
            },
            keys,
            store: Arc::new(SqliteStore::open(db).expect("open the store")),
            engine: EngineOptions {
                timeout: Duration::from_millis(1500),
                default_interval: INTERVAL,
                assess: AssessConfig {
                    failures_to_open: 2,
                    successes_to_close: 2,
                    ..AssessConfig::default()
                },
                page_name: "aiwatch test".into(),
                stream_interval: None,
                crowd: aiwatch_core::crowd::CrowdConfig::default(),
                regions: aiwatch_server::agents::RegionOptions::default(),
                instance: None,
            },
            limits: Limits {
                shutdown_grace: Duration::from_secs(2),
                ..Limits::default()
            },
            http: aiwatch_inbound::Limits::default(),
            access: aiwatch_server::access::Access::open(),
            retention: Retention::default(),
            poll: PollerOptions {
                interval: Duration::from_millis(200),
                request_timeout: Duration::from_secs(1),
                stale_after: Duration::from_secs(3),
                ..PollerOptions::default()
            },
            alerts,
            alert_retry: aiwatch_alerts::RetryPolicy {
                base: Duration::from_millis(100),
                ..aiwatch_alerts::RetryPolicy::default()
            },
            dashboard_url: "http://aiwatch.test".into(),
            usage_spikes: usage,
            feeds: config.feeds.clone(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            aiwatch_server::run(
                listener,
                daemon_config,
                async {
                    let _ = stopped.await;
                },
                |_| {},
            )
            .await
            .expect("daemon runs");
        });
        Daemon {
            api: ApiClient { addr },
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("the daemon stops within its grace period")
            .expect("the daemon task ends cleanly");
    }
}

/// The daemon's API, as every test reads it.
impl std::ops::Deref for Daemon {
    type Target = ApiClient;
    fn deref(&self) -> &ApiClient {
        &self.api
    }
}

fn component<'a>(service: &'a Value, name: &str) -> Option<&'a Value> {
    service["components"]
        .as_array()?
        .iter()
        .find(|c| c["component"] == name)
}

fn api_state(service: &Value) -> String {
    component(service, "api").map_or_else(String::new, |c| {
        c["state"].as_str().unwrap_or_default().to_owned()
    })
}

fn open_incident(service: &Value) -> Option<Value> {
    service["incidents"].as_array()?.first().cloned()
}

fn api(world: &World) -> &aiwatch_testkit::FakeServer {
    &world.service("openai-api").server
}

fn timeline_kinds(incident: &Value) -> Vec<String> {
    incident["timeline"]
        .as_array()
        .map(|t| {
            t.iter()
                .map(|e| e["kind"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_opens_an_incident_that_resolves_only_after_validated_recovery() {
    let world = World::openai().await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&world, &["openai-api"], &dir.path().join("a.db")).await;
    let path = "/api/services/openai-api";
    daemon
        .wait_for(path, "operational and a baseline", |s| {
            api_state(s) == "operational"
        })
        .await;
    tokio::time::sleep(INTERVAL * 4).await;

    // Down: 503s from the provider while its page is green.
    api(&world).route("GET", "/v1/models", canned::openai_503_overloaded());
    let service = daemon
        .wait_for(path, "an open incident", |s| open_incident(s).is_some())
        .await;
    let incident = open_incident(&service).unwrap();
    assert_eq!(incident["cause"], "provider_overloaded");
    assert_eq!(
        incident["confirmed"], false,
        "the official page is green: unconfirmed"
    );
    let description = component(&service, "api").unwrap()["description"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(description.contains("unconfirmed"), "{description}");

    // Back, but slow: validation keeps the incident open.
    api(&world).route(
        "GET",
        "/v1/models",
        canned::openai_models().delay(Duration::from_millis(700)),
    );
    let service = daemon
        .wait_for(path, "a failed canary", |s| {
            open_incident(s)
                .is_some_and(|i| timeline_kinds(&i).contains(&"canary_failed".to_owned()))
        })
        .await;
    let incident = open_incident(&service).unwrap();
    assert_eq!(incident["phase"], "validating");
    let failed = incident["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "canary_failed")
        .unwrap();
    assert!(
        failed["text"].as_str().unwrap().contains("slow"),
        "{failed}"
    );

    // Back and well: two validated canaries resolve it.
    api(&world).route("GET", "/v1/models", canned::openai_models());
    daemon
        .wait_for(path, "no open incident", |s| {
            open_incident(s).is_none() && api_state(s) == "operational"
        })
        .await;
    // The store lags the engine by a write batch.
    let incidents = daemon
        .wait_for(
            "/api/incidents?service=openai-api",
            "the resolved incident stored",
            |all| all[0]["phase"] == "resolved",
        )
        .await;
    let resolved = &incidents.as_array().unwrap()[0];
    let kinds = timeline_kinds(resolved);
    for kind in [
        "opened",
        "validation_started",
        "canary_failed",
        "canary_passed",
        "resolved",
    ] {
        assert!(
            kinds.contains(&kind.to_owned()),
            "{kind} missing in {kinds:?}"
        );
    }
    let canaries = api(&world)
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .count();
    assert!(
        canaries >= 2,
        "recovery was validated by streamed canaries ({canaries})"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_answers_keep_the_incident_open_until_complete_ones_arrive() {
    let world = World::openai().await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&world, &["openai-api"], &dir.path().join("t.db")).await;
    let path = "/api/services/openai-api";
    daemon
        .wait_for(path, "operational", |s| api_state(s) == "operational")
        .await;
    api(&world).route(
        "GET",
        "/v1/models",
        canned::openai_error(500, "server_error", None, "boom"),
    );
    daemon
        .wait_for(path, "an open incident", |s| open_incident(s).is_some())
        .await;
    api(&world).route("POST", "/v1/chat/completions", canned::openai_stream(false));
    api(&world).route("GET", "/v1/models", canned::openai_models());
    let service = daemon
        .wait_for(path, "a truncated canary", |s| {
            open_incident(s).is_some_and(|i| {
                i["timeline"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["text"].as_str().unwrap_or_default().contains("truncated"))
            })
        })
        .await;
    assert!(open_incident(&service).is_some());
    api(&world).route("POST", "/v1/chat/completions", canned::openai_stream(true));
    daemon
        .wait_for(path, "resolution", |s| open_incident(s).is_none())
        .await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_page_turning_red_confirms_the_incident() {
    let world = World::openai().await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&world, &["openai-api"], &dir.path().join("c.db")).await;
    let path = "/api/services/openai-api";
    daemon
        .wait_for(path, "operational", |s| api_state(s) == "operational")
        .await;
    api(&world).route(
        "GET",
        "/v1/models",
        canned::openai_error(502, "server_error", None, "bad gateway"),
    );
    daemon
        .wait_for(path, "an unconfirmed incident", |s| {
            open_incident(s).is_some_and(|i| i["confirmed"] == false)
        })
        .await;
    world.status_pages[0].1.set_summary(&summary_with_incident(
        &[("Chat Completions", "major_outage")],
        "Elevated error rates",
        "major",
    ));
    let service = daemon
        .wait_for(path, "confirmation", |s| {
            open_incident(s).is_some_and(|i| i["confirmed"] == true)
        })
        .await;
    let incident = open_incident(&service).unwrap();
    let confirmed = incident["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "confirmed")
        .unwrap();
    assert!(
        confirmed["text"]
            .as_str()
            .unwrap()
            .contains("Elevated error rates"),
        "{confirmed}"
    );
    assert_eq!(service["official"]["signal"], "outage");

    // The Statuspage-compatible API reads back through aiwatch's own Statuspage parser. It reads
    // the store, which the writer fills a moment after the assessment changed.
    daemon
        .wait_for("/api/v2/summary.json", "the incident in the store", |s| {
            s["incidents"].as_array().is_some_and(|a| !a.is_empty())
        })
        .await;
    let (status, body) = daemon.get("/api/v2/summary.json").await;
    assert_eq!(status, 200);
    let page = aiwatch_probe::status::parse_statuspage_summary(body.as_bytes())
        .expect("our own parser reads it");
    let component = page
        .components
        .iter()
        .find(|c| c.name == "openai-api")
        .expect("one component per service");
    assert_eq!(
        component.status,
        aiwatch_core::official::ComponentStatus::MajorOutage
    );
    assert_eq!(page.incidents.len(), 1);
    assert_eq!(
        page.indicator,
        Some(aiwatch_core::official::Indicator::Critical)
    );
    for endpoint in [
        "status.json",
        "components.json",
        "incidents.json",
        "incidents/unresolved.json",
        "scheduled-maintenances.json",
    ] {
        let (status, body) = daemon.get(&format!("/api/v2/{endpoint}")).await;
        assert_eq!(status, 200, "{endpoint}");
        assert!(body.contains("\"page\""), "{endpoint}: {body}");
    }
    let incidents = aiwatch_probe::status::parse_statuspage_incidents(
        daemon.get("/api/v2/incidents.json").await.1.as_bytes(),
    )
    .unwrap();
    assert_eq!(incidents.len(), 1);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_offline_records_gaps_and_opens_no_incident() {
    let world = World::openai().await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&world, &["openai-api"], &dir.path().join("o.db")).await;
    let path = "/api/services/openai-api";
    daemon
        .wait_for(path, "operational", |s| api_state(s) == "operational")
        .await;
    // The monitor's own network goes: nothing resolves, the control host neither.
    world.dns.set("api.openai.test", DnsAnswer::NxDomain);
    world
        .dns
        .set(aiwatch_testkit::world::CONTROL_HOST, DnsAnswer::NxDomain);
    daemon
        .wait_for(path, "unknown state", |s| api_state(s) == "unknown")
        .await;
    tokio::time::sleep(INTERVAL * 6).await;
    let service = daemon.json(path).await;
    assert!(
        open_incident(&service).is_none(),
        "a blind monitor opens no incident: {service:#}"
    );
    assert_eq!(api_state(&service), "unknown");
    let uptime = daemon
        .json("/api/services/openai-api/uptime?component=api")
        .await;
    assert!(
        uptime["24h"]["unknown_ratio"].as_f64().unwrap() > 0.0,
        "{uptime:#}"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_the_open_incident_without_reopening_it() {
    let world = World::openai().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let path = "/api/services/openai-api";
    let daemon = Daemon::start(&world, &["openai-api"], &db).await;
    daemon
        .wait_for(path, "operational", |s| api_state(s) == "operational")
        .await;
    api(&world).route(
        "GET",
        "/v1/models",
        canned::openai_error(500, "server_error", None, "boom"),
    );
    let before = daemon
        .wait_for(path, "an open incident", |s| open_incident(s).is_some())
        .await;
    let id = open_incident(&before).unwrap()["id"].clone();
    daemon.stop().await;

    let daemon = Daemon::start(&world, &["openai-api"], &db).await;
    let after = daemon.json(path).await;
    assert_eq!(
        open_incident(&after).map(|i| i["id"].clone()),
        Some(id.clone()),
        "resumed at start"
    );
    tokio::time::sleep(INTERVAL * 5).await;
    let incidents = daemon.json("/api/incidents?service=openai-api").await;
    assert_eq!(
        incidents.as_array().unwrap().len(),
        1,
        "no second incident: {incidents:#}"
    );
    assert_eq!(incidents[0]["id"], id);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_api_parameters_get_400_json_and_unknown_names_404() {
    let world = World::openai().await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&world, &["openai-api"], &dir.path().join("p.db")).await;
    for path in [
        "/api/services/openai-api/history?from=yesterday",
        "/api/services/openai-api/history?granularity=week",
        "/api/services/openai-api/history?granularity=raw&limit=0",
        "/api/services/openai-api/latency?from=2026-11-25T12:00:00Z&to=2026-11-25T11:00:00Z",
        "/api/incidents?open=maybe",
    ] {
        let (status, body) = daemon.get(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        let json: Value = serde_json::from_str(&body).unwrap();
        assert!(json["error"].is_string(), "{path}: {body}");
    }
    let (status, body) = daemon.get("/api/services/chatgtp").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("unknown service"));
    let (status, _) = daemon.get("/api/incidents/nope").await;
    assert_eq!(status, 404);
    assert_eq!(daemon.get("/healthz").await.0, 200);
    assert_eq!(daemon.get("/readyz").await.0, 200);
    daemon
        .wait_for("/api/services/openai-api", "a check", |s| {
            api_state(s) == "operational"
        })
        .await;
    let (_, metrics) = daemon.get("/metrics").await;
    for family in [
        "aiwatch_service_state",
        "aiwatch_probe_phase_seconds",
        "aiwatch_schedule_drift_seconds",
        "aiwatch_store_write_seconds",
        "aiwatch_probe_results_total",
    ] {
        assert!(metrics.contains(family), "{family} missing from /metrics");
    }
    // The writer batches for up to 200 ms before a transaction.
    daemon
        .wait_for(
            "/api/services/openai-api/history?granularity=raw",
            "stored observations",
            |h| !h["observations"].as_array().unwrap().is_empty(),
        )
        .await;
    let minute = daemon.json("/api/services/openai-api/history").await;
    assert!(!minute["buckets"].as_array().unwrap().is_empty());
    // Every granularity the API documents answers.
    let hour = daemon
        .json("/api/services/openai-api/history?granularity=hour")
        .await;
    assert_eq!(hour["granularity"], "hour");
    assert!(!hour["buckets"].as_array().unwrap().is_empty(), "{hour:#}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_while_a_slowloris_client_holds_hundreds_of_connections() {
    let world = World::openai().await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&world, &["openai-api"], &dir.path().join("s.db")).await;
    let mut held = Vec::new();
    for _ in 0..300 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        if let Ok(mut s) = socket.connect(daemon.addr).await {
            let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await;
            held.push(s);
        }
    }
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), daemon.get("/healthz"))
        .await
        .expect("healthz answers under the flood");
    assert_eq!((status, body.as_str()), (200, "ok"));
    let service = daemon.json("/api/services/openai-api").await;
    assert_ne!(
        service["state"], "outage",
        "the flood is no provider outage"
    );
    drop(held);
    daemon.stop().await;
}

// === Alerts ===

/// The events a webhook receiver got, in order.
fn hook_events(hook: &aiwatch_testkit::FakeServer) -> Vec<Value> {
    hook.requests()
        .iter()
        .filter_map(|r| serde_json::from_slice(&r.body).ok())
        .collect()
}

fn event_names(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["event"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn wait_for_hook(
    hook: &aiwatch_testkit::FakeServer,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let events = hook_events(hook);
        if done(&events) {
            return events;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; received {:?}",
            event_names(&events)
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A healthy OpenAI world, a webhook receiver answering 204, and a daemon alerting it, once
/// the API is operational.
struct AlertWorld {
    world: World,
    hook: aiwatch_testkit::FakeServer,
    daemon: Daemon,
    _dir: tempfile::TempDir,
}

async fn alert_world(settle: &str) -> AlertWorld {
    let world = World::openai().await;
    let hook = world.receiver("hooks.example.test").await;
    hook.route("POST", "/hook", aiwatch_testkit::Reply::empty(204));
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with_alerts(
        &world,
        &["openai-api"],
        &dir.path().join("alerts.db"),
        &webhook_alert(&hook, settle),
    )
    .await;
    daemon
        .wait_for("/api/services/openai-api", "operational", |s| {
            api_state(s) == "operational"
        })
        .await;
    AlertWorld {
        world,
        hook,
        daemon,
        _dir: dir,
    }
}

fn webhook_alert(hook: &aiwatch_testkit::FakeServer, settle: &str) -> String {
    format!(
        "[[alert]]\nname = \"ops\"\nkind = \"webhook\"\nurl = \"{}/hook\"\nsettle = \"{settle}\"\n",
        hook.url("hooks.example.test")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_told_once_with_its_cause_and_link_then_its_validated_recovery_once() {
    let AlertWorld {
        world,
        hook,
        daemon,
        _dir,
    } = alert_world("0s").await;
    let path = "/api/services/openai-api";
    api(&world).route("GET", "/v1/models", canned::openai_503_overloaded());
    let events = wait_for_hook(&hook, "opened", |e| !e.is_empty()).await;
    let opened = &events[0];
    assert_eq!(opened["event"], "opened");
    assert_eq!(opened["service"], "openai-api");
    assert_eq!(opened["cause"], "provider_overloaded");
    assert_eq!(
        opened["dashboard_url"],
        "http://aiwatch.test/services/openai-api"
    );
    assert!(opened["incident_id"]
        .as_str()
        .unwrap()
        .starts_with("inc-openai-api-api"));
    assert!(!opened["advice"].as_array().unwrap().is_empty());
    // What the alert says is what the API says.
    let service = daemon.json(path).await;
    assert_eq!(service["cause"], opened["cause"]);

    api(&world).route("GET", "/v1/models", canned::openai_models());
    let events = wait_for_hook(&hook, "recovered", |e| {
        event_names(e).contains(&"recovered".to_owned())
    })
    .await;
    assert_eq!(event_names(&events), ["opened", "recovered"]);
    assert_eq!(events[1]["incident_id"], opened["incident_id"]);
    let alerts = daemon
        .wait_for("/api/v1/alerts", "two sent deliveries", |a| {
            a["counts"]["sent"] == 2
        })
        .await;
    assert_eq!(alerts["channels"][0]["kind"], "webhook");
    assert_eq!(alerts["deliveries"][0]["event"], "recovered");
    assert_eq!(alerts["counts"]["pending"], 0);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_provider_is_one_alert_not_ten() {
    let AlertWorld {
        world,
        hook,
        daemon,
        _dir,
    } = alert_world("1m").await;
    // Down, up, down, up… for a while.
    for _ in 0..6 {
        api(&world).route("GET", "/v1/models", canned::openai_503_overloaded());
        tokio::time::sleep(INTERVAL * 4).await;
        api(&world).route("GET", "/v1/models", canned::openai_models());
        tokio::time::sleep(INTERVAL * 6).await;
    }
    wait_for_hook(&hook, "the first alert", |e| !e.is_empty()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events = hook_events(&hook);
    assert_eq!(
        event_names(&events),
        ["opened"],
        "one alert for the whole flapping"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitor_whose_dns_fails_sends_one_monitor_trouble_alert_and_none_for_the_provider() {
    let AlertWorld {
        world,
        hook,
        daemon,
        _dir,
    } = alert_world("0s").await;
    // The monitor's resolver fails for the provider and for its own control host.
    for host in ["api.openai.test", aiwatch_testkit::world::CONTROL_HOST] {
        world.dns.set(host, DnsAnswer::ServFail);
    }
    let events = wait_for_hook(&hook, "monitor_trouble", |e| !e.is_empty()).await;
    assert_eq!(events[0]["event"], "monitor_trouble");
    assert_eq!(events[0]["scope"], "local");
    assert!(events[0]["service"].is_null());
    tokio::time::sleep(INTERVAL * 10).await;
    assert_eq!(
        event_names(&hook_events(&hook)),
        ["monitor_trouble"],
        "no provider is blamed for the monitor's own trouble"
    );
    for host in ["api.openai.test", aiwatch_testkit::world::CONTROL_HOST] {
        world.dns.set(
            host,
            DnsAnswer::Addresses(vec!["127.0.0.1".parse().unwrap()]),
        );
    }
    daemon
        .wait_for("/api/services/openai-api", "operational again", |s| {
            api_state(s) == "operational"
        })
        .await;
    let events = wait_for_hook(&hook, "the monitor's recovery", |e| e.len() >= 2).await;
    assert_eq!(event_names(&events), ["monitor_trouble", "recovered"]);
    daemon.stop().await;
}

// === Public chatter ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_about_trouble_in_a_public_feed_are_saved_and_shown() {
    let world = World::openai().await;
    let feed = world.receiver("forum.example.test").await;
    let now = chrono::Utc::now().to_rfc3339();
    feed.route(
        "GET",
        "/latest.atom",
        aiwatch_testkit::Reply::text(
            200,
            "application/atom+xml",
            format!(
                r#"<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>forum</title><id>urn:forum</id><updated>{now}</updated>
  <entry><id>urn:post:1</id><title>OpenAI API down? Getting 503 everywhere</title>
    <link href="https://forum.example.test/t/1"/><updated>{now}</updated>
    <content type="html">Is it just me or is it not working since 10 minutes?</content></entry>
  <entry><id>urn:post:2</id><title>How do I download my OpenAI invoices?</title>
    <link href="https://forum.example.test/t/2"/><updated>{now}</updated>
    <content type="html">Looking for the billing page.</content></entry>
  <entry><id>urn:post:3</id><title>Anthropic is down</title>
    <link href="https://forum.example.test/t/3"/><updated>{now}</updated>
    <content type="html">not our service</content></entry>
</feed>"#
            ),
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with_alerts(
        &world,
        &["openai-api"],
        &dir.path().join("feeds.db"),
        &format!(
            "[[feed]]\nurl = \"{}/latest.atom\"\nservices = [\"openai-api\"]\n",
            feed.url("forum.example.test")
        ),
    )
    .await;
    let reports = daemon
        .wait_for(
            "/api/v1/services/openai-api/reports",
            "the matched post",
            |r| r["posts"].as_array().is_some_and(|p| !p.is_empty()),
        )
        .await;
    let posts = reports["posts"].as_array().unwrap();
    assert_eq!(
        posts.len(),
        1,
        "only the post about trouble with this service: {posts:?}"
    );
    assert_eq!(posts[0]["title"], "OpenAI API down? Getting 503 everywhere");
    assert_eq!(posts[0]["url"], "https://forum.example.test/t/1");
    let page = daemon.get("/services/openai-api").await;
    assert!(
        page.1.contains("What people are saying"),
        "the page links it"
    );
    assert!(page.1.contains("https://forum.example.test/t/1"));
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_keys_usage_spike_reaches_a_usage_spike_alert_once_while_it_lasts() {
    let world = World::openai().await;
    let hook = world.receiver("hooks.example.test").await;
    hook.route("POST", "/hook", aiwatch_testkit::Reply::empty(204));
    let dir = tempfile::tempdir().unwrap();
    // What the gateway's ledger says while key-2 spikes (its side is tested in
    // aiwatch-gateway's usage.rs); `serve` hands the ledger's `alert_spikes` to the alerts.
    let since = chrono::Utc::now();
    let spiking = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let source: aiwatch_server::alerting::UsageSource = {
        let spiking = spiking.clone();
        Arc::new(move || {
            if !spiking.load(std::sync::atomic::Ordering::SeqCst) {
                return Vec::new();
            }
            vec![aiwatch_core::alert_rules::UsageSpike {
                label: "key-2".into(),
                since,
                summary: "gateway key key-2 used 15000 tokens this minute, 30.0× its normal of 500"
                    .into(),
            }]
        })
    };
    let alerts = format!("{}events = [\"usage_spike\"]\n", webhook_alert(&hook, "0s"));
    let daemon = Daemon::start_with_usage(
        &world,
        &["openai-api"],
        &dir.path().join("usage.db"),
        &alerts,
        Some(source),
    )
    .await;
    let events = wait_for_hook(&hook, "the usage spike", |e| !e.is_empty()).await;
    assert_eq!(events[0]["event"], "usage_spike", "{:?}", events[0]);
    assert!(
        events[0].to_string().contains("key-2"),
        "the alert names the key's label: {}",
        events[0]
    );
    // Several evaluations later, still one alert for the one spike.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(event_names(&hook_events(&hook)), ["usage_spike"]);
    spiking.store(false, std::sync::atomic::Ordering::SeqCst);
    daemon.stop().await;
}
