//! Translates between OpenAI Chat Completions and Anthropic's Messages API: requests, responses, errors, usage and the streaming event sequence.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

/// The `max_tokens` sent to Anthropic when the client set none, because Anthropic requires the field.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// The most characters of an unreadable upstream body that are quoted back to the client.
const SNIPPET_CHARS: usize = 200;

/// The most bytes of an unreadable upstream body that are examined when building a snippet.
const SNIPPET_SCAN_BYTES: usize = 64 * 1024;

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
    /// Renders the error as an OpenAI error body, using the same type mapping as [`error_to_openai`].
    pub fn to_openai(&self) -> Value {
        let kind = ErrorKind::from_anthropic_type(&self.error_type).unwrap_or(ErrorKind::Api);
        openai_error_body(kind, &self.message)
    }
}

fn invalid(message: impl Into<String>) -> TranslateError {
    TranslateError::InvalidRequest(message.into())
}

fn unsupported(what: impl Into<String>) -> TranslateError {
    TranslateError::Unsupported(what.into())
}

fn bad_response(message: impl Into<String>) -> TranslateError {
    TranslateError::InvalidResponse(message.into())
}

// ---------------------------------------------------------------------------
// Requests.
// ---------------------------------------------------------------------------

/// OpenAI chat request body (already parsed JSON object) -> Anthropic Messages request body for `model` (the upstream's model id, replaces the client's alias). `stream` is copied.
pub fn to_messages_request(openai: &Value, model: &str) -> Result<Value, TranslateError> {
    let req = openai
        .as_object()
        .ok_or_else(|| invalid("the request body must be a JSON object"))?;

    check_n(req.get("n"))?;
    // JSON answers are emulated with a forced call of one tool whose input is the answer.
    let json_answer = json_answer_schema(req)?;
    if json_answer.is_some() {
        let has_tools = req
            .get("tools")
            .and_then(Value::as_array)
            .is_some_and(|t| !t.is_empty());
        if has_tools {
            return Err(unsupported(
                "`response_format` together with `tools` (a JSON answer is emulated with a tool call)",
            ));
        }
        if req.get("stream").and_then(Value::as_bool) == Some(true) {
            return Err(unsupported(
                "a streamed `response_format` answer (emulated with a tool call, it is sent whole only)",
            ));
        }
    }
    // What Messages cannot promise is refused, so the gateway tries an upstream that can.
    if req.get("logprobs").and_then(Value::as_bool) == Some(true) {
        return Err(unsupported("`logprobs`".to_owned()));
    }
    let max_tokens = max_tokens(req)?;

    let raw_messages = match req.get("messages") {
        Some(Value::Array(messages)) => messages,
        Some(_) => return Err(invalid("`messages` must be an array")),
        None => return Err(invalid("`messages` is required")),
    };
    let (system, messages) = translate_messages(raw_messages)?;
    if messages.is_empty() {
        return Err(invalid(
            "`messages` must contain at least one non-empty user, assistant or tool message",
        ));
    }

    let mut out = Map::new();
    out.insert("model".into(), Value::from(model));
    out.insert("max_tokens".into(), Value::from(max_tokens));
    out.insert("messages".into(), Value::Array(messages));
    if let Some(system) = system {
        out.insert("system".into(), Value::String(system));
    }
    for field in ["temperature", "top_p"] {
        match req.get(field) {
            None | Some(Value::Null) => {}
            // OpenAI takes temperatures up to 2, Anthropic up to 1.
            Some(Value::Number(n)) => {
                let value = n
                    .as_f64()
                    .map_or(Value::Number(n.clone()), |v| Value::from(v.clamp(0.0, 1.0)));
                out.insert(field.into(), value);
            }
            Some(_) => return Err(invalid(format!("`{field}` must be a number"))),
        }
    }
    if let Some(stops) = stop_sequences(req.get("stop"))? {
        out.insert("stop_sequences".into(), stops);
    }
    match req.get("stream") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(stream)) => {
            out.insert("stream".into(), Value::Bool(*stream));
        }
        Some(_) => return Err(invalid("`stream` must be a boolean")),
    }
    if let Some(ToolConfig { tools, choice }) = translate_tools(req)? {
        out.insert("tools".into(), Value::Array(tools));
        if let Some(tool_choice) = choice {
            out.insert("tool_choice".into(), tool_choice);
        }
    }
    if let Some(schema) = json_answer {
        out.insert(
            "tools".into(),
            json!([{
                "name": JSON_ANSWER_TOOL,
                "description": "Give your answer as this tool's input: it is the JSON the user asked for.",
                "input_schema": schema,
            }]),
        );
        out.insert(
            "tool_choice".into(),
            json!({ "type": "tool", "name": JSON_ANSWER_TOOL }),
        );
    }
    match req.get("user") {
        None | Some(Value::Null) => {}
        Some(Value::String(user)) if user.is_empty() => {}
        Some(Value::String(user)) => {
            out.insert("metadata".into(), json!({ "user_id": user }));
        }
        Some(_) => return Err(invalid("`user` must be a string")),
    }
    Ok(Value::Object(out))
}

/// The tool a JSON answer (`response_format`) is asked for through; its input is the answer.
const JSON_ANSWER_TOOL: &str = "aiwatch_json_answer";

/// The schema a `response_format` asks the answer to follow, if it asks for JSON: any object
/// for `json_object`, the given schema for `json_schema` (its root must be an object, as a
/// tool's input is).
fn json_answer_schema(req: &Map<String, Value>) -> Result<Option<Value>, TranslateError> {
    let Some(format) = req.get("response_format") else {
        return Ok(None);
    };
    if format.is_null() {
        return Ok(None);
    }
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({ "type": "object" }))),
        Some("json_schema") => {
            let schema = format
                .get("json_schema")
                .and_then(|j| j.get("schema"))
                .cloned()
                .unwrap_or_else(|| json!({ "type": "object" }));
            let root_is_object = schema.get("type").and_then(Value::as_str) == Some("object")
                || schema.as_object().is_some_and(|o| o.is_empty());
            if !root_is_object {
                return Err(unsupported(
                    "a `json_schema` whose root is not an object (it is emulated with a tool's input)",
                ));
            }
            if schema.as_object().is_some_and(|o| o.is_empty()) {
                return Ok(Some(json!({ "type": "object" })));
            }
            Ok(Some(schema))
        }
        _ => Err(invalid(
            "`response_format.type` must be text, json_object or json_schema",
        )),
    }
}

/// Rejects `n` other than 1, because Anthropic always returns exactly one choice.
fn check_n(n: Option<&Value>) -> Result<(), TranslateError> {
    let Some(n) = n else { return Ok(()) };
    if n.is_null() {
        return Ok(());
    }
    match (n.as_u64(), n.as_f64()) {
        (Some(1), _) => Ok(()),
        (Some(count), _) if count > 1 => Err(unsupported(format!(
            "`n` = {count} (more than one choice per request)"
        ))),
        (None, Some(count)) if count > 1.0 => Err(unsupported(format!(
            "`n` = {count} (more than one choice per request)"
        ))),
        _ => Err(invalid("`n` must be a positive integer")),
    }
}

