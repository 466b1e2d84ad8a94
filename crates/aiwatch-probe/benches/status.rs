//! Benchmarks the official-status path: parse throughput of real captured pages (MB/s), and the
//! cost of one poll cycle over 100 status pages on loopback (every page answering 200, then
//! every page answering 304; over plain HTTP and over TLS), with the CPU time it takes.
//!
//! Run: `cargo bench -p aiwatch-probe --bench status -- --warm-up-time 1 --measurement-time 3`

use std::cell::RefCell;
use std::hint::black_box;
use std::time::{Duration, Instant};

use aiwatch_core::service::StatusSource;
use aiwatch_probe::dns::Dns;
use aiwatch_probe::layered::ProbeContext;
use aiwatch_probe::poller::{PollTarget, Poller, PollerOptions};
use aiwatch_probe::status::{parse_feed, parse_google_cloud_incidents, parse_statuspage_summary};
use aiwatch_probe::tls::Trust;
use aiwatch_probe::{DnsChoice, ProxySettings};
use aiwatch_testkit::{DnsAnswer, FakeStatusPage, World};
use criterion::{BenchmarkId, Criterion, Throughput};
use tokio::runtime::Runtime;

const PAGES: usize = 100;

const SUMMARIES: &[(&str, &[u8])] = &[
    (
        "openai-degraded",
        include_bytes!(
            "../tests/fixtures/statuspages/openai-incidentio-summary-degraded-2026-09-29.json"
        ),
    ),
    (
        "openai-operational",
        include_bytes!(
            "../tests/fixtures/statuspages/openai-incidentio-summary-operational-2026-07-09.json"
        ),
    ),
    (
        "anthropic-degraded",
        include_bytes!(
            "../tests/fixtures/statuspages/anthropic-summary-degraded-monitoring-2026-10-07.json"
        ),
    ),
    (
        "anthropic-operational",
        include_bytes!(
            "../tests/fixtures/statuspages/anthropic-summary-operational-2026-09-22.json"
        ),
    ),
    (
        "github-degraded",
        include_bytes!(
            "../tests/fixtures/statuspages/statuspage-summary-degraded-github-2022-11-25.json"
        ),
    ),
];

const GCP: &[u8] = include_bytes!("../tests/fixtures/statuspages/gcp-incidents-2022-06.json");
const ATOM: &[u8] = include_bytes!("../tests/fixtures/statuspages/claude-history-2026-02-04.atom");

/// What every page of the fleet serves: a real degraded summary (7.8 kB, one incident).
const SERVED: &[u8] = include_bytes!(
    "../tests/fixtures/statuspages/anthropic-summary-degraded-monitoring-2026-10-07.json"
);

fn parse_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_summary");
    for (name, body) in SUMMARIES {
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), body, |b, body| {
            b.iter(|| parse_statuspage_summary(black_box(body)).expect("a real summary parses"));
        });
    }
    group.finish();

    let mut group = c.benchmark_group("parse_other");
    group.throughput(Throughput::Bytes(GCP.len() as u64));
    let products = vec!["Vertex Gemini API".to_owned()];
    group.bench_function("gcp-incidents", |b| {
        b.iter(|| parse_google_cloud_incidents(black_box(GCP), &products).expect("parses"));
    });
    group.throughput(Throughput::Bytes(ATOM.len() as u64));
    group.bench_function("claude-history-atom", |b| {
        b.iter(|| parse_feed(black_box(ATOM)).expect("parses"));
    });
    group.finish();
}

/// 100 status pages on loopback and a poller of all of them, on a 2-worker runtime.
struct Fleet {
    runtime: Runtime,
    poller: Poller,
    _pages: Vec<FakeStatusPage>,
    _world: World,
}

