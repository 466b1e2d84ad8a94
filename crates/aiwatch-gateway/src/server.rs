//! Serves the gateway on a bound listener until a shutdown future resolves: the shared inbound
//! edge (connection caps, a deadline for request headers against slow clients, a grace period
//! for requests in flight) in front of the app — its own HTTP/1.1 loop for the forwarding
//! endpoints, hyper for the rest — with the canaries running alongside.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::app::{app, Edge, Forwarding};
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
    let (stop_tx, stop_rx) = watch::channel(false);
    let canaries = tokio::spawn(canary::run(gw.clone(), stop_rx));
    edge(listener, gw, shutdown).await;
    let _ = stop_tx.send(true);
    canaries.abort();
    Ok(())
}

/// Serves the gateway's HTTP edge on `listener` until `shutdown` resolves, without starting
/// canaries: for more listeners of the same gateway (one per thread, say) next to [`run`].
pub async fn edge(
    listener: TcpListener,
    gw: Arc<Gateway>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let router = app(gw.clone());
    let limits = aiwatch_inbound::Limits {
        header_timeout: gw.settings.client_timeout,
        grace: GRACE,
        ..aiwatch_inbound::Limits::default()
    };
    let forwarding = Arc::new(Forwarding::new(gw.clone()));
    aiwatch_inbound::serve_fast(
        listener,
        forwarding,
        move |peer| Edge::new(gw.clone(), router.clone(), peer),
        limits,
        shutdown,
    )
    .await;
}
