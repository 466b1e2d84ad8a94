//! aiwatch's outbound I/O: layered probes (DNS → TCP → TLS → HTTP → API) with phase timings,
//! provider API checks, and official status pages.
//!
//! Every network step here has a deadline and a size cap; results come back as the core's
//! evidence types, and the core decides what they mean.

pub mod error;
pub mod status;

pub use error::Error;
