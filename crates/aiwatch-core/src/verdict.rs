//! The answer for one service: status, scope, cause, the evidence behind it and what to do.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::cause::{Cause, Scope, Status};
use crate::official::OfficialView;
use crate::service::ServiceName;

/// How one piece of evidence came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Warn,
    Fail,
    Skip,
}

/// One line of evidence: a layer, how it went, what was seen, how long it took.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EvidenceLine {
    pub layer: String,
    pub outcome: Outcome,
    pub detail: String,
    pub ms: Option<f64>,
}

/// The official view as the JSON contract shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OfficialSummary {
    pub indicator: Option<String>,
    pub signal: Status,
    pub components: Vec<OfficialComponent>,
    pub incidents: Vec<OfficialIncident>,
    pub maintenances: Vec<OfficialMaintenance>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OfficialComponent {
    pub name: String,
    pub status: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OfficialIncident {
    pub title: String,
    pub impact: String,
    pub status: String,
    pub updated_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OfficialMaintenance {
    pub title: String,
    pub status: String,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub scheduled_until: Option<DateTime<Utc>>,
}

impl From<&OfficialView> for OfficialSummary {
    fn from(view: &OfficialView) -> Self {
        Self {
            indicator: view.indicator.as_ref().map(|i| i.raw().to_owned()),
            signal: view.signal,
            components: view
                .components
                .iter()
                .map(|c| OfficialComponent {
                    name: c.name.clone(),
                    status: c.status.raw().to_owned(),
                })
                .collect(),
            incidents: view
                .incidents
                .iter()
                .map(|i| OfficialIncident {
                    title: i.name.clone(),
                    impact: i.impact.raw().to_owned(),
                    status: i.status.raw().to_owned(),
                    updated_at: i.updated_at.or(i.created_at),
                })
                .collect(),
            maintenances: view
                .maintenances
                .iter()
                .map(|m| OfficialMaintenance {
                    title: m.name.clone(),
                    status: m.status.raw().to_owned(),
                    scheduled_for: m.scheduled_for,
                    scheduled_until: m.scheduled_until,
                })
                .collect(),
        }
    }
}

/// The verdict for one service, as `check --json` prints it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    pub service: ServiceName,
    pub status: Status,
    pub scope: Scope,
    pub cause: Cause,
    pub summary: String,
    pub evidence: Vec<EvidenceLine>,
    pub advice: Vec<String>,
    pub official: Option<OfficialSummary>,
    pub checked_at: DateTime<Utc>,
}

/// Who is at fault across several verdicts, for `check`'s exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    None,
    Degraded,
    Provider,
    User,
    CouldNotTell,
}

impl Verdict {
    /// Who is at fault for this one service.
    pub fn fault(&self) -> Fault {
        if self.scope.is_users_side() {
            return Fault::User;
        }
        match self.status {
            Status::Operational if self.cause == Cause::Ok => Fault::None,
            Status::Operational | Status::Degraded | Status::Maintenance => Fault::Degraded,
            Status::NotRunning => Fault::User,
            Status::Outage => Fault::Provider,
            Status::Unknown => Fault::CouldNotTell,
        }
    }
}

impl Fault {
    /// `check`'s exit code: 0 operational, 1 degraded, 2 provider outage, 3 user's side,
    /// 4 could not tell.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::None => 0,
            Self::Degraded => 1,
            Self::Provider => 2,
            Self::User => 3,
            Self::CouldNotTell => 4,
        }
    }

    /// The fault that matters most across services: the user's own side first (it affects
    /// everything they do), then provider outages, then "could not tell", then degradations.
    pub fn worst(faults: impl IntoIterator<Item = Fault>) -> Fault {
        let rank = |f: &Fault| match f {
            Fault::None => 0,
            Fault::Degraded => 1,
            Fault::CouldNotTell => 2,
            Fault::Provider => 3,
            Fault::User => 4,
        };
        faults.into_iter().max_by_key(rank).unwrap_or(Fault::None)
    }
}
