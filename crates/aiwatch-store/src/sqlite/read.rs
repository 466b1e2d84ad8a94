//! The read half of `SqliteStore`: raw history, rollups, uptime and percentiles over merged
//! rollups, incidents and saved states.
//!
//! Raw observations, minute and hour rollups are indexed time first (bucket, then series), so
//! that the rows one batch writes are neighbours — the write path then touches a few hundred
//! pages per commit instead of one per series, which is what keeps 10,000 keys fast. Reads of
//! one series therefore seek bucket by bucket (a recursive CTE enumerates the buckets, clamped
//! to where data exists), raw rows in chunks, newest first when a limit applies. Day rollups are
//! series first: a 90-day read is one short range. A range is read as whole days, then whole
//! hours, then minutes, so no read seeks more than ~2 × (23 + 59) buckets per series.

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Duration;

use aiwatch_core::assess::{Incident, Key};
use aiwatch_core::observation::{Component, Health, Observation, PhaseMs, Region, Source};
use aiwatch_core::Status;
use aiwatch_core::{Cause, ServiceName};
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{from_ms, to_ms};
use crate::codec::{component, service_name, word};
use crate::error::{Error, Result};
use crate::histogram::{HealthCounts, LatencyHistogram, BUCKETS};
use crate::store::{Granularity, IncidentQuery, Rollup, SavedState, Selector, TimeRange, Uptime};
use crate::tiers::{
    floor_to, histogram_columns, pruned_before_key, rollup_table, spans, PrunedBefore, Span,
    MINUTE_MS,
};

/// One matching (service, component, region).
struct Series {
    id: i64,
    key: Key,
    first_seen_ms: i64,
}

fn matching_series(conn: &Connection, sel: &Selector) -> Result<Vec<Series>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, component, region, first_seen_ms FROM series \
         WHERE service = ?1 AND (?2 IS NULL OR component = ?2) AND (?3 IS NULL OR region = ?3) \
         ORDER BY component, region",
    )?;
    let rows = stmt.query_map(
        params![
            sel.service.as_str(),
            sel.component.map(Component::as_str),
            sel.region.as_ref().map(Region::as_str)
        ],
        |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        },
    )?;
    let mut out = Vec::new();
    for row in rows {
        let (id, raw_component, region, first_seen_ms) = row?;
        out.push(Series {
            id,
            key: Key {
                service: sel.service.clone(),
                component: component(raw_component)?,
                region: Region::new(region),
            },
            first_seen_ms,
        });
    }
    Ok(out)
}

pub(crate) fn all_series_ids(conn: &Connection) -> Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached("SELECT id FROM series ORDER BY id")?;
    let ids = stmt.query_map([], |r| r.get(0))?;
    Ok(ids.collect::<rusqlite::Result<_>>()?)
}

fn phase_ms(us: Option<i64>) -> Option<f32> {
    us.map(|us| (us as f64 / 1000.0) as f32)
}

/// Minutes read per statement when walking raw observations.
const WALK_CHUNK_MINUTES: i64 = 60;
/// How far back `recent_latencies` looks from a series' last observation.
const RECENT_LOOKBACK_MINUTES: i64 = 7 * 24 * 60;

const RAW_BY_MINUTES: &str = "WITH RECURSIVE m(b) AS \
    (SELECT ?2 UNION ALL SELECT b + 1 FROM m WHERE b < ?3) \
    SELECT o.id, o.source, o.at_ms, o.health, o.cause, o.dns_us, o.connect_us, o.tls_us, \
    o.first_byte_us, o.total_us, o.complete, o.detail \
    FROM m CROSS JOIN observation o \
    WHERE o.at_ms / 60000 = m.b AND o.series_id = ?1 AND o.at_ms >= ?4 AND o.at_ms < ?5 \
    AND (?6 IS NULL OR o.source = ?6)";

/// The first and last minute (Unix minutes) holding raw observations.
fn raw_extent(conn: &Connection) -> Result<Option<(i64, i64)>> {
    extent(
        conn,
        "SELECT min(at_ms / 60000) FROM observation",
        "SELECT max(at_ms / 60000) FROM observation",
    )
}

