//! Parses and validates the TOML config file; every error names its line, column and field.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use toml::Spanned;

use crate::catalog::Catalog;
use crate::service::{ServiceKind, ServiceName};

/// The default neutral host: answers 204 with an empty body when the internet works.
pub const DEFAULT_CONTROL_URL: &str = "http://connectivitycheck.gstatic.com/generate_204";

/// A config error, located in the file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}{}: {message}", .field.as_ref().map(|f| format!(", field `{f}`")).unwrap_or_default())]
pub struct ConfigError {
    pub line: usize,
    pub column: usize,
    /// The key path, e.g. `service[2].interval`, when the error sits on a key.
    pub field: Option<String>,
    pub message: String,
}

/// A validated config. Everything a later stage needs is checked here, so a config that loaded
/// works.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config {
    pub defaults: Defaults,
    pub server: ServerConfig,
    pub services: Vec<ServiceEntry>,
    pub gateway: Option<GatewayConfig>,
    pub routes: Vec<Route>,
    pub alerts: Vec<crate::alert::AlertConfig>,
    /// When problem reports make a spike (`[crowd]`).
    pub crowd: crate::crowd::CrowdConfig,
    /// Public feeds whose posts are counted as second-hand reports (`[[feed]]`).
    pub feeds: Vec<FeedConfig>,
    /// Vantage points that may push observations (`[[agent]]`), one per region.
    pub agents: Vec<AgentEntry>,
    /// Services the file declares whose entries were refused with an error of their own: a
    /// later check (the gateway's routes, say) skips them instead of calling them unknown.
    pub refused_services: Vec<String>,
}

/// One `[[agent]]`: a region whose agent may push observations, and the variable holding the
/// token that agent must present.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentEntry {
    pub region: crate::observation::Region,
    pub token_env: String,
}

/// The shortest agent token `serve` accepts (the contract: at least 20 characters).
pub const MIN_AGENT_TOKEN_LEN: usize = 20;

/// Whether `raw` is a region name agents may use: lowercase letters, digits and `-`, 1 to 32
/// characters, starting with a letter, and not `local` (this machine's own vantage point).
pub fn validate_region(raw: &str) -> Result<(), String> {
    let shaped = (1..=32).contains(&raw.len())
        && raw.starts_with(|c: char| c.is_ascii_lowercase())
        && raw
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !shaped {
        return Err(format!(
            "`{raw}` is not a region name: use 1 to 32 lowercase letters, digits and `-`, starting with a letter (e.g. \"eu-west\")"
        ));
    }
    if raw == crate::observation::LOCAL_REGION {
        return Err("`local` is this machine's own vantage point; name the agent's region (e.g. \"eu-west\")".into());
    }
    Ok(())
}

/// One `[[feed]]`: a public feed (a subreddit, a forum, a Hacker News search) whose posts that
/// speak of a service's trouble count as reports, with a weight below a first-hand report.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedConfig {
    pub url: String,
    pub services: Vec<ServiceName>,
    /// Words that make a post about trouble; empty: the built-in outage words.
    pub keywords: Vec<String>,
    pub weight: f64,
    pub interval: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Defaults {
    pub interval: Duration,
    pub timeout: Duration,
    pub failures_to_open: u32,
    pub successes_to_close: u32,
    pub control_url: String,
    /// How often `serve` also streams one tiny completion per API (time to first token, answers
    /// cut off); `None` ("off") streams only while validating a recovery.
    pub stream_interval: Option<Duration>,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
            failures_to_open: 3,
            successes_to_close: 2,
            control_url: DEFAULT_CONTROL_URL.to_owned(),
            stream_interval: Some(Duration::from_secs(15 * 60)),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// `sqlite:PATH` or `postgres://…`; `None` means the default file under the data dir.
    pub database: Option<String>,
    /// How long raw observations are kept; rollups stay longer (minutes 30 days, days 400).
    pub raw_retention: Duration,
    /// Open connections the API and dashboard accept at most.
    pub max_connections: u32,
    /// Request headers must arrive within this; idle keep-alive connections close after it.
    pub header_timeout: Duration,
    /// The variable holding the token for the API and metrics (and a private dashboard).
    pub auth_token_env: Option<String>,
    /// With a token: the dashboard and the Statuspage-compatible view stay readable without it.
    pub public: bool,
    /// The dashboard's address as people reach it (behind a proxy, say); alerts link to it.
    /// `None`: `http://` + `listen`.
    pub public_url: Option<String>,
    /// How many vantage points (this machine and each agent's region) must see a provider
    /// failing before it is a global outage; fewer is `regional`. Clamped to the regions that
    /// can see the service at the time.
    pub quorum: u32,
    /// An agent silent for this long makes its region unknown; `None`: three default
    /// intervals, at least 90 s.
    pub agent_grace: Option<Duration>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database: None,
            raw_retention: Duration::from_secs(7 * 24 * 3600),
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            auth_token_env: None,
            public: true,
            public_url: None,
            quorum: 2,
            agent_grace: None,
        }
    }
}

/// One `[[service]]` table: a new service, or an override of a built-in one with the same name.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceEntry {
    pub name: ServiceName,
    pub kind: Option<ServiceKind>,
    pub api_base: Option<String>,
    pub api_key_env: Option<String>,
    pub web_url: Option<String>,
    pub status_page: Option<String>,
    pub status_components: Option<Vec<String>>,
    pub ca_file: Option<PathBuf>,
    pub interval: Option<Duration>,
    /// Admits sending this service's key over plain HTTP to a private network.
    pub allow_plain_http: bool,
}

