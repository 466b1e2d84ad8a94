//! A real HTTP/1.1 server on loopback (plain or TLS) whose routes a test sets and changes at run
//! time, answering with scripted [`Reply`]s that can also misbehave: delay, hang, trickle, cut a
//! stream short or answer with bytes that are not HTTP at all.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::ca::ServerIdentity;

/// Bytes written by [`Reply::garbage`]: a TLS record header followed by text, which no HTTP
/// client can parse as a status line.
pub const GARBAGE: &[u8] =
    b"\x16\x03\x01\x00garbage from a server that does not speak HTTP\r\n\r\n";

/// How long a cut-off body waits after its last bytes before breaking the connection, so that
/// those bytes are flushed to the client first.
const FLUSH_BEFORE_CUT: Duration = Duration::from_millis(20);

// === Reply ===

/// What the server does with one request: a response (possibly slow or cut short), or a
/// misbehaviour. Built with the constructors below and refined with [`header`](Reply::header)
/// and [`delay`](Reply::delay).
#[derive(Clone)]
pub struct Reply {
    kind: Kind,
    headers: Vec<(String, String)>,
    delay: Duration,
}

#[derive(Clone)]
enum Kind {
    Respond { status: u16, body: BodyPlan },
    Hang,
    Raw(Bytes),
    Sequence(Arc<Sequence>),
    Dynamic(Arc<ReplyFn>),
}

type ReplyFn = dyn Fn(&Seen) -> Reply + Send + Sync;

struct Sequence {
    replies: Vec<Reply>,
    next: AtomicUsize,
}

#[derive(Clone, Debug)]
enum BodyPlan {
    Full(Bytes),
    Trickle {
        body: Bytes,
        chunk: usize,
        gap: Duration,
    },
    Events {
        events: Vec<String>,
        gap: Duration,
        complete: bool,
    },
}

impl Reply {
    /// The body this reply sends, when it is fixed (a whole body, a trickled one, or the
    /// events of a stream as their wire text): seed material for fuzzing the readers of it.
    pub fn body_bytes(&self) -> Option<Vec<u8>> {
        match &self.kind {
            Kind::Respond {
                body: BodyPlan::Full(bytes) | BodyPlan::Trickle { body: bytes, .. },
                ..
            } => Some(bytes.to_vec()),
            Kind::Respond {
                body: BodyPlan::Events { events, .. },
                ..
            } => Some(
                events
                    .iter()
                    .flat_map(|e| [e.as_str(), "\n\n"])
                    .collect::<String>()
                    .into_bytes(),
            ),
            Kind::Raw(bytes) => Some(bytes.to_vec()),
            _ => None,
        }
    }

    /// A response with this status, `content-type: application/json` and `value` as its body.
    pub fn json(status: u16, value: serde_json::Value) -> Reply {
        Reply::bytes(status, "application/json", value.to_string())
    }

    /// A response with this status, content type and text body.
    pub fn text(status: u16, content_type: &str, body: impl Into<String>) -> Reply {
        Reply::bytes(status, content_type, body.into())
    }

    /// A response with this status, content type and body.
    pub fn bytes(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
        Reply::respond(status, BodyPlan::Full(Bytes::from(body.into())))
            .header("content-type", content_type)
    }

    /// A response with this status, no body and no content type (204, 304, a redirect…).
    pub fn empty(status: u16) -> Reply {
        Reply::respond(status, BodyPlan::Full(Bytes::new()))
    }

    /// Never answers: the request is read, then nothing is sent and the connection stays open
    /// until the client gives up (or the server is dropped).
    pub fn hang() -> Reply {
        Reply::of(Kind::Hang)
    }

    /// Answers with [`GARBAGE`] (bytes that are not HTTP), then closes the connection.
    pub fn garbage() -> Reply {
        Reply::raw(GARBAGE)
    }

    /// Reads the request, then closes the connection without a byte of answer (what curl calls
    /// "Empty reply from server").
    pub fn close() -> Reply {
        Reply::raw(Vec::new())
    }

