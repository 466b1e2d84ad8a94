//! The Statuspage-compatible API (`/api/v2/*.json`): one component per watched service, named
//! after it, so tools that already read status pages can read aiwatch.

use std::sync::Arc;

use aiwatch_core::assess::{Incident, IncidentPhase, State};
use aiwatch_store::IncidentQuery;
use axum::extract::State as AxumState;
use axum::Json;
use chrono::Utc;
use serde_json::{json, Value};

use crate::api::{service_state, ApiError};
use crate::engine::Engine;

type Shared = Arc<Engine>;

/// Statuspage's component status for a state. Statuspage has no "unknown"; aiwatch says so
/// rather than claiming "operational" for what it cannot see.
pub fn component_status(state: State) -> &'static str {
    match state {
        State::Operational => "operational",
        State::Degraded => "degraded_performance",
        State::Outage => "major_outage",
        State::Maintenance => "under_maintenance",
        State::Unknown => "unknown",
    }
}

fn page(engine: &Engine) -> Value {
    json!({
        "id": "aiwatch",
        "name": engine.options.page_name,
        "url": "",
        "time_zone": "Etc/UTC",
        "updated_at": Utc::now(),
    })
}

fn components_json(engine: &Engine) -> (Vec<Value>, Vec<State>) {
    let states = engine.states();
    let mut out = Vec::new();
    let mut all = Vec::new();
    for (position, service) in engine.services.iter().enumerate() {
        let own: Vec<(String, State)> = states
            .iter()
            .filter(|(k, ..)| k.service == service.name)
            .map(|(k, s, ..)| (k.component.clone(), *s))
            .collect();
        let state = service_state(&own);
        let updated = states
            .iter()
            .filter(|(k, ..)| k.service == service.name)
            .filter_map(|(_, _, since, _)| *since)
            .max()
            .unwrap_or(engine.started_at);
        all.push(state);
        out.push(json!({
            "id": service.name,
            "name": service.name,
            "status": component_status(state),
            "created_at": engine.started_at,
            "updated_at": updated,
            "position": position + 1,
            "description": service.title,
            "showcase": true,
            "start_date": null,
            "group_id": null,
            "page_id": "aiwatch",
            "group": false,
            "only_show_if_degraded": false,
        }));
    }
    (out, all)
}

fn indicator(states: &[State]) -> (&'static str, &'static str) {
    let outages = states.iter().filter(|s| **s == State::Outage).count();
    if outages > 0 && outages * 2 >= states.len() {
        ("critical", "Major System Outage")
    } else if outages > 0 {
        ("major", "Partial System Outage")
    } else if states.contains(&State::Degraded) {
        ("minor", "Partially Degraded Service")
    } else if states.contains(&State::Maintenance) {
        ("maintenance", "Service Under Maintenance")
    } else {
        ("none", "All Systems Operational")
    }
}

/// One aiwatch incident in Statuspage's incident shape.
pub fn incident_json(incident: &Incident) -> Value {
    let status = match incident.phase {
        IncidentPhase::Resolved => "resolved",
        IncidentPhase::Validating => "monitoring",
        IncidentPhase::Open if incident.confirmed => "identified",
        IncidentPhase::Open => "investigating",
    };
    let impact = match incident.severity {
        State::Outage => "major",
        _ => "minor",
    };
    let component = component_status(incident.severity);
    let updates: Vec<Value> = incident
        .timeline
        .iter()
        .enumerate()
        .rev()
        .map(|(n, entry)| {
            json!({
                "id": format!("{}-{n}", incident.id),
                "status": status,
                "body": entry.text,
                "incident_id": incident.id,
                "created_at": entry.at,
                "updated_at": entry.at,
                "display_at": entry.at,
                "affected_components": [{
                    "code": incident.key.service, "name": incident.key.service,
                    "old_status": "operational", "new_status": component,
                }],
            })
        })
        .collect();
    json!({
        "id": incident.id,
        "name": format!("{} {}: {}", incident.key.service, incident.key.component, incident.cause.as_str().replace('_', " ")),
        "status": status,
        "impact": impact,
        "created_at": incident.opened_at,
        "updated_at": incident.updated_at,
        "started_at": incident.opened_at,
        "monitoring_at": null,
        "resolved_at": incident.resolved_at,
        "shortlink": format!("/api/incidents/{}", incident.id),
        "page_id": "aiwatch",
        "incident_updates": updates,
        "components": [{"id": incident.key.service, "name": incident.key.service, "status": component}],
    })
}

pub async fn summary(AxumState(engine): AxumState<Shared>) -> Json<Value> {
    let (components, states) = components_json(&engine);
    let (indicator, description) = indicator(&states);
    let incidents: Vec<Value> = engine.open_incidents().iter().map(incident_json).collect();
    Json(json!({
        "page": page(&engine),
        "status": {"indicator": indicator, "description": description},
        "components": components,
        "incidents": incidents,
        "scheduled_maintenances": [],
    }))
}

pub async fn status(AxumState(engine): AxumState<Shared>) -> Json<Value> {
    let (_, states) = components_json(&engine);
    let (indicator, description) = indicator(&states);
    Json(
        json!({"page": page(&engine), "status": {"indicator": indicator, "description": description}}),
    )
}

pub async fn components(AxumState(engine): AxumState<Shared>) -> Json<Value> {
    let (components, _) = components_json(&engine);
    Json(json!({"page": page(&engine), "components": components}))
}

pub async fn unresolved(AxumState(engine): AxumState<Shared>) -> Json<Value> {
    let incidents: Vec<Value> = engine.open_incidents().iter().map(incident_json).collect();
    Json(json!({"page": page(&engine), "incidents": incidents}))
}

pub async fn incidents(AxumState(engine): AxumState<Shared>) -> Result<Json<Value>, ApiError> {
    let store = engine.store.clone();
    let list = tokio::task::spawn_blocking(move || {
        store.incidents(&IncidentQuery {
            limit: 50,
            ..IncidentQuery::default()
        })
    })
    .await
    .map_err(|_| ApiError::bad_request("interrupted"))??;
    let incidents: Vec<Value> = list.iter().map(incident_json).collect();
    Ok(Json(json!({"page": page(&engine), "incidents": incidents})))
}

pub async fn maintenances(AxumState(engine): AxumState<Shared>) -> Json<Value> {
    Json(json!({"page": page(&engine), "scheduled_maintenances": []}))
}
