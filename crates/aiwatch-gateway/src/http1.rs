//! HTTP/1.1 to an upstream on a connection the request's own task drives: writes one request,
//! reads its answer's head with `httparse` and its body in the framing the head names
//! (`Content-Length`, chunked, or until the upstream closes), and says when the connection may
//! carry the next request.
//!
//! The pool lends a connection to one request at a time, so nothing here needs a task of its
//! own or a channel between the request and its connection: the bytes go from the socket to the
//! request's future directly. Every read is bounded by the caller's deadline; the head by
//! [`HEAD_CAP`] and [`MAX_HEADERS`], a chunk-size or trailer line by [`LINE_CAP`].

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Context, Poll, Waker};

use aiwatch_probe::layered::Io;
use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};
use smallvec::SmallVec;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// An answer head larger than this is refused.
pub const HEAD_CAP: usize = 64 * 1024;
/// An answer head with more header fields than this is refused.
pub const MAX_HEADERS: usize = 128;
/// A chunk-size line, or the trailer section of a chunked body, larger than this is refused.
pub const LINE_CAP: usize = 16 * 1024;
/// Room made in the read buffer before each read.
const READ_ROOM: usize = 16 * 1024;
/// A request body up to this size goes out in the same write as its head.
const COALESCE_BODY: usize = 64 * 1024;
/// A write buffer that grew beyond this is not kept for the connection's next request.
const KEEP_WRITE_BUFFER: usize = 16 * 1024;

/// What went wrong on the wire.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Writing the request failed; `unsent` when not one byte of it left.
    #[error("sending the request failed: {source}")]
    Send {
        unsent: bool,
        #[source]
        source: io::Error,
    },
    #[error("the upstream closed the connection before its answer")]
    ClosedBeforeAnswer,
    #[error("the upstream closed the connection in the middle of its answer")]
    ClosedMidAnswer,
    #[error("reading the answer failed: {0}")]
    Read(#[source] io::Error),
    #[error("the answer's head is larger than {HEAD_CAP} bytes")]
    HeadTooLarge,
    #[error("the answer is not HTTP/1.1: {0}")]
    Malformed(String),
    #[error("the answer's chunked body is malformed: {0}")]
    BadChunk(&'static str),
}

/// An open connection to an upstream, idle between requests.
pub struct Connection {
    io: Box<dyn Io>,
    /// Bytes read and not yet handed out.
    read: BytesMut,
    /// The next request's head (and small body) is written from here.
    write: Vec<u8>,
    /// Plain HTTP through a forward proxy: requests name the whole URL.
    pub proxied: bool,
    /// The upstream answered before the last request's body was all sent, which was then cut
    /// short: the connection cannot carry another request.
    cut_short: bool,
    /// A final answer's head that arrived while the request's body was going out, parsed
    /// then and handed out by [`Connection::read_head`].
    early: Option<Head>,
}

/// What came back while a large body was going out.
enum Early {
    /// Nothing whole yet.
    NotYet,
    /// An error answer (or bytes that cannot start an answer): stop sending.
    Refusal,
    /// Some other final answer: the body goes out whole.
    Other,
}

/// How much of a large body left.
enum BodySent {
    /// All of it; the request's bytes written in all.
    Whole(usize),
    /// The upstream answered first; the rest was not sent.
    CutShort,
}

/// An answer's status line and header fields, kept as they came.
pub struct Head {
    pub status: StatusCode,
    pub version: Version,
    /// The head's bytes, status line to blank line.
    raw: Bytes,
    fields: SmallVec<[Field; 16]>,
}

/// Where a field's name and value are in the head's bytes.
struct Field {
    name: (u32, u32),
    value: (u32, u32),
}

impl Head {
    fn bytes(&self, (start, end): (u32, u32)) -> &[u8] {
        &self.raw[start as usize..end as usize]
    }

    /// The fields called `name` (case-insensitive), in order.
    fn named<'a>(&'a self, name: &'a str) -> impl DoubleEndedIterator<Item = &'a Field> + 'a {
        self.fields
            .iter()
            .filter(move |f| self.bytes(f.name).eq_ignore_ascii_case(name.as_bytes()))
    }

    /// The values of every field called `name` (case-insensitive), in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl DoubleEndedIterator<Item = &'a [u8]> + 'a {
        self.named(name).map(|f| self.bytes(f.value))
    }

    /// The first field called `name` (case-insensitive), as text.
    pub fn get(&self, name: &str) -> Option<&str> {
        let field = self.named(name).next()?;
        std::str::from_utf8(self.bytes(field.value)).ok()
    }

    /// The first field called `name`, as a header value for another message (no copy).
    pub fn value(&self, name: &str) -> Option<HeaderValue> {
        let (start, end) = self.named(name).next()?.value;
        HeaderValue::from_maybe_shared(self.raw.slice(start as usize..end as usize)).ok()
    }

    /// Every field as a header map; a field `http` cannot hold (httparse lets a few more
    /// through) is left out.
    pub fn header_map(&self) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(self.fields.len());
        for field in &self.fields {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(self.bytes(field.name)),
                HeaderValue::from_bytes(self.bytes(field.value)),
            ) {
                map.append(name, value);
            }
        }
        map
    }
}

