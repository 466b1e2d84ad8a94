//! Forwards one client request: tries the route's upstreams in the order their health
//! allows, fails over on connect errors, timeouts, 5xx, 429 and 529 before the first byte,
//! hands 4xx caused by the request back as they are, and relays streams while watching them
//! for stalls and missing finish markers.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use aiwatch_core::call_fault::CallFault;
use aiwatch_core::cause::Cause;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::{timeout_at, Instant};

use crate::anthropic::{self, StreamTranslator};
use crate::auth::KeyLabel;
use crate::body::RequestBody;
use crate::breaker::{attempt_order, Transition};
use crate::error::ApiError;
use crate::gateway::{Gateway, RouteEntry, RouteTable};
use crate::metrics::{EntryMetrics, FailoverLabels};
use crate::relay::{error_event, stream_error_event, Dialect, StreamFault, StreamRelay};
use crate::upstream::{judge, Endpoint, UpstreamState, Verdict};
use crate::usage::Tokens;
use aiwatch_core::service::ServiceKind;

/// A whole (not streamed) answer may be at most this large.
const ANSWER_CAP: usize = 32 * 1024 * 1024;
/// A whole answer that is translated (Anthropic) may be at most this large.
const TRANSLATED_ANSWER_CAP: usize = 8 * 1024 * 1024;
/// An error answer is read up to this size to tell why it failed.
const ERROR_CAP: usize = 64 * 1024;
/// A stream may send at most this much before its first token.
const HELD_CAP: usize = 1024 * 1024;
/// A stream may carry at most this much in all.
const STREAM_CAP: usize = 256 * 1024 * 1024;

/// One request as the handler parsed it.
pub struct Forward {
    pub key: KeyLabel,
    pub endpoint: Endpoint,
    pub alias: String,
    pub body: RequestBody,
    pub stream: bool,
    /// The client asked for the usage chunk at the end of a stream.
    pub client_wants_usage: bool,
    pub received: Instant,
}

/// Why one attempt failed, for the breaker, the metrics and the client's last error.
#[derive(Clone, Debug)]
struct Failure {
    cause: Cause,
    reason: String,
    retry_after: Option<Duration>,
    /// The gateway's own deadline ran out (504 rather than 502).
    timed_out: bool,
}

enum Attempt {
    /// A complete answer, or a stream whose first token arrived.
    Answered(Response),
    /// The request is at fault; the client gets the upstream's answer.
    ClientFault(Response),
    Failed(Failure),
}

