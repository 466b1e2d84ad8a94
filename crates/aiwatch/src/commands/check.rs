//! `aiwatch check`: one diagnosis per service, as a report or JSON, with an exit code that says
//! who is at fault.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use aiwatch_core::classify::classify;
use aiwatch_core::verdict::Fault;
use aiwatch_core::Verdict;
use aiwatch_probe::{CheckOptions, Checker, ProxySettings};
use anyhow::Context;

use crate::cli::CheckArgs;
use crate::exit;
use crate::load;
use crate::report;

pub fn run(
    config_path: Option<&Path>,
    args: &CheckArgs,
    verbose: bool,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    let loaded = load::load(config_path)?;
    let services = load::select_services(&loaded.catalog, &args.services, || {
        load::default_watch_list(&loaded)
    })?;
    let timeout = load::timeout(args.timeout.as_deref(), &loaded.config)?;
    let dns = load::network(args.network.dns_server.as_deref(), &args.network.ca_file)?;
    let proxies = ProxySettings::from_env().map_err(|e| exit::config(e.to_string()))?;
    let options = CheckOptions {
        timeout,
        dns,
        ca_files: args.network.ca_file.clone(),
        control_url: (!args.no_control).then(|| loaded.config.defaults.control_url.clone()),
        deep: args.deep,
        proxies,
    };
    let keys = load::read_keys(&loaded.catalog);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let spinner = (!args.json && std::io::stderr().is_terminal())
        .then(|| report::spinner(services.len(), timeout));
    let checker = runtime
        .block_on(async { Checker::new(options) })
        .map_err(|e| match e {
            aiwatch_probe::Error::CaFile { .. } => exit::usage(e.to_string()),
            other => anyhow::Error::new(other),
        })?;
    let evidence = runtime
        .block_on(checker.run(&services, &keys))
        .map_err(|e| match e {
            aiwatch_probe::Error::CaFile { .. } => exit::config(e.to_string()),
            other => anyhow::Error::new(other),
        })?;

    let now = chrono::Utc::now();
    let verdicts: Vec<Verdict> = services
        .iter()
        .zip(&evidence)
        .map(|(service, evidence)| classify(service, evidence, now))
        .collect();
    // Every cloud API fails: can a local model take over here, now?
    let local = (!args.json && !quiet && aiwatch_core::plan_b::every_cloud_api_fails(&verdicts))
        .then(|| runtime.block_on(local_plan(&checker, &loaded.catalog, &keys)));
    // Resolver and connection tasks must not keep the process alive past the report.
    runtime.shutdown_timeout(Duration::from_millis(50));
    if let Some(spinner) = spinner {
        spinner.finish_and_clear();
    }

    if args.json {
        println!("{}", serde_json::to_string_pretty(&verdicts)?);
    } else {
        let detail = if quiet {
            report::Detail::Quiet
        } else if verbose {
            report::Detail::Verbose
        } else {
            report::Detail::Normal
        };
        print!(
            "{}",
            report::render(&services, &verdicts, detail, report::use_color())
        );
        if let Some(server) = &args.server {
            let lines = elsewhere(server, &services, &verdicts, &args.network)?;
            if !lines.is_empty() {
                println!("\nElsewhere (what {server} sees):");
                for line in lines {
                    println!("  • {line}");
                }
            }
        }
        let plan_b = aiwatch_core::plan_b::advice(&verdicts);
        if !plan_b.is_empty() && !quiet {
            println!("\nKeep working:");
            for line in plan_b {
                println!("  • {line}");
            }
            for line in local.unwrap_or_default() {
                println!("    {line}");
            }
        }
    }
    let fault = Fault::worst(verdicts.iter().map(Verdict::fault));
    Ok(ExitCode::from(fault.exit_code()))
}

