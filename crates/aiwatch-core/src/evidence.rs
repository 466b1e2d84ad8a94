//! What one check observed, layer by layer: the input of `classify`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};

use crate::network::SinkholeKind;
use crate::official::OfficialView;
use crate::signatures::{BodyMarker, ProviderError};

/// Which of a service's faces a probe looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// The web front-end people open in a browser.
    Web,
    /// The API that scripts and apps call.
    Api,
    /// The neutral host that tells "my network" from "their service".
    Control,
}

/// Per-phase durations of one layered probe; a phase that did not run is `None`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct PhaseTimings {
    #[serde(serialize_with = "ms")]
    pub dns: Option<Duration>,
    #[serde(serialize_with = "ms")]
    pub connect: Option<Duration>,
    #[serde(serialize_with = "ms")]
    pub tls: Option<Duration>,
    #[serde(serialize_with = "ms")]
    pub first_byte: Option<Duration>,
    #[serde(serialize_with = "ms")]
    pub total: Option<Duration>,
}

/// Serializes a duration as fractional milliseconds.
pub fn ms<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_f64(round_ms(*d)),
        None => s.serialize_none(),
    }
}

/// A duration in milliseconds, rounded to a tenth.
pub fn round_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum DnsOutcome {
    Resolved {
        addresses: Vec<IpAddr>,
    },
    /// Every answer is a block address.
    Sinkhole {
        addresses: Vec<IpAddr>,
        #[serde(serialize_with = "sinkhole_kind")]
        kind: SinkholeKind,
    },
    /// The name does not exist (NXDOMAIN).
    NxDomain,
    /// The name exists but has no A/AAAA records (NODATA).
    NoRecords,
    Timeout,
    Failed {
        error: String,
    },
    /// This machine ran out of what a lookup needs (file descriptors, memory): the monitor's
    /// own trouble, which says nothing about the name.
    MonitorStarved {
        error: String,
    },
    /// No lookup was needed (an IP literal) or the proxy resolves the name.
    Skipped {
        reason: String,
    },
}

