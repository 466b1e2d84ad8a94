//! `cargo xtask e2e regions`: rehearses a regional outage on one machine. Each agent runs in
//! its own network namespace (its own network stack and loopback), joined to this machine by a
//! veth pair on a private 10.213.0.0/16 link, with its own name answers (`/etc/netns/NS/hosts`,
//! which `ip netns exec` puts in place of `/etc/hosts`) and, where the kernel has it, `tc netem`
//! delay and loss on its link. The provider is two tiny HTTP servers on this machine's side of
//! the links: eu-west's names lead to one that answers 503, us-east's to a healthy one.
//!
//! Proves: eu-west failing alone → `regional` naming it; us-east sent to the failing one too →
//! `global`. Needs root and `ip` (iproute2); cleans up its namespaces, links and files even when
//! it fails.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aiwatch_testkit::{DnsAnswer, FakeDns};
use anyhow::{bail, Context, Result};

const EU_TOKEN: &str = "rehearsal-eu-west-token-0123456789";
const US_TOKEN: &str = "rehearsal-us-east-token-0123456789";

/// The provider: answers every GET with `status`.
const FAKE_PROVIDER: &str = r#"
import http.server, sys
status = int(sys.argv[3])
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"<html><body>acme</body></html>"
        self.send_response(status)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()
"#;

/// One region: a namespace, the veth pair to this machine, and its `/etc/netns` folder.
struct Region {
    name: &'static str,
    ns: String,
    /// This machine's address on the link (the agent reaches the server through it).
    host_ip: String,
}

impl Region {
    fn new(name: &'static str, index: u8) -> Self {
        Self {
            name,
            ns: format!("aiw-{name}"),
            host_ip: format!("10.213.{index}.1"),
        }
    }

    fn host_dev(&self) -> String {
        format!("{}-h", self.ns)
    }

    fn up(&self, index: u8) -> Result<()> {
        let ns = &self.ns;
        let host = self.host_dev();
        let peer = format!("{ns}-n");
        ip(&["netns", "add", ns])?;
        ip(&["link", "add", &host, "type", "veth", "peer", "name", &peer])?;
        ip(&["link", "set", &peer, "netns", ns])?;
        ip(&["addr", "add", &format!("{}/30", self.host_ip), "dev", &host])?;
        ip(&["link", "set", &host, "up"])?;
        let inside = |args: &[&str]| -> Result<()> {
            let mut all = vec!["netns", "exec", ns, "ip"];
            all.extend_from_slice(args);
            ip(&all)
        };
        inside(&["addr", "add", &format!("10.213.{index}.2/30"), "dev", &peer])?;
        inside(&["link", "set", &peer, "up"])?;
        inside(&["link", "set", "lo", "up"])?;
        inside(&["route", "add", "default", "via", &self.host_ip])?;
        Ok(())
    }

    /// The names this region's resolver answers.
    fn hosts(&self, acme: &str, control: &str) -> Result<()> {
        let dir = PathBuf::from("/etc/netns").join(&self.ns);
        std::fs::create_dir_all(&dir)?;
        // Each name also gets an IPv6 address of the discard-only prefix (RFC 6666): with both
        // families in the hosts file, the resolver asks no name server (one this namespace
        // cannot reach would make every lookup wait), and the IPv6 attempt fails at once.
        let names = if acme == control {
            format!("{acme} acme.test control.test\n100::1 acme.test control.test\n")
        } else {
            format!("{acme} acme.test\n{control} control.test\n100::1 acme.test control.test\n")
        };
        std::fs::write(dir.join("hosts"), format!("127.0.0.1 localhost\n{names}"))?;
        // No other name server: a name the hosts file lacks fails at once instead of waiting
        // for a resolver this namespace cannot reach.
        std::fs::write(dir.join("resolv.conf"), "nameserver 127.0.0.1\n")?;
        Ok(())
    }

    /// Delay and loss on the link where the kernel has netem; says so where it has not.
    fn impair(&self, delay: &str, loss: &str) {
        let out = Command::new("tc")
            .args([
                "qdisc",
                "add",
                "dev",
                &self.host_dev(),
                "root",
                "netem",
                "delay",
                delay,
                "loss",
                loss,
            ])
            .output();
        match out {
            Ok(o) if o.status.success() => {
                println!("e2e regions: {}: tc netem delay {delay} loss {loss}", self.name)
            }
            Ok(o) => println!(
                "e2e regions: {}: tc netem is not available here ({}); rehearsing without added delay",
                self.name,
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => println!("e2e regions: tc cannot run ({e}); rehearsing without added delay"),
        }
    }

    fn down(&self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.ns])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_dev()])
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(PathBuf::from("/etc/netns").join(&self.ns));
    }
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("cannot run `ip`")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Everything started, stopped and removed when dropped.
struct Rehearsal {
    regions: Vec<Region>,
    children: Vec<Child>,
}