    /// Writes exactly these bytes on the connection (inside TLS on a TLS server) instead of an
    /// HTTP response, then closes it: for hand-made malformed answers.
    pub fn raw(bytes: impl Into<Vec<u8>>) -> Reply {
        Reply::of(Kind::Raw(Bytes::from(bytes.into())))
    }

    /// Headers at once (with a `content-length`), then the body in pieces of `chunk` bytes with
    /// `gap` between them. Add a content type with [`header`](Reply::header).
    pub fn slow_body(status: u16, body: impl Into<Vec<u8>>, chunk: usize, gap: Duration) -> Reply {
        let plan = BodyPlan::Trickle {
            body: Bytes::from(body.into()),
            chunk: chunk.max(1),
            gap,
        };
        Reply::respond(status, plan)
    }

    /// A 200 `text/event-stream` (chunked) sending each string as one server-sent event frame
    /// (the string followed by a blank line), `gap` apart. The strings are whole frame payloads
    /// such as `data: {...}` or `event: x\ndata: {...}`.
    ///
    /// With `complete == false` the body breaks off after the last event: the connection is
    /// closed without the terminating chunk, so the client sees an incomplete body.
    pub fn sse(events: Vec<String>, gap: Duration, complete: bool) -> Reply {
        Reply::respond(
            200,
            BodyPlan::Events {
                events,
                gap,
                complete,
            },
        )
        .header("content-type", "text/event-stream; charset=utf-8")
        .header("cache-control", "no-cache")
    }

    /// Answers successive requests with successive replies; the last one repeats forever.
    /// Clones of the returned reply share its position. Panics if `replies` is empty.
    pub fn sequence(replies: Vec<Reply>) -> Reply {
        assert!(
            !replies.is_empty(),
            "Reply::sequence needs at least one reply"
        );
        Reply::of(Kind::Sequence(Arc::new(Sequence {
            replies,
            next: AtomicUsize::new(0),
        })))
    }

    /// Chooses the reply when the request arrives, from what was received (for conditional
    /// requests, authentication checks and the like).
    pub fn dynamic(choose: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Reply {
        Reply::of(Kind::Dynamic(Arc::new(choose)))
    }

    /// Sets a response header, replacing any earlier one of the same name (case-insensitive).
    /// On a sequence or dynamic reply it applies to whichever reply is chosen; hanging and raw
    /// replies send no headers.
    ///
    /// Panics if `name` or `value` cannot appear in an HTTP header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        assert!(
            http::HeaderName::from_bytes(name.as_bytes()).is_ok(),
            "invalid header name {name:?}"
        );
        assert!(
            http::HeaderValue::from_str(value).is_ok(),
            "invalid value for header {name}: {value:?}"
        );
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Waits this long before sending anything (a slow first byte). Delays add up.
    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay += delay;
        self
    }

    fn of(kind: Kind) -> Reply {
        Reply {
            kind,
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    fn respond(status: u16, body: BodyPlan) -> Reply {
        assert!(
            (100..1000).contains(&status),
            "invalid HTTP status code {status}"
        );
        Reply::of(Kind::Respond { status, body })
    }

    /// Picks the concrete action for this request, folding sequences and dynamic choices.
    fn resolve(&self, seen: &Seen) -> (Action, Duration) {
        let (action, delay) = match &self.kind {
            Kind::Respond { status, body } => (
                Action::Respond {
                    status: *status,
                    headers: Vec::new(),
                    body: body.clone(),
                },
                Duration::ZERO,
            ),
            Kind::Hang => (Action::Hang, Duration::ZERO),
            Kind::Raw(bytes) => (Action::Raw(bytes.clone()), Duration::ZERO),
            Kind::Sequence(sequence) => {
                let index = sequence.next.fetch_add(1, Ordering::SeqCst);
                let last = sequence.replies.len() - 1;
                sequence.replies[index.min(last)].resolve(seen)
            }
            Kind::Dynamic(choose) => choose(seen).resolve(seen),
        };
        let action = match action {
            Action::Respond {
                status,
                mut headers,
                body,
            } => {
                for (name, value) in &self.headers {
                    headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
                    headers.push((name.clone(), value.clone()));
                }
                Action::Respond {
                    status,
                    headers,
                    body,
                }
            }
            other => other,
        };
        (action, delay + self.delay)
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("Reply");
        match &self.kind {
            Kind::Respond { status, body } => out.field("status", status).field("body", body),
            Kind::Hang => out.field("kind", &"hang"),
            Kind::Raw(bytes) => out.field("raw", bytes),
            Kind::Sequence(sequence) => out.field("sequence", &sequence.replies),
            Kind::Dynamic(_) => out.field("kind", &"dynamic"),
        };
        out.field("headers", &self.headers)
            .field("delay", &self.delay)
            .finish()
    }
}

enum Action {
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: BodyPlan,
    },
    Hang,
    Raw(Bytes),
}

