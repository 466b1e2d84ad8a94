//! Reads what an HTTP response says about who answered: provider error bodies, the headers only
//! a provider sends, Cloudflare challenges and blocks, and the cause each of them stands for.

use serde::Serialize;
use serde_json::Value;

use crate::cause::Cause;

/// A sign found in a response body or its headers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "marker", rename_all = "snake_case")]
pub enum BodyMarker {
    /// A Cloudflare managed challenge ("Just a moment...", `cf-mitigated: challenge`).
    CloudflareChallenge,
    /// A Cloudflare block page: error 1020 "Access denied", 1010, 1012, "you have been blocked".
    CloudflareBlock { code: Option<u16> },
    /// Cloudflare error 1015, "You are being rate limited".
    CloudflareRateLimit,
    /// A Cloudflare-generated error page for origin trouble (520–530).
    CloudflareOriginError { code: u16 },
    /// "… not available in your country" or similar.
    CountryUnsupported,
    /// An HTML page where the API speaks JSON: something in front of the API answered.
    Html,
}

/// A provider's error, read from whichever shape its body has.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProviderError {
    pub status: u16,
    /// `error.type` (OpenAI, Anthropic) or `error.status` (Gemini).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// `error.code` (OpenAI), `details[].reason` (Gemini) or `details.error_code` (Anthropic).
    pub code: Option<String>,
    pub message: Option<String>,
}

const MESSAGE_LIMIT: usize = 300;

fn clip(text: &str) -> String {
    let text = text.trim();
    if text.len() <= MESSAGE_LIMIT {
        return text.to_owned();
    }
    let mut end = MESSAGE_LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

fn str_field(value: &Value, key: &str) -> Option<String> {
    match value.get(key)? {
        Value::String(s) if !s.is_empty() => Some(clip(s)),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl ProviderError {
    /// Reads an error body in any of the shapes the providers use; `None` when it is not one.
    pub fn parse(status: u16, body: &[u8]) -> Option<Self> {
        let value: Value = serde_json::from_slice(body).ok()?;
        let mut error = Self {
            status,
            ..Self::default()
        };
        match value.get("error") {
            // OpenAI and compatibles, Anthropic, Gemini: an `error` object.
            Some(inner @ Value::Object(_)) => {
                error.message = str_field(inner, "message");
                error.kind = str_field(inner, "type").or_else(|| str_field(inner, "status"));
                error.code = match inner.get("code") {
                    Some(Value::String(s)) if !s.is_empty() => Some(clip(s)),
                    _ => None,
                };
                if let Some(Value::Array(details)) = inner.get("details") {
                    error.code = error
                        .code
                        .or_else(|| details.iter().find_map(|d| str_field(d, "reason")));
                }
                if let Some(details @ Value::Object(_)) = inner.get("details") {
                    error.code = error.code.or_else(|| str_field(details, "error_code"));
                }
            }
            // Ollama: `{"error": "message"}`.
            Some(Value::String(message)) => error.message = Some(clip(message)),
            // Mistral: a flat `{"object":"error","message":…,"type":…,"code":…}`.
            _ if value.get("object").and_then(Value::as_str) == Some("error")
                || (value.get("message").is_some() && value.get("type").is_some()) =>
            {
                error.message = str_field(&value, "message");
                error.kind = str_field(&value, "type");
                error.code = str_field(&value, "code");
            }
            _ => return None,
        }
        Some(error)
    }

    fn mentions(&self, needle: &str) -> bool {
        [&self.kind, &self.code, &self.message]
            .into_iter()
            .flatten()
            .any(|s| s.to_ascii_lowercase().contains(needle))
    }
}

/// Finds the edge and geo signs in a response.
pub fn detect_markers(
    status: u16,
    content_type: Option<&str>,
    cf_mitigated: Option<&str>,
    body: &[u8],
) -> Vec<BodyMarker> {
    let mut markers = Vec::new();
    // Only the start of a page carries these signs; a 1 MiB body is not scanned whole.
    let head = &body[..body.len().min(64 * 1024)];
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    let is_html = content_type.is_some_and(|c| c.to_ascii_lowercase().contains("text/html"))
        || text.trim_start().starts_with("<!doctype html")
        || text.trim_start().starts_with("<html");

    if cf_mitigated.is_some_and(|v| v.eq_ignore_ascii_case("challenge"))
        || text.contains("<title>just a moment...</title>")
        || text.contains("_cf_chl_opt")
        || text.contains("/cdn-cgi/challenge-platform/")
    {
        markers.push(BodyMarker::CloudflareChallenge);
    }
    // Error pages split "Error" and "1020" across tags: read the visible text too.
    let visible = visible_text(&text);
    let cf_code = cloudflare_error_code(&visible);
    match cf_code {
        Some(1015) => markers.push(BodyMarker::CloudflareRateLimit),
        Some(code @ (1005..=1012 | 1020)) => {
            markers.push(BodyMarker::CloudflareBlock { code: Some(code) })
        }
        _ if visible.contains("sorry, you have been blocked")
            || (visible.contains("access denied")
                && visible.contains("used cloudflare to restrict access")) =>
        {
            markers.push(BodyMarker::CloudflareBlock { code: None })
        }
        _ => {}
    }
    if (520..=530).contains(&status) && (cf_code.is_some() || text.contains("cloudflare")) {
        markers.push(BodyMarker::CloudflareOriginError { code: status });
    }
    if visible.contains("not available in your country")
        || text.contains("unsupported_country_region_territory")
        || text.contains("country, region, or territory not supported")
    {
        markers.push(BodyMarker::CountryUnsupported);
    }
    if is_html {
        markers.push(BodyMarker::Html);
    }
    markers
}

/// The text of an HTML page without its tags, whitespace collapsed.
fn visible_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut in_tag = false;
    let mut last_space = true;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                if !last_space {
                    out.push(' ');
                    last_space = true;
                }
            }
            _ if in_tag => {}
            c if c.is_whitespace() => {
                if !last_space {
                    out.push(' ');
                    last_space = true;
                }
            }
            c => {
                out.push(c);
                last_space = false;
            }
        }
    }
    out
}

