//! `cargo xtask e2e sdk`: the official `openai` Python SDK against `aiwatch gateway`.
//!
//! Eight loopback fakes stand for the upstreams of eight routes. Phase `basics` (all healthy)
//! covers chat plain and streamed, embeddings, the model list, the Anthropic translation and
//! the errors an SDK user sees; then the fakes check what the gateway sent them (their own keys,
//! the upstream model names, Anthropic's request shape, no retry after a 400). Phase `failover`
//! makes three primaries fail after two good answers — 503, a hang, Anthropic's 529 — and every
//! request must still succeed via the next upstream; `/admin/upstreams` must then show them
//! tripped. Then the primaries heal, canaries close their breakers, and phase `recovered`
//! finds the traffic back on them.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aiwatch_testkit::{canned, FakeServer, Reply, Seen};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::{artifacts, require_subcommand, Gateway, Venv, CLIENT_KEY, OPENAI, OTHER_CLIENT_KEY};

/// The keys the gateway sends upstream (from the variables the config names).
const OPENAI_KEY: &str = "sk-fake-openai-e2e";
const ANTHROPIC_KEY: &str = "sk-ant-fake-e2e";
/// Part of the user message of every request the Python side sends, so the fakes can tell
/// clients' requests from the gateway's own (canaries).
const CLIENT_MARK: &str = "Say hello.";
/// How long one phase's script may run.
const PHASE_TIMEOUT: Duration = Duration::from_secs(120);
/// The route aliases of the config, sorted.
const ROUTES: [&str; 8] = [
    "busy", "claude", "embed", "fragile", "smart", "stalling", "steady", "strict",
];

pub async fn sdk(binary: &Path) -> Result<()> {
    require_subcommand(binary, "gateway")?;
    let venv = Venv::ensure(&[OPENAI])?;
    let artifacts = artifacts("sdk")?;
    let fakes = Fakes::start().await;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, fakes.config())?;
    std::fs::copy(&config, artifacts.join("gateway.toml"))?;
    let mut gateway = Gateway::start(
        binary,
        &config,
        &[],
        &[
            ("FAKE_OPENAI_KEY", OPENAI_KEY),
            ("FAKE_ANTHROPIC_KEY", ANTHROPIC_KEY),
        ],
        &artifacts.join("gateway.log"),
    )
    .await?;
    let base_url = format!("{}/v1", gateway.url);
    let routes = ROUTES.join(",");
    let env = [
        ("AIWATCH_GATEWAY_URL", base_url.as_str()),
        ("AIWATCH_GATEWAY_KEY", CLIENT_KEY),
        ("AIWATCH_ROUTES", routes.as_str()),
    ];
    println!(
        "e2e sdk: gateway at {}, config in {}",
        gateway.url,
        artifacts.join("gateway.toml").display()
    );

    // A failed phase does not stop the suite: the next ones may tell more.
    let mut failures = Vec::new();
    let mut phase = |name: &str, outcome: Result<()>| match outcome {
        Ok(()) => println!("e2e sdk: {name} passed"),
        Err(e) => {
            println!("e2e sdk: {name} FAILED: {e:#}");
            failures.push(format!("{name}: {e:#}"));
        }
    };

    let basics = venv
        .run(
            "sdk_compat.py",
            &["basics"],
            &env,
            PHASE_TIMEOUT,
            &artifacts.join("basics.txt"),
        )
        .await
        .map(drop);
    phase("phase basics (python)", basics);
    phase("what the upstreams received", fakes.verify_requests());
    gateway.still_running()?;

    fakes.start_failing();
    let failover = venv
        .run(
            "sdk_compat.py",
            &["failover"],
            &env,
            PHASE_TIMEOUT,
            &artifacts.join("failover.txt"),
        )
        .await
        .map(drop);
    phase("phase failover (python)", failover);
    phase(
        "/admin/upstreams after failover",
        admin_after_failover(&gateway.url, &artifacts).await,
    );
    gateway.still_running()?;

    fakes.heal();
    let recovered = wait_until_recovered(&gateway.url).await;
    let closed = recovered.is_ok();
    phase("breakers close after the primaries heal", recovered);
    if closed {
        let back = venv
            .run(
                "sdk_compat.py",
                &["recovered"],
                &env,
                PHASE_TIMEOUT,
                &artifacts.join("recovered.txt"),
            )
            .await
            .map(drop);
        phase("phase recovered (python)", back);
    }
    gateway.still_running()?;
    phase(
        "per-key limits (python + /admin/usage)",
        key_limits(binary, &venv, &fakes, &artifacts, &env).await,
    );

    if !failures.is_empty() {
        bail!(
            "e2e sdk: {} of the steps failed (logs in {}):\n- {}",
            failures.len(),
            artifacts.display(),
            failures.join("\n- ")
        );
    }
    println!(
        "e2e sdk: the openai SDK works against the gateway; logs in {}",
        artifacts.display()
    );
    Ok(())
}

