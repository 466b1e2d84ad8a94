//! The store writer when the store fails: nothing is dropped silently — failed writes are kept
//! and retried once the store recovers, and every failure is counted in the metrics.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aiwatch_core::alert_rules::Notification;
use aiwatch_core::assess::{Incident, Key};
use aiwatch_core::observation::{Component, Health, Observation, PhaseMs, Region, Source};
use aiwatch_core::{Cause, ServiceName};
use aiwatch_server::metrics::Metrics;
use aiwatch_server::writer::{WriteOp, Writer};
use aiwatch_store::{
    Delivery, DeliveryOutcome, DeliveryQuery, DeliveryState, Granularity, IncidentQuery, NewReport,
    PublicPost, Retention, Rollup, SavedState, Selector, SqliteStore, Store, TimeRange, Uptime,
};
use chrono::{DateTime, Utc};

/// A real store that refuses observation writes while `failing` is set, and counts how often
/// it was asked while it refused.
struct FlakyStore {
    inner: SqliteStore,
    failing: AtomicBool,
    refused: AtomicUsize,
    /// Incident changes are refused whatever `failing` says.
    records_refused: AtomicBool,
}

impl FlakyStore {
    fn failing() -> Self {
        Self {
            inner: SqliteStore::open_in_memory().expect("an in-memory store"),
            failing: AtomicBool::new(true),
            refused: AtomicUsize::new(0),
            records_refused: AtomicBool::new(false),
        }
    }

    fn refuse(&self) -> aiwatch_store::Result<()> {
        if self.failing.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            Err(aiwatch_store::Error::Busy("insert"))
        } else {
            Ok(())
        }
    }
}

