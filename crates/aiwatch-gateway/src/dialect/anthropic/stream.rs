//! Translates one Anthropic Messages event stream into OpenAI `chat.completion.chunk` objects,
//! with the finish reason, usage and mid-stream errors.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::error::{openai_error_body, ErrorKind};
use super::response::{finish_reason, Usage};

/// An `error` event received in the middle of an Anthropic stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error_type}: {message}")]
pub struct StreamError {
    /// Anthropic's error type, such as `overloaded_error`.
    pub error_type: String,
    /// Anthropic's human-readable message.
    pub message: String,
}

impl StreamError {
    /// Renders the error as an OpenAI error body, using the same type mapping as [`error_to_openai`](super::error_to_openai).
    pub fn to_openai(&self) -> Value {
        let kind = ErrorKind::from_anthropic_type(&self.error_type).unwrap_or(ErrorKind::Api);
        openai_error_body(kind, &self.message)
    }
}

/// Stateful translator of one Anthropic SSE stream into OpenAI `chat.completion.chunk` objects.
#[derive(Debug, Clone)]
pub struct StreamTranslator {
    created: i64,
    id: String,
    model: String,
    /// Whether the opening chunk with `role: assistant` was emitted.
    started: bool,
    /// Maps an Anthropic content block index to the OpenAI tool call index of its `tool_use` block.
    tool_blocks: BTreeMap<u64, usize>,
    next_tool_index: usize,
    /// Usage seen so far; None until an event reported any.
    usage: Option<Usage>,
    /// Whether `message_delta` or `message_stop` was seen, which makes the usage final.
    usage_final: bool,
    finish_sent: bool,
    finished: bool,
}

impl StreamTranslator {
    /// Starts a translator whose chunks carry `created` (unix seconds supplied by the caller).
    pub fn new(created: i64) -> Self {
        Self {
            created,
            id: String::new(),
            model: String::new(),
            started: false,
            tool_blocks: BTreeMap::new(),
            next_tool_index: 0,
            usage: None,
            usage_final: false,
            finish_sent: false,
            finished: false,
        }
    }

