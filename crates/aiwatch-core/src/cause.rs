//! The vocabulary of a verdict: status, scope, cause codes, and the one advice text per cause.

use serde::{Deserialize, Serialize};

/// How a service (or one of its components) is doing: the one status word every surface shows.
///
/// It is also the official page's reduced signal and the daemon's state per key; the
/// conversions from other vocabularies (official component statuses, Statuspage values) live
/// here and in `official.rs`, nowhere else.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Operational,
    Degraded,
    Outage,
    /// The provider announced maintenance for it.
    Maintenance,
    /// A local runtime (Ollama, LM Studio) that is not running on this machine: not an outage.
    NotRunning,
    /// Nothing could be seen: no usable observation, or the monitor could not reach it.
    Unknown,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Self::Operational,
        Self::Degraded,
        Self::Outage,
        Self::Maintenance,
        Self::NotRunning,
        Self::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Operational => "operational",
            Self::Degraded => "degraded",
            Self::Outage => "outage",
            Self::Maintenance => "maintenance",
            Self::NotRunning => "not_running",
            Self::Unknown => "unknown",
        }
    }

    /// Parses [`Status::as_str`]'s output; anything else is `Unknown`.
    pub fn from_str_lossy(raw: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == raw)
            .unwrap_or(Self::Unknown)
    }

    /// How bad it is, for "the worst of": operational and not-running lowest, outage highest.
    pub fn severity(self) -> u8 {
        match self {
            Self::Operational | Self::NotRunning => 0,
            Self::Unknown => 1,
            Self::Maintenance => 2,
            Self::Degraded => 3,
            Self::Outage => 4,
        }
    }

    /// The worst of several statuses; `Unknown` when there are none.
    pub fn worst(all: impl IntoIterator<Item = Status>) -> Status {
        all.into_iter()
            .max_by_key(|s| s.severity())
            .unwrap_or(Self::Unknown)
    }

    /// Whether this status is trouble a person should look at (counted as "has trouble").
    pub fn is_trouble(self) -> bool {
        matches!(self, Self::Degraded | Self::Outage | Self::Maintenance)
    }

    /// Whether it is something the monitor actually saw (not unknown, not absent).
    pub fn is_measured(self) -> bool {
        !matches!(self, Self::Unknown | Self::NotRunning)
    }

    /// The word for an incident of this severity in a sentence ("unconfirmed outage").
    pub fn noun(self) -> &'static str {
        match self {
            Self::Degraded => "degradation",
            Self::NotRunning => "not running",
            other => other.as_str(),
        }
    }

    /// The component status of the Statuspage format for it, when the format has one:
    /// Statuspage has neither "unknown" nor "not running", and aiwatch never maps those to a
    /// health it did not see.
    pub fn statuspage_component(self) -> Option<&'static str> {
        match self {
            Self::Operational => Some("operational"),
            Self::Degraded => Some("degraded_performance"),
            Self::Outage => Some("major_outage"),
            Self::Maintenance => Some("under_maintenance"),
            Self::NotRunning | Self::Unknown => None,
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who is affected: nobody, this machine or network, this account, a region, or everyone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    None,
    Local,
    Account,
    Regional,
    Global,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Local => "local",
            Self::Account => "account",
            Self::Regional => "regional",
            Self::Global => "global",
        }
    }

    /// Whether the fault sits on the user's side (their network or their account).
    pub fn is_users_side(self) -> bool {
        matches!(self, Self::Local | Self::Account)
    }
}

/// A stable snake_case code for why a verdict is what it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    // Network side.
    DnsFailure,
    DnsFiltered,
    TcpRefused,
    TcpTimeout,
    TlsIntercepted,
    TlsInvalid,
    ProxyError,
    CaptivePortal,
    BotChallenge,
    // Account side.
    AuthInvalid,
    QuotaExhausted,
    RateLimited,
    RegionUnsupported,
    ModelUnavailable,
    PermissionDenied,
    // Provider side.
    ProviderError,
    ProviderOverloaded,
    SlowResponses,
    TruncatedResponses,
    OfficialIncident,
    Maintenance,
    /// Many people report problems with it right now (problem reports, public posts).
    CrowdReports,
    // Neither.
    Ok,
    Unknown,
}

/// Whose side a cause sits on: the path from the vantage point, the account, the provider, or
/// nobody's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The network between the vantage point and the provider (DNS, firewall, proxy, TLS
    /// interception, captive portal, bot protection flagging the vantage point's address).
    Network,
    /// The account or key used (rejected key, quota, rate limit, region, model, permission).
    Account,
    /// The provider's own service.
    Provider,
    /// `ok` and `unknown`.
    Neither,
}

/// Specifics that make an advice text concrete for this check.
#[derive(Clone, Debug, Default)]
pub struct AdviceContext<'a> {
    /// The environment variable that holds the service's key.
    pub key_env: Option<&'a str>,
    /// The host that was checked.
    pub host: Option<&'a str>,
    /// The issuer of an intercepting certificate.
    pub issuer: Option<&'a str>,
    /// Whether the service runs on this machine (Ollama, LM Studio).
    pub local_service: bool,
}

