//! What a failed call to a provider means when it is not an HTTP error status: the one mapping
//! from "how the call went wrong" to a cause code, shared by every caller that forwards
//! requests (the gateway's attempts, its canaries). Error statuses are judged by
//! [`crate::signatures::api_cause`]; connection failures at a named layer by
//! [`crate::classify::connection_failure`].

use crate::cause::Cause;

/// How a call broke, after the connection was open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallFault {
    /// No response headers within the call's budget.
    NoAnswerInTime,
    /// The connection closed or reset before the answer's headers.
    ConnectionLost,
    /// A 2xx answer whose body ended early or passed its size cap.
    AnswerCutOff,
    /// A 2xx answer that is not the dialect's answer (not JSON, wrong shape).
    AnswerUnreadable,
    /// A stream was asked for and something else came back.
    NotAStream,
    /// A stream that sent no token within its first-token budget or its stall limit.
    StreamStalled,
    /// A stream that ended without its finish marker or broke off mid-way.
    StreamCutOff,
    /// A stream that is not server-sent events, passed its size cap, or sent no token within
    /// its cap.
    StreamGarbage,
    /// The provider sent an error event inside the stream.
    StreamError,
}

impl CallFault {
    /// The cause this fault is evidence of. Every one of them happened after the provider's
    /// own host answered, so none is the caller's network.
    pub fn cause(self) -> Cause {
        match self {
            Self::NoAnswerInTime | Self::StreamStalled => Cause::SlowResponses,
            Self::AnswerCutOff | Self::StreamCutOff => Cause::TruncatedResponses,
            Self::ConnectionLost
            | Self::AnswerUnreadable
            | Self::NotAStream
            | Self::StreamGarbage
            | Self::StreamError => Cause::ProviderError,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cause::Side;

    #[test]
    fn every_fault_is_the_providers_side() {
        for fault in [
            CallFault::NoAnswerInTime,
            CallFault::ConnectionLost,
            CallFault::AnswerCutOff,
            CallFault::AnswerUnreadable,
            CallFault::NotAStream,
            CallFault::StreamStalled,
            CallFault::StreamCutOff,
            CallFault::StreamGarbage,
            CallFault::StreamError,
        ] {
            assert_eq!(fault.cause().side(), Side::Provider, "{fault:?}");
        }
    }

    #[test]
    fn slowness_and_cut_off_answers_keep_their_own_causes() {
        assert_eq!(CallFault::StreamStalled.cause(), Cause::SlowResponses);
        assert_eq!(CallFault::StreamCutOff.cause(), Cause::TruncatedResponses);
        assert_eq!(CallFault::AnswerCutOff.cause(), Cause::TruncatedResponses);
    }
}
