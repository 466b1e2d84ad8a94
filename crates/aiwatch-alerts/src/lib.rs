//! aiwatch's alert delivery: turns the notifications the core's rules decided (saved in the
//! store's outbox) into requests to the channels people use, and keeps at it until each one is
//! accepted or given up.
//!
//! - [`channel`]: one configured `[[alert]]` with its secrets resolved, and what it sends for a
//!   message (webhook JSON signed with HMAC-SHA256, Slack blocks, Discord embeds, ntfy JSON,
//!   Telegram `sendMessage`, Alertmanager v2 alerts, a mail, a desktop notification);
//! - [`send`]: the I/O of one attempt — HTTP through the probe's DNS, proxy and TLS trust with a
//!   deadline and a size cap, SMTP through lettre, the desktop through D-Bus;
//! - [`deliver`]: the outbox worker — due deliveries, exponential backoff with jitter that
//!   honours `Retry-After`, a retry budget, then the dead-letter state.

pub mod channel;
pub mod deliver;
pub mod send;

pub use channel::Channel;
pub use deliver::{Deliverer, RetryPolicy};
pub use send::Answer;

/// What can go wrong setting up alert delivery.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A variable the alert names is not set (or empty).
    #[error("alert `{alert}`: the environment variable {var} is not set")]
    MissingSecret { alert: String, var: String },
    /// The alert's CA file cannot be used.
    #[error("alert `{alert}`: {reason}")]
    CaFile { alert: String, reason: String },
    /// The channel cannot work on this machine or build.
    #[error("alert `{alert}`: {reason}")]
    Unsupported { alert: String, reason: String },
    /// The `smtp` address or a mail address does not parse.
    #[error("alert `{alert}`: {reason}")]
    Address { alert: String, reason: String },
}
