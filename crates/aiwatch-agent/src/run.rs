//! The agent's life: read the assignments (re-read every `refresh_ms`, kept in the buffer for
//! a restart while the server is away), run each check on its interval with the same probe and
//! observation code as `serve`, append what it saw to the buffer, and push the buffer to the
//! server in order, with backoff and jitter while the server cannot take it.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aiwatch_core::agent_wire::{key_allowed, Assignments, Push, PROTOCOL};
use aiwatch_core::evidence::HttpOutcome;
use aiwatch_core::observation::{Health, Observation, Region};
use aiwatch_core::secret::ApiKey;
use aiwatch_core::ServiceName;
use aiwatch_probe::{CheckOptions, Checker};
use chrono::Utc;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::buffer::Buffer;
use crate::client::{CallError, ServerClient};
use crate::Error;

/// Observations per push (the server takes at most `MAX_PUSH_OBSERVATIONS`).
const PUSH_BATCH: usize = 500;
/// The first wait after a failed push, doubled up to [`BACKOFF_MAX`], ±20 %.
const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Checks running at once.
const CONCURRENCY: usize = 64;
/// How long a control-probe answer is trusted.
const CONTROL_TTL: Duration = Duration::from_secs(10);

/// What the agent needs to run.
pub struct AgentOptions {
    pub region: Region,
    /// The agent's own network settings (`--dns-server`, `--ca-file`, proxies); the control
    /// URL and timeout come from the assignments.
    pub check: CheckOptions,
    pub buffer: PathBuf,
    pub capacity: u64,
    /// Key variables the operator allows beyond the built-in ones to their own providers.
    pub allowed_keys: Vec<String>,
    pub version: String,
}

/// What the agent did, for its last words.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub checks: u64,
    pub delivered: u64,
    pub pending: u64,
    /// Observations the server refused one by one (given up; the rest of their push went).
    pub rejected: u64,
}

/// The agent's own connection, as its control probe last said: 0 unknown, 1 online, 2 offline.
#[derive(Default)]
struct ControlState {
    word: AtomicU8,
    checked: Mutex<Option<Instant>>,
}

impl ControlState {
    fn online(&self) -> Option<bool> {
        match self.word.load(Ordering::Relaxed) {
            1 => Some(true),
            2 => Some(false),
            _ => None,
        }
    }

