//! Runs one layered probe of a URL — DNS, TCP (or a proxy tunnel), TLS, HTTP — timing each
//! phase and stopping at the first layer that fails.

use std::sync::Arc;

use aiwatch_core::evidence::{
    ConnectOutcome, DnsOutcome, HttpOutcome, ProbeReport, ProxyEvidence, ProxyOutcome, Purpose,
    TlsEvidence, TlsOutcome, TrustPath,
};
use bytes::Bytes;
use http::{Method, Uri};
use rustls::client::WebPkiServerVerifier;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use crate::connect::connect;
use crate::dns::Dns;
use crate::http::{exchange, Outgoing};
use crate::proxy::{open_tunnel, ProxySettings, TunnelError};
use crate::tls::{handshake, Trust};

/// A byte stream a request can run over: plain TCP or TLS, direct or tunnelled.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Bodies are capped at this size unless a caller asks for more.
pub const DEFAULT_BODY_CAP: usize = 1024 * 1024;

/// What every probe of a run shares.
#[derive(Clone, Debug)]
pub struct ProbeContext {
    pub dns: Dns,
    pub proxies: ProxySettings,
    pub trust: Trust,
}

/// A request to make at the end of the layers.
#[derive(Clone, Debug)]
pub struct Ask {
    pub method: Method,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<Bytes>,
    /// The headers carry a credential: never send them through intercepted TLS.
    pub carries_key: bool,
    pub body_cap: usize,
}

impl Ask {
    pub fn get() -> Self {
        Self {
            method: Method::GET,
            headers: Vec::new(),
            body: None,
            carries_key: false,
            body_cap: DEFAULT_BODY_CAP,
        }
    }
}

/// A connection that made it through DNS, TCP and TLS, ready for a request.
pub struct Opened {
    pub io: Box<dyn Io>,
    /// The request target: origin-form, or absolute-form through a plain-HTTP proxy.
    pub target: String,
    /// The Host header.
    pub host_header: String,
    /// Extra headers the path needs (proxy authorization).
    pub extra_headers: Vec<(&'static str, String)>,
    pub intercepted: bool,
}

/// The parts of a URL a probe needs.
struct Parsed {
    https: bool,
    host: String,
    port: u16,
    path: String,
    host_header: String,
}

fn parse(url: &str) -> Result<Parsed, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(format!("`{url}` is not an http(s) URL")),
    };
    let host = uri
        .host()
        .ok_or_else(|| format!("`{url}` has no host"))?
        .trim_matches(['[', ']'])
        .to_owned();
    let default_port = if https { 443 } else { 80 };
    let port = uri.port_u16().unwrap_or(default_port);
    let path = uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
    let bracketed = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.clone()
    };
    let host_header = if port == default_port {
        bracketed
    } else {
        format!("{bracketed}:{port}")
    };
    Ok(Parsed {
        https,
        host,
        port,
        path,
        host_header,
    })
}

