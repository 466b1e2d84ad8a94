//! The crowd in the daemon: once a minute, the minute's counted problem reports (and weighted
//! public posts) per service × region go into the core's detector; each service's reading is
//! kept for the fusion (`assessment::with_crowd`), and the API says what people report.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};

use aiwatch_core::crowd::{CrowdConfig, CrowdLevel, CrowdReading, CrowdSeries};
use aiwatch_core::observation::Region;
use aiwatch_core::official_lag::LagSummary;
use aiwatch_core::{Scope, ServiceName};
use aiwatch_store::{Store, TimeRange};
use chrono::{DateTime, Duration, DurationRound, Utc};
use serde::Serialize;

use crate::api::ApiError;
use crate::engine::Engine;

/// How far back the detector's history is rebuilt from the store at start.
const HISTORY: Duration = Duration::weeks(aiwatch_core::crowd::HISTORY_WEEKS as i64);

/// One detector series: a service seen from a region.
type SeriesKey = (ServiceName, Region);

/// A service's crowd signal now: the highest level among its regions, and where.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServiceCrowd {
    pub level: CrowdLevel,
    /// Regions at that level (empty when none).
    pub regions: Vec<Region>,
    /// Reports (and weighted posts) in the detector's window, and what is usual for it.
    pub count_in_window: f64,
    pub expected_in_window: f64,
    pub since: Option<DateTime<Utc>>,
}

impl ServiceCrowd {
    /// `Regional` when some regions spike and reports also come from others, else `Global`.
    pub fn scope(&self, regions_reporting: usize) -> Scope {
        if self.regions.len() < regions_reporting && !self.regions.is_empty() {
            Scope::Regional
        } else {
            Scope::Global
        }
    }
}

/// The detector's series and the latest readings.
pub struct Crowd {
    config: CrowdConfig,
    series: Mutex<HashMap<SeriesKey, CrowdSeries>>,
    readings: RwLock<HashMap<ServiceName, (ServiceCrowd, usize)>>,
    /// The last minute recorded.
    last: Mutex<Option<DateTime<Utc>>>,
    /// Weighted public posts per service, for the minute being filled.
    posts: Mutex<HashMap<ServiceName, f64>>,
    /// How late each service's official page acknowledged incidents (refreshed each minute).
    lag: RwLock<HashMap<ServiceName, LagSummary>>,
}

fn minute_of(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(Duration::minutes(1)).unwrap_or(at)
}

impl Crowd {
    /// Rebuilds the detector's history from the stored reports of the last weeks.
    pub fn restore(store: &dyn Store, config: CrowdConfig, now: DateTime<Utc>) -> Self {
        let this_minute = minute_of(now);
        let mut series: HashMap<SeriesKey, CrowdSeries> = HashMap::new();
        match store.report_minutes_all(TimeRange::new(this_minute - HISTORY, this_minute)) {
            Ok(mut rows) => {
                rows.sort_by_key(|(_, _, at, _)| *at);
                for (service, region, at, count) in rows {
                    series
                        .entry((service, region))
                        .or_default()
                        .record_minute(at, f64::from(count));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "problem reports could not be read back; the crowd baseline starts empty")
            }
        }
        Self {
            config,
            series: Mutex::new(series),
            readings: RwLock::new(HashMap::new()),
            last: Mutex::new(Some(this_minute - Duration::minutes(1))),
            posts: Mutex::new(HashMap::new()),
            lag: RwLock::new(HashMap::new()),
        }
    }

