//! Brings tripped upstreams back: every interval, a canary — first the free list-models call,
//! then one tiny streamed answer within a token budget — held to the same recovery validation
//! as the monitor's (complete answer, latency near the upstream's baseline). Also applies the
//! monitor's view when the gateway runs inside `serve`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use aiwatch_core::assess::{canary_shortfall, AssessConfig};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::gateway::Gateway;
use crate::health::MonitorView;
use crate::metrics::{CanaryLabels, UpstreamLabels};
use crate::upstream::{ListError, UpstreamState};

/// Tokens one streamed canary may cost at most: a dozen of prompt, five of answer, margin.
pub const CANARY_TOKENS: u64 = 24;
/// One canary's whole budget at most (less when the upstream's own timeout is shorter).
const CANARY_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs until `stop` turns true.
pub async fn run(gw: Arc<Gateway>, mut stop: watch::Receiver<bool>) {
    let tick = gw
        .settings
        .canary_interval
        .min(Duration::from_secs(1))
        .max(Duration::from_millis(100));
    let mut monitor = gw.monitor.clone();
    loop {
        if let Some(rx) = monitor.as_mut() {
            if rx.has_changed().unwrap_or(false) {
                let view = rx.borrow_and_update().clone();
                apply_monitor(&gw, &view);
            }
        }
        let now = Instant::now();
        for index in 0..gw.upstreams.len() {
            let up = &gw.upstreams[index];
            if up.health.canary_due(now) && !up.health.canary_running.swap(true, Ordering::AcqRel) {
                let gw = gw.clone();
                tokio::spawn(async move {
                    let up = &gw.upstreams[index];
                    // Cleared however the task ends, so a canary can always run again.
                    let _running = Running(&up.health.canary_running);
                    let result = canary(&gw, up).await;
                    let passed = result.is_ok();
                    let labels = CanaryLabels {
                        upstream: up.id.clone(),
                        result: if passed { "passed" } else { "failed" },
                    };
                    gw.metrics.canaries.get_or_create(&labels).inc();
                    if let Err(reason) = &result {
                        tracing::info!(upstream = %up.id, %reason, "canary failed");
                    }
                    up.health.on_canary(result);
                });
            }
        }
        tokio::select! {
            () = tokio::time::sleep(tick) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Clears an upstream's "canary running" flag when dropped.
struct Running<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Trips upstreams whose service the monitor sees down, and lets canaries validate them once
/// it no longer does.
pub fn apply_monitor(gw: &Gateway, view: &MonitorView) {
    let now = Instant::now();
    for up in &gw.upstreams {
        let outage = view.get(&up.service.name).map(String::as_str);
        up.health.on_monitor(now, outage);
    }
}

/// One canary: `Ok` when the upstream is well enough to take traffic again.
async fn canary(gw: &Gateway, up: &UpstreamState) -> Result<(), String> {
    let deadline = Instant::now() + CANARY_TIMEOUT.min(up.timeout);
    // The free call first: while it fails, no tokens are spent.
    match up.list_models(deadline).await {
        // A list that came back broken still proves the API answers.
        Ok(_) | Err(ListError::NoApi | ListError::Incomplete) => {}
        Err(ListError::Unreachable { label, error, .. }) => {
            return Err(format!("{label}: {error}"))
        }
        Err(ListError::Status { label, status }) => {
            return Err(format!("{label} answered {status}"))
        }
    }
    if !spend(gw, up, CANARY_TOKENS) {
        return Err(format!(
            "the canary token budget ({} per hour) is spent; validation resumes next hour",
            gw.settings.canary_tokens_per_hour
        ));
    }
    let evidence = up.tiny_stream(gw.checker.context(), deadline).await;
    if let Some(error) = evidence.error {
        return Err(format!("tiny streamed answer: {error}"));
    }
    if !evidence.status.is_some_and(|s| (200..300).contains(&s)) {
        let said = evidence
            .provider_error
            .and_then(|e| e.message)
            .unwrap_or_default();
        return Err(format!(
            "tiny streamed answer: status {} {said}",
            evidence.status.map_or("none".into(), |s| s.to_string())
        ));
    }
    let ttft = evidence
        .time_to_first_token
        .or(evidence.total)
        .map(|d| d.as_secs_f64() * 1000.0);
    match canary_shortfall(
        Some(evidence.finished),
        ttft,
        up.health.baseline_ms(),
        &AssessConfig::default(),
    ) {
        Some(why) => Err(why),
        None => Ok(()),
    }
}

/// Takes `tokens` from the upstream's hourly canary budget; `false` when it is spent.
fn spend(gw: &Gateway, up: &UpstreamState, tokens: u64) -> bool {
    let hour = gw.started.elapsed().as_secs() / 3600;
    let Ok(mut spent) = up.health.canary_spend.lock() else {
        return false;
    };
    if spent.0 != hour {
        *spent = (hour, 0);
    }
    if spent.1 + tokens > gw.settings.canary_tokens_per_hour {
        return false;
    }
    spent.1 += tokens;
    gw.metrics
        .canary_tokens
        .get_or_create(&UpstreamLabels {
            upstream: up.id.clone(),
        })
        .inc_by(tokens);
    true
}
