//! The upstream pool on real loopback sockets: connections are kept and reused once an answer
//! was read to the end, never lent again while broken or half-read, and a connection the
//! upstream closed costs no request.

use std::time::Duration;

use aiwatch_gateway::connector::UpstreamConnector;
use aiwatch_gateway::pool::{SendError, UpstreamPool};
use aiwatch_probe::{CheckOptions, Checker, DnsChoice, ProxySettings};
use aiwatch_testkit::http_server::{FakeServer, Reply};
use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn pool_for(base: &str) -> UpstreamPool {
    pool_trusting(base, Vec::new())
}

/// A pool whose TLS trusts the authorities in `ca_files` (PEM).
fn pool_trusting(base: &str, ca_files: Vec<std::path::PathBuf>) -> UpstreamPool {
    let checker = Checker::new(CheckOptions {
        timeout: Duration::from_secs(5),
        dns: DnsChoice::System,
        ca_files,
        control_url: None,
        deep: false,
        proxies: ProxySettings::none(),
    })
    .expect("checker");
    let connector = UpstreamConnector::new(
        checker.context().clone(),
        None,
        false,
        Duration::from_secs(5),
    );
    UpstreamPool::new(connector, Some(base))
}

fn get(url: &str) -> Request<Bytes> {
    Request::get(url).body(Bytes::new()).expect("a request")
}

/// Sends a GET and reads its answer to the end.
async fn fetch(pool: &UpstreamPool, url: &str) -> (u16, Bytes) {
    let (head, body) = pool.send(get(url)).await.expect("an answer");
    let status = head.status.as_u16();
    let body = body.collect().await.expect("a whole body").to_bytes();
    (status, body)
}

#[tokio::test]
async fn answers_read_to_the_end_reuse_one_connection() {
    let server = FakeServer::start(None).await;
    server.route(
        "GET",
        "/v1/models",
        Reply::text(200, "application/json", "{}"),
    );
    let base = server.url("127.0.0.1");
    let pool = pool_for(&base);
    for _ in 0..5 {
        assert_eq!(
            fetch(&pool, &format!("{base}/v1/models")).await,
            (200, Bytes::from_static(b"{}"))
        );
    }
    assert_eq!(server.connections(), 1);
    let seen = server.requests();
    assert_eq!(seen.len(), 5);
    // Sent to the origin: the request line names the path and `Host` the origin.
    assert!(seen.iter().all(|s| s.path == "/v1/models"));
    let host = format!("127.0.0.1:{}", server.addr().port());
    assert!(seen.iter().all(|s| s.header("host") == Some(host.as_str())));
}

#[tokio::test]
async fn an_answer_dropped_before_its_end_is_not_lent_again() {
    let server = FakeServer::start(None).await;
    let long = "x".repeat(256 * 1024);
    server.route("GET", "/long", Reply::text(200, "text/plain", long));
    server.route("GET", "/short", Reply::text(200, "text/plain", "ok"));
    let base = server.url("127.0.0.1");
    let pool = pool_for(&base);
    let half_read = pool.send(get(&format!("{base}/long"))).await.expect("head");
    drop(half_read);
    assert_eq!(
        fetch(&pool, &format!("{base}/short")).await,
        (200, Bytes::from_static(b"ok"))
    );
    assert_eq!(server.connections(), 2);
}

#[tokio::test]
async fn a_connection_the_upstream_closes_after_its_answer_costs_no_request() {
    let server = FakeServer::start(None).await;
    server.route(
        "GET",
        "/once",
        Reply::text(200, "text/plain", "ok").header("connection", "close"),
    );
    let base = server.url("127.0.0.1");
    let pool = pool_for(&base);
    for _ in 0..3 {
        assert_eq!(
            fetch(&pool, &format!("{base}/once")).await,
            (200, Bytes::from_static(b"ok"))
        );
    }
    assert_eq!(server.connections(), 3);
}

