//! Keeps official status pages read for `aiwatch serve`: each page is polled on its own interval
//! with jitter, revalidated with `If-None-Match` / `If-Modified-Since`, backed off on errors and
//! 429s (honouring `Retry-After`) within a retry budget, and reported as unavailable — never as
//! green — once it has not been read for longer than a configured age.
//!
//! ```text
//! let poller = Poller::new(ctx, PollTarget::from_services(catalog.iter()), PollerOptions::default());
//! let updates = poller.subscribe();          // a watch channel of Vec<SourceState>
//! poller.run(shutdown_signal).await;         // polls until `shutdown_signal` completes
//! let states = poller.snapshot();            // or read the latest states at any time
//! ```
//!
//! Time: sleeps and request deadlines use `tokio::time` (so tests may run with paused time), and
//! every timestamp comes from the options' [`Clock`], which by default follows `tokio::time`.

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use aiwatch_core::evidence::{HttpOutcome, ProbeReport, Purpose};
use aiwatch_core::official::OfficialStatus;
use aiwatch_core::service::{Service, StatusSource};
use bytes::Bytes;
use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use futures_util::future::join_all;
use http::{HeaderMap, Method};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::http::{read_capped, send, BodyError, Outgoing};
use crate::layered::{open, ProbeContext};
use crate::official::{failure_text, status_url, STATUS_BODY_CAP};
use crate::status;

/// What a status request accepts (the same as a one-shot fetch).
const ACCEPT: &str = "application/json, application/atom+xml, application/rss+xml;q=0.9, */*;q=0.1";

/// Validators longer than this are not worth sending back.
const MAX_VALIDATOR_LEN: usize = 512;

// === Time ===

/// Where timestamps come from. The default follows `tokio::time`: anchored to the system time
/// when made, then moved by tokio's monotonic clock — so a test with paused time moves it too.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>);

impl Clock {
    /// The system time when called, advanced since by `tokio::time::Instant`.
    pub fn tokio() -> Self {
        let wall = Utc::now();
        let anchor = Instant::now();
        Self(Arc::new(move || {
            let elapsed = Instant::now().saturating_duration_since(anchor);
            TimeDelta::from_std(elapsed)
                .ok()
                .and_then(|d| wall.checked_add_signed(d))
                .unwrap_or(wall)
        }))
    }

    /// Any source of "now" (a test's manual clock, say).
    pub fn from_fn(now: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        Self(Arc::new(now))
    }

    pub fn now(&self) -> DateTime<Utc> {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::tokio()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

// === Schedule (pure) ===

/// How a failing page is retried.
///
/// The `n`-th failure in a row waits `base · 2^(n-1)`, capped at `max` (or at the interval, if
/// that is longer). While `n ≤ retry_budget` that wait may be shorter than the page's interval
/// (a blip is retried quickly); once the budget is spent, a failing page is polled no more often
/// than its interval, so a broken page costs at most `retry_budget` extra requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
    pub retry_budget: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(5),
            max: Duration::from_secs(10 * 60),
            retry_budget: 3,
        }
    }
}

impl Backoff {
    /// The wait after `failures` (≥ 1) failures in a row, before jitter and `Retry-After`.
    pub fn delay(&self, failures: u32, interval: Duration) -> Duration {
        let cap = self.cap(interval);
        let doublings = failures.saturating_sub(1).min(31);
        let raw = self.base.saturating_mul(1_u32 << doublings);
        let raw = if failures > self.retry_budget {
            raw.max(interval)
        } else {
            raw
        };
        raw.min(cap)
    }

    /// The longest wait: `max`, or the interval if that is longer.
    pub fn cap(&self, interval: Duration) -> Duration {
        self.max.max(interval)
    }
}

