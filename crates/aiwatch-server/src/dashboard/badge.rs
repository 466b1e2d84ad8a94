//! The embeddable views of one service: a shields-style SVG status badge
//! (`/badge/{name}.svg`) and a small HTML widget for an iframe (`/widget/{name}`).

use aiwatch_core::Status;
use axum::extract::{Path, State as AxumState};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use maud::{html, Markup, DOCTYPE};

use super::overview::comparison;
use super::present::{self, Tone};
use super::{assets, Shared};
use crate::engine::{Engine, ServiceNow};

/// Approximate advance of a character in 11 px Verdana, the badge font, in pixels.
fn char_width(c: char) -> f32 {
    match c {
        'i' | 'j' | 'l' | '.' | ',' | ':' | ';' | '\'' | '|' | '!' => 3.2,
        'f' | 'r' | 't' | 'I' | ' ' | '(' | ')' | '-' => 4.6,
        'm' | 'w' | 'M' | 'W' => 10.0,
        c if c.is_ascii_uppercase() => 7.6,
        c if c.is_ascii_digit() => 7.0,
        _ => 6.6,
    }
}

fn text_width(s: &str) -> f32 {
    s.chars().map(char_width).sum()
}

/// The badge's color for a state (white text on it keeps a 4.5:1 contrast).
fn badge_color(state: Status) -> &'static str {
    match state {
        Status::Operational => "#1a7f37",
        Status::Degraded => "#9a6700",
        Status::Outage => "#cf222e",
        Status::Maintenance => "#0969da",
        Status::Unknown | Status::NotRunning => "#57606a",
    }
}

/// A shields-style badge: "ChatGPT | operational".
pub fn badge_svg(label: &str, state: Status) -> Markup {
    let message = present::state_word(state).to_lowercase();
    let label: String = label.chars().take(40).collect();
    let lw = (text_width(&label) + 12.0).round();
    let mw = (text_width(&message) + 12.0).round();
    let total = lw + mw;
    let title = format!("{label}: {message}");
    html! {
        svg xmlns="http://www.w3.org/2000/svg" width=(total) height="20" role="img" aria-label=(title) {
            title { (title) }
            linearGradient id="s" x2="0" y2="100%" {
                stop offset="0" stop-color="#bbb" stop-opacity=".1" {}
                stop offset="1" stop-opacity=".1" {}
            }
            clipPath id="r" { rect width=(total) height="20" rx="3" fill="#fff" {} }
            g clip-path="url(#r)" {
                rect width=(lw) height="20" fill="#444d56" {}
                rect x=(lw) width=(mw) height="20" fill=(badge_color(state)) {}
                rect width=(total) height="20" fill="url(#s)" {}
            }
            g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11" {
                text x=(lw / 2.0) y="15" fill="#010101" fill-opacity=".3" aria-hidden="true" { (label) }
                text x=(lw / 2.0) y="14" { (label) }
                text x=(lw + mw / 2.0) y="15" fill="#010101" fill-opacity=".3" aria-hidden="true" { (message) }
                text x=(lw + mw / 2.0) y="14" { (message) }
            }
        }
    }
}

/// The service as the core assessed it.
fn now_of(engine: &Engine, name: &aiwatch_core::ServiceName) -> Option<ServiceNow> {
    engine.service_now(name)
}

/// `GET /badge/{name}.svg`.
pub async fn badge(AxumState(engine): AxumState<Shared>, Path(file): Path<String>) -> Response {
    let Some(name) = file.strip_suffix(".svg") else {
        return super::not_found(&engine);
    };
    let service = match super::find_service(&engine, name) {
        Ok(s) => s,
        Err(response) => return response,
    };
    let state = now_of(&engine, &service.name).map_or(Status::Unknown, |n| n.assessment.status);
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("image/svg+xml; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-cache, max-age=0"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
            ),
        ],
        badge_svg(&service.title, state).into_string(),
    )
        .into_response()
}

/// `GET /widget/{name}`: a small page meant for an iframe (about 320 × 120).
pub async fn widget(AxumState(engine): AxumState<Shared>, Path(name): Path<String>) -> Response {
    let service = match super::find_service(&engine, &name) {
        Ok(s) => s,
        Err(response) => return response,
    };
    let now = Utc::now();
    let Some(now_of) = now_of(&engine, &service.name) else {
        return super::not_found(&engine);
    };
    let state = now_of.assessment.status;
    let official = engine.official_of(&service.name);
    let tone = Tone::of(state);
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (service.title) " status" }
                link rel="stylesheet" href=(assets::url("dashboard.css"));
            }
            body.widget {
                (super::charts::sprite())
                main class={"wbox s-" (tone.class())} {
                    p.wtitle {
                        a href={"/services/" (service.name)} target="_blank" rel="noopener" { (service.title) }
                        (present::state_pill(state))
                    }
                    (comparison(&official, service.status.is_some(), &now_of.assessment, now_of.since, now))
                    p.sub { "aiwatch · " (present::time(now, now)) }
                }
            }
        }
    };
    super::layout::embeddable_response(markup)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn badge_escapes_its_label_and_names_the_state() {
        let svg = badge_svg("A<b>&\"c", Status::Outage).into_string();
        assert!(svg.contains("A&lt;b&gt;&amp;&quot;c"), "{svg}");
        assert!(svg.contains(">outage<"));
        assert!(!svg.contains("<b>"));
    }

    #[test]
    fn every_state_has_a_badge() {
        for state in [
            Status::Operational,
            Status::Degraded,
            Status::Outage,
            Status::Maintenance,
            Status::Unknown,
        ] {
            assert!(badge_svg("x", state).into_string().starts_with("<svg"));
        }
    }
}
