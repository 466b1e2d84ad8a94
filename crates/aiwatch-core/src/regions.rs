//! Where a service fails: one face's assessments from several vantage points (this machine and
//! each agent's region) fused into one, with the quorum rule — failing from fewer regions than
//! the quorum is `regional` (naming them), from at least the quorum is `global`. A region whose
//! own connection fails, or whose agent went silent, is not counted; and a single vantage point
//! keeps its own verdict, exactly as before there were agents.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::assessment::{roll_up, Assessment, Notice};
use crate::cause::{Scope, Status};
use crate::observation::Region;

/// One region's assessment of a face, and whether its agent went silent.
#[derive(Clone, Debug, PartialEq)]
pub struct RegionReading {
    pub region: Region,
    pub assessment: Assessment,
    /// Its agent has not been heard from within the grace period: its state is unknown.
    pub silent: bool,
}

/// How one region's word was counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RegionRole {
    /// Its probes see the provider failing.
    Failing,
    /// Its probes see the provider answer.
    Passing,
    /// It cannot tell: its own connection or path fails, nothing measured yet, or its agent is
    /// silent.
    NotCounted,
}

/// The fused word of several regions.
#[derive(Clone, Debug, PartialEq)]
pub struct RegionalAssessment {
    pub assessment: Assessment,
    /// The regions whose probes see the provider failing, sorted.
    pub failing: Vec<Region>,
    /// The regions whose probes see it answer, sorted.
    pub passing: Vec<Region>,
}

/// Each region's role: what its probes say about the provider, if it can say anything.
pub fn role(reading: &RegionReading) -> RegionRole {
    let a = &reading.assessment;
    let blind = matches!(
        a.notice,
        Some(Notice::MonitorOffline(_) | Notice::MonitorCannotSee(_))
    );
    if reading.silent || blind || !a.provenance.probes.is_measured() {
        return RegionRole::NotCounted;
    }
    match a.provenance.probes {
        Status::Degraded | Status::Outage => RegionRole::Failing,
        Status::Operational => RegionRole::Passing,
        _ => RegionRole::NotCounted,
    }
}

/// Fuses one face's readings from every region. With one region (or none counted, or none
/// failing) the usual roll-up speaks (a face that cannot be seen from one place does not hide
/// what another sees; a notice is kept). When some regions fail: at least `quorum` of the
/// counted ones (clamped to how many are counted) → the worst failing region's assessment,
/// `global`; fewer → the same with scope `regional`.
pub fn across_regions(readings: &[RegionReading], quorum: u32) -> Option<RegionalAssessment> {
    let mut failing = Vec::new();
    let mut passing = Vec::new();
    for reading in readings {
        match role(reading) {
            RegionRole::Failing => failing.push(reading),
            RegionRole::Passing => passing.push(reading),
            RegionRole::NotCounted => {}
        }
    }
    let names = |list: &[&RegionReading]| {
        let mut names: Vec<Region> = list.iter().map(|r| r.region.clone()).collect();
        names.sort();
        names
    };
    let counted = failing.len() + passing.len();
    // A notice is about one vantage point's own trouble: with several, only this machine's
    // travels into the fused word (an agent's own trouble shows in its region's row).
    let several = readings.len() > 1;
    let heard: Vec<Assessment> = readings
        .iter()
        .filter(|r| !r.silent)
        .map(|r| {
            let mut a = r.assessment;
            if several && r.region.as_str() != crate::observation::LOCAL_REGION {
                a.notice = None;
            }
            a
        })
        .collect();
    if failing.is_empty() {
        let assessment = roll_up(&heard).or_else(|| {
            // Every region is silent: nothing is known.
            readings.first().map(|r| unknown(r.assessment))
        })?;
        return Some(RegionalAssessment {
            assessment,
            failing: Vec::new(),
            passing: names(&passing),
        });
    }
    let worst = failing
        .iter()
        .map(|r| r.assessment)
        .max_by_key(|a| a.status.severity())?;
    let worst = Assessment {
        notice: None,
        ..worst
    };
    let need = usize::try_from(quorum)
        .unwrap_or(usize::MAX)
        .clamp(1, counted);
    let mut assessment = worst;
    if failing.len() < need {
        assessment.scope = Scope::Regional;
    }
    if assessment.notice.is_none() {
        assessment.notice = heard.iter().find_map(|a| a.notice);
    }
    Some(RegionalAssessment {
        assessment,
        failing: names(&failing),
        passing: names(&passing),
    })
}

