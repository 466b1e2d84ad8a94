//! The `Store` trait — what the daemon persists and reads back — and the query and answer types
//! it speaks.

use std::time::Duration;

use aiwatch_core::alert_rules::{AlertMessage, Notification};
use aiwatch_core::assess::{Incident, Key};
use aiwatch_core::observation::{Component, Observation, Region, Source};
use aiwatch_core::ServiceName;
use aiwatch_core::Status;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::histogram::{HealthCounts, LatencyHistogram};

/// How long day rollups are kept by default.
pub const DAY_ROLLUP_RETENTION_DAYS: i64 = 400;

/// How long each kind of row is kept; [`Store::prune`] applies it.
///
/// The defaults suit a laptop-sized deployment (tens of keys). Rows per key and day: raw =
/// 86,400 s / interval (2,880 at 30 s), minute = 1,440, hour = 24, day = 1; at about 100 bytes a
/// row, a deployment with thousands of keys wants shorter raw and minute windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    pub raw: chrono::Duration,
    pub minute: chrono::Duration,
    pub hour: chrono::Duration,
    pub day: chrono::Duration,
    /// Sent and dead deliveries (pending ones are never pruned).
    pub deliveries: chrono::Duration,
    /// Problem reports and public posts (the crowd baseline learns from 8 weeks).
    pub reports: chrono::Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            raw: chrono::Duration::days(14),
            minute: chrono::Duration::days(8),
            hour: chrono::Duration::days(95),
            day: chrono::Duration::days(DAY_ROLLUP_RETENTION_DAYS),
            deliveries: chrono::Duration::days(30),
            reports: chrono::Duration::days(70),
        }
    }
}

/// Rows deleted by [`Store::prune`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pruned {
    pub raw: usize,
    pub minute: usize,
    pub hour: usize,
    pub day: usize,
    pub deliveries: usize,
    pub reports: usize,
}

/// Which series a read covers: one service, optionally narrowed to a component, a region and a
/// source. `None` means "all of them".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    pub service: ServiceName,
    pub component: Option<Component>,
    pub region: Option<Region>,
    pub source: Option<Source>,
}

impl Selector {
    /// Every component, region and source of one service.
    pub fn service(service: ServiceName) -> Self {
        Self {
            service,
            component: None,
            region: None,
            source: None,
        }
    }

    /// Exactly one (service, component, region), every source.
    pub fn key(key: &Key) -> Self {
        Self {
            service: key.service.clone(),
            component: Some(key.component),
            region: Some(key.region.clone()),
            source: None,
        }
    }

    pub fn component(mut self, component: Component) -> Self {
        self.component = Some(component);
        self
    }

    pub fn region(mut self, region: impl Into<Region>) -> Self {
        self.region = Some(region.into());
        self
    }

    pub fn source(mut self, source: Source) -> Self {
        self.source = Some(source);
        self
    }
}

/// A half-open time range `[from, to)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeRange {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl TimeRange {
    pub fn new(from: DateTime<Utc>, to: DateTime<Utc>) -> Self {
        Self { from, to }
    }

    /// The `span` before `to`, e.g. the last 24 hours.
    pub fn last(span: chrono::Duration, to: DateTime<Utc>) -> Self {
        Self {
            from: to - span,
            to,
        }
    }
}

/// Rollup resolution. Buckets start on UTC minute / hour / midnight boundaries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    Minute,
    Hour,
    Day,
}

impl Granularity {
    pub const ALL: [Granularity; 3] = [Self::Minute, Self::Hour, Self::Day];

    pub fn millis(self) -> i64 {
        match self {
            Self::Minute => 60_000,
            Self::Hour => 3_600_000,
            Self::Day => 86_400_000,
        }
    }
}

/// One rollup bucket of one (service, component, region), over the selected sources.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rollup {
    pub key: Key,
    pub granularity: Granularity,
    pub start: DateTime<Utc>,
    pub counts: HealthCounts,
    /// Latency of the up and degraded observations that had a total time.
    pub latency: LatencyHistogram,
}

