//! A fake HTTP proxy on 127.0.0.1 that tunnels CONNECT and forwards absolute-form plain-HTTP
//! requests, to loopback targets only, optionally demanding Basic credentials or rejecting all.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// Largest request head the proxy reads.
const MAX_HEAD: usize = 64 * 1024;
/// How long the proxy tries to reach a target before answering 502.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the proxy waits for a client to close after an error answer.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// An HTTP proxy on `127.0.0.1:<random port>`.
///
/// It tunnels `CONNECT host:port` and forwards `GET http://host:port/path` (one request per
/// client connection), but only to loopback: IP literals must be loopback, `localhost` means
/// 127.0.0.1, and other names must be mapped with [`map_host`](FakeProxy::map_host) (the proxy
/// never resolves a name through DNS). Any other target gets 403, an unreachable one 502.
/// It stops, closing its connections, when dropped.
pub struct FakeProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: JoinSet<()>,
}

#[derive(Default)]
struct Shared {
    reject: Option<u16>,
    /// The expected `Proxy-Authorization` value, when credentials are required.
    credentials: Mutex<Option<String>>,
    hosts: Mutex<HashMap<String, IpAddr>>,
    connects: Mutex<Vec<String>>,
    forwarded: Mutex<Vec<String>>,
}

impl FakeProxy {
    /// Starts a proxy that tunnels and forwards to loopback targets.
    pub async fn start() -> FakeProxy {
        FakeProxy::spawn(Shared::default()).await
    }

    /// Starts a proxy that answers every request (CONNECT or not) with this status, e.g. 403 for
    /// a corporate policy block or 502 for a broken upstream.
    pub async fn rejecting(status: u16) -> FakeProxy {
        assert!(
            (100..1000).contains(&status),
            "invalid HTTP status code {status}"
        );
        FakeProxy::spawn(Shared {
            reject: Some(status),
            ..Shared::default()
        })
        .await
    }

