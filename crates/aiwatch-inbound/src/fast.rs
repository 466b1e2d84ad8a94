//! The hot path's own HTTP/1.1 loop. A surface that answers a few routes itself (the gateway's
//! forwarding endpoints) names them in a [`FastPath`]; a connection's requests to them are read,
//! answered and written here, one after another on the same connection, without hyper's
//! dispatcher, body channel or header map. Everything else — another route, HTTP/1.0, a chunked
//! or `Expect: 100-continue` body, an upgrade, a head this loop does not parse, a body past the
//! surface's limit — is handed, with the bytes already read, to the general hyper server for the
//! rest of that connection, so nothing unusual is answered by this code.
//!
//! Every wait has a deadline: the head within the header timeout (an idle keep-alive connection
//! is closed after it), the body within the surface's body timeout (the surface answers), and a
//! write that makes no progress for [`WRITE_STALL`] ends the connection.

use std::future::Future;
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::response::Response;
use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use http::StatusCode;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

/// The longest head read here; a longer one goes to the general server (431 past its limit).
const MAX_HEAD: usize = 16 * 1024;
/// Header fields a head read here may have; more goes to the general server.
const MAX_HEADERS: usize = 32;
/// A response body up to this size goes out in the same write as its head.
const COALESCE: usize = 64 * 1024;
/// A write that makes no progress this long (a client that stopped reading) ends the connection.
pub const WRITE_STALL: Duration = Duration::from_secs(30);

/// The routes a surface answers itself, and how.
pub trait FastPath: Send + Sync + 'static {
    /// Which of the surface's own routes a request is for.
    type Route: Copy + Send + 'static;
    /// The answer to one request.
    type Answer: Future<Output = Response> + Send + 'static;

    /// The route `method` and `path` (with any query) take here, or `None` for the general server.
    fn route(&self, method: &str, path: &str) -> Option<Self::Route>;
    /// Bodies up to this many bytes are read here; a larger one goes to the general server.
    fn max_body(&self) -> usize;
    /// How long a body may take to arrive after its head.
    fn body_timeout(&self) -> Duration;
    /// Answers one request. Called once its body is in (or its time is up).
    fn call(&self, route: Self::Route, request: FastRequest<'_>) -> Self::Answer;
}

/// One request read by the loop.
pub struct FastRequest<'a> {
    pub peer: SocketAddr,
    pub path: &'a str,
    pub headers: RawHeaders<'a>,
    /// The whole body, or [`BodyTimedOut`] when it did not arrive within the body timeout
    /// (the connection is closed after the answer).
    pub body: Result<Bytes, BodyTimedOut>,
}

/// The body did not arrive within [`FastPath::body_timeout`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyTimedOut;

/// Where one header field's name and value sit in the head.
#[derive(Clone, Copy, Debug)]
struct Field {
    name: (usize, usize),
    value: (usize, usize),
}

/// A request's header fields as they came, without a header map.
#[derive(Clone, Copy)]
pub struct RawHeaders<'a> {
    head: &'a [u8],
    fields: &'a [Field],
}

impl<'a> RawHeaders<'a> {
    /// The first field called `name` (ASCII case ignored).
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        let head = self.head;
        self.fields
            .iter()
            .find(|f| head[f.name.0..f.name.1].eq_ignore_ascii_case(name.as_bytes()))
            .map(|f| &head[f.value.0..f.value.1])
    }
}

/// What the loop makes of the bytes it has.
enum Parsed<R> {
    /// The head is not complete yet.
    Partial,
    /// Not for this loop: the general server takes the connection from here.
    General,
    Fast(Plan<R>),
}

/// A request this loop answers.
struct Plan<R> {
    route: R,
    head_len: usize,
    body_len: usize,
    /// The client asked for the connection to be closed after the answer.
    close: bool,
    path: (usize, usize),
}

/// Where `part`, a slice of `whole`, starts and ends in it.
fn span(whole: &[u8], part: &[u8]) -> (usize, usize) {
    let start = part.as_ptr() as usize - whole.as_ptr() as usize;
    (start, start + part.len())
}

