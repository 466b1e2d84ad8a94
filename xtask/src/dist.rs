//! `cargo xtask dist`: the release a user downloads or installs — the binary built with the
//! `dist` profile (stripped, fat LTO, one codegen unit), shell completions and man pages from
//! the binary itself, and the systemd unit — in `$CARGO_TARGET_DIR/dist/`, with their sizes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

pub fn run(args: &[&str]) -> Result<()> {
    if !args.is_empty() {
        bail!("usage: cargo xtask dist");
    }
    let target =
        PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()));
    let started = Instant::now();
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--locked", "--profile", "dist", "-p", "aiwatch"])
        .status()
        .context("cargo build --profile dist")?;
    if !status.success() {
        bail!("cargo build --profile dist -p aiwatch failed");
    }
    let built = target.join("dist").join("aiwatch");
    let out = target.join("dist").join("aiwatch-dist");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(out.join("completions"))?;
    let binary = out.join("aiwatch");
    std::fs::copy(&built, &binary).with_context(|| format!("copy {}", built.display()))?;
    for (shell, file) in [
        ("bash", "aiwatch.bash"),
        ("zsh", "_aiwatch"),
        ("fish", "aiwatch.fish"),
        ("powershell", "_aiwatch.ps1"),
    ] {
        let script = Command::new(&binary)
            .args(["completions", shell])
            .output()?;
        if !script.status.success() {
            bail!("aiwatch completions {shell} failed");
        }
        std::fs::write(out.join("completions").join(file), script.stdout)?;
    }
    let man = Command::new(&binary)
        .arg("man")
        .arg(out.join("man"))
        .output()?;
    if !man.status.success() {
        bail!(
            "aiwatch man failed: {}",
            String::from_utf8_lossy(&man.stderr)
        );
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::copy(
        root.join("dist/aiwatch.service"),
        out.join("aiwatch.service"),
    )?;
    // Start-up: the binary answering `--version`, best of five.
    let startup = (0..5)
        .map(|_| {
            let t = Instant::now();
            let _ = Command::new(&binary).arg("--version").output();
            t.elapsed()
        })
        .min()
        .unwrap_or_default();
    let mb = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.len() as f64 / 1e6)
            .unwrap_or(0.0)
    };
    println!(
        "dist: {} in {:.0} s\n  binary          {:.1} MB   (goal ≤ 25 MB)\n  start-up        {:.1} ms (aiwatch --version, best of 5)\n  completions     bash, zsh, fish, PowerShell\n  man pages       {}\n  systemd unit    aiwatch.service",
        out.display(),
        started.elapsed().as_secs_f64(),
        mb(&binary),
        startup.as_secs_f64() * 1e3,
        std::fs::read_dir(out.join("man"))?.count()
    );
    Ok(())
}