/// Two single-aggregate queries, each answered from an index edge.
fn extent(conn: &Connection, min_sql: &str, max_sql: &str) -> Result<Option<(i64, i64)>> {
    let first: Option<i64> = conn.prepare_cached(min_sql)?.query_row([], |r| r.get(0))?;
    let last: Option<i64> = conn.prepare_cached(max_sql)?.query_row([], |r| r.get(0))?;
    Ok(first.zip(last))
}

/// Walks the raw observations of `series` in `[start_ms, end_ms)` newest first, a chunk of minutes
/// at a time, keeping those `keep` accepts, until `limit` are found.
#[allow(clippy::too_many_arguments)]
fn walk_raw_newest_first(
    conn: &Connection,
    service: &ServiceName,
    series: &[Series],
    start_ms: i64,
    end_ms: i64,
    source: Option<Source>,
    limit: usize,
    keep: impl Fn(&Observation) -> bool,
) -> Result<Vec<Observation>> {
    let mut out = Vec::new();
    let Some((first, last)) = raw_extent(conn)? else {
        return Ok(out);
    };
    if end_ms <= start_ms || limit == 0 || series.is_empty() {
        return Ok(out);
    }
    let lo = start_ms.div_euclid(60_000).max(first);
    let hi = (end_ms - 1).div_euclid(60_000).min(last);
    let mut stmt = conn.prepare_cached(RAW_BY_MINUTES)?;
    let mut chunk_hi = hi;
    while chunk_hi >= lo && out.len() < limit {
        let chunk_lo = (chunk_hi - WALK_CHUNK_MINUTES + 1).max(lo);
        let mut chunk: Vec<(i64, i64, Observation)> = Vec::new();
        for s in series {
            let mut rows = stmt.query(params![
                s.id,
                chunk_lo,
                chunk_hi,
                start_ms,
                end_ms,
                source.map(Source::as_str)
            ])?;
            while let Some(r) = rows.next()? {
                let obs = decode_observation(r, service, s)?;
                if keep(&obs) {
                    chunk.push((to_ms(obs.at), r.get(0)?, obs));
                }
            }
        }
        chunk.sort_by_key(|(at_ms, id, _)| std::cmp::Reverse((*at_ms, *id)));
        out.extend(chunk.into_iter().map(|(_, _, o)| o));
        chunk_hi = chunk_lo - 1;
    }
    out.truncate(limit);
    Ok(out)
}

fn decode_observation(r: &Row<'_>, service: &ServiceName, s: &Series) -> Result<Observation> {
    let cause: String = r.get(4)?;
    Ok(Observation {
        service: service.clone(),
        component: s.key.component,
        region: s.key.region.clone(),
        source: word(r.get(1)?, "observation source", Source::parse)?,
        at: from_ms(r.get(2)?)?,
        health: word(r.get(3)?, "observation health", Health::parse)?,
        cause: Cause::from_code(&cause).unwrap_or(Cause::Unknown),
        phases: PhaseMs {
            dns: phase_ms(r.get(5)?),
            connect: phase_ms(r.get(6)?),
            tls: phase_ms(r.get(7)?),
            first_byte: phase_ms(r.get(8)?),
            total: phase_ms(r.get(9)?),
        },
        complete: r.get(10)?,
        detail: r.get(11)?,
    })
}

pub(crate) fn observations(
    conn: &Connection,
    sel: &Selector,
    range: TimeRange,
    limit: usize,
) -> Result<Vec<Observation>> {
    let series = matching_series(conn, sel)?;
    walk_raw_newest_first(
        conn,
        &sel.service,
        &series,
        to_ms(range.from),
        to_ms(range.to),
        sel.source,
        limit,
        |_| true,
    )
}