/// Forwards `request` along its route; always answers.
pub async fn forward(gw: Arc<Gateway>, route: &RouteTable, request: Forward) -> Response {
    gw.retry_budget.deposit();
    let deadline = request.received + gw.settings.request_timeout;
    let order = plan(&gw, route);
    let mut tried: Vec<String> = Vec::new();
    let mut attempts = 0u32;
    let mut waited = Duration::ZERO;
    let mut last: Option<Failure> = None;
    let mut unexpressible: Option<String> = None;
    let mut reasons: Vec<String> = Vec::new();
    let Some(order) = order else {
        return cooling_down(gw.as_ref(), route);
    };
    for index in order {
        let entry = &route.entries[index];
        let up = &gw.upstreams[entry.upstream];
        if !up.supports(request.endpoint) {
            continue;
        }
        if attempts >= gw.settings.max_attempts.max(1) || Instant::now() >= deadline {
            break;
        }
        // A request this upstream's dialect cannot say (n > 1 for Anthropic, say) skips it:
        // the next upstream may take it as it is.
        let outgoing = match up.request(request.endpoint, &request.body, request.stream) {
            Ok(r) => r,
            Err(message) => {
                tried.push(format!("{}=cannot take this request", up.id));
                unexpressible.get_or_insert(message);
                continue;
            }
        };
        if attempts > 0 && !gw.retry_budget.withdraw(Instant::now()) {
            tried.push("retry budget spent".into());
            break;
        }
        attempts += 1;
        let started = Instant::now();
        let outcome = attempt(&gw, entry, up, outgoing, &request, deadline).await;
        waited += started.elapsed();
        match outcome {
            Attempt::Answered(mut response) | Attempt::ClientFault(mut response) => {
                tried.push(format!("{}={}", up.id, response.status().as_u16()));
                set_trace_headers(response.headers_mut(), &up.id, attempts, &tried);
                let added = request.received.elapsed().saturating_sub(waited);
                route.metrics.added_latency.observe(added.as_secs_f64());
                tracing::debug!(
                    route = %route.alias,
                    upstream = %up.id,
                    key = %request.key,
                    status = response.status().as_u16(),
                    attempts,
                    stream = request.stream,
                    ms = request.received.elapsed().as_secs_f64() * 1000.0,
                    "answered"
                );
                return response;
            }
            Attempt::Failed(failure) => {
                tracing::warn!(route = %route.alias, upstream = %up.id, cause = failure.cause.as_str(), reason = %failure.reason, "upstream failed; moving on");
                tried.push(format!("{}={}", up.id, failure.cause.as_str()));
                reasons.push(format!(
                    "{} ({}): {}",
                    up.id,
                    failure.cause.as_str(),
                    failure.reason
                ));
                gw.metrics
                    .failovers
                    .get_or_create(&FailoverLabels {
                        route: route.alias.clone(),
                        from: up.id.clone(),
                        reason: failure.cause.as_str(),
                    })
                    .inc();
                record_failure(up, &failure);
                last = Some(failure);
            }
        }
    }
    route.metrics.failed.inc();
    let retry_after = last.as_ref().and_then(|f| f.retry_after);
    let error = match &last {
        None if attempts == 0 && unexpressible.is_some() => ApiError::invalid_request(format!(
            "no upstream of `{}` can take this request: {}",
            route.alias,
            unexpressible.unwrap_or_default()
        )),
        Some(f) if f.timed_out && attempts == 1 => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream_error",
            Some("upstream_timeout"),
            format!("route `{}`: {}", route.alias, f.reason),
        ),
        Some(f) if f.cause == Cause::RateLimited && attempts == 1 => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            Some("rate_limit_exceeded"),
            format!("route `{}`: {}", route.alias, f.reason),
        ),
        _ => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            Some("all_upstreams_failed"),
            format!(
                "every upstream of `{}` failed ({} tried): {}",
                route.alias,
                attempts,
                if !reasons.is_empty() {
                    reasons.join("; ")
                } else if tried.is_empty() {
                    "none could serve this request".to_owned()
                } else {
                    tried.join("; ")
                }
            ),
        ),
    };
    let mut response = error.into_response();
    set_trace_headers(response.headers_mut(), "none", attempts, &tried);
    if let Some(wait) = retry_after {
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from(wait.as_secs().max(1)));
    }
    response
}

/// Every upstream of the route asked to be left alone for a while (Retry-After): the client is
/// told when to come back instead of the providers being sent more.
fn cooling_down(gw: &Gateway, route: &RouteTable) -> Response {
    let now = Instant::now();
    let wait = route
        .entries
        .iter()
        .filter_map(|e| gw.upstreams[e.upstream].breaker().cooling_left(now))
        .min()
        .unwrap_or(Duration::from_secs(1));
    route.metrics.failed.inc();
    let mut response = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "upstream_error",
        Some("upstreams_cooling_down"),
        format!(
            "every upstream of `{}` asked to be left alone for a while (Retry-After); retry in {} s",
            route.alias,
            wait.as_secs().max(1)
        ),
    )
    .into_response();
    response
        .headers_mut()
        .insert("retry-after", HeaderValue::from(wait.as_secs().max(1)));
    set_trace_headers(response.headers_mut(), "none", 0, &[]);
    response
}

