//! `cargo xtask e2e`: the slow end-to-end suites. Installs what they need (Debian's prometheus
//! for promtool, chromium and chromium-driver), starts loopback fakes and a real `aiwatch serve`,
//! then checks /metrics with promtool and the dashboard in a real browser; the other suites
//! (alerts, install, contract, sdk, local-model, regions, postgres, container) run alone by
//! name.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aiwatch_testkit::{canned, summary_operational, World};
use anyhow::{bail, Context, Result};

/// A running `aiwatch serve` that is killed when dropped.
pub struct Serve {
    child: Child,
    pub base_url: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn run(args: &[&str]) -> Result<()> {
    let only = args.first().copied();
    // The gateway suites need neither the browser nor promtool nor `aiwatch serve`.
    if let Some(suite @ ("sdk" | "local-model")) = only {
        return crate::e2e_gateway::run(suite);
    }
    if only == Some("postgres") {
        return crate::postgres::e2e(&args[1..]);
    }
    if only == Some("install") {
        return install_from_path();
    }
    if only == Some("container") {
        return tokio::runtime::Runtime::new()?.block_on(crate::e2e_container::run_suite());
    }
    if only == Some("alerts") {
        let binary = build()?;
        return tokio::runtime::Runtime::new()?.block_on(webhook_signature(&binary));
    }
    if only == Some("regions") {
        let binary = build()?;
        return tokio::runtime::Runtime::new()?.block_on(crate::e2e_regions::run(&binary));
    }
    if only == Some("contract") {
        let binary = build()?;
        return tokio::runtime::Runtime::new()?
            .block_on(crate::e2e_contract::run(&binary, &args[1..]));
    }
    install(&["prometheus", "chromium", "chromium-driver"])?;
    let binary = build()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let world = world().await;
        let artifacts = PathBuf::from("artifacts/e2e");
        std::fs::create_dir_all(&artifacts)?;
        let serve = start_serve(&binary, &world)?;
        if only.is_none() || only == Some("promtool") {
            promtool(&serve.base_url, &artifacts)?;
        }
        if only.is_none() || only == Some("browser") {
            let api = &world.service("openai-api").server;
            crate::browser::run(&serve.base_url, &artifacts, || {
                api.route(
                    "GET",
                    "/v1/models",
                    canned::openai_error(500, "server_error", None, "boom"),
                );
            })
            .await?;
        }
        if only.is_none() {
            install_from_path()?;
            webhook_signature(&binary).await?;
            crate::e2e_contract::run(&binary, &[]).await?;
            crate::e2e_gateway::sdk(&binary).await?;
            crate::e2e_gateway::local_model(&binary).await?;
            crate::e2e_container::run_suite().await?;
        }
        println!(
            "e2e: all suites passed; artifacts in {}",
            artifacts.display()
        );
        Ok(())
    })
}

/// The webhook's `X-Aiwatch-Signature` verifies with an independent HMAC implementation:
/// Python's `hmac` module over the raw body bytes the receiver got from `aiwatch alert test`.
async fn webhook_signature(binary: &Path) -> Result<()> {
    let world = World::start().await;
    let hook = world.receiver("hooks.example.test").await;
    hook.route("POST", "/hook", aiwatch_testkit::Reply::empty(204));
    let config = world.dir().join("alerts.toml");
    std::fs::write(
        &config,
        format!(
            "[[alert]]\nname = \"ops\"\nkind = \"webhook\"\nurl = \"{}/hook\"\nsecret_env = \"E2E_HOOK_SECRET\"\nca_file = \"{}\"\n",
            hook.url("hooks.example.test"),
            world.public_ca_path().display()
        ),
    )?;
    let secret = "e2e shared secret ✓";
    let status = tokio::process::Command::new(binary)
        .arg("--config")
        .arg(&config)
        .args(["alert", "test", "ops", "--dns-server"])
        .arg(world.dns.addr().to_string())
        .env("E2E_HOOK_SECRET", secret)
        .status()
        .await?;
    if !status.success() {
        bail!("aiwatch alert test failed: {status}");
    }
    let seen = hook.requests();
    let request = seen.first().context("the webhook received nothing")?;
    let signature = request
        .header("x-aiwatch-signature")
        .context("no X-Aiwatch-Signature header")?;
    let body = world.dir().join("body.json");
    std::fs::write(&body, &request.body)?;
    let verify = "import hashlib, hmac, sys\nbody = open(sys.argv[1], 'rb').read()\nwant = 'sha256=' + hmac.new(sys.argv[2].encode(), body, hashlib.sha256).hexdigest()\nsys.exit(0 if hmac.compare_digest(want, sys.argv[3]) else 1)\n";
    let checked = Command::new("python3")
        .args(["-c", verify])
        .arg(&body)
        .arg(secret)
        .arg(signature)
        .status()
        .context("python3")?;
    if !checked.success() {
        bail!("Python's hmac does not verify the webhook signature {signature}");
    }
    println!("e2e alerts: the webhook signature verifies with Python's hmac");
    Ok(())
}

