//! Observations into PostgreSQL: a batch is one statement whatever its size — its rows (`INSERT
//! … SELECT FROM unnest(arrays)`) and one UPSERT per rollup tier adding the batch's aggregates
//! to the stored buckets, as data-modifying CTEs — preceded, in the same transaction, by
//! statements for series seen for the first time. Rows are locked in key order (series, then
//! minute, hour and day buckets, each sorted) so concurrent writers do not deadlock on shared
//! buckets (and a deadlock all the same is retried by the caller).

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use aiwatch_core::observation::{Health, Observation, Source};
use postgres::types::ToSql;
use postgres::GenericClient;

use super::Stmts;
use crate::error::Result;
use crate::histogram::{HealthCounts, LatencyHistogram, BUCKETS};
use crate::store::Granularity;
use crate::tiers::{histogram_columns, rollup_table, to_ms};

/// One series a batch touches: its parts and the earliest time the batch has for it.
struct SeriesRow {
    service: String,
    component: String,
    region: String,
    first_ms: i64,
}

/// What one bucket gains from the batch.
#[derive(Default)]
struct Aggregate {
    counts: HealthCounts,
    latency: LatencyHistogram,
    last_at_ms: i64,
}

/// A batch made ready for the database outside any transaction.
pub(crate) struct Plan<'a> {
    batch: &'a [Observation],
    /// The series key of each observation.
    keys: Vec<String>,
    /// By series key, sorted (the lock order).
    series: BTreeMap<String, SeriesRow>,
    /// Per granularity: (series key, bucket start, source) → aggregate.
    tiers: [HashMap<(String, i64, Source), Aggregate>; 3],
}

fn series_key(service: &str, component: &str, region: &str) -> String {
    format!("{service}\0{component}\0{region}")
}

