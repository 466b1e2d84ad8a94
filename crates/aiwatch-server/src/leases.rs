//! Several `serve` instances on one shared database (PostgreSQL): each claims a fair share of
//! the checks — and one of them the alert deliverer — through the store's expiring leases,
//! renewed every third of their lifetime. A check it does not hold it does not run; it follows
//! that check's observations from the store instead, so every instance's assessor, dashboard
//! and API tell the same story. An instance that stops renewing (killed) loses its leases once
//! they expire, and the others take its checks and run them at once.
//!
//! With a store of its own (SQLite, one process) an instance holds everything and none of
//! this runs.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::Utc;

use crate::engine::Engine;

/// The lease that makes one instance the alert deliverer.
pub const DELIVERER: &str = "~alert-deliverer";

/// How often an instance follows the checks others hold.
pub const FOLLOW_EVERY: Duration = Duration::from_secs(2);

/// This instance's leases.
#[derive(Debug)]
pub struct Leases {
    instance: String,
    /// `None`: the store is this process's own; everything is held.
    shared: Option<SharedLeases>,
}

#[derive(Debug)]
struct SharedLeases {
    ttl: Duration,
    held: RwLock<HashSet<String>>,
}

impl Leases {
    /// Holds everything: a store of its own.
    pub fn solo() -> Self {
        Self {
            instance: String::from("solo"),
            shared: None,
        }
    }

    /// Claims through a shared store as `instance`, leases living `ttl`.
    pub fn shared(instance: String, ttl: Duration) -> Self {
        Self {
            instance,
            shared: Some(SharedLeases {
                ttl,
                held: RwLock::new(HashSet::new()),
            }),
        }
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// Whether this instance runs `key` (a service name, or [`DELIVERER`]).
    pub fn holds(&self, key: &str) -> bool {
        match &self.shared {
            None => true,
            Some(shared) => shared
                .held
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .contains(key),
        }
    }

    /// How many keys this instance holds (`None` for a store of its own).
    pub fn held_count(&self) -> Option<usize> {
        self.shared
            .as_ref()
            .map(|s| s.held.read().unwrap_or_else(|p| p.into_inner()).len())
    }

    /// The lease lifetime for services checked every `shortest` at the shortest: two thirds of
    /// it (a killed instance's checks move within one interval), between 3 s and 60 s.
    pub fn ttl_for(shortest: Duration) -> Duration {
        (shortest * 2 / 3).clamp(Duration::from_secs(3), Duration::from_secs(60))
    }
}

/// Every lease key: each service, and the deliverer.
fn keys(engine: &Engine) -> Vec<String> {
    let mut keys: Vec<String> = engine.services.iter().map(|s| s.name.to_string()).collect();
    keys.push(DELIVERER.to_owned());
    keys
}

/// One claim: what this instance holds now; newly held services are checked at once.
pub async fn claim(engine: &Arc<Engine>) {
    let Some(shared) = &engine.leases.shared else {
        return;
    };
    let store = engine.store.clone();
    let instance = engine.leases.instance.clone();
    let all = keys(engine);
    let ttl = shared.ttl;
    let claimed =
        tokio::task::spawn_blocking(move || store.claim_checks(&instance, &all, ttl, Utc::now()))
            .await;
    let now_held: HashSet<String> = match claimed {
        Ok(Ok(keys)) => keys.into_iter().collect(),
        Ok(Err(e)) => {
            // Without a word from the store, run nothing: another instance may hold it all.
            tracing::warn!(error = %e, "leases could not be renewed; running no checks until they are");
            HashSet::new()
        }
        Err(_) => return,
    };
    let gained: Vec<usize> = {
        let mut held = shared.held.write().unwrap_or_else(|p| p.into_inner());
        let gained = engine
            .services
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                let name = s.name.as_str();
                now_held.contains(name) && !held.contains(name)
            })
            .map(|(i, _)| i)
            .collect();
        *held = now_held;
        gained
    };
    if let Some(alerting) = engine.alerting() {
        alerting
            .deliverer
            .set_active(engine.leases.holds(DELIVERER));
    }
    engine
        .metrics
        .checks_held
        .set(i64::try_from(engine.leases.held_count().unwrap_or(0)).unwrap_or(i64::MAX));
    if !gained.is_empty() {
        tracing::info!(checks = gained.len(), "took over checks");
        // Catch up with what the previous holder stored, and continue its incidents.
        engine.follow().await;
        for &index in &gained {
            if let Some(service) = engine.services.get(index) {
                engine.adopt(&service.name).await;
            }
        }
    }
    for index in gained {
        let engine = engine.clone();
        tokio::spawn(async move { engine.check(index).await });
    }
}

/// Renews the leases every third of their lifetime and follows the checks others hold, until
/// `stop`; then gives the leases back so the others take over at once.
pub async fn run(engine: Arc<Engine>, stop: impl std::future::Future<Output = ()>) {
    let Some(shared) = &engine.leases.shared else {
        return;
    };
    let mut renew = tokio::time::interval(shared.ttl / 3);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut follow = tokio::time::interval(FOLLOW_EVERY);
    follow.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = renew.tick() => claim(&engine).await,
            _ = follow.tick() => engine.follow().await,
        }
    }
    let store = engine.store.clone();
    let instance = engine.leases.instance.clone();
    let _ = tokio::task::spawn_blocking(move || store.release_checks(&instance)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_live_two_thirds_of_the_shortest_interval_within_bounds() {
        assert_eq!(
            Leases::ttl_for(Duration::from_secs(30)),
            Duration::from_secs(20)
        );
        assert_eq!(
            Leases::ttl_for(Duration::from_millis(200)),
            Duration::from_secs(3)
        );
        assert_eq!(
            Leases::ttl_for(Duration::from_secs(3600)),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn a_store_of_its_own_holds_everything() {
        let solo = Leases::solo();
        assert!(solo.holds("openai-api") && solo.holds(DELIVERER));
        let shared = Leases::shared("a".into(), Duration::from_secs(3));
        assert!(
            !shared.holds("openai-api"),
            "nothing is held before the first claim"
        );
    }
}
