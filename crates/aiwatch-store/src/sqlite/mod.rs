//! `SqliteStore`: the embedded SQLite implementation of `Store` — opening, pragmas, connections,
//! and the trait's dispatch to the write and read halves.

mod checkpoint;
mod migrations;
mod outbox;
mod read;
mod reports;
mod write;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use aiwatch_core::assess::{Incident, Key};
use aiwatch_core::observation::{Observation, Source};
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::error::{Error, Result};
use crate::store::ReportMinute;
use crate::store::{
    Delivery, DeliveryOutcome, DeliveryQuery, DeliveryState, Granularity, IncidentQuery, NewReport,
    PublicPost, Rollup, SavedState, Selector, Store, TimeRange, Uptime,
};

pub use migrations::{APPLICATION_ID, SCHEMA_VERSION};

/// How many idle reader connections are kept for reuse.
const READER_POOL: usize = 4;

/// Tuning of an SQLite store; the defaults suit the daemon.
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// How long a statement waits for another process's lock before failing.
    pub busy_timeout: Duration,
    /// `synchronous=FULL` instead of `NORMAL`. NORMAL (the default) in WAL mode never loses a
    /// committed transaction when the *process* dies (kill -9, panic); only an OS crash or power
    /// loss can roll back the last transactions before the next checkpoint. FULL closes that
    /// window at the cost of an fsync per commit.
    pub synchronous_full: bool,
    /// Page cache of the writer connection, in MiB.
    pub writer_cache_mib: u32,
    /// Checkpoints (copying the WAL into the main file, with its fsyncs) run on a background
    /// thread after each batch. Should that thread fall behind, the writer checkpoints itself
    /// once the WAL holds this many 4 KiB pages.
    pub wal_autocheckpoint_pages: u32,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            busy_timeout: Duration::from_secs(5),
            synchronous_full: false,
            writer_cache_mib: 32,
            wal_autocheckpoint_pages: 16_384,
        }
    }
}

/// The writer connection and what it caches: series ids by (service, component, region).
pub(crate) struct Writer {
    pub(crate) conn: Connection,
    /// `service\0component\0region` → series id, for committed series only.
    pub(crate) series: HashMap<String, i64>,
}

/// The embedded store: one writer connection (behind a mutex) and a small pool of reader
/// connections, which WAL lets run alongside the writer.
pub struct SqliteStore {
    /// `None` for an in-memory database, which has only the writer connection.
    path: Option<PathBuf>,
    options: SqliteOptions,
    writer: Mutex<Writer>,
    readers: Mutex<Vec<Connection>>,
    last_write_ok: AtomicBool,
    /// Declared last, so dropped last: its thread stops and its connection, closing after the
    /// others, checkpoints and removes the WAL.
    checkpointer: Option<checkpoint::Checkpointer>,
}

/// An SQLite "malformed" or "not a database" error met while opening, as the clear error it is.
fn damaged(error: Error, path: &Path) -> Error {
    match error {
        Error::Sqlite(rusqlite::Error::SqliteFailure(e, message))
            if matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase
            ) =>
        {
            Error::Corrupt {
                path: path.to_owned(),
                findings: message.unwrap_or_else(|| e.to_string()),
            }
        }
        other => other,
    }
}