fn parse_head<F: FastPath>(fast: &F, buf: &[u8], fields: &mut Vec<Field>) -> Parsed<F::Route> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let head_len = match request.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => return Parsed::Partial,
        Ok(httparse::Status::Partial) | Err(_) => return Parsed::General,
    };
    let (Some(method), Some(path), Some(1)) = (request.method, request.path, request.version)
    else {
        return Parsed::General;
    };
    let Some(route) = fast.route(method, path) else {
        return Parsed::General;
    };
    let mut length = None;
    let mut close = false;
    fields.clear();
    for header in request.headers.iter() {
        let name = header.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            match (length, content_length(header.value)) {
                (None, Some(n)) => length = Some(n),
                _ => return Parsed::General,
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"expect")
            || name.eq_ignore_ascii_case(b"upgrade")
        {
            return Parsed::General;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in header.value.split(|b| *b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if !token.eq_ignore_ascii_case(b"keep-alive") && !token.is_empty() {
                    return Parsed::General;
                }
            }
        }
        fields.push(Field {
            name: span(buf, name),
            value: span(buf, header.value),
        });
    }
    match length {
        Some(body_len) if body_len <= fast.max_body() => Parsed::Fast(Plan {
            route,
            head_len,
            body_len,
            close,
            path: span(buf, path.as_bytes()),
        }),
        _ => Parsed::General,
    }
}

/// Whether `bytes` hold the empty line that ends a head (CRLF CRLF, or the bare LF LF that
/// parsers also accept).
fn ends_head(bytes: &[u8]) -> bool {
    bytes
        .windows(2)
        .enumerate()
        .any(|(i, w)| w == b"\n\n" || (w == b"\n\r" && bytes.get(i + 2) == Some(&b'\n')))
}

/// A Content-Length value: digits only (RFC 9110 8.6), no sign, no blanks inside.
fn content_length(value: &[u8]) -> Option<usize> {
    if value.is_empty() || value.len() > 15 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0usize, |n, d| {
        n.checked_mul(10)?.checked_add(usize::from(d - b'0'))
    })
}

/// How a wait for more bytes ended.
enum Read {
    More,
    /// The client closed, the read failed or the server is stopping.
    Over,
    TimedOut,
}

/// Reads what the client sent next into `buf`, until `deadline`; while `stop` is given, a stop
/// also ends the wait. `timer` is the connection's one timer: it is moved only when it would
/// fire after `deadline`, and when it fires early (a later deadline was set since) it is moved
/// on — so the usual request, whose deadline only ever moves later, costs no timer change.
async fn read_more(
    io: &TcpStream,
    buf: &mut BytesMut,
    timer: &mut Pin<Box<Sleep>>,
    deadline: Instant,
    mut stop: Option<&mut watch::Receiver<bool>>,
) -> Read {
    loop {
        let stopped = async {
            match stop.as_deref_mut() {
                Some(stop) if !*stop.borrow() => {
                    let _ = stop.changed().await;
                }
                Some(_) => {}
                None => std::future::pending().await,
            }
        };
        if timer.deadline() > deadline {
            timer.as_mut().reset(deadline);
        }
        // Tokio's readiness first, then the read: after [`answer_unless_gone`] found the
        // socket drained, reading at once would only fail with WouldBlock.
        tokio::select! {
            biased;
            ready = io.readable() => if ready.is_err() { return Read::Over },
            () = timer.as_mut() => {
                if Instant::now() >= deadline {
                    return Read::TimedOut;
                }
                timer.as_mut().reset(deadline);
                continue;
            }
            () = stopped => return Read::Over,
        }
        match read_noting_drained(io, buf) {
            Ok(0) => return Read::Over,
            Ok(_) => return Read::More,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return Read::Over,
        }
    }
}

/// Reads what the client sent into `buf`'s spare room (made at least 1 KB). A read that leaves room unfilled took
/// everything the socket held (a TCP receive queue gives all it has), so tokio's readiness is
/// cleared then too, as after WouldBlock: the next wait goes to epoll at once instead of first
/// making a read that can only fail (one system call less per request, as nginx does).
fn read_noting_drained(io: &TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(8 * 1024);
    }
    let mut read = None;
    let outcome = io.try_io(Interest::READABLE, || {
        let room = buf.capacity() - buf.len();
        let n = io.try_read_buf(buf)?;
        read = Some(n);
        if n > 0 && n < room {
            Err(io::ErrorKind::WouldBlock.into()) // drained: clear the readiness
        } else {
            Ok(n)
        }
    });
    match read {
        Some(n) => Ok(n),
        None => outcome,
    }
}

