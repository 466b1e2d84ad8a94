//! The contract between `aiwatch agent` and `serve`: what an agent is asked to check
//! ([`Assignments`]), what it pushes ([`Push`]) and how the server answers ([`PushAnswer`]),
//! with the rules a push must meet ([`accept`]) and the rule an agent follows before it puts a
//! key of its own environment in a request ([`key_allowed`]).

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde::{Deserialize, Serialize};

use crate::observation::{Observation, Region, Source};
use crate::service::{Service, ServiceKind, ServiceName};

/// The protocol's version; a server refuses pushes of another.
pub const PROTOCOL: u32 = 1;
/// The most observations one push may carry.
pub const MAX_PUSH_OBSERVATIONS: usize = 1_000;
/// The largest push body the server reads.
pub const MAX_PUSH_BYTES: usize = 2 * 1024 * 1024;
/// The longest `detail` kept from an agent (longer ones are cut).
pub const MAX_DETAIL_CHARS: usize = 500;
/// How old a buffered observation may be when it arrives (an agent that was cut off for a
/// week still delivers; older is refused).
pub const MAX_AGE: ChronoDuration = ChronoDuration::days(7);

/// One check an agent runs: a service as the server defines it, without anything of the
/// server's own machine (its CA files, its local runtimes, its keys).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    pub service: ServiceName,
    pub title: String,
    pub kind: ServiceKind,
    pub api_base: Option<String>,
    /// The variable that names the key, if the service takes one; an agent reads it only from
    /// its own environment, and only when [`key_allowed`] says so.
    pub api_key_env: Option<String>,
    pub web_url: Option<String>,
    pub probe_model: Option<String>,
    pub interval_ms: u64,
    pub timeout_ms: u64,
}

impl Assignment {
    /// The assignment of `service` at `interval` with `timeout`.
    pub fn of(
        service: &Service,
        interval: std::time::Duration,
        timeout: std::time::Duration,
    ) -> Self {
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Self {
            service: service.name.clone(),
            title: service.title.clone(),
            kind: service.kind,
            api_base: service.api_base.clone(),
            api_key_env: service.api_key_env.clone(),
            web_url: service.web_url.clone(),
            probe_model: service.probe_model.clone(),
            interval_ms: ms(interval),
            timeout_ms: ms(timeout),
        }
    }

    /// The service the agent probes.
    pub fn to_service(&self) -> Service {
        Service {
            name: self.service.clone(),
            title: self.title.clone(),
            kind: self.kind,
            api_base: self.api_base.clone(),
            api_key_env: self.api_key_env.clone(),
            web_url: self.web_url.clone(),
            status: None,
            status_components: Vec::new(),
            ca_file: None,
            interval: Some(self.interval()),
            local: false,
            probe_model: self.probe_model.clone(),
        }
    }

    /// The interval, at least one second whatever a server sent.
    pub fn interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.interval_ms.max(1_000))
    }

    /// The timeout, between one second and five minutes whatever a server sent.
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.timeout_ms.clamp(1_000, 300_000))
    }
}

/// Everything an agent is asked to do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Assignments {
    pub protocol: u32,
    pub region: Region,
    /// Changes whenever the checks change; the agent re-reads them every `refresh_ms`.
    pub revision: String,
    pub refresh_ms: u64,
    /// The neutral host that tells whether the agent's own connection works.
    pub control_url: Option<String>,
    pub checks: Vec<Assignment>,
}

impl Assignments {
    /// A revision that changes with the checks (FNV-1a over their JSON, stable across runs).
    pub fn revision_of(checks: &[Assignment], control_url: Option<&str>) -> String {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let text = serde_json::to_string(&(checks, control_url)).unwrap_or_default();
        for byte in text.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{hash:016x}")
    }
}