// === Seen ===

/// One request as the server received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The path with its query string, e.g. `/v1beta/models?key=…`.
    pub path: String,
    /// Every header in the order received; names are lowercase.
    pub headers: Vec<(String, String)>,
    /// The whole request body.
    pub body: Vec<u8>,
}

impl Seen {
    /// The first header of this name (case-insensitive), if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The path without its query string.
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or_default()
    }
}

// === FakeServer ===

/// An HTTP/1.1 server on loopback, plain or TLS, answering from a route table the test sets.
///
/// Routes match the method (or `*`) and the exact path, ignoring the query string. Requests no
/// route matches get the fallback, by default a 404 in OpenAI's error shape. Every request is
/// recorded ([`requests`](FakeServer::requests)). The server stops, closing its connections, when
/// dropped.
///
/// It runs on tasks of the caller's tokio runtime: a test that blocks its thread while the server
/// must answer (e.g. running the binary with `assert_cmd`) needs
/// `#[tokio::test(flavor = "multi_thread")]` or `spawn_blocking`.
pub struct FakeServer {
    addr: SocketAddr,
    tls: bool,
    shared: Arc<Shared>,
    tasks: JoinSet<()>,
}

struct Shared {
    state: Mutex<State>,
    /// Connections accepted so far.
    accepted: std::sync::atomic::AtomicUsize,
}

struct State {
    routes: Vec<Route>,
    fallback: Reply,
    seen: Vec<Seen>,
}

struct Route {
    method: String,
    path: String,
    reply: Reply,
}

impl FakeServer {
    /// Starts a server on `127.0.0.1:<random port>`, speaking TLS with `tls` when given.
    pub async fn start(tls: Option<&ServerIdentity>) -> FakeServer {
        FakeServer::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), tls).await
    }

    /// Starts a server on `addr`, e.g. `"[::1]:0".parse()?`. Panics unless `addr` is a loopback
    /// address (the testkit never listens elsewhere) or if it cannot be bound.
    pub async fn start_on(addr: SocketAddr, tls: Option<&ServerIdentity>) -> FakeServer {
        assert!(
            addr.ip().is_loopback(),
            "FakeServer listens on loopback only, not {addr}"
        );
        let listener = TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("FakeServer: cannot bind {addr}: {e}"));
        let addr = listener
            .local_addr()
            .expect("a bound listener has a local address");
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                routes: Vec::new(),
                fallback: default_fallback(),
                seen: Vec::new(),
            }),
            accepted: std::sync::atomic::AtomicUsize::new(0),
        });
        let acceptor = tls.map(|identity| TlsAcceptor::from(identity.server_config()));
        let mut tasks = JoinSet::new();
        tasks.spawn(accept_loop(listener, acceptor.clone(), Arc::clone(&shared)));
        FakeServer {
            addr,
            tls: acceptor.is_some(),
            shared,
            tasks,
        }
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://{host}:{port}` (or `http://…` without TLS), where `host` is the name the test
    /// puts in its fake DNS (an IPv6 literal is bracketed).
    pub fn url(&self, host: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        let port = self.addr.port();
        if host.contains(':') && !host.starts_with('[') {
            format!("{scheme}://[{host}]:{port}")
        } else {
            format!("{scheme}://{host}:{port}")
        }
    }

    /// Answers `method` (case-insensitive, or `*` for any) on exactly `path` (the query string is
    /// ignored) with `reply`, replacing an earlier route for the same method and path. A route
    /// for a specific method wins over a `*` one.
    pub fn route(&self, method: &str, path: &str, reply: Reply) {
        let method = method.to_ascii_uppercase();
        let path = path.split('?').next().unwrap_or_default().to_owned();
        let mut state = self.state();
        state
            .routes
            .retain(|route| !(route.method == method && route.path == path));
        state.routes.push(Route {
            method,
            path,
            reply,
        });
    }

    /// Answers requests no route matches with `reply` (by default a 404
    /// `{"error":{"message":"no such route","type":"invalid_request_error","code":null}}`).
    pub fn fallback(&self, reply: Reply) {
        self.state().fallback = reply;
    }

    /// Every request received so far, in order of arrival.
    pub fn requests(&self) -> Vec<Seen> {
        self.state().seen.clone()
    }

    /// How many connections the server has accepted: a client that keeps its connections
    /// alive opens few.
    pub fn connections(&self) -> usize {
        self.shared
            .accepted
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.lock()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

impl fmt::Debug for FakeServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeServer")
            .field("addr", &self.addr)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("FakeServer state poisoned by a panicking thread")
    }

    /// Records the request and returns the reply that answers it.
    fn answer(&self, seen: Seen) -> Reply {
        let mut state = self.lock();
        let path = seen.path_only();
        let exact = state
            .routes
            .iter()
            .find(|r| r.path == path && r.method.eq_ignore_ascii_case(&seen.method));
        let any = || {
            state
                .routes
                .iter()
                .find(|r| r.path == path && r.method == "*")
        };
        let reply = exact
            .or_else(any)
            .map_or_else(|| state.fallback.clone(), |r| r.reply.clone());
        state.seen.push(seen);
        reply
    }
}