/// `cargo install --locked --path crates/aiwatch` into a throwaway root works, and the
/// installed binary runs (`--version`, `init --print`).
fn install_from_path() -> Result<()> {
    let root = tempfile::tempdir()?;
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["install", "--locked", "--path", "crates/aiwatch", "--root"])
        .arg(root.path())
        .status()
        .context("cargo install")?;
    if !status.success() {
        bail!("cargo install --locked --path crates/aiwatch failed");
    }
    let binary = root.path().join("bin").join("aiwatch");
    let version = Command::new(&binary).arg("--version").output()?;
    if !version.status.success()
        || !String::from_utf8_lossy(&version.stdout).starts_with("aiwatch ")
    {
        bail!("the installed aiwatch does not run");
    }
    let home = tempfile::tempdir()?;
    let init = Command::new(&binary)
        .args(["init", "--print"])
        .env("XDG_CONFIG_HOME", home.path())
        .output()?;
    if !init.status.success() {
        bail!(
            "aiwatch init --print failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
    }
    println!(
        "e2e install: cargo install --path works; {}",
        String::from_utf8_lossy(&version.stdout).trim()
    );
    Ok(())
}

/// Installs Debian packages that are not there yet.
pub fn install(packages: &[&str]) -> Result<()> {
    install_debian(packages, false)
}

/// Installs Debian packages that are not there yet, with what they recommend (podman needs
/// its recommended network and runtime helpers).
pub fn install_with_recommends(packages: &[&str]) -> Result<()> {
    install_debian(packages, true)
}

fn install_debian(packages: &[&str], recommends: bool) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("e2e: installing {}", missing.join(" "));
    let apt = |args: &[&str]| -> Result<()> {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("apt-get")?;
        if !status.success() {
            bail!("apt-get {} failed", args.join(" "));
        }
        Ok(())
    };
    apt(&["update", "-qq"])?;
    let mut install = vec!["install", "-y", "-qq"];
    if !recommends {
        install.push("--no-install-recommends");
    }
    install.extend(&missing);
    apt(&install)
}

fn build() -> Result<PathBuf> {
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "-p", "aiwatch"])
        .status()?;
    if !status.success() {
        bail!("cargo build -p aiwatch failed");
    }
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    Ok(Path::new(&target).join("debug").join("aiwatch"))
}

/// Three services behind healthy fakes with green official pages.
pub(crate) async fn world() -> World {
    let mut world = World::start().await;
    let api = world.api("openai-api", "api.openai.test", "/v1").await;
    api.route("GET", "/v1/models", canned::openai_models());
    api.route("POST", "/v1/chat/completions", canned::openai_stream(true));
    let api = world
        .api("anthropic-api", "api.anthropic.test", "/v1")
        .await;
    api.route("GET", "/v1/models", canned::anthropic_models());
    world
        .web("chatgpt", "chatgpt.test")
        .await
        .route("GET", "/", canned::web_home());
    for (service, host) in [
        ("openai-api", "status.openai.test"),
        ("chatgpt", "status.openai.test"),
        ("anthropic-api", "status.anthropic.test"),
    ] {
        world
            .status_page(service, host)
            .await
            .set_summary(&summary_operational(&[
                "Chat Completions",
                "Conversations",
                "Claude API (api.anthropic.com)",
            ]));
    }
    world
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn start_serve(binary: &Path, world: &World) -> Result<Serve> {
    start_serve_with(binary, world, "")
}

/// [`start_serve`] with `extra` (e.g. `[[alert]]` tables) appended to the config.
pub(crate) fn start_serve_with(binary: &Path, world: &World, extra: &str) -> Result<Serve> {
    let config = world.config_toml().replacen(
        "[defaults]\n",
        "[defaults]\ninterval = \"1s\"\nfailures_to_open = 2\n",
        1,
    ) + extra;
    let config_path = world.dir().join("e2e.toml");
    std::fs::write(&config_path, config)?;
    let port = free_port()?;
    let child = Command::new(binary)
        .arg("--config")
        .arg(&config_path)
        .args([
            "serve",
            "openai-api",
            "anthropic-api",
            "chatgpt",
            "--listen",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--db")
        .arg(world.dir().join("e2e.db"))
        .arg("--dns-server")
        .arg(world.dns.addr().to_string())
        .arg("--ca-file")
        .arg(world.public_ca_path())
        .env("OPENAI_API_KEY", "sk-e2e")
        .env("ANTHROPIC_API_KEY", "sk-e2e")
        .env_remove("HTTPS_PROXY")
        .env_remove("HTTP_PROXY")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start aiwatch serve")?;
    let serve = Serve {
        child,
        base_url: format!("http://127.0.0.1:{port}"),
    };
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        if http_get(&serve.base_url, "/readyz").is_ok_and(|(status, _)| status == 200) {
            // Let a few checks run so every metric family has samples.
            std::thread::sleep(Duration::from_secs(3));
            return Ok(serve);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("aiwatch serve did not become ready in 20 s")
}

/// A minimal HTTP GET over loopback.
pub fn http_get(base_url: &str, path: &str) -> Result<(u16, String)> {
    use std::io::{Read, Write};
    let authority = base_url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(authority)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

fn promtool(base_url: &str, artifacts: &Path) -> Result<()> {
    let (status, body) = http_get(base_url, "/metrics")?;
    if status != 200 {
        bail!("/metrics answered {status}");
    }
    let body = dechunk(&body);
    let path = artifacts.join("metrics.txt");
    std::fs::write(&path, &body)?;
    let output = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&path)?)
        .output()
        .context("run promtool")?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() || !said.trim().is_empty() {
        bail!("promtool check metrics rejected /metrics:\n{said}");
    }
    println!(
        "e2e promtool: /metrics passes `promtool check metrics` ({} lines)",
        body.lines().count()
    );
    Ok(())
}

/// Undoes chunked transfer encoding when the server used it.
fn dechunk(body: &str) -> String {
    let looks_chunked = body
        .lines()
        .next()
        .is_some_and(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_hexdigit()));
    if !looks_chunked {
        return body.to_owned();
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}
