//! The HTTP API: JSON views of services, history, uptime, latency and incidents, the
//! Statuspage-compatible endpoints, Prometheus metrics and health checks. `app()` builds the
//! router so tests can drive it without a socket.

use std::collections::HashMap;
use std::sync::Arc;

use aiwatch_core::assess::Incident;
use aiwatch_core::observation::{Component, Region};
use aiwatch_core::ServiceName;
use aiwatch_core::Status;
use aiwatch_store::{Granularity, IncidentQuery, Selector, TimeRange};
use axum::extract::{Path, Query, State as AxumState};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use crate::engine::Engine;
use crate::statuspage;

/// An API error: a status and a JSON body `{"error": "…"}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

impl From<aiwatch_store::Error> for ApiError {
    fn from(e: aiwatch_store::Error) -> Self {
        tracing::error!(error = %e, "store read failed");
        Self::internal("the store could not be read")
    }
}

type Shared = Arc<Engine>;
type ApiResult<T> = Result<T, ApiError>;
type Params = Query<HashMap<String, String>>;

/// The router of `aiwatch serve`.
pub fn app(engine: Shared) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/services", get(services))
        .route("/api/services/{name}", get(service))
        .route("/api/services/{name}/history", get(history))
        .route("/api/services/{name}/uptime", get(uptime))
        .route("/api/services/{name}/latency", get(latency))
        .route("/api/services/{name}/regions", get(regions))
        .route("/api/v1/services/{name}/regions", get(regions))
        .route("/api/v1/agents", get(crate::agents::list))
        .route("/api/v1/agent/assignments", get(crate::agents::assignments))
        .route(
            "/api/v1/agent/observations",
            axum::routing::post(crate::agents::push).layer(axum::extract::DefaultBodyLimit::max(
                aiwatch_core::agent_wire::MAX_PUSH_BYTES,
            )),
        )
        .route("/api/incidents", get(incidents))
        .route("/api/incidents/{id}", get(incident))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/reports", axum::routing::post(post_report))
        .route("/api/v1/services/{name}/reports", get(service_reports))
        .route("/api/v1/official-lag", get(official_lag))
        .route("/api/v2/summary.json", get(statuspage::summary))
        .route("/api/v2/status.json", get(statuspage::status))
        .route("/api/v2/components.json", get(statuspage::components))
        .route("/api/v2/incidents.json", get(statuspage::incidents))
        .route(
            "/api/v2/incidents/unresolved.json",
            get(statuspage::unresolved),
        )
        .route(
            "/api/v2/scheduled-maintenances.json",
            get(statuspage::maintenances),
        )
        .merge(crate::dashboard::routes())
        .fallback(crate::dashboard::fallback)
        .with_state(engine)
}

