//! `aiwatch serve`: loads the config, opens the store, and runs the daemon until SIGINT or
//! SIGTERM.

use aiwatch_core::observation::Component;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use aiwatch_core::assess::AssessConfig;
use aiwatch_probe::poller::PollerOptions;
use aiwatch_probe::{CheckOptions, ProxySettings};
use aiwatch_server::engine::EngineOptions;
use aiwatch_server::scheduler::Limits;
use aiwatch_server::DaemonConfig;
use aiwatch_store::Database;
use aiwatch_store::Retention;
use anyhow::Context;

use aiwatch_gateway::health::MonitorView;

use crate::cli::ServeArgs;
use crate::commands::gateway;
use crate::exit;
use crate::load;

/// Which database: `--db PATH` (an SQLite file), else the config's `sqlite:PATH` or
/// `postgres://…`, else an SQLite file in the data dir.
fn database(args: &ServeArgs, configured: Option<&str>) -> anyhow::Result<Database> {
    if let Some(path) = &args.db {
        return Ok(Database::Sqlite(path.clone()));
    }
    match configured {
        Some(url) => Database::parse(url).map_err(|e| exit::config(format!("[server] {e}"))),
        None => {
            let dir = dirs::data_dir()
                .map(|d| d.join("aiwatch"))
                .unwrap_or_else(|| PathBuf::from("."));
            Ok(Database::Sqlite(dir.join("aiwatch.db")))
        }
    }
}

/// Who may read what: the token `[server] auth_token_env` names, if any. Listening beyond
/// this machine without one is said loudly on stderr.
fn access(
    server: &aiwatch_core::config::ServerConfig,
    listen: std::net::SocketAddr,
) -> anyhow::Result<aiwatch_server::access::Access> {
    if let Some(access) = token_access(server)? {
        return Ok(access);
    }
    if !listen.ip().is_loopback() {
        eprintln!(
            "aiwatch serve: WARNING: listening on {listen} with no token: anyone who can reach it reads the API, the metrics and the dashboard. Set [server] auth_token_env (and put TLS in front; see the README's deployment section)."
        );
    }
    Ok(aiwatch_server::access::Access::open())
}

/// The access the token `[server] auth_token_env` names gives, `None` without one; an unset
/// or short token is refused (`config check` asks the same).
pub(crate) fn token_access(
    server: &aiwatch_core::config::ServerConfig,
) -> anyhow::Result<Option<aiwatch_server::access::Access>> {
    let Some(var) = server.auth_token_env.as_deref() else {
        return Ok(None);
    };
    let token = std::env::var(var).unwrap_or_default();
    if token.trim().is_empty() {
        return Err(exit::config(format!(
            "[server] auth_token_env names {var}, which is not set or empty"
        )));
    }
    aiwatch_server::access::Access::with_token(&token, server.public)
        .map(Some)
        .map_err(|e| exit::config(format!("[server] auth_token_env ({var}): {e}")))
}

/// The vantage points `serve` accepts pushes from: each `[[agent]]` with its token read from
/// the variable it names (set, at least 20 characters, and no two regions sharing one), the
/// grace period and the quorum. `config check` builds the same.
pub fn region_options(
    config: &aiwatch_core::config::Config,
) -> anyhow::Result<aiwatch_server::agents::RegionOptions> {
    use aiwatch_core::config::MIN_AGENT_TOKEN_LEN;
    let mut agents: Vec<aiwatch_server::agents::DeclaredAgent> = Vec::new();
    for entry in &config.agents {
        let var = &entry.token_env;
        let region = &entry.region;
        let token = load::env_secret(var)
            .and_then(aiwatch_core::secret::ApiKey::new)
            .ok_or_else(|| {
                exit::config(format!(
                "[[agent]] region \"{region}\": token_env names {var}, which is not set or empty"
            ))
            })?;
        if token.expose().trim().chars().count() < MIN_AGENT_TOKEN_LEN {
            return Err(exit::config(format!(
                "[[agent]] region \"{region}\": the token in {var} is shorter than {MIN_AGENT_TOKEN_LEN} characters (e.g. `openssl rand -hex 24`)"
            )));
        }
        if let Some(twin) = agents.iter().find(|a| a.token.expose() == token.expose()) {
            return Err(exit::config(format!(
                "[[agent]] region \"{region}\": {var} holds the same token as region \"{}\"; give each region its own",
                twin.region
            )));
        }
        agents.push(aiwatch_server::agents::DeclaredAgent {
            region: region.clone(),
            token,
        });
    }
    let interval = config.defaults.interval;
    Ok(aiwatch_server::agents::RegionOptions {
        agents,
        grace: config
            .server
            .agent_grace
            .unwrap_or_else(|| (interval * 3).max(std::time::Duration::from_secs(90))),
        quorum: config.server.quorum,
        control_url: Some(config.defaults.control_url.clone()),
    })
}