/// `[gateway]`: where the failover proxy listens, whom it serves and how hard it tries.
#[derive(Clone, Debug, PartialEq)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    /// The variable holding the comma-separated keys clients must present.
    pub client_keys_env: String,
    /// Request bodies above this size are refused with 413.
    pub max_request_bytes: usize,
    /// A client must send its request headers, and then its body, within this time.
    pub client_timeout: Duration,
    /// The whole request's deadline, across every attempt.
    pub request_timeout: Duration,
    /// An upstream's default budget to answer (response headers), per attempt.
    pub upstream_timeout: Duration,
    /// A stream that sends nothing for this long has stalled.
    pub stream_stall: Duration,
    /// Attempts one request may make across upstreams (the first counts).
    pub max_attempts: u32,
    /// Consecutive failures that trip an upstream's breaker.
    pub failures_to_trip: u32,
    /// How often a tripped upstream is tried with canaries.
    pub canary_interval: Duration,
    /// Canaries in a row that must pass before a tripped upstream gets traffic back.
    pub canaries_to_close: u32,
    /// The share (percent) a recovered upstream gets at each ramp step; the last is 100.
    pub ramp: Vec<u8>,
    /// How long each ramp step lasts without failures before the next.
    pub ramp_step: Duration,
    /// Tokens canaries may spend per upstream per hour.
    pub canary_tokens_per_hour: u64,
    /// Token counters and usage-spike gauges per gateway key on `/metrics` (off: one series
    /// for all keys, so the public metrics say nothing about who uses what).
    pub metrics_per_key: bool,
    /// Requests each gateway key may send per minute (`None`: no limit); past it, 429.
    pub key_requests_per_minute: Option<u32>,
    /// Tokens each gateway key may use per minute (`None`: no limit); past it, 429.
    pub key_tokens_per_minute: Option<u32>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 4000)),
            client_keys_env: "AIWATCH_GATEWAY_KEYS".to_owned(),
            max_request_bytes: 4 * 1024 * 1024,
            client_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(300),
            upstream_timeout: Duration::from_secs(60),
            stream_stall: Duration::from_secs(30),
            max_attempts: 3,
            failures_to_trip: 3,
            canary_interval: Duration::from_secs(15),
            canaries_to_close: 2,
            ramp: vec![10, 50, 100],
            ramp_step: Duration::from_secs(30),
            canary_tokens_per_hour: 2_000,
            metrics_per_key: false,
            key_requests_per_minute: None,
            key_tokens_per_minute: None,
        }
    }
}

/// A model alias and its ordered upstreams.
#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    pub model: String,
    pub upstreams: Vec<Upstream>,
}

/// One upstream of a route: a service of the catalog and the model to ask it for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    pub service: ServiceName,
    pub model: String,
    /// Overrides `[gateway] upstream_timeout` for this upstream.
    pub timeout: Option<Duration>,
    /// Share of first attempts. By default the first upstream takes all (1) and the others
    /// stand by (0) for failover; weights on several upstreams split traffic between them.
    pub weight: u32,
}

// === raw, as written in the file ===

/// The file's sections, each read on its own (see [`Config::parse_all`]).
#[derive(Default)]
struct RawConfig {
    defaults: Option<RawDefaults>,
    server: Option<RawServer>,
    service: Vec<Spanned<RawService>>,
    gateway: Option<RawGateway>,
    route: Vec<Spanned<RawRoute>>,
    alert: Vec<Spanned<crate::alert::RawAlert>>,
    crowd: Option<crate::crowd::CrowdConfig>,
    feed: Vec<Spanned<RawFeed>>,
    agent: Vec<Spanned<RawAgent>>,
    /// The `name` of every `[[service]]` entry, including those with errors.
    service_names: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    region: String,
    #[serde(deserialize_with = "env_name")]
    token_env: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFeed {
    url: String,
    services: Vec<String>,
    #[serde(default)]
    keywords: Vec<String>,
    weight: Option<f64>,
    #[serde(default, deserialize_with = "duration")]
    interval: Option<Duration>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    #[serde(default, deserialize_with = "duration")]
    interval: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    timeout: Option<Duration>,
    #[serde(default, deserialize_with = "at_least_one")]
    failures_to_open: Option<u32>,
    #[serde(default, deserialize_with = "at_least_one")]
    successes_to_close: Option<u32>,
    #[serde(default, deserialize_with = "http_url")]
    control_url: Option<String>,
    #[serde(default, deserialize_with = "duration_or_off")]
    stream_interval: Option<Option<Duration>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    #[serde(default, deserialize_with = "socket_addr")]
    listen: Option<SocketAddr>,
    #[serde(default, deserialize_with = "database_url")]
    database: Option<String>,
    #[serde(default, deserialize_with = "duration")]
    raw_retention: Option<Duration>,
    #[serde(default, deserialize_with = "at_least_one")]
    max_connections: Option<u32>,
    #[serde(default, deserialize_with = "duration")]
    header_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "env_name")]
    auth_token_env: Option<String>,
    public: Option<bool>,
    #[serde(default, deserialize_with = "http_url")]
    public_url: Option<String>,
    #[serde(default, deserialize_with = "at_least_one")]
    quorum: Option<u32>,
    #[serde(default, deserialize_with = "duration")]
    agent_grace: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: Spanned<ValidName>,
    kind: Option<ServiceKind>,
    #[serde(default, deserialize_with = "http_url")]
    api_base: Option<String>,
    #[serde(default, deserialize_with = "env_name")]
    api_key_env: Option<String>,
    #[serde(default, deserialize_with = "http_url")]
    web_url: Option<String>,
    #[serde(default, deserialize_with = "http_url")]
    status_page: Option<String>,
    status_components: Option<Vec<String>>,
    ca_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "duration")]
    interval: Option<Duration>,
    #[serde(default)]
    allow_plain_http: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    #[serde(default, deserialize_with = "socket_addr")]
    listen: Option<SocketAddr>,
    #[serde(default, deserialize_with = "env_name")]
    client_keys_env: Option<String>,
    #[serde(default, deserialize_with = "at_least_one")]
    max_request_bytes: Option<u32>,
    #[serde(default, deserialize_with = "duration")]
    client_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    request_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    upstream_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    stream_stall: Option<Duration>,
    #[serde(default, deserialize_with = "at_least_one")]
    max_attempts: Option<u32>,
    #[serde(default, deserialize_with = "at_least_one")]
    failures_to_trip: Option<u32>,
    #[serde(default, deserialize_with = "duration")]
    canary_interval: Option<Duration>,
    #[serde(default, deserialize_with = "at_least_one")]
    canaries_to_close: Option<u32>,
    #[serde(default, deserialize_with = "ramp")]
    ramp: Option<Vec<u8>>,
    #[serde(default, deserialize_with = "duration")]
    ramp_step: Option<Duration>,
    #[serde(default, deserialize_with = "at_least_one")]
    canary_tokens_per_hour: Option<u32>,
    metrics_per_key: Option<bool>,
    #[serde(default, deserialize_with = "at_least_one")]
    key_requests_per_minute: Option<u32>,
    #[serde(default, deserialize_with = "at_least_one")]
    key_tokens_per_minute: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    model: String,
    upstreams: Vec<Spanned<RawUpstream>>,
}

