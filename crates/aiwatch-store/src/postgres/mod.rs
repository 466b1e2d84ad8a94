//! `PostgresStore`: the PostgreSQL implementation of `Store` — the connection pool, statement
//! caching, keeping the blocking client off async worker threads, and the trait's dispatch to
//! the ingest, read and row halves.
//!
//! Every call takes a pooled connection and runs in one transaction: writes commit (and are
//! durable) before returning, reads see one snapshot (`REPEATABLE READ READ ONLY`). Several
//! `serve` instances can share one database: writes are idempotent where SQLite's are (unique
//! keys with `ON CONFLICT`), rollups are added to, not overwritten, and [`Store::claim_checks`]
//! splits the checks between them.

mod ingest;
mod migrations;
mod read;
mod rows;
pub(crate) mod tls;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use aiwatch_core::alert_rules::Notification;
use aiwatch_core::assess::{Incident, Key};
use aiwatch_core::observation::{Observation, Region, Source};
use aiwatch_core::ServiceName;
use chrono::{DateTime, Utc};
use postgres::error::SqlState;
use postgres::{Client, GenericClient, IsolationLevel, Statement, Transaction};

use crate::codec::{check_quantiles, check_range};
use crate::error::{Error, Result};
use crate::store::{
    Delivery, DeliveryOutcome, DeliveryQuery, DeliveryState, Granularity, IncidentQuery, NewReport,
    PublicPost, ReportMinute, Rollup, SavedState, Selector, Store, TimeRange, Uptime,
};
use crate::tiers::to_ms;
use crate::url::PostgresUrl;

pub use migrations::SCHEMA_VERSION;

/// Tuning of a PostgreSQL store; the defaults suit the daemon.
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// Most connections open at once (the writer thread, API reads, housekeeping).
    pub max_connections: u32,
    /// How long opening a connection may take, and how long a call waits for a free one.
    pub connect_timeout: Duration,
    /// The server cancels any statement running longer (`statement_timeout`).
    pub statement_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            connect_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(30),
        }
    }
}

/// How long `healthy` waits for a connection.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);

/// Prepared statements of one connection, by SQL text.
#[derive(Default)]
pub(crate) struct Stmts(HashMap<String, Statement>);

impl Stmts {
    /// The statement for `sql`, prepared on first use on this connection.
    pub(crate) fn get(&mut self, c: &mut impl GenericClient, sql: &str) -> Result<Statement> {
        if let Some(s) = self.0.get(sql) {
            return Ok(s.clone());
        }
        let s = c.prepare(sql)?;
        self.0.insert(sql.to_owned(), s.clone());
        Ok(s)
    }
}

/// A pooled connection and its statements. The client is only taken out to be closed.
pub(crate) struct Conn {
    client: Option<Client>,
    stmts: Stmts,
}

impl Conn {
    fn parts(&mut self) -> Result<(&mut Client, &mut Stmts)> {
        match &mut self.client {
            Some(client) => Ok((client, &mut self.stmts)),
            None => Err(Error::Connect {
                target: "the pool".into(),
                reason: "the connection was closed".into(),
            }),
        }
    }
}

impl Drop for Conn {
    /// Closing a client blocks on its own runtime, which tokio forbids on its worker threads
    /// (where the last handle of a store may well be dropped): close it on a thread of its own
    /// there.
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = off_runtime(move || {
                drop(client);
                Ok(())
            });
        }
    }
}

struct Manager {
    config: postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
}

impl r2d2::ManageConnection for Manager {
    type Connection = Conn;
    type Error = Error;

    fn connect(&self) -> Result<Conn> {
        Ok(Conn {
            client: Some(self.config.connect(self.tls.clone())?),
            stmts: Stmts::default(),
        })
    }

    fn is_valid(&self, conn: &mut Conn) -> Result<(), Error> {
        conn.parts()?.0.simple_query("")?;
        Ok(())
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.client.as_ref().is_none_or(Client::is_closed)
    }
}

/// A store on a PostgreSQL server, shared by any number of `serve` instances.
pub struct PostgresStore {
    url: PostgresUrl,
    pool: r2d2::Pool<Manager>,
    /// `service\0component\0region` → (series id, first seen ms), committed series only.
    series: Mutex<HashMap<String, (i64, i64)>>,
    last_write_ok: AtomicBool,
}