impl Store for FlakyStore {
    fn insert_observations(&self, batch: &[Observation]) -> aiwatch_store::Result<()> {
        self.refuse()?;
        self.inner.insert_observations(batch)
    }
    fn insert_pushed(
        &self,
        batch: &[Observation],
        cursor: &str,
        seq: u64,
    ) -> aiwatch_store::Result<()> {
        self.refuse()?;
        self.inner.insert_pushed(batch, cursor, seq)
    }
    fn cursor(&self, cursor: &str) -> aiwatch_store::Result<u64> {
        self.inner.cursor(cursor)
    }
    fn observations(
        &self,
        s: &Selector,
        r: TimeRange,
        limit: usize,
    ) -> aiwatch_store::Result<Vec<Observation>> {
        self.inner.observations(s, r, limit)
    }
    fn rollups(
        &self,
        s: &Selector,
        r: TimeRange,
        g: Granularity,
    ) -> aiwatch_store::Result<Vec<Rollup>> {
        self.inner.rollups(s, r, g)
    }
    fn uptime(
        &self,
        s: &Selector,
        r: TimeRange,
        every: Option<Duration>,
    ) -> aiwatch_store::Result<Uptime> {
        self.inner.uptime(s, r, every)
    }
    fn latency_percentiles(
        &self,
        s: &Selector,
        r: TimeRange,
        q: &[f64],
    ) -> aiwatch_store::Result<Vec<Option<f64>>> {
        self.inner.latency_percentiles(s, r, q)
    }
    fn last_observation_at(&self, key: &Key) -> aiwatch_store::Result<Option<DateTime<Utc>>> {
        self.inner.last_observation_at(key)
    }
    fn last_observation_times(&self) -> aiwatch_store::Result<Vec<(Key, DateTime<Utc>)>> {
        self.inner.last_observation_times()
    }
    fn recent_latencies(
        &self,
        key: &Key,
        source: Source,
        limit: usize,
    ) -> aiwatch_store::Result<Vec<f32>> {
        self.inner.recent_latencies(key, source, limit)
    }
    fn upsert_incident(&self, incident: &Incident) -> aiwatch_store::Result<()> {
        self.inner.upsert_incident(incident)
    }
    fn incident(&self, id: &str) -> aiwatch_store::Result<Option<Incident>> {
        self.inner.incident(id)
    }
    fn open_incidents(&self) -> aiwatch_store::Result<Vec<Incident>> {
        self.inner.open_incidents()
    }
    fn incidents(&self, q: &IncidentQuery) -> aiwatch_store::Result<Vec<Incident>> {
        self.inner.incidents(q)
    }
    fn save_states(&self, states: &[SavedState]) -> aiwatch_store::Result<()> {
        self.refuse()?;
        self.inner.save_states(states)
    }
    fn load_states(&self) -> aiwatch_store::Result<Vec<SavedState>> {
        self.inner.load_states()
    }
    fn prune_raw(&self, before: DateTime<Utc>) -> aiwatch_store::Result<usize> {
        self.inner.prune_raw(before)
    }
    fn prune_rollups(&self, g: Granularity, before: DateTime<Utc>) -> aiwatch_store::Result<usize> {
        self.inner.prune_rollups(g, before)
    }
    fn record(
        &self,
        incidents: &[Incident],
        notifications: &[Notification],
    ) -> aiwatch_store::Result<usize> {
        self.refuse()?;
        if self.records_refused.load(Ordering::SeqCst) {
            return Err(aiwatch_store::Error::Busy("record"));
        }
        self.inner.record(incidents, notifications)
    }
    fn due_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> aiwatch_store::Result<Vec<Delivery>> {
        self.inner.due_deliveries(now, limit)
    }
    fn next_delivery_at(&self) -> aiwatch_store::Result<Option<DateTime<Utc>>> {
        self.inner.next_delivery_at()
    }
    fn finish_attempt(
        &self,
        id: i64,
        outcome: &DeliveryOutcome,
        now: DateTime<Utc>,
    ) -> aiwatch_store::Result<()> {
        self.inner.finish_attempt(id, outcome, now)
    }
    fn deliveries(&self, q: &DeliveryQuery) -> aiwatch_store::Result<Vec<Delivery>> {
        self.inner.deliveries(q)
    }
    fn delivery_counts(&self) -> aiwatch_store::Result<Vec<(DeliveryState, u64)>> {
        self.inner.delivery_counts()
    }
    fn prune_deliveries(&self, before: DateTime<Utc>) -> aiwatch_store::Result<usize> {
        self.inner.prune_deliveries(before)
    }
    fn insert_report(&self, r: &NewReport) -> aiwatch_store::Result<bool> {
        self.inner.insert_report(r)
    }
    fn report_minutes(
        &self,
        service: &ServiceName,
        region: Option<&Region>,
        range: TimeRange,
    ) -> aiwatch_store::Result<Vec<(DateTime<Utc>, u32)>> {
        self.inner.report_minutes(service, region, range)
    }
    fn report_minutes_all(
        &self,
        range: TimeRange,
    ) -> aiwatch_store::Result<Vec<aiwatch_store::ReportMinute>> {
        self.inner.report_minutes_all(range)
    }
    fn report_symptoms(
        &self,
        service: &ServiceName,
        range: TimeRange,
    ) -> aiwatch_store::Result<Vec<(String, u32)>> {
        self.inner.report_symptoms(service, range)
    }
    fn insert_posts(&self, posts: &[PublicPost]) -> aiwatch_store::Result<usize> {
        self.inner.insert_posts(posts)
    }
    fn posts(
        &self,
        service: &ServiceName,
        range: TimeRange,
        limit: usize,
    ) -> aiwatch_store::Result<Vec<PublicPost>> {
        self.inner.posts(service, range, limit)
    }
    fn meta_value(&self, key: &str, default: &str) -> aiwatch_store::Result<String> {
        self.inner.meta_value(key, default)
    }
    fn prune_reports(&self, before: DateTime<Utc>) -> aiwatch_store::Result<usize> {
        self.inner.prune_reports(before)
    }
    fn claim_checks(
        &self,
        instance: &str,
        keys: &[String],
        ttl: std::time::Duration,
        now: DateTime<Utc>,
    ) -> aiwatch_store::Result<Vec<String>> {
        self.inner.claim_checks(instance, keys, ttl, now)
    }
    fn release_checks(&self, instance: &str) -> aiwatch_store::Result<()> {
        self.inner.release_checks(instance)
    }
    fn flush(&self) -> aiwatch_store::Result<()> {
        self.inner.flush()
    }
    fn healthy(&self) -> bool {
        !self.failing.load(Ordering::SeqCst)
    }
}

fn observations(n: usize) -> Vec<Observation> {
    let at = Utc::now();
    (0..n)
        .map(|i| Observation {
            service: ServiceName::parse("openai-api").expect("a name"),
            component: Component::Api,
            region: Region::local(),
            source: Source::Probe,
            at: at - chrono::Duration::milliseconds(i as i64),
            health: Health::Up,
            cause: Cause::Ok,
            phases: PhaseMs::default(),
            complete: None,
            detail: format!("check {i}"),
        })
        .collect()
}

fn stored(store: &FlakyStore) -> usize {
    let selector = Selector::service(ServiceName::parse("openai-api").expect("a name"));
    let now = Utc::now();
    let range = TimeRange {
        from: now - chrono::Duration::hours(1),
        to: now + chrono::Duration::minutes(1),
    };
    store
        .inner
        .observations(&selector, range, 10_000)
        .expect("read back")
        .len()
}

