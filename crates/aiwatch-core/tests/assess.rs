//! The assessor's rules as data: scripts of observations and official signals fed at 30 s steps,
//! with the resulting states, events and incident timelines as snapshots.
//!
//! Script tokens (whitespace separated, `@component` picks another component than `api`):
//! `up[:ms]` probe Up, `canary[:ms]` canary Up with a complete answer, `trunc[:ms]` canary Up
//! with a truncated answer, `down[:cause]`, `degraded[:cause]`, `unknown`,
//! `official:<signal>[:Title_with_underscores]`, and `restart` (restore a new assessor from the
//! old one's states and open incidents).

use std::collections::HashMap;
use std::fmt::Write as _;

use aiwatch_core::assess::{
    AssessConfig, Assessor, Event, Incident, IncidentPhase, Key, TimelineKind,
};
use aiwatch_core::observation::{Component, Health, Observation, PhaseMs, Region, Source};
use aiwatch_core::{Cause, ServiceName, Status};
use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;

const STEP_SECS: i64 = 30;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()
}

fn service() -> ServiceName {
    ServiceName::parse("openai-api").unwrap()
}

fn key(component: &str) -> Key {
    Key::new(service(), comp(component), Region::local())
}

fn comp(name: &str) -> Component {
    Component::parse(name).expect("a component the tests know")
}

fn config(failures_to_open: u32, successes_to_close: u32) -> AssessConfig {
    AssessConfig {
        failures_to_open,
        successes_to_close,
        ..AssessConfig::default()
    }
}

fn obs(
    component: &str,
    source: Source,
    health: Health,
    cause: Cause,
    total: Option<f32>,
    complete: Option<bool>,
    at: DateTime<Utc>,
) -> Observation {
    Observation {
        service: service(),
        component: comp(component),
        region: Region::local(),
        source,
        at,
        health,
        cause,
        phases: PhaseMs {
            total,
            ..PhaseMs::default()
        },
        complete,
        detail: match health {
            Health::Down => "HTTP 500 from the API".to_owned(),
            _ => String::new(),
        },
    }
}

fn signal(raw: &str) -> Status {
    match raw {
        "operational" => Status::Operational,
        "degraded" => Status::Degraded,
        "outage" => Status::Outage,
        "maintenance" => Status::Maintenance,
        "unknown" => Status::Unknown,
        other => panic!("unknown official signal `{other}`"),
    }
}

/// Feeds scripts to an assessor and writes down what happened, one line per step.
struct Run {
    assessor: Assessor,
    config: AssessConfig,
    step: i64,
    log: String,
    /// Timeline length last reported per incident id, to show only what each event added.
    seen: HashMap<String, usize>,
    last_incident: Option<Incident>,
}

impl Run {
    fn new(config: AssessConfig) -> Self {
        Self {
            assessor: Assessor::new(config.clone()),
            config,
            step: 0,
            log: String::new(),
            seen: HashMap::new(),
            last_incident: None,
        }
    }

    fn now(&self) -> DateTime<Utc> {
        t0() + Duration::seconds(self.step * STEP_SECS)
    }

    fn feed(&mut self, script: &str) -> &mut Self {
        for token in script.split_whitespace() {
            let now = self.now();
            let (body, component) = token.split_once('@').unwrap_or((token, "api"));
            let mut parts = body.splitn(3, ':');
            let verb = parts.next().unwrap();
            let arg = parts.next();
            let ms = || arg.map(|a| a.parse::<f32>().unwrap());
            let cause = |default| arg.map_or(default, |a| Cause::from_code(a).unwrap());
            let events = match verb {
                "restart" => {
                    self.assessor = Assessor::restore(
                        self.config.clone(),
                        self.assessor
                            .states()
                            .into_iter()
                            .map(|(k, s, _)| (k, s))
                            .collect(),
                        self.assessor.open_incidents(),
                    );
                    Vec::new()
                }
                "official" => {
                    let title = parts.next().map(|t| t.replace('_', " "));
                    self.assessor
                        .official(&service(), signal(arg.unwrap()), title.as_deref(), now)
                }
                _ => {
                    let o = match verb {
                        "up" => obs(
                            component,
                            Source::Probe,
                            Health::Up,
                            Cause::Ok,
                            ms(),
                            None,
                            now,
                        ),
                        "canary" => obs(
                            component,
                            Source::Canary,
                            Health::Up,
                            Cause::Ok,
                            ms(),
                            Some(true),
                            now,
                        ),
                        "trunc" => obs(
                            component,
                            Source::Canary,
                            Health::Up,
                            Cause::Ok,
                            ms(),
                            Some(false),
                            now,
                        ),
                        "down" => obs(
                            component,
                            Source::Probe,
                            Health::Down,
                            cause(Cause::ProviderError),
                            None,
                            None,
                            now,
                        ),
                        "degraded" => obs(
                            component,
                            Source::Probe,
                            Health::Degraded,
                            cause(Cause::SlowResponses),
                            None,
                            None,
                            now,
                        ),
                        "unknown" => obs(
                            component,
                            Source::Probe,
                            Health::Unknown,
                            Cause::Unknown,
                            None,
                            None,
                            now,
                        ),
                        other => panic!("unknown token `{other}`"),
                    };
                    self.assessor.observe(&o, now)
                }
            };
            let shown = self.assessor.state(&key(component));
            let said: Vec<String> = events.iter().map(|e| self.event(e)).collect();
            let line = format!("{token:<28} {:<11} {}", shown.as_str(), said.join(" "));
            writeln!(self.log, "{}", line.trim_end()).unwrap();
            self.step += 1;
        }
        self
    }

