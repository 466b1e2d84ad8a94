//! `check --deep`: one minimal streamed completion, timed to its first token and checked for
//! its finish marker, so cut-off answers show up as what they are.

use std::sync::Arc;

use aiwatch_core::evidence::{ProbeReport, StreamEvidence};
use aiwatch_core::secret::ApiKey;
use aiwatch_core::service::{Service, ServiceKind};
use aiwatch_core::signatures::ProviderError;
use bytes::Bytes;
use http::Method;
use http_body_util::BodyExt;
use rustls::client::WebPkiServerVerifier;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::api::auth_headers;
use crate::http::{read_capped, send, Outgoing};
use crate::layered::{open, ProbeContext};

/// A streamed answer is read up to this size; a tiny completion is far smaller.
const STREAM_CAP: usize = 256 * 1024;
const PROMPT: &str = "Reply with the single word OK.";
/// Tokens the completion may produce: enough for "OK", little enough to cost nothing.
const MAX_TOKENS: u32 = 5;

fn request(kind: ServiceKind, base: &str, model: &str) -> (String, Value) {
    let base = base.trim_end_matches('/');
    match kind {
        ServiceKind::Anthropic => (
            format!("{base}/messages"),
            json!({"model": model, "max_tokens": MAX_TOKENS, "stream": true,
                   "messages": [{"role": "user", "content": PROMPT}]}),
        ),
        ServiceKind::Gemini => (
            format!("{base}/models/{model}:streamGenerateContent?alt=sse"),
            json!({"contents": [{"parts": [{"text": PROMPT}]}],
                   "generationConfig": {"maxOutputTokens": MAX_TOKENS}}),
        ),
        // Ollama through its OpenAI-compatible endpoint: the one the gateway and `drill` use.
        ServiceKind::Ollama => (
            format!("{base}/v1/chat/completions"),
            json!({"model": model, "max_tokens": MAX_TOKENS, "stream": true,
                   "messages": [{"role": "user", "content": PROMPT}]}),
        ),
        ServiceKind::Openai | ServiceKind::Http => (
            format!("{base}/chat/completions"),
            json!({"model": model, "max_tokens": MAX_TOKENS, "stream": true,
                   "messages": [{"role": "user", "content": PROMPT}]}),
        ),
    }
}

/// What one line of a stream said.
#[derive(Debug, Default, PartialEq)]
struct LineSays {
    token: bool,
    finished: bool,
    error: Option<String>,
}

/// Reads one SSE `data:` payload or one NDJSON line, in any family's shape.
fn read_line(kind: ServiceKind, line: &str) -> LineSays {
    let payload = line.strip_prefix("data:").map_or(line, str::trim).trim();
    if payload.is_empty() || payload.starts_with("event:") || payload.starts_with(':') {
        return LineSays::default();
    }
    if payload == "[DONE]" {
        return LineSays {
            finished: true,
            ..LineSays::default()
        };
    }
    let Ok(v) = serde_json::from_str::<Value>(payload) else {
        return LineSays::default();
    };
    if let Some(err) = v.get("error") {
        let message = err
            .get("message")
            .and_then(Value::as_str)
            .or_else(|| err.as_str())
            .unwrap_or("error event in the stream");
        return LineSays {
            error: Some(message.chars().take(200).collect()),
            ..LineSays::default()
        };
    }
    match kind {
        ServiceKind::Anthropic => match v.get("type").and_then(Value::as_str) {
            Some("content_block_delta") => LineSays {
                token: true,
                ..LineSays::default()
            },
            Some("message_stop") => LineSays {
                finished: true,
                ..LineSays::default()
            },
            _ => LineSays::default(),
        },
        ServiceKind::Gemini => {
            let candidate = v.pointer("/candidates/0");
            LineSays {
                token: candidate
                    .and_then(|c| c.pointer("/content/parts/0/text"))
                    .is_some(),
                finished: candidate.and_then(|c| c.get("finishReason")).is_some(),
                error: None,
            }
        }
        ServiceKind::Openai | ServiceKind::Http | ServiceKind::Ollama => {
            let choice = v.pointer("/choices/0");
            LineSays {
                token: choice
                    .and_then(|c| c.pointer("/delta/content"))
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty()),
                finished: choice
                    .and_then(|c| c.get("finish_reason"))
                    .is_some_and(|f| !f.is_null()),
                error: None,
            }
        }
    }
}

