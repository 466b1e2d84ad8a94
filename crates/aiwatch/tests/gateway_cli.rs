//! `aiwatch gateway` and `aiwatch drill` through the real binary, against loopback fakes.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use aiwatch_testkit::{canned, FakeServer, Reply, Seen};
use common::aiwatch;

fn healthy(text: &'static str) -> Reply {
    Reply::dynamic(move |seen: &Seen| {
        if String::from_utf8_lossy(&seen.body).contains("\"stream\":true") {
            canned::openai_stream(true)
        } else {
            canned::openai_chat_completion(text)
        }
    })
}

/// A config with a cloud upstream, a second one, and LM Studio (local) as the last resort.
fn write_config(
    dir: &std::path::Path,
    cloud: &FakeServer,
    second: &FakeServer,
    local: &FakeServer,
) -> PathBuf {
    let text = format!(
        r#"[[service]]
name = "cloud"
kind = "openai"
api_base = "http://{cloud}/v1"
api_key_env = "CLI_TEST_CLOUD_KEY"

[[service]]
name = "second"
kind = "openai"
api_base = "http://{second}/v1"

[[service]]
name = "lmstudio"
api_base = "http://{local}/v1"

[gateway]
client_keys_env = "CLI_TEST_GATEWAY_KEYS"

[[route]]
model = "smart"
upstreams = ["cloud:gpt-4o-mini", "second:m2", "lmstudio:qwen2.5-0.5b-instruct"]
"#,
        cloud = cloud.addr(),
        second = second.addr(),
        local = local.addr()
    );
    let path = dir.join("aiwatch.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn lm_studio_models() -> Reply {
    Reply::json(
        200,
        serde_json::json!({"object": "list", "data": [
            {"id": "qwen2.5-0.5b-instruct", "object": "model", "owned_by": "organization_owner"},
            {"id": "text-embedding-nomic-embed-text-v1.5", "object": "model", "owned_by": "organization_owner"}
        ]}),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_refuses_to_start_without_client_keys_or_with_a_short_one() {
    let dir = tempfile::tempdir().expect("tmp");
    let (a, b, c) = (
        FakeServer::start(None).await,
        FakeServer::start(None).await,
        FakeServer::start(None).await,
    );
    let config = write_config(dir.path(), &a, &b, &c);
    for (keys, says) in [
        (None, "CLI_TEST_GATEWAY_KEYS"),
        (Some("long-enough-key-0123456789,short"), "gateway key 2"),
    ] {
        let config = config.clone();
        let out = tokio::task::spawn_blocking(move || {
            let mut cmd = aiwatch();
            match keys {
                Some(k) => cmd.env("CLI_TEST_GATEWAY_KEYS", k),
                None => cmd.env_remove("CLI_TEST_GATEWAY_KEYS"),
            };
            cmd.arg("--config")
                .arg(config)
                .args(["gateway", "--listen", "127.0.0.1:0"])
                .output()
                .expect("runs")
        })
        .await
        .expect("joins");
        assert_eq!(out.status.code(), Some(78));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{stderr}");
        assert!(
            !stderr.contains("long-enough-key"),
            "keys are never printed: {stderr}"
        );
    }
}

/// `aiwatch gateway` on `config`, listening on `listen`, with the keys the config names.
fn gateway_command(config: &std::path::Path, listen: &str) -> std::process::Command {
    let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("aiwatch"));
    command
        .env(
            "CLI_TEST_GATEWAY_KEYS",
            "k-one-0123456789abcdefghij,k-two-0123456789abcdefghij",
        )
        .env("CLI_TEST_CLOUD_KEY", "sk-cloud")
        .env("NO_COLOR", "1")
        .arg("--config")
        .arg(config)
        .args(["gateway", "--listen", listen]);
    command
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_serves_fails_over_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tmp");
    let cloud = FakeServer::start(None).await;
    cloud.route(
        "POST",
        "/v1/chat/completions",
        canned::openai_503_overloaded(),
    );
    let second = FakeServer::start(None).await;
    second.route("POST", "/v1/chat/completions", healthy("from second"));
    let local = FakeServer::start(None).await;
    let config = write_config(dir.path(), &cloud, &second, &local);
    let mut child = gateway_command(&config, "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts");
    let stdout = child.stdout.take().expect("stdout");
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("a line");
        line
    })
    .await
    .expect("joins");
    let addr = line
        .trim()
        .strip_prefix("gateway listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_owned();
    let response = tokio::task::spawn_blocking(move || {
        let body = r#"{"model":"smart","messages":[{"role":"user","content":"hi"}]}"#;
        let mut stream = TcpStream::connect(&addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        write!(
            stream,
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k-two-0123456789abcdefghij\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("send");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read");
        response
    })
    .await
    .expect("joins");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains("x-aiwatch-upstream: second:m2"),
        "{response}"
    );
    assert!(response.contains("from second"));
    // A second gateway on the same port is refused, even with the shared (SO_REUSEPORT)
    // listeners of several threads: it must not quietly take half the first one's clients.
    let port = line
        .trim()
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    let mut rival = gateway_command(&config, &format!("127.0.0.1:{port}"));
    let mut rival = rival
        .env("AIWATCH_GATEWAY_THREADS", "2")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let waited = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if let Some(status) = rival.try_wait().expect("waits") {
                let mut stderr = String::new();
                if let Some(mut e) = rival.stderr.take() {
                    e.read_to_string(&mut stderr).expect("stderr");
                }
                return Some((status, stderr));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = rival.kill();
        let _ = rival.wait();
        None
    })
    .await
    .expect("joins");
    let (status, stderr) = waited.expect("a second gateway on a taken port kept running");
    assert!(!status.success());
    assert!(
        stderr.contains("cannot listen on") && stderr.to_lowercase().contains("in use"),
        "{stderr}"
    );
    let cloud_seen = cloud.requests();
    assert_eq!(
        cloud_seen[0].header("authorization"),
        Some("Bearer sk-cloud")
    );
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exited = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("joins")
        .expect("waits");
    assert_eq!(exited.code(), Some(0), "SIGTERM is a clean stop");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_drill_says_which_upstream_would_carry_traffic_and_what_is_installed_locally() {
    let dir = tempfile::tempdir().expect("tmp");
    let cloud = FakeServer::start(None).await;
    cloud.route("POST", "/v1/chat/completions", canned::openai_401());
    let second = FakeServer::start(None).await;
    second.route("POST", "/v1/chat/completions", canned::openai_stream(false));
    let local = FakeServer::start(None).await;
    local.route("GET", "/v1/models", lm_studio_models());
    local.route("POST", "/v1/chat/completions", healthy("local"));
    let config = write_config(dir.path(), &cloud, &second, &local);
    let out = tokio::task::spawn_blocking(move || {
        aiwatch()
            .arg("--config")
            .arg(config)
            .args(["drill", "smart", "--json"])
            .output()
            .expect("runs")
    })
    .await
    .expect("joins");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["carrier"], "lmstudio:qwen2.5-0.5b-instruct");
    let ups = report["upstreams"].as_array().expect("upstreams");
    assert_eq!(ups[0]["ready"], false);
    assert!(
        ups[0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("401"),
        "{report}"
    );
    assert_eq!(ups[1]["ready"], false);
    let cut_off = ups[1]["reason"].as_str().unwrap_or_default();
    assert!(
        cut_off.contains("broke") || cut_off.contains("finish marker"),
        "{report}"
    );
    assert_eq!(ups[2]["ready"], true);
    let local_models = &ups[2]["local_models"];
    assert_eq!(local_models["reachable"], true);
    assert_eq!(local_models["model_installed"], true);
    assert_eq!(
        local_models["installed"][1]["name"],
        "text-embedding-nomic-embed-text-v1.5"
    );
    assert!(local_models["free_memory_bytes"].as_u64().is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_drill_exits_2_when_plan_b_is_not_ready_and_says_why() {
    let dir = tempfile::tempdir().expect("tmp");
    let cloud = FakeServer::start(None).await;
    cloud.route(
        "POST",
        "/v1/chat/completions",
        canned::openai_503_overloaded(),
    );
    let second = FakeServer::start(None).await;
    second.route(
        "POST",
        "/v1/chat/completions",
        canned::openai_503_overloaded(),
    );
    let local = FakeServer::start(None).await;
    local.route("GET", "/v1/models", lm_studio_models());
    local.route(
        "POST",
        "/v1/chat/completions",
        canned::openai_model_not_found(),
    );
    let config = write_config(dir.path(), &cloud, &second, &local);
    let config_for_typo = config.clone();
    let out = tokio::task::spawn_blocking(move || {
        aiwatch()
            .arg("--config")
            .arg(config)
            .args(["drill", "smart"])
            .output()
            .expect("runs")
    })
    .await
    .expect("joins");
    assert_eq!(out.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("NOT READY"), "{stdout}");
    assert!(stdout.contains("plan B is not ready"), "{stdout}");
    assert!(
        stdout.contains("installed: qwen2.5-0.5b-instruct"),
        "{stdout}"
    );

    let typo = tokio::task::spawn_blocking(move || {
        aiwatch()
            .arg("--config")
            .arg(config_for_typo)
            .args(["drill", "smrat"])
            .output()
            .expect("runs")
    })
    .await
    .expect("joins");
    assert_eq!(typo.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&typo.stderr).contains("Did you mean `smart`?"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_drill_reports_the_machines_gpu_and_where_the_local_model_fits() {
    let dir = tempfile::tempdir().expect("tmp");
    let cloud = FakeServer::start(None).await;
    cloud.route(
        "POST",
        "/v1/chat/completions",
        canned::openai_503_overloaded(),
    );
    let second = FakeServer::start(None).await;
    second.route(
        "POST",
        "/v1/chat/completions",
        canned::openai_503_overloaded(),
    );
    let local = FakeServer::start(None).await;
    // llama.cpp's server shape: the file size under `meta.size`.
    local.route(
        "GET",
        "/v1/models",
        Reply::json(
            200,
            serde_json::json!({"object": "list", "data": [
                {"id": "qwen2.5-0.5b-instruct", "object": "model", "meta": {"size": 3_221_225_472_u64}}
            ]}),
        ),
    );
    local.route("POST", "/v1/chat/completions", healthy("local"));
    let config = write_config(dir.path(), &cloud, &second, &local);
    // This machine, faked: 2 GiB free memory, an AMD card with 7 of 8 GiB free, no nvidia-smi.
    let machine = dir.path().join("machine");
    for (path, text) in [
        ("proc/meminfo", "MemAvailable: 2097152 kB\n"),
        ("sys/class/drm/card0/device/vendor", "0x1002\n"),
        (
            "sys/class/drm/card0/device/mem_info_vram_total",
            "8589934592\n",
        ),
        (
            "sys/class/drm/card0/device/mem_info_vram_used",
            "1073741824\n",
        ),
    ] {
        let path = machine.join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
    std::fs::create_dir_all(machine.join("bin")).expect("mkdir");
    let run = move |json: bool| {
        let mut cmd = aiwatch();
        cmd.arg("--config")
            .arg(&config)
            .args(["drill", "smart"])
            .env("AIWATCH_PROC_DIR", machine.join("proc"))
            .env("AIWATCH_SYS_DIR", machine.join("sys"))
            .env("PATH", machine.join("bin"));
        if json {
            cmd.arg("--json");
        }
        cmd.output().expect("runs")
    };
    let run_json = run.clone();
    let out = tokio::task::spawn_blocking(move || run(false))
        .await
        .expect("joins");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("This machine: 2.0 GiB free memory; GPU: AMD GPU (7.0 of 8.0 GiB free)."),
        "{stdout}"
    );
    assert!(
        stdout.contains("model size 3.0 GiB: fits in GPU memory: runs now at full speed"),
        "{stdout}"
    );
    let out = tokio::task::spawn_blocking(move || run_json(true))
        .await
        .expect("joins");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["machine"]["gpus"][0]["vendor"], "amd", "{report}");
    let local = &report["upstreams"][2]["local_models"];
    assert_eq!(local["fit"], "gpu", "{report}");
    assert_eq!(local["fits_in_memory"], true, "{report}");
}
