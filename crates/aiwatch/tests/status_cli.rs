//! `aiwatch status` through the real binary against loopback status pages: the report, the
//! `--json` schema and the exit codes (0 operational, 1 degraded, 2 outage, 4 unreadable,
//! 64 unknown service).

use aiwatch_testkit::{summary_operational, summary_with_incident, Reply, World};
use assert_cmd::Command;
use serde_json::{json, Value};

const CLAUDE_API: &str = "Claude API (api.anthropic.com)";

mod common;

use common::in_world;

/// `aiwatch status` pointed at the world, with a short budget.
fn status_in(world: &World) -> Command {
    let mut cmd = in_world(world, "status");
    cmd.arg("--timeout").arg("3s");
    cmd
}

/// claude and anthropic-api, both read from one Statuspage at status.claude.test.
async fn anthropic_world(summary: &[u8]) -> World {
    let mut world = World::start().await;
    world.web("claude", "claude.test").await;
    world
        .api("anthropic-api", "api.anthropic.test", "/v1")
        .await;
    world.status_page("claude", "status.claude.test").await;
    let page = world
        .status_page("anthropic-api", "status.claude.test")
        .await;
    page.set_summary(summary);
    world
}

fn degraded_claude_app() -> Vec<u8> {
    summary_with_incident(
        &[
            ("claude.ai", "degraded_performance"),
            (CLAUDE_API, "operational"),
            ("Claude Code", "operational"),
        ],
        "Elevated errors on claude.ai",
        "minor",
    )
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn json_of(output: &std::process::Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            text(&output.stdout),
            text(&output.stderr)
        )
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn degraded_page_shows_the_incident_and_keeps_the_api_apart() {
    let world = anthropic_world(&degraded_claude_app()).await;
    let output = status_in(&world)
        .args(["claude", "anthropic-api"])
        .output()
        .unwrap();
    let out = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{out}\n{}",
        text(&output.stderr)
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("! claude") && lines[0].ends_with("degraded · 1 active incident"),
        "{out}"
    );
    assert!(
        out.contains("overall: \"Partially Degraded Service\" (indicator minor)"),
        "{out}"
    );
    assert!(
        out.contains("component    claude.ai: degraded_performance"),
        "{out}"
    );
    assert!(
        out.contains(
            "incident     Elevated errors on claude.ai [minor impact · investigating] opened 2026-01-15 09:42 UTC ("
        ),
        "{out}"
    );
    assert!(out.contains(" ago)"), "{out}");
    assert!(out.contains("affects claude.ai"), "{out}");
    assert!(
        out.contains("latest: investigating 2026-01-15 09:42 UTC (")
            && out.contains("We are currently investigating this issue."),
        "{out}"
    );
    assert!(out.contains("https://stspg.io/"), "{out}");
    // The API's own component is fine and the incident is not tied to it.
    let api = lines
        .iter()
        .find(|l| l.contains("anthropic-api"))
        .expect("an anthropic-api line");
    assert!(
        api.starts_with("✓ anthropic-api") && api.contains("operational"),
        "{out}"
    );
    assert_eq!(
        out.matches("Elevated errors on claude.ai").count(),
        1,
        "{out}"
    );
    // One page, read once for both services.
    assert_eq!(world.status_pages[0].1.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn json_output_follows_the_documented_schema() {
    let world = anthropic_world(&degraded_claude_app()).await;
    let output = status_in(&world)
        .args(["claude", "anthropic-api", "--json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let json = json_of(&output);
    let reports = json.as_array().expect("an array, one object per service");
    assert_eq!(reports.len(), 2);
    for r in reports {
        let mut keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "checked_at",
                "components",
                "error",
                "incidents",
                "maintenances",
                "page",
                "service",
                "state",
                "status_page",
                "title"
            ]
        );
        assert!(r["checked_at"].is_string());
        assert!(r["error"].is_null());
        assert_eq!(r["status_page"]["format"], "statuspage");
        assert!(r["status_page"]["url"]
            .as_str()
            .unwrap()
            .starts_with("https://status.claude.test:"));
        assert_eq!(r["page"]["indicator"], "minor");
        assert_eq!(r["page"]["description"], "Partially Degraded Service");
        assert_eq!(r["page"]["name"], "Fake Status");
        assert_eq!(r["page"]["updated_at"], "2026-01-15T10:00:00Z");
    }
    let claude = &reports[0];
    assert_eq!(claude["service"], "claude");
    assert_eq!(claude["title"], "Claude");
    assert_eq!(claude["state"], "degraded");
    let component = &claude["components"][0];
    assert_eq!(component["name"], "claude.ai");
    assert_eq!(component["status"], "degraded_performance");
    assert!(component["id"].is_string() && component["group"].is_null());
    assert_eq!(claude["components"].as_array().unwrap().len(), 1);
    let incident = &claude["incidents"][0];
    assert_eq!(incident["title"], "Elevated errors on claude.ai");
    assert_eq!(incident["impact"], "minor");
    assert_eq!(incident["status"], "investigating");
    assert_eq!(incident["created_at"], "2026-01-15T09:42:17.123Z");
    assert!(incident["age_seconds"].as_i64().unwrap() > 0);
    assert_eq!(incident["components"], json!(["claude.ai"]));
    assert!(incident["url"]
        .as_str()
        .unwrap()
        .starts_with("https://stspg.io/"));
    assert_eq!(
        incident["latest_update"]["body"],
        "We are currently investigating this issue."
    );
    assert_eq!(incident["latest_update"]["status"], "investigating");
    assert_eq!(incident["latest_update"]["at"], "2026-01-15T09:42:17.123Z");
    assert!(incident["latest_update"]["age_seconds"].is_i64());
    assert_eq!(claude["maintenances"], json!([]));

    let api = &reports[1];
    assert_eq!(api["service"], "anthropic-api");
    assert_eq!(api["state"], "operational");
    assert_eq!(api["incidents"], json!([]));
    assert_eq!(api["components"][0]["name"], CLAUDE_API);
}

#[tokio::test(flavor = "multi_thread")]
async fn in_progress_maintenance_shows_its_window_and_exits_one() {
    let mut summary: Value =
        serde_json::from_slice(&summary_operational(&["claude.ai", CLAUDE_API])).unwrap();
    summary["components"][1]["status"] = json!("under_maintenance");
    summary["status"] =
        json!({"indicator": "maintenance", "description": "Service Under Maintenance"});
    let api_id = summary["components"][1]["id"].clone();
    summary["scheduled_maintenances"] = json!([{
        "id": "mnt1", "name": "Database upgrade", "status": "in_progress", "impact": "maintenance",
        "created_at": "2026-01-14T08:00:00Z", "updated_at": "2026-01-15T10:00:00Z",
        "scheduled_for": "2026-01-15T10:00:00Z", "scheduled_until": "2099-01-15T12:00:00Z",
        "shortlink": "https://stspg.io/mnt1",
        "components": [{"id": api_id, "name": CLAUDE_API}],
        "incident_updates": [{"id": "u1", "status": "in_progress", "body": "Maintenance is under way.",
            "created_at": "2026-01-15T10:00:00Z", "display_at": "2026-01-15T10:00:00Z"}]
    }]);
    let world = anthropic_world(&serde_json::to_vec(&summary).unwrap()).await;

    let output = status_in(&world)
        .args(["anthropic-api", "claude"])
        .output()
        .unwrap();
    let out = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{out}{}",
        text(&output.stderr)
    );
    assert!(
        out.starts_with("! anthropic-api  maintenance · maintenance in progress\n"),
        "{out}"
    );
    assert!(
        out.contains(
            "maintenance  in progress: Database upgrade · 2026-01-15 10:00 UTC → 2099-01-15 12:00 UTC (ends in "
        ),
        "{out}"
    );
    assert!(out.contains("✓ claude"), "{out}");

    let output = status_in(&world)
        .args(["anthropic-api", "--json"])
        .output()
        .unwrap();
    let maintenance = &json_of(&output)[0]["maintenances"][0];
    assert_eq!(maintenance["title"], "Database upgrade");
    assert_eq!(maintenance["status"], "in_progress");
    assert_eq!(maintenance["in_progress"], true);
    assert_eq!(maintenance["scheduled_until"], "2099-01-15T12:00:00Z");
    assert_eq!(maintenance["components"], json!([CLAUDE_API]));
}

#[tokio::test(flavor = "multi_thread")]
async fn outage_exits_two() {
    let world = anthropic_world(&summary_with_incident(
        &[("claude.ai", "major_outage"), (CLAUDE_API, "operational")],
        "claude.ai is down",
        "critical",
    ))
    .await;
    let output = status_in(&world).args(["claude"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stdout));
    assert!(text(&output.stdout).starts_with("✗ claude  outage"));
}

#[tokio::test(flavor = "multi_thread")]
async fn unreadable_page_is_unavailable_never_green_and_exits_four() {
    let world = anthropic_world(&summary_operational(&["claude.ai", CLAUDE_API])).await;
    let page = &world.status_pages[0].1;
    page.fail_with(Reply::text(
        503,
        "text/html",
        "<html><body>Service Unavailable</body></html>",
    ));
    let output = status_in(&world).args(["claude"]).output().unwrap();
    let out = text(&output.stdout);
    assert_eq!(output.status.code(), Some(4), "{out}");
    assert!(
        out.starts_with("? claude  official status unavailable: https://status.claude.test:")
            && out.contains("/api/v2/summary.json answered HTTP 503"),
        "{out}"
    );
    assert!(!out.contains("operational"), "{out}");

    // An HTML page served with 200 is no reading either.
    page.fail_with(Reply::text(
        200,
        "text/html",
        "<!DOCTYPE html><html><head><title>Just a moment...</title></head></html>",
    ));
    let output = status_in(&world)
        .args(["claude", "--json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(4));
    let report = &json_of(&output)[0];
    assert_eq!(report["state"], "unavailable");
    assert!(report["page"].is_null());
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("served an HTML page"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_service_exits_64_with_suggestions() {
    let world = anthropic_world(&summary_operational(&["claude.ai"])).await;
    let output = status_in(&world).args(["claud"]).output().unwrap();
    assert_eq!(output.status.code(), Some(64));
    let err = text(&output.stderr);
    assert!(err.contains("unknown service `claud`"), "{err}");
    assert!(err.contains("did you mean"), "{err}");
    assert!(err.contains("`claude`"), "{err}");
    assert!(
        world.status_pages[0].1.requests().is_empty(),
        "nothing is fetched"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn service_without_a_status_page_is_named_as_such() {
    let world = anthropic_world(&summary_operational(&["claude.ai"])).await;
    let output = status_in(&world)
        .args(["ollama", "claude", "--json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let json = json_of(&output);
    assert_eq!(json[0]["state"], "not_configured");
    assert!(json[0]["status_page"].is_null());
    assert_eq!(json[1]["state"], "operational");
}
