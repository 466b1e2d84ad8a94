//! The normalized model of an official status page, and the view of it for one service.

use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};

use crate::cause::Status;

macro_rules! open_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $code:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant,)+
            /// A value the format did not define when this was written; the raw value is kept.
            Unknown(String),
        }

        impl $name {
            /// Maps a raw value; anything unrecognized becomes `Unknown` with the raw text kept.
            pub fn from_raw(raw: &str) -> Self {
                match raw.trim().to_ascii_lowercase().as_str() {
                    $($code => Self::$variant,)+
                    _ => Self::Unknown(raw.to_owned()),
                }
            }

            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $code,)+
                    Self::Unknown(_) => "unknown",
                }
            }

            /// The raw value for unknown ones, the code for known ones.
            pub fn raw(&self) -> &str {
                match self {
                    Self::Unknown(raw) => raw,
                    known => known.as_str(),
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                match self {
                    Self::Unknown(raw) => write!(f, "unknown ({raw})"),
                    known => f.write_str(known.as_str()),
                }
            }
        }
    };
}

open_enum!(
    /// The page's own roll-up (Statuspage `status.indicator`).
    Indicator {
        None => "none",
        Minor => "minor",
        Major => "major",
        Critical => "critical",
        Maintenance => "maintenance",
    }
);

open_enum!(
    /// A component's state as the page reports it.
    ComponentStatus {
        Operational => "operational",
        DegradedPerformance => "degraded_performance",
        PartialOutage => "partial_outage",
        MajorOutage => "major_outage",
        UnderMaintenance => "under_maintenance",
    }
);

open_enum!(
    /// Where an incident is in its lifecycle.
    IncidentStatus {
        Investigating => "investigating",
        Identified => "identified",
        Monitoring => "monitoring",
        Resolved => "resolved",
        Postmortem => "postmortem",
    }
);

open_enum!(
    /// How bad the provider says an incident is.
    Impact {
        None => "none",
        Minor => "minor",
        Major => "major",
        Critical => "critical",
        Maintenance => "maintenance",
    }
);

open_enum!(
    /// Where a scheduled maintenance is in its lifecycle.
    MaintenanceStatus {
        Scheduled => "scheduled",
        InProgress => "in_progress",
        Verifying => "verifying",
        Completed => "completed",
    }
);

impl IncidentStatus {
    pub fn is_resolved(&self) -> bool {
        matches!(self, Self::Resolved | Self::Postmortem)
    }
}

impl MaintenanceStatus {
    pub fn is_active(&self) -> bool {
        matches!(self, Self::InProgress | Self::Verifying)
    }
}