    /// Recomputes each service's official-page lag from the last 90 days of incidents.
    pub fn refresh_lag(&self, store: &dyn Store, services: &[ServiceName], now: DateTime<Utc>) {
        let incidents = match store.incidents(&aiwatch_store::IncidentQuery {
            from: Some(now - Duration::days(90)),
            limit: 10_000,
            ..aiwatch_store::IncidentQuery::default()
        }) {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!(error = %e, "incidents could not be read for the official-page lag");
                return;
            }
        };
        let lag = services
            .iter()
            .map(|s| {
                let own = incidents.iter().filter(|i| &i.key.service == s);
                (s.clone(), aiwatch_core::official_lag::summarize(own))
            })
            .collect();
        *self.lag.write().unwrap_or_else(|p| p.into_inner()) = lag;
    }

    /// Every service's official-page lag, as last computed.
    pub fn lags(&self) -> HashMap<ServiceName, LagSummary> {
        self.lag.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Counts matched public posts (already weighted) into the current minute.
    pub fn add_posts(&self, service: &ServiceName, weight: f64) {
        *self
            .posts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(service.clone())
            .or_default() += weight;
    }

    /// Records every complete minute since the last one and assesses each series; returns
    /// whether a new minute was recorded.
    pub fn tick(&self, store: &dyn Store, now: DateTime<Utc>) -> bool {
        let this_minute = minute_of(now);
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let from = last.map_or(this_minute - Duration::minutes(1), |l| {
            l + Duration::minutes(1)
        });
        if from >= this_minute {
            return false;
        }
        let rows = match store.report_minutes_all(TimeRange::new(from, this_minute)) {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "problem reports could not be counted this minute");
                return false;
            }
        };
        let posts = std::mem::take(&mut *self.posts.lock().unwrap_or_else(|p| p.into_inner()));
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let mut by_minute: HashMap<SeriesKey, Vec<(DateTime<Utc>, f64)>> = HashMap::new();
        for (service, region, at, count) in rows {
            by_minute
                .entry((service, region))
                .or_default()
                .push((at, f64::from(count)));
        }
        // Posts have no region: they count in the "unknown" one, at the last complete minute.
        for (service, weight) in posts {
            by_minute
                .entry((service, Region::from("unknown")))
                .or_default()
                .push((this_minute - Duration::minutes(1), weight));
        }
        for (key, mut minutes) in by_minute {
            minutes.sort_by_key(|(at, _)| *at);
            let s = series.entry(key).or_default();
            for (at, count) in minutes {
                s.record_minute(at, count);
            }
        }
        let mut readings: HashMap<ServiceName, (ServiceCrowd, usize)> = HashMap::new();
        for ((service, region), s) in series.iter_mut() {
            let reading = s.assess(this_minute, &self.config);
            let (entry, reporting) = readings.entry(service.clone()).or_insert_with(|| {
                (
                    ServiceCrowd {
                        level: CrowdLevel::None,
                        regions: Vec::new(),
                        count_in_window: 0.0,
                        expected_in_window: 0.0,
                        since: None,
                    },
                    0,
                )
            });
            if reading.count_in_window > 0.0 {
                *reporting += 1;
            }
            merge(entry, region, &reading);
        }
        *self.readings.write().unwrap_or_else(|p| p.into_inner()) = readings;
        *last = Some(this_minute - Duration::minutes(1));
        true
    }

    /// A service's crowd signal now, and how many regions report at all.
    pub fn reading(&self, service: &ServiceName) -> Option<(ServiceCrowd, usize)> {
        self.readings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(service)
            .cloned()
    }

    pub fn config(&self) -> &CrowdConfig {
        &self.config
    }
}

fn merge(into: &mut ServiceCrowd, region: &Region, reading: &CrowdReading) {
    into.count_in_window += reading.count_in_window;
    into.expected_in_window += reading.expected_in_window;
    if reading.level > into.level {
        into.level = reading.level;
        into.regions = vec![region.clone()];
        into.since = reading.since;
    } else if reading.level == into.level && reading.level != CrowdLevel::None {
        into.regions.push(region.clone());
        into.since = match (into.since, reading.since) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

/// What `GET /api/v1/services/{name}/reports` answers.
#[derive(Serialize)]
pub struct Summary {
    pub service: ServiceName,
    pub level: CrowdLevel,
    pub regions: Vec<Region>,
    pub since: Option<DateTime<Utc>>,
    /// Reports (and weighted posts) in the detector's window, and what is usual then.
    pub window_minutes: u32,
    pub count_in_window: f64,
    pub expected_in_window: f64,
    pub last_hour: Counts,
    pub last_24h: Counts,
    pub posts: Vec<PostView>,
}

#[derive(Serialize)]
pub struct Counts {
    pub total: u32,
    pub by_symptom: Vec<SymptomCount>,
}

#[derive(Serialize)]
pub struct SymptomCount {
    pub symptom: String,
    pub count: u32,
}

#[derive(Serialize)]
pub struct PostView {
    pub title: String,
    pub url: Option<String>,
    pub source: String,
    pub at: DateTime<Utc>,
}

/// What people report about `service` now.
pub async fn summary(
    engine: &std::sync::Arc<Engine>,
    service: &ServiceName,
) -> Result<Summary, ApiError> {
    let store = engine.store.clone();
    let name = service.clone();
    let now = Utc::now();
    let (hour, day, posts) = tokio::task::spawn_blocking(move || {
        let counts = |span: Duration| -> aiwatch_store::Result<Counts> {
            let by: Vec<SymptomCount> = store
                .report_symptoms(&name, TimeRange::new(now - span, now))?
                .into_iter()
                .map(|(symptom, count)| SymptomCount { symptom, count })
                .collect();
            Ok(Counts {
                total: by.iter().map(|s| s.count).sum(),
                by_symptom: by,
            })
        };
        let posts = store
            .posts(&name, TimeRange::new(now - Duration::hours(24), now), 20)?
            .into_iter()
            .map(|p| PostView {
                title: p.title,
                url: p.url,
                source: p.source,
                at: p.at,
            })
            .collect::<Vec<_>>();
        Ok::<_, aiwatch_store::Error>((
            counts(Duration::hours(1))?,
            counts(Duration::hours(24))?,
            posts,
        ))
    })
    .await
    .map_err(|_| ApiError::internal("the reports could not be read"))??;
    let (now_crowd, _) = engine.crowd.reading(service).unwrap_or((
        ServiceCrowd {
            level: CrowdLevel::None,
            regions: Vec::new(),
            count_in_window: 0.0,
            expected_in_window: 0.0,
            since: None,
        },
        0,
    ));
    Ok(Summary {
        service: service.clone(),
        level: now_crowd.level,
        regions: now_crowd.regions,
        since: now_crowd.since,
        window_minutes: engine.crowd.config().window_minutes,
        count_in_window: now_crowd.count_in_window,
        expected_in_window: now_crowd.expected_in_window,
        last_hour: hour,
        last_24h: day,
        posts,
    })
}
