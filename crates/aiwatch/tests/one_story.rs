//! One story across every surface: the real `aiwatch serve` process and the real
//! `aiwatch check --json` process, pointed at the same loopback world, must tell the same status,
//! scope and cause for each class of cause — the monitor's own network, the account, the
//! provider, the official page alone, slowness, answers cut off, a local runtime that is not
//! running — on the JSON API, the Statuspage-compatible view, the service page, the badge and the
//! metrics.

use std::time::Duration;

use aiwatch_core::Status;
use aiwatch_server::dashboard::present::state_word;
use aiwatch_testkit::{canned, summary_with_incident, DnsAnswer, World};
use serde_json::Value;

mod common;

use common::{in_world, Serve};

const KEY: &str = "sk-one-story-key";

/// `aiwatch check NAME --json` (with `--deep` when asked) against the same world.
fn check_json(world: &World, name: &str, deep: bool) -> Value {
    let mut cmd = in_world(world, "check");
    cmd.args([name, "--json"]).env("OPENAI_API_KEY", KEY);
    if deep {
        cmd.arg("--deep");
    }
    let output = cmd.output().expect("check runs");
    let json: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "check --json is not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    json[0].clone()
}

/// The story both tell: status, scope and cause.
fn story(v: &Value, status: &str) -> (String, String, String) {
    let word = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
    (word(status), word("scope"), word("cause"))
}

/// Every surface tells the same story about `name`, and that story's status is `want`.
async fn assert_one_story(serve: &Serve, world: &World, name: &str, want: Status, deep: bool) {
    let verdict = check_json(world, name, deep);
    let told = story(&verdict, "status");
    assert_eq!(told.0, want.as_str(), "check --json: {verdict:#}");
    // The daemon gets there over its first checks (and, for an incident, a run of them).
    let path = format!("/api/services/{name}");
    let service = serve
        .wait_for(&path, &format!("check's story {told:?}"), |s| {
            story(s, "state") == told
        })
        .await;

    let components = serve.json("/api/v2/components.json").await;
    let listed = components["components"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["id"] == name).cloned());
    match want.statuspage_component() {
        Some(word) => assert_eq!(
            listed.as_ref().map(|c| c["status"].clone()),
            Some(Value::from(word)),
            "Statuspage view of {name}: {components:#}"
        ),
        None => assert!(listed.is_none(), "{name} never measured: {components:#}"),
    }
    let summary = serve.json("/api/v2/summary.json").await;
    if want != Status::Operational {
        assert_ne!(
            summary["status"]["description"], "All Systems Operational",
            "{summary:#}"
        );
    }

    let word = state_word(want);
    let (_, page) = serve.get(&format!("/services/{name}")).await;
    let heading = page
        .split_once("<h1>")
        .and_then(|(_, rest)| rest.split_once("</h1>"))
        .map(|(h, _)| h.to_owned())
        .unwrap_or_default();
    assert!(
        heading.contains(word),
        "the service page says {word}: {heading}"
    );

    let title = service["title"].as_str().unwrap_or_default();
    let (_, badge) = serve.get(&format!("/badge/{name}.svg")).await;
    let label = format!("aria-label=\"{title}: {}\"", word.to_lowercase());
    assert!(badge.contains(&label), "badge {label}: {badge}");

    let (_, metrics) = serve.get("/metrics").await;
    let gauge = format!(
        "aiwatch_service_status{{service=\"{name}\",status=\"{}\"}} 1",
        want.as_str()
    );
    assert!(metrics.contains(&gauge), "{gauge} in /metrics");
}

fn api(world: &World) -> &aiwatch_testkit::FakeServer {
    &world.service("openai-api").server
}

