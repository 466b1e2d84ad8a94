//! `aiwatch drill ROUTE`: is plan B ready? Sends one tiny streamed request to every upstream
//! of a route and reports which would carry traffic now; for local upstreams it also lists
//! the installed models and checks the route's model is among them and fits in memory.

use std::time::Duration;

use aiwatch_core::service::ServiceKind;
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;

use crate::gateway::Gateway;
use crate::upstream::{ListError, UpstreamState};

/// One upstream's drill budget.
const DRILL_TIMEOUT: Duration = Duration::from_secs(20);
/// A model needs about this much more memory than its file.
const MEMORY_HEADROOM: f64 = 1.25;

#[derive(Clone, Debug, Serialize)]
pub struct DrillReport {
    pub route: String,
    /// The upstream a request would go to now: the first ready one in the route's order.
    pub carrier: Option<String>,
    pub upstreams: Vec<UpstreamDrill>,
}

#[derive(Clone, Debug, Serialize)]
pub struct UpstreamDrill {
    pub upstream: String,
    pub service: String,
    pub model: String,
    pub local: bool,
    /// It answered a tiny streamed request completely.
    pub ready: bool,
    pub status: Option<u16>,
    pub time_to_first_token_ms: Option<f64>,
    pub total_ms: Option<f64>,
    /// Why it is not ready.
    pub reason: Option<String>,
    pub local_models: Option<LocalModels>,
}

/// What a user setting up an offline plan B needs to know about a local server.
#[derive(Clone, Debug, Serialize)]
pub struct LocalModels {
    /// The server answered its model list.
    pub reachable: bool,
    pub installed: Vec<InstalledModel>,
    /// The route's model is among them.
    pub model_installed: bool,
    pub model_size_bytes: Option<u64>,
    /// This machine's available memory (Linux MemAvailable).
    pub free_memory_bytes: Option<u64>,
    /// The model's file with headroom fits in the free memory; `None` when a size is unknown.
    pub fits_in_memory: Option<bool>,
    pub note: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct InstalledModel {
    pub name: String,
    pub size_bytes: Option<u64>,
}

/// Drills every upstream of `alias` at once.
pub async fn drill(gw: &Gateway, alias: &str) -> Option<DrillReport> {
    let route = gw.routes.get(alias)?;
    let drills = futures_util::future::join_all(
        route
            .entries
            .iter()
            .map(|e| drill_one(gw, &gw.upstreams[e.upstream])),
    )
    .await;
    let carrier = drills.iter().find(|d| d.ready).map(|d| d.upstream.clone());
    Some(DrillReport {
        route: alias.to_owned(),
        carrier,
        upstreams: drills,
    })
}

async fn drill_one(gw: &Gateway, up: &UpstreamState) -> UpstreamDrill {
    let deadline = Instant::now() + DRILL_TIMEOUT;
    let local_models = if up.service.local {
        Some(local_models(up, deadline).await)
    } else {
        None
    };
    let evidence = up.tiny_stream(gw.checker.context(), deadline).await;
    let ok_status = evidence.status.is_some_and(|s| (200..300).contains(&s));
    let ready = ok_status && evidence.finished && evidence.error.is_none();
    let reason = if ready {
        None
    } else if let Some(e) = &evidence.provider_error {
        Some(format!(
            "{} {}",
            e.status,
            e.message
                .clone()
                .or_else(|| e.kind.clone())
                .unwrap_or_default()
        ))
    } else if let Some(error) = &evidence.error {
        Some(error.clone())
    } else if !ok_status {
        Some(format!(
            "answered {}",
            evidence.status.map_or("nothing".into(), |s| s.to_string())
        ))
    } else {
        Some("the answer ended without its finish marker".into())
    };
    let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
    UpstreamDrill {
        upstream: up.id.clone(),
        service: up.service.name.to_string(),
        model: up.model.clone(),
        local: up.service.local,
        ready,
        status: evidence.status,
        time_to_first_token_ms: ms(evidence.time_to_first_token),
        total_ms: ms(evidence.total),
        reason,
        local_models,
    }
}

async fn local_models(up: &UpstreamState, deadline: Instant) -> LocalModels {
    let free = free_memory_bytes();
    let mut report = LocalModels {
        reachable: false,
        installed: Vec::new(),
        model_installed: false,
        model_size_bytes: None,
        free_memory_bytes: free,
        fits_in_memory: None,
        note: None,
    };
    let body = match up.list_models(deadline).await {
        Ok(body) => body,
        Err(ListError::NoApi) => {
            report.note = Some("the service has no API base".into());
            return report;
        }
        Err(ListError::Status { label, status }) => {
            report.note = Some(format!("{label} answered {status}"));
            return report;
        }
        Err(ListError::Incomplete) => {
            report.note = Some("the model list did not arrive whole".into());
            return report;
        }
        Err(ListError::Unreachable { url, .. }) => {
            report.note = Some(format!(
                "nothing answers at {url}: is {} running?",
                up.service.title
            ));
            return report;
        }
    };
    report.reachable = true;
    report.installed = installed_models(up.service.kind, &body);
    let wanted = report
        .installed
        .iter()
        .find(|m| same_model(&m.name, &up.model));
    report.model_installed = wanted.is_some();
    report.model_size_bytes = wanted.and_then(|m| m.size_bytes);
    report.fits_in_memory = match (report.model_size_bytes, free) {
        (Some(size), Some(free)) => Some(size as f64 * MEMORY_HEADROOM <= free as f64),
        _ => None,
    };
    report.note = if !report.model_installed {
        Some(match up.service.kind {
            ServiceKind::Ollama => format!("`{}` is not installed: run `ollama pull {}`", up.model, up.model),
            _ => format!("`{}` is not loaded in {}: load it, or name one of the installed models in the route", up.model, up.service.title),
        })
    } else if report.fits_in_memory == Some(false) {
        Some("the model is larger than this machine's free memory: expect swapping or a failure to load".into())
    } else {
        None
    };
    report
}

/// Model names and sizes from Ollama's `/api/tags` or an OpenAI-style `/models`
/// (LM Studio, llama.cpp's server, which puts the file size under `meta.size`).
pub fn installed_models(kind: ServiceKind, body: &[u8]) -> Vec<InstalledModel> {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    let (list, name_key) = match kind {
        ServiceKind::Ollama => (value.get("models"), "name"),
        _ => (value.get("data"), "id"),
    };
    list.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| {
            let name = m.get(name_key)?.as_str()?.to_owned();
            let size_bytes = m
                .get("size")
                .or_else(|| m.get("meta").and_then(|meta| meta.get("size")))
                .and_then(Value::as_u64);
            Some(InstalledModel { name, size_bytes })
        })
        .collect()
}

