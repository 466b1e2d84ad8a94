//! `cargo xtask fuzz --seconds N`: runs every `never_panic` property of the workspace (status
//! formats, feeds, SSE, the relay of both dialects, the Anthropic translation, client bodies,
//! provider error signatures, the scrubber, DNS replies through the probe, raw bytes into the
//! inbound fast loop) again and again with many more cases and a fresh seed each round, until
//! the time is up; reports the cases run and any failure (proptest prints the minimal failing
//! input and saves it under `proptest-regressions/`).

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Cases per property per round; each round is one `cargo test` run.
const CASES_PER_ROUND: u64 = 4_000;

pub fn run(args: &[&str]) -> Result<()> {
    let seconds: u64 = match args {
        [] => 300,
        ["--seconds", n] => n.parse().context("--seconds takes a whole number")?,
        _ => bail!("usage: cargo xtask fuzz [--seconds N]"),
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // Build once (release: many more cases per second), outside the clock.
    let built = Command::new(&cargo)
        .args(["test", "--release", "--workspace", "--no-run", "-q"])
        .status()
        .context("cargo test --no-run")?;
    if !built.success() {
        bail!("the test binaries did not build");
    }
    let budget = Duration::from_secs(seconds);
    let started = Instant::now();
    let (mut rounds, mut properties_run, mut cases) = (0u64, 0u64, 0u64);
    while started.elapsed() < budget {
        rounds += 1;
        // A fresh seed per round: the clock's nanoseconds are enough to differ.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(rounds, |d| d.as_nanos() as u64 ^ rounds);
        let output = Command::new(&cargo)
            .args([
                "test",
                "--release",
                "--workspace",
                "-q",
                "--",
                "never_panic",
            ])
            .env("PROPTEST_CASES", CASES_PER_ROUND.to_string())
            .env("PROPTEST_RNG_SEED", seed.to_string())
            .output()
            .context("cargo test")?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let passed: u64 = text
            .lines()
            .filter_map(|l| l.strip_prefix("test result: "))
            .filter_map(|l| l.split("; ").find_map(|p| p.strip_suffix(" passed")))
            .filter_map(|n| {
                n.trim_start_matches("ok. ")
                    .trim_start_matches("FAILED. ")
                    .parse::<u64>()
                    .ok()
            })
            .sum();
        properties_run = properties_run.max(passed);
        cases += passed * CASES_PER_ROUND;
        if !output.status.success() {
            eprintln!("{text}");
            bail!(
                "round {rounds} (seed {seed}) found a failure after {cases} cases in {:.0?}; the minimal input is above",
                started.elapsed()
            );
        }
        eprintln!(
            "round {rounds}: seed {seed}, {passed} properties × {CASES_PER_ROUND} cases, {:.0?} so far",
            started.elapsed()
        );
    }
    println!(
        "fuzz: {rounds} rounds, {properties_run} properties, {cases} cases in {:.0?}; nothing found",
        started.elapsed()
    );
    Ok(())
}
