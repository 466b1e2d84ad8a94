//! The agents' desk: who may push (each `[[agent]]`'s region and token, compared in constant
//! time), what agents are asked to check, and each push — validated by the core's contract,
//! deduplicated by sequence number, stored (with its cursor, in one transaction) before it is
//! acknowledged, then assessed. Keeps each region's last contact, version and clock offset.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use aiwatch_core::agent_wire::{self, Assignment, Assignments, Push, PushAnswer, PROTOCOL};
use aiwatch_core::observation::Region;
use aiwatch_core::secret::ApiKey;
use aiwatch_core::ServiceName;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::engine::Engine;

/// One declared agent: its region and the token it must present.
#[derive(Clone, Debug)]
pub struct DeclaredAgent {
    pub region: Region,
    pub token: ApiKey,
}

/// How the daemon treats vantage points.
#[derive(Clone, Debug)]
pub struct RegionOptions {
    pub agents: Vec<DeclaredAgent>,
    /// An agent silent this long makes its region unknown.
    pub grace: Duration,
    /// Failing regions needed for `global` (see `aiwatch_core::regions`).
    pub quorum: u32,
    /// The neutral host agents ask to tell their own trouble from the provider's.
    pub control_url: Option<String>,
}

impl Default for RegionOptions {
    fn default() -> Self {
        Self {
            agents: Vec::new(),
            grace: Duration::from_secs(90),
            quorum: 2,
            control_url: None,
        }
    }
}

/// What the server knows of one region's agent.
#[derive(Clone, Debug, Serialize)]
pub struct Contact {
    pub last_contact: DateTime<Utc>,
    pub version: String,
    /// Server clock minus agent clock, in milliseconds (0 when within two seconds).
    pub clock_offset_ms: i64,
    /// Whether the agent's own connection worked at its latest control probe.
    pub control_online: Option<bool>,
    pub observations: u64,
    pub pushes: u64,
}

/// The agents' desk of one daemon.
pub struct AgentDesk {
    options: RegionOptions,
    contacts: RwLock<HashMap<Region, Contact>>,
    /// One push at a time per region, so sequence numbers are judged in order.
    locks: HashMap<Region, tokio::sync::Mutex<()>>,
}

/// How often agents re-read their assignments.
const REFRESH: Duration = Duration::from_secs(60);

impl AgentDesk {
    pub fn new(options: RegionOptions) -> Self {
        let locks = options
            .agents
            .iter()
            .map(|a| (a.region.clone(), tokio::sync::Mutex::new(())))
            .collect();
        Self {
            options,
            contacts: RwLock::new(HashMap::new()),
            locks,
        }
    }

    pub fn quorum(&self) -> u32 {
        self.options.quorum
    }

    pub fn grace(&self) -> Duration {
        self.options.grace
    }

    /// The declared regions, in the config's order.
    pub fn regions(&self) -> impl Iterator<Item = &Region> {
        self.options.agents.iter().map(|a| &a.region)
    }

    /// The region whose token this is. Every declared token is compared, in constant time.
    pub fn authenticate(&self, token: &str) -> Option<Region> {
        let mut found = None;
        for agent in &self.options.agents {
            let expected = agent.token.expose().as_bytes();
            if bool::from(expected.ct_eq(token.as_bytes())) {
                found = Some(agent.region.clone());
            }
        }
        found
    }

    pub fn contact(&self, region: &Region) -> Option<Contact> {
        self.contacts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(region)
            .cloned()
    }

    /// Whether `region`'s agent has gone silent (never for this machine's own region).
    pub fn is_silent(&self, region: &Region, now: DateTime<Utc>) -> bool {
        if region.as_str() == aiwatch_core::observation::LOCAL_REGION {
            return false;
        }
        let last = self.contact(region).map(|c| c.last_contact);
        aiwatch_core::regions::is_silent(last, now, self.options.grace)
    }

