//! The write half of `SqliteStore`: batched observation inserts folded into the minute and day
//! rollups, incidents, assessor states and pruning.

use std::collections::HashMap;
use std::sync::LazyLock;

use aiwatch_core::assess::Incident;
use aiwatch_core::observation::{Health, Observation, Source};
use rusqlite::{params, CachedStatement, TransactionBehavior};

use super::{to_ms, Writer};
use crate::codec::serde_name;
use crate::error::{Error, Result};
use crate::histogram::{HealthCounts, LatencyHistogram, BUCKETS};
use crate::store::{Granularity, SavedState};
use crate::tiers::{histogram_columns, pruned_before_key, rollup_table};

const INSERT_OBSERVATION: &str = "INSERT INTO observation \
    (series_id, at_ms, source, health, cause, dns_us, connect_us, tls_us, first_byte_us, \
     total_us, complete, detail) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)";

const UPSERT_SERIES: &str = "INSERT INTO series (service, component, region, first_seen_ms) \
    VALUES (?1, ?2, ?3, ?4) \
    ON CONFLICT (service, component, region) \
    DO UPDATE SET first_seen_ms = min(first_seen_ms, excluded.first_seen_ms) \
    RETURNING id";

const UPSERT_INCIDENT: &str = "INSERT INTO incident \
    (id, service, component, region, opened_at_ms, resolved_at_ms, phase, body) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
    ON CONFLICT (id) DO UPDATE SET service = excluded.service, \
    component = excluded.component, region = excluded.region, \
    opened_at_ms = excluded.opened_at_ms, resolved_at_ms = excluded.resolved_at_ms, \
    phase = excluded.phase, body = excluded.body";

const UPSERT_STATE: &str = "INSERT INTO state (service, component, region, state, since_ms) \
    VALUES (?1, ?2, ?3, ?4, ?5) \
    ON CONFLICT (service, component, region) \
    DO UPDATE SET state = excluded.state, since_ms = excluded.since_ms";

/// Rollup UPSERTs by granularity: index `b < BUCKETS` touches only histogram column `b` (the
/// common case of a bucket that got one latency, or several in the same histogram bucket),
/// `BUCKETS` touches none (no latency), `BUCKETS + 1` all of them. Fewer columns in the `SET`
/// clause is most of the insert path's CPU.
static UPSERT_ROLLUP: LazyLock<[Vec<String>; 3]> = LazyLock::new(|| {
    Granularity::ALL.map(|g| {
        (0..=BUCKETS + 1)
            .map(|variant| upsert_rollup_sql(g, variant))
            .collect()
    })
});

/// An UPSERT that adds one bucket's aggregate into a rollup row; `variant` as in
/// [`UPSERT_ROLLUP`]. Parameters in column order: the 11 fixed columns, `last_at_ms` for day
/// rollups, then the histogram column(s).
fn upsert_rollup_sql(granularity: Granularity, variant: usize) -> String {
    let all: Vec<String> = histogram_columns().collect();
    let hist: &[String] = match variant {
        b if b < BUCKETS => &all[b..=b],
        b if b == BUCKETS => &[],
        _ => &all,
    };
    let mut columns = vec![
        "series_id",
        "start_ms",
        "source",
        "up",
        "degraded",
        "down",
        "unknown",
        "lat_count",
        "lat_sum_us",
        "lat_min_us",
        "lat_max_us",
    ];
    let day = granularity == Granularity::Day;
    if day {
        columns.push("last_at_ms");
    }
    columns.extend(hist.iter().map(String::as_str));
    let values: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
    let mut set: Vec<String> = [
        "up",
        "degraded",
        "down",
        "unknown",
        "lat_count",
        "lat_sum_us",
    ]
    .iter()
    .copied()
    .chain(hist.iter().map(String::as_str))
    .map(|c| format!("{c} = {c} + excluded.{c}"))
    .collect();
    for (col, f) in [("lat_min_us", "min"), ("lat_max_us", "max")] {
        set.push(format!(
            "{col} = CASE WHEN {col} IS NULL THEN excluded.{col} \
             WHEN excluded.{col} IS NULL THEN {col} ELSE {f}({col}, excluded.{col}) END"
        ));
    }
    if day {
        set.push(
            "last_at_ms = max(ifnull(last_at_ms, excluded.last_at_ms), excluded.last_at_ms)".into(),
        );
    }
    let conflict = if day {
        "series_id, start_ms, source"
    } else {
        "start_ms, series_id, source"
    };
    format!(
        "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({conflict}) DO UPDATE SET {}",
        rollup_table(granularity),
        columns.join(", "),
        values.join(", "),
        set.join(", ")
    )
}

