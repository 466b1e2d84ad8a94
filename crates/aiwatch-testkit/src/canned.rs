//! Canned [`Reply`]s shaped like what real AI providers, Cloudflare, TLS-inspecting proxies and
//! connectivity-check hosts send (bodies, headers and wording from `reference/providers.md`).

use std::time::Duration;

use serde_json::{json, Value};

use crate::http_server::Reply;

/// The `cf-ray` header value on canned Cloudflare responses (`<id>-<colo>`).
pub const CF_RAY: &str = "8f1c2a3b4d5e6f70-FRA";
/// The `x-request-id` on canned OpenAI responses.
pub const OPENAI_REQUEST_ID: &str = "req_9b2f61d0c5a84e7f8e3c2a1b0d9e8f7a";
/// The `request-id` on canned Anthropic responses (also in their error bodies).
pub const ANTHROPIC_REQUEST_ID: &str = "req_011CX7J5ZXp3npD8nY7VYZvm";

/// Time between the events of canned streams.
const STREAM_GAP: Duration = Duration::from_millis(5);

// === OpenAI ===

/// Adds the headers every OpenAI API response carries (it sits behind Cloudflare).
fn openai_headers(reply: Reply) -> Reply {
    reply
        .header("openai-version", "2020-10-01")
        .header("openai-processing-ms", "23")
        .header("x-request-id", OPENAI_REQUEST_ID)
        .header("server", "cloudflare")
        .header("cf-ray", CF_RAY)
}

/// 200 `GET /v1/models`: `{"object":"list","data":[{"id":"gpt-4o-mini","object":"model",…},…]}`.
pub fn openai_models() -> Reply {
    let model = |id: &str, created: u64, owned_by: &str| json!({"id": id, "object": "model", "created": created, "owned_by": owned_by});
    openai_headers(Reply::json(
        200,
        json!({
            "object": "list",
            "data": [
                model("gpt-4o-mini", 1_721_172_741, "system"),
                model("gpt-4o", 1_715_367_049, "system"),
                model("gpt-4.1-mini", 1_744_318_173, "system"),
                model("text-embedding-3-small", 1_705_948_997, "system"),
            ]
        }),
    ))
}

/// 200 `GET /` on the API host, the unauthenticated reachability check.
pub fn openai_welcome() -> Reply {
    openai_headers(Reply::json(
        200,
        json!({"message": "Welcome to the OpenAI API! Documentation is available at https://platform.openai.com/docs/api-reference"}),
    ))
}

/// An OpenAI error: `{"error":{"message","type","param":null,"code"}}` with this status.
pub fn openai_error(status: u16, kind: &str, code: Option<&str>, message: &str) -> Reply {
    openai_headers(Reply::json(
        status,
        json!({"error": {"message": message, "type": kind, "param": null, "code": code}}),
    ))
}

/// 401 `invalid_request_error` / `invalid_api_key`: a wrong or revoked key.
pub fn openai_401() -> Reply {
    openai_error(
        401,
        "invalid_request_error",
        Some("invalid_api_key"),
        "Incorrect API key provided: sk-test***...w8ZP. You can find your API key at https://platform.openai.com/account/api-keys.",
    )
}

/// An OpenAI-shaped error that echoes the request's credentials back, as a careless (or
/// hostile) provider might: the whole `Authorization` header and the bare key.
pub fn echo_key_error(status: u16) -> Reply {
    Reply::dynamic(move |seen| {
        let header = seen
            .header("authorization")
            .or_else(|| seen.header("x-api-key"))
            .unwrap_or_default()
            .to_owned();
        let bare = header.strip_prefix("Bearer ").unwrap_or(&header).to_owned();
        openai_error(
            status,
            "invalid_request_error",
            Some("invalid_api_key"),
            &format!("Incorrect API key provided: {bare} (we received the header 'Authorization: {header}')"),
        )
    })
}

/// 429 `insufficient_quota`: out of credits; not to be retried.
pub fn openai_insufficient_quota() -> Reply {
    openai_error(
        429,
        "insufficient_quota",
        Some("insufficient_quota"),
        "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
    )
}

/// 429 `rate_limit_exceeded` (RPM throttling) with `retry-after: 1` and `x-ratelimit-*` headers.
pub fn openai_rate_limited() -> Reply {
    openai_error(
        429,
        "requests",
        Some("rate_limit_exceeded"),
        "Rate limit reached for organization org-aiwatchtest on requests per min (RPM): Limit 3000, Used 3000, Requested 1. Please try again in 20ms. Visit https://platform.openai.com/account/rate-limits to learn more.",
    )
    .header("retry-after", "1")
    .header("x-ratelimit-limit-requests", "3000")
    .header("x-ratelimit-remaining-requests", "0")
    .header("x-ratelimit-reset-requests", "20ms")
    .header("x-ratelimit-limit-tokens", "250000")
    .header("x-ratelimit-remaining-tokens", "249990")
    .header("x-ratelimit-reset-tokens", "2ms")
}

/// 403 `request_forbidden` / `unsupported_country_region_territory`: a geo block by egress IP.
pub fn openai_region_unsupported() -> Reply {
    openai_error(
        403,
        "request_forbidden",
        Some("unsupported_country_region_territory"),
        "Country, region, or territory not supported",
    )
}

