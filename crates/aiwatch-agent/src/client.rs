//! The agent's side of the wire: asks the server for its assignments and pushes observations,
//! through the probe's layers (the agent's own DNS, proxy and TLS trust), each call under a
//! deadline with a capped answer. The token goes only to the server, never over plain HTTP
//! across the internet and never through intercepted TLS.

use std::sync::Arc;
use std::time::Duration;

use aiwatch_core::agent_wire::{Assignments, Push, PushAnswer};
use aiwatch_core::evidence::{HttpOutcome, ProbeReport, Purpose};
use aiwatch_core::key_route::{reach, Reach};
use aiwatch_core::observation::Region;
use aiwatch_core::secret::ApiKey;
use aiwatch_probe::http::{exchange, Outgoing};
use aiwatch_probe::layered::{open, ProbeContext};
use aiwatch_probe::official::failure_text;
use bytes::Bytes;
use http::Method;
use tokio::time::Instant;

use crate::Error;

/// The server's own CA, when the agent was given one.
type Verifier = Option<Arc<rustls::client::WebPkiServerVerifier>>;

/// The most of a server's answer that is read.
const ANSWER_CAP: usize = 4 * 1024 * 1024;

/// How a call to the server ended, when it did not succeed.
#[derive(Debug)]
pub enum CallError {
    /// Worth trying again later: network trouble, 5xx, 429.
    Transient(String),
    /// The server refused for a reason that will not change by itself (wrong token, undeclared
    /// region, another protocol): the agent stops and says why.
    Refused { status: u16, reason: String },
    /// The server refused this push's content (422); the rest of the buffer still goes.
    Rejected(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Transient(why) => write!(f, "{why}"),
            Self::Refused { status, reason } => {
                write!(f, "the server refused ({status}): {reason}")
            }
            Self::Rejected(why) => write!(f, "the server rejected a push: {why}"),
        }
    }
}

/// The connection to one aiwatch server.
pub struct ServerClient {
    base: String,
    token: ApiKey,
    ctx: ProbeContext,
    server_ca: Verifier,
    timeout: Duration,
}

impl std::fmt::Debug for ServerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerClient")
            .field("base", &self.base)
            .field("token", &self.token)
            .finish()
    }
}

impl ServerClient {
    /// A client of the server at `base` (`http://…` only to this machine or a private network).
    pub fn new(
        base: &str,
        token: ApiKey,
        ctx: ProbeContext,
        server_ca: Option<Arc<rustls::client::WebPkiServerVerifier>>,
        timeout: Duration,
    ) -> Result<Self, Error> {
        let base = base.trim_end_matches('/').to_owned();
        aiwatch_core::config::validate_http_url(&base).map_err(Error::Usage)?;
        if reach(&base) == Reach::Public {
            return Err(Error::Usage(format!(
                "{base} is plain HTTP across the internet: the agent token would travel in clear text; use https://"
            )));
        }
        Ok(Self {
            base,
            token,
            ctx,
            server_ca,
            timeout,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET /api/v1/agent/assignments?region=…`.
    pub async fn assignments(&self, region: &Region) -> Result<Assignments, CallError> {
        let url = format!("{}/api/v1/agent/assignments?region={region}", self.base);
        let body = self.call(Method::GET, &url, None).await?;
        serde_json::from_slice(&body)
            .map_err(|e| CallError::Transient(format!("the server's assignments do not read: {e}")))
    }

    /// `POST /api/v1/agent/observations`.
    pub async fn push(&self, push: &Push) -> Result<PushAnswer, CallError> {
        let url = format!("{}/api/v1/agent/observations", self.base);
        let body = serde_json::to_vec(push)
            .map_err(|e| CallError::Rejected(format!("the push does not serialize: {e}")))?;
        let answer = self
            .call(Method::POST, &url, Some(Bytes::from(body)))
            .await?;
        serde_json::from_slice(&answer)
            .map_err(|e| CallError::Transient(format!("the server's answer does not read: {e}")))
    }

    async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<Bytes>,
    ) -> Result<Bytes, CallError> {
        let deadline = Instant::now() + self.timeout;
        let mut report = ProbeReport::new(Purpose::Web, "", url);
        let Some(opened) = open(
            &self.ctx,
            &mut report,
            url,
            self.server_ca.clone(),
            deadline,
        )
        .await
        else {
            return Err(CallError::Transient(failure_text(&report)));
        };
        if opened.intercepted {
            return Err(CallError::Transient(format!(
                "TLS to {} is intercepted on this network (or vouched for only by --ca-file): the token is not sent; give the server's CA with --server-ca",
                self.base
            )));
        }
        let mut headers = opened.extra_headers;
        headers.push(("authorization", format!("Bearer {}", self.token.expose())));
        headers.push(("accept", "application/json".to_owned()));
        if body.is_some() {
            headers.push(("content-type", "application/json".to_owned()));
        }
        let exchanged = exchange(
            opened.io,
            Outgoing {
                method,
                target: opened.target,
                host: opened.host_header,
                headers,
                body,
            },
            ANSWER_CAP,
            deadline,
        )
        .await;
        let response = match exchanged.outcome {
            HttpOutcome::Response(r) => r,
            HttpOutcome::Timeout => {
                return Err(CallError::Transient(format!(
                    "{} sent no answer within {:?}",
                    self.base, self.timeout
                )))
            }
            other => {
                report.http = Some(other);
                return Err(CallError::Transient(failure_text(&report)));
            }
        };
        let status = response.status;
        if (200..300).contains(&status) {
            return Ok(exchanged.body);
        }
        let reason = serde_json::from_slice::<serde_json::Value>(&exchanged.body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or_else(|| {
                String::from_utf8_lossy(&exchanged.body)
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(300)
                    .collect()
            });
        let reason = aiwatch_core::scrub::scrub(&reason, &[self.token.expose()]).into_owned();
        Err(match status {
            401 | 403 | 404 | 410 => CallError::Refused { status, reason },
            400 | 413 | 422 => CallError::Rejected(format!("{status}: {reason}")),
            _ => CallError::Transient(format!("the server answered {status}: {reason}")),
        })
    }
}
