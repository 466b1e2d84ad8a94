//! `aiwatch serve`: the monitoring daemon. Schedules the probes of `aiwatch check` and the
//! official-status polling, feeds the assessor, writes the store, and serves the JSON API, the
//! Statuspage-compatible API and Prometheus metrics.

pub mod access;
pub mod agents;
pub mod alerting;
pub mod api;
pub mod chatter;
pub mod crowd;
pub mod daemon;
pub mod dashboard;
pub mod engine;
pub mod error;
pub mod leases;
pub mod metrics;
pub mod reports;
pub mod scheduler;
pub mod statuspage;
pub mod writer;

pub use daemon::{run, DaemonConfig, Running};
pub use error::Error;
