//! `aiwatch config check`: validates a config file and the files it names.

use std::path::Path;
use std::process::ExitCode;

use aiwatch_core::Catalog;

use crate::exit;
use crate::load;

pub fn check(file: Option<&Path>) -> anyhow::Result<ExitCode> {
    let path = match file {
        Some(p) => p.to_path_buf(),
        None => load::default_config_path().map(|(p, _)| p).ok_or_else(|| {
            exit::usage("no config file given, and no ./aiwatch.toml or user config file exists")
        })?,
    };
    let config = load::read_config(&path)?;
    // The same reading of `database` as `serve`'s (whether the server answers is serve's
    // business: it says so and exits 78).
    if let Some(url) = &config.server.database {
        aiwatch_store::Database::parse(url)
            .map_err(|e| exit::config(format!("{}: [server] {e}", path.display())))?;
    }
    for entry in &config.services {
        if let Some(ca) = &entry.ca_file {
            if !ca.is_file() {
                return Err(exit::config(format!(
                    "{}: service `{}`: ca_file {} does not exist",
                    path.display(),
                    entry.name,
                    ca.display()
                )));
            }
            aiwatch_probe::tls::load_pem_certs(ca).map_err(|e| {
                exit::config(format!("{}: service `{}`: {e}", path.display(), entry.name))
            })?;
        }
    }
    // Each alert is built as `serve` builds it: its variables set, its CA file usable, its
    // mail server address whole.
    let trust = aiwatch_probe::tls::Trust::new(&[]).map_err(|e| exit::config(e.to_string()))?;
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    for alert in &config.alerts {
        aiwatch_alerts::Channel::build(alert.clone(), &load::env_secret, &trust).map_err(|e| {
            // Point at the line that names the variable, as every other config error does.
            let line = match &e {
                aiwatch_alerts::Error::MissingSecret { var, .. } => text
                    .lines()
                    .position(|l| l.contains(&format!("\"{var}\"")))
                    .map(|i| format!(":{}", i + 1)),
                _ => None,
            };
            exit::config(format!(
                "{}{}: {e}",
                path.display(),
                line.unwrap_or_default()
            ))
        })?;
    }
    // Each agent's token as `serve` reads it.
    crate::commands::serve::region_options(&config)
        .map_err(|e| exit::config(format!("{}: {e}", path.display())))?;
    let catalog = Catalog::with_config(&config);
    for m in aiwatch_core::key_route::moved_keys(&catalog) {
        println!(
            "{}: note: service `{}` sends {} to {}, not to {}; other commands refuse this unless the file is given with --config or is the user's own config",
            path.display(),
            m.service,
            m.var,
            m.host,
            m.home
        );
    }
    let own = config
        .services
        .iter()
        .filter(|s| !Catalog::is_builtin(s.name.as_str()))
        .count();
    let overrides = config.services.len() - own;
    println!(
        "{}: ok — {} services ({} built-in overridden, {} added), {} routes",
        path.display(),
        catalog.len(),
        overrides,
        own,
        config.routes.len()
    );
    Ok(ExitCode::SUCCESS)
}