/// Spreads `delay` by up to `± fraction` of itself; `unit` is a sample in `[0, 1]` (0 gives the
/// shortest, 1 the longest, 0.5 the delay itself).
pub fn jittered(delay: Duration, fraction: f64, unit: f64) -> Duration {
    let fraction = if fraction.is_finite() {
        fraction.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let unit = if unit.is_finite() {
        unit.clamp(0.0, 1.0)
    } else {
        0.5
    };
    let factor = 1.0 + fraction * (2.0 * unit - 1.0);
    Duration::try_from_secs_f64(delay.as_secs_f64() * factor).unwrap_or(delay)
}

/// Reads a `Retry-After` value: delay-seconds (`120`) or an HTTP date (IMF-fixdate, RFC 850 or
/// asctime), measured from `now`; a date in the past is zero; anything else is `None`.
pub fn parse_retry_after(raw: &str, now: DateTime<Utc>) -> Option<Duration> {
    let raw = raw.trim();
    if raw.is_empty() || raw.len() > 64 {
        return None;
    }
    if raw.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(raw.parse().unwrap_or(u64::MAX)));
    }
    let at = parse_http_date(raw)?;
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

fn parse_http_date(raw: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc2822(raw) {
        return Some(t.with_timezone(&Utc));
    }
    // The two obsolete forms HTTP still asks recipients to accept.
    ["%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(raw, format).ok())
        .map(|t| t.and_utc())
}

// === Options and targets ===

/// How the poller runs.
#[derive(Clone, Debug)]
pub struct PollerOptions {
    /// How often a page is read while it answers (a target may set its own).
    pub interval: Duration,
    /// Every wait is spread by up to ± this fraction of itself (0.1 = ±10%).
    pub jitter: f64,
    /// Budget of one request: DNS, connect, TLS, headers and body.
    pub request_timeout: Duration,
    /// Bodies longer than this are an error (the page is not read from a cut body).
    pub body_cap: usize,
    pub backoff: Backoff,
    /// A page not read successfully for longer than this is reported unavailable.
    pub stale_after: Duration,
    pub clock: Clock,
}

impl Default for PollerOptions {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60),
            jitter: 0.1,
            request_timeout: Duration::from_secs(10),
            body_cap: STATUS_BODY_CAP,
            backoff: Backoff::default(),
            stale_after: Duration::from_secs(5 * 60),
            clock: Clock::default(),
        }
    }
}

impl PollerOptions {
    /// The wait before the next poll of a page polled every `interval`, after `failures`
    /// failures in a row (0 after a good read), with the server's `Retry-After` if it sent one,
    /// and `unit` a random sample in `[0, 1]` for the jitter.
    ///
    /// A good read waits the jittered interval. A failure waits the jittered backoff, capped,
    /// and never less than `Retry-After` (itself capped, so a server cannot park a page for a
    /// day).
    pub fn next_delay(
        &self,
        interval: Duration,
        failures: u32,
        retry_after: Option<Duration>,
        unit: f64,
    ) -> Duration {
        if failures == 0 {
            return jittered(interval, self.jitter, unit);
        }
        let cap = self.backoff.cap(interval);
        let delay = jittered(self.backoff.delay(failures, interval), self.jitter, unit).min(cap);
        match retry_after {
            Some(wait) => delay.max(wait.min(cap)),
            None => delay,
        }
    }
}

/// One status page to keep read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PollTarget {
    pub source: StatusSource,
    /// The component or product names read from it (Google Cloud's history is filtered by them).
    pub products: Vec<String>,
    /// This page's own interval; `None` takes [`PollerOptions::interval`].
    pub interval: Option<Duration>,
}

impl PollTarget {
    pub fn new(source: StatusSource) -> Self {
        Self {
            source,
            products: Vec::new(),
            interval: None,
        }
    }

    /// One target per distinct status page of `services`, in first-seen order, with the
    /// components of every service it covers.
    pub fn from_services<'a>(services: impl IntoIterator<Item = &'a Service>) -> Vec<Self> {
        let mut targets: Vec<Self> = Vec::new();
        for service in services {
            let Some(source) = &service.status else {
                continue;
            };
            let index = match targets.iter().position(|t| &t.source == source) {
                Some(index) => index,
                None => {
                    targets.push(Self::new(source.clone()));
                    targets.len() - 1
                }
            };
            let products = &mut targets[index].products;
            for component in &service.status_components {
                if !products.contains(component) {
                    products.push(component.clone());
                }
            }
        }
        targets
    }
}

// === State ===

/// The validators of the last good read, sent back to ask "has it changed?".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

impl Validators {
    pub fn is_empty(&self) -> bool {
        self.etag.is_none() && self.last_modified.is_none()
    }

