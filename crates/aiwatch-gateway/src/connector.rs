//! Opens connections to an upstream the way the monitor's probes do — the same resolver,
//! proxy settings and TLS trust — for the upstream pools, and refuses to send a key
//! through intercepted TLS.

use std::sync::Arc;
use std::time::Duration;

use aiwatch_core::evidence::{ProbeReport, Purpose};
use aiwatch_probe::layered::{open, ProbeContext};
use http::Uri;
use rustls::client::WebPkiServerVerifier;
use tokio::time::Instant;

use crate::http1::Connection;

/// Why a connection to an upstream could not be opened, with the monitor's cause code
/// (`dns_failure`, `tcp_refused`, `tls_intercepted`, …).
#[derive(Debug, thiserror::Error)]
#[error("{detail}")]
pub struct ConnectFailure {
    pub cause: aiwatch_core::cause::Cause,
    pub detail: String,
}

/// Opens connections to one upstream service.
#[derive(Clone)]
pub struct UpstreamConnector {
    ctx: ProbeContext,
    expected_ca: Option<Arc<WebPkiServerVerifier>>,
    carries_key: bool,
    timeout: Duration,
}

impl UpstreamConnector {
    pub fn new(
        ctx: ProbeContext,
        expected_ca: Option<Arc<WebPkiServerVerifier>>,
        carries_key: bool,
        timeout: Duration,
    ) -> Self {
        Self {
            ctx,
            expected_ca,
            carries_key,
            timeout,
        }
    }
}

impl UpstreamConnector {
    /// Opens a connection for `uri` (DNS, TCP, proxy, TLS, each with the probe's timeouts)
    /// or says which layer failed and why.
    pub async fn open(&self, uri: &Uri) -> Result<Connection, ConnectFailure> {
        let url = uri.to_string();
        let host = aiwatch_core::network::url_host(&url).unwrap_or_default();
        let mut report = ProbeReport::new(Purpose::Api, &url, host);
        let deadline = Instant::now() + self.timeout;
        let opened = open(
            &self.ctx,
            &mut report,
            &url,
            self.expected_ca.clone(),
            deadline,
        )
        .await
        .ok_or_else(|| {
            let (cause, detail) = aiwatch_core::classify::connection_failure(&report, self.timeout);
            ConnectFailure { cause, detail }
        })?;
        if opened.intercepted && self.carries_key {
            return Err(ConnectFailure {
                cause: aiwatch_core::cause::Cause::TlsIntercepted,
                detail: "TLS to the upstream is intercepted; its key was not sent through it"
                    .into(),
            });
        }
        let proxied = opened.target.starts_with("http://");
        Ok(Connection::new(opened.io, proxied))
    }
}