/// A few more checks than it takes to open an incident.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1200)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_story_when_the_monitor_cannot_resolve_the_provider() {
    let world = World::openai().await;
    world.dns.set("api.openai.test", DnsAnswer::NxDomain);
    let serve = Serve::start(&world, KEY, "openai-api").await;
    // The page (another host) is green and readable: the provider's word stands, the monitor's
    // own DNS trouble is said as such and opens nothing.
    assert_one_story(&serve, &world, "openai-api", Status::Operational, false).await;
    settle().await;
    let service = serve.json("/api/services/openai-api").await;
    assert_eq!(service["scope"], "local", "{service:#}");
    assert_eq!(service["cause"], "dns_failure");
    assert_eq!(service["notice"]["kind"]["kind"], "monitor_cannot_see");
    assert_eq!(service["open_incidents"], 0, "no provider incident");
    let (_, metrics) = serve.get("/metrics").await;
    assert!(metrics.contains("aiwatch_monitor_blind{service=\"openai-api\"} 1"));
    let (_, overview) = serve.get("/").await;
    assert!(!overview.contains("has trouble"), "not counted as trouble");
    assert!(
        overview.contains("Monitor health"),
        "a monitor notice instead"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_story_when_the_key_is_rejected() {
    let world = World::openai().await;
    api(&world).route("GET", "/v1/models", canned::openai_401());
    let serve = Serve::start(&world, KEY, "openai-api").await;
    assert_one_story(&serve, &world, "openai-api", Status::Operational, false).await;
    settle().await;
    let service = serve.json("/api/services/openai-api").await;
    assert_eq!(service["scope"], "account", "{service:#}");
    assert_eq!(service["cause"], "auth_invalid");
    assert_eq!(
        service["open_incidents"], 0,
        "an account problem is no incident"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_story_when_the_provider_fails() {
    let world = World::openai().await;
    api(&world).route("GET", "/v1/models", canned::openai_503_overloaded());
    let serve = Serve::start(&world, KEY, "openai-api").await;
    // Every request fails: an outage for the user, whatever the status code.
    serve
        .wait_for("/api/services/openai-api", "an incident", |s| {
            s["open_incidents"] == 1
        })
        .await;
    assert_one_story(&serve, &world, "openai-api", Status::Outage, false).await;
    let service = serve.json("/api/services/openai-api").await;
    assert_eq!(service["scope"], "global", "{service:#}");
    // The store lags the engine by a write batch.
    let uptime = serve
        .wait_for("/api/services/openai-api/uptime", "stored checks", |u| {
            u["24h"]["up_ratio"].is_f64()
        })
        .await;
    assert!(
        uptime["24h"]["up_ratio"].as_f64().is_some_and(|r| r < 1.0),
        "failed checks never read 100 %: {uptime:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_story_when_only_the_provider_reports_an_outage() {
    let world = World::openai().await;
    world.status_pages[0].1.set_summary(&summary_with_incident(
        &[
            ("Chat Completions", "major_outage"),
            ("Responses", "operational"),
            ("Embeddings", "operational"),
        ],
        "Elevated error rates",
        "major",
    ));
    let serve = Serve::start(&world, KEY, "openai-api").await;
    serve
        .wait_for("/api/services/openai-api", "our probes pass", |s| {
            s["provenance"]["agreement"] == "official_only"
        })
        .await;
    assert_one_story(&serve, &world, "openai-api", Status::Outage, false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_story_when_the_provider_is_slow() {
    let mut world = World::openai().await;
    // Half the budget is slow for a one-shot check (`aiwatch-core/src/thresholds.rs`).
    world.set_timeout("1500ms");
    api(&world).route(
        "GET",
        "/v1/models",
        canned::openai_models().delay(Duration::from_millis(900)),
    );
    let serve = Serve::start(&world, KEY, "openai-api").await;
    assert_one_story(&serve, &world, "openai-api", Status::Degraded, false).await;
    let service = serve.json("/api/services/openai-api").await;
    assert_eq!(service["cause"], "slow_responses", "{service:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_story_when_answers_are_cut_off() {
    let world = World::openai().await;
    api(&world).route("POST", "/v1/chat/completions", canned::openai_stream(false));
    let serve = Serve::start(&world, KEY, "openai-api").await;
    assert_one_story(&serve, &world, "openai-api", Status::Degraded, true).await;
    let service = serve.json("/api/services/openai-api").await;
    assert_eq!(service["cause"], "truncated_responses", "{service:#}");
    assert_eq!(service["open_incidents"], 1, "{service:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_story_when_a_local_runtime_is_not_running() {
    let mut world = World::start().await;
    world.local("ollama", "").await;
    world.services[0].url = format!("http://127.0.0.1:{}", aiwatch_testkit::closed_port().port());
    let serve = Serve::start(&world, KEY, "ollama").await;
    assert_one_story(&serve, &world, "ollama", Status::NotRunning, false).await;
    settle().await;
    let service = serve.json("/api/services/ollama").await;
    assert_eq!(service["open_incidents"], 0, "not running is no outage");
    let summary = serve.json("/api/v2/summary.json").await;
    assert_ne!(summary["status"]["description"], "All Systems Operational");
}
