//! The alert rules: what each alert is told, from the fused picture alone.

use aiwatch_core::alert::AlertEvent;
use aiwatch_core::alert_rules::{AlertRules, Decided, IncidentBrief, KeyPicture, Picture};
use aiwatch_core::assess::Key;
use aiwatch_core::assessment::{fuse, OfficialReading, ProbeReading};
use aiwatch_core::observation::Component;
use aiwatch_core::{Cause, Config, ServiceName, Status};
use chrono::{DateTime, Duration, TimeZone, Utc};

fn t(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap() + Duration::minutes(minutes)
}

fn rules(alert_toml: &str) -> AlertRules {
    let config = Config::parse(alert_toml).expect("valid alerts");
    AlertRules::new(config.alerts)
}

const WEBHOOK: &str = "[[alert]]\nname = \"ops\"\nkind = \"webhook\"\nurl = \"https://hooks.example.com/a\"\nsettle = \"0s\"\n";

fn key(service: &str) -> Key {
    Key::new(
        ServiceName::parse(service).unwrap(),
        Component::Api,
        "local",
    )
}

fn passing(service: &str) -> KeyPicture {
    KeyPicture {
        key: key(service),
        title: service.to_uppercase(),
        assessment: fuse(
            ProbeReading::Passing,
            OfficialReading::Read(Status::Operational),
        ),
        since: Some(t(0)),
        incident: None,
        summary: "works".into(),
        advice: vec![],
        official: None,
    }
}

fn failing(service: &str, incident: &str, opened: i64, status: Status, cause: Cause) -> KeyPicture {
    KeyPicture {
        assessment: fuse(
            ProbeReading::Failing { status, cause },
            OfficialReading::Read(Status::Operational),
        ),
        since: Some(t(opened)),
        incident: Some(IncidentBrief {
            id: incident.into(),
            opened_at: t(opened),
            confirmed: false,
        }),
        summary: "requests fail".into(),
        advice: vec!["use another provider".into()],
        ..passing(service)
    }
}

fn picture(at: i64, keys: Vec<KeyPicture>) -> Picture {
    Picture {
        at: t(at),
        keys,
        monitor_online: true,
        usage_spikes: vec![],
        dashboard: "http://aiwatch.test".into(),
    }
}

fn events(list: &[aiwatch_core::alert_rules::Notification]) -> Vec<String> {
    list.iter()
        .map(|n| n.message.idempotency_key.clone())
        .collect()
}

#[test]
fn an_outage_is_told_once_then_its_validated_recovery() {
    let mut rules = rules(WEBHOOK);
    let down = || {
        failing(
            "openai-api",
            "inc-1",
            0,
            Status::Outage,
            Cause::ProviderError,
        )
    };
    let first = rules.evaluate(&picture(0, vec![down()]));
    assert_eq!(events(&first), ["inc-1:opened"]);
    let m = &first[0].message;
    assert_eq!(m.service.as_deref(), Some("openai-api"));
    assert_eq!(m.cause, Cause::ProviderError);
    assert_eq!(m.dashboard_url, "http://aiwatch.test/services/openai-api");
    assert!(m.title.contains("outage"), "{}", m.title);
    assert!(rules.evaluate(&picture(1, vec![down()])).is_empty());
    let back = rules.evaluate(&picture(5, vec![passing("openai-api")]));
    assert_eq!(events(&back), ["inc-1:recovered"]);
    assert_eq!(back[0].message.status, Status::Operational);
}

#[test]
fn a_flapping_service_produces_one_alert_not_ten() {
    let mut rules = rules(&WEBHOOK.replace("settle = \"0s\"", "settle = \"10m\""));
    let mut told = Vec::new();
    for round in 0..10 {
        let at = round * 4;
        told.extend(rules.evaluate(&picture(
            at,
            vec![failing(
                "openai-api",
                &format!("inc-{round}"),
                at,
                Status::Outage,
                Cause::ProviderError,
            )],
        )));
        told.extend(rules.evaluate(&picture(at + 2, vec![passing("openai-api")])));
    }
    assert_eq!(events(&told), ["inc-0:opened"]);
    // Once it stays up for the settle window, the one recovery is told.
    let later = rules.evaluate(&picture(60, vec![passing("openai-api")]));
    assert_eq!(events(&later), ["inc-9:recovered"]);
}