async fn readyz(AxumState(engine): AxumState<Shared>) -> Response {
    // Asking the store may wait for a connection (PostgreSQL): off the async workers.
    let ready = tokio::task::spawn_blocking(move || engine.is_ready())
        .await
        .unwrap_or(false);
    if ready {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}

/// Publishes every service's current assessment and encodes the registry — seconds of CPU at
/// tens of thousands of series, so it runs off the async workers that schedule the checks.
async fn metrics(AxumState(engine): AxumState<Shared>) -> Response {
    let text = tokio::task::spawn_blocking(move || {
        engine.publish_states();
        if engine.alerting().is_some() {
            if let Ok(counts) = engine.store.delivery_counts() {
                let pending = counts
                    .iter()
                    .find(|(s, _)| *s == aiwatch_store::DeliveryState::Pending)
                    .map_or(0, |(_, n)| *n);
                engine
                    .metrics
                    .alerts_pending
                    .set(i64::try_from(pending).unwrap_or(i64::MAX));
            }
        }
        for service in &engine.services {
            let level = engine
                .crowd
                .reading(&service.name)
                .map_or(0, |(c, _)| match c.level {
                    aiwatch_core::crowd::CrowdLevel::None => 0,
                    aiwatch_core::crowd::CrowdLevel::Possible => 1,
                    aiwatch_core::crowd::CrowdLevel::Likely => 2,
                });
            engine
                .metrics
                .crowd_level
                .get_or_create(&crate::metrics::ServiceLabels {
                    service: service.name.to_string(),
                })
                .set(level);
        }
        for (service, lag) in engine.crowd.lags() {
            for (quantile, value) in [("0.5", lag.median_seconds), ("0.9", lag.p90_seconds)] {
                if let Some(value) = value {
                    engine
                        .metrics
                        .official_lag
                        .get_or_create(&crate::metrics::LagLabels {
                            service: service.to_string(),
                            quantile,
                        })
                        .set(value);
                }
            }
        }
        engine.metrics.encode()
    })
    .await;
    match text {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => ApiError::internal("the metrics could not be gathered").into_response(),
    }
}

fn find_service(engine: &Engine, name: &str) -> ApiResult<ServiceName> {
    engine
        .services
        .iter()
        .find(|s| s.name.as_str() == name)
        .map(|s| s.name.clone())
        .ok_or_else(|| ApiError::not_found(format!("unknown service `{name}`")))
}

#[derive(Serialize)]
struct ComponentRow {
    component: Component,
    region: Region,
    state: Status,
    scope: aiwatch_core::Scope,
    cause: aiwatch_core::Cause,
    since: Option<DateTime<Utc>>,
    description: String,
}

fn service_json(engine: &Engine, name: &ServiceName, detail: bool) -> Value {
    let Some(service) = engine.services.iter().find(|s| &s.name == name) else {
        return Value::Null;
    };
    let Some(now) = engine.service_now(name) else {
        return Value::Null;
    };
    let rows: Vec<ComponentRow> = now
        .components
        .iter()
        .map(|c| ComponentRow {
            component: c.key.component,
            region: c.key.region.clone(),
            state: c.assessment.status,
            scope: c.assessment.scope,
            cause: c.assessment.cause,
            since: c.since,
            description: c.description.clone(),
        })
        .collect();
    let a = now.assessment;
    let official = engine.official_of(name);
    let open: Vec<Incident> = engine
        .open_incidents()
        .into_iter()
        .filter(|i| &i.key.service == name)
        .collect();
    let latest = engine.latest_verdict(name);
    let mut value = json!({
        "name": service.name,
        "title": service.title,
        "kind": service.kind,
        "state": a.status,
        "scope": a.scope,
        "failing_regions": now.failing_regions,
        "cause": a.cause,
        "summary": now.headline,
        "provenance": a.provenance,
        "notice": a.notice.map(|n| json!({"kind": n, "text": n.text(&service.title)})),
        "components": rows,
        "official": {
            "signal": official.view.as_ref().map(|v| v.signal),
            "indicator": official.view.as_ref().and_then(|v| v.indicator.as_ref().map(|i| i.raw().to_owned())),
            "description": official.view.as_ref().and_then(|v| v.description.clone()),
            "unavailable": official.unavailable,
        },
        "open_incidents": open.len(),
        "latest": latest.as_ref().map(|v| json!({
            "status": v.status, "scope": v.scope, "cause": v.cause,
            "summary": v.summary, "checked_at": v.checked_at,
        })),
    });
    if detail {
        value["incidents"] = json!(open);
        value["official"]["view"] = json!(official.view);
        value["latest"] = json!(latest);
    }
    value
}

async fn services(AxumState(engine): AxumState<Shared>) -> Json<Value> {
    let list: Vec<Value> = engine
        .services
        .iter()
        .map(|s| service_json(&engine, &s.name, false))
        .collect();
    Json(json!(list))
}

async fn service(
    AxumState(engine): AxumState<Shared>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let name = find_service(&engine, &name)?;
    Ok(Json(service_json(&engine, &name, true)))
}

async fn regions(
    AxumState(engine): AxumState<Shared>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let name = find_service(&engine, &name)?;
    let Some(now) = engine.service_now(&name) else {
        return Err(ApiError::not_found(format!("no service `{name}`")));
    };
    let regions: Vec<Value> = now
        .regions
        .iter()
        .map(|r| {
            let contact = engine.agents.contact(&r.region);
            let components: Vec<Value> = now
                .components
                .iter()
                .filter(|c| c.key.region == r.region)
                .map(|c| {
                    json!({
                        "component": c.key.component,
                        "state": c.assessment.status,
                        "cause": c.assessment.cause,
                        "since": c.since,
                        "description": c.description,
                    })
                })
                .collect();
            let local = r.region.as_str() == aiwatch_core::observation::LOCAL_REGION;
            json!({
                "region": r.region,
                "agent": !local,
                "state": r.assessment.status,
                "cause": r.assessment.cause,
                "counted": r.role,
                "silent": r.silent,
                "last_contact": if local { None } else { contact.as_ref().map(|c| c.last_contact) },
                "clock_offset_ms": contact.as_ref().map(|c| c.clock_offset_ms),
                "components": components,
            })
        })
        .collect();
    Ok(Json(json!({
        "service": name,
        "state": now.assessment.status,
        "scope": now.assessment.scope,
        "failing_regions": now.failing_regions,
        "quorum": engine.agents.quorum(),
        "regions": regions,
    })))
}

/// Reads `from`/`to` (RFC 3339) with a default span ending now.
fn range(params: &HashMap<String, String>, default_span: Duration) -> ApiResult<TimeRange> {
    let parse = |key: &str| -> ApiResult<Option<DateTime<Utc>>> {
        params
            .get(key)
            .map(|raw| {
                DateTime::parse_from_rfc3339(raw)
                    .map(|d| d.to_utc())
                    .map_err(|_| ApiError::bad_request(format!("`{key}` must be an RFC 3339 time like 2026-11-25T12:00:00Z, not `{raw}`")))
            })
            .transpose()
    };
    let to = parse("to")?.unwrap_or_else(Utc::now);
    let from = parse("from")?.unwrap_or(to - default_span);
    if from >= to {
        return Err(ApiError::bad_request("`from` must be before `to`"));
    }
    if to - from > Duration::days(400) {
        return Err(ApiError::bad_request("a range may span at most 400 days"));
    }
    Ok(TimeRange::new(from, to))
}

fn selector(name: ServiceName, params: &HashMap<String, String>) -> ApiResult<Selector> {
    let mut selector = Selector::service(name);
    if let Some(raw) = params.get("component") {
        let component = Component::parse(raw).ok_or_else(|| {
            ApiError::bad_request(format!(
                "`component` must be one of api, web, official, not `{raw}`"
            ))
        })?;
        selector = selector.component(component);
    }
    if let Some(r) = params.get("region") {
        selector = selector.region(r.as_str());
    }
    Ok(selector)
}

fn limit(params: &HashMap<String, String>, default: usize, max: usize) -> ApiResult<usize> {
    match params.get("limit") {
        None => Ok(default),
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "`limit` must be a number from 1 to {max}, not `{raw}`"
                ))
            }),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ApiError::internal("the store read was interrupted"))?
}

