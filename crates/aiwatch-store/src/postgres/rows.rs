//! Everything of `PostgresStore` that is rows rather than series: incidents, saved states, the
//! alert outbox, problem reports and posts, meta values, leases and pruning. Unique keys make the
//! writes idempotent (`ON CONFLICT`), so two instances recording the same incident change or
//! notification store it once.

use std::time::Duration;

use aiwatch_core::alert_rules::{AlertMessage, Notification};
use aiwatch_core::assess::{Incident, Key};
use aiwatch_core::observation::Region;
use aiwatch_core::ServiceName;
use chrono::{DateTime, Utc};
use postgres::{Row, Transaction};

use super::Stmts;
use crate::codec::{component, from_ms, serde_name, service_name, status};
use crate::error::{Error, Result};
use crate::lease::{plan, Lease};
use crate::store::{
    Delivery, DeliveryOutcome, DeliveryQuery, DeliveryState, Granularity, IncidentQuery, NewReport,
    PublicPost, ReportMinute, SavedState, TimeRange,
};
use crate::tiers::{rollup_table, to_ms};

/// At most this many rows are deleted per transaction.
pub(crate) const PRUNE_CHUNK: i64 = 20_000;

/// Longest error text kept per delivery.
const ERROR_CAP: usize = 500;

/// The advisory lock key lease claims hold, so claims of several instances run one at a time.
const LEASE_LOCK: i64 = 0x6169_776c;

