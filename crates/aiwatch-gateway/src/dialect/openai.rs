//! The OpenAI-compatible dialect: requests relayed as the client sent them (model replaced),
//! answers checked and passed on byte for byte, errors passed on when they are OpenAI's.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::{Map, Value};

use super::{reach, Target};
use crate::body::RequestBody;
use crate::dialect::Endpoint;
use crate::error::ApiError;
use crate::pool::Outgoing;
use crate::usage::Tokens;

/// A whole (not streamed) answer may be at most this large.
pub const ANSWER_CAP: usize = 32 * 1024 * 1024;

/// An upstream that speaks OpenAI's API: OpenAI itself, Gemini's `/openai` base, Ollama's
/// `/v1`, LM Studio and the like.
#[derive(Debug)]
pub struct OpenAiCompatible {
    /// The upstream's own model id as a JSON string, which replaces the client's alias.
    model_json: String,
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
            model_json: Value::String(model.to_owned()).to_string(),
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
    ) -> Result<Outgoing<'_>, String> {
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
        Ok(target.post(body.with_model(&self.model_json, &extra), stream))
    }
}

/// Checks an OpenAI-shaped answer is the API's JSON and reads its usage, without building a
/// tree of it: the body goes to the client byte for byte.
pub fn peek_answer(endpoint: Endpoint, bytes: &Bytes) -> Result<(Bytes, Option<Tokens>), String> {
    use serde::de::IgnoredAny;
    #[derive(serde::Deserialize)]
    struct Peek {
        #[serde(default)]
        choices: Option<IgnoredAny>,
        #[serde(default)]
        data: Option<IgnoredAny>,
        #[serde(default)]
        output: Option<IgnoredAny>,
        #[serde(default)]
        usage: UsagePeek,
    }
    // UTF-8 checked once for the whole answer (fast on ASCII), so serde_json reads it as text
    // and does not check each key again: a tenth of the peek's cost.
    let text = std::str::from_utf8(bytes)
        .map_err(|e| format!("the answer is not the API's JSON (not UTF-8: {e})"))?;
    let peek: Peek = serde_json::from_str(text)
        .map_err(|e| format!("the answer is not the API's JSON ({e})"))?;
    let (present, expected) = match endpoint {
        Endpoint::ChatCompletions => (peek.choices.is_some(), "choices"),
        Endpoint::Embeddings => (peek.data.is_some(), "data"),
        Endpoint::Responses => (peek.output.is_some(), "output"),
    };
    if !present {
        return Err(format!("the answer has no `{expected}`"));
    }
    let UsagePeek { prompt, completion } = peek.usage;
    let tokens = (prompt.is_some() || completion.is_some()).then(|| Tokens {
        prompt: prompt.unwrap_or(0),
        completion: completion.unwrap_or(0),
    });
    Ok((bytes.clone(), tokens))
}

/// The two counts of a `usage` object, read in one pass without buffering it: `prompt_tokens`
/// (`input_tokens` in the Responses API) and `completion_tokens` (`output_tokens`). Lenient on
/// purpose: a count of another type, or a `usage` that is not an object, counts as absent.
#[derive(Debug, Default, PartialEq)]
struct UsagePeek {
    prompt: Option<u64>,
    completion: Option<u64>,
}

impl<'de> serde::Deserialize<'de> for UsagePeek {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UsageVisitor)
    }
}

struct UsageVisitor;

impl<'de> serde::de::Visitor<'de> for UsageVisitor {
    type Value = UsagePeek;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a usage object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<UsagePeek, A::Error> {
        let mut usage = UsagePeek::default();
        while let Some(field) = map.next_key::<UsageField>()? {
            match field {
                UsageField::Prompt => usage.prompt = map.next_value::<Count>()?.0,
                UsageField::Completion => usage.completion = map.next_value::<Count>()?.0,
                UsageField::Other => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(usage)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<UsagePeek, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(UsagePeek::default())
    }

    fn visit_unit<E>(self) -> Result<UsagePeek, E> {
        Ok(UsagePeek::default())
    }

    fn visit_bool<E>(self, _: bool) -> Result<UsagePeek, E> {
        Ok(UsagePeek::default())
    }

    fn visit_i64<E>(self, _: i64) -> Result<UsagePeek, E> {
        Ok(UsagePeek::default())
    }

    fn visit_u64<E>(self, _: u64) -> Result<UsagePeek, E> {
        Ok(UsagePeek::default())
    }

    fn visit_f64<E>(self, _: f64) -> Result<UsagePeek, E> {
        Ok(UsagePeek::default())
    }

    fn visit_str<E>(self, _: &str) -> Result<UsagePeek, E> {
        Ok(UsagePeek::default())
    }
}

/// Which `usage` field a key names.
enum UsageField {
    Prompt,
    Completion,
    Other,
}

impl<'de> serde::Deserialize<'de> for UsageField {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FieldVisitor;
        impl serde::de::Visitor<'_> for FieldVisitor {
            type Value = UsageField;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a field name")
            }

            fn visit_str<E>(self, name: &str) -> Result<UsageField, E> {
                Ok(match name {
                    "prompt_tokens" | "input_tokens" => UsageField::Prompt,
                    "completion_tokens" | "output_tokens" => UsageField::Completion,
                    _ => UsageField::Other,
                })
            }
        }
        d.deserialize_identifier(FieldVisitor)
    }
}

