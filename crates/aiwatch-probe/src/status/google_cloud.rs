//! Parses Google Cloud Service Health `status.cloud.google.com/incidents.json` (one array with
//! every product's full history) into the view of the products a service cares about.
//!
//! Choices:
//! - An incident is kept when one of `products` equals (ignoring ASCII case and surrounding
//!   spaces) the `title`, `current_title` or `id` of one of its `affected_products`, or its
//!   legacy `service_name`/`service_key`. An empty `products` keeps every incident.
//! - Open iff `end` is missing, `null` or blank (the last update's status is not used: closed
//!   incidents can still end on `SERVICE_DISRUPTION`). Open → `Investigating` (Google has no
//!   finer lifecycle), closed → `Resolved` with `resolved_at` = `end`.
//! - Impact from `severity`: low → minor, medium → major, high → critical; without a known
//!   severity, from `status_impact`: SERVICE_INFORMATION → minor, SERVICE_DISRUPTION → major,
//!   SERVICE_OUTAGE → critical; otherwise `Impact::Unknown(raw)`.
//! - One synthesized component per requested product (in the order given, repeats dropped):
//!   `name` = the product string as requested (so `OfficialStatus::view_for` finds it), `id` =
//!   Google's product id when some incident names the product, else the requested string.
//!   Its status is the worst over its open incidents: SERVICE_OUTAGE → major_outage,
//!   SERVICE_DISRUPTION → partial_outage, SERVICE_INFORMATION → degraded_performance (something
//!   is being reported, so not "operational"); without a known `status_impact`, severity
//!   high/medium/low gives the same three; else `Unknown(raw)`. With no open incident it is
//!   operational — including for a product name that matches nothing, which cannot be told
//!   apart from a product that never had an incident.
//! - `Incident.components` = the Google ids of the incident's affected products (or its legacy
//!   `service_key` when it lists none). `created_at` = `begin` (when the impact started), else
//!   `created`; `updated_at` = `modified`; `url` = `https://status.cloud.google.com/` + `uri`.
//!   Updates come from `updates[]` (else `most_recent_update`), timed by `when` else `created`,
//!   with Google's status (`AVAILABLE`, `SERVICE_DISRUPTION`, …) kept raw.
//! - Indicator: from the worst open kept incident's impact (minor/major/critical), `none` when
//!   none is open. `updated_at` = the latest `modified` in the whole document.
//! - Incidents outside the filter are only read as far as matching needs.

use std::collections::HashSet;

use aiwatch_core::official::{
    Component, ComponentStatus, Impact, Incident, IncidentStatus, IncidentUpdate, Indicator,
    OfficialStatus,
};
use serde_json::Value;

use super::json::{format_error, kind, parse_body, Fields};
use super::{dedup_keep_order, newest_first};
use crate::Error;

const FORMAT: &str = "google cloud incidents";
const BASE_URL: &str = "https://status.cloud.google.com";

/// Parses Google Cloud's `incidents.json`, keeping the incidents that affect any of `products`
/// (product titles or ids, case-insensitive; all incidents when `products` is empty), with one
/// synthesized component per requested product.
pub fn parse_google_cloud_incidents(
    body: &[u8],
    products: &[String],
) -> Result<OfficialStatus, Error> {
    let value = parse_body(body, FORMAT)?;
    let list = match &value {
        Value::Array(list) => list,
        other => {
            return Err(format_error(
                FORMAT,
                format!("expected a JSON array of incidents, got {}", kind(other)),
            ))
        }
    };
    let wanted = Wanted::new(products);
    let mut product_ids: Vec<Option<String>> = vec![None; wanted.names.len()];
    let mut worst: Vec<ComponentStatus> = vec![ComponentStatus::Operational; wanted.names.len()];
    let mut worst_open: Option<Impact> = None;
    let mut incidents = Vec::new();
    let mut seen = HashSet::new();
    let mut updated_at = None;

    for (i, item) in list.iter().enumerate() {
        let f = Fields::at(item, format!("[{i}]"), FORMAT)?;
        updated_at = updated_at.max(f.time("modified"));
        let keys = product_keys(&f)?;
        let matched = wanted.matches(&keys);
        for &(w, ref id) in &matched {
            if product_ids[w].is_none() {
                product_ids[w] = id.clone();
            }
        }
        if !wanted.is_empty() && matched.is_empty() {
            continue;
        }
        let incident = parse_incident(&f, &keys)?;
        if !seen.insert(incident.id.clone()) {
            continue;
        }
        if !incident.status.is_resolved() {
            let status = component_status(&f)?;
            for &(w, _) in &matched {
                if rank(&status) > rank(&worst[w]) {
                    worst[w] = status.clone();
                }
            }
            if worst_open
                .as_ref()
                .is_none_or(|w| impact_rank(&incident.impact) > impact_rank(w))
            {
                worst_open = Some(incident.impact.clone());
            }
        }
        incidents.push(incident);
    }

    let components = wanted
        .names
        .iter()
        .zip(product_ids)
        .zip(worst)
        .map(|((name, id), status)| Component {
            id: id.unwrap_or_else(|| name.clone()),
            name: name.clone(),
            status,
            group: None,
        })
        .collect();
    Ok(OfficialStatus {
        page_name: Some("Google Cloud Service Health".to_owned()),
        page_url: Some(BASE_URL.to_owned()),
        indicator: Some(worst_open.map_or(Indicator::None, |i| indicator(&i))),
        description: None,
        components,
        incidents,
        maintenances: Vec::new(),
        updated_at,
    })
}

