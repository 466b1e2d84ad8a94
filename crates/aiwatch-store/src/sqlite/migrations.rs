//! The schema's history: an ordered list of SQL migrations, applied one transaction each and
//! tracked in `PRAGMA user_version`.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use crate::error::{Error, Result};

/// `PRAGMA application_id` of an aiwatch database ("aiwt").
pub const APPLICATION_ID: i64 = 0x6169_7774;

/// Migration `i` takes the schema from version `i` to `i + 1`. Append only: never edit a
/// migration that has shipped.
pub const MIGRATIONS: &[&str] = &[V1, V2, V3, V4];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database at `path` to [`SCHEMA_VERSION`]. Refuses a database from a newer aiwatch
/// and an SQLite file that belongs to something else.
pub fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let app_id: i64 = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if app_id != 0 && app_id != APPLICATION_ID {
        return Err(Error::Foreign {
            path: path.to_owned(),
            reason: format!("application_id is {app_id:#x}"),
        });
    }
    if app_id == 0 {
        let tables: i64 = conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'",
            [],
            |r| r.get(0),
        )?;
        if version != 0 || tables != 0 {
            return Err(Error::Foreign {
                path: path.to_owned(),
                reason: format!("it already holds {tables} tables at user_version {version}"),
            });
        }
    }
    if version > SCHEMA_VERSION {
        return Err(Error::TooNew {
            path: path.to_owned(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let target = i as i64 + 1;
        let step = |conn: &mut Connection| -> rusqlite::Result<()> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
            // Another process may have migrated while we waited for the lock.
            let now: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
            if now >= target {
                return tx.commit();
            }
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "application_id", APPLICATION_ID)?;
            tx.pragma_update(None, "user_version", target)?;
            tx.commit()
        };
        step(conn).map_err(|source| Error::Migration {
            version: target,
            source,
        })?;
    }
    Ok(())
}

const V1: &str = r#"
-- 1: observations, rollups, incidents, assessor state.
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- One row per (service, component, region) ever observed; other tables refer to its id.
CREATE TABLE series (
    id INTEGER PRIMARY KEY,
    service TEXT NOT NULL,
    component TEXT NOT NULL,
    region TEXT NOT NULL,
    first_seen_ms INTEGER NOT NULL,
    UNIQUE (service, component, region)
);

-- Raw observations. Times are Unix milliseconds (UTC), phase timings whole microseconds.
CREATE TABLE observation (
    id INTEGER PRIMARY KEY,
    series_id INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    source TEXT NOT NULL,
    health TEXT NOT NULL,
    cause TEXT NOT NULL,
    dns_us INTEGER,
    connect_us INTEGER,
    tls_us INTEGER,
    first_byte_us INTEGER,
    total_us INTEGER,
    complete INTEGER,
    detail TEXT NOT NULL
);
-- Indexed by minute first: the entries a batch adds land together at the index's right edge
-- instead of at one place per series, which keeps the pages a commit writes few; reads seek
-- (minute, series) pairs one minute at a time.
CREATE INDEX observation_by_minute ON observation (at_ms / 60000, series_id, at_ms);