    async fn spawn(shared: Shared) -> FakeProxy {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("FakeProxy: cannot bind 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("a bound listener has a local address");
        let shared = Arc::new(shared);
        let mut tasks = JoinSet::new();
        tasks.spawn(accept_loop(listener, Arc::clone(&shared)));
        FakeProxy {
            addr,
            shared,
            tasks,
        }
    }

    /// Requires `Proxy-Authorization: Basic base64(user:pass)` on every request, answering 407
    /// with `Proxy-Authenticate: Basic realm="aiwatch-fake-proxy"` otherwise.
    pub fn with_credentials(self, user: &str, pass: &str) -> FakeProxy {
        let expected = format!("Basic {}", base64(format!("{user}:{pass}").as_bytes()));
        *lock(&self.shared.credentials) = Some(expected);
        self
    }

    /// Lets the proxy reach `host` (case-insensitive) at `ip`, which must be a loopback address,
    /// as if its own DNS had answered so (e.g. `api.openai.test` → 127.0.0.1 of a [`FakeServer`]).
    ///
    /// [`FakeServer`]: crate::FakeServer
    pub fn map_host(&self, host: &str, ip: IpAddr) {
        assert!(
            ip.is_loopback(),
            "FakeProxy reaches loopback only, not {ip}"
        );
        lock(&self.shared.hosts).insert(host.to_ascii_lowercase(), ip);
    }

    /// The address the proxy listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, as `HTTPS_PROXY` would hold it.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The targets (`host:port`) of every CONNECT received, refused ones included, in order.
    pub fn connects(&self) -> Vec<String> {
        lock(&self.shared.connects).clone()
    }

    /// The URLs of every absolute-form (plain HTTP) request received, refused ones included.
    pub fn forwarded(&self) -> Vec<String> {
        lock(&self.shared.forwarded).clone()
    }
}

impl Drop for FakeProxy {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

impl fmt::Debug for FakeProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeProxy")
            .field("addr", &self.addr)
            .field("reject", &self.shared.reject)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .expect("FakeProxy state poisoned by a panicking thread")
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    // Connection tasks live in this set, so aborting the accept task also closes them.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            result = listener.accept() => {
                if let Ok((stream, _)) = result {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(serve(stream, Arc::clone(&shared)));
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// A parsed request head, plus the bytes the client sent after it.
struct Head {
    method: String,
    target: String,
    version: String,
    headers: Vec<(String, String)>,
    rest: Vec<u8>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

async fn serve(mut client: TcpStream, shared: Arc<Shared>) {
    let Some(head) = read_head(&mut client).await else {
        let _ = answer(&mut client, 400, &[], "malformed request").await;
        return;
    };
    let expected = lock(&shared.credentials).clone();
    if let Some(expected) = expected {
        if head.header("proxy-authorization").map(str::trim) != Some(expected.as_str()) {
            let challenge = [("Proxy-Authenticate", "Basic realm=\"aiwatch-fake-proxy\"")];
            let _ = answer(
                &mut client,
                407,
                &challenge,
                "proxy authentication required",
            )
            .await;
            return;
        }
    }
    if head.method.eq_ignore_ascii_case("CONNECT") {
        lock(&shared.connects).push(head.target.clone());
        tunnel(client, head, &shared).await;
    } else if head.target.starts_with("http://") {
        lock(&shared.forwarded).push(head.target.clone());
        forward(client, head, &shared).await;
    } else {
        let _ = answer(
            &mut client,
            400,
            &[],
            "this is a proxy: send CONNECT or an absolute-form request",
        )
        .await;
    }
}

/// CONNECT: answers 200 and splices the client to the target.
async fn tunnel(mut client: TcpStream, head: Head, shared: &Shared) {
    if let Some(status) = shared.reject {
        let _ = answer(&mut client, status, &[], "rejected by the fake proxy").await;
        return;
    }
    let Some(target) = loopback_target(&head.target, None, shared) else {
        let _ = answer(
            &mut client,
            403,
            &[],
            "the fake proxy reaches loopback only",
        )
        .await;
        return;
    };
    let Some(mut upstream) = reach(target).await else {
        let _ = answer(&mut client, 502, &[], "the target is unreachable").await;
        return;
    };
    let established = format!("{} 200 Connection established\r\n\r\n", head.version);
    if client.write_all(established.as_bytes()).await.is_err() {
        return;
    }
    if !head.rest.is_empty() && upstream.write_all(&head.rest).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

/// Absolute-form plain HTTP: sends the request on in origin form with `Connection: close` and
/// relays the answer until the target closes.
async fn forward(mut client: TcpStream, head: Head, shared: &Shared) {
    if let Some(status) = shared.reject {
        let _ = answer(&mut client, status, &[], "rejected by the fake proxy").await;
        return;
    }
    let after_scheme = &head.target["http://".len()..];
    let split = after_scheme.find(['/', '?']).unwrap_or(after_scheme.len());
    let (authority, path) = after_scheme.split_at(split);
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else if path.is_empty() {
        "/".to_owned()
    } else {
        path.to_owned()
    };
    let Some(target) = loopback_target(authority, Some(80), shared) else {
        let _ = answer(
            &mut client,
            403,
            &[],
            "the fake proxy reaches loopback only",
        )
        .await;
        return;
    };
    let Some(mut upstream) = reach(target).await else {
        let _ = answer(&mut client, 502, &[], "the target is unreachable").await;
        return;
    };
    let mut request = format!("{} {path} {}\r\n", head.method, head.version);
    let hop_by_hop = [
        "proxy-authorization",
        "proxy-connection",
        "connection",
        "keep-alive",
    ];
    for (name, value) in &head.headers {
        if !hop_by_hop.iter().any(|h| name.eq_ignore_ascii_case(h)) {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    request.push_str("Connection: close\r\n\r\n");
    if upstream.write_all(request.as_bytes()).await.is_err()
        || upstream.write_all(&head.rest).await.is_err()
    {
        return;
    }
    let (mut client_read, mut client_write) = client.split();
    let (mut upstream_read, mut upstream_write) = upstream.split();
    let upload = async {
        let _ = tokio::io::copy(&mut client_read, &mut upstream_write).await;
        // The request body is done; keep relaying the answer.
        std::future::pending::<()>().await;
    };
    let download = async {
        let _ = tokio::io::copy(&mut upstream_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    };
    tokio::select! {
        () = upload => {}
        () = download => {}
    }
}

/// Where a `host:port` (or bare `host`, with `default_port`) target lives, if it is loopback.
fn loopback_target(target: &str, default_port: Option<u16>, shared: &Shared) -> Option<SocketAddr> {
    let (host, port) = if let Some(bracketed) = target.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']')?;
        match after.strip_prefix(':') {
            Some(port) => (host, port.parse().ok()?),
            None if after.is_empty() => (host, default_port?),
            None => return None,
        }
    } else {
        match target.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().ok()?),
            None => (target, default_port?),
        }
    };
    let ip = match host.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) if host.eq_ignore_ascii_case("localhost") => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Err(_) => *lock(&shared.hosts).get(&host.to_ascii_lowercase())?,
    };
    ip.is_loopback().then_some(SocketAddr::new(ip, port))
}

async fn reach(target: SocketAddr) -> Option<TcpStream> {
    debug_assert!(target.ip().is_loopback());
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target))
        .await
        .ok()?
        .ok()?;
    let _ = stream.set_nodelay(true);
    Some(stream)
}

