//! `cargo xtask bench agents`: the vantage points' figures, on loopback only.
//!
//! 1. **Ingest**: 20 agents push batches of 500 observations at once into a real
//!    `aiwatch serve` (release build) over HTTP — authentication, validation, the sequence
//!    cursor, the store transaction, the assessor — into SQLite, or into PostgreSQL with
//!    `--database postgres://…`. Reports observations/s and push latency.
//! 2. **Agent footprint**: one `aiwatch agent` running 1,000 HTTP checks every 30 s against a
//!    loopback fake, pushing to a server; reports its CPU and RSS.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aiwatch_core::agent_wire::{Push, PROTOCOL};
use aiwatch_core::observation::{Component, Health, Observation, PhaseMs, Region, Source};
use aiwatch_core::{Cause, ServiceName};
use aiwatch_testkit::{canned, DnsAnswer, FakeDns, FakeServer, Reply};
use anyhow::{bail, Context, Result};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::e2e::http_get;

const AGENTS: usize = 20;
const BATCH: usize = 500;
const SERVICES: usize = 50;

struct Options {
    seconds: u64,
    footprint_seconds: u64,
    database: Option<String>,
    /// Start a throwaway PostgreSQL cluster and ingest into it.
    postgres: bool,
}

fn parse(args: &[&str]) -> Result<Options> {
    let mut options = Options {
        seconds: 20,
        footprint_seconds: 75,
        database: None,
        postgres: false,
    };
    let mut rest = args;
    while let [flag, value, tail @ ..] = rest {
        match *flag {
            "--seconds" => options.seconds = value.parse()?,
            "--footprint-seconds" => options.footprint_seconds = value.parse()?,
            "--database" => options.database = Some((*value).to_owned()),
            "--postgres" if *value == "local" => options.postgres = true,
            _ => bail!("usage: cargo xtask bench agents [--seconds S] [--footprint-seconds S] [--database postgres://… | --postgres local]"),
        }
        rest = tail;
    }
    if !rest.is_empty() {
        bail!("usage: cargo xtask bench agents [--seconds S] [--footprint-seconds S] [--database postgres://… | --postgres local]");
    }
    Ok(options)
}

fn token(i: usize) -> String {
    format!("bench-agent-token-{i:02}-0123456789abcdef")
}

