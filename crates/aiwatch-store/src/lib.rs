//! aiwatch's persistence: the [`Store`] trait the daemon writes observations, incidents and
//! assessor state through, and [`SqliteStore`], its embedded SQLite (WAL) implementation.
//!
//! Raw observations are kept for a configurable window; every insert also folds the batch into
//! per-minute and per-day rollups (counts by health and a log-scale latency histogram) so uptime
//! and percentiles over 90 days read a few hundred rows, not millions.

pub mod error;
pub mod histogram;
pub mod sqlite;
pub mod store;

pub use error::{Error, Result};
pub use histogram::{HealthCounts, LatencyHistogram};
pub use sqlite::{SqliteOptions, SqliteStore};
pub use store::{
    Granularity, IncidentQuery, Rollup, SavedState, Selector, Store, TimeRange, Uptime,
    DAY_ROLLUP_RETENTION_DAYS,
};