    fn from_headers(headers: &HeaderMap) -> Self {
        Self {
            etag: validator(headers, "etag"),
            last_modified: validator(headers, "last-modified"),
        }
    }
}

fn validator(headers: &HeaderMap, name: &str) -> Option<String> {
    let value = headers.get(name)?.to_str().ok()?.trim();
    (!value.is_empty() && value.len() <= MAX_VALIDATOR_LEN).then(|| value.to_owned())
}

/// Counters of one page's polls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PollStats {
    pub polls: u64,
    /// 2xx answers that parsed.
    pub reads: u64,
    /// 304 answers.
    pub not_modified: u64,
    pub failures: u64,
    /// 429 answers (also counted as failures).
    pub rate_limited: u64,
}

/// Whether a page's last reading can be shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Read successfully within `stale_after` (it may have failed since; `last_error` says).
    Fresh,
    /// Not read yet, no failure yet, and not waiting longer than `stale_after`.
    Pending,
    /// Nothing that can be shown: the last good read is older than `stale_after`, or the page
    /// has never been read and is failing. `since` is when it started failing (else the last
    /// good read, else when watching began).
    Unavailable { since: DateTime<Utc> },
}

/// What is known about one page.
#[derive(Clone, Debug)]
pub struct SourceState {
    pub source: StatusSource,
    /// The URL polled.
    pub url: String,
    /// The last page read successfully; kept through 304s and through failures.
    pub status: Option<Arc<OfficialStatus>>,
    /// When the poller began watching this page.
    pub watching_since: DateTime<Utc>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// The last good read: a 2xx that parsed, or a 304 confirming the kept one.
    pub last_success_at: Option<DateTime<Utc>>,
    /// When a read last brought a page different from the one before.
    pub last_changed_at: Option<DateTime<Utc>>,
    /// Why the last attempt failed; `None` after a good read.
    pub last_error: Option<String>,
    /// The first failure of the current run of failures; `None` after a good read.
    pub failing_since: Option<DateTime<Utc>>,
    pub consecutive_failures: u32,
    /// The wait the server asked for with its last `Retry-After`.
    pub retry_after: Option<Duration>,
    pub next_poll_at: Option<DateTime<Utc>>,
    pub validators: Validators,
    pub stats: PollStats,
    /// The age after which the page counts as unavailable.
    pub stale_after: Duration,
}

impl SourceState {
    fn new(target: &PollTarget, stale_after: Duration, now: DateTime<Utc>) -> Self {
        Self {
            url: status_url(&target.source),
            source: target.source.clone(),
            status: None,
            watching_since: now,
            last_attempt_at: None,
            last_success_at: None,
            last_changed_at: None,
            last_error: None,
            failing_since: None,
            consecutive_failures: 0,
            retry_after: None,
            next_poll_at: None,
            validators: Validators::default(),
            stats: PollStats::default(),
            stale_after,
        }
    }

    /// Whether the last reading can be shown at `now`.
    pub fn freshness(&self, now: DateTime<Utc>) -> Freshness {
        let max_age = TimeDelta::from_std(self.stale_after).unwrap_or(TimeDelta::MAX);
        match (self.last_success_at, &self.status) {
            (Some(read), Some(_)) if now - read <= max_age => Freshness::Fresh,
            (Some(read), _) => Freshness::Unavailable {
                since: self.failing_since.unwrap_or(read),
            },
            (None, _) => match self.failing_since {
                None if now - self.watching_since <= max_age => Freshness::Pending,
                since => Freshness::Unavailable {
                    since: since.unwrap_or(self.watching_since),
                },
            },
        }
    }

    /// True when nothing current can be shown: see [`Freshness::Unavailable`].
    pub fn is_stale(&self, now: DateTime<Utc>) -> bool {
        matches!(self.freshness(now), Freshness::Unavailable { .. })
    }

    /// The page as last read, only while it is fresh.
    pub fn current(&self, now: DateTime<Utc>) -> Option<&OfficialStatus> {
        match self.freshness(now) {
            Freshness::Fresh => self.status.as_deref(),
            _ => None,
        }
    }