    fn set(&self, online: bool) {
        self.word
            .store(if online { 1 } else { 2 }, Ordering::Relaxed);
        *self.checked.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    fn fresh(&self) -> Option<bool> {
        let checked = *self.checked.lock().unwrap_or_else(|p| p.into_inner());
        checked
            .filter(|t| t.elapsed() < CONTROL_TTL)
            .and_then(|_| self.online())
    }
}

/// Runs the agent until `shutdown` resolves or the server refuses it for good.
pub async fn run(
    options: AgentOptions,
    client: ServerClient,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<Summary, Error> {
    let buffer = Buffer::open(&options.buffer, options.capacity)?;
    let stream = buffer.stream().to_owned();
    let buffer = Arc::new(Mutex::new(buffer));
    let client = Arc::new(client);
    let control = Arc::new(ControlState::default());
    let wake = Arc::new(Notify::new());
    let (fatal_tx, mut fatal_rx) = mpsc::channel::<Error>(4);
    let summary = Arc::new(Mutex::new(Summary::default()));

    let mut assignments = first_assignments(&client, &options.region, &buffer).await?;
    tracing::info!(
        server = client.base(),
        region = %options.region,
        checks = assignments.checks.len(),
        "agent started"
    );

    let pusher = tokio::spawn(push_loop(PushLoop {
        client: client.clone(),
        buffer: buffer.clone(),
        region: options.region.clone(),
        stream,
        version: options.version.clone(),
        control: control.clone(),
        wake: wake.clone(),
        fatal: fatal_tx.clone(),
        summary: summary.clone(),
    }));

    let options = Arc::new(options);
    let mut checks = start_checks(&options, &assignments, &buffer, &control, &wake, &summary)?;
    let refresh = Duration::from_millis(assignments.refresh_ms.clamp(5_000, 3_600_000));
    let mut refresh_tick = tokio::time::interval_at(Instant::now() + refresh, refresh);
    tokio::pin!(shutdown);
    let outcome = loop {
        tokio::select! {
            () = &mut shutdown => break Ok(()),
            Some(error) = fatal_rx.recv() => break Err(error),
            _ = refresh_tick.tick() => {
                match client.assignments(&options.region).await {
                    Ok(next) if next.revision != assignments.revision => {
                        tracing::info!(checks = next.checks.len(), "assignments changed");
                        remember_assignments(&buffer, &next).await;
                        checks.abort_all();
                        checks = start_checks(&options, &next, &buffer, &control, &wake, &summary)?;
                        assignments = next;
                    }
                    Ok(_) => {}
                    Err(CallError::Refused { status, reason }) => {
                        break Err(Error::Refused { status, reason });
                    }
                    Err(e) => tracing::warn!(error = %e, "assignments not refreshed; keeping the current ones"),
                }
            }
        }
    };
    checks.abort_all();
    // One last push, briefly, so a clean stop leaves little behind (the buffer keeps the rest).
    wake.notify_one();
    tokio::time::sleep(Duration::from_millis(300)).await;
    pusher.abort();
    let mut summary = *summary.lock().unwrap_or_else(|p| p.into_inner());
    summary.pending = {
        let buffer = buffer.clone();
        tokio::task::spawn_blocking(move || {
            buffer
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pending()
                .unwrap_or(0)
        })
        .await
        .unwrap_or(0)
    };
    outcome.map(|()| summary)
}

const ASSIGNMENTS_META: &str = "assignments";

/// The assignments at start: from the server, or — while it cannot be reached — the last ones
/// this buffer kept, so a restart during a server outage keeps measuring.
async fn first_assignments(
    client: &ServerClient,
    region: &Region,
    buffer: &Arc<Mutex<Buffer>>,
) -> Result<Assignments, Error> {
    let mut wait = BACKOFF_START;
    loop {
        match client.assignments(region).await {
            Ok(assignments) => {
                remember_assignments(buffer, &assignments).await;
                return Ok(assignments);
            }
            Err(CallError::Refused { status, reason }) => {
                return Err(Error::Refused { status, reason })
            }
            Err(e) => {
                let kept = {
                    let buffer = buffer.clone();
                    tokio::task::spawn_blocking(move || {
                        buffer
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .kept(ASSIGNMENTS_META)
                    })
                    .await
                    .ok()
                    .flatten()
                };
                if let Some(kept) =
                    kept.and_then(|raw| serde_json::from_str::<Assignments>(&raw).ok())
                {
                    tracing::warn!(error = %e, "server unreachable; running the assignments kept from the last contact");
                    return Ok(kept);
                }
                tracing::warn!(error = %e, retry_in = ?wait, "server unreachable and no assignments kept yet");
                tokio::time::sleep(jitter(wait)).await;
                wait = (wait * 2).min(BACKOFF_MAX);
            }
        }
    }
}

async fn remember_assignments(buffer: &Arc<Mutex<Buffer>>, assignments: &Assignments) {
    let Ok(raw) = serde_json::to_string(assignments) else {
        return;
    };
    let buffer = buffer.clone();
    let _ = tokio::task::spawn_blocking(move || {
        buffer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keep(ASSIGNMENTS_META, &raw)
    })
    .await;
}

/// `wait` moved by up to ±20 %.
fn jitter(wait: Duration) -> Duration {
    wait.mul_f64(0.8 + fastrand::f64() * 0.4)
}

/// Starts one task per assignment.
fn start_checks(
    options: &Arc<AgentOptions>,
    assignments: &Assignments,
    buffer: &Arc<Mutex<Buffer>>,
    control: &Arc<ControlState>,
    wake: &Arc<Notify>,
    summary: &Arc<Mutex<Summary>>,
) -> Result<JoinSet<()>, Error> {
    let mut check = options.check.clone();
    check.control_url = assignments.control_url.clone().or(check.control_url);
    let budget = assignments
        .checks
        .iter()
        .map(|a| a.timeout())
        .max()
        .unwrap_or(Duration::from_secs(5));
    check.timeout = budget;
    check.deep = false;
    let checker = Arc::new(Checker::new(check).map_err(|e| Error::Setup(e.to_string()))?);
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let keys = keys_for(assignments, &options.allowed_keys);
    let mut set = JoinSet::new();
    for assignment in &assignments.checks {
        let service = assignment.to_service();
        let key = keys.get(&service.name).cloned();
        let interval = assignment.interval();
        let timeout = assignment.timeout();
        let ctx = CheckTask {
            checker: checker.clone(),
            permits: permits.clone(),
            buffer: buffer.clone(),
            control: control.clone(),
            wake: wake.clone(),
            summary: summary.clone(),
            region: options.region.clone(),
        };
        set.spawn(async move {
            // First runs spread over the interval, so a hundred checks do not start at once.
            tokio::time::sleep(interval.mul_f64(fastrand::f64())).await;
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                ctx.once(&service, key.as_ref(), timeout).await;
            }
        });
    }
    Ok(set)
}

/// The keys the agent's own environment holds for its assignments, where the contract allows.
fn keys_for(assignments: &Assignments, allowed: &[String]) -> HashMap<ServiceName, ApiKey> {
    let mut keys = HashMap::new();
    for a in &assignments.checks {
        let (Some(var), Some(base)) = (a.api_key_env.as_deref(), a.api_base.as_deref()) else {
            continue;
        };
        if !key_allowed(var, base, allowed) {
            if std::env::var_os(var).is_some() {
                tracing::warn!(service = %a.service, var, "not using this key: the server points it at a host that is not its provider's (allow it with --allow-key)");
            }
            continue;
        }
        if let Some(key) = std::env::var(var).ok().and_then(ApiKey::new) {
            keys.insert(a.service.clone(), key);
        }
    }
    keys
}

struct CheckTask {
    checker: Arc<Checker>,
    permits: Arc<Semaphore>,
    buffer: Arc<Mutex<Buffer>>,
    control: Arc<ControlState>,
    wake: Arc<Notify>,
    summary: Arc<Mutex<Summary>>,
    region: Region,
}

impl CheckTask {
    async fn once(&self, service: &aiwatch_core::Service, key: Option<&ApiKey>, timeout: Duration) {
        let Ok(_permit) = self.permits.acquire().await else {
            return;
        };
        let deadline = Instant::now() + timeout;
        let probes = self
            .checker
            .check_service(service, key, None, false, deadline)
            .await;
        let now = Utc::now();
        let mut observations = aiwatch_probe::observe::observations(
            service,
            &self.region,
            &probes,
            true,
            false,
            timeout,
            now,
        );
        if observations.iter().all(|o| o.health == Health::Up) {
            self.control.set(true);
        } else if !self.online(timeout).await {
            observations = aiwatch_probe::observe::observations(
                service,
                &self.region,
                &probes,
                false,
                false,
                timeout,
                now,
            );
        }
        self.save(observations).await;
    }