fn default_fallback() -> Reply {
    Reply::json(
        404,
        serde_json::json!({"error": {
            "message": "no such route",
            "type": "invalid_request_error",
            "code": null
        }}),
    )
}

async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>, shared: Arc<Shared>) {
    // Connection tasks live in this set, so aborting the accept task also closes them.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            result = listener.accept() => {
                if let Ok((stream, _)) = result {
                    shared.accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let _ = stream.set_nodelay(true);
                    connections.spawn(serve_connection(stream, tls.clone(), Arc::clone(&shared)));
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(stream: TcpStream, tls: Option<TlsAcceptor>, shared: Arc<Shared>) {
    match tls {
        None => serve_http(stream, shared).await,
        Some(acceptor) => {
            if let Ok(stream) = acceptor.accept(stream).await {
                serve_http(stream, shared).await;
            }
        }
    }
}

async fn serve_http<S>(stream: S, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let takeover = Arc::new(Mutex::new(None));
    let io = TokioIo::new(Hijackable {
        inner: stream,
        takeover: Arc::clone(&takeover),
        state: HijackState::Normal,
    });
    let service =
        service_fn(move |request| handle(request, Arc::clone(&shared), Arc::clone(&takeover)));
    let _ = http1::Builder::new()
        .header_read_timeout(None)
        .serve_connection(io, service)
        .await;
}

async fn handle(
    request: Request<Incoming>,
    shared: Arc<Shared>,
    takeover: Arc<Mutex<Option<Bytes>>>,
) -> Result<Response<ScriptBody>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes().to_vec(),
        Err(_) => Vec::new(),
    };
    let seen = Seen {
        method: parts.method.as_str().to_owned(),
        path: parts
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_owned(), value)
            })
            .collect(),
        body,
    };
    let reply = shared.answer(seen.clone());
    let (action, delay) = reply.resolve(&seen);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match action {
        Action::Hang => std::future::pending().await,
        Action::Raw(bytes) => {
            *takeover
                .lock()
                .expect("FakeServer connection state poisoned") = Some(bytes);
            // This response is never written: the connection writes the raw bytes instead.
            Ok(Response::new(ScriptBody::new(Vec::new(), Some(0))))
        }
        Action::Respond {
            status,
            headers,
            body,
        } => {
            let mut response = Response::builder().status(status);
            for (name, value) in &headers {
                response = response.header(name.as_str(), value.as_str());
            }
            let body = script(body);
            Ok(response
                .body(body)
                .expect("reply headers are valid HTTP header names and values"))
        }
    }
}