    fn event(&mut self, event: &Event) -> String {
        match event {
            Event::StateChanged { from, to, .. } => format!("state:{from}→{to}"),
            Event::IncidentOpened(i) | Event::IncidentUpdated(i) | Event::IncidentResolved(i) => {
                let before = self
                    .seen
                    .insert(i.id.clone(), i.timeline.len())
                    .unwrap_or(0);
                let added: Vec<&str> = i.timeline[before.min(i.timeline.len())..]
                    .iter()
                    .map(|e| e.kind.as_str())
                    .collect();
                self.last_incident = Some(i.clone());
                format!("{}[{}]", event.kind(), added.join(","))
            }
        }
    }

    /// The log, then the describe line of `api` and the last incident's timeline.
    fn report(&self) -> String {
        let mut out = self.log.clone();
        let api = key("api");
        writeln!(out, "describe: {}", self.assessor.describe(&api)).unwrap();
        writeln!(out, "wants_canary: {}", self.assessor.wants_canary(&api)).unwrap();
        if let Some(i) = &self.last_incident {
            writeln!(
                out,
                "incident {} {} {} {} confirmed={}",
                i.id,
                i.phase.as_str(),
                i.severity,
                i.cause,
                i.confirmed
            )
            .unwrap();
            for e in &i.timeline {
                let offset = (e.at - i.opened_at).num_seconds();
                writeln!(out, "  +{offset}s {}: {}", e.kind, e.text).unwrap();
            }
        }
        out
    }
}

fn check(config: AssessConfig, script: &str) -> String {
    Run::new(config).feed(script).report()
}

/// Healthy probes that give the key a baseline of about 300 ms.
const BASELINE: &str = "up:290 up:300 up:310";

