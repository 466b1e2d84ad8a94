//! The status poller against real HTTP on loopback: state changes, 304 revalidation, 429 with
//! Retry-After, 500 backoff and recovery, slow bodies, size caps, staleness and HTML served as 200.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aiwatch_core::official::{ComponentStatus, Indicator};
use aiwatch_core::service::StatusSource;
use aiwatch_core::Status as OfficialSignal;
use aiwatch_probe::dns::Dns;
use aiwatch_probe::layered::ProbeContext;
use aiwatch_probe::poller::{
    Backoff, Clock, Freshness, PollTarget, Poller, PollerOptions, SourceState,
};
use aiwatch_probe::tls::Trust;
use aiwatch_probe::{DnsChoice, ProxySettings};
use aiwatch_testkit::{
    summary_operational, summary_with_incident, DnsAnswer, FakeServer, FakeStatusPage, Reply, World,
};
use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A probe context whose resolver is never asked (the pages are on 127.0.0.1).
fn loopback_ctx() -> ProbeContext {
    ProbeContext {
        dns: Dns::new(&DnsChoice::Server("127.0.0.1:9".parse().unwrap()), ms(200)).unwrap(),
        proxies: ProxySettings::none(),
        trust: Trust::new(&[]).unwrap(),
    }
}

fn source_of(page: &FakeStatusPage) -> StatusSource {
    StatusSource::Statuspage(page.url("127.0.0.1"))
}

/// Fast, jitter-free options: every wait is exact.
fn fast(interval: Duration) -> PollerOptions {
    PollerOptions {
        interval,
        jitter: 0.0,
        request_timeout: ms(1000),
        backoff: Backoff {
            base: interval,
            max: ms(1500),
            retry_budget: 10,
        },
        stale_after: Duration::from_secs(60),
        ..PollerOptions::default()
    }
}

fn poller_for(page: &FakeStatusPage, options: PollerOptions) -> Arc<Poller> {
    Arc::new(Poller::new(
        loopback_ctx(),
        vec![PollTarget::new(source_of(page))],
        options,
    ))
}

/// A poller running in the background until `stop`.
struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

fn start(poller: &Arc<Poller>) -> Running {
    let (stop, stopped) = oneshot::channel::<()>();
    let poller = Arc::clone(poller);
    let task = tokio::spawn(async move {
        poller
            .run(async {
                let _ = stopped.await;
            })
            .await;
    });
    Running { stop, task }
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(ms(1000), self.task)
            .await
            .expect("the poller stops when asked")
            .expect("the poller task did not panic");
    }
}

/// Waits (at most 2 s) until the only page's state satisfies `condition`.
async fn wait_until(
    poller: &Poller,
    what: &str,
    mut condition: impl FnMut(&SourceState) -> bool,
) -> SourceState {
    let mut updates = poller.subscribe();
    let found = tokio::time::timeout(
        Duration::from_secs(2),
        updates.wait_for(|states| condition(&states[0])),
    )
    .await;
    match found {
        Ok(Ok(states)) => states[0].clone(),
        _ => panic!(
            "timed out waiting for: {what}; state: {:#?}",
            poller.snapshot()
        ),
    }
}

/// A clock the test moves by hand.
#[derive(Clone)]
struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    fn new() -> Self {
        Self(Arc::new(Mutex::new(
            DateTime::parse_from_rfc3339("2026-01-15T10:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
        )))
    }
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
    fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += TimeDelta::from_std(by).unwrap();
    }
    fn clock(&self) -> Clock {
        let me = self.clone();
        Clock::from_fn(move || me.now())
    }
}

#[tokio::test]
async fn poller_picks_up_a_page_that_changes_state() {
    let page = FakeStatusPage::start(None).await;
    page.set_summary(&summary_operational(&["API", "ChatGPT"]));
    let poller = poller_for(&page, fast(ms(40)));
    let running = start(&poller);

    let green = wait_until(&poller, "a first read", |s| s.status.is_some()).await;
    let first = green.status.clone().unwrap();
    assert_eq!(first.indicator, Some(Indicator::None));
    assert_eq!(
        first.view_for(&["API".into()]).signal,
        OfficialSignal::Operational
    );
    assert_eq!(green.last_changed_at, green.last_success_at);

    page.set_summary(&summary_with_incident(
        &[("API", "major_outage"), ("ChatGPT", "operational")],
        "API errors",
        "critical",
    ));
    let red = wait_until(&poller, "the incident", |s| {
        s.status.as_ref().is_some_and(|p| !p.incidents.is_empty())
    })
    .await;
    running.stop().await;

    let now = red.status.unwrap();
    assert_eq!(now.indicator, Some(Indicator::Critical));
    assert_eq!(now.incidents[0].name, "API errors");
    assert_eq!(now.components[0].status, ComponentStatus::MajorOutage);
    assert_eq!(now.view_for(&["API".into()]).signal, OfficialSignal::Outage);
    assert_eq!(
        now.view_for(&["ChatGPT".into()]).signal,
        OfficialSignal::Operational
    );
    assert!(red.last_changed_at > green.last_changed_at);
    assert_eq!(red.stats.failures, 0);
    assert!(red.stats.reads >= 2, "{:?}", red.stats);
}