/// This process's name among the instances sharing a database: host, process id and a
/// random part (a restarted process is a new instance; its old leases simply expire).
fn instance_name() -> String {
    // A host name is short; whatever the file holds, at most 64 plain characters are used.
    let mut raw = Vec::new();
    let _ = std::fs::File::open("/etc/hostname")
        .and_then(|f| std::io::Read::read_to_end(&mut std::io::Read::take(f, 256), &mut raw));
    let host: String = String::from_utf8_lossy(&raw)
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
        .take(64)
        .collect();
    let host = if host.is_empty() {
        "host".to_owned()
    } else {
        host
    };
    format!("{host}-{}-{:08x}", std::process::id(), fastrand::u32(..))
}

/// `serve` runs the gateway too when the config has `[gateway]` and routes.
pub(crate) fn runs_gateway(config: &aiwatch_core::Config) -> bool {
    config.gateway.is_some() && !config.routes.is_empty()
}

pub fn run(config_path: Option<&Path>, args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let loaded = load::load(config_path)?;
    let services = load::select_services(&loaded.catalog, &args.services, || {
        load::default_watch_list(&loaded)
    })?;
    let dns = load::network(args.network.dns_server.as_deref(), &args.network.ca_file)?;
    let listen = args.listen.unwrap_or(loaded.config.server.listen);
    let db = database(args, loaded.config.server.database.as_deref())?;
    if let Database::Sqlite(path) = &db {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).with_context(|| {
                format!("cannot create the database folder {}", parent.display())
            })?;
        }
    }
    // Opened before the async runtime starts: the PostgreSQL client blocks.
    let store = aiwatch_store::open(&db)
        .map_err(|e| exit::config(format!("cannot open the database {db}: {e}")))?;
    let access = access(&loaded.config.server, listen)?;
    let alerts = crate::commands::alert::channels(&loaded.config.alerts, &args.network.ca_file)?;
    let dashboard_url = loaded
        .config
        .server
        .public_url
        .clone()
        .unwrap_or_else(|| local_url(listen));
    let defaults = &loaded.config.defaults;
    let mut config = DaemonConfig {
        services,
        check: CheckOptions {
            timeout: defaults.timeout,
            dns,
            ca_files: args.network.ca_file.clone(),
            control_url: Some(defaults.control_url.clone()),
            deep: false,
            proxies: ProxySettings::from_env().map_err(|e| exit::config(e.to_string()))?,
        },
        keys: load::read_keys(&loaded.catalog),
        store,
        engine: EngineOptions {
            timeout: defaults.timeout,
            default_interval: defaults.interval,
            assess: AssessConfig::from_defaults(defaults),
            page_name: "aiwatch".into(),
            stream_interval: defaults.stream_interval,
            crowd: loaded.config.crowd.clone(),
            regions: region_options(&loaded.config)?,
            // On a shared database, instances split the checks by leases under this name.
            instance: matches!(db, Database::Postgres(_)).then(instance_name),
        },
        limits: Limits::default(),
        access,
        http: aiwatch_inbound::Limits {
            max_connections: loaded.config.server.max_connections as usize,
            header_timeout: loaded.config.server.header_timeout,
            ..aiwatch_inbound::Limits::default()
        },
        retention: Retention {
            raw: chrono::Duration::from_std(loaded.config.server.raw_retention)
                .unwrap_or(chrono::Duration::days(7)),
            ..Retention::default()
        },
        poll: PollerOptions {
            request_timeout: defaults.timeout.max(std::time::Duration::from_secs(10)),
            ..PollerOptions::default()
        },
        alerts,
        alert_retry: aiwatch_alerts::RetryPolicy::default(),
        dashboard_url,
        usage_spikes: None,
        feeds: loaded.config.feeds.clone(),
    };

    tracing_subscriber_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let with_gateway = runs_gateway(&loaded.config);
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| exit::config(format!("cannot listen on {listen}: {e}")))?;
        eprintln!(
            "aiwatch serve: watching {} services, API on http://{}, database {}",
            config.services.len(),
            listener.local_addr()?,
            db
        );
        // With [gateway] and routes, the gateway runs too, fed by the monitor's view.
        let (monitor_tx, monitor_rx) = tokio::sync::watch::channel(MonitorView::new());
        if with_gateway {
            let gateway = gateway::build(&loaded, &args.network, Some(monitor_rx), true)?;
            config.usage_spikes = Some(usage_spikes(gateway.clone()));
            let gateway_listen = gateway.settings.listen;
            let gateway_listener = tokio::net::TcpListener::bind(gateway_listen)
                .await
                .map_err(|e| {
                    exit::config(format!("[gateway] cannot listen on {gateway_listen}: {e}"))
                })?;
            eprintln!(
                "aiwatch serve: gateway on http://{} ({} routes)",
                gateway_listener.local_addr()?,
                gateway.aliases.len()
            );
            tokio::spawn(async move {
                if let Err(e) =
                    aiwatch_gateway::run(gateway_listener, gateway, shutdown_signal()).await
                {
                    tracing::error!(error = %e, "the gateway stopped");
                }
            });
        }
        aiwatch_server::run(listener, config, shutdown_signal(), move |running| {
            if with_gateway {
                tokio::spawn(feed_monitor_view(running.engine, monitor_tx));
            }
        })
        .await
        .map_err(|e| exit::config(e.to_string()))
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The dashboard's address when `[server] public_url` is not set: the listen address, with a
/// wildcard address read as this machine.
fn local_url(listen: std::net::SocketAddr) -> String {
    let host = match listen.ip() {
        ip if ip.is_unspecified() => "localhost".to_owned(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    format!("http://{host}:{}", listen.port())
}

/// The gateway's keys whose usage is far above their normal, for `usage_spike` alerts.
fn usage_spikes(gateway: Arc<aiwatch_gateway::Gateway>) -> aiwatch_server::alerting::UsageSource {
    Arc::new(move || {
        let minute = gateway.minute();
        gateway.ledger.alert_spikes(minute, chrono::Utc::now())
    })
}

/// Tells the gateway which services the monitor sees in an outage, every few seconds.
async fn feed_monitor_view(
    engine: Arc<aiwatch_server::engine::Engine>,
    view: tokio::sync::watch::Sender<MonitorView>,
) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        tick.tick().await;
        let mut outages = MonitorView::new();
        for c in engine.services_now().into_iter().flat_map(|s| s.components) {
            // Only the API matters to the gateway: a web front-end outage does not stop it.
            if c.key.component == Component::Api && c.assessment.warrants_failover() {
                let since = c
                    .since
                    .map(|s| format!(" since {}", s.format("%H:%M UTC")))
                    .unwrap_or_default();
                outages.insert(
                    c.key.service.clone(),
                    format!("{}{since}: {}", c.key.component, c.description),
                );
            }
        }
        view.send_if_modified(|current| {
            let changed = *current != outages;
            *current = outages;
            changed
        });
        if view.is_closed() {
            return;
        }
    }
}

/// Logs go to stderr, `RUST_LOG` picks the level (info by default).
pub fn tracing_subscriber_init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .try_init();
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
