//! `aiwatch serve`: the monitoring daemon. Schedules the probes of `aiwatch check` and the
//! official-status polling, feeds the assessor, writes the store, and serves the JSON API, the
//! Statuspage-compatible API and Prometheus metrics.

pub mod metrics;
pub mod observe;
pub mod scheduler;