    /// Feed one SSE event (`event:` name, parsed `data:` JSON). Returns the OpenAI chunks to emit (possibly none, e.g. for ping). An `error` event returns Err(StreamError { error_type, message }) — the caller ends the client's stream with an error, for example with [`StreamError::to_openai`].
    ///
    /// An empty `event` name falls back to the data's `type` field, which Anthropic always sets to the event name.
    pub fn on_event(&mut self, event: &str, data: &Value) -> Result<Vec<Value>, StreamError> {
        let name = if event.is_empty() {
            data.get("type").and_then(Value::as_str).unwrap_or("")
        } else {
            event
        };
        // Anything after the finish marker is ignored.
        if self.finished {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        match name {
            "message_start" => self.on_message_start(data, &mut out),
            "content_block_start" => self.on_block_start(data, &mut out),
            "content_block_delta" => self.on_block_delta(data, &mut out),
            "message_delta" => self.on_message_delta(data, &mut out),
            "message_stop" => {
                self.finished = true;
                self.usage_final = true;
                if !self.finish_sent {
                    // A stream that stops without a message_delta still tells the client it is done.
                    self.send_finish("stop", &mut out);
                }
            }
            "error" => return Err(stream_error(data)),
            // This covers ping, content_block_stop and event types added later.
            _ => {}
        }
        Ok(out)
    }

    /// True once `message_stop` was seen (the finish marker). A stream that ends without it is truncated.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// The usage chunk to emit at the end when the client asked `stream_options.include_usage` (OpenAI shape: choices: [], usage: {...}); None before message_delta/message_stop.
    pub fn usage_chunk(&self) -> Option<Value> {
        if !self.usage_final {
            return None;
        }
        let usage = self.usage.unwrap_or_default();
        Some(json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage.to_openai(),
        }))
    }

    /// (prompt_tokens, completion_tokens) seen so far.
    pub fn usage(&self) -> Option<(u64, u64)> {
        self.usage.map(|u| (u.prompt_tokens(), u.output))
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "index": 0,
                "delta": delta,
                "logprobs": null,
                "finish_reason": finish_reason,
            }],
        })
    }

    /// Emits the opening role chunk once, even if the upstream skipped `message_start`.
    fn ensure_started(&mut self, out: &mut Vec<Value>) {
        if !self.started {
            self.started = true;
            out.push(self.chunk(json!({ "role": "assistant", "content": "" }), None));
        }
    }

    fn send_finish(&mut self, finish_reason: &str, out: &mut Vec<Value>) {
        self.ensure_started(out);
        self.finish_sent = true;
        out.push(self.chunk(json!({}), Some(finish_reason)));
    }

    fn update_usage(&mut self, usage: Option<&Value>) {
        if usage.is_some_and(Value::is_object) {
            self.usage.get_or_insert_with(Usage::default).update(usage);
        }
    }

    fn on_message_start(&mut self, data: &Value, out: &mut Vec<Value>) {
        if self.started {
            return;
        }
        let message = data.get("message");
        let field = |name: &str| {
            message
                .and_then(|m| m.get(name))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        self.id = field("id");
        self.model = field("model");
        self.update_usage(message.and_then(|m| m.get("usage")));
        self.ensure_started(out);
    }

    fn on_block_start(&mut self, data: &Value, out: &mut Vec<Value>) {
        let Some(block) = data.get("content_block") else {
            return;
        };
        match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                self.ensure_started(out);
                let text = block.get("text").and_then(Value::as_str).unwrap_or("");
                if !text.is_empty() {
                    out.push(self.chunk(json!({ "content": text }), None));
                }
            }
            Some("tool_use") => {
                // Without an index the block's deltas could not be routed, so it is ignored.
                let Some(index) = data.get("index").and_then(Value::as_u64) else {
                    return;
                };
                if self.tool_blocks.contains_key(&index) {
                    return;
                }
                self.ensure_started(out);
                let tool_index = self.next_tool_index;
                self.next_tool_index = self.next_tool_index.saturating_add(1);
                self.tool_blocks.insert(index, tool_index);
                let id = block.get("id").and_then(Value::as_str).unwrap_or("");
                let name = block.get("name").and_then(Value::as_str).unwrap_or("");
                out.push(self.chunk(
                    json!({ "tool_calls": [{
                        "index": tool_index,
                        "id": id,
                        "type": "function",
                        "function": { "name": name, "arguments": "" },
                    }] }),
                    None,
                ));
                // Anthropic streams the input as deltas and starts with `{}`, but a non-empty start is kept.
                if let Some(input) = block.get("input").and_then(Value::as_object) {
                    if !input.is_empty() {
                        let arguments = Value::Object(input.clone()).to_string();
                        out.push(self.arguments_chunk(tool_index, &arguments));
                    }
                }
            }
            // Thinking and server-tool blocks have no OpenAI streaming equivalent.
            _ => {}
        }
    }

    fn arguments_chunk(&self, tool_index: usize, arguments: &str) -> Value {
        self.chunk(
            json!({ "tool_calls": [{ "index": tool_index, "function": { "arguments": arguments } }] }),
            None,
        )
    }

    fn on_block_delta(&mut self, data: &Value, out: &mut Vec<Value>) {
        let Some(delta) = data.get("delta") else {
            return;
        };
        match delta.get("type").and_then(Value::as_str) {
            Some("text_delta") => {
                let text = delta.get("text").and_then(Value::as_str).unwrap_or("");
                if !text.is_empty() {
                    self.ensure_started(out);
                    out.push(self.chunk(json!({ "content": text }), None));
                }
            }
            Some("input_json_delta") => {
                let tool_index = data
                    .get("index")
                    .and_then(Value::as_u64)
                    .and_then(|index| self.tool_blocks.get(&index).copied());
                let partial = delta
                    .get("partial_json")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if let (Some(tool_index), false) = (tool_index, partial.is_empty()) {
                    out.push(self.arguments_chunk(tool_index, partial));
                }
            }
            // Thinking, signature and citation deltas have no OpenAI equivalent.
            _ => {}
        }
    }

    fn on_message_delta(&mut self, data: &Value, out: &mut Vec<Value>) {
        self.update_usage(data.get("usage"));
        self.usage_final = true;
        let stop_reason = data
            .get("delta")
            .and_then(|d| d.get("stop_reason"))
            .and_then(Value::as_str);
        if let (Some(stop_reason), false) = (stop_reason, self.finish_sent) {
            self.send_finish(finish_reason(stop_reason), out);
        }
    }
}

