//! A fake Atlassian Statuspage (v2 API) serving `/api/v2/summary.json` from bytes the test sets,
//! with ETag revalidation and switchable failures, plus builders of real-shaped summaries.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::ca::ServerIdentity;
use crate::http_server::{FakeServer, Reply, Seen};

/// Where Statuspage serves its summary.
pub const SUMMARY_PATH: &str = "/api/v2/summary.json";

/// The page id in built summaries.
pub const PAGE_ID: &str = "aiwtest0page";
/// `created_at` of every component in built summaries.
const COMPONENTS_CREATED: &str = "2023-07-11T17:52:24.275Z";
/// `updated_at` of the page and of changed components in built summaries (fixed, so outputs
/// built from them are reproducible).
const UPDATED: &str = "2026-01-15T10:00:00.000Z";
/// When the incident of [`summary_with_incident`] started.
const INCIDENT_CREATED: &str = "2026-01-15T09:42:17.123Z";

/// A Statuspage on loopback serving [`SUMMARY_PATH`] (any other path gets the
/// [`FakeServer`]'s fallback; add more routes through [`server`](FakeStatusPage::server)).
///
/// It starts out serving [`summary_operational`]`(&["API", "Web"])`, with no ETag.
#[derive(Debug)]
pub struct FakeStatusPage {
    server: FakeServer,
    state: Arc<Mutex<PageState>>,
}

#[derive(Debug)]
struct PageState {
    summary: Vec<u8>,
    etag: Option<String>,
    failure: Option<Reply>,
}

impl FakeStatusPage {
    /// Starts the page on `127.0.0.1:<random port>`, over TLS when `tls` is given.
    pub async fn start(tls: Option<&ServerIdentity>) -> FakeStatusPage {
        let server = FakeServer::start(tls).await;
        let state = Arc::new(Mutex::new(PageState {
            summary: summary_operational(&["API", "Web"]),
            etag: None,
            failure: None,
        }));
        let shared = Arc::clone(&state);
        server.route(
            "GET",
            SUMMARY_PATH,
            Reply::dynamic(move |seen| answer(&shared, seen)),
        );
        FakeStatusPage { server, state }
    }

    /// Serves these bytes (e.g. a fixture file) as the summary from the next request on.
    pub fn set_summary(&self, body: &[u8]) {
        self.state().summary = body.to_vec();
    }

    /// Sends this entity tag with every summary (quoted if given bare: `v1` becomes `"v1"`) and
    /// answers 304 Not Modified to requests whose `If-None-Match` lists it; `None` stops both.
    pub fn set_etag(&self, etag: Option<&str>) {
        self.state().etag = etag.map(|tag| {
            if tag.starts_with('"') || tag.starts_with("W/\"") {
                tag.to_owned()
            } else {
                format!("\"{tag}\"")
            }
        });
    }

    /// Answers summary requests with `reply` (e.g. a 500, a 429 with `retry-after`, a
    /// [`Reply::slow_body`]) until [`recover`](FakeStatusPage::recover).
    pub fn fail_with(&self, reply: Reply) {
        self.state().failure = Some(reply);
    }

    /// Serves the summary again after [`fail_with`](FakeStatusPage::fail_with).
    pub fn recover(&self) {
        self.state().failure = None;
    }

    /// The server underneath, to add routes or change its fallback.
    pub fn server(&self) -> &FakeServer {
        &self.server
    }

