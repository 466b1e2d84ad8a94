//! The one fusion: what the own probes at a vantage point, the official page and the monitor's
//! own health say about a service become one [`Assessment`] — its status, scope, cause, where
//! each signal came from, and what to do. `classify` (one check) and the daemon (over time)
//! both decide through [`fuse`]; every surface only renders its result.
//!
//! # The table
//!
//! | what is seen | status | scope | notice |
//! |---|---|---|---|
//! | a local runtime that is not running | not running | local | none |
//! | the control host fails too | unknown | local | the monitor lost its network |
//! | network-side cause, control host fine | the page's, else unknown | local | the monitor cannot see the service |
//! | …and the page reports an outage, the path failing at DNS or TCP | the page's | global (`official_incident`) | as above |
//! | account-side cause | the page's, else operational | account | your account |
//! | own probes fail, provider-side cause | their severity, at least the page's | global | unconfirmed while the page is green |
//! | own probes pass, the page reports trouble | the page's | global (`official_incident` / `maintenance`) | "our probes pass" |
//! | own probes pass, page green or absent | operational | none | none |
//! | nothing probed yet | the page's, else unknown | none | none |
//!
//! "The page's" is the official signal of the components that stand for the service.

use serde::Serialize;

use crate::cause::{Cause, Scope, Side, Status};
use crate::observation::Health;

/// What the own probes at one vantage point say about a service (or one of its components),
/// reduced to what the fusion needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeReading {
    /// No usable observation yet.
    NotChecked,
    /// The provider answered properly.
    Passing,
    /// The provider answered, but the answer tells about the account (key, quota, rate…).
    Account(Cause),
    /// The provider is failing the checks: `status` is Degraded (slow, cut off, intermittent)
    /// or Outage (requests fail).
    Failing { status: Status, cause: Cause },
    /// The path from this vantage point to the provider fails (network-side cause) while the
    /// monitor's own connection works: the provider cannot be seen from here.
    Unseen(Cause),
    /// The monitor's own connection fails (the control host fails too).
    MonitorOffline(Cause),
    /// A local runtime that is not running on this machine.
    NotRunning(Cause),
    /// The provider answered, but only through something on the monitor's path that reads the
    /// traffic (TLS interception).
    Intercepted(Cause),
    /// The probes ran but their answer means nothing definite (an unexpected status).
    Inconclusive,
}

impl ProbeReading {
    /// The reading of one observation's health and cause, for a service that is (or is not) a
    /// local runtime. `monitor_online` is the control probe's latest word.
    pub fn of_observation(health: Health, cause: Cause, local: bool, monitor_online: bool) -> Self {
        match health {
            Health::Up if cause.side() == Side::Account => Self::Account(cause),
            Health::Up if cause.side() == Side::Network => Self::Intercepted(cause),
            Health::Up => Self::Passing,
            Health::Degraded => Self::Failing {
                status: Status::Degraded,
                cause,
            },
            Health::Down => Self::Failing {
                status: Status::Outage,
                cause,
            },
            Health::Unknown if local && is_absence(cause) => Self::NotRunning(cause),
            Health::Unknown if !monitor_online && !local => Self::MonitorOffline(cause),
            Health::Unknown if cause.side() == Side::Network => Self::Unseen(cause),
            Health::Unknown => Self::NotChecked,
        }
    }
}

/// Whether a local runtime's failure means it is simply not running here.
pub fn is_absence(cause: Cause) -> bool {
    matches!(
        cause,
        Cause::TcpRefused | Cause::TcpTimeout | Cause::DnsFailure
    )
}

/// The health one check of one face records, from the verdict that check got alone (without
/// the official page): what it says about the *provider*. Network-side causes say nothing about
/// the provider (unknown, never down), account problems mean the provider answered (up), and
/// every failed request is down whatever its status code; only answers that came but slowly or
/// cut off are degraded.
pub fn health_of_check(status: Status, cause: Cause) -> Health {
    match cause.side() {
        Side::Network if cause == Cause::TlsIntercepted && status == Status::Operational => {
            Health::Up
        }
        Side::Network => Health::Unknown,
        Side::Account => Health::Up,
        Side::Provider => match cause {
            Cause::SlowResponses | Cause::TruncatedResponses => Health::Degraded,
            _ => Health::Down,
        },
        Side::Neither => match status {
            Status::Operational => Health::Up,
            _ => Health::Unknown,
        },
    }
}