/// Requests a minute each key may send to the gateway of the limits phase.
const KEY_LIMIT: u32 = 3;

/// A second gateway on the same fakes that allows each key [`KEY_LIMIT`] requests a minute:
/// the SDK meets the 429 past it, and `/admin/usage` shows the key at its limit.
async fn key_limits(
    binary: &Path,
    venv: &Venv,
    fakes: &Fakes,
    artifacts: &Path,
    env: &[(&str, &str)],
) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("limited.toml");
    let text = fakes.config().replacen(
        "[gateway]\n",
        &format!("[gateway]\nkey_requests_per_minute = {KEY_LIMIT}\n"),
        1,
    );
    std::fs::write(&config, &text)?;
    std::fs::copy(&config, artifacts.join("limited.toml"))?;
    let mut gateway = Gateway::start(
        binary,
        &config,
        &[],
        &[("FAKE_ANTHROPIC_KEY", ANTHROPIC_KEY)],
        &artifacts.join("limited.log"),
    )
    .await?;
    let base_url = format!("{}/v1", gateway.url);
    let limit = KEY_LIMIT.to_string();
    let mut env: Vec<(&str, &str)> = env
        .iter()
        .filter(|(name, _)| *name != "AIWATCH_GATEWAY_URL")
        .copied()
        .collect();
    env.extend([
        ("AIWATCH_GATEWAY_URL", base_url.as_str()),
        ("AIWATCH_GATEWAY_OTHER_KEY", OTHER_CLIENT_KEY),
        ("AIWATCH_KEY_LIMIT", limit.as_str()),
    ]);
    venv.run(
        "sdk_compat.py",
        &["limits"],
        &env,
        PHASE_TIMEOUT,
        &artifacts.join("limits.txt"),
    )
    .await?;
    let (status, body) =
        super::http_get(&format!("{}/admin/usage", gateway.url), Some(CLIENT_KEY)).await?;
    if status != 200 {
        bail!("/admin/usage answered {status}: {body}");
    }
    let usage: Value = serde_json::from_str(&body).context("/admin/usage is not JSON")?;
    std::fs::write(
        artifacts.join("limited-usage.json"),
        serde_json::to_vec_pretty(&usage)?,
    )?;
    let limits = &usage["limits"];
    if limits["requests_per_minute"] != KEY_LIMIT {
        bail!("/admin/usage shows no request limit of {KEY_LIMIT}: {limits}");
    }
    let first = &limits["keys"]["key-1"];
    if first["requests_left"] != 0 || first["requests_last_minute"] != KEY_LIMIT {
        bail!("/admin/usage does not show key-1 at its limit: {limits}");
    }
    gateway.still_running()
}

// === the fakes ===

/// What each fake says in a plain (not streamed) answer; streams say "Hello! How can I help?".
const OPENAI_TEXT: &str = "Hello from fake-openai";
const CLAUDE_TEXT: &str = "Hello from fake-claude";
const SLOW_TEXT: &str = "Hello from fake-slow";
const BUSY_TEXT: &str = "Hello from fake-busy";
const BACKUP_TEXT: &str = "Hello from fake-backup";
const CUT_TEXT: &str = "Hello from fake-cut";

struct Fakes {
    /// `fake-openai`: primary of `smart` (starts answering 503), the only upstream of `embed`.
    openai: FakeServer,
    /// `fake-claude` (Anthropic): backup of `smart`, the only upstream of `claude`.
    claude: FakeServer,
    /// `fake-slow`: primary of `steady` (starts hanging; its timeout is 2 s).
    slow: FakeServer,
    /// `fake-busy` (Anthropic): primary of `busy` (starts answering 529).
    busy: FakeServer,
    /// `fake-backup`: backup of `steady`, `busy` and `strict`.
    backup: FakeServer,
    /// `fake-picky`: primary of `strict`, refuses every request with 400.
    picky: FakeServer,
    /// `fake-cut`: the only upstream of `fragile`; its streams break off before the finish.
    cut: FakeServer,
    /// `fake-stall`: the only upstream of `stalling`; its streams go silent after one token.
    stall: FakeServer,
}

