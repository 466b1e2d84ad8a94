//! Turns an upstream's stream into the client's OpenAI stream, event by event, and judges it:
//! tokens, the finish marker, usage, and errors sent in the middle of a stream. Pure: the
//! socket work and the stall timer live in the proxy.

use serde_json::Value;

use crate::dialect::StreamDialect;
use crate::sse::{LineTooLong, SseEvent, SseParser};
use crate::usage::Tokens;

/// A stream line may not grow beyond this without ending.
const MAX_LINE: usize = 1024 * 1024;

/// Why a stream is not a clean, complete answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StreamFault {
    #[error("the upstream sent an error in the stream: {0}")]
    Upstream(String),
    #[error("the upstream's stream is not server-sent events: {0}")]
    Garbage(String),
    #[error("the upstream's stream ended without its finish marker")]
    Truncated,
    #[error("the upstream's stream broke off: {0}")]
    Broken(String),
}

/// What one piece of upstream stream gave.
#[derive(Debug, Default, PartialEq)]
pub struct Relayed {
    /// Bytes for the client, in order.
    pub out: String,
    /// A token (text, tool call, refusal) was in it.
    pub token: bool,
}

pub struct StreamRelay {
    parser: SseParser,
    dialect: StreamDialect,
    /// The client asked for the usage chunk (`stream_options.include_usage`).
    client_wants_usage: bool,
    saw_finish_reason: bool,
    done: bool,
    tokens: Option<Tokens>,
}

impl StreamRelay {
    pub fn new(dialect: StreamDialect, client_wants_usage: bool) -> Self {
        Self {
            parser: SseParser::new(MAX_LINE),
            dialect,
            client_wants_usage,
            saw_finish_reason: false,
            done: false,
            tokens: None,
        }
    }

    /// The answer's usage, once the upstream said it.
    pub fn tokens(&self) -> Option<Tokens> {
        self.tokens
    }

    /// The finish marker came: the answer is complete.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Relays the next bytes of the upstream body.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Relayed, StreamFault> {
        let events = self
            .parser
            .feed(bytes)
            .map_err(|LineTooLong(n)| StreamFault::Garbage(format!("a line over {n} bytes")))?;
        let mut relayed = Relayed::default();
        for event in events {
            self.event(&event, &mut relayed)?;
        }
        Ok(relayed)
    }

    /// The upstream body ended: what is left to send, or why the answer is incomplete.
    pub fn finish(&mut self) -> Result<Relayed, StreamFault> {
        let mut relayed = Relayed::default();
        if let Some(event) = self.parser.finish() {
            self.event(&event, &mut relayed)?;
        }
        if !self.done {
            // An OpenAI-compatible stream that gave its finish reason but dropped `[DONE]`
            // still said everything; the client gets the `[DONE]` it expects.
            if matches!(self.dialect, StreamDialect::OpenAi) && self.saw_finish_reason {
                self.done = true;
                relayed.out.push_str("data: [DONE]\n\n");
            } else {
                return Err(StreamFault::Truncated);
            }
        }
        Ok(relayed)
    }

    fn event(&mut self, event: &SseEvent, relayed: &mut Relayed) -> Result<(), StreamFault> {
        if self.done {
            return Ok(());
        }
        match &mut self.dialect {
            StreamDialect::OpenAi => {
                let data = event.data.trim();
                if data == "[DONE]" {
                    self.done = true;
                    relayed.out.push_str("data: [DONE]\n\n");
                    return Ok(());
                }
                if data.is_empty() {
                    return Ok(());
                }
                let chunk: Value = serde_json::from_str(data)
                    .map_err(|_| StreamFault::Garbage(format!("`{}` is not JSON", clip(data))))?;
                if let Some(error) = chunk.get("error") {
                    let message = error
                        .get("message")
                        .and_then(Value::as_str)
                        .map_or_else(|| error.to_string(), str::to_owned);
                    return Err(StreamFault::Upstream(clip(&message)));
                }
                if let Some(usage) = chunk.get("usage").filter(|u| !u.is_null()) {
                    self.tokens = Tokens::from_usage(usage).or(self.tokens);
                }
                let choices = chunk.get("choices").and_then(Value::as_array);
                let usage_only = choices.is_some_and(|c| c.is_empty());
                for choice in choices.into_iter().flatten() {
                    if choice.get("finish_reason").is_some_and(|f| !f.is_null()) {
                        self.saw_finish_reason = true;
                    }
                    if let Some(delta) = choice.get("delta") {
                        relayed.token |= has_token(delta);
                    }
                }
                if usage_only && !self.client_wants_usage {
                    return Ok(());
                }
                relayed.out.push_str(&event.to_wire());
            }
            StreamDialect::OpenAiResponses => self.responses_event(event, relayed)?,
            StreamDialect::Anthropic(translator) => {
                if event.data.trim().is_empty() {
                    return Ok(());
                }
                let data: Value = serde_json::from_str(&event.data).map_err(|_| {
                    StreamFault::Garbage(format!("`{}` is not JSON", clip(&event.data)))
                })?;
                let name = event.name.as_deref().unwrap_or("");
                let chunks = translator.on_event(name, &data).map_err(|e| {
                    StreamFault::Upstream(format!("{}: {}", e.error_type, e.message))
                })?;
                for chunk in chunks {
                    if let Some(choices) = chunk.get("choices").and_then(Value::as_array) {
                        for choice in choices {
                            if let Some(delta) = choice.get("delta") {
                                relayed.token |= has_token(delta);
                            }
                        }
                    }
                    push_data(&mut relayed.out, &chunk);
                }
                if let Some((prompt, completion)) = translator.usage() {
                    self.tokens = Some(Tokens { prompt, completion });
                }
                if translator.finished() {
                    self.done = true;
                    if self.client_wants_usage {
                        if let Some(chunk) = translator.usage_chunk() {
                            push_data(&mut relayed.out, &chunk);
                        }
                    }
                    relayed.out.push_str("data: [DONE]\n\n");
                }
            }
        }
        Ok(())
    }
}