impl<'a> Plan<'a> {
    pub(crate) fn new(batch: &'a [Observation]) -> Plan<'a> {
        let mut plan = Plan {
            batch,
            keys: Vec::with_capacity(batch.len()),
            series: BTreeMap::new(),
            tiers: Default::default(),
        };
        for obs in batch {
            let at_ms = to_ms(obs.at);
            let key = series_key(
                obs.service.as_str(),
                obs.component.as_str(),
                obs.region.as_str(),
            );
            plan.series
                .entry(key.clone())
                .and_modify(|s| s.first_ms = s.first_ms.min(at_ms))
                .or_insert_with(|| SeriesRow {
                    service: obs.service.as_str().to_owned(),
                    component: obs.component.as_str().to_owned(),
                    region: obs.region.as_str().to_owned(),
                    first_ms: at_ms,
                });
            let latency = match (obs.health, obs.phases.total) {
                (Health::Up | Health::Degraded, Some(total)) if total.is_finite() => {
                    Some(f64::from(total))
                }
                _ => None,
            };
            for (map, g) in plan.tiers.iter_mut().zip(Granularity::ALL) {
                let start = at_ms.div_euclid(g.millis()) * g.millis();
                let agg = map.entry((key.clone(), start, obs.source)).or_default();
                agg.counts.record(obs.health);
                agg.last_at_ms = agg.last_at_ms.max(at_ms);
                if let Some(ms) = latency {
                    agg.latency.record(ms);
                }
            }
            plan.keys.push(key);
        }
        plan
    }

    /// The distinct series keys of the batch.
    pub(crate) fn series_keys(&self) -> impl Iterator<Item = &str> {
        self.series.keys().map(String::as_str)
    }
}

const INSERT_SERIES: &str = "INSERT INTO series (service, component, region, first_seen_ms) \
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) \
    ON CONFLICT (service, component, region) DO NOTHING";

const SELECT_SERIES: &str = "SELECT s.id, s.first_seen_ms FROM \
    unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS k(service, component, region, n) \
    JOIN series s USING (service, component, region) ORDER BY k.n";

const EARLIER_FIRST_SEEN: &str =
    "UPDATE series SET first_seen_ms = $2 WHERE id = $1 AND first_seen_ms > $2";

/// The rows of a batch, `$first`… (12 arrays).
fn observations_sql(first: usize) -> String {
    let types = [
        "bigint", "bigint", "text", "text", "text", "bigint", "bigint", "bigint", "bigint",
        "bigint", "bool", "text",
    ];
    let arrays: Vec<String> = types
        .iter()
        .enumerate()
        .map(|(i, t)| format!("${}::{t}[]", first + i))
        .collect();
    format!(
        "INSERT INTO observation (series_id, at_ms, source, health, cause, dns_us, connect_us, \
         tls_us, first_byte_us, total_us, complete, detail) SELECT * FROM unnest({})",
        arrays.join(", ")
    )
}

/// How many parameters a tier's UPSERT takes: 11 fixed arrays, the day tier's `last_at_ms`,
/// one array per histogram column.
fn tier_params(g: Granularity) -> usize {
    11 + usize::from(g == Granularity::Day) + BUCKETS
}

/// A tier's UPSERT adding the batch's aggregates to the stored buckets, `$first`….
fn upsert_sql(g: Granularity, first: usize) -> String {
    let day = g == Granularity::Day;
    let hist: Vec<String> = histogram_columns().collect();
    let mut columns: Vec<String> = [
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
    ]
    .map(String::from)
    .to_vec();
    let mut types: Vec<&str> = vec!["bigint", "bigint", "text"];
    types.extend(["bigint"; 8]);
    if day {
        columns.push("last_at_ms".into());
        types.push("bigint");
    }
    columns.extend(hist.iter().cloned());
    types.extend(std::iter::repeat_n("bigint", hist.len()));
    let arrays: Vec<String> = types
        .iter()
        .enumerate()
        .map(|(i, t)| format!("${}::{t}[]", first + i))
        .collect();
    let table = rollup_table(g);
    let mut set: Vec<String> = [
        "up",
        "degraded",
        "down",
        "unknown",
        "lat_count",
        "lat_sum_us",
    ]
    .iter()
    .map(|c| c.to_string())
    .chain(hist)
    .map(|c| format!("{c} = t.{c} + excluded.{c}"))
    .collect();
    set.push("lat_min_us = least(t.lat_min_us, excluded.lat_min_us)".into());
    set.push("lat_max_us = greatest(t.lat_max_us, excluded.lat_max_us)".into());
    if day {
        set.push("last_at_ms = greatest(t.last_at_ms, excluded.last_at_ms)".into());
    }
    format!(
        "INSERT INTO {table} AS t ({}) SELECT * FROM unnest({}) \
         ON CONFLICT (series_id, start_ms, source) DO UPDATE SET {}",
        columns.join(", "),
        arrays.join(", "),
        set.join(", ")
    )
}

/// A whole batch as one statement — its rows, the three tiers' UPSERTs and the optional
/// cursor raise as data-modifying CTEs, run in this order — so a batch of known series is one
/// round trip and atomic without BEGIN and COMMIT. The cursor's key and value are the last
/// two parameters (a NULL key raises nothing).
static INGEST: LazyLock<String> = LazyLock::new(|| {
    let mut next = 1;
    let observations = observations_sql(next);
    next += 12;
    let tiers: Vec<String> = Granularity::ALL
        .iter()
        .map(|&g| {
            let sql = upsert_sql(g, next);
            next += tier_params(g);
            sql
        })
        .collect();
    let (key, value) = (next, next + 1);
    format!(
        "WITH o AS ({observations}), m AS ({}), h AS ({}), d AS ({}), \
         c AS (INSERT INTO meta (key, value) SELECT ${key}::text, ${value}::bigint::text \
               WHERE ${key}::text IS NOT NULL ON CONFLICT (key) DO UPDATE SET \
               value = greatest(meta.value::bigint, excluded.value::bigint)::text) \
         SELECT 1",
        tiers[0], tiers[1], tiers[2]
    )
});

fn ms_to_us(ms: f64) -> i64 {
    (ms * 1000.0).round() as i64
}

fn phase_us(ms: Option<f32>) -> Option<i64> {
    ms.filter(|v| v.is_finite()).map(|v| ms_to_us(f64::from(v)))
}

impl Plan<'_> {
    /// Whether the batch has a series the cache does not know (or knows as first seen later):
    /// then it needs statements of its own, in a transaction with the batch.
    pub(crate) fn has_new_series(&self, known: &HashMap<String, (i64, i64)>) -> bool {
        self.series.iter().any(|(key, row)| {
            known
                .get(key)
                .is_none_or(|&(_, first)| first > row.first_ms)
        })
    }
}

