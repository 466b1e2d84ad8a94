//! `serve` on PostgreSQL: `database = "postgres://…"` works, a server it cannot reach stops it
//! with a config error naming the host (never the password), and `config check` reads the
//! setting as `serve` does. The test that needs a real server skips unless
//! `AIWATCH_TEST_POSTGRES_URL` is set (`cargo xtask e2e postgres` sets it).

use std::time::Duration;

use aiwatch_store::{PostgresOptions, PostgresStore, PostgresUrl, Store};
use aiwatch_testkit::{canned, World};

mod common;

use common::{aiwatch, Serve};

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn an_unreachable_postgres_stops_serve_naming_the_host_but_not_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pg.toml");
    let port = closed_port();
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ndatabase = \"postgres://aiwatch:hunter2secret@127.0.0.1:{port}/aiwatch\"\n"
        ),
    )
    .unwrap();
    // `config check` accepts the setting: whether the server answers is for `serve` to find.
    aiwatch()
        .arg("config")
        .arg("check")
        .arg(&config)
        .assert()
        .success();
    let out = aiwatch()
        .arg("--config")
        .arg(&config)
        .args(["serve", "openai-api"])
        .timeout(Duration::from_secs(30))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(stderr.contains("PostgreSQL"), "{stderr}");
    assert!(!stderr.contains("hunter2secret"), "{stderr}");
}

#[test]
fn a_malformed_postgres_url_is_refused_alike_by_config_check_and_serve() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        "[server]\ndatabase = \"postgres://aiwatch:hunter2secret@db.example:notaport/aiwatch\"\n",
    )
    .unwrap();
    for args in [vec!["config", "check"], vec!["serve", "openai-api"]] {
        let mut cmd = aiwatch();
        if args[0] == "serve" {
            cmd.arg("--config").arg(&config).args(&args);
        } else {
            cmd.args(&args).arg(&config);
        }
        let out = cmd.timeout(Duration::from_secs(30)).output().unwrap();
        assert_eq!(out.status.code(), Some(78), "{args:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("database"), "{args:?}: {stderr}");
        assert!(!stderr.contains("hunter2secret"), "{args:?}: {stderr}");
    }
}

#[test]
fn config_check_names_a_missing_sslrootcert_and_an_unknown_sslmode() {
    let dir = tempfile::tempdir().unwrap();
    for (query, expected) in [
        (
            "sslmode=verify-full&sslrootcert=/nonexistent/db-root.pem",
            "sslrootcert /nonexistent/db-root.pem does not exist",
        ),
        (
            "sslmode=verify",
            "not one of disable, allow, prefer, require, verify-ca, verify-full",
        ),
    ] {
        let config = dir.path().join("tls.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\ndatabase = \"postgres://aiwatch:hunter2secret@db.example/aiwatch?{query}\"\n"
            ),
        )
        .unwrap();
        let out = aiwatch()
            .args(["config", "check"])
            .arg(&config)
            .timeout(Duration::from_secs(30))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(78), "{query}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{query}: {stderr}");
        assert!(
            stderr.contains("tls.toml:3"),
            "{query}: names the line: {stderr}"
        );
        assert!(!stderr.contains("hunter2secret"), "{query}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_stores_its_checks_in_postgres() {
    let Some(db) = TestDatabase::create("aiwt_serve").await else {
        return;
    };
    let (server, raw, name) = (db.server.clone(), db.raw.clone(), db.name.clone());
    let url = server.with_database(&name);
    let mut world = World::start().await;
    let api = world.api("openai-api", "api.openai.test", "/v1").await;
    api.route("GET", "/v1/models", canned::openai_models());
    let serve = Serve::start_with(
        &world,
        "openai-api",
        &format!("database = \"{raw_db}\"\n", raw_db = with_db(&raw, &name)),
        &[("OPENAI_API_KEY", "sk-test")],
    )
    .await;
    let store = tokio::task::spawn_blocking(move || {
        PostgresStore::open(&url, PostgresOptions::default()).unwrap()
    })
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let seen = store.last_observation_times().unwrap();
        if seen.iter().any(|(k, _)| k.service.as_str() == "openai-api") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no observation of openai-api reached PostgreSQL"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(serve);
    drop(store);
    db.remove().await;
}

/// A fresh database of its own on the server `AIWATCH_TEST_POSTGRES_URL` names, or `None` (the
/// test skips, saying so) when it names none.
struct TestDatabase {
    server: PostgresUrl,
    /// The URL as the variable gives it.
    raw: String,
    name: String,
}

impl TestDatabase {
    async fn create(prefix: &str) -> Option<TestDatabase> {
        let Ok(raw) = std::env::var("AIWATCH_TEST_POSTGRES_URL") else {
            eprintln!(
                "skipped: AIWATCH_TEST_POSTGRES_URL is not set (`cargo xtask e2e postgres` sets it)"
            );
            return None;
        };
        let db = TestDatabase {
            server: PostgresUrl::parse(&raw).unwrap(),
            raw,
            name: format!("{prefix}_{}", std::process::id()),
        };
        db.admin(format!("DROP DATABASE IF EXISTS {}", db.name))
            .await;
        db.admin(format!("CREATE DATABASE {}", db.name)).await;
        Some(db)
    }

    /// Runs `sql` as the server's admin; the blocking client stays off the async workers, as
    /// in `serve`.
    async fn admin(&self, sql: String) {
        let server = self.server.clone();
        tokio::task::spawn_blocking(move || {
            let mut admin = server.connect_admin(Duration::from_secs(10)).unwrap();
            admin.batch_execute(&sql).unwrap();
        })
        .await
        .unwrap();
    }