#[tokio::test]
async fn failed_writes_are_kept_counted_and_written_once_the_store_recovers() {
    let store = Arc::new(FlakyStore::failing());
    let metrics = Arc::new(Metrics::new(1));
    let writer = Writer::start(store.clone(), metrics.clone(), Retention::default());
    writer.send(WriteOp::Observations(observations(30))).await;
    writer.flush().await;
    assert_eq!(stored(&store), 0, "the store refused them");
    assert!(
        metrics.store_write_failures.get() >= 1,
        "the failure is counted"
    );
    assert_eq!(metrics.store_dropped.get(), 0, "nothing given up");
    store.failing.store(false, Ordering::SeqCst);
    writer.send(WriteOp::Observations(observations(5))).await;
    writer.flush().await;
    assert_eq!(
        stored(&store),
        35,
        "the kept batch went in with the new one"
    );
}

#[tokio::test]
async fn a_failing_store_is_asked_less_and_less_often_and_gets_everything_once_back() {
    let store = Arc::new(FlakyStore::failing());
    let metrics = Arc::new(Metrics::new(1));
    let writer = Writer::start(store.clone(), metrics.clone(), Retention::default());
    // 1.5 s of steady traffic: an observation every 50 ms.
    let started = std::time::Instant::now();
    let mut sent = 0;
    while started.elapsed() < Duration::from_millis(1500) {
        writer.send(WriteOp::Observations(observations(1))).await;
        sent += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Tried every 200 ms the store would be asked 7 times; pausing 0.2, 0.4, 0.8 s after each
    // failure, 3 times (a slow machine only asks less).
    let refused = store.refused.load(Ordering::SeqCst);
    assert!((1..=4).contains(&refused), "asked {refused} times in 1.5 s");
    assert_eq!(metrics.store_dropped.get(), 0, "nothing given up");
    store.failing.store(false, Ordering::SeqCst);
    writer.flush().await;
    assert_eq!(stored(&store), sent, "everything kept went in once back");
}

#[tokio::test]
async fn state_changes_made_while_the_store_fails_are_saved_once_it_is_back() {
    let store = Arc::new(FlakyStore::failing());
    let metrics = Arc::new(Metrics::new(1));
    let writer = Writer::start(store.clone(), metrics.clone(), Retention::default());
    let key = |component| {
        Key::new(
            ServiceName::parse("openai-api").expect("a name"),
            component,
            Region::local(),
        )
    };
    let state = |component, state| SavedState {
        key: key(component),
        state,
        since: None,
    };
    writer
        .send(WriteOp::States(vec![
            state(Component::Api, aiwatch_core::Status::Outage),
            state(Component::Web, aiwatch_core::Status::Operational),
        ]))
        .await;
    // A later change of the same key replaces the earlier one.
    writer
        .send(WriteOp::States(vec![state(
            Component::Api,
            aiwatch_core::Status::Degraded,
        )]))
        .await;
    writer.flush().await;
    assert!(
        store.inner.load_states().expect("read").is_empty(),
        "refused"
    );
    store.failing.store(false, Ordering::SeqCst);
    writer.flush().await;
    let mut saved: Vec<_> = store
        .inner
        .load_states()
        .expect("read")
        .into_iter()
        .map(|s| (s.key.component, s.state))
        .collect();
    saved.sort_by_key(|(c, _)| c.as_str());
    assert_eq!(
        saved,
        vec![
            (Component::Api, aiwatch_core::Status::Degraded),
            (Component::Web, aiwatch_core::Status::Operational),
        ]
    );
}

#[tokio::test]
async fn incident_changes_the_store_keeps_refusing_do_not_hold_back_observations() {
    let store = Arc::new(FlakyStore::failing());
    store.failing.store(false, Ordering::SeqCst);
    store.records_refused.store(true, Ordering::SeqCst);
    let metrics = Arc::new(Metrics::new(1));
    let writer = Writer::start(store.clone(), metrics.clone(), Retention::default());
    writer
        .send(WriteOp::Record {
            incidents: Vec::new(),
            notifications: Vec::new(),
            wake: None,
        })
        .await;
    writer.send(WriteOp::Observations(observations(5))).await;
    // No flush: the writer's own rounds write them while the record keeps being refused.
    let started = std::time::Instant::now();
    while stored(&store) < 5 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stored(&store), 5, "the observations went in");
    assert!(
        metrics.store_write_failures.get() >= 1,
        "the record's failures are counted"
    );
}
