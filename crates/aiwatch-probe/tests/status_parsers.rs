//! Proves the official status-page parsers (`aiwatch_probe::status`) turn real captured payloads
//! into exactly the expected normalized model, reject what is not their format with a clear
//! `Error::StatusFormat`, and never panic on arbitrary input.

use aiwatch_core::official::{
    Component, ComponentStatus, Impact, Incident, IncidentStatus, IncidentUpdate, Indicator,
    Maintenance, MaintenanceStatus, OfficialStatus,
};
use aiwatch_probe::status::{
    parse_feed, parse_google_cloud_incidents, parse_statuspage_incidents,
    parse_statuspage_maintenances, parse_statuspage_summary,
};
use aiwatch_probe::Error;
use chrono::{DateTime, Utc};
use proptest::prelude::*;
use serde_json::{json, Value};

/// A captured payload from `tests/fixtures/statuspages/` (see `SOURCES.md` there).
macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/statuspages/",
            $name
        ))
        .as_slice()
    };
}

const ANTHROPIC_DEGRADED: &[u8] = fixture!("anthropic-summary-degraded-monitoring-2026-10-07.json");
const ANTHROPIC_OPERATIONAL: &[u8] = fixture!("anthropic-summary-operational-2026-09-22.json");
const ANTHROPIC_MAINTENANCES: &[u8] = fixture!("anthropic-scheduled-maintenances-2026-09-15.json");
const OPENAI_DEGRADED: &[u8] = fixture!("openai-incidentio-summary-degraded-2026-09-29.json");
const OPENAI_OPERATIONAL: &[u8] = fixture!("openai-incidentio-summary-operational-2026-07-09.json");
const GITHUB_DEGRADED: &[u8] = fixture!("statuspage-summary-degraded-github-2022-11-25.json");
const GCP_INCIDENTS: &[u8] = fixture!("gcp-incidents-2022-06.json");
const CLAUDE_ATOM: &[u8] = fixture!("claude-history-2026-02-04.atom");
const CLAUDE_RSS: &[u8] = fixture!("claude-history-2026-02-04.rss");

fn t(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .expect("test timestamp")
        .with_timezone(&Utc)
}

fn component(id: &str, name: &str, status: &str) -> Component {
    Component {
        id: id.into(),
        name: name.into(),
        status: ComponentStatus::from_raw(status),
        group: None,
    }
}

fn statuses(updates: &[IncidentUpdate]) -> Vec<&str> {
    updates.iter().map(|u| u.status.as_str()).collect()
}

fn times(updates: &[IncidentUpdate]) -> Vec<Option<DateTime<Utc>>> {
    updates.iter().map(|u| u.created_at).collect()
}

/// The (format, reason) of a status-format error; any other outcome fails the test.
fn format_error<T: std::fmt::Debug>(result: Result<T, Error>) -> (&'static str, String) {
    match result {
        Err(Error::StatusFormat { format, reason }) => (format, reason),
        other => panic!("expected Error::StatusFormat, got {other:?}"),
    }
}

fn summary(value: Value) -> OfficialStatus {
    parse_statuspage_summary(value.to_string().as_bytes()).expect("summary parses")
}

// ---------------------------------------------------------------------------------------------
// Statuspage summary: real captures
// ---------------------------------------------------------------------------------------------

#[test]
fn anthropic_degraded_summary_has_console_degraded_and_one_monitoring_incident_of_major_impact() {
    let page = parse_statuspage_summary(ANTHROPIC_DEGRADED).unwrap();

    assert_eq!(page.page_name.as_deref(), Some("Claude"));
    assert_eq!(page.page_url.as_deref(), Some("https://status.claude.com"));
    assert_eq!(page.indicator, Some(Indicator::Minor));
    assert_eq!(
        page.description.as_deref(),
        Some("Partially Degraded Service")
    );
    assert_eq!(page.updated_at, Some(t("2026-10-07T23:44:53.565Z")));
    assert_eq!(
        page.components,
        vec![
            component("rwppv331jlwc", "claude.ai", "operational"),
            component(
                "0qbwn08sd68x",
                "Claude Console (platform.claude.com)",
                "degraded_performance"
            ),
            component(
                "k8w3r06qmzrp",
                "Claude API (api.anthropic.com)",
                "operational"
            ),
            component("yyzkbfz2thpt", "Claude Code", "operational"),
            component("bpp5gb3hpjcl", "Claude Cowork", "operational"),
            component("0scnb50nvy53", "Claude for Government", "operational"),
        ]
    );
    assert!(page.maintenances.is_empty());

    assert_eq!(page.incidents.len(), 1);
    let incident = &page.incidents[0];
    assert_eq!(
        Incident {
            updates: Vec::new(),
            ..incident.clone()
        },
        Incident {
            id: "978mjkgw6mh7".into(),
            name: "Elevated errors on platform.claude.com".into(),
            status: IncidentStatus::Monitoring,
            impact: Impact::Major,
            created_at: Some(t("2026-10-07T13:25:04.163Z")),
            updated_at: Some(t("2026-10-07T21:45:27.699Z")),
            resolved_at: None,
            url: Some("https://stspg.io/sjkw7njwf0mt".into()),
            components: vec!["0qbwn08sd68x".into()],
            updates: Vec::new(),
        }
    );
    assert_eq!(
        statuses(&incident.updates),
        ["monitoring", "identified", "investigating", "investigating"]
    );
    assert_eq!(
        times(&incident.updates),
        [
            Some(t("2026-10-07T21:44:41.466Z")),
            Some(t("2026-10-07T17:28:02.568Z")),
            Some(t("2026-10-07T16:36:44.789Z")),
            Some(t("2026-10-07T13:25:04.271Z")),
        ]
    );
    assert_eq!(
        incident.updates[0].body,
        "We've mitigated the errors loading usage data on platform.claude.com and in the Admin API \
         usage report. While we work on a full fix, the most recent ~30 minutes of usage may take \
         longer to appear on the platform.claude.com. API requests are not affected, and we will \
         provide additional updates here."
    );
    assert!(incident.updates[3]
        .body
        .starts_with("We are investigating elevated errors affecting usage data"));
}

#[test]
fn anthropic_operational_summary_is_all_operational_with_nothing_open() {
    let page = parse_statuspage_summary(ANTHROPIC_OPERATIONAL).unwrap();

    assert_eq!(page.page_name.as_deref(), Some("Claude"));
    assert_eq!(page.indicator, Some(Indicator::None));
    assert_eq!(page.description.as_deref(), Some("All Systems Operational"));
    assert_eq!(page.updated_at, Some(t("2026-09-22T04:54:19.632Z")));
    let names: Vec<&str> = page.components.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "claude.ai",
            "Claude Console (platform.claude.com)",
            "Claude API (api.anthropic.com)",
            "Claude Code",
            "Claude Cowork",
            "Claude for Government",
        ]
    );
    assert!(page
        .components
        .iter()
        .all(|c| c.status == ComponentStatus::Operational && c.group.is_none()));
    assert!(page.incidents.is_empty());
    assert!(page.maintenances.is_empty());
}

