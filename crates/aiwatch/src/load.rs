//! Finds, reads and validates the config file, and reads the API keys it names.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use aiwatch_core::secret::ApiKey;
use aiwatch_core::{Catalog, Config, ServiceName};

use crate::exit;

/// A loaded config and where it came from.
pub struct Loaded {
    pub config: Config,
    pub path: Option<PathBuf>,
    pub catalog: Catalog,
}

/// How the config file was found, which decides how far it is trusted with keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Given with `--config`.
    Explicit,
    /// The user's own config dir.
    UserDir,
    /// `./aiwatch.toml`, found because of where the command ran (a cloned repository, say).
    WorkingDir,
}

/// The file aiwatch reads when `--config` is not given: ./aiwatch.toml, else the user's
/// config dir; `None` when neither exists.
pub fn default_config_path() -> Option<(PathBuf, Origin)> {
    let local = PathBuf::from("aiwatch.toml");
    if local.is_file() {
        return Some((local, Origin::WorkingDir));
    }
    let user = dirs::config_dir()?.join("aiwatch").join("aiwatch.toml");
    user.is_file().then_some((user, Origin::UserDir))
}

/// Reads and validates one config file; errors name the file, line and field.
pub fn read_config(path: &Path) -> anyhow::Result<Config> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| exit::config(format!("cannot read {}: {e}", path.display())))?;
    let mut config = Config::parse(&text).map_err(|e| exit::config(describe(path, &e)))?;
    config.resolve_paths(path.parent().unwrap_or(Path::new(".")));
    Ok(config)
}

/// One config error as `FILE:LINE:COLUMN: field `PATH`: MESSAGE`, as compilers write them.
pub fn describe(path: &Path, e: &aiwatch_core::config::ConfigError) -> String {
    let field = e
        .field
        .as_ref()
        .map(|f| format!(" `{f}`"))
        .unwrap_or_default();
    format!(
        "{}:{}:{}: {}{field}: {}",
        path.display(),
        e.line,
        e.column,
        if field.is_empty() { "error" } else { "field" },
        e.message
    )
}

/// Loads `--config FILE`, or the default file, or the built-in defaults.
pub fn load(explicit: Option<&Path>) -> anyhow::Result<Loaded> {
    let found = match explicit {
        Some(p) => Some((p.to_path_buf(), Origin::Explicit)),
        None => default_config_path(),
    };
    let config = match &found {
        Some((p, _)) => read_config(p)?,
        None => Config::default(),
    };
    let catalog = Catalog::with_config(&config);
    if let Some((path, origin)) = &found {
        guard_moved_keys(&catalog, path, *origin)?;
    }
    let path = found.map(|(p, _)| p);
    Ok(Loaded {
        config,
        path,
        catalog,
    })
}

/// A built-in key sent to another host than its provider's: refused when the file was found
/// only because of the working directory, said once on stderr otherwise (when the key is set,
/// so something would really go there).
fn guard_moved_keys(catalog: &Catalog, path: &Path, origin: Origin) -> anyhow::Result<()> {
    let moved = aiwatch_core::key_route::moved_keys(catalog);
    if origin == Origin::WorkingDir {
        if let Some(m) = moved.first() {
            return Err(exit::config(format!(
                "{} was found in the working directory (not given with --config): service `{}` would send {} (the key of {}) to {}. Refusing; pass the file with --config if you trust it",
                path.display(),
                m.service,
                m.var,
                m.home,
                m.host
            )));
        }
    }
    for m in moved.iter().filter(|m| std::env::var_os(&m.var).is_some()) {
        eprintln!(
            "aiwatch: note: service `{}` sends {} to {}, not to {} ({})",
            m.service,
            m.var,
            m.host,
            m.home,
            path.display()
        );
    }
    Ok(())
}

/// Where this machine's memory and GPUs are read: `/proc` and `/sys`, unless
/// `AIWATCH_PROC_DIR` / `AIWATCH_SYS_DIR` point elsewhere (a container with the host's mounted
/// at another place, or a test); `nvidia-smi` is looked up on `PATH`.
pub fn host_paths() -> aiwatch_probe::host::HostPaths {
    let mut paths = aiwatch_probe::host::HostPaths::default();
    if let Some(dir) = std::env::var_os("AIWATCH_PROC_DIR") {
        paths.proc_root = dir.into();
    }
    if let Some(dir) = std::env::var_os("AIWATCH_SYS_DIR") {
        paths.sys_root = dir.into();
    }
    paths
}