impl Fakes {
    async fn start() -> Fakes {
        let fakes = Fakes {
            openai: FakeServer::start(None).await,
            claude: FakeServer::start(None).await,
            slow: FakeServer::start(None).await,
            busy: FakeServer::start(None).await,
            backup: FakeServer::start(None).await,
            picky: FakeServer::start(None).await,
            cut: FakeServer::start(None).await,
            stall: FakeServer::start(None).await,
        };
        for server in [
            &fakes.openai,
            &fakes.slow,
            &fakes.backup,
            &fakes.picky,
            &fakes.cut,
            &fakes.stall,
        ] {
            server.route("GET", "/v1/models", canned::openai_models());
        }
        for server in [&fakes.claude, &fakes.busy] {
            server.route("GET", "/v1/models", canned::anthropic_models());
        }
        fakes.openai.route("POST", CHAT, openai_chat(OPENAI_TEXT));
        fakes.openai.route("POST", EMBEDDINGS, embeddings());
        fakes
            .openai
            .route("POST", RESPONSES, responses_answer(OPENAI_TEXT));
        fakes
            .claude
            .route("POST", MESSAGES, anthropic_messages(CLAUDE_TEXT));
        fakes.slow.route("POST", CHAT, openai_chat(SLOW_TEXT));
        fakes
            .busy
            .route("POST", MESSAGES, anthropic_messages(BUSY_TEXT));
        fakes.backup.route("POST", CHAT, openai_chat(BACKUP_TEXT));
        fakes.picky.route("POST", CHAT, context_length_exceeded());
        fakes.cut.route(
            "POST",
            CHAT,
            Reply::dynamic(|seen| {
                if streamed(seen) {
                    canned::openai_stream(false)
                } else {
                    canned::openai_chat_completion(CUT_TEXT)
                }
            }),
        );
        fakes.stall.route("POST", CHAT, stalling_stream());
        fakes
    }

    /// The gateway's config: one service per fake, the routes of [`ROUTES`].
    fn config(&self) -> String {
        let service = |name: &str, kind: &str, server: &FakeServer, key_env: &str| {
            format!(
                "[[service]]\nname = \"{name}\"\nkind = \"{kind}\"\napi_base = \"http://{}/v1\"\napi_key_env = \"{key_env}\"\n\n",
                server.addr()
            )
        };
        let mut config = String::new();
        for (name, server) in [
            ("fake-openai", &self.openai),
            ("fake-slow", &self.slow),
            ("fake-backup", &self.backup),
            ("fake-picky", &self.picky),
            ("fake-cut", &self.cut),
            ("fake-stall", &self.stall),
        ] {
            config.push_str(&service(name, "openai", server, "FAKE_OPENAI_KEY"));
        }
        for (name, server) in [("fake-claude", &self.claude), ("fake-busy", &self.busy)] {
            config.push_str(&service(name, "anthropic", server, "FAKE_ANTHROPIC_KEY"));
        }
        config.push_str(
            r#"[gateway]
client_keys_env = "AIWATCH_GATEWAY_KEYS"
stream_stall = "3s"
upstream_timeout = "10s"
request_timeout = "60s"
canary_interval = "1s"
ramp_step = "1s"

[[route]]
model = "smart"
upstreams = ["fake-openai:gpt-4o-mini", "fake-claude:claude-3-5-haiku-latest"]

[[route]]
model = "claude"
upstreams = ["fake-claude:claude-3-5-haiku-latest"]

[[route]]
model = "embed"
upstreams = ["fake-openai:text-embedding-3-small"]

[[route]]
model = "steady"
upstreams = [{ upstream = "fake-slow:gpt-4o-mini", timeout = "2s" }, "fake-backup:gpt-4o-mini"]

[[route]]
model = "busy"
upstreams = ["fake-busy:claude-3-5-haiku-latest", "fake-backup:gpt-4o"]

[[route]]
model = "strict"
upstreams = ["fake-picky:gpt-4o-mini", "fake-backup:gpt-4.1-mini"]

[[route]]
model = "fragile"
upstreams = ["fake-cut:gpt-4o-mini"]

[[route]]
model = "stalling"
upstreams = ["fake-stall:gpt-4o-mini"]
"#,
        );
        config
    }