/// Goes through DNS, TCP (or the proxy) and TLS for `url`, filling `report` as it goes.
/// Returns `None` when a layer failed; the report says which.
pub async fn open(
    ctx: &ProbeContext,
    report: &mut ProbeReport,
    url: &str,
    expected_ca: Option<Arc<WebPkiServerVerifier>>,
    deadline: Instant,
) -> Option<Opened> {
    let parsed = match parse(url) {
        Ok(p) => p,
        Err(error) => {
            report.http = Some(HttpOutcome::Protocol { error });
            return None;
        }
    };
    let scheme = if parsed.https { "https" } else { "http" };
    let proxy = ctx.proxies.for_target(scheme, &parsed.host).cloned();

    // DNS and TCP: to the proxy, or to the host itself.
    let (connect_host, connect_port) = match &proxy {
        Some(p) => (p.host.clone(), p.port),
        None => (parsed.host.clone(), parsed.port),
    };
    let dns_started = Instant::now();
    let (dns_outcome, addresses) = ctx.dns.lookup(&connect_host, deadline).await;
    report.timings.dns = Some(dns_started.elapsed());
    if let Some(p) = &proxy {
        report.dns = Some(DnsOutcome::Skipped {
            reason: format!("resolved by the proxy {}", p.display_url()),
        });
        if addresses.is_empty() {
            report.proxy = Some(ProxyEvidence {
                url: p.display_url(),
                outcome: ProxyOutcome::Unreachable {
                    error: format!("the proxy's host {} does not resolve", p.host),
                },
            });
            return None;
        }
    } else {
        report.dns = Some(dns_outcome);
        if addresses.is_empty() {
            return None;
        }
    }
    let tcp_started = Instant::now();
    let (stream, attempts) = connect(&addresses, connect_port, deadline).await;
    report.timings.connect = Some(tcp_started.elapsed());
    let mut stream = match (stream, &proxy) {
        (Some(s), _) => s,
        (None, None) => {
            report.connect = attempts;
            return None;
        }
        (None, Some(p)) => {
            let error = attempts
                .iter()
                .map(|a| match &a.outcome {
                    ConnectOutcome::Refused => format!("{} refused", a.address),
                    ConnectOutcome::Timeout => format!("{} timed out", a.address),
                    ConnectOutcome::Failed { error } => format!("{}: {error}", a.address),
                    ConnectOutcome::MonitorStarved { error } => format!("this machine: {error}"),
                    ConnectOutcome::Connected => String::new(),
                })
                .collect::<Vec<_>>()
                .join(", ");
            report.proxy = Some(ProxyEvidence {
                url: p.display_url(),
                outcome: ProxyOutcome::Unreachable { error },
            });
            return None;
        }
    };
    if proxy.is_none() {
        report.connect = attempts;
    }

    let mut extra_headers = Vec::new();
    let mut target = parsed.path.clone();
    if let Some(p) = &proxy {
        if parsed.https {
            match open_tunnel(p, stream, &parsed.host, parsed.port, deadline).await {
                Ok(tunnel) => {
                    stream = tunnel;
                    report.proxy = Some(ProxyEvidence {
                        url: p.display_url(),
                        outcome: ProxyOutcome::Tunnel,
                    });
                }
                Err(e) => {
                    let outcome = match e {
                        TunnelError::Timeout => ProxyOutcome::Timeout,
                        TunnelError::Rejected(status) => ProxyOutcome::Rejected { status },
                        TunnelError::Broken(error) => ProxyOutcome::Unreachable { error },
                    };
                    report.proxy = Some(ProxyEvidence {
                        url: p.display_url(),
                        outcome,
                    });
                    return None;
                }
            }
        } else {
            target = format!("http://{}{}", parsed.host_header, parsed.path);
            if let Some(auth) = p.authorization() {
                extra_headers.push(("proxy-authorization", auth));
            }
            report.proxy = Some(ProxyEvidence {
                url: p.display_url(),
                outcome: ProxyOutcome::Forwarded,
            });
        }
    }

    if !parsed.https {
        return Some(Opened {
            io: Box::new(stream),
            target,
            host_header: parsed.host_header,
            extra_headers,
            intercepted: false,
        });
    }
    let tls_started = Instant::now();
    let shaken = handshake(&ctx.trust, expected_ca, &parsed.host, stream, deadline).await;
    report.timings.tls = Some(tls_started.elapsed());
    let intercepted = matches!(
        shaken.outcome,
        TlsOutcome::Trusted {
            via: TrustPath::NonPublic
        }
    );
    report.tls = Some(TlsEvidence {
        outcome: shaken.outcome,
        chain: shaken.chain,
        version: shaken.version,
    });
    shaken.stream.map(|tls| Opened {
        io: Box::new(tls),
        target,
        host_header: parsed.host_header,
        extra_headers,
        intercepted,
    })
}

/// What a full probe returns.
pub struct Probed {
    pub report: ProbeReport,
    pub body: Bytes,
    /// The request went out without its key because TLS was intercepted.
    pub key_withheld: bool,
}

/// A full layered probe: open, send `ask`, read the capped answer.
pub async fn probe(
    ctx: &ProbeContext,
    purpose: Purpose,
    url: &str,
    ask: Ask,
    expected_ca: Option<Arc<WebPkiServerVerifier>>,
    deadline: Instant,
) -> Probed {
    let started = Instant::now();
    let host = parse(url).map(|p| p.host).unwrap_or_default();
    let mut report = ProbeReport::new(purpose, url, &host);
    let Some(opened) = open(ctx, &mut report, url, expected_ca, deadline).await else {
        report.timings.total = Some(started.elapsed());
        return Probed {
            report,
            body: Bytes::new(),
            key_withheld: false,
        };
    };
    let mut headers = opened.extra_headers;
    // An interceptor would read the key: then the request goes out without it.
    let key_withheld = ask.carries_key && opened.intercepted;
    if !key_withheld {
        headers.extend(ask.headers);
    }
    let exchanged = exchange(
        opened.io,
        Outgoing {
            method: ask.method,
            target: opened.target,
            host: opened.host_header,
            headers,
            body: ask.body,
        },
        ask.body_cap,
        deadline,
    )
    .await;
    report.timings.first_byte = exchanged.first_byte;
    report.http = Some(exchanged.outcome);
    report.timings.total = Some(started.elapsed());
    Probed {
        report,
        body: exchanged.body,
        key_withheld,
    }
}
