//! One fact from one source at one time, as the daemon records it: the unit that `assess`
//! consumes and the store keeps.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::cause::Cause;
use crate::service::ServiceName;

/// The name of the vantage point that is this machine.
pub const LOCAL_REGION: &str = "local";

/// A vantage point: where probes ran from (`local` is this machine; agents name theirs).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Region(String);

impl Region {
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }

    /// This machine.
    pub fn local() -> Self {
        Self(LOCAL_REGION.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Region {
    fn default() -> Self {
        Self::local()
    }
}

impl From<&str> for Region {
    fn from(name: &str) -> Self {
        Self(name.to_owned())
    }
}

impl From<String> for Region {
    fn from(name: String) -> Self {
        Self(name)
    }
}

impl std::fmt::Display for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which face of a service an observation is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Component {
    /// The API scripts and SDKs call.
    Api,
    /// The web front-end people open in a browser.
    Web,
    /// The provider's official status page, as a whole for this service.
    Official,
}

impl Component {
    pub const ALL: [Component; 3] = [Self::Api, Self::Web, Self::Official];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Web => "web",
            Self::Api => "api",
            Self::Official => "official",
        }
    }

    /// The component with this name, if any.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == raw)
    }

    /// Whether aiwatch's own probes observe it (web and API), as opposed to the official page.
    pub fn is_probed(self) -> bool {
        !matches!(self, Self::Official)
    }
}

impl std::fmt::Display for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

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

    /// The source a stored or received word names; `None` for any other word.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "probe" => Some(Self::Probe),
            "canary" => Some(Self::Canary),
            "official" => Some(Self::Official),
            _ => None,
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

    /// The health a stored or received word names; `None` for any other word.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "up" => Some(Self::Up),
            "degraded" => Some(Self::Degraded),
            "down" => Some(Self::Down),
            "unknown" => Some(Self::Unknown),
            _ => None,
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
    pub component: Component,
    pub region: Region,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_words_read_back_and_unknown_words_are_refused() {
        for source in [Source::Probe, Source::Canary, Source::Official] {
            assert_eq!(Source::parse(source.as_str()), Some(source));
        }
        for health in [Health::Up, Health::Degraded, Health::Down, Health::Unknown] {
            assert_eq!(Health::parse(health.as_str()), Some(health));
        }
        assert_eq!(Source::parse("agent"), None);
        assert_eq!(Health::parse("Up"), None);
    }
}
