//! Fuzzing what the probe reads from the network: provider error bodies, Cloudflare pages and
//! model lists (the signatures every answer is judged by, and the scrubber every answer passes),
//! and DNS replies read through the probe's resolver. Inputs are arbitrary bytes and the test
//! kit's real-shaped payloads with a span replaced by junk. `cargo xtask fuzz --seconds N` runs
//! every `never_panic` property of the workspace for longer.

use std::time::Duration;

use aiwatch_core::scrub::scrub;
use aiwatch_core::signatures::{api_cause, detect_markers, web_cause, ProviderError};
use aiwatch_probe::dns::Dns;
use aiwatch_probe::DnsChoice;
use aiwatch_testkit::{canned, DnsAnswer, FakeDns};
use proptest::prelude::*;

/// The payloads a provider or its edge really sends, as the test kit serves them.
fn seeds() -> Vec<Vec<u8>> {
    [
        canned::openai_401(),
        canned::openai_insufficient_quota(),
        canned::openai_rate_limited(),
        canned::openai_region_unsupported(),
        canned::openai_model_not_found(),
        canned::openai_503_overloaded(),
        canned::openai_models(),
        canned::anthropic_overloaded(),
        canned::anthropic_models(),
        canned::anthropic_stream(true),
        canned::openai_stream(true),
        canned::gemini_models(),
        canned::cloudflare_challenge(),
        canned::cloudflare_block_1020(),
        canned::cloudflare_rate_limited_1015(),
        canned::cloudflare_origin_error(522),
    ]
    .iter()
    .filter_map(aiwatch_testkit::Reply::body_bytes)
    .collect()
}

/// Everything that judges an answer, on `body`, under every status and framing it could come in.
fn judge_all(body: &[u8]) {
    for status in [200u16, 400, 401, 403, 404, 413, 429, 500, 502, 503, 529] {
        for (content_type, cf) in [
            (Some("application/json"), None),
            (Some("text/html; charset=UTF-8"), Some("challenge")),
            (None, None),
        ] {
            let markers = detect_markers(status, content_type, cf, body);
            let error = ProviderError::parse(status, body);
            for key_sent in [true, false] {
                let _ = api_cause(status, error.as_ref(), &markers, key_sent);
            }
            let _ = web_cause(status, &markers);
        }
    }
    let text = String::from_utf8_lossy(body);
    let clean = scrub(&text, &["sk-fuzz-key-0123456789"]);
    assert!(!clean.contains("sk-fuzz-key-0123456789"));
}

fn mutate(seed: &[u8], at: prop::sample::Index, cut: usize, junk: &[u8]) -> Vec<u8> {
    let start = at.index(seed.len().max(1)).min(seed.len());
    let end = (start + cut).min(seed.len());
    let mut body = seed[..start].to_vec();
    body.extend_from_slice(junk);
    body.extend_from_slice(&seed[end..]);
    body
}

/// A well-formed reply to an A query for `fuzz.test` with one loopback answer (its id is
/// rewritten by the fake server), to mutate.
fn dns_reply_seed() -> Vec<u8> {
    let mut m = vec![0, 0, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
    m.extend_from_slice(&[
        4, b'f', b'u', b'z', b'z', 4, b't', b'e', b's', b't', 0, 0, 1, 0, 1,
    ]);
    m.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1]);
    m
}

/// DNS cases are slow (each may wait out a query timeout): fewer of them unless asked.
fn dns_cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12)
}

proptest! {
    #[test]
    fn signatures_never_panic_on_arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..4096)) {
        judge_all(&body);
    }

    #[test]
    fn signatures_never_panic_on_real_payloads_with_junk_in_them(
        which in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        cut in 0usize..64,
        junk in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let seeds = seeds();
        prop_assume!(!seeds.is_empty());
        let seed = &seeds[which.index(seeds.len())];
        judge_all(&mutate(seed, at, cut, &junk));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(dns_cases()))]

    #[test]
    fn dns_replies_never_panic_the_resolver_and_end_by_the_deadline(
        garbage in any::<bool>(),
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        at in any::<prop::sample::Index>(),
        cut in 0usize..16,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let dns = FakeDns::start().await;
            let reply = if garbage { bytes.clone() } else { mutate(&dns_reply_seed(), at, cut, &bytes[..bytes.len().min(8)]) };
            dns.set("fuzz.test", DnsAnswer::Raw(reply));
            let resolver = Dns::new(&DnsChoice::Server(dns.addr()), Duration::from_millis(150)).unwrap();
            let deadline = tokio::time::Instant::now() + Duration::from_millis(400);
            let lookup = tokio::time::timeout(Duration::from_secs(5), resolver.lookup("fuzz.test", deadline)).await;
            assert!(lookup.is_ok(), "the lookup ends by its deadline");
        });
    }
}

#[tokio::test]
async fn the_unmutated_dns_seed_resolves() {
    let dns = FakeDns::start().await;
    dns.set("fuzz.test", DnsAnswer::Raw(dns_reply_seed()));
    let resolver = Dns::new(&DnsChoice::Server(dns.addr()), Duration::from_millis(500)).unwrap();
    let (outcome, addresses) = resolver
        .lookup(
            "fuzz.test",
            tokio::time::Instant::now() + Duration::from_secs(2),
        )
        .await;
    assert_eq!(
        addresses,
        vec![std::net::IpAddr::from([127, 0, 0, 1])],
        "{outcome:?}"
    );
}