async fn history(
    AxumState(engine): AxumState<Shared>,
    Path(name): Path<String>,
    Query(params): Params,
) -> ApiResult<Json<Value>> {
    let name = find_service(&engine, &name)?;
    let granularity = params
        .get("granularity")
        .map_or("minute", String::as_str)
        .to_owned();
    let default_span = match granularity.as_str() {
        "day" => Duration::days(90),
        "hour" => Duration::days(7),
        _ => Duration::hours(24),
    };
    let range = range(&params, default_span)?;
    let selector = selector(name, &params)?;
    let store = engine.store.clone();
    match granularity.as_str() {
        "raw" => {
            let limit = limit(&params, 1000, 10_000)?;
            let rows = blocking(move || Ok(store.observations(&selector, range, limit)?)).await?;
            Ok(Json(
                json!({"granularity": "raw", "from": range.from, "to": range.to, "observations": rows}),
            ))
        }
        "minute" | "hour" | "day" => {
            let g = match granularity.as_str() {
                "day" => Granularity::Day,
                "hour" => Granularity::Hour,
                _ => Granularity::Minute,
            };
            let rows = blocking(move || Ok(store.rollups(&selector, range, g)?)).await?;
            let buckets: Vec<Value> = rows
                .iter()
                .map(|r| {
                    json!({
                        "component": r.key.component, "region": r.key.region, "start": r.start,
                        "up": r.counts.up, "degraded": r.counts.degraded, "down": r.counts.down, "unknown": r.counts.unknown,
                        "latency_ms": {"p50": r.latency.quantile(0.5), "p95": r.latency.quantile(0.95), "mean": r.latency.mean_ms()},
                    })
                })
                .collect();
            Ok(Json(
                json!({"granularity": granularity, "from": range.from, "to": range.to, "buckets": buckets}),
            ))
        }
        other => Err(ApiError::bad_request(format!(
            "`granularity` must be raw, minute, hour or day, not `{other}`"
        ))),
    }
}

