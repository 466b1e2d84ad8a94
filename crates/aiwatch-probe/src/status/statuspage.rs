//! Parses Atlassian Statuspage v2 JSON (`summary.json`, `incidents.json`,
//! `scheduled-maintenances.json`) and incident.io's Statuspage-compatible imitation of it.
//!
//! What is done with the awkward parts:
//! - Every collection is optional: `incidents` and `scheduled_maintenances` may be missing
//!   (incident.io omits them), and so may `page` and `status`.
//! - Rows with `group: true` are containers, not components: they are not listed; each child
//!   names its container in `Component.group` (through `group_id`). A `group_id` that points at
//!   no group row leaves `group` as `None`.
//! - `Incident.components` = the ids in the incident's `components[]` (objects with `id`, or
//!   bare id strings) followed by every update's `affected_components[].code`, deduplicated.
//! - `Incident.url` = `shortlink` when present, otherwise `None` (no URL is guessed).
//! - An update's time is `display_at` (the time the page shows), else its `created_at`.
//!   Updates are ordered newest first.
//! - A missing `impact` is `Impact::Unknown("")`; `id`, `name` and `status` are required.
//! - Fields aiwatch does not use (`reminder_intervals`, which may be `"[]"` or `null`,
//!   `position`, `showcase`, …) are not read at all, so their types do not matter.

use std::collections::HashMap;

use aiwatch_core::official::{
    Component, ComponentStatus, Impact, Incident, IncidentStatus, IncidentUpdate, Indicator,
    Maintenance, MaintenanceStatus, OfficialStatus,
};

use super::json::{format_error, parse_body, Fields};
use super::{dedup_keep_order, first_of_each_id, newest_first};
use crate::Error;

const SUMMARY: &str = "statuspage summary";
const INCIDENTS: &str = "statuspage incidents";
const MAINTENANCES: &str = "statuspage scheduled maintenances";

/// Parses `/api/v2/summary.json` (Atlassian Statuspage or incident.io): page, indicator,
/// components, unresolved incidents and upcoming/active maintenances.
///
/// The body must be an object with at least `status` or `components`; anything else is an
/// [`Error::StatusFormat`].
pub fn parse_statuspage_summary(body: &[u8]) -> Result<OfficialStatus, Error> {
    let value = parse_body(body, SUMMARY)?;
    let root = Fields::root(&value, SUMMARY)?;
    if !root.has("status") && !root.has("components") {
        return Err(format_error(
            SUMMARY,
            format!(
                "neither \"status\" nor \"components\" is present, so this is not a Statuspage summary ({})",
                root.key_list(8)
            ),
        ));
    }
    let page = root.object("page")?;
    let status = root.object("status")?;
    Ok(OfficialStatus {
        page_name: page_str(&page, "name")?,
        page_url: page_str(&page, "url")?,
        indicator: match &status {
            Some(status) => status.non_blank_str("indicator")?.map(Indicator::from_raw),
            None => None,
        },
        description: match &status {
            Some(status) => status.non_blank_str("description")?.map(str::to_owned),
            None => None,
        },
        components: parse_components(&root)?,
        incidents: parse_incident_list(&root, "incidents")?,
        maintenances: parse_maintenance_list(&root, "scheduled_maintenances")?,
        updated_at: page.as_ref().and_then(|p| p.time("updated_at")),
    })
}

/// Parses `/api/v2/incidents.json` or `/api/v2/incidents/unresolved.json`
/// (`{page, incidents: […]}`); a summary body works too. Resolved and postmortem incidents are
/// kept with their status. A `page` envelope without `incidents` is an empty list (incident.io
/// leaves empty collections out); an object with neither is an error.
pub fn parse_statuspage_incidents(body: &[u8]) -> Result<Vec<Incident>, Error> {
    let value = parse_body(body, INCIDENTS)?;
    let root = Fields::root(&value, INCIDENTS)?;
    require_collection(&root, "incidents")?;
    parse_incident_list(&root, "incidents")
}

/// Parses `/api/v2/scheduled-maintenances.json`, `…/upcoming.json` or `…/active.json`
/// (`{page, scheduled_maintenances: […]}`); a summary body works too. Same envelope rules as
/// [`parse_statuspage_incidents`].
pub fn parse_statuspage_maintenances(body: &[u8]) -> Result<Vec<Maintenance>, Error> {
    let value = parse_body(body, MAINTENANCES)?;
    let root = Fields::root(&value, MAINTENANCES)?;
    require_collection(&root, "scheduled_maintenances")?;
    parse_maintenance_list(&root, "scheduled_maintenances")
}

fn require_collection(root: &Fields<'_>, key: &str) -> Result<(), Error> {
    if root.has(key) || root.has("page") {
        return Ok(());
    }
    Err(format_error(
        root.format(),
        format!(
            "no \"{key}\" array and no \"page\", so this is not a Statuspage {key} list ({})",
            root.key_list(8)
        ),
    ))
}

