//! Shared by the CLI test binaries: the `aiwatch` binary with a scrubbed environment, pointed
//! at a loopback `World`.

// Each test binary compiles this module and uses a part of it.
#![allow(dead_code)]

use aiwatch_testkit::World;
use assert_cmd::Command;

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