/// `"service:model"`, or `{ upstream = "service:model", timeout = "20s", weight = 2 }`.
enum RawUpstream {
    Short(String),
    Full(RawUpstreamTable),
}

impl<'de> Deserialize<'de> for RawUpstream {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Either;
        impl<'de> serde::de::Visitor<'de> for Either {
            type Value = RawUpstream;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("\"service:model\" or { upstream = \"service:model\", timeout = \"20s\", weight = 1 }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawUpstream, E> {
                Ok(RawUpstream::Short(v.to_owned()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RawUpstream, A::Error> {
                RawUpstreamTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RawUpstream::Full)
            }
        }
        d.deserialize_any(Either)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstreamTable {
    upstream: String,
    #[serde(default, deserialize_with = "duration")]
    timeout: Option<Duration>,
    weight: Option<u32>,
}

struct ValidName(ServiceName);

impl<'de> Deserialize<'de> for ValidName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        ServiceName::parse(&raw)
            .map(ValidName)
            .map_err(serde::de::Error::custom)
    }
}

/// Parses "500ms", "30s", "5m": a number and a unit, as the contract says.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let trimmed = raw.trim();
    if trimmed.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "`{raw}` has no unit; write it like \"500ms\", \"30s\" or \"5m\""
        ));
    }
    let parsed = humantime::parse_duration(trimmed).map_err(|e| {
        format!("`{raw}` is not a duration ({e}); write it like \"500ms\", \"30s\" or \"5m\"")
    })?;
    if parsed.is_zero() {
        return Err(format!("`{raw}` is zero; a duration must be positive"));
    }
    Ok(parsed)
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let raw = String::deserialize(d)?;
    parse_duration(&raw)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// A duration, or "off".
fn duration_or_off<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<Duration>>, D::Error> {
    let raw = String::deserialize(d)?;
    if raw.trim().eq_ignore_ascii_case("off") {
        return Ok(Some(None));
    }
    parse_duration(&raw)
        .map(|d| Some(Some(d)))
        .map_err(|e| serde::de::Error::custom(format!("{e}, or \"off\"")))
}

fn at_least_one<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let n = i64::deserialize(d)?;
    u32::try_from(n)
        .ok()
        .filter(|n| *n >= 1)
        .map(Some)
        .ok_or_else(|| {
            serde::de::Error::custom(format!("{n} is out of range; use a whole number from 1 up"))
        })
}

fn ramp<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
    let steps = Vec::<i64>::deserialize(d)?;
    let valid = !steps.is_empty()
        && steps.iter().all(|s| (1..=100).contains(s))
        && steps.windows(2).all(|w| w[0] < w[1])
        && steps.last() == Some(&100);
    if !valid {
        return Err(serde::de::Error::custom(
            "a ramp is rising percentages that end at 100, like [10, 50, 100]",
        ));
    }
    Ok(Some(steps.into_iter().map(|s| s as u8).collect()))
}

fn http_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let raw = String::deserialize(d)?;
    validate_http_url(&raw)
        .map(|()| Some(raw.trim_end_matches('/').to_owned()))
        .map_err(serde::de::Error::custom)
}

/// Checks that `raw` is an absolute http(s) URL with a host.
pub fn validate_http_url(raw: &str) -> Result<(), String> {
    let rest = raw
        .strip_prefix("https://")
        .or_else(|| raw.strip_prefix("http://"))
        .ok_or_else(|| format!("`{raw}` is not an http:// or https:// URL"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') {
        return Err(format!("`{raw}` has no host"));
    }
    if raw.chars().any(char::is_whitespace) {
        return Err(format!("`{raw}` contains whitespace"));
    }
    Ok(())
}

fn env_name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let raw = String::deserialize(d)?;
    let valid = !raw.is_empty()
        && !raw.starts_with(|c: char| c.is_ascii_digit())
        && raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(Some(raw))
    } else {
        Err(serde::de::Error::custom(format!(
            "`{raw}` is not an environment variable name (letters, digits, _); name the variable that holds the key, not the key itself"
        )))
    }
}

fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let raw = String::deserialize(d)?;
    raw.parse().map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "`{raw}` is not an address with a port, like \"127.0.0.1:8080\" or \"[::1]:8080\""
        ))
    })
}

fn database_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let raw = String::deserialize(d)?;
    if raw.starts_with("sqlite:")
        || raw.starts_with("postgres://")
        || raw.starts_with("postgresql://")
    {
        Ok(Some(raw))
    } else {
        Err(serde::de::Error::custom(format!(
            "`{raw}` is neither \"sqlite:PATH\" nor \"postgres://…\""
        )))
    }
}

// === validation ===