/// `SELECT [start_ms,] sums… [GROUP BY start_ms]` over one series' rollups in `[?2, ?3)`,
/// `?4` an optional source. Day rollups are a range of the series-first key; minute and hour
/// rollups are looked up bucket by bucket (`?2` must be aligned to the bucket).
fn rollup_select_sql(granularity: Granularity, grouped: bool) -> String {
    let hist: Vec<String> = histogram_columns().map(|c| format!("sum(r.{c})")).collect();
    let (lead, tail) = if grouped {
        ("r.start_ms", " GROUP BY r.start_ms ORDER BY r.start_ms")
    } else {
        ("0", "")
    };
    let sums = format!(
        "SELECT {lead}, sum(r.up), sum(r.degraded), sum(r.down), sum(r.unknown), \
         sum(r.lat_count), sum(r.lat_sum_us), min(r.lat_min_us), max(r.lat_max_us), {}",
        hist.join(", ")
    );
    let table = rollup_table(granularity);
    match granularity {
        Granularity::Day => format!(
            "{sums} FROM {table} r WHERE r.series_id = ?1 AND r.start_ms >= ?2 \
             AND r.start_ms < ?3 AND (?4 IS NULL OR r.source = ?4){tail}"
        ),
        Granularity::Minute | Granularity::Hour => {
            let step = granularity.millis();
            format!(
                "WITH RECURSIVE m(t) AS \
                 (SELECT ?2 UNION ALL SELECT t + {step} FROM m WHERE t + {step} < ?3) \
                 {sums} FROM m CROSS JOIN {table} r \
                 WHERE r.start_ms = m.t AND r.series_id = ?1 AND (?4 IS NULL OR r.source = ?4)\
                 {tail}"
            )
        }
    }
}

/// `[granularity][grouped]`, in `Granularity::ALL` order.
static ROLLUP_SQL: LazyLock<[[String; 2]; 3]> = LazyLock::new(|| {
    Granularity::ALL.map(|g| [false, true].map(|grouped| rollup_select_sql(g, grouped)))
});

fn rollup_sql(granularity: Granularity, grouped: bool) -> &'static str {
    let g = Granularity::ALL
        .iter()
        .position(|&x| x == granularity)
        .unwrap_or(0);
    &ROLLUP_SQL[g][usize::from(grouped)]
}

/// Decodes `start, counts…, latency…, buckets…` as selected by `rollup_select_sql`. Sums over no
/// rows are NULL, read as zero.
fn decode_rollup_row(r: &Row<'_>) -> rusqlite::Result<(i64, HealthCounts, LatencyHistogram)> {
    let n = |i: usize| -> rusqlite::Result<u64> {
        Ok(r.get::<_, Option<i64>>(i)?.unwrap_or(0).max(0) as u64)
    };
    let counts = HealthCounts {
        up: n(1)?,
        degraded: n(2)?,
        down: n(3)?,
        unknown: n(4)?,
    };
    let mut buckets = [0u64; BUCKETS];
    for (i, b) in buckets.iter_mut().enumerate() {
        *b = n(9 + i)?;
    }
    let us = |i: usize| -> rusqlite::Result<Option<f64>> {
        Ok(r.get::<_, Option<i64>>(i)?.map(|us| us as f64 / 1000.0))
    };
    let latency = LatencyHistogram {
        count: n(5)?,
        sum_ms: us(6)?.unwrap_or(0.0),
        min_ms: us(7)?,
        max_ms: us(8)?,
        buckets,
    };
    Ok((r.get(0)?, counts, latency))
}

fn pruned_before(conn: &Connection) -> Result<PrunedBefore> {
    let mut stmt = conn.prepare_cached("SELECT CAST(value AS INTEGER) FROM meta WHERE key = ?1")?;
    let mut get = |g| -> Result<i64> {
        let v: Option<i64> = stmt
            .query_row([pruned_before_key(g)], |r| r.get(0))
            .optional()?;
        Ok(v.unwrap_or(i64::MIN))
    };
    Ok(PrunedBefore {
        minute: get(Granularity::Minute)?,
        hour: get(Granularity::Hour)?,
    })
}

