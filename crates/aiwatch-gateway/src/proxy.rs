//! Forwards one client request: tries the route's upstreams in the order their health
//! allows, fails over on connect errors, timeouts, 5xx, 429 and 529 before the first byte,
//! hands 4xx caused by the request back as they are, and relays streams while watching them
//! for stalls and missing finish markers.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use aiwatch_core::error_chain::with_causes;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header::{HeaderName, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::BodyExt;
use smallvec::SmallVec;
use tokio::sync::mpsc;
use tokio::time::{timeout_at, Instant};

use crate::auth::KeyLabel;
use crate::body::RequestBody;
use crate::breaker::{attempt_order, Order, ROUTE_INLINE};
use crate::dialect::Endpoint;
use crate::error::ApiError;
use crate::gateway::{Gateway, RouteEntry, RouteTable};
use crate::http1::Head;
use crate::metrics::{EntryMetrics, FailoverLabels};
use crate::policy::{
    self, Charge, EndStream, FailOver, Failure, Refusal, StreamTrouble, Tally, Trouble,
};
use crate::pool::{Outgoing, PooledBody, SendError};
use crate::relay::{StreamFault, StreamRelay};
use crate::upstream::UpstreamState;
use crate::usage::Tokens;

/// An error answer is read up to this size to tell why it failed.
const ERROR_CAP: usize = 64 * 1024;
/// A stream may send at most this much before its first token.
const HELD_CAP: usize = 1024 * 1024;
/// A stream may carry at most this much in all.
const STREAM_CAP: usize = 256 * 1024 * 1024;

// Header names built once: a name given as text is parsed and hashed on every use.
const X_AIWATCH_UPSTREAM: HeaderName = HeaderName::from_static("x-aiwatch-upstream");
const X_AIWATCH_ATTEMPTS: HeaderName = HeaderName::from_static("x-aiwatch-attempts");
const X_AIWATCH_TRIED: HeaderName = HeaderName::from_static("x-aiwatch-tried");
const X_UPSTREAM_REQUEST_ID: HeaderName = HeaderName::from_static("x-upstream-request-id");

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

enum Attempt {
    /// The client's answer: served, or the upstream's refusal handed back.
    Respond(Response),
    FailOver(FailOver),
}

