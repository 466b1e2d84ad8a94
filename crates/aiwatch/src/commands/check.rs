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
    let evidence = runtime.block_on(async {
        let checker = Checker::new(options).map_err(|e| match e {
            aiwatch_probe::Error::CaFile { .. } => exit::usage(e.to_string()),
            other => anyhow::Error::new(other),
        })?;
        checker.run(&services, &keys).await.map_err(|e| match e {
            aiwatch_probe::Error::CaFile { .. } => exit::config(e.to_string()),
            other => anyhow::Error::new(other),
        })
    })?;
    // Resolver and connection tasks must not keep the process alive past the report.
    runtime.shutdown_timeout(Duration::from_millis(50));
    if let Some(spinner) = spinner {
        spinner.finish_and_clear();
    }

    let now = chrono::Utc::now();
    let verdicts: Vec<Verdict> = services
        .iter()
        .zip(&evidence)
        .map(|(service, evidence)| classify(service, evidence, now))
        .collect();

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
        let plan_b = aiwatch_core::plan_b::advice(&verdicts);
        if !plan_b.is_empty() && !quiet {
            println!("\nKeep working:");
            for line in plan_b {
                println!("  • {line}");
            }
        }
    }
    let fault = Fault::worst(verdicts.iter().map(Verdict::fault));
    Ok(ExitCode::from(fault.exit_code()))
}