/// Turns a body plan into the steps the response body plays.
fn script(plan: BodyPlan) -> ScriptBody {
    match plan {
        BodyPlan::Full(bytes) => {
            let len = bytes.len() as u64;
            let steps = if bytes.is_empty() {
                Vec::new()
            } else {
                vec![Step::Data(bytes)]
            };
            ScriptBody::new(steps, Some(len))
        }
        BodyPlan::Trickle {
            mut body,
            chunk,
            gap,
        } => {
            let len = body.len() as u64;
            let mut steps = Vec::new();
            while !body.is_empty() {
                if !steps.is_empty() {
                    steps.push(Step::Pause(gap));
                }
                let piece = body.split_to(chunk.min(body.len()));
                steps.push(Step::Data(piece));
            }
            ScriptBody::new(steps, Some(len))
        }
        BodyPlan::Events {
            events,
            gap,
            complete,
        } => {
            let mut steps = Vec::new();
            for event in events {
                if !steps.is_empty() {
                    steps.push(Step::Pause(gap));
                }
                steps.push(Step::Data(Bytes::from(format!("{event}\n\n"))));
            }
            if !complete {
                steps.push(Step::Pause(gap.max(FLUSH_BEFORE_CUT)));
                steps.push(Step::Break);
            }
            ScriptBody::new(steps, None)
        }
    }
}

// === ScriptBody ===

/// A response body that plays a script: data, pauses, and possibly a break (an error, which makes
/// hyper drop the connection mid-body).
struct ScriptBody {
    steps: VecDeque<Step>,
    sleeping: Option<Pin<Box<tokio::time::Sleep>>>,
    exact_len: Option<u64>,
}

enum Step {
    Data(Bytes),
    Pause(Duration),
    Break,
}

impl ScriptBody {
    fn new(steps: Vec<Step>, exact_len: Option<u64>) -> ScriptBody {
        ScriptBody {
            steps: steps.into(),
            sleeping: None,
            exact_len,
        }
    }
}

/// The error a cut-off body reports to hyper.
#[derive(Debug)]
struct BodyCut;

impl fmt::Display for BodyCut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the fake server cut the body off")
    }
}

impl std::error::Error for BodyCut {}

