//! Maps an Anthropic error answer (its JSON, a Cloudflare HTML page or garbage) to the status
//! and OpenAI error body the client gets.

use serde_json::{json, Value};

/// The most characters of an unreadable upstream body that are quoted back to the client.
const SNIPPET_CHARS: usize = 200;

/// The most bytes of an unreadable upstream body that are examined when building a snippet.
const SNIPPET_SCAN_BYTES: usize = 64 * 1024;

/// The error categories Anthropic distinguishes, each with an OpenAI rendering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ErrorKind {
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
    pub(super) fn from_anthropic_type(error_type: &str) -> Option<Self> {
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

pub(super) fn openai_error_body(kind: ErrorKind, message: &str) -> Value {
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    #[test]
    fn a_prompt_too_long_is_a_context_length_error() {
        let body = br#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}"#;
        let (status, out) = error_to_openai(400, body);
        assert_eq!(status, 400);
        assert_eq!(out["error"]["code"], "context_length_exceeded");
    }

    fn anthropic_error(error_type: &str, message: &str) -> Vec<u8> {
        json!({
            "type": "error",
            "error": { "type": error_type, "message": message },
            "request_id": "req_011",
        })
        .to_string()
        .into_bytes()
    }

    pub(in crate::dialect::anthropic) fn openai_error(
        message: &str,
        error_type: &str,
        code: Option<&str>,
    ) -> Value {
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
}
