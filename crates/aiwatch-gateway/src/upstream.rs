//! One upstream — a catalog service and a model — with its wire dialect's adapter, its
//! connection pool and its health, and what its answers mean for failover.

use std::sync::Arc;
use std::time::Duration;

use aiwatch_core::secret::ApiKey;
use aiwatch_core::service::Service;
use bytes::Bytes;
use http::Request;
use rustls::client::WebPkiServerVerifier;

use crate::dialect::Adapter;
use crate::health::UpstreamHealth;
use crate::pool::UpstreamPool;

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

/// A running upstream: its service, its model, its connection pool and its health.
pub struct UpstreamState {
    /// `service:model`, as the config writes it.
    pub id: String,
    pub service: Service,
    pub model: String,
    pub key: Option<ApiKey>,
    /// Headers a plain-HTTP forward proxy needs on every request (`Proxy-Authorization`).
    pub proxy_headers: Vec<(&'static str, String)>,
    /// How requests are said to it and its answers read: its wire dialect.
    pub adapter: Adapter,
    /// The shortest answer budget its routes give it; canaries get no more.
    pub timeout: Duration,
    /// Its open connections, one shelf per edge thread.
    pub pool: UpstreamPool,
    pub expected_ca: Option<Arc<WebPkiServerVerifier>>,
    /// Its breaker, baseline and canaries: everything about how well it is, apart from who.
    pub health: UpstreamHealth,
    /// Its trace header values, built once.
    pub trace: TraceValues,
}

/// The `x-aiwatch-upstream` and usual `x-aiwatch-tried` values of an upstream's answers.
pub struct TraceValues {
    /// Its id.
    pub upstream: http::HeaderValue,
    /// `id=200`: it answered the first attempt.
    pub answered_ok: http::HeaderValue,
}

impl TraceValues {
    /// The values for `id` (`service:model`; config names are header-safe, and an id that is
    /// not shows as `unprintable`).
    pub fn new(id: &str) -> Self {
        let value = |text: String| {
            http::HeaderValue::try_from(text)
                .unwrap_or_else(|_| http::HeaderValue::from_static("unprintable"))
        };
        Self {
            upstream: value(id.to_owned()),
            answered_ok: value(format!("{id}=200")),
        }
    }
}

impl UpstreamState {
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

    /// Reads the model list through the upstream's pool — the free call canaries start with and
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
            .body(Bytes::new())
            .map_err(|e| unreachable(format!("cannot build the request: {e}")))?;
        let (head, body) = tokio::time::timeout_at(deadline, self.pool.send(request))
            .await
            .map_err(|_| unreachable("no answer in time".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        let status = head.status;
        // Read (capped) even when refused, so the pooled connection can be reused.
        let body = aiwatch_probe::http::read_capped(body, 4 << 20, deadline).await;
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