/// Forwards `request` along its route; always answers. The loop only carries out what
/// [`policy`] decides for each attempt.
pub async fn forward(gw: Arc<Gateway>, route: &RouteTable, request: Forward) -> Response {
    gw.retry_budget.deposit();
    let deadline = request.received + gw.settings.request_timeout;
    let Some(order) = plan(&gw, route, request.received) else {
        return cooling_down(gw.as_ref(), route);
    };
    let mut tally = Tally::default();
    let mut waited = Duration::ZERO;
    for index in order {
        let entry = &route.entries[index];
        let up = &gw.upstreams[entry.upstream];
        let started = Instant::now();
        if tally.attempts >= gw.settings.max_attempts.max(1) || started >= deadline {
            break;
        }
        let outgoing = match up
            .adapter
            .request(request.endpoint, &request.body, request.stream)
        {
            Ok(r) => r,
            Err(why) => {
                // The policy's `Skip`: its dialect cannot say this request, and the next
                // upstream may take it as it is. Not an attempt.
                tally
                    .tried
                    .push(format!("{}=cannot take this request", up.id));
                tally.unexpressible.get_or_insert(why);
                continue;
            }
        };
        if tally.attempts > 0 && !gw.retry_budget.withdraw(started) {
            tally.tried.push("retry budget spent".into());
            break;
        }
        tally.attempts += 1;
        let outcome = attempt(&gw, entry, up, outgoing, &request, started, deadline).await;
        waited += started.elapsed();
        match outcome {
            Attempt::Respond(mut response) => {
                let headers = response.headers_mut();
                headers.insert(X_AIWATCH_UPSTREAM, up.trace.upstream.clone());
                headers.insert(X_AIWATCH_ATTEMPTS, attempts_value(tally.attempts));
                // The usual case, one attempt answered 200, costs no formatting.
                let tried = if tally.tried.is_empty() && response.status() == StatusCode::OK {
                    Some(up.trace.answered_ok.clone())
                } else {
                    tally
                        .tried
                        .push(format!("{}={}", up.id, response.status().as_u16()));
                    HeaderValue::from_str(&tally.tried.join("; ")).ok()
                };
                if let Some(tried) = tried {
                    response.headers_mut().insert(X_AIWATCH_TRIED, tried);
                }
                let added = request.received.elapsed().saturating_sub(waited);
                route.metrics.added_latency.observe(added);
                tracing::debug!(
                    route = %route.alias,
                    upstream = %up.id,
                    key = %request.key,
                    status = response.status().as_u16(),
                    attempts = tally.attempts,
                    stream = request.stream,
                    ms = request.received.elapsed().as_secs_f64() * 1000.0,
                    "answered"
                );
                return response;
            }
            Attempt::FailOver(FailOver { failure, charge }) => {
                tracing::warn!(route = %route.alias, upstream = %up.id, cause = failure.cause.as_str(), reason = %failure.reason, "upstream failed; moving on");
                tally
                    .tried
                    .push(format!("{}={}", up.id, failure.cause.as_str()));
                tally.reasons.push(format!(
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
                record_failure(up, &failure, charge);
                tally.last = Some(failure);
            }
        }
    }
    route.metrics.failed.inc();
    let retry_after = tally.last.as_ref().and_then(|f| f.retry_after);
    let mut response = policy::exhausted(&route.alias, &tally).into_response();
    set_trace_headers(response.headers_mut(), tally.attempts, &tally.tried);
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
        .filter_map(|e| gw.upstreams[e.upstream].health.cooling_left(now))
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
    set_trace_headers(response.headers_mut(), 0, &[]);
    response
}

/// The order this request tries the route's upstreams in; `None` when every one of them is
/// inside a provider's Retry-After.
fn plan(gw: &Gateway, route: &RouteTable, now: Instant) -> Option<Order> {
    let mut weights = SmallVec::<[u32; ROUTE_INLINE]>::new();
    let mut shares = SmallVec::<[f64; ROUTE_INLINE]>::new();
    let mut available = SmallVec::<[bool; ROUTE_INLINE]>::new();
    let mut last_resort = SmallVec::<[bool; ROUTE_INLINE]>::new();
    for entry in &route.entries {
        let up = &gw.upstreams[entry.upstream];
        let now_usable = up.health.availability(now);
        weights.push(entry.weight);
        shares.push(now_usable.share);
        available.push(now_usable.available);
        last_resort.push(!now_usable.cooling);
    }
    let order = attempt_order(&weights, &shares, &available, &last_resort, fastrand::f64());
    (!order.is_empty()).then_some(order)
}

/// The `x-aiwatch-attempts` value; the usual one costs no allocation.
fn attempts_value(attempts: u32) -> HeaderValue {
    match attempts {
        1 => HeaderValue::from_static("1"),
        n => HeaderValue::from(n),
    }
}

/// The trace headers of an answer no upstream gave.
fn set_trace_headers(headers: &mut HeaderMap, attempts: u32, tried: &[String]) {
    headers.insert(X_AIWATCH_UPSTREAM, HeaderValue::from_static("none"));
    headers.insert(X_AIWATCH_ATTEMPTS, attempts_value(attempts));
    if let Ok(v) = HeaderValue::from_str(&tried.join("; ")) {
        headers.insert(X_AIWATCH_TRIED, v);
    }
}

fn record_failure(up: &UpstreamState, failure: &Failure, charge: Charge) {
    if charge != Charge::Nothing {
        up.health.on_failure(
            failure.reason.clone(),
            failure.retry_after,
            charge == Charge::Trip,
        );
    }
}

fn record_success(up: &UpstreamState) {
    up.health.on_success();
}

async fn attempt(
    gw: &Arc<Gateway>,
    entry: &RouteEntry,
    up: &UpstreamState,
    request_to_upstream: Outgoing<'_>,
    request: &Forward,
    sent: Instant,
    deadline: Instant,
) -> Attempt {
    let answer_by = deadline.min(sent + entry.timeout);
    let (head, body) = match timeout_at(answer_by, up.pool.send_outgoing(request_to_upstream)).await
    {
        Err(_) => {
            return failed(Trouble::NoHeadersInTime {
                waited: answer_by - sent,
            })
        }
        // A connection that could not be opened says which layer failed; anything else (a
        // connection reset mid-answer) is the provider's.
        Ok(Err(SendError::Connect(f))) => {
            return failed(Trouble::ConnectFailed {
                cause: f.cause,
                detail: &f.detail,
            })
        }
        Ok(Err(SendError::Unsendable(why))) => {
            return failed(Trouble::ConnectFailed {
                cause: aiwatch_core::cause::Cause::Unknown,
                detail: &why,
            })
        }
        Ok(Err(SendError::Lost(e))) => return failed(Trouble::ConnectionLost(&with_causes(&e))),
        Ok(Ok(answer)) => answer,
    };
    let status = head.status;
    if !status.is_success() {
        let bytes = Box::pin(error_body(body, answer_by, up)).await;
        return match policy::refusal(status.as_u16(), &head.header_map(), &bytes) {
            Refusal::HandBack => {
                entry.metrics.client_error.inc();
                Attempt::Respond(client_error(up, status, &bytes))
            }
            Refusal::FailOver(f) => Attempt::FailOver(f),
        };
    }
    if request.stream && request.endpoint != Endpoint::Embeddings {
        // Boxed, as every rare path with a large future: kept inline, its room would be part
        // of every request's future, which is moved (copied) as it is built and boxed.
        return Box::pin(stream(gw, entry, up, request, (head, body), sent, deadline)).await;
    }
    let bytes = match read_capped(body, up.adapter.answer_cap(), answer_by).await {
        Ok(b) => b,
        Err(reason) => {
            return failed(Trouble::AnswerIncomplete {
                reason: &reason,
                timed_out: Instant::now() >= answer_by,
            })
        }
    };
    let upstream_time = sent.elapsed();
    let (body, tokens) = match up
        .adapter
        .answer(request.endpoint, &bytes, || gw.unix_now())
    {
        Ok(answer) => answer,
        Err(reason) => return failed(Trouble::AnswerUnreadable(&reason)),
    };
    entry.metrics.upstream_latency.observe(upstream_time);
    record_success(up);
    entry.metrics.ok.inc();
    account(gw, &entry.metrics, entry.upstream, request.key, tokens);
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(id) = upstream_request_id(&head) {
        headers.insert(X_UPSTREAM_REQUEST_ID, id);
    }
    Attempt::Respond(response)
}

/// An attempt that failed before the client got anything, as the policy charges it.
fn failed(trouble: Trouble<'_>) -> Attempt {
    Attempt::FailOver(policy::fail_over(trouble))
}

/// The upstream's 4xx, as an OpenAI error the client's SDK understands.
fn client_error(up: &UpstreamState, status: StatusCode, bytes: &[u8]) -> Response {
    let (status, body) = up.adapter.client_error(status, bytes);
    (status, axum::Json(body)).into_response()
}

/// The id the upstream gave its answer, which the client gets as `x-upstream-request-id`.
fn upstream_request_id(head: &Head) -> Option<HeaderValue> {
    head.value("x-request-id")
        .or_else(|| head.value("request-id"))
}

/// Counts an answer's tokens: in the metrics, against the key's limits and in the ledger
/// (whose spikes [`Gateway::judge_usage`] reads off the request path).
fn account(
    gw: &Gateway,
    metrics: &EntryMetrics,
    upstream: usize,
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
    gw.ledger.record(key, upstream, tokens, gw.minute());
}

/// The start of an error answer, enough to tell why it failed; empty if it never came.
/// An error answer, capped, with the upstream's key and anything key-shaped removed: it may be
/// returned to the client, logged and shown on `/admin/upstreams`.
async fn error_body(body: PooledBody, deadline: Instant, up: &UpstreamState) -> Bytes {
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
async fn read_capped(body: PooledBody, cap: usize, deadline: Instant) -> Result<Bytes, String> {
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

// === streams ===

/// Reads an upstream stream piece by piece under the stall limit and the deadline.
struct StreamReader {
    body: PooledBody,
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
    Data { out: String },
    End { out: String },
    Fault(StreamTrouble),
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
                    return Piece::Fault(if Instant::now() >= self.deadline {
                        StreamTrouble::RequestDeadline
                    } else if self.first_token.is_none() {
                        StreamTrouble::NoFirstToken
                    } else {
                        StreamTrouble::Stalled(self.stall)
                    });
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
        Piece::Fault(StreamTrouble::Fault(match fault {
            StreamFault::Upstream(said) => {
                let sent: Vec<&str> = self.key.iter().map(|k| k.expose()).collect();
                StreamFault::Upstream(aiwatch_core::scrub::scrub(said, &sent).into_owned())
            }
            other => other.clone(),
        }))
    }
}

async fn stream(
    gw: &Arc<Gateway>,
    entry: &RouteEntry,
    up: &UpstreamState,
    request: &Forward,
    (head, body): (Head, PooledBody),
    sent: Instant,
    deadline: Instant,
) -> Attempt {
    let is_sse = head
        .get("content-type")
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    if !is_sse {
        let bytes = error_body(body, deadline, up).await;
        let said = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]);
        return failed(Trouble::NotAStream(&said));
    }
    entry.metrics.upstream_latency.observe(sent.elapsed());
    let client_wants_usage = request.client_wants_usage;
    let dialect = up.adapter.stream_dialect(request.endpoint, gw.unix_now());
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
            Piece::Fault(trouble) => return failed(Trouble::Stream(&trouble)),
        }
        if held.len() > HELD_CAP {
            return failed(Trouble::Stream(&StreamTrouble::NoTokenWithin(HELD_CAP)));
        }
    }
    if let Some(first) = reader.first_token {
        let ttft = first.saturating_duration_since(sent);
        entry.metrics.time_to_first_token.observe(ttft);
        up.health.record_ttft(ttft.as_secs_f64() * 1000.0);
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
    if let Some(id) = upstream_request_id(&head) {
        headers.insert(X_UPSTREAM_REQUEST_ID, id);
    }
    Attempt::Respond(response)
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
    /// Cut off, charged to the upstream as the policy says.
    Truncated(EndStream),
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
            StreamEnd::Truncated(end) => {
                self.metrics.truncated.inc();
                record_failure(up, &end.failure, end.charge);
            }
        }
        account(&self.gw, &self.metrics, self.upstream, self.key, tokens);
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
            Piece::Fault(trouble) => {
                let end = policy::cut_short(&trouble);
                tracing::warn!(upstream = outcome.upstream, reason = %end.failure.reason, "stream cut off after the client got part of it");
                let _ = send(&reader, end.event.clone()).await;
                outcome.finish(reader.relay.tokens(), StreamEnd::Truncated(end));
                return;
            }
        }
    }
}
