//! Benchmarks the check every relayed answer gets on the hot path (is it the API's JSON, with
//! its endpoint's field, and what usage does it report): a chat completion as OpenAI writes it
//! (compact, and pretty-printed as its API sends it), and an embeddings answer of 1,536 floats.
//!
//! Run: `cargo bench -p aiwatch-gateway --bench answer_peek -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use aiwatch_gateway::dialect::openai::peek_answer;
use aiwatch_gateway::dialect::Endpoint;
use bytes::Bytes;
use criterion::{Criterion, Throughput};

/// A non-streamed chat completion in the order OpenAI writes its fields.
const CHAT: &str = r#"{"id":"chatcmpl-bench-primary-AaWtestCompletion01","object":"chat.completion","created":1733000000,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there, how are you?","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":24,"completion_tokens":7,"total_tokens":31,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_0ba0d124f1"}"#;

fn embeddings_answer() -> String {
    let floats: Vec<String> = (0..1536)
        .map(|i| format!("{:.9}", ((i * 7919) % 2000) as f64 / 1000.0 - 1.0))
        .collect();
    format!(
        r#"{{"object":"list","data":[{{"object":"embedding","index":0,"embedding":[{}]}}],"model":"text-embedding-3-small","usage":{{"prompt_tokens":8,"total_tokens":8}}}}"#,
        floats.join(",")
    )
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    let pretty = serde_json::to_string_pretty(
        &serde_json::from_str::<serde_json::Value>(CHAT).expect("the chat answer is JSON"),
    )
    .expect("serializes");
    let cases = [
        ("chat compact", Endpoint::ChatCompletions, CHAT.to_owned()),
        ("chat pretty", Endpoint::ChatCompletions, pretty),
        ("embeddings 1536", Endpoint::Embeddings, embeddings_answer()),
    ];
    let mut group = criterion.benchmark_group("peek_answer");
    for (name, endpoint, text) in cases {
        let bytes = Bytes::from(text);
        assert!(
            peek_answer(endpoint, &bytes).is_ok_and(|(_, tokens)| tokens.is_some()),
            "{name} is read with its usage"
        );
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| peek_answer(black_box(endpoint), black_box(&bytes)))
        });
    }
    group.finish();
    criterion.final_summary();
}
