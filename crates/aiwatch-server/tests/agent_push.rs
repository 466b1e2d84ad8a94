//! The agent endpoints through `api::app(engine)`: assignments, pushes stored once however
//! often they are resent, and every refusal (no token, another region's token, another
//! region's data, garbage, an oversized body) with a JSON reason; the server's own token does
//! not stand in the agents' way.

mod common;

use std::sync::Arc;

use aiwatch_core::agent_wire::{Assignments, Push, PushAnswer, PROTOCOL};
use aiwatch_core::observation::{Component, Health, Observation, PhaseMs, Region, Source};
use aiwatch_core::secret::ApiKey;
use aiwatch_core::{Catalog, Cause, Service};
use aiwatch_server::agents::{DeclaredAgent, RegionOptions};
use aiwatch_server::engine::Engine;
use aiwatch_store::{Selector, TimeRange};
use axum::body::Body;
use axum::http::{header, Request};
use axum::Router;
use chrono::{Duration, Utc};
use serde_json::Value;
use tower::ServiceExt;

const EU: &str = "eu-west-token-0123456789abcdef";
const US: &str = "us-east-token-0123456789abcdef";

fn engine() -> Arc<Engine> {
    let catalog = Catalog::builtin();
    let mut local_runtime = catalog.get("ollama").expect("built-in").clone();
    local_runtime.local = true;
    let services: Vec<Service> = vec![
        catalog.get("openai-api").expect("built-in").clone(),
        local_runtime,
    ];
    let agent = |region: &str, token: &str| DeclaredAgent {
        region: Region::new(region),
        token: ApiKey::new(token.to_owned()).expect("a token"),
    };
    common::engine(
        services,
        common::no_network(),
        RegionOptions {
            agents: vec![agent("eu-west", EU), agent("us-east", US)],
            ..RegionOptions::default()
        },
    )
}

/// The app behind a server token, as `serve` runs it with `auth_token_env`.
fn app(engine: &Arc<Engine>) -> Router {
    let access = aiwatch_server::access::Access::with_token("server-token-0123456789abcdef", false)
        .expect("a token");
    aiwatch_server::access::protect(aiwatch_server::api::app(engine.clone()), access)
}

async fn call(app: &Router, request: Request<Body>) -> (u16, Value) {
    let response = app.clone().oneshot(request).await.expect("an answer");
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 4 << 20)
        .await
        .expect("a body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn post(token: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post("/api/v1/agent/observations")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .expect("a request")
}

fn observation(region: &str, seconds_ago: i64) -> Observation {
    Observation {
        service: aiwatch_core::ServiceName::parse("openai-api").expect("a name"),
        component: Component::Api,
        region: Region::new(region),
        source: Source::Probe,
        at: Utc::now() - Duration::seconds(seconds_ago),
        health: Health::Up,
        cause: Cause::Ok,
        phases: PhaseMs {
            total: Some(120.0),
            ..PhaseMs::default()
        },
        complete: None,
        detail: "models listed".into(),
    }
}

fn push(region: &str, first_seq: u64, observations: Vec<Observation>) -> Push {
    Push {
        protocol: PROTOCOL,
        region: Region::new(region),
        agent_version: "0.1.0".into(),
        sent_at: Utc::now(),
        stream: "stream-a".into(),
        first_seq,
        control_online: Some(true),
        observations,
    }
}

fn json(push: &Push) -> String {
    serde_json::to_string(push).expect("a push serializes")
}

fn stored(engine: &Engine, region: &str) -> usize {
    engine
        .store
        .observations(
            &Selector::service(aiwatch_core::ServiceName::parse("openai-api").expect("a name"))
                .region(region),
            TimeRange::new(
                Utc::now() - Duration::hours(1),
                Utc::now() + Duration::hours(1),
            ),
            10_000,
        )
        .expect("read")
        .len()
}

