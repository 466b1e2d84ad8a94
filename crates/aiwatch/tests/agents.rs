//! Vantage points end to end: `aiwatch serve` with `[[agent]]`s and real `aiwatch agent`
//! processes, each with its own DNS server on loopback — one region's DNS sends the service to
//! a failing fake, the others to a healthy one. Proves `regional` naming the failing region,
//! `global` at the quorum, a silent agent's region turning unknown, refusals of wrong tokens
//! and regions, and that the agent's buffer loses and duplicates nothing across a server
//! crash and a kill -9 of the agent.

mod common;

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use aiwatch_testkit::{DnsAnswer, FakeDns, FakeServer, Reply};
use common::{free_port, Serve};
use serde_json::Value;

const EU_TOKEN: &str = "eu-west-token-0123456789abcdef";
const US_TOKEN: &str = "us-east-token-0123456789abcdef";

/// The healthy and the failing fake of one service, on the same port of two loopback
/// addresses, and a DNS server per answer.
struct Regions {
    healthy: FakeServer,
    _failing: FakeServer,
    /// Sends `acme.test` to the healthy fake.
    dns_ok: FakeDns,
    /// Sends `acme.test` to the failing fake.
    dns_bad: FakeDns,
    dir: tempfile::TempDir,
}

impl Regions {
    async fn start() -> Self {
        let healthy = FakeServer::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), None).await;
        healthy.fallback(Reply::text(
            200,
            "text/html",
            "<html><body>acme</body></html>",
        ));
        let failing = FakeServer::start_on(
            SocketAddr::from(([127, 0, 0, 2], healthy.addr().port())),
            None,
        )
        .await;
        failing.fallback(Reply::text(
            503,
            "text/html",
            "<html>upstream unavailable</html>",
        ));
        let dns_ok = FakeDns::start().await;
        dns_ok.set(
            "acme.test",
            DnsAnswer::Addresses(vec![IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1))]),
        );
        let dns_bad = FakeDns::start().await;
        dns_bad.set(
            "acme.test",
            DnsAnswer::Addresses(vec![IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))]),
        );
        Self {
            healthy,
            _failing: failing,
            dns_ok,
            dns_bad,
            dir: tempfile::tempdir().expect("a temp dir"),
        }
    }

    fn config(&self, quorum: u32) -> PathBuf {
        let port = self.healthy.addr().port();
        let text = format!(
            r#"[defaults]
interval = "300ms"
timeout = "2s"
failures_to_open = 2
successes_to_close = 2
stream_interval = "off"
control_url = "http://127.0.0.1:{port}/generate_204"

[server]
quorum = {quorum}
agent_grace = "3s"

[[service]]
name = "acme"
kind = "http"
web_url = "http://acme.test:{port}/"

[[agent]]
region = "eu-west"
token_env = "EU_TOKEN"

[[agent]]
region = "us-east"
token_env = "US_TOKEN"
"#
        );
        let path = self.dir.path().join("aiwatch.toml");
        std::fs::write(&path, text).expect("write the config");
        path
    }

    /// The buffer file of `region`'s agent.
    fn buffer(&self, region: &str) -> PathBuf {
        self.dir.path().join(format!("{region}.db"))
    }

    /// `region`'s agent (its declared token) reporting to `server`, resolving through `dns`.
    fn agent(&self, server: SocketAddr, region: &str, dns: &FakeDns) -> Agent {
        let token = if region == "eu-west" {
            EU_TOKEN
        } else {
            US_TOKEN
        };
        Agent::start(server, region, token, dns, &self.buffer(region))
    }

    async fn serve(&self, config: &Path, addr: SocketAddr) -> Serve {
        let db = self.dir.path().join("server.db");
        let args: Vec<std::ffi::OsString> = vec![
            "acme".into(),
            "--db".into(),
            db.into(),
            "--dns-server".into(),
            self.dns_ok.addr().to_string().into(),
        ];
        Serve::spawn(
            config,
            addr,
            &args,
            &[("EU_TOKEN", EU_TOKEN), ("US_TOKEN", US_TOKEN)],
        )
        .await
    }
}

/// An `aiwatch agent` child process; killed (SIGKILL) when dropped.
struct Agent {
    child: Child,
}

