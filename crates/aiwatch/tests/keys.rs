//! Keys go only where they belong: a config found in the working directory cannot move a
//! built-in key to another host, a key never crosses the internet in clear text, and a run that
//! sends a built-in key elsewhere says so.

use aiwatch_testkit::{canned, World};

mod common;

use common::{aiwatch, in_world};

async fn openai_world() -> World {
    let mut world = World::start().await;
    let api = world.api("openai-api", "api.openai.test", "/v1").await;
    api.route("GET", "/v1/models", canned::openai_models());
    world
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_working_directory_config_cannot_move_a_built_in_key() {
    let world = openai_world().await;
    world.write_config(); // ./aiwatch.toml in the folder the command runs in
    let output = aiwatch()
        .current_dir(world.dir())
        .args(["check", "openai-api", "--dns-server"])
        .arg(world.dns.addr().to_string())
        .arg("--ca-file")
        .arg(world.public_ca_path())
        .env("OPENAI_API_KEY", "sk-never-leaves-home")
        .output()
        .unwrap();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(78), "{err}");
    for named in [
        "aiwatch.toml",
        "openai-api",
        "OPENAI_API_KEY",
        "api.openai.test",
        "--config",
    ] {
        assert!(err.contains(named), "names {named}: {err}");
    }
    assert!(
        world.service("openai-api").server.requests().is_empty(),
        "nothing was sent to the host the file names"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_given_with_config_may_move_it_and_the_run_says_so_once() {
    let world = openai_world().await;
    let output = in_world(&world, "check")
        .arg("openai-api")
        .env("OPENAI_API_KEY", "sk-test")
        .output()
        .unwrap();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{err}");
    let note =
        "note: service `openai-api` sends OPENAI_API_KEY to api.openai.test, not to api.openai.com";
    assert_eq!(err.matches(note).count(), 1, "{err}");
    assert!(!err.contains("sk-test"));
}

#[test]
fn a_key_over_plain_http_across_the_internet_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("plain.toml");
    std::fs::write(
        &config,
        "[[service]]\nname = \"team-llm\"\napi_base = \"http://llm.example.com/v1\"\napi_key_env = \"TEAM_LLM_KEY\"\n",
    )
    .unwrap();
    let output = aiwatch()
        .arg("--config")
        .arg(&config)
        .args(["check", "team-llm"])
        .env("TEAM_LLM_KEY", "sk-team")
        .output()
        .unwrap();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(78), "{err}");
    assert!(
        err.contains(":3:") && err.contains("api_base"),
        "names line and field: {err}"
    );
    assert!(err.contains("plain HTTP"), "{err}");
}

/// A team key in no known format: only knowing the value can remove it.
const TEAM_KEY: &str = "team0key0value0A1B2C3D4";

#[tokio::test(flavor = "multi_thread")]
async fn a_key_echoed_by_the_provider_never_reaches_check_output() {
    let world = openai_world().await;
    world
        .service("openai-api")
        .server
        .route("GET", "/v1/models", canned::echo_key_error(401));
    for json in [false, true] {
        let mut cmd = in_world(&world, "check");
        cmd.arg("openai-api").env("OPENAI_API_KEY", TEAM_KEY);
        if json {
            cmd.arg("--json");
        }
        let output = cmd.output().unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            stderr(&output)
        );
        assert!(!all.contains(TEAM_KEY), "json={json}: {all}");
        assert!(
            all.contains("auth_invalid") || all.contains("rejected"),
            "{all}"
        );
    }
    let seen = world.service("openai-api").server.requests();
    assert!(
        seen.iter()
            .any(|r| r.header("authorization") == Some(&format!("Bearer {TEAM_KEY}"))),
        "the key did go to its own provider"
    );
}
