//! One upstream — a catalog service and a model — with its wire dialect's adapter, its pooled
//! client and its health, and what its answers mean for failover.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aiwatch_core::cause::Cause;
use aiwatch_core::secret::ApiKey;
use aiwatch_core::service::Service;
use aiwatch_core::signatures::{api_cause, detect_markers, ProviderError};
use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use rustls::client::WebPkiServerVerifier;

use crate::breaker::Breaker;
use crate::connector::UpstreamConnector;
use crate::dialect::Adapter;

/// Latencies kept for an upstream's baseline.
const BASELINE_WINDOW: usize = 50;

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
    /// How requests are said to it and its answers read: its wire dialect.
    pub adapter: Adapter,
    /// The shortest answer budget its routes give it; canaries get no more.
    pub timeout: Duration,
    pub client: Client<UpstreamConnector, Full<Bytes>>,
    pub expected_ca: Option<Arc<WebPkiServerVerifier>>,
    pub breaker: Mutex<Breaker>,
    /// Recent times to first token of streamed answers, in milliseconds: the canaries' norm.
    pub baseline: Mutex<VecDeque<f64>>,
    /// (hour, tokens) canaries spent in that hour.
    pub canary_spend: Mutex<(u64, u64)>,
    /// A canary is running.
    pub canary_running: std::sync::atomic::AtomicBool,
}

impl UpstreamState {
    /// The breaker, locked. A panic elsewhere while it was held leaves it usable: its state is
    /// plain data, always consistent between calls.
    pub fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Advances the breaker's clock and returns what the admin view shows; a transition this
    /// reveals is logged once the lock is released.
    pub fn tick_view(&self, now: tokio::time::Instant) -> crate::breaker::BreakerView {
        let (transition, view) = {
            let mut b = self.breaker();
            (b.tick(now), b.view(now))
        };
        if let Some(t) = transition {
            crate::proxy::note_transition(self, &t);
        }
        view
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

    /// Adds a healthy time to first token to the baseline.
    pub fn record_ttft(&self, ms: f64) {
        if let Ok(mut baseline) = self.baseline.lock() {
            if baseline.len() == BASELINE_WINDOW {
                baseline.pop_front();
            }
            baseline.push_back(ms);
        }
    }

    /// The median healthy time to first token, once there are a few.
    pub fn baseline_ms(&self) -> Option<f64> {
        let baseline = self.baseline.lock().ok()?;
        if baseline.len() < 3 {
            return None;
        }
        let mut sorted: Vec<f64> = baseline.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        Some(sorted[sorted.len() / 2])
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

/// What an upstream's non-2xx answer means.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// The request itself is at fault (400, 413, content filter): the client gets the answer
    /// as is, and no other upstream is asked.
    ClientFault,
    /// The upstream (or the gateway's account there) failed: try the next one.
    Failover {
        cause: Cause,
        reason: String,
        retry_after: Option<Duration>,
    },
}

/// Judges a non-2xx answer by its status, headers and (capped) body.
pub fn judge(status: u16, headers: &HeaderMap, body: &[u8]) -> Verdict {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let markers = detect_markers(status, header("content-type"), header("cf-mitigated"), body);
    let error = ProviderError::parse(status, body);
    let cause = api_cause(status, error.as_ref(), &markers, true);
    let retry_after = header("retry-after").and_then(parse_retry_after);
    let detail = error
        .as_ref()
        .and_then(|e| e.message.clone().or_else(|| e.kind.clone()))
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    let reason = format!("{status} ({}){detail}", cause.as_str());
    let client_fault = match status {
        // The account or the gateway's own config at that provider, not the request.
        401 | 402 | 403 | 404 | 408 | 409 | 429 => false,
        // A 4xx that is not the API's own error (an HTML page from a proxy or a firewall in
        // front of it) says nothing about the request.
        // Too large is about the request whoever says it (Anthropic's comes from Cloudflare).
        413 => true,
        400..=499 if error.is_none() => false,
        400..=499 => !matches!(
            cause,
            Cause::AuthInvalid
                | Cause::QuotaExhausted
                | Cause::BotChallenge
                | Cause::RegionUnsupported
        ),
        _ => false,
    };
    if client_fault {
        Verdict::ClientFault
    } else {
        Verdict::Failover {
            cause,
            reason,
            retry_after,
        }
    }
}

/// `Retry-After` in seconds (the form APIs use); dates are left to the breaker's own timing.
fn parse_retry_after(raw: &str) -> Option<Duration> {
    raw.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(3600.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        h
    }

    #[test]
    fn requests_at_fault_are_passed_back_not_retried() {
        let body = br#"{"error":{"message":"This model's maximum context length is 128000 tokens","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
        assert_eq!(judge(400, &HeaderMap::new(), body), Verdict::ClientFault);
        assert_eq!(
            judge(
                413,
                &HeaderMap::new(),
                b"<html>413 Request Entity Too Large</html>"
            ),
            Verdict::ClientFault
        );
        assert!(
            matches!(
                judge(400, &HeaderMap::new(), b"<html>400 Bad Request</html>"),
                Verdict::Failover { .. }
            ),
            "an HTML 400 from whatever sits in front is not the API's verdict"
        );
    }

    #[test]
    fn overload_rate_limits_and_outages_fail_over_with_retry_after() {
        let v = judge(
            429,
            &headers(&[("retry-after", "7")]),
            br#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#,
        );
        let Verdict::Failover {
            cause, retry_after, ..
        } = v
        else {
            panic!("a 429 fails over")
        };
        assert_eq!(cause, Cause::RateLimited);
        assert_eq!(retry_after, Some(Duration::from_secs(7)));
        let v = judge(
            529,
            &HeaderMap::new(),
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        assert!(matches!(
            v,
            Verdict::Failover {
                cause: Cause::ProviderOverloaded,
                ..
            }
        ));
        assert!(matches!(
            judge(502, &HeaderMap::new(), b"<html>bad gateway</html>"),
            Verdict::Failover { .. }
        ));
    }

    #[test]
    fn account_problems_fail_over_because_another_provider_can_serve() {
        for status in [401, 403, 404] {
            assert!(
                matches!(
                    judge(status, &HeaderMap::new(), b"{}"),
                    Verdict::Failover { .. }
                ),
                "{status}"
            );
        }
        let spend = br#"{"type":"error","error":{"type":"invalid_request_error","message":"Your credit balance is too low to access the Anthropic API."}}"#;
        assert!(matches!(
            judge(400, &HeaderMap::new(), spend),
            Verdict::Failover {
                cause: Cause::QuotaExhausted,
                ..
            }
        ));
    }
}