impl StreamRelay {
    /// One Responses API event, passed through as it came (name and data). Deltas are tokens;
    /// `response.completed` and `response.incomplete` end the answer with its usage;
    /// `response.failed` and `error` are the upstream's failure.
    fn responses_event(
        &mut self,
        event: &SseEvent,
        relayed: &mut Relayed,
    ) -> Result<(), StreamFault> {
        let data = event.data.trim();
        if data.is_empty() {
            return Ok(());
        }
        let payload: Value = serde_json::from_str(data)
            .map_err(|_| StreamFault::Garbage(format!("`{}` is not JSON", clip(data))))?;
        let kind = payload
            .get("type")
            .and_then(Value::as_str)
            .or(event.name.as_deref())
            .unwrap_or("");
        match kind {
            "error" | "response.failed" => {
                let error = payload
                    .get("response")
                    .and_then(|r| r.get("error"))
                    .unwrap_or(&payload);
                let message = error
                    .get("message")
                    .and_then(Value::as_str)
                    .map_or_else(|| clip(&error.to_string()), str::to_owned);
                return Err(StreamFault::Upstream(clip(&message)));
            }
            "response.completed" | "response.incomplete" => {
                self.done = true;
                if let Some(usage) = payload.get("response").and_then(|r| r.get("usage")) {
                    let count = |field: &str| usage.get(field).and_then(Value::as_u64);
                    if let (Some(prompt), Some(completion)) =
                        (count("input_tokens"), count("output_tokens"))
                    {
                        self.tokens = Some(Tokens { prompt, completion });
                    }
                }
            }
            kind if kind.ends_with(".delta") => {
                relayed.token |= payload
                    .get("delta")
                    .is_some_and(|d| d.as_str().is_none_or(|s| !s.is_empty()) && !d.is_null());
            }
            _ => {}
        }
        relayed.out.push_str(&event.to_wire());
        Ok(())
    }
}

fn push_data(out: &mut String, chunk: &Value) {
    out.push_str("data: ");
    out.push_str(&chunk.to_string());
    out.push_str("\n\n");
}

/// Does a chunk's delta carry part of the answer? Anything but the role and empty values
/// does: text, refusals, reasoning, tool and function calls, audio.
fn has_token(delta: &Value) -> bool {
    let Some(fields) = delta.as_object() else {
        return false;
    };
    fields.iter().any(|(key, value)| {
        key != "role"
            && match value {
                Value::Null => false,
                Value::String(s) => !s.is_empty(),
                Value::Array(a) => !a.is_empty(),
                Value::Object(o) => !o.is_empty(),
                Value::Bool(_) | Value::Number(_) => false,
            }
    })
}

