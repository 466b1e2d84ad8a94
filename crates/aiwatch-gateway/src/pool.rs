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
use http::header::HOST;
use http::uri::{Authority, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;

use crate::connector::{ConnectFailure, UpstreamConnector};

/// An idle connection older than this is closed rather than used: upstreams and the proxies
/// in front of them drop idle connections after a minute or more.
const IDLE_FOR: Duration = Duration::from_secs(55);
/// At most this many idle connections per edge thread; more are closed.
const MAX_IDLE: usize = 256;
/// A request handed back unsent by a connection that just closed is tried on at most this
/// many other idle connections before a new one is opened for it.
const STALE_RETRIES: usize = 3;
/// At most this many edge threads get shelves of their own.
const MAX_EDGE_THREADS: usize = 64;

thread_local! {
    /// The edge thread this thread is; 0 for any other.
    static EDGE_THREAD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// How many shelves each pool keeps: one per core, for the edge threads.
pub fn edge_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, MAX_EDGE_THREADS)
}

/// Marks the current thread as the gateway's edge thread `index` (each serving clients on its
/// own single-threaded runtime): its requests use connections of their own, which that
/// runtime drives, instead of waking another thread for every request and answer.
pub fn enter_edge_thread(index: usize) {
    EDGE_THREAD.with(|t| t.set(index));
}

/// Idle connections, most recently used last.
type Shelf = Mutex<VecDeque<Idle>>;

struct Idle {
    sender: SendRequest<Full<Bytes>>,
    proxied: bool,
    since: Instant,
}

/// The connections to one upstream's origin (scheme, host and port).
pub struct UpstreamPool {
    connector: UpstreamConnector,
    origin: Option<(Scheme, Authority)>,
    shelves: Box<[Arc<Shelf>]>,
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
    /// The connection broke before the answer's head arrived.
    #[error("{0}")]
    Lost(hyper::Error),
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
            shelves: (0..edge_threads()).map(|_| Arc::default()).collect(),
        }
    }

    /// Sends `request` (its URI absolute) on an idle connection of this thread's shelf, or on
    /// a new one, and returns the answer's head. Its body puts the connection back on the
    /// shelf once it was read to the end.
    pub async fn send(
        &self,
        mut request: Request<Full<Bytes>>,
    ) -> Result<Response<PooledBody>, SendError> {
        let absolute = request.uri().clone();
        let (Some(scheme), Some(authority)) = (absolute.scheme(), absolute.authority()) else {
            return Err(SendError::Unsendable(format!(
                "{absolute} has no scheme or host"
            )));
        };
        if !request.headers().contains_key(HOST) {
            let host = HeaderValue::from_str(authority.as_str())
                .map_err(|e| SendError::Unsendable(format!("{absolute}: {e}")))?;
            request.headers_mut().insert(HOST, host);
        }
        let shelf = match &self.origin {
            Some((s, a)) if s == scheme && a == authority => Some(self.shelf()),
            _ => None,
        };
        let mut stale = 0;
        loop {
            let reused = match shelf {
                Some(shelf) if stale <= STALE_RETRIES => checkout(shelf).await,
                _ => None,
            };
            let (mut sender, proxied, was_idle) = match reused {
                Some(idle) => (idle.sender, idle.proxied, true),
                None => {
                    let (sender, proxied) = self.connect(&absolute).await?;
                    (sender, proxied, false)
                }
            };
            // Plain HTTP through a forward proxy names the whole URL; otherwise only its path.
            *request.uri_mut() = if proxied {
                absolute.clone()
            } else {
                origin_form(&absolute)
            };
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let lease = shelf.map(|shelf| Lease {
                        sender,
                        proxied,
                        shelf: shelf.clone(),
                    });
                    return Ok(response.map(|inner| PooledBody { inner, lease }));
                }
                Err(mut failed) => match failed.take_message() {
                    // Closed as it was handed over, before a byte was written: send it again.
                    Some(unsent) if was_idle => {
                        request = unsent;
                        stale += 1;
                    }
                    _ => return Err(SendError::Lost(failed.into_error())),
                },
            }
        }
    }

    /// The current edge thread's shelf.
    fn shelf(&self) -> &Arc<Shelf> {
        let index = EDGE_THREAD.with(std::cell::Cell::get);
        // Never empty: one shelf per edge thread, at least one.
        &self.shelves[index % self.shelves.len()]
    }

    /// Opens a connection and starts driving it on the current runtime.
    async fn connect(&self, uri: &Uri) -> Result<(SendRequest<Full<Bytes>>, bool), SendError> {
        let io = self.connector.open(uri).await.map_err(SendError::Connect)?;
        let proxied = io.proxied;
        let (sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(SendError::Lost)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok((sender, proxied))
    }
}

/// The newest usable idle connection of `shelf`, dropping the closed and the stale.
async fn checkout(shelf: &Shelf) -> Option<Idle> {
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
        if idle.sender.is_ready() || idle.sender.ready().await.is_ok() {
            return Some(idle);
        }
    }
}

/// `uri` without its scheme and host: what a request line names when sent to the origin.
fn origin_form(uri: &Uri) -> Uri {
    match uri.path_and_query() {
        Some(path) => Uri::from(path.clone()),
        None => Uri::from_static("/"),
    }
}

/// A connection lent to one request until its answer was read.
struct Lease {
    sender: SendRequest<Full<Bytes>>,
    proxied: bool,
    shelf: Arc<Shelf>,
}

impl Lease {
    /// Puts the connection back on its shelf, unless it closed or the shelf is full.
    fn give_back(self) {
        if self.sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut shelf = self.shelf.lock().unwrap_or_else(|p| p.into_inner());
        while shelf
            .front()
            .is_some_and(|oldest| now.duration_since(oldest.since) > IDLE_FOR)
        {
            shelf.pop_front();
        }
        if shelf.len() < MAX_IDLE {
            shelf.push_back(Idle {
                sender: self.sender,
                proxied: self.proxied,
                since: now,
            });
        }
    }
}

/// An upstream answer's body; its connection goes back to the pool when the body ends. A body
/// dropped before its end closes the connection instead (HTTP/1 cannot skip the rest).
pub struct PooledBody {
    inner: Incoming,
    lease: Option<Lease>,
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            if let Some(lease) = this.lease.take() {
                lease.give_back();
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
