//! Chooses each upstream's wire dialect, once, from its service's kind: the one [`Adapter`] that
//! says a request in that dialect and reads its answers, errors and streams back into OpenAI's
//! shape.

pub mod anthropic;
pub mod openai;

use std::sync::Arc;

use aiwatch_core::secret::ApiKey;
use aiwatch_core::service::{Service, ServiceKind};
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, ACCEPT, CONTENT_TYPE, USER_AGENT};
use http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::Value;

use crate::body::RequestBody;
use crate::pool::Outgoing;
use crate::usage::Tokens;

pub use anthropic::AnthropicMessages;
pub use openai::OpenAiCompatible;

/// What a client asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Embeddings,
    /// OpenAI's Responses API, relayed as it is to upstreams that serve it.
    Responses,
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/chat/completions",
            Endpoint::Embeddings => "/embeddings",
            Endpoint::Responses => "/responses",
        }
    }
}

/// Which wire format the upstream streams.
pub enum StreamDialect {
    /// OpenAI-compatible chat chunks, passed through.
    OpenAi,
    /// OpenAI Responses API events, passed through.
    OpenAiResponses,
    /// Anthropic Messages events, translated.
    Anthropic(Box<anthropic::StreamTranslator>),
}

/// How the gateway talks to one upstream: one variant per wire dialect.
#[derive(Debug)]
pub enum Adapter {
    /// OpenAI's API and everything that copies it: Gemini's `/openai` base, Ollama's `/v1`,
    /// LM Studio, any service of kind `openai`.
    OpenAiCompatible(OpenAiCompatible),
    /// Anthropic's Messages API, translated both ways.
    AnthropicMessages(AnthropicMessages),
}

