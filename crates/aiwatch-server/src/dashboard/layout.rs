//! The page shell every dashboard page shares (head, header with navigation, footer), the HTML
//! error page, and the response headers HTML is sent with.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

use super::{assets, charts};

/// Which navigation entry the page belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Incidents,
    JustMe,
    None,
}

/// What a page says about itself.
pub struct Page<'a> {
    /// The page's own title; the site name is appended.
    pub title: &'a str,
    /// The site's name (the `page_name` of the daemon).
    pub site: &'a str,
    pub nav: Nav,
    /// Refresh the page's content periodically (by script, or a meta refresh without it).
    pub refresh: bool,
}

/// Seconds between refreshes of live pages.
pub const REFRESH_SECONDS: u32 = 30;

/// The whole document around a page's `main` content.
pub fn page(p: &Page<'_>, main: Markup) -> Markup {
    let title = if p.title.is_empty() {
        p.site.to_owned()
    } else {
        format!("{} · {}", p.title, p.site)
    };
    let item = |nav: Nav, href: &str, text: &str| {
        html! {
            li { a href=(href) aria-current=[(p.nav == nav).then_some("page")] { (text) } }
        }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) }
                link rel="icon" href=(assets::url("favicon.svg")) type="image/svg+xml";
                link rel="stylesheet" href=(assets::url("dashboard.css"));
                script src=(assets::url("dashboard.js")) defer {}
                @if p.refresh {
                    noscript { meta http-equiv="refresh" content=(REFRESH_SECONDS * 2); }
                }
            }
            body data-refresh=[p.refresh.then_some(REFRESH_SECONDS)] {
                (charts::sprite())
                a.skip href="#main" { "Skip to content" }
                header.top {
                    div.wrap {
                        a.brand href="/" { (charts::logo()) span { (p.site) } }
                        nav aria-label="Main" {
                            ul {
                                (item(Nav::Overview, "/", "Overview"))
                                (item(Nav::Incidents, "/incidents", "Incidents"))
                                (item(Nav::JustMe, "/just-me", "Is it just me?"))
                            }
                        }
                    }
                }
                main #main.wrap tabindex="-1" { (main) }
                footer.wrap {
                    p {
                        "Watched by aiwatch from this server. Times are UTC unless your browser shows local time. "
                        "Data: " a href="/api/services" { "JSON API" } " · "
                        a href="/api/v2/summary.json" { "Statuspage-compatible API" } " · "
                        a href="/metrics" { "metrics" }
                    }
                }
            }
        }
    }
}

/// A content security policy that keeps every request on this origin (`data:` images are the
/// stylesheet's icon masks).
const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; \
    connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The same, for the embeddable widget: any page may frame it.
const CSP_EMBEDDABLE: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
    form-action 'none'; base-uri 'none'; frame-ancestors *";

/// An HTML response with the dashboard's security headers; never cached, the status is live.
pub fn html_response(status: StatusCode, markup: Markup) -> Response {
    respond(status, markup, CSP, true)
}

/// An HTML response that other sites may embed in a frame.
pub fn embeddable_response(markup: Markup) -> Response {
    respond(StatusCode::OK, markup, CSP_EMBEDDABLE, false)
}

fn respond(status: StatusCode, markup: Markup, csp: &'static str, deny_frames: bool) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if deny_frames {
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    response
}

/// The HTML error page: what went wrong, what to try, and the way back.
pub fn error_page(
    site: &str,
    status: StatusCode,
    heading: &str,
    message: &str,
    suggestions: &[(String, String)],
) -> Response {
    let page_title = format!("{} {}", status.as_u16(), heading);
    let main = html! {
        section.error aria-labelledby="error-title" {
            p.code { (status.as_u16()) }
            h1 #error-title { (heading) }
            p { (message) }
            @if !suggestions.is_empty() {
                p { "Did you mean:" }
                ul.suggest {
                    @for (href, text) in suggestions {
                        li { a href=(href) { (text) } }
                    }
                }
            }
            p { a href="/" { "← Back to the overview" } }
        }
    };
    let markup = page(
        &Page {
            title: &page_title,
            site,
            nav: Nav::None,
            refresh: false,
        },
        main,
    );
    html_response(status, markup)
}