/// The order this request tries the route's upstreams in; `None` when every one of them is
/// inside a provider's Retry-After.
fn plan(gw: &Gateway, route: &RouteTable) -> Option<Vec<usize>> {
    let now = Instant::now();
    let mut weights = Vec::with_capacity(route.entries.len());
    let mut shares = Vec::with_capacity(route.entries.len());
    let mut available = Vec::with_capacity(route.entries.len());
    let mut last_resort = Vec::with_capacity(route.entries.len());
    for entry in &route.entries {
        let up = &gw.upstreams[entry.upstream];
        // The transition is logged after the lock is released: never log under it.
        let (share, ok, cooling, transition) = {
            let mut b = up.breaker();
            let transition = b.tick(now);
            (
                b.share(now),
                b.available(now),
                b.cooling_left(now).is_some(),
                transition,
            )
        };
        if let Some(t) = transition {
            note_transition(up, &t);
        }
        weights.push(entry.weight);
        shares.push(share);
        available.push(ok);
        last_resort.push(!cooling);
    }
    let order = attempt_order(&weights, &shares, &available, &last_resort, fastrand::f64());
    (!order.is_empty()).then_some(order)
}

fn set_trace_headers(headers: &mut HeaderMap, upstream: &str, attempts: u32, tried: &[String]) {
    if let Ok(v) = HeaderValue::from_str(upstream) {
        headers.insert("x-aiwatch-upstream", v);
    }
    headers.insert("x-aiwatch-attempts", HeaderValue::from(attempts));
    if let Ok(v) = HeaderValue::from_str(&tried.join("; ")) {
        headers.insert("x-aiwatch-tried", v);
    }
}

fn record_failure(up: &UpstreamState, failure: &Failure) {
    let transition =
        up.breaker()
            .on_failure(Instant::now(), failure.reason.clone(), failure.retry_after);
    if let Some(t) = transition {
        note_transition(up, &t);
    }
}

fn record_success(up: &UpstreamState) {
    up.breaker().on_success();
}

/// Logs a breaker change. Takes no lock, so it may be called anywhere; the gauges are read
/// from the breakers when `/metrics` is scraped.
pub fn note_transition(up: &UpstreamState, transition: &Transition) {
    match transition {
        Transition::Tripped { reason } => {
            tracing::warn!(upstream = %up.id, %reason, "breaker tripped: no traffic until canaries pass")
        }
        Transition::Validated => tracing::info!(upstream = %up.id, "canary passed"),
        Transition::RampedTo { percent } => {
            tracing::info!(upstream = %up.id, percent, "validated; ramping traffic back")
        }
        Transition::Closed => tracing::info!(upstream = %up.id, "back at its full share"),
    }
}

