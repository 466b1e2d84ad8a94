//! aiwatch's OpenAI-compatible failover gateway: forwards each request to the first healthy
//! upstream of its model's route and fails over, invisibly to the client, when one fails.

pub mod app;
pub mod auth;
pub mod body;
pub mod breaker;
pub mod budget;
pub mod canary;
pub mod connector;
pub mod dialect;
pub mod drill;
pub mod edge;
pub mod error;
pub mod gateway;
pub mod health;
pub mod http1;
pub mod key_limits;
pub mod metrics;
pub mod policy;
pub mod pool;
pub mod proxy;
pub mod relay;
pub mod server;
pub mod sse;
pub mod upstream;
pub mod usage;

pub use app::app;
pub use error::{ApiError, Error};
pub use gateway::{Gateway, GatewaySetup};
pub use server::run;