    /// "official status unavailable since … : why" when the page is stale, else `None`.
    pub fn unavailable_text(&self, now: DateTime<Utc>) -> Option<String> {
        let Freshness::Unavailable { since } = self.freshness(now) else {
            return None;
        };
        let why = match &self.last_error {
            Some(error) => error.clone(),
            None => "not read since then".to_owned(),
        };
        Some(format!(
            "official status unavailable since {}: {why}",
            since.format("%Y-%m-%d %H:%M:%S UTC")
        ))
    }

    fn record(&mut self, outcome: Outcome, now: DateTime<Utc>) {
        self.stats.polls += 1;
        self.last_attempt_at = Some(now);
        self.retry_after = None;
        match outcome {
            Outcome::Read(page, validators) => {
                if self.status.as_deref() != Some(&page) {
                    self.status = Some(Arc::new(page));
                    self.last_changed_at = Some(now);
                }
                self.validators = validators;
                self.stats.reads += 1;
                self.succeeded(now);
            }
            Outcome::NotModified(fresh) if self.status.is_some() => {
                // A 304 may carry updated validators; the body it confirms is unchanged.
                if fresh.etag.is_some() {
                    self.validators.etag = fresh.etag;
                }
                if fresh.last_modified.is_some() {
                    self.validators.last_modified = fresh.last_modified;
                }
                self.stats.not_modified += 1;
                self.succeeded(now);
            }
            Outcome::NotModified(_) => self.failed(
                format!(
                    "{} answered 304 Not Modified, but no copy is kept",
                    self.url
                ),
                None,
                false,
                now,
            ),
            Outcome::Failed {
                reason,
                retry_after,
                rate_limited,
            } => self.failed(reason, retry_after, rate_limited, now),
        }
    }

    fn succeeded(&mut self, now: DateTime<Utc>) {
        self.last_success_at = Some(now);
        self.last_error = None;
        self.failing_since = None;
        self.consecutive_failures = 0;
    }

    fn failed(
        &mut self,
        reason: String,
        retry_after: Option<Duration>,
        rate_limited: bool,
        now: DateTime<Utc>,
    ) {
        self.last_error = Some(reason);
        self.failing_since.get_or_insert(now);
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.retry_after = retry_after;
        self.stats.failures += 1;
        if rate_limited {
            self.stats.rate_limited += 1;
        }
    }
}

/// What one poll brought, before it is recorded.
enum Outcome {
    Read(OfficialStatus, Validators),
    NotModified(Validators),
    Failed {
        reason: String,
        retry_after: Option<Duration>,
        rate_limited: bool,
    },
}

// === Fetching ===

/// What a conditional GET brought back.
#[derive(Clone, Debug)]
pub enum Fetched {
    /// A 2xx with its whole body (within the cap) and the validators to send next time.
    Page {
        body: Bytes,
        validators: Validators,
        content_type: Option<String>,
    },
    /// A 304: the copy read with the validators sent is still current.
    NotModified { validators: Validators },
}

/// Why a conditional GET did not bring a page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchFailure {
    /// One sentence: where it stopped and why.
    pub reason: String,
    /// The HTTP status, when the server answered with one that is not 2xx/304.
    pub status: Option<u16>,
    /// The raw `Retry-After` of that answer.
    pub retry_after: Option<String>,
}

impl FetchFailure {
    fn at(report: &ProbeReport) -> Self {
        Self {
            reason: failure_text(report),
            status: None,
            retry_after: None,
        }
    }
}

