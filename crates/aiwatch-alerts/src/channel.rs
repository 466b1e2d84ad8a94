//! One configured `[[alert]]` with its secrets resolved, and what it sends for a message: the
//! one message (title, summary, advice, the official view, the dashboard link) rendered into
//! each channel's own shape.

use std::fmt;
use std::sync::Arc;

use aiwatch_core::alert::{AlertConfig, AlertEvent, ChannelKind, Target};
use aiwatch_core::alert_rules::AlertMessage;
use aiwatch_core::secret::ApiKey;
use aiwatch_core::Status;
use aiwatch_probe::tls::Trust;
use serde_json::json;

use crate::Error;

/// The Telegram Bot API, unless an alert's `url` names another (a self-hosted Bot API server).
pub const TELEGRAM_API: &str = "https://api.telegram.org";

/// How long an Alertmanager alert stays firing without a new push, in units of the alert's
/// `repeat` (the re-push interval): a monitor that stops pushing lets its alerts expire.
const ALERTMANAGER_TTL_REPEATS: i32 = 5;

/// A channel ready to send: the alert's settings and its resolved secrets.
pub struct Channel {
    pub config: AlertConfig,
    target: Resolved,
    signing_key: Option<ring::hmac::Key>,
    token: Option<ApiKey>,
    /// The receiver's certificate may chain to the alert's own CA (`ca_file`).
    pub verifier: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    /// The same CA, as PEM, for the mail transport.
    pub ca_pem: Option<Vec<u8>>,
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("name", &self.config.name)
            .field("kind", &self.config.kind)
            .field("signed", &self.signing_key.is_some())
            .finish_non_exhaustive()
    }
}

enum Resolved {
    Http {
        url: String,
        secret: bool,
    },
    Telegram {
        base: String,
        token: ApiKey,
        chat_id: String,
    },
    Email(MailTarget),
    Desktop,
}

/// Where and how a mail goes.
#[derive(Clone)]
pub struct MailTarget {
    /// `smtps://` (TLS from the first byte) rather than `smtp://` (STARTTLS, required).
    pub implicit_tls: bool,
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<ApiKey>,
    pub from: String,
    pub to: Vec<String>,
}

impl fmt::Debug for MailTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MailTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("implicit_tls", &self.implicit_tls)
            .field("user", &self.user)
            .field("password", &self.password)
            .finish_non_exhaustive()
    }
}

/// One attempt's request, by transport.
pub enum Outbound {
    Http(HttpPost),
    Mail {
        target: MailTarget,
        subject: String,
        body: String,
    },
    Desktop {
        title: String,
        body: String,
    },
}

/// An HTTP POST. `Debug` hides the URL when it is itself a secret (Slack, Discord, Telegram).
pub struct HttpPost {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// The URL (path or query) is a credential: never through intercepted TLS, never logged.
    pub secret_url: bool,
}

