//! One fact from one source at one time, as the daemon records it: the unit that `assess`
//! consumes and the store keeps.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::cause::Cause;
use crate::service::ServiceName;

/// The vantage point a probe ran from; `local` is this machine.
pub const LOCAL_REGION: &str = "local";

/// Where an observation came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// aiwatch's own layered probe.
    Probe,
    /// A low-stakes validation check after an outage.
    Canary,
    /// The provider's official status page.
    Official,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Probe => "probe",
            Self::Canary => "canary",
            Self::Official => "official",
        }
    }

    pub fn from_str_lossy(raw: &str) -> Self {
        match raw {
            "canary" => Self::Canary,
            "official" => Self::Official,
            _ => Self::Probe,
        }
    }
}

/// How one observation came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Up,
    Degraded,
    Down,
    /// Nothing can be said: the monitor's own network was down, or the source was unreadable.
    Unknown,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Degraded => "degraded",
            Self::Down => "down",
            Self::Unknown => "unknown",
        }
    }

    pub fn from_str_lossy(raw: &str) -> Self {
        match raw {
            "up" => Self::Up,
            "degraded" => Self::Degraded,
            "down" => Self::Down,
            _ => Self::Unknown,
        }
    }
}

/// Per-phase durations in milliseconds; absent phases are `None`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseMs {
    pub dns: Option<f32>,
    pub connect: Option<f32>,
    pub tls: Option<f32>,
    pub first_byte: Option<f32>,
    pub total: Option<f32>,
}

/// One observation of one service's component from one region.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub service: ServiceName,
    /// `api`, `web`, or an official component's name.
    pub component: String,
    pub region: String,
    pub source: Source,
    pub at: DateTime<Utc>,
    pub health: Health,
    pub cause: Cause,
    pub phases: PhaseMs,
    /// The streamed answer ended with its finish marker (`None` when no stream was sent).
    pub complete: Option<bool>,
    /// One sentence on what was seen.
    pub detail: String,
}
