//! `cargo xtask bench gateway`: what a request pays for going through `aiwatch gateway`, side by
//! side in one run against the same loopback mock upstream: direct, nginx as a plain reverse
//! proxy (the floor), aiwatch gateway, and the peers users would otherwise pick (LiteLLM proxy and
//! the Portkey gateway, installed here). Then the failover scenario: the primary upstream is
//! killed in the middle of a 30 s run and restarted, and a Rust load generator records which
//! upstream answered every request.
//!
//! The mock upstream is this same binary (`bench gateway mock --port P --name N`), a separate
//! process so it can be killed with -9 and so its CPU does not mix with the load generator's.
//! Every child runs in its own process group and is killed when its guard drops, or on Ctrl-C.

mod callgrind;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// The request every target gets: small, non-streamed, model alias "bench".
const CHAT_REQUEST: &str = r#"{"model":"bench","messages":[{"role":"system","content":"You are a terse assistant."},{"role":"user","content":"Say hello in five words."}],"max_tokens":16,"temperature":0}"#;
const WRK_SCRIPT: &str = include_str!("../bench/chat.lua");
const NGINX_CONF: &str = include_str!("../bench/nginx.conf");
const PORTKEY_PRELOAD: &str = include_str!("../bench/portkey-loopback.mjs");
/// The client key aiwatch gateway and LiteLLM (whose master keys must start with `sk-`) accept.
const GATEWAY_KEY: &str = "bench-gateway-key-0123456789";
const LITELLM_KEY: &str = "sk-bench-key";
/// How long one readiness or answer check may wait for its response.
const READY_TIMEOUT: Duration = Duration::from_secs(5);
const WARMUP: Duration = Duration::from_secs(2);
const FAILOVER_RUN: Duration = Duration::from_secs(30);
/// One connection's run in each head-to-head round, to the mock and through aiwatch.
const ONE_CONNECTION_ROUND: Duration = Duration::from_secs(2);
const KILL_AT: Duration = Duration::from_secs(10);
const RESTART_AT: Duration = Duration::from_secs(20);

struct Options {
    seconds: u64,
    connections: usize,
    skip_peers: bool,
    /// A binary to measure instead of building this tree's (an earlier build, to compare).
    binary: Option<PathBuf>,
    /// Alternating nginx / aiwatch runs after the first measurement of each (0: none).
    rounds: usize,
}

pub fn run(args: &[&str]) -> Result<()> {
    if let ["mock", rest @ ..] = args {
        return mock_main(rest);
    }
    if let ["callgrind", rest @ ..] = args {
        return callgrind::run(rest);
    }
    let options = parse_options(args)?;
    kill_children_on_ctrl_c();
    let root = workspace_root();
    let work = tempfile::Builder::new()
        .prefix("aiwatch-bench-gateway")
        .tempdir()?;
    let command = std::iter::once("cargo xtask bench gateway")
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    println!("bench gateway: installing tools (first time only) and building aiwatch (profile `measure`)");
    crate::e2e::install(&["wrk", "nginx"])?;
    let peers = if options.skip_peers {
        None
    } else {
        Some((install_litellm(), install_portkey()))
    };
    let aiwatch = match &options.binary {
        Some(path) => Ok(path.clone()),
        None => aiwatch_binary(),
    };
    build_mock();

    let mut report = Report::new(&command, &options);
    let mock = Proc::mock(work.path(), "primary", free_port()?)?;
    report.mock_pid = mock.pid();
    let mock_addr = mock.addr;
    let secondary_port = free_port()?;

    let direct = Ok(Target {
        addr: mock_addr,
        path: "/v1/chat/completions".into(),
        headers: vec![("Authorization".into(), "Bearer sk-bench".into())],
        proc: None,
    });
    report.measure(&options, "direct (mock)", &direct);
    let nginx = start_nginx(work.path(), mock_addr);
    report.measure(&options, "nginx (reverse proxy)", &nginx);
    let gateway = usable(&aiwatch)
        .and_then(|bin| start_aiwatch(bin, work.path(), mock_addr.port(), secondary_port));
    report.measure(&options, "aiwatch gateway", &gateway);
    if let (Ok(direct), Ok(nginx), Ok(gateway)) = (&direct, &nginx, &gateway) {
        report.head_to_head(&options, direct, nginx, gateway);
    }
    drop((nginx, gateway));
    match &peers {
        None => {
            report.skipped("LiteLLM proxy", "--skip-peers");
            report.skipped("Portkey gateway", "--skip-peers");
        }
        Some((litellm, portkey)) => {
            let target =
                usable(litellm).and_then(|l| start_litellm(l, work.path(), mock_addr.port(), None));
            report.measure(&options, "LiteLLM proxy", &target);
            let target =
                usable(portkey).and_then(|p| start_portkey(p, work.path(), mock_addr, None));
            report.measure(&options, "Portkey gateway", &target);
        }
    }
    drop(mock);

    println!(
        "\nfailover: {} s at {} connections; primary killed (-9) at {} s, restarted at {} s",
        FAILOVER_RUN.as_secs(),
        options.connections,
        KILL_AT.as_secs(),
        RESTART_AT.as_secs()
    );
    let dir = work.path();
    let result = usable(&aiwatch).and_then(|bin| {
        let (p1, p2) = (free_port()?, free_port()?);
        failover(&options, dir, p1, p2, || start_aiwatch(bin, dir, p1, p2))
    });
    report.failover("aiwatch gateway", result);
    if let Some((litellm, portkey)) = &peers {
        let result = usable(litellm).and_then(|litellm| {
            let (p1, p2) = (free_port()?, free_port()?);
            failover(&options, dir, p1, p2, || {
                start_litellm(litellm, dir, p1, Some(p2))
            })
        });
        report.failover("LiteLLM proxy (router fallbacks)", result);
        let result = usable(portkey).and_then(|portkey| {
            let (p1, p2) = (free_port()?, free_port()?);
            failover(&options, dir, p1, p2, || {
                start_portkey(portkey, dir, loopback(p1), Some(p2))
            })
        });
        report.failover("Portkey gateway (fallback config)", result);
    }

    report.versions = versions(peers.as_ref(), aiwatch.as_ref().ok());
    let text = report.markdown();
    println!("\n{text}");
    let dir = root.join("artifacts/bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("gateway.md");
    std::fs::write(&path, format!("{text}\n{}", report.raw_markdown()))?;
    println!("written to {}", path.display());
    Ok(())
}

/// A tool that installed or built, or why not (kept for every target that needs it).
fn usable<T>(tool: &Result<T>) -> Result<&T> {
    tool.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))
}

fn parse_options(args: &[&str]) -> Result<Options> {
    let mut options = Options {
        seconds: 15,
        connections: 32,
        skip_peers: false,
        binary: None,
        rounds: 16,
    };
    let mut rest = args;
    loop {
        rest = match rest {
            [] => return Ok(options),
            ["--seconds", n, more @ ..] => {
                options.seconds = n.parse().context("--seconds takes a number")?;
                more
            }
            ["--connections", n, more @ ..] => {
                options.connections = n.parse().context("--connections takes a number")?;
                more
            }
            ["--skip-peers", more @ ..] => {
                options.skip_peers = true;
                more
            }
            ["--binary", path, more @ ..] => {
                options.binary = Some(PathBuf::from(path));
                more
            }
            ["--rounds", n, more @ ..] => {
                options.rounds = n.parse().context("--rounds takes a number")?;
                more
            }
            _ => bail!(
                "usage: cargo xtask bench gateway [--seconds N] [--connections C] [--rounds R] [--skip-peers] [--binary PATH]"
            ),
        };
        if options.seconds == 0 || options.connections == 0 {
            bail!("--seconds and --connections must be at least 1");
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn cache_dir() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    home.join(".cache/aiwatch")
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

// === child processes ===

/// The binary that runs the mock: this xtask built with optimizations, so the mock stays cheap
/// next to the proxies (a debug build costs the mock about twice the CPU per request).
static MOCK_EXE: OnceLock<PathBuf> = OnceLock::new();

fn build_mock() {
    let current = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("xtask"));
    let in_debug = current
        .parent()
        .is_some_and(|d| d.file_name().is_some_and(|n| n == "debug"));
    let mut exe = current.clone();
    if in_debug {
        let built = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--release", "-p", "xtask", "--bin", "xtask"])
            .status()
            .is_ok_and(|s| s.success());
        let release = current
            .parent()
            .and_then(Path::parent)
            .map(|t| t.join("release/xtask"));
        match release {
            Some(release) if built && release.is_file() => exe = release,
            _ => {
                println!("bench gateway: release build of xtask failed; the mock runs unoptimized")
            }
        }
    }
    let _ = MOCK_EXE.set(exe);
}

/// Process groups of the children alive now, for the Ctrl-C handler.
static GROUPS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
}

fn kill_children_on_ctrl_c() {
    std::thread::spawn(|| {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        if runtime.block_on(tokio::signal::ctrl_c()).is_ok() {
            for pgid in GROUPS.lock().map(|g| g.clone()).unwrap_or_default() {
                kill_group(pgid);
            }
            std::process::exit(130);
        }
    });
}

/// A child process in its own process group (so nginx's workers and any helper a peer forks go
/// with it), killed with the whole group when dropped.
struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
    addr: SocketAddr,
}

