//! Opens a TCP connection to a resolved host, trying one address of each family at once and
//! recording how every attempt went.

use std::net::{IpAddr, SocketAddr};

use aiwatch_core::evidence::{ConnectAttempt, ConnectOutcome};
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// At most this many addresses are tried, families interleaved.
const MAX_ATTEMPTS: usize = 4;

/// Connects to `port` on the first of `addresses` that answers before `deadline`. The first
/// address of each family starts at once (both families where present); further addresses are
/// tried when those fail.
pub async fn connect(
    addresses: &[IpAddr],
    port: u16,
    deadline: Instant,
) -> (Option<TcpStream>, Vec<ConnectAttempt>) {
    let order = interleave(addresses);
    let mut attempts = Vec::new();
    let mut queue = order.into_iter().take(MAX_ATTEMPTS);
    let mut running = FuturesUnordered::new();
    // Start one of each family.
    let mut started_families = Vec::new();
    let mut pending = Vec::new();
    for addr in queue.by_ref() {
        if started_families.contains(&addr.is_ipv4()) {
            pending.push(addr);
        } else {
            started_families.push(addr.is_ipv4());
            running.push(attempt(SocketAddr::new(addr, port), deadline));
        }
        if started_families.len() == 2 {
            break;
        }
    }
    pending.extend(queue);
    let mut pending = pending.into_iter();
    while let Some((record, stream)) = running.next().await {
        attempts.push(record);
        if let Some(stream) = stream {
            return (Some(stream), attempts);
        }
        if let Some(next) = pending.next() {
            running.push(attempt(SocketAddr::new(next, port), deadline));
        }
    }
    (None, attempts)
}

async fn attempt(addr: SocketAddr, deadline: Instant) -> (ConnectAttempt, Option<TcpStream>) {
    let started = Instant::now();
    let result = tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await;
    let elapsed = Some(started.elapsed());
    let (outcome, stream) = match result {
        Err(_) => (ConnectOutcome::Timeout, None),
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            (ConnectOutcome::Connected, Some(stream))
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            (ConnectOutcome::Refused, None)
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::TimedOut => (ConnectOutcome::Timeout, None),
        Ok(Err(e)) if starved(&e) => (
            ConnectOutcome::MonitorStarved {
                error: e.to_string(),
            },
            None,
        ),
        Ok(Err(e)) => (
            ConnectOutcome::Failed {
                error: e.to_string(),
            },
            None,
        ),
    };
    (
        ConnectAttempt {
            address: addr,
            outcome,
            elapsed,
        },
        stream,
    )
}

/// Whether an error is this machine running out of something a probe needs — file
/// descriptors (EMFILE, ENFILE), buffers or memory (ENOBUFS, ENOMEM), local ports
/// (EADDRNOTAVAIL) — anywhere in its chain of sources.
pub fn starved(error: &(dyn std::error::Error + 'static)) -> bool {
    const CODES: [i32; 5] = [24, 23, 105, 12, 99];
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.raw_os_error().is_some_and(|c| CODES.contains(&c)) {
                return true;
            }
        }
        next = e.source();
    }
    let text = error.to_string();
    [
        "Too many open files",
        "No buffer space available",
        "Cannot allocate memory",
    ]
    .iter()
    .any(|m| text.contains(m))
}

/// Orders addresses v4, v6, v4, v6, … keeping each family's own order.
fn interleave(addresses: &[IpAddr]) -> Vec<IpAddr> {
    let v4: Vec<_> = addresses.iter().filter(|a| a.is_ipv4()).copied().collect();
    let v6: Vec<_> = addresses.iter().filter(|a| a.is_ipv6()).copied().collect();
    let mut out = Vec::with_capacity(addresses.len());
    for i in 0..v4.len().max(v6.len()) {
        out.extend(v4.get(i));
        out.extend(v6.get(i));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_alternate() {
        let a: Vec<IpAddr> = ["1.1.1.1", "1.0.0.1", "::1", "2.2.2.2"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let order: Vec<String> = interleave(&a).iter().map(ToString::to_string).collect();
        assert_eq!(order, ["1.1.1.1", "::1", "1.0.0.1", "2.2.2.2"]);
    }

    #[tokio::test]
    async fn refused_port_is_recorded_as_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let deadline = Instant::now() + std::time::Duration::from_secs(2);
        let (stream, attempts) = connect(&["127.0.0.1".parse().unwrap()], port, deadline).await;
        assert!(stream.is_none());
        assert_eq!(attempts[0].outcome, ConnectOutcome::Refused);
    }
}

#[cfg(test)]
mod starved_tests {
    use super::starved;

    #[test]
    fn exhausted_descriptors_ports_and_memory_are_the_machines_own_trouble() {
        for code in [24, 23, 105, 12, 99] {
            assert!(starved(&std::io::Error::from_raw_os_error(code)), "{code}");
        }
        assert!(
            !starved(&std::io::Error::from_raw_os_error(111)),
            "refused is the far side"
        );
        let wrapped = std::io::Error::other(std::io::Error::from_raw_os_error(24));
        assert!(starved(&wrapped), "found in the source chain");
    }
}
