//! `aiwatch init`: a starter config from what this machine has — never a key's value, never
//! over an existing file without `--force`, and always one `config check` accepts.

mod common;

use aiwatch_testkit::{FakeServer, Reply};
use serde_json::json;

const KEY: &str = "sk-init-test-secret-value-0123456789";

fn init(home: &std::path::Path, ollama: &str, args: &[&str]) -> std::process::Output {
    common::aiwatch()
        .arg("init")
        .args(args)
        .env("XDG_CONFIG_HOME", home)
        .env("OPENAI_API_KEY", KEY)
        .env("OLLAMA_HOST", ollama)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_writes_what_it_finds_and_never_a_key_or_over_a_file() {
    let ollama = FakeServer::start(None).await;
    ollama.route(
        "GET",
        "/api/tags",
        Reply::json(
            200,
            json!({"models": [{"name": "llama3.2:1b", "size": 1300000000u64}]}),
        ),
    );
    let host = ollama.addr().to_string();
    let home = tempfile::tempdir().unwrap();
    let first = tokio::task::block_in_place(|| init(home.path(), &host, &[]));
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let path = home.path().join("aiwatch/aiwatch.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("openai-api"), "{text}");
    assert!(!text.contains(KEY), "a key's value is never written");
    assert!(
        text.contains("[gateway]") && text.contains("[[route]]"),
        "{text}"
    );
    let route = text.lines().find(|l| l.starts_with("upstreams")).unwrap();
    assert!(
        route.contains("\"openai-api:") && route.trim_end().contains("\"ollama:llama3.2:1b\"]"),
        "the local model comes last: {route}"
    );
    assert!(
        text.contains(&format!("api_base = \"http://{host}\"")),
        "{text}"
    );
    // It loads as a config.
    let check = common::aiwatch()
        .args(["config", "check"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    // A second run leaves the file alone; --print shows it; --force replaces it.
    std::fs::write(&path, "# mine\n").unwrap();
    let again = tokio::task::block_in_place(|| init(home.path(), &host, &[]));
    assert_eq!(again.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "# mine\n");
    let printed = tokio::task::block_in_place(|| init(home.path(), &host, &["--print"]));
    assert!(String::from_utf8_lossy(&printed.stdout).contains("[[route]]"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "# mine\n");
    let forced = tokio::task::block_in_place(|| init(home.path(), &host, &["--force"]));
    assert_eq!(forced.status.code(), Some(0));
    assert!(std::fs::read_to_string(&path)
        .unwrap()
        .contains("[[route]]"));
}
