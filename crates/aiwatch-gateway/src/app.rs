//! The gateway's HTTP surface: the OpenAI-compatible endpoints, the admin view of upstream
//! health and usage, and `/metrics`. Every refusal is an OpenAI-shaped error.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use aiwatch_probe::http::{read_capped, BodyError};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Value};
use tokio::time::Instant;
use tower_service::Service as _;

use crate::auth::{presented_key, presented_key_in, KeyLabel};
use crate::body::RequestBody;
use crate::dialect::Endpoint;
use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::proxy::{forward, Forward};

/// The gateway's router.
pub fn app(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/responses", post(responses))
        .route("/v1/models", get(models))
        .route("/v1/models/{id}", get(model))
        .route("/admin/upstreams", get(admin_upstreams))
        .route("/admin/usage", get(admin_usage))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            gw.clone(),
            authenticate,
        ))
        .with_state(gw)
}

/// Every path but `/healthz` and `/metrics` needs a gateway key; the request carries its
/// [`KeyLabel`] afterwards. A client address that keeps failing gets 429 with Retry-After
/// (whatever it sends next), so keys cannot be guessed at speed.
async fn authenticate(
    State(gw): State<Arc<Gateway>>,
    mut request: Request<Body>,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path();
    if path == "/healthz" || path == "/metrics" {
        return next.run(request).await;
    }
    let client = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    match admit(&gw, client, path, presented_key_in(request.headers())) {
        Ok(label) => {
            request.extensions_mut().insert(label);
            next.run(request).await
        }
        Err(refusal) => *refusal,
    }
}

/// The gateway key a request to `path` from `client` came with (`presented`, if any), or the
/// answer that refuses it: a wrong or missing key, a throttled address, a key over its limits.
fn admit(
    gw: &Gateway,
    client: Option<IpAddr>,
    path: &str,
    presented: Option<&[u8]>,
) -> Result<KeyLabel, Box<Response>> {
    if let Some(wait) = client.and_then(|ip| gw.auth_failures.check(ip).err()) {
        gw.metrics.reject("auth_throttled");
        return Err(Box::new(too_many_failures(wait)));
    }
    match authorize(gw, presented) {
        Ok(label) => {
            if path.starts_with("/v1/") {
                if let Some(refusal) = over_limit(gw, label) {
                    return Err(Box::new(refusal));
                }
            }
            Ok(label)
        }
        Err(error) => {
            if let Some(ip) = client {
                let _ = gw.auth_failures.take(ip);
            }
            Err(Box::new(error.into_response()))
        }
    }
}

/// The gateway's HTTP surface for one client connection. The forwarding endpoints (every
/// request's hot path) are answered here directly, with the same key check as the router's
/// middleware but without route matching, middleware boxing or request extensions; everything
/// else goes to [`app`]'s router, told the client's address.
#[derive(Clone)]
pub struct Edge {
    gw: Arc<Gateway>,
    router: Router,
    peer: SocketAddr,
}

impl Edge {
    pub fn new(gw: Arc<Gateway>, router: Router, peer: SocketAddr) -> Self {
        Self { gw, router, peer }
    }
}

/// The forwarding endpoint `method` and `path` name, if any.
fn forwarding(method: &str, path: &str) -> Option<Endpoint> {
    if method != "POST" {
        return None;
    }
    match path {
        "/v1/chat/completions" => Some(Endpoint::ChatCompletions),
        "/v1/embeddings" => Some(Endpoint::Embeddings),
        "/v1/responses" => Some(Endpoint::Responses),
        _ => None,
    }
}

impl hyper::service::Service<Request<Incoming>> for Edge {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        let path = request.uri().path();
        if let Some(endpoint) = forwarding(request.method().as_str(), path) {
            let presented = presented_key_in(request.headers());
            let key = match admit(&self.gw, Some(self.peer.ip()), path, presented) {
                Ok(key) => key,
                Err(refusal) => return Box::pin(std::future::ready(Ok(*refusal))),
            };
            let gw = self.gw.clone();
            return Box::pin(async move {
                let read = read_body(&gw, request.into_body()).await;
                Ok(handle(gw, endpoint, key, read).await)
            });
        }
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(self.peer));
        let mut router = self.router.clone();
        Box::pin(async move { router.call(request.map(Body::new)).await })
    }
}

