//! Loopback addresses that misbehave at the TCP layer, to test timeouts and refusals without
//! leaving 127.0.0.1: a [`Blackhole`] where `connect()` hangs, a [`SilentServer`] that accepts and
//! never says a word, and a [`closed_port`] that refuses.
//!
//! How the blackhole works, unprivileged and loopback-only: a listening socket with an accept
//! backlog of 0 that never calls `accept()`. Linux queues one completed connection (the queue
//! holds `backlog + 1`), which the blackhole makes itself and holds open; from then on the accept
//! queue is full and the kernel silently drops every new SYN to that port (counted as
//! `ListenOverflows` in `nstat`). A client's `connect()` therefore sees no SYN-ACK and no RST: it
//! retransmits its SYN and hangs until its own timeout, exactly like a firewall that drops
//! packets. [`Blackhole::start`] checks that the kernel really behaves this way and panics
//! otherwise, so a test can never pass by accident.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinSet;

/// How long a filling connection may take before the blackhole considers the backlog full.
const FILL_PROBE: Duration = Duration::from_millis(200);
/// Filling connections tried at most (a kernel that needs more is not dropping SYNs).
const MAX_FILLERS: usize = 8;

/// A TCP address on 127.0.0.1 where `connect()` never completes (SYNs are dropped).
/// It stays a blackhole as long as the value lives.
#[derive(Debug)]
pub struct Blackhole {
    addr: SocketAddr,
    _listener: TcpListener,
    _fillers: Vec<TcpStream>,
}

impl Blackhole {
    /// Creates the blackhole: listens with a backlog of 0, never accepts, and fills the accept
    /// queue with connections of its own.
    ///
    /// Panics if the kernel still completes connections once the queue is full (then this trick
    /// does not work on this system and tests relying on it would be meaningless).
    pub async fn start() -> Blackhole {
        let socket = TcpSocket::new_v4().expect("Blackhole: cannot create a TCP socket");
        socket
            .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .expect("Blackhole: cannot bind 127.0.0.1:0");
        let listener = socket
            .listen(0)
            .expect("Blackhole: cannot listen on its socket");
        let addr = listener
            .local_addr()
            .expect("a bound listener has a local address");

        let mut fillers = Vec::new();
        loop {
            match tokio::time::timeout(FILL_PROBE, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) if fillers.len() < MAX_FILLERS => fillers.push(stream),
                Ok(Ok(_)) => panic!(
                    "Blackhole: {MAX_FILLERS} connections to a never-accepting listener with \
                     backlog 0 all completed; this kernel does not drop SYNs on a full accept \
                     queue, so no loopback blackhole is available here"
                ),
                Ok(Err(error)) => panic!("Blackhole: filling connection to {addr} failed: {error}"),
                // The SYN went unanswered: the accept queue is full, the blackhole is ready.
                Err(_elapsed) if !fillers.is_empty() => break,
                Err(_elapsed) => panic!(
                    "Blackhole: even the first connection to {addr} did not complete within \
                     {FILL_PROBE:?}; loopback is unusually slow or filtered"
                ),
            }
        }
        Blackhole {
            addr,
            _listener: listener,
            _fillers: fillers,
        }
    }

    /// The address where `connect()` hangs.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// A TCP server on 127.0.0.1 that accepts every connection, reads and discards whatever the
/// client sends, and never sends a byte nor closes first: TLS handshakes and HTTP requests to it
/// hang. It stops, closing its connections, when dropped.
#[derive(Debug)]
pub struct SilentServer {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    tasks: JoinSet<()>,
}

impl SilentServer {
    /// Binds 127.0.0.1:<random port> and starts accepting in a spawned task.
    pub async fn start() -> SilentServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("SilentServer: cannot bind 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("a bound listener has a local address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let mut tasks = JoinSet::new();
        tasks.spawn(accept_and_ignore(listener, Arc::clone(&accepted)));
        SilentServer {
            addr,
            accepted,
            tasks,
        }
    }

    /// The address of the server.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many connections the server has accepted so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

async fn accept_and_ignore(listener: TcpListener, accepted: Arc<AtomicUsize>) {
    // Connection tasks live in this set, so aborting the accept task also closes them.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            result = listener.accept() => {
                if let Ok((stream, _)) = result {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    connections.spawn(discard_until_eof(stream));
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Reads and drops everything (so the client's writes never block) until the client closes.
async fn discard_until_eof(mut stream: TcpStream) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

/// An address on 127.0.0.1 with nothing listening, so connecting to it is refused (RST).
///
/// The port was free a moment ago (bound, then released); another process could in theory
/// take it in between, which is as unlikely as with any ephemeral port.
pub fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .expect("closed_port: cannot bind 127.0.0.1:0");
    listener
        .local_addr()
        .expect("a bound listener has a local address")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    const HANG: Duration = Duration::from_millis(300);

    #[tokio::test]
    async fn blackhole_connect_does_not_complete() {
        let blackhole = Blackhole::start().await;
        assert!(blackhole.addr().ip().is_loopback());
        // Several fresh connections, one after the other and at once: none completes.
        let attempt = || tokio::time::timeout(HANG, TcpStream::connect(blackhole.addr()));
        assert!(
            attempt().await.is_err(),
            "connect to the blackhole completed"
        );
        let (a, b) = tokio::join!(attempt(), attempt());
        assert!(
            a.is_err() && b.is_err(),
            "connect to the blackhole completed"
        );
    }

    #[tokio::test]
    async fn two_blackholes_are_independent() {
        let first = Blackhole::start().await;
        let second = Blackhole::start().await;
        assert_ne!(first.addr(), second.addr());
        assert!(
            tokio::time::timeout(HANG, TcpStream::connect(second.addr()))
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn silent_server_accepts_and_never_answers() {
        let server = SilentServer::start().await;
        let mut stream = TcpStream::connect(server.addr()).await.expect("connect");
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .expect("the request is accepted");
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(HANG, stream.read(&mut buf)).await;
        assert!(read.is_err(), "the silent server answered: {read:?}");
        assert_eq!(server.connections(), 1);
    }

    #[tokio::test]
    async fn silent_server_closes_connections_when_dropped() {
        let server = SilentServer::start().await;
        let mut stream = TcpStream::connect(server.addr()).await.expect("connect");
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(server);
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("the connection ends once the server is dropped");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }

    #[tokio::test]
    async fn closed_port_refuses() {
        let addr = closed_port();
        assert!(addr.ip().is_loopback());
        let error = TcpStream::connect(addr)
            .await
            .expect_err("nothing listens on a closed port");
        assert_eq!(error.kind(), std::io::ErrorKind::ConnectionRefused);
    }
}
