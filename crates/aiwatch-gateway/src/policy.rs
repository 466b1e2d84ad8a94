//! The gateway's failover policy: what one attempt's outcome means — its cause code (the
//! core's) and what the proxy does next (answer, hand the refusal back, skip, fail over, end a
//! stream the client already reads) — and the client's error once every attempt failed. Pure:
//! no sockets, no clocks, no locks; `proxy` only loops and carries the decisions out.

use std::time::Duration;

use aiwatch_core::call_fault::CallFault;
use aiwatch_core::cause::Cause;
use aiwatch_core::signatures::{api_cause, detect_markers, ProviderError};
use http::{HeaderMap, StatusCode};

use crate::error::ApiError;
use crate::relay::{error_event, stream_error_event, StreamFault};

/// How one attempt at one upstream went: every outcome the proxy meets.
#[derive(Clone, Copy, Debug)]
pub enum Outcome<'a> {
    /// A whole answer, or a stream whose first token arrived.
    Answered,
    /// The upstream's dialect cannot say this request (`n > 1` to Anthropic, embeddings there).
    Unexpressible(&'a str),
    /// A non-2xx answer, its headers and the (capped, scrubbed) start of its body.
    Refused {
        status: u16,
        headers: &'a HeaderMap,
        body: &'a [u8],
    },
    /// The attempt failed before the client got anything.
    Failed(Trouble<'a>),
    /// A stream went wrong after the client got its first byte.
    StreamCutShort(&'a StreamTrouble),
}

/// How an attempt failed with nothing for the client yet.
#[derive(Clone, Copy, Debug)]
pub enum Trouble<'a> {
    /// The connection could not be opened; the connector named the layer and its cause.
    ConnectFailed { cause: Cause, detail: &'a str },
    /// The connection closed or reset before the answer's headers.
    ConnectionLost(&'a str),
    /// No answer headers within the attempt's budget.
    NoHeadersInTime { waited: Duration },
    /// A 2xx whole answer that broke off, passed its cap or did not finish in time.
    AnswerIncomplete { reason: &'a str, timed_out: bool },
    /// A 2xx whole answer that is not the dialect's answer.
    AnswerUnreadable(&'a str),
    /// A stream was asked for and something else came back (its first bytes).
    NotAStream(&'a str),
    /// A stream went wrong before its first token.
    Stream(&'a StreamTrouble),
}

/// How a stream went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamTrouble {
    /// The request's own deadline (`request_timeout`) passed: not the upstream's failure.
    RequestDeadline,
    /// No first token within the upstream's own answer budget.
    NoFirstToken,
    /// No token for this long after earlier ones.
    Stalled(Duration),
    /// This many bytes came without a single token.
    NoTokenWithin(usize),
    /// The relay's verdict on the stream itself.
    Fault(StreamFault),
}

/// Why an attempt failed: for the breaker, the metrics, the logs and the client's last error.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    pub cause: Cause,
    pub reason: String,
    /// The provider asked to be left alone this long.
    pub retry_after: Option<Duration>,
    /// The gateway's own time budget ran out (504 rather than 502 for the client).
    pub timed_out: bool,
}

/// What a failure does to the upstream's breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Charge {
    /// Nothing: the request's own deadline, not the upstream, ended it.
    Nothing,
    /// One more consecutive failure; enough of them trip it.
    Count,
    /// Trip now: the account there (key, quota, region, anti-bot block) will not heal by the
    /// next request, so only canaries ask until it does.
    Trip,
}

/// Move on to the next upstream (budget and deadline allowing).
#[derive(Clone, Debug, PartialEq)]
pub struct FailOver {
    pub failure: Failure,
    pub charge: Charge,
}

/// The client already reads the answer: its stream ends with `event`. Never retried.
#[derive(Clone, Debug, PartialEq)]
pub struct EndStream {
    pub event: String,
    pub failure: Failure,
    pub charge: Charge,
}

/// What a non-2xx answer calls for.
#[derive(Clone, Debug, PartialEq)]
pub enum Refusal {
    /// The request is at fault: the client gets the upstream's refusal as it is, no other
    /// upstream is asked, and this one's health is untouched.
    HandBack,
    FailOver(FailOver),
}

/// What the proxy does with an outcome: exactly one per outcome.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Give the client the answer; the upstream served it.
    Answer,
    /// Hand the upstream's refusal back (see [`Refusal::HandBack`]).
    HandBack,
    /// Not an attempt: go to the next upstream, which may take the request as it is.
    Skip {
        why: String,
    },
    FailOver(FailOver),
    EndStream(EndStream),
}

/// The one decision for `outcome`. The proxy calls the typed parts below (each outcome
/// kind has its own, so no decision can come from the wrong kind); this is their sum.
pub fn decide(outcome: Outcome<'_>) -> Decision {
    match outcome {
        Outcome::Answered => Decision::Answer,
        Outcome::Unexpressible(why) => Decision::Skip {
            why: why.to_owned(),
        },
        Outcome::Refused {
            status,
            headers,
            body,
        } => match refusal(status, headers, body) {
            Refusal::HandBack => Decision::HandBack,
            Refusal::FailOver(f) => Decision::FailOver(f),
        },
        Outcome::Failed(trouble) => Decision::FailOver(fail_over(trouble)),
        Outcome::StreamCutShort(trouble) => Decision::EndStream(cut_short(trouble)),
    }
}

/// An attempt that failed before the client got anything: the next upstream is asked.
pub fn fail_over(trouble: Trouble<'_>) -> FailOver {
    let failure = |fault: CallFault, reason: String, timed_out: bool| Failure {
        cause: fault.cause(),
        reason,
        retry_after: None,
        timed_out,
    };
    let failure = match trouble {
        Trouble::ConnectFailed { cause, detail } => Failure {
            cause,
            reason: detail.to_owned(),
            retry_after: None,
            timed_out: false,
        },
        Trouble::ConnectionLost(detail) => {
            failure(CallFault::ConnectionLost, detail.to_owned(), false)
        }
        Trouble::NoHeadersInTime { waited } => failure(
            CallFault::NoAnswerInTime,
            format!("no answer within {}", secs(waited)),
            true,
        ),
        Trouble::AnswerIncomplete { reason, timed_out } => {
            failure(CallFault::AnswerCutOff, reason.to_owned(), timed_out)
        }
        Trouble::AnswerUnreadable(reason) => {
            failure(CallFault::AnswerUnreadable, reason.to_owned(), false)
        }
        Trouble::NotAStream(said) => failure(
            CallFault::NotAStream,
            format!("asked for a stream, got something else: {said}"),
            false,
        ),
        Trouble::Stream(trouble) => {
            let (failure, charge, _) = stream_failure(trouble);
            return FailOver { failure, charge };
        }
    };
    FailOver {
        failure,
        charge: Charge::Count,
    }
}

/// A non-2xx answer, judged by its status, headers and body through the core's signatures.
pub fn refusal(status: u16, headers: &HeaderMap, body: &[u8]) -> Refusal {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let markers = detect_markers(status, header("content-type"), header("cf-mitigated"), body);
    let error = ProviderError::parse(status, body);
    let cause = api_cause(status, error.as_ref(), &markers, true);
    let client_fault = match status {
        // The account or the gateway's own config at that provider, not the request.
        401 | 402 | 403 | 404 | 408 | 409 | 429 => false,
        // Too large is about the request whoever says it (Anthropic's comes from Cloudflare).
        413 => true,
        // A 4xx that is not the API's own error (an HTML page from a proxy or a firewall in
        // front of it) says nothing about the request.
        400..=499 if error.is_none() => false,
        400..=499 => !account_trouble(cause),
        _ => false,
    };
    if client_fault {
        return Refusal::HandBack;
    }
    let detail = error
        .as_ref()
        .and_then(|e| e.message.clone().or_else(|| e.kind.clone()))
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    Refusal::FailOver(FailOver {
        failure: Failure {
            cause,
            reason: format!("{status} ({}){detail}", cause.as_str()),
            retry_after: header("retry-after").and_then(parse_retry_after),
            timed_out: false,
        },
        charge: if account_trouble(cause) {
            Charge::Trip
        } else {
            Charge::Count
        },
    })
}

/// The gateway's account at the provider, not the request nor the provider's health.
fn account_trouble(cause: Cause) -> bool {
    matches!(
        cause,
        Cause::AuthInvalid | Cause::QuotaExhausted | Cause::BotChallenge | Cause::RegionUnsupported
    )
}

/// A stream that went wrong after the client got part of it.
pub fn cut_short(trouble: &StreamTrouble) -> EndStream {
    let (failure, charge, code) = stream_failure(trouble);
    let event = match trouble {
        StreamTrouble::Fault(fault) => error_event(fault),
        _ => stream_error_event(
            code,
            &format!("{}; the answer is incomplete", failure.reason),
        ),
    };
    EndStream {
        event,
        failure,
        charge,
    }
}

/// A stream's trouble as a failure, its charge and the error code the client's event carries.
fn stream_failure(trouble: &StreamTrouble) -> (Failure, Charge, &'static str) {
    let (fault, reason, timed_out, code) = match trouble {
        StreamTrouble::RequestDeadline => (
            CallFault::StreamStalled,
            "the request's deadline (request_timeout) passed mid-stream".to_owned(),
            true,
            "request_timeout",
        ),
        StreamTrouble::NoFirstToken => (
            CallFault::StreamStalled,
            "no token within the upstream's timeout".to_owned(),
            true,
            "upstream_timeout",
        ),
        StreamTrouble::Stalled(stall) => (
            CallFault::StreamStalled,
            format!("the stream stalled: no token for {}", secs(*stall)),
            true,
            "stream_stalled",
        ),
        StreamTrouble::NoTokenWithin(bytes) => (
            CallFault::StreamGarbage,
            format!("the stream sent over {} KiB without a token", bytes / 1024),
            false,
            "upstream_garbage",
        ),
        StreamTrouble::Fault(fault) => (
            match fault {
                StreamFault::Truncated | StreamFault::Broken(_) => CallFault::StreamCutOff,
                StreamFault::Garbage(_) => CallFault::StreamGarbage,
                StreamFault::Upstream(_) => CallFault::StreamError,
            },
            fault.to_string(),
            false,
            "upstream_error",
        ),
    };
    let charge = if *trouble == StreamTrouble::RequestDeadline {
        Charge::Nothing
    } else {
        Charge::Count
    };
    let failure = Failure {
        cause: fault.cause(),
        reason,
        retry_after: None,
        timed_out,
    };
    (failure, charge, code)
}

/// Everything one request went through, for the client's error when nothing answered.
#[derive(Debug, Default)]
pub struct Tally {
    /// Attempts sent (skipped upstreams are not attempts).
    pub attempts: u32,
    /// `upstream=result` per upstream considered, in order: the `x-aiwatch-tried` header.
    pub tried: Vec<String>,
    /// `upstream (cause): reason` per failed attempt.
    pub reasons: Vec<String>,
    /// Why the first upstream skipped could not take the request.
    pub unexpressible: Option<String>,
    pub last: Option<Failure>,
}

/// The client's error once no upstream of `route` answered.
pub fn exhausted(route: &str, tally: &Tally) -> ApiError {
    match (&tally.last, &tally.unexpressible) {
        (None, Some(why)) if tally.attempts == 0 => ApiError::invalid_request(format!(
            "no upstream of `{route}` can take this request: {why}"
        )),
        (Some(f), _) if f.timed_out && tally.attempts == 1 => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream_error",
            Some("upstream_timeout"),
            format!("route `{route}`: {}", f.reason),
        ),
        (Some(f), _) if f.cause == Cause::RateLimited && tally.attempts == 1 => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            Some("rate_limit_exceeded"),
            format!("route `{route}`: {}", f.reason),
        ),
        _ => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            Some("all_upstreams_failed"),
            format!(
                "every upstream of `{route}` failed ({} tried): {}",
                tally.attempts,
                if !tally.reasons.is_empty() {
                    tally.reasons.join("; ")
                } else if tally.tried.is_empty() {
                    "none could serve this request".to_owned()
                } else {
                    tally.tried.join("; ")
                }
            ),
        ),
    }
}