impl Connection {
    pub fn new(io: Box<dyn Io>, proxied: bool) -> Self {
        Self {
            io,
            read: BytesMut::new(),
            write: Vec::new(),
            proxied,
            cut_short: false,
            early: None,
        }
    }

    /// Writes one request, its header `fields` as [`encode_fields`] wrote them. A request body
    /// that is empty gets no `Content-Length` unless the method carries a body by nature (POST,
    /// PUT, PATCH).
    pub async fn send(
        &mut self,
        method: &Method,
        target: &str,
        fields: &[u8],
        body: &[u8],
    ) -> Result<(), WireError> {
        let mut head = std::mem::take(&mut self.write);
        head.clear();
        encode_head(&mut head, method, target, fields, body.len());
        let coalesce = body.len() <= COALESCE_BODY;
        if coalesce {
            head.extend_from_slice(body);
        }
        self.cut_short = false;
        self.early = None;
        let mut written = write_all(&mut self.io, &head, 0).await?;
        if !coalesce {
            match self.write_body(body, written).await? {
                BodySent::Whole(n) => written = n,
                BodySent::CutShort => {
                    self.cut_short = true;
                    return Ok(());
                }
            }
        }
        self.io.flush().await.map_err(|source| WireError::Send {
            unsent: written == 0,
            source,
        })?;
        if head.capacity() <= KEEP_WRITE_BUFFER {
            self.write = head;
        }
        Ok(())
    }

