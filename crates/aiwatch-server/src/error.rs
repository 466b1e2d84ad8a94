//! The server crate's one error type.

/// Why the daemon could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration could not be turned into a running daemon.
    #[error("{0}")]
    Setup(String),
    #[error("store: {0}")]
    Store(#[from] aiwatch_store::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