async fn attempt(
    gw: &Arc<Gateway>,
    entry: &RouteEntry,
    up: &UpstreamState,
    request_to_upstream: http::Request<http_body_util::Full<Bytes>>,
    request: &Forward,
    deadline: Instant,
) -> Attempt {
    let sent = Instant::now();
    let answer_by = deadline.min(sent + entry.timeout);
    let response = match timeout_at(answer_by, up.client.request(request_to_upstream)).await {
        Err(_) => {
            return Attempt::Failed(Failure {
                cause: CallFault::NoAnswerInTime.cause(),
                reason: format!("no answer within {}", secs(answer_by - sent)),
                retry_after: None,
                timed_out: true,
            })
        }
        Ok(Err(e)) => {
            // A connection that could not be opened says which layer failed; anything else
            // (a connection reset mid-answer) is the provider's.
            let (cause, reason) = match connect_failure(&e) {
                Some(f) => (f.cause, f.detail.clone()),
                None => (CallFault::ConnectionLost.cause(), error_chain(&e)),
            };
            return Attempt::Failed(Failure {
                cause,
                reason,
                retry_after: None,
                timed_out: false,
            });
        }
        Ok(Ok(response)) => response,
    };
    let status = response.status();
    if !status.is_success() {
        let (parts, body) = response.into_parts();
        let bytes = error_body(body, answer_by, up).await;
        return match judge(status.as_u16(), &parts.headers, &bytes) {
            Verdict::ClientFault => {
                entry.metrics.client_error.inc();
                Attempt::ClientFault(client_error(up, status, &bytes))
            }
            Verdict::Failover {
                cause,
                reason,
                retry_after,
            } => Attempt::Failed(Failure {
                cause,
                reason,
                retry_after,
                timed_out: false,
            }),
        };
    }
    if request.stream && request.endpoint == Endpoint::ChatCompletions {
        return stream(gw, entry, up, request, response, sent, deadline).await;
    }
    let (parts, body) = response.into_parts();
    // A translated answer becomes a JSON tree (about ten times its size): a smaller cap.
    let cap = if up.service.kind == ServiceKind::Anthropic {
        TRANSLATED_ANSWER_CAP
    } else {
        ANSWER_CAP
    };
    let bytes = match read_capped(body, cap, answer_by).await {
        Ok(b) => b,
        Err(reason) => {
            return Attempt::Failed(Failure {
                cause: CallFault::AnswerCutOff.cause(),
                reason,
                retry_after: None,
                timed_out: Instant::now() >= answer_by,
            })
        }
    };
    let upstream_time = sent.elapsed();
    let (body, tokens) = match answer_body(up, request.endpoint, &bytes, gw.unix_now()) {
        Ok(answer) => answer,
        Err(reason) => {
            return Attempt::Failed(Failure {
                cause: CallFault::AnswerUnreadable.cause(),
                reason,
                retry_after: None,
                timed_out: false,
            })
        }
    };
    entry
        .metrics
        .upstream_latency
        .observe(upstream_time.as_secs_f64());
    record_success(up);
    entry.metrics.ok.inc();
    account(gw, &entry.metrics, up, request.key, tokens);
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    copy_request_id(&parts.headers, headers);
    Attempt::Answered(response)
}

/// The client's body for a 2xx answer, in OpenAI's shape, and its usage. Garbage is a failure.
fn answer_body(
    up: &UpstreamState,
    endpoint: Endpoint,
    bytes: &Bytes,
    now_unix: i64,
) -> Result<(Bytes, Option<Tokens>), String> {
    if up.service.kind != ServiceKind::Anthropic {
        return peek_answer(endpoint, bytes);
    }
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("the answer is not JSON ({e})"))?;
    let translated =
        anthropic::from_messages_response(&value, now_unix).map_err(|e| e.to_string())?;
    let tokens = translated.get("usage").and_then(Tokens::from_usage);
    Ok((Bytes::from(translated.to_string()), tokens))
}