/// Reads "Error 1020" / "error code: 1020" from a Cloudflare page.
fn cloudflare_error_code(text: &str) -> Option<u16> {
    for prefix in ["error code: ", "error code ", "error ", "error&nbsp;"] {
        let mut rest = text;
        while let Some(at) = rest.find(prefix) {
            let after = &rest[at + prefix.len()..];
            let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
            if digits.len() == 4 {
                if let Ok(code) = digits.parse::<u16>() {
                    if (1000..1100).contains(&code) {
                        return Some(code);
                    }
                }
            }
            rest = after;
        }
    }
    None
}

/// Whether a response header is one only the provider's own servers send: an answer that carries
/// it was made by the provider, not by a proxy or TLS interceptor in between.
///
/// Counted (one is enough):
/// - the providers' own header families, `openai-*` (`openai-processing-ms`, `openai-version`,
///   `openai-organization`) and `anthropic-*` (`anthropic-ratelimit-*`,
///   `anthropic-organization-id`);
/// - a request id in the providers' `req_…` form: `x-request-id` (OpenAI and compatibles such
///   as Groq) or `request-id` (Anthropic).
///
/// Not counted, because intermediaries send them too: `cf-ray` and `server: cloudflare`
/// (interceptors and their clouds sit behind Cloudflare as well), `via`, the generic
/// `x-ratelimit-*`, and request ids of any other form — Envoy, nginx and most API gateways
/// stamp a UUID `x-request-id` on the answers they make themselves.
pub fn is_provider_header(name: &str, value: &str) -> bool {
    let name = name.to_ascii_lowercase();
    if name.starts_with("openai-") || name.starts_with("anthropic-") {
        return true;
    }
    matches!(name.as_str(), "x-request-id" | "request-id") && value.trim().starts_with("req_")
}