/// Writes the batch (and raises `cursor` to its number); returns the series it learned
/// (key → (id, first seen)) for the cache, which the caller adds once the batch committed.
pub(crate) fn insert(
    c: &mut impl GenericClient,
    st: &mut Stmts,
    plan: &Plan<'_>,
    known: &HashMap<String, (i64, i64)>,
    cursor: Option<(&str, i64)>,
) -> Result<HashMap<String, (i64, i64)>> {
    let ids = series_ids(c, st, plan, known)?;
    let id_of = |key: &str| ids.get(key).map(|(id, _)| *id).unwrap_or_default();

    let n = plan.batch.len();
    let mut series_id = Vec::with_capacity(n);
    let mut at_ms = Vec::with_capacity(n);
    let mut source = Vec::with_capacity(n);
    let mut health = Vec::with_capacity(n);
    let mut cause = Vec::with_capacity(n);
    let mut phases: [Vec<Option<i64>>; 5] = Default::default();
    let mut complete = Vec::with_capacity(n);
    let mut detail = Vec::with_capacity(n);
    for (obs, key) in plan.batch.iter().zip(&plan.keys) {
        series_id.push(id_of(key));
        at_ms.push(to_ms(obs.at));
        source.push(obs.source.as_str());
        health.push(obs.health.as_str());
        cause.push(obs.cause.as_str());
        let p = &obs.phases;
        for (column, value) in
            phases
                .iter_mut()
                .zip([p.dns, p.connect, p.tls, p.first_byte, p.total])
        {
            column.push(phase_us(value));
        }
        complete.push(obs.complete);
        detail.push(obs.detail.as_str());
    }
    let tiers: Vec<TierColumns<'_>> = plan
        .tiers
        .iter()
        .zip(Granularity::ALL)
        .map(|(map, g)| TierColumns::new(g == Granularity::Day, map, &id_of))
        .collect();
    let (cursor_key, cursor_value) = match cursor {
        Some((key, value)) => (Some(key), Some(value)),
        None => (None, None),
    };
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![
        &series_id, &at_ms, &source, &health, &cause, &phases[0], &phases[1], &phases[2],
        &phases[3], &phases[4], &complete, &detail,
    ];
    for tier in &tiers {
        tier.push_params(&mut params);
    }
    params.push(&cursor_key);
    params.push(&cursor_value);
    let stmt = st.get(c, &INGEST)?;
    c.execute(&stmt, &params)?;
    Ok(ids
        .into_iter()
        .filter(|(k, v)| known.get(k) != Some(v))
        .collect())
}

/// One tier's aggregates as parameter arrays, rows sorted by (series id, start, source): the
/// primary key's order, so locks are taken in it.
struct TierColumns<'a> {
    day: bool,
    /// series_id, start_ms, then the eight counts and latency columns.
    fixed: [Vec<Option<i64>>; 10],
    source: Vec<&'a str>,
    last_at_ms: Vec<i64>,
    hist: Vec<Vec<i64>>,
}