#[tokio::test]
async fn not_modified_keeps_the_parse_and_counts_as_a_fresh_read() {
    let page = FakeStatusPage::start(None).await;
    page.set_etag(Some("v1"));
    let clock = ManualClock::new();
    let poller = poller_for(
        &page,
        PollerOptions {
            clock: clock.clock(),
            ..fast(ms(40))
        },
    );

    poller.poll_all().await;
    let read = poller.snapshot().remove(0);
    assert_eq!(read.validators.etag.as_deref(), Some("\"v1\""));
    let kept = read.status.clone().expect("a first read");

    clock.advance(Duration::from_secs(30));
    poller.poll_all().await;
    let revalidated = poller.snapshot().remove(0);

    let requests = page.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].header("if-none-match"), None);
    assert_eq!(requests[1].header("if-none-match"), Some("\"v1\""));
    assert_eq!(revalidated.stats.not_modified, 1);
    assert_eq!(revalidated.stats.reads, 1);
    assert!(
        Arc::ptr_eq(revalidated.status.as_ref().unwrap(), &kept),
        "a 304 keeps the parse it confirms"
    );
    assert_eq!(
        revalidated.last_success_at,
        Some(clock.now()),
        "a 304 is a fresh read"
    );
    assert_eq!(revalidated.last_changed_at, read.last_changed_at);
    assert_eq!(revalidated.freshness(clock.now()), Freshness::Fresh);
}

#[tokio::test]
async fn last_modified_is_sent_back_as_if_modified_since() {
    let server = FakeServer::start(None).await;
    let stamp = "Thu, 15 Jan 2026 10:00:00 GMT";
    server.route(
        "GET",
        "/api/v2/summary.json",
        Reply::dynamic(move |seen| match seen.header("if-modified-since") {
            Some(s) if s == stamp => Reply::empty(304),
            _ => Reply::bytes(200, "application/json", summary_operational(&["API"]))
                .header("last-modified", stamp),
        }),
    );
    let poller = Poller::new(
        loopback_ctx(),
        vec![PollTarget::new(StatusSource::Statuspage(
            server.url("127.0.0.1"),
        ))],
        fast(ms(40)),
    );
    poller.poll_all().await;
    poller.poll_all().await;
    let state = poller.snapshot().remove(0);
    assert_eq!(
        server.requests()[1].header("if-modified-since"),
        Some(stamp)
    );
    assert_eq!((state.stats.reads, state.stats.not_modified), (1, 1));
    assert!(state.status.is_some());
}

#[tokio::test]
async fn rate_limited_page_waits_for_retry_after_before_the_next_poll() {
    let page = FakeStatusPage::start(None).await;
    page.fail_with(Reply::text(429, "text/plain", "slow down").header("retry-after", "1"));
    // Without the Retry-After the next poll would come 40 ms later.
    let poller = poller_for(&page, fast(ms(40)));
    let running = start(&poller);

    let limited = wait_until(&poller, "the 429", |s| s.stats.polls >= 1).await;
    let seen_at = Instant::now();
    page.recover();
    assert_eq!(limited.stats.rate_limited, 1);
    assert_eq!(limited.retry_after, Some(Duration::from_secs(1)));
    let error = limited.last_error.clone().unwrap();
    assert!(
        error.contains("HTTP 429") && error.contains("retry after 1s"),
        "{error}"
    );
    assert_eq!(
        limited.next_poll_at.unwrap() - limited.last_attempt_at.unwrap(),
        TimeDelta::seconds(1)
    );

    let recovered = wait_until(&poller, "the next poll", |s| s.stats.polls >= 2).await;
    let waited = seen_at.elapsed();
    running.stop().await;
    assert!(waited >= ms(900), "polled again after only {waited:?}");
    assert!(recovered.status.is_some() && recovered.last_error.is_none());
    assert_eq!(page.requests().len(), 2);
}