/// Checks an OpenAI-shaped answer is the API's JSON and reads its usage, without building a
/// tree of it: the body goes to the client byte for byte.
fn peek_answer(endpoint: Endpoint, bytes: &Bytes) -> Result<(Bytes, Option<Tokens>), String> {
    use serde::de::IgnoredAny;
    // Lenient on purpose: any type for the fields only looked at, numbers of any form.
    #[derive(serde::Deserialize)]
    struct Usage {
        /// `input_tokens` in the Responses API.
        #[serde(default, alias = "input_tokens")]
        prompt_tokens: Option<serde_json::Number>,
        /// `output_tokens` in the Responses API.
        #[serde(default, alias = "output_tokens")]
        completion_tokens: Option<serde_json::Number>,
    }
    #[derive(serde::Deserialize)]
    struct Peek {
        #[serde(default)]
        choices: Option<IgnoredAny>,
        #[serde(default)]
        data: Option<IgnoredAny>,
        #[serde(default)]
        output: Option<IgnoredAny>,
        #[serde(default)]
        usage: Option<IgnoredOr<Usage>>,
    }
    /// A usage object, or anything else (ignored).
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum IgnoredOr<T> {
        Known(T),
        Other(IgnoredAny),
    }
    let peek: Peek = serde_json::from_slice(bytes)
        .map_err(|e| format!("the answer is not the API's JSON ({e})"))?;
    let (present, expected) = match endpoint {
        Endpoint::ChatCompletions => (peek.choices.is_some(), "choices"),
        Endpoint::Embeddings => (peek.data.is_some(), "data"),
        Endpoint::Responses => (peek.output.is_some(), "output"),
    };
    if !present {
        return Err(format!("the answer has no `{expected}`"));
    }
    let count = |n: Option<serde_json::Number>| {
        n.and_then(|n| n.as_u64().or_else(|| n.as_f64().map(|f| f.max(0.0) as u64)))
    };
    let tokens = match peek.usage {
        Some(IgnoredOr::Known(u)) => {
            let (prompt, completion) = (count(u.prompt_tokens), count(u.completion_tokens));
            (prompt.is_some() || completion.is_some()).then(|| Tokens {
                prompt: prompt.unwrap_or(0),
                completion: completion.unwrap_or(0),
            })
        }
        _ => None,
    };
    Ok((bytes.clone(), tokens))
}

/// The upstream's 4xx, as an OpenAI error the client's SDK understands.
fn client_error(up: &UpstreamState, status: StatusCode, bytes: &[u8]) -> Response {
    let (status, body) = if up.service.kind == ServiceKind::Anthropic {
        let (code, body) = anthropic::error_to_openai(status.as_u16(), bytes);
        (StatusCode::from_u16(code).unwrap_or(status), body)
    } else {
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
    };
    (status, axum::Json(body)).into_response()
}

fn copy_request_id(from: &HeaderMap, to: &mut HeaderMap) {
    if let Some(id) = from.get("x-request-id").or_else(|| from.get("request-id")) {
        to.insert("x-upstream-request-id", id.clone());
    }
}

fn account(
    gw: &Gateway,
    metrics: &EntryMetrics,
    up: &UpstreamState,
    key: KeyLabel,
    tokens: Option<Tokens>,
) {
    if let (Some(t), Some((tokens_in, tokens_out))) =
        (tokens, metrics.tokens.get(key.0.saturating_sub(1)))
    {
        tokens_in.inc_by(t.prompt);
        tokens_out.inc_by(t.completion);
    }
    if let (Some(limiter), Some(t)) = (&gw.key_limits, tokens) {
        limiter.lock().unwrap_or_else(|p| p.into_inner()).charge(
            key,
            t.total(),
            std::time::Instant::now(),
        );
    }
    let spike = gw
        .ledger
        .lock()
        .ok()
        .and_then(|mut l| l.record(key, &up.id, tokens, gw.minute()));
    let Some(gauge) = gw.spike_gauges.get(key.0.saturating_sub(1)) else {
        return;
    };
    match spike {
        Some(s) => {
            if gauge.set(1) == 0 {
                tracing::warn!(key = %key, baseline = s.baseline, current = s.current, "usage spike: tokens per minute far above this key's normal");
            }
        }
        None => {
            gauge.set(0);
        }
    }
}

/// The start of an error answer, enough to tell why it failed; empty if it never came.
/// An error answer, capped, with the upstream's key and anything key-shaped removed: it may be
/// returned to the client, logged and shown on `/admin/upstreams`.
async fn error_body(body: Incoming, deadline: Instant, up: &UpstreamState) -> Bytes {
    let by = deadline.min(Instant::now() + Duration::from_secs(5));
    let bytes = aiwatch_probe::http::read_capped(body, ERROR_CAP, by)
        .await
        .map(|(bytes, _)| bytes)
        .unwrap_or_default();
    let sent: Vec<&str> = up.key.iter().map(|k| k.expose()).collect();
    match aiwatch_core::scrub::scrub_bytes(&bytes, &sent) {
        Some(clean) => Bytes::from(clean),
        None => bytes,
    }
}

