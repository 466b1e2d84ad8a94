//! aiwatch's OpenAI-compatible failover gateway: forwards each request to the first healthy
//! upstream of its model's route and fails over, invisibly to the client, when one fails.

pub mod anthropic;
pub mod auth;
pub mod breaker;
pub mod connector;
pub mod error;
pub mod sse;
pub mod usage;

pub use error::{ApiError, Error};