/// Uptime over a range, honest about what it does not know.
///
/// `up_ratio` is computed over *known* observations only and counts degraded as up — the service
/// answered, if badly: `(up + degraded) / (up + degraded + down)`. `degraded_ratio` is given beside
/// it so a stricter figure is `up_ratio - degraded_ratio`. What was not known — observations
/// recorded as unknown (the monitor's own network was down) and, when an expected interval is
/// given, observations that should have been made but were not (the monitor was off) — is
/// `unknown_ratio`, over everything that was or should have been observed. A monitor that was off
/// for the whole range thus reports `up_ratio: None, unknown_ratio: 1.0`, never 100 %.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Uptime {
    pub counts: HealthCounts,
    /// How many series (service × component × region) matched the selector.
    pub series: usize,
    /// Observations expected from the interval, summed over series (`None` without an interval).
    pub expected: Option<u64>,
    /// Expected observations that were never recorded (0 without an interval).
    pub missing: u64,
    pub up_ratio: Option<f64>,
    pub degraded_ratio: Option<f64>,
    pub unknown_ratio: f64,
    /// When the earliest matching series was first observed; time before that is "not yet
    /// watched" and counts as missing all the same.
    pub first_seen: Option<DateTime<Utc>>,
}

/// Which incidents to list, newest opened first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncidentQuery {
    pub service: Option<ServiceName>,
    /// Incidents still open at or after `from` (resolved at or after it, or unresolved).
    pub from: Option<DateTime<Utc>>,
    /// Incidents opened before `to`.
    pub to: Option<DateTime<Utc>>,
    pub limit: usize,
    pub open_only: bool,
}

impl Default for IncidentQuery {
    fn default() -> Self {
        Self {
            service: None,
            from: None,
            to: None,
            limit: 100,
            open_only: false,
        }
    }
}

/// The assessor's state of one key, saved so a restart resumes where it was.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedState {
    pub key: Key,
    pub state: Status,
    /// Since when the key has been in this state, when known.
    pub since: Option<DateTime<Utc>>,
}

/// Where a notification is in its delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for its (next) attempt.
    Pending,
    /// The receiver accepted it.
    Sent,
    /// Given up after the retry budget, or refused for good by the receiver.
    Dead,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Dead => "dead",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Pending, Self::Sent, Self::Dead]
            .into_iter()
            .find(|s| s.as_str() == raw)
    }
}

/// A notification for one alert, as the outbox keeps it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Delivery {
    pub id: i64,
    /// The `[[alert]]` name.
    pub alert: String,
    pub message: AlertMessage,
    pub state: DeliveryState,
    pub attempts: u32,
    /// When the next attempt is due (pending), or when it ended.
    pub next_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The receiver's status code of the last attempt, if it answered.
    pub last_status: Option<u16>,
    /// What went wrong last, or what the receiver said.
    pub last_error: Option<String>,
}

/// What one attempt came to.
#[derive(Clone, Debug, PartialEq)]
pub enum DeliveryOutcome {
    Sent {
        status: Option<u16>,
    },
    Retry {
        at: DateTime<Utc>,
        status: Option<u16>,
        error: String,
    },
    Dead {
        status: Option<u16>,
        error: String,
    },
}

/// Which deliveries to list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryQuery {
    pub state: Option<DeliveryState>,
    pub alert: Option<String>,
    /// Only deliveries created at or after this.
    pub since: Option<DateTime<Utc>>,
    pub limit: usize,
    /// Oldest first (to replay decisions) instead of newest first (to show them).
    pub oldest_first: bool,
}

impl Default for DeliveryQuery {
    fn default() -> Self {
        Self {
            state: None,
            alert: None,
            since: None,
            limit: 100,
            oldest_first: false,
        }
    }
}

/// Counted reports of one service and region in one minute: (service, region, minute start,
/// count).
pub type ReportMinute = (ServiceName, Region, DateTime<Utc>, u32);

/// One problem report, as stored: the reporter only as a salted hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewReport {
    pub service: ServiceName,
    pub region: Region,
    /// A symptom id (`cannot_load`, …).
    pub symptom: String,
    /// The salted hash of the reporter's token.
    pub reporter: String,
    /// The start of the dedup window: one counted report per reporter, service and window.
    pub window_start: DateTime<Utc>,
    pub at: DateTime<Utc>,
    pub comment: Option<String>,
}

/// A public post (a feed entry) that speaks of a service's trouble.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PublicPost {
    pub service: ServiceName,
    /// Stable per post within its source.
    pub id: String,
    /// The feed's host.
    pub source: String,
    pub title: String,
    pub url: Option<String>,
    pub at: DateTime<Utc>,
    /// How much it counts next to a first-hand report (1.0).
    pub weight: f64,
}