/// The first and last bucket start (ms) of a time-first rollup table, if any.
fn table_extent(conn: &Connection, granularity: Granularity) -> Result<Option<(i64, i64)>> {
    let table = rollup_table(granularity);
    extent(
        conn,
        &format!("SELECT min(start_ms) FROM {table}"),
        &format!("SELECT max(start_ms) FROM {table}"),
    )
}

/// Where the time-first tiers hold data, to clamp bucket walks.
#[derive(Clone, Copy, Debug)]
struct Extents {
    minute: Option<(i64, i64)>,
    hour: Option<(i64, i64)>,
}

fn extents(conn: &Connection) -> Result<Extents> {
    Ok(Extents {
        minute: table_extent(conn, Granularity::Minute)?,
        hour: table_extent(conn, Granularity::Hour)?,
    })
}

/// Narrows a span to the stored rows' extent, so bucket walks never enumerate empty eras;
/// `None` when nothing can be in it.
fn clamp_span(span: Span, extents: Extents) -> Option<Span> {
    let extent = match span.granularity {
        Granularity::Day => return (span.from_ms < span.to_ms).then_some(span),
        Granularity::Minute => extents.minute,
        Granularity::Hour => extents.hour,
    };
    let (first, last) = extent?;
    let from_ms = span.from_ms.max(first);
    let to_ms = span.to_ms.min(last + span.granularity.millis());
    (from_ms < to_ms).then_some(Span {
        from_ms,
        to_ms,
        ..span
    })
}

/// Totals of one series over a range, merged from its spans.
fn series_totals(
    conn: &Connection,
    series_id: i64,
    source: Option<Source>,
    spans: &[Span],
) -> Result<(HealthCounts, LatencyHistogram)> {
    let mut counts = HealthCounts::default();
    let mut latency = LatencyHistogram::default();
    for span in spans {
        let mut stmt = conn.prepare_cached(rollup_sql(span.granularity, false))?;
        let (_, c, l) = stmt.query_row(
            params![
                series_id,
                span.from_ms,
                span.to_ms,
                source.map(Source::as_str)
            ],
            decode_rollup_row,
        )?;
        counts.merge(&c);
        latency.merge(&l);
    }
    Ok((counts, latency))
}

/// The spans of a range, clamped to stored data.
fn read_spans(conn: &Connection, range: TimeRange) -> Result<Vec<Span>> {
    let extents = extents(conn)?;
    Ok(spans(range, pruned_before(conn)?)
        .into_iter()
        .filter_map(|s| clamp_span(s, extents))
        .collect())
}

pub(crate) fn rollups(
    conn: &Connection,
    sel: &Selector,
    range: TimeRange,
    granularity: Granularity,
) -> Result<Vec<Rollup>> {
    let span = clamp_span(
        Span {
            granularity,
            from_ms: floor_to(to_ms(range.from), granularity.millis()),
            to_ms: to_ms(range.to),
        },
        extents(conn)?,
    );
    let Some(Span {
        from_ms: from,
        to_ms: to,
        ..
    }) = span
    else {
        return Ok(Vec::new());
    };
    let mut by_start: BTreeMap<(i64, usize), Rollup> = BTreeMap::new();
    for (index, series) in matching_series(conn, sel)?.into_iter().enumerate() {
        let mut stmt = conn.prepare_cached(rollup_sql(granularity, true))?;
        let mut rows = stmt.query(params![series.id, from, to, sel.source.map(Source::as_str)])?;
        while let Some(r) = rows.next()? {
            let (start, counts, latency) = decode_rollup_row(r)?;
            by_start.insert(
                (start, index),
                Rollup {
                    key: series.key.clone(),
                    granularity,
                    start: from_ms(start)?,
                    counts,
                    latency,
                },
            );
        }
    }
    Ok(by_start.into_values().collect())
}

pub(crate) fn uptime(
    conn: &Connection,
    sel: &Selector,
    range: TimeRange,
    expected_interval: Option<Duration>,
) -> Result<Uptime> {
    let spans = read_spans(conn, range)?;
    let series = matching_series(conn, sel)?;
    let mut counted: Vec<(HealthCounts, i64)> = Vec::with_capacity(series.len());
    for s in &series {
        let (c, _) = series_totals(conn, s.id, sel.source, &spans)?;
        counted.push((c, s.first_seen_ms));
    }
    crate::tiers::uptime_of(&counted, range, expected_interval)
}

