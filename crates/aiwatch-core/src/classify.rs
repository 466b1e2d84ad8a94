//! Turns the evidence of one check into a verdict: who is affected, why, and what to do.
//!
//! The rules, in order: a dead connection on the user's side explains everything else; then
//! network trouble on the way to the provider (local) — which includes a failing answer that a
//! TLS interceptor or forwarding proxy made itself, without the provider's fingerprints; then
//! provider errors (global, confirmed or not by the official page); then account problems (never
//! an outage); then slow (past a layer's limit in `thresholds`, or over half the budget) or cut
//! answers; then what the official page says when every probe worked.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::assessment::{fuse, is_absence, OfficialReading, ProbeReading};
use crate::cause::{AdviceContext, Cause, Scope, Status};
use crate::evidence::{
    round_ms, CheckEvidence, ConnectOutcome, DnsOutcome, HttpOutcome, OfficialOutcome, ProbeReport,
    ProxyOutcome, Purpose, TlsOutcome, TlsProblem, TrustPath,
};
use crate::official::OfficialView;
use crate::service::Service;
use crate::signatures::{api_cause, web_cause, BodyMarker};
use crate::thresholds;
use crate::verdict::{EvidenceLine, OfficialSummary, Outcome, Verdict};

/// What one probe amounts to.
#[derive(Clone, Debug, PartialEq)]
struct Finding {
    cause: Cause,
    purpose: Purpose,
    host: String,
    /// One sentence on what was seen.
    detail: String,
    /// The service itself answered over HTTP.
    reached: bool,
    /// The issuer named when TLS was intercepted.
    issuer: Option<String>,
}

impl Finding {
    fn new(report: &ProbeReport, cause: Cause, reached: bool, detail: String) -> Self {
        Self {
            cause,
            purpose: report.purpose,
            host: report.host.clone(),
            detail,
            reached,
            issuer: None,
        }
    }
}

fn is_network_cause(cause: Cause) -> bool {
    matches!(
        cause,
        Cause::DnsFailure
            | Cause::DnsFiltered
            | Cause::TcpRefused
            | Cause::TcpTimeout
            | Cause::TlsIntercepted
            | Cause::TlsInvalid
            | Cause::ProxyError
            | Cause::CaptivePortal
    )
}

fn is_account_cause(cause: Cause) -> bool {
    matches!(
        cause,
        Cause::AuthInvalid
            | Cause::QuotaExhausted
            | Cause::RateLimited
            | Cause::RegionUnsupported
            | Cause::ModelUnavailable
            | Cause::PermissionDenied
    )
}

/// The cause and one sentence for a probe that stopped at some layer (DNS, TCP, proxy, TLS):
/// what the gateway says when it cannot reach an upstream.
pub fn connection_failure(report: &ProbeReport, budget: Duration) -> (Cause, String) {
    let finding = probe_finding(report, budget);
    (finding.cause, finding.detail)
}

