//! Proves that a real resolver (hickory-resolver, which aiwatch-probe uses) talks to `FakeDns`:
//! addresses, NXDOMAIN, empty answers, silence, and the TCP fallback after a truncated UDP reply.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use aiwatch_testkit::{DnsAnswer, FakeDns};
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;

fn resolver(server: SocketAddr) -> TokioResolver {
    let mut udp = ConnectionConfig::udp();
    udp.port = server.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = server.port();
    let name_server = NameServerConfig::new(server.ip(), true, vec![udp, tcp]);
    let config = ResolverConfig::from_name_servers(vec![name_server]);
    let mut builder = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
    let options = builder.options_mut();
    options.timeout = Duration::from_millis(300);
    options.attempts = 1;
    options.cache_size = 0;
    builder.build().expect("resolver builds")
}

#[tokio::test]
async fn hickory_resolver_gets_both_families() {
    let dns = FakeDns::start().await;
    let v4 = IpAddr::V4(Ipv4Addr::new(162, 159, 140, 245));
    let v6 = IpAddr::V6(Ipv6Addr::new(0x2606, 0x4700, 0, 0, 0, 0, 0xa29f, 0x8cf5));
    dns.set("chatgpt.com", DnsAnswer::Addresses(vec![v4, v6]));
    let lookup = resolver(dns.addr())
        .lookup_ip("chatgpt.com.")
        .await
        .expect("lookup succeeds");
    let mut found: Vec<IpAddr> = lookup.iter().collect();
    found.sort();
    assert_eq!(found, vec![v4, v6]);
    assert!(dns.queries() >= 2, "A and AAAA went to the fake server");
}

#[tokio::test]
async fn hickory_resolver_sees_nxdomain_and_no_records() {
    let dns = FakeDns::start().await;
    dns.set("empty.example", DnsAnswer::NoRecords);
    let resolver = resolver(dns.addr());
    let error = resolver
        .lookup_ip("missing.example.")
        .await
        .expect_err("unknown names do not resolve");
    assert!(error.is_nx_domain(), "{error:?}");
    let error = resolver
        .lookup_ip("empty.example.")
        .await
        .expect_err("no records");
    assert!(
        error.is_no_records_found() && !error.is_nx_domain(),
        "{error:?}"
    );
}

#[tokio::test]
async fn hickory_resolver_times_out_on_silence() {
    let dns = FakeDns::start().await;
    dns.set("quiet.example", DnsAnswer::Silent);
    let result = tokio::time::timeout(
        Duration::from_secs(5),
        resolver(dns.addr()).lookup_ip("quiet.example."),
    )
    .await
    .expect("the resolver gives up on its own");
    assert!(result.is_err(), "{result:?}");
    assert!(dns.queries() >= 1);
}

#[tokio::test]
async fn hickory_resolver_falls_back_to_tcp_for_big_answers() {
    let dns = FakeDns::start().await;
    let many: Vec<IpAddr> = (1..=120)
        .map(|i| IpAddr::V4(Ipv4Addr::new(198, 51, 100, i)))
        .collect();
    dns.set("big.example", DnsAnswer::Addresses(many.clone()));
    let lookup = resolver(dns.addr())
        .lookup_ip("big.example.")
        .await
        .expect("lookup succeeds over TCP");
    let mut found: Vec<IpAddr> = lookup.iter().collect();
    found.sort();
    assert_eq!(found, many);
}
