//! Benchmark: sustained insert throughput of `SqliteStore` into a file-backed database, in
//! batches spread over many keys, and the database size per million observations.
//!
//! ```text
//! cargo run --release -p aiwatch-store --example insert_throughput -- \
//!     [--seconds 10] [--batch 1000] [--keys 10000] [--interval 30] [--db PATH] [--full-sync] \
//!     [--cache-mib 32] [--checkpoint-pages 16384]
//! ```
//!
//! Simulated time advances like a real daemon's: every key is observed once per `--interval`
//! seconds, so the minute, hour and day rollups see the UPSERT pattern they would in
//! production. It prints throughput every 10 s, the CPU time used (so the figure can be read on
//! a busy machine), batch commit latencies, a few API reads against the result, and the database
//! size per million observations after close.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use aiwatch_core::observation::{Health, Observation, PhaseMs, Source};
use aiwatch_core::{Cause, ServiceName};
use aiwatch_store::{Granularity, Selector, SqliteOptions, SqliteStore, Store, TimeRange};
use chrono::{DateTime, Utc};

struct Args {
    seconds: f64,
    batch: usize,
    keys: usize,
    interval_s: i64,
    db: Option<PathBuf>,
    full_sync: bool,
    cache_mib: Option<u32>,
    checkpoint_pages: Option<u32>,
}

