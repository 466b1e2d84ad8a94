//! aiwatch's vocabulary and pure logic: no sockets, no clock, no files.
//!
//! Everything that touches the network, the disk or the clock lives in other crates and hands
//! its results in here as values, so every rule below is tested without I/O.

pub mod agent_wire;
pub mod alert;
pub mod alert_rules;
pub mod assess;
pub mod assessment;
pub mod call_fault;
pub mod catalog;
pub mod cause;
pub mod classify;
pub mod config;
pub mod crowd;
pub mod error_chain;
pub mod evidence;
pub mod key_route;
pub mod local_model;
pub mod network;
pub mod observation;
pub mod official;
pub mod official_lag;
pub mod plan_b;
pub mod prometheus_text;
pub mod regions;
pub mod scrub;
pub mod secret;
pub mod service;
pub mod signatures;
pub mod spike;
pub mod symptom;
pub mod thresholds;
pub mod uptime;
pub mod verdict;

pub use catalog::{Catalog, UnknownService};
pub use cause::{Cause, Scope, Status};
pub use config::{Config, ConfigError};
pub use service::{Service, ServiceKind, ServiceName, StatusSource};
pub use verdict::Verdict;