/// Writes all of `data`, giving up when the client takes none of it for [`WRITE_STALL`].
async fn write_all(io: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match io.try_write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                tokio::time::timeout(WRITE_STALL, io.writable())
                    .await
                    .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One client connection: its socket, what was read but not used, and the buffers reused by
/// each request.
struct Connection {
    io: TcpStream,
    peer: SocketAddr,
    buf: BytesMut,
    out: Vec<u8>,
    fields: Vec<Field>,
    /// The connection's one timer, for every deadline of its reads (see [`read_more`]).
    timer: Pin<Box<Sleep>>,
}

/// Serves one connection: this loop's requests here, then — from the first request that is not
/// — the general server, until the client leaves, a deadline passes or the server stops.
pub(crate) async fn drive<F, S>(
    io: TcpStream,
    peer: SocketAddr,
    fast: Arc<F>,
    general: (hyper::server::conn::http1::Builder, S),
    header_timeout: Duration,
    mut stop: watch::Receiver<bool>,
    watcher: Watcher,
) where
    F: FastPath,
    S: crate::GeneralService,
{
    let mut conn = Connection {
        io,
        peer,
        buf: BytesMut::with_capacity(8 * 1024),
        out: Vec::with_capacity(4 * 1024),
        fields: Vec::with_capacity(16),
        timer: Box::pin(tokio::time::sleep(header_timeout)),
    };
    loop {
        match serve_one(&mut conn, fast.as_ref(), header_timeout, &mut stop).await {
            Served::KeepAlive => {}
            Served::Close => return,
            Served::General => break,
        }
    }
    let (http, service) = general;
    let rewound = Rewound {
        prefix: conn.buf.freeze(),
        io: conn.io,
    };
    let _ = watcher
        .watch(http.serve_connection(TokioIo::new(rewound), service))
        .await;
}

/// How one request went.
enum Served {
    KeepAlive,
    Close,
    /// Not this loop's request: the general server takes the connection.
    General,
}

async fn serve_one<F: FastPath>(
    conn: &mut Connection,
    fast: &F,
    header_timeout: Duration,
    stop: &mut watch::Receiver<bool>,
) -> Served {
    let deadline = Instant::now() + header_timeout;
    // How much of the head was there when it was last found incomplete.
    let mut seen: usize = 0;
    let plan = loop {
        // What came first is parsed at once (usually the whole request); after that the head is
        // parsed again only once its end (an empty line) is in, not for every piece of a head
        // sent slowly, which would cost the whole head per piece.
        if seen == 0 || ends_head(&conn.buf[seen - 3.min(seen)..]) || conn.buf.len() > MAX_HEAD {
            match parse_head(fast, &conn.buf, &mut conn.fields) {
                Parsed::Fast(plan) => break plan,
                Parsed::General => return Served::General,
                Parsed::Partial => {}
            }
        }
        seen = conn.buf.len();
        // Between requests a stop closes the connection; within a head it waits its deadline.
        let idle = conn.buf.is_empty().then_some(&mut *stop);
        match read_more(&conn.io, &mut conn.buf, &mut conn.timer, deadline, idle).await {
            Read::More => {}
            Read::Over | Read::TimedOut => return Served::Close,
        }
    };
    let whole = plan.head_len + plan.body_len;
    // Usually the body came with its head; the clock is read only when it did not.
    let mut body_deadline = None;
    let mut timed_out = false;
    while conn.buf.len() < whole {
        let body_deadline =
            *body_deadline.get_or_insert_with(|| Instant::now() + fast.body_timeout());
        conn.buf.reserve(whole - conn.buf.len());
        match read_more(
            &conn.io,
            &mut conn.buf,
            &mut conn.timer,
            body_deadline,
            None,
        )
        .await
        {
            Read::More => {}
            Read::TimedOut => {
                timed_out = true;
                break;
            }
            Read::Over => return Served::Close,
        }
    }
    let request = if timed_out {
        conn.buf.split().freeze()
    } else {
        conn.buf.split_to(whole).freeze()
    };
    let answer = {
        let head = &request[..plan.head_len];
        let path = std::str::from_utf8(&head[plan.path.0..plan.path.1]).unwrap_or_default();
        let body = if timed_out {
            Err(BodyTimedOut)
        } else {
            Ok(request.slice(plan.head_len..))
        };
        fast.call(
            plan.route,
            FastRequest {
                peer: conn.peer,
                path,
                headers: RawHeaders {
                    head,
                    fields: &conn.fields,
                },
                body,
            },
        )
    };
    drop(request);
    let Some(response) = answer_unless_gone(&conn.io, &mut conn.buf, answer).await else {
        return Served::Close;
    };
    let close = plan.close || timed_out || *stop.borrow();
    match write_response(&conn.io, &mut conn.out, response, close).await {
        Ok(true) => Served::KeepAlive,
        Ok(false) | Err(_) => Served::Close,
    }
}

/// Waits for `answer` while watching the connection: a client that hangs up before its answer
/// (the socket reads its end) has the answer dropped — whatever it was doing upstream stops —
/// and gets `None`. Bytes the client sends meanwhile (its next, pipelined request) are kept in
/// `buf`, up to [`MAX_HEAD`]; past that the connection is no longer watched.
async fn answer_unless_gone(
    io: &TcpStream,
    buf: &mut BytesMut,
    answer: impl Future<Output = Response>,
) -> Option<Response> {
    tokio::pin!(answer);
    loop {
        if buf.len() >= MAX_HEAD {
            return Some(answer.await);
        }
        tokio::select! {
            biased;
            response = &mut answer => return Some(response),
            ready = io.readable() => {
                if ready.is_err() {
                    return None;
                }
                match read_noting_drained(io, buf) {
                    Ok(0) => return None,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return None,
                }
            }
        }
    }
}

/// Writes `response`; whether the connection may carry another request.
async fn write_response(
    io: &TcpStream,
    out: &mut Vec<u8>,
    response: Response,
    mut close: bool,
) -> io::Result<bool> {
    let (parts, mut body) = response.into_parts();
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(
        parts
            .status
            .canonical_reason()
            .unwrap_or_default()
            .as_bytes(),
    );
    out.extend_from_slice(b"\r\n");
    let mut dated = false;
    for (name, value) in &parts.headers {
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
            continue; // this writer frames the body itself
        }
        if name == CONNECTION {
            close |= value
                .as_bytes()
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
            continue;
        }
        dated |= name == DATE;
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !dated {
        out.extend_from_slice(b"date: ");
        http_date::now(out);
        out.extend_from_slice(b"\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    let status = parts.status;
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        out.extend_from_slice(b"\r\n");
        write_all(io, out).await?;
        return Ok(!close);
    }
    match hyper::body::Body::size_hint(&body).exact() {
        Some(length) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(length).as_bytes());
            out.extend_from_slice(b"\r\n\r\n");
            let mut sent = 0u64;
            while let Some(frame) = body.frame().await {
                let Ok(data) = frame.map_err(|_| io::ErrorKind::Other)?.into_data() else {
                    continue;
                };
                sent += data.len() as u64;
                if sent > length {
                    return Ok(false); // the body lied about its length
                }
                if out.len() + data.len() <= COALESCE {
                    out.extend_from_slice(&data);
                } else {
                    write_all(io, out).await?;
                    out.clear();
                    write_all(io, &data).await?;
                }
            }
            write_all(io, out).await?;
            Ok(sent == length && !close)
        }
        None => {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
            write_all(io, out).await?;
            while let Some(frame) = body.frame().await {
                let Ok(data) = frame.map_err(|_| io::ErrorKind::Other)?.into_data() else {
                    continue;
                };
                if data.is_empty() {
                    continue;
                }
                out.clear();
                let _ = write!(out, "{:x}\r\n", data.len());
                if data.len() <= COALESCE {
                    out.extend_from_slice(&data);
                    out.extend_from_slice(b"\r\n");
                    write_all(io, out).await?;
                } else {
                    write_all(io, out).await?;
                    write_all(io, &data).await?;
                    write_all(io, b"\r\n").await?;
                }
            }
            write_all(io, b"0\r\n\r\n").await?;
            Ok(!close)
        }
    }
}

