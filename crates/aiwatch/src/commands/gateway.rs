//! `aiwatch gateway`: the OpenAI-compatible failover proxy, until SIGINT or SIGTERM.

use std::net::SocketAddr;
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

/// How many threads serve clients: one per core, each with its own single-threaded runtime
/// and its own listener on the shared port (SO_REUSEPORT), so a connection stays on the thread
/// that accepted it and no work is handed between threads; `AIWATCH_GATEWAY_THREADS` overrides.
fn edge_threads() -> usize {
    std::env::var("AIWATCH_GATEWAY_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// Fails with "address in use" when another socket already listens on `addr`: the shared
/// listeners below would otherwise join another gateway's group on that port and quietly take
/// half its connections.
fn ensure_port_free(addr: SocketAddr) -> std::io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    let probe = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // SO_REUSEADDR so connections of an earlier run in TIME_WAIT do not count; without
    // SO_REUSEPORT, so any listener does.
    probe.set_reuseaddr(true)?;
    probe.bind(addr)?;
    probe.listen(1).map(drop)
}

/// A listener on `addr` that more listeners may share (SO_REUSEPORT), registered with the
/// runtime current where it is called.
fn bind_shared(addr: SocketAddr, shared: bool) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    #[cfg(unix)]
    if shared {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    socket.listen(1024)
}

pub fn run(config_path: Option<&Path>, args: &GatewayArgs) -> anyhow::Result<ExitCode> {
    let loaded = load::load(config_path)?;
    let settings = loaded.config.gateway.clone().unwrap_or_default();
    let listen = args.listen.unwrap_or(settings.listen);
    tracing_subscriber_init();
    let threads = if cfg!(unix) { edge_threads() } else { 1 };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    // Threads whose edge is still serving. Each thread's requests use upstream connections its
    // own runtime drives (`enter_edge_thread`); the threads still stop together, once every
    // edge has let its last requests finish.
    let (serving_tx, serving_rx) = tokio::sync::watch::channel(threads);
    let serving_tx = std::sync::Arc::new(serving_tx);
    let all_done = move |serving_tx: std::sync::Arc<tokio::sync::watch::Sender<usize>>| {
        let mut rx = serving_rx.clone();
        async move {
            serving_tx.send_modify(|n| *n = n.saturating_sub(1));
            let _ = rx.wait_for(|n| *n == 0).await;
        }
    };
    let (gateway, listener) = runtime.block_on(async {
        let gateway = build(&loaded, &args.network, None, true)?;
        let listener = ensure_port_free(listen)
            .and_then(|()| bind_shared(listen, threads > 1))
            .map_err(|e| exit::config(format!("cannot listen on {listen}: {e}")))?;
        anyhow::Ok((gateway, listener))
    })?;
    let addr = listener.local_addr()?;
    // The other threads' listeners, on the port the first one got (`--listen` may say 0).
    let mut workers = Vec::new();
    for index in 1..threads {
        let worker = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let listener = {
            let _entered = worker.enter();
            bind_shared(addr, true)
                .map_err(|e| exit::config(format!("cannot listen on {addr}: {e}")))?
        };
        let (gw, stop) = (gateway.clone(), stopped(stop_rx.clone()));
        let done = all_done(serving_tx.clone());
        workers.push(
            std::thread::Builder::new()
                .name(format!("gateway-{index}"))
                .spawn(move || {
                    aiwatch_gateway::edge::enter_edge_thread(index);
                    worker.block_on(async move {
                        aiwatch_gateway::server::edge(listener, gw, stop).await;
                        done.await;
                    })
                })
                .context("cannot start a gateway thread")?,
        );
    }
    eprintln!(
        "aiwatch gateway: {} routes ({}), {} upstreams, {threads} threads",
        gateway.aliases.len(),
        gateway.aliases.join(", "),
        gateway.upstreams.len()
    );
    println!("gateway listening on http://{addr}");
    runtime.block_on(async move {
        let shutdown = async move {
            shutdown_signal().await;
            let _ = stop_tx.send(true);
        };
        aiwatch_gateway::run(listener, gateway, shutdown)
            .await
            .map_err(|e| exit::config(e.to_string()))?;
        all_done(serving_tx).await;
        tokio::task::spawn_blocking(move || {
            for worker in workers {
                let _ = worker.join();
            }
        })
        .await
        .context("gateway threads")?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
