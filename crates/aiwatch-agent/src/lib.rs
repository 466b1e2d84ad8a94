//! `aiwatch agent`: a vantage point in another region. It asks its server what to check, runs
//! those checks with the same probes as `serve` (its own DNS, proxy and CA settings), keeps what
//! it saw in an on-disk buffer and pushes it to the server in order.

pub mod buffer;
pub mod client;
pub mod run;

pub use buffer::Buffer;
pub use client::ServerClient;
pub use run::{run, AgentOptions, Summary};

/// What can stop an agent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server refused the agent for a reason that will not change by itself.
    #[error("the server refused this agent ({status}): {reason}")]
    Refused { status: u16, reason: String },
    #[error("{0}")]
    Usage(String),
    #[error("cannot set up the probes: {0}")]
    Setup(String),
    #[error("the buffer {path} cannot be opened: {message}")]
    Buffer { path: String, message: String },
    #[error("the buffer failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("a buffered observation does not read back: {0}")]
    Json(#[from] serde_json::Error),
}
