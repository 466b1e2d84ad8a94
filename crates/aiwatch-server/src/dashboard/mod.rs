//! The dashboard `aiwatch serve` shows at its root: server-rendered HTML pages (overview,
//! service, incidents, "Is it just me?"), SVG badges, an embeddable widget and the embedded
//! assets. Script only enhances (refresh, tooltips, local times); everything works without it.
//!
//! Routes: `/`, `/services/{name}?range=24h|7d|30d|90d`, `/incidents?service=`, `/just-me`
//! (GET or POST), `/badge/{name}.svg`, `/widget/{name}`, `/assets/{file}`; any other path that
//! is not under `/api/` gets the HTML 404 page.

pub mod assets;
pub mod badge;
pub mod cache;
pub mod charts;
pub mod history;
pub mod incidents;
pub mod just_me;
pub mod layout;
pub mod overview;
pub mod present;
pub mod reports;
pub mod service;

use std::sync::Arc;

use aiwatch_core::catalog::closest_names;
use aiwatch_core::Service;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::api::ApiError;
use crate::engine::Engine;

type Shared = Arc<Engine>;

/// The dashboard's routes, merged into `api::app`.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/",
            get(overview::handler).layer(axum::Extension(Arc::new(cache::HistoryCache::new()))),
        )
        .route("/services/{name}", get(service::handler))
        .route("/incidents", get(incidents::handler))
        .route("/just-me", just_me::method_router())
        .route("/report", axum::routing::post(reports::post))
        .route("/badge/{file}", get(badge::badge))
        .route("/widget/{name}", get(badge::widget))
        .route("/assets/{file}", get(assets::serve))
}

/// What every unmatched path gets: JSON under `/api/`, the HTML 404 page elsewhere.
pub async fn fallback(
    axum::extract::State(engine): axum::extract::State<Shared>,
    uri: Uri,
) -> Response {
    if uri.path() == "/api" || uri.path().starts_with("/api/") {
        return ApiError::not_found("no such endpoint; see docs/openapi.yaml").into_response();
    }
    not_found(&engine)
}

/// The HTML 404 page for an address that leads nowhere.
pub(crate) fn not_found(engine: &Engine) -> Response {
    layout::error_page(
        &engine.options.page_name,
        StatusCode::NOT_FOUND,
        "Page not found",
        "There is no page at this address.",
        &[],
    )
}

/// The watched service called `name`, or the HTML 404 page with close names to try.
#[allow(
    clippy::result_large_err,
    reason = "the error is the 404 page handlers return as is; it is built once per bad request"
)]
pub(crate) fn find_service<'a>(engine: &'a Engine, name: &str) -> Result<&'a Service, Response> {
    engine
        .services
        .iter()
        .find(|s| s.name.as_str() == name)
        .ok_or_else(|| unknown_service(engine, name, "/services/"))
}

/// The 404 page for a service name nobody watches, suggesting close ones under `prefix`.
pub(crate) fn unknown_service(engine: &Engine, name: &str, prefix: &str) -> Response {
    let suggestions: Vec<(String, String)> =
        closest_names(name, engine.services.iter().map(|s| s.name.as_str()))
            .into_iter()
            .map(|n| (format!("{prefix}{n}"), n))
            .collect();
    let shown: String = name.chars().take(80).collect();
    layout::error_page(
        &engine.options.page_name,
        StatusCode::NOT_FOUND,
        "Unknown service",
        &format!("aiwatch does not watch a service called “{shown}”."),
        &suggestions,
    )
}

/// The 400 page for input that is not one of the accepted values.
pub(crate) fn bad_request(engine: &Engine, message: &str) -> Response {
    layout::error_page(
        &engine.options.page_name,
        StatusCode::BAD_REQUEST,
        "Bad request",
        message,
        &[],
    )
}

/// The 500 page when the store cannot be read.
pub(crate) fn store_failed(engine: &Engine, error: &aiwatch_store::Error) -> Response {
    tracing::error!(%error, "dashboard: store read failed");
    layout::error_page(
        &engine.options.page_name,
        StatusCode::INTERNAL_SERVER_ERROR,
        "The history could not be read",
        "aiwatch could not read its store; the log says why. Live state is still served by /api/services.",
        &[],
    )
}

/// Runs a page's store reads and rendering off the async threads.
pub(crate) async fn blocking(
    engine: &Shared,
    f: impl FnOnce(&Engine) -> Response + Send + 'static,
) -> Response {
    let worker = engine.clone();
    match tokio::task::spawn_blocking(move || f(&worker)).await {
        Ok(response) => response,
        Err(_) => layout::error_page(
            &engine.options.page_name,
            StatusCode::INTERNAL_SERVER_ERROR,
            "The page could not be rendered",
            "Rendering was interrupted.",
            &[],
        ),
    }
}
