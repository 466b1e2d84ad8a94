//! The read half of `PostgresStore`: raw history, rollups, and uptime and percentiles over
//! merged rollups read tier by tier (whole days, whole hours, the minutes at either end, as
//! `tiers::spans` splits a range). Each read is one snapshot; text is ordered byte-wise
//! (`COLLATE "C"`) so both engines list things in the same order.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;
use std::time::Duration;

use aiwatch_core::assess::Key;
use aiwatch_core::observation::{Component, Health, Observation, PhaseMs, Region, Source};
use aiwatch_core::{Cause, ServiceName};
use chrono::{DateTime, Utc};
use postgres::{Row, Transaction};

use super::Stmts;
use crate::codec::{component, from_ms, service_name, word};
use crate::error::Result;
use crate::histogram::{HealthCounts, LatencyHistogram, BUCKETS};
use crate::store::{Granularity, Rollup, Selector, TimeRange, Uptime};
use crate::tiers::{
    floor_to, histogram_columns, pruned_before_key, rollup_table, spans, to_ms, PrunedBefore, Span,
    MINUTE_MS,
};

/// How far back `recent_latencies` looks from a series' last observation.
const RECENT_LOOKBACK_MS: i64 = 7 * 24 * 60 * MINUTE_MS;

/// One matching (service, component, region).
struct Series {
    id: i64,
    key: Key,
    first_seen_ms: i64,
}

fn matching_series(
    tx: &mut Transaction<'_>,
    st: &mut Stmts,
    sel: &Selector,
) -> Result<Vec<Series>> {
    let stmt = st.get(
        tx,
        "SELECT id, component, region, first_seen_ms FROM series \
         WHERE service = $1 AND ($2::text IS NULL OR component = $2) \
         AND ($3::text IS NULL OR region = $3) \
         ORDER BY component COLLATE \"C\", region COLLATE \"C\"",
    )?;
    let rows = tx.query(
        &stmt,
        &[
            &sel.service.as_str(),
            &sel.component.map(Component::as_str),
            &sel.region.as_ref().map(Region::as_str),
        ],
    )?;
    rows.into_iter()
        .map(|r| {
            Ok(Series {
                id: r.get(0),
                key: Key {
                    service: sel.service.clone(),
                    component: component(r.get(1))?,
                    region: Region::new(r.get::<_, String>(2)),
                },
                first_seen_ms: r.get(3),
            })
        })
        .collect()
}

fn phase_ms(us: Option<i64>) -> Option<f32> {
    us.map(|us| (us as f64 / 1000.0) as f32)
}

const RAW_COLUMNS: &str = "series_id, source, at_ms, health, cause, dns_us, connect_us, tls_us, \
    first_byte_us, total_us, complete, detail";

fn decode_observation(r: &Row, service: &ServiceName, s: &Series) -> Result<Observation> {
    let cause: String = r.get(4);
    Ok(Observation {
        service: service.clone(),
        component: s.key.component,
        region: s.key.region.clone(),
        source: word(r.get(1), "observation source", Source::parse)?,
        at: from_ms(r.get(2))?,
        health: word(r.get(3), "observation health", Health::parse)?,
        cause: Cause::from_code(&cause).unwrap_or(Cause::Unknown),
        phases: PhaseMs {
            dns: phase_ms(r.get(5)),
            connect: phase_ms(r.get(6)),
            tls: phase_ms(r.get(7)),
            first_byte: phase_ms(r.get(8)),
            total: phase_ms(r.get(9)),
        },
        complete: r.get(10),
        detail: r.get(11),
    })
}

