//! Reads an Anthropic Messages answer into an OpenAI `chat.completion`: content, tool calls,
//! the emulated JSON answer, finish reasons and token usage.

use serde_json::{json, Map, Value};

use super::request::JSON_ANSWER_TOOL;
use super::TranslateError;

fn bad_response(message: impl Into<String>) -> TranslateError {
    TranslateError::InvalidResponse(message.into())
}

/// Token counts reported by Anthropic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Usage {
    input: u64,
    cache_creation: u64,
    cache_read: u64,
    pub(super) output: u64,
}

impl Usage {
    /// Overwrites every count that `usage` reports; Anthropic's counts are cumulative.
    pub(super) fn update(&mut self, usage: Option<&Value>) {
        let Some(usage) = usage else { return };
        let read = |field: &str| usage.get(field).and_then(Value::as_u64);
        if let Some(n) = read("input_tokens") {
            self.input = n;
        }
        if let Some(n) = read("cache_creation_input_tokens") {
            self.cache_creation = n;
        }
        if let Some(n) = read("cache_read_input_tokens") {
            self.cache_read = n;
        }
        if let Some(n) = read("output_tokens") {
            self.output = n;
        }
    }

    /// OpenAI's prompt tokens include cached ones, while Anthropic's `input_tokens` excludes them.
    pub(super) fn prompt_tokens(&self) -> u64 {
        self.input
            .saturating_add(self.cache_creation)
            .saturating_add(self.cache_read)
    }

    pub(super) fn to_openai(self) -> Value {
        let prompt = self.prompt_tokens();
        json!({
            "prompt_tokens": prompt,
            "completion_tokens": self.output,
            "total_tokens": prompt.saturating_add(self.output),
            "prompt_tokens_details": { "cached_tokens": self.cache_read },
        })
    }
}

/// Maps an Anthropic `stop_reason` to an OpenAI `finish_reason`.
pub(super) fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        // This covers end_turn, stop_sequence, pause_turn and any reason added later.
        _ => "stop",
    }
}

fn str_field<'a>(object: &'a Map<String, Value>, field: &str) -> &'a str {
    object.get(field).and_then(Value::as_str).unwrap_or("")
}