impl fmt::Debug for HttpPost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = if self.secret_url {
            "[secret url]"
        } else {
            &self.url
        };
        f.debug_struct("HttpPost")
            .field("url", &url)
            .field("bytes", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl HttpPost {
    /// The host the request goes to, for logs and answers (never the secret path).
    pub fn host(&self) -> String {
        self.url
            .parse::<http::Uri>()
            .ok()
            .and_then(|u| u.host().map(str::to_owned))
            .unwrap_or_else(|| "the receiver".into())
    }
}

impl Channel {
    /// Resolves the alert's secrets through `lookup` (the environment, in the binary) and its
    /// CA file through `trust`.
    pub fn build(
        config: AlertConfig,
        lookup: &dyn Fn(&str) -> Option<String>,
        trust: &Trust,
    ) -> Result<Channel, Error> {
        let name = config.name.clone();
        let secret = |var: &str| -> Result<ApiKey, Error> {
            lookup(var)
                .and_then(ApiKey::new)
                .ok_or_else(|| Error::MissingSecret {
                    alert: name.clone(),
                    var: var.to_owned(),
                })
        };
        let target = match &config.target {
            Target::Url { url, url_env } => match (url, url_env) {
                (_, Some(var)) => Resolved::Http {
                    url: secret(var)?.expose().trim().to_owned(),
                    secret: true,
                },
                (Some(url), None) => Resolved::Http {
                    url: url.clone(),
                    secret: false,
                },
                (None, None) => {
                    return Err(Error::Address {
                        alert: name,
                        reason: "no url".into(),
                    })
                }
            },
            Target::Telegram {
                bot_token_env,
                chat_id,
                api,
            } => Resolved::Telegram {
                base: api.clone().unwrap_or_else(|| TELEGRAM_API.to_owned()),
                token: secret(bot_token_env)?,
                chat_id: chat_id.clone(),
            },
            Target::Email {
                smtp,
                user,
                password_env,
                from,
                to,
            } => {
                let (implicit_tls, rest) = match smtp.split_once("://") {
                    Some(("smtps", rest)) => (true, rest),
                    Some((_, rest)) => (false, rest),
                    None => (false, smtp.as_str()),
                };
                let rest = rest.trim_end_matches('/');
                let (host, port) = match rest.rsplit_once(':') {
                    Some((h, p)) if !h.ends_with(']') || rest.starts_with('[') => {
                        match p.parse::<u16>() {
                            Ok(port) => (h.trim_matches(['[', ']']).to_owned(), port),
                            Err(_) => {
                                return Err(Error::Address {
                                    alert: name,
                                    reason: format!("`{smtp}` has no valid port"),
                                })
                            }
                        }
                    }
                    _ => (rest.to_owned(), if implicit_tls { 465 } else { 587 }),
                };
                Resolved::Email(MailTarget {
                    implicit_tls,
                    host,
                    port,
                    user: user.clone(),
                    password: password_env.as_deref().map(secret).transpose()?,
                    from: from.clone(),
                    to: to.clone(),
                })
            }
            Target::Desktop => {
                if !cfg!(feature = "desktop") {
                    return Err(Error::Unsupported {
                        alert: name,
                        reason: "this build of aiwatch has no desktop notifications (built without the `desktop` feature)".into(),
                    });
                }
                Resolved::Desktop
            }
        };
        let signing_key = config
            .secret_env
            .as_deref()
            .map(secret)
            .transpose()?
            .map(|k| ring::hmac::Key::new(ring::hmac::HMAC_SHA256, k.expose().as_bytes()));
        let token = config.token_env.as_deref().map(secret).transpose()?;
        let (verifier, ca_pem) = match &config.ca_file {
            Some(path) => {
                let verifier = trust.expected_verifier(path).map_err(|e| Error::CaFile {
                    alert: name.clone(),
                    reason: e.to_string(),
                })?;
                let pem = std::fs::read(path).map_err(|e| Error::CaFile {
                    alert: name.clone(),
                    reason: format!("cannot read {}: {e}", path.display()),
                })?;
                (Some(verifier), Some(pem))
            }
            None => (None, None),
        };
        Ok(Channel {
            config,
            target,
            signing_key,
            token,
            verifier,
            ca_pem,
        })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// What this channel sends for `message`.
    pub fn outbound(&self, message: &AlertMessage) -> Outbound {
        let kind = self.config.kind;
        match &self.target {
            Resolved::Desktop => Outbound::Desktop {
                title: message.title.clone(),
                body: format!("{}\n{}", message.summary, message.dashboard_url),
            },
            Resolved::Email(target) => Outbound::Mail {
                target: target.clone(),
                subject: format!("[aiwatch] {}", message.title),
                body: format!("{}\n\n{}\n", message.title, message.text()),
            },
            Resolved::Telegram {
                base,
                token,
                chat_id,
            } => Outbound::Http(HttpPost {
                url: format!(
                    "{}/bot{}/sendMessage",
                    base.trim_end_matches('/'),
                    token.expose()
                ),
                headers: json_headers(message),
                body: telegram_body(message, chat_id),
                secret_url: true,
            }),
            Resolved::Http { url, secret } => {
                let mut headers = json_headers(message);
                let (url, body) = match kind {
                    ChannelKind::Webhook => {
                        let body = serde_json::to_vec(message).unwrap_or_default();
                        if let Some(key) = &self.signing_key {
                            headers.push(("x-aiwatch-signature", signature(key, &body)));
                        }
                        (url.clone(), body)
                    }
                    ChannelKind::Slack => (url.clone(), slack_body(message)),
                    ChannelKind::Discord => (url.clone(), discord_body(message)),
                    ChannelKind::Ntfy => {
                        let (server, topic) = ntfy_split(url);
                        (server, ntfy_body(message, &topic, &self.config))
                    }
                    ChannelKind::Alertmanager => (
                        format!("{}/api/v2/alerts", url.trim_end_matches('/')),
                        alertmanager_body(message, &self.config),
                    ),
                    ChannelKind::Telegram | ChannelKind::Email | ChannelKind::Desktop => {
                        (url.clone(), Vec::new())
                    }
                };
                if let Some(token) = &self.token {
                    headers.push(("authorization", format!("Bearer {}", token.expose())));
                }
                Outbound::Http(HttpPost {
                    url,
                    headers,
                    body,
                    secret_url: *secret,
                })
            }
        }
    }
}

fn json_headers(message: &AlertMessage) -> Vec<(&'static str, String)> {
    vec![
        ("content-type", "application/json".to_owned()),
        (
            "user-agent",
            concat!("aiwatch/", env!("CARGO_PKG_VERSION")).to_owned(),
        ),
        ("idempotency-key", message.idempotency_key.clone()),
        ("x-aiwatch-event", message.event.as_str().to_owned()),
    ]
}

/// `sha256=<hex of HMAC-SHA256(key, body)>`, over the raw body bytes.
pub fn signature(key: &ring::hmac::Key, body: &[u8]) -> String {
    let tag = ring::hmac::sign(key, body);
    let mut hex = String::with_capacity(7 + 64);
    hex.push_str("sha256=");
    for b in tag.as_ref() {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

/// Cuts `text` to at most `max` characters, marking the cut.
fn cap(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Slack's mrkdwn needs `&`, `<` and `>` escaped.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn slack_body(m: &AlertMessage) -> Vec<u8> {
    let advice = m
        .advice
        .iter()
        .map(|a| format!("• {}", slack_escape(a)))
        .collect::<Vec<_>>()
        .join("\n");
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": cap(&m.title, 150)}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": cap(&slack_escape(&m.summary), 3000)}}),
    ];
    if !advice.is_empty() && m.event != AlertEvent::Recovered {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": cap(&format!("*What to do*\n{advice}"), 3000)}}));
    }
    blocks.push(
        json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!(
            "{} · scope `{}` · cause `{}` · <{}|Dashboard>",
            slack_escape(&m.official_line()), m.scope.as_str(), m.cause.as_str(), m.dashboard_url
        )}]}),
    );
    serde_json::to_vec(&json!({"text": m.title, "blocks": blocks})).unwrap_or_default()
}

