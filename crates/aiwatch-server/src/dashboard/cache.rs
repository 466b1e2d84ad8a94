//! Keeps the overview's history — what it reads from the store (day rollups, incidents, recent
//! latencies) — between requests and refreshes it in the background, so rendering the overview
//! reads memory rather than SQLite. Live state (component states, official views, open
//! incidents) is never cached: it comes from the engine on every request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use aiwatch_core::assess::Incident;
use aiwatch_store::{Granularity, IncidentQuery, Rollup, Selector, TimeRange};
use chrono::{DateTime, Duration, Utc};

use super::history::{self, DAYS};
use super::overview::{main_component, recent_latencies, SPARK_POINTS};
use crate::engine::Engine;

/// A history younger than this is served as is.
const FRESH: Duration = Duration::seconds(5);
/// A history older than this (or from another day) is read again before the page is served;
/// between the two, the old one is served while a new one is read in the background.
const STALE: Duration = Duration::seconds(60);

/// What the overview reads from the store, at one moment.
pub struct History {
    pub taken: DateTime<Utc>,
    pub first_day: DateTime<Utc>,
    /// Day rollups since `first_day`, by service name.
    pub rollups: HashMap<String, Vec<Rollup>>,
    /// Stored incidents still open at or after `first_day`, all services.
    pub incidents: Vec<Incident>,
    /// Latencies of the main component's latest checks, oldest first, by service name.
    pub latency: HashMap<String, Vec<f32>>,
}

impl History {
    /// Reads the history of every service from the store.
    pub fn read(engine: &Engine, now: DateTime<Utc>) -> Result<History, aiwatch_store::Error> {
        let first_day = history::first_day(now, DAYS);
        let range = TimeRange::new(first_day, now);
        let mut rollups = HashMap::with_capacity(engine.services.len());
        let mut latency = HashMap::with_capacity(engine.services.len());
        for service in &engine.services {
            let name = service.name.to_string();
            rollups.insert(
                name.clone(),
                engine.store.rollups(
                    &Selector::service(service.name.clone()),
                    range,
                    Granularity::Day,
                )?,
            );
            latency.insert(
                name,
                recent_latencies(engine, service, main_component(service), now, SPARK_POINTS)?,
            );
        }
        let incidents = engine.store.incidents(&IncidentQuery {
            from: Some(first_day),
            limit: 10_000,
            ..IncidentQuery::default()
        })?;
        Ok(History {
            taken: now,
            first_day,
            rollups,
            incidents,
            latency,
        })
    }
}

/// The latest history and whether a refresh is under way.
#[derive(Default)]
pub struct HistoryCache {
    current: RwLock<Option<Arc<History>>>,
    refreshing: AtomicBool,
}

impl HistoryCache {
    pub fn new() -> Self {
        Self::default()
    }

    fn store(&self, history: Arc<History>) {
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        if current.as_ref().is_none_or(|c| c.taken <= history.taken) {
            *current = Some(history);
        }
    }

    /// A history fit to serve at `now`: the cached one while fresh; the cached one while a
    /// background read replaces it when it is getting old; a new read when there is none, it
    /// is from another day, or it is too old. Call from a blocking context.
    pub fn get(
        self: &Arc<Self>,
        engine: &Arc<Engine>,
        now: DateTime<Utc>,
    ) -> Result<Arc<History>, aiwatch_store::Error> {
        let cached = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(history) = cached {
            let age = now - history.taken;
            let same_day = history.first_day == history::first_day(now, DAYS);
            if same_day && age < FRESH {
                return Ok(history);
            }
            if same_day && age < STALE {
                self.refresh_in_background(engine);
                return Ok(history);
            }
        }
        let history = Arc::new(History::read(engine, now)?);
        self.store(history.clone());
        Ok(history)
    }

    fn refresh_in_background(self: &Arc<Self>, engine: &Arc<Engine>) {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.refreshing.store(false, Ordering::Release);
            return;
        };
        let (cache, engine) = (self.clone(), engine.clone());
        runtime.spawn_blocking(move || {
            match History::read(&engine, Utc::now()) {
                Ok(history) => cache.store(Arc::new(history)),
                Err(error) => tracing::warn!(%error, "dashboard: history refresh failed"),
            }
            cache.refreshing.store(false, Ordering::Release);
        });
    }
}