fn page_str(page: &Option<Fields<'_>>, key: &str) -> Result<Option<String>, Error> {
    match page {
        Some(page) => Ok(page.non_blank_str(key)?.map(str::to_owned)),
        None => Ok(None),
    }
}

/// A component row before groups are resolved.
struct Row {
    id: String,
    name: String,
    status: ComponentStatus,
    group_id: Option<String>,
}

fn parse_components(root: &Fields<'_>) -> Result<Vec<Component>, Error> {
    let mut groups: HashMap<String, String> = HashMap::new();
    let mut rows = Vec::new();
    for row in root.objects("components")? {
        let row = row?;
        let id = row.req_id("id")?;
        let name = row.req_str("name")?.to_owned();
        if row.flag("group")? {
            groups.entry(id).or_insert(name);
            continue;
        }
        rows.push(Row {
            id,
            name,
            status: ComponentStatus::from_raw(row.req_str("status")?),
            group_id: row.opt_id("group_id")?,
        });
    }
    let rows = first_of_each_id(rows, |r| &r.id);
    Ok(rows
        .into_iter()
        .map(|r| Component {
            group: r.group_id.and_then(|g| groups.get(&g).cloned()),
            id: r.id,
            name: r.name,
            status: r.status,
        })
        .collect())
}

fn parse_incident_list(root: &Fields<'_>, key: &str) -> Result<Vec<Incident>, Error> {
    let mut incidents = Vec::new();
    for item in root.objects(key)? {
        incidents.push(parse_incident(&item?)?);
    }
    Ok(first_of_each_id(incidents, |i| &i.id))
}

fn parse_maintenance_list(root: &Fields<'_>, key: &str) -> Result<Vec<Maintenance>, Error> {
    let mut maintenances = Vec::new();
    for item in root.objects(key)? {
        maintenances.push(parse_maintenance(&item?)?);
    }
    Ok(first_of_each_id(maintenances, |m| &m.id))
}

fn parse_incident(f: &Fields<'_>) -> Result<Incident, Error> {
    let (updates, affected) = parse_updates(f)?;
    Ok(Incident {
        id: f.req_id("id")?,
        name: f.req_str("name")?.to_owned(),
        status: IncidentStatus::from_raw(f.req_str("status")?),
        impact: impact(f)?,
        created_at: f.time("created_at"),
        updated_at: f.time("updated_at"),
        resolved_at: f.time("resolved_at"),
        url: f.non_blank_str("shortlink")?.map(str::to_owned),
        components: component_ids(f, affected)?,
        updates,
    })
}

fn parse_maintenance(f: &Fields<'_>) -> Result<Maintenance, Error> {
    let (updates, affected) = parse_updates(f)?;
    Ok(Maintenance {
        id: f.req_id("id")?,
        name: f.req_str("name")?.to_owned(),
        status: MaintenanceStatus::from_raw(f.req_str("status")?),
        impact: impact(f)?,
        scheduled_for: f.time("scheduled_for"),
        scheduled_until: f.time("scheduled_until"),
        url: f.non_blank_str("shortlink")?.map(str::to_owned),
        components: component_ids(f, affected)?,
        updates,
    })
}

fn impact(f: &Fields<'_>) -> Result<Impact, Error> {
    Ok(Impact::from_raw(f.opt_str("impact")?.unwrap_or("")))
}

/// The updates, newest first, and the component ids their `affected_components` name.
fn parse_updates(f: &Fields<'_>) -> Result<(Vec<IncidentUpdate>, Vec<String>), Error> {
    let mut updates = Vec::new();
    let mut affected = Vec::new();
    for update in f.objects("incident_updates")? {
        let update = update?;
        for component in update.objects("affected_components")? {
            affected.push(component?.req_id("code")?);
        }
        updates.push(IncidentUpdate {
            status: update.opt_str("status")?.unwrap_or("").to_owned(),
            body: update.opt_str("body")?.unwrap_or("").to_owned(),
            created_at: update
                .time("display_at")
                .or_else(|| update.time("created_at")),
        });
    }
    newest_first(&mut updates);
    Ok((updates, affected))
}

/// Ids from `components[]` (objects or bare ids), then from the updates, without repeats.
fn component_ids(f: &Fields<'_>, affected: Vec<String>) -> Result<Vec<String>, Error> {
    let mut ids = Vec::new();
    for (i, component) in f.array("components")?.iter().enumerate() {
        let path = format!("{}[{i}]", f.path_of("components"));
        match component {
            serde_json::Value::String(id) => ids.push(id.clone()),
            other => ids.push(Fields::at(other, path, f.format())?.req_id("id")?),
        }
    }
    ids.extend(affected);
    Ok(dedup_keep_order(ids))
}
