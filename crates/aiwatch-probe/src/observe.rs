//! Turns one scheduled check's probes (by `serve` or an agent) into observations, one per face of the service (web,
//! API), judged by the same `classify` as `aiwatch check`; what each records about the provider
//! is the core's `health_of_check`.

use std::time::Duration;

use crate::check::ServiceProbes;
use aiwatch_core::assessment::{observed_health, official_observation as official_health};
use aiwatch_core::classify::classify;
use aiwatch_core::evidence::{CheckEvidence, OfficialOutcome, PhaseTimings, ProbeReport};
use aiwatch_core::observation::{Component, Health, Observation, PhaseMs, Region, Source};
use aiwatch_core::{Service, Status};
use chrono::{DateTime, Utc};

fn phases(t: &PhaseTimings) -> PhaseMs {
    let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f32() * 1000.0);
    PhaseMs {
        dns: ms(t.dns),
        connect: ms(t.connect),
        tls: ms(t.tls),
        first_byte: ms(t.first_byte),
        total: ms(t.total),
    }
}

/// Observations of one check from the vantage point `region`. `monitor_online == false` (the
/// control probe failed) turns failures into gaps: the monitor cannot see, so it says nothing
/// about the provider.
pub fn observations(
    service: &Service,
    region: &Region,
    probes: &ServiceProbes,
    monitor_online: bool,
    canary: bool,
    budget: Duration,
    now: DateTime<Utc>,
) -> Vec<Observation> {
    let faces: [(Component, &Option<ProbeReport>); 2] =
        [(Component::Web, &probes.web), (Component::Api, &probes.api)];
    faces
        .into_iter()
        .filter_map(|(component, report)| {
            let report = report.as_ref()?;
            let is_api = component == Component::Api;
            let evidence = CheckEvidence {
                control: None,
                web: (!is_api).then(|| report.clone()),
                api: is_api.then(|| report.clone()),
                stream: if is_api { probes.stream.clone() } else { None },
                official: OfficialOutcome::NotConfigured,
                budget,
            };
            let verdict = classify(service, &evidence, now);
            let health =
                observed_health(verdict.status, verdict.cause, monitor_online, service.local);
            let detail = if monitor_online || service.local || health == Health::Up {
                verdict.summary
            } else {
                format!(
                    "monitor offline (control probe failing): {}",
                    verdict.summary
                )
            };
            Some(Observation {
                service: service.name.clone(),
                component,
                region: region.clone(),
                source: if canary {
                    Source::Canary
                } else {
                    Source::Probe
                },
                at: now,
                health,
                cause: verdict.cause,
                phases: phases(&report.timings),
                complete: if is_api {
                    probes.stream.as_ref().map(|s| s.finished)
                } else {
                    None
                },
                detail,
            })
        })
        .collect()
}

/// The observation an official page's signal stands for.
pub fn official_observation(
    service: &Service,
    signal: Option<Status>,
    detail: String,
    now: DateTime<Utc>,
) -> Observation {
    let (health, cause) = official_health(signal.unwrap_or(Status::Unknown));
    Observation {
        service: service.name.clone(),
        component: Component::Official,
        region: Region::local(),
        source: Source::Official,
        at: now,
        health,
        cause,
        phases: PhaseMs::default(),
        complete: None,
        detail,
    }
}