impl Proc {
    fn spawn(name: &str, command: &mut Command, log: PathBuf, addr: SocketAddr) -> Result<Self> {
        let out = std::fs::File::create(&log)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0)
            .spawn()
            .with_context(|| format!("start {name}"))?;
        if let Ok(mut groups) = GROUPS.lock() {
            groups.push(child.id());
        }
        Ok(Self {
            name: name.to_owned(),
            child,
            log,
            addr,
        })
    }

    /// The mock upstream on `port`, answering once it serves `GET /v1/models`.
    fn mock(dir: &Path, name: &str, port: u16) -> Result<Self> {
        let exe = match MOCK_EXE.get() {
            Some(exe) => exe.clone(),
            None => std::env::current_exe()?,
        };
        let mut command = Command::new(exe);
        command.args([
            "bench",
            "gateway",
            "mock",
            "--port",
            &port.to_string(),
            "--name",
            name,
        ]);
        let mut proc = Self::spawn(
            &format!("mock {name}"),
            &mut command,
            dir.join(format!("mock-{name}-{port}.log")),
            loopback(port),
        )?;
        proc.wait_ready(Duration::from_secs(10), |addr| {
            let response = http_request(addr, "GET", "/v1/models", &[], "", READY_TIMEOUT)?;
            (response.status == 200).then_some(()).context("not 200")
        })?;
        Ok(proc)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls `ready` until it passes; fails early when the process exits.
    fn wait_ready(
        &mut self,
        budget: Duration,
        ready: impl Fn(SocketAddr) -> Result<()>,
    ) -> Result<Duration> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("{} exited ({status}): {}", self.name, self.log_tail());
            }
            let last = match ready(self.addr) {
                Ok(()) => return Ok(started.elapsed()),
                Err(e) => format!("{e:#}"),
            };
            if started.elapsed() > budget {
                bail!(
                    "{} not ready after {} s ({last}): {}",
                    self.name,
                    budget.as_secs(),
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = lines[lines.len().saturating_sub(6)..].join(" | ");
        if tail.is_empty() {
            format!("(nothing in {})", self.log.display())
        } else {
            tail.chars().take(800).collect()
        }
    }

    fn kill(&mut self) {
        kill_group(self.child.id());
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Ok(mut groups) = GROUPS.lock() {
            groups.retain(|g| *g != self.child.id());
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The processes of a group as `/proc/PID/stat` fields after the command name.
fn group_stats(pgid: u32) -> Vec<(u32, Vec<String>)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let after = stat.rsplit_once(')')?.1;
            let fields: Vec<String> = after.split_whitespace().map(str::to_owned).collect();
            (fields.get(2)?.parse::<u32>().ok()? == pgid).then_some((pid, fields))
        })
        .collect()
}

/// User plus system CPU seconds of every process in the group.
fn group_cpu_seconds(pgid: u32) -> f64 {
    group_stats(pgid)
        .iter()
        .map(|(_, f)| {
            let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            (tick(11) + tick(12)) / 100.0
        })
        .sum()
}

/// Peak resident memory (VmHWM) summed over the group's processes, in MB.
fn group_peak_rss_mb(pgid: u32) -> (f64, usize) {
    let stats = group_stats(pgid);
    let kb: f64 = stats
        .iter()
        .filter_map(|(pid, _)| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<f64>()
                .ok()
        })
        .sum();
    (kb / 1024.0, stats.len())
}

// === minimal blocking HTTP client, for readiness and answer checks ===

struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &str,
    timeout: Duration,
) -> Result<RawResponse> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(timeout))?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    for (name, value) in headers {
        let _ = write!(request, "{name}: {value}\r\n");
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").context("no HTTP head")?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .context("no status line")?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(RawResponse {
        status,
        headers,
        body: body.to_owned(),
    })
}

// === targets ===

struct Target {
    addr: SocketAddr,
    path: String,
    headers: Vec<(String, String)>,
    /// The proxy process; `None` for the mock itself.
    proc: Option<Proc>,
}

impl Target {
    /// One chat request through the target; the answer must be the mock's completion.
    fn check(&self) -> Result<RawResponse> {
        check_chat(self.addr, &self.path, &self.headers)
    }
}

fn check_chat(addr: SocketAddr, path: &str, headers: &[(String, String)]) -> Result<RawResponse> {
    let response = http_request(addr, "POST", path, headers, CHAT_REQUEST, READY_TIMEOUT)?;
    if response.status != 200 || !response.body.contains("chatcmpl-bench-") {
        bail!(
            "answered {}: {}",
            response.status,
            response.body.chars().take(300).collect::<String>()
        );
    }
    Ok(response)
}

/// Starts `proc` and waits until a chat request through it comes back from the mock.
fn ready_target(
    name: &str,
    mut proc: Proc,
    path: &str,
    headers: Vec<(String, String)>,
    budget: Duration,
) -> Result<Target> {
    let took = proc.wait_ready(budget, |addr| check_chat(addr, path, &headers).map(|_| ()))?;
    println!("  {name} ready after {:.1} s", took.as_secs_f64());
    Ok(Target {
        addr: proc.addr,
        path: path.to_owned(),
        headers,
        proc: Some(proc),
    })
}

fn start_nginx(dir: &Path, mock: SocketAddr) -> Result<Target> {
    let dir = dir.join(format!("nginx-{}", mock.port()));
    std::fs::create_dir_all(&dir)?;
    let port = free_port()?;
    let conf = NGINX_CONF
        .replace("{{DIR}}", &dir.display().to_string())
        .replace("{{LISTEN}}", &format!("127.0.0.1:{port}"))
        .replace("{{UPSTREAM}}", &mock.to_string());
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf)?;
    let mut command = Command::new("nginx");
    command
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(&conf_path)
        .arg("-e")
        .arg(dir.join("error.log"));
    let proc = Proc::spawn(
        "nginx",
        &mut command,
        dir.join("stdout.log"),
        loopback(port),
    )?;
    ready_target(
        "nginx (reverse proxy)",
        proc,
        "/v1/chat/completions",
        vec![("Authorization".into(), "Bearer sk-bench".into())],
        Duration::from_secs(10),
    )
}

/// The `measure` binary (dist code generation with line tables), if it builds and has the
/// `gateway` subcommand.
fn aiwatch_binary() -> Result<PathBuf> {
    // The shipped code generation (see `[profile.measure]`), in its own directory so no other
    // build replaces the binary mid-run.
    let binary = crate::bench_check::build_profile("measure")?;
    let help = Command::new(&binary)
        .args(["gateway", "--help"])
        .output()
        .context("run aiwatch gateway --help")?;
    if !help.status.success() {
        bail!("this aiwatch has no `gateway` subcommand yet");
    }
    Ok(binary)
}

fn start_aiwatch(binary: &Path, dir: &Path, primary: u16, secondary: u16) -> Result<Target> {
    start_aiwatch_under(
        &[],
        binary,
        dir,
        primary,
        secondary,
        Duration::from_secs(20),
    )
}