/// Reads one layered probe from the outermost layer in.
fn probe_finding(report: &ProbeReport, budget: Duration) -> Finding {
    let fail = |cause, detail: String| Finding::new(report, cause, false, detail);
    if let Some(proxy) = &report.proxy {
        match &proxy.outcome {
            ProxyOutcome::Unreachable { error } => {
                return fail(
                    Cause::ProxyError,
                    format!("the proxy {} cannot be reached: {error}", proxy.url),
                )
            }
            ProxyOutcome::Rejected { status } => {
                return fail(
                    Cause::ProxyError,
                    format!(
                        "the proxy {} refused to connect to {} (HTTP {status})",
                        proxy.url, report.host
                    ),
                )
            }
            ProxyOutcome::Timeout => {
                return fail(
                    Cause::ProxyError,
                    format!("the proxy {} did not answer in time", proxy.url),
                )
            }
            ProxyOutcome::Tunnel | ProxyOutcome::Forwarded => {}
        }
    }
    match &report.dns {
        Some(DnsOutcome::Sinkhole { addresses, kind }) => {
            let list = join(addresses);
            return fail(
                Cause::DnsFiltered,
                format!("{} resolves to {list}: {}", report.host, kind.describe()),
            );
        }
        Some(DnsOutcome::NxDomain) => {
            return fail(
                Cause::DnsFailure,
                format!(
                    "{} does not exist according to your resolver (NXDOMAIN)",
                    report.host
                ),
            )
        }
        Some(DnsOutcome::NoRecords) => {
            return fail(
                Cause::DnsFailure,
                format!("your resolver has no address for {}", report.host),
            )
        }
        Some(DnsOutcome::Timeout) => {
            return fail(
                Cause::DnsFailure,
                format!("your resolver did not answer for {} in time", report.host),
            )
        }
        Some(DnsOutcome::Failed { error }) => {
            return fail(
                Cause::DnsFailure,
                format!("looking up {} failed: {error}", report.host),
            )
        }
        Some(DnsOutcome::MonitorStarved { error }) => {
            return fail(Cause::Unknown, starved(report, error))
        }
        _ => {}
    }
    if let Some(error) = report.connect.iter().find_map(|a| match &a.outcome {
        ConnectOutcome::MonitorStarved { error } => Some(error),
        _ => None,
    }) {
        return fail(Cause::Unknown, starved(report, error));
    }
    let connected = report
        .connect
        .iter()
        .any(|a| a.outcome == ConnectOutcome::Connected);
    if report.proxy.is_none() && !connected {
        let refused = report
            .connect
            .iter()
            .any(|a| a.outcome == ConnectOutcome::Refused);
        let addresses: Vec<_> = report
            .connect
            .iter()
            .map(|a| a.address.to_string())
            .collect();
        if refused {
            return fail(
                Cause::TcpRefused,
                format!(
                    "{} refused the connection ({})",
                    report.host,
                    addresses.join(", ")
                ),
            );
        }
        let reason = report.connect.iter().find_map(|a| match &a.outcome {
            ConnectOutcome::Failed { error } => Some(error.clone()),
            _ => None,
        });
        let detail = match (addresses.is_empty(), reason) {
            (true, _) => format!(
                "no connection to {} was attempted before the budget ran out",
                report.host
            ),
            (false, Some(reason)) => {
                format!("connecting to {} failed: {reason}", addresses.join(", "))
            }
            (false, None) => format!(
                "connecting to {} timed out (no answer)",
                addresses.join(", ")
            ),
        };
        return fail(Cause::TcpTimeout, detail);
    }
    let mut intercepted_by = None;
    if let Some(tls) = &report.tls {
        let issuer = tls.root_issuer().map(str::to_owned);
        match &tls.outcome {
            TlsOutcome::Trusted {
                via: TrustPath::NonPublic,
            } => intercepted_by = issuer.or(Some("a non-public CA".into())),
            TlsOutcome::Trusted { .. } => {}
            TlsOutcome::Untrusted {
                problem: TlsProblem::UnknownIssuer,
            } => {
                let mut f = fail(
                    Cause::TlsIntercepted,
                    format!(
                        "the certificate for {} was issued by {}, which no trusted root vouches for",
                        report.host,
                        issuer.as_deref().unwrap_or("an unknown issuer")
                    ),
                );
                f.issuer = issuer;
                return f;
            }
            TlsOutcome::Untrusted { problem } => {
                let what = match problem {
                    TlsProblem::Expired => {
                        "has expired (or this machine's clock is ahead)".to_owned()
                    }
                    TlsProblem::NotYetValid => {
                        "is not valid yet (or this machine's clock is behind)".to_owned()
                    }
                    TlsProblem::NameMismatch => format!("is not issued for {}", report.host),
                    TlsProblem::Other(e) => format!("is rejected: {e}"),
                    TlsProblem::UnknownIssuer => unreachable!("handled above"),
                };
                return fail(
                    Cause::TlsInvalid,
                    format!("the certificate for {} {what}", report.host),
                );
            }
            TlsOutcome::HandshakeFailed { error } => {
                return fail(
                    Cause::TlsInvalid,
                    format!("the TLS handshake with {} failed: {error}", report.host),
                )
            }
            TlsOutcome::Timeout => {
                return fail(
                    Cause::TcpTimeout,
                    format!(
                        "{} accepted the connection but the TLS handshake got no answer",
                        report.host
                    ),
                )
            }
        }
    }
    if let Some(to) = report.response().and_then(|r| portal_redirect(report, r)) {
        return fail(
            Cause::CaptivePortal,
            format!(
                "the plain-HTTP request to {} was redirected to {to}, an unrelated host: a portal intercepts plain HTTP",
                report.host
            ),
        );
    }
    let finding = match &report.http {
        None => fail(
            Cause::Unknown,
            format!(
                "no HTTP request to {} was made before the budget ran out",
                report.host
            ),
        ),
        Some(HttpOutcome::Timeout) if report.purpose == Purpose::Control => fail(
            Cause::TcpTimeout,
            format!("the control host {} did not answer in time", report.host),
        ),
        Some(HttpOutcome::Timeout) => Finding::new(
            report,
            Cause::ProviderError,
            true,
            format!(
                "{} accepted the request but sent no response within the budget",
                report.host
            ),
        ),
        Some(HttpOutcome::BodyTimeout { status }) => Finding::new(
            report,
            Cause::SlowResponses,
            true,
            format!(
                "{} answered HTTP {status} but the body did not finish within the budget",
                report.host
            ),
        ),
        Some(HttpOutcome::Protocol { error }) => Finding::new(
            report,
            Cause::ProviderError,
            true,
            format!("{} did not speak valid HTTP: {error}", report.host),
        ),
        Some(HttpOutcome::Response(response)) => {
            let status = response.status;
            match report.purpose {
                Purpose::Control => control_finding(report, response),
                Purpose::Web => {
                    let cause = web_cause(status, &response.markers);
                    let challenged = response.markers.contains(&BodyMarker::CloudflareChallenge);
                    let detail = match cause {
                        Cause::Ok if challenged => format!("{} answers HTTP {status} with Cloudflare's browser check, which every non-browser client gets; the edge is up", report.host),
                        Cause::Ok => format!("{} answers HTTP {status}", report.host),
                        Cause::BotChallenge => format!("{} blocks this IP at its edge (HTTP {status}{})", report.host, marker_text(&response.markers)),
                        Cause::RegionUnsupported => format!("{} says the service is not available in your country", report.host),
                        Cause::ProviderError => format!("{} answers HTTP {status}{}", report.host, marker_text(&response.markers)),
                        _ => format!("{} answers an unexpected HTTP {status}", report.host),
                    };
                    Finding::new(report, cause, true, detail)
                }
                Purpose::Api => {
                    let api = report.api.as_ref();
                    let key_sent = api.is_some_and(|a| a.key_present && a.key_withheld.is_none());
                    let cause = api_cause(
                        status,
                        response.provider_error.as_ref(),
                        &response.markers,
                        key_sent,
                    );
                    let call = api.map_or("the API", |a| a.call.as_str());
                    let error_text = response
                        .provider_error
                        .as_ref()
                        .map(|e| {
                            let code = e.code.as_deref().or(e.kind.as_deref()).unwrap_or("error");
                            match &e.message {
                                Some(m) => format!(" {code}: {m}"),
                                None => format!(" {code}"),
                            }
                        })
                        .unwrap_or_default();
                    let detail = match cause {
                        Cause::Ok if key_sent => format!(
                            "{call} succeeded (HTTP {status}{})",
                            api.and_then(|a| a.models)
                                .map(|n| format!(", {n} models"))
                                .unwrap_or_default()
                        ),
                        Cause::Ok => format!(
                            "{call} answered HTTP {status} without a key: the API is reachable"
                        ),
                        _ => format!(
                            "{call} answered HTTP {status}{error_text}{}",
                            marker_text(&response.markers)
                        ),
                    };
                    Finding::new(report, cause, true, detail)
                }
            }
        }
    };
    let mut finding = intermediary_finding(report, finding, intercepted_by.as_deref());
    if finding.cause == Cause::Ok {
        if let Some(issuer) = intercepted_by {
            finding.detail = format!(
                "{}; but TLS to {} is intercepted: the certificate chains to {issuer}, not a public CA",
                finding.detail, report.host
            );
            finding.cause = Cause::TlsIntercepted;
            finding.issuer = Some(issuer);
        } else if let Some(slow) = slowness(report, budget) {
            finding.cause = Cause::SlowResponses;
            finding.detail = format!("{} (slow: {slow})", finding.detail);
        }
    }
    finding
}

