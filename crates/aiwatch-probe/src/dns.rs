//! Resolves host names through the system resolver or a chosen DNS server, and tells real
//! answers from a filter's sinkhole.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use aiwatch_core::evidence::DnsOutcome;
use aiwatch_core::network::sinkhole_kind;
use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;
use tokio::time::Instant;

use crate::Error;

/// Which resolver answers the lookups of one check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsChoice {
    /// The system's resolver config (/etc/resolv.conf) and hosts file.
    System,
    /// One DNS server, asked over UDP and TCP (`--dns-server ADDR[:PORT]`).
    Server(SocketAddr),
}

impl DnsChoice {
    /// Parses `--dns-server`: an IP with an optional port (53 by default), `[v6]:port` too.
    pub fn parse_server(raw: &str) -> Result<Self, Error> {
        if let Ok(addr) = raw.parse::<SocketAddr>() {
            return Ok(Self::Server(addr));
        }
        if let Ok(ip) = raw.trim_matches(['[', ']']).parse::<IpAddr>() {
            return Ok(Self::Server(SocketAddr::new(ip, 53)));
        }
        Err(Error::Resolver(format!(
            "`{raw}` is not a DNS server address; give an IP with an optional port, like 1.1.1.1, 127.0.0.1:5353 or [::1]:53"
        )))
    }
}

/// A resolver for one check: built once, shared by every lookup of the check.
#[derive(Clone)]
pub struct Dns {
    resolver: TokioResolver,
}

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dns")
    }
}

impl Dns {
    /// Builds a resolver; `attempt_timeout` bounds each query (the caller's deadline bounds the
    /// whole lookup).
    pub fn new(choice: &DnsChoice, attempt_timeout: Duration) -> Result<Self, Error> {
        let provider = TokioRuntimeProvider::default();
        let mut builder = match choice {
            DnsChoice::System => TokioResolver::builder(provider).map_err(|e| {
                Error::Resolver(format!("cannot read the system resolver config: {e}"))
            })?,
            DnsChoice::Server(addr) => {
                let mut server = NameServerConfig::udp_and_tcp(addr.ip());
                for connection in &mut server.connections {
                    connection.port = addr.port();
                }
                let mut builder = TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![server]),
                    provider,
                );
                builder.options_mut().use_hosts_file = ResolveHosts::Never;
                builder
            }
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.timeout = attempt_timeout;
        opts.attempts = 1;
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        opts.cache_size = 64;
        let resolver = builder
            .build()
            .map_err(|e| Error::Resolver(format!("cannot build the resolver: {e}")))?;
        Ok(Self { resolver })
    }

    /// Looks `host` up before `deadline`; an IP literal needs no lookup.
    pub async fn lookup(&self, host: &str, deadline: Instant) -> (DnsOutcome, Vec<IpAddr>) {
        let bare = host.trim_matches(['[', ']']);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return (
                DnsOutcome::Skipped {
                    reason: "an IP address, no lookup needed".into(),
                },
                vec![ip],
            );
        }
        // A trailing dot stops search-domain expansion: "api.openai.com" means exactly that.
        let fqdn = if host.ends_with('.') {
            host.to_owned()
        } else {
            format!("{host}.")
        };
        let result = tokio::time::timeout_at(deadline, self.resolver.lookup_ip(fqdn)).await;
        match result {
            Err(_) => (DnsOutcome::Timeout, Vec::new()),
            Ok(Err(e)) if e.is_nx_domain() => (DnsOutcome::NxDomain, Vec::new()),
            Ok(Err(e)) if e.is_no_records_found() => (DnsOutcome::NoRecords, Vec::new()),
            Ok(Err(hickory_resolver::net::NetError::Timeout)) => (DnsOutcome::Timeout, Vec::new()),
            Ok(Err(e)) if crate::connect::starved(&e) => (
                DnsOutcome::MonitorStarved {
                    error: e.to_string(),
                },
                Vec::new(),
            ),
            Ok(Err(e)) => (
                DnsOutcome::Failed {
                    error: e.to_string(),
                },
                Vec::new(),
            ),
            Ok(Ok(lookup)) => {
                let mut addresses: Vec<IpAddr> = lookup.iter().collect();
                addresses.dedup();
                classify_answers(host, addresses)
            }
        }
    }
}

/// Splits answers into usable ones and sinkholes; all-sinkhole answers are reported as such and
/// leave nothing to connect to (a block page's address is no place to send a probe).
fn classify_answers(host: &str, addresses: Vec<IpAddr>) -> (DnsOutcome, Vec<IpAddr>) {
    if addresses.is_empty() {
        return (DnsOutcome::NoRecords, Vec::new());
    }
    let kinds: Vec<_> = addresses.iter().map(|a| sinkhole_kind(host, *a)).collect();
    if let Some(Some(kind)) = kinds.iter().find(|k| k.is_some()) {
        if kinds.iter().all(Option::is_some) {
            return (
                DnsOutcome::Sinkhole {
                    addresses,
                    kind: *kind,
                },
                Vec::new(),
            );
        }
    }
    let usable: Vec<IpAddr> = addresses
        .iter()
        .zip(&kinds)
        .filter(|(_, k)| k.is_none())
        .map(|(a, _)| *a)
        .collect();
    (DnsOutcome::Resolved { addresses }, usable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_server_flag_accepts_ip_with_or_without_port() {
        assert_eq!(
            DnsChoice::parse_server("1.1.1.1").unwrap(),
            DnsChoice::Server("1.1.1.1:53".parse().unwrap())
        );
        assert_eq!(
            DnsChoice::parse_server("[::1]:5353").unwrap(),
            DnsChoice::Server("[::1]:5353".parse().unwrap())
        );
        assert!(DnsChoice::parse_server("dns.google").is_err());
    }

    #[test]
    fn mixed_answers_keep_only_real_addresses() {
        let (outcome, usable) = classify_answers(
            "api.openai.com",
            vec![
                "0.0.0.0".parse().unwrap(),
                "162.159.140.245".parse().unwrap(),
            ],
        );
        assert!(matches!(outcome, DnsOutcome::Resolved { .. }));
        assert_eq!(usable, vec!["162.159.140.245".parse::<IpAddr>().unwrap()]);
        let (outcome, usable) =
            classify_answers("api.openai.com", vec!["0.0.0.0".parse().unwrap()]);
        assert!(matches!(outcome, DnsOutcome::Sinkhole { .. }));
        assert!(usable.is_empty());
    }
}