/// `aiwatch gateway` on the two mock ports, run by `wrapper` (valgrind, say) when it is not
/// empty, ready once a chat request through it comes back within `budget`.
fn start_aiwatch_under(
    wrapper: &[String],
    binary: &Path,
    dir: &Path,
    primary: u16,
    secondary: u16,
    budget: Duration,
) -> Result<Target> {
    let config = format!(
        r#"[[service]]
name = "mock-primary"
kind = "openai"
api_base = "http://127.0.0.1:{primary}/v1"
api_key_env = "MOCK_KEY"

[[service]]
name = "mock-secondary"
kind = "openai"
api_base = "http://127.0.0.1:{secondary}/v1"
api_key_env = "MOCK_KEY"

[gateway]
client_keys_env = "AIWATCH_GATEWAY_KEYS"
canary_interval = "1s"
ramp = [10, 50, 100]
ramp_step = "2s"
failures_to_trip = 3

[[route]]
model = "bench"
upstreams = ["mock-primary:gpt-4o-mini", "mock-secondary:gpt-4o-mini"]
"#
    );
    let path = dir.join(format!("aiwatch-{primary}.toml"));
    std::fs::write(&path, config)?;
    let port = free_port()?;
    let mut command = match wrapper {
        [] => Command::new(binary),
        [program, args @ ..] => {
            let mut command = Command::new(program);
            command.args(args).arg(binary);
            command
        }
    };
    command
        .args(["gateway", "--config"])
        .arg(&path)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .env("AIWATCH_GATEWAY_KEYS", GATEWAY_KEY)
        .env("MOCK_KEY", "sk-mock")
        .env("RUST_LOG", "warn")
        .env_remove("HTTPS_PROXY")
        .env_remove("HTTP_PROXY");
    let proc = Proc::spawn(
        "aiwatch gateway",
        &mut command,
        dir.join(format!("aiwatch-{primary}.log")),
        loopback(port),
    )?;
    let target = ready_target(
        "aiwatch gateway",
        proc,
        "/v1/chat/completions",
        vec![("Authorization".into(), format!("Bearer {GATEWAY_KEY}"))],
        budget,
    )?;
    let upstream = target.check()?;
    if upstream.header("x-aiwatch-upstream").is_none() {
        println!("  note: aiwatch gateway's answer has no x-aiwatch-upstream header");
    }
    Ok(target)
}

struct Litellm {
    bin: PathBuf,
}

fn install_litellm() -> Result<Litellm> {
    let venv = cache_dir().join("bench-venv");
    let bin = venv.join("bin/litellm");
    let python = venv.join("bin/python");
    let importable = || {
        Command::new(&python)
            .args(["-c", "import litellm.proxy.proxy_server"])
            .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if bin.is_file() && importable() {
        return Ok(Litellm { bin });
    }
    println!(
        "bench gateway: installing litellm[proxy] into {}",
        venv.display()
    );
    let run = |command: &mut Command, what: &str| -> Result<()> {
        let output = command.output().with_context(|| what.to_owned())?;
        if !output.status.success() {
            let said = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = said.lines().rev().take(3).collect();
            bail!("{what} failed: {}", tail.join(" | "));
        }
        Ok(())
    };
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        "python3 -m venv",
    )?;
    run(
        Command::new(venv.join("bin/pip")).args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "litellm[proxy]",
        ]),
        "pip install litellm[proxy]",
    )?;
    if !importable() {
        bail!("litellm[proxy] installed but `import litellm.proxy.proxy_server` fails");
    }
    Ok(Litellm { bin })
}

/// LiteLLM proxy with one model "bench" on the mock; with `fallback`, a second deployment on that
/// port and the router's fallbacks, as its docs set up failover.
fn start_litellm(
    litellm: &Litellm,
    dir: &Path,
    primary: u16,
    fallback: Option<u16>,
) -> Result<Target> {
    let deployment = |name: &str, port: u16| {
        format!(
            "  - model_name: {name}\n    litellm_params:\n      model: openai/gpt-4o-mini\n      api_base: http://127.0.0.1:{port}/v1\n      api_key: sk-mock\n"
        )
    };
    let mut config = format!("model_list:\n{}", deployment("bench", primary));
    if let Some(port) = fallback {
        config.push_str(&deployment("bench-secondary", port));
    }
    config.push_str(
        "litellm_settings:\n  telemetry: false\n  drop_params: true\n  num_retries: 0\n  request_timeout: 30\n",
    );
    if fallback.is_some() {
        config.push_str(
            "router_settings:\n  fallbacks: [{\"bench\": [\"bench-secondary\"]}]\n  allowed_fails: 1\n  cooldown_time: 5\n",
        );
    }
    let _ = writeln!(config, "general_settings:\n  master_key: {LITELLM_KEY}");
    let path = dir.join(format!("litellm-{primary}.yaml"));
    std::fs::write(&path, config)?;
    let port = free_port()?;
    let mut command = Command::new(&litellm.bin);
    command
        .arg("--config")
        .arg(&path)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        // One worker, the CLI's default: two double the throughput here (20-40 req/s) but take
        // three imports of LiteLLM to start (up to 3 min on a busy 2-core machine) and 1 GB.
        .args(["--num_workers", "1"])
        .args(["--telemetry", "False"])
        .current_dir(dir)
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        .env("PYTHONUNBUFFERED", "1")
        .env("LITELLM_LOG", "ERROR")
        .env("LITELLM_TELEMETRY", "False")
        .env("DISABLE_ADMIN_UI", "True")
        .env("NO_PROXY", "*")
        .env_remove("DATABASE_URL")
        .env_remove("HTTPS_PROXY")
        .env_remove("HTTP_PROXY");
    let proc = Proc::spawn(
        "LiteLLM proxy",
        &mut command,
        dir.join(format!("litellm-{primary}.log")),
        loopback(port),
    )?;
    ready_target(
        "LiteLLM proxy",
        proc,
        "/v1/chat/completions",
        vec![("Authorization".into(), format!("Bearer {LITELLM_KEY}"))],
        // Importing LiteLLM takes 15 s on an idle 2-core machine, a minute on a busy one.
        Duration::from_secs(180),
    )
}

struct Portkey {
    entry: PathBuf,
    preload: PathBuf,
}

fn install_portkey() -> Result<Portkey> {
    let prefix = cache_dir().join("bench-node");
    let entry = prefix.join("node_modules/@portkey-ai/gateway/build/start-server.js");
    if !entry.is_file() {
        println!(
            "bench gateway: installing @portkey-ai/gateway into {}",
            prefix.display()
        );
        std::fs::create_dir_all(&prefix)?;
        let output = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&prefix)
            .arg("@portkey-ai/gateway")
            .output()
            .context("npm install")?;
        if !output.status.success() || !entry.is_file() {
            let said = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = said.lines().rev().take(3).collect();
            bail!(
                "npm install @portkey-ai/gateway failed: {}",
                tail.join(" | ")
            );
        }
    }
    let preload = prefix.join("portkey-loopback.mjs");
    std::fs::write(&preload, PORTKEY_PRELOAD)?;
    Ok(Portkey { entry, preload })
}

/// The Portkey gateway with the OpenAI provider pointed at the mock by `x-portkey-custom-host`;
/// with `fallback`, a fallback config (`x-portkey-config`) whose second target is that port.
fn start_portkey(
    portkey: &Portkey,
    dir: &Path,
    mock: SocketAddr,
    fallback: Option<u16>,
) -> Result<Target> {
    let port = free_port()?;
    let mut command = Command::new("node");
    command
        .arg("--import")
        .arg(format!("file://{}", portkey.preload.display()))
        .arg(&portkey.entry)
        .arg(format!("--port={port}"))
        .arg("--headless")
        .current_dir(dir)
        .env("NODE_ENV", "production")
        .env_remove("HTTPS_PROXY")
        .env_remove("HTTP_PROXY");
    let proc = Proc::spawn(
        "Portkey gateway",
        &mut command,
        dir.join(format!("portkey-{}.log", mock.port())),
        loopback(port),
    )?;
    let headers = match fallback {
        None => vec![
            ("Authorization".into(), "Bearer sk-mock".into()),
            ("x-portkey-provider".into(), "openai".into()),
            ("x-portkey-custom-host".into(), format!("http://{mock}/v1")),
        ],
        Some(secondary) => {
            let target = |port: u16| {
                serde_json::json!({
                    "provider": "openai",
                    "api_key": "sk-mock",
                    "custom_host": format!("http://127.0.0.1:{port}/v1"),
                })
            };
            let config = serde_json::json!({
                "strategy": {"mode": "fallback"},
                "targets": [target(mock.port()), target(secondary)],
            });
            vec![("x-portkey-config".into(), config.to_string())]
        }
    };
    ready_target(
        "Portkey gateway",
        proc,
        "/v1/chat/completions",
        headers,
        Duration::from_secs(30),
    )
}

// === wrk ===

#[derive(Clone, Debug, Default)]
struct WrkRun {
    requests: f64,
    seconds: f64,
    errors: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
    line: String,
}

impl WrkRun {
    fn rps(&self) -> f64 {
        self.requests / self.seconds.max(1e-9)
    }
}