    /// Three primaries answer two more client requests, then fail: `fake-openai` with 503,
    /// `fake-slow` by hanging, `fake-busy` with Anthropic's 529.
    fn start_failing(&self) {
        self.openai.route(
            "POST",
            CHAT,
            fail_after(2, openai_chat(OPENAI_TEXT), canned::openai_503_overloaded()),
        );
        self.slow.route(
            "POST",
            CHAT,
            fail_after(2, openai_chat(SLOW_TEXT), Reply::hang()),
        );
        self.busy.route(
            "POST",
            MESSAGES,
            fail_after(
                2,
                anthropic_messages(BUSY_TEXT),
                canned::anthropic_overloaded(),
            ),
        );
    }

    /// The three primaries answer well again.
    fn heal(&self) {
        self.openai.route("POST", CHAT, openai_chat(OPENAI_TEXT));
        self.slow.route("POST", CHAT, openai_chat(SLOW_TEXT));
        self.busy
            .route("POST", MESSAGES, anthropic_messages(BUSY_TEXT));
    }

    /// After phase `basics`: what the gateway sent upstream.
    fn verify_requests(&self) -> Result<()> {
        let mut problems = Vec::new();
        let all = [
            ("fake-openai", &self.openai),
            ("fake-claude", &self.claude),
            ("fake-slow", &self.slow),
            ("fake-busy", &self.busy),
            ("fake-backup", &self.backup),
            ("fake-picky", &self.picky),
            ("fake-cut", &self.cut),
            ("fake-stall", &self.stall),
        ];
        for (name, server) in all {
            for seen in server.requests() {
                // The client's key stays at the gateway.
                if seen.headers.iter().any(|(_, v)| v.contains(CLIENT_KEY)) {
                    problems.push(format!(
                        "{name} received the client's gateway key in {} {}",
                        seen.method, seen.path
                    ));
                }
                let openai_kind = !matches!(name, "fake-claude" | "fake-busy");
                let (header, want) = if openai_kind {
                    ("authorization", format!("Bearer {OPENAI_KEY}"))
                } else {
                    ("x-api-key", ANTHROPIC_KEY.to_owned())
                };
                if seen.header(header) != Some(want.as_str()) {
                    problems.push(format!(
                        "{name}: {} {} carried {header}: {:?}, expected {want:?}",
                        seen.method,
                        seen.path,
                        seen.header(header)
                    ));
                }
            }
        }

        let models = |server: &FakeServer, path: &str| -> Vec<String> {
            posts(server, path)
                .iter()
                .map(|s| body(s)["model"].as_str().unwrap_or("(none)").to_owned())
                .collect()
        };
        let chat_models = models(&self.openai, CHAT);
        if chat_models.is_empty() || chat_models.iter().any(|m| m != "gpt-4o-mini") {
            problems.push(format!(
                "fake-openai: chat requests asked for models {chat_models:?}, expected gpt-4o-mini (the upstream's model, not the alias)"
            ));
        }
        let embedding_models = models(&self.openai, EMBEDDINGS);
        if embedding_models.len() != 2
            || embedding_models
                .iter()
                .any(|m| m != "text-embedding-3-small")
        {
            problems.push(format!(
                "fake-openai: embedding requests asked for {embedding_models:?}, expected two for text-embedding-3-small"
            ));
        }
        let streams: Vec<bool> = client_requests(&self.openai, CHAT)
            .iter()
            .map(streamed)
            .collect();
        if !streams.contains(&true) {
            problems.push(format!(
                "fake-openai: no chat request was streamed ({streams:?}) although the SDK asked for streams"
            ));
        }

        let to_claude = client_requests(&self.claude, MESSAGES);
        if to_claude.len() != 3 {
            problems.push(format!(
                "fake-claude received {} Messages requests, expected 3 (one plain, one streamed, one JSON answer)",
                to_claude.len()
            ));
        }
        let forced = to_claude
            .iter()
            .filter(|s| body(s)["tool_choice"]["type"] == "tool")
            .count();
        if forced != 1 {
            problems.push(format!(
                "fake-claude received {forced} forced tool calls, expected 1 (the JSON answer emulated)"
            ));
        }
        for seen in &to_claude {
            problems.extend(anthropic_shape(seen));
        }

        let to_picky = client_requests(&self.picky, CHAT).len();
        if to_picky != 1 {
            problems.push(format!(
                "fake-picky received {to_picky} requests for one client request it refused with 400, expected 1 (no retry)"
            ));
        }
        let to_backup = models(&self.backup, CHAT);
        if to_backup.iter().any(|m| m == "gpt-4.1-mini") {
            problems.push(
                "fake-backup was asked for gpt-4.1-mini: a 400 from fake-picky was retried on the next upstream"
                    .to_owned(),
            );
        }
        if !problems.is_empty() {
            bail!("{}", problems.join("\n  "));
        }
        println!(
            "e2e sdk: upstreams got their own keys, their model names, Anthropic's request shape; a 400 was not retried"
        );
        Ok(())
    }
}