impl Fleet {
    fn start(tls: bool, etags: bool) -> Fleet {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let (poller, pages, world) = runtime.block_on(async {
            let world = World::start().await;
            let host = "status.bench.test";
            world.dns.set(
                host,
                DnsAnswer::Addresses(vec!["127.0.0.1".parse().expect("ip")]),
            );
            let identity = world.public_ca.issue(&[host]);
            let mut pages = Vec::with_capacity(PAGES);
            let mut targets = Vec::with_capacity(PAGES);
            for i in 0..PAGES {
                let page = FakeStatusPage::start(tls.then_some(&identity)).await;
                page.set_summary(SERVED);
                if etags {
                    page.set_etag(Some(&format!("v{i}")));
                }
                let url = if tls {
                    page.url(host)
                } else {
                    page.url("127.0.0.1")
                };
                targets.push(PollTarget::new(StatusSource::Statuspage(url)));
                pages.push(page);
            }
            let ctx = ProbeContext {
                dns: Dns::new(&DnsChoice::Server(world.dns.addr()), Duration::from_secs(2))
                    .expect("a resolver"),
                proxies: ProxySettings::none(),
                trust: Trust::new(&[world.public_ca_path()]).expect("the test root"),
            };
            let options = PollerOptions {
                request_timeout: Duration::from_secs(10),
                ..PollerOptions::default()
            };
            (Poller::new(ctx, targets, options), pages, world)
        });
        let fleet = Fleet {
            runtime,
            poller,
            _pages: pages,
            _world: world,
        };
        // Prime: the first cycle reads every page (and, with ETags, learns them).
        fleet.cycle();
        if etags {
            fleet.cycle();
        }
        fleet.check(etags);
        fleet
    }

    fn cycle(&self) {
        self.runtime.block_on(self.poller.poll_all());
    }

    /// Fails loudly if the cycle did not do what the benchmark says it measures.
    fn check(&self, etags: bool) {
        for state in self.poller.snapshot() {
            assert!(
                state.last_error.is_none() && state.status.is_some(),
                "{state:?}"
            );
            if etags {
                assert!(state.stats.not_modified >= 1, "no 304: {state:?}");
            }
        }
    }
}

/// CPU time (user + system) of this whole process, from /proc (Linux; 100 ticks a second).
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

#[derive(Default)]
struct Usage {
    cycles: u64,
    wall: Duration,
    cpu: Duration,
}

fn poll_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group(format!("poll_cycle_{PAGES}_pages"));
    group.sample_size(10);
    let mut report = Vec::new();
    for (name, tls, etags) in [
        ("http_all_200", false, false),
        ("http_all_304", false, true),
        ("https_all_200", true, false),
        ("https_all_304", true, true),
    ] {
        let usage = RefCell::new(Usage::default());
        let mut fleet = None;
        group.bench_function(name, |b| {
            let fleet = fleet.get_or_insert_with(|| Fleet::start(tls, etags));
            b.iter_custom(|iters| {
                let cpu_before = cpu_time();
                let started = Instant::now();
                for _ in 0..iters {
                    fleet.cycle();
                }
                let wall = started.elapsed();
                if let (Some(before), Some(after)) = (cpu_before, cpu_time()) {
                    let mut usage = usage.borrow_mut();
                    usage.cycles += iters;
                    usage.wall += wall;
                    usage.cpu += after.saturating_sub(before);
                }
                wall
            });
        });
        if let Some(fleet) = &fleet {
            fleet.check(etags);
        }
        let usage = usage.into_inner();
        if usage.cycles > 0 {
            report.push(format!(
                "{name}: {} cycles, wall {:.2} ms/cycle, CPU {:.2} ms/cycle ({:.2} cores busy; client and fake servers share the process)",
                usage.cycles,
                usage.wall.as_secs_f64() * 1000.0 / usage.cycles as f64,
                usage.cpu.as_secs_f64() * 1000.0 / usage.cycles as f64,
                usage.cpu.as_secs_f64() / usage.wall.as_secs_f64().max(1e-9),
            ));
        }
    }
    group.finish();
    for line in report {
        println!("poll cycle CPU · {line}");
    }
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    parse_benches(&mut criterion);
    poll_benches(&mut criterion);
    criterion.final_summary();
}