#[test]
fn openai_incidentio_degraded_summary_has_22_of_25_degraded_and_two_investigating_incidents_without_components(
) {
    let page = parse_statuspage_summary(OPENAI_DEGRADED).unwrap();

    assert_eq!(page.page_name.as_deref(), Some("OpenAI"));
    assert_eq!(page.page_url.as_deref(), Some("https://status.openai.com/"));
    assert_eq!(page.indicator, Some(Indicator::Minor));
    assert_eq!(
        page.description.as_deref(),
        Some("Partial System Degradation")
    );
    assert_eq!(page.updated_at, Some(t("2026-09-29T18:29:41Z")));
    assert_eq!(page.components.len(), 25);
    let degraded = page
        .components
        .iter()
        .filter(|c| c.status == ComponentStatus::DegradedPerformance)
        .count();
    assert_eq!(degraded, 22);
    let operational: Vec<(&str, &str)> = page
        .components
        .iter()
        .filter(|c| c.status == ComponentStatus::Operational)
        .map(|c| (c.id.as_str(), c.name.as_str()))
        .collect();
    assert_eq!(
        operational,
        [
            ("01KVR95C58GGWHV7RYBT32NP11", "Ads API"),
            ("01M3Q6W0262E8VW5DE1MJMMN0T", "Decisions"),
            ("01M3Q6NERHVE2WPPAQRHBAC6XB", "dots"),
        ]
    );
    assert!(page.components.iter().all(|c| c.group.is_none()));
    // incident.io sends no `scheduled_maintenances` key at all.
    assert!(page.maintenances.is_empty());

    let heads: Vec<Incident> = page
        .incidents
        .iter()
        .map(|i| Incident {
            updates: Vec::new(),
            ..i.clone()
        })
        .collect();
    assert_eq!(
        heads,
        vec![
            Incident {
                id: "01M3Q4RK1SM4EMK445GGPG7C0N".into(),
                name: "Elevated errors across ChatGPT, Codex, and the API including the Agents API"
                    .into(),
                status: IncidentStatus::Investigating,
                impact: Impact::Minor,
                created_at: Some(t("2026-09-29T17:52:52Z")),
                updated_at: Some(t("2026-09-29T18:24:17Z")),
                resolved_at: None,
                url: None,
                components: Vec::new(),
                updates: Vec::new(),
            },
            Incident {
                id: "01M3Q4HMNP8SZ27DTZKW6F5BJ4".into(),
                name: "Support chat unavailable".into(),
                status: IncidentStatus::Investigating,
                impact: Impact::None,
                created_at: Some(t("2026-09-29T17:49:05Z")),
                updated_at: Some(t("2026-09-29T17:55:17Z")),
                resolved_at: None,
                url: None,
                components: Vec::new(),
                updates: Vec::new(),
            },
        ]
    );
    assert_eq!(
        times(&page.incidents[0].updates),
        [
            Some(t("2026-09-29T18:24:17Z")),
            Some(t("2026-09-29T17:52:52Z"))
        ]
    );
    assert_eq!(
        statuses(&page.incidents[1].updates),
        ["investigating", "investigating"]
    );
    assert!(page.incidents[1].updates[0]
        .body
        .starts_with("Our Help Center is available, but support chat remains unavailable."));
}

#[test]
fn openai_incidentio_operational_summary_without_incidents_key_has_empty_collections() {
    let page = parse_statuspage_summary(OPENAI_OPERATIONAL).unwrap();

    assert_eq!(page.page_name.as_deref(), Some("OpenAI"));
    assert_eq!(page.indicator, Some(Indicator::None));
    assert_eq!(page.description.as_deref(), Some("All Systems Operational"));
    assert_eq!(page.updated_at, Some(t("2026-07-09T19:25:56Z")));
    assert_eq!(page.components.len(), 25);
    assert!(page
        .components
        .iter()
        .all(|c| c.status == ComponentStatus::Operational));
    assert_eq!(
        page.components[0],
        component("01JMXBRMFE4MAP2BHSJNZ787WX", "Images", "operational")
    );
    assert!(page.incidents.is_empty());
    assert!(page.maintenances.is_empty());
}

#[test]
fn github_summary_has_packages_partial_outage_and_incident_components_from_updates() {
    let page = parse_statuspage_summary(GITHUB_DEGRADED).unwrap();

    assert_eq!(page.page_name.as_deref(), Some("GitHub"));
    assert_eq!(
        page.page_url.as_deref(),
        Some("https://www.githubstatus.com")
    );
    assert_eq!(page.indicator, Some(Indicator::Minor));
    assert_eq!(page.description.as_deref(), Some("Minor Service Outage"));
    assert_eq!(page.updated_at, Some(t("2022-11-25T15:50:05.892Z")));
    assert_eq!(page.components.len(), 11);
    let not_operational: Vec<&Component> = page
        .components
        .iter()
        .filter(|c| c.status != ComponentStatus::Operational)
        .collect();
    assert_eq!(
        not_operational,
        [&component("st3j38cctv9l", "Packages", "partial_outage")]
    );
    assert!(page.maintenances.is_empty());

    assert_eq!(page.incidents.len(), 1);
    let incident = &page.incidents[0];
    assert_eq!(incident.id, "ljwdk6qml8z8");
    assert_eq!(incident.name, "Incident with Packages and Pages");
    assert_eq!(incident.status, IncidentStatus::Investigating);
    assert_eq!(incident.impact, Impact::Major);
    assert_eq!(incident.created_at, Some(t("2022-11-25T14:39:09.548Z")));
    assert_eq!(incident.updated_at, Some(t("2022-11-25T15:50:04.970Z")));
    assert_eq!(incident.resolved_at, None);
    assert_eq!(
        incident.url.as_deref(),
        Some("https://stspg.io/33vh8r7z43kh")
    );
    assert_eq!(incident.components, ["st3j38cctv9l", "vg70hn9s2tyj"]);
    assert_eq!(incident.updates.len(), 7);
    assert!(incident.updates.iter().all(|u| u.status == "investigating"));
    assert_eq!(
        incident.updates.first().unwrap().created_at,
        Some(t("2022-11-25T15:50:04.967Z"))
    );
    assert_eq!(
        incident.updates.last().unwrap().created_at,
        Some(t("2022-11-25T14:39:09.577Z"))
    );
}

#[test]
fn statuspage_incidents_parser_reads_the_incidents_of_a_summary_body() {
    let summary = parse_statuspage_summary(ANTHROPIC_DEGRADED).unwrap();
    let incidents = parse_statuspage_incidents(ANTHROPIC_DEGRADED).unwrap();
    assert_eq!(incidents, summary.incidents);
}

#[test]
fn scheduled_maintenances_fixture_gives_two_completed_maintenances_with_their_windows() {
    let maintenances = parse_statuspage_maintenances(ANTHROPIC_MAINTENANCES).unwrap();

    let heads: Vec<Maintenance> = maintenances
        .iter()
        .map(|m| Maintenance {
            updates: Vec::new(),
            ..m.clone()
        })
        .collect();
    assert_eq!(
        heads,
        vec![
            Maintenance {
                id: "x017628t2rl5".into(),
                name: "Upgrades to Connector Auth Storage".into(),
                status: MaintenanceStatus::Completed,
                impact: Impact::Maintenance,
                scheduled_for: Some(t("2025-08-29T01:25:00Z")),
                scheduled_until: Some(t("2025-08-29T02:40:00Z")),
                url: Some("https://stspg.io/kzxt8ykxyx3j".into()),
                components: vec!["rwppv331jlwc".into()],
                updates: Vec::new(),
            },
            Maintenance {
                id: "16z0qdmy3qv2".into(),
                name: "Scheduled maintenance for Claude.ai and Anthropic Console".into(),
                status: MaintenanceStatus::Completed,
                impact: Impact::Maintenance,
                scheduled_for: Some(t("2024-12-15T01:00:00Z")),
                scheduled_until: Some(t("2024-12-15T01:30:00Z")),
                url: Some("https://stspg.io/6g6xhf17sbrb".into()),
                components: vec!["rwppv331jlwc".into(), "0qbwn08sd68x".into()],
                updates: Vec::new(),
            },
        ]
    );
    assert_eq!(
        statuses(&maintenances[0].updates),
        ["completed", "verifying", "in_progress", "scheduled"]
    );
    assert_eq!(
        statuses(&maintenances[1].updates),
        ["completed", "in_progress", "scheduled", "scheduled"]
    );
    assert_eq!(
        maintenances[0].updates[0],
        IncidentUpdate {
            status: "completed".into(),
            body: "The scheduled maintenance has been completed.".into(),
            created_at: Some(t("2025-08-29T02:40:21.277Z")),
        }
    );
    // The same file is not a summary: no `status`, no `components`.
    let (_, reason) = format_error(parse_statuspage_summary(ANTHROPIC_MAINTENANCES));
    assert!(reason.contains("not a Statuspage summary"), "{reason}");
}

