//! The edge's own HTTP/1.1 loop on loopback: requests it takes are answered on one kept-alive
//! connection (pipelined ones in order), anything else reaches the general server with every
//! byte intact, and its deadlines, `Connection: close` and the graceful stop hold.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aiwatch_inbound::fast::{BodyTimedOut, FastPath, FastRequest};
use aiwatch_inbound::{serve_fast, Limits};
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt as _;
use http_body_util::BodyExt;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// Far above every deadline the tests set: only a server that never answers or closes fails it.
const WITHIN: Duration = Duration::from_secs(10);
const MAX_BODY: usize = 1024;

#[derive(Clone, Copy)]
enum Route {
    Echo,
    Slow,
    Stream,
    /// Takes 3 s, and counts whether it got there or was dropped on the way.
    Held,
}

static HELD_FINISHED: AtomicUsize = AtomicUsize::new(0);
static HELD_DROPPED: AtomicUsize = AtomicUsize::new(0);

/// Counts an answer dropped before it finished.
struct Unfinished(bool);

impl Drop for Unfinished {
    fn drop(&mut self) {
        if !self.0 {
            HELD_DROPPED.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Answers `/echo`, `/slow` and `/stream` itself, saying so.
struct TestFast;

impl FastPath for TestFast {
    type Route = Route;
    type Answer = Pin<Box<dyn Future<Output = Response> + Send>>;

    fn route(&self, method: &str, path: &str) -> Option<Route> {
        match (method, path) {
            ("POST", "/echo") => Some(Route::Echo),
            ("POST", "/slow") => Some(Route::Slow),
            ("POST", "/stream") => Some(Route::Stream),
            ("POST", "/held") => Some(Route::Held),
            _ => None,
        }
    }

    fn max_body(&self) -> usize {
        MAX_BODY
    }

    fn body_timeout(&self) -> Duration {
        Duration::from_millis(300)
    }

    fn call(&self, route: Route, request: FastRequest<'_>) -> Self::Answer {
        let key = request
            .headers
            .get("X-Key")
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        let text = match &request.body {
            Ok(body) => format!("fast {} key={key} body={}", request.path, body.len()),
            Err(BodyTimedOut) => {
                return Box::pin(async {
                    Response::builder()
                        .status(408)
                        .body(Body::from("body too slow"))
                        .unwrap()
                })
            }
        };
        Box::pin(async move {
            match route {
                Route::Echo => fast_answer(Body::from(text)),
                Route::Slow => {
                    tokio::time::sleep(Duration::from_millis(400)).await;
                    fast_answer(Body::from(text))
                }
                Route::Held => {
                    let mut guard = Unfinished(false);
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    guard.0 = true;
                    HELD_FINISHED.fetch_add(1, Ordering::SeqCst);
                    fast_answer(Body::from(text))
                }
                Route::Stream => {
                    let pieces = ["data: one\n\n", "data: two\n\n", "data: [DONE]\n\n"];
                    let stream = futures_util::stream::iter(pieces).then(|piece| async move {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok::<_, Infallible>(Bytes::from(piece))
                    });
                    fast_answer(Body::from_stream(stream))
                }
            }
        })
    }
}

fn fast_answer(body: Body) -> Response {
    Response::builder()
        .header("x-served-by", "fast")
        .body(body)
        .unwrap()
}

/// The general server: says what it got, body length included.
fn general(
    _peer: SocketAddr,
) -> impl hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = Response,
    Error = Infallible,
    Future = impl Future<Output = Result<Response, Infallible>> + Send,
> + Send
       + 'static {
    hyper::service::service_fn(
        |request: hyper::Request<hyper::body::Incoming>| async move {
            let (parts, body) = request.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let text = format!(
                "general {} {} {:?} body={}",
                parts.method,
                parts.uri.path(),
                parts.version,
                body.len()
            );
            Ok(Response::builder()
                .header("x-served-by", "general")
                .body(Body::from(text))
                .unwrap())
        },
    )
}

async fn start(
    header_timeout: Duration,
) -> (SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let limits = Limits {
        header_timeout,
        grace: Duration::from_secs(5),
        ..Limits::default()
    };
    let served = tokio::spawn(serve_fast(
        listener,
        Arc::new(TestFast),
        general,
        limits,
        async {
            let _ = stopped.await;
        },
    ));
    (addr, stop, served)
}

/// One answer as read off the wire.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one answer from `stream`, `pending` holding what was read past the previous one.
async fn read_answer(stream: &mut TcpStream, pending: &mut Vec<u8>) -> Answer {
    tokio::time::timeout(WITHIN, async {
        let (status, headers, head_len) = loop {
            let mut fields = [httparse::EMPTY_HEADER; 32];
            let mut parsed = httparse::Response::new(&mut fields);
            if let httparse::Status::Complete(n) = parsed.parse(pending).unwrap() {
                let headers: Vec<(String, String)> = parsed
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).into(),
                        )
                    })
                    .collect();
                break (parsed.code.unwrap(), headers, n);
            }
            fill(stream, pending).await;
        };
        pending.drain(..head_len);
        let find = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let mut body = Vec::new();
        if let Some(length) = find("content-length") {
            let length: usize = length.parse().unwrap();
            while pending.len() < length {
                fill(stream, pending).await;
            }
            body.extend(pending.drain(..length));
        } else if find("transfer-encoding").as_deref() == Some("chunked") {
            loop {
                let line_end = loop {
                    if let Some(i) = pending.windows(2).position(|w| w == b"\r\n") {
                        break i;
                    }
                    fill(stream, pending).await;
                };
                let size =
                    usize::from_str_radix(std::str::from_utf8(&pending[..line_end]).unwrap(), 16)
                        .unwrap();
                while pending.len() < line_end + 2 + size + 2 {
                    fill(stream, pending).await;
                }
                body.extend_from_slice(&pending[line_end + 2..line_end + 2 + size]);
                assert_eq!(&pending[line_end + 2 + size..line_end + 4 + size], b"\r\n");
                pending.drain(..line_end + 4 + size);
                if size == 0 {
                    break;
                }
            }
        }
        Answer {
            status,
            headers,
            body: String::from_utf8(body).unwrap(),
        }
    })
    .await
    .expect("an answer within the deadline")
}