async fn uptime(
    AxumState(engine): AxumState<Shared>,
    Path(name): Path<String>,
    Query(params): Params,
) -> ApiResult<Json<Value>> {
    let name = find_service(&engine, &name)?;
    let interval = engine
        .services
        .iter()
        .find(|s| s.name == name)
        .and_then(|s| s.interval)
        .unwrap_or(engine.options.default_interval);
    let selector = selector(name, &params)?.source(aiwatch_core::observation::Source::Probe);
    let store = engine.store.clone();
    let now = Utc::now();
    let out = blocking(move || {
        let mut out = serde_json::Map::new();
        for (label, span) in [
            ("24h", Duration::hours(24)),
            ("7d", Duration::days(7)),
            ("30d", Duration::days(30)),
            ("90d", Duration::days(90)),
        ] {
            let uptime = store.uptime(&selector, TimeRange::last(span, now), Some(interval))?;
            out.insert(label.to_owned(), json!(uptime));
        }
        Ok(out)
    })
    .await?;
    Ok(Json(Value::Object(out)))
}

async fn latency(
    AxumState(engine): AxumState<Shared>,
    Path(name): Path<String>,
    Query(params): Params,
) -> ApiResult<Json<Value>> {
    let name = find_service(&engine, &name)?;
    let range = range(&params, Duration::hours(24))?;
    let selector = selector(name, &params)?.source(aiwatch_core::observation::Source::Probe);
    let store = engine.store.clone();
    let q =
        blocking(move || Ok(store.latency_percentiles(&selector, range, &[0.5, 0.95, 0.99])?))
            .await?;
    Ok(Json(
        json!({"from": range.from, "to": range.to, "total_ms": {"p50": q[0], "p95": q[1], "p99": q[2]}}),
    ))
}

async fn incidents(
    AxumState(engine): AxumState<Shared>,
    Query(params): Params,
) -> ApiResult<Json<Value>> {
    let service = params
        .get("service")
        .map(|s| find_service(&engine, s))
        .transpose()?;
    let open_only = match params.get("open").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "`open` must be true or false, not `{other}`"
            )))
        }
    };
    let range = if params.contains_key("from") || params.contains_key("to") {
        Some(range(&params, Duration::days(90))?)
    } else {
        None
    };
    let query = IncidentQuery {
        service,
        from: range.map(|r| r.from),
        to: range.map(|r| r.to),
        limit: limit(&params, 100, 1000)?,
        open_only,
    };
    let store = engine.store.clone();
    let list = blocking(move || Ok(store.incidents(&query)?)).await?;
    Ok(Json(json!(list)))
}