impl Drop for Rehearsal {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for region in &self.regions {
            region.down();
        }
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn agent(binary: &Path, region: &Region, server: &str, token: &str, dir: &Path) -> Result<Child> {
    Command::new("ip")
        .args(["netns", "exec", &region.ns])
        .arg(binary)
        .args([
            "agent",
            "--server",
            server,
            "--region",
            region.name,
            "--buffer",
        ])
        .arg(dir.join(format!("{}.db", region.name)))
        .env("AIWATCH_AGENT_TOKEN", token)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start the {} agent", region.name))
}

pub async fn run(binary: &Path) -> Result<()> {
    if Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout != b"0\n")
        .unwrap_or(true)
    {
        bail!("e2e regions needs root (network namespaces); run it as root or skip this suite");
    }
    // Where namespaces cannot be made (a container without CAP_NET_ADMIN, say), say so and skip.
    let _ = Command::new("ip")
        .args(["netns", "del", "aiw-probe"])
        .stderr(Stdio::null())
        .status();
    match Command::new("ip")
        .args(["netns", "add", "aiw-probe"])
        .output()
    {
        Ok(o) if o.status.success() => {
            let _ = Command::new("ip")
                .args(["netns", "del", "aiw-probe"])
                .status();
        }
        Ok(o) => {
            println!(
                "e2e regions: skipped: this machine cannot create network namespaces ({})",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            return Ok(());
        }
        Err(e) => {
            println!("e2e regions: skipped: `ip` cannot run ({e}); install iproute2");
            return Ok(());
        }
    }
    // Namespaces left by an interrupted run.
    let eu = Region::new("eu-west", 1);
    let us = Region::new("us-east", 2);
    eu.down();
    us.down();
    let mut rehearsal = Rehearsal {
        regions: Vec::new(),
        children: Vec::new(),
    };
    for (region, index) in [(eu, 1u8), (us, 2u8)] {
        rehearsal.regions.push(region);
        rehearsal.regions[usize::from(index - 1)].up(index)?;
    }
    let (eu, us) = (&rehearsal.regions[0], &rehearsal.regions[1]);
    eu.impair("80ms", "1%");
    us.impair("20ms", "0%");
    let provider_port = free_port()?;
    for (addr, status) in [(&eu.host_ip, "503"), (&us.host_ip, "200")] {
        rehearsal.children.push(
            Command::new("python3")
                .args([
                    "-c",
                    FAKE_PROVIDER,
                    addr,
                    &provider_port.to_string(),
                    status,
                ])
                .spawn()
                .context("python3 runs the fake provider")?,
        );
    }
    eu.hosts(&eu.host_ip, &us.host_ip)?;
    us.hosts(&us.host_ip, &us.host_ip)?;

    // The server on this machine: its own resolver sends the service to the healthy side.
    let dns = FakeDns::start().await;
    let healthy: std::net::IpAddr = us.host_ip.parse()?;
    dns.set("acme.test", DnsAnswer::Addresses(vec![healthy]));
    dns.set("control.test", DnsAnswer::Addresses(vec![healthy]));
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("aiwatch.toml");
    std::fs::write(
        &config,
        format!(
            "[defaults]\ninterval = \"1s\"\ntimeout = \"3s\"\nfailures_to_open = 2\nstream_interval = \"off\"\ncontrol_url = \"http://control.test:{provider_port}/generate_204\"\n\n[server]\nquorum = 2\nagent_grace = \"10s\"\n\n[[service]]\nname = \"acme\"\nkind = \"http\"\nweb_url = \"http://acme.test:{provider_port}/\"\n\n[[agent]]\nregion = \"eu-west\"\ntoken_env = \"EU_TOKEN\"\n\n[[agent]]\nregion = \"us-east\"\ntoken_env = \"US_TOKEN\"\n"
        ),
    )?;
    let port = free_port()?;
    rehearsal.children.push(
        Command::new(binary)
            .arg("--config")
            .arg(&config)
            .args(["serve", "acme", "--listen"])
            .arg(format!("0.0.0.0:{port}"))
            .arg("--db")
            .arg(dir.path().join("server.db"))
            .arg("--dns-server")
            .arg(dns.addr().to_string())
            .env("EU_TOKEN", EU_TOKEN)
            .env("US_TOKEN", US_TOKEN)
            .env("RUST_LOG", "warn")
            .stderr(Stdio::null())
            .spawn()
            .context("aiwatch serve starts")?,
    );
    let api = format!("127.0.0.1:{port}");
    for region in [eu, us] {
        let server = format!("http://{}:{port}", region.host_ip);
        let token = if region.name == "eu-west" {
            EU_TOKEN
        } else {
            US_TOKEN
        };
        let child = agent(binary, region, &server, token, dir.path())?;
        rehearsal.children.push(child);
    }

    let service = wait_for(&api, "eu-west failing alone → regional", |s| {
        s["scope"] == "regional" && s["failing_regions"] == serde_json::json!(["eu-west"])
    })
    .await?;
    println!(
        "e2e regions: {}",
        service["summary"].as_str().unwrap_or_default()
    );

    // us-east's names now lead to the failing side too: two regions of three reach the quorum.
    us.hosts(&eu.host_ip, &us.host_ip)?;
    let server = format!("http://{}:{port}", us.host_ip);
    if let Some(mut old) = rehearsal.children.pop() {
        let _ = old.kill();
        let _ = old.wait();
    }
    rehearsal
        .children
        .push(agent(binary, us, &server, US_TOKEN, dir.path())?);
    let service = wait_for(&api, "eu-west and us-east failing → global", |s| {
        s["scope"] == "global" && s["failing_regions"] == serde_json::json!(["eu-west", "us-east"])
    })
    .await?;
    println!(
        "e2e regions: {}",
        service["summary"].as_str().unwrap_or_default()
    );
    println!("e2e regions: passed (regional, then global at the quorum)");
    Ok(())
}

/// Polls `/api/services/acme` until `check` holds (60 s at most).
async fn wait_for(
    api: &str,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> Result<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = serde_json::Value::Null;
    while Instant::now() < deadline {
        let base = format!("http://{api}");
        let answer =
            tokio::task::spawn_blocking(move || crate::e2e::http_get(&base, "/api/services/acme"))
                .await?;
        if let Ok((200, body)) = answer {
            last = serde_json::from_str(&body).unwrap_or_default();
            if check(&last) {
                return Ok(last);
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    bail!("e2e regions: not seen within 60 s: {what}; last answer: {last}")
}
