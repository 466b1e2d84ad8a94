//! `aiwatch drill ROUTE`: a failover drill — which upstream of a route would carry traffic
//! right now, and is the local plan B installed and able to run?

use std::path::Path;
use std::process::ExitCode;

use aiwatch_gateway::drill::{drill, DrillReport};
use anyhow::Context;

use crate::cli::DrillArgs;
use crate::commands::gateway::build;
use crate::exit;
use crate::load;

pub fn run(config_path: Option<&Path>, args: &DrillArgs) -> anyhow::Result<ExitCode> {
    let loaded = load::load(config_path)?;
    if loaded.config.routes.is_empty() {
        return Err(exit::config(
            "the config has no [[route]] to drill; add one, e.g.\n\n[[route]]\nmodel = \"smart\"\nupstreams = [\"openai-api:gpt-4o-mini\", \"ollama:llama3.2\"]",
        ));
    }
    if !loaded.config.routes.iter().any(|r| r.model == args.route) {
        let names: Vec<&str> = loaded
            .config
            .routes
            .iter()
            .map(|r| r.model.as_str())
            .collect();
        let close = aiwatch_core::catalog::closest_names(&args.route, names.iter().copied());
        let hint = if close.is_empty() {
            String::new()
        } else {
            format!(" Did you mean `{}`?", close.join("`, `"))
        };
        return Err(exit::usage(format!(
            "no route `{}`; the config has: {}.{hint}",
            args.route,
            names.join(", ")
        )));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = runtime.block_on(async {
        let gateway = build(&loaded, &args.network, None, false)?;
        drill(&gateway, &args.route, &load::host_paths())
            .await
            .ok_or_else(|| exit::usage(format!("no route `{}`", args.route)))
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(if report.carrier.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn render(report: &DrillReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "Failover drill for route `{}`", report.route);
    for (i, up) in report.upstreams.iter().enumerate() {
        let mark = if up.ready { "ready" } else { "NOT READY" };
        let timing = up
            .time_to_first_token_ms
            .map(|ms| format!(", first token in {ms:.0} ms"))
            .unwrap_or_default();
        let _ = writeln!(out, "  {}. {:<40} {mark}{timing}", i + 1, up.upstream);
        if let Some(reason) = &up.reason {
            let _ = writeln!(out, "     why: {reason}");
        }
        if let Some(local) = &up.local_models {
            if local.reachable {
                let names: Vec<&str> = local.installed.iter().map(|m| m.name.as_str()).collect();
                let _ = writeln!(
                    out,
                    "     installed: {}",
                    if names.is_empty() {
                        "none".to_owned()
                    } else {
                        names.join(", ")
                    }
                );
                let _ = writeln!(
                    out,
                    "     `{}` installed: {}",
                    up.model,
                    if local.model_installed { "yes" } else { "no" }
                );
            }
            if let Some(size) = local.model_size_bytes {
                let _ = writeln!(
                    out,
                    "     model size {}: {}",
                    aiwatch_core::local_model::gib(size),
                    local.fit.describe()
                );
            }
            if let Some(note) = &local.note {
                let _ = writeln!(out, "     note: {note}");
            }
        }
    }
    if report.upstreams.iter().any(|u| u.local) {
        let _ = writeln!(out, "This machine: {}.", report.machine.describe());
    }
    match &report.carrier {
        Some(c) => {
            let _ = writeln!(
                out,
                "Right now traffic for `{}` would go to {c}.",
                report.route
            );
        }
        None => {
            let _ = writeln!(
                out,
                "No upstream of `{}` can take traffic right now: plan B is not ready.",
                report.route
            );
        }
    }
    out
}