async fn incident(
    AxumState(engine): AxumState<Shared>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    if let Some(open) = engine.open_incidents().into_iter().find(|i| i.id == id) {
        return Ok(Json(json!(open)));
    }
    let store = engine.store.clone();
    let lookup = id.clone();
    let found = blocking(move || Ok(store.incident(&lookup)?)).await?;
    found
        .map(|i| Json(json!(i)))
        .ok_or_else(|| ApiError::not_found(format!("no incident `{id}`")))
}

/// `GET /api/v1/alerts`: the configured channels, the outbox's counts, and its deliveries
/// (newest first; `state=pending|sent|dead`, `alert=NAME`, `limit`).
async fn alerts(
    AxumState(engine): AxumState<Shared>,
    Query(params): Params,
) -> ApiResult<Json<Value>> {
    let state = params
        .get("state")
        .map(|raw| {
            aiwatch_store::DeliveryState::parse(raw).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "`state` must be pending, sent or dead, not `{raw}`"
                ))
            })
        })
        .transpose()?;
    let channels: Vec<Value> = engine
        .alerting()
        .map(|a| {
            let mut names: Vec<&str> = a.deliverer.channel_names().collect();
            names.sort_unstable();
            names
                .into_iter()
                .filter_map(|name| a.deliverer.channel(name))
                .map(|c| json!({"name": c.name(), "kind": c.config.kind.as_str()}))
                .collect()
        })
        .unwrap_or_default();
    if let Some(alert) = params.get("alert") {
        if !channels.iter().any(|c| c["name"] == alert.as_str()) {
            return Err(ApiError::not_found(format!("no alert is named `{alert}`")));
        }
    }
    let query = aiwatch_store::DeliveryQuery {
        state,
        alert: params.get("alert").cloned(),
        limit: limit(&params, 100, 1000)?,
        ..aiwatch_store::DeliveryQuery::default()
    };
    let store = engine.store.clone();
    let (list, counts) =
        blocking(move || Ok((store.deliveries(&query)?, store.delivery_counts()?))).await?;
    let count = |s: aiwatch_store::DeliveryState| {
        counts
            .iter()
            .find(|(state, _)| *state == s)
            .map_or(0, |(_, n)| *n)
    };
    let deliveries: Vec<Value> = list
        .into_iter()
        .map(|d| {
            json!({
                "id": d.id,
                "alert": d.alert,
                "state": d.state,
                "event": d.message.event,
                "idempotency_key": d.message.idempotency_key,
                "incident_id": d.message.incident_id,
                "service": d.message.service,
                "title": d.message.title,
                "attempts": d.attempts,
                "next_attempt_at": (d.state == aiwatch_store::DeliveryState::Pending).then_some(d.next_at),
                "created_at": d.created_at,
                "updated_at": d.updated_at,
                "last_status": d.last_status,
                "last_error": d.last_error,
            })
        })
        .collect();
    Ok(Json(json!({
        "channels": channels,
        "counts": {
            "pending": count(aiwatch_store::DeliveryState::Pending),
            "sent": count(aiwatch_store::DeliveryState::Sent),
            "dead": count(aiwatch_store::DeliveryState::Dead),
        },
        "deliveries": deliveries,
    })))
}

/// The reporter's token: the `X-Aiwatch-Reporter` header, else the `aiwatch_reporter` cookie;
/// `None` when neither is there.
pub fn reporter_token(headers: &axum::http::HeaderMap) -> Option<String> {
    if let Some(token) = headers
        .get(crate::reports::HEADER)
        .and_then(|v| v.to_str().ok())
    {
        return Some(token.trim().to_owned());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == crate::reports::COOKIE).then(|| value.to_owned())
        })
}

/// The `Set-Cookie` value that gives a browser its reporter token for a year.
pub fn reporter_cookie(token: &str) -> String {
    format!(
        "{}={token}; Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax",
        crate::reports::COOKIE
    )
}

