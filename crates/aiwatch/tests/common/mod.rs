//! Shared by the CLI test binaries: the `aiwatch` binary with a scrubbed environment, pointed
//! at a loopback `World`.

// Each test binary compiles this module and uses a part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::time::Duration;

use aiwatch_testkit::World;
use assert_cmd::Command;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Checks every 200 ms, opens after two failures in a row, streams on every due check.
const FAST: &str = "[defaults]\ninterval = \"200ms\"\nfailures_to_open = 2\nsuccesses_to_close = 2\nstream_interval = \"1s\"\n";

/// The binary with a scrubbed environment: no proxies, no real keys, no colors.
pub fn aiwatch() -> Command {
    let mut cmd = Command::cargo_bin("aiwatch").expect("the aiwatch binary is built");
    for var in [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "NO_PROXY",
        "no_proxy",
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "GEMINI_API_KEY",
        "MISTRAL_API_KEY",
        "GROQ_API_KEY",
        "DEEPSEEK_API_KEY",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("NO_COLOR", "1");
    cmd
}

/// `aiwatch SUBCOMMAND` pointed at the world: its config, its DNS server, its "public" CA.
pub fn in_world(world: &World, subcommand: &str) -> Command {
    let config = world.write_config();
    let mut cmd = aiwatch();
    cmd.current_dir(world.dir())
        .arg("--config")
        .arg(config)
        .arg(subcommand)
        .arg("--dns-server")
        .arg(world.dns.addr().to_string())
        .arg("--ca-file")
        .arg(world.public_ca_path());
    cmd
}

/// `aiwatch serve` as a child process on a free loopback port; killed when dropped.
pub struct Serve {
    child: Child,
    pub addr: SocketAddr,
}

impl Serve {
    /// `serve SERVICE` on the world's config with fast checks, `OPENAI_API_KEY=key`.
    pub async fn start(world: &World, key: &str, service: &str) -> Serve {
        Self::start_with(world, service, "", &[("OPENAI_API_KEY", key)]).await
    }

    /// Like [`Serve::start`], with `server` as the `[server]` table's body and `env` set.
    pub async fn start_with(
        world: &World,
        service: &str,
        server: &str,
        env: &[(&str, &str)],
    ) -> Serve {
        let config = world.dir().join("serve.toml");
        let text = format!(
            "{}\n[server]\n{server}\n",
            world.config_toml().replacen("[defaults]\n", FAST, 1)
        );
        std::fs::write(&config, text).expect("write the serve config");
        let addr = free_port();
        let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("aiwatch"))
            .arg("--config")
            .arg(&config)
            .args(["serve", service, "--listen"])
            .arg(addr.to_string())
            .arg("--db")
            .arg(world.dir().join(format!("{service}.db")))
            .arg("--dns-server")
            .arg(world.dns.addr().to_string())
            .arg("--ca-file")
            .arg(world.public_ca_path())
            .env_remove("HTTPS_PROXY")
            .env_remove("HTTP_PROXY")
            .env_remove("https_proxy")
            .env_remove("http_proxy")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("aiwatch serve starts");
        let serve = Serve { child, addr };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while serve.get("/readyz").await.0 != 200 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "serve did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        serve
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        self.get_with(path, &[]).await
    }

    /// GET `path` with extra request headers; (status, body), (0, "") when nothing answers.
    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
        let Ok(mut stream) = tokio::net::TcpStream::connect(self.addr).await else {
            return (0, String::new());
        };
        let extra: String = headers
            .iter()
            .map(|(n, v)| format!("{n}: {v}\r\n"))
            .collect();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: aiwatch\r\nConnection: close\r\n{extra}\r\n");
        if stream.write_all(request.as_bytes()).await.is_err() {
            return (0, String::new());
        }
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw).await;
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
        (status, body)
    }

    pub async fn json(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path} is not JSON ({e}): {body}"))
    }

    /// Waits until `check` holds on the JSON at `path`, or fails with the last value.
    pub async fn wait_for(&self, path: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let value = self.json(path).await;
            if check(&value) {
                return value;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; last {path}:\n{value:#}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address")
}
