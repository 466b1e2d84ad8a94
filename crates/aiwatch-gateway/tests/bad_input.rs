//! Bad input gets a clear OpenAI-shaped error with the right status, and the gateway keeps
//! serving everyone else: bad keys, bad JSON, unknown models, big bodies, slow clients, and
//! upstreams that send garbage or never stop.

mod common;

use std::time::Duration;

use aiwatch_gateway::auth::KeyLabel;
use aiwatch_gateway::usage::Tokens;
use aiwatch_testkit::Reply;
use common::{healthy_openai, start, FakeUpstream, CLIENT_KEY};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ONE: &[FakeUpstream] = &[FakeUpstream {
    name: "primary",
    kind: "openai",
}];
const ROUTES: &str = "[[route]]\nmodel = \"smart\"\nupstreams = [\"primary:gpt-4o-mini\"]\n\n[[route]]\nmodel = \"cheap\"\nupstreams = [\"primary:gpt-4o-mini\"]\n";

async fn gateway(settings: &str) -> common::Harness {
    let h = start(ONE, settings, ROUTES).await;
    h.fake("primary")
        .route("POST", "/v1/chat/completions", healthy_openai("hi"));
    h
}

fn error_of(answer: &common::Answer) -> serde_json::Value {
    answer.json()["error"].clone()
}

#[tokio::test]
async fn requests_without_a_valid_gateway_key_are_refused() {
    let h = gateway("").await;
    let body = r#"{"model":"smart","messages":[{"role":"user","content":"hi"}]}"#;
    let none = h.call("POST", "/v1/chat/completions", None, body).await;
    assert_eq!(none.status, 401);
    assert_eq!(error_of(&none)["code"], "invalid_api_key");
    assert!(error_of(&none)["message"]
        .as_str()
        .unwrap_or_default()
        .contains("Authorization: Bearer"));
    let wrong = h
        .call("POST", "/v1/chat/completions", Some("gw-test-ke"), body)
        .await;
    assert_eq!(wrong.status, 401);
    assert_eq!(
        h.call("GET", "/v1/models", Some("nope"), "").await.status,
        401
    );
    assert_eq!(
        h.call("GET", "/admin/upstreams", None, "").await.status,
        401
    );
    assert!(
        h.chats_seen("primary").is_empty(),
        "nothing reached an upstream"
    );
    let second = h
        .call("POST", "/v1/chat/completions", Some("second-key"), body)
        .await;
    assert_eq!(second.status, 200, "every listed key works");
}

#[tokio::test]
async fn malformed_bodies_name_what_is_wrong() {
    let h = gateway("").await;
    for (body, needle, param) in [
        ("{not json", "not a JSON object", None),
        ("[1,2]", "not a JSON object", None),
        (
            r#"{"messages":[]}"#,
            "you must provide a model parameter",
            Some("model"),
        ),
        (
            r#"{"model":7,"messages":[]}"#,
            "`model` must be a string",
            Some("model"),
        ),
        (
            r#"{"model":"smart","messages":"hi"}"#,
            "`messages` must be an array",
            Some("messages"),
        ),
        (
            r#"{"model":"smart","stream":"yes","messages":[]}"#,
            "`stream` must be true or false",
            Some("stream"),
        ),
    ] {
        let answer = h
            .call("POST", "/v1/chat/completions", Some(CLIENT_KEY), body)
            .await;
        assert_eq!(answer.status, 400, "{body}");
        let error = error_of(&answer);
        assert_eq!(error["type"], "invalid_request_error");
        assert!(
            error["message"]
                .as_str()
                .unwrap_or_default()
                .contains(needle),
            "{body}: {error}"
        );
        if let Some(param) = param {
            assert_eq!(error["param"], param);
        }
    }
}

#[tokio::test]
async fn an_unknown_model_is_404_with_the_close_names() {
    let h = gateway("").await;
    let answer = h.chat("smrat", false).await;
    assert_eq!(answer.status, 404);
    let error = error_of(&answer);
    assert_eq!(error["code"], "model_not_found");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.contains("Did you mean `smart`?"), "{message}");
    assert!(message.contains("smart, cheap"), "{message}");
    let models = h
        .call("GET", "/v1/models", Some(CLIENT_KEY), "")
        .await
        .json();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, vec!["smart", "cheap"]);
    assert_eq!(
        h.call("GET", "/v1/models/cheap", Some(CLIENT_KEY), "")
            .await
            .json()["id"],
        "cheap"
    );
    assert_eq!(
        h.call("GET", "/v1/nope", Some(CLIENT_KEY), "").await.status,
        404
    );
    assert_eq!(
        h.call("DELETE", "/v1/models", Some(CLIENT_KEY), "")
            .await
            .status,
        405
    );
}