pub(crate) fn latency_percentiles(
    conn: &Connection,
    sel: &Selector,
    range: TimeRange,
    quantiles: &[f64],
) -> Result<Vec<Option<f64>>> {
    let spans = read_spans(conn, range)?;
    let mut merged = LatencyHistogram::default();
    for s in matching_series(conn, sel)? {
        let (_, l) = series_totals(conn, s.id, sel.source, &spans)?;
        merged.merge(&l);
    }
    Ok(quantiles.iter().map(|&q| merged.quantile(q)).collect())
}

/// The latest observation time of a series, from its newest day rollup (which outlives raw
/// retention).
const LAST_AT: &str = "SELECT max(last_at_ms) FROM rollup_day WHERE series_id = ?1 \
    AND start_ms = (SELECT max(start_ms) FROM rollup_day WHERE series_id = ?1)";

fn series_id(conn: &Connection, key: &Key) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached(
            "SELECT id FROM series WHERE service = ?1 AND component = ?2 AND region = ?3",
        )?
        .query_row(
            params![
                key.service.as_str(),
                key.component.as_str(),
                key.region.as_str()
            ],
            |r| r.get(0),
        )
        .optional()?)
}

fn last_at_ms(conn: &Connection, series_id: i64) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached(LAST_AT)?
        .query_row([series_id], |r| r.get(0))?)
}

pub(crate) fn last_observation_at(conn: &Connection, key: &Key) -> Result<Option<DateTime<Utc>>> {
    let Some(id) = series_id(conn, key)? else {
        return Ok(None);
    };
    last_at_ms(conn, id)?.map(from_ms).transpose()
}

pub(crate) fn last_observation_times(conn: &Connection) -> Result<Vec<(Key, DateTime<Utc>)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, service, component, region FROM series ORDER BY service, component, region",
    )?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let Some(last) = last_at_ms(conn, r.get(0)?)? else {
            continue;
        };
        let key = Key {
            service: service_name(r.get(1)?)?,
            component: component(r.get(2)?)?,
            region: Region::new(r.get::<_, String>(3)?),
        };
        out.push((key, from_ms(last)?));
    }
    Ok(out)
}

pub(crate) fn recent_latencies(
    conn: &Connection,
    key: &Key,
    source: Source,
    limit: usize,
) -> Result<Vec<f32>> {
    let Some(id) = series_id(conn, key)? else {
        return Ok(Vec::new());
    };
    let Some(last) = last_at_ms(conn, id)? else {
        return Ok(Vec::new());
    };
    let series = [Series {
        id,
        key: key.clone(),
        first_seen_ms: 0,
    }];
    let to = last + 1;
    let from = to - RECENT_LOOKBACK_MINUTES * MINUTE_MS;
    let found = walk_raw_newest_first(
        conn,
        &key.service,
        &series,
        from,
        to,
        Some(source),
        limit,
        |o| o.health == Health::Up && o.phases.total.is_some(),
    )?;
    Ok(found.iter().rev().filter_map(|o| o.phases.total).collect())
}

fn decode_incident(body: &str) -> Result<Incident> {
    serde_json::from_str(body).map_err(|e| Error::Decode {
        what: "incident",
        reason: e.to_string(),
    })
}

fn incident_bodies(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<Incident>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let bodies = stmt.query_map(params, |r| r.get::<_, String>(0))?;
    let mut out = Vec::new();
    for body in bodies {
        out.push(decode_incident(&body?)?);
    }
    Ok(out)
}

pub(crate) fn incident(conn: &Connection, id: &str) -> Result<Option<Incident>> {
    Ok(
        incident_bodies(conn, "SELECT body FROM incident WHERE id = ?1", [id])?
            .into_iter()
            .next(),
    )
}

