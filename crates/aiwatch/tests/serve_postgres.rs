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

#[tokio::test(flavor = "multi_thread")]
async fn serve_stores_its_checks_in_postgres() {
    let Ok(raw) = std::env::var("AIWATCH_TEST_POSTGRES_URL") else {
        eprintln!(
            "skipped: AIWATCH_TEST_POSTGRES_URL is not set (`cargo xtask e2e postgres` sets it)"
        );
        return;
    };
    let server = PostgresUrl::parse(&raw).unwrap();
    let name = format!("aiwt_serve_{}", std::process::id());
    // The blocking client stays off the async workers, as in `serve`.
    let admin = |sql: String| {
        let server = server.clone();
        tokio::task::spawn_blocking(move || {
            let mut admin = server.connect_admin(Duration::from_secs(10)).unwrap();
            admin.batch_execute(&sql).unwrap();
        })
    };
    admin(format!("DROP DATABASE IF EXISTS {name}"))
        .await
        .unwrap();
    admin(format!("CREATE DATABASE {name}")).await.unwrap();
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
    admin(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .unwrap();
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