/// Refuses a damaged database at open: SQLite would open it and then fail writes one by one.
fn quick_check(conn: &Connection, path: &Path) -> Result<()> {
    let corrupt = |findings: String| Error::Corrupt {
        path: path.to_owned(),
        findings,
    };
    let findings: Vec<String> = match conn.prepare("PRAGMA quick_check").and_then(|mut stmt| {
        stmt.query_map([], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()
    }) {
        Ok(rows) => rows,
        Err(rusqlite::Error::SqliteFailure(e, message))
            if matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase
            ) =>
        {
            return Err(corrupt(message.unwrap_or_else(|| e.to_string())));
        }
        Err(e) => return Err(e.into()),
    };
    if findings.len() == 1 && findings[0] == "ok" {
        return Ok(());
    }
    let mut summary: Vec<&str> = findings.iter().map(String::as_str).take(3).collect();
    let more = findings.len().saturating_sub(summary.len());
    let tail = format!("and {more} more");
    if more > 0 {
        summary.push(&tail);
    }
    Err(corrupt(summary.join("; ")))
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database at `path` with default options.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        Self::open_with(path, SqliteOptions::default())
    }

    /// Opens (creating if needed) and migrates the database at `path`.
    pub fn open_with(path: &Path, options: SqliteOptions) -> Result<SqliteStore> {
        Self::open_checked(path, options).map_err(|e| damaged(e, path))
    }

    fn open_checked(path: &Path, options: SqliteOptions) -> Result<SqliteStore> {
        let mut conn = Connection::open(path)?;
        configure(&conn, &options, true)?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::NoWal {
                path: path.to_owned(),
                mode,
            });
        }
        quick_check(&conn, path)?;
        migrations::migrate(&mut conn, path)?;
        let checkpointer = checkpoint::Checkpointer::start(path, options.busy_timeout)?;
        let mut store = Self::from_writer(Some(path.to_owned()), options, conn);
        store.checkpointer = Some(checkpointer);
        Ok(store)
    }

    /// A fresh private in-memory database, for tests.
    pub fn open_in_memory() -> Result<SqliteStore> {
        let options = SqliteOptions::default();
        let mut conn = Connection::open_in_memory()?;
        configure(&conn, &options, true)?;
        migrations::migrate(&mut conn, Path::new(":memory:"))?;
        Ok(Self::from_writer(None, options, conn))
    }

    fn from_writer(path: Option<PathBuf>, options: SqliteOptions, conn: Connection) -> Self {
        // Room for every statement the writer uses, the 3 × 34 rollup UPSERT variants included.
        conn.set_prepared_statement_cache_capacity(160);
        Self {
            path,
            options,
            writer: Mutex::new(Writer {
                conn,
                series: HashMap::new(),
            }),
            readers: Mutex::new(Vec::new()),
            last_write_ok: AtomicBool::new(true),
            checkpointer: None,
        }
    }

    /// The database file, `None` when in memory.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Runs `PRAGMA integrity_check` and returns its findings (`["ok"]` when sound).
    pub fn integrity_check(&self) -> Result<Vec<String>> {
        self.with_reader(|conn| {
            let mut stmt = conn.prepare("PRAGMA integrity_check")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn writer(&self) -> MutexGuard<'_, Writer> {
        // A panic mid-write leaves no half transaction (dropping it rolls back), so the
        // connection is still sound.
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs a write and records whether it worked, for `healthy`.
    fn write<T>(&self, f: impl FnOnce(&mut Writer) -> Result<T>) -> Result<T> {
        let mut writer = self.writer();
        let result = f(&mut writer);
        self.last_write_ok.store(result.is_ok(), Ordering::Relaxed);
        result
    }

    /// Runs `f` in one read transaction, so that a read made of several statements sees one
    /// snapshot (whole batches only), on a pooled reader connection — or on the writer's for an
    /// in-memory database.
    fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let Some(path) = &self.path else {
            return in_snapshot(&self.writer().conn, f);
        };
        let pooled = self
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => {
                let conn = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_WRITE
                        | OpenFlags::SQLITE_OPEN_URI
                        | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                configure(&conn, &self.options, false)?;
                conn
            }
        };
        let result = in_snapshot(&conn, f);
        let mut pool = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < READER_POOL {
            pool.push(conn);
        }
        result
    }
}

fn in_snapshot<T>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    let tx = conn.unchecked_transaction()?;
    let result = f(&tx)?;
    tx.commit()?;
    Ok(result)
}

/// Per-connection settings (the WAL mode itself is stored in the file).
fn configure(conn: &Connection, options: &SqliteOptions, writer: bool) -> Result<()> {
    conn.busy_timeout(options.busy_timeout)?;
    let sync = if options.synchronous_full {
        "FULL"
    } else {
        "NORMAL"
    };
    conn.pragma_update(None, "synchronous", sync)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    if writer {
        conn.pragma_update(
            None,
            "cache_size",
            -(i64::from(options.writer_cache_mib) * 1024),
        )?;
        conn.pragma_update(None, "wal_autocheckpoint", options.wal_autocheckpoint_pages)?;
        // Keep the WAL file from staying large after a burst.
        conn.pragma_update(
            None,
            "journal_size_limit",
            i64::from(options.wal_autocheckpoint_pages) * 4096 * 2,
        )?;
    } else {
        conn.pragma_update(None, "query_only", true)?;
    }
    Ok(())
}

pub(crate) use crate::tiers::to_ms;

pub(crate) use crate::codec::{check_range, from_ms};

