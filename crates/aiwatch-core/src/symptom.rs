//! What a person reports seeing ("is it just me?"), and the cause each symptom usually stands
//! for — decided here, so the dashboard (and crowd reports later) only render it.

use crate::cause::Cause;

/// A symptom a reader can pick.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Symptom {
    LoginLoop,
    BlankPage,
    AccessDenied,
    NetworkError,
    CannotConnect,
    LoggedOut,
    NotAvailable,
    TooManyRequests,
    Slow,
}

impl Symptom {
    pub const ALL: [Symptom; 9] = [
        Self::LoginLoop,
        Self::BlankPage,
        Self::AccessDenied,
        Self::NetworkError,
        Self::CannotConnect,
        Self::LoggedOut,
        Self::NotAvailable,
        Self::TooManyRequests,
        Self::Slow,
    ];

    /// The symptom's word in forms and URLs.
    pub fn id(self) -> &'static str {
        match self {
            Self::LoginLoop => "login-loop",
            Self::BlankPage => "blank-page",
            Self::AccessDenied => "access-denied",
            Self::NetworkError => "network-error",
            Self::CannotConnect => "cannot-connect",
            Self::LoggedOut => "logged-out",
            Self::NotAvailable => "not-available",
            Self::TooManyRequests => "too-many-requests",
            Self::Slow => "slow",
        }
    }

    /// The symptom a word names; `None` for any other word.
    pub fn parse(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.id() == id)
    }

    /// The cause this symptom usually stands for, when one does.
    pub fn likely_cause(self) -> Option<Cause> {
        match self {
            Self::AccessDenied => Some(Cause::BotChallenge),
            Self::NotAvailable => Some(Cause::RegionUnsupported),
            Self::TooManyRequests => Some(Cause::RateLimited),
            Self::Slow => Some(Cause::SlowResponses),
            Self::LoginLoop
            | Self::BlankPage
            | Self::NetworkError
            | Self::CannotConnect
            | Self::LoggedOut => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_symptom_reads_back_from_its_word() {
        for s in Symptom::ALL {
            assert_eq!(Symptom::parse(s.id()), Some(s));
        }
        assert_eq!(Symptom::parse("Slow"), None);
    }
}
