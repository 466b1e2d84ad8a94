//! Problem reports and public posts in SQLite: a report counts once per reporter, service and
//! window (a unique index, so the check and the insert are one statement), and counts are read
//! back per minute for the crowd detector and the charts.

use aiwatch_core::observation::Region;
use aiwatch_core::ServiceName;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};

use super::{from_ms, to_ms, Writer};
use crate::error::{Error, Result};
use crate::store::{NewReport, PublicPost, ReportMinute, TimeRange};

impl Writer {
    pub(crate) fn insert_report(&mut self, r: &NewReport) -> Result<bool> {
        let inserted = self
            .conn
            .prepare_cached(
                "INSERT OR IGNORE INTO report (service, region, symptom, reporter, window_start_ms, at_ms, comment)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                r.service.as_str(),
                r.region.as_str(),
                r.symptom,
                r.reporter,
                to_ms(r.window_start),
                to_ms(r.at),
                r.comment
            ])?;
        Ok(inserted == 1)
    }

    pub(crate) fn insert_posts(&mut self, posts: &[PublicPost]) -> Result<usize> {
        let tx = self.conn.transaction()?;
        let mut new = 0;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO public_post (service, id, source, title, url, at_ms, weight)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for p in posts {
                new += stmt.execute(params![
                    p.service.as_str(),
                    p.id,
                    p.source,
                    p.title,
                    p.url,
                    to_ms(p.at),
                    p.weight
                ])?;
            }
        }
        tx.commit()?;
        Ok(new)
    }

    pub(crate) fn meta_value(&mut self, key: &str, default: &str) -> Result<String> {
        self.conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES (?1, ?2)",
            params![key, default],
        )?;
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))?)
    }

    pub(crate) fn claim_checks(
        &mut self,
        instance: &str,
        keys: &[String],
        ttl: std::time::Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>> {
        let now_ms = to_ms(now);
        let until = now_ms.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2));
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO lease_instance (instance, expires_at_ms) VALUES (?1, ?2) \
             ON CONFLICT (instance) DO UPDATE SET expires_at_ms = excluded.expires_at_ms",
            params![instance, until],
        )?;
        tx.execute(
            "DELETE FROM lease_instance WHERE expires_at_ms <= ?1",
            [now_ms],
        )?;
        let live: i64 = tx.query_row("SELECT count(*) FROM lease_instance", [], |r| r.get(0))?;
        let mut current = Vec::new();
        {
            let mut stmt =
                tx.prepare_cached("SELECT key, holder, expires_at_ms FROM lease WHERE key = ?1")?;
            for key in keys {
                let mut rows = stmt.query([key])?;
                while let Some(r) = rows.next()? {
                    current.push(crate::lease::Lease {
                        key: r.get(0)?,
                        holder: r.get(1)?,
                        expires_at_ms: r.get(2)?,
                    });
                }
            }
        }
        let plan = crate::lease::plan(
            instance,
            keys,
            &current,
            usize::try_from(live).unwrap_or(1),
            now_ms,
        );
        {
            let mut release =
                tx.prepare_cached("DELETE FROM lease WHERE holder = ?1 AND key = ?2")?;
            for key in &plan.release {
                release.execute(params![instance, key])?;
            }
            let mut hold = tx.prepare_cached(
                "INSERT INTO lease (key, holder, expires_at_ms) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (key) DO UPDATE SET holder = excluded.holder, \
                 expires_at_ms = excluded.expires_at_ms",
            )?;
            for key in &plan.hold {
                hold.execute(params![key, instance, until])?;
            }
        }
        tx.commit()?;
        Ok(plan.hold)
    }

    pub(crate) fn release_checks(&mut self, instance: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM lease WHERE holder = ?1", [instance])?;
        self.conn
            .execute("DELETE FROM lease_instance WHERE instance = ?1", [instance])?;
        Ok(())
    }

    pub(crate) fn prune_reports(&mut self, before: DateTime<Utc>) -> Result<usize> {
        let ms = to_ms(before);
        Ok(self
            .conn
            .execute("DELETE FROM report WHERE at_ms < ?1", [ms])?
            + self
                .conn
                .execute("DELETE FROM public_post WHERE at_ms < ?1", [ms])?)
    }
}

fn minute(ms: i64) -> Result<DateTime<Utc>> {
    from_ms(ms.div_euclid(60_000) * 60_000)
}

fn count(n: i64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

pub(crate) fn minutes(
    conn: &Connection,
    service: &ServiceName,
    region: Option<&Region>,
    range: TimeRange,
) -> Result<Vec<(DateTime<Utc>, u32)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT at_ms / 60000, count(*) FROM report
         WHERE service = ?1 AND (?2 IS NULL OR region = ?2) AND at_ms >= ?3 AND at_ms < ?4
         GROUP BY at_ms / 60000 ORDER BY 1",
    )?;
    let rows = stmt.query_map(
        params![
            service.as_str(),
            region.map(Region::as_str),
            to_ms(range.from),
            to_ms(range.to)
        ],
        |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
    )?;
    let mut out = Vec::new();
    for row in rows {
        let (m, n) = row?;
        out.push((minute(m * 60_000)?, count(n)));
    }
    Ok(out)
}

pub(crate) fn minutes_all(conn: &Connection, range: TimeRange) -> Result<Vec<ReportMinute>> {
    let mut stmt = conn.prepare_cached(
        "SELECT service, region, at_ms / 60000, count(*) FROM report
         WHERE at_ms >= ?1 AND at_ms < ?2 GROUP BY service, region, at_ms / 60000",
    )?;
    let rows = stmt.query_map(params![to_ms(range.from), to_ms(range.to)], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (service, region, m, n) = row?;
        let service = ServiceName::parse(&service).map_err(|reason| Error::Decode {
            what: "report service",
            reason,
        })?;
        out.push((service, Region::from(region), minute(m * 60_000)?, count(n)));
    }
    Ok(out)
}

pub(crate) fn symptoms(
    conn: &Connection,
    service: &ServiceName,
    range: TimeRange,
) -> Result<Vec<(String, u32)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT symptom, count(*) FROM report WHERE service = ?1 AND at_ms >= ?2 AND at_ms < ?3
         GROUP BY symptom ORDER BY 2 DESC, 1",
    )?;
    let rows = stmt.query_map(
        params![service.as_str(), to_ms(range.from), to_ms(range.to)],
        |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
    )?;
    let mut out = Vec::new();
    for row in rows {
        let (symptom, n) = row?;
        out.push((symptom, count(n)));
    }
    Ok(out)
}

pub(crate) fn posts(
    conn: &Connection,
    service: &ServiceName,
    range: TimeRange,
    limit: usize,
) -> Result<Vec<PublicPost>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, source, title, url, at_ms, weight FROM public_post
         WHERE service = ?1 AND at_ms >= ?2 AND at_ms < ?3 ORDER BY at_ms DESC LIMIT ?4",
    )?;
    let rows = stmt.query_map(
        params![
            service.as_str(),
            to_ms(range.from),
            to_ms(range.to),
            i64::try_from(limit).unwrap_or(i64::MAX)
        ],
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, f64>(5)?,
            ))
        },
    )?;
    let mut out = Vec::new();
    for row in rows {
        let (id, source, title, url, at, weight) = row?;
        out.push(PublicPost {
            service: service.clone(),
            id,
            source,
            title,
            url,
            at: from_ms(at)?,
            weight,
        });
    }
    Ok(out)
}