    async fn remove(self) {
        self.admin(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .await;
    }
}

/// `raw` with its database path replaced by `name`.
fn with_db(raw: &str, name: &str) -> String {
    let (base, query) = raw
        .split_once('?')
        .map_or((raw, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{name}", &base[..path_start]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// `aiwatch_checks_held` of one instance.
async fn held(serve: &Serve) -> u64 {
    let metrics = serve.get("/metrics").await.1;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("aiwatch_checks_held "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn two_servers_on_one_postgres_split_the_checks_and_a_killed_ones_move_within_an_interval() {
    let Some(db) = TestDatabase::create("aiwt_pair").await else {
        return;
    };
    let (server, raw, name) = (db.server.clone(), db.raw.clone(), db.name.clone());

    // Six services that all fail (503), named through a loopback DNS.
    let fake = aiwatch_testkit::FakeServer::start(None).await;
    fake.fallback(aiwatch_testkit::Reply::text(
        503,
        "text/html",
        "<html>down</html>",
    ));
    fake.route("GET", "/generate_204", canned::generate_204());
    let dns = aiwatch_testkit::FakeDns::start().await;
    let port = fake.addr().port();
    const SERVICES: usize = 6;
    const INTERVAL_S: u64 = 6;
    let mut config = format!(
        "[defaults]\ninterval = \"{INTERVAL_S}s\"\ntimeout = \"2s\"\nfailures_to_open = 2\nstream_interval = \"off\"\ncontrol_url = \"http://control.pair.test:{port}/generate_204\"\n\n[server]\ndatabase = \"{}\"\n",
        with_db(&raw, &name)
    );
    let loopback = aiwatch_testkit::DnsAnswer::Addresses(vec![fake.addr().ip()]);
    dns.set("control.pair.test", loopback.clone());
    let mut names: Vec<std::ffi::OsString> = Vec::new();
    for i in 0..SERVICES {
        let host = format!("svc-{i}.pair.test");
        dns.set(&host, loopback.clone());
        config.push_str(&format!(
            "\n[[service]]\nname = \"svc-{i}\"\nkind = \"http\"\nweb_url = \"http://{host}:{port}/\"\n"
        ));
        names.push(format!("svc-{i}").into());
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pair.toml");
    std::fs::write(&path, config).unwrap();
    let mut args = names.clone();
    args.extend(["--dns-server".into(), dns.addr().to_string().into()]);
    let a = Serve::spawn(&path, common::free_port(), &args, &[]).await;
    let b = Serve::spawn(&path, common::free_port(), &args, &[]).await;

    // The checks (and the deliverer's lease) are split, none twice.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (ha, hb) = (held(&a).await, held(&b).await);
        if ha + hb == SERVICES as u64 + 1 && ha > 0 && hb > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "leases not split: a holds {ha}, b holds {hb}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Both instances tell the same story — every service in an outage, the ones the other
    // checks too — and the database holds one open incident per service.
    for serve in [&a, &b] {
        serve
            .wait_for("/api/services", "every service in an outage", |v| {
                v.as_array().is_some_and(|list| {
                    list.len() == SERVICES && list.iter().all(|s| s["state"] == "outage")
                })
            })
            .await;
    }
    a.wait_for("/api/incidents?open=true", "six open incidents", |v| {
        v.as_array().is_some_and(|list| list.len() == SERVICES)
    })
    .await;

    // One instance dies: the other takes its checks and runs them within an interval.
    let killed_at = tokio::time::Instant::now();
    let killed_wall = chrono::Utc::now();
    a.kill();
    loop {
        if held(&b).await == SERVICES as u64 + 1 {
            break;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(60),
            "b never took over the killed instance's checks"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let url = server.with_database(&name);
    let store = tokio::task::spawn_blocking(move || {
        PostgresStore::open(&url, PostgresOptions::default()).unwrap()
    })
    .await
    .unwrap();
    let store = std::sync::Arc::new(store);
    loop {
        let reader = store.clone();
        let seen = tokio::task::spawn_blocking(move || reader.last_observation_times().unwrap())
            .await
            .unwrap();
        let resumed = (0..SERVICES).all(|i| {
            seen.iter()
                .any(|(k, at)| k.service.as_str() == format!("svc-{i}") && *at > killed_wall)
        });
        if resumed {
            break;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(INTERVAL_S * 3),
            "the killed instance's checks did not resume on the other"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let resumed_after = killed_at.elapsed();
    eprintln!(
        "hand-over: every check ran again {:.1} s after the kill (interval {INTERVAL_S} s)",
        resumed_after.as_secs_f64()
    );
    assert!(
        resumed_after <= Duration::from_secs(INTERVAL_S + 3),
        "checks resumed {resumed_after:?} after the kill; the goal is one interval"
    );

    // Still one incident per service, in the database and on the surviving dashboard.
    let reader = store.clone();
    let incidents = tokio::task::spawn_blocking(move || {
        reader
            .incidents(&aiwatch_store::IncidentQuery::default())
            .unwrap()
    })
    .await
    .unwrap();
    let mut ids: Vec<&str> = incidents.iter().map(|i| i.id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), SERVICES, "no incident opened twice: {ids:?}");
    let open = b.json("/api/incidents?open=true").await;
    assert_eq!(open.as_array().map(Vec::len), Some(SERVICES), "{open}");
    drop(b);
    drop(store);
    db.remove().await;
}
