//! Developer tasks as code: `cargo xtask bench …` measures aiwatch against loopback fakes.

mod bench_agents;
mod bench_alerts;
mod bench_check;
mod bench_gateway;
mod bench_ingest;
mod bench_reports;
mod bench_serve;
mod browser;
mod dist;
mod e2e;
mod e2e_container;
mod e2e_contract;
mod e2e_gateway;
mod e2e_regions;
mod fuzz;
mod postgres;

use anyhow::{bail, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["bench", "check", rest @ ..] => bench_check::run(rest),
        ["bench", "serve", rest @ ..] => bench_serve::run(rest),
        ["bench", "gateway", rest @ ..] => bench_gateway::run(rest),
        ["bench", "alerts", rest @ ..] => bench_alerts::run(rest),
        ["bench", "agents", rest @ ..] => bench_agents::run(rest),
        ["bench", "reports", rest @ ..] => bench_reports::run(rest),
        ["bench", "ingest", rest @ ..] => bench_ingest::run(rest),
        ["e2e", rest @ ..] => e2e::run(rest),
        ["fuzz", rest @ ..] => fuzz::run(rest),
        ["dist", rest @ ..] => dist::run(rest),
        _ => {
            eprintln!(
                "usage: cargo xtask bench check [--runs N] | cargo xtask bench serve | cargo xtask bench alerts | cargo xtask bench reports | cargo xtask bench agents | cargo xtask bench ingest | cargo xtask e2e [promtool|browser|alerts|install|contract|sdk|local-model|regions|postgres|container] | cargo xtask dist\n\n  bench check   wall time of `aiwatch check` for the whole catalog against loopback\n                fakes (healthy and blackholed), and binary start-up time\n  bench serve   10,000 HTTP checks every 30 s: CPU, RSS, schedule drift, store writes\n  bench gateway [--seconds N] [--connections C] [--rounds R] [--skip-peers]: aiwatch gateway\n                vs direct, nginx, LiteLLM and Portkey under wrk, R head-to-head rounds\n                against nginx, and failover when the primary dies\n  bench alerts  [--services N --rounds R --outbox M]: incident → webhook arrival latency of\n                a real `aiwatch serve`, and the outbox's delivered alerts/s, on loopback\n  bench reports [--reports N]: problem reports/s into SQLite through the report desk\n  bench ingest  [--writers W --batch B --seconds S]: observations/s from W concurrent writers\n                into SQLite and into a throwaway PostgreSQL (release build of the store)\n  bench agents  [--seconds S] [--footprint-seconds S] [--database postgres://… | --postgres local]:\n                observations/s\n                20 agents push into a real serve (SQLite, or PostgreSQL), and one agent's\n                CPU and RSS for 1,000 checks every 30 s\n  e2e           installs promtool and chromium, runs `aiwatch serve` against loopback\n                fakes, checks /metrics with promtool and the dashboard in a browser;\n                alerts verifies the webhook signature with Python's hmac; install runs\n                `cargo install --locked --path crates/aiwatch` into a temp root;\n                contract validates docs/openapi.yaml and fuzzes a live serve with\n                Schemathesis (`st run --checks all`; extra arguments go to st);\n                sdk drives the gateway with the official openai Python SDK, local-model\n                puts a real llama.cpp model (SmolLM2) behind it as the last upstream;\n                regions (root) rehearses a regional outage with a network namespace\n                per agent; postgres runs the store suite and serve against a throwaway\n                PostgreSQL (Debian's postgresql, initdb in a temp dir, 127.0.0.1 only);\n                container builds the Dockerfile and runs it with docker or podman\n                (/healthz through the published port), or says why no engine can and skips\n  dist          the release binary (strip, LTO, one codegen unit), completions, man pages\n                and the systemd unit in $CARGO_TARGET_DIR/dist/aiwatch-dist, with sizes\n  fuzz          [--seconds N] every `never_panic` property, many more cases, fresh seeds"
            );
            bail!("unknown task: {}", args.join(" "))
        }
    }
}
