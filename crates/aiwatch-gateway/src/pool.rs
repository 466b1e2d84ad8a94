//! Keeps open HTTP/1 connections to one upstream and sends requests on them: one shelf of idle
//! connections per edge thread, so a request and its upstream connection stay on one runtime,
//! and a connection goes back on its shelf only once its answer was read to the end.
//!
//! A connection the upstream closed while it sat idle is noticed before use; one that closes
//! just as a request is handed to it gives the request back unsent, and the request goes out on
//! another connection. A request that was sent is never sent again here: whether it may be is
//! the failover policy's decision.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{Method, Request, Uri};
use hyper::body::{Body, Frame, SizeHint};

use crate::connector::{ConnectFailure, UpstreamConnector};
use crate::edge::PerEdge;
use crate::http1::{encode_fields, AnswerBody, Connection, Head, WireError};

/// An idle connection older than this is closed rather than used: upstreams and the proxies
/// in front of them drop idle connections after a minute or more.
const IDLE_FOR: Duration = Duration::from_secs(55);
/// At most this many idle connections per edge thread; more are closed.
const MAX_IDLE: usize = 256;
/// A request handed back unsent by a connection that just closed is tried on at most this
/// many other idle connections before a new one is opened for it.
const STALE_RETRIES: usize = 3;
/// Idle connections, most recently used last.
type Shelf = Mutex<VecDeque<Idle>>;

struct Idle {
    conn: Connection,
    since: Instant,
}

/// The connections to one upstream's origin (scheme, host and port).
pub struct UpstreamPool {
    connector: UpstreamConnector,
    origin: Option<(Scheme, Authority)>,
    shelves: PerEdge<Arc<Shelf>>,
}

/// A request as the wire carries it: the absolute URL it goes to and its header fields already
/// encoded ([`encode_fields`]: `Host` among them, no framing field). The gateway's upstream
/// requests borrow fields built once per endpoint, so sending one copies no header map.
pub struct Outgoing<'a> {
    pub method: Method,
    pub uri: &'a Uri,
    pub fields: &'a [u8],
    pub body: Bytes,
}

/// Names what is sent and to where, never the fields: they may carry the upstream's key.
impl std::fmt::Debug for Outgoing<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outgoing")
            .field("method", &self.method)
            .field("uri", &self.uri)
            .field("body_bytes", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// Why a request got no answer head.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection could be opened: the layer that failed and why.
    #[error("{0}")]
    Connect(ConnectFailure),
    /// The request cannot be sent: its URL has no scheme or host.
    #[error("{0}")]
    Unsendable(String),
    /// The connection broke, or the upstream's answer head was not HTTP, before the answer's
    /// head arrived.
    #[error("{0}")]
    Lost(WireError),
}

impl UpstreamPool {
    /// A pool for the origin of `base` (the upstream's API base); requests elsewhere each get
    /// a connection of their own.
    pub fn new(connector: UpstreamConnector, base: Option<&str>) -> Self {
        let origin = base
            .and_then(|b| b.parse::<Uri>().ok())
            .and_then(|uri| Some((uri.scheme()?.clone(), uri.authority()?.clone())));
        Self {
            connector,
            origin,
            shelves: PerEdge::new(Arc::default),
        }
    }

    /// Sends `request` (its URI absolute) on an idle connection of this thread's shelf, or on
    /// a new one, and returns the answer's head and body. The body puts the connection back on
    /// the shelf once it was read to the end.
    pub async fn send(&self, request: Request<Bytes>) -> Result<(Head, PooledBody), SendError> {
        let (parts, body) = request.into_parts();
        let fields = encode_fields(&parts.headers, &parts.uri).map_err(SendError::Unsendable)?;
        self.send_outgoing(Outgoing {
            method: parts.method,
            uri: &parts.uri,
            fields: &fields,
            body,
        })
        .await
    }

