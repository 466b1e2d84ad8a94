//! Sends one HTTP/1.1 request over an already open connection with hyper, and reads the answer
//! within a deadline and a size cap.

use std::time::Duration;

use aiwatch_core::evidence::{HttpOutcome, HttpResponse};
use aiwatch_core::signatures::{detect_markers, is_provider_header, ProviderError};
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// What to send.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub method: Method,
    /// Origin-form (`/v1/models`) or, through a plain-HTTP proxy, absolute-form.
    pub target: String,
    /// The `Host` header: `host[:port]`.
    pub host: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<Bytes>,
}

/// Drives the connection in the background and stops it when dropped.
pub struct Connection(JoinHandle<()>);

impl Drop for Connection {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sends `outgoing` and waits for the response head until `deadline`.
pub async fn send<S>(
    io: S,
    outgoing: Outgoing,
    deadline: Instant,
) -> Result<(http::Response<Incoming>, Connection), HttpOutcome>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let protocol = |e: hyper::Error| HttpOutcome::Protocol {
        error: e.to_string(),
    };
    let handshake = hyper::client::conn::http1::Builder::new()
        .max_buf_size(64 * 1024)
        .handshake::<_, Full<Bytes>>(TokioIo::new(io));
    let (mut sender, conn) = match tokio::time::timeout_at(deadline, handshake).await {
        Err(_) => return Err(HttpOutcome::Timeout),
        Ok(r) => r.map_err(protocol)?,
    };
    let driver = Connection(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let mut builder = Request::builder()
        .method(outgoing.method)
        .uri(outgoing.target)
        .header("host", outgoing.host)
        .header("user-agent", concat!("aiwatch/", env!("CARGO_PKG_VERSION")));
    if !outgoing
        .headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("accept"))
    {
        builder = builder.header("accept", "*/*");
    }
    for (name, value) in outgoing.headers {
        builder = builder.header(name, value);
    }
    let request = builder
        .body(Full::new(outgoing.body.unwrap_or_default()))
        .map_err(|e| HttpOutcome::Protocol {
            error: format!("cannot build the request: {e}"),
        })?;
    match tokio::time::timeout_at(deadline, sender.send_request(request)).await {
        Err(_) => Err(HttpOutcome::Timeout),
        Ok(Err(e)) => Err(protocol(e)),
        Ok(Ok(response)) => Ok((response, driver)),
    }
}

/// Why a body could not be read whole.
#[derive(Debug)]
pub enum BodyError {
    Timeout,
    Broken(String),
}

/// Reads a body up to `cap` bytes before `deadline`; longer bodies are cut and flagged. A body
/// that comes in one piece is returned as it came, without a copy.
pub async fn read_capped<B>(
    mut body: B,
    cap: usize,
    deadline: Instant,
) -> Result<(Bytes, bool), BodyError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let read = async {
        let mut first = Bytes::new();
        let mut joined: Option<BytesMut> = None;
        let mut cut = false;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| BodyError::Broken(e.to_string()))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let have = joined.as_ref().map_or(first.len(), BytesMut::len);
            let room = cap - have;
            cut = data.len() > room;
            let data = if cut { data.slice(..room) } else { data };
            match &mut joined {
                None if first.is_empty() => first = data,
                None => {
                    let mut buf = BytesMut::with_capacity(have + data.len());
                    buf.extend_from_slice(&first);
                    buf.extend_from_slice(&data);
                    joined = Some(buf);
                }
                Some(buf) => buf.extend_from_slice(&data),
            }
            if cut {
                break;
            }
        }
        Ok((joined.map_or(first, BytesMut::freeze), cut))
    };
    tokio::time::timeout_at(deadline, read)
        .await
        .map_err(|_| BodyError::Timeout)?
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(300).collect())
}

/// Turns a response head and its (capped) body into the evidence the diagnosis reads.
pub fn describe(status: u16, headers: &HeaderMap, body: &[u8], capped: bool) -> HttpResponse {
    let content_type = header(headers, "content-type");
    let cf_mitigated = header(headers, "cf-mitigated");
    HttpResponse {
        status,
        server: header(headers, "server"),
        location: header(headers, "location"),
        retry_after: header(headers, "retry-after"),
        cf_ray: header(headers, "cf-ray"),
        markers: detect_markers(
            status,
            content_type.as_deref(),
            cf_mitigated.as_deref(),
            body,
        ),
        content_type,
        cf_mitigated,
        body_bytes: body.len(),
        body_capped: capped,
        provider_error: if (200..300).contains(&status) {
            None
        } else {
            ProviderError::parse(status, body)
        },
        provider_fingerprint: headers.iter().any(|(name, value)| {
            value
                .to_str()
                .is_ok_and(|value| is_provider_header(name.as_str(), value))
        }),
    }
}

fn answered(
    status: u16,
    headers: &HeaderMap,
    bytes: Bytes,
    capped: bool,
    first_byte: Option<Duration>,
) -> Exchange {
    Exchange {
        outcome: HttpOutcome::Response(Box::new(describe(status, headers, &bytes, capped))),
        body: bytes,
        first_byte,
    }
}

/// The secret values among request headers (the key itself, without its `Bearer` scheme).
pub fn sent_secrets(headers: &[(&'static str, String)]) -> Vec<String> {
    headers
        .iter()
        .filter(|(name, _)| {
            ["authorization", "x-api-key", "x-goog-api-key", "api-key"]
                .iter()
                .any(|n| name.eq_ignore_ascii_case(n))
        })
        .map(|(_, value)| {
            let value = value.trim();
            value
                .split_once(' ')
                .map_or(value, |(_, secret)| secret.trim())
                .to_owned()
        })
        .collect()
}

/// The outcome of a whole exchange: evidence, body and timings.
pub struct Exchange {
    pub outcome: HttpOutcome,
    pub body: Bytes,
    pub first_byte: Option<Duration>,
}

/// Sends a request and reads the whole (capped) answer.
pub async fn exchange<S>(io: S, outgoing: Outgoing, cap: usize, deadline: Instant) -> Exchange
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let started = Instant::now();
    let secrets = sent_secrets(&outgoing.headers);
    let (response, _connection) = match send(io, outgoing, deadline).await {
        Ok(r) => r,
        Err(outcome) => {
            return Exchange {
                outcome,
                body: Bytes::new(),
                first_byte: None,
            }
        }
    };
    let first_byte = Some(started.elapsed());
    let (parts, body) = response.into_parts();
    let status = parts.status.as_u16();
    match read_capped(body, cap, deadline).await {
        Ok((bytes, capped)) => {
            // The answer may echo the key: everything after this point reads it scrubbed.
            let sent: Vec<&str> = secrets.iter().map(String::as_str).collect();
            let bytes = match aiwatch_core::scrub::scrub_bytes(&bytes, &sent) {
                Some(clean) => Bytes::from(clean),
                None => bytes,
            };
            answered(status, &parts.headers, bytes, capped, first_byte)
        }
        Err(BodyError::Timeout) => Exchange {
            outcome: HttpOutcome::BodyTimeout { status },
            body: Bytes::new(),
            first_byte,
        },
        Err(BodyError::Broken(error)) => Exchange {
            outcome: HttpOutcome::Protocol {
                error: format!("the body broke off after HTTP {status}: {error}"),
            },
            body: Bytes::new(),
            first_byte,
        },
    }
}