/// The `Date` field's value, formatted once a second per thread.
mod http_date {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};

    thread_local! {
        static CACHED: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }

    /// Appends the current time as an HTTP date (RFC 9110 5.6.7) to `out`.
    pub fn now(out: &mut Vec<u8>) {
        let now = SystemTime::now();
        let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        CACHED.with(|cached| {
            let mut cached = cached.borrow_mut();
            if cached.0 != second {
                *cached = (second, httpdate::fmt_http_date(now));
            }
            out.extend_from_slice(cached.1.as_bytes());
        });
    }
}

/// The client's socket with the bytes already read from it put back in front, for the general
/// server to read the request this loop did not take.
struct Rewound {
    prefix: Bytes,
    io: TcpStream,
}

impl AsyncRead for Rewound {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.prefix.has_remaining() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewound {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_ends_at_its_empty_line_only() {
        assert!(ends_head(b"POST / HTTP/1.1\r\nA: b\r\n\r\n"));
        assert!(ends_head(b"\n\r\n"));
        assert!(ends_head(b"A: b\n\n"));
        assert!(!ends_head(b"POST / HTTP/1.1\r\nA: b\r\n"));
        assert!(!ends_head(b"\r\n\r"));
        assert!(!ends_head(b""));
    }

    #[test]
    fn content_length_takes_digits_only() {
        assert_eq!(content_length(b"0"), Some(0));
        assert_eq!(content_length(b"1234"), Some(1234));
        for bad in [
            &b""[..],
            b"+1",
            b"-1",
            b"1 2",
            b"0x10",
            b"12a",
            b"9999999999999999",
        ] {
            assert_eq!(content_length(bad), None, "{bad:?}");
        }
    }
}
