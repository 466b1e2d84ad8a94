//! A small HTTP/1.1 client (hyper over TCP or rustls) for the testkit's own tests.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::ca::TestCa;

/// Generous bound on any single exchange in these tests, so a bug fails instead of hanging.
pub(crate) const LIMIT: Duration = Duration::from_secs(5);

/// A byte stream to a server: TCP or TLS over TCP.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Connects to `addr`, then does a TLS handshake as `name` trusting `ca` when `tls` is given.
pub(crate) async fn open(addr: SocketAddr, tls: Option<(&TestCa, &str)>) -> Box<dyn Io> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    wrap(tcp, tls).await
}

/// Adds TLS (as `name`, trusting `ca`) over an open stream when `tls` is given.
pub(crate) async fn wrap<S: Io + 'static>(stream: S, tls: Option<(&TestCa, &str)>) -> Box<dyn Io> {
    match tls {
        None => Box::new(stream),
        Some((ca, name)) => {
            let name = ServerName::try_from(name.to_owned()).expect("valid server name");
            let tls = TlsConnector::from(ca.client_config())
                .connect(name, stream)
                .await
                .expect("TLS handshake");
            Box::new(tls)
        }
    }
}

/// Sends one request on a new HTTP/1.1 connection over `io` and returns the response head.
pub(crate) async fn send(
    io: Box<dyn Io>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> hyper::Result<Response<Incoming>> {
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(connection);
    sender
        .send_request(request(method, path, headers, body))
        .await
}

/// Builds a request with a `host` header.
pub(crate) fn request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Request<Full<Bytes>> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "fake.test");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder
        .body(Full::new(Bytes::copy_from_slice(body)))
        .expect("valid request")
}

/// A whole response.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// Reads the whole body of `response`; panics if it breaks off.
pub(crate) async fn collect(response: Response<Incoming>) -> Answer {
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("a complete body").to_bytes();
    Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: body.to_vec(),
    }
}

/// One full exchange on a fresh connection; panics on any failure or after [`LIMIT`].
pub(crate) async fn fetch(
    addr: SocketAddr,
    tls: Option<(&TestCa, &str)>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let exchange = async {
        let io = open(addr, tls).await;
        let response = send(io, method, path, headers, body)
            .await
            .expect("a response");
        collect(response).await
    };
    tokio::time::timeout(LIMIT, exchange)
        .await
        .expect("the exchange finished in time")
}

/// `GET path` over plain HTTP.
pub(crate) async fn get(addr: SocketAddr, path: &str) -> Answer {
    fetch(addr, None, "GET", path, &[], b"").await
}

/// Reads body frames until the body ends or breaks; returns the data and whether it broke.
pub(crate) async fn read_until_break(response: Response<Incoming>) -> (Vec<u8>, bool) {
    let mut body = response.into_body();
    let mut data = Vec::new();
    loop {
        match tokio::time::timeout(LIMIT, body.frame()).await {
            Err(_) => panic!("the body neither ended nor broke in time"),
            Ok(None) => return (data, false),
            Ok(Some(Err(_))) => return (data, true),
            Ok(Some(Ok(frame))) => {
                if let Some(chunk) = frame.data_ref() {
                    data.extend_from_slice(chunk);
                }
            }
        }
    }
}

/// Reads until the peer closes (or [`LIMIT`]); returns everything read.
pub(crate) async fn read_to_close<S: AsyncRead + Unpin>(stream: &mut S) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(LIMIT, stream.read_to_end(&mut out)).await;
    out
}
