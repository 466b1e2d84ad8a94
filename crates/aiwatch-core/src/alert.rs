//! The `[[alert]]` contract: who is told, through which channel, about which events, and when
//! not to. Parsed and validated with the rest of the config (every error names its line and
//! field); secrets are only ever the *names* of environment variables.

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::config::{field_span, locate, parse_duration, validate_http_url, ConfigError};
use crate::observation::Component;
use crate::service::ServiceName;

/// How long a recovery holds before `recovered` is told, unless an alert sets `settle`.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(120);

/// How an alert reaches people.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    Webhook,
    Slack,
    Discord,
    Ntfy,
    Telegram,
    Email,
    Alertmanager,
    Desktop,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Slack => "slack",
            Self::Discord => "discord",
            Self::Ntfy => "ntfy",
            Self::Telegram => "telegram",
            Self::Email => "email",
            Self::Alertmanager => "alertmanager",
            Self::Desktop => "desktop",
        }
    }
}

/// What an alert is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertEvent {
    /// An incident opened (own probes failing, unconfirmed or confirmed).
    Opened,
    /// The provider's page now confirms an open incident.
    ConfirmedByProvider,
    /// A service is degraded (slow, cut-off answers, intermittent failures).
    Degraded,
    /// An incident resolved, after recovery was validated.
    Recovered,
    /// The monitor's own network or resources are in trouble (one alert, not one per service).
    MonitorTrouble,
    /// The gateway saw a key's usage rise far above its norm.
    UsageSpike,
    /// The provider's announced maintenance began on a covered component.
    MaintenanceStarted,
}

impl AlertEvent {
    pub const ALL: [AlertEvent; 7] = [
        Self::Opened,
        Self::ConfirmedByProvider,
        Self::Degraded,
        Self::Recovered,
        Self::MonitorTrouble,
        Self::UsageSpike,
        Self::MaintenanceStarted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Opened => "opened",
            Self::ConfirmedByProvider => "confirmed_by_provider",
            Self::Degraded => "degraded",
            Self::Recovered => "recovered",
            Self::MonitorTrouble => "monitor_trouble",
            Self::UsageSpike => "usage_spike",
            Self::MaintenanceStarted => "maintenance_started",
        }
    }

    /// The event with this name, if any.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == raw)
    }

    /// The events an alert gets when it names none: all but `usage_spike`.
    pub fn defaults() -> Vec<AlertEvent> {
        Self::ALL
            .into_iter()
            .filter(|e| *e != Self::UsageSpike)
            .collect()
    }
}

/// A daily window in a time zone during which notifications wait (they go out when it ends).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuietHours {
    /// Minutes after local midnight.
    pub from: u16,
    pub to: u16,
    pub tz: chrono_tz::Tz,
}

impl QuietHours {
    /// Whether `minute` (after local midnight) is inside the window; windows may span midnight.
    pub fn contains(&self, minute: u16) -> bool {
        if self.from <= self.to {
            (self.from..self.to).contains(&minute)
        } else {
            minute >= self.from || minute < self.to
        }
    }

    /// Whether `at` falls in the window on the wall clock of the window's zone (so it follows
    /// daylight saving time).
    pub fn is_quiet_at(&self, at: chrono::DateTime<chrono::Utc>) -> bool {
        use chrono::Timelike;
        let local = at.with_timezone(&self.tz);
        let minute = u16::try_from(local.hour() * 60 + local.minute()).unwrap_or(0);
        self.contains(minute)
    }
}

/// Where a channel sends, by kind; secrets are variable names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// An URL given in the file, or the name of the variable that holds it (Slack and Discord
    /// webhook URLs are secrets).
    Url {
        url: Option<String>,
        url_env: Option<String>,
    },
    Telegram {
        bot_token_env: String,
        chat_id: String,
        /// A Bot API server other than api.telegram.org (`url`).
        api: Option<String>,
    },
    Email {
        /// `smtp://` (STARTTLS) or `smtps://` (TLS) host and port.
        smtp: String,
        user: Option<String>,
        password_env: Option<String>,
        from: String,
        to: Vec<String>,
    },
    Desktop,
}