/// Why a probe that worked counts as slow: it used more than half of the budget, or its answer
/// started later than its layer's limit in `thresholds`. The control probe is never judged.
fn slowness(report: &ProbeReport, budget: Duration) -> Option<String> {
    let limit = match report.purpose {
        Purpose::Web => thresholds::WEB_FIRST_BYTE,
        Purpose::Api => thresholds::API_FIRST_BYTE,
        Purpose::Control => return None,
    };
    if let Some(total) = report.timings.total.filter(|t| *t > budget / 2) {
        return Some(format!("{:.0} ms", round_ms(total)));
    }
    report.timings.first_byte.filter(|t| *t > limit).map(|t| {
        format!(
            "first byte after {:.0} ms, over the {} s limit",
            round_ms(t),
            limit.as_secs()
        )
    })
}

/// The Location of a redirect that a captive portal made: a plain-HTTP service URL sent to a
/// host that is not the same site (see `network::hosts_related`). Over HTTPS only the
/// certificate's holder can redirect, and a redirect within the site (to https, to `www.`) is
/// normal. The control probe has its own rule (`control_finding`); redirects are never followed.
fn portal_redirect<'a>(
    report: &ProbeReport,
    response: &'a crate::evidence::HttpResponse,
) -> Option<&'a str> {
    let plain_http = report
        .url
        .get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("http://"));
    if report.purpose == Purpose::Control
        || !plain_http
        || !matches!(response.status, 301 | 302 | 303 | 307 | 308)
    {
        return None;
    }
    let location = response.location.as_deref()?;
    // A network-path reference (`//portal.example/login`) names a host too.
    let absolute = match location.strip_prefix("//") {
        Some(rest) => format!("http://{rest}"),
        None => location.to_owned(),
    };
    // A relative Location (`/login`) stays on the same host.
    let host = crate::network::url_host(&absolute)?;
    (!crate::network::hosts_related(host, &report.host)).then_some(location)
}

/// Whose failing answer it is when something in between could have made it.
///
/// A TLS interceptor (a chain trusted only through a local or `--ca-file` root) and a proxy that
/// forwards plain HTTP both see the request in the clear and can answer it themselves; a CONNECT
/// tunnel under a publicly trusted chain cannot (only the certificate's holder speaks inside it),
/// so it is not one. Such an answer belongs to the intermediary until the provider's own
/// fingerprints prove otherwise: its JSON error shape (a parsed `provider_error`) or one of its
/// own headers (`HttpResponse::provider_fingerprint`). Until then a failure that would blame
/// the provider (a 5xx, an overload, no answer, broken HTTP) or the account, or an unexpected
/// status, is the intermediary's — `tls_intercepted` or `proxy_error` — and the provider counts
/// The monitor's own exhaustion, said as such: it is no finding about the service.
fn starved(report: &ProbeReport, error: &str) -> String {
    format!(
        "this machine ran out of resources ({error}): the monitor cannot check {} until it recovers; this says nothing about the service",
        report.host
    )
}