fn limit_of(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn count(n: i64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

// === incidents and states ===

const UPSERT_INCIDENT: &str = "INSERT INTO incident \
    (id, service, component, region, opened_at_ms, resolved_at_ms, phase, body) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
    ON CONFLICT (id) DO UPDATE SET service = excluded.service, \
    component = excluded.component, region = excluded.region, \
    opened_at_ms = excluded.opened_at_ms, resolved_at_ms = excluded.resolved_at_ms, \
    phase = excluded.phase, body = excluded.body";

pub(crate) fn upsert_incident(
    tx: &mut Transaction<'_>,
    st: &mut Stmts,
    incident: &Incident,
) -> Result<()> {
    let body = serde_json::to_string(incident).map_err(|e| Error::Encode {
        what: "incident",
        reason: e.to_string(),
    })?;
    let phase = serde_name("incident phase", &incident.phase)?;
    let stmt = st.get(tx, UPSERT_INCIDENT)?;
    tx.execute(
        &stmt,
        &[
            &incident.id,
            &incident.key.service.as_str(),
            &incident.key.component.as_str(),
            &incident.key.region.as_str(),
            &to_ms(incident.opened_at),
            &incident.resolved_at.map(to_ms),
            &phase,
            &body,
        ],
    )?;
    Ok(())
}

fn incident_rows(rows: Vec<Row>) -> Result<Vec<Incident>> {
    rows.iter()
        .map(|r| crate::codec::incident(r.get(0)))
        .collect()
}

pub(crate) fn incident(
    tx: &mut Transaction<'_>,
    st: &mut Stmts,
    id: &str,
) -> Result<Option<Incident>> {
    let stmt = st.get(tx, "SELECT body FROM incident WHERE id = $1")?;
    Ok(incident_rows(tx.query(&stmt, &[&id])?)?.into_iter().next())
}

pub(crate) fn open_incidents(tx: &mut Transaction<'_>, st: &mut Stmts) -> Result<Vec<Incident>> {
    let stmt = st.get(
        tx,
        "SELECT body FROM incident WHERE resolved_at_ms IS NULL \
         ORDER BY opened_at_ms, id COLLATE \"C\"",
    )?;
    incident_rows(tx.query(&stmt, &[])?)
}

pub(crate) fn incidents(
    tx: &mut Transaction<'_>,
    st: &mut Stmts,
    q: &IncidentQuery,
) -> Result<Vec<Incident>> {
    let stmt = st.get(
        tx,
        "SELECT body FROM incident \
         WHERE ($1::text IS NULL OR service = $1) \
         AND ($2::bigint IS NULL OR resolved_at_ms IS NULL OR resolved_at_ms >= $2) \
         AND ($3::bigint IS NULL OR opened_at_ms < $3) \
         AND (NOT $4::bool OR resolved_at_ms IS NULL) \
         ORDER BY opened_at_ms DESC, id COLLATE \"C\" DESC LIMIT $5",
    )?;
    incident_rows(tx.query(
        &stmt,
        &[
            &q.service.as_ref().map(ServiceName::as_str),
            &q.from.map(to_ms),
            &q.to.map(to_ms),
            &q.open_only,
            &limit_of(q.limit),
        ],
    )?)
}

pub(crate) fn save_states(
    tx: &mut Transaction<'_>,
    st: &mut Stmts,
    states: &[SavedState],
) -> Result<()> {
    let stmt = st.get(
        tx,
        "INSERT INTO state (service, component, region, state, since_ms) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (service, component, region) \
         DO UPDATE SET state = excluded.state, since_ms = excluded.since_ms",
    )?;
    for s in states {
        tx.execute(
            &stmt,
            &[
                &s.key.service.as_str(),
                &s.key.component.as_str(),
                &s.key.region.as_str(),
                &serde_name("state", &s.state)?,
                &s.since.map(to_ms),
            ],
        )?;
    }
    Ok(())
}

pub(crate) fn load_states(tx: &mut Transaction<'_>, st: &mut Stmts) -> Result<Vec<SavedState>> {
    let stmt = st.get(
        tx,
        "SELECT service, component, region, state, since_ms FROM state \
         ORDER BY service COLLATE \"C\", component COLLATE \"C\", region COLLATE \"C\"",
    )?;
    tx.query(&stmt, &[])?
        .into_iter()
        .map(|r| {
            Ok(SavedState {
                key: Key {
                    service: service_name(r.get(0))?,
                    component: component(r.get(1))?,
                    region: Region::new(r.get::<_, String>(2)),
                },
                state: status(r.get(3))?,
                since: r.get::<_, Option<i64>>(4).map(from_ms).transpose()?,
            })
        })
        .collect()
}

// === pruning ===

pub(crate) fn prune_raw_chunk(
    tx: &mut Transaction<'_>,
    st: &mut Stmts,
    before_ms: i64,
) -> Result<usize> {
    let stmt = st.get(
        tx,
        "DELETE FROM observation WHERE ctid = ANY(ARRAY(\
         SELECT ctid FROM observation WHERE at_ms < $1 LIMIT $2))",
    )?;
    Ok(tx.execute(&stmt, &[&before_ms, &PRUNE_CHUNK])? as usize)
}

pub(crate) fn prune_rollup_chunk(
    tx: &mut Transaction<'_>,
    st: &mut Stmts,
    granularity: Granularity,
    before_ms: i64,
) -> Result<usize> {
    let table = rollup_table(granularity);
    let stmt = st.get(
        tx,
        &format!(
            "DELETE FROM {table} WHERE ctid = ANY(ARRAY(\
             SELECT ctid FROM {table} WHERE start_ms < $1 LIMIT $2))"
        ),
    )?;
    Ok(tx.execute(&stmt, &[&before_ms, &PRUNE_CHUNK])? as usize)
}

/// Raises the number kept in `meta` under `key` to `value` (never lowers it): how far a rollup
/// tier was pruned, or an agent's push sequence.
pub(crate) fn raise_meta(
    tx: &mut Transaction<'_>,
    st: &mut Stmts,
    key: &str,
    value: i64,
) -> Result<()> {
    let stmt = st.get(
        tx,
        "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET \
         value = greatest(meta.value::bigint, excluded.value::bigint)::text",
    )?;
    tx.execute(&stmt, &[&key, &value.to_string()])?;
    Ok(())
}

/// The number kept in `meta` under `key`, if any.
pub(crate) fn meta_number(
    tx: &mut Transaction<'_>,
    st: &mut Stmts,
    key: &str,
) -> Result<Option<i64>> {
    let stmt = st.get(tx, "SELECT value::bigint FROM meta WHERE key = $1")?;
    Ok(tx.query_opt(&stmt, &[&key])?.map(|r| r.get(0)))
}

pub(crate) fn prune_deliveries(
    tx: &mut Transaction<'_>,
    st: &mut Stmts,
    before: DateTime<Utc>,
) -> Result<usize> {
    let stmt = st.get(
        tx,
        "DELETE FROM delivery WHERE state <> 'pending' AND updated_at_ms < $1",
    )?;
    Ok(tx.execute(&stmt, &[&to_ms(before)])? as usize)
}

pub(crate) fn prune_reports(
    tx: &mut Transaction<'_>,
    st: &mut Stmts,
    before: DateTime<Utc>,
) -> Result<usize> {
    let ms = to_ms(before);
    let reports = st.get(tx, "DELETE FROM report WHERE at_ms < $1")?;
    let posts = st.get(tx, "DELETE FROM public_post WHERE at_ms < $1")?;
    Ok((tx.execute(&reports, &[&ms])? + tx.execute(&posts, &[&ms])?) as usize)
}

// === the outbox ===

const DELIVERY_COLUMNS: &str = "id, alert, message, state, attempts, next_at_ms, created_at_ms, \
    updated_at_ms, last_status, last_error";

pub(crate) fn record(
    tx: &mut Transaction<'_>,
    st: &mut Stmts,
    incidents: &[Incident],
    notifications: &[Notification],
) -> Result<usize> {
    for incident in incidents {
        upsert_incident(tx, st, incident)?;
    }
    let stmt = st.get(
        tx,
        "INSERT INTO delivery (alert, idempotency_key, event, incident_id, message, state, \
         attempts, next_at_ms, created_at_ms, updated_at_ms) \
         VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6, $6) \
         ON CONFLICT (alert, idempotency_key) DO NOTHING",
    )?;
    let mut inserted = 0;
    for n in notifications {
        let message = serde_json::to_string(&n.message).map_err(|e| Error::Encode {
            what: "alert message",
            reason: e.to_string(),
        })?;
        inserted += tx.execute(
            &stmt,
            &[
                &n.alert,
                &n.message.idempotency_key,
                &n.message.event.as_str(),
                &n.message.incident_id,
                &message,
                &to_ms(n.message.at),
            ],
        )? as usize;
    }
    Ok(inserted)
}

fn decode_delivery(r: &Row) -> Result<Delivery> {
    let message: AlertMessage = serde_json::from_str(r.get(2)).map_err(|e| Error::Decode {
        what: "alert message",
        reason: e.to_string(),
    })?;
    let state: String = r.get(3);
    Ok(Delivery {
        id: r.get(0),
        alert: r.get(1),
        message,
        state: DeliveryState::parse(&state).ok_or_else(|| Error::Decode {
            what: "delivery state",
            reason: format!("`{state}`"),
        })?,
        attempts: u32::try_from(r.get::<_, i64>(4)).unwrap_or(u32::MAX),
        next_at: from_ms(r.get(5))?,
        created_at: from_ms(r.get(6))?,
        updated_at: from_ms(r.get(7))?,
        last_status: r
            .get::<_, Option<i32>>(8)
            .and_then(|s| u16::try_from(s).ok()),
        last_error: r.get(9),
    })
}

pub(crate) fn due_deliveries(
    tx: &mut Transaction<'_>,
    st: &mut Stmts,
    now: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<Delivery>> {
    let stmt = st.get(
        tx,
        &format!(
            "SELECT {DELIVERY_COLUMNS} FROM delivery AS d \
             WHERE state = 'pending' AND next_at_ms <= $1 \
             AND NOT EXISTS (SELECT 1 FROM delivery AS e WHERE e.state = 'pending' \
             AND e.alert = d.alert AND e.incident_id = d.incident_id AND e.id < d.id) \
             ORDER BY next_at_ms, id LIMIT $2"
        ),
    )?;
    tx.query(&stmt, &[&to_ms(now), &limit_of(limit)])?
        .iter()
        .map(decode_delivery)
        .collect()
}

pub(crate) fn next_delivery_at(
    tx: &mut Transaction<'_>,
    st: &mut Stmts,
) -> Result<Option<DateTime<Utc>>> {
    let stmt = st.get(
        tx,
        "SELECT min(next_at_ms) FROM delivery WHERE state = 'pending'",
    )?;
    tx.query_one(&stmt, &[])?
        .get::<_, Option<i64>>(0)
        .map(from_ms)
        .transpose()
}

pub(crate) fn finish_attempt(
    tx: &mut Transaction<'_>,
    st: &mut Stmts,
    id: i64,
    outcome: &DeliveryOutcome,
    now: DateTime<Utc>,
) -> Result<()> {
    let (state, next_at, status, error) = match outcome {
        DeliveryOutcome::Sent { status } => (DeliveryState::Sent, now, *status, None),
        DeliveryOutcome::Retry { at, status, error } => {
            (DeliveryState::Pending, *at, *status, Some(error.as_str()))
        }
        DeliveryOutcome::Dead { status, error } => {
            (DeliveryState::Dead, now, *status, Some(error.as_str()))
        }
    };
    let error = error.map(|e| e.chars().take(ERROR_CAP).collect::<String>());
    let stmt = st.get(
        tx,
        "UPDATE delivery SET state = $2, attempts = attempts + 1, next_at_ms = $3, \
         updated_at_ms = $4, last_status = $5, last_error = $6 WHERE id = $1",
    )?;
    tx.execute(
        &stmt,
        &[
            &id,
            &state.as_str(),
            &to_ms(next_at),
            &to_ms(now),
            &status.map(i32::from),
            &error,
        ],
    )?;
    Ok(())
}

pub(crate) fn deliveries(
    tx: &mut Transaction<'_>,
    st: &mut Stmts,
    q: &DeliveryQuery,
) -> Result<Vec<Delivery>> {
    let order = if q.oldest_first { "ASC" } else { "DESC" };
    let stmt = st.get(
        tx,
        &format!(
            "SELECT {DELIVERY_COLUMNS} FROM delivery \
             WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR alert = $2) \
             AND ($3::bigint IS NULL OR created_at_ms >= $3) \
             ORDER BY created_at_ms {order}, id {order} LIMIT $4"
        ),
    )?;
    tx.query(
        &stmt,
        &[
            &q.state.map(DeliveryState::as_str),
            &q.alert,
            &q.since.map(to_ms),
            &limit_of(q.limit),
        ],
    )?
    .iter()
    .map(decode_delivery)
    .collect()
}

pub(crate) fn delivery_counts(
    tx: &mut Transaction<'_>,
    st: &mut Stmts,
) -> Result<Vec<(DeliveryState, u64)>> {
    let stmt = st.get(tx, "SELECT state, count(*) FROM delivery GROUP BY state")?;
    Ok(tx
        .query(&stmt, &[])?
        .iter()
        .filter_map(|r| {
            let state = DeliveryState::parse(r.get(0))?;
            Some((state, u64::try_from(r.get::<_, i64>(1)).unwrap_or(0)))
        })
        .collect())
}

// === reports, posts, meta ===

pub(crate) fn insert_report(
    tx: &mut Transaction<'_>,
    st: &mut Stmts,
    r: &NewReport,
) -> Result<bool> {
    let stmt = st.get(
        tx,
        "INSERT INTO report (service, region, symptom, reporter, window_start_ms, at_ms, comment) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (service, reporter, window_start_ms) DO NOTHING",
    )?;
    let inserted = tx.execute(
        &stmt,
        &[
            &r.service.as_str(),
            &r.region.as_str(),
            &r.symptom,
            &r.reporter,
            &to_ms(r.window_start),
            &to_ms(r.at),
            &r.comment,
        ],
    )?;
    Ok(inserted == 1)
}

fn minute(m: i64) -> Result<DateTime<Utc>> {
    from_ms(m * 60_000)
}

pub(crate) fn report_minutes(
    tx: &mut Transaction<'_>,
    st: &mut Stmts,
    service: &ServiceName,
    region: Option<&Region>,
    range: TimeRange,
) -> Result<Vec<(DateTime<Utc>, u32)>> {
    let stmt = st.get(
        tx,
        "SELECT at_ms / 60000, count(*) FROM report \
         WHERE service = $1 AND ($2::text IS NULL OR region = $2) AND at_ms >= $3 AND at_ms < $4 \
         GROUP BY 1 ORDER BY 1",
    )?;
    tx.query(
        &stmt,
        &[
            &service.as_str(),
            &region.map(Region::as_str),
            &to_ms(range.from),
            &to_ms(range.to),
        ],
    )?
    .iter()
    .map(|r| Ok((minute(r.get(0))?, count(r.get(1)))))
    .collect()
}

pub(crate) fn report_minutes_all(
    tx: &mut Transaction<'_>,
    st: &mut Stmts,
    range: TimeRange,
) -> Result<Vec<ReportMinute>> {
    let stmt = st.get(
        tx,
        "SELECT service, region, at_ms / 60000, count(*) FROM report \
         WHERE at_ms >= $1 AND at_ms < $2 GROUP BY 1, 2, 3",
    )?;
    tx.query(&stmt, &[&to_ms(range.from), &to_ms(range.to)])?
        .iter()
        .map(|r| {
            let service = ServiceName::parse(r.get(0)).map_err(|reason| Error::Decode {
                what: "report service",
                reason,
            })?;
            Ok((
                service,
                Region::from(r.get::<_, String>(1)),
                minute(r.get(2))?,
                count(r.get(3)),
            ))
        })
        .collect()
}

pub(crate) fn report_symptoms(
    tx: &mut Transaction<'_>,
    st: &mut Stmts,
    service: &ServiceName,
    range: TimeRange,
) -> Result<Vec<(String, u32)>> {
    let stmt = st.get(
        tx,
        "SELECT symptom, count(*) FROM report WHERE service = $1 AND at_ms >= $2 AND at_ms < $3 \
         GROUP BY symptom ORDER BY 2 DESC, 1 COLLATE \"C\"",
    )?;
    Ok(tx
        .query(
            &stmt,
            &[&service.as_str(), &to_ms(range.from), &to_ms(range.to)],
        )?
        .iter()
        .map(|r| (r.get(0), count(r.get(1))))
        .collect())
}

pub(crate) fn insert_posts(
    tx: &mut Transaction<'_>,
    st: &mut Stmts,
    posts: &[PublicPost],
) -> Result<usize> {
    let stmt = st.get(
        tx,
        "INSERT INTO public_post (service, id, source, title, url, at_ms, weight) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (service, id) DO NOTHING",
    )?;
    let mut new = 0;
    for p in posts {
        new += tx.execute(
            &stmt,
            &[
                &p.service.as_str(),
                &p.id,
                &p.source,
                &p.title,
                &p.url,
                &to_ms(p.at),
                &p.weight,
            ],
        )? as usize;
    }
    Ok(new)
}

pub(crate) fn posts(
    tx: &mut Transaction<'_>,
    st: &mut Stmts,
    service: &ServiceName,
    range: TimeRange,
    limit: usize,
) -> Result<Vec<PublicPost>> {
    let stmt = st.get(
        tx,
        "SELECT id, source, title, url, at_ms, weight FROM public_post \
         WHERE service = $1 AND at_ms >= $2 AND at_ms < $3 ORDER BY at_ms DESC LIMIT $4",
    )?;
    tx.query(
        &stmt,
        &[
            &service.as_str(),
            &to_ms(range.from),
            &to_ms(range.to),
            &limit_of(limit),
        ],
    )?
    .iter()
    .map(|r| {
        Ok(PublicPost {
            service: service.clone(),
            id: r.get(0),
            source: r.get(1),
            title: r.get(2),
            url: r.get(3),
            at: from_ms(r.get(4))?,
            weight: r.get(5),
        })
    })
    .collect()
}

pub(crate) fn meta_value(
    tx: &mut Transaction<'_>,
    st: &mut Stmts,
    key: &str,
    default: &str,
) -> Result<String> {
    let insert = st.get(
        tx,
        "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
    )?;
    tx.execute(&insert, &[&key, &default])?;
    let select = st.get(tx, "SELECT value FROM meta WHERE key = $1")?;
    Ok(tx.query_one(&select, &[&key])?.get(0))
}

// === leases ===

fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2)
}

pub(crate) fn claim_checks(
    tx: &mut Transaction<'_>,
    st: &mut Stmts,
    instance: &str,
    keys: &[String],
    ttl: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<String>> {
    let now_ms = to_ms(now);
    let until = now_ms.saturating_add(ttl_ms(ttl));
    let lock = st.get(tx, "SELECT pg_advisory_xact_lock($1)")?;
    tx.execute(&lock, &[&LEASE_LOCK])?;
    let beat = st.get(
        tx,
        "INSERT INTO lease_instance (instance, expires_at_ms) VALUES ($1, $2) \
         ON CONFLICT (instance) DO UPDATE SET expires_at_ms = excluded.expires_at_ms",
    )?;
    tx.execute(&beat, &[&instance, &until])?;
    let gone = st.get(tx, "DELETE FROM lease_instance WHERE expires_at_ms <= $1")?;
    tx.execute(&gone, &[&now_ms])?;
    let live = st.get(tx, "SELECT count(*) FROM lease_instance")?;
    let live: i64 = tx.query_one(&live, &[])?.get(0);
    let current = st.get(
        tx,
        "SELECT key, holder, expires_at_ms FROM lease WHERE key = ANY($1)",
    )?;
    let current: Vec<Lease> = tx
        .query(&current, &[&keys])?
        .iter()
        .map(|r| Lease {
            key: r.get(0),
            holder: r.get(1),
            expires_at_ms: r.get(2),
        })
        .collect();
    let plan = plan(
        instance,
        keys,
        &current,
        usize::try_from(live).unwrap_or(1),
        now_ms,
    );
    let release = st.get(tx, "DELETE FROM lease WHERE holder = $1 AND key = ANY($2)")?;
    tx.execute(&release, &[&instance, &plan.release])?;
    let hold = st.get(
        tx,
        "INSERT INTO lease (key, holder, expires_at_ms) SELECT k, $2, $3 FROM unnest($1::text[]) k \
         ON CONFLICT (key) DO UPDATE SET holder = excluded.holder, \
         expires_at_ms = excluded.expires_at_ms",
    )?;
    tx.execute(&hold, &[&plan.hold, &instance, &until])?;
    Ok(plan.hold)
}

pub(crate) fn release_checks(
    tx: &mut Transaction<'_>,
    st: &mut Stmts,
    instance: &str,
) -> Result<()> {
    let leases = st.get(tx, "DELETE FROM lease WHERE holder = $1")?;
    tx.execute(&leases, &[&instance])?;
    let beat = st.get(tx, "DELETE FROM lease_instance WHERE instance = $1")?;
    tx.execute(&beat, &[&instance])?;
    Ok(())
}
