//! The probe crate's one error type.

/// Errors of the probe crate. Most probe failures are evidence, not errors: a refused
/// connection is recorded in a `ProbeReport`. These are the failures that stop an operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A status page's body is not the format it should be.
    #[error("{format}: {reason}")]
    StatusFormat {
        format: &'static str,
        reason: String,
    },
    /// A chatter feed (subreddit, forum, Hacker News search) could not be read.
    #[error("chatter feed: {0}")]
    Chatter(#[from] crate::chatter::ChatterError),
    /// Fetching something over HTTP failed (with the layer and reason).
    #[error("{0}")]
    Fetch(String),
    /// A PEM file given with `--ca-file` or `ca_file` could not be used.
    #[error("CA file {path}: {reason}")]
    CaFile { path: String, reason: String },
    /// A resolver address or system resolver config is unusable.
    #[error("resolver: {0}")]
    Resolver(String),
    /// A proxy URL from the environment is malformed.
    #[error("proxy setting {var}: {reason}")]
    ProxyConfig { var: &'static str, reason: String },
}