/// Reads up to the blank line ending a request head and parses it. `None` if the client closed
/// first or sent something that is not an HTTP request head.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> Option<Head> {
    let mut buf = Vec::with_capacity(1024);
    let end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let text = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = text.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let (method, target, version) = (
        request_line.next()?.to_owned(),
        request_line.next()?.to_owned(),
        request_line.next()?.to_owned(),
    );
    if !version.starts_with("HTTP/1.") || request_line.next().is_some() {
        return None;
    }
    let headers = lines
        .map(|line| {
            let (name, value) = line.split_once(':')?;
            Some((name.trim().to_owned(), value.trim().to_owned()))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Head {
        method,
        target,
        version,
        headers,
        rest: buf[end + 4..].to_vec(),
    })
}

/// Writes a short text response with `Connection: close`.
async fn answer(
    stream: &mut TcpStream,
    status: u16,
    extra: &[(&str, &str)],
    body: &str,
) -> std::io::Result<()> {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown");
    let mut response = format!("HTTP/1.1 {status} {reason}\r\n");
    for (name, value) in extra {
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    response.push_str(&format!(
        "Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await?;
    // Read what the client still sends until it closes, so closing does not reset the
    // connection before the client has read the answer.
    let mut sink = [0u8; 4096];
    let drain = async { while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {} };
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
    Ok(())
}

/// Standard base64 with padding (RFC 4648), enough for a Basic credential.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for group in input.chunks(3) {
        let bytes = [
            group[0],
            group.get(1).copied().unwrap_or(0),
            group.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(bytes[0]) << 16 | u32::from(bytes[1]) << 8 | u32::from(bytes[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= group.len() {
                out.push(char::from(ALPHABET[(n >> shift) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blackhole::closed_port;
    use crate::ca::TestCa;
    use crate::http_server::{FakeServer, Reply};
    use crate::test_client::{collect, read_to_close, send, wrap, LIMIT};
    use serde_json::json;

    /// Sends `CONNECT target` (with `auth` as `Proxy-Authorization`) and reads the answer head.
    async fn connect(
        proxy: &FakeProxy,
        target: &str,
        auth: Option<&str>,
    ) -> (u16, String, TcpStream) {
        let mut stream = TcpStream::connect(proxy.addr())
            .await
            .expect("connect to proxy");
        let auth = auth
            .map(|a| format!("Proxy-Authorization: {a}\r\n"))
            .unwrap_or_default();
        let request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{auth}\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("send CONNECT");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            let n = tokio::time::timeout(LIMIT, stream.read(&mut byte))
                .await
                .expect("an answer in time")
                .expect("read");
            assert_eq!(n, 1, "the proxy closed before answering");
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).expect("utf-8");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status");
        (status, head, stream)
    }

    #[tokio::test]
    async fn tunnels_tls_to_a_mapped_loopback_host() {
        let ca = TestCa::new("Test Public Root", "aiwatch test");
        let identity = ca.issue(&["api.openai.test"]);
        let server = FakeServer::start(Some(&identity)).await;
        server.route(
            "GET",
            "/v1/models",
            Reply::json(200, json!({"object": "list"})),
        );
        let proxy = FakeProxy::start().await;
        assert_eq!(
            proxy.url(),
            format!("http://127.0.0.1:{}", proxy.addr().port())
        );
        proxy.map_host("API.openai.test", server.addr().ip());

        let target = format!("api.openai.test:{}", server.addr().port());
        let (status, head, stream) = connect(&proxy, &target, None).await;
        assert_eq!(status, 200, "{head}");
        let io = wrap(stream, Some((&ca, "api.openai.test"))).await;
        let response = send(io, "GET", "/v1/models", &[], b"")
            .await
            .expect("response");
        assert_eq!(collect(response).await.json(), json!({"object": "list"}));
        assert_eq!(proxy.connects(), [target]);

        // IP literals need no mapping.
        let (status, _, _) = connect(&proxy, &server.addr().to_string(), None).await;
        assert_eq!(status, 200);
    }

    #[tokio::test]
    async fn refuses_targets_beyond_loopback_without_resolving_them() {
        let proxy = FakeProxy::start().await;
        for target in [
            "api.openai.com:443",
            "8.8.8.8:443",
            "[2001:db8::1]:443",
            "nonsense",
        ] {
            let (status, _, mut stream) = connect(&proxy, target, None).await;
            assert_eq!(status, 403, "{target}");
            read_to_close(&mut stream).await;
        }
        assert_eq!(proxy.connects().len(), 4);
        let (status, _, _) = connect(&proxy, &closed_port().to_string(), None).await;
        assert_eq!(status, 502);
    }

    #[tokio::test]
    async fn rejecting_proxy_answers_every_connect_with_its_status() {
        let proxy = FakeProxy::rejecting(502).await;
        let (status, head, _) = connect(&proxy, "127.0.0.1:443", None).await;
        assert_eq!(status, 502);
        assert!(head.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{head}");
        assert_eq!(proxy.connects(), ["127.0.0.1:443"]);
    }

    #[tokio::test]
    async fn credentials_are_required_when_set() {
        let server = FakeServer::start(None).await;
        let proxy = FakeProxy::start().await.with_credentials("alice", "s3cret");
        let target = server.addr().to_string();
        let (status, head, _) = connect(&proxy, &target, None).await;
        assert_eq!(status, 407);
        assert!(
            head.contains("Proxy-Authenticate: Basic realm=\"aiwatch-fake-proxy\""),
            "{head}"
        );
        let (status, _, _) = connect(&proxy, &target, Some("Basic YWxpY2U6d3Jvbmc=")).await;
        assert_eq!(status, 407);
        // base64("alice:s3cret")
        let (status, _, _) = connect(&proxy, &target, Some("Basic YWxpY2U6czNjcmV0")).await;
        assert_eq!(status, 200);
    }

    #[tokio::test]
    async fn forwards_absolute_form_plain_http() {
        let server = FakeServer::start(None).await;
        server.route("GET", "/generate_204", Reply::empty(204));
        server.route(
            "POST",
            "/echo",
            Reply::dynamic(|seen| Reply::bytes(200, "text/plain", seen.body.clone())),
        );
        let proxy = FakeProxy::start().await.with_credentials("u", "p");
        proxy.map_host("connectivitycheck.gstatic.test", server.addr().ip());
        let port = server.addr().port();
        let auth = [("proxy-authorization", "Basic dTpw")];

        let url = format!("http://connectivitycheck.gstatic.test:{port}/generate_204?x=1");
        let stream = TcpStream::connect(proxy.addr()).await.expect("connect");
        let response = send(wrap(stream, None).await, "GET", &url, &auth, b"")
            .await
            .expect("response");
        assert_eq!(response.status(), 204);

        let url = format!("http://127.0.0.1:{port}/echo");
        let stream = TcpStream::connect(proxy.addr()).await.expect("connect");
        let response = send(wrap(stream, None).await, "POST", &url, &auth, b"ping")
            .await
            .expect("response");
        assert_eq!(collect(response).await.text(), "ping");

        let seen = server.requests();
        assert_eq!(seen[0].path, "/generate_204?x=1");
        assert!(seen[0].header("proxy-authorization").is_none());
        assert_eq!(proxy.forwarded().len(), 2);

        let stream = TcpStream::connect(proxy.addr()).await.expect("connect");
        let far = "http://example.com/".to_owned();
        let response = send(wrap(stream, None).await, "GET", &far, &auth, b"")
            .await
            .expect("response");
        assert_eq!(response.status(), 403);
        let stream = TcpStream::connect(proxy.addr()).await.expect("connect");
        let response = send(wrap(stream, None).await, "GET", "/origin-form", &auth, b"")
            .await
            .expect("response");
        assert_eq!(response.status(), 400);
    }

    #[test]
    #[should_panic(expected = "loopback only")]
    fn map_host_refuses_non_loopback_addresses() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let proxy = runtime.block_on(FakeProxy::start());
        proxy.map_host("api.openai.com", IpAddr::V4(Ipv4Addr::new(104, 18, 33, 45)));
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }
}