const CHAT: &str = "/v1/chat/completions";
const EMBEDDINGS: &str = "/v1/embeddings";
const RESPONSES: &str = "/v1/responses";
const MESSAGES: &str = "/v1/messages";

fn body(seen: &Seen) -> Value {
    serde_json::from_slice(&seen.body).unwrap_or(Value::Null)
}

fn streamed(seen: &Seen) -> bool {
    body(seen)["stream"] == json!(true)
}

/// Whether a request came from the Python side (its messages carry [`CLIENT_MARK`]).
fn from_client(seen: &Seen) -> bool {
    String::from_utf8_lossy(&seen.body).contains(CLIENT_MARK)
}

/// Every POST to `path`.
fn posts(server: &FakeServer, path: &str) -> Vec<Seen> {
    server
        .requests()
        .into_iter()
        .filter(|s| s.method == "POST" && s.path_only() == path)
        .collect()
}

/// The POSTs to `path` that came from clients.
fn client_requests(server: &FakeServer, path: &str) -> Vec<Seen> {
    posts(server, path)
        .into_iter()
        .filter(from_client)
        .collect()
}

/// What is wrong with a Messages request the gateway translated from Chat Completions.
fn anthropic_shape(seen: &Seen) -> Vec<String> {
    let mut problems = Vec::new();
    let request = body(seen);
    let mut problem = |what: String| problems.push(format!("fake-claude: {what} in {request}"));
    if seen.header("anthropic-version").is_none() {
        problem("no anthropic-version header".into());
    }
    if request["model"] != "claude-3-5-haiku-latest" {
        problem(format!(
            "model {}, expected claude-3-5-haiku-latest",
            request["model"]
        ));
    }
    if request["max_tokens"].as_u64().is_none_or(|n| n == 0) {
        problem("no positive max_tokens (Anthropic requires it)".into());
    }
    let system = match &request["system"] {
        Value::String(s) => s.clone(),
        blocks @ Value::Array(_) => blocks.to_string(),
        _ => String::new(),
    };
    if !system.contains("You are terse.") {
        problem("the system message is not the top-level `system`".into());
    }
    let roles: Vec<&str> = request["messages"]
        .as_array()
        .map(|m| m.iter().filter_map(|m| m["role"].as_str()).collect())
        .unwrap_or_default();
    if roles != ["user"] {
        problem(format!("message roles {roles:?}, expected [\"user\"]"));
    }
    problems
}

/// Chat Completions: streamed when asked (with a usage chunk when asked), else `text`.
fn openai_chat(text: &'static str) -> Reply {
    Reply::dynamic(move |seen| {
        let request = body(seen);
        if request["stream"] == json!(true) {
            if request["stream_options"]["include_usage"] == json!(true) {
                canned::openai_stream_with_usage()
            } else {
                canned::openai_stream(true)
            }
        } else {
            canned::openai_chat_completion(text)
        }
    })
}

