//! `cargo xtask e2e container`: builds the Dockerfile and runs the image with docker or podman
//! (checking `/healthz` through the published port and the image's own HEALTHCHECK command)
//! when a container engine can run here; otherwise says why and skips.
//!
//! Every engine command runs under a deadline with its captured output capped. The container
//! watches one service on its own loopback, so the run reaches nothing outside it; the build
//! itself pulls the base images and crates, like any image build.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::AsyncReadExt;
use tokio::process::Command;

const INFO_TIMEOUT: Duration = Duration::from_secs(30);
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);
const PULL_TIMEOUT: Duration = Duration::from_secs(600);
/// The image builds the `dist` profile (LTO, one codegen unit): slow on small machines.
const BUILD_TIMEOUT: Duration = Duration::from_secs(3 * 3600);
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The most of a command's stdout or stderr kept.
const OUTPUT_CAP: u64 = 64 * 1024;
/// The base images the Dockerfile starts from.
const BASE_IMAGES: [&str; 2] = [
    "docker.io/library/rust:1-bookworm",
    "docker.io/library/debian:bookworm-slim",
];
/// The container's config: one service on the container's own loopback, so `serve` starts
/// and answers `/healthz` without reaching anything outside the container.
const CONFIG: &str = "[defaults]\ncontrol_url = \"http://127.0.0.1:9/generate_204\"\n\n[[service]]\nname = \"team-llm\"\nkind = \"openai\"\napi_base = \"http://127.0.0.1:9/v1\"\n";

/// What a command did: its exit status (`None`: killed at its deadline) and capped output.
struct Ran {
    ok: bool,
    timed_out: bool,
    stdout: String,
    stderr: String,
}

impl Ran {
    /// The last line that says something, for a one-line reason.
    fn why(&self) -> String {
        if self.timed_out {
            return "no answer in time".into();
        }
        let text = if self.stderr.trim().is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        text.lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("failed without a message")
            .trim()
            .chars()
            .take(300)
            .collect()
    }
}

/// Runs `program args` under `timeout`, its output captured (capped) or shown live.
async fn run(program: &str, args: &[&str], timeout: Duration, capture: bool) -> Result<Ran> {
    let mut command = Command::new(program);
    command.args(args).stdin(Stdio::null()).kill_on_drop(true);
    if capture {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            return Ok(Ran {
                ok: false,
                timed_out: false,
                stdout: String::new(),
                stderr: format!("cannot run {program}: {e}"),
            })
        }
    };
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let work = async {
        let out = async {
            let mut bytes = Vec::new();
            if let Some(pipe) = stdout {
                let _ = pipe.take(OUTPUT_CAP).read_to_end(&mut bytes).await;
            }
            String::from_utf8_lossy(&bytes).into_owned()
        };
        let err = async {
            let mut bytes = Vec::new();
            if let Some(pipe) = stderr {
                let _ = pipe.take(OUTPUT_CAP).read_to_end(&mut bytes).await;
            }
            String::from_utf8_lossy(&bytes).into_owned()
        };
        let (out, err) = tokio::join!(out, err);
        let status = child.wait().await;
        (status, out, err)
    };
    Ok(match tokio::time::timeout(timeout, work).await {
        Ok((status, stdout, stderr)) => Ran {
            ok: status.context("wait for the command")?.success(),
            timed_out: false,
            stdout,
            stderr,
        },
        Err(_) => Ran {
            ok: false,
            timed_out: true,
            stdout: String::new(),
            stderr: String::new(),
        },
    })
}

/// The engine to use, or why none can run containers here.
async fn engine() -> Result<std::result::Result<&'static str, Vec<String>>> {
    let mut why = Vec::new();
    let docker = run(
        "docker",
        &["info", "--format", "{{.ServerVersion}}"],
        INFO_TIMEOUT,
        true,
    )
    .await?;
    if docker.ok && !docker.stdout.trim().is_empty() {
        return Ok(Ok("docker"));
    }
    why.push(format!("docker: {}", docker.why()));
    // Debian's podman runs rootful without a daemon; install it as the other suites install
    // their tools.
    if let Err(e) = crate::e2e::install_with_recommends(&["podman"]) {
        why.push(format!("podman: cannot install it: {e:#}"));
        return Ok(Err(why));
    }
    let info = run(
        "podman",
        &["info", "--format", "{{.Version.Version}}"],
        INFO_TIMEOUT,
        true,
    )
    .await?;
    if !info.ok {
        why.push(format!("podman info: {}", info.why()));
        return Ok(Err(why));
    }
    // `info` answers where containers still cannot start (no cgroups, rlimits refused): run
    // one from the host's own root file system, which needs no image; `:O` puts an overlay on
    // it so nothing the run writes lands on the host.
    let probe = run(
        "podman",
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "--rootfs",
            "/:O",
            "/bin/true",
        ],
        PROBE_TIMEOUT,
        true,
    )
    .await?;
    if !probe.ok {
        why.push(format!(
            "podman {} is installed and answers `info`, but cannot start a container: {}",
            info.stdout.trim(),
            probe.why()
        ));
        return Ok(Err(why));
    }
    Ok(Ok("podman"))
}

