//! Reading JSON status bodies: say what was served when it is not JSON, and read fields with
//! errors that name the offending path (`incidents[0].incident_updates[2].body: …`).
//!
//! Conventions shared by the JSON parsers: a key that is missing and a key that is `null` mean
//! the same thing; a value of the wrong type is an error naming its path and what was found;
//! timestamps are the exception — an unreadable timestamp is `None`, never an error.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::time::parse_timestamp;
use crate::Error;

pub(crate) fn format_error(format: &'static str, reason: impl Into<String>) -> Error {
    Error::StatusFormat {
        format,
        reason: reason.into(),
    }
}

/// Parses a body as JSON, or explains what it is instead (empty, an HTML page, XML, truncated
/// JSON, invalid JSON).
pub(crate) fn parse_body(body: &[u8], format: &'static str) -> Result<Value, Error> {
    let body = trim_start(body);
    if body.is_empty() {
        return Err(format_error(format, "empty body, not JSON"));
    }
    if body[0] == b'<' {
        return Err(format_error(format, describe_markup(body, "JSON")));
    }
    serde_json::from_slice(body).map_err(|e| format_error(format, describe_json_error(&e)))
}

/// Skips a UTF-8 byte-order mark and leading whitespace.
pub(crate) fn trim_start(body: &[u8]) -> &[u8] {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(body.len());
    &body[start..]
}

/// Describes a body that starts with `<` for an error message: an HTML page (with its title,
/// which often says "Just a moment..." or "Access denied"), XML, or other markup.
pub(crate) fn describe_markup(body: &[u8], expected: &str) -> String {
    const SNIFF: usize = 4096;
    let head = body[..body.len().min(SNIFF)].to_ascii_lowercase();
    let is_html = head.starts_with(b"<!doctype html") || find(&head, b"<html").is_some();
    if !is_html {
        if head.starts_with(b"<?xml") || head.starts_with(b"<feed") || head.starts_with(b"<rss") {
            return format!("got XML (a feed?), not {expected}");
        }
        return format!("got markup starting with '<', not {expected}");
    }
    match html_title(body, &head) {
        Some(title) => format!("got an HTML page (title \"{title}\"), not {expected}"),
        None => format!("got an HTML page, not {expected}"),
    }
}

fn html_title(body: &[u8], head_lower: &[u8]) -> Option<String> {
    let open = find(head_lower, b"<title")?;
    let start = open + head_lower[open..].iter().position(|&b| b == b'>')? + 1;
    let len = find(&head_lower[start..], b"</title")?;
    let title = String::from_utf8_lossy(&body[start..start + len]);
    let title: String = title.split_whitespace().collect::<Vec<_>>().join(" ");
    if title.is_empty() {
        return None;
    }
    Some(title.chars().take(80).collect())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn describe_json_error(e: &serde_json::Error) -> String {
    match e.classify() {
        serde_json::error::Category::Eof => format!(
            "truncated JSON: the body ends early (line {}, column {})",
            e.line(),
            e.column()
        ),
        _ => format!("invalid JSON: {e}"),
    }
}

/// What a JSON value is, for error messages.
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A JSON object together with where it sits in the document, for located errors.
pub(crate) struct Fields<'a> {
    map: &'a Map<String, Value>,
    path: String,
    format: &'static str,
}

impl<'a> Fields<'a> {
    /// The document root, which must be an object.
    pub(crate) fn root(value: &'a Value, format: &'static str) -> Result<Self, Error> {
        match value {
            Value::Object(map) => Ok(Fields {
                map,
                path: String::new(),
                format,
            }),
            other => Err(format_error(
                format,
                format!("expected a JSON object, got {}", kind(other)),
            )),
        }
    }

    /// An element found at `path`, which must be an object.
    pub(crate) fn at(value: &'a Value, path: String, format: &'static str) -> Result<Self, Error> {
        match value {
            Value::Object(map) => Ok(Fields { map, path, format }),
            other => Err(format_error(
                format,
                format!("{path}: expected an object, got {}", kind(other)),
            )),
        }
    }