/// Anthropic Messages: streamed when asked, else `text`.
fn anthropic_messages(text: &'static str) -> Reply {
    Reply::dynamic(move |seen| {
        let request = body(seen);
        if streamed(seen) {
            canned::anthropic_stream(true)
        } else if request["tool_choice"]["type"] == "tool" {
            // A forced tool call (the gateway's JSON answer): Claude answers with that tool.
            let name = request["tool_choice"]["name"].clone();
            Reply::json(
                200,
                json!({
                    "id": "msg_e2eJson0001", "type": "message", "role": "assistant",
                    "model": request["model"], "stop_reason": "tool_use", "stop_sequence": null,
                    "content": [{"type": "tool_use", "id": "toolu_e2e0001", "name": name,
                                 "input": {"city": "Paris", "country": "France"}}],
                    "usage": {"input_tokens": 20, "output_tokens": 12}
                }),
            )
        } else {
            canned::anthropic_message(text)
        }
    })
}

/// A Responses API answer, as OpenAI sends one; its event stream when asked to stream.
fn responses_answer(text: &'static str) -> Reply {
    Reply::dynamic(move |seen| {
        if streamed(seen) {
            return canned::openai_responses_stream(true);
        }
        Reply::json(
            200,
            json!({
                "id": "resp_e2e0001", "object": "response", "created_at": 1_733_000_000,
                "status": "completed", "model": body(seen)["model"],
                "output": [{"id": "msg_e2e0001", "type": "message", "role": "assistant",
                            "status": "completed",
                            "content": [{"type": "output_text", "text": text, "annotations": []}]}],
                "parallel_tool_calls": true, "tool_choice": "auto", "tools": [],
                "usage": {"input_tokens": 11, "output_tokens": 5, "total_tokens": 16,
                          "input_tokens_details": {"cached_tokens": 0},
                          "output_tokens_details": {"reasoning_tokens": 0}}
            }),
        )
    })
}

/// Embeddings: one per input (a string or an array of them).
fn embeddings() -> Reply {
    Reply::dynamic(|seen| {
        let inputs = match &body(seen)["input"] {
            Value::Array(items) => items.len(),
            _ => 1,
        };
        canned::openai_embeddings(inputs)
    })
}

/// A Chat Completions stream that sends its first token, then nothing for a minute.
fn stalling_stream() -> Reply {
    let chunk = |delta: Value| {
        let frame = json!({
            "id": "chatcmpl-AaWtestStall00001",
            "object": "chat.completion.chunk",
            "created": 1_733_000_000,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": null}]
        });
        format!("data: {frame}")
    };
    Reply::sse(
        vec![
            chunk(json!({"role": "assistant", "content": "Hel"})),
            chunk(json!({"content": "lo"})),
        ],
        Duration::from_secs(60),
        true,
    )
}

/// 400 `context_length_exceeded`, as OpenAI refuses a conversation that is too long.
fn context_length_exceeded() -> Reply {
    Reply::json(
        400,
        json!({"error": {
            "message": "This model's maximum context length is 128000 tokens. However, your messages resulted in 131072 tokens. Please reduce the length of the messages.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded"
        }}),
    )
    .header("x-request-id", canned::OPENAI_REQUEST_ID)
}

/// `ok` for the next `n` client requests, then `fail` for every request. Requests that are not
/// the clients' (canaries) get `fail` too once the `n` are used up, and `ok` before.
fn fail_after(n: usize, ok: Reply, fail: Reply) -> Reply {
    let answered = Arc::new(AtomicUsize::new(0));
    Reply::dynamic(move |seen| {
        let good = if from_client(seen) {
            answered.fetch_add(1, Ordering::SeqCst) < n
        } else {
            answered.load(Ordering::SeqCst) < n
        };
        if good {
            ok.clone()
        } else {
            fail.clone()
        }
    })
}

/// Every upstream of the config, as the gateway names them (`service:model`).
const UPSTREAMS: [&str; 11] = [
    "fake-backup:gpt-4.1-mini",
    "fake-backup:gpt-4o",
    "fake-backup:gpt-4o-mini",
    "fake-busy:claude-3-5-haiku-latest",
    "fake-claude:claude-3-5-haiku-latest",
    "fake-cut:gpt-4o-mini",
    "fake-stall:gpt-4o-mini",
    "fake-openai:gpt-4o-mini",
    "fake-openai:text-embedding-3-small",
    "fake-picky:gpt-4o-mini",
    "fake-slow:gpt-4o-mini",
];
/// The primaries that fail in phase `failover`, and what the reason for tripping must name.
const FAILING: [(&str, &str); 3] = [
    ("fake-openai:gpt-4o-mini", "503"),
    ("fake-slow:gpt-4o-mini", ""),
    ("fake-busy:claude-3-5-haiku-latest", "529"),
];
/// Their backups, which must stay closed.
const BACKUPS: [&str; 3] = [
    "fake-claude:claude-3-5-haiku-latest",
    "fake-backup:gpt-4o-mini",
    "fake-backup:gpt-4o",
];
/// How long tripped breakers may take to close once their upstreams are healthy again:
/// canaries every second, two to close, ramp steps of a second — but a canary that was sent
/// while `fake-slow` hung waits out the gateway's own canary budget (20 s) first.
const RECOVERY: Duration = Duration::from_secs(60);