/// Persistence for the daemon. Calls are synchronous and may block on disk: call them from a
/// dedicated writer thread or `spawn_blocking`. Implementations are shared across threads.
pub trait Store: Send + Sync {
    /// Stores a batch atomically (one transaction) and folds it into the minute and day rollups.
    /// When this returns `Ok`, the batch survives a crash of the process.
    fn insert_observations(&self, batch: &[Observation]) -> Result<()>;

    /// Stores a push from an agent and raises the counter `cursor` to `seq` (the push's last
    /// sequence number) in one transaction: after a crash either both are there or neither,
    /// so a resent push is recognised and nothing is stored twice.
    fn insert_pushed(&self, batch: &[Observation], cursor: &str, seq: u64) -> Result<()>;

    /// The counter `cursor` (0 when it was never raised).
    fn cursor(&self, cursor: &str) -> Result<u64>;

    /// Raw observations in `range`, newest first, at most `limit`. Times come back at
    /// millisecond precision, phase timings at microsecond precision.
    fn observations(
        &self,
        selector: &Selector,
        range: TimeRange,
        limit: usize,
    ) -> Result<Vec<Observation>>;

    /// Rollup buckets whose start lies in `range` (its start rounded down to the granularity),
    /// one per key and bucket, sorted by start then key; sources are merged unless selected.
    fn rollups(
        &self,
        selector: &Selector,
        range: TimeRange,
        granularity: Granularity,
    ) -> Result<Vec<Rollup>>;

    /// Uptime over `range` at minute resolution, read from day rollups for whole days, hour
    /// rollups for whole hours and minute rollups for the partial hours at either end (where a
    /// finer tier was pruned, the enclosing hour or day is read whole). With `expected_interval`, time with no observations counts as unknown: each
    /// matching series is expected to have `(to - from) / interval` observations, so pass
    /// `to = now`, and a source selector when sources run at different intervals.
    fn uptime(
        &self,
        selector: &Selector,
        range: TimeRange,
        expected_interval: Option<Duration>,
    ) -> Result<Uptime>;

    /// Latency quantiles (each in `0.0..=1.0`) over `range`, from merged rollup histograms;
    /// `None` where there were no latencies.
    fn latency_percentiles(
        &self,
        selector: &Selector,
        range: TimeRange,
        quantiles: &[f64],
    ) -> Result<Vec<Option<f64>>>;

    /// When the key was last observed, to resume its schedule. Read from the day rollups, so it
    /// outlives raw retention.
    fn last_observation_at(&self, key: &Key) -> Result<Option<DateTime<Utc>>>;

    /// The last observation time of every key that has raw observations.
    fn last_observation_times(&self) -> Result<Vec<(Key, DateTime<Utc>)>>;

    /// The latencies (`phases.total`) of the key's last `limit` Up observations from `source`
    /// within the week before its last observation, oldest first: what
    /// `Assessor::seed_baseline` wants after a restart.
    fn recent_latencies(&self, key: &Key, source: Source, limit: usize) -> Result<Vec<f32>>;

    /// Inserts or replaces an incident by id.
    fn upsert_incident(&self, incident: &Incident) -> Result<()>;

    fn incident(&self, id: &str) -> Result<Option<Incident>>;

    /// Incidents not yet resolved, oldest opened first.
    fn open_incidents(&self) -> Result<Vec<Incident>>;

    fn incidents(&self, query: &IncidentQuery) -> Result<Vec<Incident>>;

    /// Inserts or replaces each key's state; keys not mentioned are left as they are.
    fn save_states(&self, states: &[SavedState]) -> Result<()>;

    fn load_states(&self) -> Result<Vec<SavedState>>;

    /// Deletes raw observations older than `before`; rollups are kept. Returns how many rows went.
    fn prune_raw(&self, before: DateTime<Utc>) -> Result<usize>;

    /// Deletes rollup buckets that start before `before`. Returns how many rows went.
    fn prune_rollups(&self, granularity: Granularity, before: DateTime<Utc>) -> Result<usize>;

    /// Deletes sent and dead deliveries last touched before `before`; pending ones stay.
    fn prune_deliveries(&self, before: DateTime<Utc>) -> Result<usize>;

