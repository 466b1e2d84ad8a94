//! One upstream — a catalog service and a model — and how to talk to it: the URL and body of
//! each call in its family's dialect, and what its answers mean for failover.

use std::sync::Arc;
use std::time::Duration;

use aiwatch_core::secret::ApiKey;
use aiwatch_core::service::{Service, ServiceKind};
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use rustls::client::WebPkiServerVerifier;
use serde_json::{Map, Value};

use crate::anthropic;
use crate::body::RequestBody;
use crate::connector::UpstreamConnector;
use crate::health::UpstreamHealth;

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

/// The headers an upstream reached over plain HTTP through a forward proxy needs on each
/// request: the proxy's credentials. (HTTPS upstreams go through a CONNECT tunnel, which the
/// connector authenticates once.)
pub fn proxy_headers(
    service: &Service,
    proxies: &aiwatch_probe::ProxySettings,
) -> Vec<(&'static str, String)> {
    let Some(base) = service.api_base.as_deref() else {
        return Vec::new();
    };
    if !base
        .get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
    {
        return Vec::new();
    }
    let Some(host) = aiwatch_core::network::url_host(base) else {
        return Vec::new();
    };
    proxies
        .for_target("http", host)
        .and_then(aiwatch_probe::proxy::Proxy::authorization)
        .map(|auth| vec![("proxy-authorization", auth)])
        .unwrap_or_default()
}

/// A running upstream: its service, its model, its pooled client and its health.
pub struct UpstreamState {
    /// `service:model`, as the config writes it.
    pub id: String,
    pub service: Service,
    pub model: String,
    pub key: Option<ApiKey>,
    /// Headers a plain-HTTP forward proxy needs on every request (`Proxy-Authorization`).
    pub proxy_headers: Vec<(&'static str, String)>,
    /// The shortest answer budget its routes give it; canaries get no more.
    pub timeout: Duration,
    pub client: Client<UpstreamConnector, Full<Bytes>>,
    pub expected_ca: Option<Arc<WebPkiServerVerifier>>,
    /// Its breaker, baseline and canaries: everything about how well it is, apart from who.
    pub health: UpstreamHealth,
}

impl UpstreamState {
    /// The service's API base, without a trailing slash.
    fn api_base(&self) -> &str {
        self.service
            .api_base
            .as_deref()
            .unwrap_or_default()
            .trim_end_matches('/')
    }

    /// One tiny streamed answer (at most five tokens), as `check --deep` sends it: what the
    /// canaries and the drill ask.
    pub async fn tiny_stream(
        &self,
        ctx: &aiwatch_probe::layered::ProbeContext,
        deadline: tokio::time::Instant,
    ) -> aiwatch_core::evidence::StreamEvidence {
        aiwatch_probe::stream::streamed_completion(
            ctx,
            &self.service,
            &self.model,
            self.key.as_ref(),
            self.expected_ca.clone(),
            deadline,
        )
        .await
    }

