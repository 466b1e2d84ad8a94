//! Turns one scheduled check's probes into observations, one per face of the service (web,
//! API), judged by the same `classify` as `aiwatch check`.

use std::time::Duration;

use aiwatch_core::classify::classify;
use aiwatch_core::evidence::{CheckEvidence, OfficialOutcome, PhaseTimings, ProbeReport};
use aiwatch_core::observation::{Health, Observation, PhaseMs, Source, LOCAL_REGION};
use aiwatch_core::official::OfficialSignal;
use aiwatch_core::{Cause, Service};
use aiwatch_probe::check::ServiceProbes;
use chrono::{DateTime, Utc};

/// The health an observation records for a cause: failures of the path or the provider are
/// down; answers that work but badly, or an account problem, are degraded.
pub fn health_of(cause: Cause) -> Health {
    match cause {
        Cause::Ok | Cause::TlsIntercepted => Health::Up,
        Cause::SlowResponses
        | Cause::TruncatedResponses
        | Cause::ProviderOverloaded
        | Cause::BotChallenge
        | Cause::AuthInvalid
        | Cause::QuotaExhausted
        | Cause::RateLimited
        | Cause::RegionUnsupported
        | Cause::ModelUnavailable
        | Cause::PermissionDenied
        | Cause::Maintenance
        | Cause::OfficialIncident => Health::Degraded,
        Cause::DnsFailure
        | Cause::DnsFiltered
        | Cause::TcpRefused
        | Cause::TcpTimeout
        | Cause::TlsInvalid
        | Cause::ProxyError
        | Cause::CaptivePortal
        | Cause::ProviderError
        | Cause::Unknown => Health::Down,
    }
}

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

/// Observations of one check. `monitor_online == false` (the control probe failed) turns
/// failures into gaps: the monitor cannot see, so it says nothing about the provider.
pub fn observations(
    service: &Service,
    probes: &ServiceProbes,
    monitor_online: bool,
    canary: bool,
    budget: Duration,
    now: DateTime<Utc>,
) -> Vec<Observation> {
    let faces: [(&str, &Option<ProbeReport>); 2] = [("web", &probes.web), ("api", &probes.api)];
    faces
        .into_iter()
        .filter_map(|(component, report)| {
            let report = report.as_ref()?;
            let is_api = component == "api";
            let evidence = CheckEvidence {
                control: None,
                web: (!is_api).then(|| report.clone()),
                api: is_api.then(|| report.clone()),
                stream: if is_api { probes.stream.clone() } else { None },
                official: OfficialOutcome::NotConfigured,
                budget,
            };
            let verdict = classify(service, &evidence, now);
            let mut health = health_of(verdict.cause);
            let mut detail = verdict.summary;
            if health != Health::Up && !monitor_online && !service.local {
                health = Health::Unknown;
                detail = format!("monitor offline (control probe failing): {detail}");
            }
            Some(Observation {
                service: service.name.clone(),
                component: component.to_owned(),
                region: LOCAL_REGION.to_owned(),
                source: if canary {
                    Source::Canary
                } else {
                    Source::Probe
                },
                at: now,
                health,
                cause: if health == Health::Unknown {
                    Cause::Unknown
                } else {
                    verdict.cause
                },
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
    signal: Option<OfficialSignal>,
    detail: String,
    now: DateTime<Utc>,
) -> Observation {
    let (health, cause) = match signal {
        Some(OfficialSignal::Operational) => (Health::Up, Cause::Ok),
        Some(OfficialSignal::Degraded) => (Health::Degraded, Cause::OfficialIncident),
        Some(OfficialSignal::Outage) => (Health::Down, Cause::OfficialIncident),
        Some(OfficialSignal::Maintenance) => (Health::Degraded, Cause::Maintenance),
        Some(OfficialSignal::Unknown) | None => (Health::Unknown, Cause::Unknown),
    };
    Observation {
        service: service.name.clone(),
        component: "official".to_owned(),
        region: LOCAL_REGION.to_owned(),
        source: Source::Official,
        at: now,
        health,
        cause,
        phases: PhaseMs::default(),
        complete: None,
        detail,
    }
}
