//! The per-layer slowness limits of `thresholds`, judged by `classify` on hand-made evidence:
//! a layer just past its limit is `slow_responses` however large the budget, one just under it
//! is fine. (The loopback test of a slow web front-end is in aiwatch-probe's `check_causes`.)

use std::time::Duration;

use aiwatch_core::classify::classify;
use aiwatch_core::evidence::{
    ApiEvidence, CheckEvidence, ConnectAttempt, ConnectOutcome, DnsOutcome, HttpOutcome,
    HttpResponse, OfficialOutcome, PhaseTimings, ProbeReport, Purpose, StreamEvidence, TlsEvidence,
    TlsOutcome, TrustPath,
};
use aiwatch_core::thresholds::{API_FIRST_BYTE, STREAM_FIRST_TOKEN, WEB_FIRST_BYTE};
use aiwatch_core::{Catalog, Cause, Scope, Status, Verdict};
use chrono::{TimeZone, Utc};

/// Large enough that the half-budget rule never fires here.
const BUDGET: Duration = Duration::from_secs(60);
const A_BIT: Duration = Duration::from_millis(100);

/// A probe that went through DNS, TCP and public TLS and got a 200 whose head came after
/// `first_byte`.
fn answered(purpose: Purpose, url: &str, host: &str, first_byte: Duration) -> ProbeReport {
    let address: std::net::SocketAddr = "192.0.2.10:443".parse().expect("a socket address");
    let mut report = ProbeReport::new(purpose, url, host);
    report.dns = Some(DnsOutcome::Resolved {
        addresses: vec![address.ip()],
    });
    report.connect = vec![ConnectAttempt {
        address,
        outcome: ConnectOutcome::Connected,
        elapsed: Some(A_BIT),
    }];
    report.tls = Some(TlsEvidence {
        outcome: TlsOutcome::Trusted {
            via: TrustPath::Public,
        },
        chain: Vec::new(),
        version: Some("TLSv1.3".into()),
    });
    report.http = Some(HttpOutcome::Response(Box::new(HttpResponse {
        status: 200,
        ..HttpResponse::default()
    })));
    report.timings = PhaseTimings {
        first_byte: Some(first_byte),
        total: Some(first_byte + A_BIT),
        ..PhaseTimings::default()
    };
    report
}

fn verdict(service: &str, evidence: &CheckEvidence) -> Verdict {
    let catalog = Catalog::builtin();
    let service = catalog.get(service).expect("a built-in service");
    classify(
        service,
        evidence,
        Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap(),
    )
}

fn evidence(
    web: Option<ProbeReport>,
    api: Option<ProbeReport>,
    stream: Option<StreamEvidence>,
) -> CheckEvidence {
    CheckEvidence {
        control: None,
        web,
        api,
        stream,
        official: OfficialOutcome::NotConfigured,
        budget: BUDGET,
    }
}

fn list_models(first_byte: Duration) -> ProbeReport {
    let mut report = answered(
        Purpose::Api,
        "https://api.openai.com/v1/models",
        "api.openai.com",
        first_byte,
    );
    report.api = Some(ApiEvidence {
        call: "GET /models".into(),
        key_env: Some("OPENAI_API_KEY".into()),
        key_present: true,
        models: Some(4),
        key_withheld: None,
    });
    report
}

fn stream(first_token: Duration) -> StreamEvidence {
    StreamEvidence {
        model: "gpt-4o-mini".into(),
        status: Some(200),
        time_to_first_token: Some(first_token),
        total: Some(first_token + A_BIT),
        chunks: 3,
        finished: true,
        error: None,
        provider_error: None,
    }
}

fn assert_cause(v: &Verdict, status: Status, cause: Cause) {
    assert_eq!((v.status, v.cause), (status, cause), "{}", v.summary);
}

#[test]
fn web_first_byte_past_its_limit_is_slow_within_a_large_budget() {
    let web = |t| answered(Purpose::Web, "https://chatgpt.com/", "chatgpt.com", t);
    let v = verdict(
        "chatgpt",
        &evidence(Some(web(WEB_FIRST_BYTE + A_BIT)), None, None),
    );
    assert_cause(&v, Status::Degraded, Cause::SlowResponses);
    assert_eq!(v.scope, Scope::Global);
    let v = verdict(
        "chatgpt",
        &evidence(Some(web(WEB_FIRST_BYTE - A_BIT)), None, None),
    );
    assert_cause(&v, Status::Operational, Cause::Ok);
}

#[test]
fn list_models_call_past_its_limit_is_slow_within_a_large_budget() {
    let v = verdict(
        "openai-api",
        &evidence(None, Some(list_models(API_FIRST_BYTE + A_BIT)), None),
    );
    assert_cause(&v, Status::Degraded, Cause::SlowResponses);
    let v = verdict(
        "openai-api",
        &evidence(None, Some(list_models(API_FIRST_BYTE - A_BIT)), None),
    );
    assert_cause(&v, Status::Operational, Cause::Ok);
}

#[test]
fn first_token_past_its_limit_is_slow_within_a_large_budget() {
    let fast_api = || Some(list_models(Duration::from_millis(200)));
    let v = verdict(
        "openai-api",
        &evidence(None, fast_api(), Some(stream(STREAM_FIRST_TOKEN + A_BIT))),
    );
    assert_cause(&v, Status::Degraded, Cause::SlowResponses);
    assert!(v.summary.contains("first token"), "{}", v.summary);
    let v = verdict(
        "openai-api",
        &evidence(None, fast_api(), Some(stream(STREAM_FIRST_TOKEN - A_BIT))),
    );
    assert_cause(&v, Status::Operational, Cause::Ok);
}

#[test]
fn the_half_budget_rule_still_applies_below_the_limits() {
    let mut report = list_models(Duration::from_millis(200));
    report.timings.total = Some(Duration::from_millis(700));
    let mut e = evidence(None, Some(report), None);
    e.budget = Duration::from_secs(1);
    let v = verdict("openai-api", &e);
    assert_cause(&v, Status::Degraded, Cause::SlowResponses);
}
