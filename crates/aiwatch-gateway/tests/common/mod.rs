//! Starts a gateway on loopback in front of fake upstreams, and a small client to call it.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aiwatch_core::secret::ApiKey;
use aiwatch_core::{Catalog, Config, ServiceName};
use aiwatch_gateway::auth::ClientKeys;
use aiwatch_gateway::health::MonitorView;
use aiwatch_gateway::{Gateway, GatewaySetup};
use aiwatch_probe::{CheckOptions, DnsChoice, ProxySettings};
use aiwatch_testkit::{canned, FakeServer, Reply, Seen};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{oneshot, watch};

pub const CLIENT_KEY: &str = "gw-test-key";
/// The key every fake upstream expects.
pub const UPSTREAM_KEY: &str = "sk-upstream-secret";

/// A running gateway and its fakes.
pub struct Harness {
    pub gw: Arc<Gateway>,
    pub addr: SocketAddr,
    pub fakes: HashMap<String, FakeServer>,
    pub monitor: watch::Sender<MonitorView>,
    stop: Option<oneshot::Sender<()>>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A fake upstream: a service name, its kind and the fake's routes.
pub struct FakeUpstream {
    pub name: &'static str,
    pub kind: &'static str,
}

/// Answers chat completions the way a healthy OpenAI-compatible API does: a stream when asked
/// for one, a whole completion otherwise.
pub fn healthy_openai(text: &'static str) -> Reply {
    Reply::dynamic(move |seen: &Seen| {
        if String::from_utf8_lossy(&seen.body).contains("\"stream\":true") {
            canned::openai_stream_with_usage()
        } else {
            canned::openai_chat_completion(text)
        }
    })
}

pub fn healthy_anthropic(text: &'static str) -> Reply {
    Reply::dynamic(move |seen: &Seen| {
        if String::from_utf8_lossy(&seen.body).contains("\"stream\":true") {
            canned::anthropic_stream(true)
        } else {
            canned::anthropic_message(text)
        }
    })
}

/// Starts one plain-HTTP fake per upstream (`/v1` API base) and a gateway over them.
/// `gateway_toml` is the `[gateway]` table's body; `routes` the `[[route]]` tables.
pub async fn start(upstreams: &[FakeUpstream], gateway_toml: &str, routes: &str) -> Harness {
    let mut fakes = HashMap::new();
    let mut config = String::new();
    for up in upstreams {
        let fake = FakeServer::start(None).await;
        let models = if up.kind == "anthropic" {
            canned::anthropic_models()
        } else {
            canned::openai_models()
        };
        fake.route("GET", "/v1/models", models);
        config.push_str(&format!(
            "[[service]]\nname = \"{}\"\nkind = \"{}\"\napi_base = \"{}\"\napi_key_env = \"GW_TEST_UPSTREAM_KEY\"\n\n",
            up.name,
            up.kind,
            format_args!("http://{}/v1", fake.addr())
        ));
        fakes.insert(up.name.to_owned(), fake);
    }
    config.push_str(&format!("[gateway]\n{gateway_toml}\n\n{routes}\n"));
    let config = Config::parse(&config).unwrap_or_else(|e| panic!("test config: {e}\n{config}"));
    let catalog = Catalog::with_config(&config);
    let mut keys = HashMap::new();
    for up in upstreams {
        keys.insert(
            ServiceName::parse(up.name).expect("valid name"),
            ApiKey::new(UPSTREAM_KEY.to_owned()).expect("a key"),
        );
    }
    let (monitor, monitor_rx) = watch::channel(MonitorView::new());
    let gw = Gateway::new(GatewaySetup {
        config,
        catalog,
        keys,
        client_keys: ClientKeys::parse(&format!("{CLIENT_KEY},second-key")),
        network: CheckOptions {
            timeout: Duration::from_secs(5),
            dns: DnsChoice::System,
            ca_files: Vec::new(),
            control_url: None,
            deep: false,
            proxies: ProxySettings::none(),
        },
        monitor: Some(monitor_rx),
    })
    .expect("gateway");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let running = gw.clone();
    tokio::spawn(async move {
        let _ = aiwatch_gateway::run(listener, running, async {
            let _ = stopped.await;
        })
        .await;
    });
    Harness {
        gw,
        addr,
        fakes,
        monitor,
        stop: Some(stop),
        client: Client::builder(TokioExecutor::new()).build_http(),
    }
}

/// A response as the client saw it.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

impl Harness {
    pub fn fake(&self, name: &str) -> &FakeServer {
        &self.fakes[name]
    }

    pub async fn call(&self, method: &str, path: &str, key: Option<&str>, body: &str) -> Answer {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr))
            .header("content-type", "application/json");
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_owned())))
            .expect("request");
        let response = tokio::time::timeout(Duration::from_secs(20), self.client.request(request))
            .await
            .expect("the gateway answers in time")
            .expect("the gateway answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = tokio::time::timeout(Duration::from_secs(20), response.into_body().collect())
            .await
            .expect("the body ends in time")
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_else(|e| format!("<body broke: {e}>"));
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn chat(&self, model: &str, stream: bool) -> Answer {
        let body = serde_json::json!({
            "model": model,
            "stream": stream,
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}]
        });
        self.call(
            "POST",
            "/v1/chat/completions",
            Some(CLIENT_KEY),
            &body.to_string(),
        )
        .await
    }

    pub async fn admin(&self, path: &str) -> serde_json::Value {
        self.call("GET", path, Some(CLIENT_KEY), "").await.json()
    }

    pub async fn metrics(&self) -> String {
        self.call("GET", "/metrics", None, "").await.body
    }

    /// Chat requests the fake named `name` received.
    pub fn chats_seen(&self, name: &str) -> Vec<Seen> {
        self.fake(name)
            .requests()
            .into_iter()
            .filter(|s| s.method == "POST")
            .collect()
    }
}

/// The texts of a client-side stream's `data:` lines.
pub fn data_lines(body: &str) -> Vec<&str> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect()
}
