//! Alerts through the binary: `alert test`, `config check` of alert entries, and the outbox
//! surviving a kill -9 of `serve` between the event and its delivery.

mod common;

use std::time::Duration;

use aiwatch_testkit::{canned, FakeServer, Reply, World};
use common::Serve;
use serde_json::Value;

fn with_alert(world: &World, alert: &str) -> std::path::PathBuf {
    let path = world.dir().join("alerts.toml");
    std::fs::write(&path, format!("{}\n{alert}", world.config_toml())).unwrap();
    path
}

fn webhook(hook: &FakeServer, extra: &str) -> String {
    format!(
        "[[alert]]\nname = \"ops\"\nkind = \"webhook\"\nurl = \"{}/hook\"\n{extra}",
        hook.url("hooks.example.test")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_test_sends_a_sample_and_reports_the_receivers_answer() {
    let world = World::start().await;
    let hook = world.receiver("hooks.example.test").await;
    hook.route(
        "POST",
        "/hook",
        Reply::sequence(vec![
            Reply::empty(204),
            Reply::text(410, "text/plain", "hook deleted"),
        ]),
    );
    let config = with_alert(
        &world,
        &webhook(
            &hook,
            &format!(
                "secret_env = \"AIWATCH_TEST_HOOK_SECRET\"\nca_file = \"{}\"\n",
                world.public_ca_path().display()
            ),
        ),
    );
    let test = |name: &'static str| {
        let mut cmd = common::aiwatch();
        cmd.arg("--config")
            .arg(&config)
            .args(["alert", "test", name, "--dns-server"])
            .arg(world.dns.addr().to_string())
            .arg("--ca-file")
            .arg(world.public_ca_path())
            .env("AIWATCH_TEST_HOOK_SECRET", "shared secret");
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
    };
    let ok = test("ops").await.unwrap();
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(stdout.contains("accepted"), "{stdout}");
    let seen = &hook.requests()[0];
    let body: Value = serde_json::from_slice(&seen.body).unwrap();
    assert!(body["title"].as_str().unwrap().starts_with("[test]"));
    assert!(seen.header("x-aiwatch-signature").is_some());

    let refused = test("ops").await.unwrap();
    let stdout = String::from_utf8_lossy(&refused.stdout);
    assert_eq!(refused.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("refused") && stdout.contains("410"),
        "{stdout}"
    );

    let unknown = test("opz").await.unwrap();
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert_eq!(unknown.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("did you mean ops"), "{stderr}");
}

#[test]
fn config_check_names_an_alerts_missing_secret_variable() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("aiwatch.toml");
    std::fs::write(
        &config,
        "[[alert]]\nname = \"team\"\nkind = \"slack\"\nurl_env = \"AIWATCH_TEST_UNSET_SLACK_URL\"\n",
    )
    .unwrap();
    let out = common::aiwatch()
        .args(["config", "check"])
        .arg(&config)
        .env_remove("AIWATCH_TEST_UNSET_SLACK_URL")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("team") && stderr.contains("AIWATCH_TEST_UNSET_SLACK_URL"),
        "{stderr}"
    );
    assert!(
        stderr.contains("aiwatch.toml:4:"),
        "names the line: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_alert_survives_a_kill_9_of_serve_and_goes_out_once_after_the_restart() {
    let world = World::openai().await;
    let hook = world.receiver("hooks.example.test").await;
    hook.route("POST", "/hook", Reply::empty(503));
    let alert = format!(
        "\n{}",
        webhook(
            &hook,
            &format!(
                "settle = \"0s\"\nca_file = \"{}\"\n",
                world.public_ca_path().display()
            )
        )
    );
    let env = [("OPENAI_API_KEY", "sk-test-kill-nine-0123456789")];
    let serve = Serve::start_with(&world, "openai-api", &alert, &env).await;
    serve
        .wait_for("/api/services/openai-api", "operational", |s| {
            s["state"] == "operational"
        })
        .await;
    world
        .service("openai-api")
        .server
        .route("GET", "/v1/models", canned::openai_503_overloaded());
    serve
        .wait_for(
            "/api/v1/alerts",
            "a pending delivery that failed once",
            |a| a["counts"]["pending"] == 1 && a["deliveries"][0]["attempts"].as_u64() >= Some(1),
        )
        .await;
    // SIGKILL: no shutdown, no flush.
    drop(serve);
    let failed_attempts = hook.requests().len();
    hook.route("POST", "/hook", Reply::empty(204));

    let serve = Serve::start_with(&world, "openai-api", &alert, &env).await;
    let alerts = serve
        .wait_for("/api/v1/alerts", "the delivery sent", |a| {
            a["counts"]["sent"] == 1
        })
        .await;
    assert_eq!(alerts["counts"]["pending"], 0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let seen = hook.requests();
    assert_eq!(
        seen.len(),
        failed_attempts + 1,
        "accepted once after the restart, not sent again"
    );
    let keys: Vec<&str> = seen
        .iter()
        .filter_map(|r| r.header("idempotency-key"))
        .collect();
    assert!(
        keys.iter().all(|k| *k == keys[0] && k.ends_with(":opened")),
        "{keys:?}"
    );
}