/// Runs `f` where the blocking client may run: right here, or — when called from inside a tokio
/// runtime, whose worker threads must not block on another runtime — on a scoped thread.
fn off_runtime<T: Send>(f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("aiwatch-store-pg".into())
            .spawn_scoped(scope, f)
            .map_err(Error::Thread)?;
        match handle.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Whether a failed transaction is worth running again (a deadlock or serialization failure
/// between instances writing the same rollup rows).
fn retryable(e: &Error) -> bool {
    match e {
        Error::Postgres(e) => matches!(
            e.code(),
            Some(&SqlState::T_R_DEADLOCK_DETECTED) | Some(&SqlState::T_R_SERIALIZATION_FAILURE)
        ),
        _ => false,
    }
}

impl PostgresStore {
    /// Connects (within `connect_timeout`), migrates the schema and opens the pool.
    pub fn open(url: &PostgresUrl, options: PostgresOptions) -> Result<PostgresStore> {
        off_runtime(|| Self::open_here(url, options))
    }

    fn open_here(url: &PostgresUrl, options: PostgresOptions) -> Result<PostgresStore> {
        let mut config = url.config().clone();
        config.connect_timeout(options.connect_timeout);
        if config.get_application_name().is_none() {
            config.application_name("aiwatch");
        }
        let timeout = format!(
            "-c statement_timeout={}",
            options.statement_timeout.as_millis().max(1)
        );
        let server_options = match config.get_options() {
            Some(given) if !given.trim().is_empty() => format!("{given} {timeout}"),
            _ => timeout,
        };
        config.options(&server_options);
        let tls = tls::connector(url.tls(), &url.target())?;
        let mut client = config.connect(tls.clone()).map_err(|e| Error::Connect {
            target: url.target(),
            reason: tls::describe_connect_error(&e),
        })?;
        migrations::migrate(&mut client, &url.to_string())?;
        drop(client); // here, off the runtime
        let pool = r2d2::Pool::builder()
            .max_size(options.max_connections.max(1))
            .min_idle(Some(1))
            .connection_timeout(options.connect_timeout)
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build_unchecked(Manager { config, tls });
        Ok(PostgresStore {
            url: url.clone(),
            pool,
            series: Mutex::new(HashMap::new()),
            last_write_ok: AtomicBool::new(true),
        })
    }

    /// The database, as it may be shown (no password).
    pub fn url(&self) -> &PostgresUrl {
        &self.url
    }

    fn conn(&self) -> Result<r2d2::PooledConnection<Manager>> {
        self.pool.get().map_err(|e| Error::Connect {
            target: self.url.target(),
            reason: e.to_string(),
        })
    }

    /// Runs `f` in one read-only snapshot.
    fn read<T: Send>(
        &self,
        f: impl FnOnce(&mut Transaction<'_>, &mut Stmts) -> Result<T> + Send,
    ) -> Result<T> {
        off_runtime(|| {
            let mut conn = self.conn()?;
            let (client, stmts) = conn.parts()?;
            let mut tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            let out = f(&mut tx, stmts)?;
            tx.commit()?;
            Ok(out)
        })
    }

    /// Runs `f` in one write transaction (again, up to twice, after a deadlock) and records
    /// whether it worked, for `healthy`.
    fn write<T: Send>(
        &self,
        f: impl Fn(&mut Transaction<'_>, &mut Stmts) -> Result<T> + Send + Sync,
    ) -> Result<T> {
        self.write_autocommit(|client, stmts| {
            let mut tx = client.transaction()?;
            let out = f(&mut tx, stmts)?;
            tx.commit()?;
            Ok(out)
        })
    }

    /// Runs `f` on a pooled connection without a transaction of its own (for a single
    /// statement, atomic by itself), again up to twice after a deadlock, and records whether it
    /// worked.
    fn write_autocommit<T: Send>(
        &self,
        f: impl Fn(&mut Client, &mut Stmts) -> Result<T> + Send + Sync,
    ) -> Result<T> {
        let result = off_runtime(|| {
            let mut conn = self.conn()?;
            let (client, stmts) = conn.parts()?;
            let mut tries = 0;
            loop {
                tries += 1;
                match f(client, stmts) {
                    Err(e) if tries < 3 && retryable(&e) => continue,
                    other => return other,
                }
            }
        });
        self.last_write_ok.store(result.is_ok(), Ordering::Relaxed);
        result
    }

    /// Inserts `batch` (and rolls it up); with a `cursor`, also raises that counter to the given
    /// sequence number in the same transaction.
    fn ingest(&self, batch: &[Observation], cursor: Option<(&str, u64)>) -> Result<()> {
        let plan = ingest::Plan::new(batch);
        // Only this batch's series are looked up, so writers hold the cache's lock briefly.
        let known: HashMap<String, (i64, i64)> = {
            let cache = self.series.lock().unwrap_or_else(|p| p.into_inner());
            plan.series_keys()
                .filter_map(|k| cache.get(k).map(|v| (k.to_owned(), *v)))
                .collect()
        };
        let cursor = cursor.map(|(name, seq)| (name, i64::try_from(seq).unwrap_or(i64::MAX)));
        let fresh = if plan.has_new_series(&known) {
            self.write(|tx, st| ingest::insert(tx, st, &plan, &known, cursor))?
        } else {
            // One statement: atomic on its own, one round trip.
            self.write_autocommit(|client, st| ingest::insert(client, st, &plan, &known, cursor))?
        };
        // Only committed series ids may enter the cache.
        let mut cache = self.series.lock().unwrap_or_else(|p| p.into_inner());
        cache.extend(fresh);
        Ok(())
    }

    /// Repeats a bounded delete, one transaction each, until it deletes less than a chunk.
    fn prune_in_chunks(
        &self,
        f: impl Fn(&mut Transaction<'_>, &mut Stmts) -> Result<usize> + Send + Sync,
    ) -> Result<usize> {
        let mut deleted = 0;
        loop {
            let n = self.write(&f)?;
            deleted += n;
            if (n as i64) < rows::PRUNE_CHUNK {
                return Ok(deleted);
            }
        }
    }
}

impl Store for PostgresStore {
    fn insert_observations(&self, batch: &[Observation]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.ingest(batch, None)
    }

    fn insert_pushed(&self, batch: &[Observation], cursor: &str, seq: u64) -> Result<()> {
        self.ingest(batch, Some((cursor, seq)))
    }

    fn cursor(&self, cursor: &str) -> Result<u64> {
        let value = self.read(|tx, st| rows::meta_number(tx, st, cursor))?;
        Ok(value.and_then(|v| u64::try_from(v).ok()).unwrap_or(0))
    }

    fn observations(
        &self,
        selector: &Selector,
        range: TimeRange,
        limit: usize,
    ) -> Result<Vec<Observation>> {
        check_range(range)?;
        self.read(|tx, st| read::observations(tx, st, selector, range, limit))
    }

    fn rollups(
        &self,
        selector: &Selector,
        range: TimeRange,
        granularity: Granularity,
    ) -> Result<Vec<Rollup>> {
        check_range(range)?;
        self.read(|tx, st| read::rollups(tx, st, selector, range, granularity))
    }

    fn uptime(
        &self,
        selector: &Selector,
        range: TimeRange,
        expected_interval: Option<Duration>,
    ) -> Result<Uptime> {
        check_range(range)?;
        self.read(|tx, st| read::uptime(tx, st, selector, range, expected_interval))
    }

    fn latency_percentiles(
        &self,
        selector: &Selector,
        range: TimeRange,
        quantiles: &[f64],
    ) -> Result<Vec<Option<f64>>> {
        check_range(range)?;
        check_quantiles(quantiles)?;
        self.read(|tx, st| read::latency_percentiles(tx, st, selector, range, quantiles))
    }

    fn last_observation_at(&self, key: &Key) -> Result<Option<DateTime<Utc>>> {
        self.read(|tx, st| read::last_observation_at(tx, st, key))
    }

    fn last_observation_times(&self) -> Result<Vec<(Key, DateTime<Utc>)>> {
        self.read(read::last_observation_times)
    }

    fn recent_latencies(&self, key: &Key, source: Source, limit: usize) -> Result<Vec<f32>> {
        self.read(|tx, st| read::recent_latencies(tx, st, key, source, limit))
    }

    fn upsert_incident(&self, incident: &Incident) -> Result<()> {
        self.write(|tx, st| rows::upsert_incident(tx, st, incident))
    }

    fn incident(&self, id: &str) -> Result<Option<Incident>> {
        self.read(|tx, st| rows::incident(tx, st, id))
    }

    fn open_incidents(&self) -> Result<Vec<Incident>> {
        self.read(rows::open_incidents)
    }

    fn incidents(&self, query: &IncidentQuery) -> Result<Vec<Incident>> {
        self.read(|tx, st| rows::incidents(tx, st, query))
    }

    fn save_states(&self, states: &[SavedState]) -> Result<()> {
        self.write(|tx, st| rows::save_states(tx, st, states))
    }

    fn load_states(&self) -> Result<Vec<SavedState>> {
        self.read(rows::load_states)
    }

    fn prune_raw(&self, before: DateTime<Utc>) -> Result<usize> {
        let before_ms = to_ms(before);
        self.prune_in_chunks(|tx, st| rows::prune_raw_chunk(tx, st, before_ms))
    }

    fn prune_rollups(&self, granularity: Granularity, before: DateTime<Utc>) -> Result<usize> {
        let before_ms = to_ms(before);
        // Recorded first: a read that starts meanwhile already falls back to a coarser tier.
        self.write(|tx, st| {
            rows::raise_meta(
                tx,
                st,
                crate::tiers::pruned_before_key(granularity),
                before_ms,
            )
        })?;
        self.prune_in_chunks(|tx, st| rows::prune_rollup_chunk(tx, st, granularity, before_ms))
    }

    fn prune_deliveries(&self, before: DateTime<Utc>) -> Result<usize> {
        self.write(|tx, st| rows::prune_deliveries(tx, st, before))
    }

    fn record(&self, incidents: &[Incident], notifications: &[Notification]) -> Result<usize> {
        self.write(|tx, st| rows::record(tx, st, incidents, notifications))
    }

    fn due_deliveries(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Delivery>> {
        self.read(|tx, st| rows::due_deliveries(tx, st, now, limit))
    }

    fn next_delivery_at(&self) -> Result<Option<DateTime<Utc>>> {
        self.read(rows::next_delivery_at)
    }

    fn finish_attempt(&self, id: i64, outcome: &DeliveryOutcome, now: DateTime<Utc>) -> Result<()> {
        self.write(|tx, st| rows::finish_attempt(tx, st, id, outcome, now))
    }

    fn deliveries(&self, query: &DeliveryQuery) -> Result<Vec<Delivery>> {
        self.read(|tx, st| rows::deliveries(tx, st, query))
    }

    fn delivery_counts(&self) -> Result<Vec<(DeliveryState, u64)>> {
        self.read(rows::delivery_counts)
    }

    fn insert_report(&self, report: &NewReport) -> Result<bool> {
        self.write(|tx, st| rows::insert_report(tx, st, report))
    }

    fn report_minutes(
        &self,
        service: &ServiceName,
        region: Option<&Region>,
        range: TimeRange,
    ) -> Result<Vec<(DateTime<Utc>, u32)>> {
        self.read(|tx, st| rows::report_minutes(tx, st, service, region, range))
    }

    fn report_minutes_all(&self, range: TimeRange) -> Result<Vec<ReportMinute>> {
        self.read(|tx, st| rows::report_minutes_all(tx, st, range))
    }

    fn report_symptoms(
        &self,
        service: &ServiceName,
        range: TimeRange,
    ) -> Result<Vec<(String, u32)>> {
        self.read(|tx, st| rows::report_symptoms(tx, st, service, range))
    }

    fn insert_posts(&self, posts: &[PublicPost]) -> Result<usize> {
        self.write(|tx, st| rows::insert_posts(tx, st, posts))
    }

    fn posts(
        &self,
        service: &ServiceName,
        range: TimeRange,
        limit: usize,
    ) -> Result<Vec<PublicPost>> {
        self.read(|tx, st| rows::posts(tx, st, service, range, limit))
    }

    fn meta_value(&self, key: &str, default: &str) -> Result<String> {
        self.write(|tx, st| rows::meta_value(tx, st, key, default))
    }

    fn prune_reports(&self, before: DateTime<Utc>) -> Result<usize> {
        self.write(|tx, st| rows::prune_reports(tx, st, before))
    }

    fn claim_checks(
        &self,
        instance: &str,
        keys: &[String],
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>> {
        self.write(|tx, st| rows::claim_checks(tx, st, instance, keys, ttl, now))
    }

    fn release_checks(&self, instance: &str) -> Result<()> {
        self.write(|tx, st| rows::release_checks(tx, st, instance))
    }

    /// Every write committed durably already; nothing to do.
    fn flush(&self) -> Result<()> {
        Ok(())
    }

    /// Asked by `/readyz`: answers within about a second even when the server is gone.
    fn healthy(&self) -> bool {
        self.last_write_ok.load(Ordering::Relaxed)
            && off_runtime(|| {
                let mut conn =
                    self.pool
                        .get_timeout(HEALTH_TIMEOUT)
                        .map_err(|e| Error::Connect {
                            target: self.url.target(),
                            reason: e.to_string(),
                        })?;
                conn.parts()?.0.simple_query("SELECT count(*) FROM meta")?;
                Ok(())
            })
            .is_ok()
    }
}