/// The health and cause an official page's signal stands for, as the daemon records it.
pub fn official_observation(signal: Status) -> (Health, Cause) {
    match signal {
        Status::Operational => (Health::Up, Cause::Ok),
        Status::Degraded => (Health::Degraded, Cause::OfficialIncident),
        Status::Outage => (Health::Down, Cause::OfficialIncident),
        Status::Maintenance => (Health::Degraded, Cause::Maintenance),
        Status::NotRunning | Status::Unknown => (Health::Unknown, Cause::Unknown),
    }
}

/// The health a daemon observation records: [`health_of_check`], except that nothing a check
/// saw while the monitor's own connection was down (control probe failing) says anything about
/// a cloud provider — it is unknown, with the check's cause kept as the monitor's trouble.
pub fn observed_health(status: Status, cause: Cause, monitor_online: bool, local: bool) -> Health {
    match health_of_check(status, cause) {
        Health::Up => Health::Up,
        _ if !monitor_online && !local => Health::Unknown,
        health => health,
    }
}

/// What the official page says, as the fusion needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OfficialReading {
    /// The service has no official status page.
    None,
    /// It has one, but it has not been read (yet, or it fails).
    Unread,
    /// The signal of the components that stand for the service.
    Read(Status),
}

impl OfficialReading {
    fn status(self) -> Option<Status> {
        match self {
            Self::Read(s) if s.is_measured() => Some(s),
            _ => None,
        }
    }

    fn is_bad(self) -> bool {
        matches!(self, Self::Read(Status::Outage | Status::Degraded))
    }
}

/// A notice that is about the monitor or the account, never about the provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "cause", rename_all = "snake_case")]
pub enum Notice {
    /// The monitor cannot see the service from its vantage point (its DNS, firewall, proxy…).
    MonitorCannotSee(Cause),
    /// The monitor's own connection is down.
    MonitorOffline(Cause),
    /// The account or key the monitor uses has a problem.
    Account(Cause),
    /// The monitor reaches the service only through an intermediary that reads its traffic.
    MonitorIntercepted(Cause),
}

impl Notice {
    pub fn cause(self) -> Cause {
        match self {
            Self::MonitorCannotSee(c)
            | Self::MonitorOffline(c)
            | Self::Account(c)
            | Self::MonitorIntercepted(c) => c,
        }
    }

    /// A sentence for a banner or an API field.
    pub fn text(self, title: &str) -> String {
        match self {
            Self::MonitorCannotSee(c) => format!(
                "aiwatch cannot see {title} from its vantage point ({c}): this is the monitor's own trouble, not the provider's"
            ),
            Self::MonitorOffline(c) => format!(
                "aiwatch's own connection is down ({c}): nothing can be measured until it is back"
            ),
            Self::MonitorIntercepted(c) => format!(
                "aiwatch reaches {title} only through an intermediary on its own path ({c})"
            ),
            Self::Account(c) => {
                format!("the account aiwatch uses for {title} has a problem ({c}): this affects that account only")
            }
        }
    }
}

/// Where the assessment's signals came from, and whether they agree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Provenance {
    /// What the official page says (None: no page, or not read).
    pub official: Option<Status>,
    /// What the own probes say about the provider (Unknown when they cannot see it).
    pub probes: Status,
    pub agreement: Agreement,
    /// What people report (problem reports and public posts), when they report anything.
    pub crowd: Option<crate::crowd::CrowdLevel>,
}

/// Whether the official page and the own probes tell the same story.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Agreement {
    /// Both say it works.
    Agree,
    /// Both report trouble: the provider confirms what the probes see.
    Confirmed,
    /// The provider reports trouble the own probes do not see ("reported by the provider; our
    /// probes pass").
    OfficialOnly,
    /// The own probes fail while the page is green ("possible unreported outage").
    ProbesOnly,
    /// The provider announced maintenance.
    Maintenance,
    /// One side has nothing to say.
    NotComparable,
}

impl Agreement {
    pub fn text(self) -> Option<&'static str> {
        match self {
            Self::Agree => Some("agree"),
            Self::Confirmed => Some("agree: the provider confirms"),
            Self::OfficialOnly => Some("reported by the provider; our probes pass"),
            Self::ProbesOnly => Some("possible unreported outage: the official page is green"),
            Self::Maintenance => Some("maintenance announced"),
            Self::NotComparable => None,
        }
    }
}

/// The one decision about a service (or one of its components): what every surface shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Assessment {
    pub status: Status,
    pub scope: Scope,
    pub cause: Cause,
    pub provenance: Provenance,
    pub notice: Option<Notice>,
}