impl Config {
    /// Parses and validates a config file's text; the first error (in file order) when it is
    /// not valid. [`Config::parse_all`] gives every error.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        Self::parse_all(text).map_err(|mut errors| errors.swap_remove(0))
    }

    /// Parses and validates a config file's text, reporting every error at once (in file
    /// order): each section and each `[[…]]` entry is read and checked on its own, so one bad
    /// entry does not hide the next. A TOML syntax error stays a single error.
    pub fn parse_all(text: &str) -> Result<Self, Vec<ConfigError>> {
        let (config, errors) = Self::check(text);
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(errors)
        }
    }

    /// Every error of the file (in file order) and the config its valid parts make, for a
    /// checker that goes on to check what those parts name (files, variables).
    pub fn check(text: &str) -> (Self, Vec<ConfigError>) {
        let root = match toml::de::DeTable::parse(text) {
            Ok(root) => root,
            Err(e) => {
                return (
                    Self::default(),
                    vec![locate(text, e.span(), e.message().to_owned())],
                )
            }
        };
        let mut errors = Vec::new();
        let mut raw = RawConfig::default();
        for (key, value) in root.into_inner() {
            let errors = &mut errors;
            match key.get_ref().as_ref() {
                "defaults" => raw.defaults = table(text, value, errors).map(Spanned::into_inner),
                "server" => raw.server = table(text, value, errors).map(Spanned::into_inner),
                "gateway" => raw.gateway = table(text, value, errors).map(Spanned::into_inner),
                "crowd" => raw.crowd = table(text, value, errors).map(Spanned::into_inner),
                "service" => {
                    // Names of entries that fail are still known, so routes and alerts that
                    // name them do not report a second, misleading error.
                    raw.service_names = entry_names(&value);
                    raw.service = entries(text, "service", value, errors);
                }
                "route" => raw.route = entries(text, "route", value, errors),
                "alert" => raw.alert = entries(text, "alert", value, errors),
                "feed" => raw.feed = entries(text, "feed", value, errors),
                "agent" => raw.agent = entries(text, "agent", value, errors),
                other => errors.push(locate(
                    text,
                    Some(key.span()),
                    format!(
                        "unknown field `{other}`, expected one of `defaults`, `server`, `service`, `gateway`, `route`, `alert`, `crowd`, `feed`, `agent`"
                    ),
                )),
            }
        }
        let config = Self::validate(text, raw, &mut errors);
        errors.sort_by_key(|e| (e.line, e.column));
        errors.dedup();
        (config, errors)
    }

    fn validate(text: &str, raw: RawConfig, errors: &mut Vec<ConfigError>) -> Self {
        let d = raw.defaults.unwrap_or_default();
        let fallback = Defaults::default();
        let defaults = Defaults {
            interval: d.interval.unwrap_or(fallback.interval),
            timeout: d.timeout.unwrap_or(fallback.timeout),
            failures_to_open: d.failures_to_open.unwrap_or(fallback.failures_to_open),
            successes_to_close: d.successes_to_close.unwrap_or(fallback.successes_to_close),
            control_url: d.control_url.unwrap_or(fallback.control_url),
            stream_interval: d.stream_interval.unwrap_or(fallback.stream_interval),
        };
        let server = raw.server.map_or_else(ServerConfig::default, |s| {
            let fallback = ServerConfig::default();
            ServerConfig {
                listen: s.listen.unwrap_or(fallback.listen),
                database: s.database,
                raw_retention: s.raw_retention.unwrap_or(fallback.raw_retention),
                max_connections: s.max_connections.unwrap_or(fallback.max_connections),
                header_timeout: s.header_timeout.unwrap_or(fallback.header_timeout),
                auth_token_env: s.auth_token_env,
                public: s.public.unwrap_or(fallback.public),
                public_url: s
                    .public_url
                    .map(|u| u.trim_end_matches('/').to_owned())
                    .or(fallback.public_url),
                quorum: s.quorum.unwrap_or(fallback.quorum),
                agent_grace: s.agent_grace,
            }
        });

        let mut seen = HashSet::new();
        let mut services = Vec::with_capacity(raw.service.len());
        for spanned in raw.service {
            match validate_service(text, spanned, &mut seen) {
                Ok(entry) => services.push(entry),
                Err(e) => errors.push(e),
            }
        }

        let gateway = raw.gateway.map(|g| {
            let fallback = GatewayConfig::default();
            GatewayConfig {
                listen: g.listen.unwrap_or(fallback.listen),
                client_keys_env: g.client_keys_env.unwrap_or(fallback.client_keys_env),
                max_request_bytes: g
                    .max_request_bytes
                    .map_or(fallback.max_request_bytes, |n| n as usize),
                client_timeout: g.client_timeout.unwrap_or(fallback.client_timeout),
                request_timeout: g.request_timeout.unwrap_or(fallback.request_timeout),
                upstream_timeout: g.upstream_timeout.unwrap_or(fallback.upstream_timeout),
                stream_stall: g.stream_stall.unwrap_or(fallback.stream_stall),
                max_attempts: g.max_attempts.unwrap_or(fallback.max_attempts),
                failures_to_trip: g.failures_to_trip.unwrap_or(fallback.failures_to_trip),
                canary_interval: g.canary_interval.unwrap_or(fallback.canary_interval),
                canaries_to_close: g.canaries_to_close.unwrap_or(fallback.canaries_to_close),
                ramp: g.ramp.unwrap_or(fallback.ramp),
                ramp_step: g.ramp_step.unwrap_or(fallback.ramp_step),
                canary_tokens_per_hour: g
                    .canary_tokens_per_hour
                    .map_or(fallback.canary_tokens_per_hour, u64::from),
                metrics_per_key: g.metrics_per_key.unwrap_or(fallback.metrics_per_key),
                key_requests_per_minute: g.key_requests_per_minute,
                key_tokens_per_minute: g.key_tokens_per_minute,
            }
        });

        // A service a route or an alert names: built in or configured (even by an entry with
        // its own error), else close names.
        let configured: Vec<&str> = raw.service_names.iter().map(String::as_str).collect();
        let watched = |name: &str| -> Result<ServiceName, String> {
            if Catalog::is_builtin(name) || configured.contains(&name) {
                return ServiceName::parse(name);
            }
            let mut candidates: Vec<&str> = crate::catalog::builtin_names().collect();
            candidates.extend(configured.iter().copied());
            Err(crate::catalog::UnknownService {
                name: name.to_owned(),
                suggestions: crate::catalog::closest_names(name, candidates.into_iter()),
            }
            .to_string())
        };
        let mut routes = Vec::with_capacity(raw.route.len());
        let mut aliases = HashSet::new();
        for spanned in raw.route {
            match validate_route(text, spanned, &mut aliases, &watched) {
                Ok(route) => routes.push(route),
                Err(e) => errors.push(e),
            }
        }

        let alerts = crate::alert::validate(text, raw.alert, &watched, errors);

        let mut feeds = Vec::with_capacity(raw.feed.len());
        for spanned in raw.feed {
            match validate_feed(text, spanned, &watched) {
                Ok(feed) => feeds.push(feed),
                Err(e) => errors.push(e),
            }
        }

        let mut agents: Vec<AgentEntry> = Vec::with_capacity(raw.agent.len());
        for spanned in raw.agent {
            match validate_agent(text, spanned, &agents) {
                Ok(agent) => agents.push(agent),
                Err(e) => errors.push(e),
            }
        }

        let refused_services = raw
            .service_names
            .iter()
            .filter(|name| {
                !services
                    .iter()
                    .any(|s: &ServiceEntry| s.name.as_str() == *name)
            })
            .cloned()
            .collect();
        Self {
            defaults,
            server,
            services,
            gateway,
            routes,
            alerts,
            crowd: raw.crowd.unwrap_or_default(),
            feeds,
            agents,
            refused_services,
        }
    }

    /// Makes relative `ca_file` paths relative to the config file's folder, as users expect.
    pub fn resolve_paths(&mut self, config_dir: &Path) {
        for entry in &mut self.services {
            if let Some(path) = &entry.ca_file {
                if path.is_relative() {
                    entry.ca_file = Some(config_dir.join(path));
                }
            }
        }
        for alert in &mut self.alerts {
            if let Some(path) = &alert.ca_file {
                if path.is_relative() {
                    alert.ca_file = Some(config_dir.join(path));
                }
            }
        }
    }
}

