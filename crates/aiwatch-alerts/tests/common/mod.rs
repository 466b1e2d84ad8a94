//! What the channel and delivery tests share: a loopback world, a probe context that resolves
//! through its DNS, channels built from TOML, and sample messages.

#![allow(dead_code)]

use std::time::Duration;

use aiwatch_alerts::Channel;
use aiwatch_core::alert::AlertEvent;
use aiwatch_core::alert_rules::{AlertMessage, OfficialNote, MESSAGE_VERSION};
use aiwatch_core::{Cause, Config, Scope, Status};
use aiwatch_probe::layered::ProbeContext;
use aiwatch_probe::{CheckOptions, Checker, DnsChoice, ProxySettings};
use aiwatch_testkit::World;

/// The probe context of a monitor in `world`: its DNS, no proxy, public roots.
pub fn context(world: &World) -> ProbeContext {
    Checker::new(CheckOptions {
        timeout: Duration::from_secs(5),
        dns: DnsChoice::Server(world.dns.addr()),
        ca_files: Vec::new(),
        control_url: None,
        deep: false,
        proxies: ProxySettings::none(),
    })
    .expect("a checker")
    .context()
    .clone()
}

/// The channel of the one `[[alert]]` in `toml`, trusting the world's public CA; secrets come
/// from `secrets` (name, value) instead of the environment.
pub fn channel(world: &World, toml: &str, secrets: &[(&str, &str)]) -> Channel {
    let config = Config::parse(toml).expect("a valid alert");
    let mut alert = config.alerts[0].clone();
    alert.ca_file = Some(world.public_ca_path());
    let trust = aiwatch_probe::tls::Trust::new(&[]).expect("trust");
    let lookup = |var: &str| {
        secrets
            .iter()
            .find(|(name, _)| *name == var)
            .map(|(_, v)| (*v).to_owned())
    };
    Channel::build(alert, &lookup, &trust).expect("the channel builds")
}

pub fn message(event: AlertEvent) -> AlertMessage {
    let at = "2026-12-01T12:00:00Z".parse().unwrap();
    AlertMessage {
        version: MESSAGE_VERSION,
        event,
        service: Some("openai-api".into()),
        service_title: Some("OpenAI API".into()),
        component: Some("api".into()),
        region: Some("local".into()),
        status: if event == AlertEvent::Recovered {
            Status::Operational
        } else {
            Status::Outage
        },
        scope: Scope::Global,
        cause: Cause::ProviderOverloaded,
        title: format!("OpenAI API api: {} <for everyone> & more", event.as_str()),
        summary: "9 of the last 10 requests failed with 529 overloaded".into(),
        advice: vec!["Send traffic to another provider for now".into()],
        official: Some(OfficialNote {
            indicator: Some("major".into()),
            incident: Some("Elevated errors on Chat Completions".into()),
            url: Some("https://status.openai.test/incidents/1".into()),
        }),
        dashboard_url: "http://aiwatch.test/services/openai-api".into(),
        incident_id: "inc-openai-api-api-local-1764590400".into(),
        idempotency_key: format!("inc-openai-api-api-local-1764590400:{}", event.as_str()),
        at,
        since: at,
    }
}