#[test]
fn the_monitors_own_trouble_is_one_monitor_alert_and_no_provider_alert() {
    let mut rules = rules(WEBHOOK);
    let unseen = |service: &str| KeyPicture {
        assessment: fuse(
            ProbeReading::MonitorOffline(Cause::DnsFailure),
            OfficialReading::Unread,
        ),
        ..failing(
            service,
            &format!("inc-{service}"),
            0,
            Status::Outage,
            Cause::DnsFailure,
        )
    };
    let mut p = picture(
        0,
        vec![
            unseen("openai-api"),
            unseen("anthropic-api"),
            unseen("mistral-api"),
        ],
    );
    p.monitor_online = false;
    let told = rules.evaluate(&p);
    assert_eq!(told.len(), 1, "{:?}", events(&told));
    assert_eq!(told[0].message.event, AlertEvent::MonitorTrouble);
    assert_eq!(told[0].message.cause, Cause::DnsFailure);
    assert!(
        told[0].message.title.contains("monitor"),
        "{}",
        told[0].message.title
    );
    p.at = t(1);
    assert!(rules.evaluate(&p).is_empty());
    let back = rules.evaluate(&picture(3, vec![passing("openai-api")]));
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].message.event, AlertEvent::Recovered);
    assert_eq!(back[0].message.incident_id, told[0].message.incident_id);
}

#[test]
fn an_account_problem_is_told_as_your_account_not_an_outage() {
    let mut rules = rules(WEBHOOK);
    let key_rejected = KeyPicture {
        assessment: fuse(
            ProbeReading::Account(Cause::AuthInvalid),
            OfficialReading::Read(Status::Operational),
        ),
        incident: None,
        ..passing("openai-api")
    };
    let told = rules.evaluate(&picture(0, vec![key_rejected]));
    assert_eq!(told.len(), 1);
    let m = &told[0].message;
    assert_eq!(m.event, AlertEvent::Opened);
    assert_eq!(m.scope, aiwatch_core::Scope::Account);
    assert_eq!(m.cause, Cause::AuthInvalid);
    assert!(m.title.starts_with("Your account at"), "{}", m.title);
    assert!(!m.title.contains("outage"), "{}", m.title);
}

#[test]
fn min_duration_waits_and_a_short_blip_is_never_told() {
    let mut rules = rules(&format!("{WEBHOOK}min_duration = \"5m\"\n"));
    let down = failing(
        "openai-api",
        "inc-1",
        0,
        Status::Outage,
        Cause::ProviderError,
    );
    assert!(rules.evaluate(&picture(0, vec![down.clone()])).is_empty());
    assert!(rules.evaluate(&picture(4, vec![down.clone()])).is_empty());
    assert!(rules
        .evaluate(&picture(5, vec![passing("openai-api")]))
        .is_empty());
    assert!(rules
        .evaluate(&picture(30, vec![passing("openai-api")]))
        .is_empty());
    let long = failing(
        "openai-api",
        "inc-2",
        40,
        Status::Outage,
        Cause::ProviderError,
    );
    assert!(rules.evaluate(&picture(41, vec![long.clone()])).is_empty());
    assert_eq!(
        events(&rules.evaluate(&picture(45, vec![long]))),
        ["inc-2:opened"]
    );
}

#[test]
fn a_long_incident_is_repeated_every_interval_with_its_own_key() {
    let mut rules = rules(&format!("{WEBHOOK}repeat = \"1h\"\n"));
    let down = failing(
        "openai-api",
        "inc-1",
        0,
        Status::Outage,
        Cause::ProviderError,
    );
    let mut told = Vec::new();
    for minute in (0..=150).step_by(10) {
        told.extend(rules.evaluate(&picture(minute, vec![down.clone()])));
    }
    assert_eq!(
        events(&told),
        ["inc-1:opened", "inc-1:opened:r1", "inc-1:opened:r2"]
    );
}