fn unknown(mut a: Assessment) -> Assessment {
    a.status = Status::Unknown;
    a.scope = Scope::None;
    a.cause = crate::cause::Cause::Unknown;
    a.notice = None;
    a
}

/// Whether an agent last heard from at `last_contact` is silent at `now`.
pub fn is_silent(
    last_contact: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    grace: std::time::Duration,
) -> bool {
    let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    last_contact.is_none_or(|at| now - at > grace)
}

/// A region as a sentence names it: `local` is "this server" (the vantage point the sentence
/// is written from).
fn spoken(region: &Region) -> String {
    if region.as_str() == crate::observation::LOCAL_REGION {
        "this server".to_owned()
    } else {
        region.to_string()
    }
}

/// A list of region names for a sentence: "eu-west", "eu-west and us-east", "a, b and c".
pub fn list(regions: &[Region]) -> String {
    match regions {
        [] => String::new(),
        [one] => spoken(one),
        [rest @ .., last] => format!(
            "{} and {}",
            rest.iter().map(spoken).collect::<Vec<_>>().join(", "),
            spoken(last)
        ),
    }
}

/// The headline of a service whose trouble is regional: where it fails and where it works.
pub fn regional_headline(title: &str, fused: &RegionalAssessment) -> Option<String> {
    if fused.assessment.scope != Scope::Regional || fused.failing.is_empty() {
        return None;
    }
    let a = &fused.assessment;
    let works = if fused.passing.is_empty() {
        String::new()
    } else {
        format!("; it works from {}", list(&fused.passing))
    };
    Some(format!(
        "{title}: {} seen from {} only ({}){works}",
        a.status.noun(),
        list(&fused.failing),
        a.cause
    ))
}

/// What another vantage point says about a service, for `check --server`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElsewhereReading {
    pub region: Region,
    pub status: Status,
}

