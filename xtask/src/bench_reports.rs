//! `cargo xtask bench reports`: how many problem reports per second go into SQLite through the
//! report desk (validation, the reporter's salted hash, the per-token limit, the dedup insert),
//! on a real database file — first distinct reporters (all counted), then the same reporters
//! again (all deduplicated).

use std::time::Instant;

use aiwatch_core::ServiceName;
use aiwatch_server::reports::{Incoming, ReportDesk};
use aiwatch_store::{SqliteStore, Store};
use anyhow::{bail, Result};
use chrono::Utc;

pub fn run(args: &[&str]) -> Result<()> {
    let count: usize = match args {
        [] => 50_000,
        ["--reports", n] => n.parse()?,
        _ => bail!("usage: cargo xtask bench reports [--reports N]"),
    };
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(&dir.path().join("reports.db"))?;
    let desk = ReportDesk::new(&store, std::time::Duration::from_secs(3600))?;
    let services: Vec<ServiceName> = (0..100)
        .map(|i| ServiceName::parse(&format!("svc-{i:03}")))
        .collect::<Result<_, _>>()
        .map_err(anyhow::Error::msg)?;
    let symptoms = [
        "cannot_load",
        "login_loop",
        "blank_page",
        "slow_or_cut_off",
        "other",
    ];
    let pass = |label: &str| -> Result<()> {
        let started = Instant::now();
        let mut counted = 0;
        for i in 0..count {
            let incoming = Incoming {
                service: services[i % services.len()].to_string(),
                symptom: symptoms[i % symptoms.len()].into(),
                region: Some(["eu-west", "us-east", "ap-south"][i % 3].into()),
                comment: (i % 10 == 0).then(|| "the page stays blank after login".into()),
            };
            let token = format!("bench-reporter-{i:012}");
            match desk.take(&store, &services, incoming, &token, None, Utc::now()) {
                Ok(true) => counted += 1,
                Ok(false) => {}
                Err(e) => bail!("report {i} refused: {e:?}"),
            }
        }
        let elapsed = started.elapsed();
        println!(
            "  {label:<34} {:>8.0} reports/s   ({count} in {:.2} s, {counted} counted)",
            count as f64 / elapsed.as_secs_f64(),
            elapsed.as_secs_f64()
        );
        Ok(())
    };
    println!("problem reports into SQLite (WAL, one transaction each) through the report desk:");
    pass("distinct reporters (all counted)")?;
    pass("the same reporters again (deduped)")?;
    store.flush()?;
    let size = std::fs::metadata(dir.path().join("reports.db"))?.len() as f64 / 1e6;
    println!(
        "  database after {} reports: {size:.1} MB   (goal ≥ 5,000 reports/s)",
        2 * count
    );
    Ok(())
}