#[tokio::test]
async fn an_agent_gets_the_non_local_checks_past_the_servers_own_token() {
    let engine = engine();
    let app = app(&engine);
    let (status, body) = call(
        &app,
        Request::get("/api/v1/agent/assignments?region=eu-west")
            .header(header::AUTHORIZATION, format!("Bearer {EU}"))
            .body(Body::empty())
            .expect("a request"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let assignments: Assignments = serde_json::from_value(body).expect("assignments");
    assert_eq!(assignments.region.as_str(), "eu-west");
    let names: Vec<&str> = assignments
        .checks
        .iter()
        .map(|c| c.service.as_str())
        .collect();
    assert_eq!(
        names,
        ["openai-api"],
        "local runtimes stay on the server's machine"
    );
    assert!(!assignments.revision.is_empty());
}

#[tokio::test]
async fn a_resent_push_is_stored_once() {
    let engine = engine();
    let app = app(&engine);
    let batch = push(
        "eu-west",
        1,
        (0..5).map(|i| observation("eu-west", 60 - i)).collect(),
    );
    let (status, body) = call(&app, post(EU, json(&batch))).await;
    assert_eq!(status, 200, "{body}");
    let answer: PushAnswer = serde_json::from_value(body).expect("an answer");
    assert_eq!(
        (answer.accepted, answer.duplicates, answer.last_seq),
        (5, 0, 5)
    );

    // The answer was lost: the agent sends the same push, and one more observation with it.
    let mut again = batch.clone();
    again.observations.push(observation("eu-west", 10));
    let (status, body) = call(&app, post(EU, json(&again))).await;
    assert_eq!(status, 200, "{body}");
    let answer: PushAnswer = serde_json::from_value(body).expect("an answer");
    assert_eq!(
        (answer.accepted, answer.duplicates, answer.last_seq),
        (1, 5, 6)
    );
    assert_eq!(stored(&engine, "eu-west"), 6);

    // A new buffer (another stream) numbers from 1 again and is not taken for a resend.
    let mut fresh = push("eu-west", 1, vec![observation("eu-west", 5)]);
    fresh.stream = "stream-b".into();
    let (status, body) = call(&app, post(EU, json(&fresh))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(stored(&engine, "eu-west"), 7);

    let contact = engine
        .agents
        .contact(&Region::new("eu-west"))
        .expect("a contact");
    assert_eq!(contact.version, "0.1.0");
    assert_eq!(contact.observations, 7);
}

#[tokio::test]
async fn stale_observations_are_skipped_and_the_rest_of_their_push_is_stored() {
    let engine = engine();
    let app = app(&engine);
    // What an agent's buffer holds after an assignment change and a long outage: a service
    // this server does not assign to agents, and an observation eight days old.
    let mut unassigned = observation("eu-west", 30);
    unassigned.service = aiwatch_core::ServiceName::parse("claude-api").expect("a name");
    let old = observation("eu-west", 8 * 24 * 3600);
    let batch = push(
        "eu-west",
        1,
        vec![
            observation("eu-west", 40),
            unassigned,
            old,
            observation("eu-west", 20),
        ],
    );
    let (status, body) = call(&app, post(EU, json(&batch))).await;
    assert_eq!(status, 200, "{body}");
    let answer: PushAnswer = serde_json::from_value(body).expect("an answer");
    assert_eq!((answer.accepted, answer.stale, answer.last_seq), (2, 2, 4));
    assert_eq!(stored(&engine, "eu-west"), 2);

    // A push of stale observations only still moves the cursor: sent again, it is a resend.
    let all_stale = push("eu-west", 5, vec![observation("eu-west", 9 * 24 * 3600)]);
    let (status, body) = call(&app, post(EU, json(&all_stale))).await;
    assert_eq!(status, 200, "{body}");
    let answer: PushAnswer = serde_json::from_value(body).expect("an answer");
    assert_eq!((answer.accepted, answer.stale, answer.last_seq), (0, 1, 5));
    let (_, body) = call(&app, post(EU, json(&all_stale))).await;
    let answer: PushAnswer = serde_json::from_value(body).expect("an answer");
    assert_eq!((answer.duplicates, answer.stale), (1, 0));
    assert_eq!(stored(&engine, "eu-west"), 2);
}

#[tokio::test]
async fn pushes_that_speak_for_another_region_or_carry_garbage_are_refused_with_a_reason() {
    let engine = engine();
    let app = app(&engine);

    let (status, body) = call(&app, post("not-a-declared-token-at-all", "{}")).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("no [[agent]]")),
        "{body}"
    );

    // The eu-west token may not push as us-east, nor slip us-east rows into its own push.
    let as_us = push("us-east", 1, vec![observation("us-east", 1)]);
    let (status, body) = call(&app, post(EU, json(&as_us))).await;
    assert_eq!(status, 403, "{body}");
    let smuggled = push("eu-west", 1, vec![observation("us-east", 1)]);
    let (status, body) = call(&app, post(EU, json(&smuggled))).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("us-east")),
        "{body}"
    );

    let (status, body) = call(&app, post(EU, "{\"protocol\": 1, \"observations\": [")).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("not a push")),
        "{body}"
    );

    let huge = vec![b' '; aiwatch_core::agent_wire::MAX_PUSH_BYTES + 1];
    let response = app
        .clone()
        .oneshot(post(EU, huge))
        .await
        .expect("an answer");
    assert_eq!(response.status().as_u16(), 413);

    let (status, _) = call(
        &app,
        Request::post("/api/v1/agent/observations")
            .body(Body::from(json(&push("eu-west", 1, vec![]))))
            .expect("a request"),
    )
    .await;
    assert_eq!(status, 401, "no token, no push");
    assert_eq!(stored(&engine, "eu-west") + stored(&engine, "us-east"), 0);
}

#[tokio::test]
async fn the_agents_list_needs_the_servers_token_and_shows_each_region() {
    let engine = engine();
    let app = app(&engine);
    let (status, _) = call(
        &app,
        Request::get("/api/v1/agents")
            .body(Body::empty())
            .expect("a request"),
    )
    .await;
    assert_eq!(status, 401);
    let batch = push("us-east", 1, vec![observation("us-east", 1)]);
    assert_eq!(call(&app, post(US, json(&batch))).await.0, 200);
    let (status, body) = call(
        &app,
        Request::get("/api/v1/agents")
            .header(
                header::AUTHORIZATION,
                "Bearer server-token-0123456789abcdef",
            )
            .body(Body::empty())
            .expect("a request"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let rows = body["agents"].as_array().cloned().unwrap_or_default();
    let state = |region: &str| {
        rows.iter()
            .find(|r| r["region"] == region)
            .map(|r| r["state"].clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(state("us-east"), "connected", "{body}");
    assert_eq!(state("eu-west"), "never_seen", "{body}");
    assert!(!body.to_string().contains(US), "tokens never appear");
}