/// as not reached.
fn intermediary_finding(
    report: &ProbeReport,
    mut finding: Finding,
    intercepted_by: Option<&str>,
) -> Finding {
    let blames_far_side = matches!(
        finding.cause,
        Cause::ProviderError | Cause::ProviderOverloaded | Cause::Unknown
    ) || is_account_cause(finding.cause);
    if !finding.reached || !blames_far_side {
        return finding;
    }
    let response = report.response();
    let proof = response.and_then(|r| {
        if r.provider_error.is_some() {
            Some("error body")
        } else if r.provider_fingerprint {
            Some("headers")
        } else {
            None
        }
    });
    let forwarding_proxy = report
        .proxy
        .as_ref()
        .filter(|p| p.outcome == ProxyOutcome::Forwarded);
    let (cause, via, who) = match (intercepted_by, forwarding_proxy, proof) {
        (Some(issuer), _, Some(proof)) => {
            finding.detail = format!(
                "{}; it came through TLS interception by {issuer}, but with the provider's own {proof}",
                finding.detail
            );
            return finding;
        }
        (_, _, Some(_)) | (None, None, None) => return finding,
        (Some(issuer), _, None) => (
            Cause::TlsIntercepted,
            format!("TLS interception by {issuer}"),
            "the interceptor",
        ),
        (None, Some(proxy), None) => (
            Cause::ProxyError,
            format!("the proxy {}", proxy.url),
            "the proxy",
        ),
    };
    let server = response
        .and_then(|r| r.server.as_deref())
        .map(|s| format!(" (server: {s})"))
        .unwrap_or_default();
    let tail = if response.is_some() {
        format!("{who} answered, not the provider")
    } else {
        "the provider itself was not seen".to_owned()
    };
    finding.detail = format!(
        "{}{server}, through {via} and without the provider's own error body or headers: {tail}",
        finding.detail
    );
    finding.cause = cause;
    finding.reached = false;
    finding.issuer = intercepted_by.map(str::to_owned);
    finding
}

fn control_finding(report: &ProbeReport, response: &crate::evidence::HttpResponse) -> Finding {
    let status = response.status;
    let expects_204 = report.url.ends_with("generate_204");
    let foreign_redirect = (300..400).contains(&status)
        && response
            .location
            .as_deref()
            .and_then(crate::network::url_host)
            .is_some_and(|h| !h.eq_ignore_ascii_case(&report.host));
    if foreign_redirect {
        let to = response.location.clone().unwrap_or_default();
        return Finding::new(
            report,
            Cause::CaptivePortal,
            false,
            format!(
                "the control request to {} was redirected to {to}",
                report.host
            ),
        );
    }
    if expects_204 && status == 200 && response.body_bytes > 0 {
        return Finding::new(report, Cause::CaptivePortal, false, format!("the control host {} answered with a page instead of 204: a portal intercepts plain HTTP", report.host));
    }
    if (200..300).contains(&status) {
        return Finding::new(
            report,
            Cause::Ok,
            true,
            format!(
                "the control host {} answers (HTTP {status}): your internet connection works",
                report.host
            ),
        );
    }
    Finding::new(
        report,
        Cause::Unknown,
        true,
        format!(
            "the control host {} answered an unexpected HTTP {status}",
            report.host
        ),
    )
}

fn marker_text(markers: &[BodyMarker]) -> String {
    let names: Vec<String> = markers
        .iter()
        .filter_map(|m| match m {
            BodyMarker::CloudflareChallenge => Some("Cloudflare challenge".into()),
            BodyMarker::CloudflareBlock { code: Some(c) } => Some(format!("Cloudflare error {c}")),
            BodyMarker::CloudflareBlock { code: None } => Some("Cloudflare block page".into()),
            BodyMarker::CloudflareRateLimit => Some("Cloudflare error 1015, rate limited".into()),
            BodyMarker::CloudflareOriginError { code } => Some(format!(
                "Cloudflare {code}: the provider's origin is failing"
            )),
            BodyMarker::CountryUnsupported => Some("country not supported".into()),
            BodyMarker::Html => None,
        })
        .collect();
    if names.is_empty() {
        String::new()
    } else {
        format!(", {}", names.join(", "))
    }
}

fn join<T: ToString>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Ranks findings so the one that explains the most comes first.
fn finding_rank(f: &Finding) -> u8 {
    match f.cause {
        c if !f.reached && is_network_cause(c) => 0,
        Cause::ProviderError | Cause::ProviderOverloaded => 1,
        Cause::BotChallenge | Cause::TlsIntercepted => 2,
        c if is_account_cause(c) => 3,
        Cause::TruncatedResponses => 4,
        Cause::SlowResponses => 5,
        Cause::Unknown => 6,
        _ => 7,
    }
}

struct Decision {
    status: Status,
    scope: Scope,
    cause: Cause,
    summary: String,
    /// The finding the advice is about, for its host and issuer.
    about: Option<Finding>,
}