impl Agent {
    fn start(server: SocketAddr, region: &str, token: &str, dns: &FakeDns, buffer: &Path) -> Agent {
        let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("aiwatch"))
            .args(["agent", "--server"])
            .arg(format!("http://{server}"))
            .args(["--region", region, "--dns-server"])
            .arg(dns.addr().to_string())
            .arg("--buffer")
            .arg(buffer)
            .env("AIWATCH_AGENT_TOKEN", token)
            .env_remove("HTTPS_PROXY")
            .env_remove("HTTP_PROXY")
            .env_remove("https_proxy")
            .env_remove("http_proxy")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("aiwatch agent starts");
        Agent { child }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

fn failing_regions(service: &Value) -> Vec<String> {
    service["failing_regions"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn region<'a>(regions: &'a Value, name: &str) -> &'a Value {
    regions["regions"]
        .as_array()
        .and_then(|list| list.iter().find(|r| r["region"] == name))
        .unwrap_or(&Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_seen_from_one_region_only_is_regional_and_names_that_region() {
    let world = Regions::start().await;
    let config = world.config(2);
    let serve = world.serve(&config, free_port()).await;
    let addr = serve.addr;
    let _eu = world.agent(addr, "eu-west", &world.dns_bad);
    let mut us = world.agent(addr, "us-east", &world.dns_ok);

    let service = serve
        .wait_for("/api/services/acme", "acme regional in eu-west", |s| {
            s["scope"] == "regional" && failing_regions(s) == ["eu-west"]
        })
        .await;
    assert_eq!(service["state"], "outage", "{service}");
    let summary = service["summary"].as_str().unwrap_or_default();
    assert!(summary.contains("eu-west only"), "{summary}");
    assert!(summary.contains("this server and us-east"), "{summary}");

    let regions = serve
        .wait_for("/api/services/acme/regions", "us-east heard", |r| {
            region(r, "us-east")["state"] == "operational"
        })
        .await;
    assert_eq!(region(&regions, "local")["counted"], "passing", "{regions}");
    assert_eq!(
        region(&regions, "eu-west")["counted"],
        "failing",
        "{regions}"
    );
    assert_eq!(region(&regions, "eu-west")["state"], "outage", "{regions}");
    assert!(
        region(&regions, "eu-west")["last_contact"].is_string(),
        "{regions}"
    );
    assert_eq!(regions["scope"], "regional");

    // The dashboard's region matrix heads each column with how it was counted and its agent.
    let (status, page) = serve.get("/services/acme").await;
    assert_eq!(status, 200);
    assert!(page.contains("eu-west"), "{page}");
    assert!(page.contains("sees trouble"), "{page}");
    assert!(
        page.contains(&format!("agent {}", env!("CARGO_PKG_VERSION"))),
        "{page}"
    );
    assert!(page.contains("seen from eu-west only"), "{page}");

    let agents = serve.json("/api/v1/agents").await;
    let rows = agents["agents"].as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 2, "{agents}");
    assert!(
        rows.iter()
            .all(|a| a["state"] == "connected" && a["version"].is_string()),
        "{agents}"
    );

    // A silent agent's region becomes unknown after the grace period, never "up".
    us.kill();
    let regions = serve
        .wait_for("/api/services/acme/regions", "us-east silent", |r| {
            region(r, "us-east")["silent"] == true
        })
        .await;
    assert_eq!(region(&regions, "us-east")["state"], "unknown", "{regions}");
    assert_eq!(
        region(&regions, "us-east")["counted"],
        "not_counted",
        "{regions}"
    );
    let agents = serve.json("/api/v1/agents").await;
    assert!(
        agents["agents"].as_array().is_some_and(|a| a
            .iter()
            .any(|r| r["region"] == "us-east" && r["state"] == "silent")),
        "{agents}"
    );
    let metrics = serve.get("/metrics").await.1;
    assert!(
        metrics.contains("aiwatch_agent_connected{region=\"us-east\"} 0"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_from_a_quorum_of_regions_are_global() {
    let world = Regions::start().await;
    let config = world.config(2);
    let serve = world.serve(&config, free_port()).await;
    let addr = serve.addr;
    let _eu = world.agent(addr, "eu-west", &world.dns_bad);
    let _us = world.agent(addr, "us-east", &world.dns_bad);
    let service = serve
        .wait_for("/api/services/acme", "acme global", |s| {
            s["scope"] == "global" && failing_regions(s) == ["eu-west", "us-east"]
        })
        .await;
    assert_eq!(service["state"], "outage", "{service}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_or_another_region_makes_the_agent_exit_with_the_servers_reason() {
    let world = Regions::start().await;
    let config = world.config(2);
    let serve = world.serve(&config, free_port()).await;
    let run = |region: &str, token: &str| {
        common::aiwatch()
            .args(["agent", "--server"])
            .arg(format!("http://{}", serve.addr))
            .args(["--region", region, "--dns-server"])
            .arg(world.dns_ok.addr().to_string())
            .arg("--buffer")
            .arg(world.dir.path().join(format!("{region}-refused.db")))
            .env("AIWATCH_AGENT_TOKEN", token)
            .timeout(Duration::from_secs(30))
            .output()
            .expect("the agent runs")
    };
    let wrong = run("eu-west", "not-a-token-of-this-server-at-all");
    assert_eq!(wrong.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(stderr.contains("belongs to no [[agent]]"), "{stderr}");
    assert!(
        !stderr.contains("not-a-token-of-this"),
        "the token is never printed: {stderr}"
    );

    let elsewhere = run("ap-south", EU_TOKEN);
    assert_eq!(elsewhere.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&elsewhere.stderr);
    assert!(
        stderr.contains("for region `eu-west`, not `ap-south`"),
        "{stderr}"
    );
    assert!(!stderr.contains(EU_TOKEN), "{stderr}");
}

/// The agent's pending observations, by time, read from its buffer file.
fn pending_times(buffer: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(buffer).expect("open the agent buffer");
    let mut stmt = conn
        .prepare("SELECT body FROM pending ORDER BY seq")
        .expect("the buffer has its table");
    let rows = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .expect("read the buffer");
    rows.map(|body| {
        let obs: Value = serde_json::from_str(&body.expect("a row")).expect("an observation");
        obs["at"].as_str().unwrap_or_default().to_owned()
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_buffer_loses_and_duplicates_nothing_across_a_server_crash_and_a_kill_9() {
    let world = Regions::start().await;
    let config = world.config(2);
    let addr = free_port();
    let buffer = world.buffer("eu-west");
    let serve = world.serve(&config, addr).await;
    let mut agent = world.agent(addr, "eu-west", &world.dns_ok);
    serve
        .wait_for("/api/services/acme/regions", "eu-west heard", |r| {
            region(r, "eu-west")["state"] == "operational"
        })
        .await;

    // The server crashes; the agent keeps measuring into its buffer, then is killed too.
    serve.kill();
    // (Agents check at most every second.)
    tokio::time::sleep(Duration::from_secs(4)).await;
    agent.kill();
    let pending = pending_times(&buffer);
    assert!(
        pending.len() >= 3,
        "observations made while the server was down wait in the buffer: {}",
        pending.len()
    );

    // Both come back; the agent delivers what it kept, in order, once.
    let serve = world.serve(&config, addr).await;
    let mut agent = world.agent(addr, "eu-west", &world.dns_ok);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let waiting = pending_times(&buffer);
        if !waiting.iter().any(|t| pending.contains(t)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the buffer was not delivered: {} of {} still pending",
            waiting.len(),
            pending.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    agent.kill();
    serve.kill();

    let store = aiwatch_store::SqliteStore::open(&world.dir.path().join("server.db"))
        .expect("open the server's database");
    let stored = aiwatch_store::Store::observations(
        &store,
        &aiwatch_store::Selector::service(
            aiwatch_core::ServiceName::parse("acme").expect("a name"),
        )
        .region("eu-west"),
        aiwatch_store::TimeRange::new(
            chrono::Utc::now() - chrono::Duration::hours(1),
            chrono::Utc::now() + chrono::Duration::hours(1),
        ),
        100_000,
    )
    .expect("read the observations");
    // The store keeps milliseconds.
    let stored_ms: Vec<i64> = stored.iter().map(|o| o.at.timestamp_millis()).collect();
    let distinct: HashSet<i64> = stored_ms.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        stored_ms.len(),
        "no observation is stored twice"
    );
    for raw in &pending {
        let at = chrono::DateTime::parse_from_rfc3339(raw)
            .expect("a time")
            .timestamp_millis();
        assert!(
            distinct.contains(&at),
            "the buffered observation at {raw} reached the server"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_with_a_server_says_its_you_when_every_other_vantage_point_sees_it_work() {
    let world = Regions::start().await;
    let config = world.config(2);
    let serve = world.serve(&config, free_port()).await;
    let _us = world.agent(serve.addr, "us-east", &world.dns_ok);
    serve
        .wait_for("/api/services/acme/regions", "us-east heard", |r| {
            region(r, "us-east")["state"] == "operational"
                && region(r, "local")["state"] == "operational"
        })
        .await;
    // From here, this machine's DNS sends the service to the failing fake.
    let output = common::aiwatch()
        .arg("--config")
        .arg(&config)
        .args(["check", "acme", "--no-control", "--server"])
        .arg(format!("http://{}", serve.addr))
        .arg("--dns-server")
        .arg(world.dns_bad.addr().to_string())
        .timeout(Duration::from_secs(30))
        .output()
        .expect("check runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(2),
        "the local verdict still decides: {stdout}"
    );
    assert!(stdout.contains("Elsewhere"), "{stdout}");
    assert!(
        stdout.contains("works from the server and us-east: the trouble is on your side"),
        "{stdout}"
    );
}