#[tokio::test]
async fn an_oversized_body_is_413() {
    let h = gateway("max_request_bytes = 1024").await;
    let big = format!(
        r#"{{"model":"smart","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(4096)
    );
    let answer = h
        .call("POST", "/v1/chat/completions", Some(CLIENT_KEY), &big)
        .await;
    assert_eq!(answer.status, 413);
    assert_eq!(error_of(&answer)["code"], "request_too_large");
    assert_eq!(
        h.chat("smart", false).await.status,
        200,
        "and the next request is served"
    );
}

/// Sends `body` chunked, in pieces of `piece` bytes each written on its own, and returns the
/// answer as text. The answer is read while the pieces go out: the gateway may refuse and
/// close before the last ones.
async fn send_in_pieces(addr: std::net::SocketAddr, body: &str, piece: usize) -> String {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut read, mut write) = stream.into_split();
    let head = format!("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {CLIENT_KEY}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
    let mut wire = vec![head.into_bytes()];
    for chunk in body.as_bytes().chunks(piece) {
        wire.push([format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat());
    }
    wire.push(b"0\r\n\r\n".to_vec());
    let writer = tokio::spawn(async move {
        for part in wire {
            if write.write_all(&part).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), read.read_to_end(&mut buf)).await;
    writer.abort();
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test]
async fn a_body_in_pieces_is_joined_and_refused_once_past_the_cap() {
    let h = gateway("max_request_bytes = 1024").await;
    let body = |len: usize| {
        format!(
            r#"{{"model":"smart","messages":[{{"role":"user","content":"{}"}}]}}"#,
            "x".repeat(len)
        )
    };
    let small = send_in_pieces(h.addr, &body(600), 100).await;
    assert!(small.starts_with("HTTP/1.1 200"), "{small}");
    let big = send_in_pieces(h.addr, &body(2000), 100).await;
    assert!(big.starts_with("HTTP/1.1 413"), "{big}");
    assert!(big.contains("request_too_large"), "{big}");
    let sent: Vec<serde_json::Value> = h
        .fake("primary")
        .requests()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).expect("JSON upstream"))
        .collect();
    assert_eq!(sent.len(), 1, "only the small body went upstream");
    assert_eq!(
        sent[0]["messages"][0]["content"].as_str().map(str::len),
        Some(600),
        "joined whole"
    );
}

#[tokio::test]
async fn slow_clients_are_cut_off_while_others_are_served() {
    let h = gateway("client_timeout = \"500ms\"").await;
    // Headers that never end.
    let mut dribble = tokio::net::TcpStream::connect(h.addr)
        .await
        .expect("connect");
    dribble
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    // A body that never arrives.
    let mut slow_body = tokio::net::TcpStream::connect(h.addr)
        .await
        .expect("connect");
    slow_body
        .write_all(
            format!("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {CLIENT_KEY}\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{{\"model\"").as_bytes(),
        )
        .await
        .expect("write");
    assert_eq!(
        h.chat("smart", false).await.status,
        200,
        "others are served meanwhile"
    );
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), dribble.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the dribbling connection was closed");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), slow_body.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("client_timeout"), "{text}");
}

#[tokio::test]
async fn an_upstream_that_never_stops_sending_is_cut_off() {
    let h = gateway("upstream_timeout = \"1s\"").await;
    // 200 with a body that dribbles on past the upstream's budget.
    h.fake("primary").route(
        "POST",
        "/v1/chat/completions",
        Reply::slow_body(200, vec![b' '; 100_000], 10, Duration::from_millis(50)),
    );
    let started = std::time::Instant::now();
    let answer = h.chat("smart", false).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(answer.status, 504, "{}", answer.body);
    assert_eq!(error_of(&answer)["code"], "upstream_timeout");
    assert!(
        error_of(&answer)["message"]
            .as_str()
            .unwrap_or_default()
            .contains("did not finish in time"),
        "{}",
        answer.body
    );
}