/// One line per service on what the server's vantage points see, joined to the local verdict
/// by the core (`compare_with_elsewhere`); a server that cannot be asked says so once.
fn elsewhere(
    server: &str,
    services: &[aiwatch_core::Service],
    verdicts: &[Verdict],
    network: &crate::cli::NetworkArgs,
) -> anyhow::Result<Vec<String>> {
    use aiwatch_core::evidence::{HttpOutcome, Purpose};
    use aiwatch_core::observation::Region;
    use aiwatch_core::regions::{compare_with_elsewhere, ElsewhereReading};
    use aiwatch_probe::layered::{probe, Ask};

    let server = server.trim_end_matches('/').to_owned();
    aiwatch_core::config::validate_http_url(&server)
        .map_err(|e| exit::usage(format!("--server: {e}")))?;
    let token =
        load::env_secret("AIWATCH_SERVER_TOKEN").and_then(aiwatch_core::secret::ApiKey::new);
    if token.is_some() {
        if let Some(refusal) =
            aiwatch_core::key_route::plain_http_refusal(&server, "AIWATCH_SERVER_TOKEN", false)
        {
            return Err(exit::usage(format!("--server: {refusal}")));
        }
    }
    let checker = load::plain_checker(network, Duration::from_secs(10))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut lines = Vec::new();
    for (service, verdict) in services.iter().zip(verdicts) {
        let url = format!("{server}/api/v1/services/{}/regions", service.name);
        let mut headers = vec![("accept", "application/json".to_owned())];
        if let Some(token) = &token {
            headers.push(("authorization", format!("Bearer {}", token.expose())));
        }
        let probed = runtime.block_on(probe(
            checker.context(),
            Purpose::Api,
            &url,
            Ask {
                headers,
                carries_key: token.is_some(),
                body_cap: 1024 * 1024,
                ..Ask::get()
            },
            None,
            deadline,
        ));
        let status = match &probed.report.http {
            Some(HttpOutcome::Response(r)) => r.status,
            _ => {
                lines.push(format!(
                    "{server} could not be asked: {}",
                    aiwatch_probe::official::failure_text(&probed.report)
                ));
                break;
            }
        };
        if status == 404 {
            lines.push(format!("{}: the server does not watch it", service.name));
            continue;
        }
        if status != 200 {
            lines.push(format!(
                "{server} answered {status} (set AIWATCH_SERVER_TOKEN if it has a token)"
            ));
            break;
        }
        let body: serde_json::Value = serde_json::from_slice(&probed.body).unwrap_or_default();
        let others: Vec<ElsewhereReading> = body["regions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| {
                let name = r["region"].as_str()?;
                let status = serde_json::from_value(r["state"].clone()).ok()?;
                let region = if name == aiwatch_core::observation::LOCAL_REGION {
                    Region::new("the server")
                } else {
                    Region::new(name)
                };
                Some(ElsewhereReading { region, status })
            })
            .collect();
        let seen: Vec<String> = others
            .iter()
            .map(|o| format!("{} {}", o.region, o.status))
            .collect();
        let verdict_line = compare_with_elsewhere(verdict.status, &others)
            .unwrap_or_else(|| "no vantage point there can tell yet".to_owned());
        lines.push(format!(
            "{}: {} — {verdict_line}",
            service.name,
            seen.join(", ")
        ));
    }
    runtime.shutdown_timeout(Duration::from_millis(50));
    Ok(lines)
}

/// How long the local runtimes may take to list their models.
const LOCAL_TIMEOUT: Duration = Duration::from_secs(3);

/// The local plan B's readiness: each local runtime's models against this machine's memory
/// and GPUs (read here; judged by the core).
async fn local_plan(
    checker: &Checker,
    catalog: &aiwatch_core::Catalog,
    keys: &std::collections::HashMap<aiwatch_core::ServiceName, aiwatch_core::secret::ApiKey>,
) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + LOCAL_TIMEOUT;
    let paths = load::host_paths();
    // One shared deadline: asking them in turn takes no longer than at once.
    let runtimes = async {
        let mut found = Vec::new();
        for service in catalog.iter().filter(|s| s.local) {
            let key = keys.get(&service.name);
            found.push(
                aiwatch_probe::host::local_runtime(checker.context(), service, key, deadline).await,
            );
        }
        found
    };
    let (runtimes, machine) = tokio::join!(runtimes, aiwatch_probe::host::machine(&paths));
    aiwatch_core::local_model::readiness(&runtimes, &machine)
}
