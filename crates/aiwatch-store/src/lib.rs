//! aiwatch's persistence: the [`Store`] trait the daemon writes observations, incidents and
//! assessor state through; [`SqliteStore`], its embedded SQLite (WAL) implementation; and
//! [`PostgresStore`], for several `serve` instances sharing one PostgreSQL. [`open`] picks one
//! from a `database` setting.
//!
//! Raw observations are kept for a configurable window; every insert also folds the batch into
//! per-minute, per-hour and per-day rollups (counts by health and a log-scale latency histogram) so uptime
//! and percentiles over 90 days read a few hundred rows, not millions.
//!
//! Durability: a batch is one transaction in WAL mode with `synchronous=NORMAL`; once
//! [`Store::insert_observations`] returns, the batch survives a kill -9 of the process
//! (`tests/crash.rs`). Checkpoints run on a background thread so writers never wait on fsync.
//!
//! Throughput benchmark (file-backed, batches of 1,000 over 10,000 keys):
//! `cargo run --release -p aiwatch-store --example insert_throughput -- --seconds 10`.

mod codec;
pub mod error;
pub mod histogram;
mod lease;
pub mod postgres;
pub mod sqlite;
pub mod store;
mod tiers;
pub mod url;

pub use error::{Error, Result};
pub use histogram::{HealthCounts, LatencyHistogram};
pub use postgres::{PostgresOptions, PostgresStore};
pub use sqlite::{SqliteOptions, SqliteStore};
pub use store::{
    Delivery, DeliveryOutcome, DeliveryQuery, DeliveryState, Granularity, IncidentQuery, NewReport,
    Pruned, PublicPost, ReportMinute, Retention, Rollup, SavedState, Selector, Store, TimeRange,
    Uptime, DAY_ROLLUP_RETENTION_DAYS,
};
pub use url::{Database, PostgresUrl};

/// Opens the store a `database` setting names (creating an SQLite file's folder is the
/// caller's business), migrated and ready.
pub fn open(database: &Database) -> Result<std::sync::Arc<dyn Store>> {
    Ok(match database {
        Database::Sqlite(path) => std::sync::Arc::new(SqliteStore::open(path)?),
        Database::Postgres(url) => {
            std::sync::Arc::new(PostgresStore::open(url, PostgresOptions::default())?)
        }
    })
}
