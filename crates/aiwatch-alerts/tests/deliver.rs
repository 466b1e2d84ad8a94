//! The outbox worker against loopback receivers and a real SQLite outbox: retries, waits,
//! dead letters, order, and what a restart finds.

mod common;

use std::sync::Arc;
use std::time::Duration;

use aiwatch_alerts::{Deliverer, RetryPolicy};
use aiwatch_core::alert::AlertEvent;
use aiwatch_core::alert_rules::Notification;
use aiwatch_store::{DeliveryQuery, DeliveryState, SqliteStore, Store};
use aiwatch_testkit::{FakeServer, Reply, World};
use chrono::Utc;
use common::{channel, context, message};

struct Setup {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    world: World,
    hook: FakeServer,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    let world = World::start().await;
    let hook = world.receiver("hooks.example.test").await;
    Setup {
        _dir: dir,
        path,
        world,
        hook,
    }
}

fn fast() -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(20),
        jitter: 0.0,
        ..RetryPolicy::default()
    }
}

fn deliverer(s: &Setup, store: Arc<dyn Store>, policy: RetryPolicy) -> Deliverer {
    let channel = channel(
        &s.world,
        &format!(
            "[[alert]]\nname = \"ops\"\nkind = \"webhook\"\nurl = \"{}/hook\"\n",
            s.hook.url("hooks.example.test")
        ),
        &[],
    );
    Deliverer::new(
        store,
        vec![channel],
        context(&s.world),
        policy,
        Duration::from_secs(3),
    )
}

fn queue(store: &dyn Store, events: &[AlertEvent]) {
    let notifications: Vec<Notification> = events
        .iter()
        .map(|e| {
            let mut message = message(*e);
            message.at = Utc::now();
            Notification {
                alert: "ops".into(),
                message,
            }
        })
        .collect();
    store.record(&[], &notifications).unwrap();
}

fn all(store: &dyn Store) -> Vec<aiwatch_store::Delivery> {
    let mut list = store
        .deliveries(&DeliveryQuery {
            oldest_first: true,
            ..DeliveryQuery::default()
        })
        .unwrap();
    list.sort_by_key(|d| d.id);
    list
}

#[tokio::test]
async fn a_failing_receiver_is_retried_until_it_accepts() {
    let s = setup().await;
    s.hook.route(
        "POST",
        "/hook",
        Reply::sequence(vec![
            Reply::empty(503),
            Reply::empty(502),
            Reply::empty(200),
        ]),
    );
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&s.path).unwrap());
    queue(&*store, &[AlertEvent::Opened]);
    let worker = deliverer(&s, store.clone(), fast());
    let mut passes = 0;
    while all(&*store)[0].state == DeliveryState::Pending && passes < 50 {
        worker.deliver_due().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        passes += 1;
    }
    let d = &all(&*store)[0];
    assert_eq!(d.state, DeliveryState::Sent);
    assert_eq!(d.attempts, 3);
    let seen = s.hook.requests();
    assert_eq!(seen.len(), 3);
    // Every attempt carries the same idempotency key, so the receiver can drop repeats.
    let keys: Vec<_> = seen
        .iter()
        .map(|r| r.header("idempotency-key").unwrap().to_owned())
        .collect();
    assert!(keys.iter().all(|k| k == &keys[0]));
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let s = setup().await;
    s.hook.route(
        "POST",
        "/hook",
        Reply::empty(429).header("retry-after", "30"),
    );
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&s.path).unwrap());
    queue(&*store, &[AlertEvent::Opened]);
    let worker = deliverer(&s, store.clone(), fast());
    worker.deliver_due().await;
    let d = &all(&*store)[0];
    assert_eq!(d.state, DeliveryState::Pending);
    assert_eq!(d.last_status, Some(429));
    let wait = (d.next_at - Utc::now()).num_seconds();
    assert!(
        (28..=30).contains(&wait),
        "waits as asked, not the 20 ms backoff: {wait}s"
    );
    worker.deliver_due().await;
    assert_eq!(s.hook.requests().len(), 1, "not retried before its time");
}

