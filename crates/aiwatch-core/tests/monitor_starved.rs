//! A monitor that runs out of file descriptors (or ports, or memory) has trouble of its own: the
//! verdict says so and the daemon records nothing about the provider — never an outage.

use std::time::Duration;

use aiwatch_core::assessment::health_of_check;
use aiwatch_core::classify::classify;
use aiwatch_core::evidence::{
    CheckEvidence, ConnectAttempt, ConnectOutcome, DnsOutcome, OfficialOutcome, ProbeReport,
    Purpose,
};
use aiwatch_core::observation::Health;
use aiwatch_core::{Catalog, Scope, Status};
use chrono::{TimeZone, Utc};

fn starved_at(connect: bool) -> ProbeReport {
    let mut report = ProbeReport::new(
        Purpose::Api,
        "https://api.openai.com/v1/models",
        "api.openai.com",
    );
    let error = "Too many open files (os error 24)".to_owned();
    if connect {
        report.dns = Some(DnsOutcome::Resolved {
            addresses: vec!["192.0.2.10".parse().expect("an address")],
        });
        report.connect = vec![ConnectAttempt {
            address: "192.0.2.10:443".parse().expect("a socket address"),
            outcome: ConnectOutcome::MonitorStarved { error },
            elapsed: Some(Duration::from_millis(1)),
        }];
    } else {
        report.dns = Some(DnsOutcome::MonitorStarved { error });
    }
    report
}

#[test]
fn running_out_of_descriptors_is_the_monitors_trouble_not_an_outage() {
    let catalog = Catalog::builtin();
    let service = catalog.get("openai-api").expect("built in");
    for at_connect in [true, false] {
        let evidence = CheckEvidence {
            control: None,
            web: None,
            api: Some(starved_at(at_connect)),
            stream: None,
            official: OfficialOutcome::NotConfigured,
            budget: Duration::from_secs(5),
        };
        let verdict = classify(
            service,
            &evidence,
            Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0).unwrap(),
        );
        assert_eq!(verdict.status, Status::Unknown, "{}", verdict.summary);
        assert_eq!(verdict.scope, Scope::Local, "{}", verdict.summary);
        assert!(
            verdict.summary.contains("ran out of resources")
                || verdict
                    .evidence
                    .iter()
                    .any(|e| e.detail.contains("this machine")),
            "{}",
            verdict.summary
        );
        assert_eq!(
            health_of_check(verdict.status, verdict.cause),
            Health::Unknown
        );
    }
}
