//! The CLI contract, driven through the real binary: exit codes, `--json` schema, usage and
//! config errors, against a loopback world.

use aiwatch_testkit::{canned, DnsAnswer, World};
use assert_cmd::Command;
use serde_json::Value;

mod common;

use common::{aiwatch, in_world};

/// `aiwatch check` pointed at the world.
fn check_in(world: &World) -> Command {
    in_world(world, "check")
}

async fn healthy_world() -> World {
    let mut world = World::start().await;
    let api = world.api("openai-api", "api.openai.test", "/v1").await;
    api.route("GET", "/v1/models", canned::openai_models());
    let web = world.web("chatgpt", "chatgpt.test").await;
    web.route("GET", "/", canned::web_home());
    world
}

fn json_of(output: &std::process::Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn healthy_services_exit_zero_with_the_documented_json_schema() {
    let world = healthy_world().await;
    let output = check_in(&world)
        .args(["openai-api", "chatgpt", "--json"])
        .env("OPENAI_API_KEY", "sk-test")
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json = json_of(&output);
    let verdicts = json.as_array().expect("an array, one object per service");
    assert_eq!(verdicts.len(), 2);
    for v in verdicts {
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        for key in [
            "service",
            "status",
            "scope",
            "cause",
            "summary",
            "evidence",
            "advice",
            "official",
            "checked_at",
        ] {
            assert!(keys.contains(&key), "missing `{key}` in {v}");
        }
        assert_eq!(v["status"], "operational");
        assert_eq!(v["scope"], "none");
        assert_eq!(v["cause"], "ok");
        for e in v["evidence"].as_array().unwrap() {
            assert!(e["layer"].is_string() && e["outcome"].is_string() && e["detail"].is_string());
            assert!(e["ms"].is_number() || e["ms"].is_null());
        }
        assert!(
            v["official"].is_null(),
            "no status page configured in this world"
        );
    }
    assert!(!String::from_utf8_lossy(&output.stdout).contains("sk-test"));
}

#[tokio::test(flavor = "multi_thread")]
async fn provider_outage_exits_two() {
    let world = healthy_world().await;
    world.service("openai-api").server.route(
        "GET",
        "/v1/models",
        canned::openai_error(502, "server_error", None, "Bad gateway"),
    );
    let output = check_in(&world)
        .args(["openai-api", "--json"])
        .env("OPENAI_API_KEY", "k")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(json_of(&output)[0]["cause"], "provider_error");
}

#[tokio::test(flavor = "multi_thread")]
async fn users_side_problem_exits_three() {
    let world = healthy_world().await;
    world.dns.set(
        "api.openai.test",
        DnsAnswer::Addresses(vec!["0.0.0.0".parse().unwrap()]),
    );
    let output = check_in(&world)
        .args(["openai-api", "--json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    let v = &json_of(&output)[0];
    assert_eq!(v["cause"], "dns_filtered");
    assert_eq!(v["scope"], "local");
}

#[tokio::test(flavor = "multi_thread")]
async fn account_problem_exits_three_and_is_no_outage() {
    let world = healthy_world().await;
    world
        .service("openai-api")
        .server
        .route("GET", "/v1/models", canned::openai_401());
    let output = check_in(&world)
        .args(["openai-api", "--json"])
        .env("OPENAI_API_KEY", "bad")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    let v = &json_of(&output)[0];
    assert_eq!(v["cause"], "auth_invalid");
    assert_ne!(v["status"], "outage");
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_service_exits_one() {
    let world = healthy_world().await;
    world.service("openai-api").server.route(
        "GET",
        "/v1/models",
        canned::openai_models().delay(std::time::Duration::from_millis(700)),
    );
    let output = check_in(&world)
        .args(["openai-api", "--json", "--timeout", "1s"])
        .env("OPENAI_API_KEY", "k")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(json_of(&output)[0]["cause"], "slow_responses");
}

#[tokio::test(flavor = "multi_thread")]
async fn human_report_has_a_verdict_line_evidence_and_advice() {
    let world = healthy_world().await;
    world.service("openai-api").server.route(
        "GET",
        "/v1/models",
        canned::openai_insufficient_quota(),
    );
    let output = check_in(&world)
        .args(["openai-api"])
        .env("OPENAI_API_KEY", "k")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let first = text.lines().next().unwrap();
    assert!(
        first.contains("openai-api") && first.contains("quota_exhausted"),
        "{text}"
    );
    assert!(
        text.contains("dns ") && text.contains("tls ") && text.contains(" ms"),
        "{text}"
    );
    assert!(text.contains("→ "), "advice is shown: {text}");
    assert!(!text.contains('\u{1b}'), "no colors when not on a terminal");
}

#[test]
fn unknown_service_is_a_usage_error_with_suggestions() {
    let output = aiwatch().args(["check", "chatgtp"]).output().unwrap();
    assert_eq!(output.status.code(), Some(64));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("unknown service `chatgtp`") && err.contains("chatgpt"),
        "{err}"
    );
}

#[test]
fn bad_flags_are_usage_errors() {
    let output = aiwatch()
        .args(["check", "--timeout", "5"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no unit"));
    let output = aiwatch().args(["check", "--bogus"]).output().unwrap();
    assert_eq!(output.status.code(), Some(64));
    let output = aiwatch()
        .args(["check", "--dns-server", "dns.google"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
}

#[test]
fn config_errors_name_file_line_and_field_and_exit_78() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aiwatch.toml");
    std::fs::write(&path, "[defaults]\ntimeout = \"5s\"\n\n[[service]]\nname = \"x\"\napi_base = \"https://x.test/v1\"\ninterval = \"10\"\n").unwrap();
    let output = aiwatch()
        .arg("config")
        .arg("check")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(78));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("aiwatch.toml:7:") && err.contains("service[1].interval"),
        "{err}"
    );
    let output = aiwatch()
        .arg("--config")
        .arg(&path)
        .arg("check")
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(78),
        "check refuses a bad config too"
    );
}

/// Writes `text` to `path` and runs `aiwatch config check` on it: its exit code and stderr.
fn config_check(path: &std::path::Path, text: &str) -> (Option<i32>, String) {
    std::fs::write(path, text).unwrap();
    let output = aiwatch()
        .args(["config", "check"])
        .arg(path)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn config_check_reports_every_error_in_the_file_with_its_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aiwatch.toml");
    let (code, err) = config_check(
        &path,
        "[defaults]\ntimeout = \"5\"\n\n[[service]]\nname = \"team\"\napi_base = \"https://t.test/v1\"\ninterval = \"often\"\n\n[gateway]\nramp = [50, 10]\n\n[[route]]\nmodel = \"smart\"\nupstreams = [\"team:m\", \"opneai-api:gpt-4o\"]\n\n[[alert]]\nname = \"ops\"\nkind = \"pagerduty\"\n",
    );
    assert_eq!(code, Some(78), "{err}");
    for (line, field) in [
        (2, "defaults.timeout"),
        (7, "service[1].interval"),
        (10, "gateway.ramp"),
        (14, "route[1].upstreams"),
        (18, "alert[1].kind"),
    ] {
        assert!(
            err.contains(&format!("aiwatch.toml:{line}:")) && err.contains(&format!("`{field}`")),
            "line {line} ({field}) missing:\n{err}"
        );
    }
    assert!(err.contains("5 errors"), "{err}");
    // In file order, one per line.
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("aiwatch.toml:"))
        .collect();
    assert!(
        lines[0].contains(":2:") && lines[4].contains(":18:"),
        "{err}"
    );

    // What `serve` refuses at start-up beyond the file's own rules is reported with the rest:
    // a route to a web page, and a CA file that is not there.
    let (code, err) = config_check(
        &path,
        "[[service]]\nname = \"team\"\napi_base = \"https://t.test/v1\"\nca_file = \"missing-ca.pem\"\n\n[[route]]\nmodel = \"smart\"\nupstreams = [\"chatgpt:gpt-4o\"]\n",
    );
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains("aiwatch.toml:4: service `team`: ca_file")
            && err.contains("aiwatch.toml:8: route `smart`: service `chatgpt` has no API"),
        "{err}"
    );
}

#[test]
fn a_refused_service_is_reported_once_not_again_as_unknown_by_the_routes_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aiwatch.toml");
    let (code, err) = config_check(
        &path,
        "[[service]]\nname = \"box\"\nkind = \"openai\"\napi_base = \"http://llm.example.com/v1\"\napi_key_env = \"BOX_KEY\"\n\n[[route]]\nmodel = \"m\"\nupstreams = [\"box:gpt-4o-mini\"]\n",
    );
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("service[1].api_base"), "{err}");
    assert!(!err.contains("unknown service"), "{err}");
    assert!(err.contains(": 1 error;"), "{err}");
}

