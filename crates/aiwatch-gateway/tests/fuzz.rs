//! Fuzzing what the gateway reads from upstreams and clients: real-shaped streams of both
//! dialects and whole answers with a span replaced by junk and fed in random pieces, and client
//! bodies of arbitrary bytes. Nothing may panic, and a stream that is not whole never ends like
//! one. `cargo xtask fuzz --seconds N` runs these for longer.

use aiwatch_gateway::body::RequestBody;
use aiwatch_gateway::dialect::anthropic::{
    error_to_openai, from_messages_response, StreamTranslator,
};
use aiwatch_gateway::dialect::StreamDialect;
use aiwatch_gateway::relay::StreamRelay;
use aiwatch_testkit::canned;
use proptest::prelude::*;

fn streams() -> Vec<(bool, Vec<u8>)> {
    [
        (false, canned::openai_stream(true)),
        (false, canned::openai_stream_with_usage()),
        (true, canned::anthropic_stream(true)),
        (true, canned::anthropic_stream_overloaded()),
    ]
    .into_iter()
    .filter_map(|(anthropic, reply)| reply.body_bytes().map(|b| (anthropic, b)))
    .collect()
}

fn mutate(seed: &[u8], at: prop::sample::Index, cut: usize, junk: &[u8]) -> Vec<u8> {
    let start = at.index(seed.len().max(1)).min(seed.len());
    let end = (start + cut).min(seed.len());
    let mut out = seed[..start].to_vec();
    out.extend_from_slice(junk);
    out.extend_from_slice(&seed[end..]);
    out
}

/// Feeds `bytes` to a relay in pieces cut at `cuts`; the relayed text, and whether it ended
/// cleanly.
fn relay(anthropic: bool, bytes: &[u8], cuts: &[prop::sample::Index]) -> (String, bool) {
    let dialect = if anthropic {
        StreamDialect::Anthropic(Box::new(StreamTranslator::new(0)))
    } else {
        StreamDialect::OpenAi
    };
    let mut relay = StreamRelay::new(dialect, true);
    let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
    points.push(bytes.len());
    points.sort_unstable();
    let mut out = String::new();
    let mut from = 0;
    for to in points {
        match relay.feed(&bytes[from..to]) {
            Ok(r) => out.push_str(&r.out),
            Err(_) => return (out, false),
        }
        from = to;
    }
    match relay.finish() {
        Ok(r) => {
            out.push_str(&r.out);
            (out, true)
        }
        Err(_) => (out, false),
    }
}

proptest! {
    #[test]
    fn streams_with_junk_in_them_never_panic_the_relay(
        which in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        cut in 0usize..48,
        junk in prop::collection::vec(any::<u8>(), 0..48),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let streams = streams();
        prop_assume!(!streams.is_empty());
        let (anthropic, seed) = &streams[which.index(streams.len())];
        let (out, clean) = relay(*anthropic, &mutate(seed, at, cut, &junk), &cuts);
        if !clean {
            prop_assert!(!out.ends_with("data: [DONE]\n\n"), "a broken stream never ends like a whole one: {out}");
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_relay_of_either_dialect(
        bytes in prop::collection::vec(any::<u8>(), 0..1024),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let _ = relay(false, &bytes, &cuts);
        let _ = relay(true, &bytes, &cuts);
    }

    #[test]
    fn answers_and_errors_with_junk_in_them_never_panic_the_translation(
        at in any::<prop::sample::Index>(),
        cut in 0usize..48,
        junk in prop::collection::vec(any::<u8>(), 0..48),
        status in 400u16..600,
    ) {
        for seed in [canned::anthropic_message("hello"), canned::anthropic_overloaded(), canned::openai_401()]
            .iter()
            .filter_map(aiwatch_testkit::Reply::body_bytes)
        {
            let body = mutate(&seed, at, cut, &junk);
            let (out_status, error) = error_to_openai(status, &body);
            prop_assert!((400..=599).contains(&out_status));
            prop_assert!(error["error"]["message"].is_string());
            if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&body) {
                let _ = from_messages_response(&value, 0);
            }
        }
    }

    #[test]
    fn client_bodies_of_arbitrary_bytes_never_panic_the_reader(
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
    ) {
        if let Ok(body) = RequestBody::parse(&bytes) {
            let rewritten = body.with_model("m", &[]);
            prop_assert!(serde_json::from_slice::<serde_json::Value>(&rewritten).is_ok());
        }
    }
}
