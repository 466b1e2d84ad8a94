//! What people report, through the binaries: `aiwatch report` from five people's machines
//! into a running `aiwatch serve` moves the service's one assessment (API, Statuspage view,
//! page) once the detector's minute is complete; one person repeating moves nothing.

mod common;

use std::time::Duration;

use aiwatch_testkit::World;
use common::Serve;
use serde_json::Value;

/// `aiwatch report` as someone whose data dir is `home` (their reporter token lives there).
fn report(serve: &Serve, home: &std::path::Path, symptom: &str) -> std::process::Output {
    common::aiwatch()
        .args(["report", "openai-api", "--symptom", symptom, "--server"])
        .arg(format!("http://{}", serve.addr))
        .env("XDG_DATA_HOME", home)
        .output()
        .expect("aiwatch report runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_from_several_people_make_a_running_server_say_users_report_problems() {
    let world = World::openai().await;
    // A small crowd is enough here: five reporters (against a usual of about none, five in
    // five minutes clears the normal sensitivity's p ≤ 1e-7), and no minimum duration.
    let crowd =
        "\n[crowd]\nmin_reports = 5\ncold_start_min_reporters = 5\nmin_duration_minutes = 0\n";
    let env = [("OPENAI_API_KEY", "sk-test-crowd-0123456789abcdef")];
    let serve = Serve::start_with(&world, "openai-api", crowd, &env).await;
    serve
        .wait_for("/api/services/openai-api", "operational", |s| {
            s["state"] == "operational"
        })
        .await;
    let homes: Vec<tempfile::TempDir> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();

    // One person reporting again and again counts once.
    let said: Vec<String> = (0..3)
        .map(|_| {
            let out =
                tokio::task::block_in_place(|| report(&serve, homes[0].path(), "cannot_load"));
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
        .collect();
    assert!(said[0].starts_with("Reported: openai-api"), "{said:?}");
    assert!(said[1].contains("already reported"), "{said:?}");

    // Four more people.
    for home in &homes[1..] {
        let out = tokio::task::block_in_place(|| report(&serve, home.path(), "cannot_load"));
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The detector counts whole minutes: wait for the next one to complete.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(150);
    let service = loop {
        let service: Value = serve.json("/api/services/openai-api").await;
        if service["cause"] == "crowd_reports" {
            break service;
        }
        if tokio::time::Instant::now() >= deadline {
            let reports = serve.json("/api/v1/services/openai-api/reports").await;
            panic!("the reports never moved the assessment: {service:#}\nreports: {reports:#}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(service["state"], "degraded");
    assert!(service["summary"]
        .as_str()
        .unwrap()
        .contains("users report problems"));
    let summary = serve.json("/api/v2/summary.json").await;
    assert!(
        summary.to_string().contains("degraded_performance"),
        "{summary}"
    );
    let (_, page) = serve.get("/services/openai-api").await;
    assert!(page.contains("users report problems"));
    let reports = serve.json("/api/v1/services/openai-api/reports").await;
    assert_eq!(
        reports["last_hour"]["total"], 5,
        "five people, one report each"
    );
}