#[test]
fn config_check_accepts_a_valid_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aiwatch.toml");
    std::fs::write(&path, "[[service]]\nname = \"team-llm\"\napi_base = \"https://llm.test/v1\"\napi_key_env = \"TEAM_KEY\"\n").unwrap();
    let output = aiwatch()
        .arg("config")
        .arg("check")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains("11 services"));
}

#[test]
fn config_check_validates_alerts_and_their_secret_variables() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aiwatch.toml");
    std::fs::write(
        &path,
        "[[alert]]\nname = \"ops\"\nkind = \"webhook\"\nurl = \"https://hooks.example.com/x\"\nsecret_env = \"CLI_TEST_HOOK_SECRET\"\n",
    )
    .unwrap();
    let check = |secret: Option<&str>| {
        let mut cmd = aiwatch();
        match secret {
            Some(s) => cmd.env("CLI_TEST_HOOK_SECRET", s),
            None => cmd.env_remove("CLI_TEST_HOOK_SECRET"),
        };
        cmd.arg("config").arg("check").arg(&path).output().unwrap()
    };
    let missing = check(None);
    let err = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(78), "{err}");
    assert!(
        err.contains("alert `ops`") && err.contains("CLI_TEST_HOOK_SECRET"),
        "{err}"
    );
    assert_eq!(check(Some("a-secret")).status.code(), Some(0));
    std::fs::write(&path, "[[alert]]\nname = \"ops\"\nkind = \"pagerduty\"\n").unwrap();
    let unknown = check(None);
    let err = String::from_utf8_lossy(&unknown.stderr);
    assert_eq!(unknown.status.code(), Some(78), "{err}");
    assert!(err.contains(":3:") && err.contains("kind"), "{err}");
}