/// Picks `max_completion_tokens`, then `max_tokens`, then the default.
fn max_tokens(req: &Map<String, Value>) -> Result<u64, TranslateError> {
    for field in ["max_completion_tokens", "max_tokens"] {
        match req.get(field) {
            None | Some(Value::Null) => continue,
            Some(value) => {
                return match value.as_u64() {
                    Some(tokens) if tokens > 0 => Ok(tokens),
                    _ => Err(invalid(format!("`{field}` must be a positive integer"))),
                };
            }
        }
    }
    Ok(DEFAULT_MAX_TOKENS)
}

/// Converts OpenAI `stop` (a string or an array of strings) into Anthropic `stop_sequences`.
fn stop_sequences(stop: Option<&Value>) -> Result<Option<Value>, TranslateError> {
    let sequences: Vec<Value> = match stop {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => vec![Value::String(s.clone())],
        Some(Value::Array(items)) => {
            let mut sequences = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(s) => sequences.push(Value::String(s.clone())),
                    _ => return Err(invalid("`stop` must be a string or an array of strings")),
                }
            }
            sequences
        }
        Some(_) => return Err(invalid("`stop` must be a string or an array of strings")),
    };
    // Anthropic rejects empty stop sequences, and they can never match anyway.
    let sequences: Vec<Value> = sequences
        .into_iter()
        .filter(|s| s.as_str().is_some_and(|s| !s.is_empty()))
        .collect();
    Ok((!sequences.is_empty()).then_some(Value::Array(sequences)))
}

/// One Anthropic message under construction.
struct Turn {
    role: &'static str,
    blocks: Vec<Value>,
}

/// Splits OpenAI messages into Anthropic's top-level `system` text and alternating user/assistant messages.
fn translate_messages(raw: &[Value]) -> Result<(Option<String>, Vec<Value>), TranslateError> {
    let mut system_parts: Vec<String> = Vec::new();
    let mut turns: Vec<Turn> = Vec::new();

    for (i, message) in raw.iter().enumerate() {
        let message = message
            .as_object()
            .ok_or_else(|| invalid(format!("messages[{i}] must be an object")))?;
        let role = message
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("messages[{i}].role must be a string")))?;
        match role {
            "system" | "developer" => {
                let text = system_text(message.get("content"), i)?;
                if !text.is_empty() {
                    system_parts.push(text);
                }
            }
            "user" => push_turn(&mut turns, "user", user_blocks(message.get("content"), i)?),
            "assistant" => push_turn(&mut turns, "assistant", assistant_blocks(message, i)?),
            "tool" => push_turn(&mut turns, "user", vec![tool_result_block(message, i)?]),
            "function" => {
                return Err(unsupported(
                    "the legacy `function` message role (send `tool` messages instead)",
                ))
            }
            other => {
                return Err(invalid(format!(
                    "messages[{i}].role `{other}` is not one of system, developer, user, assistant or tool"
                )))
            }
        }
    }

    trim_final_assistant(&mut turns);

    let messages = turns.into_iter().map(render_turn).collect();
    let system = (!system_parts.is_empty()).then(|| system_parts.join("\n\n"));
    Ok((system, messages))
}

/// Appends blocks to the conversation, merging them into the previous message when it has the same role.
fn push_turn(turns: &mut Vec<Turn>, role: &'static str, blocks: Vec<Value>) {
    // Anthropic rejects empty messages, so a message without content is dropped.
    if blocks.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some(last) if last.role == role => last.blocks.extend(blocks),
        _ => turns.push(Turn { role, blocks }),
    }
}

/// Strips trailing whitespace from a final assistant message, which Anthropic rejects as a prefill.
fn trim_final_assistant(turns: &mut Vec<Turn>) {
    let Some(last) = turns.last_mut() else { return };
    if last.role != "assistant" {
        return;
    }
    if let Some(Value::Object(block)) = last.blocks.last_mut() {
        if block.get("type").and_then(Value::as_str) == Some("text") {
            if let Some(Value::String(text)) = block.get_mut("text") {
                let trimmed_len = text.trim_end().len();
                text.truncate(trimmed_len);
            }
        }
    }
    last.blocks.retain(|block| !is_empty_text_block(block));
    if last.blocks.is_empty() {
        turns.pop();
    }
}

fn is_empty_text_block(block: &Value) -> bool {
    block.get("type").and_then(Value::as_str) == Some("text")
        && block
            .get("text")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
}

/// Renders a turn as an Anthropic message, using a plain string when the content is a single text block.
fn render_turn(mut turn: Turn) -> Value {
    if turn.role == "user" {
        // Anthropic wants tool results before any other content in a user message.
        let (mut results, others): (Vec<Value>, Vec<Value>) = turn
            .blocks
            .into_iter()
            .partition(|block| block.get("type").and_then(Value::as_str) == Some("tool_result"));
        results.extend(others);
        turn.blocks = results;
    }
    let content = match turn.blocks.as_slice() {
        [single] if single.get("type").and_then(Value::as_str) == Some("text") => single
            .get("text")
            .cloned()
            .unwrap_or_else(|| Value::String(String::new())),
        _ => Value::Array(turn.blocks),
    };
    json!({ "role": turn.role, "content": content })
}

fn text_block(text: &str) -> Value {
    json!({ "type": "text", "text": text })
}

/// Flattens a system or developer message's content into text.
fn system_text(content: Option<&Value>, i: usize) -> Result<String, TranslateError> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(text)) => Ok(text.clone()),
        Some(Value::Array(parts)) => {
            let mut texts = Vec::with_capacity(parts.len());
            for part in parts {
                match part_type(part) {
                    Some("text") => texts.push(part_text(part, i)?),
                    _ => {
                        return Err(invalid(format!(
                            "messages[{i}]: system and developer content parts must be text"
                        )))
                    }
                }
            }
            Ok(texts.join("\n"))
        }
        Some(_) => Err(invalid(format!(
            "messages[{i}].content must be a string or an array of content parts"
        ))),
    }
}

fn part_type(part: &Value) -> Option<&str> {
    part.get("type").and_then(Value::as_str)
}

fn part_text(part: &Value, i: usize) -> Result<String, TranslateError> {
    part.get("text")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| {
            invalid(format!(
                "messages[{i}]: a text content part needs a string `text`"
            ))
        })
}

/// Converts a user message's content into Anthropic blocks.
fn user_blocks(content: Option<&Value>, i: usize) -> Result<Vec<Value>, TranslateError> {
    match content {
        None | Some(Value::Null) => Err(invalid(format!("messages[{i}].content is required"))),
        Some(Value::String(text)) if text.is_empty() => Ok(Vec::new()),
        Some(Value::String(text)) => Ok(vec![text_block(text)]),
        Some(Value::Array(parts)) => {
            let mut blocks = Vec::with_capacity(parts.len());
            for part in parts {
                match part_type(part) {
                    Some("text") => {
                        let text = part_text(part, i)?;
                        if !text.is_empty() {
                            blocks.push(text_block(&text));
                        }
                    }
                    Some("image_url") => blocks.push(image_block(part.get("image_url"), i)?),
                    Some("input_audio") => return Err(unsupported("audio input")),
                    Some("file") => return Err(unsupported("file content parts")),
                    Some(other) => {
                        return Err(invalid(format!(
                            "messages[{i}]: unknown content part type `{other}`"
                        )))
                    }
                    None => {
                        return Err(invalid(format!(
                            "messages[{i}]: every content part needs a string `type`"
                        )))
                    }
                }
            }
            Ok(blocks)
        }
        Some(_) => Err(invalid(format!(
            "messages[{i}].content must be a string or an array of content parts"
        ))),
    }
}