/// The requested products, trimmed, without repeats (ignoring case).
struct Wanted {
    names: Vec<String>,
    lower: Vec<String>,
}

impl Wanted {
    fn new(products: &[String]) -> Self {
        let mut names = Vec::new();
        let mut lower: Vec<String> = Vec::new();
        for product in products {
            let name = product.trim();
            let key = name.to_ascii_lowercase();
            if name.is_empty() || lower.contains(&key) {
                continue;
            }
            names.push(name.to_owned());
            lower.push(key);
        }
        Wanted { names, lower }
    }

    fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The indices of the requested products this incident names, each with Google's id for it.
    fn matches(&self, keys: &ProductKeys) -> Vec<(usize, Option<String>)> {
        let mut out = Vec::new();
        for (w, wanted) in self.lower.iter().enumerate() {
            let hit = keys
                .iter()
                .find(|k| k.names.iter().any(|n| n.eq_ignore_ascii_case(wanted)));
            if let Some(key) = hit {
                out.push((w, key.id.clone()));
            }
        }
        out
    }
}

/// One product an incident names: its Google id and every name it can be asked for by.
struct ProductKey {
    id: Option<String>,
    names: Vec<String>,
}

/// The products an incident names: `affected_products`, then the legacy single product.
struct ProductKeys {
    affected: Vec<ProductKey>,
    legacy: Option<ProductKey>,
}

impl ProductKeys {
    fn iter(&self) -> impl Iterator<Item = &ProductKey> {
        self.affected.iter().chain(&self.legacy)
    }

    /// Google's ids of the products, for `Incident.components`.
    fn ids(&self) -> Vec<String> {
        let keys = if self.affected.is_empty() {
            self.legacy.as_slice()
        } else {
            &self.affected
        };
        dedup_keep_order(keys.iter().filter_map(|k| k.id.clone()).collect())
    }
}

fn product_keys(f: &Fields<'_>) -> Result<ProductKeys, Error> {
    let mut affected = Vec::new();
    for product in f.objects("affected_products")? {
        let product = product?;
        let id = product.non_blank_str("id")?;
        let mut names = Vec::new();
        for key in ["title", "current_title"] {
            names.extend(product.non_blank_str(key)?.map(str::to_owned));
        }
        names.extend(id.map(str::to_owned));
        affected.push(ProductKey {
            id: id.map(str::to_owned),
            names,
        });
    }
    let service_key = f.non_blank_str("service_key")?;
    let service_name = f.non_blank_str("service_name")?;
    let legacy = (service_key.is_some() || service_name.is_some()).then(|| ProductKey {
        id: service_key.map(str::to_owned),
        names: service_name
            .into_iter()
            .chain(service_key)
            .map(str::to_owned)
            .collect(),
    });
    Ok(ProductKeys { affected, legacy })
}

fn parse_incident(f: &Fields<'_>, keys: &ProductKeys) -> Result<Incident, Error> {
    let open = f.non_blank_str("end")?.is_none();
    Ok(Incident {
        id: f.req_id("id")?,
        name: f.opt_str("external_desc")?.unwrap_or("").trim().to_owned(),
        status: if open {
            IncidentStatus::Investigating
        } else {
            IncidentStatus::Resolved
        },
        impact: impact(f)?,
        created_at: f.time("begin").or_else(|| f.time("created")),
        updated_at: f.time("modified"),
        resolved_at: if open { None } else { f.time("end") },
        url: f.non_blank_str("uri")?.map(absolute_url),
        components: keys.ids(),
        updates: parse_updates(f)?,
    })
}