/// The sentence that joins a local check to what the server's other vantage points see:
/// failing here while every other region that can tell sees it work → "it's you (or your
/// network)"; failing here and elsewhere → "not just you"; working here while it fails
/// elsewhere → "regional". `None` when the others cannot tell.
pub fn compare_with_elsewhere(here: Status, others: &[ElsewhereReading]) -> Option<String> {
    let measured: Vec<&ElsewhereReading> =
        others.iter().filter(|o| o.status.is_measured()).collect();
    if measured.is_empty() {
        return None;
    }
    let failing: Vec<Region> = measured
        .iter()
        .filter(|o| o.status.is_trouble())
        .map(|o| o.region.clone())
        .collect();
    let working: Vec<Region> = measured
        .iter()
        .filter(|o| !o.status.is_trouble())
        .map(|o| o.region.clone())
        .collect();
    let here_fails = here.is_trouble() || !here.is_measured();
    Some(match (here_fails, failing.is_empty(), working.is_empty()) {
        (true, true, _) => format!(
            "it fails from here but works from {}: the trouble is on your side (your network, region or account), not the provider's",
            list(&working)
        ),
        (true, false, true) => format!(
            "it fails from {} too: not just you",
            list(&failing)
        ),
        (true, false, false) => format!(
            "it fails from {} too but works from {}: a regional problem",
            list(&failing),
            list(&working)
        ),
        (false, false, _) => format!(
            "it works from here but fails from {}: a regional problem elsewhere",
            list(&failing)
        ),
        (false, true, _) => format!("it works from {} too", list(&working)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assessment::{fuse, OfficialReading, ProbeReading};
    use crate::cause::Cause;

    fn at(region: &str, probes: ProbeReading) -> RegionReading {
        RegionReading {
            region: Region::new(region),
            assessment: fuse(probes, OfficialReading::None),
            silent: false,
        }
    }

    fn failing() -> ProbeReading {
        ProbeReading::Failing {
            status: Status::Outage,
            cause: Cause::ProviderError,
        }
    }

    #[test]
    fn one_region_failing_among_passing_ones_is_regional_and_named() {
        let fused = across_regions(
            &[
                at("local", ProbeReading::Passing),
                at("eu-west", failing()),
                at("us-east", ProbeReading::Passing),
            ],
            2,
        )
        .unwrap();
        assert_eq!(fused.assessment.scope, Scope::Regional);
        assert_eq!(fused.assessment.status, Status::Outage);
        assert_eq!(fused.failing, vec![Region::new("eu-west")]);
        let headline = regional_headline("OpenAI API", &fused).unwrap();
        assert!(headline.contains("eu-west only"), "{headline}");
        assert!(headline.contains("this server and us-east"), "{headline}");
    }

    #[test]
    fn failures_reaching_the_quorum_are_global() {
        let fused = across_regions(
            &[
                at("local", ProbeReading::Passing),
                at("eu-west", failing()),
                at("us-east", failing()),
            ],
            2,
        )
        .unwrap();
        assert_eq!(fused.assessment.scope, Scope::Global);
        assert_eq!(fused.failing.len(), 2);
        assert!(regional_headline("x", &fused).is_none());
    }

    #[test]
    fn a_single_vantage_point_keeps_its_own_verdict() {
        let fused = across_regions(&[at("local", failing())], 2).unwrap();
        assert_eq!(fused.assessment, fuse(failing(), OfficialReading::None));
        assert_eq!(fused.assessment.scope, Scope::Global);
    }

    #[test]
    fn a_region_that_cannot_see_or_is_silent_is_not_counted() {
        let mut silent = at("us-east", ProbeReading::Passing);
        silent.silent = true;
        let readings = [
            at("local", ProbeReading::MonitorOffline(Cause::DnsFailure)),
            at("eu-west", failing()),
            silent,
        ];
        assert_eq!(role(&readings[0]), RegionRole::NotCounted);
        assert_eq!(role(&readings[2]), RegionRole::NotCounted);
        // Only eu-west can tell: the quorum clamps to one counted region.
        let fused = across_regions(&readings, 2).unwrap();
        assert_eq!(fused.assessment.scope, Scope::Global);
        assert_eq!(fused.failing, vec![Region::new("eu-west")]);
    }

    #[test]
    fn every_region_silent_is_unknown_never_up() {
        let mut a = at("eu-west", ProbeReading::Passing);
        a.silent = true;
        let fused = across_regions(&[a], 2).unwrap();
        assert_eq!(fused.assessment.status, Status::Unknown);
    }

    #[test]
    fn the_monitors_blindness_here_is_kept_when_elsewhere_sees_it_work() {
        let fused = across_regions(
            &[
                at("local", ProbeReading::Unseen(Cause::DnsFiltered)),
                at("eu-west", ProbeReading::Passing),
            ],
            2,
        )
        .unwrap();
        assert_eq!(fused.assessment.status, Status::Operational);
        assert!(matches!(
            fused.assessment.notice,
            Some(Notice::MonitorCannotSee(Cause::DnsFiltered))
        ));
    }

    #[test]
    fn an_agents_own_trouble_does_not_become_the_services_word() {
        let fused = across_regions(
            &[
                at("local", ProbeReading::Passing),
                at("eu-west", ProbeReading::MonitorOffline(Cause::DnsFailure)),
            ],
            2,
        )
        .unwrap();
        assert_eq!(fused.assessment.status, Status::Operational);
        assert_eq!(fused.assessment.notice, None);
    }

    #[test]
    fn silence_is_judged_against_the_grace() {
        let now = DateTime::parse_from_rfc3339("2026-12-07T12:00:00Z")
            .unwrap()
            .to_utc();
        let grace = std::time::Duration::from_secs(90);
        assert!(is_silent(None, now, grace));
        assert!(!is_silent(
            Some(now - chrono::Duration::seconds(30)),
            now,
            grace
        ));
        assert!(is_silent(
            Some(now - chrono::Duration::seconds(91)),
            now,
            grace
        ));
    }

    #[test]
    fn a_local_failure_that_works_elsewhere_is_yours() {
        let others = [
            ElsewhereReading {
                region: Region::new("eu-west"),
                status: Status::Operational,
            },
            ElsewhereReading {
                region: Region::new("us-east"),
                status: Status::Operational,
            },
        ];
        let line = compare_with_elsewhere(Status::Outage, &others).unwrap();
        assert!(line.contains("eu-west and us-east"), "{line}");
        assert!(line.contains("your side"), "{line}");
        let down = [ElsewhereReading {
            region: Region::new("eu-west"),
            status: Status::Outage,
        }];
        assert!(compare_with_elsewhere(Status::Outage, &down)
            .unwrap()
            .contains("not just you"));
        let unknown = [ElsewhereReading {
            region: Region::new("eu-west"),
            status: Status::Unknown,
        }];
        assert_eq!(compare_with_elsewhere(Status::Outage, &unknown), None);
    }
}
