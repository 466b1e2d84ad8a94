//! Builders shared by the store's integration tests: observations, incidents, times.

#![allow(dead_code)]

use aiwatch_core::assess::{Incident, IncidentPhase, Key, TimelineEntry, TimelineKind};
use aiwatch_core::observation::{Component, Health, Observation, PhaseMs, Source};
use aiwatch_core::Status;
use aiwatch_core::{Cause, ServiceName};
use chrono::{DateTime, Duration, Utc};

pub fn at(rfc3339: &str) -> DateTime<Utc> {
    rfc3339.parse().unwrap()
}

pub fn name(raw: &str) -> ServiceName {
    ServiceName::parse(raw).unwrap()
}

pub fn key(service: &str, component: &str, region: &str) -> Key {
    Key::new(name(service), component_named(component), region)
}

/// The component with this name (`api`, `web`, `official`).
pub fn component_named(raw: &str) -> Component {
    Component::parse(raw).expect("a known component")
}

/// A probe observation of `openai-api/api/local` unless changed.
pub fn obs(at: DateTime<Utc>, health: Health, total_ms: Option<f32>) -> Observation {
    Observation {
        service: name("openai-api"),
        component: Component::Api,
        region: "local".into(),
        source: Source::Probe,
        at,
        health,
        cause: match health {
            Health::Up => Cause::Ok,
            Health::Degraded => Cause::SlowResponses,
            Health::Down => Cause::ProviderError,
            Health::Unknown => Cause::Unknown,
        },
        phases: PhaseMs {
            total: total_ms,
            ..PhaseMs::default()
        },
        complete: None,
        detail: format!("{} at {at}", health.as_str()),
    }
}

/// `n` observations every `step` starting at `from`, with health and latency from `f(i)`.
pub fn series(
    from: DateTime<Utc>,
    step: Duration,
    n: usize,
    f: impl Fn(usize) -> (Health, Option<f32>),
) -> Vec<Observation> {
    (0..n)
        .map(|i| {
            let (health, total) = f(i);
            obs(from + step * i as i32, health, total)
        })
        .collect()
}

pub fn incident(id: &str, key: Key, opened_at: DateTime<Utc>) -> Incident {
    Incident {
        id: id.into(),
        key,
        opened_at,
        updated_at: opened_at,
        resolved_at: None,
        phase: IncidentPhase::Open,
        severity: Status::Outage,
        cause: Cause::ProviderError,
        confirmed: false,
        timeline: vec![TimelineEntry {
            at: opened_at,
            kind: TimelineKind::Opened,
            text: "3 consecutive failures: provider_error".into(),
        }],
    }
}