/// One push of observations, numbered so a resend is recognised.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Push {
    pub protocol: u32,
    pub region: Region,
    pub agent_version: String,
    /// The agent's clock when it sent the push (the server derives the clock offset).
    pub sent_at: DateTime<Utc>,
    /// Names the agent's buffer: a new buffer (deleted, or on another machine) numbers its
    /// observations from 1 again under a new stream.
    pub stream: String,
    /// The sequence number of the first observation; the others follow one by one.
    pub first_seq: u64,
    /// Whether the agent's own connection worked at its latest control probe.
    pub control_online: Option<bool>,
    pub observations: Vec<Observation>,
}

/// The server's answer to a push.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushAnswer {
    /// Observations stored by this push.
    pub accepted: usize,
    /// Observations already stored by an earlier push (a resend).
    pub duplicates: usize,
    /// The highest sequence number the server holds from this region.
    pub last_seq: u64,
    /// Observations the server no longer wants (a service it stopped assigning, or older than
    /// [`MAX_AGE`]): skipped, not stored, and not sent again. Absent from older servers.
    #[serde(default)]
    pub stale: usize,
}

/// What the server keeps of a push.
#[derive(Clone, Debug, PartialEq)]
pub struct Accepted {
    /// The observations to store, as the server stores them.
    pub observations: Vec<Observation>,
    /// Observations skipped as stale: of a service no longer assigned, or older than [`MAX_AGE`].
    /// An agent's buffer can hold those after an assignment change or a long outage; they are
    /// out of date, not wrong, so they do not cost the rest of their push.
    pub stale: usize,
}

/// Why a push is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PushRefusal {
    #[error("protocol {0} is not spoken here (this server speaks {PROTOCOL}); upgrade aiwatch on the older side")]
    Protocol(u32),
    #[error("this token is for region `{expected}`, not `{got}`")]
    WrongRegion { expected: Region, got: Region },
    #[error("a push carries at most {MAX_PUSH_OBSERVATIONS} observations, not {0}")]
    TooMany(usize),
    #[error("observation {index}: {reason}")]
    Observation { index: usize, reason: String },
}

/// Checks a push from the agent of `region` and returns its observations as the server
/// stores them: timestamps moved by the measured clock `offset` (server minus agent), details
/// cut to [`MAX_DETAIL_CHARS`]. Every observation must be an own-probe observation of
/// `region`, of a component agents probe, with sane phase times and not from the future, or
/// the push is refused; one of a service no longer assigned, or older than [`MAX_AGE`], is
/// skipped as stale.
pub fn accept(
    push: Push,
    region: &Region,
    assigned: &[ServiceName],
    offset: ChronoDuration,
    now: DateTime<Utc>,
) -> Result<Accepted, PushRefusal> {
    if push.protocol != PROTOCOL {
        return Err(PushRefusal::Protocol(push.protocol));
    }
    if &push.region != region {
        return Err(PushRefusal::WrongRegion {
            expected: region.clone(),
            got: push.region,
        });
    }
    if push.observations.len() > MAX_PUSH_OBSERVATIONS {
        return Err(PushRefusal::TooMany(push.observations.len()));
    }
    let mut out = Vec::with_capacity(push.observations.len());
    let mut stale = 0;
    for (index, mut obs) in push.observations.into_iter().enumerate() {
        let refuse = |reason: String| PushRefusal::Observation { index, reason };
        if &obs.region != region {
            return Err(refuse(format!(
                "region `{}` is not this agent's (`{region}`)",
                obs.region
            )));
        }
        if obs.source != Source::Probe {
            return Err(refuse(format!(
                "source `{}`: agents push own-probe observations only",
                obs.source.as_str()
            )));
        }
        if !obs.component.is_probed() {
            return Err(refuse(format!(
                "component `{}` is not probed by agents",
                obs.component
            )));
        }
        let phases = [
            obs.phases.dns,
            obs.phases.connect,
            obs.phases.tls,
            obs.phases.first_byte,
            obs.phases.total,
        ];
        if phases
            .into_iter()
            .flatten()
            .any(|ms| !ms.is_finite() || ms < 0.0)
        {
            return Err(refuse("a phase time is negative or not a number".into()));
        }
        obs.at += offset;
        if obs.at > now + ChronoDuration::minutes(1) {
            return Err(refuse(format!(
                "it is from the future ({}) even after the clock offset",
                obs.at.to_rfc3339()
            )));
        }
        if obs.at < now - MAX_AGE || !assigned.contains(&obs.service) {
            stale += 1;
            continue;
        }
        if obs.detail.chars().count() > MAX_DETAIL_CHARS {
            obs.detail = obs.detail.chars().take(MAX_DETAIL_CHARS).collect();
        }
        obs.detail.retain(|c| !c.is_control());
        out.push(obs);
    }
    Ok(Accepted {
        observations: out,
        stale,
    })
}