/// GETs `url` through the layered probe (so DNS choice, proxies and trust apply), sending
/// `validators` as `If-None-Match` / `If-Modified-Since`, all before `deadline`; the body is
/// read only for a 2xx and only up to `body_cap` (a longer one is a failure).
pub async fn fetch_conditional(
    ctx: &ProbeContext,
    url: &str,
    validators: &Validators,
    body_cap: usize,
    deadline: Instant,
) -> Result<Fetched, FetchFailure> {
    let host = url
        .parse::<http::Uri>()
        .ok()
        .and_then(|u| u.host().map(|h| h.trim_matches(['[', ']']).to_owned()))
        .unwrap_or_default();
    let mut report = ProbeReport::new(Purpose::Web, url, &host);
    let Some(opened) = open(ctx, &mut report, url, None, deadline).await else {
        return Err(FetchFailure::at(&report));
    };
    let mut headers = opened.extra_headers;
    headers.push(("accept", ACCEPT.to_owned()));
    if let Some(etag) = &validators.etag {
        headers.push(("if-none-match", etag.clone()));
    }
    if let Some(date) = &validators.last_modified {
        headers.push(("if-modified-since", date.clone()));
    }
    let outgoing = Outgoing {
        method: Method::GET,
        target: opened.target,
        host: opened.host_header,
        headers,
        body: None,
    };
    let (response, _connection) = match send(opened.io, outgoing, deadline).await {
        Ok(answer) => answer,
        Err(outcome) => {
            report.http = Some(outcome);
            return Err(FetchFailure::at(&report));
        }
    };
    let (parts, body) = response.into_parts();
    let status = parts.status.as_u16();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(300).collect::<String>())
    };
    if status == 304 {
        if validators.is_empty() {
            return Err(FetchFailure {
                reason: format!("{url} answered 304 Not Modified to a plain request"),
                status: Some(status),
                retry_after: None,
            });
        }
        return Ok(Fetched::NotModified {
            validators: Validators::from_headers(&parts.headers),
        });
    }
    if !(200..300).contains(&status) {
        let mut reason = format!("{url} answered HTTP {status}");
        if (300..400).contains(&status) {
            if let Some(location) = header("location") {
                reason.push_str(&format!(" (a redirect to {location})"));
            }
        }
        return Err(FetchFailure {
            reason,
            status: Some(status),
            retry_after: header("retry-after"),
        });
    }
    match read_capped(body, body_cap, deadline).await {
        Ok((_, true)) => Err(FetchFailure {
            reason: format!("{url} is larger than {}", size_text(body_cap)),
            status: Some(status),
            retry_after: None,
        }),
        Ok((body, false)) => Ok(Fetched::Page {
            body,
            validators: Validators::from_headers(&parts.headers),
            content_type: header("content-type"),
        }),
        Err(BodyError::Timeout) => {
            report.http = Some(HttpOutcome::BodyTimeout { status });
            Err(FetchFailure::at(&report))
        }
        Err(BodyError::Broken(error)) => Err(FetchFailure {
            reason: format!("the page from {host} broke off: {error}"),
            status: Some(status),
            retry_after: None,
        }),
    }
}

fn size_text(bytes: usize) -> String {
    const MIB: usize = 1024 * 1024;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} bytes")
    }
}

// === The poller ===

/// Polls a set of status pages, each on its own schedule, and publishes their states.
#[derive(Debug)]
pub struct Poller {
    ctx: ProbeContext,
    targets: Vec<PollTarget>,
    options: PollerOptions,
    states: watch::Sender<Vec<SourceState>>,
}

impl Poller {
    /// A poller for `targets` (one per distinct page; see [`PollTarget::from_services`]).
    /// Nothing is fetched until [`run`](Poller::run) or [`poll_all`](Poller::poll_all).
    pub fn new(ctx: ProbeContext, targets: Vec<PollTarget>, options: PollerOptions) -> Self {
        let now = options.clock.now();
        let states = targets
            .iter()
            .map(|t| SourceState::new(t, options.stale_after, now))
            .collect();
        let (states, _) = watch::channel(states);
        Self {
            ctx,
            targets,
            options,
            states,
        }
    }

    pub fn targets(&self) -> &[PollTarget] {
        &self.targets
    }

    pub fn options(&self) -> &PollerOptions {
        &self.options
    }

    /// "Now" by the poller's clock (for [`SourceState::freshness`] and friends).
    pub fn now(&self) -> DateTime<Utc> {
        self.options.clock.now()
    }

    /// Every page's state, in the targets' order.
    pub fn snapshot(&self) -> Vec<SourceState> {
        self.states.borrow().clone()
    }

    /// The state of the page read from `source`, if it is polled.
    pub fn state_of(&self, source: &StatusSource) -> Option<SourceState> {
        self.states
            .borrow()
            .iter()
            .find(|s| &s.source == source)
            .cloned()
    }

    /// Updates: the receiver sees the states after every poll of any page.
    pub fn subscribe(&self) -> watch::Receiver<Vec<SourceState>> {
        self.states.subscribe()
    }