/// One `[[alert]]` entry, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertConfig {
    pub name: String,
    pub kind: ChannelKind,
    pub target: Target,
    /// Webhook: the variable holding the HMAC-SHA256 key.
    pub secret_env: Option<String>,
    /// Empty: every watched service.
    pub services: Vec<ServiceName>,
    /// Empty: every component (`api`, `web`, `official`).
    pub components: Vec<Component>,
    /// Empty: every region (vantage point).
    pub regions: Vec<String>,
    pub events: Vec<AlertEvent>,
    pub min_duration: Duration,
    pub repeat: Option<Duration>,
    pub quiet_hours: Option<QuietHours>,
    /// How long a recovery must hold before `recovered` is told; a trouble that comes back
    /// within it continues the one alert (no second `opened`). Default 2 minutes.
    pub settle: Duration,
    /// ntfy and Alertmanager: the variable holding a bearer token.
    pub token_env: Option<String>,
    /// A PEM file of extra CA certificates the receiver's certificate may chain to (a private
    /// webhook, ntfy, Alertmanager or mail server).
    pub ca_file: Option<std::path::PathBuf>,
    /// ntfy: 1..=5.
    pub priority: Option<u8>,
    /// ntfy: tags shown with the message.
    pub tags: Vec<String>,
}

impl AlertConfig {
    /// Whether this alert covers `service` (an empty list covers every watched service).
    pub fn covers(&self, service: &ServiceName) -> bool {
        self.services.is_empty() || self.services.contains(service)
    }

    /// Whether this alert covers a component seen from a region (empty lists cover all).
    pub fn covers_part(&self, component: Component, region: &str) -> bool {
        (self.components.is_empty() || self.components.contains(&component))
            && (self.regions.is_empty() || self.regions.iter().any(|r| r == region))
    }

    /// Whether this alert tells `event`.
    pub fn wants(&self, event: AlertEvent) -> bool {
        self.events.contains(&event)
    }

    /// The variables this alert reads its secrets from (all must be set for it to deliver).
    pub fn secret_vars(&self) -> Vec<&str> {
        let mut vars: Vec<&str> = Vec::new();
        match &self.target {
            Target::Url {
                url_env: Some(v), ..
            } => vars.push(v),
            Target::Telegram { bot_token_env, .. } => vars.push(bot_token_env),
            Target::Email {
                password_env: Some(v),
                ..
            } => vars.push(v),
            _ => {}
        }
        vars.extend(self.secret_env.as_deref());
        vars.extend(self.token_env.as_deref());
        vars
    }