#[tokio::test]
async fn server_errors_back_off_exponentially_then_recover() {
    let page = FakeStatusPage::start(None).await;
    page.fail_with(Reply::text(
        500,
        "text/html",
        "<h1>Internal Server Error</h1>",
    ));
    let poller = poller_for(&page, fast(ms(40)));
    let running = start(&poller);

    let mut attempts = Vec::new();
    let failing = wait_until(&poller, "four failures", |s| {
        if let Some(at) = s.last_attempt_at {
            if attempts.last() != Some(&at) {
                attempts.push(at);
            }
        }
        s.consecutive_failures >= 4
    })
    .await;
    // Waits of 40, 80, 160 ms (jitter is off), each plus the request's own time.
    let gaps: Vec<i64> = attempts
        .windows(2)
        .map(|w| (w[1] - w[0]).num_milliseconds())
        .collect();
    assert_eq!(gaps.len(), 3, "{gaps:?}");
    for (gap, wait) in gaps.iter().zip([40, 80, 160]) {
        assert!((wait..wait + 250).contains(gap), "gaps {gaps:?}");
    }
    assert_eq!(
        failing.next_poll_at.unwrap() - failing.last_attempt_at.unwrap(),
        TimeDelta::milliseconds(320),
        "the fifth try waits twice as long again"
    );
    assert!(failing.last_error.as_deref().unwrap().contains("HTTP 500"));
    assert_eq!(failing.failing_since, Some(attempts[0]));
    assert!(failing.status.is_none(), "a 500 is never a reading");

    page.recover();
    let healthy = wait_until(&poller, "recovery", |s| s.consecutive_failures == 0).await;
    running.stop().await;
    assert!(healthy.status.is_some());
    assert_eq!(healthy.last_error, None);
    assert_eq!(healthy.failing_since, None);
    assert_eq!(healthy.stats.failures, 4);
    assert_eq!(
        healthy.next_poll_at.unwrap() - healthy.last_attempt_at.unwrap(),
        TimeDelta::milliseconds(40),
        "back to the normal interval"
    );
}

#[tokio::test]
async fn slow_body_times_out_within_the_request_budget() {
    let page = FakeStatusPage::start(None).await;
    // One byte every 50 ms: the page would take many seconds to arrive, against a 300 ms
    // budget, so finishing within 3 s proves the budget cut it, with room for a slow machine.
    page.fail_with(
        Reply::slow_body(200, summary_operational(&["API"]), 1, ms(50))
            .header("content-type", "application/json"),
    );
    let poller = poller_for(
        &page,
        PollerOptions {
            request_timeout: ms(300),
            ..fast(ms(40))
        },
    );
    let started = Instant::now();
    poller.poll_all().await;
    let elapsed = started.elapsed();
    let state = poller.snapshot().remove(0);
    assert!(elapsed < ms(3_000), "took {elapsed:?}");
    assert!(elapsed >= ms(290), "took {elapsed:?}");
    assert!(
        state
            .last_error
            .as_deref()
            .unwrap()
            .contains("too slow sending the page"),
        "{state:?}"
    );
    assert!(state.status.is_none());

    page.fail_with(Reply::hang());
    poller.poll_all().await;
    let state = poller.snapshot().remove(0);
    assert!(
        state
            .last_error
            .as_deref()
            .unwrap()
            .contains("did not answer in time"),
        "{state:?}"
    );
}

#[tokio::test]
async fn body_over_the_size_cap_is_an_error() {
    let page = FakeStatusPage::start(None).await;
    let poller = poller_for(
        &page,
        PollerOptions {
            body_cap: 512,
            ..fast(ms(40))
        },
    );
    poller.poll_all().await;
    let state = poller.snapshot().remove(0);
    assert!(
        state
            .last_error
            .as_deref()
            .unwrap()
            .ends_with("is larger than 512 bytes"),
        "{state:?}"
    );
    assert!(state.status.is_none());
}

#[tokio::test]
async fn staleness_is_reported_after_the_configured_age() {
    let page = FakeStatusPage::start(None).await;
    let clock = ManualClock::new();
    let poller = poller_for(
        &page,
        PollerOptions {
            stale_after: Duration::from_secs(300),
            clock: clock.clock(),
            ..fast(ms(40))
        },
    );
    poller.poll_all().await;
    let read_at = clock.now();

    page.fail_with(Reply::text(500, "text/plain", "oops"));
    clock.advance(Duration::from_secs(60));
    poller.poll_all().await;
    let failing_at = clock.now();
    let state = poller.snapshot().remove(0);

    // Within the allowance the last reading still stands, with the error beside it.
    let almost = read_at + TimeDelta::seconds(300);
    assert_eq!(state.freshness(almost), Freshness::Fresh);
    assert!(state.current(almost).is_some());
    assert!(state.last_error.is_some());

    let later = almost + TimeDelta::milliseconds(1);
    assert!(state.is_stale(later));
    assert_eq!(
        state.freshness(later),
        Freshness::Unavailable { since: failing_at }
    );
    assert!(
        state.current(later).is_none(),
        "a stale page is never shown as green"
    );
    let text = state.unavailable_text(later).unwrap();
    assert_eq!(
        text,
        format!(
            "official status unavailable since 2026-01-15 10:01:00 UTC: {}/api/v2/summary.json answered HTTP 500",
            page.url("127.0.0.1")
        )
    );
}