/// The clock offset (server minus agent) a push shows, ignoring the few seconds a push takes
/// on the way: small offsets are noise and count as none.
pub fn clock_offset(sent_at: DateTime<Utc>, received_at: DateTime<Utc>) -> ChronoDuration {
    let offset = received_at - sent_at;
    if offset.num_milliseconds().abs() <= 2_000 {
        ChronoDuration::zero()
    } else {
        offset
    }
}

/// Whether an agent may put the key its environment holds in `var` into requests to
/// `api_base`: a built-in key variable only to its own provider's host, and any other
/// variable only when the agent's operator allowed it by name. A server can therefore never
/// make an agent send a key elsewhere.
pub fn key_allowed(var: &str, api_base: &str, allowed_by_operator: &[String]) -> bool {
    if allowed_by_operator.iter().any(|v| v == var) {
        return true;
    }
    let Some(host) = crate::network::url_host(api_base) else {
        return false;
    };
    crate::catalog::Catalog::builtin().iter().any(|s| {
        s.api_key_env.as_deref() == Some(var)
            && s.api_base
                .as_deref()
                .and_then(crate::network::url_host)
                .is_some_and(|home| home.eq_ignore_ascii_case(host))
            && api_base.starts_with("https://")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cause::Cause;
    use crate::observation::{Component, Health, PhaseMs};

    fn fixed_now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-07T12:00:00Z")
            .unwrap()
            .to_utc()
    }

    fn obs(region: &str, at: DateTime<Utc>) -> Observation {
        Observation {
            service: ServiceName::parse("openai-api").unwrap(),
            component: Component::Api,
            region: Region::new(region),
            source: Source::Probe,
            at,
            health: Health::Up,
            cause: Cause::Ok,
            phases: PhaseMs::default(),
            complete: None,
            detail: "ok".into(),
        }
    }

    fn push(observations: Vec<Observation>) -> Push {
        Push {
            protocol: PROTOCOL,
            region: Region::new("eu-west"),
            agent_version: "0.1.0".into(),
            sent_at: fixed_now(),
            stream: "test".into(),
            first_seq: 1,
            control_online: Some(true),
            observations,
        }
    }

    fn assigned() -> Vec<ServiceName> {
        vec![ServiceName::parse("openai-api").unwrap()]
    }

    #[test]
    fn a_push_may_not_write_another_regions_data() {
        let now = fixed_now();
        let eu = Region::new("eu-west");
        let err = accept(
            push(vec![obs("us-east", now)]),
            &eu,
            &assigned(),
            ChronoDuration::zero(),
            now,
        )
        .unwrap_err();
        assert!(err.to_string().contains("us-east"), "{err}");
        let mut other = push(vec![]);
        other.region = Region::new("us-east");
        assert!(matches!(
            accept(other, &eu, &assigned(), ChronoDuration::zero(), now),
            Err(PushRefusal::WrongRegion { .. })
        ));
    }

    #[test]
    fn official_observations_are_refused_and_unassigned_services_skipped_as_stale() {
        let now = fixed_now();
        let eu = Region::new("eu-west");
        let mut official = obs("eu-west", now);
        official.source = Source::Official;
        assert!(accept(
            push(vec![official]),
            &eu,
            &assigned(),
            ChronoDuration::zero(),
            now
        )
        .is_err());
        // A service the server stopped assigning: skipped, the rest of the push stored.
        let mut retired = obs("eu-west", now);
        retired.service = ServiceName::parse("claude-api").unwrap();
        let kept = accept(
            push(vec![obs("eu-west", now), retired, obs("eu-west", now)]),
            &eu,
            &assigned(),
            ChronoDuration::zero(),
            now,
        )
        .unwrap();
        assert_eq!(kept.observations.len(), 2);
        assert_eq!(kept.stale, 1);
    }

    #[test]
    fn timestamps_move_by_the_clock_offset_and_the_future_is_refused() {
        let now = fixed_now();
        let eu = Region::new("eu-west");
        // The agent's clock runs ten minutes ahead.
        let ahead = ChronoDuration::minutes(10);
        let sent = push(vec![obs("eu-west", now + ahead)]);
        let offset = clock_offset(now + ahead, now);
        let stored = accept(sent.clone(), &eu, &assigned(), offset, now).unwrap();
        assert!((stored.observations[0].at - now).num_seconds().abs() <= 1);
        assert!(accept(sent, &eu, &assigned(), ChronoDuration::zero(), now).is_err());
        // Eight days old (an agent back from a long outage): stale, skipped, nothing refused.
        let old = accept(
            push(vec![obs("eu-west", now - ChronoDuration::days(8))]),
            &eu,
            &assigned(),
            ChronoDuration::zero(),
            now,
        )
        .unwrap();
        assert!(old.observations.is_empty());
        assert_eq!(old.stale, 1);
    }

    #[test]
    fn long_details_are_cut_and_bad_phase_times_refused() {
        let now = fixed_now();
        let eu = Region::new("eu-west");
        let mut long = obs("eu-west", now);
        long.detail = "x".repeat(5_000);
        let stored = accept(
            push(vec![long]),
            &eu,
            &assigned(),
            ChronoDuration::zero(),
            now,
        )
        .unwrap();
        assert_eq!(stored.observations[0].detail.len(), MAX_DETAIL_CHARS);
        let mut nan = obs("eu-west", now);
        nan.phases.total = Some(f32::NAN);
        assert!(accept(
            push(vec![nan]),
            &eu,
            &assigned(),
            ChronoDuration::zero(),
            now
        )
        .is_err());
    }

    #[test]
    fn a_server_cannot_send_an_agents_key_elsewhere() {
        assert!(key_allowed(
            "OPENAI_API_KEY",
            "https://api.openai.com/v1",
            &[]
        ));
        assert!(!key_allowed(
            "OPENAI_API_KEY",
            "https://evil.example/v1",
            &[]
        ));
        assert!(!key_allowed(
            "OPENAI_API_KEY",
            "http://api.openai.com/v1",
            &[]
        ));
        assert!(!key_allowed("HOME", "https://api.openai.com/v1", &[]));
        assert!(key_allowed(
            "TEAM_LLM_KEY",
            "https://llm.internal/v1",
            &["TEAM_LLM_KEY".to_owned()]
        ));
    }

    #[test]
    fn the_revision_changes_with_the_checks() {
        let catalog = crate::catalog::Catalog::builtin();
        let service = catalog.get("openai-api").unwrap().clone();
        let a = Assignment::of(
            &service,
            std::time::Duration::from_secs(30),
            std::time::Duration::from_secs(5),
        );
        let mut b = a.clone();
        b.interval_ms = 60_000;
        assert_ne!(
            Assignments::revision_of(std::slice::from_ref(&a), None),
            Assignments::revision_of(&[b], None)
        );
        assert_eq!(
            Assignments::revision_of(std::slice::from_ref(&a), None),
            Assignments::revision_of(&[a], None)
        );
    }
}