fn absolute_url(uri: &str) -> String {
    if uri.contains("://") {
        uri.to_owned()
    } else {
        format!("{BASE_URL}/{}", uri.trim_start_matches('/'))
    }
}

fn parse_updates(f: &Fields<'_>) -> Result<Vec<IncidentUpdate>, Error> {
    let mut updates = Vec::new();
    if f.get("updates").is_some() {
        for update in f.objects("updates")? {
            updates.push(parse_update(&update?)?);
        }
    } else if let Some(update) = f.object("most_recent_update")? {
        updates.push(parse_update(&update)?);
    }
    newest_first(&mut updates);
    Ok(updates)
}

fn parse_update(u: &Fields<'_>) -> Result<IncidentUpdate, Error> {
    Ok(IncidentUpdate {
        status: u.opt_str("status")?.unwrap_or("").to_owned(),
        body: u.opt_str("text")?.unwrap_or("").to_owned(),
        created_at: u.time("when").or_else(|| u.time("created")),
    })
}

fn impact(f: &Fields<'_>) -> Result<Impact, Error> {
    let severity = f.non_blank_str("severity")?;
    let status_impact = f.non_blank_str("status_impact")?;
    let from_severity = severity.and_then(|s| match s.to_ascii_lowercase().as_str() {
        "low" => Some(Impact::Minor),
        "medium" => Some(Impact::Major),
        "high" => Some(Impact::Critical),
        _ => None,
    });
    let from_status = status_impact.and_then(|s| match s.to_ascii_uppercase().as_str() {
        "SERVICE_INFORMATION" => Some(Impact::Minor),
        "SERVICE_DISRUPTION" => Some(Impact::Major),
        "SERVICE_OUTAGE" => Some(Impact::Critical),
        _ => None,
    });
    Ok(from_severity
        .or(from_status)
        .unwrap_or_else(|| Impact::from_raw(severity.or(status_impact).unwrap_or(""))))
}

fn component_status(f: &Fields<'_>) -> Result<ComponentStatus, Error> {
    let status_impact = f.non_blank_str("status_impact")?;
    let severity = f.non_blank_str("severity")?;
    let from_status = status_impact.and_then(|s| match s.to_ascii_uppercase().as_str() {
        "SERVICE_OUTAGE" => Some(ComponentStatus::MajorOutage),
        "SERVICE_DISRUPTION" => Some(ComponentStatus::PartialOutage),
        "SERVICE_INFORMATION" => Some(ComponentStatus::DegradedPerformance),
        _ => None,
    });
    let from_severity = severity.and_then(|s| match s.to_ascii_lowercase().as_str() {
        "high" => Some(ComponentStatus::MajorOutage),
        "medium" => Some(ComponentStatus::PartialOutage),
        "low" => Some(ComponentStatus::DegradedPerformance),
        _ => None,
    });
    Ok(from_status.or(from_severity).unwrap_or_else(|| {
        ComponentStatus::Unknown(status_impact.or(severity).unwrap_or("").to_owned())
    }))
}

fn rank(status: &ComponentStatus) -> u8 {
    match status {
        ComponentStatus::Operational => 0,
        ComponentStatus::Unknown(_) => 1,
        ComponentStatus::UnderMaintenance => 2,
        ComponentStatus::DegradedPerformance => 3,
        ComponentStatus::PartialOutage => 4,
        ComponentStatus::MajorOutage => 5,
    }
}

fn impact_rank(impact: &Impact) -> u8 {
    match impact {
        Impact::None => 0,
        Impact::Maintenance => 1,
        Impact::Unknown(_) => 2,
        Impact::Minor => 3,
        Impact::Major => 4,
        Impact::Critical => 5,
    }
}

fn indicator(impact: &Impact) -> Indicator {
    match impact {
        Impact::None => Indicator::None,
        Impact::Minor => Indicator::Minor,
        Impact::Major => Indicator::Major,
        Impact::Critical => Indicator::Critical,
        Impact::Maintenance => Indicator::Maintenance,
        Impact::Unknown(raw) => Indicator::from_raw(raw),
    }
}