/// Reads a whole body up to `cap` bytes before `deadline` (the probe's capped read); a
/// longer body is an error, not a cut one.
async fn read_capped(body: Incoming, cap: usize, deadline: Instant) -> Result<Bytes, String> {
    use aiwatch_probe::http::BodyError;
    match aiwatch_probe::http::read_capped(body, cap, deadline).await {
        Ok((bytes, false)) => Ok(bytes),
        Ok((_, true)) => Err(format!(
            "the answer is larger than {} MiB",
            cap / (1024 * 1024)
        )),
        Err(BodyError::Timeout) => Err("the answer did not finish in time".to_owned()),
        Err(BodyError::Broken(e)) => Err(format!("the answer broke off: {e}")),
    }
}

/// The connector's own failure, somewhere in the client's error chain.
fn connect_failure<'e>(
    error: &'e (dyn std::error::Error + 'static),
) -> Option<&'e crate::connector::ConnectFailure> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<crate::connector::ConnectFailure>() {
            return Some(found);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(found) = io
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<crate::connector::ConnectFailure>())
            {
                return Some(found);
            }
        }
        current = e.source();
    }
    None
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let more = e.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = e.source();
    }
    text
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

// === streams ===

/// Reads an upstream stream piece by piece under the stall limit and the deadline.
struct StreamReader {
    body: Incoming,
    relay: StreamRelay,
    stall: Duration,
    deadline: Instant,
    /// Until the first token the upstream has its own answer budget (a reasoning model may
    /// think for a while); after it, `stall` between tokens.
    first_token_by: Instant,
    last_token: Instant,
    seen: usize,
    first_token: Option<Instant>,
    /// The upstream's key, scrubbed from anything the stream says back.
    key: Option<aiwatch_core::secret::ApiKey>,
}

enum Piece {
    Data {
        out: String,
    },
    End {
        out: String,
    },
    Fault {
        event: String,
        reason: String,
        cause: Cause,
        /// The upstream is to blame (not the request's own deadline).
        blame: bool,
        /// The gateway's own budget ran out.
        timed_out: bool,
    },
}

impl StreamReader {
    async fn next(&mut self) -> Piece {
        loop {
            // After the finish marker nothing more is read: the answer is complete.
            if self.relay.is_done() {
                return Piece::End { out: String::new() };
            }
            let patience = match self.first_token {
                None => self.first_token_by,
                Some(_) => self.last_token + self.stall,
            };
            let wait_until = patience.min(self.deadline);
            match timeout_at(wait_until, self.body.frame()).await {
                Err(_) => {
                    let deadline = Instant::now() >= self.deadline;
                    let (code, reason) = if deadline {
                        (
                            "request_timeout",
                            "the request's deadline (request_timeout) passed mid-stream".to_owned(),
                        )
                    } else if self.first_token.is_none() {
                        (
                            "upstream_timeout",
                            "no token within the upstream's timeout".to_owned(),
                        )
                    } else {
                        (
                            "stream_stalled",
                            format!("the stream stalled: no token for {}", secs(self.stall)),
                        )
                    };
                    return Piece::Fault {
                        event: stream_error_event(
                            code,
                            &format!("{reason}; the answer is incomplete"),
                        ),
                        reason,
                        cause: CallFault::StreamStalled.cause(),
                        blame: !deadline,
                        timed_out: true,
                    };
                }
                Ok(None) => {
                    return match self.relay.finish() {
                        Ok(r) => Piece::End { out: r.out },
                        Err(fault) => self.fault_piece(&fault),
                    }
                }
                Ok(Some(Err(e))) => return self.fault_piece(&StreamFault::Broken(e.to_string())),
                Ok(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    self.seen += data.len();
                    if self.seen > STREAM_CAP {
                        return self.fault_piece(&StreamFault::Garbage(
                            "the stream passed its size cap".into(),
                        ));
                    }
                    match self.relay.feed(&data) {
                        Ok(r) => {
                            if r.token {
                                self.last_token = Instant::now();
                                self.first_token.get_or_insert(self.last_token);
                            }
                            if self.relay.is_done() {
                                return Piece::End { out: r.out };
                            }
                            if r.out.is_empty() {
                                continue;
                            }
                            return Piece::Data { out: r.out };
                        }
                        Err(fault) => return self.fault_piece(&fault),
                    }
                }
            }
        }
    }
}