    /// Polls every page at once, now, and returns when all have answered or timed out (the
    /// one-shot use: `aiwatch status`).
    pub async fn poll_all(&self) {
        let mut rng = Rng::seeded(u64::MAX);
        let units: Vec<f64> = self.targets.iter().map(|_| rng.unit()).collect();
        join_all(
            units
                .into_iter()
                .enumerate()
                .map(|(index, unit)| self.poll_one(index, unit)),
        )
        .await;
    }

    /// Polls every page on its own schedule — the first poll at once — until `shutdown`
    /// completes (also with no pages at all). An interrupted poll records nothing.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        let loops = async {
            join_all((0..self.targets.len()).map(|index| self.keep_polling(index))).await;
            std::future::pending::<()>().await;
        };
        tokio::select! {
            _ = loops => {}
            () = shutdown => {}
        }
    }

    async fn keep_polling(&self, index: usize) {
        let mut rng = Rng::seeded(index as u64);
        loop {
            let delay = self.poll_one(index, rng.unit()).await;
            tokio::time::sleep(delay).await;
        }
    }

    /// Polls one page, records the outcome and returns the wait before its next poll.
    async fn poll_one(&self, index: usize, unit: f64) -> Duration {
        let Some(target) = self.targets.get(index) else {
            return self.options.interval;
        };
        let (url, validators) = {
            let states = self.states.borrow();
            match states.get(index) {
                Some(state) => (state.url.clone(), state.validators.clone()),
                None => return self.options.interval,
            }
        };
        let deadline = Instant::now() + self.options.request_timeout;
        let fetched = fetch_conditional(
            &self.ctx,
            &url,
            &validators,
            self.options.body_cap,
            deadline,
        )
        .await;
        let now = self.options.clock.now();
        // Parsing happens before the state is locked: a big page must not block readers.
        let outcome = match fetched {
            Ok(Fetched::NotModified { validators }) => Outcome::NotModified(validators),
            Ok(Fetched::Page {
                body,
                validators,
                content_type,
            }) => match status::parse(&target.source, &body, &target.products) {
                Ok(page) => Outcome::Read(page, validators),
                Err(error) => Outcome::Failed {
                    reason: match content_type {
                        Some(t) if t.to_ascii_lowercase().starts_with("text/html") => {
                            format!("{url} served an HTML page ({t}), not status data: {error}")
                        }
                        _ => format!("{url}: {error}"),
                    },
                    retry_after: None,
                    rate_limited: false,
                },
            },
            Err(failure) => {
                let retry_after = failure
                    .retry_after
                    .as_deref()
                    .and_then(|raw| parse_retry_after(raw, now));
                let mut reason = failure.reason;
                if let Some(wait) = retry_after {
                    reason.push_str(&format!("; asked to retry after {}", wait_text(wait)));
                }
                Outcome::Failed {
                    reason,
                    retry_after,
                    rate_limited: failure.status == Some(429),
                }
            }
        };
        let interval = target.interval.unwrap_or(self.options.interval);
        let mut delay = interval;
        self.states.send_modify(|states| {
            let Some(state) = states.get_mut(index) else {
                return;
            };
            state.record(outcome, now);
            delay = self.options.next_delay(
                interval,
                state.consecutive_failures,
                state.retry_after,
                unit,
            );
            state.next_poll_at = TimeDelta::from_std(delay)
                .ok()
                .and_then(|d| now.checked_add_signed(d));
        });
        delay
    }
}

/// A wait in words: "30s", "2m 5s", "1500ms".
fn wait_text(wait: Duration) -> String {
    let secs = wait.as_secs();
    if wait.subsec_millis() != 0 && secs < 10 {
        format!("{}ms", wait.as_millis())
    } else if secs < 60 {
        format!("{secs}s")
    } else if secs < 3600 {
        format!("{}m {}s", secs / 60, secs % 60)
    } else {
        format!("{}h {}m", secs / 3600, secs % 3600 / 60)
    }
}

/// A small random source for jitter (SplitMix64 seeded from the std hasher's random keys).
struct Rng(u64);

impl Rng {
    fn seeded(salt: u64) -> Self {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(salt);
        Self(hasher.finish())
    }

