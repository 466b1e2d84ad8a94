//! Turns day rollups and incidents into the per-day entries that the uptime bars draw: each
//! day's counts, its worst state and how many incidents touched it.

use aiwatch_core::assess::Incident;
use aiwatch_core::observation::Component;
use aiwatch_core::Status;
use aiwatch_store::{HealthCounts, Rollup};
use chrono::{DateTime, Duration, Utc};

use super::present;

/// How many days the uptime bars cover.
pub const DAYS: usize = 90;

/// The worst a day got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mark {
    /// Nothing was observed (not watched yet, or the monitor could not see).
    NoData,
    Ok,
    Degraded,
    Outage,
}

impl Mark {
    pub fn class(self) -> &'static str {
        match self {
            Mark::NoData => "unk",
            Mark::Ok => "ok",
            Mark::Degraded => "warn",
            Mark::Outage => "bad",
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Mark::NoData => "no data",
            Mark::Ok => "operational",
            Mark::Degraded => "degraded",
            Mark::Outage => "outage",
        }
    }
}

/// One day of one service.
#[derive(Clone, Debug, PartialEq)]
pub struct Day {
    pub start: DateTime<Utc>,
    pub counts: HealthCounts,
    pub mark: Mark,
    /// Own incidents open at some point of the day.
    pub incidents: usize,
}

impl Day {
    /// Up (or degraded: it answered) over known observations.
    pub fn uptime(&self) -> Option<f64> {
        self.counts.up_ratio()
    }

    /// A day with nothing to say: all observations up, no incident.
    pub fn is_clean(&self) -> bool {
        self.mark == Mark::Ok
            && self.incidents == 0
            && self.counts.down == 0
            && self.counts.degraded == 0
    }

    /// "97.21 % up · 1 incident · outage", or "no data".
    pub fn text(&self) -> String {
        let uptime = self.uptime().map_or_else(
            || "no data".to_owned(),
            |u| format!("{} up", present::percent(u)),
        );
        let incidents = match self.incidents {
            0 => "no incidents".to_owned(),
            n => present::plural(n, "incident", "incidents"),
        };
        match self.mark {
            Mark::Ok | Mark::NoData if self.incidents == 0 => uptime,
            Mark::Ok | Mark::NoData => format!("{uptime} · {incidents}"),
            mark => format!("{uptime} · {incidents} · {}", mark.word()),
        }
    }
}

/// UTC midnight of the day `now` falls in.
pub fn day_start(now: DateTime<Utc>) -> DateTime<Utc> {
    now.date_naive()
        .and_hms_opt(0, 0, 0)
        .map_or(now, |d| d.and_utc())
}

/// The first day the bars show when today is the last of `n` days.
pub fn first_day(now: DateTime<Utc>, n: usize) -> DateTime<Utc> {
    day_start(now) - Duration::days(n as i64 - 1)
}

/// The `n` days ending today, from day rollups of own components (official ones are skipped)
/// and the service's incidents. A day's mark is the worst incident severity that touched it;
/// without an incident, a day where at least 5 % of checks failed is degraded.
pub fn days(rollups: &[Rollup], incidents: &[&Incident], now: DateTime<Utc>, n: usize) -> Vec<Day> {
    let first = first_day(now, n);
    let mut days: Vec<Day> = (0..n)
        .map(|i| Day {
            start: first + Duration::days(i as i64),
            counts: HealthCounts::default(),
            mark: Mark::NoData,
            incidents: 0,
        })
        .collect();
    for rollup in rollups {
        if rollup.key.component == Component::Official {
            continue;
        }
        let index = (rollup.start - first).num_days();
        if let Some(day) = usize::try_from(index).ok().and_then(|i| days.get_mut(i)) {
            day.counts.merge(&rollup.counts);
        }
    }
    for day in &mut days {
        let end = day.start + Duration::days(1);
        let touching = incidents
            .iter()
            .filter(|i| i.opened_at < end && i.resolved_at.is_none_or(|r| r >= day.start));
        let mut worst = None;
        for incident in touching {
            day.incidents += 1;
            let mark = match incident.severity {
                Status::Outage => Mark::Outage,
                _ => Mark::Degraded,
            };
            worst = worst.max(Some(mark));
        }
        day.mark = match (worst, day.counts.known()) {
            (Some(mark), _) => mark,
            (None, 0) => Mark::NoData,
            (None, known) if day.counts.down * 20 >= known => Mark::Degraded,
            (None, _) => Mark::Ok,
        };
    }
    days
}

/// Uptime over all the days, weighted by observations.
pub fn overall(days: &[Day]) -> Option<f64> {
    let mut counts = HealthCounts::default();
    for day in days {
        counts.merge(&day.counts);
    }
    counts.up_ratio()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiwatch_core::assess::{IncidentPhase, Key};
    use aiwatch_core::{Cause, ServiceName};
    use aiwatch_store::{Granularity, LatencyHistogram};

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn rollup(component: &str, start: &str, up: u64, down: u64) -> Rollup {
        Rollup {
            key: Key::new(
                ServiceName::parse("x").unwrap(),
                Component::parse(component).unwrap(),
                "local",
            ),
            granularity: Granularity::Day,
            start: at(start),
            counts: HealthCounts {
                up,
                degraded: 0,
                down,
                unknown: 0,
            },
            latency: LatencyHistogram::default(),
        }
    }

    #[test]
    fn days_take_the_worst_incident_and_skip_official_rollups() {
        let now = at("2026-03-10T12:00:00Z");
        let incident = Incident {
            id: "i".into(),
            key: Key::new(ServiceName::parse("x").unwrap(), Component::Api, "local"),
            opened_at: at("2026-03-08T23:00:00Z"),
            updated_at: at("2026-03-09T01:00:00Z"),
            resolved_at: Some(at("2026-03-09T01:00:00Z")),
            phase: IncidentPhase::Resolved,
            severity: Status::Outage,
            cause: Cause::ProviderError,
            confirmed: false,
            timeline: Vec::new(),
        };
        let rollups = [
            rollup("api", "2026-03-08T00:00:00Z", 90, 10),
            rollup("official", "2026-03-08T00:00:00Z", 0, 50),
            rollup("api", "2026-03-10T00:00:00Z", 100, 0),
        ];
        let days = days(&rollups, &[&incident], now, 3);
        assert_eq!(days.len(), 3);
        assert_eq!(days[0].mark, Mark::Outage);
        assert_eq!(
            days[0].counts.down, 10,
            "the official rollup is not an own probe"
        );
        assert_eq!(days[1].mark, Mark::Outage, "the incident ran past midnight");
        assert_eq!(days[1].uptime(), None);
        assert_eq!(days[2].mark, Mark::Ok);
        assert!(days[2].is_clean());
        assert_eq!(days[0].text(), "90.00 % up · 1 incident · outage");
    }
}
