//! `aiwatch init`: writes a commented starter config in the user's config dir (never over an
//! existing file without `--force`): the catalog services whose key variables are set (names
//! only, never values), the local runtimes answering now and their models, a gateway route
//! that ends with a local model, and the dashboard address.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use aiwatch_core::evidence::{HttpOutcome, Purpose};
use aiwatch_core::{Catalog, Service, ServiceKind};
use aiwatch_probe::layered::{probe, Ask};
use anyhow::Context;

use crate::exit;
use crate::load;

/// A local runtime that answered, with the models it has.
struct Local {
    service: Service,
    models: Vec<String>,
}

/// Where Ollama listens: `OLLAMA_HOST` (Ollama's own variable) or its default.
fn ollama_base(service: &Service) -> Option<String> {
    match std::env::var("OLLAMA_HOST") {
        Ok(host) if !host.trim().is_empty() => {
            let host = host.trim().trim_end_matches('/');
            Some(
                if host.starts_with("http://") || host.starts_with("https://") {
                    host.to_owned()
                } else {
                    format!("http://{host}")
                },
            )
        }
        _ => service.api_base.clone(),
    }
}

/// Asks each local runtime for its models (half a second each).
async fn find_locals(catalog: &Catalog, checker: &aiwatch_probe::Checker) -> Vec<Local> {
    let mut found = Vec::new();
    for service in catalog.iter().filter(|s| s.local) {
        let (url, ollama) = match service.kind {
            ServiceKind::Ollama => match ollama_base(service) {
                Some(base) => (format!("{base}/api/tags"), true),
                None => continue,
            },
            _ => match &service.api_base {
                Some(base) => (format!("{}/models", base.trim_end_matches('/')), false),
                None => continue,
            },
        };
        let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
        let probed = probe(
            checker.context(),
            Purpose::Api,
            &url,
            Ask::get(),
            None,
            deadline,
        )
        .await;
        let ok = matches!(&probed.report.http, Some(HttpOutcome::Response(r)) if (200..300).contains(&r.status));
        if !ok {
            continue;
        }
        let body: serde_json::Value = serde_json::from_slice(&probed.body).unwrap_or_default();
        let list = if ollama {
            &body["models"]
        } else {
            &body["data"]
        };
        let models = list
            .as_array()
            .map(|m| {
                m.iter()
                    .filter_map(|m| m["name"].as_str().or(m["id"].as_str()))
                    .take(20)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let mut service = service.clone();
        if ollama {
            service.api_base = ollama_base(&service);
        }
        found.push(Local { service, models });
    }
    found
}

fn render(keyed: &[&Service], locals: &[Local], listen: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# aiwatch starter config, written by `aiwatch init`.");
    let _ = writeln!(
        out,
        "# Every key is optional; `aiwatch config check` validates this file."
    );
    let _ = writeln!(
        out,
        "# Keys are never written here: each service reads its own variable.\n"
    );
    let _ = writeln!(out, "[server]");
    let _ = writeln!(
        out,
        "listen = \"{listen}\"        # the dashboard: http://{listen}"
    );
    let _ = writeln!(
        out,
        "# auth_token_env = \"AIWATCH_TOKEN\"   # set one before listening beyond this machine\n"
    );
    let _ = writeln!(out, "[defaults]");
    let _ = writeln!(out, "interval = \"30s\"");
    let _ = writeln!(out, "timeout = \"5s\"\n");
    if keyed.is_empty() {
        let _ = writeln!(out, "# No provider key was set when this was written (OPENAI_API_KEY, ANTHROPIC_API_KEY, …):");
        let _ = writeln!(
            out,
            "# `aiwatch serve` still watches the web front-ends and the official pages."
        );
    } else {
        let _ = writeln!(
            out,
            "# Keys found in the environment for: {}.",
            keyed
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for local in locals {
        let _ = writeln!(
            out,
            "# {} answers at {}{}.",
            local.service.title,
            local.service.api_base.as_deref().unwrap_or("?"),
            if local.models.is_empty() {
                String::new()
            } else {
                format!(" with {}", local.models.join(", "))
            }
        );
        if local.service.kind == ServiceKind::Ollama
            && local.service.api_base.as_deref() != Some("http://127.0.0.1:11434")
        {
            let _ = writeln!(
                out,
                "\n[[service]]\nname = \"ollama\"\napi_base = \"{}\"",
                local.service.api_base.as_deref().unwrap_or_default()
            );
        }
    }
    let mut upstreams: Vec<String> = keyed
        .iter()
        .filter_map(|s| {
            s.probe_model
                .as_ref()
                .map(|m| format!("\"{}:{m}\"", s.name))
        })
        .collect();
    let local_model = locals.iter().find_map(|l| {
        l.models
            .first()
            .map(|m| format!("\"{}:{m}\"", l.service.name))
    });
    if let Some(local) = &local_model {
        upstreams.push(local.clone());
    }
    let _ = writeln!(
        out,
        "\n# The failover gateway: SDKs point at http://127.0.0.1:4000/v1 with a key from"
    );
    let _ = writeln!(
        out,
        "# AIWATCH_GATEWAY_KEYS (24+ characters); requests go to the first healthy upstream."
    );
    let gateway = if upstreams.is_empty() { "# " } else { "" };
    let _ = writeln!(out, "{gateway}[gateway]\n{gateway}listen = \"127.0.0.1:4000\"\n{gateway}client_keys_env = \"AIWATCH_GATEWAY_KEYS\"\n");
    if upstreams.is_empty() {
        let _ = writeln!(out, "# [[route]]\n# model = \"chat\"\n# upstreams = [\"openai-api:gpt-4o-mini\", \"ollama:llama3.2\"]");
    } else {
        let _ = writeln!(out, "[[route]]");
        let _ = writeln!(out, "model = \"chat\"");
        let _ = writeln!(
            out,
            "upstreams = [{}]{}",
            upstreams.join(", "),
            if local_model.is_some() {
                "   # the local model last: plan B"
            } else {
                ""
            }
        );
    }
    out
}

fn target(config_path: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = config_path {
        return Ok(path.to_path_buf());
    }
    dirs::config_dir()
        .map(|d| d.join("aiwatch").join("aiwatch.toml"))
        .context("this system has no user config dir; give the file with --config")
}

pub fn run(config_path: Option<&Path>, force: bool, print: bool) -> anyhow::Result<ExitCode> {
    let path = target(config_path)?;
    if path.exists() && !force && !print {
        return Err(exit::usage(format!(
            "{} exists; it is left as it is (use --force to replace it, or --print to see the starter config)",
            path.display()
        )));
    }
    let catalog = Catalog::builtin();
    let keyed: Vec<&Service> = catalog
        .iter()
        .filter(|s| {
            s.api_key_env
                .as_deref()
                .is_some_and(|var| std::env::var(var).is_ok_and(|v| !v.trim().is_empty()))
        })
        .collect();
    let checker = aiwatch_probe::Checker::new(aiwatch_probe::CheckOptions {
        timeout: Duration::from_secs(2),
        dns: load::network(None, &[])?,
        ca_files: Vec::new(),
        control_url: None,
        deep: false,
        proxies: aiwatch_probe::ProxySettings::none(),
    })
    .map_err(|e| exit::config(e.to_string()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let locals = runtime.block_on(find_locals(&catalog, &checker));
    let text = render(&keyed, &locals, "127.0.0.1:8080");
    // What is written must load: the same validation `serve` runs.
    aiwatch_core::Config::parse(&text)
        .map_err(|e| anyhow::anyhow!("the starter config does not validate: {e}"))?;
    if print {
        print!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    println!(
        "wrote {}: {} services with keys, {} local runtime{}; next: `aiwatch serve`, then open http://127.0.0.1:8080",
        path.display(),
        keyed.len(),
        locals.len(),
        if locals.len() == 1 { "" } else { "s" }
    );
    Ok(ExitCode::SUCCESS)
}
