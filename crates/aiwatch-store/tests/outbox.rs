//! The alert outbox on both engines: notifications saved with the incident change that caused
//! them, each once, picked up when due, retried and given up as told.

#[macro_use]
mod common;

use aiwatch_core::alert::AlertEvent;
use aiwatch_core::alert_rules::{AlertMessage, Notification, MESSAGE_VERSION};
use aiwatch_core::{Cause, Scope, Status};
use aiwatch_store::{DeliveryOutcome, DeliveryQuery, DeliveryState, Retention};
use chrono::{DateTime, Duration, Utc};
use common::{at, incident, key, TestDb};

fn notification(
    alert: &str,
    incident_id: &str,
    event: AlertEvent,
    when: DateTime<Utc>,
) -> Notification {
    Notification {
        alert: alert.into(),
        message: AlertMessage {
            version: MESSAGE_VERSION,
            event,
            service: Some("openai-api".into()),
            service_title: Some("OpenAI API".into()),
            component: Some("api".into()),
            region: Some("local".into()),
            status: Status::Outage,
            scope: Scope::Global,
            cause: Cause::ProviderError,
            title: "OpenAI API api: outage for everyone (provider_error)".into(),
            summary: "requests fail".into(),
            advice: vec!["wait".into()],
            official: None,
            dashboard_url: "http://localhost:8080/services/openai-api".into(),
            incident_id: incident_id.into(),
            idempotency_key: format!("{incident_id}:{}", event.as_str()),
            at: when,
            since: when,
        },
    }
}

fn a_notification_is_saved_with_its_incident_and_only_once(db: &TestDb) {
    let store = db.open();
    let t0 = at("2026-12-01T12:00:00Z");
    let inc = incident("inc-1", key("openai-api", "api", "local"), t0);
    let n = notification("ops", "inc-1", AlertEvent::Opened, t0);
    assert_eq!(
        store
            .record(std::slice::from_ref(&inc), std::slice::from_ref(&n))
            .unwrap(),
        1
    );
    assert!(store.incident("inc-1").unwrap().is_some());
    // The same decision again (a replay after a restart) adds nothing.
    assert_eq!(store.record(&[inc], std::slice::from_ref(&n)).unwrap(), 0);
    // Another alert gets its own copy.
    let mut other = n.clone();
    other.alert = "chat".into();
    assert_eq!(store.record(&[], &[other]).unwrap(), 1);
    let due = store.due_deliveries(t0, 10).unwrap();
    assert_eq!(due.len(), 2);
    assert_eq!(due[0].message, n.message);
    assert_eq!(due[0].state, DeliveryState::Pending);
}

fn retries_wait_their_time_and_dead_ones_stay_listed(db: &TestDb) {
    let store = db.open();
    let t0 = at("2026-12-01T12:00:00Z");
    store
        .record(
            &[],
            &[
                notification("ops", "inc-1", AlertEvent::Opened, t0),
                notification("ops", "inc-2", AlertEvent::Opened, t0),
            ],
        )
        .unwrap();
    let due = store.due_deliveries(t0, 10).unwrap();
    store
        .finish_attempt(
            due[0].id,
            &DeliveryOutcome::Retry {
                at: t0 + Duration::seconds(30),
                status: Some(429),
                error: "rate limited".into(),
            },
            t0,
        )
        .unwrap();
    store
        .finish_attempt(due[1].id, &DeliveryOutcome::Sent { status: Some(200) }, t0)
        .unwrap();
    assert!(store
        .due_deliveries(t0 + Duration::seconds(29), 10)
        .unwrap()
        .is_empty());
    assert_eq!(
        store.next_delivery_at().unwrap(),
        Some(t0 + Duration::seconds(30))
    );
    let again = store
        .due_deliveries(t0 + Duration::seconds(30), 10)
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 1);
    assert_eq!(again[0].last_status, Some(429));
    store
        .finish_attempt(
            again[0].id,
            &DeliveryOutcome::Dead {
                status: Some(404),
                error: "no such hook".into(),
            },
            t0 + Duration::seconds(30),
        )
        .unwrap();
    assert_eq!(store.next_delivery_at().unwrap(), None);
    let dead = store
        .deliveries(&DeliveryQuery {
            state: Some(DeliveryState::Dead),
            ..DeliveryQuery::default()
        })
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 2);
    assert_eq!(dead[0].last_error.as_deref(), Some("no such hook"));
    let mut counts = store.delivery_counts().unwrap();
    counts.sort_by_key(|(s, _)| s.as_str());
    assert_eq!(counts, [(DeliveryState::Dead, 1), (DeliveryState::Sent, 1)]);
}

fn pruning_keeps_pending_deliveries_and_drops_old_finished_ones(db: &TestDb) {
    let store = db.open();
    let t0 = at("2026-10-01T12:00:00Z");
    store
        .record(
            &[],
            &[
                notification("ops", "inc-1", AlertEvent::Opened, t0),
                notification("ops", "inc-2", AlertEvent::Opened, t0),
            ],
        )
        .unwrap();
    let due = store.due_deliveries(t0, 10).unwrap();
    store
        .finish_attempt(due[0].id, &DeliveryOutcome::Sent { status: Some(204) }, t0)
        .unwrap();
    let pruned = store
        .prune(&Retention::default(), t0 + Duration::days(31))
        .unwrap();
    assert_eq!(pruned.deliveries, 1);
    let left = store.deliveries(&DeliveryQuery::default()).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].state, DeliveryState::Pending);
}

fn decisions_replay_oldest_first(db: &TestDb) {
    let store = db.open();
    let t0 = at("2026-12-01T12:00:00Z");
    for (i, event) in [AlertEvent::Opened, AlertEvent::Recovered]
        .into_iter()
        .enumerate()
    {
        store
            .record(
                &[],
                &[notification(
                    "ops",
                    "inc-1",
                    event,
                    t0 + Duration::minutes(i as i64),
                )],
            )
            .unwrap();
    }
    let replay = store
        .deliveries(&DeliveryQuery {
            oldest_first: true,
            since: Some(t0),
            ..DeliveryQuery::default()
        })
        .unwrap();
    let events: Vec<AlertEvent> = replay.iter().map(|d| d.message.event).collect();
    assert_eq!(events, [AlertEvent::Opened, AlertEvent::Recovered]);
}

on_both_engines!(
    a_notification_is_saved_with_its_incident_and_only_once,
    retries_wait_their_time_and_dead_ones_stay_listed,
    pruning_keeps_pending_deliveries_and_drops_old_finished_ones,
    decisions_replay_oldest_first,
);
