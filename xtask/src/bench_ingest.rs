//! `cargo xtask bench ingest`: observations/s ingested from 20 concurrent writers (as 20 agents
//! pushing batches of 100) into an SQLite file and into a throwaway PostgreSQL (the e2e
//! harness's cluster), with the store built in release mode (the `concurrent_ingest` example).
//! Goal: ≥ 20,000 observations/s into each.

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::postgres::Cluster;

pub fn run(args: &[&str]) -> Result<()> {
    let mut passed: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        match *flag {
            "--writers" | "--batch" | "--seconds" | "--keys" => {
                let value = it.next().with_context(|| format!("{flag} needs a value"))?;
                passed.extend([flag.to_string(), value.to_string()]);
            }
            other => bail!(
                "unknown flag {other}; usage: cargo xtask bench ingest [--writers W] [--batch B] [--seconds S] [--keys K]"
            ),
        }
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let example = |engine: &[String]| -> Result<()> {
        let status = Command::new(&cargo)
            .args([
                "run",
                "--quiet",
                "--release",
                "-p",
                "aiwatch-store",
                "--example",
                "concurrent_ingest",
                "--",
            ])
            .args(engine)
            .args(&passed)
            .status()
            .context("cargo run --example concurrent_ingest")?;
        if !status.success() {
            bail!("the ingest benchmark failed");
        }
        Ok(())
    };
    println!("observations ingested by concurrent writers (goal ≥ 20,000/s into each engine):");
    let dir = tempfile::tempdir()?;
    example(&[
        "--sqlite".into(),
        dir.path().join("ingest.db").display().to_string(),
    ])?;
    let cluster = Cluster::start()?;
    let mut admin = Command::new("psql");
    admin
        .arg(cluster.url())
        .args(["-qc", "CREATE DATABASE aiwatch_bench"]);
    let out = admin.output().context("psql")?;
    if !out.status.success() {
        bail!(
            "CREATE DATABASE failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let url = cluster.url_for("aiwatch_bench");
    example(&["--postgres".into(), url])?;
    println!(
        "  (PostgreSQL: a local cluster with default settings, fsync and synchronous_commit on, in {})",
        cluster.dir().display()
    );
    Ok(())
}