/// Reads an Anthropic stream `error` event, tolerating any shape.
fn stream_error(data: &Value) -> StreamError {
    let error = data.get("error");
    let field = |name: &str| {
        error
            .and_then(|e| e.get(name))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    StreamError {
        error_type: field("type").unwrap_or("api_error").to_owned(),
        message: field("message")
            .unwrap_or("the Anthropic stream reported an error")
            .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::anthropic::error::tests::openai_error;

    /// Feeds a sequence of events and collects every chunk, failing the test on a stream error.
    fn run(translator: &mut StreamTranslator, events: &[(&str, Value)]) -> Vec<Value> {
        let mut chunks = Vec::new();
        for (event, data) in events {
            match translator.on_event(event, data) {
                Ok(mut out) => chunks.append(&mut out),
                Err(err) => panic!("unexpected stream error: {err}"),
            }
        }
        chunks
    }

    fn expected_chunk(delta: Value, finish: Value) -> Value {
        json!({
            "id": "msg_01",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": "claude-sonnet-4-5-20250929",
            "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }],
        })
    }

    fn message_start() -> (&'static str, Value) {
        (
            "message_start",
            json!({ "type": "message_start", "message": {
                "id": "msg_01", "type": "message", "role": "assistant", "content": [],
                "model": "claude-sonnet-4-5-20250929", "stop_reason": null, "stop_sequence": null,
                "usage": { "input_tokens": 25, "output_tokens": 1 },
            } }),
        )
    }

    #[test]
    fn full_text_stream_produces_role_content_finish_and_usage() {
        let events = [
            message_start(),
            (
                "content_block_start",
                json!({ "type": "content_block_start", "index": 0,
                "content_block": { "type": "text", "text": "" } }),
            ),
            ("ping", json!({ "type": "ping" })),
            (
                "content_block_delta",
                json!({ "type": "content_block_delta", "index": 0,
                "delta": { "type": "text_delta", "text": "Hello" } }),
            ),
            (
                "content_block_delta",
                json!({ "type": "content_block_delta", "index": 0,
                "delta": { "type": "text_delta", "text": "!" } }),
            ),
            (
                "content_block_stop",
                json!({ "type": "content_block_stop", "index": 0 }),
            ),
            (
                "message_delta",
                json!({ "type": "message_delta",
                "delta": { "stop_reason": "end_turn", "stop_sequence": null },
                "usage": { "output_tokens": 15 } }),
            ),
            ("message_stop", json!({ "type": "message_stop" })),
        ];
        let mut translator = StreamTranslator::new(1_700_000_000);
        assert_eq!(translator.usage_chunk(), None);
        assert_eq!(translator.usage(), None);
        let chunks = run(&mut translator, &events);
        assert_eq!(
            chunks,
            vec![
                expected_chunk(json!({ "role": "assistant", "content": "" }), Value::Null),
                expected_chunk(json!({ "content": "Hello" }), Value::Null),
                expected_chunk(json!({ "content": "!" }), Value::Null),
                expected_chunk(json!({}), json!("stop")),
            ]
        );
        assert!(translator.finished());
        assert_eq!(translator.usage(), Some((25, 15)));
        assert_eq!(
            translator.usage_chunk(),
            Some(json!({
                "id": "msg_01",
                "object": "chat.completion.chunk",
                "created": 1_700_000_000,
                "model": "claude-sonnet-4-5-20250929",
                "choices": [],
                "usage": {
                    "prompt_tokens": 25, "completion_tokens": 15, "total_tokens": 40,
                    "prompt_tokens_details": { "cached_tokens": 0 },
                },
            }))
        );
    }

    #[test]
    fn usage_chunk_is_absent_until_message_delta() {
        let mut translator = StreamTranslator::new(0);
        run(&mut translator, &[message_start()]);
        assert_eq!(translator.usage(), Some((25, 1)));
        assert_eq!(translator.usage_chunk(), None);
        assert!(!translator.finished());
    }

    #[test]
    fn stream_without_message_stop_is_not_finished() {
        let mut translator = StreamTranslator::new(1_700_000_000);
        run(
            &mut translator,
            &[
                message_start(),
                (
                    "content_block_delta",
                    json!({ "index": 0,
                    "delta": { "type": "text_delta", "text": "partial" } }),
                ),
                (
                    "message_delta",
                    json!({ "delta": { "stop_reason": "max_tokens" },
                    "usage": { "output_tokens": 3 } }),
                ),
            ],
        );
        assert!(!translator.finished());
        assert!(translator.usage_chunk().is_some());
    }

    #[test]
    fn tool_use_streams_as_indexed_tool_call_deltas() {
        let events = [
            message_start(),
            (
                "content_block_start",
                json!({ "index": 0, "content_block": { "type": "text", "text": "" } }),
            ),
            (
                "content_block_delta",
                json!({ "index": 0, "delta": { "type": "text_delta", "text": "Checking." } }),
            ),
            ("content_block_stop", json!({ "index": 0 })),
            (
                "content_block_start",
                json!({ "index": 1, "content_block": {
                "type": "tool_use", "id": "toolu_A", "name": "get_weather", "input": {} } }),
            ),
            (
                "content_block_delta",
                json!({ "index": 1, "delta": { "type": "input_json_delta", "partial_json": "" } }),
            ),
            (
                "content_block_delta",
                json!({ "index": 1, "delta": { "type": "input_json_delta", "partial_json": "{\"city\":" } }),
            ),
            (
                "content_block_delta",
                json!({ "index": 1, "delta": { "type": "input_json_delta", "partial_json": "\"Paris\"}" } }),
            ),
            ("content_block_stop", json!({ "index": 1 })),
            (
                "content_block_start",
                json!({ "index": 2, "content_block": {
                "type": "tool_use", "id": "toolu_B", "name": "now", "input": {} } }),
            ),
            (
                "content_block_delta",
                json!({ "index": 2, "delta": { "type": "input_json_delta", "partial_json": "{}" } }),
            ),
            ("content_block_stop", json!({ "index": 2 })),
            (
                "message_delta",
                json!({ "delta": { "stop_reason": "tool_use" }, "usage": { "output_tokens": 40 } }),
            ),
            ("message_stop", json!({})),
        ];
        let mut translator = StreamTranslator::new(1_700_000_000);
        let chunks = run(&mut translator, &events);
        let deltas: Vec<(Value, Value)> = chunks
            .iter()
            .map(|c| {
                (
                    c["choices"][0]["delta"].clone(),
                    c["choices"][0]["finish_reason"].clone(),
                )
            })
            .collect();
        assert_eq!(
            deltas,
            vec![
                (json!({ "role": "assistant", "content": "" }), Value::Null),
                (json!({ "content": "Checking." }), Value::Null),
                (
                    json!({ "tool_calls": [{ "index": 0, "id": "toolu_A", "type": "function",
                    "function": { "name": "get_weather", "arguments": "" } }] }),
                    Value::Null
                ),
                (
                    json!({ "tool_calls": [{ "index": 0, "function": { "arguments": "{\"city\":" } }] }),
                    Value::Null
                ),
                (
                    json!({ "tool_calls": [{ "index": 0, "function": { "arguments": "\"Paris\"}" } }] }),
                    Value::Null
                ),
                (
                    json!({ "tool_calls": [{ "index": 1, "id": "toolu_B", "type": "function",
                    "function": { "name": "now", "arguments": "" } }] }),
                    Value::Null
                ),
                (
                    json!({ "tool_calls": [{ "index": 1, "function": { "arguments": "{}" } }] }),
                    Value::Null
                ),
                (json!({}), json!("tool_calls")),
            ]
        );
        assert!(translator.finished());
        assert_eq!(translator.usage(), Some((25, 40)));
    }

    #[test]
    fn error_event_mid_stream_returns_a_stream_error() {
        let mut translator = StreamTranslator::new(0);
        run(
            &mut translator,
            &[
                message_start(),
                (
                    "content_block_start",
                    json!({ "index": 0, "content_block": { "type": "text", "text": "" } }),
                ),
                (
                    "content_block_delta",
                    json!({ "index": 0, "delta": { "type": "text_delta", "text": "Hel" } }),
                ),
            ],
        );
        let err = translator.on_event(
            "error",
            &json!({ "type": "error", "error": { "type": "overloaded_error", "message": "Overloaded" } }),
        );
        let expected = StreamError {
            error_type: "overloaded_error".into(),
            message: "Overloaded".into(),
        };
        assert_eq!(err, Err(expected.clone()));
        assert!(!translator.finished());
        assert_eq!(
            expected.to_openai(),
            openai_error("Overloaded", "overloaded_error", Some("overloaded"))
        );
    }

    #[test]
    fn malformed_error_event_still_reports_an_error() {
        let mut translator = StreamTranslator::new(0);
        assert_eq!(
            translator.on_event("error", &json!("garbage")),
            Err(StreamError {
                error_type: "api_error".into(),
                message: "the Anthropic stream reported an error".into(),
            })
        );
    }

    #[test]
    fn unknown_events_and_blocks_are_ignored() {
        let mut translator = StreamTranslator::new(1_700_000_000);
        let chunks = run(
            &mut translator,
            &[
                message_start(),
                ("ping", json!({ "type": "ping" })),
                (
                    "brand_new_event",
                    json!({ "type": "brand_new_event", "anything": [1, 2] }),
                ),
                (
                    "content_block_start",
                    json!({ "index": 0, "content_block": { "type": "thinking", "thinking": "" } }),
                ),
                (
                    "content_block_delta",
                    json!({ "index": 0, "delta": { "type": "thinking_delta", "thinking": "hmm" } }),
                ),
                (
                    "content_block_delta",
                    json!({ "index": 0, "delta": { "type": "signature_delta", "signature": "s" } }),
                ),
                (
                    "content_block_delta",
                    json!({ "index": 0, "delta": { "type": "input_json_delta", "partial_json": "{}" } }),
                ),
                ("content_block_stop", json!({ "index": 0 })),
                ("content_block_delta", json!(null)),
                ("message_delta", json!([])),
            ],
        );
        assert_eq!(
            chunks,
            vec![expected_chunk(
                json!({ "role": "assistant", "content": "" }),
                Value::Null
            )]
        );
    }

    #[test]
    fn empty_event_name_falls_back_to_the_data_type() {
        let mut translator = StreamTranslator::new(1_700_000_000);
        let (_, start) = message_start();
        let chunks = run(
            &mut translator,
            &[
                ("", start),
                (
                    "",
                    json!({ "type": "content_block_delta", "index": 0,
                    "delta": { "type": "text_delta", "text": "hi" } }),
                ),
                ("", json!({ "type": "message_stop" })),
            ],
        );
        assert_eq!(chunks.len(), 3);
        assert!(translator.finished());
    }

    #[test]
    fn message_stop_without_message_delta_still_sends_a_finish() {
        let mut translator = StreamTranslator::new(1_700_000_000);
        let chunks = run(
            &mut translator,
            &[message_start(), ("message_stop", json!({}))],
        );
        assert_eq!(
            chunks.last(),
            Some(&expected_chunk(json!({}), json!("stop")))
        );
        assert!(translator.usage_chunk().is_some());
    }

    #[test]
    fn events_after_message_stop_are_ignored() {
        let mut translator = StreamTranslator::new(0);
        run(
            &mut translator,
            &[message_start(), ("message_stop", json!({}))],
        );
        let after = translator.on_event(
            "content_block_delta",
            &json!({ "index": 0, "delta": { "type": "text_delta", "text": "late" } }),
        );
        assert_eq!(after, Ok(Vec::new()));
    }

    #[test]
    fn stream_usage_includes_cache_tokens_and_later_input_updates() {
        let mut translator = StreamTranslator::new(0);
        run(
            &mut translator,
            &[
                (
                    "message_start",
                    json!({ "message": { "id": "m", "model": "c", "usage": {
                    "input_tokens": 5, "cache_read_input_tokens": 100, "output_tokens": 1 } } }),
                ),
                (
                    "message_delta",
                    json!({ "delta": { "stop_reason": "end_turn" }, "usage": {
                    "input_tokens": 6, "output_tokens": 9 } }),
                ),
            ],
        );
        assert_eq!(translator.usage(), Some((106, 9)));
    }
}
