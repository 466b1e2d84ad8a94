//! `cargo xtask bench alerts`: how fast an alert reaches its receiver, and how many the outbox
//! delivers per second — all on loopback.
//!
//! 1. Latency: a release `aiwatch serve` watches N loopback services with a webhook alert; the
//!    services fail all at once, round after round, and the receiver stamps each `opened`
//!    notification's arrival. Latency = arrival − the incident's `opened_at` (the body's
//!    `since`): the rules, the outbox transaction, the wake-up and the POST.
//! 2. Throughput: M notifications are saved in the outbox of a real SQLite file and the
//!    deliverer sends them to a loopback webhook that answers 204; alerts/s = M / the time
//!    until the outbox holds none pending.

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aiwatch_alerts::{Channel, Deliverer, RetryPolicy};
use aiwatch_core::alert::AlertEvent;
use aiwatch_core::alert_rules::{AlertMessage, Notification, MESSAGE_VERSION};
use aiwatch_core::{Cause, Config, Scope, Status};
use aiwatch_store::{DeliveryState, SqliteStore, Store};
use aiwatch_testkit::{canned, FakeServer, Reply};
use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};

use crate::e2e::http_get;

pub fn run(args: &[&str]) -> Result<()> {
    let (services, rounds, outbox) = match args {
        [] => (50usize, 4usize, 5_000usize),
        ["--services", s, "--rounds", r, "--outbox", o] => (s.parse()?, r.parse()?, o.parse()?),
        _ => bail!("usage: cargo xtask bench alerts [--services N --rounds R --outbox M]"),
    };
    let binary = crate::bench_check::build_release()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let _guard = runtime.enter();
    latency(&runtime, &binary, services, rounds)?;
    runtime.block_on(throughput(outbox))?;
    Ok(())
}

type Arrivals = Arc<Mutex<Vec<(DateTime<Utc>, serde_json::Value)>>>;

