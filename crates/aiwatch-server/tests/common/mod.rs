//! Shared by the server's handler tests: an engine over an in-memory store.

// Each test binary compiles this module and uses a part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aiwatch_core::assess::AssessConfig;
use aiwatch_core::Service;
use aiwatch_probe::{CheckOptions, Checker, DnsChoice, ProxySettings};
use aiwatch_server::agents::RegionOptions;
use aiwatch_server::engine::{Engine, EngineOptions};
use aiwatch_server::metrics::Metrics;
use aiwatch_server::writer::Writer;
use aiwatch_store::{Retention, SqliteStore, Store};

/// Checks that never leave the machine: DNS to a discard port, no control probe.
pub fn no_network() -> CheckOptions {
    CheckOptions {
        timeout: Duration::from_secs(1),
        dns: DnsChoice::Server("127.0.0.1:9".parse().expect("an address")),
        ca_files: Vec::new(),
        control_url: None,
        deep: false,
        proxies: ProxySettings::none(),
    }
}

/// An engine over an in-memory store; `checks` says how its checker reaches services and
/// `regions` which agents it accepts.
pub fn engine(services: Vec<Service>, checks: CheckOptions, regions: RegionOptions) -> Arc<Engine> {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().expect("in-memory store"));
    let metrics = Arc::new(Metrics::new(0));
    let writer = Writer::start(store.clone(), metrics.clone(), Retention::default());
    let checker = Checker::new(checks).expect("checker");
    let options = EngineOptions {
        timeout: Duration::from_secs(3),
        default_interval: Duration::from_secs(30),
        assess: AssessConfig {
            failures_to_open: 2,
            successes_to_close: 2,
            ..AssessConfig::default()
        },
        page_name: "aiwatch test".into(),
        stream_interval: None,
        crowd: aiwatch_core::crowd::CrowdConfig::default(),
        regions,
        instance: None,
    };
    Arc::new(
        Engine::new(
            services,
            checker,
            HashMap::new(),
            store,
            writer,
            metrics,
            options,
        )
        .expect("engine"),
    )
}
