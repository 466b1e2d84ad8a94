//! One delivery attempt's I/O: an HTTP POST through the probe's layers (its DNS, proxy and TLS
//! trust; a deadline; a capped answer), a mail through lettre's SMTP transport (STARTTLS or
//! TLS, with auth), or a desktop notification. Every answer is reduced to an [`Answer`].

use std::time::Duration;

use aiwatch_core::evidence::{HttpOutcome, ProbeReport, Purpose};
use aiwatch_core::scrub::scrub;
use aiwatch_probe::http::{exchange, Outgoing};
use aiwatch_probe::layered::{open, ProbeContext};
use aiwatch_probe::official::failure_text;
use bytes::Bytes;
use chrono::Utc;
use http::Method;
use tokio::time::Instant;

use crate::channel::{Channel, HttpPost, MailTarget, Outbound};

/// The most of a receiver's answer that is read.
const ANSWER_CAP: usize = 64 * 1024;
/// The most of it that is kept (in the outbox and in `alert test`'s output).
const DETAIL_CAP: usize = 300;

/// What one attempt came to.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    /// The receiver's status code (HTTP) or reply code (SMTP), when it answered.
    pub status: Option<u16>,
    pub accepted: bool,
    /// Worth another attempt (network trouble, 408/425/429/5xx, SMTP 4xx).
    pub transient: bool,
    /// The receiver asked to wait this long (Retry-After, or the body's `retry_after`).
    pub retry_after: Option<Duration>,
    /// One line: what happened (scrubbed of secrets, capped).
    pub detail: String,
}

impl Answer {
    fn failed(detail: String, transient: bool) -> Self {
        Self {
            status: None,
            accepted: false,
            transient,
            retry_after: None,
            detail: cap(&detail),
        }
    }
}

fn cap(text: &str) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(DETAIL_CAP)
        .collect();
    line.trim().to_owned()
}

/// Sends `channel`'s rendering of a message, within `timeout`.
pub async fn attempt(
    ctx: &ProbeContext,
    channel: &Channel,
    outbound: Outbound,
    timeout: Duration,
) -> Answer {
    match outbound {
        Outbound::Http(post) => http_post(ctx, channel, &post, timeout).await,
        Outbound::Mail {
            target,
            subject,
            body,
        } => mail(channel, &target, subject, body, timeout).await,
        Outbound::Desktop { title, body } => desktop(title, body, timeout).await,
    }
}

async fn http_post(
    ctx: &ProbeContext,
    channel: &Channel,
    post: &HttpPost,
    timeout: Duration,
) -> Answer {
    let deadline = Instant::now() + timeout;
    let host = post.host();
    let mut report = ProbeReport::new(Purpose::Web, "", &host);
    let Some(opened) = open(
        ctx,
        &mut report,
        &post.url,
        channel.verifier.clone(),
        deadline,
    )
    .await
    else {
        return Answer::failed(failure_text(&report), true);
    };
    let carries_secret = post.secret_url
        || post
            .headers
            .iter()
            .any(|(name, _)| matches!(*name, "authorization" | "x-aiwatch-signature"));
    if opened.intercepted && carries_secret {
        return Answer::failed(
            format!("not sent: TLS to {host} is intercepted on this network, and the request carries a secret"),
            true,
        );
    }
    let mut headers = opened.extra_headers;
    headers.extend(post.headers.iter().cloned());
    let exchanged = exchange(
        opened.io,
        Outgoing {
            method: Method::POST,
            target: opened.target,
            host: opened.host_header,
            headers,
            body: Some(Bytes::from(post.body.clone())),
        },
        ANSWER_CAP,
        deadline,
    )
    .await;
    let response = match exchanged.outcome {
        HttpOutcome::Response(r) => r,
        HttpOutcome::Timeout => {
            return Answer::failed(format!("{host} sent no answer within {timeout:?}"), true)
        }
        other => {
            report.http = Some(other);
            return Answer::failed(failure_text(&report), true);
        }
    };
    let status = response.status;
    let body = String::from_utf8_lossy(&exchanged.body);
    // The URL itself may be the secret (Slack, Discord, Telegram): never keep it in an answer.
    let secrets: Vec<&str> = if post.secret_url {
        post.url
            .split(['/', '?', '&', '='])
            .filter(|part| part.len() >= 12)
            .collect()
    } else {
        Vec::new()
    };
    let body = scrub(&body, &secrets);
    let retry_after = response
        .retry_after
        .as_deref()
        .and_then(|raw| aiwatch_probe::poller::parse_retry_after(raw, Utc::now()))
        .or_else(|| body_retry_after(&body));
    let accepted = (200..300).contains(&status);
    Answer {
        status: Some(status),
        accepted,
        transient: !accepted && matches!(status, 408 | 425 | 429 | 500..=599),
        retry_after,
        detail: cap(&format!("{host} answered {status} {}", body.trim())),
    }
}