/// Anthropic Messages response (200 body) -> OpenAI `chat.completion` object, with `usage` {prompt_tokens, completion_tokens, total_tokens}. `created` is unix seconds supplied by the caller (the module never reads the clock).
pub fn from_messages_response(anthropic: &Value, created: i64) -> Result<Value, TranslateError> {
    let resp = anthropic
        .as_object()
        .ok_or_else(|| bad_response("the body is not a JSON object"))?;
    if resp.get("type").and_then(Value::as_str) == Some("error") {
        let message = resp
            .get("error")
            .and_then(|e| e.get("message"))
            .and_then(Value::as_str)
            .unwrap_or("no message");
        return Err(bad_response(format!(
            "the body is an error object: {message}"
        )));
    }
    let content = resp
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| bad_response("`content` is missing or not an array"))?;

    let mut text = String::new();
    let mut saw_text = false;
    let mut json_answer = false;
    let mut tool_calls = Vec::new();
    for block in content {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                if let Some(t) = block.get("text").and_then(Value::as_str) {
                    text.push_str(t);
                    saw_text = true;
                }
            }
            // The emulated JSON answer: the tool's input is the message's content.
            Some("tool_use")
                if block.get("name").and_then(Value::as_str) == Some(JSON_ANSWER_TOOL) =>
            {
                let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
                text.push_str(&input.to_string());
                saw_text = true;
                json_answer = true;
            }
            Some("tool_use") => {
                let arguments = match block.get("input") {
                    None | Some(Value::Null) => "{}".to_owned(),
                    Some(input) => input.to_string(),
                };
                tool_calls.push(json!({
                    "id": block.get("id").and_then(Value::as_str).unwrap_or(""),
                    "type": "function",
                    "function": {
                        "name": block.get("name").and_then(Value::as_str).unwrap_or(""),
                        "arguments": arguments,
                    },
                }));
            }
            // Thinking and server-tool blocks have no OpenAI equivalent and are dropped.
            _ => {}
        }
    }

    let mut message = Map::new();
    message.insert("role".into(), Value::from("assistant"));
    let content = if saw_text {
        Value::String(text)
    } else if tool_calls.is_empty() {
        // A reply with neither text nor tool calls still gets a string, which every client accepts.
        Value::String(String::new())
    } else {
        Value::Null
    };
    message.insert("content".into(), content);
    if !tool_calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(tool_calls));
    }

    let stop_reason = resp
        .get("stop_reason")
        .and_then(Value::as_str)
        .unwrap_or("end_turn");
    // A forced JSON answer ends as a tool call at Anthropic, and as a finished answer here.
    let finish = if json_answer && stop_reason == "tool_use" {
        "stop"
    } else {
        finish_reason(stop_reason)
    };
    let mut usage = Usage::default();
    usage.update(resp.get("usage"));

    Ok(json!({
        "id": str_field(resp, "id"),
        "object": "chat.completion",
        "created": created,
        "model": str_field(resp, "model"),
        "choices": [{
            "index": 0,
            "message": Value::Object(message),
            "logprobs": null,
            "finish_reason": finish,
        }],
        "usage": usage.to_openai(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_with_text_and_tool_use_becomes_a_chat_completion() {
        let anthropic = json!({
            "id": "msg_01",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [
                { "type": "text", "text": "Let me check." },
                { "type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": { "city": "Paris" } },
            ],
            "stop_reason": "tool_use",
            "stop_sequence": null,
            "usage": { "input_tokens": 12, "output_tokens": 30 },
        });
        assert_eq!(
            from_messages_response(&anthropic, 1_700_000_000),
            Ok(json!({
                "id": "msg_01",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": "claude-sonnet-4-5-20250929",
                "choices": [{
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "Let me check.",
                        "tool_calls": [{
                            "id": "toolu_01",
                            "type": "function",
                            "function": { "name": "get_weather", "arguments": "{\"city\":\"Paris\"}" },
                        }],
                    },
                    "logprobs": null,
                    "finish_reason": "tool_calls",
                }],
                "usage": {
                    "prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42,
                    "prompt_tokens_details": { "cached_tokens": 0 },
                },
            }))
        );
    }

    #[test]
    fn response_with_only_tool_use_has_null_content() {
        let out = from_messages_response(
            &json!({
                "id": "m", "model": "c", "stop_reason": "tool_use",
                "content": [{ "type": "tool_use", "id": "t", "name": "f", "input": {} }],
            }),
            0,
        );
        let out = out.unwrap_or_default();
        assert_eq!(out["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(
            out["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{}"
        );
    }

    #[test]
    fn response_text_blocks_are_joined_and_thinking_is_dropped() {
        let out = from_messages_response(
            &json!({
                "id": "m", "model": "c", "stop_reason": "end_turn",
                "content": [
                    { "type": "thinking", "thinking": "hmm", "signature": "s" },
                    { "type": "text", "text": "Hello, " },
                    { "type": "text", "text": "world." },
                ],
            }),
            0,
        )
        .unwrap_or_default();
        assert_eq!(
            out["choices"][0]["message"],
            json!({ "role": "assistant", "content": "Hello, world." })
        );
    }

    #[test]
    fn stop_reasons_map_to_finish_reasons() {
        let cases = [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("tool_use", "tool_calls"),
            ("refusal", "content_filter"),
            ("pause_turn", "stop"),
            ("something_new", "stop"),
        ];
        for (stop_reason, finish) in cases {
            let out =
                from_messages_response(&json!({ "content": [], "stop_reason": stop_reason }), 0)
                    .unwrap_or_default();
            assert_eq!(out["choices"][0]["finish_reason"], finish, "{stop_reason}");
        }
    }

    #[test]
    fn response_usage_counts_cached_input_as_prompt_tokens() {
        let out = from_messages_response(
            &json!({
                "content": [{ "type": "text", "text": "x" }],
                "stop_reason": "end_turn",
                "usage": {
                    "input_tokens": 10, "output_tokens": 5,
                    "cache_creation_input_tokens": 100, "cache_read_input_tokens": 1000,
                },
            }),
            0,
        )
        .unwrap_or_default();
        assert_eq!(
            out["usage"],
            json!({
                "prompt_tokens": 1110, "completion_tokens": 5, "total_tokens": 1115,
                "prompt_tokens_details": { "cached_tokens": 1000 },
            })
        );
    }

    #[test]
    fn garbage_responses_are_invalid_responses() {
        for body in [
            json!(null),
            json!("text"),
            json!({ "id": "m" }),
            json!({ "content": "not an array" }),
            json!({ "type": "error", "error": { "type": "api_error", "message": "boom" } }),
        ] {
            let result = from_messages_response(&body, 0);
            assert!(
                matches!(result, Err(TranslateError::InvalidResponse(_))),
                "{body}: {result:?}"
            );
        }
    }
}
