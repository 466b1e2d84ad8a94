//! Serves the gateway on a bound listener until a shutdown future resolves: HTTP/1.1 with
//! keep-alive, a deadline for request headers against slow clients, and a grace period for
//! requests in flight.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::app::app;
use crate::canary;
use crate::gateway::Gateway;
use crate::Error;

/// Requests in flight get this long to finish after shutdown.
const GRACE: Duration = Duration::from_secs(10);

/// Runs the gateway (and its canaries) on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    gw: Arc<Gateway>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let router = app(gw.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let canaries = tokio::spawn(canary::run(gw.clone(), stop_rx));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(gw.settings.client_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, don't spin.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let service = TowerToHyperService::new(router.clone());
                let connection = http.serve_connection(TokioIo::new(stream), service);
                let watched = graceful.watch(connection);
                tokio::spawn(async move {
                    let _ = watched.await;
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(GRACE, graceful.shutdown()).await;
    canaries.abort();
    Ok(())
}