/// The forwarding endpoints as the inbound edge's own HTTP/1.1 loop serves them (every
/// request's hot path): the same key check and handling as through [`Edge`], without hyper's
/// dispatcher, a header map or a body channel. What the loop does not take, [`Edge`] answers.
pub struct Forwarding {
    gw: Arc<Gateway>,
}

impl Forwarding {
    pub fn new(gw: Arc<Gateway>) -> Self {
        Self { gw }
    }
}

impl aiwatch_inbound::fast::FastPath for Forwarding {
    type Route = Endpoint;
    type Answer = Pin<Box<dyn Future<Output = Response> + Send>>;

    fn route(&self, method: &str, path: &str) -> Option<Endpoint> {
        forwarding(method, path)
    }

    fn max_body(&self) -> usize {
        self.gw.settings.max_request_bytes
    }

    fn body_timeout(&self) -> std::time::Duration {
        self.gw.settings.client_timeout
    }

    fn call(
        &self,
        endpoint: Endpoint,
        request: aiwatch_inbound::fast::FastRequest<'_>,
    ) -> Self::Answer {
        let presented = presented_key(|name| request.headers.get(name));
        let key = match admit(&self.gw, Some(request.peer.ip()), request.path, presented) {
            Ok(key) => key,
            Err(refusal) => return Box::pin(std::future::ready(*refusal)),
        };
        let read = match request.body {
            Ok(bytes) => Ok((bytes, false)),
            Err(aiwatch_inbound::fast::BodyTimedOut) => Err(BodyError::Timeout),
        };
        Box::pin(handle(self.gw.clone(), endpoint, key, read))
    }
}

/// A 429 with Retry-After when `key` is past its requests or tokens per minute.
fn over_limit(gw: &Gateway, key: crate::auth::KeyLabel) -> Option<Response> {
    let limiter = gw.key_limits.as_ref()?;
    let (which, wait) = limiter
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .admit(key, std::time::Instant::now())
        .err()?;
    gw.metrics.reject("key_limit");
    let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
    let limit = match which {
        crate::key_limits::Exceeded::Requests => gw.settings.key_requests_per_minute,
        crate::key_limits::Exceeded::Tokens => gw.settings.key_tokens_per_minute,
    }
    .unwrap_or(0);
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        which.as_str(),
        Some("rate_limit_exceeded"),
        format!(
            "this gateway key is over its limit of {limit} {} per minute; retry in {seconds} s",
            which.as_str()
        ),
    )
    .into_response();
    if let Ok(value) = http::HeaderValue::from_str(&seconds.to_string()) {
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, value);
    }
    Some(response)
}

fn too_many_failures(wait: std::time::Duration) -> Response {
    let seconds = wait.as_secs().max(1);
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "invalid_request_error",
        Some("too_many_failed_authentications"),
        format!(
            "too many requests with a wrong gateway key from this address; retry in {seconds} s"
        ),
    )
    .into_response();
    if let Ok(value) = http::HeaderValue::from_str(&seconds.to_string()) {
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, value);
    }
    response
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        Some("unknown_url"),
        "unknown endpoint; this gateway serves POST /v1/chat/completions, POST /v1/responses, POST /v1/embeddings and GET /v1/models",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        Some("method_not_allowed"),
        "this endpoint does not take that method",
    )
}

fn authorize(gw: &Gateway, presented: Option<&[u8]>) -> Result<KeyLabel, ApiError> {
    let Some(presented) = presented else {
        gw.metrics.reject("unauthorized");
        return Err(ApiError::unauthorized(
            "no gateway key: send it as `Authorization: Bearer <key>` (the OpenAI SDKs do, from api_key)",
        ));
    };
    gw.client_keys.check(presented).ok_or_else(|| {
        gw.metrics.reject("unauthorized");
        ApiError::unauthorized("this gateway key is not valid")
    })
}

async fn chat_completions(State(gw): State<Arc<Gateway>>, request: Request<Body>) -> Response {
    routed(gw, Endpoint::ChatCompletions, request).await
}

async fn embeddings(State(gw): State<Arc<Gateway>>, request: Request<Body>) -> Response {
    routed(gw, Endpoint::Embeddings, request).await
}