impl Assessment {
    /// Whether it belongs in a trouble count ("3 of 11 services have trouble").
    pub fn is_trouble(&self) -> bool {
        self.status.is_trouble() && !self.scope.is_users_side()
    }

    /// Whether a failover gateway should stop sending traffic there: the monitor's own probes
    /// see the provider failing for everyone (an official word alone, the monitor's own
    /// trouble or an account problem are not enough).
    pub fn warrants_failover(&self) -> bool {
        self.status == Status::Outage
            && self.scope == Scope::Global
            && self.provenance.probes == Status::Outage
    }

    /// Whether the public (Statuspage-compatible) view may show it: never what the monitor
    /// could not see, never a local runtime that is not there.
    pub fn is_public(&self) -> bool {
        self.status.is_measured()
    }
}

impl Assessment {
    /// One sentence for a headline: what the status is, and on whose word.
    pub fn headline(&self, title: &str) -> String {
        let base = self.headline_without_crowd(title);
        match self.provenance.crowd {
            Some(level)
                if self.cause != Cause::CrowdReports && level != crate::crowd::CrowdLevel::None =>
            {
                format!("{base}; users report problems too")
            }
            _ => base,
        }
    }

    fn headline_without_crowd(&self, title: &str) -> String {
        let status = self.status;
        let why = self.cause;
        if why == Cause::CrowdReports {
            let region = if self.scope == Scope::Regional {
                " in some regions"
            } else {
                ""
            };
            return format!(
                "{title}: users report problems{region}, far more than usual; our probes pass"
            );
        }
        match (status, self.notice) {
            (Status::NotRunning, _) => format!("{title} is not running on this machine ({why})"),
            (_, Some(notice @ (Notice::MonitorOffline(_) | Notice::MonitorCannotSee(_)))) => {
                match self.provenance.official {
                    Some(official) if self.scope == Scope::Global => format!(
                        "{title}: {} reported by the provider; {}",
                        official.noun(),
                        notice.text(title)
                    ),
                    Some(official) => {
                        format!(
                            "{title} is {official} according to the provider; {}",
                            notice.text(title)
                        )
                    }
                    None => format!("{title} is not measured: {}", notice.text(title)),
                }
            }
            (_, Some(notice)) => format!("{title} is {status}; {}", notice.text(title)),
            (Status::Operational, None) => format!("{title} is operational"),
            (Status::Unknown, None) => format!("{title} has not been measured yet"),
            (Status::Maintenance, None) => {
                format!("{title} is in a maintenance window the provider announced")
            }
            (_, None) => match self.provenance.agreement {
                Agreement::OfficialOnly => format!(
                    "{title}: {} reported by the provider; our probes pass",
                    status.noun()
                ),
                Agreement::ProbesOnly => format!(
                    "{title}: possible unreported {} ({why}); the official page is green",
                    status.noun()
                ),
                Agreement::Confirmed | Agreement::Agree => format!(
                    "{title}: {} confirmed by the provider ({why})",
                    status.noun()
                ),
                _ => format!("{title}: {} seen by our probes ({why})", status.noun()),
            },
        }
    }
}