#[tokio::test]
async fn html_page_served_with_200_is_an_error_not_green() {
    let page = FakeStatusPage::start(None).await;
    page.fail_with(Reply::text(
        200,
        "text/html; charset=utf-8",
        "<!DOCTYPE html><html><head><title>Just a moment...</title></head><body>checking your browser</body></html>",
    ));
    let poller = poller_for(&page, fast(ms(40)));
    poller.poll_all().await;
    let state = poller.snapshot().remove(0);
    let error = state.last_error.clone().unwrap();
    assert!(error.contains("served an HTML page"), "{error}");
    assert!(state.status.is_none());
    assert!(state.is_stale(poller.now()));
    assert!(state.current(poller.now()).is_none());
    assert_eq!(state.stats.reads, 0);
    assert!(state.validators.is_empty(), "no validators from a bad page");
}

#[tokio::test]
async fn polls_go_through_the_contexts_dns_and_extra_root() {
    let world = World::start().await;
    let identity = world.public_ca.issue(&["status.claude.test"]);
    let page = FakeStatusPage::start(Some(&identity)).await;
    world.dns.set(
        "status.claude.test",
        DnsAnswer::Addresses(vec!["127.0.0.1".parse().unwrap()]),
    );
    let ctx = ProbeContext {
        dns: Dns::new(&DnsChoice::Server(world.dns.addr()), ms(500)).unwrap(),
        proxies: ProxySettings::none(),
        trust: Trust::new(&[world.public_ca_path()]).unwrap(),
    };
    let poller = Poller::new(
        ctx,
        vec![
            PollTarget::new(StatusSource::Statuspage(page.url("status.claude.test"))),
            PollTarget::new(StatusSource::Statuspage(page.url("status.gone.test"))),
        ],
        fast(ms(40)),
    );
    poller.poll_all().await;
    let states = poller.snapshot();
    assert!(states[0].status.is_some(), "{states:?}");
    assert_eq!(
        page.requests()[0].header("host"),
        Some(&*format!("status.claude.test:{}", page.addr().port()))
    );
    assert_eq!(page.requests().len(), 1);
    assert_eq!(
        states[1].last_error.as_deref(),
        Some("status.gone.test does not resolve (NXDOMAIN)")
    );
}

#[tokio::test(start_paused = true)]
async fn long_retry_after_date_is_honoured_in_paused_time() {
    let page = FakeStatusPage::start(None).await;
    let poller = poller_for(
        &page,
        PollerOptions {
            backoff: Backoff {
                base: ms(40),
                max: Duration::from_secs(600),
                retry_budget: 3,
            },
            ..fast(ms(40))
        },
    );
    // The server asks for two minutes, as an HTTP date; the poller's clock follows tokio's.
    let in_two_minutes = (poller.now() + TimeDelta::seconds(121))
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    page.fail_with(Reply::empty(429).header("retry-after", &in_two_minutes));
    let running = start(&poller);
    let mut updates = poller.subscribe();
    let limited = updates.wait_for(|s| s[0].stats.polls >= 1).await.unwrap()[0].clone();
    let started = Instant::now();
    page.recover();
    let wait = limited.retry_after.expect("the Retry-After date was read");
    assert!(
        (Duration::from_secs(119)..=Duration::from_secs(121)).contains(&wait),
        "{wait:?}"
    );
    updates.wait_for(|s| s[0].stats.polls >= 2).await.unwrap();
    let waited = started.elapsed();
    running.stop().await;
    assert!(waited >= Duration::from_secs(119), "{waited:?}");
    assert!(waited <= Duration::from_secs(122), "{waited:?}");
    assert!(poller.snapshot()[0].status.is_some());
}

#[tokio::test]
async fn run_without_pages_waits_for_shutdown() {
    let poller = Arc::new(Poller::new(loopback_ctx(), Vec::new(), fast(ms(40))));
    let running = start(&poller);
    tokio::time::sleep(ms(50)).await;
    assert!(!running.task.is_finished(), "run returned before shutdown");
    running.stop().await;
    assert!(poller.snapshot().is_empty());
}
