//! The agent's push loop against a loopback server that refuses one buffered observation (one
//! a bug made malformed, say; a server skips mere stale ones itself): that one is given up
//! alone, and every other observation of its push is still delivered, once, in order.

use std::collections::BTreeSet;
use std::time::Duration;

use aiwatch_agent::{AgentOptions, Buffer, ServerClient};
use aiwatch_core::agent_wire::{Push, PROTOCOL};
use aiwatch_core::cause::Cause;
use aiwatch_core::observation::{Component, Health, Observation, PhaseMs, Region, Source};
use aiwatch_core::secret::ApiKey;
use aiwatch_core::ServiceName;
use aiwatch_probe::dns::Dns;
use aiwatch_probe::layered::ProbeContext;
use aiwatch_probe::tls::Trust;
use aiwatch_probe::{CheckOptions, DnsChoice, ProxySettings};
use aiwatch_testkit::{FakeServer, Reply};
use serde_json::json;

const REGION: &str = "eu-west";
const REFUSED: &str = "an observation this server refuses";

fn observation(seq: u64, refused: bool) -> Observation {
    Observation {
        service: ServiceName::parse("openai-api").expect("a catalog name"),
        component: Component::Api,
        region: Region::new(REGION),
        source: Source::Probe,
        at: chrono::Utc::now(),
        health: Health::Up,
        cause: Cause::Ok,
        phases: PhaseMs::default(),
        complete: None,
        detail: if refused {
            REFUSED.to_owned()
        } else {
            format!("check {seq}")
        },
    }
}

fn refused(push: &Push) -> bool {
    push.observations.iter().any(|o| o.detail == REFUSED)
}

/// The server's answer to a push: 422 naming the refused observation, else all stored.
fn answer(push: &Push) -> Reply {
    match push.observations.iter().position(|o| o.detail == REFUSED) {
        Some(index) => Reply::json(
            422,
            json!({"error": {"message": format!("observation {index}: a phase time is negative or not a number")}}),
        ),
        None => {
            let n = push.observations.len() as u64;
            Reply::json(
                200,
                json!({"accepted": n, "duplicates": 0, "last_seq": push.first_seq + n - 1}),
            )
        }
    }
}

fn pushes(server: &FakeServer) -> Vec<Push> {
    server
        .requests()
        .iter()
        .filter(|seen| seen.method == "POST")
        .filter_map(|seen| serde_json::from_slice(&seen.body).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_observation_is_given_up_alone_and_the_rest_of_its_push_is_delivered() {
    let server = FakeServer::start(None).await;
    server.route(
        "GET",
        "/api/v1/agent/assignments",
        Reply::json(
            200,
            json!({"protocol": PROTOCOL, "region": REGION, "revision": "r1",
                   "refresh_ms": 3_600_000, "control_url": null, "checks": []}),
        ),
    );
    server.route(
        "POST",
        "/api/v1/agent/observations",
        Reply::dynamic(|seen| match serde_json::from_slice::<Push>(&seen.body) {
            Ok(push) => answer(&push),
            Err(e) => Reply::json(400, json!({"error": {"message": e.to_string()}})),
        }),
    );

    // 1,200 observations waiting from before (more than one push holds); number 700 is refused.
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("agent.db");
    let total = 1_200u64;
    let refused_seq = 700u64;
    {
        let mut buffer = Buffer::open(&path, 10_000).expect("a buffer");
        let waiting: Vec<Observation> = (1..=total)
            .map(|seq| observation(seq, seq == refused_seq))
            .collect();
        buffer.append(&waiting).expect("appended");
    }

    let dns = DnsChoice::Server("127.0.0.1:9".parse().expect("an address"));
    let ctx = ProbeContext {
        dns: Dns::new(&dns, Duration::from_millis(200)).expect("a resolver"),
        proxies: ProxySettings::none(),
        trust: Trust::new(&[]).expect("the public roots"),
    };
    let token = ApiKey::new("agent-token-0123456789".into()).expect("a token");
    let client = ServerClient::new(
        &server.url("127.0.0.1"),
        token,
        ctx,
        None,
        Duration::from_secs(5),
    )
    .expect("a client");
    let options = AgentOptions {
        region: Region::new(REGION),
        check: CheckOptions {
            timeout: Duration::from_secs(2),
            dns,
            ca_files: Vec::new(),
            control_url: None,
            deep: false,
            proxies: ProxySettings::none(),
        },
        buffer: path.clone(),
        capacity: 10_000,
        allowed_keys: Vec::new(),
        version: "test".into(),
    };
    // Stop once every good observation is stored, or after a budget.
    let all_but_refused = total - 1;
    let watched = &server;
    let done = async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while tokio::time::Instant::now() < deadline {
            let stored: u64 = pushes(watched)
                .iter()
                .filter(|p| !refused(p))
                .map(|p| p.observations.len() as u64)
                .sum();
            if stored >= all_but_refused {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let summary = aiwatch_agent::run(options, client, done)
        .await
        .expect("the agent stops cleanly");

    let all = pushes(&server);
    let stored: Vec<u64> = all
        .iter()
        .filter(|p| !refused(p))
        .flat_map(|p| p.first_seq..p.first_seq + p.observations.len() as u64)
        .collect();
    let expected: Vec<u64> = (1..=total).filter(|&seq| seq != refused_seq).collect();
    let lost = expected.iter().filter(|seq| !stored.contains(seq)).count();
    assert_eq!(lost, 0, "good observations given up with the refused one");
    assert_eq!(stored, expected, "every good observation once, in order");
    assert_eq!(summary.delivered, all_but_refused);
    assert_eq!(summary.rejected, 1);
    assert_eq!(summary.pending, 0);
    let refused_alone: BTreeSet<u64> = all
        .iter()
        .filter(|p| refused(p) && p.observations.len() == 1)
        .map(|p| p.first_seq)
        .collect();
    assert_eq!(
        refused_alone,
        BTreeSet::from([refused_seq]),
        "the refused observation was finally sent alone"
    );
    let buffer = Buffer::open(&path, 10_000).expect("the buffer reopens");
    assert_eq!(buffer.pending().expect("pending"), 0);
}