impl Adapter {
    /// The adapter for `model` at `service`: the one place a service's kind picks a dialect.
    /// Everything that does not change per request (URLs, headers) is built here.
    pub fn for_service(
        service: &Service,
        model: &str,
        key: Option<&ApiKey>,
        proxy_headers: &[(&'static str, String)],
    ) -> Self {
        let base = service
            .api_base
            .as_deref()
            .unwrap_or_default()
            .trim_end_matches('/');
        let headers = |auth: ServiceKind| {
            fixed_headers(&aiwatch_probe::api::auth_headers(auth, key), proxy_headers)
        };
        // The Responses API goes only where it is served as it is (no translation).
        let no_responses = || {
            format!(
                "the Responses API is relayed only to OpenAI-compatible upstreams, and {}:{model} speaks {}",
                service.name,
                service.kind.as_str()
            )
        };
        let compatible = |base: String, auth: ServiceKind, openai: bool| {
            Self::OpenAiCompatible(OpenAiCompatible::new(
                &base,
                model,
                &headers(auth),
                // Only OpenAI itself is known to serve the Responses API and to send usage at
                // the end of a stream when asked.
                (!openai).then(no_responses),
                openai,
            ))
        };
        match service.kind {
            ServiceKind::Anthropic => Self::AnthropicMessages(AnthropicMessages::new(
                base,
                model,
                &headers(ServiceKind::Anthropic),
                no_responses(),
            )),
            ServiceKind::Openai => compatible(base.to_owned(), ServiceKind::Openai, true),
            // Gemini's OpenAI-compatible endpoint takes the key as a bearer token.
            ServiceKind::Gemini => compatible(format!("{base}/openai"), ServiceKind::Openai, false),
            // Ollama's OpenAI-compatible API sits under /v1 of its native one.
            ServiceKind::Ollama if !base.ends_with("/v1") => {
                compatible(format!("{base}/v1"), ServiceKind::Ollama, false)
            }
            kind @ (ServiceKind::Ollama | ServiceKind::Http) => {
                compatible(base.to_owned(), kind, false)
            }
        }
    }

    /// The upstream request for the client's parsed body, or why this upstream cannot take it
    /// (the proxy then skips it).
    pub fn request(
        &self,
        endpoint: Endpoint,
        body: &RequestBody,
        stream: bool,
    ) -> Result<Outgoing<'_>, String> {
        match self {
            Self::OpenAiCompatible(a) => a.request(endpoint, body, stream),
            Self::AnthropicMessages(a) => a.request(endpoint, body, stream),
        }
    }

    /// The most a whole (not streamed) 2xx answer may weigh.
    pub fn answer_cap(&self) -> usize {
        match self {
            Self::OpenAiCompatible(_) => openai::ANSWER_CAP,
            Self::AnthropicMessages(_) => anthropic::TRANSLATED_ANSWER_CAP,
        }
    }

    /// The client's body for a 2xx whole answer, in OpenAI's shape, and its usage. Garbage is
    /// an error: the upstream failed. `now_unix` is read only by a dialect whose answers need a
    /// `created` time.
    pub fn answer(
        &self,
        endpoint: Endpoint,
        bytes: &Bytes,
        now_unix: impl FnOnce() -> i64,
    ) -> Result<(Bytes, Option<Tokens>), String> {
        match self {
            Self::OpenAiCompatible(_) => openai::peek_answer(endpoint, bytes),
            Self::AnthropicMessages(_) => anthropic::answer(bytes, now_unix()),
        }
    }

    /// A refused request's error answer as the status and OpenAI error body the client gets.
    pub fn client_error(&self, status: StatusCode, bytes: &[u8]) -> (StatusCode, Value) {
        match self {
            Self::OpenAiCompatible(_) => openai::client_error(status, bytes),
            Self::AnthropicMessages(_) => anthropic::client_error(status, bytes),
        }
    }

    /// How the relay reads this upstream's stream of `endpoint`: passed through, or
    /// translated.
    pub fn stream_dialect(&self, endpoint: Endpoint, now_unix: i64) -> StreamDialect {
        match self {
            Self::OpenAiCompatible(_) if endpoint == Endpoint::Responses => {
                StreamDialect::OpenAiResponses
            }
            Self::OpenAiCompatible(_) => StreamDialect::OpenAi,
            Self::AnthropicMessages(_) => {
                StreamDialect::Anthropic(Box::new(anthropic::StreamTranslator::new(now_unix)))
            }
        }
    }
}

/// The headers every request to an upstream carries, built once and shared by its endpoints:
/// content type, user agent, the key in the dialect's header and a plain-HTTP forward proxy's
/// credentials.
fn fixed_headers(
    auth: &[(&'static str, String)],
    proxy: &[(&'static str, String)],
) -> Result<Arc<HeaderMap>, String> {
    let mut headers = HeaderMap::with_capacity(4 + auth.len() + proxy.len());
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(
        USER_AGENT,
        HeaderValue::from_static(concat!("aiwatch-gateway/", env!("CARGO_PKG_VERSION"))),
    );
    for (name, value) in auth.iter().chain(proxy) {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?;
        let value = HeaderValue::from_str(value).map_err(|e| e.to_string())?;
        headers.append(name, value);
    }
    Ok(Arc::new(headers))
}

/// One endpoint of one upstream as every request to it starts: its URL and its fixed header
/// fields, encoded for the wire once and only borrowed per request.
pub struct Target {
    uri: Uri,
    fields: Box<TargetFields>,
}

/// A target's fixed fields with `Host`, and the `Accept` of a whole answer or of a stream
/// (boxed: kept inline they would make the adapter's variants far apart in size).
struct TargetFields {
    json: Box<[u8]>,
    stream: Box<[u8]>,
}

/// Names the URL only: the fields carry the upstream's key.
impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
}

impl Target {
    /// The endpoint at `url`; an unusable URL or header is the error every request to it gets.
    fn new(url: String, headers: &Result<Arc<HeaderMap>, String>) -> Result<Self, String> {
        let fail = |e: &dyn std::fmt::Display| format!("cannot build the request to {url}: {e}");
        let uri = Uri::try_from(url.as_str()).map_err(|e| fail(&e))?;
        let fixed = headers.as_ref().map_err(|e| fail(e))?;
        let with_accept = |accept: &'static str| {
            let mut map = HeaderMap::with_capacity(fixed.len() + 1);
            map.extend(
                fixed
                    .iter()
                    .map(|(name, value)| (name.clone(), value.clone())),
            );
            map.insert(ACCEPT, HeaderValue::from_static(accept));
            crate::http1::encode_fields(&map, &uri)
                .map(Vec::into_boxed_slice)
                .map_err(|e| fail(&e))
        };
        Ok(Self {
            fields: Box::new(TargetFields {
                json: with_accept("application/json")?,
                stream: with_accept("text/event-stream")?,
            }),
            uri,
        })
    }

    /// The URL requests to this endpoint go to.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// A POST of `body`, accepting a stream or JSON.
    fn post(&self, body: Vec<u8>, stream: bool) -> Outgoing<'_> {
        Outgoing {
            method: Method::POST,
            uri: &self.uri,
            fields: if stream {
                &self.fields.stream
            } else {
                &self.fields.json
            },
            body: Bytes::from(body),
        }
    }
}

/// A target's error, as a request's.
fn reach(target: &Result<Target, String>) -> Result<&Target, String> {
    target.as_ref().map_err(Clone::clone)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiwatch_core::catalog::Catalog;

    fn adapter(service: &str, base: Option<&str>, key: &str) -> Adapter {
        let mut service = Catalog::builtin()
            .get(service)
            .expect("a built-in service")
            .clone();
        if let Some(base) = base {
            service.api_base = Some(base.to_owned());
        }
        let key = ApiKey::new(key.to_owned());
        let proxy = [("proxy-authorization", "Basic cHJveHk=".to_owned())];
        Adapter::for_service(&service, "m1", key.as_ref(), &proxy)
    }

    fn body(json: &str) -> RequestBody {
        RequestBody::parse(json.as_bytes()).expect("an object")
    }

    const CHAT: &str = r#"{"model":"smart","messages":[{"role":"user","content":"hi"}]}"#;

    /// The URL and the headers (name, value) of the request the adapter builds.
    fn sent(
        adapter: &Adapter,
        endpoint: Endpoint,
        json: &str,
        stream: bool,
    ) -> (String, Vec<(String, String)>, Value) {
        let request = adapter
            .request(endpoint, &body(json), stream)
            .expect("a request");
        assert_eq!(request.method, Method::POST);
        let uri = request.uri.to_string();
        let fields = std::str::from_utf8(request.fields).expect("text");
        let headers = fields
            .split_terminator("\r\n")
            .map(|line| {
                let (name, value) = line.split_once(": ").expect("a field line");
                (name.to_owned(), value.to_owned())
            })
            .collect();
        let json = serde_json::from_slice(&request.body).expect("JSON");
        (uri, headers, json)
    }

    fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn anthropic_gets_its_key_header_version_and_messages_url() {
        let a = adapter("anthropic-api", None, "sk-ant-test");
        let (url, headers, json) = sent(&a, Endpoint::ChatCompletions, CHAT, true);
        assert_eq!(url, "https://api.anthropic.com/v1/messages");
        assert_eq!(header(&headers, "x-api-key"), Some("sk-ant-test"));
        assert_eq!(header(&headers, "anthropic-version"), Some("2023-06-01"));
        assert_eq!(header(&headers, "authorization"), None);
        assert_eq!(header(&headers, "content-type"), Some("application/json"));
        assert_eq!(header(&headers, "accept"), Some("text/event-stream"));
        assert_eq!(
            header(&headers, "proxy-authorization"),
            Some("Basic cHJveHk=")
        );
        assert!(header(&headers, "user-agent").is_some_and(|ua| ua.starts_with("aiwatch-gateway/")));
        assert_eq!(json["model"], "m1");
        assert_eq!(json["max_tokens"], anthropic::DEFAULT_MAX_TOKENS);
        assert!(json.get("stream_options").is_none());
        assert_eq!(a.answer_cap(), anthropic::TRANSLATED_ANSWER_CAP);
        assert!(matches!(
            a.stream_dialect(Endpoint::ChatCompletions, 0),
            StreamDialect::Anthropic(_)
        ));
    }

    #[test]
    fn anthropic_refuses_what_messages_cannot_say() {
        let a = adapter("anthropic-api", None, "k");
        let refused = |endpoint, json: &str| {
            a.request(endpoint, &body(json), false)
                .expect_err("refused")
        };
        assert!(refused(Endpoint::Embeddings, r#"{"input":"a"}"#).contains("embeddings"));
        assert_eq!(
            refused(Endpoint::Responses, r#"{"input":"a"}"#),
            "the Responses API is relayed only to OpenAI-compatible upstreams, and anthropic-api:m1 speaks anthropic"
        );
        let n = r#"{"n":2,"messages":[{"role":"user","content":"hi"}]}"#;
        assert!(refused(Endpoint::ChatCompletions, n).contains("not supported"));
    }

    #[test]
    fn gemini_gets_bearer_auth_under_its_openai_base() {
        let a = adapter("gemini-api", None, "AIza-test");
        let (url, headers, json) = sent(&a, Endpoint::ChatCompletions, CHAT, false);
        assert_eq!(
            url,
            "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions"
        );
        assert_eq!(header(&headers, "authorization"), Some("Bearer AIza-test"));
        assert_eq!(header(&headers, "x-goog-api-key"), None);
        assert_eq!(header(&headers, "accept"), Some("application/json"));
        assert_eq!(json["model"], "m1");
        assert!(a
            .request(Endpoint::Responses, &body(r#"{"input":"a"}"#), false)
            .expect_err("refused")
            .contains("speaks gemini"));
    }

    #[test]
    fn ollama_is_reached_under_v1_once() {
        let a = adapter("ollama", None, "");
        let (url, headers, _) = sent(&a, Endpoint::ChatCompletions, CHAT, true);
        assert_eq!(url, "http://127.0.0.1:11434/v1/chat/completions");
        assert_eq!(header(&headers, "authorization"), None, "no key, no auth");
        let (url, _, json) = sent(&a, Endpoint::ChatCompletions, CHAT, true);
        assert_eq!(url, "http://127.0.0.1:11434/v1/chat/completions");
        assert!(
            json.get("stream_options").is_none(),
            "only OpenAI is asked for stream usage"
        );
        let already = adapter("ollama", Some("http://10.0.0.5:11434/v1/"), "");
        let (url, _, _) = sent(&already, Endpoint::Embeddings, r#"{"input":"a"}"#, false);
        assert_eq!(url, "http://10.0.0.5:11434/v1/embeddings");
    }

    #[test]
    fn openai_is_asked_for_stream_usage_and_serves_responses_plain_and_streamed() {
        let a = adapter("openai-api", None, "sk-test");
        let (url, headers, json) = sent(&a, Endpoint::ChatCompletions, CHAT, true);
        assert_eq!(url, "https://api.openai.com/v1/chat/completions");
        assert_eq!(header(&headers, "authorization"), Some("Bearer sk-test"));
        assert_eq!(json["stream_options"]["include_usage"], true);
        let (url, _, json) = sent(&a, Endpoint::Responses, r#"{"input":"a"}"#, false);
        assert_eq!(url, "https://api.openai.com/v1/responses");
        assert_eq!(json["input"], "a");
        let (_, headers, json) = sent(
            &a,
            Endpoint::Responses,
            r#"{"input":"a","stream":true}"#,
            true,
        );
        assert_eq!(header(&headers, "accept"), Some("text/event-stream"));
        assert!(
            json.get("stream_options").is_none(),
            "the Responses API has no stream_options: its usage is in response.completed"
        );
        assert_eq!(a.answer_cap(), openai::ANSWER_CAP);
        assert!(matches!(
            a.stream_dialect(Endpoint::ChatCompletions, 0),
            StreamDialect::OpenAi
        ));
        assert!(matches!(
            a.stream_dialect(Endpoint::Responses, 0),
            StreamDialect::OpenAiResponses
        ));
    }

    #[test]
    fn the_fields_built_once_name_the_host_first_and_never_show_in_debug_output() {
        let a = adapter(
            "openai-api",
            Some("http://127.0.0.1:8080/v1"),
            "sk-secret-key",
        );
        let (_, headers, _) = sent(&a, Endpoint::ChatCompletions, CHAT, false);
        assert_eq!(headers[0], ("host".to_owned(), "127.0.0.1:8080".to_owned()));
        assert_eq!(header(&headers, "accept"), Some("application/json"));
        let request = a
            .request(Endpoint::ChatCompletions, &body(CHAT), false)
            .expect("a request");
        for shown in [format!("{a:?}"), format!("{request:?}")] {
            assert!(!shown.contains("sk-secret-key"), "{shown}");
            assert!(shown.contains("127.0.0.1:8080"), "{shown}");
        }
    }

    #[test]
    fn an_unusable_base_is_every_requests_error() {
        let a = adapter("openai-api", Some("http://bad host/v1"), "k");
        assert!(a
            .request(Endpoint::ChatCompletions, &body(CHAT), false)
            .expect_err("refused")
            .starts_with("cannot build the request to http://bad host/v1/chat/completions"));
    }
}