/// One `[[service]]` entry, checked on its own; `seen` holds the names before it.
fn validate_service(
    text: &str,
    spanned: Spanned<RawService>,
    seen: &mut HashSet<ServiceName>,
) -> Result<ServiceEntry, ConfigError> {
    let span = spanned.span();
    let s = spanned.into_inner();
    let name_span = s.name.span();
    let name = s.name.into_inner().0;
    if !seen.insert(name.clone()) {
        return Err(locate(
            text,
            Some(name_span),
            format!("service `{name}` is defined twice"),
        ));
    }
    let is_new = !Catalog::is_builtin(name.as_str());
    if is_new && s.api_base.is_none() && s.web_url.is_none() {
        return Err(locate(
            text,
            Some(span),
            format!("service `{name}` needs `api_base` or `web_url`: there is nothing to check"),
        ));
    }
    if s.kind == Some(ServiceKind::Http) && s.web_url.is_none() && s.api_base.is_none() {
        return Err(locate(
            text,
            Some(span),
            format!("service `{name}` has kind \"http\" but no `web_url`"),
        ));
    }
    // The key this service will send, and where: its own fields, else the built-in's.
    let builtin = Catalog::builtin();
    let inherited = builtin.get(name.as_str()).ok();
    let api_base = s
        .api_base
        .clone()
        .or_else(|| inherited.and_then(|b| b.api_base.clone()));
    let key_env = s
        .api_key_env
        .clone()
        .or_else(|| inherited.and_then(|b| b.api_key_env.clone()));
    if let (Some(url), Some(var)) = (&api_base, &key_env) {
        if let Some(why) = crate::key_route::plain_http_refusal(url, var, s.allow_plain_http) {
            let field = field_span(text, &span, "api_base").unwrap_or(span.clone());
            return Err(locate(text, Some(field), format!("service `{name}` {why}")));
        }
    }
    Ok(ServiceEntry {
        name,
        kind: s.kind,
        api_base: s.api_base,
        api_key_env: s.api_key_env,
        web_url: s.web_url,
        status_page: s.status_page,
        status_components: s.status_components,
        ca_file: s.ca_file,
        interval: s.interval,
        allow_plain_http: s.allow_plain_http,
    })
}

/// One `[[route]]` entry, checked on its own; `aliases` holds the models before it.
fn validate_route(
    text: &str,
    spanned: Spanned<RawRoute>,
    aliases: &mut HashSet<String>,
    watched: &dyn Fn(&str) -> Result<ServiceName, String>,
) -> Result<Route, ConfigError> {
    let span = spanned.span();
    let r = spanned.into_inner();
    if r.model.trim().is_empty() {
        return Err(locate(
            text,
            Some(span),
            "a route's `model` must not be empty".into(),
        ));
    }
    if !aliases.insert(r.model.clone()) {
        return Err(locate(
            text,
            Some(span),
            format!("route `{}` is defined twice", r.model),
        ));
    }
    if r.upstreams.is_empty() {
        return Err(locate(
            text,
            Some(span),
            format!("route `{}` has no upstreams", r.model),
        ));
    }
    let mut upstreams = Vec::with_capacity(r.upstreams.len());
    let explicit_weights = r
        .upstreams
        .iter()
        .any(|u| matches!(u.get_ref(), RawUpstream::Full(t) if t.weight.is_some()));
    for (position, up) in r.upstreams.into_iter().enumerate() {
        let up_span = up.span();
        let (raw_up, timeout, weight) = match up.into_inner() {
            RawUpstream::Short(s) => (s, None, None),
            RawUpstream::Full(t) => (t.upstream, t.timeout, t.weight),
        };
        // Without weights the first upstream takes all traffic and the rest stand by.
        let weight = match weight {
            Some(w) => w,
            None if !explicit_weights && position == 0 => 1,
            None => 0,
        };
        let (service, model) = raw_up
            .split_once(':')
            .filter(|(s, m)| !s.is_empty() && !m.is_empty())
            .ok_or_else(|| {
                locate(
                    text,
                    Some(up_span.clone()),
                    format!("upstream `{raw_up}` is not \"service:model\""),
                )
            })?;
        let service = watched(service).map_err(|e| locate(text, Some(up_span.clone()), e))?;
        upstreams.push(Upstream {
            service,
            model: model.to_owned(),
            timeout,
            weight,
        });
    }
    if upstreams.iter().all(|u| u.weight == 0) {
        return Err(locate(
            text,
            Some(span),
            format!(
                "route `{}` gives every upstream weight 0: none would get traffic",
                r.model
            ),
        ));
    }
    Ok(Route {
        model: r.model,
        upstreams,
    })
}