/// A secret from the environment variable the config names (alert URLs, tokens, passwords).
pub fn env_secret(var: &str) -> Option<String> {
    std::env::var(var).ok()
}

/// Reads each service's key from the environment variable it names. The keys stay in memory
/// and go only into their own provider's auth header.
pub fn read_keys(catalog: &Catalog) -> HashMap<ServiceName, ApiKey> {
    catalog
        .iter()
        .filter_map(|s| {
            let var = s.api_key_env.as_deref()?;
            let key = ApiKey::new(std::env::var(var).ok()?)?;
            Some((s.name.clone(), key))
        })
        .collect()
}

/// The services named on the command line, in order and without repeats; all of `everything`
/// when none are named. Unknown names are usage errors with close suggestions.
pub fn select_services(
    catalog: &Catalog,
    names: &[String],
    everything: impl FnOnce() -> Vec<aiwatch_core::Service>,
) -> anyhow::Result<Vec<aiwatch_core::Service>> {
    if names.is_empty() {
        return Ok(everything());
    }
    let mut chosen: Vec<aiwatch_core::Service> = Vec::new();
    for name in names {
        let service = catalog.get(name).map_err(|e| exit::usage(e.to_string()))?;
        if !chosen.iter().any(|s| s.name == service.name) {
            chosen.push(service.clone());
        }
    }
    Ok(chosen)
}

/// The services watched when none are named: every cloud service of the catalog, and a local
/// runtime (Ollama, LM Studio) only when the config names it or something answers on its port
/// now, so a machine without them does not watch two things that cannot be there.
pub fn default_watch_list(loaded: &Loaded) -> Vec<aiwatch_core::Service> {
    loaded
        .catalog
        .iter()
        .filter(|s| {
            !s.local
                || loaded.config.services.iter().any(|e| e.name == s.name)
                || answers_locally(s)
        })
        .cloned()
        .collect()
}

/// Whether a TCP connection to the service's address opens within a moment.
fn answers_locally(service: &aiwatch_core::Service) -> bool {
    use std::net::ToSocketAddrs;
    let Some(url) = service.api_base.as_deref().or(service.web_url.as_deref()) else {
        return false;
    };
    let (Some(host), Some(port)) = (
        aiwatch_core::network::url_host(url),
        aiwatch_core::network::url_port(url),
    ) else {
        return false;
    };
    let Ok(addresses) = (host, port).to_socket_addrs() else {
        return false;
    };
    addresses.take(2).any(|a| {
        std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_millis(300)).is_ok()
    })
}

/// `--timeout`, or the config's budget when it is not given.
pub fn timeout(raw: Option<&str>, config: &Config) -> anyhow::Result<std::time::Duration> {
    match raw {
        Some(raw) => aiwatch_core::config::parse_duration(raw)
            .map_err(|e| exit::usage(format!("--timeout: {e}"))),
        None => Ok(config.defaults.timeout),
    }
}

/// `--dns-server` as a resolver choice, after checking that every `--ca-file` exists.
/// A checker for one-off calls to a server or receiver (no control probe, no streaming) through
/// the user's network flags and proxies, each call within `timeout`.
pub fn plain_checker(
    network: &crate::cli::NetworkArgs,
    timeout: std::time::Duration,
) -> anyhow::Result<aiwatch_probe::Checker> {
    aiwatch_probe::Checker::new(aiwatch_probe::CheckOptions {
        timeout,
        dns: self::network(network.dns_server.as_deref(), &network.ca_file)?,
        ca_files: network.ca_file.clone(),
        control_url: None,
        deep: false,
        proxies: aiwatch_probe::ProxySettings::from_env()
            .map_err(|e| exit::config(e.to_string()))?,
    })
    .map_err(|e| exit::config(e.to_string()))
}

pub fn network(
    dns_server: Option<&str>,
    ca_files: &[PathBuf],
) -> anyhow::Result<aiwatch_probe::DnsChoice> {
    for path in ca_files {
        if !path.is_file() {
            return Err(exit::usage(format!(
                "--ca-file: {} does not exist",
                path.display()
            )));
        }
    }
    match dns_server {
        Some(raw) => aiwatch_probe::DnsChoice::parse_server(raw)
            .map_err(|e| exit::usage(format!("--dns-server: {e}"))),
        None => Ok(aiwatch_probe::DnsChoice::System),
    }
}