async fn responses(State(gw): State<Arc<Gateway>>, request: Request<Body>) -> Response {
    routed(gw, Endpoint::Responses, request).await
}

/// A forwarding request that came through the router, with the key its middleware found.
async fn routed(gw: Arc<Gateway>, endpoint: Endpoint, request: Request<Body>) -> Response {
    match request.extensions().get::<KeyLabel>().copied() {
        Some(key) => {
            let read = read_body(&gw, request.into_body()).await;
            handle(gw, endpoint, key, read).await
        }
        None => ApiError::unauthorized("no gateway key").into_response(),
    }
}

/// A request body read as it came (one piece, no copy, no list of frames), cut at the
/// gateway's cap (the flag says so) and given up at its client timeout.
async fn read_body<B>(gw: &Gateway, body: B) -> Result<(Bytes, bool), BodyError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let deadline = Instant::now() + gw.settings.client_timeout;
    read_capped(body, gw.settings.max_request_bytes, deadline).await
}

/// Answers a forwarding request whose body was read (`read`), from the client holding `key`.
async fn handle(
    gw: Arc<Gateway>,
    endpoint: Endpoint,
    key: KeyLabel,
    read: Result<(Bytes, bool), BodyError>,
) -> Response {
    let received = Instant::now();
    match parse(&gw, endpoint, key, read, received) {
        Ok(forwarded) => {
            let Some(route) = gw.routes.get(&forwarded.alias) else {
                return unknown_model(&gw, &forwarded.alias).into_response();
            };
            forward(gw.clone(), route, forwarded).await
        }
        Err(error) => error.into_response(),
    }
}

fn parse(
    gw: &Gateway,
    endpoint: Endpoint,
    key: KeyLabel,
    read: Result<(Bytes, bool), BodyError>,
    received: Instant,
) -> Result<Forward, ApiError> {
    let cap = gw.settings.max_request_bytes;
    let client_timeout = gw.settings.client_timeout;
    let bytes = match read {
        Err(BodyError::Timeout) => {
            gw.metrics.reject("slow_client");
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "invalid_request_error",
                Some("request_timeout"),
                format!(
                    "the request body did not arrive within {} s (client_timeout)",
                    client_timeout.as_secs_f64()
                ),
            ));
        }
        Ok((_, true)) => {
            gw.metrics.reject("too_large");
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                Some("request_too_large"),
                format!("the request body is larger than this gateway's limit of {cap} bytes (max_request_bytes)"),
            ));
        }
        Err(BodyError::Broken(e)) => {
            gw.metrics.reject("bad_request");
            return Err(ApiError::invalid_request(format!(
                "the request body could not be read: {e}"
            )));
        }
        Ok((bytes, false)) => bytes,
    };
    let body = RequestBody::parse_bytes(bytes).map_err(|e| {
        gw.metrics.reject("bad_request");
        ApiError::invalid_request(format!(
            "the request body is not a JSON object ({e}); send the same JSON you would send to OpenAI"
        ))
    })?;
    let bad = |message: &str, param: &'static str| {
        gw.metrics.reject("bad_request");
        ApiError::invalid_request(message).with_param(param)
    };
    let alias = match body.parsed::<String>("model") {
        Some(Ok(m)) if !m.is_empty() => m,
        Some(_) => {
            return Err(bad(
                "`model` must be a string: one of this gateway's route names",
                "model",
            ))
        }
        None => {
            return Err(bad(
                &format!(
                    "you must provide a model parameter; this gateway serves: {}",
                    gw.aliases.join(", ")
                ),
                "model",
            ))
        }
    };
    let stream = match body.parsed::<Option<bool>>("stream") {
        None | Some(Ok(None)) => false,
        Some(Ok(Some(b))) => b,
        Some(Err(())) => return Err(bad("`stream` must be true or false", "stream")),
    };
    if endpoint == Endpoint::ChatCompletions && !body.is_array("messages") {
        return Err(bad("`messages` must be an array of messages", "messages"));
    }
    if matches!(endpoint, Endpoint::Embeddings | Endpoint::Responses) && body.raw("input").is_none()
    {
        return Err(bad("`input` is required", "input"));
    }
    let client_wants_usage = body
        .parsed::<Value>("stream_options")
        .and_then(Result::ok)
        .and_then(|o| o.get("include_usage").and_then(Value::as_bool))
        .unwrap_or(false);
    // An unknown alias is answered by `handle`, which looks the route up once.
    Ok(Forward {
        key,
        endpoint,
        alias,
        body,
        stream,
        client_wants_usage,
        received,
    })
}

