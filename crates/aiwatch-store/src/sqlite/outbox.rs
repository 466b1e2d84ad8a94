//! The alert outbox in SQLite: notifications written in the transaction of the incident change
//! that caused them, picked up when due, and their attempts' outcomes.

use aiwatch_core::alert_rules::{AlertMessage, Notification};
use aiwatch_core::assess::Incident;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};

use super::{from_ms, to_ms, Writer};
use crate::error::{Error, Result};
use crate::store::{Delivery, DeliveryOutcome, DeliveryQuery, DeliveryState};

const INSERT: &str = "INSERT OR IGNORE INTO delivery
    (alert, idempotency_key, event, incident_id, message, state, attempts, next_at_ms, created_at_ms, updated_at_ms)
    VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6, ?6, ?6)";

const COLUMNS: &str = "id, alert, message, state, attempts, next_at_ms, created_at_ms, updated_at_ms, last_status, last_error";

/// A delivery row as read: id, alert, message, state, attempts, next_at, created_at,
/// updated_at, last_status, last_error.
type RawDelivery = (
    i64,
    String,
    String,
    String,
    u32,
    i64,
    i64,
    i64,
    Option<u16>,
    Option<String>,
);

/// Longest error text kept per delivery.
const ERROR_CAP: usize = 500;

impl Writer {
    pub(crate) fn record(
        &mut self,
        incidents: &[Incident],
        notifications: &[Notification],
    ) -> Result<usize> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut inserted = 0;
        {
            for incident in incidents {
                super::write::upsert_incident_in(&tx, incident)?;
            }
            let mut stmt = tx.prepare_cached(INSERT)?;
            for n in notifications {
                let message = serde_json::to_string(&n.message).map_err(|e| Error::Encode {
                    what: "alert message",
                    reason: e.to_string(),
                })?;
                inserted += stmt.execute(params![
                    n.alert,
                    n.message.idempotency_key,
                    n.message.event.as_str(),
                    n.message.incident_id,
                    message,
                    to_ms(n.message.at),
                ])?;
            }
        }
        tx.commit()?;
        Ok(inserted)
    }

    pub(crate) fn finish_attempt(
        &mut self,
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
        self.conn
            .prepare_cached(
                "UPDATE delivery SET state = ?2, attempts = attempts + 1, next_at_ms = ?3,
                 updated_at_ms = ?4, last_status = ?5, last_error = ?6 WHERE id = ?1",
            )?
            .execute(params![
                id,
                state.as_str(),
                to_ms(next_at),
                to_ms(now),
                status,
                error
            ])?;
        Ok(())
    }

    pub(crate) fn prune_deliveries(&mut self, before: DateTime<Utc>) -> Result<usize> {
        Ok(self.conn.execute(
            "DELETE FROM delivery WHERE state != 'pending' AND updated_at_ms < ?1",
            params![to_ms(before)],
        )?)
    }
}

fn delivery(row: &Row<'_>) -> rusqlite::Result<RawDelivery> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
        row.get(8)?,
        row.get(9)?,
    ))
}

fn decode(raw: RawDelivery) -> Result<Delivery> {
    let (
        id,
        alert,
        message,
        state,
        attempts,
        next_at,
        created_at,
        updated_at,
        last_status,
        last_error,
    ) = raw;
    let message: AlertMessage = serde_json::from_str(&message).map_err(|e| Error::Decode {
        what: "alert message",
        reason: e.to_string(),
    })?;
    Ok(Delivery {
        id,
        alert,
        message,
        state: DeliveryState::parse(&state).ok_or_else(|| Error::Decode {
            what: "delivery state",
            reason: format!("`{state}`"),
        })?,
        attempts,
        next_at: from_ms(next_at)?,
        created_at: from_ms(created_at)?,
        updated_at: from_ms(updated_at)?,
        last_status,
        last_error,
    })
}

fn collect(conn: &Connection, sql: &str, args: impl rusqlite::Params) -> Result<Vec<Delivery>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(args, delivery)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(decode(row?)?);
    }
    Ok(out)
}

pub(crate) fn due(conn: &Connection, now: DateTime<Utc>, limit: usize) -> Result<Vec<Delivery>> {
    collect(
        conn,
        &format!("SELECT {COLUMNS} FROM delivery AS d WHERE state = 'pending' AND next_at_ms <= ?1
           AND NOT EXISTS (SELECT 1 FROM delivery AS e WHERE e.state = 'pending' AND e.alert = d.alert
                           AND e.incident_id = d.incident_id AND e.id < d.id)
           ORDER BY next_at_ms, id LIMIT ?2"),
        params![to_ms(now), limit as i64],
    )
}

pub(crate) fn next_at(conn: &Connection) -> Result<Option<DateTime<Utc>>> {
    let ms: Option<i64> = conn
        .query_row(
            "SELECT min(next_at_ms) FROM delivery WHERE state = 'pending'",
            [],
            |r| r.get(0),
        )
        .optional()?
        .flatten();
    ms.map(from_ms).transpose()
}

pub(crate) fn list(conn: &Connection, q: &DeliveryQuery) -> Result<Vec<Delivery>> {
    let order = if q.oldest_first { "ASC" } else { "DESC" };
    collect(
        conn,
        &format!(
            "SELECT {COLUMNS} FROM delivery
             WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR alert = ?2) AND (?3 IS NULL OR created_at_ms >= ?3)
             ORDER BY created_at_ms {order}, id {order} LIMIT ?4"
        ),
        params![
            q.state.map(DeliveryState::as_str),
            q.alert,
            q.since.map(to_ms),
            q.limit as i64
        ],
    )
}

pub(crate) fn counts(conn: &Connection) -> Result<Vec<(DeliveryState, u64)>> {
    let mut stmt = conn.prepare_cached("SELECT state, count(*) FROM delivery GROUP BY state")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (state, n) = row?;
        if let Some(state) = DeliveryState::parse(&state) {
            out.push((state, u64::try_from(n).unwrap_or(0)));
        }
    }
    Ok(out)
}
