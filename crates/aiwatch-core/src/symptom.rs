//! What a person reports seeing ("is it just me?"), and the cause each symptom usually stands
//! for — decided here, so the dashboard (and crowd reports later) only render it.

use crate::cause::Cause;

/// A symptom a reader can pick (also the vocabulary of problem reports).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Symptom {
    CannotLoad,
    LoginLoop,
    BlankPage,
    AccessDenied,
    NetworkError,
    LoggedOut,
    RegionBlocked,
    RateLimited,
    SlowOrCutOff,
    MissingHistory,
    Other,
}

impl Symptom {
    pub const ALL: [Symptom; 11] = [
        Self::CannotLoad,
        Self::LoginLoop,
        Self::BlankPage,
        Self::AccessDenied,
        Self::NetworkError,
        Self::LoggedOut,
        Self::RegionBlocked,
        Self::RateLimited,
        Self::SlowOrCutOff,
        Self::MissingHistory,
        Self::Other,
    ];

    /// The symptom's word in forms, URLs and the reports API.
    pub fn id(self) -> &'static str {
        match self {
            Self::CannotLoad => "cannot_load",
            Self::LoginLoop => "login_loop",
            Self::BlankPage => "blank_page",
            Self::AccessDenied => "access_denied",
            Self::NetworkError => "network_error",
            Self::LoggedOut => "logged_out",
            Self::RegionBlocked => "region_blocked",
            Self::RateLimited => "rate_limited",
            Self::SlowOrCutOff => "slow_or_cut_off",
            Self::MissingHistory => "missing_history",
            Self::Other => "other",
        }
    }

    /// The symptom a word names; `None` for any other word. The words of earlier versions
    /// (`cannot-connect`, `too-many-requests`, …) still read, so old links keep working.
    pub fn parse(id: &str) -> Option<Self> {
        if let Some(s) = Self::ALL.into_iter().find(|s| s.id() == id) {
            return Some(s);
        }
        match id {
            "cannot-connect" => Some(Self::CannotLoad),
            "login-loop" => Some(Self::LoginLoop),
            "blank-page" => Some(Self::BlankPage),
            "access-denied" => Some(Self::AccessDenied),
            "network-error" => Some(Self::NetworkError),
            "logged-out" => Some(Self::LoggedOut),
            "not-available" => Some(Self::RegionBlocked),
            "too-many-requests" => Some(Self::RateLimited),
            "slow" => Some(Self::SlowOrCutOff),
            _ => None,
        }
    }

    /// Every accepted word, for error messages.
    pub fn vocabulary() -> String {
        Self::ALL.map(Self::id).join(", ")
    }

    /// The cause this symptom usually stands for, when one does.
    pub fn likely_cause(self) -> Option<Cause> {
        match self {
            Self::AccessDenied => Some(Cause::BotChallenge),
            Self::RegionBlocked => Some(Cause::RegionUnsupported),
            Self::RateLimited => Some(Cause::RateLimited),
            Self::SlowOrCutOff => Some(Cause::SlowResponses),
            Self::LoginLoop
            | Self::BlankPage
            | Self::NetworkError
            | Self::CannotLoad
            | Self::LoggedOut
            | Self::MissingHistory
            | Self::Other => None,
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
        assert_eq!(Symptom::parse("slow"), Some(Symptom::SlowOrCutOff));
    }
}
