//! Who may read what. An optional token (`[server] auth_token_env`) guards the JSON API and
//! `/metrics`; the dashboard, badges and the Statuspage-compatible view are public read-only
//! when `[server] public = true` (the default) and behind the same token otherwise. `/healthz`
//! and `/readyz` stay open for load balancers. The token is accepted as `Authorization: Bearer`
//! (scripts, Prometheus) or as the password of HTTP Basic auth (a browser's own prompt), and is
//! compared in constant time.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine as _;
use subtle::ConstantTimeEq;

/// The shortest token accepted: long enough that guessing it over HTTP is hopeless.
pub const MIN_TOKEN_LEN: usize = 24;

/// The access rules of one server.
#[derive(Clone, Default)]
pub struct Access {
    token: Option<String>,
    /// The dashboard and the Statuspage-compatible view need no token.
    public: bool,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .field("public", &self.public)
            .finish()
    }
}

impl Access {
    /// No token: everything is open (the default on loopback).
    pub fn open() -> Self {
        Self {
            token: None,
            public: true,
        }
    }

    /// A token guards the API and metrics, and the dashboard too unless `public`. Refuses a
    /// token shorter than [`MIN_TOKEN_LEN`].
    pub fn with_token(token: &str, public: bool) -> Result<Self, String> {
        let token = token.trim();
        if token.chars().count() < MIN_TOKEN_LEN {
            return Err(format!(
                "the token is {} characters; use at least {MIN_TOKEN_LEN} (e.g. `openssl rand -hex 24`)",
                token.chars().count()
            ));
        }
        Ok(Self {
            token: Some(token.to_owned()),
            public,
        })
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Whether a request with these headers may read `path`.
    fn allows(&self, path: &str, authorization: Option<&HeaderValue>) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        match class(path) {
            Class::Probe | Class::Agent => true,
            Class::Public if self.public => true,
            Class::Public | Class::Private => presented(authorization).is_some_and(|given| {
                given.len() == token.len() && bool::from(given.as_bytes().ct_eq(token.as_bytes()))
            }),
        }
    }
}

/// What a path is, for access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// Liveness and readiness, for load balancers.
    Probe,
    /// What a status page shows: dashboard pages, badges, widgets, assets, the
    /// Statuspage-compatible view; and problem reports, which its form posts.
    Public,
    /// The JSON API and metrics.
    Private,
    /// What agents call: guarded by each agent's own token, not the server's.
    Agent,
}

fn class(path: &str) -> Class {
    match path {
        "/healthz" | "/readyz" => Class::Probe,
        "/api/v1/agent/assignments" | "/api/v1/agent/observations" => Class::Agent,
        "/metrics" => Class::Private,
        p if p.starts_with("/api/v2/") => Class::Public,
        // Reporting a problem is what the public dashboard's form does too.
        "/api/v1/reports" => Class::Public,
        p if p == "/api" || p.starts_with("/api/") => Class::Private,
        _ => Class::Public,
    }
}

/// The token a request presents: a bearer token, or a Basic password.
fn presented(authorization: Option<&HeaderValue>) -> Option<String> {
    let raw = authorization?.to_str().ok()?.trim();
    let (scheme, value) = raw.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(value.trim().to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        return text
            .split_once(':')
            .map(|(_, password)| password.to_owned());
    }
    None
}

/// `router` behind `access`.
pub fn protect(router: Router, access: Access) -> Router {
    router.layer(axum::middleware::from_fn_with_state(
        Arc::new(access),
        guard,
    ))
}

async fn guard(State(access): State<Arc<Access>>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if access.allows(path, request.headers().get(header::AUTHORIZATION)) {
        return next.run(request).await;
    }
    let api = class(path) == Class::Private || path.starts_with("/api/");
    if api {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer realm=\"aiwatch\"")],
            axum::Json(serde_json::json!({
                "error": "this aiwatch server needs its token: send `Authorization: Bearer <token>`"
            })),
        )
            .into_response()
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [
                (header::WWW_AUTHENTICATE, "Basic realm=\"aiwatch\", charset=\"UTF-8\""),
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            ],
            "This aiwatch dashboard is private: sign in with any user name and the server's token as the password.",
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef01234567";

    fn bearer(t: &str) -> HeaderValue {
        HeaderValue::from_str(&format!("Bearer {t}")).unwrap()
    }

    #[test]
    fn without_a_token_everything_is_open() {
        let open = Access::open();
        for path in ["/", "/api/services", "/metrics", "/api/v2/summary.json"] {
            assert!(open.allows(path, None), "{path}");
        }
    }

    #[test]
    fn a_token_guards_the_api_and_metrics_and_a_public_dashboard_stays_readable() {
        let access = Access::with_token(TOKEN, true).unwrap();
        for path in ["/api/services", "/api/services/x/history", "/metrics"] {
            assert!(!access.allows(path, None), "{path}");
            assert!(
                !access.allows(path, Some(&bearer("wrong-token-wrong-token-1"))),
                "{path}"
            );
            assert!(access.allows(path, Some(&bearer(TOKEN))), "{path}");
        }
        for path in [
            "/",
            "/services/openai-api",
            "/badge/x.svg",
            "/api/v2/summary.json",
            "/healthz",
        ] {
            assert!(access.allows(path, None), "{path}");
        }
    }

    #[test]
    fn a_private_dashboard_takes_the_token_as_a_basic_password() {
        let access = Access::with_token(TOKEN, false).unwrap();
        assert!(!access.allows("/", None));
        assert!(
            access.allows("/readyz", None),
            "load balancers still get readiness"
        );
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("me:{TOKEN}"));
        let header = HeaderValue::from_str(&format!("Basic {basic}")).unwrap();
        assert!(access.allows("/", Some(&header)));
        assert!(access.allows("/api/v2/summary.json", Some(&header)));
    }

    #[test]
    fn short_tokens_are_refused_and_debug_never_shows_one() {
        assert!(Access::with_token("short", true).is_err());
        let access = Access::with_token(TOKEN, true).unwrap();
        assert!(!format!("{access:?}").contains(TOKEN));
    }
}