    pub(crate) fn format(&self) -> &'static str {
        self.format
    }

    /// The path of a key of this object.
    pub(crate) fn path_of(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub(crate) fn error(&self, key: &str, reason: impl std::fmt::Display) -> Error {
        format_error(self.format, format!("{}: {reason}", self.path_of(key)))
    }

    fn wrong_type(&self, key: &str, expected: &str, found: &Value) -> Error {
        self.error(
            key,
            format_args!("expected {expected}, got {}", kind(found)),
        )
    }

    /// True when the key is present, even as `null`.
    pub(crate) fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// The keys of this object (at most `limit`), for "this is not the format" messages.
    pub(crate) fn key_list(&self, limit: usize) -> String {
        if self.map.is_empty() {
            return "no keys".to_owned();
        }
        let mut keys: Vec<&str> = self.map.keys().take(limit).map(String::as_str).collect();
        if self.map.len() > limit {
            keys.push("…");
        }
        format!("keys: {}", keys.join(", "))
    }

    /// The value of a key; `None` when missing or `null`.
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        match self.map.get(key) {
            None | Some(Value::Null) => None,
            Some(value) => Some(value),
        }
    }

    pub(crate) fn opt_str(&self, key: &str) -> Result<Option<&'a str>, Error> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.wrong_type(key, "a string", other)),
        }
    }

    /// A string that is present, `None` for a missing, `null` or blank one.
    pub(crate) fn non_blank_str(&self, key: &str) -> Result<Option<&'a str>, Error> {
        Ok(self.opt_str(key)?.map(str::trim).filter(|s| !s.is_empty()))
    }

    pub(crate) fn req_str(&self, key: &str) -> Result<&'a str, Error> {
        self.opt_str(key)?
            .ok_or_else(|| self.error(key, "missing (required)"))
    }

    /// An identifier: a string, or an integer written as a number.
    pub(crate) fn opt_id(&self, key: &str) -> Result<Option<String>, Error> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
            Some(other) => Err(self.wrong_type(key, "a string id", other)),
        }
    }

    pub(crate) fn req_id(&self, key: &str) -> Result<String, Error> {
        self.opt_id(key)?
            .ok_or_else(|| self.error(key, "missing (required)"))
    }

    /// A boolean flag; missing or `null` is `false`.
    pub(crate) fn flag(&self, key: &str) -> Result<bool, Error> {
        match self.get(key) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(self.wrong_type(key, "a boolean", other)),
        }
    }

    /// An array; missing or `null` is empty.
    pub(crate) fn array(&self, key: &str) -> Result<&'a [Value], Error> {
        match self.get(key) {
            None => Ok(&[]),
            Some(Value::Array(items)) => Ok(items),
            Some(other) => Err(self.wrong_type(key, "an array", other)),
        }
    }

    /// The elements of an array (missing or `null` is empty), each of which must be an object.
    pub(crate) fn objects(
        &self,
        key: &str,
    ) -> Result<impl Iterator<Item = Result<Fields<'a>, Error>> + 'a, Error> {
        let items = self.array(key)?;
        let path = self.path_of(key);
        let format = self.format;
        Ok(items
            .iter()
            .enumerate()
            .map(move |(i, item)| Fields::at(item, format!("{path}[{i}]"), format)))
    }

    pub(crate) fn object(&self, key: &str) -> Result<Option<Fields<'a>>, Error> {
        match self.get(key) {
            None => Ok(None),
            Some(value) => Fields::at(value, self.path_of(key), self.format).map(Some),
        }
    }

    /// A timestamp; missing, `null`, not a string, or unreadable are all `None`.
    pub(crate) fn time(&self, key: &str) -> Option<DateTime<Utc>> {
        match self.get(key) {
            Some(Value::String(s)) => parse_timestamp(s),
            _ => None,
        }
    }
}