fn wrk(target: &Target, connections: usize, seconds: u64, script: &Path) -> Result<WrkRun> {
    let mut command = Command::new("wrk");
    command
        .arg(format!("-t{}", connections.min(2)))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{seconds}s"))
        .args(["--timeout", "10s", "-s"])
        .arg(script)
        .env("BENCH_BODY", CHAT_REQUEST);
    for (name, value) in &target.headers {
        command.arg("-H").arg(format!("{name}: {value}"));
    }
    command.arg(format!("http://{}{}", target.addr, target.path));
    let output = command.output().context("run wrk")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("BENCH "))
        .with_context(|| {
            format!(
                "wrk printed no result: {} {}",
                stdout.trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            )
        })?;
    let fields: BTreeMap<&str, f64> = line
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
        .collect();
    let get = |k: &str| fields.get(k).copied().unwrap_or(f64::NAN);
    Ok(WrkRun {
        requests: get("requests"),
        seconds: get("duration_us") / 1e6,
        errors: ["connect", "read", "write", "status", "timeout"]
            .iter()
            .map(|k| get(k))
            .sum(),
        p50_ms: get("p50_us") / 1e3,
        p90_ms: get("p90_us") / 1e3,
        p99_ms: get("p99_us") / 1e3,
        p999_ms: get("p999_us") / 1e3,
        max_ms: get("max_us") / 1e3,
        line: line.to_owned(),
    })
}

struct Measured {
    many: WrkRun,
    one: WrkRun,
    rss_mb: Option<(f64, usize)>,
    /// CPU seconds during the run at C connections: the proxy's, and the rest of the machine's.
    cpu_seconds: Option<f64>,
    cpu: CpuSplit,
}

impl Measured {
    /// The proxy's CPU microseconds per request at C connections.
    fn cpu_us_per_request(&self) -> Option<f64> {
        self.cpu_seconds
            .map(|c| c / self.many.requests.max(1.0) * 1e6)
    }
}

/// Where the machine's CPU went during a run, in seconds.
#[derive(Clone, Copy, Default)]
struct CpuSplit {
    mock: f64,
    wrk: f64,
    /// Everything else on the machine (other users' builds make numbers noisy).
    other: f64,
    available: f64,
}

/// Busy CPU seconds of the whole machine, from `/proc/stat`.
fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: all but idle and iowait.
    let busy: f64 = ticks
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, t)| t)
        .sum();
    busy / 100.0
}

/// CPU seconds of this process and of its children it has waited for (wrk, once it ended).
fn own_cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or_default();
    let f: Vec<f64> = after
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    let at = |i: usize| f.get(i).copied().unwrap_or(0.0) / 100.0;
    (at(11) + at(12), at(13) + at(14))
}

fn measure(target: &Target, options: &Options, script: &Path, mock: u32) -> Result<Measured> {
    wrk(target, options.connections, WARMUP.as_secs(), script)?;
    let pgid = target.proc.as_ref().map(Proc::pid);
    let snapshot = || {
        (
            pgid.map(group_cpu_seconds),
            group_cpu_seconds(mock),
            own_cpu_seconds(),
            machine_busy_seconds(),
            Instant::now(),
        )
    };
    let (cpu0, mock0, own0, busy0, t0) = snapshot();
    let many = wrk(target, options.connections, options.seconds, script)?;
    let (cpu1, mock1, own1, busy1, t1) = snapshot();
    let proxy = cpu0.zip(cpu1).map(|(a, b)| b - a);
    let cpus = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    let cpu = CpuSplit {
        mock: mock1 - mock0,
        wrk: own1.1 - own0.1,
        other: (busy1 - busy0)
            - proxy.unwrap_or(0.0)
            - (mock1 - mock0)
            - (own1.0 - own0.0)
            - (own1.1 - own0.1),
        available: (t1 - t0).as_secs_f64() * cpus,
    };
    let one = wrk(target, 1, one_connection_seconds(options), script)?;
    // The answer must still be the mock's after the load.
    target.check().context("after the load")?;
    Ok(Measured {
        many,
        one,
        rss_mb: pgid.map(group_peak_rss_mb),
        cpu_seconds: proxy,
        cpu,
    })
}

/// Runs `other` and `gateway` back to back, aiwatch first when `gateway_first`, and returns
/// their results in that fixed order: (other's, aiwatch's).
fn turn_about<T>(
    gateway_first: bool,
    other: impl FnOnce() -> Result<T>,
    gateway: impl FnOnce() -> Result<T>,
) -> Result<(T, T)> {
    if gateway_first {
        let g = gateway()?;
        Ok((other()?, g))
    } else {
        let o = other()?;
        Ok((o, gateway()?))
    }
}

/// The middle value (the lower middle one of an even count), if there is any.
fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut values: Vec<f64> = values.collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(quantile(&values, 0.5))
}

/// Each head-to-head run is short, so a pair's two halves are close in time.
fn round_seconds(options: &Options) -> u64 {
    options.seconds.min(5)
}

fn one_connection_seconds(options: &Options) -> u64 {
    (options.seconds / 3).max(5)
}

// === the mock upstream (a separate process) ===