    /// A sample in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1_u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn options() -> PollerOptions {
        PollerOptions {
            interval: secs(60),
            jitter: 0.1,
            backoff: Backoff {
                base: secs(5),
                max: secs(600),
                retry_budget: 3,
            },
            ..PollerOptions::default()
        }
    }

    #[test]
    fn backoff_doubles_from_the_base_and_stops_at_the_cap() {
        let backoff = Backoff {
            base: secs(5),
            max: secs(600),
            retry_budget: 10,
        };
        let waits: Vec<u64> = (1..=9)
            .map(|n| backoff.delay(n, secs(60)).as_secs())
            .collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 320, 600, 600]);
        assert_eq!(backoff.delay(u32::MAX, secs(60)), secs(600));
    }

    #[test]
    fn spent_retry_budget_never_polls_faster_than_the_interval() {
        let backoff = Backoff {
            base: secs(5),
            max: secs(600),
            retry_budget: 2,
        };
        let waits: Vec<u64> = (1..=5)
            .map(|n| backoff.delay(n, secs(60)).as_secs())
            .collect();
        assert_eq!(waits, [5, 10, 60, 60, 80]);
    }

    #[test]
    fn cap_is_never_below_the_interval() {
        let backoff = Backoff {
            base: secs(5),
            max: secs(30),
            retry_budget: 0,
        };
        assert_eq!(backoff.delay(1, secs(120)), secs(120));
        assert_eq!(backoff.cap(secs(120)), secs(120));
    }

    #[test]
    fn jitter_spreads_within_the_fraction_and_tolerates_nonsense() {
        let d = secs(100);
        assert_eq!(jittered(d, 0.1, 0.0), secs(90));
        assert_eq!(jittered(d, 0.1, 0.5), secs(100));
        assert_eq!(jittered(d, 0.1, 1.0), secs(110));
        assert_eq!(jittered(d, 0.0, 0.9), secs(100));
        assert_eq!(jittered(d, f64::NAN, 0.9), secs(100));
        assert_eq!(jittered(d, 5.0, 0.0), Duration::ZERO);
        assert_eq!(jittered(d, 0.1, f64::INFINITY), secs(100));
    }

    #[test]
    fn good_read_waits_the_jittered_interval() {
        let o = options();
        assert_eq!(o.next_delay(secs(60), 0, None, 0.0), secs(54));
        assert_eq!(o.next_delay(secs(60), 0, None, 1.0), secs(66));
        // A Retry-After on a good read is not a thing the poller keeps.
        assert_eq!(o.next_delay(secs(60), 0, Some(secs(900)), 0.5), secs(60));
    }

    #[test]
    fn failure_waits_backoff_but_never_less_than_retry_after() {
        let o = options();
        assert_eq!(o.next_delay(secs(60), 1, None, 0.5), secs(5));
        assert_eq!(o.next_delay(secs(60), 1, Some(secs(30)), 0.5), secs(30));
        // Jitter may shorten the backoff, never the server's wait.
        assert_eq!(o.next_delay(secs(60), 1, Some(secs(5)), 0.0), secs(5));
        assert_eq!(o.next_delay(secs(60), 2, Some(secs(1)), 0.5), secs(10));
    }

    #[test]
    fn retry_after_beyond_the_cap_is_capped() {
        let o = options();
        assert_eq!(
            o.next_delay(secs(60), 1, Some(secs(86_400)), 0.5),
            secs(600)
        );
        // Jitter never pushes past the cap either.
        assert_eq!(o.next_delay(secs(60), 30, None, 1.0), secs(600));
    }

    #[test]
    fn retry_after_reads_seconds_and_every_http_date_form() {
        let now = DateTime::parse_from_rfc3339("1994-11-06T08:49:07Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_retry_after("120", now), Some(secs(120)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(secs(0)));
        for date in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(parse_retry_after(date, now), Some(secs(30)), "{date}");
        }
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        for junk in ["", "-5", "1.5", "soon", "99999999999999999999999"] {
            let parsed = parse_retry_after(junk, now);
            assert!(
                parsed.is_none() || junk.bytes().all(|b| b.is_ascii_digit()),
                "{junk}: {parsed:?}"
            );
        }
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn rng_samples_stay_in_the_unit_interval_and_vary() {
        let mut rng = Rng::seeded(7);
        let samples: Vec<f64> = (0..1000).map(|_| rng.unit()).collect();
        assert!(samples.iter().all(|u| (0.0..1.0).contains(u)));
        let mean = samples.iter().sum::<f64>() / 1000.0;
        assert!((0.4..0.6).contains(&mean), "{mean}");
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn freshness_follows_reads_failures_and_age() {
        let target = PollTarget::new(StatusSource::Statuspage("https://status.x.test".into()));
        let mut state = SourceState::new(&target, secs(300), at("2026-01-01T10:00:00Z"));
        assert_eq!(
            state.freshness(at("2026-01-01T10:04:00Z")),
            Freshness::Pending
        );
        assert_eq!(
            state.freshness(at("2026-01-01T10:06:00Z")),
            Freshness::Unavailable {
                since: at("2026-01-01T10:00:00Z")
            },
            "never read for longer than the allowance"
        );

        state.record(
            Outcome::Read(OfficialStatus::default(), Validators::default()),
            at("2026-01-01T10:00:01Z"),
        );
        state.record(
            Outcome::Failed {
                reason: "status.x.test answered HTTP 500".into(),
                retry_after: None,
                rate_limited: false,
            },
            at("2026-01-01T10:01:00Z"),
        );
        assert_eq!(
            state.freshness(at("2026-01-01T10:05:01Z")),
            Freshness::Fresh
        );
        assert!(state.current(at("2026-01-01T10:05:01Z")).is_some());
        assert!(state.is_stale(at("2026-01-01T10:05:02Z")));
        assert_eq!(
            state.unavailable_text(at("2026-01-01T10:05:02Z")).unwrap(),
            "official status unavailable since 2026-01-01 10:01:00 UTC: status.x.test answered HTTP 500"
        );
        assert!(state.current(at("2026-01-01T10:05:02Z")).is_none());
    }

    #[test]
    fn first_failure_without_a_read_is_unavailable_at_once() {
        let target = PollTarget::new(StatusSource::Statuspage("https://status.x.test".into()));
        let mut state = SourceState::new(&target, secs(300), at("2026-01-01T10:00:00Z"));
        state.record(
            Outcome::Failed {
                reason: "status.x.test does not resolve (NXDOMAIN)".into(),
                retry_after: None,
                rate_limited: false,
            },
            at("2026-01-01T10:00:02Z"),
        );
        assert_eq!(
            state.freshness(at("2026-01-01T10:00:03Z")),
            Freshness::Unavailable {
                since: at("2026-01-01T10:00:02Z")
            }
        );
    }

    #[test]
    fn not_modified_without_a_kept_copy_is_a_failure() {
        let target = PollTarget::new(StatusSource::Statuspage("https://status.x.test".into()));
        let mut state = SourceState::new(&target, secs(300), at("2026-01-01T10:00:00Z"));
        state.record(
            Outcome::NotModified(Validators::default()),
            at("2026-01-01T10:00:01Z"),
        );
        assert_eq!(state.consecutive_failures, 1);
        assert!(state.last_error.as_deref().unwrap().contains("304"));
    }

    #[test]
    fn targets_from_services_share_one_page_and_merge_components() {
        let catalog = aiwatch_core::Catalog::builtin();
        let targets = PollTarget::from_services(catalog.iter());
        let openai: Vec<&PollTarget> = targets
            .iter()
            .filter(|t| t.source.url() == "https://status.openai.com")
            .collect();
        assert_eq!(openai.len(), 1);
        assert!(openai[0].products.iter().any(|p| p == "Conversations"));
        assert!(openai[0].products.iter().any(|p| p == "Chat Completions"));
        assert!(targets.iter().all(|t| t.interval.is_none()));
        // Local services have no page.
        assert!(!targets.iter().any(|t| t.source.url().contains("127.0.0.1")));
    }

    #[test]
    fn size_and_wait_texts_read_naturally() {
        assert_eq!(size_text(16 * 1024 * 1024), "16 MiB");
        assert_eq!(size_text(4096), "4 KiB");
        assert_eq!(size_text(1000), "1000 bytes");
        assert_eq!(wait_text(secs(30)), "30s");
        assert_eq!(wait_text(Duration::from_millis(1500)), "1500ms");
        assert_eq!(wait_text(secs(125)), "2m 5s");
        assert_eq!(wait_text(secs(7300)), "2h 1m");
    }
}