    /// The address the page listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The page's base URL with `host` as its name, e.g. `https://status.openai.test:PORT`.
    pub fn url(&self, host: &str) -> String {
        self.server.url(host)
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Seen> {
        self.server.requests()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, PageState> {
        lock(&self.state)
    }
}

fn lock(state: &Mutex<PageState>) -> std::sync::MutexGuard<'_, PageState> {
    state
        .lock()
        .expect("FakeStatusPage state poisoned by a panicking thread")
}

/// The answer to one summary request: the failure, a 304, or the summary.
fn answer(state: &Mutex<PageState>, seen: &Seen) -> Reply {
    let state = lock(state);
    if let Some(failure) = &state.failure {
        return failure.clone();
    }
    let reply = match (&state.etag, seen.header("if-none-match")) {
        (Some(etag), Some(wanted)) if etag_matches(etag, wanted) => Reply::empty(304),
        _ => Reply::bytes(
            200,
            "application/json; charset=utf-8",
            state.summary.clone(),
        ),
    };
    let reply = reply.header("cache-control", "max-age=0, private, must-revalidate");
    match &state.etag {
        Some(etag) => reply.header("etag", etag),
        None => reply,
    }
}

/// Whether an `If-None-Match` header value lists `etag` (weak comparison, `*` matches any).
fn etag_matches(etag: &str, if_none_match: &str) -> bool {
    let opaque = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
    let ours = opaque(etag);
    if_none_match
        .split(',')
        .any(|tag| tag.trim() == "*" || opaque(tag) == ours)
}

// === Summary builders ===

/// A Statuspage v2 summary with these components all `operational`, indicator `none`
/// ("All Systems Operational"), no incidents and no maintenances.
pub fn summary_operational(components: &[&str]) -> Vec<u8> {
    let components: Vec<(&str, &str)> = components
        .iter()
        .map(|name| (*name, "operational"))
        .collect();
    summary(&components, None)
}

/// A Statuspage v2 summary with these `(name, status)` components and one unresolved incident
/// (status `investigating`) of this name and `impact` (`none`, `minor`, `major`, `critical`),
/// which also becomes the page indicator. The incident lists the non-operational components.
pub fn summary_with_incident(
    components: &[(&str, &str)],
    incident_name: &str,
    impact: &str,
) -> Vec<u8> {
    summary(components, Some((incident_name, impact)))
}

fn summary(components: &[(&str, &str)], incident: Option<(&str, &str)>) -> Vec<u8> {
    let rows: Vec<Value> = components
        .iter()
        .enumerate()
        .map(|(index, (name, status))| component(index, name, status))
        .collect();
    let (indicator, incidents) = match incident {
        None => ("none", Vec::new()),
        Some((name, impact)) => (impact, vec![incident_json(name, impact, components)]),
    };
    let description = match indicator {
        "none" => "All Systems Operational",
        "minor" => "Partially Degraded Service",
        "major" => "Partial System Outage",
        "critical" => "Major System Outage",
        "maintenance" => "Service Under Maintenance",
        _ => "Unknown",
    };
    let page = json!({
        "page": {
            "id": PAGE_ID,
            "name": "Fake Status",
            "url": "https://status.example.test",
            "time_zone": "Etc/UTC",
            "updated_at": UPDATED
        },
        "status": {"indicator": indicator, "description": description},
        "components": rows,
        "incidents": incidents,
        "scheduled_maintenances": []
    });
    serde_json::to_vec_pretty(&page).expect("a JSON value serializes")
}

fn component(index: usize, name: &str, status: &str) -> Value {
    json!({
        "id": id_for(name),
        "name": name,
        "status": status,
        "created_at": COMPONENTS_CREATED,
        "updated_at": if status == "operational" { COMPONENTS_CREATED } else { UPDATED },
        "position": index + 1,
        "description": null,
        "showcase": true,
        "start_date": "2023-07-11",
        "group_id": null,
        "page_id": PAGE_ID,
        "group": false,
        "only_show_if_degraded": false
    })
}

fn incident_json(name: &str, impact: &str, components: &[(&str, &str)]) -> Value {
    let id = id_for(name);
    let affected: Vec<(usize, &str, &str)> = components
        .iter()
        .enumerate()
        .filter(|(_, (_, status))| *status != "operational")
        .map(|(index, (name, status))| (index, *name, *status))
        .collect();
    let affected_components: Vec<Value> = affected
        .iter()
        .map(|(_, name, status)| {
            json!({"code": id_for(name), "name": name, "old_status": "operational", "new_status": status})
        })
        .collect();
    json!({
        "id": id,
        "name": name,
        "status": "investigating",
        "impact": impact,
        "created_at": INCIDENT_CREATED,
        "updated_at": INCIDENT_CREATED,
        "started_at": INCIDENT_CREATED,
        "monitoring_at": null,
        "resolved_at": null,
        "shortlink": format!("https://stspg.io/{}", &id[..7]),
        "page_id": PAGE_ID,
        "reminder_intervals": null,
        "incident_updates": [{
            "id": id_for(&format!("{name} update 1")),
            "status": "investigating",
            "body": "We are currently investigating this issue.",
            "incident_id": id,
            "created_at": INCIDENT_CREATED,
            "updated_at": INCIDENT_CREATED,
            "display_at": INCIDENT_CREATED,
            "affected_components": if affected_components.is_empty() { Value::Null } else { Value::Array(affected_components) },
            "deliver_notifications": true,
            "custom_tweet": null,
            "tweet_id": null
        }],
        "components": affected
            .iter()
            .map(|(index, name, status)| component(*index, name, status))
            .collect::<Vec<_>>()
    })
}

/// A stable 12-character Statuspage-style id (lowercase base 36) derived from `seed`.
fn id_for(seed: &str) -> String {
    let mut hash = seed.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    (0..12)
        .map(|_| {
            let digit = (hash % 36) as u32;
            hash /= 36;
            if hash == 0 {
                hash = 0x9e37_79b9_7f4a_7c15 ^ u64::from(digit);
            }
            char::from_digit(digit, 36).expect("a base-36 digit")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::ca::TestCa;
    use crate::test_client::{fetch, get, open, send, Answer, LIMIT};
    use tokio::time::Instant;

    async fn summary_with(page: &FakeStatusPage, headers: &[(&str, &str)]) -> Answer {
        fetch(page.addr(), None, "GET", SUMMARY_PATH, headers, b"").await
    }

    #[tokio::test]
    async fn serves_an_operational_summary_then_what_the_test_sets() {
        let page = FakeStatusPage::start(None).await;
        let first = summary_with(&page, &[]).await;
        assert_eq!(first.status, 200);
        assert!(first
            .header("content-type")
            .expect("type")
            .starts_with("application/json"));
        assert!(first.header("etag").is_none());
        let body = first.json();
        assert_eq!(body["status"]["indicator"], "none");
        assert_eq!(body["components"][1]["name"], "Web");

        let raw = br#"{"page":{"id":"x"},"status":{"indicator":"major","description":"Partial System Outage"}}"#;
        page.set_summary(raw);
        assert_eq!(summary_with(&page, &[]).await.body, raw);
        assert_eq!(get(page.addr(), "/api/v2/status.json").await.status, 404);
        assert_eq!(page.requests().len(), 3);
    }

    #[tokio::test]
    async fn works_over_tls() {
        let ca = TestCa::new("Test Public Root", "aiwatch test");
        let identity = ca.issue(&["status.openai.test"]);
        let page = FakeStatusPage::start(Some(&identity)).await;
        assert!(page
            .url("status.openai.test")
            .starts_with("https://status.openai.test:"));
        let answer = fetch(
            page.addr(),
            Some((&ca, "status.openai.test")),
            "GET",
            SUMMARY_PATH,
            &[],
            b"",
        )
        .await;
        assert_eq!(answer.status, 200);
    }

    #[tokio::test]
    async fn etag_revalidation_answers_304() {
        let page = FakeStatusPage::start(None).await;
        page.set_etag(Some("v1"));
        let first = summary_with(&page, &[]).await;
        assert_eq!(first.status, 200);
        assert_eq!(first.header("etag"), Some("\"v1\""));

        for matching in ["\"v1\"", "W/\"v1\"", "\"v0\", \"v1\"", "*"] {
            let again = summary_with(&page, &[("If-None-Match", matching)]).await;
            assert_eq!(again.status, 304, "If-None-Match: {matching}");
            assert!(again.body.is_empty());
            assert_eq!(again.header("etag"), Some("\"v1\""));
        }
        // The page changes: the old tag no longer matches.
        page.set_summary(&summary_with_incident(
            &[("API", "major_outage")],
            "API down",
            "critical",
        ));
        page.set_etag(Some("\"v2\""));
        let changed = summary_with(&page, &[("If-None-Match", "\"v1\"")]).await;
        assert_eq!(changed.status, 200);
        assert_eq!(changed.header("etag"), Some("\"v2\""));
        assert_eq!(changed.json()["status"]["indicator"], "critical");

        page.set_etag(None);
        let untagged = summary_with(&page, &[("If-None-Match", "\"v2\"")]).await;
        assert_eq!(untagged.status, 200);
        assert!(untagged.header("etag").is_none());
        assert_eq!(page.requests()[1].header("if-none-match"), Some("\"v1\""));
    }

    #[tokio::test]
    async fn fails_until_recovered() {
        let page = FakeStatusPage::start(None).await;
        page.set_etag(Some("v1"));
        page.fail_with(Reply::text(
            500,
            "text/html",
            "<h1>Internal Server Error</h1>",
        ));
        assert_eq!(summary_with(&page, &[]).await.status, 500);
        assert_eq!(
            summary_with(&page, &[("If-None-Match", "\"v1\"")])
                .await
                .status,
            500
        );

        page.fail_with(Reply::empty(429).header("retry-after", "30"));
        let limited = summary_with(&page, &[]).await;
        assert_eq!(
            (limited.status, limited.header("retry-after")),
            (429, Some("30"))
        );

        let gap = Duration::from_millis(40);
        page.fail_with(Reply::slow_body(
            200,
            summary_operational(&["API"]),
            256,
            gap,
        ));
        let start = Instant::now();
        let io = open(page.addr(), None).await;
        let response = send(io, "GET", SUMMARY_PATH, &[], b"")
            .await
            .expect("headers");
        let slow = tokio::time::timeout(LIMIT, crate::test_client::collect(response))
            .await
            .expect("in time");
        assert_eq!(slow.json()["components"][0]["name"], "API");
        assert!(start.elapsed() >= gap, "{:?}", start.elapsed());

        page.recover();
        let ok = summary_with(&page, &[]).await;
        assert_eq!((ok.status, ok.header("etag")), (200, Some("\"v1\"")));
    }

    #[test]
    fn operational_summary_has_the_statuspage_shape() {
        let body: Value =
            serde_json::from_slice(&summary_operational(&["API", "ChatGPT"])).expect("JSON");
        assert_eq!(body["page"]["id"], PAGE_ID);
        assert_eq!(body["page"]["time_zone"], "Etc/UTC");
        assert_eq!(
            body["status"],
            json!({"indicator": "none", "description": "All Systems Operational"})
        );
        assert_eq!(body["incidents"], json!([]));
        assert_eq!(body["scheduled_maintenances"], json!([]));
        let components = body["components"].as_array().expect("components");
        assert_eq!(components.len(), 2);
        for (component, (name, position)) in components.iter().zip([("API", 1), ("ChatGPT", 2)]) {
            assert_eq!(component["name"], name);
            assert_eq!(component["status"], "operational");
            assert_eq!(component["position"], position);
            assert_eq!(component["group"], false);
            assert_eq!(component["page_id"], PAGE_ID);
            assert_eq!(component["id"].as_str().map(str::len), Some(12));
        }
        assert_ne!(components[0]["id"], components[1]["id"]);
    }

    #[test]
    fn incident_summary_names_the_affected_components() {
        let bytes = summary_with_incident(
            &[
                ("API", "partial_outage"),
                ("ChatGPT", "operational"),
                ("Sora", "degraded_performance"),
            ],
            "Elevated error rates",
            "major",
        );
        let body: Value = serde_json::from_slice(&bytes).expect("JSON");
        assert_eq!(
            body["status"],
            json!({"indicator": "major", "description": "Partial System Outage"})
        );
        assert_eq!(body["components"][0]["status"], "partial_outage");
        let incidents = body["incidents"].as_array().expect("incidents");
        assert_eq!(incidents.len(), 1);
        let incident = &incidents[0];
        assert_eq!(incident["name"], "Elevated error rates");
        assert_eq!(incident["status"], "investigating");
        assert_eq!(incident["impact"], "major");
        assert!(incident["shortlink"]
            .as_str()
            .expect("shortlink")
            .starts_with("https://stspg.io/"));
        let names: Vec<&str> = incident["components"]
            .as_array()
            .expect("components")
            .iter()
            .map(|c| c["name"].as_str().expect("name"))
            .collect();
        assert_eq!(names, ["API", "Sora"]);
        let update = &incident["incident_updates"][0];
        assert_eq!(update["incident_id"], incident["id"]);
        assert_eq!(
            update["affected_components"][0]["code"],
            body["components"][0]["id"]
        );
        assert_eq!(
            update["affected_components"][1]["new_status"],
            "degraded_performance"
        );

        let quiet: Value = serde_json::from_slice(&summary_with_incident(
            &[("API", "operational")],
            "Minor",
            "minor",
        ))
        .expect("JSON");
        assert_eq!(quiet["incidents"][0]["components"], json!([]));
        assert!(quiet["incidents"][0]["incident_updates"][0]["affected_components"].is_null());
    }
}