/// Classifies one check. Pure: the same evidence and time give the same verdict.
pub fn classify(service: &Service, evidence: &CheckEvidence, now: DateTime<Utc>) -> Verdict {
    let budget = evidence.budget;
    let mut findings: Vec<Finding> = [&evidence.web, &evidence.api]
        .into_iter()
        .flatten()
        .map(|r| probe_finding(r, budget))
        .collect();
    if let Some(stream) = &evidence.stream {
        if let Some(f) = stream_finding(service, evidence, stream, budget) {
            findings.push(f);
        }
    }
    let control = evidence.control.as_ref().map(|r| probe_finding(r, budget));
    let view = match &evidence.official {
        OfficialOutcome::View(view) => Some(view),
        _ => None,
    };
    let decision = decide(
        service,
        &findings,
        control.as_ref(),
        view,
        &evidence.official,
    );

    let about = decision.about.as_ref();
    let ctx = AdviceContext {
        key_env: service.api_key_env.as_deref(),
        host: about.map(|f| f.host.as_str()),
        issuer: about.and_then(|f| f.issuer.as_deref()),
        local_service: service.local,
    };
    let mut advice = decision.cause.advice(&ctx);
    if decision.cause == Cause::Ok && view.is_none() && !service.local {
        if let OfficialOutcome::Unavailable { .. } = evidence.official {
            advice.push("The official status page could not be read from here; the verdict rests on aiwatch's own probes.".into());
        }
    }
    if findings.iter().any(|f| f.purpose == Purpose::Api)
        && evidence
            .api
            .as_ref()
            .and_then(|r| r.api.as_ref())
            .is_some_and(|a| !a.key_present && a.key_env.is_some())
        && decision.cause == Cause::Ok
    {
        let env = service.api_key_env.as_deref().unwrap_or_default();
        advice.push(format!(
            "Set {env} to also check that your key and quota work."
        ));
    }

    Verdict {
        service: service.name.clone(),
        status: decision.status,
        scope: decision.scope,
        cause: decision.cause,
        summary: decision.summary,
        evidence: evidence_lines(evidence, &findings, control.as_ref()),
        advice,
        official: view.map(OfficialSummary::from),
        checked_at: now,
    }
}

fn stream_finding(
    service: &Service,
    evidence: &CheckEvidence,
    stream: &crate::evidence::StreamEvidence,
    budget: Duration,
) -> Option<Finding> {
    let host = evidence
        .api
        .as_ref()
        .map_or_else(String::new, |r| r.host.clone());
    let make = |cause, detail: String| Finding {
        cause,
        purpose: Purpose::Api,
        host: host.clone(),
        detail,
        reached: true,
        issuer: None,
    };
    if let Some(status) = stream.status.filter(|s| !(200..300).contains(s)) {
        let cause = api_cause(status, stream.provider_error.as_ref(), &[], true);
        let what = stream
            .provider_error
            .as_ref()
            .and_then(|e| e.message.clone())
            .unwrap_or_default();
        return Some(make(
            cause,
            format!(
                "the streamed completion with {} failed: HTTP {status} {what}",
                stream.model
            ),
        ));
    }
    stream.status?;
    if !stream.finished {
        let why = stream
            .error
            .clone()
            .unwrap_or_else(|| "the stream closed early".into());
        return Some(make(
            Cause::TruncatedResponses,
            format!("the streamed completion with {} ended without its finish marker after {} chunks: {why}", stream.model, stream.chunks),
        ));
    }
    if let Some(ttft) = stream.time_to_first_token {
        if ttft > budget / 2 || ttft > thresholds::STREAM_FIRST_TOKEN {
            return Some(make(
                Cause::SlowResponses,
                format!(
                    "the first token from {} took {:.0} ms (limit {} s)",
                    stream.model,
                    round_ms(ttft),
                    thresholds::STREAM_FIRST_TOKEN.as_secs()
                ),
            ));
        }
    }
    let _ = service;
    Some(make(
        Cause::Ok,
        format!(
            "a streamed completion with {} finished cleanly",
            stream.model
        ),
    ))
}