/// Removes the container when the suite ends, however it ends.
struct Container {
    engine: &'static str,
    name: String,
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = std::process::Command::new(self.engine)
            .args(["rm", "-f", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

pub async fn run_suite() -> Result<()> {
    let engine = match engine().await? {
        Ok(engine) => engine,
        Err(why) => {
            println!("e2e container: no container engine can run here:");
            for line in &why {
                println!("  - {line}");
            }
            println!("e2e container: skipped (the Dockerfile was not built or run)");
            return Ok(());
        }
    };
    for image in BASE_IMAGES {
        let pulled = run(engine, &["pull", image], PULL_TIMEOUT, true).await?;
        if !pulled.ok {
            println!(
                "e2e container: {engine} runs containers, but cannot pull the base image {image}: {}",
                pulled.why()
            );
            println!("e2e container: skipped (no registry: the Dockerfile cannot be built here)");
            return Ok(());
        }
    }
    let tag = format!("aiwatch-e2e:{}", std::process::id());
    println!("e2e container: {engine} build -t {tag} . (the dist profile; this takes a while)");
    let built = run(engine, &["build", "-t", &tag, "."], BUILD_TIMEOUT, false).await?;
    if !built.ok {
        bail!("{engine} build failed ({})", built.why());
    }

    let dir = tempfile::tempdir()?;
    let config = dir.path().join("aiwatch.toml");
    std::fs::write(&config, CONFIG)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let container = Container {
        engine,
        name: format!("aiwatch-e2e-{}", std::process::id()),
    };
    let publish = format!("127.0.0.1:{port}:8080");
    let mount = format!("{}:/etc/aiwatch/aiwatch.toml:ro", config.display());
    let started = run(
        engine,
        &[
            "run",
            "-d",
            "--name",
            &container.name,
            "-p",
            &publish,
            "-v",
            &mount,
            &tag,
            "serve",
            "team-llm",
            "--listen",
            "0.0.0.0:8080",
            "--db",
            "/var/lib/aiwatch/aiwatch.db",
        ],
        START_TIMEOUT,
        true,
    )
    .await?;
    if !started.ok {
        bail!("{engine} run failed: {}", started.why());
    }
    if let Err(e) = wait_healthy(&format!("http://127.0.0.1:{port}")).await {
        let logs = run(
            engine,
            &["logs", "--tail", "30", &container.name],
            INFO_TIMEOUT,
            true,
        )
        .await?;
        bail!("{e:#}\ncontainer logs:\n{}{}", logs.stdout, logs.stderr);
    }
    // The image's own HEALTHCHECK command, run inside the container.
    let health = run(
        engine,
        &[
            "exec",
            &container.name,
            "curl",
            "-fsS",
            "http://127.0.0.1:8080/healthz",
        ],
        INFO_TIMEOUT,
        true,
    )
    .await?;
    if !health.ok {
        bail!("the image's HEALTHCHECK command fails: {}", health.why());
    }
    let user = run(
        engine,
        &["exec", &container.name, "id", "-u"],
        INFO_TIMEOUT,
        true,
    )
    .await?;
    if user.stdout.trim() == "0" {
        bail!("the container runs as root; the Dockerfile says USER aiwatch");
    }
    println!(
        "e2e container: {engine} built {tag} from {}, and it answers /healthz on the published port as uid {}",
        Path::new("Dockerfile").display(),
        user.stdout.trim()
    );
    Ok(())
}

/// Polls `/healthz` through the published port.
async fn wait_healthy(base_url: &str) -> Result<()> {
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        let url = base_url.to_owned();
        let answer =
            tokio::task::spawn_blocking(move || crate::e2e::http_get(&url, "/healthz")).await?;
        if answer.as_ref().is_ok_and(|(status, _)| *status == 200) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("/healthz did not answer 200 through the published port in time ({answer:?})");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