impl Cause {
    pub const ALL: [Cause; 24] = [
        Self::DnsFailure,
        Self::DnsFiltered,
        Self::TcpRefused,
        Self::TcpTimeout,
        Self::TlsIntercepted,
        Self::TlsInvalid,
        Self::ProxyError,
        Self::CaptivePortal,
        Self::BotChallenge,
        Self::AuthInvalid,
        Self::QuotaExhausted,
        Self::RateLimited,
        Self::RegionUnsupported,
        Self::ModelUnavailable,
        Self::PermissionDenied,
        Self::ProviderError,
        Self::ProviderOverloaded,
        Self::SlowResponses,
        Self::TruncatedResponses,
        Self::OfficialIncident,
        Self::Maintenance,
        Self::CrowdReports,
        Self::Ok,
        Self::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::DnsFailure => "dns_failure",
            Self::DnsFiltered => "dns_filtered",
            Self::TcpRefused => "tcp_refused",
            Self::TcpTimeout => "tcp_timeout",
            Self::TlsIntercepted => "tls_intercepted",
            Self::TlsInvalid => "tls_invalid",
            Self::ProxyError => "proxy_error",
            Self::CaptivePortal => "captive_portal",
            Self::BotChallenge => "bot_challenge",
            Self::AuthInvalid => "auth_invalid",
            Self::QuotaExhausted => "quota_exhausted",
            Self::RateLimited => "rate_limited",
            Self::RegionUnsupported => "region_unsupported",
            Self::ModelUnavailable => "model_unavailable",
            Self::PermissionDenied => "permission_denied",
            Self::ProviderError => "provider_error",
            Self::ProviderOverloaded => "provider_overloaded",
            Self::SlowResponses => "slow_responses",
            Self::TruncatedResponses => "truncated_responses",
            Self::OfficialIncident => "official_incident",
            Self::Maintenance => "maintenance",
            Self::CrowdReports => "crowd_reports",
            Self::Ok => "ok",
            Self::Unknown => "unknown",
        }
    }

    /// Whose side this cause sits on.
    pub fn side(self) -> Side {
        match self {
            Self::DnsFailure
            | Self::DnsFiltered
            | Self::TcpRefused
            | Self::TcpTimeout
            | Self::TlsIntercepted
            | Self::TlsInvalid
            | Self::ProxyError
            | Self::CaptivePortal
            | Self::BotChallenge => Side::Network,
            Self::AuthInvalid
            | Self::QuotaExhausted
            | Self::RateLimited
            | Self::RegionUnsupported
            | Self::ModelUnavailable
            | Self::PermissionDenied => Side::Account,
            Self::ProviderError
            | Self::ProviderOverloaded
            | Self::SlowResponses
            | Self::TruncatedResponses
            | Self::OfficialIncident
            | Self::Maintenance
            | Self::CrowdReports => Side::Provider,
            Self::Ok | Self::Unknown => Side::Neither,
        }
    }

    /// The cause with this code, if any.
    pub fn from_code(code: &str) -> Option<Cause> {
        Self::ALL.into_iter().find(|c| c.as_str() == code)
    }

    /// What to do about it: the one advice text for this cause, with the check's specifics.
    pub fn advice(self, ctx: &AdviceContext<'_>) -> Vec<String> {
        let host = ctx.host.unwrap_or("the service's host");
        let key_env = ctx.key_env.unwrap_or("the key's environment variable");
        match self {
            Self::DnsFailure if ctx.local_service => vec![format!("{host} does not resolve on this machine; check /etc/hosts and the service's address in your config")],
            Self::DnsFailure => vec![
                format!("Your resolver cannot resolve {host}. Try another resolver (e.g. `--dns-server 1.1.1.1`) to tell a broken local resolver from a provider DNS problem."),
                "If another resolver works, restart your router or switch your system's DNS server.".into(),
            ],
            Self::DnsFiltered => vec![
                format!("Your DNS answers {host} with a block address: a filter (Pi-hole, AdGuard, a corporate or school DNS, parental controls) blocks it."),
                format!("Allow-list {host} in that filter, or ask your network admin to; `--dns-server 1.1.1.1` confirms the name resolves elsewhere."),
            ],
            Self::TcpRefused if ctx.local_service => vec![
                "Nothing listens on that port: the local server is not running.".into(),
                "Start it (`ollama serve`, or LM Studio's Developer tab / `lms server start`) and check the port in your config.".into(),
            ],
            Self::TcpRefused => vec![
                format!("Connections to {host} are actively refused: a firewall or security software on your machine or network rejects them."),
                "Check your firewall, antivirus web shield or corporate egress rules; try another network (e.g. a phone hotspot) to confirm.".into(),
            ],
            Self::TcpTimeout => vec![
                format!("Connections to {host} go unanswered: a firewall is silently dropping them, or the route is broken."),
                "Try another network (e.g. a phone hotspot) or disable the VPN; if only this host fails, ask your network admin about egress rules.".into(),
            ],
            Self::TlsIntercepted => vec![
                format!(
                    "Your network inspects TLS: the certificate for {host} was issued by {}, not by the provider's public CA.",
                    ctx.issuer.unwrap_or("a non-public CA")
                ),
                format!("Browsers may still work, but tools with their own CA bundle (Python, Node, Rust) fail; ask IT to exempt {host} from TLS inspection, or point the tool at the corporate root (e.g. `--ca-file`, SSL_CERT_FILE, NODE_EXTRA_CA_CERTS)."),
            ],
            Self::TlsInvalid => vec![
                format!("The certificate for {host} is not valid here (expired, wrong name or untrusted)."),
                "Check that this machine's clock is right; if it is, something between you and the provider presents its own certificate — try another network.".into(),
            ],
            Self::ProxyError => vec![
                "The proxy from HTTPS_PROXY/HTTP_PROXY failed to carry the request.".into(),
                "Check the proxy's address and credentials, or add the host to NO_PROXY if it should be reached directly.".into(),
            ],
            Self::CaptivePortal => vec![
                "This network redirects web traffic to a login page (hotel, airport, café Wi-Fi).".into(),
                "Open any http:// page in a browser, complete the portal's sign-in, then check again.".into(),
            ],
            Self::BotChallenge => vec![
                format!("{host}'s bot protection blocks or challenges your IP address: VPNs, proxies, data-center and shared IPs get flagged."),
                "Disable the VPN or switch to a residential connection; in a browser, clear cookies for the site and pass the check once.".into(),
            ],
            Self::AuthInvalid => vec![
                format!("The key in {key_env} is rejected by the provider. Create a new key in the provider's console and put it in {key_env}."),
                "Check for a stray space or quote in the variable, and that the key belongs to the right organization or project.".into(),
            ],
            Self::QuotaExhausted => vec![
                "Your account is out of credits or hit its spending limit; retrying will not help.".into(),
                "Add credits or raise the limit in the provider's billing settings, or switch to another provider or a local model.".into(),
            ],
            Self::RateLimited => vec![
                "Your account is sending more requests or tokens per minute than its tier allows.".into(),
                "Wait for the window to reset (see Retry-After), slow the client down, or request a higher tier.".into(),
            ],
            Self::RegionUnsupported => vec![
                "The provider does not serve the country your traffic appears to come from (your egress IP, VPN or cloud host).".into(),
                "Disable the VPN or use an egress in a supported country; check the provider's list of supported countries.".into(),
            ],
            Self::ModelUnavailable => vec![
                "The model does not exist or your key has no access to it.".into(),
                "Check the model's name against the provider's model list, and your project's model permissions.".into(),
            ],
            Self::PermissionDenied => vec![
                format!("The key in {key_env} is valid but lacks permission for this resource."),
                "Check the key's project, workspace or role permissions in the provider's console.".into(),
            ],
            Self::ProviderError => vec![
                "The provider's servers are failing; this is not on your side.".into(),
                "Wait and retry with backoff, or fail over to another provider or a local model (`aiwatch gateway`).".into(),
            ],
            Self::ProviderOverloaded => vec![
                "The provider is overloaded for everyone right now; your account is fine.".into(),
                "Retry with backoff, use a smaller or less busy model, or fail over to another provider.".into(),
            ],
            Self::SlowResponses => vec![
                "The service answers, but slowly.".into(),
                "Expect timeouts in tools with short deadlines; raise them or fail over for latency-sensitive work.".into(),
            ],
            Self::TruncatedResponses => vec![
                "Streamed answers stop before their end marker: responses come back cut off.".into(),
                "Retry incomplete answers, and do not trust a streamed answer without its finish marker.".into(),
            ],
            Self::OfficialIncident => vec![
                "The provider has declared an incident; follow its status page for updates.".into(),
                "Fail over to another provider or a local model until it is resolved.".into(),
            ],
            Self::Maintenance => vec![
                "The provider is in a maintenance window; expect disruption until it ends.".into(),
            ],
            Self::CrowdReports => vec![
                "Many people report problems with it right now, far more than usual: if it fails for you too, it is not just you.".into(),
                "Wait a few minutes, or switch to another provider or a local model; the API may still work when the web app does not.".into(),
            ],
            Self::Ok => Vec::new(),
            Self::Unknown => vec![
                "aiwatch could not tell what is wrong; run again with `-v` and a longer `--timeout`.".into(),
            ],
        }
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_cause_has_advice_and_a_stable_code() {
        for cause in Cause::ALL {
            let json = serde_json::to_string(&cause).unwrap();
            assert_eq!(json, format!("\"{}\"", cause.as_str()));
            if cause != Cause::Ok {
                assert!(
                    !cause.advice(&AdviceContext::default()).is_empty(),
                    "{cause}"
                );
            }
        }
    }

    #[test]
    fn advice_names_the_key_variable_and_issuer() {
        let ctx = AdviceContext {
            key_env: Some("OPENAI_API_KEY"),
            issuer: Some("Zscaler Root CA"),
            ..AdviceContext::default()
        };
        assert!(Cause::AuthInvalid.advice(&ctx)[0].contains("OPENAI_API_KEY"));
        assert!(Cause::TlsIntercepted.advice(&ctx)[0].contains("Zscaler Root CA"));
    }
}