    /// Whether `region`'s agent said its own connection works (unknown counts as working).
    pub fn online(&self, region: &Region) -> bool {
        self.contact(region)
            .and_then(|c| c.control_online)
            .unwrap_or(true)
    }

    fn touch(&self, region: &Region, push: &Push, offset: chrono::Duration, stored: usize) {
        let mut contacts = self.contacts.write().unwrap_or_else(|p| p.into_inner());
        let entry = contacts.entry(region.clone()).or_insert_with(|| Contact {
            last_contact: Utc::now(),
            version: String::new(),
            clock_offset_ms: 0,
            control_online: None,
            observations: 0,
            pushes: 0,
        });
        entry.last_contact = Utc::now();
        entry.version = push.agent_version.chars().take(40).collect();
        entry.clock_offset_ms = offset.num_milliseconds();
        entry.control_online = push.control_online;
        entry.observations += stored as u64;
        entry.pushes += 1;
    }

    /// Notes an agent that asked for its assignments (a contact, without a version change).
    fn touch_assignments(&self, region: &Region) {
        let mut contacts = self.contacts.write().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = contacts.get_mut(region) {
            entry.last_contact = Utc::now();
        }
    }
}

/// The `meta` key of a region's stream cursor.
fn cursor_key(region: &Region, stream: &str) -> String {
    format!("agent_seq:{region}:{stream}")
}

/// A refusal as JSON `{"error": …}`.
fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// The region an agent's request speaks for, from its bearer token and its `region` claim.
#[allow(clippy::result_large_err)]
fn who(engine: &Engine, headers: &HeaderMap, claimed: Option<&str>) -> Result<Region, Response> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("Bearer "))
        .map(str::trim);
    let Some(token) = token else {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            "agents send `Authorization: Bearer <token>` (the token an [[agent]] entry names)",
        ));
    };
    let Some(region) = engine.agents.authenticate(token) else {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            "this token belongs to no [[agent]] declared on this server",
        ));
    };
    if let Some(claimed) = claimed {
        if claimed != region.as_str() {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                format!("this token is for region `{region}`, not `{claimed}`"),
            ));
        }
    }
    Ok(region)
}

/// The services agents check: every service that is not a local runtime of this machine.
pub fn assigned(engine: &Engine) -> Vec<ServiceName> {
    engine
        .services
        .iter()
        .filter(|s| !s.local)
        .map(|s| s.name.clone())
        .collect()
}

/// `GET /api/v1/agent/assignments?region=NAME`.
pub async fn assignments(
    State(engine): State<Arc<Engine>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let region = match who(&engine, &headers, params.get("region").map(String::as_str)) {
        Ok(region) => region,
        Err(refusal) => return refusal,
    };
    engine.agents.touch_assignments(&region);
    let checks: Vec<Assignment> = engine
        .services
        .iter()
        .filter(|s| !s.local)
        .map(|s| {
            Assignment::of(
                s,
                s.interval.unwrap_or(engine.options.default_interval),
                engine.options.timeout,
            )
        })
        .collect();
    let control_url = engine.options.regions.control_url.clone();
    Json(Assignments {
        protocol: PROTOCOL,
        revision: Assignments::revision_of(&checks, control_url.as_deref()),
        region,
        refresh_ms: u64::try_from(REFRESH.as_millis()).unwrap_or(60_000),
        control_url,
        checks,
    })
    .into_response()
}

