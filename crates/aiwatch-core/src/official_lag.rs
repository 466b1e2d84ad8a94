//! How late the official page acknowledges what aiwatch saw first: for each incident its own
//! probes (or the crowd) opened before the page said anything, the time from the opening to the
//! page's confirmation; summarized per provider ("status.openai.com acknowledged outages a
//! median 11 min after our probes").

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::assess::{Incident, TimelineKind};

/// One incident's lag: `None` when the page never acknowledged it.
pub fn lag_of(incident: &Incident) -> Option<std::time::Duration> {
    let opened = incident
        .timeline
        .iter()
        .find(|e| e.kind == TimelineKind::Opened)?;
    // Confirmed at the opening itself: the page spoke first (or at once); no lag to measure.
    let confirmed = incident
        .timeline
        .iter()
        .find(|e| e.kind == TimelineKind::Confirmed && e.at > opened.at)?;
    (confirmed.at - opened.at).to_std().ok()
}

/// The lag of a provider's page over a set of incidents.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LagSummary {
    /// Incidents seen first by aiwatch and later acknowledged by the page.
    pub acknowledged: usize,
    /// Incidents seen by aiwatch that the page never acknowledged.
    pub never_acknowledged: usize,
    pub median_seconds: Option<f64>,
    pub p90_seconds: Option<f64>,
    /// The newest acknowledged incident's opening.
    pub latest: Option<DateTime<Utc>>,
}

/// Summarizes the lag over `incidents` (those of one service); open incidents do not count as
/// "never acknowledged" yet.
pub fn summarize<'a>(incidents: impl IntoIterator<Item = &'a Incident>) -> LagSummary {
    let mut lags: Vec<f64> = Vec::new();
    let mut never = 0;
    let mut latest = None;
    for incident in incidents {
        match lag_of(incident) {
            Some(lag) => {
                lags.push(lag.as_secs_f64());
                latest = latest.max(Some(incident.opened_at));
            }
            None if !incident.is_open() && !incident.confirmed => never += 1,
            None => {}
        }
    }
    lags.sort_by(f64::total_cmp);
    let quantile =
        |q: f64| (!lags.is_empty()).then(|| lags[((lags.len() - 1) as f64 * q).round() as usize]);
    LagSummary {
        acknowledged: lags.len(),
        never_acknowledged: never,
        median_seconds: quantile(0.5),
        p90_seconds: quantile(0.9),
        latest,
    }
}

impl LagSummary {
    /// "acknowledged outages a median 11 min after our probes (4 incidents)", when known.
    pub fn sentence(&self, page: &str) -> Option<String> {
        let median = self.median_seconds?;
        let minutes = (median / 60.0).round();
        let when = if minutes < 1.0 {
            format!("{median:.0} s")
        } else {
            format!("{minutes:.0} min")
        };
        Some(format!(
            "{page} acknowledged outages a median {when} after our probes ({} incident{}{})",
            self.acknowledged,
            if self.acknowledged == 1 { "" } else { "s" },
            if self.never_acknowledged > 0 {
                format!("; {} never acknowledged", self.never_acknowledged)
            } else {
                String::new()
            }
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assess::{IncidentPhase, Key, TimelineEntry};
    use crate::observation::Component;
    use crate::{Cause, ServiceName, Status};

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_765_000_000 + minute * 60, 0).unwrap()
    }

    fn incident(confirmed_after: Option<i64>, open: bool) -> Incident {
        let mut timeline = vec![TimelineEntry {
            at: at(0),
            kind: TimelineKind::Opened,
            text: "outage after 3 failures".into(),
        }];
        if let Some(m) = confirmed_after {
            timeline.push(TimelineEntry {
                at: at(m),
                kind: TimelineKind::Confirmed,
                text: "the provider confirms".into(),
            });
        }
        Incident {
            id: "inc".into(),
            key: Key::new(
                ServiceName::parse("openai-api").unwrap(),
                Component::Api,
                "local",
            ),
            opened_at: at(0),
            updated_at: at(0),
            resolved_at: (!open).then(|| at(60)),
            phase: if open {
                IncidentPhase::Open
            } else {
                IncidentPhase::Resolved
            },
            severity: Status::Outage,
            cause: Cause::ProviderError,
            confirmed: confirmed_after.is_some(),
            timeline,
        }
    }

    #[test]
    fn the_lag_is_the_time_from_our_opening_to_the_pages_confirmation() {
        let all = [
            incident(Some(11), false),
            incident(Some(5), false),
            incident(Some(30), false),
            incident(Some(0), false),
            incident(None, false),
            incident(None, true),
        ];
        let summary = summarize(&all);
        assert_eq!(
            summary.acknowledged, 3,
            "confirmed at the opening has no lag"
        );
        assert_eq!(summary.never_acknowledged, 1, "an open one may still be");
        assert_eq!(summary.median_seconds, Some(660.0));
        assert_eq!(summary.p90_seconds, Some(1800.0));
        assert_eq!(
            summary.sentence("status.openai.com").unwrap(),
            "status.openai.com acknowledged outages a median 11 min after our probes (3 incidents; 1 never acknowledged)"
        );
    }
}