    /// Whether a condition that has held since `since`, last notified at `last_sent`, is to be
    /// told at `now`: after `min_duration`, once, then every `repeat` while it lasts; never
    /// inside quiet hours (it goes out at their end, when asked again).
    pub fn due(
        &self,
        since: chrono::DateTime<chrono::Utc>,
        last_sent: Option<chrono::DateTime<chrono::Utc>>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> bool {
        let held = (now - since).to_std().unwrap_or_default();
        if held < self.min_duration {
            return false;
        }
        if self
            .quiet_hours
            .as_ref()
            .is_some_and(|q| q.is_quiet_at(now))
        {
            return false;
        }
        match last_sent {
            None => true,
            Some(sent) => self
                .repeat
                .is_some_and(|every| (now - sent).to_std().unwrap_or_default() >= every),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAlert {
    name: String,
    kind: ChannelKind,
    url: Option<String>,
    url_env: Option<String>,
    secret_env: Option<String>,
    #[serde(default)]
    services: Vec<String>,
    #[serde(default)]
    components: Vec<String>,
    #[serde(default)]
    regions: Vec<String>,
    settle: Option<String>,
    token_env: Option<String>,
    ca_file: Option<std::path::PathBuf>,
    events: Option<Vec<AlertEvent>>,
    min_duration: Option<String>,
    repeat: Option<String>,
    quiet_hours: Option<RawQuietHours>,
    bot_token_env: Option<String>,
    chat_id: Option<String>,
    smtp: Option<String>,
    user: Option<String>,
    password_env: Option<String>,
    from: Option<String>,
    #[serde(default)]
    to: Vec<String>,
    priority: Option<u8>,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuietHours {
    from: String,
    to: String,
    tz: String,
}

/// "22:00" → minutes after midnight.
fn clock(raw: &str) -> Result<u16, String> {
    let (h, m) = raw
        .trim()
        .split_once(':')
        .ok_or_else(|| format!("`{raw}` is not a time; write it like \"22:00\""))?;
    let (h, m): (u16, u16) = (
        h.parse()
            .map_err(|_| format!("`{raw}` is not a time; write it like \"22:00\""))?,
        m.parse()
            .map_err(|_| format!("`{raw}` is not a time; write it like \"22:00\""))?,
    );
    if h > 23 || m > 59 {
        return Err(format!("`{raw}` is not a time of day (00:00 to 23:59)"));
    }
    Ok(h * 60 + m)
}

fn is_env_name(raw: &str) -> bool {
    !raw.is_empty()
        && !raw.starts_with(|c: char| c.is_ascii_digit())
        && raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Validates the `[[alert]]` tables; `known` turns a service name into a watched service, or
/// says why not (with close names).
/// Each entry is checked on its own: its first error joins `errors` and the others go on.
pub(crate) fn validate(
    text: &str,
    raw: Vec<Spanned<RawAlert>>,
    known: &dyn Fn(&str) -> Result<ServiceName, String>,
    errors: &mut Vec<ConfigError>,
) -> Vec<AlertConfig> {
    let mut names = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for spanned in raw {
        match validate_one(text, spanned, known, &mut names) {
            Ok(alert) => out.push(alert),
            Err(e) => errors.push(e),
        }
    }
    out
}

/// One `[[alert]]` entry; `names` holds the names before it.
fn validate_one(
    text: &str,
    spanned: Spanned<RawAlert>,
    known: &dyn Fn(&str) -> Result<ServiceName, String>,
    names: &mut HashSet<String>,
) -> Result<AlertConfig, ConfigError> {
    let span = spanned.span();
    let a = spanned.into_inner();
    let at = |key: &str| field_span(text, &span, key).or_else(|| Some(span.clone()));
    let fail = |key: &str, message: String| locate(text, at(key), message);
    let name = a.name.trim().to_owned();
    if name.is_empty() {
        return Err(fail("name", "an alert's `name` must not be empty".into()));
    }
    if !names.insert(name.clone()) {
        return Err(fail("name", format!("alert `{name}` is defined twice")));
    }
    for (key, var) in [
        ("url_env", &a.url_env),
        ("secret_env", &a.secret_env),
        ("bot_token_env", &a.bot_token_env),
        ("password_env", &a.password_env),
        ("token_env", &a.token_env),
    ] {
        if let Some(var) = var {
            if !is_env_name(var) {
                return Err(fail(
                    key,
                    format!("alert `{name}`: `{var}` is not an environment variable name"),
                ));
            }
        }
    }
    if let Some(url) = &a.url {
        validate_http_url(url).map_err(|e| fail("url", format!("alert `{name}`: {e}")))?;
    }
    let target = target(&name, a.kind, &a, &fail)?;
    if a.secret_env.is_some() && a.kind != ChannelKind::Webhook {
        return Err(fail(
            "secret_env",
            format!(
                "alert `{name}`: `secret_env` signs webhook bodies; a {} channel has none",
                a.kind.as_str()
            ),
        ));
    }
    let mut services = Vec::with_capacity(a.services.len());
    for s in &a.services {
        let found = known(s).map_err(|e| fail("services", format!("alert `{name}`: {e}")))?;
        services.push(found);
    }
    let duration = |key: &str, raw: &Option<String>| -> Result<Option<Duration>, ConfigError> {
        raw.as_deref()
            .map(|r| {
                if r.trim() == "0s" {
                    Ok(Duration::ZERO)
                } else {
                    parse_duration(r).map_err(|e| fail(key, format!("alert `{name}`: {e}")))
                }
            })
            .transpose()
    };
    let mut components = Vec::with_capacity(a.components.len());
    for c in &a.components {
        components.push(Component::parse(c).ok_or_else(|| {
            fail(
                "components",
                format!("alert `{name}`: `{c}` is not a component; use api, web or official"),
            )
        })?);
    }
    if a.token_env.is_some() && !matches!(a.kind, ChannelKind::Ntfy | ChannelKind::Alertmanager) {
        return Err(fail(
            "token_env",
            format!(
                "alert `{name}`: `token_env` is a bearer token for ntfy or Alertmanager; a {} channel takes none",
                a.kind.as_str()
            ),
        ));
    }
    let settle = duration("settle", &a.settle)?.unwrap_or(DEFAULT_SETTLE);
    let min_duration = duration("min_duration", &a.min_duration)?.unwrap_or_default();
    if duration("repeat", &a.repeat)?.is_some_and(|r| r < Duration::from_secs(60)) {
        return Err(fail(
            "repeat",
            format!("alert `{name}`: `repeat` must be at least 1m (reminders, not a flood)"),
        ));
    }
    // Alertmanager expires alerts that are not pushed again: re-push every minute.
    let repeat = duration("repeat", &a.repeat)?
        .or((a.kind == ChannelKind::Alertmanager).then_some(Duration::from_secs(60)));
    let quiet_hours = a
        .quiet_hours
        .as_ref()
        .map(|q| -> Result<QuietHours, ConfigError> {
            let tz = q.tz.parse::<chrono_tz::Tz>().map_err(|_| {
                fail(
                    "quiet_hours",
                    format!(
                        "alert `{name}`: `{}` is not an IANA time zone such as \"Europe/Paris\"",
                        q.tz
                    ),
                )
            })?;
            Ok(QuietHours {
                from: clock(&q.from)
                    .map_err(|e| fail("quiet_hours", format!("alert `{name}`: {e}")))?,
                to: clock(&q.to)
                    .map_err(|e| fail("quiet_hours", format!("alert `{name}`: {e}")))?,
                tz,
            })
        })
        .transpose()?;
    if let Some(p) = a.priority {
        if a.kind != ChannelKind::Ntfy || !(1..=5).contains(&p) {
            return Err(fail(
                "priority",
                format!("alert `{name}`: `priority` is ntfy's, from 1 to 5"),
            ));
        }
    }
    Ok(AlertConfig {
        name,
        kind: a.kind,
        target,
        secret_env: a.secret_env,
        services,
        components,
        regions: a.regions,
        events: a.events.unwrap_or_else(AlertEvent::defaults),
        min_duration,
        repeat,
        quiet_hours,
        settle,
        token_env: a.token_env,
        ca_file: a.ca_file,
        priority: a.priority,
        tags: a.tags,
    })
}

/// The target a channel kind needs, from the fields it must have.
fn target(
    name: &str,
    kind: ChannelKind,
    a: &RawAlert,
    fail: &dyn Fn(&str, String) -> ConfigError,
) -> Result<Target, ConfigError> {
    let need = |key: &str, what: &str| {
        fail(
            key,
            format!("alert `{name}` ({}) needs `{key}`: {what}", kind.as_str()),
        )
    };
    match kind {
        ChannelKind::Webhook
        | ChannelKind::Slack
        | ChannelKind::Discord
        | ChannelKind::Ntfy
        | ChannelKind::Alertmanager => match (&a.url, &a.url_env) {
            (Some(_), Some(_)) => Err(fail(
                "url_env",
                format!("alert `{name}`: give `url` or `url_env`, not both"),
            )),
            (None, None) => Err(need(
                "url",
                "where to send (or `url_env`, the variable holding it)",
            )),
            (url, url_env) => Ok(Target::Url {
                url: url.clone(),
                url_env: url_env.clone(),
            }),
        },
        ChannelKind::Telegram => Ok(Target::Telegram {
            bot_token_env: a
                .bot_token_env
                .clone()
                .ok_or_else(|| need("bot_token_env", "the variable holding the bot token"))?,
            chat_id: a
                .chat_id
                .clone()
                .ok_or_else(|| need("chat_id", "the chat to post in"))?,
            api: a.url.clone(),
        }),
        ChannelKind::Email => {
            let smtp = a
                .smtp
                .clone()
                .ok_or_else(|| need("smtp", "the server, like \"smtps://mail.example.com:465\""))?;
            if !(smtp.starts_with("smtp://") || smtp.starts_with("smtps://")) {
                return Err(fail(
                    "smtp",
                    format!("alert `{name}`: `{smtp}` is not smtp://host[:port] (STARTTLS) or smtps://host[:port] (TLS)"),
                ));
            }
            let from = a
                .from
                .clone()
                .ok_or_else(|| need("from", "the sender address"))?;
            if a.to.is_empty() {
                return Err(need("to", "one or more recipient addresses"));
            }
            for address in std::iter::once(&from).chain(&a.to) {
                if !address.contains('@') {
                    return Err(fail(
                        if *address == from { "from" } else { "to" },
                        format!("alert `{name}`: `{address}` is not a mail address"),
                    ));
                }
            }
            Ok(Target::Email {
                smtp,
                user: a.user.clone(),
                password_env: a.password_env.clone(),
                from,
                to: a.to.clone(),
            })
        }
        ChannelKind::Desktop => Ok(Target::Desktop),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn err(text: &str) -> ConfigError {
        Config::parse(text).expect_err("an invalid alert")
    }

    #[test]
    fn the_issue_contract_parses() {
        let config = Config::parse(
            "[[alert]]\nname = \"ops\"\nkind = \"webhook\"\nurl = \"https://hooks.example.com/aiwatch\"\nsecret_env = \"AIWATCH_HOOK_SECRET\"\nservices = [\"openai-api\", \"chatgpt\"]\nevents = [\"opened\", \"confirmed_by_provider\", \"recovered\"]\nmin_duration = \"2m\"\nrepeat = \"1h\"\nquiet_hours = { from = \"22:00\", to = \"07:00\", tz = \"Europe/Paris\" }\n",
        )
        .expect("valid");
        let alert = &config.alerts[0];
        assert_eq!(alert.kind, ChannelKind::Webhook);
        assert_eq!(alert.services.len(), 2);
        assert_eq!(alert.min_duration, Duration::from_secs(120));
        assert_eq!(alert.repeat, Some(Duration::from_secs(3600)));
        let quiet = alert.quiet_hours.as_ref().expect("quiet hours");
        assert!(quiet.contains(23 * 60) && quiet.contains(6 * 60 + 59) && !quiet.contains(12 * 60));
        assert_eq!(quiet.tz, chrono_tz::Europe::Paris);
    }

    #[test]
    fn quiet_hours_follow_the_zones_wall_clock_across_daylight_saving() {
        use chrono::TimeZone;
        let quiet = QuietHours {
            from: 22 * 60,
            to: 7 * 60,
            tz: chrono_tz::Europe::Paris,
        };
        let utc = |y, m, d, h| chrono::Utc.with_ymd_and_hms(y, m, d, h, 30, 0).unwrap();
        // Winter: Paris is UTC+1. 21:30 UTC is 22:30 there (quiet); 06:30 UTC is 07:30 (not).
        assert!(quiet.is_quiet_at(utc(2026, 1, 15, 21)));
        assert!(!quiet.is_quiet_at(utc(2026, 1, 15, 6)));
        // Summer: UTC+2. 20:30 UTC is 22:30 (quiet); 04:30 UTC is 06:30 (still quiet).
        assert!(quiet.is_quiet_at(utc(2026, 7, 15, 20)));
        assert!(quiet.is_quiet_at(utc(2026, 7, 15, 4)));
        assert!(!quiet.is_quiet_at(utc(2026, 7, 15, 12)));
    }

    #[test]
    fn a_condition_is_told_after_its_minimum_duration_then_on_the_repeat_interval() {
        use chrono::TimeZone;
        let config = Config::parse(
            "[[alert]]\nname = \"me\"\nkind = \"desktop\"\nservices = [\"openai-api\"]\nmin_duration = \"2m\"\nrepeat = \"1h\"\n",
        )
        .expect("valid");
        let alert = &config.alerts[0];
        assert!(alert.covers(&ServiceName::parse("openai-api").unwrap()));
        assert!(!alert.covers(&ServiceName::parse("claude").unwrap()));
        let t0 = chrono::Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
        let at = |minutes: i64| t0 + chrono::Duration::minutes(minutes);
        assert!(
            !alert.due(t0, None, at(1)),
            "a blip shorter than min_duration is not told"
        );
        assert!(alert.due(t0, None, at(2)));
        assert!(
            !alert.due(t0, Some(at(2)), at(30)),
            "told once, not again before repeat"
        );
        assert!(alert.due(t0, Some(at(2)), at(62)));
        let once =
            Config::parse("[[alert]]\nname = \"once\"\nkind = \"desktop\"\n").expect("valid");
        assert!(
            !once.alerts[0].due(t0, Some(t0), at(600)),
            "no repeat: told once"
        );
    }

    #[test]
    fn quiet_hours_hold_a_due_notification_until_they_end() {
        use chrono::TimeZone;
        let config = Config::parse(
            "[[alert]]\nname = \"night\"\nkind = \"desktop\"\nquiet_hours = { from = \"22:00\", to = \"07:00\", tz = \"UTC\" }\n",
        )
        .expect("valid");
        let alert = &config.alerts[0];
        let since = chrono::Utc.with_ymd_and_hms(2026, 3, 1, 23, 0, 0).unwrap();
        assert!(!alert.due(since, None, since), "quiet at 23:00");
        let morning = chrono::Utc.with_ymd_and_hms(2026, 3, 2, 7, 0, 0).unwrap();
        assert!(
            alert.due(since, None, morning),
            "told when the quiet hours end"
        );
    }

    #[test]
    fn defaults_are_every_service_and_all_events_but_usage_spikes() {
        let config =
            Config::parse("[[alert]]\nname = \"me\"\nkind = \"slack\"\nurl_env = \"SLACK_HOOK\"\n")
                .expect("valid");
        let alert = &config.alerts[0];
        assert!(alert.services.is_empty());
        assert!(!alert.events.contains(&AlertEvent::UsageSpike));
        assert_eq!(alert.events.len(), AlertEvent::ALL.len() - 1);
        assert_eq!(alert.min_duration, Duration::ZERO);
    }

    #[test]
    fn errors_name_the_line_and_the_field() {
        let e = err("[[alert]]\nname = \"a\"\nkind = \"pager\"\nurl = \"https://x.example\"\n");
        assert_eq!(e.line, 3, "{e}");
        let e = err("[[alert]]\nname = \"a\"\nkind = \"webhook\"\n");
        assert!(e.message.contains("needs `url`"), "{e}");
        let e = err("[[alert]]\nname = \"a\"\nkind = \"webhook\"\nurl = \"https://x.example\"\nservices = [\"openai-apii\"]\n");
        assert_eq!(e.line, 5, "{e}");
        assert!(
            e.message.contains("openai-api"),
            "suggests the close name: {e}"
        );
        let e = err("[[alert]]\nname = \"a\"\nkind = \"email\"\nsmtp = \"mail.example.com\"\nfrom = \"a@example.com\"\nto = [\"b@example.com\"]\n");
        assert_eq!(e.line, 4, "{e}");
        let e = err("[[alert]]\nname = \"a\"\nkind = \"ntfy\"\nurl = \"https://ntfy.sh/t\"\nquiet_hours = { from = \"22:00\", to = \"07:00\", tz = \"Mars/Olympus\" }\n");
        assert_eq!(e.line, 5, "{e}");
        let e = err("[[alert]]\nname = \"a\"\nkind = \"telegram\"\nbot_token_env = \"TG\"\n");
        assert!(e.message.contains("chat_id"), "{e}");
        let e = err("[[alert]]\nname = \"a\"\nkind = \"desktop\"\n\n[[alert]]\nname = \"a\"\nkind = \"desktop\"\n");
        assert_eq!(e.line, 6, "{e}");
        assert!(e.message.contains("twice"), "{e}");
        let e = err("[[alert]]\nname = \"a\"\nkind = \"slack\"\nurl_env = \"1BAD\"\n");
        assert_eq!(e.line, 4, "{e}");
    }
}
