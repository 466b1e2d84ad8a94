//! Benchmarks `aiwatch check` over the whole built-in catalog against loopback fakes: healthy,
//! every API host blackholed, and the binary's start-up time.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aiwatch_testkit::{canned, Blackhole, FakeServer, FakeStatusPage, World};
use anyhow::{bail, Context, Result};

const API_SERVICES: &[(&str, &str, &str)] = &[
    ("openai-api", "api.openai.test", "/v1"),
    ("anthropic-api", "api.anthropic.test", "/v1"),
    ("gemini-api", "generativelanguage.test", "/v1beta"),
    ("mistral-api", "api.mistral.test", "/v1"),
    ("groq-api", "api.groq.test", "/openai/v1"),
    ("deepseek-api", "api.deepseek.test", "/v1"),
];

pub fn run(args: &[&str]) -> Result<()> {
    let runs = match args {
        ["--runs", n] => n.parse().context("--runs takes a number")?,
        [] => 20,
        _ => bail!("usage: cargo xtask bench check [--runs N]"),
    };
    let binary = build_release()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let world = catalog_world().await;
        let config = world.write_config();
        println!(
            "aiwatch check, all {} catalog services, loopback fakes, {runs} runs",
            10
        );

        let healthy = time_runs(runs, || check(&binary, &world, &config, "5s"))?;
        report("healthy (goal < 300 ms)", &healthy);

        // Every API host and web front-end now blackholes: connects hang until the budget ends.
        let hole = Blackhole::start().await;
        let blackholed_config = blackhole_config(&world, hole.addr().port());
        let budget = Duration::from_secs(2);
        let blackholed = time_runs(runs.min(10), || {
            check(&binary, &world, &blackholed_config, "2s")
        })?;
        report("blackholed, --timeout 2s (goal ≤ 2200 ms)", &blackholed);
        let worst = blackholed.iter().max().copied().unwrap_or_default();
        println!(
            "  worst overrun of the budget: {:+.1} %",
            (worst.as_secs_f64() / budget.as_secs_f64() - 1.0) * 100.0
        );
        drop(hole);
        Ok::<_, anyhow::Error>(())
    })?;

    let startup = time_runs(100, || {
        let status = Command::new(&binary)
            .arg("--version")
            .stdout(Stdio::null())
            .status()?;
        if !status.success() {
            bail!("aiwatch --version failed");
        }
        Ok(())
    })?;
    report("start-up: aiwatch --version (goal < 10 ms)", &startup);
    Ok(())
}

pub fn build_release() -> Result<PathBuf> {
    build_profile("release")
}

/// Builds `aiwatch` with a cargo profile (`release`, `measure`) and returns its path.
pub fn build_profile(profile: &str) -> Result<PathBuf> {
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--profile", profile, "-p", "aiwatch"])
        .status()
        .with_context(|| format!("cargo build --profile {profile}"))?;
    if !status.success() {
        bail!("cargo build --profile {profile} -p aiwatch failed");
    }
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let binary = Path::new(&target).join(profile).join("aiwatch");
    if !binary.is_file() {
        bail!("no binary at {}", binary.display());
    }
    Ok(binary)
}

/// Every catalog service behind a healthy fake, with keys and official pages.
async fn catalog_world() -> World {
    let mut world = World::start().await;
    for (name, host, path) in API_SERVICES {
        let server: &FakeServer = world.api(name, host, path).await;
        let models = match *name {
            "anthropic-api" => canned::anthropic_models(),
            "gemini-api" => canned::gemini_models(),
            _ => canned::openai_models(),
        };
        server.route("GET", &format!("{path}/models"), models);
        world.set_key_env(
            name,
            &format!("BENCH_{}_KEY", name.replace('-', "_").to_uppercase()),
        );
    }
    for (name, host) in [("chatgpt", "chatgpt.test"), ("claude", "claude.test")] {
        world
            .web(name, host)
            .await
            .route("GET", "/", canned::web_home());
    }
    world.local("ollama", "").await.route(
        "GET",
        "/api/tags",
        canned::ollama_tags(&["llama3.2:latest"]),
    );
    world
        .local("lmstudio", "/v1")
        .await
        .route("GET", "/v1/models", canned::openai_models());
    let pages = [
        ("openai-api", "status.openai.test"),
        ("chatgpt", "status.openai.test"),
        ("anthropic-api", "status.anthropic.test"),
        ("claude", "status.anthropic.test"),
        ("mistral-api", "status.mistral.test"),
        ("groq-api", "status.groq.test"),
        ("deepseek-api", "status.deepseek.test"),
    ];
    for (service, host) in pages {
        let page: &FakeStatusPage = world.status_page(service, host).await;
        page.set_summary(&aiwatch_testkit::summary_operational(&[
            "API",
            "Chat Completions",
        ]));
    }
    world
}

fn blackhole_config(world: &World, port: u16) -> PathBuf {
    let mut text = world.config_toml();
    for s in &world.services {
        if s.url.starts_with("https://") {
            let blackholed = replace_port(&s.url, port);
            text = text.replace(&s.url, &blackholed);
        }
    }
    let path = world.dir().join("blackholed.toml");
    std::fs::write(&path, text).expect("write the blackholed config");
    path
}

fn replace_port(url: &str, port: u16) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    if path.is_empty() {
        format!("{scheme}://{host}:{port}")
    } else {
        format!("{scheme}://{host}:{port}/{path}")
    }
}

fn check(binary: &Path, world: &World, config: &Path, timeout: &str) -> Result<()> {
    let mut cmd = Command::new(binary);
    cmd.arg("--config")
        .arg(config)
        .args(["check", "--json", "--timeout", timeout, "--dns-server"])
        .arg(world.dns.addr().to_string())
        .arg("--ca-file")
        .arg(world.public_ca_path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"] {
        cmd.env_remove(var);
    }
    for (name, _, _) in API_SERVICES {
        cmd.env(
            format!("BENCH_{}_KEY", name.replace('-', "_").to_uppercase()),
            "bench-key",
        );
    }
    let output = cmd.output()?;
    let json: serde_json::Value = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("not JSON: {}", String::from_utf8_lossy(&output.stderr)))?;
    if json.as_array().map_or(0, Vec::len) != 10 {
        bail!("expected 10 verdicts, got {json}");
    }
    Ok(())
}

fn time_runs(runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        f()?;
        times.push(started.elapsed());
    }
    Ok(times)
}

fn report(label: &str, times: &[Duration]) {
    let mut sorted = times.to_vec();
    sorted.sort();
    let pick = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    println!(
        "{label}\n  n={} min {:.1} ms  median {:.1} ms  p90 {:.1} ms  max {:.1} ms",
        sorted.len(),
        ms(sorted[0]),
        ms(pick(0.5)),
        ms(pick(0.9)),
        ms(sorted[sorted.len() - 1])
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