/// The breakers as `GET /admin/upstreams` shows them: `{"upstreams": [{"upstream",
/// "service", "model", "routes", "state", "share_percent", "consecutive_failures", "reason",
/// "canary_passes", "next_try_in_s", …}]}`.
async fn breakers(gateway: &str) -> Result<Vec<Value>> {
    let (status, text) =
        super::http_get(&format!("{gateway}/admin/upstreams"), Some(CLIENT_KEY)).await?;
    if status != 200 {
        bail!("GET /admin/upstreams answered {status}: {text}");
    }
    let admin: Value = serde_json::from_str(&text)
        .with_context(|| format!("/admin/upstreams is not JSON: {text}"))?;
    admin["upstreams"]
        .as_array()
        .cloned()
        .with_context(|| format!("/admin/upstreams has no `upstreams` array: {text}"))
}

fn breaker<'a>(list: &'a [Value], upstream: &str) -> &'a Value {
    static MISSING: Value = Value::Null;
    list.iter()
        .find(|b| b["upstream"] == upstream)
        .unwrap_or(&MISSING)
}

/// After phase `failover`: the admin view needs a client key and shows the three primaries
/// tripped (open, no share, the reason) and their backups closed.
async fn admin_after_failover(gateway: &str, artifacts: &Path) -> Result<()> {
    let mut problems = Vec::new();
    let (status, _) = super::http_get(&format!("{gateway}/admin/upstreams"), None).await?;
    if status != 401 {
        problems.push(format!(
            "GET /admin/upstreams without a key answered {status}, expected 401"
        ));
    }
    let list = breakers(gateway).await?;
    std::fs::write(
        artifacts.join("admin-upstreams.json"),
        serde_json::to_string_pretty(&list)?,
    )?;
    let mut ids: Vec<&str> = list.iter().filter_map(|b| b["upstream"].as_str()).collect();
    ids.sort_unstable();
    let mut expected = UPSTREAMS;
    expected.sort_unstable();
    if ids != expected {
        problems.push(format!("lists {ids:?}, expected {expected:?}"));
    }
    for (upstream, why) in FAILING {
        let b = breaker(&list, upstream);
        let reason = b["reason"].as_str().unwrap_or_default();
        if b["state"] != "open" || b["share_percent"] != 0 || reason.is_empty() {
            problems.push(format!(
                "{upstream} should be open with share 0 and a reason: {b}"
            ));
        }
        if !reason.contains(why) {
            problems.push(format!(
                "{upstream}: the reason should name {why}: {reason:?}"
            ));
        }
    }
    for upstream in BACKUPS {
        let b = breaker(&list, upstream);
        if b["state"] != "closed" || b["share_percent"] != 100 {
            problems.push(format!("{upstream} should be closed with share 100: {b}"));
        }
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("\n  "));
    }
    println!(
        "e2e sdk: /admin/upstreams shows the three primaries tripped and their backups closed"
    );
    Ok(())
}

/// Waits until canaries have closed the three tripped breakers again and their share is back
/// to 100%.
async fn wait_until_recovered(gateway: &str) -> Result<()> {
    let started = std::time::Instant::now();
    loop {
        let list = breakers(gateway).await?;
        let pending: Vec<&Value> = FAILING
            .iter()
            .map(|(upstream, _)| breaker(&list, upstream))
            .filter(|b| b["state"] != "closed" || b["share_percent"] != 100)
            .collect();
        if pending.is_empty() {
            println!(
                "e2e sdk: the breakers closed {:.1} s after the primaries healed",
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if started.elapsed() > RECOVERY {
            let pending: Vec<String> = pending.iter().map(ToString::to_string).collect();
            bail!(
                "not closed at 100% {RECOVERY:?} after the primaries healed:\n  {}",
                pending.join("\n  ")
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