fn latency(
    runtime: &tokio::runtime::Runtime,
    binary: &std::path::Path,
    services: usize,
    rounds: usize,
) -> Result<()> {
    let fake = runtime.block_on(FakeServer::start(None));
    fake.fallback(Reply::text(200, "text/plain", "ok"));
    fake.route("GET", "/generate_204", canned::generate_204());
    let receiver = runtime.block_on(FakeServer::start(None));
    let arrivals: Arrivals = Arc::default();
    let log = arrivals.clone();
    receiver.route(
        "POST",
        "/hook",
        Reply::dynamic(move |seen| {
            let at = Utc::now();
            if let Ok(body) = serde_json::from_slice(&seen.body) {
                log.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((at, body));
            }
            Reply::empty(204)
        }),
    );
    let dir = tempfile::tempdir()?;
    let base = format!("http://{}", fake.addr());
    let mut text = format!(
        "[defaults]\ninterval = \"250ms\"\ntimeout = \"2s\"\nfailures_to_open = 2\nsuccesses_to_close = 2\ncontrol_url = \"{base}/generate_204\"\n\n[[alert]]\nname = \"bench\"\nkind = \"webhook\"\nurl = \"http://{}/hook\"\nsettle = \"0s\"\n",
        receiver.addr()
    );
    for i in 0..services {
        text.push_str(&format!(
            "\n[[service]]\nname = \"svc-{i:03}\"\nkind = \"http\"\nweb_url = \"{base}/h/{i}\"\n"
        ));
    }
    let config = dir.path().join("bench.toml");
    std::fs::write(&config, text)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut child = Command::new(binary)
        .arg("--config")
        .arg(&config)
        .args(["serve", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .args((0..services).map(|i| format!("svc-{i:03}")))
        .arg("--db")
        .arg(dir.path().join("bench.db"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start aiwatch serve")?;
    let base_url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while http_get(&base_url, "/readyz").map(|r| r.0).unwrap_or(0) != 200 {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            bail!("serve did not become ready");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
    let opened = |a: &Arrivals| {
        a.lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, b)| b["event"] == "opened")
            .count()
    };
    for round in 0..rounds {
        for i in 0..services {
            fake.route("GET", &format!("/h/{i}"), Reply::empty(503));
        }
        let want = services * (round + 1);
        let deadline = Instant::now() + Duration::from_secs(60);
        while opened(&arrivals) < want && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        for i in 0..services {
            fake.route(
                "GET",
                &format!("/h/{i}"),
                Reply::text(200, "text/plain", "ok"),
            );
        }
        let recovered = |a: &Arrivals| {
            a.lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .filter(|(_, b)| b["event"] == "recovered")
                .count()
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while recovered(&arrivals) < want && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    let all = arrivals.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut latencies: Vec<f64> = all
        .iter()
        .filter(|(_, b)| b["event"] == "opened")
        .filter_map(|(at, b)| {
            let since: DateTime<Utc> = b["since"].as_str()?.parse().ok()?;
            Some((*at - since).num_microseconds()? as f64 / 1000.0)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    if latencies.is_empty() {
        bail!("no opened notification arrived");
    }
    let q = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    let keys: std::collections::HashSet<String> = all
        .iter()
        .filter_map(|(_, b)| b["idempotency_key"].as_str().map(str::to_owned))
        .collect();
    println!(
        "event → webhook arrival: {} services failing at once, {rounds} rounds: {} opened notifications",
        services,
        latencies.len()
    );
    println!(
        "  latency p50 / p99 / max           {:.1} ms / {:.1} ms / {:.1} ms   (goal p99 < 100 ms)",
        q(0.5),
        q(0.99),
        latencies[latencies.len() - 1]
    );
    println!(
        "  deliveries received / distinct    {} / {}   (a repeat would share a key)",
        all.len(),
        keys.len()
    );
    Ok(())
}

fn message(i: usize) -> AlertMessage {
    let at = Utc::now();
    let id = format!("inc-bench-{i}");
    AlertMessage {
        version: MESSAGE_VERSION,
        event: AlertEvent::Opened,
        service: Some("openai-api".into()),
        service_title: Some("OpenAI API".into()),
        component: Some("api".into()),
        region: Some("local".into()),
        status: Status::Outage,
        scope: Scope::Global,
        cause: Cause::ProviderError,
        title: "OpenAI API api: outage for everyone (provider_error)".into(),
        summary: "requests fail".into(),
        advice: vec!["Send traffic to another provider for now".into()],
        official: None,
        dashboard_url: "http://localhost:8080/services/openai-api".into(),
        idempotency_key: format!("{id}:opened"),
        incident_id: id,
        at,
        since: at,
    }
}

async fn throughput(count: usize) -> Result<()> {
    let receiver = FakeServer::start(None).await;
    receiver.route("POST", "/hook", Reply::empty(204));
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("outbox.db"))?);
    let config = Config::parse(&format!(
        "[[alert]]\nname = \"bench\"\nkind = \"webhook\"\nurl = \"http://{}/hook\"\nsecret_env = \"BENCH_SECRET\"\n",
        receiver.addr()
    ))?;
    let trust = aiwatch_probe::tls::Trust::new(&[])?;
    let channel = Channel::build(
        config.alerts[0].clone(),
        &|_| Some("a bench secret".into()),
        &trust,
    )?;
    let ctx = aiwatch_probe::Checker::new(aiwatch_probe::CheckOptions {
        timeout: Duration::from_secs(5),
        dns: aiwatch_probe::DnsChoice::System,
        ca_files: Vec::new(),
        control_url: None,
        deep: false,
        proxies: aiwatch_probe::ProxySettings::none(),
    })?
    .context()
    .clone();
    let notifications: Vec<Notification> = (0..count)
        .map(|i| Notification {
            alert: "bench".into(),
            message: message(i),
        })
        .collect();
    let saving = Instant::now();
    for chunk in notifications.chunks(100) {
        store.record(&[], chunk)?;
    }
    let saved = saving.elapsed();
    let deliverer = Arc::new(Deliverer::new(
        store.clone(),
        vec![channel],
        ctx,
        RetryPolicy::default(),
        Duration::from_secs(5),
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let task = tokio::spawn(deliverer.clone().run(async {
        let _ = stopped.await;
    }));
    let pending = |s: &Arc<dyn Store>| {
        s.delivery_counts()
            .unwrap_or_default()
            .into_iter()
            .find(|(state, _)| *state == DeliveryState::Pending)
            .map_or(0, |(_, n)| n)
    };
    while pending(&store) > 0 && started.elapsed() < Duration::from_secs(300) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    let _ = stop.send(());
    let _ = task.await;
    let received = receiver.requests().len();
    println!("outbox → webhook on loopback: {count} notifications (signed, one POST each)");
    println!(
        "  saved to the outbox               {:.0} /s   ({count} in {:.2} s, 100 per transaction)",
        count as f64 / saved.as_secs_f64(),
        saved.as_secs_f64()
    );
    println!(
        "  delivered                         {:.0} alerts/s   ({received} received in {:.2} s)",
        received as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    Ok(())
}