fn decide(
    service: &Service,
    findings: &[Finding],
    control: Option<&Finding>,
    view: Option<&OfficialView>,
    official: &OfficialOutcome,
) -> Decision {
    let title = &service.title;
    let signal = view.map_or(Status::Unknown, |v| v.signal);
    let official_reading = match official {
        OfficialOutcome::NotConfigured => OfficialReading::None,
        OfficialOutcome::Unavailable { .. } => OfficialReading::Unread,
        OfficialOutcome::View(v) => OfficialReading::Read(v.signal),
    };
    let incident_title = view
        .and_then(|v| v.incidents.first())
        .map(|i| i.name.clone());
    let official_phrase = match (official, incident_title.as_deref()) {
        (_, Some(t)) => format!("the provider reports “{t}”"),
        (OfficialOutcome::View(v), None) => format!(
            "the official page says {}",
            v.description
                .clone()
                .unwrap_or_else(|| signal_word(v.signal).into())
        ),
        _ => String::new(),
    };

    let mut ranked: Vec<&Finding> = findings.iter().collect();
    ranked.sort_by_key(|f| finding_rank(f));
    let unreached: Vec<&Finding> = ranked
        .iter()
        .copied()
        .filter(|f| !f.reached && f.cause != Cause::Ok)
        .collect();
    let all_unreached = !findings.is_empty() && unreached.len() == findings.len();
    let top = unreached.first().or(ranked.first()).copied();
    let detail = top.map(|f| f.detail.clone()).unwrap_or_default();

    // What the probes say, read the one way the daemon reads its observations too. A local
    // server (Ollama, LM Studio) needs no internet, so the control host says nothing about it.
    let control_down = control
        .filter(|_| !service.local)
        .is_some_and(|c| all_unreached && !c.reached && is_network_cause(c.cause));
    let reading = match (unreached.first(), top.map(|f| f.cause)) {
        _ if control_down => {
            let c = control.map_or(Cause::Unknown, |c| c.cause);
            let cause = if c == Cause::CaptivePortal {
                c
            } else {
                unreached.first().map_or(c, |f| f.cause)
            };
            ProbeReading::MonitorOffline(cause)
        }
        (Some(f), _) if service.local && is_absence(f.cause) => ProbeReading::NotRunning(f.cause),
        (Some(f), _) => ProbeReading::Unseen(f.cause),
        (None, None) => ProbeReading::NotChecked,
        (None, Some(cause)) => match cause {
            // The request failed: for this check that is every request (share 1 of 1), an
            // outage whatever the status code — the same rule `serve` applies to a run of them.
            Cause::ProviderError | Cause::ProviderOverloaded => ProbeReading::Failing {
                status: Status::Outage,
                cause,
            },
            Cause::TruncatedResponses | Cause::SlowResponses => ProbeReading::Failing {
                status: Status::Degraded,
                cause,
            },
            Cause::BotChallenge => ProbeReading::Unseen(cause),
            Cause::TlsIntercepted => ProbeReading::Intercepted(cause),
            c if is_account_cause(c) => ProbeReading::Account(c),
            Cause::Unknown => ProbeReading::Inconclusive,
            _ => ProbeReading::Passing,
        },
    };
    let assessment = fuse(reading, official_reading);
    let mut scope = assessment.scope;

    let summary = match reading {
        ProbeReading::MonitorOffline(Cause::CaptivePortal) => format!(
            "{title} cannot be checked: this network holds traffic behind a login page ({})",
            control.map(|c| c.detail.as_str()).unwrap_or_default()
        ),
        ProbeReading::MonitorOffline(_) => format!(
            "Your internet connection is the problem, not {title}: {detail}, and the control host fails too ({})",
            control.map(|c| c.detail.as_str()).unwrap_or_default()
        ),
        ProbeReading::NotRunning(_) => {
            format!("{title} is not running on this machine: {detail}")
        }
        ProbeReading::Unseen(_) if assessment.cause == Cause::OfficialIncident => {
            format!("{title} is down for everyone: {official_phrase}, and {detail}")
        }
        ProbeReading::Unseen(Cause::BotChallenge) => {
            format!("{title}'s edge blocks you: {detail}")
        }
        ProbeReading::Unseen(_) => {
            let official_note = match signal {
                Status::Operational => format!(
                    "; the official page says {title} is operational, so the problem is on your side"
                ),
                Status::Unknown => String::new(),
                _ => format!("; note that {official_phrase}"),
            };
            format!("{title} is unreachable from here: {detail}{official_note}")
        }
        ProbeReading::Intercepted(_) => {
            format!("{title} is reachable, but through TLS interception: {detail}")
        }
        ProbeReading::Account(cause) => {
            let what = match cause {
                Cause::AuthInvalid => "your API key is rejected",
                Cause::QuotaExhausted => "your account is out of quota",
                Cause::RateLimited => "your account is rate limited",
                Cause::RegionUnsupported => "it is not offered where your traffic comes from",
                Cause::ModelUnavailable => "the model is not available to you",
                _ => "your key lacks permission",
            };
            format!("{title} is up, but {what}: {detail}")
        }
        ProbeReading::Failing { .. } if assessment.cause == Cause::OfficialIncident => {
            format!("{title} is failing for everyone, confirmed: {official_phrase}; {detail}")
        }
        ProbeReading::Failing { .. } if assessment.cause == Cause::Maintenance => {
            format!("{title} is failing during a maintenance window the provider announced: {detail}")
        }
        ProbeReading::Failing {
            cause: Cause::TruncatedResponses,
            ..
        } => format!("{title} answers, but cuts responses off: {detail}"),
        ProbeReading::Failing {
            cause: Cause::SlowResponses,
            ..
        } => {
            // A slow control host too means the slowness is this machine's connection.
            if control.is_some_and(|c| c.cause == Cause::SlowResponses) {
                scope = Scope::Local;
            }
            format!("{title} works but is slow: {detail}")
        }
        ProbeReading::Failing { .. } if signal == Status::Operational => format!(
            "Possible unreported {title} outage: {detail}, while the official status page is green"
        ),
        ProbeReading::Failing { .. } => {
            format!("{title} is failing on the provider's side: {detail}")
        }
        ProbeReading::Inconclusive => format!("Could not tell how {title} is doing: {detail}"),
        ProbeReading::Passing | ProbeReading::NotChecked => {
            let working: Vec<&str> = findings.iter().map(|f| f.detail.as_str()).collect();
            let proof = if working.is_empty() {
                String::new()
            } else {
                format!(" ({})", working.join("; "))
            };
            match assessment.cause {
                Cause::Maintenance => {
                    format!("{title} works from here, but is in a maintenance window{proof}")
                }
                Cause::OfficialIncident if findings.is_empty() => {
                    format!("{title} has nothing to probe; {official_phrase}")
                }
                Cause::OfficialIncident => format!(
                    "{title} is reported down by the provider, while our probes pass: {official_phrase}{proof}"
                ),
                _ if findings.is_empty() && official_phrase.is_empty() => {
                    format!("{title} has nothing to probe")
                }
                _ if findings.is_empty() => {
                    format!("{title} has nothing to probe; {official_phrase}")
                }
                _ if view.is_some_and(|v| !v.incidents.is_empty()) => format!(
                    "{title} is up{proof}; {official_phrase}, not tied to this service"
                ),
                _ => format!("{title} is up{proof}"),
            }
        }
    };
    Decision {
        status: assessment.status,
        scope,
        cause: assessment.cause,
        summary,
        about: top.cloned(),
    }
}