fn sinkhole_kind<S: Serializer>(kind: &SinkholeKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(kind.describe())
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConnectAttempt {
    pub address: SocketAddr,
    pub outcome: ConnectOutcome,
    #[serde(serialize_with = "ms")]
    pub elapsed: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ConnectOutcome {
    Connected,
    Refused,
    Timeout,
    Failed {
        error: String,
    },
    /// This machine ran out of what a connection needs (file descriptors, ports, memory).
    MonitorStarved {
        error: String,
    },
}

/// The proxy a probe went through (credentials stripped from the URL).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProxyEvidence {
    pub url: String,
    pub outcome: ProxyOutcome,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ProxyOutcome {
    /// CONNECT succeeded; TLS runs end to end through the tunnel.
    Tunnel,
    /// A plain-HTTP request forwarded by the proxy.
    Forwarded,
    /// The proxy itself could not be reached.
    Unreachable {
        error: String,
    },
    /// The proxy answered CONNECT with an error status.
    Rejected {
        status: u16,
    },
    Timeout,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    pub not_before: Option<DateTime<Utc>>,
    pub not_after: Option<DateTime<Utc>>,
    pub names: Vec<String>,
}

/// Which trust anchors a chain validated through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrustPath {
    /// The public web PKI (webpki-roots).
    Public,
    /// The CA the service declares in `ca_file`.
    Expected,
    /// Only a root from this machine's store or `--ca-file`: someone else's CA.
    NonPublic,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum TlsOutcome {
    Trusted { via: TrustPath },
    Untrusted { problem: TlsProblem },
    HandshakeFailed { error: String },
    Timeout,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsProblem {
    UnknownIssuer,
    Expired,
    NotYetValid,
    NameMismatch,
    Other(String),
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TlsEvidence {
    pub outcome: TlsOutcome,
    /// The presented chain, leaf first.
    pub chain: Vec<CertInfo>,
    pub version: Option<String>,
}

impl TlsEvidence {
    /// The issuer that the chain leads to: the top certificate's issuer.
    pub fn root_issuer(&self) -> Option<&str> {
        self.chain.last().map(|c| c.issuer.as_str())
    }
}

/// The parts of an HTTP response that the diagnosis reads.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct HttpResponse {
    pub status: u16,
    pub server: Option<String>,
    pub content_type: Option<String>,
    pub location: Option<String>,
    pub retry_after: Option<String>,
    pub cf_ray: Option<String>,
    pub cf_mitigated: Option<String>,
    pub markers: Vec<BodyMarker>,
    pub body_bytes: usize,
    /// The body was longer than the cap and was cut.
    pub body_capped: bool,
    /// The provider's error, when the body is one of the known error shapes.
    pub provider_error: Option<ProviderError>,
    /// A header only the provider's own servers send was present (`openai-*`, `anthropic-*`, a
    /// `req_…` request id; see `signatures::is_provider_header`): the provider made this answer,
    /// not an intermediary.
    pub provider_fingerprint: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum HttpOutcome {
    Response(Box<HttpResponse>),
    /// No response headers arrived in time.
    Timeout,
    /// Headers arrived but the body did not finish in time.
    BodyTimeout {
        status: u16,
    },
    /// The peer spoke something that is not HTTP, or closed mid-way.
    Protocol {
        error: String,
    },
}

/// What the authenticated (or, without a key, anonymous) API call showed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ApiEvidence {
    /// The call made, e.g. `GET /models`.
    pub call: String,
    pub key_env: Option<String>,
    pub key_present: bool,
    /// Models the list call returned, when it succeeded.
    pub models: Option<usize>,
    /// Why the key was not sent although present.
    pub key_withheld: Option<String>,
}

/// One minimal streamed completion (`check --deep`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StreamEvidence {
    pub model: String,
    pub status: Option<u16>,
    #[serde(serialize_with = "ms")]
    pub time_to_first_token: Option<Duration>,
    #[serde(serialize_with = "ms")]
    pub total: Option<Duration>,
    pub chunks: usize,
    /// The stream ended with its finish marker (`[DONE]` / `message_stop` / a finish reason).
    pub finished: bool,
    pub error: Option<String>,
    pub provider_error: Option<ProviderError>,
}

/// One layered probe of one URL: DNS → TCP → TLS → HTTP (→ API).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProbeReport {
    pub purpose: Purpose,
    pub url: String,
    pub host: String,
    pub proxy: Option<ProxyEvidence>,
    pub dns: Option<DnsOutcome>,
    pub connect: Vec<ConnectAttempt>,
    pub tls: Option<TlsEvidence>,
    pub http: Option<HttpOutcome>,
    pub api: Option<ApiEvidence>,
    pub timings: PhaseTimings,
}

impl ProbeReport {
    pub fn new(purpose: Purpose, url: &str, host: &str) -> Self {
        Self {
            purpose,
            url: url.to_owned(),
            host: host.to_owned(),
            proxy: None,
            dns: None,
            connect: Vec::new(),
            tls: None,
            http: None,
            api: None,
            timings: PhaseTimings::default(),
        }
    }

    pub fn response(&self) -> Option<&HttpResponse> {
        match &self.http {
            Some(HttpOutcome::Response(r)) => Some(r.as_ref()),
            _ => None,
        }
    }
}

/// What the official status page said, or why it could not be read.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum OfficialOutcome {
    NotConfigured,
    Unavailable { error: String },
    View(OfficialView),
}

/// Everything one check of one service gathered.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CheckEvidence {
    pub control: Option<ProbeReport>,
    pub web: Option<ProbeReport>,
    pub api: Option<ProbeReport>,
    pub stream: Option<StreamEvidence>,
    pub official: OfficialOutcome,
    /// The whole check's budget; "slow" is judged against it.
    #[serde(skip)]
    pub budget: Duration,
}