fn unknown_model(gw: &Gateway, alias: &str) -> ApiError {
    gw.metrics.reject("unknown_model");
    let suggestions = gw.suggest(alias);
    let hint = match suggestions.as_slice() {
        [] => String::new(),
        [one] => format!(" Did you mean `{one}`?"),
        many => format!(" Did you mean one of: {}?", many.join(", ")),
    };
    ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        Some("model_not_found"),
        format!(
            "The model `{alias}` does not exist on this gateway; it serves: {}.{hint}",
            gw.aliases.join(", ")
        ),
    )
    .with_param("model")
}

fn model_object(gw: &Gateway, alias: &str) -> Value {
    json!({"id": alias, "object": "model", "created": gw.started_unix, "owned_by": "aiwatch-gateway"})
}

async fn models(State(gw): State<Arc<Gateway>>) -> Result<Json<Value>, ApiError> {
    let data: Vec<Value> = gw.aliases.iter().map(|a| model_object(&gw, a)).collect();
    Ok(Json(json!({"object": "list", "data": data})))
}

async fn model(
    State(gw): State<Arc<Gateway>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if gw.routes.contains_key(&id) {
        Ok(Json(model_object(&gw, &id)))
    } else {
        Err(unknown_model(&gw, &id))
    }
}

/// Every upstream's breaker: state, share, reason and when it is tried next.
async fn admin_upstreams(State(gw): State<Arc<Gateway>>) -> Result<Json<Value>, ApiError> {
    let now = Instant::now();
    let upstreams: Vec<Value> = gw
        .upstreams
        .iter()
        .map(|up| {
            let view = up.health.view(now);
            let routes: Vec<&str> = gw
                .aliases
                .iter()
                .filter(|a| {
                    gw.routes[a.as_str()]
                        .entries
                        .iter()
                        .any(|e| std::ptr::eq(&gw.upstreams[e.upstream], up))
                })
                .map(String::as_str)
                .collect();
            let mut value = json!({
                "upstream": up.id,
                "service": up.service.name.as_str(),
                "model": up.model,
                "routes": routes,
                "baseline_ttft_ms": up.health.baseline_ms(),
            });
            if let Some(obj) = value.as_object_mut() {
                if let Ok(Value::Object(fields)) = serde_json::to_value(view) {
                    obj.extend(fields);
                }
            }
            value
        })
        .collect();
    Ok(Json(json!({"upstreams": upstreams})))
}

/// Usage per gateway key and upstream, with the spike flag.
async fn admin_usage(State(gw): State<Arc<Gateway>>) -> Result<Json<Value>, ApiError> {
    let report = gw.ledger.report(gw.minute());
    let limits = gw.key_limits.as_ref().map(|limiter| {
        let mut limiter = limiter.lock().unwrap_or_else(|p| p.into_inner());
        let per_key: serde_json::Map<String, Value> = limiter
            .view(std::time::Instant::now())
            .into_iter()
            .map(|(key, view)| (key.to_string(), json!(view)))
            .collect();
        json!({
            "requests_per_minute": gw.settings.key_requests_per_minute,
            "tokens_per_minute": gw.settings.key_tokens_per_minute,
            "keys": per_key,
        })
    });
    Ok(Json(json!({"keys": report, "limits": limits})))
}

async fn metrics(State(gw): State<Arc<Gateway>>) -> impl IntoResponse {
    let now = Instant::now();
    for up in &gw.upstreams {
        let view = up.health.view(now);
        let labels = crate::metrics::UpstreamLabels {
            upstream: up.id.clone(),
        };
        gw.metrics
            .breaker_state
            .get_or_create(&labels)
            .set(view.state.gauge());
        gw.metrics
            .upstream_share
            .get_or_create(&labels)
            .set(i64::from(view.share_percent));
    }
    gw.judge_usage();
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        gw.metrics.encode(),
    )
}