#[test]
fn services_lists_builtins_and_configured_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aiwatch.toml");
    std::fs::write(
        &path,
        "[[service]]\nname = \"team-llm\"\napi_base = \"https://llm.test/v1\"\n",
    )
    .unwrap();
    let output = aiwatch()
        .arg("--config")
        .arg(&path)
        .args(["services", "--json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let json = json_of(&output);
    let names: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 11);
    assert!(names.contains(&"lmstudio") && names.contains(&"team-llm"));
    let text = aiwatch()
        .arg("--config")
        .arg(&path)
        .arg("services")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("[config]"));
}

#[test]
fn version_prints_and_exits_zero() {
    let output = aiwatch().arg("--version").output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("aiwatch "));
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_stops_cleanly_on_sigterm_and_keeps_what_it_stored() {
    let world = healthy_world().await;
    let config = world.write_config();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let db = world.dir().join("serve.db");
    let bin = assert_cmd::cargo::cargo_bin("aiwatch");
    let mut child = std::process::Command::new(bin)
        .arg("--config")
        .arg(&config)
        .args(["serve", "openai-api", "--listen"])
        .arg(addr.to_string())
        .arg("--db")
        .arg(&db)
        .arg("--dns-server")
        .arg(world.dns.addr().to_string())
        .arg("--ca-file")
        .arg(world.public_ca_path())
        .env_remove("HTTPS_PROXY")
        .env_remove("HTTP_PROXY")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ready = async {
        loop {
            if let Ok(mut s) = tokio::net::TcpStream::connect(addr).await {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .await
                    .unwrap();
                let mut out = String::new();
                let _ = s.read_to_string(&mut out).await;
                if out.starts_with("HTTP/1.1 200") {
                    break;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), ready)
        .await
        .expect("serve becomes ready");
    let status = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let exited = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exited.code(), Some(0), "SIGTERM is a clean stop");
    assert!(db.is_file(), "the database was created");
    let store = aiwatch_store::SqliteStore::open(&db).expect("the store reopens after the stop");
    assert_eq!(store.integrity_check().unwrap(), ["ok"], "and is intact");
}

#[test]
fn serve_refuses_a_damaged_database_with_exit_78_and_says_what_to_do() {
    use aiwatch_store::Store as _;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("damaged.db");
    {
        let store = aiwatch_store::SqliteStore::open(&db).unwrap();
        store.flush().unwrap();
    }
    // Keep SQLite's header, scribble over the schema page.
    let mut bytes = std::fs::read(&db).unwrap();
    let end = bytes.len().min(8192);
    for (i, b) in bytes[100..end].iter_mut().enumerate() {
        *b = (i * 31 % 251) as u8;
    }
    std::fs::write(&db, &bytes).unwrap();
    let _ = std::fs::remove_file(db.with_extension("db-wal"));
    let output = aiwatch()
        .args(["serve", "openai-api", "--listen", "127.0.0.1:0", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{err}");
    assert!(
        err.contains("damaged.db") && err.contains("backup"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn chatgpt_down_with_the_api_working_says_how_to_keep_working() {
    let world = healthy_world().await;
    world
        .service("chatgpt")
        .server
        .route("GET", "/", canned::cloudflare_origin_error(522));
    let output = check_in(&world)
        .args(["openai-api", "chatgpt"])
        .env("OPENAI_API_KEY", "sk-test-plan-b-0123456789")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("Keep working:"), "{stdout}");
    assert!(
        stdout.contains("the OpenAI API works with your key") && stdout.contains("aiwatch gateway"),
        "{stdout}"
    );
}

/// A fake `/proc` with this much available memory, and a `PATH` dir holding a fake
/// `nvidia-smi` that prints `gpu_line` (none when `None`).
fn fake_machine(root: &std::path::Path, mem_available_kib: u64, gpu_line: Option<&str>) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(root.join("proc")).unwrap();
    std::fs::create_dir_all(root.join("sys")).unwrap();
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::write(
        root.join("proc/meminfo"),
        format!("MemTotal: 67108864 kB\nMemAvailable: {mem_available_kib} kB\n"),
    )
    .unwrap();
    if let Some(line) = gpu_line {
        let smi = root.join("bin/nvidia-smi");
        std::fs::write(&smi, format!("#!/bin/sh\necho '{line}'\n")).unwrap();
        std::fs::set_permissions(&smi, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_cloud_api_down_names_the_local_models_their_size_and_whether_they_fit() {
    let mut world = World::start().await;
    let api = world.api("openai-api", "api.openai.test", "/v1").await;
    api.route(
        "GET",
        "/v1/models",
        canned::openai_error(500, "server_error", None, "The server had an error"),
    );
    let ollama = world.local("ollama", "").await;
    ollama.route("GET", "/", canned::ollama_root());
    ollama.route(
        "GET",
        "/api/tags",
        aiwatch_testkit::Reply::json(
            200,
            serde_json::json!({"models": [
                {"name": "llama3.2:latest", "size": 2_019_393_189_u64},
                {"name": "llama3.1:70b", "size": 42_520_413_916_u64},
            ]}),
        ),
    );
    let machine = tempfile::tempdir().unwrap();
    let run = |mem_kib: u64, gpu: Option<&str>| {
        let root = machine.path().join(format!("m{mem_kib}"));
        fake_machine(&root, mem_kib, gpu);
        let output = check_in(&world)
            .args(["openai-api", "ollama"])
            .env("OPENAI_API_KEY", "sk-test-plan-b-0123456789")
            .env("AIWATCH_PROC_DIR", root.join("proc"))
            .env("AIWATCH_SYS_DIR", root.join("sys"))
            .env("PATH", root.join("bin"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    };

    // 8 GiB free, no GPU: the small model runs on the CPU, the 70b one does not fit.
    let stdout = tokio::task::block_in_place(|| run(8 * 1024 * 1024, None));
    assert!(stdout.contains("Keep working:"), "{stdout}");
    assert!(
        stdout.contains("This machine: 8.0 GiB free memory; no GPU found."),
        "{stdout}"
    );
    assert!(
        stdout.contains("Ollama (local) runs here with 2 models (1 can run now)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("llama3.2:latest (1.9 GiB): fits in free memory"),
        "{stdout}"
    );
    assert!(
        stdout.contains("llama3.1:70b (39.6 GiB): does not fit in free memory or VRAM"),
        "{stdout}"
    );

    // 1 GiB free, but an NVIDIA card with 20 GiB of VRAM free: the small model runs there.
    let stdout = tokio::task::block_in_place(|| {
        run(1024 * 1024, Some("NVIDIA GeForce RTX 4090, 24564, 20480"))
    });
    assert!(
        stdout.contains("GPU: NVIDIA GeForce RTX 4090 (20.0 of 24.0 GiB free)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("llama3.2:latest (1.9 GiB): fits in GPU memory"),
        "{stdout}"
    );
}
