//! `aiwatch config check`: validates a config file and the files and variables it names,
//! reporting every error in one run.

use std::path::Path;
use std::process::ExitCode;

use aiwatch_core::{Catalog, Config};

use crate::commands::{gateway, serve};
use crate::exit;
use crate::load;

/// The largest config file read (a config is a few kilobytes; this is not one).
const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// One problem found, with the line it sits on (0 when it belongs to no line) for ordering.
struct Problem {
    line: usize,
    text: String,
}

pub fn check(file: Option<&Path>) -> anyhow::Result<ExitCode> {
    let path = match file {
        Some(p) => p.to_path_buf(),
        None => load::default_config_path().map(|(p, _)| p).ok_or_else(|| {
            exit::usage("no config file given, and no ./aiwatch.toml or user config file exists")
        })?,
    };
    let size = std::fs::metadata(&path)
        .map_err(|e| exit::config(format!("cannot read {}: {e}", path.display())))?
        .len();
    if size > MAX_CONFIG_BYTES {
        return Err(exit::config(format!(
            "{} is {size} bytes; a config file is at most {MAX_CONFIG_BYTES}",
            path.display()
        )));
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| exit::config(format!("cannot read {}: {e}", path.display())))?;
    let (mut config, errors) = Config::check(&text);
    let mut problems: Vec<Problem> = errors
        .iter()
        .map(|e| Problem {
            line: e.line,
            text: load::describe(&path, e),
        })
        .collect();
    config.resolve_paths(path.parent().unwrap_or(Path::new(".")));
    let (more, notes) = what_serve_needs(&path, &text, &config);
    problems.extend(more);
    for note in &notes {
        println!("{note}");
    }
    if !problems.is_empty() {
        problems.sort_by_key(|p| p.line);
        for p in &problems {
            eprintln!("{}", p.text);
        }
        let n = problems.len();
        return Err(exit::config(format!(
            "{}: {n} {}; `serve` would refuse to start",
            path.display(),
            if n == 1 { "error" } else { "errors" }
        )));
    }
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

/// What `serve` checks beyond the file itself, with the same functions: CA files exist and
/// hold certificates, each alert channel builds (its variables set), every route's upstream has
/// an API the gateway can forward to, each agent's token is set and its own, the API token and
/// the gateway keys are long enough. Returns the problems and the notes (variables unset here).
fn what_serve_needs(path: &Path, text: &str, config: &Config) -> (Vec<Problem>, Vec<String>) {
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let mut add = |needle: Option<&str>, message: String| {
        let line = needle.and_then(|n| line_of(text, n));
        let at = line.map(|l| format!(":{l}")).unwrap_or_default();
        problems.push(Problem {
            line: line.unwrap_or(0),
            text: format!("{}{at}: {message}", path.display()),
        });
    };
    // The same reading of `database` as `serve`'s (whether the server answers is serve's
    // business: it says so and exits 78).
    if let Some(url) = &config.server.database {
        match aiwatch_store::Database::parse(url) {
            Err(e) => add(Some(&format!("\"{url}\"")), format!("[server] {e}")),
            Ok(aiwatch_store::Database::Postgres(parsed)) => {
                if let Some(root) = parsed.tls().root_cert.as_ref().filter(|p| !p.is_file()) {
                    add(
                        Some("sslrootcert"),
                        format!(
                            "[server] database: sslrootcert {} does not exist",
                            root.display()
                        ),
                    );
                }
            }
            Ok(_) => {}
        }
    }
    for entry in &config.services {
        let Some(ca) = &entry.ca_file else { continue };
        let written = ca.file_name().and_then(|n| n.to_str());
        if !ca.is_file() {
            add(
                written,
                format!(
                    "service `{}`: ca_file {} does not exist",
                    entry.name,
                    ca.display()
                ),
            );
        } else if let Err(e) = aiwatch_probe::tls::load_pem_certs(ca) {
            add(written, format!("service `{}`: {e}", entry.name));
        }
    }
    // Each alert is built as `serve` builds it: its variables set, its CA file usable, its
    // mail server address whole.
    match aiwatch_probe::tls::Trust::new(&[]) {
        Ok(trust) => {
            for alert in &config.alerts {
                if let Err(e) =
                    aiwatch_alerts::Channel::build(alert.clone(), &load::env_secret, &trust)
                {
                    let var = match &e {
                        aiwatch_alerts::Error::MissingSecret { var, .. } => Some(var.clone()),
                        _ => None,
                    };
                    let needle =
                        var.map_or_else(|| format!("\"{}\"", alert.name), |v| format!("\"{v}\""));
                    add(Some(&needle), e.to_string());
                }
            }
        }
        Err(e) => add(None, e.to_string()),
    }
    // Routes to services the gateway cannot forward to (web pages): `serve`, `gateway` and
    // `drill` refuse them at start-up.
    if !config.routes.is_empty() {
        let catalog = Catalog::with_config(config);
        for why in aiwatch_gateway::gateway::unforwardable(config, &catalog) {
            let needle = why.split('`').nth(3).map(|service| format!("\"{service}:"));
            add(needle.as_deref(), why);
        }
    }
    // Each agent's token as `serve` reads it.
    if let Err(e) = serve::region_options(config) {
        let message = format!("{e:#}");
        let needle = config
            .agents
            .iter()
            .find(|a| message.contains(&format!("\"{}\"", a.region)))
            .map(|a| format!("\"{}\"", a.token_env));
        add(needle.as_deref(), message);
    }
    // The token and the gateway keys: a value that is set must be one `serve` takes; an unset
    // one is only a note, as the file is often checked elsewhere than where it runs.
    let is_set = |var: &str| std::env::var_os(var).is_some_and(|v| !v.is_empty());
    if let Some(var) = config.server.auth_token_env.as_deref() {
        if !is_set(var) {
            notes.push(format!(
                "{}: note: [server] auth_token_env names {var}, which is not set here; `serve` refuses to start without it",
                path.display()
            ));
        } else if let Err(e) = serve::token_access(&config.server) {
            add(Some(var), format!("{e:#}"));
        }
    }
    if serve::runs_gateway(config) {
        let settings = config.gateway.clone().unwrap_or_default();
        if !is_set(&settings.client_keys_env) {
            notes.push(format!(
                "{}: note: `serve` runs the gateway with these routes and needs {} set to the keys clients present",
                path.display(),
                settings.client_keys_env
            ));
        } else if let Err(e) = gateway::client_keys(&settings, true) {
            add(Some(&settings.client_keys_env), format!("[gateway] {e:#}"));
        }
    }
    (problems, notes)
}

/// The first line (from 1) that contains `needle`.
fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}