    /// Writes a large body while watching for the answer: an upstream may refuse the body
    /// (413, 401) before it has read it all and stop reading, which would leave this write
    /// waiting until the deadline, or failing on the connection it resets. Once an error
    /// answer's head is here, the rest of the body is not sent (RFC 9112, section 9.5); an
    /// informational one (100 Continue) does not stop it, and after any other final answer the
    /// body still goes out whole, unwatched.
    async fn write_body(&mut self, body: &[u8], before: usize) -> Result<BodySent, WireError> {
        let mut sent = 0;
        // Reads stopped: the upstream's side ended or failed (only the write can tell more
        // now, and the answer, if any, is in the read buffer), or it answered without refusing.
        let mut watching = true;
        // Read-buffer bytes already looked at, so a partial head is not parsed again for
        // every piece of body written.
        let mut looked_at = 0;
        std::future::poll_fn(|cx| loop {
            if watching && self.read.len() > looked_at {
                match self.early_answer() {
                    Early::Refusal => return Poll::Ready(Ok(BodySent::CutShort)),
                    Early::Other => watching = false,
                    Early::NotYet => looked_at = self.read.len(),
                }
            }
            if watching {
                match self.poll_fill(cx) {
                    Poll::Ready(Ok(n)) if n > 0 => continue,
                    Poll::Ready(_) => watching = false,
                    Poll::Pending => {}
                }
            }
            if sent == body.len() {
                return Poll::Ready(Ok(BodySent::Whole(before + sent)));
            }
            match Pin::new(&mut self.io).poll_write(cx, &body[sent..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(WireError::Send {
                        unsent: false,
                        source: io::ErrorKind::WriteZero.into(),
                    }))
                }
                Poll::Ready(Ok(n)) => sent += n,
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(source)) => {
                    // Reset after refusing: the refusal may be here already.
                    let mut look = Context::from_waker(Waker::noop());
                    while self.read.len() <= HEAD_CAP {
                        match self.poll_fill(&mut look) {
                            Poll::Ready(Ok(n)) if n > 0 => {}
                            _ => break,
                        }
                    }
                    if matches!(self.early_answer(), Early::Refusal) {
                        return Poll::Ready(Ok(BodySent::CutShort));
                    }
                    return Poll::Ready(Err(WireError::Send {
                        unsent: before + sent == 0,
                        source,
                    }));
                }
                Poll::Pending => return Poll::Pending,
            }
        })
        .await
    }

    /// What the read buffer holds while a body is going out. Informational answers are
    /// dropped, as [`Connection::read_head`] would skip them; a final one is kept for it.
    fn early_answer(&mut self) -> Early {
        let refuses = |status: StatusCode| status.as_u16() >= 400 || status.is_informational();
        if let Some(head) = &self.early {
            return if refuses(head.status) {
                Early::Refusal
            } else {
                Early::Other
            };
        }
        loop {
            return match self.parse_head() {
                Ok(Some(head))
                    if head.status.is_informational()
                        && head.status != StatusCode::SWITCHING_PROTOCOLS =>
                {
                    continue
                }
                Ok(Some(head)) => {
                    let refusal = refuses(head.status);
                    self.early = Some(head);
                    if refusal {
                        Early::Refusal
                    } else {
                        Early::Other
                    }
                }
                // Left in the buffer: `read_head` refuses it again.
                Err(_) => Early::Refusal,
                Ok(None) if self.read.len() > HEAD_CAP => Early::Refusal,
                Ok(None) => Early::NotYet,
            };
        }
    }

    /// Reads the answer's head, past any informational (1xx) answers, and says how its body
    /// is framed. `to_head` is a HEAD request: its answer has no body whatever it says.
    pub async fn read_head(mut self, to_head: bool) -> Result<(Head, AnswerBody), WireError> {
        loop {
            let parsed = match self.early.take() {
                Some(head) => Some(head),
                None => self.parse_head()?,
            };
            if let Some(head) = parsed {
                if head.status.is_informational() {
                    if head.status == StatusCode::SWITCHING_PROTOCOLS {
                        return Err(WireError::Malformed(
                            "101 Switching Protocols to a request that asked for no upgrade".into(),
                        ));
                    }
                    continue;
                }
                let (framing, reusable) = framing(&head, to_head)?;
                let reusable = reusable && !self.cut_short;
                let body = AnswerBody {
                    state: framing.into(),
                    conn: Some(self),
                    reusable,
                };
                return Ok((head, body));
            }
            if self.read.len() > HEAD_CAP {
                return Err(WireError::HeadTooLarge);
            }
            let had = self.read.len();
            let n = std::future::poll_fn(|cx| self.poll_fill(cx))
                .await
                .map_err(WireError::Read)?;
            if n == 0 {
                return Err(if had == 0 {
                    WireError::ClosedBeforeAnswer
                } else {
                    WireError::ClosedMidAnswer
                });
            }
        }
    }

    /// A whole head at the start of the read buffer, taken off it; `None` while more bytes are
    /// needed.
    fn parse_head(&mut self) -> Result<Option<Head>, WireError> {
        if self.read.is_empty() {
            return Ok(None);
        }
        // Left uninitialized: httparse writes the fields it finds, and zeroing room for
        // MAX_HEADERS of them cost more than parsing a usual head.
        let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut answer = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut answer,
            &self.read,
            &mut fields,
        );
        let used = match parsed {
            Ok(httparse::Status::Complete(used)) => used,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(WireError::Malformed(e.to_string())),
        };
        let status = answer
            .code
            .and_then(|c| StatusCode::from_u16(c).ok())
            .ok_or_else(|| WireError::Malformed("no valid status code".into()))?;
        let version = match answer.version {
            Some(1) => Version::HTTP_11,
            _ => Version::HTTP_10,
        };
        // Where each field is, as offsets into the head's bytes: the head is kept as it came
        // and a field becomes a `HeaderValue` only when someone asks for it.
        let base = self.read.as_ptr() as usize;
        let span = |part: &[u8]| {
            let start = part.as_ptr() as usize - base;
            // Within HEAD_CAP, so it fits.
            (start as u32, (start + part.len()) as u32)
        };
        let fields = answer
            .headers
            .iter()
            .map(|f| Field {
                name: span(f.name.as_bytes()),
                value: span(f.value),
            })
            .collect();
        Ok(Some(Head {
            status,
            version,
            raw: self.read.split_to(used).freeze(),
            fields,
        }))
    }

    /// Reads what the socket has into the read buffer: how many bytes, 0 at its end.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.read.reserve(READ_ROOM);
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.read)
    }

    /// The upstream closed this idle connection, or sent something nobody asked for: it must
    /// not carry a request. Looks without waiting.
    pub fn closed_while_idle(&mut self) -> bool {
        if !self.read.is_empty() {
            return true;
        }
        let mut cx = Context::from_waker(Waker::noop());
        self.poll_fill(&mut cx).is_ready()
    }
}

