//! Benchmarks `aiwatch serve` at scale: 10,000 HTTP checks every 30 s against one loopback fake.
//! Reports the daemon's average CPU, peak RSS, schedule drift (p99 and max) and store writes.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aiwatch_testkit::{canned, FakeServer, Reply};
use anyhow::{bail, Context, Result};

use crate::e2e::http_get;

pub fn run(args: &[&str]) -> Result<()> {
    let (checks, seconds) = match args {
        [] => (10_000usize, 150u64),
        ["--checks", n, "--seconds", s] => (n.parse()?, s.parse()?),
        _ => bail!("usage: cargo xtask bench serve [--checks N --seconds S]"),
    };
    let binary = crate::bench_check::build_release()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let _guard = runtime.enter();
    let fake = runtime.block_on(FakeServer::start(None));
    fake.fallback(Reply::text(200, "text/plain", "ok"));
    fake.route("GET", "/generate_204", canned::generate_204());
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("bench.toml");
    let base = format!("http://{}", fake.addr());
    let mut text = format!(
        "[defaults]\ninterval = \"30s\"\ntimeout = \"5s\"\ncontrol_url = \"{base}/generate_204\"\n"
    );
    for i in 0..checks {
        let _ = write!(
            text,
            "\n[[service]]\nname = \"svc-{i:05}\"\nkind = \"http\"\nweb_url = \"{base}/h/{i}\"\n"
        );
    }
    std::fs::write(&config, text)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let db = dir.path().join("bench.db");
    let mut child = Command::new(&binary)
        .arg("--config")
        .arg(&config)
        .args(["serve", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        // Only the benchmark's own services: the built-in catalog stays unprobed.
        .args((0..checks).map(|i| format!("svc-{i:05}")))
        .arg("--db")
        .arg(&db)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start aiwatch serve")?;
    let pid = child.id();
    let base_url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while http_get(&base_url, "/readyz").map(|r| r.0).unwrap_or(0) != 200 {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            bail!("serve did not become ready");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "aiwatch serve: {checks} HTTP checks every 30 s against one loopback fake; ready after {:.1} s; measuring {seconds} s",
        started.elapsed().as_secs_f64()
    );
    // The first interval spreads the checks; measure CPU from then on.
    std::thread::sleep(Duration::from_secs(5));
    let (cpu0, t0) = (cpu_seconds(pid)?, Instant::now());
    let stored0 = metric(&base_url, "aiwatch_store_observations_total")?;
    std::thread::sleep(Duration::from_secs(seconds));
    let (cpu1, elapsed) = (cpu_seconds(pid)?, t0.elapsed());
    let metrics = http_get(&base_url, "/metrics")?.1;
    let stored1 = metric_in(&metrics, "aiwatch_store_observations_total");
    let rss_peak = status_kb(pid, "VmHWM:")?;
    let rss_now = status_kb(pid, "VmRSS:")?;
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    let _ = child.wait();

    let cpu = (cpu1 - cpu0) / elapsed.as_secs_f64() * 100.0;
    let (p50, p99) = (
        drift_quantile(&metrics, 0.5),
        drift_quantile(&metrics, 0.99),
    );
    let drift_max = metric_in(&metrics, "aiwatch_schedule_drift_max_seconds");
    let writes = metric_in(&metrics, "aiwatch_store_write_seconds_count");
    let write_sum = metric_in(&metrics, "aiwatch_store_write_seconds_sum");
    let skipped = metric_in(&metrics, "aiwatch_schedule_skipped_total");
    let observations = stored1 - stored0;
    println!("  CPU (average, of one core)        {cpu:.1} %   (goal < 25 %)");
    println!(
        "  RSS peak / now                    {:.0} MB / {:.0} MB   (goal < 150 MB)",
        rss_peak / 1024.0,
        rss_now / 1024.0
    );
    println!(
        "  schedule drift p50 / p99 / max    ≤{:.1} ms / ≤{:.1} ms / {:.1} ms   (goal p99 < 1 s)",
        p50 * 1e3,
        p99 * 1e3,
        drift_max * 1e3
    );
    println!("  checks skipped (still running)    {skipped:.0}");
    println!(
        "  observations stored               {observations:.0} in {:.0} s = {:.0}/s",
        elapsed.as_secs_f64(),
        observations / elapsed.as_secs_f64()
    );
    if writes > 0.0 {
        let mean = write_sum / writes;
        println!(
            "  store batch writes                {writes:.0}, mean {:.2} ms each; DB {:.1} MB",
            mean * 1e3,
            file_mb(&db) + file_mb(&db.with_extension("db-wal"))
        );
    }
    Ok(())
}

pub(crate) fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 (1-based) of the whole line: 12 and 13 after ')'.
    let ticks: f64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0);
    Ok(ticks / 100.0)
}

pub(crate) fn status_kb(pid: u32, field: &str) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .context("no such field in /proc status")
}

fn file_mb(path: &Path) -> f64 {
    std::fs::metadata(path).map_or(0.0, |m| m.len() as f64 / 1e6)
}

fn metric(base_url: &str, name: &str) -> Result<f64> {
    Ok(metric_in(&http_get(base_url, "/metrics")?.1, name))
}

/// The value of an unlabelled sample.
pub(crate) fn metric_in(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The upper bound of the bucket holding quantile `q` of the drift histogram.
fn drift_quantile(text: &str, q: f64) -> f64 {
    let buckets: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("aiwatch_schedule_drift_seconds_bucket{le=\""))
        .filter_map(|rest| {
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect();
    let total = buckets.last().map_or(0.0, |b| b.1);
    buckets
        .iter()
        .find(|(_, count)| *count >= total * q)
        .map_or(f64::NAN, |b| b.0)
}