// ---------------------------------------------------------------------------------------------
// Statuspage: shapes and edge cases
// ---------------------------------------------------------------------------------------------

#[test]
fn group_rows_are_not_components_and_their_children_carry_the_group_name() {
    let page = summary(json!({
        "status": {"indicator": "none"},
        "components": [
            {"id": "c1", "name": "Chat", "status": "operational", "group_id": "g1", "group": false},
            {"id": "g1", "name": "ChatGPT", "status": "partial_outage", "group": true, "components": ["c1", "c2"]},
            {"id": "c2", "name": "Login", "status": "major_outage", "group_id": "g1"},
            {"id": "c3", "name": "API", "status": "operational", "group_id": "missing-group"},
        ]
    }));
    assert_eq!(
        page.components,
        vec![
            Component {
                group: Some("ChatGPT".into()),
                ..component("c1", "Chat", "operational")
            },
            Component {
                group: Some("ChatGPT".into()),
                ..component("c2", "Login", "major_outage")
            },
            component("c3", "API", "operational"),
        ]
    );
}

#[test]
fn duplicated_ids_keep_the_first_occurrence() {
    let page = summary(json!({
        "components": [
            {"id": "a", "name": "First", "status": "operational"},
            {"id": "b", "name": "Other", "status": "operational"},
            {"id": "a", "name": "Second", "status": "major_outage"},
        ],
        "incidents": [
            {"id": "i", "name": "First", "status": "investigating", "impact": "minor"},
            {"id": "i", "name": "Second", "status": "resolved", "impact": "critical"},
        ],
        "scheduled_maintenances": [
            {"id": "m", "name": "First", "status": "scheduled", "impact": "maintenance"},
            {"id": "m", "name": "Second", "status": "completed", "impact": "maintenance"},
        ]
    }));
    assert_eq!(
        page.components,
        vec![
            component("a", "First", "operational"),
            component("b", "Other", "operational")
        ]
    );
    assert_eq!(page.incidents.len(), 1);
    assert_eq!(page.incidents[0].name, "First");
    assert_eq!(page.maintenances.len(), 1);
    assert_eq!(page.maintenances[0].status, MaintenanceStatus::Scheduled);
}

#[test]
fn unknown_enum_values_are_kept_raw_and_never_read_as_operational() {
    let page = summary(json!({
        "status": {"indicator": "catastrophic", "description": "?"},
        "components": [{"id": "a", "name": "A", "status": "on_fire"}],
        "incidents": [{"id": "i", "name": "I", "status": "escalated", "impact": "apocalyptic"}],
        "scheduled_maintenances": [{"id": "m", "name": "M", "status": "postponed", "impact": "tiny"}],
    }));
    assert_eq!(
        page.indicator,
        Some(Indicator::Unknown("catastrophic".into()))
    );
    assert_eq!(
        page.components[0].status,
        ComponentStatus::Unknown("on_fire".into())
    );
    assert_eq!(
        page.incidents[0].status,
        IncidentStatus::Unknown("escalated".into())
    );
    assert_eq!(
        page.incidents[0].impact,
        Impact::Unknown("apocalyptic".into())
    );
    assert_eq!(
        page.maintenances[0].status,
        MaintenanceStatus::Unknown("postponed".into())
    );
    assert_eq!(page.maintenances[0].impact, Impact::Unknown("tiny".into()));
}

#[test]
fn missing_impact_is_unknown_and_missing_collections_are_empty() {
    let page = summary(json!({
        "status": {"indicator": "minor"},
        "incidents": [{"id": "i", "name": "I", "status": "identified"}],
    }));
    assert_eq!(page.incidents[0].impact, Impact::Unknown(String::new()));
    assert!(page.components.is_empty());
    assert!(page.maintenances.is_empty());
    assert_eq!(page.page_name, None);
    assert_eq!(page.updated_at, None);
}

#[test]
fn timestamps_with_offsets_convert_to_utc_without_zone_are_utc_and_garbage_is_none() {
    let incident = |created_at: Value| {
        let page = summary(json!({
            "components": [],
            "incidents": [{"id": "i", "name": "I", "status": "investigating", "impact": "minor",
                           "created_at": created_at}],
        }));
        page.incidents[0].created_at
    };
    let expected = Some(t("2026-10-07T13:25:04.163Z"));
    assert_eq!(incident(json!("2026-10-07T13:25:04.163Z")), expected);
    assert_eq!(incident(json!("2026-10-07T15:25:04.163+02:00")), expected);
    assert_eq!(incident(json!("2026-10-07T08:25:04.163-05:00")), expected);
    assert_eq!(incident(json!("2026-10-07T15:25:04.163+0200")), expected);
    assert_eq!(incident(json!("2026-10-07T13:25:04.163")), expected);
    assert_eq!(incident(json!("2026-10-07 13:25:04.163")), expected);
    assert_eq!(incident(json!("2026-10-07 13:25:04.163 UTC")), expected);
    assert_eq!(incident(json!("yesterday")), None);
    assert_eq!(incident(json!("2026-13-45T99:00:00Z")), None);
    assert_eq!(incident(json!("")), None);
    assert_eq!(incident(json!(1_760_000_000)), None);
    assert_eq!(incident(Value::Null), None);
}

#[test]
fn reminder_intervals_as_a_string_or_null_or_anything_is_tolerated() {
    for reminder in [json!("[]"), Value::Null, json!([30, 60]), json!({"x": 1})] {
        let page = summary(json!({
            "components": [],
            "incidents": [{"id": "i", "name": "I", "status": "investigating", "impact": "minor",
                           "reminder_intervals": reminder}],
        }));
        assert_eq!(page.incidents.len(), 1);
    }
}

#[test]
fn incident_components_may_be_bare_ids_and_merge_with_update_codes_without_repeats() {
    let page = summary(json!({
        "components": [],
        "incidents": [{
            "id": "i", "name": "I", "status": "investigating", "impact": "minor",
            "shortlink": "",
            "components": ["a", {"id": "b", "name": "B"}],
            "incident_updates": [
                {"status": "identified", "body": "two", "created_at": "2026-01-01T10:00:00Z",
                 "affected_components": [{"code": "b"}, {"code": "c"}]},
                {"status": "investigating", "body": "one", "created_at": "2026-01-01T09:00:00Z",
                 "affected_components": null},
            ]
        }]
    }));
    let incident = &page.incidents[0];
    assert_eq!(incident.components, ["a", "b", "c"]);
    assert_eq!(incident.url, None, "a blank shortlink is no URL");
    assert_eq!(statuses(&incident.updates), ["identified", "investigating"]);
}

#[test]
fn updates_listed_oldest_first_are_put_newest_first() {
    let page = summary(json!({
        "components": [],
        "incidents": [{
            "id": "i", "name": "I", "status": "resolved", "impact": "minor",
            "incident_updates": [
                {"status": "investigating", "body": "one", "created_at": "2026-01-01T09:00:00Z"},
                {"status": "resolved", "body": "two", "created_at": "2026-01-01T10:00:00Z"},
            ]
        }]
    }));
    assert_eq!(
        statuses(&page.incidents[0].updates),
        ["resolved", "investigating"]
    );
}

