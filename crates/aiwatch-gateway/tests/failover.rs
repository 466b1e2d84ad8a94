//! The gateway against fake upstreams on loopback: forwarding, every failover rule, streams,
//! Anthropic translation, breakers with canaries and ramp, and bad input.

mod common;

use std::time::Duration;

use aiwatch_testkit::{canned, Reply};
use common::{
    data_lines, healthy_anthropic, healthy_openai, start, Answer, FakeUpstream, Harness,
    CLIENT_KEY, UPSTREAM_KEY,
};

const TWO: &[FakeUpstream] = &[
    FakeUpstream {
        name: "primary",
        kind: "openai",
    },
    FakeUpstream {
        name: "secondary",
        kind: "openai",
    },
];

const ROUTE: &str = "[[route]]\nmodel = \"smart\"\nupstreams = [\"primary:gpt-4o-mini\", \"secondary:backup-model\"]\n";

async fn two_upstreams(gateway: &str) -> common::Harness {
    let h = start(TWO, gateway, ROUTE).await;
    h.fake("primary").route(
        "POST",
        "/v1/chat/completions",
        healthy_openai("from primary"),
    );
    h.fake("secondary").route(
        "POST",
        "/v1/chat/completions",
        healthy_openai("from secondary"),
    );
    h
}

#[tokio::test]
async fn a_request_goes_to_the_primary_with_its_own_key_and_model() {
    let h = two_upstreams("").await;
    let answer = h.chat("smart", false).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.json()["choices"][0]["message"]["content"],
        "from primary"
    );
    assert_eq!(answer.header("x-aiwatch-upstream"), "primary:gpt-4o-mini");
    assert_eq!(answer.header("x-aiwatch-attempts"), "1");
    let seen = &h.chats_seen("primary")[0];
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {UPSTREAM_KEY}").as_str())
    );
    let sent: serde_json::Value = serde_json::from_slice(&seen.body).expect("JSON");
    assert_eq!(
        sent["model"], "gpt-4o-mini",
        "the alias is replaced by the upstream's model"
    );
    assert!(!String::from_utf8_lossy(&seen.body).contains(CLIENT_KEY));
    assert!(h.chats_seen("secondary").is_empty());
}

#[tokio::test]
async fn overload_moves_the_request_to_the_next_upstream_invisibly() {
    let h = two_upstreams("").await;
    h.fake("primary").route(
        "POST",
        "/v1/chat/completions",
        canned::openai_503_overloaded(),
    );
    let answer = h.chat("smart", false).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.json()["choices"][0]["message"]["content"],
        "from secondary"
    );
    assert_eq!(
        answer.header("x-aiwatch-upstream"),
        "secondary:backup-model"
    );
    assert_eq!(answer.header("x-aiwatch-attempts"), "2");
    assert!(answer
        .header("x-aiwatch-tried")
        .contains("primary:gpt-4o-mini=provider_overloaded"));
    let sent: serde_json::Value =
        serde_json::from_slice(&h.chats_seen("secondary")[0].body).expect("JSON");
    assert_eq!(sent["model"], "backup-model");
}

#[tokio::test]
async fn connect_errors_timeouts_429_and_529_all_fail_over() {
    for (label, reply) in [
        ("529", canned::anthropic_overloaded()),
        ("429", canned::openai_rate_limited()),
        ("500", Reply::text(500, "text/plain", "boom")),
        ("hang", Reply::hang()),
        ("garbage", Reply::garbage()),
        ("closed", Reply::close()),
        (
            "html-200",
            Reply::text(200, "text/html", "<html>not an API</html>"),
        ),
    ] {
        let h = two_upstreams("upstream_timeout = \"500ms\"").await;
        h.fake("primary")
            .route("POST", "/v1/chat/completions", reply);
        let answer = h.chat("smart", false).await;
        assert_eq!(answer.status, 200, "{label}: {}", answer.body);
        assert_eq!(
            answer.header("x-aiwatch-upstream"),
            "secondary:backup-model",
            "{label}"
        );
    }
}

