//! Builds the Anthropic Messages request for an OpenAI chat request: messages, system text,
//! images, tools, and JSON answers asked for as the forced `aiwatch_json_answer` tool call.

use serde_json::{json, Map, Value};

use super::TranslateError;

/// The `max_tokens` sent to Anthropic when the client set none, because Anthropic requires the field.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

fn invalid(message: impl Into<String>) -> TranslateError {
    TranslateError::InvalidRequest(message.into())
}

fn unsupported(what: impl Into<String>) -> TranslateError {
    TranslateError::Unsupported(what.into())
}

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
pub(super) const JSON_ANSWER_TOOL: &str = "aiwatch_json_answer";

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::anthropic::from_messages_response;
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

    proptest! {
        // 512 by default; `PROPTEST_CASES` (as `cargo xtask fuzz` sets it) asks for more.
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512)
        ))]

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
