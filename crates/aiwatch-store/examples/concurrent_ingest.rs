//! Benchmark: observations/s ingested by `--writers` threads at once (as many agents pushing
//! batches), each writing batches of `--batch` observations of its own region's keys, into an
//! SQLite file or a PostgreSQL database. `cargo xtask bench ingest` runs it on both engines.
//!
//! ```text
//! cargo run --release -p aiwatch-store --example concurrent_ingest -- \
//!     (--sqlite PATH | --postgres URL) [--writers 20] [--batch 100] [--keys 500] [--seconds 10]
//! ```
//!
//! Every writer observes each of its `--keys` keys once per simulated 30 s, so rollup buckets
//! are updated the way a daemon's are. Prints one line: observations/s, batches/s, and the
//! batch latency percentiles.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aiwatch_core::observation::{Health, Observation, PhaseMs, Source};
use aiwatch_core::{Cause, ServiceName};
use aiwatch_store::{PostgresOptions, PostgresStore, PostgresUrl, SqliteStore, Store};
use chrono::{DateTime, Utc};

enum Engine {
    Sqlite(PathBuf),
    Postgres(String),
}

struct Args {
    engine: Engine,
    writers: usize,
    batch: usize,
    keys: usize,
    seconds: f64,
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "{problem}\nusage: concurrent_ingest (--sqlite PATH | --postgres URL) [--writers 20] [--batch 100] [--keys 500] [--seconds 10]"
    );
    std::process::exit(64)
}

fn parse_args() -> Args {
    let mut engine = None;
    let (mut writers, mut batch, mut keys, mut seconds) = (20, 100, 500, 10.0);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        let number = |v: &str| -> f64 {
            v.parse()
                .unwrap_or_else(|_| usage(&format!("{flag}: `{v}` is not a number")))
        };
        match flag.as_str() {
            "--sqlite" => engine = Some(Engine::Sqlite(PathBuf::from(value))),
            "--postgres" => engine = Some(Engine::Postgres(value)),
            "--writers" => writers = number(&value) as usize,
            "--batch" => batch = number(&value) as usize,
            "--keys" => keys = number(&value) as usize,
            "--seconds" => seconds = number(&value),
            other => usage(&format!("unknown flag {other}")),
        }
    }
    Args {
        engine: engine.unwrap_or_else(|| usage("--sqlite or --postgres is required")),
        writers: writers.max(1),
        batch: batch.max(1),
        keys: keys.max(1),
        seconds,
    }
}

/// The `i`-th observation of writer `w`: key `i % keys` of its region, every key once per 30 s.
fn observation(
    w: usize,
    i: usize,
    keys: usize,
    services: &[ServiceName],
    t0: DateTime<Utc>,
) -> Observation {
    let k = i % keys;
    let round = (i / keys) as i64;
    let spread = (k as i64 * 30_000) / keys as i64;
    let health = if i.is_multiple_of(50) {
        Health::Down
    } else {
        Health::Up
    };
    Observation {
        service: services[k % services.len()].clone(),
        component: aiwatch_core::observation::Component::Api,
        region: format!("agent-{w:02}-{}", k / services.len()).into(),
        source: Source::Probe,
        at: t0 + chrono::Duration::milliseconds(round * 30_000 + spread),
        health,
        cause: if health == Health::Up {
            Cause::Ok
        } else {
            Cause::ProviderError
        },
        phases: PhaseMs {
            dns: Some(1.5),
            connect: Some(8.0),
            tls: Some(20.0),
            first_byte: Some(120.0 + (i % 97) as f32),
            total: Some(150.0 + (i % 211) as f32),
        },
        complete: Some(true),
        detail: format!("HTTP 200 in {} ms", 150 + i % 211),
    }
}

fn main() {
    let args = parse_args();
    let (label, store): (&str, Arc<dyn Store>) = match &args.engine {
        Engine::Sqlite(path) => (
            "SQLite",
            Arc::new(SqliteStore::open(path).unwrap_or_else(|e| usage(&e.to_string()))),
        ),
        Engine::Postgres(raw) => {
            let url = PostgresUrl::parse(raw).unwrap_or_else(|e| usage(&e.to_string()));
            let options = PostgresOptions {
                max_connections: args.writers as u32 + 2,
                ..PostgresOptions::default()
            };
            (
                "PostgreSQL",
                Arc::new(
                    PostgresStore::open(&url, options).unwrap_or_else(|e| usage(&e.to_string())),
                ),
            )
        }
    };
    let services: Vec<ServiceName> = (0..50)
        .map(|i| ServiceName::parse(&format!("svc-{i:02}")).unwrap_or_else(|e| usage(&e)))
        .collect();
    let t0: DateTime<Utc> = "2026-12-01T00:00:00Z"
        .parse()
        .unwrap_or_else(|_| usage("bad start time"));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let threads: Vec<_> = (0..args.writers)
        .map(|w| {
            let (store, stop, services) = (store.clone(), stop.clone(), services.clone());
            let (batch, keys) = (args.batch, args.keys);
            std::thread::spawn(move || -> Result<(usize, Vec<Duration>), String> {
                let mut latencies = Vec::new();
                let mut next = 0;
                while !stop.load(Ordering::Relaxed) {
                    let rows: Vec<Observation> = (next..next + batch)
                        .map(|i| observation(w, i, keys, &services, t0))
                        .collect();
                    let t = Instant::now();
                    store
                        .insert_observations(&rows)
                        .map_err(|e| format!("writer {w}: {e}"))?;
                    latencies.push(t.elapsed());
                    next += batch;
                }
                Ok((next, latencies))
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(args.seconds));
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    let mut latencies = Vec::new();
    for t in threads {
        match t.join() {
            Ok(Ok((n, l))) => {
                total += n;
                latencies.extend(l);
            }
            Ok(Err(e)) => usage(&e),
            Err(_) => usage("a writer panicked"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "  {label:<10} {:>9.0} observations/s  ({} writers × batches of {}, {} in {:.1} s; {:.0} batches/s, batch p50 {:.1} ms, p99 {:.1} ms)",
        total as f64 / elapsed,
        args.writers,
        args.batch,
        total,
        elapsed,
        latencies.len() as f64 / elapsed,
        pct(0.5),
        pct(0.99)
    );
}