    /// Whether the agent's own connection works, asking the control host at most every
    /// [`CONTROL_TTL`].
    async fn online(&self, timeout: Duration) -> bool {
        if let Some(word) = self.control.fresh() {
            return word;
        }
        let online = match self.checker.control(Instant::now() + timeout).await {
            None => true,
            Some(report) => {
                matches!(&report.http, Some(HttpOutcome::Response(r)) if (200..300).contains(&r.status))
            }
        };
        self.control.set(online);
        online
    }

    async fn save(&self, observations: Vec<Observation>) {
        let count = observations.len() as u64;
        let buffer = self.buffer.clone();
        let saved = tokio::task::spawn_blocking(move || {
            buffer
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .append(&observations)
        })
        .await;
        match saved {
            Ok(Ok(given_up)) => {
                if given_up > 0 {
                    tracing::warn!(
                        given_up,
                        "the buffer is full: the oldest observations were given up"
                    );
                }
                self.summary
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .checks += count;
                self.wake.notify_one();
            }
            Ok(Err(e)) => tracing::error!(error = %e, "the buffer could not save observations"),
            Err(e) => tracing::error!(error = %e, "the buffer task failed"),
        }
    }
}

struct PushLoop {
    client: Arc<ServerClient>,
    buffer: Arc<Mutex<Buffer>>,
    region: Region,
    stream: String,
    version: String,
    control: Arc<ControlState>,
    wake: Arc<Notify>,
    fatal: mpsc::Sender<Error>,
    summary: Arc<Mutex<Summary>>,
}

/// Pushes the buffer in order, oldest first; waits for new observations when it is empty and
/// backs off (with jitter) while the server cannot take it. A push the server rejects is sent
/// again in halves until the one observation it refuses stands alone: only that one is given
/// up, never the good observations that shared its push.
async fn push_loop(p: PushLoop) {
    let mut wait = BACKOFF_START;
    let mut limit = PUSH_BATCH;
    loop {
        let batch = {
            let buffer = p.buffer.clone();
            tokio::task::spawn_blocking(move || {
                buffer
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .oldest(limit)
            })
            .await
        };
        let batch = match batch {
            Ok(Ok(batch)) => batch,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "the buffer could not be read");
                tokio::time::sleep(jitter(wait)).await;
                continue;
            }
            Err(_) => return,
        };
        if batch.is_empty() {
            // New observations wake the pusher; the timeout keeps it honest if a wake is lost.
            let _ = tokio::time::timeout(Duration::from_secs(5), p.wake.notified()).await;
            continue;
        }
        // A push carries consecutive numbers only (a full buffer may have left a gap).
        let first = batch[0].0;
        let consecutive = batch
            .iter()
            .enumerate()
            .take_while(|(i, (seq, _))| *seq == first + *i as u64)
            .count();
        let last = first + consecutive as u64 - 1;
        let observations: Vec<Observation> = batch
            .into_iter()
            .take(consecutive)
            .map(|(_, o)| o)
            .collect();
        let push = Push {
            protocol: PROTOCOL,
            region: p.region.clone(),
            agent_version: p.version.clone(),
            sent_at: Utc::now(),
            stream: p.stream.clone(),
            first_seq: first,
            control_online: p.control.online(),
            observations,
        };
        let through = match p.client.push(&push).await {
            Ok(answer) => {
                wait = BACKOFF_START;
                if answer.stale > 0 {
                    tracing::info!(first, last, stale = answer.stale, "the server skipped observations it no longer wants (a service it stopped assigning, or older than it keeps)");
                }
                p.summary
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .delivered += answer.accepted as u64;
                answer.last_seq.min(last).max(first - 1)
            }
            Err(CallError::Refused { status, reason }) => {
                let _ = p.fatal.send(Error::Refused { status, reason }).await;
                return;
            }
            Err(CallError::Rejected(why)) if consecutive > 1 => {
                limit = consecutive / 2;
                tracing::warn!(first, last, reason = %why, next_push = limit, "the server rejected this push; sending it in halves so only what it refuses is given up");
                continue;
            }
            Err(CallError::Rejected(why)) => {
                tracing::error!(seq = first, reason = %why, "the server rejected this observation; it is given up");
                p.summary.lock().unwrap_or_else(|e| e.into_inner()).rejected += 1;
                limit = PUSH_BATCH;
                last
            }
            Err(CallError::Transient(why)) => {
                tracing::warn!(reason = %why, retry_in = ?wait, pending_from = first, "push failed; the buffer keeps everything");
                tokio::time::sleep(jitter(wait)).await;
                wait = (wait * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        let buffer = p.buffer.clone();
        let forgotten = tokio::task::spawn_blocking(move || {
            buffer
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .delivered(through)
        })
        .await;
        if !matches!(forgotten, Ok(Ok(()))) {
            tracing::error!("the buffer could not forget delivered observations; they will be sent again and recognised");
        }
    }
}