#[tokio::test]
async fn a_refused_connection_fails_over() {
    let upstreams = [FakeUpstream {
        name: "secondary",
        kind: "openai",
    }];
    let closed = aiwatch_testkit::closed_port();
    let routes =
        "[[route]]\nmodel = \"smart\"\nupstreams = [\"dead:gpt-4o-mini\", \"secondary:m\"]\n";
    // A service the config points at a port nobody listens on.
    let h = start(&upstreams, &format!("upstream_timeout = \"2s\"\n\n[[service]]\nname = \"dead\"\nkind = \"openai\"\napi_base = \"http://{closed}/v1\""), routes).await;
    h.fake("secondary")
        .route("POST", "/v1/chat/completions", healthy_openai("alive"));
    let answer = h.chat("smart", false).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.header("x-aiwatch-upstream"), "secondary:m");
    assert!(
        answer
            .header("x-aiwatch-tried")
            .contains("dead:gpt-4o-mini=tcp_refused"),
        "the failed layer is named: {}",
        answer.header("x-aiwatch-tried")
    );
}

#[tokio::test]
async fn a_request_at_fault_is_returned_as_is_and_never_retried() {
    let h = two_upstreams("").await;
    let context = canned::openai_error(
        400,
        "invalid_request_error",
        Some("context_length_exceeded"),
        "This model's maximum context length is 128000 tokens.",
    );
    h.fake("primary")
        .route("POST", "/v1/chat/completions", context);
    let answer = h.chat("smart", false).await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.json()["error"]["code"], "context_length_exceeded");
    assert!(
        h.chats_seen("secondary").is_empty(),
        "a 400 is never retried elsewhere"
    );
}

#[tokio::test]
async fn retry_after_keeps_the_primary_out_for_that_long() {
    let h = two_upstreams("").await;
    h.fake("primary").route(
        "POST",
        "/v1/chat/completions",
        Reply::sequence(vec![
            canned::openai_rate_limited().header("retry-after", "30"),
            healthy_openai("from primary"),
        ]),
    );
    assert_eq!(
        h.chat("smart", false).await.header("x-aiwatch-upstream"),
        "secondary:backup-model"
    );
    let second = h.chat("smart", false).await;
    assert_eq!(
        second.header("x-aiwatch-upstream"),
        "secondary:backup-model"
    );
    assert_eq!(
        second.header("x-aiwatch-attempts"),
        "1",
        "the primary is not even tried"
    );
    assert_eq!(h.chats_seen("primary").len(), 1);
    let admin = h.admin("/admin/upstreams").await;
    let retry = admin["upstreams"][0]["retry_after_s"]
        .as_f64()
        .expect("retry-after shown");
    assert!(retry > 25.0 && retry <= 30.0, "{admin}");
}

#[tokio::test]
async fn when_every_upstream_fails_the_client_gets_one_clear_error() {
    let h = two_upstreams("").await;
    h.fake("primary").route(
        "POST",
        "/v1/chat/completions",
        canned::openai_503_overloaded(),
    );
    h.fake("secondary").route(
        "POST",
        "/v1/chat/completions",
        Reply::text(502, "text/html", "<html>Bad gateway</html>"),
    );
    let answer = h.chat("smart", false).await;
    assert_eq!(answer.status, 502);
    let error = &answer.json()["error"];
    assert_eq!(error["code"], "all_upstreams_failed");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("primary:gpt-4o-mini") && message.contains("secondary:backup-model"),
        "{message}"
    );
    assert_eq!(answer.header("x-aiwatch-upstream"), "none");
}

#[tokio::test]
async fn a_key_echoed_by_an_upstream_reaches_no_client_and_no_admin_view() {
    let h = two_upstreams("").await;
    for name in ["primary", "secondary"] {
        h.fake(name)
            .route("POST", "/v1/chat/completions", canned::echo_key_error(401));
    }
    let answer = h.chat("smart", false).await;
    assert_eq!(answer.status, 502);
    assert!(
        !answer.body.contains(common::UPSTREAM_KEY),
        "{}",
        answer.body
    );
    let admin = h.admin("/admin/upstreams").await.to_string();
    assert!(!admin.contains(common::UPSTREAM_KEY), "{admin}");
    assert!(
        h.chats_seen("primary").iter().any(|r| r
            .header("authorization")
            .is_some_and(|a| a.contains(common::UPSTREAM_KEY))),
        "the key did go to its own upstream"
    );
}