/// A token count: a non-negative number of any form, or nothing for anything else.
struct Count(Option<u64>);

impl<'de> serde::Deserialize<'de> for Count {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct CountVisitor;
        impl<'de> serde::de::Visitor<'de> for CountVisitor {
            type Value = Count;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a token count")
            }

            fn visit_u64<E>(self, n: u64) -> Result<Count, E> {
                Ok(Count(Some(n)))
            }

            fn visit_i64<E>(self, n: i64) -> Result<Count, E> {
                Ok(Count(Some(n.max(0).unsigned_abs())))
            }

            fn visit_f64<E>(self, n: f64) -> Result<Count, E> {
                Ok(Count(n.is_finite().then(|| n.max(0.0) as u64)))
            }

            fn visit_unit<E>(self) -> Result<Count, E> {
                Ok(Count(None))
            }

            fn visit_bool<E>(self, _: bool) -> Result<Count, E> {
                Ok(Count(None))
            }

            fn visit_str<E>(self, _: &str) -> Result<Count, E> {
                Ok(Count(None))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Count, A::Error> {
                while map
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Count(None))
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Count, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Count(None))
            }
        }
        d.deserialize_any(CountVisitor)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn peek(endpoint: Endpoint, body: &str) -> Result<Option<Tokens>, String> {
        peek_answer(endpoint, &Bytes::from(body.to_owned())).map(|(_, tokens)| tokens)
    }

    fn tokens(prompt: u64, completion: u64) -> Option<Tokens> {
        Some(Tokens { prompt, completion })
    }

    #[test]
    fn usage_is_read_in_both_apis_spellings_past_nested_details() {
        let chat = r#"{"choices":[],"usage":{"prompt_tokens_details":{"cached_tokens":3},"prompt_tokens":24,"completion_tokens":7,"completion_tokens_details":{"reasoning_tokens":0}}}"#;
        assert_eq!(peek(Endpoint::ChatCompletions, chat), Ok(tokens(24, 7)));
        let responses =
            r#"{"output":[],"usage":{"input_tokens":11,"output_tokens":5,"total_tokens":16}}"#;
        assert_eq!(peek(Endpoint::Responses, responses), Ok(tokens(11, 5)));
        let embeddings =
            r#"{"data":[{"embedding":[0.1]}],"usage":{"prompt_tokens":4,"total_tokens":4}}"#;
        assert_eq!(peek(Endpoint::Embeddings, embeddings), Ok(tokens(4, 0)));
    }

    #[test]
    fn odd_usage_shapes_count_as_absent_and_never_refuse_the_answer() {
        for usage in [
            "null",
            "[1,2]",
            "\"lots\"",
            "7",
            r#"{"prompt_tokens":"12","completion_tokens":{"n":1}}"#,
            r#"{}"#,
        ] {
            let body = format!(r#"{{"choices":[{{"index":0}}],"usage":{usage}}}"#);
            assert_eq!(peek(Endpoint::ChatCompletions, &body), Ok(None), "{usage}");
        }
        let floats = r#"{"choices":[],"usage":{"prompt_tokens":12.0,"completion_tokens":-3}}"#;
        assert_eq!(peek(Endpoint::ChatCompletions, floats), Ok(tokens(12, 0)));
    }

    #[test]
    fn an_answer_with_bytes_that_are_not_utf8_is_refused_wherever_they_are() {
        let mut body = br#"{"choices":[{"message":{"content":"caf"#.to_vec();
        body.push(0xe9);
        body.extend_from_slice(br#""}}],"usage":{"prompt_tokens":1}}"#);
        let err = peek_answer(Endpoint::ChatCompletions, &Bytes::from(body)).expect_err("latin-1");
        assert!(err.contains("not UTF-8"), "{err}");
    }

    #[test]
    fn an_answer_without_its_endpoints_field_or_not_json_is_refused() {
        assert!(peek(Endpoint::ChatCompletions, r#"{"data":[]}"#)
            .expect_err("no choices")
            .contains("choices"));
        assert!(peek(Endpoint::ChatCompletions, "<html>")
            .expect_err("not JSON")
            .contains("not the API's JSON"));
        assert!(peek(
            Endpoint::Responses,
            r#"{"choices":[],"usage":{"prompt_tokens":1"#
        )
        .is_err());
    }
}