/// Sends one tiny streamed completion to `model` and watches it to the end.
pub async fn streamed_completion(
    ctx: &ProbeContext,
    service: &Service,
    model: &str,
    key: Option<&ApiKey>,
    expected_ca: Option<Arc<WebPkiServerVerifier>>,
    deadline: Instant,
) -> StreamEvidence {
    let started = Instant::now();
    let mut evidence = StreamEvidence {
        model: model.to_owned(),
        status: None,
        time_to_first_token: None,
        total: None,
        chunks: 0,
        finished: false,
        error: None,
        provider_error: None,
    };
    let Some(base) = service.api_base.as_deref() else {
        evidence.error = Some("the service has no API base".into());
        return evidence;
    };
    let (url, body) = request(service.kind, base, model);
    let host = aiwatch_core::network::url_host(&url).unwrap_or_default();
    let mut scratch = ProbeReport::new(aiwatch_core::evidence::Purpose::Api, &url, host);
    let Some(opened) = open(ctx, &mut scratch, &url, expected_ca, deadline).await else {
        evidence.error = Some(format!(
            "could not connect: {}",
            crate::official::failure_text(&scratch)
        ));
        return evidence;
    };
    if opened.intercepted && key.is_some() {
        evidence.error = Some("TLS is intercepted; the key was not sent through it".into());
        return evidence;
    }
    let mut headers = opened.extra_headers;
    let auth = auth_headers(service.kind, key);
    let secrets = crate::http::sent_secrets(&auth);
    let sent: Vec<&str> = secrets.iter().map(String::as_str).collect();
    // What the answer says may echo the key: it is read scrubbed.
    let scrubbed = |raw: &[u8]| -> String {
        let text = String::from_utf8_lossy(raw);
        aiwatch_core::scrub::scrub(&text, &sent).into_owned()
    };
    headers.extend(auth);
    headers.push(("content-type", "application/json".into()));
    let outgoing = Outgoing {
        method: Method::POST,
        target: opened.target,
        host: opened.host_header,
        headers,
        body: Some(Bytes::from(body.to_string())),
    };
    let (response, _connection) = match send(opened.io, outgoing, deadline).await {
        Ok(r) => r,
        Err(outcome) => {
            evidence.error = Some(format!("no answer: {outcome:?}"));
            evidence.total = Some(started.elapsed());
            return evidence;
        }
    };
    let status = response.status().as_u16();
    evidence.status = Some(status);
    let (_, mut body) = response.into_parts();
    if !(200..300).contains(&status) {
        if let Ok((bytes, _)) = read_capped(body, 64 * 1024, deadline).await {
            evidence.provider_error = ProviderError::parse(status, scrubbed(&bytes).as_bytes());
        }
        evidence.total = Some(started.elapsed());
        return evidence;
    }
    let mut pending = Vec::new();
    let mut seen = 0usize;
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("the stream broke: {e}"))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            seen += data.len();
            if seen > STREAM_CAP {
                return Err("the stream exceeded its size cap".to_owned());
            }
            evidence.chunks += 1;
            pending.extend_from_slice(&data);
            while let Some(newline) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=newline).collect();
                let says = read_line(service.kind, scrubbed(&line).trim());
                if says.token && evidence.time_to_first_token.is_none() {
                    evidence.time_to_first_token = Some(started.elapsed());
                }
                if let Some(e) = says.error {
                    return Err(e);
                }
                if says.finished {
                    evidence.finished = true;
                }
            }
        }
        if !pending.is_empty() {
            let says = read_line(service.kind, scrubbed(&pending).trim());
            evidence.finished |= says.finished;
        }
        Ok(())
    };
    match tokio::time::timeout_at(deadline, read).await {
        Err(_) => evidence.error = Some("the stream stalled past the budget".into()),
        Ok(Err(e)) => evidence.error = Some(e),
        Ok(Ok(())) if !evidence.finished => {
            evidence.error = Some("the stream closed without its finish marker".into())
        }
        Ok(Ok(())) => {}
    }
    evidence.total = Some(started.elapsed());
    evidence
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finish_markers_of_every_family_are_recognized() {
        assert!(read_line(ServiceKind::Openai, "data: [DONE]").finished);
        let chunk =
            r#"data: {"choices":[{"index":0,"delta":{"content":"OK"},"finish_reason":null}]}"#;
        let says = read_line(ServiceKind::Openai, chunk);
        assert!(says.token && !says.finished);
        let last = r#"data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#;
        assert!(read_line(ServiceKind::Openai, last).finished);
        assert!(read_line(ServiceKind::Anthropic, r#"data: {"type":"message_stop"}"#).finished);
        let err =
            r#"data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert_eq!(
            read_line(ServiceKind::Anthropic, err).error.as_deref(),
            Some("Overloaded")
        );
        // Ollama speaks its OpenAI-compatible stream here, as it does to the gateway.
        assert!(read_line(ServiceKind::Ollama, last).finished);
        assert_eq!(
            request(ServiceKind::Ollama, "http://127.0.0.1:11434", "llama3.2").0,
            "http://127.0.0.1:11434/v1/chat/completions"
        );
        assert!(read_line(ServiceKind::Gemini, r#"data: {"candidates":[{"content":{"parts":[{"text":"OK"}]},"finishReason":"MAX_TOKENS"}]}"#).finished);
        assert_eq!(
            read_line(ServiceKind::Openai, "data: {not json"),
            LineSays::default()
        );
    }
}