/// Converts an OpenAI `image_url` (an object with `url`, or a bare string) into an Anthropic image block.
fn image_block(image_url: Option<&Value>, i: usize) -> Result<Value, TranslateError> {
    let url = image_url
        .and_then(|v| v.as_str().or_else(|| v.get("url").and_then(Value::as_str)))
        .ok_or_else(|| {
            invalid(format!(
                "messages[{i}]: an image_url part needs a string `url`"
            ))
        })?;

    if let Some(rest) = strip_prefix_ignore_case(url, "data:") {
        let bad = || {
            invalid(format!(
                "messages[{i}]: image data URLs must look like data:<media type>;base64,<data>"
            ))
        };
        let (header, data) = rest.split_once(',').ok_or_else(bad)?;
        let mut params = header.split(';');
        let media_type = params.next().unwrap_or("").trim();
        let is_base64 = params.any(|p| p.trim().eq_ignore_ascii_case("base64"));
        if media_type.is_empty() || !is_base64 || data.is_empty() {
            return Err(bad());
        }
        return Ok(json!({
            "type": "image",
            "source": { "type": "base64", "media_type": media_type.to_ascii_lowercase(), "data": data },
        }));
    }
    if strip_prefix_ignore_case(url, "https://").is_some()
        || strip_prefix_ignore_case(url, "http://").is_some()
    {
        return Ok(json!({ "type": "image", "source": { "type": "url", "url": url } }));
    }
    Err(invalid(format!(
        "messages[{i}]: image URLs must be data: or http(s): URLs"
    )))
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

/// Converts an assistant message's content and tool calls into Anthropic text and `tool_use` blocks.
fn assistant_blocks(message: &Map<String, Value>, i: usize) -> Result<Vec<Value>, TranslateError> {
    let mut blocks = Vec::new();
    match message.get("content") {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => {
            if !text.is_empty() {
                blocks.push(text_block(text));
            }
        }
        Some(Value::Array(parts)) => {
            for part in parts {
                let text = match part_type(part) {
                    Some("text") => part_text(part, i)?,
                    Some("refusal") => part
                        .get("refusal")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    _ => {
                        return Err(invalid(format!(
                            "messages[{i}]: assistant content parts must be text or refusal"
                        )))
                    }
                };
                if !text.is_empty() {
                    blocks.push(text_block(&text));
                }
            }
        }
        Some(_) => {
            return Err(invalid(format!(
                "messages[{i}].content must be a string, an array of content parts or null"
            )))
        }
    }

    match message.get("function_call") {
        None | Some(Value::Null) => {}
        Some(_) => {
            return Err(unsupported(
                "the legacy `function_call` field (send `tool_calls` instead)",
            ))
        }
    }

    match message.get("tool_calls") {
        None | Some(Value::Null) => {}
        Some(Value::Array(calls)) => {
            for (j, call) in calls.iter().enumerate() {
                blocks.push(tool_use_block(call, i, j)?);
            }
        }
        Some(_) => {
            return Err(invalid(format!(
                "messages[{i}].tool_calls must be an array"
            )))
        }
    }
    Ok(blocks)
}

/// Converts one OpenAI tool call into an Anthropic `tool_use` block.
fn tool_use_block(call: &Value, i: usize, j: usize) -> Result<Value, TranslateError> {
    let at = || format!("messages[{i}].tool_calls[{j}]");
    match call.get("type") {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) if t == "function" => {}
        Some(Value::String(t)) => return Err(unsupported(format!("tool call type `{t}`"))),
        Some(_) => return Err(invalid(format!("{}.type must be a string", at()))),
    }
    let id = call
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{}.id must be a string", at())))?;
    let function = call
        .get("function")
        .ok_or_else(|| invalid(format!("{}.function is required", at())))?;
    let name = function
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{}.function.name must be a string", at())))?;
    let input = match function.get("arguments") {
        None | Some(Value::Null) => json!({}),
        Some(Value::String(arguments)) if arguments.trim().is_empty() => json!({}),
        Some(Value::String(arguments)) => match serde_json::from_str::<Value>(arguments) {
            Ok(parsed @ Value::Object(_)) => parsed,
            _ => {
                return Err(invalid(format!(
                    "{}.function.arguments must be a JSON object encoded as a string",
                    at()
                )))
            }
        },
        Some(parsed @ Value::Object(_)) => parsed.clone(),
        Some(_) => {
            return Err(invalid(format!(
                "{}.function.arguments must be a JSON object encoded as a string",
                at()
            )))
        }
    };
    Ok(json!({ "type": "tool_use", "id": id, "name": name, "input": input }))
}

/// Converts an OpenAI `tool` message into an Anthropic `tool_result` block.
fn tool_result_block(message: &Map<String, Value>, i: usize) -> Result<Value, TranslateError> {
    let id = message
        .get("tool_call_id")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("messages[{i}].tool_call_id must be a string")))?;
    let mut block = Map::new();
    block.insert("type".into(), Value::from("tool_result"));
    block.insert("tool_use_id".into(), Value::from(id));
    match message.get("content") {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => {
            if !text.is_empty() {
                block.insert("content".into(), Value::from(text.as_str()));
            }
        }
        Some(Value::Array(parts)) => {
            let mut blocks = Vec::with_capacity(parts.len());
            for part in parts {
                if part_type(part) != Some("text") {
                    return Err(invalid(format!(
                        "messages[{i}]: tool message content parts must be text"
                    )));
                }
                let text = part_text(part, i)?;
                if !text.is_empty() {
                    blocks.push(text_block(&text));
                }
            }
            if !blocks.is_empty() {
                block.insert("content".into(), Value::Array(blocks));
            }
        }
        Some(_) => {
            return Err(invalid(format!(
                "messages[{i}].content must be a string or an array of text parts"
            )))
        }
    }
    Ok(Value::Object(block))
}

/// The Anthropic `tools` and optional `tool_choice` of a request.
struct ToolConfig {
    tools: Vec<Value>,
    choice: Option<Value>,
}