/// Fuses the probes' reading with the official page's. See the module's table.
pub fn fuse(probes: ProbeReading, official: OfficialReading) -> Assessment {
    let page = official.status();
    let probes_status = match probes {
        ProbeReading::Passing | ProbeReading::Account(_) | ProbeReading::Intercepted(_) => {
            Status::Operational
        }
        ProbeReading::Failing { status, .. } => status,
        ProbeReading::NotRunning(_) => Status::NotRunning,
        _ => Status::Unknown,
    };
    let agreement = match (page, probes_status) {
        (None, _) | (_, Status::Unknown | Status::NotRunning) => Agreement::NotComparable,
        (Some(Status::Maintenance), _) => Agreement::Maintenance,
        (Some(p), own) if p.is_trouble() && own.is_trouble() => Agreement::Confirmed,
        (Some(p), own) if p.is_trouble() == own.is_trouble() => Agreement::Agree,
        (Some(p), _) if p.is_trouble() => Agreement::OfficialOnly,
        _ => Agreement::ProbesOnly,
    };
    let provenance = Provenance {
        official: page,
        probes: probes_status,
        agreement,
        crowd: None,
    };
    let (status, scope, cause, notice) = match probes {
        ProbeReading::NotRunning(cause) => (Status::NotRunning, Scope::Local, cause, None),
        // Whatever a page said a moment ago, nothing can be measured from here now.
        ProbeReading::MonitorOffline(cause) => (
            Status::Unknown,
            Scope::Local,
            cause,
            Some(Notice::MonitorOffline(cause)),
        ),
        ProbeReading::Unseen(cause) => {
            let notice = Some(Notice::MonitorCannotSee(cause));
            let explained = matches!(
                cause,
                Cause::DnsFailure | Cause::TcpRefused | Cause::TcpTimeout
            );
            match page {
                Some(Status::Outage) if explained => (
                    Status::Outage,
                    Scope::Global,
                    Cause::OfficialIncident,
                    notice,
                ),
                _ => (page.unwrap_or(Status::Unknown), Scope::Local, cause, notice),
            }
        }
        ProbeReading::Account(cause) => (
            page.unwrap_or(Status::Operational),
            Scope::Account,
            cause,
            Some(Notice::Account(cause)),
        ),
        ProbeReading::Intercepted(cause) => (
            page.unwrap_or(Status::Operational),
            Scope::Local,
            cause,
            Some(Notice::MonitorIntercepted(cause)),
        ),
        ProbeReading::Inconclusive => (Status::Unknown, Scope::None, Cause::Unknown, None),
        // Failing while the provider announced maintenance is the maintenance.
        ProbeReading::Failing { .. } if page == Some(Status::Maintenance) => {
            (Status::Maintenance, Scope::Global, Cause::Maintenance, None)
        }
        ProbeReading::Failing { status, cause } => {
            let status = Status::worst([status, page.unwrap_or(status)]);
            let cause = if official.is_bad() {
                Cause::OfficialIncident
            } else {
                cause
            };
            (status, Scope::Global, cause, None)
        }
        ProbeReading::Passing | ProbeReading::NotChecked => match page {
            Some(Status::Maintenance) => {
                (Status::Maintenance, Scope::Global, Cause::Maintenance, None)
            }
            Some(p) if p.is_trouble() => (p, Scope::Global, Cause::OfficialIncident, None),
            _ if probes == ProbeReading::Passing => {
                (Status::Operational, Scope::None, Cause::Ok, None)
            }
            Some(p) => (p, Scope::None, Cause::Ok, None),
            None => (Status::Unknown, Scope::None, Cause::Unknown, None),
        },
    };
    Assessment {
        status,
        scope,
        cause,
        provenance,
        notice,
    }
}

/// The service as a whole from its components' assessments: the worst of what was measured
/// speaks for it (a face that cannot be seen does not hide one that can); when nothing was
/// measured, the worst of the rest (unknown over not running). A notice of any component is
/// kept, so "the monitor cannot see the API" survives a web front-end that works.
/// Adds what people report to an assessment (`scope`: `Regional` when the spike is in some
/// regions only, else `Global`):
/// - a spike alone, with probes passing or unable to tell → degraded, cause `crowd_reports`
///   ("users report problems");
/// - a spike while the probes fail → the probes' verdict stands, now backed by the crowd;
/// - no spike → unchanged (an official incident with passing probes stays "reported by the
///   provider").
///
/// The monitor's own trouble, a local runtime and maintenance are left as they are.
pub fn with_crowd(mut a: Assessment, level: crate::crowd::CrowdLevel, scope: Scope) -> Assessment {
    use crate::crowd::CrowdLevel;
    if level == CrowdLevel::None {
        return a;
    }
    a.provenance.crowd = Some(level);
    let untouched = matches!(a.status, Status::NotRunning | Status::Maintenance)
        || matches!(
            a.notice,
            Some(Notice::MonitorOffline(_) | Notice::MonitorIntercepted(_))
        );
    if untouched || a.status.is_trouble() {
        return a;
    }
    a.status = Status::Degraded;
    a.scope = scope;
    a.cause = Cause::CrowdReports;
    a
}

pub fn roll_up(components: &[Assessment]) -> Option<Assessment> {
    let rank = |a: &&Assessment| (a.status.severity(), scope_rank(a.scope));
    let mut top = *components
        .iter()
        .filter(|a| a.status.is_measured())
        .max_by_key(rank)
        .or_else(|| components.iter().max_by_key(rank))?;
    if top.notice.is_none() {
        top.notice = components.iter().find_map(|a| a.notice);
    }
    Some(top)
}