    /// Applies a retention policy as of `now` (for the daemon's periodic housekeeping).
    fn prune(&self, retention: &Retention, now: DateTime<Utc>) -> Result<Pruned> {
        Ok(Pruned {
            raw: self.prune_raw(now - retention.raw)?,
            minute: self.prune_rollups(Granularity::Minute, now - retention.minute)?,
            hour: self.prune_rollups(Granularity::Hour, now - retention.hour)?,
            day: self.prune_rollups(Granularity::Day, now - retention.day)?,
            deliveries: self.prune_deliveries(now - retention.deliveries)?,
            reports: self.prune_reports(now - retention.reports)?,
        })
    }

    /// Writes incidents and the notifications they cause in one transaction (the outbox): a
    /// notification exists if and only if the incident change that caused it was saved. A
    /// notification whose (alert, idempotency key) is already in the outbox is skipped. Returns
    /// how many notifications were new.
    fn record(&self, incidents: &[Incident], notifications: &[Notification]) -> Result<usize>;

    /// Pending deliveries due at `now`, oldest first, at most `limit`; one waits while an older
    /// one of the same alert and incident is pending, so a recovery never overtakes its opening.
    fn due_deliveries(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Delivery>>;

    /// When the earliest pending delivery is due.
    fn next_delivery_at(&self) -> Result<Option<DateTime<Utc>>>;

    /// Records an attempt's outcome (and counts the attempt).
    fn finish_attempt(&self, id: i64, outcome: &DeliveryOutcome, now: DateTime<Utc>) -> Result<()>;

    fn deliveries(&self, query: &DeliveryQuery) -> Result<Vec<Delivery>>;

    /// Counts of deliveries per state.
    fn delivery_counts(&self) -> Result<Vec<(DeliveryState, u64)>>;

    /// Saves a report unless this reporter already has one for this service in this window.
    /// Returns whether it was counted.
    fn insert_report(&self, report: &NewReport) -> Result<bool>;

    /// Counted reports per minute (minute start, count) of a service in `range`, for one
    /// region or all; minutes without reports are absent.
    fn report_minutes(
        &self,
        service: &ServiceName,
        region: Option<&Region>,
        range: TimeRange,
    ) -> Result<Vec<(DateTime<Utc>, u32)>>;

    /// Counted reports per (region, minute start) of every service, for minutes in `range`.
    fn report_minutes_all(&self, range: TimeRange) -> Result<Vec<ReportMinute>>;

    /// Counted reports by symptom of a service in `range`, most reported first.
    fn report_symptoms(
        &self,
        service: &ServiceName,
        range: TimeRange,
    ) -> Result<Vec<(String, u32)>>;

    /// Saves public posts (a post seen again is ignored); returns how many were new.
    fn insert_posts(&self, posts: &[PublicPost]) -> Result<usize>;

    /// A service's public posts in `range`, newest first.
    fn posts(
        &self,
        service: &ServiceName,
        range: TimeRange,
        limit: usize,
    ) -> Result<Vec<PublicPost>>;

    /// A value kept in the database (set to `default` the first time it is asked for).
    fn meta_value(&self, key: &str, default: &str) -> Result<String>;

    /// Deletes reports and posts older than `before`.
    fn prune_reports(&self, before: DateTime<Utc>) -> Result<usize>;

    /// Claims the checks `instance` runs: renews its leases among `keys`, takes free or expired
    /// ones up to a fair share (`keys` over the instances that claimed within their `ttl`,
    /// rounded up) and gives back the rest; returns the keys it holds, sorted. Every instance
    /// calls it with the same `keys` well within `ttl` (a third of it, say); one that stops
    /// calling loses its keys to the others once `ttl` has passed. Keys held by two instances
    /// at once never happens: claims run one at a time. A job that must run in one instance
    /// only (the outbox's deliverer, say) is a key claimed on its own: `&["outbox".into()]`.
    fn claim_checks(
        &self,
        instance: &str,
        keys: &[String],
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>>;

    /// Gives back every lease of `instance` (at shutdown), so others take its checks at once.
    fn release_checks(&self, instance: &str) -> Result<()>;

    /// Makes everything written so far durable in the main file (a WAL checkpoint); for shutdown.
    fn flush(&self) -> Result<()>;

    /// Whether the store can be read and its last write succeeded (for `/readyz`).
    fn healthy(&self) -> bool;
}
