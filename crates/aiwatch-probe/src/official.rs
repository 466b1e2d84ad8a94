//! Fetches a service's official status page through the same layers as every probe and parses
//! it into the normalized model.

use aiwatch_core::evidence::{DnsOutcome, HttpOutcome, ProbeReport, Purpose, TlsOutcome};
use aiwatch_core::official::OfficialStatus;
use aiwatch_core::service::StatusSource;
use tokio::time::Instant;

use crate::layered::{probe, Ask, ProbeContext};
use crate::status;

/// Status pages can be large (Google Cloud's history is megabytes); bodies are cut here.
pub const STATUS_BODY_CAP: usize = 16 * 1024 * 1024;

/// The URL that holds the machine-readable status for `source`.
pub fn status_url(source: &StatusSource) -> String {
    match source {
        StatusSource::Statuspage(base) => format!("{base}/api/v2/summary.json"),
        StatusSource::GoogleCloud(url) | StatusSource::Feed(url) => url.clone(),
    }
}

/// Fetches and parses one status page; the error says in a sentence why it could not be read.
pub async fn fetch_official(
    ctx: &ProbeContext,
    source: &StatusSource,
    products: &[String],
    deadline: Instant,
) -> Result<OfficialStatus, String> {
    let url = status_url(source);
    let mut ask = Ask::get();
    ask.body_cap = STATUS_BODY_CAP;
    ask.headers.push((
        "accept",
        "application/json, application/atom+xml, application/rss+xml;q=0.9, */*;q=0.1".into(),
    ));
    let probed = probe(ctx, Purpose::Web, &url, ask, None, deadline).await;
    let response = match &probed.report.http {
        Some(HttpOutcome::Response(r)) => r,
        _ => return Err(failure_text(&probed.report)),
    };
    if !(200..300).contains(&response.status) {
        return Err(format!("{url} answered HTTP {}", response.status));
    }
    if response.body_capped {
        return Err(format!(
            "{url} is larger than {} MiB",
            STATUS_BODY_CAP / (1024 * 1024)
        ));
    }
    status::parse(source, &probed.body, products).map_err(|e| format!("{url}: {e}"))
}

/// One sentence on where a probe stopped, for a status page that could not be read.
pub fn failure_text(report: &ProbeReport) -> String {
    let host = &report.host;
    if let Some(proxy) = &report.proxy {
        if !matches!(
            proxy.outcome,
            aiwatch_core::evidence::ProxyOutcome::Tunnel
                | aiwatch_core::evidence::ProxyOutcome::Forwarded
        ) {
            return format!("the proxy {} failed", proxy.url);
        }
    }
    match &report.dns {
        Some(DnsOutcome::NxDomain) => return format!("{host} does not resolve (NXDOMAIN)"),
        Some(DnsOutcome::NoRecords) => return format!("{host} has no address"),
        Some(DnsOutcome::Timeout) => return format!("looking up {host} timed out"),
        Some(DnsOutcome::Failed { error }) => return format!("looking up {host} failed: {error}"),
        Some(DnsOutcome::Sinkhole { .. }) => return format!("{host} is blocked by your DNS"),
        _ => {}
    }
    if report.proxy.is_none()
        && !report
            .connect
            .iter()
            .any(|a| a.outcome == aiwatch_core::evidence::ConnectOutcome::Connected)
    {
        return format!("cannot connect to {host}");
    }
    match &report.tls {
        Some(tls) if !matches!(tls.outcome, TlsOutcome::Trusted { .. }) => {
            return format!("TLS to {host} failed ({:?})", tls.outcome)
        }
        _ => {}
    }
    match &report.http {
        Some(HttpOutcome::Timeout) => format!("{host} did not answer in time"),
        Some(HttpOutcome::BodyTimeout { .. }) => format!("{host} was too slow sending the page"),
        Some(HttpOutcome::Protocol { error }) => format!("{host}: {error}"),
        _ => format!("{host} could not be read before the deadline"),
    }
}
