//! The Statuspage-compatible API (`/api/v2/*.json`): one component per watched service, named
//! after it, so tools that already read status pages can read aiwatch.

use std::sync::Arc;

use aiwatch_core::assess::{Incident, IncidentPhase};
use aiwatch_core::Status;
use aiwatch_store::IncidentQuery;
use axum::extract::State as AxumState;
use axum::Json;
use chrono::Utc;
use serde_json::{json, Value};

use crate::api::ApiError;
use crate::engine::Engine;

type Shared = Arc<Engine>;

/// Statuspage's component status for a state. The format has neither "unknown" nor "not
/// running"; those never become a health aiwatch did not see (see [`components_json`]).
pub fn component_status(state: Status) -> &'static str {
    state.statuspage_component().unwrap_or("operational")
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

/// The page's components: one per watched service whose state aiwatch could measure, with the
/// core's public status. A service it cannot see now keeps its last measured status, and the
/// description says since when it is not measured; a service never measured (or a local
/// runtime not running here) is left out and named in the page's description.
fn components_json(engine: &Engine) -> (Vec<Value>, Vec<Status>, Vec<String>) {
    let mut out = Vec::new();
    let mut all = Vec::new();
    let mut unmeasured = Vec::new();
    for (position, (service, now)) in engine
        .services
        .iter()
        .zip(engine.services_now())
        .enumerate()
    {
        let assessment = now.assessment;
        if assessment.status == Status::NotRunning {
            continue;
        }
        let updated = now.since.unwrap_or(engine.started_at);
        let (state, description) = match assessment.status.statuspage_component() {
            Some(_) => (assessment.status, service.title.clone()),
            None => match engine.last_measured(&service.name) {
                Some((last, at)) => (
                    last,
                    format!(
                        "{} — not measured now ({}); last measured {}",
                        service.title,
                        assessment.cause,
                        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    ),
                ),
                None => {
                    unmeasured.push(service.title.clone());
                    continue;
                }
            },
        };
        all.push(state);
        out.push(json!({
            "id": service.name,
            "name": service.name,
            "status": component_status(state),
            "created_at": engine.started_at,
            "updated_at": updated,
            "position": position + 1,
            "description": description,
            "showcase": true,
            "start_date": null,
            "group_id": null,
            "page_id": "aiwatch",
            "group": false,
            "only_show_if_degraded": false,
        }));
    }
    (out, all, unmeasured)
}

/// The page's roll-up: never "All Systems Operational" about what could not be seen.
fn indicator(states: &[Status], unmeasured: &[String]) -> (&'static str, String) {
    let outages = states.iter().filter(|s| **s == Status::Outage).count();
    let (indicator, words) = if states.is_empty() {
        ("minor", "Not measured")
    } else if outages > 0 && outages * 2 >= states.len() {
        ("critical", "Major System Outage")
    } else if outages > 0 {
        ("major", "Partial System Outage")
    } else if states.contains(&Status::Degraded) {
        ("minor", "Partially Degraded Service")
    } else if states.contains(&Status::Maintenance) {
        ("maintenance", "Service Under Maintenance")
    } else if unmeasured.is_empty() {
        ("none", "All Systems Operational")
    } else {
        ("none", "No trouble seen")
    };
    let description = if unmeasured.is_empty() {
        words.to_owned()
    } else {
        format!(
            "{words}; not measured from this monitor: {}",
            unmeasured.join(", ")
        )
    };
    (indicator, description)
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
        Status::Outage => "major",
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
    let (components, states, unmeasured) = components_json(&engine);
    let (indicator, description) = indicator(&states, &unmeasured);
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
    let (_, states, unmeasured) = components_json(&engine);
    let (indicator, description) = indicator(&states, &unmeasured);
    Json(
        json!({"page": page(&engine), "status": {"indicator": indicator, "description": description}}),
    )
}

pub async fn components(AxumState(engine): AxumState<Shared>) -> Json<Value> {
    let (components, _, _) = components_json(&engine);
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
    .map_err(|_| ApiError::internal("the incidents could not be read"))??;
    let incidents: Vec<Value> = list.iter().map(incident_json).collect();
    Ok(Json(json!({"page": page(&engine), "incidents": incidents})))
}

pub async fn maintenances(AxumState(engine): AxumState<Shared>) -> Json<Value> {
    Json(json!({"page": page(&engine), "scheduled_maintenances": []}))
}
