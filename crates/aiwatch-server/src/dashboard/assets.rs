//! The dashboard's stylesheet, script and icon, embedded in the binary and served under
//! `/assets/` with a content hash in their URLs so browsers may cache them for good.

use std::sync::OnceLock;

use axum::extract::{Path, Query};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

const CSS: &str = include_str!("../../assets/dashboard.css");
const JS: &str = include_str!("../../assets/dashboard.js");
const FAVICON: &str = include_str!("../../assets/favicon.svg");

/// Every asset: name, content type, body.
const ASSETS: [(&str, &str, &str); 3] = [
    ("dashboard.css", "text/css; charset=utf-8", CSS),
    ("dashboard.js", "text/javascript; charset=utf-8", JS),
    ("favicon.svg", "image/svg+xml", FAVICON),
];

/// FNV-1a over the assets: changes whenever one of them does.
fn version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for (_, _, body) in ASSETS {
            for byte in body.bytes() {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        }
        format!("{:08x}", hash as u32)
    })
}

/// The URL of an asset, versioned.
pub fn url(name: &str) -> String {
    format!("/assets/{name}?v={}", version())
}

#[derive(Deserialize)]
pub struct Version {
    v: Option<String>,
}

/// `GET /assets/{name}`: immutable when asked for the current version, revalidated otherwise.
pub async fn serve(Path(name): Path<String>, Query(query): Query<Version>) -> Response {
    let Some((_, content_type, body)) = ASSETS.iter().find(|(n, ..)| *n == name) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let cache = if query.v.as_deref() == Some(version()) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        *body,
    )
        .into_response()
}
