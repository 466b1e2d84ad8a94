//! The PostgreSQL schema's history: ordered SQL migrations, applied in one transaction under an
//! advisory lock (so several `serve` instances starting at once migrate once) and tracked in the
//! `schema_version` table.

use postgres::Client;

use crate::error::{Error, Result};

/// Migration `i` takes the schema from version `i` to `i + 1`. Append only.
pub const MIGRATIONS: &[&str] = &[V1];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The advisory lock key migrations hold ("aiwt").
const MIGRATION_LOCK: i64 = 0x6169_7774;

/// Brings the database to [`SCHEMA_VERSION`]; refuses one from a newer aiwatch.
pub fn migrate(client: &mut Client, target: &str) -> Result<()> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
            version BIGINT PRIMARY KEY,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )",
    )?;
    let found: i64 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])?
        .get(0);
    if found > SCHEMA_VERSION {
        return Err(Error::PostgresTooNew {
            target: target.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = i as i64 + 1;
        let step = tx
            .batch_execute(sql)
            .and_then(|()| {
                tx.execute(
                    "INSERT INTO schema_version (version) VALUES ($1)",
                    &[&version],
                )
            })
            .map_err(|source| Error::PostgresMigration { version, source });
        step?;
    }
    tx.commit()?;
    Ok(())
}

/// The histogram columns of a rollup table, `h00`..`h31`.
macro_rules! histogram_columns {
    () => {
        "h00 BIGINT NOT NULL DEFAULT 0, h01 BIGINT NOT NULL DEFAULT 0, h02 BIGINT NOT NULL DEFAULT 0, h03 BIGINT NOT NULL DEFAULT 0,
         h04 BIGINT NOT NULL DEFAULT 0, h05 BIGINT NOT NULL DEFAULT 0, h06 BIGINT NOT NULL DEFAULT 0, h07 BIGINT NOT NULL DEFAULT 0,
         h08 BIGINT NOT NULL DEFAULT 0, h09 BIGINT NOT NULL DEFAULT 0, h10 BIGINT NOT NULL DEFAULT 0, h11 BIGINT NOT NULL DEFAULT 0,
         h12 BIGINT NOT NULL DEFAULT 0, h13 BIGINT NOT NULL DEFAULT 0, h14 BIGINT NOT NULL DEFAULT 0, h15 BIGINT NOT NULL DEFAULT 0,
         h16 BIGINT NOT NULL DEFAULT 0, h17 BIGINT NOT NULL DEFAULT 0, h18 BIGINT NOT NULL DEFAULT 0, h19 BIGINT NOT NULL DEFAULT 0,
         h20 BIGINT NOT NULL DEFAULT 0, h21 BIGINT NOT NULL DEFAULT 0, h22 BIGINT NOT NULL DEFAULT 0, h23 BIGINT NOT NULL DEFAULT 0,
         h24 BIGINT NOT NULL DEFAULT 0, h25 BIGINT NOT NULL DEFAULT 0, h26 BIGINT NOT NULL DEFAULT 0, h27 BIGINT NOT NULL DEFAULT 0,
         h28 BIGINT NOT NULL DEFAULT 0, h29 BIGINT NOT NULL DEFAULT 0, h30 BIGINT NOT NULL DEFAULT 0, h31 BIGINT NOT NULL DEFAULT 0"
    };
}

/// The columns every rollup table has before its histogram.
macro_rules! rollup_columns {
    () => {
        "series_id BIGINT NOT NULL,
         start_ms BIGINT NOT NULL,
         source TEXT NOT NULL,
         up BIGINT NOT NULL DEFAULT 0,
         degraded BIGINT NOT NULL DEFAULT 0,
         down BIGINT NOT NULL DEFAULT 0,
         unknown BIGINT NOT NULL DEFAULT 0,
         lat_count BIGINT NOT NULL DEFAULT 0,
         lat_sum_us BIGINT NOT NULL DEFAULT 0,
         lat_min_us BIGINT,
         lat_max_us BIGINT,"
    };
}

/// Version 1: the whole schema of SQLite's versions 1–3 plus leases, in PostgreSQL's words.
/// Times are Unix milliseconds (UTC), timings whole microseconds, as in SQLite. Rollups are
/// keyed series first and updated in place (fillfactor leaves room for HOT updates); raw
/// observations carry a BRIN index on time for pruning, which costs inserts next to nothing.
const V1: &str = concat!(
    "
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE series (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    service TEXT NOT NULL,
    component TEXT NOT NULL,
    region TEXT NOT NULL,
    first_seen_ms BIGINT NOT NULL,
    UNIQUE (service, component, region)
);

CREATE TABLE observation (
    id BIGINT GENERATED ALWAYS AS IDENTITY (CACHE 1000),
    series_id BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    source TEXT NOT NULL,
    health TEXT NOT NULL,
    cause TEXT NOT NULL,
    dns_us BIGINT,
    connect_us BIGINT,
    tls_us BIGINT,
    first_byte_us BIGINT,
    total_us BIGINT,
    complete BOOLEAN,
    detail TEXT NOT NULL
);
CREATE INDEX observation_by_series_at ON observation (series_id, at_ms);
CREATE INDEX observation_at_brin ON observation USING brin (at_ms);

CREATE TABLE rollup_minute (",
    rollup_columns!(),
    histogram_columns!(),
    ",
    PRIMARY KEY (series_id, start_ms, source)
) WITH (fillfactor = 80);
CREATE INDEX rollup_minute_by_start ON rollup_minute (start_ms);

CREATE TABLE rollup_hour (",
    rollup_columns!(),
    histogram_columns!(),
    ",
    PRIMARY KEY (series_id, start_ms, source)
) WITH (fillfactor = 80);
CREATE INDEX rollup_hour_by_start ON rollup_hour (start_ms);

CREATE TABLE rollup_day (",
    rollup_columns!(),
    "last_at_ms BIGINT,",
    histogram_columns!(),
    ",
    PRIMARY KEY (series_id, start_ms, source)
) WITH (fillfactor = 80);
CREATE INDEX rollup_day_by_start ON rollup_day (start_ms);

CREATE TABLE incident (
    id TEXT PRIMARY KEY,
    service TEXT NOT NULL,
    component TEXT NOT NULL,
    region TEXT NOT NULL,
    opened_at_ms BIGINT NOT NULL,
    resolved_at_ms BIGINT,
    phase TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX incident_by_service_opened ON incident (service, opened_at_ms);
CREATE INDEX incident_by_opened ON incident (opened_at_ms);
CREATE INDEX incident_open ON incident (opened_at_ms) WHERE resolved_at_ms IS NULL;

CREATE TABLE state (
    service TEXT NOT NULL,
    component TEXT NOT NULL,
    region TEXT NOT NULL,
    state TEXT NOT NULL,
    since_ms BIGINT,
    PRIMARY KEY (service, component, region)
);

CREATE TABLE delivery (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    event TEXT NOT NULL,
    incident_id TEXT NOT NULL,
    message TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_at_ms BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    last_status INTEGER,
    last_error TEXT,
    UNIQUE (alert, idempotency_key)
);
CREATE INDEX delivery_due ON delivery (next_at_ms) WHERE state = 'pending';
CREATE INDEX delivery_by_created ON delivery (created_at_ms);

CREATE TABLE report (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    service TEXT NOT NULL,
    region TEXT NOT NULL,
    symptom TEXT NOT NULL,
    reporter TEXT NOT NULL,
    window_start_ms BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
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
    at_ms BIGINT NOT NULL,
    weight DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (service, id)
);
CREATE INDEX public_post_by_service_at ON public_post (service, at_ms);

-- Which instance runs which check, until when; and which instances are alive.
CREATE TABLE lease (
    key TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
CREATE TABLE lease_instance (
    instance TEXT PRIMARY KEY,
    expires_at_ms BIGINT NOT NULL
);
"
);
