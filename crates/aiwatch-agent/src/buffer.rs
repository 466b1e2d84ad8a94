//! The agent's on-disk buffer: every observation is numbered and written to a SQLite file
//! before any attempt to deliver it, and removed only once the server acknowledged it. A
//! server outage, an agent restart or a kill -9 therefore loses nothing, and delivery resumes
//! in order. The buffer is bounded: past [`Buffer::capacity`] the oldest observations are given
//! up and counted, so a server that stays away for weeks cannot fill the disk.

use std::path::Path;

use aiwatch_core::observation::Observation;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::Error;

/// Observations kept at most while the server cannot be reached (about a week of 100 checks
/// every 30 s).
pub const DEFAULT_CAPACITY: u64 = 2_000_000;

/// The agent's buffer file.
pub struct Buffer {
    conn: Connection,
    capacity: u64,
    stream: String,
}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buffer")
            .field("capacity", &self.capacity)
            .field("stream", &self.stream)
            .finish()
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS pending (
    seq  INTEGER PRIMARY KEY,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

impl Buffer {
    /// Opens (or creates) the buffer at `path`, keeping at most `capacity` observations.
    pub fn open(path: &Path, capacity: u64) -> Result<Self, Error> {
        let conn = Connection::open(path).map_err(|e| Error::Buffer {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        // WAL with NORMAL sync: a committed append survives the process being killed.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        let stream = match meta(&conn, "stream")? {
            Some(stream) => stream,
            None => {
                let stream = format!("{:016x}{:08x}", fastrand::u64(..), fastrand::u32(..));
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('stream', ?1)",
                    [&stream],
                )?;
                stream
            }
        };
        Ok(Self {
            conn,
            capacity: capacity.max(1),
            stream,
        })
    }

    /// This buffer's stream name (a new file starts a new stream).
    pub fn stream(&self) -> &str {
        &self.stream
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Numbers and saves `observations` (one transaction); past the capacity, the oldest are
    /// given up. Returns how many were given up.
    pub fn append(&mut self, observations: &[Observation]) -> Result<u64, Error> {
        if observations.is_empty() {
            return Ok(0);
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let next: i64 = tx.query_row(
            "SELECT max(coalesce((SELECT max(seq) FROM pending), 0), \
                    coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'delivered'), 0)) + 1",
            [],
            |r| r.get(0),
        )?;
        {
            let mut insert =
                tx.prepare_cached("INSERT INTO pending (seq, body) VALUES (?1, ?2)")?;
            for (i, obs) in observations.iter().enumerate() {
                let body = serde_json::to_string(obs)?;
                insert.execute(params![next + i as i64, body])?;
            }
        }
        let count: i64 = tx.query_row("SELECT count(*) FROM pending", [], |r| r.get(0))?;
        let over = u64::try_from(count)
            .unwrap_or(0)
            .saturating_sub(self.capacity);
        if over > 0 {
            tx.execute(
                "DELETE FROM pending WHERE seq IN (SELECT seq FROM pending ORDER BY seq LIMIT ?1)",
                [i64::try_from(over).unwrap_or(i64::MAX)],
            )?;
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('dropped', ?1) ON CONFLICT (key) DO UPDATE \
                 SET value = CAST(value AS INTEGER) + CAST(excluded.value AS INTEGER)",
                [i64::try_from(over).unwrap_or(i64::MAX)],
            )?;
        }
        tx.commit()?;
        Ok(over)
    }

    /// The oldest `limit` observations waiting, with their sequence numbers (consecutive
    /// unless the capacity gave some up).
    pub fn oldest(&self, limit: usize) -> Result<Vec<(u64, Observation)>, Error> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT seq, body FROM pending ORDER BY seq LIMIT ?1")?;
        let rows = stmt.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, body) = row?;
            let obs: Observation = serde_json::from_str(&body)?;
            out.push((u64::try_from(seq).unwrap_or(0), obs));
        }
        Ok(out)
    }

    /// Forgets everything up to `seq` (the server holds it).
    pub fn delivered(&mut self, seq: u64) -> Result<(), Error> {
        let seq = i64::try_from(seq).unwrap_or(i64::MAX);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute("DELETE FROM pending WHERE seq <= ?1", [seq])?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('delivered', ?1) ON CONFLICT (key) DO UPDATE \
             SET value = max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
            [seq],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Observations waiting for delivery.
    pub fn pending(&self) -> Result<u64, Error> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM pending", [], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Keeps `value` under `key` (the last assignments, for a restart while the server is away).
    pub fn keep(&mut self, key: &str, value: &str) -> Result<(), Error> {
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    /// What [`Buffer::keep`] kept under `key`.
    pub fn kept(&self, key: &str) -> Option<String> {
        meta(&self.conn, key).ok().flatten()
    }

    /// Observations given up because the buffer was full, since it was created.
    pub fn dropped(&self) -> Result<u64, Error> {
        Ok(meta(&self.conn, "dropped")?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }
}

fn meta(conn: &Connection, key: &str) -> Result<Option<String>, Error> {
    Ok(conn
        .query_row(
            "SELECT CAST(value AS TEXT) FROM meta WHERE key = ?1",
            [key],
            |r| r.get(0),
        )
        .optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiwatch_core::cause::Cause;
    use aiwatch_core::observation::{Component, Health, PhaseMs, Region, Source};
    use aiwatch_core::ServiceName;
    use chrono::Utc;

    fn obs(i: usize) -> Observation {
        Observation {
            service: ServiceName::parse("openai-api").unwrap(),
            component: Component::Api,
            region: Region::new("eu-west"),
            source: Source::Probe,
            at: Utc::now(),
            health: Health::Up,
            cause: Cause::Ok,
            phases: PhaseMs::default(),
            complete: None,
            detail: format!("check {i}"),
        }
    }

    #[test]
    fn observations_come_back_in_order_until_delivered_even_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.db");
        let mut buffer = Buffer::open(&path, 100).unwrap();
        let stream = buffer.stream().to_owned();
        buffer.append(&[obs(1), obs(2), obs(3)]).unwrap();
        let first = buffer.oldest(2).unwrap();
        assert_eq!(first.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [1, 2]);
        buffer.delivered(2).unwrap();
        drop(buffer);
        let mut buffer = Buffer::open(&path, 100).unwrap();
        assert_eq!(buffer.stream(), stream, "the stream survives a restart");
        let rest = buffer.oldest(10).unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].0, 3);
        assert_eq!(rest[0].1.detail, "check 3");
        buffer.delivered(3).unwrap();
        // Numbers never go back, even with nothing pending.
        buffer.append(&[obs(4)]).unwrap();
        assert_eq!(buffer.oldest(10).unwrap()[0].0, 4);
    }

    #[test]
    fn a_full_buffer_gives_up_the_oldest_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut buffer = Buffer::open(&dir.path().join("agent.db"), 3).unwrap();
        let given_up = buffer.append(&(0..5).map(obs).collect::<Vec<_>>()).unwrap();
        assert_eq!(given_up, 2);
        assert_eq!(buffer.pending().unwrap(), 3);
        assert_eq!(buffer.dropped().unwrap(), 2);
        assert_eq!(buffer.oldest(1).unwrap()[0].0, 3);
    }

    #[test]
    fn a_new_file_is_a_new_stream() {
        let dir = tempfile::tempdir().unwrap();
        let a = Buffer::open(&dir.path().join("a.db"), 10).unwrap();
        let b = Buffer::open(&dir.path().join("b.db"), 10).unwrap();
        assert_ne!(a.stream(), b.stream());
    }
}