fn limit_of(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

pub(crate) fn observations(
    tx: &mut Transaction<'_>,
    st: &mut Stmts,
    sel: &Selector,
    range: TimeRange,
    limit: usize,
) -> Result<Vec<Observation>> {
    let series = matching_series(tx, st, sel)?;
    if series.is_empty() || limit == 0 {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = series.iter().map(|s| s.id).collect();
    let by_id: HashMap<i64, &Series> = series.iter().map(|s| (s.id, s)).collect();
    let stmt = st.get(
        tx,
        &format!(
            "SELECT {RAW_COLUMNS} FROM observation WHERE series_id = ANY($1) \
             AND at_ms >= $2 AND at_ms < $3 AND ($4::text IS NULL OR source = $4) \
             ORDER BY at_ms DESC, id DESC LIMIT $5"
        ),
    )?;
    let rows = tx.query(
        &stmt,
        &[
            &ids,
            &to_ms(range.from),
            &to_ms(range.to),
            &sel.source.map(Source::as_str),
            &limit_of(limit),
        ],
    )?;
    rows.iter()
        .filter_map(|r| by_id.get(&r.get::<_, i64>(0)).map(|s| (r, *s)))
        .map(|(r, s)| decode_observation(r, &sel.service, s))
        .collect()
}

/// `SELECT series_id[, start_ms], sums…` over rollups of the series `$1` starting in
/// `[$2, $3)`, `$4` an optional source, grouped per series (and bucket).
fn rollup_select_sql(granularity: Granularity, per_bucket: bool) -> String {
    let hist: Vec<String> = histogram_columns()
        .map(|c| format!("sum({c})::bigint"))
        .collect();
    let (lead, group) = if per_bucket {
        ("series_id, start_ms", "series_id, start_ms")
    } else {
        ("series_id, 0::bigint", "series_id")
    };
    format!(
        "SELECT {lead}, sum(up)::bigint, sum(degraded)::bigint, sum(down)::bigint, \
         sum(unknown)::bigint, sum(lat_count)::bigint, sum(lat_sum_us)::bigint, \
         min(lat_min_us), max(lat_max_us), {} FROM {} \
         WHERE series_id = ANY($1) AND start_ms >= $2 AND start_ms < $3 \
         AND ($4::text IS NULL OR source = $4) GROUP BY {group}",
        hist.join(", "),
        rollup_table(granularity),
    )
}

/// `[granularity][per_bucket]`, in `Granularity::ALL` order.
static ROLLUP_SQL: LazyLock<[[String; 2]; 3]> = LazyLock::new(|| {
    Granularity::ALL.map(|g| [false, true].map(|per_bucket| rollup_select_sql(g, per_bucket)))
});

fn rollup_sql(granularity: Granularity, per_bucket: bool) -> &'static str {
    let g = Granularity::ALL
        .iter()
        .position(|&x| x == granularity)
        .unwrap_or(0);
    &ROLLUP_SQL[g][usize::from(per_bucket)]
}

/// Decodes `series_id, start, counts…, latency…, buckets…`.
fn decode_rollup_row(r: &Row) -> (i64, i64, HealthCounts, LatencyHistogram) {
    let n = |i: usize| -> u64 { r.get::<_, Option<i64>>(i).unwrap_or(0).max(0) as u64 };
    let counts = HealthCounts {
        up: n(2),
        degraded: n(3),
        down: n(4),
        unknown: n(5),
    };
    let mut buckets = [0u64; BUCKETS];
    for (i, b) in buckets.iter_mut().enumerate() {
        *b = n(10 + i);
    }
    let us = |i: usize| r.get::<_, Option<i64>>(i).map(|us| us as f64 / 1000.0);
    let latency = LatencyHistogram {
        count: n(6),
        sum_ms: us(7).unwrap_or(0.0),
        min_ms: us(8),
        max_ms: us(9),
        buckets,
    };
    (r.get(0), r.get(1), counts, latency)
}

fn pruned_before(tx: &mut Transaction<'_>, st: &mut Stmts) -> Result<PrunedBefore> {
    let mut get = |g| -> Result<i64> {
        Ok(super::rows::meta_number(tx, st, pruned_before_key(g))?.unwrap_or(i64::MIN))
    };
    Ok(PrunedBefore {
        minute: get(Granularity::Minute)?,
        hour: get(Granularity::Hour)?,
    })
}

/// Totals per series over a range, merged from its spans.
fn totals(
    tx: &mut Transaction<'_>,
    st: &mut Stmts,
    series: &[Series],
    source: Option<Source>,
    range: TimeRange,
) -> Result<HashMap<i64, (HealthCounts, LatencyHistogram)>> {
    let mut out: HashMap<i64, (HealthCounts, LatencyHistogram)> = HashMap::new();
    if series.is_empty() {
        return Ok(out);
    }
    let ids: Vec<i64> = series.iter().map(|s| s.id).collect();
    let pruned = pruned_before(tx, st)?;
    for Span {
        granularity,
        from_ms,
        to_ms,
    } in spans(range, pruned)
    {
        let stmt = st.get(tx, rollup_sql(granularity, false))?;
        for r in tx.query(
            &stmt,
            &[&ids, &from_ms, &to_ms, &source.map(Source::as_str)],
        )? {
            let (id, _, c, l) = decode_rollup_row(&r);
            let entry = out.entry(id).or_default();
            entry.0.merge(&c);
            entry.1.merge(&l);
        }
    }
    Ok(out)
}

pub(crate) fn rollups(
    tx: &mut Transaction<'_>,
    st: &mut Stmts,
    sel: &Selector,
    range: TimeRange,
    granularity: Granularity,
) -> Result<Vec<Rollup>> {
    let from = floor_to(to_ms(range.from), granularity.millis());
    let to = to_ms(range.to);
    let series = matching_series(tx, st, sel)?;
    if series.is_empty() || from >= to {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = series.iter().map(|s| s.id).collect();
    let index: HashMap<i64, usize> = series.iter().enumerate().map(|(i, s)| (s.id, i)).collect();
    let stmt = st.get(tx, rollup_sql(granularity, true))?;
    let rows = tx.query(&stmt, &[&ids, &from, &to, &sel.source.map(Source::as_str)])?;
    let mut by_start: BTreeMap<(i64, usize), Rollup> = BTreeMap::new();
    for r in rows {
        let (id, start, counts, latency) = decode_rollup_row(&r);
        let Some(&i) = index.get(&id) else { continue };
        by_start.insert(
            (start, i),
            Rollup {
                key: series[i].key.clone(),
                granularity,
                start: from_ms(start)?,
                counts,
                latency,
            },
        );
    }
    Ok(by_start.into_values().collect())
}

pub(crate) fn uptime(
    tx: &mut Transaction<'_>,
    st: &mut Stmts,
    sel: &Selector,
    range: TimeRange,
    expected_interval: Option<Duration>,
) -> Result<Uptime> {
    let series = matching_series(tx, st, sel)?;
    let per_series = totals(tx, st, &series, sel.source, range)?;
    let counted: Vec<(HealthCounts, i64)> = series
        .iter()
        .map(|s| {
            let c = per_series.get(&s.id).map(|(c, _)| *c).unwrap_or_default();
            (c, s.first_seen_ms)
        })
        .collect();
    crate::tiers::uptime_of(&counted, range, expected_interval)
}

pub(crate) fn latency_percentiles(
    tx: &mut Transaction<'_>,
    st: &mut Stmts,
    sel: &Selector,
    range: TimeRange,
    quantiles: &[f64],
) -> Result<Vec<Option<f64>>> {
    let series = matching_series(tx, st, sel)?;
    let mut merged = LatencyHistogram::default();
    for (_, l) in totals(tx, st, &series, sel.source, range)?.values() {
        merged.merge(l);
    }
    Ok(quantiles.iter().map(|&q| merged.quantile(q)).collect())
}

/// The latest observation time of a series, from its newest day rollup (which outlives raw
/// retention).
const LAST_AT: &str = "SELECT max(last_at_ms) FROM rollup_day WHERE series_id = $1 \
    AND start_ms = (SELECT max(start_ms) FROM rollup_day WHERE series_id = $1)";

fn series_id(tx: &mut Transaction<'_>, st: &mut Stmts, key: &Key) -> Result<Option<i64>> {
    let stmt = st.get(
        tx,
        "SELECT id FROM series WHERE service = $1 AND component = $2 AND region = $3",
    )?;
    Ok(tx
        .query_opt(
            &stmt,
            &[
                &key.service.as_str(),
                &key.component.as_str(),
                &key.region.as_str(),
            ],
        )?
        .map(|r| r.get(0)))
}

fn last_at_ms(tx: &mut Transaction<'_>, st: &mut Stmts, series_id: i64) -> Result<Option<i64>> {
    let stmt = st.get(tx, LAST_AT)?;
    Ok(tx.query_one(&stmt, &[&series_id])?.get(0))
}

pub(crate) fn last_observation_at(
    tx: &mut Transaction<'_>,
    st: &mut Stmts,
    key: &Key,
) -> Result<Option<DateTime<Utc>>> {
    let Some(id) = series_id(tx, st, key)? else {
        return Ok(None);
    };
    last_at_ms(tx, st, id)?.map(from_ms).transpose()
}

pub(crate) fn last_observation_times(
    tx: &mut Transaction<'_>,
    st: &mut Stmts,
) -> Result<Vec<(Key, DateTime<Utc>)>> {
    let stmt = st.get(
        tx,
        "SELECT s.service, s.component, s.region, \
         (SELECT max(d.last_at_ms) FROM rollup_day d WHERE d.series_id = s.id AND d.start_ms = \
          (SELECT max(start_ms) FROM rollup_day WHERE series_id = s.id)) \
         FROM series s \
         ORDER BY s.service COLLATE \"C\", s.component COLLATE \"C\", s.region COLLATE \"C\"",
    )?;
    let mut out = Vec::new();
    for r in tx.query(&stmt, &[])? {
        let Some(last) = r.get::<_, Option<i64>>(3) else {
            continue;
        };
        let key = Key {
            service: service_name(r.get(0))?,
            component: component(r.get(1))?,
            region: Region::new(r.get::<_, String>(2)),
        };
        out.push((key, from_ms(last)?));
    }
    Ok(out)
}

pub(crate) fn recent_latencies(
    tx: &mut Transaction<'_>,
    st: &mut Stmts,
    key: &Key,
    source: Source,
    limit: usize,
) -> Result<Vec<f32>> {
    let Some(id) = series_id(tx, st, key)? else {
        return Ok(Vec::new());
    };
    let Some(last) = last_at_ms(tx, st, id)? else {
        return Ok(Vec::new());
    };
    let to = last + 1;
    let from = to - RECENT_LOOKBACK_MS;
    let stmt = st.get(
        tx,
        "SELECT total_us FROM observation WHERE series_id = $1 AND at_ms >= $2 AND at_ms < $3 \
         AND source = $4 AND health = 'up' AND total_us IS NOT NULL \
         ORDER BY at_ms DESC, id DESC LIMIT $5",
    )?;
    let rows = tx.query(
        &stmt,
        &[&id, &from, &to, &source.as_str(), &limit_of(limit)],
    )?;
    let mut out: Vec<f32> = rows.iter().filter_map(|r| phase_ms(r.get(0))).collect();
    out.reverse();
    Ok(out)
}