    /// [`send`](Self::send) for a request whose header fields are already encoded.
    pub async fn send_outgoing(
        &self,
        request: Outgoing<'_>,
    ) -> Result<(Head, PooledBody), SendError> {
        let Outgoing {
            method,
            uri: absolute,
            fields,
            body,
        } = request;
        let (Some(scheme), Some(authority)) = (absolute.scheme(), absolute.authority()) else {
            return Err(SendError::Unsendable(format!(
                "{absolute} has no scheme or host"
            )));
        };
        let shelf = match &self.origin {
            // The same spelling first: an exact comparison is cheaper than the case-blind one
            // (callgrind: 36,831 instructions a request with it, 37,072 without).
            Some((s, a)) if s == scheme && (a.as_str() == authority.as_str() || a == authority) => {
                Some(self.shelf())
            }
            _ => None,
        };
        let origin_form = absolute.path_and_query().map_or("/", |p| p.as_str());
        let mut stale = 0;
        loop {
            let reused = match shelf {
                Some(shelf) if stale <= STALE_RETRIES => checkout(shelf),
                _ => None,
            };
            let was_idle = reused.is_some();
            let mut conn = match reused {
                Some(conn) => conn,
                // Boxed: opening (DNS, TCP, proxy, TLS) is a large future that only a new
                // connection needs; kept inline, every request's future would carry its room.
                None => Box::pin(self.connector.open(absolute))
                    .await
                    .map_err(SendError::Connect)?,
            };
            // Plain HTTP through a forward proxy names the whole URL; otherwise only its path.
            let absolute_form;
            let target = if conn.proxied {
                absolute_form = absolute.to_string();
                absolute_form.as_str()
            } else {
                origin_form
            };
            match conn.send(&method, target, fields, &body).await {
                Ok(()) => {}
                // Closed as it was handed over, before a byte was written: send it again.
                Err(WireError::Send { unsent: true, .. }) if was_idle => {
                    stale += 1;
                    continue;
                }
                Err(e) => return Err(SendError::Lost(e)),
            }
            let (head, answer) = conn
                .read_head(method == Method::HEAD)
                .await
                .map_err(SendError::Lost)?;
            let body = PooledBody {
                answer,
                shelf: shelf.cloned(),
            };
            return Ok((head, body));
        }
    }

    /// The current edge thread's shelf.
    fn shelf(&self) -> &Arc<Shelf> {
        self.shelves.local()
    }
}

/// The newest usable idle connection of `shelf`, dropping the closed and the stale.
fn checkout(shelf: &Shelf) -> Option<Connection> {
    loop {
        let mut idle = {
            let mut shelf = shelf.lock().unwrap_or_else(|p| p.into_inner());
            let idle = shelf.pop_back()?;
            if idle.since.elapsed() > IDLE_FOR {
                // The newest is too old, so every other one is too.
                shelf.clear();
                return None;
            }
            idle
        };
        // Looked at with the shelf unlocked: the look may read the socket.
        if !idle.conn.closed_while_idle() {
            return Some(idle.conn);
        }
    }
}

/// Puts a connection back on its shelf, unless the shelf is full.
fn give_back(shelf: &Shelf, conn: Connection) {
    let now = Instant::now();
    let mut shelf = shelf.lock().unwrap_or_else(|p| p.into_inner());
    while shelf
        .front()
        .is_some_and(|oldest| now.duration_since(oldest.since) > IDLE_FOR)
    {
        shelf.pop_front();
    }
    if shelf.len() < MAX_IDLE {
        shelf.push_back(Idle { conn, since: now });
    }
}

/// An upstream answer's body; its connection goes back to the pool when the body ends. A body
/// dropped before its end closes the connection instead (HTTP/1 cannot skip the rest).
pub struct PooledBody {
    answer: AnswerBody,
    /// Where the connection goes back to; `None` for a connection of its own.
    shelf: Option<Arc<Shelf>>,
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = WireError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, WireError>>> {
        let this = self.get_mut();
        let polled = this.answer.poll_data(cx);
        // Back on the shelf as soon as the last byte is out, even if nobody polls for the end.
        if polled.is_ready() && this.answer.is_end() {
            if let (Some(shelf), Some(conn)) = (this.shelf.take(), this.answer.take_reusable()) {
                give_back(&shelf, conn);
            }
        }
        polled.map(|data| data.map(|data| data.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        self.answer.is_end()
    }

    fn size_hint(&self) -> SizeHint {
        match self.answer.remaining() {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
