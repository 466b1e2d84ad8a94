//! Serves the gateway on a bound listener until a shutdown future resolves: the shared inbound
//! edge (connection caps, a deadline for request headers against slow clients, a grace period
//! for requests in flight) in front of the app — its own HTTP/1.1 loop for the forwarding
//! endpoints, hyper for the rest — with the canaries and the usage watch running alongside.

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

/// How often the usage watch judges every key's tokens per minute.
const USAGE_TICK: Duration = Duration::from_secs(1);

/// Runs the gateway (and its canaries and usage watch) on `listener` until `shutdown`
/// resolves.
pub async fn run(
    listener: TcpListener,
    gw: Arc<Gateway>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let canaries = tokio::spawn(canary::run(gw.clone(), stop_rx));
    let usage = tokio::spawn(watch_usage(gw.clone()));
    edge(listener, gw, shutdown).await;
    let _ = stop_tx.send(true);
    canaries.abort();
    usage.abort();
    Ok(())
}

/// Every [`USAGE_TICK`], judges each key's usage off the request path (the spike gauges, and
/// the log line of a spike that starts, follow).
async fn watch_usage(gw: Arc<Gateway>) {
    let mut tick = tokio::time::interval(USAGE_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        gw.judge_usage();
    }
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