#[tokio::test]
async fn a_refusal_for_good_and_a_spent_budget_end_in_the_dead_letters() {
    let s = setup().await;
    s.hook.route("POST", "/hook", Reply::empty(410));
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&s.path).unwrap());
    queue(&*store, &[AlertEvent::Opened]);
    let worker = deliverer(&s, store.clone(), fast());
    worker.deliver_due().await;
    let d = &all(&*store)[0];
    assert_eq!(d.state, DeliveryState::Dead);
    assert_eq!(d.attempts, 1);
    assert!(d.last_error.as_deref().unwrap().contains("410"));

    let s = setup().await;
    s.hook.route("POST", "/hook", Reply::empty(500));
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&s.path).unwrap());
    queue(&*store, &[AlertEvent::Opened]);
    let worker = deliverer(
        &s,
        store.clone(),
        RetryPolicy {
            max_attempts: 3,
            ..fast()
        },
    );
    for _ in 0..30 {
        worker.deliver_due().await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let d = &all(&*store)[0];
    assert_eq!(d.state, DeliveryState::Dead);
    assert_eq!(d.attempts, 3);
    assert!(d
        .last_error
        .as_deref()
        .unwrap()
        .starts_with("gave up after 3 attempts"));
    assert_eq!(s.hook.requests().len(), 3);
}

#[tokio::test]
async fn a_recovery_never_overtakes_its_opening() {
    let s = setup().await;
    s.hook.route(
        "POST",
        "/hook",
        Reply::sequence(vec![
            Reply::empty(503),
            Reply::empty(200),
            Reply::empty(200),
        ]),
    );
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&s.path).unwrap());
    queue(&*store, &[AlertEvent::Opened, AlertEvent::Recovered]);
    let worker = deliverer(&s, store.clone(), fast());
    for _ in 0..20 {
        worker.deliver_due().await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let events: Vec<String> = s
        .hook
        .requests()
        .iter()
        .map(|r| r.header("x-aiwatch-event").unwrap().to_owned())
        .collect();
    assert_eq!(events, ["opened", "opened", "recovered"]);
}

#[tokio::test]
async fn what_was_pending_when_the_process_stopped_goes_out_after_a_restart() {
    let s = setup().await;
    s.hook.route(
        "POST",
        "/hook",
        Reply::sequence(vec![Reply::empty(503), Reply::empty(200)]),
    );
    {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&s.path).unwrap());
        queue(&*store, &[AlertEvent::Opened]);
        deliverer(&s, store, fast()).deliver_due().await;
    }
    // A new process over the same file.
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&s.path).unwrap());
    assert_eq!(all(&*store)[0].state, DeliveryState::Pending);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let worker = Arc::new(deliverer(&s, store.clone(), fast()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(worker.clone().run(async {
        let _ = stopped.await;
    }));
    for _ in 0..100 {
        if all(&*store)[0].state == DeliveryState::Sent {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(());
    task.await.unwrap();
    assert_eq!(all(&*store)[0].state, DeliveryState::Sent);
    assert_eq!(s.hook.requests().len(), 2);
}

#[tokio::test]
async fn an_alert_removed_from_the_config_ends_its_deliveries_as_dead() {
    let s = setup().await;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&s.path).unwrap());
    let mut message = message(AlertEvent::Opened);
    message.at = Utc::now();
    store
        .record(
            &[],
            &[Notification {
                alert: "gone".into(),
                message,
            }],
        )
        .unwrap();
    deliverer(&s, store.clone(), fast()).deliver_due().await;
    let d = &all(&*store)[0];
    assert_eq!(d.state, DeliveryState::Dead);
    assert!(d.last_error.as_deref().unwrap().contains("gone"));
}