/// 404 `model_not_found` for the model `gpt-5-nonexistent`.
pub fn openai_model_not_found() -> Reply {
    openai_error(
        404,
        "invalid_request_error",
        Some("model_not_found"),
        "The model `gpt-5-nonexistent` does not exist or you do not have access to it.",
    )
}

/// 503 `server_error`: "That model is currently overloaded with other requests…".
pub fn openai_503_overloaded() -> Reply {
    openai_error(
        503,
        "server_error",
        None,
        &format!(
            "That model is currently overloaded with other requests. You can retry your request, \
             or contact us through our help center at help.openai.com if the error persists. \
             (Please include the request ID {OPENAI_REQUEST_ID} in your message.)"
        ),
    )
}

/// A 200 Chat Completions stream of `chat.completion.chunk` frames. Complete: it ends with a
/// chunk whose `finish_reason` is `"stop"`, then `data: [DONE]`. Not complete: the connection
/// breaks after the content chunks, before the finish.
pub fn openai_stream(complete: bool) -> Reply {
    let chunk = |delta: Value, finish: Value| {
        let frame = json!({
            "id": "chatcmpl-AaWtestStream0001",
            "object": "chat.completion.chunk",
            "created": 1_733_000_000,
            "model": "gpt-4o-mini-2024-07-18",
            "system_fingerprint": "fp_0ba0d124f1",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]
        });
        format!("data: {frame}")
    };
    let mut events = vec![
        chunk(
            json!({"role": "assistant", "content": "", "refusal": null}),
            Value::Null,
        ),
        chunk(json!({"content": "Hello"}), Value::Null),
        chunk(json!({"content": "!"}), Value::Null),
        chunk(json!({"content": " How can I help?"}), Value::Null),
    ];
    if complete {
        events.push(chunk(json!({}), json!("stop")));
        events.push("data: [DONE]".to_owned());
    }
    openai_headers(Reply::sse(events, STREAM_GAP, complete))
}

/// A 200 Responses API stream (`POST /v1/responses` with `stream: true`) saying "Hello! How
/// can I help?" in three `response.output_text.delta` events, each frame named by its `event:`
/// line as OpenAI sends them. Complete: it ends with `response.completed`, whose `response`
/// carries `usage` (12 input, 9 output tokens). Not complete: the connection breaks after the
/// deltas.
pub fn openai_responses_stream(complete: bool) -> Reply {
    let response = |status: &str, output: Value, usage: Value| {
        json!({"id": "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b",
               "object": "response", "created_at": 1_741_476_542, "status": status,
               "model": "gpt-4o-2024-08-06", "output": output, "usage": usage})
    };
    let item = |status: &str, text: &str| {
        json!({"id": "msg_67ccd2bf17f0819081ff3bb2cf6508e60bb6a6b452d3795b", "type": "message",
        "status": status, "role": "assistant",
        "content": if text.is_empty() { json!([]) } else {
            json!([{"type": "output_text", "text": text, "annotations": []}])
        }})
    };
    let text = "Hello! How can I help?";
    let mut frames = vec![
        json!({"type": "response.created", "response": response("in_progress", json!([]), Value::Null)}),
        json!({"type": "response.in_progress", "response": response("in_progress", json!([]), Value::Null)}),
        json!({"type": "response.output_item.added", "output_index": 0, "item": item("in_progress", "")}),
        json!({"type": "response.content_part.added", "item_id": "msg_67ccd2bf17f0819081ff3bb2cf6508e60bb6a6b452d3795b",
               "output_index": 0, "content_index": 0,
               "part": {"type": "output_text", "text": "", "annotations": []}}),
    ];
    for delta in ["Hello", "!", " How can I help?"] {
        frames.push(json!({"type": "response.output_text.delta",
            "item_id": "msg_67ccd2bf17f0819081ff3bb2cf6508e60bb6a6b452d3795b",
            "output_index": 0, "content_index": 0, "delta": delta}));
    }
    if complete {
        frames.push(json!({"type": "response.output_text.done",
            "item_id": "msg_67ccd2bf17f0819081ff3bb2cf6508e60bb6a6b452d3795b",
            "output_index": 0, "content_index": 0, "text": text}));
        frames.push(
            json!({"type": "response.output_item.done", "output_index": 0,
            "item": item("completed", text)}),
        );
        frames.push(json!({"type": "response.completed", "response": response(
            "completed",
            json!([item("completed", text)]),
            json!({"input_tokens": 12, "output_tokens": 9, "total_tokens": 21}),
        )}));
    }
    let events = frames
        .into_iter()
        .enumerate()
        .map(|(n, mut frame)| {
            frame["sequence_number"] = json!(n);
            let name = frame["type"].as_str().unwrap_or_default().to_owned();
            format!("event: {name}\ndata: {frame}")
        })
        .collect();
    openai_headers(Reply::sse(events, STREAM_GAP, complete))
}

/// 200 `POST /v1/chat/completions` (not streamed): one choice saying `text`, finish "stop",
/// with `usage`.
pub fn openai_chat_completion(text: &str) -> Reply {
    openai_headers(Reply::json(200, openai_chat_completion_body(text)))
}