#[test]
fn quiet_hours_hold_notifications_until_they_end() {
    // 12:00 UTC is 13:00 in Paris: quiet from 12:30 to 14:00 Paris time.
    let mut rules = rules(&format!(
        "{WEBHOOK}quiet_hours = {{ from = \"12:30\", to = \"14:00\", tz = \"Europe/Paris\" }}\n"
    ));
    let down = failing(
        "openai-api",
        "inc-1",
        0,
        Status::Outage,
        Cause::ProviderError,
    );
    assert!(rules.evaluate(&picture(0, vec![down.clone()])).is_empty());
    assert!(rules.evaluate(&picture(59, vec![down.clone()])).is_empty());
    assert_eq!(
        events(&rules.evaluate(&picture(60, vec![down]))),
        ["inc-1:opened"]
    );
}

#[test]
fn a_degradation_that_becomes_an_outage_is_told_again_and_confirmation_once() {
    let mut rules = rules(WEBHOOK);
    let slow = failing(
        "openai-api",
        "inc-1",
        0,
        Status::Degraded,
        Cause::SlowResponses,
    );
    assert_eq!(
        events(&rules.evaluate(&picture(0, vec![slow]))),
        ["inc-1:degraded"]
    );
    let mut down = failing(
        "openai-api",
        "inc-1",
        0,
        Status::Outage,
        Cause::ProviderError,
    );
    assert_eq!(
        events(&rules.evaluate(&picture(1, vec![down.clone()]))),
        ["inc-1:opened"]
    );
    down.incident.as_mut().unwrap().confirmed = true;
    assert_eq!(
        events(&rules.evaluate(&picture(2, vec![down.clone()]))),
        ["inc-1:confirmed_by_provider"]
    );
    assert!(rules.evaluate(&picture(3, vec![down])).is_empty());
}

#[test]
fn maintenance_is_told_once_and_mutes_the_component() {
    let mut rules = rules(WEBHOOK);
    let in_maintenance = KeyPicture {
        assessment: fuse(
            ProbeReading::Failing {
                status: Status::Outage,
                cause: Cause::ProviderError,
            },
            OfficialReading::Read(Status::Maintenance),
        ),
        ..failing(
            "openai-api",
            "inc-1",
            0,
            Status::Outage,
            Cause::ProviderError,
        )
    };
    assert_eq!(in_maintenance.assessment.status, Status::Maintenance);
    let told = rules.evaluate(&picture(0, vec![in_maintenance.clone()]));
    assert_eq!(told.len(), 1, "{:?}", events(&told));
    assert_eq!(told[0].message.event, AlertEvent::MaintenanceStarted);
    assert!(rules.evaluate(&picture(5, vec![in_maintenance])).is_empty());
    // Its end is not told as a recovery.
    assert!(rules
        .evaluate(&picture(9, vec![passing("openai-api")]))
        .is_empty());
}

#[test]
fn filters_pick_services_components_and_events() {
    let mut rules = rules(
        "[[alert]]\nname = \"web-only\"\nkind = \"webhook\"\nurl = \"https://h.example/a\"\ncomponents = [\"web\"]\nsettle = \"0s\"\n\
         [[alert]]\nname = \"anthropic\"\nkind = \"webhook\"\nurl = \"https://h.example/b\"\nservices = [\"anthropic-api\"]\nsettle = \"0s\"\n\
         [[alert]]\nname = \"recoveries\"\nkind = \"webhook\"\nurl = \"https://h.example/c\"\nevents = [\"recovered\"]\nsettle = \"0s\"\n",
    );
    let down = failing(
        "openai-api",
        "inc-1",
        0,
        Status::Outage,
        Cause::ProviderError,
    );
    assert!(rules.evaluate(&picture(0, vec![down])).is_empty());
    // "recoveries" never told the opening, so it has no recovery to tell either.
    assert!(rules
        .evaluate(&picture(5, vec![passing("openai-api")]))
        .is_empty());
}