/// `Retry-After` in seconds (the form APIs use); dates are left to the breaker's own timing.
fn parse_retry_after(raw: &str) -> Option<Duration> {
    raw.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(3600.0)))
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        h
    }

    fn refusal(status: u16, headers: &HeaderMap, body: &[u8]) -> Decision {
        decide(Outcome::Refused {
            status,
            headers,
            body,
        })
    }

    #[test]
    fn requests_at_fault_are_passed_back_not_retried() {
        let body = br#"{"error":{"message":"This model's maximum context length is 128000 tokens","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
        let none = HeaderMap::new();
        assert_eq!(refusal(400, &none, body), Decision::HandBack);
        assert_eq!(
            refusal(413, &none, b"<html>413 Request Entity Too Large</html>"),
            Decision::HandBack
        );
        assert!(
            matches!(
                refusal(400, &none, b"<html>400 Bad Request</html>"),
                Decision::FailOver(_)
            ),
            "an HTML 400 from whatever sits in front is not the API's verdict"
        );
    }

    #[test]
    fn overload_rate_limits_and_outages_fail_over_with_retry_after() {
        let Decision::FailOver(FailOver { failure, charge }) = refusal(
            429,
            &headers(&[("retry-after", "7")]),
            br#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#,
        ) else {
            panic!("a 429 fails over")
        };
        assert_eq!(failure.cause, Cause::RateLimited);
        assert_eq!(failure.retry_after, Some(Duration::from_secs(7)));
        assert_eq!(charge, Charge::Count);
        assert!(matches!(
            refusal(
                529,
                &HeaderMap::new(),
                br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            ),
            Decision::FailOver(FailOver {
                failure: Failure {
                    cause: Cause::ProviderOverloaded,
                    ..
                },
                ..
            })
        ));
        assert!(matches!(
            refusal(502, &HeaderMap::new(), b"<html>bad gateway</html>"),
            Decision::FailOver(_)
        ));
    }

    #[test]
    fn account_problems_fail_over_and_trip_at_once() {
        for status in [401, 403, 404] {
            assert!(
                matches!(
                    refusal(status, &HeaderMap::new(), b"{}"),
                    Decision::FailOver(_)
                ),
                "{status}"
            );
        }
        let bad_key = br#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}"#;
        assert!(matches!(
            refusal(401, &HeaderMap::new(), bad_key),
            Decision::FailOver(FailOver {
                failure: Failure {
                    cause: Cause::AuthInvalid,
                    ..
                },
                charge: Charge::Trip
            })
        ));
        let spend = br#"{"type":"error","error":{"type":"invalid_request_error","message":"Your credit balance is too low to access the Anthropic API."}}"#;
        assert!(matches!(
            refusal(400, &HeaderMap::new(), spend),
            Decision::FailOver(FailOver {
                failure: Failure {
                    cause: Cause::QuotaExhausted,
                    ..
                },
                charge: Charge::Trip
            })
        ));
    }

    #[test]
    fn a_dead_connection_keeps_the_layer_the_connector_named() {
        let Decision::FailOver(FailOver { failure, charge }) =
            decide(Outcome::Failed(Trouble::ConnectFailed {
                cause: Cause::DnsFiltered,
                detail: "api.example resolves to 0.0.0.0",
            }))
        else {
            panic!("fails over")
        };
        assert_eq!(failure.cause, Cause::DnsFiltered);
        assert_eq!(charge, Charge::Count);
        let Decision::FailOver(FailOver { failure, .. }) =
            decide(Outcome::Failed(Trouble::NoHeadersInTime {
                waited: Duration::from_millis(1500),
            }))
        else {
            panic!("fails over")
        };
        assert!(failure.timed_out);
        assert_eq!(failure.reason, "no answer within 1.5 s");
    }

    #[test]
    fn the_requests_own_deadline_is_not_charged_to_the_upstream() {
        let trouble = StreamTrouble::RequestDeadline;
        assert_eq!(fail_over(Trouble::Stream(&trouble)).charge, Charge::Nothing);
        assert_eq!(cut_short(&trouble).charge, Charge::Nothing);
        assert_eq!(
            fail_over(Trouble::Stream(&StreamTrouble::NoFirstToken)).charge,
            Charge::Count
        );
    }

    #[test]
    fn a_stall_after_the_first_token_ends_the_stream_with_an_error_event() {
        let Decision::EndStream(EndStream { event, failure, .. }) = decide(
            Outcome::StreamCutShort(&StreamTrouble::Stalled(Duration::from_secs(20))),
        ) else {
            panic!("ends the stream")
        };
        assert!(event.starts_with("data: {"), "{event}");
        assert!(event.contains("\"stream_stalled\""), "{event}");
        assert_eq!(failure.cause, Cause::SlowResponses);
    }

    #[test]
    fn when_every_upstream_failed_the_client_learns_the_right_status() {
        let one = |failure: Failure| Tally {
            attempts: 1,
            last: Some(failure),
            ..Tally::default()
        };
        let timed_out = Failure {
            cause: Cause::SlowResponses,
            reason: "no answer within 1.0 s".into(),
            retry_after: None,
            timed_out: true,
        };
        assert_eq!(
            exhausted("r", &one(timed_out.clone())).status,
            StatusCode::GATEWAY_TIMEOUT
        );
        let limited = Failure {
            cause: Cause::RateLimited,
            timed_out: false,
            ..timed_out.clone()
        };
        assert_eq!(
            exhausted("r", &one(limited)).status,
            StatusCode::TOO_MANY_REQUESTS
        );
        let skipped = Tally {
            unexpressible: Some("n > 1".into()),
            ..Tally::default()
        };
        assert_eq!(exhausted("r", &skipped).status, StatusCode::BAD_REQUEST);
        let two = Tally {
            attempts: 2,
            last: Some(timed_out),
            ..Tally::default()
        };
        assert_eq!(exhausted("r", &two).status, StatusCode::BAD_GATEWAY);
    }

    fn any_fault() -> impl Strategy<Value = StreamFault> {
        prop_oneof![
            ".{0,40}".prop_map(StreamFault::Upstream),
            ".{0,40}".prop_map(StreamFault::Garbage),
            Just(StreamFault::Truncated),
            ".{0,40}".prop_map(StreamFault::Broken),
        ]
    }

    fn any_trouble() -> impl Strategy<Value = StreamTrouble> {
        prop_oneof![
            Just(StreamTrouble::RequestDeadline),
            Just(StreamTrouble::NoFirstToken),
            (0u64..100_000).prop_map(|ms| StreamTrouble::Stalled(Duration::from_millis(ms))),
            (0usize..10_000_000).prop_map(StreamTrouble::NoTokenWithin),
            any_fault().prop_map(StreamTrouble::Fault),
        ]
    }

    /// Bodies the way providers and whatever sits in front of them send them.
    fn any_body() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..200),
            (
                "[a-z_]{0,20}",
                "[a-zA-Z ]{0,40}",
                prop_oneof![Just("error"), Just("detail")]
            )
                .prop_map(|(kind, message, key)| format!(
                    r#"{{"{key}":{{"type":"{kind}","message":"{message}","code":"{kind}"}}}}"#
                )
                .into_bytes()),
            Just(b"<html><title>Just a moment...</title></html>".to_vec()),
        ]
    }

    proptest! {
        #[test]
        fn nothing_after_the_first_byte_is_ever_retried(trouble in any_trouble()) {
            let decision = decide(Outcome::StreamCutShort(&trouble));
            prop_assert!(matches!(decision, Decision::EndStream(_)), "{:?}", decision);
        }

        #[test]
        fn a_stream_that_fails_before_the_first_byte_moves_on(trouble in any_trouble()) {
            let decision = decide(Outcome::Failed(Trouble::Stream(&trouble)));
            prop_assert!(matches!(decision, Decision::FailOver(_)), "{:?}", decision);
        }

        #[test]
        fn every_refusal_has_one_decision_and_only_4xx_are_handed_back(
            status in 100u16..600,
            body in any_body(),
            retry_after in proptest::option::of(0u32..100_000),
        ) {
            let mut h = HeaderMap::new();
            if let Some(s) = retry_after {
                h.insert("retry-after", s.into());
            }
            match refusal(status, &h, &body) {
                Decision::HandBack => prop_assert!((400..500).contains(&status)),
                Decision::FailOver(FailOver { failure, charge }) => {
                    prop_assert!(charge != Charge::Nothing);
                    prop_assert!(!failure.reason.is_empty());
                    prop_assert!(failure.retry_after.is_none_or(|d| d <= Duration::from_secs(3600)));
                    prop_assert_eq!(failure.retry_after.is_some(), retry_after.is_some());
                }
                other => prop_assert!(false, "a refusal decided {:?}", other),
            }
        }

        #[test]
        fn server_errors_always_fail_over(status in 500u16..600, body in any_body()) {
            let decision = refusal(status, &HeaderMap::new(), &body);
            prop_assert!(matches!(decision, Decision::FailOver(_)), "{:?}", decision);
        }
    }
}
