//! `aiwatch drill ROUTE`: is plan B ready? Sends one tiny streamed request to every upstream
//! of a route and reports which would carry traffic now; for local upstreams it also lists
//! the installed models and checks the route's model is among them and where it fits (GPU,
//! memory) on this machine, judged by the core (`local_model::fit`).

use std::time::Duration;

use aiwatch_core::local_model::{fit, parse_model_list, same_model, Fit, Gpu, Machine};
use aiwatch_core::service::ServiceKind;
use aiwatch_probe::host::HostPaths;
use serde::Serialize;
use tokio::time::Instant;

pub use aiwatch_core::local_model::InstalledModel;

use crate::gateway::Gateway;
use crate::upstream::{ListError, UpstreamState};

/// One upstream's drill budget.
const DRILL_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Clone, Debug, Serialize)]
pub struct DrillReport {
    pub route: String,
    /// The upstream a request would go to now: the first ready one in the route's order.
    pub carrier: Option<String>,
    pub upstreams: Vec<UpstreamDrill>,
    /// What this machine offers a local model: free memory and GPUs.
    pub machine: Machine,
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
    /// This machine's GPUs, with their memory where known.
    pub gpus: Vec<Gpu>,
    /// Where the route's model would run: GPU, GPU and memory, memory, too large, unknown.
    pub fit: Fit,
    /// The model runs here now (in a GPU or in memory); `None` when a size is unknown.
    pub fits_in_memory: Option<bool>,
    pub note: Option<String>,
}

/// Drills every upstream of `alias` at once; the machine's memory and GPUs are read from
/// `host`.
pub async fn drill(gw: &Gateway, alias: &str, host: &HostPaths) -> Option<DrillReport> {
    let route = gw.routes.get(alias)?;
    let machine = aiwatch_probe::host::machine(host).await;
    let drills = futures_util::future::join_all(
        route
            .entries
            .iter()
            .map(|e| drill_one(gw, &gw.upstreams[e.upstream], &machine)),
    )
    .await;
    let carrier = drills.iter().find(|d| d.ready).map(|d| d.upstream.clone());
    Some(DrillReport {
        route: alias.to_owned(),
        carrier,
        upstreams: drills,
        machine,
    })
}

async fn drill_one(gw: &Gateway, up: &UpstreamState, machine: &Machine) -> UpstreamDrill {
    let deadline = Instant::now() + DRILL_TIMEOUT;
    let local_models = if up.service.local {
        Some(local_models(up, machine, deadline).await)
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

async fn local_models(up: &UpstreamState, machine: &Machine, deadline: Instant) -> LocalModels {
    let mut report = LocalModels {
        reachable: false,
        installed: Vec::new(),
        model_installed: false,
        model_size_bytes: None,
        free_memory_bytes: machine.free_memory_bytes,
        gpus: machine.gpus.clone(),
        fit: Fit::Unknown,
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
    report.installed = parse_model_list(up.service.kind, &body);
    let wanted = report
        .installed
        .iter()
        .find(|m| same_model(&m.name, &up.model));
    report.model_installed = wanted.is_some();
    report.model_size_bytes = wanted.and_then(|m| m.size_bytes);
    report.fit = fit(report.model_size_bytes, machine);
    report.fits_in_memory = report.fit.runs();
    report.note = if !report.model_installed {
        Some(match up.service.kind {
            ServiceKind::Ollama => format!("`{}` is not installed: run `ollama pull {}`", up.model, up.model),
            _ => format!("`{}` is not loaded in {}: load it, or name one of the installed models in the route", up.model, up.service.title),
        })
    } else if report.fits_in_memory == Some(false) {
        Some(format!("the model {}", report.fit.describe()))
    } else {
        None
    };
    report
}
