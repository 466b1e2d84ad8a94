//! Inbound HTTP: the one accept loop every listening surface runs (`serve`'s API and dashboard,
//! the gateway). It caps open connections overall and per client address, closes a connection
//! whose request headers do not arrive in time (a slowloris client, or a keep-alive connection
//! left idle), waits out accept errors such as running out of file descriptors instead of
//! spinning on them, hands each request its client address (axum's `ConnectInfo`), and stops
//! gracefully. Requests go to hyper, or, for the routes a surface answers itself, to the own
//! HTTP/1.1 loop in [`fast`] first.

pub mod fast;
pub mod throttle;

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tower_service::Service;

/// How much of the machine the listener may take from clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Open connections at most; past it, new ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// Open connections at most from one client address; past it, new ones are closed at once.
    pub per_address: usize,
    /// Request headers must be complete this long after the connection opens or after the last
    /// response (an idle keep-alive connection is closed after it).
    pub header_timeout: Duration,
    /// Requests in flight get this long to finish after the stop.
    pub grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            per_address: 256,
            header_timeout: Duration::from_secs(10),
            grace: Duration::from_secs(10),
        }
    }
}

/// Open connections per client address.
#[derive(Default)]
struct PerAddress(Mutex<HashMap<IpAddr, usize>>);

impl PerAddress {
    /// Counts one more connection from `ip`, unless it already has `limit`.
    fn admit(self: &Arc<Self>, ip: IpAddr, limit: usize) -> Option<AddressSlot> {
        let mut open = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(ip).or_insert(0);
        if *count >= limit.max(1) {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            table: self.clone(),
            ip,
        })
    }
}

/// One admitted connection's place in its address's count; freed on drop.
struct AddressSlot {
    table: Arc<PerAddress>,
    ip: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.table.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` resolves, then lets requests
/// in flight finish for `limits.grace`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) {
    serve_with(
        listener,
        move |peer| with_peer(router.clone(), peer),
        limits,
        shutdown,
    )
    .await;
}

/// What the general (hyper) server runs for one connection: it answers every request, never
/// fails, and it and its answers may move between threads.
pub trait GeneralService:
    hyper::service::Service<
        hyper::Request<hyper::body::Incoming>,
        Response = axum::response::Response,
        Error = std::convert::Infallible,
        Future: Send + 'static,
    > + Send
    + 'static
{
}

impl<S> GeneralService for S where
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
            Future: Send + 'static,
        > + Send
        + 'static
{
}

/// Serves the service `make` builds for each connection (it is told the client's address) on
/// `listener` within `limits` until `shutdown` resolves, then lets requests in flight finish
/// for `limits.grace`. For a surface that answers some requests itself, without a router.
pub async fn serve_with<M, S>(
    listener: TcpListener,
    make: M,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) where
    M: Fn(SocketAddr) -> S,
    S: GeneralService,
{
    let http = general_server(&limits);
    accept_loop(
        listener,
        limits,
        shutdown,
        |stream, peer, _stop, watcher| {
            let connection = http.serve_connection(TokioIo::new(stream), make(peer));
            async move {
                let _ = watcher.watch(connection).await;
            }
        },
    )
    .await;
}

/// Like [`serve_with`], but the requests `fast` names are read, answered and written by this
/// crate's own HTTP/1.1 loop ([`fast`]); a connection's first request it does not name, and
/// everything after, goes to the service `make` builds.
pub async fn serve_fast<F, M, S>(
    listener: TcpListener,
    fast: Arc<F>,
    make: M,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) where
    F: fast::FastPath,
    M: Fn(SocketAddr) -> S,
    S: GeneralService,
{
    let http = general_server(&limits);
    let header_timeout = limits.header_timeout;
    accept_loop(listener, limits, shutdown, |stream, peer, stop, watcher| {
        fast::drive(
            stream,
            peer,
            fast.clone(),
            (http.clone(), make(peer)),
            header_timeout,
            stop,
            watcher,
        )
    })
    .await;
}

/// The hyper server every connection (or, under [`serve_fast`], every request the fast loop
/// does not take) is served by.
fn general_server(limits: &Limits) -> hyper::server::conn::http1::Builder {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    http
}

/// Accepts connections within `limits` and runs `connection` for each (told the client's
/// address, a stop signal and a graceful-shutdown watcher to hold or watch with) until
/// `shutdown` resolves; then signals the stop and waits up to `limits.grace` for every
/// connection to end.
async fn accept_loop<C, Fut>(
    listener: TcpListener,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
    mut connection: C,
) where
    C: FnMut(TcpStream, SocketAddr, watch::Receiver<bool>, Watcher) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let capacity = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let per_address = Arc::new(PerAddress::default());
    let graceful = GracefulShutdown::new();
    let (stop_tx, stop_rx) = watch::channel(false);
    let floor = tokio::spawn(timer_floor());
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = capacity.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait, don't spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = per_address.admit(peer.ip(), limits.per_address) else {
            tracing::debug!(peer = %peer, "too many connections from this address; closed");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let served = connection(stream, peer, stop_rx.clone(), graceful.watcher());
        tokio::spawn(async move {
            served.await;
            drop((permit, slot));
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(limits.grace, graceful.shutdown()).await;
    floor.abort();
}

/// How often [`timer_floor`] ticks: shorter than any deadline a request sets.
const FLOOR_TICK: Duration = Duration::from_secs(1);

/// Keeps a timer due within [`FLOOR_TICK`] on the runtime. Tokio's timer wakes its runtime
/// (an eventfd write, and one more trip through epoll) whenever a deadline is set earlier than
/// the earliest one it already waits for; every request sets one (its header deadline, and the
/// gateway its upstream's), so without a nearer timer each request would cost that wake-up.
/// One tick a second is far cheaper.
async fn timer_floor() {
    let mut tick = tokio::time::interval(FLOOR_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
    }
}

/// The router as a hyper service that tells each request its client address.
fn with_peer(
    router: Router,
    peer: SocketAddr,
) -> impl hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let mut router = router.clone();
        async move { router.call(request.map(axum::body::Body::new)).await }
    })
}