#[tokio::test]
async fn concurrent_requests_open_connections_that_later_requests_share() {
    let server = FakeServer::start(None).await;
    server.route(
        "GET",
        "/slow",
        Reply::text(200, "text/plain", "ok").delay(Duration::from_millis(100)),
    );
    let base = server.url("127.0.0.1");
    let pool = pool_for(&base);
    let url = format!("{base}/slow");
    let together = futures_util::future::join_all((0..4).map(|_| fetch(&pool, &url))).await;
    assert!(together.iter().all(|(status, _)| *status == 200));
    assert_eq!(server.connections(), 4);
    for _ in 0..8 {
        fetch(&pool, &url).await;
    }
    assert_eq!(server.connections(), 4, "idle connections were reused");
}

/// An upstream that closes every connection a moment after answering on it, as an idle
/// timeout does.
async fn upstream_closing_idle_connections(
) -> (std::net::SocketAddr, tokio::task::JoinHandle<usize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let mut accepted = 0;
        while let Ok(Ok((mut stream, _))) =
            tokio::time::timeout(Duration::from_secs(2), listener.accept()).await
        {
            accepted += 1;
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(stream);
        }
        accepted
    });
    (addr, task)
}

#[tokio::test]
async fn a_connection_closed_while_idle_is_replaced_without_failing_the_request() {
    let (addr, upstream) = upstream_closing_idle_connections().await;
    let base = format!("http://{addr}");
    let pool = pool_for(&base);
    for _ in 0..3 {
        assert_eq!(
            fetch(&pool, &format!("{base}/")).await,
            (200, Bytes::from_static(b"ok"))
        );
        tokio::time::sleep(Duration::from_millis(80)).await;
    }
    drop(pool);
    assert_eq!(upstream.await.expect("upstream"), 3);
}

#[tokio::test]
async fn an_upstream_that_refuses_connections_is_a_connect_failure_naming_its_layer() {
    let closed = aiwatch_testkit::blackhole::closed_port();
    let base = format!("http://{closed}");
    let pool = pool_for(&base);
    match pool.send(get(&format!("{base}/v1/models"))).await {
        Err(SendError::Connect(failure)) => {
            assert_eq!(failure.cause, aiwatch_core::cause::Cause::TcpRefused);
        }
        other => panic!(
            "expected a connect failure, got {:?}",
            other.map(|(head, _)| head.status)
        ),
    }
}

#[tokio::test]
async fn a_request_to_another_origin_gets_a_connection_of_its_own() {
    let pooled = FakeServer::start(None).await;
    let other = FakeServer::start(None).await;
    other.route("GET", "/", Reply::text(200, "text/plain", "elsewhere"));
    let pool = pool_for(&pooled.url("127.0.0.1"));
    let elsewhere = other.url("127.0.0.1");
    for _ in 0..2 {
        assert_eq!(
            fetch(&pool, &format!("{elsewhere}/")).await,
            (200, Bytes::from_static(b"elsewhere"))
        );
    }
    assert_eq!(other.connections(), 2, "not kept on the pool's shelf");
    assert_eq!(pooled.connections(), 0);
}

#[tokio::test]
async fn over_tls_whole_and_chunked_answers_are_read_and_the_connection_kept() {
    let world = aiwatch_testkit::world::World::start().await;
    let server = FakeServer::start(Some(&world.public_ca.issue(&["127.0.0.1"]))).await;
    server.route(
        "GET",
        "/v1/models",
        Reply::text(200, "application/json", "{}"),
    );
    let events = (0..20).map(|i| format!("data: {i}")).collect();
    server.route(
        "GET",
        "/stream",
        Reply::sse(events, Duration::from_millis(2), true),
    );
    let base = format!("https://127.0.0.1:{}", server.addr().port());
    let pool = pool_trusting(&base, vec![world.public_ca_path()]);
    for _ in 0..3 {
        assert_eq!(
            fetch(&pool, &format!("{base}/v1/models")).await,
            (200, Bytes::from_static(b"{}"))
        );
        let (status, streamed) = fetch(&pool, &format!("{base}/stream")).await;
        assert_eq!(status, 200);
        let text = String::from_utf8_lossy(&streamed);
        assert!(
            text.starts_with("data: 0\n\n") && text.contains("data: 19\n\n"),
            "{text}"
        );
    }
    assert_eq!(
        server.connections(),
        1,
        "one TLS connection carried all six"
    );
}
