//! Builders shared by the store's integration tests: observations, incidents, times.

#![allow(dead_code)]

use aiwatch_core::assess::{Incident, IncidentPhase, Key, TimelineEntry, TimelineKind};
use aiwatch_core::observation::{Component, Health, Observation, PhaseMs, Source};
use aiwatch_core::Status;
use aiwatch_core::{Cause, ServiceName};
use chrono::{DateTime, Duration, Utc};

pub fn at(rfc3339: &str) -> DateTime<Utc> {
    rfc3339.parse().unwrap()
}

pub fn name(raw: &str) -> ServiceName {
    ServiceName::parse(raw).unwrap()
}

pub fn key(service: &str, component: &str, region: &str) -> Key {
    Key::new(name(service), component_named(component), region)
}

/// The component with this name (`api`, `web`, `official`).
pub fn component_named(raw: &str) -> Component {
    Component::parse(raw).expect("a known component")
}

/// A probe observation of `openai-api/api/local` unless changed.
pub fn obs(at: DateTime<Utc>, health: Health, total_ms: Option<f32>) -> Observation {
    Observation {
        service: name("openai-api"),
        component: Component::Api,
        region: "local".into(),
        source: Source::Probe,
        at,
        health,
        cause: match health {
            Health::Up => Cause::Ok,
            Health::Degraded => Cause::SlowResponses,
            Health::Down => Cause::ProviderError,
            Health::Unknown => Cause::Unknown,
        },
        phases: PhaseMs {
            total: total_ms,
            ..PhaseMs::default()
        },
        complete: None,
        detail: format!("{} at {at}", health.as_str()),
    }
}

/// `n` observations every `step` starting at `from`, with health and latency from `f(i)`.
pub fn series(
    from: DateTime<Utc>,
    step: Duration,
    n: usize,
    f: impl Fn(usize) -> (Health, Option<f32>),
) -> Vec<Observation> {
    (0..n)
        .map(|i| {
            let (health, total) = f(i);
            obs(from + step * i as i32, health, total)
        })
        .collect()
}

pub fn incident(id: &str, key: Key, opened_at: DateTime<Utc>) -> Incident {
    Incident {
        id: id.into(),
        key,
        opened_at,
        updated_at: opened_at,
        resolved_at: None,
        phase: IncidentPhase::Open,
        severity: Status::Outage,
        cause: Cause::ProviderError,
        confirmed: false,
        timeline: vec![TimelineEntry {
            at: opened_at,
            kind: TimelineKind::Opened,
            text: "3 consecutive failures: provider_error".into(),
        }],
    }
}

/// A fresh database of one engine for one test: an SQLite file in a temp folder, or a
/// PostgreSQL database created for the test (and dropped after it).
pub enum TestDb {
    Sqlite(tempfile::TempDir),
    Postgres(PgDb),
}

impl TestDb {
    /// A store on this database; call again to "restart" on the same data.
    pub fn open(&self) -> std::sync::Arc<dyn aiwatch_store::Store> {
        match self {
            TestDb::Sqlite(dir) => std::sync::Arc::new(
                aiwatch_store::SqliteStore::open(&dir.path().join("aiwatch.db")).unwrap(),
            ),
            TestDb::Postgres(db) => std::sync::Arc::new(
                aiwatch_store::PostgresStore::open(
                    &db.url,
                    aiwatch_store::PostgresOptions::default(),
                )
                .unwrap(),
            ),
        }
    }
}

pub fn sqlite_db() -> TestDb {
    TestDb::Sqlite(tempfile::tempdir().unwrap())
}

/// The variable naming the PostgreSQL server tests may create databases on.
pub const POSTGRES_URL_ENV: &str = "AIWATCH_TEST_POSTGRES_URL";

/// A database of its own for `test` on the server `AIWATCH_TEST_POSTGRES_URL` names, or `None`
/// (saying so on stderr) when that is not set.
pub fn postgres_db(test: &str) -> Option<TestDb> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let Ok(raw) = std::env::var(POSTGRES_URL_ENV) else {
        eprintln!(
            "skipped on PostgreSQL: {test}: {POSTGRES_URL_ENV} is not set (`cargo xtask e2e postgres` runs these against a real PostgreSQL)"
        );
        return None;
    };
    let server = aiwatch_store::PostgresUrl::parse(&raw).unwrap();
    let short: String = test
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(32)
        .collect();
    let name = format!(
        "aiwt_{}_{}_{short}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let mut admin = server
        .connect_admin(std::time::Duration::from_secs(10))
        .unwrap();
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    Some(TestDb::Postgres(PgDb {
        url: server.with_database(&name),
        server,
        name,
    }))
}

/// A database created for one test; dropped (its connections ended) when the test is done.
pub struct PgDb {
    pub url: aiwatch_store::PostgresUrl,
    server: aiwatch_store::PostgresUrl,
    name: String,
}

impl Drop for PgDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = self
            .server
            .connect_admin(std::time::Duration::from_secs(10))
        {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// Runs each named test function (`fn name(db: &TestDb)`) once on SQLite and once on
/// PostgreSQL, as `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    super::$name(&super::common::sqlite_db());
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    if let Some(db) = super::common::postgres_db(stringify!($name)) {
                        super::$name(&db);
                    }
                }
            )*
        }
    };
}