#[test]
fn incidents_list_envelope_without_incidents_is_an_empty_list() {
    let incidents = parse_statuspage_incidents(br#"{"page": {"id": "x"}}"#).unwrap();
    assert!(incidents.is_empty());
    let maintenances =
        parse_statuspage_maintenances(br#"{"page": {"id": "x"}, "scheduled_maintenances": []}"#)
            .unwrap();
    assert!(maintenances.is_empty());
}

#[test]
fn incidents_list_reads_resolved_and_postmortem_incidents() {
    let body = json!({
        "page": {"id": "p", "name": "P"},
        "incidents": [
            {"id": "a", "name": "A", "status": "postmortem", "impact": "critical",
             "resolved_at": "2026-01-02T00:00:00Z"},
            {"id": "b", "name": "B", "status": "resolved", "impact": "none"},
        ]
    });
    let incidents = parse_statuspage_incidents(body.to_string().as_bytes()).unwrap();
    assert_eq!(incidents[0].status, IncidentStatus::Postmortem);
    assert_eq!(incidents[0].impact, Impact::Critical);
    assert_eq!(incidents[0].resolved_at, Some(t("2026-01-02T00:00:00Z")));
    assert_eq!(incidents[1].status, IncidentStatus::Resolved);
    assert_eq!(incidents[1].impact, Impact::None);
}

// ---------------------------------------------------------------------------------------------
// Bad input: clear errors, never a panic
// ---------------------------------------------------------------------------------------------

const HTML_PAGE: &[u8] =
    b"\n<!DOCTYPE html>\n<html lang=\"en\"><head><title>Just a moment...</title></head>\
<body>Checking your browser</body></html>";

#[test]
fn truncated_json_is_a_format_error_that_says_truncated() {
    let cut = &ANTHROPIC_DEGRADED[..ANTHROPIC_DEGRADED.len() / 2];
    let (format, reason) = format_error(parse_statuspage_summary(cut));
    assert_eq!(format, "statuspage summary");
    assert!(reason.starts_with("truncated JSON"), "{reason}");
    let (_, reason) = format_error(parse_statuspage_incidents(cut));
    assert!(reason.starts_with("truncated JSON"), "{reason}");
    let (_, reason) = format_error(parse_statuspage_maintenances(
        &ANTHROPIC_MAINTENANCES[..ANTHROPIC_MAINTENANCES.len() - 3],
    ));
    assert!(reason.starts_with("truncated JSON"), "{reason}");
    let (format, reason) = format_error(parse_google_cloud_incidents(
        &GCP_INCIDENTS[..GCP_INCIDENTS.len() / 3],
        &[],
    ));
    assert_eq!(format, "google cloud incidents");
    assert!(reason.starts_with("truncated JSON"), "{reason}");
}

#[test]
fn html_page_served_with_200_is_a_format_error_that_says_html_and_its_title() {
    let expected = "got an HTML page (title \"Just a moment...\"), not JSON";
    assert_eq!(
        format_error(parse_statuspage_summary(HTML_PAGE)).1,
        expected
    );
    assert_eq!(
        format_error(parse_statuspage_incidents(HTML_PAGE)).1,
        expected
    );
    assert_eq!(
        format_error(parse_statuspage_maintenances(HTML_PAGE)).1,
        expected
    );
    assert_eq!(
        format_error(parse_google_cloud_incidents(HTML_PAGE, &[])).1,
        expected
    );
    let (format, reason) = format_error(parse_feed(HTML_PAGE));
    assert_eq!(format, "atom/rss feed");
    assert_eq!(
        reason,
        "got an HTML page (title \"Just a moment...\"), not an Atom/RSS feed"
    );
    let (_, reason) = format_error(parse_statuspage_summary(b"<html><body>502</body></html>"));
    assert_eq!(reason, "got an HTML page, not JSON");
}

#[test]
fn a_feed_given_to_a_json_parser_is_a_format_error_that_says_xml() {
    let (_, reason) = format_error(parse_statuspage_summary(CLAUDE_ATOM));
    assert_eq!(reason, "got XML (a feed?), not JSON");
}

#[test]
fn empty_body_is_a_format_error() {
    assert_eq!(
        format_error(parse_statuspage_summary(b"  \n")).1,
        "empty body, not JSON"
    );
    assert_eq!(format_error(parse_feed(b"")).1, "empty body, not a feed");
}

#[test]
fn json_that_is_not_an_object_is_a_format_error_naming_what_was_found() {
    assert_eq!(
        format_error(parse_statuspage_summary(b"[]")).1,
        "expected a JSON object, got an array"
    );
    assert_eq!(
        format_error(parse_statuspage_incidents(b"\"ok\"")).1,
        "expected a JSON object, got a string"
    );
    assert_eq!(
        format_error(parse_statuspage_maintenances(b"null")).1,
        "expected a JSON object, got null"
    );
    assert_eq!(
        format_error(parse_google_cloud_incidents(b"{}", &[])).1,
        "expected a JSON array of incidents, got an object"
    );
}

#[test]
fn object_of_another_format_is_rejected_with_its_keys() {
    let (_, reason) = format_error(parse_statuspage_summary(br#"{"activeIncidents": []}"#));
    assert_eq!(
        reason,
        "neither \"status\" nor \"components\" is present, so this is not a Statuspage summary \
         (keys: activeIncidents)"
    );
    let (_, reason) = format_error(parse_statuspage_incidents(b"{}"));
    assert_eq!(
        reason,
        "no \"incidents\" array and no \"page\", so this is not a Statuspage incidents list \
         (no keys)"
    );
}

#[test]
fn wrong_types_are_format_errors_naming_the_field_path() {
    assert_eq!(
        format_error(parse_statuspage_summary(br#"{"components":"x"}"#)).1,
        "components: expected an array, got a string"
    );
    assert_eq!(
        format_error(parse_statuspage_summary(br#"{"components":[1]}"#)).1,
        "components[0]: expected an object, got a number"
    );
    assert_eq!(
        format_error(parse_statuspage_summary(br#"{"status":{"indicator":3}}"#)).1,
        "status.indicator: expected a string, got a number"
    );
    let body = json!({
        "components": [],
        "incidents": [{"id": "i", "name": "I", "status": "investigating", "impact": "minor",
                       "incident_updates": [{"status": "investigating", "body": 42}]}]
    });
    assert_eq!(
        format_error(parse_statuspage_summary(body.to_string().as_bytes())).1,
        "incidents[0].incident_updates[0].body: expected a string, got a number"
    );
    assert_eq!(
        format_error(parse_statuspage_summary(
            br#"{"components":[{"id":"a","name":"A","status":"operational","group":"yes"}]}"#
        ))
        .1,
        "components[0].group: expected a boolean, got a string"
    );
    assert_eq!(
        format_error(parse_google_cloud_incidents(
            br#"[{"id":"x","affected_products":{}}]"#,
            &[]
        ))
        .1,
        "[0].affected_products: expected an array, got an object"
    );
}

#[test]
fn missing_required_fields_are_format_errors_naming_the_field_path() {
    assert_eq!(
        format_error(parse_statuspage_summary(
            br#"{"components":[{"id":"a","name":"A","status":"operational"},{"name":"B","status":"operational"}]}"#
        ))
        .1,
        "components[1].id: missing (required)"
    );
    assert_eq!(
        format_error(parse_statuspage_summary(
            br#"{"components":[{"id":"a","name":"A"}]}"#
        ))
        .1,
        "components[0].status: missing (required)"
    );
}

#[test]
fn numeric_ids_are_read_as_text() {
    let page = summary(json!({"components": [{"id": 7, "name": "A", "status": "operational"}]}));
    assert_eq!(page.components[0].id, "7");
}

#[test]
fn feed_parser_rejects_json_and_xml_that_is_not_a_feed() {
    let (format, reason) = format_error(parse_feed(
        br#"{"version": "https://jsonfeed.org/version/1.1", "items": []}"#,
    ));
    assert_eq!(format, "atom/rss feed");
    assert_eq!(reason, "got JSON, not an Atom/RSS feed");
    let (_, reason) = format_error(parse_feed(b"<root><child/></root>"));
    assert!(
        reason.starts_with("not a readable Atom/RSS feed"),
        "{reason}"
    );
}

// ---------------------------------------------------------------------------------------------
// Google Cloud incidents.json
// ---------------------------------------------------------------------------------------------

fn products(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

#[test]
fn gcp_without_a_product_filter_keeps_all_four_resolved_incidents_with_mapped_impacts() {
    let page = parse_google_cloud_incidents(GCP_INCIDENTS, &[]).unwrap();

    assert_eq!(
        page.page_name.as_deref(),
        Some("Google Cloud Service Health")
    );
    assert_eq!(
        page.page_url.as_deref(),
        Some("https://status.cloud.google.com")
    );
    assert_eq!(page.indicator, Some(Indicator::None));
    assert_eq!(page.description, None);
    assert!(page.components.is_empty());
    assert!(page.maintenances.is_empty());
    assert_eq!(page.updated_at, Some(t("2022-06-28T17:04:18+00:00")));

    let heads: Vec<Incident> = page
        .incidents
        .iter()
        .map(|i| Incident {
            updates: Vec::new(),
            ..i.clone()
        })
        .collect();
    let resolved =
        |id: &str, name: &str, impact: Impact, begin, modified, end, comps: &[&str]| Incident {
            id: id.into(),
            name: name.into(),
            status: IncidentStatus::Resolved,
            impact,
            created_at: Some(t(begin)),
            updated_at: Some(t(modified)),
            resolved_at: Some(t(end)),
            url: Some(format!("https://status.cloud.google.com/incidents/{id}")),
            components: comps.iter().map(|c| c.to_string()).collect(),
            updates: Vec::new(),
        };
    assert_eq!(
        heads,
        vec![
            resolved(
                "pXUM8jeE61fpp3VXz5sr",
                "Elevated packet loss in europe-north1",
                Impact::Minor,
                "2022-06-28T16:08:29+00:00",
                "2022-06-28T17:04:18+00:00",
                "2022-06-28T17:04:17+00:00",
                &["5x6CGnZvSHQZ26KtxpK1", "VNJxzcH58QmTt5H6pnT6"],
            ),
            resolved(
                "drLHg29pR5QHUvr5buDq",
                "vSphere vCenter and NSX may not have been available for a short period of time in us-central1",
                Impact::Major,
                "2022-06-23T07:13:00+00:00",
                "2022-06-24T21:44:18+00:00",
                "2022-06-23T13:36:00+00:00",
                &["9H6gWUHvb2ZubeoxzQ1Y", "L3ggmi3Jy4xJmgodFA9K"],
            ),
            resolved(
                "iAgVMxJUfE1J9et7j9KB",
                "Google Cloud Networking packet loss issue",
                Impact::Critical,
                "2022-06-16T08:11:00+00:00",
                "2022-06-17T00:10:46+00:00",
                "2022-06-16T09:44:00+00:00",
                &[
                    "5x6CGnZvSHQZ26KtxpK1",
                    "BSGtCUnz6ZmyajsjgTKv",
                    "VNJxzcH58QmTt5H6pnT6",
                    "hCNpnTQHkUCCGxJy35Yq",
                ],
            ),
            resolved(
                "Lvd7FBrPJmL7oxhqrDwt",
                "This incident is being merged with an existing incident. All future updates will be provided there: https://status.cloud.google.com/incidents/fc7GCA6kAgnBihezUAkx",
                Impact::Major,
                "2022-06-14T18:40:51+00:00",
                "2022-06-15T00:22:31+00:00",
                "2022-06-15T00:22:31+00:00",
                &["jog4nyYkquiLeSK5s26q"],
            ),
        ]
    );
    assert_eq!(
        statuses(&page.incidents[0].updates),
        ["AVAILABLE", "SERVICE_INFORMATION"]
    );
    assert_eq!(
        times(&page.incidents[0].updates),
        [
            Some(t("2022-06-28T17:04:11+00:00")),
            Some(t("2022-06-28T16:46:45+00:00"))
        ]
    );
    assert!(page.incidents[0].updates[1]
        .body
        .starts_with("Summary: Elevated packet loss in europe-north1"));
    assert_eq!(
        statuses(&page.incidents[2].updates),
        ["AVAILABLE", "AVAILABLE", "SERVICE_OUTAGE"]
    );
    assert_eq!(page.incidents[3].updates.len(), 6);
}

#[test]
fn gcp_with_a_product_filter_keeps_matching_incidents_and_all_resolved_leaves_components_operational(
) {
    let wanted = products(&[
        "Google Cloud Networking",
        "cloud filestore",
        " Vertex Gemini API ",
    ]);
    let page = parse_google_cloud_incidents(GCP_INCIDENTS, &wanted).unwrap();

    assert_eq!(
        page.components,
        vec![
            component(
                "VNJxzcH58QmTt5H6pnT6",
                "Google Cloud Networking",
                "operational"
            ),
            component("jog4nyYkquiLeSK5s26q", "cloud filestore", "operational"),
            // Named by no incident: its id is the requested name, and nothing says it is down.
            component("Vertex Gemini API", "Vertex Gemini API", "operational"),
        ]
    );
    let ids: Vec<&str> = page.incidents.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "pXUM8jeE61fpp3VXz5sr",
            "iAgVMxJUfE1J9et7j9KB",
            "Lvd7FBrPJmL7oxhqrDwt"
        ]
    );
    assert!(page
        .incidents
        .iter()
        .all(|i| i.status == IncidentStatus::Resolved));
    assert_eq!(page.indicator, Some(Indicator::None));
}

#[test]
fn gcp_products_match_by_id_ignoring_case_and_unmatched_products_keep_nothing() {
    let page =
        parse_google_cloud_incidents(GCP_INCIDENTS, &products(&["l3ggmi3jy4xjmgodfa9k"])).unwrap();
    assert_eq!(page.incidents.len(), 1);
    assert_eq!(page.incidents[0].id, "drLHg29pR5QHUvr5buDq");
    assert_eq!(page.components[0].id, "L3ggmi3Jy4xJmgodFA9K");
    assert_eq!(page.components[0].name, "l3ggmi3jy4xjmgodfa9k");

    let page = parse_google_cloud_incidents(GCP_INCIDENTS, &products(&["Nope"])).unwrap();
    assert!(page.incidents.is_empty());
    assert_eq!(
        page.components,
        vec![component("Nope", "Nope", "operational")]
    );
}

/// The real capture with chosen incidents reopened (`end` removed or blanked), because no
/// capture of an open Google Cloud incident exists.
fn gcp_with_open(reopen: &[(&str, Value)]) -> Vec<u8> {
    let mut list: Value = serde_json::from_slice(GCP_INCIDENTS).unwrap();
    for incident in list.as_array_mut().unwrap() {
        for (id, end) in reopen {
            if incident["id"] == *id {
                incident["end"] = end.clone();
            }
        }
    }
    serde_json::to_vec(&list).unwrap()
}

#[test]
fn gcp_open_incidents_set_component_status_by_status_impact_and_indicator_by_worst_severity() {
    let body = gcp_with_open(&[
        // SERVICE_OUTAGE / high on Hybrid Connectivity, Networking, VPC, Cloud NAT.
        ("iAgVMxJUfE1J9et7j9KB", Value::Null),
        // SERVICE_DISRUPTION / medium on Cloud Filestore.
        ("Lvd7FBrPJmL7oxhqrDwt", json!("")),
    ]);
    let wanted = products(&["Cloud NAT", "Cloud Filestore", "VMWare engine"]);
    let page = parse_google_cloud_incidents(&body, &wanted).unwrap();

    assert_eq!(
        page.components,
        vec![
            component("hCNpnTQHkUCCGxJy35Yq", "Cloud NAT", "major_outage"),
            component("jog4nyYkquiLeSK5s26q", "Cloud Filestore", "partial_outage"),
            component("9H6gWUHvb2ZubeoxzQ1Y", "VMWare engine", "operational"),
        ]
    );
    assert_eq!(page.indicator, Some(Indicator::Critical));
    let open: Vec<(&str, &IncidentStatus, Option<DateTime<Utc>>)> = page
        .incidents
        .iter()
        .map(|i| (i.id.as_str(), &i.status, i.resolved_at))
        .collect();
    assert_eq!(
        open,
        [
            (
                "drLHg29pR5QHUvr5buDq",
                &IncidentStatus::Resolved,
                Some(t("2022-06-23T13:36:00+00:00"))
            ),
            ("iAgVMxJUfE1J9et7j9KB", &IncidentStatus::Investigating, None),
            ("Lvd7FBrPJmL7oxhqrDwt", &IncidentStatus::Investigating, None),
        ]
    );

    let page = parse_google_cloud_incidents(
        &gcp_with_open(&[("pXUM8jeE61fpp3VXz5sr", Value::Null)]),
        &products(&["Hybrid Connectivity"]),
    )
    .unwrap();
    assert_eq!(
        page.components[0].status,
        ComponentStatus::DegradedPerformance,
        "SERVICE_INFORMATION is something, not operational"
    );
    assert_eq!(page.indicator, Some(Indicator::Minor));
}

#[test]
fn gcp_unknown_severity_and_status_impact_are_kept_raw() {
    let body =
        br#"[{"id":"x","external_desc":"X","severity":"extreme","status_impact":"SERVICE_MELTDOWN",
        "affected_products":[{"title":"P","id":"p1"}]}]"#;
    let page = parse_google_cloud_incidents(body, &products(&["P"])).unwrap();
    assert_eq!(page.incidents[0].impact, Impact::Unknown("extreme".into()));
    assert_eq!(page.incidents[0].status, IncidentStatus::Investigating);
    assert_eq!(page.incidents[0].url, None);
    assert_eq!(
        page.components[0].status,
        ComponentStatus::Unknown("SERVICE_MELTDOWN".into())
    );
    assert_eq!(page.indicator, Some(Indicator::Unknown("extreme".into())));
}

#[test]
fn gcp_legacy_incidents_match_by_service_name_and_duplicates_keep_the_first() {
    let body = br#"[
        {"id":"a","external_desc":"first","service_key":"k1","service_name":"Cloud Legacy","severity":"low","end":"2020-01-01T00:00:00+00:00"},
        {"id":"a","external_desc":"second","service_key":"k1","service_name":"Cloud Legacy","severity":"high"}
    ]"#;
    let page = parse_google_cloud_incidents(body, &products(&["cloud legacy"])).unwrap();
    assert_eq!(page.incidents.len(), 1);
    assert_eq!(page.incidents[0].name, "first");
    assert_eq!(page.incidents[0].components, ["k1"]);
    assert_eq!(
        page.components,
        vec![component("k1", "cloud legacy", "operational")]
    );
    assert_eq!(page.indicator, Some(Indicator::None));
}

// ---------------------------------------------------------------------------------------------
// Atom / RSS history feeds
// ---------------------------------------------------------------------------------------------

const ATOM_IDS: [&str; 25] = [
    "pvbysfjjrf8m",
    "vcsmyx922y7z",
    "v4v6psj8hkh3",
    "54rr0gbh596p",
    "mhxgcgjrjy7k",
    "d8v3zr02my00",
    "pr6yx3bfr172",
    "lvvsg4wy0mhj",
    "qtmzycrwksws",
    "9qghqkbxtvml",
    "y74v1yzcnzvb",
    "rl6pphjrc2r4",
    "29wh90pcv3r1",
    "5nq70md45xh4",
    "jg3crnxm1j28",
    "8wbm1h0pk78b",
    "833cdm540lld",
    "nkwk08nf2259",
    "1f8s9zn12cfh",
    "5dvcj03m4d57",
    "713v1h3z2j5k",
    "58sxy43h7kvf",
    "ct82mw4kc0kt",
    "yrxt885v63jw",
    "l3q16xnl4t2f",
];

#[test]
fn atom_history_feed_has_25_resolved_incidents_and_indicator_none() {
    let page = parse_feed(CLAUDE_ATOM).unwrap();

    assert_eq!(page.page_name.as_deref(), Some("Claude Status"));
    // feed-rs normalizes link URLs (the feed says "https://status.claude.com").
    assert_eq!(page.page_url.as_deref(), Some("https://status.claude.com/"));
    assert_eq!(page.indicator, Some(Indicator::None));
    assert_eq!(page.updated_at, Some(t("2026-02-04T17:21:16Z")));
    assert!(page.components.is_empty());
    assert!(page.maintenances.is_empty());
    let ids: Vec<&str> = page.incidents.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ATOM_IDS);
    assert!(page
        .incidents
        .iter()
        .all(|i| i.status == IncidentStatus::Resolved && i.resolved_at.is_some()));

    let first = &page.incidents[0];
    assert_eq!(
        *first,
        Incident {
            id: "pvbysfjjrf8m".into(),
            name: "Elevated errors on Claude models".into(),
            status: IncidentStatus::Resolved,
            impact: Impact::Unknown(String::new()),
            created_at: Some(t("2026-02-04T16:39:00Z")),
            updated_at: Some(t("2026-02-04T17:06:00Z")),
            resolved_at: Some(t("2026-02-04T17:06:00Z")),
            url: Some("https://status.claude.com/incidents/pvbysfjjrf8m".into()),
            components: Vec::new(),
            updates: vec![
                IncidentUpdate {
                    status: "resolved".into(),
                    body: "The outage between 16:20 UTC / 8:20 PT and 16:55 UTC / 8:55 PT has now been resolved."
                        .into(),
                    created_at: Some(t("2026-02-04T17:06:00Z")),
                },
                IncidentUpdate {
                    status: "identified".into(),
                    body: "The issue has been identified and a fix is being implemented.".into(),
                    created_at: Some(t("2026-02-04T16:53:00Z")),
                },
                IncidentUpdate {
                    status: "investigating".into(),
                    body: "We are currently investigating this issue.".into(),
                    created_at: Some(t("2026-02-04T16:39:00Z")),
                },
            ],
        }
    );

    let second = &page.incidents[1];
    assert_eq!(
        statuses(&second.updates),
        [
            "resolved",
            "monitoring",
            "identified",
            "monitoring",
            "identified",
            "update",
            "investigating"
        ]
    );
    assert_eq!(
        second.updates[0].body,
        "The issue hs been fully resolved. The timelines are:\n\n\
         * 02:00 PT / 10:00 UTC to 02:35 PT / 10:35 UTC\n\
         * 02:54 PT / 10:54 UTC to 03:01 PT / 11:01 UTC"
    );
    // An incident whose updates span two days.
    let across_days = &page.incidents[8];
    assert_eq!(across_days.created_at, Some(t("2026-02-01T21:59:00Z")));
    assert_eq!(across_days.updated_at, Some(t("2026-02-02T02:08:00Z")));
}

#[test]
fn rss_history_feed_gives_the_same_incidents_as_the_atom_feed() {
    let atom = parse_feed(CLAUDE_ATOM).unwrap();
    let rss = parse_feed(CLAUDE_RSS).unwrap();

    assert_eq!(rss.incidents.len(), 25);
    assert_eq!(rss.incidents, atom.incidents);
    assert_eq!(rss.page_name.as_deref(), Some("Claude Status"));
    assert_eq!(rss.page_url.as_deref(), Some("https://status.claude.com/"));
    assert_eq!(rss.indicator, Some(Indicator::None));
    assert_eq!(rss.updated_at, Some(t("2026-02-04T17:21:16Z")));
    assert_eq!(rss.incidents[0].status, IncidentStatus::Resolved);
}

/// A minimal Statuspage-style Atom feed with one entry whose updates are `(date, label, body)`.
fn atom_feed(published: &str, updates: &[(&str, &str, &str)]) -> Vec<u8> {
    let html: String = updates
        .iter()
        .map(|(date, label, body)| {
            format!("<p><small>{date}</small><br><strong>{label}</strong> - {body}</p>")
        })
        .collect();
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <id>tag:status.example.com,2005:/history</id>
  <title>Example Status - Incident History</title>
  <updated>{published}</updated>
  <entry>
    <id>tag:status.example.com,2005:Incident/1</id>
    <published>{published}</published>
    <updated>{published}</updated>
    <link rel="alternate" type="text/html" href="https://status.example.com/incidents/abc123"/>
    <title>Something broke</title>
    <content type="html">{}</content>
  </entry>
</feed>"#,
        xml_escape(&html)
    )
    .into_bytes()
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[test]
fn feed_update_label_carries_the_status_of_the_update_before_it() {
    let page = parse_feed(&atom_feed(
        "2026-03-01T12:00:00Z",
        &[
            ("Mar 1, 11:00 UTC", "Update", "still on it"),
            ("Mar 1, 10:00 UTC", "Identified", "found it"),
        ],
    ))
    .unwrap();
    assert_eq!(page.incidents[0].status, IncidentStatus::Identified);
    assert_eq!(page.incidents[0].resolved_at, None);
    assert_eq!(
        page.indicator,
        Some(Indicator::Minor),
        "active, impact unknown"
    );

    let page = parse_feed(&atom_feed(
        "2026-03-01T12:00:00Z",
        &[("Mar 1, 11:00 UTC", "Update", "something is off")],
    ))
    .unwrap();
    assert_eq!(page.incidents[0].status, IncidentStatus::Investigating);
}

#[test]
fn feed_postmortem_is_not_active_and_unknown_labels_are_kept_raw_and_active() {
    let page = parse_feed(&atom_feed(
        "2026-03-01T12:00:00Z",
        &[
            ("Mar 1, 11:00 UTC", "Postmortem", "what happened"),
            ("Mar 1, 10:00 UTC", "Resolved", "fixed"),
        ],
    ))
    .unwrap();
    assert_eq!(page.incidents[0].status, IncidentStatus::Postmortem);
    assert_eq!(page.indicator, Some(Indicator::None));

    let page = parse_feed(&atom_feed(
        "2026-03-01T12:00:00Z",
        &[("Mar 1, 11:00 UTC", "Escalated", "worse")],
    ))
    .unwrap();
    assert_eq!(
        page.incidents[0].status,
        IncidentStatus::Unknown("Escalated".into())
    );
    assert_eq!(page.indicator, Some(Indicator::Minor));
}

#[test]
fn feed_maintenance_labels_make_maintenances_not_incidents() {
    let page = parse_feed(&atom_feed(
        "2026-03-01T12:00:00Z",
        &[
            ("Mar 1, 11:00 UTC", "In progress", "working"),
            ("Feb 27, 09:00 UTC", "Scheduled", "planned"),
        ],
    ))
    .unwrap();
    assert!(page.incidents.is_empty());
    assert_eq!(
        page.maintenances,
        vec![Maintenance {
            id: "abc123".into(),
            name: "Something broke".into(),
            status: MaintenanceStatus::InProgress,
            impact: Impact::Maintenance,
            scheduled_for: None,
            scheduled_until: None,
            url: Some("https://status.example.com/incidents/abc123".into()),
            components: Vec::new(),
            updates: vec![
                IncidentUpdate {
                    status: "in_progress".into(),
                    body: "working".into(),
                    created_at: Some(t("2026-03-01T11:00:00Z")),
                },
                IncidentUpdate {
                    status: "scheduled".into(),
                    body: "planned".into(),
                    created_at: Some(t("2026-02-27T09:00:00Z")),
                },
            ],
        }]
    );
    assert_eq!(page.indicator, Some(Indicator::Maintenance));

    let page = parse_feed(&atom_feed(
        "2026-03-01T12:00:00Z",
        &[
            ("Mar 1, 11:00 UTC", "Completed", "done"),
            ("Mar 1, 10:00 UTC", "Verifying", "checking"),
        ],
    ))
    .unwrap();
    assert_eq!(page.maintenances[0].status, MaintenanceStatus::Completed);
    assert_eq!(page.indicator, Some(Indicator::None));
}

#[test]
fn feed_dates_without_a_year_fall_in_the_year_before_across_new_year() {
    let page = parse_feed(&atom_feed(
        "2026-01-01T00:30:00Z",
        &[
            ("Jan  1, 00:20 UTC", "Resolved", "fixed"),
            ("Dec 31, 23:50 UTC", "Investigating", "looking"),
        ],
    ))
    .unwrap();
    let incident = &page.incidents[0];
    assert_eq!(incident.created_at, Some(t("2025-12-31T23:50:00Z")));
    assert_eq!(incident.resolved_at, Some(t("2026-01-01T00:20:00Z")));
}

#[test]
fn feed_entities_and_markup_in_bodies_become_plain_text() {
    let page = parse_feed(&atom_feed(
        "2026-03-01T12:00:00Z",
        &[(
            "Mar 1, 11:00 UTC",
            "Monitoring",
            "A &amp; B &lt;ok&gt; &#8217;s <a href=\"https://x\">link</a><br />next &bogus; & done",
        )],
    ))
    .unwrap();
    assert_eq!(
        page.incidents[0].updates[0].body,
        "A & B <ok> \u{2019}s link\nnext &bogus; & done"
    );
}

#[test]
fn feed_entries_without_statuspage_markup_read_a_status_prefix_or_stay_unknown() {
    let feed = |content: &str| {
        format!(
            r#"<rss version="2.0"><channel><title>Other</title><link>https://status.example.org</link>
<item><title>Thing</title><guid>https://status.example.org/x/1</guid><link>https://status.example.org/x/1</link>
<pubDate>Sun, 01 Mar 2026 12:00:00 +0000</pubDate><description>{}</description></item></channel></rss>"#,
            xml_escape(content)
        )
    };
    let page = parse_feed(feed("Status: Resolved\nAll good now.").as_bytes()).unwrap();
    assert_eq!(page.incidents[0].status, IncidentStatus::Resolved);
    assert_eq!(page.incidents[0].id, "https://status.example.org/x/1");
    assert_eq!(
        page.incidents[0].created_at,
        Some(t("2026-03-01T12:00:00Z"))
    );

    let page = parse_feed(feed("Status: In progress - maintenance").as_bytes()).unwrap();
    assert_eq!(page.maintenances[0].status, MaintenanceStatus::InProgress);

    let page = parse_feed(feed("Something happened.").as_bytes()).unwrap();
    assert_eq!(
        page.incidents[0].status,
        IncidentStatus::Unknown(String::new())
    );
    assert_eq!(page.indicator, Some(Indicator::Minor));
}

// ---------------------------------------------------------------------------------------------
// Size: a 10 MB body parses in linear time
// ---------------------------------------------------------------------------------------------

#[test]
fn ten_megabyte_bodies_parse_without_quadratic_work() {
    // ~10 MB summary: many components with repeated ids plus one incident with many updates.
    let components: Vec<Value> = (0..60_000)
        .map(|i| {
            json!({"id": format!("c{}", i % 50_000), "name": format!("Component {i}"),
                   "status": "operational", "group_id": "g", "description": "x".repeat(60)})
        })
        .collect();
    let updates: Vec<Value> = (0..20_000)
        .map(|i| {
            json!({"status": "investigating", "body": "y".repeat(200),
                   "created_at": "2026-01-01T00:00:00Z",
                   "affected_components": [{"code": format!("c{}", i % 100)}]})
        })
        .collect();
    let body = json!({
        "components": components,
        "incidents": [{"id": "i", "name": "I", "status": "investigating", "impact": "minor",
                       "incident_updates": updates}],
    })
    .to_string();
    assert!(body.len() > 10_000_000, "{}", body.len());
    let page = parse_statuspage_summary(body.as_bytes()).unwrap();
    assert_eq!(page.components.len(), 50_000);
    assert_eq!(page.incidents[0].components.len(), 100);

    // ~10 MB of feed content made of the markers the feed parser scans for.
    let content =
        "<small>Jan 1, 00:00 UTC</small><strong>Update</strong> &amp; &#x41; < &".repeat(140_000);
    let feed = atom_feed(
        "2026-01-01T00:00:00Z",
        &[("Jan 1, 00:00 UTC", "Resolved", &content)],
    );
    assert!(feed.len() > 10_000_000, "{}", feed.len());
    let page = parse_feed(&feed).unwrap();
    assert_eq!(page.incidents[0].updates.len(), 140_001);
}

#[test]
fn deeply_nested_input_is_an_error_or_ignored_never_a_stack_overflow() {
    let json = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
    let (_, reason) = format_error(parse_google_cloud_incidents(json.as_bytes(), &[]));
    assert!(
        reason.starts_with("invalid JSON: recursion limit exceeded"),
        "{reason}"
    );
    let json = format!(
        "{{\"components\":{}{}}}",
        "[".repeat(200_000),
        "]".repeat(200_000)
    );
    assert!(parse_statuspage_summary(json.as_bytes()).is_err());

    let xml = format!(
        "<feed xmlns=\"http://www.w3.org/2005/Atom\"><entry>{}{}</entry></feed>",
        "<a>".repeat(200_000),
        "</a>".repeat(200_000)
    );
    let _ = parse_feed(xml.as_bytes());
}

// ---------------------------------------------------------------------------------------------
// Properties: no input makes a parser panic
// ---------------------------------------------------------------------------------------------

fn run_all(body: &[u8]) {
    let _ = parse_statuspage_summary(body);
    let _ = parse_statuspage_incidents(body);
    let _ = parse_statuspage_maintenances(body);
    let _ = parse_google_cloud_incidents(body, &[]);
    let _ = parse_google_cloud_incidents(body, &products(&["p", "Cloud NAT"]));
    let _ = parse_feed(body);
}

/// Keys the parsers look for, so arbitrary JSON reaches deep into them.
fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "id",
            "name",
            "status",
            "impact",
            "page",
            "components",
            "incidents",
            "scheduled_maintenances",
            "incident_updates",
            "affected_components",
            "code",
            "group",
            "group_id",
            "created_at",
            "display_at",
            "updated_at",
            "resolved_at",
            "shortlink",
            "indicator",
            "description",
            "url",
            "scheduled_for",
            "affected_products",
            "title",
            "end",
            "severity",
            "status_impact",
            "service_name",
            "service_key",
            "updates",
            "most_recent_update",
            "text",
            "when",
            "uri",
            "begin",
            "modified",
        ])
        .prop_map(str::to_owned),
        "[a-z_]{1,8}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(vec![
            "operational",
            "major_outage",
            "minor",
            "resolved",
            "in_progress",
            "SERVICE_OUTAGE",
            "high",
            "2026-01-01T00:00:00Z",
            "2026-01-01 00:00",
            "[]",
            "",
        ])
        .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 96, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(json_key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const ALL_FIXTURES: [&[u8]; 9] = [
    ANTHROPIC_DEGRADED,
    ANTHROPIC_OPERATIONAL,
    ANTHROPIC_MAINTENANCES,
    OPENAI_DEGRADED,
    OPENAI_OPERATIONAL,
    GITHUB_DEGRADED,
    GCP_INCIDENTS,
    CLAUDE_ATOM,
    CLAUDE_RSS,
];

proptest! {
    #[test]
    fn real_fixtures_with_a_span_replaced_by_junk_never_panic_any_parser(
        which in 0..ALL_FIXTURES.len(),
        at in any::<prop::sample::Index>(),
        cut in 0usize..64,
        junk in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let original = ALL_FIXTURES[which];
        let start = at.index(original.len());
        let end = (start + cut).min(original.len());
        let mut body = original[..start].to_vec();
        body.extend_from_slice(&junk);
        body.extend_from_slice(&original[end..]);
        run_all(&body);
    }

    #[test]
    fn arbitrary_bytes_never_panic_any_parser(body in prop::collection::vec(any::<u8>(), 0..2048)) {
        run_all(&body);
    }

    #[test]
    fn arbitrary_json_values_never_panic_any_parser(value in json_value()) {
        run_all(value.to_string().as_bytes());
    }

    #[test]
    fn arbitrary_json_inside_statuspage_and_google_shapes_never_panics(value in json_value()) {
        let shapes = [
            json!({"status": value, "components": [value]}),
            json!({"components": [{"id": "a", "name": "A", "status": "operational", "group": value, "group_id": value}]}),
            json!({"page": value, "incidents": [value], "scheduled_maintenances": [value]}),
            json!({"incidents": [{"id": "i", "name": "I", "status": "monitoring", "impact": value,
                                  "components": value, "created_at": value,
                                  "incident_updates": [value, {"affected_components": value, "display_at": value}]}]}),
            json!([value, {"id": "x", "affected_products": value, "end": value, "severity": value,
                           "updates": value, "most_recent_update": value}]),
            json!([{"id": "x", "affected_products": [value, {"title": "Cloud NAT", "id": value}],
                    "status_impact": value, "uri": value}]),
        ];
        for shape in shapes {
            run_all(shape.to_string().as_bytes());
        }
    }

    #[test]
    fn arbitrary_text_in_feed_entries_never_panics(
        published in prop::sample::select(vec![
            "2026-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "garbage",
        ]),
        parts in prop::collection::vec(
            prop_oneof![
                Just("<small>".to_owned()), Just("</small>".to_owned()),
                Just("<strong>".to_owned()), Just("</strong>".to_owned()),
                Just("<br />".to_owned()), Just("</p>".to_owned()), Just("<".to_owned()),
                Just(">".to_owned()), Just("&".to_owned()), Just("&#".to_owned()), Just(";".to_owned()),
                Just("Feb 29, 24:61 PM 2023".to_owned()), Just("Dec 31, 23:59 UTC".to_owned()),
                Just("Status: ".to_owned()), Just("In progress".to_owned()), Just("Update".to_owned()),
                ".{0,8}",
            ],
            0..40,
        ),
    ) {
        let content: String = parts.concat();
        let feed = atom_feed(published, &[("Jan 1, 00:00 UTC", "Investigating", &content)]);
        let _ = parse_feed(&feed);
        let raw = format!(
            "<feed xmlns=\"http://www.w3.org/2005/Atom\"><entry><published>{published}</published>\
             <content type=\"html\">{}</content></entry></feed>",
            xml_escape(&content)
        );
        let _ = parse_feed(raw.as_bytes());
    }
}
