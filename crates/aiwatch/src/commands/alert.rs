//! `aiwatch alert test NAME`: sends a sample notification through one configured channel and
//! reports the receiver's answer; and the one place the binary turns `[[alert]]` entries into
//! channels (secrets from the environment).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aiwatch_alerts::Channel;
use aiwatch_core::alert::{AlertConfig, AlertEvent};
use aiwatch_core::alert_rules::{AlertMessage, MESSAGE_VERSION};
use aiwatch_core::{Cause, Scope, Status};
use anyhow::Context;

use crate::exit;
use crate::load;

/// Every configured alert as a channel ready to send; a missing variable or an unusable CA
/// file is a config error naming the alert.
pub fn channels(alerts: &[AlertConfig], ca_files: &[PathBuf]) -> anyhow::Result<Vec<Channel>> {
    let trust =
        aiwatch_probe::tls::Trust::new(ca_files).map_err(|e| exit::config(e.to_string()))?;
    alerts
        .iter()
        .map(|a| {
            Channel::build(a.clone(), &load::env_secret, &trust)
                .map_err(|e| exit::config(e.to_string()))
        })
        .collect()
}

/// A sample of `event`, marked as a test everywhere a reader looks.
fn sample(event: AlertEvent, dashboard: &str) -> AlertMessage {
    let now = chrono::Utc::now();
    let id = format!("test-{}", now.timestamp());
    let (status, cause) = match event {
        AlertEvent::Recovered => (Status::Operational, Cause::ProviderError),
        AlertEvent::Degraded => (Status::Degraded, Cause::SlowResponses),
        AlertEvent::MonitorTrouble => (Status::Unknown, Cause::DnsFailure),
        AlertEvent::MaintenanceStarted => (Status::Maintenance, Cause::Maintenance),
        _ => (Status::Outage, Cause::ProviderError),
    };
    AlertMessage {
        version: MESSAGE_VERSION,
        event,
        service: Some("example".into()),
        service_title: Some("Example service".into()),
        component: Some("api".into()),
        region: Some("local".into()),
        status,
        scope: Scope::Global,
        cause,
        title: format!(
            "[test] aiwatch sample: {} (nothing is wrong)",
            event.as_str()
        ),
        summary:
            "This is a test notification sent by `aiwatch alert test`; no service is affected."
                .into(),
        advice: vec!["Nothing to do: if you read this, the channel works.".into()],
        official: None,
        dashboard_url: dashboard.to_owned(),
        incident_id: id.clone(),
        idempotency_key: format!("{id}:{}", event.as_str()),
        at: now,
        since: now,
    }
}

pub fn test(
    config_path: Option<&Path>,
    name: &str,
    event: &str,
    network: &crate::cli::NetworkArgs,
) -> anyhow::Result<ExitCode> {
    let loaded = load::load(config_path)?;
    let alerts = &loaded.config.alerts;
    let Some(alert) = alerts.iter().find(|a| a.name == name) else {
        let names: Vec<&str> = alerts.iter().map(|a| a.name.as_str()).collect();
        let close = aiwatch_core::catalog::closest_names(name, names.iter().copied());
        let hint = if !close.is_empty() {
            format!("; did you mean {}?", close.join(", "))
        } else if names.is_empty() {
            "; the config has no [[alert]] entries".to_owned()
        } else {
            format!("; configured: {}", names.join(", "))
        };
        return Err(exit::usage(format!("no alert is named `{name}`{hint}")));
    };
    let event = AlertEvent::parse(event).ok_or_else(|| {
        let all: Vec<&str> = AlertEvent::ALL.iter().map(|e| e.as_str()).collect();
        exit::usage(format!(
            "`{event}` is not an event; use one of {}",
            all.join(", ")
        ))
    })?;
    let channel = channels(std::slice::from_ref(alert), &network.ca_file)?
        .pop()
        .context("the alert was built")?;
    let checker = load::plain_checker(network, std::time::Duration::from_secs(15))?;
    let dashboard = loaded
        .config
        .server
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", loaded.config.server.listen));
    let message = sample(event, &dashboard);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let answer = runtime.block_on(aiwatch_alerts::send::attempt(
        checker.context(),
        &channel,
        channel.outbound(&message),
        std::time::Duration::from_secs(15),
    ));
    let verdict = if answer.accepted {
        "accepted"
    } else if answer.transient {
        "not accepted (a temporary failure: serve would retry)"
    } else {
        "refused (serve would give up: fix the channel's settings)"
    };
    println!(
        "alert `{name}` ({}): {verdict}\n  {}",
        alert.kind.as_str(),
        answer.detail
    );
    if let Some(wait) = answer.retry_after {
        println!("  the receiver asks to wait {}s", wait.as_secs());
    }
    Ok(if answer.accepted {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