/// Converts OpenAI `tools`, `tool_choice` and `parallel_tool_calls`; returns None when no tools should be sent.
fn translate_tools(req: &Map<String, Value>) -> Result<Option<ToolConfig>, TranslateError> {
    let raw_tools = match req.get("tools") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(tools)) => tools,
        Some(_) => return Err(invalid("`tools` must be an array")),
    };
    let mut tools = Vec::with_capacity(raw_tools.len());
    for (k, tool) in raw_tools.iter().enumerate() {
        match tool.get("type").and_then(Value::as_str) {
            Some("function") => {}
            Some(other) => return Err(unsupported(format!("tool type `{other}`"))),
            None => return Err(invalid(format!("tools[{k}].type must be a string"))),
        }
        let function = tool
            .get("function")
            .and_then(Value::as_object)
            .ok_or_else(|| invalid(format!("tools[{k}].function must be an object")))?;
        let name = function
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("tools[{k}].function.name must be a string")))?;
        let mut out = Map::new();
        out.insert("name".into(), Value::from(name));
        match function.get("description") {
            None | Some(Value::Null) => {}
            Some(Value::String(description)) => {
                out.insert("description".into(), Value::from(description.as_str()));
            }
            Some(_) => {
                return Err(invalid(format!(
                    "tools[{k}].function.description must be a string"
                )))
            }
        }
        let schema = match function.get("parameters") {
            None | Some(Value::Null) => json!({ "type": "object", "properties": {} }),
            Some(schema @ Value::Object(_)) => schema.clone(),
            Some(_) => {
                return Err(invalid(format!(
                    "tools[{k}].function.parameters must be an object"
                )))
            }
        };
        out.insert("input_schema".into(), schema);
        tools.push(Value::Object(out));
    }

    let mut choice = match req.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(Value::String(mode)) => match mode.as_str() {
            // Tools stay defined (earlier tool calls in the history need them); none is used.
            "none" => Some(json!({ "type": "none" })),
            "auto" => Some(json!({ "type": "auto" })),
            "required" => Some(json!({ "type": "any" })),
            other => {
                return Err(invalid(format!(
                    "`tool_choice` `{other}` is not one of none, auto or required"
                )))
            }
        },
        Some(Value::Object(choice)) => {
            match choice.get("type").and_then(Value::as_str) {
                Some("function") => {}
                Some(other) => return Err(unsupported(format!("`tool_choice` type `{other}`"))),
                None => return Err(invalid("`tool_choice.type` must be a string")),
            }
            let name = choice
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("`tool_choice.function.name` must be a string"))?;
            Some(json!({ "type": "tool", "name": name }))
        }
        Some(_) => return Err(invalid("`tool_choice` must be a string or an object")),
    };
    if tools.is_empty() {
        return Ok(None);
    }
    match req.get("parallel_tool_calls") {
        None | Some(Value::Null) | Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) => {
            let choice = choice.get_or_insert_with(|| json!({ "type": "auto" }));
            if let Some(choice) = choice.as_object_mut() {
                choice.insert("disable_parallel_tool_use".into(), Value::Bool(true));
            }
        }
        Some(_) => return Err(invalid("`parallel_tool_calls` must be a boolean")),
    }
    Ok(Some(ToolConfig { tools, choice }))
}

// ---------------------------------------------------------------------------
// Responses and usage.
// ---------------------------------------------------------------------------

/// Token counts reported by Anthropic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Usage {
    input: u64,
    cache_creation: u64,
    cache_read: u64,
    output: u64,
}

impl Usage {
    /// Overwrites every count that `usage` reports; Anthropic's counts are cumulative.
    fn update(&mut self, usage: Option<&Value>) {
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
    fn prompt_tokens(&self) -> u64 {
        self.input
            .saturating_add(self.cache_creation)
            .saturating_add(self.cache_read)
    }

    fn to_openai(self) -> Value {
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
fn finish_reason(stop_reason: &str) -> &'static str {
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

// ---------------------------------------------------------------------------
// Errors.
// ---------------------------------------------------------------------------

/// The error categories Anthropic distinguishes, each with an OpenAI rendering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrorKind {
    InvalidRequest,
    Authentication,
    Billing,
    Permission,
    NotFound,
    Conflict,
    TooLarge,
    RateLimit,
    Api,
    Timeout,
    Overloaded,
}

impl ErrorKind {
    fn from_anthropic_type(error_type: &str) -> Option<Self> {
        Some(match error_type {
            "invalid_request_error" => Self::InvalidRequest,
            "authentication_error" => Self::Authentication,
            "billing_error" => Self::Billing,
            "permission_error" => Self::Permission,
            "not_found_error" => Self::NotFound,
            "conflict_error" => Self::Conflict,
            "request_too_large" => Self::TooLarge,
            "rate_limit_error" => Self::RateLimit,
            "api_error" => Self::Api,
            "timeout_error" => Self::Timeout,
            "overloaded_error" => Self::Overloaded,
            _ => return None,
        })
    }

    fn from_status(status: u16) -> Self {
        match status {
            401 => Self::Authentication,
            402 => Self::Billing,
            403 => Self::Permission,
            404 => Self::NotFound,
            409 => Self::Conflict,
            413 => Self::TooLarge,
            429 => Self::RateLimit,
            504 => Self::Timeout,
            529 => Self::Overloaded,
            // This covers 400 and every other client error.
            s if (400..500).contains(&s) => Self::InvalidRequest,
            _ => Self::Api,
        }
    }

    /// The HTTP status used when the upstream's own status is not an error status.
    fn default_status(self) -> u16 {
        match self {
            Self::InvalidRequest => 400,
            Self::Authentication => 401,
            Self::Billing => 402,
            Self::Permission => 403,
            Self::NotFound => 404,
            Self::Conflict => 409,
            Self::TooLarge => 413,
            Self::RateLimit => 429,
            Self::Api => 500,
            Self::Timeout => 504,
            Self::Overloaded => 503,
        }
    }

    /// The OpenAI `type` and `code` for this kind; `message` decides whether a 404 is about a model.
    fn openai_type_and_code(self, message: &str) -> (&'static str, Option<&'static str>) {
        match self {
            Self::InvalidRequest => ("invalid_request_error", None),
            Self::Authentication => ("authentication_error", Some("invalid_api_key")),
            Self::Billing => ("insufficient_quota", Some("insufficient_quota")),
            Self::Permission => ("permission_error", None),
            Self::NotFound => {
                let about_model = message.to_ascii_lowercase().contains("model");
                ("not_found_error", about_model.then_some("model_not_found"))
            }
            Self::Conflict => ("conflict_error", None),
            Self::TooLarge => ("invalid_request_error", Some("request_too_large")),
            Self::RateLimit => ("rate_limit_error", Some("rate_limit_exceeded")),
            Self::Api => ("api_error", Some("server_error")),
            Self::Timeout => ("api_error", Some("timeout")),
            Self::Overloaded => ("overloaded_error", Some("overloaded")),
        }
    }
}

fn openai_error_body(kind: ErrorKind, message: &str) -> Value {
    let (error_type, code) = kind.openai_type_and_code(message);
    json!({
        "error": { "message": message, "type": error_type, "param": null, "code": code },
    })
}

/// An Anthropic error response (status + raw body bytes, which may be JSON `{"type":"error","error":{"type","message"}}`, HTML from Cloudflare, or garbage) -> (HTTP status to return, OpenAI error body `{"error":{"message","type","param":null,"code"}}`).
pub fn error_to_openai(status: u16, body: &[u8]) -> (u16, Value) {
    let (anthropic_type, message) = match serde_json::from_slice::<Value>(body) {
        Ok(parsed) => match anthropic_error_fields(&parsed) {
            Some((error_type, Some(message))) => (error_type, message),
            Some((error_type, None)) => {
                let label = error_type.as_deref().unwrap_or("no message");
                (
                    error_type.clone(),
                    format!("Anthropic returned HTTP {status} ({label})"),
                )
            }
            None => (
                None,
                format!(
                    "Anthropic returned HTTP {status} with an unrecognised error body: {}",
                    snippet(&parsed.to_string())
                ),
            ),
        },
        Err(_) => (None, non_json_message(status, body)),
    };
    let kind = anthropic_type
        .as_deref()
        .and_then(ErrorKind::from_anthropic_type)
        .unwrap_or_else(|| ErrorKind::from_status(status));
    let out_status = match status {
        // OpenAI SDKs do not know 529, but they retry 503.
        529 => 503,
        400..=599 => status,
        _ => kind.default_status(),
    };
    let mut body = openai_error_body(kind, &message);
    // OpenAI's code for the same failure, which SDK users already handle.
    if message.to_ascii_lowercase().contains("prompt is too long") {
        body["error"]["code"] = Value::from("context_length_exceeded");
    }
    (out_status, body)
}

/// Reads `error.type` and `error.message` from an Anthropic error body; None when the body has neither.
fn anthropic_error_fields(parsed: &Value) -> Option<(Option<String>, Option<String>)> {
    let error = parsed.get("error")?;
    if let Some(message) = error.as_str() {
        return Some((None, non_empty(message)));
    }
    let error_type = error.get("type").and_then(Value::as_str).map(str::to_owned);
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .and_then(non_empty);
    if error_type.is_none() && message.is_none() {
        return None;
    }
    Some((error_type, message))
}

fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

/// Describes a body that is not JSON without dumping HTML or binary data on the client.
fn non_json_message(status: u16, body: &[u8]) -> String {
    let head = body.get(..SNIPPET_SCAN_BYTES).unwrap_or(body);
    let text = String::from_utf8_lossy(head);
    if text.trim().is_empty() {
        return format!("Anthropic returned HTTP {status} with an empty body");
    }
    let readable = if looks_like_html(&text) {
        html_title(&text).unwrap_or_else(|| strip_tags(&text))
    } else {
        text.into_owned()
    };
    let readable = snippet(&readable);
    if readable.is_empty() {
        format!("Anthropic returned HTTP {status} with a body that was not JSON")
    } else {
        format!("Anthropic returned HTTP {status} with a body that was not JSON: {readable}")
    }
}

fn looks_like_html(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    ["<html", "<!doctype", "<head", "<body", "<title", "</"]
        .iter()
        .any(|marker| lower.contains(marker))
}

/// Returns the text of the page's `<title>`, when it has a non-empty one.
fn html_title(html: &str) -> Option<String> {
    // ASCII lowercasing keeps every byte offset, so offsets found in `lower` are valid in `html`.
    let lower = html.to_ascii_lowercase();
    let open = lower.find("<title")?;
    let start = open + lower.get(open..)?.find('>')? + 1;
    let end = start + lower.get(start..)?.find("</title")?;
    let title = strip_tags(html.get(start..end)?);
    let title = title.trim();
    (!title.is_empty()).then(|| title.to_owned())
}

/// Removes tags, scripts and styles from HTML, leaving its text.
fn strip_tags(html: &str) -> String {
    // ASCII lowercasing keeps every byte offset, so offsets found in `lower` are valid in `html`.
    let lower = html.to_ascii_lowercase();
    let mut out = String::with_capacity(html.len());
    let mut pos = 0;
    while let Some(rel) = html.get(pos..).and_then(|rest| rest.find('<')) {
        let lt = pos + rel;
        out.push_str(html.get(pos..lt).unwrap_or(""));
        out.push(' ');
        let tail = lower.get(lt..).unwrap_or("");
        let tag_end_search_from = if tail.starts_with("<script") {
            tail.find("</script").map(|e| lt + e)
        } else if tail.starts_with("<style") {
            tail.find("</style").map(|e| lt + e)
        } else {
            Some(lt)
        };
        let next = tag_end_search_from
            .and_then(|from| html.get(from..)?.find('>').map(|gt| from + gt + 1));
        match next {
            Some(next) => pos = next,
            // An unterminated tag or script hides the rest of the body.
            None => return out,
        }
    }
    out.push_str(html.get(pos..).unwrap_or(""));
    out
}

/// Collapses whitespace, drops control characters and cuts the text to `SNIPPET_CHARS` characters.
fn snippet(text: &str) -> String {
    let mut out = String::new();
    let mut count = 0;
    let mut pending_space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        if c.is_control() || c == char::REPLACEMENT_CHARACTER {
            continue;
        }
        if count >= SNIPPET_CHARS {
            out.push('…');
            return out;
        }
        if pending_space {
            out.push(' ');
            count += 1;
            pending_space = false;
        }
        out.push(c);
        count += 1;
    }
    out
}

// ---------------------------------------------------------------------------
// Streaming.
// ---------------------------------------------------------------------------

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
    use proptest::prelude::*;