/// What one batch adds to one rollup bucket.
#[derive(Default)]
struct Aggregate {
    counts: HealthCounts,
    latency: LatencyHistogram,
    last_at_ms: i64,
}

/// (series id, source, bucket start in ms)
type BucketKey = (i64, Source, i64);

/// Milliseconds → whole microseconds, the unit timings are stored in.
fn ms_to_us(ms: f64) -> i64 {
    (ms * 1000.0).round() as i64
}

fn phase_us(ms: Option<f32>) -> Option<i64> {
    ms.filter(|v| v.is_finite()).map(|v| ms_to_us(f64::from(v)))
}

/// The series cache key of an observation or key.
pub(crate) fn series_key(buf: &mut String, service: &str, component: &str, region: &str) {
    buf.clear();
    buf.push_str(service);
    buf.push('\0');
    buf.push_str(component);
    buf.push('\0');
    buf.push_str(region);
}

/// At most this many rows are deleted per transaction, so a large prune never holds the writer
/// for long.
pub(crate) const PRUNE_CHUNK: i64 = 20_000;

impl Writer {
    /// Inserts `batch` (and rolls it up); with a `cursor`, also raises that `meta` counter to
    /// the given sequence number in the same transaction.
    pub(crate) fn insert_observations(
        &mut self,
        batch: &[Observation],
        cursor: Option<(&str, u64)>,
    ) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut fresh: HashMap<String, i64> = HashMap::new();
        // Per granularity, in `Granularity::ALL` order.
        let mut tiers: [HashMap<BucketKey, Aggregate>; 3] = Default::default();
        {
            let mut insert = tx.prepare_cached(INSERT_OBSERVATION)?;
            let mut upsert_series = tx.prepare_cached(UPSERT_SERIES)?;
            let mut key = String::new();
            for obs in batch {
                let at_ms = to_ms(obs.at);
                series_key(
                    &mut key,
                    obs.service.as_str(),
                    obs.component.as_str(),
                    obs.region.as_str(),
                );
                let series_id = match self.series.get(&key).or_else(|| fresh.get(&key)) {
                    Some(&id) => id,
                    None => {
                        let id: i64 = upsert_series.query_row(
                            params![
                                obs.service.as_str(),
                                obs.component.as_str(),
                                obs.region.as_str(),
                                at_ms
                            ],
                            |r| r.get(0),
                        )?;
                        fresh.insert(key.clone(), id);
                        id
                    }
                };
                let p = &obs.phases;
                insert.execute(params![
                    series_id,
                    at_ms,
                    obs.source.as_str(),
                    obs.health.as_str(),
                    obs.cause.as_str(),
                    phase_us(p.dns),
                    phase_us(p.connect),
                    phase_us(p.tls),
                    phase_us(p.first_byte),
                    phase_us(p.total),
                    obs.complete,
                    obs.detail,
                ])?;

                let latency = match (obs.health, p.total) {
                    (Health::Up | Health::Degraded, Some(total)) if total.is_finite() => {
                        Some(f64::from(total))
                    }
                    _ => None,
                };
                for (map, g) in tiers.iter_mut().zip(Granularity::ALL) {
                    let start = at_ms.div_euclid(g.millis()) * g.millis();
                    let agg = map.entry((series_id, obs.source, start)).or_default();
                    agg.counts.record(obs.health);
                    agg.last_at_ms = agg.last_at_ms.max(at_ms);
                    if let Some(ms) = latency {
                        agg.latency.record(ms);
                    }
                }
            }
            // In key order (minute and hour rows are keyed time first, day rows series first),
            // so that consecutive UPSERTs land on the same pages.
            for ((variants, map), g) in UPSERT_ROLLUP.iter().zip(tiers).zip(Granularity::ALL) {
                let mut rows: Vec<_> = map.into_iter().collect();
                if g == Granularity::Day {
                    rows.sort_unstable_by_key(|((series, source, start), _)| {
                        (*series, *start, source.as_str())
                    });
                } else {
                    rows.sort_unstable_by_key(|((series, source, start), _)| {
                        (*start, *series, source.as_str())
                    });
                }
                // Each variant's statement is looked up once per batch, not once per row (the
                // statement cache hashes the whole SQL text).
                let mut stmts: Vec<Option<CachedStatement<'_>>> = std::iter::repeat_with(|| None)
                    .take(variants.len())
                    .collect();
                for (key, agg) in &rows {
                    let variant = variant_of(&agg.latency);
                    let stmt = match &mut stmts[variant] {
                        Some(stmt) => stmt,
                        slot => slot.insert(tx.prepare_cached(&variants[variant])?),
                    };
                    upsert_rollup(stmt, variant, g == Granularity::Day, key, agg)?;
                }
            }
        }
        if let Some((name, seq)) = cursor {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET \
                 value = max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
                params![name, i64::try_from(seq).unwrap_or(i64::MAX)],
            )?;
        }
        tx.commit()?;
        // Only committed series ids may enter the cache.
        self.series.extend(fresh);
        Ok(())
    }

    pub(crate) fn upsert_incident(&mut self, incident: &Incident) -> Result<()> {
        upsert_incident_in(&self.conn, incident)
    }

    pub(crate) fn save_states(&mut self, states: &[SavedState]) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut stmt = tx.prepare_cached(UPSERT_STATE)?;
            for s in states {
                stmt.execute(params![
                    s.key.service.as_str(),
                    s.key.component.as_str(),
                    s.key.region.as_str(),
                    serde_name("state", &s.state)?,
                    s.since.map(to_ms),
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Deletes up to [`PRUNE_CHUNK`] of the oldest raw observations before `before_ms`.
    pub(crate) fn prune_raw_chunk(&mut self, before_ms: i64) -> Result<usize> {
        let bucket = before_ms.div_euclid(60_000);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Whole minutes from the front of the index, then the part of the cut-off minute.
        let mut deleted = tx
            .prepare_cached(
                "DELETE FROM observation WHERE rowid IN (SELECT rowid FROM observation \
                 WHERE at_ms / 60000 < ?1 ORDER BY at_ms / 60000 LIMIT ?2)",
            )?
            .execute(params![bucket, PRUNE_CHUNK])?;
        if (deleted as i64) < PRUNE_CHUNK {
            deleted += tx
                .prepare_cached("DELETE FROM observation WHERE at_ms / 60000 = ?1 AND at_ms < ?2")?
                .execute(params![bucket, before_ms])?;
        }
        tx.commit()?;
        Ok(deleted)
    }

    /// Deletes up to [`PRUNE_CHUNK`] of the oldest minute or hour rollups (time-first tables)
    /// that start before `before_ms`.
    pub(crate) fn prune_time_first_chunk(
        &mut self,
        granularity: Granularity,
        before_ms: i64,
    ) -> Result<usize> {
        let table = rollup_table(granularity);
        let deleted = self
            .conn
            .prepare_cached(&format!(
                "DELETE FROM {table} WHERE (start_ms, series_id, source) IN \
                 (SELECT start_ms, series_id, source FROM {table} WHERE start_ms < ?1 \
                 ORDER BY start_ms LIMIT ?2)"
            ))?
            .execute(params![before_ms, PRUNE_CHUNK])?;
        Ok(deleted)
    }

    /// Deletes the day rollups of these series that start before `before_ms`.
    pub(crate) fn prune_day(&mut self, series_ids: &[i64], before_ms: i64) -> Result<usize> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut deleted = 0;
        {
            let mut stmt =
                tx.prepare_cached("DELETE FROM rollup_day WHERE series_id = ?1 AND start_ms < ?2")?;
            for id in series_ids {
                deleted += stmt.execute(params![id, before_ms])?;
            }
        }
        tx.commit()?;
        Ok(deleted)
    }

    /// Remembers that `granularity`'s rollups before `before_ms` are gone.
    pub(crate) fn note_prune(&mut self, granularity: Granularity, before_ms: i64) -> Result<()> {
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET \
             value = max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
            params![pruned_before_key(granularity), before_ms],
        )?;
        Ok(())
    }
}