-- Rollups: counts by health, latency of up/degraded observations (sum/min/max in microseconds)
-- and a 32-bucket log-scale latency histogram h00..h31 (see histogram.rs for the edges).
-- Minute and hour rollups are keyed time first (a batch's rows are neighbours), day rollups
-- series first (a 90-day read of one series is one short range); day rows also keep the
-- series' latest observation time, which outlives raw retention.
CREATE TABLE rollup_minute (
    series_id INTEGER NOT NULL,
    start_ms INTEGER NOT NULL,
    source TEXT NOT NULL,
    up INTEGER NOT NULL DEFAULT 0,
    degraded INTEGER NOT NULL DEFAULT 0,
    down INTEGER NOT NULL DEFAULT 0,
    unknown INTEGER NOT NULL DEFAULT 0,
    lat_count INTEGER NOT NULL DEFAULT 0,
    lat_sum_us INTEGER NOT NULL DEFAULT 0,
    lat_min_us INTEGER,
    lat_max_us INTEGER,
    h00 INTEGER NOT NULL DEFAULT 0, h01 INTEGER NOT NULL DEFAULT 0, h02 INTEGER NOT NULL DEFAULT 0, h03 INTEGER NOT NULL DEFAULT 0,
    h04 INTEGER NOT NULL DEFAULT 0, h05 INTEGER NOT NULL DEFAULT 0, h06 INTEGER NOT NULL DEFAULT 0, h07 INTEGER NOT NULL DEFAULT 0,
    h08 INTEGER NOT NULL DEFAULT 0, h09 INTEGER NOT NULL DEFAULT 0, h10 INTEGER NOT NULL DEFAULT 0, h11 INTEGER NOT NULL DEFAULT 0,
    h12 INTEGER NOT NULL DEFAULT 0, h13 INTEGER NOT NULL DEFAULT 0, h14 INTEGER NOT NULL DEFAULT 0, h15 INTEGER NOT NULL DEFAULT 0,
    h16 INTEGER NOT NULL DEFAULT 0, h17 INTEGER NOT NULL DEFAULT 0, h18 INTEGER NOT NULL DEFAULT 0, h19 INTEGER NOT NULL DEFAULT 0,
    h20 INTEGER NOT NULL DEFAULT 0, h21 INTEGER NOT NULL DEFAULT 0, h22 INTEGER NOT NULL DEFAULT 0, h23 INTEGER NOT NULL DEFAULT 0,
    h24 INTEGER NOT NULL DEFAULT 0, h25 INTEGER NOT NULL DEFAULT 0, h26 INTEGER NOT NULL DEFAULT 0, h27 INTEGER NOT NULL DEFAULT 0,
    h28 INTEGER NOT NULL DEFAULT 0, h29 INTEGER NOT NULL DEFAULT 0, h30 INTEGER NOT NULL DEFAULT 0, h31 INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (start_ms, series_id, source)
) WITHOUT ROWID;

CREATE TABLE rollup_hour (
    series_id INTEGER NOT NULL,
    start_ms INTEGER NOT NULL,
    source TEXT NOT NULL,
    up INTEGER NOT NULL DEFAULT 0,
    degraded INTEGER NOT NULL DEFAULT 0,
    down INTEGER NOT NULL DEFAULT 0,
    unknown INTEGER NOT NULL DEFAULT 0,
    lat_count INTEGER NOT NULL DEFAULT 0,
    lat_sum_us INTEGER NOT NULL DEFAULT 0,
    lat_min_us INTEGER,
    lat_max_us INTEGER,
    h00 INTEGER NOT NULL DEFAULT 0, h01 INTEGER NOT NULL DEFAULT 0, h02 INTEGER NOT NULL DEFAULT 0, h03 INTEGER NOT NULL DEFAULT 0,
    h04 INTEGER NOT NULL DEFAULT 0, h05 INTEGER NOT NULL DEFAULT 0, h06 INTEGER NOT NULL DEFAULT 0, h07 INTEGER NOT NULL DEFAULT 0,
    h08 INTEGER NOT NULL DEFAULT 0, h09 INTEGER NOT NULL DEFAULT 0, h10 INTEGER NOT NULL DEFAULT 0, h11 INTEGER NOT NULL DEFAULT 0,
    h12 INTEGER NOT NULL DEFAULT 0, h13 INTEGER NOT NULL DEFAULT 0, h14 INTEGER NOT NULL DEFAULT 0, h15 INTEGER NOT NULL DEFAULT 0,
    h16 INTEGER NOT NULL DEFAULT 0, h17 INTEGER NOT NULL DEFAULT 0, h18 INTEGER NOT NULL DEFAULT 0, h19 INTEGER NOT NULL DEFAULT 0,
    h20 INTEGER NOT NULL DEFAULT 0, h21 INTEGER NOT NULL DEFAULT 0, h22 INTEGER NOT NULL DEFAULT 0, h23 INTEGER NOT NULL DEFAULT 0,
    h24 INTEGER NOT NULL DEFAULT 0, h25 INTEGER NOT NULL DEFAULT 0, h26 INTEGER NOT NULL DEFAULT 0, h27 INTEGER NOT NULL DEFAULT 0,
    h28 INTEGER NOT NULL DEFAULT 0, h29 INTEGER NOT NULL DEFAULT 0, h30 INTEGER NOT NULL DEFAULT 0, h31 INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (start_ms, series_id, source)
) WITHOUT ROWID;

CREATE TABLE rollup_day (
    series_id INTEGER NOT NULL,
    start_ms INTEGER NOT NULL,
    source TEXT NOT NULL,
    up INTEGER NOT NULL DEFAULT 0,
    degraded INTEGER NOT NULL DEFAULT 0,
    down INTEGER NOT NULL DEFAULT 0,
    unknown INTEGER NOT NULL DEFAULT 0,
    lat_count INTEGER NOT NULL DEFAULT 0,
    lat_sum_us INTEGER NOT NULL DEFAULT 0,
    lat_min_us INTEGER,
    lat_max_us INTEGER,
    last_at_ms INTEGER,
    h00 INTEGER NOT NULL DEFAULT 0, h01 INTEGER NOT NULL DEFAULT 0, h02 INTEGER NOT NULL DEFAULT 0, h03 INTEGER NOT NULL DEFAULT 0,
    h04 INTEGER NOT NULL DEFAULT 0, h05 INTEGER NOT NULL DEFAULT 0, h06 INTEGER NOT NULL DEFAULT 0, h07 INTEGER NOT NULL DEFAULT 0,
    h08 INTEGER NOT NULL DEFAULT 0, h09 INTEGER NOT NULL DEFAULT 0, h10 INTEGER NOT NULL DEFAULT 0, h11 INTEGER NOT NULL DEFAULT 0,
    h12 INTEGER NOT NULL DEFAULT 0, h13 INTEGER NOT NULL DEFAULT 0, h14 INTEGER NOT NULL DEFAULT 0, h15 INTEGER NOT NULL DEFAULT 0,
    h16 INTEGER NOT NULL DEFAULT 0, h17 INTEGER NOT NULL DEFAULT 0, h18 INTEGER NOT NULL DEFAULT 0, h19 INTEGER NOT NULL DEFAULT 0,
    h20 INTEGER NOT NULL DEFAULT 0, h21 INTEGER NOT NULL DEFAULT 0, h22 INTEGER NOT NULL DEFAULT 0, h23 INTEGER NOT NULL DEFAULT 0,
    h24 INTEGER NOT NULL DEFAULT 0, h25 INTEGER NOT NULL DEFAULT 0, h26 INTEGER NOT NULL DEFAULT 0, h27 INTEGER NOT NULL DEFAULT 0,
    h28 INTEGER NOT NULL DEFAULT 0, h29 INTEGER NOT NULL DEFAULT 0, h30 INTEGER NOT NULL DEFAULT 0, h31 INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (series_id, start_ms, source)
) WITHOUT ROWID;

-- Incidents: the queried fields as columns, the whole incident as JSON in `body`.
CREATE TABLE incident (
    id TEXT PRIMARY KEY,
    service TEXT NOT NULL,
    component TEXT NOT NULL,
    region TEXT NOT NULL,
    opened_at_ms INTEGER NOT NULL,
    resolved_at_ms INTEGER,
    phase TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX incident_by_service_opened ON incident (service, opened_at_ms);
CREATE INDEX incident_by_opened ON incident (opened_at_ms);
CREATE INDEX incident_open ON incident (opened_at_ms) WHERE resolved_at_ms IS NULL;

-- The assessor's state per key, for resuming after a restart.
CREATE TABLE state (
    service TEXT NOT NULL,
    component TEXT NOT NULL,
    region TEXT NOT NULL,
    state TEXT NOT NULL,
    since_ms INTEGER,
    PRIMARY KEY (service, component, region)
) WITHOUT ROWID;
"#;

/// The alert outbox: one row per (alert, idempotency key), written in the transaction of the
/// incident change that caused it.
const V2: &str = r#"
CREATE TABLE delivery (
    id INTEGER PRIMARY KEY,
    alert TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    event TEXT NOT NULL,
    incident_id TEXT NOT NULL,
    message TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at_ms INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    last_status INTEGER,
    last_error TEXT,
    UNIQUE (alert, idempotency_key)
);
CREATE INDEX delivery_due ON delivery (next_at_ms) WHERE state = 'pending';
CREATE INDEX delivery_by_created ON delivery (created_at_ms);
"#;

/// Problem reports (one counted row per reporter, service and window; the reporter only as a
/// salted hash, never an address) and the public posts matched from feeds.
const V3: &str = r#"
CREATE TABLE report (
    id INTEGER PRIMARY KEY,
    service TEXT NOT NULL,
    region TEXT NOT NULL,
    symptom TEXT NOT NULL,
    reporter TEXT NOT NULL,
    window_start_ms INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    comment TEXT,
    UNIQUE (service, reporter, window_start_ms)
);
CREATE INDEX report_by_service_at ON report (service, at_ms);
CREATE INDEX report_by_at ON report (at_ms);

CREATE TABLE public_post (
    service TEXT NOT NULL,
    id TEXT NOT NULL,
    source TEXT NOT NULL,
    title TEXT NOT NULL,
    url TEXT,
    at_ms INTEGER NOT NULL,
    weight REAL NOT NULL,
    PRIMARY KEY (service, id)
) WITHOUT ROWID;
CREATE INDEX public_post_by_service_at ON public_post (service, at_ms);
"#;

/// Leases: which `serve` instance runs which check (one process on SQLite, so one holder; the
/// same table as PostgreSQL's keeps the trait's contract one).
const V4: &str = r#"
CREATE TABLE lease (
    key TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE lease_instance (
    instance TEXT PRIMARY KEY,
    expires_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
"#;
