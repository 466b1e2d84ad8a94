//! `serve` behind its token: the JSON API and the metrics need it, a public dashboard and the
//! Statuspage-compatible view do not, a private dashboard takes it as a Basic password, and a
//! missing or short token is a config error.

use aiwatch_testkit::{canned, World};
use base64::Engine as _;

mod common;

use common::{aiwatch, Serve};

const TOKEN: &str = "serve-token-0123456789abcdef";

async fn world() -> World {
    let mut world = World::start().await;
    let api = world.api("openai-api", "api.openai.test", "/v1").await;
    api.route("GET", "/v1/models", canned::openai_models());
    world
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_guards_the_api_and_metrics_and_a_public_dashboard_stays_readable() {
    let world = world().await;
    let serve = Serve::start_with(
        &world,
        "openai-api",
        "auth_token_env = \"AIWATCH_TEST_TOKEN\"\n",
        &[("AIWATCH_TEST_TOKEN", TOKEN), ("OPENAI_API_KEY", "sk-test")],
    )
    .await;
    let bearer = format!("Bearer {TOKEN}");
    for path in ["/api/services", "/api/services/openai-api", "/metrics"] {
        let (status, body) = serve.get(path).await;
        assert_eq!(status, 401, "{path} without the token: {body}");
        let (status, _) = serve
            .get_with(
                path,
                &[("Authorization", "Bearer not-the-token-not-the-token")],
            )
            .await;
        assert_eq!(status, 401, "{path} with a wrong token");
        let (status, body) = serve.get_with(path, &[("Authorization", &bearer)]).await;
        assert_eq!(status, 200, "{path} with the token: {body}");
    }
    for path in [
        "/",
        "/services/openai-api",
        "/api/v2/summary.json",
        "/healthz",
    ] {
        assert_eq!(serve.get(path).await.0, 200, "{path} is public");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_private_dashboard_asks_the_browser_for_the_token() {
    let world = world().await;
    let serve = Serve::start_with(
        &world,
        "openai-api",
        "auth_token_env = \"AIWATCH_TEST_TOKEN\"\npublic = false\n",
        &[("AIWATCH_TEST_TOKEN", TOKEN), ("OPENAI_API_KEY", "sk-test")],
    )
    .await;
    assert_eq!(serve.get("/").await.0, 401);
    assert_eq!(serve.get("/api/v2/summary.json").await.0, 401);
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("anyone:{TOKEN}"))
    );
    assert_eq!(
        serve.get_with("/", &[("Authorization", &basic)]).await.0,
        200
    );
}

#[test]
fn a_missing_or_short_token_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("t.toml");
    std::fs::write(
        &config,
        "[server]\nauth_token_env = \"AIWATCH_TEST_TOKEN\"\n",
    )
    .unwrap();
    for (value, says) in [(None, "not set"), (Some("short"), "at least 24")] {
        let mut cmd = aiwatch();
        cmd.arg("--config")
            .arg(&config)
            .args(["serve", "openai-api", "--listen", "127.0.0.1:0", "--db"])
            .arg(dir.path().join("t.db"));
        match value {
            Some(v) => cmd.env("AIWATCH_TEST_TOKEN", v),
            None => cmd.env_remove("AIWATCH_TEST_TOKEN"),
        };
        let output = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(78), "{err}");
        assert!(
            err.contains(says) && err.contains("AIWATCH_TEST_TOKEN"),
            "{err}"
        );
    }
}