    fn translate(request: Value) -> Value {
        match to_messages_request(&request, "claude-sonnet-4-5") {
            Ok(translated) => translated,
            Err(err) => panic!("translation failed: {err}"),
        }
    }

    fn translate_err(request: Value) -> TranslateError {
        match to_messages_request(&request, "claude-sonnet-4-5") {
            Ok(translated) => panic!("translation unexpectedly succeeded: {translated}"),
            Err(err) => err,
        }
    }

    fn user(text: &str) -> Value {
        json!({ "role": "user", "content": text })
    }

    // --- Requests ---------------------------------------------------------

    #[test]
    fn model_is_replaced_and_basic_fields_are_copied() {
        let out = translate(json!({
            "model": "my-alias",
            "messages": [user("hi")],
            "temperature": 0.5,
            "top_p": 0.9,
            "stream": true,
            "user": "user-42",
        }));
        assert_eq!(
            out,
            json!({
                "model": "claude-sonnet-4-5",
                "max_tokens": 4096,
                "messages": [{ "role": "user", "content": "hi" }],
                "temperature": 0.5,
                "top_p": 0.9,
                "stream": true,
                "metadata": { "user_id": "user-42" },
            })
        );
    }

    #[test]
    fn a_json_answer_is_asked_for_as_a_forced_tool_call_and_comes_back_as_content() {
        let schema = json!({"type": "object", "properties": {"city": {"type": "string"}},
                            "required": ["city"]});
        let out = translate(json!({
            "messages": [user("Where?")],
            "response_format": {"type": "json_schema",
                                "json_schema": {"name": "place", "schema": schema, "strict": true}},
        }));
        assert_eq!(out["tools"][0]["name"], JSON_ANSWER_TOOL);
        assert_eq!(out["tools"][0]["input_schema"], schema);
        assert_eq!(
            out["tool_choice"],
            json!({"type": "tool", "name": JSON_ANSWER_TOOL})
        );
        let any = translate(json!({
            "messages": [user("Where?")], "response_format": {"type": "json_object"}
        }));
        assert_eq!(any["tools"][0]["input_schema"], json!({"type": "object"}));

        let answer = from_messages_response(
            &json!({
                "id": "msg_1", "model": "c", "stop_reason": "tool_use",
                "content": [{"type": "tool_use", "id": "t", "name": JSON_ANSWER_TOOL,
                             "input": {"city": "Paris"}}],
                "usage": {"input_tokens": 10, "output_tokens": 5},
            }),
            0,
        )
        .unwrap();
        let message = &answer["choices"][0]["message"];
        let content: Value = serde_json::from_str(message["content"].as_str().unwrap()).unwrap();
        assert_eq!(content, json!({"city": "Paris"}));
        assert!(message.get("tool_calls").is_none());
        assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    }