impl Store for SqliteStore {
    fn insert_observations(&self, batch: &[Observation]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.write(|w| w.insert_observations(batch, None))?;
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.kick();
        }
        Ok(())
    }

    fn insert_pushed(&self, batch: &[Observation], cursor: &str, seq: u64) -> Result<()> {
        self.write(|w| w.insert_observations(batch, Some((cursor, seq))))?;
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.kick();
        }
        Ok(())
    }

    fn cursor(&self, cursor: &str) -> Result<u64> {
        self.with_reader(|conn| {
            let value: Option<i64> = conn
                .query_row(
                    "SELECT CAST(value AS INTEGER) FROM meta WHERE key = ?1",
                    [cursor],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(value.and_then(|v| u64::try_from(v).ok()).unwrap_or(0))
        })
    }

    fn observations(
        &self,
        selector: &Selector,
        range: TimeRange,
        limit: usize,
    ) -> Result<Vec<Observation>> {
        check_range(range)?;
        self.with_reader(|c| read::observations(c, selector, range, limit))
    }

    fn rollups(
        &self,
        selector: &Selector,
        range: TimeRange,
        granularity: Granularity,
    ) -> Result<Vec<Rollup>> {
        check_range(range)?;
        self.with_reader(|c| read::rollups(c, selector, range, granularity))
    }

    fn uptime(
        &self,
        selector: &Selector,
        range: TimeRange,
        expected_interval: Option<Duration>,
    ) -> Result<Uptime> {
        check_range(range)?;
        self.with_reader(|c| read::uptime(c, selector, range, expected_interval))
    }

    fn latency_percentiles(
        &self,
        selector: &Selector,
        range: TimeRange,
        quantiles: &[f64],
    ) -> Result<Vec<Option<f64>>> {
        check_range(range)?;
        if let Some(q) = quantiles.iter().find(|q| !(0.0..=1.0).contains(*q)) {
            return Err(Error::InvalidQuery(format!(
                "quantile {q} is outside 0..=1"
            )));
        }
        self.with_reader(|c| read::latency_percentiles(c, selector, range, quantiles))
    }

    fn last_observation_at(&self, key: &Key) -> Result<Option<DateTime<Utc>>> {
        self.with_reader(|c| read::last_observation_at(c, key))
    }

    fn last_observation_times(&self) -> Result<Vec<(Key, DateTime<Utc>)>> {
        self.with_reader(read::last_observation_times)
    }

    fn recent_latencies(&self, key: &Key, source: Source, limit: usize) -> Result<Vec<f32>> {
        self.with_reader(|c| read::recent_latencies(c, key, source, limit))
    }

    fn upsert_incident(&self, incident: &Incident) -> Result<()> {
        self.write(|w| w.upsert_incident(incident))
    }

    fn incident(&self, id: &str) -> Result<Option<Incident>> {
        self.with_reader(|c| read::incident(c, id))
    }

    fn open_incidents(&self) -> Result<Vec<Incident>> {
        self.with_reader(read::open_incidents)
    }

    fn incidents(&self, query: &IncidentQuery) -> Result<Vec<Incident>> {
        self.with_reader(|c| read::incidents(c, query))
    }

    fn save_states(&self, states: &[SavedState]) -> Result<()> {
        self.write(|w| w.save_states(states))
    }

    fn record(
        &self,
        incidents: &[Incident],
        notifications: &[aiwatch_core::alert_rules::Notification],
    ) -> Result<usize> {
        self.write(|w| w.record(incidents, notifications))
    }

    fn due_deliveries(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Delivery>> {
        self.with_reader(|c| outbox::due(c, now, limit))
    }

    fn next_delivery_at(&self) -> Result<Option<DateTime<Utc>>> {
        self.with_reader(outbox::next_at)
    }

    fn finish_attempt(&self, id: i64, outcome: &DeliveryOutcome, now: DateTime<Utc>) -> Result<()> {
        self.write(|w| w.finish_attempt(id, outcome, now))
    }

    fn deliveries(&self, query: &DeliveryQuery) -> Result<Vec<Delivery>> {
        self.with_reader(|c| outbox::list(c, query))
    }

    fn delivery_counts(&self) -> Result<Vec<(DeliveryState, u64)>> {
        self.with_reader(outbox::counts)
    }

    fn prune_deliveries(&self, before: DateTime<Utc>) -> Result<usize> {
        self.write(|w| w.prune_deliveries(before))
    }

    fn insert_report(&self, report: &NewReport) -> Result<bool> {
        self.write(|w| w.insert_report(report))
    }

    fn report_minutes(
        &self,
        service: &aiwatch_core::ServiceName,
        region: Option<&aiwatch_core::observation::Region>,
        range: TimeRange,
    ) -> Result<Vec<(DateTime<Utc>, u32)>> {
        self.with_reader(|c| reports::minutes(c, service, region, range))
    }

    fn report_minutes_all(&self, range: TimeRange) -> Result<Vec<ReportMinute>> {
        self.with_reader(|c| reports::minutes_all(c, range))
    }

    fn report_symptoms(
        &self,
        service: &aiwatch_core::ServiceName,
        range: TimeRange,
    ) -> Result<Vec<(String, u32)>> {
        self.with_reader(|c| reports::symptoms(c, service, range))
    }

    fn insert_posts(&self, posts: &[PublicPost]) -> Result<usize> {
        self.write(|w| w.insert_posts(posts))
    }

    fn posts(
        &self,
        service: &aiwatch_core::ServiceName,
        range: TimeRange,
        limit: usize,
    ) -> Result<Vec<PublicPost>> {
        self.with_reader(|c| reports::posts(c, service, range, limit))
    }

    fn meta_value(&self, key: &str, default: &str) -> Result<String> {
        self.write(|w| w.meta_value(key, default))
    }

    fn prune_reports(&self, before: DateTime<Utc>) -> Result<usize> {
        self.write(|w| w.prune_reports(before))
    }

    fn claim_checks(
        &self,
        instance: &str,
        keys: &[String],
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>> {
        self.write(|w| w.claim_checks(instance, keys, ttl, now))
    }

    fn release_checks(&self, instance: &str) -> Result<()> {
        self.write(|w| w.release_checks(instance))
    }

    fn load_states(&self) -> Result<Vec<SavedState>> {
        self.with_reader(read::load_states)
    }

    fn prune_raw(&self, before: DateTime<Utc>) -> Result<usize> {
        let before_ms = to_ms(before);
        self.prune_in_chunks(|w| w.prune_raw_chunk(before_ms))
    }

    fn prune_rollups(&self, granularity: Granularity, before: DateTime<Utc>) -> Result<usize> {
        let before_ms = to_ms(before);
        // Recorded first: a read that starts meanwhile already falls back to a coarser tier.
        self.write(|w| w.note_prune(granularity, before_ms))?;
        match granularity {
            Granularity::Minute | Granularity::Hour => {
                self.prune_in_chunks(|w| w.prune_time_first_chunk(granularity, before_ms))
            }
            Granularity::Day => {
                const SERIES_PER_TRANSACTION: usize = 256;
                let ids = self.with_reader(read::all_series_ids)?;
                let mut deleted = 0;
                for chunk in ids.chunks(SERIES_PER_TRANSACTION) {
                    deleted += self.write(|w| w.prune_day(chunk, before_ms))?;
                }
                Ok(deleted)
            }
        }
    }

    fn flush(&self) -> Result<()> {
        self.write(|w| {
            if self.path.is_some() {
                // Fails softly (busy = 1) while the background checkpointer is mid-run, which
                // is brief: try again for up to the busy timeout.
                let deadline = std::time::Instant::now() + self.options.busy_timeout;
                loop {
                    let busy: i64 =
                        w.conn
                            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
                    if busy == 0 {
                        break;
                    }
                    if std::time::Instant::now() >= deadline {
                        return Err(Error::Busy("checkpointing the WAL"));
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            w.conn.execute_batch("PRAGMA optimize")?;
            Ok(())
        })
    }

    fn healthy(&self) -> bool {
        self.last_write_ok.load(Ordering::Relaxed)
            && self
                .with_reader(|c| {
                    Ok(c.query_row("SELECT count(*) FROM meta", [], |r| r.get::<_, i64>(0))?)
                })
                .is_ok()
    }
}

impl SqliteStore {
    /// Repeats a bounded delete, one transaction each, until it deletes less than a full chunk;
    /// the writer is released between chunks so inserts go on meanwhile.
    fn prune_in_chunks(
        &self,
        mut chunk: impl FnMut(&mut Writer) -> Result<usize>,
    ) -> Result<usize> {
        let mut deleted = 0;
        loop {
            let n = self.write(&mut chunk)?;
            deleted += n;
            if (n as i64) < write::PRUNE_CHUNK {
                return Ok(deleted);
            }
        }
    }
}