    /// Reads the model list through the pooled client — the free call canaries start with and
    /// the drill lists local models from.
    pub async fn list_models(&self, deadline: tokio::time::Instant) -> Result<Bytes, ListError> {
        let call = aiwatch_probe::api::list_models(&self.service, self.key.as_ref())
            .ok_or(ListError::NoApi)?;
        let unreachable = |error: String| ListError::Unreachable {
            label: call.label.clone(),
            url: call.url.clone(),
            error,
        };
        let mut builder = Request::get(&call.url);
        for (name, value) in call.ask.headers.iter().chain(&self.proxy_headers) {
            builder = builder.header(*name, value);
        }
        let request = builder
            .body(Full::new(Bytes::new()))
            .map_err(|e| unreachable(format!("cannot build the request: {e}")))?;
        let response = tokio::time::timeout_at(deadline, self.client.request(request))
            .await
            .map_err(|_| unreachable("no answer in time".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        let status = response.status();
        // Read (capped) even when refused, so the pooled connection can be reused.
        let body = aiwatch_probe::http::read_capped(response.into_body(), 4 << 20, deadline).await;
        if !status.is_success() {
            return Err(ListError::Status {
                label: call.label,
                status,
            });
        }
        match body {
            Ok((bytes, false)) => Ok(bytes),
            _ => Err(ListError::Incomplete),
        }
    }

    /// The OpenAI-compatible base of the service's API.
    fn openai_base(&self) -> String {
        let base = self.api_base();
        match self.service.kind {
            // Ollama's OpenAI-compatible API sits under /v1 of its native one.
            ServiceKind::Ollama if !base.ends_with("/v1") => format!("{base}/v1"),
            ServiceKind::Gemini => format!("{base}/openai"),
            _ => base.to_owned(),
        }
    }

    /// Can it serve this kind of call at all?
    pub fn supports(&self, endpoint: Endpoint) -> bool {
        !(endpoint == Endpoint::Embeddings && self.service.kind == ServiceKind::Anthropic)
    }

    /// The request for this upstream, from the client's parsed body.
    pub fn request(
        &self,
        endpoint: Endpoint,
        body: &RequestBody,
        stream: bool,
    ) -> Result<Request<Full<Bytes>>, String> {
        let (url, json) = match (self.service.kind, endpoint) {
            // The Responses API goes only where it is served as it is (no translation).
            (kind, Endpoint::Responses) if kind != ServiceKind::Openai => {
                return Err(format!(
                    "the Responses API is relayed only to OpenAI-compatible upstreams, and {} speaks {}",
                    self.id,
                    kind.as_str()
                ));
            }
            (_, Endpoint::Responses) if stream => {
                return Err(
                    "streamed Responses (`stream: true`) are not relayed yet; send it without `stream`, or use /v1/chat/completions"
                        .to_owned(),
                );
            }
            (ServiceKind::Anthropic, Endpoint::ChatCompletions) => {
                let base = self.api_base();
                let translated = anthropic::to_messages_request(&body.to_value(), &self.model)
                    .map_err(|e| e.to_string())?;
                (
                    format!("{base}/messages"),
                    translated.to_string().into_bytes(),
                )
            }
            (kind, endpoint) => {
                // OpenAI sends usage at the end of a stream only when asked; the gateway
                // needs it for accounting and drops the extra chunk if the client did not ask.
                let mut extra = Vec::new();
                if stream && kind == ServiceKind::Openai && endpoint == Endpoint::ChatCompletions {
                    let mut options = match body.parsed::<Value>("stream_options") {
                        Some(Ok(Value::Object(map))) => map,
                        _ => Map::new(),
                    };
                    options.insert("include_usage".into(), Value::Bool(true));
                    extra.push(("stream_options", Value::Object(options).to_string()));
                }
                (
                    format!("{}{}", self.openai_base(), endpoint.path()),
                    body.with_model(&self.model, &extra),
                )
            }
        };
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(&url)
            .header("content-type", "application/json")
            .header(
                "user-agent",
                concat!("aiwatch-gateway/", env!("CARGO_PKG_VERSION")),
            );
        builder = builder.header(
            "accept",
            if stream {
                "text/event-stream"
            } else {
                "application/json"
            },
        );
        let kind = match self.service.kind {
            // Gemini's OpenAI-compatible endpoint takes the key as a bearer token.
            ServiceKind::Gemini => ServiceKind::Openai,
            other => other,
        };
        for (name, value) in aiwatch_probe::api::auth_headers(kind, self.key.as_ref()) {
            builder = builder.header(name, value);
        }
        for (name, value) in &self.proxy_headers {
            builder = builder.header(*name, value);
        }
        builder
            .body(Full::new(Bytes::from(json)))
            .map_err(|e| format!("cannot build the request to {url}: {e}"))
    }
}

/// Why a model list could not be read.
#[derive(Debug)]
pub enum ListError {
    /// The service has no API base.
    NoApi,
    /// No answer: the call (`GET /models`), its URL and what went wrong.
    Unreachable {
        label: String,
        url: String,
        error: String,
    },
    /// It answered with an error status.
    Status {
        label: String,
        status: http::StatusCode,
    },
    /// The answer broke off, came too slowly or was too large.
    Incomplete,
}