/// A serve child that is stopped (SIGTERM, then wait) when dropped.
struct Daemon {
    child: Child,
    base_url: String,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn start_serve(
    binary: &Path,
    dir: &Path,
    config_text: &str,
    services: &[String],
    dns: &str,
    env: &[(String, String)],
) -> Result<Daemon> {
    let config = dir.join("bench.toml");
    std::fs::write(&config, config_text)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut command = Command::new(binary);
    command
        .arg("--config")
        .arg(&config)
        .args(["serve", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .args(services)
        .args(["--dns-server", dns]);
    if !config_text.contains("database =") {
        command.arg("--db").arg(dir.join("bench.db"));
    }
    let child = command
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start aiwatch serve")?;
    let daemon = Daemon {
        child,
        base_url: format!("http://127.0.0.1:{port}"),
    };
    let started = Instant::now();
    while http_get(&daemon.base_url, "/readyz")
        .map(|r| r.0)
        .unwrap_or(0)
        != 200
    {
        if started.elapsed() > Duration::from_secs(60) {
            bail!("serve did not become ready");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(daemon)
}

pub fn run(args: &[&str]) -> Result<()> {
    let mut options = parse(args)?;
    // `--postgres local`: a throwaway cluster on loopback for this run (Debian's package).
    let cluster = if options.postgres {
        Some(crate::postgres::Cluster::start()?)
    } else {
        None
    };
    if let Some(cluster) = &cluster {
        options.database = Some(cluster.url());
    }
    let binary = crate::bench_check::build_release()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let _guard = runtime.enter();
    let fake = runtime.block_on(FakeServer::start(None));
    fake.fallback(Reply::text(200, "text/plain", "ok"));
    fake.route("GET", "/generate_204", canned::generate_204());
    // Names, not loopback URLs: a loopback URL would make each service a local runtime of the
    // server, which agents are never assigned.
    let dns = runtime.block_on(FakeDns::start());
    let loopback = DnsAnswer::Addresses(vec![fake.addr().ip()]);
    for i in 0..1_000 {
        dns.set(&format!("svc-{i:04}.bench.test"), loopback.clone());
    }
    dns.set("control.bench.test", loopback);
    let net = Net {
        port: fake.addr().port(),
        dns: dns.addr().to_string(),
    };
    runtime.block_on(ingest(&binary, &net, &options))?;
    footprint(&binary, &net, options.footprint_seconds)?;
    Ok(())
}

/// Where the fake provider is, and the DNS server that names it.
struct Net {
    port: u16,
    dns: String,
}

fn services_toml(net: &Net, count: usize, interval: &str) -> (String, Vec<String>) {
    let port = net.port;
    let mut text = format!(
        "[defaults]\ninterval = \"{interval}\"\ntimeout = \"5s\"\nstream_interval = \"off\"\ncontrol_url = \"http://control.bench.test:{port}/generate_204\"\n"
    );
    let mut names = Vec::new();
    for i in 0..count {
        let name = format!("svc-{i:04}");
        let _ = write!(
            text,
            "\n[[service]]\nname = \"{name}\"\nkind = \"http\"\nweb_url = \"http://{name}.bench.test:{port}/h/{i}\"\n"
        );
        names.push(name);
    }
    (text, names)
}

async fn ingest(binary: &Path, net: &Net, options: &Options) -> Result<()> {
    let (mut text, names) = services_toml(net, SERVICES, "1h");
    let _ = write!(text, "\n[server]\nagent_grace = \"1h\"\n");
    if let Some(url) = &options.database {
        let _ = writeln!(text, "database = \"{url}\"");
    }
    let mut env = Vec::new();
    for i in 0..AGENTS {
        let _ = write!(
            text,
            "\n[[agent]]\nregion = \"bench-{i:02}\"\ntoken_env = \"BENCH_AGENT_{i:02}\"\n"
        );
        env.push((format!("BENCH_AGENT_{i:02}"), token(i)));
    }
    let dir = tempfile::tempdir()?;
    let daemon = start_serve(binary, dir.path(), &text, &names, &net.dns, &env)?;
    let engine = options
        .database
        .as_deref()
        .map_or("SQLite".to_owned(), |u| {
            format!("PostgreSQL ({})", u.split('@').next_back().unwrap_or(u))
        });
    println!(
        "ingest: {AGENTS} agents pushing batches of {BATCH} observations into aiwatch serve over HTTP, {engine}, {} s",
        options.seconds
    );
    let client: Client<_, Full<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let services: Vec<ServiceName> = names
        .iter()
        .map(|n| ServiceName::parse(n))
        .collect::<Result<_, _>>()
        .map_err(anyhow::Error::msg)?;
    let accepted = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(options.seconds);
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    for agent in 0..AGENTS {
        let client = client.clone();
        let url: hyper::Uri = format!("{}/api/v1/agent/observations", daemon.base_url).parse()?;
        let services = services.clone();
        let accepted = accepted.clone();
        tasks.spawn(async move {
            let region = Region::new(format!("bench-{agent:02}"));
            let auth = format!("Bearer {}", token(agent));
            let mut seq = 1u64;
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let now = chrono::Utc::now();
                let observations: Vec<Observation> = (0..BATCH)
                    .map(|i| Observation {
                        service: services[(seq as usize + i) % services.len()].clone(),
                        component: Component::Web,
                        region: region.clone(),
                        source: Source::Probe,
                        at: now - chrono::Duration::milliseconds((BATCH - i) as i64),
                        health: Health::Up,
                        cause: Cause::Ok,
                        phases: PhaseMs {
                            dns: Some(0.4),
                            connect: Some(0.2),
                            tls: None,
                            first_byte: Some(12.0),
                            total: Some(12.5),
                        },
                        complete: None,
                        detail: "bench answers HTTP 200".into(),
                    })
                    .collect();
                let push = Push {
                    protocol: PROTOCOL,
                    region: region.clone(),
                    agent_version: "bench".into(),
                    sent_at: now,
                    stream: format!("bench-{agent:02}"),
                    first_seq: seq,
                    control_online: Some(true),
                    observations,
                };
                let body = serde_json::to_vec(&push)?;
                let request = hyper::Request::post(url.clone())
                    .header("authorization", &auth)
                    .header("content-type", "application/json")
                    .body(Full::new(bytes::Bytes::from(body)))?;
                let sent = Instant::now();
                let response = client.request(request).await?;
                let status = response.status();
                let answer = response.into_body().collect().await?.to_bytes();
                latencies.push(sent.elapsed());
                if !status.is_success() {
                    bail!(
                        "push refused ({status}): {}",
                        String::from_utf8_lossy(&answer)
                    );
                }
                let answer: serde_json::Value = serde_json::from_slice(&answer)?;
                accepted.fetch_add(answer["accepted"].as_u64().unwrap_or(0), Ordering::Relaxed);
                seq += BATCH as u64;
            }
            Ok::<_, anyhow::Error>(latencies)
        });
    }
    let mut latencies = Vec::new();
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q) as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let total = accepted.load(Ordering::Relaxed);
    println!(
        "  observations stored      {total} in {elapsed:.1} s = {:.0}/s   (goal ≥ 20,000/s)",
        total as f64 / elapsed
    );
    println!(
        "  push latency (500 obs)   p50 {:.1} ms / p99 {:.1} ms over {} pushes",
        at(0.5),
        at(0.99),
        latencies.len()
    );
    Ok(())
}

fn footprint(binary: &Path, net: &Net, seconds: u64) -> Result<()> {
    const CHECKS: usize = 1_000;
    let (mut text, names) = services_toml(net, CHECKS, "30s");
    let _ = write!(
        text,
        "\n[[agent]]\nregion = \"bench\"\ntoken_env = \"BENCH_AGENT\"\n"
    );
    let dir = tempfile::tempdir()?;
    // Agents are assigned what the server watches: all 1,000 (the server checks them too).
    let daemon = start_serve(
        binary,
        dir.path(),
        &text,
        &names,
        &net.dns,
        &[("BENCH_AGENT".into(), token(0))],
    )?;
    let mut agent = Command::new(binary)
        .args([
            "agent",
            "--server",
            &daemon.base_url,
            "--region",
            "bench",
            "--buffer",
        ])
        .arg(dir.path().join("agent.db"))
        .env("AIWATCH_AGENT_TOKEN", token(0))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start aiwatch agent")?;
    let pid = agent.id();
    println!(
        "agent: {CHECKS} HTTP checks every 30 s against one loopback fake; measuring {seconds} s"
    );
    // The first interval spreads the checks' starts.
    std::thread::sleep(Duration::from_secs(5));
    let (cpu0, t0) = (crate::bench_serve::cpu_seconds(pid)?, Instant::now());
    std::thread::sleep(Duration::from_secs(seconds));
    let cpu1 = crate::bench_serve::cpu_seconds(pid)?;
    let elapsed = t0.elapsed().as_secs_f64();
    let rss_peak = crate::bench_serve::status_kb(pid, "VmHWM:")?;
    let rss_now = crate::bench_serve::status_kb(pid, "VmRSS:")?;
    let metrics = http_get(&daemon.base_url, "/metrics")?.1;
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    let _ = agent.wait();
    let delivered = crate::bench_serve::metric_in(&metrics, "aiwatch_agent_observations_total");
    println!(
        "  CPU (average, of one core)  {:.1} %",
        (cpu1 - cpu0) / elapsed * 100.0
    );
    println!(
        "  RSS peak / now              {:.1} MB / {:.1} MB",
        rss_peak / 1024.0,
        rss_now / 1024.0
    );
    // Each check first runs at a random point of its first 30 s, then every 30 s.
    println!(
        "  observations delivered      {delivered:.0} (expected ≈ {:.0})",
        (CHECKS as f64 * ((seconds + 5) as f64 / 30.0 - 0.5)).max(0.0)
    );
    Ok(())
}