/// One official status page, normalized from whatever format it came in.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct OfficialStatus {
    pub page_name: Option<String>,
    pub page_url: Option<String>,
    pub indicator: Option<Indicator>,
    pub description: Option<String>,
    pub components: Vec<Component>,
    pub incidents: Vec<Incident>,
    pub maintenances: Vec<Maintenance>,
    pub updated_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Component {
    pub id: String,
    pub name: String,
    pub status: ComponentStatus,
    /// The name of the group this component belongs to, if the page groups them.
    pub group: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Incident {
    pub id: String,
    pub name: String,
    pub status: IncidentStatus,
    pub impact: Impact,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub url: Option<String>,
    /// Ids (or names, where the format has no ids) of affected components; empty when the
    /// format does not tie incidents to components.
    pub components: Vec<String>,
    /// Newest first.
    pub updates: Vec<IncidentUpdate>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IncidentUpdate {
    pub status: String,
    pub body: String,
    pub created_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Maintenance {
    pub id: String,
    pub name: String,
    pub status: MaintenanceStatus,
    pub impact: Impact,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub scheduled_until: Option<DateTime<Utc>>,
    pub url: Option<String>,
    pub components: Vec<String>,
    pub updates: Vec<IncidentUpdate>,
}

/// The part of an official page that concerns one service.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OfficialView {
    pub indicator: Option<Indicator>,
    pub description: Option<String>,
    pub signal: Status,
    /// The components that stand for the service (all components when none are configured).
    pub components: Vec<Component>,
    /// Unresolved incidents that touch the service, or that the page does not tie to components.
    pub incidents: Vec<Incident>,
    /// Maintenances in progress or upcoming that touch the service.
    pub maintenances: Vec<Maintenance>,
}

impl OfficialStatus {
    /// Reduces the page to what concerns a service covered by `wanted` component names.
    pub fn view_for(&self, wanted: &[String]) -> OfficialView {
        let matches_name = |c: &Component| {
            wanted.iter().any(|w| {
                w.eq_ignore_ascii_case(&c.name)
                    || c.group
                        .as_deref()
                        .is_some_and(|g| w.eq_ignore_ascii_case(g))
            })
        };
        // With nothing to narrow the page by, every component of it stands for the service.
        let components: Vec<Component> = if wanted.is_empty() {
            self.components.clone()
        } else {
            self.components
                .iter()
                .filter(|c| matches_name(c))
                .cloned()
                .collect()
        };
        let covered_keys: Vec<&str> = components
            .iter()
            .flat_map(|c| [c.id.as_str(), c.name.as_str()])
            .collect();
        let touches = |ids: &[String]| {
            ids.is_empty()
                || components.is_empty()
                || ids.iter().any(|id| covered_keys.contains(&id.as_str()))
        };
        let incidents: Vec<Incident> = self
            .incidents
            .iter()
            .filter(|i| !i.status.is_resolved() && touches(&i.components))
            .cloned()
            .collect();
        let maintenances: Vec<Maintenance> = self
            .maintenances
            .iter()
            .filter(|m| m.status != MaintenanceStatus::Completed && touches(&m.components))
            .cloned()
            .collect();

        let from_components = components
            .iter()
            .map(|c| component_signal(&c.status))
            .max_by_key(|s| s.severity());
        let from_indicator = self.indicator.as_ref().map(indicator_signal);
        // A page taken whole speaks through its own roll-up, when it has one.
        let mut signal = match (wanted.is_empty(), from_components, from_indicator) {
            (true, _, Some(indicator)) => indicator,
            (_, Some(s), _) => s,
            (_, None, indicator) => indicator.unwrap_or(Status::Unknown),
        };
        if maintenances.iter().any(|m| m.status.is_active()) && signal == Status::Operational {
            signal = Status::Maintenance;
        }
        // An incident tied to one of the service's components outranks a green component list
        // that has not caught up yet.
        let tied_incident = incidents.iter().any(|i| !i.components.is_empty());
        if tied_incident && signal == Status::Operational {
            signal = Status::Degraded;
        }
        OfficialView {
            indicator: self.indicator.clone(),
            description: self.description.clone(),
            signal,
            components,
            incidents,
            maintenances,
        }
    }
}

fn component_signal(status: &ComponentStatus) -> Status {
    match status {
        ComponentStatus::Operational => Status::Operational,
        ComponentStatus::DegradedPerformance => Status::Degraded,
        ComponentStatus::PartialOutage | ComponentStatus::MajorOutage => Status::Outage,
        ComponentStatus::UnderMaintenance => Status::Maintenance,
        ComponentStatus::Unknown(_) => Status::Unknown,
    }
}

fn indicator_signal(indicator: &Indicator) -> Status {
    match indicator {
        Indicator::None => Status::Operational,
        Indicator::Minor => Status::Degraded,
        Indicator::Major | Indicator::Critical => Status::Outage,
        Indicator::Maintenance => Status::Maintenance,
        Indicator::Unknown(_) => Status::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component(name: &str, status: &str) -> Component {
        Component {
            id: format!("id-{name}"),
            name: name.into(),
            status: ComponentStatus::from_raw(status),
            group: None,
        }
    }

    #[test]
    fn unknown_enum_values_keep_their_raw_text() {
        let s = ComponentStatus::from_raw("on_fire");
        assert_eq!(s.as_str(), "unknown");
        assert_eq!(s.raw(), "on_fire");
        assert_eq!(
            ComponentStatus::from_raw("Major_Outage"),
            ComponentStatus::MajorOutage
        );
    }

    #[test]
    fn view_takes_the_worst_covered_component_not_the_page() {
        let page = OfficialStatus {
            indicator: Some(Indicator::Minor),
            components: vec![
                component("claude.ai", "operational"),
                component("Console", "major_outage"),
            ],
            ..OfficialStatus::default()
        };
        let view = page.view_for(&["claude.ai".into()]);
        assert_eq!(view.signal, Status::Operational);
        assert_eq!(view.components.len(), 1);
        let view = page.view_for(&["Console".into()]);
        assert_eq!(view.signal, Status::Outage);
    }

    #[test]
    fn view_without_covered_components_falls_back_to_the_indicator() {
        let page = OfficialStatus {
            indicator: Some(Indicator::Major),
            ..OfficialStatus::default()
        };
        assert_eq!(page.view_for(&[]).signal, Status::Outage);
        let page = OfficialStatus::default();
        assert_eq!(page.view_for(&[]).signal, Status::Unknown);
    }
}