#[tokio::test]
async fn metrics_count_refusals_without_any_key_in_them() {
    let h = gateway("").await;
    let _ = h
        .call(
            "POST",
            "/v1/chat/completions",
            Some("wrong-key-value"),
            "{}",
        )
        .await;
    let _ = h.chat("smart", false).await;
    let metrics = h.metrics().await;
    assert!(
        metrics.contains("aiwatch_gateway_rejected_total{reason=\"unauthorized\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("aiwatch_gateway_added_latency_seconds_bucket"),
        "{metrics}"
    );
    // Off by default: one series for all keys, so the metrics say nothing about who uses what.
    assert!(metrics.contains("aiwatch_gateway_tokens_total{route=\"smart\",upstream=\"primary:gpt-4o-mini\",key=\"all\",direction=\"out\"} 9"), "{metrics}");
    assert!(!metrics.contains("key=\"key-1\""), "{metrics}");
    assert!(!metrics.contains(CLIENT_KEY) && !metrics.contains("wrong-key-value"));
    assert!(!metrics.contains(common::UPSTREAM_KEY));
}

#[tokio::test]
async fn per_key_series_appear_only_when_the_config_asks_for_them() {
    let h = gateway("metrics_per_key = true").await;
    let _ = h.chat("smart", false).await;
    let metrics = h.metrics().await;
    assert!(metrics.contains("aiwatch_gateway_tokens_total{route=\"smart\",upstream=\"primary:gpt-4o-mini\",key=\"key-1\",direction=\"out\"} 9"), "{metrics}");
}

#[tokio::test]
async fn a_spiking_key_sets_its_usage_spike_gauge_and_a_quiet_minute_clears_it() {
    let h = gateway("metrics_per_key = true").await;
    let _ = h.chat("smart", false).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let metrics = h.metrics().await;
    assert!(
        metrics.contains("aiwatch_gateway_usage_spike{key=\"key-1\"} 0"),
        "{metrics}"
    );
    // Ten minutes of 500 tokens, then 50,000 in the eleventh, as the proxy records them.
    let tokens = |total: u64| {
        Some(Tokens {
            prompt: total / 2,
            completion: total / 2,
        })
    };
    for minute in 1..=10 {
        h.gw.ledger.record(KeyLabel(2), 0, tokens(500), minute);
    }
    for _ in 0..100 {
        h.gw.ledger.record(KeyLabel(2), 0, tokens(500), 11);
    }
    let spikes = h.gw.judge_usage_at(11);
    assert!(spikes[0].is_none(), "key-1 is steady: {spikes:?}");
    assert_eq!(spikes[1].as_ref().map(|s| s.current), Some(50_000.0));
    assert_eq!(h.gw.spike_gauges[1].get(), 1);
    assert_eq!(h.gw.spike_gauges[0].get(), 0);
    let usage = h.admin("/admin/usage").await;
    assert_eq!(usage["keys"][1]["key"], "key-2", "{usage}");
    // A minute later the key is quiet again.
    assert!(h.gw.judge_usage_at(12)[1].is_none());
    assert_eq!(h.gw.spike_gauges[1].get(), 0);
}

#[tokio::test]
async fn repeated_wrong_keys_from_one_address_get_429_with_retry_after() {
    let h = gateway("").await;
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let answer = h
            .call("GET", "/v1/models", Some("guessing-a-key-0000000000"), "")
            .await;
        statuses.push(answer.status);
        if answer.status == 429 {
            let wait: u64 = answer
                .header("retry-after")
                .parse()
                .expect("Retry-After in seconds");
            assert!(wait >= 1, "{wait}");
        }
    }
    assert_eq!(
        &statuses[..10],
        &[401; 10],
        "a burst of plain refusals first"
    );
    assert_eq!(&statuses[10..], &[429, 429], "then the address waits");
    // While it waits, even a right key from that address is not evaluated.
    assert_eq!(
        h.call("GET", "/v1/models", Some(CLIENT_KEY), "")
            .await
            .status,
        429
    );
    assert_eq!(h.call("GET", "/healthz", None, "").await.status, 200);
}