/// Takes one report for `engine`: the token (a new one when the client has none), the
/// outcome, and the cookie to set when a token was made.
pub async fn take_report(
    engine: &Shared,
    headers: &axum::http::HeaderMap,
    client: Option<std::net::IpAddr>,
    incoming: crate::reports::Incoming,
) -> (Result<bool, crate::reports::Refusal>, Option<String>) {
    let (token, cookie) = match reporter_token(headers) {
        Some(token) => (token, None),
        None => {
            let token = crate::reports::ReportDesk::new_token();
            let cookie = reporter_cookie(&token);
            (token, Some(cookie))
        }
    };
    let engine = engine.clone();
    let taken = tokio::task::spawn_blocking(move || {
        let names: Vec<ServiceName> = engine.services.iter().map(|s| s.name.clone()).collect();
        engine
            .reports
            .take(&*engine.store, &names, incoming, &token, client, Utc::now())
    })
    .await
    .unwrap_or(Err(crate::reports::Refusal::Store));
    (taken, cookie)
}

/// `POST /api/v1/reports`: `{service, symptom, region?, comment?}` → 202 `{"counted": …}`.
async fn post_report(
    AxumState(engine): AxumState<Shared>,
    client: Option<axum::extract::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if body.len() > 8 * 1024 {
        return ApiError::bad_request("a report is at most 8 KiB").into_response();
    }
    let incoming: crate::reports::Incoming = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return ApiError::bad_request(format!(
                "the body must be JSON {{\"service\", \"symptom\", \"region\"?, \"comment\"?}}: {e}"
            ))
            .into_response()
        }
    };
    let (taken, cookie) =
        take_report(&engine, &headers, client.map(|c| c.0 .0.ip()), incoming).await;
    let mut response = match taken {
        Ok(counted) => (StatusCode::ACCEPTED, Json(json!({ "counted": counted }))).into_response(),
        Err(crate::reports::Refusal::Invalid(message)) => {
            ApiError::bad_request(message).into_response()
        }
        Err(crate::reports::Refusal::TooMany(wait)) => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, wait.as_secs().max(1).to_string())],
            Json(json!({ "error": "too many reports from this reporter or address; try again later" })),
        )
            .into_response(),
        Err(crate::reports::Refusal::Store) => {
            ApiError::internal("the report could not be saved").into_response()
        }
    };
    if let Some(cookie) = cookie {
        if let Ok(value) = axum::http::HeaderValue::from_str(&cookie) {
            response.headers_mut().insert(header::SET_COOKIE, value);
        }
    }
    response
}

/// `GET /api/v1/services/{name}/reports`: what people report about a service now.
async fn service_reports(
    AxumState(engine): AxumState<Shared>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let service = find_service(&engine, &name)?;
    let summary = crate::crowd::summary(&engine, &service).await?;
    Ok(Json(json!(summary)))
}

/// `GET /api/v1/official-lag`: per service, how late its official page acknowledged the
/// incidents aiwatch saw first over the last 90 days.
async fn official_lag(AxumState(engine): AxumState<Shared>) -> Json<Value> {
    let lags = engine.crowd.lags();
    let list: Vec<Value> = engine
        .services
        .iter()
        .filter_map(|s| {
            let lag = lags.get(&s.name)?;
            let page = s
                .status
                .as_ref()
                .and_then(|p| aiwatch_core::network::url_host(p.url()).map(str::to_owned));
            Some(json!({
                "service": s.name,
                "status_page": page,
                "acknowledged": lag.acknowledged,
                "never_acknowledged": lag.never_acknowledged,
                "median_seconds": lag.median_seconds,
                "p90_seconds": lag.p90_seconds,
                "sentence": lag.sentence(page.as_deref().unwrap_or("The official page")),
            }))
        })
        .collect();
    Json(json!(list))
}