impl Body for ScriptBody {
    type Data = Bytes;
    type Error = BodyCut;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyCut>>> {
        let this = self.get_mut();
        loop {
            if let Some(sleep) = this.sleeping.as_mut() {
                ready!(sleep.as_mut().poll(cx));
                this.sleeping = None;
            }
            match this.steps.pop_front() {
                None => return Poll::Ready(None),
                Some(Step::Data(bytes)) => return Poll::Ready(Some(Ok(Frame::data(bytes)))),
                Some(Step::Pause(pause)) => {
                    this.sleeping = Some(Box::pin(tokio::time::sleep(pause)));
                }
                Some(Step::Break) => return Poll::Ready(Some(Err(BodyCut))),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.steps.is_empty() && self.sleeping.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.exact_len {
            Some(len) => SizeHint::with_exact(len),
            None => SizeHint::default(),
        }
    }
}

// === Hijackable ===

/// A connection that hyper writes through, until a raw reply takes it over: then the next write
/// sends the raw bytes instead of hyper's, flushes, closes the stream and fails, so hyper drops
/// the connection.
struct Hijackable<S> {
    inner: S,
    takeover: Arc<Mutex<Option<Bytes>>>,
    state: HijackState,
}

enum HijackState {
    Normal,
    Writing(Bytes),
    Flushing,
    Closing,
    Done,
}

impl<S: AsyncRead + Unpin> AsyncRead for Hijackable<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Hijackable<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                HijackState::Normal => {
                    let taken = this
                        .takeover
                        .lock()
                        .expect("FakeServer connection state poisoned")
                        .take();
                    match taken {
                        Some(bytes) => this.state = HijackState::Writing(bytes),
                        None => return Pin::new(&mut this.inner).poll_write(cx, buf),
                    }
                }
                HijackState::Writing(bytes) => {
                    if bytes.is_empty() {
                        this.state = HijackState::Flushing;
                        continue;
                    }
                    let written = ready!(Pin::new(&mut this.inner).poll_write(cx, bytes))?;
                    if written == 0 {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    bytes.advance(written);
                }
                HijackState::Flushing => {
                    ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
                    this.state = HijackState::Closing;
                }
                HijackState::Closing => {
                    let _ = ready!(Pin::new(&mut this.inner).poll_shutdown(cx));
                    this.state = HijackState::Done;
                }
                HijackState::Done => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "the fake server sent a raw reply and closed the connection",
                    )));
                }
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.state {
            HijackState::Normal => Pin::new(&mut this.inner).poll_flush(cx),
            _ => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.state {
            HijackState::Normal => Pin::new(&mut this.inner).poll_shutdown(cx),
            _ => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::TestCa;
    use crate::test_client::{collect, fetch, get, open, read_to_close, read_until_break, send};
    use serde_json::json;
    use tokio::io::AsyncWriteExt;
    use tokio::time::Instant;

    #[tokio::test]
    async fn routes_answer_and_requests_are_recorded() {
        let server = FakeServer::start(None).await;
        assert!(server.addr().ip().is_loopback());
        server.route(
            "GET",
            "/v1/models",
            Reply::json(200, json!({"object": "list"})),
        );
        server.route(
            "post",
            "/v1/chat/completions",
            Reply::text(201, "text/plain", "made"),
        );

        let models = fetch(
            server.addr(),
            None,
            "GET",
            "/v1/models?limit=1",
            &[("Authorization", "Bearer sk-test")],
            b"",
        )
        .await;
        assert_eq!(models.status, 200);
        assert_eq!(models.header("content-type"), Some("application/json"));
        assert_eq!(models.json(), json!({"object": "list"}));

        let chat = fetch(
            server.addr(),
            None,
            "POST",
            "/v1/chat/completions",
            &[],
            b"{}",
        )
        .await;
        assert_eq!((chat.status, chat.text().as_str()), (201, "made"));

        // Wrong method, unknown path: the default fallback.
        for (method, path) in [("POST", "/v1/models"), ("GET", "/nope")] {
            let missing = fetch(server.addr(), None, method, path, &[], b"").await;
            assert_eq!(missing.status, 404);
            assert_eq!(
                missing.json(),
                json!({"error": {"message": "no such route", "type": "invalid_request_error", "code": null}})
            );
        }

        let seen = server.requests();
        assert_eq!(seen.len(), 4);
        assert_eq!(seen[0].method, "GET");
        assert_eq!(seen[0].path, "/v1/models?limit=1");
        assert_eq!(seen[0].path_only(), "/v1/models");
        assert_eq!(seen[0].header("AUTHORIZATION"), Some("Bearer sk-test"));
        assert_eq!(seen[1].body, b"{}");
        assert_eq!(seen[3].path, "/nope");
    }

    #[tokio::test]
    async fn routes_are_replaced_and_star_and_fallback_apply() {
        let server = FakeServer::start(None).await;
        server.route("GET", "/health", Reply::text(200, "text/plain", "ok"));
        assert_eq!(get(server.addr(), "/health").await.status, 200);
        // The provider starts failing.
        server.route("GET", "/health", Reply::text(503, "text/plain", "down"));
        assert_eq!(get(server.addr(), "/health").await.status, 503);
        assert_eq!(server.state().routes.len(), 1);

        server.route("*", "/any", Reply::empty(204));
        server.route("DELETE", "/any", Reply::empty(202));
        let put = fetch(server.addr(), None, "PUT", "/any", &[], b"").await;
        assert_eq!(put.status, 204);
        let delete = fetch(server.addr(), None, "DELETE", "/any", &[], b"").await;
        assert_eq!(delete.status, 202);

        server.fallback(Reply::text(418, "text/plain", "teapot"));
        assert_eq!(get(server.addr(), "/elsewhere").await.status, 418);
    }

    #[tokio::test]
    async fn tls_server_presents_its_identity() {
        let ca = TestCa::new("Test Public Root", "aiwatch test");
        let identity = ca.issue(&["api.openai.test"]);
        let server = FakeServer::start(Some(&identity)).await;
        let url = server.url("api.openai.test");
        assert_eq!(
            url,
            format!("https://api.openai.test:{}", server.addr().port())
        );
        server.route("GET", "/v1/models", Reply::json(200, json!({"data": []})));
        let answer = fetch(
            server.addr(),
            Some((&ca, "api.openai.test")),
            "GET",
            "/v1/models",
            &[],
            b"",
        )
        .await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.json(), json!({"data": []}));

        let plain = FakeServer::start(None).await;
        assert_eq!(
            plain.url("localhost"),
            format!("http://localhost:{}", plain.addr().port())
        );
        assert!(plain.url("::1").starts_with("http://[::1]:"));
    }

    #[tokio::test]
    async fn listens_on_ipv6_loopback() {
        if std::net::TcpListener::bind("[::1]:0").is_err() {
            eprintln!("no IPv6 loopback here; skipping");
            return;
        }
        let server = FakeServer::start_on("[::1]:0".parse().expect("addr"), None).await;
        assert!(server.addr().is_ipv6());
        server.route("GET", "/", Reply::text(200, "text/plain", "six"));
        assert_eq!(get(server.addr(), "/").await.text(), "six");
    }

    #[tokio::test]
    #[should_panic(expected = "loopback only")]
    async fn refuses_to_listen_beyond_loopback() {
        let _ = FakeServer::start_on("0.0.0.0:0".parse().expect("addr"), None).await;
    }

    #[tokio::test]
    async fn delay_holds_back_the_first_byte() {
        let server = FakeServer::start(None).await;
        let delay = Duration::from_millis(150);
        server.route("GET", "/slow", Reply::empty(204).delay(delay));
        let start = Instant::now();
        assert_eq!(get(server.addr(), "/slow").await.status, 204);
        assert!(start.elapsed() >= delay, "{:?}", start.elapsed());
    }

    #[tokio::test]
    async fn hang_never_answers_but_is_recorded() {
        let server = FakeServer::start(None).await;
        server.route("GET", "/hang", Reply::hang());
        let io = open(server.addr(), None).await;
        let waited = tokio::time::timeout(
            Duration::from_millis(300),
            send(io, "GET", "/hang", &[], b""),
        )
        .await;
        assert!(waited.is_err(), "the hanging route answered: {waited:?}");
        assert_eq!(server.requests().len(), 1);
    }

    #[tokio::test]
    async fn garbage_is_not_http() {
        let ca = TestCa::new("Test Public Root", "aiwatch test");
        let identity = ca.issue(&["localhost"]);
        for tls in [false, true] {
            let server = FakeServer::start(tls.then_some(&identity)).await;
            server.route("GET", "/", Reply::garbage());
            let tls = tls.then_some((&ca, "localhost"));
            // On the wire: exactly the garbage, then the connection closes.
            let mut io = open(server.addr(), tls).await;
            io.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .expect("write");
            assert_eq!(read_to_close(&mut io).await, GARBAGE);
            // An HTTP client fails to parse it.
            let io = open(server.addr(), tls).await;
            let error = send(io, "GET", "/", &[], b"").await.expect_err("garbage");
            assert!(
                error.is_parse() || error.is_incomplete_message(),
                "{error:?}"
            );
        }
    }

    #[tokio::test]
    async fn close_answers_nothing() {
        let server = FakeServer::start(None).await;
        server.route("GET", "/", Reply::close());
        let mut io = open(server.addr(), None).await;
        io.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        assert_eq!(read_to_close(&mut io).await, b"");
        let io = open(server.addr(), None).await;
        let error = send(io, "GET", "/", &[], b"").await.expect_err("no answer");
        assert!(error.is_incomplete_message(), "{error:?}");
    }

    #[test]
    #[should_panic(expected = "invalid value for header")]
    fn invalid_headers_panic_in_the_test() {
        let _ = Reply::empty(200).header("x-broken", "line\nbreak");
    }

    #[tokio::test]
    async fn slow_body_sends_headers_then_trickles() {
        let server = FakeServer::start(None).await;
        let body = b"0123456789abcdef".to_vec();
        let gap = Duration::from_millis(50);
        server.route(
            "GET",
            "/status",
            Reply::slow_body(200, body.clone(), 4, gap).header("content-type", "application/json"),
        );
        let start = Instant::now();
        let io = open(server.addr(), None).await;
        let response = send(io, "GET", "/status", &[], b"").await.expect("headers");
        let headers_at = start.elapsed();
        assert_eq!(response.headers()["content-length"], "16");
        let answer = collect(response).await;
        let body_time = start.elapsed() - headers_at;
        assert_eq!(answer.body, body);
        assert!(body_time >= 3 * gap, "body took {body_time:?}");
        assert!(headers_at < body_time, "{headers_at:?} vs {body_time:?}");
    }

    #[tokio::test]
    async fn sse_complete_ends_cleanly_and_cut_breaks_off() {
        let server = FakeServer::start(None).await;
        let events = vec![
            "data: {\"n\":1}".to_owned(),
            "event: x\ndata: {\"n\":2}".to_owned(),
        ];
        let gap = Duration::from_millis(10);
        server.route("POST", "/whole", Reply::sse(events.clone(), gap, true));
        server.route("POST", "/cut", Reply::sse(events.clone(), gap, false));
        let expected = "data: {\"n\":1}\n\nevent: x\ndata: {\"n\":2}\n\n";

        let io = open(server.addr(), None).await;
        let response = send(io, "POST", "/whole", &[], b"{}")
            .await
            .expect("headers");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream; charset=utf-8"
        );
        assert!(response.headers().get("content-length").is_none());
        let (data, broke) = read_until_break(response).await;
        assert!(!broke);
        assert_eq!(String::from_utf8(data).expect("utf-8"), expected);

        let io = open(server.addr(), None).await;
        let response = send(io, "POST", "/cut", &[], b"{}").await.expect("headers");
        let (data, broke) = read_until_break(response).await;
        assert!(broke, "the body should break off");
        assert_eq!(String::from_utf8(data).expect("utf-8"), expected);
    }

    #[tokio::test]
    async fn sequence_answers_in_turn_then_repeats_the_last() {
        let server = FakeServer::start(None).await;
        server.route(
            "GET",
            "/flaky",
            Reply::sequence(vec![
                Reply::empty(500),
                Reply::empty(503).header("retry-after", "1"),
                Reply::empty(200),
            ])
            .header("x-fake", "yes"),
        );
        let mut statuses = Vec::new();
        for _ in 0..4 {
            let answer = get(server.addr(), "/flaky").await;
            assert_eq!(answer.header("x-fake"), Some("yes"));
            statuses.push(answer.status);
        }
        assert_eq!(statuses, [500, 503, 200, 200]);
    }

    #[tokio::test]
    async fn dynamic_replies_see_the_request_on_kept_alive_connections() {
        let server = FakeServer::start(None).await;
        server.route(
            "GET",
            "/me",
            Reply::dynamic(|seen| match seen.header("authorization") {
                Some("Bearer good") => Reply::empty(200),
                _ => Reply::empty(401),
            }),
        );
        let io = open(server.addr(), None).await;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .expect("handshake");
        tokio::spawn(connection);
        for (auth, status) in [("Bearer bad", 401), ("Bearer good", 200)] {
            let request =
                crate::test_client::request("GET", "/me", &[("authorization", auth)], b"");
            let response = sender.send_request(request).await.expect("response");
            assert_eq!(collect(response).await.status, status);
        }
    }

    #[tokio::test]
    async fn dropping_stops_the_server() {
        let server = FakeServer::start(None).await;
        server.route("GET", "/hang", Reply::hang());
        let addr = server.addr();
        let io = open(addr, None).await;
        let pending = tokio::spawn(send(io, "GET", "/hang", &[], b""));
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(server);
        let outcome = tokio::time::timeout(Duration::from_secs(2), pending)
            .await
            .expect("the hanging request ends when the server goes")
            .expect("task");
        assert!(outcome.is_err());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(TcpStream::connect(addr).await.is_err());
    }
}