impl StreamReader {
    /// A fault as a piece, with an upstream's own words scrubbed of its key and key shapes.
    fn fault_piece(&self, fault: &StreamFault) -> Piece {
        match fault {
            StreamFault::Upstream(said) => {
                let sent: Vec<&str> = self.key.iter().map(|k| k.expose()).collect();
                let clean = aiwatch_core::scrub::scrub(said, &sent).into_owned();
                fault_piece(&StreamFault::Upstream(clean))
            }
            other => fault_piece(other),
        }
    }
}

fn fault_piece(fault: &StreamFault) -> Piece {
    Piece::Fault {
        event: error_event(fault),
        reason: fault.to_string(),
        blame: true,
        timed_out: false,
        cause: match fault {
            StreamFault::Truncated | StreamFault::Broken(_) => CallFault::StreamCutOff,
            StreamFault::Garbage(_) => CallFault::StreamGarbage,
            StreamFault::Upstream(_) => CallFault::StreamError,
        }
        .cause(),
    }
}

async fn stream(
    gw: &Arc<Gateway>,
    entry: &RouteEntry,
    up: &UpstreamState,
    request: &Forward,
    response: hyper::Response<Incoming>,
    sent: Instant,
    deadline: Instant,
) -> Attempt {
    let (parts, body) = response.into_parts();
    let is_sse = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    if !is_sse {
        let bytes = error_body(body, deadline, up).await;
        let said = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
        return Attempt::Failed(Failure {
            cause: CallFault::NotAStream.cause(),
            reason: format!("asked for a stream, got something else: {said}"),
            retry_after: None,
            timed_out: false,
        });
    }
    entry
        .metrics
        .upstream_latency
        .observe(sent.elapsed().as_secs_f64());
    let client_wants_usage = request.client_wants_usage;
    let dialect = if up.service.kind == ServiceKind::Anthropic {
        Dialect::Anthropic(Box::new(StreamTranslator::new(gw.unix_now())))
    } else {
        Dialect::OpenAi
    };
    let mut reader = StreamReader {
        body,
        relay: StreamRelay::new(dialect, client_wants_usage),
        stall: gw.settings.stream_stall,
        deadline,
        first_token_by: deadline.min(sent + entry.timeout),
        last_token: sent,
        seen: 0,
        first_token: None,
        key: up.key.clone(),
    };
    // Hold the answer until its first token: until then, a failure can still move the
    // request to the next upstream without the client seeing anything.
    let mut held = String::new();
    let mut ended = false;
    while reader.first_token.is_none() && !ended {
        match reader.next().await {
            Piece::Data { out } => held.push_str(&out),
            Piece::End { out } => {
                held.push_str(&out);
                ended = true;
            }
            Piece::Fault {
                reason,
                cause,
                timed_out,
                ..
            } => {
                return Attempt::Failed(Failure {
                    cause,
                    reason,
                    retry_after: None,
                    timed_out,
                })
            }
        }
        if held.len() > HELD_CAP {
            return Attempt::Failed(Failure {
                cause: CallFault::StreamGarbage.cause(),
                reason: format!(
                    "the stream sent over {} KiB without a token",
                    HELD_CAP / 1024
                ),
                retry_after: None,
                timed_out: false,
            });
        }
    }
    if let Some(first) = reader.first_token {
        let ttft = first.saturating_duration_since(sent);
        entry
            .metrics
            .time_to_first_token
            .observe(ttft.as_secs_f64());
        up.record_ttft(ttft.as_secs_f64() * 1000.0);
    }
    let (tx, rx) = mpsc::channel::<Bytes>(32);
    let _ = tx.send(Bytes::from(held)).await;
    let outcome = Outcome {
        gw: gw.clone(),
        metrics: entry.metrics.clone(),
        upstream: entry.upstream,
        key: request.key,
    };
    if ended {
        outcome.finish(reader.relay.tokens(), StreamEnd::Complete);
    } else {
        tokio::spawn(pump(reader, tx, outcome));
    }
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(
        "content-type",
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert("cache-control", HeaderValue::from_static("no-cache"));
    copy_request_id(&parts.headers, headers);
    Attempt::Answered(response)
}

/// What a relayed stream's end is recorded against.
struct Outcome {
    gw: Arc<Gateway>,
    metrics: Arc<EntryMetrics>,
    /// The upstream's index in the gateway.
    upstream: usize,
    key: KeyLabel,
}

/// How a relayed stream ended.
enum StreamEnd {
    /// With its finish marker.
    Complete,
    /// The client left (or stopped reading).
    Cancelled,
    /// Cut off; the failure is the upstream's unless the request's own deadline ended it.
    Truncated(Option<Failure>),
}

impl Outcome {
    fn finish(&self, tokens: Option<Tokens>, end: StreamEnd) {
        let Some(up) = self.gw.upstreams.get(self.upstream) else {
            return;
        };
        match end {
            StreamEnd::Complete => {
                record_success(up);
                self.metrics.ok.inc();
            }
            StreamEnd::Cancelled => {
                self.metrics.cancelled.inc();
            }
            StreamEnd::Truncated(failure) => {
                self.metrics.truncated.inc();
                if let Some(failure) = failure {
                    record_failure(up, &failure);
                }
            }
        }
        account(&self.gw, &self.metrics, up, self.key, tokens);
    }
}

/// Relays the rest of a committed stream; a failure now ends the client's stream with an
/// error event and is recorded as a truncated answer — never replayed elsewhere.
async fn pump(mut reader: StreamReader, tx: mpsc::Sender<Bytes>, outcome: Outcome) {
    // A client that stops reading holds no upstream forever: each send has the stall limit.
    let send = |reader: &StreamReader, bytes: String| {
        let by = reader.deadline.min(Instant::now() + reader.stall);
        let tx = tx.clone();
        async move {
            matches!(
                timeout_at(by, tx.send(Bytes::from(bytes))).await,
                Ok(Ok(()))
            )
        }
    };
    loop {
        let piece = tokio::select! {
            piece = reader.next() => piece,
            () = tx.closed() => {
                outcome.finish(reader.relay.tokens(), StreamEnd::Cancelled);
                return;
            }
        };
        match piece {
            Piece::Data { out } => {
                if !send(&reader, out).await {
                    outcome.finish(reader.relay.tokens(), StreamEnd::Cancelled);
                    return;
                }
            }
            Piece::End { out } => {
                let _ = send(&reader, out).await;
                outcome.finish(reader.relay.tokens(), StreamEnd::Complete);
                return;
            }
            Piece::Fault {
                event,
                reason,
                cause,
                blame,
                timed_out,
            } => {
                tracing::warn!(upstream = outcome.upstream, %reason, "stream cut off after the client got part of it");
                let _ = send(&reader, event).await;
                // The request's own deadline is not the upstream's failure.
                let failure = blame.then_some(Failure {
                    cause,
                    reason,
                    retry_after: None,
                    timed_out,
                });
                outcome.finish(reader.relay.tokens(), StreamEnd::Truncated(failure));
                return;
            }
        }
    }
}
