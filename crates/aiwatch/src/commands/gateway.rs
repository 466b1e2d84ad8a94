//! `aiwatch gateway`: the OpenAI-compatible failover proxy, until SIGINT or SIGTERM.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use aiwatch_gateway::auth::ClientKeys;
use aiwatch_gateway::{Gateway, GatewaySetup};
use anyhow::Context;

use crate::cli::{GatewayArgs, NetworkArgs};
use crate::commands::serve::{shutdown_signal, tracing_subscriber_init};
use crate::exit;
use crate::load::{self, Loaded};

/// The keys clients must present, from the variable `[gateway] client_keys_env` names; none
/// (when `required`) or a short one is refused (`config check` asks the same).
pub(crate) fn client_keys(
    settings: &aiwatch_core::config::GatewayConfig,
    required: bool,
) -> anyhow::Result<ClientKeys> {
    let raw_keys = std::env::var(&settings.client_keys_env).unwrap_or_default();
    let client_keys = ClientKeys::parse(&raw_keys);
    if required && client_keys.is_empty() {
        return Err(exit::config(format!(
            "no gateway keys: set {} to one or more comma-separated keys that clients must present (the variable is named by [gateway] client_keys_env)",
            settings.client_keys_env
        )));
    }
    if let Some((position, len)) = client_keys.too_short(aiwatch_gateway::auth::MIN_KEY_LEN) {
        return Err(exit::config(format!(
            "gateway key {position} in {} is {len} characters; use at least {} (e.g. `openssl rand -hex 24`)",
            settings.client_keys_env,
            aiwatch_gateway::auth::MIN_KEY_LEN
        )));
    }
    Ok(client_keys)
}

/// Builds the gateway from the loaded config; the keys clients must present are required.
pub fn build(
    loaded: &Loaded,
    network: &NetworkArgs,
    monitor: Option<tokio::sync::watch::Receiver<aiwatch_gateway::health::MonitorView>>,
    require_client_keys: bool,
) -> anyhow::Result<Arc<Gateway>> {
    let settings = loaded.config.gateway.clone().unwrap_or_default();
    let client_keys = client_keys(&settings, require_client_keys)?;
    let dns = load::network(network.dns_server.as_deref(), &network.ca_file)?;
    let setup = GatewaySetup {
        config: loaded.config.clone(),
        catalog: loaded.catalog.clone(),
        keys: load::read_keys(&loaded.catalog),
        client_keys,
        network: aiwatch_probe::CheckOptions {
            timeout: loaded.config.defaults.timeout,
            dns,
            ca_files: network.ca_file.clone(),
            control_url: None,
            deep: false,
            proxies: aiwatch_probe::ProxySettings::from_env()
                .map_err(|e| exit::config(e.to_string()))?,
        },
        monitor,
    };
    Gateway::new(setup).map_err(|e| exit::config(e.to_string()))
}

pub fn run(config_path: Option<&Path>, args: &GatewayArgs) -> anyhow::Result<ExitCode> {
    let loaded = load::load(config_path)?;
    let settings = loaded.config.gateway.clone().unwrap_or_default();
    let listen = args.listen.unwrap_or(settings.listen);
    tracing_subscriber_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let gateway = build(&loaded, &args.network, None, true)?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| exit::config(format!("cannot listen on {listen}: {e}")))?;
        let addr = listener.local_addr()?;
        eprintln!(
            "aiwatch gateway: {} routes ({}), {} upstreams",
            gateway.aliases.len(),
            gateway.aliases.join(", "),
            gateway.upstreams.len()
        );
        println!("gateway listening on http://{addr}");
        aiwatch_gateway::run(listener, gateway, shutdown_signal())
            .await
            .map_err(|e| exit::config(e.to_string()))
    })?;
    Ok(ExitCode::SUCCESS)
}
