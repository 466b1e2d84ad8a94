//! The OpenAI-compatible dialect: requests relayed as the client sent them (model replaced),
//! answers checked and passed on byte for byte, errors passed on when they are OpenAI's.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::Full;
use serde_json::{Map, Value};

use super::{reach, Target};
use crate::body::RequestBody;
use crate::dialect::Endpoint;
use crate::error::ApiError;
use crate::usage::Tokens;

/// A whole (not streamed) answer may be at most this large.
pub const ANSWER_CAP: usize = 32 * 1024 * 1024;

/// An upstream that speaks OpenAI's API: OpenAI itself, Gemini's `/openai` base, Ollama's
/// `/v1`, LM Studio and the like.
#[derive(Debug)]
pub struct OpenAiCompatible {
    /// The upstream's own model id, which replaces the client's alias.
    model: String,
    chat: Result<Target, String>,
    embeddings: Result<Target, String>,
    /// The Responses API, relayed as it is; `Err` says why this upstream cannot take it.
    responses: Result<Target, String>,
    /// Asked for usage at the end of a chat stream (`stream_options.include_usage`).
    asks_stream_usage: bool,
}

impl OpenAiCompatible {
    /// The adapter for `model` under the OpenAI-compatible `base` (no trailing slash), with
    /// the headers every request carries. `no_responses` is why the Responses API is refused,
    /// when it is.
    pub(super) fn new(
        base: &str,
        model: &str,
        headers: &Result<Arc<HeaderMap>, String>,
        no_responses: Option<String>,
        asks_stream_usage: bool,
    ) -> Self {
        let target =
            |endpoint: Endpoint| Target::new(format!("{base}{}", endpoint.path()), headers);
        Self {
            model: model.to_owned(),
            chat: target(Endpoint::ChatCompletions),
            embeddings: target(Endpoint::Embeddings),
            responses: match no_responses {
                Some(why) => Err(why),
                None => target(Endpoint::Responses),
            },
            asks_stream_usage,
        }
    }

    /// The endpoint's URL and fixed headers, or why it is not served.
    pub fn target(&self, endpoint: Endpoint) -> Result<&Target, String> {
        reach(match endpoint {
            Endpoint::ChatCompletions => &self.chat,
            Endpoint::Embeddings => &self.embeddings,
            Endpoint::Responses => &self.responses,
        })
    }

    pub(super) fn request(
        &self,
        endpoint: Endpoint,
        body: &RequestBody,
        stream: bool,
    ) -> Result<Request<Full<Bytes>>, String> {
        let target = self.target(endpoint)?;
        // OpenAI sends usage at the end of a stream only when asked; the gateway needs it for
        // accounting and drops the extra chunk if the client did not ask.
        let mut extra = Vec::new();
        if stream && self.asks_stream_usage && endpoint == Endpoint::ChatCompletions {
            let mut options = match body.parsed::<Value>("stream_options") {
                Some(Ok(Value::Object(map))) => map,
                _ => Map::new(),
            };
            options.insert("include_usage".into(), Value::Bool(true));
            extra.push(("stream_options", Value::Object(options).to_string()));
        }
        Ok(target.post(body.with_model(&self.model, &extra), stream))
    }
}

/// Checks an OpenAI-shaped answer is the API's JSON and reads its usage, without building a
/// tree of it: the body goes to the client byte for byte.
pub fn peek_answer(endpoint: Endpoint, bytes: &Bytes) -> Result<(Bytes, Option<Tokens>), String> {
    use serde::de::IgnoredAny;
    // Lenient on purpose: any type for the fields only looked at, numbers of any form.
    #[derive(serde::Deserialize)]
    struct Usage {
        /// `input_tokens` in the Responses API.
        #[serde(default, alias = "input_tokens")]
        prompt_tokens: Option<serde_json::Number>,
        /// `output_tokens` in the Responses API.
        #[serde(default, alias = "output_tokens")]
        completion_tokens: Option<serde_json::Number>,
    }
    #[derive(serde::Deserialize)]
    struct Peek {
        #[serde(default)]
        choices: Option<IgnoredAny>,
        #[serde(default)]
        data: Option<IgnoredAny>,
        #[serde(default)]
        output: Option<IgnoredAny>,
        #[serde(default)]
        usage: Option<IgnoredOr<Usage>>,
    }
    /// A usage object, or anything else (ignored).
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum IgnoredOr<T> {
        Known(T),
        Other(IgnoredAny),
    }
    let peek: Peek = serde_json::from_slice(bytes)
        .map_err(|e| format!("the answer is not the API's JSON ({e})"))?;
    let (present, expected) = match endpoint {
        Endpoint::ChatCompletions => (peek.choices.is_some(), "choices"),
        Endpoint::Embeddings => (peek.data.is_some(), "data"),
        Endpoint::Responses => (peek.output.is_some(), "output"),
    };
    if !present {
        return Err(format!("the answer has no `{expected}`"));
    }
    let count = |n: Option<serde_json::Number>| {
        n.and_then(|n| n.as_u64().or_else(|| n.as_f64().map(|f| f.max(0.0) as u64)))
    };
    let tokens = match peek.usage {
        Some(IgnoredOr::Known(u)) => {
            let (prompt, completion) = (count(u.prompt_tokens), count(u.completion_tokens));
            (prompt.is_some() || completion.is_some()).then(|| Tokens {
                prompt: prompt.unwrap_or(0),
                completion: completion.unwrap_or(0),
            })
        }
        _ => None,
    };
    Ok((bytes.clone(), tokens))
}

/// A refused request's answer as it is when it is an OpenAI error, else an OpenAI error that
/// names the status.
pub fn client_error(status: StatusCode, bytes: &[u8]) -> (StatusCode, Value) {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) if v.get("error").is_some() => (status, v),
        _ => (
            status,
            ApiError::new(
                status,
                "invalid_request_error",
                None,
                format!("the upstream refused the request with {status}"),
            )
            .body(),
        ),
    }
}
