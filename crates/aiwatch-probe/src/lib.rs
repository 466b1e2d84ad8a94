//! aiwatch's outbound I/O: layered probes (DNS → TCP → TLS → HTTP → API) with phase timings,
//! provider API checks, and official status pages.
//!
//! Every network step here has a deadline and a size cap; results come back as the core's
//! evidence types, and the core decides what they mean.

pub mod api;
pub mod chatter;
pub mod check;
pub mod connect;
pub mod dns;
mod entities;
pub mod error;
pub mod host;
pub mod http;
pub mod layered;
pub mod observe;
pub mod official;
pub mod poller;
pub mod proxy;
pub mod status;
pub mod stream;
pub mod tls;

pub use check::{CheckOptions, Checker};
pub use dns::DnsChoice;
pub use error::Error;
pub use proxy::ProxySettings;