impl<'a> TierColumns<'a> {
    fn new(
        day: bool,
        map: &'a HashMap<(String, i64, Source), Aggregate>,
        id_of: &impl Fn(&str) -> i64,
    ) -> Self {
        let n = map.len();
        let mut rows: Vec<(i64, i64, &'a str, &'a Aggregate)> = map
            .iter()
            .map(|((key, start, src), agg)| (id_of(key), *start, src.as_str(), agg))
            .collect();
        rows.sort_unstable_by_key(|(id, start, src, _)| (*id, *start, *src));
        let mut out = TierColumns {
            day,
            fixed: Default::default(),
            source: Vec::with_capacity(n),
            last_at_ms: Vec::with_capacity(n),
            hist: (0..BUCKETS).map(|_| Vec::with_capacity(n)).collect(),
        };
        for (id, start, src, agg) in rows {
            let c = &agg.counts;
            let l = &agg.latency;
            let values = [
                Some(id),
                Some(start),
                Some(c.up as i64),
                Some(c.degraded as i64),
                Some(c.down as i64),
                Some(c.unknown as i64),
                Some(l.count as i64),
                Some(ms_to_us(l.sum_ms)),
                l.min_ms.map(ms_to_us),
                l.max_ms.map(ms_to_us),
            ];
            for (column, value) in out.fixed.iter_mut().zip(values) {
                column.push(value);
            }
            out.source.push(src);
            out.last_at_ms.push(agg.last_at_ms);
            for (column, value) in out.hist.iter_mut().zip(l.buckets) {
                column.push(value as i64);
            }
        }
        out
    }

    /// Appends this tier's parameters in the UPSERT's column order.
    fn push_params<'p>(&'p self, params: &mut Vec<&'p (dyn ToSql + Sync)>) {
        params.push(&self.fixed[0]);
        params.push(&self.fixed[1]);
        params.push(&self.source);
        for column in &self.fixed[2..] {
            params.push(column);
        }
        if self.day {
            params.push(&self.last_at_ms);
        }
        for column in &self.hist {
            params.push(column);
        }
    }
}

/// Every series of the batch with its id, inserting new ones and moving first-seen earlier
/// where the batch goes back further.
fn series_ids(
    tx: &mut impl GenericClient,
    st: &mut Stmts,
    plan: &Plan<'_>,
    known: &HashMap<String, (i64, i64)>,
) -> Result<HashMap<String, (i64, i64)>> {
    let mut out: HashMap<String, (i64, i64)> = HashMap::with_capacity(plan.series.len());
    let mut unknown: Vec<(&String, &SeriesRow)> = Vec::new();
    for (key, row) in &plan.series {
        match known.get(key) {
            Some(&(id, first)) if first <= row.first_ms => {
                out.insert(key.clone(), (id, first));
            }
            _ => unknown.push((key, row)),
        }
    }
    if unknown.is_empty() {
        return Ok(out);
    }
    let services: Vec<&str> = unknown.iter().map(|(_, r)| r.service.as_str()).collect();
    let components: Vec<&str> = unknown.iter().map(|(_, r)| r.component.as_str()).collect();
    let regions: Vec<&str> = unknown.iter().map(|(_, r)| r.region.as_str()).collect();
    let firsts: Vec<i64> = unknown.iter().map(|(_, r)| r.first_ms).collect();
    let stmt = st.get(tx, INSERT_SERIES)?;
    tx.execute(&stmt, &[&services, &components, &regions, &firsts])?;
    let stmt = st.get(tx, SELECT_SERIES)?;
    let found = tx.query(&stmt, &[&services, &components, &regions])?;
    if found.len() != unknown.len() {
        return Err(crate::error::Error::Decode {
            what: "series ids",
            reason: format!(
                "{} of {} series found after inserting them",
                found.len(),
                unknown.len()
            ),
        });
    }
    let update = st.get(tx, EARLIER_FIRST_SEEN)?;
    for ((key, row), r) in unknown.iter().zip(found) {
        let id: i64 = r.get(0);
        let mut first: i64 = r.get(1);
        if row.first_ms < first {
            tx.execute(&update, &[&id, &row.first_ms])?;
            first = row.first_ms;
        }
        out.insert((*key).clone(), (id, first));
    }
    Ok(out)
}