    #[test]
    fn a_json_answer_that_cannot_be_emulated_skips_the_upstream() {
        let format = json!({"type": "json_object"});
        for request in [
            json!({"messages": [user("x")], "response_format": format, "stream": true}),
            json!({"messages": [user("x")], "response_format": format,
                   "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}),
        ] {
            assert!(matches!(
                translate_err(request),
                TranslateError::Unsupported(_)
            ));
        }
        assert!(matches!(
            translate_err(json!({"messages": [user("x")], "response_format": {"type": "yaml"}})),
            TranslateError::InvalidRequest(_)
        ));
    }

    #[test]
    fn unknown_openai_fields_are_not_forwarded() {
        let out = translate(json!({
            "messages": [user("hi")],
            "frequency_penalty": 1.0,
            "logit_bias": { "1": 2 },
            "seed": 7,
            "stream_options": { "include_usage": true },
            "n": 1,
        }));
        assert_eq!(
            out,
            json!({
                "model": "claude-sonnet-4-5",
                "max_tokens": 4096,
                "messages": [{ "role": "user", "content": "hi" }],
            })
        );
    }

    #[test]
    fn system_and_developer_messages_are_concatenated_into_top_level_system() {
        let out = translate(json!({
            "messages": [
                { "role": "system", "content": "You are terse." },
                { "role": "developer", "content": [{ "type": "text", "text": "Answer in French." }] },
                user("hi"),
                { "role": "system", "content": "Late rule." },
            ],
        }));
        assert_eq!(
            out["system"],
            "You are terse.\n\nAnswer in French.\n\nLate rule."
        );
        assert_eq!(
            out["messages"],
            json!([{ "role": "user", "content": "hi" }])
        );
    }

    #[test]
    fn no_system_field_without_system_messages() {
        let out = translate(json!({ "messages": [user("hi")] }));
        assert!(out.get("system").is_none());
    }

    #[test]
    fn consecutive_same_role_messages_are_merged_so_roles_alternate() {
        let out = translate(json!({
            "messages": [
                user("one"),
                user("two"),
                { "role": "assistant", "content": "a" },
                { "role": "assistant", "content": "b" },
                user("three"),
            ],
        }));
        assert_eq!(
            out["messages"],
            json!([
                { "role": "user", "content": [
                    { "type": "text", "text": "one" },
                    { "type": "text", "text": "two" },
                ] },
                { "role": "assistant", "content": [
                    { "type": "text", "text": "a" },
                    { "type": "text", "text": "b" },
                ] },
                { "role": "user", "content": "three" },
            ])
        );
    }

    #[test]
    fn empty_messages_are_dropped_before_merging() {
        let out = translate(json!({
            "messages": [
                user("one"),
                { "role": "assistant", "content": "" },
                user("two"),
            ],
        }));
        assert_eq!(
            out["messages"],
            json!([{ "role": "user", "content": [
                { "type": "text", "text": "one" },
                { "type": "text", "text": "two" },
            ] }])
        );
    }

    #[test]
    fn trailing_whitespace_is_trimmed_from_a_final_assistant_prefill() {
        let out = translate(json!({
            "messages": [user("hi"), { "role": "assistant", "content": "Sure: \n" }],
        }));
        assert_eq!(
            out["messages"][1],
            json!({ "role": "assistant", "content": "Sure:" })
        );

        let out = translate(json!({
            "messages": [user("hi"), { "role": "assistant", "content": "  " }],
        }));
        assert_eq!(
            out["messages"],
            json!([{ "role": "user", "content": "hi" }])
        );
    }

    #[test]
    fn assistant_tool_calls_become_tool_use_blocks() {
        let out = translate(json!({
            "messages": [
                user("weather?"),
                { "role": "assistant", "content": "Checking.", "tool_calls": [
                    { "id": "call_1", "type": "function",
                      "function": { "name": "get_weather", "arguments": "{\"city\":\"Paris\"}" } },
                    { "id": "call_2", "type": "function",
                      "function": { "name": "now", "arguments": "" } },
                ] },
            ],
        }));
        assert_eq!(
            out["messages"][1],
            json!({ "role": "assistant", "content": [
                { "type": "text", "text": "Checking." },
                { "type": "tool_use", "id": "call_1", "name": "get_weather", "input": { "city": "Paris" } },
                { "type": "tool_use", "id": "call_2", "name": "now", "input": {} },
            ] })
        );
    }

    #[test]
    fn tool_messages_become_tool_results_in_one_user_message_before_text() {
        let out = translate(json!({
            "messages": [
                user("weather?"),
                { "role": "assistant", "content": null, "tool_calls": [
                    { "id": "call_1", "type": "function", "function": { "name": "a", "arguments": "{}" } },
                    { "id": "call_2", "type": "function", "function": { "name": "b", "arguments": "{}" } },
                ] },
                { "role": "tool", "tool_call_id": "call_1", "content": "sunny" },
                { "role": "tool", "tool_call_id": "call_2",
                  "content": [{ "type": "text", "text": "20C" }] },
                user("thanks, summarise"),
            ],
        }));
        assert_eq!(
            out["messages"],
            json!([
                { "role": "user", "content": "weather?" },
                { "role": "assistant", "content": [
                    { "type": "tool_use", "id": "call_1", "name": "a", "input": {} },
                    { "type": "tool_use", "id": "call_2", "name": "b", "input": {} },
                ] },
                { "role": "user", "content": [
                    { "type": "tool_result", "tool_use_id": "call_1", "content": "sunny" },
                    { "type": "tool_result", "tool_use_id": "call_2",
                      "content": [{ "type": "text", "text": "20C" }] },
                    { "type": "text", "text": "thanks, summarise" },
                ] },
            ])
        );
    }

    #[test]
    fn tool_results_are_moved_before_text_of_an_earlier_user_message() {
        let out = translate(json!({
            "messages": [
                { "role": "assistant", "content": null, "tool_calls": [
                    { "id": "c", "type": "function", "function": { "name": "f", "arguments": "{}" } },
                ] },
                user("note"),
                { "role": "tool", "tool_call_id": "c", "content": "" },
            ],
        }));
        assert_eq!(
            out["messages"][1]["content"],
            json!([
                { "type": "tool_result", "tool_use_id": "c" },
                { "type": "text", "text": "note" },
            ])
        );
    }

    #[test]
    fn malformed_tool_call_arguments_are_rejected() {
        for arguments in [json!("{not json"), json!("[1,2]"), json!(5)] {
            let err = translate_err(json!({
                "messages": [
                    user("x"),
                    { "role": "assistant", "tool_calls": [
                        { "id": "c", "type": "function", "function": { "name": "f", "arguments": arguments } },
                    ] },
                ],
            }));
            assert!(
                matches!(&err, TranslateError::InvalidRequest(m) if m.contains("messages[1].tool_calls[0].function.arguments")),
                "{err:?}"
            );
        }
    }

    #[test]
    fn tools_are_translated_to_input_schema() {
        let out = translate(json!({
            "messages": [user("x")],
            "tools": [
                { "type": "function", "function": {
                    "name": "get_weather", "description": "Weather by city", "strict": true,
                    "parameters": { "type": "object", "properties": { "city": { "type": "string" } } },
                } },
                { "type": "function", "function": { "name": "now" } },
            ],
        }));
        assert_eq!(
            out["tools"],
            json!([
                { "name": "get_weather", "description": "Weather by city",
                  "input_schema": { "type": "object", "properties": { "city": { "type": "string" } } } },
                { "name": "now", "input_schema": { "type": "object", "properties": {} } },
            ])
        );
        assert!(out.get("tool_choice").is_none());
    }

    #[test]
    fn tool_choice_modes_are_translated() {
        let tools = json!([{ "type": "function", "function": { "name": "f" } }]);
        let cases = [
            (json!("auto"), json!({ "type": "auto" })),
            (json!("required"), json!({ "type": "any" })),
            (
                json!({ "type": "function", "function": { "name": "f" } }),
                json!({ "type": "tool", "name": "f" }),
            ),
        ];
        for (choice, expected) in cases {
            let out = translate(json!({
                "messages": [user("x")], "tools": tools, "tool_choice": choice,
            }));
            assert_eq!(out["tool_choice"], expected);
        }
    }

    #[test]
    fn tool_choice_none_keeps_tools_and_uses_none() {
        let out = translate(json!({
            "messages": [user("x")],
            "tools": [{ "type": "function", "function": { "name": "f" } }],
            "tool_choice": "none",
        }));
        assert_eq!(out["tools"][0]["name"], "f");
        assert_eq!(out["tool_choice"], json!({ "type": "none" }));
    }

    #[test]
    fn what_messages_cannot_promise_is_refused_and_temperatures_fit_its_range() {
        let list = json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "array"}}});
        assert!(matches!(
            translate_err(json!({ "messages": [user("x")], "response_format": list })),
            TranslateError::Unsupported(_)
        ));
        assert!(matches!(
            translate_err(json!({ "messages": [user("x")], "logprobs": true })),
            TranslateError::Unsupported(_)
        ));
        let out = translate(json!({ "messages": [user("x")], "temperature": 1.7 }));
        assert_eq!(out["temperature"], 1.0);
    }

    #[test]
    fn a_prompt_too_long_is_a_context_length_error() {
        let body = br#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}"#;
        let (status, out) = error_to_openai(400, body);
        assert_eq!(status, 400);
        assert_eq!(out["error"]["code"], "context_length_exceeded");
    }

    #[test]
    fn parallel_tool_calls_false_disables_parallel_tool_use() {
        let tools = json!([{ "type": "function", "function": { "name": "f" } }]);
        let out = translate(json!({
            "messages": [user("x")], "tools": tools, "parallel_tool_calls": false,
        }));
        assert_eq!(
            out["tool_choice"],
            json!({ "type": "auto", "disable_parallel_tool_use": true })
        );
        let out = translate(json!({
            "messages": [user("x")], "tools": tools, "tool_choice": "required",
            "parallel_tool_calls": false,
        }));
        assert_eq!(
            out["tool_choice"],
            json!({ "type": "any", "disable_parallel_tool_use": true })
        );
    }

    #[test]
    fn non_function_tools_are_unsupported() {
        let err = translate_err(json!({
            "messages": [user("x")],
            "tools": [{ "type": "custom", "custom": { "name": "f" } }],
        }));
        assert_eq!(
            err,
            TranslateError::Unsupported("tool type `custom`".into())
        );
    }

    #[test]
    fn data_url_images_become_base64_sources() {
        let out = translate(json!({
            "messages": [{ "role": "user", "content": [
                { "type": "text", "text": "what is this?" },
                { "type": "image_url", "image_url": { "url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high" } },
            ] }],
        }));
        assert_eq!(
            out["messages"][0]["content"],
            json!([
                { "type": "text", "text": "what is this?" },
                { "type": "image", "source": { "type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo=" } },
            ])
        );
    }

    #[test]
    fn https_images_become_url_sources() {
        let out = translate(json!({
            "messages": [{ "role": "user", "content": [
                { "type": "image_url", "image_url": { "url": "https://example.com/cat.jpg" } },
                { "type": "image_url", "image_url": "http://example.com/dog.jpg" },
            ] }],
        }));
        assert_eq!(
            out["messages"][0]["content"],
            json!([
                { "type": "image", "source": { "type": "url", "url": "https://example.com/cat.jpg" } },
                { "type": "image", "source": { "type": "url", "url": "http://example.com/dog.jpg" } },
            ])
        );
    }

    #[test]
    fn bad_image_urls_are_rejected() {
        for url in [
            "data:image/png,rawbytes",
            "data:;base64,AAAA",
            "data:image/png;base64,",
            "ftp://x/y.png",
            "cat.jpg",
        ] {
            let err = translate_err(json!({
                "messages": [{ "role": "user", "content": [
                    { "type": "image_url", "image_url": { "url": url } },
                ] }],
            }));
            assert!(
                matches!(err, TranslateError::InvalidRequest(_)),
                "{url}: {err:?}"
            );
        }
    }

    #[test]
    fn audio_and_file_parts_are_unsupported() {
        for part in [
            json!({ "type": "input_audio", "input_audio": { "data": "x", "format": "wav" } }),
            json!({ "type": "file", "file": { "file_id": "f" } }),
        ] {
            let err = translate_err(json!({ "messages": [{ "role": "user", "content": [part] }] }));
            assert!(matches!(err, TranslateError::Unsupported(_)), "{err:?}");
        }
    }

    #[test]
    fn stop_string_and_array_become_stop_sequences() {
        let out = translate(json!({ "messages": [user("x")], "stop": "END" }));
        assert_eq!(out["stop_sequences"], json!(["END"]));
        let out = translate(json!({ "messages": [user("x")], "stop": ["a", "", "b"] }));
        assert_eq!(out["stop_sequences"], json!(["a", "b"]));
        let out = translate(json!({ "messages": [user("x")], "stop": null }));
        assert!(out.get("stop_sequences").is_none());
        let err = translate_err(json!({ "messages": [user("x")], "stop": [1] }));
        assert!(matches!(err, TranslateError::InvalidRequest(_)));
    }

    #[test]
    fn n_greater_than_one_is_rejected_as_unsupported() {
        let err = translate_err(json!({ "messages": [user("x")], "n": 3 }));
        assert!(matches!(err, TranslateError::Unsupported(_)), "{err:?}");
        assert_eq!(
            err.to_string(),
            "`n` = 3 (more than one choice per request) is not supported when the upstream is Anthropic"
        );
        let err = translate_err(json!({ "messages": [user("x")], "n": 0 }));
        assert!(matches!(err, TranslateError::InvalidRequest(_)), "{err:?}");
        translate(json!({ "messages": [user("x")], "n": 1 }));
        translate(json!({ "messages": [user("x")], "n": null }));
    }

    #[test]
    fn max_tokens_defaults_to_4096() {
        let out = translate(json!({ "messages": [user("x")] }));
        assert_eq!(out["max_tokens"], 4096);
        assert_eq!(DEFAULT_MAX_TOKENS, 4096);
    }

    #[test]
    fn max_completion_tokens_takes_precedence_over_max_tokens() {
        let out = translate(json!({ "messages": [user("x")], "max_tokens": 100 }));
        assert_eq!(out["max_tokens"], 100);
        let out = translate(json!({
            "messages": [user("x")], "max_tokens": 100, "max_completion_tokens": 200,
        }));
        assert_eq!(out["max_tokens"], 200);
        for bad in [json!(0), json!(-5), json!("100"), json!(1.5)] {
            let err = translate_err(json!({ "messages": [user("x")], "max_tokens": bad }));
            assert!(matches!(err, TranslateError::InvalidRequest(_)), "{err:?}");
        }
    }

    #[test]
    fn malformed_requests_are_rejected_with_a_clear_message() {
        let cases = [
            (json!([]), "the request body must be a JSON object"),
            (json!({}), "`messages` is required"),
            (json!({ "messages": "hi" }), "`messages` must be an array"),
            (json!({ "messages": [5] }), "messages[0] must be an object"),
            (
                json!({ "messages": [{ "content": "x" }] }),
                "messages[0].role must be a string",
            ),
            (
                json!({ "messages": [{ "role": "user" }] }),
                "messages[0].content is required",
            ),
            (
                json!({ "messages": [{ "role": "system", "content": "only system" }] }),
                "`messages` must contain at least one non-empty user, assistant or tool message",
            ),
            (
                json!({ "messages": [{ "role": "tool", "content": "x" }] }),
                "messages[0].tool_call_id must be a string",
            ),
            (
                json!({ "messages": [{ "role": "robot", "content": "x" }] }),
                "messages[0].role `robot` is not one of system, developer, user, assistant or tool",
            ),
        ];
        for (request, message) in cases {
            assert_eq!(
                translate_err(request),
                TranslateError::InvalidRequest(message.into())
            );
        }
    }

    #[test]
    fn legacy_function_messages_are_unsupported() {
        let err = translate_err(json!({
            "messages": [user("x"), { "role": "function", "name": "f", "content": "1" }],
        }));
        assert!(matches!(err, TranslateError::Unsupported(_)), "{err:?}");
    }

    // --- Responses ----------------------------------------------------------

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

    // --- Errors -------------------------------------------------------------

    fn anthropic_error(error_type: &str, message: &str) -> Vec<u8> {
        json!({
            "type": "error",
            "error": { "type": error_type, "message": message },
            "request_id": "req_011",
        })
        .to_string()
        .into_bytes()
    }

    fn openai_error(message: &str, error_type: &str, code: Option<&str>) -> Value {
        json!({ "error": { "message": message, "type": error_type, "param": null, "code": code } })
    }

    /// Anthropic status, error type and message, then the expected OpenAI status, type and code.
    type ErrorCase = (
        u16,
        &'static str,
        &'static str,
        u16,
        &'static str,
        Option<&'static str>,
    );

    #[rustfmt::skip]
    const ERROR_CASES: &[ErrorCase] = &[
        (400, "invalid_request_error", "max_tokens: too big", 400, "invalid_request_error", None),
        (401, "authentication_error", "invalid x-api-key", 401, "authentication_error", Some("invalid_api_key")),
        (402, "billing_error", "credit balance too low", 402, "insufficient_quota", Some("insufficient_quota")),
        (403, "permission_error", "no access", 403, "permission_error", None),
        (404, "not_found_error", "model: claude-nope", 404, "not_found_error", Some("model_not_found")),
        (404, "not_found_error", "File not found", 404, "not_found_error", None),
        (409, "conflict_error", "conflict", 409, "conflict_error", None),
        (413, "request_too_large", "Request exceeds the maximum size", 413, "invalid_request_error", Some("request_too_large")),
        (429, "rate_limit_error", "slow down", 429, "rate_limit_error", Some("rate_limit_exceeded")),
        (500, "api_error", "Internal server error", 500, "api_error", Some("server_error")),
        (529, "overloaded_error", "Overloaded", 503, "overloaded_error", Some("overloaded")),
    ];

    #[test]
    fn each_anthropic_error_maps_to_the_openai_status_type_and_code() {
        for &(status, anthropic_type, message, out_status, openai_type, code) in ERROR_CASES {
            assert_eq!(
                error_to_openai(status, &anthropic_error(anthropic_type, message)),
                (out_status, openai_error(message, openai_type, code)),
                "{status} {anthropic_type}"
            );
        }
    }

    #[test]
    fn cloudflare_html_413_becomes_a_short_request_too_large_error() {
        let html = b"<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n<center><h1>413 Request Entity Too Large</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n";
        let (status, body) = error_to_openai(413, html);
        assert_eq!(status, 413);
        assert_eq!(
            body,
            openai_error(
                "Anthropic returned HTTP 413 with a body that was not JSON: 413 Request Entity Too Large",
                "invalid_request_error",
                Some("request_too_large"),
            )
        );
    }

    #[test]
    fn html_without_title_is_stripped_of_tags_scripts_and_styles() {
        let html = b"<!DOCTYPE html><html><head><style>body{color:red}</style><script>var x = '<b>';</script></head><body><p>Bad   gateway</p></body></html>";
        let (status, body) = error_to_openai(502, html);
        assert_eq!(status, 502);
        assert_eq!(
            body["error"]["message"],
            "Anthropic returned HTTP 502 with a body that was not JSON: Bad gateway"
        );
        assert_eq!(body["error"]["type"], "api_error");
    }

    #[test]
    fn garbage_bodies_are_described_briefly() {
        let long = "x".repeat(5000);
        let (status, body) = error_to_openai(500, long.as_bytes());
        assert_eq!(status, 500);
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("Anthropic returned HTTP 500 with a body that was not JSON: xxx")
        );
        assert!(message.ends_with('…'));
        assert!(message.chars().count() < 300, "{message}");

        let (_, body) = error_to_openai(500, &[0xff, 0xfe, 0x00, 0x01]);
        assert_eq!(
            body["error"]["message"],
            "Anthropic returned HTTP 500 with a body that was not JSON"
        );

        let (_, body) = error_to_openai(503, b"  \n");
        assert_eq!(
            body["error"]["message"],
            "Anthropic returned HTTP 503 with an empty body"
        );
    }

    #[test]
    fn json_that_is_not_an_anthropic_error_is_quoted_compactly() {
        let (status, body) = error_to_openai(429, br#"{"detail": "too many"}"#);
        assert_eq!(status, 429);
        assert_eq!(
            body,
            openai_error(
                r#"Anthropic returned HTTP 429 with an unrecognised error body: {"detail":"too many"}"#,
                "rate_limit_error",
                Some("rate_limit_exceeded"),
            )
        );
    }

    #[test]
    fn error_without_message_names_the_status_and_type() {
        let (status, body) = error_to_openai(
            529,
            br#"{"type":"error","error":{"type":"overloaded_error"}}"#,
        );
        assert_eq!(status, 503);
        assert_eq!(
            body["error"]["message"],
            "Anthropic returned HTTP 529 (overloaded_error)"
        );
    }

    #[test]
    fn unknown_statuses_fall_back_by_class() {
        assert_eq!(
            error_to_openai(418, b"teapot").1["error"]["type"],
            "invalid_request_error"
        );
        assert_eq!(error_to_openai(504, b"").1["error"]["code"], "timeout");
        let (status, body) = error_to_openai(200, &anthropic_error("api_error", "odd"));
        assert_eq!(status, 500);
        assert_eq!(body["error"]["type"], "api_error");
        assert_eq!(error_to_openai(0, b"").0, 500);
    }

    // --- Streaming ----------------------------------------------------------

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

    // --- Properties ---------------------------------------------------------

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

        #[test]
        fn translated_conversations_always_alternate_roles(
            turns in prop::collection::vec((0usize..4, "[a-z ]{0,6}"), 1..16),
        ) {
            let messages: Vec<Value> = turns
                .iter()
                .map(|(role, text)| match role {
                    0 => json!({ "role": "system", "content": text }),
                    1 => json!({ "role": "user", "content": text }),
                    2 => json!({ "role": "assistant", "content": text }),
                    _ => json!({ "role": "tool", "tool_call_id": "c", "content": text }),
                })
                .collect();
            if let Ok(out) = to_messages_request(&json!({ "messages": messages }), "m") {
                let roles: Vec<&str> = out["messages"]
                    .as_array()
                    .map(|m| m.iter().filter_map(|m| m["role"].as_str()).collect())
                    .unwrap_or_default();
                prop_assert!(!roles.is_empty());
                for pair in roles.windows(2) {
                    prop_assert_ne!(pair[0], pair[1]);
                }
            }
        }
    }
}