/// The body of [`openai_chat_completion`], for fakes that answer dynamically.
pub fn openai_chat_completion_body(text: &str) -> Value {
    json!({
        "id": "chatcmpl-AaWtestCompletion01",
        "object": "chat.completion",
        "created": 1_733_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_0ba0d124f1",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": null},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": {
            "prompt_tokens": 12,
            "completion_tokens": 9,
            "total_tokens": 21,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0}
        }
    })
}

/// A complete Chat Completions stream whose last content-less chunk carries `usage`, as
/// OpenAI sends it when the request sets `stream_options.include_usage`.
pub fn openai_stream_with_usage() -> Reply {
    let head = json!({
        "id": "chatcmpl-AaWtestStream0001", "object": "chat.completion.chunk",
        "created": 1_733_000_000, "model": "gpt-4o-mini-2024-07-18"
    });
    let chunk = |delta: Value, finish: Value| {
        let mut frame = head.clone();
        frame["choices"] =
            json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]);
        frame["usage"] = Value::Null;
        format!("data: {frame}")
    };
    let mut usage = head.clone();
    usage["choices"] = json!([]);
    usage["usage"] = json!({"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21});
    let events = vec![
        chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        chunk(json!({"content": "Hello"}), Value::Null),
        chunk(json!({"content": "! How can I help?"}), Value::Null),
        chunk(json!({}), json!("stop")),
        format!("data: {usage}"),
        "data: [DONE]".to_owned(),
    ];
    openai_headers(Reply::sse(events, STREAM_GAP, true))
}

/// 200 `POST /v1/embeddings`: one 8-dimensional embedding per input, with `usage`.
pub fn openai_embeddings(inputs: usize) -> Reply {
    let data: Vec<Value> = (0..inputs)
        .map(|i| json!({"object": "embedding", "index": i, "embedding": [0.0023, -0.0093, 0.0158, -0.0028, 0.0107, -0.0041, 0.0071, -0.0005]}))
        .collect();
    openai_headers(Reply::json(
        200,
        json!({
            "object": "list",
            "data": data,
            "model": "text-embedding-3-small",
            "usage": {"prompt_tokens": 8, "total_tokens": 8}
        }),
    ))
}

// === Anthropic ===

/// 200 `POST /v1/messages` (not streamed): one text block saying `text`, stop "end_turn".
pub fn anthropic_message(text: &str) -> Reply {
    anthropic_headers(Reply::json(
        200,
        json!({
            "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
            "type": "message",
            "role": "assistant",
            "model": "claude-3-5-haiku-20241022",
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": {"input_tokens": 12, "output_tokens": 9}
        }),
    ))
}

/// Adds the headers every Anthropic API response carries.
fn anthropic_headers(reply: Reply) -> Reply {
    reply
        .header("request-id", ANTHROPIC_REQUEST_ID)
        .header(
            "anthropic-organization-id",
            "0b5d7e2c-4a1f-4c3e-9d8b-1a2b3c4d5e6f",
        )
        .header("server", "cloudflare")
        .header("cf-ray", CF_RAY)
}

/// 200 `GET /v1/models`: `{"data":[{"type":"model","id",…}],"has_more":false,"first_id","last_id"}`.
pub fn anthropic_models() -> Reply {
    let model = |id: &str, name: &str, created: &str| json!({"type": "model", "id": id, "display_name": name, "created_at": created});
    anthropic_headers(Reply::json(
        200,
        json!({
            "data": [
                model("claude-sonnet-4-20250514", "Claude Sonnet 4", "2025-05-22T00:00:00Z"),
                model("claude-3-5-haiku-20241022", "Claude Haiku 3.5", "2024-10-22T00:00:00Z"),
            ],
            "has_more": false,
            "first_id": "claude-sonnet-4-20250514",
            "last_id": "claude-3-5-haiku-20241022"
        }),
    ))
}

/// An Anthropic error: `{"type":"error","error":{"type","message"},"request_id"}`.
pub fn anthropic_error(status: u16, kind: &str, message: &str) -> Reply {
    anthropic_headers(Reply::json(
        status,
        json!({
            "type": "error",
            "error": {"type": kind, "message": message},
            "request_id": ANTHROPIC_REQUEST_ID
        }),
    ))
}

/// 529 `overloaded_error` "Overloaded": the API is overloaded for all users.
pub fn anthropic_overloaded() -> Reply {
    anthropic_error(529, "overloaded_error", "Overloaded")
}

/// The `event:` + `data:` frames of a Messages stream, up to and including `message_delta`.
fn anthropic_frames() -> Vec<String> {
    let frame = |name: &str, data: Value| format!("event: {name}\ndata: {data}");
    vec![
        frame(
            "message_start",
            json!({"type": "message_start", "message": {
                "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant",
                "model": "claude-3-5-haiku-20241022", "content": [], "stop_reason": null,
                "stop_sequence": null, "usage": {"input_tokens": 12, "output_tokens": 1}
            }}),
        ),
        frame(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
                   "content_block": {"type": "text", "text": ""}}),
        ),
        frame("ping", json!({"type": "ping"})),
        frame(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
                   "delta": {"type": "text_delta", "text": "Hello"}}),
        ),
        frame(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
                   "delta": {"type": "text_delta", "text": "! How can I help?"}}),
        ),
        frame(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
        frame(
            "message_delta",
            json!({"type": "message_delta",
                   "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                   "usage": {"output_tokens": 9}}),
        ),
    ]
}

/// A 200 Messages stream: `message_start`, `content_block_start`, `ping`, `content_block_delta`s,
/// `content_block_stop`, `message_delta`, `message_stop`. Not complete: the connection breaks
/// before `message_stop`.
pub fn anthropic_stream(complete: bool) -> Reply {
    let mut events = anthropic_frames();
    if complete {
        events.push(format!(
            "event: message_stop\ndata: {}",
            json!({"type": "message_stop"})
        ));
    }
    anthropic_headers(Reply::sse(events, STREAM_GAP, complete))
}

/// A 200 Messages stream that starts normally, then sends `event: error` with an
/// `overloaded_error` (the streaming analogue of a 529) and ends.
pub fn anthropic_stream_overloaded() -> Reply {
    let mut events = anthropic_frames();
    events.truncate(4);
    events.push(format!(
        "event: error\ndata: {}",
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    ));
    anthropic_headers(Reply::sse(events, STREAM_GAP, true))
}

// === Gemini, Ollama ===

/// 200 `GET /v1beta/models`: `{"models":[{"name":"models/gemini-2.0-flash",…},…]}`.
pub fn gemini_models() -> Reply {
    let model = |id: &str, version: &str, name: &str, input: u64, output: u64| {
        json!({
            "name": format!("models/{id}"),
            "version": version,
            "displayName": name,
            "description": format!("{name} model"),
            "inputTokenLimit": input,
            "outputTokenLimit": output,
            "supportedGenerationMethods": ["generateContent", "countTokens"],
            "temperature": 1,
            "topP": 0.95,
            "topK": 40,
            "maxTemperature": 2
        })
    };
    Reply::json(
        200,
        json!({"models": [
            model("gemini-2.0-flash", "2.0", "Gemini 2.0 Flash", 1_048_576, 8_192),
            model("gemini-2.5-flash", "001", "Gemini 2.5 Flash", 1_048_576, 65_536),
        ]}),
    )
    .header("server", "scaffolding on HTTPServer2")
    .header("vary", "Origin, X-Origin, Referer")
}

/// 200 `GET /api/tags` listing these models. Names without a tag get `:latest`, as Ollama
/// reports them (`llama3.2` is listed as `llama3.2:latest`).
pub fn ollama_tags(models: &[&str]) -> Reply {
    let models: Vec<Value> = models
        .iter()
        .map(|name| {
            let name = if name.contains(':') {
                (*name).to_owned()
            } else {
                format!("{name}:latest")
            };
            let family = name
                .split(|c: char| !c.is_ascii_alphabetic())
                .next()
                .unwrap_or_default()
                .to_owned();
            json!({
                "name": name,
                "model": name,
                "modified_at": "2025-01-10T12:00:00.000000000+01:00",
                "size": 2_019_393_189_u64,
                "digest": digest(&name),
                "details": {
                    "parent_model": "",
                    "format": "gguf",
                    "family": family,
                    "families": [family],
                    "parameter_size": "3.2B",
                    "quantization_level": "Q4_K_M"
                }
            })
        })
        .collect();
    Reply::json(200, json!({ "models": models }))
}

/// 200 `GET /` on Ollama: `Ollama is running`.
pub fn ollama_root() -> Reply {
    Reply::text(200, "text/plain; charset=utf-8", "Ollama is running")
}

/// A stable 64-hex-digit digest for a model name (FNV-1a, four rounds).
fn digest(name: &str) -> String {
    (0u64..4)
        .map(|round| {
            let hash = name
                .bytes()
                .fold(0xcbf2_9ce4_8422_2325_u64 ^ round, |hash, byte| {
                    (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
                });
            format!("{hash:016x}")
        })
        .collect()
}

// === Cloudflare ===

/// Adds the headers of a Cloudflare-generated page.
fn cloudflare_page(status: u16, html: String) -> Reply {
    Reply::text(status, "text/html; charset=UTF-8", html)
        .header("server", "cloudflare")
        .header("cf-ray", CF_RAY)
        .header(
            "cache-control",
            "private, max-age=0, no-store, no-cache, must-revalidate, post-check=0, pre-check=0",
        )
        .header("x-frame-options", "SAMEORIGIN")
}

/// 403 managed challenge ("Just a moment..."): `cf-mitigated: challenge`, `server: cloudflare`,
/// a `cf-ray`, and a page with `_cf_chl_opt` and `/cdn-cgi/challenge-platform/`.
pub fn cloudflare_challenge() -> Reply {
    let ray = CF_RAY.split('-').next().unwrap_or_default();
    let html = format!(
        r#"<!DOCTYPE html><html lang="en-US"><head><title>Just a moment...</title><meta http-equiv="Content-Type" content="text/html; charset=UTF-8"><meta http-equiv="X-UA-Compatible" content="IE=Edge"><meta name="robots" content="noindex,nofollow"><meta name="viewport" content="width=device-width,initial-scale=1"><style>*{{box-sizing:border-box;margin:0;padding:0}}html{{line-height:1.15}}body{{display:flex;flex-direction:column;height:100vh;min-height:100vh}}</style></head><body><div class="main-wrapper" role="main"><div class="main-content"><noscript><div class="h2"><span id="challenge-error-text">Enable JavaScript and cookies to continue</span></div></noscript></div></div><script>(function(){{window._cf_chl_opt={{cvId: '3',cZone: "chatgpt.com",cType: 'managed',cRay: '{ray}',cH: 'aiwatchTestChallengeHash',cUPMDTk: "\/?__cf_chl_tk=aiwatchTestToken",cFPWv: 'g',cITimeS: '1733000000',cTTimeMs: '1000',cMTimeMs: '390000',cTplC: 0,cTplV: 5,cTplB: 'cf',fa: "\/?__cf_chl_f_tk=aiwatchTestToken",md: 'aiwatchTestMd',mdrd: 'aiwatchTestMdrd'}};var cpo = document.createElement('script');cpo.src = '/cdn-cgi/challenge-platform/h/g/orchestrate/chl_page/v1?ray={ray}';window._cf_chl_opt.cOgUHash = location.hash === '' && location.href.indexOf('#') !== -1 ? '#' : location.hash;window._cf_chl_opt.cOgUQuery = location.search === '' && location.href.slice(0, location.href.length - window._cf_chl_opt.cOgUHash.length).indexOf('?') !== -1 ? '?' : location.search;if (window.history && window.history.replaceState) {{var ogU = location.pathname + window._cf_chl_opt.cOgUQuery + window._cf_chl_opt.cOgUHash;history.replaceState(null, null, "\/?__cf_chl_rt_tk=aiwatchTestToken" + window._cf_chl_opt.cOgUHash);cpo.onload = function() {{history.replaceState(null, null, ogU);}};}}document.getElementsByTagName('head')[0].appendChild(cpo);}}());</script></body></html>"#
    );
    cloudflare_page(403, html)
        .header("cf-mitigated", "challenge")
        .header("cross-origin-opener-policy", "same-origin")
        .header("referrer-policy", "same-origin")
}

/// A Cloudflare 1xxx error page body (the code is in the HTML, not in the status line).
fn cloudflare_1xxx(host: &str, code: u16, title: &str, what: &str, why: &str) -> String {
    let ray = CF_RAY.split('-').next().unwrap_or_default();
    format!(
        r#"<!DOCTYPE html>
<!--[if lt IE 7]> <html class="no-js ie6 oldie" lang="en-US"> <![endif]-->
<!--[if gt IE 8]><!--> <html class="no-js" lang="en-US"> <!--<![endif]-->
<head>
<title>{title} | {host} used Cloudflare to restrict access</title>
<meta charset="UTF-8" />
<meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
<meta name="robots" content="noindex, nofollow" />
<link rel="stylesheet" id="cf_styles-css" href="/cdn-cgi/styles/main.css" />
</head>
<body>
  <div id="cf-wrapper">
    <div id="cf-error-details" class="p-0">
      <header class="mx-auto pt-10 lg:pt-6 lg:px-8 w-240 lg:w-full mb-15 antialiased">
         <h1 class="inline-block md:block mr-2 md:mb-2 font-light text-60 md:text-3xl text-black-dark leading-tight">
           <span data-translate="error">Error</span>
           <span>{code}</span>
         </h1>
         <span class="inline-block md:block heading-ray-id font-mono text-15 lg:text-sm lg:leading-relaxed">Ray ID: {ray} &bull;</span>
        <h2 class="text-gray-600 leading-1.3 text-3xl lg:text-2xl font-light">{what}</h2>
      </header>
      <section class="w-240 lg:w-full mx-auto mb-8 lg:px-8">
          <div id="what-happened-section" class="w-1/2 md:w-full">
            <h2 class="text-3xl leading-tight font-normal mb-4 text-black-dark antialiased" data-translate="what_happened">What happened?</h2>
            <p>{why}</p>
          </div>
      </section>
      <div class="cf-error-footer cf-wrapper w-240 lg:w-full py-10 sm:py-4 sm:px-8 mx-auto text-center sm:text-left border-solid border-0 border-t border-gray-300">
        <p class="text-13">
          <span class="cf-footer-item sm:block sm:mb-1">Cloudflare Ray ID: <strong class="font-semibold">{ray}</strong></span>
          <span class="cf-footer-separator sm:hidden">&bull;</span>
          <span class="cf-footer-item sm:block sm:mb-1"><span>Performance &amp; security by</span> <a rel="noopener noreferrer" href="https://www.cloudflare.com/5xx-error-landing" id="brand_link" target="_blank">Cloudflare</a></span>
        </p>
      </div>
    </div>
  </div>
</body>
</html>
"#
    )
}

/// 403 "Access denied" / "Error 1020": the site's firewall rule blocked this client.
pub fn cloudflare_block_1020() -> Reply {
    let html = cloudflare_1xxx(
        "chatgpt.com",
        1020,
        "Access denied",
        "Access denied",
        "This website is using a security service to protect itself from online attacks. The \
         site owner may have set restrictions that prevent you from accessing the site.",
    );
    cloudflare_page(403, html)
}

/// 429 "Error 1015" "You are being rate limited": the site's rate-limit rule.
pub fn cloudflare_rate_limited_1015() -> Reply {
    let html = cloudflare_1xxx(
        "api.openai.com",
        1015,
        "Access denied",
        "You are being rate limited",
        "The owner of this website (api.openai.com) has banned you temporarily from accessing \
         this website.",
    );
    cloudflare_page(429, html)
}

/// A Cloudflare 52x page (520–526 or 530): the edge is fine, the origin behind it is not.
/// Panics for any other code.
pub fn cloudflare_origin_error(code: u16) -> Reply {
    let title = match code {
        520 => "Web server is returning an unknown error",
        521 => "Web server is down",
        522 => "Connection timed out",
        523 => "Origin is unreachable",
        524 => "A timeout occurred",
        525 => "SSL handshake failed",
        526 => "Invalid SSL certificate",
        530 => "Origin DNS error",
        other => panic!("cloudflare_origin_error: {other} is not a Cloudflare 52x/530 code"),
    };
    let host = "api.openai.com";
    let ray = CF_RAY.split('-').next().unwrap_or_default();
    let html = format!(
        r#"<!DOCTYPE html>
<html class="no-js" lang="en-US">
<head>
<title>{host} | {code}: {title}</title>
<meta charset="UTF-8" />
<meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
<meta name="robots" content="noindex, nofollow" />
</head>
<body>
<div id="cf-wrapper">
  <div id="cf-error-details" class="p-0">
    <header class="mx-auto pt-10 lg:pt-6 lg:px-8 w-240 lg:w-full mb-8">
      <h1 class="inline-block sm:block sm:mb-2 font-light text-60 lg:text-4xl text-black-dark leading-tight mr-2">
        <span class="inline-block">{title}</span>
        <span class="code-label">Error code {code}</span>
      </h1>
      <div>Visit <a href="https://www.cloudflare.com/5xx-error-landing?utm_source=errorcode_{code}&utm_campaign={host}" target="_blank" rel="noopener noreferrer">cloudflare.com</a> for more information.</div>
    </header>
    <div class="my-8 bg-gradient-gray">
      <div class="cf-column"><span class="cf-icon-ok"></span><h3>Browser</h3><span class="cf-status-label">Working</span></div>
      <div class="cf-column"><span class="cf-icon-ok"></span><h3>Cloudflare</h3><span class="cf-status-label">Working</span></div>
      <div class="cf-column"><span class="cf-icon-error"></span><h3>{host}</h3><span class="cf-status-label">Error</span></div>
    </div>
    <div class="cf-error-footer cf-wrapper w-240 lg:w-full py-10 sm:py-4 sm:px-8 mx-auto text-center sm:text-left border-solid border-0 border-t border-gray-300">
      <p class="text-13">
        <span class="cf-footer-item sm:block sm:mb-1">Cloudflare Ray ID: <strong class="font-semibold">{ray}</strong></span>
        <span class="cf-footer-separator sm:hidden">&bull;</span>
        <span class="cf-footer-item sm:block sm:mb-1"><span>Performance &amp; security by</span> <a rel="noopener noreferrer" href="https://www.cloudflare.com/5xx-error-landing" id="brand_link" target="_blank">Cloudflare</a></span>
      </p>
    </div>
  </div>
</div>
</body>
</html>
"#
    );
    cloudflare_page(code, html)
}

// === Intermediaries ===

/// The `server` header of [`interceptor_bad_gateway`].
pub const INTERCEPTOR_SERVER: &str = "Zscaler/6.2";

/// A TLS-inspecting proxy's own 502 page: its `server` header, an HTML body, and none of a
/// provider's fingerprints (no JSON error, no request-id headers).
pub fn interceptor_bad_gateway() -> Reply {
    Reply::text(
        502,
        "text/html; charset=utf-8",
        "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>\
         <h1>Bad Gateway</h1><p>The gateway could not complete your request to the destination \
         server. Contact your IT department if the problem persists.</p>\
         <p>Internet Security by Zscaler</p></body></html>",
    )
    .header("server", INTERCEPTOR_SERVER)
    .header("cache-control", "no-store")
}

// === Web and connectivity checks ===

/// 200 `text/html`: a small web-app home page.
pub fn web_home() -> Reply {
    Reply::text(
        200,
        "text/html; charset=utf-8",
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>ChatGPT</title>\
         </head><body><div id=\"root\"></div><script src=\"/assets/app.js\"></script></body></html>",
    )
    .header("server", "cloudflare")
    .header("cf-ray", CF_RAY)
}

/// The connectivity-check answer of `generate_204`: 204 with an empty body.
pub fn generate_204() -> Reply {
    Reply::empty(204).header("server", "HTTP server (unknown)")
}

/// A captive portal intercepting the connectivity check: 302 to its login page at `location`
/// (on a foreign host), with a small HTML body.
pub fn captive_portal_redirect(location: &str) -> Reply {
    Reply::text(
        302,
        "text/html",
        format!(
            "<html><head><title>Redirecting</title></head><body>Please log in to the network: \
             <a href=\"{location}\">{location}</a></body></html>"
        ),
    )
    .header("location", location)
    .header("cache-control", "no-cache")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http_server::FakeServer;
    use crate::test_client::{get, open, read_until_break, send, Answer};

    /// Serves `reply` and fetches it once.
    async fn served(reply: Reply) -> Answer {
        let server = FakeServer::start(None).await;
        server.route("*", "/", reply);
        get(server.addr(), "/").await
    }

    /// Serves a stream and returns its SSE frames (without blank lines) and whether it broke.
    async fn streamed(reply: Reply) -> (Vec<String>, bool) {
        let server = FakeServer::start(None).await;
        server.route("POST", "/stream", reply);
        let io = open(server.addr(), None).await;
        let response = send(io, "POST", "/stream", &[], b"{}")
            .await
            .expect("headers");
        assert_eq!(response.status(), 200);
        assert!(response.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/event-stream"));
        let (data, broke) = read_until_break(response).await;
        let text = String::from_utf8(data).expect("utf-8");
        let frames = text
            .split("\n\n")
            .filter(|frame| !frame.is_empty())
            .map(str::to_owned)
            .collect();
        (frames, broke)
    }

    /// The JSON of a frame's `data:` line.
    fn data(frame: &str) -> Value {
        let line = frame
            .lines()
            .find_map(|line| line.strip_prefix("data: "))
            .expect("a data line");
        serde_json::from_str(line).expect("JSON data")
    }

    #[tokio::test]
    async fn model_lists_have_the_providers_shapes() {
        let openai = served(openai_models()).await.json();
        assert_eq!(openai["object"], "list");
        assert_eq!(openai["data"][0]["id"], "gpt-4o-mini");
        assert_eq!(openai["data"][0]["object"], "model");

        let anthropic = served(anthropic_models()).await;
        assert_eq!(anthropic.header("request-id"), Some(ANTHROPIC_REQUEST_ID));
        let anthropic = anthropic.json();
        assert_eq!(anthropic["data"][0]["type"], "model");
        assert_eq!(anthropic["has_more"], false);

        let gemini = served(gemini_models()).await.json();
        assert_eq!(gemini["models"][0]["name"], "models/gemini-2.0-flash");

        let ollama = served(ollama_tags(&["llama3.2", "qwen2.5:7b"]))
            .await
            .json();
        let names: Vec<&str> = ollama["models"]
            .as_array()
            .expect("models")
            .iter()
            .map(|m| m["name"].as_str().expect("name"))
            .collect();
        assert_eq!(names, ["llama3.2:latest", "qwen2.5:7b"]);
        assert_eq!(
            ollama["models"][0]["digest"].as_str().map(str::len),
            Some(64)
        );
        assert_eq!(served(ollama_tags(&[])).await.json(), json!({"models": []}));
        assert_eq!(served(ollama_root()).await.text(), "Ollama is running");
        assert!(served(openai_welcome()).await.json()["message"]
            .as_str()
            .expect("message")
            .starts_with("Welcome to the OpenAI API!"));
    }

    #[tokio::test]
    async fn openai_errors_have_status_type_and_code() {
        let cases = [
            (
                openai_401(),
                401,
                "invalid_request_error",
                json!("invalid_api_key"),
            ),
            (
                openai_insufficient_quota(),
                429,
                "insufficient_quota",
                json!("insufficient_quota"),
            ),
            (
                openai_rate_limited(),
                429,
                "requests",
                json!("rate_limit_exceeded"),
            ),
            (
                openai_region_unsupported(),
                403,
                "request_forbidden",
                json!("unsupported_country_region_territory"),
            ),
            (
                openai_model_not_found(),
                404,
                "invalid_request_error",
                json!("model_not_found"),
            ),
            (openai_503_overloaded(), 503, "server_error", Value::Null),
            (
                openai_error(500, "server_error", None, "boom"),
                500,
                "server_error",
                Value::Null,
            ),
        ];
        for (reply, status, kind, code) in cases {
            let answer = served(reply).await;
            assert_eq!(answer.status, status);
            assert_eq!(answer.header("content-type"), Some("application/json"));
            assert_eq!(answer.header("x-request-id"), Some(OPENAI_REQUEST_ID));
            let body = answer.json();
            let error = &body["error"];
            assert_eq!(error["type"], kind);
            assert_eq!(error["code"], code);
            assert!(error.get("param").is_some_and(Value::is_null));
            assert!(error["message"].is_string());
        }
        let limited = served(openai_rate_limited()).await;
        assert_eq!(limited.header("retry-after"), Some("1"));
        assert_eq!(limited.header("x-ratelimit-remaining-requests"), Some("0"));
        let overloaded = served(openai_503_overloaded()).await.json();
        assert!(overloaded["error"]["message"]
            .as_str()
            .expect("message")
            .contains("currently overloaded"));
    }

    #[tokio::test]
    async fn anthropic_errors_have_the_documented_shape() {
        let answer = served(anthropic_overloaded()).await;
        assert_eq!(answer.status, 529);
        assert_eq!(
            answer.json(),
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"},
                   "request_id": ANTHROPIC_REQUEST_ID})
        );
        let answer = served(anthropic_error(
            401,
            "authentication_error",
            "invalid x-api-key",
        ))
        .await;
        assert_eq!(answer.status, 401);
        assert_eq!(answer.json()["error"]["type"], "authentication_error");
    }

    #[tokio::test]
    async fn cloudflare_pages_carry_their_markers() {
        let challenge = served(cloudflare_challenge()).await;
        assert_eq!(challenge.status, 403);
        assert_eq!(challenge.header("cf-mitigated"), Some("challenge"));
        assert_eq!(challenge.header("server"), Some("cloudflare"));
        assert_eq!(challenge.header("cf-ray"), Some(CF_RAY));
        assert!(challenge
            .header("content-type")
            .expect("type")
            .starts_with("text/html"));
        let html = challenge.text();
        for marker in [
            "<title>Just a moment...</title>",
            "_cf_chl_opt",
            "/cdn-cgi/challenge-platform/",
        ] {
            assert!(html.contains(marker), "missing {marker}");
        }

        let blocked = served(cloudflare_block_1020()).await;
        assert_eq!(blocked.status, 403);
        assert_eq!(blocked.header("server"), Some("cloudflare"));
        assert!(blocked.header("cf-mitigated").is_none());
        let html = blocked.text();
        assert!(html.contains("Access denied") && html.contains("<span>1020</span>"));

        let limited = served(cloudflare_rate_limited_1015()).await;
        assert_eq!(limited.status, 429);
        let html = limited.text();
        assert!(html.contains("<span>1015</span>") && html.contains("You are being rate limited"));

        for code in [520, 521, 522, 523, 524, 525, 526, 530] {
            let origin = served(cloudflare_origin_error(code)).await;
            assert_eq!(origin.status, code);
            assert_eq!(origin.header("server"), Some("cloudflare"));
            assert!(origin.text().contains(&format!("Error code {code}")));
        }
    }

    #[test]
    #[should_panic(expected = "not a Cloudflare")]
    fn cloudflare_origin_error_rejects_other_codes() {
        let _ = cloudflare_origin_error(500);
    }

    #[tokio::test]
    async fn web_and_connectivity_checks() {
        let home = served(web_home()).await;
        assert_eq!(home.status, 200);
        assert!(home.text().contains("<title>ChatGPT</title>"));

        let ok = served(generate_204()).await;
        assert_eq!(ok.status, 204);
        assert!(ok.body.is_empty());

        let portal = served(captive_portal_redirect("http://login.hotspot.test/portal")).await;
        assert_eq!(portal.status, 302);
        assert_eq!(
            portal.header("location"),
            Some("http://login.hotspot.test/portal")
        );
        assert!(portal.text().contains("log in"));
    }

    #[tokio::test]
    async fn openai_stream_finishes_or_is_cut_before_the_finish() {
        let (frames, broke) = streamed(openai_stream(true)).await;
        assert!(!broke);
        assert_eq!(frames.last().map(String::as_str), Some("data: [DONE]"));
        let finish = data(&frames[frames.len() - 2]);
        assert_eq!(finish["object"], "chat.completion.chunk");
        assert_eq!(finish["choices"][0]["finish_reason"], "stop");
        let text: String = frames[..frames.len() - 2]
            .iter()
            .map(|frame| {
                data(frame)["choices"][0]["delta"]["content"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        assert_eq!(text, "Hello! How can I help?");

        let (frames, broke) = streamed(openai_stream(false)).await;
        assert!(broke, "a cut stream must break off");
        assert!(!frames.is_empty());
        assert!(frames.iter().all(|frame| frame != "data: [DONE]"));
        assert!(frames
            .iter()
            .all(|frame| data(frame)["choices"][0]["finish_reason"].is_null()));
    }

    #[tokio::test]
    async fn anthropic_stream_stops_or_is_cut_before_message_stop() {
        let names = |frames: &[String]| -> Vec<String> {
            frames
                .iter()
                .map(|frame| {
                    let name = frame
                        .lines()
                        .next()
                        .and_then(|l| l.strip_prefix("event: "))
                        .expect("event line");
                    assert_eq!(data(frame)["type"], name);
                    name.to_owned()
                })
                .collect()
        };
        let (frames, broke) = streamed(anthropic_stream(true)).await;
        assert!(!broke);
        assert_eq!(
            names(&frames),
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(data(&frames[6])["delta"]["stop_reason"], "end_turn");

        let (frames, broke) = streamed(anthropic_stream(false)).await;
        assert!(broke, "a cut stream must break off");
        assert_eq!(
            names(&frames).last().map(String::as_str),
            Some("message_delta")
        );

        let (frames, broke) = streamed(anthropic_stream_overloaded()).await;
        assert!(!broke);
        let last = frames.last().expect("frames");
        assert!(last.starts_with("event: error\n"));
        assert_eq!(data(last)["error"]["type"], "overloaded_error");
    }
}