/// `POST /api/v1/agent/observations`: one [`Push`].
pub async fn push(State(engine): State<Arc<Engine>>, headers: HeaderMap, body: Bytes) -> Response {
    let region = match who(&engine, &headers, None) {
        Ok(region) => region,
        Err(refusal) => return refusal,
    };
    if body.len() > agent_wire::MAX_PUSH_BYTES {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a push is at most {} bytes", agent_wire::MAX_PUSH_BYTES),
        );
    }
    let push: Push = match serde_json::from_slice(&body) {
        Ok(push) => push,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("not a push: {e}")),
    };
    if push.region != region {
        return refuse(
            StatusCode::FORBIDDEN,
            format!("this token is for region `{region}`, not `{}`", push.region),
        );
    }
    if !valid_stream(&push.stream) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "`stream` must be 1 to 64 letters, digits or `-`",
        );
    }
    let Some(lock) = engine.agents.locks.get(&region) else {
        return refuse(StatusCode::FORBIDDEN, "no [[agent]] declares this region");
    };
    let _one_at_a_time = lock.lock().await;
    let received = Utc::now();
    let key = cursor_key(&region, &push.stream);
    let store = engine.store.clone();
    let read_key = key.clone();
    let last_seq = match tokio::task::spawn_blocking(move || store.cursor(&read_key)).await {
        Ok(Ok(seq)) => seq,
        _ => {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "the store cannot be read; push again later",
            )
        }
    };
    let total = push.observations.len();
    let last_in_push = push
        .first_seq
        .saturating_add(total as u64)
        .saturating_sub(1);
    // Sequence numbers at or below the cursor were stored by an earlier push (a resend).
    let duplicates = usize::try_from(last_seq.saturating_add(1).saturating_sub(push.first_seq))
        .unwrap_or(usize::MAX)
        .min(total);
    let offset = agent_wire::clock_offset(push.sent_at, received);
    let mut fresh = push.clone();
    fresh.observations = push.observations[duplicates..].to_vec();
    let (accepted, stale) =
        match agent_wire::accept(fresh, &region, &assigned(&engine), offset, received) {
            Ok(kept) => (kept.observations, kept.stale),
            Err(e) => return refuse(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        };
    if stale > 0 {
        tracing::info!(
            %region,
            stale,
            max_age_days = agent_wire::MAX_AGE.num_days(),
            "skipped observations of services no longer assigned to agents, or older than the kept days"
        );
    }
    let stored = accepted.len();
    // Skipped numbers move the cursor too, so a resend of them is a duplicate, not news.
    if stored > 0 || stale > 0 {
        let store = engine.store.clone();
        let batch = accepted.clone();
        let saved =
            tokio::task::spawn_blocking(move || store.insert_pushed(&batch, &key, last_in_push))
                .await;
        if !matches!(saved, Ok(Ok(()))) {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "the store could not save the push; it is kept by the agent and sent again",
            );
        }
        if stored > 0 {
            engine.assess_pushed(&accepted).await;
        }
    }
    engine.agents.touch(&region, &push, offset, stored);
    engine.metrics.agent_observations.inc_by(stored as u64);
    Json(PushAnswer {
        accepted: stored,
        duplicates,
        last_seq: last_seq.max(last_in_push),
        stale,
    })
    .into_response()
}

fn valid_stream(stream: &str) -> bool {
    (1..=64).contains(&stream.len())
        && stream
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// One region as the API lists it.
#[derive(Clone, Debug, Serialize)]
pub struct AgentRow {
    pub region: Region,
    /// `connected`, `silent` (past the grace period) or `never_seen`.
    pub state: &'static str,
    #[serde(flatten)]
    pub contact: Option<Contact>,
}

/// Every declared agent's state.
pub fn rows(engine: &Engine, now: DateTime<Utc>) -> Vec<AgentRow> {
    engine
        .agents
        .regions()
        .map(|region| {
            let contact = engine.agents.contact(region);
            let state = match &contact {
                None => "never_seen",
                Some(_) if engine.agents.is_silent(region, now) => "silent",
                Some(_) => "connected",
            };
            AgentRow {
                region: region.clone(),
                state,
                contact,
            }
        })
        .collect()
}

/// `GET /api/v1/agents`.
pub async fn list(State(engine): State<Arc<Engine>>) -> Json<serde_json::Value> {
    let now = Utc::now();
    Json(json!({
        "grace_seconds": engine.agents.grace().as_secs(),
        "quorum": engine.agents.quorum(),
        "agents": rows(&engine, now),
    }))
}
