//! `aiwatch agent`: runs a server's checks from this vantage point and pushes what it sees.

use std::process::ExitCode;

use aiwatch_core::observation::Region;
use aiwatch_core::secret::ApiKey;
use aiwatch_probe::{CheckOptions, ProxySettings};

use crate::cli::AgentArgs;
use crate::exit;
use crate::load;

pub fn run(args: &AgentArgs) -> anyhow::Result<ExitCode> {
    aiwatch_core::config::validate_region(&args.region)
        .map_err(|e| exit::usage(format!("--region: {e}")))?;
    let region = Region::new(args.region.clone());
    let token = load::env_secret(&args.token_env)
        .and_then(ApiKey::new)
        .ok_or_else(|| {
            exit::usage(format!(
                "{} is not set: put the token the server's [[agent]] entry for region \"{region}\" names there (or name another variable with --token-env)",
                args.token_env
            ))
        })?;
    let dns = load::network(args.network.dns_server.as_deref(), &args.network.ca_file)?;
    let proxies = ProxySettings::from_env().map_err(|e| exit::config(e.to_string()))?;
    let check = CheckOptions {
        timeout: std::time::Duration::from_secs(5),
        dns,
        ca_files: args.network.ca_file.clone(),
        control_url: None,
        deep: false,
        proxies,
    };
    let buffer = match &args.buffer {
        Some(path) => path.clone(),
        None => dirs::data_dir()
            .map(|d| d.join("aiwatch"))
            .unwrap_or_else(|| std::path::PathBuf::from("."))
            .join(format!("agent-{region}.db")),
    };
    if let Some(parent) = buffer.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            exit::usage(format!(
                "cannot create the buffer folder {}: {e}",
                parent.display()
            ))
        })?;
    }
    let options = aiwatch_agent::AgentOptions {
        region,
        check: check.clone(),
        buffer,
        capacity: args.buffer_capacity,
        allowed_keys: args.allow_key.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    crate::commands::serve::tracing_subscriber_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let probes = aiwatch_probe::Checker::new(check).map_err(|e| exit::config(e.to_string()))?;
        let server_ca = match &args.server_ca {
            Some(path) => Some(
                probes
                    .context()
                    .trust
                    .expected_verifier(path)
                    .map_err(|e| exit::usage(format!("--server-ca: {e}")))?,
            ),
            None => None,
        };
        let client = aiwatch_agent::ServerClient::new(
            &args.server,
            token,
            probes.context().clone(),
            server_ca,
            std::time::Duration::from_secs(15),
        )
        .map_err(|e| exit::usage(format!("--server: {e}")))?;
        match aiwatch_agent::run(options, client, crate::commands::serve::shutdown_signal()).await {
            Ok(summary) => {
                eprintln!(
                    "aiwatch agent: stopped; {} observations made, {} delivered this run, {} waiting in the buffer",
                    summary.checks, summary.delivered, summary.pending
                );
                if summary.rejected > 0 {
                    eprintln!(
                        "aiwatch agent: the server refused {} observation(s) one by one; they were given up (the log says why)",
                        summary.rejected
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(aiwatch_agent::Error::Refused { status, reason }) => {
                eprintln!("aiwatch agent: the server refused this agent ({status}): {reason}");
                Ok(ExitCode::from(2))
            }
            Err(e) => Err(exit::config(e.to_string())),
        }
    })
}