#[test]
fn fewer_failures_than_the_threshold_change_nothing() {
    insta::assert_snapshot!(check(config(3, 2), "up:300 down down up:300 up:300"), @r"
    up:300                       operational state:unknown→operational
    down                         operational
    down                         operational
    up:300                       operational
    up:300                       operational
    describe: operational
    wants_canary: false
    ");
}

#[test]
fn scattered_failures_open_one_degraded_incident_that_outlasts_the_flapping() {
    insta::assert_snapshot!(check(config(3, 2), "up:300 down up:300 down up:300 down:provider_overloaded up:300 up:300 down up:300 up:300 up:300 up:300 up:300 up:300 up:300"), @r"
    up:300                       operational state:unknown→operational
    down                         operational
    up:300                       operational
    down                         operational
    up:300                       operational
    down:provider_overloaded     degraded    incident_opened[opened] state:operational→degraded
    up:300                       degraded    incident_updated[validation_started]
    up:300                       degraded    incident_updated[canary_passed]
    down                         degraded    incident_updated[cause_changed,reopened]
    up:300                       degraded    incident_updated[validation_started]
    up:300                       degraded    incident_updated[canary_passed]
    up:300                       degraded    incident_updated[canary_passed]
    up:300                       degraded    incident_updated[canary_passed]
    up:300                       degraded    incident_updated[canary_passed]
    up:300                       degraded    incident_updated[canary_passed]
    up:300                       operational incident_resolved[canary_passed,resolved] state:degraded→operational
    describe: operational
    wants_canary: false
    incident inc-openai-api-api-local-1740830550 resolved degraded provider_error confirmed=false
      +0s opened: degradation after 3 of the last 10 checks failed (intermittent) (provider_overloaded): HTTP 500 from the API; unconfirmed degradation — no official status page has confirmed it
      +30s validation_started: answers again (300 ms); validating recovery: 2 canary checks in a row must pass
      +60s canary_passed: canary 1/2 passed: 300 ms vs baseline 300 ms
      +90s cause_changed: cause changed: provider_overloaded → provider_error
      +90s reopened: down again (provider_error) after 1 passed canary: back to open, validation starts over on the next success
      +120s validation_started: answers again (300 ms); validating recovery: 2 canary checks in a row must pass
      +150s canary_passed: canary 1/2 passed: 300 ms vs baseline 300 ms
      +180s canary_passed: canary passed: 300 ms vs baseline 300 ms (2 in a row); 3 of the last 10 checks failed: held open until they age out
      +210s canary_passed: canary passed: 300 ms vs baseline 300 ms (3 in a row); 3 of the last 10 checks failed: held open until they age out
      +240s canary_passed: canary passed: 300 ms vs baseline 300 ms (4 in a row); 2 of the last 10 checks failed: held open until they age out
      +270s canary_passed: canary passed: 300 ms vs baseline 300 ms (5 in a row); 2 of the last 10 checks failed: held open until they age out
      +300s canary_passed: canary passed: 300 ms vs baseline 300 ms (6 in a row); the scattered failures have aged out
      +300s resolved: recovered: 6 canary checks in a row passed; the degradation lasted 5m
    ");
}

#[test]
fn the_threshold_of_failures_opens_an_unconfirmed_incident_when_the_page_is_green() {
    insta::assert_snapshot!(check(config(3, 2), "official:operational up:300 down down down"), @r"
    official:operational         unknown
    up:300                       operational state:unknown→operational
    down                         operational
    down                         operational
    down                         outage      incident_opened[opened] state:operational→outage
    describe: unconfirmed outage — official page green
    wants_canary: false
    incident inc-openai-api-api-local-1740830520 open outage provider_error confirmed=false
      +0s opened: outage after 3 failed checks in a row (provider_error): HTTP 500 from the API; unconfirmed outage — official page green
    ");
}

#[test]
fn degraded_runs_open_a_degraded_incident_and_a_later_down_worsens_it() {
    insta::assert_snapshot!(check(config(2, 2), "up degraded degraded down:provider_overloaded"), @r"
    up                           operational state:unknown→operational
    degraded                     operational
    degraded                     degraded    incident_opened[opened] state:operational→degraded
    down:provider_overloaded     outage      incident_updated[worsened,cause_changed] state:degraded→outage
    describe: unconfirmed outage — no official status page has confirmed it
    wants_canary: false
    incident inc-openai-api-api-local-1740830460 open outage provider_overloaded confirmed=false
      +0s opened: degradation after 2 failed checks in a row (slow_responses); unconfirmed degradation — no official status page has confirmed it
      +30s worsened: worsened to an outage: checks now fail outright (provider_overloaded)
      +30s cause_changed: cause changed: slow_responses → provider_overloaded
    ");
}

#[test]
fn unknown_gaps_never_open_and_keep_the_counters_from_before() {
    insta::assert_snapshot!(check(config(3, 2), "up:300 down down unknown unknown unknown unknown down"), @r"
    up:300                       operational state:unknown→operational
    down                         operational
    down                         operational
    unknown                      unknown     state:operational→unknown
    unknown                      unknown
    unknown                      unknown
    unknown                      unknown
    down                         outage      incident_opened[opened] state:unknown→outage
    describe: unconfirmed outage — no official status page has confirmed it
    wants_canary: false
    incident inc-openai-api-api-local-1740830610 open outage provider_error confirmed=false
      +0s opened: outage after 3 failed checks in a row (provider_error): HTTP 500 from the API; unconfirmed outage — no official status page has confirmed it
    ");
}

#[test]
fn no_incident_while_the_monitor_itself_is_offline() {
    insta::assert_snapshot!(check(config(3, 2), "up:300 unknown unknown unknown unknown unknown unknown up:300"), @r"
    up:300                       operational state:unknown→operational
    unknown                      unknown     state:operational→unknown
    unknown                      unknown
    unknown                      unknown
    unknown                      unknown
    unknown                      unknown
    unknown                      unknown
    up:300                       operational state:unknown→operational
    describe: operational
    wants_canary: false
    ");
}

#[test]
fn an_incident_opened_during_an_official_outage_is_confirmed() {
    insta::assert_snapshot!(check(config(3, 2), "up:300 official:outage:Elevated_error_rates_on_the_API down down down"), @r"
    up:300                       operational state:unknown→operational
    official:outage:Elevated_error_rates_on_the_API operational
    down                         operational
    down                         operational
    down                         outage      incident_opened[opened,confirmed] state:operational→outage
    describe: outage confirmed by the provider: “Elevated error rates on the API”
    wants_canary: false
    incident inc-openai-api-api-local-1740830520 open outage provider_error confirmed=true
      +0s opened: outage after 3 failed checks in a row (provider_error): HTTP 500 from the API
      +0s confirmed: confirmed by the provider: “Elevated error rates on the API” (official page reports an outage)
    ");
}

#[test]
fn confirmation_arriving_later_updates_the_incident_and_green_unconfirms_it() {
    insta::assert_snapshot!(check(config(3, 2), "official:operational up:300 down down down official:degraded:Slow_completions down official:operational"), @r"
    official:operational         unknown
    up:300                       operational state:unknown→operational
    down                         operational
    down                         operational
    down                         outage      incident_opened[opened] state:operational→outage
    official:degraded:Slow_completions outage      incident_updated[confirmed]
    down                         outage
    official:operational         outage      incident_updated[unconfirmed]
    describe: unconfirmed outage — official page green
    wants_canary: false
    incident inc-openai-api-api-local-1740830520 open outage provider_error confirmed=false
      +0s opened: outage after 3 failed checks in a row (provider_error): HTTP 500 from the API; unconfirmed outage — official page green
      +30s confirmed: confirmed by the provider: “Slow completions” (official page reports degraded performance)
      +90s unconfirmed: official page back to green while own checks still fail: unconfirmed
    ");
}

#[test]
fn official_maintenance_suppresses_incidents_until_it_ends() {
    insta::assert_snapshot!(check(config(3, 2), "up:300 official:maintenance down down down down official:operational down"), @r"
    up:300                       operational state:unknown→operational
    official:maintenance         operational
    down                         maintenance state:operational→maintenance
    down                         maintenance
    down                         maintenance
    down                         maintenance
    official:operational         operational state:maintenance→operational
    down                         outage      incident_opened[opened] state:operational→outage
    describe: unconfirmed outage — official page green
    wants_canary: false
    incident inc-openai-api-api-local-1740830610 open outage provider_error confirmed=false
      +0s opened: outage after 5 failed checks in a row (provider_error): HTTP 500 from the API; unconfirmed outage — official page green
    ");
}

#[test]
fn a_slow_first_success_only_starts_validation_and_slow_canaries_keep_it_open() {
    insta::assert_snapshot!(check(config(3, 2), &format!("{BASELINE} down down down up:2100 up:2100 up:320 up:2400")), @r"
    up:290                       operational state:unknown→operational
    up:300                       operational
    up:310                       operational
    down                         operational
    down                         operational
    down                         outage      incident_opened[opened] state:operational→outage
    up:2100                      outage      incident_updated[validation_started]
    up:2100                      outage      incident_updated[canary_failed]
    up:320                       outage      incident_updated[canary_passed]
    up:2400                      outage      incident_updated[canary_failed]
    describe: recovering: 0 of 2 canaries passed
    wants_canary: true
    incident inc-openai-api-api-local-1740830550 validating outage provider_error confirmed=false
      +0s opened: outage after 3 failed checks in a row (provider_error): HTTP 500 from the API; unconfirmed outage — no official status page has confirmed it
      +30s validation_started: answers again (2100 ms); validating recovery: 2 canary checks in a row must pass
      +60s canary_failed: canary failed: slow: 2100 ms vs baseline 300 ms; count restarts (0/2)
      +90s canary_passed: canary 1/2 passed: 320 ms vs baseline 300 ms
      +120s canary_failed: canary failed: slow: 2400 ms vs baseline 300 ms; count restarts (0/2)
    ");
}

#[test]
fn truncated_answers_keep_the_incident_open() {
    insta::assert_snapshot!(check(config(3, 2), "canary:900 down down down canary:950 trunc:900 canary:950"), @r"
    canary:900                   operational state:unknown→operational
    down                         operational
    down                         operational
    down                         outage      incident_opened[opened] state:operational→outage
    canary:950                   outage      incident_updated[validation_started]
    trunc:900                    outage      incident_updated[canary_failed]
    canary:950                   outage      incident_updated[canary_passed]
    describe: recovering: 1 of 2 canaries passed
    wants_canary: true
    incident inc-openai-api-api-local-1740830490 validating outage provider_error confirmed=false
      +0s opened: outage after 3 failed checks in a row (provider_error): HTTP 500 from the API; unconfirmed outage — no official status page has confirmed it
      +30s validation_started: answers again (950 ms); validating recovery: 2 canary checks in a row must pass
      +60s canary_failed: canary failed: truncated answer; count restarts (0/2)
      +90s canary_passed: canary 1/2 passed: 950 ms vs baseline 900 ms
    ");
}

#[test]
fn validated_successes_in_a_row_resolve_the_incident() {
    insta::assert_snapshot!(check(config(3, 2), &format!("{BASELINE} down down down up:320 up:310 up:305")), @r"
    up:290                       operational state:unknown→operational
    up:300                       operational
    up:310                       operational
    down                         operational
    down                         operational
    down                         outage      incident_opened[opened] state:operational→outage
    up:320                       outage      incident_updated[validation_started]
    up:310                       outage      incident_updated[canary_passed]
    up:305                       operational incident_resolved[canary_passed,resolved] state:outage→operational
    describe: operational
    wants_canary: false
    incident inc-openai-api-api-local-1740830550 resolved outage provider_error confirmed=false
      +0s opened: outage after 3 failed checks in a row (provider_error): HTTP 500 from the API; unconfirmed outage — no official status page has confirmed it
      +30s validation_started: answers again (320 ms); validating recovery: 2 canary checks in a row must pass
      +60s canary_passed: canary 1/2 passed: 310 ms vs baseline 300 ms
      +90s canary_passed: canary 2/2 passed: 305 ms vs baseline 300 ms
      +90s resolved: recovered: 2 canary checks in a row passed; the outage lasted 1m 30s
    ");
}

#[test]
fn a_failure_during_validation_restarts_the_count() {
    insta::assert_snapshot!(check(config(3, 3), &format!("{BASELINE} down down down up:300 up:300 degraded:provider_error up:300 down up:300 up:300 up:300 up:300")), @r"
    up:290                       operational state:unknown→operational
    up:300                       operational
    up:310                       operational
    down                         operational
    down                         operational
    down                         outage      incident_opened[opened] state:operational→outage
    up:300                       outage      incident_updated[validation_started]
    up:300                       outage      incident_updated[canary_passed]
    degraded:provider_error      outage      incident_updated[canary_failed]
    up:300                       outage      incident_updated[canary_passed]
    down                         outage      incident_updated[reopened]
    up:300                       outage      incident_updated[validation_started]
    up:300                       outage      incident_updated[canary_passed]
    up:300                       outage      incident_updated[canary_passed]
    up:300                       operational incident_resolved[canary_passed,resolved] state:outage→operational
    describe: operational
    wants_canary: false
    incident inc-openai-api-api-local-1740830550 resolved outage provider_error confirmed=false
      +0s opened: outage after 3 failed checks in a row (provider_error): HTTP 500 from the API; unconfirmed outage — no official status page has confirmed it
      +30s validation_started: answers again (300 ms); validating recovery: 3 canary checks in a row must pass
      +60s canary_passed: canary 1/3 passed: 300 ms vs baseline 300 ms
      +90s canary_failed: canary failed: error: provider_error; count restarts (0/3)
      +120s canary_passed: canary 1/3 passed: 300 ms vs baseline 300 ms
      +150s reopened: down again (provider_error) after 1 passed canary: back to open, validation starts over on the next success
      +180s validation_started: answers again (300 ms); validating recovery: 3 canary checks in a row must pass
      +210s canary_passed: canary 1/3 passed: 300 ms vs baseline 300 ms
      +240s canary_passed: canary 2/3 passed: 300 ms vs baseline 300 ms
      +270s canary_passed: canary 3/3 passed: 300 ms vs baseline 300 ms
      +270s resolved: recovered: 3 canary checks in a row passed; the outage lasted 4m 30s
    ");
}

#[test]
fn without_a_baseline_latency_cannot_fail() {
    insta::assert_snapshot!(check(config(2, 1), "down down up:5000 up:5000"), @r"
    down                         operational state:unknown→operational
    down                         outage      incident_opened[opened] state:operational→outage
    up:5000                      outage      incident_updated[validation_started]
    up:5000                      operational incident_resolved[canary_passed,resolved] state:outage→operational
    describe: operational
    wants_canary: false
    incident inc-openai-api-api-local-1740830430 resolved outage provider_error confirmed=false
      +0s opened: outage after 2 failed checks in a row (provider_error): HTTP 500 from the API; unconfirmed outage — no official status page has confirmed it
      +30s validation_started: answers again (5000 ms); validating recovery: 1 canary check must pass
      +60s canary_passed: canary 1/1 passed: 5000 ms (no baseline yet)
      +60s resolved: recovered: 1 canary check passed; the outage lasted 1m
    ");
}

#[test]
fn keys_are_independent() {
    insta::assert_snapshot!(check(config(2, 1), "up:300 up:300@web down@web down@web up:300 down up:300"), @r"
    up:300                       operational state:unknown→operational
    up:300@web                   operational state:unknown→operational
    down@web                     operational
    down@web                     outage      incident_opened[opened] state:operational→outage
    up:300                       operational
    down                         operational
    up:300                       operational
    describe: operational
    wants_canary: false
    incident inc-openai-api-web-local-1740830490 open outage provider_error confirmed=false
      +0s opened: outage after 2 failed checks in a row (provider_error): HTTP 500 from the API; unconfirmed outage — no official status page has confirmed it
    ");
}

#[test]
fn restore_resumes_an_open_incident_without_opening_it_again() {
    insta::assert_snapshot!(check(config(3, 2), &format!("{BASELINE} down down down restart down down up:300 restart up:300 up:300")), @r"
    up:290                       operational state:unknown→operational
    up:300                       operational
    up:310                       operational
    down                         operational
    down                         operational
    down                         outage      incident_opened[opened] state:operational→outage
    restart                      outage
    down                         outage
    down                         outage
    up:300                       outage      incident_updated[validation_started]
    restart                      outage
    up:300                       outage      incident_updated[canary_passed]
    up:300                       operational incident_resolved[canary_passed,resolved] state:outage→operational
    describe: operational
    wants_canary: false
    incident inc-openai-api-api-local-1740830550 resolved outage provider_error confirmed=false
      +0s opened: outage after 3 failed checks in a row (provider_error): HTTP 500 from the API; unconfirmed outage — no official status page has confirmed it
      +120s validation_started: answers again (300 ms); validating recovery: 2 canary checks in a row must pass
      +180s canary_passed: canary 1/2 passed: 300 ms (no baseline yet)
      +210s canary_passed: canary 2/2 passed: 300 ms (no baseline yet)
      +210s resolved: recovered: 2 canary checks in a row passed; the outage lasted 3m 30s
    ");
}

#[test]
fn restore_keeps_the_last_states_of_keys_not_yet_observed_again() {
    let mut run = Run::new(config(3, 2));
    run.feed("up:300 up:300@web official:maintenance down down restart");
    let mut states: Vec<String> = run
        .assessor
        .states()
        .into_iter()
        .map(|(k, s, _)| format!("{k} {s}"))
        .collect();
    // The maintenance carries over the restart until the page says otherwise.
    run.feed("down down official:operational down");
    states.push(run.report());
    insta::assert_snapshot!(states.join("\n"), @r"
    openai-api/api/local maintenance
    openai-api/web/local operational
    up:300                       operational state:unknown→operational
    up:300@web                   operational state:unknown→operational
    official:maintenance         operational
    down                         maintenance state:operational→maintenance
    down                         maintenance
    restart                      maintenance
    down                         maintenance
    down                         maintenance
    official:operational         operational state:maintenance→operational
    down                         outage      incident_opened[opened] state:operational→outage
    describe: unconfirmed outage — official page green
    wants_canary: false
    incident inc-openai-api-api-local-1740830670 open outage provider_error confirmed=false
      +0s opened: outage after 3 failed checks in a row (provider_error): HTTP 500 from the API; unconfirmed outage — official page green
    ");
}

#[test]
fn events_and_incidents_serialize_with_stable_snake_case_names() {
    let mut run = Run::new(config(1, 1));
    run.feed("official:outage:Errors down");
    let incident = run.last_incident.clone().unwrap();
    let event = Event::IncidentOpened(incident.clone());
    let json = serde_json::to_value(&event).unwrap();
    assert_eq!(json["event"], "incident_opened");
    assert_eq!(json["phase"], "open");
    assert_eq!(json["severity"], "outage");
    assert_eq!(json["cause"], "provider_error");
    assert_eq!(json["timeline"][1]["kind"], "confirmed");
    let back: Event = serde_json::from_value(json).unwrap();
    assert_eq!(back, event);
    for kind in TimelineKind::ALL {
        assert_eq!(TimelineKind::from_code(kind.as_str()), Some(kind));
    }
    for state in [
        Status::Operational,
        Status::Degraded,
        Status::Outage,
        Status::Maintenance,
        Status::Unknown,
    ] {
        assert_eq!(Status::from_str_lossy(state.as_str()), state);
    }
    assert_eq!(
        IncidentPhase::from_str_lossy("validating"),
        IncidentPhase::Validating
    );
}

// === properties ===

#[derive(Clone, Debug)]
enum Step {
    Obs {
        web: bool,
        source: Source,
        health: Health,
        total: Option<f32>,
        complete: Option<bool>,
    },
    Official(Status),
}

fn health() -> impl Strategy<Value = Health> {
    prop_oneof![
        3 => Just(Health::Up),
        2 => Just(Health::Down),
        1 => Just(Health::Degraded),
        1 => Just(Health::Unknown),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let obs = (
        any::<bool>(),
        prop_oneof![
            Just(Source::Probe),
            Just(Source::Canary),
            Just(Source::Official)
        ],
        health(),
        proptest::option::of(prop_oneof![0.0f32..5000.0, Just(f32::NAN), Just(-1.0f32)]),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(|(web, source, health, total, complete)| Step::Obs {
            web,
            source,
            health,
            total,
            complete,
        });
    let official = prop_oneof![
        Just(Status::Operational),
        Just(Status::Degraded),
        Just(Status::Outage),
        Just(Status::Maintenance),
        Just(Status::Unknown),
    ]
    .prop_map(Step::Official);
    prop_oneof![8 => obs, 1 => official]
}

fn config_strategy() -> impl Strategy<Value = AssessConfig> {
    (1u32..5, 1u32..5, 0usize..8, 1.0f64..4.0, 0u32..40, 0u32..6).prop_map(
        |(f, s, w, factor, window, scattered)| AssessConfig {
            failures_to_open: f,
            successes_to_close: s,
            baseline_window: w,
            latency_factor: factor,
            latency_slack_ms: 50.0,
            intermittent_window: window,
            intermittent_failures: scattered,
        },
    )
}

proptest! {
    #[test]
    fn arbitrary_sequences_keep_the_invariants(config in config_strategy(), steps in proptest::collection::vec(step(), 0..160)) {
        let n = config.successes_to_close as usize;
        let mut assessor = Assessor::new(config);
        // Per component: the known (not Unknown, not Official) observations, oldest first.
        let mut known: HashMap<String, Vec<(Health, Option<bool>)>> = HashMap::new();
        let mut open: HashMap<Key, String> = HashMap::new();
        let mut shown: HashMap<Key, Status> = HashMap::new();
        for (i, step) in steps.into_iter().enumerate() {
            let now = t0() + Duration::seconds(i as i64 * STEP_SECS);
            let events = match step {
                Step::Official(signal) => assessor.official(&service(), signal, Some("Title"), now),
                Step::Obs { web, source, health, total, complete } => {
                    let component = if web { "web" } else { "api" };
                    let mut o = obs(component, source, health, Cause::ProviderError, total, complete, now);
                    if health == Health::Up {
                        o.cause = Cause::Ok;
                    }
                    if health != Health::Unknown && source != Source::Official {
                        known.entry(component.to_owned()).or_default().push((health, complete));
                    }
                    assessor.observe(&o, now)
                }
            };
            for event in events {
                match event {
                    Event::StateChanged { key, from, to, .. } => {
                        prop_assert_eq!(shown.get(&key).copied().unwrap_or(Status::Unknown), from);
                        prop_assert_ne!(from, to);
                        shown.insert(key, to);
                    }
                    Event::IncidentOpened(incident) => {
                        prop_assert!(!open.contains_key(&incident.key), "opened twice: {:?}", incident.key);
                        open.insert(incident.key.clone(), incident.id.clone());
                    }
                    Event::IncidentUpdated(incident) => {
                        prop_assert_eq!(open.get(&incident.key), Some(&incident.id));
                        prop_assert!(incident.is_open());
                    }
                    Event::IncidentResolved(incident) => {
                        prop_assert_eq!(open.remove(&incident.key), Some(incident.id.clone()));
                        prop_assert_eq!(incident.phase, IncidentPhase::Resolved);
                        // The timeline: n canaries passed in a row right before Resolved.
                        let kinds: Vec<TimelineKind> = incident.timeline.iter().map(|e| e.kind).collect();
                        prop_assert_eq!(kinds.last(), Some(&TimelineKind::Resolved));
                        let passed = kinds[..kinds.len() - 1]
                            .iter()
                            .rev()
                            .take_while(|k| !matches!(k, TimelineKind::CanaryFailed | TimelineKind::Reopened | TimelineKind::ValidationStarted | TimelineKind::Opened))
                            .filter(|k| **k == TimelineKind::CanaryPassed)
                            .count();
                        prop_assert!(passed >= n, "resolved after {} passes: {:?}", passed, kinds);
                        // The observations: the last n known ones were complete Up answers,
                        // after at least one more that started validation.
                        let seen = &known[incident.key.component.as_str()];
                        prop_assert!(seen.len() > n);
                        for (health, complete) in &seen[seen.len() - n..] {
                            prop_assert_eq!(*health, Health::Up);
                            prop_assert_ne!(*complete, Some(false));
                        }
                    }
                }
            }
            for component in ["api", "web"] {
                let k = key(component);
                prop_assert_eq!(assessor.state(&k), shown.get(&k).copied().unwrap_or(Status::Unknown));
                prop_assert_eq!(assessor.incident(&k).map(|i| i.id.clone()), open.get(&k).cloned());
                prop_assert_eq!(
                    assessor.wants_canary(&k),
                    assessor.incident(&k).is_some_and(|i| i.phase == IncidentPhase::Validating)
                );
                let _ = assessor.describe(&k);
            }
        }
        prop_assert_eq!(assessor.open_incidents().len(), open.len());
    }

    #[test]
    fn unknown_only_sequences_never_open_an_incident(
        config in config_strategy(),
        steps in proptest::collection::vec((any::<bool>(), proptest::option::of(prop_oneof![
            Just(Status::Operational),
            Just(Status::Outage),
            Just(Status::Maintenance),
        ])), 0..100),
    ) {
        let mut assessor = Assessor::new(config);
        for (i, (web, official)) in steps.into_iter().enumerate() {
            let now = t0() + Duration::seconds(i as i64 * STEP_SECS);
            let mut events = Vec::new();
            if let Some(signal) = official {
                events.extend(assessor.official(&service(), signal, None, now));
            }
            let component = if web { "web" } else { "api" };
            let o = obs(component, Source::Probe, Health::Unknown, Cause::Unknown, Some(10.0), None, now);
            events.extend(assessor.observe(&o, now));
            prop_assert!(events.is_empty(), "{:?}", events);
            prop_assert_eq!(assessor.state(&key(component)), Status::Unknown);
        }
        prop_assert!(assessor.open_incidents().is_empty());
    }
}

#[test]
fn ten_thousand_keys_each_open_and_resolve_once() {
    let mut assessor = Assessor::new(config(3, 2));
    let services: Vec<ServiceName> = (0..10_000)
        .map(|i| ServiceName::parse(&format!("s{i}")).expect("a valid name"))
        .collect();
    let script = [
        (Health::Up, Some(true)),
        (Health::Down, None),
        (Health::Down, None),
        (Health::Down, None),
        (Health::Up, Some(true)),
        (Health::Up, Some(true)),
        (Health::Up, Some(true)),
    ];
    let mut kinds: HashMap<&'static str, usize> = HashMap::new();
    for (step, (health, complete)) in script.into_iter().enumerate() {
        let now = t0() + Duration::seconds(step as i64 * STEP_SECS);
        for service in &services {
            let mut o = obs(
                "api",
                Source::Canary,
                health,
                Cause::ProviderError,
                Some(300.0),
                complete,
                now,
            );
            o.service = service.clone();
            for event in assessor.observe(&o, now) {
                *kinds.entry(event.kind()).or_default() += 1;
            }
        }
    }
    assert_eq!(kinds["incident_opened"], 10_000);
    assert_eq!(kinds["incident_resolved"], 10_000);
    assert!(assessor.open_incidents().is_empty());
    assert_eq!(assessor.states().len(), 10_000);
}

#[test]
fn probes_far_slower_than_the_keys_own_baseline_open_a_slow_responses_degradation() {
    let mut assessor = Assessor::new(config(2, 2));
    let mut step = 0i64;
    let mut feed = |assessor: &mut Assessor, total: f32| {
        step += 1;
        let now = t0() + Duration::seconds(step * STEP_SECS);
        let o = obs(
            "api",
            Source::Probe,
            Health::Up,
            Cause::Ok,
            Some(total),
            None,
            now,
        );
        assessor.observe(&o, now)
    };
    // Too few samples: no baseline judges yet, however slow.
    feed(&mut assessor, 300.0);
    feed(&mut assessor, 5000.0);
    feed(&mut assessor, 5000.0);
    assert!(assessor.incident(&key("api")).is_none());
    for _ in 0..12 {
        feed(&mut assessor, 300.0);
    }
    assert_eq!(assessor.state(&key("api")), Status::Operational);
    feed(&mut assessor, 1500.0);
    let events = feed(&mut assessor, 1500.0);
    let incident = assessor
        .incident(&key("api"))
        .expect("two slow probes in a row open one");
    assert_eq!(incident.severity, Status::Degraded);
    assert_eq!(incident.cause, Cause::SlowResponses);
    assert!(
        incident.timeline[0].text.contains("usually takes"),
        "{}",
        incident.timeline[0].text
    );
    assert!(events.iter().any(|e| matches!(e, Event::IncidentOpened(_))));
    assert_eq!(assessor.state(&key("api")), Status::Degraded);
}

#[test]
fn a_failure_corroborated_by_a_crowd_of_reports_opens_at_once() {
    let mut assessor = Assessor::new(config(3, 2));
    let at = t0();
    assessor.set_crowd(&service(), true);
    let down = obs(
        "api",
        Source::Probe,
        Health::Down,
        Cause::ProviderError,
        Some(100.0),
        None,
        at,
    );
    let events = assessor.observe(&down, at);
    assert!(
        events.iter().any(|e| matches!(e, Event::IncidentOpened(_))),
        "one failure with many people reporting is enough: {events:?}"
    );
    // Without the crowd, one failure is not.
    let mut quiet = Assessor::new(config(3, 2));
    let events = quiet.observe(&down, at);
    assert!(!events.iter().any(|e| matches!(e, Event::IncidentOpened(_))));
}

#[test]
fn an_instance_taking_a_service_over_continues_the_stored_incident_instead_of_opening_one() {
    let down = |i: i64| {
        obs(
            "api",
            Source::Probe,
            Health::Down,
            Cause::ProviderError,
            None,
            None,
            t0() + Duration::seconds(STEP_SECS * i),
        )
    };
    // The instance that ran the checks opened an incident and stored it.
    let mut holder = Assessor::new(config(2, 2));
    for i in 0..2 {
        holder.observe(&down(i), down(i).at);
    }
    let stored = holder.open_incidents();
    assert_eq!(stored.len(), 1);
    // Another instance saw only part of it (it followed late) and opened its own, later.
    let mut follower = Assessor::new(config(2, 2));
    for i in 1..3 {
        follower.observe(&down(i), down(i).at);
    }
    assert_ne!(follower.open_incidents()[0].id, stored[0].id);
    // Taking the service over, it adopts the stored one and goes on with it.
    follower.adopt(&service(), &stored);
    assert_eq!(follower.open_incidents()[0].id, stored[0].id);
    let events = follower.observe(&down(3), down(3).at);
    assert!(
        !events.iter().any(|e| matches!(e, Event::IncidentOpened(_))),
        "{events:?}"
    );
    assert_eq!(follower.open_incidents().len(), 1);
}