fn parse_args() -> Args {
    let mut args = Args {
        seconds: 10.0,
        batch: 1000,
        keys: 10_000,
        interval_s: 30,
        db: None,
        full_sync: false,
        cache_mib: None,
        checkpoint_pages: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--seconds" => args.seconds = value().parse().expect("--seconds"),
            "--batch" => args.batch = value().parse().expect("--batch"),
            "--keys" => args.keys = value().parse().expect("--keys"),
            "--interval" => args.interval_s = value().parse().expect("--interval"),
            "--db" => args.db = Some(PathBuf::from(value())),
            "--full-sync" => args.full_sync = true,
            "--cache-mib" => args.cache_mib = Some(value().parse().expect("--cache-mib")),
            "--checkpoint-pages" => {
                args.checkpoint_pages = Some(value().parse().expect("--checkpoint-pages"))
            }
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

/// A cheap deterministic pseudo-random sequence (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

struct Keys {
    services: Vec<ServiceName>,
    regions: Vec<String>,
}

impl Keys {
    /// `keys` keys as services × regions (100 regions).
    fn new(keys: usize) -> Self {
        let regions = 100.min(keys);
        Self {
            services: (0..keys.div_ceil(regions))
                .map(|i| ServiceName::parse(&format!("svc-{i}")).unwrap())
                .collect(),
            regions: (0..regions).map(|i| format!("region-{i}")).collect(),
        }
    }

    fn observation(&self, k: usize, at: DateTime<Utc>, rng: &mut Rng) -> Observation {
        let roll = rng.unit();
        let (health, cause) = match roll {
            r if r < 0.95 => (Health::Up, Cause::Ok),
            r if r < 0.98 => (Health::Degraded, Cause::SlowResponses),
            r if r < 0.99 => (Health::Down, Cause::ProviderError),
            _ => (Health::Unknown, Cause::Unknown),
        };
        let total = 40.0 * 50f32.powf(rng.unit());
        Observation {
            service: self.services[k / self.regions.len()].clone(),
            component: aiwatch_core::observation::Component::Api,
            region: self.regions[k % self.regions.len()].clone().into(),
            source: Source::Probe,
            at,
            health,
            cause,
            phases: PhaseMs {
                dns: Some(total * 0.05),
                connect: Some(total * 0.1),
                tls: Some(total * 0.15),
                first_byte: Some(total * 0.9),
                total: Some(total),
            },
            complete: None,
            detail: format!("HTTP 200 in {total:.0} ms"),
        }
    }
}

/// This process's user + system CPU time so far (Linux; `None` elsewhere), so the figure can be
/// read on a machine that is busy with other work.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every mainstream Linux build.
    Some(Duration::from_millis(ticks * 10))
}

fn main() {
    let args = parse_args();
    let dir = tempfile::tempdir().unwrap();
    let path = args
        .db
        .clone()
        .unwrap_or_else(|| dir.path().join("bench.db"));
    let defaults = SqliteOptions::default();
    let options = SqliteOptions {
        synchronous_full: args.full_sync,
        writer_cache_mib: args.cache_mib.unwrap_or(defaults.writer_cache_mib),
        wal_autocheckpoint_pages: args
            .checkpoint_pages
            .unwrap_or(defaults.wal_autocheckpoint_pages),
        ..defaults
    };
    let store = SqliteStore::open_with(&path, options).unwrap();
    let keys = Keys::new(args.keys);
    let mut rng = Rng(42);
    let t0: DateTime<Utc> = "2025-03-01T00:00:00Z".parse().unwrap();
    let step = chrono::Duration::milliseconds(args.interval_s * 1000 / args.keys as i64)
        .max(chrono::Duration::milliseconds(1));

    let mut seq = 0usize;
    let mut in_store = Duration::ZERO;
    let mut batch_times = Vec::new();
    const REPORT_EVERY: Duration = Duration::from_secs(10);
    let mut next_report = REPORT_EVERY;
    let mut seq_at_report = 0;
    let started = Instant::now();
    let cpu_started = cpu_time();
    while started.elapsed().as_secs_f64() < args.seconds {
        let batch: Vec<Observation> = (0..args.batch)
            .map(|_| {
                let k = seq % args.keys;
                let at = t0 + step * seq as i32;
                seq += 1;
                keys.observation(k, at, &mut rng)
            })
            .collect();
        let t = Instant::now();
        store.insert_observations(&batch).unwrap();
        let took = t.elapsed();
        in_store += took;
        batch_times.push(took);
        if started.elapsed() >= next_report {
            println!(
                "  {:>4.0} s: {seq} observations, {:.0} obs/s over the last {} s",
                started.elapsed().as_secs_f64(),
                (seq - seq_at_report) as f64 / REPORT_EVERY.as_secs_f64(),
                REPORT_EVERY.as_secs()
            );
            seq_at_report = seq;
            next_report += REPORT_EVERY;
        }
    }
    let wall = started.elapsed();
    let cpu = cpu_time().zip(cpu_started).map(|(end, start)| end - start);
    store.flush().unwrap();

    // A few reads the API makes, against the database just written ("now" = the last write).
    let now = t0 + step * seq as i32;
    let day = TimeRange::last(chrono::Duration::days(1), now);
    let service = Selector::service(keys.services[0].clone());
    let one_key = service
        .clone()
        .component(aiwatch_core::observation::Component::Api)
        .region(keys.regions[0].clone());
    let time = |what: &str, f: &dyn Fn() -> String| {
        let t = Instant::now();
        let answer = f();
        println!(
            "read: {what}: {:.1} ms ({answer})",
            t.elapsed().as_secs_f64() * 1e3
        );
    };
    time("uptime of one service (100 keys), last 24 h", &|| {
        let up = store
            .uptime(
                &service,
                day,
                Some(Duration::from_secs(args.interval_s as u64)),
            )
            .unwrap();
        format!("{} observations", up.counts.total())
    });
    time("uptime of one service (100 keys), last 90 days", &|| {
        let up = store
            .uptime(
                &service,
                TimeRange::last(chrono::Duration::days(90), now),
                None,
            )
            .unwrap();
        format!("{} observations", up.counts.total())
    });
    time("p50/p95/p99 of one key, last 24 h", &|| {
        let p = store
            .latency_percentiles(&one_key, day, &[0.5, 0.95, 0.99])
            .unwrap();
        format!("{p:.0?} ms")
    });
    time(
        "newest 100 raw observations of one service, last 24 h",
        &|| {
            format!(
                "{} rows",
                store.observations(&service, day, 100).unwrap().len()
            )
        },
    );
    time("minute rollups of one key, last 24 h", &|| {
        let r = store.rollups(&one_key, day, Granularity::Minute).unwrap();
        format!("{} rows", r.len())
    });
    time("last observation time of every key (restart)", &|| {
        format!("{} keys", store.last_observation_times().unwrap().len())
    });

    let wal = |p: &std::path::Path| {
        let mut wal = p.as_os_str().to_owned();
        wal.push("-wal");
        std::fs::metadata(wal).map_or(0, |m| m.len())
    };
    let wal_after_flush = wal(&path);
    drop(store);
    let bytes = std::fs::metadata(&path).unwrap().len() + wal(&path);
    batch_times.sort();
    let pct =
        |q: f64| batch_times[((q * batch_times.len() as f64) as usize).min(batch_times.len() - 1)];
    println!(
        "inserted {seq} observations in {} batches of {} over {} keys ({}sync)",
        batch_times.len(),
        args.batch,
        args.keys,
        if args.full_sync { "full " } else { "normal " }
    );
    println!(
        "throughput: {:.0} obs/s wall-clock, {:.0} obs/s inside insert_observations",
        seq as f64 / wall.as_secs_f64(),
        seq as f64 / in_store.as_secs_f64()
    );
    if let Some(cpu) = cpu {
        println!(
            "cpu: {:.1} s for {:.1} s wall ({:.0} obs per CPU-second, batch generation included)",
            cpu.as_secs_f64(),
            wall.as_secs_f64(),
            seq as f64 / cpu.as_secs_f64()
        );
    }
    println!(
        "batch commit latency: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        batch_times.last().unwrap().as_secs_f64() * 1e3
    );
    println!("WAL after flush: {wal_after_flush} bytes");
    println!(
        "database: {:.1} MB after close = {:.0} bytes/observation = {:.0} MB per million \
         (raw rows, minute, hour and day rollups, indexes)",
        bytes as f64 / 1e6,
        bytes as f64 / seq as f64,
        bytes as f64 / seq as f64
    );
}