#[test]
fn a_restart_neither_repeats_what_was_decided_nor_forgets_what_is_open() {
    let mut before = rules(WEBHOOK);
    let down = failing(
        "openai-api",
        "inc-1",
        0,
        Status::Outage,
        Cause::ProviderError,
    );
    let told = before.evaluate(&picture(0, vec![down.clone()]));
    let decided: Vec<Decided> = told
        .iter()
        .map(|n| Decided {
            alert: n.alert.clone(),
            message: n.message.clone(),
        })
        .collect();
    let mut after = rules(WEBHOOK);
    after.resume(&decided);
    assert!(after.evaluate(&picture(3, vec![down])).is_empty());
    let back = after.evaluate(&picture(6, vec![passing("openai-api")]));
    assert_eq!(events(&back), ["inc-1:recovered"]);
    // And after the restart, an incident that ended while down is still told as recovered.
    let mut third = rules(WEBHOOK);
    third.resume(&decided);
    assert_eq!(
        events(&third.evaluate(&picture(9, vec![passing("openai-api")]))),
        ["inc-1:recovered"]
    );
}

#[test]
fn the_message_text_carries_summary_advice_official_view_and_link() {
    let mut rules = rules(WEBHOOK);
    let told = rules.evaluate(&picture(
        0,
        vec![failing(
            "openai-api",
            "inc-1",
            0,
            Status::Outage,
            Cause::ProviderError,
        )],
    ));
    let text = told[0].message.text();
    assert!(text.contains("requests fail"));
    assert!(text.contains("use another provider"));
    assert!(text.contains("Official page"));
    assert!(text.contains("http://aiwatch.test/services/openai-api"));
    let json = serde_json::to_value(&told[0].message).unwrap();
    for field in [
        "version",
        "event",
        "service",
        "component",
        "region",
        "status",
        "scope",
        "cause",
        "summary",
        "advice",
        "official",
        "dashboard_url",
        "incident_id",
        "at",
    ] {
        assert!(json.get(field).is_some(), "webhook body lacks {field}");
    }
    assert_eq!(json["event"], "opened");
    assert_eq!(json["version"], 1);
}

#[test]
fn an_alert_that_skips_degradations_still_hears_when_it_becomes_an_outage() {
    let mut rules = rules(&format!("{WEBHOOK}events = [\"opened\", \"recovered\"]\n"));
    let slow = failing(
        "openai-api",
        "inc-1",
        0,
        Status::Degraded,
        Cause::SlowResponses,
    );
    assert!(rules.evaluate(&picture(0, vec![slow])).is_empty());
    let down = failing(
        "openai-api",
        "inc-1",
        0,
        Status::Outage,
        Cause::ProviderError,
    );
    assert_eq!(
        events(&rules.evaluate(&picture(1, vec![down]))),
        ["inc-1:opened"]
    );
    assert_eq!(
        events(&rules.evaluate(&picture(2, vec![passing("openai-api")]))),
        ["inc-1:recovered"]
    );
}

#[test]
fn a_usage_spike_that_lasts_minutes_is_one_alert() {
    let mut rules = rules(&format!(
        "{}events = [\"usage_spike\"]\n",
        WEBHOOK.replace("settle = \"0s\"", "settle = \"5m\"")
    ));
    let mut told = Vec::new();
    for minute in 0..10 {
        let mut p = picture(minute, vec![passing("openai-api")]);
        // The gateway reports a spike each minute, stamped with that minute.
        p.usage_spikes = vec![aiwatch_core::alert_rules::UsageSpike {
            label: "key-2".into(),
            since: t(minute),
            summary: "key-2 used 90000 tokens this minute, 30× its normal".into(),
        }];
        told.extend(rules.evaluate(&p));
    }
    assert_eq!(told.len(), 1, "{:?}", events(&told));
    assert_eq!(told[0].message.event, AlertEvent::UsageSpike);
    assert!(told[0].message.title.contains("key-2"));
}