fn signal_word(signal: Status) -> &'static str {
    match signal {
        Status::Operational => "operational",
        Status::Degraded => "degraded",
        Status::Outage => "outage",
        Status::Maintenance => "under maintenance",
        Status::NotRunning => "not running",
        Status::Unknown => "unknown",
    }
}

fn duration_ms(d: Option<Duration>) -> Option<f64> {
    d.map(round_ms)
}

/// The evidence lines of a verdict: what each layer showed, with its timing.
fn evidence_lines(
    evidence: &CheckEvidence,
    findings: &[Finding],
    control: Option<&Finding>,
) -> Vec<EvidenceLine> {
    let mut lines = Vec::new();
    for report in [&evidence.web, &evidence.api].into_iter().flatten() {
        probe_lines(report, &mut lines);
        if let Some(f) = findings
            .iter()
            .find(|f| f.purpose == report.purpose && f.host == report.host)
        {
            let layer = if report.purpose == Purpose::Api {
                "api"
            } else {
                "http"
            };
            if report.http.is_some() {
                lines.push(EvidenceLine {
                    layer: layer.into(),
                    // An answer that is not the provider's (a portal's, an intermediary's) failed.
                    outcome: if f.reached {
                        outcome_of(f.cause)
                    } else {
                        Outcome::Fail
                    },
                    detail: f.detail.clone(),
                    ms: duration_ms(report.timings.total),
                });
            }
        }
    }
    if let Some(stream) = &evidence.stream {
        let ok = stream.finished && stream.status.is_some_and(|s| (200..300).contains(&s));
        let detail = match (stream.time_to_first_token, stream.finished) {
            (Some(t), true) => format!(
                "{}: first token after {:.0} ms, {} chunks, finished",
                stream.model,
                round_ms(t),
                stream.chunks
            ),
            (_, false) => format!(
                "{}: {} chunks, no finish marker{}",
                stream.model,
                stream.chunks,
                stream
                    .error
                    .as_ref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            ),
            (None, true) => format!("{}: finished without content", stream.model),
        };
        lines.push(EvidenceLine {
            layer: "stream".into(),
            outcome: if ok { Outcome::Ok } else { Outcome::Fail },
            detail,
            ms: duration_ms(stream.total),
        });
    }
    match &evidence.official {
        OfficialOutcome::NotConfigured => {}
        OfficialOutcome::Unavailable { error } => lines.push(EvidenceLine {
            layer: "official".into(),
            outcome: Outcome::Warn,
            detail: format!("official status page unavailable: {error}"),
            ms: None,
        }),
        OfficialOutcome::View(view) => {
            let components: Vec<String> = view
                .components
                .iter()
                .map(|c| format!("{} {}", c.name, c.status))
                .collect();
            let mut detail = format!(
                "page {}",
                view.description
                    .clone()
                    .unwrap_or_else(|| signal_word(view.signal).into())
            );
            if !components.is_empty() {
                detail.push_str(&format!("; {}", components.join(", ")));
            }
            for incident in &view.incidents {
                detail.push_str(&format!(
                    "; incident “{}” ({}, impact {})",
                    incident.name, incident.status, incident.impact
                ));
            }
            for m in &view.maintenances {
                detail.push_str(&format!("; maintenance “{}” ({})", m.name, m.status));
            }
            let outcome = match view.signal {
                Status::Operational if view.incidents.is_empty() => Outcome::Ok,
                Status::Outage => Outcome::Fail,
                _ => Outcome::Warn,
            };
            lines.push(EvidenceLine {
                layer: "official".into(),
                outcome,
                detail,
                ms: None,
            });
        }
    }
    if let (Some(report), Some(f)) = (&evidence.control, control) {
        lines.push(EvidenceLine {
            layer: "control".into(),
            outcome: if f.cause == Cause::Ok {
                Outcome::Ok
            } else {
                Outcome::Fail
            },
            detail: f.detail.clone(),
            ms: duration_ms(report.timings.total),
        });
    }
    lines
}