fn clip(text: &str) -> String {
    let mut end = text.len().min(200);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// The event that ends a client's stream when the upstream failed after bytes were sent: the
/// official SDKs raise it as an API error, so a cut-off answer never looks complete.
pub fn error_event(fault: &StreamFault) -> String {
    let code = match fault {
        StreamFault::Truncated | StreamFault::Broken(_) => "stream_truncated",
        StreamFault::Garbage(_) => "upstream_garbage",
        StreamFault::Upstream(_) => "upstream_error",
    };
    stream_error_event(code, &format!("{fault}; the answer is incomplete"))
}

/// An error event with a code and message of the gateway's own (stalls, deadlines).
pub fn stream_error_event(code: &str, message: &str) -> String {
    let body = serde_json::json!({"error": {
        "message": message,
        "type": "upstream_error",
        "param": null,
        "code": code,
    }});
    format!("data: {body}\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::anthropic::StreamTranslator;
    use serde_json::json;

    fn openai_chunk(delta: Value, finish: Value) -> String {
        let c = json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {c}\n\n")
    }

    fn responses_event(kind: &str, extra: Value) -> String {
        let mut data = json!({"type": kind, "sequence_number": 1});
        if let (Some(d), Some(e)) = (data.as_object_mut(), extra.as_object()) {
            d.extend(e.clone());
        }
        format!("event: {kind}\ndata: {data}\n\n")
    }

    #[test]
    fn a_responses_stream_passes_through_with_its_event_names_and_usage() {
        let mut relay = StreamRelay::new(StreamDialect::OpenAiResponses, false);
        let created = relay
            .feed(responses_event("response.created", json!({})).as_bytes())
            .expect("relayed");
        assert!(!created.token, "no answer yet");
        assert!(created.out.starts_with("event: response.created\ndata: {"));
        let delta = relay
            .feed(responses_event("response.output_text.delta", json!({"delta": "Hi"})).as_bytes())
            .expect("relayed");
        assert!(delta.token);
        let usage = json!({"response": {"usage": {"input_tokens": 4, "output_tokens": 2}}});
        let done = relay
            .feed(responses_event("response.completed", usage).as_bytes())
            .expect("relayed");
        assert!(done.out.contains("response.completed"));
        assert!(relay.is_done());
        assert_eq!(
            relay.tokens(),
            Some(Tokens {
                prompt: 4,
                completion: 2
            })
        );
    }

    #[test]
    fn a_responses_stream_without_its_completion_is_truncated_and_a_failure_is_the_upstreams() {
        let mut relay = StreamRelay::new(StreamDialect::OpenAiResponses, false);
        relay
            .feed(responses_event("response.output_text.delta", json!({"delta": "Hi"})).as_bytes())
            .expect("relayed");
        assert_eq!(relay.finish(), Err(StreamFault::Truncated));
        let mut relay = StreamRelay::new(StreamDialect::OpenAiResponses, false);
        let failed =
            json!({"response": {"error": {"code": "server_error", "message": "The model failed"}}});
        assert_eq!(
            relay.feed(responses_event("response.failed", failed).as_bytes()),
            Err(StreamFault::Upstream("The model failed".into()))
        );
        let mut relay = StreamRelay::new(StreamDialect::OpenAiResponses, false);
        assert!(matches!(
            relay.feed(b"event: response.created\ndata: {not json\n\n"),
            Err(StreamFault::Garbage(_))
        ));
    }

    #[test]
    fn a_complete_openai_stream_passes_through_and_is_done() {
        let mut relay = StreamRelay::new(StreamDialect::OpenAi, false);
        let first = relay
            .feed(openai_chunk(json!({"role": "assistant", "content": ""}), Value::Null).as_bytes())
            .expect("valid");
        assert!(!first.token, "the role chunk carries no token");
        let second = relay
            .feed(openai_chunk(json!({"content": "Hi"}), Value::Null).as_bytes())
            .expect("valid");
        assert!(second.token);
        relay
            .feed(openai_chunk(json!({}), json!("stop")).as_bytes())
            .expect("valid");
        let usage = json!({"id": "c1", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}});
        let hidden = relay
            .feed(format!("data: {usage}\n\n").as_bytes())
            .expect("valid");
        assert_eq!(
            hidden.out, "",
            "usage the client did not ask for is not passed on"
        );
        let done = relay.feed(b"data: [DONE]\n\n").expect("valid");
        assert_eq!(done.out, "data: [DONE]\n\n");
        assert!(relay.is_done());
        assert_eq!(relay.tokens().map(Tokens::total), Some(5));
        assert!(relay.finish().is_ok());
    }

    #[test]
    fn function_calls_and_audio_are_tokens_too() {
        assert!(has_token(
            &json!({"function_call": {"name": "get_weather", "arguments": ""}})
        ));
        assert!(has_token(&json!({"audio": {"id": "a1", "data": "UklGR"}})));
        assert!(!has_token(
            &json!({"role": "assistant", "content": "", "refusal": null})
        ));
    }

    #[test]
    fn a_stream_that_ends_early_is_truncated() {
        let mut relay = StreamRelay::new(StreamDialect::OpenAi, false);
        relay
            .feed(openai_chunk(json!({"content": "Hel"}), Value::Null).as_bytes())
            .expect("valid");
        assert_eq!(relay.finish(), Err(StreamFault::Truncated));
    }

    #[test]
    fn a_finish_reason_without_done_still_completes() {
        let mut relay = StreamRelay::new(StreamDialect::OpenAi, false);
        relay
            .feed(openai_chunk(json!({}), json!("length")).as_bytes())
            .expect("valid");
        assert_eq!(relay.finish().expect("complete").out, "data: [DONE]\n\n");
    }

    #[test]
    fn an_error_inside_a_stream_is_a_fault() {
        let mut relay = StreamRelay::new(StreamDialect::OpenAi, false);
        let fault = relay
            .feed(b"data: {\"error\":{\"message\":\"The server had an error\",\"type\":\"server_error\"}}\n\n")
            .expect_err("an error");
        assert_eq!(
            fault,
            StreamFault::Upstream("The server had an error".into())
        );
        assert!(error_event(&fault).contains("\"code\":\"upstream_error\""));
    }

    #[test]
    fn garbage_is_a_fault_not_a_panic() {
        let mut relay = StreamRelay::new(StreamDialect::OpenAi, false);
        assert!(matches!(
            relay.feed(b"data: <html>oops</html>\n\n"),
            Err(StreamFault::Garbage(_))
        ));
    }

    #[test]
    fn an_anthropic_stream_is_translated_and_ends_with_done() {
        let mut relay = StreamRelay::new(
            StreamDialect::Anthropic(Box::new(StreamTranslator::new(7))),
            true,
        );
        let frames = [
            (
                "message_start",
                json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude", "content": [], "usage": {"input_tokens": 12, "output_tokens": 1}}}),
            ),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            ("ping", json!({"type": "ping"})),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}),
            ),
            (
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ),
            (
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}}),
            ),
        ];
        let mut out = String::new();
        let mut token = false;
        for (name, data) in frames {
            let r = relay
                .feed(format!("event: {name}\ndata: {data}\n\n").as_bytes())
                .expect("valid");
            out.push_str(&r.out);
            token |= r.token;
        }
        assert!(token);
        assert!(!relay.is_done());
        let last = relay
            .feed(b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")
            .expect("valid");
        out.push_str(&last.out);
        assert!(relay.is_done());
        assert!(out.contains("\"content\":\"Hello\""));
        assert!(out.contains("\"finish_reason\":\"stop\""));
        assert!(out.contains("\"usage\""), "the client asked for usage");
        assert!(out.ends_with("data: [DONE]\n\n"));
        assert_eq!(relay.tokens().map(Tokens::total), Some(21));
    }

    #[test]
    fn an_anthropic_stream_without_message_stop_is_truncated() {
        let mut relay = StreamRelay::new(
            StreamDialect::Anthropic(Box::new(StreamTranslator::new(7))),
            false,
        );
        relay
            .feed(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"c\",\"usage\":{\"input_tokens\":1}}}\n\n")
            .expect("valid");
        assert_eq!(relay.finish(), Err(StreamFault::Truncated));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let mut relay = StreamRelay::new(StreamDialect::OpenAi, true);
            let _ = relay.feed(&bytes);
            let _ = relay.finish();
            let mut relay = StreamRelay::new(StreamDialect::Anthropic(Box::new(StreamTranslator::new(0))), true);
            let _ = relay.feed(&bytes);
            let _ = relay.finish();
        }
    }
}