/// The cause an API response stands for; `Cause::Ok` for a success. `key_sent` tells whether an
/// authenticated call was made: a 401 without a key only proves the API is reachable.
pub fn api_cause(
    status: u16,
    error: Option<&ProviderError>,
    markers: &[BodyMarker],
    key_sent: bool,
) -> Cause {
    let has = |m: &BodyMarker| markers.contains(m);
    let blocked = markers.iter().any(|m| {
        matches!(
            m,
            BodyMarker::CloudflareBlock { .. } | BodyMarker::CloudflareRateLimit
        )
    });
    let mentions = |needle: &str| error.is_some_and(|e| e.mentions(needle));
    if markers.contains(&BodyMarker::CountryUnsupported)
        || mentions("unsupported_country")
        || mentions("location is not supported")
        || mentions("not available in your country")
    {
        return Cause::RegionUnsupported;
    }
    // A challenge on an API host is never normal: the client's IP is flagged.
    if has(&BodyMarker::CloudflareChallenge) || blocked {
        return Cause::BotChallenge;
    }
    match status {
        200..=299 => Cause::Ok,
        401 if !key_sent => Cause::Ok,
        401 => Cause::AuthInvalid,
        400 if mentions("api_key_invalid") || mentions("api key not valid") => Cause::AuthInvalid,
        400 if mentions("spend limit") || mentions("credit balance") => Cause::QuotaExhausted,
        402 => Cause::QuotaExhausted,
        403 if !key_sent && error.is_none() && has(&BodyMarker::Html) => Cause::BotChallenge,
        403 if !key_sent => Cause::Ok,
        403 => Cause::PermissionDenied,
        404 if mentions("model") || mentions("not_found") => Cause::ModelUnavailable,
        429 if mentions("insufficient_quota")
            || mentions("enforced_spend_limit")
            || mentions("exceeded your current quota") =>
        {
            Cause::QuotaExhausted
        }
        429 if mentions("overloaded") => Cause::ProviderOverloaded,
        429 => Cause::RateLimited,
        498 | 529 => Cause::ProviderOverloaded,
        503 if mentions("overload") || mentions("slow_down") || mentions("unavailable") => {
            Cause::ProviderOverloaded
        }
        500..=599 => Cause::ProviderError,
        _ => Cause::Unknown,
    }
}