fn outcome_of(cause: Cause) -> Outcome {
    match cause {
        Cause::Ok => Outcome::Ok,
        Cause::SlowResponses | Cause::TlsIntercepted => Outcome::Warn,
        _ => Outcome::Fail,
    }
}

/// The DNS, proxy, TCP and TLS lines of one probe.
fn probe_lines(report: &ProbeReport, lines: &mut Vec<EvidenceLine>) {
    let t = &report.timings;
    if let Some(proxy) = &report.proxy {
        let (outcome, detail) = match &proxy.outcome {
            ProxyOutcome::Tunnel => (
                Outcome::Ok,
                format!("via proxy {} (CONNECT tunnel)", proxy.url),
            ),
            ProxyOutcome::Forwarded => (Outcome::Ok, format!("via proxy {}", proxy.url)),
            ProxyOutcome::Unreachable { error } => (
                Outcome::Fail,
                format!("proxy {} unreachable: {error}", proxy.url),
            ),
            ProxyOutcome::Rejected { status } => (
                Outcome::Fail,
                format!("proxy {} answered CONNECT with HTTP {status}", proxy.url),
            ),
            ProxyOutcome::Timeout => (Outcome::Fail, format!("proxy {} timed out", proxy.url)),
        };
        lines.push(EvidenceLine {
            layer: "proxy".into(),
            outcome,
            detail,
            ms: None,
        });
    }
    if let Some(dns) = &report.dns {
        let (outcome, detail) = match dns {
            DnsOutcome::Resolved { addresses } => (
                Outcome::Ok,
                format!("{} → {}", report.host, join(addresses)),
            ),
            DnsOutcome::Sinkhole { addresses, .. } => (
                Outcome::Fail,
                format!("{} → {} (blocked)", report.host, join(addresses)),
            ),
            DnsOutcome::NxDomain => (Outcome::Fail, format!("{}: NXDOMAIN", report.host)),
            DnsOutcome::NoRecords => (Outcome::Fail, format!("{}: no A/AAAA records", report.host)),
            DnsOutcome::Timeout => (
                Outcome::Fail,
                format!("{}: resolver timed out", report.host),
            ),
            DnsOutcome::Failed { error } => (Outcome::Fail, format!("{}: {error}", report.host)),
            DnsOutcome::MonitorStarved { error } => {
                (Outcome::Fail, format!("this machine: {error}"))
            }
            DnsOutcome::Skipped { reason } => (Outcome::Skip, format!("{}: {reason}", report.host)),
        };
        lines.push(EvidenceLine {
            layer: "dns".into(),
            outcome,
            detail,
            ms: duration_ms(t.dns),
        });
    }
    for attempt in &report.connect {
        let (outcome, what) = match &attempt.outcome {
            ConnectOutcome::Connected => (Outcome::Ok, "connected".to_owned()),
            ConnectOutcome::Refused => (Outcome::Fail, "refused".to_owned()),
            ConnectOutcome::Timeout => (Outcome::Fail, "timed out".to_owned()),
            ConnectOutcome::Failed { error } => (Outcome::Fail, error.clone()),
            ConnectOutcome::MonitorStarved { error } => {
                (Outcome::Fail, format!("this machine: {error}"))
            }
        };
        lines.push(EvidenceLine {
            layer: "tcp".into(),
            outcome,
            detail: format!("{} {what}", attempt.address),
            ms: duration_ms(attempt.elapsed),
        });
    }
    if let Some(tls) = &report.tls {
        let leaf = tls.chain.first();
        let expiry = leaf
            .and_then(|c| c.not_after)
            .map(|d| format!(", expires {}", d.format("%Y-%m-%d")))
            .unwrap_or_default();
        let issuer = tls
            .chain
            .first()
            .map(|c| c.issuer.clone())
            .unwrap_or_else(|| "no certificate".into());
        let (outcome, detail) = match &tls.outcome {
            TlsOutcome::Trusted {
                via: TrustPath::Public,
            } => (
                Outcome::Ok,
                format!(
                    "{} issued by {issuer}{expiry}",
                    tls.version.clone().unwrap_or_default()
                ),
            ),
            TlsOutcome::Trusted {
                via: TrustPath::Expected,
            } => (
                Outcome::Ok,
                format!("issued by {issuer} (the service's own CA){expiry}"),
            ),
            TlsOutcome::Trusted {
                via: TrustPath::NonPublic,
            } => (
                Outcome::Warn,
                format!(
                    "issued by {issuer}, trusted only through a local or --ca-file root{expiry}"
                ),
            ),
            TlsOutcome::Untrusted { problem } => (
                Outcome::Fail,
                format!("issued by {issuer}: {problem:?}{expiry}"),
            ),
            TlsOutcome::HandshakeFailed { error } => {
                (Outcome::Fail, format!("handshake failed: {error}"))
            }
            TlsOutcome::Timeout => (Outcome::Fail, "handshake timed out".into()),
        };
        lines.push(EvidenceLine {
            layer: "tls".into(),
            outcome,
            detail: detail.trim().to_owned(),
            ms: duration_ms(t.tls),
        });
    }
}