#[tokio::test]
async fn a_complete_stream_is_relayed_with_its_finish_and_done() {
    let h = two_upstreams("").await;
    let answer = h.chat("smart", true).await;
    assert_eq!(answer.status, 200);
    assert!(answer
        .header("content-type")
        .starts_with("text/event-stream"));
    let lines = data_lines(&answer.body);
    assert_eq!(lines.last(), Some(&"[DONE]"));
    assert!(answer.body.contains("\"finish_reason\":\"stop\""));
    assert!(
        !answer.body.contains("\"prompt_tokens\""),
        "usage the client did not ask for is dropped"
    );
    let sent: serde_json::Value =
        serde_json::from_slice(&h.chats_seen("primary")[0].body).expect("JSON");
    assert_eq!(
        sent["stream_options"]["include_usage"], true,
        "asked upstream, for accounting"
    );
    // The usage reached the ledger.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let usage = h.admin("/admin/usage").await;
    assert_eq!(usage["keys"][0]["key"], "key-1");
    assert_eq!(
        usage["keys"][0]["upstreams"]["primary:gpt-4o-mini"]["completion_tokens"],
        9
    );
}

#[tokio::test]
async fn a_stream_that_fails_before_its_first_token_fails_over() {
    // Before its first token a stream has the upstream's timeout.
    let h = two_upstreams("upstream_timeout = \"300ms\"").await;
    let role_only = format!(
        "data: {}",
        serde_json::json!({"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]})
    );
    // The role chunk, then silence: nothing has reached the client yet.
    h.fake("primary").route(
        "POST",
        "/v1/chat/completions",
        Reply::sse(
            vec![role_only.clone(), role_only],
            Duration::from_secs(5),
            true,
        ),
    );
    let answer = h.chat("smart", true).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("x-aiwatch-upstream"),
        "secondary:backup-model"
    );
    assert_eq!(data_lines(&answer.body).last(), Some(&"[DONE]"));
}

/// A stream cut after its first token: it never shows its `finish` marker, ends with the
/// `stream_truncated` error event, and the secondary never got the request.
fn assert_cut_off_and_not_replayed(h: &Harness, answer: &Answer, finish: &str) {
    assert!(
        !answer.body.contains(finish),
        "a cut-off answer never looks complete"
    );
    let last = data_lines(&answer.body).last().copied().unwrap_or_default();
    assert!(
        last.contains("\"code\":\"stream_truncated\""),
        "{}",
        answer.body
    );
    assert!(
        h.chats_seen("secondary").is_empty(),
        "never replayed once bytes were sent"
    );
}

#[tokio::test]
async fn a_stream_cut_off_after_tokens_ends_with_an_error_and_is_never_replayed() {
    let h = two_upstreams("").await;
    h.fake("primary")
        .route("POST", "/v1/chat/completions", canned::openai_stream(false));
    let answer = h.chat("smart", true).await;
    assert_eq!(answer.status, 200, "headers went out with the first token");
    assert_eq!(answer.header("x-aiwatch-upstream"), "primary:gpt-4o-mini");
    assert!(answer.body.contains("Hello"));
    assert_cut_off_and_not_replayed(&h, &answer, "[DONE]");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let metrics = h.metrics().await;
    assert!(
        metrics.contains("aiwatch_gateway_requests_total{route=\"smart\",upstream=\"primary:gpt-4o-mini\",outcome=\"truncated\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_stream_that_stalls_between_tokens_is_ended_with_an_error() {
    let h = two_upstreams("stream_stall = \"300ms\"").await;
    let chunk = |text: &str| {
        format!(
            "data: {}",
            serde_json::json!({"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]})
        )
    };
    h.fake("primary").route(
        "POST",
        "/v1/chat/completions",
        Reply::sse(
            vec![chunk("Hel"), chunk("lo")],
            Duration::from_secs(3),
            true,
        ),
    );
    let started = std::time::Instant::now();
    let answer = h.chat("smart", true).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the stall limit ended it, not the upstream"
    );
    assert!(answer.body.contains("Hel"));
    assert!(
        answer.body.contains("\"code\":\"stream_stalled\""),
        "{}",
        answer.body
    );
    assert!(!answer.body.contains("[DONE]"));
}

#[tokio::test]
async fn anthropic_upstreams_are_translated_both_ways() {
    let upstreams = [
        FakeUpstream {
            name: "claude",
            kind: "anthropic",
        },
        FakeUpstream {
            name: "backup",
            kind: "openai",
        },
    ];
    let routes = "[[route]]\nmodel = \"smart\"\nupstreams = [\"claude:claude-3-5-haiku-latest\", \"backup:m\"]\n";
    let h = start(&upstreams, "", routes).await;
    h.fake("claude").route(
        "POST",
        "/v1/messages",
        healthy_anthropic("Hello from Claude"),
    );
    h.fake("backup").route(
        "POST",
        "/v1/chat/completions",
        healthy_openai("from backup"),
    );

    let answer = h.chat("smart", false).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let json = answer.json();
    assert_eq!(json["object"], "chat.completion");
    assert_eq!(
        json["choices"][0]["message"]["content"],
        "Hello from Claude"
    );
    assert_eq!(json["choices"][0]["finish_reason"], "stop");
    assert_eq!(json["usage"]["prompt_tokens"], 12);
    let seen = &h.chats_seen("claude")[0];
    assert_eq!(seen.header("x-api-key"), Some(UPSTREAM_KEY));
    assert_eq!(seen.header("anthropic-version"), Some("2023-06-01"));
    let sent: serde_json::Value = serde_json::from_slice(&seen.body).expect("JSON");
    assert_eq!(sent["system"], "Be brief.");
    assert_eq!(sent["model"], "claude-3-5-haiku-latest");

    let streamed = h.chat("smart", true).await;
    assert_eq!(streamed.status, 200);
    assert!(streamed.body.contains("chat.completion.chunk"));
    assert!(streamed.body.contains("Hello"));
    assert_eq!(data_lines(&streamed.body).last(), Some(&"[DONE]"));

    // 529 fails over; a 400 comes back translated and is not retried.
    h.fake("claude")
        .route("POST", "/v1/messages", canned::anthropic_overloaded());
    assert_eq!(
        h.chat("smart", false).await.header("x-aiwatch-upstream"),
        "backup:m"
    );
    h.fake("claude").route(
        "POST",
        "/v1/messages",
        canned::anthropic_error(
            400,
            "invalid_request_error",
            "messages: at least one message is required",
        ),
    );
    let before = h.chats_seen("backup").len();
    let refused = h.chat("smart", false).await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.json()["error"]["type"], "invalid_request_error");
    assert_eq!(h.chats_seen("backup").len(), before);
}

#[tokio::test]
async fn an_anthropic_error_mid_stream_ends_the_clients_stream_with_an_error() {
    let upstreams = [FakeUpstream {
        name: "claude",
        kind: "anthropic",
    }];
    let h = start(
        &upstreams,
        "",
        "[[route]]\nmodel = \"smart\"\nupstreams = [\"claude:claude-3-5-haiku-latest\"]\n",
    )
    .await;
    h.fake("claude").route(
        "POST",
        "/v1/messages",
        canned::anthropic_stream_overloaded(),
    );
    let answer = h.chat("smart", true).await;
    assert!(answer.body.contains("Hello"));
    assert!(
        answer.body.contains("\"code\":\"upstream_error\""),
        "{}",
        answer.body
    );
    assert!(!answer.body.contains("[DONE]"));
}

#[tokio::test]
async fn embeddings_skip_upstreams_that_have_none() {
    let upstreams = [
        FakeUpstream {
            name: "claude",
            kind: "anthropic",
        },
        FakeUpstream {
            name: "openai",
            kind: "openai",
        },
    ];
    let h = start(&upstreams, "", "[[route]]\nmodel = \"embed\"\nupstreams = [\"claude:c\", \"openai:text-embedding-3-small\"]\n").await;
    h.fake("openai")
        .route("POST", "/v1/embeddings", canned::openai_embeddings(2));
    let answer = h
        .call(
            "POST",
            "/v1/embeddings",
            Some(CLIENT_KEY),
            r#"{"model":"embed","input":["a","b"]}"#,
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        answer.header("x-aiwatch-upstream"),
        "openai:text-embedding-3-small"
    );
    assert!(h.chats_seen("claude").is_empty());
}

#[tokio::test]
async fn embeddings_on_a_route_whose_upstreams_have_none_are_a_400_saying_why() {
    let upstreams = [FakeUpstream {
        name: "claude",
        kind: "anthropic",
    }];
    let h = start(
        &upstreams,
        "",
        "[[route]]\nmodel = \"embed\"\nupstreams = [\"claude:c\"]\n",
    )
    .await;
    let answer = h
        .call(
            "POST",
            "/v1/embeddings",
            Some(CLIENT_KEY),
            r#"{"model":"embed","input":"a"}"#,
        )
        .await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    let message = answer.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(message.contains("embed"), "{message}");
    assert!(message.to_lowercase().contains("embeddings"), "{message}");
    assert_eq!(
        answer.header("x-aiwatch-tried"),
        "claude:c=cannot take this request"
    );
    assert!(h.fake("claude").requests().is_empty());
}

#[tokio::test]
async fn a_tripped_upstream_returns_only_after_canaries_and_then_ramps() {
    let h = two_upstreams(
        "failures_to_trip = 2\ncanary_interval = \"200ms\"\ncanaries_to_close = 2\nramp = [50, 100]\nramp_step = \"600ms\"",
    )
    .await;
    h.fake("primary").route(
        "POST",
        "/v1/chat/completions",
        canned::openai_503_overloaded(),
    );
    h.fake("primary")
        .route("GET", "/v1/models", Reply::text(503, "text/plain", "down"));
    for _ in 0..2 {
        assert_eq!(
            h.chat("smart", false).await.header("x-aiwatch-upstream"),
            "secondary:backup-model"
        );
    }
    let admin = h.admin("/admin/upstreams").await;
    let primary = &admin["upstreams"][0];
    assert_eq!(primary["state"], "open", "{admin}");
    assert!(
        primary["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("503"),
        "{admin}"
    );
    assert!(primary["next_try_in_s"].as_f64().is_some());
    let tried = h.chats_seen("primary").len();
    // While open, requests skip it without paying for it.
    assert_eq!(
        h.chat("smart", false).await.header("x-aiwatch-attempts"),
        "1"
    );
    assert_eq!(h.chats_seen("primary").len(), tried);

    // It recovers: canaries (list models + a tiny stream) validate it, then it ramps.
    h.fake("primary")
        .route("GET", "/v1/models", canned::openai_models());
    h.fake("primary").route(
        "POST",
        "/v1/chat/completions",
        healthy_openai("from primary"),
    );
    let mut saw_ramping = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let state = h.admin("/admin/upstreams").await["upstreams"][0]["state"].clone();
        saw_ramping |= state == "ramping";
        if state == "closed" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never closed: {state}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(saw_ramping, "traffic came back in steps");
    let canary_streams = h
        .chats_seen("primary")
        .iter()
        .filter(|s| String::from_utf8_lossy(&s.body).contains("\"stream\":true"))
        .count();
    assert!(
        canary_streams >= 2,
        "each canary sent a tiny streamed answer"
    );
    assert_eq!(
        h.chat("smart", false).await.header("x-aiwatch-upstream"),
        "primary:gpt-4o-mini"
    );
    let metrics = h.metrics().await;
    assert!(
        metrics.contains(
            "aiwatch_gateway_canaries_total{upstream=\"primary:gpt-4o-mini\",result=\"passed\"}"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("aiwatch_gateway_canary_tokens_total{upstream=\"primary:gpt-4o-mini\"}")
    );
}

#[tokio::test]
async fn the_monitors_outage_skips_an_upstream_before_any_request_pays() {
    let h = two_upstreams("").await;
    let mut view = aiwatch_gateway::health::MonitorView::new();
    view.insert(
        aiwatch_core::ServiceName::parse("primary").expect("name"),
        "outage since 12:00 (provider_error)".into(),
    );
    h.monitor.send(view).expect("the gateway listens");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while h.admin("/admin/upstreams").await["upstreams"][0]["state"] != "open" {
        assert!(
            std::time::Instant::now() < deadline,
            "the monitor's view was not applied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answer = h.chat("smart", false).await;
    assert_eq!(
        answer.header("x-aiwatch-upstream"),
        "secondary:backup-model"
    );
    assert_eq!(answer.header("x-aiwatch-attempts"), "1");
    assert!(h.chats_seen("primary").is_empty());
}

#[tokio::test]
async fn ollama_is_reached_through_its_openai_compatible_v1() {
    let upstreams = [FakeUpstream {
        name: "primary",
        kind: "openai",
    }];
    let ollama = aiwatch_testkit::FakeServer::start(None).await;
    ollama.route(
        "POST",
        "/v1/chat/completions",
        healthy_openai("from ollama"),
    );
    let extra = format!(
        "\n[[service]]\nname = \"ollama\"\napi_base = \"http://{}\"",
        ollama.addr()
    );
    let routes = "[[route]]\nmodel = \"smart\"\nupstreams = [\"primary:gpt-4o-mini\", \"ollama:llama3.2\"]\n";
    let h = start(&upstreams, &extra, routes).await;
    h.fake("primary").route(
        "POST",
        "/v1/chat/completions",
        canned::openai_503_overloaded(),
    );
    let answer = h.chat("smart", false).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.header("x-aiwatch-upstream"), "ollama:llama3.2");
    let seen = &ollama.requests()[0];
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(
        seen.header("authorization"),
        None,
        "a local server gets no key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ramp_that_ends_during_a_request_keeps_the_gateway_serving() {
    // Canaries validate quickly; the ramp ends 100 ms later, long before the canary loop's
    // next tick, so a request is the first to see it end. A deadlock would stop the runtime's
    // workers (and any timeout on them), so a watchdog thread ends the test instead.
    let finished = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watched = finished.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(60));
        if !watched.load(std::sync::atomic::Ordering::SeqCst) {
            eprintln!("the gateway stopped serving: deadlocked");
            std::process::exit(101);
        }
    });
    let h = two_upstreams(
        "failures_to_trip = 1\ncanary_interval = \"400ms\"\ncanaries_to_close = 1\nramp = [50, 100]\nramp_step = \"100ms\"",
    )
    .await;
    h.fake("primary").route(
        "POST",
        "/v1/chat/completions",
        Reply::sequence(vec![
            canned::openai_503_overloaded(),
            healthy_openai("from primary"),
        ]),
    );
    assert_eq!(
        h.chat("smart", false).await.header("x-aiwatch-upstream"),
        "secondary:backup-model"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut primary_answers = 0;
    while primary_answers < 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "the primary never came back"
        );
        let answer = h.chat("smart", false).await;
        assert_eq!(answer.status, 200);
        if answer.header("x-aiwatch-upstream") == "primary:gpt-4o-mini" {
            primary_answers += 1;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        h.admin("/admin/upstreams").await["upstreams"][0]["state"],
        "closed"
    );
}

#[tokio::test]
async fn a_stream_is_complete_at_done_whatever_the_connection_does_next() {
    let h = two_upstreams("failures_to_trip = 1").await;
    let chunk = |delta: serde_json::Value, finish: serde_json::Value| {
        format!(
            "data: {}",
            serde_json::json!({"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    // `[DONE]`, then the connection breaks without its final chunk.
    h.fake("primary").route(
        "POST",
        "/v1/chat/completions",
        Reply::sse(
            vec![
                chunk(
                    serde_json::json!({"content": "Hi"}),
                    serde_json::Value::Null,
                ),
                chunk(serde_json::json!({}), serde_json::json!("stop")),
                "data: [DONE]".to_owned(),
            ],
            Duration::from_millis(5),
            false,
        ),
    );
    let answer = h.chat("smart", true).await;
    assert_eq!(
        data_lines(&answer.body).last(),
        Some(&"[DONE]"),
        "{}",
        answer.body
    );
    assert!(!answer.body.contains("\"error\""), "{}", answer.body);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        h.admin("/admin/upstreams").await["upstreams"][0]["state"],
        "closed",
        "a complete answer is not a failure"
    );
}

#[tokio::test]
async fn a_request_one_upstream_cannot_express_goes_to_one_that_can() {
    let upstreams = [
        FakeUpstream {
            name: "primary",
            kind: "openai",
        },
        FakeUpstream {
            name: "claude",
            kind: "anthropic",
        },
        FakeUpstream {
            name: "backup",
            kind: "openai",
        },
    ];
    let routes =
        "[[route]]\nmodel = \"smart\"\nupstreams = [\"primary:a\", \"claude:c\", \"backup:b\"]\n";
    let h = start(&upstreams, "", routes).await;
    h.fake("primary").route(
        "POST",
        "/v1/chat/completions",
        canned::openai_503_overloaded(),
    );
    h.fake("claude")
        .route("POST", "/v1/messages", healthy_anthropic("claude"));
    h.fake("backup").route(
        "POST",
        "/v1/chat/completions",
        healthy_openai("from backup"),
    );
    let body = r#"{"model":"smart","n":2,"messages":[{"role":"user","content":"hi"}]}"#;
    let answer = h
        .call("POST", "/v1/chat/completions", Some(CLIENT_KEY), body)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.header("x-aiwatch-upstream"), "backup:b");
    assert!(answer
        .header("x-aiwatch-tried")
        .contains("claude:c=cannot take this request"));
    assert!(h.chats_seen("claude").is_empty());
}

#[tokio::test]
async fn when_every_upstream_asked_to_wait_the_client_is_told_when_to_come_back() {
    let upstreams = [FakeUpstream {
        name: "primary",
        kind: "openai",
    }];
    let h = start(
        &upstreams,
        "",
        "[[route]]\nmodel = \"smart\"\nupstreams = [\"primary:m\"]\n",
    )
    .await;
    h.fake("primary").route(
        "POST",
        "/v1/chat/completions",
        canned::openai_rate_limited().header("retry-after", "30"),
    );
    let first = h.chat("smart", false).await;
    assert_eq!(first.status, 429);
    assert_eq!(first.header("retry-after"), "30");
    let second = h.chat("smart", false).await;
    assert_eq!(second.status, 503, "{}", second.body);
    assert_eq!(second.json()["error"]["code"], "upstreams_cooling_down");
    let wait: u64 = second.header("retry-after").parse().expect("seconds");
    assert!((25..=30).contains(&wait), "{wait}");
    assert_eq!(
        h.chats_seen("primary").len(),
        1,
        "no request inside the provider's Retry-After"
    );
}

#[tokio::test]
async fn a_key_past_its_requests_per_minute_gets_429_with_retry_after_and_no_upstream_call() {
    let h = two_upstreams("key_requests_per_minute = 2").await;
    for _ in 0..2 {
        assert_eq!(h.chat("smart", false).await.status, 200);
    }
    let refused = h.chat("smart", false).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    let wait: u64 = refused
        .header("retry-after")
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=30).contains(&wait), "{wait}");
    assert_eq!(refused.json()["error"]["code"], "rate_limit_exceeded");
    assert_eq!(
        h.chats_seen("primary").len(),
        2,
        "a refused request goes nowhere"
    );
    let usage = h.admin("/admin/usage").await;
    assert_eq!(usage["limits"]["requests_per_minute"], 2);
    assert_eq!(usage["limits"]["keys"]["key-1"]["requests_last_minute"], 2);
    assert_eq!(usage["limits"]["keys"]["key-1"]["requests_left"], 0);
}

#[tokio::test]
async fn a_key_past_its_tokens_per_minute_is_refused_until_its_budget_refills() {
    // The canned completion reports its usage; a budget of 5 tokens is spent by one answer.
    let h = two_upstreams("key_tokens_per_minute = 5").await;
    assert_eq!(h.chat("smart", false).await.status, 200);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let refused = h.chat("smart", false).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert!(refused.json()["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("5 tokens per minute")));
    let usage = h.admin("/admin/usage").await;
    assert_eq!(usage["limits"]["keys"]["key-1"]["tokens_left"], 0);
    assert!(usage["limits"]["keys"]["key-1"]["tokens_last_minute"].as_u64() > Some(5));
}

/// An answer of the Responses API, as OpenAI sends it.
fn responses_answer(text: &str) -> Reply {
    Reply::json(
        200,
        serde_json::json!({
            "id": "resp_1", "object": "response", "status": "completed", "model": "m",
            "output": [{"type": "message", "role": "assistant",
                        "content": [{"type": "output_text", "text": text}]}],
            "usage": {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10}
        }),
    )
}

#[tokio::test]
async fn a_responses_call_fails_over_before_its_first_byte_and_counts_its_usage() {
    let h = start(TWO, "", ROUTE).await;
    h.fake("primary").route(
        "POST",
        "/v1/responses",
        canned::openai_error(500, "server_error", None, "boom"),
    );
    h.fake("secondary")
        .route("POST", "/v1/responses", responses_answer("from secondary"));
    let answer = h
        .call(
            "POST",
            "/v1/responses",
            Some(CLIENT_KEY),
            r#"{"model": "smart", "input": "hello"}"#,
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.json()["output"][0]["content"][0]["text"],
        "from secondary"
    );
    let sent = h.fake("secondary").requests();
    let sent: serde_json::Value = serde_json::from_slice(&sent[0].body).expect("JSON");
    assert_eq!(
        sent["model"], "backup-model",
        "the upstream's own model name"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let usage = h.admin("/admin/usage").await;
    assert_eq!(
        usage["keys"][0]["upstreams"]["secondary:backup-model"]["completion_tokens"],
        3
    );
}

#[tokio::test]
async fn a_responses_call_to_a_route_that_cannot_serve_it_is_a_clear_400() {
    let upstreams = [FakeUpstream {
        name: "claude",
        kind: "anthropic",
    }];
    let h = start(
        &upstreams,
        "",
        "[[route]]\nmodel = \"smart\"\nupstreams = [\"claude:claude-3-5-haiku-latest\"]\n",
    )
    .await;
    let answer = h
        .call(
            "POST",
            "/v1/responses",
            Some(CLIENT_KEY),
            r#"{"model": "smart", "input": "hello"}"#,
        )
        .await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(answer.body.contains("Responses API"), "{}", answer.body);
    assert!(h.fake("claude").requests().is_empty());

    let h = start(TWO, "", ROUTE).await;
    let missing = h
        .call(
            "POST",
            "/v1/responses",
            Some(CLIENT_KEY),
            r#"{"model": "smart"}"#,
        )
        .await;
    assert_eq!(missing.status, 400, "{}", missing.body);
}

const STREAMED_RESPONSE: &str = r#"{"model": "smart", "input": "hello", "stream": true}"#;

#[tokio::test]
async fn a_streamed_responses_call_fails_over_before_its_first_byte_and_passes_its_events_through()
{
    let h = start(TWO, "", ROUTE).await;
    h.fake("primary").route(
        "POST",
        "/v1/responses",
        canned::openai_error(503, "server_error", None, "overloaded"),
    );
    h.fake("secondary").route(
        "POST",
        "/v1/responses",
        canned::openai_responses_stream(true),
    );
    let answer = h
        .call("POST", "/v1/responses", Some(CLIENT_KEY), STREAMED_RESPONSE)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.header("x-aiwatch-upstream"),
        "secondary:backup-model"
    );
    assert!(answer
        .header("content-type")
        .starts_with("text/event-stream"));
    // Every event arrives as OpenAI sent it, its `event:` line included, in order.
    let names: Vec<&str> = answer
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(names.first(), Some(&"response.created"), "{}", answer.body);
    assert_eq!(names.last(), Some(&"response.completed"), "{}", answer.body);
    assert_eq!(
        names
            .iter()
            .filter(|n| **n == "response.output_text.delta")
            .count(),
        3
    );
    let sent: serde_json::Value =
        serde_json::from_slice(&h.fake("secondary").requests()[0].body).expect("JSON");
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["model"], "backup-model");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let usage = h.admin("/admin/usage").await;
    assert_eq!(
        usage["keys"][0]["upstreams"]["secondary:backup-model"]["completion_tokens"], 9,
        "usage comes from response.completed: {usage}"
    );
}

#[tokio::test]
async fn a_responses_stream_cut_after_its_first_token_ends_with_an_error_and_is_not_replayed() {
    let h = start(TWO, "", ROUTE).await;
    h.fake("primary").route(
        "POST",
        "/v1/responses",
        canned::openai_responses_stream(false),
    );
    h.fake("secondary").route(
        "POST",
        "/v1/responses",
        canned::openai_responses_stream(true),
    );
    let answer = h
        .call("POST", "/v1/responses", Some(CLIENT_KEY), STREAMED_RESPONSE)
        .await;
    assert_eq!(answer.status, 200, "headers went out with the first token");
    assert_eq!(answer.header("x-aiwatch-upstream"), "primary:gpt-4o-mini");
    assert!(answer.body.contains("response.output_text.delta"));
    assert_cut_off_and_not_replayed(&h, &answer, "response.completed");
}

#[tokio::test]
async fn a_responses_stream_that_fails_before_its_first_token_moves_to_the_next_upstream() {
    let h = start(TWO, "", ROUTE).await;
    let failed = serde_json::json!({"type": "response.failed", "sequence_number": 1,
        "response": {"id": "resp_1", "object": "response", "status": "failed",
                     "error": {"code": "server_error", "message": "The model failed"}}});
    h.fake("primary").route(
        "POST",
        "/v1/responses",
        aiwatch_testkit::Reply::sse(
            vec![
                "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0}".into(),
                format!("event: response.failed\ndata: {failed}"),
            ],
            Duration::from_millis(5),
            true,
        ),
    );
    h.fake("secondary").route(
        "POST",
        "/v1/responses",
        canned::openai_responses_stream(true),
    );
    let answer = h
        .call("POST", "/v1/responses", Some(CLIENT_KEY), STREAMED_RESPONSE)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.header("x-aiwatch-upstream"),
        "secondary:backup-model"
    );
    assert!(
        !answer.body.contains("The model failed"),
        "the held events of the failed attempt never reach the client"
    );
    assert!(answer
        .header("x-aiwatch-tried")
        .contains("primary:gpt-4o-mini=provider_error"));
}
