//! The Anthropic Messages dialect: the upstream adapter that says an OpenAI chat request as
//! a Messages request and reads the answers back; the translations themselves (pure: no I/O and
//! no clock) live in one submodule each.

pub mod error;
pub mod request;
pub mod response;
pub mod stream;

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::Value;

use super::{reach, Target};
use crate::body::RequestBody;
use crate::dialect::Endpoint;
use crate::pool::Outgoing;
use crate::usage::Tokens;

pub use error::error_to_openai;
pub use request::{to_messages_request, DEFAULT_MAX_TOKENS};
pub use response::from_messages_response;
pub use stream::{StreamError, StreamTranslator};

/// A whole answer that is translated may be at most this large: it becomes a JSON tree (about
/// ten times its size).
pub const TRANSLATED_ANSWER_CAP: usize = 8 * 1024 * 1024;

/// An upstream that speaks Anthropic's Messages API.
#[derive(Debug)]
pub struct AnthropicMessages {
    /// The upstream's own model id, which replaces the client's alias.
    model: String,
    /// `/messages`, where chat completions go.
    messages: Result<Target, String>,
    /// Why the Responses API is refused.
    no_responses: String,
}

impl AnthropicMessages {
    /// The adapter for `model` under the API `base` (no trailing slash), with the headers every
    /// request carries.
    pub(super) fn new(
        base: &str,
        model: &str,
        headers: &Result<Arc<HeaderMap>, String>,
        no_responses: String,
    ) -> Self {
        Self {
            model: model.to_owned(),
            messages: Target::new(format!("{base}/messages"), headers),
            no_responses,
        }
    }

    /// The endpoint's URL and fixed headers, or why it is not served.
    pub fn target(&self, endpoint: Endpoint) -> Result<&Target, String> {
        match endpoint {
            Endpoint::ChatCompletions => reach(&self.messages),
            Endpoint::Responses => Err(self.no_responses.clone()),
            Endpoint::Embeddings => {
                Err("embeddings are not served by Anthropic's Messages API".to_owned())
            }
        }
    }

    pub(super) fn request(
        &self,
        endpoint: Endpoint,
        body: &RequestBody,
        stream: bool,
    ) -> Result<Outgoing<'_>, String> {
        let target = self.target(endpoint)?;
        let translated =
            to_messages_request(&body.to_value(), &self.model).map_err(|e| e.to_string())?;
        Ok(target.post(translated.to_string().into_bytes(), stream))
    }
}

/// A 2xx Messages answer as an OpenAI `chat.completion`, and its usage.
pub(super) fn answer(bytes: &Bytes, now_unix: i64) -> Result<(Bytes, Option<Tokens>), String> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("the answer is not JSON ({e})"))?;
    let translated = from_messages_response(&value, now_unix).map_err(|e| e.to_string())?;
    let tokens = translated.get("usage").and_then(Tokens::from_usage);
    Ok((Bytes::from(translated.to_string()), tokens))
}

/// A refused request's Anthropic error as the status and OpenAI error the client gets.
pub(super) fn client_error(status: StatusCode, bytes: &[u8]) -> (StatusCode, Value) {
    let (code, body) = error_to_openai(status.as_u16(), bytes);
    (StatusCode::from_u16(code).unwrap_or(status), body)
}

/// Why a request or response could not be translated.
///
/// The `Display` text is meant to be shown to API clients as the message of an OpenAI
/// `invalid_request_error` (for `Unsupported` and `InvalidRequest`) or of a 502 (for `InvalidResponse`).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TranslateError {
    /// The request uses an OpenAI feature that Anthropic's Messages API cannot express.
    #[error("{0} is not supported when the upstream is Anthropic")]
    Unsupported(String),
    /// The request is malformed.
    #[error("{0}")]
    InvalidRequest(String),
    /// The upstream answered 200 with a body that is not an Anthropic Messages response.
    #[error("the Anthropic upstream returned an unreadable response: {0}")]
    InvalidResponse(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    #[rustfmt::skip]
    const KEYS: &[&str] = &[
        "messages", "role", "content", "type", "text", "image_url", "url", "tool_calls", "id",
        "function", "name", "arguments", "tool_call_id", "tools", "tool_choice", "parameters",
        "description", "stop", "n", "max_tokens", "max_completion_tokens", "temperature", "top_p",
        "stream", "user", "parallel_tool_calls", "message", "index", "content_block", "delta",
        "partial_json", "stop_reason", "usage", "input_tokens", "output_tokens",
        "cache_read_input_tokens", "cache_creation_input_tokens", "error", "input", "model",
        "refusal", "function_call",
    ];

    #[rustfmt::skip]
    const WORDS: &[&str] = &[
        "user", "assistant", "system", "developer", "tool", "function", "text", "image_url",
        "image", "tool_use", "tool_result", "thinking", "refusal", "input_audio", "file",
        "data:image/png;base64,AAAA", "data:image/png,AAAA", "https://x.test/a.png", "end_turn",
        "max_tokens", "stop_sequence", "text_delta", "input_json_delta", "auto", "required", "none",
        "{\"a\":1}", "{", "", " ", "overloaded_error", "error",
    ];

    fn arb_json() -> impl Strategy<Value = Value> {
        let string = prop_oneof![
            prop::sample::select(WORDS).prop_map(str::to_owned),
            ".{0,12}",
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (0u64..8).prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            string.prop_map(Value::String),
        ];
        let key = prop_oneof![
            3 => prop::sample::select(KEYS).prop_map(str::to_owned),
            1 => "[a-z_]{1,8}",
        ];
        leaf.prop_recursive(5, 96, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map(key.clone(), inner, 0..6)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    #[rustfmt::skip]
    const EVENTS: &[&str] = &[
        "message_start", "content_block_start", "content_block_delta", "content_block_stop",
        "message_delta", "message_stop", "ping", "error", "", "mystery",
    ];

    proptest! {
        // 512 by default; `PROPTEST_CASES` (as `cargo xtask fuzz` sets it) asks for more.
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512)
        ))]

        #[test]
        fn arbitrary_json_never_panics_any_function(
            value in arb_json(),
            status in any::<u16>(),
            bytes in prop::collection::vec(any::<u8>(), 0..256),
            events in prop::collection::vec((prop::sample::select(EVENTS), arb_json()), 0..12),
        ) {
            let _ = to_messages_request(&value, "m");
            let _ = to_messages_request(&json!({ "messages": [value.clone()] }), "m");
            let _ = from_messages_response(&value, 0);

            for body in [value.to_string().into_bytes(), bytes] {
                let (out_status, error) = error_to_openai(status, &body);
                prop_assert!((400..=599).contains(&out_status));
                prop_assert!(error["error"]["message"].is_string());
                prop_assert!(error["error"]["type"].is_string());
            }

            let mut translator = StreamTranslator::new(0);
            for (event, data) in &events {
                if let Ok(chunks) = translator.on_event(event, data) {
                    for chunk in chunks {
                        prop_assert_eq!(&chunk["object"], "chat.completion.chunk");
                    }
                }
            }
            let _ = translator.usage_chunk();
            let _ = translator.usage();
            let _ = translator.finished();
        }
    }
}