fn scope_rank(scope: Scope) -> u8 {
    match scope {
        Scope::None => 0,
        Scope::Account => 1,
        Scope::Local => 2,
        Scope::Regional => 3,
        Scope::Global => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use Cause::*;
    use OfficialReading as O;
    use ProbeReading as P;
    use Scope as Sc;
    use Status as S;

    /// One row of the table: what is seen → what every surface must say.
    fn check(probes: ProbeReading, official: OfficialReading, want: (Status, Scope, Cause)) {
        let got = fuse(probes, official);
        assert_eq!(
            (got.status, got.scope, got.cause),
            want,
            "{probes:?} with {official:?}"
        );
    }

    #[test]
    fn the_table() {
        let fail = |cause| P::Failing {
            status: S::Outage,
            cause,
        };
        let rows: &[(ProbeReading, OfficialReading, (Status, Scope, Cause))] = &[
            // The monitor's own trouble is never the provider's.
            (
                P::Unseen(DnsFailure),
                O::None,
                (S::Unknown, Sc::Local, DnsFailure),
            ),
            (
                P::Unseen(DnsFailure),
                O::Unread,
                (S::Unknown, Sc::Local, DnsFailure),
            ),
            (
                P::Unseen(TlsIntercepted),
                O::Read(S::Operational),
                (S::Operational, Sc::Local, TlsIntercepted),
            ),
            (
                P::Unseen(BotChallenge),
                O::Read(S::Degraded),
                (S::Degraded, Sc::Local, BotChallenge),
            ),
            (
                P::Unseen(TcpTimeout),
                O::Read(S::Outage),
                (S::Outage, Sc::Global, OfficialIncident),
            ),
            (
                P::MonitorOffline(DnsFailure),
                O::Unread,
                (S::Unknown, Sc::Local, DnsFailure),
            ),
            (
                P::NotRunning(TcpRefused),
                O::None,
                (S::NotRunning, Sc::Local, TcpRefused),
            ),
            (
                P::Intercepted(TlsIntercepted),
                O::None,
                (S::Operational, Sc::Local, TlsIntercepted),
            ),
            (
                P::Failing {
                    status: S::Outage,
                    cause: ProviderError,
                },
                O::Read(S::Maintenance),
                (S::Maintenance, Sc::Global, Maintenance),
            ),
            (
                P::Inconclusive,
                O::Read(S::Operational),
                (S::Unknown, Sc::None, Unknown),
            ),
            // The account keeps the provider's status.
            (
                P::Account(AuthInvalid),
                O::None,
                (S::Operational, Sc::Account, AuthInvalid),
            ),
            (
                P::Account(QuotaExhausted),
                O::Read(S::Outage),
                (S::Outage, Sc::Account, QuotaExhausted),
            ),
            // Provider-side failures, confirmed or not.
            (
                fail(ProviderError),
                O::Read(S::Operational),
                (S::Outage, Sc::Global, ProviderError),
            ),
            (
                fail(ProviderError),
                O::Unread,
                (S::Outage, Sc::Global, ProviderError),
            ),
            (
                fail(ProviderError),
                O::Read(S::Degraded),
                (S::Outage, Sc::Global, OfficialIncident),
            ),
            (
                P::Failing {
                    status: S::Degraded,
                    cause: SlowResponses,
                },
                O::Read(S::Outage),
                (S::Outage, Sc::Global, OfficialIncident),
            ),
            (
                P::Failing {
                    status: S::Degraded,
                    cause: TruncatedResponses,
                },
                O::None,
                (S::Degraded, Sc::Global, TruncatedResponses),
            ),
            // The official page alone: at least its impact.
            (
                P::Passing,
                O::Read(S::Outage),
                (S::Outage, Sc::Global, OfficialIncident),
            ),
            (
                P::Passing,
                O::Read(S::Degraded),
                (S::Degraded, Sc::Global, OfficialIncident),
            ),
            (
                P::Passing,
                O::Read(S::Maintenance),
                (S::Maintenance, Sc::Global, Maintenance),
            ),
            (
                P::Passing,
                O::Read(S::Operational),
                (S::Operational, Sc::None, Ok),
            ),
            (P::Passing, O::None, (S::Operational, Sc::None, Ok)),
            (P::NotChecked, O::None, (S::Unknown, Sc::None, Unknown)),
            (
                P::NotChecked,
                O::Read(S::Operational),
                (S::Operational, Sc::None, Ok),
            ),
            (
                P::NotChecked,
                O::Read(S::Outage),
                (S::Outage, Sc::Global, OfficialIncident),
            ),
        ];
        for (probes, official, want) in rows {
            check(*probes, *official, *want);
        }
    }

    #[test]
    fn network_side_causes_never_make_a_provider_outage() {
        for cause in Cause::ALL.into_iter().filter(|c| c.side() == Side::Network) {
            for official in [O::None, O::Unread, O::Read(S::Operational)] {
                let a = fuse(P::Unseen(cause), official);
                assert_ne!(a.status, S::Outage, "{cause}");
                assert_eq!(a.scope, Sc::Local, "{cause}");
                assert!(!a.is_trouble(), "{cause}");
                assert_eq!(a.notice, Some(Notice::MonitorCannotSee(cause)));
            }
            assert_eq!(
                health_of_check(S::Unknown, cause),
                Health::Unknown,
                "{cause}"
            );
        }
    }

    #[test]
    fn account_side_causes_are_never_trouble_of_the_service() {
        for cause in Cause::ALL.into_iter().filter(|c| c.side() == Side::Account) {
            let a = fuse(P::Account(cause), O::None);
            assert_eq!(
                (a.status, a.scope),
                (S::Operational, Sc::Account),
                "{cause}"
            );
            assert!(!a.is_trouble());
            assert_eq!(health_of_check(S::Operational, cause), Health::Up);
        }
    }

    #[test]
    fn nothing_seen_while_the_monitor_is_offline_blames_a_provider() {
        assert_eq!(
            observed_health(S::Outage, ProviderError, false, false),
            Health::Unknown
        );
        assert_eq!(
            observed_health(S::Outage, ProviderError, true, false),
            Health::Down
        );
        assert_eq!(
            observed_health(S::Outage, ProviderError, false, true),
            Health::Down
        );
        assert_eq!(
            observed_health(S::Operational, Ok, false, false),
            Health::Up
        );
    }

    #[test]
    fn every_failed_request_is_down_whatever_its_code() {
        for cause in [ProviderError, ProviderOverloaded] {
            assert_eq!(health_of_check(S::Degraded, cause), Health::Down);
        }
        assert_eq!(
            health_of_check(S::Degraded, SlowResponses),
            Health::Degraded
        );
        assert_eq!(health_of_check(S::Operational, TlsIntercepted), Health::Up);
    }

    #[test]
    fn the_reading_of_an_observation() {
        let r = ProbeReading::of_observation;
        assert_eq!(
            r(Health::Unknown, TcpRefused, true, true),
            P::NotRunning(TcpRefused)
        );
        assert_eq!(
            r(Health::Unknown, DnsFailure, false, false),
            P::MonitorOffline(DnsFailure)
        );
        assert_eq!(
            r(Health::Unknown, DnsFailure, false, true),
            P::Unseen(DnsFailure)
        );
        assert_eq!(
            r(Health::Up, AuthInvalid, false, true),
            P::Account(AuthInvalid)
        );
        assert_eq!(
            r(Health::Up, TlsIntercepted, false, true),
            P::Intercepted(TlsIntercepted)
        );
        assert_eq!(r(Health::Unknown, Unknown, false, true), P::NotChecked);
    }

    #[test]
    fn provenance_says_who_reports_what() {
        let a = fuse(P::Passing, O::Read(S::Outage));
        assert_eq!(a.provenance.agreement, Agreement::OfficialOnly);
        let a = fuse(
            P::Failing {
                status: S::Outage,
                cause: ProviderError,
            },
            O::Read(S::Operational),
        );
        assert_eq!(a.provenance.agreement, Agreement::ProbesOnly);
        let a = fuse(P::Unseen(DnsFailure), O::Read(S::Operational));
        assert_eq!(a.provenance.agreement, Agreement::NotComparable);
    }

    #[test]
    fn the_worst_component_speaks_for_the_service() {
        let web = fuse(P::Passing, O::None);
        let api = fuse(P::Unseen(DnsFailure), O::None);
        let all = roll_up(&[web, api]).expect("two components");
        assert_eq!((all.status, all.scope), (S::Operational, Sc::None));
        assert_eq!(all.notice, Some(Notice::MonitorCannotSee(DnsFailure)));
        let blind = roll_up(&[api]).expect("one component");
        assert_eq!((blind.status, blind.scope), (S::Unknown, Sc::Local));
        let down = fuse(
            P::Failing {
                status: S::Outage,
                cause: ProviderError,
            },
            O::None,
        );
        assert_eq!(
            roll_up(&[web, api, down]).map(|a| a.status),
            Some(S::Outage)
        );
        assert_eq!(roll_up(&[]), None);
    }
}