pub(crate) fn open_incidents(conn: &Connection) -> Result<Vec<Incident>> {
    incident_bodies(
        conn,
        "SELECT body FROM incident WHERE resolved_at_ms IS NULL ORDER BY opened_at_ms, id",
        [],
    )
}

pub(crate) fn incidents(conn: &Connection, q: &IncidentQuery) -> Result<Vec<Incident>> {
    incident_bodies(
        conn,
        "SELECT body FROM incident \
         WHERE (?1 IS NULL OR service = ?1) \
         AND (?2 IS NULL OR resolved_at_ms IS NULL OR resolved_at_ms >= ?2) \
         AND (?3 IS NULL OR opened_at_ms < ?3) \
         AND (?4 = 0 OR resolved_at_ms IS NULL) \
         ORDER BY opened_at_ms DESC, id DESC LIMIT ?5",
        params![
            q.service.as_ref().map(ServiceName::as_str),
            q.from.map(to_ms),
            q.to.map(to_ms),
            q.open_only,
            i64::try_from(q.limit).unwrap_or(i64::MAX),
        ],
    )
}

pub(crate) fn load_states(conn: &Connection) -> Result<Vec<SavedState>> {
    let mut stmt = conn.prepare_cached(
        "SELECT service, component, region, state, since_ms FROM state \
         ORDER BY service, component, region",
    )?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let raw: String = r.get(3)?;
        let state: Status =
            serde_json::from_value(serde_json::Value::String(raw)).map_err(|e| Error::Decode {
                what: "state",
                reason: e.to_string(),
            })?;
        out.push(SavedState {
            key: Key {
                service: service_name(r.get(0)?)?,
                component: component(r.get(1)?)?,
                region: Region::new(r.get::<_, String>(2)?),
            },
            state,
            since: r.get::<_, Option<i64>>(4)?.map(from_ms).transpose()?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan of `sql` with every parameter bound to 1, one line per step.
    fn plan(conn: &Connection, sql: &str) -> Vec<String> {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        for i in 1..=stmt.parameter_count() {
            stmt.raw_bind_parameter(i, 1).unwrap();
        }
        let mut rows = stmt.raw_query();
        let mut out = Vec::new();
        while let Some(r) = rows.next().unwrap() {
            out.push(r.get::<_, String>(3).unwrap());
        }
        out
    }

    #[test]
    fn reads_seek_indexes_and_never_scan_a_big_table() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::migrations::migrate(&mut conn, std::path::Path::new(":memory:")).unwrap();
        let queries = [
            RAW_BY_MINUTES,
            rollup_sql(Granularity::Minute, true),
            rollup_sql(Granularity::Minute, false),
            rollup_sql(Granularity::Hour, true),
            rollup_sql(Granularity::Hour, false),
            rollup_sql(Granularity::Day, true),
            rollup_sql(Granularity::Day, false),
            LAST_AT,
            "SELECT min(at_ms / 60000) FROM observation",
            "SELECT max(at_ms / 60000) FROM observation",
            "SELECT min(start_ms) FROM rollup_minute",
            "SELECT max(start_ms) FROM rollup_minute",
            "DELETE FROM observation WHERE rowid IN (SELECT rowid FROM observation \
             WHERE at_ms / 60000 < ?1 ORDER BY at_ms / 60000 LIMIT ?2)",
            "DELETE FROM rollup_minute WHERE (start_ms, series_id, source) IN \
             (SELECT start_ms, series_id, source FROM rollup_minute WHERE start_ms < ?1 \
             ORDER BY start_ms LIMIT ?2)",
        ];
        for sql in queries {
            let steps = plan(&conn, sql);
            eprintln!("{sql}\n  {steps:?}");
            for step in &steps {
                let scans_table = step.starts_with("SCAN")
                    && step != "SCAN m"
                    && step != "SCAN CONSTANT ROW"
                    && !step.contains("USING");
                assert!(!scans_table, "{sql}: {steps:?}");
                assert!(
                    !step.contains("TEMP B-TREE FOR ORDER BY") || sql.contains("GROUP BY"),
                    "{sql}: {steps:?}"
                );
            }
        }
    }
}