/// One `[[agent]]` entry, checked on its own; `before` holds the valid ones before it.
fn validate_agent(
    text: &str,
    spanned: Spanned<RawAgent>,
    before: &[AgentEntry],
) -> Result<AgentEntry, ConfigError> {
    let span = spanned.span();
    let a = spanned.into_inner();
    let at = |key: &str| field_span(text, &span, key).or_else(|| Some(span.clone()));
    validate_region(&a.region).map_err(|e| locate(text, at("region"), format!("agent: {e}")))?;
    let region = crate::observation::Region::new(a.region);
    if before.iter().any(|known| known.region == region) {
        return Err(locate(
            text,
            at("region"),
            format!("agent: region `{region}` is declared twice; one `[[agent]]` per region"),
        ));
    }
    let token_env = a.token_env.unwrap_or_default();
    Ok(AgentEntry { region, token_env })
}

/// One `[[feed]]` entry, checked on its own.
fn validate_feed(
    text: &str,
    spanned: Spanned<RawFeed>,
    watched: &dyn Fn(&str) -> Result<ServiceName, String>,
) -> Result<FeedConfig, ConfigError> {
    let span = spanned.span();
    let f = spanned.into_inner();
    let at = |key: &str| field_span(text, &span, key).or_else(|| Some(span.clone()));
    validate_http_url(&f.url).map_err(|e| locate(text, at("url"), format!("feed: {e}")))?;
    if f.services.is_empty() {
        return Err(locate(
            text,
            at("services"),
            "a feed needs `services`: the services its posts speak about".into(),
        ));
    }
    let mut services = Vec::with_capacity(f.services.len());
    for name in &f.services {
        services
            .push(watched(name).map_err(|e| locate(text, at("services"), format!("feed: {e}")))?);
    }
    let weight = f.weight.unwrap_or(0.3);
    if !(weight > 0.0 && weight <= 1.0) {
        return Err(locate(
            text,
            at("weight"),
            format!(
                "feed `weight` must be above 0 and at most 1 (a first-hand report), not {weight}"
            ),
        ));
    }
    let interval = f.interval.unwrap_or(Duration::from_secs(300));
    if interval < Duration::from_secs(60) {
        return Err(locate(
            text,
            at("interval"),
            "feed `interval` must be at least 1m: public feeds are read politely".into(),
        ));
    }
    Ok(FeedConfig {
        url: f.url,
        services,
        keywords: f.keywords,
        weight,
        interval,
    })
}

/// A section (`[server]`, say) read on its own; its error joins `errors`.
fn table<'i, T: Deserialize<'i>>(
    text: &str,
    value: Spanned<toml::de::DeValue<'i>>,
    errors: &mut Vec<ConfigError>,
) -> Option<Spanned<T>> {
    let span = value.span();
    match value.into_inner() {
        toml::de::DeValue::Table(t) => {
            T::deserialize(toml::de::Deserializer::from(Spanned::new(span.clone(), t)))
                .map(|v| Spanned::new(span.clone(), v))
                .map_err(|e| {
                    errors.push(locate(
                        text,
                        e.span().or(Some(span)),
                        e.message().to_owned(),
                    ))
                })
                .ok()
        }
        other => {
            errors.push(locate(
                text,
                Some(span),
                format!("expected a table, found {}", other.type_str()),
            ));
            None
        }
    }
}

/// An array of tables (`[[service]]`, say), each entry read on its own so that one bad entry
/// does not hide the errors of the others.
fn entries<'i, T: Deserialize<'i>>(
    text: &str,
    key: &str,
    value: Spanned<toml::de::DeValue<'i>>,
    errors: &mut Vec<ConfigError>,
) -> Vec<Spanned<T>> {
    let span = value.span();
    match value.into_inner() {
        toml::de::DeValue::Array(items) => items
            .into_iter()
            .filter_map(|item| table(text, item, errors))
            .collect(),
        other => {
            errors.push(locate(
                text,
                Some(span),
                format!(
                    "`{key}` is a list of tables ([[{key}]]), not {}",
                    other.type_str()
                ),
            ));
            Vec::new()
        }
    }
}