fn mock_main(args: &[&str]) -> Result<()> {
    let (port, name) = match args {
        ["--port", port, "--name", name] => (port.parse::<u16>()?, (*name).to_owned()),
        _ => bail!("usage: cargo xtask bench gateway mock --port P --name NAME"),
    };
    // Leave with the benchmark, even when it was killed and could not clean up.
    let parent = std::os::unix::process::parent_id();
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(500));
        if std::os::unix::process::parent_id() != parent {
            std::process::exit(0);
        }
    });
    let completion = Bytes::from(mock_completion(&name));
    let models = Bytes::from_static(
        br#"{"object":"list","data":[{"id":"gpt-4o-mini","object":"model","created":1721172741,"owned_by":"system"}]}"#,
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = bind_with_retry(loopback(port)).await?;
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let (completion, models) = (completion.clone(), models.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    mock_answer(request, completion.clone(), models.clone())
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

/// A restarted mock binds the port its killed predecessor held.
async fn bind_with_retry(addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    let started = Instant::now();
    loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => return Ok(listener),
            Err(e) if started.elapsed() > Duration::from_secs(5) => {
                return Err(e).with_context(|| format!("bind {addr}"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// A realistic non-streamed chat.completion; the id names the mock so every client can tell
/// which upstream answered, whatever headers the proxy keeps.
fn mock_completion(name: &str) -> String {
    // In the order OpenAI writes the fields.
    format!(
        r#"{{"id":"chatcmpl-bench-{name}-AaWtestCompletion01","object":"chat.completion","created":1733000000,"model":"gpt-4o-mini-2024-07-18","choices":[{{"index":0,"message":{{"role":"assistant","content":"Hello there, how are you?","refusal":null,"annotations":[]}},"logprobs":null,"finish_reason":"stop"}}],"usage":{{"prompt_tokens":24,"completion_tokens":7,"total_tokens":31,"prompt_tokens_details":{{"cached_tokens":0,"audio_tokens":0}},"completion_tokens_details":{{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}},"service_tier":"default","system_fingerprint":"fp_0ba0d124f1"}}"#
    )
}

async fn mock_answer(
    request: hyper::Request<hyper::body::Incoming>,
    completion: Bytes,
    models: Bytes,
) -> Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
    let (parts, body) = request.into_parts();
    // Read the whole request, as a real upstream does.
    let _ = body.collect().await;
    let path = parts.uri.path();
    let (status, body) = match parts.method {
        hyper::Method::POST if path.ends_with("/chat/completions") => (200, completion),
        hyper::Method::GET if path.ends_with("/models") => (200, models),
        _ => (
            404,
            Bytes::from_static(
                br#"{"error":{"message":"Unknown request URL","type":"invalid_request_error","param":null,"code":"unknown_url"}}"#,
            ),
        ),
    };
    let response = hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-request-id", "req_bench0000000000000000000001")
        .header("openai-processing-ms", "1")
        .body(Full::new(body))
        .unwrap_or_default();
    Ok(response)
}

// === failover ===

#[derive(Clone, Copy, PartialEq, Eq)]
enum Upstream {
    Primary,
    Secondary,
    Unknown,
}

/// One request of the failover run; times in microseconds from the run's start.
#[derive(Clone, Copy)]
struct Sample {
    start: u64,
    latency: u64,
    /// 0: the request failed before a response (connect, reset, timeout).
    status: u16,
    upstream: Upstream,
    /// Attempts the proxy says it made (0 when it does not say).
    attempts: u32,
}

impl Sample {
    fn failed(&self) -> bool {
        self.status != 200
    }
    fn end(&self) -> u64 {
        self.start + self.latency
    }
}

struct FailoverRun {
    samples: Vec<Sample>,
    errors: Vec<String>,
    kill_at: f64,
    restart_at: f64,
    primary_listening_at: f64,
    header_mismatches: usize,
    peak_rss_mb: f64,
    cpu_seconds: f64,
    /// Whether the proxy still answered a chat request after the run (an error says why not).
    answers_after: Result<(), String>,
}

/// Two mocks, the proxy in front of them, C keep-alive workers for 30 s; the primary is killed at
/// 10 s and restarted on its port at 20 s.
fn failover(
    options: &Options,
    dir: &Path,
    primary_port: u16,
    secondary_port: u16,
    start: impl FnOnce() -> Result<Target>,
) -> Result<FailoverRun> {
    let mut primary = Proc::mock(dir, "primary", primary_port)?;
    let _secondary = Proc::mock(dir, "secondary", secondary_port)?;
    let target = start()?;
    let pgid = target.proc.as_ref().map(Proc::pid).unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let request = Arc::new(LoadRequest::new(&target)?);
    let cpu0 = group_cpu_seconds(pgid);
    let t0 = Instant::now();
    let deadline = t0 + FAILOVER_RUN;
    let workers: Vec<_> = (0..options.connections)
        .map(|_| runtime.spawn(load_worker(request.clone(), t0, deadline)))
        .collect();
    std::thread::sleep(KILL_AT.saturating_sub(t0.elapsed()));
    let kill_at = t0.elapsed().as_secs_f64();
    primary.kill();
    std::thread::sleep(RESTART_AT.saturating_sub(t0.elapsed()));
    let restart_at = t0.elapsed().as_secs_f64();
    primary = Proc::mock(dir, "primary", primary_port)?;
    let primary_listening_at = t0.elapsed().as_secs_f64();
    let mut samples = Vec::new();
    let mut errors = Vec::new();
    let mut header_mismatches = 0;
    for worker in workers {
        let done = runtime.block_on(worker)?;
        samples.extend(done.samples);
        header_mismatches += done.header_mismatches;
        for e in done.errors {
            if errors.len() < 20 {
                errors.push(e);
            }
        }
    }
    let cpu_seconds = group_cpu_seconds(pgid) - cpu0;
    let peak_rss_mb = group_peak_rss_mb(pgid).0;
    let answers_after = target.check().map(|_| ()).map_err(|e| format!("{e:#}"));
    drop(primary);
    samples.sort_by_key(|s| s.start);
    Ok(FailoverRun {
        samples,
        errors,
        kill_at,
        restart_at,
        primary_listening_at,
        header_mismatches,
        peak_rss_mb,
        cpu_seconds,
        answers_after,
    })
}

struct LoadRequest {
    addr: SocketAddr,
    path: String,
    headers: http::HeaderMap,
}

impl LoadRequest {
    fn new(target: &Target) -> Result<Self> {
        let mut headers = http::HeaderMap::new();
        let mut add = |name: &str, value: &str| -> Result<()> {
            headers.insert(
                http::HeaderName::from_bytes(name.as_bytes())?,
                http::HeaderValue::from_str(value)?,
            );
            Ok(())
        };
        add("host", &target.addr.to_string())?;
        add("content-type", "application/json")?;
        for (name, value) in &target.headers {
            add(name, value)?;
        }
        Ok(Self {
            addr: target.addr,
            path: target.path.clone(),
            headers,
        })
    }

    fn build(&self) -> Result<hyper::Request<Full<Bytes>>> {
        let mut request = hyper::Request::post(self.path.as_str())
            .body(Full::new(Bytes::from_static(CHAT_REQUEST.as_bytes())))?;
        *request.headers_mut() = self.headers.clone();
        Ok(request)
    }
}

#[derive(Default)]
struct WorkerResult {
    samples: Vec<Sample>,
    errors: Vec<String>,
    header_mismatches: usize,
}

async fn load_worker(request: Arc<LoadRequest>, t0: Instant, deadline: Instant) -> WorkerResult {
    let mut out = WorkerResult::default();
    let mut sender: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>> = None;
    let timeout = Duration::from_secs(10);
    while Instant::now() < deadline {
        let started = Instant::now();
        let start = started.duration_since(t0).as_micros() as u64;
        let fail = |out: &mut WorkerResult, what: String| {
            out.samples.push(Sample {
                start,
                latency: started.elapsed().as_micros() as u64,
                status: 0,
                upstream: Upstream::Unknown,
                attempts: 0,
            });
            if out.errors.len() < 20 {
                out.errors.push(format!(
                    "{:.3} s: {what}",
                    started.duration_since(t0).as_secs_f64()
                ));
            }
        };
        if sender.is_none() {
            match connect(request.addr, timeout).await {
                Ok(s) => sender = Some(s),
                Err(e) => {
                    fail(&mut out, format!("connect: {e:#}"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
        }
        let Some(send) = sender.as_mut() else {
            continue;
        };
        let Ok(req) = request.build() else {
            break;
        };
        let answer = tokio::time::timeout(timeout, async {
            let response = send.send_request(req).await?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, hyper::Error>((parts, body))
        })
        .await;
        match answer {
            Ok(Ok((parts, body))) => {
                let text = String::from_utf8_lossy(&body);
                let upstream = if text.contains("chatcmpl-bench-primary") {
                    Upstream::Primary
                } else if text.contains("chatcmpl-bench-secondary") {
                    Upstream::Secondary
                } else {
                    Upstream::Unknown
                };
                let header = |n: &str| {
                    parts
                        .headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                if let Some(said) = header("x-aiwatch-upstream") {
                    let expected = match upstream {
                        Upstream::Primary => "mock-primary",
                        Upstream::Secondary => "mock-secondary",
                        Upstream::Unknown => "?",
                    };
                    if !said.starts_with(expected) {
                        out.header_mismatches += 1;
                    }
                }
                let number = |n: &str| header(n).and_then(|v| v.parse::<u32>().ok());
                // Each proxy says in its own words how many upstreams it tried.
                let portkey_target = header("x-portkey-last-used-option-index")
                    .and_then(|v| v.rsplit_once('[')?.1.strip_suffix(']')?.parse::<u32>().ok());
                let attempts = number("x-aiwatch-attempts").unwrap_or_else(|| {
                    match (
                        number("x-litellm-attempted-fallbacks"),
                        number("x-litellm-attempted-retries"),
                        portkey_target,
                    ) {
                        (None, None, None) => 0,
                        (f, r, p) => {
                            1 + f.unwrap_or(0)
                                + r.unwrap_or(0)
                                + p.unwrap_or(0)
                                + number("x-portkey-retry-attempt-count").unwrap_or(0)
                        }
                    }
                });
                let status = parts.status.as_u16();
                out.samples.push(Sample {
                    start,
                    latency: started.elapsed().as_micros() as u64,
                    status,
                    upstream,
                    attempts,
                });
                if status != 200 && out.errors.len() < 20 {
                    out.errors.push(format!(
                        "{:.3} s: status {status}: {}",
                        started.duration_since(t0).as_secs_f64(),
                        text.chars().take(200).collect::<String>()
                    ));
                }
                let closing = parts
                    .headers
                    .get("connection")
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
                if closing {
                    sender = None;
                }
            }
            Ok(Err(e)) => {
                fail(&mut out, format!("{e}"));
                sender = None;
            }
            Err(_) => {
                fail(&mut out, format!("no answer in {} s", timeout.as_secs()));
                sender = None;
            }
        }
    }
    out
}

async fn connect(
    addr: SocketAddr,
    timeout: Duration,
) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let stream = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
        .await
        .context("connect timed out")??;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// What the failover run shows, in seconds from its start.
struct FailoverSummary {
    total: usize,
    failed: usize,
    retried: usize,
    /// The first request that met the dead primary (a failure, a retry or a secondary answer).
    first_affected: Option<f64>,
    /// From here on, until the restart, every request was answered by the secondary first time.
    settled: Option<f64>,
    /// The first request the restarted primary answered.
    first_back: Option<f64>,
    /// From here on every request was answered by the primary.
    full_back: Option<f64>,
    p50_before_ms: f64,
    p99_before_ms: f64,
    p99_failover_ms: f64,
    max_failover_ms: f64,
    p99_all_ms: f64,
    max_all_ms: f64,
}

fn summarize(run: &FailoverRun) -> FailoverSummary {
    let s = &run.samples;
    let us = |t: f64| (t * 1e6) as u64;
    let secs = |t: u64| t as f64 / 1e6;
    let kill = us(run.kill_at);
    let restart = us(run.restart_at);
    let affected = |x: &Sample| x.failed() || x.attempts > 1 || x.upstream != Upstream::Primary;
    let first_affected = s
        .iter()
        .filter(|x| x.end() >= kill && x.start < restart)
        .filter(|x| affected(x))
        .map(|x| x.start)
        .min();
    let clean_secondary =
        |x: &Sample| !x.failed() && x.attempts <= 1 && x.upstream == Upstream::Secondary;
    let settled = first_affected.and_then(|first| {
        let window: Vec<&Sample> = s
            .iter()
            // A request still in flight at the restart may meet the new primary.
            .filter(|x| x.start >= first && x.end() < restart)
            .collect();
        match window.iter().rposition(|x| !clean_secondary(x)) {
            None => Some(first),
            Some(i) => window.get(i + 1).map(|x| x.start),
        }
    });
    let first_back = s
        .iter()
        .filter(|x| x.start >= restart && x.upstream == Upstream::Primary && !x.failed())
        .map(|x| x.start)
        .min();
    let full_back = first_back.and_then(|first| {
        let after: Vec<&Sample> = s.iter().filter(|x| x.start >= first).collect();
        match after
            .iter()
            .rposition(|x| x.upstream != Upstream::Primary || x.failed())
        {
            None => Some(first),
            Some(i) => after.get(i + 1).map(|x| x.start),
        }
    });
    let window_end = settled.unwrap_or(restart).max(kill + 1_000_000);
    let latencies = |from: u64, to: u64| -> Vec<f64> {
        let mut v: Vec<f64> = s
            .iter()
            .filter(|x| x.start >= from && x.start < to)
            .map(|x| x.latency as f64 / 1e3)
            .collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let before = latencies(2_000_000, kill);
    let during = latencies(first_affected.unwrap_or(kill).min(kill), window_end);
    let all = latencies(0, u64::MAX);
    FailoverSummary {
        total: s.len(),
        failed: s.iter().filter(|x| x.failed()).count(),
        retried: s.iter().filter(|x| x.attempts > 1).count(),
        first_affected: first_affected.map(secs),
        settled: settled.map(secs),
        first_back: first_back.map(secs),
        full_back: full_back.map(secs),
        p50_before_ms: quantile(&before, 0.5),
        p99_before_ms: quantile(&before, 0.99),
        p99_failover_ms: quantile(&during, 0.99),
        max_failover_ms: during.last().copied().unwrap_or(f64::NAN),
        p99_all_ms: quantile(&all, 0.99),
        max_all_ms: all.last().copied().unwrap_or(f64::NAN),
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Per-second rows: requests, failures, retries, primary's share, p50 and p99.
fn timeline(run: &FailoverRun) -> String {
    let mut out = String::from(
        "| second | requests | failed | retried | primary | secondary | p50 | p99 | max |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    let seconds = FAILOVER_RUN.as_secs();
    for second in 0..seconds {
        let (from, to) = (second * 1_000_000, (second + 1) * 1_000_000);
        let bucket: Vec<&Sample> = run
            .samples
            .iter()
            .filter(|x| x.start >= from && x.start < to)
            .collect();
        let mut lat: Vec<f64> = bucket.iter().map(|x| x.latency as f64 / 1e3).collect();
        lat.sort_by(f64::total_cmp);
        if bucket.is_empty() {
            let _ = writeln!(out, "| {second}–{} | 0 | | | | | | | |", second + 1);
            continue;
        }
        let n = bucket.len().max(1) as f64;
        let share = |u: Upstream| {
            bucket
                .iter()
                .filter(|x| x.upstream == u && !x.failed())
                .count() as f64
                / n
                * 100.0
        };
        let _ = writeln!(
            out,
            "| {second}–{} | {} | {} | {} | {:.0} % | {:.0} % | {:.2} ms | {:.2} ms | {:.1} ms |",
            second + 1,
            bucket.len(),
            bucket.iter().filter(|x| x.failed()).count(),
            bucket.iter().filter(|x| x.attempts > 1).count(),
            share(Upstream::Primary),
            share(Upstream::Secondary),
            quantile(&lat, 0.5),
            quantile(&lat, 0.99),
            lat.last().copied().unwrap_or(f64::NAN),
        );
    }
    out
}

// === report ===

struct Row {
    name: String,
    result: Result<Measured, String>,
}

struct FailoverRow {
    name: String,
    result: Result<(FailoverRun, FailoverSummary), String>,
}

struct Report {
    command: String,
    connections: usize,
    seconds: u64,
    one_seconds: u64,
    round_seconds: u64,
    rows: Vec<Row>,
    failovers: Vec<FailoverRow>,
    versions: Vec<String>,
    mock_pid: u32,
    script: tempfile::NamedTempFile,
    rounds: Vec<HeadToHead>,
    rounds_failed: usize,
}

/// One head-to-head round: nginx and aiwatch back to back.
struct HeadToHead {
    gateway_first: bool,
    nginx_rps: f64,
    gateway_rps: f64,
    nginx_cpu_us: Option<f64>,
    gateway_cpu_us: Option<f64>,
    /// aiwatch's p50 at 1 connection minus the mock's, timed back to back.
    added_p50_ms: f64,
    errors: f64,
}

impl HeadToHead {
    /// aiwatch's requests/s as a percentage of nginx's in this round.
    fn share(&self) -> f64 {
        self.gateway_rps / self.nginx_rps.max(1e-9) * 100.0
    }
}

impl Report {
    fn new(command: &str, options: &Options) -> Self {
        let mut script = tempfile::Builder::new()
            .suffix(".lua")
            .tempfile()
            .expect("temp file for the wrk script");
        let _ = script.write_all(WRK_SCRIPT.as_bytes());
        Self {
            command: command.to_owned(),
            connections: options.connections,
            seconds: options.seconds,
            one_seconds: one_connection_seconds(options),
            round_seconds: round_seconds(options),
            rows: Vec::new(),
            failovers: Vec::new(),
            versions: Vec::new(),
            mock_pid: 0,
            script,
            rounds: Vec::new(),
            rounds_failed: 0,
        }
    }

    fn measure(&mut self, options: &Options, name: &str, target: &Result<Target>) {
        let result = usable(target)
            .map_err(|e| format!("{e:#}"))
            .and_then(|target| {
                println!(
                    "  {name}: warm-up {} s, then {} s at {} connections and {} s at 1",
                    WARMUP.as_secs(),
                    options.seconds,
                    options.connections,
                    one_connection_seconds(options)
                );
                measure(target, options, self.script.path(), self.mock_pid).map_err(|e| {
                    let tail = target.proc.as_ref().map(Proc::log_tail).unwrap_or_default();
                    format!("{e:#} {tail}")
                })
            });
        match &result {
            Ok(m) => println!(
                "    {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms; 1 connection: p50 {:.3} ms",
                m.many.rps(),
                m.many.p50_ms,
                m.many.p99_ms,
                m.one.p50_ms
            ),
            Err(e) => println!("    unavailable: {e}"),
        }
        self.rows.push(Row {
            name: name.to_owned(),
            result,
        });
    }

    /// nginx and aiwatch again, turn about (nginx first in even rounds, aiwatch first in odd
    /// ones), so both see the same drift of a shared machine; the ratio of each pair is the
    /// side-by-side figure, less sensitive to that drift than two runs minutes apart.
    ///
    /// Each round also times one connection to the mock directly and through aiwatch, turn
    /// about, for the added latency: minutes apart, a drift of the machine's speed moved that
    /// difference by more than the goal.
    fn head_to_head(
        &mut self,
        options: &Options,
        direct: &Target,
        nginx: &Target,
        gateway: &Target,
    ) {
        if options.rounds == 0 {
            return;
        }
        let seconds = round_seconds(options);
        println!(
            "  head to head: {} rounds of {seconds} s each at {} connections, nginx and aiwatch turn about",
            options.rounds, options.connections
        );
        for round in 0..options.rounds {
            let gateway_first = round % 2 == 1;
            let run = |target: &Target| -> Result<(WrkRun, Option<f64>)> {
                let pgid = target.proc.as_ref().map(Proc::pid);
                let cpu0 = pgid.map(group_cpu_seconds);
                let wrk_run = wrk(target, options.connections, seconds, self.script.path())?;
                let cpu = cpu0
                    .zip(pgid.map(group_cpu_seconds))
                    .map(|(a, b)| (b - a) / wrk_run.requests.max(1.0) * 1e6);
                Ok((wrk_run, cpu))
            };
            let one = |target: &Target| {
                wrk(
                    target,
                    1,
                    ONE_CONNECTION_ROUND.as_secs(),
                    self.script.path(),
                )
            };
            let result = (|| -> Result<HeadToHead> {
                let ((nginx_run, nginx_cpu), (gateway_run, gateway_cpu)) =
                    turn_about(gateway_first, || run(nginx), || run(gateway))?;
                let (direct_one, gateway_one) =
                    turn_about(gateway_first, || one(direct), || one(gateway))?;
                Ok(HeadToHead {
                    gateway_first,
                    nginx_rps: nginx_run.rps(),
                    gateway_rps: gateway_run.rps(),
                    nginx_cpu_us: nginx_cpu,
                    gateway_cpu_us: gateway_cpu,
                    added_p50_ms: gateway_one.p50_ms - direct_one.p50_ms,
                    errors: nginx_run.errors
                        + gateway_run.errors
                        + direct_one.errors
                        + gateway_one.errors,
                })
            })();
            match result {
                Ok(pair) => {
                    println!(
                        "    round {}: nginx {:.0} req/s, aiwatch {:.0} req/s: {:.0} %; 1 connection: added p50 {:+.3} ms",
                        round + 1,
                        pair.nginx_rps,
                        pair.gateway_rps,
                        pair.share(),
                        pair.added_p50_ms
                    );
                    self.rounds.push(pair);
                }
                Err(e) => {
                    println!("    round {}: unavailable: {e:#}", round + 1);
                    self.rounds_failed += 1;
                }
            }
        }
    }

    /// The median of the rounds' shares of nginx, if any round ran.
    fn median_share(&self) -> Option<f64> {
        median(self.rounds.iter().map(HeadToHead::share))
    }

    /// The median of the rounds' added p50 at 1 connection, if any round ran.
    fn median_added_p50(&self) -> Option<f64> {
        median(self.rounds.iter().map(|r| r.added_p50_ms))
    }

    fn head_to_head_markdown(&self, out: &mut String) {
        if self.rounds.is_empty() && self.rounds_failed == 0 {
            return;
        }
        let _ = writeln!(
            out,
            "Head to head: nginx and aiwatch again, {} s each at {} connections, turn about \
             (the first of each pair alternates), so both share the machine's drift; then {} s \
             at 1 connection to the mock and through aiwatch, also turn about. The throughput \
             and added-latency goals take the median round (the lower middle one of an even \
             count).\n",
            self.round_seconds,
            self.connections,
            ONE_CONNECTION_ROUND.as_secs()
        );
        let _ = writeln!(
            out,
            "| round | first | nginx req/s | aiwatch req/s | % of nginx | CPU µs/req nginx | CPU µs/req aiwatch | 1 conn added p50 | errors |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|"
        );
        let us = |v: Option<f64>| v.map_or("—".into(), |v| format!("{v:.1}"));
        for (i, pair) in self.rounds.iter().enumerate() {
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {:.0} | {:.0} % | {} | {} | {:+.3} ms | {:.0} |",
                i + 1,
                if pair.gateway_first {
                    "aiwatch"
                } else {
                    "nginx"
                },
                pair.nginx_rps,
                pair.gateway_rps,
                pair.share(),
                us(pair.nginx_cpu_us),
                us(pair.gateway_cpu_us),
                pair.added_p50_ms,
                pair.errors
            );
        }
        if self.rounds_failed > 0 {
            let _ = writeln!(out, "\n{} round(s) could not run.", self.rounds_failed);
        }
        out.push('\n');
    }

    fn skipped(&mut self, name: &str, why: &str) {
        self.rows.push(Row {
            name: name.to_owned(),
            result: Err(format!("skipped ({why})")),
        });
    }

    fn failover(&mut self, name: &str, result: Result<FailoverRun>) {
        println!("  {name}");
        let result = result
            .map(|run| {
                let summary = summarize(&run);
                println!(
                    "    {} requests, {} failed; failover {}; back {}; answers after the run: {}",
                    summary.total,
                    summary.failed,
                    span(summary.first_affected, summary.settled),
                    span(Some(run.restart_at), summary.full_back),
                    match &run.answers_after {
                        Ok(()) => "yes".to_owned(),
                        Err(e) => format!("NO ({e})"),
                    }
                );
                (run, summary)
            })
            .map_err(|e| {
                println!("    unavailable: {e:#}");
                format!("{e:#}")
            });
        self.failovers.push(FailoverRow {
            name: name.to_owned(),
            result,
        });
    }

    fn find(&self, prefix: &str) -> Option<&Measured> {
        self.rows
            .iter()
            .find(|r| r.name.starts_with(prefix))
            .and_then(|r| r.result.as_ref().ok())
    }

    fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "## Gateway benchmark\n\n`{}`\n", self.command);
        let _ = writeln!(
            out,
            "Loopback only, non-streaming chat completions (model alias \"bench\") from wrk, \
             {} s at {} connections after {} s of warm-up, then {} s at 1 connection. \
             The mock upstream is the same process for every target. Peak RSS is VmHWM summed \
             over the proxy's process group; CPU is user+system over the {} s run.\n",
            self.seconds,
            self.connections,
            WARMUP.as_secs(),
            self.one_seconds,
            self.seconds
        );
        let direct = self.find("direct");
        let nginx = self.find("nginx");
        let _ = writeln!(
            out,
            "| target | req/s | p50 | p99 | added p50 / p99 | % of nginx | 1 conn p50 / p99 | 1 conn added p50 / p99 | peak RSS | CPU s | CPU µs/req | errors |"
        );
        let _ = writeln!(
            out,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for row in &self.rows {
            match &row.result {
                Err(reason) => {
                    let reason = reason.replace('|', "/").replace('\n', " ");
                    let _ = writeln!(
                        out,
                        "| {} | unavailable: {reason} | | | | | | | | | | |",
                        row.name
                    );
                }
                Ok(m) => {
                    let added = |a: &WrkRun, b: Option<&WrkRun>| {
                        b.map_or("—".into(), |b| {
                            format!(
                                "{:+.3} / {:+.3} ms",
                                a.p50_ms - b.p50_ms,
                                a.p99_ms - b.p99_ms
                            )
                        })
                    };
                    let share = nginx.map_or("—".into(), |n| {
                        format!("{:.0} %", m.many.rps() / n.many.rps() * 100.0)
                    });
                    let rss = m.rss_mb.map_or("—".into(), |(mb, n)| match n {
                        1 => format!("{mb:.1} MB"),
                        n => format!("{mb:.1} MB ({n} procs)"),
                    });
                    let cpu = m.cpu_seconds.map_or("—".into(), |c| format!("{c:.1}"));
                    let per_request = m
                        .cpu_us_per_request()
                        .map_or("—".into(), |us| format!("{us:.0}"));
                    let _ = writeln!(
                        out,
                        "| {} | {:.0} | {:.3} ms | {:.3} ms | {} | {} | {:.3} / {:.3} ms | {} | {} | {} | {} | {:.0} |",
                        row.name,
                        m.many.rps(),
                        m.many.p50_ms,
                        m.many.p99_ms,
                        added(&m.many, direct.map(|d| &d.many)),
                        share,
                        m.one.p50_ms,
                        m.one.p99_ms,
                        added(&m.one, direct.map(|d| &d.one)),
                        rss,
                        cpu,
                        per_request,
                        m.many.errors + m.one.errors,
                    );
                }
            }
        }
        out.push('\n');
        self.cpu_split(&mut out);
        self.head_to_head_markdown(&mut out);
        self.goals(&mut out, direct, nginx);
        self.failover_markdown(&mut out);
        if !self.versions.is_empty() {
            let _ = writeln!(out, "\nVersions: {}.", self.versions.join("; "));
        }
        out
    }

    /// Where the machine's CPU went during each run at C connections.
    fn cpu_split(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "Where the CPU went during the {} s runs (CPU seconds; \"other\" is everything else on the machine):\n",
            self.seconds
        );
        let _ = writeln!(
            out,
            "| target | proxy | mock | wrk | other | idle |\n|---|---:|---:|---:|---:|---:|"
        );
        for row in &self.rows {
            if let Ok(m) = &row.result {
                let c = m.cpu;
                let proxy = m.cpu_seconds.unwrap_or(0.0);
                let idle = c.available - proxy - c.mock - c.wrk - c.other;
                let _ = writeln!(
                    out,
                    "| {} | {proxy:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
                    row.name,
                    c.mock,
                    c.wrk,
                    c.other.max(0.0),
                    idle.max(0.0)
                );
            }
        }
        out.push('\n');
    }

    fn goals(&self, out: &mut String, direct: Option<&Measured>, nginx: Option<&Measured>) {
        let Some(gateway) = self.find("aiwatch") else {
            let _ = writeln!(
                out,
                "Goals for aiwatch gateway: not measured (aiwatch gateway unavailable).\n"
            );
            return;
        };
        let mark = |ok: bool| if ok { "✅" } else { "❌" };
        let _ = writeln!(
            out,
            "Goals for aiwatch gateway ({} connections, non-streaming):\n",
            self.connections
        );
        if let Some(d) = direct {
            let (p50, p99) = (
                gateway.one.p50_ms - d.one.p50_ms,
                gateway.one.p99_ms - d.one.p99_ms,
            );
            match self.median_added_p50() {
                Some(median) => {
                    let _ = writeln!(
                        out,
                        "- added latency at 1 connection (no queueing): median p50 {median:+.3} ms over {} head-to-head rounds (goal ≤ 0.06) {}; the first measurement of each, minutes apart: p50 {p50:+.3} ms · p99 {p99:+.3} ms",
                        self.rounds.len(),
                        mark(median <= 0.06)
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "- added latency at 1 connection (no queueing): p50 {p50:+.3} ms (goal ≤ 0.06) {} · p99 {p99:+.3} ms",
                        mark(p50 <= 0.06)
                    );
                }
            }
        }
        if let Some(per_request) = gateway.cpu_us_per_request() {
            let _ = writeln!(
                out,
                "- CPU per request {per_request:.0} µs (goal ≤ 45) {}",
                mark(per_request <= 45.0)
            );
        }
        if let Some(n) = nginx {
            let single = gateway.many.rps() / n.many.rps() * 100.0;
            match self.median_share() {
                Some(median) => {
                    let each: Vec<String> = self
                        .rounds
                        .iter()
                        .map(|r| format!("{:.0}", r.share()))
                        .collect();
                    let _ = writeln!(
                        out,
                        "- throughput: median {median:.0} % of nginx's over {} head-to-head rounds ({} %) (goal ≥ 90 %) {}; the first measurement of each, minutes apart: {single:.0} %",
                        self.rounds.len(),
                        each.join(", "),
                        mark(median >= 90.0)
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "- throughput {single:.0} % of nginx's (goal ≥ 90 %) {}",
                        mark(single >= 90.0)
                    );
                }
            }
        }
        if let Some((mb, _)) = gateway.rss_mb {
            let _ = writeln!(
                out,
                "- peak RSS {mb:.1} MB (goal ≤ 30 MB) {}",
                mark(mb <= 30.0)
            );
        }
        if let Some(Ok((_, s))) = self
            .failovers
            .iter()
            .find(|f| f.name.starts_with("aiwatch"))
            .map(|f| f.result.as_ref())
        {
            let _ = writeln!(
                out,
                "- failover: {} failed client requests of {} (goal 0) {}",
                s.failed,
                s.total,
                mark(s.failed == 0)
            );
        }
        out.push('\n');
    }

    fn failover_markdown(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "### Failover\n\nTwo mock upstreams; {} keep-alive client connections for {} s; the \
             primary is killed with -9 at {} s and restarted on its port at {} s. Times are \
             seconds from the start of the run. *Failover* runs from the first request that met \
             the dead primary until every request (until the restart) was answered by the \
             secondary at the first attempt; *back* runs from the restart to the first answer by \
             the primary, and to the point from which every answer came from the primary.\n",
            self.connections,
            FAILOVER_RUN.as_secs(),
            KILL_AT.as_secs(),
            RESTART_AT.as_secs()
        );
        let _ = writeln!(
            out,
            "| proxy | requests | failed | retried | killed at | first affected | time-to-failover | restarted at | first back (after restart) | full share back (after restart) | p50 / p99 before | p99 / max during failover | p99 / max whole run | peak RSS | CPU s |"
        );
        let _ = writeln!(
            out,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for row in &self.failovers {
            match &row.result {
                Err(reason) => {
                    let reason = reason.replace('|', "/").replace('\n', " ");
                    let _ = writeln!(
                        out,
                        "| {} | unavailable: {reason} | | | | | | | | | | | | | |",
                        row.name
                    );
                }
                Ok((run, s)) => {
                    let at = |t: Option<f64>| t.map_or("never".into(), |t| format!("{t:.3} s"));
                    let after = |t: Option<f64>| {
                        t.map_or("not within the run".into(), |t| {
                            format!("{:.3} s", t - run.restart_at)
                        })
                    };
                    let _ = writeln!(
                        out,
                        "| {} | {} | {} | {} | {:.3} s | {} | {} | {:.3} s | {} | {} | {:.2} / {:.2} ms | {:.2} / {:.1} ms | {:.2} / {:.1} ms | {:.1} MB | {:.1} |",
                        row.name,
                        s.total,
                        s.failed,
                        s.retried,
                        run.kill_at,
                        at(s.first_affected),
                        match (s.first_affected, s.settled) {
                            (Some(_), None) => "never: the primary was still tried".to_owned(),
                            (a, b) => span(a, b),
                        },
                        run.restart_at,
                        after(s.first_back),
                        after(s.full_back),
                        s.p50_before_ms,
                        s.p99_before_ms,
                        s.p99_failover_ms,
                        s.max_failover_ms,
                        s.p99_all_ms,
                        s.max_all_ms,
                        run.peak_rss_mb,
                        run.cpu_seconds,
                    );
                }
            }
        }
        for row in &self.failovers {
            if let Ok((run, _)) = &row.result {
                if !run.errors.is_empty() {
                    let _ = writeln!(out, "\n{} — first client-side failures:\n", row.name);
                    for e in &run.errors {
                        let _ = writeln!(out, "- {e}");
                    }
                }
                if let Err(e) = &run.answers_after {
                    let _ = writeln!(
                        out,
                        "\n{}: **did not answer a chat request after the run**: {e}",
                        row.name
                    );
                }
                if run.header_mismatches > 0 {
                    let _ = writeln!(
                        out,
                        "\n{}: x-aiwatch-upstream disagreed with the answering mock {} times",
                        row.name, run.header_mismatches
                    );
                }
            }
        }
    }

    /// Raw numbers for the artifact: wrk's lines and the failover timelines.
    fn raw_markdown(&self) -> String {
        let mut out = String::from("\n## Raw numbers\n\n```\n");
        for row in &self.rows {
            if let Ok(m) = &row.result {
                let _ = writeln!(out, "{} @{}c: {}", row.name, self.connections, m.many.line);
                let _ = writeln!(out, "{} @1c: {}", row.name, m.one.line);
                let _ = writeln!(
                    out,
                    "{}: p90 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms @{}c; p99.9 {:.3} ms, max {:.3} ms @1c",
                    row.name,
                    m.many.p90_ms,
                    m.many.p999_ms,
                    m.many.max_ms,
                    self.connections,
                    m.one.p999_ms,
                    m.one.max_ms
                );
            }
        }
        out.push_str("```\n");
        for row in &self.failovers {
            if let Ok((run, _)) = &row.result {
                let _ = writeln!(
                    out,
                    "\n### {} — failover timeline (primary killed at {:.3} s, restarted at {:.3} s, listening at {:.3} s)\n\n{}",
                    row.name,
                    run.kill_at,
                    run.restart_at,
                    run.primary_listening_at,
                    timeline(run)
                );
            }
        }
        out
    }
}

fn span(from: Option<f64>, to: Option<f64>) -> String {
    match (from, to) {
        (Some(a), Some(b)) => format!("{:.3} s", b - a),
        (Some(_), None) => "not within the run".into(),
        (None, _) => "no request affected".into(),
    }
}

fn versions(
    peers: Option<&(Result<Litellm>, Result<Portkey>)>,
    aiwatch: Option<&PathBuf>,
) -> Vec<String> {
    let first_line = |command: &mut Command| {
        command.output().ok().and_then(|o| {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            text.lines().next().map(|l| l.trim().to_owned())
        })
    };
    let mut out = Vec::new();
    if let Some(bin) = aiwatch {
        out.extend(first_line(Command::new(bin).arg("--version")));
    }
    out.extend(first_line(Command::new("nginx").arg("-v")));
    out.extend(first_line(Command::new("wrk").arg("-v")).map(|l| {
        l.split(" [")
            .next()
            .unwrap_or_default()
            .trim_end_matches(" Copyright (C) 2012 Will Glozer")
            .to_owned()
    }));
    if let Some((litellm, portkey)) = peers {
        if let Ok(l) = litellm {
            let python = l.bin.with_file_name("python");
            out.extend(first_line(Command::new(python).args([
                "-c",
                "import importlib.metadata as m; print('litellm', m.version('litellm'))",
            ])));
        }
        if let Ok(p) = portkey {
            let package = p
                .entry
                .parent()
                .and_then(Path::parent)
                .map(|d| d.join("package.json"));
            let version = package
                .and_then(|p| std::fs::read_to_string(p).ok())
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .and_then(|v| v["version"].as_str().map(str::to_owned));
            out.extend(version.map(|v| format!("@portkey-ai/gateway {v}")));
        }
        out.extend(first_line(Command::new("node").arg("--version")).map(|v| format!("node {v}")));
    }
    out
}