async fn fill(stream: &mut TcpStream, pending: &mut Vec<u8>) {
    let mut buf = [0u8; 4096];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(
        n > 0,
        "the server closed before the answer was whole: {pending:?}"
    );
    pending.extend_from_slice(&buf[..n]);
}

/// True if the server closes the connection (reading nothing more) within [`WITHIN`].
async fn closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    matches!(
        tokio::time::timeout(WITHIN, stream.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// A connection to `addr` on which `bytes` were sent.
async fn connect_sending(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    stream
}

fn post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nX-Key: k1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn requests_the_loop_takes_share_one_kept_alive_connection() {
    let (addr, _stop, _served) = start(Duration::from_secs(5)).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut pending = Vec::new();
    for body in ["", "hello", &"x".repeat(MAX_BODY)] {
        stream
            .write_all(post("/echo", body).as_bytes())
            .await
            .unwrap();
        let answer = read_answer(&mut stream, &mut pending).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.header("x-served-by"), Some("fast"));
        assert_eq!(
            answer.body,
            format!("fast /echo key=k1 body={}", body.len())
        );
        assert!(answer.header("date").is_some(), "{answer:?}");
        assert_eq!(answer.header("connection"), None);
    }
}

#[tokio::test]
async fn a_head_sent_byte_by_byte_is_answered() {
    let (addr, _stop, _served) = start(Duration::from_secs(5)).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    for byte in post("/echo", "b").as_bytes() {
        stream.write_all(&[*byte]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let answer = read_answer(&mut stream, &mut Vec::new()).await;
    assert_eq!(answer.body, "fast /echo key=k1 body=1");
}

#[tokio::test]
async fn a_body_sent_in_pieces_is_read_whole() {
    let (addr, _stop, _served) = start(Duration::from_secs(5)).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = post("/echo", &"y".repeat(600));
    for piece in request.as_bytes().chunks(97) {
        stream.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let answer = read_answer(&mut stream, &mut Vec::new()).await;
    assert_eq!(answer.body, "fast /echo key=k1 body=600");
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_and_the_general_server_gets_the_rest() {
    let (addr, _stop, _served) = start(Duration::from_secs(5)).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let all = format!(
        "{}{}GET /other HTTP/1.1\r\nHost: t\r\n\r\n{}",
        post("/echo", "a"),
        post("/echo", "bb"),
        post("/echo", "ccc"),
    );
    stream.write_all(all.as_bytes()).await.unwrap();
    let mut pending = Vec::new();
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(read_answer(&mut stream, &mut pending).await.body);
    }
    assert_eq!(
        got,
        [
            "fast /echo key=k1 body=1",
            "fast /echo key=k1 body=2",
            "general GET /other HTTP/1.1 body=0",
            // Once handed over, the connection stays with the general server.
            "general POST /echo HTTP/1.1 body=3",
        ]
    );
}

#[tokio::test]
async fn a_client_that_hangs_up_before_its_answer_has_the_answer_dropped() {
    let (addr, _stop, _served) = start(Duration::from_secs(30)).await;
    let stream = connect_sending(addr, post("/held", "h").as_bytes()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(stream);
    let waited = tokio::time::Instant::now();
    while HELD_DROPPED.load(Ordering::SeqCst) == 0 {
        assert!(
            waited.elapsed() < Duration::from_secs(2),
            "the answer went on after its client left"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(HELD_FINISHED.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_request_sent_while_the_previous_is_answered_is_answered_next() {
    let (addr, _stop, _served) = start(Duration::from_secs(5)).await;
    let mut stream = connect_sending(addr, post("/slow", "1").as_bytes()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    stream
        .write_all(post("/echo", "22").as_bytes())
        .await
        .unwrap();
    let mut pending = Vec::new();
    assert_eq!(
        read_answer(&mut stream, &mut pending).await.body,
        "fast /slow key=k1 body=1"
    );
    assert_eq!(
        read_answer(&mut stream, &mut pending).await.body,
        "fast /echo key=k1 body=2"
    );
}

#[tokio::test]
async fn requests_the_loop_does_not_take_reach_the_general_server_intact() {
    let (addr, _stop, _served) = start(Duration::from_secs(5)).await;
    let big = "z".repeat(MAX_BODY + 1);
    let cases = [
        (
            "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_string(),
            "general POST /echo HTTP/1.1 body=5",
        ),
        (
            "POST /echo HTTP/1.0\r\nHost: t\r\nContent-Length: 4\r\n\r\nabcd".to_string(),
            "general POST /echo HTTP/1.0 body=4",
        ),
        (
            format!("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{big}", big.len()),
            "general POST /echo HTTP/1.1 body=1025",
        ),
        (
            "POST /echo?x=1 HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nab".to_string(),
            "general POST /echo HTTP/1.1 body=2",
        ),
        (
            "POST /echo HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\nContent-Length: 2\r\n\r\nab".to_string(),
            "general POST /echo HTTP/1.1 body=2",
        ),
        (
            "GET /echo HTTP/1.1\r\nHost: t\r\n\r\n".to_string(),
            "general GET /echo HTTP/1.1 body=0",
        ),
    ];
    for (request, expected) in cases {
        let mut stream = connect_sending(addr, request.as_bytes()).await;
        let answer = read_answer(&mut stream, &mut Vec::new()).await;
        assert_eq!(answer.body, expected, "for {request:?}");
    }
    // `Expect: 100-continue`: the general server says continue, then answers.
    let mut stream = connect_sending(
        addr,
        b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
    )
    .await;
    let mut pending = Vec::new();
    assert_eq!(read_answer(&mut stream, &mut pending).await.status, 100);
    stream.write_all(b"abc").await.unwrap();
    let answer = read_answer(&mut stream, &mut pending).await;
    assert_eq!(answer.body, "general POST /echo HTTP/1.1 body=3");
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_answered_and_the_connection_closed() {
    let (addr, _stop, _served) = start(Duration::from_secs(5)).await;
    let mut stream = connect_sending(
        addr,
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc",
    )
    .await;
    let answer = read_answer(&mut stream, &mut Vec::new()).await;
    assert_eq!(answer.status, 408);
    assert_eq!(answer.header("connection"), Some("close"));
    assert!(closed(&mut stream).await);
}

#[tokio::test]
async fn idle_and_half_sent_heads_are_closed_at_the_header_timeout() {
    let (addr, _stop, _served) = start(Duration::from_millis(200)).await;
    let mut idle = TcpStream::connect(addr).await.unwrap();
    let mut half = connect_sending(addr, b"POST /echo HTTP/1.1\r\nHost: t\r\n").await;
    // A kept-alive connection left idle after an answer is closed too.
    let mut used = connect_sending(addr, post("/echo", "a").as_bytes()).await;
    read_answer(&mut used, &mut Vec::new()).await;
    assert!(closed(&mut idle).await);
    assert!(closed(&mut half).await);
    assert!(closed(&mut used).await);
}

#[tokio::test]
async fn connection_close_is_honoured() {
    let (addr, _stop, _served) = start(Duration::from_secs(5)).await;
    let mut stream = connect_sending(
        addr,
        b"POST /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 1\r\n\r\na",
    )
    .await;
    let answer = read_answer(&mut stream, &mut Vec::new()).await;
    assert_eq!(answer.header("x-served-by"), Some("fast"));
    assert_eq!(answer.header("connection"), Some("close"));
    assert!(closed(&mut stream).await);
}

#[tokio::test]
async fn an_answer_of_unknown_length_goes_out_chunked_piece_by_piece() {
    let (addr, _stop, _served) = start(Duration::from_secs(5)).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut pending = Vec::new();
    for _ in 0..2 {
        stream
            .write_all(post("/stream", "").as_bytes())
            .await
            .unwrap();
        let answer = read_answer(&mut stream, &mut pending).await;
        assert_eq!(answer.header("transfer-encoding"), Some("chunked"));
        assert_eq!(answer.body, "data: one\n\ndata: two\n\ndata: [DONE]\n\n");
    }
}

#[tokio::test]
async fn a_stop_lets_the_answer_in_flight_finish_and_closes_idle_connections() {
    let (addr, stop, served) = start(Duration::from_secs(30)).await;
    let mut idle = connect_sending(addr, post("/echo", "").as_bytes()).await;
    read_answer(&mut idle, &mut Vec::new()).await;
    let mut busy = connect_sending(addr, post("/slow", "s").as_bytes()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).unwrap();
    assert!(
        closed(&mut idle).await,
        "an idle connection outlived the stop"
    );
    let answer = read_answer(&mut busy, &mut Vec::new()).await;
    assert_eq!(answer.body, "fast /slow key=k1 body=1");
    assert_eq!(answer.header("connection"), Some("close"));
    assert!(closed(&mut busy).await);
    tokio::time::timeout(WITHIN, served).await.unwrap().unwrap();
}

/// After `junk`, the server still serves a good request on a new connection.
async fn survives(addr: SocketAddr, junk: &[u8]) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(junk).await;
    let _ = stream.shutdown().await;
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(WITHIN, stream.read_to_end(&mut sink)).await;
    let mut good = connect_sending(addr, post("/echo", "ok").as_bytes()).await;
    assert_eq!(
        read_answer(&mut good, &mut Vec::new()).await.body,
        "fast /echo key=k1 body=2"
    );
}

proptest! {
    // 48 by default (each case is a server and two connections); `PROPTEST_CASES` (as
    // `cargo xtask fuzz` sets it) asks for more.
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48)
    ))]

    #[test]
    fn garbage_and_broken_heads_never_panic_nor_take_the_server_down(
        prefix in prop::sample::select(vec![
            &b""[..],
            b"POST /echo HTTP/1.1\r\n",
            b"POST /echo HTTP/1.1\r\nContent-Length: ",
            b"POST /echo HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        ]),
        junk in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let (addr, _stop, _served) = start(Duration::from_millis(300)).await;
            let mut bytes = prefix.to_vec();
            bytes.extend_from_slice(&junk);
            survives(addr, &bytes).await;
        });
    }
}
