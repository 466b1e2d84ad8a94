//! Shared by the CLI test binaries: the `aiwatch` binary with a scrubbed environment, pointed
//! at a loopback `World`.

// Each test binary compiles this module and uses a part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::time::Duration;

use aiwatch_testkit::{ApiClient, World};
use assert_cmd::Command;

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
    api: ApiClient,
}

impl Serve {
    /// `serve SERVICE` on the world's config with fast checks, `OPENAI_API_KEY=key`.
    pub async fn start(world: &World, key: &str, service: &str) -> Serve {
        Self::start_with(world, service, "", &[("OPENAI_API_KEY", key)]).await
    }

    /// Like [`Serve::start`], with `server` as the `[server]` table's body and `env` set. When
    /// `server` names a `database`, that one is used; otherwise an SQLite file in the world.
    pub async fn start_with(
        world: &World,
        service: &str,
        server: &str,
        env: &[(&str, &str)],
    ) -> Serve {
        Self::start_watching(world, &[service], server, env).await
    }

    /// Like [`Serve::start_with`], watching several services.
    pub async fn start_watching(
        world: &World,
        services: &[&str],
        server: &str,
        env: &[(&str, &str)],
    ) -> Serve {
        let service = services.join("+");
        let config = world.dir().join("serve.toml");
        let text = format!(
            "{}\n[server]\n{server}\n",
            world.config_toml().replacen("[defaults]\n", FAST, 1)
        );
        std::fs::write(&config, text).expect("write the serve config");
        let db = world.dir().join(format!("{service}.db"));
        let dns = world.dns.addr().to_string();
        let ca = world.public_ca_path();
        let mut args: Vec<std::ffi::OsString> = services.iter().map(|s| s.into()).collect();
        if !server.contains("database =") {
            args.extend(["--db".into(), db.into()]);
        }
        args.extend([
            "--dns-server".into(),
            dns.into(),
            "--ca-file".into(),
            ca.into(),
        ]);
        Self::spawn(&config, free_port(), &args, env).await
    }

    /// `aiwatch --config CONFIG serve --listen ADDR ARGS…` with `env` set; waits until ready.
    pub async fn spawn(
        config: &std::path::Path,
        addr: SocketAddr,
        args: &[std::ffi::OsString],
        env: &[(&str, &str)],
    ) -> Serve {
        let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("aiwatch"))
            .arg("--config")
            .arg(config)
            .args(["serve", "--listen"])
            .arg(addr.to_string())
            .args(args)
            .env_remove("HTTPS_PROXY")
            .env_remove("HTTP_PROXY")
            .env_remove("https_proxy")
            .env_remove("http_proxy")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("aiwatch serve starts");
        let serve = Serve {
            child,
            api: ApiClient { addr },
        };
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

    /// Stops it at once (SIGKILL), as a crash would.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server's API, as every test reads it.
impl std::ops::Deref for Serve {
    type Target = ApiClient;
    fn deref(&self) -> &ApiClient {
        &self.api
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address")
}