/// The `name` of each entry of an array of tables, valid or not.
fn entry_names(value: &Spanned<toml::de::DeValue<'_>>) -> Vec<String> {
    value
        .get_ref()
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| {
                    item.get_ref()
                        .get("name")?
                        .get_ref()
                        .as_str()
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The span of `key = …` in the table that starts at `table` (up to the next table header), so
/// an error points at the field's own line.
pub(crate) fn field_span(text: &str, table: &Range<usize>, key: &str) -> Option<Range<usize>> {
    let body = text.get(table.start..)?;
    let mut offset = 0;
    for (i, line) in body.split_inclusive('\n').enumerate() {
        let trimmed = line.trim_start();
        if i > 0 && trimmed.starts_with('[') {
            return None;
        }
        if trimmed
            .strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with('='))
        {
            let start = table.start + offset + (line.len() - trimmed.len());
            return Some(start..start + trimmed.trim_end().len());
        }
        offset += line.len();
    }
    None
}

/// Turns a byte span into a line, a column and the key path written there.
pub(crate) fn locate(text: &str, span: Option<Range<usize>>, message: String) -> ConfigError {
    let Some(span) = span else {
        return ConfigError {
            line: 1,
            column: 1,
            field: None,
            message,
        };
    };
    let offset = span.start.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    ConfigError {
        line,
        column,
        field: field_at(text, line_start),
        message,
    }
}

/// The key path of the line starting at `line_start`: its table (with the index of an array of
/// tables) and its key.
fn field_at(text: &str, line_start: usize) -> Option<String> {
    let this_line = text[line_start..].lines().next().unwrap_or_default().trim();
    let mut table: Option<String> = None;
    let mut counts: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for line in text[..line_start].lines().chain(std::iter::once(this_line)) {
        let line = line.trim();
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.split("]]").next()) {
            let name = name.trim().to_owned();
            let n = counts.entry(name.clone()).or_insert(0);
            *n += 1;
            table = Some(format!("{name}[{n}]"));
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            table = Some(name.trim().to_owned());
        }
    }
    let key = if this_line.starts_with('[') {
        None
    } else {
        this_line
            .split_once('=')
            .map(|(k, _)| k.trim().trim_matches('"').to_owned())
            .filter(|k| !k.is_empty())
    };
    match (table, key) {
        (Some(t), Some(k)) => Some(format!("{t}.{k}")),
        (Some(t), None) => Some(t),
        (None, Some(k)) => Some(k),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> ConfigError {
        Config::parse(text).unwrap_err()
    }

    #[test]
    fn empty_file_is_all_defaults() {
        let config = Config::parse("").unwrap();
        assert_eq!(config, Config::default());
    }

    #[test]
    fn the_design_example_parses() {
        let config = Config::parse(include_str!("../tests/data/design-example.toml")).unwrap();
        assert_eq!(config.defaults.interval, Duration::from_secs(30));
        assert_eq!(config.defaults.timeout, Duration::from_secs(5));
        assert_eq!(config.services[0].name.as_str(), "team-llm");
        assert_eq!(config.services[0].interval, Some(Duration::from_secs(10)));
        assert_eq!(config.routes[0].upstreams.len(), 3);
        assert_eq!(config.routes[0].upstreams[2].service.as_str(), "ollama");
        assert_eq!(config.gateway.as_ref().unwrap().listen.port(), 4000);
    }

    #[test]
    fn a_key_over_plain_http_to_the_internet_is_refused_at_its_api_base_line() {
        let e =
            err("[[service]]\nname = \"openai-api\"\n\napi_base = \"http://llm.example.com/v1\"\n");
        assert_eq!(e.line, 4, "{e}");
        assert_eq!(e.field.as_deref(), Some("service[1].api_base"), "{e}");
        assert!(e.message.contains("OPENAI_API_KEY"), "{e}");
        // A new service's own key, to a private network: only with the opt-in.
        let private = "[[service]]\nname = \"box\"\napi_base = \"http://192.168.1.9:8000/v1\"\napi_key_env = \"BOX_KEY\"\n";
        assert!(err(private).message.contains("allow_plain_http"));
        assert!(Config::parse(&format!("{private}allow_plain_http = true\n")).is_ok());
        // No key, or this machine: plain HTTP is fine.
        assert!(Config::parse(
            "[[service]]\nname = \"box\"\napi_base = \"http://192.168.1.9:8000/v1\"\n"
        )
        .is_ok());
        assert!(Config::parse("[[service]]\nname = \"box\"\napi_base = \"http://127.0.0.1:8000/v1\"\napi_key_env = \"BOX_KEY\"\n").is_ok());
    }

    #[test]
    fn stream_interval_takes_a_duration_or_off() {
        let on = Config::parse("[defaults]\nstream_interval = \"5m\"\n").unwrap();
        assert_eq!(on.defaults.stream_interval, Some(Duration::from_secs(300)));
        let off = Config::parse("[defaults]\nstream_interval = \"off\"\n").unwrap();
        assert_eq!(off.defaults.stream_interval, None);
        let e = err("[defaults]\nstream_interval = \"sometimes\"\n");
        assert_eq!(e.field.as_deref(), Some("defaults.stream_interval"));
        assert!(e.message.contains("\"off\""), "{e}");
    }

    #[test]
    fn unknown_key_names_its_line_and_field() {
        let e = err("[defaults]\ninterval = \"30s\"\nintervall = \"10s\"\n");
        assert_eq!(e.line, 3);
        assert_eq!(e.field.as_deref(), Some("defaults.intervall"));
        assert!(e.message.contains("unknown field"), "{e}");
    }

    #[test]
    fn agents_declare_one_region_each_with_a_token_variable() {
        let config = Config::parse(
            "[server]\nquorum = 3\nagent_grace = \"2m\"\n\n[[agent]]\nregion = \"eu-west\"\ntoken_env = \"EU_TOKEN\"\n",
        )
        .unwrap();
        assert_eq!(config.server.quorum, 3);
        assert_eq!(config.server.agent_grace, Some(Duration::from_secs(120)));
        assert_eq!(config.agents[0].region.as_str(), "eu-west");
        assert_eq!(config.agents[0].token_env, "EU_TOKEN");
        let twice = err("[[agent]]\nregion = \"eu-west\"\ntoken_env = \"A\"\n\n[[agent]]\nregion = \"eu-west\"\ntoken_env = \"B\"\n");
        assert_eq!(twice.line, 6);
        assert!(twice.message.contains("declared twice"), "{twice}");
        let local = err("[[agent]]\nregion = \"local\"\ntoken_env = \"A\"\n");
        assert_eq!(local.line, 2);
        assert!(local.message.contains("this machine"), "{local}");
        let no_token = err("[[agent]]\nregion = \"eu-west\"\n");
        assert!(no_token.message.contains("token_env"), "{no_token}");
    }

    #[test]
    fn duration_without_unit_names_the_second_service() {
        let e = err(
            "[[service]]\nname = \"a\"\nweb_url = \"https://a.example\"\n\n[[service]]\nname = \"b\"\nweb_url = \"https://b.example\"\ninterval = \"10\"\n",
        );
        assert_eq!(e.line, 8);
        assert_eq!(e.field.as_deref(), Some("service[2].interval"));
        assert!(e.message.contains("no unit"), "{e}");
    }

    #[test]
    fn bad_service_name_is_rejected_with_reason() {
        let e = err("[[service]]\nname = \"Team LLM\"\nweb_url = \"https://x.example\"\n");
        assert_eq!(e.line, 2);
        assert_eq!(e.field.as_deref(), Some("service[1].name"));
    }

    #[test]
    fn duplicate_service_and_missing_target_are_errors() {
        let e = err("[[service]]\nname = \"a\"\nweb_url = \"https://a.example\"\n[[service]]\nname = \"a\"\nweb_url = \"https://a.example\"\n");
        assert_eq!(e.line, 5);
        assert!(e.message.contains("twice"));
        let e = err("[[service]]\nname = \"lonely\"\n");
        assert_eq!(e.line, 1);
        assert!(e.message.contains("api_base"), "{e}");
    }

    #[test]
    fn route_upstream_must_name_a_known_service() {
        let e = err("[[route]]\nmodel = \"smart\"\nupstreams = [\"openai-api:gpt-4o\", \"anthropc-api:claude\"]\n");
        assert_eq!(e.line, 3);
        assert_eq!(e.field.as_deref(), Some("route[1].upstreams"));
        assert!(e.message.contains("anthropic-api"), "{e}");
        let e = err("[[route]]\nmodel = \"smart\"\nupstreams = [\"gpt-4o\"]\n");
        assert!(e.message.contains("service:model"), "{e}");
    }

    #[test]
    fn wrong_types_and_values_are_located() {
        let e = err("[server]\nlisten = \"localhost\"\n");
        assert_eq!((e.line, e.field.as_deref()), (2, Some("server.listen")));
        let e = err("[defaults]\nfailures_to_open = 0\n");
        assert_eq!(e.line, 2);
        let e = err("[[service]]\nname = \"x\"\nkind = \"grpc\"\napi_base = \"https://x\"\n");
        assert_eq!(e.line, 3);
        assert!(e.message.contains("openai"), "{e}");
        let e = err("[[service]]\nname = \"x\"\napi_base = \"ftp://x\"\n");
        assert_eq!(e.line, 3);
        let e = err(
            "[[service]]\nname = \"x\"\napi_base = \"https://x\"\napi_key_env = \"sk-abc123\"\n",
        );
        assert!(e.message.contains("environment variable"), "{e}");
        let e = err("[defaults\n");
        assert_eq!(e.line, 1);
    }

    #[test]
    fn gateway_settings_and_upstream_tables_parse() {
        let config = Config::parse(
            r#"
[gateway]
listen = "127.0.0.1:4100"
stream_stall = "5s"
ramp = [25, 100]

[[route]]
model = "smart"
upstreams = [
  { upstream = "openai-api:gpt-4o-mini", timeout = "20s", weight = 3 },
  { upstream = "anthropic-api:claude-3-5-haiku-latest", weight = 1 },
  "ollama:llama3.2",
]

[[route]]
model = "cheap"
upstreams = ["groq-api:llama-3.1-8b-instant", "ollama:llama3.2"]
"#,
        )
        .expect("valid");
        let gateway = config.gateway.expect("gateway table");
        assert_eq!(gateway.listen.port(), 4100);
        assert_eq!(gateway.stream_stall, Duration::from_secs(5));
        assert_eq!(gateway.ramp, vec![25, 100]);
        assert_eq!(gateway.max_attempts, 3, "unset keys keep their defaults");
        let smart = &config.routes[0].upstreams;
        assert_eq!(smart[0].timeout, Some(Duration::from_secs(20)));
        assert_eq!(
            smart.iter().map(|u| u.weight).collect::<Vec<_>>(),
            vec![3, 1, 0]
        );
        let cheap = &config.routes[1].upstreams;
        assert_eq!(
            cheap.iter().map(|u| u.weight).collect::<Vec<_>>(),
            vec![1, 0],
            "without weights the first upstream takes the traffic and the rest stand by"
        );
    }

    #[test]
    fn bad_gateway_values_name_their_field() {
        let e = err("[gateway]\nramp = [50, 10]\n");
        assert_eq!(e.line, 2);
        assert!(e.message.contains("rising percentages"), "{e}");
        let e = err(
            "[[route]]\nmodel = \"x\"\nupstreams = [{ upstream = \"ollama:m\", wieght = 2 }]\n",
        );
        assert_eq!(e.line, 3);
        assert!(e.message.contains("wieght"), "{e}");
        let e = err(
            "[[route]]\nmodel = \"x\"\nupstreams = [{ upstream = \"ollama:m\", weight = 0 }]\n",
        );
        assert!(e.message.contains("weight 0"), "{e}");
    }

    #[test]
    fn every_independent_error_is_reported_in_file_order() {
        let text = "[defaults]\ninterval = \"10\"\n\n[server]\nlisten = \"localhost\"\n\n[[service]]\nname = \"team\"\napi_base = \"https://t.example/v1\"\ninterval = \"fast\"\n\n[[route]]\nmodel = \"smart\"\nupstreams = [\"team:m\", \"opneai-api:gpt-4o\"]\n\n[[alert]]\nname = \"ops\"\nkind = \"webhook\"\nurl = \"ftp://x\"\n\n[bogus]\n";
        let errors = Config::parse_all(text).unwrap_err();
        let found: Vec<(usize, Option<&str>)> = errors
            .iter()
            .map(|e| (e.line, e.field.as_deref()))
            .collect();
        assert_eq!(
            found,
            vec![
                (2, Some("defaults.interval")),
                (5, Some("server.listen")),
                (10, Some("service[1].interval")),
                (14, Some("route[1].upstreams")),
                (19, Some("alert[1].url")),
                (21, Some("bogus")),
            ],
            "{errors:#?}"
        );
        assert!(errors[3].message.contains("openai-api"), "{errors:#?}");
        // A route naming the service whose entry failed gets no second, misleading error.
        assert!(
            !errors.iter().any(|e| e.message.contains("`team`")),
            "{errors:#?}"
        );
        // `parse` says the first of them.
        assert_eq!(Config::parse(text).unwrap_err(), errors[0]);
    }

    #[test]
    fn a_syntax_error_stays_one_error() {
        let errors =
            Config::parse_all("[defaults\ninterval = 3\n[server]\nlisten = 1\n").unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert_eq!(errors[0].line, 1);
    }

    #[test]
    fn relative_ca_file_resolves_against_the_config_folder() {
        let mut config = Config::parse(
            "[[service]]\nname = \"x\"\napi_base = \"https://x\"\nca_file = \"corp.pem\"\n",
        )
        .unwrap();
        config.resolve_paths(Path::new("/etc/aiwatch"));
        assert_eq!(
            config.services[0].ca_file.as_deref(),
            Some(Path::new("/etc/aiwatch/corp.pem"))
        );
    }
}