/// The cause a web front-end response stands for. A managed challenge alone is what every
/// non-browser client gets from Cloudflare on a healthy network, so it counts as reachable.
pub fn web_cause(status: u16, markers: &[BodyMarker]) -> Cause {
    if markers.contains(&BodyMarker::CountryUnsupported) {
        return Cause::RegionUnsupported;
    }
    if markers.iter().any(|m| {
        matches!(
            m,
            BodyMarker::CloudflareBlock { .. } | BodyMarker::CloudflareRateLimit
        )
    }) {
        return Cause::BotChallenge;
    }
    match status {
        200..=399 => Cause::Ok,
        401 | 403 | 429 if markers.contains(&BodyMarker::CloudflareChallenge) => Cause::Ok,
        401 | 403 => Cause::Ok,
        429 => Cause::BotChallenge,
        503 if markers.contains(&BodyMarker::CloudflareChallenge) => Cause::Ok,
        500..=599 => Cause::ProviderError,
        _ => Cause::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_error_shape() {
        let openai = br#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
        let e = ProviderError::parse(429, openai).unwrap();
        assert_eq!(e.code.as_deref(), Some("insufficient_quota"));
        let anthropic = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}"#;
        let e = ProviderError::parse(529, anthropic).unwrap();
        assert_eq!(e.kind.as_deref(), Some("overloaded_error"));
        let gemini = br#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID"}]}}"#;
        let e = ProviderError::parse(400, gemini).unwrap();
        assert_eq!(e.code.as_deref(), Some("API_KEY_INVALID"));
        assert_eq!(e.kind.as_deref(), Some("INVALID_ARGUMENT"));
        let mistral = br#"{"object":"error","message":"Invalid model","type":"invalid_request_error","param":"model","code":"unknown_model"}"#;
        assert_eq!(
            ProviderError::parse(400, mistral).unwrap().code.as_deref(),
            Some("unknown_model")
        );
        let ollama = br#"{"error":"model 'llama9' not found"}"#;
        assert!(ProviderError::parse(404, ollama)
            .unwrap()
            .message
            .unwrap()
            .contains("llama9"));
        assert!(ProviderError::parse(500, b"<html>oops</html>").is_none());
        assert!(ProviderError::parse(500, br#"[1,2]"#).is_none());
    }

    #[test]
    fn api_statuses_map_to_causes() {
        let e = |status, body: &str| ProviderError::parse(status, body.as_bytes());
        let rate = e(
            429,
            r#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#,
        );
        assert_eq!(api_cause(429, rate.as_ref(), &[], true), Cause::RateLimited);
        let quota = e(
            429,
            r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#,
        );
        assert_eq!(
            api_cause(429, quota.as_ref(), &[], true),
            Cause::QuotaExhausted
        );
        let region = e(
            403,
            r#"{"error":{"code":"unsupported_country_region_territory","message":"Country, region, or territory not supported","type":"request_forbidden"}}"#,
        );
        assert_eq!(
            api_cause(403, region.as_ref(), &[], true),
            Cause::RegionUnsupported
        );
        assert_eq!(api_cause(401, None, &[], true), Cause::AuthInvalid);
        assert_eq!(api_cause(401, None, &[], false), Cause::Ok);
        assert_eq!(api_cause(529, None, &[], true), Cause::ProviderOverloaded);
        assert_eq!(api_cause(502, None, &[], true), Cause::ProviderError);
        let model = e(
            404,
            r#"{"error":{"message":"The model `gpt-9` does not exist","type":"invalid_request_error","code":"model_not_found"}}"#,
        );
        assert_eq!(
            api_cause(404, model.as_ref(), &[], true),
            Cause::ModelUnavailable
        );
        assert_eq!(
            api_cause(403, None, &[BodyMarker::CloudflareChallenge], true),
            Cause::BotChallenge
        );
    }

    #[test]
    fn only_the_providers_own_headers_are_fingerprints() {
        assert!(is_provider_header("openai-processing-ms", "23"));
        assert!(is_provider_header(
            "Anthropic-Ratelimit-Requests-Remaining",
            "49"
        ));
        assert!(is_provider_header(
            "x-request-id",
            "req_9b2f61d0c5a84e7f8e3c2a1b0d9e8f7a"
        ));
        assert!(is_provider_header(
            "request-id",
            "req_011CX7J5ZXp3npD8nY7VYZvm"
        ));
        // What a proxy, an interceptor or a generic gateway sends on its own answers.
        assert!(!is_provider_header(
            "x-request-id",
            "6f1c2b9e-3d4a-4e5f-8a7b-1c2d3e4f5a6b"
        ));
        assert!(!is_provider_header("cf-ray", "8f1c2a3b4d5e6f70-FRA"));
        assert!(!is_provider_header("server", "cloudflare"));
        assert!(!is_provider_header("x-ratelimit-remaining-requests", "0"));
        assert!(!is_provider_header("via", "1.1 zscaler"));
    }

    #[test]
    fn cloudflare_pages_are_recognized() {
        let challenge = b"<!DOCTYPE html><html><head><title>Just a moment...</title><script>window._cf_chl_opt={}</script>";
        let m = detect_markers(403, Some("text/html"), Some("challenge"), challenge);
        assert!(m.contains(&BodyMarker::CloudflareChallenge));
        assert_eq!(web_cause(403, &m), Cause::Ok);
        let block = b"<html><title>Access denied | chatgpt.com used Cloudflare to restrict access</title><span>Error 1020</span>";
        let m = detect_markers(403, Some("text/html"), None, block);
        assert!(m.contains(&BodyMarker::CloudflareBlock { code: Some(1020) }));
        assert_eq!(web_cause(403, &m), Cause::BotChallenge);
        let split = b"<h1><span data-translate=\"error\">Error</span>\n  <span>1020</span></h1>";
        let m = detect_markers(403, Some("text/html"), None, split);
        assert!(
            m.contains(&BodyMarker::CloudflareBlock { code: Some(1020) }),
            "{m:?}"
        );
        let limited = b"<html><h1>Error 1015</h1> You are being rate limited</html>";
        let m = detect_markers(429, Some("text/html"), None, limited);
        assert_eq!(web_cause(429, &m), Cause::BotChallenge);
        let origin = b"<html>Error code 522 Connection timed out cloudflare</html>";
        let m = detect_markers(522, Some("text/html"), None, origin);
        assert!(m.contains(&BodyMarker::CloudflareOriginError { code: 522 }));
        assert_eq!(web_cause(522, &m), Cause::ProviderError);
    }
}