/// Writes `bytes` whole; a failure says whether anything of the request (`before` bytes of it
/// already) left.
async fn write_all(io: &mut Box<dyn Io>, bytes: &[u8], before: usize) -> Result<usize, WireError> {
    let mut written = 0;
    while written < bytes.len() {
        match io.write(&bytes[written..]).await {
            Ok(0) => {
                return Err(WireError::Send {
                    unsent: before + written == 0,
                    source: io::ErrorKind::WriteZero.into(),
                })
            }
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(WireError::Send {
                    unsent: before + written == 0,
                    source,
                })
            }
        }
    }
    Ok(before + written)
}

/// `headers` as a request head carries them, one `name: value` line each, with `Host` from
/// `uri` first unless `headers` name one. A framing field (`Content-Length`,
/// `Transfer-Encoding`) is left out: the head gets the body's own length when it is sent.
/// Fails when `uri` has no host.
pub fn encode_fields(headers: &HeaderMap, uri: &http::Uri) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(64 * (headers.len() + 1));
    if !headers.contains_key(http::header::HOST) {
        // An authority `http` parsed is visible ASCII: always a valid field value.
        let host = uri
            .authority()
            .ok_or_else(|| format!("{uri} has no host"))?
            .as_str();
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(host.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in headers {
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    Ok(out)
}

/// A request head: its line, the caller's encoded header fields and the body's length.
fn encode_head(out: &mut Vec<u8>, method: &Method, target: &str, fields: &[u8], body_len: usize) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    out.extend_from_slice(fields);
    let carries_body = matches!(*method, Method::POST | Method::PUT | Method::PATCH);
    if body_len > 0 || carries_body {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(itoa::Buffer::new().format(body_len).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// `value` lists `token` (case-insensitive), as `Connection` does.
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// How an answer's body ends (RFC 9112, section 6.3).
enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

/// How the answer's body is framed, and whether the connection may carry another request
/// after it: HTTP/1.1 unless `Connection: close` (1.0 only with `keep-alive`), never after a
/// body that runs until the close, nor after a head naming both framings — the shape of a split
/// response (RFC 9112, section 6.3), whose body is read as chunked.
fn framing(head: &Head, to_head: bool) -> Result<(Framing, bool), WireError> {
    let mut keep_alive = head.version == Version::HTTP_11;
    for value in head.all("connection") {
        if has_token(value, b"close") {
            keep_alive = false;
        } else if has_token(value, b"keep-alive") {
            keep_alive = true;
        }
    }
    let status = head.status;
    if to_head || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok((Framing::Length(0), keep_alive));
    }
    if let Some(last) = head.all("transfer-encoding").next_back() {
        // Chunked only when it is the last coding; anything else runs until the close.
        let chunked = last
            .rsplit(|&b| b == b',')
            .next()
            .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        return Ok(if chunked {
            let ambiguous = head.all("content-length").next().is_some();
            (Framing::Chunked, keep_alive && !ambiguous)
        } else {
            (Framing::UntilClose, false)
        });
    }
    let mut length = None;
    for value in head.all("content-length") {
        for part in value.split(|&b| b == b',') {
            let n = std::str::from_utf8(part.trim_ascii())
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| WireError::Malformed("bad Content-Length".into()))?;
            if length.is_some_and(|l| l != n) {
                return Err(WireError::Malformed("conflicting Content-Length".into()));
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(n) => (Framing::Length(n), keep_alive),
        None => (Framing::UntilClose, false),
    })
}

/// Where a body is in its framing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BodyState {
    /// This many bytes still to come.
    Length(u64),
    /// A chunk-size line comes next.
    ChunkSize,
    /// This many bytes of the current chunk still to come.
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    /// Trailer fields after the last chunk, this many bytes of them so far.
    Trailers(usize),
    UntilClose,
    Done,
}

impl From<Framing> for BodyState {
    fn from(framing: Framing) -> Self {
        match framing {
            Framing::Length(0) => Self::Done,
            Framing::Length(n) => Self::Length(n),
            Framing::Chunked => Self::ChunkSize,
            Framing::UntilClose => Self::UntilClose,
        }
    }
}

/// An answer's body, read from its connection as the caller polls.
pub struct AnswerBody {
    conn: Option<Connection>,
    state: BodyState,
    reusable: bool,
}

impl AnswerBody {
    /// The body's next bytes; `None` at its end.
    pub fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, WireError>>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(None);
        };
        loop {
            let buffered = conn.read.len();
            match self.state {
                BodyState::Done => return Poll::Ready(None),
                BodyState::Length(left) | BodyState::ChunkData(left) if buffered > 0 => {
                    let n = usize::try_from(left).map_or(buffered, |l| l.min(buffered));
                    let data = conn.read.split_to(n).freeze();
                    let left = left - n as u64;
                    self.state = match self.state {
                        BodyState::Length(_) if left == 0 => BodyState::Done,
                        BodyState::Length(_) => BodyState::Length(left),
                        _ if left == 0 => BodyState::ChunkEnd,
                        _ => BodyState::ChunkData(left),
                    };
                    return Poll::Ready(Some(Ok(data)));
                }
                BodyState::UntilClose if buffered > 0 => {
                    return Poll::Ready(Some(Ok(conn.read.split().freeze())));
                }
                BodyState::ChunkSize if buffered > 0 => {
                    match httparse::parse_chunk_size(&conn.read) {
                        Ok(httparse::Status::Complete((used, size))) => {
                            conn.read.advance(used);
                            self.state = if size == 0 {
                                BodyState::Trailers(0)
                            } else {
                                BodyState::ChunkData(size)
                            };
                            continue;
                        }
                        Ok(httparse::Status::Partial) if buffered <= LINE_CAP => {}
                        Ok(httparse::Status::Partial) => {
                            return self.fail(WireError::BadChunk("chunk-size line too long"))
                        }
                        Err(_) => return self.fail(WireError::BadChunk("bad chunk size")),
                    }
                }
                BodyState::ChunkEnd if buffered >= 2 => {
                    if !conn.read.starts_with(b"\r\n") {
                        return self.fail(WireError::BadChunk("no CRLF after chunk data"));
                    }
                    conn.read.advance(2);
                    self.state = BodyState::ChunkSize;
                    continue;
                }
                BodyState::Trailers(seen) if buffered > 0 => {
                    if let Some(end) = conn.read.windows(2).position(|w| w == b"\r\n") {
                        conn.read.advance(end + 2);
                        // An empty line ends the trailers, and the body.
                        self.state = if end == 0 {
                            BodyState::Done
                        } else {
                            BodyState::Trailers(seen + end + 2)
                        };
                        if seen + end + 2 > LINE_CAP {
                            return self.fail(WireError::BadChunk("trailers too large"));
                        }
                        continue;
                    }
                    if seen + buffered > LINE_CAP {
                        return self.fail(WireError::BadChunk("trailers too large"));
                    }
                }
                _ => {}
            }
            // More bytes are needed.
            let n = match ready!(conn.poll_fill(cx)) {
                Ok(n) => n,
                Err(e) => return self.fail(WireError::Read(e)),
            };
            if n == 0 {
                if self.state == BodyState::UntilClose {
                    self.state = BodyState::Done;
                    self.reusable = false;
                    return Poll::Ready(None);
                }
                return self.fail(WireError::ClosedMidAnswer);
            }
        }
    }

    /// Ends the body with `error`; its connection is closed.
    fn fail(&mut self, error: WireError) -> Poll<Option<Result<Bytes, WireError>>> {
        self.conn = None;
        self.state = BodyState::Done;
        Poll::Ready(Some(Err(error)))
    }

    /// The body was read to its end.
    pub fn is_end(&self) -> bool {
        self.state == BodyState::Done
    }

    /// The bytes still to come, when the head said.
    pub fn remaining(&self) -> Option<u64> {
        match self.state {
            BodyState::Length(n) => Some(n),
            BodyState::Done => Some(0),
            _ => None,
        }
    }

    /// The connection, once the body was read to its end and the upstream lets it carry the
    /// next request (nothing unasked-for after the body).
    pub fn take_reusable(&mut self) -> Option<Connection> {
        if self.state != BodyState::Done || !self.reusable {
            return None;
        }
        self.conn.take().filter(|c| c.read.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tokio::io::{AsyncReadExt, DuplexStream};

    /// A connection whose upstream is the returned end of an in-memory pipe.
    fn pipe() -> (Connection, DuplexStream) {
        let (ours, theirs) = tokio::io::duplex(256 * 1024);
        (Connection::new(Box::new(ours), false), theirs)
    }

    /// Reads `body` to its end: its bytes or the error, and whether its connection may be lent
    /// again.
    async fn body_of(mut body: AnswerBody) -> (Result<Vec<u8>, WireError>, bool) {
        let mut out = Vec::new();
        let read = loop {
            match std::future::poll_fn(|cx| body.poll_data(cx)).await {
                None => break Ok(out),
                Some(Ok(data)) => out.extend_from_slice(&data),
                Some(Err(e)) => break Err(e),
            }
        };
        (read, body.take_reusable().is_some())
    }

    /// [`exchange`] and [`body_of`] for an answer whose head is whole.
    async fn answer_body(
        answer: &[u8],
        cuts: &[usize],
        close: bool,
    ) -> (Result<Vec<u8>, WireError>, bool) {
        let (result, _) = exchange(answer, cuts, close).await;
        let (_, body) = result.expect("a head");
        body_of(body).await
    }

    /// Sends a POST on a fresh pipe whose upstream then writes `answer` in `pieces` and closes
    /// its side when `close` says so.
    async fn exchange(
        answer: &[u8],
        cuts: &[usize],
        close: bool,
    ) -> (Result<(Head, AnswerBody), WireError>, Vec<u8>) {
        let (mut conn, mut upstream) = pipe();
        conn.send(&Method::POST, "/v1/chat", b"", b"{}")
            .await
            .expect("sent");
        let mut request = vec![0u8; 4096];
        let n = upstream.read(&mut request).await.expect("request");
        request.truncate(n);
        let answer = answer.to_vec();
        let cuts = cuts.to_vec();
        tokio::spawn(async move {
            let mut at = 0;
            for cut in cuts
                .iter()
                .map(|&c| c.min(answer.len()))
                .chain([answer.len()])
            {
                if cut > at {
                    if upstream.write_all(&answer[at..cut]).await.is_err() {
                        return;
                    }
                    at = cut;
                    tokio::task::yield_now().await;
                }
            }
            if !close {
                // Keep the connection open until the test is over.
                tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            }
        });
        (conn.read_head(false).await, request)
    }

    #[test]
    fn fields_get_the_uris_host_unless_named_and_never_a_framing_field() {
        let uri: http::Uri = "http://up.test:8080/v1/chat".parse().expect("a URI");
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", HeaderValue::from_static("k"));
        headers.insert("content-length", HeaderValue::from_static("99"));
        headers.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        let fields = encode_fields(&headers, &uri).expect("fields");
        assert_eq!(fields, b"host: up.test:8080\r\nx-api-key: k\r\n");
        headers.insert("host", HeaderValue::from_static("named.test"));
        let fields = encode_fields(&headers, &uri).expect("fields");
        assert_eq!(fields, b"x-api-key: k\r\nhost: named.test\r\n");
        let hostless: http::Uri = "/v1/chat".parse().expect("a path");
        assert!(encode_fields(&HeaderMap::new(), &hostless).is_err());
        let mut head = Vec::new();
        encode_head(&mut head, &Method::POST, "/v1/chat", &fields, 12);
        assert_eq!(
            head,
            b"POST /v1/chat HTTP/1.1\r\nx-api-key: k\r\nhost: named.test\r\ncontent-length: 12\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn a_post_names_its_body_length_and_carries_it_in_one_write() {
        let (_, request) = exchange(b"HTTP/1.1 204 No Content\r\n\r\n", &[], false).await;
        assert_eq!(
            String::from_utf8_lossy(&request),
            "POST /v1/chat HTTP/1.1\r\ncontent-length: 2\r\n\r\n{}"
        );
    }

    /// Reads a request's head off `upstream`: how many bytes of its body came with it.
    async fn read_request_head(upstream: &mut DuplexStream) -> usize {
        let mut seen = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = upstream.read(&mut chunk).await.expect("request");
            assert!(n > 0, "the request ended inside its head");
            seen.extend_from_slice(&chunk[..n]);
            if let Some(at) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                return seen.len() - (at + 4);
            }
        }
    }

    /// Reads until `at_least` more bytes came (or the pipe ended): how many came.
    async fn read_request_rest(upstream: &mut DuplexStream, at_least: usize) -> usize {
        let mut chunk = vec![0u8; 64 * 1024];
        let mut got = 0;
        while got < at_least {
            let n = upstream.read(&mut chunk).await.expect("body");
            if n == 0 {
                break;
            }
            got += n;
        }
        got
    }

    /// Sends a POST with `body` on `conn` and reads its answer whole, within 10 s: the
    /// answer's status and body, and whether the connection may be lent again.
    async fn answer_to_body(mut conn: Connection, body: &[u8]) -> (StatusCode, Vec<u8>, bool) {
        let answered = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            conn.send(&Method::POST, "/v1/chat", b"", body)
                .await
                .expect("sent, or cut short by the answer");
            let (head, answer) = conn.read_head(false).await.expect("a head");
            let (bytes, reusable) = body_of(answer).await;
            (head.status, bytes.expect("its body"), reusable)
        });
        answered
            .await
            .expect("the answer came while or after the body went out")
    }

    #[tokio::test]
    async fn an_answer_before_a_large_body_is_sent_stops_the_body_and_is_read() {
        let (conn, mut upstream) = pipe();
        // Reads the head only, answers 413 and reads nothing more (the pipe fills up).
        tokio::spawn(async move {
            read_request_head(&mut upstream).await;
            let _ = upstream
                .write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\n\r\ntoo large")
                .await;
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
        });
        let (status, bytes, reusable) = answer_to_body(conn, &vec![b'x'; 4 * 1024 * 1024]).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(bytes, b"too large");
        assert!(!reusable, "half a body was sent: the connection is done");
    }

    #[tokio::test]
    async fn a_100_continue_or_an_early_success_during_a_large_body_does_not_stop_it() {
        // What the upstream writes after the request's head and before reading its body, and
        // what it writes once it has read the body.
        let cases: [(&[u8], &[u8]); 2] = [
            (
                b"HTTP/1.1 100 Continue\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            ),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", b""),
        ];
        for (early, late) in cases {
            let (conn, mut upstream) = pipe();
            let body = vec![b'x'; 1024 * 1024];
            let len = body.len();
            let got = tokio::spawn(async move {
                let with_head = read_request_head(&mut upstream).await;
                upstream.write_all(early).await.expect("early");
                let got = with_head + read_request_rest(&mut upstream, len - with_head).await;
                upstream.write_all(late).await.expect("late");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                got
            });
            let (status, bytes, reusable) = answer_to_body(conn, &body).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(bytes, b"ok");
            assert!(reusable, "the whole request went out");
            let got = got.await.expect("the upstream task");
            assert_eq!(got, len, "the upstream read all the body");
        }
    }

    #[tokio::test]
    async fn a_length_framed_answer_is_read_whole_and_leaves_the_connection_reusable() {
        let (answer, _) = exchange(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nx-request-id: r1\r\ncontent-length: 11\r\n\r\n{\"ok\":true}",
            &[5, 40, 90],
            false,
        )
        .await;
        let (head, body) = answer.expect("a head");
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(head.get("X-Request-Id"), Some("r1"));
        assert_eq!(head.header_map()["content-type"], "application/json");
        let (bytes, reusable) = body_of(body).await;
        assert_eq!(bytes.expect("a body"), b"{\"ok\":true}");
        assert!(reusable);
    }

    #[tokio::test]
    async fn a_chunked_answer_with_extensions_and_trailers_is_decoded() {
        let (bytes, reusable) = answer_body(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;name=x\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: 1\r\n\r\n",
            &[30, 51, 52, 60],
            false,
        )
        .await;
        assert_eq!(bytes.expect("a body"), b"hello world");
        assert!(reusable);
    }

    #[tokio::test]
    async fn an_answer_without_length_runs_until_close_and_ends_the_connection() {
        let (bytes, reusable) = answer_body(b"HTTP/1.1 200 OK\r\n\r\nall of it", &[], true).await;
        assert_eq!(bytes.expect("a body"), b"all of it");
        assert!(!reusable);
    }

    #[tokio::test]
    async fn connection_close_and_http_1_0_answers_are_not_reused() {
        for answer in [
            &b"HTTP/1.1 200 OK\r\nConnection: close\r\ncontent-length: 2\r\n\r\nok"[..],
            &b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok"[..],
        ] {
            let (bytes, reusable) = answer_body(answer, &[], false).await;
            assert_eq!(bytes.expect("a body"), b"ok");
            assert!(!reusable);
        }
    }

    #[tokio::test]
    async fn an_answer_naming_both_chunked_and_a_length_is_read_chunked_and_not_reused() {
        let (bytes, reusable) = answer_body(
            b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            &[],
            false,
        ).await;
        assert_eq!(bytes.expect("a body"), b"ok");
        assert!(!reusable);
    }

    #[tokio::test]
    async fn informational_answers_are_skipped() {
        let (answer, _) = exchange(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            &[10],
            false,
        )
        .await;
        assert_eq!(answer.expect("a head").0.status, StatusCode::OK);
    }

    #[tokio::test]
    async fn a_204_has_no_body_whatever_its_length_says() {
        let (answer, _) = exchange(
            b"HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n",
            &[],
            false,
        )
        .await;
        let (_, body) = answer.expect("a head");
        assert!(body.is_end());
    }

    #[tokio::test]
    async fn broken_answers_are_errors_that_say_what_broke() {
        let cases: [(&[u8], bool, &str); 7] = [
            (b"", true, "closed the connection before its answer"),
            (
                b"HTTP/1.1 200 OK\r\ncontent-le",
                true,
                "in the middle of its answer",
            ),
            (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", false, "not HTTP/1.1"),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok",
                false,
                "conflicting Content-Length",
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
                false,
                "bad Content-Length",
            ),
            (
                b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
                false,
                "Switching Protocols",
            ),
            (
                b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
                false,
                "not HTTP/1.1",
            ),
        ];
        for (answer, close, says) in cases {
            let (result, _) = exchange(answer, &[], close).await;
            let error = result.err().expect("an error");
            assert!(
                error.to_string().contains(says),
                "{error} should say {says}"
            );
        }
    }

    #[tokio::test]
    async fn a_head_beyond_its_cap_or_with_too_many_fields_is_refused() {
        let mut answer = b"HTTP/1.1 200 OK\r\nx-filler: ".to_vec();
        answer.resize(HEAD_CAP + READ_ROOM + 1, b'a');
        let (result, _) = exchange(&answer, &[], false).await;
        assert!(matches!(result, Err(WireError::HeadTooLarge)));
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("x-{i}: 1\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        let (result, _) = exchange(&many, &[], false).await;
        assert!(matches!(result, Err(WireError::Malformed(_))));
    }

    #[tokio::test]
    async fn broken_bodies_are_errors_and_close_the_connection() {
        let cases: [(&[u8], bool, &str); 5] = [
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",
                true,
                "middle of its answer",
            ),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
                false,
                "bad chunk size",
            ),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nokXX",
                false,
                "no CRLF",
            ),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n",
                true,
                "middle of its answer",
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA",
                false,
                "",
            ),
        ];
        for (answer, close, says) in cases {
            let (bytes, reusable) = answer_body(answer, &[], close).await;
            if says.is_empty() {
                // Whole, but followed by bytes nobody asked for: not lent again.
                assert_eq!(bytes.expect("the body"), b"ok");
            } else {
                let error = bytes.expect_err("an error");
                assert!(
                    error.to_string().contains(says),
                    "{error} should say {says}"
                );
            }
            assert!(!reusable);
        }
    }

    #[tokio::test]
    async fn an_endless_chunk_size_line_or_trailer_is_refused() {
        let mut line = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        line.extend(std::iter::repeat_n(b'0', LINE_CAP + 1));
        let mut trailer = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n".to_vec();
        for _ in 0..=LINE_CAP / 10 + 1 {
            trailer.extend_from_slice(b"x-t: 123\r\n");
        }
        for answer in [line, trailer] {
            let (bytes, _) = answer_body(&answer, &[], false).await;
            assert!(matches!(bytes, Err(WireError::BadChunk(_))));
        }
    }

    #[tokio::test]
    async fn an_idle_connection_the_upstream_closed_is_noticed() {
        let (mut conn, upstream) = pipe();
        assert!(!conn.closed_while_idle());
        drop(upstream);
        assert!(conn.closed_while_idle());
    }

    fn chunked(body: &[u8], sizes: &[usize]) -> Vec<u8> {
        let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        let mut rest = body;
        for &size in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (chunk, more) = rest.split_at(size.clamp(1, rest.len()));
            out.extend_from_slice(format!("{:X}\r\n", chunk.len()).as_bytes());
            out.extend_from_slice(chunk);
            out.extend_from_slice(b"\r\n");
            rest = more;
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// However the upstream chunks a body and however the bytes arrive, the same body comes
        /// out and the connection stays reusable.
        #[test]
        fn chunked_bodies_survive_any_chunking_and_any_split(
            body in prop::collection::vec(any::<u8>(), 0..3000),
            sizes in prop::collection::vec(1usize..700, 1..6),
            cuts in prop::collection::vec(0usize..4000, 0..12),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let mut cuts = cuts;
            cuts.sort_unstable();
            let (decoded, reusable) =
                runtime.block_on(answer_body(&chunked(&body, &sizes), &cuts, false));
            prop_assert_eq!(decoded.expect("a body"), body);
            prop_assert!(reusable);
        }
    }
}