/// Which UPSERT variant a bucket's histogram needs (see [`UPSERT_ROLLUP`]).
fn variant_of(latency: &LatencyHistogram) -> usize {
    let mut used = latency.buckets.iter().enumerate().filter(|(_, n)| **n > 0);
    match (used.next(), used.next()) {
        (None, _) => BUCKETS,
        (Some((b, _)), None) => b,
        _ => BUCKETS + 1,
    }
}

fn upsert_rollup(
    stmt: &mut CachedStatement<'_>,
    variant: usize,
    is_day: bool,
    &(series_id, source, start): &BucketKey,
    agg: &Aggregate,
) -> rusqlite::Result<()> {
    let c = &agg.counts;
    let l = &agg.latency;
    stmt.raw_bind_parameter(1, series_id)?;
    stmt.raw_bind_parameter(2, start)?;
    stmt.raw_bind_parameter(3, source.as_str())?;
    stmt.raw_bind_parameter(4, c.up as i64)?;
    stmt.raw_bind_parameter(5, c.degraded as i64)?;
    stmt.raw_bind_parameter(6, c.down as i64)?;
    stmt.raw_bind_parameter(7, c.unknown as i64)?;
    stmt.raw_bind_parameter(8, l.count as i64)?;
    stmt.raw_bind_parameter(9, ms_to_us(l.sum_ms))?;
    stmt.raw_bind_parameter(10, l.min_ms.map(ms_to_us))?;
    stmt.raw_bind_parameter(11, l.max_ms.map(ms_to_us))?;
    let mut next = 12;
    if is_day {
        stmt.raw_bind_parameter(next, agg.last_at_ms)?;
        next += 1;
    }
    match variant {
        b if b < BUCKETS => stmt.raw_bind_parameter(next, l.buckets[b] as i64)?,
        b if b == BUCKETS => {}
        _ => {
            for (i, n) in l.buckets.iter().enumerate() {
                stmt.raw_bind_parameter(next + i, *n as i64)?;
            }
        }
    }
    stmt.raw_execute()?;
    Ok(())
}

/// Inserts or replaces an incident on `conn` (inside the caller's transaction, if any).
pub(crate) fn upsert_incident_in(conn: &rusqlite::Connection, incident: &Incident) -> Result<()> {
    let body = serde_json::to_string(incident).map_err(|e| Error::Encode {
        what: "incident",
        reason: e.to_string(),
    })?;
    let phase = serde_name("incident phase", &incident.phase)?;
    conn.prepare_cached(UPSERT_INCIDENT)?.execute(params![
        incident.id,
        incident.key.service.as_str(),
        incident.key.component.as_str(),
        incident.key.region.as_str(),
        to_ms(incident.opened_at),
        incident.resolved_at.map(to_ms),
        phase,
        body,
    ])?;
    Ok(())
}
