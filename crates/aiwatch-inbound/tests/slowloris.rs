//! The listener facing a hostile network, on loopback: clients that never finish their headers,
//! keep-alive connections left idle, and a flood of connections from one address.

use std::net::SocketAddr;
use std::time::Duration;

use aiwatch_inbound::{serve, Limits};
use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::oneshot;

/// Far above the header timeout: only a listener that never closes fails it.
const CLOSED_WITHIN: Duration = Duration::from_secs(10);

async fn start(limits: Limits) -> (SocketAddr, oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/whoami",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
        );
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(serve(listener, router, limits, async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

fn limits() -> Limits {
    Limits {
        header_timeout: Duration::from_millis(300),
        ..Limits::default()
    }
}

/// Reads until the server closes; true if it did within `CLOSED_WITHIN`.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(CLOSED_WITHIN, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

async fn get_from(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    let _ = stream.read_to_string(&mut out).await;
    out
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed() {
    let (addr, _stop) = start(limits()).await;
    let mut silent = TcpStream::connect(addr).await.unwrap();
    assert!(closed_by_server(&mut silent).await);
}

#[tokio::test]
async fn headers_dribbled_byte_by_byte_are_cut_off() {
    let (addr, _stop) = start(limits()).await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    let dribble = async {
        for byte in b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: "
            .iter()
            .cycle()
        {
            if slow.write_all(&[*byte]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    };
    let cut = tokio::time::timeout(CLOSED_WITHIN, dribble).await;
    assert_eq!(cut, Ok(true), "the server closed the dribbling connection");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_its_answer() {
    let (addr, _stop) = start(limits()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(closed_by_server(&mut stream).await);
}

#[tokio::test]
async fn a_flood_from_one_address_leaves_room_for_everyone_else() {
    let (addr, _stop) = start(Limits {
        max_connections: 120,
        per_address: 50,
        header_timeout: Duration::from_secs(30),
        ..Limits::default()
    })
    .await;
    // 200 half-open connections from 127.0.0.2; they hold their slots for the whole test.
    let mut flood = Vec::new();
    for _ in 0..200 {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        if let Ok(mut s) = socket.connect(addr).await {
            let _ = s.write_all(b"GET / HTTP/1.1\r\n").await;
            flood.push(s);
        }
    }
    let answer = tokio::time::timeout(CLOSED_WITHIN, get_from(addr, "/whoami"))
        .await
        .expect("another client is still served");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.ends_with("127.0.0.1"),
        "the handler sees its client: {answer}"
    );
    drop(flood);
}