/// `llama3.2` is `llama3.2:latest` in Ollama; llama.cpp may report a file path.
fn same_model(installed: &str, wanted: &str) -> bool {
    if installed == wanted {
        return true;
    }
    if installed.strip_suffix(":latest") == Some(wanted) {
        return true;
    }
    let file = installed.rsplit(['/', '\\']).next().unwrap_or(installed);
    let stem = file.strip_suffix(".gguf").unwrap_or(file);
    stem == wanted || stem.eq_ignore_ascii_case(wanted)
}

/// MemAvailable from /proc/meminfo, in bytes (Linux only).
fn free_memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installed_models_are_read_from_every_local_server() {
        let ollama = br#"{"models":[{"name":"llama3.2:latest","size":2019393189},{"name":"qwen2.5:0.5b","size":397821319}]}"#;
        let got = installed_models(ServiceKind::Ollama, ollama);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].size_bytes, Some(2_019_393_189));
        let llama_cpp = br#"{"object":"list","data":[{"id":"smollm2","object":"model","meta":{"n_params":134515008,"size":100000000}}]}"#;
        let got = installed_models(ServiceKind::Openai, llama_cpp);
        assert_eq!(got[0].name, "smollm2");
        assert_eq!(got[0].size_bytes, Some(100_000_000));
        assert!(installed_models(ServiceKind::Openai, b"<html>").is_empty());
    }

    #[test]
    fn model_names_match_the_way_local_servers_write_them() {
        assert!(same_model("llama3.2:latest", "llama3.2"));
        assert!(same_model(
            "/models/SmolLM2-135M-Instruct.gguf",
            "SmolLM2-135M-Instruct"
        ));
        assert!(!same_model("llama3.2:1b", "llama3.2"));
    }
}