/// The embed colour: red for outages, amber for degradation and the monitor's trouble, green
/// for recoveries, blue otherwise.
fn colour(m: &AlertMessage) -> u32 {
    match (m.event, m.status) {
        (AlertEvent::Recovered, _) => 0x2e_a0_43,
        (AlertEvent::Opened | AlertEvent::ConfirmedByProvider, Status::Outage) => 0xd1_24_2f,
        (AlertEvent::MaintenanceStarted | AlertEvent::UsageSpike, _) => 0x09_69_da,
        _ => 0xbf_87_00,
    }
}

fn discord_body(m: &AlertMessage) -> Vec<u8> {
    let mut fields = vec![
        json!({"name": "Scope", "value": m.scope.as_str(), "inline": true}),
        json!({"name": "Cause", "value": m.cause.as_str(), "inline": true}),
    ];
    if let Some(service) = &m.service {
        fields.insert(
            0,
            json!({"name": "Service", "value": service, "inline": true}),
        );
    }
    let body = json!({
        "username": "aiwatch",
        // Never ping anyone from text that came from a status page.
        "allowed_mentions": {"parse": []},
        "embeds": [{
            "title": cap(&m.title, 256),
            "description": cap(&m.text(), 4000),
            "url": m.dashboard_url,
            "color": colour(m),
            "timestamp": m.at.to_rfc3339(),
            "fields": fields,
        }],
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// `https://ntfy.sh/alerts` → (`https://ntfy.sh`, `alerts`): ntfy's JSON publishing posts to the
/// server's root with the topic in the body.
fn ntfy_split(url: &str) -> (String, String) {
    let trimmed = url.trim_end_matches('/');
    match trimmed.rsplit_once('/') {
        Some((server, topic)) if !server.ends_with('/') && !topic.is_empty() => {
            (format!("{server}/"), topic.to_owned())
        }
        _ => (format!("{trimmed}/"), String::new()),
    }
}

fn ntfy_body(m: &AlertMessage, topic: &str, config: &AlertConfig) -> Vec<u8> {
    let priority = config.priority.unwrap_or(match (m.event, m.status) {
        (AlertEvent::Opened, Status::Outage) | (AlertEvent::MonitorTrouble, _) => 4,
        (AlertEvent::Recovered | AlertEvent::MaintenanceStarted, _) => 2,
        _ => 3,
    });
    let mut tags = vec![match m.event {
        AlertEvent::Opened | AlertEvent::ConfirmedByProvider => "rotating_light",
        AlertEvent::Recovered => "white_check_mark",
        AlertEvent::MaintenanceStarted => "construction",
        _ => "warning",
    }
    .to_owned()];
    tags.extend(config.tags.iter().cloned());
    let body = json!({
        "topic": topic,
        "title": cap(&m.title, 250),
        "message": cap(&m.text(), 4000),
        "priority": priority,
        "tags": tags,
        "click": m.dashboard_url,
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn telegram_body(m: &AlertMessage, chat_id: &str) -> Vec<u8> {
    let text = format!(
        "<b>{}</b>\n\n{}",
        html_escape(&m.title),
        html_escape(&m.text())
    );
    let body = json!({
        "chat_id": chat_id,
        "text": cap(&text, 4000),
        "parse_mode": "HTML",
        "disable_web_page_preview": true,
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

fn alertmanager_body(m: &AlertMessage, config: &AlertConfig) -> Vec<u8> {
    let alertname = match m.event {
        AlertEvent::MonitorTrouble => "AiwatchMonitorTrouble",
        AlertEvent::MaintenanceStarted => "AiwatchMaintenance",
        AlertEvent::UsageSpike => "AiwatchUsageSpike",
        _ => "AiwatchIncident",
    };
    let mut labels = serde_json::Map::new();
    labels.insert("alertname".into(), alertname.into());
    labels.insert("incident_id".into(), m.incident_id.clone().into());
    for (name, value) in [
        ("service", &m.service),
        ("component", &m.component),
        ("region", &m.region),
    ] {
        if let Some(value) = value {
            labels.insert(name.into(), value.clone().into());
        }
    }
    labels.insert("cause".into(), m.cause.as_str().into());
    labels.insert("scope".into(), m.scope.as_str().into());
    // A firing alert expires unless pushed again: a monitor that stops cannot leave it on.
    let every = config.repeat.map_or(chrono::Duration::minutes(1), |r| {
        chrono::Duration::from_std(r).unwrap_or(chrono::Duration::minutes(1))
    });
    let ends_at = if m.event == AlertEvent::Recovered {
        m.at
    } else {
        m.at + every * ALERTMANAGER_TTL_REPEATS
    };
    let body = json!([{
        "labels": labels,
        "annotations": {
            "summary": m.title,
            "description": m.summary,
            "advice": m.advice.join("\n"),
            "official": m.official_line(),
            "dashboard_url": m.dashboard_url,
            "idempotency_key": m.idempotency_key,
            "status": m.status.as_str(),
        },
        "startsAt": m.since.to_rfc3339(),
        "endsAt": ends_at.to_rfc3339(),
        "generatorURL": m.dashboard_url,
    }]);
    serde_json::to_vec(&body).unwrap_or_default()
}