/// Discord (`retry_after`, seconds) and Telegram (`parameters.retry_after`) say how long to wait
/// in their 429 bodies.
fn body_retry_after(body: &str) -> Option<Duration> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let seconds = value
        .get("retry_after")
        .or_else(|| value.get("parameters").and_then(|p| p.get("retry_after")))?
        .as_f64()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(86_400.0)))
}

async fn mail(
    channel: &Channel,
    target: &MailTarget,
    subject: String,
    body: String,
    timeout: Duration,
) -> Answer {
    use lettre::message::header::ContentType;
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    let mut builder = Message::builder()
        .subject(subject)
        .header(ContentType::TEXT_PLAIN);
    match target.from.parse() {
        Ok(from) => builder = builder.from(from),
        Err(e) => {
            return Answer::failed(
                format!("`{}` is not a sender address: {e}", target.from),
                false,
            )
        }
    }
    for to in &target.to {
        match to.parse() {
            Ok(to) => builder = builder.to(to),
            Err(e) => {
                return Answer::failed(format!("`{to}` is not a recipient address: {e}"), false)
            }
        }
    }
    let message = match builder.body(body) {
        Ok(m) => m,
        Err(e) => return Answer::failed(format!("the mail could not be built: {e}"), false),
    };
    let mut tls = TlsParameters::builder(target.host.clone());
    if let Some(pem) = &channel.ca_pem {
        match Certificate::from_pem(pem) {
            Ok(cert) => tls = tls.add_root_certificate(cert),
            Err(e) => {
                return Answer::failed(format!("the alert's ca_file is not usable: {e}"), false)
            }
        }
    }
    let tls = match tls.build_rustls() {
        Ok(t) => t,
        Err(e) => {
            return Answer::failed(
                format!("TLS for {} could not be set up: {e}", target.host),
                false,
            )
        }
    };
    let mut transport =
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(target.host.clone())
            .port(target.port)
            .tls(if target.implicit_tls {
                Tls::Wrapper(tls)
            } else {
                Tls::Required(tls)
            })
            .timeout(Some(timeout));
    if let Some(user) = &target.user {
        let password = target
            .password
            .as_ref()
            .map(|p| p.expose().to_owned())
            .unwrap_or_default();
        transport = transport.credentials(Credentials::new(user.clone(), password));
    }
    let transport = transport.build();
    match tokio::time::timeout(timeout, transport.send(message)).await {
        Err(_) => Answer::failed(
            format!("{} sent no answer within {timeout:?}", target.host),
            true,
        ),
        Ok(Ok(response)) => Answer {
            status: Some(u16::from(response.code())),
            accepted: true,
            transient: false,
            retry_after: None,
            detail: cap(&format!(
                "{} accepted the mail: {}",
                target.host,
                response.message().collect::<Vec<_>>().join(" ")
            )),
        },
        Ok(Err(e)) => {
            let code = e.status().map(u16::from);
            Answer {
                status: code,
                accepted: false,
                // A refusal for good (5xx) is not retried; network trouble and 4xx are.
                transient: !e.is_permanent(),
                retry_after: None,
                detail: cap(&format!("{}: {e}", target.host)),
            }
        }
    }
}

#[cfg(feature = "desktop")]
async fn desktop(title: String, body: String, timeout: Duration) -> Answer {
    let mut notification = notify_rust::Notification::new();
    notification.appname("aiwatch").summary(&title).body(&body);
    match tokio::time::timeout(timeout, notification.show_async()).await {
        Ok(Ok(_)) => Answer {
            status: None,
            accepted: true,
            transient: false,
            retry_after: None,
            detail: "shown on the desktop".into(),
        },
        Ok(Err(e)) => Answer::failed(
            format!("no desktop notification service answered: {e}"),
            true,
        ),
        Err(_) => Answer::failed(
            "the desktop notification service did not answer in time".into(),
            true,
        ),
    }
}

#[cfg(not(feature = "desktop"))]
async fn desktop(_title: String, _body: String, _timeout: Duration) -> Answer {
    Answer::failed("this build has no desktop notifications".into(), false)
}
